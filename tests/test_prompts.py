"""One prompt for training and inference; completions end with EOS; only the description is trained on."""

from __future__ import annotations

import pytest

from titlegen_lib.prompts import (
    INSTRUCTIONS,
    PromptError,
    PromptTemplate,
    choose_template,
    render_prompt,
    render_training_text,
    tokenize_example,
)

TITLE = "Hamilton Beach 12-Cup Programmable Coffee Maker, Black"
DESCRIPTION = "Brew up to 12 cups of coffee with this programmable Hamilton Beach maker. Dishwasher-safe parts."


@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
@pytest.mark.parametrize("language", ["en", "pt"])
def test_train_text_is_inference_prompt_plus_completion_plus_eos(offline_tokenizer, prompt_format, language):
    template = choose_template(offline_tokenizer, language, prompt_format)
    prompt = render_prompt(TITLE, offline_tokenizer, template)
    assert render_training_text(TITLE, DESCRIPTION, offline_tokenizer, template) == (
        prompt + DESCRIPTION + offline_tokenizer.eos_token)
    assert TITLE in prompt and INSTRUCTIONS[language] in prompt  # the model always sees the title


@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
def test_tokenized_example_masks_the_prompt_and_ends_with_unmasked_eos(offline_tokenizer, prompt_format):
    tok = offline_tokenizer
    template = choose_template(tok, "en", prompt_format)
    example = tokenize_example(TITLE, DESCRIPTION, tok, template)
    ids, mask = example["input_ids"], example["completion_mask"]
    prompt_ids = tok(render_prompt(TITLE, tok, template))["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids  # inference prompt tokens are a prefix
    assert mask == [0] * len(prompt_ids) + [1] * (len(ids) - len(prompt_ids))
    assert ids[-1] == tok.eos_token_id and mask[-1] == 1
    assert ids[len(prompt_ids):].count(tok.eos_token_id) == 1  # exactly one EOS, at the end
    completion = tok.decode([i for i, m in zip(ids, mask) if m])
    assert completion == DESCRIPTION + tok.eos_token


def test_offline_tokenizer_has_im_end_eos_and_a_distinct_pad(offline_tokenizer):
    assert offline_tokenizer.eos_token == "<|im_end|>"
    assert offline_tokenizer.pad_token_id is not None
    assert offline_tokenizer.pad_token_id != offline_tokenizer.eos_token_id


def test_auto_uses_the_chat_template_when_present(offline_tokenizer):
    assert choose_template(offline_tokenizer, "en", "auto").use_chat_template
    prompt = render_prompt(TITLE, offline_tokenizer, PromptTemplate("en", True))
    assert prompt.rstrip().endswith("<|im_start|>assistant")


def test_plain_prompt_layout():
    prompt = render_prompt(TITLE, tokenizer=None, template=PromptTemplate("pt", False))
    assert prompt.startswith("### Instrução:\n") and prompt.endswith("### Resposta:\n")


def test_bad_template_choices_are_errors(offline_tokenizer):
    class NoChat:
        chat_template = None

    with pytest.raises(PromptError, match="no chat template"):
        choose_template(NoChat(), "en", "chat")
    with pytest.raises(PromptError, match="language"):
        choose_template(offline_tokenizer, "de", "auto")  # type: ignore[arg-type]

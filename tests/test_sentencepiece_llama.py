"""The default model's tokenizer family, offline: a SentencePiece Llama tokenizer (`<s>`, `</s>`, no chat template)
on a tiny random Llama. The plain prompt, one BOS, one trained EOS, pad apart from EOS, generation stops at `</s>`."""

from __future__ import annotations

import pytest

from titlegen_lib import Config
from titlegen_lib.generate import DecodingSettings, generate_batch
from titlegen_lib.prompts import choose_template, render_prompt, tokenize_example
from titlegen_lib.registry import TINY_LLAMA

EXAMPLES = [
    ("Acme Stainless Steel Kettle, 1.7 Liter", "A quiet kettle that boils 1.7 L in 4 minutes. Cord-free base."),
    ("The Quiet Harbor: A Novel (Paperback)", "“A moving story” — The Times. 320 pages, ünïcode and 😀 too."),
    ("  Spaces Around  ", "  Leading and trailing blanks, a tab\tand a line\nbreak. "),
    ("12345", "Digits 0123456789 split one by one."),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import os

    from titlegen_lib.models import load_model

    os.environ["TITLEGEN_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # built here, from nothing
    try:
        yield load_model(Config.from_dict(preset="offline", model_name=TINY_LLAMA))
    finally:
        os.environ.pop("TITLEGEN_CACHE")


def test_it_is_a_sentencepiece_llama_tokenizer_without_a_chat_template(tiny):
    tokenizer = tiny.tokenizer
    assert type(tokenizer).__name__ == "LlamaTokenizer"
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<s>", "</s>")
    assert not getattr(tokenizer, "chat_template", None)
    assert choose_template(tokenizer, "en", "auto").use_chat_template is False  # the plain prompt
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert "▁" in tokenizer.convert_ids_to_tokens(tokenizer("a kettle")["input_ids"])[1]  # SentencePiece pieces


@pytest.mark.parametrize(("title", "description"), EXAMPLES)
def test_the_plain_prompt_is_a_token_prefix_with_one_bos_and_one_trained_eos(tiny, title, description):
    tokenizer = tiny.tokenizer
    template = choose_template(tokenizer, "en", "auto")
    example = tokenize_example(title, description, tokenizer, template)
    ids, mask = example["input_ids"], example["completion_mask"]
    prompt_ids = tokenizer(render_prompt(title, tokenizer, template))["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids and mask[: len(prompt_ids)] == [0] * len(prompt_ids)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1
    assert mask[-1] == 1 and all(mask[len(prompt_ids):])  # the description and EOS are trained on
    assert tokenizer.decode(ids[len(prompt_ids):-1]).strip() == description.strip()


def test_batches_keep_eos_trained_and_pad_masked(tiny, offline_config):
    from titlegen_lib.data import preprocess
    from titlegen_lib.models import attach_lora
    from titlegen_lib.train import build_datasets, build_trainer

    config = offline_config.replace(model_name=TINY_LLAMA, synthetic_train_records=300, synthetic_test_records=40,
                                    train_samples=32, val_samples=4, test_samples=4, max_seq_length=256)
    preprocess(config)
    lora = attach_lora(tiny, config)
    trainer = build_trainer(lora, config, build_datasets(config, tiny.tokenizer), batch_size=8, grad_accum=1,
                            progress=False)
    batch = next(iter(trainer.get_train_dataloader()))
    tokenizer = tiny.tokenizer
    for ids, labels, attention in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        real = int(attention.sum())
        assert int(ids[0]) == tokenizer.bos_token_id and int((ids == tokenizer.bos_token_id).sum()) == 1
        assert int(labels[real - 1]) == tokenizer.eos_token_id  # EOS is trained, never masked as padding
        assert labels[real:].eq(-100).all() and ids[real:].eq(tokenizer.pad_token_id).all()


def test_generation_stops_at_the_end_of_sequence_token(tiny):
    tokenizer = tiny.tokenizer
    template = choose_template(tokenizer, "en", "auto")
    settings = DecodingSettings(max_new_tokens=12, repetition_penalty=1.0, no_repeat_ngram_size=0)

    def always_eos(module, inputs, logits):  # a model that has learnt to stop: </s> wins at every step
        logits = logits.clone()
        logits[..., tokenizer.eos_token_id] = 1e4
        return logits

    hook = tiny.model.get_output_embeddings().register_forward_hook(always_eos)
    try:
        generations = generate_batch(tiny, ["A short title", "A much longer product title, with more words"],
                                     settings, template)
    finally:
        hook.remove()
    assert [(g.stopped_at_eos, g.new_tokens, g.text) for g in generations] == [(True, 1, ""), (True, 1, "")]
    free = generate_batch(tiny, ["A short title"], settings, template)[0]  # random weights: it rarely stops
    assert free.new_tokens <= settings.max_new_tokens and "</s>" not in free.text


def test_describe_counts_the_lora_weights_as_trainable_and_nothing_on_a_base_model(tiny, offline_config):
    from titlegen_lib.models import attach_lora, describe, load_model

    # A fresh load from the fixture's cache: attach_lora puts LoRA layers into `tiny` itself (an earlier test).
    loaded = load_model(Config.from_dict(preset="offline", model_name=TINY_LLAMA))
    for parameter in loaded.model.parameters():
        parameter.requires_grad_(False)
    loaded.model.get_input_embeddings().weight.requires_grad_(True)  # as Unsloth leaves a loaded base model
    assert "trainable" not in describe(loaded)
    with_lora = attach_lora(loaded, offline_config)
    lora, _ = with_lora.model.get_nb_trainable_parameters()  # PEFT's own count, the line 03 prints
    assert lora > 0 and f", {lora / 1e6:.2f}M trainable," in describe(with_lora)

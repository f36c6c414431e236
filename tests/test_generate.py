"""Decoding: the repetition guard penalises what the model wrote, never the prompt's tokens (the chat prompt
holds the EOS token, and penalising it kept models from stopping)."""

from __future__ import annotations

import contextlib

from titlegen_lib import Config
from titlegen_lib.generate import DecodingSettings, generate_batch
from titlegen_lib.prompts import choose_template, render_prompt


@contextlib.contextmanager
def fixed_logits(model, scores: dict[int, float]):
    """Every step's logits: -1e4 everywhere but `scores`."""

    def hook(module, inputs, logits):
        logits = logits.clone().fill_(-1e4)
        for token, value in scores.items():
            logits[..., token] = value
        return logits

    handle = model.get_output_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def not_in_prompt(tokenizer, prompt_ids: list[int], count: int) -> list[int]:
    return [i for i in range(1000, 2000) if i not in prompt_ids and i not in tokenizer.all_special_ids][:count]


def test_the_guard_does_not_penalise_the_eos_token_the_chat_prompt_holds(offline_model):
    tokenizer = offline_model.tokenizer
    config = Config.from_dict(preset="offline")
    template = choose_template(tokenizer, config.language, config.prompt_format)
    prompt_ids = tokenizer(render_prompt("Steel kettle", tokenizer, template))["input_ids"]
    assert tokenizer.eos_token_id in prompt_ids  # <|im_end|> closes the system and user turns
    guard = DecodingSettings(max_new_tokens=6, repetition_penalty=1.1, no_repeat_ngram_size=4)
    other, second = not_in_prompt(tokenizer, prompt_ids, 2)

    # EOS a little ahead of another token: a model that wants to stop stops at once.
    with fixed_logits(offline_model.model, {tokenizer.eos_token_id: 10.0, other: 9.5}):
        stop = generate_batch(offline_model, ["Steel kettle"], guard, template)[0]
    assert (stop.stopped_at_eos, stop.new_tokens) == (True, 1)

    # What the model wrote is still penalised: the top token once, then the runner-up.
    with fixed_logits(offline_model.model, {other: 10.0, second: 9.5}):
        wrote = generate_batch(offline_model, ["Steel kettle"], guard, template)[0]
    assert wrote.text.startswith(tokenizer.decode([other, second]).strip())

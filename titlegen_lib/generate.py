"""Generate descriptions from titles with exactly the training prompt: batched for evaluation, streamed for the demo."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from titlegen_lib.config import Config
from titlegen_lib.models import LoadedModel, adapter_switched_off, prepare_for_inference
from titlegen_lib.prompts import PromptTemplate, choose_template, render_prompt


@dataclass(frozen=True)
class DecodingSettings:
    """How to decode; part of the prediction cache key."""

    max_new_tokens: int = 160
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 4

    @classmethod
    def from_config(cls, config: Config, tokenizer: Any = None, **changes: Any) -> "DecodingSettings":
        """The config's decoding; with a tokenizer, max_new_tokens "auto" (0) becomes a number of tokens."""
        budget = max_new_tokens_for(config, tokenizer) if tokenizer is not None else config.max_new_tokens
        values = {"max_new_tokens": budget, "temperature": config.temperature,
                  "top_p": config.top_p, "repetition_penalty": config.repetition_penalty,
                  "no_repeat_ngram_size": config.no_repeat_ngram_size}
        return cls(**{**values, **changes})

    def generate_kwargs(self, prompt_length: int) -> dict[str, Any]:
        """`model.generate`'s arguments for prompts padded to `prompt_length` tokens."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens,
                                  "no_repeat_ngram_size": self.no_repeat_ngram_size,
                                  "logits_processor": repetition_penalty(self.repetition_penalty, prompt_length)}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs


def repetition_penalty(penalty: float, prompt_length: int) -> Any:
    """The repetition penalty on the generated tokens only. transformers' `repetition_penalty` argument also
    penalises every prompt token, and a chat prompt holds the EOS token (`<|im_end|>` ends each turn): the
    model is then pushed away from stopping (on real records EOS fell from 100% to 42% of outputs)."""
    from transformers import LogitsProcessorList
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    if penalty == 1.0:
        return LogitsProcessorList()
    return LogitsProcessorList([RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=prompt_length)])


MAX_NEW_TOKENS_CAP = 512  # "auto" never asks for more (a T4 generates 64 titles at once)
MAX_NEW_TOKENS_QUANTILE = 95  # "auto" covers this percentile of the test references' lengths


def max_new_tokens_for(config: Config, tokenizer: Any) -> int:
    """config.max_new_tokens, or when it is 0 ("auto"): enough tokens for the test references' 95th percentile
    length (and EOS), at most MAX_NEW_TOKENS_CAP, so long references are not cut."""
    import numpy as np

    from titlegen_lib.data import load_split

    if config.max_new_tokens:
        return config.max_new_tokens
    path = config.data_dir / "test.jsonl"
    references = [row["output"] for row in load_split(path)] if path.is_file() else []
    if not references:
        return MAX_NEW_TOKENS_CAP // 2
    lengths = [len(ids) + 1 for ids in tokenizer(references, add_special_tokens=False)["input_ids"]]
    return int(min(MAX_NEW_TOKENS_CAP, np.ceil(np.percentile(lengths, MAX_NEW_TOKENS_QUANTILE))))


@dataclass
class Generation:
    """One generated description and whether the model ended it with EOS."""

    title: str
    text: str
    stopped_at_eos: bool
    new_tokens: int


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def generate_batch(loaded: LoadedModel, titles: Sequence[str], settings: DecodingSettings,
                   template: PromptTemplate) -> list[Generation]:
    """Generate for a batch of titles with left padding (one forward pass per new token for all titles)."""
    import torch

    tokenizer = loaded.tokenizer
    prompts = [render_prompt(t, tokenizer, template) for t in titles]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    try:
        encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(_device(loaded.model))
    finally:
        tokenizer.padding_side = old_side
    with torch.inference_mode():
        output = loaded.model.generate(**encoded, **settings.generate_kwargs(encoded["input_ids"].shape[1]),
                                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    new = output[:, encoded["input_ids"].shape[1]:]
    results = []
    for title, ids in zip(titles, new.tolist()):
        stopped = tokenizer.eos_token_id in ids
        if stopped:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        ids = [i for i in ids if i != tokenizer.pad_token_id]
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()
        results.append(Generation(title, text, stopped, len(ids) + int(stopped)))
    return results


def generate_descriptions(loaded: LoadedModel, titles: Sequence[str], config: Config,
                          settings: DecodingSettings | None = None, batch_size: int | None = None,
                          progress: bool = True, language: str | None = None) -> list[Generation]:
    """Descriptions for many titles, in batches sorted by length (less padding), in the input order."""
    from tqdm.auto import tqdm

    settings = settings or DecodingSettings.from_config(config, loaded.tokenizer)
    template = choose_template(loaded.tokenizer, language or config.language, config.prompt_format)
    prepare_for_inference(loaded)
    batch_size = batch_size or config.gen_batch_size
    order = sorted(range(len(titles)), key=lambda i: len(titles[i]))
    results: list[Generation | None] = [None] * len(titles)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="generating", disable=not progress, unit="batch"):
        for index, generation in zip(batch, generate_batch(loaded, [titles[i] for i in batch], settings, template)):
            results[index] = generation
    return [r for r in results if r is not None]


def stream_description(loaded: LoadedModel, title: str, config: Config, settings: DecodingSettings | None = None,
                       language: str | None = None, adapter: bool = True) -> Iterator[str]:
    """Yield the description piece by piece as it is generated (for the demo). `adapter=False` writes with the
    LoRA adapter switched off: the base model, without a second copy of it in memory. An error in the
    generating thread (a CUDA out-of-memory, say) ends the stream and is raised here."""
    from transformers import TextIteratorStreamer

    settings = settings or DecodingSettings.from_config(config, loaded.tokenizer)
    template = choose_template(loaded.tokenizer, language or config.language, config.prompt_format)
    prepare_for_inference(loaded)
    tokenizer = loaded.tokenizer
    encoded = tokenizer([render_prompt(title, tokenizer, template)], return_tensors="pt").to(_device(loaded.model))
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                    clean_up_tokenization_spaces=False)
    kwargs = {**encoded, **settings.generate_kwargs(encoded["input_ids"].shape[1]), "streamer": streamer,
              "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    failures: list[BaseException] = []

    def generate() -> None:
        try:
            with adapter_switched_off(loaded) if not adapter else contextlib.nullcontext():
                loaded.model.generate(**kwargs)
        except BaseException as exc:  # raised below, in the caller's thread: here it would only hang the stream
            failures.append(exc)
            streamer.end()

    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    yield from streamer
    worker.join()
    if failures:
        raise failures[0]

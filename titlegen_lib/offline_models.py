"""Offline stand-ins for the default model, which needs the hub: Llama models with random weights and a
SentencePiece Llama tokenizer (`<s>`, `</s>`, byte fallback, no chat template: TinyLlama's kind), trained here
on synthetic titles and descriptions. They check code paths, speed and memory, never quality.

Built once into the cache (`models.cache_root()`); the tokenizer needs the `sentencepiece` package only to be
trained, so a machine without it can use one built elsewhere (copy `sp-llama-tokenizer/` into its cache).
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

from titlegen_lib.registry import ModelSpec

TOKENIZER_FOLDER = "sp-llama-tokenizer"
TOKENIZER_VOCAB = 4000
TOKENIZER_TEXTS = 6000  # synthetic records whose titles and descriptions train it (a fraction of a second)


def train_sentencepiece(vocab_size: int = TOKENIZER_VOCAB, records: int = TOKENIZER_TEXTS, seed: int = 3) -> bytes:
    """A SentencePiece BPE model with Llama's settings (byte fallback, split digits, a dummy prefix, ids 0-2 for
    <unk> <s> </s>), trained on synthetic AmazonTitles text; the serialized model."""
    import sentencepiece as spm

    from titlegen_lib.synthetic import SyntheticSpec, iter_synthetic_lines

    texts = []
    for line in itertools.islice(iter_synthetic_lines(SyntheticSpec(n_records=records, seed=seed)), records):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            texts += [record[k] for k in ("title", "content") if isinstance(record.get(k), str) and record[k].strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=True, character_coverage=0.9995,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, normalization_rule_name="identity", remove_extra_whitespaces=False,
        hard_vocab_limit=False, num_threads=1, minloglevel=2)
    return model.getvalue()


def sentencepiece_llama_tokenizer(cache: Path) -> Any:
    """The Llama tokenizer (BOS added, no EOS added, no chat template) from `cache/sp-llama-tokenizer`, trained
    and saved there first if it is not."""
    from transformers import AutoTokenizer, LlamaTokenizer

    folder = cache / TOKENIZER_FOLDER
    if not (folder / "tokenizer.json").is_file():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        (partial / "tokenizer.model").write_bytes(train_sentencepiece())
        tokenizer = LlamaTokenizer.from_pretrained(str(partial), add_bos_token=True, add_eos_token=False)
        (partial / "tokenizer.model").unlink()  # tokenizer.json holds it all; loading it needs no sentencepiece
        tokenizer.save_pretrained(str(partial))
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return AutoTokenizer.from_pretrained(str(folder))


def random_llama_dir(spec: ModelSpec, cache: Path) -> Path:
    """A folder holding a Llama of `spec.llama_shape` with seeded random weights and the SentencePiece tokenizer,
    built into the cache once."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    assert spec.llama_shape is not None
    target = cache / spec.name
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    tokenizer = sentencepiece_llama_tokenizer(cache)
    shape = dict(spec.llama_shape)
    dtype = torch.bfloat16 if shape["num_hidden_layers"] * shape["hidden_size"] > 8192 else torch.float32
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.unk_token_id,
                         max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False, **shape)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(dtype)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # a half-written model is never picked up
    return target

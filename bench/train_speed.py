"""Training speed on one GPU: the seed notebook's settings vs plain transformers+PEFT vs the project's presets,
plus single-lever variants that show where the speed comes from.

    python bench/train_speed.py [--only seed,t4,large] [--budget-s 540] [--copy-to DIR]
    python bench/train_speed.py --dry-run          # CPU, offline SmolLM2, two steps per configuration

A TinyLlama-shaped Llama with random weights is built once (22 layers, hidden 2048, 32 heads, 4 KV heads;
speed does not depend on weight values). Its vocabulary is the SmolLM2 tokenizer's 49,152 tokens (no hub
here to fetch TinyLlama's 32,000-token one), without its chat template, so prompts use the plain layout
as TinyLlama base does. Every configuration runs in its own process on the same synthetic AmazonTitles
split, through the library's own `load_model` / `attach_lora` / `train.build_trainer`. Warm-up steps
(compilation, autotuning) are excluded; real tokens exclude padding. The colab-t4 preset runs with the
process capped at 14 GiB (`torch.cuda.set_per_process_memory_fraction`), a 15 GB T4 less its overheads.
Prints a table last; writes outputs/bench/train_speed.json after every configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "outputs" / "bench"
T4_CAP_GIB = 14.0
MAX_LENGTH = 1024


@dataclass(frozen=True)
class Bench:
    """One measured configuration: Config values, a memory cap, and levers the Config cannot express."""

    values: dict[str, Any]
    description: str
    cap_gib: float | None = None
    checkpointing: Any = None  # None: the library's choice; else "unsloth" / True / False for Unsloth
    profile: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


SEED = dict(backend="unsloth", load_in_4bit=True, per_device_train_batch_size=4, gradient_accumulation_steps=1,
            packing=False, lora_dropout=0.1, gradient_checkpointing=True,
            lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
HF = dict(backend="transformers", lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])

CONFIGS: dict[str, Bench] = {
    # --- the comparison the issue asks for ---
    "seed": Bench(SEED, "seed notebook: Unsloth 4-bit, batch 4, padded, dropout 0.1, offloaded checkpointing",
                  checkpointing="unsloth"),
    "hf_seed": Bench({**SEED, **HF}, "transformers+PEFT+bitsandbytes 4-bit at the seed's settings"),
    "hf_best": Bench({**HF, "load_in_4bit": False, "per_device_train_batch_size": 64, "packing": False,
                      "lora_dropout": 0.0, "gradient_checkpointing": False},
                     "transformers+PEFT, bf16 base, batch 64 padded by length (SDPA), no checkpointing"),
    "hf_b128": Bench({**HF, "load_in_4bit": False, "per_device_train_batch_size": 128, "packing": False,
                      "lora_dropout": 0.0, "gradient_checkpointing": False},
                     "transformers+PEFT, bf16 base, batch 128 padded by length, no checkpointing"),
    "hf_b32": Bench({**HF, "load_in_4bit": False, "per_device_train_batch_size": 32, "packing": False,
                     "lora_dropout": 0.0, "gradient_checkpointing": False},
                    "transformers+PEFT, bf16 base, batch 32 padded by length, no checkpointing"),
    "t4": Bench({"preset": "colab-t4", "backend": "unsloth"},
                f"project default: colab-t4 preset, capped at {T4_CAP_GIB:g} GiB", cap_gib=T4_CAP_GIB),
    "large": Bench({"preset": "large-gpu", "backend": "unsloth"}, "project default: large-gpu preset",
                   profile=True),
    # --- one lever at a time ---
    "t4_packed_b16": Bench({"preset": "colab-t4", "backend": "unsloth", "packing": True,
                            "per_device_train_batch_size": 16}, "previous colab-t4 preset: packing, batch 16",
                           cap_gib=T4_CAP_GIB, checkpointing="unsloth"),
    "large_packed_b32": Bench({"preset": "large-gpu", "backend": "unsloth", "packing": True,
                               "per_device_train_batch_size": 32}, "previous large-gpu preset: packing, batch 32"),
    "seed_d0": Bench({**SEED, "lora_dropout": 0.0}, "seed with lora_dropout 0", checkpointing="unsloth"),
    "t4_gc_std": Bench({"preset": "colab-t4", "backend": "unsloth"},
                       "colab-t4 with standard (non-offloading) checkpointing", cap_gib=T4_CAP_GIB, checkpointing=True),
    "t4_gc_offload": Bench({"preset": "colab-t4", "backend": "unsloth"},
                           "colab-t4 with Unsloth's offloading checkpointing", cap_gib=T4_CAP_GIB,
                           checkpointing="unsloth"),
    "t4_16bit": Bench({"preset": "colab-t4", "backend": "unsloth", "load_in_4bit": False},
                      "colab-t4 with a 16-bit base", cap_gib=T4_CAP_GIB),
    "t4_nogc": Bench({"preset": "colab-t4", "backend": "unsloth", "gradient_checkpointing": False},
                     "colab-t4 without checkpointing", cap_gib=T4_CAP_GIB),
    "large_4bit": Bench({"preset": "large-gpu", "backend": "unsloth", "load_in_4bit": True},
                        "large-gpu with a 4-bit base"),
    "large_gc": Bench({"preset": "large-gpu", "backend": "unsloth", "gradient_checkpointing": True},
                      "large-gpu with (library-chosen) checkpointing"),
    "large_nopack": Bench({"preset": "large-gpu", "backend": "unsloth", "packing": False},
                          "large-gpu without packing (padded batches)"),
    "large_b16": Bench({"preset": "large-gpu", "backend": "unsloth", "per_device_train_batch_size": 16},
                       "large-gpu at batch 16"),
    "large_b64": Bench({"preset": "large-gpu", "backend": "unsloth", "per_device_train_batch_size": 64},
                       "large-gpu at batch 64"),
    "large_nopack_b64": Bench({"preset": "large-gpu", "backend": "unsloth", "packing": False,
                               "per_device_train_batch_size": 64}, "large-gpu, padded batches of 64"),
    "large_nopack_b128": Bench({"preset": "large-gpu", "backend": "unsloth", "packing": False,
                                "per_device_train_batch_size": 128}, "large-gpu, padded batches of 128"),
    "t4_nopack": Bench({"preset": "colab-t4", "backend": "unsloth", "packing": False},
                       "colab-t4 with padded batches", cap_gib=T4_CAP_GIB),
    "t4_nopack_gc_std": Bench({"preset": "colab-t4", "backend": "unsloth", "packing": False},
                              "colab-t4, padded, standard checkpointing", cap_gib=T4_CAP_GIB, checkpointing=True),
    "t4_nopack_16bit": Bench({"preset": "colab-t4", "backend": "unsloth", "packing": False, "load_in_4bit": False},
                             "colab-t4, padded, 16-bit base", cap_gib=T4_CAP_GIB),
    "hf_best_compile": Bench({**HF, "load_in_4bit": False, "per_device_train_batch_size": 64, "packing": False,
                              "lora_dropout": 0.0, "gradient_checkpointing": False},
                             "hf_best with torch.compile (Trainer's torch_compile=True)",
                             extra={"torch_compile": True}),
    "large_compile": Bench({"preset": "large-gpu", "backend": "unsloth"}, "large-gpu preset with torch.compile",
                           extra={"torch_compile": True}),
    "hf_4bit_b32": Bench({**HF, "load_in_4bit": True, "per_device_train_batch_size": 32, "packing": False,
                          "lora_dropout": 0.0, "gradient_checkpointing": False},
                         "transformers+PEFT, 4-bit base, batch 32 padded, no checkpointing"),
}
DEFAULT_ONLY = "seed,hf_seed,hf_best,t4,large"


# ---------------------------------------------------------------- model and data (parent process)

def build_model(folder: Path, tokenizer_dir: Path, dry_run: bool) -> None:
    """A TinyLlama-shaped Llama with random bf16 weights, saved with the given tokenizer (no chat template)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = None  # TinyLlama base has none: prompts use the plain "### Instruction" layout
    shape = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4, max_position_embeddings=2048)
    if dry_run:
        shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=512)
    config = LlamaConfig(**shape, vocab_size=len(tokenizer), tie_word_embeddings=False, rms_norm_eps=1e-5,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def prepare_data(work: Path, dry_run: bool) -> None:
    """Synthetic AmazonTitles records cleaned into train/val JSONL (realistic title and description lengths)."""
    from titlegen_lib import Config
    from titlegen_lib.data import preprocess

    sizes = dict(synthetic_train_records=400, train_samples=120) if dry_run else \
        dict(synthetic_train_records=20000, train_samples=8000)
    preprocess(Config.from_dict(work_dir=str(work), synthetic_test_records=100, val_samples=20, test_samples=10,
                                **sizes))


# ---------------------------------------------------------------- one configuration (child process)

def run_configuration(name: str, model_dir: str, work: str, warmup: int, steps: int, min_seconds: float,
                      dry_run: bool) -> dict[str, Any]:
    """Train one configuration for warm-up + measured steps and return its measurements."""
    bench = CONFIGS[name]
    values = dict(bench.values)
    if dry_run:  # same code path on the CPU backend with a tiny model
        values.update(backend="cpu", load_in_4bit=False, per_device_train_batch_size=2)
        values.pop("preset", None)
    if values.get("backend") == "unsloth":
        import unsloth  # noqa: F401  (before transformers/trl/peft, so it can patch them)
    import torch
    from transformers import TrainerCallback

    from titlegen_lib import Config, models
    from titlegen_lib.train import build_datasets, build_trainer, optimizer_name, packing_supported

    cuda = torch.cuda.is_available()
    if cuda:
        if bench.cap_gib:
            total = torch.cuda.get_device_properties(0).total_memory / 2**30
            torch.cuda.set_per_process_memory_fraction(min(1.0, bench.cap_gib / total))
        torch.cuda.reset_peak_memory_stats()
    if bench.checkpointing is not None and hasattr(models, "unsloth_checkpointing"):
        models.unsloth_checkpointing = lambda config, model=None, _mode=bench.checkpointing: (  # noqa: E731
            _mode if config.gradient_checkpointing else False)
    if bench.extra:  # SFTConfig settings the Config does not have (sft_config imports trl.SFTConfig when called)
        import trl

        sft_config_class = trl.SFTConfig
        trl.SFTConfig = lambda *args, **kwargs: sft_config_class(*args, **{**kwargs, **bench.extra})
    profile_steps = 2 if bench.profile and cuda else 0
    config = Config.from_dict({**values, "model_name": model_dir, "work_dir": work, "run_name": f"bench-{name}",
                               "max_steps": warmup + steps * 4 + profile_steps + 1, "eval_steps": 10**6,
                               "save_steps": 10**6, "logging_steps": 10**6, "resume": False,
                               "early_stopping_patience": 0,  # no evaluations here: speed only
                               "max_seq_length": MAX_LENGTH if not dry_run else 256})
    started = time.perf_counter()
    loaded = models.attach_lora(models.load_model(config), config)
    models.prepare_for_training(loaded)
    splits = build_datasets(config, loaded.tokenizer)
    trainer = build_trainer(loaded, config, splits, config.per_device_train_batch_size,
                            config.gradient_accumulation_steps, progress=False)
    setup_s = time.perf_counter() - started

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    state: dict[str, Any] = {"tokens": 0, "slots": 0, "sequences": 0, "ends": [], "profiler": None}
    original_step = trainer.training_step

    def counting_step(model, inputs, *args, **kwargs):  # noqa: ANN001 - Trainer's signature
        step = trainer.state.global_step  # the optimizer step this micro-batch belongs to, 0-based
        if warmup <= step < warmup + state.get("measured", 10**9):
            ids = inputs["input_ids"]
            mask = inputs.get("attention_mask")
            state["tokens"] += int(mask.sum()) if mask is not None else int(ids.numel())
            state["slots"] += int(ids.numel())
            positions = inputs.get("position_ids")
            state["sequences"] += int((positions == 0).sum()) if positions is not None and mask is None \
                else int(ids.shape[0])
        return original_step(model, inputs, *args, **kwargs)

    class Timer(TrainerCallback):
        """Step boundaries (after the optimizer step), measured steps, then an optional profiled window."""

        def on_step_end(self, args, st, control, **kwargs):  # noqa: ANN001
            sync()
            now = time.perf_counter()
            step = st.global_step
            if step >= warmup and "measured" not in state:
                state["ends"].append(now)
                done = len(state["ends"]) - 1
                if done >= steps and (now - state["ends"][0] >= min_seconds or done >= steps * 4):
                    state["measured"] = done
                    if profile_steps:
                        state["profiler"] = start_profiler()
                    else:
                        control.should_training_stop = True
            elif "measured" in state and profile_steps and step >= warmup + state["measured"] + profile_steps:
                state["profiler"].stop()
                control.should_training_stop = True
            return control

    trainer.training_step = counting_step
    trainer.add_callback(Timer())
    error = None
    try:
        trainer.train()
    except Exception as exc:  # an OOM under the T4 cap is a result, not a crash
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    ends = state["ends"]
    measured = state.get("measured", len(ends) - 1)
    result: dict[str, Any] = {
        "name": name, "description": bench.description, "backend": loaded.backend,
        "torch_compile": bool(getattr(trainer.args, "torch_compile", False)),
        "batch": config.per_device_train_batch_size, "packing": bool(trainer.args.packing),
        "padding_free": bool(getattr(trainer.args, "padding_free", False)),
        "load_in_4bit": config.load_in_4bit, "gradient_checkpointing": config.gradient_checkpointing,
        "checkpointing_mode": str(models.unsloth_checkpointing(config, loaded.model)) if loaded.backend == "unsloth"
        and hasattr(models, "unsloth_checkpointing") else str(config.gradient_checkpointing),
        "lora_dropout": config.lora_dropout, "optim": optimizer_name(config, loaded.backend),
        "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
        "packing_supported": packing_supported(loaded), "memory_cap_gib": bench.cap_gib,
        "setup_s": round(setup_s, 1), "error": error,
    }
    if cuda:
        result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    if measured >= 1:
        durations = [b - a for a, b in zip(ends[:measured], ends[1:measured + 1])]
        seconds = sum(durations)
        result.update(steps=measured, warmup_steps=warmup, seconds=round(seconds, 2),
                      real_tokens_per_s=round(state["tokens"] / seconds),
                      padded_slots_per_s=round(state["slots"] / seconds),
                      padding_fraction=round(1 - state["tokens"] / max(1, state["slots"]), 3),
                      examples_per_s=round(state["sequences"] / seconds, 1),
                      step_ms=round(1000 * seconds / measured, 1),
                      step_ms_median=round(1000 * statistics.median(durations), 1),
                      real_tokens_per_step=round(state["tokens"] / measured))
    if state["profiler"] is not None:
        result["profile"] = summarize_profile(state["profiler"], profile_steps)
    return result


def start_profiler() -> Any:
    from torch.profiler import ProfilerActivity, profile

    profiler = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
    profiler.start()
    return profiler


def summarize_profile(profiler: Any, steps: int) -> dict[str, Any]:
    """GPU kernel time per step by kind, and how busy the GPU was."""
    kinds = {"matmul (gemm)": ("gemm", "matmul", "cutlass", "sm90_xmma", "nvjet", "cublas", "wgmma"),
             "attention": ("flash", "fmha", "attention", "sdpa", "efficient_attention"),
             "4-bit dequantize": ("dequant", "kdequant", "nf4"),
             "loss / lm head": ("cross_entropy", "logsumexp", "log_softmax", "chunked", "_logprob", "nll"),
             "optimizer": ("adam", "multi_tensor", "foreach", "optimizer"),
             "norm / rope / activation": ("rms", "layer_norm", "rope", "rotary", "silu", "swiglu", "geglu"),
             "copy / cast": ("copy", "cast", "to_copy", "memcpy", "cat", "fill")}
    totals: dict[str, float] = {k: 0.0 for k in kinds}
    totals["other"] = 0.0
    kernels: dict[str, float] = {}
    for event in profiler.events():
        device_type = str(getattr(event, "device_type", ""))
        if not device_type.endswith("CUDA"):
            continue
        micros = float(getattr(event, "device_time", 0) or getattr(event, "cuda_time", 0) or 0)
        name = event.name
        kernels[name] = kernels.get(name, 0.0) + micros
        lowered = name.lower()
        kind = next((k for k, keys in kinds.items() if any(key in lowered for key in keys)), "other")
        totals[kind] += micros
    busy_ms = sum(totals.values()) / 1000
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:15]
    cpu_ops: dict[str, float] = {}
    for item in profiler.key_averages():
        cpu_ops[item.key] = float(item.self_cpu_time_total)
    return {"steps": steps, "gpu_busy_ms_per_step": round(busy_ms / steps, 1),
            "by_kind_ms_per_step": {k: round(v / 1000 / steps, 1) for k, v in totals.items()},
            "top_kernels_ms_per_step": [(n[:120], round(v / 1000 / steps, 2)) for n, v in top],
            "top_cpu_self_ms_per_step": [(n[:80], round(v / 1000 / steps, 2)) for n, v in
                                         sorted(cpu_ops.items(), key=lambda kv: -kv[1])[:8]]}


# ---------------------------------------------------------------- parent

def versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                              "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
                              if torch.cuda.is_available() else None}
    for package in ("torch", "transformers", "peft", "trl", "accelerate", "unsloth", "unsloth_zoo", "bitsandbytes",
                    "datasets", "triton"):
        try:
            report[package] = version(package)
        except PackageNotFoundError:
            report[package] = None
    return report


def table(results: list[dict[str, Any]]) -> str:
    seed = next((r.get("real_tokens_per_s") for r in results if r["name"] == "seed"), None)
    hf_best = max((r.get("real_tokens_per_s") or 0 for r in results if r["name"].startswith("hf")), default=0)
    lines = ["| configuration | real tokens/s | step ms (median) | real tokens/step | padding | peak GiB "
             "(alloc/reserved) | vs seed | vs best transformers+PEFT |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        speed = r.get("real_tokens_per_s")
        cell = f"{speed:,}" if speed else f"failed: {r.get('error') or 'no result'}"[:80]
        peak = f"{r.get('peak_allocated_gib', '-')}/{r.get('peak_reserved_gib', '-')}"
        if r.get("memory_cap_gib"):
            peak += f" (cap {r['memory_cap_gib']:g})"
        vs_seed = f"{speed / seed:.1f}x" if speed and seed else "-"
        vs_hf = f"{speed / hf_best:.2f}x" if speed and hf_best else "-"
        lines.append(f"| {r['name']}: {r['description']} | {cell} | {r.get('step_ms', '-')} "
                     f"({r.get('step_ms_median', '-')}) | {r.get('real_tokens_per_step', '-')} | "
                     f"{r.get('padding_fraction', '-')} | {peak} | {vs_seed} | {vs_hf} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=DEFAULT_ONLY, help=f"comma-separated names from {sorted(CONFIGS)}")
    parser.add_argument("--warmup", type=int, default=4, help="steps excluded from the timing")
    parser.add_argument("--steps", type=int, default=10, help="measured steps (at least; up to 4x to fill --min-seconds)")
    parser.add_argument("--min-seconds", type=float, default=8.0, help="measure at least this long where steps allow")
    parser.add_argument("--budget-s", type=float, default=540.0, help="skip configurations once this much time is spent")
    parser.add_argument("--tokenizer", default=str(ROOT / ".gpu" / "tok"), help="tokenizer folder for the model")
    parser.add_argument("--model-dir", default="", help="default: outputs/bench/tinyllama-random (built if missing)")
    parser.add_argument("--work", default="", help="default: outputs/bench/train_work")
    parser.add_argument("--copy-to", default="", help="also write the JSON and child logs here")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny random model, offline tokenizer, 1 step")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    suffix = "-dry" if args.dry_run else ""
    model_dir = Path(args.model_dir or OUT / f"tinyllama-random{suffix}")
    work = Path(args.work or OUT / f"train_work{suffix}")
    if args.child:
        result = run_configuration(args.child, str(model_dir), str(work), args.warmup, args.steps,
                                   args.min_seconds, args.dry_run)
        print("RESULT " + json.dumps(result), flush=True)
        return

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"--only: unknown configuration(s) {unknown}; choose from {sorted(CONFIGS)}")
    if args.dry_run:
        args.warmup, args.steps, args.min_seconds = 1, 1, 0.0
        if args.tokenizer == str(ROOT / ".gpu" / "tok") and not Path(args.tokenizer).is_dir():
            from titlegen_lib import Config
            from titlegen_lib.models import load_tokenizer

            args.tokenizer = str(OUT / "offline-tok")
            load_tokenizer(Config.from_dict(preset="offline")).save_pretrained(args.tokenizer)
    started = time.perf_counter()
    if not (model_dir / "config.json").is_file():
        build_model(model_dir, Path(args.tokenizer), args.dry_run)
    prepare_data(work, args.dry_run)
    print(f"model and data ready in {time.perf_counter() - started:.0f} s", flush=True)
    report: dict[str, Any] = {"command": "python bench/train_speed.py " + " ".join(sys.argv[1:]),
                              **versions(), "max_length": MAX_LENGTH, "warmup_steps": args.warmup,
                              "model": "TinyLlama-shaped random Llama (22 layers, hidden 2048, 32/4 heads), "
                                       "vocab 49,152 (SmolLM2 tokenizer)", "results": []}
    copy_to = Path(args.copy_to) if args.copy_to else None
    logs = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    for name in names:
        spent = time.perf_counter() - started
        if spent > args.budget_s:
            print(f"{name}: skipped, {spent:.0f} s spent of the {args.budget_s:.0f} s budget", flush=True)
            report["results"].append({"name": name, "description": CONFIGS[name].description,
                                      "error": "skipped: time budget"})
            continue
        t0 = time.perf_counter()
        command = [sys.executable, __file__, "--child", name, "--model-dir", str(model_dir), "--work", str(work),
                   "--warmup", str(args.warmup), "--steps", str(args.steps), "--min-seconds", str(args.min_seconds)]
        if args.dry_run:
            command.append("--dry-run")
        try:
            proc = subprocess.run(command, capture_output=True, text=True, env=env,
                                  timeout=max(60.0, args.budget_s + 120 - spent))
            output, code = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            output, code = f"{exc.stdout or ''}{exc.stderr or ''}\nTIMEOUT", -1
        logs.append(f"===== {name} (exit {code}) =====\n{output[-6000:]}")
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        if lines:
            result = json.loads(lines[-1][7:])
        else:
            result = {"name": name, "description": CONFIGS[name].description,
                      "error": f"exit {code}: " + (output.strip().splitlines() or ["no output"])[-1][:300]}
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        report["results"].append(result)
        speed = result.get("real_tokens_per_s")
        print(f"{name}: {speed:,} real tokens/s, {result.get('step_ms')} ms/step, peak "
              f"{result.get('peak_allocated_gib')} GiB, {result['wall_s']} s" if speed else
              f"{name}: FAILED {result.get('error')}\n{output[-3000:]}", flush=True)
        write_outputs(report, logs, copy_to, f"train_speed{suffix}.json")
    print("\n" + " ".join(f"{k} {report.get(k)}" for k in ("gpu", "torch", "transformers", "peft", "trl",
                                                          "unsloth", "bitsandbytes")))
    print(table(report["results"]))
    for r in report["results"]:
        if r.get("profile"):
            p = r["profile"]
            print(f"\nprofile of {r['name']}: GPU busy {p['gpu_busy_ms_per_step']} ms of {r.get('step_ms')} ms "
                  f"per step; by kind (ms/step): {p['by_kind_ms_per_step']}")


def write_outputs(report: dict[str, Any], logs: list[str], copy_to: Path | None, filename: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    (OUT / filename).write_text(text)
    if copy_to:
        copy_to.mkdir(parents=True, exist_ok=True)
        (copy_to / filename).write_text(text)
        (copy_to / "train_speed_logs.txt").write_text("\n\n".join(logs))


if __name__ == "__main__":
    main()

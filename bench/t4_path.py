"""The T4 training path in one process, for when the device time left is too short for the notebook series
(bench/gpu_series.py): Unsloth imported first, fp16 with a gradient scaler, GPU memory capped (15 GiB), the
model's own tokenizer; preprocess, train a few steps, compare; meant to fit a few minutes of
device time (not yet run on a GPU).

    TITLEGEN_GPU_MEMORY_GIB=15 PYTHONPATH=bench/gpu_cap:$PYTHONPATH python bench/t4_path.py
    python bench/t4_path.py --model smollm2-135m-offline

Prints seconds per stage, peak GPU memory (allocated and reserved, from torch), the losses and the stop
rates; writes outputs/bench/t4_path-<model>.json. Without a GPU it runs the CPU backend (a check of this
script, not of the T4 path).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tinyllama-shaped-random")
    parser.add_argument("--work", type=Path, default=Path("/tmp/titlegen-t4-path"))
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    started = time.perf_counter()
    try:  # first, as the setup cell does: Unsloth patches transformers, trl and peft when they load
        import unsloth  # noqa: F401
        backend = "unsloth"
    except ImportError:
        backend = "cpu"
    seconds = {"import_unsloth": round(time.perf_counter() - started, 1)}
    import torch

    from titlegen_lib import Config
    from titlegen_lib.config import param_overrides
    from titlegen_lib.data import preprocess
    from titlegen_lib.evaluate import run_comparison
    from titlegen_lib.models import training_precision
    from titlegen_lib.train import train

    gpu = torch.cuda.is_available()
    settings = dict(preset="colab-t4", model_name=args.model, backend=backend, precision="fp16" if gpu else "auto",
                    synthetic_train_records=1500, synthetic_test_records=300, test_samples=24, val_samples=64,
                    max_steps=20, eval_steps=10, save_steps=10, logging_steps=5, embedding_model="",
                    work_dir=str(args.work / args.model / "work"), output_dir=str(args.work / args.model / "out"))
    config = Config.from_dict({**settings, **param_overrides(args.param)})
    stages = {"preprocess": lambda: preprocess(config, progress=False), "train": lambda: train(config, progress=False),
              "compare": lambda: run_comparison(config, progress=False)}
    for name, stage in stages.items():
        begun = time.perf_counter()
        stage()
        seconds[name] = round(time.perf_counter() - begun, 1)
        print(f"[t4_path] {name}: {seconds[name]} s", flush=True)
    run = json.loads((config.run_dir / "run.json").read_text())
    metrics = json.loads((config.eval_dir / "metrics.json").read_text())
    result = {
        "model": args.model, "gpu": torch.cuda.get_device_name(0) if gpu else "none (CPU backend)",
        "seconds": seconds,
        "peak_allocated_mib": torch.cuda.max_memory_allocated() // 2**20 if gpu else None,
        "peak_reserved_mib": torch.cuda.max_memory_reserved() // 2**20 if gpu else None,
        "training_precision": training_precision(run["backend"], config.precision),
        "run": {k: run.get(k) for k in ("backend", "steps", "initial_eval_loss", "eval_loss", "batch_size",
                                        "wall_seconds", "prompt_template")},
        "stopped_at_eos": {s: (v.get("stopped_at_eos") or {}).get("mean") for s, v in metrics["systems"].items()},
        "cut_at_max_new_tokens": {s: v.get("cut_at_max_new_tokens") for s, v in metrics["systems"].items()},
    }
    target = ROOT / "outputs" / "bench" / f"t4_path-{args.model}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

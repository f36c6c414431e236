"""Check the library's real GPU code paths end to end: train (with eval and checkpoints), save the adapter,
reload it in a fresh process, generate. Once per backend ("unsloth", and "transformers" = transformers +
PEFT + bitsandbytes 4-bit), on the local random-weight TinyLlama-shaped model from bench/train_speed.py.

    python bench/verify_backends.py [--backends unsloth,transformers] [--copy-to DIR]
    python bench/verify_backends.py --dry-run        # CPU backend, tiny model

Random weights: the outputs are gibberish; what is checked is that every step runs and the adapter that
comes back is the one that was trained. Writes outputs/bench/verify_backends.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "outputs" / "bench"


def make_config(backend: str, model_dir: str, work: str) -> Any:
    from titlegen_lib import Config

    return Config.from_dict(model_name=model_dir, backend=backend, load_in_4bit=backend != "cpu",
                            work_dir=f"{work}/{backend}", output_dir=f"{work}/{backend}/out", run_name="verify",
                            synthetic_train_records=800, synthetic_test_records=100, train_samples=300,
                            val_samples=16, test_samples=8, max_steps=6, per_device_train_batch_size=4,
                            eval_steps=3, save_steps=3, logging_steps=2, max_new_tokens=24, gen_batch_size=4,
                            max_seq_length=512, resume=False)


def lora_b_abs_sum(model: Any) -> float:
    """Sum of |lora_B|: zero at initialisation, non-zero once trained (or once a trained adapter is loaded)."""
    return float(sum(p.detach().float().abs().sum() for n, p in model.named_parameters() if "lora_B" in n))


def child_train(backend: str, model_dir: str, work: str) -> dict[str, Any]:
    if backend == "unsloth":
        import unsloth  # noqa: F401
    from titlegen_lib.data import preprocess
    from titlegen_lib.train import train

    config = make_config(backend, model_dir, work)
    preprocess(config)
    started = time.perf_counter()
    result = train(config, progress=False)
    run = json.loads(result.run_json.read_text())
    adapter_files = sorted(p.name for p in result.adapter_dir.iterdir())
    checkpoints = sorted(p.name for p in (config.run_dir / "checkpoints").glob("checkpoint-*"))
    return {"backend": run["backend"], "steps": result.steps, "train_loss": result.train_loss,
            "eval_loss": result.eval_loss, "initial_eval_loss": result.initial_eval_loss,
            "packing": run["packing"], "batch_size": run["batch_size"], "seconds": round(time.perf_counter() - started, 1),
            "adapter_files": adapter_files, "checkpoints": checkpoints,
            "ok": result.steps == config.max_steps and "adapter_config.json" in adapter_files
            and result.eval_loss is not None and math.isfinite(result.eval_loss)}


def child_reload(backend: str, model_dir: str, work: str) -> dict[str, Any]:
    if backend == "unsloth":
        import unsloth  # noqa: F401
    from titlegen_lib.generate import generate_descriptions
    from titlegen_lib.models import load_model

    config = make_config(backend, model_dir, work)
    loaded = load_model(config, adapter_dir=config.adapter_dir)
    trained = lora_b_abs_sum(loaded.model)
    titles = ["Stainless Steel Water Bottle, 750 ml", "The Silent Harbor: A Novel", "USB-C Charging Cable 2 m",
              "Wooden Puzzle Set for Kids", "Organic Green Tea, 100 Bags"]
    generations = generate_descriptions(loaded, titles, config, progress=False)
    return {"backend": loaded.backend, "lora_b_abs_sum": trained, "generated": len(generations),
            "new_tokens": [g.new_tokens for g in generations], "sample": generations[0].text[:120],
            "ok": trained > 0 and len(generations) == len(titles) and all(g.new_tokens > 0 for g in generations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="unsloth,transformers")
    parser.add_argument("--model-dir", default="")
    parser.add_argument("--work", default="")
    parser.add_argument("--copy-to", default="")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    suffix = "-dry" if args.dry_run else ""
    model_dir = args.model_dir or str(OUT / f"tinyllama-random{suffix}")
    work = args.work or str(OUT / f"verify_work{suffix}")
    if args.child:
        step, backend = args.child.split(":")
        run = child_train if step == "train" else child_reload
        print("RESULT " + json.dumps(run(backend, model_dir, work)), flush=True)
        return
    if not (Path(model_dir) / "config.json").is_file():
        sys.exit(f"{model_dir} is missing: run bench/train_speed.py first (it builds the model)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    backends = ["cpu"] if args.dry_run else args.backends.split(",")
    report: dict[str, Any] = {"results": {}}
    logs = []
    for backend in backends:
        for step in ("train", "reload"):
            command = [sys.executable, __file__, "--child", f"{step}:{backend}", "--model-dir", model_dir,
                       "--work", work] + (["--dry-run"] if args.dry_run else [])
            proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
            output = proc.stdout + proc.stderr
            logs.append(f"===== {step}:{backend} (exit {proc.returncode}) =====\n{output[-6000:]}")
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            result = json.loads(lines[-1][7:]) if lines else {"ok": False, "error": output[-2500:]}
            report["results"][f"{step}:{backend}"] = result
            print(f"{step}:{backend}: {'ok' if result.get('ok') else 'FAILED'} "
                  f"{json.dumps({k: v for k, v in result.items() if k != 'error'})[:400]}", flush=True)
            if not result.get("ok"):
                print(result.get("error", ""), flush=True)
                break
    name = f"verify_backends{suffix}.json"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(report, indent=2))
    if args.copy_to:
        Path(args.copy_to).mkdir(parents=True, exist_ok=True)
        (Path(args.copy_to) / name).write_text(json.dumps(report, indent=2))
        (Path(args.copy_to) / "verify_logs.txt").write_text("\n\n".join(logs))
    print("| step:backend | ok |\n|---|---|")
    for key, result in report["results"].items():
        print(f"| {key} | {result.get('ok')} |")


if __name__ == "__main__":
    main()

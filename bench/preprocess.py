"""Preprocess speed and memory on a 2.2M-line synthetic trn.json (the real file has 2,248,619 lines).

    .venv/bin/python bench/preprocess.py [--lines 2248619] [--test-lines 100000]

Prints a table and writes outputs/bench/preprocess.json. The preprocess runs in a child process so its
peak RSS is measured alone (targets: >= 150,000 records/s on 2 cores, peak RSS < 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from titlegen_lib.synthetic import SyntheticSpec, write_synthetic  # noqa: E402

CHILD = """
import json, sys, time
from titlegen_lib import Config
from titlegen_lib.data import InputFile, preprocess_files
config = Config.from_dict(train_samples=int(sys.argv[3]), val_samples=2000, test_samples=1000)  # Colab defaults
started = time.perf_counter()
result = preprocess_files(InputFile(sys.argv[1]), InputFile(sys.argv[2]), config, sys.argv[4], force=True)
print(json.dumps({"seconds": time.perf_counter() - started, "summary": result.summary}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_248_619)
    parser.add_argument("--test-lines", type=int, default=100_000)
    parser.add_argument("--train-samples", type=int, default=0, help="0 writes every clean record")
    parser.add_argument("--work", default=str(ROOT / "outputs" / "bench" / "preprocess_data"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train, test = work / "trn.json", work / "tst.json"
    for path, lines, seed in ((train, args.lines, 1), (test, args.test_lines, 2)):
        if not path.is_file() or sum(1 for _ in open(path, "rb")) != lines:
            started = time.perf_counter()
            write_synthetic(path, SyntheticSpec(n_records=lines, seed=seed, malformed_rate=0.001))
            print(f"generated {lines:,} synthetic lines in {time.perf_counter() - started:.1f}s -> {path}")
    out = work / "out"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(train), str(test), str(args.train_samples), str(out)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        sys.exit(f"preprocess failed:\n{proc.stderr[-3000:]}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = child["summary"]
    lines = summary["files"]["train"]["lines"] + summary["files"]["test"]["lines"]
    result = {
        "lines": lines,
        "train_file_bytes": train.stat().st_size,
        "seconds": round(child["seconds"], 2),
        "records_per_second": round(lines / child["seconds"]),
        "peak_rss_mib": round(peak_mib, 1),
        "written": summary["written"],
        "drops_train": summary["files"]["train"]["drops"],
        "cpu_count": os.cpu_count(),
        "targets": {"records_per_second": 150_000, "peak_rss_mib": 1024},
    }
    target = ROOT / "outputs" / "bench" / "preprocess.json"
    target.write_text(json.dumps(result, indent=2))
    print(f"\n| lines | file MB | seconds | records/s | peak RSS MiB | written train/val/test |")
    print("|---|---|---|---|---|---|")
    print(f"| {lines:,} | {result['train_file_bytes'] / 1e6:.0f} | {result['seconds']} | "
          f"{result['records_per_second']:,} | {result['peak_rss_mib']} | "
          f"{summary['written']['train']:,}/{summary['written']['val']:,}/{summary['written']['test']:,} |")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

"""Does a wheel folder on Drive make a fresh runtime's install take seconds? The setup cell's install
(`colab.install_requirements`) into new virtual environments that hold only torch, numpy and pyyaml (as a Colab
runtime holds its own), first with no wheel folder (it resolves against the package index and then saves the
wheels of what it changed), then again from the folder the first run filled.

    .venv/bin/python bench/colab_install.py [--runs 1]

Every run is a new venv. Prints a table and writes outputs/bench/colab_install.json. Measured on this machine's
package index and disk, not Colab's network and Drive: the ratio is the claim, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

INSTALL = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from titlegen_lib.colab import COLAB_REQUIREMENTS, PROJECT_ROOT, install_requirements
started = time.perf_counter()
report = install_requirements(PROJECT_ROOT / COLAB_REQUIREMENTS, gpu=True, wheelhouse=Path(sys.argv[2]))
print(report)
print(f"{time.perf_counter() - started:.1f} {len(report.installed)}")
"""


def fresh_venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    # What a Colab runtime already has and the install must keep: torch and numpy (here the CPU build on disk).
    subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "numpy", "pyyaml"], check=True,
                   capture_output=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="warm runs after the cold one")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="titlegen-install-") as tmp:
        cache = Path(tmp) / "drive-wheels"
        for number, kind in enumerate(["index", *["wheel folder"] * args.runs]):
            venv = Path(tmp) / f"venv{number}"
            python = fresh_venv(venv)
            if kind == "index":
                shutil.rmtree(cache, ignore_errors=True)
            done = subprocess.run([str(python), "-c", INSTALL, str(ROOT), str(cache)], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"install failed:\n{done.stderr[-2000:]}")
            seconds, installed = done.stdout.split()[-2:]
            size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20
            results.append({"run": number + 1, "cache": kind, "seconds": float(seconds), "packages": int(installed),
                            "cache_mib": round(size, 1)})
            print(results[-1], flush=True)
            shutil.rmtree(venv)
    print("\n| run | installed from | seconds | packages | wheel folder MiB |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['run']} | {r['cache']} | {r['seconds']} | {r['packages']} | {r['cache_mib']} |")
    target = ROOT / "outputs" / "bench" / "colab_install.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

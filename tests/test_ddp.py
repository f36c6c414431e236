"""The CLI trains the same way as the notebook, also under `accelerate launch` with 2 CPU processes (DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from titlegen_lib import Config
from titlegen_lib.data import preprocess

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_cpu_processes_train_in_step(tmp_path):
    settings = ["--preset", "offline", "--work-dir", str(tmp_path / "work"), "-p", "synthetic_train_records=300",
                "-p", "synthetic_test_records=40", "-p", "train_samples=48", "-p", "val_samples=8",
                "-p", "test_samples=4", "-p", "max_steps=3", "-p", "eval_steps=3", "-p", "save_steps=3",
                "-p", "per_device_train_batch_size=4", "-p", "max_seq_length=160", "-p", "logging_steps=1"]
    preprocess(Config.from_cli(settings))
    # accelerate's --cpu flag always starts one process; --multi_gpu on a machine without a GPU starts
    # torch.distributed with the gloo backend (DistributedType.MULTI_CPU).
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "-m", "titlegen_lib", "train", *settings, "-p", "report_to=none"]
    # tests/ddp_write_log/sitecustomize.py logs, in every process, each file created or removed under work/.
    write_log = tmp_path / "writes.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "ddp_write_log"), str(ROOT)]),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TITLEGEN_WRITE_LOG_ROOT": str(tmp_path / "work"), "TITLEGEN_WRITE_LOG": str(write_log)}
    proc = subprocess.run(launcher + ["--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "work" / "runs" / "default"
    ranks = [json.loads((run_dir / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["steps"] == ranks[1]["steps"] == 3
    assert ranks[0]["lora_checksum"] == pytest.approx(ranks[1]["lora_checksum"], rel=1e-6)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()

    # Rank 0 alone writes the run's files (adapter, run.json, logs, checkpoints, the training key); the other
    # rank writes only its own record and its own RNG state inside checkpoints, and removes nothing.
    writes = [json.loads(line) for line in write_log.read_text().splitlines()]
    assert {w["rank"] for w in writes} == {0, 1}, writes[:5]
    other = sorted({Path(w["path"]).relative_to(run_dir).as_posix() for w in writes if w["rank"] == 1})
    allowed = [p for p in other if p.startswith(".rank-1.json.") or p == "rank-1.json"
               or (p.startswith("checkpoints/") and Path(p).name == "rng_state_1.pth")]
    assert other == allowed, f"rank 1 wrote {sorted(set(other) - set(allowed))}"
    assert any(w["rank"] == 0 and w["path"].endswith("run.json") for w in writes)

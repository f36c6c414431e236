"""Interrupted training: SIGKILL after a checkpoint, resume, and end where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from titlegen_lib.data import preprocess
from titlegen_lib.train import CHECKPOINT_DONE, last_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = (
    "import sys, json\n"
    "from titlegen_lib import Config\n"
    "from titlegen_lib.train import train\n"
    "train(Config.from_dict(json.loads(sys.argv[1])), progress=False)\n"
)


def _settings(work: Path) -> dict:
    return dict(preset="offline", work_dir=str(work), synthetic_train_records=300, synthetic_test_records=40,
                train_samples=64, val_samples=8, test_samples=4, max_steps=8, save_steps=4, eval_steps=4,
                logging_steps=1, per_device_train_batch_size=4, max_seq_length=160, save_total_limit=3)


def _start(settings: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, json.dumps(settings)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _learning_rates(run_dir: Path) -> dict[int, float]:
    history = json.loads((run_dir / "log_history.json").read_text())
    return {h["step"]: h["learning_rate"] for h in history if "learning_rate" in h}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    from titlegen_lib import Config

    reference, interrupted = _settings(tmp_path / "ref"), _settings(tmp_path / "cut")
    for settings in (reference, interrupted):
        preprocess(Config.from_dict(settings))

    proc = _start(interrupted)
    checkpoints = tmp_path / "cut" / "runs" / "default" / "checkpoints"
    deadline = time.time() + 600
    while not list(checkpoints.glob(f"*/checkpoint-4/{CHECKPOINT_DONE}")):  # checkpoints/<training key>/
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "runs" / "default" / "adapter").exists()

    resumed = _start(interrupted)
    reference_run = _start(reference)
    out_resumed, _ = resumed.communicate(timeout=900)
    out_reference, _ = reference_run.communicate(timeout=900)
    assert resumed.returncode == 0, out_resumed
    assert reference_run.returncode == 0, out_reference
    assert "resuming from" in out_resumed and "checkpoint-4" in out_resumed

    cut_run, ref_run = tmp_path / "cut" / "runs" / "default", tmp_path / "ref" / "runs" / "default"
    assert json.loads((cut_run / "run.json").read_text())["steps"] == 8
    lr_cut, lr_ref = _learning_rates(cut_run), _learning_rates(ref_run)
    assert sorted(lr_cut) == list(range(1, 9))  # a continuous curve: steps 1-4 from the checkpoint, 5-8 after
    assert lr_cut == pytest.approx(lr_ref)  # optimizer and scheduler state continued
    cut_weights = load_file(cut_run / "adapter" / "adapter_model.safetensors")
    ref_weights = load_file(ref_run / "adapter" / "adapter_model.safetensors")
    assert cut_weights.keys() == ref_weights.keys()
    for name, tensor in ref_weights.items():
        assert (cut_weights[name] - tensor).abs().max() < 1e-4, name


def test_a_half_written_checkpoint_is_never_resumed(tmp_path):
    folder = tmp_path / "checkpoints"
    complete = folder / "checkpoint-10"
    complete.mkdir(parents=True)
    (complete / "trainer_state.json").write_text("{}")
    (complete / CHECKPOINT_DONE).write_text("10")
    partial = folder / "checkpoint-20"  # killed while the Trainer was writing it
    partial.mkdir()
    (partial / "trainer_state.json").write_text("{")
    assert last_checkpoint(folder) == complete
    assert last_checkpoint(tmp_path / "missing") is None

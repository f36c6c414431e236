"""Faults a Colab work folder meets: a run killed at any moment, two runs in one folder, a full disk. After each,
the prepared data is either rebuilt or byte-identical to an uninterrupted run's, and never mixed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from titlegen_lib import Config
from titlegen_lib.data import InputFile, prepared_folder_state, preprocess_files, preprocess_key
from titlegen_lib.storage import WorkFolderBusy, exclusive
from titlegen_lib.synthetic import write_synthetic_dataset

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"old": dict(train_samples=0, val_samples=0, test_samples=0),
            "new": dict(train_samples=0, val_samples=0, test_samples=0, max_content_chars=800, seed=7)}
# Preprocess in a new process, with small blocks and two workers, so a run has many moments to be killed at.
CHILD = """
import json, sys
import titlegen_lib.data as data
from titlegen_lib import Config
data.BLOCK_BYTES, data.PARALLEL_MIN_BYTES = 64 * 1024, 0
settings, train, test, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
data.preprocess_files(data.InputFile(train), data.InputFile(test), Config.from_dict(settings), out, workers=2)
"""
VOLATILE = ("created", "seconds", "lines_per_second")


def config_for(name: str, work: Path) -> Config:
    return Config.from_dict(preset="offline", work_dir=str(work), **SETTINGS[name])


def outputs(folder: Path) -> dict[str, bytes | dict]:
    """What a data folder holds: the splits' bytes and the summary without its timings."""
    found: dict[str, bytes | dict] = {name: (folder / name).read_bytes()
                                      for name in ("train.jsonl", "val.jsonl", "test.jsonl")}
    summary = json.loads((folder / "summary.json").read_text())
    found["summary"] = {k: v for k, v in summary.items() if k not in VOLATILE}
    return found


def start(name: str, inputs: tuple[InputFile, InputFile], out: Path, scratch: Path) -> subprocess.Popen:
    settings = {"preset": "offline", **SETTINGS[name]}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TITLEGEN_SCRATCH": str(scratch)}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(settings), str(inputs[0].path),
                             str(inputs[1].path), str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def snapshot(folder: Path) -> tuple:
    """Every file under `folder` (hidden ones too) and its size."""
    found = []
    for base, _, files in os.walk(folder):
        for name in files:
            path = Path(base) / name
            try:
                found.append((str(path.relative_to(folder)), path.stat().st_size))
            except FileNotFoundError:
                pass
    return tuple(sorted(found))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[InputFile, InputFile]:
    files = write_synthetic_dataset(tmp_path_factory.mktemp("raw"), 6000, 1500, seed=3, malformed_rate=0.01)
    return InputFile(files["trn"]), InputFile(files["tst"])


@pytest.fixture(scope="module")
def references(inputs, tmp_path_factory) -> dict[str, dict]:
    """Each setting's outputs from an uninterrupted run."""
    base = tmp_path_factory.mktemp("reference")
    return {name: outputs(preprocess_files(*inputs, config_for(name, base), base / name, workers=1).paths["train"]
                          .parent) for name in SETTINGS}


def fresh_folder(base: Path, inputs) -> tuple[Path, Path]:
    """A work folder holding the old settings' finished data, and a scratch folder inside it (watched too)."""
    work = base / "work"
    preprocess_files(*inputs, config_for("old", work), work / "data", workers=1)
    (work / "scratch").mkdir()
    return work, work / "scratch"


@pytest.mark.slow
def test_a_preprocess_killed_at_any_moment_is_rebuilt_or_identical(inputs, references, tmp_path, monkeypatch):
    # The moments: when the work folder changed (a file appeared, grew, was renamed or went) while a run with new
    # settings replaced the old data, as seconds from the run's start.
    work, scratch = fresh_folder(tmp_path / "watch", inputs)
    states, moments = [], []
    started = time.perf_counter()
    proc = start("new", inputs, work / "data", scratch)
    while proc.poll() is None:
        state = snapshot(work)
        if not states or state != states[-1]:
            states.append(state)
            moments.append(time.perf_counter() - started)
    assert proc.returncode == 0, proc.stderr.read()
    assert len(moments) >= 24, f"only {len(moments)} changes seen"
    chosen = [moments[round(i * (len(moments) - 2) / 23)] for i in range(24)]  # the last change is the exit
    watched = moments[-1]
    killed = 0
    for number, moment in enumerate(chosen):
        for attempt in range(3):
            # The killing run watches the folder too, so it runs about as fast as the watched one; a run that still
            # ended first (a machine busier before than now) is tried again at the same fraction of its own length.
            work, scratch = fresh_folder(tmp_path / f"kill{number}-{attempt}", inputs)
            started = time.perf_counter()
            proc = start("new", inputs, work / "data", scratch)
            while proc.poll() is None and time.perf_counter() - started < moment:
                snapshot(work)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            if proc.wait() == -signal.SIGKILL:
                killed += 1
                break
            assert proc.returncode == 0, proc.stderr.read()
            moment *= (time.perf_counter() - started) / watched
        monkeypatch.setenv("TITLEGEN_SCRATCH", str(scratch))  # the next runs use the same scratch folder
        # Whatever the moment, each setting's next run gives exactly an uninterrupted run's outputs.
        for name in ("old", "new", "old"):
            folder = preprocess_files(*inputs, config_for(name, work), work / "data", workers=1).paths["train"].parent
            assert outputs(folder) == references[name], f"killed at {moment:.3f} s, then {name}"
        leftovers = [p.name for p in work.iterdir() if p.name not in ("data", "scratch", "synthetic")
                     and not p.name.startswith(".data.lock")]
        assert leftovers == [] and list(scratch.iterdir()) == []
    assert killed >= 20, f"only {killed} of 24 runs were killed before they ended"


@pytest.mark.slow
def test_two_runs_in_one_folder_never_mix_their_rows(inputs, references, tmp_path):
    """The second run starts while the first is frozen (SIGSTOP) as it takes the lock, while it cleans (its scratch
    rows growing) and while it writes its build folder; then the first goes on. The second must stop at once
    naming the first, and the folder must end as exactly the first's outputs."""
    moments = {
        "locked": lambda work, scratch: (work / ".data.lock.holder").exists(),
        "cleaning": lambda work, scratch: any(scratch.glob("titlegen-preprocess-*/*")),
        "writing": lambda work, scratch: any(work.glob(".data.build-*/*.jsonl")),
    }
    for attempt, (moment, reached) in enumerate(moments.items()):
        first_name, second_name = "new", "old"  # the folder holds the old settings' data: the first replaces it
        work, scratch = fresh_folder(tmp_path / f"pair{attempt}", inputs)
        first = start(first_name, inputs, work / "data", scratch)
        while first.poll() is None and not reached(work, scratch):
            pass
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None, f"the first run ended before it could be frozen ({moment})"
        try:
            second = start(second_name, inputs, work / "data", scratch)
            code, err = second.wait(timeout=120), second.stderr.read()
        finally:
            first.send_signal(signal.SIGCONT)
        assert code == 1 and "is busy" in err and f"process {first.pid}" in err, err
        assert first.wait(timeout=120) == 0, first.stderr.read()
        folder = work / "data"
        assert prepared_folder_state(folder, preprocess_key(config_for(first_name, work), *inputs, None)) is None
        assert outputs(folder) == references[first_name]


def test_a_second_writer_is_stopped_with_the_holders_name(tmp_path):
    lock = tmp_path / ".data.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom titlegen_lib.storage import exclusive\n"
                               f"with exclusive({str(lock)!r}, 'preprocessing'):\n    print('held', flush=True)\n"
                               "    time.sleep(60)\n"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkFolderBusy, match=f"process {holder.pid} on .*preprocessing"):
            with exclusive(lock, "preprocessing"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(lock, "preprocessing"):  # a killed holder's lock is free again
        pass


@pytest.mark.slow
def test_training_a_run_that_is_being_trained_stops_with_the_holders_name(tmp_path, offline_model):
    from titlegen_lib.data import preprocess
    from titlegen_lib.train import prepare_fine_tune
    from titlegen_lib.models import attach_lora

    config = Config.from_dict(preset="offline", work_dir=str(tmp_path), synthetic_train_records=200,
                              synthetic_test_records=40, train_samples=16, val_samples=4, test_samples=4, max_steps=1)
    preprocess(config)
    with exclusive(config.run_dir / ".train.lock", "training run 'default'"):
        fine_tune = prepare_fine_tune(config, attach_lora(offline_model, config), progress=False)
        # The lock is held by this process: filelock is reentrant within one process, so ask from another.
        code = ("import sys\nfrom titlegen_lib.storage import exclusive\n"
                f"with exclusive({str(config.run_dir / '.train.lock')!r}, 'x'):\n    pass\n")
        done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True)
    assert done.returncode != 0 and f"process {os.getpid()}" in done.stderr and "training run 'default'" in done.stderr
    assert fine_tune.checkpoint_dir.name  # prepared; nothing trained while another process held the run


def can_mount_tmpfs(target: Path) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(target)],
                          capture_output=True).returncode == 0


def test_a_full_disk_is_one_error_and_leaves_the_old_data(inputs, tmp_path):
    disk = tmp_path / "small-disk"
    if not can_mount_tmpfs(disk):
        pytest.skip("cannot mount a 3 MB tmpfs here (needs root and mount rights)")
    try:
        small = write_synthetic_dataset(tmp_path / "small-raw", 300, 60, seed=4)
        small_inputs = (InputFile(small["trn"]), InputFile(small["tst"]))
        work = disk / "work"
        old = preprocess_files(*small_inputs, config_for("old", work), work / "data", workers=1)
        before = outputs(old.paths["train"].parent)
        os.environ["TITLEGEN_SCRATCH"] = str(disk)
        from titlegen_lib.data import DataFileError

        with pytest.raises(DataFileError, match="disk is full"):
            preprocess_files(*inputs, config_for("new", work), work / "data", workers=1)
        assert outputs(work / "data") == before  # the old data, whole
        assert sorted(p.name for p in work.iterdir()) == [".data.lock", "data"]
        assert not list(disk.glob("titlegen-preprocess-*"))  # no scratch left to fill the disk
    finally:
        os.environ.pop("TITLEGEN_SCRATCH", None)
        subprocess.run(["umount", str(disk)], capture_output=True)

"""Colab, emulated: every notebook runs alone, as Colab runs it, on its own fresh runtime.

Each notebook gets a new kernel, its own HOME, caches and temporary folder, an empty "/content" (no project,
no install marker) and `google.colab` stubbed (tests/colab_stub), so the Colab branches of the setup cell
run: it copies the project from Drive, mounts Drive and checks the pinned packages. Only the "Drive" folder is
shared between notebooks. Parameters are what a user would type: a preset, a run name and a config file on
Drive in 00, `raw_dir` (a file in the dataset's format on Drive) in 01, nothing but `run_name` in 02-05.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from titlegen_lib.runner import NOTEBOOK_DIR, NOTEBOOKS, kernel_manager_class, kernel_name
from titlegen_lib.synthetic import write_synthetic_dataset

ROOT = Path(__file__).resolve().parent.parent
STUB = Path(__file__).resolve().parent / "colab_stub"
RUN = "colab-run"
SMALL = "max_steps: 8\ntrain_samples: 160\nval_samples: 16\ntest_samples: 8\nbootstrap_samples: 100\n" \
        "max_new_tokens: 48\neval_steps: 4\nsave_steps: 4\nlogging_steps: 2\n"
IGNORED = shutil.ignore_patterns(".git", ".venv", "outputs", "__pycache__", "*.egg-info", ".pytest_cache", ".whl",
                                 ".gpu", ".gl", "kernel-ipc-*")


def upload_project(drive: Path) -> Path:
    """What a user does once: upload the repository to MyDrive/titlegen."""
    return Path(shutil.copytree(ROOT, drive / "titlegen", ignore=IGNORED))


def fresh_runtime(base: Path, name: str, drive: Path) -> dict[str, str]:
    """A new Colab runtime: an empty /content, a new HOME, new caches; the same Drive."""
    content = base / "content"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir()
    home = base / "runtimes" / name
    (home / "tmp").mkdir(parents=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HF_HUB_OFFLINE")}
    return {**keep, "HOME": str(home), "TMPDIR": str(home / "tmp"), "XDG_CACHE_HOME": str(home / ".cache"),
            "PYTHONPATH": str(STUB), "COLAB_RELEASE_TAG": "emulated", "TITLEGEN_COLAB_ROOT": str(content),
            "TITLEGEN_FAKE_DRIVE": str(drive), "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def as_on_colab(source: Path, target: Path, content: Path) -> Path:
    """The committed notebook, with Colab's /content put where this emulated runtime has it."""
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        cell.source = cell.source.replace('COLAB = "/content"', f'COLAB = "{content}"')
    nbformat.write(nb, target)
    return target


def run_notebook(base: Path, name: str, drive: Path, parameters: dict) -> Path:
    import papermill as pm

    env = fresh_runtime(base, name, drive)
    content = Path(env["TITLEGEN_COLAB_ROOT"])
    source = as_on_colab(NOTEBOOK_DIR / f"{name}.ipynb", base / "runtimes" / name / f"{name}.ipynb", content)
    executed = base / "executed" / f"{name}.ipynb"
    executed.parent.mkdir(exist_ok=True)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this environment, and nothing else of this process
    try:
        pm.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name=kernel_name(),
                            kernel_manager_class=kernel_manager_class(), cwd=str(content), progress_bar=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return executed


def outputs(path: Path) -> list[dict]:
    return [o for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" for o in c.outputs]


def text_of(path: Path) -> str:
    parts = []
    for o in outputs(path):
        parts += [o.get("text", ""), *(str(v) for v in o.get("data", {}).values()), o.get("evalue", "")]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    base = tmp_path_factory.mktemp("colab")
    drive = base / "drive-storage"  # MyDrive
    upload_project(drive)
    raw = drive / "amazon-titles"
    write_synthetic_dataset(raw, 1500, 300, seed=7)  # the dataset's format, another seed than the offline default
    (drive / "small.yaml").write_text(SMALL)
    on_drive = base / "content" / "drive" / "MyDrive"  # where a notebook sees Drive
    typed = {
        "00_setup": {"run_name": RUN, "preset": "offline", "config_file": str(on_drive / "small.yaml")},
        "01_preprocess": {"run_name": RUN, "raw_dir": str(on_drive / "amazon-titles")},
    }
    executed = {name: run_notebook(base, name, drive, typed.get(name, {"run_name": RUN})) for name in NOTEBOOKS}
    return base, drive, raw, executed


@pytest.mark.slow
def test_every_notebook_runs_on_its_own_fresh_runtime(emulated):
    base, drive, _, executed = emulated
    for name, path in executed.items():
        errors = [o for o in outputs(path) if o.output_type == "error"]
        assert not errors, f"{name}: {errors}"
        text = text_of(path)
        assert f"project from {base / 'content' / 'drive' / 'MyDrive' / 'titlegen'}" in text  # copied from Drive
        assert f"project {base / 'content' / 'titlegen'};" in text  # and imported from the runtime's copy
        assert "Colab runtime" in text and "Drive flushed" in text
        assert "should be imported before" not in text  # Unsloth's import-order warning
    settings = json.loads((drive / "titlegen" / "work" / "runs" / RUN / "settings.json").read_text())
    assert settings["resolved"]["preset"] == "offline" and settings["resolved"]["raw_dir"].endswith("amazon-titles")


@pytest.mark.slow
def test_04_scored_the_test_records_01_prepared_from_raw_dir(emulated):
    _, drive, raw, executed = emulated
    data = drive / "titlegen" / "work" / "data"
    summary = json.loads((data / "summary.json").read_text())
    assert summary["synthetic"] is False and summary["files"]["test"]["file"].endswith("amazon-titles/tst.json")
    prepared = [json.loads(line) for line in (data / "test.jsonl").open()]
    raw_contents = {json.loads(line).get("content") for line in raw.joinpath("tst.json").open()
                    if line.startswith("{") and line.rstrip().endswith("}")}
    assert all(row["output"] in raw_contents or row["output"] for row in prepared)
    predictions = [json.loads(line) for line in (drive / "titlegen" / "outputs" / "eval" / RUN /
                                                 "predictions.jsonl").open()]
    assert [p["uid"] for p in predictions] == [r["uid"] for r in prepared]  # 04 scored 01's test records
    assert {"echo", "retrieval", "base", "finetuned"} <= set(predictions[0])
    assert "data synthetic" not in text_of(executed["04_compare"])


@pytest.mark.slow
def test_05_loaded_the_adapter_03_trained(emulated):
    _, drive, _, executed = emulated
    adapter = drive / "titlegen" / "work" / "runs" / RUN / "adapter" / "adapter_model.safetensors"
    assert adapter.is_file()
    text = text_of(executed["05_try_it"])
    assert "No fine-tuned adapter" not in text and "'finetuned':" in text
    assert "training already finished" not in text_of(executed["03_finetune"])  # 03 trained; it did not reuse


# ---------------------------------------------------------------- the setup cell alone

def setup_cell() -> str:
    return nbformat.read(NOTEBOOK_DIR / "00_setup.ipynb", as_version=4).cells[1].source


def run_setup_cell(base: Path, drive: Path, project_source: str, name: str) -> subprocess.CompletedProcess:
    """The setup cell's code up to the library import, in a fresh emulated runtime; prints where titlegen_lib
    was imported from."""
    env = fresh_runtime(base, name, drive)
    code = setup_cell().replace('COLAB = "/content"', f'COLAB = "{env["TITLEGEN_COLAB_ROOT"]}"')
    code = code.replace('project_source = ""', f"project_source = {project_source!r}")
    code = code.split("from titlegen_lib.colab import")[0] + "import titlegen_lib\nprint('FROM', titlegen_lib.__file__)\n"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=env["TITLEGEN_COLAB_ROOT"], capture_output=True,
                          text=True, timeout=300)


def test_the_setup_cell_takes_the_project_from_a_git_url(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=IGNORED)
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x"]):
        subprocess.run(command, cwd=repo, check=True)
    drive = tmp_path / "drive"
    drive.mkdir()
    done = run_setup_cell(tmp_path, drive, repo.as_uri(), "url")
    assert done.returncode == 0, done.stderr
    assert f"FROM {tmp_path / 'content' / 'titlegen' / 'titlegen_lib' / '__init__.py'}" in done.stdout
    assert f"project from {repo.as_uri()}" in done.stdout


def test_the_setup_cell_takes_the_project_from_a_drive_folder_or_zip(tmp_path):
    drive = tmp_path / "drive"
    upload_project(drive)
    done = run_setup_cell(tmp_path, drive, "", "folder")
    assert done.returncode == 0, done.stderr
    assert f"FROM {tmp_path / 'content' / 'titlegen' / 'titlegen_lib' / '__init__.py'}" in done.stdout
    archive = shutil.make_archive(str(drive / "titlegen-main"), "zip", root_dir=drive, base_dir="titlegen")
    shutil.rmtree(drive / "titlegen")
    zipped = str(tmp_path / "content" / "drive" / "MyDrive" / Path(archive).name)
    done = run_setup_cell(tmp_path, drive, zipped, "zip")
    assert done.returncode == 0, done.stderr
    assert f"project from {zipped}" in done.stdout


def test_without_a_project_the_setup_cell_says_what_to_do_and_stops(tmp_path):
    drive = tmp_path / "drive"
    drive.mkdir()
    done = run_setup_cell(tmp_path, drive, str(tmp_path / "content" / "drive" / "MyDrive" / "nowhere"), "none")
    assert done.returncode == 1
    assert "upload the repository to Google Drive as MyDrive/titlegen" in done.stderr
    assert "Traceback" not in done.stderr  # one message, not a traceback

"""The Colab runtime pieces: the pinned install that never replaces Colab's CUDA stack, and one run's settings
carried from notebook to notebook on Drive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from titlegen_lib import Config, colab
from titlegen_lib.runner import notebook_config, run_settings_path


def write_requirements(folder: Path) -> Path:
    (folder / "requirements.txt").write_text("transformers==5.17.0\ntrl==1.15.0  # pinned\n\npandas\n")
    path = folder / "requirements-colab.txt"
    path.write_text("# the GPU stack\n-r requirements.txt\nunsloth==2026.10.9\nbitsandbytes==0.50.2\ntyro==1.0.17\n")
    return path


class FakePip:
    """Records pip commands and the constraints file each install had; installs nothing but what `changes` says,
    and `pip wheel` writes one empty file per requirement."""

    def __init__(self, installed: dict[str, str], changes: dict[str, str] | None = None):
        self.installed, self.changes, self.calls = installed, changes or {}, []

    def __call__(self, command, check=False):
        verb = command[3]
        constraints = Path(command[command.index("-c") + 1]).read_text() if "-c" in command else None
        self.calls.append((command, constraints))
        if verb == "wheel":
            folder = Path(command[command.index("-w") + 1])
            for requirement in command[command.index("-w") + 2:]:
                (folder / (requirement.replace("==", "-") + "-py3-none-any.whl")).write_bytes(b"")
        else:
            self.installed.update(self.changes)
        return subprocess.CompletedProcess(command, 0)


@pytest.fixture
def versions(monkeypatch):
    installed = {"torch": "2.9.0+cu126", "torchvision": "0.24.0+cu126", "numpy": "2.0.2",
                 "transformers": "4.57.1", "trl": "1.15.0", "pandas": "2.2.2"}
    monkeypatch.setattr(colab, "installed_version", lambda name: installed.get(name))
    monkeypatch.setattr(colab, "installed_versions", lambda: dict(installed))
    return installed


def test_only_what_is_missing_is_installed_and_colabs_stack_is_a_constraint(tmp_path, versions):
    pip = FakePip(versions)
    report = colab.install_requirements(write_requirements(tmp_path), gpu=True, run=pip)
    (plain, plain_constraints), (no_deps, _) = pip.calls
    assert plain[plain.index("-c") + 2:] == ["transformers==5.17.0", "tyro==1.0.17"]  # trl and pandas are there
    assert "--no-deps" in no_deps and no_deps[-2:] == ["unsloth==2026.10.9", "bitsandbytes==0.50.2"]
    assert plain_constraints.splitlines() == ["torch==2.9.0+cu126", "torchvision==0.24.0+cu126", "numpy==2.0.2"]
    assert report.installed == ["bitsandbytes", "transformers", "tyro", "unsloth"]
    assert report.skipped == ["pandas", "trl"]


def test_the_next_runtime_installs_from_the_saved_wheels_without_an_index(tmp_path, versions):
    requirements = write_requirements(tmp_path)
    wheels = colab.wheelhouse_for(tmp_path / "drive" / "wheels", requirements, gpu=False)
    original = dict(versions)
    first = FakePip(versions, changes={"transformers": "5.17.0", "tokenizers": "0.23.3"})
    report = colab.install_requirements(requirements, gpu=False, wheelhouse=wheels, run=first)
    assert report.source == "PyPI" and first.calls[-1][0][3] == "wheel"
    assert json.loads((wheels / "complete.json").read_text()) == {"tokenizers": "0.23.3", "transformers": "5.17.0"}
    # A fresh runtime: the same missing packages, and the folder on Drive.
    versions.clear()
    versions.update(original)
    second = FakePip(versions, changes={"transformers": "5.17.0", "tokenizers": "0.23.3"})
    report = colab.install_requirements(requirements, gpu=False, wheelhouse=wheels, run=second)
    (command, _), = second.calls
    assert command[3] == "install" and "--no-index" in command and "--no-deps" in command
    assert sorted(Path(c).name for c in command if c.endswith(".whl")) == [
        "tokenizers-0.23.3-py3-none-any.whl", "transformers-5.17.0-py3-none-any.whl"]
    assert "wheel folder" in report.source and versions["transformers"] == "5.17.0"
    # Other pins (or another Colab torch) get another folder.
    assert colab.wheelhouse_for(tmp_path / "drive" / "wheels", requirements, gpu=True) != wheels


def test_without_a_gpu_the_gpu_stack_is_left_out(tmp_path, versions):
    pip = FakePip(versions)
    report = colab.install_requirements(write_requirements(tmp_path), gpu=False, run=pip)
    assert [call[0][-1] for call in pip.calls] == ["transformers==5.17.0"]
    assert report.installed == ["transformers"]


def test_nothing_missing_runs_no_pip(tmp_path, versions):
    versions.update(transformers="5.17.0")
    pip = FakePip(versions)
    report = colab.install_requirements(write_requirements(tmp_path), gpu=False, run=pip)
    assert pip.calls == [] and "already installed" in str(report)


def test_replacing_an_imported_module_asks_for_a_restart(tmp_path, versions, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", sys.modules.get("transformers") or object())
    report = colab.install_requirements(write_requirements(tmp_path), gpu=False, run=FakePip(versions))
    assert report.restart_needed == ["transformers"]
    assert "Runtime > Restart session" in colab.restart_message(report)


def test_an_install_that_replaced_colabs_torch_is_an_error(tmp_path, versions):
    pip = FakePip(versions, changes={"torch": "2.10.0"})
    with pytest.raises(RuntimeError, match="replaced Colab's torch"):
        colab.install_requirements(write_requirements(tmp_path), gpu=False, run=pip)


def test_the_shipped_colab_requirements_install_the_gpu_stack_without_dependencies():
    pins = colab.read_requirements(colab.PROJECT_ROOT / colab.COLAB_REQUIREMENTS)
    assert {"unsloth", "unsloth-zoo", "bitsandbytes", "transformers", "trl"} <= set(pins)
    assert not set(pins) & set(colab.PROTECTED)  # never pinned: Colab's own builds stay
    assert "xformers" not in pins  # built for one torch version; Unsloth runs without it


# ---------------------------------------------------------------- one run, many runtimes

def test_the_first_notebook_saves_the_run_and_later_ones_start_from_it(tmp_path, capsys):
    work = str(tmp_path / "work")
    first = notebook_config("", notebook="00_setup", run_name="r1", preset="offline", work_dir=work, max_steps=7)
    assert run_settings_path(work, "r1").is_file()
    assert "first notebook of this run" in capsys.readouterr().out
    later = notebook_config("", notebook="02_baseline", run_name="r1", preset="", model_name="", raw_dir="",
                            work_dir=work, output_dir="", max_new_tokens=None)
    assert later == first  # nothing typed but run_name (and where the work is): the saved run
    assert "settings as saved" in capsys.readouterr().out
    other = notebook_config("", notebook="02_baseline", run_name="r2", work_dir=work)
    assert other.preset == "colab-t4" and other.max_steps != 7  # another run does not inherit r1's settings


def test_a_changed_setting_is_printed_with_the_notebooks_to_rerun(tmp_path, capsys):
    work = str(tmp_path / "work")
    notebook_config("", notebook="00_setup", run_name="r1", preset="offline", work_dir=work)
    capsys.readouterr()
    config = notebook_config("", notebook="03_finetune", run_name="r1", work_dir=work, max_content_chars=800,
                             learning_rate=5e-4)
    out = capsys.readouterr().out
    preset = Config.from_dict(preset="offline")
    assert f"max_content_chars: {preset.max_content_chars} -> 800" in out
    assert f"learning_rate: {preset.learning_rate} -> 0.0005" in out
    assert "rerun 01_preprocess, 02_baseline" in out  # data changed: the earlier notebooks' work is stale
    # The change is saved: the next notebook gets it without typing it.
    assert notebook_config("", notebook="04_compare", run_name="r1", work_dir=work).max_content_chars == 800
    assert config.learning_rate == 5e-4


def test_changing_the_preset_keeps_the_runs_own_values(tmp_path):
    work = str(tmp_path / "work")
    notebook_config("", notebook="00_setup", run_name="r1", preset="offline", work_dir=work, lora_r=4)
    config = notebook_config("", notebook="03_finetune", run_name="r1", preset="colab-t4", work_dir=work)
    assert config.lora_r == 4  # typed by the user: kept
    assert config.model_name == "unsloth/tinyllama-bnb-4bit"  # came from the old preset: follows the new one

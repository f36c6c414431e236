"""The notebook series: committed notebooks are clean and built by the script; papermill runs them all on the
offline default; the runner selects notebooks and stops at the first failure; the demo widget works headless."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from titlegen_lib import Config, ConfigError
from titlegen_lib.__main__ import main as cli_main
from titlegen_lib.evaluate import SYSTEMS
from titlegen_lib.runner import (
    NOTEBOOK_DIR,
    NOTEBOOKS,
    notebook_config,
    run_series,
    select_notebooks,
)

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# The series runs once, on the offline default exactly as `make offline` runs it (about 10-20 minutes on
# 2 CPU cores): the README's measured comparison is checked here, in CI.
OFFLINE_DEFAULT = dict(preset="offline")


def _outputs(notebook: Path) -> list[dict]:
    return [o for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"
            for o in cell.outputs]


# ---------------------------------------------------------------- committed notebooks

def test_the_series_is_committed_in_order():
    assert [p.stem for p in COMMITTED] == list(NOTEBOOKS)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] for c in code), f"{path.name} has outputs: clear them or rebuild the notebooks"
    assert all(c.execution_count is None for c in code), f"{path.name} has execution counts"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    assert "#@param" in tagged[0].source  # a Colab form
    assert f"colab.research.google.com/github/titlegen-project/titlegen/blob/main/notebooks/{path.name}" in \
        nb.cells[0].source


def test_committed_notebooks_are_what_the_build_script_writes(tmp_path):
    subprocess.run([sys.executable, str(NOTEBOOK_DIR / "build_notebooks.py"), "--out", str(tmp_path)], check=True)
    for path in COMMITTED:
        assert (tmp_path / path.name).read_text() == path.read_text(), \
            f"{path.name} differs from notebooks/build_notebooks.py: run `python notebooks/build_notebooks.py`"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_every_parameter_is_a_config_setting(path):
    fields = set(Config().to_dict())
    declared = set(pm.inspect_notebook(str(path)))
    assert {"preset", "config_file", "run_name", "raw_dir", "work_dir", "output_dir"} <= declared
    assert declared - {"config_file"} <= fields


# ---------------------------------------------------------------- parameters and selection

def test_notebook_config_treats_empty_as_not_set(tmp_path):
    settings = tmp_path / "run.yaml"
    settings.write_text("preset: offline\nmax_steps: 7\nrun_name: from-file\n")
    config = notebook_config(str(settings), preset="offline", run_name="", raw_dir="", work_dir=str(tmp_path),
                             output_dir=None, max_steps=None, learning_rate=5e-4)
    assert (config.max_steps, config.run_name, config.learning_rate) == (7, "from-file", 5e-4)
    assert config.work_dir == str(tmp_path) and config.output_dir == "outputs"
    assert notebook_config(None, preset="offline", max_steps=3).max_steps == 3
    with pytest.raises(ConfigError, match="not Config settings"):
        notebook_config("", preset="offline", steps=3)


def test_select_notebooks_by_number_name_or_start():
    assert select_notebooks(["03"]) == ["03_finetune"]
    assert select_notebooks(["1,finetune", "05_try_it.ipynb"]) == ["01_preprocess", "03_finetune", "05_try_it"]
    assert select_notebooks(start="02") == ["02_baseline", "03_finetune", "04_compare", "05_try_it"]
    assert select_notebooks() == list(NOTEBOOKS)
    with pytest.raises(ConfigError, match="07.*00_setup"):
        select_notebooks(["07"])
    with pytest.raises(ConfigError, match="either"):
        select_notebooks(["03"], start="02")


def test_cli_runs_only_the_chosen_notebook(tmp_path, capsys):
    assert cli_main(["run", "--preset", "offline", "--only", "00", "--output-dir", str(tmp_path / "out"),
                     "--work-dir", str(tmp_path / "work"), "--no-progress"]) == 0
    executed = list((tmp_path / "out" / "runs").glob("*/*.ipynb"))
    assert [p.name for p in executed] == ["00_setup.ipynb"]
    texts = [str(o.get("data", {}).get("text/plain", "")) for o in _outputs(executed[0])]
    assert "'cpu'" in texts  # the backend the offline preset chose
    assert "done" in capsys.readouterr().out


def test_runner_stops_at_the_first_failing_notebook_and_names_it(tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    argv = ["run", "--preset", "offline", "--from", "01", "-p", f"raw_dir={empty}",
            "--output-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--no-progress"]
    assert cli_main(argv) == 1
    error = capsys.readouterr().err
    assert "notebook 01_preprocess failed in cell" in error
    assert "preprocess(config)" in error and "trn.json" in error  # the cell and the error
    assert "later notebooks were not run" in error
    folder = next((tmp_path / "out" / "runs").iterdir())
    assert sorted(p.name for p in folder.glob("*.ipynb")) == ["01_preprocess.ipynb"]


def test_cli_reports_a_bad_setting_before_running_anything(tmp_path, capsys):
    assert cli_main(["run", "-p", "max_steps=many", "--output-dir", str(tmp_path)]) == 1
    assert "max_steps must be an integer" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- the whole series, once

@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """The six notebooks run by the runner on the offline default, in a temporary folder."""
    import os

    base = tmp_path_factory.mktemp("series")
    config = Config.from_dict(OFFLINE_DEFAULT, work_dir=str(base / "work"), output_dir=str(base / "out"))
    previous = os.environ.get("HF_TOKEN")
    os.environ["HF_TOKEN"] = HUB_TOKEN  # a user's token in the environment must end up in no output
    try:
        return run_series(config, progress=False)
    finally:
        if previous is None:
            os.environ.pop("HF_TOKEN")
        else:
            os.environ["HF_TOKEN"] = previous


HUB_TOKEN = "hf_titlegenTestSentinel0123456789"


@pytest.mark.slow
def test_no_output_of_the_series_contains_the_hub_token(series):
    base = next(iter(series.executed.values())).parents[3]  # <base>/out/runs/<time>/NN.ipynb
    files = [path for path in base.rglob("*") if path.is_file()]
    assert any(path.name == "run.json" for path in files) and any(path.suffix == ".ipynb" for path in files)
    leaked = [str(path) for path in files if HUB_TOKEN.encode() in path.read_bytes()]
    assert not leaked


@pytest.mark.slow
def test_series_runs_every_notebook_without_errors(series):
    assert list(series.executed) == list(NOTEBOOKS)
    for name, path in series.executed.items():
        errors = [o for o in _outputs(path) if o.output_type == "error"]
        assert not errors, f"{name}: {errors}"
        nb = nbformat.read(path, as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and "config_file" in injected[0].source


@pytest.mark.slow
def test_preprocess_notebook_wrote_splits_and_showed_them(series):
    data = series.config.data_dir
    summary = json.loads((data / "summary.json").read_text())
    assert summary["synthetic"] is True
    for split in ("train", "val", "test"):
        assert summary["written"][split] == sum(1 for _ in (data / f"{split}.jsonl").open())
    assert summary["written"]["test"] == series.config.test_samples
    kinds = {kind for o in _outputs(series.executed["01_preprocess"]) for kind in o.get("data", {})}
    assert "image/png" in kinds  # the length histograms
    assert "text/html" in kinds  # the drop table and the sample records


@pytest.mark.slow
def test_finetune_notebook_saved_an_adapter_and_showed_the_masked_example(series):
    config = series.config
    assert (config.adapter_dir / "adapter_config.json").is_file()
    assert (config.adapter_dir / "adapter_model.safetensors").is_file()
    run = json.loads((config.run_dir / "run.json").read_text())
    assert run["steps"] == series.config.max_steps
    shown = "".join(str(o.get("data", {}).get("text/html", "")) for o in _outputs(series.executed["03_finetune"]))
    assert "color:#9e9e9e" in shown and "&lt;|im_end|&gt;" in shown  # the greyed prompt and the visible EOS
    assert "data:image/png;base64," in shown  # the loss curve


@pytest.mark.slow
def test_compare_notebook_wrote_metrics_and_the_report(series):
    eval_dir = series.config.eval_dir
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert set(metrics["systems"]) == set(SYSTEMS)  # 04 overwrote 02's baseline-only metrics
    assert metrics["n_examples"] == series.config.test_samples
    assert {"mean", "low", "high"} <= set(metrics["systems"]["finetuned"]["rougeL"])
    assert "rougeL" in metrics["finetuned_minus_base"]
    report = (eval_dir / "report.html").read_text()
    assert "<html" in report.lower() and "finetuned" in report
    outputs = _outputs(series.executed["04_compare"])
    assert any("report.html" in str(o.get("data", {}).get("text/html", "")) for o in outputs)  # the link


@pytest.mark.slow
def test_offline_default_finetuned_beats_base_on_rouge_l_and_chrf(series):
    """The README's claim, on the offline default: decoded as the demo decodes (the comparison's default, stated
    in the metrics), the paired bootstrap interval of fine-tuned - base lies above zero for ROUGE-L and chrF;
    the other decoding (greedy, no repetition guard) is scored too."""
    metrics = json.loads((series.config.eval_dir / "metrics.json").read_text())
    decoding = metrics["settings"]["decoding"]
    assert (decoding["repetition_penalty"], decoding["no_repeat_ngram_size"]) == (
        series.config.repetition_penalty, series.config.no_repeat_ngram_size)
    difference = metrics["finetuned_minus_base"]
    assert difference["rougeL"]["low"] > 0, difference["rougeL"]
    assert difference["chrf"]["low"] > 0, difference["chrf"]
    other = metrics["other_decoding"]
    assert (other["decoding"]["repetition_penalty"], other["decoding"]["no_repeat_ngram_size"]) == (1.0, 0)
    assert {"rougeL", "chrf", "repeat_3gram"} <= set(other["finetuned_minus_base"])


@pytest.mark.slow
def test_try_it_notebook_generated_with_both_models(series):
    results = [o["data"]["text/plain"] for o in _outputs(series.executed["05_try_it"])
               if o.output_type == "execute_result" and "'finetuned'" in o["data"].get("text/plain", "")]
    assert results, "the demo cell printed no result"
    assert "No fine-tuned adapter" not in results[-1]


# ---------------------------------------------------------------- the demo widget

@pytest.mark.slow
def test_demo_streams_base_and_finetuned_side_by_side(series, offline_model):
    import ipywidgets

    from titlegen_lib.demo import build_demo

    demo = build_demo(series.config)
    assert demo.model.adapter is not None  # one model: the base side switches the adapter off
    assert isinstance(demo.widget, ipywidgets.Box)
    demo.title.value = "Stainless Steel Insulated Water Bottle, 32 oz"
    demo.max_new_tokens.value = 24
    demo.language.value = "en"
    demo.button.click()
    assert demo.error is None
    assert demo.base_text.strip() and demo.finetuned_text.strip()
    assert "No fine-tuned adapter" not in demo.finetuned_text
    assert html.escape(demo.finetuned_text) in demo.finetuned_area.value  # the text shown is the text read
    assert not demo.button.disabled


def test_demo_without_an_adapter_says_so(tmp_path, offline_model):
    from titlegen_lib.demo import build_demo

    config = Config.from_dict(preset="offline", work_dir=str(tmp_path), run_name="never-trained")
    demo = build_demo(config, model=offline_model)
    assert "No fine-tuned adapter" in demo.finetuned_text and "03_finetune" in demo.finetuned_text
    demo.title.value = "Wireless Over-Ear Headphones"
    demo.max_new_tokens.value = 16
    demo.button.click()
    assert demo.base_text.strip()
    assert "No fine-tuned adapter" in demo.finetuned_text
    assert "No fine-tuned adapter" in demo.finetuned_area.value


def test_an_error_while_generating_is_shown_and_the_button_comes_back(tmp_path, offline_model, monkeypatch):
    import threading

    import torch

    from titlegen_lib.demo import build_demo

    config = Config.from_dict(preset="offline", work_dir=str(tmp_path), run_name="never-trained")
    demo = build_demo(config, model=offline_model)

    def out_of_memory(**kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(offline_model.model, "generate", out_of_memory)
    demo.title.value = "Wireless Over-Ear Headphones"
    clicked = threading.Thread(target=demo.button.click, daemon=True)
    clicked.start()
    clicked.join(timeout=60)
    assert not clicked.is_alive(), "the demo hung waiting for a generation that had failed"
    assert "OutOfMemoryError" in demo.error and "Generation failed" in demo.base_area.value
    assert not demo.button.disabled and demo.button.description == "Generate"

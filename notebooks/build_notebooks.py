"""Write the numbered notebooks from this script, so they are reproducible and reviewed as code.

    python notebooks/build_notebooks.py            # rewrite notebooks/*.ipynb
    python notebooks/build_notebooks.py --check    # exit 1 if a committed notebook differs from this script

Every notebook: a title with an "Open in Colab" badge, the setup cell (on Colab: the project, Drive, the
pinned packages), a papermill `parameters` cell (a Colab form whose empty fields mean "as the run saved
them"), the run's Config, then short cells that each call one titlegen_lib function and show its result,
and a last cell that makes sure Drive has everything. Notebooks are written without outputs or execution
counts, with fixed cell ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
# The published repository: the Colab badges open its notebooks, and the setup cell clones it when the project
# is not on Drive. The one place to change when the project moves.
REPOSITORY = "titlegen-project/titlegen"
REPO_URL = f"https://github.com/{REPOSITORY}"

SETUP = f"""\
#@title Setup: the project, Drive and the pinned packages
# Where the project comes from on Colab: "" = a copy on Drive (MyDrive/titlegen/, uploaded as a folder or as
# titlegen.zip), else the published repository; or a git URL, or a folder or .zip path under /content/drive.
project_source = ""  #@param {{type:"string"}}
import os
import sys

COLAB = "/content"  # Colab's local disk: the project is copied here, once per runtime
if "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules:
    if not os.path.isfile(f"{{COLAB}}/titlegen/titlegen_lib/__init__.py"):
        import shutil, subprocess, tempfile, zipfile
        from google.colab import drive

        drive.mount(f"{{COLAB}}/drive")
        on_drive = f"{{COLAB}}/drive/MyDrive/titlegen"
        for source in [project_source] if project_source else [on_drive, on_drive + ".zip", "{REPO_URL}"]:
            if os.path.isfile(f"{{source}}/titlegen_lib/__init__.py"):  # a folder
                shutil.copytree(source, f"{{COLAB}}/titlegen",
                                ignore=shutil.ignore_patterns("work", "outputs", ".git", ".venv", "wheels"))
            elif source.endswith(".zip") and os.path.isfile(source):  # GitHub's zip holds one top folder
                unpacked = tempfile.mkdtemp()
                zipfile.ZipFile(source).extractall(unpacked)
                top = [d for d, _, files in os.walk(unpacked) if "pyproject.toml" in files]
                if top:
                    shutil.move(min(top, key=len), f"{{COLAB}}/titlegen")
            elif "://" in source or source.endswith(".git"):
                subprocess.run(["git", "clone", "-q", "--depth", "1", source, f"{{COLAB}}/titlegen"])
            if os.path.isfile(f"{{COLAB}}/titlegen/titlegen_lib/__init__.py"):
                print(f"[titlegen] project from {{source}}")
                break
        else:
            raise SystemExit("The titlegen project was not found: upload the repository to Google Drive as "
                             "MyDrive/titlegen (a folder) or MyDrive/titlegen.zip, or set project_source to its "
                             "git URL, then run this cell again.")
    sys.path.insert(0, f"{{COLAB}}/titlegen")
elif os.path.isfile("../titlegen_lib/__init__.py"):  # Jupyter started inside notebooks/
    sys.path.insert(0, os.path.abspath(".."))

from titlegen_lib.colab import setup_environment

environment = setup_environment(loads_models={{loads_models}})"""

COMMON_PARAMETERS = """\
#@title Parameters
# Empty = as this run saved them (the first notebook of a run saves its settings on Drive, under the run's
# folder), else config_file, else the preset. Relative paths are from the project folder; on Colab, work_dir
# and output_dir default to MyDrive/titlegen.
run_name = ""  #@param {type:"string"}
preset = ""  #@param ["", "colab-t4", "large-gpu", "offline"]
model_name = ""  #@param {type:"string"}
raw_dir = ""  #@param {type:"string"}
config_file = ""  #@param {type:"string"}
work_dir = ""  #@param {type:"string"}
output_dir = ""  #@param {type:"string"}"""

PARAMETERS_PROSE = """\
## Parameters

A form on Colab; `python -m titlegen_lib run` fills it in for headless runs (papermill). Type a `run_name` in
every notebook of a run (empty means `default`); anything else you leave empty keeps the value the run saved.
`preset = "offline"` suits a machine without a GPU: the small bundled model on synthetic data."""

CONFIG_PROSE = """\
The run's settings: the ones it saved, with this form's changes on top, checked once (a wrong value stops here
with a message naming the setting). What changed is printed, with the notebooks to rerun if it makes earlier
work stale."""

FINISH = ("Last: make sure everything this notebook wrote has reached Drive before the runtime goes away.",
          "from titlegen_lib.colab import finish_notebook\n\nfinish_notebook(environment)")


def _config_call(stem: str, knobs: list[str]) -> str:
    names = ["run_name", "preset", "model_name", "raw_dir", "work_dir", "output_dir", *knobs]
    return (f"from titlegen_lib.runner import notebook_config\n\nconfig = notebook_config(\n    config_file,\n"
            f"    notebook={stem!r},\n" + "".join(f"    {name}={name},\n" for name in names) + ")")


def title_cell(stem: str, title: str, intro: str) -> nbformat.NotebookNode:
    badge = (f'<a href="https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{stem}.ipynb" '
             'target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" '
             'alt="Open In Colab"/></a>')
    return new_markdown_cell(f"# {title}\n\n{badge}\n\n{intro}")


def notebook(stem: str, title: str, intro: str, knobs: str, body: list[tuple[str, str]],
             gpu: bool = True) -> nbformat.NotebookNode:
    """A notebook: title, setup, parameters (tagged for papermill), the Config, (prose, code) pairs, Drive flush."""
    knob_names = [line.split("=")[0].strip() for line in knobs.splitlines() if line.strip() and "=" in line]
    cells = [
        title_cell(stem, title, intro),
        new_code_cell(SETUP.replace("{loads_models}", str(gpu))),
        new_markdown_cell(PARAMETERS_PROSE),
        new_code_cell(COMMON_PARAMETERS + ("\n" + knobs if knobs else ""), metadata={"tags": ["parameters"]}),
        new_markdown_cell(CONFIG_PROSE),
        new_code_cell(_config_call(stem, knob_names)),
    ]
    for prose, code in [*body, FINISH]:
        if prose:
            cells.append(new_markdown_cell(prose))
        if code:
            cells.append(new_code_cell(code))
    for index, cell in enumerate(cells):
        cell["id"] = f"{stem.replace('_', '-')}-{index:02d}"  # fixed ids: rebuilding changes nothing
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "toc_visible": True},
    }
    if gpu:  # Colab opens it on a T4 runtime; 01 needs no GPU
        nb.metadata["accelerator"] = "GPU"
        nb.metadata["colab"]["gpuType"] = "T4"
    return nb


SETUP_NB = notebook(
    "00_setup", "00 · Setup: runtime, GPU and backend",
    "Run this first (on Colab: *Runtime > Change runtime type > T4 GPU*). The setup cell copies the project into "
    "the runtime, mounts Google Drive, where the data, checkpoints and results live so a disconnect loses nothing, "
    "installs the pinned packages without touching Colab's own torch and numpy, and imports Unsloth before "
    "anything else. Every notebook of the series starts with the same cell, because Colab gives each notebook a "
    "fresh runtime. The form below starts a run: its settings are saved on Drive for the next notebooks.",
    'backend = ""  #@param ["", "auto", "unsloth", "transformers", "cpu"]',
    [
        ("## Hardware and versions\n\nThe GPU and its memory decide the batch size and the precision (a T4 has "
         "no bf16, so training runs in fp16 with a gradient scaler); the versions should be the pinned set in "
         "`requirements.txt`.",
         "from titlegen_lib.models import environment_report\n\nenvironment_report()"),
        ("## Backend\n\nUnsloth on a GPU where it is installed, transformers + PEFT on a GPU without it, the CPU "
         "backend otherwise. The model loader is the only place the backends differ.",
         "from titlegen_lib.models import choose_backend\n\nchoose_backend(config.backend)"),
        ("## The model\n\nWhat `model_name` stands for: a registry entry, a hub id or a local folder.",
         "from titlegen_lib.registry import resolve_model\n\nresolve_model(config.model_name)"),
        ("Next: `01_preprocess`.", ""),
    ],
)

PREPROCESS_NB = notebook(
    "01_preprocess", "01 · Preprocess: clean, deduplicate, split",
    "Reads `trn.json` / `tst.json` from `raw_dir` (plain, `.gz` or the release zip), or generates synthetic "
    "records in the same format when `raw_dir` is empty. Cleaning unescapes HTML entities first, strips tags "
    "and boilerplate, and counts every dropped record by reason; duplicate titles keep their longest "
    "description, and no test title appears in training. The seeded train / val / test splits are written as "
    "JSONL; rerunning with the same settings reuses them. This notebook needs no GPU.",
    'train_samples = None  #@param {type:"raw"}\nval_samples = None  #@param {type:"raw"}\n'
    'test_samples = None  #@param {type:"raw"}\nmax_content_chars = None  #@param {type:"raw"}',
    [
        ("## Clean and split\n\nStreams the input (the 1.9 GB train file is never held in memory; the bar counts "
         "bytes read) and shows how many records each split received.",
         "from titlegen_lib.data import preprocess\n\nresult = preprocess(config)\nresult.summary[\"written\"]"),
        ("## What was dropped, and why\n\nOne row per reason, one column per input file. Malformed lines are "
         "listed with file and line number in `summary.json`.",
         "result.drops_table()"),
        ("## Lengths\n\nTitle and description lengths per split: the test sample should look like training, and "
         "`max_content_chars` should cut only the long tail.",
         "from titlegen_lib.views import length_histograms\n\nlength_histograms(result)"),
        ("## Training records\n\nWhat the model will learn to write: the description keeps its case and "
         "punctuation.",
         "from titlegen_lib.views import sample_records\n\nsample_records(config, \"train\", n=5)"),
        ("## Test records\n\nThe fixed, seeded sample every system is scored on in `02` and `04`.",
         "sample_records(config, \"test\", n=3)"),
        ("Next: `02_baseline`.", ""),
    ],
    gpu=False,
)

BASELINE_NB = notebook(
    "02_baseline", "02 · Baseline: the base model and two trivial systems",
    "Before training: how well does the base model do with the prompt it will be trained on? And how far do two "
    "trivial systems get, which a fine-tuned model must beat: *echo* (the title as the description) and "
    "*retrieval* (the description of the most similar training title, TF-IDF). Scores are on the fixed test "
    "sample, with bootstrap confidence intervals.",
    'max_new_tokens = None  #@param {type:"raw"}',
    [
        ("## The base model\n\nLoaded on the backend `00_setup` reported; the adapter comes in `03`.",
         "from titlegen_lib.models import describe, load_model\n\nbase = load_model(config)\ndescribe(base)"),
        ("## The prompt\n\nExactly what the model reads before it writes, for a test title: the same function "
         "renders it for training in `03`, for evaluation and for the demo.",
         "from titlegen_lib.views import show_prompt\n\nshow_prompt(config, base.tokenizer)"),
        ("## Scores\n\nEach metric with its 95% confidence interval.",
         "from titlegen_lib.evaluate import baseline_report\n\nbaseline = baseline_report(config, loaded=base)\n"
         "baseline.table"),
        ("## Examples\n\nTitles, references and what each system wrote.",
         "from titlegen_lib.views import side_by_side\n\nside_by_side(baseline, n=3)"),
        ("## All numbers\n\nAlso saved as `metrics.json` under the evaluation folder.",
         "baseline.metrics"),
        ("Next: `03_finetune`.", ""),
    ],
)

FINETUNE_NB = notebook(
    "03_finetune", "03 · Fine-tune: LoRA on prompt + description",
    "Trains LoRA adapters on the prepared splits, one step a cell: the model, the adapters, the trainer's "
    "settings, one example as the trainer sees it, then training. Each example is the inference prompt, the "
    "description and EOS; the loss covers the description and EOS only. Checkpoints go to the work folder "
    "(Drive on Colab): rerun this notebook after a disconnect and it resumes from the last complete checkpoint.",
    'max_steps = None  #@param {type:"raw"}\nnum_train_epochs = None  #@param {type:"raw"}\n'
    'learning_rate = None  #@param {type:"raw"}\nlora_r = None  #@param {type:"raw"}',
    [
        ("## The model\n\nThe base model and its tokenizer, as `load_model` gives them to every later cell. "
         "4-bit weights are counted as the values they hold (bitsandbytes stores two a byte).",
         "from titlegen_lib.models import describe, load_model\n\nbase = load_model(config)\ndescribe(base)"),
        ("## LoRA\n\nSmall trainable matrices beside the frozen weights of the target modules; PEFT says how many "
         "parameters train.",
         "from titlegen_lib.models import attach_lora\n\nmodel = attach_lora(base, config)\n"
         "model.model.print_trainable_parameters()\nmodel.model.peft_config[\"default\"]"),
        ("## The trainer's settings\n\nThe TRL `SFTConfig` that will run: the run's trainer settings as they are, "
         "then what this run decides (precision from the GPU, the batch, the optimizer; for a train split too small "
         "for the preset's batch and epochs, the recipe study's small-data settings). Resuming and the "
         "checkpoint folder are decided here too.",
         "from titlegen_lib.train import prepare_fine_tune\n\nfine_tune = prepare_fine_tune(config, model)\n"
         "fine_tune.settings_table()"),
        ("## One training example\n\nExactly what the trainer sees. The grey prompt has label -100 (no loss); the "
         "description and the highlighted EOS at the end are trained on, so the model learns to write the "
         "description and then stop.",
         "from titlegen_lib.views import show_training_example\n\n"
         "show_training_example(config, model.tokenizer, index=0)"),
        ("## Train\n\nThe loss table updates as it trains. A rerun with the same settings and data resumes; other "
         "settings start their own checkpoints (kept under their own key, never deleted unasked).",
         "result = fine_tune.run()\nresult.adapter_dir"),
        ("## Loss curves\n\nThe step-0 point is the base model's validation loss; validation loss should fall "
         "and then flatten, not rise (overfitting).",
         "from titlegen_lib.views import show_figures\n\nshow_figures({\"loss curve\": result.curve_png})"),
        ("The same numbers as a table.",
         "from titlegen_lib.train import loss_frame\n\nloss_frame(result.log_history)"),
        ("Next: `04_compare`.", ""),
    ],
)

COMPARE_NB = notebook(
    "04_compare", "04 · Compare: fine-tuned vs base vs echo vs retrieval",
    "Scores all four systems on the same test sample with the same decoding settings, with bootstrap "
    "confidence intervals, and writes an HTML report with the tables, the figures and examples.",
    'max_new_tokens = None  #@param {type:"raw"}\nbootstrap_samples = None  #@param {type:"raw"}',
    [
        ("## Scores\n\nA difference counts when the confidence intervals say so, not when one number is higher.",
         "from titlegen_lib.evaluate import run_comparison\n\ncomparison = run_comparison(config)\n"
         "comparison.table"),
        ("## Figures", "from titlegen_lib.views import show_figures\n\nshow_figures(comparison.figures)"),
        ("## Examples\n\nThe same titles across systems; `comparison.per_example` has every metric per example.",
         "from titlegen_lib.views import side_by_side\n\nside_by_side(comparison, n=3)"),
        ("## Report\n\nOne self-contained HTML file, saved beside `metrics.json`.",
         "from titlegen_lib.report import write_report\n\nreport = write_report(comparison, config)"),
        ("", "from titlegen_lib.views import report_link\n\nreport_link(report)"),
        ("Next: `05_try_it`.", ""),
    ],
)

TRY_IT_NB = notebook(
    "05_try_it", "05 · Try it: base and fine-tuned, side by side",
    "Type a product title and press *Generate*: the base model and the fine-tuned model write a description "
    "with the same prompt and settings, streamed as they go. One copy of the base model serves both sides: the "
    "adapter is switched off for the base side. Temperature 0 is greedy decoding (top-p is then unused); the "
    "language switch changes the prompt's instruction.",
    'max_new_tokens = None  #@param {type:"raw"}\ntemperature = None  #@param {type:"raw"}',
    [
        ("## The demo\n\nLoads the base model with the adapter `03_finetune` saved for this `run_name`.",
         "from titlegen_lib.demo import build_demo\n\ndemo = build_demo(config)\ndemo"),
        ("## Without the widget\n\nWhat the button does, for the title in the box (this is also what a headless "
         "run records).",
         "demo.generate()"),
    ],
)

NOTEBOOKS = {"00_setup": SETUP_NB, "01_preprocess": PREPROCESS_NB, "02_baseline": BASELINE_NB,
             "03_finetune": FINETUNE_NB, "04_compare": COMPARE_NB, "05_try_it": TRY_IT_NB}


def render(nb: nbformat.NotebookNode) -> str:
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a notebook is out of date")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write to (default: notebooks/)")
    args = parser.parse_args(argv)
    stale = []
    for stem, nb in NOTEBOOKS.items():
        path, text = args.out / f"{stem}.ipynb", render(nb)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run `python notebooks/build_notebooks.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

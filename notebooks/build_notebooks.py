"""Write the numbered notebooks from this script, so they are reproducible and reviewed as code.

    python notebooks/build_notebooks.py            # rewrite notebooks/*.ipynb
    python notebooks/build_notebooks.py --check    # exit 1 if a committed notebook differs from this script

Every notebook: a title with an "Open in Colab" badge, the setup cell, a papermill `parameters` cell
(a Colab form), then short cells that each call one titlegen_lib function and show its result.
Notebooks are written without outputs or execution counts, with fixed cell ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
OWNER = "titlegen-project"  # placeholder: the GitHub owner the Colab badge and the clone point at
REPO_URL = f"https://github.com/{OWNER}/titlegen"

SETUP = f"""\
# Setup: on Colab, fetch the project (once per runtime), mount Drive and install the pinned requirements.
import os
import sys

if "google.colab" in sys.modules:
    !test -d /content/titlegen || git clone -q --depth 1 {REPO_URL} /content/titlegen
    sys.path.insert(0, "/content/titlegen")
elif os.path.isfile("../titlegen_lib/__init__.py"):  # Jupyter started inside notebooks/
    sys.path.insert(0, os.path.abspath(".."))

from titlegen_lib.runner import setup_environment

environment = setup_environment()"""

COMMON_PARAMETERS = """\
#@title Parameters
# "" or None = not set: config_file, then the preset, decides. The values set here win over config_file.
# Relative paths are from the project folder; on Colab, work_dir and output_dir default to Drive.
preset = "colab-t4"  #@param ["colab-t4", "large-gpu", "offline"]
config_file = ""  #@param {type:"string"}
run_name = "default"  #@param {type:"string"}
raw_dir = ""  #@param {type:"string"}
work_dir = ""  #@param {type:"string"}
output_dir = ""  #@param {type:"string"}"""

PARAMETERS_PROSE = """\
## Parameters

A form on Colab; `python -m titlegen_lib run` fills it in for headless runs (papermill). Use
`preset = "offline"` on a machine without a GPU: the small bundled model on synthetic data."""

CONFIG_PROSE = """\
Every step reads one `Config`, built from the preset, the optional `config_file` and the parameters
above, and checked once: a wrong value stops here with a message naming the setting."""


def _config_call(knobs: list[str]) -> str:
    names = ["preset", "run_name", "raw_dir", "work_dir", "output_dir", *knobs]
    return "from titlegen_lib.runner import notebook_config\n\nconfig = notebook_config(\n    config_file,\n" + \
        "".join(f"    {name}={name},\n" for name in names) + ")"


def title_cell(stem: str, title: str, intro: str) -> nbformat.NotebookNode:
    badge = (f'<a href="https://colab.research.google.com/github/{OWNER}/titlegen/blob/main/notebooks/{stem}.ipynb" '
             'target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" '
             'alt="Open In Colab"/></a>')
    return new_markdown_cell(f"# {title}\n\n{badge}\n\n{intro}")


def notebook(stem: str, title: str, intro: str, knobs: str, body: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook: title, setup, parameters (tagged for papermill), the Config, then (prose, code) pairs."""
    knob_names = [line.split("=")[0].strip() for line in knobs.splitlines() if line.strip() and "=" in line]
    cells = [
        title_cell(stem, title, intro),
        new_code_cell(SETUP),
        new_markdown_cell(PARAMETERS_PROSE),
        new_code_cell(COMMON_PARAMETERS + ("\n" + knobs if knobs else ""), metadata={"tags": ["parameters"]}),
        new_markdown_cell(CONFIG_PROSE),
        new_code_cell(_config_call(knob_names)),
    ]
    for prose, code in body:
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
        "accelerator": "GPU",  # Colab opens it on a GPU runtime
        "colab": {"provenance": [], "toc_visible": True},
    }
    return nb


SETUP_NB = notebook(
    "00_setup", "00 · Setup: runtime, GPU and backend",
    "Run this first on a fresh runtime (on Colab: *Runtime > Change runtime type > T4 GPU*). It mounts Google "
    "Drive, where the data, checkpoints and results live so a disconnect loses nothing, installs the pinned "
    "versions from `requirements-colab.txt`, and reports the hardware and the training backend the next "
    "notebooks will use.",
    'backend = ""  #@param ["", "auto", "unsloth", "transformers", "cpu"]',
    [
        ("## Hardware and versions\n\nThe GPU and its memory decide the batch size and the precision (a T4 has "
         "no bf16, so training runs in fp16); the versions should be the pinned set in `requirements.txt`.",
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
    "JSONL; rerunning with the same settings reuses them.",
    'train_samples = None  #@param {type:"raw"}\nval_samples = None  #@param {type:"raw"}\n'
    'test_samples = None  #@param {type:"raw"}',
    [
        ("## Clean and split\n\nStreams the input (the 1.9 GB train file is never held in memory) and shows how "
         "many records each split received.",
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
)

BASELINE_NB = notebook(
    "02_baseline", "02 · Baseline: the base model and two trivial systems",
    "Before training: how well does the base model do with the exact prompt it will be trained on? And how "
    "far do two trivial systems get, which a fine-tuned model must beat: *echo* (the title as the "
    "description) and *retrieval* (the description of the most similar training title, TF-IDF). Scores are on "
    "the fixed test sample, with bootstrap confidence intervals.",
    'max_new_tokens = None  #@param {type:"raw"}',
    [
        ("## The base model\n\nLoaded on the backend `00_setup` reported; the adapter comes in `03`.",
         "from titlegen_lib.models import describe, load_model\n\nbase = load_model(config)\ndescribe(base)"),
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
    "Trains LoRA adapters on the prepared splits. Each example is the inference prompt, the description and "
    "EOS; the loss covers the description and EOS only. Checkpoints go to the work folder (Drive on Colab): "
    "rerun this notebook after a disconnect and it resumes from the last complete checkpoint.",
    'max_steps = None  #@param {type:"raw"}\nlearning_rate = None  #@param {type:"raw"}\n'
    'lora_r = None  #@param {type:"raw"}',
    [
        ("## The tokenizer\n\nWith the EOS and pad tokens the model is trained with (pad is never EOS, so "
         "padding never hides the stop token).",
         "from titlegen_lib.models import load_tokenizer\n\ntokenizer = load_tokenizer(config)\n"
         "tokenizer.eos_token, tokenizer.pad_token"),
        ("## Sanity check: one training example\n\nExactly what the trainer sees. The grey prompt has label -100 "
         "(no loss); the description and the highlighted EOS at the end are trained on, so the model learns "
         "to write the description and then stop.",
         "from titlegen_lib.views import show_training_example\n\nshow_training_example(config, tokenizer, index=0)"),
        ("## Train\n\nThe progress bar and the loss table are the Trainer's. A rerun with the same settings "
         "resumes; changed settings or data start afresh.",
         "from titlegen_lib.train import train\n\nresult = train(config)\nresult.adapter_dir"),
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
    "with the same prompt and settings, streamed as they go. Temperature 0 is greedy decoding (top-p is then "
    "unused); the language switch changes the prompt's instruction.",
    'max_new_tokens = None  #@param {type:"raw"}\ntemperature = None  #@param {type:"raw"}',
    [
        ("## The demo\n\nLoads the base model and, when `03_finetune` has saved one for this `run_name`, the "
         "adapter.",
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

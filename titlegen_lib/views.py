"""What the notebooks display: samples, length histograms, one training example with its loss mask, figures.

Each function returns an object Jupyter and Colab render (a DataFrame, a matplotlib Figure or HTML),
so a notebook cell is one call and its result.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Mapping

from titlegen_lib.config import Config
from titlegen_lib.data import PreprocessResult, load_split, prepared_split
from titlegen_lib.prompts import choose_template, render_prompt, tokenize_example
from titlegen_lib.report import png_data_uri
from titlegen_lib.runner import NOTEBOOK_DIR

_SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


def _html(markup: str) -> Any:
    from IPython.display import HTML

    return HTML(markup)


def sample_records(config: Config, split: str = "train", n: int = 5) -> Any:
    """The first `n` rows of a prepared split (title, description, lengths), as a DataFrame."""
    import pandas as pd

    rows = load_split(prepared_split(config, split))[:n]
    return pd.DataFrame([{"uid": r["uid"], "title": r["input"], "description": r["output"],
                          "title_chars": len(r["input"]), "description_chars": len(r["output"])} for r in rows])


def length_histograms(result: PreprocessResult) -> Any:
    """Histograms of title and description length (characters) in each written split, as one Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for split, path in result.paths.items():
        rows = load_split(path)
        if not rows:
            continue
        for ax, field, label in ((axes[0], "input", "title"), (axes[1], "output", "description")):
            # density, because train has hundreds of times more rows than test
            ax.hist([len(r[field]) for r in rows], bins=40, density=True, histtype="step", linewidth=1.6,
                    color=_SPLIT_COLOURS.get(split), label=f"{split} ({len(rows):,})")
            ax.set_xlabel(f"{label} length (characters)")
    axes[0].set_ylabel("share of records")
    for ax, label in zip(axes, ("Titles", "Descriptions")):
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plt.close(fig)  # returned for display; closing keeps Jupyter from drawing it a second time
    return fig


def show_prompt(config: Config, tokenizer: Any, title: str | None = None) -> Any:
    """The prompt exactly as the model reads it for a title (the first test title by default), as rendered by
    the function training, evaluation and the demo all use; the title itself highlighted."""
    if title is None:
        rows = load_split(prepared_split(config, "test"))
        title = rows[0]["input"] if rows else "Stainless Steel Insulated Water Bottle, 32 oz"
    template = choose_template(tokenizer, config.language, config.prompt_format)
    prompt = render_prompt(title, tokenizer, template)
    at = prompt.find(title.strip())
    shown = (html.escape(prompt[:at]) + f'<mark>{html.escape(title.strip())}</mark>'
             + html.escape(prompt[at + len(title.strip()):])) if at >= 0 else html.escape(prompt)
    ids = tokenizer(prompt)["input_ids"]
    layout = "the tokenizer's chat template" if template.use_chat_template else "the plain layout (no chat template)"
    return _html(f'<div style="font-family:monospace;white-space:pre-wrap;border:1px solid #ccc;padding:8px;'
                 f'border-radius:4px">{shown}</div><p>{len(ids)} tokens, {layout}, language '
                 f'<code>{html.escape(template.language)}</code>. The model writes the description after the last '
                 f'line and ends it with <code>{html.escape(str(tokenizer.eos_token))}</code>.</p>')


def show_training_example(config: Config, tokenizer: Any, index: int = 0) -> Any:
    """One training example exactly as the trainer sees it: the loss-masked prompt greyed out, the
    description in full, and the final EOS token highlighted (the model learns to stop there)."""
    path = prepared_split(config, "train")
    rows = load_split(path)
    if not 0 <= index < len(rows):
        raise IndexError(f"index {index} is outside the {len(rows)} training examples in {path}")
    row = rows[index]
    template = choose_template(tokenizer, config.language, config.prompt_format)
    example = tokenize_example(row["input"], row["output"], tokenizer, template)
    ids, mask = example["input_ids"], example["completion_mask"]
    prompt_len = mask.index(1)
    prompt = tokenizer.decode(ids[:prompt_len], skip_special_tokens=False)
    description = tokenizer.decode(ids[prompt_len:-1], skip_special_tokens=False)
    eos = tokenizer.convert_ids_to_tokens(ids[-1])
    fits = len(ids) <= config.max_seq_length
    note = "" if fits else (f" <b>Longer than max_seq_length={config.max_seq_length}: this example is left out "
                            "of training.</b>")
    return _html(
        f'<div style="font-family:monospace;white-space:pre-wrap;border:1px solid #ccc;padding:8px;'
        f'border-radius:4px">'
        f'<span style="color:#9e9e9e" title="prompt: label -100, no loss">{html.escape(prompt)}</span>'
        f'<span title="description: trained">{html.escape(description)}</span>'
        f'<span style="background:#ffd54f;color:#000;border-radius:3px;padding:0 2px" '
        f'title="EOS: trained, so the model learns to stop">{html.escape(eos)}</span></div>'
        f'<p>Training example {index} (<code>{html.escape(row["uid"])}</code>): {len(ids)} tokens. '
        f'<span style="color:#9e9e9e">Grey</span>: the prompt, {prompt_len} tokens with label -100 (no loss). '
        f'Then the description, {len(ids) - prompt_len - 1} tokens, and the EOS token '
        f'<code>{html.escape(eos)}</code> (id {ids[-1]}), highlighted: both are trained on.{note}</p>')


def show_figures(figures: Mapping[str, str | Path]) -> Any:
    """Saved figures (PNG or SVG files) with their names as captions, embedded so they show in Colab too."""
    parts = []
    for name, path in figures.items():
        path = Path(path)
        if path.suffix.lower() == ".svg":
            image = path.read_text(encoding="utf-8")
        else:
            image = f'<img src="{png_data_uri(path)}" style="max-width:100%">'
        parts.append(f'<figure style="margin:0 0 16px 0">{image}'
                     f'<figcaption><code>{html.escape(str(name))}</code></figcaption></figure>')
    return _html("".join(parts) or "<p>No figures.</p>")


def report_link(path: str | Path) -> Any:
    """Where the HTML report is, with a link that opens it from Jupyter (on Colab: find it on Drive)."""
    path = Path(path).resolve()
    try:  # Jupyter resolves links against the notebook's folder, not the kernel's working directory
        href = os.path.relpath(path, NOTEBOOK_DIR)
    except ValueError:  # another drive on Windows
        href = path.as_uri()
    return _html(f'<p>Report: <a href="{html.escape(href)}" target="_blank">{html.escape(path.name)}</a> '
                 f'(<code>{html.escape(str(path))}</code>)</p>')


def side_by_side(comparison: Any, n: int = 3) -> Any:
    """The first `n` test titles with the reference and every system's output next to each other, in full."""
    frame = comparison.per_example
    systems = list(dict.fromkeys(frame["system"]))
    style = 'style="text-align:left;vertical-align:top;white-space:pre-wrap"'
    header = "".join(f"<th {style}>{html.escape(h)}</th>" for h in ["title", "reference", *systems])
    rows = []
    for uid in list(dict.fromkeys(frame["uid"]))[:n]:
        part = frame[frame["uid"] == uid].set_index("system")
        texts = [part.iloc[0]["title"], part.iloc[0]["reference"], *(part.loc[s, "output"] for s in systems)]
        rows.append("<tr>" + "".join(f"<td {style}>{html.escape(str(t))}</td>" for t in texts) + "</tr>")
    return _html(f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>")

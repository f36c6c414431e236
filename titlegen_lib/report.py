"""The comparison as a report a person reads without Jupyter: one self-contained HTML file (figures embedded
as base64, no external assets) and the same sections in Markdown.

Sections have stable ids and headings (`SECTIONS`), so links into the report and the tests keep working.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from titlegen_lib.config import Config
from titlegen_lib.evaluate import (
    FIGURE_CAPTIONS,
    LOWER_IS_BETTER,
    METRICS,
    Comparison,
    format_interval,
)
from titlegen_lib.storage import atomic_open

SECTIONS: dict[str, str] = {
    "summary": "Summary",
    "metrics": "Metrics",
    "significance": "Differences between systems",
    "other_decoding": "With the other decoding",
    "figures": "Figures",
    "examples": "Examples side by side",
    "definitions": "What the metrics mean",
    "settings": "Settings",
}

METRIC_DEFINITIONS: dict[str, str] = {
    "rougeL": "ROUGE-L F1 against the reference (longest common word subsequence, stemmed)",
    "rouge1": "ROUGE-1 F1: shared words",
    "rouge2": "ROUGE-2 F1: shared word pairs",
    "bleu": "corpus BLEU, 0-100 (sacrebleu); per example: sentence BLEU",
    "chrf": "corpus chrF, 0-100 (sacrebleu): character n-gram F-score; per example: sentence chrF",
    "semantic": "cosine similarity of the sentence embeddings of output and reference",
    "perplexity": "exp(mean NLL) of the reference description + EOS under the model, prompt excluded",
    "stopped_at_eos": "share of outputs the model ended itself, rather than hitting max_new_tokens",
    "empty": "share of empty outputs",
    "length_ratio": "output words / reference words (1 = the reference's length)",
    "distinct_1": "unique words / words, within one output",
    "distinct_2": "unique word pairs / word pairs, within one output",
    "repeat_3gram": "share of word trigrams repeating an earlier one in the same output (looping)",
    "title_copy": "share of outputs that only repeat the title",
    "language_ok": "share of outputs in the prompt's language (stopword-ratio detector; too short to tell = no)",
}

EXAMPLES_SHOWN = 20
SUMMARY_METRICS = ("rougeL", "chrf", "semantic", "perplexity", "stopped_at_eos", "repeat_3gram")
_STYLE = """body{font-family:system-ui,-apple-system,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.4}table{border-collapse:collapse;font-size:13px;margin:.5em 0}
td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}th{background:#f3f3f3}
.example{border:1px solid #ddd;border-radius:6px;padding:.4em .8em;margin:1em 0}
.example td.text{width:70%;white-space:pre-wrap}.wide{overflow-x:auto}.wide td{white-space:nowrap}.wide td.side{white-space:pre-wrap;min-width:14em;vertical-align:top}
.muted{color:#777}.flag{background:#fde2e1;border-radius:3px;padding:0 3px;margin-right:3px;font-size:12px}
.better{color:#1a7f37}.worse{color:#b42318}img{max-width:100%}figure{margin:1em 0}code{font-size:90%}"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _heading(section: str, level: int = 2) -> str:
    return f'<h{level} id="{section}">{_esc(SECTIONS[section])}</h{level}>'


# ---------------------------------------------------------------- what the report shows

def scoring_system(per_example: Any) -> str:
    """Whose ROUGE-L picks the examples: fine-tuned, else base, else the first system."""
    systems = list(dict.fromkeys(per_example.system))
    return next((s for s in ("finetuned", "base") if s in systems), systems[0])


def pick_examples(per_example: Any, n: int = EXAMPLES_SHOWN, seed: int = 0) -> list[tuple[str, str]]:
    """(label, uid) of the best and worst examples by the scoring system's ROUGE-L, then random ones from
    the rest; up to `n`, all of them when the sample is smaller."""
    system = scoring_system(per_example)
    ranked = list(per_example[per_example.system == system].sort_values("rougeL", ascending=False,
                                                                       kind="stable").uid)
    k = min(math.ceil(n / 3), len(ranked) // 3)
    best, worst = ranked[:k], ranked[len(ranked) - k:][::-1]
    middle = ranked[k:len(ranked) - k]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(middle), size=min(n - 2 * k, len(middle)), replace=False)) if middle else []
    return ([("best", u) for u in best] + [("worst", u) for u in worst]
            + [("random", str(middle[i])) for i in chosen])


def example_flags(row: Any) -> list[str]:
    """Short warnings for one output: what went wrong, at a glance."""
    flags = []
    if row.get("empty") == 1:
        flags.append("empty")
    if row.get("stopped_at_eos") == 0:
        flags.append("no EOS")
    if row.get("title_copy") == 1:
        flags.append("title copy")
    if row.get("repeat_3gram", 0) >= 0.2:
        flags.append("repeats")
    if row.get("language_ok") == 0 and row.get("empty") != 1:
        flags.append("language?")
    return flags


def summary_lines(comparison: Comparison) -> list[tuple[str, str, str]]:
    """(metric, verdict, difference) for the first pair (fine-tuned minus base when both are there)."""
    metrics = comparison.metrics
    if not metrics.get("pairs"):
        return []
    a, b = metrics["pairs"][0]
    diff = metrics[f"{a}_minus_{b}"]
    return [(f"{m} ({a} - {b})", diff[m]["verdict"], format_interval(m, diff[m], signed=True))
            for m in SUMMARY_METRICS if m in diff]


def decoding_label(decoding: dict[str, Any]) -> str:
    guard = decoding.get("repetition_penalty", 1.0) != 1.0 or decoding.get("no_repeat_ngram_size", 0)
    way = "sampling" if decoding.get("temperature", 0) > 0 else "greedy"
    return (f"{way}, {'with' if guard else 'without'} the repetition guard (repetition_penalty "
            f"{decoding.get('repetition_penalty')}{' on the generated tokens' if guard else ''}, no_repeat_ngram_size {decoding.get('no_repeat_ngram_size')}), "
            f"max_new_tokens {decoding.get('max_new_tokens')}")


def other_decoding_rows(comparison: Comparison) -> list[list[str]]:
    """[metric, base, fine-tuned, fine-tuned - base, verdict] under the other decoding."""
    other = comparison.metrics.get("other_decoding")
    if not other:
        return []
    diff, systems = other["finetuned_minus_base"], other["systems"]
    return [[m, format_interval(m, systems["base"][m]), format_interval(m, systems["finetuned"][m]),
             format_interval(m, diff[m], signed=True), diff[m]["verdict"]]
            for m in SUMMARY_METRICS if m in diff and m in systems["base"]]


def _html_other_decoding(comparison: Comparison) -> str:
    rows = other_decoding_rows(comparison)
    if not rows:
        return "<p class='muted'>Not computed (eval_other_decoding is off, or base or fine-tuned is missing).</p>"
    metrics = comparison.metrics
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f"<p>The tables above decode as the demo does: {_esc(decoding_label(metrics['settings']['decoding']))}. "
            f"Here the same models decode {_esc(decoding_label(metrics['other_decoding']['decoding']))}: the "
            "repetition guard repairs loops at decoding time, so with it off the numbers show what training "
            "itself changed.</p><table><tr><th>metric</th><th>base</th><th>fine-tuned</th>"
            f"<th>fine-tuned - base [95%]</th><th>verdict</th></tr>{body}</table>")


def _settings(comparison: Comparison, config: Config) -> dict[str, Any]:
    chosen = ("run_name", "model_name", "language", "prompt_format", "test_samples", "bootstrap_samples", "seed",
              "embedding_model", "adapter_dir", "eval_repetition_guard")
    values = {k: getattr(config, k) for k in chosen}
    values.update(comparison.metrics["settings"]["decoding"])  # what the models decoded with
    values["test_file"] = comparison.metrics.get("test_file")
    values["outputs cut at max_new_tokens"] = ", ".join(
        f"{s}: {v['cut_at_max_new_tokens']} of {comparison.metrics['n_examples']}"
        for s, v in comparison.metrics["systems"].items() if "cut_at_max_new_tokens" in v) or "-"
    values["predictions from cache"] = ", ".join(f"{s}: {'yes' if v.get('cached') else 'no'}"
                                                 for s, v in comparison.metrics["systems"].items())
    return values


# ---------------------------------------------------------------- HTML

def _html_examples(comparison: Comparison, config: Config) -> str:
    frame = comparison.per_example
    systems = list(dict.fromkeys(frame.system))
    cards = []
    for number, (label, uid) in enumerate(pick_examples(frame, seed=config.seed), start=1):
        rows = frame[frame.uid == uid].set_index("system")
        first = rows.iloc[0]
        lines = [f"<tr><th>reference</th><td class='text'>{_esc(first.reference)}</td><td></td></tr>"]
        for s in systems:
            row = rows.loc[s].to_dict()
            flags = "".join(f"<span class='flag'>{_esc(f)}</span>" for f in example_flags(row))
            lines.append(f"<tr><th>{_esc(s)}</th><td class='text'>{_esc(row['output'])}</td>"
                         f"<td>ROUGE-L {row['rougeL']:.3f}<br>chrF {row['chrf']:.1f}<br>"
                         + (f"semantic {row['semantic']:.3f}<br>" if "semantic" in row else "") + f"{flags}</td></tr>")
        cards.append(f"<div class='example' id='example-{number}'><h3>{number}. <span class='muted'>{label} "
                     f"by {_esc(scoring_system(frame))} ROUGE-L</span> &middot; {_esc(first.title)}</h3>"
                     f"<table>{''.join(lines)}</table></div>")
    return "".join(cards)


def best_and_worst(per_example: Any, n: int = 5) -> tuple[list[str], list[str]]:
    """The uids of the `n` best and the `n` worst test titles by the scoring system's ROUGE-L (fewer when the
    sample is small: each title once)."""
    system = scoring_system(per_example)
    ranked = list(per_example[per_example.system == system].sort_values("rougeL", ascending=False, kind="stable").uid)
    k = min(n, len(ranked) // 2)
    return ranked[:k], ranked[len(ranked) - k:][::-1]


def _html_side_by_side(comparison: Comparison) -> str:
    """For the worst and the best titles: the title, the reference and every system's output, side by side."""
    frame = comparison.per_example
    systems = list(dict.fromkeys(frame.system))
    best, worst = best_and_worst(frame)
    head = "".join(f"<th>{_esc(h)}</th>" for h in ["title", "reference", *systems])
    parts = []
    for label, uids in (("worst", worst), ("best", best)):
        rows = []
        for uid in uids:
            part = frame[frame.uid == uid].set_index("system")
            cells = [part.iloc[0].title, part.iloc[0].reference]
            cells += [f"{part.loc[s, 'output']}\n(ROUGE-L {part.loc[s, 'rougeL']:.3f})" for s in systems]
            rows.append("<tr>" + "".join(f"<td class='side'>{_esc(c)}</td>" for c in cells) + "</tr>")
        parts.append(f"<h3>The {len(uids)} {label} test titles by {_esc(scoring_system(frame))} ROUGE-L</h3>"
                     f"<div class='wide'><table class='sidebyside'><tr>{head}</tr>{''.join(rows)}</table></div>")
    return "".join(parts)


def _html_significance(comparison: Comparison) -> str:
    metrics = comparison.metrics
    if not metrics.get("pairs"):
        return "<p class='muted'>Only one system: nothing to compare.</p>"
    parts = ["<p>Paired bootstrap over the same resampled test sets: a difference is significant when its 95% "
             "interval excludes 0. Positive = the first system is higher.</p>"]
    for a, b in metrics["pairs"]:
        rows = "".join(
            f"<tr><td>{_esc(m)}</td><td>{format_interval(m, d, signed=True)}</td>"
            f"<td class='{d['verdict'] if d['verdict'] in ('better', 'worse') else ''}'>{_esc(d['verdict'])}</td></tr>"
            for m, d in metrics[f"{a}_minus_{b}"].items())
        parts.append(f"<h3 id='{_esc(a)}-minus-{_esc(b)}'>{_esc(a)} minus {_esc(b)}</h3><table><tr><th>metric</th>"
                     f"<th>difference [95% interval]</th><th>verdict</th></tr>{rows}</table>")
    return "".join(parts)


def png_data_uri(path: str | Path) -> str:
    """A PNG file as a data: URI, so an HTML page or a notebook output shows it with no file beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _html_figures(comparison: Comparison) -> str:
    parts = []
    for name, path in comparison.figures.items():
        path = Path(path)
        caption = FIGURE_CAPTIONS.get(name, name)
        if not path.is_file():
            parts.append(f"<p class='muted'>{_esc(caption)}: {_esc(path)} is missing.</p>")
            continue
        parts.append(f"<figure id='figure-{_esc(name)}'><img alt='{_esc(caption)}' src='{png_data_uri(path)}'>"
                     f"<figcaption>{_esc(caption)}</figcaption></figure>")
    return "".join(parts) or "<p class='muted'>No figures.</p>"


def render_html(comparison: Comparison, config: Config) -> str:
    """The report as one HTML string that reads anywhere: styles inline, images embedded."""
    metrics = comparison.metrics
    systems = ", ".join(metrics["systems"])
    verdicts = "".join(f"<li>{_esc(m)}: <b>{_esc(v)}</b> ({_esc(d)})</li>" for m, v, d in summary_lines(comparison))
    definitions = "".join(f"<tr><td>{_esc(m)}</td><td>{_esc(METRIC_DEFINITIONS[m])}</td>"
                          f"<td>{'lower' if m in LOWER_IS_BETTER else 'higher' if m != 'length_ratio' else 'near 1'}"
                          "</td></tr>" for m in METRICS)
    settings = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>"
                       for k, v in _settings(comparison, config).items())
    body = [
        f"<h1>titlegen: before / after report <span class='muted'>({_esc(config.run_name)})</span></h1>",
        _heading("summary"),
        f"<p>{metrics['n_examples']} test titles, systems: {_esc(systems)}. Model <code>{_esc(config.model_name)}"
        f"</code>. Every number has a 95% bootstrap interval ({metrics['bootstrap_samples']} resamples, seed "
        f"{metrics['seed']}).</p>",
        f"<ul>{verdicts}</ul>" if verdicts else "<p class='muted'>No second system to compare with.</p>",
        _heading("metrics"),
        "<p>Mean [95% interval] per system; BLEU, chrF and perplexity are corpus-level. Rows \"a - b\" are "
        "paired differences; <b>*</b> marks an interval that excludes 0.</p>",
        f"<div class='wide'>{comparison.table.fillna('').to_html(escape=True)}</div>",
        _heading("significance"), _html_significance(comparison),
        _heading("other_decoding"), _html_other_decoding(comparison),
        _heading("figures"), _html_figures(comparison),
        _heading("examples"),
        _html_side_by_side(comparison),
        f"<h3>More examples</h3><p>The best and worst test titles by {_esc(scoring_system(comparison.per_example))} "
        "ROUGE-L, then random ones (seeded), each with every system's output and its scores.</p>",
        _html_examples(comparison, config),
        _heading("definitions"),
        f"<table><tr><th>metric</th><th>meaning</th><th>better when</th></tr>{definitions}</table>",
        _heading("settings"), f"<table>{settings}</table>",
    ]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>titlegen report: "
            f"{_esc(config.run_name)}</title><style>{_STYLE}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


# ---------------------------------------------------------------- Markdown

def _md_cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(comparison: Comparison, config: Config) -> str:
    """The same sections in Markdown; figures are linked as the PNG files beside it."""
    metrics, table, frame = comparison.metrics, comparison.table.fillna(""), comparison.per_example
    out = [f"# titlegen: before / after report ({config.run_name})", "",
           f'<a id="summary"></a>\n## {SECTIONS["summary"]}', "",
           f"{metrics['n_examples']} test titles, systems: {', '.join(metrics['systems'])}. Model "
           f"`{config.model_name}`. 95% bootstrap intervals ({metrics['bootstrap_samples']} resamples).", ""]
    out += [f"- {m}: **{v}** ({d})" for m, v, d in summary_lines(comparison)] + [""]
    out += [f'<a id="metrics"></a>\n## {SECTIONS["metrics"]}', "",
            markdown_table(["system", *table.columns], [[i, *r] for i, r in zip(table.index, table.values)]), ""]
    out += [f'<a id="significance"></a>\n## {SECTIONS["significance"]}', ""]
    for a, b in metrics.get("pairs", []):
        diff = metrics[f"{a}_minus_{b}"]
        out += [f"### {a} minus {b}", "", markdown_table(
            ["metric", "difference [95% interval]", "verdict"],
            [[m, format_interval(m, d, signed=True), d["verdict"]] for m, d in diff.items()]), ""]
    out += [f'<a id="other_decoding"></a>\n## {SECTIONS["other_decoding"]}', ""]
    if rows := other_decoding_rows(comparison):
        out += [f"Decoded {decoding_label(metrics['settings']['decoding'])} above; here "
                f"{decoding_label(metrics['other_decoding']['decoding'])}.", "",
                markdown_table(["metric", "base", "fine-tuned", "fine-tuned - base [95%]", "verdict"], rows), ""]
    else:
        out += ["Not computed.", ""]
    out += [f'<a id="figures"></a>\n## {SECTIONS["figures"]}', ""]
    out += [f"![{FIGURE_CAPTIONS.get(name, name)}]({Path(path).name})" for name, path in comparison.figures.items()]
    out += ["", f'<a id="examples"></a>\n## {SECTIONS["examples"]}', ""]
    for number, (label, uid) in enumerate(pick_examples(frame, seed=config.seed), start=1):
        rows = frame[frame.uid == uid]
        out += [f"### {number}. {label}: {_md_cell(rows.iloc[0].title)}", "",
                markdown_table(["", "text", "ROUGE-L"],
                               [["reference", rows.iloc[0].reference, ""]]
                               + [[r.system, r.output, f"{r.rougeL:.3f}"] for r in rows.itertuples()]), ""]
    out += [f'<a id="definitions"></a>\n## {SECTIONS["definitions"]}', "",
            markdown_table(["metric", "meaning"], [[m, METRIC_DEFINITIONS[m]] for m in METRICS]), ""]
    out += [f'<a id="settings"></a>\n## {SECTIONS["settings"]}', "",
            markdown_table(["setting", "value"], list(_settings(comparison, config).items())), ""]
    return "\n".join(out)


def write_report(comparison: Comparison, config: Config) -> Path:
    """Write report.html (and report.md) beside metrics.json; return the HTML path."""
    path = config.eval_dir / "report.html"
    with atomic_open(path) as handle:
        handle.write(render_html(comparison, config))
    with atomic_open(path.with_suffix(".md")) as handle:
        handle.write(render_markdown(comparison, config))
    comparison.paths.update(report=path, report_markdown=path.with_suffix(".md"))
    return path

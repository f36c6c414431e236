"""A self-contained HTML report of a comparison: table, significance, figures and side-by-side examples."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from titlegen_lib.config import Config
from titlegen_lib.evaluate import Comparison
from titlegen_lib.storage import atomic_open

SECTIONS = ("summary", "metrics", "significance", "figures", "examples", "settings")
_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top}
th{background:#f3f3f3}.ex td{width:25%}.muted{color:#777}img{max-width:100%}"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def pick_examples(comparison: Comparison, n: int = 20, seed: int = 0) -> list[tuple[str, str]]:
    """(label, uid) of the best, worst and random examples by the fine-tuned (else first) system's ROUGE-L."""
    frame = comparison.per_example
    system = "finetuned" if "finetuned" in set(frame.system) else frame.system.iloc[0]
    scores = frame[frame.system == system].set_index("uid").rougeL.sort_values()
    third = max(1, n // 3)
    best = list(scores.index[::-1][:third])
    worst = [u for u in scores.index[:third] if u not in best]
    rest = [u for u in scores.index if u not in worst and u not in best]
    rng = np.random.default_rng(seed)
    random = list(rng.choice(rest, size=min(n - len(worst) - len(best), len(rest)), replace=False)) if rest else []
    return [("best", u) for u in best] + [("worst", u) for u in worst] + [("random", str(u)) for u in random]


def render_html(comparison: Comparison, config: Config) -> str:
    """The report as one HTML string; images are embedded, so the file reads anywhere."""
    metrics = comparison.metrics
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>titlegen report: {_esc(config.run_name)}"
             f"</title><style>{_STYLE}</style></head><body>",
             f"<h1>titlegen: before / after report ({_esc(config.run_name)})</h1>"]
    diff = metrics.get("finetuned_minus_base", {})
    verdicts = "".join(f"<li>{_esc(m)}: {_esc(d['verdict'])} ({d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}])</li>"
                       for m, d in diff.items() if m in ("rougeL", "chrf", "semantic", "repeat_3gram",
                                                         "stopped_at_eos"))
    parts.append(f"<h2 id='summary'>Summary</h2><p>{metrics['n_examples']} test titles, model "
                 f"<code>{_esc(config.model_name)}</code>, 95% bootstrap intervals ({metrics['bootstrap_samples']} "
                 f"resamples).</p><ul>{verdicts or '<li>no base/fine-tuned pair in this comparison</li>'}</ul>")
    parts.append("<h2 id='metrics'>Metrics (mean [95% interval])</h2>" + comparison.table.to_html(escape=True))
    rows = "".join(f"<tr><td>{_esc(m)}</td><td>{d['mean']:+.4f}</td><td>[{d['low']:+.4f}, {d['high']:+.4f}]</td>"
                   f"<td>{_esc(d['verdict'])}</td></tr>" for m, d in diff.items())
    parts.append("<h2 id='significance'>Fine-tuned minus base (paired bootstrap)</h2>"
                 + (f"<table><tr><th>metric</th><th>difference</th><th>95% interval</th><th>verdict</th></tr>{rows}"
                    "</table>" if rows else "<p class='muted'>needs both the base and the fine-tuned system</p>"))
    images = "".join(f"<h3>{_esc(name)}</h3><img alt='{_esc(name)}' src='data:image/png;base64,"
                     f"{base64.b64encode(Path(path).read_bytes()).decode()}'>"
                     for name, path in comparison.figures.items())
    parts.append(f"<h2 id='figures'>Figures</h2>{images}")
    frame = comparison.per_example
    systems = list(dict.fromkeys(frame.system))
    header = "".join(f"<th>{_esc(s)}</th>" for s in systems)
    body = []
    for label, uid in pick_examples(comparison, seed=config.seed):
        rows_for = frame[frame.uid == uid]
        first = rows_for.iloc[0]
        cells = "".join(f"<td>{_esc(rows_for[rows_for.system == s].output.iloc[0])}"
                        f"<div class='muted'>ROUGE-L {rows_for[rows_for.system == s].rougeL.iloc[0]:.3f}</div></td>"
                        for s in systems)
        body.append(f"<tr><td><b>{label}</b><br>{_esc(first.title)}</td><td>{_esc(first.reference)}</td>{cells}</tr>")
    parts.append(f"<h2 id='examples'>Examples side by side</h2><table class='ex'><tr><th>title</th>"
                 f"<th>reference</th>{header}</tr>{''.join(body)}</table>")
    settings = {k: v for k, v in config.to_dict().items() if k in (
        "model_name", "language", "prompt_format", "max_new_tokens", "temperature", "repetition_penalty",
        "no_repeat_ngram_size", "test_samples", "seed", "embedding_model")}
    parts.append("<h2 id='settings'>Settings</h2><table>" + "".join(
        f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in settings.items()) + "</table></body></html>")
    return "\n".join(parts)


def write_report(comparison: Comparison, config: Config) -> Path:
    """Write report.html next to the metrics and return its path."""
    path = config.eval_dir / "report.html"
    with atomic_open(path) as handle:
        handle.write(render_html(comparison, config))
    comparison.paths["report"] = path
    return path

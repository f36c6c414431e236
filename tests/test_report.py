"""The HTML and Markdown reports: every section renders, nothing is fetched from outside, text is escaped."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from test_evaluate import StubModel

from titlegen_lib import evaluate
from titlegen_lib.data import load_split, preprocess
from titlegen_lib.evaluate import run_comparison
from titlegen_lib.generate import Generation
from titlegen_lib.report import SECTIONS, pick_examples, render_markdown, write_report

INJECTED = "<script>alert('x')</script>"


@pytest.fixture
def comparison(offline_config, monkeypatch):
    """All four systems on six test titles, with the LLM replaced by stand-ins (no model is loaded)."""
    config = offline_config.replace(synthetic_train_records=300, synthetic_test_records=40, train_samples=40,
                                    val_samples=4, test_samples=6, bootstrap_samples=50)
    preprocess(config)
    references = {r["input"]: r["output"] for r in load_split(config.data_dir / "test.jsonl")}

    def generate(loaded, titles, config, settings=None, progress=True):
        if loaded == "finetuned":
            return [Generation(t, " ".join(references[t].split()[: 8 + 3 * i]), True, 20) for i, t in enumerate(titles)]
        return [Generation(t, f"luxury luxury {INJECTED} luxury luxury", False, 96) for t in titles]

    monkeypatch.setattr(evaluate, "load_model",
                        lambda config, adapter_dir=None: StubModel("finetuned" if adapter_dir else "base"))
    monkeypatch.setattr(evaluate, "generate_descriptions", generate)
    monkeypatch.setattr(evaluate, "reference_nll", lambda loaded, titles, *_, **__: [(20.0, 10)] * len(titles))
    config.adapter_dir.mkdir(parents=True)
    (config.adapter_dir / "adapter_model.safetensors").write_bytes(b"weights")
    (config.adapter_dir / "adapter_config.json").write_text("{}")
    return run_comparison(config, progress=False), config


def test_html_report_has_every_section_and_needs_nothing_from_outside(comparison):
    result, config = comparison
    path = write_report(result, config)
    assert path == config.eval_dir / "report.html" and result.paths["report"] == path
    page = path.read_text(encoding="utf-8")
    for section, heading in SECTIONS.items():
        assert f'<h2 id="{section}">{heading}</h2>' in page
    assert page.count("data:image/png;base64,") == 4  # metrics, lengths, length histogram, scatter: embedded
    assert not re.search(r"""(src|href)=['"]?(https?:|//|[\w./-]+\.(png|css|js))""", page)  # no external assets
    assert "<script" not in page and "&lt;script&gt;" in page  # model output is escaped, never run
    assert page.count("class='example'") == 6  # the whole sample when it is smaller than 20
    assert "finetuned minus base" in page and "better" in page
    for system in evaluate.SYSTEMS:
        assert f"<th>{system}</th>" in page


def test_markdown_report_has_the_same_sections(comparison):
    result, config = comparison
    write_report(result, config)
    text = result.paths["report_markdown"].read_text(encoding="utf-8")
    for section, heading in SECTIONS.items():
        assert f'<a id="{section}"></a>\n## {heading}' in text
    assert "![" in text and "(scatter.png)" in text


def test_report_of_the_baselines_alone(offline_config):
    config = offline_config.replace(synthetic_train_records=300, synthetic_test_records=40, train_samples=40,
                                    val_samples=4, test_samples=6, bootstrap_samples=20)
    preprocess(config)
    result = run_comparison(config, ("echo", "retrieval"), progress=False)
    page = write_report(result, config).read_text(encoding="utf-8")
    assert all(f'id="{section}"' in page for section in SECTIONS)
    assert "retrieval minus echo" not in page and "scatter" not in result.figures  # no base/fine-tuned pair
    assert render_markdown(result, config).count("## ") >= len(SECTIONS)


def test_examples_are_best_worst_then_random_by_finetuned_rouge():
    uids = [f"u{i:02d}" for i in range(30)]
    frame = pd.DataFrame([{"uid": u, "system": s, "rougeL": (i / 30 if s == "finetuned" else 1 - i / 30)}
                          for i, u in enumerate(uids) for s in ("base", "finetuned")])
    picked = pick_examples(frame, n=20, seed=1)
    labels = [label for label, _ in picked]
    assert labels == ["best"] * 7 + ["worst"] * 7 + ["random"] * 6
    assert [u for _, u in picked[:7]] == uids[::-1][:7] and [u for _, u in picked[7:14]] == uids[:7]
    assert len({u for _, u in picked}) == 20 and pick_examples(frame, n=20, seed=1) == picked
    assert pick_examples(frame[frame.system == "base"], n=3)[0] == ("best", "u00")  # no fine-tuned: base decides


def test_figures_are_embedded_so_they_show_without_their_files(tmp_path):
    import base64

    from titlegen_lib.report import png_data_uri
    from titlegen_lib.views import show_figures

    png = tmp_path / "curve.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    uri = png_data_uri(png)
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",", 1)[1]) == png.read_bytes()
    shown = show_figures({"loss curve": png})
    page = shown.data if hasattr(shown, "data") else str(shown)
    assert uri in page and "loss curve" in page


def test_the_report_shows_the_worst_and_best_titles_side_by_side_and_a_length_histogram(comparison):
    from titlegen_lib.report import best_and_worst

    comparison, config = comparison
    html = write_report(comparison, config).read_text()
    best, worst = best_and_worst(comparison.per_example)
    assert len(best) == len(worst) == 3  # six test titles: three each, none twice
    frame = comparison.per_example
    finetuned = frame[frame.system == "finetuned"].set_index("uid").rougeL
    assert finetuned[best].min() >= finetuned[worst].max()
    assert "The 3 worst test titles by finetuned ROUGE-L" in html and "The 3 best test titles" in html
    side = html.split("The 3 worst test titles")[1].split("More examples")[0]
    for uid in worst + best:
        row = frame[frame.uid == uid]
        assert _escaped(row.iloc[0].title) in side and _escaped(row.iloc[0].reference) in side
        for output in row.output:
            assert _escaped(output) in side
    assert comparison.figures["length_histogram"].is_file() and "figure-length_histogram" in html


def _escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_the_report_states_its_decoding_and_shows_the_other(comparison):
    comparison, config = comparison
    html = write_report(comparison, config).read_text()
    section = html.split("With the other decoding")[1].split("<h2")[0]
    assert "decode as the demo does: greedy, with the repetition guard" in section
    assert "decode greedy, without the repetition guard (repetition_penalty 1.0, no_repeat_ngram_size 0)" in section
    other = comparison.metrics["other_decoding"]["finetuned_minus_base"]["rougeL"]
    assert f"{other['mean']:+.3f}" in section

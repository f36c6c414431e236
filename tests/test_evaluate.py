"""Metrics on hand-computed cases, confidence intervals, the prediction cache and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from titlegen_lib.data import preprocess
from titlegen_lib.evaluate import (
    Prediction,
    bootstrap_ci,
    cache_key,
    detect_language,
    distinct_n,
    example_metrics,
    is_title_copy,
    length_ratio,
    paired_difference_ci,
    repeated_ngram_rate,
    retrieve,
    rouge_scores,
    run_comparison,
    run_system,
)
from titlegen_lib.report import SECTIONS, write_report


def test_rouge_on_known_strings():
    scores = rouge_scores("the cat sat", "the cat sat on the mat")
    assert scores["rouge1"] == pytest.approx(2 * 1 * 0.5 / 1.5)  # P = 3/3, R = 3/6
    assert scores["rougeL"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4)  # 2 of 2 and 2 of 5 bigrams
    assert rouge_scores("", "anything")["rougeL"] == 0.0


def test_distinct_and_repetition():
    assert distinct_n("a b c d", 1) == 1.0
    assert distinct_n("luxury luxury luxury luxury", 1) == 0.25
    assert distinct_n("", 2) == 0.0
    assert repeated_ngram_rate("luxury luxury luxury luxury luxury") == pytest.approx(2 / 3)  # 3 trigrams, 2 repeats
    assert repeated_ngram_rate("a fine steel kettle for tea") == 0.0


def test_length_ratio_title_copy_and_language():
    assert length_ratio("one two", "one two three four") == 0.5
    assert is_title_copy("Acme Kettle, Black!", "acme kettle black")
    assert not is_title_copy("Acme Kettle boils water fast and quietly", "Acme Kettle")
    assert detect_language("This is a kettle for the kitchen and it is fast") == "en"
    assert detect_language("Esta é uma chaleira para a cozinha e não faz barulho") == "pt"
    assert detect_language("Kettle") is None


def test_example_metrics_of_a_looping_output():
    looping = Prediction("u", "Luxury Soap", "A gentle soap with shea butter.", "luxury luxury luxury luxury", False)
    metrics = example_metrics(looping, "en")
    assert metrics["repeat_3gram"] == pytest.approx(0.5)
    assert metrics["stopped_at_eos"] == 0.0 and metrics["empty"] == 0.0
    assert 0.0 <= metrics["chrf"] <= 100.0


def test_bootstrap_interval_properties():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.5, 0.1, 30), rng.normal(0.5, 0.1, 3000)
    mean, low, high = bootstrap_ci(small, 500, seed=3)
    assert low < mean < high and bootstrap_ci(small, 500, seed=3) == (mean, low, high)
    _, low_l, high_l = bootstrap_ci(large, 500, seed=3)
    assert high_l - low_l < (high - low) / 3  # about sqrt(100) narrower
    gain = paired_difference_ci(small + 0.05, small, 500)
    assert gain[1] > 0  # a clear gain on every example is significant
    noise = paired_difference_ci(small, small[::-1], 500)
    assert noise[1] < 0 < noise[2]


def test_retrieval_finds_the_nearest_training_title():
    train = [{"input": "Acme Steel Kettle", "output": "kettle text"},
             {"input": "Zeta Desk Lamp LED", "output": "lamp text"}]
    assert retrieve(train, ["LED Desk Lamp by Zeta", "Kettle of steel"]) == ["lamp text", "kettle text"]


@pytest.fixture
def prepared(offline_config):
    config = offline_config.replace(synthetic_train_records=300, synthetic_test_records=40, train_samples=40,
                                    val_samples=4, test_samples=6, bootstrap_samples=50)
    preprocess(config)
    return config


def test_cache_hits_and_misses(prepared):
    first = run_system(prepared, "retrieval", progress=False)
    again = run_system(prepared, "retrieval", progress=False)
    assert not first.cached and again.cached and again.predictions == first.predictions
    assert cache_key(prepared, "base") != cache_key(prepared.replace(max_new_tokens=7), "base")  # decoding: miss
    assert cache_key(prepared, "echo") == cache_key(prepared.replace(max_new_tokens=7), "echo")


def test_comparison_writes_everything_and_the_report_has_all_sections(prepared):
    comparison = run_comparison(prepared, ("echo", "retrieval"), progress=False)
    assert list(comparison.table.index) == ["echo", "retrieval"]
    assert comparison.metrics["systems"]["echo"]["title_copy"]["mean"] == 1.0
    rows = [json.loads(line) for line in comparison.paths["predictions"].read_text().splitlines()]
    assert len(rows) == 6 and set(rows[0]) == {"uid", "title", "reference", "echo", "retrieval"}
    assert rows[0]["echo"]["output"] == rows[0]["title"]
    assert all(path.is_file() for path in comparison.figures.values())
    html = write_report(comparison, prepared).read_text()
    for section in SECTIONS:
        assert f"id='{section}'" in html
    assert "data:image/png;base64," in html and html.count("<tr><td><b>") == 6

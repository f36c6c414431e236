"""Recipe study: which settings make the fine-tuned model clearly beat its base, measured with the evaluation
module on real records (folds of ../shared/data/amazon_titles_real_250.json) and on synthetic data.

    python bench/recipe.py --data ../shared/data/amazon_titles_real_250.json --levers baseline,all_linear \
        --seeds 1,2 --fold 0 --preset colab-t4 -p model_name=smollm2-135m-offline
    python bench/recipe.py --synthetic 1500 --levers baseline,best ...   # synthetic data instead
    python bench/recipe.py --pool <work>/f0/baseline-s1/out-baseline/eval/default ... --tag folds  # folds pooled

A lever is a named set of settings on top of the preset (LEVERS below); each (lever, seed) is one run: its own
work folder, preprocess, train, then the comparison of echo, retrieval, base and fine-tuned on the fold's test
records. Levers marked evaluation-only reuse the adapter of the lever they name and change only the decoding.
Every finished run is appended to outputs/bench/recipe-<tag>.json (a killed study keeps what finished); the
table is printed at the end (and by --table).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from titlegen_lib.config import FEW_RECORDS  # noqa: E402  (the library's small-data settings: SMALL and ES)

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATTENTION = ALL_LINEAR[:4]
# Small data: batches of 16 (a few hundred records make a handful of batches of 64), and evaluations often
# enough for early stopping to see the validation loss turn; ES: up to 8 epochs with early stopping.
ES = {k: FEW_RECORDS[k] for k in ("early_stopping_patience", "num_train_epochs")}
SMALL = {k: v for k, v in FEW_RECORDS.items() if k not in ES}

LEVERS: dict[str, dict[str, Any]] = {
    "baseline": {},  # the preset as it is, without the library's switch to the small-data settings
    "few_records": {"few_records_recipe": True},  # the preset as it is, switch on (attn_es on a few hundred)
    "batch16": {**SMALL},
    "all_linear": {**SMALL, "lora_target_modules": ALL_LINEAR},
    "all_linear_r32": {**SMALL, "lora_target_modules": ALL_LINEAR, "lora_r": 32, "lora_alpha": 64},
    "lr_1e-3": {**SMALL, "lora_target_modules": ALL_LINEAR, "learning_rate": 1e-3},
    "lr_5e-4_3ep": {**SMALL, "lora_target_modules": ALL_LINEAR, "learning_rate": 5e-4, "num_train_epochs": 3},
    "lr_5e-4_es": {**SMALL, **ES, "lora_target_modules": ALL_LINEAR, "learning_rate": 5e-4},
    "cut_long": {**SMALL, **ES, "lora_target_modules": ALL_LINEAR, "learning_rate": 5e-4, "long_content": "cut"},
    "cut_long_r32": {**SMALL, **ES, "lora_target_modules": ALL_LINEAR, "learning_rate": 5e-4, "long_content": "cut",
                     "lora_r": 32, "lora_alpha": 64},
    "plain_prompt": {**SMALL, **ES, "lora_target_modules": ALL_LINEAR, "learning_rate": 5e-4, "long_content": "cut",
                     "prompt_format": "plain"},
    # The GPU study's other levers, each one change from cut_long: drop long descriptions instead (at the real
    # median's length), attention only, a lower rate.
    "drop_long": {**SMALL, **ES, "lora_target_modules": ALL_LINEAR, "learning_rate": 5e-4, "long_content": "drop",
                  "max_content_chars": 500},
    "attn_es": {**SMALL, **ES, "lora_target_modules": ATTENTION, "learning_rate": 5e-4, "long_content": "cut"},
    "attn_r32_es": {**SMALL, **ES, "lora_target_modules": ATTENTION, "learning_rate": 5e-4, "long_content": "cut",
                    "lora_r": 32, "lora_alpha": 64},
    "attn_lr2e-4_es": {**SMALL, **ES, "lora_target_modules": ATTENTION, "learning_rate": 2e-4, "long_content": "cut"},
    "lr_2e-4_es": {**SMALL, **ES, "lora_target_modules": ALL_LINEAR, "learning_rate": 2e-4, "long_content": "cut"},
    # For the CPU's offline preset (60 steps of 8 by default): cut instead of drop, and epochs with early stopping.
    "offline_cut": {"long_content": "cut"},
    "offline_cut_es": {"long_content": "cut", "max_steps": -1, "num_train_epochs": 4, "early_stopping_patience": 2,
                       "eval_steps": 10, "save_steps": 10},
    # The offline preset (40 steps of 8, lr 1e-3, cut at 400 characters): twice the steps, a lower rate.
    "offline_80": {"max_steps": 80},
    "offline_lr3e-4": {"learning_rate": 3e-4},
    "offline_plain": {"prompt_format": "plain"},
    "offline_80_lr3e-4": {"max_steps": 80, "learning_rate": 3e-4},
    # Attention only: less capacity to move away from the base's wording (which copies the title's words).
    "offline_attn": {"lora_target_modules": ATTENTION},
    "offline_80_attn": {"max_steps": 80, "lora_target_modules": ATTENTION},
    "offline_60_attn": {"max_steps": 60, "lora_target_modules": ATTENTION},
    # Evaluation-only: the adapter of the lever named in "adapter_of", other decoding.
    "offline_guard": {"adapter_of": "baseline", "eval_repetition_guard": True},
    "offline_cut_guard": {"adapter_of": "offline_cut", "eval_repetition_guard": True},
    "guard": {"adapter_of": "cut_long", "eval_repetition_guard": True},
    "sampling": {"adapter_of": "cut_long", "temperature": 0.7},
    "fixed_160": {"adapter_of": "cut_long", "max_new_tokens": 160},
    "attn_sampling": {"adapter_of": "attn_es", "temperature": 0.7},
}
SHOWN = ("rougeL", "chrf", "semantic", "repeat_3gram", "title_copy", "stopped_at_eos", "length_ratio")


def write_fold(records: Path, fold: int, folds: int, out: Path) -> Path:
    """trn.json and tst.json of one fold: a record is in the test part when its uid hashes to `fold`."""
    out.mkdir(parents=True, exist_ok=True)
    lines = records.read_text(encoding="utf-8").splitlines(keepends=True)
    parts: dict[str, list[str]] = {"trn.json": [], "tst.json": []}
    for line in lines:
        uid = json.loads(line).get("uid", "")
        test = int(hashlib.sha256(uid.encode()).hexdigest(), 16) % folds == fold
        parts["tst.json" if test else "trn.json"].append(line)
    for name, part in parts.items():
        (out / name).write_text("".join(part), encoding="utf-8")
    return out


def summarize(metrics: dict[str, Any], run: dict[str, Any] | None) -> dict[str, Any]:
    systems = metrics["systems"]
    row: dict[str, Any] = {system: {m: systems[system][m]["mean"] for m in SHOWN if m in systems[system]}
                           for system in systems}
    row["finetuned_minus_base"] = {m: metrics["finetuned_minus_base"][m] for m in ("rougeL", "chrf", "semantic")
                                   if m in metrics.get("finetuned_minus_base", {})}
    row["decoding"] = metrics["settings"]["decoding"]
    row["cut_at_max_new_tokens"] = {s: v.get("cut_at_max_new_tokens") for s, v in systems.items()}
    row["n_test"] = metrics["n_examples"]
    if run:
        row["train"] = {k: run.get(k) for k in ("steps", "initial_eval_loss", "eval_loss", "best_checkpoint",
                                                "stopped_early", "examples", "wall_seconds")}
    return row


def run_lever(name: str, seed: int, args: argparse.Namespace, raw: Path | None, base: dict[str, Any]) -> dict:
    from titlegen_lib import Config
    from titlegen_lib.data import preprocess
    from titlegen_lib.evaluate import run_comparison
    from titlegen_lib.train import train

    lever = dict(LEVERS[name])
    trained_by = lever.pop("adapter_of", name)
    settings = {**base, **{k: v for k, v in LEVERS[trained_by].items() if k != "adapter_of"}, **lever, "seed": seed}
    work = args.work / f"{trained_by}-s{seed}"
    config = Config.from_dict(settings, raw_dir=str(raw) if raw else "", work_dir=str(work / "work"),
                              output_dir=str(work / f"out-{name}"))
    started = time.perf_counter()
    preprocess(config, progress=False)
    run = None
    if trained_by == name:
        result = train(config, progress=False)
        run = json.loads(result.run_json.read_text())
    comparison = run_comparison(config, progress=False)
    summary = json.loads((config.data_dir / "summary.json").read_text())
    return {"lever": name, "seed": seed, "settings": {k: v for k, v in settings.items() if k in lever or
                                                      k in LEVERS[trained_by]},
            "seconds": round(time.perf_counter() - started, 1),
            "data": {"written": summary["written"], "train_drops": summary["files"]["train"]["drops"],
                     "cut_at_sentence": summary["files"]["train"].get("cut_at_sentence")},
            **summarize(comparison.metrics, run)}


def table(results: list[dict]) -> str:
    head = ("| lever | seed | fold | n test | ft ROUGE-L | base | retrieval | ft-base ROUGE-L [95%] | ft chrF | "
            "base chrF | ft-base chrF [95%] | ft semantic | retrieval semantic | ft rep. 3-gram | title copy | EOS | "
            "length ratio | val loss | steps |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        ft, base, ret = r.get("finetuned", {}), r.get("base", {}), r.get("retrieval", {})
        diff = r.get("finetuned_minus_base", {})

        def ci(metric: str, digits: int) -> str:
            d = diff.get(metric)
            return f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]" if d else "-"

        train = r.get("train") or {}
        loss = (f"{train['initial_eval_loss']:.2f} -> {train['eval_loss']:.2f}"
                if train.get("initial_eval_loss") is not None else "-")
        fold = "-" if r.get("fold") is None else r["fold"]
        lines.append(
            f"| {r['lever']} | {r['seed']} | {fold} | {r['n_test']} | {ft.get('rougeL', 0):.3f} | "
            f"{base.get('rougeL', 0):.3f} | {ret.get('rougeL', 0):.3f} | {ci('rougeL', 3)} | {ft.get('chrf', 0):.1f} | "
            f"{base.get('chrf', 0):.1f} | "
            f"{ci('chrf', 1)} | {ft.get('semantic', 0):.3f} | {ret.get('semantic', 0):.3f} | "
            f"{ft.get('repeat_3gram', 0):.3f} | {ft.get('title_copy', 0):.2f} | {ft.get('stopped_at_eos', 0):.2f} | "
            f"{ft.get('length_ratio', 0):.2f} | {loss} | {train.get('steps', '-')} |")
    return "\n".join(lines)


def pooled(eval_dirs: list[Path], settings: dict[str, Any]) -> dict[str, Any]:
    """The comparison over the test titles of several folds at once: each fold's predictions.jsonl (every title
    decoded by the model trained without it), scored and compared with the evaluation module's own functions;
    the result has the shape of its metrics.json ("systems", "pairs", "<a>_minus_<b>")."""
    from titlegen_lib import Config
    from titlegen_lib.evaluate import Prediction, SystemRun, compare_pair, comparison_pairs, summarize_system

    config = Config.from_dict(settings)
    lines = [json.loads(line) for folder in eval_dirs
             for line in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    uids = [line["uid"] for line in lines]
    if len(set(uids)) != len(uids):
        raise SystemExit("the folds share test titles: pool the folds of one split only")
    systems = [s for s in ("finetuned", "base", "retrieval", "echo") if all(s in line for line in lines)]
    runs = {s: SystemRun(s, [Prediction(line["uid"], line["title"], line["reference"], line[s]["output"])
                             for line in lines], True, Path()) for s in systems}
    rows = {s: [line[s]["metrics"] for line in lines] for s in systems}
    pairs = comparison_pairs(systems)
    return {"folds": [str(f) for f in eval_dirs], "n_examples": len(lines), "pairs": pairs,
            "systems": {s: {m: i._asdict() for m, i in summarize_system(runs[s].predictions, rows[s], config).items()}
                        for s in systems},
            **{f"{a}_minus_{b}": compare_pair(runs[a], runs[b], rows[a], rows[b], config) for a, b in pairs}}


def chrf_by_beta(eval_dirs: list[Path], betas: tuple[int, ...] = (2, 1), seed: int = 42) -> dict[str, Any]:
    """Fine-tuned minus base in corpus chrF with recall weighted beta times precision (sacrebleu's default is 2),
    paired bootstrap as the evaluation module's: does a chrF difference come from the outputs' length?"""
    from sacrebleu.metrics import CHRF

    from titlegen_lib.evaluate import paired_corpus_bootstrap_ci

    lines = [json.loads(line) for folder in eval_dirs
             for line in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    references = [[line["reference"] for line in lines]]
    result = {}
    for beta in betas:
        scorer = CHRF(beta=beta)
        stats = {s: np.array(scorer._extract_corpus_statistics([line[s]["output"] for line in lines], references),
                             dtype=float) for s in ("finetuned", "base")}

        def score(summed: np.ndarray, scorer: CHRF = scorer) -> float:
            return float(scorer._compute_score_from_stats([int(round(x)) for x in summed]).score)

        diff = paired_corpus_bootstrap_ci(stats["finetuned"], stats["base"], score, 1000, seed)
        result[f"beta_{beta}"] = {"finetuned": score(stats["finetuned"].sum(axis=0)),
                                  "base": score(stats["base"].sum(axis=0)), **diff._asdict()}
    return result


def pooled_table(result: dict[str, Any]) -> str:
    """The report's comparison table (`evaluate.comparison_table`) in Markdown, the columns of SHOWN."""
    from titlegen_lib.evaluate import comparison_table
    from titlegen_lib.report import markdown_table

    frame = comparison_table(result).fillna("")
    frame = frame[[m for m in SHOWN if m in frame.columns]]
    return (f"{result['n_examples']} test titles from {len(result['folds'])} folds\n\n"
            + markdown_table(["system", *frame.columns], [[name, *row] for name, row in frame.iterrows()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="records in the dataset's format (folds are cut from them)")
    parser.add_argument("--synthetic", type=int, default=0, help="use this many synthetic records instead")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--levers", default="baseline", help=f"comma-separated, of: {', '.join(LEVERS)}")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--preset", default="colab-t4")
    parser.add_argument("--tag", default="study", help="results go to outputs/bench/recipe-<tag>.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/titlegen-recipe"))
    parser.add_argument("--table", action="store_true", help="only print the table of the results file")
    parser.add_argument("--fold-only", action="store_true",
                        help="only write the fold's trn.json and tst.json into <work>/fold<N> (for raw_dir)")
    parser.add_argument("--pool", type=Path, nargs="+", metavar="EVAL_DIR",
                        help="compare over the test titles of these folds' evaluation folders at once "
                             "(<work>/<lever>-s<seed>/out-<lever>/eval/default); writes recipe-<tag>-pooled.json")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for every lever (model_name, embedding_model, ...)")
    args = parser.parse_args()
    target = ROOT / "outputs" / "bench" / f"recipe-{args.tag}.json"
    results = json.loads(target.read_text()) if target.is_file() else []
    if args.table:
        print(table(results))
        return
    if args.pool:
        result = pooled(args.pool, {"preset": args.preset, "bootstrap_samples": 1000})
        result["chrf_by_beta"] = chrf_by_beta(args.pool)
        (target.parent / f"recipe-{args.tag}-pooled.json").write_text(json.dumps(result, indent=2))
        print(pooled_table(result))
        for beta, d in result["chrf_by_beta"].items():
            print(f"corpus chrF, {beta.replace('_', ' ')}: fine-tuned {d['finetuned']:.1f}, base {d['base']:.1f}, "
                  f"fine-tuned - base {d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]")
        return
    from titlegen_lib.config import param_overrides

    # Each lever says its decoding: greedy without the repetition guard unless it asks for the guard or sampling.
    # Each lever states its batch and epochs: the library's switch to the small-data settings stays off.
    base = {"preset": args.preset, "few_records_recipe": False, "train_samples": 0, "val_samples": 0,
            "test_samples": 0, "val_fraction": 0.1,
            "bootstrap_samples": 1000, "eval_repetition_guard": False, "eval_other_decoding": False,
            **param_overrides(args.param)}
    raw = None
    if args.data:
        raw = write_fold(args.data, args.fold, args.folds, args.work / f"fold{args.fold}")
        if args.fold_only:
            print(f"wrote {raw / 'trn.json'} and {raw / 'tst.json'}")
            return
    elif args.synthetic:
        base.update(synthetic_train_records=args.synthetic, synthetic_test_records=max(60, args.synthetic // 5),
                    test_samples=60)
    target.parent.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.levers.split(","):
            result = run_lever(name.strip(), seed, args, raw, base)
            result.update(fold=args.fold if raw else None, data_source=str(args.data) if raw else "synthetic")
            results.append(result)
            target.write_text(json.dumps(results, indent=2))
            print(f"{name} seed {seed}: {result['seconds']} s", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()

"""Where the repetition penalty applies, and what it does to stopping: one run's base and fine-tuned model decode
its test titles with the guard's penalty on the prompt and the output (transformers' `repetition_penalty`), on
the generated tokens only (the library's), on everything but EOS, and with no guard.

    .venv/bin/python bench/guard_eos.py outputs/work-real/runs/real/settings.json

Prints EOS rate, mean length ratio, ROUGE-L, corpus chrF and repeated 3-grams per (decoding, model); writes
outputs/bench/guard_eos.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from titlegen_lib import Config  # noqa: E402
from titlegen_lib.evaluate import example_metrics, load_test_sample  # noqa: E402
from titlegen_lib.generate import DecodingSettings, generate_descriptions  # noqa: E402
from titlegen_lib.models import load_model  # noqa: E402

WAYS = {"prompt_and_output": "penalty on prompt + output (transformers' repetition_penalty)",
        "output_only": "penalty on the generated tokens only (the library's)",
        "all_but_eos": "penalty on prompt + output, EOS exempt",
        "no_guard": "no guard (greedy)"}


def penalty_processor(way: str, penalty: float, prompt_length: int, eos: int) -> Any:
    from transformers import LogitsProcessorList
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    class AllButEos(RepetitionPenaltyLogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            kept = scores[:, eos].clone()
            scores = super().__call__(input_ids, scores)
            scores[:, eos] = kept
            return scores

    if way == "prompt_and_output":
        return LogitsProcessorList([RepetitionPenaltyLogitsProcessor(penalty)])
    if way == "all_but_eos":
        return LogitsProcessorList([AllButEos(penalty)])
    return LogitsProcessorList([RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=prompt_length)])


def score(generations: list[Any], rows: list[dict[str, str]], language: str) -> dict[str, float]:
    import numpy as np
    import sacrebleu

    per = [example_metrics(g.text, r["output"], r["input"], language) for g, r in zip(generations, rows)]
    return {"eos": float(np.mean([g.stopped_at_eos for g in generations])),
            "length_ratio": float(np.mean([m["length_ratio"] for m in per])),
            "rougeL": float(np.mean([m["rougeL"] for m in per])),
            "chrf": sacrebleu.corpus_chrf([g.text for g in generations], [[r["output"] for r in rows]]).score,
            "repeat_3gram": float(np.mean([m["repeat_3gram"] for m in per]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", type=Path, help="a run's settings.json (work/runs/<run>/settings.json)")
    args = parser.parse_args()
    config = Config.from_dict(json.loads(args.settings.read_text())["settings"])
    rows = load_test_sample(config)
    results: dict[str, dict[str, Any]] = {}
    for model in ("base", "finetuned"):
        loaded = load_model(config, adapter_dir=config.adapter_dir if model == "finetuned" else None)
        generate, way = loaded.model.generate, {"now": ""}

        def with_penalty(**kwargs: Any) -> Any:  # swaps in the penalty of the decoding being measured
            if way["now"] != "no_guard":
                kwargs["logits_processor"] = penalty_processor(way["now"], config.repetition_penalty,
                                                               kwargs["input_ids"].shape[1], loaded.tokenizer.eos_token_id)
            return generate(**kwargs)

        loaded.model.generate = with_penalty
        for name in WAYS:
            way["now"] = name
            settings = DecodingSettings.from_config(config, loaded.tokenizer)
            if name == "no_guard":
                settings = DecodingSettings.from_config(config, loaded.tokenizer, repetition_penalty=1.0,
                                                        no_repeat_ngram_size=0)
            started = time.perf_counter()
            generations = generate_descriptions(loaded, [r["input"] for r in rows], config, settings=settings,
                                                progress=False)
            results.setdefault(name, {})[model] = {**score(generations, rows, config.language),
                                                   "seconds": round(time.perf_counter() - started, 1),
                                                   "max_new_tokens": settings.max_new_tokens}
    print(f"{len(rows)} test titles of {config.data_dir}\n")
    print("| decoding | model | stopped at EOS | length ratio | ROUGE-L | chrF | repeated 3-grams |\n|---|---|---|---|---|---|---|")
    for name, label in WAYS.items():
        for model, r in results[name].items():
            print(f"| {label} | {model} | {r['eos']:.0%} | {r['length_ratio']:.2f} | {r['rougeL']:.3f} | "
                  f"{r['chrf']:.1f} | {r['repeat_3gram']:.3f} |")
    target = ROOT / "outputs" / "bench" / "guard_eos.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"settings": str(args.settings), "test_titles": len(rows), "results": results},
                                 indent=2))
    print(f"\n{target}")


if __name__ == "__main__":
    main()

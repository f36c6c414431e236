"""Generation speed: the seed's one-title-at-a-time loop vs the library's batched, left-padded generation
(`generate.generate_descriptions`), on each backend (Unsloth's inference mode, and transformers+PEFT).

    python bench/generate_speed.py [--titles 512] [--sequential 12] [--batches 64,256] [--backends unsloth,transformers]
    python bench/generate_speed.py --dry-run        # CPU, tiny random model

Uses the random-weight TinyLlama-shaped model that bench/train_speed.py builds, with fresh LoRA adapters
attached (as after fine-tuning) and the library's decoding settings (greedy, repetition penalty 1.1,
no repeated 4-grams), 128 new tokens. Random weights almost never emit EOS, so every title runs the full
128 tokens both ways: a like-for-like comparison. The one-at-a-time loop runs on the first `--sequential`
titles (all 512 would take minutes) and is reported as titles/s. Writes outputs/bench/generate_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "outputs" / "bench"


def bench_titles(n_titles: int) -> list[str]:
    """Distinct synthetic AmazonTitles titles (realistic lengths)."""
    from titlegen_lib.synthetic import SyntheticSpec, iter_synthetic_lines

    titles: list[str] = []
    seen: set[str] = set()
    for line in iter_synthetic_lines(SyntheticSpec(n_records=8 * n_titles + 100, seed=7)):
        try:
            title = json.loads(line).get("title")
        except ValueError:
            continue
        if isinstance(title, str) and len(title.strip()) >= 3 and title not in seen:
            seen.add(title)
            titles.append(title)
        if len(titles) == n_titles:
            break
    return titles


def run_backend(backend: str, model_dir: str, n_titles: int, n_sequential: int, batches: list[int],
                load_in_4bit: bool, max_new_tokens: int) -> dict[str, Any]:
    if backend == "unsloth":
        import unsloth  # noqa: F401  (before transformers/peft)
    import torch

    from titlegen_lib import Config
    from titlegen_lib.generate import DecodingSettings, generate_batch, generate_descriptions
    from titlegen_lib.models import attach_lora, load_model, prepare_for_inference
    from titlegen_lib.prompts import choose_template

    cuda = torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    titles = bench_titles(n_titles)
    config = Config.from_dict(model_name=model_dir, backend=backend, load_in_4bit=load_in_4bit,
                              max_new_tokens=max_new_tokens, gradient_checkpointing=False)
    loaded = attach_lora(load_model(config), config)
    prepare_for_inference(loaded)
    settings = DecodingSettings.from_config(config)
    template = choose_template(loaded.tokenizer, config.language, config.prompt_format)
    generate_batch(loaded, titles[:1], settings, template)  # warm-up (kernels, caches)
    generate_batch(loaded, titles[:batches[0]], settings, template)
    sync()
    started = time.perf_counter()
    sequential = [generate_batch(loaded, [title], settings, template)[0] for title in titles[:n_sequential]]
    sync()
    one_at_a_time = n_sequential / (time.perf_counter() - started)
    result: dict[str, Any] = {
        "backend": loaded.backend, "load_in_4bit": load_in_4bit, "titles": len(titles),
        "max_new_tokens": max_new_tokens, "decoding": settings.__dict__,
        "sequential_titles": n_sequential, "sequential_titles_per_s": round(one_at_a_time, 3),
        "sequential_new_tokens_mean": sum(g.new_tokens for g in sequential) / len(sequential), "batched": []}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for batch in batches:
        sync()
        started = time.perf_counter()
        generations = generate_descriptions(loaded, titles, config, settings, batch_size=batch, progress=False)
        sync()
        seconds = time.perf_counter() - started
        result["batched"].append({
            "batch": batch, "seconds": round(seconds, 2), "titles_per_s": round(len(titles) / seconds, 2),
            "new_tokens_per_s": round(sum(g.new_tokens for g in generations) / seconds),
            "new_tokens_mean": round(sum(g.new_tokens for g in generations) / len(generations), 1),
            "speedup_vs_sequential": round(len(titles) / seconds / one_at_a_time, 1),
            "empty_outputs": sum(1 for g in generations if not g.text)})
        print(f"  {backend} batch {batch}: {len(titles) / seconds:.1f} titles/s", file=sys.stderr, flush=True)
    if cuda:
        result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--titles", type=int, default=512)
    parser.add_argument("--sequential", type=int, default=12)
    parser.add_argument("--batches", default="64,256", help="batch sizes for the library's batched generation")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--backends", default="unsloth:4bit,unsloth,transformers",
                        help="backend[:4bit] list; the seed ran Unsloth 4-bit one title at a time")
    parser.add_argument("--model-dir", default="")
    parser.add_argument("--copy-to", default="")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    model_dir = args.model_dir or str(OUT / ("tinyllama-random-dry" if args.dry_run else "tinyllama-random"))
    batches = [int(b) for b in args.batches.split(",")]
    if args.dry_run:
        args.titles, args.sequential, batches, args.max_new_tokens = 16, 2, [8], 8
    if args.child:
        backend, _, precision = args.child.partition(":")
        if args.dry_run:
            backend = "cpu"
        print("RESULT " + json.dumps(run_backend(backend, model_dir, args.titles, args.sequential, batches,
                                                 precision == "4bit" and not args.dry_run, args.max_new_tokens)))
        return
    if not (Path(model_dir) / "config.json").is_file():
        sys.exit(f"{model_dir} is missing: run bench/train_speed.py first (it builds the model)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    rows, failures, logs = [], {}, []
    for spec in args.backends.split(","):
        command = [sys.executable, __file__, "--child", spec, "--model-dir", model_dir, "--titles", str(args.titles),
                   "--sequential", str(args.sequential), "--batches", args.batches,
                   "--max-new-tokens", str(args.max_new_tokens)] + (["--dry-run"] if args.dry_run else [])
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        output = proc.stdout + proc.stderr
        logs.append(f"===== {spec} (exit {proc.returncode}) =====\n{output[-5000:]}")
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            failures[spec] = output[-2500:]
            print(f"{spec}: FAILED\n{failures[spec]}", flush=True)
            continue
        row = json.loads(lines[-1][7:])
        row["spec"] = spec
        rows.append(row)
    seed = next((r["sequential_titles_per_s"] for r in rows if r["spec"] == "unsloth:4bit"), None)
    for r in rows:
        for b in r["batched"]:
            b["speedup_vs_seed_loop"] = round(b["titles_per_s"] / seed, 1) if seed else None
    report = {"command": "python bench/generate_speed.py " + " ".join(sys.argv[1:]),
              "seed_loop_titles_per_s": seed, "results": rows, "failures": failures}
    name = "generate_speed-dry.json" if args.dry_run else "generate_speed.json"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(report, indent=2))
    if args.copy_to:
        Path(args.copy_to).mkdir(parents=True, exist_ok=True)
        (Path(args.copy_to) / name).write_text(json.dumps(report, indent=2))
        (Path(args.copy_to) / "generate_speed_logs.txt").write_text("\n\n".join(logs))
    print("| backend | one at a time, titles/s | batch | batched, titles/s | vs its own loop | vs the seed's loop "
          "(Unsloth 4-bit) | new tokens/title |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for b in r["batched"]:
            print(f"| {r['spec']} | {r['sequential_titles_per_s']} | {b['batch']} | {b['titles_per_s']} | "
                  f"{b['speedup_vs_sequential']}x | {b.get('speedup_vs_seed_loop')}x | {b['new_tokens_mean']} |")


if __name__ == "__main__":
    main()

"""Command line: `python -m titlegen_lib {run,preprocess,train,evaluate,synth} [--preset P] [--config F] [-p k=v]`.

Every subcommand builds the same `Config` (flags, `-p name=value` and `--config FILE`, as papermill's
parameters) and calls one library function; `run` executes the notebook series headless.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from titlegen_lib.config import Config, ConfigError, add_config_arguments, config_from_args


def cmd_run(config: Config, args: argparse.Namespace) -> None:
    from titlegen_lib.runner import run_series, select_notebooks

    run_series(config, select_notebooks(args.only or (), args.start), progress=not args.no_progress)


def cmd_preprocess(config: Config, args: argparse.Namespace) -> None:
    from titlegen_lib.data import preprocess

    tokenizer = None
    if config.max_content_tokens:  # a token limit needs the model's tokenizer
        from titlegen_lib.models import load_tokenizer

        tokenizer = load_tokenizer(config)
    result = preprocess(config, tokenizer, force=args.force)
    print(result.drops_table().to_string())
    print(f"{'reused' if result.reused else 'wrote'} {result.summary['written']} to {config.data_dir}")


def cmd_train(config: Config, args: argparse.Namespace) -> None:
    from titlegen_lib.train import train

    result = train(config, progress=not args.no_progress)
    print(f"{result.steps} steps, eval loss {result.initial_eval_loss} -> {result.eval_loss}; "
          f"adapter in {result.adapter_dir}, details in {result.run_json}")


def cmd_evaluate(config: Config, args: argparse.Namespace) -> None:
    from titlegen_lib.evaluate import SYSTEMS, run_comparison
    from titlegen_lib.report import write_report

    systems = tuple(s.strip() for s in args.systems.split(",") if s.strip()) if args.systems else SYSTEMS
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise ConfigError(f"--systems: unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    comparison = run_comparison(config, systems=systems, progress=not args.no_progress)
    print(comparison.table.to_string())
    print(f"report: {write_report(comparison, config)}")


def cmd_synth(config: Config, args: argparse.Namespace) -> None:
    from titlegen_lib.synthetic import write_synthetic_dataset

    out = Path(args.out) if args.out else Path(config.work_dir) / "synthetic" / "cli"
    paths = write_synthetic_dataset(out, config.synthetic_train_records, config.synthetic_test_records,
                                    seed=config.seed)
    print(f"wrote {config.synthetic_train_records} train and {config.synthetic_test_records} test records: "
          + ", ".join(str(p) for p in paths.values()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m titlegen_lib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[Config, argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        add_config_arguments(sub)
        sub.set_defaults(handler=handler)
        return sub

    run = command("run", cmd_run, "run the notebook series with papermill into <output_dir>/runs/<timestamp>/")
    run.add_argument("--only", action="append", metavar="NOTEBOOK",
                     help="run only these notebooks (repeatable or comma-separated): 03, 03_finetune, finetune")
    run.add_argument("--from", dest="start", metavar="NOTEBOOK", help="run from this notebook to the end")
    prep = command("preprocess", cmd_preprocess, "clean, deduplicate and split the data into <work_dir>/data")
    prep.add_argument("--force", action="store_true", help="rebuild even when finished splits match the settings")
    command("train", cmd_train, "fine-tune LoRA adapters (resumes from the last complete checkpoint)")
    evaluate = command("evaluate", cmd_evaluate, "score the systems on the test sample and write the HTML report")
    evaluate.add_argument("--systems", help="comma-separated subset of echo,retrieval,base,finetuned")
    synth = command("synth", cmd_synth, "write synthetic trn.json / tst.json in the AmazonTitles format")
    synth.add_argument("--out", help="folder to write to (default: <work_dir>/synthetic/cli)")
    for sub in commands.choices.values():
        sub.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from titlegen_lib.data import DataFileError
    from titlegen_lib.models import ModelNotAvailable
    from titlegen_lib.runner import NotebookFailed
    from titlegen_lib.storage import WorkFolderBusy

    try:
        args.handler(config_from_args(args), args)
    except (ConfigError, NotebookFailed, DataFileError, ModelNotAvailable, WorkFolderBusy, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a disk that is full or read-only, a folder that cannot be written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}; check the folder's permissions and free space "
              "(work_dir, output_dir)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

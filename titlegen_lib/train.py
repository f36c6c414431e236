"""LoRA fine-tuning with TRL's SFTTrainer: loss on the description and EOS only, eval loss, checkpoints, resume.

Training examples are tokenized by `prompts.tokenize_example` (prompt + description + EOS, with a
completion mask), so TRL never re-renders the prompt: training and inference cannot drift apart.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from titlegen_lib.config import (FEW_RECORDS, FEW_STEPS, SFT_GROUPS, TRAINING_KEY_GROUPS, Config, ConfigError,
                                 few_records_line)
from titlegen_lib.data import load_split, prepared_split
from titlegen_lib.models import (
    LoadedModel,
    attach_lora,
    environment_report,
    load_model,
    prepare_for_training,
    recommended_preset,
    training_precision,
)
from titlegen_lib.prompts import PromptTemplate, choose_template, tokenize_example
from titlegen_lib.storage import exclusive, file_sha256, read_json, remove_leftovers, stable_hash, write_json

log = logging.getLogger("titlegen")

CHECKPOINT_DONE = "titlegen_checkpoint_complete"  # written after a checkpoint is fully saved


@dataclass
class TokenizedSplits:
    """Tokenized train/val datasets and how many examples did not fit max_seq_length."""

    train: Any
    val: Any
    too_long: dict[str, int]
    template: PromptTemplate


def tokenize_split(rows: list[dict[str, str]], tokenizer: Any, template: PromptTemplate,
                   max_length: int) -> tuple[list[dict[str, list[int]]], int]:
    """Tokenize JSONL rows; examples longer than max_length are dropped (and counted), never truncated,
    because a truncated description followed by EOS would teach the model to stop mid-sentence."""
    examples, too_long = [], 0
    for row in rows:
        example = tokenize_example(row["input"], row["output"], tokenizer, template)
        if len(example["input_ids"]) > max_length:
            too_long += 1
            continue
        examples.append(example)
    return examples, too_long


def build_datasets(config: Config, tokenizer: Any) -> TokenizedSplits:
    """Tokenized train and validation datasets from the prepared JSONL splits."""
    from datasets import Dataset

    template = choose_template(tokenizer, config.language, config.prompt_format)
    splits, too_long = {}, {}
    for split in ("train", "val"):
        path = prepared_split(config, split)
        examples, too_long[split] = tokenize_split(load_split(path), tokenizer, template, config.max_seq_length)
        if not examples:
            raise ValueError(f"{path}: no example fits max_seq_length={config.max_seq_length}")
        splits[split] = Dataset.from_list(examples)
    if too_long["train"]:
        print(f"[titlegen] dropped {too_long['train']} train and {too_long['val']} validation examples "
              f"longer than max_seq_length={config.max_seq_length} tokens")
    return TokenizedSplits(splits["train"], splits["val"], too_long, template)


def optimizer_name(config: Config, backend: str) -> str:
    """adamw_8bit on CUDA when bitsandbytes is there (the optimizer state is most of LoRA's memory)."""
    if config.optim != "auto":
        return config.optim
    if backend != "cpu":
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is not None:
            return "adamw_8bit"
    return "adamw_torch"


def packing_supported(loaded: LoadedModel) -> bool:
    """Packing without cross-attention between examples needs padding-free attention: flash attention or
    Unsloth's own kernels. With SDPA/eager attention TRL would let packed examples attend to each other."""
    if loaded.backend == "unsloth":
        return True
    impl = str(getattr(loaded.model.config, "_attn_implementation", ""))
    return "flash" in impl


def packs(config: Config, loaded: LoadedModel) -> bool:
    """Whether this run packs examples: asked for, and possible on this backend."""
    return config.packing and packing_supported(loaded)


def sft_settings(config: Config, backend: str, packing: bool, batch_size: int, grad_accum: int,
                 progress: bool = True, eval_on_start: bool = False, checkpoint_dir: Path | None = None) -> dict[str, Any]:
    """The SFTConfig arguments of this run: the config's trainer settings as they are, then what this run decides
    (batch after an out-of-memory backoff, precision, packing, optimizer); every value explicit, because TRL's
    defaults changed across releases."""
    return {
        **config.group(*SFT_GROUPS),
        "output_dir": str(checkpoint_dir or checkpoint_folder(config)),
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "optim": optimizer_name(config, backend),
        "eval_strategy": "steps",
        # The step-0 eval loss, where the loss curve starts. Evaluating before train() instead would mark the
        # model as prepared by accelerate and stop it from being wrapped in DDP under `accelerate launch`.
        "eval_on_start": eval_on_start,
        "save_strategy": "steps",
        "data_seed": config.seed,
        "max_length": config.max_seq_length,
        "packing": packing,
        "padding_free": config.padding_free and packing,
        # Padded batches group examples of similar length (less padding); the CPU backend keeps random order.
        "train_sampling_strategy": "group_by_length" if not packing and backend != "cpu" else "random",
        "completion_only_loss": True,  # labels are -100 wherever completion_mask is 0 (the prompt)
        # Unsloth sets up its own checkpointing in get_peft_model; elsewhere the Trainer does it.
        "gradient_checkpointing": config.gradient_checkpointing and backend != "unsloth",
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "use_cpu": backend == "cpu",
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        **training_precision(backend, config.precision),
        # Early stopping keeps the best checkpoint by validation loss, and the adapter saved is that one.
        **({"load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False}
           if config.early_stopping_patience else {}),
    }


def sft_config(config: Config, backend: str, packing: bool, batch_size: int, grad_accum: int,
               progress: bool = True, eval_on_start: bool = False, checkpoint_dir: Path | None = None) -> Any:
    """The TRL SFTConfig for this run (see sft_settings); a value TRL refuses is a ConfigError."""
    from trl import SFTConfig

    settings = sft_settings(config, backend, packing, batch_size, grad_accum, progress, eval_on_start, checkpoint_dir)
    try:
        return SFTConfig(**settings)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"a trainer setting was refused by TRL's SFTConfig: {exc}") from None


class CheckpointCompleteCallback:
    """Marks a checkpoint complete after the Trainer has written all of it (see `last_checkpoint`)."""

    def __new__(cls) -> Any:
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):  # noqa: ANN001 - Trainer's signature
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir() and state.is_world_process_zero:
                    (folder / CHECKPOINT_DONE).write_text(str(state.global_step))

        return _Callback()


def last_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest checkpoint that was saved completely; a checkpoint cut off mid-write is ignored."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    complete = [p for p in folder.glob("checkpoint-*") if (p / CHECKPOINT_DONE).is_file()
                and (p / "trainer_state.json").is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def training_key(config: Config) -> str:
    """Hash of the settings that change what is trained (Config's TRAINING_KEY_GROUPS) and of the contents of
    the train and validation splits."""
    splits = {split: file_sha256(path) if (path := config.data_dir / f"{split}.jsonl").is_file() else None
              for split in ("train", "val")}
    return stable_hash({"settings": config.group(*TRAINING_KEY_GROUPS), "data": splits})


BATCH_FILE = "batch.json"  # the batch the OOM backoff chose, kept beside the checkpoints it applies to


def is_main_process() -> bool:
    """Rank 0 under `accelerate launch` / torchrun (they set RANK), or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def saved_batch(checkpoint_dir: Path) -> tuple[int, int] | None:
    """The batch and accumulation an earlier OOM backoff settled on for these checkpoints, if any."""
    path = checkpoint_dir / BATCH_FILE
    if not path.is_file():
        return None
    saved = read_json(path)
    print(f"[titlegen] batch {saved['per_device_train_batch_size']} x accumulation "
          f"{saved['gradient_accumulation_steps']}, as the out-of-memory backoff chose before ({path})")
    return saved["per_device_train_batch_size"], saved["gradient_accumulation_steps"]


def keep_or_remove_other_checkpoints(root: Path, key: str, remove: bool) -> list[Path]:
    """Checkpoints of other settings or data stay under their own key unless `remove` asks to delete them."""
    others = sorted(p for p in root.iterdir() if p.name != key) if root.is_dir() else []
    if others and remove and is_main_process():
        for other in others:
            shutil.rmtree(other) if other.is_dir() else other.unlink()
        print(f"[titlegen] removed {len(others)} checkpoint folder(s) of other settings under {root}")
    elif others:
        print(f"[titlegen] checkpoints of other settings or data kept under {root}: "
              f"{', '.join(p.name for p in others)} (-p remove_other_checkpoints=true deletes them)")
    return others


def training_finished(checkpoint: Path) -> bool:
    """Whether a checkpoint ends its run: the last step (trainer_state.json records max_steps), or where early
    stopping stopped it."""
    state = read_json(checkpoint / "trainer_state.json")
    control = state.get("stateful_callbacks", {}).get("TrainerControl", {}).get("args", {})
    return 0 < state.get("max_steps", 0) <= state.get("global_step", 0) or bool(control.get("should_training_stop"))


def load_finished_checkpoint(trainer: Any, checkpoint: Path) -> None:
    """A finished run's LoRA weights (its best checkpoint's with early stopping) and trainer state, loaded into
    `trainer` without training."""
    from peft import load_peft_weights, set_peft_model_state_dict
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    best = state.best_model_checkpoint
    weights = Path(best) if trainer.args.load_best_model_at_end and best and Path(best).is_dir() else checkpoint
    device = str(next(trainer.model.parameters()).device)
    set_peft_model_state_dict(trainer.model, load_peft_weights(str(weights), device=device))
    trainer.state = state


def checkpoint_folder(config: Config) -> Path:
    """Checkpoints live under their training key: other settings or data never resume from, or delete, them."""
    return config.run_dir / "checkpoints" / training_key(config)


def planned_steps(examples: int, batch_size: int, grad_accum: int, epochs: float, max_steps: int) -> int:
    """Optimizer steps the Trainer takes on padded batches on one device, counted as transformers'
    `Trainer.set_initial_training_values` counts them (max_steps wins when set)."""
    if max_steps > 0:
        return max_steps
    return math.ceil(epochs * max(math.ceil(math.ceil(examples / batch_size) / grad_accum), 1))


def steps_line(config: Config, examples: int, batch_size: int, grad_accum: int, packing: bool) -> str:
    """What the run will do in steps, and what to change when that is too little to learn anything."""
    steps = planned_steps(examples, batch_size, grad_accum, config.num_train_epochs, config.max_steps)
    line = (f"[titlegen] {'at most ' if packing else ''}{steps} optimizer steps: {examples} train examples, batch "
            f"{batch_size} x {grad_accum}, " + (f"max_steps {config.max_steps}" if config.max_steps > 0
                                                 else f"{config.num_train_epochs:g} epoch(s)"))
    if config.early_stopping_patience:
        line += f", early stopping after {config.early_stopping_patience} evaluations without a better validation loss"
        if config.eval_steps > steps:
            line += f" (but eval_steps {config.eval_steps} > {steps}: it never evaluates)"
    if steps < FEW_STEPS:
        line += (f". Too few to learn from: a few hundred records learn with {few_records_line()} (what "
                 "few_records_recipe does when max_steps is not set; the recipe study in bench/RESULTS.md)")
    return line


def few_records_settings(config: Config, examples: int) -> Config:
    """The config a run trains with: as given, or, when `few_records_recipe` is on, max_steps is not set and
    the preset's batch and epochs would make fewer than FEW_STEPS optimizer steps on `examples`, with the
    recipe study's settings for a few hundred records (FEW_RECORDS), saying so."""
    steps = planned_steps(examples, config.per_device_train_batch_size, config.gradient_accumulation_steps,
                          config.num_train_epochs, config.max_steps)
    if not config.few_records_recipe or config.max_steps > 0 or steps >= FEW_STEPS:
        return config
    print(f"[titlegen] {examples} train examples make {steps} optimizer steps at batch "
          f"{config.per_device_train_batch_size} x {config.gradient_accumulation_steps}, "
          f"{config.num_train_epochs:g} epoch(s): training with the recipe study's settings for a few hundred "
          f"records instead ({few_records_line()}; few_records_recipe=False keeps the preset's)")
    return config.replace(**FEW_RECORDS)


def backoff_batch(batch_size: int, grad_accum: int) -> tuple[int, int]:
    """Halve the batch and double accumulation: the same effective batch in less memory."""
    if batch_size <= 1:
        raise RuntimeError("out of GPU memory even at batch size 1: lower max_seq_length or use load_in_4bit=True")
    return batch_size // 2, grad_accum * 2


@dataclass
class TrainResult:
    """What a training run produced."""

    adapter_dir: Path
    run_json: Path
    steps: int
    train_loss: float | None
    eval_loss: float | None
    initial_eval_loss: float | None
    seconds: float
    log_history: list[dict[str, Any]] = field(default_factory=list)
    curve_png: Path | None = None
    resumed_from: str | None = None


def fused_loss_available(device_type: str) -> bool:
    """TRL 1.15 computes the SFT loss with a Triton kernel (fused LM head), which exists only on a GPU."""
    from trl.trainer import utils as trl_utils

    return device_type == "cuda" and getattr(trl_utils, "_ChunkedLogProbFunction", None) is not None


def sft_trainer_class() -> type:
    """TRL's SFTTrainer (Unsloth's patched one when Unsloth is loaded), with the plain full-logits
    cross-entropy where TRL's Triton loss kernel cannot run (CPU, or no triton). Same labels, same loss."""
    from transformers import Trainer
    from trl import SFTTrainer

    class TitlegenSFTTrainer(SFTTrainer):  # type: ignore[misc, valid-type]
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            if fused_loss_available(self.args.device.type):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return TitlegenSFTTrainer


def build_trainer(loaded: LoadedModel, config: Config, splits: TokenizedSplits, batch_size: int,
                  grad_accum: int, progress: bool = True, eval_on_start: bool = False,
                  checkpoint_dir: Path | None = None) -> Any:
    """An SFTTrainer over pre-tokenized examples (TRL builds labels from completion_mask)."""
    packing = packs(config, loaded)
    if config.packing and not packing:
        print("[titlegen] packing is off: this backend has no padding-free attention (needs Unsloth or "
              "flash-attention); examples are padded per batch instead")
    args = sft_config(config, loaded.backend, packing, batch_size, grad_accum, progress, eval_on_start,
                      checkpoint_dir)
    callbacks = [CheckpointCompleteCallback()]
    if config.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    return sft_trainer_class()(model=loaded.model, args=args, train_dataset=splits.train, eval_dataset=splits.val,
                                 processing_class=loaded.tokenizer, callbacks=callbacks)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class FineTune:
    """A fine-tune ready to run: the model with LoRA attached, the tokenized splits, where its checkpoints go,
    what it resumes from and the batch it starts at. `trainer_settings()` is the SFTConfig that will run."""

    config: Config
    loaded: LoadedModel
    splits: TokenizedSplits
    checkpoint_dir: Path
    resume_from: Path | None
    batch: int
    accum: int
    progress: bool = True
    started: float = field(default_factory=time.perf_counter)

    def trainer_settings(self) -> Any:
        return sft_config(self.config, self.loaded.backend, packs(self.config, self.loaded),
                          self.batch, self.accum, self.progress, eval_on_start=self.resume_from is None,
                          checkpoint_dir=self.checkpoint_dir)

    def settings_table(self) -> Any:
        """The SFTConfig values this run sets (every other value is TRL's default), as a DataFrame."""
        import pandas as pd

        args = self.trainer_settings().to_dict()
        shown = sft_settings(self.config, self.loaded.backend, args["packing"], self.batch, self.accum,
                             self.progress, self.resume_from is None, self.checkpoint_dir)
        return pd.DataFrame([(name, args.get(name, value)) for name, value in shown.items()],
                            columns=["SFTConfig", "value"]).set_index("SFTConfig")

    def run(self) -> TrainResult:
        """trainer.train(), resuming from the last complete checkpoint; an out-of-memory error halves the batch
        (doubling accumulation), saves that choice beside the checkpoints and resumes. One process trains a run
        at a time (a second stops with an error naming the first)."""
        if not is_main_process():  # under accelerate launch, rank 0 holds the run's lock for all ranks
            return self._run()
        with exclusive(self.config.run_dir / ".train.lock", f"training run {self.config.run_name!r}"):
            # Nothing else writes this run now: temporary files here are what killed runs left.
            remove_leftovers(self.config.run_dir, (".*.tmp",))
            return self._run()

    def _run(self) -> TrainResult:
        config, checkpoint_dir, resume_from = self.config, self.checkpoint_dir, self.resume_from
        while True:
            trainer = build_trainer(self.loaded, config, self.splits, self.batch, self.accum, self.progress,
                                    eval_on_start=resume_from is None, checkpoint_dir=checkpoint_dir)
            if resume_from and training_finished(resume_from):
                # The Trainer would run one more step past max_steps when resumed from the final checkpoint.
                print(f"[titlegen] training already finished at {resume_from.name}: its weights are loaded, "
                      "not trained again")
                load_finished_checkpoint(trainer, resume_from)
                break
            try:
                trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
                break
            except RuntimeError as exc:
                if not _is_oom(exc):
                    raise
                new_batch, new_accum = backoff_batch(self.batch, self.accum)
                print(f"[titlegen] CUDA out of memory at batch {self.batch}: retrying with batch {new_batch} and "
                      f"gradient accumulation {new_accum} (same effective batch)")
                self.batch, self.accum = new_batch, new_accum
                if is_main_process():
                    write_json(checkpoint_dir / BATCH_FILE, {"per_device_train_batch_size": self.batch,
                                                             "gradient_accumulation_steps": self.accum})
                # An OOM mid-run resumes from the last complete checkpoint at the smaller batch.
                resume_from = last_checkpoint(checkpoint_dir) if config.resume else None
                if resume_from:
                    print(f"[titlegen] resuming from {resume_from}")
                del trainer
                import torch

                torch.cuda.empty_cache()
        return _finish(trainer, self.loaded, config, self.splits, self.started, resume_from, self.batch, self.accum)


def prepare_fine_tune(config: Config, loaded: LoadedModel, progress: bool = True) -> FineTune:
    """Everything before trainer.train(), for a model with LoRA attached (`models.attach_lora`): the tokenized
    splits, the checkpoint folder of these settings and data, the checkpoint to resume and the batch."""
    suggested = recommended_preset()
    if suggested != config.preset and suggested != "offline":
        print(f"[titlegen] preset {config.preset!r} in use; this GPU suits preset={suggested!r} "
              "(models.recommended_preset, from its memory)")
    prepare_for_training(loaded)
    splits = build_datasets(config, loaded.tokenizer)
    config = few_records_settings(config, len(splits.train))
    checkpoint_dir = checkpoint_folder(config)
    keep_or_remove_other_checkpoints(checkpoint_dir.parent, checkpoint_dir.name, config.remove_other_checkpoints)
    resume_from = last_checkpoint(checkpoint_dir) if config.resume else None
    if resume_from:
        print(f"[titlegen] resuming from {resume_from}")
    batch, accum = saved_batch(checkpoint_dir) or (config.per_device_train_batch_size,
                                                   config.gradient_accumulation_steps)
    print(steps_line(config, len(splits.train), batch, accum, packs(config, loaded)))
    return FineTune(config, loaded, splits, checkpoint_dir, resume_from, batch, accum, progress)


def train(config: Config, loaded: LoadedModel | None = None, progress: bool = True) -> TrainResult:
    """Fine-tune LoRA adapters on the prepared splits, resuming from the last complete checkpoint: the steps
    notebook 03 shows one cell at a time (load, attach LoRA, prepare, run)."""
    started = time.perf_counter()
    loaded = attach_lora(loaded or load_model(config), config)
    fine_tune = prepare_fine_tune(config, loaded, progress)
    fine_tune.started = started
    return fine_tune.run()


def _finish(trainer: Any, loaded: LoadedModel, config: Config, splits: TokenizedSplits, started: float,
            resume_from: Path | None, batch: int, accum: int) -> TrainResult:
    """Save the adapter, tokenizer, loss curves and run.json (main process only under accelerate)."""
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if not evals or evals[-1]["step"] != trainer.state.global_step:
        trainer.evaluate()
    history = list(trainer.state.log_history)
    train_losses = [h["loss"] for h in history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    adapter_dir = config.adapter_dir
    seconds = time.perf_counter() - started
    initial = [h["eval_loss"] for h in history if "eval_loss" in h and h.get("step") == 0]
    result = TrainResult(adapter_dir, config.run_dir / "run.json", trainer.state.global_step,
                         train_losses[-1] if train_losses else None, eval_losses[-1],
                         initial[0] if initial else None, seconds, history, resumed_from=str(resume_from) if resume_from else None)
    if trainer.args.world_size > 1:
        # Under `accelerate launch`, each rank records its view; the ranks must agree (see tests/test_ddp.py).
        write_json(config.run_dir / f"rank-{trainer.args.process_index}.json",
                   {"steps": result.steps, "eval_loss": result.eval_loss,
                    "lora_checksum": lora_checksum(trainer.model), "world_size": trainer.args.world_size})
    if not trainer.is_world_process_zero():
        return result
    trainer.model.save_pretrained(str(adapter_dir))
    loaded.tokenizer.save_pretrained(str(adapter_dir))
    write_json(config.run_dir / "log_history.json", history)
    result.curve_png = plot_loss_curves(history, config.run_dir / "loss_curve.png")
    if config.merge_16bit:
        export_merged(loaded, trainer.model, config.run_dir / "merged_16bit")
    summary_path = config.data_dir / "summary.json"
    write_json(result.run_json, {
        "config": config.to_dict(),
        "environment": environment_report(),
        "backend": loaded.backend,
        "model_source": loaded.source,
        "prompt_template": {"language": splits.template.language,
                            "chat_template": splits.template.use_chat_template},
        "data_summary_sha256": file_sha256(summary_path) if summary_path.is_file() else None,
        "examples": {"train": len(splits.train), "val": len(splits.val), "dropped_too_long": splits.too_long},
        "batch_size": batch, "gradient_accumulation_steps": accum,
        "packing": trainer.args.packing,
        "steps": result.steps, "train_loss": result.train_loss, "eval_loss": result.eval_loss,
        "initial_eval_loss": result.initial_eval_loss,
        # With early stopping, the adapter is the best checkpoint's (lowest validation loss).
        "best_checkpoint": trainer.state.best_model_checkpoint if trainer.args.load_best_model_at_end else None,
        "stopped_early": bool(config.early_stopping_patience) and result.steps < trainer.state.max_steps,
        "wall_seconds": round(seconds, 1), "resumed_from": result.resumed_from,
    })
    return result


def lora_checksum(model: Any) -> float:
    """Sum of all trainable weights in float64: equal on every rank when DDP kept them in sync."""
    return float(sum(p.detach().double().sum() for p in model.parameters() if p.requires_grad))


def export_merged(loaded: LoadedModel, model: Any, out_dir: Path) -> Path:
    """Merge LoRA into the base weights and save a 16-bit model (for serving without PEFT)."""
    if loaded.backend == "unsloth":
        model.save_pretrained_merged(str(out_dir), loaded.tokenizer, save_method="merged_16bit")
    else:
        merged = model.merge_and_unload()
        merged.save_pretrained(str(out_dir), safe_serialization=True)
        loaded.tokenizer.save_pretrained(str(out_dir))
    return out_dir


def loss_frame(history: list[dict[str, Any]]) -> Any:
    """Train and eval loss by step, as a pandas DataFrame."""
    import pandas as pd

    rows = [{"step": h["step"], "train_loss": h.get("loss"), "eval_loss": h.get("eval_loss")}
            for h in history if "loss" in h or "eval_loss" in h]
    frame = pd.DataFrame(rows, columns=["step", "train_loss", "eval_loss"])
    return frame.groupby("step", as_index=False).first()


def plot_loss_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """Train and eval loss against step, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    frame = loss_frame(history)
    fig, ax = plt.subplots(figsize=(7, 4))
    for column, style in (("train_loss", "-"), ("eval_loss", "o-")):
        part = frame.dropna(subset=[column])
        if len(part):
            ax.plot(part["step"], part[column], style, label=column.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (description tokens only)")
    ax.set_title("Fine-tuning loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def perplexity(eval_loss: float | None) -> float | None:
    return math.exp(eval_loss) if eval_loss is not None and eval_loss < 50 else None

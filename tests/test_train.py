"""Fine-tuning on CPU with the offline model: loss masking, EOS, eval loss, adapter save and reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from titlegen_lib.data import preprocess
from titlegen_lib.generate import DecodingSettings, generate_descriptions
from titlegen_lib.models import attach_lora, load_model
from titlegen_lib import train as train_module
from titlegen_lib.storage import read_json, write_json
from titlegen_lib.train import (FEW_RECORDS, FEW_STEPS, backoff_batch, build_datasets, build_trainer,
                                 checkpoint_folder, few_records_settings, last_checkpoint, planned_steps,
                                 prepare_fine_tune, saved_batch, steps_line, train, training_key)


def small_config(offline_config, **changes):
    values = dict(synthetic_train_records=500, synthetic_test_records=60, train_samples=160, val_samples=16,
                  test_samples=8, max_steps=24, eval_steps=12, save_steps=12, logging_steps=4,
                  per_device_train_batch_size=8, max_seq_length=192)
    return offline_config.replace(**{**values, **changes})


@pytest.mark.slow
def test_batches_mask_prompt_and_padding_and_keep_eos(offline_config, offline_model):
    config = small_config(offline_config)
    preprocess(config)
    tokenizer = offline_model.tokenizer
    splits = build_datasets(config, tokenizer)
    trainer = build_trainer(offline_model, config, splits, batch_size=4, grad_accum=1, progress=False)
    batch = next(iter(trainer.get_train_dataloader()))
    for input_ids, labels, attention in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        real = int(attention.sum())
        trained = (labels != -100).nonzero().flatten()
        assert trained.numel() > 0
        assert labels[: trained[0]].eq(-100).all()  # the prompt (instruction + title) is not trained on
        assert int(labels[real - 1]) == tokenizer.eos_token_id  # the last real token is EOS, and it is trained
        assert labels[real:].eq(-100).all()  # padding is not trained on
        prompt = tokenizer.decode(input_ids[: trained[0]])
        assert "Title:" in prompt  # the model sees the title


def test_eos_label_survives_when_pad_equals_eos():
    # The known trap: collators that mask labels == pad_id also mask EOS when pad is EOS. TRL's collator
    # pads by position; this pins that behaviour for the version we ship.
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    eos = 2
    collator = DataCollatorForLanguageModeling(pad_token_id=eos)
    batch = collator([{"input_ids": [5, 6, 7, eos], "labels": [-100, 6, 7, eos]},
                      {"input_ids": [5, 6, eos], "labels": [-100, 6, eos]}])
    assert batch["labels"].tolist() == [[-100, 6, 7, eos], [-100, 6, eos, -100]]


def test_backoff_keeps_the_effective_batch():
    assert backoff_batch(16, 1) == (8, 2)
    assert backoff_batch(3, 2) == (1, 4)
    with pytest.raises(RuntimeError, match="batch size 1"):
        backoff_batch(1, 8)


def test_planned_steps_count_batches_per_epoch_and_max_steps_wins():
    # The recipe study's two regimes on 162 real records: the colab-t4 preset's one epoch of 64, and batches of 16.
    assert planned_steps(162, 64, 1, 1.0, -1) == 3
    assert planned_steps(162, 16, 1, 8.0, -1) == 88
    assert planned_steps(162, 16, 2, 8.0, -1) == 48  # 11 batches an epoch make 6 updates (the last of one)
    assert planned_steps(162, 16, 1, 0.5, -1) == 6
    assert planned_steps(162, 16, 1, 8.0, 40) == 40


def test_the_steps_line_says_when_a_run_is_too_short_to_learn_or_never_evaluates(offline_config):
    preset = offline_config.replace(max_steps=-1, num_train_epochs=1.0, early_stopping_patience=2, eval_steps=20,
                                    save_steps=20)
    short = steps_line(preset, 162, 64, 1, packing=False)
    assert "3 optimizer steps" in short and "Too few to learn from" in short and "never evaluates" in short
    enough = steps_line(preset.replace(num_train_epochs=8.0, eval_steps=5, save_steps=5), 162, 16, 1, packing=False)
    assert "88 optimizer steps" in enough and "Too few" not in enough and "never evaluates" not in enough
    assert planned_steps(162, 16, 1, 8.0, -1) >= FEW_STEPS


def test_a_few_hundred_records_train_with_the_small_data_settings_unless_told_otherwise(offline_config, capsys):
    # The colab-t4 preset's batch of 64 and one epoch: 3 steps on the recipe study's 162 records, 32 on 2,000.
    preset = offline_config.replace(max_steps=-1, num_train_epochs=1.0, per_device_train_batch_size=64,
                                    early_stopping_patience=2, eval_steps=100, save_steps=100)
    adapted = few_records_settings(preset, 162)
    assert "162 train examples make 3 optimizer steps at batch 64 x 1" in capsys.readouterr().out
    assert all(getattr(adapted, name) == value for name, value in FEW_RECORDS.items())
    assert adapted.learning_rate == preset.learning_rate and adapted.lora_r == preset.lora_r
    assert planned_steps(162, adapted.per_device_train_batch_size, adapted.gradient_accumulation_steps,
                         adapted.num_train_epochs, adapted.max_steps) == 88
    for kept in (few_records_settings(preset, 2000), few_records_settings(preset.replace(max_steps=40), 162),
                 few_records_settings(preset.replace(few_records_recipe=False), 162)):
        assert kept.per_device_train_batch_size == 64 and kept.num_train_epochs == 1.0 and kept.eval_steps == 100
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_a_fine_tune_of_few_records_is_prepared_with_the_small_data_settings(offline_config, capsys):
    config = small_config(offline_config, train_samples=40, max_steps=-1, num_train_epochs=1.0,
                          per_device_train_batch_size=32, eval_steps=100, save_steps=100)
    preprocess(config)
    capsys.readouterr()
    fine_tune = prepare_fine_tune(config, attach_lora(load_model(config), config), progress=False)
    out = capsys.readouterr().out
    args = fine_tune.trainer_settings()
    assert (args.per_device_train_batch_size, args.num_train_epochs, args.eval_steps, args.save_steps) == (16, 8, 5, 5)
    assert fine_tune.config.early_stopping_patience == FEW_RECORDS["early_stopping_patience"]
    assert "training with the recipe study's settings" in out and "batch 16 x 1, 8 epoch(s)" in out
    assert fine_tune.checkpoint_dir.name == training_key(config.replace(**FEW_RECORDS))


@pytest.mark.slow
def test_the_printed_step_count_is_the_count_the_run_takes(offline_config, capsys):
    # Accumulation over an odd number of batches and a fractional epoch: where a naive count is off by one.
    config = small_config(offline_config, train_samples=40, max_steps=-1, num_train_epochs=1.5, eval_steps=100,
                          save_steps=100, gradient_accumulation_steps=2, few_records_recipe=False)
    preprocess(config)
    capsys.readouterr()
    result = train(config, load_model(config), progress=False)
    out = capsys.readouterr().out
    examples = json.loads(result.run_json.read_text())["examples"]["train"]
    assert f"[titlegen] {result.steps} optimizer steps: {examples} train examples, batch 8 x 2, 1.5 epoch(s)" in out
    assert result.steps < FEW_STEPS and "Too few to learn from" in out


@pytest.mark.slow
def test_finetune_lowers_val_loss_and_the_adapter_reloads(offline_config):
    config = small_config(offline_config)
    preprocess(config)
    loaded = load_model(config)
    result = train(config, loaded, progress=False)
    assert result.steps == 24
    assert result.eval_loss < result.initial_eval_loss - 0.3
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (result.adapter_dir / name).is_file()
    run = json.loads(result.run_json.read_text())
    assert run["steps"] == 24 and run["backend"] == "cpu" and run["data_summary_sha256"]
    assert run["eval_loss"] == pytest.approx(result.eval_loss)
    assert result.curve_png.is_file()
    assert last_checkpoint(checkpoint_folder(config)).name == "checkpoint-24"

    titles = ["Acme Stainless Steel Kettle, 1.7 Liter", "The Quiet Harbor: A Novel (Paperback)"]
    settings = DecodingSettings.from_config(config, max_new_tokens=40)
    before = generate_descriptions(loaded, titles, config, settings, progress=False)
    reloaded = load_model(config, adapter_dir=result.adapter_dir)
    after = generate_descriptions(reloaded, titles, config, settings, progress=False)
    assert [g.text for g in after] == [g.text for g in before]
    assert all(g.text for g in after)
    # The adapter changes the model: the base model alone writes something else.
    base = load_model(config)
    with torch.no_grad():
        plain = generate_descriptions(base, titles, config, settings, progress=False)
    assert [g.text for g in plain] != [g.text for g in after]


def test_the_training_key_follows_split_contents_not_the_summary(offline_config):
    config = small_config(offline_config, synthetic_train_records=120, synthetic_test_records=20, train_samples=40)
    preprocess(config)
    key = training_key(config)
    summary = config.data_dir / "summary.json"
    write_json(summary, {**read_json(summary), "created": "another day", "seconds": 99.0})
    assert training_key(config) == key  # a rebuild to identical splits keeps the checkpoints usable
    train_split = config.data_dir / "train.jsonl"
    train_split.write_text("".join(train_split.read_text().splitlines(keepends=True)[1:]))
    assert training_key(config) != key
    assert training_key(config.replace(learning_rate=config.learning_rate / 2)) != training_key(config)


@pytest.mark.slow
def test_other_settings_keep_their_checkpoints_and_an_oom_backoff_is_kept(offline_config, monkeypatch, capsys):
    config = small_config(offline_config, max_steps=8, save_steps=4, eval_steps=4, save_total_limit=3)
    preprocess(config)
    first = checkpoint_folder(config)
    original_build = train_module.build_trainer

    def build_that_runs_out_of_memory(*args, **kwargs):
        from transformers import TrainerCallback

        trainer = original_build(*args, **kwargs)

        class OutOfMemoryAtStep6(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001 - Trainer's signature
                if state.global_step == 6 and args.per_device_train_batch_size == 8:
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        trainer.add_callback(OutOfMemoryAtStep6())
        return trainer

    monkeypatch.setattr(train_module, "build_trainer", build_that_runs_out_of_memory)
    result = train(config, progress=False)
    out = capsys.readouterr().out
    assert result.steps == 8
    assert "retrying with batch 4 and gradient accumulation 2" in out
    assert f"resuming from {first / 'checkpoint-4'}" in out  # the OOM after step 4 went back to its checkpoint
    run = json.loads(result.run_json.read_text())
    assert (run["batch_size"], run["gradient_accumulation_steps"]) == (4, 2)
    assert saved_batch(first) == (4, 2)  # a resume after a disconnect starts at the smaller batch

    other = config.replace(learning_rate=config.learning_rate / 2, max_steps=4)
    train(other, progress=False)
    out = capsys.readouterr().out
    assert checkpoint_folder(other) != first
    assert last_checkpoint(first).name == "checkpoint-8"  # not deleted by the run with other settings
    assert f"kept under {first.parent}: {first.name}" in out
    train(other.replace(remove_other_checkpoints=True), progress=False)
    # A finished run is loaded, not trained further (the Trainer would add a step past max_steps).
    assert "training already finished at checkpoint-4" in capsys.readouterr().out
    assert not first.exists() and last_checkpoint(checkpoint_folder(other)).name == "checkpoint-4"


@pytest.mark.slow
def test_early_stopping_stops_when_validation_loss_rises_and_keeps_the_best_weights(offline_config):
    config = small_config(offline_config, train_samples=48, val_samples=8, max_steps=30, eval_steps=2, save_steps=2,
                          logging_steps=2, per_device_train_batch_size=4, max_seq_length=160, save_total_limit=2,
                          learning_rate=0.05, early_stopping_patience=2)  # a rate that soon makes it worse
    preprocess(config)
    result = train(config, progress=False)
    run = json.loads(result.run_json.read_text())
    evals = {h["step"]: h["eval_loss"] for h in result.log_history if "eval_loss" in h and h["step"] > 0}
    assert run["stopped_early"] and result.steps < 30
    best_step = int(run["best_checkpoint"].rsplit("-", 1)[1])
    assert evals[best_step] == min(v for k, v in evals.items() if k <= result.steps)
    assert result.steps >= best_step + 2 * config.eval_steps  # two evaluations without improvement
    from safetensors.torch import load_file

    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    best = load_file(Path(run["best_checkpoint"]) / "adapter_model.safetensors")
    assert saved.keys() == best.keys() and all(torch.equal(saved[k], best[k]) for k in saved)
    # Run again: the finished run is loaded, not trained past where early stopping ended it.
    again = train(config, progress=False)
    assert again.steps == result.steps


def test_early_stopping_needs_checkpoints_at_evaluations(offline_config):
    from titlegen_lib import ConfigError

    with pytest.raises(ConfigError, match="save_steps .* multiple of eval_steps"):
        offline_config.replace(early_stopping_patience=2, eval_steps=4, save_steps=6)

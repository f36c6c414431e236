"""Fine-tuning on CPU with the offline model: loss masking, EOS, eval loss, adapter save and reload."""

from __future__ import annotations

import json

import pytest
import torch

from titlegen_lib.data import preprocess
from titlegen_lib.generate import DecodingSettings, generate_descriptions
from titlegen_lib.models import load_model
from titlegen_lib.train import backoff_batch, build_datasets, build_trainer, last_checkpoint, train


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
    assert last_checkpoint(config.run_dir / "checkpoints").name == "checkpoint-24"

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

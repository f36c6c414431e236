"""Config: one object from dicts (papermill), files and command-line flags, validated with clear errors."""

from __future__ import annotations

import json

import pytest

from titlegen_lib import Config, ConfigError


def test_presets_layer_under_explicit_values():
    config = Config.from_dict({"preset": "offline", "lora_r": 4})
    assert config.model_name == "smollm2-135m-offline"
    assert config.lora_r == 4
    assert Config().model_name == "unsloth/tinyllama-bnb-4bit"


def test_from_file_yaml_and_json_and_overrides(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("preset: offline\nlearning_rate: 3e-4\nlora_target_modules: [q_proj, v_proj]\n")
    config = Config.from_file(yaml_file, seed=7)
    assert config.learning_rate == pytest.approx(3e-4)
    assert config.lora_target_modules == ["q_proj", "v_proj"]
    assert config.seed == 7
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"language": "pt", "test_samples": 5}))
    assert Config.from_file(json_file).language == "pt"


def test_from_cli_flags_and_p_overrides(tmp_path):
    config = Config.from_cli(["--preset", "offline", "--max-steps", "12", "-p", "lora_dropout=0.05",
                              "-p", "lora_target_modules=q_proj,k_proj", "--packing", "false"])
    assert (config.max_steps, config.lora_dropout, config.packing) == (12, 0.05, False)
    assert config.lora_target_modules == ["q_proj", "k_proj"]


def test_round_trip_through_dict():
    config = Config.from_dict(preset="offline", run_name="r1")
    assert Config.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("values", "field"), [
    ({"train_samples": -1}, "train_samples"),
    ({"test_samples": -5}, "test_samples"),
    ({"learning_rate": 0}, "learning_rate"),
    ({"val_fraction": 1.5}, "val_fraction"),
    ({"language": "de"}, "language"),
    ({"lora_r": "many"}, "lora_r"),
    ({"packing": "maybe"}, "packing"),
    ({"model_name": "not a model"}, "model_name"),
    ({"raw_dir": "/does/not/exist"}, "raw_dir"),
    ({"run_name": "a/b"}, "run_name"),
    ({"preset": "huge"}, "preset"),
    ({"lora_targets": ["q"]}, "lora_targets"),
])
def test_bad_values_name_the_field(values, field):
    with pytest.raises(ConfigError, match=field):
        Config.from_dict(values)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        Config.from_file(tmp_path / "nope.yaml")


def test_hub_ids_and_local_paths_are_valid_model_names(tmp_path):
    assert Config.from_dict(model_name="someone/some-model").model_name == "someone/some-model"
    assert Config.from_dict(model_name=str(tmp_path)).model_name == str(tmp_path)


@pytest.mark.parametrize(("flag", "field"), [("seed=1e400", "seed"), ("learning_rate=.nan", "learning_rate"),
                                             ("learning_rate=.inf", "learning_rate"), ("top_p=-.inf", "top_p"),
                                             ("max_steps=1e999", "max_steps")])
def test_non_finite_and_overflowing_numbers_name_the_field(flag, field):
    with pytest.raises(ConfigError, match=field):
        Config.from_cli(["-p", flag])


def test_a_config_file_that_is_not_utf8_is_one_clear_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes("run_name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="run.yaml is not UTF-8"):
        Config.from_file(path)


def test_every_setting_has_help_and_a_group_and_the_cli_shows_it():
    from dataclasses import fields

    from titlegen_lib.__main__ import build_parser

    for f in fields(Config):
        assert f.metadata["help"] and f.metadata["group"], f.name
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--learning-rate VALUE" in text and "peak learning rate" in text


def test_trainer_settings_reach_sftconfig_under_their_own_names(offline_config):
    from titlegen_lib.train import sft_config

    config = offline_config.replace(warmup_steps=0.1, weight_decay=0.01, lr_scheduler_type="linear", save_total_limit=5)
    args = sft_config(config, "cpu", packing=False, batch_size=4, grad_accum=2)
    for name, value in config.group("trainer", "trainer_log").items():
        expected = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "report_to": []}.get(name, value)
        assert getattr(args, name) == expected, name  # report_to "none": TRL stores no tracker as []


def test_a_value_trl_refuses_is_a_config_error(offline_config):
    from titlegen_lib.train import sft_config

    with pytest.raises(ConfigError, match="lr_scheduler_type|no_such_schedule"):
        sft_config(offline_config.replace(lr_scheduler_type="no_such_schedule"), "cpu", False, 4, 1)


def test_param_overrides_read_values_as_yaml_and_refuse_an_item_without_a_value():
    from titlegen_lib.config import param_overrides

    assert param_overrides(["lora_r=32", "learning_rate=0.0003", "run_name=a b", "embedding_model="]) == {
        "lora_r": 32, "learning_rate": 0.0003, "run_name": "a b", "embedding_model": ""}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        param_overrides(["lora_r"])

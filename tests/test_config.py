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

"""bench/recipe.py --pool: folds' test titles compared as one test set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _recipe():
    spec = importlib.util.spec_from_file_location("recipe", ROOT / "bench" / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fold(folder: Path, uids: list[str], ft_rouge: list[float], base_rouge: list[float]) -> Path:
    folder.mkdir(parents=True)
    with (folder / "predictions.jsonl").open("w") as handle:
        for uid, ft, base in zip(uids, ft_rouge, base_rouge):
            line = {"uid": uid, "title": f"title {uid}", "reference": "a soft cotton shirt for summer days",
                    "finetuned": {"output": "a soft cotton shirt", "metrics": {"rougeL": ft}},
                    "base": {"output": "a shirt", "metrics": {"rougeL": base}}}
            handle.write(json.dumps(line) + "\n")
    return folder


def test_pooled_difference_weighs_every_title_once_and_folds_must_not_overlap(tmp_path):
    recipe = _recipe()
    # Fold a: 1 title, ft - base = +0.5; fold b: 3 titles, each -0.1. The mean of fold means would be +0.2;
    # over the 4 titles it is (0.5 - 0.3) / 4 = +0.05.
    a = _fold(tmp_path / "a", ["u1"], [0.6], [0.1])
    b = _fold(tmp_path / "b", ["u2", "u3", "u4"], [0.1, 0.1, 0.1], [0.2, 0.2, 0.2])
    result = recipe.pooled([a, b], {"preset": "offline", "bootstrap_samples": 200, "embedding_model": ""})
    assert result["n_examples"] == 4
    assert result["finetuned_minus_base"]["rougeL"]["mean"] == pytest.approx(0.05)
    assert result["systems"]["finetuned"]["rougeL"]["mean"] == pytest.approx(0.225)
    assert "chrf" in result["finetuned_minus_base"]  # corpus metrics come from the outputs themselves
    assert "| finetuned - base | +0.050" in recipe.pooled_table(result)
    with pytest.raises(SystemExit, match="share test titles"):
        recipe.pooled([a, _fold(tmp_path / "c", ["u1"], [0.2], [0.2])], {"preset": "offline"})

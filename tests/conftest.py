"""Shared fixtures: the offline config in a temporary work dir, small hand-made AmazonTitles files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from titlegen_lib import Config  # noqa: E402


def amazon_line(uid: str, title: str, content: str) -> str:
    """One AmazonTitles JSON line, keys in the real file's order."""
    return json.dumps({"uid": uid, "title": title, "content": content, "target_ind": [1], "target_rel": [1.0]},
                      ensure_ascii=False)


def write_lines(path: Path, lines: list[str] | list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join((x if isinstance(x, bytes) else x.encode("utf-8")) + b"\n" for x in lines)
    path.write_bytes(data)
    return path


@pytest.fixture
def offline_config(tmp_path: Path) -> Config:
    return Config.from_dict(preset="offline", work_dir=str(tmp_path / "work"), output_dir=str(tmp_path / "out"))


@pytest.fixture(scope="session")
def offline_tokenizer():
    from titlegen_lib.models import load_tokenizer

    return load_tokenizer(Config.from_dict(preset="offline"))


@pytest.fixture(scope="session")
def offline_model():
    """The bundled SmolLM2-135M on CPU, loaded once per test session (do not train it in place)."""
    from titlegen_lib.models import load_model

    return load_model(Config.from_dict(preset="offline"))

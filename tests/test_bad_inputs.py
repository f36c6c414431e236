"""The bad-input corpus (tests/data/bad/): exact drop counts, or one clear error naming file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import amazon_line, write_lines

from titlegen_lib.data import DataFileError, InputFile, find_input, iter_lines, load_split, preprocess_files

BAD = Path(__file__).parent / "data" / "bad"
LONG = "A sturdy stainless steel kettle that boils water quickly and quietly, with a cool-touch handle."


@pytest.fixture
def good_test_file(tmp_path) -> InputFile:
    return InputFile(write_lines(tmp_path / "tst.json", [amazon_line(f"T{i:09d}", f"Zeta Lamp {i}", f"Lamp {i}. " + LONG)
                                                         for i in range(3)]))


def run(train: Path, test: InputFile, config, tmp_path):
    config = config.replace(train_samples=0, val_samples=0, test_samples=0, val_fraction=0.0)
    return preprocess_files(InputFile(train), test, config, tmp_path / "out")


@pytest.mark.parametrize(("name", "message"), [
    ("empty.json", r"empty.json is empty"),
    ("only_malformed.json", r"only_malformed.json: no usable record in 4 lines \(2 malformed_json, 1 not_an_object, "
                            r"1 missing_field\); first problem: .*only_malformed.json, line 1: invalid JSON"),
    ("array.json", r"array.json, line 1: the file is one JSON array, not JSON lines"),
    ("utf16.json", r"utf16.json is UTF-16/UTF-32 encoded"),
    ("truncated.json.gz", r"truncated.json.gz is truncated or corrupt after line \d+"),
])
def test_unusable_files_give_one_clear_error(name, message, good_test_file, offline_config, tmp_path):
    with pytest.raises(DataFileError, match=message):
        run(BAD / name, good_test_file, offline_config, tmp_path)
    assert not (tmp_path / "out" / "train.jsonl").exists()  # no partial output


@pytest.mark.parametrize(("name", "kept", "drops", "problem"), [
    ("bom.json", 3, {}, None),
    ("crlf.json", 3, {}, None),
    ("latin1.json", 1, {"bad_encoding": 1}, r"latin1.json, line 1: not valid UTF-8 at byte \d+"),
    ("title_types.json", 3, {"wrong_type": 3}, r"title_types.json, line 2: field 'title': expected a string, got 42"),
    ("surrogate.json", 2, {"bad_encoding": 1},
     r"surrogate.json, line 2: field 'content': a lone surrogate \(\\ud800\) is not a character"),
    ("html_only_content.json", 3, {"empty_content": 2}, None),
])
def test_partly_bad_files_give_exact_counts(name, kept, drops, problem, good_test_file, offline_config, tmp_path):
    result = run(BAD / name, good_test_file, offline_config, tmp_path)
    files = result.summary["files"]["train"]
    assert files["drops"] == drops
    assert result.summary["written"]["train"] == kept == len(load_split(result.paths["train"]))
    assert files["lines"] == kept + sum(drops.values())
    if problem:
        assert any(re.search(problem, p) for p in files["problems"])


def test_a_ten_megabyte_line_is_counted_not_fatal(good_test_file, offline_config, tmp_path):
    huge = amazon_line("B000000099", "Huge Kettle", "word " * 2_100_000)  # about 10 MB
    train = write_lines(tmp_path / "trn.json", [huge, amazon_line("B000000001", "Small Kettle", LONG)])
    result = run(train, good_test_file, offline_config, tmp_path)
    assert result.summary["files"]["train"]["drops"] == {"long_content": 1}
    assert result.summary["written"]["train"] == 1


def test_zip_without_the_member_names_what_it_holds():
    with pytest.raises(DataFileError, match=r"trn.json not found in .*bad: expected trn.json, trn.json.gz or "
                                            r"LF-Amazon-1.3M.raw.zip"):
        find_input(BAD, "trn.json")
    with pytest.raises(DataFileError, match=r"no_member.zip has no member 'LF-Amazon-1.3M/trn.json.gz'; it holds: "
                                            r"LF-Amazon-1.3M/lbl.json.gz"):
        list(iter_lines(InputFile(BAD / "no_member.zip", "LF-Amazon-1.3M/trn.json.gz")))

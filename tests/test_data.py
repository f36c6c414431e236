"""Reading, cleaning, splitting and writing AmazonTitles: each rule, each malformed case, exact counts."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from conftest import amazon_line, write_lines

from titlegen_lib.data import (
    CleanRules,
    DataFileError,
    DropReason,
    InputFile,
    MalformedLineError,
    RawRecord,
    Tally,
    clean_record,
    clean_text,
    find_input,
    load_split,
    preprocess,
    preprocess_files,
    read_records,
    sample_key,
    split_of,
)

LONG = "A sturdy stainless steel kettle that boils water quickly and quietly. "


# ---------------------------------------------------------------- clean_text

@pytest.mark.parametrize(("raw", "clean"), [
    ("Don&#8217;t stop", "Don\u2019t stop"),  # decimal entity
    ("Don&#x2019;t stop", "Don\u2019t stop"),  # hex entity
    ("Tea &amp; cakes &mdash; fresh", "Tea & cakes \u2014 fresh"),  # named entities
    ("Rock &amp;#8217;n roll", "Rock \u2019n roll"),  # double-escaped
    ("&lt;b&gt;Bold&lt;/b&gt; claim", "Bold claim"),  # escaped tags are unescaped, then stripped
    ("Line one<br>Line two<p>Para</p>", "Line one Line two Para"),
    ("Size < 5 and > 3 cm", "Size < 5 and > 3 cm"),  # comparisons are not tags
    ("Great novel.--This text refers to the Paperback edition.", "Great novel."),
    ("Great novel. -- This text refers to an out of print or unavailable edition of this title.", "Great novel."),
    ("Tabs\tand\u00a0spaces   and\nnew lines\x07", "Tabs and spaces and new lines"),
    ("Works great.Fits all.", "Works great. Fits all."),  # glued sentences
    ("The iPhone Case, U.S.A. Made!", "The iPhone Case, U.S.A. Made!"),  # case and punctuation kept
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


def test_long_blank_runs_do_not_make_the_boilerplate_rule_quadratic():
    import signal

    def hung(*_):
        raise AssertionError("clean_text on 100,000 blanks did not finish in 20 s (it took 87 s when quadratic)")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        text = "Great novel." + " " * 100_000 + "-- This text refers to the Paperback edition. Fine print."
        assert clean_text(text) == "Great novel. Fine print."
    finally:
        signal.alarm(0)


def test_boilerplate_is_removed_as_the_plain_regex_removes_it():
    from titlegen_lib.data import _BOILERPLATE, _strip_boilerplate

    # Case variants (also the characters IGNORECASE folds: ſ, the Kelvin sign), blanks, dashes, several
    # occurrences, a missing or distant full stop.
    pieces = ["Word", " ", "  ", "\u00a0", "\n", "-", "--", "---", ".", "x" * 120, "This text refers to",
              "this TEXT refers to", "THIS TEXT REFERS TO", "Thiſ text refers to", "édition", "K",
              " the Kindle edition"]
    rng = random.Random(2)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 14)))
        assert _strip_boilerplate(text) == _BOILERPLATE.sub(" ", text), text


def test_entities_are_unescaped_before_any_filtering():
    # The public attempts stripped '&' and '#' first and left "8217;" in the text.
    assert "8217" not in clean_text("It&#8217;s here &#8212; now")


# ---------------------------------------------------------------- clean_record

RULES = CleanRules(min_title_chars=3, min_content_chars=40, max_content_chars=300, long_content="drop")


@pytest.mark.parametrize(("title", "content", "reason"), [
    ("", "", DropReason.EMPTY_TITLE_AND_CONTENT),
    ("", LONG, DropReason.EMPTY_TITLE),
    ("Kettle", "", DropReason.EMPTY_CONTENT),
    ("Kettle", "<br><p></p>", DropReason.EMPTY_CONTENT),  # content with only HTML
    ("Ke", LONG, DropReason.SHORT_TITLE),
    ("Kettle", "VHS Tape", DropReason.SHORT_CONTENT),
    ("Kettle", LONG * 10, DropReason.LONG_CONTENT),
    ("Steel Kettle With A Long Name For Testing", "steel kettle with a long name for testing",
     DropReason.CONTENT_EQUALS_TITLE),
])
def test_clean_record_drop_reasons(title, content, reason):
    assert clean_record(RawRecord("B000000001", title, content), RULES) is reason


def test_clean_record_keeps_case_and_punctuation():
    kept = clean_record(RawRecord(" B000000001 ", "Acme&#174; Kettle", "Boils FAST! " + LONG), RULES)
    assert isinstance(kept, RawRecord)
    assert kept.title == "Acme\u00ae Kettle" and kept.content.startswith("Boils FAST! A sturdy")
    assert kept.uid == "B000000001"


# ---------------------------------------------------------------- reading and malformed lines

def malformed_file(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "bad.json", [
        amazon_line("B000000001", "Good Kettle", LONG),
        b"{not json",
        b'["an", "array"]',
        json.dumps({"uid": "B000000002", "title": None, "content": LONG}).encode(),
        json.dumps({"uid": "B000000003", "title": 12, "content": LONG}).encode(),
        json.dumps({"uid": "B000000004", "title": ["a"], "content": LONG}).encode(),
        json.dumps({"uid": "B000000005", "title": "No content key"}).encode(),
        b'{"uid": "B000000006", "title": "Caf\xe9 Latin-1", "content": "x"}',
        b"",
        amazon_line("B000000007", "Second Kettle", LONG),
    ])


def test_malformed_lines_are_counted_with_file_and_line(tmp_path):
    path = malformed_file(tmp_path)
    tally = Tally(str(path))
    records = list(read_records(InputFile(path), tally))
    assert [r.uid for r in records] == ["B000000001", "B000000007"]
    assert dict(tally.drops) == {"malformed_json": 1, "not_an_object": 1, "wrong_type": 3, "missing_field": 1,
                                 "bad_encoding": 1}
    problems = [str(p) for p in tally.problems]
    assert problems[0] == f"{path}, line 2: invalid JSON (Expecting property name enclosed in double quotes)"
    assert f"{path}, line 4: field 'title': expected a string, got null" in problems
    assert f"{path}, line 7: field 'content': missing" in problems
    assert any("line 8" in p and "UTF-8" in p for p in problems)


def test_strict_mode_stops_at_first_malformed_line(tmp_path):
    path = malformed_file(tmp_path)
    with pytest.raises(MalformedLineError, match=r"bad.json, line 2: invalid JSON"):
        list(read_records(InputFile(path), Tally(str(path)), strict=True))


def test_bom_and_crlf_are_read(tmp_path):
    path = tmp_path / "crlf.json"
    path.write_bytes(b"\xef\xbb\xbf" + amazon_line("B1", "Kettle One", LONG).encode() + b"\r\n"
                     + amazon_line("B2", "Kettle Two", LONG).encode() + b"\r\n")
    tally = Tally("x")
    assert [r.title for r in read_records(InputFile(path), tally)] == ["Kettle One", "Kettle Two"]
    assert not tally.drops


def test_plain_gz_and_zip_member_read_the_same(tmp_path):
    lines = [amazon_line(f"B{i:09d}", f"Kettle {i}", LONG) for i in range(5)]
    plain = write_lines(tmp_path / "plain" / "trn.json", lines)
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    with gzip.open(gz_dir / "trn.json.gz", "wb") as handle:
        handle.write(plain.read_bytes())
    zip_dir = tmp_path / "zip"
    zip_dir.mkdir()
    with zipfile.ZipFile(zip_dir / "LF-Amazon-1.3M.raw.zip", "w") as zf:
        zf.write(gz_dir / "trn.json.gz", "LF-Amazon-1.3M/trn.json.gz")
    sources = [find_input(d, "trn.json") for d in (plain.parent, gz_dir, zip_dir)]
    assert sources[2].member == "LF-Amazon-1.3M/trn.json.gz"
    read = [[r.uid for r in read_records(s, Tally("x"))] for s in sources]
    assert read[0] == read[1] == read[2] == [f"B{i:09d}" for i in range(5)]


def test_truncated_gz_is_an_error_not_a_partial_result(tmp_path):
    blob = gzip.compress("".join(amazon_line(f"B{i}", f"Kettle {i}", LONG) + "\n" for i in range(2000)).encode())
    path = tmp_path / "trn.json.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFileError, match=r"trn.json.gz is truncated or corrupt after line \d+"):
        list(read_records(InputFile(path), Tally("x")))


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(DataFileError, match="trn.json not found in"):
        find_input(tmp_path, "trn.json")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("README.txt", "nothing here")
    with pytest.raises(DataFileError, match="trn.json not found"):
        find_input(tmp_path, "trn.json")


# ---------------------------------------------------------------- the preprocess run

def train_and_test_files(tmp_path: Path) -> tuple[InputFile, InputFile]:
    train = [amazon_line(f"B{i:09d}", f"Acme Kettle Model {i}", f"Model {i}. " + LONG) for i in range(40)]
    train += [
        amazon_line("C000000001", "", ""),                      # empty title and content
        amazon_line("C000000002", "Lonely Title", ""),          # empty content
        amazon_line("C000000003", "Short Content", "VHS Tape"),  # too short
        amazon_line("B000000000", "Acme Kettle Model 0", "Model 0. " + LONG),  # exact duplicate line
        amazon_line("C000000004", "Acme Kettle Model 1", "Shorter text for a repeated title, still long."),
        amazon_line("C000000005", "Acme Kettle Model 2", "Model 2, a much longer description. " + LONG * 2),
        "{broken",
    ]
    test = [amazon_line(f"T{i:09d}", f"Zeta Lamp {i}", f"Lamp {i}. " + LONG) for i in range(12)]
    test += [amazon_line("T000000099", "Acme Kettle Model 3", "Seen in train. " + LONG)]
    return (InputFile(write_lines(tmp_path / "raw" / "trn.json", train)),
            InputFile(write_lines(tmp_path / "raw" / "tst.json", test)))


def test_preprocess_counts_every_drop(tmp_path, offline_config):
    train, test = train_and_test_files(tmp_path)
    config = offline_config.replace(train_samples=0, val_samples=0, test_samples=0, val_fraction=0.2)
    result = preprocess_files(train, test, config, tmp_path / "out")
    files = result.summary["files"]
    assert files["train"]["lines"] == 47
    assert files["train"]["drops"] == {"empty_title_and_content": 1, "empty_content": 1, "short_content": 1,
                                       "duplicate_record": 1, "duplicate_title": 2, "malformed_json": 1}
    assert files["test"]["drops"] == {"title_in_train": 1}
    written = result.summary["written"]
    assert written["train"] + written["val"] == 40 and written["test"] == 12
    assert files["train"]["lines"] == files["train"]["kept"] + files["train"]["dropped"]
    rows = load_split(result.paths["train"]) + load_split(result.paths["val"])
    by_title = {r["input"]: r["output"] for r in rows}
    assert by_title["Acme Kettle Model 2"].startswith("Model 2, a much longer")  # longest content wins
    assert by_title["Acme Kettle Model 1"].startswith("Model 1. A sturdy")
    assert set(rows[0]) == {"uid", "instruction", "input", "output"}


def test_splits_are_deterministic_and_disjoint(tmp_path, offline_config):
    train, test = train_and_test_files(tmp_path)
    config = offline_config.replace(train_samples=0, val_samples=0, test_samples=0, val_fraction=0.3)
    first = preprocess_files(train, test, config, tmp_path / "a")
    second = preprocess_files(train, test, config.replace(seed=99), tmp_path / "b")
    uids = {name: {split: {r["uid"] for r in load_split(res.paths[split])} for split in ("train", "val")}
            for name, res in (("a", first), ("b", second))}
    assert uids["a"] == uids["b"]  # a new seed never moves a record between train and val
    assert not uids["a"]["train"] & uids["a"]["val"]
    assert all(split_of(uid, 0.3) == "val" for uid in uids["a"]["val"])


def test_sampling_is_seeded_and_stable(tmp_path, offline_config):
    train, test = train_and_test_files(tmp_path)
    config = offline_config.replace(train_samples=10, val_samples=0, test_samples=4, val_fraction=0.0)
    a = load_split(preprocess_files(train, test, config, tmp_path / "a").paths["train"])
    b = load_split(preprocess_files(train, test, config, tmp_path / "b").paths["train"])
    c = load_split(preprocess_files(train, test, config.replace(seed=1), tmp_path / "c").paths["train"])
    assert a == b and len(a) == 10
    assert {r["uid"] for r in a} != {r["uid"] for r in c}


def test_a_sample_is_the_first_clean_records_by_sample_key(tmp_path, offline_config):
    train, test = train_and_test_files(tmp_path)
    config = offline_config.replace(train_samples=0, val_samples=0, test_samples=0, val_fraction=0.0)
    every = load_split(preprocess_files(train, test, config, tmp_path / "all").paths["train"])
    some = load_split(preprocess_files(train, test, config.replace(train_samples=7), tmp_path / "some").paths["train"])
    assert some == sorted(every, key=lambda r: sample_key(r["uid"], config.seed))[:7]  # in sampling order
    assert [r["uid"] for r in every] == sorted(r["uid"] for r in every)  # unsampled: file order (uids ascend)
    for out in ("all", "some"):
        assert not list((tmp_path / out).glob(".*"))  # no temporary file left behind


def test_a_failed_preprocess_leaves_no_temporary_file(tmp_path, offline_config):
    bad = tmp_path / "bad.json"
    bad.write_text('{"uid": "A", "title": "", "content": ""}\nnot json\n')
    with pytest.raises(DataFileError, match="no usable record"):
        preprocess_files(InputFile(bad), InputFile(bad), offline_config, tmp_path / "out")
    assert not list((tmp_path / "out").glob(".*")) and not list((tmp_path / "out").glob("*.jsonl"))


def test_finished_outputs_are_reused_only_for_the_same_settings(tmp_path, offline_config):
    train, test = train_and_test_files(tmp_path)
    config = offline_config.replace(test_samples=3)
    assert not preprocess_files(train, test, config, tmp_path / "o").reused
    assert preprocess_files(train, test, config, tmp_path / "o").reused
    changed = preprocess_files(train, test, config.replace(test_samples=4), tmp_path / "o")
    assert not changed.reused and changed.summary["written"]["test"] == 4


def test_token_limit_drops_are_counted(tmp_path, offline_config):
    train, test = train_and_test_files(tmp_path)
    config = offline_config.replace(train_samples=0, val_samples=0, test_samples=0, max_content_tokens=5)
    result = preprocess_files(train, test, config, tmp_path / "o", count_tokens=lambda text: len(text.split()))
    assert result.summary["written"] == {"train": 0, "val": 0, "test": 0}
    assert result.summary["files"]["test"]["drops"]["too_many_tokens"] == 12


def test_summary_has_lengths_and_speed(tmp_path, offline_config):
    train, test = train_and_test_files(tmp_path)
    summary = preprocess_files(train, test, offline_config, tmp_path / "o").summary
    assert summary["lengths"]["train"]["content_chars"]["p50"] > 40
    assert summary["lines_per_second"] > 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["key"] == summary["key"]


def test_preprocess_on_synthetic_default(offline_config):
    config = offline_config.replace(synthetic_train_records=400, synthetic_test_records=100, train_samples=100,
                                    val_samples=10, test_samples=10, val_fraction=0.2)
    result = preprocess(config)
    assert result.summary["synthetic"] is True
    assert result.summary["written"] == {"train": 100, "val": 10, "test": 10}
    assert all(r["uid"].startswith("SYN") for r in load_split(result.paths["train"]))


def test_a_write_killed_half_way_leaves_the_old_file(tmp_path):
    target = tmp_path / "train.jsonl"
    target.write_text("old complete content\n")
    script = (
        "import os, signal, sys\n"
        "from titlegen_lib.storage import atomic_open\n"
        f"with atomic_open({str(target)!r}) as f:\n"
        "    f.write('half of the new'); f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    assert proc.returncode == -9
    assert target.read_text() == "old complete content\n"


def test_an_atomic_write_gets_the_mode_a_plain_open_gives(tmp_path):
    from titlegen_lib.storage import atomic_open

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_open(tmp_path / "atomic.txt") as handle:
        handle.write("x")
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


@pytest.mark.parametrize("compressed", [False, True], ids=["plain: workers read byte ranges", "gz: blocks sent"])
def test_parallel_cleaning_matches_serial(tmp_path, offline_config, monkeypatch, compressed):
    import titlegen_lib.data as data

    train, test = train_and_test_files(tmp_path)
    if compressed:
        gz = train.path.with_suffix(".json.gz")
        gz.write_bytes(gzip.compress(train.path.read_bytes()))
        train = InputFile(gz)
    config = offline_config.replace(train_samples=0, val_samples=0, test_samples=0)
    serial = preprocess_files(train, test, config, tmp_path / "serial", workers=1)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TITLEGEN_SCRATCH", str(scratch))  # the local disk; work_dir is Drive on Colab
    monkeypatch.setattr(data, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(data, "BLOCK_BYTES", 1000)  # many small blocks, cut mid-line, several in flight
    parallel = preprocess_files(train, test, config, tmp_path / "parallel", workers=2, force=True)
    for split in ("train", "val", "test"):
        assert serial.paths[split].read_bytes() == parallel.paths[split].read_bytes()
    assert serial.summary["files"] == parallel.summary["files"]
    assert ", line 47: " in parallel.summary["files"]["train"]["problems"][0]  # "{broken", after 46 lines
    # Scratch rows and the workers' spool files went to the scratch folder and are gone; the outputs folder
    # holds the outputs only.
    assert not list(scratch.iterdir())
    assert sorted(p.name for p in (tmp_path / "parallel").iterdir()) == ["manifest.json", "summary.json", "test.jsonl",
                                                                          "train.jsonl", "val.jsonl"]
    assert sorted(p.name for p in tmp_path.glob(".parallel*")) == [".parallel.lock"]  # no build or old folder left


def test_preprocess_shows_progress_by_bytes_read(tmp_path, offline_config, capsys):
    train, test = train_and_test_files(tmp_path)
    preprocess_files(train, test, offline_config, tmp_path / "o", progress=True)
    err = capsys.readouterr().err
    assert f"cleaning {train.path.name}" in err and f"cleaning {test.path.name}" in err
    assert "100%" in err and f"{train.path.stat().st_size / 1000:.2f}k/" in err  # the whole file, by bytes


def test_byte_ranges_give_every_line_once_in_order(tmp_path):
    from titlegen_lib.data import read_whole_lines

    lines = [b"\xef\xbb\xbffirst", b"", b"a much longer second line", b"x", b"\r", b"last, with no line end"]
    path = tmp_path / "x.json"
    path.write_bytes(b"\n".join(lines))
    size = path.stat().st_size
    for step in (1, 2, 3, 7, 40, size):
        blocks = [read_whole_lines(path, start, min(start + step, size)) for start in range(0, size, step)]
        assert b"".join(blocks) == path.read_bytes()[3:]  # the BOM is dropped, nothing else
        whole = [block for block in blocks if block]
        assert all(block.endswith(b"\n") for block in whole[:-1]) and whole[-1].endswith(b"no line end")


def _one_by_one(blocks, banned):
    """The dedup rule stated plainly: keep a record unless one kept before it has the same record key or uid,
    or its title is banned."""
    records, uids, kept, drops = set(), set(), [], Counter()
    for block in blocks:
        for record, uid, title in block:
            if record in records:
                drops["duplicate_record"] += 1
            elif uid in uids:
                drops["duplicate_uid"] += 1
            elif title in banned:
                drops["title_in_train"] += 1
            else:
                records.add(record)
                uids.add(uid)
                kept.append((record, uid, title))
    return kept, drops


def test_deduplication_keeps_the_one_by_one_rule(tmp_path):
    import numpy as np

    from titlegen_lib.data import RECORD_KEYS, BlockResult, KeptRecords

    rng = random.Random(0)
    for trial in range(30):
        # Few distinct keys, so duplicates chain: a repeated uid with new content, then that content again...
        blocks = [[(rng.randrange(12), rng.randrange(12), rng.randrange(6)) for _ in range(rng.randrange(0, 15))]
                  for _ in range(6)]
        banned = set(rng.sample(range(6), trial % 3))
        expected, expected_drops = _one_by_one(blocks, banned)
        tally, kept = Tally("x"), KeptRecords(tmp_path / f"{trial}.tmp")
        for block in blocks:
            rows = b"".join(b"%d\n" % i for i in range(len(block)))
            # keys: record, uid, title as drawn; content and sample keys, title and content characters, row bytes
            keys = np.array([(*row, 0, 0, 1, 1, len(b"%d\n" % i)) for i, row in enumerate(block)], dtype=RECORD_KEYS)
            kept.add(BlockResult(0, len(rows), keys, rows, Counter(), []))
        mask = kept.unique(tally, [("title_key", np.array(sorted(banned), dtype=np.uint64), DropReason.TITLE_IN_TRAIN)])
        assert [row for row, keep in zip((row for block in blocks for row in block), mask) if keep] == expected
        assert tally.drops == expected_drops
        kept.finish()


def _full_decision(title: str, content: str, rules: CleanRules) -> str:
    """clean_record's length decisions taken on the fully cleaned content (no judging by the start)."""
    title, content = clean_text(title), clean_text(content)
    if not content:
        return "empty_content"
    if content.casefold() == title.casefold():
        return "content_equals_title"
    if len(content) < rules.min_content_chars:
        return "short_content"
    return "long_content" if len(content) > rules.max_content_chars else "kept"


def test_a_very_long_content_is_judged_on_its_start_as_on_the_whole():
    rules = CleanRules(min_title_chars=3, min_content_chars=40, max_content_chars=200, long_content="drop")
    head = rules.max_content_chars + 2 * 1000  # past this, clean_record may judge by the start
    pieces = ["Word ", "more words. ", "Next.Glued ", "&amp;", "&#8217;", "&amp;#8217;", "<b>", "</p>",
              "<div " + "x" * 290 + ">", " " * 400, "\t\n", "\x07", " -- This text refers to the Paperback edition.",
              "<" + "y" * 350, "&" + "z" * 40]
    rng = random.Random(1)
    judged_on_start = 0
    for _ in range(400):
        # Mostly markup and blanks that cleaning removes, so the cleaned length lands on both sides of the limit.
        weights = [rng.random() for _ in pieces]
        content = "".join(rng.choices(pieces, weights, k=rng.randrange(300, 1500)))
        decision = clean_record(RawRecord("B1", "Acme Kettle", content), rules)
        outcome = decision.value if isinstance(decision, DropReason) else "kept"
        assert outcome == _full_decision("Acme Kettle", content, rules), content[:200]
        judged_on_start += len(content) > head and outcome == "long_content"
    assert judged_on_start > 50


def test_lines_split_across_blocks_keep_their_numbers(tmp_path, monkeypatch):
    import titlegen_lib.data as data

    monkeypatch.setattr(data, "BLOCK_BYTES", 7)
    path = write_lines(tmp_path / "x.json", [b"first line", b"", b"third\r", b"fourth"])
    assert list(data.iter_lines(InputFile(path))) == [(1, b"first line"), (2, b""), (3, b"third"), (4, b"fourth")]


def test_label_lists_are_skipped_but_a_cut_line_is_still_malformed(tmp_path):
    tricky = '{"uid":"B1","title":"Odd Kettle","content":"Text with ,\\"target_ind\\":[1] inside.","target_ind":[1],"target_rel":[1.0]}'
    cut = '{"uid":"B2","title":"Cut Kettle","content":"' + LONG + '","target_ind":[1,2],"target_rel":[1.0,'
    path = write_lines(tmp_path / "x.json", [tricky, cut])
    tally = Tally("x")
    records = list(read_records(InputFile(path), tally))
    assert [r.content for r in records] == ['Text with ,"target_ind":[1] inside.']
    assert dict(tally.drops) == {"malformed_json": 1}


# ---------------------------------------------------------------- long descriptions cut at a sentence end

@pytest.mark.parametrize(("text", "limit", "cut"), [
    ("One. Two! Three? Four.", 16, "One. Two! Three?"),
    ("He said \u201cyes.\u201d Then left.", 20, "He said \u201cyes.\u201d"),
    ("Version 3.5 is here and more", 20, None),  # a stop inside a number ends no sentence
    ("No stop at all in this text", 10, None),
    ("Ends exactly here.", 18, "Ends exactly here."),
])
def test_cut_at_sentence(text, limit, cut):
    from titlegen_lib.data import cut_at_sentence

    assert cut_at_sentence(text, limit) == cut


def test_long_descriptions_are_cut_at_a_sentence_end_or_dropped(tmp_path, offline_config):
    sentence = "This kettle boils water quickly and quietly. "
    long_ok, no_stop = sentence * 30, "word " * 300
    head_long = "<b>x</b> " * 20 + sentence * 600  # longer than max + 2,000: judged on its cleaned start
    lines = [amazon_line("B1", "Kettle One", long_ok), amazon_line("B2", "Kettle Two", no_stop),
             amazon_line("B3", "Kettle Three", head_long), amazon_line("B4", "Kettle Four", LONG)]
    train = write_lines(tmp_path / "trn.json", lines)
    test = write_lines(tmp_path / "tst.json", [amazon_line("T1", "Other Thing", "Not in train. " + LONG)])
    config = offline_config.replace(train_samples=0, val_samples=0, test_samples=0, val_fraction=0.0,
                                    max_content_chars=500, long_content="cut")
    result = preprocess_files(InputFile(train), InputFile(test), config, tmp_path / "cut")
    rows = {r["uid"]: r["output"] for r in load_split(result.paths["train"])}
    assert set(rows) == {"B1", "B3", "B4"}  # B2 has no sentence end within the limit: dropped as too long
    assert rows["B1"] == (sentence * 11).strip()  # 11 sentences of 45 characters fit in 500
    assert rows["B3"] == "x " * 20 + (sentence * 10).strip()  # cut from its cleaned start (tags gone)
    assert result.summary["files"]["train"]["cut_at_sentence"] == 2
    assert result.summary["files"]["train"]["drops"]["long_content"] == 1
    dropped = preprocess_files(InputFile(train), InputFile(test), config.replace(long_content="drop"), tmp_path / "drop")
    assert dropped.summary["files"]["train"]["drops"]["long_content"] == 3
    assert "cut_at_sentence" not in dropped.summary["files"]["train"]


# ---------------------------------------------------------------- [3/5]: what is text, what is leakage

@pytest.mark.parametrize(("raw", "clean"), [
    ("x<y and y>z", "x<y and y>z"),
    ("Press <Enter> to continue", "Press <Enter> to continue"),
    ("Kids 3-5 <3 it", "Kids 3-5 <3 it"),
    ("<P CLASS='x'>Para</p>graph<br/>", "Para graph"),
    ("a<!-- hidden -->b", "a b"),
    ("<script type='x'>var x = 1 < 2;</script>kept", "kept"),
    ("<STYLE>p {}</STYLE>ok", "ok"),
    ("<b>Bold</b> & <i>italic</i>", "Bold & italic"),
])
def test_only_html_is_stripped_and_other_angle_brackets_stay(raw, clean):
    assert clean_text(raw) == clean


@pytest.mark.parametrize("line", [
    '{"uid":"B1","title":"Acme Kettle","content":"' + LONG + '","target_ind":[x],"target_rel":[1]}',
    '{"uid":"B1","title":"Acme Kettle","content":"' + LONG + '","target_ind":[1],"target_rel":[1.0]} trailing',
    '{"uid":"B1","title":"Acme Kettle","content":"' + LONG + '","target_ind":[1,],"target_rel":[]}',
])
def test_invalid_json_anywhere_in_a_line_makes_it_malformed(tmp_path, line):
    path = write_lines(tmp_path / "x.json", [line])
    tally = Tally("x")
    assert list(read_records(InputFile(path), tally)) == []
    assert tally.drops == {"malformed_json": 1}


def test_an_empty_uid_is_a_problem_line_not_a_record(tmp_path):
    path = write_lines(tmp_path / "x.json", [amazon_line("", "Acme Kettle", LONG), amazon_line("  ", "Other", LONG),
                                             amazon_line("B1", "Third Kettle", LONG)])
    tally = Tally("x")
    assert [r.uid for r in read_records(InputFile(path), tally)] == ["B1"]
    assert tally.drops == {"missing_field": 2}
    assert str(tally.problems[0]).endswith("x.json, line 1: field 'uid': empty") or "line 1: field 'uid': empty" in \
        str(tally.problems[0])


def test_test_records_seen_in_train_are_dropped_and_counted(tmp_path, offline_config):
    import unicodedata

    train = [amazon_line(f"B{i}", f"Kettle Model {i}", f"Kettle {i}. " + LONG) for i in range(10)]
    train.append(amazon_line("B20", unicodedata.normalize("NFD", "Café Crème Grinder"), "A grinder. " + LONG))
    train.append(amazon_line("B21", "Author Bio Book", "About the author: " + LONG))
    test = [amazon_line(f"T{i}", f"Lamp {i}", f"Lamp {i}. " + LONG) for i in range(5)]
    test += [amazon_line("B3", "A Different Title", "Different text. " + LONG),  # uid in train
             amazon_line("T20", unicodedata.normalize("NFC", "CAFÉ crème grinder"), "Other text. " + LONG),  # title
             amazon_line("T21", "Another Book", "About the author: " + LONG)]  # description in train
    files = [InputFile(write_lines(tmp_path / n, lines)) for n, lines in (("trn.json", train), ("tst.json", test))]
    config = offline_config.replace(train_samples=0, val_samples=0, test_samples=0)
    result = preprocess_files(*files, config, tmp_path / "out")
    assert result.summary["files"]["test"]["drops"] == {"uid_in_train": 1, "title_in_train": 1,
                                                        "description_in_train": 1}
    assert sorted(r["uid"] for r in load_split(result.paths["test"])) == [f"T{i}" for i in range(5)]
    table = result.drops_table()  # what notebook 01 shows
    assert table.loc["description_in_train", files[1].label] == 1


def test_a_token_limit_with_sampling_writes_the_requested_number_and_labels_only_what_was_checked(tmp_path,
                                                                                                  offline_config):
    short, long = "Short and sweet words. " * 3, "Long words here. " * 30  # 12 and 90 words
    train = [amazon_line(f"B{i:03d}", f"Item {i}", (long if i % 3 else short) + f"#{i}") for i in range(300)]
    test = [amazon_line(f"T{i:03d}", f"Thing {i}", (long if i % 3 else short) + f"T{i}") for i in range(30)]
    files = [InputFile(write_lines(tmp_path / n, lines)) for n, lines in (("trn.json", train), ("tst.json", test))]
    config = offline_config.replace(train_samples=80, val_samples=0, test_samples=5, val_fraction=0.0,
                                    max_content_tokens=20, max_content_chars=2000)
    result = preprocess_files(*files, config, tmp_path / "out", count_tokens=lambda text: len(text.split()))
    summary = result.summary
    assert summary["written"]["train"] == 80  # 100 fit the limit: enough for the 80 asked for
    too_long = summary["files"]["train"]["drops"]["too_many_tokens"]
    assert summary["not_sampled"]["train"] == 300 - 80 - too_long  # only the checked ones are called too long
    assert 80 + too_long < 300  # it stopped checking once 80 fitted
    assert all(len(r["output"].split()) <= 20 for r in load_split(result.paths["train"]))


def test_a_very_long_content_is_cut_from_its_start_as_from_the_whole():
    """long_content="cut" on contents past max + 2 * margin: cleaning only their start gives the cut that
    cleaning the whole would give."""
    from titlegen_lib.data import cut_at_sentence

    rules = CleanRules(min_title_chars=3, min_content_chars=40, max_content_chars=200, long_content="cut")
    pieces = ["Word ", "more words. ", "Next.Glued ", "&amp;", "&#8217;", "<b>", "</p>", "<div " + "x" * 290 + ">",
              " " * 400, "\t\n", " -- This text refers to the Paperback edition.", "<!-- note -->", "Stop! ", "Why? "]
    rng = random.Random(2)
    cut_on_start = 0
    for _ in range(300):
        weights = [rng.random() for _ in pieces]
        content = "".join(rng.choices(pieces, weights, k=rng.randrange(600, 2500)))
        decision = clean_record(RawRecord("B1", "Acme Kettle", content), rules)
        whole = clean_text(content)
        expected = cut_at_sentence(whole, rules.max_content_chars) if len(whole) > rules.max_content_chars else whole
        if expected is None or len(expected) < rules.min_content_chars:
            assert decision in (DropReason.LONG_CONTENT, DropReason.SHORT_CONTENT), content[:200]
        elif not isinstance(decision, DropReason):
            assert decision.content == expected, content[:200]
            cut_on_start += len(content) > rules.max_content_chars + 5000 and decision.cut
    assert cut_on_start > 50

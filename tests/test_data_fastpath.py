"""The compiled scan (data_fastpath) decides lines exactly as the Python path does: same rows, keys, counts."""

from __future__ import annotations

import json
import random

import numpy as np
import orjson
import pytest

pytest.importorskip("numba")  # the compiled scan needs it (without it, data.py cleans every line in Python)

from titlegen_lib import data_fastpath  # noqa: E402
from titlegen_lib.data import CleanJob, CleanRules, InputFile, clean_block, preprocess_files  # noqa: E402
from titlegen_lib.data_fastpath import Line  # noqa: E402
from titlegen_lib.synthetic import SyntheticSpec, write_synthetic, write_synthetic_dataset  # noqa: E402

SOURCE = InputFile("trn.json")


def cleaned_both_ways(block: bytes, rules: CleanRules, language: str = "en"):
    python = clean_block(5, block, CleanJob(SOURCE, rules, 7, language, fast_path=False))
    fast = clean_block(5, block, CleanJob(SOURCE, rules, 7, language, fast_path=True))
    return python, fast


def assert_same(python, fast) -> None:
    assert fast.rows.splitlines() == python.rows.splitlines()
    assert fast.keys.dtype == python.keys.dtype == np.uint64
    assert fast.keys.tolist() == python.keys.tolist()
    assert fast.drops == python.drops
    assert fast.problems == python.problems
    assert fast.last_line == python.last_line


# Pieces of text that touch every rule: blanks, entities, tags, boilerplate, glued sentences, case, non-ASCII
# (printable or not, 2/3/4-byte), characters JSON must escape, and a near-copy of the title.
PIECES = ["Acme", "kettle", "Kettle", " ", "  ", "word", "words", ".", "Great", "great", "!", "?", ",", "é", "’",
          "ß", "İ", "K", "\u00a0", "\u200b", "\u00ad", "\u3000", "\u0085", "😀", "&amp;", "&#8217;", "& ", "&", "<b>",
          "<", ">", "his text refers to", " -- This text refers to the Paperback edition.", '"', "\\", "/", "\n",
          "\t",
          "\x7f", "\ufffe", "0123", "Acme Kettle",
          # character references: sure ones, and the ones html.unescape maps, drops or reads without ";"
          "&quot;", "&#x27;", "&#39;", "&mdash;", "&nbsp;", "&Aacute;", "&#9;", "&amp;#8217;", "&#8217", "&#0;",
          "&#13;", "&#128;", "&#x1F600;", "&#xD800;", "&#65535;", "&#xFDD0;", "&notit;", "&amp", "&zzz;",
          "&lt;b&gt;", "&#x;", "&#", "&#11;", "&#1;", "\b", "\x0b", "&" + "a" * 40 + ";", "&amp;quot;", "&amp;amp;",
          "&amp ", "&amp;",
          # tags: closed, cut, too long, with a reference inside, < that starts none
          "<p>", "</b>", "<br/>", "<a href='x?a=1&b=2'>", '<a title="&amp;gt;">', "<div " + "x" * 297 + ">",
          "<div " + "x" * 298 + ">", "</ p>", "<3", "< b>", "<<i>>"]


def random_text(rng: random.Random, pieces: int) -> str:
    plain = ["Acme", "kettle", " ", "word", "Great", ".", "é", "’", ",", "steel", '"']
    odd = rng.choice([0.0, 0.03, 0.1, 0.5])  # many texts are plain or hold one odd piece: the scan decides them
    return "".join(rng.choice(PIECES if rng.random() < odd else plain) for _ in range(rng.randrange(pieces)))


def test_texts_are_cleaned_as_clean_text_cleans_them():
    from titlegen_lib.data import clean_text

    rng = random.Random(4)
    decided = with_reference = 0
    for _ in range(20_000):
        text = random_text(rng, 12)
        for encoded in (orjson.dumps(text), json.dumps(text).encode()):  # raw UTF-8, \u escapes
            scanned = data_fastpath.clean_one_text(encoded)
            if scanned is None:
                continue
            assert scanned == (clean_text(text), len(clean_text(text)), not text or text.isspace()), text
            decided += 1
            with_reference += "&" in text
    assert decided > 20_000 and with_reference > 1000  # most texts, many with character references


def random_line(rng: random.Random) -> bytes:
    """A line as the dump writes it, or one of the ways a line can differ from that layout."""
    # Some titles and contents clean to nothing without being blank.
    title = random_text(rng, 6) if rng.random() < 0.9 else rng.choice(["<b>", "<p> </p>", "&nbsp;", "\u200b"])
    content = rng.choice([title, title.upper(), " " + title.lower() + " ", "", "   ", "<i></i>", random_text(rng, 4),
                          random_text(rng, 40), random_text(rng, 120)])
    record = {"uid": rng.choice(["B0001", " B0002 ", "B 3", "B\u00e94", "", "B\t5"]), "title": title,
              "content": content}
    text = orjson.dumps(record) if rng.random() < 0.8 else json.dumps(record).encode()  # raw UTF-8 or \u escapes
    tail = rng.choice([b"", b',"target_ind":[1,2,30],"target_rel":[1.0,0.5e-3]',
                       b',"target_ind":[],"target_rel":[]', b',"target_ind":[x],"target_rel":[1]',
                       b',"target_ind":[1]', b',"other":1'])
    line = text[:-1] + tail + b"}"
    variant = rng.random()
    if variant < 0.03:
        line = line[: rng.randrange(len(line))]  # cut short
    elif variant < 0.06:
        at = rng.randrange(len(line))
        line = line[:at] + rng.choice([b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xe2\x82", b"\xf0\x9f\x98\x80",
                                       b"\\ud800", b"\\ud83d\\ude00", b"\\u00e9", b"\\"]) + line[at:]
    elif variant < 0.08:
        line = rng.choice([b"", b"   ", b"\t", b"[1,2]", b'{"uid":"B1","title":7,"content":"x"}',
                           b'{"title":"Acme Kettle","uid":"B1","content":"A kettle."}', b" " + line])
    return line + rng.choice([b"\n", b"\r\n", b"\n", b"\r\n", b"\r\r\n", b"\rx\n", b" \n"])


def random_boilerplate_text(rng: random.Random) -> str:
    """Text around zero to three tries at the boilerplate: blanks of every kind, 0-3 dashes, the phrase in
    several cases (and near misses), a "." before, at or beyond 200 characters, or none."""
    blanks = ["", " ", "  ", "\t", "\x1c", "\n", "\x00", "\u3000", "\u00a0"]
    words = ["word", "Great", ".", "x" * 95, "é", "’", "&amp;", "<b>", "&#45;", "-", " "]
    parts = [rng.choice(words) for _ in range(rng.randrange(3))]
    for _ in range(rng.randrange(4)):
        parts += [rng.choice(blanks), rng.choice(["", "-", "--", "---", "- -"]), rng.choice(blanks),
                  rng.choice(["This text refers to", "this text refers to", "THIS TEXT refers to", "Thistext refers to",
                              "thiſ text refers to", "thİs text refers to", "thıs text refers to"]),
                  *(rng.choice([" the Paperback edition", "x" * 95, "-"]) for _ in range(rng.randrange(4))),
                  rng.choice([".", "", "..", " word"]), *(rng.choice(words) for _ in range(rng.randrange(3)))]
    return "".join(parts)


def test_boilerplate_is_stripped_as_clean_text_strips_it():
    """The scan's boilerplate rule against the regex (data._BOILERPLATE via clean_text), including the rule's
    case-kept gate, Unicode blanks and the three non-ASCII letters the regex takes for the phrase's."""
    from titlegen_lib.data import _BOILERPLATE, clean_text

    rng = random.Random(5)
    stripped = 0
    for _ in range(20_000):
        text = random_boilerplate_text(rng)
        scanned = data_fastpath.clean_one_text(orjson.dumps(text))
        if scanned is None:
            continue
        assert scanned[0] == clean_text(text), text
        stripped += "his text refers to" in text and _BOILERPLATE.search(text) is not None
    assert stripped > 1000  # the rule applied to over a thousand of the texts the scan decided


def test_random_lines_are_decided_as_the_python_path_decides_them():
    rng = random.Random(3)
    rules = CleanRules(min_title_chars=3, min_content_chars=12, max_content_chars=80)
    codes, places = [], []
    for _ in range(60):
        block = b"".join(random_line(rng) for _ in range(100))
        if rng.random() < 0.2:
            block = block.rstrip(b"\n")  # the file's last line may have no line end
        assert_same(*cleaned_both_ways(block, rules))
        block_codes, spans, _ = data_fastpath.scan_block(block, rules.min_title_chars, rules.min_content_chars,
                                                         rules.max_content_chars)
        codes += block_codes.tolist()
        places += spans[block_codes == Line.KEEP, 6:8].ravel().tolist()
    # Every decision the scan can take was taken, and kept texts came from each place (as they were, cleaned,
    # cleaned and to be escaped), so each of its rules was compared with the Python path.
    assert set(codes) == set(Line)
    assert set(places) == {data_fastpath.TEXT_IN_BLOCK, data_fastpath.TEXT_IN_CLEANED,
                           data_fastpath.TEXT_IN_CLEANED_TO_ESCAPE}


def test_long_contents_are_judged_on_their_start_as_the_python_path_judges_them():
    """Contents past max_content_chars + 2,000 characters that need cleaning: the scan, like clean_record,
    cleans their start only, and all of them when the start does not settle it (blanks that collapse, a
    long title, the title again)."""
    rng = random.Random(6)
    rules = CleanRules(min_title_chars=3, min_content_chars=12, max_content_chars=80)  # starts of 2,080
    pieces = ["word ", "Great. ", "é", "&amp; ", "<b>", " -- This text refers to the Paperback edition.", "x" * 40]
    blanks = [" " * 60, "\u3000" * 60]
    rare = ['"', "\n", "’", "😀", "\x7f", "Great.Glued "]  # also past the start: only checked to be valid JSON there
    codes = []
    for _ in range(10):
        lines = []
        for _ in range(60):
            blank_share = rng.choice([0.0, 0.5, 0.9, 0.97])
            content = "".join(rng.choice(blanks) if rng.random() < blank_share else rng.choice(pieces)
                              if rng.random() < 0.995 else rng.choice(rare) for _ in range(rng.randrange(100, 400)))
            title = rng.choice(["Acme Kettle", "Kettle " * 400, content[:30], content, content.upper()])
            lines.append(orjson.dumps({"uid": "B1", "title": title, "content": content}) + b"\n")
        block = b"".join(lines)
        assert_same(*cleaned_both_ways(block, rules))
        codes += data_fastpath.scan_block(block, 3, 12, 80)[0].tolist()
    assert {Line.KEEP, Line.LONG_CONTENT, Line.CONTENT_EQUALS_TITLE} <= set(codes)
    assert codes.count(Line.LONG_CONTENT) > 100  # decided by the scan, most on their start


def test_synthetic_dump_gives_the_same_output_and_most_lines_skip_python(tmp_path):
    path = tmp_path / "trn.json"
    write_synthetic(path, SyntheticSpec(n_records=3000, seed=5, malformed_rate=0.01))
    block = path.read_bytes()
    for language in ("en", "pt"):
        assert_same(*cleaned_both_ways(block, CleanRules(), language))
    codes, _, _ = data_fastpath.scan_block(block, 3, 40, 2000)
    assert np.mean(codes != Line.PYTHON) > 0.6


def test_preprocess_with_the_scan_writes_the_same_files(tmp_path, offline_config, monkeypatch):
    import titlegen_lib.data as data

    files = write_synthetic_dataset(tmp_path / "raw", 4000, 600, seed=5, malformed_rate=0.01)
    train, test = InputFile(files["trn"]), InputFile(files["tst"])
    config = offline_config.replace(train_samples=0, val_samples=0, test_samples=0, max_content_chars=2000)
    python = preprocess_files(train, test, config, tmp_path / "python", workers=1)
    monkeypatch.setattr(data, "FAST_PATH_MIN_BYTES", 0)
    monkeypatch.setattr(data, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(data, "BLOCK_BYTES", 50_000)
    fast = preprocess_files(train, test, config, tmp_path / "fast", workers=2, force=True)
    assert python.summary["fast_path"] == {"train": False, "test": False}
    assert fast.summary["fast_path"] == {"train": True, "test": True}
    for split in ("train", "val", "test"):
        assert fast.paths[split].read_bytes() == python.paths[split].read_bytes()
    assert fast.summary["files"] == python.summary["files"]
    # The workers' spool files (rows written by each worker) and the main process's temporary files are gone.
    assert sorted(path.name for path in (tmp_path / "fast").iterdir()) == ["summary.json", "test.jsonl",
                                                                          "train.jsonl", "val.jsonl"]


def test_small_files_or_no_numba_use_the_python_path(tmp_path, monkeypatch):
    import importlib.util

    import titlegen_lib.data as data

    path = tmp_path / "trn.json"
    path.write_bytes(b"x" * 1000)
    assert not data.fast_path_for(InputFile(path))
    monkeypatch.setattr(data, "FAST_PATH_MIN_BYTES", 100)
    assert data.fast_path_for(InputFile(path)) == (importlib.util.find_spec("numba") is not None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert not data.fast_path_for(InputFile(path))


@pytest.mark.parametrize("line", [b'{"uid":"B1","title":"Acme Kettle","content":"A steel kettle, quiet and quick."}',
                                  b'{"uid":"B1","title":"Acme Kettle","content":"A steel kettle, quiet and quick.",'
                                  b'"target_ind":[3,4],"target_rel":[1.0,1.0]}'])
def test_a_plain_line_is_kept_by_the_scan_itself(line):
    codes, spans, _ = data_fastpath.scan_block(line + b"\n", 3, 10, 100)
    assert codes.tolist() == [Line.KEEP]
    u0, u1, t0, t1, c0, c1, title_in, content_in, start, end, title_chars, content_chars = spans[0].tolist()
    assert title_in == content_in == data_fastpath.TEXT_IN_BLOCK
    assert (line[u0:u1], line[t0:t1], line[c0:c1]) == (b"B1", b"Acme Kettle", b"A steel kettle, quiet and quick.")
    assert (start, end) == (0, len(line))
    assert (title_chars, content_chars) == (11, 32)
    assert data_fastpath.clean_one_text(b'" Acme Kettle "') == ("Acme Kettle", 11, False)  # lengths in characters
    assert data_fastpath.clean_one_text(line[c0 - 1:c1 + 1])[1] == 32


def test_the_compiled_blake2b_is_hashlibs():
    """The scan's keys are BLAKE2b-64 digests, as data.record_keys computes them with hashlib: every length up
    to three compression blocks and a few longer, read from inside a larger buffer."""
    import hashlib
    import os

    state = np.empty(8, dtype=np.uint64)
    for length in [*range(0, 3 * 128 + 2), 1000, 4096, 12345]:
        data = os.urandom(length)
        buf = np.frombuffer(b"xy" + data + b"z", dtype=np.uint8)
        digest = hashlib.blake2b(data, digest_size=8).digest()
        assert int(data_fastpath._blake2b64(buf, 2, 2 + length, state)) == int.from_bytes(digest, "little")
        big_endian = data_fastpath._byteswap(np.uint64(int.from_bytes(digest, "little")))
        assert int(big_endian) == int.from_bytes(digest, "big")

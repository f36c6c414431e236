"""Synthetic AmazonTitles data: exact format, determinism, dirty-case rates, malformed lines, files."""

from __future__ import annotations

import gzip
import json
import math
import re
from functools import lru_cache

import pytest

from titlegen_lib import synthetic
from titlegen_lib.synthetic import (
    MALFORMED_KINDS,
    PLACEHOLDERS,
    SyntheticSpec,
    iter_synthetic_lines,
    write_synthetic,
    write_synthetic_dataset,
)

KEYS = ["uid", "title", "content", "target_ind", "target_rel"]
ENTITY = re.compile(r"&(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z]+);")
ODD_SPACE = re.compile(r"[\t\r\x0b\x0c\u00a0\u200b]| {2}")
TAIL = re.compile(r"--This text refers to (the [A-Za-z0-9 -]+ edition|an out of print or unavailable edition "
                  r"of this title)\.$")
N = 6000


@lru_cache(maxsize=None)
def lines_of(spec: SyntheticSpec) -> tuple[str, ...]:
    return tuple(iter_synthetic_lines(spec))


@lru_cache(maxsize=None)
def records_of(spec: SyntheticSpec) -> tuple[dict, ...]:
    """Parsed records, one per uid (exact duplicate lines dropped)."""
    out, seen = [], set()
    for line in lines_of(spec):
        record = json.loads(line)
        if record["uid"] not in seen:
            seen.add(record["uid"])
            out.append(record)
    return tuple(out)


def is_noisy(text: str) -> bool:
    return "<" in text or bool(ENTITY.search(text)) or bool(ODD_SPACE.search(text)) or text != text.strip()


def descriptive(records: tuple[dict, ...]) -> list[dict]:
    return [r for r in records if r["content"] and r["content"] not in PLACEHOLDERS and r["content"] != r["title"]]


def tolerance(p: float, n: int) -> float:
    return 4 * math.sqrt(max(p * (1 - p), 1e-4) / n) + 0.003


# ---------------------------------------------------------------- format

def test_same_spec_gives_identical_lines_and_another_seed_does_not():
    spec = SyntheticSpec(n_records=800, seed=7, malformed_rate=0.05)
    assert list(iter_synthetic_lines(spec)) == list(iter_synthetic_lines(SyntheticSpec(n_records=800, seed=7,
                                                                                        malformed_rate=0.05)))
    assert list(iter_synthetic_lines(spec)) != list(iter_synthetic_lines(SyntheticSpec(n_records=800, seed=8,
                                                                                        malformed_rate=0.05)))


@pytest.mark.parametrize("n", [0, 1, 2, 999])
def test_line_count_is_n_records(n):
    assert len(list(iter_synthetic_lines(SyntheticSpec(n_records=n, seed=1)))) == n


def test_every_line_is_one_record_with_the_five_keys_in_order_and_types():
    lines = lines_of(SyntheticSpec(n_records=N, seed=1))
    assert len(lines) == N
    for line in lines:
        assert "\n" not in line and not line.endswith("\r")
        record = json.loads(line)
        assert list(record) == KEYS
        uid = record["uid"]
        assert isinstance(uid, str) and len(uid) == 10 and uid.startswith("SYN") and uid[3:].isdigit()
        assert isinstance(record["title"], str) and isinstance(record["content"], str)
        ind, rel = record["target_ind"], record["target_rel"]
        assert ind and len(ind) == len(rel)
        assert all(type(i) is int and 0 <= i for i in ind) and ind == sorted(set(ind))
        assert all(type(x) is float for x in rel)


def test_lines_are_compact_json_with_literal_unicode():
    lines = lines_of(SyntheticSpec(n_records=N, seed=1))
    for line in lines:
        assert line == json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":"))
    text = "\n".join(lines)
    assert "\u2019" in text and "\u2014" in text and "\u00e9" in text
    assert "\\u2019" not in text


def test_uids_are_unique_except_for_exact_duplicate_lines():
    by_uid: dict[str, set[str]] = {}
    for line in lines_of(SyntheticSpec(n_records=N, seed=1)):
        by_uid.setdefault(json.loads(line)["uid"], set()).add(line)
    assert all(len(lines) == 1 for lines in by_uid.values())


# ---------------------------------------------------------------- rates

RATE_SPECS = [
    SyntheticSpec(n_records=N, seed=1),
    SyntheticSpec(n_records=N, seed=2, empty_content_rate=0.10, empty_title_rate=0.12, both_empty_rate=0.02,
                  html_rate=0.6, boilerplate_rate=0.3, placeholder_rate=0.08, title_as_content_rate=0.05,
                  duplicate_rate=0.08, duplicate_title_rate=0.06, long_content_rate=0.04),
]


@pytest.mark.parametrize("spec", RATE_SPECS, ids=["defaults", "custom"])
def test_observed_rates_match_the_spec(spec):
    lines = lines_of(spec)
    records = records_of(spec)
    n = len(records)

    def check(name: str, observed: float, expected: float, count: int) -> None:
        assert abs(observed - expected) <= tolerance(expected, count), f"{name}: {observed:.4f} vs {expected}"

    repeated = len(lines) - len(set(lines))
    check("duplicate lines", repeated / len(lines), spec.duplicate_rate, len(lines))

    def share(pred) -> float:
        return sum(1 for r in records if pred(r)) / n

    check("both empty", share(lambda r: not r["title"] and not r["content"]), spec.both_empty_rate, n)
    check("empty title", share(lambda r: not r["title"] and r["content"]), spec.empty_title_rate, n)
    check("empty content", share(lambda r: r["title"] and not r["content"]), spec.empty_content_rate, n)
    check("placeholder", share(lambda r: r["content"] in PLACEHOLDERS), spec.placeholder_rate, n)
    check("title as content", share(lambda r: r["content"] and r["content"] == r["title"]),
          spec.title_as_content_rate, n)
    check("long content", share(lambda r: len(r["content"]) >= 3000), spec.long_content_rate, n)

    desc = descriptive(records)
    check("html", sum(is_noisy(r["content"]) for r in desc) / len(desc), spec.html_rate, len(desc))
    check("boilerplate", sum("--This text refers to" in r["content"] for r in desc) / len(desc),
          spec.boilerplate_rate, len(desc))

    first_length: dict[str, int] = {}
    repeats = 0
    for r in records:
        if r["title"]:
            if r["title"] in first_length and first_length[r["title"]] != len(r["content"]):
                repeats += 1
            first_length.setdefault(r["title"], len(r["content"]))
    # Titles also repeat by chance (as in the real dump), well under 1% at this size.
    observed = repeats / n
    assert spec.duplicate_title_rate - tolerance(spec.duplicate_title_rate, n) <= observed
    assert observed <= spec.duplicate_title_rate + tolerance(spec.duplicate_title_rate, n) + 0.01


def test_zero_rates_give_clean_records_only():
    spec = SyntheticSpec(n_records=2000, seed=4, empty_content_rate=0, empty_title_rate=0, both_empty_rate=0,
                         html_rate=0, boilerplate_rate=0, placeholder_rate=0, title_as_content_rate=0,
                         duplicate_rate=0, duplicate_title_rate=0, long_content_rate=0)
    lines = lines_of(spec)
    assert len(set(lines)) == len(lines)
    for r in map(json.loads, lines):
        assert r["title"] and r["content"] and r["content"] != r["title"]
        assert not is_noisy(r["content"]) and not is_noisy(r["title"])
        assert "This text refers to" not in r["content"]
        assert 100 <= len(r["content"]) <= 2000
        assert r["content"][0].isupper() and r["content"][-1] in ".!?\u201d"


def test_duplicate_titles_come_with_other_uids_and_other_content_lengths():
    spec = SyntheticSpec(n_records=3000, seed=5, duplicate_title_rate=0.1)
    groups: dict[str, list[dict]] = {}
    for r in records_of(spec):
        if r["title"]:
            groups.setdefault(r["title"], []).append(r)
    repeated = [g for g in groups.values() if len(g) > 1]
    assert len(repeated) > 100
    assert all(len({r["uid"] for r in g}) == len(g) for g in repeated)
    assert sum(len({len(r["content"]) for r in g}) > 1 for g in repeated) / len(repeated) > 0.95


# ---------------------------------------------------------------- dirty text

def test_entities_tags_and_odd_whitespace_appear_literally():
    spec = SyntheticSpec(n_records=N, seed=1)
    text = "\n".join(lines_of(spec))
    for literal in ("&#8217;", "&#x2019;", "&mdash;", "&amp;", "&quot;", "&amp;#8217;", "<br>", "<p>", "</p>",
                    "<b>", "</b>"):
        assert literal in text, literal
    contents = [r["content"] for r in records_of(spec)]
    for char in ("\t", "\u00a0", "\r\n", "\x0b", "  "):
        assert any(char in c for c in contents), repr(char)


def test_boilerplate_tail_names_an_edition_on_book_like_records():
    spec = SyntheticSpec(n_records=3000, seed=3, html_rate=0, boilerplate_rate=0.5)
    tails = [r for r in records_of(spec) if "This text refers to" in r["content"]]
    assert len(tails) > 300
    editions = set()
    for r in tails:
        match = TAIL.search(r["content"])
        assert match, r["content"][-80:]
        editions.add(match.group(1))
        assert not re.search(r"\b[A-Z]{2}-\d{3}\b", r["title"])  # never on model-numbered goods
    assert {"the Paperback edition", "the Audio CD edition"} <= editions
    assert any(e in editions for e in ("the DVD edition", "the VHS Tape edition", "the Blu-ray edition"))


def test_long_contents_stay_within_bounds():
    spec = SyntheticSpec(n_records=2000, seed=6, long_content_rate=0.2)
    lengths = [len(r["content"]) for r in records_of(spec)]
    long = [n for n in lengths if n >= 3000]
    assert len(long) > 250 and max(lengths) <= 20_000 and max(long) > 15_000


def test_clean_content_mentions_the_title_brand_and_product():
    spec = SyntheticSpec(n_records=4000, seed=2, html_rate=0, boilerplate_rate=0)
    shares = []
    for r in descriptive(records_of(spec)):
        if not r["title"]:
            continue
        main = re.split(r" [(\[]", r["title"])[0]
        words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'\u2019-]{3,}", main)]
        if not words:
            continue
        content = r["content"].lower()
        assert words[0] in content, (r["title"], r["content"][:200])
        shares.append(sum(w in content for w in words) / len(words))
    assert len(shares) > 1500
    assert min(shares) >= 0.5 and sum(shares) / len(shares) > 0.9


def test_goods_descriptions_repeat_brand_model_and_noun():
    spec = SyntheticSpec(n_records=3000, seed=9, html_rate=0)
    goods = [r for r in descriptive(records_of(spec))
             if (m := re.match(r"^(.+?) ([A-Z]{2}-\d{3}) ", r["title"]))]
    assert len(goods) > 200
    for r in goods:
        brand_model = re.match(r"^(.+? [A-Z]{2}-\d{3}) ", r["title"]).group(1)
        assert brand_model in r["content"], (r["title"], r["content"][:200])


# ---------------------------------------------------------------- malformed lines

def classify(line: str) -> str | None:
    """The malformed kind of a line, or None for a well-formed record."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return "truncated"
    if isinstance(obj, list):
        return "array"
    if "content" not in obj:
        return "missing_content"
    title = obj["title"]
    if title is None:
        return "title_null"
    if isinstance(title, (int, float)):
        return "title_number"
    if isinstance(title, list):
        return "title_list"
    assert list(obj) == KEYS and isinstance(title, str)
    return None


def test_no_malformed_lines_by_default():
    assert all(classify(line) is None for line in lines_of(SyntheticSpec(n_records=N, seed=1)))


def test_malformed_lines_of_every_kind_at_the_requested_rate():
    spec = SyntheticSpec(n_records=3000, seed=8, malformed_rate=0.12)
    lines = lines_of(spec)
    kinds = [classify(line) for line in lines]
    assert kinds[0] is None
    assert set(kinds) - {None} == set(MALFORMED_KINDS)
    bad = sum(k is not None for k in kinds) / len(lines)
    assert abs(bad - 0.12) <= tolerance(0.12, len(lines))
    for line, kind in zip(lines, kinds):
        if kind == "array":
            assert line.startswith('["SYN')
        elif kind == "truncated":
            assert line.startswith('{"') and not line.endswith("}")


# ---------------------------------------------------------------- files

@pytest.mark.parametrize("name", ["trn.json", "trn.json.gz"])
def test_write_synthetic_plain_and_gzip(tmp_path, name):
    spec = SyntheticSpec(n_records=500, seed=3, malformed_rate=0.02)
    path = write_synthetic(tmp_path / "sub" / name, spec)
    assert path == tmp_path / "sub" / name
    data = path.read_bytes()
    if name.endswith(".gz"):
        assert data[:2] == b"\x1f\x8b"
        data = gzip.decompress(data)
    assert data.decode("utf-8").split("\n") == [*iter_synthetic_lines(spec), ""]
    again = write_synthetic(tmp_path / "again" / name, spec)
    assert again.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == [name]


def test_write_is_atomic_when_generation_fails(tmp_path, monkeypatch):
    path = tmp_path / "trn.json"
    path.write_text("old\n", encoding="utf-8")

    def broken(spec, uid_start):
        yield from ["{}"] * 10_000
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_iter_lines", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_synthetic(path, SyntheticSpec(n_records=10))
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["trn.json"]


def test_dataset_writes_train_and_test_with_disjoint_uids(tmp_path):
    paths = write_synthetic_dataset(tmp_path / "syn", 1500, 400, seed=3, html_rate=0.0, malformed_rate=0.0)
    assert set(paths) == {"trn", "tst"}
    assert paths["trn"] == tmp_path / "syn" / "trn.json" and paths["tst"] == tmp_path / "syn" / "tst.json"
    train = [json.loads(x) for x in paths["trn"].read_text(encoding="utf-8").splitlines()]
    test = [json.loads(x) for x in paths["tst"].read_text(encoding="utf-8").splitlines()]
    assert len(train) == 1500 and len(test) == 400
    assert not {r["uid"] for r in train} & {r["uid"] for r in test}
    assert {r["title"] for r in test if r["title"]} - {r["title"] for r in train if r["title"]}
    assert not any("<" in r["content"] for r in train + test)


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs", [
    {"n_records": -1},
    {"html_rate": 1.5},
    {"empty_content_rate": -0.1},
    {"empty_content_rate": 0.6, "empty_title_rate": 0.3, "both_empty_rate": 0.2},
    {"duplicate_rate": 0.7, "malformed_rate": 0.4},
])
def test_invalid_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        SyntheticSpec(**kwargs)


def test_dataset_refuses_unknown_rates(tmp_path):
    with pytest.raises(TypeError):
        write_synthetic_dataset(tmp_path, 10, 10, html_ratio=0.5)
    assert not (tmp_path / "trn.json").exists()

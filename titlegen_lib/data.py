"""Read AmazonTitles-1.3MM (plain, .gz or inside the release zip), clean it, split it and write JSONL.

Everything streams: the 1.9 GB train file is never held in memory. Every record that is not written
is counted under a `DropReason`, and every malformed line is reported with its file and line number.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import html
import json
import multiprocessing
import os
import re
import secrets
import shutil
import tempfile
import time
import unicodedata
import zipfile
import zlib
from collections import Counter, deque
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import orjson

from titlegen_lib.config import Config
from titlegen_lib.prompts import INSTRUCTIONS
from titlegen_lib.storage import (atomic_open, exclusive, file_identity, file_sha256, read_json, remove_leftovers,
                                  stable_hash, write_json)

RELEASE_ZIP = "LF-Amazon-1.3M.raw.zip"
SPLITS = ("train", "val", "test")
PREPROCESS_VERSION = 2  # bump when cleaning rules change, so cached outputs are rebuilt


class DropReason(str, Enum):
    """Why a record is not in the output. Malformed-line reasons come first."""

    BAD_ENCODING = "bad_encoding"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    EMPTY_TITLE_AND_CONTENT = "empty_title_and_content"
    EMPTY_TITLE = "empty_title"
    EMPTY_CONTENT = "empty_content"
    SHORT_TITLE = "short_title"
    SHORT_CONTENT = "short_content"
    LONG_CONTENT = "long_content"
    CONTENT_EQUALS_TITLE = "content_equals_title"
    DUPLICATE_RECORD = "duplicate_record"
    DUPLICATE_UID = "duplicate_uid"
    DUPLICATE_TITLE = "duplicate_title"
    UID_IN_TRAIN = "uid_in_train"
    TITLE_IN_TRAIN = "title_in_train"
    DESCRIPTION_IN_TRAIN = "description_in_train"
    TOO_MANY_TOKENS = "too_many_tokens"


class DataFileError(RuntimeError):
    """An input file cannot be read as AmazonTitles JSON lines; the message names the file and line."""


@dataclass(frozen=True)
class LineProblem:
    """A malformed line: where it is and what is wrong with it."""

    file: str
    line: int
    reason: DropReason
    field: str | None
    detail: str

    def __str__(self) -> str:
        where = f"field '{self.field}': " if self.field else ""
        return f"{self.file}, line {self.line}: {where}{self.detail}"


class MalformedLineError(DataFileError):
    """Raised in strict mode at the first malformed line."""

    def __init__(self, problem: LineProblem):
        super().__init__(f"{problem} (strict mode stops here; set strict=False to count and skip such lines)")
        self.problem = problem


@dataclass(frozen=True)
class InputFile:
    """A JSON-lines input: a plain or .gz file, or a member of the release zip."""

    path: Path
    member: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def label(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


class RawRecord(NamedTuple):
    """One record's text fields (a tuple: cheap to pass between processes); `cut`: its description was cut at a
    sentence end to fit max_content_chars (long_content="cut")."""

    uid: str
    title: str
    content: str
    cut: bool = False


@dataclass
class Tally:
    """Counts for one input file: lines read, records kept, drops by reason and the first problems."""

    label: str
    lines: int = 0
    kept: int = 0
    drops: Counter = field(default_factory=Counter)
    problems: list[LineProblem] = field(default_factory=list)
    max_problems: int = 20
    cut: int | None = None  # descriptions cut at a sentence end; None when long ones are dropped instead

    def drop(self, reason: DropReason) -> None:
        self.drops[reason.value] += 1

    def problem(self, problem: LineProblem) -> None:
        self.drop(problem.reason)
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.label, "lines": self.lines, "kept": self.kept,
                "dropped": sum(self.drops.values()),
                "drops": dict(sorted(self.drops.items(), key=lambda kv: -kv[1])),
                "problems": [str(p) for p in self.problems],
                **({"cut_at_sentence": self.cut} if self.cut is not None else {})}


# ---------------------------------------------------------------- locating and reading files

def find_input(raw_dir: str | Path, name: str) -> InputFile:
    """Find `name` (e.g. trn.json) in raw_dir as a plain file, a .gz, or a member of the release zip."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir / name, raw_dir / f"{name}.gz"):
        if candidate.is_file():
            return InputFile(candidate)
    for archive in sorted(raw_dir.glob("*.zip")):
        member = _zip_member(archive, name)
        if member:
            return InputFile(archive, member)
    raise DataFileError(f"{name} not found in {raw_dir}: expected {name}, {name}.gz or {RELEASE_ZIP} "
                        f"holding LF-Amazon-1.3M/{name}.gz")


def _zip_member(archive: Path, name: str) -> str | None:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile as exc:
        raise DataFileError(f"{archive} is not a readable zip file ({exc})") from None
    for wanted in (name, f"{name}.gz"):
        for member in names:
            if member == wanted or member.endswith("/" + wanted):
                return member
    return None


def _open_binary(source: InputFile) -> tuple[IO[bytes], list[IO[Any]]]:
    """Open the raw byte stream (decompressing .gz, in or out of the zip); returns (stream, to_close)."""
    if not source.path.is_file():
        raise DataFileError(f"{source.path} does not exist")
    closers: list[IO[Any]] = []
    try:
        return _open_stream(source, closers)
    except OSError as exc:
        for handle in closers:
            handle.close()
        raise DataFileError(f"{source.path} cannot be read ({exc.strerror or exc}): check that it exists and that "
                            "you may read it") from None


def _open_stream(source: InputFile, closers: list[IO[Any]]) -> tuple[IO[bytes], list[IO[Any]]]:
    if source.member is not None:
        zf = zipfile.ZipFile(source.path)
        if source.member not in zf.namelist():
            members = ", ".join(zf.namelist()[:10])
            zf.close()
            raise DataFileError(f"{source.path} has no member {source.member!r}; it holds: {members}")
        stream: IO[bytes] = zf.open(source.member)
        closers += [stream, zf]  # type: ignore[list-item]
        name = source.member
    else:
        stream = open(source.path, "rb")
        closers.append(stream)
        name = source.path.name
    if name.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        closers.insert(0, stream)
    return stream, closers


BLOCK_BYTES = 4 << 20
WRITE_BUFFER = 4 << 20  # large buffers: a million small writes cost seconds with the default 8 KB


def iter_blocks(source: InputFile) -> Iterator[tuple[int, bytes]]:
    """Yield (number of the first line, a few MB of whole lines) through the file.

    A truncated or corrupt archive is an error naming the file and the last complete line.
    """
    stream, closers = _open_binary(source)
    line_no, tail = 1, b""
    try:
        while block := stream.read(BLOCK_BYTES):
            if line_no == 1 and not tail:
                _check_file_start(block, source)
                block = block.removeprefix(UTF8_BOM)
            block = tail + block
            cut = block.rfind(b"\n") + 1
            block, tail = block[:cut], block[cut:]
            if block:
                yield line_no, block
                line_no += block.count(b"\n")
        if tail:
            yield line_no, tail
    except (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile, OSError) as exc:
        raise DataFileError(f"{source.label} is truncated or corrupt after line {line_no - 1} ({exc}); "
                            "download or copy it again: a partial file would silently lose records") from None
    finally:
        for handle in closers:
            handle.close()


UTF8_BOM = b"\xef\xbb\xbf"  # dropped from the start of a file
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def _check_file_start(block: bytes, source: InputFile) -> None:
    """Refuse, with a clear message, files that are not UTF-8 JSON lines at all."""
    if block.startswith(_UTF16_32_BOMS) or block[:2].count(b"\x00"):
        raise DataFileError(f"{source.label} is UTF-16/UTF-32 encoded; AmazonTitles files are UTF-8 JSON lines. "
                            f"Convert it, e.g. `iconv -f UTF-16 -t UTF-8 in.json > out.json`")
    start = block.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"[") and not start.startswith(b'["') or start.startswith(b"[{"):
        raise DataFileError(f"{source.label}, line 1: the file is one JSON array, not JSON lines (one object "
                            "per line); convert it, e.g. `jq -c '.[]' in.json > out.json`")


def split_lines(block: bytes) -> list[bytes]:
    """The lines of a block of whole lines, without line ends (LF or CRLF)."""
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def iter_lines(source: InputFile) -> Iterator[tuple[int, bytes]]:
    """Yield (line number from 1, raw bytes without the line end)."""
    for first, block in iter_blocks(source):
        yield from enumerate(split_lines(block), start=first)


_TEXT_FIELDS = ("uid", "title", "content")


def parse_line(raw: bytes, source: InputFile, line_no: int) -> RawRecord | LineProblem:
    """Decode one JSON line into a RawRecord, or describe what is wrong with it."""
    try:
        obj = orjson.loads(raw)  # the whole line: invalid JSON anywhere in it makes it malformed
    except orjson.JSONDecodeError:
        return _parse_line_slowly(raw, source, line_no)
    return _check_fields(obj, source, line_no)


def _parse_line_slowly(raw: bytes, source: InputFile, line_no: int) -> RawRecord | LineProblem:
    """The same parse with the standard library, to tell bad encoding from bad JSON."""
    label = source.label
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineProblem(label, line_no, DropReason.BAD_ENCODING, None,
                           f"not valid UTF-8 at byte {exc.start}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return LineProblem(label, line_no, DropReason.MALFORMED_JSON, None, f"invalid JSON ({exc.msg})")
    checked = _check_fields(obj, source, line_no)
    if isinstance(checked, RawRecord):
        # json accepts an escaped lone surrogate ("\ud800"), which no UTF-8 output can hold (orjson refuses it).
        for name, value in zip(_TEXT_FIELDS, checked):
            surrogate = None if value.isascii() else next((c for c in value if "\ud800" <= c <= "\udfff"), None)
            if surrogate:
                return LineProblem(label, line_no, DropReason.BAD_ENCODING, name,
                                   f"a lone surrogate (\\u{ord(surrogate):04x}) is not a character")
    return checked


def _check_fields(obj: Any, source: InputFile, line_no: int) -> RawRecord | LineProblem:
    if type(obj) is dict:
        uid, title, content = obj.get("uid"), obj.get("title"), obj.get("content")
        if type(uid) is str and type(title) is str and type(content) is str and uid.strip():  # the usual case
            return RawRecord(uid, title, content)
    label = source.label
    if not isinstance(obj, dict):
        return LineProblem(label, line_no, DropReason.NOT_AN_OBJECT, None,
                           f"expected a JSON object, got a JSON {type(obj).__name__}")
    for name in _TEXT_FIELDS:
        if name not in obj:
            return LineProblem(label, line_no, DropReason.MISSING_FIELD, name, "missing")
        if not isinstance(obj[name], str):
            return LineProblem(label, line_no, DropReason.WRONG_TYPE, name,
                               f"expected a string, got {json.dumps(obj[name])[:40]}")
    if not obj["uid"].strip():  # a record needs an id: splits, duplicates and leakage checks go by it
        return LineProblem(label, line_no, DropReason.MISSING_FIELD, "uid", "empty")
    return RawRecord(obj["uid"], obj["title"], obj["content"])


def read_records(source: InputFile, tally: Tally, strict: bool = False) -> Iterator[RawRecord]:
    """Stream well-formed records; malformed lines are counted in `tally` (or raise in strict mode)."""
    for line_no, raw in iter_lines(source):
        tally.lines = line_no
        if not raw.strip():
            continue
        parsed = parse_line(raw, source, line_no)
        if isinstance(parsed, LineProblem):
            if strict:
                raise MalformedLineError(parsed)
            tally.problem(parsed)
            continue
        yield parsed


# ---------------------------------------------------------------- cleaning

# HTML only: comments, <script>/<style> with their contents, and tags of known HTML element names. Other text
# between < and > stays ("x<y and y>z", "Press <Enter> to continue").
_HTML_ELEMENTS = """a abbr acronym address area article aside audio b base basefont bdi bdo big blink blockquote
    body br button canvas caption center cite code col colgroup data datalist dd del details dfn dialog dir div dl
    dt em embed fieldset figcaption figure font footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr
    html i iframe img input ins kbd label legend li link main map mark marquee menu meta meter nav nobr noframes
    noscript object ol optgroup option output p param picture pre progress q rp rt ruby s samp section select small
    source span strike strong sub summary sup table tbody td template textarea tfoot th thead time title tr track tt
    u ul var video wbr""".split()
_TAG = re.compile(r"<!--.{0,2000}?-->|<(script|style)\b[^>]{0,300}>.{0,2000}?</\1\s*>|</?(?:" + "|".join(_HTML_ELEMENTS)
                  + r")(?=[\s/>])[^<>]{0,300}>", re.IGNORECASE | re.DOTALL)
# (?<!\s): a match starts where a run of blanks starts, not at each blank of it, so a long run of blanks is not
# quadratic; the leftmost match, and so the result, is the same.
_BOILERPLATE = re.compile(r"(?<!\s)\s*-{1,2}\s*This text refers to[^.]{0,200}\.", re.IGNORECASE)
_BOILERPLATE_PHRASE = re.compile("this text refers to", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\ufeff]")
# "features.Great" -> "features. Great": a sentence glued to the next where a tag was stripped upstream.
# Cheap searches that start with a literal find candidates; the substitution runs only then.
_GLUE_DOT, _GLUE_BANG, _GLUE_QUESTION = (re.compile(re.escape(stop) + "(?=[A-Z][a-z])").search for stop in ".!?")
_GLUED = re.compile(r"(?<=[a-z][.!?])(?=[A-Z][a-z])")
_ENTITY = re.compile(r"&(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z]+\d*);")


def _strip_boilerplate(text: str) -> str:
    """_BOILERPLATE.sub(" ", text), tried only from the phrase on: the pattern has no literal start, so it
    would be tried at every position. Every match holds the phrase, so matching starts where the blanks and
    dashes before its first occurrence start (the character before that is neither, as the lookbehind needs)."""
    # For ASCII text, case-insensitive means ASCII lowercase; otherwise ask the regex (it also folds ſ, K...).
    if text.isascii():
        first = text.lower().find("this text refers to")
    else:
        found = _BOILERPLATE_PHRASE.search(text)
        first = found.start() if found else -1
    if first < 0:
        return text
    start = first
    while start and (text[start - 1] == "-" or text[start - 1].isspace()):
        start -= 1
    return text[:start] + _BOILERPLATE.sub(" ", text[start:])


def clean_text(text: str) -> str:
    """Unescape entities (before any filtering), strip tags and boilerplate, normalise whitespace.

    Case and punctuation are kept: the targets must read like real descriptions.
    """
    if "&" in text:
        # Twice: the dump double-escapes some entities ("&amp;#8217;").
        text = html.unescape(text)
        if "&" in text and _ENTITY.search(text):
            text = html.unescape(text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "his text refers to" in text:
        text = _strip_boilerplate(text)
    if (("." in text and _GLUE_DOT(text)) or ("!" in text and _GLUE_BANG(text))
            or ("?" in text and _GLUE_QUESTION(text))):
        text = _GLUED.sub(" ", text)
    if text.isprintable():  # no control or zero-width characters, no whitespace but plain spaces
        return " ".join(text.split()) if "  " in text else text.strip()
    return " ".join(_CONTROL.sub(" ", text).split())


_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*")


def cut_at_sentence(text: str, limit: int) -> str | None:
    """The text up to its last sentence end within `limit` characters (a stop, then a blank or the text's end),
    or None when no sentence ends there: a cut description still ends a sentence, so EOS teaches a clean stop."""
    last = None
    for match in _SENTENCE_END.finditer(text, 0, limit):
        end = match.end()
        if end <= limit and (end == len(text) or text[end].isspace()):
            last = end
    return text[:last] if last else None


@dataclass(frozen=True)
class CleanRules:
    """The length limits a kept record must meet (from Config), and what happens to a description over the
    limit: "drop" the record, or "cut" it at its last sentence end within the limit."""

    min_title_chars: int = 3
    min_content_chars: int = 40
    max_content_chars: int = 2000
    long_content: str = "cut"

    @classmethod
    def from_config(cls, config: Config) -> "CleanRules":
        return cls(config.min_title_chars, config.min_content_chars, config.max_content_chars, config.long_content)


# Cleaning a text changes its length only near what it rewrites: an entity (<= 34 characters), a tag
# (<= 302), a comment or script (<= 2,320), the boilerplate (~225 once whitespace is collapsed). So the cleaned
# first N characters of a text, less this margin, are never longer than the cleaned whole text.
_CUT_MARGIN = 2500


def clean_record(record: RawRecord, rules: CleanRules) -> RawRecord | DropReason:
    """A cleaned copy of the record, or the reason it must be dropped."""
    uid, raw_title, raw_content = record.uid, record.title, record.content
    # `not s or s.isspace()`: the same test as `not s.strip()`, without copying a long content.
    if not raw_title or raw_title.isspace():
        return (DropReason.EMPTY_TITLE_AND_CONTENT if not raw_content or raw_content.isspace()
                else DropReason.EMPTY_TITLE)
    if not raw_content or raw_content.isspace():
        return DropReason.EMPTY_CONTENT
    title = clean_text(raw_title)
    if not title:
        content_left = clean_text(raw_content)
        return DropReason.EMPTY_TITLE_AND_CONTENT if not content_left else DropReason.EMPTY_TITLE
    if len(title) < rules.min_title_chars:
        return DropReason.SHORT_TITLE
    # A very long content (the dump has some near 200,000 characters) is judged on its start when that is
    # already too long: it then cannot be short or equal the title either.
    head_chars = rules.max_content_chars + 2 * _CUT_MARGIN
    content = None
    if len(raw_content) > head_chars:
        cleaned_head = clean_text(raw_content[:head_chars])
        head = len(cleaned_head) - _CUT_MARGIN
        if head > rules.max_content_chars and head > 3 * len(title):
            if rules.long_content == "drop":
                return DropReason.LONG_CONTENT
            content = cleaned_head  # cleaning is local: its first max_content_chars are the whole text's
    content = clean_text(raw_content) if content is None else content
    if not content:
        return DropReason.EMPTY_CONTENT
    # casefold() never shortens a string and lengthens one at most 3x, so a content more than 3x
    # longer than the title cannot equal it.
    if len(content) <= 3 * len(title) and content.casefold() == title.casefold():
        return DropReason.CONTENT_EQUALS_TITLE
    if len(content) < rules.min_content_chars:
        return DropReason.SHORT_CONTENT
    if len(content) > rules.max_content_chars:
        cut = cut_at_sentence(content, rules.max_content_chars) if rules.long_content == "cut" else None
        if cut is None or len(cut) < rules.min_content_chars:
            return DropReason.LONG_CONTENT
        return RawRecord(uid.strip(), title, cut, cut=True)
    return RawRecord(uid.strip(), title, content)


# ---------------------------------------------------------------- keys

def _key64(*parts: str) -> int:
    """BLAKE2b-64 of the parts joined by NUL, read big-endian: a key that is the same on every machine."""
    return int.from_bytes(hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=8).digest(), "big")


def _hash64(text: str) -> int:
    """A text's key within a run (duplicate records and titles): BLAKE2b-64 of its UTF-8 bytes."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def split_of(uid: str, val_fraction: float) -> str:
    """"train" or "val", from the uid alone: a record never moves between splits on a rerun or a new seed."""
    return "val" if _key64("split", uid) / 2**64 < val_fraction else "train"


def sample_key(uid: str, seed: int) -> int:
    """Order in which records are sampled: the first N by this key form a seeded, stable sample."""
    return _key64(str(seed), uid)


# What is kept in memory of each clean record while its file is read (its output row waits on disk).
RECORD_KEYS = np.dtype([
    ("record_key", "<u8"),  # title and content: duplicate records
    ("uid_key", "<u8"),  # duplicate uids, test uids seen in train; also the split key (split_of)
    ("title_key", "<u8"),  # NFC, case-folded title: duplicate titles, test titles seen in train
    ("content_key", "<u8"),  # test descriptions seen in train
    ("sample_key", "<u8"),  # sample order (sample_key)
    ("title_chars", "<u8"),
    ("content_chars", "<u8"),
    ("row_bytes", "<u8"),  # length of the output row
])


def record_keys(record: RawRecord, seed_text: str, row_bytes: int) -> tuple[int, ...]:
    """A clean record's RECORD_KEYS row."""
    uid, title, content = record.uid, record.title, record.content
    return (_hash64(f"{title}\x00{content}"), _key64("split", uid), _hash64(title_for_matching(title)),
            _hash64(content), _key64(seed_text, uid), len(title), len(content), row_bytes)


def title_for_matching(title: str) -> str:
    """Titles that read the same are one title: Unicode NFC (composed accents), then case folding."""
    return unicodedata.normalize("NFC", title).casefold()


# ---------------------------------------------------------------- cleaning a file, block by block

PARALLEL_MIN_BYTES = 32 << 20  # smaller inputs are cleaned in-process: starting workers costs more


@dataclass(frozen=True)
class CleanJob:
    """What cleaning one file's blocks needs (sent once per block to a worker)."""

    source: InputFile
    rules: CleanRules
    seed: int
    language: str


@dataclass
class BlockResult:
    """What cleaning one block of lines gave, in columns (an array and one bytes object pickle far faster
    than a million small objects): the kept records' keys and output rows, drop counts, the first problems.
    Line numbers count from the block's `first_line`."""

    last_line: int
    bytes_read: int
    keys: np.ndarray  # RECORD_KEYS, one per kept record
    rows: bytes  # the kept records as output JSONL rows (`to_example`), one a line; b"" once spooled
    drops: Counter
    problems: list[LineProblem]
    spool: tuple[Path, int] | None = None  # where a worker wrote the rows instead: its spool file, offset
    cut: int = 0  # kept records whose description was cut at a sentence end (long_content="cut")

    def shifted(self, lines: int) -> "BlockResult":
        """The same result with line numbers `lines` further on (a block cleaned without knowing where it
        starts in the file)."""
        if lines:
            self.last_line += lines
            self.problems = [replace(p, line=p.line + lines) for p in self.problems]
        return self


def clean_block(first_line: int, block: bytes, job: CleanJob, max_problems: int = 20) -> BlockResult:
    """Parse and clean a block of whole lines: parse_line, then clean_record, one line at a time."""
    drops: Counter = Counter()
    problems: list[LineProblem] = []
    keys: list[tuple[int, ...]] = []
    rows: list[bytes] = []
    cut = 0
    seed_text, language, source, rules = str(job.seed), job.language, job.source, job.rules
    lines = split_lines(block)
    for line_no, raw in enumerate(lines, start=first_line):
        if not raw or raw.isspace():
            continue
        parsed = parse_line(raw, source, line_no)
        if isinstance(parsed, LineProblem):
            drops[parsed.reason] += 1
            if len(problems) < max_problems:
                problems.append(parsed)
            continue
        record = clean_record(parsed, rules)
        if isinstance(record, DropReason):
            drops[record] += 1
            continue
        row = orjson.dumps(to_example(record, language)) + b"\n"
        cut += record.cut
        keys.append(record_keys(record, seed_text, len(row)))
        rows.append(row)
    return BlockResult(first_line + len(lines) - 1, len(block), np.array(keys, dtype=RECORD_KEYS), b"".join(rows),
                       drops, problems, cut=cut)


def read_whole_lines(path: Path, start: int, end: int) -> bytes:
    """The lines of a plain file that begin at a byte in [start, end), with their line ends.

    Cutting a file at fixed offsets and giving each line to the range its first byte falls in lets
    workers read a plain file themselves, in parallel, with no line lost or read twice."""
    with open(path, "rb") as handle:
        if start:
            handle.seek(start - 1)
            handle.readline()  # the line holding byte start - 1 belongs to the range before
        begin = handle.tell()
        if begin >= end:
            return b""
        block = handle.read(end - begin)
        if not block.endswith(b"\n"):
            block += handle.readline()  # finish the last line
    return block.removeprefix(UTF8_BOM) if start == 0 else block


def clean_range(start: int, end: int, job: CleanJob) -> BlockResult:
    """clean_block on the lines starting in [start, end) of a plain file, numbered from 1 (the caller
    shifts them once the lines before are counted)."""
    result = clean_block(1, read_whole_lines(job.source.path, start, end), job)
    result.bytes_read = end - start
    return result


_SPOOLS: dict[Path, int] = {}  # in a worker process: its spool files, open


def _clean_in_worker(function: Callable[..., BlockResult], args: tuple[Any, ...], spool: Path) -> BlockResult:
    """Run a cleaning task in a worker process and write the block's rows to this process's spool file
    (`spool` with the process id appended): the main process gets only where they are, so a 1 GB output
    does not go through the pipe and the main process, which is busy already."""
    result = function(*args)
    if result.rows:
        path = spool.with_name(f"{spool.name}.{os.getpid()}")
        if path not in _SPOOLS:
            _SPOOLS[path] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd = _SPOOLS[path]
        offset, rows = os.lseek(fd, 0, os.SEEK_CUR), memoryview(result.rows)
        while rows:
            rows = rows[os.write(fd, rows):]
        result.rows, result.spool = b"", (path, offset)
    return result


def _input_bytes(source: InputFile) -> int:
    return source.path.stat().st_size if source.path.is_file() else 0


def _cleaned_blocks(job: CleanJob, workers: int, spool: Path) -> Iterator[BlockResult]:
    """Blocks cleaned in file order, by `workers` forked processes for large files; at most 2 blocks a
    worker in flight, so memory stays bounded however large the file is. Workers read a plain file
    themselves (the main process only cuts it into byte ranges; a compressed one is decompressed here)
    and write their rows to spool files named after `spool` (see _clean_in_worker)."""
    source, size = job.source, _input_bytes(job.source)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods() or size < PARALLEL_MIN_BYTES:
        for first, block in iter_blocks(source):
            yield clean_block(first, block, job)
        return
    # Every worker numbers its lines from 1; results are shifted here, in file order.
    tasks: Iterable[tuple[Callable[..., BlockResult], tuple[Any, ...]]]
    if source.member is None and not source.path.name.endswith(".gz"):
        with open(source.path, "rb") as handle:
            _check_file_start(handle.read(BLOCK_BYTES), source)
        tasks = ((clean_range, (start, min(start + BLOCK_BYTES, size), job)) for start in range(0, size, BLOCK_BYTES))
    else:
        tasks = ((clean_block, (1, block, job)) for _, block in iter_blocks(source))
    lines_before = 0
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending: deque[Any] = deque()

        def oldest() -> BlockResult:
            nonlocal lines_before
            result = pending.popleft().get().shifted(lines_before)
            lines_before = result.last_line
            return result

        for function, args in tasks:
            pending.append(pool.apply_async(_clean_in_worker, (function, args, spool)))
            while pending and (len(pending) >= 2 * workers or pending[0].ready()):
                yield oldest()
        while pending:
            yield oldest()


class KeptRecords:
    """One input file's records that survived cleaning, duplicates included (`unique` finds them once the
    whole file is read). Their output rows wait in scratch files (a full 1.9 GB train file never sits in
    memory): `path` for blocks cleaned in this process, the workers' spool files for theirs. In memory:
    each record's RECORD_KEYS and where its row is."""

    def __init__(self, path: Path):
        self.path = path
        self.handle: IO[bytes] | None = open(path, "wb", buffering=WRITE_BUFFER)
        self.files = [path]  # where rows are: this process's file, then the workers' spool files
        self._blocks: list[tuple[np.ndarray, int, int]] = []  # keys, file, offset of the first row
        self._keys = np.zeros(0, dtype=RECORD_KEYS)
        self.file_of = np.zeros(0, dtype=np.uint16)
        self.starts = np.zeros(0, dtype=np.uint64)

    def add(self, block: BlockResult) -> None:
        """Append the block's records (duplicates too: `unique` decides once the whole file is read)."""
        if self.handle is None or not len(block.keys):
            return
        if block.spool is None:
            file, start = 0, self.handle.tell()
            self.handle.write(block.rows)
        else:
            path, start = block.spool
            if path not in self.files:
                self.files.append(path)
            file = self.files.index(path)
        self._blocks.append((block.keys, file, start))

    def finish(self) -> None:
        """Close this process's scratch file and gather the keys into one array."""
        if self.handle is None:
            return
        self.handle.close()
        self.handle = None
        if self._blocks:
            self._keys = np.concatenate([keys for keys, _, _ in self._blocks])
            ends = [start + np.cumsum(keys["row_bytes"], dtype=np.uint64) for keys, _, start in self._blocks]
            self.starts = np.concatenate([end - keys["row_bytes"] for end, (keys, _, _) in zip(ends, self._blocks)])
            self.file_of = np.concatenate([np.full(len(keys), file, dtype=np.uint16) for keys, file, _ in self._blocks])
        self._blocks = []

    @property
    def keys(self) -> np.ndarray:
        self.finish()
        return self._keys

    def longest_per_title(self, among: np.ndarray) -> np.ndarray:
        """Mask of the records `among` (a mask) that have the longest content of their title (the first
        such, on ties)."""
        indices = np.flatnonzero(among)
        titles = self.keys["title_key"][indices]
        chars = self.keys["content_chars"][indices].astype(np.int64)
        order = np.lexsort((-chars, titles))  # stable: ties stay in file order
        first = np.ones(len(titles), dtype=bool)
        first[1:] = titles[order[1:]] != titles[order[:-1]]
        mask = np.zeros(len(among), dtype=bool)
        mask[indices[order[first]]] = True
        return mask

    def unique(self, tally: Tally, banned: Sequence[tuple[str, np.ndarray, DropReason]] = ()) -> np.ndarray:
        """Mask of the records to keep. A record is dropped (and counted) when a record kept before it has the
        same title and content (duplicate_record) or the same uid (duplicate_uid), or when its key in a column
        of `banned` is among that entry's keys (sorted, repeats allowed: the test file's uids, titles and
        descriptions seen in train). Records whose two keys occur once in the file are decided at once; the
        others one by one, in file order."""
        records, uids = self.keys["record_key"], self.keys["uid_key"]
        suspect = np.zeros(len(records), dtype=bool)
        for keys in (records, uids):
            _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
            suspect |= counts[inverse] > 1
        banned_by = np.full(len(records), -1)  # which `banned` entry a record meets first
        for index, (column, keys, _) in enumerate(banned):
            if len(keys):
                mine = self.keys[column]
                found = keys[np.minimum(np.searchsorted(keys, mine), len(keys) - 1)] == mine
                banned_by[found & (banned_by < 0)] = index
        keep = ~suspect & (banned_by < 0)
        for index, (_, _, reason) in enumerate(banned):
            if count := int((~suspect & (banned_by == index)).sum()):
                tally.drops[reason.value] += count
        seen_records: set[int] = set()
        seen_uids: set[int] = set()
        suspects = np.flatnonzero(suspect)
        for i, record, uid in zip(suspects.tolist(), records[suspects].tolist(), uids[suspects].tolist()):
            if record in seen_records:
                tally.drop(DropReason.DUPLICATE_RECORD)
            elif uid in seen_uids:
                tally.drop(DropReason.DUPLICATE_UID)
            elif banned_by[i] >= 0:
                tally.drop(banned[banned_by[i]][2])
            else:
                seen_records.add(record)
                seen_uids.add(uid)
                keep[i] = True
        return keep

    def choose(self, candidates: np.ndarray, limit: int) -> np.ndarray:
        """Which candidates to write and in what order: all in file order (limit 0), or the `limit` with
        the smallest sample key, in sample-key order (a seeded sample that stays the same on a rerun)."""
        if not limit:
            return candidates
        keys = self.keys["sample_key"][candidates]
        if len(candidates) > limit:
            first = np.argpartition(keys, limit - 1)[:limit]
            candidates, keys = candidates[first], keys[first]
        return candidates[np.lexsort((candidates, keys))]

    def copy_rows(self, indices: np.ndarray, out: IO[bytes]) -> None:
        """Write the rows at `indices`, in that order; rows that follow each other in the same file are
        copied as one range."""
        if not len(indices):
            return
        files = self.file_of[indices]
        starts = self.starts[indices]
        ends = starts + self.keys["row_bytes"][indices]
        firsts = np.flatnonzero(np.concatenate(([True], (files[1:] != files[:-1]) | (starts[1:] != ends[:-1]))))
        lasts = np.append(firsts[1:] - 1, len(indices) - 1)
        # In file order, read a few MB of a file at a time and write what it holds of the rows at once; a
        # sample (random order) is read row by row.
        in_order = bool(np.all(np.diff(indices) > 0))
        windows: dict[int, tuple[int, memoryview]] = {}  # per file: where its window starts, and its bytes
        pieces: list[memoryview] = []
        with ExitStack() as stack:
            fds = [stack.enter_context(open(path, "rb")).fileno() for path in self.files]
            for file, start, end in zip(files[firsts].tolist(), starts[firsts].tolist(), ends[lasts].tolist()):
                window_start, window = windows.get(file, (0, memoryview(b"")))
                if end - window_start > len(window) or start < window_start:
                    out.write(b"".join(pieces))
                    size = max(end - start, WRITE_BUFFER) if in_order else end - start
                    window_start, window, pieces = start, memoryview(os.pread(fds[file], size, start)), []
                    windows[file] = window_start, window
                pieces.append(window[start - window_start:end - window_start])
            out.write(b"".join(pieces))

    def rows(self, indices: np.ndarray) -> Iterator[tuple[int, bytes]]:
        """(index, row) for the records at `indices`, in that order."""
        row_bytes = self.keys["row_bytes"]
        with ExitStack() as stack:
            fds = [stack.enter_context(open(path, "rb")).fileno() for path in self.files]
            for i in indices.tolist():
                yield i, os.pread(fds[self.file_of[i]], int(row_bytes[i]), int(self.starts[i]))


def _collect(job: CleanJob, strict: bool, tally: Tally, workers: int, kept: KeptRecords, progress: bool) -> None:
    """Clean one file into `kept` (duplicates are dropped afterwards, by `kept.unique`).

    Drops and malformed lines are counted in `tally` (strict mode raises at the first malformed line).
    """
    from tqdm.auto import tqdm

    size = _input_bytes(job.source)
    plain = job.source.member is None and not job.source.path.name.endswith(".gz")
    # Bytes of the plain file, or of the decompressed text of a .gz or zip member (its size is not known ahead).
    with tqdm(total=size if plain else None, unit="B", unit_scale=True, disable=not progress, mininterval=1.0,
              desc=f"cleaning {job.source.member or job.source.path.name}") as bar:
        for block in _cleaned_blocks(job, workers, kept.path):
            if strict and block.problems:
                raise MalformedLineError(block.problems[0])
            for reason, count in block.drops.items():
                tally.drops[reason.value] += count
            tally.problems.extend(block.problems[: max(0, tally.max_problems - len(tally.problems))])
            tally.lines = block.last_line
            if tally.cut is not None:
                tally.cut += block.cut
            kept.add(block)
            bar.update(block.bytes_read)


def _require_records(tally: Tally, kept: int) -> None:
    """An input that yields no record at all is an error that says why, not an empty success."""
    if tally.lines == 0:
        raise DataFileError(f"{tally.label} is empty")
    if kept == 0:
        first = f"; first problem: {tally.problems[0]}" if tally.problems else ""
        reasons = ", ".join(f"{n} {r}" for r, n in tally.drops.most_common())
        raise DataFileError(f"{tally.label}: no usable record in {tally.lines} lines ({reasons}){first}")


@dataclass
class WrittenSplit:
    """Which kept records a split file holds, and how many were left out for the token limit."""

    indices: np.ndarray  # into the file's KeptRecords
    too_long: int = 0

    @property
    def count(self) -> int:
        return len(self.indices)


def _write_split(path: Path, kept: KeptRecords, chosen: np.ndarray, limit: int, max_tokens: int,
                 count_tokens: Callable[[str], int] | None) -> WrittenSplit:
    """Write the first `limit` chosen records (all if 0) whose content fits the token limit, atomically; only
    the records checked against the limit are counted as too long."""
    with atomic_open(path, "wb", buffering=WRITE_BUFFER) as handle:
        if not max_tokens or count_tokens is None:
            written = WrittenSplit(chosen[:limit] if limit else chosen)
            kept.copy_rows(written.indices, handle)
            return written
        indices, too_long = [], 0
        for index, row in kept.rows(chosen):
            if limit and len(indices) >= limit:
                break
            if count_tokens(orjson.loads(row)["output"]) > max_tokens:
                too_long += 1
                continue
            handle.write(row)
            indices.append(index)
    return WrittenSplit(np.array(indices, dtype=np.int64), too_long)


def to_example(record: RawRecord, language: str) -> dict[str, str]:
    """The JSONL row: the seed's instruction/input/output fields plus the uid."""
    return {"uid": record.uid, "instruction": INSTRUCTIONS[language], "input": record.title,
            "output": record.content}


def _percentiles(arr: np.ndarray) -> dict[str, float]:
    if arr.size == 0:
        return {}
    pct = np.percentile(arr, [5, 50, 95])
    return {"min": int(arr.min()), "p5": float(pct[0]), "p50": float(pct[1]), "p95": float(pct[2]),
            "max": int(arr.max()), "mean": round(float(arr.mean()), 1)}


@dataclass
class PreprocessResult:
    """Where the splits are and what happened; `reused` is True when finished outputs were kept."""

    paths: dict[str, Path]
    summary: dict[str, Any]
    reused: bool = False

    def drops_table(self) -> "Any":
        """Drops by reason and file, as a pandas DataFrame (rows: reasons; columns: files)."""
        import pandas as pd

        frame = pd.DataFrame({t["file"]: t["drops"] for t in self.summary["files"].values()}).fillna(0)
        return frame.astype(int).sort_index()


def preprocess_key(config: Config, train: InputFile, test: InputFile, max_tokens_model: str | None) -> str:
    """Hash of the settings and inputs that decide the output, to reuse finished work safely."""
    settings = {name: getattr(config, name) for name in (
        "min_title_chars", "min_content_chars", "max_content_chars", "long_content", "max_content_tokens", "dedup_titles",
        "strict", "val_fraction", "train_samples", "val_samples", "test_samples", "seed", "language")}
    inputs = [{**file_identity(f.path), "member": f.member} for f in (train, test)]
    return stable_hash({"version": PREPROCESS_VERSION, "settings": settings, "inputs": inputs,
                        "tokenizer": max_tokens_model})


def scratch_folder() -> Path:
    """Where temporary rows go: the local disk (TITLEGEN_SCRATCH, else the system's temporary folder), never
    the work folder, which on Colab is Drive and would upload and delete a gigabyte of scratch."""
    import tempfile

    return Path(os.environ.get("TITLEGEN_SCRATCH") or tempfile.gettempdir())


MANIFEST = "manifest.json"  # written last into a finished data folder: what it holds, and for which settings
SCRATCH_PREFIX = "titlegen-preprocess-"


def prepared_folder_state(out_dir: Path, key: str) -> str | None:
    """None when `out_dir` is a finished build for `key` whose files are the ones its manifest lists (sizes and
    sha256); otherwise why it cannot be reused."""
    manifest_path = out_dir / MANIFEST
    if not out_dir.is_dir():
        return "no prepared data yet"
    if not manifest_path.is_file():
        return f"{manifest_path} is missing (an unfinished build, or one made before manifests)"
    try:
        manifest = read_json(manifest_path)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError, OSError):
        return f"{manifest_path} is damaged"
    if manifest.get("key") != key:
        return "the settings or the input files changed"
    for name, expected in files.items():
        path = out_dir / name
        if not path.is_file() or path.stat().st_size != expected.get("bytes"):
            return f"{path} is missing or not the size its manifest records"
        if file_sha256(path) != expected.get("sha256"):
            return f"{path} does not match the sha256 its manifest records"
    return None


def _switch_in(build: Path, target: Path) -> None:
    """Put a finished build in `target`'s place as a whole: old and new files are never mixed. A kill between
    the two renames leaves no `target` (rebuilt next time), never a mixed one."""
    old = build.with_name(build.name.replace(".build-", ".old-"))
    if target.exists():
        os.replace(target, old)
    os.replace(build, target)
    shutil.rmtree(old, ignore_errors=True)


def _remove_dead_scratch() -> None:
    """Scratch folders of preprocess runs that were killed (their process is gone)."""
    from titlegen_lib.storage import _alive

    for folder in scratch_folder().glob(f"{SCRATCH_PREFIX}*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def preprocess_files(
    train_source: InputFile,
    test_source: InputFile,
    config: Config,
    out_dir: str | Path,
    count_tokens: Callable[[str], int] | None = None,
    tokenizer_name: str | None = None,
    force: bool = False,
    extra: dict[str, Any] | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> PreprocessResult:
    """Clean the train and test files and write train/val/test JSONL, summary.json and, last, manifest.json
    into `out_dir`.

    `count_tokens` (e.g. the model tokenizer's length) enables `config.max_content_tokens`. A finished folder
    whose manifest matches the settings, the inputs and its own files is reused unless `force`; anything else
    is rebuilt (saying why) in a private folder that replaces `out_dir` as a whole once complete. One process
    at a time preprocesses into a folder: a second stops with an error naming the first. `extra` is stored in
    the summary as given (e.g. whether the inputs are synthetic).
    """
    out_dir = Path(out_dir)
    key = preprocess_key(config, train_source, test_source, tokenizer_name if count_tokens else None)
    paths = {split: out_dir / f"{split}.jsonl" for split in SPLITS}
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(out_dir.parent / f".{out_dir.name}.lock", f"preprocessing into {out_dir}"):
            # Nothing else writes here now: builds and old folders of killed runs are only leftovers.
            remove_leftovers(out_dir.parent, (f".{out_dir.name}.build-*", f".{out_dir.name}.old-*"))
            _remove_dead_scratch()
            why = prepared_folder_state(out_dir, key)
            if why is None and not force:
                return PreprocessResult(paths, read_json(out_dir / "summary.json"), reused=True)
            if out_dir.exists():
                print(f"[titlegen] rebuilding {out_dir}: {'asked to (force)' if why is None else why}")
            summary = _build_and_switch_in(out_dir, lambda build: _build(
                train_source, test_source, config, build, key, count_tokens, tokenizer_name, extra, workers, progress))
    except PermissionError as exc:
        raise DataFileError(f"cannot write in {exc.filename or out_dir.parent} ({exc.strerror}): set work_dir to "
                            "a folder you can write to") from None
    return PreprocessResult(paths, summary)


def _build_and_switch_in(out_dir: Path, build_into: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run `build_into` on a private folder and switch it in whole; on any failure the private folder goes and
    `out_dir` stays as it was (a full disk or an unwritable folder is one error that says so)."""
    build = out_dir.parent / f".{out_dir.name}.build-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        summary = build_into(build)
        _switch_in(build, out_dir)
        return summary
    except OSError as exc:
        shutil.rmtree(build, ignore_errors=True)
        where = exc.filename or build
        if exc.errno == errno.ENOSPC:
            raise DataFileError(f"the disk is full ({where}): free space, or set work_dir (and TITLEGEN_SCRATCH for "
                                f"scratch) to a disk with room; {out_dir} was left as it was") from None
        raise DataFileError(f"cannot write {where} ({exc.strerror}): check that work_dir is writable and has "
                            f"room; {out_dir} was left as it was") from None
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def _build(train_source: InputFile, test_source: InputFile, config: Config, build: Path, key: str,
           count_tokens: Callable[[str], int] | None, tokenizer_name: str | None, extra: dict[str, Any] | None,
           workers: int | None, progress: bool) -> dict[str, Any]:
    """The preprocess itself, into the private folder `build`: splits, summary.json, then manifest.json."""
    started = time.perf_counter()
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    rules = CleanRules.from_config(config)
    train_job, test_job = (CleanJob(source, rules, config.seed, config.language) for source in (train_source, test_source))
    train_tally, test_tally = Tally(train_source.label), Tally(test_source.label)
    if rules.long_content == "cut":
        train_tally.cut = test_tally.cut = 0
    paths = {split: build / f"{split}.jsonl" for split in SPLITS}
    build.mkdir(parents=True)
    # Clean the train file, learning the longest content for each title, then the test file (nothing the
    # model was trained on). Kept records wait in scratch files on the local disk; only keys stay in memory.
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=scratch_folder()))
    train_kept, test_kept = KeptRecords(scratch / "train.kept"), KeptRecords(scratch / "test.kept")
    try:
        _collect(train_job, config.strict, train_tally, workers, train_kept, progress)
        in_train = train_unique = train_kept.unique(train_tally)
        # One record per title (the longest content), split by uid, sample.
        if config.dedup_titles:
            in_train = train_kept.longest_per_title(train_unique)
            if duplicates := int(train_unique.sum() - in_train.sum()):
                train_tally.drops[DropReason.DUPLICATE_TITLE.value] += duplicates
        is_val = train_kept.keys["uid_key"] < np.uint64(int(config.val_fraction * 2**64))
        candidates = {"train": np.flatnonzero(in_train & ~is_val), "val": np.flatnonzero(in_train & is_val)}
        _require_records(train_tally, len(candidates["train"]) + len(candidates["val"]))

        _collect(test_job, config.strict, test_tally, workers, test_kept, progress)
        # No test record the model could have seen: its uid, title or description in train is a drop, counted.
        seen = [(column, np.sort(train_kept.keys[column][train_unique]), reason) for column, reason in (
            ("uid_key", DropReason.UID_IN_TRAIN), ("title_key", DropReason.TITLE_IN_TRAIN),
            ("content_key", DropReason.DESCRIPTION_IN_TRAIN))]
        candidates["test"] = np.flatnonzero(test_kept.unique(test_tally, seen))
        _require_records(test_tally, len(candidates["test"]))

        limits = {"train": config.train_samples, "val": config.val_samples, "test": config.test_samples}
        written, lengths = {}, {}
        for split in SPLITS:
            kept = test_kept if split == "test" else train_kept
            # With a token limit every candidate may be needed: they are checked in sample order until enough fit.
            wanted = len(candidates[split]) if count_tokens and config.max_content_tokens else limits[split]
            chosen = kept.choose(candidates[split], wanted if limits[split] else 0)
            written[split] = _write_split(paths[split], kept, chosen, limits[split],
                                          config.max_content_tokens, count_tokens)
            lengths[split] = {name: _percentiles(kept.keys[name][written[split].indices])
                              for name in ("title_chars", "content_chars")}
    finally:
        for kept in (train_kept, test_kept):
            kept.finish()
        shutil.rmtree(scratch, ignore_errors=True)
    for split, result in written.items():
        if result.too_long:
            (test_tally if split == "test" else train_tally).drops[DropReason.TOO_MANY_TOKENS.value] += result.too_long
    train_tally.kept = written["train"].count + written["val"].count
    test_tally.kept = written["test"].count
    available = {split: len(candidates[split]) for split in SPLITS}
    seconds = time.perf_counter() - started
    lines = train_tally.lines + test_tally.lines
    summary = {
        "key": key,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "files": {"train": train_tally.to_dict(), "test": test_tally.to_dict()},
        "available_after_cleaning": available,
        "written": {split: result.count for split, result in written.items()},
        # Clean records left out only because the split was sampled to train/val/test_samples.
        "not_sampled": {split: available[split] - result.count - result.too_long
                        for split, result in written.items()},
        "lengths": lengths,
        "seconds": round(seconds, 2),
        "lines_per_second": round(lines / seconds) if seconds else None,
        "settings": {"seed": config.seed, "val_fraction": config.val_fraction, "dedup_titles": config.dedup_titles,
                     "language": config.language, "tokenizer": tokenizer_name if count_tokens else None},
        **(extra or {}),
    }
    write_json(build / "summary.json", summary)
    files = [*(f"{split}.jsonl" for split in SPLITS), "summary.json"]
    write_json(build / MANIFEST, {
        "key": key, "inputs": [{**file_identity(f.path), "member": f.member} for f in (train_source, test_source)],
        "files": {name: {"bytes": (build / name).stat().st_size, "sha256": file_sha256(build / name)} for name in files},
    })
    return summary


def prepared_split(config: Config, split: str) -> Path:
    """The path of a split that preprocessing wrote, or an error saying which step to run first."""
    path = config.data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the preprocess step (notebook 01) first")
    return path


def load_split(path: str | Path) -> list[dict[str, str]]:
    """Read a JSONL split written by `preprocess_files` (small: a sampled split); a damaged one is an error that
    names the file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataFileError(f"{path}, line {number}: not a JSON row ({exc}); run the preprocess step "
                                    "(notebook 01) again") from None
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("uid", "input", "output")):
                raise DataFileError(f"{path}, line {number}: a row needs the strings uid, input and output; run the "
                                    "preprocess step (notebook 01) again")
            rows.append(row)
    return rows


def source_files(config: Config) -> tuple[InputFile, InputFile]:
    """The train and test inputs: the real files in raw_dir, or synthetic ones generated in the work dir."""
    if config.raw_dir:
        return find_input(config.raw_dir, config.train_file), find_input(config.raw_dir, config.test_file)
    from titlegen_lib.synthetic import write_synthetic_dataset

    folder = Path(config.work_dir) / "synthetic" / (
        f"n{config.synthetic_train_records}-{config.synthetic_test_records}-s{config.seed}")
    if not (folder / "trn.json").is_file() or not (folder / "tst.json").is_file():
        write_synthetic_dataset(folder, config.synthetic_train_records, config.synthetic_test_records,
                                seed=config.seed)
    return InputFile(folder / "trn.json"), InputFile(folder / "tst.json")


def preprocess(config: Config, tokenizer: Any = None, force: bool = False, progress: bool = True) -> PreprocessResult:
    """Clean the configured inputs into `config.data_dir`; a tokenizer enables max_content_tokens."""
    train, test = source_files(config)
    count_tokens = None
    if tokenizer is not None and config.max_content_tokens:
        def count_tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    name = getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None
    return preprocess_files(train, test, config, config.data_dir, count_tokens, name, force=force,
                            extra={"synthetic": not config.raw_dir}, progress=progress)

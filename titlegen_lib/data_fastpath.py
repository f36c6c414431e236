"""A compiled (numba) scan of a block of AmazonTitles lines that decides the common lines without Python.

Most lines of the dump are `{"uid":"…","title":"…","content":"…","target_ind":[…],"target_rel":[…]}`.
For those, this scan does what `data.clean_text` and `data.clean_record` do: JSON escapes, the HTML
character references it can be sure of (numeric ones and named ones ending in ";"), tags, the "This text
refers to" boilerplate, blanks and control characters; then the length rules (a long content judged on its
start, as clean_record judges it). It drops the record with its reason, or gives the spans of the kept
record's uid, title and content (in the block when cleaning only strips them, else in a buffer of cleaned
text); `kept_rows` then writes the kept records' output rows and computes their keys (data.record_keys, with
a compiled BLAKE2b), so Python touches only the other lines. Whatever the scan cannot be sure of (glued
sentences, text that could need a second unescape, other layouts, malformed lines) is left to the Python
path (`Line.PYTHON`), which stays the reference: tests check that both give the same output on every line.

The helpers are compiled without numba's reference counting (see _compiled). numba is optional: data.py
imports this module only when numba is installed and the input is large (compiling takes about 20 s the
first time on this 2-core machine; numba caches the result on disk), and cleans every line in Python
otherwise.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Callable, TypeVar

import numpy as np
from numba import njit  # data.py imports this module only when numba is installed (see fast_path_for)
from numba.core import cgutils, types
from numba.extending import intrinsic

from titlegen_lib.data import _CONTROL, _CUT_MARGIN

_F = TypeVar("_F", bound=Callable[..., Any])


def _compiled(function: _F) -> _F:
    """Compiled by numba at first call (later runs load it from numba's on-disk cache), without numba's
    reference counting (`_nrt=False`): these functions only read and write the arrays they are given, and
    counting references to every array argument on every call cost half the scan's time (the atomic
    NRT_incref/NRT_decref around each call of a small helper such as _utf8_char, in a per-byte loop)."""
    return njit(cache=True, nogil=True, _nrt=False)(function)  # type: ignore[no-any-return]


def _compiled_allocating(function: _F) -> _F:
    """As _compiled, with reference counting, for the functions that allocate arrays (_scan, _kept_rows)."""
    return njit(cache=True, nogil=True)(function)  # type: ignore[no-any-return]


class Line(IntEnum):
    """What the scan decided for a line. Codes from EMPTY_TITLE_AND_CONTENT on are drops (same names as
    data.DropReason)."""

    BLANK = 0
    PYTHON = 1  # left to the Python path
    KEEP = 2
    EMPTY_TITLE_AND_CONTENT = 3
    EMPTY_TITLE = 4
    EMPTY_CONTENT = 5
    SHORT_TITLE = 6
    CONTENT_EQUALS_TITLE = 7
    SHORT_CONTENT = 8
    LONG_CONTENT = 9


DROPS = [line for line in Line if line >= Line.EMPTY_TITLE_AND_CONTENT]
# The same codes as plain ints, for the compiled functions.
_BLANK, _PYTHON, _KEEP = int(Line.BLANK), int(Line.PYTHON), int(Line.KEEP)
_EMPTY_BOTH, _EMPTY_TITLE, _EMPTY_CONTENT = (int(Line.EMPTY_TITLE_AND_CONTENT), int(Line.EMPTY_TITLE),
                                              int(Line.EMPTY_CONTENT))
_SHORT_TITLE, _EQUALS, _SHORT_CONTENT, _LONG_CONTENT = (int(Line.SHORT_TITLE), int(Line.CONTENT_EQUALS_TITLE),
                                                        int(Line.SHORT_CONTENT), int(Line.LONG_CONTENT))
# Per line: uid start/end, title start/end, content start/end, then where the title and the content are
# (see TEXT_*), for kept records; the line's start/end (without its line end); last, for kept records, the
# title's and the content's characters.
SPAN_COLUMNS = 12
TEXT_IN_BLOCK, TEXT_IN_CLEANED, TEXT_IN_CLEANED_TO_ESCAPE = 0, 1, 2  # the last: holds a quote or backslash
# Per line, for kept records: data.record_keys' columns, then a flag: 1 when the title is not ASCII, so its
# case-folded key is left to Python (str.casefold).
KEY_COLUMNS = 9
TITLE_KEY_IN_PYTHON = 8
_HEAD_ONLY = 3  # a long content of which only the start was cleaned (data.clean_record's rule for those)

# Per byte: 0 a character with no meaning for cleaning (blanks are looked at apart), 1 the closing quote, 2
# leave the line to Python (escape, control character, DEL, a byte that cannot start a 1-3 byte UTF-8
# character), 3 cleaning would change the text (&, <), 4 look at what follows (. ! ?), 5 and 6 the first byte
# of a two- or three-byte UTF-8 character.
_BYTE_CLASS = np.zeros(256, dtype=np.uint8)
_BYTE_CLASS[:32] = 2
_BYTE_CLASS[127:] = 2
_BYTE_CLASS[ord("\\")] = 2
_BYTE_CLASS[ord('"')] = 1
_BYTE_CLASS[[ord("&"), ord("<")]] = 3
_BYTE_CLASS[[ord("."), ord("!"), ord("?")]] = 4
_BYTE_CLASS[0xC2:0xE0] = 5
_BYTE_CLASS[0xE0:0xF0] = 6


def _printable_table() -> np.ndarray:
    """Per code point below U+10000: printable and not whitespace in this Python (what str.isprintable()
    and str.split() go by). Built at import so it follows the running Python's Unicode database."""
    return np.fromiter((c.isprintable() and not c.isspace() for c in map(chr, range(0x10000))), dtype=np.bool_,
                       count=0x10000)


_PRINTABLE = _printable_table()
_PHRASE = b"his text refers to"  # data.clean_text's gate for the boilerplate rule
_HIS = np.frombuffer(_PHRASE, dtype=np.uint8)
_UID = np.frombuffer(b'{"uid":"', dtype=np.uint8)
_TITLE = np.frombuffer(b'","title":"', dtype=np.uint8)
_CONTENT = np.frombuffer(b'","content":"', dtype=np.uint8)
_TARGET_IND = np.frombuffer(b',"target_ind":[', dtype=np.uint8)
_TARGET_REL = np.frombuffer(b'],"target_rel":[', dtype=np.uint8)
_SPLIT = np.frombuffer(b"split", dtype=np.uint8)  # data.split_of's key prefix
_NUMBER_BYTE = np.zeros(256, dtype=np.bool_)  # what a list of numbers is written with
_NUMBER_BYTE[np.frombuffer(b"0123456789.eE+-, ", dtype=np.uint8)] = True


def _char_kinds() -> np.ndarray:
    """Per code point below U+10000: 1 whitespace (str.isspace), 2 a control or zero-width character that
    data.clean_text turns into a blank (its _CONTROL), 0 anything else. Cleaning joins runs of 1 and 2 into
    one blank and strips them at the ends."""
    chars = [chr(code) for code in range(0x10000)]
    return np.array([1 if c.isspace() else 2 if _CONTROL.match(c) else 0 for c in chars], dtype=np.uint8)


def _named_references() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """html5's named character references written with ";" that stand for one character below U+10000,
    for lookup in compiled code: the names (flat), where each starts, its character, and per
    (length, first letter) the range of names to compare."""
    import html.entities

    named = sorted(((name[:-1], value) for name, value in html.entities.html5.items()
                    if name.endswith(";") and len(value) == 1 and ord(value) < 0x10000),
                   key=lambda item: (len(item[0]), item[0]))  # a bucket's names are next to each other
    letters = np.array([ord(c) for name, _ in named for c in name], dtype=np.int32)
    starts = np.cumsum([0] + [len(name) for name, _ in named]).astype(np.int64)
    values = np.array([ord(value) for _, value in named], dtype=np.int32)
    buckets = np.zeros((33 * 128, 2), dtype=np.int64)
    for index, (name, _) in enumerate(named):
        bucket = len(name) * 128 + ord(name[0])
        if buckets[bucket, 1] == 0:
            buckets[bucket, 0] = index
        buckets[bucket, 1] = index + 1
    return letters, starts, values, buckets


_CHAR_KIND = _char_kinds()
_NAMES, _NAME_STARTS, _NAME_VALUES, _NAME_BUCKETS = _named_references()


@_compiled
def _literal(buf, pos, end, literal):  # type: ignore[no-untyped-def]
    """Position after `literal` if buf[pos:] starts with it, else -1."""
    if pos < 0 or pos + len(literal) > end:
        return -1
    for k in range(len(literal)):
        if buf[pos + k] != literal[k]:
            return -1
    return pos + len(literal)


@_compiled
def _utf8_char(buf, i, end):  # type: ignore[no-untyped-def]
    """(code point, length in bytes) of the UTF-8 character at buf[i]; (-1, 0) when it is invalid, an
    overlong form, a surrogate or 4 bytes long (the Python path judges those)."""
    c = buf[i]
    if c < 0x80:
        return c, 1
    if 0xC2 <= c <= 0xDF and i + 1 < end and 0x80 <= buf[i + 1] <= 0xBF:
        return ((c & 0x1F) << 6) | (buf[i + 1] & 0x3F), 2
    if 0xE0 <= c <= 0xEF and i + 2 < end and 0x80 <= buf[i + 1] <= 0xBF and 0x80 <= buf[i + 2] <= 0xBF:
        code = ((c & 0x0F) << 12) | ((buf[i + 1] & 0x3F) << 6) | (buf[i + 2] & 0x3F)
        if code >= 0x800 and not 0xD800 <= code <= 0xDFFF:
            return code, 3
    return -1, 0


@_compiled
def _closing_quote(buf, i, end):  # type: ignore[no-untyped-def]
    """Index of the quote that closes the JSON string body running on from buf[i], or -1 (the Python path
    decides) at an escape, a control byte, or UTF-8 that is invalid or 4 bytes long."""
    while i < end:
        c = buf[i]
        if c == 34:
            return i
        if c < 32 or c == 92:
            return -1
        code, length = _utf8_char(buf, i, end)
        if code < 0:
            return -1
        i += length
    return -1


@_compiled
def _blank_text(buf, a, b):  # type: ignore[no-untyped-def]
    """1 if the JSON string body buf[a:b] (no escapes, no control bytes) is empty or blanks only, 0 if not,
    -1 when it holds no printable ASCII but more than blanks (whether that is whitespace: ask _field)."""
    for i in range(a, b):
        if 33 <= buf[i] <= 126:
            return 0
    for i in range(a, b):
        if buf[i] != 32:
            return -1
    return 1


_HIS_TEXT = np.uint64(int.from_bytes(_PHRASE[:8], "big"))  # "his text", as _text keeps the last 8 bytes read


@_compiled
def _has_phrase(buf, a, b, his):  # type: ignore[no-untyped-def]
    """Whether buf[a:b] holds "his text refers to" (his: its bytes or code points, as buf holds)."""
    for i in range(a, b - len(his) + 1):
        if buf[i] == 104 and _literal(buf, i, b, his) > 0:
            return True
    return False


@_compiled
def _text(buf, pos, end, byte_class, printable, his, info, limit):  # type: ignore[no-untyped-def]
    """Scan a JSON string's body from `pos`. Returns the index of its closing quote, or -1 when the Python
    path must decide (an escape, a control or non-printable character, invalid or 4-byte UTF-8).
    info[0]: characters; info[1]: 1 when cleaning would change more than the ends; info[2]: 1 if not ASCII.
    With limit > 0, a text longer than `limit` characters is looked at that far only (info[3] is 1 and
    info[4] where its first `limit` characters end); the rest is only checked to be valid JSON text."""
    chars, dirty, wide, previous = 0, 0, 0, 0
    # Blanks and the boilerplate phrase are tested without a branch: blanks and "h" are too frequent and
    # irregular for branch prediction (the pass over contents took 1.5x as long when it branched on them).
    # `last` holds the last 8 bytes read; when they were ever "his text", the whole phrase is looked for.
    last, his_text = np.uint64(0), False
    info[3] = 0
    i = pos
    while i < end:
        if chars == limit > 0 and buf[i] != 34:  # more than `limit` characters
            dirty |= his_text and _has_phrase(buf, pos, i, his)  # only a whole phrase in the start counts
            info[0], info[1], info[2], info[3], info[4] = chars, dirty, wide, 1, i
            return _closing_quote(buf, i, end)
        c = buf[i]
        kind = byte_class[c]
        chars += 1
        i += 1
        dirty |= (c == 32) & (previous == 32)  # two blanks in a row: whitespace is collapsed
        previous = c
        last = (last << np.uint64(8)) | np.uint64(c)
        his_text |= last == _HIS_TEXT
        if kind == 0:
            continue
        if kind == 4:  # . ! ? followed by "Great": a glued-sentence candidate
            if i + 1 < end and 65 <= buf[i] <= 90 and 97 <= buf[i + 1] <= 122:
                dirty = 1
        elif kind == 1:
            dirty |= his_text and _has_phrase(buf, pos, i - 1, his)
            info[0], info[1], info[2] = chars - 1, dirty, wide
            return i - 1
        elif kind == 3:
            dirty = 1
        elif kind == 5 or kind == 6:  # the first byte of a two- or three-byte UTF-8 character
            code, length = _utf8_char(buf, i - 1, end)
            if code < 0 or not printable[code]:
                return -1
            wide = 1
            i += length - 1
        else:
            return -1
    return -1


@_compiled
def _strip(buf, a, b):  # type: ignore[no-untyped-def]
    """Span without the blanks at its ends (the only whitespace a scanned text can hold)."""
    while a < b and buf[a] == 32:
        a += 1
    while b > a and buf[b - 1] == 32:
        b -= 1
    return a, b


@_compiled
def _same_ignoring_case(one, a, b, other, c, d):  # type: ignore[no-untyped-def]
    """ASCII spans one[a:b] and other[c:d] equal after casefold() (which, for ASCII, is lower())."""
    if b - a != d - c:
        return False
    for k in range(b - a):
        x, y = one[a + k], other[c + k]
        if 65 <= x <= 90:
            x += 32
        if 65 <= y <= 90:
            y += 32
        if x != y:
            return False
    return True


@_compiled
def _decode(buf, pos, end, kinds, cps, limit):  # type: ignore[no-untyped-def]
    """Decode the JSON string whose body starts at buf[pos] into code points cps[0:n], the first `limit`
    only if limit > 0. Returns (index of its closing quote, or where it stopped at the limit, n, 1 if the
    text is empty or all whitespace); the quote is -1 for what the Python path must judge: invalid UTF-8, a
    raw control byte, a 4-byte character, a \\u surrogate, an unknown escape."""
    n, blank, i = 0, 1, pos
    while i < end:
        if n == limit > 0:
            return i, n, blank
        c = buf[i]
        if c == 34:
            return i, n, blank
        if c == 92:
            if i + 1 >= end:
                return -1, 0, 0
            e = buf[i + 1]
            i += 2
            if e == 34 or e == 92 or e == 47:
                code = e
            elif e == 98:
                code = 8
            elif e == 102:
                code = 12
            elif e == 110:
                code = 10
            elif e == 114:
                code = 13
            elif e == 116:
                code = 9
            elif e == 117 and i + 4 <= end:
                code = 0
                for k in range(4):
                    h = buf[i + k]
                    if 48 <= h <= 57:
                        code = code * 16 + h - 48
                    elif 97 <= h <= 102:
                        code = code * 16 + h - 87
                    elif 65 <= h <= 70:
                        code = code * 16 + h - 55
                    else:
                        return -1, 0, 0
                if 0xD800 <= code <= 0xDFFF:
                    return -1, 0, 0
                i += 4
            else:
                return -1, 0, 0
        elif c < 32:
            return -1, 0, 0
        else:
            code, length = _utf8_char(buf, i, end)
            if code < 0:
                return -1, 0, 0
            i += length
        if kinds[code] != 1:
            blank = 0
        cps[n] = code
        n += 1
    return -1, 0, 0


@_compiled
def _reference_end(cps, start, n):  # type: ignore[no-untyped-def]
    """End of the name of a named reference starting at cps[start]: the characters html.unescape reads as
    a name (not tab, LF, FF, blank, <, &, #, ;); it reads at most 32, so a longer run stops at 33."""
    k = start
    while k < n and k - start <= 32:
        c = cps[k]
        if c == 9 or c == 10 or c == 12 or c == 32 or c == 60 or c == 38 or c == 35 or c == 59:
            break
        k += 1
    return k


@_compiled
def _unescape(cps, n, names, name_starts, name_values, name_buckets):  # type: ignore[no-untyped-def]
    """html.unescape on cps[0:n], in place, for the references it can be sure of: numeric ones ending in
    ";" that stand for an ordinary character, named ones ending in ";". Returns the new length, or -1 when
    it meets a reference it cannot be sure of (the Python path decides)."""
    w, r = 0, 0
    while r < n:
        c = cps[r]
        r += 1
        if c != 38 or r >= n:
            cps[w] = c
            w += 1
            continue
        nxt = cps[r]
        if nxt == 35:  # "&#": decimal or hex
            hexadecimal = r + 1 < n and (cps[r + 1] == 120 or cps[r + 1] == 88)
            k = r + 2 if hexadecimal else r + 1
            code, digits = 0, 0
            while k < n and digits <= 7:
                d = cps[k]
                if 48 <= d <= 57:
                    code = code * (16 if hexadecimal else 10) + d - 48
                elif hexadecimal and 97 <= d <= 102:
                    code = code * 16 + d - 87
                elif hexadecimal and 65 <= d <= 70:
                    code = code * 16 + d - 55
                else:
                    break
                digits += 1
                k += 1
            if digits == 0:  # "&#" not followed by a number: left as it is
                cps[w] = c
                w += 1
                continue
            if digits > 7 or k >= n or cps[k] != 59:
                return -1
            if not (code == 9 or code == 10 or code == 12 or 32 <= code <= 126
                    or (0xA0 <= code <= 0xFFFD and not 0xD800 <= code <= 0xDFFF and not 0xFDD0 <= code <= 0xFDEF)):
                return -1  # html.unescape maps or drops these: the Python path decides
            cps[w] = code
            w += 1
            r = k + 1
            continue
        if nxt == 9 or nxt == 10 or nxt == 12 or nxt == 32 or nxt == 60 or nxt == 38 or nxt == 59:
            cps[w] = c  # "&" followed by what cannot start a name: left as it is
            w += 1
            continue
        k = _reference_end(cps, r, n)
        length = k - r
        if k >= n or cps[k] != 59 or length > 32 or cps[r] >= 128:
            return -1
        bucket = length * 128 + cps[r]
        found = -1
        for index in range(name_buckets[bucket, 0], name_buckets[bucket, 1]):
            at = name_starts[index]
            same = True
            for j in range(length):
                if names[at + j] != cps[r + j]:
                    same = False
                    break
            if same:
                found = index
                break
        if found < 0:
            return -1
        cps[w] = name_values[found]
        w += 1
        r = k + 1
    return w


@_compiled
def _may_unescape_again(cps, n):  # type: ignore[no-untyped-def]
    """Whether data.clean_text's second unescape could apply (an & followed by # or a letter)."""
    for i in range(n - 1):
        if cps[i] == 38:
            d = cps[i + 1]
            if d == 35 or 65 <= d <= 90 or 97 <= d <= 122:
                return True
    return False


@_compiled
def _strip_tags(cps, n):  # type: ignore[no-untyped-def]
    """data._TAG.sub(" ", text) on cps[0:n], in place: a tag is "<" or "</", a letter, at most 300 characters
    that are not < or >, then ">". Returns the new length."""
    w, r = 0, 0
    while r < n:
        c = cps[r]
        if c == 60:
            j = r + 1
            if j < n and cps[j] == 47:
                j += 1
            if j < n and (65 <= cps[j] <= 90 or 97 <= cps[j] <= 122):
                k = j + 1
                while k < n and k - j - 1 < 300 and cps[k] != 60 and cps[k] != 62:
                    k += 1
                if k < n and cps[k] == 62:
                    cps[w] = 32
                    w += 1
                    r = k + 1
                    continue
        cps[w] = c
        w += 1
        r += 1
    return w


@_compiled
def _his_at(cps, i, n, his, ignore_case):  # type: ignore[no-untyped-def]
    """Whether cps[i:n] starts with his ("his text refers to"), ASCII case ignored if asked."""
    if i < 0 or i + len(his) > n:
        return False
    for j in range(len(his)):
        c = cps[i + j]
        if ignore_case and 65 <= c <= 90:
            c += 32
        if c != his[j]:
            return False
    return True


@_compiled
def _strip_boilerplate(cps, n, kinds, his):  # type: ignore[no-untyped-def]
    """data.clean_text's boilerplate rule on cps[0:n], in place: when "his text refers to" is there (case
    kept), every match of data._BOILERPLATE, `(?<!\\s)\\s*-{1,2}\\s*This text refers to[^.]{0,200}\\.`
    (case ignored), becomes one blank. Returns the new length, or -1 (the Python path decides) for a text
    holding a character that the regex matches with a letter of the phrase beyond ASCII's case pairs."""
    if not _has_phrase(cps, 0, n, his):
        return n
    for i in range(n):
        if cps[i] == 0x130 or cps[i] == 0x131 or cps[i] == 0x17F:  # İ, ı, ſ: the only non-ASCII characters the
            return -1  # regex, ignoring case, takes for letters of the phrase (checked over all code points)
    w, r, q = 0, 0, 0  # written up to w; read up to r; look for the phrase from q
    while q < n:
        if not ((cps[q] == 116 or cps[q] == 84) and _his_at(cps, q + 1, n, his, True)):
            q += 1
            continue
        # Left of the phrase: blanks, one or two dashes (the last two of a longer run), and the blanks
        # before them when the dashes are all there were (the lookbehind: the match starts a blank run).
        k = q
        while k > r and kinds[cps[k - 1]] == 1:
            k -= 1
        dashes = 0
        while k - dashes > r and cps[k - dashes - 1] == 45:
            dashes += 1
        after = q + len(his) + 1
        dot = after
        while dot < n and dot - after <= 200 and cps[dot] != 46:
            dot += 1
        if dashes == 0 or dot >= n or cps[dot] != 46 or dot - after > 200:
            q += 1
            continue
        start = k - min(dashes, 2)
        if dashes <= 2:
            while start > r and kinds[cps[start - 1]] == 1:
                start -= 1
        for j in range(r, start):
            cps[w] = cps[j]
            w += 1
        cps[w] = 32
        w += 1
        r = q = dot + 1
    for j in range(r, n):
        cps[w] = cps[j]
        w += 1
    return w


@_compiled
def _clean_code_points(cps, n, kinds, out, o):  # type: ignore[no-untyped-def]
    """The rest of data.clean_text on text without references, tags or boilerplate, cps[0:n]: blanks and
    control characters become one blank, none at the ends; written as UTF-8 to out[o:]. Returns (end in
    out, characters, 1 if ASCII, 1 if it holds a quote or backslash), or characters -1 when Python must
    clean it: a glued sentence is there."""
    for i in range(n):
        c = cps[i]
        if (c == 46 or c == 33 or c == 63) and i + 2 < n and 65 <= cps[i + 1] <= 90 and 97 <= cps[i + 2] <= 122:
            return o, -1, 0, 0
    chars, ascii, escape, gap = 0, 1, 0, 0
    for i in range(n):
        c = cps[i]
        if kinds[c]:
            gap = 1 if chars > 0 else 0
            continue
        if gap:
            out[o] = 32
            o += 1
            chars += 1
            gap = 0
        if c < 0x80:
            out[o] = c
            o += 1
            if c == 34 or c == 92:
                escape = 1
        elif c < 0x800:
            out[o] = 0xC0 | (c >> 6)
            out[o + 1] = 0x80 | (c & 0x3F)
            o += 2
            ascii = 0
        else:
            out[o] = 0xE0 | (c >> 12)
            out[o + 1] = 0x80 | ((c >> 6) & 0x3F)
            out[o + 2] = 0x80 | (c & 0x3F)
            o += 3
            ascii = 0
        chars += 1
    return o, chars, ascii, escape


@_compiled
def _field(buf, pos, end, tables, cps, out, o, field, info, head):  # type: ignore[no-untyped-def]
    """Read and clean the title or content whose JSON string body starts at buf[pos]. Returns (index of its
    closing quote or -1 for the Python path, new end of out). field: where the cleaned text is (TEXT_*),
    its span, characters, 1 if the raw text is empty or all whitespace, 1 if ASCII. A text that needs
    cleaning and is longer than head > 0 characters has only its first `head` cleaned (field[0] is
    _HEAD_ONLY, field[3] those characters less data._CUT_MARGIN), as data.clean_record judges long contents."""
    (byte_class, printable, his, uid_key, title_key, content_key, ind_key, rel_key, number_byte, kinds, names,
     name_starts, name_values, name_buckets, his_code_points) = tables
    quote = _text(buf, pos, end, byte_class, printable, his, info, head)
    if quote >= 0 and info[3] and info[1] == 0:  # long, and its start needs only stripping
        a, b = _strip(buf, pos, info[4])
        field[0], field[1], field[2], field[4], field[5] = _HEAD_ONLY, a, b, 0, 0
        field[3] = head - (a - pos) - (info[4] - b) - _CUT_MARGIN
        return quote, o
    if quote >= 0 and info[1] == 0:  # cleaning only strips it: the span in the block
        a, b = _strip(buf, pos, quote)
        field[0], field[1], field[2] = TEXT_IN_BLOCK, a, b
        field[3], field[4], field[5] = info[0] - (a - pos) - (quote - b), 1 if a == b else 0, 1 - info[2]
        return quote, o
    limit = head if quote >= 0 and info[3] else 0
    end_or_stop, n, blank = _decode(buf, pos, end, kinds, cps, limit)
    if end_or_stop < 0:
        return -1, o
    if not limit:
        quote = end_or_stop
    n = _unescape(cps, n, names, name_starts, name_values, name_buckets)
    if n < 0 or _may_unescape_again(cps, n):
        return -1, o
    n = _strip_tags(cps, n)
    n = _strip_boilerplate(cps, n, kinds, his_code_points)
    if n < 0:
        return -1, o
    new_o, chars, ascii, escape = _clean_code_points(cps, n, kinds, out, o)
    if chars < 0:
        return -1, o
    if limit:
        field[0], field[1], field[2], field[3], field[4], field[5] = _HEAD_ONLY, o, new_o, chars - _CUT_MARGIN, 0, 0
        return quote, o
    field[0] = TEXT_IN_CLEANED_TO_ESCAPE if escape else TEXT_IN_CLEANED
    field[1], field[2], field[3], field[4], field[5] = o, new_o, chars, blank, ascii
    return quote, new_o


@_compiled
def _labels(buf, pos, end, number_byte):  # type: ignore[no-untyped-def]
    """First position from `pos` that is not part of a plain list of numbers (-1 stays -1)."""
    if pos < 0:
        return pos
    while pos < end and number_byte[buf[pos]]:
        pos += 1
    return pos


@_compiled
def _classify(buf, s, e, rules, tables, spans, line, scratch, cps, out, o):  # type: ignore[no-untyped-def]
    """Decide the line that starts at buf[s] (see Line); e is the block's end. For KEEP, spans[line, 0:8] get
    the kept record (see SPAN_COLUMNS). spans[line, 9] gets where the line ends (its CR LF, LF or the block's
    end) when the scan reached it, else it stays -1 (the caller then looks for it). Cleaned texts are
    written to out[o:]; returns (code, new end of out)."""
    (byte_class, printable, his, uid_key, title_key, content_key, ind_key, rel_key, number_byte, kinds, names,
     name_starts, name_values, name_buckets, his_code_points) = tables
    min_title, min_content, max_content, head = rules
    i = s
    while i < e and buf[i] != 10 and (buf[i] == 32 or 9 <= buf[i] <= 13):
        i += 1
    if i == e or buf[i] == 10:  # blanks only
        spans[line, 9] = i - 1 if i > s and buf[i - 1] == 13 else i
        return _BLANK, o
    info, title, content = scratch[0], scratch[1], scratch[2]
    ua = _literal(buf, s, e, uid_key)
    if ua < 0:
        return _PYTHON, o
    ub = _text(buf, ua, e, byte_class, printable, his, info, 0)  # the uid: plain text only
    ta = _literal(buf, ub, e, title_key)
    if ub < 0 or ta < 0:
        return _PYTHON, o
    start = o
    tb, o = _field(buf, ta, e, tables, cps, out, o, title, info, 0)
    ca = _literal(buf, tb, e, content_key)
    if tb < 0 or ca < 0:
        return _PYTHON, start
    # A blank or short title decides the line whatever the content holds, but for whether it is blank.
    cb = _closing_quote(buf, ca, e) if title[4] or 0 < title[3] < min_title else -1
    content[4] = -1 if cb < 0 else _blank_text(buf, ca, cb)
    if content[4] < 0:
        cb, o = _field(buf, ca, e, tables, cps, out, o, content, info, head)
        if cb >= 0 and content[0] == _HEAD_ONLY and not (content[3] > max_content and content[3] > 3 * title[3]):
            cb, o = _field(buf, ca, e, tables, cps, out, o, content, info, 0)  # its start did not settle it
    if cb < 0:
        return _PYTHON, start
    # What follows the content: "}" or the dump's two label lists, which data.parse_line never parses; then
    # the line's end (a CR before a LF or the block's end is no part of the line).
    if cb + 1 < e and buf[cb + 1] == 125:
        stop = cb + 2
    else:
        p = _literal(buf, _labels(buf, _literal(buf, cb + 1, e, ind_key), e, number_byte), e, rel_key)
        if p < 0:
            return _PYTHON, start
        p = _labels(buf, p, e, number_byte)
        if not (p + 1 < e and buf[p] == 93 and buf[p + 1] == 125):
            return _PYTHON, start
        stop = p + 2
    if not (stop == e or buf[stop] == 10 or (buf[stop] == 13 and (stop + 1 == e or buf[stop + 1] == 10))):
        return _PYTHON, start
    spans[line, 9] = stop
    # data.clean_record's rules (lengths in characters of the cleaned texts)
    if title[4]:
        return (_EMPTY_BOTH if content[4] else _EMPTY_TITLE), start
    if content[4]:
        return _EMPTY_CONTENT, start
    n_title, n_content = title[3], content[3]
    if n_title == 0:
        return (_EMPTY_BOTH if n_content == 0 else _EMPTY_TITLE), start
    if n_title < min_title:
        return _SHORT_TITLE, start
    if n_content == 0:
        return _EMPTY_CONTENT, start
    if n_content <= 3 * n_title:
        if not (title[5] and content[5]):
            return _PYTHON, start  # casefold() beyond ASCII: Python compares
        if _same_ignoring_case(buf if title[0] == TEXT_IN_BLOCK else out, title[1], title[2],
                               buf if content[0] == TEXT_IN_BLOCK else out, content[1], content[2]):
            return _EQUALS, start
    if n_content < min_content:
        return _SHORT_CONTENT, start
    if n_content > max_content:
        return _LONG_CONTENT, start
    spans[line, 0], spans[line, 1] = _strip(buf, ua, ub)
    spans[line, 2], spans[line, 3], spans[line, 4], spans[line, 5] = title[1], title[2], content[1], content[2]
    spans[line, 6], spans[line, 7] = title[0], content[0]
    spans[line, 10], spans[line, 11] = n_title, n_content
    return _KEEP, o


@_compiled_allocating
def _scan(buf, rules, tables):  # type: ignore[no-untyped-def]
    """scan_block on the block's bytes."""
    lines = 0
    for i in range(len(buf)):
        lines += buf[i] == 10
    if len(buf) and buf[len(buf) - 1] != 10:
        lines += 1
    codes = np.empty(lines, dtype=np.int8)
    spans = np.zeros((lines, SPAN_COLUMNS), dtype=np.int64)
    scratch = np.zeros((3, 6), dtype=np.int64)
    cps = np.empty(len(buf), dtype=np.int32)  # decoded code points of one text at a time
    out = np.empty(len(buf), dtype=np.uint8)  # cleaned texts: never longer than their JSON
    o, start = 0, 0
    for line in range(lines):
        spans[line, 8], spans[line, 9] = start, -1
        codes[line], o = _classify(buf, start, len(buf), rules, tables, spans, line, scratch, cps, out, o)
        stop = spans[line, 9]
        if stop < 0:  # left to Python before the scan reached its end
            end = start
            while end < len(buf) and buf[end] != 10:
                end += 1
            stop = spans[line, 9] = end - 1 if end > start and buf[end - 1] == 13 else end  # a CR LF line end
        start = stop + 2 if stop < len(buf) and buf[stop] == 13 else stop + 1
    return codes, spans, out[:o]


# ---------------------------------------------------------------- kept records: keys and output rows

# BLAKE2b with an 8-byte digest (hashlib.blake2b(data, digest_size=8)), which data.py's keys are made of.
_BLAKE2B_IV = np.array([0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
                        0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179],
                       dtype=np.uint64)


@_compiled
def _rotr(x, n):  # type: ignore[no-untyped-def]
    return (x >> np.uint64(n)) | (x << np.uint64(64 - n))


@_compiled
def _mix(a, b, c, d, x, y):  # type: ignore[no-untyped-def]
    """BLAKE2b's G function."""
    a = a + b + x
    d = _rotr(d ^ a, 32)
    c = c + d
    b = _rotr(b ^ c, 24)
    a = a + b + y
    d = _rotr(d ^ a, 16)
    c = c + d
    b = _rotr(b ^ c, 63)
    return a, b, c, d


@_compiled
def _round(v, x):  # type: ignore[no-untyped-def]
    """One BLAKE2b round on the state v, with the message words x in that round's order."""
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = v
    v0, v4, v8, v12 = _mix(v0, v4, v8, v12, x[0], x[1])
    v1, v5, v9, v13 = _mix(v1, v5, v9, v13, x[2], x[3])
    v2, v6, v10, v14 = _mix(v2, v6, v10, v14, x[4], x[5])
    v3, v7, v11, v15 = _mix(v3, v7, v11, v15, x[6], x[7])
    v0, v5, v10, v15 = _mix(v0, v5, v10, v15, x[8], x[9])
    v1, v6, v11, v12 = _mix(v1, v6, v11, v12, x[10], x[11])
    v2, v7, v8, v13 = _mix(v2, v7, v8, v13, x[12], x[13])
    v3, v4, v9, v14 = _mix(v3, v4, v9, v14, x[14], x[15])
    return v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15


@_compiled
def _compress(h, m, count, last):  # type: ignore[no-untyped-def]
    """BLAKE2b's compression of the 16 message words m into the hash state h; count: bytes hashed so far."""
    iv = _BLAKE2B_IV
    v = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], iv[0], iv[1], iv[2], iv[3], iv[4] ^ count, iv[5],
         ~iv[6] if last else iv[6], iv[7])
    # The 12 rounds, written out so that every word stays in a register: each takes the words in the
    # order of its row of BLAKE2b's SIGMA table (rounds 11 and 12 repeat the first two rows).
    v = _round(v, (m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11], m[12], m[13], m[14],
                   m[15]))
    v = _round(v, (m[14], m[10], m[4], m[8], m[9], m[15], m[13], m[6], m[1], m[12], m[0], m[2], m[11], m[7], m[5],
                   m[3]))
    v = _round(v, (m[11], m[8], m[12], m[0], m[5], m[2], m[15], m[13], m[10], m[14], m[3], m[6], m[7], m[1], m[9],
                   m[4]))
    v = _round(v, (m[7], m[9], m[3], m[1], m[13], m[12], m[11], m[14], m[2], m[6], m[5], m[10], m[4], m[0], m[15],
                   m[8]))
    v = _round(v, (m[9], m[0], m[5], m[7], m[2], m[4], m[10], m[15], m[14], m[1], m[11], m[12], m[6], m[8], m[3],
                   m[13]))
    v = _round(v, (m[2], m[12], m[6], m[10], m[0], m[11], m[8], m[3], m[4], m[13], m[7], m[5], m[15], m[14], m[1],
                   m[9]))
    v = _round(v, (m[12], m[5], m[1], m[15], m[14], m[13], m[4], m[10], m[0], m[7], m[6], m[3], m[9], m[2], m[8],
                   m[11]))
    v = _round(v, (m[13], m[11], m[7], m[14], m[12], m[1], m[3], m[9], m[5], m[0], m[15], m[4], m[8], m[6], m[2],
                   m[10]))
    v = _round(v, (m[6], m[15], m[14], m[9], m[11], m[3], m[0], m[8], m[12], m[2], m[13], m[7], m[1], m[4], m[10],
                   m[5]))
    v = _round(v, (m[10], m[2], m[8], m[4], m[7], m[6], m[1], m[5], m[15], m[11], m[9], m[14], m[3], m[12], m[13],
                   m[0]))
    v = _round(v, (m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11], m[12], m[13], m[14],
                   m[15]))
    v = _round(v, (m[14], m[10], m[4], m[8], m[9], m[15], m[13], m[6], m[1], m[12], m[0], m[2], m[11], m[7], m[5],
                   m[3]))
    for i in range(8):
        h[i] ^= v[i] ^ v[i + 8]


@_compiled
def _word(data, p, n):  # type: ignore[no-untyped-def]
    """The little-endian word of data[p:p + n] (n <= 8; n <= 0 gives 0, the zero padding)."""
    w = np.uint64(0)
    for k in range(min(n, 8)):
        w |= np.uint64(data[p + k]) << np.uint64(8 * k)
    return w


@_compiled
def _blake2b64(data, a, b, h):  # type: ignore[no-untyped-def]
    """hashlib.blake2b(data[a:b], digest_size=8).digest() read as a little-endian uint64; h: 8 words of
    scratch."""
    for i in range(8):
        h[i] = _BLAKE2B_IV[i]
    h[0] ^= np.uint64(0x01010008)  # digest length 8, no key, fanout 1, depth 1
    pos = a
    while True:
        n = b - pos
        m = (_word(data, pos, n), _word(data, pos + 8, n - 8), _word(data, pos + 16, n - 16),
             _word(data, pos + 24, n - 24), _word(data, pos + 32, n - 32), _word(data, pos + 40, n - 40),
             _word(data, pos + 48, n - 48), _word(data, pos + 56, n - 56), _word(data, pos + 64, n - 64),
             _word(data, pos + 72, n - 72), _word(data, pos + 80, n - 80), _word(data, pos + 88, n - 88),
             _word(data, pos + 96, n - 96), _word(data, pos + 104, n - 104), _word(data, pos + 112, n - 112),
             _word(data, pos + 120, n - 120))
        last = n <= 128
        pos += min(n, 128)
        _compress(h, m, np.uint64(pos - a), last)
        if last:
            return h[0]


@_compiled
def _byteswap(x):  # type: ignore[no-untyped-def]
    """The uint64 with x's bytes in the other order (a digest read big-endian, as data._key64 reads it)."""
    y = np.uint64(0)
    for _ in range(8):
        y = (y << np.uint64(8)) | (x & np.uint64(0xFF))
        x >>= np.uint64(8)
    return y


@intrinsic
def _memcpy(typingctx, dst, o, src, a, n):  # type: ignore[no-untyped-def]
    """dst[o:o + n] = src[a:a + n] with LLVM's memcpy (a byte loop in numba runs ~20x slower: it cannot tell
    that the arrays do not overlap)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        target = context.make_array(signature.args[0])(context, builder, args[0])
        source = context.make_array(signature.args[2])(context, builder, args[2])
        cgutils.raw_memcpy(builder, builder.gep(target.data, [args[1]]), builder.gep(source.data, [args[3]]),
                           args[4], 1)
        return context.get_dummy_value()

    return types.none(dst, o, src, a, n), codegen


@_compiled
def _copy(dst, o, src, a, b):  # type: ignore[no-untyped-def]
    """dst[o:] = src[a:b]; returns where it ends in dst."""
    _memcpy(dst, o, src, a, b - a)
    return o + b - a


@_compiled
def _copy_escaped(dst, o, src, a, b, escape):  # type: ignore[no-untyped-def]
    """src[a:b] into dst[o:] as the body of a JSON string; with `escape`, quotes and backslashes get their
    backslash (cleaned texts hold no control character: cleaning made them blanks). Returns the new end."""
    if not escape:
        return _copy(dst, o, src, a, b)
    for i in range(a, b):
        c = src[i]
        if c == 34 or c == 92:
            dst[o] = 92
            o += 1
        dst[o] = c
        o += 1
    return o


@_compiled
def _escaped_length(src, a, b, escape):  # type: ignore[no-untyped-def]
    n = b - a
    if escape:
        for i in range(a, b):
            if src[i] == 34 or src[i] == 92:
                n += 1
    return n


@_compiled
def _prefixed_key(prefix, text, a, b, scratch, h):  # type: ignore[no-untyped-def]
    """data._key64(prefix, text): BLAKE2b-64 of prefix, a zero byte and text[a:b], read big-endian."""
    o = _copy(scratch, 0, prefix, 0, len(prefix))
    scratch[o] = 0
    o = _copy(scratch, o + 1, text, a, b)
    return _byteswap(_blake2b64(scratch, 0, o, h))


@_compiled
def _kept_spans(spans, line):  # type: ignore[no-untyped-def]
    """A kept line's uid, title and content spans and where its title and content are (SPAN_COLUMNS)."""
    return (spans[line, 0], spans[line, 1], spans[line, 2], spans[line, 3], spans[line, 4], spans[line, 5],
            spans[line, 6], spans[line, 7])


@_compiled
def _rows_size(buf, codes, spans, cleaned, part_ends, prefix):  # type: ignore[no-untyped-def]
    """Bytes of the kept lines' rows, and the most scratch their keys need (prefix: the longest key prefix)."""
    size, longest = 0, prefix
    for line in range(len(codes)):
        if codes[line] == _KEEP:
            u0, u1, t0, t1, c0, c1, title_in, content_in = _kept_spans(spans, line)
            title = buf if title_in == TEXT_IN_BLOCK else cleaned
            content = buf if content_in == TEXT_IN_BLOCK else cleaned
            size += (part_ends[3] + 1 + u1 - u0
                     + _escaped_length(title, t0, t1, title_in == TEXT_IN_CLEANED_TO_ESCAPE)
                     + _escaped_length(content, c0, c1, content_in == TEXT_IN_CLEANED_TO_ESCAPE))
            longest = max(longest, t1 - t0 + 1 + c1 - c0, prefix + u1 - u0)
    return size, longest


@_compiled
def _fill_rows(buf, codes, spans, cleaned, parts, part_ends, split, seed, keys, rows, row_ends, scratch, h
               ):  # type: ignore[no-untyped-def]
    """_kept_rows' work, in arrays it allocated (kept apart: a function that allocates counts references,
    which costs atomic operations at every array it names, e.g. `title` below, once a line)."""
    o = 0
    for line in range(len(codes)):
        if codes[line] == _KEEP:
            u0, u1, t0, t1, c0, c1, title_in, content_in = _kept_spans(spans, line)
            title = buf if title_in == TEXT_IN_BLOCK else cleaned
            content = buf if content_in == TEXT_IN_BLOCK else cleaned
            start = o
            o = _copy(rows, o, parts, 0, part_ends[0])
            o = _copy(rows, o, buf, u0, u1)
            o = _copy(rows, o, parts, part_ends[0], part_ends[1])
            o = _copy_escaped(rows, o, title, t0, t1, title_in == TEXT_IN_CLEANED_TO_ESCAPE)
            o = _copy(rows, o, parts, part_ends[1], part_ends[2])
            o = _copy_escaped(rows, o, content, c0, c1, content_in == TEXT_IN_CLEANED_TO_ESCAPE)
            o = _copy(rows, o, parts, part_ends[2], part_ends[3])
            rows[o] = 10
            o += 1
            # data.record_keys: title + NUL + content; the case-folded title (ASCII only: else Python)
            n = _copy(scratch, 0, title, t0, t1)
            scratch[n] = 0
            n = _copy(scratch, n + 1, content, c0, c1)
            keys[line, 0] = _blake2b64(scratch, 0, n, h)
            keys[line, 3] = _prefixed_key(split, buf, u0, u1, scratch, h)
            keys[line, 1] = keys[line, 3]
            ascii = True
            for i in range(t0, t1):
                c = title[i]
                ascii &= c < 128
                scratch[i - t0] = c + 32 if 65 <= c <= 90 else c
            if ascii:
                keys[line, 2] = _blake2b64(scratch, 0, t1 - t0, h)
            else:
                keys[line, TITLE_KEY_IN_PYTHON] = 1
            keys[line, 4] = _prefixed_key(seed, buf, u0, u1, scratch, h)
            keys[line, 5], keys[line, 6] = spans[line, 10], spans[line, 11]
            keys[line, 7] = o - start
        row_ends[line] = o


@_compiled_allocating
def _kept_rows(buf, codes, spans, cleaned, parts, part_ends, split, seed):  # type: ignore[no-untyped-def]
    """kept_rows on the block's bytes; parts: data._row_parts joined, part_ends: where each ends."""
    keys = np.zeros((len(codes), KEY_COLUMNS), dtype=np.uint64)
    row_ends = np.zeros(len(codes), dtype=np.int64)
    size, longest = _rows_size(buf, codes, spans, cleaned, part_ends, max(len(split), len(seed)) + 1)
    rows, scratch, h = np.empty(size, dtype=np.uint8), np.empty(longest, dtype=np.uint8), np.empty(8, np.uint64)
    _fill_rows(buf, codes, spans, cleaned, parts, part_ends, split, seed, keys, rows, row_ends, scratch, h)
    return keys, rows, row_ends


_TABLES = (_BYTE_CLASS, _PRINTABLE, _HIS, _UID, _TITLE, _CONTENT, _TARGET_IND, _TARGET_REL, _NUMBER_BYTE, _CHAR_KIND,
           _NAMES, _NAME_STARTS, _NAME_VALUES, _NAME_BUCKETS, _HIS.astype(np.int32))


def scan_block(block: bytes, min_title: int, min_content: int, max_content: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per line of `block` (whole lines, split as data.split_lines does): a Line code and SPAN_COLUMNS
    numbers; and the cleaned texts that kept records' spans may point into. Without numba this runs as
    plain Python (slow; for tests only)."""
    head = max_content + 2 * _CUT_MARGIN  # data.clean_record's: a longer content is judged on this start
    return _scan(np.frombuffer(block, dtype=np.uint8), (min_title, min_content, max_content, head), _TABLES)


def kept_rows(block: bytes, codes: np.ndarray, spans: np.ndarray, cleaned: np.ndarray, seed_text: str,
              row_parts: tuple[bytes, bytes, bytes, bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For scan_block's KEEP lines: their keys (data.record_keys' columns, then the TITLE_KEY_IN_PYTHON flag;
    zeros on other lines), their output rows (data.to_example's JSON, each with its line end, joined in line
    order: row_parts are that row's fixed parts, from data._row_parts) and per line where the rows up to it
    end."""
    part_ends = np.cumsum([len(part) for part in row_parts])
    return _kept_rows(np.frombuffer(block, dtype=np.uint8), codes, spans, cleaned,
                      np.frombuffer(b"".join(row_parts), dtype=np.uint8), part_ends, _SPLIT,
                      np.frombuffer(seed_text.encode(), dtype=np.uint8))


def clean_one_text(json_string: bytes) -> tuple[str, int, bool] | None:
    """What the scan makes of one title or content, given as a JSON string (quotes included): the cleaned
    text, its length in characters and whether the raw text is blank; None when it leaves the text to the
    Python path. For tests, which compare it with data.clean_text."""
    buf = np.frombuffer(json_string, dtype=np.uint8)
    field, info = np.zeros(6, dtype=np.int64), np.zeros(6, dtype=np.int64)
    cps, out = np.empty(len(buf), dtype=np.int32), np.empty(len(buf), dtype=np.uint8)
    quote, _ = _field(buf, 1, len(buf), _TABLES, cps, out, 0, field, info, 0)
    if quote != len(buf) - 1:
        return None
    text = (json_string if field[0] == TEXT_IN_BLOCK else out.tobytes())[field[1]:field[2]].decode()
    return text, int(field[3]), bool(field[4])


def warm_up() -> None:
    """Compile the scan, or load it from numba's cache (before worker processes fork, so they do not each)."""
    line = b'{"uid":"B1","title":"Acme","content":"Kettle"}\n'
    kept_rows(line, *scan_block(line, 1, 1, 10), "0", (b"", b"", b"", b""))

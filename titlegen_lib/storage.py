"""Atomic file writes and content hashes, so an interrupted Colab run never leaves a half-written file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                buffering: int = -1) -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path` and rename it over `path` only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name, created exclusively, with the mode a plain open() gives (0666 less the umask; mkstemp
    # would make it 0600).
    tmp_name = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, buffering=buffering, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (indented, UTF-8) and return the path."""
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, default=str)
    return Path(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def stable_hash(data: Any, length: int = 16) -> str:
    """A short hash of JSON-serialisable data, independent of dict order."""
    blob = json.dumps(data, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:length]


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def file_identity(path: str | Path) -> dict[str, Any]:
    """Name, size and modification time: cheap enough for 2 GB inputs, enough to notice a changed file."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

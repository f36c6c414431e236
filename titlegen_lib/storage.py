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


# ---------------------------------------------------------------- one writer per folder

class WorkFolderBusy(RuntimeError):
    """Another process is writing the same folder; the message names it."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def exclusive(lock_path: str | Path, what: str) -> Iterator[None]:
    """Hold `lock_path` (filelock; the OS releases it when a process dies) while `what` runs; a second process
    stops at once with a one-line error naming the holder, instead of mixing its files with the first's.
    Where the file system has no locks (some network drives), an exclusive lock file whose holder is checked
    for being alive stands in."""
    import socket
    import time

    from filelock import FileLock, SoftFileLock, Timeout

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    holder_path = lock_path.with_name(lock_path.name + ".holder")
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
          "what": what}
    try:
        lock = FileLock(str(lock_path))
        lock.acquire(timeout=0)
    except Timeout:
        lock = None
    except OSError:  # no fcntl locks here
        lock = SoftFileLock(str(lock_path))
        holder = _read_holder(holder_path)
        if holder and holder.get("host") == me["host"] and not _alive(int(holder.get("pid", 0))):
            lock_path.unlink(missing_ok=True)  # its holder died: the lock file is all that is left of it
        try:
            lock.acquire(timeout=0)
        except Timeout:
            lock = None
    if lock is None:
        holder = _read_holder(holder_path) or {}
        who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('what', '?')}, since "
               f"{holder.get('since', '?')})") if holder else "another process"
        raise WorkFolderBusy(f"{lock_path.parent} is busy: {who} holds {lock_path.name}; wait for it to finish, "
                             "or stop it, then run this again")
    try:
        write_json(holder_path, me)
        yield
    finally:
        holder_path.unlink(missing_ok=True)
        lock.release()


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def remove_leftovers(folder: str | Path, patterns: tuple[str, ...]) -> list[Path]:
    """Delete what killed runs left in `folder` (files or folders matching `patterns`); call it while holding
    the folder's lock, so nothing matched belongs to a running process."""
    import shutil

    removed = []
    for pattern in patterns:
        for path in Path(folder).glob(pattern):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed

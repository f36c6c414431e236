"""Loaded by every process of the DDP test (this folder is first on PYTHONPATH): logs each file that a
process creates, replaces or removes under TITLEGEN_WRITE_LOG_ROOT, with the process's rank, so the test
can tell which rank wrote what. Nothing here runs outside that test."""

from __future__ import annotations

import builtins
import json
import os
import shutil

_ROOT = os.environ.get("TITLEGEN_WRITE_LOG_ROOT", "")
_LOG = os.environ.get("TITLEGEN_WRITE_LOG", "")


def _record(action: str, path: object) -> None:
    try:
        full = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
    except TypeError:
        return  # a file descriptor: its path was recorded where it was opened
    if not full.startswith(_ROOT):
        return
    line = json.dumps({"rank": int(os.environ.get("RANK", "-1")), "action": action, "path": full}) + "\n"
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _wrap(module: object, name: str, action: str, writes: "callable | None" = None) -> None:
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        if args and (writes is None or writes(*args, **kwargs)):
            _record(action, args[1] if action == "replace" else args[0])
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


def _opens_for_writing(file, mode="r", *args, **kwargs) -> bool:
    return any(flag in mode for flag in "wax+")


def _os_open_writes(path, flags, *args, **kwargs) -> bool:
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


if _ROOT and _LOG:
    _wrap(builtins, "open", "open", _opens_for_writing)
    _wrap(os, "open", "open", _os_open_writes)
    _wrap(os, "replace", "replace")
    _wrap(os, "rename", "replace")
    _wrap(os, "unlink", "remove")
    _wrap(os, "remove", "remove")
    _wrap(shutil, "rmtree", "remove")

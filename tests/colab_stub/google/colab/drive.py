"""google.colab.drive for tests: mount links <mountpoint>/MyDrive to the folder TITLEGEN_FAKE_DRIVE."""

import os
from pathlib import Path

_mounted: list[Path] = []


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    point = Path(mountpoint)
    point.mkdir(parents=True, exist_ok=True)
    link = point / "MyDrive"
    if not link.exists():
        link.symlink_to(os.environ["TITLEGEN_FAKE_DRIVE"], target_is_directory=True)
    _mounted.append(point)
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms: int = 86400000) -> None:
    os.sync()
    for point in _mounted:
        (point / "MyDrive").unlink(missing_ok=True)
    _mounted.clear()
    print("Drive flushed and unmounted")

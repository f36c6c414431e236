"""The runtime a notebook starts in: on Colab, Drive and the pinned packages, installed without replacing
Colab's own CUDA torch, torchvision, torchaudio or numpy; Unsloth imported before anything imports
transformers; Drive flushed when the notebook ends. Outside Colab only the working directory is set.

Every Colab notebook gets its own fresh runtime, so this runs at the top of every notebook.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COLAB_ROOT = Path(os.environ.get("TITLEGEN_COLAB_ROOT", "/content"))  # Colab's local disk (tests emulate it)
DRIVE_MOUNT = COLAB_ROOT / "drive"
DRIVE_FOLDER = DRIVE_MOUNT / "MyDrive" / "titlegen"  # data, checkpoints and results: they survive a disconnect
COLAB_REQUIREMENTS = "requirements-colab.txt"

# Colab's own builds, made for its CUDA: an install never replaces them (pip gets them as constraints).
PROTECTED = ("torch", "torchvision", "torchaudio", "numpy")
# Installed with --no-deps, as Unsloth's Colab notebooks do: unsloth declares xformers, whose wheels are built
# for one torch version, so resolving its dependencies can replace Colab's torch.
NO_DEPS = frozenset({"unsloth", "unsloth-zoo", "bitsandbytes", "cut-cross-entropy", "torchao"})
# Needed only for training on a GPU: a runtime without one (or a CPU machine) skips them.
GPU_ONLY = NO_DEPS | {"tyro", "msgspec", "hf-transfer"}
IMPORT_NAMES = {"pyyaml": "yaml", "scikit-learn": "sklearn", "rouge-score": "rouge_score", "unsloth-zoo": "unsloth_zoo",
                "sentence-transformers": "sentence_transformers", "hf-transfer": "hf_transfer",
                "cut-cross-entropy": "cut_cross_entropy"}


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def gpu_available() -> bool:
    """A CUDA GPU is visible (asked of nvidia-smi, so torch is not imported before Unsloth)."""
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# ---------------------------------------------------------------- the pinned install

def _name(requirement: str) -> str:
    return re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def read_requirements(path: Path) -> dict[str, str]:
    """Requirement lines by package name, following `-r` includes; comments and blank lines skipped."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            found.update(read_requirements(path.parent / line[2:].strip()))
        elif line:
            found[_name(line)] = line
    return found


def installed_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def is_satisfied(requirement: str) -> bool:
    """The package is installed, at the pinned version where the line pins one."""
    have = installed_version(_name(requirement))
    pinned = requirement.split("==", 1)[1].strip() if "==" in requirement else None
    return have is not None and (pinned is None or have == pinned)


@dataclass
class InstallReport:
    """What the install did: packages installed, skipped (already at the pinned version), the seconds it took,
    where the wheels came from, and whether the running Python must be restarted to see them."""

    installed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    restart_needed: list[str] = field(default_factory=list)  # packages this Python had imported before
    source: str = "PyPI"

    def __str__(self) -> str:
        if not self.installed:
            return f"all {len(self.skipped)} pinned packages already installed"
        return (f"installed {len(self.installed)} package(s) from {self.source} in {self.seconds:.0f} s "
                f"({', '.join(self.installed)}); {len(self.skipped)} already at the pinned version")


def installed_versions() -> dict[str, str]:
    from importlib.metadata import distributions

    return {_name(d.metadata["Name"]): d.version for d in distributions() if d.metadata["Name"]}


def wheelhouse_for(root: Path, requirements: Path, gpu: bool) -> Path:
    """The wheel folder for these requirements on this Python and this runtime's torch and numpy: a new Colab
    image (other torch) or other pins get another folder."""
    import hashlib

    text = "".join(path.read_text(encoding="utf-8") for path in sorted(requirements.parent.glob("requirements*.txt")))
    kept = "".join(f"{name}={installed_version(name)};" for name in PROTECTED)
    key = hashlib.sha256(f"{text}|{sys.version_info[:2]}|{gpu}|{kept}".encode()).hexdigest()[:12]
    return root / f"py{sys.version_info[0]}{sys.version_info[1]}-{key}"


def install_requirements(requirements: Path, gpu: bool, wheelhouse: Path | None = None,
                         run: Callable[..., Any] = subprocess.run) -> InstallReport:
    """pip install what `requirements` pins and this Python lacks, with Colab's torch, torchvision, torchaudio
    and numpy as constraints (never replaced), the GPU stack with --no-deps (and only with a GPU).

    `wheelhouse` (a folder on Drive): the first runtime saves the wheels of every package its install changed
    there; later runtimes install exactly those from it, with no index and no dependency resolution."""
    started = time.perf_counter()
    wanted = {name: line for name, line in read_requirements(requirements).items() if gpu or name not in GPU_ONLY}
    report = InstallReport(skipped=sorted(n for n, line in wanted.items() if is_satisfied(line)))
    missing = {name: line for name, line in wanted.items() if name not in report.skipped}
    if not missing:
        return report
    report.restart_needed = sorted(n for n in missing if IMPORT_NAMES.get(n, n.replace("-", "_")) in sys.modules)
    kept = {name: have for name in PROTECTED if (have := installed_version(name))}
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    saved = sorted(wheelhouse.glob("*.whl")) if wheelhouse and (wheelhouse / "complete.json").is_file() else []
    if saved and run([*pip[:3], "install", *pip[3:], "--no-index", "--no-deps", *map(str, saved)],
                     check=False).returncode == 0 and all(is_satisfied(line) for line in missing.values()):
        report.source = f"the wheel folder {wheelhouse}"
    else:
        before = installed_versions()
        with tempfile.TemporaryDirectory(prefix="titlegen-pip-") as folder:
            constraints = Path(folder) / "constraints.txt"
            constraints.write_text("".join(f"{name}=={have}\n" for name, have in kept.items()))
            for no_deps, lines in ((False, [l for n, l in missing.items() if n not in NO_DEPS]),
                                   (True, [l for n, l in missing.items() if n in NO_DEPS])):
                if lines:
                    done = run([*pip[:3], "install", *pip[3:], "-c", str(constraints),
                                *(["--no-deps"] if no_deps else []), *lines], check=False)
                    if done.returncode != 0:
                        raise RuntimeError(f"pip could not install {', '.join(lines)} (exit code {done.returncode}); "
                                           "the output above says why")
        if wheelhouse is not None:
            _save_wheels(wheelhouse, {n: v for n, v in installed_versions().items() if before.get(n) != v}, pip, run)
    changed = [name for name, have in kept.items() if installed_version(name) != have]
    if changed:  # constraints make this impossible; checked because it would break the runtime silently
        raise RuntimeError(f"the install replaced Colab's {', '.join(changed)}: Runtime > Disconnect and delete "
                           "runtime, then start again")
    report.installed = sorted(missing)
    report.seconds = time.perf_counter() - started
    return report


def _save_wheels(wheelhouse: Path, changed: dict[str, str], pip: list[str], run: Callable[..., Any]) -> None:
    """Wheels of the packages an install changed, into `wheelhouse` (whole or not at all); a failure here only
    means the next runtime installs from PyPI again."""
    import shutil

    partial = wheelhouse.with_name(wheelhouse.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        done = run([*pip[:3], "wheel", *pip[3:], "--no-deps", "-w", str(partial),
                    *(f"{name}=={version}" for name, version in sorted(changed.items()))], check=False)
        if done.returncode != 0:
            raise OSError(f"pip wheel exit code {done.returncode}")
        (partial / "complete.json").write_text(json.dumps(changed, indent=1, sort_keys=True))
        shutil.rmtree(wheelhouse, ignore_errors=True)
        partial.rename(wheelhouse)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        print(f"[titlegen] the wheels were not saved to {wheelhouse} ({exc}); the next runtime installs from PyPI")


class RestartNeeded(SystemExit):
    """The install replaced modules this Python had already imported; only a fresh session sees the new ones."""


def restart_message(report: InstallReport) -> str:
    return (f"Restart needed: the install replaced {', '.join(report.restart_needed)}, which this session had "
            "already imported. Use Runtime > Restart session, then run this notebook again from the top "
            "(the packages stay installed).")


def _show_alert(text: str) -> None:
    """A message no one can miss in a notebook (plain text elsewhere)."""
    try:
        from IPython.display import HTML, display

        display(HTML(f'<div style="border:3px solid #b00020;background:#fdecea;padding:12px;font-size:1.2em">'
                     f"<b>{html.escape(text)}</b></div>"))
    except ImportError:
        pass
    print(text, file=sys.stderr)


# ---------------------------------------------------------------- the setup every notebook runs

@dataclass(frozen=True)
class Environment:
    """Where a notebook runs: Colab or not, the project folder, the Drive folder, and what was installed."""

    colab: bool
    project_root: Path
    drive_folder: Path | None  # None outside Colab: work and outputs default to outputs/ in the project
    installed: str
    gpu: bool
    unsloth: str  # "imported first", or why not


def mount_drive() -> None:
    if (DRIVE_MOUNT / "MyDrive").is_dir():
        return
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(str(DRIVE_MOUNT))


def import_unsloth_first(gpu: bool) -> str:
    """Import Unsloth before anything imports transformers, trl or peft (it patches them, and warns when it
    comes second); only where a GPU and Unsloth are present."""
    if not gpu or importlib.util.find_spec("unsloth") is None:
        return "not used (no GPU)" if not gpu else "not installed"
    late = sorted(name for name in ("transformers", "trl", "peft") if name in sys.modules)
    started = time.perf_counter()
    import unsloth  # noqa: F401

    seconds = time.perf_counter() - started
    if late:
        return f"imported after {', '.join(late)}: restart the session so Unsloth comes first"
    return f"imported first ({seconds:.0f} s)"


def setup_environment(install: bool = True, loads_models: bool = True) -> Environment:
    """Run once at the top of every notebook. On Colab: mount Drive, install the pinned requirements (Colab's
    CUDA stack kept) and, for notebooks that load a model, import Unsloth first. Everywhere: the project folder
    becomes the working directory, so relative paths mean the same in a notebook, under papermill and on the
    command line."""
    os.chdir(PROJECT_ROOT)
    gpu = gpu_available()
    if not in_colab():
        installed = "not needed outside Colab"
        drive = None
    else:
        mount_drive()
        drive = DRIVE_FOLDER
        if install:
            requirements = PROJECT_ROOT / COLAB_REQUIREMENTS
            report = install_requirements(requirements, gpu, wheelhouse_for(DRIVE_FOLDER / "wheels", requirements, gpu))
            installed = str(report)
            if report.restart_needed:
                _show_alert(restart_message(report))
                raise RestartNeeded(restart_message(report))
        else:
            installed = "skipped"
        if not gpu and loads_models:
            _show_alert("No GPU in this runtime: Runtime > Change runtime type > T4 GPU (training on the CPU "
                        "takes hours). Only 01_preprocess needs none.")
    unsloth = import_unsloth_first(gpu) if loads_models else "not needed by this notebook"
    env = Environment(in_colab(), PROJECT_ROOT, drive, installed, gpu, unsloth)
    where = "Colab" if env.colab else "local"
    print(f"[titlegen] {where} runtime; project {env.project_root}; GPU: {'yes' if gpu else 'no'}; "
          f"packages: {env.installed}; Unsloth: {unsloth}")
    return env


def finish_notebook(environment: Environment) -> str:
    """At a notebook's end: make sure what it wrote has reached Drive (Colab writes to Drive in the background;
    a runtime recycled before that loses it)."""
    os.sync()
    if not environment.colab:
        return "nothing to flush outside Colab"
    from google.colab import drive  # type: ignore[import-not-found]

    drive.flush_and_unmount()
    return ("Drive flushed: everything this notebook wrote is on Drive (and Drive is unmounted; "
            "run the setup cell again to keep working here)")

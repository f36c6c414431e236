"""The notebook series: the setup every notebook runs first, its Config, and headless runs under papermill.

Every notebook starts with `setup_environment()` (Colab: mount Drive, install the pinned requirements
once per runtime) and builds its settings with `notebook_config(...)` from its parameters cell.
`run_series` executes the notebooks in order with papermill, passing each the same resolved Config,
and stops at the first failing notebook with the cell and the error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from titlegen_lib.config import Config, ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = ("00_setup", "01_preprocess", "02_baseline", "03_finetune", "04_compare", "05_try_it")

DRIVE_MOUNT = Path("/content/drive")
DRIVE_PROJECT = DRIVE_MOUNT / "MyDrive" / "titlegen"  # work and outputs live on Drive, so they survive a disconnect
DRIVE_PATHS = {"work_dir": str(DRIVE_PROJECT / "work"), "output_dir": str(DRIVE_PROJECT / "outputs")}
COLAB_REQUIREMENTS = "requirements-colab.txt"


# ---------------------------------------------------------------- the setup cell

def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


@dataclass(frozen=True)
class Environment:
    """Where a notebook runs: Colab or not, the project folder, and the Drive folder for work and outputs."""

    colab: bool
    project_root: Path
    drive_folder: Path | None  # None outside Colab: work and outputs default to outputs/ in the project
    installed: str


def setup_environment(install: bool = True) -> Environment:
    """Run once at the top of every notebook. On Colab: mount Drive and install the pinned requirements
    (once per runtime). Everywhere: make the project folder the working directory, so relative paths
    mean the same in a notebook, under papermill and on the command line. Nothing else outside Colab."""
    os.chdir(PROJECT_ROOT)
    if not in_colab():
        env = Environment(False, PROJECT_ROOT, None, "not needed outside Colab")
    else:
        _mount_drive()
        env = Environment(True, PROJECT_ROOT, DRIVE_PROJECT, _install_colab_requirements() if install else "skipped")
    where = "Colab" if env.colab else "local"
    print(f"[titlegen] {where} runtime; project folder {env.project_root}; requirements: {env.installed}")
    return env


def _mount_drive() -> None:
    if (DRIVE_MOUNT / "MyDrive").is_dir():
        return
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(str(DRIVE_MOUNT))


def _install_colab_requirements() -> str:
    """pip install requirements-colab.txt unless this runtime already has (a marker keyed by the files' hash)."""
    requirements = PROJECT_ROOT / COLAB_REQUIREMENTS
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(PROJECT_ROOT.glob("requirements*.txt"))))
    marker = Path("/content") / f".titlegen-installed-{digest.hexdigest()[:12]}"
    if marker.is_file():
        return f"{COLAB_REQUIREMENTS} already installed in this runtime"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(requirements)],
                   cwd=PROJECT_ROOT, check=True)
    marker.write_text("ok")
    # pip may replace packages Colab had already imported; only a fresh session sees the new versions.
    return (f"installed {COLAB_REQUIREMENTS}; if a later cell fails on an import, use "
            "Runtime > Restart session and run the notebook again")


# ---------------------------------------------------------------- the parameters cell

def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and value.strip() == "")


def notebook_config(config_file: str | Path | None = None, **settings: Any) -> Config:
    """The notebook's Config: defaults < preset < `config_file` < the parameters cell's values.

    A parameter left "" or None is not set (the file or the preset decides). On Colab, work_dir and
    output_dir default to `/content/drive/MyDrive/titlegen/{work,outputs}` instead of the project folder.
    """
    chosen = {name: value for name, value in settings.items() if _is_set(value)}
    unknown = sorted(set(chosen) - {f.name for f in fields(Config)})
    if unknown:
        raise ConfigError(f"notebook parameter(s) {unknown} are not Config settings; "
                          "rename them to fields of titlegen_lib.Config")
    config = Config.from_file(config_file, **chosen) if _is_set(config_file) else Config.from_dict(chosen)
    if in_colab():
        defaults = {f.name: f.default for f in fields(Config)}
        moved = {k: v for k, v in DRIVE_PATHS.items() if getattr(config, k) == defaults[k]}
        if moved:
            config = config.replace(**moved)
    print(f"[titlegen] run {config.run_name!r}: preset {config.preset}, model {config.model_name}, "
          f"data {config.raw_dir or 'synthetic'}, work_dir {config.work_dir}, output_dir {config.output_dir}")
    return config


# ---------------------------------------------------------------- headless runs

class NotebookFailed(RuntimeError):
    """A notebook of the series failed; the message names the notebook, the cell and the error."""

    def __init__(self, notebook: str, message: str, executed: Path | None = None):
        self.notebook = notebook
        self.executed = executed
        super().__init__(message)


def select_notebooks(only: Sequence[str] = (), start: str | None = None) -> list[str]:
    """The notebooks to run, in series order: all, `only` some ("03", "03_finetune"), or `start` onwards."""
    if only and start:
        raise ConfigError("use either --only or --from, not both")
    if only:
        wanted = {find_notebook(key) for item in only for key in str(item).split(",") if key.strip()}
        return [name for name in NOTEBOOKS if name in wanted]
    if start:
        return list(NOTEBOOKS[NOTEBOOKS.index(find_notebook(start)):])
    return list(NOTEBOOKS)


def find_notebook(key: str) -> str:
    """The notebook a user means by "3", "03", "03_finetune", "finetune" or "03_finetune.ipynb"."""
    key = Path(key.strip()).stem
    for name in NOTEBOOKS:
        number, _, title = name.partition("_")
        if key in (name, number, title) or (key.isdigit() and int(key) == int(number)):
            return name
    raise ConfigError(f"notebook {key!r} is not in the series; choose one of {', '.join(NOTEBOOKS)}")


def kernel_name() -> str:
    """A Jupyter kernel that runs this interpreter (so papermill inside the venv uses the venv).

    "python3" normally resolves to the running interpreter; if another environment's spec shadows it,
    a "titlegen" kernel spec pointing at this interpreter is installed into this environment.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    for name in ("python3", "titlegen"):
        try:
            if _runs_this_interpreter(manager.get_kernel_spec(name).argv):
                return name
        except NoSuchKernel:
            continue
    from ipykernel.kernelspec import install

    install(kernel_name="titlegen", display_name="Python (titlegen)", prefix=sys.prefix)
    return "titlegen"


def _runs_this_interpreter(argv: list[str]) -> bool:
    if not argv:
        return False
    # jupyter_client substitutes sys.executable for a bare "python"/"python3"/"python3.11".
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    return argv[0] in bare or os.path.abspath(argv[0]) == os.path.abspath(sys.executable)


def kernel_manager_class() -> type:
    """Jupyter's kernel manager, talking to the kernel over local sockets (IPC) rather than TCP ports that
    any user of a shared machine could connect to; TCP where IPC does not exist (Windows)."""
    from jupyter_client import AsyncKernelManager
    from traitlets import CaselessStrEnum

    if os.name != "posix":
        return AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    return LocalKernelManager


def notebook_parameters(notebook: Path, config: Config, config_file: Path) -> dict[str, Any]:
    """Values for the notebook's declared parameters: `config_file` and the Config fields it names."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    values = config.to_dict()
    parameters: dict[str, Any] = {}
    for name in declared:
        if name == "config_file":
            parameters[name] = str(config_file)
        elif name in values:
            parameters[name] = values[name]
        else:
            raise ConfigError(f"{notebook.name}: parameter {name!r} is not a Config setting; "
                              "rename it to a field of titlegen_lib.Config")
    return parameters


@dataclass
class SeriesResult:
    """Where a headless run wrote its executed notebooks, and how long each took."""

    folder: Path
    config: Config
    executed: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def runs_folder(config: Config) -> Path:
    """`<output_dir>/runs/<timestamp>/`, made unique when two runs start in the same second."""
    base = Path(config.output_dir) / "runs" / time.strftime("%Y%m%d-%H%M%S")
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    folder.mkdir(parents=True)
    return folder


def absolute_paths(config: Config) -> Config:
    """The same Config with its folders absolute, because the notebooks run with the project as cwd."""
    changes = {name: str(Path(getattr(config, name)).resolve())
               for name in ("raw_dir", "work_dir", "output_dir") if getattr(config, name)}
    return config.replace(**changes)


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """The environment the kernels inherit: the project on PYTHONPATH, and OpenMP threads that sleep
    instead of spinning while they wait (spinning threads slow generation down on a CPU shared with other jobs)."""
    changes = {"PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    old = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_series(config: Config, notebooks: Sequence[str] | None = None, folder: Path | None = None,
               notebook_dir: Path = NOTEBOOK_DIR, progress: bool = True,
               say: Callable[[str], None] = print) -> SeriesResult:
    """Execute the notebooks in order with papermill; raise NotebookFailed at the first failure."""
    import papermill as pm

    config = absolute_paths(config)
    folder = Path(folder) if folder else runs_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "config.json"
    config.save(config_file)
    names = list(notebooks) if notebooks is not None else list(NOTEBOOKS)
    result = SeriesResult(folder, config)
    kernel = kernel_name()
    say(f"[titlegen] running {', '.join(names)} with preset {config.preset}; executed notebooks go to {folder}")
    with _kernel_environment():
        for position, name in enumerate(names, 1):
            source, executed = notebook_dir / f"{name}.ipynb", folder / f"{name}.ipynb"
            if not source.is_file():
                raise NotebookFailed(name, f"{source} does not exist; run `python notebooks/build_notebooks.py`")
            started = time.perf_counter()
            say(f"[titlegen] [{position}/{len(names)}] {name} ...")
            parameters = notebook_parameters(source, config, config_file)
            try:
                pm.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name=kernel,
                                    kernel_manager_class=kernel_manager_class(), cwd=str(PROJECT_ROOT),
                                    progress_bar=progress)
            except pm.PapermillExecutionError as exc:
                raise NotebookFailed(name, _failure_message(name, exc, executed), executed) from None
            except Exception as exc:  # the kernel died, could not start, or the notebook could not be read
                raise NotebookFailed(name, f"notebook {name} stopped: {type(exc).__name__}: {exc}; "
                                           f"see {executed}", executed) from exc
            result.executed[name] = executed
            result.seconds[name] = round(time.perf_counter() - started, 1)
            say(f"[titlegen] [{position}/{len(names)}] {name} done in {result.seconds[name]:.0f}s")
    say(f"[titlegen] all {len(names)} notebook(s) ran in {sum(result.seconds.values()):.0f}s; see {folder}")
    return result


def _failure_message(name: str, exc: Any, executed: Path) -> str:
    """One paragraph: which notebook, cell and line failed, the error, and where the full traceback is."""
    return (f"notebook {name} failed in cell In [{exc.exec_count}] at `{_failing_line(exc)}`: "
            f"{exc.ename}: {exc.evalue}\n"
            f"The executed notebook with the full traceback is {executed}; later notebooks were not run.")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _failing_line(exc: Any) -> str:
    """The cell's line that raised: IPython marks it with an arrow in the first traceback frame."""
    for frame in exc.traceback or []:
        for line in _ANSI.sub("", frame).splitlines():
            if line.lstrip().startswith("---->"):
                code = line.lstrip()[5:].strip()
                return re.sub(r"^\d+\s", "", code).strip()
    lines = [line.strip() for line in str(exc.source).splitlines() if line.strip()]
    return lines[-1] if lines else ""

"""The notebook series: each notebook's Config (one run's settings across Colab runtimes) and headless runs.

Every notebook starts with `colab.setup_environment()` and builds its settings with `notebook_config(...)`
from its parameters cell. `run_series` executes the notebooks in order with papermill, passing each the same
resolved Config, and stops at the first failing notebook with the cell and the error.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from titlegen_lib.colab import DRIVE_FOLDER, PROJECT_ROOT, in_colab
from titlegen_lib.config import Config, ConfigError, read_settings_file
from titlegen_lib.storage import read_json, write_json

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = ("00_setup", "01_preprocess", "02_baseline", "03_finetune", "04_compare", "05_try_it")
SETTINGS_FILE = "settings.json"  # a run's settings, under its folder in work_dir (Drive on Colab)

# Which notebooks' work a changed setting makes stale, by the setting's group (Config metadata).
STALE_AFTER = {
    "data": NOTEBOOKS[1:], "model": NOTEBOOKS[2:], "prompt": NOTEBOOKS[2:], "lora": NOTEBOOKS[3:],
    "trainer": NOTEBOOKS[3:], "training": NOTEBOOKS[3:], "generation": ("02_baseline", "04_compare"),
    "evaluation": ("02_baseline", "04_compare"),
}


# ---------------------------------------------------------------- the parameters cell: one run, many runtimes

def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and value.strip() == "")


def explicit_settings(config: Config) -> dict[str, Any]:
    """The values a run sets itself: those that differ from its preset's."""
    preset = Config.from_dict(preset=config.preset).to_dict()
    return {"preset": config.preset, **{k: v for k, v in config.to_dict().items() if v != preset[k]}}


def run_settings_path(work_dir: str | Path, run_name: str) -> Path:
    return Path(work_dir) / "runs" / run_name / SETTINGS_FILE


def notebook_config(config_file: str | Path | None = None, notebook: str | None = None, **form: Any) -> Config:
    """The notebook's Config, and the run's settings kept on Drive between notebooks.

    Every Colab notebook has a fresh runtime, so a run's settings live under its folder in work_dir
    (`runs/<run_name>/settings.json`). Layers: defaults < preset < the run's saved settings < `config_file` <
    this notebook's form. A form field left "" or None is not set: the saved value (or the file, or the preset)
    stands. The result is saved back, the differences are printed, and changes that make earlier notebooks'
    work stale say which to rerun. On Colab, work_dir and output_dir default to Drive.
    """
    chosen = {name: value for name, value in form.items() if _is_set(value)}
    unknown = sorted(set(chosen) - {f.name for f in fields(Config)})
    if unknown:
        raise ConfigError(f"notebook parameter(s) {unknown} are not Config settings; "
                          "rename them to fields of titlegen_lib.Config")
    from_file = read_settings_file(config_file) if _is_set(config_file) else {}
    wanted = {**from_file, **chosen}
    defaults = {f.name: f.default for f in fields(Config)}
    if in_colab():
        drive = {"work_dir": str(DRIVE_FOLDER / "work"), "output_dir": str(DRIVE_FOLDER / "outputs")}
        wanted = {**{k: v for k, v in drive.items() if k not in wanted}, **wanted}
    path = run_settings_path(wanted.get("work_dir", defaults["work_dir"]), wanted.get("run_name", defaults["run_name"]))
    saved = read_json(path) if path.is_file() else None
    config = Config.from_dict({**(saved["settings"] if saved else {}), **wanted})
    _report_changes(config, saved, path, notebook)
    write_json(path, {"settings": explicit_settings(config), "resolved": config.to_dict(),
                      "updated_by": notebook or "a notebook", "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return config


def _report_changes(config: Config, saved: dict[str, Any] | None, path: Path, notebook: str | None) -> None:
    """Print the run's settings, what this notebook changed, and which earlier notebooks to rerun."""
    print(f"[titlegen] run {config.run_name!r}: preset {config.preset}, model {config.model_name}, "
          f"data {config.raw_dir or 'synthetic'}, work_dir {config.work_dir}, output_dir {config.output_dir}")
    if saved is None:
        print(f"[titlegen] first notebook of this run: its settings are saved in {path}; later notebooks with "
              f"run_name={config.run_name!r} start from them")
        return
    before, now = saved["resolved"], config.to_dict()
    changed = {name: (before.get(name), value) for name, value in now.items() if before.get(name) != value}
    if not changed:
        print(f"[titlegen] settings as saved in {path} (by {saved.get('updated_by', 'a notebook')})")
        return
    print(f"[titlegen] changed from the run's saved settings ({path}):")
    for name, (old, new) in changed.items():
        print(f"    {name}: {old!r} -> {new!r}")
    groups = {f.name: f.metadata["group"] for f in fields(Config)}
    here = NOTEBOOKS.index(notebook) if notebook in NOTEBOOKS else len(NOTEBOOKS)
    stale = sorted({n for name in changed for n in STALE_AFTER.get(groups[name], ()) if NOTEBOOKS.index(n) < here})
    if stale:
        print(f"[titlegen] these changes make earlier work stale: rerun {', '.join(stale)} with run_name="
              f"{config.run_name!r} (or use a new run_name to keep both)")


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

        def _ip_default(self) -> str:  # the sockets go to a private temporary folder, not the working directory
            import tempfile

            return os.path.join(tempfile.mkdtemp(prefix="titlegen-kernel-"), "ipc")

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

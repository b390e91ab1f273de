"""Faults: a run killed or failing part-way leaves the previous report as it was, and the next run
succeeds; earlier runs are kept under history/; runs are deterministic."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import cvlib
from cvlib import runner
from conftest import PARAMS_DIR


def _copy_run(tiny_run: Path, tmp_path: Path) -> Path:
  out = tmp_path / "reports"
  shutil.copytree(tiny_run, out / "tiny")
  return out


def _start_run(out: Path, *overrides: str) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", "cvlib.cli", "run", str(PARAMS_DIR / "tiny.yaml"),
                           "--out", str(out), "--stages", "segment",
                           *(a for o in overrides for a in ("--set", o))],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_kernel_work(out: Path, timeout: float = 120) -> None:
  """Returns once the run's temporary folder holds the executing notebook.

  The folder starts as a copy of the last run, notebook included: papermill's own copy is the one
  whose parameters name the temporary folder.
  """
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    for nb in out.glob(".tiny.tmp-*/04_segment.ipynb"):
      with contextlib.suppress(OSError):
        if nb.parent.name in nb.read_text():
          return
    time.sleep(0.2)
  raise TimeoutError("the run never started its notebook")


def _fail_the_segment_stage(out: Path, tmp_path: Path, monkeypatch) -> None:
  """Runs the segment stage with a notebook that raises once the stage has opened its workspace
  in the run's folder (not after the stage's work: index.html is only written when every stage
  has succeeded, runner._finish); the run fails and keeps the failed notebook under failed/."""
  broken = tmp_path / "notebooks"
  broken.mkdir()
  for nb_path in (PARAMS_DIR.parent / "notebooks").glob("*.ipynb"):
    nb = nbformat.read(nb_path, as_version=4)
    if nb_path.stem == "04_segment":
      opened = next(i for i, c in enumerate(nb.cells) if "open_workspace(params" in c.source)
      boom = nbformat.v4.new_code_cell("raise RuntimeError('boom in segment')")
      nb.cells.insert(opened + 1, boom)
    nbformat.write(nb, broken / nb_path.name)
  monkeypatch.setenv("CVLIB_NOTEBOOKS", str(broken))
  with pytest.raises(runner.RunFailed, match="boom in segment") as err:
    cvlib.run(PARAMS_DIR / "tiny.yaml", out=out, stages=["segment"], log=lambda s: None)
  monkeypatch.delenv("CVLIB_NOTEBOOKS")
  assert err.value.notebook == out / "failed" / "tiny" / "04_segment.ipynb"
  assert "boom in segment" in err.value.notebook.with_suffix(".html").read_text()


def test_failed_and_killed_runs_keep_previous_report_and_next_run_succeeds(tiny_run, tmp_path,
                                                                         monkeypatch):
  """A run whose notebook fails, then one killed with SIGTERM, then one killed with SIGKILL,
  each leave the last report as it was; the next run succeeds and, with keep_history=1 and an
  older report already under history/, moves the last run there (its end time names the folder)
  and drops the older one.

  One folder takes the failure and both kills and then the one rerun (the failure and each
  signal had their own copy and rerun, and history a run of its own): whatever any of them left
  behind, the rerun finds it, and each run after the first started and reached its notebook, so
  no earlier one left a lock in the way. The failure and the SIGTERM go first: they leave no
  temporary folder, which is how the next run's notebook is told apart from a killed run's copy.
  """
  out = _copy_run(tiny_run, tmp_path)
  before = {p.name: p.read_bytes() for p in (out / "tiny").glob("*.*") if p.is_file()}
  _fail_the_segment_stage(out, tmp_path, monkeypatch)
  after = {p.name: p.read_bytes() for p in (out / "tiny").glob("*.*") if p.is_file()}
  assert after == before, "the failed run"
  assert not list(out.glob(".tiny.tmp-*")), "the failed run left the temporary folder"
  for sig in (signal.SIGTERM, signal.SIGKILL):
    proc = _start_run(out)
    _wait_for_kernel_work(out)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0, sig
    after = {p.name: p.read_bytes() for p in (out / "tiny").glob("*.*") if p.is_file()}
    assert after == before, sig
    if sig == signal.SIGTERM:  # a clean exit also removes its temporary folder
      assert not list(out.glob(".tiny.tmp-*")), "SIGTERM left the temporary folder"
      assert "Traceback" not in proc.stderr.read()
  # no stale lock, leftovers swept: the next run succeeds
  older = out / "history" / "tiny" / "2000-01-01T000000+0000"
  older.mkdir(parents=True)
  (older / "index.html").write_text("an older report")
  rerun = _start_run(out, "report.keep_history=1")
  assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
  assert not list(out.glob(".tiny.*-*")), "leftover temporary folders"
  assert (out / "tiny" / "index.html").read_bytes() != before["index.html"]
  _assert_last_run_kept_alone(tiny_run, out)


def _assert_last_run_kept_alone(tiny_run: Path, out: Path) -> None:
  """keep_history=1: history/ holds the run before the last one (the copy of ``tiny_run``) under
  its end time, without models, and no longer the older report."""
  ended = json.loads((tiny_run / "run.json").read_text())["ended"]
  history = sorted((out / "history" / "tiny").iterdir())
  assert [p.name for p in history] == [ended.replace(":", "")]
  kept = history[0]
  assert (kept / "index.html").is_file() and (kept / "metrics.json").is_file()
  assert not (kept / "models").exists(), "history keeps reports, not models"
  assert (out / "tiny" / "index.html").read_bytes() != (kept / "index.html").read_bytes()


def test_stop_while_copying_the_last_run_leaves_no_temporary_folder(tiny_run, tmp_path,
                                                                  monkeypatch):
  """A signal can land while a later-stage run copies the last run; the copy is cleaned up too."""
  out = _copy_run(tiny_run, tmp_path)
  copytree = shutil.copytree

  def copy_then_stop(*args, **kwargs):
    copytree(*args, **kwargs)
    raise SystemExit(143)  # what cvlib.cli's SIGTERM handler raises

  monkeypatch.setattr(shutil, "copytree", copy_then_stop)
  with pytest.raises(SystemExit):
    cvlib.run(PARAMS_DIR / "tiny.yaml", out=out, stages=["segment"], log=lambda s: None)
  assert not list(out.glob(".tiny.*-*")), "the copy of the last run was left behind"
  assert (out / "tiny" / "index.html").is_file()


# Previous runs kept under history/ (keep_history=1 with an older report there): checked by the
# rerun of test_failed_and_killed_runs_keep_previous_report_and_next_run_succeeds.


# Same params, same metrics.json: checked by tests/test_scoring.py's run --all test, whose good
# dataset is params/tiny.yaml (one report run serves both).

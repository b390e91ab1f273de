"""Takes the README's picture of a report: the top of a finished run's ``index.html``, as headless
Chromium draws it, and a note of which run it shows.

The picture (``docs/report-demo.png``) shows figures, so it must be of the run the docs' figures
come from: the note (``docs/report-demo.json``) keeps the sha256 of that run's ``metrics.json``
and of the picture, and ``tests/test_docs.py`` fails when the note no longer matches the demo's
snapshot (``benchmarks/results/reports/demo.metrics.json``) or the picture. After a demo rerun,
copy its ``metrics.json`` and ``run.json`` to the snapshot, run this script on the same folder
and ``docs/generate.py``, and commit them together.

Usage::

  python docs/screenshot.py reports/demo   # needs chromium (Debian: apt-get install chromium)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
PICTURE = DOCS / "report-demo.png"
NOTE = DOCS / "report-demo.json"
WINDOW = (1100, 1500)


def sha256(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def find_chromium() -> str | None:
  return shutil.which("chromium") or shutil.which("chromium-browser")


def take(run_dir: Path, picture: Path = PICTURE, note: Path = NOTE,
         window: tuple[int, int] = WINDOW) -> dict:
  """Draws ``run_dir/index.html`` into ``picture`` and writes ``note``; returns the note.

  Raises:
    FileNotFoundError: the folder is not a finished run, or chromium is not installed.
    RuntimeError: chromium failed or drew nothing.
  """
  missing = [n for n in ("index.html", "metrics.json", "run.json") if not (run_dir / n).is_file()]
  if missing:
    raise FileNotFoundError(f"{run_dir}: not a finished report run (no {', '.join(missing)})")
  chromium = find_chromium()
  if chromium is None:
    raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
  run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
  with tempfile.TemporaryDirectory(prefix="cvlib-shot-") as tmp:
    out = Path(tmp) / "shot.png"
    # offline: the report is self-contained; the profile is thrown away
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         f"--user-data-dir={tmp}/profile", f"--window-size={window[0]},{window[1]}",
         f"--screenshot={out}", (run_dir / "index.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0 or not out.is_file() or out.stat().st_size < 20_000:
      raise RuntimeError(f"chromium drew no picture (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}")
    picture.write_bytes(out.read_bytes())
  version = subprocess.run([chromium, "--version"], capture_output=True, text=True,
                           check=False).stdout.strip()
  record = {"what": "the top of the demo report's index.html, drawn by docs/screenshot.py",
            "dataset": run.get("dataset"), "git_commit": run.get("git_commit"),
            "run_ended": run.get("ended"), "window": list(window), "browser": version,
            "metrics_sha256": sha256(run_dir / "metrics.json"), "png_sha256": sha256(picture)}
  note.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
  return record


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("run_dir", type=Path, help="a finished report run, e.g. reports/demo")
  args = parser.parse_args(argv)
  try:
    record = take(args.run_dir)
  except (FileNotFoundError, RuntimeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"{PICTURE.relative_to(DOCS.parent)}: {record['dataset']} at {record['git_commit']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

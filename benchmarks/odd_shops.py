"""Every shop gets a report: the whole pipeline on generated odd shops.

For each shape of ``cvlib.data.odd_shops.SHAPES`` and each seed, writes the shop's files, runs
``cvlib run`` on them (tiny training settings) in a subprocess and records the exit status, the
wall time, whether a traceback reached stderr, whether index.html was written, and what the report
skipped and why (metrics.json ``skipped``). Target: no failed run and no traceback; exit 2 only for
truly invalid input, with its one-line message.

  python benchmarks/odd_shops.py                      # every shape, seeds 0 and 1 (38 shops)
  python benchmarks/odd_shops.py --seeds 0 1 2        # more seeds
  python benchmarks/odd_shops.py --shapes small_generic no_reviews --out /tmp/odd
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from cvlib.data import odd_shops

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "odd_shops.json"


def run_shop(shape: str, seed: int, work: Path) -> dict:
  """Writes and runs one shop; returns its record."""
  folder = work / "shops" / f"{shape}_{seed}"
  params = odd_shops.write_shop(shape, folder, seed=seed)
  out = work / "reports"
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "cvlib.cli", "run", str(params), "--out", str(out)],
                        capture_output=True, text=True)
  seconds = time.perf_counter() - start
  run_dir = out / f"{shape}_{seed}"
  metrics_path = run_dir / "metrics.json"
  metrics = json.loads(metrics_path.read_text()) if proc.returncode == 0 and metrics_path.exists() \
      else {}
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  return {"shape": shape, "seed": seed, "exit": proc.returncode, "seconds": round(seconds, 1),
          "traceback": "Traceback (most recent call last)" in proc.stderr,
          "index_html": (run_dir / "index.html").exists() and proc.returncode == 0,
          "skipped": metrics.get("skipped") or {}, "errors": errors[:3],
          "notes": metrics.get("notes") or {}}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shapes", nargs="*", default=list(odd_shops.SHAPES))
  parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
  parser.add_argument("--out", type=Path, default=Path("/tmp/cvlib-odd-shops"))
  parser.add_argument("--results", type=Path, default=RESULTS)
  args = parser.parse_args()
  records = []
  for seed in args.seeds:
    for shape in args.shapes:
      rec = run_shop(shape, seed, args.out)
      records.append(rec)
      print(f"{shape} seed {seed}: exit {rec['exit']}, {rec['seconds']:.0f} s, "
            f"skipped {sorted(rec['skipped']) or '-'}{' TRACEBACK' if rec['traceback'] else ''}"
            + (f" {rec['errors'][0]}" if rec["errors"] else ""), flush=True)
  summary = {"shops": len(records), "exit_0": sum(r["exit"] == 0 for r in records),
             "exit_2": sum(r["exit"] == 2 for r in records),
             "failed": sum(r["exit"] not in (0, 2) for r in records),
             "tracebacks": sum(r["traceback"] for r in records),
             "index_html": sum(r["index_html"] for r in records),
             "median_seconds": sorted(r["seconds"] for r in records)[len(records) // 2]}
  result = {"benchmark": "odd_shops", "machine": {"arch": platform.machine(), "cpus": os.cpu_count(),
                                                   "python": platform.python_version()},
            "settings": odd_shops.TINY_SETTINGS, "summary": summary, "shops": records}
  args.results.parent.mkdir(parents=True, exist_ok=True)
  args.results.write_text(json.dumps(result, indent=1))
  print(json.dumps(summary))
  return 0 if summary["failed"] == 0 and summary["tracebacks"] == 0 else 1


if __name__ == "__main__":
  sys.exit(main())

"""What ``cvlib.text.hostmem.keep_freed_memory`` buys: the MiniLM step with glibc's default malloc and
with cvlib's setting, in separate processes taking turns (the setting is process-wide).

Each worker process times ``--steps`` calls after two warm-up calls and reports the median
seconds per call, the minor page faults and the kernel (system) CPU seconds per call, from
``getrusage``. Results go to ``benchmarks/results/host_memory.json``.

    python benchmarks/host_memory.py [--ops train,inference] [--length 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(op: str, length: int, steps: int) -> dict:
  sys.path.insert(0, str(HERE))
  from encoder import JaxSide, _default_model_path  # imports cvlib.text.bert: the policy applies here
  from cvlib.text import hostmem
  side = JaxSide(argparse.Namespace(config="minilm", model_path=_default_model_path(),
                                    dtype="float32", attention="xla"))
  batch = side.batch(32, length)
  for _ in range(2):
    side.run(op, batch)
  before = resource.getrusage(resource.RUSAGE_SELF)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    side.run(op, batch)
    times.append(time.perf_counter() - start)
  after = resource.getrusage(resource.RUSAGE_SELF)
  return {"policy_applied": hostmem.keep_freed_memory(), "median_s": statistics.median(times),
          "times_s": times, "minor_faults_per_call": (after.ru_minflt - before.ru_minflt) / steps,
          "system_s_per_call": (after.ru_stime - before.ru_stime) / steps,
          "user_s_per_call": (after.ru_utime - before.ru_utime) / steps}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--ops", default="train,inference")
  p.add_argument("--length", type=int, default=128)
  p.add_argument("--rounds", type=int, default=3, help="processes per setting and op")
  p.add_argument("--steps", type=int, default=6)
  p.add_argument("--out", type=Path, default=HERE / "results" / "host_memory.json")
  p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    op, length, steps = args.worker
    print(json.dumps(worker(op, int(length), int(steps))))
    return
  results = []
  for op in args.ops.split(","):
    runs: dict[str, list[dict]] = {"default": [], "cvlib": []}
    for _ in range(args.rounds):
      for setting in runs:
        env = dict(os.environ)
        env.pop("CVLIB_MALLOC", None)
        if setting == "default":
          env["CVLIB_MALLOC"] = "default"
        out = subprocess.run([sys.executable, __file__, "--worker", op, str(args.length),
                              str(args.steps)], env=env, capture_output=True, text=True,
                             check=True).stdout
        runs[setting].append(json.loads(out.strip().splitlines()[-1]))
    row = {"op": op, "length": args.length, "batch": 32}
    for setting, rs in runs.items():
      row[setting] = {"median_s": statistics.median(r["median_s"] for r in rs),
                      "seq_per_s": 32 / statistics.median(r["median_s"] for r in rs),
                      "minor_faults_per_call": statistics.median(r["minor_faults_per_call"] for r in rs),
                      "system_s_per_call": statistics.median(r["system_s_per_call"] for r in rs),
                      "runs": rs}
    row["cvlib_over_default"] = row["cvlib"]["seq_per_s"] / row["default"]["seq_per_s"]
    print(f"{op} L={args.length}: default {row['default']['seq_per_s']:.1f} seq/s "
          f"({row['default']['minor_faults_per_call']:.0f} faults/call), cvlib "
          f"{row['cvlib']['seq_per_s']:.1f} seq/s ({row['cvlib']['minor_faults_per_call']:.0f}"
          f" faults/call): {row['cvlib_over_default']:.2f}x", flush=True)
    results.append(row)
  args.out.write_text(json.dumps({"benchmark": "host_memory", "model": "MiniLM-L6-H384",
                                  "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                  "cpus": os.cpu_count(), "load_avg": list(os.getloadavg()),
                                  "results": results}, indent=2))


if __name__ == "__main__":
  main()

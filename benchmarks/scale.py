"""Scale check: a whole `cvlib run` on 1 million customers and 10 million transactions.

The transactions are ``benchmarks/features.py``'s synthetic ones (order level: customer, order id,
timestamp, amount; no products or reviews, so the encoder stages have nothing to read and the run
is preprocessing, the behaviour value network, the baselines, the back-test and the forward scores
of every customer). They are written to a parquet file and read through the generic adapter, as a
user's export would be. The run is one ``cvlib run`` process; the JSON records its wall time, the
time of each stage (from run.json) and the peak resident memory of the largest process (the run or
one of its notebook kernels, from ``getrusage(RUSAGE_CHILDREN)``).

Usage::

  python benchmarks/scale.py                         # 10M / 1M; benchmarks/results/scale.json
  python benchmarks/scale.py --transactions 200000 --customers 20000 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import features as features_bench  # noqa: E402  (benchmarks/features.py: the data generator)

PARAMS = """\
dataset: scale
seed: 0
data:
  adapter: generic
  transactions:
    path: {path}
split:
  calibration_end: {cutoff}
  horizon_days: {horizon}
value:
  hidden: [64, 32]
  epochs: {epochs}
  batch_size: 8192
  patience: 3
"""


def main(argv: list[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--transactions", type=int, default=10_000_000)
  p.add_argument("--customers", type=int, default=1_000_000)
  p.add_argument("--epochs", type=int, default=20, help="value network epochs (upper bound)")
  p.add_argument("--work", type=Path, default=None, help="folder for data and run (default: tmp)")
  p.add_argument("--timeout", type=float, default=3600.0)
  p.add_argument("--out", type=Path, default=HERE / "results" / "scale.json")
  args = p.parse_args(argv)

  with tempfile.TemporaryDirectory(dir=args.work) as tmp:
    work = Path(tmp)
    t = time.perf_counter()
    tx = features_bench.make_transactions(args.transactions, args.customers)
    tx.to_parquet(work / "transactions.parquet", index=False)
    make_s = time.perf_counter() - t
    del tx
    params = work / "scale.yaml"
    params.write_text(PARAMS.format(path=work / "transactions.parquet",
                                    cutoff=features_bench.CUTOFF.isoformat(),
                                    horizon=features_bench.HORIZON_DAYS, epochs=args.epochs))
    cli = Path(sys.executable).parent / "cvlib"  # the console script beside this Python
    cmd = [str(cli), "run", str(params), "--out", str(work / "reports")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "benchmark": "scale", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_end": os.getloadavg()},
        "transactions": args.transactions, "customers": args.customers,
        "value_epochs": args.epochs, "make_data_s": make_s, "returncode": proc.returncode,
        "run_wall_s": wall, "peak_rss_mb_largest_process": peak_mb,
        "stderr_tail": proc.stderr[-3000:], "stdout_tail": proc.stdout[-3000:]}
    run_dir = work / "reports" / "scale"
    if proc.returncode == 0:
      run = json.loads((run_dir / "run.json").read_text())
      metrics = json.loads((run_dir / "metrics.json").read_text())
      result["seconds_per_stage"] = run.get("seconds_per_stage")
      result["counts"] = metrics.get("counts")
      result["clv_models"] = {k: {m: v[m] for m in ("gini", "decile_mape")}
                              for k, v in (metrics.get("clv") or {}).get("models", {}).items()}
      result["scores_rows"] = int(pd.read_parquet(run_dir / "scores.parquet",
                                                  columns=["customer_key"]).shape[0])
      result["index_html_mb"] = (run_dir / "index.html").stat().st_size / 1e6
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
  print(json.dumps({k: v for k, v in result.items() if "tail" not in k}, indent=2, default=str))
  return result


if __name__ == "__main__":
  main()

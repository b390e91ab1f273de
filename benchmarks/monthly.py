"""Monthly runs on Online Retail (#22): a run with ``data.until`` 2011-06-30, then one on the full
file; the second report's "since the last report" scores the first run's forward predictions on the
orders of July to December 2011. Writes the comparison to ``results/monthly_online_retail.json``
(``docs/generate.py`` shows it in docs/benchmarks.md). ``tests/test_monthly_real.py`` runs the same
two runs and checks the figures against an independent recomputation.

  python benchmarks/monthly.py --out /tmp/monthly              # the two runs (minutes each)
  python benchmarks/monthly.py --from-metrics first.json second.json   # from kept metrics.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "monthly_online_retail.json"
# the first run's horizon ends with the file (2011-07-01 + 162 days), so nothing is prorated
FIRST = ["data.until=2011-06-30", "split.calibration_end=null", "split.horizon_days=162"]


def summarise(first: dict, second: dict) -> dict:
  """The results file: the first run's split and back-test, the second's comparison."""
  clv = first.get("clv") or {}
  best = clv.get("scoring_model") or clv.get("best")  # the model scores.parquet came from
  since = second["since_last"]
  return {
      "date": dt.datetime.now().astimezone().isoformat(timespec="minutes"),
      "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
      "first": {"overrides": FIRST, "split": first["split"], "best": best,
                "backtest_gini": ((clv.get("models") or {}).get(best) or {}).get("gini")},
      "second": {"split": second["split"]},
      "since_last": {k: since[k] for k in ("previous", "forecast", "deciles")},
      "migration": {k: since["migration"][k] for k in ("stayed_in_segment",
                                                       "new_high_value_high_risk")},
      "drift_flagged": since["drift"]["flagged"],
  }


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", type=Path, default=Path("/tmp/cvlib-monthly"))
  ap.add_argument("--from-metrics", nargs=2, type=Path, metavar=("FIRST", "SECOND"))
  args = ap.parse_args()
  if args.from_metrics:
    first, second = (json.loads(p.read_text()) for p in args.from_metrics)
  else:
    import cvlib
    params = REPO / "params" / "online_retail.yaml"
    cvlib.run(params, out=args.out, overrides=FIRST)
    cvlib.run(params, out=args.out)
    prev = max((args.out / "history" / "online_retail").iterdir())
    first = json.loads((prev / "metrics.json").read_text())
    second = json.loads((args.out / "online_retail" / "metrics.json").read_text())
  RESULTS.write_text(json.dumps(summarise(first, second), indent=1) + "\n")
  print(f"wrote {RESULTS}")


if __name__ == "__main__":
  main()

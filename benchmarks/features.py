"""Benchmark: the per-customer RFM summary with a calibration/holdout split.

Ten million synthetic transactions of one million customers (by default), summarised per customer
(BTYD frequency / recency / T / monetary value over the calibration period, purchase days and spend
in the holdout) by:

- ``cvlib``: :func:`cvlib.data.features.compute_rfm_summary` (DuckDB SQL);
- ``cvlib_features``: :func:`cvlib.data.features.compute_customer_features`, everything the value models
  see (DuckDB; no items or reviews here), for scale (its holdout counts orders, not days);
- ``pandas``: the same summary as pandas groupbys;
- ``lifetimes``: ``lifetimes.utils.calibration_and_holdout_data`` (freq "D"), the BTYD library's
  function (its calibration part is ``summary_data_from_transaction_data``).

Each run is a fresh process (so its peak RSS is its own) reading the same parquet file; the
implementations take turns, one run each per round, ``--repeats`` rounds, so that load from other
work on a shared machine hits all of them alike. Only the summary call is timed (not the read);
the JSON holds every time, the median, the RSS after loading the data and the peak RSS. Each
process also writes its result, and the parent checks that the numbers agree on every customer
(cvlib vs pandas) and on a sample (vs lifetimes). lifetimes measures T to the last calibration
day, one day less than cvlib's T at the cutoff; the check allows exactly that shift.

Usage::

  python benchmarks/features.py     # 10M / 1M; writes benchmarks/results/features.json
  python benchmarks/features.py --transactions 200000 --customers 20000 --out /tmp/f.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
CUTOFF = dt.date(2024, 1, 1)
HORIZON_DAYS = 182
START = dt.date(2022, 1, 1)
END = dt.date(2024, 7, 1)
IMPLEMENTATIONS = ("cvlib", "cvlib_features", "pandas", "lifetimes")
COLUMNS = ("frequency", "recency_days", "T_days", "monetary_value", "holdout_days",
           "holdout_orders", "holdout_value", "holdout_order_value")


# --- data -----------------------------------------------------------------------------------------

def make_transactions(n_transactions: int, n_customers: int, seed: int = 0) -> pd.DataFrame:
  """Canonical transactions: every customer buys once, the rest of the purchases at random.

  Args:
    n_transactions: rows (>= n_customers).
    n_customers: distinct customers.
    seed: generator seed.

  Returns:
    DataFrame with customer_id (string), order_id (string), timestamp (datetime64[us]), amount.
  """
  if n_transactions < n_customers:
    raise ValueError(f"n_transactions ({n_transactions}) must be >= n_customers ({n_customers})")
  rng = np.random.default_rng(seed)
  span_s = (pd.Timestamp(END) - pd.Timestamp(START)).total_seconds()
  # first purchases over the first 60% of the window; repeats between the first one and the end
  first = rng.uniform(0, 0.6 * span_s, n_customers)
  who = np.concatenate([np.arange(n_customers),
                        rng.integers(0, n_customers, n_transactions - n_customers)])
  at = first[who] + rng.uniform(0, 1, n_transactions) * (span_s - first[who])
  at[:n_customers] = first
  ts = (np.datetime64(START, "us") + (at * 1e6).astype("timedelta64[us]"))
  amount = np.round(rng.lognormal(3.0, 0.8, n_transactions), 2)
  amount[rng.random(n_transactions) < 0.01] = 0.0  # some free orders, as in real data
  return pd.DataFrame({
      "customer_id": pd.array(np.array([f"C{i:07d}" for i in range(n_customers)])[who],
                              dtype="string"),
      "order_id": pd.array(np.char.add("O", np.arange(n_transactions).astype(str)), dtype="string"),
      "timestamp": ts.astype("datetime64[us]"), "amount": amount})


# --- implementations ------------------------------------------------------------------------------

def run_cvlib(tx: pd.DataFrame) -> pd.DataFrame:
  from cvlib.data import features
  return features.compute_rfm_summary(tx, CUTOFF, HORIZON_DAYS).set_index("customer_id")


def _order_value(out: pd.DataFrame) -> pd.DataFrame:
  """Mean holdout order value (lifetimes' monetary_value_holdout), 0 without holdout orders."""
  out["holdout_order_value"] = (out["holdout_value"] / out["holdout_orders"]).fillna(0.0)
  return out


def run_cvlib_features(tx: pd.DataFrame) -> pd.DataFrame:
  from cvlib.data import features, schema
  f = features.compute_customer_features(tx, schema.empty_table("items"),
                                         schema.empty_table("products"),
                                         schema.empty_table("reviews"), CUTOFF, HORIZON_DAYS)
  return f.set_index("customer_id")


def run_pandas(tx: pd.DataFrame) -> pd.DataFrame:
  """The summary with plain pandas groupbys (what an analyst would write)."""
  cut = pd.Timestamp(CUTOFF)
  end = cut + pd.Timedelta(days=HORIZON_DAYS)
  df = pd.DataFrame({"customer_id": tx["customer_id"], "day": tx["timestamp"].dt.floor("D"),
                     "amount": tx["amount"]})
  df = df[df["day"] < end]
  days = df.groupby(["customer_id", "day"], sort=False)["amount"].sum().reset_index()
  cal = days[days["day"] < cut]
  g = cal.groupby("customer_id")
  first = g["day"].transform("min")
  out = pd.DataFrame({"frequency": g.size() - 1,
                      "recency_days": (g["day"].max() - g["day"].min()).dt.days,
                      "T_days": (cut - g["day"].min()).dt.days})
  repeat = cal["amount"].where(cal["day"] != first)
  out["monetary_value"] = repeat.groupby(cal["customer_id"]).mean().fillna(0.0)
  hold = days[days["day"] >= cut].groupby("customer_id")["amount"].agg(["size", "sum"])
  out["holdout_days"] = hold["size"].reindex(out.index).fillna(0)
  orders = df[df["day"] >= cut].groupby("customer_id").size()
  out["holdout_orders"] = orders.reindex(out.index).fillna(0)
  out["holdout_value"] = hold["sum"].reindex(out.index).fillna(0.0)
  return out.astype("float64").sort_index()


def run_lifetimes(tx: pd.DataFrame) -> pd.DataFrame:
  from lifetimes.utils import calibration_and_holdout_data
  eps = pd.Timedelta(microseconds=1)  # lifetimes' periods end inclusively
  cut = pd.Timestamp(CUTOFF)
  r = calibration_and_holdout_data(
      tx, "customer_id", "timestamp", calibration_period_end=cut - eps,
      observation_period_end=cut + pd.Timedelta(days=HORIZON_DAYS) - eps, freq="D",
      monetary_value_col="amount")
  return pd.DataFrame({
      "frequency": r["frequency_cal"], "recency_days": r["recency_cal"],
      "T_days": r["T_cal"] + 1,  # lifetimes: T to the last calibration day; cvlib: to the cutoff
      "monetary_value": r["monetary_value_cal"], "holdout_days": r["frequency_holdout"],
      "holdout_order_value": r["monetary_value_holdout"]}).sort_index()


RUNNERS = {"cvlib": run_cvlib, "cvlib_features": run_cvlib_features, "pandas": run_pandas,
           "lifetimes": run_lifetimes}


# --- one implementation in its own process -------------------------------------------------------

def _rss_mb() -> tuple[float, float]:
  """(current RSS, peak RSS) of this process in MiB, from /proc."""
  fields = {}
  with open("/proc/self/status") as f:
    for line in f:
      key, _, value = line.partition(":")
      fields[key] = value.strip()
  return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def worker(impl: str, data: Path, repeats: int, result: Path, customers: Path | None) -> dict:
  """Loads the data, runs ``impl`` ``repeats`` times and saves its (last) output."""
  tx = pd.read_parquet(data)
  if customers is not None:  # a subsample: these customers' transactions only
    keep = pd.read_parquet(customers)["customer_id"]
    tx = tx[tx["customer_id"].isin(keep)].reset_index(drop=True)
  rss_loaded, _ = _rss_mb()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = RUNNERS[impl](tx)
    times.append(time.perf_counter() - t0)
  _, peak = _rss_mb()
  if "holdout_orders" in out and "holdout_value" in out:
    out = _order_value(out)
  out[[c for c in COLUMNS if c in out]].reset_index().to_parquet(result)
  return {"impl": impl, "rows": len(tx), "customers": int(tx["customer_id"].nunique()),
          "times_s": [round(t, 3) for t in times], "median_s": round(statistics.median(times), 3),
          "rss_after_load_mb": round(rss_loaded, 1), "peak_rss_mb": round(peak, 1),
          "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _spawn(impl: str, data: Path, repeats: int, result: Path, customers: Path | None) -> dict:
  cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, "--data", str(data),
         "--repeats", str(repeats), "--result", str(result)]
  if customers is not None:
    cmd += ["--subsample", str(customers)]
  env = {**os.environ, "PYTHONWARNINGS": "ignore"}
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if proc.returncode != 0:
    raise RuntimeError(f"{impl} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


# --- agreement ------------------------------------------------------------------------------------

def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
  """Max absolute and relative differences per shared column (same customers required)."""
  a = a.set_index("customer_id").sort_index()
  b = b.set_index("customer_id").sort_index()
  same_customers = a.index.equals(b.index)
  b = b.reindex(a.index)
  cols = [c for c in COLUMNS if c in a and c in b]
  out = {"same_customers": bool(same_customers), "n": len(a), "columns": cols}
  for col in cols:
    x, y = a[col].to_numpy(float), b[col].to_numpy(float)
    diff = np.abs(x - y)
    out[col] = {"max_abs": float(np.nanmax(diff)) if len(diff) else 0.0,
                "max_rel": float(np.nanmax(diff / np.maximum(np.abs(y), 1e-12)))
                if len(diff) else 0.0}
  out["identical"] = bool(same_customers and all(out[c]["max_rel"] <= 1e-9 or
                                                 out[c]["max_abs"] <= 1e-9 for c in cols))
  return out


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--transactions", type=int, default=10_000_000)
  p.add_argument("--customers", type=int, default=1_000_000)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--lifetimes-repeats", type=int, default=None,
                 help="repeats for lifetimes (default: --repeats)")
  p.add_argument("--lifetimes-max-rows", type=int, default=None,
                 help="run lifetimes on a customer subsample of about this many rows and "
                      "extrapolate linearly (only when the full set is infeasible)")
  p.add_argument("--sample-customers", type=int, default=2000,
                 help="customers in the agreement sample checked against lifetimes")
  p.add_argument("--impls", default=",".join(IMPLEMENTATIONS))
  p.add_argument("--cache", type=Path, default=HERE / ".cache")
  p.add_argument("--out", type=Path, default=HERE / "results" / "features.json")
  p.add_argument("--seed", type=int, default=0)
  # worker mode (internal)
  p.add_argument("--worker", choices=IMPLEMENTATIONS)
  p.add_argument("--data", type=Path)
  p.add_argument("--result", type=Path)
  p.add_argument("--subsample", type=Path)
  args = p.parse_args(argv)
  if args.worker:
    print(json.dumps(worker(args.worker, args.data, args.repeats, args.result, args.subsample)))
    return 0

  impls = [i for i in args.impls.split(",") if i]
  args.cache.mkdir(parents=True, exist_ok=True)
  data = args.cache / f"tx_{args.transactions}_{args.customers}_{args.seed}.parquet"
  if not data.exists():
    t0 = time.perf_counter()
    make_transactions(args.transactions, args.customers, args.seed).to_parquet(data)
    print(f"data: {data} written in {time.perf_counter() - t0:.1f} s", flush=True)
  ids = pd.read_parquet(data, columns=["customer_id"])["customer_id"].drop_duplicates()
  rng = np.random.default_rng(args.seed + 1)
  sample = ids.iloc[np.sort(rng.choice(len(ids), min(args.sample_customers, len(ids)),
                                       replace=False))]
  sample_path = args.cache / "sample_customers.parquet"
  sample.to_frame().to_parquet(sample_path)
  n_rows = pd.read_parquet(data, columns=["amount"]).shape[0]

  # rounds: each implementation once per round, in its own process, so that load from other
  # work on a shared machine hits every implementation alike
  plan = {}
  for impl in impls:
    repeats = args.repeats
    subsample = None
    if impl == "lifetimes":
      repeats = args.lifetimes_repeats or args.repeats
      if args.lifetimes_max_rows and n_rows > args.lifetimes_max_rows:
        share = args.lifetimes_max_rows / n_rows
        sub = ids.iloc[np.sort(rng.choice(len(ids), int(len(ids) * share), replace=False))]
        subsample = args.cache / "lifetimes_customers.parquet"
        sub.to_frame().to_parquet(subsample)
    plan[impl] = (repeats, subsample)
  procs: dict[str, list[dict]] = {impl: [] for impl in impls}
  for round_ in range(max(r for r, _ in plan.values())):
    for impl in impls:
      repeats, subsample = plan[impl]
      if round_ >= repeats:
        continue
      r = _spawn(impl, data, 1, args.cache / f"result_{impl}.parquet", subsample)
      procs[impl].append(r)
      print(f"round {round_ + 1}: {impl}: {r['times_s'][0]} s, peak RSS {r['peak_rss_mb']} MiB",
            flush=True)
  runs, results = {}, {}
  for impl, rs in procs.items():
    times = [r["times_s"][0] for r in rs]
    run = {"rows": rs[0]["rows"], "customers": rs[0]["customers"], "times_s": times,
           "median_s": round(statistics.median(times), 3),
           "rss_after_load_mb": max(r["rss_after_load_mb"] for r in rs),
           "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)}
    if plan[impl][1] is not None:
      scale = n_rows / run["rows"]
      run.update({"note": "run on a customer subsample and extrapolated linearly in rows",
                  "scale": round(scale, 3),
                  "extrapolated_median_s": round(run["median_s"] * scale, 1)})
    runs[impl] = run
    results[impl] = pd.read_parquet(args.cache / f"result_{impl}.parquet")

  # agreement: cvlib vs pandas and cvlib_features on every customer, vs lifetimes on the sample
  checks = {}
  base = results.get("cvlib")
  if base is not None:
    for impl in ("pandas", "cvlib_features"):
      if impl in results:
        checks[f"cvlib_vs_{impl}"] = compare(base, results[impl])
    if "lifetimes" in results:
      on_sample = base[base["customer_id"].isin(sample)]
      lt = results["lifetimes"]
      lt = lt[lt["customer_id"].isin(on_sample["customer_id"])]
      if len(lt) < len(on_sample):  # lifetimes ran on a subsample: check the shared customers
        on_sample = on_sample[on_sample["customer_id"].isin(lt["customer_id"])]
      checks["cvlib_vs_lifetimes_sample"] = compare(on_sample, lt)

  def median(impl: str) -> float | None:
    r = runs.get(impl)
    return None if r is None else r.get("extrapolated_median_s", r["median_s"])

  speedups = {}
  for peer in ("pandas", "lifetimes"):
    if median("cvlib") and median(peer):
      speedups[f"cvlib_vs_{peer}"] = round(median(peer) / median("cvlib"), 1)
  import duckdb
  import lifetimes
  report = {
      "benchmark": "per-customer RFM summary with calibration/holdout split",
      "transactions": n_rows, "customers": int(len(ids)),
      "cutoff": CUTOFF.isoformat(), "horizon_days": HORIZON_DAYS, "repeats": args.repeats,
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "python": platform.python_version(), "pandas": pd.__version__,
                  "numpy": np.__version__, "duckdb": duckdb.__version__,
                  "lifetimes": lifetimes.__version__, "duckdb_threads": 2},
      "runs": runs, "speedup": speedups, "agreement": checks,
      "targets": {"cvlib_vs_lifetimes_min": 20, "cvlib_vs_pandas_min": 3, "peak_rss_max_mb": 4096},
      "written": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(report, indent=2) + "\n")
  print(json.dumps({"speedup": speedups, **{k: v["median_s"] for k, v in runs.items()},
                    "identical": {k: v["identical"] for k, v in checks.items()}}))
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

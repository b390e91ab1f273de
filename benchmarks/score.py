"""Benchmark: scoring with a finished run's models (``cvlib score`` and ``cvlib.Scorer``).

Measures

- batch throughput: :meth:`cvlib.serve.scorer.Scorer.score_tables` on one million customers (by
  default) with the behaviour-only network (``ziln``: purchase history), in chunks of 50,000
  customers, written to parquet, with the ``top_drivers`` explanations as ``cvlib score`` writes
  them and without; and, on a subsample, with the text-aware network (``ziln_text``), whose
  reviews go through the fine-tuned encoder (extrapolated to the full set);
- per-customer latency (p50, p99) of :meth:`cvlib.serve.scorer.Scorer.score` on one customer's events,
  behaviour-only and text-aware, against a plain scikit-learn pipeline (StandardScaler +
  HistGradientBoostingRegressor) on the same features: model-only (features precomputed) and end
  to end (features computed from the events by the same function).

Data: the synthetic shop (``cvlib.data.synthetic``, 2,000 customers, cleaned) tiled with renamed
customers, orders and reviews up to the requested size, so orders, lines, products and reviews
have the demo's distributions at a fraction of the generator's cost. Models: a run of the
synthetic shop with the full six-layer MiniLM (one short fine-tuning epoch: its cost does not
matter here, its size does), unless ``--run-dir`` names an existing run.

Each measurement runs in a fresh process (peak RSS is its own); the JSON records the load average
of the machine around each one, since the 2 cores are shared with other work.

Usage::

  python benchmarks/score.py                 # 1M customers; writes benchmarks/results/score.json
  python benchmarks/score.py --customers 20000 --text-customers 300 --out /tmp/score.json
  python benchmarks/score.py --run-dir reports/demo
  python benchmarks/score.py --latency-only --customers 20000   # only the per-customer latency,
                                  # merged into the results file's "latency" (batch kept as it was)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
BASE_CUSTOMERS = 2000
CHUNK = 50_000
TARGETS = {"batch_1m_behaviour_s": 300, "batch_peak_rss_mb": 4096, "latency_p50_behaviour_ms": 20,
           "latency_p50_text_ms": 100}
BENCH_PARAMS = """\
dataset: score_bench
seed: 0
data: {adapter: synthetic, customers: 1000, seed: 5}
finetune: {encoder: minilm, num_layers: null, training: {epochs: 1, batch_size: 16},
           max_train_examples: 64, buckets: [32, 64, 128]}
value: {hidden: [64, 32], epochs: 30, patience: 5, text_dims: 4}
"""


def _rss_mb() -> tuple[float, float]:
  """(current RSS, peak RSS) of this process in MiB, from /proc."""
  fields = {}
  with open("/proc/self/status") as f:
    for line in f:
      key, _, value = line.partition(":")
      fields[key] = value.strip()
  return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _load() -> list[float]:
  return [round(x, 2) for x in os.getloadavg()]


# --- data ----------------------------------------------------------------------------------------

def make_tables(n_customers: int, folder: Path, seed: int = 11) -> None:
  """Writes cleaned canonical tables of ``n_customers`` customers into ``folder`` (parquet).

  The cleaned synthetic shop of :data:`BASE_CUSTOMERS` customers is repeated with every id
  suffixed by the copy number (products are shared).
  """
  from cvlib.data import synthetic
  from cvlib.data.adapters import Tables
  from cvlib.data.clean import clean_tables
  frames = synthetic.make_demo_data(n_customers=BASE_CUSTOMERS, seed=seed)
  from cvlib.data import schema
  tables = Tables(**{n: schema.coerce_table(n, frames[n]) for n in
                     ("customers", "transactions", "items", "products", "reviews")})
  clean, _ = clean_tables(tables)
  copies = -(-n_customers // BASE_CUSTOMERS)
  keep = set(clean.transactions["customer_id"].drop_duplicates().sort_values()
             .iloc[:n_customers]) if copies == 1 else None

  def tile(df: pd.DataFrame, id_cols: tuple[str, ...]) -> pd.DataFrame:
    parts = []
    for k in range(copies):
      part = df.copy()
      for col in id_cols:
        part[col] = part[col] + f"_{k}"
      parts.append(part)
    return pd.concat(parts, ignore_index=True)

  tx = clean.transactions if keep is None else clean.transactions[
      clean.transactions["customer_id"].isin(keep)]
  tx = tile(tx, ("customer_id", "order_id"))
  ids = tx["customer_id"].drop_duplicates()
  if len(ids) > n_customers:  # the last copy only partly
    ids = set(ids.iloc[:n_customers])
    tx = tx[tx["customer_id"].isin(ids)].reset_index(drop=True)
  items = tile(clean.items, ("order_id",))
  items = items[items["order_id"].isin(tx["order_id"])].reset_index(drop=True)
  reviews = tile(clean.reviews, ("review_id", "customer_id", "order_id"))
  reviews = reviews[reviews["customer_id"].isin(tx["customer_id"])].reset_index(drop=True)
  folder.mkdir(parents=True, exist_ok=True)
  for name, df in (("transactions", tx), ("items", items), ("products", clean.products),
                   ("reviews", reviews)):
    df.to_parquet(folder / f"{name}.parquet", index=False)


def read_tables(folder: Path, customers: set | None = None):
  from cvlib.data.adapters import Tables
  frames = {n: pd.read_parquet(folder / f"{n}.parquet")
            for n in ("transactions", "items", "products", "reviews")}
  if customers is not None:
    tx = frames["transactions"]
    frames["transactions"] = tx[tx["customer_id"].isin(customers)].reset_index(drop=True)
    frames["items"] = frames["items"][frames["items"]["order_id"].isin(
        frames["transactions"]["order_id"])].reset_index(drop=True)
    rv = frames["reviews"]
    frames["reviews"] = rv[rv["customer_id"].isin(customers)].reset_index(drop=True)
  return Tables(customers=pd.DataFrame(), **frames)


def build_run(out: Path) -> Path:
  """A finished run of the synthetic shop with the full MiniLM (the models to score with)."""
  import cvlib
  params = out / "score_bench.yaml"
  out.mkdir(parents=True, exist_ok=True)
  params.write_text(BENCH_PARAMS)
  cvlib.run(params, out=out / "reports")
  return out / "reports" / "score_bench"


# --- workers (each in its own process) ------------------------------------------------------------

def worker_batch(run_dir: Path, data: Path, model: str, customers: int | None, result: Path,
                 drivers: bool = True) -> dict:
  """Scores every customer (or the first ``customers``) in chunks; times cleaning separately."""
  from cvlib.data.clean import clean_tables
  from cvlib.serve.scorer import Scorer
  load_before = _load()
  keep = None
  if customers is not None:
    ids = pd.read_parquet(data / "transactions.parquet", columns=["customer_id"])["customer_id"]
    keep = set(ids.drop_duplicates().iloc[:customers])
  tables = read_tables(data, keep)
  rss_loaded, _ = _rss_mb()
  t0 = time.perf_counter()
  scorer = Scorer(run_dir, model=model, warm_up=False, drivers=drivers)
  load_s = time.perf_counter() - t0
  n_reviews = int(tables.reviews["text"].notna().sum())
  t0 = time.perf_counter()
  n = scorer.score_tables(tables, out=result, chunk_size=CHUNK)
  score_s = time.perf_counter() - t0
  _, peak = _rss_mb()
  t0 = time.perf_counter()
  clean_tables(tables)  # what `cvlib score` does before scoring, timed on its own
  clean_s = time.perf_counter() - t0
  _, peak_with_clean = _rss_mb()
  return {"model": model, "drivers": drivers, "customers": n, "transactions": len(tables.transactions),
          "items": len(tables.items), "reviews_with_text": n_reviews,
          "scorer_load_s": round(load_s, 2), "score_s": round(score_s, 2),
          "customers_per_s": round(n / score_s, 1), "clean_s": round(clean_s, 2),
          "rss_after_load_mb": round(rss_loaded, 1), "peak_rss_scoring_mb": round(peak, 1),
          "peak_rss_with_cleaning_mb": round(peak_with_clean, 1), "chunk_size": CHUNK,
          "load_avg_before": load_before, "load_avg_after": _load()}


def _quantiles(ms: list[float]) -> dict:
  a = np.asarray(ms)
  return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
          "p99_ms": round(float(np.percentile(a, 99)), 2),
          "mean_ms": round(float(a.mean()), 2)}


def worker_latency(run_dir: Path, data: Path, n_customers: int, seed: int) -> dict:
  """Per-customer latency of Scorer.score and of the scikit-learn peer, one customer a call."""
  from sklearn.ensemble import HistGradientBoostingRegressor
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  from cvlib.data import features as feats
  from cvlib.value import networks
  from cvlib.serve import scorer as scoring
  load_before = _load()
  tables = read_tables(data)
  rng = np.random.default_rng(seed)
  ids = tables.transactions["customer_id"].drop_duplicates()
  reviewed = tables.reviews.loc[tables.reviews["text"].notna(), "customer_id"].drop_duplicates()
  sample = list(ids.iloc[rng.choice(len(ids), n_customers, replace=False)])
  sample_text = list(reviewed.iloc[rng.choice(len(reviewed), min(n_customers, len(reviewed)),
                                              replace=False)])
  tx_by = dict(tuple(tables.transactions[tables.transactions["customer_id"].isin(
      set(sample) | set(sample_text))].groupby("customer_id")))
  events = {}
  for c in set(sample) | set(sample_text):
    tx = tx_by[c]
    events[c] = {"transactions": tx,
                 "items": tables.items[tables.items["order_id"].isin(tx["order_id"])],
                 "reviews": tables.reviews[tables.reviews["customer_id"] == c]}
  as_of = tables.transactions["timestamp"].max().date() + dt.timedelta(days=1)
  products = tables.products
  del tables

  plain = scoring.Scorer(run_dir, model="ziln")  # the service default: no top_drivers
  behaviour = scoring.Scorer(run_dir, model="ziln", drivers=True)
  text_plain = scoring.Scorer(run_dir, model="ziln_text")
  text = scoring.Scorer(run_dir, model="ziln_text", drivers=True)
  # the peer: trained on the run's back-test features and holdout spend, like the network
  cal = pd.read_parquet(run_dir / "artifacts" / "features.parquet")
  ref = behaviour.reference
  split = json.loads((run_dir / "artifacts" / "split.json").read_text())
  cutoff = dt.date.fromisoformat(split["cutoff"])
  X_cal = networks.predictor_inputs("ziln", behaviour.predictor,
                                    scoring.anchor_features(cal, ref.data_start, cutoff), None)
  peer = make_pipeline(StandardScaler(), HistGradientBoostingRegressor(max_iter=200,
                                                                        random_state=0))
  peer.fit(X_cal, np.log1p(cal["holdout_value"].to_numpy()))

  def features_of(ev, compute=feats.compute_features_small):
    f = compute(ev["transactions"], ev["items"], products, ev["reviews"], as_of, ref.horizon_days)
    return networks.predictor_inputs("ziln", behaviour.predictor,
                                     scoring.anchor_features(f, ref.data_start, as_of), None)

  def peer_end_to_end(ev):  # the same features (the scorer's path), then the peer's model
    return np.expm1(peer.predict(features_of(ev)))

  X_one = {c: features_of(events[c]) for c in sample}

  def timed(fn, customers, warm=3) -> list[float]:
    for c in customers[:warm]:
      fn(c)
    out = []
    for c in customers:
      t0 = time.perf_counter()
      fn(c)
      out.append((time.perf_counter() - t0) * 1e3)
    return out

  interval = ref.interval
  # one thread for every library: with more, OpenMP (the peer) and XLA spin against each other
  # and against the other work on the machine, and p99 measures the contention
  import threadpoolctl
  limiter = threadpoolctl.threadpool_limits(limits=1)
  results = {
      "scorer_behaviour": timed(lambda c: plain.score(**events[c], as_of=as_of), sample),
      "scorer_behaviour_no_cleaning": timed(
          lambda c: plain.score(**events[c], as_of=as_of, clean=False), sample),
      "scorer_behaviour_with_drivers": timed(
          lambda c: behaviour.score(**events[c], as_of=as_of), sample),
      "scorer_text": timed(lambda c: text_plain.score(**events[c], as_of=as_of), sample_text),
      "scorer_text_with_drivers": timed(lambda c: text.score(**events[c], as_of=as_of),
                                        sample_text),
      "peer_sklearn_end_to_end": timed(lambda c: peer_end_to_end(events[c]), sample),
      "network_only": timed(lambda c: scoring.predict_values(behaviour.predictor, X_one[c],
                                                             interval=interval), sample),
      "peer_sklearn_model_only": timed(lambda c: peer.predict(X_one[c]), sample),
      "features_only": timed(lambda c: features_of(events[c]), sample),
      "features_only_duckdb": timed(
          lambda c: features_of(events[c], feats.compute_customer_features), sample),
  }
  limiter.restore_original_limits()
  n_reviews = [int(events[c]["reviews"]["text"].notna().sum()) for c in sample_text]
  out = {k: _quantiles(v) for k, v in results.items()}
  out["text_customers_reviews"] = {"mean": round(float(np.mean(n_reviews)), 2),
                                   "max": int(np.max(n_reviews))}
  out["encoder"] = {"layers": text.encoder.bert.config.num_layers,
                    "buckets": list(text.buckets), "batch": "one review per call"}
  out["load_avg_before"] = load_before
  out["load_avg_after"] = _load()
  return out


def _spawn(args: list[str]) -> dict:
  cmd = [sys.executable, str(Path(__file__).resolve()), *args]
  env = {**os.environ, "PYTHONWARNINGS": "ignore"}
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--customers", type=int, default=1_000_000)
  p.add_argument("--text-customers", type=int, default=2000,
                 help="customers of the text-aware batch run (extrapolated to --customers)")
  p.add_argument("--latency-customers", type=int, default=200)
  p.add_argument("--run-dir", type=Path, default=None,
                 help="an existing run folder to score with (default: build one)")
  p.add_argument("--cache", type=Path, default=HERE / ".cache")
  p.add_argument("--out", type=Path, default=HERE / "results" / "score.json")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--latency-only", action="store_true",
                 help="measure only the per-customer latency and merge it into --out")
  # worker mode (internal)
  p.add_argument("--worker", choices=("batch", "latency"))
  p.add_argument("--model")
  p.add_argument("--data", type=Path)
  p.add_argument("--limit", type=int)
  p.add_argument("--result", type=Path)
  p.add_argument("--no-drivers", dest="drivers", action="store_false")
  args = p.parse_args(argv)
  if args.worker == "batch":
    print(json.dumps(worker_batch(args.run_dir, args.data, args.model, args.limit, args.result,
                                  args.drivers)))
    return 0
  if args.worker == "latency":
    print(json.dumps(worker_latency(args.run_dir, args.data, args.limit, args.seed)))
    return 0

  args.cache.mkdir(parents=True, exist_ok=True)
  run_dir = args.run_dir
  if run_dir is None:
    run_dir = args.cache / "run" / "reports" / "score_bench"
    if not (run_dir / "models" / "manifest.json").exists():
      t0 = time.perf_counter()
      build_run(args.cache / "run")
      print(f"models: {run_dir} built in {time.perf_counter() - t0:.0f} s", flush=True)
  data = args.cache / f"score_tables_{args.customers}"
  if not (data / "reviews.parquet").exists():
    t0 = time.perf_counter()
    make_tables(args.customers, data)
    print(f"data: {data} written in {time.perf_counter() - t0:.1f} s", flush=True)
  common = ["--run-dir", str(run_dir), "--data", str(data)]
  if args.latency_only:
    return _latency_only(args, run_dir, common)
  batch = _spawn(["--worker", "batch", "--model", "ziln", *common,
                  "--result", str(args.cache / "scores_behaviour.parquet")])
  print(f"batch ziln: {batch['customers']:,} customers in {batch['score_s']} s "
        f"({batch['customers_per_s']:,.0f}/s), peak RSS {batch['peak_rss_scoring_mb']} MiB",
        flush=True)
  plain = _spawn(["--worker", "batch", "--model", "ziln", "--no-drivers", *common,
                  "--result", str(args.cache / "scores_behaviour_plain.parquet")])
  print(f"batch ziln without drivers: {plain['score_s']} s "
        f"({plain['customers_per_s']:,.0f}/s), peak RSS {plain['peak_rss_scoring_mb']} MiB",
        flush=True)
  text = _spawn(["--worker", "batch", "--model", "ziln_text", *common, "--limit",
                 str(args.text_customers), "--result", str(args.cache / "scores_text.parquet")])
  text["extrapolated_s_for_all"] = round(batch["customers"] / text["customers_per_s"], 1)
  print(f"batch ziln_text: {text['customers']:,} customers in {text['score_s']} s "
        f"({text['customers_per_s']:,.1f}/s)", flush=True)
  latency = _spawn(["--worker", "latency", *common, "--limit", str(args.latency_customers),
                    "--seed", str(args.seed)])
  print(json.dumps({k: v for k, v in latency.items() if isinstance(v, dict)}, indent=1),
        flush=True)

  import duckdb
  import jax
  import sklearn
  manifest = json.loads((run_dir / "models" / "manifest.json").read_text())
  report = {
      "benchmark": "scoring with a finished run's models: batch throughput and per-customer "
                   "latency",
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "python": platform.python_version(), "jax": jax.__version__,
                  "duckdb": duckdb.__version__, "scikit-learn": sklearn.__version__,
                  "pandas": pd.__version__, "note": "2 cores shared with other work: see the "
                                                    "load averages"},
      "models": {"run_dir": str(run_dir), "dataset": manifest["dataset"],
                 "encoder_layers": manifest["encoder"]["config"]["num_layers"] if
                 manifest.get("encoder") else None,
                 "networks": {k: v["hidden"] for k, v in manifest["value_models"].items()}},
      "data": {"customers": batch["customers"], "transactions": batch["transactions"],
               "items": batch["items"], "reviews_with_text": batch["reviews_with_text"],
               "how": f"the cleaned synthetic shop ({BASE_CUSTOMERS} customers) tiled with "
                      "renamed ids"},
      "batch_behaviour": batch,
      "batch_behaviour_no_drivers": plain,
      "batch_text_subsample": {**text, "note": "text-aware network on the first "
                               f"{text['customers']:,} customers (their reviews through the "
                               "encoder); extrapolated_s_for_all scales by customers"},
      "latency": latency,
      "targets": TARGETS,
      "verdict": {
          "batch_1m_behaviour_under_5_min": batch["score_s"] + batch["clean_s"]
          < TARGETS["batch_1m_behaviour_s"] if batch["customers"] >= 1_000_000 else None,
          "batch_1m_behaviour_s_with_cleaning": round(batch["score_s"] + batch["clean_s"], 1),
          "batch_1m_behaviour_no_drivers_s_with_cleaning": round(plain["score_s"]
                                                                 + plain["clean_s"], 1),
          "batch_peak_rss_under_4_gb": batch["peak_rss_with_cleaning_mb"]
          < TARGETS["batch_peak_rss_mb"],
          "latency_p50_behaviour_under_20_ms":
              latency["scorer_behaviour"]["p50_ms"] < TARGETS["latency_p50_behaviour_ms"],
          "latency_p50_text_under_100_ms":
              latency["scorer_text"]["p50_ms"] < TARGETS["latency_p50_text_ms"]},
      "when": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(report, indent=2))
  print(f"wrote {args.out}")
  return 0


def _latency_only(args: argparse.Namespace, run_dir: Path, common: list[str]) -> int:
  """The latency worker alone, its figures merged into the results file (batch figures kept,
  with the date of their own run)."""
  latency = _spawn(["--worker", "latency", *common, "--limit", str(args.latency_customers),
                    "--seed", str(args.seed)])
  print(json.dumps({k: v for k, v in latency.items() if isinstance(v, dict)}, indent=1),
        flush=True)
  report = json.loads(args.out.read_text())
  report["latency"] = latency
  report["latency_when"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
  report["latency_run_dir"] = str(run_dir)
  report["verdict"]["latency_p50_behaviour_under_20_ms"] = (
      latency["scorer_behaviour"]["p50_ms"] < TARGETS["latency_p50_behaviour_ms"])
  report["verdict"]["latency_p50_text_under_100_ms"] = (
      latency["scorer_text"]["p50_ms"] < TARGETS["latency_p50_text_ms"])
  args.out.write_text(json.dumps(report, indent=2))
  print(f"wrote {args.out} (latency only)")
  return 0


if __name__ == "__main__":
  sys.exit(main())

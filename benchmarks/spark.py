"""Benchmark: customer features and scoring on DuckDB and on Spark (local[1], local[2]).

``spark_local1_one_core`` is ``local[1]`` with its whole process tree held to one core (CPU
affinity): on the whole machine ``local[1]`` has one task thread, but its JVM compiles code and
collects garbage, and its Python workers score, on the second core as well, so local[2] against it
is not what the second core buys; against the one-core run it is.

For each size (``--customers``, synthetic customers with 10 orders each) and each engine it
measures, file to file:

- features: the transactions (a parquet folder) -> ``compute_customer_features`` -> parquet. DuckDB
  reads the folder into pandas and runs cvlib's query; Spark reads the folder and runs the same
  query transpiled (``cvlib.data.spark``);
- scoring: the same transactions -> features -> the behaviour-only value network (``ziln``, no
  explanations) -> parquet. DuckDB: ``Scorer.score_tables`` in chunks of 50,000 customers;
  Spark: ``score_spark`` (mapInPandas, the models loaded once per Python worker).

Each measurement runs in a fresh process; its peak memory is the largest sum of the resident
memory of that process and all its children (the JVM and Spark's Python workers), sampled every
0.2 s. Spark's session start (JVM launch) is timed apart from the job: a cluster keeps its
session. Wall times are medians of ``--repeats`` runs. The JSON records the load average around
each run: the machine's 2 cores may be shared with other work.

Models: ``--run-dir`` names a finished run; by default a run of ``params/tiny.yaml`` is made once
under benchmarks/.cache/spark/ (its value network's size, not its quality, matters here).

Usage::

  python benchmarks/spark.py --customers 1000000 --customers 10000000
  python benchmarks/spark.py --customers 20000 --repeats 1 --out /tmp/spark.json
  python benchmarks/spark.py --memory --customers 50000 --customers 100000 --customers 200000
  python benchmarks/spark.py --customers 10000000 --repeats 1 --engines spark_local1 \
      --tasks score --merge --note "..."   # add measurements to the results file
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib.config import SparkConfig

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache" / "spark"
ORDERS_PER_CUSTOMER = 10
START, END = dt.date(2023, 1, 1), dt.date(2025, 1, 1)  # orders in [START, END)
CUTOFF, HORIZON_DAYS = dt.date(2024, 7, 1), 180  # features: calibration before, holdout after
AS_OF = END  # scoring day
ENGINES = {"duckdb": None, "spark_local1": "local[1]", "spark_local2": "local[2]",
           "spark_local1_one_core": "local[1]"}
# Engines whose process tree (the JVM and Python workers included) may run on one core only: on
# the whole machine, local[1]'s JVM compiles and collects garbage, and its Python workers score,
# on the other core while its one task thread runs.
ONE_CORE = {"spark_local1_one_core"}
TASKS = ("features", "score")
CHUNK = 50_000
ROWS_PER_FILE = 1_000_000
PER_PARTITION = 25_000  # customers per shuffle partition in the --memory measurement


# --- data ----------------------------------------------------------------------------------------

def make_transactions(n_customers: int, folder: Path, seed: int = 0) -> None:
  """``n_customers`` x 10 orders as a parquet folder of canonical transactions (several files).

  Order times are uniform over two years, amounts log-normal (median 40); customer and order ids
  are strings as cvlib's canonical tables hold them.
  """
  import pyarrow as pa
  import pyarrow.parquet as pq
  tmp = folder.with_name(folder.name + ".tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  rng = np.random.default_rng(seed)
  n = n_customers * ORDERS_PER_CUSTOMER
  span_s = (END - START).days * 86400
  start = np.datetime64(START, "s")
  for k, lo in enumerate(range(0, n, ROWS_PER_FILE)):
    hi = min(n, lo + ROWS_PER_FILE)
    rows = np.arange(lo, hi)
    table = pa.table({
        "customer_id": pa.array(np.char.add("c", (rows // ORDERS_PER_CUSTOMER).astype(str))),
        "order_id": pa.array(np.char.add("o", rows.astype(str))),
        "timestamp": pa.array((start + rng.integers(0, span_s, hi - lo).astype("timedelta64[s]"))
                              .astype("datetime64[us]")),
        "amount": pa.array(np.round(rng.lognormal(np.log(40), 0.8, hi - lo), 2))})
    pq.write_table(table, tmp / f"part-{k:05d}.parquet")
  shutil.rmtree(folder, ignore_errors=True)
  os.replace(tmp, folder)


def data_folder(n_customers: int) -> Path:
  folder = CACHE / f"tx_{n_customers}"
  if not folder.exists():
    make_transactions(n_customers, folder)
  return folder


def build_run(out: Path) -> Path:
  """A finished run of params/tiny.yaml: the models to score with."""
  import cvlib
  run = out / "tiny"
  if not (run / "models" / "manifest.json").exists():
    cvlib.run(REPO / "params" / "tiny.yaml", out=out, log=lambda line: None)
  return run


# --- one measurement (in its own process) --------------------------------------------------------

def _read_pandas(folder: Path) -> pd.DataFrame:
  from cvlib.data import schema
  return schema.coerce_table("transactions", pd.read_parquet(folder))


def measure_one(engine: str, task: str, data: Path, out: Path, run_dir: Path,
                partitions: int, warm: bool = False) -> dict:
  """Runs one task on one engine (Spark with ``partitions`` shuffle partitions); returns its
  timings (seconds). ``warm``: a Spark job runs a second time in the same session, timed as
  ``warm_job_s`` (what a session kept between jobs sees: JVM code compiled, workers loaded)."""
  import warnings
  warnings.simplefilter("ignore")
  shutil.rmtree(out, ignore_errors=True)
  if engine in ONE_CORE:  # before the JVM starts: it and its Python workers inherit the mask
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  master = ENGINES[engine]
  timings = {}
  if master is None:
    from cvlib.data import features, schema
    t0 = time.perf_counter()
    tx = _read_pandas(data)
    if task == "features":
      f = features.compute_customer_features(tx, schema.empty_table("items"),
                                             schema.empty_table("products"),
                                             schema.empty_table("reviews"), CUTOFF, HORIZON_DAYS)
      f.to_parquet(out)
      rows = len(f)
    else:
      from cvlib.data.adapters import Tables
      from cvlib.serve import scorer as scoring
      scorer = scoring.Scorer(run_dir, model="ziln", warm_up=False, drivers=False)
      tables = Tables(customers=pd.DataFrame(), transactions=tx, items=schema.empty_table("items"),
                      products=scorer.catalogue, reviews=schema.empty_table("reviews"))
      rows = scorer.score_tables(tables, as_of=AS_OF, out=out, chunk_size=CHUNK)
    timings["job_s"] = time.perf_counter() - t0
  else:
    from cvlib.data import spark as spark_engine
    t0 = time.perf_counter()
    session = spark_engine.get_session(master, app_name="cvlib-bench",
                                       shuffle_partitions=partitions,
                                       conf={"spark.driver.memory": "4g"})
    timings["session_start_s"] = time.perf_counter() - t0

    def job() -> int:
      if task == "features":
        f = spark_engine.compute_customer_features(session, data, cutoff=CUTOFF,
                                                   horizon_days=HORIZON_DAYS)
        f.write.mode("overwrite").parquet(str(out))
        return session.read.parquet(str(out)).count()
      from cvlib.serve import spark_scoring
      scores = spark_scoring.score_spark(session, run_dir, str(data), as_of=AS_OF, model="ziln",
                                         drivers=False)
      return spark_scoring.write_scores(scores, out)

    t0 = time.perf_counter()
    rows = job()
    timings["job_s"] = time.perf_counter() - t0
    if warm:  # the same job again in the same session: its JVM compiled, its workers loaded
      t0 = time.perf_counter()
      job()
      timings["warm_job_s"] = time.perf_counter() - t0
    session.stop()
  timings["rows"] = int(rows)
  return timings


def definition_cost(repeats: int = 20) -> dict:
  """What the one definition costs: the query's size and SQLGlot's transpile time (uncached)."""
  import sqlglot

  from cvlib.data import features
  sql = features.customer_features_sql(CUTOFF, HORIZON_DAYS)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    tree = sqlglot.parse_one(sql, read="duckdb")
    tree.set("order", None)
    tree.sql(dialect="spark")
    times.append(time.perf_counter() - t0)
  return {"sql_lines": len(sql.strip().splitlines()), "sqlglot": sqlglot.__version__,
          "transpile_ms": round(1000 * statistics.median(times), 1)}


def _tree_rss_mb(proc) -> float:
  import psutil
  total = 0
  for p in [proc] + proc.children(recursive=True):
    try:
      total += p.memory_info().rss
    except psutil.Error:
      pass
  return total / 2**20


def _roles_rss_mb(proc) -> dict[str, float]:
  """Resident memory by role: the measured process (the Spark driver's Python), the JVM, and
  the other Python processes under it (Spark's Python workers: all together and the largest)."""
  import psutil
  driver = jvm = 0
  workers = []
  for p in [proc] + proc.children(recursive=True):
    try:
      rss, name = p.memory_info().rss, p.name()
    except psutil.Error:
      continue
    if p.pid == proc.pid:
      driver = rss
    elif name == "java":
      jvm += rss
    else:
      workers.append(rss)
  return {"driver_python_mb": driver / 2**20, "jvm_mb": jvm / 2**20,
          "python_workers_mb": sum(workers) / 2**20,
          "largest_python_worker_mb": max(workers, default=0) / 2**20}


def run_measurement(engine: str, task: str, data: Path, out: Path, run_dir: Path,
                    partitions: int, warm: bool = False) -> dict:
  """One measurement in a fresh process, its peak memory sampled from outside (in all and by
  role: :func:`_roles_rss_mb`)."""
  import psutil
  cmd = [sys.executable, __file__, "--one", engine, task, str(data), str(out), str(run_dir),
         "--partitions", str(partitions)] + (["--warm"] if warm else [])
  load_before = [round(x, 2) for x in os.getloadavg()]
  t0 = time.perf_counter()
  child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
  proc = psutil.Process(child.pid)
  peak = 0.0
  roles: dict[str, float] = {}
  while child.poll() is None:
    peak = max(peak, _tree_rss_mb(proc))
    for role, mb in _roles_rss_mb(proc).items():
      roles[role] = max(roles.get(role, 0.0), mb)
    time.sleep(0.2)
  stdout, stderr = child.communicate()
  wall = time.perf_counter() - t0
  if child.returncode != 0:
    raise RuntimeError(f"{engine} {task} failed ({child.returncode}): {stderr[-2000:]}")
  result = json.loads(stdout.strip().splitlines()[-1])
  result.update(process_s=round(wall, 2), peak_rss_mb=round(peak, 1),
                peak_rss_by_role_mb={k: round(v, 1) for k, v in roles.items()},
                load_avg_before=load_before,
                load_avg_after=[round(x, 2) for x in os.getloadavg()])
  shutil.rmtree(out, ignore_errors=True)
  if out.is_file():
    out.unlink()
  return result


def _sentence(text: str) -> str:
  """``text`` ending with a full stop (notes of merged runs are joined one after another)."""
  text = text.strip()
  return text if text.endswith((".", ")")) else text + "."


def summarise(runs: list[dict]) -> dict:
  out = {"job_s": round(statistics.median(r["job_s"] for r in runs), 2),
         "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs), 1),
         "rows": runs[0]["rows"], "runs": runs}
  for key in ("session_start_s", "warm_job_s"):
    if key in runs[0]:
      out[key] = round(statistics.median(r[key] for r in runs), 2)
  return out


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--customers", type=int, action="append",
                      help="customers (10 orders each); repeat for several sizes (default 1M)")
  parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
  parser.add_argument("--engines", default=",".join(e for e in ENGINES if e not in ONE_CORE),
                      help="comma-separated subset of " + ", ".join(ENGINES))
  parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset")
  parser.add_argument("--run-dir", type=Path, default=None, help="a finished run to score with")
  parser.add_argument("--note", default="", help="a note for the JSON (e.g. the machine was shared)")
  parser.add_argument("--out", type=Path, default=HERE / "results" / "spark.json")
  parser.add_argument("--merge", action="store_true",
                      help="add these measurements to --out (each size, task and engine measured "
                      "replaces its entry; the others stay) instead of replacing the file; the "
                      "--note goes to each size measured")
  parser.add_argument("--memory", action="store_true",
                      help="memory against customer count at a fixed partition size: Spark "
                      "local[2] scoring with one shuffle partition per --per-partition "
                      "customers, DuckDB beside it; writes --memory-out")
  parser.add_argument("--per-partition", type=int, default=PER_PARTITION,
                      help="customers per shuffle partition with --memory")
  parser.add_argument("--memory-out", type=Path, default=HERE / "results" / "spark_memory.json")
  parser.add_argument("--warm", action="store_true",
                      help="time each Spark job a second time in the same session as well "
                      "(warm_job_s; the first run stays job_s)")
  parser.add_argument("--partitions", type=int, default=SparkConfig().shuffle_partitions,
                      help="Spark's shuffle partitions (default: cvlib's, params spark.shuffle_partitions)")
  parser.add_argument("--one", nargs=5, metavar=("ENGINE", "TASK", "DATA", "OUT", "RUN"),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.one:
    engine, task, data, out, run = args.one
    result = measure_one(engine, task, Path(data), Path(out), Path(run), args.partitions,
                         args.warm)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    return result
  import duckdb
  import pyspark
  sizes = args.customers or [1_000_000]
  engines = [e for e in args.engines.split(",") if e]
  tasks = [t for t in args.tasks.split(",") if t]
  run_dir = args.run_dir or build_run(CACHE / "run")
  if args.memory:
    return memory_scaling(sizes, args.per_partition, run_dir, args.memory_out, args.note)
  results: dict = {
      "benchmark": "customer features and scoring on DuckDB and on Spark local[1] / local[2]",
      "date": dt.datetime.now().isoformat(timespec="seconds"),
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "python": platform.python_version(), "duckdb": duckdb.__version__,
                  "pyspark": pyspark.__version__, "pandas": pd.__version__,
                  "java": _java_version(), "note": args.note or
                  "2 cores; see the load averages of each run for other work on the machine"},
      "data": {"orders_per_customer": ORDERS_PER_CUSTOMER, "from": START.isoformat(),
               "to": END.isoformat(), "items": 0, "reviews": 0,
               "how": "synthetic transactions, a parquet folder of 1M-row files"},
      "features": {"cutoff": CUTOFF.isoformat(), "horizon_days": HORIZON_DAYS},
      "scoring": {"model": "ziln", "drivers": False, "as_of": AS_OF.isoformat(),
                  "run_dir": str(run_dir), "duckdb_chunk_size": CHUNK},
      "spark": {"shuffle_partitions": args.partitions, "driver_memory": "4g"},
      "definition": definition_cost(),
      "repeats": args.repeats, "sizes": {}}
  if args.merge and args.out.exists():
    results = {**json.loads(args.out.read_text()), "date": results["date"]}  # the latest run
  for n in sizes:
    data = data_folder(n)
    size = results["sizes"].setdefault(str(n), {})
    size.update(customers=n, transactions=n * ORDERS_PER_CUSTOMER)
    if args.merge:
      notes = [size.get("note"), args.note or None, (
          f"(benchmarks/spark.py --engines {','.join(engines)} --tasks {','.join(tasks)} "
          f"--repeats {args.repeats} --merge, {dt.datetime.now().isoformat(timespec='seconds')})")]
      size["note"] = " ".join(_sentence(note) for note in notes if note)
    for task in tasks:
      for engine in engines:
        runs = []
        for _ in range(args.repeats):
          out = CACHE / f"out_{engine}_{task}.parquet"
          runs.append(run_measurement(engine, task, data, out, run_dir, args.partitions,
                                      warm=args.warm))
          print(f"{n:,} customers, {task}, {engine}: {runs[-1]['job_s']:.1f} s, "
                f"peak {runs[-1]['peak_rss_mb']:,.0f} MiB", flush=True)
        size.setdefault(task, {})[engine] = summarise(runs)
        if ENGINES[engine] is not None:
          size[task][engine]["shuffle_partitions"] = args.partitions
      by = size[task]
      if "spark_local1" in by and "spark_local2" in by:
        by["spark_speedup_2_cores"] = round(by["spark_local1"]["job_s"]
                                            / by["spark_local2"]["job_s"], 2)
        if "warm_job_s" in by["spark_local1"] and "warm_job_s" in by["spark_local2"]:
          by["spark_speedup_2_cores_warm"] = round(by["spark_local1"]["warm_job_s"]
                                                   / by["spark_local2"]["warm_job_s"], 2)
      if "spark_local1_one_core" in by and "spark_local2" in by:
        by["spark_speedup_second_core"] = round(by["spark_local1_one_core"]["job_s"]
                                                / by["spark_local2"]["job_s"], 2)
      if "duckdb" in by and "spark_local2" in by:
        by["spark_local2_over_duckdb"] = round(by["spark_local2"]["job_s"]
                                               / by["duckdb"]["job_s"], 2)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(results, indent=1) + "\n")
  print(f"wrote {args.out}")
  return results


def memory_scaling(sizes: list[int], per_partition: int, run_dir: Path, out: Path,
                   note: str = "") -> dict:
  """Peak memory of Spark ``local[2]`` scoring against customer count with the partition size
  held fixed (one shuffle partition per ``per_partition`` customers), DuckDB's chunked scoring
  beside it; one run each. Writes ``out``."""
  import pyspark
  results: dict = {
      "benchmark": "peak memory of scoring against customer count at a fixed partition size",
      "date": dt.datetime.now().isoformat(timespec="seconds"),
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "python": platform.python_version(), "pyspark": pyspark.__version__,
                  "java": _java_version(), "note": note or
                  "2 cores; see the load averages of each run for other work on the machine"},
      "data": {"orders_per_customer": ORDERS_PER_CUSTOMER},
      "spark": {"master": ENGINES["spark_local2"], "customers_per_partition": per_partition,
                "driver_memory": "4g",
                "arrow_max_records_per_batch": "10000 (Spark's default)"},
      "scoring": {"model": "ziln", "drivers": False, "duckdb_chunk_size": CHUNK},
      "sizes": {}}
  for n in sizes:
    data = data_folder(n)
    parts = max(1, -(-n // per_partition))
    row = results["sizes"][str(n)] = {"customers": n, "partitions": parts}
    for engine in ("spark_local2", "duckdb"):
      r = run_measurement(engine, "score", data, CACHE / f"out_{engine}_memory.parquet", run_dir,
                          partitions=parts)
      row[engine] = r
      print(f"{n:,} customers, {parts} partitions, {engine}: {r['job_s']:.1f} s, peak "
            f"{r['peak_rss_mb']:,.0f} MiB {r['peak_rss_by_role_mb']}", flush=True)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=1) + "\n")
  print(f"wrote {out}")
  return results


def _java_version() -> str:
  try:
    out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return "unknown"
  lines = (out.stderr or out.stdout).splitlines()
  return lines[0] if lines else "unknown"


if __name__ == "__main__":
  main()

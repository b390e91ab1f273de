"""Reading a shop's orders from PostgreSQL: which driver, how fast, how much memory.

Starts a throwaway PostgreSQL server (tests/pgserver.py: Debian's ``postgresql`` binaries), loads
a synthetic transactions table of ``--rows`` order lines, and reads it back with each candidate
driver, streaming: every driver hands over Arrow record batches (or rows it turns into them) of
about ``--batch-rows`` rows, which are counted and dropped, so memory is bounded by the batch.
Each read runs in its own subprocess; its peak resident memory (VmHWM) is measured there, along
with the memory after the imports (baseline). Medians of ``--repeats`` reads.

Candidates: ADBC (adbc-driver-postgresql, COPY in binary format), connectorx (arrow_stream) and
psycopg 3 (a server-side cursor, rows turned into Arrow batches). cvlib reads with the one
chosen here (cvlib.data.database). Then the read into a pandas DataFrame, as the adapters use it:
cvlib's (batches streamed to a parquet file, then read) against ADBC's whole result at once.

  python benchmarks/database.py                       # 1M rows, 3 repeats
  python benchmarks/database.py --rows 100000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "database.json"
sys.path.insert(0, str(HERE.parent / "tests"))
from pgserver import PostgresServer  # noqa: E402  (the tests' throwaway server)

DRIVERS = {"adbc": "adbc-driver-postgresql", "connectorx": "connectorx", "psycopg": "psycopg"}
# Reads into a pandas DataFrame, as the adapters need it: cvlib's streamed read against ADBC's
# whole result at once.
TO_DATAFRAME = {"cvlib": "adbc-driver-postgresql", "adbc_whole": "adbc-driver-postgresql"}
QUERY = "select * from transactions"

# The child: one streaming read with one driver; prints {"seconds", "rows", "peak_mb", ...}.
CHILD = r"""
import json, sys, time
driver, url, query, batch_rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def hwm():
  for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
      return int(line.split()[1]) / 1024

import os
import pyarrow as pa
if driver in ("adbc", "adbc_whole"):
  import adbc_driver_postgresql.dbapi as pg
elif driver == "cvlib":
  from cvlib.config import SqlSource
  from cvlib.data import database
  os.environ["CVLIB_BENCH_DB_URL"] = url
elif driver == "connectorx":
  import connectorx as cx
else:
  import psycopg
base = hwm()
t0 = time.perf_counter()
rows = 0
if driver == "adbc":
  with pg.connect(url) as conn, conn.cursor() as cur:
    # ~ batch_rows rows of ~60 bytes each per batch
    cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(batch_rows * 60)})
    cur.execute(query)
    for batch in cur.fetch_record_batch():
      rows += batch.num_rows
elif driver == "adbc_whole":  # the whole result at once, then a DataFrame
  with pg.connect(url) as conn, conn.cursor() as cur:
    cur.execute(query)
    rows = len(cur.fetch_arrow_table().to_pandas())
elif driver == "cvlib":  # batches to a parquet file, then a DataFrame (cvlib.data.database)
  rows = len(database.read_source(SqlSource(url_env="CVLIB_BENCH_DB_URL",
                                            query=query)).frame)
elif driver == "connectorx":
  reader = cx.read_sql(url, query, return_type="arrow_stream", batch_size=batch_rows)
  for batch in reader:
    rows += batch.num_rows
else:
  with psycopg.connect(url) as conn, conn.cursor(name="cvlib_bench") as cur:
    cur.itersize = batch_rows
    cur.execute(query)
    names = None
    while True:
      chunk = cur.fetchmany(batch_rows)
      if not chunk:
        break
      names = names or [d.name for d in cur.description]
      batch = pa.RecordBatch.from_arrays([pa.array(col) for col in zip(*chunk)], names=names)
      rows += batch.num_rows
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": round(seconds, 3), "rows": rows, "baseline_mb": round(base, 1),
                  "peak_mb": round(hwm(), 1)}))
"""


def make_transactions(n: int, seed: int = 0) -> pa.Table:
  """``n`` order lines: ids as text, a timestamp, a quantity and a price (the generic columns)."""
  rng = np.random.default_rng(seed)
  customers = rng.integers(0, max(n // 10, 1), n)
  orders = np.sort(rng.integers(0, max(n // 3, 1), n))
  start = np.datetime64("2023-01-01T00:00:00", "us")
  seconds = rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")
  return pa.table({
      "customer_id": pa.array([f"C{c:07d}" for c in customers]),
      "order_id": pa.array([f"O{o:08d}" for o in orders]),
      "timestamp": pa.array(start + seconds, pa.timestamp("us")),
      "product_id": pa.array([f"P{p:05d}" for p in rng.integers(0, 5000, n)]),
      "quantity": pa.array(rng.integers(1, 6, n), pa.int32()),
      "unit_price": pa.array(np.round(rng.gamma(2.0, 8.0, n), 2)),
  })


def load(server: PostgresServer, table: pa.Table) -> float:
  import adbc_driver_postgresql.dbapi as pg
  t0 = time.perf_counter()
  with pg.connect(server.url()) as conn, conn.cursor() as cur:
    cur.adbc_ingest("transactions", table, mode="replace")
    conn.commit()
  return time.perf_counter() - t0


def read_once(driver: str, url: str, batch_rows: int, timeout: float) -> dict:
  proc = subprocess.run([sys.executable, "-c", CHILD, driver, url, QUERY, str(batch_rows)],
                        capture_output=True, text=True, timeout=timeout)
  if proc.returncode:
    return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def version(dist: str) -> str | None:
  try:
    return metadata.version(dist)
  except metadata.PackageNotFoundError:
    return None


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rows", type=int, default=1_000_000)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch-rows", type=int, default=65_536)
  parser.add_argument("--timeout", type=float, default=300, help="seconds per read at most")
  parser.add_argument("--results", type=Path, default=RESULTS)
  args = parser.parse_args()

  table = make_transactions(args.rows)
  server = PostgresServer(password="benchmark").start()
  try:
    load_s = load(server, table)
    runs = {}
    for driver, dist in {**DRIVERS, **TO_DATAFRAME}.items():
      if version(dist) is None:
        runs[driver] = {"package": dist, "version": None, "error": "not installed"}
        continue
      reads = [read_once(driver, server.url(), args.batch_rows, args.timeout)
               for _ in range(args.repeats)]
      ok = [r for r in reads if "error" not in r]
      run = {"package": dist, "version": version(dist), "reads": reads}
      if ok:
        run.update(median_s=statistics.median(r["seconds"] for r in ok),
                   rows_per_s=round(args.rows / statistics.median(r["seconds"] for r in ok)),
                   peak_mb=statistics.median(r["peak_mb"] for r in ok),
                   added_mb=round(statistics.median(r["peak_mb"] - r["baseline_mb"] for r in ok), 1),
                   rows_read=ok[0]["rows"])
      else:
        run["error"] = reads[0]["error"]
      runs[driver] = run
      print(driver, {k: v for k, v in run.items() if k != "reads"}, flush=True)
  finally:
    server.stop()
  timed = {d: r["median_s"] for d, r in runs.items() if "median_s" in r and d in DRIVERS}
  result = {
      "benchmark": "database",
      "rows": args.rows, "repeats": args.repeats, "batch_rows": args.batch_rows,
      "arrow_mb": round(table.nbytes / 2**20, 1),
      "load_s": round(load_s, 2),
      "postgresql": server.bindir.parent.name,
      "machine": {"arch": platform.machine(), "cpus": os.cpu_count(),
                  "python": platform.python_version(), "pyarrow": pa.__version__},
      "date": time.strftime("%Y-%m-%d"),
      "runs": {d: r for d, r in runs.items() if d in DRIVERS},
      "to_dataframe": {d: r for d, r in runs.items() if d in TO_DATAFRAME},
      "fastest": min(timed, key=timed.get) if timed else None,
      "chosen": "adbc",
  }
  args.results.parent.mkdir(parents=True, exist_ok=True)
  args.results.write_text(json.dumps(result, indent=1))
  print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
  return 0


if __name__ == "__main__":
  sys.exit(main())

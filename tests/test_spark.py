"""Tests for cvlib.data.spark and cvlib.serve.spark_scoring: the one feature query gives the same
table on DuckDB and on a local Spark session, Spark scores equal ``cvlib score``'s, and every
Spark failure is one line with exit 1 or 2. All share one ``local[2]`` session (conftest)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cvlib import cli, config
from cvlib.data import adapters, clean, features
from cvlib.data import spark as spark_engine

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "params" / "tiny.yaml"
RETAIL = REPO / "tests" / "data" / "online_retail" / "online_retail.csv"
COUNTS = ("frequency", "recency_days", "T_days", "days_since_last", "n_orders", "n_items",
          "n_products", "n_categories", "orders_last_90d", "max_interpurchase_days", "n_reviews",
          "min_rating", "last_rating", "days_since_last_review", "holdout_orders")


@pytest.fixture(autouse=True)
def _restore_sigterm():
  before = signal.getsignal(signal.SIGTERM)
  yield
  signal.signal(signal.SIGTERM, before)  # cli.main installs its own handler


def _assert_same_features(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
  """Same customers, columns and types; counts and days exact, money and means to 1e-9."""
  assert list(spark.columns) == list(duck.columns)
  assert spark.dtypes.equals(duck.dtypes)
  assert len(duck) and spark["customer_id"].tolist() == duck["customer_id"].tolist()
  pd.testing.assert_frame_equal(spark[["customer_id", "first_purchase", "returned", *COUNTS]],
                                duck[["customer_id", "first_purchase", "returned", *COUNTS]],
                                check_exact=True)
  pd.testing.assert_frame_equal(spark, duck, check_exact=False, rtol=0, atol=1e-9)


def _tables(params: config.Params) -> adapters.Tables:
  return clean.clean_tables(adapters.load_data(params))[0]


def _both(spark, t: adapters.Tables, cutoff: dt.date, horizon: int, **sources):
  duck = features.compute_customer_features(t.transactions, t.items, t.products, t.reviews,
                                            cutoff, horizon)
  inputs = {"transactions": t.transactions, "items": t.items, "products": t.products,
            "reviews": t.reviews, **sources}
  got = spark_engine.to_pandas(spark_engine.compute_customer_features(
      spark, **inputs, cutoff=cutoff, horizon_days=horizon))
  return duck, got


# --- one definition, two engines ----------------------------------------------------------------

def test_online_retail_features_equal_on_duckdb_and_spark(spark):
  params = config.load_params(TINY, ["data.adapter=online_retail", f"data.path={RETAIL}"])
  t = _tables(params)
  last = t.transactions["timestamp"].max().date()
  for cutoff in (last - dt.timedelta(days=20), last + dt.timedelta(days=1)):
    _assert_same_features(*_both(spark, t, cutoff, 30))


def test_demo_shop_features_equal_from_parquet_folders_and_spark_tables(spark, tiny_clean,
                                                                         tmp_path):
  t, _ = tiny_clean
  for name in ("transactions", "items"):  # parquet folders of several files, as Spark writes
    spark_engine.read_table(spark, getattr(t, name), name).repartition(3) \
        .write.parquet(str(tmp_path / name))
  spark_engine.read_table(spark, t.reviews, "reviews").createOrReplaceTempView("shop_reviews")
  cutoff = t.transactions["timestamp"].max().date() - dt.timedelta(days=120)
  duck, got = _both(spark, t, cutoff, 90, transactions=tmp_path / "transactions",
                    items=str(tmp_path / "items"), reviews="table:shop_reviews")
  assert duck["n_reviews"].sum() > 0 and duck["n_categories"].sum() > 0  # every part is used
  _assert_same_features(duck, got)


def test_spark_query_is_the_duckdb_query_transpiled():
  sql = spark_engine.spark_sql(dt.date(2024, 1, 1), 90)
  assert "MAX_BY(" in sql and "UNIX_TIMESTAMP(" in sql and " DIV " in sql
  assert "ORDER BY rfm.customer_id" not in sql  # a distributed table has no row order
  assert "ORDER BY rfm.customer_id" in features.customer_features_sql(dt.date(2024, 1, 1), 90)


def test_run_features_on_spark_equal_duckdbs(spark, tiny_clean, tiny_params):
  from cvlib.stages import preprocess
  t, _ = tiny_clean
  on_spark = preprocess.customer_features_on(
      config.params_from_dict({**tiny_params.to_dict(), "engine": "spark",
                               "spark": {"master": "local[2]"}}))
  cutoff = t.transactions["timestamp"].max().date()
  _assert_same_features(
      features.compute_customer_features(t.transactions, t.items, t.products, t.reviews,
                                         cutoff, 180),
      on_spark(t.transactions, t.items, t.products, t.reviews, cutoff, 180))
  assert preprocess.customer_features_on(tiny_params) is features.compute_customer_features


# --- scoring --------------------------------------------------------------------------------------

def _as_of(run: Path) -> dt.date:
  return dt.date.fromisoformat(json.loads((run / "artifacts" / "split.json").read_text())["as_of"])


def test_spark_scores_equal_local_scores(spark, tiny_run, tmp_path, capsys):
  # the reference is the run's scores.parquet, which `cvlib score` reproduces bit for bit
  # (tests/test_scoring.py): the same customers, as of the same day, with the same network
  out = tmp_path / "spark.parquet"
  assert cli.main(["score", str(tiny_run), str(TINY), "--engine", "spark", "--out",
                   str(out)]) == 0
  assert f"Scored 300 customers as of {_as_of(tiny_run)}" in capsys.readouterr().out
  assert out.is_dir() and not list(tmp_path.glob(".*"))  # swapped in whole, nothing left over
  want = pd.read_parquet(tiny_run / "scores.parquet").sort_values("customer_key") \
      .reset_index(drop=True)
  got = pd.read_parquet(out).sort_values("customer_key").reset_index(drop=True)
  assert list(got.columns) == list(want.columns)
  numbers = [c for c in want.columns if want[c].dtype.kind in "fi"]
  pd.testing.assert_frame_equal(got[numbers], want[numbers], check_exact=False, rtol=1e-6,
                                atol=1e-6, check_dtype=False)
  text = [c for c in want.columns if c not in numbers and c != "top_drivers"]
  pd.testing.assert_frame_equal(got[text], want[text], check_dtype=False)
  # explanations are numbers written into text: equal where no float32 rounding crosses a digit
  assert (got["top_drivers"] == want["top_drivers"]).mean() > 0.95


def test_text_aware_network_scores_on_spark_as_locally(spark, tiny_run, tiny_clean):
  from cvlib.serve import scorer as scoring
  from cvlib.serve import spark_scoring
  t, _ = tiny_clean
  local = scoring.Scorer(tiny_run, model="ziln_text", warm_up=False)
  want = local.score_tables(t).sort_values("customer_key").reset_index(drop=True)
  with spark_engine.quiet_pandas_warnings():
    got = spark_scoring.score_spark(spark, tiny_run, t.transactions, t.items, t.products,
                                    t.reviews, model="ziln_text", drivers=False).toPandas()
  got = got.sort_values("customer_key").reset_index(drop=True)
  assert got["model"].eq("ziln_text").all() and len(got) == len(want) == 300
  for col in ("predicted_value", "churn_probability", "value_lo", "value_hi"):
    np.testing.assert_allclose(got[col], want[col], rtol=1e-5, atol=1e-6, err_msg=col)
  assert (got["value_tier"] == want["value_tier"]).all()


def test_scoring_before_the_first_purchase_says_so(spark, tiny_run, tiny_clean):
  from cvlib.serve import spark_scoring
  t, _ = tiny_clean
  first = t.transactions["timestamp"].min().date()
  with pytest.raises(ValueError, match=f"no purchase before as_of {first}"):
    spark_scoring.score_spark(spark, tiny_run, t.transactions, t.items, t.products, t.reviews,
                              as_of=first, drivers=False)


def test_output_schema_comes_from_a_placeholder_row_like_a_real_one(tiny_run):
  # score_spark types its output from a made-up row instead of computing the features twice
  from cvlib.data import schema
  from cvlib.serve import scorer as scoring
  from cvlib.serve import spark_scoring
  local = scoring.Scorer(tiny_run, warm_up=False)  # the network that wrote scores.parquet
  day = dt.date(2024, 1, 1)
  empty = [schema.empty_table(t) for t in ("transactions", "items", "products", "reviews")]
  columns = list(features.compute_customer_features(*empty, day, 90).columns)
  rows = spark_scoring.placeholder_features([*columns, "_reviews"], day)
  scored = spark_scoring._score_batch(rows, local, day, "salt", False, True)  # pylint: disable=protected-access
  want = pd.read_parquet(tiny_run / "scores.parquet")
  assert list(scored.columns) == list(want.columns) and len(scored) == 1
  assert [scored[c].dtype.kind for c in scored] == [want[c].dtype.kind for c in want]


@pytest.mark.parametrize("env, nproc", [
    ({"OMP_NUM_THREADS": "1"}, "1"),  # PySpark's default in a worker: spark.task.cpus
    ({"OMP_NUM_THREADS": "4", "NPROC": "2"}, "2"),  # the user's own setting stays
    ({}, None), ({"OMP_NUM_THREADS": "auto"}, None)])
def test_worker_jax_threads_follow_the_task_cores(env, nproc):
  from cvlib.serve import spark_scoring
  assert spark_scoring.size_thread_pool(env) == nproc
  assert env.get("NPROC") == nproc


def test_params_parquet_folder_is_read_by_spark_like_cvlibs_reader(spark, tiny_clean, tmp_path,
                                                                   write_params):
  t, _ = tiny_clean
  folder = tmp_path / "orders"
  lines = t.transactions.rename(columns={"customer_id": "client", "amount": "total"})
  spark_engine.read_table(spark, lines, "transactions").repartition(2).write.parquet(str(folder))
  params = config.load_params(write_params({
      "dataset": "shop", "engine": "spark",
      "data": {"adapter": "generic", "transactions": {
          "path": str(folder), "columns": {"customer_id": "client", "amount": "total"}}}}))
  tables = spark_engine.load_tables(spark, params)
  assert tables["items"] is None and tables["reviews"] is None
  cutoff = t.transactions["timestamp"].max().date()
  empty = t.items.iloc[:0], t.products.iloc[:0], t.reviews.iloc[:0]
  duck = features.compute_customer_features(t.transactions, *empty, cutoff, 90)
  got = spark_engine.to_pandas(spark_engine.compute_customer_features(
      spark, tables["transactions"], cutoff=cutoff, horizon_days=90))
  _assert_same_features(duck, got)
  # a file of another kind is not Spark's to read: cvlib reads and cleans it
  assert spark_engine.load_tables(spark, config.load_params(TINY, ["engine=spark"])) is None


def test_run_inputs_from_a_spark_table_and_a_parquet_folder(spark, tiny_clean, tmp_path,
                                                           write_params, capsys):
  # `cvlib run` / `validate` with engine spark: Spark reads the table or folder, cvlib maps and
  # cleans the rows on the driver as it does a file's (training stays on one node)
  t, _ = tiny_clean
  spark_engine.read_table(spark, t.transactions, "transactions") \
      .createOrReplaceTempView("shop_orders")
  folder = tmp_path / "orders"
  spark_engine.read_table(spark, t.transactions, "transactions").repartition(2) \
      .write.parquet(str(folder))
  counts = []
  for source in ({"table": "shop_orders"}, {"path": str(folder)}):
    params = write_params({"dataset": "shop", "engine": "spark",
                           "data": {"adapter": "generic", "transactions": source}})
    assert cli.main(["validate", str(params)]) == 0
    counts.append(capsys.readouterr().out.split("OK: ")[1].splitlines()[0])
  assert counts[0] == counts[1] and f"{len(t.transactions):,} transactions" in counts[0]
  missing = write_params({"dataset": "shop", "engine": "spark",
                          "data": {"adapter": "generic", "transactions": {"table": "no_orders"}}})
  assert cli.main(["validate", str(missing)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "data.transactions.table no_orders" in err[0], err


# --- failures: one line, exit 1 or 2, nothing half-written ----------------------------------------

def test_missing_java_fails_with_what_to_install(monkeypatch, tmp_path):
  monkeypatch.setenv("PATH", str(tmp_path))
  monkeypatch.delenv("JAVA_HOME", raising=False)
  with pytest.raises(spark_engine.SparkError, match="openjdk-17-jre-headless"):
    spark_engine.check_java()
  monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
  with pytest.raises(spark_engine.SparkError, match=r"\$JAVA_HOME .*has no bin/java"):
    spark_engine.check_java()


def test_cli_without_java_exits_1_with_one_line(monkeypatch, tmp_path, tiny_run, capsys):
  monkeypatch.setenv("PATH", str(tmp_path))
  monkeypatch.delenv("JAVA_HOME", raising=False)
  before = sorted(p.name for p in tiny_run.iterdir())
  assert cli.main(["score", str(tiny_run), str(TINY), "--engine", "spark"]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "openjdk-17-jre-headless" in err[0]
  assert cli.main(["validate", str(TINY), "--set", "engine=spark"]) == 1
  assert "openjdk-17-jre-headless" in capsys.readouterr().err
  assert sorted(p.name for p in tiny_run.iterdir()) == before


def test_missing_spark_table_exits_2_naming_it(spark, tiny_run, write_params, capsys):
  params = write_params({"dataset": "shop", "engine": "spark",
                         "data": {"adapter": "generic",
                                  "transactions": {"table": "shop.no_such_orders"}}})
  assert cli.main(["score", str(tiny_run), str(params), "--engine", "spark"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "no_such_orders" in err[0], err


def test_failed_spark_job_leaves_the_previous_scores(spark, tmp_path):
  from pyspark.sql import functions as F
  from cvlib.serve import spark_scoring
  out = tmp_path / "scores.parquet"
  out.mkdir()
  (out / "part-0.parquet").write_bytes(b"previous")
  boom = spark.range(3).select(F.raise_error(F.lit("disk on fire")).alias("x"))
  with pytest.raises(spark_engine.SparkError, match="disk on fire") as e:
    spark_scoring.write_scores(boom, out)
  assert "\n" not in str(e.value)
  assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]
  assert (out / "part-0.parquet").read_bytes() == b"previous"


def _kill_jvm_once_a_task_runs(proc: subprocess.Popen, timeout: float = 150) -> None:
  """Kills the driver JVM under ``proc`` once one of its Python workers runs: the session is lost
  mid-job, as when a driver dies. Fails when no job ever started."""
  import psutil

  def cmdline(p: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
      return " ".join(p.cmdline())
    return ""

  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and proc.poll() is None:
    with contextlib.suppress(psutil.Error):
      tree = psutil.Process(proc.pid).children(recursive=True)
      jvm = next((p for p in tree if cmdline(p).split(" ")[0].endswith("/java")), None)
      if jvm is not None and any(w in cmdline(p) for p in tree
                                 for w in ("pyspark.daemon", "pyspark.worker")):
        jvm.kill()
        return
    time.sleep(0.05)
  pytest.fail(f"the scoring job never started a Python worker (exit {proc.poll()}): "
              f"{proc.communicate()[1][-2000:]}")


def test_session_lost_mid_job_exits_1_with_one_line_and_keeps_the_previous_scores(tiny_run,
                                                                                   tmp_path):
  out = tmp_path / "scores.parquet"
  out.mkdir()
  (out / "part-0.parquet").write_bytes(b"previous")
  proc = subprocess.Popen(
      [sys.executable, "-m", "cvlib.cli", "score", str(tiny_run), str(TINY), "--engine", "spark",
       "--out", str(out), "--set", "spark.master=local[1]"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    _kill_jvm_once_a_task_runs(proc)
    _, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  # the JVM's own start-up lines come first; cvlib's is the one error line
  lines = [line for line in err.splitlines() if line.startswith("error")]
  assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in err, err
  assert lines[0].startswith("error: Spark scoring failed: the Spark session was lost mid-job")
  assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]
  assert [p.name for p in out.iterdir()] == ["part-0.parquet"]
  assert (out / "part-0.parquet").read_bytes() == b"previous"


@pytest.mark.parametrize("override, message", [
    ("engine=polars", "engine must be one of duckdb, spark"),
    ("spark.shuffle_partitions=0", "spark.shuffle_partitions must be > 0"),
    ("spark.master=' '", "spark.master must be a Spark master URL"),
    ("spark.conf={driver.memory: 4g}", "spark.conf must be Spark settings"),
    ("spark.masterr=local", "unknown key 'spark.masterr'"),
])
def test_spark_params_are_checked(override, message):
  with pytest.raises(config.ParamsError, match=message):
    config.load_params(TINY, [override])


def test_spark_table_source_needs_engine_spark(write_params):
  path = write_params({"dataset": "shop", "data": {"adapter": "generic",
                                                   "transactions": {"table": "shop.orders"}}})
  with pytest.raises(config.ParamsError, match=r"data.transactions.table is a Spark table: it "
                                               "needs engine: spark"):
    config.load_params(path)
  ok = config.load_params(path, ["engine=spark"])
  assert ok.data.transactions.table == "shop.orders"

"""Scoring on Spark (``cvlib score --engine spark``, :func:`score_spark`).

Features come from the one feature query run on Spark (``cvlib.data.spark``); the scores from
``scorer.score_frame``, the function every other way of scoring calls, run inside
``mapInPandas``: each Python worker loads the run's models once and keeps them for every batch
of customers it is handed, so a row is the row ``cvlib score`` writes for that customer (to
float32 rounding: the networks run on fixed blocks of rows either way). For the text-aware
network each customer's reviews travel with their row and go through the run's encoder in the
worker, a batch of customers at a time.

The run folder must be readable at the same path by every executor (on one machine it is; on a
cluster put it on shared storage, e.g. ``/dbfs/...`` on Databricks).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from cvlib.data import features as feats
from cvlib.data import spark as spark_engine
from cvlib.data.spark import SparkError
from cvlib.serve import scorer as scoring

# Each Python worker's scorers, by (run folder, model, drivers): loaded on its first batch.
_WORKER_SCORERS: dict[tuple[str, str, bool], scoring.Scorer] = {}


def worker_scorer(run_dir: str, model: str, drivers: bool) -> scoring.Scorer:
  """The scorer of this process, loaded once (an executor's Python worker keeps it between
  tasks: Spark reuses its Python workers)."""
  key = (run_dir, model, drivers)
  if key not in _WORKER_SCORERS:
    size_thread_pool(os.environ)
    _WORKER_SCORERS[key] = scoring.Scorer(run_dir, model=model, warm_up=False, drivers=drivers)
  return _WORKER_SCORERS[key]


def size_thread_pool(env: Any) -> str | None:
  """Gives this Python worker's JAX as many compute threads as its Spark task has cores.

  XLA sizes its CPU thread pool once, when JAX first runs, to every core of the machine (or
  ``$NPROC``). An executor runs one task per core, each in its own Python worker, so without a
  limit every worker computes on every core: on a 16-core executor, 16 workers x 16 threads. PySpark
  sets ``OMP_NUM_THREADS`` in each worker to the task's cores (``spark.task.cpus``) for the same
  reason; this passes that number on as ``NPROC`` before the worker's JAX starts. A ``NPROC`` set
  by the user (``spark.executorEnv.NPROC``) is kept.

  Returns:
    The ``NPROC`` the worker's JAX will use (None: not limited).
  """
  threads = env.get("OMP_NUM_THREADS", "")
  if "NPROC" not in env and threads.isdigit() and int(threads) > 0:
    env["NPROC"] = threads
  return env.get("NPROC")


def _spark_schema(frame: pd.DataFrame) -> Any:
  from pyspark.sql import types as T
  kinds = {"f": T.DoubleType(), "i": T.LongType(), "u": T.LongType(), "b": T.BooleanType()}
  fields = []
  for col in frame.columns:
    kind = kinds.get(frame[col].dtype.kind, T.StringType())
    fields.append(T.StructField(str(col), kind, True))
  return T.StructType(fields)


def score_spark(spark: Any, run_dir: str | os.PathLike, transactions: Any, items: Any = None,
                products: Any = None, reviews: Any = None, *, as_of: Any = None,
                model: str | None = None, salt: str | None = None, raw_ids: bool = False,
                drivers: bool = True, scorer: scoring.Scorer | None = None) -> Any:
  """Scores every customer of Spark tables with a finished run's models.

  Args:
    spark: the SparkSession (``cvlib.data.spark.get_session``).
    run_dir: the run folder (``reports/<dataset>``), readable by every executor.
    transactions, items, products, reviews: cleaned canonical tables, each a Spark DataFrame, a
      pandas DataFrame, a parquet path or ``"table:<name>"`` (``cvlib.data.spark.read_table``);
      products default to the run's catalogue.
    as_of: the scoring day (default: the day after the last transaction).
    model: the value network (default: the run's scoring network).
    salt: pseudonymisation key for customer_key (default: $CVLIB_SALT, then the run's params).
    raw_ids: add the raw customer_id column.
    drivers: add top_drivers, as ``cvlib score`` does.
    scorer: the run's :class:`Scorer` on the driver, when already loaded (for ``model`` and
      ``drivers``).

  Returns:
    A lazy Spark DataFrame with the columns of ``cvlib score``'s output, one row per customer
    with a purchase before ``as_of``; write it with :func:`write_scores`.

  Raises:
    ModelFolderError: the run folder fails its checks or has no such model.
    ValueError: no purchase before ``as_of``, or a text-aware network without reviews.
  """
  run_dir = str(Path(run_dir).resolve())
  local = scorer or scoring.Scorer(run_dir, model=model, warm_up=False, drivers=drivers)
  drivers = local.drivers
  salt = salt or local.salt
  tx = spark_engine.read_table(spark, transactions, "transactions")
  if products is None:
    products = local.catalogue
  day = default_as_of(tx) if as_of is None else scoring.as_date(as_of, "as_of")
  features = spark_engine.compute_customer_features(
      spark, tx, items, products, reviews, cutoff=day, horizon_days=local.horizon_days)
  if local.needs_text:  # each customer's reviews travel with their features row
    if reviews is None:
      raise ValueError(f"network {local.name!r} reads review text: give the reviews")
    features = features.join(_review_lists(spark_engine.read_table(spark, reviews, "reviews"),
                                           day), "customer_id", "left")
  if _none_before(tx, day):
    raise ValueError(f"no purchase before as_of {day}: nothing to score")
  name = local.name
  # The output's Spark schema from a made-up row: a real one would run the whole feature job
  # (every shuffle) once more just to hand over its first row.
  out_schema = _spark_schema(_score_batch(placeholder_features(features.columns, day), local,
                                          day, salt, raw_ids, drivers))

  def score_batches(batches):
    scorer = worker_scorer(run_dir, name, drivers)
    with spark_engine.quiet_pandas_warnings():
      for batch in batches:
        if len(batch):
          yield _score_batch(batch, scorer, day, salt, raw_ids, drivers)

  return features.mapInPandas(score_batches, schema=out_schema)


def default_as_of(transactions: Any) -> dt.date:
  """The day after the last transaction of a Spark table, ``cvlib score``'s default as-of day.

  Raises:
    ValueError: no transactions.
  """
  from pyspark.sql import functions as F
  last = transactions.agg(F.max("timestamp")).first()[0]
  if last is None:
    raise ValueError("no transactions: nothing to score (customer value needs orders)")
  return pd.Timestamp(last).date() + dt.timedelta(days=1)


def _dated_before(day: dt.date) -> Any:
  """The rows of a customer, dated before ``day``: what the feature query and the review lists
  read."""
  from pyspark.sql import functions as F
  return (F.col("customer_id").isNotNull() & F.col("timestamp").isNotNull()
          & (F.col("timestamp") < F.lit(day.isoformat()).cast("timestamp_ntz")))


def _none_before(transactions: Any, day: dt.date) -> bool:
  """Whether no customer's transaction is dated before ``day``, so the feature table is empty (a
  scan that stops at the first one)."""
  return not transactions.where(_dated_before(day)).limit(1).collect()


def placeholder_features(columns: list[str], day: dt.date) -> pd.DataFrame:
  """One made-up row of the Spark feature table (a customer who bought once, the day before
  ``day``), for what scoring returns: its columns and their types, not its values."""
  row: dict[str, Any] = {col: 0 for col in columns}
  row.update({k: 1 for k in ("frequency", "n_orders", "T_days", "days_since_last") if k in row})
  row["customer_id"] = "placeholder"
  row["first_purchase"] = dt.datetime.combine(day - dt.timedelta(days=1), dt.time())
  if "_reviews" in row:
    row["_reviews"] = None
  return pd.DataFrame([row], columns=columns)


# The review columns the text features read, carried per customer as a list.
REVIEW_FIELDS = ("timestamp", "review_id", "rating", "text")  # sorted by the first


def _review_lists(reviews: Any, day: dt.date) -> Any:
  """customer_id -> ``_reviews``, the list of their reviews with text dated before ``day``
  (those ``Scorer`` encodes), in time order."""
  from pyspark.sql import functions as F
  r = reviews.where(_dated_before(day) & F.col("text").isNotNull())
  return r.groupBy("customer_id").agg(
      F.array_sort(F.collect_list(F.struct(*REVIEW_FIELDS))).alias("_reviews"))


def _batch_reviews(customer_ids: pd.Series, lists: pd.Series) -> pd.DataFrame:
  """The ``_reviews`` lists of a batch as one canonical reviews table."""
  from cvlib.data import schema
  rows = [{"customer_id": c, **dict(review)}
          for c, reviews in zip(customer_ids.tolist(), lists.tolist())
          if reviews is not None for review in reviews]
  frame = pd.DataFrame(rows, columns=["customer_id", *REVIEW_FIELDS])
  return schema.coerce_table("reviews", frame)


def _score_batch(batch: pd.DataFrame, scorer: scoring.Scorer, day: dt.date, salt: str,
                 raw_ids: bool, drivers: bool) -> pd.DataFrame:
  """One Arrow batch of Spark features (with ``_reviews`` for a text-aware network) -> its
  scores rows."""
  batch = batch.reset_index(drop=True)
  lists = batch.pop("_reviews") if "_reviews" in batch else None
  f = feats.finish_features(batch)
  reviews = _batch_reviews(f["customer_id"], lists) if scorer.needs_text else None
  return scorer.score_features(f, reviews, day, raw_ids=raw_ids, salt=salt,
                               encoder_batch=scoring.ENCODER_BATCH, drivers=drivers)


def write_scores(scores: Any, out: str | os.PathLike) -> int:
  """Writes scores as a parquet folder; a local folder is swapped in whole when complete.

  Args:
    scores: :func:`score_spark`'s DataFrame.
    out: the folder (a local path, or any URI Spark writes to, e.g. ``s3a://...``).

  Returns:
    The number of rows written.

  Raises:
    SparkError: the Spark job failed (one line); a local ``out`` is left as it was.
  """
  target = str(out)
  remote = "://" in target
  tmp = target if remote else str(Path(target).with_name(
      f".{Path(target).name}.tmp-{uuid.uuid4().hex[:8]}"))
  try:
    scores.write.mode("overwrite").parquet(tmp)
    n = scores.sparkSession.read.parquet(tmp).count()
  except Exception as e:  # py4j, Python worker and JVM failures come as many types
    if not remote:
      shutil.rmtree(tmp, ignore_errors=True)
    raise SparkError(f"Spark scoring failed: {spark_engine.failure_line(e)}") from None
  if not remote:
    _swap_in(Path(tmp), Path(target))
  return n


def _swap_in(tmp: Path, target: Path) -> None:
  """Replaces ``target`` (a file or folder) with ``tmp``; readers never see a half-written one."""
  old = None
  if target.exists():
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
  os.replace(tmp, target)
  if old is not None:
    if old.is_dir():
      shutil.rmtree(old, ignore_errors=True)
    else:
      old.unlink(missing_ok=True)

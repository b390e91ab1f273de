"""The customer features on Apache Spark: the DuckDB query, transpiled with SQLGlot.

``features.customer_features_sql`` is the one definition of the features. DuckDB runs it as
written; here SQLGlot rewrites it into Spark SQL (``epoch`` -> ``unix_timestamp``, ``//`` ->
``DIV``, ``arg_max`` -> ``max_by``) and Spark runs it on its own tables: Spark DataFrames, parquet
files or folders, or tables of the session's catalog. docs/spark.md says why SQLGlot and not Ibis.

pyspark loads on first use: cvlib imports, and runs on DuckDB, without it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from cvlib.data import features as feats
from cvlib.data import schema

# Spark settings every session cvlib starts gets: no web UI, UTC (the query's days are calendar
# days of the timestamps as written), Arrow between pandas and the JVM.
SESSION_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
}
INSTALL_JAVA = ("install Java 17 (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set "
                "JAVA_HOME")


@contextlib.contextmanager
def quiet_pandas_warnings():
  """pyspark 4.3 warns on every pandas conversion that pandas 3 is not fully supported, and
  calls ``astype(copy=...)``, deprecated in pandas 3: the conversions cvlib uses are the
  tested ones (tests/test_spark.py), so these are silenced around them."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    warnings.filterwarnings("ignore", message="The copy keyword is deprecated")
    yield


class SparkError(RuntimeError):
  """Spark is missing, cannot start, or failed in a job; the message is one line."""


def check_java() -> str:
  """The java executable Spark will start.

  Raises:
    SparkError: no java on PATH or in $JAVA_HOME.
  """
  home = os.environ.get("JAVA_HOME")
  java = Path(home) / "bin" / "java" if home else None
  if java is not None and java.is_file():
    return str(java)
  found = shutil.which("java")
  if found is None:
    where = f"$JAVA_HOME ({home}) has no bin/java and " if home else ""
    raise SparkError(f"Spark needs Java and {where}there is no java on PATH: {INSTALL_JAVA}")
  return found


def import_pyspark() -> Any:
  """The pyspark module, or a one-line SparkError saying how to install it."""
  try:
    import pyspark
  except ImportError:
    raise SparkError("engine spark needs pyspark: pip install 'cvlib[spark]' (or the pyspark "
                     "and sqlglot versions of cvlib's requirements.lock)") from None
  return pyspark


def check_available() -> None:
  """Raises a one-line SparkError unless pyspark imports and Java is there."""
  import_pyspark()
  check_java()


def get_session(master: str | None = None, *, app_name: str = "cvlib",
                shuffle_partitions: int | None = None, conf: dict[str, str] | None = None,
                log_level: str = "FATAL") -> Any:
  """A SparkSession: the active one if there is one, else a new one on ``master``.

  Args:
    master: e.g. ``local[2]`` or ``spark://host:7077``; None: the active session, else
      ``local[*]`` (under spark-submit the master comes from the command line).
    app_name: the application name.
    shuffle_partitions: ``spark.sql.shuffle.partitions`` (Spark's default is 200, far too many
      for one machine).
    conf: more Spark settings.
    log_level: the JVM's log level. FATAL by default: a failed job's cause reaches the caller
      as the exception (``cvlib`` prints it as one line), not as pages of executor stack traces.

  Raises:
    SparkError: no Java, no pyspark, or the JVM did not start.
  """
  import_pyspark()
  from pyspark.sql import SparkSession
  active = SparkSession.getActiveSession()
  if active is not None and master is None:
    return active
  check_java()
  if master is None and not os.environ.get("PYSPARK_GATEWAY_PORT"):
    master = "local[*]"  # not under spark-submit, which sets the master (and that variable)
  builder = SparkSession.builder.appName(app_name)
  if master is not None:
    builder = builder.master(master)
  settings = dict(SESSION_CONF)
  if shuffle_partitions is not None:
    settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
  settings.update(conf or {})
  if master is not None and master.startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
    # on this machine the Python workers are this Python: pyspark starts $PYSPARK_PYTHON, else
    # python3 from PATH, which need not have cvlib's packages (a cluster configures its own)
    os.environ["PYSPARK_PYTHON"] = sys.executable
  # the JVM's own log: fatal errors only (Spark's default prints INFO lines by the hundred)
  log4j = Path(__file__).with_name("spark-log4j2.properties")
  settings.setdefault("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
  for key, value in settings.items():
    builder = builder.config(key, value)
  try:
    session = builder.getOrCreate()
  except Exception as e:  # py4j / JVM start failures come as many types
    raise SparkError(f"Spark did not start on master {master or 'local[*]'}: "
                     f"{first_line(e)}") from None
  session.sparkContext.setLogLevel(log_level)
  return session


def session_from_params(spark_cfg: Any) -> Any:
  """A session from a params ``spark`` section (``cvlib.config.SparkConfig``)."""
  return get_session(spark_cfg.master, app_name=spark_cfg.app_name,
                     shuffle_partitions=spark_cfg.shuffle_partitions, conf=dict(spark_cfg.conf))


def is_spark_exception(e: BaseException) -> bool:
  """Whether an exception comes from pyspark or the JVM behind it (a lost session included)."""
  return (type(e).__module__ or "").startswith(("pyspark", "py4j")) or session_lost(e)


# What py4j and Spark say when the session went away under a job: the driver JVM stopped or was
# killed (the gateway refuses or drops the connection), or the context was shut down.
# (A job's own "Connection refused", from a storage endpoint, is not one: only py4j's own
# ConnectionError to the gateway counts.)
SESSION_LOST = ("SparkContext was shut down", "stopped SparkContext",
                "Answer from Java side is empty", "Error while receiving", "Error while sending")


def session_lost(e: BaseException) -> bool:
  """Whether the Spark session was lost mid-job (its JVM gone, its context shut down)."""
  return isinstance(e, ConnectionError) or any(s in str(e) for s in SESSION_LOST)


def failure_line(e: BaseException) -> str:
  """A failed Spark job's cause in one line (:func:`first_line`), saying so when the session
  itself was lost."""
  if session_lost(e):
    return f"the Spark session was lost mid-job ({first_line(e)})"
  return first_line(e)


def is_analysis_error(e: BaseException) -> bool:
  """Whether Spark refused a query (a missing table or column): bad input, not a failure."""
  from pyspark.errors import AnalysisException
  return isinstance(e, AnalysisException)


def read_source_pandas(spark_cfg: Any, spec: Any, base: Path, where: str) -> pd.DataFrame:
  """A generic source that Spark reads (a Spark table, or a parquet folder), collected as pandas
  for a run (training stays on one node).

  Raises:
    ValueError: Spark refused the source (a missing table or file), naming it.
    SparkError: no Java or pyspark, or a failed Spark job.
  """
  check_available()
  session = session_from_params(spark_cfg)
  try:
    with quiet_pandas_warnings():
      return _read_source(session, spec, base).toPandas()
  except Exception as e:
    if not is_spark_exception(e):
      raise
    if is_analysis_error(e):
      raise ValueError(f"{where}: {first_line(e)}") from None
    raise SparkError(f"Spark failed reading {where}: {failure_line(e)}") from None


def first_line(e: BaseException) -> str:
  """An exception as one short line: a JVM error's first line (its class and message), or the
  last line of a Python worker's traceback (the exception raised there)."""
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  if not lines:
    return type(e).__name__
  if any(line.startswith("Traceback (most recent call last)") for line in lines):
    tail = [line for line in lines if not line.startswith(("File ", "at ", "^"))]
    return tail[-1][:300]
  return lines[0][:300]


@functools.lru_cache(maxsize=16)
def spark_sql(cutoff: dt.date, horizon_days: int) -> str:
  """The feature query in Spark SQL: ``features.customer_features_sql`` through SQLGlot.

  The final ORDER BY is dropped: a distributed table has no row order (collect and sort).
  """
  import sqlglot
  tree = sqlglot.parse_one(feats.customer_features_sql(cutoff, horizon_days), read="duckdb")
  tree.set("order", None)
  return tree.sql(dialect="spark")


def read_table(spark: Any, source: Any, name: str) -> Any:
  """One input as a Spark DataFrame.

  Args:
    spark: the session.
    source: a Spark DataFrame; a pandas DataFrame (canonical columns); a path to a parquet file
      or folder (``str`` or ``Path``; any URI Spark reads, e.g. ``s3a://...``); or
      ``"table:<name>"`` for a table of the session's catalog.
    name: the canonical table (transactions, items, products, reviews), for messages and types.

  Raises:
    ValueError: a missing column or a source of another kind.
  """
  from pyspark.sql import DataFrame as SparkFrame
  if isinstance(source, SparkFrame):
    df = source
  elif isinstance(source, pd.DataFrame):
    df = _from_pandas(spark, source, name)
  elif isinstance(source, (str, Path)) and str(source).startswith("table:"):
    df = spark.table(str(source)[len("table:"):])
  elif isinstance(source, (str, Path)):
    df = spark.read.parquet(str(source))
  else:
    raise ValueError(f"{name}: need a Spark DataFrame, a pandas DataFrame, a parquet path or "
                     f"'table:<name>', got {type(source).__name__}")
  return df


def _from_pandas(spark: Any, frame: pd.DataFrame, name: str) -> Any:
  """A canonical pandas table in Spark; an empty one keeps its column types."""
  from pyspark.sql import types as T
  kinds = {"string": T.StringType(), "float64": T.DoubleType(), "Float64": T.DoubleType(),
           "datetime64[us]": T.TimestampNTZType(), "datetime64[ns]": T.TimestampNTZType(),
           "Int64": T.LongType(), "int64": T.LongType(), "bool": T.BooleanType(),
           "boolean": T.BooleanType(), "str": T.StringType(), "object": T.StringType()}
  fields = []
  for col in frame.columns:
    kind = kinds.get(str(frame[col].dtype))
    if kind is None:
      raise ValueError(f"{name}: column {col!r} of type {frame[col].dtype} has no Spark type here")
    fields.append(T.StructField(str(col), kind, True))
  data = frame.astype({c: object for c in frame.columns if str(frame[c].dtype) in
                       ("string", "str")})
  with quiet_pandas_warnings():
    return spark.createDataFrame(data, schema=T.StructType(fields))


def _empty(spark: Any, name: str) -> Any:
  return _from_pandas(spark, schema.empty_table(name), name)


@contextlib.contextmanager
def _utc(spark: Any):
  """Session time zone UTC while a query is analysed (Spark fixes the zone at analysis)."""
  old = spark.conf.get("spark.sql.session.timeZone")
  spark.conf.set("spark.sql.session.timeZone", "UTC")
  try:
    yield
  finally:
    spark.conf.set("spark.sql.session.timeZone", old)


def compute_customer_features(spark: Any, transactions: Any, items: Any = None,
                              products: Any = None, reviews: Any = None, *, cutoff: dt.date,
                              horizon_days: int) -> Any:
  """``features.compute_customer_features`` on Spark: one row per customer, as a Spark DataFrame.

  Args:
    spark: the SparkSession (``get_session``).
    transactions, items, products, reviews: cleaned canonical tables, each anything
      :func:`read_table` reads; None is an empty table.
    cutoff: first day of the holdout period (the scoring day when scoring).
    horizon_days: holdout length in days.

  Returns:
    A lazy Spark DataFrame with the columns of the DuckDB result (before ``finish_features``), in
    no particular row order; :func:`to_pandas` gives the DuckDB function's frame.

  Raises:
    ValueError: an input lacks a column the query reads.
  """
  sources = {"transactions": transactions, "items": items, "products": products,
             "reviews": reviews}
  frames = {}
  for view, (table, columns) in feats.FEATURE_INPUTS.items():
    source = sources[table]
    df = _empty(spark, table) if source is None else read_table(spark, source, table)
    missing = [c for c in columns if c not in df.columns]
    if missing:
      raise ValueError(f"{table}: column(s) {', '.join(missing)} missing (have: "
                       f"{', '.join(df.columns)})")
    frames[view] = df.select(*columns)
  # views scoped to this query: each call registers its own names
  suffix = f"_{id(frames)}"
  query = spark_sql(cutoff, int(horizon_days))
  with _utc(spark):
    for view, df in frames.items():
      df.createOrReplaceTempView(view + suffix)
    try:
      renamed = _rename_views(query, suffix)
      result = spark.sql(renamed)
    finally:
      for view in frames:
        spark.catalog.dropTempView(view + suffix)
  return result


def _rename_views(query: str, suffix: str) -> str:
  import sqlglot
  from sqlglot import exp
  tree = sqlglot.parse_one(query, read="spark")
  for table in tree.find_all(exp.Table):
    if table.name in feats.FEATURE_INPUTS:  # the view under a new name, its old one as alias
      if not table.alias:
        table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
      table.set("this", exp.to_identifier(table.name + suffix))
  return tree.sql(dialect="spark")


def to_pandas(features: Any) -> pd.DataFrame:
  """Spark features collected as ``features.compute_customer_features`` returns them (sorted by
  customer_id, cvlib's column types)."""
  with quiet_pandas_warnings():
    df = features.toPandas()
  df = df.sort_values("customer_id", kind="stable").reset_index(drop=True)
  return feats.finish_features(df)


def is_native_source(spec: Any, base: Path) -> bool:
  """Whether Spark reads a generic source itself: a Spark table, or a parquet file or folder."""
  if spec.table is not None:
    return True
  if spec.path is None:
    return False
  path = str(spec.path)
  if "://" in path:
    return path.rstrip("/").endswith(".parquet") or spec.format == "parquet"
  from cvlib.config import resolve_data_path
  resolved = resolve_data_path(path, base)
  return spec.format == "parquet" or resolved.suffix == ".parquet" or (
      resolved.is_dir() and any(resolved.glob("*.parquet")))


def load_tables(spark: Any, params: Any) -> dict[str, Any] | None:
  """The params' data as Spark DataFrames, read by Spark, when every source is Spark's to read.

  That is the generic adapter with parquet files or folders (local paths or URIs) or Spark
  tables (``table:``) as sources. Spark reads them as they are: the column mapping is applied and
  order lines are grouped into orders as cvlib's own reader does, but cvlib's cleaning steps
  (cancellations, duplicates, refunds) are not: such tables are expected clean.

  Returns:
    {transactions, items, products, reviews} (None for an absent table), or None when the data
    is of another kind (``cvlib score`` then reads and cleans it with cvlib's own reader).

  Raises:
    ValueError: a mapped column is missing from a source (the message names source and column).
  """
  d = params.data
  specs = {k: getattr(d, k) for k in ("transactions", "reviews") if getattr(d, k) is not None}
  base = Path(params.source).parent if params.source else Path.cwd()
  if d.adapter != "generic" or not specs or not all(is_native_source(s, base)
                                                     for s in specs.values()):
    return None
  out: dict[str, Any] = {"transactions": None, "items": None, "products": None, "reviews": None}
  if "transactions" in specs:
    spec = specs["transactions"]
    out["transactions"], out["items"], out["products"] = _native_orders(
        _read_source(spark, spec, base), spec, _where(spec))
  if "reviews" in specs:
    spec = specs["reviews"]
    out["reviews"] = _native_reviews(_read_source(spark, spec, base), spec, _where(spec))
  return out


def _where(spec: Any) -> str:
  return f"table {spec.table}" if spec.table is not None else str(spec.path)


def _read_source(spark: Any, spec: Any, base: Path) -> Any:
  if spec.table is not None:
    return spark.table(spec.table)
  from cvlib.config import resolve_data_path
  path = str(spec.path) if "://" in str(spec.path) else str(resolve_data_path(spec.path, base))
  return spark.read.parquet(path)


def _mapped_columns(df: Any, spec: Any, where: str, required: tuple[str, ...],
                    optional: tuple[str, ...]) -> dict[str, Any]:
  from pyspark.sql import functions as F
  have = set(df.columns)
  out, missing = {}, []
  for name in required + optional:
    column = spec.columns.get(name, name)
    if column in have:
      out[name] = F.col(f"`{column}`")
    elif name in required:
      missing.append(repr(column))
  if missing:
    raise ValueError(f"{where}: column(s) {', '.join(missing)} missing (have: "
                     f"{', '.join(df.columns)})")
  return out


def _timestamp(column: Any, unit: str | None) -> Any:
  from pyspark.sql import functions as F
  if unit == "s":
    column = F.timestamp_seconds(column)
  elif unit == "ms":
    column = F.timestamp_millis(column)
  return column.cast("timestamp_ntz")


def _native_orders(df: Any, spec: Any, where: str) -> tuple[Any, Any, Any]:
  from pyspark.sql import functions as F
  m = _mapped_columns(df, spec, where, ("customer_id", "order_id", "timestamp"),
                      ("amount", "quantity", "unit_price", "product_id", "category"))
  if "amount" not in m and not {"quantity", "unit_price"} <= set(m):
    raise ValueError(f"{where}: needs an 'amount' column or both 'quantity' and 'unit_price' in "
                     "the column mapping")
  amount = (m["amount"] if "amount" in m else m["quantity"] * m["unit_price"]).cast("double")
  lines = df.select(m["customer_id"].cast("string").alias("customer_id"),
                    m["order_id"].cast("string").alias("order_id"),
                    _timestamp(m["timestamp"], spec.timestamp_unit).alias("timestamp"),
                    amount.alias("amount"),
                    *([m["product_id"].cast("string").alias("product_id"),
                       (m["quantity"] if "quantity" in m else F.lit(1.0)).cast("double")
                       .alias("quantity")] if "product_id" in m else []),
                    *([m["category"].cast("string").alias("category")]
                      if "category" in m and "product_id" in m else []))
  # line-level rows (one per product) or order-level rows: grouped by order either way
  orders = (lines.where(F.col("timestamp").isNotNull() & F.col("order_id").isNotNull())
            .groupBy("order_id")
            .agg(F.first("customer_id", ignorenulls=True).alias("customer_id"),
                 F.min("timestamp").alias("timestamp"), F.sum("amount").alias("amount"))
            .select("customer_id", "order_id", "timestamp", "amount"))
  if "product_id" not in m:
    return orders, None, None
  items = lines.where(F.col("product_id").isNotNull()).select("order_id", "product_id",
                                                              "quantity")
  category = F.col("category") if "category" in m else F.lit(None).cast("string")
  products = (lines.where(F.col("product_id").isNotNull())
              .groupBy("product_id").agg(F.first(category, ignorenulls=True).alias("category")))
  return orders, items, products


def _native_reviews(df: Any, spec: Any, where: str) -> Any:
  from pyspark.sql import functions as F
  m = _mapped_columns(df, spec, where, ("customer_id", "timestamp"), ("rating",))
  rating = m["rating"].cast("double") if "rating" in m else F.lit(None).cast("double")
  return df.select(m["customer_id"].cast("string").alias("customer_id"),
                   _timestamp(m["timestamp"], spec.timestamp_unit).alias("timestamp"),
                   rating.alias("rating"))

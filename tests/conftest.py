"""Shared fixtures: a tiny hand-made shop, a params-file writer, the tiny synthetic tables, the
session's report runs, its PostgreSQL server and its Spark session."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest
import yaml

from cvlib.data import schema

REPO = Path(__file__).resolve().parents[1]
PARAMS_DIR = REPO / "params"

# One XLA compilation cache for the session, inherited by every process it starts (the report
# runs' notebook kernels, cvlib run subprocesses): the suite runs the tiny report a dozen times and
# each of its four kernels used to compile the same networks again. Every compilation is kept (the
# defaults keep only those over a second). Set before anything imports jax; `make test` points it
# at the virtual environment so it also carries over between runs on one machine.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="cvlib-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

# A hand-made shop in the spirit of pymc-marketing's 14-row CLV test table. Calibration is
# [2015-01-01, 2015-02-01); with a 30-day horizon the holdout is [2015-02-01, 2015-03-03).
#   A: three purchase days in calibration (two orders on the first), one holdout order, one after
#   B: a single purchase
#   C: last calibration minute, then two holdout orders (the first at the cutoff's midnight,
#      the second on the holdout's last day)
#   D: holdout only (so no feature row)
#   E: a zero-amount first order, then two orders on one later day
TINY_TRANSACTIONS = [
    ("A", "o01", "2015-01-01 10:00", 10.0),
    ("A", "o02", "2015-01-01 15:00", 5.0),
    ("A", "o03", "2015-01-11 09:00", 20.0),
    ("A", "o04", "2015-01-21 18:30", 30.0),
    ("A", "o05", "2015-02-10 12:00", 40.0),
    ("A", "o06", "2015-03-10 12:00", 100.0),
    ("B", "o07", "2015-01-15 08:00", 12.0),
    ("C", "o08", "2015-01-31 23:59", 8.0),
    ("C", "o09", "2015-02-01 00:00", 9.0),
    ("C", "o10", "2015-03-02 23:00", 1.0),
    ("D", "o11", "2015-02-05 10:00", 7.0),
    ("E", "o12", "2015-01-05 10:00", 0.0),
    ("E", "o13", "2015-01-20 10:00", 50.0),
    ("E", "o14", "2015-01-20 17:00", 25.0),
]
TINY_ITEMS = [  # order_id, product_id, quantity, unit_price
    ("o01", "P1", 1.0, 4.0),
    ("o01", "P2", 2.0, 3.0),
    ("o03", "P1", 1.0, 20.0),
    ("o05", "P3", 1.0, 40.0),
]
TINY_PRODUCTS = [("P1", "shoes", "red shoe"), ("P2", "socks", "wool sock"), ("P3", "hats", None)]
TINY_REVIEWS = [  # review_id, customer_id, timestamp, rating, text
    ("r1", "A", "2015-01-02 12:00", 5.0, "great fit"),
    ("r2", "A", "2015-01-25 12:00", 2.0, "fell apart"),
    ("r3", "A", "2015-02-05 12:00", 1.0, "holdout review, not a feature"),
    ("r4", None, "2015-01-10 12:00", 4.0, "anonymous"),
    ("r5", "E", "2015-01-21 12:00", None, "no stars given"),
]


def make_transactions(rows: list[tuple]) -> pd.DataFrame:
  """Canonical transactions from (customer_id, order_id, timestamp, amount) tuples."""
  df = pd.DataFrame(rows, columns=["customer_id", "order_id", "timestamp", "amount"])
  return schema.coerce_table("transactions", df)


def make_reviews(rows: list[tuple]) -> pd.DataFrame:
  """Canonical reviews from (review_id, customer_id, timestamp, rating, text) tuples."""
  df = pd.DataFrame(rows, columns=["review_id", "customer_id", "timestamp", "rating", "text"])
  return schema.coerce_table("reviews", df)


def make_items(rows: list[tuple]) -> pd.DataFrame:
  df = pd.DataFrame(rows, columns=["order_id", "product_id", "quantity", "unit_price"])
  df["amount"] = df["quantity"] * df["unit_price"]
  return schema.coerce_table("items", df)


def make_tables(**frames: pd.DataFrame):
  """A :class:`cvlib.data.adapters.Tables` with empty canonical tables where none is given."""
  from cvlib.data.adapters import CANONICAL_FILES, Tables
  full = {n: frames.pop(n) if n in frames else schema.empty_table(n) for n in CANONICAL_FILES}
  return Tables(**full, **frames)


@pytest.fixture
def tiny_shop() -> dict[str, pd.DataFrame]:
  """The hand-made shop's canonical tables (fresh copies per test)."""
  products = schema.coerce_table(
      "products", pd.DataFrame(TINY_PRODUCTS, columns=["product_id", "category", "description"]))
  return {"transactions": make_transactions(TINY_TRANSACTIONS), "items": make_items(TINY_ITEMS),
          "products": products, "reviews": make_reviews(TINY_REVIEWS)}


@pytest.fixture
def write_params(tmp_path: Path) -> Callable[..., Path]:
  """Writes a params file into ``tmp_path`` from a dict (dumped as YAML) or from raw text."""

  def write(content: dict[str, Any] | str, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path

  return write


@pytest.fixture(scope="session")
def tiny_params():
  from cvlib import config
  return config.load_params(PARAMS_DIR / "tiny.yaml")


@pytest.fixture(scope="session")
def tiny_tables(tiny_params):
  """The tiny synthetic shop (300 customers), as the adapter returns it. Do not modify."""
  from cvlib.data import adapters
  return adapters.load_data(tiny_params)


@pytest.fixture(scope="session")
def tiny_clean(tiny_tables):
  """The tiny synthetic shop after cleaning, and the cleaning log. Do not modify."""
  from cvlib.data import clean
  return clean.clean_tables(tiny_tables)


@pytest.fixture
def build():
  """The table builders above, for tests that make their own small tables."""

  class Builders:
    transactions = staticmethod(make_transactions)
    reviews = staticmethod(make_reviews)
    items = staticmethod(make_items)
    tables = staticmethod(make_tables)

  return Builders


# --- end-to-end runs ------------------------------------------------------------------------------

# Model sizes for end-to-end runs of small generic datasets: seconds per stage.
SMALL_MODELS = """
finetune: {num_layers: 1, training: {epochs: 1, batch_size: 16}, max_train_examples: 150, buckets: [32]}
value: {hidden: [16], epochs: 20, patience: 5, text_dims: 2, cv_folds: 2}
"""


def synthetic_frames(n_customers: int = 200, seed: int = 3) -> dict[str, pd.DataFrame]:
  from cvlib.data import synthetic
  return synthetic.make_demo_data(n_customers=n_customers, seed=seed)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
  """The whole report on params/tiny.yaml, run once per test session."""
  import cvlib
  out = tmp_path_factory.mktemp("reports")
  index = cvlib.run(PARAMS_DIR / "tiny.yaml", out=out, log=lambda line: None)
  assert index == out / "tiny" / "index.html"
  return out / "tiny"


# --- the hostile shop, in PostgreSQL -------------------------------------------------------------

# Review texts and a product name that are attacks. The shop that holds them is the database's
# (tests/test_database.py) and its report the one the browser opens (tests/test_browser.py): one
# report run serves both, a database run and a run on hostile text.
HOSTILE = [
    "<script>alert(1)</script> terrible, broken, awful, worst purchase ever",
    "<img src=x onerror=alert(1)> horrible quality, never again, broken",
    # a clause of a keyword and a verdict ("awful service") is tagged; so is the longer one
    '<a href="javascript:alert(1)">click me</a> the customer service was awful, terrible, useless',
    "</td></tr></table><b>unbalanced <i>tags awful terrible broken",
]
HOSTILE_PRODUCT = '<svg onload=alert(1)>Deluxe "mug" & <b>saucer</b>'

# A password that appears nowhere else: any output file or message holding it leaked it.
PG_PASSWORD = "Pw-7qXz!k9@Lm"
SHOP_DB_ENV = "CVLIB_TEST_SHOP_DB"
ONLINE_RETAIL = REPO / "tests" / "data" / "online_retail" / "online_retail.csv"


def hostile_shop() -> dict[str, pd.DataFrame]:
  """The small synthetic shop as order lines and reviews, whose most negative reviews and every
  product name are attacks (the tests' generic end-to-end shop)."""
  f = synthetic_frames()
  reviews = f["reviews"].dropna(subset=["text", "customer_id"]).copy()
  reviews["rating"] = reviews["rating"].clip(lower=2)  # only the hostile reviews have one star
  worst = reviews.index[:len(HOSTILE)]
  reviews.loc[worst, "text"] = HOSTILE
  reviews.loc[worst, "rating"] = 1.0
  products = f["products"].copy()
  # every product name is an attack (with its number, so that products stay distinguishable):
  # the report's table of the most recommended products shows some of them, whichever they are
  products["description"] = HOSTILE_PRODUCT + " " + products["product_id"].astype(str)
  lines = f["items"].merge(f["transactions"].drop_duplicates("order_id"), on="order_id",
                           suffixes=("", "_order")).merge(products, on="product_id")
  lines = lines[["customer_id", "order_id", "timestamp", "product_id", "description",
                 "quantity", "unit_price"]]
  reviews = reviews[["customer_id", "timestamp", "rating", "text"]]
  return {"lines": lines.reset_index(drop=True), "reviews": reviews.reset_index(drop=True)}


def shop_params(folder: Path, transactions: dict, reviews: dict, name: str = "shop.yaml") -> Path:
  path = folder / name
  path.write_text(
      "dataset: shop\ndata:\n  adapter: generic\n"
      f"  transactions: {json.dumps(transactions)}\n  reviews: {json.dumps(reviews)}\n"
      "split: {calibration_end: 2024-01-01}\n" + SMALL_MODELS)
  return path


def db_source(**sql) -> dict:
  return {"sql": {"url_env": SHOP_DB_ENV, **sql}}


def write_shop(folder: Path) -> tuple[Path, Path]:
  """The hostile shop's files and two params files: one reading the files, one the database."""
  shop = hostile_shop()
  shop["lines"].to_csv(folder / "lines.csv", index=False)
  shop["reviews"].to_json(folder / "reviews.jsonl", orient="records", lines=True,
                          date_format="iso")
  files = shop_params(folder, {"path": "lines.csv"}, {"path": "reviews.jsonl"}, "files.yaml")
  db = shop_params(folder, db_source(table="lines"),
                   db_source(query="select customer_id, timestamp, rating, text from reviews"),
                   "db.yaml")
  return files, db


def load_tables(server, **frames: pd.DataFrame) -> None:
  import adbc_driver_postgresql.dbapi as pg
  import pyarrow as pa
  with pg.connect(server.url()) as conn, conn.cursor() as cur:
    for name, df in frames.items():
      cur.adbc_ingest(name, pa.Table.from_pandas(df, preserve_index=False), mode="replace")
    conn.commit()


@pytest.fixture(scope="session")
def postgres():
  """A real PostgreSQL server (tests/pgserver.py, never a mock) holding the hostile shop's order
  lines and reviews and the Online Retail fixture; fails, never skips, where Debian's
  ``postgresql`` is not installed (the message says so)."""
  from pgserver import PostgresMissing, PostgresServer
  try:
    server = PostgresServer(password=PG_PASSWORD).start()
  except PostgresMissing as e:
    pytest.fail(str(e))
  try:
    shop = hostile_shop()
    retail = pd.read_csv(ONLINE_RETAIL, dtype=str, keep_default_na=False, na_values=[""])
    # typed as a shop's database would type them: numbers, a timestamp, float customer ids
    retail = retail.astype({"Quantity": "int64", "UnitPrice": "float64", "CustomerID": "float64"})
    retail["InvoiceDate"] = pd.to_datetime(retail["InvoiceDate"], errors="coerce")
    load_tables(server, lines=shop["lines"], reviews=shop["reviews"], online_retail=retail)
    yield server
  finally:
    server.stop()


@pytest.fixture(scope="session")
def db_run(postgres, tmp_path_factory):
  """The hostile shop's whole report, run once per session from the database; its log lines.
  Tests only read it (one writes a params file beside ``files``)."""
  import cvlib
  tmp = tmp_path_factory.mktemp("db-run")
  files, db = write_shop(tmp)
  log: list[str] = []
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv(SHOP_DB_ENV, postgres.url())
    cvlib.run(db, out=tmp / "out", log=log.append)
  return {"run": tmp / "out" / "shop", "out": tmp / "out", "log": log, "files": files, "db": db}


# --- Spark ----------------------------------------------------------------------------------------

# Settings of the tests' one local session: two cores, few shuffle partitions (the data are tiny).
SPARK_TEST_CONF = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
                   "spark.sql.adaptive.coalescePartitions.enabled": "true"}


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
  """One local Spark session (``local[2]``) shared by every Spark test; fails, never skips,
  without Java or pyspark (the message says what to install)."""
  from cvlib.data import spark as spark_engine
  try:
    session = spark_engine.get_session(
        "local[2]", app_name="cvlib-tests", shuffle_partitions=2,
        conf={**SPARK_TEST_CONF,
              "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("spark-warehouse")),
              "spark.local.dir": str(tmp_path_factory.mktemp("spark-local"))})
  except spark_engine.SparkError as e:
    pytest.fail(f"the Spark tests need a local Spark session: {e}", pytrace=False)
  yield session
  session.stop()

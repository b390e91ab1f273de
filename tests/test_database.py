"""A database as input: a real PostgreSQL server (tests/pgserver.py), never a mock.

The server is Debian's ``postgresql`` package, a throwaway cluster started once per session; where
it is not installed these tests fail and say what to install.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pandas as pd
import pytest

import cvlib
from cvlib import cli, config
from cvlib.data import clean, database, features
from cvlib.data.adapters import DataError, load_data
from cvlib.runner import validate_inputs

from conftest import (ONLINE_RETAIL, PG_PASSWORD, SHOP_DB_ENV, db_source, shop_params,
                      write_shop)

PASSWORD = PG_PASSWORD
URL_ENV = SHOP_DB_ENV
RETAIL_COLUMNS = {"order_id": "InvoiceNo", "product_id": "StockCode", "description": "Description",
                  "quantity": "Quantity", "timestamp": "InvoiceDate", "unit_price": "UnitPrice",
                  "customer_id": "CustomerID"}


def tree_digest(folder: Path) -> dict[str, str]:
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def without_timings(x):
  """metrics.json without what differs between any two runs: seconds taken."""
  if isinstance(x, dict):
    return {k: without_timings(v) for k, v in x.items() if "timing" not in k and "seconds" not in k}
  if isinstance(x, list):
    return [without_timings(v) for v in x]
  return x


def test_database_inputs_are_the_files_inputs(postgres, tmp_path, monkeypatch):
  """What ``cvlib run`` validates and hands to stage 1 (the notebooks' only input besides the
  params) is the same from the database as from the files: cleaned tables, log and counts."""
  files, db = write_shop(tmp_path)
  monkeypatch.setenv(URL_ENV, postgres.url())
  from_files = validate_inputs(config.load_params(files))
  from_db = validate_inputs(config.load_params(db))
  for name in ("customers", "transactions", "items", "products", "reviews"):
    pd.testing.assert_frame_equal(getattr(from_db.cleaned, name),
                                  getattr(from_files.cleaned, name), obj=name)
  assert from_db.log.rows == from_files.log.rows and from_db.counts == from_files.counts
  assert [s["path"].split("@")[0] for s in from_db.sources] == ["postgresql://cvlib"] * 2
  assert from_db.sources[0]["path"].endswith("table lines") and from_db.sources[0]["rows"] > 0


def test_database_run_writes_the_report(db_run):
  run = json.loads((db_run["run"] / "run.json").read_text())
  assert [i["path"].split("@")[0] for i in run["inputs"]] == ["postgresql://cvlib"] * 2
  assert run["params"]["data"]["transactions"]["sql"] == {
      "url_env": URL_ENV, "url": None, "table": "lines", "query": None}
  assert (db_run["run"] / "index.html").exists()


@pytest.mark.slow
def test_database_run_gives_the_metrics_of_the_same_data_from_files(db_run, tmp_path):
  """The whole report from the files too: metrics.json is the same, timings aside."""
  cvlib.run(db_run["files"], out=tmp_path, log=lambda s: None)
  from_db = json.loads((db_run["run"] / "metrics.json").read_text())
  from_files = json.loads((tmp_path / "shop" / "metrics.json").read_text())
  assert without_timings(from_db) == without_timings(from_files)


def test_password_reaches_no_output_file_and_no_log(db_run):
  encoded = PASSWORD.replace("!", "%21").replace("@", "%40")
  leaks = [name for name in tree_digest(db_run["out"]) for secret in (PASSWORD, encoded)
           if secret.encode() in (db_run["out"] / name).read_bytes()]
  assert not leaks, f"the database password is in {leaks}"
  assert db_run["log"] and not any(PASSWORD in line or encoded in line for line in db_run["log"])
  assert (db_run["run"] / "models" / "manifest.json").exists()
  assert (db_run["run"] / "run.json").exists()


def test_connection_lost_mid_read_leaves_the_previous_report(db_run, postgres, monkeypatch,
                                                             capsys):
  """The server drops the connection while rows stream: exit 2, one line, report untouched."""
  before = tree_digest(db_run["out"])
  # a pause per row (the extra column is not mapped): rows trickle for seconds
  slow = "select customer_id, timestamp, rating, text, pg_sleep(0.02)::text as pause from reviews"
  params = shop_params(db_run["db"].parent, db_source(table="lines"), db_source(query=slow),
                       "doomed.yaml")
  monkeypatch.setenv(URL_ENV, postgres.url() + "?application_name=cvlib_doomed")
  stop = threading.Event()

  def terminate():  # as an administrator (or a crash) would, once the read is under way
    import adbc_driver_postgresql.dbapi as pg
    # autocommit: inside a transaction pg_stat_activity would stay the snapshot of its start
    with pg.connect(postgres.url(), autocommit=True) as conn, conn.cursor() as cur:
      while not stop.wait(0.2):
        cur.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                    "where application_name = 'cvlib_doomed' and query like '%pg_sleep%'")
        if cur.fetchall():
          return

  killer = threading.Thread(target=terminate, daemon=True)
  killer.start()
  try:
    code = cli.main(["run", str(params), "--out", str(db_run["out"])])
  finally:
    stop.set()
    killer.join(10)
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1, err
  assert "data.reviews.sql (postgresql://cvlib@127.0.0.1" in err[0]
  assert "connection was lost during the read" in err[0] and PASSWORD not in err[0]
  assert tree_digest(db_run["out"]) == before


@pytest.mark.parametrize("case, source, problem", [
    ("unreachable host", {"table": "lines"}, "cannot reach the database server"),
    ("wrong password", {"table": "lines"}, "login refused (wrong user or password)"),
    ("missing table", {"table": "no_such_orders"},
     'table not found: relation "no_such_orders" does not exist'),
    ("missing column", {"query": "select customer_id, order_id, when_bought from lines"},
     'column not found: column "when_bought" does not exist'),
    ("failing query", {"query": "select *, 1 / (quantity - quantity) as boom from lines"},
     "query failed: division by zero"),
    ("unset variable", {"table": "lines"}, f"environment variable {URL_ENV} is not set"),
])
def test_validate_database_problems_exit_2_with_one_line(case, source, problem, postgres,
                                                         tmp_path, monkeypatch, capsys):
  url = {"unreachable host": postgres.url(port=pg_closed_port()),
         "wrong password": postgres.url(password=PASSWORD + "-wrong")}.get(case, postgres.url())
  if case == "unset variable":
    monkeypatch.delenv(URL_ENV, raising=False)
  else:
    monkeypatch.setenv(URL_ENV, url)
  params = tmp_path / "shop.yaml"
  params.write_text("dataset: shop\ndata:\n  adapter: generic\n"
                    f"  transactions: {json.dumps(db_source(**source))}\n")
  before = tree_digest(tmp_path)
  assert cli.main(["validate", str(params)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  assert err[0].startswith("error: data.transactions.sql") and problem in err[0], err[0]
  assert PASSWORD not in err[0] and "Pw-7qXz" not in err[0]
  assert tree_digest(tmp_path) == before  # nothing written


def pg_closed_port() -> int:
  from pgserver import free_port
  return free_port()  # bound and closed again: nothing listens there


def test_missing_mapped_column_names_the_database_source(postgres, tmp_path, monkeypatch, capsys):
  monkeypatch.setenv(URL_ENV, postgres.url())
  params = tmp_path / "shop.yaml"
  src = {**db_source(table="lines"), "columns": {"amount": "total_paid"}}
  params.write_text(f"dataset: shop\ndata:\n  adapter: generic\n  transactions: {json.dumps(src)}\n")
  assert cli.main(["validate", str(params)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(
      "error: data.transactions.sql (postgresql://cvlib@127.0.0.1") and \
      "table lines): column 'total_paid' (for amount) missing" in err[0], err


def test_online_retail_from_the_database_matches_the_file(postgres, tmp_path, monkeypatch):
  """The Online Retail fixture typed as a database types it (numbers, timestamps, float ids):
  the same cleaned tables, cleaning log and customer features as from its CSV."""
  monkeypatch.setenv(URL_ENV, postgres.url())
  read = {}
  for how, source in (("file", {"path": str(ONLINE_RETAIL)}),
                      ("db", db_source(table="online_retail"))):
    params = config.params_from_dict({"dataset": "retail", "data": {
        "adapter": "generic", "transactions": {**source, "columns": RETAIL_COLUMNS}}})
    read[how] = clean.clean_tables(load_data(params))
  (db, db_log), (file, file_log) = read["db"], read["file"]
  for name in ("customers", "transactions", "items", "products"):
    pd.testing.assert_frame_equal(getattr(db, name), getattr(file, name), obj=name)
  assert db_log.rows == file_log.rows
  args = lambda t: (t.transactions, t.items, t.products, t.reviews, pd.Timestamp("2011-01-01")
                    .date(), 180)
  pd.testing.assert_frame_equal(features.compute_customer_features(*args(db)),
                                features.compute_customer_features(*args(file)))


def test_password_in_the_params_url_is_refused(write_params):
  path = write_params({"dataset": "shop", "data": {"adapter": "generic", "transactions": {
      "sql": {"url": f"postgresql://shop:{PASSWORD}@db.example:5432/shop", "table": "orders"}}}})
  with pytest.raises(config.ParamsError) as e:
    config.load_params(path)
  msg = str(e.value)
  assert "holds a password" in msg and "url_env" in msg and "environment variable" in msg
  assert PASSWORD not in msg


@pytest.mark.parametrize("sql, says", [
    ({"url_env": "SHOP_DB_URL"}, "exactly one of table or query"),
    ({"url_env": "SHOP_DB_URL", "table": "a", "query": "select 1"}, "exactly one of table or query"),
    ({"table": "orders"}, "exactly one of url_env"),
    ({"url_env": "postgresql://u:secret@h/db", "table": "orders"}, "not the URL itself"),
    ({"url_env": "SHOP_DB_URL", "table": "orders; drop table x"}, "a table name or schema.table"),
])
def test_sql_source_checked_at_load(sql, says, write_params):
  path = write_params({"dataset": "shop", "data": {"adapter": "generic",
                                                    "transactions": {"sql": sql}}})
  with pytest.raises(config.ParamsError, match="data.transactions.sql") as e:
    config.load_params(path)
  assert says in str(e.value) and "secret" not in str(e.value)


def test_redact_and_scrub_keep_the_password_out():
  url = "postgresql://shop:p%40ss@db.example:6432/sales?sslmode=require&password=other"
  assert database.redact(url) == "postgresql://shop@db.example:6432/sales"
  line = database.scrub(f"failed for {url}: p@ss and p%40ss and other\n  more", url)
  assert "p@ss" not in line and "p%40ss" not in line and "other" not in line and "\n" not in line


def test_database_error_is_a_data_error(postgres, monkeypatch):
  monkeypatch.setenv(URL_ENV, postgres.url())
  params = config.params_from_dict({"dataset": "shop", "data": {
      "adapter": "generic", "transactions": db_source(query="select * from lines where false")}})
  with pytest.raises(DataError, match="no rows: the table or query returned nothing"):
    load_data(params)

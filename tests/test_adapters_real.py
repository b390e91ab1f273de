"""Tests for the dataset adapters (olist, online_retail, cdnow, womens_clothing,
chinese_reviews), the cleaning of their quirks, and the features added for them.

Fast tests read tiny hand-written fixtures in ``tests/data/<dataset>/``, laid out like the real
files. Slow tests (``-m slow``) read the real data under ``$CVLIB_DATA_DIR`` and check the
SOURCE.md counts.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cvlib.data import adapters, clean, features, schema

from cvlib import cli, config
from cvlib.data.adapters import DataError

DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parents[1]
TODAY = dt.date(2024, 1, 1)  # fixed "today" for the out-of-range date check


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch, request):
  if "slow" not in request.keywords:
    monkeypatch.delenv("CVLIB_DATA_DIR", raising=False)


@pytest.fixture
def load(write_params):
  """Loads ``path`` (absolute, or relative to the params file in tmp_path) with ``adapter``."""

  def _load(adapter: str, path: str | Path | None, **params) -> adapters.Tables:
    data = {"adapter": adapter, "path": None if path is None else str(path)}
    return adapters.load_data(config.load_params(write_params({"dataset": "t", "data": data,
                                                               **params})))

  return _load


def _steps(log: clean.CleaningLog, table: str) -> dict[str, dict]:
  return {r["step"]: r for r in log.rows if r["table"] == table}


def _affected(log: clean.CleaningLog, table: str) -> dict[str, int]:
  return {k: v["affected"] for k, v in _steps(log, table).items()}


def _check_counts_add_up(before: pd.DataFrame, after: pd.DataFrame, log, table: str) -> None:
  n = len(before)
  for row in log.rows:
    if row["table"] != table:
      continue
    assert row["rows_before"] == n, row  # each step starts where the last one left off
    if row["action"] == "removed":
      n -= row["affected"]
  assert n == len(after)


def _check_dtypes(t: adapters.Tables) -> None:
  for name in adapters.CANONICAL_FILES:
    frame = getattr(t, name)
    for col in schema.TABLES[name]:
      if col.name in frame:
        assert str(frame[col.name].dtype) == col.dtype, (name, col.name, frame[col.name].dtype)


def _problem(exc: pytest.ExceptionInfo) -> str:
  assert len(exc.value.problems) == 1, exc.value.problems
  return exc.value.problems[0]


# --- Online Retail ------------------------------------------------------------------------------

OR_FILE = DATA / "online_retail" / "online_retail.csv"


@pytest.fixture
def retail(load):
  return load("online_retail", OR_FILE)


def test_online_retail_tables(retail):
  t = retail
  _check_dtypes(t)
  tx = t.transactions.set_index("order_id")
  assert len(tx) == 13 and len(t.items) == 18  # one order per invoice, one line per row
  assert tx.loc["700001", "customer_id"] == "90003"  # "90003.0" normalised
  # the duplicated line still counts here; cleaning takes it out
  assert np.isclose(tx.loc["700001", "amount"], 6 * 2.55 + 2 * 6 * 3.39)
  assert tx["customer_id"].isna().sum() == 3  # 700002, 700008, A720001
  assert tx.loc[tx[adapters.STATUS] == "cancellation"].index.tolist() == [
      "C700004", "C700006", "C700007", "C790002"]
  assert t.items[adapters.DUPLICATE].tolist() == [False, False, True] + [False] * 15
  assert t.customers["customer_id"].tolist() == ["90001", "90002", "90003"]
  assert t.customers["country"].tolist() == ["France", "United Kingdom", "United Kingdom"]
  desc = t.products.set_index("product_id")["description"]
  assert desc["10011A"] == "WHITE CERAMIC CANDLE CUP"  # the most used spelling
  assert desc["10003"] == "WOOL HAND WARMER RED, DOTTED"  # quoted comma
  assert t.products["category"].isna().all() and len(t.reviews) == 0
  assert t.sources[0]["sha256"] == hashlib.sha256(OR_FILE.read_bytes()).hexdigest()


def test_online_retail_cleaning(retail):
  out, log = clean.clean_tables(retail, today=TODAY)
  tx = out.transactions
  assert tx[["customer_id", "order_id"]].values.tolist() == [
      ["90001", "700003"], ["90002", "710001"],
      ["90003", "700001"], ["90003", "700005"], ["90003", "790003"]]
  amounts = tx.set_index("order_id")["amount"]
  np.testing.assert_allclose(amounts[["700001", "700003", "700005", "710001", "790003"]],
                             [35.64, 90.0, 8 * 7.65, 4.2, 5.9])
  # the £168,470 invoice 790001 went with its cancellation C790002
  assert not tx["order_id"].isin(["790001", "C790002"]).any()
  assert tx.groupby("customer_id")["amount"].sum()["90002"] == pytest.approx(4.2)
  assert list(tx.columns) == ["customer_id", "order_id", "timestamp", "amount"]  # marks dropped
  lines = out.items.set_index(["order_id", "product_id"])
  assert lines.loc[("700005", "10007"), ["quantity", "amount"]].tolist() == [
      8.0, pytest.approx(61.2)]
  assert ("700003", "10006") not in lines.index and ("700003", "10005") in lines.index
  assert (out.items["quantity"] > 0).all() and adapters.DUPLICATE not in out.items
  assert out.items["order_id"].isin(tx["order_id"]).all()
  assert _affected(log, "transactions") == {
      "amount reduced by duplicate lines": 1, "missing customer id": 3, "cancellation": 4,
      "purchase cancelled or returned in full": 1, "purchase cancelled or returned in part": 2}
  assert _affected(log, "items") == {
      "exact duplicate rows": 1, "cancellation": 3, "cancellation without a matching purchase": 1,
      "purchase line cancelled or returned": 2, "purchase line partly cancelled or returned": 1,
      "lines of removed or unknown orders": 4}
  items = _steps(log, "items")
  assert "quantity: 2; a larger earlier line reduced: 1" in items["cancellation"]["detail"]
  assert items["lines of removed or unknown orders"]["detail"] == "missing customer id: 4"
  part = _steps(log, "transactions")["purchase cancelled or returned in part"]
  assert part["action"] == "altered"
  _check_counts_add_up(retail.transactions, tx, log, "transactions")
  _check_counts_add_up(retail.items, out.items, log, "items")
  assert len(out.customers) == 3  # every customer with an id stays listed


def _retail_csv(tmp_path: Path, rows: list[str]) -> Path:
  path = tmp_path / "retail.csv"
  path.write_text("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,"
                  "Country\n" + "\n".join(rows) + "\n")
  return path


def test_cancellation_needs_same_customer_and_an_earlier_purchase(tmp_path, load):
  path = _retail_csv(tmp_path, [
      "1,A,a,5,2011-01-02 10:00:00,2.0,1.0,UK",
      "C2,A,a,-5,2011-01-03 10:00:00,2.0,2.0,UK",  # another customer: no match
      "C3,B,b,-3,2011-01-01 09:00:00,1.0,1.0,UK",  # before the purchase it would cancel
      "4,B,b,3,2011-01-01 10:00:00,1.0,1.0,UK",
      "5,A,a,5,2011-01-04 10:00:00,2.0,1.0,UK",
      "C6,A,a,-5,2011-01-05 10:00:00,2.0,1.0,UK",  # the latest earlier purchase goes: order 5
  ])
  out, log = clean.clean_tables(load("online_retail", path), today=TODAY)
  assert out.transactions["order_id"].tolist() == ["4", "1"]
  assert _affected(log, "items")["cancellation without a matching purchase"] == 2


def test_returns_outside_cancellation_invoices_are_matched(tmp_path, load):
  path = _retail_csv(tmp_path, [
      "1,A,a,4,2011-01-02 10:00:00,2.5,1.0,UK",
      "1,B,b,1,2011-01-02 10:00:00,3.0,1.0,UK",
      "2,A,a,-4,2011-01-09 10:00:00,2.5,1.0,UK",  # a negative quantity in a plain invoice
  ])
  out, log = clean.clean_tables(load("online_retail", path), today=TODAY)
  assert out.transactions["amount"].tolist() == [3.0]
  assert _affected(log, "transactions") == {"return": 1,
                                            "purchase cancelled or returned in part": 1}
  assert _affected(log, "items") == {"return": 1, "purchase line cancelled or returned": 1}


def test_online_retail_ii_column_names(tmp_path, load):
  (tmp_path / "r2.csv").write_text("Invoice,StockCode,Description,Quantity,InvoiceDate,Price,"
                                   "Customer ID,Country\n489434,85048,LED,12,2009-12-01 07:45:00,"
                                   "6.95,13085.0,United Kingdom\n")
  t = load("online_retail", tmp_path / "r2.csv")
  assert t.transactions[["order_id", "customer_id", "amount"]].values.tolist() == [
      ["489434", "13085", 83.4]]


def test_dates_out_of_range_removed(tmp_path, load):
  path = _retail_csv(tmp_path, ["1,A,a,1,1970-01-01 00:00:00,2.0,1.0,UK",
                                "2,A,a,1,2011-01-02 10:00:00,2.0,1.0,UK",
                                "3,A,a,1,2031-01-02 10:00:00,2.0,1.0,UK"])
  out, log = clean.clean_tables(load("online_retail", path), today=TODAY)
  assert out.transactions["order_id"].tolist() == ["2"]
  row = _steps(log, "transactions")["out-of-range date"]
  assert (row["affected"], row["detail"]) == (2, "dated before 1990-01-01 or after 2024-01-01")
  assert _steps(log, "items")["lines of removed or unknown orders"]["detail"] == (
      "out-of-range date: 2")


# --- olist --------------------------------------------------------------------------------------

OLIST = DATA / "olist"


@pytest.fixture
def olist(load):
  return load("olist", OLIST)


def test_olist_tables(olist):
  t = olist
  _check_dtypes(t)
  # customer_id is one per order: the person is customer_unique_id
  assert t.customers["customer_id"].tolist() == ["u1", "u2", "u3"]
  assert t.customers["zip_code_prefix"].tolist() == ["04534", "18682", "01151"]  # zeros restored
  tx = t.transactions.set_index("order_id")
  assert tx["customer_id"].to_dict() == {"o1": "u1", "o2": "u1", "o3": "u2", "o4": "u3",
                                         "o5": "u2"}
  # the amount is what was paid (8 instalments with interest), not the item prices + freight (120)
  assert tx.loc["o1", "amount"] == 125.5 and tx.loc["o2", "amount"] == 115.0
  assert np.isnan(tx.loc["o4", "amount"])  # unavailable: no payment, no items
  assert tx[adapters.STATUS].to_dict() == {"o1": "purchase", "o2": "purchase", "o3": "cancelled",
                                           "o4": "cancelled", "o5": "purchase"}
  assert tx.loc["o5", "order_status"] == "shipped"
  assert t.items[["order_id", "quantity", "unit_price"]].values.tolist() == [
      ["o1", 1.0, 50.0], ["o1", 1.0, 50.0], ["o2", 1.0, 99.9], ["o3", 1.0, 50.0],
      ["o5", 1.0, 20.0]]
  assert t.items["order_item_id"].tolist() == ["1", "2", "1", "1", "1"]
  cats = t.products.set_index("product_id")["category"]
  assert cats["p1"] == "health_beauty"  # translated (the translation file has a BOM and CRLF)
  assert cats["p3"] == "pc_gamer" and pd.isna(cats["p9"])  # untranslated stays Portuguese
  rv = t.reviews
  assert rv["review_id"].tolist() == ["r1", "r2", "r3", "r1", "r5"]
  assert rv["customer_id"].tolist() == ["u1", "u1", "u2", "u1", "u2"]  # through the order
  assert rv["product_id"].tolist() == ["p1", "p2", "p1", "p2", "p3"]
  assert rv.loc[0, "text"] == "Muito bom, chegou rápido.\nRecomendo!"  # quoted multi-line text
  assert rv.loc[1, "title"] == "Ruim" and rv["rating"].tolist() == [5.0, 1.0, 2.0, 5.0, 4.0]
  assert rv.loc[0, "timestamp"] == pd.Timestamp("2017-10-11")
  assert any("1 of 6 payment rows belong to orders not in" in n for n in t.notes)


def test_olist_cleaning(olist):
  out, log = clean.clean_tables(olist, today=TODAY)
  assert out.transactions["order_id"].tolist() == ["o1", "o2", "o5"]
  assert _affected(log, "transactions") == {"cancelled order": 2}
  assert _steps(log, "items")["lines of removed or unknown orders"]["detail"] == (
      "cancelled order: 1")
  assert _affected(log, "reviews") == {"repeated review id": 1, "empty text": 2}
  assert out.reviews["review_id"].tolist() == ["r1", "r2", "r3", "r5"]
  assert "order_status" in out.transactions and adapters.STATUS not in out.transactions


def test_olist_gzip_files(tmp_path, load):
  folder = tmp_path / "olist"
  folder.mkdir()
  for f in OLIST.iterdir():
    (folder / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
  t = load("olist", "olist")  # relative to the params file
  assert t.transactions["amount"].tolist()[:2] == [125.5, 115.0]
  assert {Path(s["path"]).name for s in t.sources} >= {"olist_orders_dataset.csv.gz"}


# --- CDNOW --------------------------------------------------------------------------------------

def test_cdnow_master(load):
  t = load("cdnow", DATA / "cdnow" / "CDNOW_master.txt")
  _check_dtypes(t)
  tx = t.transactions
  assert t.customers["customer_id"].tolist() == ["00001", "00002", "00003", "00004"]
  assert tx["order_id"].tolist() == [str(i) for i in range(1, 10)]  # the data row
  assert tx["amount"].tolist() == [11.77, 12.0, 77.0, 77.0, 20.76, 20.76, 19.54, 57.45, 0.0]
  assert tx["quantity"].tolist()[:3] == [1.0, 1.0, 5.0]
  assert tx["timestamp"].iloc[1] == pd.Timestamp("1997-01-12")
  assert any("1 rows repeat another row exactly (rows 4)" in n for n in t.notes)
  out, log = clean.clean_tables(t, today=TODAY)
  assert len(out.transactions) == 9  # repeated rows are separate purchases: kept
  assert _affected(log, "transactions") == {"zero amount": 1}


def test_cdnow_sample_layout(load):
  t = load("cdnow", DATA / "cdnow" / "CDNOW_sample.txt")
  assert t.transactions["customer_id"].tolist() == ["00004", "00004", "00004", "00018"]
  assert t.transactions["amount"].sum() == pytest.approx(100.5)


def test_cdnow_from_the_lifetimes_package(load):
  pytest.importorskip("lifetimes")
  t = load("cdnow", None)
  assert len(t.transactions) == 69_659 and len(t.customers) == 23_570
  assert t.sources[0]["sha256"] == (
      "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef")


# --- reviews-only datasets ----------------------------------------------------------------------

def test_womens_clothing(load):
  t = load("womens_clothing", DATA / "womens_clothing" / "Womens Clothing E-Commerce Reviews.csv")
  _check_dtypes(t)
  rv = t.reviews
  assert rv["review_id"].tolist() == ["0", "1", "2", "3", "4"]  # the unnamed index column
  assert rv["product_id"].tolist() == ["501", "502", "503", "502", "504"]
  assert rv["rating"].tolist() == [4.0, 5.0, 3.0, 2.0, 5.0]
  assert rv["customer_id"].isna().all() and rv["timestamp"].isna().all()
  assert rv.loc[1, "text"].endswith('am 5\'4".  fits well.')  # doubled quotes
  assert "\n" in rv.loc[2, "text"] and rv.loc[2, "title"] == "Not for me"
  assert rv["recommended"].tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]
  assert rv["age"].tolist() == [33.0, 34.0, 60.0, 50.0, 47.0]
  assert t.products.set_index("product_id")["category"].to_dict() == {
      "501": "Intimates", "502": "Dresses", "503": "Dresses", "504": "Blouses"}
  assert len(t.transactions) == 0 and len(t.customers) == 0 and len(t.items) == 0
  out, log = clean.clean_tables(t, today=TODAY)
  assert _affected(log, "reviews") == {"missing customer id": 5, "empty text": 1}
  assert len(out.reviews) == 5


def test_chinese_reviews(load):
  t = load("chinese_reviews", DATA / "chinese_reviews" / "online_shopping_10_cats.csv")
  _check_dtypes(t)
  rv = t.reviews
  assert rv["rating"].tolist() == [5.0, 1.0, 5.0, 1.0, 1.0]  # label 1 -> 5, 0 -> 1
  assert rv["label"].tolist() == [1, 0, 1, 0, 0]
  assert rv["product_id"].tolist() == ["书籍", "书籍", "平板", "平板", "水果"]  # BOM not in 'cat'
  assert rv.loc[1, "text"] == "内容太浅, 不值这个价"
  assert rv["review_id"].tolist() == ["1", "2", "3", "4", "5"]
  assert t.products["product_id"].tolist() == ["书籍", "平板", "水果"]
  out, log = clean.clean_tables(t, today=TODAY)
  assert _affected(log, "reviews") == {"missing customer id": 5, "empty text": 1}


def test_chinese_label_review_layout(load):
  t = load("chinese_reviews", DATA / "chinese_reviews" / "waimai_10k.csv")
  assert t.reviews["rating"].tolist() == [5.0, 1.0]
  assert t.reviews["product_id"].isna().all() and len(t.products) == 0


@pytest.mark.parametrize("adapter, path", [
    ("womens_clothing", DATA / "womens_clothing" / "Womens Clothing E-Commerce Reviews.csv"),
    ("chinese_reviews", DATA / "chinese_reviews" / "online_shopping_10_cats.csv")])
def test_reviews_only_datasets_validate(write_params, capsys, adapter, path):
  params = write_params({"dataset": "r", "data": {"adapter": adapter, "path": str(path)}})
  assert cli.main(["validate", str(params)]) == 0
  out = capsys.readouterr().out
  assert "0 customers, 0 transactions, 0 items" in out and "5 reviews" in out


@pytest.mark.parametrize("adapter, path", [
    ("online_retail", OR_FILE), ("olist", OLIST), ("cdnow", DATA / "cdnow" / "CDNOW_master.txt")])
def test_order_datasets_validate(write_params, capsys, adapter, path):
  params = write_params({"dataset": "o", "data": {"adapter": adapter, "path": str(path)},
                         "split": {"horizon_days": 30}})
  assert cli.main(["validate", str(params)]) == 0
  assert capsys.readouterr().out.startswith(f"{params}: OK: ")


# --- bad input: exit 2, one line per problem naming file, column and rows -------------------------

def _retail_rows(tmp_path: Path, body: str, name: str = "r.csv") -> Path:
  path = tmp_path / name
  path.write_text("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,"
                  "Country\n" + body)
  return path


OK_ROW = "1,A,a,1,2011-01-02 10:00:00,2.0,1.0,UK\n"


@pytest.mark.parametrize("body, message", [
    (OK_ROW + "2,A,a,two,2011-01-02 10:00:00,2.0,1.0,UK\n3,A,a,x,2011-01-02 10:00:00,2.0,1.0,UK\n",
     "column 'Quantity': 2 values are not numbers (rows 2, 3)"),
    (OK_ROW + "2,A,a,1,2011-01-02 10:00:00,£2,1.0,UK\n",
     "column 'UnitPrice': 1 values are not numbers (rows 2)"),
    (OK_ROW + "2,A,a,1,yesterday,2.0,1.0,UK\n",
     "column 'InvoiceDate': 1 unparseable and 0 empty timestamps of 2 rows (rows 2); "
     "expected dates and times"),
    ("1,A,a,1,2011-01-02 10:00:00,2.0,,UK\n2,A,a,1,2011-01-02 10:00:00,2.0,,UK\n",
     "column 'CustomerID': every customer id is empty"),
    (OK_ROW + ",A,a,1,2011-01-02 10:00:00,2.0,1.0,UK\n",
     "column 'InvoiceNo': 1 rows are empty (rows 2)"),
    ("", "no data rows (only a header)"),
])
def test_online_retail_bad_rows(tmp_path, write_params, capsys, body, message):
  path = _retail_rows(tmp_path, body)
  params = write_params({"dataset": "o", "data": {"adapter": "online_retail", "path": "r.csv"}})
  assert cli.main(["validate", str(params)]) == 2
  err = capsys.readouterr().err
  assert err.strip().splitlines() == [f"error: {path}: {message}"]


def test_online_retail_missing_columns_all_named(tmp_path, load):
  (tmp_path / "r.csv").write_text("Invoice No,StockCode,Qty,InvoiceDate,UnitPrice,CustomerID\n"
                                  "1,A,1,2011-01-02,2.0,1\n")
  with pytest.raises(DataError) as e:
    load("online_retail", "r.csv")
  have = "(have: Invoice No, StockCode, Qty, InvoiceDate, UnitPrice, CustomerID)"
  assert e.value.problems == [f"{tmp_path / 'r.csv'}: column 'InvoiceNo' missing {have}",
                              f"{tmp_path / 'r.csv'}: column 'Quantity' missing {have}"]


@pytest.mark.parametrize("name, content, message", [
    ("r.xlsx", b"PK\x03\x04", "Excel files are not read; save the sheet as CSV (UTF-8)"),
    ("r.csv.gz", OK_ROW.encode(), "name ends in .gz but the file is not gzip-compressed"),
    ("r.csv", "InvoiceNo,StockCode\n1,caf\xe9\n".encode("latin-1"),
     "not UTF-8 text (byte 25, line 2); re-save it as UTF-8"),
    ("r.csv", b"", "file is empty"),
])
def test_online_retail_bad_files(tmp_path, load, name, content, message):
  (tmp_path / name).write_bytes(content)
  with pytest.raises(DataError) as e:
    load("online_retail", name)
  assert _problem(e) == f"{tmp_path / name}: {message}"


def test_path_required(write_params, capsys):
  params = write_params({"dataset": "o", "data": {"adapter": "olist"}})
  assert cli.main(["validate", str(params)]) == 2
  assert capsys.readouterr().err.strip() == (
      f"error: {params}: data.path is required for adapter 'olist' (the dataset's folder, "
      "e.g. olist)")


def test_relative_path_not_found_hints_at_data_dir(tmp_path, load):
  with pytest.raises(DataError) as e:
    load("online_retail", "online_retail/online_retail.csv.gz")
  assert _problem(e) == (
      f"{tmp_path / 'online_retail/online_retail.csv.gz'}: file not found (relative data paths "
      "resolve against the params file's folder, then $CVLIB_DATA_DIR, which is not set)")


def test_data_dir_is_searched(tmp_path, monkeypatch, load):
  monkeypatch.setenv("CVLIB_DATA_DIR", str(DATA))
  t = load("cdnow", "cdnow/CDNOW_master.txt")
  assert t.sources[0]["path"] == str(DATA / "cdnow" / "CDNOW_master.txt")


@pytest.fixture
def olist_copy(tmp_path) -> Path:
  folder = tmp_path / "olist"
  shutil.copytree(OLIST, folder)
  return folder


def test_olist_missing_files_and_columns_all_reported(olist_copy, load):
  (olist_copy / "olist_order_reviews_dataset.csv").unlink()
  (olist_copy / "olist_order_payments_dataset.csv").unlink()
  cust = olist_copy / "olist_customers_dataset.csv"
  cust.write_text(cust.read_text().replace("customer_unique_id", "unique_id"))
  with pytest.raises(DataError) as e:
    load("olist", "olist")
  assert e.value.problems == [
      f"{cust}: column 'customer_unique_id' missing (have: customer_id, unique_id, "
      "customer_zip_code_prefix, customer_city, customer_state)",
      f"{olist_copy / 'olist_order_payments_dataset'}.csv.gz: file not found "
      "(nor olist_order_payments_dataset.csv)",
      f"{olist_copy / 'olist_order_reviews_dataset'}.csv.gz: file not found "
      "(nor olist_order_reviews_dataset.csv)"]


def test_olist_bad_values_named(olist_copy, load):
  rv = olist_copy / "olist_order_reviews_dataset.csv"
  rv.write_text(rv.read_text().replace("r2,o2,1,", "r2,o2,one,"))
  orders = olist_copy / "olist_orders_dataset.csv"
  orders.write_text(orders.read_text().replace("2018-04-01 18:30:00", "01/04/2018 6pm"))
  with pytest.raises(DataError) as e:
    load("olist", "olist")
  assert e.value.problems == [
      f"{orders}: column 'order_purchase_timestamp': 1 unparseable and 0 empty timestamps of 5 "
      "rows (rows 5); expected YYYY-MM-DD HH:MM:SS",
      f"{rv}: column 'review_score': 1 values are not numbers (rows 2)"]


def test_olist_path_is_a_file(load):
  with pytest.raises(DataError, match=r"expected the folder holding the Olist CSV files"):
    load("olist", OLIST / "olist_orders_dataset.csv")


@pytest.mark.parametrize("text, message", [
    ("1 19970101 1\n", "expected 4 columns (customer_id, date, number_of_cds, dollar_value) or "
     "the sample's 5"),
    ("1 19970101 1 2.0\n1 19971301 1 2.0\n", "column 'date': 1 unparseable and 0 empty timestamps "
     "of 2 rows (rows 2)"),
    ("1 19970101 1 2.0\n1 19970102 1 $2\n", "column 'dollar_value': 1 values are not numbers "
     "(rows 2)"),
    ("customer_id date number_of_cds dollar_value\n", "no data rows"),
])
def test_cdnow_bad_input(tmp_path, load, text, message):
  (tmp_path / "c.txt").write_text(text)
  with pytest.raises(DataError) as e:
    load("cdnow", "c.txt")
  assert _problem(e).startswith(f"{tmp_path / 'c.txt'}: {message}")


@pytest.mark.parametrize("text, message", [
    ("cat,label,review\nA,1,good\nA,2,hm\nA,pos,ok\n",
     "column 'label': 2 values are not 0 or 1 (rows 2, 3)"),
    ("cat,label,text\nA,1,good\n", "column 'review' missing (have: cat, label, text)"),
])
def test_chinese_bad_input(tmp_path, load, text, message):
  (tmp_path / "z.csv").write_text(text)
  with pytest.raises(DataError) as e:
    load("chinese_reviews", "z.csv")
  assert _problem(e) == f"{tmp_path / 'z.csv'}: {message}"


def test_womens_bad_rating(tmp_path, load):
  (tmp_path / "w.csv").write_text(",Review Text,Rating\n0,nice,5\n1,bad,one star\n")
  with pytest.raises(DataError) as e:
    load("womens_clothing", "w.csv")
  assert _problem(e) == f"{tmp_path / 'w.csv'}: column 'Rating': 1 values are not numbers (rows 2)"


# --- features added for the real data -----------------------------------------------------------

def test_interpurchase_and_basket_features(tiny_shop):
  f = features.compute_customer_features(tiny_shop["transactions"], tiny_shop["items"],
                                         tiny_shop["products"], tiny_shop["reviews"],
                                         dt.date(2015, 2, 1), 30).set_index("customer_id")
  # A buys on days 01-01, 01-11, 01-21; E on 01-05 and 01-20; B and C once
  cols = ["mean_interpurchase_days", "std_interpurchase_days", "max_interpurchase_days"]
  np.testing.assert_allclose(f.loc["A", cols].astype(float), [10.0, 0.0, 10.0])
  np.testing.assert_allclose(f.loc["E", cols].astype(float), [15.0, 0.0, 15.0])
  assert f.loc[["B", "C"], cols].isna().all().all()
  assert f.loc["A", "avg_basket_size"] == 1.0 and f.loc["B", "avg_basket_size"] == 0.0
  X = features.feature_matrix(f.reset_index())
  i = features.BEHAVIOUR_FEATURES.index("mean_interpurchase_days")
  np.testing.assert_allclose(X[:, i], [10.0, 17.0, 1.0, 15.0])  # no repeat yet: T days so far


def test_rfm_summary_matches_features_and_lifetimes(tiny_clean):
  lifetimes_utils = pytest.importorskip("lifetimes.utils")
  t, _ = tiny_clean
  cutoff, horizon = dt.date(2024, 1, 1), 180
  got = features.compute_rfm_summary(t.transactions, cutoff, horizon).set_index("customer_id")
  full = features.compute_customer_features(t.transactions, t.items, t.products, t.reviews,
                                            cutoff, horizon).set_index("customer_id")
  assert got.index.tolist() == full.index.tolist()
  for col in ("frequency", "recency_days", "T_days", "monetary_value", "holdout_value"):
    np.testing.assert_allclose(got[col], full[col], rtol=1e-9, err_msg=col)
  cal = t.transactions[t.transactions["timestamp"] < pd.Timestamp(cutoff)]
  ref = lifetimes_utils.summary_data_from_transaction_data(
      cal.astype({"customer_id": str}), "customer_id", "timestamp", monetary_value_col="amount",
      observation_period_end=pd.Timestamp(cutoff), freq="D")
  ref = ref.loc[got.index.astype(str)]
  for mine, theirs in (("frequency", "frequency"), ("recency_days", "recency"), ("T_days", "T"),
                       ("monetary_value", "monetary_value")):
    np.testing.assert_allclose(got[mine].to_numpy(), ref[theirs].to_numpy(), rtol=1e-9,
                               err_msg=mine)


def test_rfm_summary_bad_horizon(tiny_shop):
  with pytest.raises(ValueError, match="horizon_days must be > 0, got 0"):
    features.compute_rfm_summary(tiny_shop["transactions"], dt.date(2015, 2, 1), 0)


# --- the real data (slow; $CVLIB_DATA_DIR) ------------------------------------------------------

def _data_dir() -> Path:
  root = os.environ.get("CVLIB_DATA_DIR")
  if not root:
    pytest.skip("CVLIB_DATA_DIR is not set: point it at ../shared/datasets to run real-data tests")
  if not Path(root).is_dir():
    pytest.skip(f"CVLIB_DATA_DIR={root} is not a folder")
  return Path(root)


def _real(name: str) -> tuple[adapters.Tables, adapters.Tables, clean.CleaningLog]:
  data = _data_dir()
  params = config.load_params(REPO / "params" / f"{name}.yaml")
  path = params.resolve_path(params.data.path)
  if not path.exists():
    pytest.skip(f"{path} is absent")
  assert str(path).startswith(str(data))
  raw = adapters.load_data(params)
  out, log = clean.clean_tables(raw)
  return raw, out, log


@pytest.mark.slow
def test_real_online_retail():
  raw, out, log = _real("online_retail")
  assert len(raw.items) == 541_909 and len(raw.transactions) == 25_900  # rows, invoices
  # 38 countries in the file; Hong Kong's rows all lack a CustomerID, so customers have 37
  assert len(raw.customers) == 4_372 and raw.customers["country"].nunique() == 37
  is_c = raw.items["order_id"].str.startswith("C")
  assert is_c.sum() == 9_288 and (raw.items["quantity"] < 0).sum() == 10_624
  anonymous = raw.transactions.loc[raw.transactions["customer_id"].isna(), "order_id"]
  assert raw.items["order_id"].isin(anonymous).sum() == 135_080
  purchases = raw.transactions[~raw.transactions["order_id"].str.startswith("C")]
  assert (purchases.groupby("customer_id")["order_id"].nunique() >= 2).sum() == 2_845
  steps = _affected(log, "items")
  assert steps["exact duplicate rows"] == 5_268
  assert _affected(log, "transactions")["missing customer id"] == 3_710  # invoices
  # every cancellation line is either matched or counted as unmatched
  # every cancellation line of a known customer (not a duplicate row) is matched or counted
  known = is_c & ~raw.items["order_id"].isin(anonymous) & ~raw.items[adapters.DUPLICATE]
  assert known.sum() == 8_872
  assert steps["cancellation"] + steps["cancellation without a matching purchase"] == 8_872
  tx = out.transactions
  assert not tx["order_id"].isin(["581483", "C581484"]).any()
  assert not tx["order_id"].str.startswith("C").any()
  assert (tx["amount"] >= 0).all() and tx["customer_id"].notna().all()
  spend_16446 = tx.loc[tx["customer_id"] == "16446", "amount"].sum()
  assert spend_16446 < 1_000  # without the cancelled £168,470
  _check_counts_add_up(raw.transactions, tx, log, "transactions")
  _check_counts_add_up(raw.items, out.items, log, "items")
  assert tx["timestamp"].min() == pd.Timestamp("2010-12-01 08:26")
  assert tx["timestamp"].max() <= pd.Timestamp("2011-12-09 12:50")


@pytest.mark.slow
def test_real_cdnow():
  raw, out, log = _real("cdnow")
  assert len(raw.transactions) == 69_659 and len(raw.customers) == 23_570
  assert raw.sources[0]["sha256"] == (
      "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef")
  ts = raw.transactions["timestamp"]
  assert (ts.min(), ts.max()) == (pd.Timestamp("1997-01-01"), pd.Timestamp("1998-06-30"))
  assert len(out.transactions) == 69_659  # nothing removed
  assert _affected(log, "transactions") == {"zero amount": 80}


@pytest.mark.slow
def test_real_olist():
  raw, out, log = _real("olist")
  assert raw.counts() == {"customers": 19_831, "transactions": 20_000, "items": 22_618,
                          "products": 32_951, "reviews": 19_986}
  status = raw.transactions["order_status"].value_counts().to_dict()
  assert status == {"delivered": 19_430, "shipped": 215, "canceled": 124, "unavailable": 117,
                    "invoiced": 57, "processing": 55, "created": 2}
  assert raw.transactions["customer_id"].nunique() == 19_831
  assert (raw.transactions.groupby("customer_id").size() >= 2).sum() == 163
  assert raw.reviews["rating"].value_counts().to_dict() == {5.0: 11_528, 4.0: 3_893, 1.0: 2_257,
                                                            3.0: 1_676, 2.0: 632}
  assert raw.reviews["customer_id"].notna().all()  # every review reaches its customer
  assert any("83,013 of 103,886 payment rows belong to orders not in" in n for n in raw.notes)
  assert _affected(log, "transactions") == {"cancelled order": 124 + 117}
  assert len(out.transactions) == 20_000 - 241 and len(out.reviews) == 19_986 - 34
  assert out.transactions["amount"].notna().all()


@pytest.mark.slow
def test_real_womens_clothing():
  raw, out, log = _real("womens_clothing")
  rv = raw.reviews
  assert len(rv) == 23_486 and rv["product_id"].nunique() == 1_206
  assert rv["rating"].value_counts().to_dict() == {5.0: 13_131, 4.0: 5_077, 3.0: 2_871,
                                                   2.0: 1_565, 1.0: 842}
  assert rv["title"].notna().sum() == 19_676 and rv["recommended"].sum() == 19_314
  assert (rv["age"].min(), rv["age"].max()) == (18.0, 99.0)
  assert out.reviews["text"].notna().sum() == 22_640  # one review written twice is removed
  assert len(out.transactions) == 0 and len(out.customers) == 0


@pytest.mark.slow
def test_real_chinese_reviews():
  raw, out, log = _real("chinese_reviews")
  rv = raw.reviews
  assert len(rv) == 62_774
  assert rv["rating"].value_counts().to_dict() == {5.0: 31_728, 1.0: 31_046}
  assert rv["product_id"].value_counts().to_dict()["计算机"] == 3_992
  assert rv["product_id"].nunique() == 10
  assert _affected(log, "reviews")["empty text"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("name, first_line", [
    ("online_retail", "4,372 customers, 18,383 transactions, 389,819 items, 4,070 products, "
     "0 reviews"),
    ("cdnow", "23,570 customers, 69,659 transactions, 0 items, 0 products, 0 reviews"),
    ("olist", "19,831 customers, 19,759 transactions, 22,514 items, 32,951 products, "
     "19,952 reviews"),
    ("womens_clothing", "0 customers, 0 transactions, 0 items, 1,206 products, 23,485 reviews"),
    ("chinese_reviews", "0 customers, 0 transactions, 0 items, 10 products, 62,774 reviews"),
])
def test_real_validate(capsys, name, first_line):
  _data_dir()
  params = REPO / "params" / f"{name}.yaml"
  assert cli.main(["validate", str(params)]) == 0
  out, err = capsys.readouterr()
  assert err == ""
  assert out.splitlines()[0] == f"{params}: OK: {first_line}"

"""Tests for cvlib.data.clean: what is removed or flagged, and that the log says so."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cvlib.data import clean

BASE = [("a", "1", "2023-01-01", 10.0), ("b", "2", "2023-01-02", 20.0),
        ("c", "3", "2023-01-03", 30.0)]


def _clean_tx(build, rows, **tables):
  t = build.tables(transactions=build.transactions(rows), **tables)
  return clean.clean_tables(t)


def _steps(log, table="transactions"):
  return {r["step"]: r for r in log.rows if r["table"] == table}


def test_clean_table_unchanged(build):
  out, log = _clean_tx(build, BASE)
  assert out.transactions["order_id"].tolist() == ["1", "2", "3"]
  assert log.rows == []
  assert list(log.to_frame().columns) == ["table", "step", "rows_before", "affected", "action",
                                          "detail"]


def test_exact_duplicates_removed_and_logged(build):
  out, log = _clean_tx(build, BASE + [BASE[1]])
  assert out.transactions["order_id"].tolist() == ["1", "2", "3"]
  row = _steps(log)["exact duplicate rows"]
  assert (row["rows_before"], row["affected"], row["action"]) == (4, 1, "removed")


def test_missing_customer_ids_removed(build):
  out, log = _clean_tx(build, BASE + [(None, "4", "2023-01-04", 5.0)])
  assert out.transactions["order_id"].tolist() == ["1", "2", "3"]
  assert _steps(log)["missing customer id"]["affected"] == 1


def test_missing_timestamp_removed(build):
  out, log = _clean_tx(build, BASE + [("d", "4", None, 5.0)])
  assert "4" not in set(out.transactions["order_id"])
  assert _steps(log)["missing timestamp"]["affected"] == 1


def test_negative_amounts_removed(build):
  out, log = _clean_tx(build, BASE + [("a", "4", "2023-01-04", -10.0)])
  assert (out.transactions["amount"] >= 0).all() and len(out.transactions) == 3
  row = _steps(log)["negative amount"]
  assert (row["affected"], row["action"]) == (1, "removed")


def test_missing_amount_removed(build):
  out, log = _clean_tx(build, BASE + [("a", "4", "2023-01-04", np.nan)])
  assert len(out.transactions) == 3
  assert _steps(log)["missing amount"]["affected"] == 1


def test_zero_amounts_kept_and_flagged(build):
  out, log = _clean_tx(build, BASE + [("a", "4", "2023-01-04", 0.0), ("b", "5", "2023-01-05", 0.0)])
  assert len(out.transactions) == 5
  row = _steps(log)["zero amount"]
  assert (row["rows_before"], row["affected"], row["action"]) == (5, 2, "kept")


def test_repeated_order_id_keeps_first(build):
  out, log = _clean_tx(build, BASE + [("a", "2", "2023-01-09", 99.0)])
  assert out.transactions.set_index("order_id").loc["2", "amount"] == 20.0
  assert len(out.transactions) == 3
  assert _steps(log)["repeated order id with different content"]["affected"] == 1


def test_sorted_by_customer_then_time(build):
  rows = [("b", "9", "2023-01-05", 1.0), ("a", "8", "2023-02-01", 1.0),
          ("a", "7", "2023-01-01", 1.0)]
  out, _ = _clean_tx(build, rows)
  assert out.transactions["order_id"].tolist() == ["7", "8", "9"]
  assert out.transactions.index.tolist() == [0, 1, 2]


def test_items_of_removed_orders_dropped(build):
  items = build.items([("1", "P1", 1.0, 10.0), ("4", "P2", 1.0, 5.0), ("99", "P3", 1.0, 1.0)])
  out, log = _clean_tx(build, BASE + [("a", "4", "2023-01-04", -5.0)], items=items)
  assert out.items["order_id"].tolist() == ["1"]
  row = _steps(log, "items")["lines of removed or unknown orders"]
  assert (row["rows_before"], row["affected"]) == (3, 2)


def test_reviews_cleaned(build):
  reviews = build.reviews([
      ("r1", "a", "2023-01-01", 5.0, "  great  "),
      ("r2", "a", "2023-01-02", 0.0, "zero stars?"),
      ("r3", "b", "2023-01-03", 7.0, "seven"),
      ("r4", "b", "2023-01-04", 3.0, "   "),
      ("r5", None, "2023-01-05", 1.0, None),
      ("r1", "c", "2023-01-06", 2.0, "repeated id"),
      ("r6", "c", "2023-01-07", np.nan, "no rating"),
  ])
  out, log = _clean_tx(build, BASE, reviews=reviews)
  rv = out.reviews.set_index("review_id")
  assert rv.index.tolist() == ["r1", "r2", "r3", "r4", "r5", "r6"]
  assert rv.loc["r1", "customer_id"] == "a"  # the first r1 kept
  assert rv["rating"].isna().tolist() == [False, True, True, False, False, True]
  assert rv.loc["r1", "text"] == "great"  # stripped
  assert rv["text"].isna().tolist() == [False, False, False, True, True, False]
  assert str(rv["text"].dtype) == "string" and str(rv["rating"].dtype) == "float64"
  steps = _steps(log, "reviews")
  assert steps["repeated review id"]["affected"] == 1
  assert steps["rating outside 1-5"]["affected"] == 2
  assert steps["rating outside 1-5"]["action"] == "rating set to missing"
  assert steps["empty text"]["affected"] == 2 and steps["empty text"]["action"] == "kept"
  assert steps["missing customer id"]["affected"] == 1 and steps["missing customer id"]["action"] == "kept"


def test_input_not_mutated(build, tiny_shop):
  reviews = build.reviews([("r1", "a", "2023-01-01", 9.0, "  "), ("r2", "a", "2023-01-02", 4.0, "ok")])
  tx = build.transactions(BASE + [("a", "4", "2023-01-04", 0.0), BASE[0]])
  t = build.tables(transactions=tx, reviews=reviews, items=tiny_shop["items"])
  copies = {n: getattr(t, n).copy() for n in ("transactions", "reviews", "items")}
  out, _ = clean.clean_tables(t)
  for name, before in copies.items():
    pd.testing.assert_frame_equal(getattr(t, name), before)
  assert out.reviews["rating"].isna().tolist() == [True, False]


def test_adapter_notes_logged(build):
  t = build.tables(transactions=build.transactions(BASE), notes=["3 rows dropped (rows 1, 2, 3)"])
  _, log = clean.clean_tables(t)
  assert log.rows[0] == {"table": "input", "step": "adapter", "rows_before": 0, "affected": 0,
                         "action": "note", "detail": "3 rows dropped (rows 1, 2, 3)"}


def _check_counts_add_up(tx_in: pd.DataFrame, tx_out: pd.DataFrame, log) -> None:
  n = len(tx_in)
  for row in log.rows:
    if row["table"] != "transactions":
      continue
    assert row["rows_before"] == n, row  # each step starts where the last one left off
    if row["action"] == "removed":
      n -= row["affected"]
  assert n == len(tx_out)


def test_log_counts_add_up_on_synthetic(tiny_tables, tiny_clean):
  out, log = tiny_clean
  steps = _steps(log)
  assert steps["exact duplicate rows"]["affected"] > 0  # the generator writes some twice
  assert steps["zero amount"]["affected"] > 0
  _check_counts_add_up(tiny_tables.transactions, out.transactions, log)
  assert out.transactions["order_id"].is_unique
  assert len(out.transactions) == tiny_tables.transactions["order_id"].nunique()
  assert out.items["order_id"].isin(out.transactions["order_id"]).all()


def test_several_problems_at_once(build):
  rows = BASE + [BASE[0], (None, "4", "2023-01-04", 5.0), ("b", "5", "2023-01-05", -3.0),
                 ("c", "6", None, 2.0), ("c", "7", "2023-01-07", 0.0)]
  tx = build.transactions(rows)
  out, log = _clean_tx(build, rows)
  assert out.transactions["order_id"].tolist() == ["1", "2", "3", "7"]
  steps = _steps(log)
  assert {k: v["affected"] for k, v in steps.items()} == {
      "exact duplicate rows": 1, "missing customer id": 1, "missing timestamp": 1,
      "negative amount": 1, "zero amount": 1}
  _check_counts_add_up(tx, out.transactions, log)


# --- duplicate reviews ----------------------------------------------------------------------------

DUPLICATES = Path(__file__).resolve().parent / "data" / "review_duplicates" / "reviews.csv"


def _check_review_counts_add_up(rv_in: pd.DataFrame, rv_out: pd.DataFrame, log) -> None:
  n = len(rv_in)
  for row in log.rows:
    if row["table"] == "reviews":
      assert row["rows_before"] == n, row  # each step starts where the last one left off
      n -= row["affected"] if row["action"] == "removed" else 0
  assert n == len(rv_out)


def test_duplicate_review_lines_removed_and_logged(write_params, monkeypatch):
  # a file without review ids: the adapter numbers the rows, so a line written twice differs
  # only in its number
  monkeypatch.delenv("CVLIB_DATA_DIR", raising=False)
  from cvlib import config
  from cvlib.data import adapters
  params = config.load_params(write_params({"dataset": "dups", "data": {
      "adapter": "generic", "reviews": {"path": str(DUPLICATES), "columns": {
          "customer_id": "customer", "product_id": "product", "timestamp": "date",
          "rating": "stars", "text": "review"}}}}))
  raw = adapters.load_data(params)
  out, log = clean.clean_tables(raw)
  assert raw.reviews["review_id"].tolist() == [str(i) for i in range(1, 14)]
  # kept: the same text from another customer (2), product (8) or with a "!" (9), twin rows
  # without text (10, 11: two people may give the same stars), one text with two ratings (12, 13)
  assert out.reviews["review_id"].tolist() == ["1", "2", "4", "7", "8", "9", "10", "11", "12",
                                               "13"]
  row = _steps(log, "reviews")["exact duplicate rows"]
  assert (row["rows_before"], row["affected"], row["action"]) == (13, 3, "removed")
  assert "row-number id aside" in row["detail"]
  # first, before any text or rating is altered: a duplicate is judged on the file's values
  assert [r["step"] for r in log.rows if r["table"] == "reviews"] == ["exact duplicate rows",
                                                                      "empty text"]
  _check_review_counts_add_up(raw.reviews, out.reviews, log)


def test_duplicate_reviews_with_the_shops_ids(build):
  # ids from the shop tell reviews apart: only a repeated id with equal content is a duplicate
  reviews = build.reviews([
      ("r1", "a", "2023-01-01", 5.0, "great"),
      ("r2", "b", "2023-01-02", 1.0, "broken"),
      ("r1", "a", "2023-01-01", 5.0, "great"),       # written twice
      ("r1", "a", "2023-01-01", 5.0, "great"),       # and a third time
      ("r2", "b", "2023-01-03", 2.0, "broken, no"),  # a repeated id with other content
      ("r3", "a", "2023-01-01", 5.0, "great"),       # another id, same content: its own review
      ("r4", "c", "2023-01-04", 4.0, None),
      ("r4", "c", "2023-01-04", 4.0, None),          # no text, but the id repeats too
  ])
  out, log = _clean_tx(build, BASE, reviews=reviews)
  assert out.reviews["review_id"].tolist() == ["r1", "r2", "r3", "r4"]
  assert out.reviews.set_index("review_id").loc["r2", "text"] == "broken"
  steps = _steps(log, "reviews")
  assert (steps["exact duplicate rows"]["rows_before"], steps["exact duplicate rows"]["affected"]) \
      == (8, 3)
  assert "review id included" in steps["exact duplicate rows"]["detail"]
  assert (steps["repeated review id"]["rows_before"], steps["repeated review id"]["affected"]) \
      == (5, 1)
  _check_review_counts_add_up(reviews, out.reviews, log)


@pytest.mark.parametrize("ids, removed", [
    (["7", "8", "9", "10"], 1),   # consecutive: row numbers, left out of the comparison
    (["1", "3", "5", "9"], 0),    # gaps: the shop's own numbers, which tell the rows apart
])
def test_row_number_ids_are_not_compared(build, ids, removed):
  rows = [("a", "2023-01-01", 5.0, "great"), ("a", "2023-01-01", 5.0, "great"),
          ("b", "2023-01-02", 3.0, None), ("b", "2023-01-02", 3.0, None)]
  reviews = build.reviews([(i, *r) for i, r in zip(ids, rows)])
  out, log = _clean_tx(build, BASE, reviews=reviews)
  assert len(out.reviews) == 4 - removed
  assert _steps(log, "reviews").get("exact duplicate rows", {}).get("affected", 0) == removed


def test_clean_reviews_unchanged_without_duplicates(tiny_tables, tiny_clean):
  out, log = tiny_clean
  assert "exact duplicate rows" not in _steps(log, "reviews")
  assert len(out.reviews) == len(tiny_tables.reviews)


# --- the plain-Python path for small tables ------------------------------------------------------

def _random_small_tables(rng: np.random.Generator):
  """A few customers' events, clean or with one or more of the faults cleaning handles."""
  from cvlib.data import schema
  from cvlib.data.adapters import Tables
  fault = lambda p=0.08: rng.random() < p  # noqa: E731
  n = int(rng.integers(0, 7))
  cust = [str(rng.choice(["a", "b", "c", "é"])) for _ in range(n)]
  orders = [f"o{k}" for k in rng.permutation(20)[:n]]
  days = [pd.Timestamp("2023-01-01") + pd.Timedelta(hours=int(h))
          for h in rng.integers(0, 2000, n)]
  amounts = [float(rng.choice([12.5, 30.0, 7.25])) for _ in range(n)]
  for k in range(n):
    if fault():
      cust[k] = None
    if fault():
      days[k] = rng.choice([None, pd.Timestamp("1970-01-01"), pd.Timestamp("2099-01-01")])
    if fault():
      amounts[k] = float(rng.choice([0.0, -5.0, np.nan]))
    if fault() and k:
      orders[k] = orders[k - 1]
  tx = pd.DataFrame({"customer_id": cust, "order_id": orders, "timestamp": days, "amount": amounts})
  if fault(0.1) and n:
    tx = pd.concat([tx, tx.iloc[[0]]], ignore_index=True)
  lines = [(str(rng.choice(orders + ["zz"] if fault() else orders)), str(rng.choice(["p", "q"])),
            float(rng.choice([1.0, 2.0, -1.0] if fault(0.15) else [1.0, 2.0])), 5.0)
           for _ in range(int(rng.integers(0, 5)) if n else 0)]
  items = pd.DataFrame(lines, columns=["order_id", "product_id", "quantity", "unit_price"])
  items["amount"] = items["quantity"] * items["unit_price"]
  reviews = []
  numbered = fault(0.4)
  for k in range(int(rng.integers(0, 4)) if n else 0):
    text = str(rng.choice(["great fit", "poor zip", " padded ", "", "ok"]) if fault(0.3) else
               rng.choice(["great fit", "poor zip", "ok"]))
    reviews.append({"review_id": str(k + 1) if numbered else f"r{rng.integers(0, 3)}",
                    "customer_id": None if fault() else str(rng.choice(cust[:1] + ["a"])),
                    "timestamp": days[0] if not fault() else pd.Timestamp("1900-01-01"),
                    "rating": float(rng.choice([1.0, 4.0, 5.0, 9.0] if fault() else [1.0, 5.0])),
                    "text": None if fault() else text})
  rv = pd.DataFrame(reviews, columns=["review_id", "customer_id", "timestamp", "rating", "text"])
  if fault(0.15) and len(rv):
    rv = pd.concat([rv, rv.iloc[[0]]], ignore_index=True)
  return Tables(customers=pd.DataFrame(), transactions=schema.coerce_table("transactions", tx),
                items=schema.coerce_table("items", items), products=schema.empty_table("products"),
                reviews=schema.coerce_table("reviews", rv))


def test_small_tables_clean_as_the_vectorised_steps_do():
  rng = np.random.default_rng(7)
  fast = 0
  for _ in range(120):
    tables = _random_small_tables(rng)
    want, want_log = clean.clean_tables(tables, today=pd.Timestamp("2024-06-01").date(),
                                        small_path=False)
    got, got_log = clean.clean_tables(tables, today=pd.Timestamp("2024-06-01").date())
    for name in ("transactions", "items", "reviews"):
      pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), check_exact=True)
    assert got_log.rows == want_log.rows
    fast += clean._nothing_to_clean(tables, (pd.Timestamp(clean.EARLIEST_DATE),
                                             pd.Timestamp("2024-06-02")))
  assert 25 <= fast <= 95  # both paths were exercised


@pytest.mark.parametrize("columns", [
    {"customer_id": ["a", None, "é"], "order_id": ["1", "2", "3"],
     "timestamp": [dt.datetime(2024, 1, 1, 5, 6, 7, 123456), None, pd.Timestamp("2023-02-03")],
     "amount": [1, None, 2.5]},
    {"customer_id": [], "order_id": [], "timestamp": [], "amount": []},
    {"customer_id": ["a"], "order_id": [7], "timestamp": ["2024-01-01 10:00"], "amount": ["3.5"]},
    {"order_id": ["1"], "customer_id": ["a"], "timestamp": [dt.datetime(2024, 1, 1)],
     "amount": [True]},
])
def test_tables_from_plain_lists_equal_coerced_frames(columns):
  from cvlib.data import schema
  want = schema.coerce_table("transactions", pd.DataFrame(columns))
  pd.testing.assert_frame_equal(schema.table_from_columns("transactions", columns), want,
                                check_exact=True)

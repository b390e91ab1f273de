"""Tests for cvlib.value.history_text.customer_history_texts: a customer's history written as text."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from cvlib.value import history_text

from cvlib.data import schema
from conftest import (TINY_ITEMS, TINY_PRODUCTS, TINY_REVIEWS, TINY_TRANSACTIONS, make_items,
                      make_reviews, make_transactions)

CUTOFF = dt.date(2015, 2, 1)


@pytest.fixture(name="tables")
def fixture_tables():
  products = schema.coerce_table("products", pd.DataFrame(
      TINY_PRODUCTS, columns=["product_id", "category", "description"]))
  return {"transactions": make_transactions(TINY_TRANSACTIONS),
          "reviews": make_reviews(TINY_REVIEWS), "items": make_items(TINY_ITEMS),
          "products": products}


def _texts(tables, ids, cutoff=CUTOFF, **kwargs):
  return history_text.customer_history_texts(tables["transactions"], tables["reviews"], ids,
                                             cutoff, **kwargs)


def test_full_history_reads_in_chronological_order(tables):
  (a,) = _texts(tables, ["A"], items=tables["items"], products=tables["products"])
  assert a == ("2015-01-01: order 10.00 (3 items: wool sock, socks; red shoe, shoes); "
               "2015-01-01: order 5.00; "
               "2015-01-02: review 5 stars: 'great fit'; "
               "2015-01-11: order 20.00 (1 item: red shoe, shoes); "
               "2015-01-21: order 30.00; "
               "2015-01-25: review 2 stars: 'fell apart'")
  # Same-day orders by order id, and a review without stars reads as a plain review.
  (e,) = _texts(tables, ["E"])
  assert e == ("2015-01-05: order 0.00; 2015-01-20: order 50.00; 2015-01-20: order 25.00; "
               "2015-01-21: review: 'no stars given'")


def test_cutoff_is_strict(tables):
  # C bought at 23:59 the day before the cutoff and at the cutoff's midnight: only the first.
  (c,) = _texts(tables, ["C"])
  assert c == "2015-01-31: order 8.00"
  (c_later,) = _texts(tables, ["C"], cutoff=pd.Timestamp("2015-02-01 00:00:01"))
  assert c_later == "2015-01-31: order 8.00; 2015-02-01: order 9.00"
  (a,) = _texts(tables, ["A"])
  assert "holdout review" not in a and "40.00" not in a and "2015-02" not in a
  # A cutoff before everything leaves nothing.
  assert _texts(tables, ["A", "E"], cutoff="2014-12-31") == [history_text.NO_HISTORY_TEXT] * 2


def test_order_of_ids_is_kept_and_unknown_customers_get_the_fixed_text(tables):
  ids = ["E", "Z", "B", "D", "B"]
  out = _texts(tables, ids)
  assert len(out) == len(ids)
  assert out[0].startswith("2015-01-05: order 0.00")
  assert out[1] == out[3] == history_text.NO_HISTORY_TEXT  # unknown; holdout-only D
  assert out[2] == out[4] == "2015-01-15: order 12.00"
  # A pandas Index or Series works the same as a list.
  assert _texts(tables, pd.Index(ids)) == out == _texts(tables, pd.Series(ids, dtype="string"))


def test_optional_tables_may_be_missing(tables):
  no_reviews = [None, schema.empty_table("reviews")]
  for reviews in no_reviews:
    (a,) = history_text.customer_history_texts(tables["transactions"], reviews, ["A"], CUTOFF)
    assert a == ("2015-01-01: order 10.00; 2015-01-01: order 5.00; 2015-01-11: order 20.00; "
                 "2015-01-21: order 30.00")
  # Items without products: quantities but no labels. Products without descriptions: categories.
  (a,) = _texts(tables, ["A"], items=tables["items"])
  assert a.startswith("2015-01-01: order 10.00 (3 items); 2015-01-01: order 5.00; ")
  products = tables["products"].drop(columns=["description"])
  (a,) = _texts(tables, ["A"], items=tables["items"], products=products)
  assert a.startswith("2015-01-01: order 10.00 (3 items: socks; shoes); ")
  # Reviews with missing text and no rating column: a bare "review".
  reviews = tables["reviews"].drop(columns=["rating"]).assign(text=pd.NA)
  (a,) = history_text.customer_history_texts(tables["transactions"], reviews, ["A"], CUTOFF)
  assert "2015-01-02: review; " in a and a.endswith("2015-01-25: review")


def test_truncation_keeps_recent_events_and_a_summary(tables):
  (full,) = _texts(tables, ["A"])
  events = full.split("; ")
  (short,) = _texts(tables, ["A"], max_chars=120)
  assert len(short) <= 120
  prefix = "4 orders, 2 reviews since 2015-01-01; "
  assert short.startswith(prefix)
  kept = short[len(prefix):].split("; ")
  assert kept == events[-len(kept):]  # the newest events, in order
  assert 1 <= len(kept) < len(events)
  # One more kept event would not have fitted.
  assert len(prefix) + len("; ".join(events[-len(kept) - 1:])) > 120


def test_a_single_long_event_is_cut_to_max_chars():
  tx = make_transactions([("A", "o1", "2020-01-01 10:00", 5.0)])
  reviews = make_reviews([("r1", "A", "2020-01-02 10:00", 4.0, "word " * 200)])
  (text,) = history_text.customer_history_texts(tx, reviews, ["A"], "2021-01-01",
                                                max_chars=60, max_review_chars=500)
  assert len(text) <= 60 and text.endswith("...")
  (text,) = history_text.customer_history_texts(tx, reviews, ["A"], "2021-01-01",
                                                max_review_chars=20)
  # Cut at a space, within 20 characters.
  assert text == "2020-01-01: order 5.00; 2020-01-02: review 4 stars: 'word word word...'"


def test_bad_input_raises(tables):
  with pytest.raises(ValueError, match="transactions: column"):
    history_text.customer_history_texts(tables["transactions"].drop(columns=["amount"]), None,
                                        ["A"], CUTOFF)
  with pytest.raises(ValueError, match="max_chars must be"):
    _texts(tables, ["A"], max_chars=10)
  with pytest.raises(ValueError, match="cutoff must be"):
    _texts(tables, ["A"], cutoff="not a date")
  with pytest.raises(ValueError, match="customer_ids holds missing"):
    _texts(tables, ["A", None])


def test_thousand_customers_smoke():
  rng = np.random.default_rng(0)
  n_tx = 10_000
  customers = np.asarray([f"c{i:04d}" for i in range(1000)])
  tx = make_transactions([
      (customers[c], f"o{i:05d}", pd.Timestamp("2020-01-01") + pd.Timedelta(seconds=int(s)),
       float(a))
      for i, (c, s, a) in enumerate(zip(rng.integers(0, 1000, n_tx),
                                         rng.integers(0, 2 * 365 * 86400, n_tx),
                                         rng.gamma(2.0, 20.0, n_tx).round(2)))])
  reviews = make_reviews([(f"r{i}", customers[c], "2020-06-01", 3.0, "ok")
                          for i, c in enumerate(rng.integers(0, 1000, 500))])
  texts = history_text.customer_history_texts(tx, reviews, customers, "2021-06-01")
  assert len(texts) == 1000 and max(map(len, texts)) <= 600
  before = tx[tx["timestamp"] < "2021-06-01"]
  n_orders = before["customer_id"].value_counts().reindex(customers, fill_value=0).to_numpy()
  n_reviews = reviews["customer_id"].value_counts().reindex(customers, fill_value=0).to_numpy()
  truncated = [i for i, t in enumerate(texts) if " since " in t]
  assert 0 < len(truncated) < 100
  for i in truncated:
    assert texts[i].startswith(f"{n_orders[i]} orders")
  # With room for everything, each text holds exactly the customer's orders and reviews.
  full = history_text.customer_history_texts(tx, reviews, customers, "2021-06-01",
                                             max_chars=5000)
  assert not any(" since " in t for t in full)
  assert [t.count(": order ") for t in full] == n_orders.tolist()
  assert [t.count(": review 3 stars: 'ok'") for t in full] == n_reviews.tolist()
  assert all((t == history_text.NO_HISTORY_TEXT) == (o + r == 0)
             for t, o, r in zip(full, n_orders, n_reviews))
  # Truncated texts end like the complete ones.
  for i in truncated:
    assert full[i].endswith(texts[i].split("; ", 1)[1])


def test_integer_ids_match_their_string_form():
  tx = pd.DataFrame({"customer_id": [7, 7, 8], "order_id": ["o1", "o2", "o3"],
                     "timestamp": pd.to_datetime(["2020-01-01", "2020-02-01", "2020-01-05"]),
                     "amount": [1.0, 2.0, 3.0]})
  texts = history_text.customer_history_texts(tx, None, [8, 7], "2020-03-01")
  assert texts == ["2020-01-05: order 3.00", "2020-01-01: order 1.00; 2020-02-01: order 2.00"]

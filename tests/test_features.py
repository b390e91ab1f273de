"""Tests for cvlib.data.features: the time split and per-customer features (DuckDB vs pandas)."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from cvlib.data import features

CUTOFF = dt.date(2015, 2, 1)
HORIZON = 30
NAN = np.nan


@pytest.fixture
def tiny_features(tiny_shop):
  return features.compute_customer_features(tiny_shop["transactions"], tiny_shop["items"],
                                            tiny_shop["products"], tiny_shop["reviews"], CUTOFF,
                                            HORIZON).set_index("customer_id")


# --- hand-made shop (see conftest.py) ----------------------------------------------------------

# customer: (frequency, recency, T, days_since_last, n_orders, total_spend, avg_order_value,
#            monetary_value, n_items, n_products, n_categories, holdout_value, holdout_orders)
EXPECTED = {
    "A": (2, 20, 31, 11, 4, 65.0, 16.25, 25.0, 4, 2, 2, 40.0, 1),
    "B": (0, 0, 17, 17, 1, 12.0, 12.0, 0.0, 0, 0, 0, 0.0, 0),
    "C": (0, 0, 1, 1, 1, 8.0, 8.0, 0.0, 0, 0, 0, 10.0, 2),
    "E": (1, 15, 27, 12, 3, 75.0, 25.0, 75.0, 0, 0, 0, 0.0, 0),
}
COLUMNS = ("frequency", "recency_days", "T_days", "days_since_last", "n_orders", "total_spend",
           "avg_order_value", "monetary_value", "n_items", "n_products", "n_categories",
           "holdout_value", "holdout_orders")


def test_one_row_per_customer_with_calibration_purchase(tiny_features):
  assert tiny_features.index.tolist() == ["A", "B", "C", "E"]  # D bought in the holdout only
  assert str(tiny_features.index.dtype) == "string"


@pytest.mark.parametrize("customer", sorted(EXPECTED))
def test_behaviour_features_by_hand(tiny_features, customer):
  got = tiny_features.loc[customer, list(COLUMNS)].astype(float).to_numpy()
  np.testing.assert_allclose(got, np.array(EXPECTED[customer], dtype=float), err_msg=customer)


def test_returned_and_first_purchase(tiny_features):
  assert tiny_features["returned"].to_dict() == {"A": True, "B": False, "C": True, "E": False}
  assert tiny_features.loc["A", "first_purchase"] == pd.Timestamp("2015-01-01")
  assert tiny_features.loc["E", "first_purchase"] == pd.Timestamp("2015-01-05")


def test_last_90_days(tiny_shop):
  # a cutoff 100 days after the first purchase leaves A's first day outside the 90-day window
  cutoff = dt.date(2015, 4, 11)  # window starts 2015-01-11
  f = features.compute_customer_features(tiny_shop["transactions"], tiny_shop["items"],
                                         tiny_shop["products"], tiny_shop["reviews"], cutoff,
                                         HORIZON).set_index("customer_id")
  assert f.loc["A", "orders_last_90d"] == 4  # o03, o04, o05 and o06
  assert f.loc["A", "spend_last_90d"] == 20.0 + 30.0 + 40.0 + 100.0
  assert f.loc["B", "spend_last_90d"] == 12.0 and f.loc["E", "orders_last_90d"] == 2
  assert f.loc["A", "frequency"] == 4  # days 01-01, 01-11, 01-21, 02-10, 03-10


def test_review_features_by_hand(tiny_features):
  a, e = tiny_features.loc["A"], tiny_features.loc["E"]
  assert (a["n_reviews"], a["mean_rating"], a["min_rating"], a["last_rating"],
          a["share_low_ratings"], a["days_since_last_review"]) == (2, 3.5, 2, 2, 0.5, 7)
  # E's one review has no stars: counted, ratings missing
  assert e["n_reviews"] == 1 and e["days_since_last_review"] == 11
  assert np.isnan([e["mean_rating"], e["min_rating"], e["share_low_ratings"]]).all()
  b = tiny_features.loc["B"]  # no review at all
  assert b["n_reviews"] == 0 and np.isnan(b["mean_rating"]) and np.isnan(b["days_since_last_review"])


def test_dtypes(tiny_features):
  for col in features.BEHAVIOUR_FEATURES + features.REVIEW_FEATURES + ("holdout_value",
                                                                       "holdout_orders"):
    assert tiny_features[col].dtype == np.float64, col
  assert tiny_features["returned"].dtype == bool


def test_empty_items_and_reviews(tiny_shop):
  from cvlib.data import schema
  f = features.compute_customer_features(tiny_shop["transactions"], schema.empty_table("items"),
                                         schema.empty_table("products"),
                                         schema.empty_table("reviews"), CUTOFF, HORIZON)
  assert len(f) == 4
  assert (f["n_items"] == 0).all() and (f["n_reviews"] == 0).all()
  assert f["mean_rating"].isna().all()


# --- against an independent pandas computation on the synthetic shop --------------------------

def _pandas_features(tx, items, products, reviews, cutoff, horizon) -> pd.DataFrame:
  cut = pd.Timestamp(cutoff)
  end = cut + pd.Timedelta(days=horizon)
  cal = tx[tx["timestamp"] < cut].assign(day=lambda d: d["timestamp"].dt.normalize())
  days = cal.groupby(["customer_id", "day"], as_index=False)["amount"].sum()
  g = days.groupby("customer_id")
  out = pd.DataFrame({
      "frequency": g.size() - 1,
      "recency_days": (g["day"].max() - g["day"].min()).dt.days,
      "T_days": (cut - g["day"].min()).dt.days,
      "days_since_last": (cut - g["day"].max()).dt.days,
      # lifetimes' convention: mean spend of the repeat purchase days, 0 without repeats
      "monetary_value": days.sort_values("day").groupby("customer_id")["amount"].apply(
          lambda s: s.iloc[1:].mean() if len(s) > 1 else 0.0),
  })
  o = cal.groupby("customer_id")["amount"]
  out["n_orders"] = o.size()
  out["total_spend"] = o.sum()
  out["avg_order_value"] = o.mean()
  recent = cal[cal["day"] >= cut - pd.Timedelta(days=90)].groupby("customer_id")["amount"]
  out["spend_last_90d"] = recent.sum().reindex(out.index).fillna(0.0)
  out["orders_last_90d"] = recent.size().reindex(out.index).fillna(0)
  lines = (items.merge(cal[["order_id", "customer_id"]], on="order_id")
           .merge(products[["product_id", "category"]], on="product_id", how="left"))
  b = lines.groupby("customer_id")
  out["n_items"] = b["quantity"].sum().reindex(out.index).fillna(0.0)
  out["n_products"] = b["product_id"].nunique().reindex(out.index).fillna(0)
  out["n_categories"] = b["category"].nunique().reindex(out.index).fillna(0)
  rv = reviews[reviews["customer_id"].notna() & (reviews["timestamp"] < cut)]
  r = rv.groupby("customer_id")
  out["n_reviews"] = r.size().reindex(out.index).fillna(0)
  out["mean_rating"] = r["rating"].mean()
  out["min_rating"] = r["rating"].min()
  out["last_rating"] = rv.sort_values("timestamp").groupby("customer_id")["rating"].last(
      skipna=False)
  out["share_low_ratings"] = rv.assign(low=(rv["rating"] <= 2).astype(float).where(
      rv["rating"].notna())).groupby("customer_id")["low"].mean()
  out["days_since_last_review"] = (cut - r["timestamp"].max().dt.normalize()).dt.days
  h = tx[(tx["timestamp"] >= cut) & (tx["timestamp"] < end)].groupby("customer_id")["amount"]
  out["holdout_value"] = h.sum().reindex(out.index).fillna(0.0)
  out["holdout_orders"] = h.size().reindex(out.index).fillna(0)
  return out.sort_index()


def test_matches_pandas_on_synthetic(tiny_clean, tiny_params):
  t, _ = tiny_clean
  cutoff = features.choose_cutoff(t.transactions, tiny_params.split.calibration_end,
                                  tiny_params.split.horizon_days, t.meta)
  assert cutoff == dt.date(2024, 1, 1)
  got = features.compute_customer_features(t.transactions, t.items, t.products, t.reviews, cutoff,
                                           tiny_params.split.horizon_days).set_index("customer_id")
  want = _pandas_features(t.transactions, t.items, t.products, t.reviews, cutoff,
                          tiny_params.split.horizon_days)
  assert got.index.tolist() == want.index.tolist()
  assert len(got) == 300  # every synthetic customer buys in the first year
  assert 0.05 < got["returned"].mean() < 0.95  # the holdout has both outcomes
  assert got["n_reviews"].gt(0).any() and got["frequency"].gt(0).any()
  for col in want.columns:
    np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9,
                               atol=1e-9, err_msg=col)
  np.testing.assert_array_equal(got["returned"].to_numpy(), want["holdout_orders"].to_numpy() > 0)


def test_deterministic(tiny_shop):
  args = (tiny_shop["transactions"], tiny_shop["items"], tiny_shop["products"],
          tiny_shop["reviews"], CUTOFF, HORIZON)
  pd.testing.assert_frame_equal(features.compute_customer_features(*args),
                                features.compute_customer_features(*args))


# --- choose_cutoff ------------------------------------------------------------------------------

def test_cutoff_given(tiny_shop):
  tx = tiny_shop["transactions"]
  assert features.choose_cutoff(tx, dt.date(2015, 1, 20), 30) == dt.date(2015, 1, 20)
  # the configured date wins over the dataset's own
  assert features.choose_cutoff(tx, dt.date(2015, 1, 20), 30,
                                {"calibration_end": "2015-02-01"}) == dt.date(2015, 1, 20)


def test_cutoff_from_meta(tiny_shop):
  assert features.choose_cutoff(tiny_shop["transactions"], None, 30,
                                {"calibration_end": "2015-02-01"}) == dt.date(2015, 2, 1)


def test_cutoff_from_last_event(tiny_shop):
  # last purchase 2015-03-10: the holdout is its final `horizon_days` days, ending that day
  tx = tiny_shop["transactions"]
  assert features.choose_cutoff(tx, None, 30) == dt.date(2015, 2, 9)
  assert features.choose_cutoff(tx, None, 1, {}) == dt.date(2015, 3, 10)


def test_cutoff_errors(tiny_shop):
  tx = tiny_shop["transactions"]
  with pytest.raises(ValueError, match="no transactions left after cleaning"):
    features.choose_cutoff(tx.iloc[:0], None, 30)
  with pytest.raises(ValueError, match=r"calibration_end 2015-01-01 is not after the first "
                     r"purchase \(2015-01-01\); shorten split.horizon_days \(30\)"):
    features.choose_cutoff(tx, dt.date(2015, 1, 1), 30)
  with pytest.raises(ValueError, match=r"is not after the first purchase.*horizon_days \(100\)"):
    features.choose_cutoff(tx, None, 100)  # the data span 69 days
  with pytest.raises(ValueError, match=r"calibration_end 2015-03-11 is after the last purchase "
                     r"\(2015-03-10\): there is no holdout"):
    features.choose_cutoff(tx, dt.date(2015, 3, 11), 30)


# --- feature_matrix -----------------------------------------------------------------------------

def test_feature_matrix(tiny_features):
  f = tiny_features.reset_index()
  X = features.feature_matrix(f)
  cols = list(features.BEHAVIOUR_FEATURES + features.REVIEW_FEATURES)
  assert X.shape == (4, len(cols) + 1) and X.dtype == np.float32
  assert np.isfinite(X).all()
  has_review = X[:, -1]
  np.testing.assert_array_equal(has_review, [1, 0, 0, 1])  # A and E wrote reviews
  i = {c: k for k, c in enumerate(cols)}
  np.testing.assert_allclose(X[:, i["total_spend"]], np.log1p([65.0, 12.0, 8.0, 75.0]), rtol=1e-6)
  np.testing.assert_allclose(X[:, i["frequency"]], np.log1p([2, 0, 0, 1]), rtol=1e-6)  # counts too
  # missing ratings become a neutral 3, missing days since a review the longest history
  np.testing.assert_allclose(X[:, i["mean_rating"]], [3.5, 3.0, 3.0, 3.0])
  np.testing.assert_allclose(X[:, i["share_low_ratings"]], [0.5, 0.0, 0.0, 0.0])
  np.testing.assert_allclose(X[:, i["days_since_last_review"]], [7, 31, 31, 11])


def test_feature_matrix_subset_and_negative_money(tiny_features):
  f = tiny_features.reset_index()
  f.loc[0, "total_spend"] = -5.0  # clipped before the log
  X = features.feature_matrix(f, ("frequency", "total_spend"))
  assert X.shape == (4, 2)  # no review columns, so no has_review indicator
  assert X[0, 1] == 0.0


def test_feature_matrix_on_synthetic(tiny_clean):
  t, _ = tiny_clean
  f = features.compute_customer_features(t.transactions, t.items, t.products, t.reviews,
                                         dt.date(2024, 1, 1), 180)
  X = features.feature_matrix(f)
  assert X.shape == (300, len(features.BEHAVIOUR_FEATURES) + len(features.REVIEW_FEATURES) + 1)
  assert np.isfinite(X).all()
  np.testing.assert_array_equal(X[:, -1], (f["n_reviews"] > 0).to_numpy(np.float32))


def _feature_matrix_pandas(features_df, columns):
  """feature_matrix as it was first written, in pandas: the numpy version must equal it."""
  X = features_df[list(columns)].astype("float64").copy()
  for col in features.LOG_SCALED:
    if col in X:
      X[col] = np.log1p(X[col].clip(lower=0))
  if "mean_rating" in X:
    X["has_review"] = features_df["n_reviews"].gt(0).astype("float64")
  fill = {"mean_rating": 3.0, "min_rating": 3.0, "last_rating": 3.0, "share_low_ratings": 0.0,
          "days_since_last_review": X["T_days"].max() if "T_days" in X else 0.0}
  for col in ("mean_interpurchase_days", "max_interpurchase_days"):
    if col in X and "T_days" in X:
      X[col] = X[col].fillna(X["T_days"])
  return X.fillna(fill).fillna(0.0).to_numpy(dtype=np.float32)


def test_feature_matrix_equals_the_pandas_recipe_bit_for_bit(tiny_clean):
  t, _ = tiny_clean
  f = features.compute_customer_features(t.transactions, t.items, t.products, t.reviews,
                                         dt.date(2024, 1, 1), 180)
  f.loc[f.index[:3], "total_spend"] = [-1.0, -0.0, np.nan]  # clipped, signed zero, missing
  f.loc[f.index[3], "T_days"] = np.nan
  every = features.BEHAVIOUR_FEATURES + features.REVIEW_FEATURES
  for cols in (every, ("frequency", "total_spend"), ("mean_rating", "n_reviews", "T_days"),
               ("days_since_last_review", "mean_rating", "n_reviews")):
    want, got = _feature_matrix_pandas(f, cols), features.feature_matrix(f, cols)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # signed zeros too
  one = f.iloc[[5]].reset_index(drop=True)  # a service call's single customer
  np.testing.assert_array_equal(features.feature_matrix(one), _feature_matrix_pandas(one, every))


# --- holdout_items ------------------------------------------------------------------------------

def test_holdout_items(tiny_shop):
  cal, hold = features.holdout_items(tiny_shop["transactions"], tiny_shop["items"], CUTOFF, HORIZON)
  assert list(cal.columns) == ["customer_id", "product_id", "timestamp"]
  assert cal[["customer_id", "product_id"]].values.tolist() == [["A", "P1"], ["A", "P2"],
                                                                ["A", "P1"]]
  assert hold[["customer_id", "product_id"]].values.tolist() == [["A", "P3"]]
  assert (cal["timestamp"] < pd.Timestamp(CUTOFF)).all()
  # a horizon that ends before o05 leaves the holdout empty
  _, hold = features.holdout_items(tiny_shop["transactions"], tiny_shop["items"], CUTOFF, 5)
  assert len(hold) == 0

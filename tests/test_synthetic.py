"""Tests for cvlib.data.synthetic: the demo shop's tables, its story and its warts."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cvlib.data import schema, synthetic

START = pd.Timestamp("2023-01-01")
CAL_END = START + pd.Timedelta(days=365)
END = CAL_END + pd.Timedelta(days=180)
CANONICAL = ("customers", "transactions", "items", "products", "reviews")


@pytest.fixture(scope="module")
def small():
  return synthetic.make_demo_data(300, seed=3)


@pytest.fixture(scope="module")
def medium():
  return synthetic.make_demo_data(1000, seed=1)


def _orders(data):
  return data["transactions"].drop_duplicates("order_id")


def test_returns_all_tables(small):
  assert set(small) == set(synthetic.TABLE_NAMES)
  assert len(small["customers"]) == 300
  assert len(small["truth"]) == 300
  assert len(small["products"]) == 120
  assert small["products"]["category"].nunique() == 8


@pytest.mark.parametrize("name", CANONICAL)
def test_dtypes_match_schema(small, name):
  df = small[name]
  for col in schema.TABLES[name]:
    if col.required:
      assert col.name in df.columns
    if col.name in df.columns:
      assert str(df[col.name].dtype) == col.dtype, (name, col.name, df[col.name].dtype)
      if not col.nullable:
        assert not df[col.name].isna().any(), (name, col.name)
  pd.testing.assert_series_equal(schema.coerce_table(name, df).dtypes, df.dtypes)


def test_ids_unique_and_formatted(small):
  assert small["customers"]["customer_id"].is_unique
  assert small["customers"]["customer_id"].iloc[0] == "C00001"
  assert small["products"]["product_id"].is_unique
  assert small["reviews"]["review_id"].is_unique
  assert small["items"]["order_id"].isin(small["transactions"]["order_id"]).all()
  assert small["items"]["product_id"].isin(small["products"]["product_id"]).all()
  assert set(small["transactions"]["customer_id"]) == set(small["customers"]["customer_id"])


def test_deterministic_for_a_seed(small):
  again = synthetic.make_demo_data(300, seed=3)
  for name in synthetic.TABLE_NAMES:
    pd.testing.assert_frame_equal(small[name], again[name])
  other = synthetic.make_demo_data(300, seed=4)
  assert not small["transactions"]["amount"].equals(other["transactions"]["amount"])
  assert not small["reviews"]["text"].equals(other["reviews"]["text"])


def test_items_sum_to_order_amounts(small):
  orders = _orders(small).set_index("order_id")["amount"]
  items = small["items"]
  np.testing.assert_allclose(items["amount"], items["quantity"] * items["unit_price"], atol=1e-9)
  per_order = items.groupby("order_id")["amount"].sum().reindex(orders.index)
  np.testing.assert_allclose(per_order, orders, atol=1e-6)
  assert items["quantity"].isin([1.0, 2.0, 3.0]).all()
  assert items.groupby("order_id").size().between(1, 4).all()
  assert (items["quantity"] == 1).mean() > 0.7


def test_timestamps_inside_window(small):
  for name, col in (("transactions", "timestamp"), ("reviews", "timestamp"),
                    ("customers", "signup_date")):
    ts = small[name][col]
    assert ts.min() >= START and ts.max() < END, name
  # acquisition spread over the first ~75% of the calibration period
  signup = small["customers"]["signup_date"]
  assert signup.max() < START + pd.Timedelta(days=0.75 * 365)
  assert signup.min() < START + pd.Timedelta(days=60)
  first = _orders(small).groupby("customer_id")["timestamp"].min()
  pd.testing.assert_series_equal(
      small["customers"].set_index("customer_id")["signup_date"].sort_index(),
      first.sort_index(), check_names=False)


def test_reviews_follow_their_order(small):
  rev = small["reviews"].merge(_orders(small)[["order_id", "timestamp", "customer_id"]],
                               on="order_id", suffixes=("", "_order"))
  assert len(rev) == len(small["reviews"])
  delay = (rev["timestamp"] - rev["timestamp_order"]).dt.total_seconds() / 86400
  assert delay.between(2 - 1e-5, 14).all()
  known = rev["customer_id"].notna()
  assert (rev.loc[known, "customer_id"] == rev.loc[known, "customer_id_order"]).all()
  # the reviewed product was in the order
  pairs = set(zip(small["items"]["order_id"], small["items"]["product_id"]))
  assert all(p in pairs for p in zip(rev["order_id"], rev["product_id"]))


def test_sizes_in_expected_range(medium):
  n_orders = _orders(medium)["order_id"].nunique()
  assert 3.0 <= n_orders / 1000 <= 5.5
  n_reviews = len(medium["reviews"])
  assert 0.25 <= n_reviews / n_orders <= 0.45
  amounts = _orders(medium)["amount"]
  assert 20 <= amounts.median() <= 150


def test_rating_distribution_skewed_positive(medium):
  share = medium["reviews"]["rating"].value_counts(normalize=True)
  assert set(share.index) <= {1.0, 2.0, 3.0, 4.0, 5.0}
  assert 0.45 <= share[5.0] <= 0.65
  assert 0.07 <= share[1.0] + share[2.0] <= 0.2
  assert share[5.0] > share[4.0] > share[3.0]


def test_holdout_spend_follows_truth(medium):
  truth = medium["truth"]
  rho = stats.spearmanr(truth["holdout_value"], truth["expected_value_holdout"]).statistic
  assert rho > 0.3
  # realised holdout numbers recomputed from the data (duplicates and zero orders excluded)
  orders = _orders(medium)
  hold = orders[(orders["timestamp"] >= CAL_END) & (orders["amount"] > 0)]
  value = hold.groupby("customer_id")["amount"].sum().reindex(truth["customer_id"], fill_value=0)
  np.testing.assert_allclose(value.to_numpy(), truth["holdout_value"].to_numpy(), atol=1e-6)
  # customers who dropped out before the cutoff buy nothing afterwards
  dead = ~truth["alive_at_cutoff"]
  assert (truth.loc[dead, "holdout_orders"] == 0).all()
  assert (truth.loc[dead, "expected_value_holdout"] == 0).all()
  # expected and realised totals agree (sampling noise only)
  ratio = truth["holdout_orders"].sum() / truth["expected_orders_holdout"].sum()
  assert 0.85 < ratio < 1.15


def test_expected_dropout_matches_monte_carlo():
  rng = np.random.default_rng(0)
  p_base = np.array([0.05, 0.2, 0.5])
  sat = np.array([-1.0, 0.0, 1.5])
  eps = rng.normal(0, synthetic._EPS_SD, (200_000, 1))
  eps = eps - synthetic._SHOCK_SIZE * (rng.random((200_000, 1)) < synthetic._SHOCK_PROB)
  logit = np.log(p_base / (1 - p_base))
  mc = (1 / (1 + np.exp(-(logit - synthetic._BETA * (sat + eps))))).mean(axis=0)
  np.testing.assert_allclose(synthetic._expected_dropout(p_base, sat), mc, atol=3e-3)


def test_satisfaction_shows_in_reviews(medium):
  truth = medium["truth"][["customer_id", "alive_at_cutoff", "satisfaction"]]
  rev = medium["reviews"]
  rev = rev[rev["timestamp"] < CAL_END].merge(truth, on="customer_id")
  by_alive = rev.groupby("alive_at_cutoff")["rating"].mean()
  assert by_alive[True] > by_alive[False] + 0.2
  rho = stats.spearmanr(rev["rating"], rev["satisfaction"]).statistic
  assert rho > 0.3


def test_stated_intent_tells_what_the_stars_do_not(medium):
  """A last review saying "won't be back" marks a lost customer even among five-star reviews."""
  truth = medium["truth"][["customer_id", "alive_at_cutoff"]]
  rev = medium["reviews"].dropna(subset=["text", "customer_id"])
  rev = rev[rev["timestamp"] < CAL_END].sort_values("timestamp").groupby("customer_id").last()
  rev = rev.reset_index().merge(truth, on="customer_id")
  text = rev["text"].str.lower()
  says = {k: text.apply(lambda t, k=k: any(p.lower().rstrip(".") in t
                                           for p in synthetic._INTENT[k]))
          for k in (True, False)}
  assert 0.2 < (says[True] | says[False]).mean() < 0.6  # about 40% of reviews state intent
  five = rev["rating"] == 5
  stay = rev.loc[five & says[True] & ~says[False], "alive_at_cutoff"].mean()
  leave = rev.loc[five & says[False] & ~says[True], "alive_at_cutoff"].mean()
  assert stay > leave + 0.4


def test_category_affinity_beats_popularity(medium):
  orders = _orders(medium)[["order_id", "customer_id", "timestamp"]]
  items = medium["items"].merge(orders, on="order_id").merge(
      medium["products"][["product_id", "category"]], on="product_id")
  cal, hold = items[items["timestamp"] < CAL_END], items[items["timestamp"] >= CAL_END]
  fav = cal.groupby("customer_id")["category"].agg(lambda c: c.value_counts().index[0])
  hold = hold[hold["customer_id"].isin(fav.index)]
  own = (hold["category"].to_numpy() == fav.reindex(hold["customer_id"]).to_numpy()).mean()
  top_share = cal["category"].value_counts(normalize=True).iloc[0]
  assert own > top_share + 0.15


def test_review_aspects_are_consistent(medium):
  rev, asp = medium["reviews"], medium["review_aspects"]
  assert list(asp.columns) == ["review_id", "aspect", "polarity"]
  assert asp["review_id"].isin(rev["review_id"]).all()
  assert set(asp["aspect"]) <= set(synthetic.ASPECTS)
  assert set(asp["polarity"]) == {"positive", "negative"}
  assert not asp.duplicated(["review_id", "aspect"]).any()
  per_review = asp.groupby("review_id").size()
  assert per_review.between(1, 3).all()
  with_text = rev.loc[rev["text"].notna(), "review_id"]
  assert set(per_review.index) == set(with_text)
  # size/fit only for apparel and shoes
  cat = rev.merge(medium["products"], on="product_id").set_index("review_id")["category"]
  sized = asp.loc[asp["aspect"] == "size_fit", "review_id"]
  assert cat.loc[sized].isin(["apparel", "shoes"]).all()
  # polarity mostly agrees with the stars, but not always
  pos = asp.merge(rev[["review_id", "rating"]], on="review_id")
  pos["positive"] = pos["polarity"] == "positive"
  share = pos.groupby("rating")["positive"].mean()
  assert share[5.0] > 0.8 and share[1.0] < 0.4
  assert share[5.0] < 1.0


def test_review_text_is_varied(medium):
  text = medium["reviews"]["text"]
  assert 0.02 <= text.isna().mean() <= 0.09
  text = text.dropna()
  assert text.nunique() > 0.8 * len(text)
  n_words = text.str.split().str.len()
  assert n_words.min() <= 3 and n_words.max() >= 25
  assert text.str.contains(r"\b(?:not|never|wasn't|isn't|doesn't)\b", regex=True).mean() > 0.05
  assert text.str.contains(r"\b(?:very|really|extremely|super)\b", regex=True).mean() > 0.05
  assert medium["reviews"]["title"].notna().mean() > 0.2


def test_warts_are_present(medium):
  tx = medium["transactions"]
  assert tx.duplicated().sum() >= 5
  assert tx.duplicated().sum() == tx["order_id"].duplicated().sum()  # exact copies only
  zero = tx.drop_duplicates("order_id")["amount"] == 0
  assert 2 <= zero.sum() <= 10
  assert 1 <= medium["reviews"]["customer_id"].isna().sum() <= 10
  assert not medium["items"].duplicated().any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_customers=0), "n_customers"),
    (dict(n_customers=2.5), "n_customers"),
    (dict(seed=-1), "seed"),
    (dict(start="not a date"), "start"),
    (dict(horizon_days=0), "horizon_days"),
    (dict(calibration_days=-3), "calibration_days"),
])
def test_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    synthetic.make_demo_data(**kwargs)


def test_custom_calendar():
  data = synthetic.make_demo_data(50, seed=0, start="2020-03-01", calibration_days=100,
                                  horizon_days=30)
  ts = data["transactions"]["timestamp"]
  assert ts.min() >= pd.Timestamp("2020-03-01")
  assert ts.max() < pd.Timestamp("2020-03-01") + pd.Timedelta(days=130)


def test_write_demo_data(tmp_path):
  out = tmp_path / "demo"
  paths = synthetic.write_demo_data(out, n_customers=60, seed=2)
  assert set(paths) == set(synthetic.TABLE_NAMES) | {"meta"}
  assert sorted(p.name for p in out.iterdir()) == sorted(
      [f"{n}.parquet" for n in synthetic.TABLE_NAMES] + ["meta.json"])
  assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp dir left behind
  meta = json.loads(paths["meta"].read_text())
  assert meta["start"] == "2023-01-01"
  assert meta["calibration_end"] == "2024-01-01"
  assert meta["horizon_days"] == 180
  assert meta["n_customers"] == 60 and meta["seed"] == 2
  assert meta["generator_version"] == synthetic.GENERATOR_VERSION
  assert "CC0" in meta["licence"]
  expected = synthetic.make_demo_data(60, seed=2)
  for name in synthetic.TABLE_NAMES:
    back = pd.read_parquet(paths[name])
    assert len(back) == len(expected[name]) == meta["tables"][name]
  back = pd.read_parquet(paths["transactions"])
  pd.testing.assert_frame_equal(schema.coerce_table("transactions", back), expected["transactions"])
  # writing again replaces the set in place
  synthetic.write_demo_data(out, n_customers=40, seed=2)
  assert json.loads(paths["meta"].read_text())["n_customers"] == 40

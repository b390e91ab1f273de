"""The inputs that benchmarks/value_levers.py measures (issue 19 part 4, rounds three to five)."""

import datetime as dt

import numpy as np
import pandas as pd

import benchmark_script

vl = benchmark_script.load("value_levers")

CUTOFF = dt.date(2024, 2, 1)


def _shop() -> tuple[pd.DataFrame, pd.DataFrame]:
  """Customer a: two orders with lines before the cutoff (p1 bought again), one after; customer
  b: one order without lines but with the order row's own quantity (as CDNOW's adapter keeps)."""
  tx = pd.DataFrame({
      "customer_id": ["a", "a", "a", "b"], "order_id": ["o1", "o2", "o3", "o4"],
      "timestamp": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-03-01", "2024-01-10"]),
      "amount": [10.0, 20.0, 99.0, 12.0], "quantity": [np.nan, np.nan, np.nan, 3.0]})
  items = pd.DataFrame({"order_id": ["o1", "o1", "o2", "o3"],
                        "product_id": ["p1", "p2", "p1", "p9"], "quantity": [2.0, 3.0, 4.0, 50.0]})
  return tx, items


def test_unit_price_features_read_lines_or_the_order_quantity():
  tx, items = _shop()
  got = vl.unit_price_features(tx, items, pd.Series(["a", "b", "c"]), CUTOFF)
  assert list(got.columns) == ["unit_price", "units_per_order", "units_trend"]
  a_trend = np.log1p(4) - (np.log1p(5) + np.log1p(4)) / 2
  np.testing.assert_allclose(got.to_numpy(), [
      [np.log1p(30 / 9), np.log1p(4.5), a_trend],  # the order after the cutoff is not read
      [np.log1p(12 / 3), np.log1p(3), 0.0],
      [0.0, 0.0, 0.0]])  # no order: zeros
  # a shop whose adapter keeps no quantity at all: units only from the lines
  only_lines = vl.unit_price_features(tx.drop(columns="quantity"), items, pd.Series(["a", "b"]),
                                      CUTOFF)
  np.testing.assert_allclose(only_lines.iloc[1].to_numpy(), 0.0)
  np.testing.assert_allclose(only_lines.iloc[0].to_numpy(), got.iloc[0].to_numpy())


def test_line_features_count_lines_and_repeat_products():
  tx, items = _shop()
  features = pd.DataFrame({"customer_id": ["a", "b"], "n_items": [9.0, 0.0],
                           "n_products": [2.0, 0.0], "n_orders": [2.0, 1.0]})
  got = vl.line_features(tx, items, features, CUTOFF)
  assert list(got.columns) == ["lines_per_order", "repeat_product_share", "products_per_order",
                               "products_per_unit"]
  np.testing.assert_allclose(got.to_numpy(), [[np.log1p(3 / 2), 1 / 3, np.log1p(1), 2 / 9],
                                              [0.0, 0.0, 0.0, 0.0]])


def test_normal_scores_are_learnt_on_the_fitting_rows():
  fit = pd.DataFrame({"x": np.arange(100.0)})
  other = pd.DataFrame({"x": [-5.0, 49.5, 500.0]})
  got = vl.normal_scores(fit, other)[0]["x"].to_numpy()
  assert got[0] < -4 and abs(got[1]) < 1e-6 and got[2] > 4  # outside the range: the extremes


def test_product_groups_use_categories_where_the_shop_gives_them():
  tx, items = _shop()
  items = items.assign(amount=[1.0, 5.0, 2.0, 9.0])
  products = pd.DataFrame({"product_id": ["p1", "p2", "p9"], "category": ["toys", "books", "x"],
                           "description": [None, None, None]})
  got = vl.product_groups(tx, items, products, CUTOFF, k=2)
  assert got.to_dict() == {"p1": 1, "p2": 0}  # books largest; p9 sold after the cutoff only


def test_product_groups_cluster_descriptions_and_spend_shares_follow():
  names = ["red tea mug", "blue tea mug", "green tea mug", "vanilla scented candle",
           "rose scented candle", "lemon scented candle"]
  products = pd.DataFrame({"product_id": [f"p{i}" for i in range(6)], "category": [None] * 6,
                           "description": names})
  tx = pd.DataFrame({"customer_id": ["a", "b"], "order_id": ["o1", "o2"],
                     "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                     "amount": [10.0, 4.0]})
  items = pd.DataFrame({"order_id": ["o1"] * 6 + ["o2"], "product_id": [f"p{i}" for i in range(6)]
                        + ["p0"], "amount": [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 4.0]})
  groups = vl.product_groups(tx, items, products, CUTOFF, k=2)
  assert groups[["p0", "p1", "p2"]].nunique() == 1 and groups[["p3", "p4", "p5"]].nunique() == 1
  assert groups["p0"] != groups["p3"]
  got = vl.category_features(tx, items, groups, pd.Series(["a", "b", "c"]), CUTOFF, k=2)
  mug, candle = f"group_share_{groups['p0']}", f"group_share_{groups['p3']}"
  np.testing.assert_allclose(got[[mug, candle, "groups_bought"]].to_numpy(),
                             [[0.4, 0.6, np.log1p(2)], [1.0, 0.0, np.log1p(1)], [0, 0, 0]])


def test_return_features_read_negative_lines_before_the_cutoff():
  tx = pd.DataFrame({"customer_id": ["a", "a", "a", "b", "b"],
                     "order_id": ["o1", "c1", "c2", "o2", "o3"],
                     "timestamp": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-03-01",
                                                  "2024-01-05", "2024-01-06"]),
                     "amount": [30.0, -10.0, -5.0, 8.0, -2.0]})
  items = pd.DataFrame({"order_id": ["o1", "o1", "o1", "c1", "c2", "o2"],
                        "quantity": [1.0, 2.0, 2.0, -1.0, -1.0, 4.0],
                        "amount": [10.0, 20.0, 20.0, -10.0, -5.0, 8.0],
                        "duplicate": [False, False, True, False, False, False]})
  got = vl.return_features(tx, items, pd.Series(["a", "b", "c"]), CUTOFF)
  # a: one line back (c2 is after the cutoff, o1's third line a duplicate); b: an order with
  # no lines and a negative total
  np.testing.assert_allclose(got.to_numpy(), [[np.log1p(1), np.log1p(10), 10 / 30],
                                              [np.log1p(1), np.log1p(2), 2 / 8], [0, 0, 0]])


def test_sequence_features_bin_the_history_back_from_the_cutoff():
  tx = pd.DataFrame({"customer_id": ["a", "a", "a", "a"], "order_id": ["o1", "o2", "o3", "o4"],
                     "timestamp": pd.to_datetime(["2024-01-31 12:00", "2024-01-20 00:00",
                                                  "2023-12-01 00:00", "2024-02-01 00:00"]),
                     "amount": [3.0, 4.0, 5.0, 99.0]})
  got = vl.sequence_features(tx, pd.Series(["a", "z"]), CUTOFF, bins=2, days=28)
  assert list(got.columns) == ["spend_bin_0", "spend_bin_1", "orders_bin_0", "orders_bin_1"]
  # 2023-12-01 is 62 days back: outside two 28-day bins; the cutoff day itself is holdout
  np.testing.assert_allclose(got.to_numpy(), [[np.log1p(7), 0, 2, 0], [0, 0, 0, 0]])


def test_group_means_pool_customers_with_identical_inputs():
  X = pd.DataFrame({"a": [1.0, 1.0, 2.0, 1.0], "b": [0.5, 0.5, 0.5, 0.6]})
  np.testing.assert_allclose(vl.group_means(X, np.array([2.0, 4.0, 7.0, 1.0])), [3, 3, 7, 1])


def test_pnbd_inputs_fit_on_some_customers_and_score_all():
  rng = np.random.default_rng(0)
  n = 100
  freq = rng.poisson(1.5, n).astype(float)
  T = rng.uniform(100, 300, n)
  f = pd.DataFrame({"frequency": freq, "recency_days": np.where(freq > 0, T * rng.uniform(
      0.2, 1, n), 0.0), "T_days": T, "monetary_value": np.where(freq > 0, rng.gamma(3, 10, n),
                                                                0.0)})
  # and two customers alike but for their purchases: five, the last a day before the cutoff,
  # against none
  T0 = f["T_days"].iloc[0]
  two = pd.DataFrame({"frequency": [5.0, 0.0], "recency_days": [T0 - 1, 0.0], "T_days": [T0, T0],
                      "monetary_value": [20.0, 0.0]})
  got = vl.pnbd_inputs(f.iloc[:80], pd.concat([f, two], ignore_index=True), 90)
  assert list(got.columns) == list(vl.PNBD_INPUTS) and len(got) == n + 2
  assert np.isfinite(got.to_numpy()).all() and got["pnbd_purchases"].gt(0).all()
  assert got[["pnbd_p_alive", "pnbd_p_return"]].stack().between(0, 1).all()
  assert got["pnbd_purchases"].iloc[-2] > got["pnbd_purchases"].iloc[-1]
  # nothing to fit: zeros, the network then reads btyd's inputs alone
  assert (vl.pnbd_inputs(f.iloc[:1], f, 90).to_numpy() == 0).all()


def test_calibrated_keeps_the_order_and_matches_the_validation_levels():
  rng = np.random.default_rng(0)
  pred = rng.gamma(1.0, 50.0, 400)
  y = 2.0 * pred * rng.uniform(0.5, 1.5, 400)
  val = np.arange(0, 400, 4)
  scaled = vl.calibrated(pred, y, val, "scale")
  assert np.isclose(scaled[val].sum(), y[val].sum())
  binned = vl.calibrated(pred, y, val, "bins")
  assert (np.argsort(binned, kind="stable") == np.argsort(pred, kind="stable")).all()
  assert abs(binned[val].sum() / y[val].sum() - 1) < 0.1


def test_tweedie_loss_is_lowest_at_the_weighted_mean():
  y = np.array([0.0, 0.0, 3.0, 10.0, 1.0], np.float32)
  w = np.array([1.0, 1.0, 1.0, 1.0, 0.0], np.float32)  # the last row is padding
  etas = np.log(np.linspace(1.0, 6.0, 501))
  for power in vl.TWEEDIE_POWERS:
    loss = [float(vl.tweedie_loss(np.full(5, e, np.float32), y, w, power)) for e in etas]
    assert np.isclose(np.exp(etas[int(np.argmin(loss))]), 13.0 / 4, atol=0.02)


def test_lever_net_reads_the_periods_through_the_gru():
  from flax import nnx
  net = vl.LeverNet(3 + 2 * vl.SEQUENCE_BINS, (8,), 0.0, 3, rngs=nnx.Rngs(0),
                    output_bias=[0.0, 1.0, 0.5], gru=4)
  x = np.zeros((2, 3 + 2 * vl.SEQUENCE_BINS), np.float32)
  x[1, 3 + vl.SEQUENCE_BINS - 1] = 1.0  # the oldest spend period only
  out = np.asarray(net(x))
  assert out.shape == (2, 3) and not np.allclose(out[0], out[1])

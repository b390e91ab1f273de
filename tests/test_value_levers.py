"""The order-line inputs that benchmarks/value_levers.py measures (issue 19 part 4, third round)."""

import datetime as dt
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "value_levers.py"
_SPEC = importlib.util.spec_from_file_location("value_levers_benchmark", _PATH)
vl = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(vl)

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

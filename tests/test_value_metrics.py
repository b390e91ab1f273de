"""Tests for cvlib.value.metrics: known limits, hand cases and an independent Gini reference."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cvlib.value import metrics as vm


def _values(n: int, seed: int) -> np.ndarray:
  """Zero-inflated, heavy-tailed values like a holdout spend column."""
  rng = np.random.default_rng(seed)
  return np.where(rng.random(n) < 0.4, rng.lognormal(3.0, 1.0, n), 0.0)


def _lifetime_value_gini(y_true: np.ndarray, y_pred: np.ndarray) -> float:
  """google/lifetime_value notebook definition (valid when predictions have no ties)."""

  def cumulative_true(yt, yp):
    df = pd.DataFrame({"y_true": yt, "y_pred": yp}).sort_values(by="y_pred", ascending=False)
    return (df["y_true"].cumsum() / df["y_true"].sum()).values

  raw = lambda c: 2 * c.sum() / len(c) - 1.0
  return raw(cumulative_true(y_true, y_pred)) / raw(cumulative_true(y_true, y_true))


def test_gini_limits():
  y = _values(20_000, seed=0)
  assert vm.gini_normalised(y, y) == pytest.approx(1.0, abs=1e-12)
  assert vm.gini_normalised(y, np.log1p(y) * 3 + 1) == pytest.approx(1.0, abs=1e-12)
  assert vm.gini_normalised(y, -y) < -0.9
  rng = np.random.default_rng(1)
  assert abs(vm.gini_normalised(y, rng.random(len(y)))) < 0.05
  assert vm.gini_normalised(y, np.full(len(y), 3.0)) == pytest.approx(0.0, abs=1e-12)


def _trapezoid_gini(y_true: np.ndarray, y_pred: np.ndarray) -> float:
  """Area between the piecewise-linear Lorenz curve and the diagonal (no ties in y_pred)."""

  def area(order):
    gain = np.r_[0.0, np.cumsum(y_true[order]) / y_true.sum()]
    x = np.linspace(0.0, 1.0, len(y_true) + 1)
    return 2 * np.trapezoid(gain, x) - 1

  return area(np.argsort(-y_pred)) / area(np.argsort(-y_true))


def test_gini_matches_references():
  y = _values(3000, seed=2)
  pred = y + np.random.default_rng(3).normal(0, 30, len(y))  # continuous: no ties
  assert vm.gini_normalised(y, pred) == pytest.approx(_trapezoid_gini(y, pred), abs=1e-12)
  # lifetime_value's discrete sum differs by O(1/n) only.
  assert vm.gini_normalised(y, pred) == pytest.approx(_lifetime_value_gini(y, pred), abs=1e-3)
  strictly_positive = np.random.default_rng(4).lognormal(0, 1, 500)
  assert vm.gini_normalised(strictly_positive, -strictly_positive) == pytest.approx(-1.0)


def test_gini_ties_do_not_depend_on_row_order():
  y = _values(1000, seed=5)
  pred = np.round(y / 50)  # few distinct values: big tie blocks
  perm = np.random.default_rng(6).permutation(len(y))
  assert vm.gini_normalised(y, pred) == pytest.approx(vm.gini_normalised(y[perm], pred[perm]),
                                                      abs=1e-12)
  t1, t2 = vm.decile_table(y, pred), vm.decile_table(y[perm], pred[perm])
  pd.testing.assert_frame_equal(t1, t2)


def test_decile_table_identical_gives_zero_mape():
  y = np.random.default_rng(7).lognormal(2, 1, 1000)
  table = vm.decile_table(y, y)
  assert list(table.columns) == ["decile", "mean_pred", "mean_true", "n", "abs_pct_error",
                                 "scored_error"]
  assert table["decile"].tolist() == list(range(1, 11))
  assert (table["n"] == 100).all()
  assert table["mean_pred"].is_monotonic_increasing
  assert vm.decile_mape(y, y) == 0.0
  # Doubling every prediction is off by 100% in every decile.
  assert vm.decile_mape(y, 2 * y) == pytest.approx(1.0)


def test_decile_mape_scores_zero_deciles_against_the_overall_mean():
  """Every decile counts: a zero-mean decile's error is its absolute error over mean(y_true), so
  over-predicting the customers who spend nothing is not hidden (issue 19)."""
  y_true = np.r_[np.zeros(50), np.full(50, 10.0)]  # overall mean 5
  y_pred = np.r_[np.linspace(0, 1, 50), np.full(50, 12.0) + np.linspace(0, 1, 50)]
  table = vm.decile_table(y_true, y_pred)
  assert table["abs_pct_error"].isna().sum() == 5
  expected = np.r_[table["mean_pred"].iloc[:5] / 5.0,
                   np.abs(table["mean_pred"].iloc[5:] - 10.0) / 10.0]
  np.testing.assert_allclose(table["scored_error"], expected)
  assert vm.decile_mape(y_true, y_pred) == pytest.approx(expected.mean())
  # Over-predicting the zero deciles now costs: 100 for each non-spender is 20x the mean.
  worse = np.r_[np.full(50, 100.0) + np.linspace(0, 1, 50), y_pred[50:]]
  assert vm.decile_mape(y_true, worse) > vm.decile_mape(y_true, y_pred) + 5
  # A tie block spanning several deciles is weighted by its customers.
  flat = vm.decile_table(y_true, np.r_[np.zeros(50), np.full(50, 10.0)])
  assert flat["n"].tolist() == [50, 50]
  assert vm.decile_mape(y_true, np.r_[np.zeros(50), np.full(50, 10.0)]) == 0.0
  assert np.isnan(vm.decile_mape(np.zeros(20), np.arange(20.0)))


def test_interval_coverage_by_return_splits_spenders_from_non_spenders():
  y = np.array([0.0, 0.0, 0.0, 5.0, 50.0])
  cov = vm.interval_coverage_by_return(y, np.zeros(5), np.full(5, 10.0))
  assert cov == pytest.approx({"interval_coverage": 0.8, "interval_coverage_returning": 0.5,
                               "interval_coverage_not_returning": 1.0})
  assert np.isnan(vm.interval_coverage_by_return(y[:3], np.zeros(3), np.ones(3))[
      "interval_coverage_returning"])


def test_top_shares_and_auc_hand_case():
  y_true = np.array([10, 0, 5, 0, 0, 0, 0, 0, 0, 85], dtype=float)
  y_pred = np.array([10, 1, 9, 2, 3, 4, 5, 6, 7, 8], dtype=float)
  m = vm.value_metrics(y_true, y_pred)
  assert m["top10_share"] == pytest.approx(0.10)  # row 0
  assert m["top20_share"] == pytest.approx(0.15)  # rows 0 and 2
  assert m["n"] == 10
  assert m["mae"] == pytest.approx(np.mean(np.abs(y_true - y_pred)))

  y = np.array([0.0, 0.0, 1.0, 2.0])
  p = np.array([0.1, 0.4, 0.35, 0.8])
  m = vm.value_metrics(y, np.array([1.0, 2.0, 3.0, 4.0]), p_return=p)
  assert m["auc_returning"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs in order
  assert m["pr_auc_returning"] == pytest.approx((1 / 1 + 2 / 3) / 2)
  # Without p_return the value prediction ranks returners.
  m = vm.value_metrics(y, np.array([1.0, 2.0, 3.0, 4.0]))
  assert m["auc_returning"] == pytest.approx(1.0)


def test_value_metrics_is_json_ready_and_nan_safe():
  y = _values(500, seed=8)
  m = vm.value_metrics(y, y * 0.9 + 1)
  assert set(m) == {"gini", "spearman", "decile_mape", "auc_returning", "pr_auc_returning", "mae",
                    "top10_share", "top20_share", "n"}
  assert all(type(v) in (float, int) for v in m.values())
  assert m["spearman"] == pytest.approx(1.0)
  json.dumps(m)

  with pytest.warns(UserWarning, match="every y_true is 0"):
    z = vm.value_metrics(np.zeros(20), np.arange(20.0))
  for k in ("gini", "decile_mape", "auc_returning", "pr_auc_returning", "top10_share",
            "spearman"):
    assert math.isnan(z[k]), k
  assert z["mae"] == pytest.approx(9.5)
  assert all(type(v) in (float, int) for v in z.values())


def test_interval_coverage():
  y = np.array([0.0, 1.0, 2.0, 5.0])
  assert vm.interval_coverage(y, [0, 0, 3, 4], [0, 2, 4, 5]) == pytest.approx(0.75)
  with pytest.raises(ValueError, match=r"lo > hi at rows \[1\]"):
    vm.interval_coverage(y, [0, 3, 0, 0], [1, 2, 3, 6])


def test_bootstrap_gini_diff():
  y = _values(2000, seed=9)
  rng = np.random.default_rng(10)
  good = y + rng.normal(0, 10, len(y))
  noise = rng.random(len(y))
  diff, lo, hi = vm.bootstrap_gini_diff(y, good, noise, n_boot=100, seed=0)
  assert diff == pytest.approx(vm.gini_normalised(y, good) - vm.gini_normalised(y, noise))
  assert 0 < lo <= diff <= hi
  assert vm.bootstrap_gini_diff(y, good, noise, n_boot=100, seed=0) == (diff, lo, hi)
  d0, lo0, hi0 = vm.bootstrap_gini_diff(y, good, good, n_boot=50)
  assert d0 == lo0 == hi0 == 0.0


def test_plots():
  y = _values(400, seed=11)
  preds = {"ZILN": y + 5, "BG/NBD": np.sqrt(y) + 1}
  fig = vm.plot_decile_chart({k: vm.decile_table(y, p) for k, p in preds.items()})
  assert isinstance(fig, Figure)
  visible = [ax for ax in fig.axes if ax.get_visible()]
  assert len(visible) == 2
  for ax in visible:
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Predicted", "Actual"]
  shared = vm.plot_decile_chart({k: vm.decile_table(y, p) for k, p in preds.items()}, shared=True)
  assert len(shared.axes) == 1
  assert len(shared.axes[0].get_legend().get_texts()) == 3

  gain = vm.plot_gain_curves(y, preds)
  (ax,) = gain.axes
  assert ax.get_legend() is None  # under the plot, never over the curves
  labels = [t.get_text() for t in gain.legends[0].get_texts()]
  assert labels[0] == "Perfect" and labels[-1] == "Random"
  assert labels[1].startswith("ZILN (Gini 1.000")
  assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="must be 1-D of equal length"):
    vm.gini_normalised([1, 2, 3], [1, 2])
  with pytest.raises(ValueError, match=r"y_pred holds NaN/inf \(first rows: \[1\]\)"):
    vm.value_metrics([1.0, 2.0], [1.0, np.nan])
  with pytest.raises(ValueError, match="y_true must be >= 0"):
    vm.decile_table([-1.0, 2.0], [1.0, 2.0])
  with pytest.raises(ValueError, match="n_boot must be >= 1"):
    vm.bootstrap_gini_diff([1.0], [1.0], [1.0], n_boot=0)
  with pytest.raises(ValueError, match="lacks columns"):
    vm.plot_decile_chart({"m": pd.DataFrame({"decile": [1]})})
  with pytest.raises(ValueError, match="no predictions"):
    vm.plot_gain_curves([1.0], {})

"""Tests for cvlib.value.baselines."""

import pickle

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from cvlib.value import baselines


def test_spend_baseline():
  out = baselines.spend_baseline([100.0, 30.0, 0.0, 50.0, 200.0], [100, 30, 10, 0, 360], 90)
  # exposure at least one horizon: under 90 days watched, the spend so far once more
  np.testing.assert_allclose(out, [90.0, 30.0, 0.0, 50.0, 50.0])
  np.testing.assert_allclose(
      baselines.spend_baseline([50.0], [0.0], 90, min_days=30), [150.0])
  with pytest.raises(ValueError, match="horizon_days must be > 0"):
    baselines.spend_baseline([1.0], [1.0], 0)
  with pytest.raises(ValueError, match=r"T_days must be finite and >= 0 \(bad rows: \[1\]\)"):
    baselines.spend_baseline([1.0, 2.0], [1.0, -1.0], 30)
  with pytest.raises(ValueError, match="equal length"):
    baselines.spend_baseline([1.0, 2.0], [1.0], 30)


@pytest.fixture(autouse=True)
def _one_thread():
  # OpenMP in the boosting oversubscribes a shared 2-core machine badly (10x slower under load).
  with threadpool_limits(limits=1):
    yield


def _toy(n: int, seed: int):
  """Return and spend driven by the first two of five features."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 5))
  returned = rng.random(n) < 1 / (1 + np.exp(-2 * x[:, 0]))
  y = np.where(returned, np.exp(2 + x[:, 1] + 0.3 * rng.normal(size=n)), 0.0)
  return x, y, returned


def test_gbt_predicts_the_mean_not_the_median():
  """The Poisson objective predicts the mean spend: on zero-inflated, heavy-tailed spend the mean
  prediction matches the mean outcome, which expm1 of a log1p model misses by half (issue 19)."""
  rng = np.random.default_rng(4)
  x = rng.normal(size=(3000, 3))
  y = np.where(rng.random(3000) < 0.4, np.exp(2 + x[:, 0] + rng.normal(size=3000)), 0.0)
  pred = baselines.train_gbt(x[:2000], y[:2000], seed=0).predict(x[2000:])
  assert pred.mean() == pytest.approx(y[2000:].mean(), rel=0.25)
  zero = baselines.train_gbt(x[:50], np.zeros(50)).predict(x[:5])
  np.testing.assert_array_equal(zero, 0.0)


def test_gbt_beats_constant():
  x, y, _ = _toy(1500, seed=0)
  xt, yt, _ = _toy(500, seed=1)
  model = baselines.train_gbt(x, y, seed=0)
  pred = model.predict(xt)
  assert pred.shape == (500,) and (pred >= 0).all()
  mae_gbt = np.mean(np.abs(pred - yt))
  mae_const = np.mean(np.abs(np.median(y) - yt))  # the best constant under absolute error
  assert mae_gbt < 0.9 * mae_const
  # The ranking follows the signal (a constant has no rank correlation at all).
  assert stats.spearmanr(pred, yt).statistic > 0.4
  # Deterministic for a seed, and picklable (no lambdas inside).
  again = pickle.loads(pickle.dumps(baselines.train_gbt(x, y, seed=0)))
  np.testing.assert_array_equal(again.predict(xt), pred)


def test_gbt_return_classifier():
  x, _, returned = _toy(1000, seed=2)
  xt, _, rt = _toy(500, seed=3)
  clf = baselines.train_gbt_return(x, returned, seed=0)
  proba = clf.predict_proba(xt)[:, 1]
  assert proba.shape == (500,) and ((proba >= 0) & (proba <= 1)).all()
  assert roc_auc_score(rt, proba) > 0.75
  with pytest.raises(ValueError, match="single class"):
    baselines.train_gbt_return(x, np.zeros(len(x)), seed=0)
  with pytest.raises(ValueError, match="only 0/1"):
    baselines.train_gbt_return(x, np.full(len(x), 2.0), seed=0)


def test_gbt_bad_inputs():
  with pytest.raises(ValueError, match="y_train must be >= 0"):
    baselines.train_gbt(np.zeros((3, 2)), [1.0, -2.0, 0.0])
  with pytest.raises(ValueError, match="as many rows"):
    baselines.train_gbt(np.zeros((3, 2)), [1.0, 2.0])
  with pytest.raises(ValueError, match=r"y_train holds NaN/inf \(first rows: \[0\]\)"):
    baselines.train_gbt(np.zeros((2, 2)), [np.nan, 1.0])

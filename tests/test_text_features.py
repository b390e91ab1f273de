"""Per-customer text features: embedding PCA, the latest review, and the text return score."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cvlib.value import text_features

CUTOFF = dt.date(2024, 1, 1)


def _reviews(n_customers: int = 400, seed: int = 0, hidden: int = 8):
  """Two reviews per customer; the LATEST one's first embedding axis says whether they return."""
  rng = np.random.default_rng(seed)
  returns = rng.random(n_customers) < 0.5
  rows, emb = [], []
  for i in range(n_customers):
    for k, day in enumerate((10, 200)):
      v = rng.normal(0, 1, hidden)
      if k == 1:  # the latest review carries the signal
        v[0] += 2.0 if returns[i] else -2.0
      rows.append({"review_id": f"R{i}_{k}", "customer_id": f"C{i:04d}",
                   "timestamp": pd.Timestamp("2023-01-01") + pd.Timedelta(days=day),
                   "sentiment": float(np.tanh(v[1]))})
      emb.append(v / np.linalg.norm(v))
  # a review after the cutoff that must be ignored
  rows.append({"review_id": "late", "customer_id": "C0000",
               "timestamp": pd.Timestamp("2024-02-01"), "sentiment": -1.0})
  emb.append(np.eye(hidden)[0])
  return pd.DataFrame(rows), np.asarray(emb, np.float32), returns


def test_latest_review_features_use_the_newest_review_before_the_cutoff():
  reviews, emb, _ = _reviews(20)
  hidden = emb.shape[1]
  unit = text_features.TextFeaturizer(np.eye(hidden), np.zeros(hidden))
  out = unit.transform(pd.Series(["C0000", "C0001", "nobody"]), reviews, emb, CUTOFF)
  out = out.set_index("customer_id")
  np.testing.assert_allclose(out.loc["C0000", [f"last_text_pc{i + 1}" for i in range(hidden)]],
                             emb[1], rtol=1e-6)  # R0_1, not the late review
  np.testing.assert_allclose(out.loc["C0001", [f"text_pc{i + 1}" for i in range(hidden)]],
                             emb[2:4].mean(axis=0), rtol=1e-6)
  assert out.loc["nobody"].abs().sum() == 0 and out.loc["C0000", "has_text"] == 1


def test_text_return_score_learns_from_training_customers_only():
  reviews, emb, returns = _reviews()
  ids = pd.Series([f"C{i:04d}" for i in range(len(returns))])
  train = np.arange(len(ids)) < 300
  fz = text_features.fit_text_featurizer(reviews, emb, ids[train], CUTOFF, 2)
  fz, oof = text_features.fit_text_return_score(fz, reviews, emb, ids[train], returns[train], CUTOFF,
                                           seed=0)
  assert fz.names()[-1] == "text_return_logit"
  # out-of-fold scores for the training customers, and they carry the signal
  assert set(oof.index) == set(ids[train])
  assert roc_auc_score(returns[train], oof.loc[ids[train]].to_numpy()) > 0.8
  # the full fit scores unseen customers
  test = fz.transform(ids[~train], reviews, emb, CUTOFF)
  assert roc_auc_score(returns[~train], test["text_return_logit"]) > 0.8


def test_text_return_score_needs_enough_reviewers():
  reviews, emb, returns = _reviews(40)
  ids = pd.Series([f"C{i:04d}" for i in range(40)])
  fz = text_features.fit_text_featurizer(reviews, emb, ids, CUTOFF, 2)
  same, oof = text_features.fit_text_return_score(fz, reviews, emb, ids, returns, CUTOFF, seed=0)
  assert oof is None and same.return_coef is None
  assert "text_return_logit" not in same.names()


def test_featurizer_round_trips_with_and_without_the_score(tmp_path):
  reviews, emb, returns = _reviews(300)
  ids = pd.Series([f"C{i:04d}" for i in range(300)])
  fz = text_features.fit_text_featurizer(reviews, emb, ids, CUTOFF, 3)
  scored, _ = text_features.fit_text_return_score(fz, reviews, emb, ids, returns, CUTOFF, seed=0)
  for f in (fz, scored):
    f.save(tmp_path / "fz.npz")
    back = text_features.TextFeaturizer.load(tmp_path / "fz.npz")
    assert back.names() == f.names()
    pd.testing.assert_frame_equal(back.transform(ids, reviews, emb, CUTOFF),
                                  f.transform(ids, reviews, emb, CUTOFF))


@pytest.mark.parametrize("seed", [0, 1])
def test_text_return_score_is_deterministic(seed):
  reviews, emb, returns = _reviews(200)
  ids = pd.Series([f"C{i:04d}" for i in range(200)])
  fz = text_features.fit_text_featurizer(reviews, emb, ids, CUTOFF, 2)
  a = text_features.fit_text_return_score(fz, reviews, emb, ids, returns, CUTOFF, seed=seed)[1]
  b = text_features.fit_text_return_score(fz, reviews, emb, ids, returns, CUTOFF, seed=seed)[1]
  pd.testing.assert_series_equal(a, b)

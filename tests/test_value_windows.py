"""The value networks' earlier training windows (``value.train_windows``, issue 19; the run's
networks trained on them: tests/test_btyd_inputs.py) and the ZILN ranking term."""

from __future__ import annotations

import dataclasses
import datetime as dt

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from cvlib.data import features as feats
from cvlib.stages import finetune, preprocess
from cvlib.value import networks, ziln


def test_training_windows_end_before_the_cutoff(build):
  # a, b: every 20 days from 2024-01-01; c first buys 2024-05-20
  days = [dt.datetime(2024, 1, 1) + dt.timedelta(days=20 * i) for i in range(12)]
  rows = [(c, f"{c}{i}", d, 10.0 * (1 + i)) for c in "ab" for i, d in enumerate(days)]
  rows.append(("c", "c0", dt.datetime(2024, 5, 20), 99.0))
  tables = build.tables(transactions=build.transactions(rows))
  cutoff, h = dt.date(2024, 6, 1), 60
  w = preprocess.training_windows(feats.compute_customer_features, tables, cutoff, h, 5)
  # 2024-04-02 (92 days of history) and 2024-02-02 (32 days); 2023-12-04 is before the data
  assert sorted(w["window"].unique()) == [1, 2]
  one = w[w["window"] == 1].set_index("customer_id")
  assert set(one.index) == {"a", "b"}  # c had not bought yet
  # label: spend in [2024-04-02, 2024-06-01), i.e. orders of 2024-04-10, 04-30, 05-20 (i = 5..7)
  assert one.loc["a", "holdout_value"] == pytest.approx(10.0 * (6 + 7 + 8))
  assert one.loc["a", "n_orders"] == 5  # orders before 2024-04-02
  capped = preprocess.training_windows(feats.compute_customer_features, tables, cutoff, h, 1)
  assert list(capped["window"].unique()) == [1]
  assert not len(preprocess.training_windows(feats.compute_customer_features, tables, cutoff,
                                             h, 0))


def test_window_rows_keep_only_the_given_customers():
  w = pd.DataFrame({"customer_id": ["a", "b", "c", "a"], "window": [1, 1, 1, 2]})
  got = networks.window_rows(w, pd.Series(["a", "c"]))
  assert got["customer_id"].tolist() == ["a", "c", "a"] and got.index.tolist() == [0, 1, 2]
  assert not len(networks.window_rows(pd.DataFrame(), pd.Series(["a"])))
  assert not len(networks.window_rows(None, pd.Series(["a"])))


def test_networks_fit_on_their_customers_earlier_windows(tiny_params, tiny_clean, monkeypatch):
  # value.train_windows: only the fitting customers reach a network through an earlier window
  prep = preprocess.prepare_customers(tiny_params, tiny_clean[0])
  is_test = finetune.split_customers(tiny_params.value, prep.features, seed=0)
  windows = preprocess.training_windows(feats.compute_customer_features, tiny_clean[0],
                                        prep.cutoff, prep.horizon_days, 2)
  assert set(windows["window"]) == {1}  # the tiny shop's data start 30 days before one window
  cfg = dataclasses.replace(tiny_params.value, epochs=1)
  no_ratings = prep.features.assign(n_reviews=0.0)  # the history network alone: one to train
  fit_idx, _ = networks.value_split(is_test, 0)
  more = networks.window_rows(windows, prep.features["customer_id"].iloc[fit_idx])
  predictor, _ = networks.train_value_networks(cfg, no_ratings, None, is_test, seed=0,
                                               horizon_days=prep.horizon_days,
                                               windows=windows)["ziln"]
  assert predictor.config["windows"] == 1
  assert predictor.config["feature_names"][-1] == networks.WINDOW_INPUT
  # the standardiser saw the fitting rows (window 0) and exactly these earlier rows (window 1)
  assert predictor.standardiser.mean[-1] == pytest.approx(len(more) / (len(fit_idx) + len(more)))
  X = networks.predictor_inputs("ziln", predictor, prep.features.iloc[:5], None)
  assert (X[networks.WINDOW_INPUT] == 0).all()
  assert predictor.predict(X)["predicted_value"].notna().all()
  # with review text no network reads earlier windows (there are no text features at earlier
  # cutoffs, and the review ablation compares networks trained on the same rows)
  rows = {}

  def fake_train(X_fit, *args, **kwargs):
    rows[len(rows)] = X_fit
    return type("P", (), {"config": {}})(), None

  monkeypatch.setattr(ziln, "train_ziln", fake_train)
  text = pd.DataFrame({"customer_id": prep.features["customer_id"].astype(str), "text_pc1": 0.0})
  nets = networks.train_value_networks(cfg, prep.features, text, is_test, seed=0,
                                       horizon_days=prep.horizon_days, windows=windows)
  assert "ziln_text" in nets and not any(p.config["windows"] for p, _ in nets.values())
  assert all(len(x) == len(fit_idx) and networks.WINDOW_INPUT not in x for x in rows.values())


def test_ranking_loss_rewards_the_labels_order():
  loss = jax.jit(ziln.ranking_loss)  # one compilation for the three calls
  y = jnp.array([0.0, 5.0, 50.0, 0.0])  # the last row is padding (weight 0)
  w = jnp.array([1.0, 1.0, 1.0, 0.0])

  def logits(log_means):
    # p = 1/2, sigma = softplus(0) = log 2: s = log(1/2) + mu + log(2)^2 / 2
    mu = np.asarray(log_means) - np.log(0.5) - 0.5 * np.log(2.0) ** 2
    return np.stack([np.zeros(4), mu, np.zeros(4)], axis=1).astype(np.float32)

  right = float(loss(logits([0.0, 1.0, 2.0, 9.0]), y, w))
  wrong = float(loss(logits([2.0, 1.0, 0.0, -9.0]), y, w))
  # pairs (5 > 0), (50 > 0), (50 > 5): softplus(-1), softplus(-2), softplus(-1), mean of three
  sp = lambda v: float(np.log1p(np.exp(v)))  # noqa: E731
  assert right == pytest.approx((2 * sp(-1) + sp(-2)) / 3, rel=1e-5)
  assert wrong == pytest.approx((2 * sp(1) + sp(2)) / 3, rel=1e-5)
  assert float(loss(logits([0.0] * 4), jnp.ones(4), w)) == 0.0  # no ordered pair

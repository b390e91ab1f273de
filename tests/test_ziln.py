"""Tests for cvlib.value.ziln: loss/prediction numerics against scipy and sampling, and training."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from scipy import stats

from cvlib.value import ziln


def _ziln_data(n: int, seed: int, n_features: int = 10) -> tuple[np.ndarray, np.ndarray]:
  """Features and labels from a known ZILN: return prob from x0, lognormal mu from x1."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, n_features))
  p = 1.0 / (1.0 + np.exp(-(1.5 * x[:, 0] - 0.3)))
  mu = 1.0 + 0.8 * x[:, 1]
  y = np.where(rng.random(n) < p, np.exp(mu + 0.5 * rng.normal(size=n)), 0.0)
  return x, y


def _reference_loss(logits: np.ndarray, labels: np.ndarray, weights=None) -> float:
  """Independent numpy/scipy ZILN negative log-likelihood."""
  logits = logits.astype(np.float64)
  l0, mu, l2 = logits.T
  sigma = np.maximum(np.logaddexp(0.0, l2), np.sqrt(1e-7))
  positive = labels > 0
  log_p = -np.logaddexp(0.0, -l0)  # log sigmoid(l0)
  log_1mp = -np.logaddexp(0.0, l0)  # log (1 - sigmoid(l0))
  per_row = np.where(positive, -log_p, -log_1mp)
  safe = np.where(positive, labels, 1.0)
  lognorm_lp = stats.lognorm(s=sigma, scale=np.exp(mu)).logpdf(safe)
  per_row = per_row - np.where(positive, lognorm_lp, 0.0)
  if weights is None:
    return float(per_row.mean())
  return float((weights * per_row).sum() / weights.sum())


def test_loss_matches_scipy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(200, 3)).astype(np.float32)
  labels = np.where(rng.random(200) < 0.4, rng.lognormal(0.5, 1.0, 200), 0.0).astype(np.float32)
  labels[:5] = 0.0
  # Rows 5-7: softplus(-30) is below the sigma floor sqrt(1e-7), so the clamp decides the density.
  logits[5:8, 2] = -30.0
  labels[5:8] = np.exp(logits[5:8, 1] + 1e-4)
  got = float(ziln.ziln_loss(jnp.asarray(logits), jnp.asarray(labels)))
  want = _reference_loss(logits, labels.astype(np.float64))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  weights = rng.random(200).astype(np.float32)
  got_w = float(ziln.ziln_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights)))
  want_w = _reference_loss(logits, labels.astype(np.float64), weights.astype(np.float64))
  np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-5)


def test_loss_gradient_finite_with_zero_labels():
  logits = jnp.zeros((4, 3))
  labels = jnp.array([0.0, 0.0, 2.0, 0.5])
  grad = jax.grad(lambda z: ziln.ziln_loss(z, labels))(logits)
  assert np.all(np.isfinite(np.asarray(grad)))
  # Zero rows only inform the classification logit.
  np.testing.assert_array_equal(np.asarray(grad)[:2, 1:], 0.0)


@pytest.mark.parametrize("l0,mu,l2", [(0.3, 1.0, 0.2), (-1.2, 2.5, -0.8), (2.0, -0.5, 0.5)])
def test_mean_and_quantiles_match_monte_carlo(l0, mu, l2):
  logits = jnp.array([[l0, mu, l2]], dtype=jnp.float32)
  qs = (0.1, 0.5, 0.9)
  out = ziln.ziln_predict(logits, qs)
  p = 1.0 / (1.0 + np.exp(-l0))
  sigma = np.log1p(np.exp(l2))
  rng = np.random.default_rng(1)
  n = 400_000
  samples = np.where(rng.random(n) < p, rng.lognormal(mu, sigma, n), 0.0)
  np.testing.assert_allclose(float(out["p_return"][0]), p, rtol=1e-6)
  np.testing.assert_allclose(float(out["mean"][0]), samples.mean(), rtol=0.02)
  mc_q = np.quantile(samples, qs)
  got_q = np.asarray(out["quantiles"][0], dtype=np.float64)
  for q, got, want in zip(qs, got_q, mc_q):
    if q <= 1 - p:
      assert got == 0.0, (q, got)
    else:
      np.testing.assert_allclose(got, want, rtol=0.02)


def test_quantiles_rejects_bad_levels():
  with pytest.raises(ValueError, match="qs must be levels in"):
    ziln.ziln_quantiles(jnp.zeros((1, 3)), (0.1, 1.0))


def test_model_shapes_and_output_bias():
  y = np.array([0.0, 0.0, 0.0, np.e, np.e ** 3])
  bias = ziln.make_output_bias(y)
  np.testing.assert_allclose(bias[:2], [np.log(0.4 / 0.6), 2.0], rtol=1e-6)
  np.testing.assert_allclose(np.log1p(np.exp(bias[2])), 1.0, rtol=1e-5)
  model = ziln.ZILNModel(7, (16, 8), 0.1, rngs=nnx.Rngs(0), output_bias=bias)
  out = nnx.view(model, deterministic=True)(jnp.zeros((5, 7)))
  assert out.shape == (5, 3)
  # Zero input passes through relu layers with zero bias, so the head bias is the output.
  np.testing.assert_allclose(np.asarray(out[0]), bias, rtol=1e-6)


def test_one_train_step_changes_every_parameter():
  x, y = _ziln_data(64, seed=0, n_features=6)
  model = ziln.ZILNModel(6, (8, 4), 0.1, rngs=nnx.Rngs(0), output_bias=ziln.make_output_bias(y))
  optimizer = nnx.Optimizer(model, ziln.make_optimizer(1e-2, 1e-4), wrt=nnx.Param)
  before = {k: np.asarray(v[...]).copy() for k, v in ziln.flat_params(model).items()}
  batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32),
           "w": jnp.ones(64, jnp.float32)}
  loss = ziln.train_step(model, optimizer, batch)
  assert np.isfinite(float(loss))
  after = {k: np.asarray(v[...]) for k, v in ziln.flat_params(model).items()}
  assert set(before) == set(after) and len(before) == 6
  for k in before:
    assert np.all(before[k] != after[k]), f"{k} has entries the step did not change"


def _constant_nll(y_train: np.ndarray, y_test: np.ndarray) -> float:
  bias = ziln.make_output_bias(y_train)
  logits = jnp.broadcast_to(jnp.asarray(bias), (len(y_test), 3))
  return float(ziln.ziln_loss(logits, jnp.asarray(y_test, jnp.float32)))


def test_training_beats_constant_predictor():
  x_tr, y_tr = _ziln_data(1500, seed=1)
  x_va, y_va = _ziln_data(500, seed=2)
  x_te, y_te = _ziln_data(2000, seed=3)
  pred, history = ziln.train_ziln(x_tr, y_tr, x_va, y_va, hidden=(32, 16), epochs=40,
                                  batch_size=256, learning_rate=3e-3, patience=10, seed=0)
  assert list(history.columns) == ["epoch", "train_loss", "val_loss", "seconds", "best"]
  assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
  nll = float(ziln.ziln_loss(jnp.asarray(pred.logits(x_te)), jnp.asarray(y_te, jnp.float32)))
  assert nll < _constant_nll(y_tr, y_te) - 0.2
  out = pred.predict(x_te)
  assert list(out.columns) == ["p_return", "predicted_value", "q10", "q90"]
  assert (out.to_numpy() >= 0).all() and (out["q10"] <= out["q90"]).all()
  # The true expected value is known; the model must rank customers by it.
  p = 1.0 / (1.0 + np.exp(-(1.5 * x_te[:, 0] - 0.3)))
  true_mean = p * np.exp(1.0 + 0.8 * x_te[:, 1] + 0.125)
  assert stats.spearmanr(out["predicted_value"], true_mean).statistic > 0.9
  np.testing.assert_allclose(out["p_return"].mean(), (y_te > 0).mean(), atol=0.05)


def test_training_is_deterministic_and_round_trips(tmp_path):
  x_tr, y_tr = _ziln_data(300, seed=4, n_features=5)
  x_va, y_va = _ziln_data(100, seed=5, n_features=5)
  cols = [f"f{i}" for i in range(5)]
  df_tr = pd.DataFrame(x_tr, columns=cols)
  kw = dict(hidden=(8,), epochs=3, batch_size=64, patience=5)
  a, hist_a = ziln.train_ziln(df_tr, y_tr, x_va, y_va, seed=3, **kw)
  b, hist_b = ziln.train_ziln(df_tr, y_tr, x_va, y_va, seed=3, **kw)
  c, _ = ziln.train_ziln(df_tr, y_tr, x_va, y_va, seed=4, **kw)
  df_va = pd.DataFrame(x_va, columns=cols, index=pd.RangeIndex(100, 200))
  pa, pb, pc = a.predict(df_va), b.predict(df_va), c.predict(df_va)
  pd.testing.assert_frame_equal(pa, pb)
  np.testing.assert_array_equal(hist_a["val_loss"], hist_b["val_loss"])
  assert not np.allclose(pa["predicted_value"], pc["predicted_value"])
  assert list(pa.index) == list(range(100, 200))

  a.save(tmp_path / "m")
  loaded = ziln.ZILNPredictor.load(tmp_path / "m")
  pd.testing.assert_frame_equal(loaded.predict(df_va), pa)
  np.testing.assert_array_equal(loaded.standardiser.mean, a.standardiser.mean)
  with pytest.raises(ValueError, match="differ from the training columns"):
    loaded.predict(df_va.rename(columns={"f0": "other"}))


def test_early_stopping_keeps_best_weights():
  x_tr, y_tr = _ziln_data(200, seed=6, n_features=4)
  x_va, y_va = _ziln_data(100, seed=7, n_features=4)
  pred, history = ziln.train_ziln(x_tr, y_tr, x_va, y_va, hidden=(64, 64), dropout=0.0,
                                  epochs=60, batch_size=32, learning_rate=1e-2, patience=3,
                                  seed=0)
  assert len(history) < 60  # stopped early
  assert history["best"].iloc[-3:].sum() == 0
  restored = float(ziln.ziln_loss(jnp.asarray(pred.logits(x_va)), jnp.asarray(y_va, jnp.float32)))
  np.testing.assert_allclose(restored, history["val_loss"].min(), rtol=1e-5)


def test_average_best_is_the_mean_of_the_best_epochs_weights():
  x_tr, y_tr = _ziln_data(300, seed=4, n_features=5)  # the shapes above: no new compilation
  x_va, y_va = _ziln_data(100, seed=5, n_features=5)
  kw = dict(hidden=(8,), batch_size=64, patience=5, seed=3)
  weights = lambda p: {k: np.asarray(v[...]) for k, v in ziln.flat_params(p.model).items()}
  first, _ = ziln.train_ziln(x_tr, y_tr, x_va, y_va, epochs=1, **kw)
  second, history = ziln.train_ziln(x_tr, y_tr, x_va, y_va, epochs=2, **kw)
  assert history["best"].tolist() == [True, True]  # so `second` holds epoch 2's weights
  mean, _ = ziln.train_ziln(x_tr, y_tr, x_va, y_va, epochs=2, average_best=2, **kw)
  a, b, m = weights(first), weights(second), weights(mean)
  for k in m:
    np.testing.assert_allclose(m[k], (a[k] + b[k]) / 2, rtol=1e-6, atol=1e-7)
  assert not np.allclose(m["head.kernel"], b["head.kernel"])
  with pytest.raises(ValueError, match="bad average_best=0"):
    ziln.train_ziln(x_tr, y_tr, x_va, y_va, average_best=0)


def test_bad_inputs_raise(tmp_path):
  x, y = _ziln_data(50, seed=0, n_features=3)
  with pytest.raises(ValueError, match="must be 2-D"):
    ziln.train_ziln(x[:, 0], y, x, y)
  with pytest.raises(ValueError, match="must be finite and >= 0"):
    ziln.train_ziln(x, -y - 1, x, y)
  with pytest.raises(ValueError, match="X_val has 2 features"):
    ziln.train_ziln(x, y, x[:, :2], y)
  bad = x.copy()
  bad[3, 1] = np.nan
  with pytest.raises(ValueError, match=r"NaN/inf \(first rows: \[3\]\)"):
    ziln.train_ziln(bad, y, x, y)
  with pytest.raises(ValueError, match="bad batch_size=0"):
    ziln.train_ziln(x, y, x, y, batch_size=0)
  with pytest.raises(FileNotFoundError, match="not a saved ZILN model"):
    ziln.ZILNPredictor.load(tmp_path)


def test_standardiser_clips_rows_outside_the_training_range():
  x = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0]])
  st = ziln.fit_standardiser(x)
  far = st.transform(np.array([[1e6, -1e6]]))
  edge = st.transform(np.array([[2.0, 10.0]]))
  np.testing.assert_array_equal(far, edge)
  again = ziln.Standardiser.from_dict(st.to_dict())
  np.testing.assert_array_equal(again.transform(np.array([[1e6, -1e6]])), far)


def test_sigma_cap_limits_the_mean_and_keeps_small_sigmas():
  logits = jnp.array([[3.0, 2.0, 8.0], [3.0, 2.0, -1.0]])  # sigma ~8 and ~0.31
  capped = ziln.ziln_predict(logits, sigma_max=1.5)
  free = ziln.ziln_predict(logits)
  np.testing.assert_allclose(capped["sigma"], [1.5, float(free["sigma"][1])], rtol=1e-5)
  p = 1 / (1 + np.exp(-3.0))
  np.testing.assert_allclose(capped["mean"][0], p * np.exp(2.0 + 1.5 ** 2 / 2), rtol=1e-5)
  np.testing.assert_allclose(capped["mean"][1], free["mean"][1], rtol=1e-6)
  assert ziln.sigma_cap(np.array([0.0, 1.0, np.e, np.e ** 2])) == pytest.approx(
      2 * np.log([1.0, np.e, np.e ** 2]).std())


def test_calibrate_interval_shrinks_an_overwide_spread():
  rng = np.random.default_rng(0)
  n = 4000
  # truth: returns with p = 0.6, log value ~ N(3, 1); the "model" says the right p and mu but
  # twice the spread, so its 80% intervals are far too wide
  y = np.where(rng.random(n) < 0.6, np.exp(rng.normal(3.0, 1.0, n)), 0.0)
  sigma_pre = np.log(np.expm1(2.0))  # inverse softplus of 2
  logits = np.tile(np.array([np.log(0.6 / 0.4), 3.0, sigma_pre], np.float32), (n, 1))
  raw = ziln.ziln_predict(jnp.asarray(logits), (0.1, 0.9))["quantiles"]
  raw = np.asarray(raw)
  assert np.mean((y >= raw[:, 0]) & (y <= raw[:, 1])) > 0.85
  scale, covered = ziln.calibrate_interval(logits, y, 0.8)
  assert covered == pytest.approx(0.8, abs=0.01)
  # Analytically: zeros are all inside [0, q90] (q10 is 0 when p < 0.9), so the positives need
  # coverage (0.8 - 0.4) / 0.6 below q90 = exp(3 + scale * 2 * z), z = ndtri((0.9 - 0.4) / 0.6),
  # while truly log y ~ N(3, 1): scale = ndtri(2 / 3) / (2 z).
  expected = stats.norm.ppf(2 / 3) / (2 * stats.norm.ppf(0.5 / 0.6))
  assert scale == pytest.approx(expected, abs=0.03)
  mean = ziln.ziln_predict(jnp.asarray(logits), (0.1, 0.9), interval_scale=scale)["mean"]
  np.testing.assert_allclose(np.asarray(mean),
                             np.asarray(ziln.ziln_predict(jnp.asarray(logits))["mean"]))


def test_predictor_applies_the_calibration_at_its_level_only():
  rng = np.random.default_rng(1)
  X = rng.normal(size=(600, 3))
  y = np.where(rng.random(600) < 0.5, np.exp(rng.normal(2.0, 0.5, 600) + X[:, 0]), 0.0)
  pred, _ = ziln.train_ziln(X[:500], y[:500], X[500:], y[500:], hidden=(8,), epochs=20,
                            batch_size=64, seed=0, interval=0.8)
  assert pred.config["interval"] == 0.8 and pred.config["interval_scale"] > 0
  assert pred.interval_scale((0.1, 0.9)) == pred.config["interval_scale"]
  assert pred.interval_scale((0.05, 0.95)) == 1.0
  legacy = ziln.ZILNPredictor(pred.model, pred.standardiser,
                              {k: v for k, v in pred.config.items()
                               if not k.startswith("interval")})
  assert legacy.interval_scale((0.1, 0.9)) == 1.0


def test_padded_batches_cover_every_row_once_and_weigh_padding_zero():
  idx, w = ziln.padded_batches(np.random.default_rng(0), 10, 4)
  assert idx.shape == w.shape == (3, 4) and w.dtype == np.float32
  assert sorted(idx[w == 1].tolist()) == list(range(10))
  assert w.sum() == 10 and (idx[w == 0] == 0).all()

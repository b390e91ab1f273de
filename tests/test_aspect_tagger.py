"""The review tagger's pure parts (cvlib.insight.aspect_tagger: the multi-label loss, positive
weights, threshold choice, the inner split) and benchmarks/aspect_tagger.py's paired bootstrap
(tiny inputs, no model)."""


import jax
import jax.numpy as jnp
import numpy as np
import optax

import benchmark_script
from cvlib.insight import aspect_tagger as tagger

at = benchmark_script.load("aspect_tagger")


def test_multilabel_loss_is_weighted_binary_cross_entropy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(4, 3)).astype(np.float32)
  y = (rng.random((4, 3)) < 0.5).astype(np.float32)
  pw = np.array([1.0, 3.0, 0.5], np.float32)
  w = np.array([1.0, 1.0, 1.0, 0.0], np.float32)  # the last row is filler
  got = float(tagger.multilabel_loss(jnp.asarray(z), jnp.asarray(y), jnp.asarray(pw),
                                     jnp.asarray(w)))
  p = 1 / (1 + np.exp(-z.astype(np.float64)))
  per = -(pw * y * np.log(p) + (1 - y) * np.log(1 - p))
  assert np.isclose(got, per[:3].mean(), rtol=1e-5)
  # with unit positive weights it is optax's sigmoid cross-entropy
  ones = jnp.ones(3)
  ref = optax.sigmoid_binary_cross_entropy(jnp.asarray(z[:3]), jnp.asarray(y[:3])).mean()
  assert np.isclose(float(tagger.multilabel_loss(jnp.asarray(z[:3]), jnp.asarray(y[:3]), ones,
                                                 jnp.ones(3))), float(ref), rtol=1e-5)


def test_multilabel_loss_gradient_pushes_positives_up_by_their_weight():
  z = jnp.zeros((2, 2))
  y = jnp.asarray([[1.0, 0.0], [0.0, 0.0]])
  pw = jnp.asarray([4.0, 1.0])
  g = np.asarray(jax.grad(tagger.multilabel_loss)(z, y, pw, jnp.asarray([1.0, 0.0])))
  # d/dz of pw*y*softplus(-z) + (1-y)*softplus(z) at 0, over 1 real row x 2 aspects
  assert np.allclose(g, [[-4.0 * 0.5 / 2, 0.5 / 2], [0.0, 0.0]])


def test_positive_weights_are_clipped_ratios():
  y = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
  w = tagger.positive_weights(y, cap=2.0)
  assert w.tolist() == [2.0, 2.0, 1.0]  # 3/1 capped, no positive -> cap, 1/3 -> at least 1


def test_choose_thresholds_picks_the_best_f1_and_defaults_without_positives():
  scores = np.array([[0.9, 0.2], [0.7, 0.1], [0.3, 0.4], [0.1, 0.3]])
  true = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
  t = tagger.choose_thresholds(scores, true, grid=[0.2, 0.5, 0.8])
  assert t[0] == 0.5  # 0.5 keeps both positives and nothing else; 0.2 adds a false positive
  assert t[1] == 0.5  # no positive: the default
  tied = tagger.choose_thresholds(np.array([[0.9], [0.1]]), np.array([[1], [0]]),
                                  grid=[0.2, 0.4, 0.7, 0.8])
  assert tied[0] == 0.4  # every threshold is perfect: the one nearest 0.5


def test_inner_split_takes_the_share_of_each_source_and_is_seeded():
  sources = ["a"] * 10 + ["b"] * 5
  v = tagger.inner_split(sources, share=0.2, seed=0)
  assert v[:10].sum() == 2 and v[10:].sum() == 1
  assert (v == tagger.inner_split(sources, share=0.2, seed=0)).all()


def test_paired_bootstrap_is_zero_for_the_same_tagger_and_signed_otherwise():
  rng = np.random.default_rng(0)
  true = rng.random((60, 3)) < 0.3
  same = at.paired_bootstrap(true, true, true, n=50)
  assert all(v["diff"] == 0 and v["low"] == 0 and v["high"] == 0 for v in same.values())
  worse = true.copy()
  worse[:30] = False  # drops half the reviews' tags: recall falls, precision stays 1
  out = at.paired_bootstrap(true, worse, true, n=200)
  assert out["recall"]["low"] > 0 and out["f1"]["low"] > 0
  assert out["precision"]["diff"] == 0

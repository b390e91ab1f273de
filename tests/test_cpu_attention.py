"""The fused CPU attention kernel (cvlib/text/native/cpu_attention.cc) against the textbook attention."""

from __future__ import annotations

import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvlib.text import bert, cpu_attention

needs_kernel = pytest.mark.skipif(not cpu_attention.available(),
                                  reason="the CPU attention kernel is not built (no C++ compiler)")


def test_kernel_is_built_where_a_compiler_is():
  """make builds it wherever there is a C++ compiler; CI must not fall back silently."""
  if shutil.which("g++") or shutil.which("c++"):
    assert cpu_attention.available(), f"{cpu_attention.LIBRARY} missing: run make install"


def _inputs(batch, seq, heads, head_dim, seed=0):
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.standard_normal((batch, seq, heads, head_dim)), jnp.float32)
             for _ in range(3))
  lengths = rng.integers(1, seq + 1, batch)
  lengths[0] = seq
  mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
  return q, k, v, bert.make_attention_bias(jnp.asarray(mask))


# (batch, seq, heads, head_dim): whole vectors and not (16 floats), head dims with their own
# code paths (1-4 vectors per row, and more), a single token.
SHAPES = [(4, 9, 2, 4), (3, 40, 2, 16), (2, 33, 3, 20), (2, 128, 12, 32), (2, 50, 2, 64),
          (1, 17, 1, 80), (3, 1, 2, 8)]


@needs_kernel
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_matches_the_reference_with_its_gradients(shape, rate):
  q, k, v, bias = _inputs(*shape)
  seeds = jnp.asarray([12345, 678], jnp.uint32)
  weights = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32)

  def loss(fn, q, k, v):
    return jnp.sum(fn(q, k, v, bias, seeds, rate) * weights)

  got_out = jax.jit(lambda q, k, v: cpu_attention.attention(q, k, v, bias, seeds, rate))(q, k, v)
  want_out = bert.attention_reference(q, k, v, bias, seeds, rate)
  np.testing.assert_allclose(np.asarray(got_out), np.asarray(want_out), atol=2e-6)
  got = jax.jit(jax.grad(functools.partial(loss, cpu_attention.attention),
                         argnums=(0, 1, 2)))(q, k, v)
  want = jax.grad(functools.partial(loss, bert.attention_reference), argnums=(0, 1, 2))(q, k, v)
  for g, w in zip(got, want):
    if shape[1] > 1:
      assert np.abs(np.asarray(w)).max() > 0.1  # not trivially zero
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5)


@needs_kernel
def test_dropout_drops_the_same_probabilities_as_the_xla_version():
  """Values through attention show the mask: with v one-hot per key position, each output
  column is one (dropped or kept) probability."""
  batch, seq, heads = 2, 24, 3
  q, k, _, bias = _inputs(batch, seq, heads, 24, seed=3)
  v = jnp.broadcast_to(jnp.eye(seq, dtype=jnp.float32)[None, :, None, :], (batch, seq, heads, seq))
  seeds = jnp.asarray([7, 8], jnp.uint32)
  got = np.asarray(cpu_attention.attention(q, k, v, bias, seeds, 0.5))
  want = np.asarray(bert.scaled_dot_product_attention(q, k, v, bias, seeds, 0.5))
  np.testing.assert_array_equal(got == 0, want == 0)
  assert 0.3 < (got[np.asarray(bias[:, 0, 0, None, None, :] == 0).repeat(seq, 1)
                    .repeat(heads, 2)] == 0).mean() < 0.7
  np.testing.assert_allclose(got, want, atol=1e-6)


@needs_kernel
def test_fully_masked_rows_attend_uniformly_and_calls_are_deterministic():
  q, k, v, _ = _inputs(2, 20, 2, 16)
  bias = bert.make_attention_bias(jnp.zeros((2, 20), jnp.int32))  # every key masked
  seeds = jnp.asarray([1, 2], jnp.uint32)
  got = np.asarray(cpu_attention.attention(q, k, v, bias, seeds, 0.0))
  np.testing.assert_allclose(got, np.broadcast_to(np.asarray(v).mean(1, keepdims=True), got.shape),
                             atol=1e-5)
  q, k, v, bias = _inputs(8, 64, 4, 32)
  grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(
      cpu_attention.attention(q, k, v, bias, seeds, 0.1) ** 2), argnums=(0, 1, 2)))
  first, second = grad(q, k, v), grad(q, k, v)
  for a, b in zip(first, second):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_kernel
def test_the_model_uses_it_on_one_cpu_device_unless_switched_off(monkeypatch):
  q, _, _, _ = _inputs(2, 8, 2, 8)
  assert cpu_attention.usable(q)
  assert not cpu_attention.usable(q.astype(jnp.bfloat16))
  monkeypatch.setenv("CVLIB_CPU_ATTENTION", "0")
  assert not cpu_attention.usable(q)

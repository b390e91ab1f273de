"""Tests for cvlib.text.bert: shapes, masking, dropout, pooling and the tied masked-LM head."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cvlib.text import bert

CONFIG = bert.BertConfig.tiny(vocab_size=50)


def _inputs(batch=3, seq=7, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, CONFIG.vocab_size, size=(batch, seq)).astype(np.int32)
  lengths = np.array([seq, 4, 2])[:batch]
  mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
  return jnp.asarray(ids * mask), jnp.asarray(mask)


def test_presets():
  minilm = bert.BertConfig.minilm_l6()
  assert (minilm.hidden_size, minilm.num_layers, minilm.num_heads, minilm.intermediate_size,
          minilm.vocab_size, minilm.max_position_embeddings,
          minilm.layer_norm_eps) == (384, 6, 12, 1536, 30522, 512, 1e-12)
  tiny = bert.BertConfig.tiny(vocab_size=99)
  assert tiny.vocab_size == 99 and tiny.hidden_size == 32 and tiny.num_layers == 2


@pytest.mark.parametrize("changes, match", [
    ({"num_heads": 3}, "divisible by num_heads"),
    ({"num_layers": 0}, "num_layers must be a positive int"),
    ({"hidden_dropout": 1.0}, r"hidden_dropout must be in \[0, 1\)"),
    ({"layer_norm_eps": 0.0}, "layer_norm_eps must be > 0"),
])
def test_config_validation(changes, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(CONFIG, **changes)


def test_bert_model_shapes():
  model = bert.BertModel(CONFIG, rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  seq, pooled = model(ids, mask)
  assert seq.shape == (3, 7, 32) and pooled.shape == (3, 32)
  assert np.all(np.abs(np.asarray(pooled)) <= 1.0)  # tanh
  assert np.isfinite(np.asarray(seq)).all()
  _, none = bert.BertModel(CONFIG, rngs=nnx.Rngs(0), add_pooler=False)(ids, mask)
  assert none is None


def test_padding_does_not_change_real_tokens():
  """Extra [PAD] positions behind a sentence must not change its token vectors."""
  model = bert.BertModel(CONFIG, rngs=nnx.Rngs(1))
  ids = jnp.asarray([[5, 9, 13, 2]], jnp.int32)
  short, _ = model(ids, jnp.ones((1, 4), jnp.int32))
  padded_ids = jnp.concatenate([ids, jnp.zeros((1, 5), jnp.int32)], axis=1)
  padded_mask = jnp.asarray([[1] * 4 + [0] * 5], jnp.int32)
  long, _ = model(padded_ids, padded_mask)
  np.testing.assert_allclose(np.asarray(long[:, :4]), np.asarray(short), atol=1e-5)


def test_token_type_ids_default_to_zero():
  model = bert.BertModel(CONFIG, rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  a, _ = model(ids, mask)
  b, _ = model(ids, mask, jnp.zeros_like(ids))
  c, _ = model(ids, mask, jnp.ones_like(ids))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.allclose(np.asarray(a), np.asarray(c))


def test_dropout_switch():
  model = bert.BertForSequenceClassification(CONFIG, 3, rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  eval1, eval2 = model(ids, mask), model(ids, mask, deterministic=True)
  np.testing.assert_array_equal(np.asarray(eval1), np.asarray(eval2))
  train1 = model(ids, mask, deterministic=False)
  train2 = model(ids, mask, deterministic=False)
  assert not np.allclose(np.asarray(train1), np.asarray(eval1))
  assert not np.allclose(np.asarray(train1), np.asarray(train2))  # fresh masks each call


def test_mean_pool_matches_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 5, 4)).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], np.int32)
  got = np.asarray(bert.mean_pool(jnp.asarray(x), jnp.asarray(mask)))
  np.testing.assert_allclose(got[0], x[0, :3].mean(0), rtol=1e-6)
  np.testing.assert_allclose(got[1], x[1].mean(0), rtol=1e-6)
  np.testing.assert_array_equal(got[2], 0.0)  # all padding: zeros, not NaN
  normed = np.asarray(bert.l2_normalize(jnp.asarray(got)))
  np.testing.assert_allclose(np.linalg.norm(normed[:2], axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(normed[2], 0.0)


def test_classifier_shapes_and_pooling():
  ids, mask = _inputs()
  mean_model = bert.BertForSequenceClassification(CONFIG, 3, rngs=nnx.Rngs(0))
  assert mean_model(ids, mask).shape == (3, 3)
  assert mean_model.bert.pooler is None  # no dead parameters when mean-pooling
  cls_model = bert.BertForSequenceClassification(CONFIG, 2, rngs=nnx.Rngs(0), pooling="cls")
  assert cls_model(ids, mask).shape == (3, 2) and cls_model.bert.pooler is not None
  with pytest.raises(ValueError, match="pooling must be one of"):
    bert.BertForSequenceClassification(CONFIG, 2, rngs=nnx.Rngs(0), pooling="max")
  with pytest.raises(ValueError, match="num_labels must be an int >= 2"):
    bert.BertForSequenceClassification(CONFIG, 1, rngs=nnx.Rngs(0))


def test_classifier_logits_are_linear_in_mean_pooled_vector():
  model = bert.BertForSequenceClassification(CONFIG, 2, rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  seq, _ = model.bert(ids, mask)
  pooled = np.asarray(seq * mask[..., None]).sum(1) / np.asarray(mask).sum(1, keepdims=True)
  expected = pooled @ np.asarray(model.classifier.kernel[...]) + np.asarray(
      model.classifier.bias[...])
  np.testing.assert_allclose(np.asarray(model(ids, mask)), expected, rtol=1e-5, atol=1e-6)


def test_masked_lm_decoder_is_tied():
  model = bert.BertForMaskedLM(CONFIG, rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  logits = model(ids, mask)
  assert logits.shape == (3, 7, CONFIG.vocab_size)
  names = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert "bias" in names and not any("decoder" in n for n in names)
  # Logits are the transformed states times the word-embedding table, plus the bias.
  seq, _ = model.bert(ids, mask)
  h = np.asarray(model.transform(seq))
  table = np.asarray(model.bert.embeddings.word_embeddings.embedding[...])
  np.testing.assert_allclose(np.asarray(logits), h @ table.T, rtol=1e-4, atol=1e-5)


def test_jit_matches_eager():
  model = bert.BertModel(CONFIG, rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  eager, _ = model(ids, mask)
  jitted, _ = nnx.jit(lambda m, i, a: m(i, a))(model, ids, mask)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5)
  assert jax.tree.leaves(nnx.state(model, nnx.Param))  # still a live module


# ----------------------------------------------------------------------------------------------
# Dropout masks, compute dtype, presets


def test_hash_dropout_keep_rate_and_independence():
  key = jax.random.key(0)
  keep = np.asarray(bert.dropout_keep_mask(key, (64, 12, 32, 32), 0.1))
  assert abs(keep.mean() - 0.9) < 0.002
  # No structure along any axis: every row and column keeps ~90%.
  assert np.abs(keep.mean(axis=(0, 1, 2)) - 0.9).max() < 0.02
  assert np.abs(keep.mean(axis=(1, 2, 3)) - 0.9).max() < 0.03
  other = np.asarray(bert.dropout_keep_mask(jax.random.key(1), (64, 12, 32, 32), 0.1))
  both = np.mean(~keep & ~other)
  assert abs(both - 0.01) < 0.001  # two keys drop independently (0.1 x 0.1)
  np.testing.assert_array_equal(keep, np.asarray(bert.dropout_keep_mask(key, keep.shape, 0.1)))
  assert np.asarray(bert.dropout_keep_mask(key, (1000,), 0.0)).all()


def test_dropout_scales_kept_values_and_follows_the_seed():
  layer = bert.Dropout(0.25, rngs=nnx.Rngs(dropout=3))
  x = jnp.ones((200, 50))
  y = np.asarray(layer(x, deterministic=False))
  np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-6)
  assert abs((y == 0).mean() - 0.25) < 0.01
  assert not np.array_equal(y, np.asarray(layer(x, deterministic=False)))  # a new mask per call
  again = bert.Dropout(0.25, rngs=nnx.Rngs(dropout=3))
  np.testing.assert_array_equal(y, np.asarray(again(x, deterministic=False)))
  np.testing.assert_array_equal(np.asarray(layer(x, deterministic=True)), np.asarray(x))


def _qkv_bias(batch=4, seq=9, heads=2, head_dim=4, seed=0):
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.standard_normal((batch, seq, heads, head_dim)), jnp.float32)
             for _ in range(3))
  lengths = np.array([seq, 5, 1, 7])[:batch]
  mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
  return q, k, v, bert.make_attention_bias(jnp.asarray(mask))


@pytest.mark.parametrize("rate", [0.0, 0.3])
@pytest.mark.parametrize("block", [None, 1, 2, 4])
def test_attention_matches_the_reference_with_its_gradients(rate, block):
  q, k, v, bias = _qkv_bias()
  seeds = jnp.asarray([12345, 678], jnp.uint32)
  weights = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32)

  def loss(fn, q, k, v):
    return jnp.sum(fn(q, k, v, bias, seeds, rate) * weights)

  fast = functools.partial(bert.scaled_dot_product_attention, block=block)
  np.testing.assert_allclose(np.asarray(fast(q, k, v, bias, seeds, rate)),
                             np.asarray(bert.attention_reference(q, k, v, bias, seeds, rate)),
                             atol=1e-6)
  got = jax.jit(jax.grad(functools.partial(loss, fast), argnums=(0, 1, 2)))(q, k, v)
  want = jax.grad(functools.partial(loss, bert.attention_reference), argnums=(0, 1, 2))(q, k, v)
  for g, w in zip(got, want):
    assert np.abs(np.asarray(w)).max() > 0.1  # not trivially zero
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5)


def test_attention_dropout_mask_is_the_full_arrays_and_blocks_must_divide():
  q, k, v, bias = _qkv_bias()
  seeds = jnp.asarray([7, 8], jnp.uint32)
  # Values through identity-like attention show the mask: each block uses the full array's mask,
  # so every block size gives the same output.
  outs = [np.asarray(bert.scaled_dot_product_attention(q, k, v, bias, seeds, 0.5, block=b))
          for b in (1, 2, 4)]
  np.testing.assert_array_equal(outs[0], outs[1])
  np.testing.assert_array_equal(outs[0], outs[2])
  with pytest.raises(ValueError, match="does not divide the batch 4"):
    bert.scaled_dot_product_attention(q, k, v, bias, seeds, 0.0, block=3)
  # CPU: as many whole sequences as fit in 4 MiB of scores, dividing the batch.
  assert [bert._attention_block_size(b, 12, 128) for b in (1, 6, 7, 32)] == [1, 3, 1, 4]
  assert bert._attention_block_size(32, 12, 64) == 16
  assert bert._attention_block_size(32, 12, 32) == 32
  assert bert._attention_block_size(3, 12, 512) == 1


def test_attention_dropout_is_the_layers_mask():
  """The attention layer draws its seeds as dropout_keep_mask does, so a model's dropout is the
  hash mask of the probabilities' shape, whatever the blocking."""
  q, k, v, bias = _qkv_bias()
  key = jax.random.key(5)
  seeds = jax.random.bits(key, (2,), jnp.uint32)
  keep = bert.dropout_keep_mask(key, (4, 2, 9, 9), 0.2)
  np.testing.assert_array_equal(np.asarray(keep), np.asarray(bert._keep_mask(seeds, keep.shape, 0.2)))


def test_bfloat16_compute_is_close_to_float32():
  config32 = dataclasses.replace(CONFIG, num_layers=1)
  config16 = dataclasses.replace(config32, dtype="bfloat16")
  m32 = bert.BertForSequenceClassification(config32, 2, rngs=nnx.Rngs(0))
  m16 = bert.BertForSequenceClassification(config16, 2, rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  seq16, _ = m16.bert(ids, mask)
  assert seq16.dtype == jnp.bfloat16
  assert m16.classifier.kernel[...].dtype == jnp.float32  # parameters stay float32
  logits16, logits32 = m16(ids, mask), m32(ids, mask)
  assert logits16.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(logits16), np.asarray(logits32), atol=0.05)
  seq32, _ = m32.bert(ids, mask)
  np.testing.assert_allclose(np.asarray(seq16, np.float32), np.asarray(seq32), atol=0.1)
  mlm16 = bert.BertForMaskedLM(config16, rngs=nnx.Rngs(0))
  assert mlm16(ids, mask).dtype == jnp.float32


@pytest.mark.parametrize("changes, match", [
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"attention": "flash"}, "attention must be one of"),
    ({"attention": "cudnn"}, "needs dtype='bfloat16'"),
])
def test_config_dtype_and_attention_validation(changes, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(CONFIG, **changes)


def test_small_and_base_presets():
  small = bert.BertConfig.small(vocab_size=1000)
  assert (small.num_layers, small.hidden_size, small.num_heads, small.intermediate_size,
          small.max_position_embeddings) == (4, 256, 4, 1024, 128)
  base = bert.BertConfig.bert_base()
  assert (base.num_layers, base.hidden_size, base.intermediate_size) == (12, 768, 3072)


def test_gelu_matches_jax_exact_gelu_in_float32(monkeypatch):
  x = jnp.linspace(-12.0, 12.0, 24001, dtype=jnp.float32)
  erfc_form = jax.nn.gelu(x, approximate=False)  # x / 2 * erfc(-x / sqrt(2))
  # 1 + erf(x / sqrt(2)) cancels below x = -3 (as in PyTorch's formula): absolute error under
  # 1e-6 there, about one float32 ulp of x; seen 7.4e-7.
  np.testing.assert_allclose(bert.gelu(x), erfc_form, rtol=1e-6, atol=1e-6)
  ids, mask = _inputs()
  one_layer = dataclasses.replace(CONFIG, num_layers=1)
  model = bert.BertForSequenceClassification(one_layer, 3, rngs=nnx.Rngs(0))
  got = jax.jit(lambda m, i, a: m(i, a))(model, ids, mask)
  monkeypatch.setattr(bert, "gelu", functools.partial(jax.nn.gelu, approximate=False))
  np.testing.assert_allclose(got, jax.jit(lambda m, i, a: m(i, a))(model, ids, mask), atol=1e-6)

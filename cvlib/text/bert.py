"""BERT encoder in flax.nnx (post-LayerNorm, like Hugging Face ``BertModel``).

Attribute names follow the Hugging Face checkpoint names so the key table in
``cvlib.text.checkpoint`` reads almost as an identity map: ``embeddings.word_embeddings``,
``encoder.layer[i].attention.self_attn.query``, ``...attention.output.dense``,
``...intermediate.dense``, ``...output.LayerNorm``, ``pooler.dense``. The differences are nnx's
own parameter names (``kernel`` for ``weight`` of a Linear, stored transposed; ``embedding`` for an
Embed's ``weight``; ``scale`` for a LayerNorm's ``weight``) and ``self_attn`` for HF's ``self``.

Speed notes (2 CPU cores, MiniLM, batch 32 x 128 tokens; see benchmarks/encoder.py): dropout
masks come from a counter-based integer hash instead of threefry, whose bits for the
attention-probability masks alone took ~0.7 s of a ~3 s training forward pass (forward with
dropout is now no slower than without); attention contracted the [batch, seq, heads, head_dim]
projections with einsums instead of transposing the heads first, letting XLA choose the layouts.
The two changes took the 32 x 128 training step from 8.9 s to 3.9 s (single runs, at different
moments on a shared, loaded machine). Attention now has a hand-written backward pass that
recomputes the probabilities a few sequences at a time (``scaled_dot_product_attention``): 4%
off the 32 x 128 step. Tried without gain: one fused QKV projection; XLA flags
(fast math, oneDNN); YNNPACK fusions off for training (they are off for inference, see
``devices.inference_jit``).
Parameters are always float32; ``BertConfig.dtype="bfloat16"`` computes activations in bfloat16
(GPUs), with LayerNorm statistics, softmax and the losses in float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from cvlib.text import cpu_attention, hostmem

hostmem.keep_freed_memory()  # before XLA's threads first allocate; see cvlib.text.hostmem

# HF BERT initialises every Linear and Embed from N(0, 0.02).
_INIT = nnx.initializers.normal(stddev=0.02)
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_ATTENTIONS = ("xla", "cudnn")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Shape and regularisation of a BERT encoder.

  Attributes:
    vocab_size: number of WordPiece ids.
    hidden_size: width of every token vector.
    num_layers: number of transformer layers.
    num_heads: attention heads; must divide hidden_size.
    intermediate_size: width of the feed-forward block.
    max_position_embeddings: longest sequence the position table covers.
    type_vocab_size: number of segment (token type) ids.
    hidden_dropout: dropout rate on embeddings and block outputs.
    attention_dropout: dropout rate on attention probabilities.
    layer_norm_eps: LayerNorm epsilon (HF BERT: 1e-12).
    dtype: compute dtype of activations, "float32" or "bfloat16" (parameters stay float32).
    attention: "xla" (any device, supports attention dropout; on one CPU device in float32 the
      fused kernel of ``cpu_attention`` when it is built, else einsums) or "cudnn" (fused
      ``jax.nn.dot_product_attention`` on NVIDIA GPUs, bfloat16 only; attention dropout is not
      applied in that kernel, so set attention_dropout to 0 with it).
  """

  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  layer_norm_eps: float = 1e-12
  dtype: str = "float32"
  attention: str = "xla"

  def __post_init__(self):
    for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size"):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f"BertConfig.{name} must be a positive int, got {value!r}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                       f"num_heads ({self.num_heads})")
    for name in ("hidden_dropout", "attention_dropout"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ValueError(f"BertConfig.{name} must be in [0, 1), got {value!r}")
    if not self.layer_norm_eps > 0:
      raise ValueError(f"BertConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
    if self.dtype not in _DTYPES:
      raise ValueError(f"BertConfig.dtype must be one of {tuple(_DTYPES)}, got {self.dtype!r}")
    if self.attention not in _ATTENTIONS:
      raise ValueError(f"BertConfig.attention must be one of {_ATTENTIONS}, got "
                       f"{self.attention!r}")
    if self.attention == "cudnn" and self.dtype != "bfloat16":
      raise ValueError("BertConfig.attention='cudnn' needs dtype='bfloat16' (cuDNN's fused "
                       f"attention has no float32 kernel), got dtype={self.dtype!r}")

  @classmethod
  def minilm_l6(cls) -> BertConfig:
    """The shape of sentence-transformers/all-MiniLM-L6-v2."""
    return cls()

  @classmethod
  def tiny(cls, vocab_size: int = 128) -> BertConfig:
    """A 2-layer, 32-wide encoder for fast unit tests."""
    return cls(vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=2,
               intermediate_size=64, max_position_embeddings=128)

  @classmethod
  def small(cls, vocab_size: int = 16000, *, num_layers: int = 4, hidden_size: int = 256,
            num_heads: int = 4, intermediate_size: int = 1024,
            max_position_embeddings: int = 128) -> BertConfig:
    """A small encoder (default 4 x 256, 4 heads, 128 positions) to pretrain from scratch.

    About 4.2M encoder parameters plus vocab_size x 256 embeddings: pretrainable with MLM on a
    few tens of thousands of reviews on a CPU, for languages MiniLM's vocabulary does not cover.
    """
    return cls(vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
               num_heads=num_heads, intermediate_size=intermediate_size,
               max_position_embeddings=max_position_embeddings)

  @classmethod
  def bert_base(cls, vocab_size: int = 30522) -> BertConfig:
    """The shape of BERT-base (12 x 768, 12 heads, 3072 intermediate): benchmarks on GPUs."""
    return cls(vocab_size=vocab_size, hidden_size=768, num_layers=12, num_heads=12,
               intermediate_size=3072)

  @property
  def compute_dtype(self) -> Any:
    """The jnp dtype of activations."""
    return _DTYPES[self.dtype]

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _linear(in_features: int, out_features: int, rngs: nnx.Rngs,
            dtype: Any = jnp.float32) -> nnx.Linear:
  return nnx.Linear(in_features, out_features, kernel_init=_INIT, dtype=dtype,
                    param_dtype=jnp.float32, rngs=rngs)


def _layer_norm(config: BertConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
  # use_fast_variance=False computes mean((x - mean)^2) like torch, not E[x^2] - E[x]^2, which
  # loses digits and would spoil the match with the reference implementation. Flax computes the
  # statistics in float32 even when dtype is bfloat16.
  return nnx.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps,
                       use_fast_variance=False, dtype=config.compute_dtype,
                       param_dtype=jnp.float32, rngs=rngs)


def gelu(x: jax.Array) -> jax.Array:
  """Exact (erf) GELU, ``x / 2 * (1 + erf(x / sqrt(2)))``: HF's ``"gelu"`` and PyTorch's formula.

  ``jax.nn.gelu(x, approximate=False)`` computes the same function as
  ``x / 2 * erfc(-x / sqrt(2))``; XLA:CPU's float32 erfc is a longer polynomial with an exp, its
  erf a short rational one, and MiniLM inference used 2-8% less CPU time with erf over interleaved
  A/B runs in one process (the recorded one: ``benchmarks/results/encoder_levers_ab.json``, lever
  ``gelu_erfc``). Both are float32-accurate: logits agree to about 1e-7.
  """
  return x * (0.5 * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0)))))


def _fmix32(h: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser: a cheap bijection with full avalanche."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def dropout_keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
  """A boolean keep-mask, True with probability 1 - rate, from a counter-based hash.

  Each element's bits are two rounds of MurmurHash3's finaliser over its flat index, keyed by
  two 32-bit words drawn from ``key``. XLA fuses this into the consumer, so it costs one pass of
  integer arithmetic; ``jax.random.bernoulli`` (threefry) costs about 10x more on CPU, which made
  dropout a third of a MiniLM training step. Statistically plenty for dropout (not for crypto);
  deterministic for a key, and independent of how the array is sharded.

  Args:
    key: a JAX PRNG key.
    shape: the mask shape; at most 2**32 elements.
    rate: drop probability in [0, 1).

  Returns:
    bool array of the given shape.
  """
  return _keep_mask(jax.random.bits(key, (2,), jnp.uint32), shape, rate)


def _keep_mask(seeds: jax.Array, shape: tuple[int, ...], rate: float,
               offset: jax.Array | int = 0) -> jax.Array:
  """``dropout_keep_mask`` from its two seed words; ``offset`` shifts the flat index, so a block
  of a larger array (rows ``offset // row_size`` on) gets that array's mask values."""
  index = jnp.zeros(shape, jnp.uint32) + jnp.asarray(offset, jnp.uint32)
  stride = 1
  for axis in reversed(range(len(shape))):  # the row-major flat index, built from iotas
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
    stride *= shape[axis]
  h = _fmix32(index * jnp.uint32(0x9E3779B9) + seeds[0])
  h = _fmix32(h ^ seeds[1])
  return h >= jnp.uint32(min(int(rate * 2.0**32), 2**32 - 1))


class Dropout(nnx.Module):
  """Inverted dropout (like ``nnx.Dropout``) with hash-based masks; see ``dropout_keep_mask``.

  The randomness comes from the "dropout" stream of the Rngs given at construction (falling back
  to "default"), forked as nnx.Dropout does, so ``nnx.reseed`` reseeds it.
  """

  def __init__(self, rate: float, *, rngs: nnx.Rngs):
    self.rate = rate
    self.rngs = rngs["dropout"].fork()

  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    keep = dropout_keep_mask(self.rngs(), x.shape, self.rate)
    return jnp.where(keep, x / jnp.asarray(1.0 - self.rate, x.dtype), jnp.zeros((), x.dtype))


class BertEmbeddings(nnx.Module):
  """Word + position + token-type embeddings, then LayerNorm and dropout."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    embed = functools.partial(nnx.Embed, embedding_init=_INIT, dtype=config.compute_dtype,
                              param_dtype=jnp.float32, rngs=rngs)
    self.word_embeddings = embed(config.vocab_size, config.hidden_size)
    self.position_embeddings = embed(config.max_position_embeddings, config.hidden_size)
    self.token_type_embeddings = embed(config.type_vocab_size, config.hidden_size)
    self.LayerNorm = _layer_norm(config, rngs)
    self.dropout = Dropout(config.hidden_dropout, rngs=rngs)

  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array, *,
               deterministic: bool) -> jax.Array:
    # Looked up in the float32 tables, summed, then cast to the compute dtype. nnx.Embed casts
    # the table first, so its gradient is a bfloat16 scatter-add, and XLA's GPU scatter of a
    # [batch * seq] update into one table row (every token type is 0, every row has position 0)
    # serialises: it took most of a bfloat16 training step on an H200. Here the positions are a
    # slice (its gradient is a pad) and the few token types a select (a sum), so the only
    # scatter left is the word table's, in float32. Same values as the casting lookups in
    # float32; in bfloat16 the three are summed before rounding instead of after.
    table = self.token_type_embeddings.embedding[...]  # [types, hidden]
    types = jnp.zeros((), table.dtype)
    for t in range(table.shape[0]):
      types = types + jnp.where((token_type_ids == t)[..., None], table[t], 0.0)
    seq = input_ids.shape[1]
    x = (jnp.take(self.word_embeddings.embedding[...], input_ids, axis=0)
         + self.position_embeddings.embedding[...][None, :seq] + types)  # [batch, seq, hidden]
    x = x.astype(self.word_embeddings.dtype or x.dtype)
    return self.dropout(self.LayerNorm(x), deterministic=deterministic)


class BertSelfAttention(nnx.Module):
  """Multi-head scaled dot-product attention over the unmasked tokens.

  Heads stay on the [batch, seq, heads, head_dim] layout (a free reshape of the projections);
  the einsums contract over it directly, so XLA needs no transposes in the forward or backward
  pass (each ``transpose(0, 2, 1, 3)`` was a full copy of the activations).
  """

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.num_heads = config.num_heads
    self.head_dim = config.hidden_size // config.num_heads
    self.attention = config.attention
    dtype = config.compute_dtype
    self.query = _linear(config.hidden_size, config.hidden_size, rngs, dtype)
    self.key = _linear(config.hidden_size, config.hidden_size, rngs, dtype)
    self.value = _linear(config.hidden_size, config.hidden_size, rngs, dtype)
    self.dropout = Dropout(config.attention_dropout, rngs=rngs)

  def __call__(self, x: jax.Array, mask_bias: jax.Array, *, deterministic: bool) -> jax.Array:
    batch, seq, hidden = x.shape
    split = (batch, seq, self.num_heads, self.head_dim)
    q = self.query(x).reshape(split)  # [batch, seq, heads, head_dim]
    k = self.key(x).reshape(split)
    v = self.value(x).reshape(split)
    if self.attention == "cudnn":
      # Fused kernel. cuDNN takes no [batch, 1, 1, seq] bias; padding goes in as key lengths,
      # which is exact because batches are right-padded (real tokens first, then padding).
      lengths = jnp.sum(mask_bias[:, 0, 0, :] == 0, axis=-1).astype(jnp.int32)  # [batch]
      context = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths,
                                             implementation="cudnn")
      return context.reshape(batch, seq, hidden)
    rate = 0.0 if deterministic else self.dropout.rate
    seeds = (jax.random.bits(self.dropout.rngs(), (2,), jnp.uint32) if rate
             else jnp.zeros((2,), jnp.uint32))
    context = attention(q, k, v, mask_bias, seeds, rate)
    return context.reshape(batch, seq, hidden)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask_bias: jax.Array, seeds: jax.Array,
              rate: float) -> jax.Array:
  """What ``BertSelfAttention`` computes with ``attention="xla"``: the fused CPU kernel
  (``cpu_attention``) where it can run, else ``scaled_dot_product_attention``; same arguments and
  results (same dropout mask), up to float rounding."""
  if cpu_attention.usable(q):
    return cpu_attention.attention(q, k, v, mask_bias, seeds, rate)
  return scaled_dot_product_attention(q, k, v, mask_bias, seeds, rate)


def attention_reference(q: jax.Array, k: jax.Array, v: jax.Array, mask_bias: jax.Array,
                        seeds: jax.Array, rate: float) -> jax.Array:
  """Attention as the textbook writes it, differentiated by JAX: the check for
  ``scaled_dot_product_attention`` (same arguments, same dropout mask)."""
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
  probs = jax.nn.softmax(scores * (1.0 / math.sqrt(q.shape[-1])) + mask_bias, axis=-1)
  if rate:
    probs = _dropped(probs, _keep_mask(seeds, probs.shape, rate), rate)
  return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)


def _dropped(x: jax.Array, keep: jax.Array, rate: float) -> jax.Array:
  """Inverted dropout with a given keep-mask (the forward pass and its gradient alike)."""
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def _attention_block_size(batch: int, heads: int, seq: int) -> int:
  """Sequences per attention block: on CPUs the largest divisor of the batch whose float32
  [block, heads, seq, seq] scores fit in ``_CPU_ATTENTION_BLOCK_BYTES`` (they then stay in cache
  through the softmax and its gradient; 4 sequences of MiniLM at 128 tokens, the whole batch at
  32 tokens); elsewhere the whole batch (a sequential loop would only serialise a GPU)."""
  if jax.default_backend() != "cpu":
    return batch
  fits = max(1, _CPU_ATTENTION_BLOCK_BYTES // (4 * heads * seq * seq))
  return max(d for d in range(1, min(batch, fits) + 1) if batch % d == 0)


# Measured on 2 CPU cores at MiniLM's [*, 12, 128, 128]: blocks of 2-4 sequences (1.5-3 MiB)
# fastest, 8 slower, the whole batch of 32 slowest.
_CPU_ATTENTION_BLOCK_BYTES = 4 * 2**20


def scaled_dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask_bias: jax.Array,
                                 seeds: jax.Array, rate: float,
                                 block: int | None = None) -> jax.Array:
  """softmax(q k^T / sqrt(d) + bias) v with dropout on the probabilities, and a hand-written
  backward pass.

  The backward pass recomputes the probabilities from q and k instead of keeping them (as
  FlashAttention does): nothing of size [batch, heads, seq, seq] is saved between the passes (25
  MB per layer for MiniLM at 32 x 128 in float32),
  and with ``delta = rowsum(dO * O)`` the softmax gradient needs no extra pass over the
  probabilities. The batch is processed ``block`` sequences at a time (``lax.map``), so on CPUs
  each block's scores, probabilities and their gradients stay in cache rather than making several
  trips through memory; the dropout mask of a block is the one ``dropout_keep_mask`` draws for the
  whole [batch, heads, seq, seq] array, regenerated in the backward pass from its two seed words.
  On 2 CPU cores the MiniLM training step at 32 x 128 runs 4% faster than with the plain version
  (``attention_reference``; 16.5 against 15.8 seq/s, the two compiled side by side and timed in
  turns by benchmarks/code_ab.py --change attention), the same at 32 tokens and for inference.
  The bias is a constant (padding): no gradient flows into it.

  Args:
    q, k, v: [batch, seq, heads, head_dim] in the compute dtype.
    mask_bias: additive bias broadcastable to [batch, 1, 1, seq] (``make_attention_bias``).
    seeds: uint32 [2], the dropout mask's seed words (``jax.random.bits(key, (2,), uint32)``).
    rate: attention dropout rate (0: none).
    block: sequences per block; None chooses (``_attention_block_size``).

  Returns:
    [batch, seq, heads, head_dim] in v's dtype.
  """
  batch, seq, heads, head_dim = q.shape
  block = _attention_block_size(batch, heads, seq) if block is None else block
  if batch % block:
    raise ValueError(f"attention block {block} does not divide the batch {batch}")
  blocks = batch // block
  scale = 1.0 / math.sqrt(head_dim)
  block_elements = block * heads * seq * seq
  bias = jnp.broadcast_to(jax.lax.stop_gradient(mask_bias), (batch, 1, 1, seq))
  heads_first = functools.partial(jnp.transpose, axes=(0, 2, 1, 3))  # [b, s, h, d] <-> [b, h, s, d]

  def probabilities(qb, kb, bias_b):
    scores = jnp.einsum("bhqd,bhkd->bhqk", qb, kb, preferred_element_type=jnp.float32)
    return jax.nn.softmax(scores * scale + bias_b, axis=-1)  # float32

  def keep_mask(i):
    return _keep_mask(seeds, (block, heads, seq, seq), rate, offset=i * block_elements)

  def forward_block(xs):
    i, qb, kb, vb, bias_b = xs
    probs = probabilities(heads_first(qb), heads_first(kb), bias_b)
    if rate:
      probs = _dropped(probs, keep_mask(i), rate)
    return heads_first(jnp.einsum("bhqk,bhkd->bhqd", probs.astype(vb.dtype), heads_first(vb)))

  def backward_block(xs):
    i, qb, kb, vb, bias_b, ob, dob = xs
    qb, kb, vb, ob, dob = map(heads_first, (qb, kb, vb, ob, dob))
    probs = probabilities(qb, kb, bias_b)
    delta = jnp.sum(dob.astype(jnp.float32) * ob.astype(jnp.float32), axis=-1)  # [b, h, q]
    d_dropped = jnp.einsum("bhqd,bhkd->bhqk", dob, vb, preferred_element_type=jnp.float32)
    if rate:
      keep = keep_mask(i)
      dropped, d_probs = _dropped(probs, keep, rate), _dropped(d_dropped, keep, rate)
    else:
      dropped, d_probs = probs, d_dropped
    dv = jnp.einsum("bhqk,bhqd->bhkd", dropped.astype(vb.dtype), dob)
    d_scores = (probs * (d_probs - delta[..., None]) * scale).astype(qb.dtype)
    dq = jnp.einsum("bhqk,bhkd->bhqd", d_scores, kb)
    dk = jnp.einsum("bhqk,bhqd->bhkd", d_scores, qb)
    return heads_first(dq), heads_first(dk), heads_first(dv)

  def blocked(x):
    return x.reshape((blocks, block) + x.shape[1:])

  def unblocked(x):
    return x.reshape((batch,) + x.shape[2:])

  index = jnp.arange(blocks, dtype=jnp.uint32)

  @jax.custom_vjp
  def attend(q, k, v):
    return unblocked(jax.lax.map(forward_block, (index, *map(blocked, (q, k, v, bias)))))

  def attend_forward(q, k, v):
    out = attend(q, k, v)
    return out, (q, k, v, out)

  def attend_backward(saved, d_out):
    q, k, v, out = saved
    grads = jax.lax.map(backward_block,
                        (index, *map(blocked, (q, k, v, bias, out, d_out.astype(out.dtype)))))
    return tuple(unblocked(g) for g in grads)

  attend.defvjp(attend_forward, attend_backward)
  return attend(q, k, v)


class BertSelfOutput(nnx.Module):
  """Projection after a sub-block, dropout, residual, then LayerNorm (post-LN)."""

  def __init__(self, config: BertConfig, in_features: int, *, rngs: nnx.Rngs):
    self.dense = _linear(in_features, config.hidden_size, rngs, config.compute_dtype)
    self.LayerNorm = _layer_norm(config, rngs)
    self.dropout = Dropout(config.hidden_dropout, rngs=rngs)

  def __call__(self, x: jax.Array, residual: jax.Array, *, deterministic: bool) -> jax.Array:
    return self.LayerNorm(self.dropout(self.dense(x), deterministic=deterministic) + residual)


class BertAttention(nnx.Module):
  """HF ``BertAttention``: self-attention (``self`` there, ``self_attn`` here) plus its output."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.self_attn = BertSelfAttention(config, rngs=rngs)
    self.output = BertSelfOutput(config, config.hidden_size, rngs=rngs)

  def __call__(self, x: jax.Array, mask_bias: jax.Array, *, deterministic: bool) -> jax.Array:
    context = self.self_attn(x, mask_bias, deterministic=deterministic)
    return self.output(context, x, deterministic=deterministic)


class BertIntermediate(nnx.Module):
  """The first half of the feed-forward block (exact erf GELU, as HF's ``"gelu"``)."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.dense = _linear(config.hidden_size, config.intermediate_size, rngs, config.compute_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    return gelu(self.dense(x))


class BertLayer(nnx.Module):
  """One transformer layer: attention block then feed-forward block, each post-LN."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.attention = BertAttention(config, rngs=rngs)
    self.intermediate = BertIntermediate(config, rngs=rngs)
    self.output = BertSelfOutput(config, config.intermediate_size, rngs=rngs)

  def __call__(self, x: jax.Array, mask_bias: jax.Array, *, deterministic: bool) -> jax.Array:
    attended = self.attention(x, mask_bias, deterministic=deterministic)
    return self.output(self.intermediate(attended), attended, deterministic=deterministic)


class BertEncoder(nnx.Module):
  """A stack of ``num_layers`` BertLayers."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.layer = nnx.List([BertLayer(config, rngs=rngs) for _ in range(config.num_layers)])

  def __call__(self, x: jax.Array, mask_bias: jax.Array, *, deterministic: bool) -> jax.Array:
    for layer in self.layer:
      x = layer(x, mask_bias, deterministic=deterministic)
    return x


class BertPooler(nnx.Module):
  """Dense + tanh on the [CLS] vector (BERT's next-sentence head input)."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.dense = _linear(config.hidden_size, config.hidden_size, rngs)

  def __call__(self, sequence_output: jax.Array) -> jax.Array:
    return jnp.tanh(self.dense(sequence_output[:, 0].astype(jnp.float32)))


def make_attention_bias(attention_mask: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
  """Turns a [batch, seq] 0/1 mask into an additive [batch, 1, 1, seq] attention bias.

  Masked keys get the dtype's most negative finite value (as HF does) rather than -inf, so a row
  whose keys are all masked gives a uniform softmax instead of NaN.
  """
  mask = attention_mask[:, None, None, :].astype(dtype)
  return (1.0 - mask) * jnp.finfo(dtype).min


class BertModel(nnx.Module):
  """The BERT encoder: embeddings, ``num_layers`` layers and (optionally) the pooler.

  Args:
    config: the encoder shape.
    rngs: parameter initialisation and dropout randomness.
    add_pooler: build the dense+tanh [CLS] pooler. Heads that do not use it (mean-pooled
      classification, masked LM) leave it out so that no parameter is dead during training.
  """

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs, add_pooler: bool = True):
    self.config = config
    self.embeddings = BertEmbeddings(config, rngs=rngs)
    self.encoder = BertEncoder(config, rngs=rngs)
    self.pooler = BertPooler(config, rngs=rngs) if add_pooler else None

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               deterministic: bool = True) -> tuple[jax.Array, jax.Array | None]:
    """Encodes a batch of token ids.

    Args:
      input_ids: [batch, seq] int ids.
      attention_mask: [batch, seq], 1 for real tokens, 0 for padding.
      token_type_ids: [batch, seq] segment ids; zeros when None.
      deterministic: True switches dropout off (inference).

    Returns:
      (sequence_output [batch, seq, hidden] in the compute dtype, pooled_output [batch, hidden]
      float32); pooled_output is None when the model was built with ``add_pooler=False``.
    """
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    x = self.embeddings(input_ids, token_type_ids, deterministic=deterministic)
    # The bias stays float32: it is added to float32 attention scores.
    x = self.encoder(x, make_attention_bias(attention_mask), deterministic=deterministic)
    pooled = self.pooler(x) if self.pooler is not None else None
    return x, pooled


def mean_pool(sequence_output: jax.Array, attention_mask: jax.Array) -> jax.Array:
  """Mean of the token vectors over real (mask 1) tokens, as sentence-transformers pools.

  Args:
    sequence_output: [batch, seq, hidden].
    attention_mask: [batch, seq] 0/1.

  Returns:
    float32 [batch, hidden]; an all-padding row gives zeros.
  """
  mask = attention_mask[..., None].astype(jnp.float32)  # [batch, seq, 1]
  total = jnp.sum(sequence_output.astype(jnp.float32) * mask, axis=1)  # [batch, hidden]
  count = jnp.maximum(jnp.sum(mask, axis=1), 1e-9)  # [batch, 1]; sentence-transformers' clamp
  return total / count


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Row-wise L2 normalisation (torch.nn.functional.normalize semantics)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


_POOLINGS = ("mean", "cls")


class BertForSequenceClassification(nnx.Module):
  """BERT + pooling + dropout + linear classifier.

  The default pools by the mask-weighted mean of the token vectors, not HF's [CLS] pooler:
  all-MiniLM-L6-v2 was trained as a sentence encoder with mean pooling, so its mean-pooled vector
  is the meaningful sentence representation and its pooler weights are untrained leftovers.
  The head runs in float32 whatever the encoder's compute dtype.

  Args:
    config: the encoder shape.
    num_labels: number of classes (>= 2).
    rngs: parameter initialisation and dropout randomness.
    pooling: "mean" (default) or "cls" (HF-style dense+tanh pooler on [CLS]).
  """

  def __init__(self, config: BertConfig, num_labels: int, *, rngs: nnx.Rngs,
               pooling: str = "mean"):
    if not isinstance(num_labels, int) or num_labels < 2:
      raise ValueError(f"num_labels must be an int >= 2, got {num_labels!r}")
    if pooling not in _POOLINGS:
      raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
    self.num_labels = num_labels
    self.pooling = pooling
    self.bert = BertModel(config, rngs=rngs, add_pooler=pooling == "cls")
    self.dropout = Dropout(config.hidden_dropout, rngs=rngs)
    self.classifier = _linear(config.hidden_size, num_labels, rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               deterministic: bool = True) -> jax.Array:
    """Returns float32 class logits [batch, num_labels]."""
    sequence_output, pooled = self.bert(input_ids, attention_mask, token_type_ids,
                                        deterministic=deterministic)
    if self.pooling == "mean":
      pooled = mean_pool(sequence_output, attention_mask)  # [batch, hidden]
    return self.classifier(self.dropout(pooled, deterministic=deterministic))


class BertPredictionHeadTransform(nnx.Module):
  """Dense + GELU + LayerNorm before the masked-LM decoder."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.dense = _linear(config.hidden_size, config.hidden_size, rngs, config.compute_dtype)
    self.LayerNorm = _layer_norm(config, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.LayerNorm(gelu(self.dense(x)))


class BertForMaskedLM(nnx.Module):
  """BERT with the masked-LM head; the decoder is tied to the word embeddings (plus a bias)."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.bert = BertModel(config, rngs=rngs, add_pooler=False)
    self.transform = BertPredictionHeadTransform(config, rngs=rngs)
    self.bias = nnx.Param(jnp.zeros((config.vocab_size,), jnp.float32))

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               masked_positions: jax.Array | None = None,
               deterministic: bool = True) -> jax.Array:
    """Vocabulary logits (float32) at every position or only at the masked ones.

    Args:
      input_ids: [batch, seq] int ids.
      attention_mask: [batch, seq] 0/1.
      token_type_ids: [batch, seq] segment ids; zeros when None.
      masked_positions: [batch, predictions] int positions to predict. Only these pass through
        the head and the [hidden, vocab] decoder (BERT's gather), which at 15% masking is most
        of the saving: the decoder is the largest matmul of a small model.
      deterministic: True switches dropout off.

    Returns:
      [batch, seq, vocab_size], or [batch, predictions, vocab_size] with masked_positions.
    """
    sequence_output, _ = self.bert(input_ids, attention_mask, token_type_ids,
                                   deterministic=deterministic)
    if masked_positions is not None:
      sequence_output = jnp.take_along_axis(sequence_output, masked_positions[..., None],
                                            axis=1)  # [batch, predictions, hidden]
    h = self.transform(sequence_output)  # [batch, positions, hidden]
    table = self.bert.embeddings.word_embeddings.embedding[...]  # [vocab, hidden], tied
    logits = jnp.einsum("bph,vh->bpv", h, table.astype(h.dtype),
                        preferred_element_type=jnp.float32)
    return logits + self.bias[...]


class BertForZILN(nnx.Module):
  """BERT + mean pooling + numeric features -> MLP -> the three ZILN logits.

  The customer's history, written as text, goes through the encoder; its mean-pooled vector is
  concatenated with the customer's (standardised) numeric features and a small MLP
  (Linear, GELU, dropout) emits ``(return log-odds, mu, pre-softplus sigma)`` for
  ``cvlib.value.ziln.ziln_loss``. The head runs in float32 whatever the encoder's compute dtype. Its
  output layer starts near zero (N(0, 0.02) kernel, zero bias) so that, after
  ``set_output_bias(ziln.make_output_bias(y))``, training starts at the marginal fit of y.

  Args:
    config: the encoder shape.
    n_numeric: number of numeric features per customer (0 for text only).
    hidden: width of the MLP's hidden layer.
    dropout: dropout rate after the hidden layer, in [0, 1).
    rngs: parameter initialisation and dropout randomness.
  """

  def __init__(self, config: BertConfig, n_numeric: int, *, hidden: int = 64,
               dropout: float = 0.1, rngs: nnx.Rngs):
    if not isinstance(n_numeric, int) or n_numeric < 0:
      raise ValueError(f"n_numeric must be an int >= 0, got {n_numeric!r}")
    if not isinstance(hidden, int) or hidden < 1:
      raise ValueError(f"hidden must be an int >= 1, got {hidden!r}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    self.n_numeric = n_numeric
    self.bert = BertModel(config, rngs=rngs, add_pooler=False)
    # LeCun-normal (nnx's default) for the hidden layer: with BERT's N(0, 0.02) the standardised
    # numeric features would enter almost silenced.
    self.dense = nnx.Linear(config.hidden_size + n_numeric, hidden, rngs=rngs)
    self.dropout = Dropout(dropout, rngs=rngs)
    self.output = _linear(hidden, 3, rngs)

  def set_output_bias(self, bias: Any) -> None:
    """Sets the output bias, e.g. to ``ziln.make_output_bias(y_train)`` (3 floats)."""
    bias = jnp.asarray(bias, jnp.float32)
    if bias.shape != (3,):
      raise ValueError(f"the output bias must have shape (3,), got {bias.shape}")
    self.output.bias.set_value(bias)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               numeric: jax.Array | None = None, token_type_ids: jax.Array | None = None, *,
               deterministic: bool = True) -> jax.Array:
    """ZILN logits.

    Args:
      input_ids: [batch, seq] int ids.
      attention_mask: [batch, seq] 0/1.
      numeric: [batch, n_numeric] float features (standardised); None when n_numeric is 0.
      token_type_ids: [batch, seq] segment ids; zeros when None.
      deterministic: True switches dropout off.

    Returns:
      float32 [batch, 3].
    """
    if self.n_numeric and (numeric is None
                           or numeric.shape != (input_ids.shape[0], self.n_numeric)):
      raise ValueError(f"numeric must have shape ({input_ids.shape[0]}, {self.n_numeric}), got "
                       f"{None if numeric is None else numeric.shape}")
    sequence_output, _ = self.bert(input_ids, attention_mask, token_type_ids,
                                   deterministic=deterministic)
    x = mean_pool(sequence_output, attention_mask)  # [batch, hidden_size] float32
    if self.n_numeric:
      x = jnp.concatenate([x, numeric.astype(jnp.float32)], axis=-1)  # [batch, hidden + n]
    h = self.dropout(gelu(self.dense(x)), deterministic=deterministic)
    return self.output(h)  # [batch, 3]

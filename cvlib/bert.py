"""BERT encoder in flax.nnx (post-LayerNorm, like Hugging Face ``BertModel``).

Attribute names follow the Hugging Face checkpoint names so the key table in
``cvlib.pretrained`` reads almost as an identity map: ``embeddings.word_embeddings``,
``encoder.layer[i].attention.self_attn.query``, ``...attention.output.dense``,
``...intermediate.dense``, ``...output.LayerNorm``, ``pooler.dense``. The differences are nnx's
own parameter names (``kernel`` for ``weight`` of a Linear, stored transposed; ``embedding`` for an
Embed's ``weight``; ``scale`` for a LayerNorm's ``weight``) and ``self_attn`` for HF's ``self``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

# HF BERT initialises every Linear and Embed from N(0, 0.02).
_INIT = nnx.initializers.normal(stddev=0.02)


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

  @classmethod
  def minilm_l6(cls) -> BertConfig:
    """The shape of sentence-transformers/all-MiniLM-L6-v2."""
    return cls()

  @classmethod
  def tiny(cls, vocab_size: int = 128) -> BertConfig:
    """A 2-layer, 32-wide encoder for fast unit tests."""
    return cls(vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=2,
               intermediate_size=64, max_position_embeddings=128)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _linear(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(in_features, out_features, kernel_init=_INIT, rngs=rngs)


def _layer_norm(config: BertConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
  # use_fast_variance=False computes mean((x - mean)^2) like torch, not E[x^2] - E[x]^2, which
  # loses digits and would spoil the match with the reference implementation.
  return nnx.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps,
                       use_fast_variance=False, rngs=rngs)


class BertEmbeddings(nnx.Module):
  """Word + position + token-type embeddings, then LayerNorm and dropout."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.word_embeddings = nnx.Embed(config.vocab_size, config.hidden_size,
                                     embedding_init=_INIT, rngs=rngs)
    self.position_embeddings = nnx.Embed(config.max_position_embeddings, config.hidden_size,
                                         embedding_init=_INIT, rngs=rngs)
    self.token_type_embeddings = nnx.Embed(config.type_vocab_size, config.hidden_size,
                                           embedding_init=_INIT, rngs=rngs)
    self.LayerNorm = _layer_norm(config, rngs)
    self.dropout = nnx.Dropout(config.hidden_dropout, rngs=rngs)

  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array, *,
               deterministic: bool) -> jax.Array:
    positions = jnp.arange(input_ids.shape[1])[None, :]  # [1, seq]
    x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
         + self.token_type_embeddings(token_type_ids))  # [batch, seq, hidden]
    return self.dropout(self.LayerNorm(x), deterministic=deterministic)


class BertSelfAttention(nnx.Module):
  """Multi-head scaled dot-product attention over the unmasked tokens."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.num_heads = config.num_heads
    self.head_dim = config.hidden_size // config.num_heads
    self.query = _linear(config.hidden_size, config.hidden_size, rngs)
    self.key = _linear(config.hidden_size, config.hidden_size, rngs)
    self.value = _linear(config.hidden_size, config.hidden_size, rngs)
    self.dropout = nnx.Dropout(config.attention_dropout, rngs=rngs)

  def __call__(self, x: jax.Array, mask_bias: jax.Array, *, deterministic: bool) -> jax.Array:
    batch, seq, hidden = x.shape

    def heads(t: jax.Array) -> jax.Array:  # [batch, seq, hidden] -> [batch, heads, seq, head_dim]
      return t.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(self.head_dim)
    scores = scores + mask_bias  # [batch, heads, seq, seq]
    probs = self.dropout(jax.nn.softmax(scores, axis=-1), deterministic=deterministic)
    context = probs @ v  # [batch, heads, seq, head_dim]
    return context.transpose(0, 2, 1, 3).reshape(batch, seq, hidden)


class BertSelfOutput(nnx.Module):
  """Projection after a sub-block, dropout, residual, then LayerNorm (post-LN)."""

  def __init__(self, config: BertConfig, in_features: int, *, rngs: nnx.Rngs):
    self.dense = _linear(in_features, config.hidden_size, rngs)
    self.LayerNorm = _layer_norm(config, rngs)
    self.dropout = nnx.Dropout(config.hidden_dropout, rngs=rngs)

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
    self.dense = _linear(config.hidden_size, config.intermediate_size, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.gelu(self.dense(x), approximate=False)


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
    return jnp.tanh(self.dense(sequence_output[:, 0]))


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
      (sequence_output [batch, seq, hidden], pooled_output [batch, hidden]); pooled_output is
      None when the model was built with ``add_pooler=False``.
    """
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    x = self.embeddings(input_ids, token_type_ids, deterministic=deterministic)
    x = self.encoder(x, make_attention_bias(attention_mask, x.dtype), deterministic=deterministic)
    pooled = self.pooler(x) if self.pooler is not None else None
    return x, pooled


def mean_pool(sequence_output: jax.Array, attention_mask: jax.Array) -> jax.Array:
  """Mean of the token vectors over real (mask 1) tokens, as sentence-transformers pools.

  Args:
    sequence_output: [batch, seq, hidden].
    attention_mask: [batch, seq] 0/1.

  Returns:
    [batch, hidden]; an all-padding row gives zeros.
  """
  mask = attention_mask[..., None].astype(sequence_output.dtype)  # [batch, seq, 1]
  total = jnp.sum(sequence_output * mask, axis=1)  # [batch, hidden]
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
    self.dropout = nnx.Dropout(config.hidden_dropout, rngs=rngs)
    self.classifier = _linear(config.hidden_size, num_labels, rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               deterministic: bool = True) -> jax.Array:
    """Returns class logits [batch, num_labels]."""
    sequence_output, pooled = self.bert(input_ids, attention_mask, token_type_ids,
                                        deterministic=deterministic)
    if self.pooling == "mean":
      pooled = mean_pool(sequence_output, attention_mask)  # [batch, hidden]
    return self.classifier(self.dropout(pooled, deterministic=deterministic))


class BertPredictionHeadTransform(nnx.Module):
  """Dense + GELU + LayerNorm before the masked-LM decoder."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.dense = _linear(config.hidden_size, config.hidden_size, rngs)
    self.LayerNorm = _layer_norm(config, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.LayerNorm(jax.nn.gelu(self.dense(x), approximate=False))


class BertForMaskedLM(nnx.Module):
  """BERT with the masked-LM head; the decoder is tied to the word embeddings (plus a bias)."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.bert = BertModel(config, rngs=rngs, add_pooler=False)
    self.transform = BertPredictionHeadTransform(config, rngs=rngs)
    self.bias = nnx.Param(jnp.zeros((config.vocab_size,), jnp.float32))

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               deterministic: bool = True) -> jax.Array:
    """Returns vocabulary logits [batch, seq, vocab_size]."""
    sequence_output, _ = self.bert(input_ids, attention_mask, token_type_ids,
                                   deterministic=deterministic)
    h = self.transform(sequence_output)  # [batch, seq, hidden]
    return self.bert.embeddings.word_embeddings.attend(h) + self.bias[...]

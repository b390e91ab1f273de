"""Sentence embeddings from the pretrained (or the shop's fine-tuned) encoder, in batches.

``cvlib.embed`` is :func:`embed`: mean-pooled, L2-normalised vectors, as sentence-transformers
computes them for all-MiniLM-L6-v2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tokenizers import Tokenizer

from cvlib.text import bert as bert_lib
from cvlib.text import devices
from cvlib.text.bert import BertModel
from cvlib.text.checkpoint import as_bert, load_encoder
from cvlib.text.tokens import DEFAULT_BUCKETS, check_texts, inference_batch_size, load_tokenizer, make_batches


def predict_batched(fn: Callable[[Any, jax.Array, jax.Array], jax.Array], model: Any,
                    tokenizer: Tokenizer, texts: Sequence[str], *, out_dim: int,
                    batch_size: int = 64, buckets: Sequence[int] = DEFAULT_BUCKETS,
                    truncation: str = "head") -> np.ndarray:
  """Runs ``fn(model, input_ids, attention_mask) -> [batch, out_dim]`` over texts, input order.

  Args:
    fn: a jit'd function of (model, input_ids, attention_mask).
    model: passed through to fn.
    tokenizer: from ``load_tokenizer``.
    texts: strings.
    out_dim: width of fn's output (used for an empty input).
    batch_size: rows per batch.
    buckets: strictly increasing sequence lengths.
    truncation: how a text longer than the largest bucket is cut ("head" or "head_tail").

  Returns:
    float32 [len(texts), out_dim], row i for texts[i].
  """
  texts = check_texts(texts)
  out = np.zeros((len(texts), out_dim), np.float32)
  rows = inference_batch_size(len(texts), batch_size)
  for batch in make_batches(tokenizer, texts, batch_size=rows, buckets=buckets,
                            truncation=truncation):
    result = np.asarray(fn(model, jnp.asarray(batch["input_ids"]),
                           jnp.asarray(batch["attention_mask"])))
    real = batch["index"] >= 0
    out[batch["index"][real]] = result[real]
  return out




# A pure function of the model: plain jax.jit over the module as a pytree (devices.inference_jit).
@devices.inference_jit
def _embed_step(bert: BertModel, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
  sequence_output, _ = bert(input_ids, attention_mask, deterministic=True)
  return bert_lib.l2_normalize(bert_lib.mean_pool(sequence_output, attention_mask))


@functools.lru_cache(maxsize=1)
def _default_tokenizer() -> Tokenizer:
  return load_tokenizer()


@functools.lru_cache(maxsize=1)
def _default_minilm() -> BertModel:
  return load_encoder()[0]


def embed(texts: Sequence[str], *, model: Any = None, tokenizer: Tokenizer | None = None,
          batch_size: int = 64, buckets: Sequence[int] = DEFAULT_BUCKETS) -> np.ndarray:
  """Mean-pooled, L2-normalised sentence embeddings (all-MiniLM-L6-v2's recipe).

  Args:
    texts: strings.
    model: a BertModel or a model with ``.bert`` (e.g. a fine-tuned classifier); None loads the
      installed MiniLM once per process and reuses it.
    tokenizer: None means the MiniLM tokenizer.
    batch_size: rows per batch.
    buckets: sequence length buckets.

  Returns:
    float32 [len(texts), hidden] in the order of texts; each row has unit norm.
  """
  bert = as_bert(_default_minilm() if model is None else model)
  tokenizer = _default_tokenizer() if tokenizer is None else tokenizer
  return predict_batched(_embed_step, bert, tokenizer, texts, out_dim=bert.config.hidden_size,
                         batch_size=batch_size, buckets=buckets)






__all__ = ["embed", "predict_batched"]

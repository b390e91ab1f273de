"""The text encoder a run fine-tunes: pretrained MiniLM, optionally adapted, or a small BERT.

``prepare_encoder`` is the one entry point: given the shop's review texts and language it returns
the tokenizer and an encoder ready for a classification head, with what it did in words for the
report.

- English (``language="en"``, ``encoder="minilm"``): all-MiniLM-L6-v2 from the installed package,
  optionally adapted to the shop's text with ``mlm_steps`` of masked-LM pretraining first.
- A folder (``encoder="/path/to/bert"``, any language): that BERT checkpoint and its tokenizer,
  optionally adapted the same way.
- Other languages with ``encoder="minilm"`` (MiniLM's vocabulary is English), or
  ``encoder="scratch"``: a WordPiece vocabulary learnt from the texts and a small BERT
  (``BertConfig.small``) pretrained from scratch on them with masked-LM; ``mlm_steps`` must be > 0.
- ``encoder="transfer"`` (any language): a WordPiece vocabulary learnt from the texts on MiniLM's
  layers. Each new piece's embedding starts from MiniLM's vectors of the same text
  (``checkpoint.transfer_word_embeddings``), then masked-LM on the texts adapts embeddings and
  layers together (``mlm_steps`` > 0). The transformer layers keep what they learnt in English
  (Artetxe, Ruder & Yogatama 2020 found such layers transfer across languages once the embeddings
  are relearnt).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from flax import nnx
from tokenizers import Tokenizer

from cvlib.text import checkpoint, mlm, tokens, wordpiece
from cvlib.config import BUILT_ENCODERS
from cvlib.text.bert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

LANGUAGE_NAMES = {"en": "English", "pt": "Portuguese", "zh": "Chinese", "es": "Spanish",
                  "fr": "French", "de": "German", "it": "Italian", "nl": "Dutch", "ja": "Japanese",
                  "ko": "Korean"}
# Measured on 3,500 Women's clothing reviews, 60 steps of 32 from MiniLM: encoder 5e-5 with the head
# at the same rate left the loss at 6.2 (6% of masked tokens right); head 1e-3: 5.8 (9%);
# encoder 1e-4, head 3e-3: 5.0 (20%) and still falling. MiniLM ships without an MLM head.
_DEFAULT_MLM_LR = {"pretrained": 1e-4, "scratch": 5e-4, "transfer": 2e-4}
_DEFAULT_HEAD_LR_UNTRAINED = 3e-3


@dataclasses.dataclass
class EncoderResult:
  """A prepared encoder: what fine-tuning needs, and how it came about.

  Attributes:
    tokenizer: the tokenizer matching the encoder's vocabulary.
    config: the encoder's BertConfig.
    encoder: the encoder weights (a BertModel; fine-tuning works on copies).
    mlm_history: per-step MLM history (step, epoch, loss, accuracy, ...) or None without MLM.
    description: one sentence for the report, e.g. "MiniLM-L6 + domain MLM (500 steps ...)".
    kind: "minilm", "checkpoint" or "scratch".
    language: the language code the run was prepared for.
    details: numbers for metrics.json (texts, steps, vocabulary, losses, seconds).
  """

  tokenizer: Tokenizer
  config: BertConfig
  encoder: BertModel
  mlm_history: pd.DataFrame | None
  description: str
  kind: str
  language: str
  details: dict[str, Any]

  def make_classifier(self, num_labels: int, seed: int = 0,
                      pooling: str = "mean") -> BertForSequenceClassification:
    """A fresh classifier (head from seed) whose encoder is a copy of this one.

    Args:
      num_labels: number of classes (>= 2).
      seed: seeds the head's initialisation and the dropout stream.
      pooling: "mean" (default) or "cls"; a "cls" pooler the encoder lacks (MLM-trained
        encoders have none) starts from its initialisation.
    """
    model = BertForSequenceClassification(self.config, num_labels, rngs=nnx.Rngs(seed),
                                          pooling=pooling)
    mlm.transfer_encoder(self.encoder, model)
    return model


def _language_name(language: str) -> str:
  return LANGUAGE_NAMES.get(language, f"'{language}'")


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
  low = 0 if allow_zero else 1
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
    raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _sample(texts: list[str], max_texts: int, seed: int) -> list[str]:
  if max_texts and len(texts) > max_texts:
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), max_texts, replace=False))
    return [texts[i] for i in keep]
  return texts


def _loss_summary(history: pd.DataFrame) -> tuple[float, float]:
  """First-step loss and the mean loss of the last 10% of steps (a less noisy end point)."""
  tail = history["loss"].tail(max(1, len(history) // 10)).mean()
  return float(history["loss"].iloc[0]), float(tail)


def prepare_encoder(texts: Sequence[str], *, language: str = "en", encoder: str = "minilm",
                    num_layers: int | None = None, mlm_steps: int = 0, mlm_batch_size: int = 32,
                    mlm_learning_rate: float | None = None,
                    mlm_head_learning_rate: float | None = None, mlm_max_texts: int = 0,
                    mask_rate: float = 0.15, vocab_size: int = 16000, small_layers: int = 4,
                    small_hidden: int = 256, small_heads: int = 4,
                    small_intermediate: int = 1024, buckets: Sequence[int] = (32, 64, 128),
                    dtype: str = "float32", seed: int = 0, progress: bool = True,
                    mesh: Any = None) -> EncoderResult:
  """Builds the encoder a run fine-tunes (see the module docstring for the three paths).

  Args:
    texts: the shop's review texts (unlabelled is fine). They train the MLM and, from scratch,
      the vocabulary; leave the sentiment test split out for a strictly inductive evaluation.
    language: ISO 639 code of the texts ("en", "pt", "zh", ...).
    encoder: "minilm" (installed all-MiniLM-L6-v2; other languages fall back to "scratch"),
      "scratch", or a folder with config.json, model.safetensors and tokenizer.json.
    num_layers: keep only the first layers of a pretrained encoder (fast tests); None keeps all.
    mlm_steps: masked-LM steps; 0 skips MLM (pretrained encoders only; scratch needs > 0).
    mlm_batch_size: rows per MLM step.
    mlm_learning_rate: peak MLM learning rate; None: 1e-4 to adapt a pretrained encoder,
      5e-4 from scratch.
    mlm_head_learning_rate: peak learning rate of the MLM head; None: 3e-3 when the checkpoint
      has no trained MLM head (MiniLM), else mlm_learning_rate.
    mlm_max_texts: use at most this many texts (a seeded sample) for MLM and the vocabulary;
      0 uses all.
    mask_rate: share of tokens masked (BERT: 0.15).
    vocab_size: WordPiece vocabulary size from scratch (an upper bound; small corpora give less).
    small_layers: layers of the small BERT.
    small_hidden: its width.
    small_heads: its attention heads (must divide small_hidden).
    small_intermediate: its feed-forward width.
    buckets: padded sequence lengths; the largest is the maximum length (and, from scratch, the
      position table's size).
    dtype: compute dtype of activations, "float32" or "bfloat16".
    seed: seeds sampling, MLM masking and order, initialisation and dropout.
    progress: print MLM progress lines.
    mesh: a ``devices.make_mesh()`` mesh for data-parallel MLM; None for the default device.

  Returns:
    An EncoderResult.

  Raises:
    ValueError: a bad argument (named), scratch without mlm_steps, or no usable text.
  """
  texts = tokens.check_texts(texts)
  wordpiece.normalizer_options(language)  # validates the code
  buckets = tokens.check_buckets(buckets)
  _check_positive("mlm_steps", mlm_steps, allow_zero=True)
  _check_positive("mlm_batch_size", mlm_batch_size)
  _check_positive("mlm_max_texts", mlm_max_texts, allow_zero=True)
  for name, value in (("mlm_learning_rate", mlm_learning_rate),
                      ("mlm_head_learning_rate", mlm_head_learning_rate)):
    if value is not None and not value > 0:
      raise ValueError(f"{name} must be > 0 or None, got {value!r}")
  if not isinstance(encoder, str) or not encoder:
    raise ValueError(f"encoder must be 'minilm', 'scratch', 'transfer' or a model folder, got {encoder!r}")
  kind = encoder if encoder in BUILT_ENCODERS else "checkpoint"
  fallback = kind == "minilm" and language != "en"
  if fallback:
    kind = "scratch"  # MiniLM's WordPiece vocabulary is English-only
  if kind == "transfer" and mlm_steps == 0:
    raise ValueError("encoder 'transfer' learns a vocabulary for MiniLM's layers, which needs "
                     "mlm_steps > 0 to learn its embeddings")
  if kind == "scratch" and mlm_steps == 0:
    raise ValueError(f"language {language!r} with encoder {encoder!r} trains a small BERT from "
                     "scratch, which needs mlm_steps > 0 (MiniLM's vocabulary is English; give "
                     "a folder of a pretrained BERT in that language as encoder to skip MLM)")
  mlm_texts = _sample([t for t in texts if t.strip()], mlm_max_texts, seed)
  if (mlm_steps or kind in ("scratch", "transfer")) and not mlm_texts:
    raise ValueError("no non-blank text to pretrain on")
  lr = mlm_learning_rate or _DEFAULT_MLM_LR[kind if kind in _DEFAULT_MLM_LR else "pretrained"]
  head_lr = mlm_head_learning_rate or lr
  start = time.perf_counter()
  details: dict[str, Any] = {"kind": kind, "language": language, "mlm_steps": mlm_steps,
                             "mlm_texts": len(mlm_texts) if mlm_steps else 0}

  own_vocabulary = kind in ("scratch", "transfer")
  if own_vocabulary:
    tokenizer = wordpiece.train_wordpiece(mlm_texts, language=language, vocab_size=vocab_size,
                                          max_length=buckets[-1])
    vocab = wordpiece.describe_vocabulary(tokenizer, mlm_texts[:2000])
    details.update(vocab_size=tokenizer.get_vocab_size(),
                   tokens_per_word=vocab["tokens_per_word"], unk_share=vocab["unk_share"])
  if kind == "scratch":
    config = dataclasses.replace(
        BertConfig.small(tokenizer.get_vocab_size(), num_layers=small_layers,
                         hidden_size=small_hidden, num_heads=small_heads,
                         intermediate_size=small_intermediate,
                         max_position_embeddings=max(128, buckets[-1])), dtype=dtype)
    mlm_model = BertForMaskedLM(config, rngs=nnx.Rngs(seed))
    base = (f"small BERT {config.num_layers}x{config.hidden_size} pretrained from scratch on "
            f"{len(mlm_texts):,} {_language_name(language)} reviews with a "
            f"{tokenizer.get_vocab_size():,}-piece WordPiece vocabulary learnt from them")
  elif kind == "transfer":
    mlm_model, report = checkpoint.load_masked_lm(None, num_layers, seed=seed, dtype=dtype,
                                                  tokenizer=tokenizer)
    config = mlm_model.bert.config
    if mlm_head_learning_rate is None:
      head_lr = _DEFAULT_HEAD_LR_UNTRAINED
    details["embeddings_from_minilm"] = report["transfer"]
    base = (f"MiniLM-L6's layers with a {tokenizer.get_vocab_size():,}-piece WordPiece "
            f"vocabulary learnt from {len(mlm_texts):,} {_language_name(language)} reviews "
            f"({report['transfer']['copied']:,} pieces shared with MiniLM's)")
    if num_layers is not None:
      base += f", first {config.num_layers} layer(s)"
  else:
    path = None if kind == "minilm" else encoder
    tokenizer = tokens.load_tokenizer(path, max_length=buckets[-1])
    if mlm_steps:
      mlm_model, report = checkpoint.load_masked_lm(path, num_layers, seed=seed, dtype=dtype)
      config = mlm_model.bert.config
      if mlm_head_learning_rate is None and not report["head"]:
        head_lr = _DEFAULT_HEAD_LR_UNTRAINED  # a fresh head next to a trained encoder
    else:
      bert_model, config = checkpoint.load_encoder(path, num_layers, seed=seed, dtype=dtype)
    name = "MiniLM-L6 (all-MiniLM-L6-v2)" if kind == "minilm" else f"BERT from {encoder}"
    if num_layers is not None:
      name += f", first {config.num_layers} layer(s)"
    base = name

  history = None
  if mlm_steps:
    mlm_model, history = mlm.pretrain_mlm(
        mlm_model, tokenizer, mlm_texts, steps=mlm_steps, batch_size=mlm_batch_size,
        learning_rate=lr, head_learning_rate=head_lr, mask_rate=mask_rate, buckets=buckets,
        seed=seed, progress=progress, mesh=mesh)
    bert_model = mlm_model.bert
    first, last = _loss_summary(history)
    details.update(mlm_loss_first=first, mlm_loss_last=last, mlm_learning_rate=lr,
                   mlm_head_learning_rate=head_lr, mlm_batch_size=mlm_batch_size)
    if own_vocabulary:
      description = f"{base} ({mlm_steps:,} MLM steps, loss {first:.2f} -> {last:.2f})"
    else:
      description = (f"{base} + domain MLM ({mlm_steps:,} steps on {len(mlm_texts):,} reviews, "
                     f"loss {first:.2f} -> {last:.2f})")
  else:
    description = base
  if fallback:
    description += "; MiniLM was not used because its vocabulary is English"
  details["seconds"] = time.perf_counter() - start
  params = checkpoint.flat_params(bert_model)
  details["parameters"] = int(sum(np.prod(v.shape) for v in params.values()))
  return EncoderResult(tokenizer=tokenizer, config=config, encoder=bert_model,
                       mlm_history=history, description=description, kind=kind,
                       language=language, details=details)


__all__ = ["BUILT_ENCODERS", "EncoderResult", "LANGUAGE_NAMES", "prepare_encoder"]

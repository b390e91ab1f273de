"""Masked language modelling: domain-adaptive pretraining on a shop's own (unlabelled) reviews.

BERT's recipe: in every sequence, 15% of the ordinary tokens (never [CLS], [SEP], [PAD], [MASK]
or [UNK]) become prediction targets; of those, 80% are replaced by [MASK], 10% by a random
ordinary token and 10% are left as they are. Masks are drawn afresh every epoch (dynamic masking,
as RoBERTa), from an explicit seed. Only the target positions go through the MLM head and its
[hidden, vocab] decoder (tied to the word embeddings): each batch carries ``masked_positions``
[batch, predictions] with the ids to predict and a 0/1 weight per slot.

After pretraining, ``transfer_encoder`` copies the adapted encoder into a
``BertForSequenceClassification`` for fine-tuning.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np
import optax
import pandas as pd
from flax import nnx
from tokenizers import Tokenizer

from cvlib import training
from cvlib.text import checkpoint, devices, tokens
from cvlib.text.bert import BertForMaskedLM

Batch = dict[str, jax.Array]
IGNORE_LABEL = -100  # labels of positions that are not predicted (Hugging Face's convention)


# ----------------------------------------------------------------------------------------------
# Masking


def max_predictions(length: int, mask_rate: float = 0.15) -> int:
  """Prediction slots per row for a padded length: room for every target of a full row."""
  return max(1, int(math.ceil(mask_rate * length)))


def mask_tokens(input_ids: np.ndarray, attention_mask: np.ndarray, *, rng: np.random.Generator,
                mask_id: int, special_ids: Sequence[int], vocab_size: int,
                mask_rate: float = 0.15, replace_mask: float = 0.8,
                replace_random: float = 0.1) -> dict[str, np.ndarray]:
  """BERT's masking of one batch.

  Each row with n maskable tokens (real, not special) gets floor(mask_rate * n + u) targets,
  u ~ U(0, 1), so that the expected share is exactly mask_rate even for short reviews; targets
  are a uniformly random subset. Each target independently becomes [MASK] (replace_mask), a
  random non-special token (replace_random) or stays as it is (the rest).

  Args:
    input_ids: int [batch, seq].
    attention_mask: 0/1 [batch, seq].
    rng: the random generator (the caller seeds it).
    mask_id: the [MASK] id.
    special_ids: ids that are never targets nor random replacements.
    vocab_size: ids are < vocab_size.
    mask_rate: share of maskable tokens that become targets, in (0, 1).
    replace_mask: share of targets replaced by [MASK].
    replace_random: share of targets replaced by a random token.

  Returns:
    {"input_ids": the masked ids [batch, seq], "labels": original id at targets, IGNORE_LABEL
    elsewhere [batch, seq], "masked_positions", "masked_ids" int32 and "masked_weights" float32
    [batch, max_predictions(seq)]: the targets' positions (ascending), their original ids and 1
    (0 for unused slots, whose position and id are 0)}.

  Raises:
    ValueError: rates out of range or mismatched shapes.
  """
  if not 0.0 < mask_rate < 1.0:
    raise ValueError(f"mask_rate must be in (0, 1), got {mask_rate!r}")
  if not (0.0 <= replace_mask and 0.0 <= replace_random and replace_mask + replace_random <= 1.0):
    raise ValueError(f"replace_mask ({replace_mask!r}) and replace_random ({replace_random!r}) "
                     "must be >= 0 with a sum <= 1")
  input_ids = np.asarray(input_ids)
  attention_mask = np.asarray(attention_mask)
  if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
    raise ValueError(f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} "
                     "must be the same [batch, seq] shape")
  batch, seq = input_ids.shape
  special = np.asarray(sorted(set(int(i) for i in special_ids)), np.int64)
  maskable = (attention_mask > 0) & ~np.isin(input_ids, special)  # [batch, seq]
  counts = maskable.sum(1)
  targets = np.floor(mask_rate * counts + rng.random(batch)).astype(np.int64)  # [batch]

  # A random order of each row's maskable positions: sort random keys, non-maskable last.
  keys = np.where(maskable, rng.random((batch, seq)), 2.0)
  order = np.argsort(keys, axis=1, kind="stable")
  rank = np.empty_like(order)
  np.put_along_axis(rank, order, np.arange(seq)[None, :].repeat(batch, 0), axis=1)
  chosen = rank < targets[:, None]  # the first `targets` positions of the random order

  draw = rng.random((batch, seq))
  to_mask = chosen & (draw < replace_mask)
  to_random = chosen & (draw >= replace_mask) & (draw < replace_mask + replace_random)
  allowed = np.setdiff1d(np.arange(vocab_size), special)
  random_ids = allowed[rng.integers(0, len(allowed), size=(batch, seq))]
  masked = np.where(to_mask, mask_id, np.where(to_random, random_ids, input_ids))

  slots = max_predictions(seq, mask_rate)
  positions = np.zeros((batch, slots), np.int32)
  ids = np.zeros((batch, slots), np.int32)
  weights = np.zeros((batch, slots), np.float32)
  rows, cols = np.nonzero(chosen)  # row-major: positions ascending within a row
  slot = np.arange(len(rows)) - np.searchsorted(rows, rows)  # index within the row
  positions[rows, slot] = cols
  ids[rows, slot] = input_ids[rows, cols]
  weights[rows, slot] = 1.0
  labels = np.where(chosen, input_ids, IGNORE_LABEL)
  return {"input_ids": masked.astype(np.int32), "labels": labels.astype(np.int32),
          "masked_positions": positions, "masked_ids": ids, "masked_weights": weights}


# ----------------------------------------------------------------------------------------------
# Steps

_STEP_KEYS = ("input_ids", "attention_mask", "masked_positions", "masked_ids", "masked_weights")


def mlm_loss_fn(model: BertForMaskedLM, batch: Batch) -> tuple[jax.Array, jax.Array]:
  """Mean cross-entropy over the target slots (dropout on); aux: correct predictions (weighted)."""
  logits = model(batch["input_ids"], batch["attention_mask"],
                 masked_positions=batch["masked_positions"],
                 deterministic=False)  # [batch, predictions, vocab]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["masked_ids"])
  weight = batch["masked_weights"]
  loss = jnp.sum(weight * ce) / jnp.maximum(jnp.sum(weight), 1.0)
  correct = jnp.sum(weight * (jnp.argmax(logits, -1) == batch["masked_ids"]))
  return loss, correct


# graph=False and donation: see sentiment.train_step (the tied decoder reads the embedding
# Variable, it does not share it, so the model is a plain tree).
@nnx.jit(graph=False, donate_argnums=(0, 1))
def mlm_train_step(model: BertForMaskedLM, optimizer: nnx.Optimizer,
                   batch: Batch) -> tuple[jax.Array, jax.Array]:
  """One MLM optimisation step in place; returns (loss, weighted correct predictions)."""
  (loss, correct), grads = nnx.value_and_grad(mlm_loss_fn, has_aux=True)(model, batch)
  optimizer.update(model, grads)
  return loss, correct


@devices.inference_jit  # a pure function of the model
def mlm_eval_step(model: BertForMaskedLM, batch: Batch) -> tuple[jax.Array, jax.Array]:
  """Summed target cross-entropy and correct predictions, dropout off."""
  logits = model(batch["input_ids"], batch["attention_mask"],
                 masked_positions=batch["masked_positions"], deterministic=True)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["masked_ids"])
  weight = batch["masked_weights"]
  return jnp.sum(weight * ce), jnp.sum(weight * (jnp.argmax(logits, -1) == batch["masked_ids"]))


# ----------------------------------------------------------------------------------------------
# Optimiser


def _mlm_param_labels(params: Any) -> Any:
  """ "head" for the MLM head (transform and output bias), "encoder" for everything else."""

  def label(path: tuple, _: Any) -> str:
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    return "head" if names[0] in ("transform", "bias") else "encoder"

  return jax.tree_util.tree_map_with_path(label, params)


# Cached like training.make_optimizer, so that reruns reuse the compiled step.
@functools.lru_cache(maxsize=16)
def make_mlm_optimizer(*, learning_rate: float, head_learning_rate: float, warmup_steps: int,
                       total_steps: int, weight_decay: float = 0.01,
                       max_grad_norm: float | None = 1.0) -> optax.GradientTransformation:
  """AdamW as ``training.make_optimizer``, with its own peak learning rate for the MLM head.

  A pretrained sentence encoder such as all-MiniLM-L6-v2 ships without an MLM head, so the head
  starts from random values; at an encoder-friendly learning rate (5e-5) it needs thousands of
  steps to learn anything. A larger rate for the head alone lets domain adaptation start
  within a few dozen steps while the encoder moves gently.
  """
  return training.make_two_rate_optimizer(
      _mlm_param_labels, learning_rate=learning_rate, head_learning_rate=head_learning_rate,
      warmup_steps=warmup_steps, total_steps=total_steps, weight_decay=weight_decay,
      max_grad_norm=max_grad_norm)


# ----------------------------------------------------------------------------------------------
# Pretraining loop


def _masking_setup(tokenizer: Tokenizer, vocab_size: int) -> dict[str, Any]:
  mask_id = tokenizer.token_to_id("[MASK]")
  if mask_id is None:
    raise ValueError("the tokenizer has no [MASK] token; MLM needs one (train the tokenizer with "
                     "wordpiece.train_wordpiece, which adds it)")
  if tokenizer.get_vocab_size() > vocab_size:
    raise ValueError(f"the tokenizer has {tokenizer.get_vocab_size()} ids but the model only "
                     f"{vocab_size} embeddings")
  return {"mask_id": mask_id, "special_ids": tokens.special_token_ids(tokenizer),
          "vocab_size": tokenizer.get_vocab_size()}


def make_mlm_batches(ids: Sequence[np.ndarray], *, batch_size: int, buckets: Sequence[int],
                     seed: int, masking: dict[str, Any], mask_rate: float = 0.15,
                     pad_id: int = 0, shuffle: bool = True) -> list[dict[str, np.ndarray]]:
  """Length-bucketed batches of token ids, masked; deterministic for (ids, seed).

  Args:
    ids: token ids per text (already cut to the largest bucket).
    batch_size: rows per batch.
    buckets: padded lengths.
    seed: shuffling and masking seed (use a new one per epoch for dynamic masking).
    masking: {"mask_id", "special_ids", "vocab_size"} for ``mask_tokens``.
    mask_rate: share of tokens to predict.
    pad_id: the [PAD] id.
    shuffle: shuffle texts within buckets and the batch order.

  Returns:
    Batches of numpy arrays with the keys of ``mask_tokens`` plus "attention_mask".
  """
  rng = np.random.default_rng([seed, 1])  # a stream apart from the shuffling one
  out = []
  for batch in tokens.batches_from_ids(ids, None, batch_size=batch_size, buckets=buckets,
                                           shuffle=shuffle, seed=seed, pad_id=pad_id):
    masked = mask_tokens(batch["input_ids"], batch["attention_mask"], rng=rng,
                         mask_rate=mask_rate, **masking)
    out.append({**masked, "attention_mask": batch["attention_mask"]})
  return out


def pretrain_mlm(model: BertForMaskedLM, tokenizer: Tokenizer, texts: Sequence[str], *,
                 steps: int | None = None, epochs: int | None = None, batch_size: int = 32,
                 learning_rate: float = 5e-5, head_learning_rate: float | None = None,
                 warmup_ratio: float = 0.06,
                 weight_decay: float = 0.01, max_grad_norm: float | None = 1.0,
                 mask_rate: float = 0.15, buckets: Sequence[int] = (32, 64, 128),
                 seed: int = 0, progress: bool = True, log_every_s: float = 15.0,
                 mesh: Any = None) -> tuple[BertForMaskedLM, pd.DataFrame]:
  """Masked-LM pretraining on texts (domain adaptation, or from scratch for a new vocabulary).

  Runs ``steps`` optimisation steps (cycling through freshly masked epochs), or ``epochs`` full
  passes; exactly one of the two. AdamW with warmup and linear decay, clipping and no decay on
  biases and LayerNorm (``training.make_optimizer``). Deterministic for a seed on CPU.

  Args:
    model: a BertForMaskedLM, updated in place (and returned).
    tokenizer: its tokenizer (needs a [MASK] token).
    texts: unlabelled texts; longer ones are cut to the largest bucket.
    steps: number of optimisation steps.
    epochs: number of passes over the texts (when steps is None).
    batch_size: rows per step.
    learning_rate: peak learning rate (5e-5 adapts a pretrained encoder gently; 5e-4 suits a
      small model from scratch).
    head_learning_rate: peak learning rate of the MLM head (transform and output bias); None
      uses learning_rate. A checkpoint without a trained head (MiniLM) wants ~1e-3 here.
    warmup_ratio: share of steps warming up, in [0, 1).
    weight_decay: AdamW decoupled weight decay.
    max_grad_norm: global-norm clipping; None disables it.
    mask_rate: share of tokens to predict.
    buckets: padded lengths; the step compiles once per bucket.
    seed: shuffling, masking and dropout seed.
    progress: print a plain line at most every log_every_s seconds.
    log_every_s: seconds between progress lines.
    mesh: a ``devices.make_mesh()`` mesh for data parallelism; None for the default device.

  Returns:
    (model, history): one row per step with step, epoch, loss (mean target cross-entropy),
    accuracy (share of targets predicted right), targets, learning_rate, seconds (since start).

  Raises:
    ValueError: bad arguments, no texts, or a tokenizer without [MASK].
  """
  if not isinstance(model, BertForMaskedLM):
    raise ValueError(f"model must be a BertForMaskedLM, got {type(model).__name__}")
  if (steps is None) == (epochs is None):
    raise ValueError(f"give exactly one of steps and epochs, got steps={steps!r}, "
                     f"epochs={epochs!r}")
  for name, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size)):
    if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
      raise ValueError(f"{name} must be an int >= 1, got {value!r}")
  if not 0.0 <= warmup_ratio < 1.0:
    raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio!r}")
  texts = tokens.check_texts(texts)
  if not texts:
    raise ValueError("texts is empty: MLM pretraining needs text")
  buckets = tokens.check_buckets(buckets)
  devices.check_batch_size(batch_size, mesh)
  config = model.bert.config
  if buckets[-1] > config.max_position_embeddings:
    raise ValueError(f"the largest bucket ({buckets[-1]}) exceeds the model's "
                     f"max_position_embeddings ({config.max_position_embeddings})")
  masking = _masking_setup(tokenizer, config.vocab_size)
  ids = tokens.tokenize_texts(tokenizer, texts, max_length=buckets[-1])
  make_epoch = functools.partial(
      make_mlm_batches, ids, batch_size=batch_size, buckets=buckets, masking=masking,
      mask_rate=mask_rate, pad_id=tokens.pad_token_id(tokenizer))
  first = make_epoch(seed=seed + 1)
  total_steps = steps if steps is not None else epochs * len(first)
  warmup_steps = int(round(warmup_ratio * total_steps))
  if head_learning_rate is not None and not head_learning_rate > 0:
    raise ValueError(f"head_learning_rate must be > 0 or None, got {head_learning_rate!r}")
  tx = make_mlm_optimizer(learning_rate=learning_rate,
                          head_learning_rate=head_learning_rate or learning_rate,
                          warmup_steps=warmup_steps, total_steps=total_steps,
                          weight_decay=weight_decay, max_grad_norm=max_grad_norm)
  schedule = training.make_schedule(learning_rate=learning_rate, warmup_steps=warmup_steps,
                                     total_steps=total_steps)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  nnx.reseed(model, default=seed, dropout=seed)
  if mesh is not None:
    devices.replicate(model, optimizer, mesh=mesh)

  rows: list[dict[str, Any]] = []  # one per step: the history this function returns
  start = time.perf_counter()
  done = {"steps": 0, "last_log": start}

  def train_epoch(epoch: int) -> dict[str, Any]:
    """Freshly masked batches until the epoch or the step budget ends."""
    batches = first if epoch == 1 else make_epoch(seed=seed + epoch)
    pending: list[tuple[int, jax.Array, jax.Array, float, float]] = []
    for batch in batches:
      if done["steps"] >= total_steps:
        break
      loss, correct = mlm_train_step(model, optimizer,
                                     devices.put_batch({k: batch[k] for k in _STEP_KEYS}, mesh))
      pending.append((done["steps"], loss, correct, float(batch["masked_weights"].sum()),
                      time.perf_counter() - start))  # dispatch time: steps run asynchronously
      done["steps"] += 1
      if progress and time.perf_counter() - done["last_log"] >= log_every_s:
        done["last_log"] = time.perf_counter()
        print(f"mlm step {done['steps']}/{total_steps} (epoch {epoch}) loss {float(loss):.3f} "
              f"{done['steps'] * batch_size / (done['last_log'] - start):.1f} seq/s", flush=True)
    # Fetch the epoch's losses at once: a float() per step would stall the dispatch pipeline.
    values = jax.device_get([(p[1], p[2]) for p in pending])
    for (s, _, _, targets, seconds), (loss_v, correct_v) in zip(pending, values):
      rows.append({"step": s + 1, "epoch": epoch, "loss": float(loss_v),
                   "accuracy": float(correct_v) / max(targets, 1.0), "targets": int(targets),
                   "learning_rate": float(schedule(s)), "seconds": seconds})
    losses = [float(v[0]) for v in values]
    return {"steps": len(pending), "loss": float(np.mean(losses)) if losses else float("nan"),
            "stop": done["steps"] >= total_steps}

  epochs_run = training.fit(model, train_epoch, epochs=None, progress=False, desc="masked-LM")
  epoch = len(epochs_run)
  history = pd.DataFrame(rows)
  if progress:
    tail = history["loss"].tail(max(1, len(history) // 10)).mean()
    print(f"mlm done: {total_steps} steps, {epoch} epoch(s), loss {history['loss'].iloc[0]:.3f} "
          f"-> {tail:.3f} (mean of the last 10%), {time.perf_counter() - start:.0f} s",
          flush=True)
  return model, history


def evaluate_mlm(model: BertForMaskedLM, tokenizer: Tokenizer, texts: Sequence[str], *,
                 batch_size: int = 32, buckets: Sequence[int] = (32, 64, 128), seed: int = 0,
                 mask_rate: float = 0.15) -> dict[str, float]:
  """Masked-token cross-entropy, perplexity and accuracy on held-out texts (fixed masks).

  Returns:
    {"loss", "perplexity", "accuracy", "targets"}.
  """
  texts = tokens.check_texts(texts)
  buckets = tokens.check_buckets(buckets)
  masking = _masking_setup(tokenizer, model.bert.config.vocab_size)
  ids = tokens.tokenize_texts(tokenizer, texts, max_length=buckets[-1])
  pad_id = tokens.pad_token_id(tokenizer)
  ce_sum = correct_sum = targets = 0.0
  for batch in make_mlm_batches(ids, batch_size=batch_size, buckets=buckets, seed=seed,
                                masking=masking, mask_rate=mask_rate, shuffle=False,
                                pad_id=pad_id):
    ce, correct = mlm_eval_step(model, {k: jnp.asarray(batch[k]) for k in _STEP_KEYS})
    ce_sum += float(ce)
    correct_sum += float(correct)
    targets += float(batch["masked_weights"].sum())
  loss = ce_sum / max(targets, 1.0)
  return {"loss": loss, "perplexity": float(np.exp(loss)),
          "accuracy": correct_sum / max(targets, 1.0), "targets": int(targets)}


def plot_mlm_history(history: pd.DataFrame, smooth: int = 20) -> matplotlib.figure.Figure:
  """MLM loss and masked-token accuracy per step, raw and as a moving average.

  Raises:
    ValueError: history lacks the columns pretrain_mlm writes.
  """
  missing = [c for c in ("step", "loss", "accuracy") if c not in history.columns]
  if missing:
    raise ValueError(f"history lacks columns {missing} (have: {list(history.columns)})")
  fig = matplotlib.figure.Figure(figsize=(9, 3.5), layout="constrained")
  ax_loss, ax_acc = fig.subplots(1, 2)
  window = max(1, min(smooth, len(history) // 5))
  for ax, column, label in ((ax_loss, "loss", "masked-token cross-entropy"),
                            (ax_acc, "accuracy", "masked-token accuracy")):
    ax.plot(history["step"], history[column], color="C0", alpha=0.3, lw=0.8, label="per step")
    ax.plot(history["step"], history[column].rolling(window, min_periods=1).mean(), color="C0",
            label=f"mean of {window} steps")
    ax.set(xlabel="step", ylabel=label)
  ax_loss.set_title("MLM loss")
  ax_acc.set_title("Masked tokens predicted right")
  ax_acc.set_ylim(0, 1)
  ax_loss.legend()
  return fig


# ----------------------------------------------------------------------------------------------
# Handing the encoder on


def transfer_encoder(source: Any, target: Any) -> list[str]:
  """Copies the encoder weights of source (e.g. a pretrained BertForMaskedLM) into target's.

  Both must wrap an encoder of the same shape (``.bert``, or be a BertModel). Parameters the
  source lacks (the [CLS] pooler of a "cls"-pooling classifier: MLM models have none) keep their
  initial values and are returned.

  Returns:
    nnx paths of target encoder parameters that were not copied.

  Raises:
    ValueError: the encoders' shapes differ.
  """
  src_bert = checkpoint.as_bert(source)
  dst_bert = checkpoint.as_bert(target)
  src, dst = src_bert.config, dst_bert.config
  shape = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
           "max_position_embeddings", "type_vocab_size")
  diff = {k: (getattr(src, k), getattr(dst, k)) for k in shape
          if getattr(src, k) != getattr(dst, k)}
  if diff:
    raise ValueError(f"encoder shapes differ (source, target): {diff}")
  src_params = checkpoint.flat_params(src_bert)
  not_copied = []
  for key, var in checkpoint.flat_params(dst_bert).items():
    if key in src_params:
      var.set_value(jnp.array(src_params[key][...], copy=True))  # no shared buffers
    else:
      not_copied.append(key)
  return not_copied


__all__ = [
    "IGNORE_LABEL", "evaluate_mlm", "make_mlm_batches", "make_mlm_optimizer", "mask_tokens",
    "max_predictions",
    "mlm_eval_step", "mlm_loss_fn", "mlm_train_step", "plot_mlm_history", "pretrain_mlm",
    "transfer_encoder",
]

"""Review sentiment: labels from star ratings, BERT fine-tuning, prediction and baselines."""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np
import optax
import pandas as pd
from flax import nnx
from tokenizers import Tokenizer

from cvlib.text import bert as bert_lib
from cvlib import training
from cvlib.text import checkpoint, devices, embedding, tokens
from cvlib.text.bert import BertForSequenceClassification
from cvlib.text.labels import classification_metrics

Batch = dict[str, jax.Array]

# ----------------------------------------------------------------------------------------------
# Labels


def compute_class_weights(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
  """Balanced class weights n / (num_classes * count_c), as scikit-learn's "balanced".

  Real shops are 60-90% five-star, so unweighted training learns "always positive". A class
  absent from labels gets weight 0 (with a warning): there is nothing to weight.

  Returns:
    float32 [num_classes].

  Raises:
    ValueError: empty labels or a label outside [0, num_classes).
  """
  labels = np.asarray(labels)
  if labels.size == 0:
    raise ValueError("labels is empty")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"labels must lie in [0, {num_classes}), got values "
                     f"{sorted(set(labels.tolist()) - set(range(num_classes)))[:10]}")
  counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
  if (counts == 0).any():
    warnings.warn(f"classes {np.flatnonzero(counts == 0).tolist()} have no training example",
                  stacklevel=2)
  weights = np.where(counts > 0, labels.size / (num_classes * np.maximum(counts, 1)), 0.0)
  return weights.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Optimiser


# ----------------------------------------------------------------------------------------------
# Steps

_MODEL_KEYS = ("input_ids", "attention_mask", "label", "weight")


def loss_fn(model: BertForSequenceClassification, batch: Batch) -> tuple[jax.Array, jax.Array]:
  """Weighted mean cross-entropy (dropout on); batch["weight"] = class weight x row weight."""
  logits = model(batch["input_ids"], batch["attention_mask"], deterministic=False)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])  # [batch]
  weight = batch["weight"]
  return jnp.sum(weight * ce) / jnp.maximum(jnp.sum(weight), 1e-9), logits


# graph=False (tree mode): these models share no Variable between two places, so they can be
# flattened as plain pytrees, which costs ~3 ms per call instead of ~80 ms for graph mode on
# MiniLM + AdamW state (15% of a 32-token training step on 2 CPU cores). Results are identical.
# The model's and optimizer's buffers are donated: XLA writes the new weights and moments into
# them instead of allocating ~270 MB per MiniLM step (do not keep references to old arrays).
@nnx.jit(graph=False, donate_argnums=(0, 1))
def train_step(model: BertForSequenceClassification, optimizer: nnx.Optimizer,
               batch: Batch) -> jax.Array:
  """One optimisation step; updates model and optimizer in place, returns the batch loss."""
  (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
  optimizer.update(model, grads)
  return loss


@devices.inference_jit  # a pure function of the model: see devices.inference_jit
def eval_step(model: BertForSequenceClassification, batch: Batch) -> tuple[jax.Array, jax.Array]:
  """Per-row cross-entropy [batch] and logits [batch, classes], dropout off."""
  logits = model(batch["input_ids"], batch["attention_mask"], deterministic=True)
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]), logits


def _model_batch(batch: dict[str, np.ndarray], class_weights: np.ndarray,
                 mesh: Any = None) -> Batch:
  out = {k: batch[k] for k in _MODEL_KEYS}
  # Filler rows keep weight 0 whatever their (dummy) label's class weight.
  out["weight"] = (batch["weight"] * class_weights[batch["label"]]).astype(np.float32)
  return devices.put_batch(out, mesh)


# ----------------------------------------------------------------------------------------------
# Fine-tuning


def _check_labelled(texts: Sequence[str], labels: Any, num_labels: int,
                    what: str) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or len(labels) != len(texts):
    raise ValueError(f"{what}: {len(texts)} texts but labels of shape {labels.shape}")
  if len(labels) == 0:
    raise ValueError(f"{what}: no examples")
  if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_labels:
    raise ValueError(f"{what}: labels must be ints in [0, {num_labels}) (the model's num_labels), "
                     f"got dtype {labels.dtype} with values {np.unique(labels)[:10].tolist()}")
  return labels.astype(np.int32)


def _evaluate(model: BertForSequenceClassification, batches: list[dict[str, np.ndarray]],
              class_weights: np.ndarray, n: int, mesh: Any = None) -> tuple[float, np.ndarray]:
  """Class-weighted mean loss and logits [n, classes] in input order."""
  ce_sum, weight_sum = 0.0, 0.0
  logits_out = np.zeros((n, model.num_labels), np.float32)
  for batch in batches:
    mb = _model_batch(batch, class_weights, mesh)
    ce, logits = eval_step(model, mb)
    weight = np.asarray(mb["weight"])
    ce_sum += float(np.sum(np.asarray(ce) * weight))
    weight_sum += float(np.sum(weight))
    real = batch["index"] >= 0
    logits_out[batch["index"][real]] = np.asarray(logits)[real]
  return ce_sum / max(weight_sum, 1e-9), logits_out


def _train_epoch(model: BertForSequenceClassification, optimizer: nnx.Optimizer,
                 batches: list[dict[str, np.ndarray]], class_weights: np.ndarray, *,
                 log_prefix: str | None, log_every_s: float, mesh: Any = None) -> float:
  """One pass over batches; returns the epoch's class-weighted mean training loss.

  Progress goes out as plain lines (no carriage returns), at most one per log_every_s, so that
  papermill logs stay readable; log_prefix None keeps quiet.
  """
  start = last_log = time.perf_counter()
  losses, weights = [], []
  for step, batch in enumerate(batches, 1):
    losses.append(train_step(model, optimizer, _model_batch(batch, class_weights, mesh)))
    weights.append(float(np.sum(batch["weight"] * class_weights[batch["label"]])))
    if log_prefix is not None and time.perf_counter() - last_log >= log_every_s:
      last_log = time.perf_counter()
      rate = step * len(batch["weight"]) / (last_log - start)
      print(f"{log_prefix} step {step}/{len(batches)} loss {float(losses[-1]):.4f} "
            f"{rate:.1f} seq/s", flush=True)
  # Batch losses are weighted means; weighting them by batch weight gives the epoch's mean.
  return float(np.average(np.asarray(jax.device_get(losses)), weights=weights))


def finetune_sentiment(model: BertForSequenceClassification, tokenizer: Tokenizer,
                       train_texts: Sequence[str], train_labels: Sequence[int] | np.ndarray,
                       val_texts: Sequence[str], val_labels: Sequence[int] | np.ndarray, *,
                       epochs: int, batch_size: int, learning_rate: float,
                       warmup_ratio: float = 0.1, weight_decay: float = 0.01,
                       max_grad_norm: float | None = 1.0, patience: int | None = 2,
                       seed: int = 0, buckets: Sequence[int] = (32, 64, 128),
                       progress: bool = True, log_every_s: float = 15.0,
                       checkpoint_dir: str | os.PathLike | None = None,
                       mesh: Any = None, truncation: str = "head",
                       trainable: Any = None
                       ) -> tuple[BertForSequenceClassification, pd.DataFrame]:
  """Fine-tunes a sequence classifier with class-balanced loss and early stopping.

  Texts longer than the largest bucket are cut to it (``truncation``). After each epoch the model
  is scored on the validation set; the weights of the epoch with the best validation macro-F1 are
  kept and restored at the end; training stops after ``patience`` epochs without improvement. With
  ``checkpoint_dir`` the best and the last epoch's weights are orbax checkpoints on disk
  (``<checkpoint_dir>/best``, ``<checkpoint_dir>/last``, steps numbered by epoch) and the best is
  restored from there; without it, from a host copy in memory.

  Args:
    model: a BertForSequenceClassification, updated in place (and returned).
    tokenizer: from ``tokens.load_tokenizer``.
    train_texts: training texts.
    train_labels: int labels in [0, model.num_labels).
    val_texts: validation texts.
    val_labels: int labels in [0, model.num_labels).
    epochs: maximum number of epochs.
    batch_size: rows per step (fixed; filler rows have weight 0).
    learning_rate: peak AdamW learning rate.
    warmup_ratio: fraction of all steps spent warming up, in [0, 1).
    weight_decay: AdamW decoupled weight decay (not on biases and LayerNorm).
    max_grad_norm: global-norm clipping; None disables it.
    patience: epochs without validation macro-F1 improvement before stopping; None never stops.
    seed: shuffling and dropout seed (the run is deterministic for a seed on CPU).
    buckets: sequence length buckets; the step compiles once per bucket.
    progress: print a line at most every log_every_s seconds and one per epoch.
    log_every_s: seconds between progress lines within an epoch.
    checkpoint_dir: folder for orbax checkpoints (best and last epoch); None keeps the best in
      memory only.
    mesh: a ``devices.make_mesh()`` mesh to split every batch over several devices (data
      parallel; batch_size must divide over them); None runs on the default device.
    truncation: how texts longer than the largest bucket are cut: "head" (their start) or
      "head_tail" (start and end; ``tokens.TRUNCATIONS``).
    trainable: None trains every parameter; else a function of a parameter's dotted nnx path
      ("bert.encoder.layer.5.attention.self.query.kernel") that says whether it is trained
      (parameter-efficient fine-tuning: the others keep their starting values).

  Returns:
    (model with the best weights, history): one row per epoch with epoch, train_loss, val_loss,
    val_accuracy, val_macro_f1, learning_rate (at the epoch's end), seconds, best.

  Raises:
    ValueError: bad arguments or labels.
  """
  if not isinstance(model, BertForSequenceClassification):
    raise ValueError(f"model must be a BertForSequenceClassification, got {type(model).__name__}")
  for name, value in (("epochs", epochs), ("batch_size", batch_size)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be an int >= 1, got {value!r}")
  if not 0.0 <= warmup_ratio < 1.0:
    raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio!r}")
  if patience is not None and (not isinstance(patience, int) or patience < 1):
    raise ValueError(f"patience must be an int >= 1 or None, got {patience!r}")
  num_labels = model.num_labels
  train_y = _check_labelled(train_texts, train_labels, num_labels, "train")
  val_y = _check_labelled(val_texts, val_labels, num_labels, "validation")
  buckets = tokens.check_buckets(buckets)
  pad_id = tokens.pad_token_id(tokenizer)
  devices.check_batch_size(batch_size, mesh)

  class_weights = compute_class_weights(train_y, num_labels)
  train_ids = tokens.tokenize_texts(tokenizer, train_texts, max_length=buckets[-1],
                                    truncation=truncation)
  val_batches = tokens.make_batches(tokenizer, val_texts, val_y, batch_size=batch_size,
                                    buckets=buckets, truncation=truncation)
  make_epoch = functools.partial(tokens.batches_from_ids, train_ids, train_y,
                                 batch_size=batch_size, buckets=buckets, shuffle=True,
                                 pad_id=pad_id)
  steps_per_epoch = len(make_epoch(seed=seed))
  total_steps = epochs * steps_per_epoch
  warmup_steps = int(round(warmup_ratio * total_steps))
  tx = training.make_optimizer(learning_rate=learning_rate, warmup_steps=warmup_steps,
                      total_steps=total_steps, weight_decay=weight_decay,
                      max_grad_norm=max_grad_norm)
  if trainable is not None:
    tx = frozen_except(tx, trainable)
  schedule = training.make_schedule(learning_rate=learning_rate, warmup_steps=warmup_steps,
                           total_steps=total_steps)  # the one inside tx, for the history
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  nnx.reseed(model, default=seed, dropout=seed)  # dropout masks follow this run's seed
  if mesh is not None:
    devices.replicate(model, optimizer, mesh=mesh)
  best_ckpt = last_ckpt = None
  if checkpoint_dir is not None:
    best_ckpt = checkpoint.Checkpoints(Path(checkpoint_dir) / "best", best_metric="val_macro_f1")
    last_ckpt = checkpoint.Checkpoints(Path(checkpoint_dir) / "last")

  def train_epoch(epoch: int) -> dict[str, float]:
    loss = _train_epoch(model, optimizer, make_epoch(seed=seed + epoch), class_weights,
                        log_prefix=f"epoch {epoch}/{epochs}" if progress else None,
                        log_every_s=log_every_s, mesh=mesh)
    return {"train_loss": loss}

  def evaluate(epoch: int) -> dict[str, float]:
    val_loss, logits = _evaluate(model, val_batches, class_weights, len(val_y), mesh)
    metrics = classification_metrics(val_y, logits.argmax(-1), num_classes=num_labels)
    return {"val_loss": val_loss, "val_accuracy": metrics["accuracy"],
            "val_macro_f1": metrics["macro_f1"],
            "learning_rate": float(schedule(epoch * steps_per_epoch - 1))}

  def save_checkpoints(epoch: int, row: dict[str, Any], improved: bool) -> None:
    ckpt_metrics = {"val_macro_f1": row["val_macro_f1"], "val_loss": row["val_loss"]}
    if improved:  # only strict improvements: on ties the earlier epoch stays the best
      best_ckpt.save(epoch, model, metrics=ckpt_metrics)
    last_ckpt.save(epoch, model, metrics=ckpt_metrics)

  history = training.fit(
      model, train_epoch, epochs=epochs, evaluate=evaluate,
      stopping=training.EarlyStopping("val_macro_f1", mode="max", patience=patience),
      keep_best=best_ckpt is None, on_epoch_end=None if best_ckpt is None else save_checkpoints,
      progress=progress, desc="fine-tuning",
      describe=lambda r: (f"train loss {r['train_loss']:.4f}, val loss {r['val_loss']:.4f}, val acc "
                          f"{r['val_accuracy']:.3f}, val macro-F1 {r['val_macro_f1']:.3f}"
                          f"{' (best)' if r['best'] else ''}, {r['seconds']:.1f} s"))
  if best_ckpt is not None:
    best_ckpt.restore(model)
    best_ckpt.close()
    last_ckpt.close()
  if mesh is not None:  # the best weights come back on one device, from disk or a host copy
    devices.replicate(model, mesh=mesh)
  history["best"] = history["epoch"] == int(history.loc[history["val_macro_f1"].idxmax(), "epoch"])
  return model, history


def frozen_except(tx: optax.GradientTransformation, trainable: Any
                  ) -> optax.GradientTransformation:
  """``tx`` for the parameters whose dotted nnx path ``trainable`` accepts; no update (and no
  optimiser moments) for the others."""

  def labels(params: Any) -> Any:
    def label(path: tuple, _: Any) -> str:
      return "train" if trainable(".".join(training.param_names(path))) else "frozen"
    return jax.tree_util.tree_map_with_path(label, params)

  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


# ----------------------------------------------------------------------------------------------
# Prediction


@devices.inference_jit
def _proba_step(model: BertForSequenceClassification, input_ids: jax.Array,
                attention_mask: jax.Array) -> jax.Array:
  return jax.nn.softmax(model(input_ids, attention_mask, deterministic=True), axis=-1)


def predict_proba(model: BertForSequenceClassification, tokenizer: Tokenizer,
                  texts: Sequence[str], *, batch_size: int = 64,
                  buckets: Sequence[int] = tokens.DEFAULT_BUCKETS,
                  truncation: str = "head") -> np.ndarray:
  """Class probabilities [len(texts), num_labels], row i for texts[i]."""
  return embedding.predict_batched(_proba_step, model, tokenizer, texts,
                                    out_dim=model.num_labels, batch_size=batch_size,
                                    buckets=buckets, truncation=truncation)


@devices.inference_jit
def proba_embed_step(model: BertForSequenceClassification, input_ids: jax.Array,
                      attention_mask: jax.Array) -> jax.Array:
  sequence_output, cls_pooled = model.bert(input_ids, attention_mask, deterministic=True)
  mean = bert_lib.mean_pool(sequence_output, attention_mask)  # [batch, hidden]
  features = mean if model.pooling == "mean" else cls_pooled
  proba = jax.nn.softmax(model.classifier(features), axis=-1)  # [batch, labels]
  return jnp.concatenate([proba, bert_lib.l2_normalize(mean)], axis=-1)


def predict_proba_and_embed(model: BertForSequenceClassification, tokenizer: Tokenizer,
                            texts: Sequence[str], *, batch_size: int = 64,
                            buckets: Sequence[int] = tokens.DEFAULT_BUCKETS,
                            truncation: str = "head") -> tuple[np.ndarray, np.ndarray]:
  """``predict_proba`` and ``encode_texts`` in one encoder pass (half the time of both).

  Returns:
    (probabilities [n, num_labels], L2-normalised mean-pooled embeddings [n, hidden]), rows in the
    order of texts.
  """
  k = model.num_labels
  out = embedding.predict_batched(proba_embed_step, model, tokenizer, texts,
                                   out_dim=k + model.bert.config.hidden_size,
                                   batch_size=batch_size, buckets=buckets,
                                   truncation=truncation)
  return out[:, :k], out[:, k:]


def encode_texts(model_or_bert: Any, tokenizer: Tokenizer, texts: Sequence[str], *,
                 batch_size: int = 64,
                 buckets: Sequence[int] = tokens.DEFAULT_BUCKETS) -> np.ndarray:
  """Mean-pooled, L2-normalised embeddings [len(texts), hidden] from a (fine-tuned) BERT.

  Args:
    model_or_bert: a BertModel or a model with ``.bert`` (a fine-tuned classifier).
    tokenizer: from ``tokens.load_tokenizer``.
    texts: strings.
    batch_size: rows per batch.
    buckets: sequence length buckets.

  Returns:
    float32 [len(texts), hidden], in the order of texts.
  """
  return embedding.embed(texts, model=model_or_bert, tokenizer=tokenizer, batch_size=batch_size,
                          buckets=buckets)


# ----------------------------------------------------------------------------------------------
# Baselines


# ----------------------------------------------------------------------------------------------
# Plots


def plot_history(history: pd.DataFrame) -> matplotlib.figure.Figure:
  """Training and validation loss, and validation macro-F1, per epoch.

  Raises:
    ValueError: history lacks the columns finetune_sentiment writes.
  """
  needed = ["epoch", "train_loss", "val_loss", "val_macro_f1"]
  missing = [c for c in needed if c not in history.columns]
  if missing:
    raise ValueError(f"history lacks columns {missing} (have: {list(history.columns)})")
  fig = matplotlib.figure.Figure(figsize=(9, 3.5), layout="constrained")
  ax_loss, ax_f1 = fig.subplots(1, 2)
  ax_loss.plot(history["epoch"], history["train_loss"], marker="o", label="train")
  ax_loss.plot(history["epoch"], history["val_loss"], marker="o", label="validation")
  ax_loss.set(xlabel="epoch", ylabel="class-weighted cross-entropy", title="Loss")
  ax_loss.legend()
  ax_f1.plot(history["epoch"], history["val_macro_f1"], marker="o", color="C2")
  if "best" in history.columns and history["best"].any():
    best = history[history["best"]]
    ax_f1.scatter(best["epoch"], best["val_macro_f1"], s=120, facecolors="none",
                  edgecolors="black", label="kept")
    ax_f1.legend()
  ax_f1.set(xlabel="epoch", ylabel="macro-F1", title="Validation macro-F1", ylim=(0, 1.02))
  for ax in (ax_loss, ax_f1):
    ax.xaxis.get_major_locator().set_params(integer=True)
  return fig


__all__ = [
    "compute_class_weights", "encode_texts", "eval_step", "finetune_sentiment", "frozen_except",
    "loss_fn", "plot_history", "predict_proba",
    "predict_proba_and_embed", "train_step",
]

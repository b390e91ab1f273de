"""One optimiser recipe and one training loop for the models cvlib trains: the sentiment classifier,
masked-LM, the ZILN value networks and the end-to-end value model.

:func:`make_optimizer` is AdamW with warmup and linear decay, global-norm clipping and no weight
decay on biases and LayerNorm (:func:`make_two_rate_optimizer` gives a head its own rate).

Each trainer says what one epoch is (``train_epoch``: its steps, returning the epoch's training
metrics) and how to score the model after it (``evaluate``); :func:`fit` runs the epochs, keeps
the weights of the best epoch by the :class:`EarlyStopping` rule (a host copy, restored at the
end), stops when the rule says so, reports progress and returns one history row per epoch. The
steps themselves (jit'd, one compile per batch shape) stay with their models.

Progress is one plain line per epoch on stdout, which papermill logs and executed notebooks keep
readable; in a terminal a tqdm bar over the epochs runs above those lines.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx
from tqdm import tqdm

Metrics = dict[str, Any]


# --- the optimiser -------------------------------------------------------------------------------


def make_schedule(*, learning_rate: float, warmup_steps: int, total_steps: int,
                  decay: str = "linear") -> Callable[[jax.Array], jax.Array]:
  """Linear warmup to learning_rate, then linear or cosine decay towards 0 at total_steps.

  Warmup reaches learning_rate * (step + 1) / warmup_steps, so the first step already moves the
  weights (optax's linear_schedule starts at exactly 0, a wasted step).
  """
  if decay not in ("linear", "cosine"):
    raise ValueError(f"decay must be 'linear' or 'cosine', got {decay!r}")

  def schedule(step: jax.Array) -> jax.Array:
    step = jnp.asarray(step, jnp.float32)
    warm = learning_rate * (step + 1.0) / max(warmup_steps, 1)
    progress = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
    if decay == "linear":
      decayed = learning_rate * (1.0 - progress)
    else:
      decayed = learning_rate * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < warmup_steps, warm, decayed)

  return schedule


def param_names(path: tuple) -> list[str]:
  """The names along a parameter's tree path (``tree_map_with_path``), e.g. ["bert", "encoder",
  "layer", "5", "attention", "self", "query", "kernel"]."""
  names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
  return [n for n in names if n != "value"]  # nnx Variables add a trailing .value


def decay_mask(params: Any) -> Any:
  """True for weights that get weight decay: everything except biases and LayerNorm parameters."""

  def wants_decay(path: tuple, _: Any) -> bool:
    names = param_names(path)
    return not ("LayerNorm" in names or names[-1] == "bias")

  return jax.tree_util.tree_map_with_path(wants_decay, params)


# Cached: nnx.jit keys its compilation cache on the optimizer's (static) transformation, so
# returning the same object for the same settings lets a second fine-tuning run (a rerun, a seed
# sweep) reuse the compiled train_step instead of compiling it again. The object is immutable.
@functools.lru_cache(maxsize=16)
def make_optimizer(*, learning_rate: float, warmup_steps: int, total_steps: int,
                   weight_decay: float = 0.01, max_grad_norm: float | None = 1.0,
                   decay: str = "linear") -> optax.GradientTransformation:
  """AdamW with warmup + decay, global-norm clipping, no weight decay on biases and LayerNorm.

  Args:
    learning_rate: peak learning rate.
    warmup_steps: steps of linear warmup (0 for none).
    total_steps: steps of the whole run.
    weight_decay: decoupled weight decay.
    max_grad_norm: clip the global gradient norm to this; None disables clipping.
    decay: "linear" or "cosine" after warmup.

  Returns:
    An optax GradientTransformation for ``nnx.Optimizer(model, tx, wrt=nnx.Param)``.

  Raises:
    ValueError: a value out of range.
  """
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
  if not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
    raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
  if not isinstance(warmup_steps, (int, np.integer)) or not 0 <= warmup_steps <= total_steps:
    raise ValueError(f"warmup_steps must be an int in [0, total_steps={total_steps}], "
                     f"got {warmup_steps!r}")
  if not weight_decay >= 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
  if max_grad_norm is not None and not max_grad_norm > 0:
    raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
  schedule = make_schedule(learning_rate=learning_rate, warmup_steps=int(warmup_steps),
                           total_steps=int(total_steps), decay=decay)
  adamw = optax.adamw(schedule, weight_decay=weight_decay, mask=decay_mask)
  if max_grad_norm is None:
    return adamw
  return optax.chain(optax.clip_by_global_norm(max_grad_norm), adamw)


def make_two_rate_optimizer(labels: Callable[[Any], Any], *, learning_rate: float,
                            head_learning_rate: float, warmup_steps: int, total_steps: int,
                            weight_decay: float = 0.01,
                            max_grad_norm: float | None = 1.0) -> optax.GradientTransformation:
  """``make_optimizer`` with one peak rate for the encoder and another for a new head.

  A head that starts from random values needs a rate that would wreck a pretrained encoder.
  Clipping is on the global norm of all gradients together.

  Args:
    labels: maps the parameter tree to the same tree of "encoder" / "head" labels
      (``optax.multi_transform``'s ``param_labels``).
    learning_rate: peak learning rate of the encoder.
    head_learning_rate: peak learning rate of the head.
    warmup_steps, total_steps, weight_decay: as ``make_optimizer``.
    max_grad_norm: clip the global gradient norm to this; None disables clipping.

  Raises:
    ValueError: a value out of range.
  """
  if not head_learning_rate > 0:
    raise ValueError(f"head_learning_rate must be > 0, got {head_learning_rate!r}")
  if max_grad_norm is not None and not max_grad_norm > 0:
    raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}")

  def adamw(lr: float) -> optax.GradientTransformation:
    return make_optimizer(learning_rate=lr, warmup_steps=warmup_steps, total_steps=total_steps,
                          weight_decay=weight_decay, max_grad_norm=None)

  tx = optax.multi_transform({"encoder": adamw(learning_rate), "head": adamw(head_learning_rate)},
                             labels)
  if max_grad_norm is None:
    return tx
  return optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)


# --- the loop -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Which history column judges an epoch, which way is better, and when to give up.

  Only strict improvements count: on ties the earlier epoch stays the best.
  """
  monitor: str  # a key of the epoch's metrics, e.g. "val_macro_f1" or "val_loss"
  mode: str = "min"  # "min" or "max"
  patience: int | None = None  # epochs without improvement before stopping; None never stops
  stop_if_not_finite: bool = False  # stop at once when the monitored value is NaN or infinite

  def __post_init__(self):
    if self.mode not in ("min", "max"):
      raise ValueError(f"EarlyStopping.mode must be 'min' or 'max', got {self.mode!r}")
    if self.patience is not None and (not isinstance(self.patience, numbers.Integral)
                                      or self.patience < 1):
      raise ValueError(f"patience must be an int >= 1 or None, got {self.patience!r}")

  def initial(self) -> float:
    return math.inf if self.mode == "min" else -math.inf

  def improved(self, value: float, best: float) -> bool:
    return value < best if self.mode == "min" else value > best


def snapshot(model: nnx.Module) -> Any:
  """The model's parameters as a host copy (not a view of device buffers that later steps reuse)."""
  return jax.device_get(nnx.state(model, nnx.Param))


def restore(model: nnx.Module, params: Any) -> None:
  """Puts a :func:`snapshot` back into the model, as device arrays."""
  nnx.update(model, jax.tree.map(jnp.asarray, params))


def fit(model: nnx.Module, train_epoch: Callable[[int], Metrics], *, epochs: int | None,
        evaluate: Callable[[int], Metrics] | None = None, stopping: EarlyStopping | None = None,
        keep_best: bool = True, on_epoch_end: Callable[[int, Metrics, bool], None] | None = None,
        progress: bool = False, desc: str = "training",
        describe: Callable[[Metrics], str] | None = None) -> pd.DataFrame:
  """Runs epochs of ``train_epoch`` with early stopping and best-weight restore.

  Args:
    model: the nnx model the epochs update in place; with ``keep_best`` it ends with the weights
      of the best epoch by ``stopping``.
    train_epoch: ``epoch -> metrics`` (1-based); runs one epoch's steps. A ``"stop": True`` entry
      ends training after this epoch (a step budget reached); it is not kept in the history.
    epochs: the most epochs to run; None runs until ``train_epoch`` says stop.
    evaluate: ``epoch -> metrics`` after each epoch (validation), merged into the row.
    stopping: the rule judging epochs; None keeps the last weights and never stops early.
    keep_best: restore the best epoch's weights from a host copy at the end (off when the caller
      keeps checkpoints of its own).
    on_epoch_end: ``(epoch, row, improved)`` after each epoch, e.g. to save a checkpoint.
    progress: print a line per epoch ("epoch 2/5: ..."), and in a terminal show a tqdm bar.
    desc: the bar's label and the prefix of the early-stop line.
    describe: ``row -> text`` for the epoch's line (default: the monitored value).

  Returns:
    One row per epoch: epoch, the epoch's metrics, seconds and best (whether it improved on
    every earlier epoch; all False without ``stopping``).
  """
  if epochs is not None and (not isinstance(epochs, numbers.Integral) or epochs < 1):
    raise ValueError(f"epochs must be an int >= 1 or None, got {epochs!r}")
  rows: list[Metrics] = []
  best, best_params, stale = (stopping.initial() if stopping else None), None, 0
  bar = tqdm(total=epochs, desc=desc, unit="epoch", file=sys.stderr, dynamic_ncols=True,
             disable=not (progress and sys.stderr.isatty()))  # no "\r" bars in logs
  try:
    for epoch in _epochs(epochs):
      start = time.perf_counter()
      metrics = dict(train_epoch(epoch))
      stop = bool(metrics.pop("stop", False))
      if evaluate is not None:
        metrics.update(evaluate(epoch))
      improved = False
      if stopping is not None:
        value = float(metrics[stopping.monitor])
        improved = stopping.improved(value, best)
        if improved:
          best, stale = value, 0
          if keep_best:
            best_params = snapshot(model)
        else:
          stale += 1
      row = {"epoch": epoch, **metrics, "seconds": time.perf_counter() - start, "best": improved}
      rows.append(row)
      if on_epoch_end is not None:
        on_epoch_end(epoch, row, improved)
      bar.update(1)
      if progress:
        text = describe(row) if describe else _default_text(row, stopping)
        bar.write(f"epoch {epoch}/{epochs or '?'}: {text}", file=sys.stdout)
      if stop:
        break
      if stopping is not None:
        if stopping.stop_if_not_finite and not math.isfinite(value):
          break
        if stopping.patience is not None and stale >= stopping.patience:
          if progress:
            bar.write(f"{desc}: early stop, no {stopping.monitor} gain for {stopping.patience} "
                      "epoch(s)", file=sys.stdout)
          break
  finally:
    bar.close()
  if best_params is not None:
    restore(model, best_params)
  return pd.DataFrame(rows)


def _epochs(epochs: int | None) -> Iterator[int]:
  epoch = 0
  while epochs is None or epoch < epochs:
    epoch += 1
    yield epoch


def _default_text(row: Metrics, stopping: EarlyStopping | None) -> str:
  keys = [stopping.monitor] if stopping else [k for k in row if k.endswith("loss")][:1]
  parts = [f"{k} {row[k]:.4f}" for k in keys if isinstance(row.get(k), (int, float))]
  return ", ".join(parts + [f"{row['seconds']:.1f} s"]) + (" (best)" if row["best"] else "")

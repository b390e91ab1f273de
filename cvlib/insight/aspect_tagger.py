"""A review-level aspect tagger: MiniLM fine-tuned on the hand-labelled reviews (issue 20).

The aspect model (:mod:`cvlib.insight.aspect_model`) decides which aspects a review talks about
with a rule on frozen MiniLM features (a keyword checked against the clause's meaning). This
module is the learned alternative: MiniLM with six sigmoid outputs, one per default aspect,
fine-tuned on whole reviews with a weighted binary cross-entropy (:func:`multilabel_loss`, each
aspect's positives weighted by how rare they are), and a decision threshold per aspect chosen on
a validation part of the labelled reviews that the fine-tune does not train on
(:func:`choose_thresholds`). It reads the review as a whole (its first ``MAX_LENGTH`` tokens), so
it can learn the labelling guide's conventions that a keyword rule cannot state ("came in perfect
condition" is quality, "a huge supply" is an amount judged, a brand's praise is no service).

It does not ship: on new rows of the shops it was trained on it tags a little better than the
rule (the tenth, eleventh and thirteenth draws), but on a shop it was not trained on it tags
worse (leave one domain out, ``benchmarks/aspect_tagger.py --recipe``), and a shop trying cvlib
is one it was not trained on. The recipe stays here, with :class:`ReviewTagger`, for that
benchmark and for a tagger that does generalise.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# The aspects the tagger's outputs stand for, in order (the English defaults).
ASPECTS = ("delivery", "quality", "price", "size_fit", "service", "packaging")
SEED = 0
MAX_LENGTH = 128
BUCKETS = (32, 64, 128)
BATCH_SIZE = 16
WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.01
# Share of each labelled source kept apart to choose the thresholds on.
VAL_SHARE = 0.2
POS_WEIGHT_CAP = 10.0
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


def small(path: str) -> bool:
  """Every bias and LayerNorm (BitFit), the last layer's attention query and value weights, the
  classifier (dotted nnx paths): 0.3 M parameters."""
  last = "bert.encoder.layer.5.attention.self_attn."
  return (path.startswith("classifier.") or path.endswith(".bias") or ".LayerNorm." in path
          or path in (last + "query.kernel", last + "value.kernel"))


def top3(path: str) -> bool:
  """The last three of MiniLM's six layers and the classifier: 5.3 M parameters."""
  return path.startswith("classifier.") or any(
      path.startswith(f"bert.encoder.layer.{i}.") for i in (3, 4, 5))


def full(path: str) -> bool:  # pylint: disable=unused-argument
  """Every parameter: 22.7 M."""
  return True


# Which parameters a tagger variant trains, by name, and its (peak learning rate,
# epochs): chosen for "small" and "full" on the first four draws (benchmarks/aspect_tagger.py,
# benchmarks/results/aspect_tagger.json), "top3" taking "full"'s.
VARIANTS: dict[str, Callable[[str], bool]] = {"small": small, "top3": top3, "full": full}
SETTINGS = {"small": (3e-3, 3), "top3": (1.5e-4, 4), "full": (1.5e-4, 4)}
# The variant measured (benchmarks/aspect_tagger.py --recipe).
VARIANT = "top3"


# --- pure parts -----------------------------------------------------------------------------------

def positive_weights(targets: np.ndarray, cap: float = POS_WEIGHT_CAP) -> np.ndarray:
  """Per aspect, the weight of a positive in the loss: negatives / positives, in [1, cap].

  Args:
    targets: [n, aspects] 0/1.
    cap: the largest weight (an aspect with no positive gets it too).

  Returns:
    float32 [aspects].
  """
  targets = np.asarray(targets, np.float64)
  pos = targets.sum(0)
  neg = len(targets) - pos
  ratio = np.where(pos > 0, neg / np.maximum(pos, 1), cap)
  return np.clip(ratio, 1.0, cap).astype(np.float32)


def multilabel_loss(logits: Any, targets: Any, pos_weight: Any, row_weight: Any) -> Any:
  """Weighted binary cross-entropy with logits, averaged over the real rows and the aspects.

  loss(row, a) = pos_weight[a] * y * softplus(-z) + (1 - y) * softplus(z); rows of weight 0
  (batch filler) do not count.

  Args:
    logits: [batch, aspects].
    targets: [batch, aspects] 0/1.
    pos_weight: [aspects].
    row_weight: [batch].

  Returns:
    A scalar.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  z = logits.astype(jnp.float32)
  y = targets.astype(jnp.float32)
  per = pos_weight[None, :] * y * jax.nn.softplus(-z) + (1.0 - y) * jax.nn.softplus(z)
  total = jnp.sum(row_weight[:, None] * per)
  return total / jnp.maximum(jnp.sum(row_weight) * z.shape[1], 1e-9)


def f1_counts(pred: np.ndarray, true: np.ndarray) -> tuple[float, float, float]:
  """Micro precision, recall, F1 of 0/1 arrays (0 where undefined)."""
  pred, true = np.asarray(pred, bool), np.asarray(true, bool)
  tp = float((pred & true).sum())
  p = tp / pred.sum() if pred.sum() else 0.0
  r = tp / true.sum() if true.sum() else 0.0
  return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def choose_thresholds(scores: np.ndarray, true: np.ndarray,
                      grid: Sequence[float] = THRESHOLD_GRID) -> np.ndarray:
  """Per aspect, the threshold of ``grid`` with the best F1 of ``scores >= t`` against ``true``.

  On equal F1 the threshold nearest 0.5 wins (then the lower); an aspect without a positive in
  ``true`` gets 0.5.

  Args:
    scores: [n, aspects] in [0, 1].
    true: [n, aspects] 0/1.
    grid: candidate thresholds.

  Returns:
    float [aspects].
  """
  scores, true = np.asarray(scores, np.float64), np.asarray(true, bool)
  grid = np.asarray(grid, np.float64)
  order = np.lexsort((grid, np.abs(grid - 0.5)))  # nearest 0.5 first, then the lower
  out = np.full(scores.shape[1], 0.5)
  for a in range(scores.shape[1]):
    if not true[:, a].any():
      continue
    f1 = np.array([f1_counts(scores[:, a] >= t, true[:, a])[2] for t in grid[order]])
    out[a] = grid[order][int(np.argmax(f1))]
  return out


def inner_split(sources: Sequence[str], share: float = VAL_SHARE, seed: int = SEED) -> np.ndarray:
  """bool [n]: the validation rows, ``share`` of each source's rows (rounded), seeded."""
  sources = np.asarray(sources)
  rng = np.random.default_rng(seed)
  val = np.zeros(len(sources), bool)
  for s in sorted(set(sources.tolist())):
    idx = np.flatnonzero(sources == s)
    val[rng.choice(idx, int(round(share * len(idx))), replace=False)] = True
  return val


# --- fine-tuning and prediction ----------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _steps() -> tuple[Callable, Callable]:
  """The jitted train and predict steps (built on first use: jax is imported lazily)."""
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from cvlib.text import devices  # pylint: disable=import-outside-toplevel

  def loss_fn(model: Any, batch: dict) -> Any:
    logits = model(batch["input_ids"], batch["attention_mask"], deterministic=False)
    return multilabel_loss(logits, batch["targets"], batch["pos_weight"], batch["weight"])

  @nnx.jit(graph=False, donate_argnums=(0, 1))
  def train_step(model: Any, optimizer: Any, batch: dict) -> Any:
    loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
    optimizer.update(model, grads)
    return loss

  @devices.inference_jit
  def proba_step(model: Any, input_ids: Any, attention_mask: Any) -> Any:
    return jax.nn.sigmoid(model(input_ids, attention_mask, deterministic=True))

  return train_step, proba_step


def predict(model: Any, tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
  """Sigmoid outputs [n, aspects] of a tagger network."""
  from cvlib.text import embedding  # pylint: disable=import-outside-toplevel
  return embedding.predict_batched(_steps()[1], model, tokenizer, list(texts),
                                   out_dim=len(ASPECTS), batch_size=64, buckets=BUCKETS)


def finetune(texts: Sequence[str], targets: np.ndarray, tokenizer: Any, *,
             variant: str = VARIANT, learning_rate: float | None = None,
             epochs: int | None = None, schedule_epochs: int | None = None,
             on_epoch: Callable[[int, Any], None] | None = None) -> tuple[Any, dict[str, Any]]:
  """MiniLM + a six-output linear head trained with :func:`multilabel_loss`.

  The learning-rate schedule (warmup then linear decay) spans ``schedule_epochs`` (default
  ``epochs``) and training stops after ``epochs``, so a shorter run is a longer one stopped
  early. Seeded (``SEED``): the same texts give the same network on CPU.

  Args:
    texts: review texts.
    targets: [n, aspects] 0/1.
    tokenizer: from :func:`cvlib.text.tokens.load_tokenizer`.
    variant: which parameters train (a key of ``VARIANTS``).
    learning_rate: peak learning rate (None: the variant's, ``SETTINGS``).
    epochs: epochs trained (None: the variant's).
    schedule_epochs: epochs the schedule spans (at least ``epochs``).
    on_epoch: ``on_epoch(epoch, model)`` after each epoch.

  Returns:
    (the network, how it went: seconds, steps, losses, parameters trained).
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from cvlib import training  # pylint: disable=import-outside-toplevel
  from cvlib.text import checkpoint, sentiment, tokens  # pylint: disable=import-outside-toplevel
  train_step = _steps()[0]
  trainable_fn = VARIANTS[variant]
  learning_rate = learning_rate or SETTINGS[variant][0]
  epochs = epochs or SETTINGS[variant][1]
  model, _ = checkpoint.load_classifier(len(ASPECTS), seed=SEED)
  ids = tokens.tokenize_texts(tokenizer, list(texts), max_length=MAX_LENGTH)
  targets = np.asarray(targets, np.float32)
  pos_weight = positive_weights(targets)
  pad = tokens.pad_token_id(tokenizer)

  def epoch_batches(epoch: int) -> list[dict]:
    return tokens.batches_from_ids(ids, batch_size=BATCH_SIZE, buckets=BUCKETS, shuffle=True,
                                   seed=SEED + epoch, pad_id=pad)

  per_epoch = len(epoch_batches(1))
  total = max(schedule_epochs or epochs, epochs) * per_epoch
  tx = training.make_optimizer(learning_rate=learning_rate,
                               warmup_steps=int(round(WARMUP_RATIO * total)), total_steps=total,
                               weight_decay=WEIGHT_DECAY, max_grad_norm=1.0)
  if variant != "full":
    tx = sentiment.frozen_except(tx, trainable_fn)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  nnx.reseed(model, default=SEED, dropout=SEED)
  losses, t0 = [], time.perf_counter()
  for epoch in range(1, epochs + 1):
    epoch_loss = []
    for batch in epoch_batches(epoch):
      real = batch["index"] >= 0
      y = np.zeros((len(real), len(ASPECTS)), np.float32)
      y[real] = targets[batch["index"][real]]
      mb = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "weight": batch["weight"], "targets": y, "pos_weight": pos_weight}
      epoch_loss.append(float(train_step(model, optimizer, mb)))
    losses.append(round(float(np.mean(epoch_loss)), 4))
    if on_epoch is not None:
      on_epoch(epoch, model)
  n_trained = sum(int(np.prod(v.shape)) for k, v in checkpoint.flat_params(model).items()
                  if trainable_fn(k))
  return model, {"variant": variant, "learning_rate": learning_rate,
                 "seconds": round(time.perf_counter() - t0, 1), "epochs": epochs,
                 "steps_per_epoch": per_epoch, "train_rows": len(ids), "train_loss": losses,
                 "trained_parameters": n_trained,
                 "pos_weight": [round(float(w), 3) for w in pos_weight]}


@dataclasses.dataclass
class ReviewTagger:
  """A fine-tuned tagger network, its per-aspect thresholds and how it was trained."""
  model: Any
  thresholds: np.ndarray  # [aspects]
  info: dict[str, Any]

  def proba(self, texts: Sequence[str | None]) -> np.ndarray:
    """[n, aspects] sigmoid outputs (0 for a missing or empty text)."""
    from cvlib.text import tokens  # pylint: disable=import-outside-toplevel
    values = [t if isinstance(t, str) and t.strip() else None for t in texts]
    keep = [i for i, t in enumerate(values) if t is not None]
    out = np.zeros((len(values), len(ASPECTS)), np.float32)
    if keep:
      out[keep] = predict(self.model, tokens.load_tokenizer(), [values[i] for i in keep])
    return out

  def tags(self, texts: Sequence[str | None]) -> np.ndarray:
    """[n, aspects] bool: the output reaches the aspect's threshold."""
    return self.proba(texts) >= self.thresholds[None, :]


def fit(texts: Sequence[str], targets: np.ndarray, sources: Sequence[str], *,
        trained_on: dict[str, Any]) -> ReviewTagger:
  """A tagger fine-tuned on labelled reviews: :func:`inner_split` keeps ``VAL_SHARE`` of each
  source apart, the network trains on the rest (:func:`finetune`, ``VARIANT``'s settings) and the
  thresholds are chosen on the part kept apart (:func:`choose_thresholds`).

  Args:
    texts: review texts.
    targets: [n, aspects] 0/1 labels, columns in ``ASPECTS`` order.
    sources: each review's shop (the split is per shop).
    trained_on: a record of the data, kept in the tagger's ``info``.
  """
  from cvlib.text import tokens  # pylint: disable=import-outside-toplevel
  texts, targets = list(texts), np.asarray(targets, bool)
  val = inner_split(sources)
  tokenizer = tokens.load_tokenizer()
  model, how = finetune([t for t, v in zip(texts, val) if not v], targets[~val], tokenizer)
  thresholds = choose_thresholds(predict(model, tokenizer, [t for t, v in zip(texts, val) if v]),
                                 targets[val])
  info = dict(trained_on, **how, validation_rows=int(val.sum()), max_length=MAX_LENGTH,
              trained=_lower_first(VARIANTS[how["variant"]].__doc__.split(":")[0]),
              thresholds=dict(zip(ASPECTS, np.round(thresholds, 3).tolist())))
  return ReviewTagger(model, thresholds, info)


def _lower_first(text: str) -> str:
  return text[:1].lower() + text[1:]

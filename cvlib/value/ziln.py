"""Zero-inflated lognormal (ZILN) customer value model.

The ZILN loss of Wang, Liu & Miao (2019), "A Deep Probabilistic Model for Customer Lifetime Value
Prediction" (google/lifetime_value): one network emits three logits per customer,

* ``l0``: log-odds that the customer returns (buys anything in the horizon),
* ``l1``: ``mu`` of the lognormal that the positive value follows,
* ``l2``: ``sigma`` of that lognormal through a softplus (clamped away from 0),

and the loss is ``BCE(y > 0, l0) - 1[y > 0] * log LogNormal(y; mu, sigma)``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import safetensors.numpy
from flax import nnx
from jax.scipy.special import ndtri

from cvlib import training

Batch = dict[str, jax.Array]

# As lifetime_value: sigma >= sqrt(keras epsilon) keeps log(sigma) and 1/sigma finite.
_SIGMA_MIN = math.sqrt(1e-7)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_WEIGHTS_FILE = "ziln.safetensors"
_CONFIG_FILE = "ziln.json"


def _split_logits(logits: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """[n, 3] logits -> (l0, mu, sigma), each [n]."""
  l0 = logits[..., 0]
  mu = logits[..., 1]
  sigma = jnp.maximum(jax.nn.softplus(logits[..., 2]), _SIGMA_MIN)
  return l0, mu, sigma


def ziln_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Zero-inflated lognormal negative log-likelihood, averaged over rows.

  Args:
    logits: [n, 3] network outputs (return log-odds, lognormal mu, pre-softplus sigma).
    labels: [n] non-negative targets (customer value in the horizon).
    weights: optional [n] non-negative row weights; the result is then the weighted mean
      (rows of weight 0 are ignored, which is how padded batches are handled).

  Returns:
    Scalar loss.
  """
  labels = labels.astype(logits.dtype)
  l0, mu, sigma = _split_logits(logits)
  positive = (labels > 0).astype(logits.dtype)
  classification = optax.sigmoid_binary_cross_entropy(l0, positive)  # [n]
  # Zeros get a dummy label of 1 so log() and the gradient stay finite; their term is masked.
  safe = jnp.where(labels > 0, labels, 1.0)
  log_y = jnp.log(safe)
  log_pdf = -log_y - jnp.log(sigma) - _LOG_SQRT_2PI - 0.5 * jnp.square((log_y - mu) / sigma)
  per_row = classification - positive * log_pdf  # [n]
  if weights is None:
    return jnp.mean(per_row)
  weights = weights.astype(logits.dtype)
  return jnp.sum(weights * per_row) / jnp.maximum(jnp.sum(weights), 1e-12)


def ranking_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None
                 ) -> jax.Array:
  """Pairwise logistic ranking loss on the log of the ZILN mean, averaged over ordered pairs.

  For every pair of rows whose labels differ, ``softplus(-(s_i - s_j))`` where row i has the
  larger label and ``s = log p + mu + sigma^2 / 2`` is the log of the predicted mean: small when
  the mean orders the pair as the labels do. The ZILN likelihood fits each customer's
  distribution; this term rewards the order of the means directly, which is what a Gini reads.

  Args:
    logits: [n, 3] network outputs.
    labels: [n] non-negative targets.
    weights: optional [n] row weights (0 drops a padded row from every pair).

  Returns:
    Scalar loss (0 when no pair has different labels).
  """
  l0, mu, sigma = _split_logits(logits)
  s = jax.nn.log_sigmoid(l0) + mu + 0.5 * jnp.square(sigma)  # [n]
  labels = labels.astype(logits.dtype)
  w = jnp.ones_like(labels) if weights is None else weights.astype(logits.dtype)
  above = (labels[:, None] > labels[None, :]).astype(logits.dtype) * w[:, None] * w[None, :]
  per_pair = jax.nn.softplus(-(s[:, None] - s[None, :]))  # [n, n]
  return jnp.sum(above * per_pair) / jnp.maximum(jnp.sum(above), 1.0)


def ziln_quantiles(logits: jax.Array, qs: Sequence[float] = (0.1, 0.9), *,
                   sigma_scale: float = 1.0) -> jax.Array:
  """Quantiles of the zero/lognormal mixture.

  The mixture has mass ``1 - p`` at 0, so its q-quantile is 0 when ``q <= 1 - p`` and otherwise the
  lognormal quantile at ``(q - (1 - p)) / p``.

  Args:
    logits: [n, 3] network outputs.
    qs: quantile levels, each in (0, 1).
    sigma_scale: multiplies the lognormal spread (interval calibration, see ``calibrate_interval``).

  Returns:
    [n, len(qs)] quantiles.

  Raises:
    ValueError: if a level is outside (0, 1).
  """
  qs_arr = np.asarray(qs, dtype=np.float64)
  if qs_arr.ndim != 1 or np.any((qs_arr <= 0) | (qs_arr >= 1)):
    raise ValueError(f"ziln_quantiles: qs must be levels in (0, 1), got {list(qs)}")
  l0, mu, sigma = _split_logits(logits)
  p = jax.nn.sigmoid(l0)[:, None]  # [n, 1]
  q = jnp.asarray(qs_arr, dtype=logits.dtype)[None, :]  # [1, k]
  level = (q - (1.0 - p)) / jnp.maximum(p, 1e-12)
  # Clip away from 0/1 only where the branch is unused or p is tiny: ndtri(0) = -inf.
  level = jnp.clip(level, 1e-12, 1.0 - 1e-7)
  lognormal_q = jnp.exp(mu[:, None] + sigma_scale * sigma[:, None] * ndtri(level))
  return jnp.where(q <= 1.0 - p, 0.0, lognormal_q)


def cap_sigma(logits: jax.Array, sigma_max: float | None) -> jax.Array:
  """Logits whose lognormal spread is at most ``sigma_max`` (None: unchanged).

  The mean ``exp(mu + sigma^2 / 2)`` grows as exp(sigma^2): a network unsure about a customer far
  from the bulk answers with a large sigma, and the mean explodes (Online Retail: sigma 4.9 gave an
  expected spend of 5e10 for a customer who spent 1e5).
  """
  if sigma_max is None:
    return logits
  sigma = jnp.minimum(jax.nn.softplus(logits[..., 2]), sigma_max)
  pre = sigma + jnp.log(-jnp.expm1(-sigma))  # inverse softplus, stable for large sigma
  return logits.at[..., 2].set(pre)


def sigma_cap(y: np.ndarray, factor: float = 2.0) -> float:
  """Twice the spread of log value among positive training labels (at least 0.5)."""
  pos = np.asarray(y, np.float64)
  pos = pos[pos > 0]
  return float(max(factor * np.log(pos).std(), 0.5)) if len(pos) > 1 else 2.0


def ziln_predict(logits: jax.Array, qs: Sequence[float] = (0.1, 0.9), *,
                 sigma_max: float | None = None,
                 interval_scale: float = 1.0) -> dict[str, jax.Array]:
  """Point and interval predictions from ZILN logits.

  Compiled once per shape: run eagerly, its twenty-odd operations would each compile for every
  new number of customers.

  Args:
    logits: [n, 3] network outputs.
    qs: quantile levels for ``quantiles``.
    sigma_max: cap on the lognormal spread (see :func:`cap_sigma`); None for no cap.
    interval_scale: multiplies the spread used for ``quantiles`` only (the mean is the model's).

  Returns:
    Dict with ``p_return`` [n], ``mean`` [n] (= p * exp(mu + sigma^2 / 2)), ``mu``, ``sigma`` [n]
    and ``quantiles`` [n, len(qs)].
  """
  return _ziln_predict(jnp.asarray(logits), tuple(float(q) for q in qs),
                       None if sigma_max is None else float(sigma_max), interval_scale)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _ziln_predict(logits: jax.Array, qs: tuple[float, ...], sigma_max: float | None,
                  interval_scale: jax.Array) -> dict[str, jax.Array]:
  logits = cap_sigma(logits, sigma_max)
  l0, mu, sigma = _split_logits(logits)
  p = jax.nn.sigmoid(l0)
  return {
      "p_return": p,
      "mean": p * jnp.exp(mu + 0.5 * jnp.square(sigma)),
      "mu": mu,
      "sigma": sigma,
      "quantiles": ziln_quantiles(logits, qs, sigma_scale=interval_scale),
  }


def interval_levels(interval: float) -> tuple[float, float]:
  """The quantile levels of a central interval: 0.8 -> (0.1, 0.9)."""
  return ((1 - interval) / 2, (1 + interval) / 2)


def calibrate_interval(logits: Any, y: np.ndarray, interval: float, *,
                       sigma_max: float | None = None, lo: float = 0.02,
                       hi: float = 5.0) -> tuple[float, float]:
  """The spread multiplier that makes the central ``interval`` cover that share of ``y``.

  A network trained for the best mean is often over- or under-confident about its spread: on the
  demo the raw 80% intervals covered 89% of test customers. Coverage grows with the multiplier
  (wider lognormal quantiles; the zero mass is unchanged), so a bisection on held-out customers
  (the early-stopping validation set, never the test customers) finds it: split-conformal
  calibration with one parameter.

  Returns:
    (multiplier in [lo, hi], the validation coverage it gives).
  """
  logits = jnp.asarray(logits)
  y = np.asarray(y, np.float64)
  qs = interval_levels(interval)

  def coverage(scale: float) -> float:
    q = np.asarray(ziln_predict(logits, qs, sigma_max=sigma_max,
                                interval_scale=scale)["quantiles"], np.float64)
    return float(np.mean((y >= q[:, 0]) & (y <= q[:, 1])))

  widest, narrowest = coverage(hi), coverage(lo)
  if widest <= interval:
    return hi, widest
  if narrowest >= interval:
    return lo, narrowest
  a, b = lo, hi
  for _ in range(30):
    mid = 0.5 * (a + b)
    if coverage(mid) < interval:
      a = mid
    else:
      b = mid
  return b, coverage(b)


def make_output_bias(y: np.ndarray) -> np.ndarray:
  """Initial bias of the 3-logit head from training labels, so training starts at the marginal fit.

  Args:
    y: [n] non-negative training labels.

  Returns:
    [3] float32: log-odds of the return rate, mean of log y over positives, and the inverse softplus
    of the standard deviation of log y over positives.
  """
  y = np.asarray(y, dtype=np.float64)
  rate = float(np.clip(np.mean(y > 0), 1e-3, 1.0 - 1e-3))
  log_pos = np.log(y[y > 0])
  mu = float(log_pos.mean()) if log_pos.size else 0.0
  sd = float(log_pos.std()) if log_pos.size > 1 else 1.0
  sd = max(sd, 0.05)
  return np.array([math.log(rate / (1.0 - rate)), mu, math.log(math.expm1(sd))], dtype=np.float32)


class ZILNModel(nnx.Module):
  """MLP from customer features to the three ZILN logits."""

  def __init__(
      self,
      in_features: int,
      hidden: Sequence[int] = (64, 32),
      dropout: float = 0.1,
      *,
      rngs: nnx.Rngs,
      output_bias: Sequence[float] | None = None,
  ):
    sizes = [in_features, *hidden]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.head = nnx.Linear(sizes[-1], 3, rngs=rngs)
    if output_bias is not None:
      self.head.bias[...] = jnp.asarray(output_bias, dtype=jnp.float32)

  def __call__(self, x: jax.Array) -> jax.Array:
    for layer in self.layers:
      x = self.dropout(nnx.relu(layer(x)))  # [n, hidden_i]
    return self.head(x)  # [n, 3]


@dataclasses.dataclass(frozen=True)
class Standardiser:
  """Per-feature mean/std learned on the training rows, applied to any later rows.

  Later rows are clipped to the range seen in training: a network extrapolates its lognormal
  location linearly, so one customer far outside the training range (a wholesaler in Online
  Retail) could otherwise get a prediction a million times too large.
  """

  mean: np.ndarray  # [features]
  std: np.ndarray  # [features], constant columns get 1 so they map to 0
  lo: np.ndarray | None = None  # [features] training minimum (raw units); None: no clipping
  hi: np.ndarray | None = None  # [features] training maximum

  def transform(self, x: np.ndarray) -> np.ndarray:
    """Clips ``x`` [n, features] to the training range and standardises it to float32."""
    x = np.asarray(x, dtype=np.float64)
    if self.lo is not None:
      x = np.clip(x, self.lo, self.hi)
    return ((x - self.mean) / self.std).astype(np.float32)

  def to_dict(self) -> dict[str, list[float]]:
    d = {"mean": self.mean.tolist(), "std": self.std.tolist()}
    if self.lo is not None:
      d.update(lo=self.lo.tolist(), hi=self.hi.tolist())
    return d

  @classmethod
  def from_dict(cls, d: dict[str, list[float]]) -> Standardiser:
    arr = lambda k: np.asarray(d[k], dtype=np.float64) if k in d else None
    return cls(arr("mean"), arr("std"), arr("lo"), arr("hi"))


def fit_standardiser(x: np.ndarray) -> Standardiser:
  """Learns a :class:`Standardiser` from training features ``x`` [n, features]."""
  x = np.asarray(x, dtype=np.float64)
  std = x.std(axis=0)
  return Standardiser(x.mean(axis=0), np.where(std > 1e-12, std, 1.0), x.min(axis=0),
                      x.max(axis=0))


def check_features(x: Any, name: str, n_features: int | None = None) -> np.ndarray:
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim != 2:
    raise ValueError(f"{name} must be 2-D [rows, features], got shape {arr.shape}")
  if arr.shape[0] == 0:
    raise ValueError(f"{name} has no rows")
  if n_features is not None and arr.shape[1] != n_features:
    raise ValueError(f"{name} has {arr.shape[1]} features, the model expects {n_features}")
  bad = ~np.isfinite(arr)
  if bad.any():
    rows = np.unique(np.nonzero(bad)[0])[:5].tolist()
    raise ValueError(f"{name} holds NaN/inf (first rows: {rows}); impute before the model")
  return arr


def check_labels(y: Any, name: str, n: int) -> np.ndarray:
  arr = np.asarray(y, dtype=np.float64)
  if arr.ndim != 1 or arr.shape[0] != n:
    raise ValueError(f"{name} must be 1-D with {n} rows, got shape {arr.shape}")
  bad = ~np.isfinite(arr) | (arr < 0)
  if bad.any():
    rows = np.nonzero(bad)[0][:5].tolist()
    raise ValueError(f"{name} must be finite and >= 0 (bad rows: {rows})")
  return arr


def _loss_fn(model: ZILNModel, batch: Batch) -> jax.Array:
  logits = model(batch["x"])
  loss = ziln_loss(logits, batch["y"], batch["w"])
  if "ranking_weight" in batch:  # a training batch with the ranking term (validation: ZILN only)
    loss = loss + batch["ranking_weight"] * ranking_loss(logits, batch["y"], batch["w"])
  return loss


@nnx.jit
def train_step(model: ZILNModel, optimizer: nnx.Optimizer, batch: Batch) -> jax.Array:
  """One optimisation step; updates model and optimizer in place and returns the batch loss."""
  loss, grads = nnx.value_and_grad(_loss_fn)(model, batch)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def eval_step(model: ZILNModel, batch: Batch) -> jax.Array:
  """Weighted ZILN loss of ``batch`` (pass a deterministic view of the model)."""
  return _loss_fn(model, batch)


def _kernels_only(params: Any) -> Any:
  return jax.tree.map(lambda p: p.ndim > 1, params)


# Cached: the transformation is static in the jitted step's signature, so a fresh (unequal) one per
# call would recompile the step every time train_ziln runs.
@functools.lru_cache(maxsize=16)
def make_optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
  """AdamW with weight decay on kernels only (biases hold the calibrated output offsets)."""
  return optax.adamw(learning_rate, weight_decay=weight_decay, mask=_kernels_only)


def flat_params(model: ZILNModel) -> dict[str, nnx.Variable]:
  flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
  return {".".join(map(str, path)): var for path, var in flat}


def prediction_frame(logits: Any, qs: Sequence[float] = (0.1, 0.9), *,
                     sigma_max: float | None = None, index: Any = None,
                     interval_scale: float = 1.0) -> pd.DataFrame:
  """A predictor's output table from ZILN logits [n, 3]: p_return, predicted_value, q10, q90.

  ``q10``/``q90`` are the quantiles ``qs`` (the columns keep those names whatever ``qs`` is).
  """
  out = ziln_predict(jnp.asarray(logits), qs, sigma_max=sigma_max,
                     interval_scale=interval_scale)
  quant = np.asarray(out["quantiles"], dtype=np.float64).reshape(-1, len(qs))
  return pd.DataFrame(
      {
          "p_return": np.asarray(out["p_return"], dtype=np.float64),
          "predicted_value": np.asarray(out["mean"], dtype=np.float64),
          "q10": quant[:, 0],
          "q90": quant[:, 1],
      },
      index=index,
  )


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef: Any, state: Any, x: jax.Array) -> jax.Array:
  """The network on [n, features], compiled once per shape (eagerly, every layer's operations
  would compile for each new number of customers)."""
  return nnx.merge(graphdef, state)(x)


@dataclasses.dataclass
class ZILNPredictor:
  """A trained ZILN model plus the feature standardisation it was trained with."""

  model: ZILNModel
  standardiser: Standardiser
  config: dict[str, Any]  # in_features, hidden, dropout, feature_names (or None)

  def logits(self, x: Any) -> np.ndarray:
    """[n, 3] logits for raw (unstandardised) features ``x``."""
    arr = check_features(x, "X", self.config["in_features"])
    graphdef, state = nnx.split(nnx.view(self.model, deterministic=True))
    return np.asarray(_forward(graphdef, state, jnp.asarray(self.standardiser.transform(arr))))

  def predict(self, x: Any, qs: tuple[float, float] = (0.1, 0.9)) -> pd.DataFrame:
    """Predicts value for customers.

    Args:
      x: [n, features] raw features (DataFrame columns must match training when names were kept).
      qs: levels of the two interval columns ``q10``/``q90`` (named by the default levels).

    Returns:
      DataFrame (index of ``x`` when it is a DataFrame) with p_return, predicted_value, q10, q90.

    Raises:
      ValueError: on wrong feature count/names or non-finite features.
    """
    names = self.config.get("feature_names")
    index = None
    if isinstance(x, pd.DataFrame):
      index = x.index
      if names is not None and list(map(str, x.columns)) != names:
        raise ValueError(f"X columns {list(x.columns)} differ from the training columns {names}")
    return prediction_frame(self.logits(x), qs, sigma_max=self.config.get("sigma_max"),
                            index=index, interval_scale=self.interval_scale(qs))

  def interval_scale(self, qs: Sequence[float]) -> float:
    """The calibrated spread multiplier for these quantile levels: the one found at training for
    the run's interval level, 1.0 for other levels (and for models saved before calibration)."""
    interval = self.config.get("interval")
    if interval is None or not np.allclose(qs, interval_levels(interval)):
      return 1.0
    return float(self.config.get("interval_scale", 1.0))

  def save(self, folder: str | pathlib.Path) -> None:
    """Writes ``ziln.safetensors`` (weights) and ``ziln.json`` (config, standardiser)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.asarray(v[...]) for k, v in flat_params(self.model).items()}
    safetensors.numpy.save_file(tensors, str(folder / _WEIGHTS_FILE))
    meta = {"config": self.config, "standardiser": self.standardiser.to_dict(), "format": 1}
    (folder / _CONFIG_FILE).write_text(json.dumps(meta, indent=2))

  @classmethod
  def load(cls, folder: str | pathlib.Path) -> ZILNPredictor:
    """Reads a predictor written by :meth:`save`.

    Raises:
      FileNotFoundError: if a file is missing.
      ValueError: if the weights do not match the config.
    """
    folder = pathlib.Path(folder)
    for name in (_WEIGHTS_FILE, _CONFIG_FILE):
      if not (folder / name).is_file():
        raise FileNotFoundError(f"{folder / name} missing: not a saved ZILN model")
    meta = json.loads((folder / _CONFIG_FILE).read_text())
    config = meta["config"]
    model = ZILNModel(config["in_features"], tuple(config["hidden"]), config["dropout"],
                      rngs=nnx.Rngs(0))
    tensors = safetensors.numpy.load_file(str(folder / _WEIGHTS_FILE))
    params = flat_params(model)
    problems = sorted(set(params) ^ set(tensors))
    problems += [f"{k}: shape {tensors[k].shape} != {params[k].shape}"
                 for k in set(params) & set(tensors) if tensors[k].shape != params[k].shape]
    if problems:
      raise ValueError(f"{folder / _WEIGHTS_FILE} does not match the config: {problems}")
    for k, var in params.items():
      var[...] = jnp.asarray(tensors[k])
    return cls(model, Standardiser.from_dict(meta["standardiser"]), config)


def padded_batches(rng: np.random.Generator, n: int, batch_size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """One epoch's shuffled batches of ``n`` rows, the last one padded with row 0 at weight 0 so
  that every step has the same shape (one compilation).

  Returns:
    (idx, w): [steps, batch_size] row indices and float32 row weights (1 real, 0 padding).
  """
  steps = math.ceil(n / batch_size)
  pad = steps * batch_size - n
  order = rng.permutation(n)
  idx = np.concatenate([order, np.zeros(pad, dtype=order.dtype)]).reshape(steps, batch_size)
  w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  return idx, w.reshape(steps, batch_size)


def train_ziln(
    X_train: Any,
    y_train: Any,
    X_val: Any,
    y_val: Any,
    *,
    hidden: Sequence[int] = (64, 32),
    dropout: float = 0.1,
    epochs: int = 200,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    patience: int = 20,
    seed: int = 0,
    interval: float | None = None,
    ranking_weight: float = 0.0,
    average_best: int = 1,
) -> tuple[ZILNPredictor, pd.DataFrame]:
  """Trains a ZILN MLP with early stopping on validation loss.

  With ``interval`` (e.g. 0.8) the central interval of that level is calibrated on the validation
  set afterwards (:func:`calibrate_interval`); the predictor applies the multiplier whenever it is
  asked for that level.

  Features are standardised with train statistics; the last partial batch of an epoch is padded with
  zero-weight rows so the step compiles once.

  Args:
    X_train: [n, features] training features (array or DataFrame; DataFrame names are kept).
    y_train: [n] non-negative training labels.
    X_val: [m, features] validation features for early stopping.
    y_val: [m] validation labels.
    hidden: hidden layer sizes.
    dropout: dropout rate in [0, 1).
    epochs: maximum number of epochs.
    batch_size: rows per step.
    learning_rate: AdamW learning rate.
    weight_decay: AdamW weight decay (kernels only).
    patience: epochs without validation improvement before stopping.
    interval: central interval level to calibrate on the validation set; None leaves the spread
      as trained.
    ranking_weight: weight of :func:`ranking_loss` added to the training loss (0: the ZILN
      likelihood alone); early stopping still watches the validation ZILN loss.
    seed: seeds initialisation, dropout and shuffling.
    average_best: the predictor's weights are the mean of the weights of this many epochs with
      the lowest validation loss (1: the best epoch's alone); checkpoint averaging, no cost when
      scoring.

  Returns:
    (predictor holding the best-validation weights, or their average with ``average_best``,
    history DataFrame with epoch, train_loss, val_loss, best, seconds).

  Raises:
    ValueError: on bad shapes, non-finite or negative values, or bad hyper-parameters.
  """
  for name, value, ok in [
      ("epochs", epochs, epochs >= 1), ("batch_size", batch_size, batch_size >= 1),
      ("patience", patience, patience >= 1), ("learning_rate", learning_rate, learning_rate > 0),
      ("weight_decay", weight_decay, weight_decay >= 0), ("dropout", dropout, 0 <= dropout < 1),
      ("hidden", hidden, all(int(h) >= 1 for h in hidden)),
      ("ranking_weight", ranking_weight, ranking_weight >= 0),
      ("average_best", average_best, int(average_best) == average_best and average_best >= 1),
  ]:
    if not ok:
      raise ValueError(f"train_ziln: bad {name}={value!r}")
  feature_names = list(map(str, X_train.columns)) if isinstance(X_train, pd.DataFrame) else None
  xt = check_features(X_train, "X_train")
  yt = check_labels(y_train, "y_train", xt.shape[0])
  xv = check_features(X_val, "X_val", xt.shape[1])
  yv = check_labels(y_val, "y_val", xv.shape[0])

  standardiser = fit_standardiser(xt)
  config = {"in_features": int(xt.shape[1]), "hidden": [int(h) for h in hidden],
            "sigma_max": sigma_cap(yt),
            "dropout": float(dropout), "feature_names": feature_names}
  model = ZILNModel(xt.shape[1], tuple(hidden), dropout, rngs=nnx.Rngs(seed),
                    output_bias=make_output_bias(yt))
  optimizer = nnx.Optimizer(model, make_optimizer(learning_rate, weight_decay), wrt=nnx.Param)
  eval_model = nnx.view(model, deterministic=True)  # shares the Variables of `model`

  x_train = jnp.asarray(standardiser.transform(xt))  # [n, features]
  y_train_j = jnp.asarray(yt, dtype=jnp.float32)
  val_batch = {"x": jnp.asarray(standardiser.transform(xv)),
               "y": jnp.asarray(yv, dtype=jnp.float32), "w": jnp.ones(len(yv), jnp.float32)}
  n = xt.shape[0]
  bs = min(batch_size, n)
  rng = np.random.default_rng(seed)

  # cached_partial skips re-walking the module graph on every call: about 2x faster small steps.
  step = nnx.cached_partial(train_step, model, optimizer)
  evaluate = nnx.cached_partial(eval_step, eval_model)

  def train_epoch(epoch: int) -> dict[str, float]:
    idx, w = padded_batches(rng, n, bs)
    losses = []  # kept on device: a float() per step would sync every step
    for i in range(len(idx)):
      batch = {"x": x_train[idx[i]], "y": y_train_j[idx[i]], "w": jnp.asarray(w[i])}
      if ranking_weight > 0:
        batch["ranking_weight"] = jnp.float32(ranking_weight)
      losses.append(step(batch))
    return {"train_loss": float(np.dot(np.asarray(jnp.stack(losses)), w.sum(axis=1))) / n}

  best_k: list[tuple[float, int, Any]] = []  # (val_loss, epoch, weights) of the best epochs

  def keep_best_k(epoch: int, row: dict[str, Any], improved: bool) -> None:
    loss = float(row["val_loss"])
    if average_best > 1 and math.isfinite(loss) and (
        len(best_k) < average_best or loss < best_k[-1][0]):
      best_k.append((loss, epoch, training.snapshot(model)))
      best_k.sort(key=lambda t: (t[0], t[1]))
      del best_k[average_best:]

  history = training.fit(
      model, train_epoch, epochs=epochs,
      evaluate=lambda epoch: {"val_loss": float(evaluate(val_batch))},
      stopping=training.EarlyStopping("val_loss", patience=patience, stop_if_not_finite=True),
      on_epoch_end=keep_best_k)
  if len(best_k) > 1:
    training.restore(model, jax.tree.map(lambda *w: np.mean(w, axis=0), *[w for *_, w in best_k]))
  if interval is not None:
    val_logits = eval_model(val_batch["x"])
    scale, covered = calibrate_interval(val_logits, yv, interval, sigma_max=config["sigma_max"])
    config.update(interval=float(interval), interval_scale=scale,
                  interval_validation_coverage=covered)
  return ZILNPredictor(model, standardiser, config), history

"""Why a customer is rated high, and which words moved a review's sentiment.

* :func:`permutation_importance`: global importance of each value-model input, the drop in
  normalised Gini when the column is shuffled (model-agnostic: works for any predictor).
* :func:`integrated_gradients`: per-customer attributions of a ZILN network's predicted value
  (Sundararajan et al. 2017), by ``jax.grad`` through the standardiser and the network.
* :func:`top_drivers`: those attributions as sentences an analyst can read.
* :func:`word_attributions`: occlusion for the sentiment classifier (drop a word, see the class
  probability move).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx
from matplotlib.figure import Figure

from cvlib.data import features
from cvlib.value import metrics as vm
from cvlib.value import ziln
from cvlib.report.plots import BLUE, GREY

# -----------------------------------------------------------------------------------------------
# Permutation importance

_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"gini": vm.gini_normalised}


def _predictions(predict_fn: Callable[[pd.DataFrame], Any], X: pd.DataFrame) -> np.ndarray:
  out = predict_fn(X)
  if isinstance(out, pd.DataFrame):
    if "predicted_value" not in out:
      raise ValueError("predict_fn returned a DataFrame without a 'predicted_value' column "
                       f"(have: {list(out.columns)}); return a 1-D array of predictions")
    out = out["predicted_value"]
  arr = np.asarray(out, dtype=np.float64)
  if arr.shape != (len(X),):
    raise ValueError(f"predict_fn must return one prediction per row ({len(X)}), got shape "
                     f"{arr.shape}")
  return arr


def permutation_importance(predict_fn: Callable[[pd.DataFrame], Any], X: pd.DataFrame, y: Any, *,
                           metric: str | Callable[[np.ndarray, np.ndarray], float] = "gini",
                           n_repeats: int = 5, seed: int = 0) -> pd.DataFrame:
  """How much the ranking quality drops when one input column is shuffled.

  Shuffling a column keeps its distribution but cuts its link to the customer, so the drop in
  the metric is what the model gets from that column (correlated columns share credit: shuffling
  one leaves its twin in place, so both can look unimportant).

  Args:
    predict_fn: maps a DataFrame like ``X`` to one prediction per row (an array, a Series, or a
      DataFrame with ``predicted_value`` such as ``ZILNPredictor.predict``). It must score rows
      independently: the shuffled copies of all repeats go through it in one call per column.
    X: [n, features] model inputs, named columns.
    y: [n] actual values (e.g. holdout spend).
    metric: "gini" (normalised Gini, :func:`cvlib.value.metrics.gini_normalised`) or a callable
      ``metric(y, pred) -> float`` where higher is better.
    n_repeats: shuffles per column (>= 1).
    seed: seeds the shuffles; column j uses ``np.random.default_rng([seed, j])``.

  Returns:
    DataFrame with ``feature``, ``importance`` (metric on the intact data minus the mean over
    shuffles; > 0 means the model uses the column) and ``std`` (over repeats), most important
    first. ``attrs["baseline_score"]`` holds the metric on the intact data.

  Raises:
    ValueError: bad shapes or arguments, or a metric that is undefined on ``y`` (e.g. all zero).
  """
  if not isinstance(X, pd.DataFrame):
    raise ValueError(f"X must be a DataFrame with named columns, got {type(X).__name__}")
  if isinstance(metric, str):
    if metric not in _METRICS:
      raise ValueError(f"metric must be one of {sorted(_METRICS)} or a callable, got {metric!r}")
    score_fn = _METRICS[metric]
  elif callable(metric):
    score_fn = metric
  else:
    raise ValueError(f"metric must be a name or a callable, got {metric!r}")
  if not isinstance(n_repeats, (int, np.integer)) or n_repeats < 1:
    raise ValueError(f"n_repeats must be an int >= 1, got {n_repeats!r}")
  y = np.asarray(y, dtype=np.float64)
  if y.shape != (len(X),):
    raise ValueError(f"y must be 1-D with {len(X)} rows (one per row of X), got shape {y.shape}")
  if len(X) < 2:
    raise ValueError(f"X needs at least 2 rows to shuffle, got {len(X)}")
  base = float(score_fn(y, _predictions(predict_fn, X)))
  if not math.isfinite(base):
    raise ValueError(f"the metric is {base} on the intact data (e.g. every y is 0): nothing to "
                     "lose by shuffling")
  n = len(X)
  y_rep = np.tile(y, n_repeats)
  rows = []
  for j, col in enumerate(X.columns):
    rng = np.random.default_rng([seed, j])
    stacked = pd.concat([X] * n_repeats, ignore_index=True)
    values = X[col].to_numpy()
    shuffled = np.concatenate([values[rng.permutation(n)] for _ in range(n_repeats)])
    stacked[col] = shuffled
    pred = _predictions(predict_fn, stacked)
    scores = np.array([score_fn(y_rep[r * n:(r + 1) * n], pred[r * n:(r + 1) * n])
                       for r in range(n_repeats)], dtype=np.float64)
    rows.append({"feature": str(col), "importance": base - float(scores.mean()),
                 "std": float(scores.std(ddof=1)) if n_repeats > 1 else 0.0})
  out = pd.DataFrame(rows).sort_values("importance", ascending=False, kind="stable")
  out = out.reset_index(drop=True)
  out.attrs["baseline_score"] = base
  return out


def plot_importance(importance: pd.DataFrame, *, title: str = "What the value model relies on",
                    max_features: int = 15) -> Figure:
  """Horizontal bars of permutation importance with +/- one std over repeats.

  Args:
    importance: :func:`permutation_importance` output.
    title: figure title.
    max_features: the most important ones shown.

  Returns:
    The figure (not shown).

  Raises:
    ValueError: missing columns.
  """
  missing = [c for c in ("feature", "importance", "std") if c not in importance.columns]
  if missing:
    raise ValueError(f"plot_importance: column(s) {missing} missing (have: "
                     f"{list(importance.columns)})")
  top = importance.sort_values("importance", ascending=False, kind="stable").head(max_features)
  top = top.iloc[::-1]  # largest at the top of the chart
  labels = [FEATURE_NAMES.get(f, _pc_name(f)) for f in top["feature"]]
  fig = Figure(figsize=(7, 0.32 * len(top) + 1.4), layout="constrained")
  ax = fig.subplots()
  colors = [BLUE if v > 0 else GREY for v in top["importance"]]
  ax.barh(np.arange(len(top)), top["importance"], xerr=top["std"], color=colors,
          error_kw={"ecolor": "black", "lw": 0.8, "capsize": 2})
  ax.set_yticks(np.arange(len(top)), labels)
  ax.axvline(0, color="black", lw=0.8)
  ax.set_xlabel("drop in normalised Gini when shuffled")
  ax.set_title(title)
  return fig


# -----------------------------------------------------------------------------------------------
# Integrated gradients for the ZILN network


def _value(model: ziln.ZILNModel, x: jax.Array, lo: jax.Array, hi: jax.Array, mean: jax.Array,
           std: jax.Array) -> jax.Array:
  """Predicted value [n] from raw features [n, features], as ``ZILNPredictor.predict`` has it."""
  z = (jnp.clip(x, lo, hi) - mean) / std  # [n, features], standardised as in training
  return ziln.ziln_predict(model(z), qs=(0.5,))["mean"]


@nnx.jit
def _value_and_grad(model: ziln.ZILNModel, x: jax.Array, lo: jax.Array, hi: jax.Array,
                    mean: jax.Array, std: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(values [n], d value_i / d x_i [n, features]); rows are independent, so grad of the sum."""
  total = lambda x: (lambda v: (jnp.sum(v), v))(_value(model, x, lo, hi, mean, std))
  (_, values), grads = jax.value_and_grad(total, has_aux=True)(x)
  return values, grads


def _baseline_row(X: pd.DataFrame, baseline: str | Sequence[float] | np.ndarray | pd.Series
                  ) -> np.ndarray:
  if isinstance(baseline, str):
    if baseline == "median":
      return X.median().to_numpy(np.float64)
    if baseline == "mean":
      return X.mean().to_numpy(np.float64)
    raise ValueError(f"baseline must be 'median', 'mean' or one value per feature, got "
                     f"{baseline!r}")
  if isinstance(baseline, pd.Series):
    missing = [c for c in X.columns if c not in baseline.index]
    if missing:
      raise ValueError(f"baseline lacks features {missing}")
    return baseline[list(X.columns)].to_numpy(np.float64)
  row = np.asarray(baseline, dtype=np.float64)
  if row.shape != (X.shape[1],):
    raise ValueError(f"baseline must hold one value per feature ({X.shape[1]}), got shape "
                     f"{row.shape}")
  return row


def integrated_gradients(predictor: ziln.ZILNPredictor, X: pd.DataFrame, *,
                         baseline: str | Sequence[float] | np.ndarray | pd.Series = "median",
                         steps: int = 32, chunk_rows: int = 16384) -> pd.DataFrame:
  """Per-customer attributions of a ZILN network's predicted value to its input features.

  The attribution of feature j is ``(x_j - b_j) * mean_k d f / d x_j (b + a_k (x - b))`` over
  ``steps`` midpoints ``a_k`` of [0, 1], where ``f`` is the predicted value in currency units
  (``p_return * exp(mu + sigma^2 / 2)``, not its log: "+124" then reads as money). Gradients flow
  through the standardiser's clipping to the training range (a clipped feature gets no credit
  beyond the range) and the network with dropout off. By completeness, each customer's
  attributions sum to ``f(x) - f(b)`` up to the quadrature error of the midpoint rule.

  Args:
    predictor: a trained :class:`cvlib.value.ziln.ZILNPredictor`.
    X: [n, features] raw model inputs with the training columns (``cvlib.value.networks.network_inputs``).
    baseline: the reference customer: "median" or "mean" of ``X`` per column, or one value per
      feature (array or Series indexed by feature).
    steps: midpoints on the straight path (>= 1). ReLU gradients jump along the path, so the
      completeness gap shrinks only like 1 / steps: about 1% of ``|f(x) - f(b)|`` on average at
      32 steps for a small network (``attrs["completeness_gap"]`` reports it).
    chunk_rows: path points per gradient call (memory bound; each call has the same shape, so it
      compiles once).

  Returns:
    DataFrame like ``X`` (same index and columns) of attributions in value units.
    ``attrs["baseline_value"]`` is ``f(b)``; ``attrs["completeness_gap"]`` the mean absolute
    difference between a row's sum and ``f(x) - f(b)``, relative to the mean ``|f(x) - f(b)|``.

  Raises:
    ValueError: wrong columns or non-finite features, or a bad baseline or steps.
  """
  if not isinstance(X, pd.DataFrame):
    raise ValueError(f"X must be a DataFrame with the training columns, got {type(X).__name__}")
  names = predictor.config.get("feature_names")
  if names is not None and list(map(str, X.columns)) != names:
    raise ValueError(f"X columns {list(X.columns)} differ from the training columns {names}")
  if not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps must be an int >= 1, got {steps!r}")
  x = ziln.check_features(X, "X", predictor.config["in_features"])
  b = _baseline_row(X, baseline)
  if not np.isfinite(b).all():
    raise ValueError(f"baseline holds NaN/inf: {b.tolist()}")
  s = predictor.standardiser
  f = x.shape[1]
  lo = np.full(f, -np.inf) if s.lo is None else s.lo
  hi = np.full(f, np.inf) if s.hi is None else s.hi
  consts = [jnp.asarray(a, jnp.float32) for a in (lo, hi, s.mean, s.std)]
  view = nnx.view(predictor.model, deterministic=True)

  n = x.shape[0]
  alphas = (np.arange(steps) + 0.5) / steps  # [steps] midpoint rule
  rows = max(int(chunk_rows), steps + 1)  # one shape for every call: one compilation
  per_chunk = rows // (steps + 1)  # customers per gradient call
  out = np.zeros((n, f), np.float64)
  value = np.zeros(n, np.float64)
  diff = x - b  # [n, features]
  for start in range(0, n, per_chunk):
    d = diff[start:start + per_chunk]  # [m, features]
    m = len(d)
    path = b + alphas[:, None, None] * d[None]  # [steps, m, features]
    flat = np.empty((rows, f), np.float32)
    flat[:steps * m] = path.reshape(-1, f)
    flat[steps * m:steps * m + m] = x[start:start + m]  # f(x) itself, for the completeness check
    flat[steps * m + m:] = b  # filler rows: every call has one shape, so one compilation
    values, grads = _value_and_grad(view, jnp.asarray(flat), *consts)
    g = np.asarray(grads, np.float64)[:steps * m].reshape(steps, m, f)
    out[start:start + m] = d * g.mean(axis=0)
    value[start:start + m] = np.asarray(values, np.float64)[steps * m:steps * m + m]
  base_value = float(np.asarray(_value_and_grad(view, jnp.asarray(b[None], jnp.float32),
                                                *consts)[0])[0])
  delta = value - base_value
  gap = np.abs(out.sum(axis=1) - delta)
  result = pd.DataFrame(out, index=X.index, columns=X.columns)
  result.attrs["baseline_value"] = base_value
  # mean |sum of attributions - (f(x) - f(b))| relative to mean |f(x) - f(b)|: the quadrature
  # error, first order in 1 / steps because ReLU gradients jump along the path
  result.attrs["completeness_gap"] = float(gap.mean() / max(np.abs(delta).mean(), 1e-12))
  return result


# -----------------------------------------------------------------------------------------------
# Readable drivers

# Rating columns are imputed when a customer never reviewed (has_review = 0).
_RATING_COLUMNS = ("mean_rating", "min_rating", "last_rating", "share_low_ratings",
                   "days_since_last_review")

# Short names (charts) and sentence templates (drivers) of the value-model inputs.
FEATURE_NAMES = {
    "frequency": "repeat purchase days", "recency_days": "first to last purchase (days)",
    "T_days": "customer age (days)", "days_since_last": "days since last order",
    "n_orders": "orders", "total_spend": "total spend", "avg_order_value": "average order value",
    "monetary_value": "average repeat spend", "n_items": "items bought",
    "n_products": "distinct products", "n_categories": "categories bought",
    "spend_last_90d": "spend, last 90 days", "orders_last_90d": "orders, last 90 days",
    "mean_interpurchase_days": "mean days between orders",
    "std_interpurchase_days": "spread of days between orders",
    "max_interpurchase_days": "longest gap between orders", "avg_basket_size": "items per order",
    "n_reviews": "reviews written", "mean_rating": "mean rating", "min_rating": "lowest rating",
    "last_rating": "last rating", "share_low_ratings": "share of 1-2 star ratings",
    "days_since_last_review": "days since last review", "has_review": "has reviewed",
    "sent_mean": "mean review sentiment", "sent_min": "most negative review sentiment",
    "sent_last": "last review sentiment", "n_negative_reviews": "negative reviews",
    "has_text": "wrote review text",
    "btyd_purchases": "BG/NBD expected orders", "btyd_p_alive": "BG/NBD P(alive)",
    "btyd_p_return": "BG/NBD P(buys again)", "btyd_order_value": "Gamma-Gamma order value",
    "btyd_value": "BG/NBD + Gamma-Gamma value",
}


def _count(v: float, one: str, many: str) -> str:
  k = int(round(v))
  return one if k == 1 else many.format(k=k)


_TEMPLATES: dict[str, Callable[[float], str]] = {
    "frequency": lambda v: _count(v, "bought again on 1 day", "bought again on {k} days"),
    "recency_days": lambda v: f"{v:.0f} days from first to last order",
    "T_days": lambda v: f"customer for {v:.0f} days",
    "days_since_last": lambda v: f"last order {v:.0f} days ago",
    "n_orders": lambda v: _count(v, "bought once", "bought {k} times"),
    "total_spend": lambda v: f"spent {v:,.0f} in total",
    "avg_order_value": lambda v: f"average order {v:,.0f}",
    "monetary_value": lambda v: f"average repeat-day spend {v:,.0f}",
    "n_items": lambda v: _count(v, "1 item bought", "{k} items bought"),
    "n_products": lambda v: _count(v, "1 product", "{k} different products"),
    "n_categories": lambda v: _count(v, "1 category", "{k} categories"),
    "spend_last_90d": lambda v: f"spent {v:,.0f} in the last 90 days",
    "orders_last_90d": lambda v: _count(v, "1 order in the last 90 days",
                                        "{k} orders in the last 90 days"),
    "mean_interpurchase_days": lambda v: f"orders every {v:.0f} days on average",
    "std_interpurchase_days": lambda v: f"gaps between orders vary by {v:.0f} days",
    "max_interpurchase_days": lambda v: f"longest gap between orders {v:.0f} days",
    "avg_basket_size": lambda v: f"{v:.1f} items per order",
    "n_reviews": lambda v: _count(v, "wrote 1 review", "wrote {k} reviews"),
    "mean_rating": lambda v: f"mean rating {v:.1f} stars",
    "min_rating": lambda v: f"lowest rating {v:.0f} stars",
    "last_rating": lambda v: f"last rating {v:.0f} stars",
    "share_low_ratings": lambda v: f"{v:.0%} of ratings 1-2 stars",
    "days_since_last_review": lambda v: f"last review {v:.0f} days ago",
    "has_review": lambda v: "has written reviews" if v >= 0.5 else "never reviewed",
    "sent_mean": lambda v: f"mean review sentiment {v:+.2f}",
    "sent_min": lambda v: f"most negative review sentiment {v:+.2f}",
    "sent_last": lambda v: f"last review sentiment {v:+.2f}",
    "n_negative_reviews": lambda v: _count(v, "1 negative review", "{k} negative reviews"),
    "has_text": lambda v: "wrote review text" if v >= 0.5 else "no review text",
    # BTYD_INPUTS (cvlib.value.networks): amounts enter as log1p, read back in the phrase
    "btyd_purchases": lambda v: f"BG/NBD expects {math.expm1(v):.1f} orders",
    "btyd_p_alive": lambda v: f"BG/NBD: {v:.0%} likely still active",
    "btyd_p_return": lambda v: f"BG/NBD: {v:.0%} likely to buy again",
    "btyd_order_value": lambda v: f"expected order value {math.expm1(v):,.0f}",
    "btyd_value": lambda v: f"BG/NBD + Gamma-Gamma expect {math.expm1(v):,.0f}",
}
_PC = re.compile(r"(last_)?text_pc(\d+)$")


def _pc_name(feature: str) -> str:
  m = _PC.match(feature)
  if not m:
    return feature
  return f"{'last review' if m.group(1) else 'review'} topic {m.group(2)}"


def describe_feature(feature: str, value: float, *, reviewed: bool = True,
                     log_money: bool = True) -> str:
  """A short phrase for one input value, e.g. ``("n_orders", 7) -> "bought 7 times"``.

  Args:
    feature: a value-model input name.
    value: its value as the model saw it.
    reviewed: False when the customer never reviewed (their rating inputs are imputed).
    log_money: money and count columns (``features.LOG_SCALED``) hold log1p(value), as in
      :func:`cvlib.value.networks.model_inputs`.

  Returns:
    The phrase; unknown features read ``"<name> = <value>"``.
  """
  if not reviewed and feature in _RATING_COLUMNS:
    return "no reviews yet"
  if log_money and feature in features.LOG_SCALED:  # money and counts enter the models as log1p
    value = math.expm1(value)
  if feature in _TEMPLATES:
    return _TEMPLATES[feature](value)
  m = _PC.match(feature)
  if m:  # a PCA direction of review embeddings: what their reviews talk about
    return f"{_pc_name(feature)} score {value:+.2f}"
  return f"{feature} = {value:.3g}"


def _signed(a: float) -> str:
  return f"{a:+,.0f}" if abs(a) >= 10 else f"{a:+.1f}"


def top_drivers(attributions: pd.DataFrame, X: pd.DataFrame, *, k: int = 3,
                log_money: bool = True, sep: str = "; ") -> list[str]:
  """The k inputs that moved each customer's prediction most, as one readable string each.

  Args:
    attributions: :func:`integrated_gradients` output (value units), rows aligned with ``X``.
    X: the model inputs the attributions explain (same columns and row order).
    k: drivers per customer (>= 1), largest absolute attribution first.
    log_money: money and count columns of ``X`` hold log1p(value) (true for
      ``cvlib.value.networks.model_inputs``).
    sep: joins a customer's drivers.

  Returns:
    One string per row, e.g. ``"bought 7 times (+124); last order 200 days ago (-80)"``; the
    number in brackets is how much that input moved the predicted value from the baseline
    customer's.

  Raises:
    ValueError: attributions and X do not line up, or k < 1.
  """
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be an int >= 1, got {k!r}")
  if list(attributions.columns) != list(X.columns) or len(attributions) != len(X):
    raise ValueError(f"attributions {attributions.shape} {list(attributions.columns)[:5]}... and "
                     f"X {X.shape} {list(X.columns)[:5]}... must have the same rows and columns")
  cols = [str(c) for c in X.columns]
  a = attributions.to_numpy(np.float64)
  v = X.to_numpy(np.float64)
  reviewed = (X["has_review"].to_numpy(np.float64) >= 0.5 if "has_review" in X
              else np.ones(len(X), bool))
  # stable sort on -|a|: ties keep column order, so the output is deterministic
  order = np.argsort(-np.abs(a), axis=1, kind="stable")[:, :k]
  out = []
  for i in range(len(X)):
    parts = [describe_feature(cols[j], v[i, j], reviewed=bool(reviewed[i]), log_money=log_money)
             + f" ({_signed(a[i, j])})" for j in order[i]]
    out.append(sep.join(parts))
  return out


# -----------------------------------------------------------------------------------------------
# Words that moved a sentiment prediction

# A word: one CJK ideograph (Chinese and Japanese write without spaces, and the learnt
# vocabularies for them are mostly single characters, so a whole clause would otherwise be one
# "word"), letters/digits with inner apostrophes ("isn't" stays whole), or a run of punctuation
# ("...", "!!").
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+(?:['’][^\W{_CJK}]+)*|[^\w\s]+")


def word_attributions(model: Any, tokenizer: Any, text: str, *, target_class: int,
                      buckets: Sequence[int] = (32, 64, 128, 256), batch_size: int = 64,
                      truncation: str = "head") -> list[tuple[str, float]]:
  """Each word's effect on the probability of ``target_class``, by occlusion.

  Every word is dropped in turn (its characters removed from the text, the rest re-tokenized, so
  all WordPiece pieces of the word go together); its score is ``p(full text) - p(text without
  it)``: > 0 means the word pushed the prediction towards ``target_class``. Model-agnostic and
  exact for what it measures (no gradients), at one forward pass per word. Limits: a saturated
  prediction (probability near 0 or 1) moves little when one of several words saying the same
  thing goes, so redundant words all score low; words past the model's length limit
  (``buckets[-1]`` tokens) are never seen and score 0.

  Args:
    model: a :class:`cvlib.text.bert.BertForSequenceClassification` (fine-tuned sentiment model).
    tokenizer: its tokenizer (``tokens.load_tokenizer``).
    text: one review.
    target_class: the class index, e.g. 0 for "negative" (``sentiment_labels.class_names``).
    buckets: sequence length buckets, as for ``sentiment.predict_proba``.
    batch_size: texts per forward pass.
    truncation: how the model cuts long texts ("head" or "head_tail"), as it was trained.

  Returns:
    ``[(word, score), ...]`` for every word in text order ([] for a text without words).

  Raises:
    ValueError: text is not a string, or target_class is not a class of the model.
  """
  from cvlib.text import sentiment  # pylint: disable=import-outside-toplevel
  if not isinstance(text, str):
    raise ValueError(f"text must be a str, got {type(text).__name__}")
  num_labels = int(getattr(model, "num_labels", 0))
  if not isinstance(target_class, (int, np.integer)) or not 0 <= target_class < num_labels:
    raise ValueError(f"target_class must be an int in [0, {num_labels}) (the model's classes), "
                     f"got {target_class!r}")
  spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
  if not spans:
    return []
  if truncation == "head":
    # The characters the model sees: [CLS] + (longest bucket - 2) tokens + [SEP].
    enc = tokenizer.encode(text)
    content = [off for off, special in zip(enc.offsets, enc.special_tokens_mask)
               if not special and off[1] > off[0]]
    seen_end = content[:max(buckets) - 2][-1][1] if content else 0
    visible = [i for i, (s, _) in enumerate(spans) if s < seen_end]
  else:  # head_tail: the unseen middle moves as words go; every word is tried
    visible = list(range(len(spans)))
  variants = [text] + [text[:spans[i][0]] + " " + text[spans[i][1]:] for i in visible]
  proba = sentiment.predict_proba(model, tokenizer, variants, batch_size=batch_size,
                                  buckets=buckets, truncation=truncation
                                  )[:, int(target_class)].astype(np.float64)
  scores = np.zeros(len(spans))
  scores[visible] = proba[0] - proba[1:]
  return [(text[s:e], float(score)) for (s, e), score in zip(spans, scores)]


__all__ = ["FEATURE_NAMES", "describe_feature", "integrated_gradients",
           "permutation_importance", "plot_importance", "top_drivers", "word_attributions"]

"""Metrics and charts for customer value predictions (definitions of google/lifetime_value).

* Gini: twice the area between the cumulative-gain (Lorenz) curve, customers ranked by prediction,
  and the diagonal, normalised by the same quantity for the perfect ranking (by the true value).
  Perfect ranking gives 1, a random one about 0, a reversed one a negative value (-1 when every
  value is distinct and positive). The area is the trapezoid area of the piecewise-linear curve,
  ``2 * mean(gain) - 1 - 1/n``; lifetime_value's notebooks omit the ``1/n``, which only matters for
  tiny n (it makes a constant prediction score 1/n instead of 0).
* Decile MAPE: customers are cut into ten equal groups by predicted value; the absolute
  percentage error of each group's mean prediction against its mean actual value, averaged over
  every decile. A decile whose actual mean is 0 has no percentage error; it is scored as its
  absolute error relative to the overall mean actual value (``|mean_pred - 0| / mean(y_true)``),
  so over-predicting customers who spend nothing counts, on the scale of the average customer,
  and every model is averaged over the same ten deciles.

Ties in the prediction are treated as one block: within a block of equal predictions the true
values are averaged before accumulating the gain, and the block goes to one decile (by its mean
rank). So results never depend on row order, and a constant prediction has Gini 0.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score


def _check_pair(y_true: Any, y_pred: Any,
                pred_name: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
  yt = np.asarray(y_true, dtype=np.float64)
  yp = np.asarray(y_pred, dtype=np.float64)
  if yt.ndim != 1 or yp.ndim != 1 or len(yt) != len(yp):
    raise ValueError(f"y_true and {pred_name} must be 1-D of equal length, got shapes "
                     f"{yt.shape} and {yp.shape}")
  if len(yt) == 0:
    raise ValueError("no rows to evaluate")
  for name, arr in (("y_true", yt), (pred_name, yp)):
    bad = ~np.isfinite(arr)
    if bad.any():
      raise ValueError(f"{name} holds NaN/inf (first rows: {np.nonzero(bad)[0][:5].tolist()})")
  bad = yt < 0
  if bad.any():
    raise ValueError(f"y_true must be >= 0 (value shares assume it); negative at rows "
                     f"{np.nonzero(bad)[0][:5].tolist()}")
  return yt, yp


def _gain_curve(yt: np.ndarray, yp: np.ndarray) -> np.ndarray:
  """Cumulative share of total true value in the top-k customers by prediction, k = 1..n.

  Returns NaN everywhere when the total is 0.
  """
  n = len(yt)
  total = yt.sum()
  if total <= 0:
    return np.full(n, np.nan)
  order = np.argsort(-yp, kind="stable")
  yp_s, yt_s = yp[order], yt[order]
  starts = np.r_[0, np.nonzero(np.diff(yp_s))[0] + 1]  # first row of each tie block
  counts = np.diff(np.r_[starts, n])
  block_mean = np.add.reduceat(yt_s, starts) / counts
  return np.cumsum(np.repeat(block_mean, counts)) / total  # [n]


def _raw_gini(yt: np.ndarray, yp: np.ndarray) -> float:
  # trapezoid area under (k/n, gain_k) from (0, 0) is mean(gain) - 1/(2n)
  return float(2.0 * _gain_curve(yt, yp).mean() - 1.0 - 1.0 / len(yt))


def gini_normalised(y_true: Any, y_pred: Any) -> float:
  """Normalised Gini of the ranking by ``y_pred`` (1 perfect, ~0 random, < 0 reversed).

  Args:
    y_true: [n] non-negative actual values.
    y_pred: [n] predictions (only their order matters).

  Returns:
    The Gini of the gain curve divided by that of the perfect ranking; NaN when every y_true is 0
    or all are equal (the perfect ranking then has Gini 0).

  Raises:
    ValueError: on shape mismatch, NaN/inf, or negative y_true.
  """
  yt, yp = _check_pair(y_true, y_pred)
  perfect = _raw_gini(yt, yt)
  if not perfect > 0:
    return math.nan
  return _raw_gini(yt, yp) / perfect


def _deciles(yp: np.ndarray) -> np.ndarray:
  """Decile 1 (lowest predictions) .. 10 (highest); ties share the decile of their mean rank."""
  ranks = stats.rankdata(yp, method="average") - 1.0  # 0-based, ties averaged
  return np.minimum(np.floor(ranks * 10.0 / len(yp)).astype(int), 9) + 1


def decile_table(y_true: Any, y_pred: Any) -> pd.DataFrame:
  """Mean predicted vs mean actual value per decile of predicted value.

  Args:
    y_true: [n] non-negative actual values.
    y_pred: [n] predicted values.

  Returns:
    DataFrame with decile (1 = lowest predicted, 10 = highest), mean_pred, mean_true, n,
    abs_pct_error (|mean_pred - mean_true| / mean_true, NaN where mean_true is 0) and
    scored_error (abs_pct_error, or where mean_true is 0 the absolute error relative to the
    overall mean of y_true; NaN only when every y_true is 0). Deciles that are empty (fewer than
    10 rows, or a large tie block) are left out.

  Raises:
    ValueError: on bad inputs.
  """
  yt, yp = _check_pair(y_true, y_pred)
  df = pd.DataFrame({"decile": _deciles(yp), "pred": yp, "true": yt})
  table = (df.groupby("decile", sort=True)
           .agg(mean_pred=("pred", "mean"), mean_true=("true", "mean"), n=("true", "size"))
           .reset_index())
  true_mean = table["mean_true"].to_numpy()
  with np.errstate(divide="ignore", invalid="ignore"):
    err = np.abs(table["mean_pred"].to_numpy() - true_mean) / true_mean
  table["abs_pct_error"] = np.where(true_mean > 0, err, np.nan)
  overall = yt.mean()
  zero_err = (np.abs(table["mean_pred"].to_numpy() - true_mean) / overall if overall > 0
              else np.full(len(table), np.nan))
  table["scored_error"] = np.where(true_mean > 0, table["abs_pct_error"], zero_err)
  table["n"] = table["n"].astype(int)
  return table


def decile_mape(y_true: Any, y_pred: Any) -> float:
  """Mean over all deciles of the scored error (:func:`decile_table`'s ``scored_error``).

  A decile whose actual mean is 0 counts with its absolute error relative to the overall mean
  actual value; no decile is dropped. Each decile is weighted by its customers, which is a plain
  mean of ten when predictions do not tie (a tie block spanning several deciles counts as many
  times). NaN when every y_true is 0.
  """
  table = decile_table(y_true, y_pred)
  err, n = table["scored_error"].to_numpy(), table["n"].to_numpy()
  if np.isnan(err).any():
    return math.nan
  return float(np.sum(err * n) / np.sum(n))


def _top_share(gain: np.ndarray, fraction: float) -> float:
  k = max(1, int(round(fraction * len(gain))))
  return float(gain[k - 1])


def value_metrics(y_true: Any, y_pred: Any, p_return: Any = None) -> dict[str, float | int]:
  """Headline metrics of a value prediction.

  Args:
    y_true: [n] non-negative actual holdout values.
    y_pred: [n] predicted values.
    p_return: [n] optional predicted probability of returning (buying again); AUCs use y_pred
      when it is None.

  Returns:
    Dict of plain floats: gini, spearman, decile_mape, auc_returning, pr_auc_returning, mae,
    top10_share, top20_share (share of total actual value held by the top 10%/20% by
    prediction), and n (int). Metrics that are undefined for the data (every y_true 0, a single
    class, constant input) are NaN and a UserWarning names them.

  Raises:
    ValueError: on bad inputs.
  """
  yt, yp = _check_pair(y_true, y_pred)
  score = yp if p_return is None else _check_pair(y_true, p_return, "p_return")[1]
  undefined = []
  gain = _gain_curve(yt, yp)
  returned = yt > 0
  out: dict[str, float | int] = {"gini": gini_normalised(yt, yp)}
  if np.ptp(yt) > 0 and np.ptp(yp) > 0:
    out["spearman"] = float(stats.spearmanr(yt, yp).statistic)
  else:
    out["spearman"] = math.nan
    undefined.append("spearman (constant y_true or y_pred)")
  out["decile_mape"] = decile_mape(yt, yp)
  if 0 < returned.sum() < len(yt):
    out["auc_returning"] = float(roc_auc_score(returned, score))
    out["pr_auc_returning"] = float(average_precision_score(returned, score))
  else:
    out["auc_returning"] = out["pr_auc_returning"] = math.nan
    undefined.append("auc_returning, pr_auc_returning (everyone or no one returned)")
  out["mae"] = float(np.mean(np.abs(yt - yp)))
  out["top10_share"] = _top_share(gain, 0.1)
  out["top20_share"] = _top_share(gain, 0.2)
  out["n"] = int(len(yt))
  if not yt.sum() > 0:
    undefined.append("gini, decile_mape, top10_share, top20_share (every y_true is 0)")
  elif math.isnan(out["gini"]):
    undefined.append("gini (all y_true equal)")
  if undefined:
    warnings.warn("value_metrics: undefined, reported as NaN: " + "; ".join(undefined),
                  stacklevel=2)
  return out


def interval_coverage(y_true: Any, lo: Any, hi: Any) -> float:
  """Share of rows with lo <= y_true <= hi (see :func:`interval_coverage_by_return` for the
  honest split: customers who spend nothing sit inside most intervals almost automatically).

  Raises:
    ValueError: on shape mismatch, NaN, or lo > hi somewhere.
  """
  yt = np.asarray(y_true, dtype=np.float64)
  lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
  if not (yt.ndim == 1 and yt.shape == lo_a.shape == hi_a.shape) or len(yt) == 0:
    raise ValueError(f"y_true, lo, hi must be non-empty 1-D of equal length, got {yt.shape}, "
                     f"{lo_a.shape}, {hi_a.shape}")
  if np.isnan(yt).any() or np.isnan(lo_a).any() or np.isnan(hi_a).any():
    raise ValueError("y_true, lo, hi must not hold NaN")
  bad = lo_a > hi_a
  if bad.any():
    raise ValueError(f"lo > hi at rows {np.nonzero(bad)[0][:5].tolist()}")
  return float(np.mean((lo_a <= yt) & (yt <= hi_a)))


def interval_coverage_by_return(y_true: Any, lo: Any, hi: Any) -> dict[str, float]:
  """Interval coverage over all rows, among returning (y_true > 0) and non-returning rows.

  A zero-spend customer is covered whenever the interval starts at 0, which a zero-inflated model
  gives most of them, so the overall share can look right while the interval misses the spenders.

  Returns:
    {"interval_coverage", "interval_coverage_returning", "interval_coverage_not_returning"};
    a group with no rows is NaN.

  Raises:
    ValueError: as :func:`interval_coverage`.
  """
  overall = interval_coverage(y_true, lo, hi)
  yt = np.asarray(y_true, dtype=np.float64)
  inside = (np.asarray(lo, dtype=np.float64) <= yt) & (yt <= np.asarray(hi, dtype=np.float64))
  ret = yt > 0
  return {"interval_coverage": overall,
          "interval_coverage_returning": float(inside[ret].mean()) if ret.any() else math.nan,
          "interval_coverage_not_returning": (float(inside[~ret].mean()) if (~ret).any()
                                              else math.nan)}


def bootstrap_gini_diff(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    *,
    n_boot: int = 500,
    seed: int = 0,
) -> tuple[float, float, float]:
  """Gini(a) - Gini(b) with a percentile bootstrap 95% interval over customers.

  Args:
    y_true: [n] actual values.
    pred_a: [n] predictions of model a.
    pred_b: [n] predictions of model b.
    n_boot: bootstrap resamples.
    seed: seed of the resampling.

  Returns:
    (difference on the full data, 2.5th percentile, 97.5th percentile). Resamples where the Gini
    is undefined (every sampled y_true 0) are skipped.

  Raises:
    ValueError: on bad inputs or n_boot < 1.
  """
  if n_boot < 1:
    raise ValueError(f"n_boot must be >= 1, got {n_boot}")
  yt, a = _check_pair(y_true, pred_a, "pred_a")
  _, b = _check_pair(y_true, pred_b, "pred_b")
  diff = gini_normalised(yt, a) - gini_normalised(yt, b)
  rng = np.random.default_rng(seed)
  diffs = np.empty(n_boot)
  for i in range(n_boot):
    idx = rng.integers(0, len(yt), len(yt))
    perfect = _raw_gini(yt[idx], yt[idx])
    if not perfect > 0:
      diffs[i] = np.nan
      continue
    diffs[i] = (_raw_gini(yt[idx], a[idx]) - _raw_gini(yt[idx], b[idx])) / perfect
  if np.isnan(diffs).all():
    return float(diff), math.nan, math.nan
  lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
  return float(diff), float(lo), float(hi)


_ACTUAL_COLOR = "#4d4d4d"
_MODEL_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


def plot_decile_chart(tables: dict[str, pd.DataFrame], *, shared: bool = False) -> Figure:
  """Grouped bars of mean predicted vs mean actual value per decile.

  Args:
    tables: model name -> :func:`decile_table` output (all on the same customers).
    shared: one panel with the actual bars once and one bar per model, instead of one panel per
      model.

  Returns:
    A matplotlib Figure.

  Raises:
    ValueError: if ``tables`` is empty or a table lacks the decile columns.
  """
  if not tables:
    raise ValueError("plot_decile_chart: no tables given")
  for name, t in tables.items():
    missing = {"decile", "mean_pred", "mean_true"} - set(t.columns)
    if missing:
      raise ValueError(f"plot_decile_chart: table {name!r} lacks columns {sorted(missing)}")
  names = list(tables)
  colors = {n: _MODEL_COLORS[i % len(_MODEL_COLORS)] for i, n in enumerate(names)}
  xlabel = "Decile of predicted value (1 = lowest, 10 = highest)"
  ylabel = "Mean value per customer"
  if shared:
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    first = tables[names[0]]
    width = 0.8 / (len(names) + 1)
    x = first["decile"].to_numpy(dtype=float)
    ax.bar(x - 0.4 + width / 2, first["mean_true"], width, label="Actual", color=_ACTUAL_COLOR)
    for i, name in enumerate(names, start=1):
      t = tables[name]
      ax.bar(t["decile"].to_numpy(dtype=float) - 0.4 + width * (i + 0.5), t["mean_pred"], width,
             label=f"{name} (predicted)", color=colors[name])
    ax.set(xlabel=xlabel, ylabel=ylabel, title="Predicted vs actual value by decile",
           xticks=np.arange(1, 11))
    ax.legend(frameon=False)
    return fig
  ncols = min(len(names), 3)
  nrows = math.ceil(len(names) / ncols)
  fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows), layout="constrained")
  axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel())
  for ax, name in zip(axes, names):
    t = tables[name]
    x = t["decile"].to_numpy(dtype=float)
    ax.bar(x - 0.2, t["mean_pred"], 0.4, label="Predicted", color=colors[name])
    ax.bar(x + 0.2, t["mean_true"], 0.4, label="Actual", color=_ACTUAL_COLOR)
    ax.set(title=name, xlabel=xlabel, ylabel=ylabel, xticks=np.arange(1, 11))
    ax.legend(frameon=False)
  for ax in axes[len(names):]:
    ax.set_visible(False)
  fig.suptitle("Predicted vs actual value by decile of predicted value")
  return fig


def plot_gain_curves(y_true: Any, preds: dict[str, Any]) -> Figure:
  """Cumulative share of actual value captured vs share of customers, ranked by each model.

  Args:
    y_true: [n] actual values.
    preds: model name -> [n] predictions.

  Returns:
    A matplotlib Figure with one curve per model (Gini in the legend), the perfect ranking and the
    random diagonal.

  Raises:
    ValueError: if ``preds`` is empty or inputs are bad.
  """
  if not preds:
    raise ValueError("plot_gain_curves: no predictions given")
  yt, _ = _check_pair(y_true, y_true)
  # the legend goes under the plot, one line per curve: model names are long, and inside the axes
  # it covered the curves and the axis label
  fig = Figure(figsize=(6.5, 5 + 0.24 * (len(preds) + 2)), layout="constrained")
  ax = fig.subplots()
  x = np.r_[0.0, np.arange(1, len(yt) + 1) / len(yt)]
  ax.plot(x, np.r_[0.0, _gain_curve(yt, yt)], color="black", lw=1.5, ls="--", label="Perfect")
  for i, (name, yp) in enumerate(preds.items()):
    yt_c, yp_c = _check_pair(yt, yp, f"preds[{name!r}]")
    gini = gini_normalised(yt_c, yp_c)
    ax.plot(x, np.r_[0.0, _gain_curve(yt_c, yp_c)], color=_MODEL_COLORS[i % len(_MODEL_COLORS)],
            lw=1.8, label=f"{name} (Gini {gini:.3f})")
  ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="Random")
  ax.set(xlabel="Share of customers, ranked by predicted value",
         ylabel="Share of total actual value", title="Cumulative gain (Lorenz) curves",
         xlim=(0, 1), ylim=(0, 1.02))
  fig.legend(loc="outside lower center", frameon=False)
  ax.grid(alpha=0.3)
  return fig

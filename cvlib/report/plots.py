"""Figures of the data and training stages, in one consistent style readable in print.

Every ``plot_*`` returns a matplotlib Figure and never calls ``plt.show``.
"""

from __future__ import annotations

import datetime as dt

import matplotlib

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

STYLE = {"figure.figsize": (7.5, 3.6), "axes.spines.top": False, "axes.spines.right": False,
         "axes.grid": True, "grid.alpha": 0.3, "axes.titlesize": 11, "axes.labelsize": 10,
         "font.size": 10, "legend.frameon": False}
plt.rcParams.update(STYLE)
BLUE, ORANGE, GREY = "#1f5a96", "#d9822b", "#8a9bb0"


def plot_not_applicable(title: str, reason: str) -> plt.Figure:
  """A small figure saying why a chart is absent (keeps notebooks free of branches)."""
  fig, ax = plt.subplots(figsize=(5.5, 1.4))
  ax.set_axis_off()
  ax.text(0.5, 0.5, f"{title}: not applicable\n({reason})", ha="center", va="center",
          transform=ax.transAxes, color=GREY, wrap=True)
  return fig


def plot_orders_over_time(transactions: pd.DataFrame, cutoff: dt.date | None,
                          horizon_days: int) -> plt.Figure:
  """Orders per week with the holdout period shaded."""
  if not len(transactions) or cutoff is None:
    return plot_not_applicable("Orders per week", "no orders in this dataset")
  fig, ax = plt.subplots()
  weekly = transactions.set_index("timestamp").resample("W")["order_id"].count()
  ax.plot(weekly.index, weekly.to_numpy(), color=BLUE, lw=1.5)
  start = pd.Timestamp(cutoff)
  ax.axvspan(start, start + pd.Timedelta(days=horizon_days), color=ORANGE, alpha=0.15,
             label="holdout period")
  ax.axvline(start, color=ORANGE, lw=1)
  ax.set(title="Orders per week", ylabel="orders", xlabel="week")
  ax.legend(loc="upper left")
  fig.autofmt_xdate()
  return fig


def plot_ratings(reviews: pd.DataFrame) -> plt.Figure:
  """Share of reviews per star rating (or a note when there are none)."""
  fig, ax = plt.subplots(figsize=(5.5, 3.2))
  ratings = reviews["rating"].dropna() if "rating" in reviews else pd.Series(dtype=float)
  if not len(ratings):
    ax.text(0.5, 0.5, "no ratings in this dataset", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig
  share = ratings.round().value_counts(normalize=True).sort_index()
  ax.bar(share.index.astype(int).astype(str), share.to_numpy(), color=BLUE)
  ax.set(title=f"Star ratings ({len(ratings):,} reviews)", xlabel="stars", ylabel="share")
  ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
  return fig


def plot_holdout_value(features: pd.DataFrame) -> plt.Figure:
  """Distribution of holdout spend: the zero spike and the long tail the ZILN loss is built for."""
  if not len(features):
    return plot_not_applicable("Holdout spend", "no customers with orders")
  fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
  y = features["holdout_value"].to_numpy()
  zero = (y == 0).mean() if len(y) else 0.0
  a.bar(["bought nothing", "bought again"], [zero, 1 - zero], color=[GREY, BLUE])
  a.set(title="Customers in the holdout period", ylabel="share")
  a.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
  pos = y[y > 0]
  if len(pos):
    b.hist(np.log10(pos), bins=30, color=BLUE)
  b.set(title="Spend of those who bought (log scale)", xlabel="log10 spend", ylabel="customers")
  fig.tight_layout()
  return fig


def plot_finetune_history(history: pd.DataFrame) -> plt.Figure:
  """Training and validation loss, and validation macro-F1, per epoch."""
  fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
  if not len(history):
    for ax in (a, b):
      ax.set_axis_off()
    a.text(0.5, 0.5, "no fine-tuning (no labelled reviews)", ha="center", transform=a.transAxes)
    return fig
  a.plot(history["epoch"], history["train_loss"], "o-", color=BLUE, label="train")
  a.plot(history["epoch"], history["val_loss"], "o-", color=ORANGE, label="validation")
  a.set(title="Loss", xlabel="epoch")
  a.legend()
  b.plot(history["epoch"], history["val_macro_f1"], "o-", color=BLUE)
  b.set(title="Validation macro-F1", xlabel="epoch", ylim=(0, 1))
  for ax in (a, b):
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if len(history) == 1:  # one epoch: one tick, not 0.945 ... 1.050
      ax.set_xticks(history["epoch"].to_numpy())
  fig.tight_layout()
  return fig


def plot_value_training(networks: dict) -> plt.Figure:
  """Validation ZILN loss per epoch of each value network; the kept epoch is marked."""
  if not networks:
    return plot_not_applicable("Value networks", "no customers with orders")
  fig, ax = plt.subplots()
  for (name, (_, hist)), color in zip(networks.items(), (BLUE, ORANGE, GREY)):
    ax.plot(hist["epoch"], hist["val_loss"], color=color, label=f"{name} validation")
    ax.plot(hist["epoch"], hist["train_loss"], color=color, ls=":", label=f"{name} train")
    best = hist.loc[hist["val_loss"].idxmin()]
    ax.plot([best["epoch"]], [best["val_loss"]], "o", color=color)
  ax.set(title="Value networks: ZILN loss", xlabel="epoch", ylabel="loss")
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # beside, not over, curves
  return fig

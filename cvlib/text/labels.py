"""Sentiment labels: the class schemes, labels from star ratings, and accuracy / macro-F1 (no JAX)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score


_CLASS_NAMES = {
    "binary": ("negative", "positive"),  # 1-2 stars vs 4-5 stars; 3 stars dropped
    "binary_keep_neutral": ("negative", "positive"),  # 3 stars counted as negative
    "three_class": ("negative", "neutral", "positive"),
}


SCHEMES = tuple(_CLASS_NAMES)


def check_scheme(scheme: str) -> str:
  if scheme not in _CLASS_NAMES:
    raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")
  return scheme


def class_names(scheme: str = "binary") -> list[str]:
  """Class names of a labelling scheme, index = label."""
  return list(_CLASS_NAMES[check_scheme(scheme)])


def labels_from_ratings(ratings: Sequence[float] | np.ndarray | pd.Series,
                        scheme: str = "binary") -> tuple[np.ndarray, np.ndarray]:
  """Sentiment labels from 1-5 star ratings.

  Ratings <= 2 are negative, >= 4 positive, anything between (3, or a half star such as 2.5)
  neutral. "binary" drops neutral, "binary_keep_neutral" counts it as negative (an unhappy-enough
  customer), "three_class" keeps it as its own class. Missing ratings are always dropped.

  Args:
    ratings: star ratings in [1, 5]; NaN / None / <NA> allowed.
    scheme: "binary", "binary_keep_neutral" or "three_class".

  Returns:
    (labels int64 [n], keep bool [n]); labels are -1 where keep is False, so use labels[keep].

  Raises:
    ValueError: unknown scheme, or a rating outside [1, 5].
  """
  check_scheme(scheme)
  series = pd.Series(ratings)
  try:
    r = pd.to_numeric(series, errors="raise").to_numpy(dtype="float64", na_value=np.nan)
  except (ValueError, TypeError) as e:
    raise ValueError(f"ratings must be numbers in [1, 5] or missing: {e}") from e
  present = ~np.isnan(r)
  bad = present & ((r < 1) | (r > 5))
  if bad.any():
    raise ValueError(f"ratings must lie in [1, 5]; got {np.unique(r[bad])[:10].tolist()} "
                     f"at positions {np.flatnonzero(bad)[:10].tolist()}")
  negative, positive = present & (r <= 2), present & (r >= 4)
  neutral = present & ~negative & ~positive
  labels = np.full(len(r), -1, np.int64)
  if scheme == "binary":
    labels[negative], labels[positive] = 0, 1
  elif scheme == "binary_keep_neutral":
    labels[negative | neutral], labels[positive] = 0, 1
  else:
    labels[negative], labels[neutral], labels[positive] = 0, 1, 2
  return labels, labels >= 0


def classification_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                           num_classes: int | None = None) -> dict[str, float]:
  """Accuracy and macro-F1.

  Args:
    y_true: true labels.
    y_pred: predicted labels.
    num_classes: average F1 over classes 0..num_classes-1 (a class never predicted nor present
      scores 0); None averages over the labels that occur in y_true or y_pred.

  Returns:
    {"accuracy", "macro_f1", "n"}.

  Raises:
    ValueError: different lengths or no examples.
  """
  y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
  if y_true.shape != y_pred.shape or y_true.ndim != 1:
    raise ValueError(f"y_true and y_pred must be 1-d of equal length, got {y_true.shape} and "
                     f"{y_pred.shape}")
  if y_true.size == 0:
    raise ValueError("no examples to score")
  labels = list(range(num_classes)) if num_classes is not None else None
  return {"accuracy": float(accuracy_score(y_true, y_pred)),
          "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                     zero_division=0)),
          "n": int(y_true.size)}

"""The rows behind the report's numbers: who is in a segment, which reviews make a topic or a flag.

Every segment, value-by-risk cell, action, aspect, topic and opinion flag on the stakeholder page
links to a detail page (``Workspace.add_page``) listing the customers (pseudonymised) or reviews
behind it. This module builds those lists as plain DataFrames; ``cvlib.stages.segment`` adds the pages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

# What a customer list shows, in this order, where the scores have it.
CUSTOMER_COLUMNS = ("customer_key", "predicted_value", "value_lo", "value_hi", "churn_probability",
                    "value_tier", "risk_band", "rfm_segment", "action", "top_drivers")
# What a review list shows, in this order.
REVIEW_COLUMNS = ("date", "category", "stars", "sentiment", "aspects", "topic", "review")
# Rows a detail page shows; the rest stay in scores.parquet or the stage's artifacts.
MAX_ROWS = 500


def customer_list(scores: pd.DataFrame, mask: pd.Series | np.ndarray | None = None
                  ) -> pd.DataFrame:
  """The customers selected by ``mask``, highest predicted value first (pseudonymised keys only).

  Raises:
    ValueError: the scores carry a raw ``customer_id`` column but no ``customer_key``.
  """
  if "customer_key" not in scores:
    raise ValueError("customer_list: scores need the pseudonymised customer_key column")
  rows = scores if mask is None else scores[np.asarray(mask, dtype=bool)]
  cols = [c for c in CUSTOMER_COLUMNS if c in rows]
  if "predicted_value" in rows:
    rows = rows.sort_values(["predicted_value", "customer_key"], ascending=[False, True],
                            kind="stable")
  return rows[cols].reset_index(drop=True)


# The aspects cell of a review outside the sample the aspect model read (segment.aspect_max_reviews).
NOT_READ = "(not in the aspect sample)"


def aspect_cells(tags: pd.DataFrame, tagged: Sequence[bool] | None = None) -> list[str]:
  """Per review, the aspects it mentions ("quality, price"), or ``NOT_READ`` where the aspect
  model did not read it.

  Args:
    tags: the aspect tags (bool, one column per aspect), one row per review.
    tagged: per review, whether the aspect model read it (None: all were).

  Raises:
    ValueError: ``tagged`` is not one value per review.
  """
  t = tags.reset_index(drop=True).astype(bool)
  read = np.ones(len(t), dtype=bool) if tagged is None else np.asarray(tagged, dtype=bool)
  if read.shape != (len(t),):
    raise ValueError(f"aspect_cells: tagged has {read.shape} values for {len(t)} reviews")
  names = np.asarray(t.columns, dtype=object)
  return [", ".join(names[row]) if ok else NOT_READ for row, ok in zip(t.to_numpy(), read)]


def review_list(review_scores: pd.DataFrame, texts: pd.Series, *,
                categories: pd.Series | None = None, tags: pd.DataFrame | None = None,
                tagged: Sequence[bool] | None = None, topics: Iterable[str] | None = None,
                max_chars: int = 500) -> pd.DataFrame:
  """One row per scored review, in ``review_scores`` order, with what the pages show.

  Args:
    review_scores: stage 2's scored reviews (review_id, sentiment; optional timestamp, rating,
      product_id).
    texts: review text by review_id.
    categories: product category by product_id.
    tags: the aspect tags (bool, one column per aspect) in ``review_scores`` order.
    tagged: per review, whether the aspect model read it (None: all were); the others' aspects
      say ``NOT_READ``, not an empty list.
    topics: the topic label of each review, in ``review_scores`` order.
    max_chars: longer texts are cut and end in an ellipsis.

  Returns:
    Columns review_id plus those of ``REVIEW_COLUMNS`` that apply.
  """
  r = review_scores.reset_index(drop=True)
  out = pd.DataFrame({"review_id": r["review_id"].astype(str)})
  if "timestamp" in r:
    out["date"] = pd.to_datetime(r["timestamp"]).dt.strftime("%Y-%m-%d")
  if categories is not None and "product_id" in r:
    out["category"] = r["product_id"].map(categories).to_numpy()
  if "rating" in r:
    out["stars"] = r["rating"].to_numpy()
  out["sentiment"] = r["sentiment"].to_numpy()
  if tags is not None:
    if len(tags) != len(r):
      raise ValueError(f"review_list: tags has {len(tags)} rows for {len(r)} reviews")
    out["aspects"] = aspect_cells(tags, tagged)
  if topics is not None:
    labels = list(topics)
    if len(labels) != len(r):
      raise ValueError(f"review_list: {len(labels)} topic labels for {len(r)} reviews")
    out["topic"] = labels
  body = r["review_id"].map(texts).fillna("").astype(str)
  out["review"] = body.where(body.str.len() <= max_chars, body.str.slice(0, max_chars) + "…")
  return out


def reviews_for(reviews: pd.DataFrame, mask: pd.Series | np.ndarray, *,
                most_negative_first: bool = True) -> pd.DataFrame:
  """The reviews selected by ``mask`` (aligned with ``reviews``), most negative first or newest
  first, without the review_id."""
  rows = reviews[np.asarray(mask, dtype=bool)]
  if most_negative_first:
    rows = rows.sort_values("sentiment", kind="stable")
  elif "date" in rows:
    rows = rows.sort_values("date", ascending=False, kind="stable")
  return rows[[c for c in REVIEW_COLUMNS if c in rows]].reset_index(drop=True)

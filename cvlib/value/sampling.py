"""The customers the value models train on: all of them, or a seeded stratified sample.

A shop with tens of millions of customers computes its features on Spark and trains on one node
(docs/spark.md). ``value.train_sample`` caps the training customers at a sample whose strata keep
their shares: customers who bought again in the target window and those who did not, crossed with
past spend (no spend, then the positive spend cut at its median, 90th and 99th percentiles, so the
zero-spend customers and the high-value tail are neither lost nor over-weighted) and tenure
(terciles of days since the first purchase). Every customer is still predicted and scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Positive past spend is cut at these quantiles; zero spend is a stratum of its own.
SPEND_QUANTILES = (0.5, 0.9, 0.99)
TENURE_QUANTILES = (1 / 3, 2 / 3)
STRATA = ("returned in the target window (yes/no) x past spend (none, up to the median, to the "
          "90th, to the 99th percentile, above) x tenure (terciles)")


def customer_strata(features: pd.DataFrame) -> np.ndarray:
  """Each customer's stratum number (``STRATA``), cut points taken from these customers.

  Args:
    features: customer features with ``returned``, ``total_spend`` and ``T_days``.

  Returns:
    [n] int64 stratum codes (only their equality matters).
  """
  spend = features["total_spend"].to_numpy(np.float64)
  positive = spend[spend > 0]
  cuts = np.quantile(positive, SPEND_QUANTILES) if len(positive) else np.zeros(0)
  spend_bin = np.where(spend > 0, 1 + np.searchsorted(cuts, spend, side="left"), 0)
  tenure = features["T_days"].to_numpy(np.float64)
  tenure_bin = np.searchsorted(np.quantile(tenure, TENURE_QUANTILES) if len(tenure) else [],
                               tenure, side="left")
  returned = features["returned"].to_numpy(bool).astype(np.int64)
  n_spend, n_tenure = len(SPEND_QUANTILES) + 2, len(TENURE_QUANTILES) + 1
  return (returned * n_spend + spend_bin) * n_tenure + tenure_bin


def stratified_sample(strata: np.ndarray, n: int, seed: int) -> np.ndarray:
  """``n`` of the rows, each stratum keeping its share (largest remainders), seeded.

  Args:
    strata: [m] stratum code per row.
    n: sample size; ``n >= m`` returns every row.
    seed: the draw's seed.

  Returns:
    Sorted row indices.
  """
  m = len(strata)
  if n >= m:
    return np.arange(m)
  codes, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
  quota = counts * (n / m)
  take = np.floor(quota).astype(np.int64)
  left = n - int(take.sum())
  # the strata with the largest remainders get one more each; ties go to the lower code
  order = np.lexsort((np.arange(len(codes)), -(quota - take)))
  take[order[:left]] += 1
  rng = np.random.default_rng(seed)
  by_stratum = np.argsort(inverse, kind="stable")  # rows grouped by stratum, in row order
  ends = np.cumsum(counts)
  picked = [rng.choice(by_stratum[end - count:end], take[s], replace=False)
            for s, (end, count) in enumerate(zip(ends, counts)) if take[s]]
  return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def training_sample(features: pd.DataFrame, pool: np.ndarray, n: int, seed: int) -> np.ndarray:
  """The customers of ``pool`` the value models train on: all (``n`` 0 or at least the pool)
  or a stratified sample of ``n`` (:func:`stratified_sample` over :func:`customer_strata` of
  the pool's customers).

  Args:
    features: every customer's features.
    pool: [customers] True for the customers training may use.
    n: ``value.train_sample``.
    seed: the draw's seed.

  Returns:
    [customers] bool, True for the customers trained on.
  """
  pool = np.asarray(pool, bool)
  if not n or n >= pool.sum():
    return pool.copy()
  rows = np.flatnonzero(pool)
  strata = customer_strata(features.iloc[rows])
  out = np.zeros(len(pool), bool)
  out[rows[stratified_sample(strata, n, seed)]] = True
  return out

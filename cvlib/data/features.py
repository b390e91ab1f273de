"""Calibration/holdout split by time and per-customer features, computed in DuckDB.

Days are elapsed whole days between purchase dates (dates, not times): DuckDB's ``date_diff`` counts
boundaries, so differences are taken on epoch days explicitly.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

# Behaviour features the value models see (all computed from the calibration period only).
BEHAVIOUR_FEATURES = (
    "frequency", "recency_days", "T_days", "days_since_last", "n_orders", "total_spend",
    "avg_order_value", "monetary_value", "n_items", "n_products", "n_categories",
    "spend_last_90d", "orders_last_90d",
    # inter-purchase gaps between purchase days (missing with fewer than two days) and basket size
    "mean_interpurchase_days", "std_interpurchase_days", "max_interpurchase_days",
    "avg_basket_size",
)
# Review features (ratings, not text) from the calibration period.
REVIEW_FEATURES = ("n_reviews", "mean_rating", "min_rating", "last_rating", "share_low_ratings",
                   "days_since_last_review")


def choose_cutoff(transactions: pd.DataFrame, calibration_end: dt.date | None,
                  horizon_days: int, meta: dict | None = None) -> dt.date:
  """The first day of the holdout period.

  Args:
    transactions: canonical transactions.
    calibration_end: the configured date, used when given.
    horizon_days: holdout length in days.
    meta: dataset metadata; a synthetic dataset's own ``calibration_end`` is used next.

  Returns:
    The cutoff date: calibration is ``[first event, cutoff)``, holdout ``[cutoff, cutoff+horizon)``.

  Raises:
    ValueError: when the data do not reach past the cutoff or there is no calibration data.
  """
  if calibration_end is None and meta and meta.get("calibration_end"):
    calibration_end = dt.date.fromisoformat(meta["calibration_end"])
  if not len(transactions):
    raise ValueError("no transactions left after cleaning: nothing to split")
  first = transactions["timestamp"].min().date()
  last = transactions["timestamp"].max().date()
  if calibration_end is None:
    calibration_end = last + dt.timedelta(days=1) - dt.timedelta(days=horizon_days)
  if calibration_end <= first:
    raise ValueError(f"calibration_end {calibration_end} is not after the first purchase ({first}); "
                     f"shorten split.horizon_days ({horizon_days}) or set split.calibration_end")
  if calibration_end > last:
    raise ValueError(f"calibration_end {calibration_end} is after the last purchase ({last}): "
                     "there is no holdout period to evaluate on")
  return calibration_end


def compute_customer_features(transactions: pd.DataFrame, items: pd.DataFrame,
                              products: pd.DataFrame, reviews: pd.DataFrame, cutoff: dt.date,
                              horizon_days: int) -> pd.DataFrame:
  """One row per customer with a calibration purchase: behaviour, review and holdout columns.

  Args:
    transactions, items, products, reviews: cleaned canonical tables.
    cutoff: first day of the holdout period.
    horizon_days: holdout length in days.

  Returns:
    DataFrame sorted by customer_id with :data:`BEHAVIOUR_FEATURES`, :data:`REVIEW_FEATURES`,
    ``first_purchase`` and the targets ``holdout_value``, ``holdout_orders``, ``returned``.
  """
  con = duckdb.connect()
  try:
    con.execute("SET threads TO 2")
    con.register("tx", transactions[["customer_id", "order_id", "timestamp", "amount"]])
    con.register("it", items[["order_id", "product_id", "quantity"]])
    con.register("pr", products[["product_id", "category"]])
    con.register("rv", reviews[["customer_id", "timestamp", "rating"]])
    end = cutoff + dt.timedelta(days=horizon_days)
    sql = f"""
    WITH cal AS (
      SELECT customer_id, order_id, amount, CAST(timestamp AS DATE) AS day
      FROM tx WHERE timestamp < DATE '{cutoff}'
    ),
    days AS (  -- spend per customer-day: BTYD models count purchase days, not orders
      SELECT customer_id, day, SUM(amount) AS spend,
             ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY day) AS k,
             (epoch(day) - epoch(LAG(day) OVER (PARTITION BY customer_id ORDER BY day))) // 86400
               AS gap
      FROM cal GROUP BY customer_id, day
    ),
    rfm AS (
      SELECT customer_id,
             COUNT(*) - 1 AS frequency,
             (epoch(MAX(day)) - epoch(MIN(day))) // 86400 AS recency_days,
             (epoch(DATE '{cutoff}') - epoch(MIN(day))) // 86400 AS T_days,
             (epoch(DATE '{cutoff}') - epoch(MAX(day))) // 86400 AS days_since_last,
             COALESCE(AVG(spend) FILTER (WHERE k > 1), 0) AS monetary_value,
             AVG(gap) AS mean_interpurchase_days, STDDEV_POP(gap) AS std_interpurchase_days,
             MAX(gap) AS max_interpurchase_days,
             MIN(day) AS first_purchase
      FROM days GROUP BY customer_id
    ),
    orders AS (
      SELECT customer_id, COUNT(*) AS n_orders, SUM(amount) AS total_spend,
             AVG(amount) AS avg_order_value,
             SUM(amount) FILTER (WHERE day >= DATE '{cutoff}' - INTERVAL 90 DAY) AS spend_last_90d,
             COUNT(*) FILTER (WHERE day >= DATE '{cutoff}' - INTERVAL 90 DAY) AS orders_last_90d
      FROM cal GROUP BY customer_id
    ),
    baskets AS (
      SELECT cal.customer_id, SUM(it.quantity) AS n_items,
             COUNT(DISTINCT it.product_id) AS n_products,
             COUNT(DISTINCT pr.category) AS n_categories
      FROM cal JOIN it USING (order_id) LEFT JOIN pr USING (product_id)
      GROUP BY cal.customer_id
    ),
    revs AS (
      SELECT customer_id, COUNT(*) AS n_reviews, AVG(rating) AS mean_rating,
             MIN(rating) AS min_rating, arg_max(rating, timestamp) AS last_rating,
             AVG(CASE WHEN rating <= 2 THEN 1.0 WHEN rating IS NULL THEN NULL ELSE 0.0 END)
               AS share_low_ratings,
             (epoch(DATE '{cutoff}') - epoch(MAX(CAST(timestamp AS DATE)))) // 86400
               AS days_since_last_review
      FROM rv WHERE customer_id IS NOT NULL AND timestamp < DATE '{cutoff}'
      GROUP BY customer_id
    ),
    hold AS (
      SELECT customer_id, SUM(amount) AS holdout_value, COUNT(*) AS holdout_orders
      FROM tx WHERE timestamp >= DATE '{cutoff}' AND timestamp < DATE '{end}'
      GROUP BY customer_id
    )
    SELECT rfm.customer_id, rfm.first_purchase,
           rfm.frequency, rfm.recency_days, rfm.T_days, rfm.days_since_last,
           orders.n_orders, orders.total_spend, orders.avg_order_value, rfm.monetary_value,
           COALESCE(baskets.n_items, 0) AS n_items, COALESCE(baskets.n_products, 0) AS n_products,
           COALESCE(baskets.n_categories, 0) AS n_categories,
           COALESCE(orders.spend_last_90d, 0) AS spend_last_90d, orders.orders_last_90d,
           rfm.mean_interpurchase_days, rfm.std_interpurchase_days, rfm.max_interpurchase_days,
           COALESCE(baskets.n_items, 0) / orders.n_orders AS avg_basket_size,
           COALESCE(revs.n_reviews, 0) AS n_reviews, revs.mean_rating, revs.min_rating,
           revs.last_rating, revs.share_low_ratings, revs.days_since_last_review,
           COALESCE(hold.holdout_value, 0) AS holdout_value,
           COALESCE(hold.holdout_orders, 0) AS holdout_orders
    FROM rfm JOIN orders USING (customer_id)
      LEFT JOIN baskets USING (customer_id) LEFT JOIN revs USING (customer_id)
      LEFT JOIN hold USING (customer_id)
    ORDER BY rfm.customer_id
    """
    df = con.execute(sql).df()
  finally:
    con.close()
  df["customer_id"] = df["customer_id"].astype("string")
  df["first_purchase"] = pd.to_datetime(df["first_purchase"]).astype("datetime64[us]")
  for col in BEHAVIOUR_FEATURES + REVIEW_FEATURES + ("holdout_value", "holdout_orders"):
    df[col] = df[col].astype("float64")
  df["returned"] = df["holdout_orders"] > 0
  return df


def compute_rfm_summary(transactions: pd.DataFrame, cutoff: dt.date, horizon_days: int,
                        threads: int = 2) -> pd.DataFrame:
  """The BTYD summary per customer with a calibration/holdout split, in DuckDB.

  The same conventions as :func:`compute_customer_features` (and lifetimes'
  ``summary_data_from_transaction_data`` with ``freq="D"`` and ``observation_period_end=cutoff``
  on the calibration rows): purchases are counted per customer-day.

  Args:
    transactions: canonical transactions (customer_id, timestamp, amount are read).
    cutoff: first day of the holdout period; calibration is everything before it.
    horizon_days: holdout length in days.
    threads: DuckDB worker threads.

  Returns:
    One row per customer with a calibration purchase, sorted by customer_id: ``frequency``
    (repeat purchase days), ``recency_days``, ``T_days``, ``monetary_value`` (mean spend of the
    repeat days, 0 without repeats), ``holdout_days`` (purchase days in the holdout),
    ``holdout_orders`` (transactions in the holdout) and ``holdout_value`` (spend in the holdout).
  """
  if horizon_days <= 0:
    raise ValueError(f"horizon_days must be > 0, got {horizon_days}")
  end = cutoff + dt.timedelta(days=horizon_days)
  con = duckdb.connect()
  try:
    con.execute(f"SET threads TO {int(threads)}")
    con.register("tx", transactions[["customer_id", "timestamp", "amount"]])
    cut = f"DATE '{cutoff}'"
    # one pass over customer-days: calibration and holdout are FILTERs of the same aggregate;
    # DATE - DATE counts elapsed days (date_diff would count boundaries)
    df = con.execute(f"""
    WITH days AS (
      SELECT customer_id, CAST(timestamp AS DATE) AS day, SUM(amount) AS spend,
             COUNT(*) AS n
      FROM tx WHERE timestamp < TIMESTAMP '{end}'
      GROUP BY ALL
    )
    SELECT customer_id,
           COUNT(*) FILTER (WHERE day < {cut}) - 1 AS frequency,
           MAX(day) FILTER (WHERE day < {cut}) - MIN(day) AS recency_days,
           {cut} - MIN(day) AS T_days,
           -- mean spend of the repeat days: the calibration spend but the first day's
           COALESCE((SUM(spend) FILTER (WHERE day < {cut}) - arg_min(spend, day))
                    / NULLIF(COUNT(*) FILTER (WHERE day < {cut}) - 1, 0), 0) AS monetary_value,
           COUNT(*) FILTER (WHERE day >= {cut}) AS holdout_days,
           COALESCE(SUM(n) FILTER (WHERE day >= {cut}), 0) AS holdout_orders,
           COALESCE(SUM(spend) FILTER (WHERE day >= {cut}), 0) AS holdout_value
    FROM days GROUP BY customer_id
    HAVING MIN(day) < {cut}  -- customers with a calibration purchase
    ORDER BY customer_id
    """).df()
  finally:
    con.close()
  df["customer_id"] = df["customer_id"].astype("string")
  for col in ("frequency", "recency_days", "T_days", "monetary_value", "holdout_days",
              "holdout_orders", "holdout_value"):
    df[col] = df[col].astype("float64")
  return df


# Inputs that feature_matrix log-scales: money and counts.
LOG_SCALED = ("total_spend", "avg_order_value", "monetary_value", "spend_last_90d", "frequency",
              "n_orders", "n_items", "n_products", "n_categories", "orders_last_90d",
              "avg_basket_size", "n_reviews")


def feature_matrix(features: pd.DataFrame, columns: tuple[str, ...] = BEHAVIOUR_FEATURES +
                   REVIEW_FEATURES) -> np.ndarray:
  """The model input: chosen columns as float32, money and counts log-scaled, missing review
  values imputed.

  Money and counts are heavy-tailed (one Online Retail wholesaler bought 128,029 items; the median
  customer 300): standardised as they are, a handful of customers sit 30 standard deviations out
  and the value network's predicted total came out 2.9 times the truth there. log1p brings them
  in (total 0.9 times the truth, decile MAPE 0.58 -> 0.19).

  Missing review features (customers who never wrote one) become a neutral value plus an indicator
  column ``has_review`` so a model can tell "no review" from "a 3-star review".
  """
  X = features[list(columns)].astype("float64").copy()
  for col in LOG_SCALED:
    if col in X:
      X[col] = np.log1p(X[col].clip(lower=0))
  if "mean_rating" in X:
    X["has_review"] = features["n_reviews"].gt(0).astype("float64")
  fill = {"mean_rating": 3.0, "min_rating": 3.0, "last_rating": 3.0, "share_low_ratings": 0.0,
          "days_since_last_review": X["T_days"].max() if "T_days" in X else 0.0}
  for col in ("mean_interpurchase_days", "max_interpurchase_days"):
    if col in X and "T_days" in X:  # no repeat yet: the customer has waited T days so far
      X[col] = X[col].fillna(X["T_days"])
  X = X.fillna(fill).fillna(0.0)
  return X.to_numpy(dtype=np.float32)


def holdout_items(transactions: pd.DataFrame, items: pd.DataFrame, cutoff: dt.date,
                  horizon_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Customer-product purchase pairs before the cutoff and within the holdout period."""
  lines = items[["order_id", "product_id"]].merge(
      transactions[["order_id", "customer_id", "timestamp"]], on="order_id")
  cut = pd.Timestamp(cutoff)
  end = cut + pd.Timedelta(days=horizon_days)
  cal = lines[lines["timestamp"] < cut]
  hold = lines[(lines["timestamp"] >= cut) & (lines["timestamp"] < end)]
  cols = ["customer_id", "product_id", "timestamp"]
  return cal[cols].reset_index(drop=True), hold[cols].reset_index(drop=True)

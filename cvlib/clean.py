"""Cleaning with a visible log: every row removed or flagged is counted, with the reason."""

from __future__ import annotations

import dataclasses

import pandas as pd

from cvlib.adapters import Tables


@dataclasses.dataclass
class CleaningLog:
  """One row per cleaning step: what it did to which table and how many rows it touched."""
  rows: list[dict] = dataclasses.field(default_factory=list)

  def add(self, table: str, step: str, rows_before: int, affected: int, action: str,
          detail: str = "") -> None:
    self.rows.append({"table": table, "step": step, "rows_before": int(rows_before),
                      "affected": int(affected), "action": action, "detail": detail})

  def to_frame(self) -> pd.DataFrame:
    return pd.DataFrame(self.rows, columns=["table", "step", "rows_before", "affected", "action",
                                            "detail"])


def clean_tables(tables: Tables) -> tuple[Tables, CleaningLog]:
  """Removes rows that cannot be used and flags doubtful ones, logging each step.

  Args:
    tables: canonical tables from :func:`cvlib.adapters.load_data`.

  Returns:
    The cleaned tables (new frames; the input is not modified) and the log.
  """
  log = CleaningLog()
  for note in tables.notes:
    log.add("input", "adapter", 0, 0, "note", note)
  tx = _clean_transactions(tables.transactions, log)
  items = tables.items
  if len(items):
    n = len(items)
    keep = items["order_id"].isin(tx["order_id"])
    items = items[keep]
    if (~keep).sum():
      log.add("items", "lines of removed or unknown orders", n, (~keep).sum(), "removed")
  reviews = _clean_reviews(tables.reviews, log)
  out = dataclasses.replace(tables, transactions=tx.reset_index(drop=True),
                            items=items.reset_index(drop=True), reviews=reviews.reset_index(drop=True))
  return out, log


def _clean_transactions(tx: pd.DataFrame, log: CleaningLog) -> pd.DataFrame:
  # each test runs on the table as the previous steps left it
  steps = [
      ("exact duplicate rows", lambda t: t.duplicated(keep="first"), "the same order written twice"),
      ("missing customer id", lambda t: t["customer_id"].isna(),
       "orders that cannot be attributed to a customer"),
      ("missing timestamp", lambda t: t["timestamp"].isna(), ""),
      ("negative amount", lambda t: t["amount"] < 0, "net returns or cancellations"),
      ("missing amount", lambda t: t["amount"].isna(), ""),
  ]
  for step, test, detail in steps:
    mask = test(tx).fillna(False).to_numpy(dtype=bool)
    if mask.any():
      log.add("transactions", step, len(tx), mask.sum(), "removed", detail)
      tx = tx[~mask]
  dup = tx["order_id"].duplicated(keep="first").to_numpy()
  if dup.any():
    log.add("transactions", "repeated order id with different content", len(tx), dup.sum(),
            "removed", "kept the first row of each order id")
    tx = tx[~dup]
  zero = (tx["amount"] == 0).to_numpy()
  if zero.any():
    log.add("transactions", "zero amount", len(tx), zero.sum(), "kept",
            "counted as purchases; no spend")
  return tx.sort_values(["customer_id", "timestamp", "order_id"], kind="stable")


def _clean_reviews(rv: pd.DataFrame, log: CleaningLog) -> pd.DataFrame:
  if not len(rv):
    return rv
  dup = rv["review_id"].duplicated(keep="first").to_numpy()
  if dup.any():
    log.add("reviews", "repeated review id", len(rv), dup.sum(), "removed", "kept the first")
    rv = rv[~dup]
  rv = rv.copy()
  bad_rating = (rv["rating"].notna() & ~rv["rating"].between(1, 5)).to_numpy()
  if bad_rating.any():
    log.add("reviews", "rating outside 1-5", len(rv), bad_rating.sum(), "rating set to missing")
    rv.loc[bad_rating, "rating"] = pd.NA
  no_customer = rv["customer_id"].isna().to_numpy()
  if no_customer.any():
    log.add("reviews", "missing customer id", len(rv), no_customer.sum(), "kept",
            "used for sentiment and opinions, not for customer features")
  text = rv["text"].fillna("").str.strip()
  empty = (text == "").to_numpy()
  rv["text"] = text.mask(empty)
  if empty.any():
    log.add("reviews", "empty text", len(rv), empty.sum(), "kept", "rating only; no text features")
  return rv

"""Cleaning with a visible log: every row removed, altered or flagged is counted, with the reason.

Order of the steps (each runs on what the previous ones left):

1. order lines marked as exact duplicates of an earlier input row
   (:data:`cvlib.data.adapters.DUPLICATE`); their orders' amounts are reduced by the duplicated lines;
2. orders: exact duplicate rows, missing customer id, missing timestamp, out-of-range date, orders
   marked cancelled (never fulfilled);
3. cancellations and returns: each order line with a negative quantity is matched to the earlier
   purchase line it reverses (same customer, product and quantity; the latest such line before it).
   Both lines go. A cancellation with no line of that quantity reduces the latest earlier line that
   holds more; one with no earlier line at all (bought before the data start, discounts, manual
   adjustments) is removed and counted as unmatched. Orders left without lines are removed, the
   others' amounts reduced by what their lines lost;
4. orders: negative amount, missing amount, repeated order id; zero amounts are kept and flagged;
5. lines of removed or unknown orders; reviews (exact duplicate rows, repeated id, rating outside
   1-5, out-of-range date, missing customer, empty text).

A review row is an exact duplicate of an earlier one when every column is equal. Ids the adapter
numbered itself (consecutive row numbers) are left out of the comparison, since a line written
twice gets two of them; then rows without text are never duplicates: the same stars for the same
product from two people look alike, and nothing shows one review was written twice. Reviews that
share only their text (another customer, product or date) are different reviews and stay; the
sentiment split keeps all copies of a text on one side
(:func:`cvlib.stages.finetune.make_sentiment_data`).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import datetime as dt

import numpy as np
import pandas as pd

from cvlib.data.adapters import DUPLICATE, STATUS, Tables

# No online shop sold before this day: earlier dates are typos or 1900/1970 "zero" dates.
EARLIEST_DATE = dt.date(1990, 1, 1)


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


# Up to this many rows in all, clean_tables first checks in plain Python whether any step applies
# (a service call's few events usually pass every test): vectorised steps cost ~5 ms on ten rows.
SMALL_ROWS = 2_000


def clean_tables(tables: Tables, today: dt.date | None = None, *, small_path: bool = True
                 ) -> tuple[Tables, CleaningLog]:
  """Removes rows that cannot be used and flags doubtful ones, logging each step.

  Args:
    tables: canonical tables from :func:`cvlib.data.adapters.load_data`.
    today: dates after this day are out of range (default: the current date).
    small_path: for small tables, check in plain Python whether any step would change or log
      anything, and when none would, return what the steps would (the same frames and log);
      False always runs the vectorised steps (tests compare the two).

  Returns:
    The cleaned tables (new frames; the input is not modified; the adapters' marks
    ``status``/``duplicate`` are dropped) and the log.
  """
  log = CleaningLog()
  for note in tables.notes:
    log.add("input", "adapter", 0, 0, "note", note)
  date_range = (pd.Timestamp(EARLIEST_DATE),
                pd.Timestamp(today or dt.date.today()) + pd.Timedelta(days=1))
  if small_path and _nothing_to_clean(tables, date_range):
    tx = tables.transactions
    keys = list(zip(tx["customer_id"].tolist(), tx["timestamp"].tolist(),
                    tx["order_id"].tolist()))
    if any(a > b for a, b in zip(keys, keys[1:])):  # _finish_orders' order
      tx = tx.sort_values(["customer_id", "timestamp", "order_id"], kind="stable")
    _log_zero_amounts(log, len(tx), sum(a == 0 for a in tx["amount"].tolist()))
    if len(tables.reviews):
      _log_empty_texts(log, len(tables.reviews),
                       sum(_missing(t) for t in tables.reviews["text"].tolist()))
    return dataclasses.replace(tables, transactions=tx.reset_index(drop=True),
                               items=tables.items.reset_index(drop=True),
                               reviews=tables.reviews.reset_index(drop=True)), log
  removed: dict[str, set] = {}  # cleaning step -> order ids it removed (to explain their lines)
  tx, items = tables.transactions, tables.items
  tx, items = _drop_duplicate_lines(tx, items, log)
  tx = _screen_orders(tx, log, date_range, removed)
  tx, items = _match_reversals(tx, items, log, removed)
  tx = _finish_orders(tx, log, removed)
  if len(items):
    items = _drop_orphan_lines(items, tx, log, removed)
  reviews = _clean_reviews(tables.reviews, log, date_range)
  tx = tx.drop(columns=[STATUS], errors="ignore")
  items = items.drop(columns=[DUPLICATE], errors="ignore")
  out = dataclasses.replace(tables, transactions=tx.reset_index(drop=True),
                            items=items.reset_index(drop=True),
                            reviews=reviews.reset_index(drop=True))
  return out, log


def _missing(v) -> bool:
  return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def _nothing_to_clean(tables: Tables, date_range: tuple[pd.Timestamp, pd.Timestamp]) -> bool:
  """True when no cleaning step would remove, alter or log a row of these small tables.

  Conservative: anything a step might act on (a duplicate, a missing or odd value, a zero
  amount, a cancellation line, a review without customer or text) answers False, and the
  vectorised steps then run. Only the final sort of the orders, the index reset and two
  "kept" log rows (zero amounts, reviews without text) remain.
  """
  try:
    return _plainly_clean(tables, date_range)
  except TypeError:  # values that do not compare as canonical ones do: let the steps decide
    return False


def _plainly_clean(tables: Tables, date_range: tuple[pd.Timestamp, pd.Timestamp]) -> bool:
  tx, items, rv = tables.transactions, tables.items, tables.reviews
  if len(tx) + len(items) + len(rv) > SMALL_ROWS or STATUS in tx or DUPLICATE in items:
    return False
  lo, hi = date_range
  orders = tx["order_id"].tolist()
  if (any(_missing(v) for v in orders) or len(set(orders)) < len(orders)  # repeats, duplicates
      or any(_missing(v) for v in tx["customer_id"].tolist())
      or not all(not _missing(t) and lo <= t < hi for t in tx["timestamp"].tolist())
      or not all(not _missing(a) and a >= 0 for a in tx["amount"].tolist())):
    return False
  if len(items):
    known = set(orders)
    if (any(not _missing(q) and q < 0 for q in items["quantity"].tolist())
        or not all(o in known for o in items["order_id"].tolist())):
      return False
  if not len(rv):
    return True
  ids = rv["review_id"].tolist()
  if any(_missing(v) for v in ids) or len(set(ids)) < len(ids):
    return False
  other = [c for c in rv.columns if c != "review_id"]  # rows alike but for the id: duplicates?
  rows = {tuple(None if _missing(v) else v for v in row)
          for row in zip(*(rv[c].tolist() for c in other))}
  if len(rows) < len(rv):
    return False
  return (all(_missing(r) or 1 <= r <= 5 for r in rv["rating"].tolist())
          and all(_missing(t) or lo <= t < hi for t in rv["timestamp"].tolist())
          and not any(_missing(c) for c in rv["customer_id"].tolist())
          and all(_missing(t) or (isinstance(t, str) and t and t == t.strip())
                  for t in rv["text"].tolist()))


def _mask(values) -> np.ndarray:
  return pd.Series(values).fillna(False).to_numpy(dtype=bool)


def _reduce_amounts(tx: pd.DataFrame, delta: pd.Series) -> pd.DataFrame:
  """Adds ``delta`` (indexed by order id) to those orders' amounts, rounded to remove float dust."""
  tx = tx.copy()
  change = tx["order_id"].map(delta)
  hit = change.notna().to_numpy()
  tx.loc[hit, "amount"] = np.round(tx.loc[hit, "amount"].to_numpy() + change[hit].to_numpy(), 6)
  return tx


def _drop_duplicate_lines(tx: pd.DataFrame, items: pd.DataFrame,
                          log: CleaningLog) -> tuple[pd.DataFrame, pd.DataFrame]:
  if DUPLICATE not in items or not len(items):
    return tx, items
  dup = _mask(items[DUPLICATE])
  if not dup.any():
    return tx, items
  log.add("items", "exact duplicate rows", len(items), dup.sum(), "removed",
          "an input row written twice: the repeat is dropped")
  delta = -items.loc[dup, "amount"].groupby(items.loc[dup, "order_id"]).sum()
  touched = tx["order_id"].isin(delta.index).to_numpy()
  if touched.any():
    log.add("transactions", "amount reduced by duplicate lines", len(tx), touched.sum(), "altered",
            "orders whose amount counted a duplicated line")
    tx = _reduce_amounts(tx, delta)
  return tx, items[~dup]


def _remove(tx: pd.DataFrame, mask: np.ndarray, step: str, detail: str, log: CleaningLog,
            removed: dict[str, set]) -> pd.DataFrame:
  if mask.any():
    log.add("transactions", step, len(tx), mask.sum(), "removed", detail)
    removed.setdefault(step, set()).update(tx.loc[mask, "order_id"].dropna())
    tx = tx[~mask]
  return tx


def _screen_orders(tx: pd.DataFrame, log: CleaningLog,
                   date_range: tuple[pd.Timestamp, pd.Timestamp],
                   removed: dict[str, set]) -> pd.DataFrame:
  lo, hi = date_range
  status = (lambda t: t[STATUS]) if STATUS in tx else (lambda t: pd.Series(pd.NA, index=t.index))
  # each test runs on the table as the previous steps left it
  steps = [
      ("exact duplicate rows", lambda t: t.duplicated(keep="first"),
       "the same order written twice"),
      ("missing customer id", lambda t: t["customer_id"].isna(),
       "orders that cannot be attributed to a customer"),
      ("missing timestamp", lambda t: t["timestamp"].isna(), ""),
      ("out-of-range date", lambda t: (t["timestamp"] < lo) | (t["timestamp"] >= hi),
       f"dated before {lo.date()} or after {(hi - pd.Timedelta(days=1)).date()}"),
      ("cancelled order", lambda t: status(t) == "cancelled",
       "orders the shop marked cancelled or unavailable: never fulfilled"),
  ]
  for step, test, detail in steps:
    mask = _mask(test(tx))
    if step == "exact duplicate rows":  # a repeat leaves its order id in place: nothing to explain
      if mask.any():
        log.add("transactions", step, len(tx), mask.sum(), "removed", detail)
        tx = tx[~mask]
      continue
    tx = _remove(tx, mask, step, detail, log, removed)
  return tx


def _finish_orders(tx: pd.DataFrame, log: CleaningLog, removed: dict[str, set]) -> pd.DataFrame:
  tx = _remove(tx, _mask(tx["amount"] < 0), "negative amount", "net returns or cancellations",
               log, removed)
  tx = _remove(tx, _mask(tx["amount"].isna()), "missing amount", "", log, removed)
  dup = tx["order_id"].duplicated(keep="first").to_numpy()
  if dup.any():
    log.add("transactions", "repeated order id with different content", len(tx), dup.sum(),
            "removed", "kept the first row of each order id")
    tx = tx[~dup]
  _log_zero_amounts(log, len(tx), int((tx["amount"] == 0).to_numpy().sum()))
  return tx.sort_values(["customer_id", "timestamp", "order_id"], kind="stable")


def _match_reversals(tx: pd.DataFrame, items: pd.DataFrame, log: CleaningLog,
                     removed: dict[str, set]) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Cancellation and return lines (negative quantity) remove the purchase lines they reverse."""
  if not len(items) or not (items["quantity"] < 0).any():
    return tx, items
  orders = tx.drop_duplicates("order_id").set_index("order_id")
  live = items["order_id"].isin(orders.index).to_numpy()  # lines of orders still in play
  neg = live & (items["quantity"] < 0).to_numpy()
  if not neg.any():
    return tx, items
  status = (orders[STATUS] if STATUS in orders
            else pd.Series("purchase", index=orders.index)).astype("string").fillna("purchase")
  lines = pd.DataFrame({
      "row": np.arange(len(items)), "order_id": items["order_id"].to_numpy(),
      "product_id": items["product_id"].to_numpy(), "quantity": items["quantity"].to_numpy(),
      "customer_id": items["order_id"].map(orders["customer_id"]).to_numpy(),
      "time": items["order_id"].map(orders["timestamp"]).to_numpy(),
      "kind": items["order_id"].map(status).to_numpy()})
  lines = lines[live & lines["customer_id"].notna().to_numpy()]
  rev = lines[lines["quantity"] < 0].sort_values(["time", "row"], kind="stable")
  keys = rev[["customer_id", "product_id"]].drop_duplicates()
  pur = lines[(lines["quantity"] > 0) & (lines["kind"] != "cancellation")].merge(
      keys, on=["customer_id", "product_id"]).sort_values(["time", "row"], kind="stable")
  # purchase lines per (customer, product), in time order; remaining quantity per line row
  pool: dict[tuple, list] = collections.defaultdict(list)
  for row, c, p, t in zip(pur["row"], pur["customer_id"], pur["product_id"], pur["time"]):
    pool[(c, p)].append((t, row))
  left = dict(zip(pur["row"], pur["quantity"].astype(float)))
  original = dict(left)
  consumed: set[int] = set()  # purchase line rows a reversal took quantity from
  outcome: dict[int, str] = {}  # reversal line row -> "exact" | "partial"
  todo = list(zip(rev["row"], rev["customer_id"], rev["product_id"], rev["time"],
                  -rev["quantity"].astype(float)))

  def earlier(c, p, t):
    cands = pool.get((c, p), [])
    k = bisect.bisect_right([x[0] for x in cands], t)
    return reversed(cands[:k])  # latest first

  for exact in (True, False):  # exact matches first: they are the strongest evidence
    for row, c, p, t, q in todo:
      if row in outcome:
        continue
      for _, prow in earlier(c, p, t):
        have = left[prow]
        if (exact and have == q and have == original[prow]) or (not exact and have >= q > 0):
          left[prow] = have - q
          consumed.add(prow)
          outcome[row] = "exact" if exact else "partial"
          break

  items = items.copy()
  pos_q = items["quantity"].to_numpy()
  rows_all = np.arange(len(items))
  is_rev = np.isin(rows_all, rev["row"].to_numpy())
  gone_pur = np.array([r for r in sorted(consumed) if left[r] == 0], dtype=int)
  cut_pur = np.array([r for r in sorted(consumed) if 0 < left[r]], dtype=int)
  # amount change per order: reversal lines and fully matched lines go, cut lines shrink
  new_amount = items["amount"].to_numpy(dtype=float).copy()
  new_amount[is_rev] = 0.0
  new_amount[gone_pur] = 0.0
  for r in cut_pur:
    price = items["unit_price"].iat[r]
    if not np.isfinite(price):
      price = items["amount"].iat[r] / pos_q[r]
    new_amount[r] = left[r] * price
  delta = pd.Series(new_amount - items["amount"].to_numpy(dtype=float)).groupby(
      items["order_id"].to_numpy()).sum()
  delta = delta[delta != 0]

  n = len(items)  # each items step starts where the last one left off
  canc = rev["kind"].eq("cancellation").fillna(False).to_numpy()
  for kind, rows in (("cancellation", rev["row"].to_numpy()[canc]),
                     ("return", rev["row"].to_numpy()[~canc])):
    matched = [r for r in rows if r in outcome]
    n_exact = sum(outcome[r] == "exact" for r in matched)
    if matched:
      log.add("items", kind, n, len(matched), "removed",
              f"matched to the earlier purchase line it reverses (same customer, product and "
              f"quantity: {n_exact:,}; a larger earlier line reduced: {len(matched) - n_exact:,})")
      n -= len(matched)
    unmatched = len(rows) - len(matched)
    if unmatched:
      log.add("items", f"{kind} without a matching purchase", n, unmatched, "removed",
              "no earlier purchase line of the customer's product with at least that quantity "
              "(bought before the data start, discounts, manual adjustments)")
      n -= unmatched
  if len(gone_pur):
    log.add("items", "purchase line cancelled or returned", n, len(gone_pur), "removed",
            "the purchase a cancellation or return reverses")
    n -= len(gone_pur)
  if len(cut_pur):
    log.add("items", "purchase line partly cancelled or returned", n, len(cut_pur), "altered",
            "quantity and amount reduced by the cancelled or returned quantity")

  keep = ~is_rev
  keep[gone_pur] = False
  items.loc[:, "amount"] = new_amount
  if len(cut_pur):
    q = items["quantity"].to_numpy(dtype=float).copy()
    q[cut_pur] = [left[r] for r in cut_pur]
    items.loc[:, "quantity"] = q
  before = set(items["order_id"][live])
  items = items[keep]
  emptied = before - set(items["order_id"])
  status = tx[STATUS].astype("string") if STATUS in tx else pd.Series(pd.NA, index=tx.index)
  documents = emptied & set(tx.loc[_mask(status == "cancellation"), "order_id"])
  reversed_orders = set(rev["order_id"]) - set(pur.loc[pur["row"].isin(gone_pur), "order_id"])
  returns = (emptied - documents) & reversed_orders
  for step, ids, detail in (
      ("cancellation", documents,
       "cancellation documents: each line matched to the purchase it cancels, or counted as "
       "unmatched"),
      ("return", returns, "orders holding only returned lines"),
      ("purchase cancelled or returned in full", emptied - documents - returns,
       "every line was reversed by a later cancellation or return")):
    tx = _remove(tx, tx["order_id"].isin(ids).to_numpy(), step, detail, log, removed)
  part = tx["order_id"].isin(delta.index).to_numpy()
  if part.any():
    log.add("transactions", "purchase cancelled or returned in part", len(tx), part.sum(),
            "altered", "amount reduced by the cancelled or returned lines")
    tx = _reduce_amounts(tx, delta)
  return tx, items


def _drop_orphan_lines(items: pd.DataFrame, tx: pd.DataFrame, log: CleaningLog,
                       removed: dict[str, set]) -> pd.DataFrame:
  n = len(items)
  keep = items["order_id"].isin(tx["order_id"]).to_numpy()
  if keep.all():
    return items
  gone = items.loc[~keep, "order_id"]
  parts = []
  explained = np.zeros(len(gone), dtype=bool)
  for step, ids in removed.items():
    hit = gone.isin(ids).to_numpy() & ~explained
    if hit.any():
      parts.append(f"{step}: {int(hit.sum()):,}")
      explained |= hit
  if (~explained).any():
    parts.append(f"order not in transactions: {int((~explained).sum()):,}")
  log.add("items", "lines of removed or unknown orders", n, (~keep).sum(), "removed",
          "; ".join(parts))
  return items[keep]


def numbered_ids(ids: pd.Series | list) -> bool:
  """True when the ids are consecutive integers in row order: row numbers, not the shop's ids.

  A list (one service request's few review ids) is checked in plain Python, a Series (a whole
  table) vectorised; tests/test_serve.py keeps the two paths equal.
  """
  if isinstance(ids, list):
    text = [None if v is None else str(v) for v in ids]
    if not all(v is not None and 1 <= len(v) <= 15 and v.isascii() and v.isdigit()
               for v in text):
      return False
    return all(int(b) - int(a) == 1 for a, b in zip(text, text[1:]))
  s = ids.astype("string")
  if not s.str.fullmatch(r"[0-9]{1,15}").fillna(False).all():
    return False
  return bool((np.diff(s.astype("int64").to_numpy()) == 1).all())


def _drop_duplicate_reviews(rv: pd.DataFrame, log: CleaningLog) -> pd.DataFrame:
  """Removes review rows that repeat an earlier row exactly (see the module docstring)."""
  numbered = numbered_ids(rv["review_id"])
  columns = [c for c in rv.columns if not (numbered and c == "review_id")]
  dup = _mask(rv.duplicated(subset=columns, keep="first"))
  if numbered:
    dup = dup & _mask(rv["text"].astype("string").str.strip() != "")
  if dup.any():
    which = "the row-number id aside" if numbered else "the review id included"
    log.add("reviews", "exact duplicate rows", len(rv), dup.sum(), "removed",
            f"a review written twice (every column equal, {which}): the repeat is dropped")
    rv = rv[~dup]
  return rv


def _clean_reviews(rv: pd.DataFrame, log: CleaningLog,
                   date_range: tuple[pd.Timestamp, pd.Timestamp]) -> pd.DataFrame:
  if not len(rv):
    return rv
  rv = _drop_duplicate_reviews(rv, log)
  dup = rv["review_id"].duplicated(keep="first").to_numpy()
  if dup.any():
    log.add("reviews", "repeated review id", len(rv), dup.sum(), "removed", "kept the first")
    rv = rv[~dup]
  rv = rv.copy()
  bad_rating = (rv["rating"].notna() & ~rv["rating"].between(1, 5)).to_numpy()
  if bad_rating.any():
    log.add("reviews", "rating outside 1-5", len(rv), bad_rating.sum(), "rating set to missing")
    rv.loc[bad_rating, "rating"] = pd.NA
  lo, hi = date_range
  odd_date = _mask((rv["timestamp"] < lo) | (rv["timestamp"] >= hi))
  if odd_date.any():
    log.add("reviews", "out-of-range date", len(rv), odd_date.sum(), "date set to missing",
            f"dated before {lo.date()} or after {(hi - pd.Timedelta(days=1)).date()}; text kept")
    rv.loc[odd_date, "timestamp"] = pd.NaT
  no_customer = rv["customer_id"].isna().to_numpy()
  if no_customer.any():
    log.add("reviews", "missing customer id", len(rv), no_customer.sum(), "kept",
            "used for sentiment and opinions, not for customer features")
  text = rv["text"].fillna("").str.strip()
  empty = (text == "").to_numpy()
  rv["text"] = text.mask(empty)
  _log_empty_texts(log, len(rv), int(empty.sum()))
  return rv


def _log_zero_amounts(log: CleaningLog, rows: int, zero: int) -> None:
  if zero:
    log.add("transactions", "zero amount", rows, zero, "kept", "counted as purchases; no spend")


def _log_empty_texts(log: CleaningLog, rows: int, empty: int) -> None:
  if empty:
    log.add("reviews", "empty text", rows, empty, "kept", "rating only; no text features")

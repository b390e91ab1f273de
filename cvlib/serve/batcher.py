"""Scoring many small requests together: what lets ``cvlib serve`` keep up with concurrent callers.

A service call scores one customer or a few, and most of its cost is fixed (cleaning, features,
one network block of :data:`cvlib.serve.scorer.PREDICT_BLOCK` rows, segments): one customer takes
about as long as sixty. :class:`Batcher` therefore scores whatever requests are waiting when it
is free in one :meth:`Scorer.score <cvlib.serve.scorer.Scorer.score>` call, and
:func:`score_together` makes that call give every request exactly the rows it would get alone:

- each request's ids (customer, order, review) get a request tag, so two requests that both send
  customer "42" or order "1" stay apart through cleaning (duplicate orders and reviews are found
  by id) and features; the tags come off the rows before they are returned, and ``customer_key``
  is computed from the caller's own id;
- review ids that are row numbers (``cvlib.data.clean.numbered_ids``: cleaning treats those
  differently) are renumbered across the batch instead, and such requests are never mixed with
  requests whose review ids are real ids;
- each request keeps its own scoring day (its ``as_of``, else the day after its own last order),
  so requests are scored in one call per day.

Rows of a customer never depend on the other customers scored with it (see
:mod:`cvlib.serve.scorer`), so with these three rules a batch is only faster, not different; the
tests compare every request of a batch with the same request scored alone.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import queue
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd

from cvlib.data import privacy, schema
from cvlib.data.adapters import Tables
from cvlib.data.clean import clean_tables, numbered_ids

# Customers per batch: up to this many, Scorer.score computes features in numpy (SMALL_CALL).
MAX_BATCH_CUSTOMERS = 64


@dataclasses.dataclass
class Request:
  """One caller's events, as canonical tables (``schema.TABLES`` columns)."""
  transactions: pd.DataFrame
  reviews: pd.DataFrame
  items: pd.DataFrame
  as_of: dt.date | None = None

  @property
  def n_customers(self) -> int:
    return int(self.transactions["customer_id"].nunique())


@dataclasses.dataclass
class Result:
  """A request's scores (one row per customer scored, in Scorer.score's order) and the
  customers it could not score, with why."""
  scores: pd.DataFrame
  as_of: dt.date | None
  not_scored: dict[str, str]


def _tagged(values: pd.Series, tag: str) -> pd.Series:
  return tag + values.astype("string")


def score_together(scorer: Any, requests: list[Request]) -> list[Result | Exception]:
  """Scores several requests in as few Scorer.score calls as their scoring days allow.

  Args:
    scorer: a :class:`cvlib.serve.scorer.Scorer`.
    requests: the requests; their review ids must be all row numbers or all real ids
      (:func:`batch_kind`), which :class:`Batcher` sees to.

  Returns:
    One entry per request, in order: its :class:`Result`, or the exception that request raised
    (a bad request never fails the others: the batch is retried one request at a time).
  """
  try:
    return _score_together(scorer, requests)
  except Exception:
    if len(requests) == 1:
      raise
  out: list[Result | Exception] = []
  for r in requests:  # find the request at fault; the others still get their scores
    try:
      out.append(_score_together(scorer, [r])[0])
    except Exception as e:  # noqa: BLE001 - handed to that request's caller
      out.append(e)
  return out


def batch_kind(request: Request) -> str:
  """"numbered" when the request's review ids are row numbers, "ids" when they are real ids,
  "none" without reviews: requests of the first two kinds are never scored together."""
  if not len(request.reviews):
    return "none"
  return "numbered" if numbered_ids(request.reviews["review_id"]) else "ids"


def _score_together(scorer: Any, requests: list[Request]) -> list[Result]:
  tx_parts, rv_parts, item_parts = [], [], []
  originals: dict[str, tuple[int, str]] = {}  # tagged customer id -> (request, caller's id)
  next_number = 1
  for i, r in enumerate(requests):
    tag = f"{i}:"
    tx = r.transactions.assign(customer_id=_tagged(r.transactions["customer_id"], tag),
                               order_id=_tagged(r.transactions["order_id"], tag))
    for tagged, own in zip(tx["customer_id"].tolist(), r.transactions["customer_id"].tolist()):
      originals[tagged] = (i, own)
    rv = r.reviews.assign(customer_id=_tagged(r.reviews["customer_id"], tag))
    if "order_id" in rv:
      rv["order_id"] = _tagged(rv["order_id"], tag)
    if len(rv) and batch_kind(r) == "numbered":  # row numbers stay row numbers, batch-wide
      rv["review_id"] = pd.Series(range(next_number, next_number + len(rv)),
                                  index=rv.index).astype("string")
      next_number += len(rv)
    else:
      rv["review_id"] = _tagged(rv["review_id"], tag)
    items = r.items.assign(order_id=_tagged(r.items["order_id"], tag))
    tx_parts.append(tx)
    rv_parts.append(rv)
    item_parts.append(items)
  tables = Tables(customers=pd.DataFrame(),
                  transactions=_concat(tx_parts, "transactions"),
                  items=_concat(item_parts, "items"), products=scorer.catalogue,
                  reviews=_concat(rv_parts, "reviews"))
  cleaned, _ = clean_tables(tables)
  tx = cleaned.transactions
  which = tx["customer_id"].map(lambda c: originals[c][0]).to_numpy()
  days: dict[dt.date, list[int]] = {}
  for i, r in enumerate(requests):
    mine = tx["timestamp"][which == i]
    if r.as_of is not None:
      days.setdefault(r.as_of, []).append(i)
    elif len(mine):
      days.setdefault(mine.max().date() + dt.timedelta(days=1), []).append(i)
  rows: dict[int, pd.DataFrame] = {}
  as_of: dict[int, dt.date] = {}
  for day, members in days.items():
    keep = pd.Series(which).isin(members).to_numpy()
    customers = set(tx["customer_id"][keep])
    scored = scorer.score(tx[keep],
                          cleaned.reviews[cleaned.reviews["customer_id"].isin(customers)],
                          items=cleaned.items[cleaned.items["order_id"].isin(set(tx["order_id"][keep]))],
                          products=cleaned.products, as_of=day, clean=False)
    owner = scored["customer_id"].map(lambda c: originals[c][0]).to_numpy()
    own_ids = scored["customer_id"].map(lambda c: originals[c][1]).astype("string")
    keys = privacy.pseudonymise(own_ids, scorer.salt)
    scored = scored.assign(  # the caller's ids, in the dtypes Scorer.score gives them
        customer_id=own_ids.astype(scored["customer_id"].dtype).to_numpy(),
        customer_key=keys.astype(scored["customer_key"].dtype).to_numpy())
    for i in members:
      rows[i] = scored[owner == i].reset_index(drop=True)
      as_of[i] = day
  results = []
  for i, r in enumerate(requests):
    scores = rows[i] if i in rows else scorer.score(r.transactions.iloc[:0], None, clean=False)
    done = set(scores["customer_id"].tolist())
    asked = pd.unique(r.transactions["customer_id"].astype("string")).tolist()
    why = _why_not_scored(r, tx[which == i], as_of.get(i))
    results.append(Result(scores, as_of.get(i), {c: why for c in asked if c not in done}))
  return results


def _concat(parts: list[pd.DataFrame], name: str) -> pd.DataFrame:
  parts = [p for p in parts if len(p)]
  if not parts:
    return schema.empty_table(name)
  return pd.concat(parts, ignore_index=True)


def _why_not_scored(request: Request, kept: pd.DataFrame, day: dt.date | None) -> str:
  if not len(kept):
    return "no usable order: cleaning removed every order (cancelled, negative or undated)"
  return f"no order before as_of {day}"


# --- the batching thread --------------------------------------------------------------------------

@dataclasses.dataclass
class _Job:
  scorer: Any
  request: Request
  future: concurrent.futures.Future


class Batcher:
  """One thread that scores queued requests together (:func:`score_together`).

  Whenever the thread is free it takes every request waiting (up to
  :data:`MAX_BATCH_CUSTOMERS` customers, one scorer and one review-id kind at a time), so a lone
  request is scored at once and concurrent ones share a call. Each request carries the scorer it
  was accepted with: after a model reload, requests already queued finish on the old models.

  Args:
    max_customers: customers per batch.
    on_batch: called with (number of requests, seconds) after each batch (for logs and tests).
  """

  def __init__(self, max_customers: int = MAX_BATCH_CUSTOMERS,
               on_batch: Callable[[int, float], None] | None = None):
    self.max_customers = max_customers
    self.on_batch = on_batch
    self._queue: queue.Queue[_Job | None] = queue.Queue()
    self._held: list[_Job] = []  # taken from the queue but left for the next batch
    self._thread = threading.Thread(target=self._loop, name="cvlib-batcher", daemon=True)
    self._closed = False
    self._thread.start()

  def submit(self, scorer: Any, request: Request) -> concurrent.futures.Future:
    """Queues a request; the future's result is its :class:`Result`."""
    if self._closed:
      raise RuntimeError("the batcher is closed")
    future: concurrent.futures.Future = concurrent.futures.Future()
    self._queue.put(_Job(scorer, request, future))
    return future

  def close(self, timeout: float | None = None) -> None:
    """Scores what is queued, then stops the thread."""
    self._closed = True
    self._queue.put(None)
    self._thread.join(timeout)

  def _next_batch(self) -> list[_Job] | None:
    first = self._held.pop(0) if self._held else self._queue.get()
    if first is None:
      return None
    batch, kind, n = [first], batch_kind(first.request), first.request.n_customers
    waiting = self._held + self._drain()
    self._held = []
    for job in waiting:
      if job is None:
        self._held.append(job)
        continue
      other = batch_kind(job.request)
      same_kind = "none" in (kind, other) or kind == other
      if (job.scorer is first.scorer and same_kind
          and n + job.request.n_customers <= self.max_customers):
        batch.append(job)
        n += job.request.n_customers
        kind = other if kind == "none" else kind
      else:
        self._held.append(job)
    return batch

  def _drain(self) -> list[_Job | None]:
    out = []
    while True:
      try:
        out.append(self._queue.get_nowait())
      except queue.Empty:
        return out

  def _loop(self) -> None:
    import time
    while True:
      batch = self._next_batch()
      if batch is None:
        return
      batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
      if not batch:
        continue
      start = time.perf_counter()
      try:
        results = score_together(batch[0].scorer, [job.request for job in batch])
      except Exception as e:  # noqa: BLE001 - a one-request batch: that request's error
        results = [e]
      for job, result in zip(batch, results):
        if isinstance(result, Exception):
          job.future.set_exception(result)
        else:
          job.future.set_result(result)
      if self.on_batch:
        self.on_batch(len(batch), time.perf_counter() - start)

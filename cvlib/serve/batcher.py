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
tests compare every request of a batch with the same request scored alone. (A text-aware
network's reviews share encoder calls, :data:`ENCODER_BATCH` at a time: its rows agree with the
request scored alone to float32 rounding, as ``cvlib score``'s do with the run's.)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cvlib.data import privacy, schema
from cvlib.data.adapters import Tables
from cvlib.data.clean import clean_tables, numbered_ids

# Customers per batch: up to this many, Scorer.score computes features in numpy (SMALL_CALL).
MAX_BATCH_CUSTOMERS = 64
# Reviews per encoder call for a text-aware network: a batch's reviews share calls, so its
# text features agree with the same request scored alone to float32 rounding (not bit for bit).
# Of 1, 4, 8, 16 and 32, 8 scored eight one-customer demo requests fastest on 2 CPU cores
# (filler rows make larger calls cost more than they save; one review per call, the most calls).
ENCODER_BATCH = 8


# The columns a request carries, per table (schema.TABLES' canonical columns).
COLUMNS = {name: [c.name for c in schema.TABLES[name]]
           for name in ("transactions", "reviews", "items")}
_IDS = {"transactions": ("customer_id", "order_id"), "reviews": ("customer_id", "order_id"),
        "items": ("order_id",)}


@dataclasses.dataclass
class Request:
  """One caller's events: per table, the canonical columns as lists of values.

  Lists, not DataFrames: a batch builds one DataFrame per table from all its requests, which
  is most of what batching saves.
  """
  transactions: dict[str, list]
  reviews: dict[str, list]
  items: dict[str, list]
  as_of: dt.date | None = None

  @classmethod
  def from_frames(cls, transactions: pd.DataFrame, reviews: pd.DataFrame | None = None,
                  items: pd.DataFrame | None = None, as_of: dt.date | None = None) -> Request:
    """A request from canonical tables (Scorer.score's arguments)."""
    def columns(name: str, df: pd.DataFrame | None) -> dict[str, list]:
      df = schema.coerce_table(name, df if df is not None else schema.empty_table(name))
      return {c: df[c].astype(object).where(df[c].notna(), None).tolist() for c in COLUMNS[name]}
    return cls(columns("transactions", transactions), columns("reviews", reviews),
               columns("items", items), as_of)

  @functools.cached_property
  def customers(self) -> set:
    return set(self.transactions["customer_id"])

  @functools.cached_property
  def kind(self) -> str:
    """"numbered" when the review ids are row numbers, "ids" when they are real ids, "none"
    without reviews: requests of the first two kinds are never scored together. Computed once:
    the batching thread looks at a waiting request every time it forms a batch."""
    ids = self.reviews["review_id"]
    if not ids:
      return "none"
    return "numbered" if numbered_ids(ids) else "ids"


class BatchScores:
  """The scores of one Scorer.score call, shared by the requests it scored; each column is
  turned into a list once, however many requests read it."""

  def __init__(self, frame: pd.DataFrame):
    self.frame = frame
    self._lists: dict[str, list] = {}

  def column(self, name: str) -> list:
    if name not in self._lists:
      self._lists[name] = self.frame[name].tolist()
    return self._lists[name]


@dataclasses.dataclass
class Result:
  """A request's scores: its rows of a batch's scores (in Scorer.score's order), the scoring
  day, and the customers it could not score, with why."""
  batch: BatchScores
  rows: list[int]
  as_of: dt.date | None
  not_scored: dict[str, str]

  @functools.cached_property
  def scores(self) -> pd.DataFrame:
    """The rows as a frame (Scorer.score's columns)."""
    return self.batch.frame.iloc[self.rows].reset_index(drop=True)

  def column(self, name: str) -> list:
    """One column of the rows as a list (what a response is built from)."""
    values = self.batch.column(name)
    return [values[i] for i in self.rows]


def score_together(scorer: Any, requests: list[Request], *, today: dt.date | None = None
                   ) -> list[Result | Exception]:
  """Scores several requests in as few Scorer.score calls as their scoring days allow.

  Args:
    scorer: a :class:`cvlib.serve.scorer.Scorer`.
    requests: the requests; their review ids must be all row numbers or all real ids
      (:attr:`Request.kind`), which :class:`Batcher` sees to.
    today: the cleaning's "today" (later dates are out of range; default: the current date).

  Returns:
    One entry per request, in order: its :class:`Result`, or the exception that request raised
    (a bad request never fails the others: the batch is retried one request at a time).
  """
  try:
    return _score_together(scorer, requests, today)
  except Exception:
    if len(requests) == 1:
      raise
  out: list[Result | Exception] = []
  for r in requests:  # find the request at fault; the others still get their scores
    try:
      out.append(_score_together(scorer, [r], today)[0])
    except Exception as e:  # noqa: BLE001 - handed to that request's caller
      out.append(e)
  return out


def _score_together(scorer: Any, requests: list[Request], today: dt.date | None
                    ) -> list[Result]:
  merged = {name: {c: [] for c in COLUMNS[name]} for name in COLUMNS}
  owner: dict[str, tuple[int, str]] = {}  # tagged customer id -> (request, caller's id)
  next_number = 1
  for i, r in enumerate(requests):
    tag = f"{i}:"
    for cid in r.transactions["customer_id"]:
      if cid is not None:
        owner[tag + str(cid)] = (i, str(cid))
    numbered = r.kind == "numbered"
    for name, table in (("transactions", r.transactions), ("reviews", r.reviews),
                        ("items", r.items)):
      for col in COLUMNS[name]:
        values = table[col]
        if col in _IDS[name]:
          values = [None if v is None else tag + str(v) for v in values]
        elif name == "reviews" and col == "review_id":
          if numbered:  # row numbers stay row numbers, batch-wide
            values = [str(k) for k in range(next_number, next_number + len(values))]
            next_number += len(values)
          else:
            values = [None if v is None else tag + str(v) for v in values]
        merged[name][col].extend(values)
  frames = {name: schema.table_from_columns(name, cols) for name, cols in merged.items()}
  tables = Tables(customers=pd.DataFrame(), transactions=frames["transactions"],
                  items=frames["items"], products=scorer.catalogue, reviews=frames["reviews"])
  cleaned, _ = clean_tables(tables, today=today)
  tx = cleaned.transactions
  which = np.array([owner[c][0] for c in tx["customer_id"].tolist()], dtype=np.int64)
  last = {}
  for i, t in zip(which.tolist(), tx["timestamp"].tolist()):
    last[i] = max(last.get(i, t), t)
  days: dict[dt.date, list[int]] = {}
  for i, r in enumerate(requests):
    if r.as_of is not None:
      days.setdefault(r.as_of, []).append(i)
    elif i in last:
      days.setdefault(last[i].date() + dt.timedelta(days=1), []).append(i)
  rows: dict[int, tuple[BatchScores, list[int]]] = {}
  as_of: dict[int, dt.date] = {}
  for day, members in days.items():
    part, reviews, items = tx, cleaned.reviews, cleaned.items
    keep = np.isin(which, members)
    if not keep.all():  # requests of other days are scored in their own call
      part = tx[keep]
    customers = set(part["customer_id"].tolist())
    if not all(c in customers for c in reviews["customer_id"].tolist()):  # <NA> is not in it
      reviews = reviews[reviews["customer_id"].isin(customers)]
    if len(part) < len(tx):
      items = items[items["order_id"].isin(set(part["order_id"].tolist()))]
    scored = scorer.score(part, reviews, items=items, products=cleaned.products, as_of=day,
                          clean=False, encoder_batch=ENCODER_BATCH)
    ids = scored["customer_id"].tolist()
    request_of = [owner[c][0] for c in ids]  # the request each scored row belongs to
    own_ids = pd.Series([owner[c][1] for c in ids], dtype="string")
    keys = privacy.pseudonymise(own_ids, scorer.salt)
    batch = BatchScores(scored.assign(  # the caller's ids, in the dtypes Scorer.score gives them
        customer_id=own_ids.astype(scored["customer_id"].dtype).to_numpy(),
        customer_key=keys.astype(scored["customer_key"].dtype).to_numpy()))
    for i in members:
      rows[i] = (batch, [k for k, m in enumerate(request_of) if m == i])
      as_of[i] = day
  results = []
  for i, r in enumerate(requests):
    if i not in rows:
      rows[i] = (BatchScores(scorer.score(tx.iloc[:0], None, clean=False)), [])
    batch, positions = rows[i]
    done = {batch.column("customer_id")[k] for k in positions}
    asked = list(dict.fromkeys(str(c) for c in r.transactions["customer_id"] if c is not None))
    why = (f"no order before as_of {as_of.get(i)}" if i in last else
           "no usable order: cleaning removed every order (cancelled, negative or undated)")
    results.append(Result(batch, positions, as_of.get(i),
                          {c: why for c in asked if c not in done}))
  return results


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
    batch, kind, n = [first], first.request.kind, len(first.request.customers)
    waiting = self._held + self._drain()
    self._held = []
    for job in waiting:
      if job is None:
        self._held.append(job)
        continue
      other = job.request.kind
      same_kind = "none" in (kind, other) or kind == other
      size = len(job.request.customers)
      if job.scorer is first.scorer and same_kind and n + size <= self.max_customers:
        batch.append(job)
        n += size
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

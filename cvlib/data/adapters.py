"""Adapters: read a shop's files into cvlib's canonical tables (see :mod:`cvlib.data.schema`).

Every problem found at the edge is collected and raised once as :class:`DataError`, one message per
problem naming the file, the column and sample row numbers (1-based data rows, header excluded).

Adapters (``data.adapter`` in the params; ``data.path`` is resolved against the params file's
folder, then ``$CVLIB_DATA_DIR``):

- ``synthetic``: the demo shop, generated in memory or read from a ``cvlib demo-data`` folder.
- ``generic``: any csv / tsv / json / jsonl / parquet (optionally .gz), or a PostgreSQL table or
  query (:mod:`cvlib.data.database`), through a column mapping. A ``.json`` file holding JSON
  Lines (one object per line, as the public Amazon review dumps) is read as such.
- ``olist``: a folder with the Olist Kaggle CSVs (.csv or .csv.gz). Customers are
  ``customer_unique_id`` (``customer_id`` is per order); the order amount is what was paid
  (payments), lines carry the item price; canceled/unavailable orders are marked cancelled;
  reviews reach their customer through the order.
- ``online_retail``: the UCI Online Retail CSV export. One order per invoice; "C" invoices are
  marked cancellations (cleaning matches them to the purchases they cancel); exact duplicate rows
  are marked; ids like "17850.0" are normalised; Description is product text, Country goes to the
  customers.
- ``cdnow``: CDNOW_master.txt (or CDNOW_sample.txt), whitespace-separated; without ``data.path`` the
  copy inside the installed ``lifetimes`` package is read.
- ``womens_clothing``: Women's E-Commerce Clothing Reviews: reviews only (no customers, no dates).
- ``chinese_reviews``: online_shopping_10_cats (cat, label, review; BOM) or any label/review corpus:
  reviews only, label 1 -> rating 5, label 0 -> rating 1.

Adapters leave rows they find doubtful in the tables and mark them (:data:`STATUS`,
:data:`DUPLICATE`); :mod:`cvlib.data.clean` removes them and counts each one in the cleaning log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib.data import database, schema
from cvlib.config import Params, TableSpec
from cvlib.data import synthetic

# Plausible dates for shop data: earlier ones, and ones in the future, are errors in the input.
EARLIEST_DATE = "1990-01-01"
# Longer review texts are not reviews (a pasted file, a crawler error): an error, not a truncation.
MAX_REVIEW_CHARS = 100_000
# A small share of unparseable timestamps is dropped (and logged); more than this is an error.
MAX_BAD_TIMESTAMP_SHARE = 0.01
# The synthetic shop's calendar: one year of history, then a 180-day holdout.
SYNTHETIC_CALENDAR = {"start": "2023-01-01", "calibration_days": 365, "horizon_days": 180}
CANONICAL_FILES = ("customers", "transactions", "items", "products", "reviews")
# Marks adapters may add for cleaning; cvlib.data.clean acts on them, logs it and drops the columns.
STATUS = "status"  # transactions: "purchase" | "cancellation" (a document reversing earlier
                   # purchase lines) | "cancelled" (an order that was never fulfilled)
DUPLICATE = "duplicate"  # items: True where the line repeats an earlier input row exactly


class DataError(ValueError):
  """Bad input data; ``problems`` holds one message per problem."""

  def __init__(self, problems: list[str]):
    self.problems = list(problems)
    super().__init__("\n".join(self.problems))


@dataclasses.dataclass
class Tables:
  """The canonical tables of one dataset, plus where they came from."""
  customers: pd.DataFrame
  transactions: pd.DataFrame
  items: pd.DataFrame
  products: pd.DataFrame
  reviews: pd.DataFrame
  truth: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)  # synthetic ground truth
  sources: list[dict] = dataclasses.field(default_factory=list)  # {"path", "sha256", "bytes"}
  notes: list[str] = dataclasses.field(default_factory=list)  # what the adapter did, for the log
  meta: dict = dataclasses.field(default_factory=dict)  # e.g. the synthetic calendar

  def counts(self) -> dict[str, int]:
    return {name: len(getattr(self, name)) for name in CANONICAL_FILES}


def load_data(params: Params) -> Tables:
  """Reads the dataset that ``params.data`` describes into canonical tables.

  Raises:
    DataError: listing every problem with the input files.
  """
  loaders = {"synthetic": _load_synthetic, "generic": _load_generic, "olist": _load_olist,
             "online_retail": _load_online_retail, "cdnow": _load_cdnow,
             "womens_clothing": _load_womens_clothing, "chinese_reviews": _load_chinese_reviews}
  tables = loaders[params.data.adapter](params)
  if params.data.until is not None:
    tables = cut_until(tables, params.data.until)
  return tables


def cut_until(tables: Tables, until: dt.date) -> Tables:
  """The tables as they were at the end of ``until`` (``data.until``): orders, their lines and
  reviews dated after that day are left out, before cleaning, so a run on an older cut of a history
  file sees what a run on that day would have seen (a later cancellation of an earlier order
  included). Rows without a date stay, for cleaning to report.

  Raises:
    DataError: no order and no review is left on or before ``until``.
  """
  end = pd.Timestamp(until) + pd.Timedelta(days=1)
  tx, reviews = tables.transactions, tables.reviews
  keep_tx = ~(tx["timestamp"] >= end)  # NaT compares False: kept
  keep_rev = ~(reviews["timestamp"] >= end)
  if len(tx) + len(reviews) and not (keep_tx.any() or keep_rev.any()):
    first = min(t for t in (tx["timestamp"].min(), reviews["timestamp"].min()) if pd.notna(t))
    raise DataError([f"data.until {until}: no order or review on or before it (the data start on "
                     f"{first.date()})"])
  dropped = set(tx.loc[~keep_tx, "order_id"].astype(str))
  items = tables.items
  if dropped and len(items):
    items = items[~items["order_id"].astype(str).isin(dropped)].reset_index(drop=True)
  meta = dict(tables.meta, until=until.isoformat())
  last = tx["timestamp"].max()
  if pd.notna(last) and last >= end:
    meta.pop("calibration_end", None)  # a generator's back-test cutoff is one of the full file's
  note = (f"data.until {until}: {int((~keep_tx).sum()):,} orders and {int((~keep_rev).sum()):,} "
          "reviews after it left out")
  return dataclasses.replace(
      tables, transactions=tx[keep_tx].reset_index(drop=True), items=items,
      reviews=reviews[keep_rev].reset_index(drop=True), meta=meta, notes=[*tables.notes, note])


def file_sha256(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _source(path: Path) -> dict:
  return {"path": str(path), "sha256": file_sha256(path), "bytes": path.stat().st_size}


# --- synthetic ----------------------------------------------------------------------------------

def _load_synthetic(params: Params) -> Tables:

  d = params.data
  if d.path is None:
    cal = SYNTHETIC_CALENDAR
    frames = synthetic.make_demo_data(n_customers=d.customers, seed=d.seed, **cal)
    meta = {"start": cal["start"], "horizon_days": cal["horizon_days"],
            "calibration_end": (pd.Timestamp(cal["start"])
                                + pd.Timedelta(days=cal["calibration_days"])).date().isoformat()}
    sources = [{"path": f"generated: cvlib.data.synthetic (customers={d.customers}, seed={d.seed})",
                "sha256": _frames_sha256(frames), "bytes": 0}]
  else:
    folder = params.resolve_path(d.path)
    frames, sources = read_canonical_folder(folder)
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
  tables = Tables(**{n: schema.coerce_table(n, frames[n]) for n in CANONICAL_FILES},
                  truth={k: frames[k] for k in ("truth", "review_aspects") if k in frames},
                  sources=sources, meta=meta)
  tables.notes.append(f"synthetic data: {d.customers} customers, seed {d.seed}" if d.path is None
                      else f"canonical files from {d.path}")
  return tables


def read_canonical_folder(folder: Path) -> tuple[dict[str, pd.DataFrame], list[dict]]:
  """Reads ``<table>.parquet`` files as written by ``cvlib demo-data``."""
  if not folder.is_dir():
    raise DataError([f"{folder}: folder not found (create it with `cvlib demo-data {folder}`)"])
  frames, sources, problems = {}, [], []
  for name in CANONICAL_FILES + ("truth", "review_aspects"):
    path = folder / f"{name}.parquet"
    if not path.exists():
      if name in CANONICAL_FILES:
        problems.append(f"{path}: file missing")
      continue
    try:
      frames[name] = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
      problems.append(f"{path}: not a readable parquet file ({type(e).__name__}: {e})")
      continue
    sources.append(_source(path))
    if name in schema.TABLES:
      have = set(frames[name].columns)
      for col in schema.TABLES[name]:
        if col.required and col.name not in have:
          problems.append(f"{path}: column {col.name!r} missing (have: {', '.join(sorted(have))})")
  if problems:
    raise DataError(problems)
  return frames, sources


def _frames_sha256(frames: dict[str, pd.DataFrame]) -> str:
  h = hashlib.sha256()
  for name in sorted(frames):
    h.update(name.encode())
    h.update(pd.util.hash_pandas_object(frames[name], index=False).to_numpy().tobytes())
  return h.hexdigest()


# --- generic ------------------------------------------------------------------------------------

def file_format(path: Path) -> str:
  """The format a file's name says (``.gz`` aside): one of :data:`cvlib.config.FILE_FORMATS`."""
  name = path.name.lower()
  stem = name[:-3] if name.endswith(".gz") else name
  if stem.endswith(".parquet"):
    return "parquet"
  if stem.endswith((".jsonl", ".ndjson")):
    return "jsonl"
  if stem.endswith(".json"):
    return "json"
  return "tsv" if stem.endswith(".tsv") else "csv"


def is_json_lines(raw: bytes) -> bool:
  """Whether JSON text holds one object per line (JSON Lines) rather than one JSON document.

  The first line decides: a whole JSON object there is a record (a document's first line is
  ``{`` or ``[`` or more), unless it is the file's only line and all its values are objects or
  arrays (pandas' column-oriented ``to_json``).
  """
  text = raw.decode("utf-8-sig").lstrip()
  first, _, rest = text.partition("\n")
  try:
    record = json.loads(first)
  except ValueError:
    return False
  if not isinstance(record, dict):
    return False
  return bool(rest.strip()) or not record or not all(
      isinstance(v, (dict, list)) for v in record.values())


def read_table_file(path: Path, fmt: str | None = None) -> pd.DataFrame:
  """Reads csv / tsv / json / jsonl / parquet, optionally gzip-compressed, as strings where textual.

  Args:
    path: the file.
    fmt: its format (:data:`cvlib.config.FILE_FORMATS`); default: what its name says, and for
      ``.json`` what its content is (JSON Lines or one JSON document).

  Raises:
    DataError: the file is missing, empty, not UTF-8, or not in the format its name says.
  """
  gz = path.name.lower().endswith(".gz")
  detect = fmt is None  # a .json name: its content says JSON Lines or one document
  fmt = fmt or file_format(path)
  _check_file(path)
  try:
    if fmt == "parquet":
      df = pd.read_parquet(io.BytesIO(gzip.decompress(path.read_bytes())) if gz else path)
    else:
      raw = _read_text_bytes(path)
      if fmt in ("json", "jsonl"):
        # the public review dumps (Amazon's *.json.gz) are JSON Lines under a .json name
        lines = fmt == "jsonl" or (detect and is_json_lines(raw))
        df = pd.read_json(io.BytesIO(raw), lines=lines, dtype=False)
      else:
        sep = "\t" if fmt == "tsv" else ","
        df = pd.read_csv(io.BytesIO(raw), sep=sep, dtype=str, keep_default_na=False,
                         na_values=[""], encoding="utf-8-sig")
    if not len(df):
      raise DataError([f"{path}: no data rows (only a header)"])
    return df
  except DataError:
    raise
  except (ValueError, OSError, EOFError) as e:
    hint = " (JSON Lines? set format: jsonl)" if fmt == "json" else ""
    raise DataError([f"{path}: could not be read as {fmt}{hint} "
                     f"({type(e).__name__}: {' '.join(str(e).split())[:200]})"]) from None


def _check_file(path: Path) -> None:
  """Raises DataError when ``path`` is missing, empty, or named .gz without being gzip."""
  if not path.exists():
    raise DataError([f"{path}: file not found"])
  if path.is_dir():
    raise DataError([f"{path}: is a folder, expected a file"])
  if path.stat().st_size == 0:
    raise DataError([f"{path}: file is empty"])
  if path.name.lower().endswith(".gz"):
    with open(path, "rb") as f:
      if f.read(2) != b"\x1f\x8b":
        raise DataError([f"{path}: name ends in .gz but the file is not gzip-compressed"])


def _read_text_bytes(path: Path) -> bytes:
  """The (decompressed) bytes of a text file, checked to be UTF-8.

  Raises:
    DataError: not UTF-8 (naming the byte and line); gzip errors propagate as OSError/EOFError.
  """
  opener = gzip.open if path.name.lower().endswith(".gz") else open
  with opener(path, "rb") as f:
    raw = f.read()
  try:
    raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise DataError([f"{path}: not UTF-8 text (byte {e.start}, line {line}); "
                     "re-save it as UTF-8"]) from None
  return raw


def _rows(mask: np.ndarray, limit: int = 5) -> str:
  idx = np.flatnonzero(mask)[:limit] + 1
  more = " ..." if mask.sum() > limit else ""
  return ", ".join(map(str, idx)) + more


def _parse_timestamps(values: pd.Series, spec: TableSpec, path: Path, column: str,
                      problems: list[str], notes: list[str],
                      hint: str = "set timestamp_format or timestamp_unit",
                      check_range: bool = False) -> pd.Series:
  missing = values.isna() | (values.astype("string").str.strip() == "")
  # parse each distinct value once: order exports repeat one timestamp on every line of an order
  codes, uniques = pd.factorize(values, use_na_sentinel=True)
  uniques = pd.Series(uniques)
  if spec.timestamp_unit:
    num = pd.to_numeric(uniques, errors="coerce")
    parsed = pd.to_datetime(num, unit=spec.timestamp_unit, errors="coerce")
  else:
    fmt = spec.timestamp_format or "mixed"
    try:
      parsed = pd.to_datetime(uniques, errors="coerce", format=fmt)
    except ValueError:  # offsets of several time zones: pandas will not pick one, so UTC it is
      parsed = pd.to_datetime(uniques, errors="coerce", format=fmt, utc=True)
      notes.append(f"{path.name}: column {column!r}: timestamps in several time zones, converted "
                   "to UTC (those without a zone taken as UTC)")
  if getattr(parsed.dt, "tz", None) is not None:
    parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
  parsed = parsed.astype("datetime64[us]")
  taken = parsed.to_numpy()[np.where(codes < 0, 0, codes)] if len(parsed) else (
      np.full(len(values), np.datetime64("NaT", "us")))
  ts = pd.Series(taken, index=values.index, dtype="datetime64[us]").mask(codes < 0)
  bad = (ts.isna() & ~missing).to_numpy()
  n = len(values)
  # a few out-of-range dates are removed (and logged) by the cleaning step; many mean a bad column
  lo, hi = pd.Timestamp(EARLIEST_DATE), pd.Timestamp.now().normalize() + pd.Timedelta(days=1)
  outside = (ts.notna() & ((ts < lo) | (ts > hi))).to_numpy()
  if check_range and n and outside.sum() / n > MAX_BAD_TIMESTAMP_SHARE:
    problems.append(f"{path}: column {column!r}: {int(outside.sum())} timestamps outside "
                    f"{lo.date()} to {hi.date()} (rows {_rows(outside)}); {hint}")
  if n and (bad.sum() + missing.sum()) / n > MAX_BAD_TIMESTAMP_SHARE:
    problems.append(f"{path}: column {column!r}: {int(bad.sum())} unparseable and "
                    f"{int(missing.sum())} empty timestamps of {n} rows (rows {_rows(bad | missing.to_numpy())}); "
                    f"{hint}")
  elif bad.any() or missing.any():
    notes.append(f"{path.name}: {int(bad.sum() + missing.sum())} rows with an unusable "
                 f"timestamp in {column!r} dropped (rows {_rows(bad | missing.to_numpy())})")
  return ts.astype("datetime64[us]")


def _mapped(spec: TableSpec, path: Path, df: pd.DataFrame, required: tuple[str, ...],
            optional: tuple[str, ...], problems: list[str]) -> pd.DataFrame | None:
  """Renames the file's columns to canonical names; reports missing ones."""
  cols = {**{c: c for c in required + optional if c in df.columns}, **spec.columns}
  unknown = sorted(set(spec.columns) - set(required + optional))
  for key in unknown:
    problems.append(f"{path}: column mapping has unknown canonical name {key!r} "
                    f"(allowed: {', '.join(required + optional)})")
  have = ", ".join(map(str, df.columns))
  ok = True
  for canon, src in cols.items():
    if src not in df.columns:
      problems.append(f"{path}: column {src!r} (for {canon}) missing (have: {have})")
      ok = False
  for canon in required:
    if canon not in cols:
      problems.append(f"{path}: no column for {canon!r}: add it to the column mapping (have: {have})")
      ok = False
  if not ok or unknown:
    return None
  out = pd.DataFrame({canon: df[src] for canon, src in cols.items() if canon in required + optional})
  return out


def _to_number(values: pd.Series, path: Path, column: str, problems: list[str]) -> pd.Series:
  num = pd.to_numeric(values, errors="coerce")
  bad = (num.isna() & values.notna()).to_numpy()
  if bad.any():
    problems.append(f"{path}: column {column!r}: {int(bad.sum())} values are not numbers "
                    f"(rows {_rows(bad)})")
  return num.astype("float64")


def _ids(values: pd.Series) -> pd.Series:
  s = values.astype("string").str.strip()
  s = s.str.replace(r"\.0$", "", regex=True)  # ids exported as floats: "17850.0"
  return s.mask(s == "")


def _load_generic(params: Params) -> Tables:
  d = params.data
  problems: list[str] = []
  notes: list[str] = []
  sources: list[dict] = []
  transactions, items, products, reviews = (schema.empty_table(n) for n in
                                            ("transactions", "items", "products", "reviews"))
  if d.transactions is not None:
    spec = d.transactions
    df, path, source = read_input(params, spec, "transactions")
    sources.append(source)
    m = _mapped(spec, path, df, ("customer_id", "order_id", "timestamp"),
                ("amount", "quantity", "unit_price", "product_id", "description", "category"),
                problems)
    if m is not None:
      if "amount" not in m and not {"quantity", "unit_price"} <= set(m):
        problems.append(f"{path}: needs an 'amount' column or both 'quantity' and 'unit_price' "
                        f"in the column mapping")
      else:
        transactions, items, products = _generic_orders(m, spec, path, problems, notes)
  if d.reviews is not None:
    spec = d.reviews
    df, path, source = read_input(params, spec, "reviews")
    sources.append(source)
    m = _mapped(spec, path, df, ("text",),
                ("customer_id", "product_id", "order_id", "timestamp", "rating", "title",
                 "review_id"), problems)
    if m is not None:
      reviews = _generic_reviews(m, spec, path, problems, notes)
  if problems:
    raise DataError(problems)
  if d.reviews_as_purchases and d.transactions is None:
    r = reviews.dropna(subset=["customer_id", "timestamp"])
    transactions = schema.coerce_table("transactions", pd.DataFrame({
        "customer_id": r["customer_id"], "order_id": "R" + r["review_id"],
        "timestamp": r["timestamp"], "amount": 1.0}))
    notes.append(f"reviews_as_purchases: {len(transactions)} reviews stand in for purchases "
                 "(amount 1 each; value is counted in purchases)")
  ids = pd.concat([transactions["customer_id"], reviews["customer_id"]]).dropna().unique()
  customers = schema.coerce_table("customers", pd.DataFrame({"customer_id": np.sort(ids)}))
  return Tables(customers=customers, transactions=transactions, items=items, products=products,
                reviews=reviews, sources=sources, notes=notes)


class SourceName(str):
  """A database source's name in messages and notes, where a file's Path goes (``.name`` too)."""

  @property
  def name(self) -> str:
    return str(self)


def read_input(params: Params, spec: TableSpec,
               table: str) -> tuple[pd.DataFrame, Path | SourceName, dict]:
  """Reads one generic input: a file, or a database table or query.

  Returns:
    The rows; the file's path (or the database source's name) for messages; its run record.

  Raises:
    DataError: one line naming the file or database source (never a password) and the problem.
  """
  if spec.sql is None and params.engine == "spark":
    from cvlib.data import spark  # pyspark loads for engine spark only
    base = Path(params.source).parent if params.source else Path.cwd()
    if spark.is_native_source(spec, base):  # a Spark table or a parquet folder: Spark reads it
      where = SourceName(f"data.{table}.table {spec.table}" if spec.table is not None
                         else f"data.{table}.path {spec.path}")
      try:
        df = spark.read_source_pandas(params.spark, spec, base, where)
      except ValueError as e:
        raise DataError([str(e)]) from None
      return df, where, {"source": str(where), "rows": len(df)}
  if spec.sql is None:
    path = params.resolve_path(spec.path)
    df = read_table_file(path, spec.format)
    return df, path, _source(path)
  key = f"data.{table}.sql"
  try:
    url = database.connection_url(spec.sql)
  except database.SourceError as e:
    raise DataError([f"{key}: {e}"]) from None
  where = SourceName(f"{key} ({database.describe(spec.sql, url)})")
  try:
    read = database.read_source(spec.sql)
  except database.SourceError as e:
    raise DataError([f"{where}: {e}"]) from None
  return read.frame, where, read.source


def _generic_orders(m: pd.DataFrame, spec: TableSpec, path: Path, problems: list[str],
                    notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
  m = m.copy()
  for col in ("customer_id", "order_id", "product_id"):
    if col in m:
      m[col] = _ids(m[col])
  no_order = m["order_id"].isna().to_numpy()
  if no_order.any():
    problems.append(f"{path}: column {spec.columns.get('order_id', 'order_id')!r}: "
                    f"{int(no_order.sum())} rows have no order id (rows {_rows(no_order)})")
  if m["customer_id"].isna().all():
    problems.append(f"{path}: column {spec.columns.get('customer_id', 'customer_id')!r}: "
                    "every customer id is empty")
  m["timestamp"] = _parse_timestamps(m["timestamp"], spec, path,
                                     spec.columns.get("timestamp", "timestamp"), problems, notes,
                                     check_range=True)
  for col in ("amount", "quantity", "unit_price"):
    if col in m:
      empty = (m[col].isna() | (m[col].astype("string").str.strip() == "")).fillna(True) \
          .to_numpy()
      m[col] = _to_number(m[col], path, spec.columns.get(col, col), problems)
      if empty.sum() / len(m) > MAX_BAD_TIMESTAMP_SHARE:
        problems.append(f"{path}: column {spec.columns.get(col, col)!r}: {int(empty.sum())} empty "
                        f"values of {len(m)} rows (rows {_rows(empty)})")
  _check_order_owners(m, spec, path, problems)
  if problems:
    return (schema.empty_table("transactions"), schema.empty_table("items"),
            schema.empty_table("products"))
  if "amount" not in m:
    m["amount"] = m["quantity"] * m["unit_price"]
  if not (m["amount"] > 0).any():
    column = spec.columns.get("amount", "amount") if "amount" in spec.columns else "unit_price"
    problems.append(f"{path}: column {column!r}: no positive amounts: nothing was bought")
    return (schema.empty_table("transactions"), schema.empty_table("items"),
            schema.empty_table("products"))
  # line-level rows (one per product) or order-level rows: group by order either way
  orders = (m.dropna(subset=["timestamp"])
            .groupby("order_id", sort=True)
            .agg(customer_id=("customer_id", "first"), timestamp=("timestamp", "min"),
                 amount=("amount", "sum"))
            .reset_index())
  transactions = schema.coerce_table("transactions", orders)
  if "product_id" in m:
    lines = pd.DataFrame({"order_id": m["order_id"], "product_id": m["product_id"],
                          "quantity": m["quantity"] if "quantity" in m else 1.0,
                          "amount": m["amount"]})
    lines["unit_price"] = lines["amount"] / lines["quantity"].replace(0, np.nan)
    items = schema.coerce_table("items", lines.dropna(subset=["product_id"]))
    prod = pd.DataFrame({"product_id": m["product_id"],
                         "category": m["category"] if "category" in m else pd.NA,
                         "description": m["description"] if "description" in m else pd.NA})
    products = schema.coerce_table(
        "products", prod.dropna(subset=["product_id"]).drop_duplicates("product_id"))
  else:
    items, products = schema.empty_table("items"), schema.empty_table("products")
  return transactions, items, products


def _check_order_owners(m: pd.DataFrame, spec: TableSpec, path: Path,
                        problems: list[str]) -> None:
  """An order id shared by two customers means ids were reused or rows were mixed up."""
  owners = m.dropna(subset=["order_id", "customer_id"]).groupby("order_id")["customer_id"] \
      .nunique()
  shared = owners[owners > 1]
  if len(shared):
    order = shared.index[0]
    rows = _rows((m["order_id"] == order).fillna(False).to_numpy())
    more = f" ({len(shared)} such orders)" if len(shared) > 1 else ""
    problems.append(f"{path}: column {spec.columns.get('order_id', 'order_id')!r}: order id "
                    f"{order} belongs to {int(shared.iloc[0])} customers (rows {rows}){more}")


def _generic_reviews(m: pd.DataFrame, spec: TableSpec, path: Path, problems: list[str],
                     notes: list[str]) -> pd.DataFrame:
  m = m.copy()
  huge = (m["text"].astype("string").str.len() > MAX_REVIEW_CHARS).fillna(False).to_numpy()
  if huge.any():
    problems.append(f"{path}: column {spec.columns.get('text', 'text')!r}: {int(huge.sum())} "
                    f"texts longer than {MAX_REVIEW_CHARS:,} characters (rows {_rows(huge)})")
  for col in ("customer_id", "product_id", "order_id", "review_id"):
    if col in m:
      m[col] = _ids(m[col])
  if "review_id" not in m:
    m["review_id"] = pd.Series(np.arange(1, len(m) + 1), index=m.index).astype(str)
  if "timestamp" in m:
    m["timestamp"] = _parse_timestamps(m["timestamp"], spec, path,
                                       spec.columns.get("timestamp", "timestamp"), problems, notes,
                                       check_range=True)
  if "rating" in m:
    m["rating"] = _to_number(m["rating"], path, spec.columns.get("rating", "rating"), problems)
  if problems:
    return schema.empty_table("reviews")
  for col in ("customer_id", "timestamp", "rating"):
    if col not in m:  # optional in the mapping, nullable in the canonical table
      m[col] = schema.empty_table("reviews")[col].reindex(m.index)
  return schema.coerce_table("reviews", m)


# --- shared helpers for the dataset adapters ----------------------------------------------------

def _data_path(params: Params, what: str, example: str) -> Path:
  """The adapter's ``data.path``, resolved and checked to exist.

  Raises:
    DataError: no path configured, or nothing at the resolved path.
  """
  d = params.data
  where = params.source or "params"
  if d.path is None:
    raise DataError([f"{where}: data.path is required for adapter {d.adapter!r} "
                     f"(the dataset's {what}, e.g. {example})"])
  path = params.resolve_path(d.path)
  if not path.exists():
    hint = ""
    if not Path(d.path).is_absolute() and not os.environ.get("CVLIB_DATA_DIR"):
      hint = (" (relative data paths resolve against the params file's folder, then "
              "$CVLIB_DATA_DIR, which is not set)")
    raise DataError([f"{path}: {what} not found{hint}"])
  return path


def _read_checked(path: Path, problems: list[str]) -> pd.DataFrame | None:
  """read_table_file, collecting its problem instead of raising, so all files get checked."""
  try:
    return read_table_file(path)
  except DataError as e:
    problems.extend(e.problems)
    return None


def _require(path: Path, df: pd.DataFrame, columns: tuple[str, ...],
             problems: list[str]) -> bool:
  """Checks that ``df`` has data rows and every column in ``columns``."""
  have = ", ".join(map(str, df.columns))
  missing = [c for c in columns if c not in df.columns]
  for c in missing:
    problems.append(f"{path}: column {c!r} missing (have: {have})")
  if not missing and not len(df):
    problems.append(f"{path}: no data rows (only a header)")
  return not missing and len(df) > 0


def _timestamps(values: pd.Series, path: Path, column: str, fmt: str | None,
                problems: list[str], notes: list[str]) -> pd.Series:
  """Parses a timestamp column; unparseable values become NaT (cleaning removes and counts them)."""
  want = {None: "dates and times", "ISO8601": "YYYY-MM-DD HH:MM:SS",
          "%Y%m%d": "YYYYMMDD"}.get(fmt, fmt)
  return _parse_timestamps(values, TableSpec(path=str(path), timestamp_format=fmt), path, column,
                           problems, notes, hint=f"expected {want}")


def _all_empty_ids(ids: pd.Series, path: Path, column: str, problems: list[str]) -> None:
  if len(ids) and ids.isna().all():
    problems.append(f"{path}: column {column!r}: every customer id is empty")


def _first_mode(keys: pd.Series, values: pd.Series) -> pd.Series:
  """The most frequent non-missing value per key (ties: the one seen first), indexed by key."""
  df = pd.DataFrame({"k": keys.to_numpy(), "v": values.to_numpy()}).dropna()
  df["n"] = df.groupby(["k", "v"], sort=False)["v"].transform("size")
  df["pos"] = np.arange(len(df))
  df = df.sort_values(["k", "n", "pos"], ascending=[True, False, True], kind="stable")
  return df.drop_duplicates("k").set_index("k")["v"]


def _empty_tables(**frames: pd.DataFrame) -> dict[str, pd.DataFrame]:
  """All canonical tables (empty where not given), canonical columns first."""
  out = {}
  for name in CANONICAL_FILES:
    df = frames.get(name, schema.empty_table(name))
    canon = [c.name for c in schema.TABLES[name] if c.name in df.columns]
    out[name] = df[canon + [c for c in df.columns if c not in canon]].reset_index(drop=True)
  return out


# --- olist --------------------------------------------------------------------------------------

# The Kaggle file names (without .csv / .csv.gz) and the columns each adapter reads from them.
OLIST_FILES = {
    "orders": ("olist_orders_dataset",
               ("order_id", "customer_id", "order_status", "order_purchase_timestamp")),
    "customers": ("olist_customers_dataset", ("customer_id", "customer_unique_id")),
    "items": ("olist_order_items_dataset", ("order_id", "order_item_id", "product_id", "price")),
    "payments": ("olist_order_payments_dataset", ("order_id", "payment_value")),
    "reviews": ("olist_order_reviews_dataset",
                ("review_id", "order_id", "review_score", "review_comment_title",
                 "review_comment_message", "review_creation_date")),
    "products": ("olist_products_dataset", ("product_id", "product_category_name")),
}
OLIST_TRANSLATION = ("product_category_name_translation",
                     ("product_category_name", "product_category_name_english"))
# Orders that never reached the customer: marked cancelled, so cleaning removes and counts them.
OLIST_CANCELLED_STATUSES = ("canceled", "unavailable")
OLIST_TIME_FORMAT = "ISO8601"


def _olist_file(folder: Path, stem: str) -> Path:
  for suffix in (".csv.gz", ".csv"):
    if (folder / (stem + suffix)).exists():
      return folder / (stem + suffix)
  return folder / (stem + ".csv.gz")


def _load_olist(params: Params) -> Tables:
  folder = _data_path(params, "folder", "olist")
  if not folder.is_dir():
    raise DataError([f"{folder}: expected the folder holding the Olist CSV files, got a file"])
  problems: list[str] = []
  notes: list[str] = []
  raw, paths = {}, {}
  for key, (stem, columns) in OLIST_FILES.items():
    path = paths[key] = _olist_file(folder, stem)
    if not path.exists():
      problems.append(f"{folder / stem}.csv.gz: file not found (nor {stem}.csv)")
      continue
    df = _read_checked(path, problems)
    if df is not None and _require(path, df, columns, problems):
      raw[key] = df
  tpath = _olist_file(folder, OLIST_TRANSLATION[0])
  translation = None
  if tpath.exists():
    df = _read_checked(tpath, problems)
    if df is not None and _require(tpath, df, OLIST_TRANSLATION[1], problems):
      translation = df
  else:
    notes.append(f"{tpath.name} not found: product categories keep their Portuguese names")
  if problems:
    raise DataError(problems)

  orders, cust = raw["orders"], raw["customers"]
  for col in ("order_id", "customer_id"):
    orders[col] = _ids(orders[col])
  for col in ("customer_id", "customer_unique_id"):
    cust[col] = _ids(cust[col])
  _all_empty_ids(cust["customer_unique_id"], paths["customers"], "customer_unique_id", problems)
  ts = _timestamps(orders["order_purchase_timestamp"], paths["orders"], "order_purchase_timestamp",
                   OLIST_TIME_FORMAT, problems, notes)
  pay = raw["payments"]
  pay["order_id"] = _ids(pay["order_id"])
  pay_value = _to_number(pay["payment_value"], paths["payments"], "payment_value", problems)
  items = raw["items"]
  for col in ("order_id", "product_id"):
    items[col] = _ids(items[col])
  price = _to_number(items["price"], paths["items"], "price", problems)
  freight = (_to_number(items["freight_value"], paths["items"], "freight_value", problems)
             if "freight_value" in items else pd.Series(0.0, index=items.index))
  rv = raw["reviews"]
  for col in ("review_id", "order_id"):
    rv[col] = _ids(rv[col])
  rating = _to_number(rv["review_score"], paths["reviews"], "review_score", problems)
  rv_ts = _timestamps(rv["review_creation_date"], paths["reviews"], "review_creation_date",
                      OLIST_TIME_FORMAT, problems, notes)
  if problems:
    raise DataError(problems)

  # customer_id is one per order; the person is customer_unique_id
  person = cust.drop_duplicates("customer_id").set_index("customer_id")["customer_unique_id"]
  unknown = (~orders["customer_id"].isin(person.index)).to_numpy()
  if unknown.any():
    notes.append(f"{paths['orders'].name}: {int(unknown.sum())} orders have a customer_id that is "
                 f"not in {paths['customers'].name} (rows {_rows(unknown)}): no customer")
  # the amount is what the customer paid (items + freight, vouchers and instalment interest
  # included); the shared copy's payments table is whole, the orders a subset
  in_orders = pay["order_id"].isin(orders["order_id"])
  if (~in_orders).any():
    notes.append(f"{paths['payments'].name}: {int((~in_orders).sum()):,} of {len(pay):,} payment "
                 f"rows belong to orders not in {paths['orders'].name}; not used")
  paid = pay_value[in_orders].groupby(pay.loc[in_orders, "order_id"]).sum()
  line_total = (price + freight).groupby(items["order_id"]).sum()
  amount = orders["order_id"].map(paid)
  no_payment = amount.isna() & orders["order_id"].isin(line_total.index)
  if no_payment.any():
    notes.append(f"{paths['orders'].name}: {int(no_payment.sum())} orders without payments: "
                 "amount = item prices + freight")
    amount = amount.fillna(orders["order_id"].map(line_total))
  status = orders["order_status"].astype("string").str.strip().str.lower()
  transactions = schema.coerce_table("transactions", pd.DataFrame({
      "customer_id": orders["customer_id"].map(person),
      "order_id": orders["order_id"], "timestamp": ts, "amount": amount,
      STATUS: np.where(status.isin(OLIST_CANCELLED_STATUSES).fillna(False), "cancelled",
                       "purchase"),
      "order_status": status}))

  lines = pd.DataFrame({"order_id": items["order_id"], "product_id": items["product_id"],
                        "quantity": 1.0, "unit_price": price, "amount": price,
                        "order_item_id": items["order_item_id"].astype("string")})
  for col in ("seller_id",):
    if col in items:
      lines[col] = _ids(items[col])
  lines["freight_value"] = freight
  item_rows = schema.coerce_table("items", lines)

  prod = raw["products"]
  prod["product_id"] = _ids(prod["product_id"])
  category = prod["product_category_name"].astype("string").str.strip()
  if translation is not None:
    english = translation.set_index(
        translation["product_category_name"].astype("string").str.strip()
    )["product_category_name_english"].astype("string").str.strip()
    english = english[~english.index.duplicated()]
    category = category.map(english).fillna(category)  # untranslated names stay Portuguese
  products = schema.coerce_table("products", pd.DataFrame({
      "product_id": prod["product_id"], "category": category, "description": pd.NA,
      "category_pt": prod["product_category_name"]}).dropna(subset=["product_id"])
      .drop_duplicates("product_id"))

  # a review belongs to an order; its customer is the order's person, its product the order's
  # product when the order holds just one
  order_person = pd.Series(transactions["customer_id"].to_numpy(), index=orders["order_id"])
  order_person = order_person[~order_person.index.duplicated()]
  by_order = items.groupby("order_id")["product_id"]
  one_product = by_order.first().where(by_order.nunique() == 1)
  reviews = schema.coerce_table("reviews", pd.DataFrame({
      "review_id": rv["review_id"], "customer_id": rv["order_id"].map(order_person),
      "product_id": rv["order_id"].map(one_product), "order_id": rv["order_id"],
      "timestamp": rv_ts, "rating": rating,
      "title": rv["review_comment_title"].astype("string"),
      "text": rv["review_comment_message"].astype("string")}))

  first = cust.dropna(subset=["customer_unique_id"]).drop_duplicates("customer_unique_id")
  extra = {}
  if "customer_zip_code_prefix" in first:
    # the subset lost the leading zeros ("4534" for "04534")
    extra["zip_code_prefix"] = _ids(first["customer_zip_code_prefix"]).str.zfill(5)
  for src, dst in (("customer_city", "city"), ("customer_state", "state")):
    if src in first:
      extra[dst] = first[src].astype("string")
  customers = schema.coerce_table("customers", pd.DataFrame(
      {"customer_id": first["customer_unique_id"], **extra}).sort_values("customer_id"))
  notes.append(f"olist: {len(orders):,} orders of {len(customers):,} customers "
               f"(customer_unique_id), {len(items):,} order lines, {len(rv):,} reviews")
  return Tables(**_empty_tables(customers=customers.reset_index(drop=True),
                                transactions=transactions, items=item_rows, products=products,
                                reviews=reviews),
                sources=[_source(p) for p in list(paths.values()) + [tpath] if p.exists()],
                notes=notes)


# --- UCI Online Retail --------------------------------------------------------------------------

# Column names of the UCI export; "Online Retail II" names map onto them.
ONLINE_RETAIL_COLUMNS = ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice",
                         "CustomerID")
ONLINE_RETAIL_ALIASES = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}


def _load_online_retail(params: Params) -> Tables:
  path = _data_path(params, "file", "online_retail/online_retail.csv.gz")
  if path.name.lower().endswith((".xlsx", ".xls")):
    raise DataError([f"{path}: Excel files are not read; save the sheet as CSV (UTF-8)"])
  problems: list[str] = []
  notes: list[str] = []
  df = read_table_file(path)
  df = df.rename(columns={k: v for k, v in ONLINE_RETAIL_ALIASES.items()
                          if k in df.columns and v not in df.columns})
  if not _require(path, df, ONLINE_RETAIL_COLUMNS, problems):
    raise DataError(problems)
  invoice = _ids(df["InvoiceNo"])
  stock = _ids(df["StockCode"])
  customer = _ids(df["CustomerID"])
  for col, ids in (("InvoiceNo", invoice), ("StockCode", stock)):
    empty = ids.isna().to_numpy()
    if empty.any():
      problems.append(f"{path}: column {col!r}: {int(empty.sum())} rows are empty "
                      f"(rows {_rows(empty)})")
  _all_empty_ids(customer, path, "CustomerID", problems)
  qty = _to_number(df["Quantity"], path, "Quantity", problems)
  price = _to_number(df["UnitPrice"], path, "UnitPrice", problems)
  ts = _timestamps(df["InvoiceDate"], path, "InvoiceDate", None, problems, notes)
  if problems:
    raise DataError(problems)

  # one exported row is one order line; a row repeating an earlier one exactly is marked
  duplicate = df.duplicated(keep="first").to_numpy()
  lines = pd.DataFrame({"order_id": invoice, "product_id": stock, "quantity": qty,
                        "unit_price": price, "amount": qty * price, DUPLICATE: duplicate})
  items = schema.coerce_table("items", lines)
  cancellation = invoice.str.upper().str.startswith("C").fillna(False).to_numpy()
  orders = (pd.DataFrame({"order_id": invoice, "customer_id": customer, "timestamp": ts,
                          "amount": lines["amount"], "cancellation": cancellation,
                          "n_customers": customer})
            .groupby("order_id", sort=False)
            .agg(customer_id=("customer_id", "first"), timestamp=("timestamp", "min"),
                 amount=("amount", "sum"), cancellation=("cancellation", "max"),
                 n_customers=("n_customers", "nunique"))
            .reset_index())
  mixed = orders["n_customers"] > 1
  if mixed.any():
    notes.append(f"{path.name}: {int(mixed.sum())} invoices carry lines of several customers "
                 f"(e.g. {', '.join(orders.loc[mixed, 'order_id'].head(3))}); "
                 "the first customer is used")
  orders[STATUS] = np.where(orders["cancellation"], "cancellation", "purchase")
  transactions = schema.coerce_table("transactions",
                                     orders.drop(columns=["cancellation", "n_customers"]))

  text = df["Description"] if "Description" in df else pd.Series(pd.NA, index=df.index)
  text = text.astype("string").str.strip().replace("", pd.NA)
  desc = _first_mode(stock, text)  # a stock code has several spellings: keep the most used
  codes = pd.Series(stock.dropna().unique(), dtype="string")
  products = schema.coerce_table("products", pd.DataFrame({
      "product_id": codes, "category": pd.NA, "description": codes.map(desc)}))

  ids = customer.dropna().unique()
  extra = {}
  if "Country" in df:
    extra["country"] = pd.Series(ids).map(
        _first_mode(customer, df["Country"].astype("string").str.strip())).astype("string")
  customers = schema.coerce_table("customers", pd.DataFrame(
      {"customer_id": ids, **extra}).sort_values("customer_id").reset_index(drop=True))
  notes.append(f"{path.name}: {len(df):,} rows, {len(transactions):,} invoices "
               f"({int(transactions[STATUS].eq('cancellation').sum()):,} cancellations), "
               f"{len(customers):,} customers with an id")
  return Tables(**_empty_tables(customers=customers, transactions=transactions, items=items,
                                products=products),
                sources=[_source(path)], notes=notes)


# --- CDNOW --------------------------------------------------------------------------------------

CDNOW_MASTER = ("customer_id", "date", "number_of_cds", "dollar_value")
CDNOW_SAMPLE = ("customer_id", "sample_id", "date", "number_of_cds", "dollar_value")


def _cdnow_path(params: Params) -> tuple[Path, str]:
  """The configured file, or the copy of CDNOW_master.txt inside the lifetimes package."""
  if params.data.path is not None:
    return _data_path(params, "file", "cdnow/CDNOW_master.txt"), params.data.path
  import importlib.resources
  try:
    res = importlib.resources.files("lifetimes") / "datasets" / "CDNOW_master.txt"
  except ModuleNotFoundError:
    res = None
  if res is None or not res.is_file():
    raise DataError([f"{params.source or 'params'}: data.path is not set and the lifetimes "
                     "package with its CDNOW_master.txt is not installed; set data.path"])
  return Path(str(res)), "lifetimes/datasets/CDNOW_master.txt"


def _load_cdnow(params: Params) -> Tables:
  path, shown = _cdnow_path(params)
  _check_file(path)
  problems: list[str] = []
  notes: list[str] = []
  try:
    raw = _read_text_bytes(path)
    df = pd.read_csv(io.BytesIO(raw), sep=r"\s+", header=None, dtype=str, encoding="utf-8-sig")
  except DataError:
    raise
  except (ValueError, OSError, EOFError) as e:
    raise DataError([f"{path}: could not be read as whitespace-separated columns "
                     f"({type(e).__name__}: {' '.join(str(e).split())[:200]})"]) from None
  if len(df) and not str(df.iat[0, 0]).strip().isdigit():  # the master file has a header line
    df = df.iloc[1:].reset_index(drop=True)
  if df.shape[1] == len(CDNOW_MASTER):
    df.columns = list(CDNOW_MASTER)
  elif df.shape[1] == len(CDNOW_SAMPLE):
    df.columns = list(CDNOW_SAMPLE)
  else:
    raise DataError([f"{path}: expected 4 columns ({', '.join(CDNOW_MASTER)}) or the sample's 5 "
                     f"({', '.join(CDNOW_SAMPLE)}), got {df.shape[1]}"])
  if not len(df):
    raise DataError([f"{path}: no data rows"])
  customer = _ids(df["customer_id"])
  _all_empty_ids(customer, path, "customer_id", problems)
  ts = _timestamps(df["date"], path, "date", "%Y%m%d", problems, notes)
  cds = _to_number(df["number_of_cds"], path, "number_of_cds", problems)
  dollars = _to_number(df["dollar_value"], path, "dollar_value", problems)
  if problems:
    raise DataError(problems)
  # no order ids in CDNOW: each row is one purchase, numbered by its data row
  transactions = schema.coerce_table("transactions", pd.DataFrame({
      "customer_id": customer, "order_id": pd.Series(np.arange(1, len(df) + 1)).astype(str),
      "timestamp": ts, "amount": dollars, "quantity": cds}))
  same = df.duplicated().to_numpy()
  if same.any():
    notes.append(f"{path.name}: {int(same.sum())} rows repeat another row exactly (rows "
                 f"{_rows(same)}); kept as separate purchases, as in the BTYD literature "
                 "(the file has no order ids to tell them apart)")
  customers = schema.coerce_table("customers", pd.DataFrame(
      {"customer_id": np.sort(customer.dropna().unique())}))
  notes.append(f"CDNOW from {shown}: {len(df):,} purchases of {len(customers):,} customers")
  return Tables(**_empty_tables(customers=customers, transactions=transactions),
                sources=[_source(path)], notes=notes)


# --- Women's E-Commerce Clothing Reviews --------------------------------------------------------

WOMENS_EXTRA = {"Age": "age", "Recommended IND": "recommended",
                "Positive Feedback Count": "positive_feedback", "Division Name": "division",
                "Department Name": "department", "Class Name": "class_name"}


def _load_womens_clothing(params: Params) -> Tables:
  path = _data_path(params, "file",
                    "womens_clothing_reviews/Womens Clothing E-Commerce Reviews.csv.gz")
  problems: list[str] = []
  df = read_table_file(path)
  if not _require(path, df, ("Review Text", "Rating"), problems):
    raise DataError(problems)
  rating = _to_number(df["Rating"], path, "Rating", problems)
  numbers = {col: _to_number(df[col], path, col, problems)
             for col in ("Age", "Recommended IND", "Positive Feedback Count") if col in df}
  if problems:
    raise DataError(problems)
  # the unnamed first column is the file's own row index: the review id
  index_col = next((c for c in df.columns if str(c) == "" or str(c).startswith("Unnamed: 0")),
                   None)
  review_id = (_ids(df[index_col]) if index_col is not None
               else pd.Series(np.arange(1, len(df) + 1), index=df.index).astype(str))
  product = _ids(df["Clothing ID"]) if "Clothing ID" in df else pd.Series(pd.NA, index=df.index)
  rv = pd.DataFrame({"review_id": review_id, "customer_id": pd.NA, "product_id": product,
                     "order_id": pd.NA, "timestamp": pd.NaT, "rating": rating,
                     "title": df["Title"] if "Title" in df else pd.NA, "text": df["Review Text"]})
  for src, dst in WOMENS_EXTRA.items():
    if src in df:
      rv[dst] = numbers[src] if src in numbers else df[src].astype("string")
  reviews = schema.coerce_table("reviews", rv)
  products = schema.empty_table("products")
  if "Clothing ID" in df:
    cls = df["Class Name"] if "Class Name" in df else pd.Series(pd.NA, index=df.index)
    cat = _first_mode(product, cls.astype("string"))
    ids = pd.Series(product.dropna().unique(), dtype="string")
    products = schema.coerce_table("products", pd.DataFrame(
        {"product_id": ids, "category": ids.map(cat), "description": pd.NA}))
  notes = [f"{path.name}: {len(reviews):,} reviews of {len(products):,} products; reviews only "
           "(no customer ids, no dates)"]
  return Tables(**_empty_tables(reviews=reviews, products=products), sources=[_source(path)],
                notes=notes)


# --- Chinese labelled shopping reviews ----------------------------------------------------------

# label 1 (positive) / 0 (negative) as star ratings, so the "binary" label scheme (1-2 stars
# negative, 4-5 positive) gives back exactly the corpus labels
RATING_FOR_LABEL = {"1": 5.0, "0": 1.0}


def _load_chinese_reviews(params: Params) -> Tables:
  path = _data_path(params, "file", "chinese_ecommerce_reviews/online_shopping_10_cats.csv.gz")
  problems: list[str] = []
  df = read_table_file(path)  # utf-8-sig: the BOM stays out of the first column's name
  if not _require(path, df, ("label", "review"), problems):
    raise DataError(problems)
  label = df["label"].astype("string").str.strip().str.replace(r"\.0$", "", regex=True)
  rating = label.map(RATING_FOR_LABEL)
  bad = (rating.isna()).to_numpy()
  if bad.any():
    problems.append(f"{path}: column 'label': {int(bad.sum())} values are not 0 or 1 "
                    f"(rows {_rows(bad)})")
    raise DataError(problems)
  category = (df["cat"].astype("string").str.strip() if "cat" in df
              else pd.Series(pd.NA, index=df.index, dtype="string"))
  # no product ids in the corpus: the category (平板, 水果, ...) stands in for the product
  reviews = schema.coerce_table("reviews", pd.DataFrame({
      "review_id": pd.Series(np.arange(1, len(df) + 1), index=df.index).astype(str),
      "customer_id": pd.NA, "product_id": category, "order_id": pd.NA, "timestamp": pd.NaT,
      "rating": rating.astype("float64"), "text": df["review"], "category": category,
      "label": label.astype("Int64")}))
  cats = pd.Series(category.dropna().unique(), dtype="string")
  products = schema.coerce_table("products", pd.DataFrame(
      {"product_id": cats, "category": cats, "description": pd.NA}))
  notes = [f"{path.name}: {len(reviews):,} labelled reviews in {len(cats)} categories; reviews "
           "only (no customer ids, no dates); label 1 -> rating 5, label 0 -> rating 1"]
  return Tables(**_empty_tables(reviews=reviews, products=products), sources=[_source(path)],
                notes=notes)

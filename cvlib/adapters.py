"""Adapters: read a shop's files into cvlib's canonical tables (see :mod:`cvlib.schema`).

Every problem found at the edge is collected and raised once as :class:`DataError`, one message per
problem naming the file, the column and sample row numbers (1-based data rows, header excluded).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import schema
from cvlib.config import Params, TableSpec

# A small share of unparseable timestamps is dropped (and logged); more than this is an error.
MAX_BAD_TIMESTAMP_SHARE = 0.01
# The synthetic shop's calendar: one year of history, then a 180-day holdout.
SYNTHETIC_CALENDAR = {"start": "2023-01-01", "calibration_days": 365, "horizon_days": 180}
CANONICAL_FILES = ("customers", "transactions", "items", "products", "reviews")


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
  loader = {"synthetic": _load_synthetic, "generic": _load_generic}[params.data.adapter]
  return loader(params)


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
  from cvlib import synthetic  # the generator is only needed here

  d = params.data
  if d.path is None:
    cal = SYNTHETIC_CALENDAR
    frames = synthetic.make_demo_data(n_customers=d.customers, seed=d.seed, **cal)
    meta = {"start": cal["start"], "horizon_days": cal["horizon_days"],
            "calibration_end": (pd.Timestamp(cal["start"])
                                + pd.Timedelta(days=cal["calibration_days"])).date().isoformat()}
    sources = [{"path": f"generated: cvlib.synthetic (customers={d.customers}, seed={d.seed})",
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

def read_table_file(path: Path) -> pd.DataFrame:
  """Reads csv / tsv / jsonl / parquet, optionally gzip-compressed, as strings where textual.

  Raises:
    DataError: the file is missing, empty, not UTF-8, or not in the format its name says.
  """
  name = path.name.lower()
  gz = name.endswith(".gz")
  stem = name[:-3] if gz else name
  if not path.exists():
    raise DataError([f"{path}: file not found"])
  if path.stat().st_size == 0:
    raise DataError([f"{path}: file is empty"])
  if gz:
    with open(path, "rb") as f:
      if f.read(2) != b"\x1f\x8b":
        raise DataError([f"{path}: name ends in .gz but the file is not gzip-compressed"])
  try:
    if stem.endswith(".parquet"):
      return pd.read_parquet(io.BytesIO(gzip.decompress(path.read_bytes())) if gz else path)
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:
      raw = f.read()
    try:
      raw.decode("utf-8")
    except UnicodeDecodeError as e:
      line = raw[:e.start].count(b"\n") + 1
      raise DataError([f"{path}: not UTF-8 text (byte {e.start}, line {line}); "
                       "re-save it as UTF-8"]) from None
    buf = io.BytesIO(raw)
    if stem.endswith((".jsonl", ".ndjson", ".json")):
      return pd.read_json(buf, lines=stem.endswith((".jsonl", ".ndjson")), dtype=False)
    sep = "\t" if stem.endswith(".tsv") else ","
    return pd.read_csv(buf, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                       encoding="utf-8-sig")
  except DataError:
    raise
  except (ValueError, OSError, EOFError) as e:
    raise DataError([f"{path}: could not be read as {stem.rsplit('.', 1)[-1]} "
                     f"({type(e).__name__}: {' '.join(str(e).split())[:200]})"]) from None


def _rows(mask: np.ndarray, limit: int = 5) -> str:
  idx = np.flatnonzero(mask)[:limit] + 1
  more = " ..." if mask.sum() > limit else ""
  return ", ".join(map(str, idx)) + more


def _parse_timestamps(values: pd.Series, spec: TableSpec, path: Path, column: str,
                      problems: list[str], notes: list[str]) -> pd.Series:
  missing = values.isna() | (values.astype("string").str.strip() == "")
  if spec.timestamp_unit:
    num = pd.to_numeric(values, errors="coerce")
    ts = pd.to_datetime(num, unit=spec.timestamp_unit, errors="coerce")
  else:
    ts = pd.to_datetime(values, errors="coerce", format=spec.timestamp_format or "mixed")
  if getattr(ts.dt, "tz", None) is not None:
    ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
  bad = (ts.isna() & ~missing).to_numpy()
  n = len(values)
  if n and (bad.sum() + missing.sum()) / n > MAX_BAD_TIMESTAMP_SHARE:
    problems.append(f"{path}: column {column!r}: {int(bad.sum())} unparseable and "
                    f"{int(missing.sum())} empty timestamps of {n} rows (rows {_rows(bad | missing.to_numpy())}); "
                    f"set timestamp_format or timestamp_unit")
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
    path = params.resolve_path(spec.path)
    df = read_table_file(path)
    sources.append(_source(path))
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
    path = params.resolve_path(spec.path)
    df = read_table_file(path)
    sources.append(_source(path))
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
                                     spec.columns.get("timestamp", "timestamp"), problems, notes)
  for col in ("amount", "quantity", "unit_price"):
    if col in m:
      m[col] = _to_number(m[col], path, spec.columns.get(col, col), problems)
  if problems:
    return (schema.empty_table("transactions"), schema.empty_table("items"),
            schema.empty_table("products"))
  if "amount" not in m:
    m["amount"] = m["quantity"] * m["unit_price"]
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


def _generic_reviews(m: pd.DataFrame, spec: TableSpec, path: Path, problems: list[str],
                     notes: list[str]) -> pd.DataFrame:
  m = m.copy()
  for col in ("customer_id", "product_id", "order_id", "review_id"):
    if col in m:
      m[col] = _ids(m[col])
  if "review_id" not in m:
    m["review_id"] = pd.Series(np.arange(1, len(m) + 1), index=m.index).astype(str)
  if "timestamp" in m:
    m["timestamp"] = _parse_timestamps(m["timestamp"], spec, path,
                                       spec.columns.get("timestamp", "timestamp"), problems, notes)
  if "rating" in m:
    m["rating"] = _to_number(m["rating"], path, spec.columns.get("rating", "rating"), problems)
  if problems:
    return schema.empty_table("reviews")
  for col in ("customer_id", "timestamp", "rating"):
    if col not in m:  # optional in the mapping, nullable in the canonical table
      m[col] = schema.empty_table("reviews")[col].reindex(m.index)
  return schema.coerce_table("reviews", m)

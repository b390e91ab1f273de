"""Stage 1, preprocess (notebook 01): customers split by time, their features, the cleaning report.

Each step takes its params section and its inputs; ``save_prepared`` writes what the later stages
read back with ``load_prepared``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from cvlib.config import Params
from cvlib.data import features as feats
from cvlib.data import privacy
from cvlib.data.adapters import CANONICAL_FILES, Tables, load_data
from cvlib.data.clean import CleaningLog, clean_tables
from cvlib.data.split import Prepared
from cvlib.report.workspace import ARTIFACTS_DIR, Workspace, percent, to_jsonable
from cvlib.stages.notes import skip, take_skipped


# The steps notebook 01 calls, in its order.
__all__ = [
    "load_inputs",
    "prepare_customers", "save_prepared", "report_preprocess", "load_prepared"
]


# --- 01 preprocess ------------------------------------------------------------------------------

@dataclasses.dataclass
class Inputs:
  """The dataset as read and cleaned: what stage 1 starts from."""
  counts: dict[str, int]  # rows per canonical table as read, before cleaning
  sources: list[dict]  # the files read: path, sha256, bytes
  cleaned: Tables
  log: CleaningLog


# Where ``cvlib run`` leaves the tables it validated, for stage 1 to pick up instead of reading and
# cleaning the data a second time (100 s each on 10M order lines).
HANDED_OVER = "validated"


def read_inputs(params: Params) -> Inputs:
  """Reads the dataset that ``params.data`` describes and cleans it.

  Raises:
    DataError: listing every problem with the input files.
  """
  raw = load_data(params)
  cleaned, log = clean_tables(raw)
  return Inputs(raw.counts(), raw.sources, cleaned, log)


def hand_over(run_dir: str | Path, inputs: Inputs) -> None:
  """Writes validated inputs into a run folder for :func:`load_inputs` (the runner calls this)."""
  folder = Path(run_dir) / ARTIFACTS_DIR / HANDED_OVER
  folder.mkdir(parents=True, exist_ok=True)
  tables = inputs.cleaned
  for name in CANONICAL_FILES:
    getattr(tables, name).to_parquet(folder / f"{name}.parquet", index=False)
  for name, frame in tables.truth.items():
    frame.to_parquet(folder / f"truth_{name}.parquet", index=False)
  about = {"counts": inputs.counts, "sources": inputs.sources, "log": inputs.log.rows,
           "notes": tables.notes, "meta": tables.meta, "truth": sorted(tables.truth)}
  (folder / "inputs.json").write_text(json.dumps(to_jsonable(about), indent=1))


def load_inputs(params: Params, ws: Workspace) -> Inputs:
  """The inputs ``cvlib run`` validated (handed over in the run folder, then removed), or, in an
  interactive session, the dataset read and cleaned here (:func:`read_inputs`)."""
  folder = ws.root / ARTIFACTS_DIR / HANDED_OVER
  if not (folder / "inputs.json").is_file():
    return read_inputs(params)
  about = json.loads((folder / "inputs.json").read_text())
  frames = {name: pd.read_parquet(folder / f"{name}.parquet") for name in CANONICAL_FILES}
  truth = {name: pd.read_parquet(folder / f"truth_{name}.parquet") for name in about["truth"]}
  cleaned = Tables(**frames, truth=truth, sources=about["sources"], notes=about["notes"],
                   meta=about["meta"])
  shutil.rmtree(folder)
  return Inputs(about["counts"], about["sources"], cleaned, CleaningLog(about["log"]))



def tables_span_days(tables: Tables) -> int:
  """Days from the first to the last order."""
  ts = tables.transactions["timestamp"]
  return int((ts.max() - ts.min()).days) if len(ts) else 0


def choose_split(params: Params, tables: Tables) -> tuple[dt.date | None, str | None]:
  """The first day of the holdout (``features.choose_cutoff``), or (None, why) when an automatic
  cutoff leaves no calibration period or no holdout: the report then goes on without the back-test.

  Raises:
    ValueError: the ``split.calibration_end`` the params set does not fit the data (bad input).
  """
  try:
    return feats.choose_cutoff(tables.transactions, params.split.calibration_end,
                               params.split.horizon_days, tables.meta), None
  except ValueError as e:
    if params.split.calibration_end is not None:
      raise
    return None, str(e)


def customer_features_on(params: Params):
  """``features.compute_customer_features``, or the same features computed on Spark when the
  params say ``engine: spark`` (a session from the params' ``spark`` section)."""
  if params.engine != "spark":
    return feats.compute_customer_features
  from cvlib.data import spark as spark_engine  # pyspark loads for engine spark only
  session = spark_engine.session_from_params(params.spark)

  def compute(transactions, items, products, reviews, cutoff, horizon_days):
    try:
      return spark_engine.to_pandas(spark_engine.compute_customer_features(
          session, transactions, items, products, reviews, cutoff=cutoff,
          horizon_days=horizon_days))
    except Exception as e:  # a failed job or a lost session: one line, not a JVM stack trace
      if not spark_engine.is_spark_exception(e):
        raise
      raise spark_engine.SparkError("Spark failed computing the customer features: "
                                    f"{spark_engine.failure_line(e)}") from None

  return compute


def prepare_customers(params: Params, tables: Tables) -> Prepared:
  """Splits by time and computes customer features for the back-test and for forward scores.

  Args:
    params: the run's params (split section and report salt are used).
    tables: cleaned canonical tables.

  Returns:
    The split and feature tables, each with a pseudonymous ``customer_key``.
  """
  h = params.split.horizon_days
  args = (tables.transactions, tables.items, tables.products, tables.reviews)
  cutoff = as_of = None  # reviews only: no orders to split
  if len(tables.transactions):
    cutoff, why = choose_split(params, tables)
    if why:  # the orders are too short for a back-test: the rest of the report goes on
      skip("customer value, churn, segments and recommendations",
           f"the orders span {tables_span_days(tables)} days, too short for a "
           f"{h}-day holdout after a calibration period ({why})")
    as_of = tables.transactions["timestamp"].max().date() + dt.timedelta(days=1)
  compute = customer_features_on(params)
  if cutoff is None:  # no back-test: the customer tables stay empty
    features = compute(*args, dt.date(2000, 1, 1), h)
    features_now = features.copy()
  else:
    features = compute(*args, cutoff, h)
    features_now = compute(*args, as_of, h)
  windows = (training_windows(compute, tables, cutoff, h, params.value.train_windows)
             if cutoff is not None else pd.DataFrame())
  salt, _ = privacy.resolve_salt(params.report.salt)
  for df in (features, features_now):
    df.insert(1, "customer_key", privacy.pseudonymise(df["customer_id"], salt))
  cal_items, hold_items = feats.holdout_items(tables.transactions, tables.items,
                                              cutoff or dt.date(2000, 1, 1), h)
  return Prepared(cutoff, as_of, h, features, features_now, cal_items, hold_items, windows)


# An earlier training window needs this much history before its cutoff.
MIN_WINDOW_HISTORY_DAYS = 30


def training_windows(compute, tables: Tables, cutoff: dt.date, horizon_days: int,
                     n: int) -> pd.DataFrame:
  """The customers' features at up to ``n`` cutoffs one, two, .. horizons before ``cutoff``
  (``value.train_windows``), each window's labels its following horizon, so all before ``cutoff``;
  a window stops the list when the data hold less than :data:`MIN_WINDOW_HISTORY_DAYS` before it.

  Returns:
    The windows' feature rows stacked, with ``window`` (1, 2, ..); no rows when none fits.
  """
  args = (tables.transactions, tables.items, tables.products, tables.reviews)
  first = tables.transactions["timestamp"].min().date()
  out = []
  for k in range(1, n + 1):
    earlier = cutoff - dt.timedelta(days=k * horizon_days)
    if (earlier - first).days < MIN_WINDOW_HISTORY_DAYS:
      break
    out.append(compute(*args, earlier, horizon_days).assign(window=k))
  return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def save_prepared(ws: Workspace, params: Params, inputs: Inputs, prep: Prepared) -> dict[str, Any]:
  """Writes stage 1's artifacts and metrics; returns the metrics."""
  cleaned, log = inputs.cleaned, inputs.log
  for name in ("transactions", "items", "products", "reviews"):
    ws.save_frame(name, getattr(cleaned, name))
  for name, frame in cleaned.truth.items():
    ws.save_frame(f"truth_{name}", frame)
  ws.save_frame("features", prep.features)
  ws.save_frame("features_now", prep.features_now)
  ws.save_frame("cal_items", prep.cal_items)
  ws.save_frame("hold_items", prep.hold_items)
  ws.save_frame("features_windows", prep.windows)
  ws.save_frame("cleaning_log", log.to_frame())
  ws.save_json("split", prep.split_info(cleaned))
  ws.save_json("sources", inputs.sources)
  _, default_salt = privacy.resolve_salt(params.report.salt)
  if default_salt:
    ws.add_warning("Customer keys use cvlib's default pseudonymisation key: set CVLIB_SALT (or "
                   "report.salt in the params) to a secret so keys cannot be matched to raw ids.")
  n_customers = int(cleaned.transactions["customer_id"].nunique())
  metrics = {"counts": {"customers": n_customers, "transactions": len(cleaned.transactions),
                        "reviews": len(cleaned.reviews), "items": len(cleaned.items),
                        "products": len(cleaned.products)},
             "split": {**prep.split_info(cleaned), "until": params.data.until},
             "cleaning": {"steps": len(log.rows),
                          "rows_removed": int(sum(r["affected"] for r in log.rows
                                                  if r["action"] == "removed"))}}
  ws.save_metrics(metrics)
  return metrics


def load_prepared(ws: Workspace) -> tuple[Tables, Prepared]:
  """What stage 1 left in the run folder, for the later stages."""
  split = ws.load_json("split")
  day = lambda s: dt.date.fromisoformat(s) if s else None
  tables = Tables(customers=pd.DataFrame(), transactions=ws.load_frame("transactions"),
                  items=ws.load_frame("items"), products=ws.load_frame("products"),
                  reviews=ws.load_frame("reviews"),
                  truth={n: ws.load_frame(f"truth_{n}") for n in ("truth", "review_aspects")
                         if ws.has(f"truth_{n}")})
  prep = Prepared(day(split["cutoff"]), day(split["as_of"]),
                  split["horizon_days"], ws.load_frame("features"),
                  ws.load_frame("features_now"), ws.load_frame("cal_items"),
                  ws.load_frame("hold_items"),
                  ws.load_frame("features_windows") if ws.has("features_windows")
                  else pd.DataFrame())
  return tables, prep


# --- helpers the notebooks call (kept here so each notebook cell is one call) ------------------

def report_preprocess(ws: Workspace, metrics: dict, log: CleaningLog, figures: list) -> None:
  """Stage 1's parts of the stakeholder page."""
  ws.add_skipped(take_skipped())
  c, s = metrics["counts"], metrics["split"]
  ws.add_headline("customers", f"{c['customers']:,}", f"{c['transactions']:,} orders")
  ws.add_headline("reviews", f"{c['reviews']:,}")
  if s["cutoff"] is None and c["transactions"]:
    ws.add_text("data", f"Orders from {s['data_start']} to {s['data_end']}: too short for a "
                f"back-test with a {s['horizon_days']}-day holdout, so customer value, churn, "
                "segments and recommendations are not part of this report; sentiment and "
                "opinions are. A shorter split.horizon_days brings them in.")
  elif s["cutoff"] is None:
    ws.add_text("data", "This dataset holds reviews only, without orders: customer value, churn, "
                "segments and recommendations do not apply; sentiment and opinions do.")
  else:
    ws.add_text("data", f"Orders from {s['data_start']} to {s['data_end']}. Models learn from the "
                f"calibration period before {s['cutoff']} and are checked on the "
                f"{s['horizon_days']} days after it; {percent(s['returned_share'])} of customers bought "
                "again in that holdout period.")
  for fig, caption in zip(figures, ("Orders per week; the holdout period is shaded.",
                                    "Star ratings of reviews.",
                                    "Spend in the holdout period per customer.")):
    ws.add_figure("data", fig, caption)
  ws.add_table("data", log.to_frame(), "Cleaning log: every step, the rows it touched and what "
               "was done with them.", max_rows=40)



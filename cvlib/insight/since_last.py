"""Since the last report: the previous run's forward scores against what customers then did.

A monthly run (``data.until``, or a history file that grew) finds the latest earlier run of the
same dataset in the reports folder (``<out>/<dataset>/`` or ``<out>/history/<dataset>/*``) whose
data end before this run's, and compares:

* the last run's forward scores with the orders that came in since, over the elapsed part of its
  horizon: realised spend and purchases against predicted, Gini, the decile table and its MAPE,
  churn AUC and interval coverage. While the horizon has not fully elapsed, predictions are
  prorated by BG/NBD's expected purchases by day t over those by the horizon's end (the model's
  own time profile, stored in the last run's snapshot), else linearly in time; the result says
  which. Gini and AUC rank customers and do not depend on the proration;
* segment migration: previous segment (and value-by-risk cell) by current one, and the customers
  who newly entered high value + high risk;
* opinion shifts by aspect (share negative in the reviews since, against the last run's), and
  topics that are new;
* drift: the population stability index of each customer feature and of review length and
  rating, review volume and the script (language) mix.

Each run leaves a :func:`make_snapshot` (``snapshot.json``) for the next one. Everything here is
plain pandas on plain inputs; the segment stage reads the run folders and writes the report.
Whatever stops a comparison (one from an older cvlib without a snapshot, a different dataset
under the same name, a damaged folder) is a :class:`NoComparison` with a one-line reason, never a
failed run; a first report (no earlier run at all) is its :class:`FirstReport`, which the report
states without listing it among the parts left out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib.value import metrics as vm

SNAPSHOT_FILE = "snapshot.json"
SNAPSHOT_VERSION = 1
PSI_FLAG = 0.2  # the usual threshold of a population shift worth a look
MIN_KEY_OVERLAP = 0.5  # share of the last run's customers found again, else not the same shop
ORDER_TOLERANCE = 0.05  # relative difference in orders up to the last run's data end
SCORE_NEEDS = ("customer_key", "predicted_value", "churn_probability", "value_lo", "value_hi",
               "value_tier", "risk_band", "rfm_segment")
# Customer-feature columns that are not inputs (ids, holdout targets).
NOT_FEATURES = ("customer_id", "customer_key", "holdout_value", "holdout_orders", "returned")


class NoComparison(Exception):
  """Why there is no "since the last report" section; the message is one line for the reader."""


class FirstReport(NoComparison):
  """No earlier run of the dataset in the reports folder at all: a first report, which has
  nothing to compare with (not a part that failed)."""


# --- the snapshot each run leaves ---------------------------------------------------------------

def feature_bins(values: Any) -> dict[str, list[float]]:
  """Decile bin edges of ``values`` and the share in each bin: one side of a PSI."""
  x = np.asarray(values, dtype=np.float64)
  x = x[np.isfinite(x)]
  if not len(x):
    return {"edges": [], "shares": []}
  edges = np.unique(np.quantile(x, np.linspace(0.1, 0.9, 9)))
  return {"edges": edges.tolist(), "shares": _shares(x, edges).tolist()}


def _shares(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
  # bin i holds edges[i-1] < x <= edges[i]: a constant reference still tells "more" from "same"
  counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
  return counts / max(counts.sum(), 1)


def psi(expected: dict[str, list[float]], values: Any) -> float:
  """Population stability index of ``values`` against a :func:`feature_bins` reference:
  sum over bins of (a - e) ln(a / e), shares floored at 1e-4. NaN without data on either side."""
  x = np.asarray(values, dtype=np.float64)
  x = x[np.isfinite(x)]
  if not expected.get("shares") or not len(x):
    return math.nan
  e = np.maximum(np.asarray(expected["shares"], dtype=np.float64), 1e-4)
  a = np.maximum(_shares(x, np.asarray(expected["edges"], dtype=np.float64)), 1e-4)
  return float(np.sum((a - e) * np.log(a / e)))


_SCRIPTS = (("CJK", re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")),
            ("Cyrillic", re.compile(r"[\u0400-\u04ff]")),
            ("Arabic", re.compile(r"[\u0600-\u06ff]")),
            ("Latin", re.compile(r"[A-Za-z\u00c0-\u024f]")))


def script_of(text: Any) -> str:
  """The writing system most of a text's letters are in (a cheap language-mix proxy)."""
  if not isinstance(text, str) or not text.strip():
    return "none"
  counts = {name: len(rx.findall(text)) for name, rx in _SCRIPTS}
  best = max(counts, key=counts.get)
  return best if counts[best] else "other"


def review_stats(reviews: pd.DataFrame, data_end: dt.date, window_days: int = 90) -> dict:
  """Review volume per 30 days and the script mix over the ``window_days`` before ``data_end``."""
  ts = reviews["timestamp"] if "timestamp" in reviews else pd.Series(dtype="datetime64[ns]")
  start = pd.Timestamp(data_end) + pd.Timedelta(days=1) - pd.Timedelta(days=window_days)
  recent = reviews[ts >= start]
  mix = (recent["text"].map(script_of).value_counts(normalize=True).round(4).to_dict()
         if "text" in recent and len(recent) else {})
  return {"window_days": window_days, "reviews": int(len(recent)),
          "per_30_days": round(len(recent) * 30 / window_days, 2), "script_mix": mix}


def _text_features(reviews: pd.DataFrame) -> dict[str, pd.Series]:
  out = {}
  if "text" in reviews:
    out["review length (words)"] = reviews["text"].dropna().astype(str).str.split().str.len()
  if "rating" in reviews:
    out["review rating"] = reviews["rating"].dropna()
  return out


def feature_columns(features: pd.DataFrame) -> list[str]:
  """The numeric customer-feature columns (no ids, no holdout targets)."""
  return [c for c in features.columns if c not in NOT_FEATURES
          and pd.api.types.is_numeric_dtype(features[c]) and not pd.api.types.is_bool_dtype(
              features[c])]


def make_snapshot(*, dataset: str, cvlib_version: str | None, transactions: pd.DataFrame,
                  reviews: pd.DataFrame, features_now: pd.DataFrame, as_of: dt.date,
                  horizon_days: int, profile: dict | None = None,
                  aspects: dict[str, dict[str, int]] | None = None,
                  topics: Sequence[str] | None = None) -> dict:
  """What the next run compares with, beside this run's scores.parquet.

  Args:
    dataset: the params' dataset name.
    cvlib_version: the version that wrote it.
    transactions, reviews: this run's cleaned tables.
    features_now: the customer features as of ``as_of`` (the forward scores' inputs).
    as_of: the day after the data end: the forward scores' horizon starts here.
    horizon_days: their horizon.
    profile: {"days": [...], "expected_purchases": [...], "method": ...}: the value model's time
      profile over the horizon (:func:`cvlib.value.btyd.expected_purchases_profile`), or None.
    aspects: {aspect: {"reviews": n, "negative": k}} over this run's reviews, or None.
    topics: this run's review topics (their keywords), or None.
  """
  tx = transactions
  return {
      "version": SNAPSHOT_VERSION, "dataset": dataset, "cvlib_version": cvlib_version,
      "as_of": as_of.isoformat(), "data_end": (as_of - dt.timedelta(days=1)).isoformat(),
      "horizon_days": int(horizon_days),
      "orders": {"count": int(len(tx)), "amount": float(tx["amount"].sum()) if len(tx) else 0.0},
      "profile": profile,
      "features": {c: feature_bins(features_now[c]) for c in feature_columns(features_now)},
      "text_features": {k: feature_bins(v) for k, v in _text_features(reviews).items()},
      "reviews": review_stats(reviews, as_of - dt.timedelta(days=1)),
      "aspects": aspects, "topics": list(topics) if topics is not None else None,
  }


# --- finding the last run -----------------------------------------------------------------------

@dataclasses.dataclass
class PreviousRun:
  """An earlier run of the dataset: its folder, its snapshot and its forward scores."""
  folder: Path
  snapshot: dict
  scores: pd.DataFrame

  @property
  def data_end(self) -> dt.date:
    return dt.date.fromisoformat(self.snapshot["data_end"])


def candidate_folders(reports_dir: Path, dataset: str) -> list[Path]:
  """The published run of ``dataset`` and its archived ones, newest archive first."""
  history = reports_dir / "history" / dataset
  archived = sorted((p for p in history.iterdir() if p.is_dir()), reverse=True) \
      if history.is_dir() else []
  current = reports_dir / dataset
  return ([current] if current.is_dir() else []) + archived


def read_previous(folder: Path, dataset: str) -> PreviousRun:
  """One earlier run folder, checked.

  Raises:
    NoComparison: the folder lacks what a comparison needs, or holds another dataset.
  """
  snap_path, scores_path = folder / SNAPSHOT_FILE, folder / "scores.parquet"
  if not snap_path.is_file():
    version = _run_version(folder)
    raise NoComparison(f"the run in {folder.name} has no {SNAPSHOT_FILE} (written by cvlib "
                       f"{version or 'of an older version'}, before monthly comparisons)")
  try:
    snap = json.loads(snap_path.read_text())
    if not isinstance(snap, dict):
      raise ValueError("not a JSON object")
    for key in ("dataset", "as_of", "data_end", "horizon_days", "orders"):
      if key not in snap:
        raise ValueError(f"key {key!r} missing")
    dt.date.fromisoformat(snap["data_end"])
  except (OSError, ValueError) as e:
    raise NoComparison(f"{folder.name}/{SNAPSHOT_FILE} is damaged ({e})") from None
  if snap.get("version") != SNAPSHOT_VERSION:
    raise NoComparison(f"{folder.name}/{SNAPSHOT_FILE} has format {snap.get('version')!r}, this "
                       f"cvlib reads {SNAPSHOT_VERSION}")
  if snap["dataset"] != dataset:
    raise NoComparison(f"the run in {folder.name} is of dataset {snap['dataset']!r}, not "
                       f"{dataset!r}")
  try:
    scores = pd.read_parquet(scores_path)
  except Exception as e:  # missing, truncated, not parquet: all a damaged folder
    raise NoComparison(f"{folder.name}/scores.parquet cannot be read "
                       f"({type(e).__name__})") from None
  missing = [c for c in SCORE_NEEDS if c not in scores]
  if missing:
    raise NoComparison(f"{folder.name}/scores.parquet lacks {', '.join(missing)}")
  return PreviousRun(folder, snap, scores)


def _run_version(folder: Path) -> str | None:
  try:
    return json.loads((folder / "run.json").read_text())["packages"]["cvlib"]
  except Exception:  # any damage: the version is only for the message
    return None


def find_previous(reports_dir: Path, dataset: str, data_end: dt.date) -> PreviousRun:
  """The latest earlier run of ``dataset`` whose data end before ``data_end``.

  Raises:
    NoComparison: none; the reason names the newest run looked at and what was wrong with it.
  """
  folders = candidate_folders(Path(reports_dir), dataset)
  if not folders:
    raise FirstReport(f"This is the first report of {dataset!r} in this reports folder: the next "
                      f"run compares with it.")
  best, first_problem = None, None
  for folder in folders:
    try:
      run = read_previous(folder, dataset)
    except NoComparison as e:
      first_problem = first_problem or str(e)
      continue
    if run.data_end >= data_end:
      first_problem = first_problem or (
          f"the last run's data end ({run.data_end}) is not before this run's ({data_end})")
      continue
    if best is None or run.data_end > best.data_end:
      best = run
  if best is None:
    raise NoComparison(first_problem)
  return best


# --- the comparison -----------------------------------------------------------------------------

@dataclasses.dataclass
class SinceLast:
  """The comparison; ``metrics`` is metrics.json's ``since_last`` block, the frames the tables."""
  metrics: dict
  deciles: pd.DataFrame  # decile, mean_pred (prorated), mean_true, n, abs_pct_error
  segment_migration: pd.DataFrame  # previous, current, customers, predicted_value
  cell_migration: pd.DataFrame
  new_high_risk: pd.DataFrame  # customer_key, previous cell: newly high value + high risk
  opinion_shift: pd.DataFrame | None
  drift: pd.DataFrame  # feature, kind, psi, flagged


def proration(snapshot: dict, elapsed_days: int) -> tuple[float, str]:
  """The share of the horizon's prediction due by ``elapsed_days`` and how it was found."""
  h = int(snapshot["horizon_days"])
  if elapsed_days >= h:
    return 1.0, "none (the whole horizon has elapsed)"
  prof = snapshot.get("profile") or {}
  days, expected = prof.get("days"), prof.get("expected_purchases")
  if days and expected and len(days) == len(expected) and expected[-1] > 0 and days[-1] == h:
    share = float(np.interp(elapsed_days, [0, *days], [0.0, *expected]) / expected[-1])
    return share, (f"BG/NBD expected purchases by day {elapsed_days} over those by day {h} "
                   "(the last run's fitted model)")
  return elapsed_days / h, f"linear in time ({elapsed_days} of {h} days): no BG/NBD profile"


def realised(transactions: pd.DataFrame, keys: pd.Series, start: dt.date, end: dt.date
             ) -> pd.DataFrame:
  """Spend and orders per customer key in [start, end), from transactions with ``customer_key``."""
  ts = transactions["timestamp"]
  win = transactions[(ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))]
  agg = win.groupby("customer_key").agg(spend=("amount", "sum"), orders=("order_id", "nunique"))
  out = agg.reindex(keys.astype(str)).fillna(0.0)
  out.index.name = "customer_key"
  return out.reset_index()


def compare(prev: PreviousRun, *, transactions: pd.DataFrame, reviews: pd.DataFrame,
            features_now: pd.DataFrame, scores: pd.DataFrame, as_of: dt.date,
            aspect_reviews: pd.DataFrame | None = None, topics: Sequence[str] | None = None
            ) -> SinceLast:
  """The last run's scores against what happened since, migration, opinion shifts and drift.

  Args:
    prev: :func:`find_previous`'s run.
    transactions: this run's cleaned orders with a ``customer_key`` column (this run's salt).
    reviews: this run's cleaned reviews.
    features_now: this run's customer features as of ``as_of``.
    scores: this run's forward scores (customer_key, value_tier, risk_band, rfm_segment, ...).
    as_of: the day after this run's data end.
    aspect_reviews: one row per review and aspect it mentions: timestamp, aspect, negative (bool).
    topics: this run's review topics (their keywords).

  Raises:
    NoComparison: the data are not the same shop's (orders up to the last run's end differ, or
      its customers are not found again), or nothing has happened since.
  """
  snap = prev.snapshot
  p_start = dt.date.fromisoformat(snap["as_of"])
  h = int(snap["horizon_days"])
  _check_same_shop(prev, transactions)
  end = min(p_start + dt.timedelta(days=h), as_of)
  elapsed = (end - p_start).days
  if elapsed <= 0:
    raise NoComparison(f"no day has elapsed since the last run's data end ({prev.data_end})")
  share, method = proration(snap, elapsed)
  ps = prev.scores.dropna(subset=["customer_key", "predicted_value"]).reset_index(drop=True)
  real = realised(transactions, ps["customer_key"], p_start, end)
  y = real["spend"].to_numpy(np.float64)
  pred = ps["predicted_value"].to_numpy(np.float64) * share
  lo = ps["value_lo"].to_numpy(np.float64) * share
  hi = ps["value_hi"].to_numpy(np.float64) * share
  bought = real["orders"].to_numpy() > 0
  deciles = vm.decile_table(y, pred)
  forecast = {
      "customers": int(len(ps)), "window_start": p_start.isoformat(),
      "window_end": (end - dt.timedelta(days=1)).isoformat(), "elapsed_days": elapsed,
      "horizon_days": h, "whole_horizon": elapsed >= h,
      "proration": {"share": share, "method": method},
      "spend": {"realised": float(y.sum()), "predicted": float(pred.sum()),
                "ratio": float(y.sum() / pred.sum()) if pred.sum() > 0 else None},
      "purchases": _purchases(snap, elapsed, int(real["orders"].sum())),
      "gini": _or_nan(vm.gini_normalised, y, pred),
      "decile_mape": vm.decile_mape(y, pred) if len(ps) >= 10 else None,
      "churn_auc": _auc(~bought, ps["churn_probability"].to_numpy(np.float64)),
      "interval_coverage": _or_nan(vm.interval_coverage, y, np.minimum(lo, hi),
                                   np.maximum(lo, hi)),
      "returned_share": float(bought.mean()) if len(bought) else None,
  }
  seg, cell, newly = migration(ps, scores)
  shift = opinion_shift(snap.get("aspects"), aspect_reviews, prev.data_end)
  drift = drift_table(snap, features_now, reviews, prev.data_end)
  text = {"then": snap.get("reviews"), "now": review_stats(reviews, as_of - dt.timedelta(days=1))}
  new_topics = _new_topics(snap.get("topics"), topics)
  metrics = {
      "previous": {"folder": prev.folder.name, "data_end": prev.data_end.isoformat(),
                   "cvlib_version": snap.get("cvlib_version")},
      "forecast": forecast,
      "deciles": deciles.to_dict(orient="records"),
      "migration": {"stayed_in_segment": _stayed(seg),
                    "new_high_value_high_risk": int(len(newly)),
                    "segments": seg.to_dict(orient="records")},
      "opinions": shift.to_dict(orient="records") if shift is not None else None,
      "new_topics": new_topics,
      "drift": {"psi_flag": PSI_FLAG, "features": drift.to_dict(orient="records"),
                "flagged": drift.loc[drift["flagged"], "feature"].tolist(), "reviews": text},
  }
  return SinceLast(metrics, deciles, seg, cell, newly, shift, drift)


def _check_same_shop(prev: PreviousRun, transactions: pd.DataFrame) -> None:
  snap = prev.snapshot
  upto = transactions[transactions["timestamp"] < pd.Timestamp(snap["as_of"])]
  then = int(snap["orders"]["count"])
  if then and abs(len(upto) - then) > ORDER_TOLERANCE * then:
    raise NoComparison(f"a different dataset under the same name: {then:,} orders up to "
                       f"{prev.data_end} in the last run, {len(upto):,} now")
  keys = set(upto["customer_key"].dropna().astype(str))
  prev_keys = prev.scores["customer_key"].dropna().astype(str)
  found = prev_keys.isin(keys).mean() if len(prev_keys) else 1.0
  if found < MIN_KEY_OVERLAP:
    raise NoComparison(f"only {found:.0%} of the last run's customers are found again: a "
                       "different dataset under the same name, or a changed pseudonymisation key "
                       "(CVLIB_SALT / report.salt)")


def _purchases(snap: dict, elapsed: int, realised_orders: int) -> dict:
  prof = snap.get("profile") or {}
  days, expected = prof.get("days"), prof.get("expected_purchases")
  predicted = None
  if days and expected and len(days) == len(expected):
    predicted = float(np.interp(min(elapsed, days[-1]), [0, *days], [0.0, *expected]))
  return {"realised": realised_orders, "predicted": predicted,
          "model": "BG/NBD" if predicted is not None else None}


def _or_nan(fn, *args) -> float:
  try:
    return fn(*args)
  except ValueError:  # undefined (nobody bought, too few rows, a missing interval bound)
    return math.nan


def _auc(label: np.ndarray, score: np.ndarray) -> float:
  """ROC AUC of ``score`` for ``label`` (Mann-Whitney, ties halved); NaN with one class only."""
  from scipy.stats import rankdata
  label = np.asarray(label, dtype=bool)
  n1, n0 = int(label.sum()), int((~label).sum())
  if not n1 or not n0:
    return math.nan
  ranks = rankdata(score)
  return float((ranks[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def migration(prev_scores: pd.DataFrame, scores: pd.DataFrame
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
  """Previous segment by current one (customers, current predicted value), the same for the
  value-by-risk cells, and the customers newly in high value + high risk (with their previous
  cell: "new customer" when the last run did not score them)."""
  prev = prev_scores.assign(cell=prev_scores["value_tier"] + " value / "
                            + prev_scores["risk_band"] + " risk")
  cur = scores.assign(cell=scores["value_tier"] + " value / " + scores["risk_band"] + " risk")
  both = cur.merge(prev[["customer_key", "rfm_segment", "cell"]], on="customer_key", how="left",
                   suffixes=("", "_prev"))
  both["rfm_segment_prev"] = both["rfm_segment_prev"].fillna("new customer")
  both["cell_prev"] = both["cell_prev"].fillna("new customer")

  def table(col: str) -> pd.DataFrame:
    return (both.groupby([f"{col}_prev", col], sort=True)
            .agg(customers=("customer_key", "size"), predicted_value=("predicted_value", "sum"))
            .reset_index().rename(columns={f"{col}_prev": "previous", col: "current"})
            .sort_values(["customers", "previous"], ascending=[False, True], ignore_index=True))

  top = "High value / High risk"
  newly = both[(both["cell"] == top) & (both["cell_prev"] != top)]
  newly = newly.sort_values("predicted_value", ascending=False)[["customer_key", "cell_prev"]]
  return (table("rfm_segment"), table("cell"),
          newly.rename(columns={"cell_prev": "previous cell"}).reset_index(drop=True))


def _stayed(seg: pd.DataFrame) -> float | None:
  old = seg[seg["previous"] != "new customer"]
  total = old["customers"].sum()
  return float(old.loc[old["previous"] == old["current"], "customers"].sum() / total) \
      if total else None


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """Wilson score interval of a proportion k / n (NaN, NaN for n = 0)."""
  if n <= 0:
    return math.nan, math.nan
  p = k / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return max(0.0, centre - half), min(1.0, centre + half)


def opinion_shift(then: dict[str, dict[str, int]] | None, aspect_reviews: pd.DataFrame | None,
                  data_end: dt.date) -> pd.DataFrame | None:
  """Share negative per aspect in the reviews since ``data_end`` against the last run's, with
  95% Wilson intervals; None without aspects on either side."""
  if not then or aspect_reviews is None or not len(aspect_reviews):
    return None
  new = aspect_reviews[aspect_reviews["timestamp"] >= pd.Timestamp(data_end) + pd.Timedelta(days=1)]
  rows = []
  for aspect in sorted(set(then) | set(new["aspect"])):
    t = then.get(aspect, {"reviews": 0, "negative": 0})
    sub = new[new["aspect"] == aspect]
    n_now, k_now = int(len(sub)), int(sub["negative"].sum())
    lo_then, hi_then = wilson(int(t["negative"]), int(t["reviews"]))
    lo_now, hi_now = wilson(k_now, n_now)
    share_then = t["negative"] / t["reviews"] if t["reviews"] else math.nan
    share_now = k_now / n_now if n_now else math.nan
    rows.append({"aspect": aspect, "reviews_then": int(t["reviews"]), "negative_then": share_then,
                 "then_lo": lo_then, "then_hi": hi_then, "reviews_now": n_now,
                 "negative_now": share_now, "now_lo": lo_now, "now_hi": hi_now,
                 "change": share_now - share_then,
                 "clear_change": bool(n_now and t["reviews"] and (lo_now > hi_then
                                                                  or hi_now < lo_then))})
  return pd.DataFrame(rows)


def aspect_counts(aspect_reviews: pd.DataFrame) -> dict[str, dict[str, int]]:
  """{aspect: {"reviews": n, "negative": k}}: the snapshot's side of :func:`opinion_shift`."""
  g = aspect_reviews.groupby("aspect")["negative"]
  return {str(a): {"reviews": int(n), "negative": int(k)}
          for a, n, k in zip(g.size().index, g.size(), g.sum())}


def drift_table(snap: dict, features_now: pd.DataFrame, reviews: pd.DataFrame,
                data_end: dt.date) -> pd.DataFrame:
  """PSI of each customer feature (all customers now against then) and of the text features
  (reviews since ``data_end`` against all of the last run's), flagged above :data:`PSI_FLAG`."""
  rows = []
  for name, ref in (snap.get("features") or {}).items():
    if name in features_now:
      rows.append({"feature": name, "kind": "customer", "psi": psi(ref, features_now[name])})
  new = reviews[reviews["timestamp"] >= pd.Timestamp(data_end) + pd.Timedelta(days=1)] \
      if "timestamp" in reviews else reviews.iloc[:0]
  now_text = _text_features(new)
  for name, ref in (snap.get("text_features") or {}).items():
    if name in now_text:
      rows.append({"feature": name, "kind": "text", "psi": psi(ref, now_text[name])})
  out = pd.DataFrame(rows, columns=["feature", "kind", "psi"])
  out["flagged"] = out["psi"].fillna(0) > PSI_FLAG
  return out.sort_values("psi", ascending=False, na_position="last", ignore_index=True)


def _new_topics(then: Sequence[str] | None, now: Sequence[str] | None) -> list[str] | None:
  """Topics now whose keywords share no word with any topic of the last run."""
  if then is None or now is None:
    return None
  words = lambda s: set(re.findall(r"\w+", str(s).lower()))  # noqa: E731
  old = [words(t) for t in then]
  return [t for t in now if not any(words(t) & o for o in old)]

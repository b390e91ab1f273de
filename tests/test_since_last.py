"""Since the last report (#22): the last run's forward scores against what customers then did,
migration, opinion shifts and drift, and every way a comparison is skipped. Small frames, no run."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest

from cvlib.insight import since_last as sl
from cvlib.value import metrics as vm

AS_OF_PREV = dt.date(2024, 1, 1)  # the last run's data end is 2023-12-31


def _prev_scores(n: int = 40) -> pd.DataFrame:
  """The last run's forward scores: customer i predicted to spend 10 * (i + 1)."""
  i = np.arange(n)
  pred = 10.0 * (i + 1)
  return pd.DataFrame({
      "customer_key": [f"c-{k:03d}" for k in i], "predicted_value": pred,
      "churn_probability": 1 - (i + 1) / (n + 1), "value_lo": pred * 0.5, "value_hi": pred * 1.5,
      "value_tier": np.where(i >= n - 8, "High", np.where(i >= n - 20, "Medium", "Low")),
      "risk_band": np.where(i < 10, "High", "Low"),
      "rfm_segment": np.where(i >= n // 2, "Champions", "At risk")})


def _transactions(n: int = 40, seed: int = 0) -> pd.DataFrame:
  """One order per customer before the last run's end; after it, customer i buys with
  probability (i + 1) / n, spending about 5 * (i + 1)."""
  rng = np.random.default_rng(seed)
  rows = [(f"c-{k:03d}", f"o{k}", pd.Timestamp("2023-06-01"), 20.0) for k in range(n)]
  for k in range(n):
    if rng.random() < (k + 1) / n:
      rows.append((f"c-{k:03d}", f"p{k}", pd.Timestamp("2024-01-15"),
                   float(5 * (k + 1) * rng.uniform(0.5, 1.5))))
  return pd.DataFrame(rows, columns=["customer_key", "order_id", "timestamp", "amount"]) \
      .assign(customer_id=lambda d: d["customer_key"])


def _features(n: int = 40, shift: float = 0.0, seed: int = 1) -> pd.DataFrame:
  rng = np.random.default_rng(seed)
  return pd.DataFrame({"customer_id": [f"c-{k:03d}" for k in range(n)],
                       "customer_key": [f"c-{k:03d}" for k in range(n)],
                       "frequency": rng.poisson(3, n) + shift,
                       "monetary": rng.gamma(2, 20, n) * (1 + shift)})


def _reviews(start: str, n: int = 30, words: int = 6) -> pd.DataFrame:
  ts = pd.date_range(start, periods=n, freq="D")
  return pd.DataFrame({"review_id": [f"r{start}{i}" for i in range(n)], "timestamp": ts,
                       "rating": np.tile([5.0, 4.0, 1.0], n)[:n],
                       "text": [" ".join(["good"] * words)] * n})


def _snapshot(horizon: int = 90, profile: dict | None = None, **kw) -> dict:
  tx = _transactions()
  return sl.make_snapshot(dataset="shop", cvlib_version="0.3.0",
                          transactions=tx[tx["timestamp"] < pd.Timestamp(AS_OF_PREV)],
                          reviews=_reviews("2023-11-01"), features_now=_features(),
                          as_of=AS_OF_PREV, horizon_days=horizon, profile=profile, **kw)


def _write_run(folder, snapshot: dict | None, scores: pd.DataFrame | None = None):
  folder.mkdir(parents=True)
  (folder / "run.json").write_text(json.dumps({"packages": {"cvlib": "0.2.0"}}))
  if snapshot is not None:
    (folder / sl.SNAPSHOT_FILE).write_text(json.dumps(snapshot))
  (_prev_scores() if scores is None else scores).to_parquet(folder / "scores.parquet")
  return folder


def _current_scores(n: int = 40) -> pd.DataFrame:
  s = _prev_scores(n)
  s["risk_band"] = np.where(np.arange(n) >= n - 3, "High", s["risk_band"])  # 3 top customers
  return s


def test_psi_is_zero_for_the_same_distribution_and_flags_a_shift():
  rng = np.random.default_rng(0)
  x = rng.normal(size=5000)
  ref = sl.feature_bins(x)
  assert len(ref["shares"]) == 10 and math.isclose(sum(ref["shares"]), 1.0)
  assert sl.psi(ref, rng.normal(size=5000)) < 0.02
  assert sl.psi(ref, rng.normal(loc=1.0, size=5000)) > sl.PSI_FLAG
  # by hand: two bins, 50/50 then 80/20: (0.8-0.5) ln(0.8/0.5) + (0.2-0.5) ln(0.2/0.5)
  two = {"edges": [0.0], "shares": [0.5, 0.5]}
  expected = 0.3 * math.log(1.6) + (-0.3) * math.log(0.4)
  assert math.isclose(sl.psi(two, [-1] * 8 + [1] * 2), expected)
  assert math.isnan(sl.psi(two, []))


def test_script_of_tells_writing_systems_apart():
  assert sl.script_of("great fit, fast delivery") == "Latin"
  assert sl.script_of("质量很好，物流很快") == "CJK"
  assert sl.script_of("очень хорошо") == "Cyrillic"
  assert sl.script_of("   ") == "none" and sl.script_of(None) == "none"


def test_no_earlier_run_an_older_version_a_damaged_folder_and_another_dataset_are_reasons(tmp_path):
  end = dt.date(2024, 3, 31)
  with pytest.raises(sl.FirstReport, match="the first report of 'shop' in this reports folder"):
    sl.find_previous(tmp_path, "shop", end)
  _write_run(tmp_path / "shop", None)  # written before snapshots existed
  with pytest.raises(sl.NoComparison, match=r"no snapshot.json \(written by cvlib 0.2.0, before "
                     "monthly comparisons\\)"):
    sl.find_previous(tmp_path, "shop", end)
  (tmp_path / "shop" / sl.SNAPSHOT_FILE).write_text('{"dataset": "shop", "as_of": ')
  with pytest.raises(sl.NoComparison, match="snapshot.json is damaged"):
    sl.find_previous(tmp_path, "shop", end)
  (tmp_path / "shop" / sl.SNAPSHOT_FILE).write_text(json.dumps({**_snapshot(), "dataset": "x"}))
  with pytest.raises(sl.NoComparison, match="is of dataset 'x', not 'shop'"):
    sl.find_previous(tmp_path, "shop", end)
  (tmp_path / "shop" / sl.SNAPSHOT_FILE).write_text(json.dumps(_snapshot()))
  (tmp_path / "shop" / "scores.parquet").write_bytes(b"PAR1 truncated")
  with pytest.raises(sl.NoComparison, match="scores.parquet cannot be read"):
    sl.find_previous(tmp_path, "shop", end)
  with pytest.raises(sl.NoComparison, match=r"data end \(2023-12-31\) is not before this run's"):
    _prev_scores().to_parquet(tmp_path / "shop" / "scores.parquet")
    sl.find_previous(tmp_path, "shop", dt.date(2023, 12, 31))


def test_find_previous_takes_the_latest_earlier_run_from_the_folder_or_its_history(tmp_path):
  older = {**_snapshot(), "as_of": "2023-10-01", "data_end": "2023-09-30"}
  _write_run(tmp_path / "history" / "shop" / "2023-10-02T100000+0000", older)
  _write_run(tmp_path / "history" / "shop" / "2024-01-02T100000+0000", _snapshot())
  same = {**_snapshot(), "as_of": "2024-04-01", "data_end": "2024-03-31"}  # a rerun: not earlier
  _write_run(tmp_path / "shop", same)
  prev = sl.find_previous(tmp_path, "shop", dt.date(2024, 3, 31))
  assert prev.folder.name == "2024-01-02T100000+0000" and prev.data_end == dt.date(2023, 12, 31)


def _compare(prev: sl.PreviousRun, as_of=dt.date(2024, 4, 1), **kw) -> sl.SinceLast:
  args = dict(transactions=_transactions(), reviews=pd.concat([_reviews("2023-11-01"),
                                                               _reviews("2024-01-05", words=30)]),
              features_now=_features(shift=2.0), scores=_current_scores(), as_of=as_of)
  return sl.compare(prev, **{**args, **kw})


def test_a_whole_horizon_is_compared_without_proration_and_agrees_with_a_recomputation(tmp_path):
  prev = sl.read_previous(_write_run(tmp_path / "shop", _snapshot(horizon=60)), "shop")
  out = _compare(prev)
  f = out.metrics["forecast"]
  assert f["whole_horizon"] and f["elapsed_days"] == 60 and f["proration"]["share"] == 1.0
  assert (f["window_start"], f["window_end"]) == ("2024-01-01", "2024-02-29")
  # independent recomputation from the raw frames
  tx = _transactions()
  win = tx[(tx["timestamp"] >= "2024-01-01") & (tx["timestamp"] < "2024-03-01")]
  y = _prev_scores()["customer_key"].map(win.groupby("customer_key")["amount"].sum()).fillna(0)
  pred = _prev_scores()["predicted_value"]
  assert math.isclose(f["spend"]["realised"], y.sum())
  assert math.isclose(f["gini"], vm.gini_normalised(y, pred))
  assert math.isclose(f["decile_mape"], vm.decile_mape(y, pred))
  assert len(out.deciles) == 10
  lo, hi = _prev_scores()["value_lo"], _prev_scores()["value_hi"]
  assert math.isclose(f["interval_coverage"], ((lo <= y) & (y <= hi)).mean())
  from sklearn.metrics import roc_auc_score
  assert math.isclose(f["churn_auc"], roc_auc_score(y == 0, _prev_scores()["churn_probability"]))
  assert f["purchases"]["realised"] == len(win)


def test_a_partial_horizon_is_prorated_by_the_bgnbd_profile_or_else_linearly(tmp_path):
  profile = {"days": [30, 60, 120], "expected_purchases": [50.0, 80.0, 100.0], "method": "BG/NBD"}
  prev = sl.read_previous(_write_run(tmp_path / "a", _snapshot(120, profile)), "shop")
  f = _compare(prev, as_of=dt.date(2024, 2, 15)).metrics["forecast"]  # 45 of 120 days
  assert f["elapsed_days"] == 45 and not f["whole_horizon"]
  assert math.isclose(f["proration"]["share"], 0.65) and "BG/NBD" in f["proration"]["method"]
  assert math.isclose(f["purchases"]["predicted"], 65.0)
  assert math.isclose(f["spend"]["predicted"], 0.65 * _prev_scores()["predicted_value"].sum())
  prev = sl.read_previous(_write_run(tmp_path / "b", _snapshot(120)), "shop")
  f2 = _compare(prev, as_of=dt.date(2024, 2, 15)).metrics["forecast"]
  assert math.isclose(f2["proration"]["share"], 45 / 120) and "linear" in f2["proration"]["method"]
  assert math.isclose(f2["gini"], f["gini"])  # ranking: proration does not change it


def test_another_shop_under_the_same_name_or_a_new_salt_is_not_compared(tmp_path):
  prev = sl.read_previous(_write_run(tmp_path / "shop", _snapshot()), "shop")
  fewer = _transactions().iloc[5:]
  with pytest.raises(sl.NoComparison, match="a different dataset under the same name: 40 orders "
                     "up to 2023-12-31 in the last run, 35 now"):
    _compare(prev, transactions=fewer)
  salted = _transactions().assign(customer_key=lambda d: "x" + d["customer_key"])
  with pytest.raises(sl.NoComparison, match="0% of the last run's customers are found again"):
    _compare(prev, transactions=salted)


def test_migration_lists_who_newly_entered_high_value_and_high_risk(tmp_path):
  prev = sl.read_previous(_write_run(tmp_path / "shop", _snapshot()), "shop")
  out = _compare(prev)
  assert out.new_high_risk["customer_key"].tolist() == ["c-039", "c-038", "c-037"]
  assert set(out.new_high_risk["previous cell"]) == {"High value / Low risk"}
  cell = out.cell_migration.set_index(["previous", "current"])["customers"]
  assert cell[("High value / Low risk", "High value / High risk")] == 3
  assert out.segment_migration["customers"].sum() == 40
  assert out.metrics["migration"]["stayed_in_segment"] == 1.0


def test_drift_flags_shifted_features_and_longer_reviews(tmp_path):
  prev = sl.read_previous(_write_run(tmp_path / "shop", _snapshot()), "shop")
  drift = _compare(prev).drift.set_index("feature")
  assert drift.loc["frequency", "flagged"] and drift.loc["review length (words)", "flagged"]
  assert not drift.loc["review rating", "flagged"]
  assert set(drift["kind"]) == {"customer", "text"}


def test_opinion_shift_compares_shares_negative_with_intervals():
  then = {"delivery": {"reviews": 200, "negative": 20}, "price": {"reviews": 100, "negative": 10}}
  rows = ([("2024-01-10", "delivery", True)] * 30 + [("2024-01-10", "delivery", False)] * 30
          + [("2023-12-10", "price", True)] * 5 + [("2024-01-10", "size", False)] * 4)
  now = pd.DataFrame(rows, columns=["timestamp", "aspect", "negative"]).assign(
      timestamp=lambda d: pd.to_datetime(d["timestamp"]))
  shift = sl.opinion_shift(then, now, dt.date(2023, 12, 31)).set_index("aspect")
  assert shift.loc["delivery", "negative_now"] == 0.5 and shift.loc["delivery", "clear_change"]
  assert shift.loc["price", "reviews_now"] == 0  # its reviews predate the last run's end
  assert shift.loc["size", "reviews_then"] == 0 and not shift.loc["size", "clear_change"]
  lo, hi = sl.wilson(30, 60)
  assert shift.loc["delivery", "now_lo"] == lo and lo < 0.5 < hi
  assert sl.aspect_counts(now) == {"delivery": {"reviews": 60, "negative": 30},
                                   "price": {"reviews": 5, "negative": 5},
                                   "size": {"reviews": 4, "negative": 0}}


def test_nobody_buying_since_leaves_undefined_measures_empty_not_a_failure(tmp_path):
  prev = sl.read_previous(_write_run(tmp_path / "shop", _snapshot()), "shop")
  tx = _transactions()
  quiet = tx[tx["timestamp"] < pd.Timestamp(AS_OF_PREV)]
  f = _compare(prev, transactions=quiet).metrics["forecast"]
  assert f["spend"]["realised"] == 0 and f["returned_share"] == 0
  assert math.isnan(f["gini"]) and math.isnan(f["churn_auc"])
  assert f["interval_coverage"] == 0.0  # every lower bound is above 0

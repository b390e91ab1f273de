"""Monthly runs on real data (#22, slow): Online Retail run with ``data.until`` 2011-06-30, then on
the full file. The second report's "since the last report" section scores the first run's forward
predictions on the orders of July to December 2011; the test recomputes them independently (its
own keyed hash, Gini and decile MAPE, from the first run's scores.parquet and the cleaned orders)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# The first run's horizon is chosen to end with the file: 2011-07-01 + 162 days = 2011-12-10, so
# its whole horizon has elapsed by the full file's last day (2011-12-09) and nothing is prorated.
FIRST = ["data.until=2011-06-30", "split.calibration_end=null", "split.horizon_days=162"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
  root = os.environ.get("CVLIB_DATA_DIR")
  if not root or not (Path(root) / "online_retail" / "online_retail.csv.gz").is_file():
    pytest.skip("CVLIB_DATA_DIR does not hold online_retail/online_retail.csv.gz")
  import cvlib
  out = tmp_path_factory.mktemp("monthly")
  params = REPO / "params" / "online_retail.yaml"
  cvlib.run(params, out=out, overrides=FIRST, log=lambda line: None)
  cvlib.run(params, out=out, log=lambda line: None)
  keep = os.environ.get("CVLIB_MONTHLY_EVIDENCE")  # where to copy the two runs' metrics
  if keep:
    Path(keep).mkdir(parents=True, exist_ok=True)
    first = next((out / "history" / "online_retail").iterdir())
    for name, folder in (("first", first), ("second", out / "online_retail")):
      (Path(keep) / f"{name}_metrics.json").write_text((folder / "metrics.json").read_text())
  return out


def _key(customer_id: str, salt: str) -> str:
  return "c-" + hmac.new(salt.encode(), customer_id.encode(), hashlib.sha256).hexdigest()[:12]


def _gini(actual: np.ndarray, pred: np.ndarray) -> float:
  """Normalised Gini: the area between the gain curve and the diagonal, over the perfect one's."""
  def area(order_by: np.ndarray) -> float:
    order = np.lexsort((np.arange(len(order_by)), -order_by))
    gain = np.cumsum(actual[order]) / actual.sum()
    return float(gain.mean() - (len(actual) + 1) / (2 * len(actual)))
  return area(pred) / area(actual)


def _decile_mape(actual: np.ndarray, pred: np.ndarray) -> float:
  """docs/contract.md's definition: every decile of predicted value counts, weighted by its
  customers; a decile whose actual mean is 0 scores its error relative to the overall mean."""
  rank = pd.Series(pred).rank(method="average").to_numpy() - 1
  decile = np.minimum(np.floor(rank * 10 / len(pred)), 9)
  df = pd.DataFrame({"d": decile, "a": actual, "p": pred}).groupby("d").agg(
      a=("a", "mean"), p=("p", "mean"), n=("a", "size"))
  scale = np.where(df["a"] > 0, df["a"], actual.mean())
  return float((np.abs(df["p"] - df["a"]) / scale * df["n"]).sum() / df["n"].sum())


def test_the_second_report_scores_the_first_runs_predictions_on_july_to_december(two_runs):
  metrics = json.loads((two_runs / "online_retail" / "metrics.json").read_text())
  since = metrics["since_last"]
  assert since is not None, metrics.get("skipped")
  f = since["forecast"]
  assert since["previous"]["data_end"] == "2011-06-30"
  assert (f["window_start"], f["window_end"]) == ("2011-07-01", "2011-12-09")
  assert f["whole_horizon"] and f["proration"]["share"] == 1.0
  first = next((two_runs / "history" / "online_retail").iterdir())
  prev = pd.read_parquet(first / "scores.parquet")
  orders = pd.read_parquet(two_runs / "online_retail" / "artifacts" / "transactions.parquet")
  window = orders[(orders["timestamp"] >= "2011-07-01") & (orders["timestamp"] < "2011-12-10")]
  salt = os.environ.get("CVLIB_SALT") or "cvlib-default-salt"
  spend = window.groupby(window["customer_id"].astype(str).map(lambda c: _key(c, salt)))["amount"] \
      .sum()
  actual = prev["customer_key"].map(spend).fillna(0.0).to_numpy(np.float64)
  pred = prev["predicted_value"].to_numpy(np.float64)
  assert f["customers"] == len(prev)
  assert f["spend"]["realised"] == pytest.approx(actual.sum(), rel=1e-9)
  assert f["gini"] == pytest.approx(_gini(actual, pred), abs=1e-6)
  assert f["decile_mape"] == pytest.approx(_decile_mape(actual, pred), abs=1e-6)
  assert len(since["deciles"]) == 10
  html = (two_runs / "online_retail" / "index.html").read_text()
  assert "Since the last report (2011-06-30)" in html


def test_the_reports_index_shows_both_runs(two_runs):
  html = (two_runs / "index.html").read_text()
  assert "<svg" in html and "2011-06-30" in html and "2011-12-09" in html

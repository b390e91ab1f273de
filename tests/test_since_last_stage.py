"""The "since the last report" section in a run (#22): the tiny run's own snapshot and skip
reason, and the segment stage's steps on the tiny run's artifacts against an earlier run placed in
a reports folder (in process: no second run). The reports index's trend charts."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pandas as pd

from cvlib import config
from cvlib.insight import since_last as sl
from cvlib.report import html
from cvlib.stages import notes

TINY = config.REPO / "params" / "tiny.yaml"


def test_a_first_run_leaves_a_snapshot_and_says_why_there_is_no_comparison(tiny_run):
  metrics = json.loads((tiny_run / "metrics.json").read_text())
  snap = json.loads((tiny_run / sl.SNAPSHOT_FILE).read_text())
  assert snap["dataset"] == "tiny" and snap["data_end"] == metrics["split"]["data_end"]
  assert snap["horizon_days"] == 180 and snap["orders"]["count"] == metrics["counts"]["transactions"]
  assert snap["profile"]["days"][-1] == 180  # BG/NBD's time profile for the next run's proration
  assert metrics["since_last"] is None
  # a first report is no part that failed: the section says so, "Not in this report" does not
  assert metrics["notes"]["since_last"].startswith("This is the first report of 'tiny'")
  assert "since the last report" not in (metrics.get("skipped") or {})
  page = (tiny_run / "index.html").read_text()
  assert '<div class="na">This is the first report of &#39;tiny&#39;' in page
  assert "since the last report:" not in page


def _earlier_run(tiny_run, reports, until: dt.date):
  """An earlier run of tiny in ``reports``: the tiny run's scores with every customer in the Low
  value tier (so everyone now in High value + High risk is new there), and a snapshot of the
  tiny shop cut at ``until``."""
  folder = reports / "tiny"
  folder.mkdir(parents=True)
  scores = pd.read_parquet(tiny_run / "scores.parquet").assign(value_tier="Low")
  scores.to_parquet(folder / "scores.parquet")
  art = tiny_run / "artifacts"
  tx = pd.read_parquet(art / "transactions.parquet")
  reviews = pd.read_parquet(art / "reviews.parquet")
  end = pd.Timestamp(until) + pd.Timedelta(days=1)
  snap = sl.make_snapshot(dataset="tiny", cvlib_version="test", transactions=tx[tx["timestamp"] < end],
                          reviews=reviews[reviews["timestamp"] < end],
                          features_now=pd.read_parquet(art / "features_now.parquet"),
                          as_of=end.date(), horizon_days=180)
  (folder / sl.SNAPSHOT_FILE).write_text(json.dumps(snap))
  return folder


def _stage_workspace(tiny_run, reports):
  from cvlib.report.workspace import Workspace
  from cvlib.stages import preprocess
  run_dir = reports / ".tiny.tmp-1"  # where the runner runs the new report
  shutil.copytree(tiny_run / "artifacts", run_dir / "artifacts")
  ws = Workspace(run_dir, "segment")
  tables, prep = preprocess.load_prepared(ws)
  return ws, tables, prep


def test_the_segment_stage_compares_with_the_earlier_run_and_renders_the_section(tiny_run,
                                                                                 tmp_path):
  from cvlib.stages import segment
  params = config.load_params(TINY)
  _earlier_run(tiny_run, tmp_path, dt.date(2024, 3, 31))
  ws, tables, prep = _stage_workspace(tiny_run, tmp_path)
  scores = pd.read_parquet(tiny_run / "scores.parquet")
  top = scores.nlargest(5, "predicted_value").index  # at high risk now: an action list to show
  scores.loc[top, ["value_tier", "risk_band"]] = "High"
  notes.take_skipped()
  since = segment.make_since_last(params, ws, tables, prep, scores, pd.DataFrame(), None, None)
  assert notes.take_skipped() == {}
  f = since.metrics["forecast"]
  assert since.metrics["previous"]["data_end"] == "2024-03-31"
  assert f["window_start"] == "2024-04-01" and not f["whole_horizon"]
  assert f["proration"]["method"].startswith("linear in time")  # that snapshot has no profile
  assert 0 <= f["gini"] <= 1 and 0 <= f["interval_coverage"] <= 1
  newly = since.new_high_risk
  high = scores[(scores["value_tier"] == "High") & (scores["risk_band"] == "High")]
  assert set(newly["customer_key"]) == set(high["customer_key"]) and len(newly)
  segment.save_since_last(ws, since)
  segment.report_since_last(ws, since, scores)
  metrics = json.loads((ws.root / "metrics" / "segment.json").read_text())
  assert metrics["since_last"]["forecast"]["customers"] == len(scores)
  index = html.render_index(ws.root, metrics, {})
  page = index.read_text()
  assert "Since the last report (2024-03-31)" in page
  details = ws.root / "details" / "segment-since-last-new-high-value-high-risk.html"
  listed = details.read_text()
  assert all(k in listed for k in high["customer_key"].head(5))
  raw = tables.transactions["customer_id"].astype(str).unique()
  assert not any(f">{r}<" in listed or f">{r}<" in page for r in raw)  # pseudonymised only


def test_a_damaged_earlier_run_is_skipped_with_a_reason_not_a_failure(tiny_run, tmp_path):
  from cvlib.stages import segment
  params = config.load_params(TINY)
  folder = _earlier_run(tiny_run, tmp_path, dt.date(2024, 3, 31))
  (folder / "scores.parquet").write_bytes(b"\x00" * 10)
  ws, tables, prep = _stage_workspace(tiny_run, tmp_path)
  scores = pd.read_parquet(tiny_run / "scores.parquet")
  notes.take_skipped()
  assert segment.make_since_last(params, ws, tables, prep, scores, pd.DataFrame(), None,
                                 None) is None
  assert notes.take_skipped() == {
      "since the last report": "tiny/scores.parquet cannot be read (ArrowInvalid)"}


def _metrics(end: str, gini: float, customers: int) -> str:
  return json.dumps({"dataset": "shop", "counts": {"customers": customers},
                     "split": {"data_end": end},
                     "clv": {"best": "ziln", "models": {"ziln": {"gini": gini}}}})


def test_the_reports_index_draws_each_datasets_numbers_over_its_runs(tmp_path):
  for sub, end, gini in (("history/shop/2024-02-01T000000", "2024-01-31", 0.5),
                         ("history/shop/2024-03-01T000000", "2024-02-29", 0.6),
                         ("history/shop/broken", None, None), ("shop", "2024-03-31", 0.55)):
    (tmp_path / sub).mkdir(parents=True)
    (tmp_path / sub / "metrics.json").write_text(_metrics(end, gini, 100) if end else "{")
  runs = html.dataset_history(tmp_path, tmp_path / "shop")
  assert [r["data_end"] for r in runs] == ["2024-01-31", "2024-02-29", "2024-03-31"]
  assert [r["back-test Gini"] for r in runs] == [0.5, 0.6, 0.55]
  page = html.render_reports_index(tmp_path).read_text()
  assert page.count("<svg") == 2 and "back-test Gini: 0.55" in page  # Gini and customers
  svg = str(html.trend_svg([("<b>x</b>", 1.0), ("y", None), ("z", 2.0)]))
  assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;: 1" in svg and svg.count("<circle") == 2
  assert str(html.trend_svg([("a", None)])) == ""

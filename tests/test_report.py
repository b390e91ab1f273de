"""Tests for cvlib.report.workspace and cvlib.report.html: report parts, metrics JSON and escaped HTML."""

import base64
import datetime as dt
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cvlib.report import html as report, plots, workspace  # noqa: E402
from cvlib.report.workspace import StageMissingError, Workspace  # noqa: E402

SCRIPT = "<script>alert(1)</script>"
SCRIPT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
IMG = "<img src=x onerror=alert(1)>"
IMG_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


# --- workspace ----------------------------------------------------------------------------------

def test_bad_stage(tmp_path):
  with pytest.raises(ValueError, match="stage must be one of preprocess, finetune, evaluate, "
                     "segment, got 'train'"):
    Workspace(tmp_path, "train")


def test_folders_and_empty_parts(tmp_path):
  ws = Workspace(tmp_path / "run", "preprocess")
  for sub in ("artifacts", "metrics", "report", "models"):
    assert (ws.root / sub).is_dir()
  assert json.loads((ws.root / "report" / "preprocess.json").read_text()) == {
      "stage": "preprocess", "parts": []}


def test_frames_arrays_json_round_trip(tmp_path):
  ws = Workspace(tmp_path, "preprocess")
  df = pd.DataFrame({"customer_id": pd.array(["a", None], dtype="string"), "x": [1.5, np.nan],
                     "t": pd.to_datetime(["2024-01-01", "2024-02-01"]).astype("datetime64[us]")})
  ws.save_frame("features", df)
  assert ws.has("features") and not ws.has("other")
  pd.testing.assert_frame_equal(Workspace(tmp_path, "finetune").load_frame("features"), df)
  arr = np.arange(12, dtype=np.float32).reshape(3, 4)
  ws.save_array("emb", arr)
  np.testing.assert_array_equal(ws.load_array("emb"), arr)
  assert ws.load_array("emb").dtype == np.float32
  ws.save_json("split", {"cutoff": dt.date(2024, 1, 1), "n": np.int64(3), "r": np.float32(0.5),
                         "bad": float("nan"), "ok": np.bool_(True), "v": np.array([1, 2])})
  assert ws.load_json("split") == {"cutoff": "2024-01-01", "n": 3, "r": 0.5, "bad": None,
                                   "ok": True, "v": [1, 2]}


@pytest.mark.parametrize("loader, name", [("load_frame", "features.parquet"),
                                          ("load_array", "emb.npy"), ("load_json", "split.json")])
def test_missing_artifact(tmp_path, loader, name):
  ws = Workspace(tmp_path, "evaluate")
  with pytest.raises(StageMissingError, match=f"{name} not found: run the stage that writes"):
    getattr(ws, loader)(name.split(".")[0])


def test_metrics_nan_becomes_null(tmp_path):
  ws = Workspace(tmp_path, "evaluate")
  p = ws.save_metrics({"clv": {"gini": float("nan"), "mae": np.float64(np.inf),
                               "spearman": np.float32(0.25), "n_test": np.int64(90)},
                       "churn": None, "list": [1.0, float("-inf")]})
  text = p.read_text()
  assert "NaN" not in text and "Infinity" not in text
  data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
  assert data == {"clv": {"gini": None, "mae": None, "spearman": 0.25, "n_test": 90},
                  "churn": None, "list": [1.0, None]}
  assert p == tmp_path / "metrics" / "evaluate.json"


def test_to_jsonable():
  assert workspace.to_jsonable({1: (np.float64(1.5), math.nan), "d": pd.Timestamp("2024-01-02")}) == {
      "1": [1.5, None], "d": "2024-01-02T00:00:00"}


def test_numbers_are_written_without_exponents():
  assert [workspace.number(x) for x in (16712.4, 421.3, 44.84, 0.02771, 0.0)] == [
      "16,712", "421", "44.8", "0.0277", "0"]
  assert workspace.number(-1.5e6) == "-1,500,000"
  assert workspace.number(0.5, "{:.1%}") == "50.0%"
  assert [workspace.percent(x) for x in (0, 0.0023, 0.01, 0.364, 0.99, 0.9984, 1)] == [
      "0%", "0.2%", "1%", "36%", "99%", "99.8%", "100%"]


def test_parts_saved_reloaded_and_reset(tmp_path):
  ws = Workspace(tmp_path, "preprocess")
  ws.add_headline("Customers", "300", note="after cleaning")
  ws.add_text("data", "Some text.")
  ws.add_warning("Default salt.")
  df = pd.DataFrame({"name": ["a", "b", "c"], "x": [1234.5678, np.nan, 0.001],
                     "day": [pd.Timestamp("2024-01-02")] * 3})
  ws.add_table("data", df, "A table", max_rows=2)
  fig, ax = plt.subplots()
  ax.plot([0, 1], [1, 0])
  ws.add_figure("data", fig, "A figure")
  assert not plt.fignum_exists(fig.number)  # closed after embedding
  parts = report.load_parts(tmp_path)
  assert [p["label"] for p in parts["headline"]] == ["Customers"]
  assert [p["text"] for p in parts["warning"]] == ["Default salt."]
  kinds = [p["kind"] for p in parts["data"]]
  assert kinds == ["text", "table", "figure"]
  table = parts["data"][1]
  assert table["columns"] == ["name", "x", "day"]
  assert table["rows"] == [["a", "1,235", "2024-01-02"], ["b", "", "2024-01-02"]]
  assert table["truncated"] is True and table["total_rows"] == 3
  png = base64.b64decode(parts["data"][2]["png"])
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  # a re-run stage starts from an empty list; other stages' parts stay
  Workspace(tmp_path, "finetune").add_text("sentiment", "kept")
  Workspace(tmp_path, "preprocess")
  parts = report.load_parts(tmp_path)
  assert parts["headline"] == [] and "data" not in parts
  assert [p["text"] for p in parts["sentiment"]] == ["kept"]


def test_unknown_section(tmp_path):
  ws = Workspace(tmp_path, "segment")
  with pytest.raises(ValueError, match="section must be one of since_last, data, sentiment.*got 'misc'"):
    ws.add_text("misc", "x")



def test_long_text_cells_may_break_anywhere_and_short_values_stay_whole(tmp_path):
  """A number or a word is never split over lines (a squeezed "0.602" read as "0.60" / "2"), a
  long text (a review, a pasted URL) may break anywhere, so it cannot push the table wide."""
  run = tmp_path / "shop"
  ws = Workspace(run, "preprocess")
  long = "x" * 300
  ws.add_table("data", pd.DataFrame({"model": ["a"], "Gini": ["0.602"], "review": [long]}),
               caption="t")
  html = report.render_index(run, {"dataset": "shop"}, {"params": {}}).read_text()
  assert "<td>0.602</td>" in html and f'<td class="t">{long}</td>' in html
  assert "td{max-width:480px;overflow-wrap:break-word} td.t{overflow-wrap:anywhere}" in html

# --- render_index -------------------------------------------------------------------------------

@pytest.fixture
def hostile_run(tmp_path):
  run = tmp_path / "demo"
  ws = Workspace(run, "preprocess")
  ws.add_headline(SCRIPT, IMG, note=SCRIPT)
  ws.add_warning(IMG)
  ws.add_text("data", f"Customer wrote: {SCRIPT} and {IMG}")
  df = pd.DataFrame({SCRIPT: [IMG, "fine"], "rating": [1.0, 5.0]})
  ws.add_table("data", df, caption=f"Reviews {SCRIPT}")
  fig, ax = plt.subplots()
  ax.bar([0], [1])
  ws.add_figure("value", fig, caption=f"caption {IMG} \"quoted\"")
  (run / "01_preprocess.html").write_text("<html></html>")
  metrics = {"dataset": "demo", "sentiment": None,
             "notes": {"sentiment": f"no text {SCRIPT}"},
             "split": {"cutoff": "2024-01-01", "horizon_days": 180, "data_end": "2024-06-29"}}
  run_info = {"params": {"report": {"title": f"Shop {SCRIPT}"}}, "ended": "2024-07-01T10:00:00",
              "started": "2024-07-01T09:55:00", "cvlib_version": "0.1.0",
              "params_file": f"params/{IMG}.yaml", "git_commit": "abc123"}
  return run, metrics, run_info


def test_render_index_escapes_hostile_text(hostile_run):
  run, metrics, run_info = hostile_run
  out = report.render_index(run, metrics, run_info)
  assert out == run / "index.html"
  html = out.read_text(encoding="utf-8")
  assert SCRIPT not in html and "<script" not in html
  assert IMG not in html and "onerror=alert(1)>" not in html
  assert "<img src=x" not in html
  # every place shows the text, escaped: headline label and note, warning, paragraph, table
  # header and cell, table and figure captions, the figure's alt text, title, footer, reason
  assert html.count(SCRIPT_ESCAPED) >= 7
  assert html.count(IMG_ESCAPED) >= 6
  assert f"<th>{SCRIPT_ESCAPED}</th>" in html
  assert f"<td>{IMG_ESCAPED}</td>" in html
  assert f"<title>Shop {SCRIPT_ESCAPED}</title>" in html
  assert 'alt="caption &lt;img src=x onerror=alert(1)&gt; &#34;quoted&#34;"' in html
  assert f"Not part of this run: no text {SCRIPT_ESCAPED}" in html


def test_render_index_content(hostile_run):
  run, metrics, run_info = hostile_run
  html = report.render_index(run, metrics, run_info).read_text(encoding="utf-8")
  assert "data up to 2024-06-29" in html and "next 180 days" in html
  assert "purchases before 2024-01-01" in html
  assert '<a href="01_preprocess.html">1. preprocess</a>' in html
  assert "02_finetune.html" not in html  # only notebooks that exist are linked
  assert html.count("data:image/png;base64,") == 1
  assert "commit abc123" in html
  # sections without parts say so; the value section has its figure
  assert html.count("Not part of this run") == len(workspace.SECTIONS) - 2


def test_linked_cells_and_detail_pages(tmp_path):
  run = tmp_path / "demo"
  ws = Workspace(run, "segment")
  members = pd.DataFrame({"customer_key": ["c-1", "c-2", "c-3"], "review": [SCRIPT, IMG, "ok"]})
  href = ws.add_page(f"At risk {SCRIPT}", f"Customers: At risk {SCRIPT}", members,
                     intro=f"Sorted by value {IMG}", section="segments", max_rows=2)
  assert href == "details/segment-at-risk-script-alert-1-script.html"
  # the same name twice gets its own file
  assert ws.add_page(f"At risk {SCRIPT}", "again", members).endswith("-2.html")
  table = pd.DataFrame({"segment": [f"At risk {SCRIPT}", "Lost"], "customers": [3, 0]})
  ws.add_table("segments", table, "Segments", links={"segment": [href, None]})
  with pytest.raises(ValueError, match="not a page of the run folder"):
    ws.add_table("segments", table, "x", links={"segment": ["javascript:alert(1)", None]})
  with pytest.raises(ValueError, match="not a page of the run folder"):
    ws.add_table("segments", table, "x", links={"segment": ["https://evil.example/x.html", None]})
  with pytest.raises(ValueError, match="one href per row"):
    ws.add_table("segments", table, "x", links={"segment": [href]})
  with pytest.raises(ValueError, match="not a column"):
    ws.add_table("segments", table, "x", links={"nope": [href, None]})
  stale = run / "details" / "old.html"
  stale.parent.mkdir(parents=True)
  stale.write_text("stale")
  html = report.render_index(run, {"dataset": "demo"}, {}).read_text(encoding="utf-8")
  assert f'<td><a href="{href}">At risk {SCRIPT_ESCAPED}</a></td>' in html
  assert "<td>Lost</td>" in html
  assert not stale.exists()  # pages of an earlier render are replaced
  page = (run / href).read_text(encoding="utf-8")
  assert "<script" not in page and IMG not in page
  assert f"<h1>Customers: At risk {SCRIPT_ESCAPED}</h1>" in page
  assert f"<td>{SCRIPT_ESCAPED}</td>" in page and f"<td>{IMG_ESCAPED}</td>" in page
  assert "<td>ok</td>" not in page and "First 2 of 3 rows." in page
  assert 'href="../index.html#segments"' in page
  assert sorted(p.name for p in (run / "details").iterdir()) == [
      "segment-at-risk-script-alert-1-script-2.html", "segment-at-risk-script-alert-1-script.html"]


def test_render_index_default_title_and_reason(tmp_path):
  run = tmp_path / "shop"
  Workspace(run, "preprocess")
  html = report.render_index(run, {"dataset": "shop", "sentiment": None}, {}).read_text()
  assert "<title>shop: customer value report</title>" in html
  assert "this dataset has no labelled review text." in html
  assert "commit unknown" in html


# --- render_reports_index -----------------------------------------------------------------------

def _write_run(out, name, metrics, run=None):
  d = out / name
  d.mkdir(parents=True)
  (d / "metrics.json").write_text(json.dumps(metrics))
  if run is not None:
    (d / "run.json").write_text(json.dumps(run))


def test_render_reports_index(tmp_path):
  _write_run(tmp_path, "demo", {
      "dataset": "demo", "counts": {"customers": 3000, "transactions": 12345, "reviews": 4000},
      "clv": {"best": "gbt", "scoring_model": "ziln_text",
              "models": {"ziln_text": {"gini": 0.61234}, "gbt": {"gini": 0.7}}},
      "sentiment": {"macro_f1": 0.9}}, {"ended": "2024-07-01T10:00:00"})
  _write_run(tmp_path, "retail", {
      "dataset": SCRIPT, "counts": None, "clv": {"best": "bgnbd", "models": {"bgnbd": {"gini": None}}},
      "sentiment": None})
  (tmp_path / "notes").mkdir()  # a folder without metrics.json is not a report
  out = report.render_reports_index(tmp_path)
  assert out == tmp_path / "index.html"
  html = out.read_text(encoding="utf-8")
  assert '<a href="demo/index.html">demo</a>' in html
  assert "<td>3,000</td>" in html and "<td>12,345</td>" in html
  assert "ziln_text (0.612)" in html and "<td>0.900</td>" in html
  assert "2024-07-01T10:00:00" in html
  assert f'<a href="retail/index.html">{SCRIPT_ESCAPED}</a>' in html and SCRIPT not in html
  assert html.count("<td>n/a</td>") == 2  # no Gini, no sentiment
  assert "notes/index.html" not in html
  assert html.index("demo/index.html") < html.index("retail/index.html")


def test_render_reports_index_empty(tmp_path):
  html = report.render_reports_index(tmp_path).read_text()
  assert "<tbody>" in html and "<td>" not in html


def _sent(combined):
  return {"model": "MiniLM-L6, fine-tuned", "classes": ["negative", "positive"], "n_train": 100,
          "n_test": 40, "accuracy": 0.85, "macro_f1": 0.80,
          "baselines": {"lexicon": None, "tfidf_logreg": {"accuracy": 0.88, "macro_f1": 0.84}},
          **({"combined": combined} if combined else {})}


@pytest.mark.parametrize("weight,says", [
    (0.6, "review scores below mix the two: 60% the encoder's probabilities, 40% the "
          "bag-of-words model's"),
    (1.0, "the encoder alone did best on the validation reviews"),
])
def test_finetune_report_says_which_model_scores_the_reviews(tmp_path, weight, says):
  from cvlib.stages import finetune
  combined = {"model": "x + TF-IDF", "encoder_weight": weight, "accuracy": 0.9, "macro_f1": 0.87}
  ws = Workspace(tmp_path, "finetune")
  fig = plt.figure()
  finetune.report_finetune(ws, _sent(combined), [fig], {})
  parts = report.load_parts(tmp_path)
  text = " ".join(p.get("text", "") for p in parts["sentiment"])
  assert says in text and "a simpler model reads sentiment better" not in text
  headline = parts["headline"][0]
  assert headline["value"] == "0.87" and headline["note"] == "encoder alone 0.80, best baseline 0.84"
  table = finetune.sentiment_table(_sent(combined))
  assert table["model"].tolist()[1].startswith(f"the two combined (encoder weight {weight:.2f}")


def test_finetune_report_without_the_combination_warns_when_a_baseline_is_better(tmp_path):
  from cvlib.stages import finetune
  ws = Workspace(tmp_path, "finetune")
  finetune.report_finetune(ws, _sent(None), [plt.figure()], {})
  parts = report.load_parts(tmp_path)
  text = " ".join(p.get("text", "") for p in parts["sentiment"])
  assert "a simpler model reads sentiment better (macro-F1 0.84 against 0.80)" in text
  assert parts["headline"][0]["note"] == "best baseline 0.84"
  assert len(finetune.sentiment_table(_sent(None))) == 2


def test_training_charts_label_one_epoch_once_and_keep_the_legend_off_the_curves():
  one = pd.DataFrame({"epoch": [1], "train_loss": [0.7], "val_loss": [0.68],
                      "val_macro_f1": [0.47]})
  fig = plots.plot_finetune_history(one)
  assert [list(ax.get_xticks()) for ax in fig.axes] == [[1], [1]]
  plt.close(fig)
  epochs = np.arange(1, 11)
  hist = pd.DataFrame({"epoch": epochs, "val_loss": 3 - 0.01 * epochs,
                       "train_loss": 2.8 - 0.01 * epochs})
  fig = plots.plot_value_training({"ziln": (None, hist), "ziln_text": (None, hist + 0.1)})
  legend = fig.axes[0].get_legend()
  fig.canvas.draw()
  box = legend.get_window_extent().transformed(fig.axes[0].transAxes.inverted())
  assert box.x0 > 1.0  # right of the plot area
  plt.close(fig)

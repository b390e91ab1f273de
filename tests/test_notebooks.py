"""Every notebook runs through papermill on params/tiny.yaml; assertions on what the run wrote."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import cvlib
from cvlib import runner
from conftest import SMALL_MODELS, synthetic_frames

REPO = Path(__file__).resolve().parents[1]
CONTRACT_KEYS = ("dataset", "counts", "sentiment", "clv", "churn", "segments", "recommendations",
                 "aspects", "timing_s")


def test_run_writes_every_contract_file(tiny_run):
  for name in ("index.html", "metrics.json", "run.json", "scores.parquet"):
    assert (tiny_run / name).is_file(), name
  for stem in runner.report.NOTEBOOKS.values():
    assert (tiny_run / f"{stem}.ipynb").is_file()
    assert (tiny_run / f"{stem}.html").stat().st_size > 10_000
  assert (tiny_run / "models" / "encoder" / "weights.safetensors").is_file()
  assert (tiny_run / "models" / "ziln" / "ziln.safetensors").is_file()
  assert (tiny_run.parent / "index.html").is_file()
  assert not list(tiny_run.parent.glob(".tiny.tmp-*"))


def test_executed_notebooks_have_no_errors(tiny_run):
  for stem in runner.report.NOTEBOOKS.values():
    nb = nbformat.read(tiny_run / f"{stem}.ipynb", as_version=4)
    for cell in nb.cells:
      for out in cell.get("outputs", []):
        assert out.get("output_type") != "error", (stem, out.get("ename"), out.get("evalue"))


def test_metrics_have_contract_keys_with_computed_numbers(tiny_run):
  m = json.loads((tiny_run / "metrics.json").read_text())
  for key in CONTRACT_KEYS:
    assert key in m, key
  assert m["dataset"] == "tiny"
  assert m["counts"]["customers"] == 300 and m["counts"]["reviews"] > 100
  s = m["sentiment"]
  assert s["n_test"] > 0 and 0 <= s["accuracy"] <= 1 and 0 <= s["macro_f1"] <= 1
  for base in ("lexicon", "tfidf_logreg"):
    assert 0 < s["baselines"][base]["macro_f1"] <= 1
  clv = m["clv"]
  assert clv["horizon_days"] == 180 and clv["n_test"] == 90
  assert set(clv["models"]) == {"ziln", "ziln_ratings", "ziln_text", "ziln_e2e", "bgnbd_gg",
                                "pnbd_gg", "gbt", "spend"}
  assert set(clv["ablation"]) == {"do_reviews_help", "do_ratings_help", "does_text_help",
                                  "does_end_to_end_help"}
  assert clv["best"] in clv["models"]
  for name, mm in clv["models"].items():
    for k in ("gini", "spearman", "decile_mape", "auc_returning", "mae"):
      assert mm[k] is not None, (name, k)
    assert -1 <= mm["gini"] <= 1
    assert mm["mae"] < 1e4, name  # guards against a model predicting on the wrong scale
  assert 0 <= m["churn"]["auc"] <= 1 and 0 <= m["churn"]["pr_auc"] <= 1
  assert m["segments"]["count"] >= 3
  r = m["recommendations"]
  assert 0 <= r["hit_rate_at_10"] <= 1 and 0 <= r["popularity"]["hit_rate_at_10"] <= 1
  assert m["aspects"]["labelled_sample"] > 0 and 0 <= m["aspects"]["precision"] <= 1
  assert all(m["timing_s"][s] > 0 for s in ("preprocess", "finetune", "evaluate", "segment"))


def test_sentiment_combined_with_tfidf_is_reported_saved_and_scores_the_reviews(tiny_run):
  import numpy as np

  from cvlib.text import blend as blend_lib, sentiment
  m = json.loads((tiny_run / "metrics.json").read_text())
  both = m["sentiment"]["combined"]
  assert both["model"] == m["sentiment"]["model"] + " + TF-IDF + logistic regression"
  assert 0 < both["macro_f1"] <= 1 and 0 < both["accuracy"] <= 1
  assert both["validation_macro_f1"] >= both["validation_macro_f1_encoder_alone"]
  blend = blend_lib.SentimentBlend.load(tiny_run / "models" / "encoder")
  assert blend.weight == both["encoder_weight"] < 1.0  # the tiny encoder needs the help
  chosen = blend.validation.set_index("weight").loc[blend.weight, "macro_f1"]
  assert chosen == both["validation_macro_f1"] == blend.validation["macro_f1"].max()
  # the review scores are the combination's: recompute a few from the saved models
  from cvlib.text import checkpoint, tokens
  scores = pd.read_parquet(tiny_run / "artifacts" / "review_scores.parquet").head(20)
  reviews = pd.read_parquet(tiny_run / "artifacts" / "reviews.parquet").set_index("review_id")
  texts = reviews.loc[scores["review_id"], "text"].tolist()
  model, _ = checkpoint.load_saved_encoder(tiny_run / "models" / "encoder")
  tok = tokens.load_tokenizer(tiny_run / "models" / "encoder")
  proba = blend.proba(sentiment.predict_proba(model, tok, texts, buckets=(32,)), texts)
  np.testing.assert_allclose(scores["sentiment"], proba[:, 1] - proba[:, 0], atol=1e-5)
  html = (tiny_run / "02_finetune.html").read_text()
  assert "the two combined (encoder weight" in html


def test_domain_mlm_is_reported_with_and_without(tiny_run):
  m = json.loads((tiny_run / "metrics.json").read_text())
  enc, effect = m["sentiment"]["encoder"], m["sentiment"]["mlm_effect"]
  assert enc["kind"] == "minilm" and enc["mlm_steps"] == 4 and enc["mlm_texts"] > 100
  assert m["sentiment"]["model"] == "MiniLM-L6 + domain MLM, fine-tuned"
  assert effect["with_mlm"]["macro_f1"] == m["sentiment"]["macro_f1"]
  assert effect["macro_f1_gain"] == pytest.approx(
      effect["with_mlm"]["macro_f1"] - effect["without_mlm"]["macro_f1"])
  assert len(pd.read_parquet(tiny_run / "artifacts" / "mlm_history.parquet")) == 4
  html = (tiny_run / "index.html").read_text()
  assert "Masked-word training on the shop" in html and "Does adapting" in html


def test_review_topics_are_reported(tiny_run):
  m = json.loads((tiny_run / "metrics.json").read_text())
  t = m["topics"]
  assert 3 <= t["n_topics"] <= 10 and len(t["topics"]) == t["n_topics"]
  assert sum(x["share"] for x in t["topics"]) == pytest.approx(1.0)
  table = pd.read_parquet(tiny_run / "artifacts" / "topics.parquet")
  assert table["keywords"].apply(len).min() > 0
  html = (tiny_run / "index.html").read_text()
  assert "What customers write about" in html and "Typical reviews of each topic" in html


def test_end_to_end_model_is_in_the_back_test_only(tiny_run):
  m = json.loads((tiny_run / "metrics.json").read_text())
  e2e = m["clv"]["models"]["ziln_e2e"]
  assert 0 <= e2e["interval_coverage"] <= 1 and e2e["n"] == m["clv"]["n_test"]
  assert m["clv"]["ablation"]["does_end_to_end_help"]["without"] == "ziln_ratings"
  assert (tiny_run / "models" / "ziln_e2e" / "e2e_ziln.safetensors").exists()
  from cvlib.serve import model_folder
  ref = model_folder.ScoringReference.load(tiny_run / "models" / model_folder.REFERENCE_FILE)
  assert ref.scoring_model in ("ziln", "ziln_ratings", "ziln_text")


def test_models_beat_chance_on_synthetic_shop(tiny_run):
  m = json.loads((tiny_run / "metrics.json").read_text())
  assert m["clv"]["models"]["ziln"]["gini"] > 0.2
  assert m["clv"]["models"]["bgnbd_gg"]["gini"] > 0.2
  assert m["oracle"]["gini"] > m["clv"]["models"]["ziln"]["gini"]


def test_run_json_records_inputs_versions_and_timing(tiny_run):
  info = json.loads((tiny_run / "run.json").read_text())
  assert info["params"]["dataset"] == "tiny"
  assert info["packages"]["jax"] and info["packages"]["flax"]
  assert info["inputs"] and re.fullmatch(r"[0-9a-f]{64}", info["inputs"][0]["sha256"])
  assert set(info["seconds_per_stage"]) == {"preprocess", "finetune", "evaluate", "segment"}
  assert info["started"] <= info["ended"]


def test_scores_are_pseudonymised(tiny_run):
  scores = pd.read_parquet(tiny_run / "scores.parquet")
  assert len(scores) == 300
  for col in ("customer_key", "predicted_value", "churn_probability", "segment_label"
              if "segment_label" in scores else "rfm_segment", "value_lo", "value_hi", "action"):
    assert col in scores, col
  assert "customer_id" not in scores
  assert scores["customer_key"].str.fullmatch(r"c-[0-9a-f]{12}").all()
  assert scores["churn_probability"].between(0, 1).all()
  assert (scores["value_lo"] <= scores["value_hi"]).all()
  # no raw customer id ("C00001"-style) appears in any page
  for page in tiny_run.glob("**/*.html"):
    assert not re.search(r"\bC\d{5}\b", page.read_text()), page.name


def test_segment_profiles_name_what_their_customers_talk_about(tiny_run):
  profiles = pd.read_parquet(tiny_run / "artifacts" / "segment_profiles.parquet")
  named = profiles["top_aspects"].fillna("").str.contains(r"\(\d+%\)")
  assert named.sum() >= len(profiles) // 2, profiles["top_aspects"].tolist()


def test_segments_cells_actions_aspects_and_topics_link_to_what_is_behind_them(tiny_run):
  html = (tiny_run / "index.html").read_text()
  hrefs = re.findall(r'<a href="(details/[^"]+)">', html)
  assert hrefs and all((tiny_run / h).is_file() for h in hrefs)
  kinds = {h.split("/")[1].split("-")[1] for h in hrefs}  # details/segment-<kind>-...
  assert {"segment", "cell", "action", "aspect", "topic", "cluster"} <= kinds, kinds
  scores = pd.read_parquet(tiny_run / "scores.parquet")
  # a segment's page lists its customers (pseudonymised), highest predicted value first
  name = scores["rfm_segment"].value_counts().index[0]
  slug = re.sub(r"[^a-z0-9]+", "-", f"segment segment {name}".lower()).strip("-")
  page = (tiny_run / "details" / f"{slug}.html").read_text()
  keys = re.findall(r"<td>(c-[0-9a-f]{12})</td>", page)
  members = scores[scores["rfm_segment"] == name].sort_values("predicted_value", ascending=False)
  assert keys == members["customer_key"].head(len(keys)).tolist() and len(keys) > 0
  assert 'href="../index.html#segments"' in page


def test_stakeholder_page_has_no_code_and_the_required_parts(tiny_run):
  html = (tiny_run / "index.html").read_text()
  assert "import cvlib" not in html and "<script" not in html
  for text in ("Cleaning log", "VADER", "Decile chart", "Segment profiles", "How to read this",
               "01_preprocess.html"):
    assert text in html, text
  assert html.count("data:image/png;base64,") >= 6


def test_committed_notebooks_have_no_outputs():
  for path in sorted((REPO / "notebooks").glob("*.ipynb")):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
      if cell.cell_type == "code":
        assert not cell.outputs and cell.execution_count is None, path.name
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert sum("parameters" in t for t in tags) == 1, path.name


# A failing stage keeps the previous report and the failed notebook, and the next run succeeds:
# tests/test_faults.py, whose killed runs share that test's copy of the tiny run and its rerun.


def test_stage_subset_needs_earlier_output(tmp_path):
  with pytest.raises(cvlib.ParamsError, match="needs the output of stage 'preprocess'"):
    cvlib.run(REPO / "params" / "tiny.yaml", out=tmp_path, stages=["evaluate"])
  with pytest.raises(cvlib.ParamsError, match="unknown stage 'train'"):
    cvlib.run(REPO / "params" / "tiny.yaml", out=tmp_path, stages=["train"])


def test_cli_bad_params_exit_2_without_traceback(tmp_path):
  import subprocess
  import sys
  bad = tmp_path / "bad.yaml"
  bad.write_text("dataset: x\nfinetune: {training: {epochs: 0}, label_scheme: stars}\n")
  proc = subprocess.run([sys.executable, "-m", "cvlib.cli", "run", str(bad), "--out",
                         str(tmp_path)], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert any("finetune.training.epochs must be > 0" in l for l in lines)
  assert any("finetune.label_scheme" in l for l in lines)
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "x").exists()


def test_reviews_only_dataset_runs_with_value_parts_marked_not_applicable(tmp_path):
  reviews = synthetic_frames()["reviews"].dropna(subset=["text"])
  reviews[["text", "rating"]].rename(columns={"text": "Review Text", "rating": "Rating"}) \
      .to_csv(tmp_path / "reviews.csv", index=False)
  params = tmp_path / "reviews_only.yaml"
  # Declared Portuguese: the run learns its own vocabulary and a (here tiny) BERT from scratch.
  params.write_text("dataset: reviews_only\nlanguage: pt\ndata:\n  adapter: generic\n"
                    "  reviews:\n    path: reviews.csv\n"
                    "    columns: {text: Review Text, rating: Rating}\n" + SMALL_MODELS)
  cvlib.run(params, out=tmp_path / "out", log=lambda s: None,
            overrides=["finetune.mlm.steps=3", "finetune.small_bert.layers=1",
                       "finetune.small_bert.hidden=32", "finetune.small_bert.heads=2",
                       "finetune.small_bert.intermediate=64", "finetune.small_bert.vocab_size=300"])
  run = tmp_path / "out" / "reviews_only"
  m = json.loads((run / "metrics.json").read_text())
  assert m["sentiment"]["n_test"] > 0
  enc = m["sentiment"]["encoder"]
  assert enc["kind"] == "scratch" and enc["language"] == "pt" and enc["mlm_steps"] == 3
  assert 100 < enc["vocab_size"] <= 300
  assert m["sentiment"]["model"].startswith("small BERT 1x32 from scratch")
  assert m["sentiment"]["baselines"]["lexicon"] is None  # VADER reads English only
  assert len(pd.read_parquet(run / "artifacts" / "mlm_history.parquet")) == 3
  for key in ("clv", "churn", "segments", "recommendations"):
    assert m[key] is None, key
  assert "no orders" in m["notes"]["clv"]
  assert len(pd.read_parquet(run / "scores.parquet")) == 0
  html = (run / "index.html").read_text()
  assert "reviews only" in html and "Not part of this report" in html


def test_orders_only_dataset_runs_without_sentiment(tmp_path):
  f = synthetic_frames()
  lines = f["items"].merge(f["transactions"].drop_duplicates("order_id"), on="order_id",
                           suffixes=("", "_order"))
  lines = lines.merge(f["products"][["product_id", "description"]], on="product_id")
  lines[["customer_id", "order_id", "timestamp", "product_id", "description", "quantity",
         "unit_price"]].to_csv(tmp_path / "lines.csv.gz", index=False)
  params = tmp_path / "orders_only.yaml"
  params.write_text(
      # Chinese, but without review text there is nothing to learn a vocabulary from.
      "dataset: orders_only\nlanguage: zh\ndata:\n  adapter: generic\n  transactions:\n"
      "    path: lines.csv.gz\n"
      "split: {calibration_end: 2024-01-01, horizon_days: 180}\n" + SMALL_MODELS)
  cvlib.run(params, out=tmp_path / "out", log=lambda s: None,
            overrides=["finetune.mlm.steps=3"])
  run = tmp_path / "out" / "orders_only"
  m = json.loads((run / "metrics.json").read_text())
  assert m["sentiment"] is None and "no reviews" in m["notes"]["sentiment"]
  assert set(m["clv"]["models"]) == {"ziln", "bgnbd_gg", "pnbd_gg", "gbt", "spend"}
  assert m["recommendations"]["hit_rate_at_10"] > 0
  assert len(pd.read_parquet(run / "scores.parquet")) == m["counts"]["customers"]


def test_stage_1_starts_from_the_tables_the_runner_validated(tiny_params, tmp_path, monkeypatch):
  """``cvlib run`` reads and cleans the data once: stage 1 loads the hand-over (exactly the tables
  the runner validated) and removes it, without reading the files again."""
  from cvlib.report.workspace import Workspace
  from cvlib.runner import validate_inputs
  from cvlib.stages import preprocess

  validated = validate_inputs(tiny_params)
  preprocess.hand_over(tmp_path, validated)
  monkeypatch.setattr(preprocess, "load_data", lambda params: pytest.fail("read the data again"))
  ws = Workspace(tmp_path, "preprocess")
  got = preprocess.load_inputs(tiny_params, ws)
  for name in ("customers", "transactions", "items", "products", "reviews"):
    pd.testing.assert_frame_equal(getattr(got.cleaned, name),
                                  getattr(validated.cleaned, name).reset_index(drop=True))
  assert got.counts == validated.counts and got.sources == validated.sources
  assert got.log.rows == validated.log.rows and got.cleaned.meta == validated.cleaned.meta
  assert sorted(got.cleaned.truth) == sorted(validated.cleaned.truth)
  assert not (tmp_path / "artifacts" / preprocess.HANDED_OVER).exists()
  monkeypatch.undo()  # without a hand-over (an interactive session) it reads and cleans itself
  again = preprocess.load_inputs(tiny_params, ws)
  pd.testing.assert_frame_equal(again.cleaned.transactions, validated.cleaned.transactions)


def test_the_run_consumed_the_hand_over(tiny_run):
  assert not (tiny_run / "artifacts" / "validated").exists()

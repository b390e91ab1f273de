"""The cross-fitted back-test: every customer scored once, by models that never saw their holdout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cvlib.stages import evaluate
from cvlib.stages import finetune
from cvlib.stages import preprocess
from cvlib.value import networks
from cvlib.report.workspace import Workspace


@pytest.fixture(scope="module")
def stage3(tiny_run, tiny_params):
  """What stage 3 starts from, read from the tiny run (not modified)."""
  ws = Workspace(tiny_run, "evaluate")
  tables, prep = preprocess.load_prepared(ws)
  fin = finetune.load_finetune(ws)
  preds, _ = evaluate.predict_value_models(
      tiny_params.value, prep.features, fin.text.calibration, fin.networks, fin.is_test,
      horizon_days=prep.horizon_days, seed=tiny_params.seed)
  return prep, fin, preds


def _crossfit(stage3, cfg, prep=None):
  p, fin, preds = stage3
  return evaluate.crossfit_value_models(cfg, preds, prep or p, fin.review_scores, fin.embeddings,
                                        seed=0)


def test_folds_are_balanced_and_seeded():
  a = evaluate.crossfit_folds(103, 5, seed=0)
  assert np.bincount(a).tolist() == [21, 21, 21, 20, 20]
  assert (a == evaluate.crossfit_folds(103, 5, seed=0)).all()
  assert not (a == evaluate.crossfit_folds(103, 5, seed=1)).all()


def test_every_customer_scored_once_by_models_blind_to_their_holdout(stage3, tiny_params):
  prep, fin, preds = stage3
  cfg = tiny_params.value
  cv = _crossfit(stage3, cfg)
  assert len(cv) == len(preds) and cv["is_test"].all()
  assert (cv["customer_id"].to_numpy() == preds["customer_id"].to_numpy()).all()
  trained = ["ziln", "ziln_ratings", "ziln_text", "gbt"]
  for m in trained:
    assert np.isfinite(cv[f"{m}_value"]).all(), m
  assert "ziln_e2e_value" not in cv  # too slow to refit per fold
  # nothing learns from the holdout: copied, not refitted
  for col in ("bgnbd_gg_value", "spend_value", "y_true"):
    assert (cv[col].to_numpy() == preds[col].to_numpy()).all()

  # Change the holdout spend of the customers in fold 0: their predictions must not move (their
  # models trained on fold 1 only, text return score included), fold 1's must.
  fold0 = cv["fold"].to_numpy() == 0
  features = prep.features.copy()
  y = features["holdout_value"].to_numpy()
  features["holdout_value"] = np.where(fold0, np.where(y > 0, 0.0, 1000.0), y)
  features["returned"] = features["holdout_value"] > 0
  cv2 = _crossfit(stage3, cfg, dataclasses.replace(prep, features=features))
  for m in trained:
    a, b = cv[f"{m}_value"].to_numpy(), cv2[f"{m}_value"].to_numpy()
    np.testing.assert_array_equal(a[fold0], b[fold0], err_msg=m)
    assert not np.allclose(a[~fold0], b[~fold0]), m


def test_off_or_too_few_customers_gives_none(stage3, tiny_params):
  assert _crossfit(stage3, dataclasses.replace(tiny_params.value, cv_folds=0)) is None
  assert _crossfit(stage3, dataclasses.replace(tiny_params.value, cv_folds=20)) is None
  assert evaluate.crossfit_value_models(tiny_params.value, None, stage3[0], None, None,
                                        seed=0) is None


def test_crossfit_metrics_reach_clv_and_the_scoring_choice(stage3, tiny_params):
  _, fin, preds = stage3
  cv = _crossfit(stage3, tiny_params.value)
  clv = evaluate.evaluate_value_models(preds, seed=0, crossfit=cv)
  c = clv["crossfit"]
  assert c["folds"] == 2 and c["n_test"] == len(preds)
  assert set(c["models"]) == {"ziln", "ziln_ratings", "ziln_text", "gbt", "bgnbd_gg", "spend"}
  assert 0.0 <= c["models"]["ziln"]["interval_coverage"] <= 1.0
  nets = {m: c["models"][m]["gini"] for m in fin.networks if m in c["models"]}
  assert networks.scoring_model(clv, fin.networks) == max(nets, key=nets.get)
  assert "crossfit" not in evaluate.evaluate_value_models(preds, seed=0)
  churn = evaluate.churn_metrics(preds, "ziln", cv)
  assert churn["crossfit"]["n"] == len(preds) and churn["n"] == int(preds["is_test"].sum())
  assert 0.0 <= churn["crossfit"]["auc"] <= 1.0 and "crossfit" not in evaluate.churn_metrics(
      preds, "ziln")
  table = evaluate.ablation_table(clv)
  assert table.groupby("customers").size().to_dict() == {"all, cross-fitted": 3, "test": 3}


def test_tiny_report_has_crossfit_metrics(tiny_run):
  import json
  m = json.loads((tiny_run / "metrics.json").read_text())
  assert m["clv"]["crossfit"]["folds"] == 2
  assert (tiny_run / "artifacts" / "predictions_crossfit.parquet").is_file()
  page = (tiny_run / "index.html").read_text()
  assert "Cross-fitted back-test on every customer" in page
  assert "without on all 300 customers, cross-fitted (difference" in page  # the ablation's answer
  assert "Over all 300 customers, cross-fitted: AUC" in page  # churn

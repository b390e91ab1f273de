"""The cross-fitted back-test: every customer scored once, by models that never saw their holdout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cvlib.stages import evaluate
from cvlib.stages import finetune
from cvlib.stages import preprocess
from cvlib.value import networks, sampling
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
  n_sel = int(preds["selection"].sum())
  assert n_sel > 0 and not (preds["selection"] & preds["is_test"]).any()
  assert c["folds"] == 2 and c["n_test"] == len(preds) - n_sel  # selection customers left out
  assert set(c["models"]) == {"ziln", "ziln_ratings", "ziln_text", "gbt", "bgnbd_gg", "pnbd_gg",
                              "spend"}
  assert 0.0 <= c["models"]["ziln"]["interval_coverage_returning"] <= 1.0
  # chosen on the selection customers, the same in both blocks, and compared with each baseline
  sel = clv["selection"]
  assert sel["n"] == n_sel and set(sel["gini"]) == set(fin.networks)
  assert networks.scoring_model(clv, fin.networks) == clv["scoring_model"] == c["scoring_model"]
  assert {k.split(" - ")[1] for k in c["comparisons"]} == {"gbt", "bgnbd_gg", "pnbd_gg", "spend"}
  assert "crossfit" not in evaluate.evaluate_value_models(preds, seed=0)
  churn = evaluate.churn_metrics(preds, "ziln", cv)
  assert churn["crossfit"]["n"] == c["n_test"] and churn["n"] == int(preds["is_test"].sum())
  assert 0.0 <= churn["crossfit"]["auc"] <= 1.0 and "crossfit" not in evaluate.churn_metrics(
      preds, "ziln")
  table = evaluate.ablation_table(clv)
  assert table.groupby("customers").size().to_dict() == {
      "all but selection, cross-fitted": 3, "test": 3}


def test_tiny_report_has_crossfit_metrics(tiny_run):
  import json
  m = json.loads((tiny_run / "metrics.json").read_text())
  assert m["clv"]["crossfit"]["folds"] == 2
  assert (tiny_run / "artifacts" / "predictions_crossfit.parquet").is_file()
  page = (tiny_run / "index.html").read_text()
  assert "Cross-fitted back-test on every customer" in page
  n = m["clv"]["crossfit"]["n_test"]
  assert n == 300 - m["clv"]["selection"]["n"]  # every customer but the selection ones
  assert f"without on all {n} customers but the selection ones, cross-fitted (difference" in page
  assert f"Over the {n} customers but the selection ones, cross-fitted: AUC" in page  # churn


def _frame(n: int, seed: int):
  """A back-test frame without training: network a is right on the selection customers and
  noise elsewhere, network b is right on the test customers and noise elsewhere."""
  import pandas as pd
  rng = np.random.default_rng(seed)
  y = np.where(rng.random(n) < 0.4, rng.lognormal(3, 1, n), 0.0)
  role = rng.permutation(np.r_[np.zeros(n // 5), np.ones(n // 5), np.full(n - 2 * (n // 5), 2)])
  sel, test = role == 0, role == 1
  noise = lambda: rng.lognormal(3, 1, n)  # noqa: E731
  out = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "is_test": test,
                      "selection": sel, "y_true": y, "returned": y > 0,
                      "ziln_value": np.where(sel, y, noise()),
                      "ziln_ratings_value": np.where(test, y, noise()),
                      "gbt_value": noise(), "spend_value": y + noise()})
  for m in ("ziln", "ziln_ratings"):
    out[f"{m}_lo"], out[f"{m}_hi"] = 0.0, out[f"{m}_value"] * 2
  return out


def test_scoring_network_is_chosen_without_the_reported_customers(tmp_path):
  """Issue 19: the scoring network is chosen on the selection customers and reported, with its own
  figures, on others; the only comparisons are it against each baseline, paired."""
  preds = _frame(500, seed=0)
  clv = evaluate.evaluate_value_models(preds, seed=0)
  assert clv["scoring_model"] == "ziln"  # perfect on the selection rows, noise on the test rows
  assert clv["selection"]["gini"]["ziln"] == pytest.approx(1.0)
  assert clv["best"] == "ziln_ratings" and clv["models"]["ziln_ratings"]["gini"] == pytest.approx(1)
  assert clv["models"]["ziln"]["gini"] < 0.5  # its honest, test-customer figure
  assert clv["n_test"] == int(preds["is_test"].sum())
  assert set(clv["comparisons"]) == {"ziln - gbt", "ziln - spend"}
  c = clv["comparisons"]["ziln - spend"]
  assert c["hi95"] < 0 and c["verdict"] == "baseline better"  # said plainly
  table = evaluate.model_table(clv)
  assert table.loc[table["model"] == "ZILN network, purchase history", "role"].item() == (
      "scores customers")
  assert "80% interval coverage, not returning" in table
  # the cross-fitted block leaves the selection customers out and keeps the same scorer
  cv = preds.assign(is_test=True, fold=np.arange(len(preds)) % 2)
  both = evaluate.evaluate_value_models(preds, seed=0, crossfit=cv)
  assert both["crossfit"]["scoring_model"] == "ziln" and "selection" not in both["crossfit"]
  assert both["crossfit"]["n_test"] == len(preds) - int(preds["selection"].sum())
  assert networks.scoring_model(both, {"ziln": None, "ziln_ratings": None}) == "ziln"
  # the report's headline is the scoring network's own test Gini, not the best of all models
  from cvlib.report import html as report
  evaluate.report_evaluate(Workspace(tmp_path, "evaluate"), both, None, None, [])
  parts = report.load_parts(tmp_path)
  head = parts["headline"][0]
  assert head["label"] == "ranking quality (Gini)"
  assert head["value"] == f"{both['models']['ziln']['gini']:.2f}"
  assert "scores customers" in head["note"]
  text = " ".join(p.get("text", "") for p in parts["value"])
  assert "Past spend rate ranked these test customers better than the scoring network" in text
  assert "Pareto/NBD purchase counts" in text and "all ten deciles" in text


def test_with_a_training_sample_each_fold_trains_on_a_sample_and_predicts_the_whole_fold(
    stage3, tiny_params):
  prep, _, preds = stage3
  cfg = dataclasses.replace(tiny_params.value, train_sample=100, epochs=10)
  cv = evaluate.crossfit_value_models(cfg, preds, prep, None, None, seed=0)
  fold0 = cv["fold"].to_numpy() == 0
  assert np.isfinite(cv["ziln_value"]).all() and np.isfinite(cv["gbt_value"]).all()
  # fold 0's models learnt from a sample of fold 1: the holdout spend of fold 1's customers left
  # out of it must not move fold 0's predictions; that of the customers in it must (spend scaled,
  # so who returned, a stratum of the draw, stays)
  trained = sampling.training_sample(prep.features, ~fold0, 100, 0 + 4 + 0)
  assert trained.sum() == 100
  for change, moves in ((~fold0 & ~trained, False), (trained, True)):
    features = prep.features.copy()
    features["holdout_value"] = np.where(change, 10.0, 1.0) * features["holdout_value"]
    cv2 = evaluate.crossfit_value_models(cfg, preds, dataclasses.replace(prep, features=features),
                                         None, None, seed=0)
    for m in ("ziln", "gbt"):
      a, b = cv[f"{m}_value"].to_numpy()[fold0], cv2[f"{m}_value"].to_numpy()[fold0]
      assert np.array_equal(a, b) != moves, m

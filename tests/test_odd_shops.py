"""Every shop gets a report: odd shop shapes, optional sections that fail without taking the run
down, and baselines retried the way their library suggests."""

import json

import numpy as np
import pandas as pd
import pytest

import cvlib
from cvlib.data import odd_shops
from cvlib.report import html
from cvlib.report.workspace import Workspace
from cvlib.runner import merge_metrics, validate_inputs
from cvlib.stages import notes, preprocess
from cvlib.value import btyd


@pytest.mark.parametrize("shape", sorted(odd_shops.SHAPES))
def test_every_shape_is_valid_input_and_splits_or_says_why(shape, tmp_path):
  """Each shape is a shop cvlib must take (no exit 2): it validates, and stage 1 either splits it
  by time or records why the back-test is left out."""
  params = cvlib.load_params(odd_shops.write_shop(shape, tmp_path, seed=0))
  inputs = validate_inputs(params)
  notes.take_skipped()
  prep = preprocess.prepare_customers(params, inputs.cleaned)
  skipped = notes.take_skipped()
  if prep.cutoff is None:
    assert not len(prep.features)
    assert any("too short" in why for why in skipped.values()), skipped
  else:
    assert len(prep.features) > 0 and not skipped


def test_shapes_are_seeded():
  a = odd_shops.SHAPES["small_generic"](np.random.default_rng(3))
  b = odd_shops.SHAPES["small_generic"](np.random.default_rng(3))
  pd.testing.assert_frame_equal(a.orders, b.orders)
  pd.testing.assert_frame_equal(a.reviews, b.reviews)
  with pytest.raises(KeyError):
    odd_shops.write_shop("no_such_shape", "unused")


def test_an_optional_step_that_fails_is_skipped_with_its_reason():
  notes.take_skipped()

  @notes.optional("topics", fallback=lambda x: f"fallback {x}")
  def topics(x):
    raise np.linalg.LinAlgError("SVD did not converge\nmore detail")

  assert topics(1) == "fallback 1"
  assert notes.attempt("clusters", lambda: 1 / 0) is None
  assert notes.attempt("fine", lambda: 5) == 5
  assert notes.take_skipped() == {"topics": "LinAlgError: SVD did not converge",
                                  "clusters": "ZeroDivisionError: division by zero"}
  assert notes.take_skipped() == {}  # taken once

  @notes.optional("never")
  def interrupted():
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):  # stopping a run is not a failed section
    interrupted()


def test_skipped_sections_reach_metrics_and_the_first_screen(tmp_path):
  ws = Workspace(tmp_path, "evaluate")
  ws.add_skipped({"Gamma-Gamma spend model": "RuntimeError: did not <converge>"})
  ws2 = Workspace(tmp_path, "segment")
  ws2.add_skipped({"review topics": "ValueError: too few reviews"})
  metrics = merge_metrics(tmp_path, "shop", {})
  assert metrics["skipped"] == {"Gamma-Gamma spend model": "RuntimeError: did not <converge>",
                                "review topics": "ValueError: too few reviews"}
  page = html.render_index(tmp_path, metrics, {"params": {}}).read_text()
  first_screen = page[:page.index('<div class="cards">')]
  assert "Not in this report" in first_screen and "review topics: ValueError" in first_screen
  assert "did not &lt;converge&gt;" in first_screen  # escaped like every other text


def _issue_shop():
  """The shop of issue 24, as the value models see it."""
  shop = odd_shops.small_generic(np.random.default_rng(0))
  o = shop.orders.assign(day=shop.orders["ts"].dt.floor("D"))
  cutoff = o["ts"].max() - pd.Timedelta(days=90)
  cal = o[o["ts"] < cutoff]
  days = cal.groupby(["customer", "day"])["amount"].sum().reset_index()
  g = days.groupby("customer")
  first, last = g["day"].min(), g["day"].max()
  frequency = g.size() - 1
  repeat_spend = days.assign(first=days["customer"].map(first)).query("day > first") \
      .groupby("customer")["amount"].mean().reindex(frequency.index).fillna(0.0)
  return (frequency.to_numpy(float), (last - first).dt.days.to_numpy(float),
          (cutoff.normalize() - first).dt.days.to_numpy(float), repeat_spend.to_numpy(float))


def test_penalizer_path_keeps_the_first_penalizer_that_fits():
  calls = []

  def fit(x, *, penalizer):
    calls.append(penalizer)
    if penalizer < 0.01:
      raise RuntimeError("The model did not converge. Try adding a larger penalizer")
    return "model", {"p": 1.0}

  model, info = btyd.fit_with_penalizer_path(fit, 1, name="Gamma-Gamma")
  assert model == "model" and info["penalizer"] == 0.01 and calls == [0.0, 0.001, 0.01]
  assert info["tried"][0].startswith("penalizer 0: The model did not converge")
  with pytest.raises(RuntimeError, match=r"Gamma-Gamma did not fit with any penalizer "
                                         r"\(0, 0.001, 0.01, 0.1, 1\)"):
    btyd.fit_with_penalizer_path(lambda x, penalizer: fit(x, penalizer=-1.0), 1,
                                 name="Gamma-Gamma")
  with pytest.raises(ValueError, match="at least 10 repeat customers"):  # data, not convergence:
    btyd.fit_with_penalizer_path(btyd.fit_gamma_gamma, [0, 1], [0, 5])  # no penalizer helps


def test_the_issue_shops_gamma_gamma_fits_on_the_penalizer_path():
  frequency, recency, T, spend = _issue_shop()
  with pytest.raises((RuntimeError, ValueError)):
    btyd.fit_gamma_gamma(frequency, spend)  # what stopped the run in issue 24
  ggf, info = btyd.fit_with_penalizer_path(btyd.fit_gamma_gamma, frequency, spend,
                                           name="Gamma-Gamma")
  assert info["penalizer"] > 0 and info["q"] > 1 and info["tried"]
  bgf, _ = btyd.fit_with_penalizer_path(btyd.fit_bgnbd, frequency, recency, T, name="BG/NBD")
  pred = btyd.predict_btyd(bgf, ggf, frequency, recency, T, spend, horizon=90)
  assert np.isfinite(pred["predicted_value"]).all()


def test_a_run_with_a_skipped_section_still_writes_metrics_json(tmp_path):
  (tmp_path / "metrics").mkdir()
  (tmp_path / "metrics" / "evaluate.json").write_text(json.dumps(
      {"clv": None, "skipped": {"BG/NBD baseline": "RuntimeError: no start converged"}}))
  metrics = merge_metrics(tmp_path, "shop", {"evaluate": 1.0})
  assert metrics["skipped"] == {"BG/NBD baseline": "RuntimeError: no start converged"}


def test_the_issue_shop_gets_a_complete_report_with_the_gamma_gamma_row_explained(tmp_path):
  """Issue 24's shop stopped in the evaluate stage on Gamma-Gamma; now the whole report is built,
  the baseline fitted along the penalizer path, and its row says so."""
  params = odd_shops.write_shop("small_generic", tmp_path / "shop", seed=0)
  index = cvlib.run(params, out=tmp_path / "reports", log=lambda line: None)
  metrics = json.loads((index.parent / "metrics.json").read_text())
  assert "bgnbd_gg" in metrics["clv"]["models"] and metrics["segments"]["count"] > 0
  assert "Gamma-Gamma needed penalizer" in metrics["clv"]["model_notes"]["bgnbd_gg"]
  assert "Gamma-Gamma needed penalizer" in index.read_text()
  assert metrics["sentiment"] is not None and metrics["recommendations"] is not None


# The shapes whose value, evaluation and segment steps run in-process below (no encoder: the
# review text features are left out, as a shop without text has them): eleven shapes in seconds.
# Not time_zones: its offsets are resolved when the data are read (every shape's input test
# above), after which it is the 120-customer shop that identical_amounts, one_product and others
# start from (datetime64 UTC times, the same 119 training rows), so these steps would take the
# same paths on it as on them.
VALUE_SHAPES = ("customers_10", "customers_50", "every_customer_buys_once",
                "one_customer_has_90_percent", "identical_amounts", "zero_and_negative_amounts",
                "no_reviews", "only_one_star", "one_product", "thousands_of_products",
                "no_one_returns_in_the_holdout")


@pytest.mark.parametrize("shape", VALUE_SHAPES)
def test_value_evaluation_and_segments_survive_the_shape(shape, tmp_path):
  """The steps of notebooks 02-04 that failed on small shops (networks, baselines, cross-fit,
  churn, forward scores, segments, recommendations) finish on every shape; what they could not
  compute is skipped with a reason."""
  from cvlib.stages import evaluate, finetune, segment
  params = cvlib.load_params(odd_shops.write_shop(shape, tmp_path, seed=1))
  notes.take_skipped()
  inputs = validate_inputs(params)
  prep = preprocess.prepare_customers(params, inputs.cleaned)
  tables = inputs.cleaned
  is_test = finetune.split_customers(params.value, prep.features, seed=params.seed)
  networks = finetune.train_value_networks(params.value, prep.features, None, is_test,
                                           seed=params.seed, horizon_days=prep.horizon_days)
  preds, _ = evaluate.predict_value_models(params.value, prep.features, None, networks, is_test,
                                           horizon_days=prep.horizon_days, seed=params.seed)
  empty_reviews = pd.DataFrame({"review_id": pd.Series(dtype=str),
                                "customer_id": pd.Series(dtype=str),
                                "timestamp": pd.Series(dtype="datetime64[us]"),
                                "sentiment": pd.Series(dtype=float)})
  crossfit = evaluate.crossfit_value_models(params.value, preds, prep, None, None,
                                            seed=params.seed)
  clv = evaluate.evaluate_value_models(preds, seed=params.seed, crossfit=crossfit)
  best = evaluate.scoring_model(clv, networks)
  evaluate.churn_metrics(preds, best, crossfit)
  evaluate.model_table(clv)
  scores = segment.forward_scores(params, prep, networks, None, best)
  matrix = segment.make_value_risk_matrix(params.segment, scores)
  segment.make_segment_profiles(scores, prep, empty_reviews, tables)
  recs = segment.make_recommendations(params.segment, prep, tables, language="en")
  skipped = notes.take_skipped()
  assert len(scores) == len(prep.features_now) or not networks
  assert matrix is None or matrix["n_customers"].sum() == len(scores)
  assert recs is not None
  for section, reason in skipped.items():  # each skip names its part and says why
    assert section and reason and "\n" not in reason


def test_models_without_a_defined_gini_rank_last_and_still_one_scores():
  """A holdout where nobody buys leaves every Gini undefined (NaN, None once in metrics.json): the
  scoring network is then the first one, not a crash (every_customer_buys_once, segment stage)."""
  from cvlib.value.networks import scoring_model
  networks = {"ziln": None, "ziln_ratings": None}
  nan_clv = {"models": {"ziln": {"gini": float("nan")}, "ziln_ratings": {"gini": float("nan")},
                        "spend": {"gini": float("nan")}}}
  json_clv = json.loads(json.dumps({"models": {m: {"gini": None} for m in nan_clv["models"]}}))
  assert scoring_model(nan_clv, networks) == scoring_model(json_clv, networks) == "ziln"
  mixed = {"models": {"ziln": {"gini": None}, "ziln_ratings": {"gini": 0.2}}}
  assert scoring_model(mixed, networks) == "ziln_ratings"

"""The value networks' BG/NBD + Gamma-Gamma inputs (issue 19): fitted on the training customers
only, saved with the network, and the same columns whoever is scored with them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cvlib.report.workspace import Workspace
from cvlib.stages import finetune, preprocess
from cvlib.value import btyd, networks, ziln


@pytest.fixture(scope="module")
def trained(tiny_run):
  ws = Workspace(tiny_run, "evaluate")
  _, prep = preprocess.load_prepared(ws)
  return prep, finetune.load_finetune(ws)


def test_run_networks_read_btyd_fitted_on_training_customers(trained):
  prep, fin = trained
  f = prep.features
  train = f[~fin.is_test]
  want = networks.fit_btyd_inputs(train, horizon_days=prep.horizon_days)
  assert want is not None and want["horizon_days"] == prep.horizon_days
  for name, (predictor, _) in fin.networks.items():
    params = predictor.config["btyd"]  # saved and read back with the network
    assert params["bgnbd"] == pytest.approx(want["bgnbd"]), name
    assert params["gamma_gamma"] == pytest.approx(want["gamma_gamma"]), name
    names = [c for c in predictor.config["feature_names"] if c != networks.WINDOW_INPUT]
    assert names[-len(networks.BTYD_INPUTS):] == list(networks.BTYD_INPUTS)
  # the fit on everyone differs: the test customers' histories were kept out
  everyone = networks.fit_btyd_inputs(f, horizon_days=prep.horizon_days)
  assert everyone["bgnbd"] != pytest.approx(want["bgnbd"])


def test_btyd_columns_are_lifetimes_predictions_row_by_row(trained):
  prep, fin = trained
  f = prep.features
  params = fin.networks["ziln"][0].config["btyd"]
  cols = networks.btyd_inputs(params, f)
  assert list(cols.columns) == list(networks.BTYD_INPUTS) and np.isfinite(cols.to_numpy()).all()
  bgf, ggf = btyd.fitters_from_params(params["bgnbd"], params["gamma_gamma"])
  x, t = f["frequency"].to_numpy(), f["T_days"].to_numpy()
  purchases = bgf.conditional_expected_number_of_purchases_up_to_time(
      prep.horizon_days, x, f["recency_days"].to_numpy(), t)
  np.testing.assert_allclose(np.expm1(cols["btyd_purchases"]), purchases, rtol=1e-9)
  assert ((cols["btyd_p_alive"] >= 0) & (cols["btyd_p_alive"] <= 1)).all()
  np.testing.assert_allclose(cols["btyd_value"], np.log1p(
      np.expm1(cols["btyd_purchases"]) * np.expm1(cols["btyd_order_value"])), rtol=1e-9)
  # one customer alone gets their row of the whole table (the scorer's one-customer call)
  for i in (0, len(f) // 2, len(f) - 1):
    one = networks.btyd_inputs(params, f.iloc[[i]])
    np.testing.assert_array_equal(one.to_numpy(), cols.iloc[[i]].to_numpy())


def test_btyd_inputs_off_trains_on_history_alone(trained, tiny_params):
  prep, fin = trained
  cfg = dataclasses.replace(tiny_params.value, btyd_inputs=False, epochs=1)
  nets = networks.train_value_networks(cfg, prep.features, None, fin.is_test, seed=0,
                                       horizon_days=prep.horizon_days)
  predictor = nets["ziln"][0]
  assert predictor.config["btyd"] is None
  assert not set(networks.BTYD_INPUTS) & set(predictor.config["feature_names"])
  X = networks.predictor_inputs("ziln", predictor, prep.features, None)
  assert predictor.predict(X)["predicted_value"].notna().all()


def test_a_shop_btyd_cannot_fit_trains_without_it():
  # nobody bought twice: Gamma-Gamma has no repeat spend to fit on
  f = pd.DataFrame({"frequency": np.zeros(30), "recency_days": np.zeros(30),
                    "T_days": np.arange(30.0) + 1, "monetary_value": np.zeros(30)})
  assert networks.fit_btyd_inputs(f, horizon_days=30) is None


def test_saved_network_keeps_its_btyd_parameters(trained, tmp_path):
  prep, fin = trained
  predictor = fin.networks["ziln"][0]
  predictor.save(tmp_path)
  back = ziln.ZILNPredictor.load(tmp_path)
  X = networks.predictor_inputs("ziln", back, prep.features.iloc[:7], None)
  np.testing.assert_array_equal(
      back.predict(X)["predicted_value"].to_numpy(),
      predictor.predict(networks.predictor_inputs("ziln", predictor, prep.features.iloc[:7],
                                                  None))["predicted_value"].to_numpy())


def test_undefined_btyd_values_never_reach_a_network(trained):
  prep, fin = trained
  params = fin.networks["ziln"][0].config["btyd"]
  odd = prep.features.iloc[:2].copy()
  odd["monetary_value"] = [np.inf, np.nan]  # undefined order values
  raw = networks.btyd_array(params, odd, finite=False)
  assert not np.isfinite(raw).all()
  assert np.isfinite(networks.btyd_array(params, odd)).all()  # scored, clipped by the network
  # a fit whose own customers get undefined inputs is not used: the networks read history alone
  bad = prep.features.assign(monetary_value=np.where(prep.features["frequency"] > 0, np.inf, 0.0))
  assert networks.fit_btyd_inputs(bad, horizon_days=prep.horizon_days) is None

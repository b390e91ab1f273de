"""Tests for cvlib.value.btyd: the CDNOW reference fit of Fader, Hardie & Lee (2005) and edge cases."""

import contextlib
import io

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cvlib.value import btyd


@pytest.fixture(scope="module")
def cdnow():
  rfm = btyd.cdnow_sample_rfm()
  bgf, params = btyd.fit_bgnbd(rfm["frequency"], rfm["recency"], rfm["T"], days_per_unit=7)
  return rfm, bgf, params


def test_cdnow_rfm_shape(cdnow):
  rfm, _, _ = cdnow
  assert len(rfm) == 2357 and rfm.index.is_unique
  assert (rfm["recency"] <= rfm["T"]).all()
  assert rfm["T"].max() == pytest.approx(272 / 7)  # first purchase on 1997-01-01
  assert rfm["T"].min() >= (272 - 89) / 7  # everyone's first purchase is in Q1 1997
  assert (rfm.loc[rfm["frequency"] == 0, "monetary_value"] == 0).all()
  assert (rfm["holdout_weeks"] == 39).all()
  # Customer 00004: purchases 1997-01-01, -01-18, -08-02 in calibration (2 repeats), one in holdout.
  row = rfm.loc["00004"]
  assert row["frequency"] == 2 and row["recency"] == pytest.approx(213 / 7)
  assert row["monetary_value"] == pytest.approx((29.73 + 14.96) / 2)


def test_cdnow_reproduces_fader_hardie_lee(cdnow):
  _, _, params = cdnow
  published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
  for k, v in published.items():
    assert params[k] == pytest.approx(v, rel=0.01), k
  assert params["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
  assert params["method"] == "lifetimes" and params["n_customers"] == 2357


def test_predictions_are_sane(cdnow):
  rfm, bgf, _ = cdnow
  ggf, info = btyd.fit_gamma_gamma(rfm["frequency"], rfm["monetary_value"])
  assert info["q"] > 1 and info["n_used"] == int((rfm["frequency"] > 0).sum())
  out = btyd.predict_btyd(bgf, ggf, rfm["frequency"], rfm["recency"], rfm["T"],
                          rfm["monetary_value"], horizon=39)
  assert list(out.columns) == ["expected_purchases", "p_alive", "expected_order_value",
                               "predicted_value", "p_return"]
  assert (out["p_return"] <= out["p_alive"]).all()
  assert out.index.equals(rfm.index)
  assert out["p_alive"].between(0, 1).all()
  assert np.isfinite(out.to_numpy()).all() and (out.to_numpy() >= 0).all()
  new = rfm["frequency"] == 0
  np.testing.assert_allclose(out.loc[new, "expected_order_value"], info["population_mean"])
  np.testing.assert_allclose(out.loc[new, "p_alive"], 1.0)
  # Aggregate holdout repeat purchases within 15% of what happened.
  assert out["expected_purchases"].sum() == pytest.approx(rfm["holdout_purchases"].sum(), rel=0.15)


def test_p_return_matches_lifetimes_for_a_new_customer(cdnow):
  rfm, bgf, _ = cdnow
  ggf, _ = btyd.fit_gamma_gamma(rfm["frequency"], rfm["monetary_value"])
  # At T = 0 with no history the conditional P(no purchase) is lifetimes' unconditional P(X(t)=0).
  for t in (1.0, 10.0, 39.0):
    out = btyd.predict_btyd(bgf, ggf, [0], [0], [0], [0], horizon=t)
    want = 1.0 - float(bgf.probability_of_n_purchases_up_to_time(t, 0))
    assert out["p_return"].iloc[0] == pytest.approx(want, rel=1e-9)
  # And on the holdout it ranks who comes back far better than chance.
  out = btyd.predict_btyd(bgf, ggf, rfm["frequency"], rfm["recency"], rfm["T"],
                          rfm["monetary_value"], horizon=39)
  assert roc_auc_score(rfm["holdout_purchases"] > 0, out["p_return"]) > 0.7


def test_expected_purchases_monotone_in_frequency(cdnow):
  _, bgf, _ = cdnow
  freq = np.arange(1, 30, dtype=float)
  recency = np.full_like(freq, 30.0)
  out = bgf.conditional_expected_number_of_purchases_up_to_time(10, freq, recency, recency)
  assert np.all(np.diff(out) > 0)
  p_alive = bgf.conditional_probability_alive(freq, recency, recency)
  assert np.all((p_alive >= 0) & (p_alive <= 1))


def _no_dropout_data(n: int, seed: int, r: float = 0.5, alpha: float = 30.0):
  """Purchases from a gamma-Poisson (NBD) process with nobody dropping out, in days."""
  rng = np.random.default_rng(seed)
  lam = rng.gamma(r, 1 / alpha, n)
  T = rng.uniform(30, 300, n).round()
  k = rng.poisson(lam * T)
  # the last of k uniform repeat times on [0, T] is T * U^(1/k)
  rec = np.where(k > 0, np.round(T * rng.random(n) ** (1 / np.maximum(k, 1))), 0.0)
  return k.astype(float), np.minimum(rec, T), T


def test_fit_reaches_no_dropout_boundary():
  f, r, T = _no_dropout_data(3000, seed=1)
  with pytest.raises(Exception, match="did not converge"):
    with contextlib.redirect_stdout(io.StringIO()):
      btyd.BetaGeoFitter().fit(f, r, T)
  bgf, params = btyd.fit_bgnbd(f, r, T)
  # The tolerant minimiser finds the boundary that lifetimes' own fit rejects.
  assert params["method"] == "boundary"
  assert params["r"] == pytest.approx(0.5, rel=0.1)
  assert params["alpha"] == pytest.approx(30, rel=0.15)
  assert params["a"] / (params["a"] + params["b"]) < 1e-4  # dropout probability ~ 0
  pred = bgf.conditional_expected_number_of_purchases_up_to_time(90, f, r, T)
  np.testing.assert_allclose(pred, (params["r"] + f) * 90 / (params["alpha"] + T), rtol=1e-3)


def test_nan_predictions_fall_back_to_nbd_limit(cdnow):
  rfm, bgf, params = cdnow
  ggf, _ = btyd.fit_gamma_gamma(rfm["frequency"], rfm["monetary_value"])
  rfm = rfm.iloc[:5]

  class NanFitter:  # a fitter whose hypergeometric term overflowed for the first customer
    params_ = bgf.params_

    def conditional_expected_number_of_purchases_up_to_time(self, t, f, r, T):
      out = bgf.conditional_expected_number_of_purchases_up_to_time(t, f, r, T)
      out[0] = np.nan
      return out

    def conditional_probability_alive(self, f, r, T):
      out = bgf.conditional_probability_alive(f, r, T).astype(float)
      out[0] = np.nan
      return out

  out = btyd.predict_btyd(NanFitter(), ggf, rfm["frequency"], rfm["recency"], rfm["T"],
                          rfm["monetary_value"], horizon=10)
  x, T = rfm["frequency"].iloc[0], rfm["T"].iloc[0]
  assert out["expected_purchases"].iloc[0] == pytest.approx(
      (params["r"] + x) * 10 / (params["alpha"] + T))
  assert out["p_alive"].iloc[0] == 1.0
  assert np.isfinite(out.to_numpy()).all()


def test_gamma_gamma_skips_zero_value_repeaters():
  rng = np.random.default_rng(0)
  f = rng.integers(1, 6, 300).astype(float)
  m = rng.gamma(4.0, 10.0, 300)
  m[:7] = 0.0
  f[7:20] = 0.0
  with pytest.warns(UserWarning, match="skipped 7 repeat customers"):
    _, info = btyd.fit_gamma_gamma(f, m)
  assert info["n_used"] == 280 and info["n_skipped_zero_value"] == 7
  assert info["population_mean"] == pytest.approx(m[20:].mean(), rel=0.15)


def test_cdnow_from_data_dir(tmp_path, monkeypatch):
  src = btyd._find_cdnow_sample(None).read_text()
  (tmp_path / "cdnow").mkdir()
  # Keep only two customers so the file read is visibly this one.
  lines = [ln for ln in src.splitlines() if ln.split()[1] in ("0001", "0002")]
  (tmp_path / "cdnow" / "CDNOW_sample.txt").write_text("\n".join(lines) + "\n")
  monkeypatch.setenv("CVLIB_DATA_DIR", str(tmp_path))
  assert len(btyd.cdnow_sample_rfm()) == 2
  (tmp_path / "bad.txt").write_text("1 2 3\n")
  with pytest.raises(ValueError, match="expected 5 whitespace-separated columns"):
    btyd.load_cdnow_sample(tmp_path / "bad.txt")
  with pytest.raises(FileNotFoundError, match="CDNOW sample file not found"):
    btyd.load_cdnow_sample(tmp_path / "missing.txt")


def test_bad_inputs_raise(cdnow):
  _, bgf, _ = cdnow
  with pytest.raises(ValueError, match="recency must be <= T"):
    btyd.fit_bgnbd([1, 2], [5, 1], [4, 3])
  with pytest.raises(ValueError, match="recency must be 0 where frequency is 0"):
    btyd.fit_bgnbd([0, 2], [1, 1], [4, 3])
  with pytest.raises(ValueError, match="lengths differ"):
    btyd.fit_bgnbd([0, 2], [0, 1], [4])
  with pytest.raises(ValueError, match="frequency must be finite and >= 0"):
    btyd.fit_bgnbd([-1, 2], [0, 1], [4, 3])
  with pytest.raises(ValueError, match="whole numbers"):
    btyd.fit_bgnbd([0.5, 2], [0, 1], [4, 3])
  with pytest.raises(ValueError, match="at least 10 repeat customers"):
    btyd.fit_gamma_gamma([1, 2, 0], [3.0, 4.0, 0.0])
  with pytest.raises(ValueError, match="horizon must be > 0"):
    btyd.predict_btyd(bgf, None, [0], [0], [1], [0], horizon=0)
  with pytest.raises(ValueError, match="calibration_weeks must be in 1..77"):
    btyd.cdnow_sample_rfm(calibration_weeks=78)


def test_pareto_nbd_reproduces_the_published_cdnow_fit(cdnow):
  """Pareto/NBD through lifetimes: the CDNOW fit of Fader, Hardie & Lee's Pareto/NBD note, and
  predictions with Gamma-Gamma spend that sum close to the holdout purchases."""
  rfm, _, _ = cdnow
  pnf, info = btyd.fit_pareto_nbd(rfm["frequency"], rfm["recency"], rfm["T"])
  for k, v in {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}.items():
    assert info[k] == pytest.approx(v, rel=0.01), k
  ggf, _ = btyd.fit_gamma_gamma(rfm["frequency"], rfm["monetary_value"])
  out = btyd.predict_pareto_nbd(pnf, ggf, rfm["frequency"], rfm["recency"], rfm["T"],
                                rfm["monetary_value"], horizon=39)
  assert out.index.equals(rfm.index) and out.attrs["n_nan"] == 0
  assert out["p_return"].between(0, 1).all() and out["p_alive"].between(0, 1).all()
  assert np.isfinite(out.to_numpy()).all()
  assert out["expected_purchases"].sum() == pytest.approx(rfm["holdout_purchases"].sum(), rel=0.15)
  assert roc_auc_score(rfm["holdout_purchases"] > 0, out["p_return"]) > 0.75
  with pytest.raises(ValueError, match="penalizer"):
    btyd.fit_pareto_nbd([1.0], [1.0], [2.0], penalizer=-1)
  # the same data, the same fit, whatever the global random state (lifetimes draws its start)
  np.random.seed(12345)
  _, again = btyd.fit_pareto_nbd(rfm["frequency"], rfm["recency"], rfm["T"])
  assert {k: again[k] for k in "r alpha s beta".split()} == {
      k: info[k] for k in "r alpha s beta".split()}

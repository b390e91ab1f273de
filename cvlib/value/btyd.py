"""Buy-till-you-die baselines: BG/NBD or Pareto/NBD purchase counts times Gamma-Gamma order values.

Thin, checked wrappers around ``lifetimes`` 0.11.3 (Fader, Hardie & Lee 2005; Fader & Hardie 2013).
Inputs follow the lifetimes convention: ``frequency`` is the number of repeat purchase days,
``recency`` the time from first to last purchase, ``T`` the time from first purchase to the end of
calibration, all in one time unit (days unless told). ``monetary_value`` is the mean value of the
repeat purchases (0 for customers without repeats).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import io
import os
import pathlib
import time
import warnings
from typing import Any

import autograd
import numpy as np
import pandas as pd
import scipy.optimize

with warnings.catch_warnings():
  # lifetimes sets a pandas option that pandas 3 deprecates; the warning is noise for users.
  warnings.simplefilter("ignore")
  from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

_CDNOW_START = pd.Timestamp("1997-01-01")
_CDNOW_END = pd.Timestamp("1998-06-30")
# Largest |gradient| (mean NLL, log parameters) at which a "precision loss" stop counts as
# converged. BFGS's own gtol is 1e-5; on an AVX2 machine the tiny test shop's fit stopped with a
# precision loss at 1.2e-5 and 9.7e-5 from its two starts (1e-5 or less elsewhere), which is
# converged for every use here.
_MAX_GRAD_AT_STOP = 1e-4


def _as_array(x: Any, name: str) -> np.ndarray:
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
  bad = ~np.isfinite(arr) | (arr < 0)
  if bad.any():
    rows = np.nonzero(bad)[0][:5].tolist()
    raise ValueError(f"{name} must be finite and >= 0 (bad rows: {rows})")
  return arr


def _check_rft(frequency: Any, recency: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  f, r, t = _as_array(frequency, "frequency"), _as_array(recency, "recency"), _as_array(T, "T")
  if not (len(f) == len(r) == len(t)):
    raise ValueError(f"frequency, recency, T lengths differ: {len(f)}, {len(r)}, {len(t)}")
  if len(f) == 0:
    raise ValueError("no customers to fit")
  if np.any(f != np.round(f)):
    raise ValueError("frequency must hold whole numbers of repeat purchases")
  bad = np.nonzero(r > t + 1e-9)[0]
  if bad.size:
    raise ValueError(f"recency must be <= T (bad rows: {bad[:5].tolist()})")
  bad = np.nonzero((f == 0) & (r > 0))[0]
  if bad.size:
    raise ValueError(f"recency must be 0 where frequency is 0 (bad rows: {bad[:5].tolist()})")
  return f, r, t


def bgnbd_log_likelihood(params: dict[str, float], frequency: Any, recency: Any, T: Any) -> float:
  """Total BG/NBD log-likelihood in the time unit of the inputs (lifetimes reports a rescaled one).

  Args:
    params: dict with r, alpha, a, b.
    frequency, recency, T: per-customer summaries.

  Returns:
    Sum of per-customer log-likelihoods.
  """
  f, r, t = _check_rft(frequency, recency, T)
  log_params = np.log([params["r"], params["alpha"], params["a"], params["b"]])
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    nll = BetaGeoFitter._negative_log_likelihood(log_params, f, r, t, np.ones_like(f), 0.0)
  return float(-nll * len(f))


def _fit_bgnbd_tolerant(
    f: np.ndarray, r: np.ndarray, t: np.ndarray, penalizer: float, init: np.ndarray
) -> BetaGeoFitter:
  """Minimises lifetimes' BG/NBD likelihood, also accepting scipy's "precision loss" stop.

  At the no-dropout boundary (a -> 0, b -> inf) the likelihood is flat in a and b, so BFGS stops
  with status 2 although the gradient is ~0; lifetimes treats that as failure. The Hessian is then
  singular, so the returned fitter has no standard errors.
  """
  scale = 1.0 / t.max()
  args = (f, r * scale, t * scale, np.ones_like(f), penalizer)
  res = scipy.optimize.minimize(autograd.value_and_grad(BetaGeoFitter._negative_log_likelihood),
                                init, jac=True, args=args, tol=1e-7)
  max_grad = float(np.max(np.abs(res.jac)))
  if not (res.success or (res.status == 2 and max_grad < _MAX_GRAD_AT_STOP)):
    raise RuntimeError(f"scipy stopped with status {res.status} ({res.message}), "
                       f"max |gradient| {max_grad:.3g}")
  params = np.exp(res.x)
  params[1] /= scale
  bgf = BetaGeoFitter(penalizer_coef=penalizer)
  bgf.params_ = pd.Series(params, index=["r", "alpha", "a", "b"])
  bgf._scale = scale
  bgf._negative_log_likelihood_ = float(res.fun)
  bgf.data = pd.DataFrame({"frequency": f, "recency": r, "T": t, "weights": np.ones_like(f)})
  bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time
  return bgf


def fit_bgnbd(
    frequency: Any,
    recency: Any,
    T: Any,
    *,
    penalizer: float = 0.0,
    days_per_unit: float = 1.0,
) -> tuple[BetaGeoFitter, dict[str, Any]]:
  """Fits BG/NBD by maximum likelihood, robust to the no-dropout boundary.

  lifetimes starts every fit at exp(0.1) for all four parameters. On data whose optimum sits at the
  no-dropout boundary (Online Retail: a -> 0) that start raises ConvergenceError, while a start
  like (r 0.5, alpha 30 days, a 0.5, b 2) often converges. Both starts are tried; a start that
  lifetimes rejects is retried with a minimiser that accepts a flat-boundary stop with a ~0
  gradient. The fit with the higher likelihood is kept.

  Args:
    frequency: [n] repeat purchase counts.
    recency: [n] time of last purchase since the first.
    T: [n] customer age at the end of calibration.
    penalizer: L2 penalty on the parameters (lifetimes' penalizer_coef).
    days_per_unit: length of the time unit in days (7 for weeks); only scales the fallback start.

  Returns:
    (fitted BetaGeoFitter, dict with r, alpha, a, b, log_likelihood (in the input time unit),
    n_customers, start ("default" or "fallback"), method ("lifetimes", or "boundary" when the
    tolerant minimiser was needed: no standard errors then), fit_seconds).

  Raises:
    ValueError: on bad inputs.
    RuntimeError: if no start converges.
  """
  f, r, t = _check_rft(frequency, recency, T)
  if penalizer < 0:
    raise ValueError(f"penalizer must be >= 0, got {penalizer}")
  if days_per_unit <= 0:
    raise ValueError(f"days_per_unit must be > 0, got {days_per_unit}")
  scale = 1.0 / t.max()  # lifetimes fits alpha on a time axis rescaled to max(T) = 1
  starts = {
      "default": 0.1 * np.ones(4),  # lifetimes' own start
      "fallback": np.log([0.5, 30.0 / days_per_unit * scale, 0.5, 2.0]),
  }
  start_time = time.perf_counter()
  fits, errors = [], []
  for name, init in starts.items():
    # lifetimes prints the whole scipy result on failure and resets warning filters: contain both.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), \
        np.errstate(all="ignore"):
      warnings.simplefilter("ignore")
      try:
        bgf, method = BetaGeoFitter(penalizer_coef=penalizer).fit(f, r, t, initial_params=init), \
            "lifetimes"
      except Exception as e:  # ConvergenceError, LinAlgError from a singular Hessian, ...
        try:
          bgf, method = _fit_bgnbd_tolerant(f, r, t, penalizer, init), "boundary"
        except Exception as e2:
          errors.append(f"{name} start: {type(e).__name__}: {str(e).strip()}; then {e2}")
          continue
    if not np.all(np.isfinite(bgf.params_.to_numpy())):
      errors.append(f"{name} start: non-finite parameters {bgf.params_.to_dict()}")
      continue
    fits.append((bgf._negative_log_likelihood_, name, method, bgf))
  if not fits:
    raise RuntimeError("BG/NBD did not converge from any start: " + " | ".join(errors))
  _, best_name, best_method, best = min(fits, key=lambda x: x[0])
  params = {k: float(v) for k, v in best.params_.items()}
  params.update(
      log_likelihood=bgnbd_log_likelihood(params, f, r, t),
      n_customers=int(len(f)),
      start=best_name,
      method=best_method,
      fit_seconds=time.perf_counter() - start_time,
  )
  return best, params


def fit_gamma_gamma(
    frequency: Any,
    monetary_value: Any,
    *,
    penalizer: float = 0.0,
) -> tuple[GammaGammaFitter, dict[str, Any]]:
  """Fits the Gamma-Gamma spend model on repeat customers with positive mean order value.

  Customers without repeat purchases carry no spend information in this model; repeat customers
  whose repeat orders are all $0 are skipped too (the Gamma likelihood needs values > 0) and a
  warning says how many.

  Args:
    frequency: [n] repeat purchase counts.
    monetary_value: [n] mean value of the repeat purchases.
    penalizer: L2 penalty on the parameters.

  Returns:
    (fitted GammaGammaFitter, dict with p, q, v, population_mean (= p v / (q - 1)), n_used,
    n_skipped_zero_value).

  Raises:
    ValueError: on bad inputs, fewer than 10 usable customers, or a fit with q <= 1 (the
      population mean order value is then undefined; try penalizer=0).
  """
  f = _as_array(frequency, "frequency")
  m = _as_array(monetary_value, "monetary_value")
  if len(f) != len(m):
    raise ValueError(f"frequency and monetary_value lengths differ: {len(f)}, {len(m)}")
  if penalizer < 0:
    raise ValueError(f"penalizer must be >= 0, got {penalizer}")
  repeat = f > 0
  use = repeat & (m > 0)
  n_zero = int((repeat & ~use).sum())
  if n_zero:
    warnings.warn(f"Gamma-Gamma: skipped {n_zero} repeat customers whose mean repeat order value "
                  "is 0 (the model needs values > 0)", stacklevel=2)
  if use.sum() < 10:
    raise ValueError("Gamma-Gamma needs at least 10 repeat customers with value > 0, "
                     f"got {use.sum()}")
  ggf = GammaGammaFitter(penalizer_coef=penalizer)
  try:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), \
        np.errstate(all="ignore"):
      warnings.simplefilter("ignore")
      ggf.fit(f[use], m[use])
  except Exception as e:
    raise RuntimeError(f"Gamma-Gamma fit failed: {type(e).__name__}: {str(e).strip()}") from e
  p, q, v = (float(ggf.params_[k]) for k in ("p", "q", "v"))
  if q <= 1:
    raise ValueError(f"Gamma-Gamma fit gave q={q:.4g} <= 1, so the population mean order value is "
                     f"undefined (penalizer={penalizer}); try penalizer=0")
  info = {"p": p, "q": q, "v": v, "population_mean": p * v / (q - 1), "n_used": int(use.sum()),
          "n_skipped_zero_value": n_zero}
  return ggf, info


def fit_pareto_nbd(
    frequency: Any,
    recency: Any,
    T: Any,
    *,
    penalizer: float = 0.0,
) -> tuple[ParetoNBDFitter, dict[str, Any]]:
  """Fits Pareto/NBD (Schmittlein, Morrison & Colombo 1987) with lifetimes' own fitter.

  Unlike BG/NBD, a customer may drop out at any moment, not only right after a purchase; on
  CDNOW it gives r 0.55, alpha 10.58, s 0.61, beta 11.67 (weeks), the published fit.

  Args:
    frequency, recency, T: per-customer summaries (see the module docstring).
    penalizer: L2 penalty on the parameters (lifetimes' penalizer_coef).

  Returns:
    (fitted ParetoNBDFitter, dict with r, alpha, s, beta, n_customers, fit_seconds).

  Raises:
    ValueError: on bad inputs.
    RuntimeError: if the fit fails or gives non-finite parameters.
  """
  f, r, t = _check_rft(frequency, recency, T)
  if penalizer < 0:
    raise ValueError(f"penalizer must be >= 0, got {penalizer}")
  r = np.minimum(r, t)  # lifetimes refuses recency > T even by a rounding error
  start_time = time.perf_counter()
  try:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), \
        np.errstate(all="ignore"):
      warnings.simplefilter("ignore")
      # lifetimes starts Nelder-Mead from np.random.normal(1, 0.05) draws of the unseeded global
      # generator; the mean of those draws keeps runs of the same params identical
      pnf = ParetoNBDFitter(penalizer_coef=penalizer).fit(f, r, t, initial_params=np.ones(4))
  except Exception as e:
    raise RuntimeError(f"Pareto/NBD fit failed: {type(e).__name__}: {str(e).strip()}") from e
  if not np.all(np.isfinite(pnf.params_.to_numpy())):
    raise RuntimeError(f"Pareto/NBD gave non-finite parameters {pnf.params_.to_dict()}")
  info = {k: float(v) for k, v in pnf.params_.items()}
  info.update(n_customers=int(len(f)), fit_seconds=time.perf_counter() - start_time)
  return pnf, info


def predict_pareto_nbd(
    pnf: ParetoNBDFitter,
    ggf: GammaGammaFitter,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary_value: Any,
    *,
    horizon: float,
) -> pd.DataFrame:
  """Pareto/NBD + Gamma-Gamma over the next ``horizon``: as :func:`predict_btyd`.

  Returns:
    DataFrame with expected_purchases, p_alive, expected_order_value, predicted_value and
    p_return (1 - lifetimes' probability of no purchase in the horizon). A value lifetimes cannot
    evaluate (NaN) becomes 0 purchases and P(alive) 1, and is counted in ``attrs["n_nan"]``.

  Raises:
    ValueError: on bad inputs or horizon <= 0.
  """
  index, f, r, t, m = _prediction_inputs(frequency, recency, T, monetary_value, horizon)
  r = np.minimum(r, t)
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore")
    purchases = np.asarray(
        pnf.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t), np.float64)
    p_alive = np.asarray(pnf.conditional_probability_alive(f, r, t), np.float64)
    p_none = np.asarray(pnf.conditional_probability_of_n_purchases_up_to_time(0, horizon, f, r, t),
                        np.float64)
  n_nan = int((~np.isfinite(purchases) | ~np.isfinite(p_none)).sum())
  purchases = np.where(np.isfinite(purchases), purchases, 0.0)
  p_alive = np.where(np.isfinite(p_alive), p_alive, 1.0)
  p_return = np.clip(np.where(np.isfinite(p_none), 1.0 - p_none, 0.0), 0.0, 1.0)
  out = _prediction_frame(ggf, f, m, purchases, p_alive, p_return, index)
  out.attrs["n_nan"] = n_nan
  return out


def _prediction_inputs(frequency: Any, recency: Any, T: Any, monetary_value: Any,
                       horizon: float) -> tuple[pd.Index | None, np.ndarray, np.ndarray,
                                                np.ndarray, np.ndarray]:
  """Checked inputs of a BTYD prediction: (index of ``frequency`` or None, f, r, t, m)."""
  if not horizon > 0:
    raise ValueError(f"horizon must be > 0, got {horizon}")
  index = frequency.index if isinstance(frequency, pd.Series) else None
  f, r, t = _check_rft(frequency, recency, T)
  m = _as_array(monetary_value, "monetary_value")
  if len(m) != len(f):
    raise ValueError(f"monetary_value has {len(m)} rows, frequency has {len(f)}")
  return index, f, r, t, m


def _prediction_frame(ggf: GammaGammaFitter, f: np.ndarray, m: np.ndarray,
                      purchases: np.ndarray, p_alive: np.ndarray, p_return: np.ndarray,
                      index: pd.Index | None) -> pd.DataFrame:
  """A BTYD model's purchases and P(alive) with Gamma-Gamma's order value: the value columns."""
  order_value = _gg_order_value(ggf, f, m)
  return pd.DataFrame({"expected_purchases": purchases, "p_alive": p_alive,
                       "expected_order_value": order_value,
                       "predicted_value": purchases * order_value, "p_return": p_return},
                      index=index)


def _gg_order_value(ggf: GammaGammaFitter, f: np.ndarray, m: np.ndarray) -> np.ndarray:
  """Gamma-Gamma posterior mean spend; at x = 0 it reduces to the population mean p v / (q - 1)."""
  p, q, v = (float(ggf.params_[k]) for k in ("p", "q", "v"))
  return np.where(f > 0, p * (v + f * m) / (p * f + q - 1), p * v / (q - 1))


# lifetimes' advice when a fit does not converge: "Try adding a larger penalizer". The path tried,
# from none upwards; the first that fits is kept and reported.
PENALIZER_PATH = (0.0, 0.001, 0.01, 0.1, 1.0)


def fit_with_penalizer_path(fit: Any, *args: Any, path: tuple[float, ...] = PENALIZER_PATH,
                            name: str = "fit") -> tuple[Any, dict[str, Any]]:
  """``fit(*args, penalizer=c)`` for each c on ``path`` until one fits.

  Returns:
    (fitted model, its info with ``penalizer`` (the one used) and ``tried`` (why each smaller
    penalizer failed)).

  Raises:
    ValueError: the data cannot be fitted whatever the penalizer (too few usable customers).
    RuntimeError: when every penalizer fails; the message lists each reason.
  """
  tried = []
  for c in path:
    try:
      model, info = fit(*args, penalizer=c)
    except ValueError as e:
      if c == path[0] and "penalizer" not in str(e):
        raise  # the data, not the optimiser: no penalizer helps
      tried.append(f"penalizer {c:g}: {str(e).strip().splitlines()[0]}")
      continue
    except RuntimeError as e:
      why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      tried.append(f"penalizer {c:g}: {why}")
      continue
    return model, {**info, "penalizer": c, "tried": tried}
  tried_all = ", ".join(f"{c:g}" for c in path)
  raise RuntimeError(f"{name} did not fit with any penalizer ({tried_all}): " + " | ".join(tried))


def predict_btyd(
    bgf: BetaGeoFitter,
    ggf: GammaGammaFitter,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary_value: Any,
    *,
    horizon: float,
) -> pd.DataFrame:
  """Expected purchases, P(alive), order value, value and P(return) over the next ``horizon``.

  Where lifetimes' hypergeometric evaluation gives NaN (near the no-dropout boundary a, b -> 0),
  expected purchases fall back to the NBD limit (r + x) t / (alpha + T) and P(alive) to 1.
  Customers without repeat purchases get the Gamma-Gamma population mean order value.

  Args:
    bgf: fitted BG/NBD model.
    ggf: fitted Gamma-Gamma model.
    frequency, recency, T: per-customer summaries in the time unit of the fit.
    monetary_value: [n] mean repeat order value (ignored where frequency is 0).
    horizon: prediction window length in the time unit of the fit.

  Returns:
    DataFrame (index of ``frequency`` when it is a Series) with expected_purchases, p_alive,
    expected_order_value, predicted_value (purchases times order value) and p_return (probability
    of at least one purchase in the horizon: p_alive * (1 - ((alpha+T)/(alpha+T+horizon))^(r+x));
    use it, not p_alive, to score who returns: p_alive is 1 for every customer without repeats).

  Raises:
    ValueError: on bad inputs or horizon <= 0.
  """
  index, f, r, t, m = _prediction_inputs(frequency, recency, T, monetary_value, horizon)
  out = predict_btyd_arrays(bgf, ggf, f, r, t, m, horizon=horizon)
  return pd.DataFrame(out, index=index)


def predict_btyd_arrays(bgf: BetaGeoFitter, ggf: GammaGammaFitter, f: np.ndarray, r: np.ndarray,
                        t: np.ndarray, m: np.ndarray, *, horizon: float) -> dict[str, np.ndarray]:
  """:func:`predict_btyd`'s columns as float64 arrays, for inputs already checked (no frame: a
  service call scoring one customer reads these)."""
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore")
    purchases = np.asarray(
        bgf.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t), dtype=np.float64)
    p_alive = np.asarray(bgf.conditional_probability_alive(f, r, t), dtype=np.float64)
  r_, alpha = float(bgf.params_["r"]), float(bgf.params_["alpha"])
  nbd_limit = (r_ + f) * horizon / (alpha + t)
  purchases = np.where(np.isfinite(purchases), purchases, nbd_limit)
  p_alive = np.where(np.isfinite(p_alive), p_alive, 1.0)

  # BG/NBD customers only drop out right after a purchase, so an alive customer (whose rate has
  # posterior Gamma(r + x, alpha + T)) buys in the window unless the Poisson count is 0.
  p_return = p_alive * (1.0 - ((alpha + t) / (alpha + t + horizon)) ** (r_ + f))
  order_value = _gg_order_value(ggf, f, m)
  return {"expected_purchases": purchases, "p_alive": p_alive,
          "expected_order_value": order_value, "predicted_value": purchases * order_value,
          "p_return": p_return}


def fitters_from_params(bgnbd: dict[str, float], gamma_gamma: dict[str, float]
                        ) -> tuple[BetaGeoFitter, GammaGammaFitter]:
  """BG/NBD and Gamma-Gamma fitters from saved parameters (time unit days), for
  :func:`predict_btyd` on customers scored later: no refit, the saved model's predictions."""
  return _fitters(tuple(float(bgnbd[k]) for k in ("r", "alpha", "a", "b")),
                  tuple(float(gamma_gamma[k]) for k in ("p", "q", "v")))


@functools.lru_cache(maxsize=16)  # a service builds them once, not per call
def _fitters(bgnbd: tuple[float, ...], gamma_gamma: tuple[float, ...]
             ) -> tuple[BetaGeoFitter, GammaGammaFitter]:
  bgnbd, gamma_gamma = dict(zip("r alpha a b".split(), bgnbd)), dict(zip("pqv", gamma_gamma))
  bgf = BetaGeoFitter()
  bgf.params_ = pd.Series({k: float(bgnbd[k]) for k in ("r", "alpha", "a", "b")})
  ggf = GammaGammaFitter()
  ggf.params_ = pd.Series({k: float(gamma_gamma[k]) for k in ("p", "q", "v")})
  return bgf, ggf


def _find_cdnow_sample(path: str | os.PathLike | None) -> pathlib.Path | Any:
  if path is not None:
    p = pathlib.Path(path)
    if not p.is_file():
      raise FileNotFoundError(f"CDNOW sample file not found: {p}")
    return p
  tried = []
  data_dir = os.environ.get("CVLIB_DATA_DIR")
  if data_dir:
    p = pathlib.Path(data_dir) / "cdnow" / "CDNOW_sample.txt"
    if p.is_file():
      return p
    tried.append(str(p))
  # files('lifetimes') / 'datasets' avoids importing lifetimes.datasets, which needs pkg_resources.
  res = importlib.resources.files("lifetimes") / "datasets" / "CDNOW_sample.txt"
  if res.is_file():
    return res
  tried.append("lifetimes/datasets/CDNOW_sample.txt (package data)")
  raise FileNotFoundError("CDNOW_sample.txt not found; tried: " + ", ".join(tried))


def load_cdnow_sample(path: str | os.PathLike | None = None) -> pd.DataFrame:
  """Reads CDNOW_sample.txt into one row per transaction.

  Args:
    path: the file; default $CVLIB_DATA_DIR/cdnow/CDNOW_sample.txt, else the copy in lifetimes.

  Returns:
    DataFrame with customer_id (string, the master-file id), sample_id (int), date, number_of_cds,
    dollar_value.

  Raises:
    FileNotFoundError: if no file is found.
    ValueError: if the file does not have the 5 expected columns or dates do not parse.
  """
  src = _find_cdnow_sample(path)
  with src.open("r") as fh:
    text = fh.read()
  names = ["customer_id", "sample_id", "date", "number_of_cds", "dollar_value"]
  df = pd.read_csv(io.StringIO(text), sep=r"\s+", header=None, dtype=str)
  if df.shape[1] != 5:
    raise ValueError(f"{src}: expected 5 whitespace-separated columns ({', '.join(names)}), "
                     f"got {df.shape[1]}")
  df.columns = names
  try:
    out = pd.DataFrame({
        "customer_id": df["customer_id"].astype("string"),
        "sample_id": df["sample_id"].astype(int),
        "date": pd.to_datetime(df["date"], format="%Y%m%d").astype("datetime64[us]"),
        "number_of_cds": df["number_of_cds"].astype(float),
        "dollar_value": df["dollar_value"].astype(float),
    })
  except ValueError as e:
    raise ValueError(f"{src}: could not parse: {e}") from e
  return out


def cdnow_sample_rfm(
    path: str | os.PathLike | None = None,
    calibration_weeks: int = 39,
) -> pd.DataFrame:
  """Per-customer BTYD summaries of the CDNOW sample in weeks (Fader, Hardie & Lee 2005).

  Purchases on the same customer-day are merged into one. Calibration runs from 1997-01-01 for
  ``calibration_weeks`` weeks (39: to 1997-09-30 inclusive); T is measured to the last calibration
  day and the holdout runs from the next day to 1998-06-30. This reproduces the paper's BG/NBD fit.

  Args:
    path: CDNOW_sample.txt (see :func:`load_cdnow_sample` for the default).
    calibration_weeks: length of the calibration period, 1-77 weeks.

  Returns:
    DataFrame indexed by customer_id (2,357 rows) with frequency, recency, T (weeks),
    monetary_value (mean repeat purchase-day spend in calibration, 0 without repeats),
    holdout_purchases, holdout_value and holdout_weeks.

  Raises:
    ValueError: if calibration_weeks is out of range.
  """
  if not 1 <= calibration_weeks <= 77:
    raise ValueError(f"calibration_weeks must be in 1..77 (the data span 78 weeks), "
                     f"got {calibration_weeks}")
  tx = load_cdnow_sample(path)
  days = tx.groupby(["customer_id", "date"], as_index=False)["dollar_value"].sum()
  cal_end = _CDNOW_START + pd.Timedelta(days=7 * calibration_weeks - 1)
  cal = days[days["date"] <= cal_end]
  hold = days[days["date"] > cal_end]
  g = cal.groupby("customer_id")
  first, last, n = g["date"].min(), g["date"].max(), g.size()
  total = g["dollar_value"].sum()
  first_value = cal.sort_values("date").groupby("customer_id")["dollar_value"].first()
  frequency = (n - 1).astype(float)
  repeat_value = (total - first_value).where(frequency > 0, 0.0)
  out = pd.DataFrame({
      "frequency": frequency,
      "recency": (last - first).dt.days / 7.0,
      "T": (cal_end - first).dt.days / 7.0,
      "monetary_value": (repeat_value / frequency.where(frequency > 0, 1.0)).astype(float),
  })
  # Every sample customer's first purchase falls in Q1 1997, so all are in calibration.
  hg = hold.groupby("customer_id")
  out["holdout_purchases"] = hg.size().reindex(out.index, fill_value=0).astype(float)
  out["holdout_value"] = hg["dollar_value"].sum().reindex(out.index, fill_value=0.0)
  out["holdout_weeks"] = (_CDNOW_END - cal_end).days / 7.0
  out.index = out.index.astype("string")
  out.index.name = "customer_id"
  return out


def p_return_bgnbd(bgf, f: pd.DataFrame, horizon_days: int) -> np.ndarray:
  """P(at least one purchase in the horizon) under BG/NBD.

  A customer buys again only if alive at the cutoff, and dropout happens only after a purchase,
  so P(return) = P(alive) * (1 - E[exp(-lambda t)]), where lambda's posterior given alive is
  Gamma(r + x, alpha + T): E[exp(-lambda t)] = ((alpha + T) / (alpha + T + t)) ** (r + x).
  """
  r, alpha = float(bgf.params_["r"]), float(bgf.params_["alpha"])
  x = f["frequency"].to_numpy(np.float64)
  T = f["T_days"].to_numpy(np.float64)
  p_alive = np.asarray(bgf.conditional_probability_alive(x, f["recency_days"].to_numpy(np.float64),
                                                         T), dtype=np.float64)
  p_alive = np.nan_to_num(p_alive, nan=1.0)  # NaN only at the no-dropout boundary: alive
  p_none = ((alpha + T) / (alpha + T + horizon_days)) ** (r + x)
  return np.clip(p_alive * (1 - p_none), 0.0, 1.0)


def expected_purchases_profile(params: dict[str, float], frequency: Any, recency: Any, T: Any,
                               days: Any) -> np.ndarray:
  """BG/NBD's expected purchases of all customers together by each of ``days`` after the end of
  their histories: the model's own time profile, used to prorate a horizon's prediction to the
  part of it that has elapsed (``cvlib.insight.since_last``).

  Args:
    params: fitted r, alpha, a, b (``fit_bgnbd``'s dict; time unit days).
    frequency, recency, T: [n] per-customer summaries in days.
    days: [k] increasing times t > 0.

  Returns:
    [k] sum over customers of E[X(t) | history]; where lifetimes' hypergeometric gives NaN (near
    the no-dropout boundary) a customer's count falls back to the NBD limit (r + x) t / (alpha + T).
  """
  f, r, t = _check_rft(frequency, recency, T)
  bgf = BetaGeoFitter()
  bgf.params_ = pd.Series({k: float(params[k]) for k in ("r", "alpha", "a", "b")})
  out = []
  for day in np.asarray(days, dtype=np.float64):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
      warnings.simplefilter("ignore")
      x = np.asarray(bgf.conditional_expected_number_of_purchases_up_to_time(day, f, r, t),
                     dtype=np.float64)
    limit = (float(params["r"]) + f) * day / (float(params["alpha"]) + t)
    out.append(float(np.where(np.isfinite(x), x, limit).sum()))
  return np.asarray(out)

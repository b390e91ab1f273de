"""The value models' inputs and the ZILN networks trained on them.

Which inputs each network sees (``NETWORK_INPUTS``: the ablation "do reviews help, and does their
text add to the stars?"), the matrix built from customer features, the training/validation split
of the training customers, and the choice of the network that scores customers. Stages 2-4 and
``cvlib score`` use these definitions, so they live below both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cvlib.config import ValueConfig
from cvlib.data import features as feats
from cvlib.data.adapters import Tables
from cvlib.data.split import Prepared



VALUE_MODELS = {
    "ziln": "ZILN network, purchase history",
    "ziln_ratings": "ZILN network, purchase history + star ratings",
    "ziln_text": "ZILN network, purchase history + ratings + review text",
    "ziln_e2e": "End to end: history as text through the encoder, with the numbers, ZILN head",
    "bgnbd_gg": "BG/NBD + Gamma-Gamma",
    "pnbd_gg": "Pareto/NBD + Gamma-Gamma",
    "gbt": "Gradient-boosted trees",
    "spend": "Past spend rate",
}

# The baselines every scoring network is compared with (pre-declared: the scoring network minus
# each of them, nothing else), and what each is, in one sentence for the report.
BASELINES = {
    "bgnbd_gg": "BG/NBD purchase counts (dropout only right after a purchase) times Gamma-Gamma "
                "mean order value, both fitted by lifetimes on every customer's calibration "
                "history (never the holdout), retried along lifetimes' penalizer path.",
    "pnbd_gg": "Pareto/NBD purchase counts (dropout at any moment) from lifetimes' "
               "ParetoNBDFitter times the same Gamma-Gamma order value, fitted the same way.",
    "gbt": "Gradient-boosted trees on the networks' history and rating inputs with a Poisson "
           "objective, so they predict mean spend directly (no log-scale retransformation), "
           "trained on the same customers as the networks.",
    "spend": "Each customer's calibration spend per day times the horizon, with at least one "
             "horizon of exposure (a customer seen for less than the horizon is expected to "
             "spend what they spent so far again).",
}


# What each value network sees: the ablation "do reviews help, and does their text add to the stars?"
NETWORK_INPUTS = {"ziln": ("history",), "ziln_ratings": ("history", "ratings"),
                  "ziln_text": ("history", "ratings", "text")}


def model_inputs(features: pd.DataFrame, text: pd.DataFrame | None = None, *,
                 ratings: bool = True) -> pd.DataFrame:
  """The numeric matrix a value model sees, as a DataFrame with named columns.

  Args:
    features: customer features from :func:`cvlib.data.features.compute_customer_features`.
    text: per-customer text features (``TextFeaturizer.transform``), or None.
    ratings: include the star-rating features.
  """
  cols = list(feats.BEHAVIOUR_FEATURES + feats.REVIEW_FEATURES)
  X = pd.DataFrame(feats.feature_matrix(features), columns=cols + ["has_review"])
  if not ratings:
    X = X[list(feats.BEHAVIOUR_FEATURES)]
  if text is not None:
    t = text.set_index("customer_id").reindex(features["customer_id"].astype(str))
    X = pd.concat([X, t.reset_index(drop=True).astype("float32")], axis=1)
  return X


# What BG/NBD + Gamma-Gamma make of a customer's history, read by every value network beside the
# history itself (issue 19, benchmarks/results/value_levers.json): expected purchases and value in
# the horizon and order value (log1p), P(alive) and P(return).
BTYD_INPUTS = ("btyd_purchases", "btyd_p_alive", "btyd_p_return", "btyd_order_value",
               "btyd_value")


def fit_btyd_inputs(features: pd.DataFrame, *, horizon_days: int) -> dict[str, Any] | None:
  """BG/NBD and Gamma-Gamma fitted on these customers' calibration histories (never a holdout),
  each retried along lifetimes' penalizer path: the parameters :func:`btyd_inputs` reads, kept in
  the network's config so a customer scored later gets the same columns. None when either model
  does not fit (a tiny or odd shop): the networks then read the history alone."""
  from cvlib.value import btyd
  f = features
  try:
    _, bg = btyd.fit_with_penalizer_path(btyd.fit_bgnbd, f["frequency"], f["recency_days"],
                                         f["T_days"], name="BG/NBD")
    _, gg = btyd.fit_with_penalizer_path(btyd.fit_gamma_gamma, f["frequency"],
                                         f["monetary_value"], name="Gamma-Gamma")
  except (ValueError, RuntimeError):
    return None
  params = {"bgnbd": {k: bg[k] for k in ("r", "alpha", "a", "b")},
            "gamma_gamma": {k: gg[k] for k in ("p", "q", "v")}, "horizon_days": int(horizon_days)}
  if not np.isfinite(btyd_array(params, features, finite=False)).all():
    return None  # fitted, but undefined for some of the very customers it was fitted on
  return params


def btyd_inputs(params: dict[str, Any], features: pd.DataFrame) -> pd.DataFrame:
  """The :data:`BTYD_INPUTS` columns of ``features``' customers under saved BTYD parameters."""
  return pd.DataFrame(btyd_array(params, features), columns=list(BTYD_INPUTS))


def btyd_array(params: dict[str, Any], features: pd.DataFrame, *, finite: bool = True
               ) -> np.ndarray:
  """:func:`btyd_inputs` as a float64 array [customers, len(BTYD_INPUTS)].

  With ``finite``, a value lifetimes' formulas leave undefined for a customer unlike those the
  models were fitted on becomes 0 (infinities the largest float), so the customer is still scored:
  the network's standardiser clips every input to its training range.
  """
  from cvlib.value import btyd
  bgf, ggf = btyd.fitters_from_params(params["bgnbd"], params["gamma_gamma"])
  col = lambda c: features[c].to_numpy(np.float64)  # noqa: E731
  p = btyd.predict_btyd_arrays(bgf, ggf, col("frequency"), col("recency_days"), col("T_days"),
                               col("monetary_value"), horizon=params["horizon_days"])
  with np.errstate(invalid="ignore", divide="ignore"):
    out = np.column_stack([np.log1p(p["expected_purchases"]), p["p_alive"], p["p_return"],
                           np.log1p(p["expected_order_value"]), np.log1p(p["predicted_value"])])
  return np.nan_to_num(out, nan=0.0) if finite else out


def network_inputs(name: str, features: pd.DataFrame, text: pd.DataFrame | None,
                   btyd: dict[str, Any] | None = None) -> pd.DataFrame:
  """What network ``name`` reads: history (and ratings, text per :data:`NETWORK_INPUTS`), then,
  with ``btyd`` parameters (:func:`fit_btyd_inputs`), the :data:`BTYD_INPUTS` columns."""
  uses = NETWORK_INPUTS[name]
  if uses == ("history",):  # one array, one frame: the service's one-customer call
    cols = list(feats.BEHAVIOUR_FEATURES)
    X = feats.feature_matrix(features, feats.BEHAVIOUR_FEATURES)
    if btyd is not None:
      X, cols = np.hstack([X, btyd_array(btyd, features)]), cols + list(BTYD_INPUTS)
    return pd.DataFrame(X, columns=cols)
  X = model_inputs(features, text if "text" in uses else None, ratings="ratings" in uses)
  if btyd is not None:
    X = pd.concat([X, btyd_inputs(btyd, features)], axis=1)
  return X


# The input that numbers a training row's window: 0 for the cutoff's own customers (and whoever
# is scored), k for the customers as they stood k horizons before it (``value.train_windows``).
WINDOW_INPUT = "window"


def predictor_inputs(name: str, predictor: Any, features: pd.DataFrame,
                     text: pd.DataFrame | None) -> pd.DataFrame:
  """:func:`network_inputs` for a trained network, with the BTYD parameters it was trained with
  (none for a network saved before issue 19 or trained without them), and :data:`WINDOW_INPUT`
  at 0 (the window being scored) for a network trained on earlier windows too."""
  X = network_inputs(name, features, text, predictor.config.get("btyd"))
  return X.assign(**{WINDOW_INPUT: 0.0}) if predictor.config.get("windows") else X


def window_rows(windows: pd.DataFrame | None, customer_ids: pd.Series) -> pd.DataFrame:
  """The earlier windows' rows (:attr:`cvlib.data.split.Prepared.windows`) of these customers:
  the customers a network fits on, so neither its validation customers nor the customers it is
  tested on reach it through an earlier window."""
  if windows is None or not len(windows):
    return pd.DataFrame()
  keep = windows["customer_id"].astype(str).isin(set(customer_ids.astype(str)))
  return windows[keep].reset_index(drop=True)


def value_split(is_test: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Training customers split into fitting and validation (early stopping) rows: 85/15, seeded."""
  train_idx = np.flatnonzero(~is_test)
  rng = np.random.default_rng(seed + 1)
  val_mask = np.zeros(len(train_idx), bool)
  val_mask[rng.permutation(len(train_idx))[: max(1, int(0.15 * len(train_idx)))]] = True
  return train_idx[~val_mask], train_idx[val_mask]


def train_value_networks(cfg: ValueConfig, features: pd.DataFrame, text: pd.DataFrame | None,
                         is_test: np.ndarray, *, seed: int, horizon_days: int,
                         windows: pd.DataFrame | None = None) -> dict[str, Any]:
  """Trains the ZILN networks (without and, when text exists, with text) on training customers.

  With ``cfg.btyd_inputs``, BG/NBD + Gamma-Gamma are fitted on the training customers'
  calibration histories first and every network also reads their outputs
  (:func:`fit_btyd_inputs`; the parameters go into each network's config).

  With ``windows`` (:attr:`cvlib.data.split.Prepared.windows`) holding rows and no review text,
  the networks also fit on their fitting customers as they stood at those earlier cutoffs
  (:func:`window_rows`), with the :data:`WINDOW_INPUT` input (config ``windows``: how many
  windows). With review text none does: there are no text features at earlier cutoffs, and the
  review ablation compares networks trained on the same rows. Early stopping and the selection
  customers stay on the cutoff's own window.

  Returns:
    {name: (predictor, history)}.
  """
  from cvlib.value import ziln
  if not len(features):
    return {}
  y = features["holdout_value"].to_numpy(np.float64)
  fit_idx, val_idx = value_split(is_test, seed)
  out = {}
  has_ratings = features["n_reviews"].gt(0).any()
  btyd = (fit_btyd_inputs(features[~is_test], horizon_days=horizon_days)
          if cfg.btyd_inputs else None)
  more = window_rows(windows if text is None else None, features["customer_id"].iloc[fit_idx])
  n_windows = int(more["window"].nunique()) if len(more) else 0
  for name, uses in NETWORK_INPUTS.items():
    if ("ratings" in uses and not has_ratings) or ("text" in uses and text is None):
      continue  # nothing to add over the simpler network
    X = network_inputs(name, features, text, btyd)
    X_fit, y_fit = X.iloc[fit_idx], y[fit_idx]
    if n_windows:
      X, X_fit = X.assign(**{WINDOW_INPUT: 0.0}), X_fit.assign(**{WINDOW_INPUT: 0.0})
      X_more = network_inputs(name, more, None, btyd).assign(
          **{WINDOW_INPUT: more["window"].to_numpy(np.float64)})
      X_fit = pd.concat([X_fit, X_more], ignore_index=True)
      y_fit = np.concatenate([y_fit, more["holdout_value"].to_numpy(np.float64)])
    predictor, history = ziln.train_ziln(
        X_fit, y_fit, X.iloc[val_idx], y[val_idx], hidden=cfg.hidden,
        dropout=cfg.dropout, epochs=cfg.epochs, batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, patience=cfg.patience, seed=seed,
        interval=cfg.interval)
    predictor.config.update(btyd=btyd, windows=n_windows)
    out[name] = (predictor, history)
  return out


E2E_MODEL = "ziln_e2e"


def history_texts(prep: Prepared, tables: Tables, *, at: str = "cutoff",
                  max_chars: int = 600) -> list[str]:
  """Each customer's history as text (``history_text.customer_history_texts``), before the cutoff
  (``at="cutoff"``, rows of ``prep.features``) or before as_of (``"as_of"``, ``features_now``)."""
  from cvlib.value import history_text
  feats_ = prep.features if at == "cutoff" else prep.features_now
  when = prep.cutoff if at == "cutoff" else prep.as_of
  return history_text.customer_history_texts(
      tables.transactions, tables.reviews, feats_["customer_id"].astype(str), when,
      items=tables.items, products=tables.products, max_chars=max_chars)


def e2e_numeric(features: pd.DataFrame) -> pd.DataFrame:
  """The end-to-end model's numbers: what the ratings network sees (history, and stars if any)."""
  with_ratings = "n_reviews" in features and features["n_reviews"].gt(0).any()
  return network_inputs("ziln_ratings" if with_ratings else "ziln", features, None)


SELECTION_CUSTOMERS = ("the networks' validation customers: 15% of the training customers, held "
                       "out of fitting (early stopping) and left out of every reported figure")


def select_scoring_model(y_true: np.ndarray, predictions: dict[str, np.ndarray]
                         ) -> tuple[str | None, dict[str, float]]:
  """The network that scores customers: the highest Gini on the selection customers.

  The selection customers are the networks' validation rows (:func:`value_split`): they are
  never test customers and the evaluation leaves them out of every reported figure, so the
  scoring network's reported quality is measured on customers it was not chosen on.

  Args:
    y_true: [n] holdout values of the selection customers.
    predictions: network name -> [n] its predictions for them, in preference order (the first
      wins among equals, and when every Gini is undefined).

  Returns:
    (name or None when there is no network, {name: Gini on the selection customers}).
  """
  from cvlib.value import metrics as vm
  gini = {}
  for name, pred in predictions.items():
    if len(y_true) and np.ptp(y_true) > 0:
      gini[name] = vm.gini_normalised(y_true, pred)
    else:  # nobody (or everybody alike) spent: no ranking to judge
      gini[name] = float("nan")
  if not gini:
    return None, gini
  return max(gini, key=lambda m: ranking_key(gini[m])), gini


def scoring_model(clv: dict | None, networks: dict) -> str | None:
  """The network that scores customers: ``clv["scoring_model"]``, chosen by
  :func:`select_scoring_model` on the selection customers, not on the reported ones.

  A clv without that key (written before issue 19) falls back to the best network by its
  selection Gini, else by the reported Gini.
  """
  if clv is None:
    return None
  if clv.get("scoring_model") in networks:
    return clv["scoring_model"]
  gini = (clv.get("selection") or {}).get("gini") or {m: v.get("gini")
                                                      for m, v in clv["models"].items()}
  nets = [m for m in gini if m in networks]
  return max(nets, key=lambda m: ranking_key(gini[m])) if nets else None


def ranking_key(gini: float | None) -> float:
  """A Gini to rank models by: undefined (no customer spent in the holdout; NaN, or None once
  written to JSON) ranks last, so the first model listed wins among equals."""
  return float(gini) if gini is not None and np.isfinite(gini) else -np.inf

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
    "gbt": "Gradient-boosted trees",
    "spend": "Past spend rate",
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


def network_inputs(name: str, features: pd.DataFrame, text: pd.DataFrame | None) -> pd.DataFrame:
  uses = NETWORK_INPUTS[name]
  return model_inputs(features, text if "text" in uses else None, ratings="ratings" in uses)


def value_split(is_test: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Training customers split into fitting and validation (early stopping) rows: 85/15, seeded."""
  train_idx = np.flatnonzero(~is_test)
  rng = np.random.default_rng(seed + 1)
  val_mask = np.zeros(len(train_idx), bool)
  val_mask[rng.permutation(len(train_idx))[: max(1, int(0.15 * len(train_idx)))]] = True
  return train_idx[~val_mask], train_idx[val_mask]


def train_value_networks(cfg: ValueConfig, features: pd.DataFrame, text: pd.DataFrame | None,
                         is_test: np.ndarray, *, seed: int) -> dict[str, Any]:
  """Trains the ZILN networks (without and, when text exists, with text) on training customers.

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
  for name, uses in NETWORK_INPUTS.items():
    if ("ratings" in uses and not has_ratings) or ("text" in uses and text is None):
      continue  # nothing to add over the simpler network
    X = network_inputs(name, features, text)
    out[name] = ziln.train_ziln(
        X.iloc[fit_idx], y[fit_idx], X.iloc[val_idx], y[val_idx], hidden=cfg.hidden,
        dropout=cfg.dropout, epochs=cfg.epochs, batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, patience=cfg.patience, seed=seed,
        interval=cfg.interval)
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


def scoring_model(clv: dict | None, networks: dict) -> str | None:
  """The network that scores customers: the back-test's best network, judged on every customer
  when the cross-fitted back-test ran (three times the test customers, so less noise), else on
  the test customers."""
  if clv is None:
    return None
  models = clv["models"]
  if clv.get("crossfit") and any(m in networks for m in clv["crossfit"]["models"]):
    models = clv["crossfit"]["models"]
  nets = [m for m in models if m in networks]
  return max(nets, key=lambda m: ranking_key(models[m].get("gini")))


def ranking_key(gini: float | None) -> float:
  """A Gini to rank models by: undefined (no customer spent in the holdout; NaN, or None once
  written to JSON) ranks last, so the first model listed wins among equals."""
  return float(gini) if gini is not None and np.isfinite(gini) else -np.inf

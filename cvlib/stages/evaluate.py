"""Stage 3, evaluate (notebook 03): every value model's back-test against the baselines, on the test
customers and cross-fitted over every customer; churn, the oracle on synthetic shops, and what the
scoring network relies on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import threadpoolctl

from cvlib.config import ValueConfig
from cvlib.data.adapters import Tables
from cvlib.data.split import Prepared
from cvlib.report import plots
from cvlib.report.workspace import Workspace
from cvlib.stages.notes import MIN_RETURNING, NOT_APPLICABLE, attempt, optional, take_skipped
from cvlib.value import baselines, btyd
from cvlib.value import metrics as vm
from cvlib.value.networks import (BASELINES, E2E_MODEL, NETWORK_INPUTS, SELECTION_CUSTOMERS,
                                  VALUE_MODELS, WINDOW_INPUT, e2e_numeric, history_texts,
                                  model_inputs, predictor_inputs, ranking_key, scoring_model,
                                  select_scoring_model, train_value_networks, value_split)
from cvlib.value.sampling import training_sample
from cvlib.value.text_features import make_customer_text


# The steps notebook 03 calls, in its order.
__all__ = [
    "predict_value_models", "add_end_to_end_predictions", "crossfit_value_models",
    "evaluate_value_models", "model_table", "ablation_table", "gini_difference_table",
    "plot_deciles", "plot_gains", "scoring_model", "churn_metrics", "oracle_metrics",
    "value_importance", "plot_value_importance", "save_evaluate", "report_evaluate"
]


@optional("end-to-end model (back-test)", fallback=lambda cfg, preds, *a, **k: preds)
def add_end_to_end_predictions(cfg: ValueConfig, preds: pd.DataFrame | None, e2e: Any,
                               prep: Prepared, tables: Tables) -> pd.DataFrame | None:
  """Adds the end-to-end model's columns (value, p_return, ``cfg.interval``) to the back-test
  frame; histories cut at ``cfg.e2e_max_chars`` as in training."""
  if preds is None or e2e is None:
    return preds
  qs = ((1 - cfg.interval) / 2, (1 + cfg.interval) / 2)
  p = e2e.predict(history_texts(prep, tables, max_chars=cfg.e2e_max_chars),
                  e2e_numeric(prep.features), qs=qs)
  out = preds.copy()
  out[f"{E2E_MODEL}_value"] = p["predicted_value"].to_numpy()
  out[f"{E2E_MODEL}_p_return"] = p["p_return"].to_numpy()
  out[f"{E2E_MODEL}_lo"] = p["q10"].to_numpy()
  out[f"{E2E_MODEL}_hi"] = p["q90"].to_numpy()
  return out


# --- 03 evaluate -------------------------------------------------------------------------------

def predict_value_models(cfg: ValueConfig, features: pd.DataFrame, text: pd.DataFrame | None,
                         networks: dict, is_test: np.ndarray, *, horizon_days: int, seed: int
                         ) -> tuple[pd.DataFrame, dict[str, Any]]:
  """Every value model's prediction for every customer (the networks are already trained).

  BG/NBD and Pareto/NBD + Gamma-Gamma are fitted on everyone's calibration history (they never
  see the holdout); the trees are trained on training customers' holdout values like the networks.

  Returns:
    (frame with customer_id, is_test, selection (the networks' validation customers, on which
    the scoring network is chosen: :func:`cvlib.value.networks.select_scoring_model`), y_true,
    returned and per model ``<m>_value``, ``<m>_p_return`` and, for ZILN, ``<m>_lo``/``<m>_hi``;
    info such as fitted BTYD parameters).
  """
  if not networks or not len(features):
    return None, {}
  y = features["holdout_value"].to_numpy(np.float64)
  selection = np.zeros(len(features), bool)
  selection[value_split(is_test, seed)[1]] = True  # the rows train_value_networks validates on
  out = pd.DataFrame({"customer_id": features["customer_id"],
                      "customer_key": features["customer_key"], "is_test": is_test,
                      "selection": selection, "y_true": y,
                      "returned": features["returned"].to_numpy()})
  info: dict[str, Any] = {}
  qs = ((1 - cfg.interval) / 2, (1 + cfg.interval) / 2)
  for name, (predictor, _) in networks.items():
    p = predictor.predict(predictor_inputs(name, predictor, features, text), qs=qs)
    out[f"{name}_value"] = p["predicted_value"].to_numpy()
    out[f"{name}_p_return"] = p["p_return"].to_numpy()
    out[f"{name}_lo"] = p["q10"].to_numpy()
    out[f"{name}_hi"] = p["q90"].to_numpy()
  f = features
  not_fitted: dict[str, str] = {}  # baseline -> why it is not in the comparison
  bgnbd = attempt("BG/NBD baseline", btyd.fit_with_penalizer_path, btyd.fit_bgnbd,
                  f["frequency"], f["recency_days"], f["T_days"], name="BG/NBD")
  gamma_gamma = attempt("Gamma-Gamma spend model (of the BG/NBD baseline)",
                        btyd.fit_with_penalizer_path, btyd.fit_gamma_gamma, f["frequency"],
                        f["monetary_value"], name="Gamma-Gamma")
  if bgnbd is not None:
    bgf, info["bgnbd"] = bgnbd
    out["bgnbd_gg_p_return"] = btyd.p_return_bgnbd(bgf, f, horizon_days)
  penalized = [f"{name} needed penalizer {fit[1]['penalizer']:g} to converge"
               for name, fit in (("BG/NBD", bgnbd), ("Gamma-Gamma", gamma_gamma))
               if fit is not None and fit[1]["penalizer"] > 0]
  if penalized:  # lifetimes' advice for a fit that does not converge; the table says so
    out.attrs["model_notes"] = {"bgnbd_gg": "; ".join(penalized)}
  if bgnbd is not None and gamma_gamma is not None:
    ggf, info["gamma_gamma"] = gamma_gamma
    pb = btyd.predict_btyd(bgf, ggf, f["frequency"], f["recency_days"], f["T_days"],
                           f["monetary_value"], horizon=horizon_days)
    out["bgnbd_gg_value"] = pb["predicted_value"].to_numpy()
  else:
    not_fitted["bgnbd_gg"] = ("BG/NBD did not fit" if bgnbd is None else
                              "Gamma-Gamma did not fit") + " (see 'Not in this report')"
  pnbd = attempt("Pareto/NBD baseline", btyd.fit_with_penalizer_path, btyd.fit_pareto_nbd,
                 f["frequency"], f["recency_days"], f["T_days"], name="Pareto/NBD")
  if pnbd is not None and gamma_gamma is not None:
    pnf, info["pareto_nbd"] = pnbd
    pp = btyd.predict_pareto_nbd(pnf, gamma_gamma[0], f["frequency"], f["recency_days"],
                                 f["T_days"], f["monetary_value"], horizon=horizon_days)
    out["pnbd_gg_value"] = pp["predicted_value"].to_numpy()
    out["pnbd_gg_p_return"] = pp["p_return"].to_numpy()
    if pnbd[1]["penalizer"] > 0 or pp.attrs["n_nan"]:
      out.attrs.setdefault("model_notes", {})["pnbd_gg"] = "; ".join(
          ([f"Pareto/NBD needed penalizer {pnbd[1]['penalizer']:g} to converge"]
           if pnbd[1]["penalizer"] > 0 else []) +
          ([f"{pp.attrs['n_nan']} customers lifetimes could not evaluate, predicted 0"]
           if pp.attrs["n_nan"] else []))
  else:
    not_fitted["pnbd_gg"] = ("Pareto/NBD did not fit" if pnbd is None else
                             "Gamma-Gamma did not fit") + " (see 'Not in this report')"
  trees = attempt("gradient-boosted trees baseline", _gbt_predictions, features, is_test,
                  seed=seed)
  if trees is not None:
    out["gbt_value"] = trees[0]
    if trees[1] is not None:
      out["gbt_p_return"] = trees[1]
  else:
    not_fitted["gbt"] = "the trees could not be trained (see 'Not in this report')"
  out["spend_value"] = baselines.spend_baseline(  # at least one horizon of exposure
      f["total_spend"].to_numpy(), f["T_days"].to_numpy(), horizon_days)
  out.attrs["not_fitted"] = not_fitted
  return out, info


def _gbt_predictions(features: pd.DataFrame, is_test: np.ndarray, *, seed: int
                     ) -> tuple[np.ndarray, np.ndarray | None]:
  """The trees, trained on the training customers: (value, P(return) or None) for everyone."""
  X = model_inputs(features).to_numpy()
  y = features["holdout_value"].to_numpy(np.float64)
  p_return = None
  # one OpenMP thread: on a few thousand rows more threads only add contention with the kernel's
  # JAX threads (measured 60x slower on a busy 2-core machine)
  with threadpoolctl.threadpool_limits(limits=1):
    gbt = baselines.train_gbt(X[~is_test], y[~is_test], seed=seed)
    value = gbt.predict(X)  # the Poisson model's mean
    returned = y[~is_test] > 0
    if 0 < returned.sum() < len(returned):
      gbt_ret = baselines.train_gbt_return(X[~is_test], returned, seed=seed)
      p_return = gbt_ret.predict_proba(X)[:, 1]
  return value, p_return


def crossfit_folds(n: int, folds: int, seed: int) -> np.ndarray:
  """Each customer's fold, 0..folds-1, seeded and balanced (sizes differ by at most one)."""
  return np.random.default_rng(seed + 3).permutation(n) % folds


@optional("cross-fitted back-test over every customer")
def crossfit_value_models(cfg: ValueConfig, preds: pd.DataFrame | None, prep: Prepared,
                          review_scores: pd.DataFrame | None, embeddings: np.ndarray | None, *,
                          seed: int) -> pd.DataFrame | None:
  """The back-test over every customer: each predicted by models that never saw them.

  Customers are cut into ``cfg.cv_folds`` folds; for each fold the value networks (and the text
  features they use, whose return score learns from holdout labels) and the trees are trained on
  the other folds exactly as the single split trains them, and predict that fold. BG/NBD + Gamma-
  Gamma, Pareto/NBD + Gamma-Gamma and the spend rate learn nothing from the holdout, so their
  columns are copied from ``preds``, as is ``selection`` (the customers the scoring network is
  chosen on, which the evaluation leaves out). The end-to-end model is left out (minutes per fit
  on CPU). With ``cfg.train_sample``, each fold's models train on a stratified sample of that many
  customers of the other folds (:func:`cvlib.value.sampling.training_sample`), as the single
  split's do, and still predict every customer of their fold.

  With every customer scored once, the comparison rests on all of them instead of the test share
  (``value.test_size``): on Online Retail, 3,356 customers instead of 1,007, where one new customer's
  £65,000 holdout spend decides which model ranks best on the smaller set.

  Returns:
    A frame laid out like ``preds`` with ``is_test`` True everywhere (so
    :func:`evaluate_value_models` reads it unchanged) and a ``fold`` column; None when off
    (``cv_folds`` < 2), when there are no predictions, or when a fold would be too small to train on.
  """
  if preds is None or cfg.cv_folds < 2:
    return None
  features = prep.features
  n = len(features)
  if n < cfg.cv_folds * 20:
    return None
  fold = crossfit_folds(n, cfg.cv_folds, seed)
  keep = ["customer_id", "customer_key", "selection", "y_true", "returned", "bgnbd_gg_value",
          "bgnbd_gg_p_return", "pnbd_gg_value", "pnbd_gg_p_return", "spend_value"]
  out = preds[[c for c in keep if c in preds]].copy()  # a baseline that did not fit is absent
  out.insert(2, "is_test", True)
  out.insert(3, "fold", fold)
  qs = ((1 - cfg.interval) / 2, (1 + cfg.interval) / 2)
  cols: dict[str, np.ndarray] = {}  # NaN where a fold could not train the model (no ratings, ...)
  for k in range(cfg.cv_folds):
    held = fold == k
    # with value.train_sample, the fold's models train on a stratified sample of the other folds
    untrained = ~training_sample(features, ~held, cfg.train_sample, seed + 4 + k)
    text = None
    if review_scores is not None and embeddings is not None:
      text = make_customer_text(review_scores, embeddings, prep, untrained,
                                text_dims=cfg.text_dims, seed=seed + k, now=False).calibration
    networks = train_value_networks(cfg, features, text, untrained, seed=seed + k,
                                    horizon_days=prep.horizon_days, windows=prep.windows)
    for name, (predictor, _) in networks.items():
      p = predictor.predict(predictor_inputs(name, predictor, features.loc[held], text), qs=qs)
      for col, src in (("value", "predicted_value"), ("p_return", "p_return"), ("lo", "q10"),
                       ("hi", "q90")):
        cols.setdefault(f"{name}_{col}", np.full(n, np.nan))[held] = p[src].to_numpy()
    value, p_return = _gbt_predictions(features, untrained, seed=seed + k)
    cols.setdefault("gbt_value", np.full(n, np.nan))[held] = value[held]
    if p_return is not None:
      cols.setdefault("gbt_p_return", np.full(n, np.nan))[held] = p_return[held]
  for col, values in cols.items():
    if not np.isnan(values).any():  # only what every fold predicted
      out[col] = values
  return out


def _reported(frame: pd.DataFrame) -> pd.DataFrame:
  """The rows a figure is reported on: test customers, never the selection customers."""
  keep = frame["is_test"].to_numpy(bool).copy()
  if "selection" in frame:
    keep &= ~frame["selection"].to_numpy(bool)
  return frame[keep]


def choose_scoring_model(preds: pd.DataFrame) -> tuple[str | None, dict[str, Any]]:
  """The scoring network, chosen on the selection customers of the single split (the networks'
  validation rows), with what the choice saw; None when there is no network."""
  sel = preds[preds["selection"].to_numpy(bool)] if "selection" in preds else preds.iloc[:0]
  y = sel["y_true"].to_numpy()
  name, gini = select_scoring_model(
      y, {m: sel[f"{m}_value"].to_numpy() for m in NETWORK_INPUTS if f"{m}_value" in sel})
  return name, {"customers": SELECTION_CUSTOMERS, "n": int(len(sel)),
                "n_returning": int((y > 0).sum()), "gini": gini}


def evaluate_value_models(preds: pd.DataFrame | None, *, seed: int,
                          crossfit: pd.DataFrame | None = None,
                          scoring: str | None = None) -> dict[str, Any] | None:
  """The clv metrics (docs/contract.md) on test customers (None: no customers).

  The scoring network (``clv["scoring_model"]``) is chosen first, by :func:`choose_scoring_model`
  on the selection customers, unless ``scoring`` names it; those customers are left out of every
  figure here. The comparisons are declared before looking: the scoring network minus each
  baseline (``comparisons``, paired bootstrap 95% intervals of the Gini difference), and the
  review ablation. ``best`` is only descriptive: the model with the highest Gini on these
  customers, a baseline included.

  With ``crossfit`` (:func:`crossfit_value_models`), the same metrics over every customer but
  the selection customers go under ``"crossfit"``, with the number of folds.
  """
  if preds is None:
    return None
  if scoring is None:
    scoring, selection = choose_scoring_model(preds)
  else:
    selection = None
  if crossfit is not None:
    out = evaluate_value_models(preds, seed=seed, scoring=scoring)
    out["selection"] = selection
    every = evaluate_value_models(crossfit, seed=seed, scoring=scoring)
    del every["selection"]
    out["crossfit"] = {"folds": int(crossfit["fold"].max()) + 1, **every}
    return out
  test = _reported(preds)
  y = test["y_true"].to_numpy()
  models = {}
  for name in VALUE_MODELS:
    if f"{name}_value" not in test:
      continue
    p_ret = test[f"{name}_p_return"].to_numpy() if f"{name}_p_return" in test else None
    m = vm.value_metrics(y, test[f"{name}_value"].to_numpy(), p_return=p_ret)
    if f"{name}_lo" in test:
      m.update(vm.interval_coverage_by_return(y, test[f"{name}_lo"].to_numpy(),
                                              test[f"{name}_hi"].to_numpy()))
    models[name] = m
  best = max(models, key=lambda k: ranking_key(models[k]["gini"]))
  comparisons = {}
  if scoring in models:
    for name in BASELINES:
      if name in models:
        d, lo, hi = vm.bootstrap_gini_diff(y, test[f"{scoring}_value"].to_numpy(),
                                           test[f"{name}_value"].to_numpy(), seed=seed)
        comparisons[f"{scoring} - {name}"] = {
            "scoring_model": scoring, "baseline": name, "diff": d, "lo95": lo, "hi95": hi,
            "verdict": ("scoring model better" if lo > 0 else "baseline better" if hi < 0 else
                        "no clear difference")}
  ablation = {}
  for key, (a, b) in {"do_reviews_help": ("ziln_text", "ziln"),
                      "does_text_help": ("ziln_text", "ziln_ratings"),
                      "do_ratings_help": ("ziln_ratings", "ziln"),
                      "does_end_to_end_help": (
                          E2E_MODEL, "ziln_ratings" if "ziln_ratings" in models else "ziln")
                      }.items():
    if a in models and b in models:
      d, lo, hi = vm.bootstrap_gini_diff(y, test[f"{a}_value"].to_numpy(),
                                         test[f"{b}_value"].to_numpy(), seed=seed)
      ablation[key] = {"with": a, "without": b, "gini_with": models[a]["gini"],
                       "gini_without": models[b]["gini"], "diff": d, "lo95": lo, "hi95": hi,
                       "verdict": ("helped" if lo > 0 else "hurt" if hi < 0 else
                                   "no clear difference")}
  out = {"n_test": int(len(test)), "n_test_returning": int((y > 0).sum()),
         "scoring_model": scoring, "selection": selection, "best": best, "models": models,
         "comparisons": comparisons, "ablation": ablation}
  for key in ("not_fitted", "model_notes"):
    if preds.attrs.get(key):
      out[key] = dict(preds.attrs[key])
  return out


@optional("churn comparison")
def churn_metrics(preds: pd.DataFrame | None, model: str | None,
                  crossfit: pd.DataFrame | None = None) -> dict[str, Any] | None:
  """AUC and PR-AUC of churn (no purchase in the horizon) for ``model`` and for BG/NBD, on the
  test customers; with ``crossfit`` (and the model in it) the same on every customer but the
  selection customers under ``"crossfit"``."""
  if preds is None or model is None:
    return None
  out = _churn(_reported(preds), model)
  if crossfit is not None and f"{model}_p_return" in crossfit:
    out["crossfit"] = _churn(_reported(crossfit), model)
  return out


def _churn(frame: pd.DataFrame, model: str) -> dict[str, Any]:
  from sklearn.metrics import average_precision_score, roc_auc_score
  churned = ~frame["returned"].to_numpy(bool)
  if churned.all() or not churned.any():
    return {"auc": None, "pr_auc": None, "model": model,
            "note": "every customer is in one class; AUC undefined"}
  out = {"model": model, "churn_rate": float(churned.mean()), "n": int(len(frame))}
  for name, key in ((model, ""), ("bgnbd_gg", "bgnbd_")):
    if f"{name}_p_return" not in frame:  # BG/NBD did not fit on this shop
      continue
    p = 1 - frame[f"{name}_p_return"].to_numpy()
    out[f"{key}auc"] = float(roc_auc_score(churned, p))
    out[f"{key}pr_auc"] = float(average_precision_score(churned, p))
  return out


def model_table(clv: dict[str, Any] | None) -> pd.DataFrame:
  """One row per value model, best first, the scoring network marked; a baseline that could not
  be fitted on this shop last, with the reason in its ``note``. Interval coverage is shown among
  customers who bought again and among those who did not (zero spend sits in most intervals)."""
  rows = []
  if clv is None:
    return pd.DataFrame(rows)
  missing, model_notes = clv.get("not_fitted") or {}, clv.get("model_notes") or {}
  for name, m in clv["models"].items():
    role = ("scores customers" if name == clv.get("scoring_model") else
            "baseline" if name in BASELINES else "")
    rows.append({"model": VALUE_MODELS.get(name, name), "role": role, "Gini": m["gini"],
                 "Spearman": m["spearman"], "decile MAPE": m["decile_mape"],
                 "top 20% share of value": m.get("top20_share"),
                 "AUC returning": m["auc_returning"], "MAE": m["mae"],
                 "80% interval coverage, returning": m.get("interval_coverage_returning"),
                 "80% interval coverage, not returning": m.get("interval_coverage_not_returning"),
                 **({"note": model_notes.get(name, "")} if missing or model_notes else {})})
  table = pd.DataFrame(rows).sort_values("Gini", ascending=False, kind="stable")
  if missing or model_notes:
    table = pd.concat([table, pd.DataFrame([{"model": VALUE_MODELS.get(n, n), "role": "baseline",
                                             "note": f"not fitted: {why}"}
                                            for n, why in missing.items()])], ignore_index=True)
  return table


def _pct(x: float | None) -> str:
  """A share or relative error for the text; "–" when undefined."""
  return f"{x:.0%}" if x is not None and np.isfinite(x) else "–"


def _baseline_verdict(clv: dict, who: str) -> str:
  """One plain sentence: which baselines the scoring network beats, and which beat it."""
  comps = clv.get("comparisons") or {}
  if not comps:
    return ""
  parts = {"scoring model better": [], "baseline better": [], "no clear difference": []}
  for c in comps.values():
    parts[c["verdict"]].append(VALUE_MODELS[c["baseline"]])
  out = []
  if parts["baseline better"]:
    out.append(f"{', '.join(parts['baseline better'])} ranked these {who} better than the "
               "scoring network (95% interval of the difference below zero)")
  if parts["scoring model better"]:
    out.append(f"it ranked them better than {', '.join(parts['scoring model better'])}")
  if parts["no clear difference"]:
    out.append(f"against {', '.join(parts['no clear difference'])} there is no clear difference")
  best = clv.get("best")
  if best in BASELINES and best != clv.get("scoring_model"):
    out.append(f"the highest Gini here is a baseline's, {VALUE_MODELS[best]}")
  text = "; ".join(out) + "."
  return text[0].upper() + text[1:]


def _gini_text(gini: float | None) -> str:
  """A Gini for the headline; "–" when undefined (nobody bought in the holdout)."""
  return f"{gini:.2f}" if ranking_key(gini) > -np.inf else "–"


# --- 04 segment --------------------------------------------------------------------------------


def plot_deciles(preds: pd.DataFrame | None, clv: dict | None):
  """Decile chart of the scoring network and the two best other models, or a placeholder when
  value does not apply."""
  if clv is None:
    return plots.plot_not_applicable("Decile chart", "no customers with orders")
  return vm.plot_decile_chart(decile_tables(preds, clv))


def plot_gains(preds: pd.DataFrame | None):
  if preds is None:
    return plots.plot_not_applicable("Gain curves", "no customers with orders")
  return vm.plot_gain_curves(*gain_inputs(preds))


def ablation_table(clv: dict | None) -> pd.DataFrame:
  """The "do reviews help?" comparisons, one row each on the test customers and, when the
  cross-fitted back-test ran, one each on every customer (empty when value does not apply)."""
  if not clv:
    return pd.DataFrame()
  frames = [pd.DataFrame(clv["ablation"]).T.assign(customers="test")] if clv["ablation"] else []
  if (clv.get("crossfit") or {}).get("ablation"):
    frames.append(pd.DataFrame(clv["crossfit"]["ablation"]).T.assign(
        customers="all but selection, cross-fitted"))
  return pd.concat(frames) if frames else pd.DataFrame()


def gini_difference_table(clv: dict | None) -> pd.DataFrame:
  """The pre-declared comparisons: the scoring network minus each baseline, Gini difference with
  its paired bootstrap 95% interval, on the test customers and, when it ran, cross-fitted."""
  if not clv or not clv.get("comparisons"):
    return pd.DataFrame()
  frames = [pd.DataFrame(clv["comparisons"]).T.assign(customers="test")]
  if (clv.get("crossfit") or {}).get("comparisons"):
    frames.append(pd.DataFrame(clv["crossfit"]["comparisons"]).T.assign(
        customers="all but selection, cross-fitted"))
  return pd.concat(frames)


def decile_tables(preds: pd.DataFrame, clv: dict) -> dict[str, pd.DataFrame]:
  """The scoring network's decile table and those of the two best other models (test customers)."""
  test = _reported(preds)
  first = [clv["scoring_model"]] if clv.get("scoring_model") in clv["models"] else []
  order = first + sorted((m for m in clv["models"] if m not in first),
                         key=lambda m: -ranking_key(clv["models"][m]["gini"]))[:3 - len(first)]
  return {VALUE_MODELS[m]: vm.decile_table(test["y_true"].to_numpy(),
                                           test[f"{m}_value"].to_numpy()) for m in order}


def gain_inputs(preds: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  test = preds[preds["is_test"]]
  return test["y_true"].to_numpy(), {VALUE_MODELS[m]: test[f"{m}_value"].to_numpy()
                                     for m in VALUE_MODELS if f"{m}_value" in test}


@optional("comparison with the true expected value (synthetic shops)")
def oracle_metrics(preds: pd.DataFrame | None, truth: dict[str, pd.DataFrame]) -> dict | None:
  """Against the simulator's true expected value (synthetic data only; else None).

  Returns:
    The Gini of the true expected holdout value (the ceiling for any model on this holdout) and
    each model's Spearman correlation with the true expected value, on test customers.
  """
  from scipy.stats import spearmanr

  if "truth" not in truth or preds is None:
    return None
  t = truth["truth"].set_index("customer_id")["expected_value_holdout"]
  test = preds[preds["is_test"]]
  expected = t.reindex(test["customer_id"].astype(str)).to_numpy()
  ok = ~np.isnan(expected)
  spearman = {m: float(spearmanr(test[f"{m}_value"].to_numpy()[ok], expected[ok]).statistic)
              for m in VALUE_MODELS if f"{m}_value" in test}
  return {"gini": vm.gini_normalised(test["y_true"].to_numpy()[ok], expected[ok]),
          "n": int(ok.sum()), "spearman_vs_true_expected_value": spearman,
          "note": "Gini of the true expected holdout value: the ceiling for any model"}


def save_evaluate(ws: Workspace, preds: pd.DataFrame | None, clv: dict | None,
                  churn: dict | None, info: dict, oracle: dict | None,
                  crossfit: pd.DataFrame | None = None) -> dict:
  ws.save_json("clv", clv)
  ws.save_json("btyd_params", info)
  if clv is None:
    metrics = {"clv": None, "churn": None, "oracle": None,
               "notes": {"clv": NOT_APPLICABLE["value"], "churn": NOT_APPLICABLE["value"]}}
  else:
    ws.save_frame("predictions", preds.drop(columns=["customer_id"]))
    if crossfit is not None:
      ws.save_frame("predictions_crossfit", crossfit.drop(columns=["customer_id"]))
    horizon = int(ws.load_json("split")["horizon_days"])
    metrics = {"clv": {"horizon_days": horizon, **clv}, "churn": churn, "oracle": oracle}
  ws.save_metrics(metrics)
  return metrics


def report_evaluate(ws: Workspace, clv: dict | None, churn: dict | None, oracle: dict | None,
                    figures: list) -> None:
  ws.add_skipped(take_skipped())
  if clv is None:
    ws.add_text("value", f"Not part of this report: {NOT_APPLICABLE['value']}.")
    return
  cv = clv.get("crossfit")
  if clv.get("n_test_returning", MIN_RETURNING) < MIN_RETURNING:
    ws.add_warning(f"Only {clv['n_test_returning']} of {clv['n_test']:,} test customers bought "
                   "again in the holdout period: too few to tell the value models apart; read "
                   "the comparison below as noise.")
  scorer = clv.get("scoring_model")
  sm = clv["models"].get(scorer) if scorer else None
  if sm is not None:
    # the network that writes scores.parquet, on customers it was neither trained nor chosen on
    ws.add_headline("ranking quality (Gini)", _gini_text(sm["gini"]),
                    f"{VALUE_MODELS[scorer]} (scores customers), {clv['n_test']:,} test customers")
    sel = clv.get("selection") or {}
    ws.add_text("value", f"Customers are scored by the {VALUE_MODELS[scorer]}, chosen among the "
                f"networks by its Gini on {sel.get('n', 0):,} other customers "
                f"({SELECTION_CUSTOMERS}). On the {clv['n_test']:,} test customers, which no "
                f"model trained on and the choice never saw, it reaches a Gini of "
                f"{_gini_text(sm['gini'])} and a decile error of {_pct(sm['decile_mape'])}; its "
                f"top 20% of customers hold {_pct(sm['top20_share'])} of their actual holdout spend.")
    ws.add_text("value", _baseline_verdict(clv, "test customers"))
  ws.add_text("value", "Baselines. " + " ".join(
      f"{VALUE_MODELS[m]}: {d}" for m, d in BASELINES.items()))
  ws.add_text("value", "Decile error (MAPE) is averaged over all ten deciles of predicted "
              "value; a decile whose customers spent nothing counts with its absolute error "
              "relative to the mean spend of all customers. Interval coverage is shown among "
              "customers who bought again and among those who did not: a customer who spends "
              "nothing is inside almost any interval that starts at zero.")
  ws.add_table("value", model_table(clv), "Back-test on test customers, best first.")
  if cv:
    cs = cv["models"].get(scorer) if scorer else None
    ws.add_text("value", f"The same comparison over all {cv['n_test']:,} customers but the "
                f"selection ones ({cv['n_test_returning']:,} bought again): the customers were "
                f"cut into {cv['folds']} groups and each group was predicted by models trained on "
                "the others, so every customer is scored by models that never saw their holdout "
                "spend."
                + (f" The scoring network here: Gini {_gini_text(cs['gini'])}, decile error "
                   f"{_pct(cs['decile_mape'])}. " + _baseline_verdict(cv, "customers")
                   if cs else "")
                + " The end-to-end model is not refitted per group (too slow).")
    ws.add_table("value", model_table(cv), "Cross-fitted back-test on every customer but the "
                 "selection ones, best first.")
  comparisons = gini_difference_table(clv)
  if len(comparisons):
    ws.add_table("value", comparisons[["customers", "scoring_model", "baseline", "diff", "lo95",
                                       "hi95", "verdict"]],
                 "Declared before looking: the scoring network's Gini minus each baseline's, "
                 "with a paired bootstrap 95% interval.")
  questions = {"do_reviews_help": "Do reviews (stars and text) add to purchase history?",
               "do_ratings_help": "Do star ratings add to purchase history?",
               "does_text_help": "Does review text add to the star ratings?"}
  ablation, on = clv["ablation"], f"the {clv['n_test']:,} test customers"
  if cv and cv.get("ablation"):  # the steadier answer: every customer
    ablation, on = cv["ablation"], (f"all {cv['n_test']:,} customers but the selection ones, "
                                    "cross-fitted")
  for key, question in questions.items():
    a = ablation.get(key)
    if a:
      ws.add_text("value", f"{question} Gini {a['gini_with']:.3f} with, {a['gini_without']:.3f} "
                  f"without on {on} (difference {a['diff']:+.3f}, 95% interval "
                  f"{a['lo95']:+.3f} to {a['hi95']:+.3f}): {a['verdict']}.")
  if oracle:
    rho = oracle["spearman_vs_true_expected_value"]
    ws.add_text("value", f"On this synthetic shop the true expected spend reaches a Gini of "
                f"{oracle['gini']:.3f}: no model can rank better than that on this holdout. "
                "Spearman correlation of each model's prediction with the true expected spend: "
                + ", ".join(f"{VALUE_MODELS[m]} {r:.3f}" for m, r in rho.items()) + ".")
  if churn and churn.get("auc") is not None:
    every = (churn.get("crossfit") or {})
    bg = lambda c: f" (BG/NBD {c['bgnbd_auc']:.3f})" if c.get("bgnbd_auc") is not None else ""
    more = (f" Over the {every['n']:,} customers but the selection ones, cross-fitted: AUC "
            f"{every['auc']:.3f}{bg(every)}, "
            f"PR-AUC {every['pr_auc']:.3f}." if every.get("auc") is not None else "")
    ws.add_text("value", f"Churn (no purchase in the holdout): AUC {churn['auc']:.3f}{bg(churn)}, "
                f"PR-AUC {churn['pr_auc']:.3f} on the test customers.{more}")
  for fig, caption in zip(figures, (
      "Decile chart: customers ranked by predicted value, mean predicted vs actual holdout "
      "spend per tenth.", "Gain curves: share of holdout spend captured by the top-ranked "
      "customers.", "What the scoring model relies on: the drop in Gini when each input is "
      "shuffled (test customers).")):
    ws.add_figure("value", fig, caption)


# --- explanations and opinion monitoring (cvlib.insight.explain, cvlib.insight.monitoring) ----------------------

@optional("what the scoring model relies on")
def value_importance(networks: dict, name: str | None, features: pd.DataFrame,
                     text: pd.DataFrame | None, is_test: np.ndarray, *, seed: int
                     ) -> pd.DataFrame | None:
  """Permutation importance (Gini drop) of the scoring network's inputs on test customers."""
  from cvlib.insight import explain
  if name is None:
    return None
  predictor, _ = networks[name]
  X = predictor_inputs(name, predictor, features, text)[is_test].reset_index(drop=True)
  y = features["holdout_value"].to_numpy()[is_test]
  if WINDOW_INPUT in X:  # 0 for everyone scored: nothing to shuffle
    return explain.permutation_importance(
        lambda x: predictor.predict(x.assign(**{WINDOW_INPUT: 0.0})),
        X.drop(columns=[WINDOW_INPUT]), y, seed=seed)
  return explain.permutation_importance(predictor.predict, X, y, seed=seed)


def plot_value_importance(importance: pd.DataFrame | None):
  from cvlib.insight import explain
  if importance is None:
    return plots.plot_not_applicable("Feature importance", NOT_APPLICABLE["value"])
  return explain.plot_importance(importance)

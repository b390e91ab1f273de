"""How much the demo's review text says about returning, and whether it can move the value ranking.

Reads a finished demo run (default ``reports/demo``) and measures, on its test customers:

1. the text return score (``text_features.fit_text_return_score``, fitted on the training customers as
   the run does): AUC for "bought again in the holdout" among test customers who reviewed;
2. an upper bound for text: the ratings network retrained with the TRUE stated intent of each
   customer's latest review (read off the generator's intent sentences, known only because the
   data are synthetic) as one more input, against the same network without it (same split,
   settings and seed). If even the truth leaves the Gini unchanged, no text feature can help
   the ranking on these data.
3. the same over every customer, cross-fitted (five folds, as the report's second back-test),
   with a second, more generous ceiling: each reviewer's TRUE spend rate (log of purchase rate x
   mean order value, known only to the simulator) as an input. And the Gini of the simulator's
   "still alive at the cutoff" flag alone: what decides this shop's ranking.

Usage::

  python benchmarks/demo_text_signal.py [RUN_DIR] [--out benchmarks/results/demo_text_signal.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run_dir", nargs="?", type=Path, default=HERE.parent / "reports" / "demo")
  p.add_argument("--out", type=Path, default=HERE / "results" / "demo_text_signal.json")
  args = p.parse_args(argv)

  from cvlib import config
  from cvlib.stages import evaluate
  from cvlib.value import networks
  from cvlib.value import text_features

  from cvlib.data import synthetic

  from cvlib.value import metrics as value_metrics, ziln
  art = args.run_dir / "artifacts"
  run = json.loads((args.run_dir / "run.json").read_text())
  params = config.params_from_dict(run["params"])
  features = pd.read_parquet(art / "features.parquet")
  is_test = np.load(art / "is_test.npy")
  scores = pd.read_parquet(art / "review_scores.parquet")
  emb = np.load(art / "review_embeddings.npy")
  reviews = pd.read_parquet(art / "reviews.parquet")
  cutoff = pd.Timestamp(json.loads((art / "split.json").read_text())["cutoff"])
  y = features["holdout_value"].to_numpy(np.float64)
  train_ids = features["customer_id"][~is_test]

  fz = text_features.fit_text_featurizer(scores, emb, train_ids, cutoff.date(), params.value.text_dims)
  fz, _ = text_features.fit_text_return_score(fz, scores, emb, train_ids, y[~is_test] > 0,
                                         cutoff.date(), seed=params.seed)
  test = fz.transform(features["customer_id"][is_test], scores, emb, cutoff.date())
  has = test["has_text"].to_numpy() > 0
  returned = y[is_test] > 0
  auc = float(roc_auc_score(returned[has], test["text_return_logit"].to_numpy()[has]))

  # the true stated intent of each customer's latest review before the cutoff: +1, -1 or 0
  r = scores.merge(reviews[["review_id", "text"]], on="review_id")
  text = r["text"].fillna("").str.lower()
  says = {k: text.apply(lambda t, k=k: any(s.lower().rstrip(".") in t
                                           for s in synthetic._INTENT[k]))  # noqa: SLF001
          for k in (True, False)}
  r["intent"] = np.where(says[False], -1, np.where(says[True], 1, 0))
  latest = (r[(r["timestamp"] < cutoff) & r["customer_id"].notna()].sort_values("timestamp")
            .groupby("customer_id")["intent"].last())
  base = networks.network_inputs("ziln_ratings", features, None)
  fit_idx, val_idx = networks.value_split(is_test, params.seed)
  v = params.value
  ginis = {}
  for name, X in (("ratings", base),
                  ("ratings + true intent",
                   base.assign(true_intent=features["customer_id"].astype(str).map(latest)
                               .fillna(0).to_numpy()))):
    predictor, _ = ziln.train_ziln(X.iloc[fit_idx], y[fit_idx], X.iloc[val_idx], y[val_idx],
                                   hidden=v.hidden, dropout=v.dropout, epochs=v.epochs,
                                   batch_size=v.batch_size, learning_rate=v.learning_rate,
                                   patience=v.patience, seed=params.seed)
    pred = predictor.predict(X)["predicted_value"].to_numpy()
    ginis[name] = float(value_metrics.gini_normalised(y[is_test], pred[is_test]))
  # 3. every customer, cross-fitted
  t = pd.read_parquet(art / "truth_truth.parquet").set_index("customer_id")
  t = t.reindex(features["customer_id"].astype(str))
  reviewed = features["n_reviews"].to_numpy() > 0
  true_rate = np.where(reviewed, np.log(t["lambda"].to_numpy() * t["zeta"].to_numpy()), 0.0)
  intent = features["customer_id"].astype(str).map(latest).fillna(0).to_numpy()
  fold = evaluate.crossfit_folds(len(features), 5, params.seed)
  cv = {}
  for name, X in (("history", networks.network_inputs("ziln", features, None)),
                  ("ratings", base), ("ratings + true intent", base.assign(true_intent=intent)),
                  ("ratings + true spend rate of reviewers",
                   base.assign(true_rate=true_rate, reviewed=reviewed.astype(float)))):
    pred = np.zeros(len(y))
    for k in range(5):
      held = fold == k
      fi, vi = networks.value_split(held, params.seed + k)
      predictor, _ = ziln.train_ziln(X.iloc[fi], y[fi], X.iloc[vi], y[vi], hidden=v.hidden,
                                     dropout=v.dropout, epochs=v.epochs,
                                     batch_size=v.batch_size, learning_rate=v.learning_rate,
                                     patience=v.patience, seed=params.seed + k)
      pred[held] = predictor.predict(X[held])["predicted_value"].to_numpy()
    cv[name] = float(value_metrics.gini_normalised(y, pred))
  alive = t["alive_at_cutoff"].to_numpy(float)
  result = {"run_dir": str(args.run_dir), "test_reviewers": int(has.sum()),
            "text_return_score_auc_test_reviewers": auc,
            "latest_review_states_intent_share": float((latest != 0).mean()),
            "gini_test": ginis, "gini_crossfit_all_customers": cv,
            "reviewers_share": float(reviewed.mean()),
            "gini_true_expected_value_all": float(value_metrics.gini_normalised(
                y, t["expected_value_holdout"].to_numpy())),
            # ties broken by the purchase rate, so the flag alone is a ranking
            "gini_true_alive_flag_all": float(value_metrics.gini_normalised(
                y, alive + 1e-9 * t["lambda"].to_numpy())),
            "alive_share": float(alive.mean())}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + "\n")
  print(json.dumps(result, indent=2))
  return result


if __name__ == "__main__":
  main()

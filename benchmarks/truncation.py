"""Long reviews: head-only against head + tail truncation at 128 tokens, on women's clothing.

Issue 21, part 4. Both arms run the report's own sentiment path (``cvlib.stages.finetune``:
``make_sentiment_data``, ``prepare_encoder``, ``fine_tune_sentiment``) on the same split with the
same seed and settings; only ``finetune.truncation`` differs ("head": the first 126 word pieces
between [CLS] and [SEP]; "head_tail": the first quarter of them and the last three quarters). Data
come through ``cvlib.load_params(params/womens_clothing.yaml)``, ``cvlib.load_data`` and the
cleaning, as a report reads them. The two arms run side by side, one process each.

A reduced configuration that a shared 2-core CPU can afford: a stratified sample of
``--max-train`` training reviews, ``--epochs`` epoch(s), a seeded sample of ``--max-val``
validation reviews (early stopping only). The test split is the report's test split. With
``--test-sample N`` the arms are scored on every test review longer than the largest bucket (the
only ones whose input differs between the arms) and a seeded sample of N of the others, and
accuracy and macro-F1 over the whole test split are estimated with each sampled review weighted by
the inverse of its sampling rate (exact for the long reviews, an unbiased count for the others);
0 scores every test review. Reported: accuracy and macro-F1 of both arms, the same on the long test
reviews, and a paired bootstrap interval of the difference (head_tail minus head; resampling
within the two strata).

Usage::

  CVLIB_DATA_DIR=/path/to/datasets nice python benchmarks/truncation.py \\
      --out benchmarks/results/truncation_womens.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ARMS = ("head", "head_tail")


def weighted_scores(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> dict[str, float]:
  """Accuracy and macro-F1 (two classes) with a weight per review."""
  acc = float(np.sum(w * (y == pred)) / np.sum(w))
  f1s = []
  for c in (0, 1):
    tp = np.sum(w * ((pred == c) & (y == c)))
    fp = np.sum(w * ((pred == c) & (y != c)))
    fn = np.sum(w * ((pred != c) & (y == c)))
    f1s.append(float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn > 0 else 0.0)
  return {"accuracy": acc, "macro_f1": float(np.mean(f1s))}


def paired_bootstrap(y: np.ndarray, a: np.ndarray, b: np.ndarray, w: np.ndarray,
                     strata: np.ndarray, *, rounds: int, seed: int) -> dict[str, list[float]]:
  """95% intervals of b's minus a's weighted accuracy and macro-F1, reviews drawn with
  replacement within each stratum (the same draw for both predictions)."""
  rng = np.random.default_rng(seed)
  groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
  diffs = {"accuracy": [], "macro_f1": []}
  for _ in range(rounds):
    ix = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
    sa = weighted_scores(y[ix], a[ix], w[ix])
    sb = weighted_scores(y[ix], b[ix], w[ix])
    for k in diffs:
      diffs[k].append(sb[k] - sa[k])
  return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
          for k, v in diffs.items()}


def _setup(args: argparse.Namespace) -> dict[str, Any]:
  """The split, the test reviews scored and their weights: the same in every process."""
  import cvlib
  from cvlib.data.clean import clean_tables
  from cvlib.stages import finetune
  from cvlib.text import tokens

  buckets = [b for b in (32, 64, 128, 256) if b < args.max_length] + [args.max_length]
  params = cvlib.load_params(args.params, [
      f"finetune.max_train_examples={args.max_train}", f"finetune.training.epochs={args.epochs}",
      f"finetune.buckets={buckets}"])
  tables, _ = clean_tables(cvlib.load_data(params))
  data = finetune.make_sentiment_data(params.finetune, tables.reviews, seed=params.seed)
  rng = np.random.default_rng(params.seed)
  if args.max_val and len(data.val_texts) > args.max_val:  # early stopping only: a sample will do
    keep = np.sort(rng.choice(len(data.val_texts), args.max_val, replace=False))
    data = dataclasses.replace(data, val_texts=[data.val_texts[i] for i in keep],
                               val_labels=data.val_labels[keep])
  full = tokens.load_tokenizer(max_length=512)
  length = np.asarray([len(x) for x in tokens.tokenize_texts(full, data.test_texts,
                                                             max_length=512)])
  long = length > args.max_length
  scored = np.ones(len(length), bool)
  weight = np.ones(len(length))
  short = np.flatnonzero(~long)
  if args.test_sample and args.test_sample < len(short):
    picked = np.sort(rng.choice(short, args.test_sample, replace=False))
    scored = long.copy()
    scored[picked] = True
    weight[short] = len(short) / args.test_sample
  return {"params": params, "reviews": tables.reviews, "data": data, "length": length,
          "long": long, "scored": scored, "weight": weight}


def run_arm(args: argparse.Namespace, arm: str, out: Path) -> None:
  """One arm (a child process): fine-tune with this truncation, predict the scored test reviews."""
  from cvlib.stages import finetune
  from cvlib.text import sentiment
  s = _setup(args)
  params, data = s["params"], s["data"]
  cfg = dataclasses.replace(params.finetune, truncation=arm)
  t0 = time.perf_counter()
  encoder = finetune.prepare_encoder(cfg, s["reviews"], data, language=params.language,
                                     seed=params.seed, progress=False)
  model, tok, history = finetune.fine_tune_sentiment(cfg, data, encoder, seed=params.seed)
  t1 = time.perf_counter()
  texts = [t for t, keep in zip(data.test_texts, s["scored"]) if keep]
  pred = sentiment.predict_proba(model, tok, texts, buckets=cfg.buckets,
                                 truncation=arm).argmax(axis=1)
  out.write_text(json.dumps({"pred": pred.tolist(), "history": history.to_dict(orient="records"),
                             "finetune_seconds": t1 - t0,
                             "predict_seconds": time.perf_counter() - t1}) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--params", default=str(REPO / "params" / "womens_clothing.yaml"))
  p.add_argument("--max-train", type=int, default=1000)
  p.add_argument("--max-val", type=int, default=300)
  p.add_argument("--epochs", type=int, default=1)
  p.add_argument("--max-length", type=int, default=128, help="the largest bucket")
  p.add_argument("--test-sample", type=int, default=600,
                 help="test reviews scored besides the long ones; 0 scores them all")
  p.add_argument("--bootstrap", type=int, default=1000)
  p.add_argument("--out", type=Path, default=None)
  p.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
  p.add_argument("--arm-out", type=Path, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.arm:
    run_arm(args, args.arm, args.arm_out)
    return {}

  start = time.perf_counter()
  load = os.getloadavg()
  work = Path(os.environ.get("TMPDIR", "/tmp")) / f"truncation-{os.getpid()}"
  work.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
  procs = {arm: subprocess.Popen([sys.executable, __file__, *(argv or sys.argv[1:]), "--arm", arm,
                                  "--arm-out", str(work / f"{arm}.json")], env=env)
           for arm in ARMS}
  s = _setup(args)  # meanwhile: the same split here, for the scoring
  for arm, proc in procs.items():
    if proc.wait() != 0:
      raise SystemExit(f"arm {arm} failed (exit status {proc.returncode})")
  runs = {arm: json.loads((work / f"{arm}.json").read_text()) for arm in ARMS}

  import jax
  from cvlib.text import sentiment_baselines
  params, data = s["params"], s["data"]
  scored, long = s["scored"], s["long"]
  y = np.asarray(data.test_labels)[scored]
  w, is_long = s["weight"][scored], long[scored]
  arms, preds = {}, {}
  for arm in ARMS:
    pred = np.asarray(runs[arm]["pred"])
    preds[arm] = pred
    arms[arm] = {"test": weighted_scores(y, pred, w),
                 "test_long": weighted_scores(y[is_long], pred[is_long], w[is_long]),
                 **{k: runs[arm][k] for k in ("history", "finetune_seconds", "predict_seconds")}}
    print(arm, arms[arm]["test"], "long:", arms[arm]["test_long"], flush=True)
  tfidf = sentiment_baselines.tfidf_logreg(
      data.train_texts + data.val_texts, np.concatenate([data.train_labels, data.val_labels]),
      [t for t, keep in zip(data.test_texts, scored) if keep], seed=params.seed)
  cfg = params.finetune
  result = {
      "benchmark": "truncation",
      "dataset": params.dataset,
      "what": ("head-only against head + tail truncation (finetune.truncation) at "
               f"{args.max_length} tokens; same split, seed and settings; test split reported"),
      "settings": {"max_train_examples": args.max_train, "max_val": args.max_val,
                   "epochs": args.epochs, "buckets": list(cfg.buckets),
                   "batch_size": cfg.training.batch_size,
                   "learning_rate": cfg.optimizer.learning_rate, "encoder": cfg.encoder,
                   "label_scheme": cfg.label_scheme, "seed": params.seed,
                   "test_sample": args.test_sample,
                   "head_tail_split": "first quarter + last three quarters of the tokens between "
                                      "[CLS] and [SEP]"},
      "split": {"train": len(data.train_labels), "validation": len(data.val_labels),
                "test": len(data.test_labels), "labelled": data.n_labelled,
                "test_scored": int(scored.sum()),
                "test_longer_than_max_length": int(long.sum()),
                "test_long_share": float(long.mean()),
                "test_length_percentiles": {str(q): float(np.percentile(s["length"], q))
                                            for q in (50, 90, 95, 99, 100)},
                "estimate": ("every long test review, a seeded sample of the others weighted "
                             "by the inverse of its sampling rate" if args.test_sample
                             else "every test review")},
      "arms": arms,
      "difference_head_tail_minus_head": {
          "test": {k: arms["head_tail"]["test"][k] - arms["head"]["test"][k]
                   for k in ("accuracy", "macro_f1")},
          "test_long": {k: arms["head_tail"]["test_long"][k] - arms["head"]["test_long"][k]
                        for k in ("accuracy", "macro_f1")},
          "test_bootstrap_95": paired_bootstrap(y, preds["head"], preds["head_tail"], w, is_long,
                                                rounds=args.bootstrap, seed=params.seed),
          "scored_predictions_changed": int((preds["head"] != preds["head_tail"]).sum()),
          "long_predictions_changed": int((preds["head"] != preds["head_tail"])[is_long].sum())},
      "tfidf_logreg_test": weighted_scores(y, tfidf, w),
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "device": str(jax.devices()[0]), "jax": jax.__version__,
                  "load_avg_start": list(load), "load_avg_end": list(os.getloadavg())},
      "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
      "total_seconds": time.perf_counter() - start,
  }
  if args.out is not None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
  return result


if __name__ == "__main__":
  main()

"""Long reviews: head-only against head + tail truncation at 128 tokens, on women's clothing.

Issue 21, part 4. Both arms run the report's own sentiment path (``cvlib.stages.finetune``:
``make_sentiment_data``, ``prepare_encoder``, ``fine_tune_sentiment``) on the same split with the
same seed and settings; only ``finetune.truncation`` differs ("head": the first 126 word pieces
between [CLS] and [SEP]; "head_tail": the first quarter of them and the last three quarters). Data
come through ``cvlib.load_params(params/womens_clothing.yaml)``, ``cvlib.load_data`` and the
cleaning, as a report reads them.

A reduced configuration that fits a shared 2-core CPU in about 15 minutes for both arms: a
stratified sample of ``--max-train`` training reviews, ``--epochs`` epochs, a seeded sample of
``--max-val`` validation reviews (early stopping only); the test split is the report's whole test
split. Reported on the test split: accuracy and macro-F1 of both arms, the same on the test reviews
longer than the largest bucket (the only ones whose input differs between the arms), and a paired
bootstrap interval of the difference (head_tail minus head).

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
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ARMS = ("head", "head_tail")


def _scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
  from cvlib.text import labels
  m = labels.classification_metrics(y, pred, num_classes=2)
  return {"accuracy": float(m["accuracy"]), "macro_f1": float(m["macro_f1"])}


def paired_bootstrap(y: np.ndarray, a: np.ndarray, b: np.ndarray, *, rounds: int,
                     seed: int) -> dict[str, list[float]]:
  """95% intervals of b's minus a's accuracy and macro-F1 over test reviews drawn with
  replacement (the same draw for both predictions)."""
  rng = np.random.default_rng(seed)
  diffs = {"accuracy": [], "macro_f1": []}
  for _ in range(rounds):
    ix = rng.integers(0, len(y), len(y))
    sa, sb = _scores(y[ix], a[ix]), _scores(y[ix], b[ix])
    for k in diffs:
      diffs[k].append(sb[k] - sa[k])
  return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
          for k, v in diffs.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--params", default=str(REPO / "params" / "womens_clothing.yaml"))
  p.add_argument("--max-train", type=int, default=3000)
  p.add_argument("--max-val", type=int, default=1000)
  p.add_argument("--epochs", type=int, default=1)
  p.add_argument("--max-length", type=int, default=128, help="the largest bucket")
  p.add_argument("--bootstrap", type=int, default=1000)
  p.add_argument("--out", type=Path, default=None)
  args = p.parse_args(argv)

  import jax
  import cvlib
  from cvlib.data.clean import clean_tables
  from cvlib.stages import finetune
  from cvlib.text import sentiment, sentiment_baselines, tokens

  start = time.perf_counter()
  load = os.getloadavg()
  buckets = [b for b in (32, 64, 128, 256) if b < args.max_length] + [args.max_length]
  params = cvlib.load_params(args.params, [
      f"finetune.max_train_examples={args.max_train}", f"finetune.training.epochs={args.epochs}",
      f"finetune.buckets={buckets}"])
  tables, _ = clean_tables(cvlib.load_data(params))
  cfg, seed = params.finetune, params.seed
  data = finetune.make_sentiment_data(cfg, tables.reviews, seed=seed)
  if args.max_val and len(data.val_texts) > args.max_val:  # early stopping only: a sample will do
    keep = np.sort(np.random.default_rng(seed).choice(len(data.val_texts), args.max_val,
                                                      replace=False))
    data = dataclasses.replace(data, val_texts=[data.val_texts[i] for i in keep],
                               val_labels=data.val_labels[keep])
  y = np.asarray(data.test_labels)

  tokenizer = tokens.load_tokenizer(max_length=512)
  full_length = np.asarray([len(x) for x in tokens.tokenize_texts(tokenizer, data.test_texts,
                                                                   max_length=512)])
  long = full_length > args.max_length
  tfidf = sentiment_baselines.tfidf_logreg(
      data.train_texts + data.val_texts, np.concatenate([data.train_labels, data.val_labels]),
      data.test_texts, seed=seed)

  arms, preds = {}, {}
  for arm in ARMS:
    t0 = time.perf_counter()
    arm_cfg = dataclasses.replace(cfg, truncation=arm)
    encoder = finetune.prepare_encoder(arm_cfg, tables.reviews, data, language=params.language,
                                       seed=seed, progress=False)
    model, tok, history = finetune.fine_tune_sentiment(arm_cfg, data, encoder, seed=seed)
    t1 = time.perf_counter()
    proba = sentiment.predict_proba(model, tok, data.test_texts, buckets=arm_cfg.buckets,
                                    truncation=arm)
    preds[arm] = proba.argmax(axis=1)
    arms[arm] = {"test": _scores(y, preds[arm]), "test_long": _scores(y[long], preds[arm][long]),
                 "history": history.to_dict(orient="records"),
                 "finetune_seconds": t1 - t0, "predict_seconds": time.perf_counter() - t1}
    print(arm, arms[arm]["test"], "long:", arms[arm]["test_long"], flush=True)

  result = {
      "benchmark": "truncation",
      "dataset": params.dataset,
      "what": ("head-only against head + tail truncation (finetune.truncation) at "
               f"{args.max_length} tokens; same split, seed and settings; test split reported"),
      "settings": {"max_train_examples": args.max_train, "max_val": args.max_val,
                   "epochs": args.epochs, "buckets": buckets,
                   "batch_size": cfg.training.batch_size,
                   "learning_rate": cfg.optimizer.learning_rate, "encoder": cfg.encoder,
                   "label_scheme": cfg.label_scheme, "seed": seed,
                   "head_tail_split": "first quarter + last three quarters of the tokens between "
                                      "[CLS] and [SEP]"},
      "split": {"train": len(data.train_labels), "validation": len(data.val_labels),
                "test": int(len(y)), "labelled": data.n_labelled,
                "test_longer_than_max_length": int(long.sum()),
                "test_long_share": float(long.mean()),
                "test_length_percentiles": {str(q): float(np.percentile(full_length, q))
                                            for q in (50, 90, 95, 99, 100)}},
      "arms": arms,
      "difference_head_tail_minus_head": {
          "test": {k: arms["head_tail"]["test"][k] - arms["head"]["test"][k]
                   for k in ("accuracy", "macro_f1")},
          "test_long": {k: arms["head_tail"]["test_long"][k] - arms["head"]["test_long"][k]
                        for k in ("accuracy", "macro_f1")},
          "test_bootstrap_95": paired_bootstrap(y, preds["head"], preds["head_tail"],
                                                rounds=args.bootstrap, seed=seed),
          "test_predictions_changed": int((preds["head"] != preds["head_tail"]).sum())},
      "tfidf_logreg_test": _scores(y, tfidf),
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "device": str(jax.devices()[0]), "jax": jax.__version__,
                  "load_avg_start": list(load), "load_avg_end": list(os.getloadavg())},
      "date": time.strftime("%Y-%m-%d", time.gmtime()),
      "total_seconds": time.perf_counter() - start,
  }
  if args.out is not None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
  return result


if __name__ == "__main__":
  main()

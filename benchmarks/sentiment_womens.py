"""Real-data check of the sentiment target on Women's clothing reviews (CPU, one run).

Labels: rating >= 4 positive, <= 2 negative, 3 dropped (``sentiment.labels_from_ratings``,
"binary"). Split as ``pipeline.make_sentiment_data`` splits: stratified 80/20 train/test with
seed 0, then 15% of the training part for validation (early stopping), then, to fit a CPU budget,
a stratified sample of ``--max-train`` training reviews. Scored on the whole 20% test split:

- MiniLM-L6 fine-tuned with ``sentiment.finetune_sentiment`` (bucketed batches, class weights,
  AdamW + warmup/decay, early stopping on validation macro-F1, orbax checkpoints);
- TF-IDF + logistic regression on the full training part (the issue's baseline) and on the same
  sample the encoder saw;
- VADER.

Usage::

  python benchmarks/sentiment_womens.py                  # writes results/sentiment_womens.json
  python benchmarks/sentiment_womens.py --max-train 500 --epochs 1 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
# The shared datasets folder next to the repository, unless $CVLIB_DATA_DIR names another.
DATA = (Path(os.environ.get("CVLIB_DATA_DIR", HERE.parent.parent / "shared" / "datasets"))
        / "womens_clothing_reviews" / "Womens Clothing E-Commerce Reviews.csv.gz")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data", type=Path, default=DATA)
  p.add_argument("--max-train", type=int, default=4000)
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--learning-rate", type=float, default=5e-5)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", type=Path, default=HERE / "results" / "sentiment_womens.json")
  args = p.parse_args()

  import jax  # pylint: disable=import-outside-toplevel

  from cvlib import pretrained, sentiment  # pylint: disable=import-outside-toplevel
  start_all = time.perf_counter()
  frame = pd.read_csv(args.data, usecols=["Review Text", "Rating"]).dropna()
  frame = frame[frame["Review Text"].str.strip() != ""]
  labels, keep = sentiment.labels_from_ratings(frame["Rating"].to_numpy(), "binary")
  texts = frame["Review Text"].to_numpy()[keep].tolist()
  y = labels[keep]
  idx = np.arange(len(y))
  rest, test = train_test_split(idx, test_size=0.2, stratify=y, random_state=args.seed)
  train, val = train_test_split(rest, test_size=0.15, stratify=y[rest], random_state=args.seed)
  full_train = train
  if args.max_train and len(train) > args.max_train:
    train, _ = train_test_split(train, train_size=args.max_train, stratify=y[train],
                                random_state=args.seed)
  pick = lambda ix: [texts[i] for i in ix]  # noqa: E731
  print(f"{len(y)} labelled reviews ({np.mean(y):.1%} positive): train {len(train)} of "
        f"{len(full_train)}, validation {len(val)}, test {len(test)}", flush=True)

  def scores(pred: np.ndarray) -> dict[str, float]:
    m = sentiment.classification_metrics(y[test], pred, num_classes=2)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

  result = {"dataset": "womens_clothing", "source": str(args.data),
            "labels": "rating >= 4 positive, <= 2 negative, 3 dropped",
            "split": {"seed": args.seed, "test_share": 0.2, "stratified": True,
                      "labelled": int(len(y)), "positive_share": float(np.mean(y)),
                      "train_full": int(len(full_train)), "train_used": int(len(train)),
                      "validation": int(len(val)), "test": int(len(test))},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "device": str(jax.devices()[0]), "load_avg_start": os.getloadavg()},
            "baselines": {}}
  t = time.perf_counter()
  result["baselines"]["tfidf_logreg_full_train"] = scores(sentiment.tfidf_logreg(
      pick(np.concatenate([full_train, val])), y[np.concatenate([full_train, val])],
      pick(test), seed=args.seed))
  result["baselines"]["tfidf_logreg_same_sample"] = scores(sentiment.tfidf_logreg(
      pick(np.concatenate([train, val])), y[np.concatenate([train, val])], pick(test),
      seed=args.seed))
  result["baselines"]["vader"] = scores(sentiment.vader_predict(pick(test), "binary"))
  result["baselines"]["seconds"] = time.perf_counter() - t
  print(json.dumps(result["baselines"]), flush=True)

  buckets = (32, 64, 128)
  model, _ = pretrained.load_classifier(2, seed=args.seed)
  tokenizer = pretrained.load_tokenizer(max_length=max(buckets))
  t = time.perf_counter()
  with tempfile.TemporaryDirectory() as ckpt:
    model, history = sentiment.finetune_sentiment(
        model, tokenizer, pick(train), y[train], pick(val), y[val], epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, warmup_ratio=0.1,
        weight_decay=0.01, patience=1, seed=args.seed, buckets=buckets, checkpoint_dir=ckpt,
        log_every_s=60.0)
  finetune_s = time.perf_counter() - t
  t = time.perf_counter()
  proba = sentiment.predict_proba(model, tokenizer, pick(test), buckets=buckets)
  predict_s = time.perf_counter() - t
  result["model"] = {
      "name": "MiniLM-L6 (all-MiniLM-L6-v2) fine-tuned, mean pooling",
      **scores(proba.argmax(1)),
      "settings": {"epochs": args.epochs, "batch_size": args.batch_size,
                   "learning_rate": args.learning_rate, "warmup_ratio": 0.1, "patience": 1,
                   "buckets": list(buckets), "class_weights": "balanced"},
      "history": history.to_dict(orient="records"),
      "finetune_seconds": finetune_s, "predict_seconds": predict_s,
      "test_reviews_per_s": len(test) / predict_s}
  result["targets"] = {
      "accuracy>=0.96": result["model"]["accuracy"] >= 0.96,
      "macro_f1>=0.91": result["model"]["macro_f1"] >= 0.91,
      "above_tfidf_full_train": (
          result["model"]["accuracy"] > result["baselines"]["tfidf_logreg_full_train"]["accuracy"]
          and result["model"]["macro_f1"]
          > result["baselines"]["tfidf_logreg_full_train"]["macro_f1"])}
  result["machine"]["load_avg_end"] = os.getloadavg()
  result["total_seconds"] = time.perf_counter() - start_all
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
  print(json.dumps({k: result["model"][k] for k in ("accuracy", "macro_f1", "finetune_seconds",
                                                      "predict_seconds")}), flush=True)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()

"""Real-data check of the sentiment targets: a fine-tuned encoder against TF-IDF and VADER.

One dataset per call, read straight from its file under ``$CVLIB_DATA_DIR`` (default: the shared
datasets folder beside the repository):

- ``womens_clothing``: "Review Text", rating >= 4 positive, <= 2 negative, 3 dropped (English;
  MiniLM, optionally adapted to the reviews with masked-LM first);
- ``chinese_reviews``: online_shopping_10_cats, its own 0/1 labels (Chinese; a WordPiece vocabulary
  and a small BERT pretrained from scratch on the reviews, as ``language: zh`` runs do);
- ``olist``: "review_comment_message", review_score >= 4 vs <= 2 (Portuguese; likewise from
  scratch).

For the two other languages ``--encoder transfer`` puts the learnt vocabulary on MiniLM's layers
instead of a small BERT (see ``cvlib.text.encoders``).

Split by review rows (the reports' ``make_sentiment_data`` now groups copies of one text on one
side; the files in benchmarks/results were measured this way): stratified 80/20 train/test with the seed, then
15% of the training part for validation (early stopping), then, with ``--max-train``, a
stratified sample of the training part. The test reviews never reach the MLM or the vocabulary:
those learn from every other review of the file, labelled or not. Baselines see the whole
training part (train + validation): TF-IDF + logistic regression (word 1-2 grams; character 1-3
grams for Chinese) and, for English, VADER.

``--mlm-steps 0,2000`` runs the encoder path once per value, which is the with/without domain
MLM comparison. Every run writes one JSON (settings, per-epoch history, MLM history, timings),
with ``blend_with_tfidf``: the encoder combined with TF-IDF + LR as reports combine them
(``finetune.blend_tfidf``; the weight chosen on validation against TF-IDF trained on the
encoder's training reviews, then TF-IDF refitted on training + validation). ``--save-proba``
keeps the encoder's validation and test probabilities.

Usage::

  python benchmarks/sentiment.py --dataset womens_clothing --max-train 4000 --epochs 2
  python benchmarks/sentiment.py --dataset chinese_reviews --mlm-steps 3000 --mlm-batch-size 128
  python benchmarks/sentiment.py --dataset womens_clothing --model-path /path/to/minilm \\
      --mlm-steps 0,2000 --epochs 3     # e.g. on a GPU, with a copy of the MiniLM folder
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("CVLIB_DATA_DIR", HERE.parent.parent / "shared" / "datasets"))
# name -> (file under DATA_DIR, text column, label column, how labels are made, language)
DATASETS = {
    "womens_clothing": ("womens_clothing_reviews/Womens Clothing E-Commerce Reviews.csv.gz",
                        "Review Text", "Rating", "rating", "en"),
    "chinese_reviews": ("chinese_ecommerce_reviews/online_shopping_10_cats.csv.gz", "review",
                        "label", "binary", "zh"),
    "olist": ("olist/olist_order_reviews_dataset.csv.gz", "review_comment_message",
              "review_score", "rating", "pt"),
}


def load_reviews(name: str, data_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
  """All review texts of a dataset, and binary labels with a mask of the labelled ones."""
  from cvlib.text import labels as sentiment_labels  # pylint: disable=import-outside-toplevel
  file, text_col, label_col, kind, _ = DATASETS[name]
  frame = pd.read_csv(data_dir / file, usecols=[text_col, label_col], encoding="utf-8-sig")
  frame = frame.dropna()
  frame = frame[frame[text_col].astype(str).str.strip() != ""]
  texts = frame[text_col].astype(str).str.replace("\ufeff", "", regex=False).tolist()
  if kind == "rating":
    labels, keep = sentiment_labels.labels_from_ratings(frame[label_col].to_numpy(), "binary")
  else:
    labels = frame[label_col].to_numpy().astype(int)
    keep = np.isin(labels, (0, 1))
  return texts, np.asarray(labels), np.asarray(keep)


def split(labels: np.ndarray, seed: int, max_train: int) -> dict[str, np.ndarray]:
  idx = np.arange(len(labels))
  rest, test = train_test_split(idx, test_size=0.2, stratify=labels, random_state=seed)
  train, val = train_test_split(rest, test_size=0.15, stratify=labels[rest], random_state=seed)
  full = train
  if max_train and len(train) > max_train:
    train, _ = train_test_split(train, train_size=max_train, stratify=labels[train],
                                random_state=seed)
  return {"train": train, "val": val, "test": test, "train_full": full}


def blend_with_tfidf(language: str, pick: Any, y: np.ndarray, parts: dict[str, np.ndarray],
                     val_proba: np.ndarray, test_proba: np.ndarray, scores: Any,
                     seed: int) -> dict[str, Any]:
  """The encoder combined with TF-IDF + LR as reports combine them (``blend_lib.fit_blend``).

  The weight is chosen on validation macro-F1 against TF-IDF trained on the encoder's training
  reviews, TF-IDF is then refitted on training + validation reviews, and only then is the test
  part scored.
  """
  from cvlib.text import blend as blend_lib  # pylint: disable=import-outside-toplevel
  blend = blend_lib.fit_blend(val_proba, pick(parts["train"]), y[parts["train"]],
                              pick(parts["val"]), y[parts["val"]], seed=seed,
                              analyzer="char" if language == "zh" else "word")
  tfidf_test = blend.tfidf.predict_proba(pick(parts["test"]))
  return {"encoder_weight": blend.weight,
          "validation": blend.validation.to_dict(orient="list"),
          "tfidf_kept": scores(tfidf_test.argmax(1)),
          **scores(blend.mix(test_proba, tfidf_test).argmax(1))}


def run_encoder(args: argparse.Namespace, language: str, mlm_texts: list[str], pick: Any,
                y: np.ndarray, parts: dict[str, np.ndarray], mlm_steps: int,
                scores: Any) -> dict[str, Any]:
  from cvlib.text import encoders, sentiment  # pylint: disable=import-outside-toplevel
  buckets = tuple(int(b) for b in args.buckets.split(","))
  encoder = args.model_path or args.encoder
  t = time.perf_counter()
  prepared = encoders.prepare_encoder(
      mlm_texts, language=language, encoder=encoder, mlm_steps=mlm_steps,
      mlm_batch_size=args.mlm_batch_size, mlm_learning_rate=args.mlm_learning_rate,
      mlm_max_texts=args.mlm_max_texts, vocab_size=args.vocab_size,
      small_layers=args.small_layers, small_hidden=args.small_hidden,
      small_heads=args.small_heads, small_intermediate=args.small_intermediate,
      buckets=buckets, dtype=args.dtype, seed=args.seed, progress=True)
  prepare_s = time.perf_counter() - t
  model = prepared.make_classifier(2, seed=args.seed)
  lr = args.learning_rate or (1e-4 if prepared.kind in ("scratch", "transfer") else 5e-5)
  t = time.perf_counter()
  model, history = sentiment.finetune_sentiment(
      model, prepared.tokenizer, pick(parts["train"]), y[parts["train"]], pick(parts["val"]),
      y[parts["val"]], epochs=args.epochs, batch_size=args.batch_size, learning_rate=lr,
      warmup_ratio=0.1, weight_decay=0.01, patience=1, seed=args.seed, buckets=buckets,
      log_every_s=30.0)
  finetune_s = time.perf_counter() - t
  t = time.perf_counter()
  proba = sentiment.predict_proba(model, prepared.tokenizer, pick(parts["test"]), buckets=buckets)
  predict_s = time.perf_counter() - t
  val_proba = sentiment.predict_proba(model, prepared.tokenizer, pick(parts["val"]),
                                      buckets=buckets)
  blend = blend_with_tfidf(language, pick, y, parts, val_proba, proba, scores, args.seed)
  if args.save_proba:
    np.savez(args.save_proba, val_index=parts["val"], val_proba=val_proba,
             test_index=parts["test"], test_proba=proba)
  mlm_history = prepared.mlm_history
  return {"encoder": prepared.description, "kind": prepared.kind, "mlm_steps": mlm_steps,
          **scores(proba.argmax(1)), "blend_with_tfidf": blend,
          "settings": {"epochs": args.epochs, "batch_size": args.batch_size,
                       "learning_rate": lr, "buckets": list(buckets), "dtype": args.dtype,
                       "mlm_batch_size": args.mlm_batch_size,
                       "mlm_learning_rate": args.mlm_learning_rate,
                       "class_weights": "balanced", "patience": 1},
          "encoder_details": prepared.details,
          "history": history.to_dict(orient="records"),
          "mlm_history": (None if mlm_history is None else
                          mlm_history[["step", "loss", "accuracy"]].to_dict(orient="list")),
          "prepare_seconds": prepare_s, "finetune_seconds": finetune_s,
          "predict_seconds": predict_s}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", choices=sorted(DATASETS), default="womens_clothing")
  p.add_argument("--data-dir", type=Path, default=DATA_DIR)
  p.add_argument("--encoder", default="minilm", help="minilm, scratch, transfer or a model folder")
  p.add_argument("--model-path", default=None,
                 help="a BERT folder to use instead of the installed MiniLM (English)")
  p.add_argument("--mlm-steps", default="0",
                 help="comma-separated MLM step counts, one encoder run each (scratch needs > 0); "
                      "empty: baselines only")
  p.add_argument("--mlm-batch-size", type=int, default=32)
  p.add_argument("--mlm-learning-rate", type=float, default=None)
  p.add_argument("--mlm-max-texts", type=int, default=0)
  p.add_argument("--vocab-size", type=int, default=16000)
  p.add_argument("--small-layers", type=int, default=4)
  p.add_argument("--small-hidden", type=int, default=256)
  p.add_argument("--small-heads", type=int, default=4)
  p.add_argument("--small-intermediate", type=int, default=1024)
  p.add_argument("--max-train", type=int, default=0, help="0 uses the whole training part")
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--learning-rate", type=float, default=None,
                 help="default 5e-5 for pretrained encoders, 1e-4 from scratch or transfer")
  p.add_argument("--buckets", default="32,64,128")
  p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no-baselines", action="store_true")
  p.add_argument("--save-proba", type=Path, default=None,
                 help="an .npz for the encoder's validation and test probabilities")
  p.add_argument("--out", type=Path, default=None,
                 help="default benchmarks/results/sentiment_<dataset>.json")
  args = p.parse_args(argv)
  out = args.out or HERE / "results" / f"sentiment_{args.dataset}.json"

  import jax  # pylint: disable=import-outside-toplevel

  from cvlib.text import labels as sentiment_labels, sentiment_baselines  # pylint: disable=import-outside-toplevel
  start_all = time.perf_counter()
  language = DATASETS[args.dataset][4]
  texts, labels, keep = load_reviews(args.dataset, args.data_dir)
  labelled = np.flatnonzero(keep)
  y = labels[labelled].astype(int)
  parts = split(y, args.seed, args.max_train)
  pick = lambda ix: [texts[labelled[i]] for i in ix]  # noqa: E731
  test_rows = set(labelled[parts["test"]].tolist())
  mlm_texts = [t for i, t in enumerate(texts) if i not in test_rows]
  print(f"{args.dataset}: {len(y):,} labelled reviews ({np.mean(y):.1%} positive): train "
        f"{len(parts['train']):,} of {len(parts['train_full']):,}, validation "
        f"{len(parts['val']):,}, test {len(parts['test']):,}; {len(mlm_texts):,} texts for "
        f"MLM/vocabulary", flush=True)

  def scores(pred: np.ndarray) -> dict[str, float]:
    m = sentiment_labels.classification_metrics(y[parts["test"]], pred, num_classes=2)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

  device = jax.devices()[0]
  result: dict[str, Any] = {
      "benchmark": "sentiment", "dataset": args.dataset, "language": language,
      "source": DATASETS[args.dataset][0],
      "split": {"seed": args.seed, "test_share": 0.2, "stratified": True,
                "labelled": int(len(y)), "positive_share": float(np.mean(y)),
                **{k: int(len(v)) for k, v in parts.items()}, "mlm_texts": len(mlm_texts)},
      "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                  "device": str(device), "device_kind": device.device_kind,
                  "load_avg_start": os.getloadavg()},
      "versions": {"jax": jax.__version__}, "baselines": {}, "runs": []}
  if not args.no_baselines:
    t = time.perf_counter()
    trainval = np.concatenate([parts["train_full"], parts["val"]])
    analyzer = "char" if language == "zh" else "word"
    result["baselines"]["tfidf_logreg"] = scores(sentiment_baselines.tfidf_logreg(
        pick(trainval), y[trainval], pick(parts["test"]), seed=args.seed, analyzer=analyzer))
    result["baselines"]["tfidf_logreg"]["analyzer"] = analyzer
    if language == "en":
      result["baselines"]["vader"] = scores(sentiment_baselines.vader_predict(pick(parts["test"]),
                                                                    "binary"))
    result["baselines"]["seconds"] = time.perf_counter() - t
    print(json.dumps(result["baselines"]), flush=True)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2, default=float) + "\n")
  for steps in (int(s) for s in args.mlm_steps.split(",") if s.strip()):
    run = run_encoder(args, language, mlm_texts, pick, y, parts, steps, scores)
    if "tfidf_logreg" in result["baselines"]:
      base = result["baselines"]["tfidf_logreg"]
      run["above_tfidf"] = {k: run[k] > base[k] for k in ("accuracy", "macro_f1")}
    result["runs"].append(run)
    print(json.dumps({k: run[k] for k in ("encoder", "mlm_steps", "accuracy", "macro_f1",
                                          "prepare_seconds", "finetune_seconds")}), flush=True)
    result["total_seconds"] = time.perf_counter() - start_all
    result["machine"]["load_avg_end"] = os.getloadavg()
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")  # after every run
  print(f"wrote {out}")
  return result


if __name__ == "__main__":
  main()

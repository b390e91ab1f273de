"""The fine-tuned encoder combined with TF-IDF + logistic regression, and how it is saved.

Fitting, loading and applying a combination needs numpy, pandas and scikit-learn only (the
TF-IDF baseline of :mod:`cvlib.text.sentiment_baselines`), so the runner (the run's model
manifest) and other light readers need not load jax.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from cvlib.text.labels import classification_metrics
from cvlib.text.sentiment_baselines import fit_tfidf_logreg


BLEND_FILE = "sentiment_tfidf.npz"
# Encoder weights tried on validation: 0 is TF-IDF alone, 1 the encoder alone.
BLEND_WEIGHTS = tuple(round(0.05 * i, 2) for i in range(21))


@dataclasses.dataclass
class SentimentBlend:
  """Class probabilities ``weight * encoder + (1 - weight) * TF-IDF``, the weight from validation.

  The two read reviews differently: the encoder reads words in context, the bag of n-grams weighs
  every word or character run it saw in training, which helps where the encoder had little to
  learn from (a small shop, a language MiniLM never read). The weight is chosen with a TF-IDF
  model fitted on the encoder's training reviews only, so the validation reviews that pick it are
  new to both; the TF-IDF model kept is then refitted on training + validation reviews, as the
  TF-IDF baseline is.
  """
  weight: float
  tfidf: Pipeline
  validation: pd.DataFrame  # one row per weight tried: weight, accuracy, macro_f1

  def proba(self, encoder_proba: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Combined class probabilities [len(texts), classes] (the encoder's as they are at 1)."""
    encoder_proba = np.asarray(encoder_proba, np.float64)
    if len(encoder_proba) != len(texts):
      raise ValueError(f"{len(encoder_proba)} encoder rows but {len(texts)} texts")
    if self.weight >= 1.0 or not len(texts):
      return encoder_proba
    return self.mix(encoder_proba, self.tfidf.predict_proba(list(texts)))

  def mix(self, encoder_proba: np.ndarray, tfidf_proba: np.ndarray) -> np.ndarray:
    """``weight * encoder_proba + (1 - weight) * tfidf_proba``, for TF-IDF already predicted."""
    return self.weight * np.asarray(encoder_proba, np.float64) + (1.0 - self.weight) * tfidf_proba

  def save(self, folder: str | os.PathLike) -> Path:
    """Writes ``folder/sentiment_tfidf.npz``: the weight, vocabulary, idf and coefficients.

    Plain arrays (no pickle), so ``load`` runs no code from the file.
    """
    vec, clf = self.tfidf.named_steps["tfidf"], self.tfidf.named_steps["logreg"]
    terms = sorted(vec.vocabulary_, key=vec.vocabulary_.get)  # column order
    encoded = [t.encode("utf-8") for t in terms]
    settings = {k: vec.get_params()[k] for k in ("analyzer", "ngram_range", "sublinear_tf",
                                                  "strip_accents", "lowercase", "norm")}
    path = Path(folder) / BLEND_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, weight=np.float64(self.weight), settings=np.str_(json.dumps(settings)),
        terms=np.frombuffer(b"".join(encoded), np.uint8),
        term_ends=np.cumsum([len(e) for e in encoded], dtype=np.int64),
        idf=vec.idf_, coef=clf.coef_, intercept=clf.intercept_, classes=clf.classes_,
        validation=self.validation[["weight", "accuracy", "macro_f1"]].to_numpy(np.float64))
    return path

  @classmethod
  def load(cls, folder: str | os.PathLike) -> SentimentBlend | None:
    """The blend saved in ``folder``; None when there is none."""
    path = Path(folder) / BLEND_FILE
    if not path.is_file():
      return None
    with np.load(path, allow_pickle=False) as z:
      settings = json.loads(str(z["settings"]))
      raw, ends = z["terms"].tobytes(), z["term_ends"]
      starts = np.concatenate([[0], ends[:-1]])
      terms = [raw[a:b].decode("utf-8") for a, b in zip(starts, ends)]
      vec = TfidfVectorizer(**{**settings, "ngram_range": tuple(settings["ngram_range"])})
      vec.vocabulary_ = {t: i for i, t in enumerate(terms)}
      vec.idf_ = z["idf"]
      clf = LogisticRegression()
      clf.coef_, clf.intercept_, clf.classes_ = z["coef"], z["intercept"], z["classes"]
      validation = pd.DataFrame(z["validation"], columns=["weight", "accuracy", "macro_f1"])
      weight = float(z["weight"])
    return cls(weight, Pipeline([("tfidf", vec), ("logreg", clf)]), validation)


def fit_blend(encoder_val_proba: np.ndarray, train_texts: Sequence[str],
              train_labels: Sequence[int] | np.ndarray, val_texts: Sequence[str],
              val_labels: Sequence[int] | np.ndarray, *, seed: int = 0,
              analyzer: str = "word") -> SentimentBlend:
  """Picks the encoder's weight against TF-IDF + LR on validation, then refits TF-IDF on both.

  TF-IDF + LR is first fitted on the training reviews; the weight (steps of 0.05) maximises the
  validation reviews' macro-F1, the measure fine-tuning stops on; among equal scores the largest
  weight wins, so the encoder is kept alone unless TF-IDF helps. When TF-IDF has a share, it is
  then refitted on training + validation reviews (the weight kept), so it learns from as many
  reviews as the TF-IDF baseline: on small shops the validation reviews are a large part of the
  labelled text.

  Args:
    encoder_val_proba: the fine-tuned encoder's probabilities [len(val_texts), classes].
    train_texts: the reviews the encoder was fine-tuned on.
    train_labels: their labels, every class present.
    val_texts: the validation reviews (early stopping's).
    val_labels: their labels.
    seed: the logistic regression's seed.
    analyzer: "word", or "char" for languages written without spaces.

  Raises:
    ValueError: mismatched lengths, or a class missing from the training labels.
  """
  encoder_val_proba = np.asarray(encoder_val_proba, np.float64)
  y_val = np.asarray(val_labels)
  if not len(val_texts):
    raise ValueError("no validation texts to choose the weight on")
  if encoder_val_proba.ndim != 2 or len(encoder_val_proba) != len(val_texts):
    raise ValueError(f"encoder_val_proba must be [len(val_texts)={len(val_texts)}, classes], "
                     f"got shape {encoder_val_proba.shape}")
  if len(y_val) != len(val_texts):
    raise ValueError(f"{len(val_texts)} validation texts but {len(y_val)} labels")
  k = encoder_val_proba.shape[1]
  tfidf = fit_tfidf_logreg(train_texts, train_labels, seed, analyzer=analyzer)
  if tfidf.classes_.tolist() != list(range(k)):
    raise ValueError(f"training labels must hold every class 0..{k - 1}, got "
                     f"{tfidf.classes_.tolist()}")
  tfidf_val = tfidf.predict_proba(list(val_texts))
  rows = []
  for w in BLEND_WEIGHTS:
    m = classification_metrics(y_val, (w * encoder_val_proba + (1 - w) * tfidf_val).argmax(1),
                               num_classes=k)
    rows.append({"weight": w, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
  validation = pd.DataFrame(rows)
  best = validation["macro_f1"].max()
  weight = float(validation.loc[validation["macro_f1"] >= best - 1e-12, "weight"].max())
  if weight < 1.0:
    tfidf = fit_tfidf_logreg([*train_texts, *val_texts],
                             np.concatenate([np.asarray(train_labels), y_val]), seed,
                             analyzer=analyzer)
  return SentimentBlend(weight, tfidf, validation)


__all__ = ["BLEND_FILE", "BLEND_WEIGHTS", "SentimentBlend", "fit_blend"]

"""The sentiment baselines every encoder is compared with: VADER's lexicon and TF-IDF + logistic
regression (no JAX; the encoder + TF-IDF combination in :mod:`cvlib.text.blend` reuses the latter).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from cvlib.text.labels import check_scheme
from cvlib.text.tokens import check_texts


@functools.lru_cache(maxsize=1)
def _vader() -> Any:
  # Imported on first use: loading VADER's lexicon takes a moment most runs do not need.
  from vaderSentiment import vaderSentiment  # pylint: disable=import-outside-toplevel
  return vaderSentiment.SentimentIntensityAnalyzer()


def vader_predict(texts: Sequence[str], scheme: str = "binary") -> np.ndarray:
  """Labels from VADER's compound score (English lexicon; weak on other languages).

  Uses VADER's documented thresholds: compound >= 0.05 positive, <= -0.05 negative, neutral in
  between. The binary schemes call everything below 0.05 negative.

  Returns:
    int64 labels [len(texts)] in the scheme's classes.
  """
  check_scheme(scheme)
  texts = check_texts(texts)
  analyzer = _vader()
  compound = np.asarray([analyzer.polarity_scores(t)["compound"] for t in texts], np.float64)
  if scheme == "three_class":
    return np.where(compound >= 0.05, 2, np.where(compound <= -0.05, 0, 1)).astype(np.int64)
  return (compound >= 0.05).astype(np.int64)


def fit_tfidf_logreg(train_texts: Sequence[str], train_labels: Sequence[int] | np.ndarray,
                     seed: int = 0, *, analyzer: str = "word") -> Pipeline:
  """Fits the TF-IDF + class-balanced logistic regression baseline.

  ``analyzer="word"`` uses word 1-2 grams; ``"char"`` uses character 1-3 grams, the usual choice
  for languages written without spaces (Chinese).

  Returns:
    a fitted sklearn Pipeline (``predict``, ``predict_proba`` on lists of texts).

  Raises:
    ValueError: fewer than two classes in train_labels, mismatched lengths or a bad analyzer.
  """
  train_texts = check_texts(train_texts)
  y = np.asarray(train_labels)
  if len(y) != len(train_texts):
    raise ValueError(f"{len(train_texts)} training texts but {len(y)} labels")
  if len(np.unique(y)) < 2:
    raise ValueError(f"need at least two classes in train_labels, got {np.unique(y).tolist()}")
  if analyzer not in ("word", "char"):
    raise ValueError(f"analyzer must be 'word' or 'char', got {analyzer!r}")
  vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=(1, 2) if analyzer == "word" else
                               (1, 3), sublinear_tf=True, strip_accents="unicode", min_df=1)
  clf = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
  return Pipeline([("tfidf", vectorizer), ("logreg", clf)]).fit(train_texts, y)


def tfidf_logreg(train_texts: Sequence[str], train_labels: Sequence[int] | np.ndarray,
                 test_texts: Sequence[str], seed: int = 0, *,
                 analyzer: str = "word") -> np.ndarray:
  """TF-IDF + class-balanced logistic regression baseline (see ``fit_tfidf_logreg``).

  Returns:
    int64 predicted labels [len(test_texts)].

  Raises:
    ValueError: fewer than two classes in train_labels or mismatched lengths.
  """
  model = fit_tfidf_logreg(train_texts, train_labels, seed, analyzer=analyzer)
  test_texts = check_texts(test_texts)
  if not test_texts:
    return np.zeros(0, np.int64)
  return model.predict(test_texts).astype(np.int64)

"""The steps the four notebooks call, one function per step, so the notebooks stay thin and every
step is tested. Each step takes params sections and frames and returns frames, models or metrics;
the ``save_*`` functions put results into the run folder (:class:`cvlib.workspace.Workspace`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import threadpoolctl

from cvlib import details
from cvlib import features as feats
from cvlib import privacy
from cvlib.adapters import Tables
from cvlib.clean import CleaningLog
from cvlib.config import Params
from cvlib.workspace import Workspace


def open_workspace(params: Params, run_dir: str | None, stage: str) -> Workspace:
  """The run folder; interactive sessions (no run_dir) get ``reports/.interactive/<dataset>``."""
  if run_dir is None:
    from cvlib.runner import REPO
    run_dir = str(REPO / "reports" / ".interactive" / params.dataset)
  return Workspace(run_dir, stage)


# --- 01 preprocess ------------------------------------------------------------------------------

@dataclasses.dataclass
class Prepared:
  """The calibration/holdout split and the customer tables built from it."""
  cutoff: dt.date | None  # first day of the holdout period (None: no transactions)
  as_of: dt.date | None  # the day after the last event: forward-looking scores are as of this day
  horizon_days: int
  features: pd.DataFrame  # per customer, features before cutoff + holdout targets (back-test)
  features_now: pd.DataFrame  # per customer, features before as_of (for forward scores)
  cal_items: pd.DataFrame  # customer-product purchases before cutoff
  hold_items: pd.DataFrame  # customer-product purchases in the holdout period

  @property
  def has_customers(self) -> bool:
    """Whether customer value applies: some customer bought in the calibration period."""
    return len(self.features) > 0

  def split_info(self, tables: Tables) -> dict[str, Any]:
    tx = tables.transactions
    iso = lambda d: d.isoformat() if d else None
    return {"cutoff": iso(self.cutoff), "as_of": iso(self.as_of),
            "horizon_days": self.horizon_days,
            "data_start": tx["timestamp"].min().date().isoformat() if len(tx) else None,
            "data_end": tx["timestamp"].max().date().isoformat() if len(tx) else None,
            "calibration_customers": len(self.features),
            "returned_share": float(self.features["returned"].mean()) if len(self.features) else None}


def prepare_customers(params: Params, tables: Tables) -> Prepared:
  """Splits by time and computes customer features for the back-test and for forward scores.

  Args:
    params: the run's params (split section and report salt are used).
    tables: cleaned canonical tables.

  Returns:
    The split and feature tables, each with a pseudonymous ``customer_key``.
  """
  h = params.split.horizon_days
  args = (tables.transactions, tables.items, tables.products, tables.reviews)
  if not len(tables.transactions):  # reviews only: the customer tables stay empty
    cutoff = as_of = None
    features = feats.compute_customer_features(*args, dt.date(2000, 1, 1), h)
    features_now = features.copy()
  else:
    cutoff = feats.choose_cutoff(tables.transactions, params.split.calibration_end, h,
                                 tables.meta)
    as_of = tables.transactions["timestamp"].max().date() + dt.timedelta(days=1)
    features = feats.compute_customer_features(*args, cutoff, h)
    features_now = feats.compute_customer_features(*args, as_of, h)
  salt, _ = privacy.resolve_salt(params.report.salt)
  for df in (features, features_now):
    df.insert(1, "customer_key", privacy.pseudonymise(df["customer_id"], salt))
  cal_items, hold_items = feats.holdout_items(tables.transactions, tables.items,
                                              cutoff or dt.date(2000, 1, 1), h)
  return Prepared(cutoff, as_of, h, features, features_now, cal_items, hold_items)


def save_prepared(ws: Workspace, params: Params, raw: Tables, cleaned: Tables, log: CleaningLog,
                  prep: Prepared) -> dict[str, Any]:
  """Writes stage 1's artifacts and metrics; returns the metrics."""
  for name in ("transactions", "items", "products", "reviews"):
    ws.save_frame(name, getattr(cleaned, name))
  for name, frame in cleaned.truth.items():
    ws.save_frame(f"truth_{name}", frame)
  ws.save_frame("features", prep.features)
  ws.save_frame("features_now", prep.features_now)
  ws.save_frame("cal_items", prep.cal_items)
  ws.save_frame("hold_items", prep.hold_items)
  ws.save_frame("cleaning_log", log.to_frame())
  ws.save_json("split", prep.split_info(cleaned))
  ws.save_json("sources", raw.sources)
  _, default_salt = privacy.resolve_salt(params.report.salt)
  if default_salt:
    ws.add_warning("Customer keys use cvlib's default pseudonymisation key: set CVLIB_SALT (or "
                   "report.salt in the params) to a secret so keys cannot be matched to raw ids.")
  n_customers = int(cleaned.transactions["customer_id"].nunique())
  metrics = {"counts": {"customers": n_customers, "transactions": len(cleaned.transactions),
                        "reviews": len(cleaned.reviews), "items": len(cleaned.items),
                        "products": len(cleaned.products)},
             "split": prep.split_info(cleaned),
             "cleaning": {"steps": len(log.rows),
                          "rows_removed": int(sum(r["affected"] for r in log.rows
                                                  if r["action"] == "removed"))}}
  ws.save_metrics(metrics)
  return metrics


def load_prepared(ws: Workspace) -> tuple[Tables, Prepared]:
  """What stage 1 left in the run folder, for the later stages."""
  split = ws.load_json("split")
  day = lambda s: dt.date.fromisoformat(s) if s else None
  tables = Tables(customers=pd.DataFrame(), transactions=ws.load_frame("transactions"),
                  items=ws.load_frame("items"), products=ws.load_frame("products"),
                  reviews=ws.load_frame("reviews"),
                  truth={n: ws.load_frame(f"truth_{n}") for n in ("truth", "review_aspects")
                         if ws.has(f"truth_{n}")})
  prep = Prepared(day(split["cutoff"]), day(split["as_of"]),
                  split["horizon_days"], ws.load_frame("features"),
                  ws.load_frame("features_now"), ws.load_frame("cal_items"),
                  ws.load_frame("hold_items"))
  return tables, prep


# --- 02 finetune: sentiment ---------------------------------------------------------------------

@dataclasses.dataclass
class SentimentData:
  """Labelled reviews split for fine-tuning and testing (stratified, seeded)."""
  class_names: list[str]
  train_texts: list[str]
  train_labels: np.ndarray
  val_texts: list[str]
  val_labels: np.ndarray
  test_texts: list[str]
  test_labels: np.ndarray
  n_labelled: int

  def summary(self) -> pd.DataFrame:
    rows = []
    for split, labels in (("train", self.train_labels), ("validation", self.val_labels),
                          ("test", self.test_labels)):
      counts = np.bincount(labels, minlength=len(self.class_names))
      rows.append({"split": split, "reviews": len(labels),
                   **{name: int(c) for name, c in zip(self.class_names, counts)}})
    return pd.DataFrame(rows)


def make_sentiment_data(reviews: pd.DataFrame, *, label_scheme: str, test_size: float,
                        max_train_examples: int, seed: int, min_per_class: int = 10
                        ) -> SentimentData | None:
  """Labels reviews from their ratings and splits them; None when there is too little to learn.

  Returns:
    The split, or None when fewer than ``min_per_class`` labelled reviews exist for some class.
  """
  from sklearn.model_selection import train_test_split

  from cvlib import sentiment
  has = reviews["text"].notna() & reviews["rating"].notna()
  r = reviews[has]
  if not len(r):
    return None
  labels, keep = sentiment.labels_from_ratings(r["rating"].to_numpy(), label_scheme)
  texts = r["text"].to_numpy()[keep].tolist()
  labels = np.asarray(labels)[keep]
  if len(labels) == 0:
    return None
  names = sentiment.class_names(label_scheme)
  counts = np.bincount(labels, minlength=len(names))
  if counts.min() < min_per_class:
    return None
  idx = np.arange(len(labels))
  rest, test = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
  train, val = train_test_split(rest, test_size=0.15, stratify=labels[rest], random_state=seed)
  if max_train_examples and len(train) > max_train_examples:
    train, _ = train_test_split(train, train_size=max_train_examples, stratify=labels[train],
                                random_state=seed)
  pick = lambda ix: [texts[i] for i in ix]
  return SentimentData(names, pick(train), labels[train], pick(val), labels[val], pick(test),
                       labels[test], len(labels))


# Languages written without spaces between words: the bag-of-words baseline uses characters.
CHAR_LANGUAGES = ("zh", "ja", "th")


def sentiment_metrics(model: Any, tokenizer: Any, data: SentimentData | None, *, label_scheme: str,
                      seed: int, buckets: tuple[int, ...], language: str = "en",
                      encoder: Any = None) -> dict[str, Any] | None:
  """Test-set accuracy and macro-F1 of the model and of the two baselines (None without data).

  The lexicon baseline (VADER) reads English only; for other languages it is null, with a note.
  ``encoder`` (the ``prepare_encoder`` result) names the model and adds how it was made.
  """
  from cvlib import sentiment
  if data is None:
    return None
  proba = sentiment.predict_proba(model, tokenizer, data.test_texts, buckets=buckets)
  pred = proba.argmax(axis=1)
  ours = sentiment.classification_metrics(data.test_labels, pred)
  strip = lambda m: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
  vader = None
  if language == "en":
    vader = strip(sentiment.classification_metrics(
        data.test_labels, sentiment.vader_predict(data.test_texts, label_scheme)))
  tfidf = sentiment.classification_metrics(
      data.test_labels, sentiment.tfidf_logreg(
          data.train_texts + data.val_texts, np.concatenate([data.train_labels, data.val_labels]),
          data.test_texts, seed=seed,
          analyzer="char" if language in CHAR_LANGUAGES else "word"))
  name = encoder_name(encoder) if encoder is not None else "MiniLM-L6, fine-tuned"
  out = {"model": name, "label_scheme": label_scheme,
         "classes": data.class_names, "n_train": len(data.train_labels),
         "n_test": len(data.test_labels), **strip(ours),
         "baselines": {"lexicon": vader, "tfidf_logreg": strip(tfidf)}}
  if encoder is not None:
    # minus its run time: metrics.json must be identical for a seed apart from timing_s
    out["encoder"] = {"description": encoder.description,
                      **{k: v for k, v in encoder.details.items() if k != "seconds"}}
  if vader is None:
    out["notes"] = {"lexicon": f"VADER is an English lexicon; not run on language {language!r}"}
  return out


def sentiment_table(metrics: dict[str, Any] | None) -> pd.DataFrame:
  if metrics is None:
    return pd.DataFrame()
  rows = [{"model": metrics["model"], "accuracy": metrics["accuracy"],
           "macro_f1": metrics["macro_f1"]}]
  names = {"lexicon": "VADER lexicon (no training)", "tfidf_logreg": "TF-IDF + logistic regression"}
  for key, m in metrics["baselines"].items():
    if m is not None:
      rows.append({"model": names.get(key, key), **m})
  return pd.DataFrame(rows)


def score_reviews(model: Any, tokenizer: Any, reviews: pd.DataFrame, *,
                  buckets: tuple[int, ...]) -> tuple[pd.DataFrame, np.ndarray]:
  """Sentiment score in [-1, 1] and an embedding for every review with text.

  Returns:
    (frame with review_id, customer_id, product_id, timestamp, rating, sentiment, p_negative;
    embeddings [n, hidden] in the frame's row order).
  """
  from cvlib import sentiment
  r = reviews[reviews["text"].notna()].reset_index(drop=True)
  proba, emb = sentiment.predict_proba_and_embed(model, tokenizer, r["text"].tolist(),
                                                 buckets=buckets)
  # positive minus negative probability: the same scale for the binary and 3-class schemes
  score = proba[:, -1] - proba[:, 0] if len(r) else np.zeros(0)
  cols = [c for c in ("review_id", "customer_id", "product_id", "timestamp", "rating")
          if c in r.columns]
  out = r[cols].copy()
  out["sentiment"] = score.astype("float64")
  out["p_negative"] = proba[:, 0].astype("float64") if len(r) else np.zeros(0)
  return out, emb.astype(np.float32)


# --- 02 finetune: customer value ----------------------------------------------------------------

def split_customers(features: pd.DataFrame, *, test_size: float, seed: int) -> np.ndarray:
  """A seeded random customer split: True for test customers (never seen in training)."""
  rng = np.random.default_rng(seed)
  n = len(features)
  is_test = np.zeros(n, dtype=bool)
  is_test[rng.permutation(n)[: int(round(test_size * n))]] = True
  return is_test


def _reviews_before(review_scores: pd.DataFrame, embeddings: np.ndarray, before: dt.date
                    ) -> tuple[pd.DataFrame, np.ndarray]:
  """The reviews (and their embedding rows) with a customer, dated before ``before``."""
  r = review_scores.reset_index(drop=True)
  mask = (r["customer_id"].notna() & r["timestamp"].notna()
          & (r["timestamp"] < pd.Timestamp(before))).to_numpy()
  return r[mask].reset_index(drop=True), embeddings[mask]


def _customer_review_embeddings(r: pd.DataFrame, emb: np.ndarray
                                ) -> tuple[pd.Index, np.ndarray, np.ndarray]:
  """Per reviewing customer: (customer ids, latest review's embedding, mean embedding).

  The latest review counts on its own too: what a customer said last (say, that they will not be
  back) is diluted in the mean of many reviews. Ties in time go to the later row.
  """
  codes, uniques = pd.factorize(r["customer_id"].astype(str))
  sums = np.zeros((len(uniques), emb.shape[1]), np.float64)
  np.add.at(sums, codes, emb)
  mean_emb = sums / np.bincount(codes)[:, None]  # [customers, hidden]
  newest_first = np.lexsort((np.arange(len(r)), r["timestamp"].to_numpy()))[::-1]
  _, first = np.unique(codes[newest_first], return_index=True)  # codes 0..n-1, all present
  return pd.Index(uniques, name="customer_id"), emb[newest_first[first]], mean_emb


@dataclasses.dataclass
class TextFeaturizer:
  """Per-customer text features: review-embedding PCA, sentiment aggregates and a text return score.

  The return score is a logistic regression from a customer's review embeddings (their latest
  review and the mean of all) to whether they bought again in the holdout period, fitted on the
  training customers: what they wrote that says "I'll be back" or "never again" beyond the stars,
  in one number the value network can use (a few PCA directions of the embeddings miss it).
  """
  components: np.ndarray  # [text_dims, hidden] PCA directions fitted on training customers
  mean: np.ndarray  # [hidden]
  return_coef: np.ndarray | None = None  # [2 * hidden]: latest review, then mean embedding
  return_intercept: float = 0.0

  def save(self, path: Path) -> None:
    """Writes the state (numpy .npz, no pickle) so scoring can rebuild the same features."""
    extra = {} if self.return_coef is None else {
        "return_coef": self.return_coef, "return_intercept": np.float64(self.return_intercept)}
    np.savez(path, components=self.components, mean=self.mean, **extra)

  @classmethod
  def load(cls, path: Path) -> TextFeaturizer:
    with np.load(path, allow_pickle=False) as z:
      if "return_coef" in z:
        return cls(z["components"], z["mean"], z["return_coef"], float(z["return_intercept"]))
      return cls(z["components"], z["mean"])

  def names(self) -> list[str]:
    k = len(self.components)
    return (["sent_mean", "sent_min", "sent_last", "n_negative_reviews", "has_text"]
            + [f"text_pc{i + 1}" for i in range(k)] + [f"last_text_pc{i + 1}" for i in range(k)]
            + (["text_return_logit"] if self.return_coef is not None else []))

  def transform(self, customer_ids: pd.Series, review_scores: pd.DataFrame,
                embeddings: np.ndarray, before: dt.date) -> pd.DataFrame:
    """Text features of each customer from their reviews dated before ``before``."""
    r, emb = _reviews_before(review_scores, embeddings, before)
    out = pd.DataFrame(index=pd.Index(customer_ids.astype(str), name="customer_id"))
    if len(r):
      g = r.sort_values("timestamp", kind="stable").groupby("customer_id")["sentiment"]
      out["sent_mean"] = g.mean()
      out["sent_min"] = g.min()
      out["sent_last"] = g.last()
      out["n_negative_reviews"] = r.assign(neg=r["sentiment"] < 0).groupby("customer_id")["neg"].sum()
      index, last_emb, mean_emb = _customer_review_embeddings(r, emb)
      k = len(self.components)
      for prefix, vectors in (("text_pc", mean_emb), ("last_text_pc", last_emb)):
        proj = (vectors - self.mean) @ self.components.T  # [customers, text_dims]
        out = out.join(pd.DataFrame(proj, index=index,
                                    columns=[f"{prefix}{i + 1}" for i in range(k)]))
      if self.return_coef is not None:
        both = np.concatenate([last_emb, mean_emb], axis=1)  # [customers, 2 * hidden]
        out = out.join(pd.Series(both @ self.return_coef + self.return_intercept, index=index,
                                 name="text_return_logit"))
    out["has_text"] = out.get("sent_mean", pd.Series(index=out.index, dtype=float)).notna()
    out = out.reindex(columns=self.names())
    return out.fillna(0.0).astype("float64").reset_index()


def fit_text_featurizer(review_scores: pd.DataFrame, embeddings: np.ndarray,
                        train_customers: pd.Series, before: dt.date, text_dims: int) -> TextFeaturizer:
  """PCA of training customers' review embeddings dated before ``before`` (no test leakage)."""
  r = review_scores.reset_index(drop=True)
  mask = (r["customer_id"].isin(set(train_customers)) & r["timestamp"].notna()
          & (r["timestamp"] < pd.Timestamp(before))).to_numpy()
  emb = embeddings[mask].astype(np.float64)
  hidden = embeddings.shape[1] if embeddings.ndim == 2 else 0
  if len(emb) < 2 or text_dims == 0:
    return TextFeaturizer(np.zeros((0, hidden)), np.zeros(hidden))
  mean = emb.mean(axis=0)
  _, _, vt = np.linalg.svd(emb - mean, full_matrices=False)
  k = min(text_dims, vt.shape[0])
  comps = vt[:k]
  # fix each component's sign so the result is deterministic across BLAS builds
  signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
  return TextFeaturizer(comps * signs[:, None], mean)


# The text return score needs this many training reviewers, and this many of each outcome.
MIN_RETURN_SCORE_CUSTOMERS, MIN_RETURN_SCORE_CLASS = 100, 20


def fit_text_return_score(fz: TextFeaturizer, review_scores: pd.DataFrame,
                          embeddings: np.ndarray, customers: pd.Series, returned: np.ndarray,
                          before: dt.date, *, seed: int, folds: int = 5
                          ) -> tuple[TextFeaturizer, pd.Series | None]:
  """Adds the text return score to ``fz``, fitted on ``customers`` (the training customers).

  Returns:
    (featurizer with the score, out-of-fold logits of the training reviewers indexed by
    customer_id): a training customer's own score must not come from a model that saw their
    outcome, or the value network would trust it too much. (fz, None) when too few training
    customers reviewed to learn it.
  """
  from sklearn.linear_model import LogisticRegression
  from sklearn.model_selection import StratifiedKFold
  index, last_emb, mean_emb = _customer_review_embeddings(
      *_reviews_before(review_scores, embeddings, before))
  pos = index.get_indexer(customers.astype(str))  # -1: the customer wrote no review before
  has = pos >= 0
  y = np.asarray(returned, dtype=int)[has]
  if has.sum() < MIN_RETURN_SCORE_CUSTOMERS or min(y.sum(), (1 - y).sum()) < MIN_RETURN_SCORE_CLASS:
    return fz, None
  ids = customers.astype(str).to_numpy()[has]
  X = np.concatenate([last_emb[pos[has]], mean_emb[pos[has]]], axis=1)  # [reviewers, 2 * hidden]
  make = lambda: LogisticRegression(C=1.0, max_iter=2000)  # noqa: E731
  oof = np.zeros(len(y))
  for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
    oof[te] = make().fit(X[tr], y[tr]).decision_function(X[te])
  full = make().fit(X, y)
  fitted = dataclasses.replace(fz, return_coef=full.coef_[0].astype(np.float64),
                               return_intercept=float(full.intercept_[0]))
  return fitted, pd.Series(oof, index=pd.Index(ids, name="customer_id"), name="text_return_logit")


VALUE_MODELS = {
    "ziln": "ZILN network, purchase history",
    "ziln_ratings": "ZILN network, purchase history + star ratings",
    "ziln_text": "ZILN network, purchase history + ratings + review text",
    "ziln_e2e": "End to end: history as text through the encoder, with the numbers, ZILN head",
    "bgnbd_gg": "BG/NBD + Gamma-Gamma",
    "gbt": "Gradient-boosted trees",
    "spend": "Past spend rate",
}


# What each value network sees: the ablation "do reviews help, and does their text add to the stars?"
NETWORK_INPUTS = {"ziln": ("history",), "ziln_ratings": ("history", "ratings"),
                  "ziln_text": ("history", "ratings", "text")}


def model_inputs(features: pd.DataFrame, text: pd.DataFrame | None = None, *,
                 ratings: bool = True) -> pd.DataFrame:
  """The numeric matrix a value model sees, as a DataFrame with named columns.

  Args:
    features: customer features from :func:`cvlib.features.compute_customer_features`.
    text: per-customer text features (``TextFeaturizer.transform``), or None.
    ratings: include the star-rating features.
  """
  cols = list(feats.BEHAVIOUR_FEATURES + feats.REVIEW_FEATURES)
  X = pd.DataFrame(feats.feature_matrix(features), columns=cols + ["has_review"])
  if not ratings:
    X = X[list(feats.BEHAVIOUR_FEATURES)]
  if text is not None:
    t = text.set_index("customer_id").reindex(features["customer_id"].astype(str))
    X = pd.concat([X, t.reset_index(drop=True).astype("float32")], axis=1)
  return X


def network_inputs(name: str, features: pd.DataFrame, text: pd.DataFrame | None) -> pd.DataFrame:
  uses = NETWORK_INPUTS[name]
  return model_inputs(features, text if "text" in uses else None, ratings="ratings" in uses)


def _value_split(is_test: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Training customers split into fitting and validation (early stopping) rows: 85/15, seeded."""
  train_idx = np.flatnonzero(~is_test)
  rng = np.random.default_rng(seed + 1)
  val_mask = np.zeros(len(train_idx), bool)
  val_mask[rng.permutation(len(train_idx))[: max(1, int(0.15 * len(train_idx)))]] = True
  return train_idx[~val_mask], train_idx[val_mask]


def train_value_networks(features: pd.DataFrame, text: pd.DataFrame | None, is_test: np.ndarray,
                         *, cfg, seed: int) -> dict[str, Any]:
  """Trains the ZILN networks (without and, when text exists, with text) on training customers.

  Returns:
    {name: (predictor, history)}.
  """
  from cvlib import ziln
  if not len(features):
    return {}
  y = features["holdout_value"].to_numpy(np.float64)
  fit_idx, val_idx = _value_split(is_test, seed)
  out = {}
  has_ratings = features["n_reviews"].gt(0).any()
  for name, uses in NETWORK_INPUTS.items():
    if ("ratings" in uses and not has_ratings) or ("text" in uses and text is None):
      continue  # nothing to add over the simpler network
    X = network_inputs(name, features, text)
    out[name] = ziln.train_ziln(
        X.iloc[fit_idx], y[fit_idx], X.iloc[val_idx], y[val_idx], hidden=cfg.hidden,
        dropout=cfg.dropout, epochs=cfg.epochs, batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, patience=cfg.patience, seed=seed,
        interval=cfg.interval)
  return out


E2E_MODEL = "ziln_e2e"


def history_texts(prep: Prepared, tables: Tables, *, at: str = "cutoff",
                  max_chars: int = 600) -> list[str]:
  """Each customer's history as text (``history_text.customer_history_texts``), before the cutoff
  (``at="cutoff"``, rows of ``prep.features``) or before as_of (``"as_of"``, ``features_now``)."""
  from cvlib import history_text
  feats_ = prep.features if at == "cutoff" else prep.features_now
  when = prep.cutoff if at == "cutoff" else prep.as_of
  return history_text.customer_history_texts(
      tables.transactions, tables.reviews, feats_["customer_id"].astype(str), when,
      items=tables.items, products=tables.products, max_chars=max_chars)


def _e2e_numeric(features: pd.DataFrame) -> pd.DataFrame:
  """The end-to-end model's numbers: what the ratings network sees (history, and stars if any)."""
  with_ratings = "n_reviews" in features and features["n_reviews"].gt(0).any()
  return network_inputs("ziln_ratings" if with_ratings else "ziln", features, None)


def train_end_to_end(prep: Prepared, tables: Tables, model: Any, tokenizer: Any,
                     is_test: np.ndarray, *, cfg, seed: int) -> tuple[Any, pd.DataFrame] | None:
  """With ``value.end_to_end``: the end-to-end value model on the training customers.

  The encoder starts from ``model`` (the fine-tuned sentiment classifier's encoder). Training and
  validation customers are the same as the value networks'.

  Returns:
    (E2EPredictor, history), or None when off or there are no customers.
  """
  from cvlib import history_text
  if not cfg.end_to_end or not prep.has_customers or not len(prep.features):
    return None
  y = prep.features["holdout_value"].to_numpy(np.float64)
  fit_idx, val_idx = _value_split(is_test, seed)
  if cfg.e2e_max_customers and len(fit_idx) > cfg.e2e_max_customers:
    rng = np.random.default_rng(seed + 2)
    fit_idx = np.sort(rng.choice(fit_idx, cfg.e2e_max_customers, replace=False))
  texts = history_texts(prep, tables, max_chars=cfg.e2e_max_chars)
  numeric = _e2e_numeric(prep.features)
  pick = lambda ix: [texts[i] for i in ix]  # noqa: E731
  return history_text.train_e2e_ziln(
      pick(fit_idx), numeric.iloc[fit_idx], y[fit_idx], pick(val_idx), numeric.iloc[val_idx],
      y[val_idx], encoder_model=model, tokenizer=tokenizer, epochs=cfg.e2e_epochs,
      batch_size=cfg.e2e_batch_size, learning_rate=cfg.e2e_learning_rate,
      head_learning_rate=cfg.e2e_head_learning_rate, seed=seed)


def add_end_to_end_predictions(preds: pd.DataFrame | None, e2e: Any, prep: Prepared,
                               tables: Tables, *, interval: float,
                               max_chars: int = 600) -> pd.DataFrame | None:
  """Adds the end-to-end model's columns (value, p_return, interval) to the back-test frame."""
  if preds is None or e2e is None:
    return preds
  qs = ((1 - interval) / 2, (1 + interval) / 2)
  p = e2e.predict(history_texts(prep, tables, max_chars=max_chars),
                  _e2e_numeric(prep.features), qs=qs)
  out = preds.copy()
  out[f"{E2E_MODEL}_value"] = p["predicted_value"].to_numpy()
  out[f"{E2E_MODEL}_p_return"] = p["p_return"].to_numpy()
  out[f"{E2E_MODEL}_lo"] = p["q10"].to_numpy()
  out[f"{E2E_MODEL}_hi"] = p["q90"].to_numpy()
  return out


# --- 03 evaluate -------------------------------------------------------------------------------

def predict_value_models(features: pd.DataFrame, text: pd.DataFrame | None, networks: dict,
                         is_test: np.ndarray, *, horizon_days: int, interval: float, seed: int
                         ) -> tuple[pd.DataFrame, dict[str, Any]]:
  """Every value model's prediction for every customer (the networks are already trained).

  BG/NBD + Gamma-Gamma are fitted on everyone's calibration history (they never see the
  holdout); the trees are trained on training customers' holdout values like the networks.

  Returns:
    (frame with customer_id, is_test, y_true, returned and per model ``<m>_value``,
    ``<m>_p_return`` and, for ZILN, ``<m>_lo``/``<m>_hi``; info such as fitted BTYD parameters).
  """
  from cvlib import baselines, btyd
  if not networks or not len(features):
    return None, {}
  y = features["holdout_value"].to_numpy(np.float64)
  out = pd.DataFrame({"customer_id": features["customer_id"],
                      "customer_key": features["customer_key"], "is_test": is_test, "y_true": y,
                      "returned": features["returned"].to_numpy()})
  info: dict[str, Any] = {}
  qs = ((1 - interval) / 2, (1 + interval) / 2)
  for name, (predictor, _) in networks.items():
    p = predictor.predict(network_inputs(name, features, text), qs=qs)
    out[f"{name}_value"] = p["predicted_value"].to_numpy()
    out[f"{name}_p_return"] = p["p_return"].to_numpy()
    out[f"{name}_lo"] = p["q10"].to_numpy()
    out[f"{name}_hi"] = p["q90"].to_numpy()
  f = features
  bgf, bgf_params = btyd.fit_bgnbd(f["frequency"], f["recency_days"], f["T_days"])
  ggf, gg_params = btyd.fit_gamma_gamma(f["frequency"], f["monetary_value"])
  pb = btyd.predict_btyd(bgf, ggf, f["frequency"], f["recency_days"], f["T_days"],
                         f["monetary_value"], horizon=horizon_days)
  out["bgnbd_gg_value"] = pb["predicted_value"].to_numpy()
  out["bgnbd_gg_p_return"] = _p_return_bgnbd(bgf, f, horizon_days)
  info["bgnbd"] = bgf_params
  info["gamma_gamma"] = gg_params
  X = model_inputs(features).to_numpy()
  # one OpenMP thread: on a few thousand rows more threads only add contention with the kernel's
  # JAX threads (measured 60x slower on a busy 2-core machine)
  with threadpoolctl.threadpool_limits(limits=1):
    gbt = baselines.train_gbt(X[~is_test], y[~is_test], seed=seed)
    out["gbt_value"] = gbt.predict(X)  # expm1 of the log1p model, clipped at 0
    returned = y[~is_test] > 0
    if 0 < returned.sum() < len(returned):
      gbt_ret = baselines.train_gbt_return(X[~is_test], returned, seed=seed)
      out["gbt_p_return"] = gbt_ret.predict_proba(X)[:, 1]
  out["spend_value"] = baselines.spend_baseline(f["total_spend"].to_numpy(),
                                                f["T_days"].to_numpy(), horizon_days)
  return out, info


def _p_return_bgnbd(bgf, f: pd.DataFrame, horizon_days: int) -> np.ndarray:
  """P(at least one purchase in the horizon) under BG/NBD.

  A customer buys again only if alive at the cutoff, and dropout happens only after a purchase,
  so P(return) = P(alive) * (1 - E[exp(-lambda t)]), where lambda's posterior given alive is
  Gamma(r + x, alpha + T): E[exp(-lambda t)] = ((alpha + T) / (alpha + T + t)) ** (r + x).
  """
  r, alpha = float(bgf.params_["r"]), float(bgf.params_["alpha"])
  x = f["frequency"].to_numpy(np.float64)
  T = f["T_days"].to_numpy(np.float64)
  p_alive = np.asarray(bgf.conditional_probability_alive(x, f["recency_days"].to_numpy(np.float64),
                                                         T), dtype=np.float64)
  p_alive = np.nan_to_num(p_alive, nan=1.0)  # NaN only at the no-dropout boundary: alive
  p_none = ((alpha + T) / (alpha + T + horizon_days)) ** (r + x)
  return np.clip(p_alive * (1 - p_none), 0.0, 1.0)


def evaluate_value_models(preds: pd.DataFrame | None, *, seed: int) -> dict[str, Any] | None:
  """CONTRACT clv metrics on test customers, with bootstrap Gini differences (None: no customers)."""
  from cvlib import value_metrics as vm
  if preds is None:
    return None
  test = preds[preds["is_test"]]
  y = test["y_true"].to_numpy()
  models = {}
  for name in VALUE_MODELS:
    if f"{name}_value" not in test:
      continue
    p_ret = test[f"{name}_p_return"].to_numpy() if f"{name}_p_return" in test else None
    m = vm.value_metrics(y, test[f"{name}_value"].to_numpy(), p_return=p_ret)
    if f"{name}_lo" in test:
      m["interval_coverage"] = vm.interval_coverage(y, test[f"{name}_lo"].to_numpy(),
                                                    test[f"{name}_hi"].to_numpy())
    models[name] = m
  best = max(models, key=lambda k: models[k]["gini"])
  diffs = {}
  for name in models:
    if name != best:
      d, lo, hi = vm.bootstrap_gini_diff(y, test[f"{best}_value"].to_numpy(),
                                         test[f"{name}_value"].to_numpy(), seed=seed)
      diffs[f"{best} - {name}"] = {"diff": d, "lo95": lo, "hi95": hi}
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
  return {"n_test": int(len(test)), "n_test_returning": int((y > 0).sum()), "best": best, "models": models, "gini_differences": diffs,
          "ablation": ablation}


def churn_metrics(preds: pd.DataFrame | None, model: str | None) -> dict[str, Any] | None:
  """AUC and PR-AUC of churn (no purchase in the horizon) for ``model`` and for BG/NBD."""
  from sklearn.metrics import average_precision_score, roc_auc_score
  if preds is None or model is None:
    return None
  test = preds[preds["is_test"]]
  churned = ~test["returned"].to_numpy(bool)
  if churned.all() or not churned.any():
    return {"auc": None, "pr_auc": None, "model": model,
            "note": "every test customer is in one class; AUC undefined"}
  out = {"model": model, "churn_rate": float(churned.mean())}
  for name, key in ((model, ""), ("bgnbd_gg", "bgnbd_")):
    p = 1 - test[f"{name}_p_return"].to_numpy()
    out[f"{key}auc"] = float(roc_auc_score(churned, p))
    out[f"{key}pr_auc"] = float(average_precision_score(churned, p))
  return out


def model_table(clv: dict[str, Any] | None) -> pd.DataFrame:
  rows = []
  if clv is None:
    return pd.DataFrame(rows)
  for name, m in clv["models"].items():
    rows.append({"model": VALUE_MODELS.get(name, name), "Gini": m["gini"],
                 "Spearman": m["spearman"], "decile MAPE": m["decile_mape"],
                 "top 20% share of value": m.get("top20_share"),
                 "AUC returning": m["auc_returning"], "MAE": m["mae"],
                 "80% interval coverage": m.get("interval_coverage")})
  return pd.DataFrame(rows).sort_values("Gini", ascending=False, kind="stable")


# scores.parquet columns (more follow from the segment rules)
SCORE_COLUMNS = ["customer_key", "predicted_value", "churn_probability", "value_lo", "value_hi",
                 "recency_days", "frequency", "monetary", "total_spend", "r_score", "f_score",
                 "m_score", "rfm_segment", "value_tier", "risk_band", "action", "action_reason",
                 "model"]


# --- 04 segment --------------------------------------------------------------------------------

def forward_scores(prep: Prepared, networks: dict, text_now: pd.DataFrame | None, best: str, *,
                   horizon_days: int, interval: float, seg_cfg, raw_ids: bool) -> pd.DataFrame:
  """Scores as of the end of the data: value over the next horizon, churn, interval, segment.

  The network chosen by the back-test (``best`` if it is a network, else the best ZILN) scores
  every customer's features as of ``prep.as_of``. The segment rules' cut-offs (RFM quintile
  edges, value-tier thresholds) are fitted on these customers and kept in
  ``scores.attrs["scoring_reference"]``; :func:`save_segment` stores them with the models, and
  ``cvlib score`` scores new data through the same :func:`cvlib.scoring.score_frame`.
  """
  from cvlib import scoring
  if best is None:
    return pd.DataFrame(columns=SCORE_COLUMNS)
  ref = scoring.fit_reference(prep.features_now, text_now,
                              {n: predictor for n, (predictor, _) in networks.items()}, best,
                              as_of=prep.as_of, horizon_days=horizon_days, interval=interval,
                              value_tiers=seg_cfg.value_tiers,
                              risk_thresholds=seg_cfg.risk_thresholds)
  seg = scoring.score_frame(prep.features_now, text_now, networks[best][0], best, ref,
                            as_of=prep.as_of, raw_ids=raw_ids)
  seg.attrs["warnings"] = list(ref.warnings)  # score_frame set completeness_gap
  seg.attrs["scoring_reference"] = ref.to_dict()
  return seg


# --- helpers the notebooks call (kept here so each notebook cell is one call) ------------------

def report_preprocess(ws: Workspace, metrics: dict, log: CleaningLog, figures: list) -> None:
  """Stage 1's parts of the stakeholder page."""
  c, s = metrics["counts"], metrics["split"]
  ws.add_headline("customers", f"{c['customers']:,}", f"{c['transactions']:,} orders")
  ws.add_headline("reviews", f"{c['reviews']:,}")
  if s["cutoff"] is None:
    ws.add_text("data", "This dataset holds reviews only, without orders: customer value, churn, "
                "segments and recommendations do not apply; sentiment and opinions do.")
  else:
    ws.add_text("data", f"Orders from {s['data_start']} to {s['data_end']}. Models learn from the "
                f"calibration period before {s['cutoff']} and are checked on the "
                f"{s['horizon_days']} days after it; {s['returned_share']:.0%} of customers bought "
                "again in that holdout period.")
  for fig, caption in zip(figures, ("Orders per week; the holdout period is shaded.",
                                    "Star ratings of reviews.",
                                    "Spend in the holdout period per customer.")):
    ws.add_figure("data", fig, caption)
  ws.add_table("data", log.to_frame(), "Cleaning log: every step, the rows it touched and what "
               "was done with them.", max_rows=40)


def describe_sentiment_data(data: SentimentData | None) -> pd.DataFrame | str:
  return data.summary() if data is not None else (
      "No reviews with both text and a rating (or too few per class): sentiment is skipped.")


def mlm_texts(reviews: pd.DataFrame, data: SentimentData | None) -> list[str]:
  """Review texts the encoder may learn from before fine-tuning: all but the sentiment test split.

  Unlabelled reviews (no rating, or a neutral one the label scheme drops) stay in: masked-LM needs
  no labels. Every copy of a test text is left out, so the test split stays unseen.
  """
  texts = reviews["text"].dropna().astype(str)
  texts = texts[texts.str.strip() != ""].tolist()
  held_out = set(data.test_texts) if data is not None else set()
  return [t for t in texts if t not in held_out]


def learns_from_scratch(cfg, language: str) -> bool:
  """True when the run builds its own vocabulary and small BERT (``finetune.encoder``, language)."""
  return cfg.encoder == "scratch" or (cfg.encoder == "minilm" and language != "en")


def prepare_encoder(cfg, reviews: pd.DataFrame, data: SentimentData | None, *, language: str,
                    seed: int, mlm_steps: int | None = None, progress: bool = True):
  """The encoder to fine-tune: MiniLM, a folder's BERT, or a small BERT from scratch (see
  ``encoders.prepare_encoder``), with ``cfg.mlm_steps`` of masked-LM on ``mlm_texts`` first.

  A dataset without review text has nothing to pretrain on or to score: the pretrained MiniLM
  stands in, whatever the language.

  Returns:
    An ``encoders.EncoderResult``.
  """
  from cvlib import encoders
  texts = mlm_texts(reviews, data)
  steps = cfg.mlm_steps if mlm_steps is None else mlm_steps
  encoder, lang = cfg.encoder, language
  if not texts:
    steps = 0
    if learns_from_scratch(cfg, language):
      encoder, lang = "minilm", "en"
  return encoders.prepare_encoder(
      texts, language=lang, encoder=encoder, num_layers=cfg.num_layers, mlm_steps=steps,
      mlm_batch_size=cfg.mlm_batch_size, mlm_learning_rate=cfg.mlm_learning_rate,
      mlm_max_texts=cfg.mlm_max_texts, mask_rate=cfg.mask_rate, vocab_size=cfg.vocab_size,
      small_layers=cfg.small_layers, small_hidden=cfg.small_hidden, small_heads=cfg.small_heads,
      small_intermediate=cfg.small_intermediate, buckets=cfg.buckets, dtype=cfg.dtype, seed=seed,
      progress=progress)


def encoder_story(details: dict[str, Any] | None) -> str:
  """One plain sentence on where the sentiment model's language knowledge came from."""
  from cvlib import encoders
  if not details:
    return "A pretrained English language model (MiniLM) read the reviews."
  lang = encoders.LANGUAGE_NAMES.get(details.get("language"), details.get("language"))
  if details.get("kind") == "scratch":
    return (f"The pretrained English language model does not read {lang}, so a small language "
            f"model learnt this shop's own vocabulary and wording from {details['mlm_texts']:,} "
            "of its reviews (masked-word training).")
  base = ("A pretrained English language model (MiniLM)" if details.get("kind") == "minilm"
          else "The pretrained language model given in the parameters")
  if details.get("mlm_steps"):
    return (f"{base} was first adapted to this shop's wording by masked-word training on "
            f"{details['mlm_texts']:,} of its reviews.")
  return f"{base} read the reviews."


def encoder_name(encoder) -> str:
  """A short name of a prepared encoder for tables: "MiniLM-L6 + domain MLM", "small BERT ..."."""
  if encoder.kind == "scratch":
    name = f"small BERT {encoder.config.num_layers}x{encoder.config.hidden_size} from scratch"
  elif encoder.kind == "minilm":
    name = "MiniLM-L6"
  else:
    name = "BERT checkpoint"
  if encoder.mlm_history is not None and encoder.kind != "scratch":
    name += " + domain MLM"
  return name + ", fine-tuned"


def fine_tune_sentiment(cfg, data: SentimentData | None, encoder, *, seed: int):
  """Puts a classifier head on the prepared encoder and fine-tunes it on ``data``.

  Without labelled data the encoder is returned with an untrained head (its embeddings still
  feed the text-aware value model) and an empty history.

  Returns:
    (model, tokenizer, history DataFrame).
  """
  from cvlib import sentiment
  n_labels = len(data.class_names) if data is not None else 2
  model = encoder.make_classifier(n_labels, seed=seed)
  if data is None:
    return model, encoder.tokenizer, pd.DataFrame()
  model, history = sentiment.finetune_sentiment(
      model, encoder.tokenizer, data.train_texts, data.train_labels, data.val_texts,
      data.val_labels, epochs=cfg.epochs, batch_size=cfg.batch_size,
      learning_rate=cfg.learning_rate, warmup_ratio=cfg.warmup_ratio,
      weight_decay=cfg.weight_decay, patience=cfg.patience, seed=seed, buckets=cfg.buckets)
  return model, encoder.tokenizer, history


def compare_without_mlm(cfg, reviews: pd.DataFrame, data: SentimentData | None,
                        sent: dict[str, Any] | None, *, language: str,
                        seed: int) -> dict[str, Any] | None:
  """With ``finetune.compare_mlm``: the downstream effect of the domain MLM.

  Fine-tunes the same pretrained encoder again, without MLM, with the same data, settings and
  seed, and scores it on the same test split.

  Returns:
    ``sent`` with "mlm_effect": {"with_mlm": {accuracy, macro_f1}, "without_mlm": {...},
    "macro_f1_gain", "accuracy_gain"}, or null when the comparison is off or does not apply.
  """
  from cvlib import sentiment
  if sent is None:
    return None
  if not cfg.compare_mlm or data is None:
    return {**sent, "mlm_effect": None}
  encoder = prepare_encoder(cfg, reviews, data, language=language, seed=seed, mlm_steps=0)
  model, tokenizer, _ = fine_tune_sentiment(cfg, data, encoder, seed=seed)
  proba = sentiment.predict_proba(model, tokenizer, data.test_texts, buckets=cfg.buckets)
  m = sentiment.classification_metrics(data.test_labels, proba.argmax(axis=1))
  without = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
  with_mlm = {"accuracy": sent["accuracy"], "macro_f1": sent["macro_f1"]}
  return {**sent, "mlm_effect": {
      "with_mlm": with_mlm, "without_mlm": without,
      "macro_f1_gain": with_mlm["macro_f1"] - without["macro_f1"],
      "accuracy_gain": with_mlm["accuracy"] - without["accuracy"]}}


def plot_mlm(encoder) -> Any:
  """The masked-LM loss curve of the prepared encoder, or None when it had no MLM."""
  from cvlib import mlm
  if encoder.mlm_history is None or not len(encoder.mlm_history):
    return None
  return mlm.plot_mlm_history(encoder.mlm_history)


@dataclasses.dataclass
class CustomerText:
  """Text features per customer at the cutoff (back-test) and at as_of (forward scores)."""
  featurizer: TextFeaturizer | None
  calibration: pd.DataFrame | None
  now: pd.DataFrame | None


def make_customer_text(review_scores: pd.DataFrame, embeddings: np.ndarray, prep: Prepared,
                       is_test: np.ndarray, *, text_dims: int, seed: int = 0) -> CustomerText:
  """Text features, or all None when no customer wrote a review before the cutoff."""
  usable = review_scores["customer_id"].notna() & review_scores["timestamp"].notna()
  if not prep.has_customers or not usable.any() or not (review_scores.loc[usable, "timestamp"]
                              < pd.Timestamp(prep.cutoff)).any():
    return CustomerText(None, None, None)
  train_ids = prep.features["customer_id"][~is_test]
  fz = fit_text_featurizer(review_scores, embeddings, train_ids, prep.cutoff, text_dims)
  returned = prep.features["holdout_value"].to_numpy()[~is_test] > 0
  fz, oof = fit_text_return_score(fz, review_scores, embeddings, train_ids, returned, prep.cutoff,
                                  seed=seed)
  calibration = fz.transform(prep.features["customer_id"], review_scores, embeddings, prep.cutoff)
  if oof is not None:  # training reviewers get their out-of-fold score
    ids = calibration["customer_id"].astype(str)
    in_oof = ids.isin(oof.index)
    calibration.loc[in_oof, "text_return_logit"] = oof.reindex(ids[in_oof]).to_numpy()
  return CustomerText(fz, calibration,
                      fz.transform(prep.features_now["customer_id"], review_scores, embeddings,
                                   prep.as_of))


def save_finetune(ws: Workspace, model, tokenizer, history: pd.DataFrame, sent: dict | None,
                  review_scores: pd.DataFrame, embeddings: np.ndarray, is_test: np.ndarray,
                  text: CustomerText, networks: dict, encoder: Any = None,
                  e2e: tuple[Any, pd.DataFrame] | None = None) -> dict:
  """Writes the fine-tuned encoder, the value networks, review scores and text features."""
  from cvlib import pretrained
  pretrained.save_encoder(model, model.bert.config, ws.path("models", "encoder"),
                          tokenizer=tokenizer)
  for name, (predictor, hist) in networks.items():
    predictor.save(ws.path("models", name))
    ws.save_frame(f"history_{name}", hist)
  ws.save_frame("finetune_history", history)
  if e2e is not None:
    e2e[0].save(ws.path("models", E2E_MODEL))
    ws.save_frame(f"history_{E2E_MODEL}", e2e[1])
  if encoder is not None and encoder.mlm_history is not None:
    ws.save_frame("mlm_history", encoder.mlm_history)
  ws.save_frame("review_scores", review_scores)
  ws.save_array("review_embeddings", embeddings)
  ws.save_array("is_test", is_test)
  if text.calibration is not None:
    ws.save_frame("text_calibration", text.calibration)
    ws.save_frame("text_now", text.now)
    text.featurizer.save(ws.path("models", "text_featurizer.npz"))
  metrics = {"sentiment": sent}
  if sent is None:
    metrics["notes"] = {"sentiment": NOT_APPLICABLE["sentiment"]}
  ws.save_metrics(metrics)
  return metrics


def report_finetune(ws: Workspace, sent: dict | None, figures: list, networks: dict) -> None:
  if networks:
    ws.add_figure("value", figures[1], "Value networks: ZILN loss per epoch; the kept epoch is "
                  "marked.")
  if sent is None:
    ws.add_text("sentiment", "This dataset has no reviews with both text and a star rating, so "
                "no sentiment model was trained.")
    return
  best_base = max((m for m in sent["baselines"].values() if m), key=lambda m: m["macro_f1"])
  ws.add_headline("sentiment macro-F1", f"{sent['macro_f1']:.2f}",
                  f"best baseline {best_base['macro_f1']:.2f}")
  ws.add_text("sentiment", f"{encoder_story(sent.get('encoder'))} It was then fine-tuned on "
              f"{sent['n_train']:,} reviews to predict sentiment from the text "
              f"({', '.join(sent['classes'])}, from the star ratings) and tested on "
              f"{sent['n_test']:,} reviews it never saw.")
  ws.add_table("sentiment", sentiment_table(sent), "Sentiment on held-out reviews: the "
               "fine-tuned encoder against a word-list (lexicon) model and a bag-of-words model.")
  if best_base["macro_f1"] > sent["macro_f1"]:
    ws.add_text("sentiment", f"On this shop's reviews a simpler model reads sentiment better "
                f"(macro-F1 {best_base['macro_f1']:.2f} against {sent['macro_f1']:.2f}); the "
                "encoder's scores are still used below because they come with the review "
                "embeddings the value model reads, but treat single review scores with care.")
  effect = sent.get("mlm_effect")
  if effect:
    ws.add_table("sentiment", pd.DataFrame([
        {"encoder": "adapted to the shop's reviews first (domain MLM)", **effect["with_mlm"]},
        {"encoder": "fine-tuned directly", **effect["without_mlm"]}]),
        f"Does adapting to the shop's wording first help? Same held-out reviews, same settings: "
        f"macro-F1 {effect['macro_f1_gain']:+.3f}.")
  if len(figures) > 2 and figures[2] is not None:
    enc = sent.get("encoder") or {}
    ws.add_figure("sentiment", figures[2], "Masked-word training on the shop's reviews "
                  f"({enc.get('mlm_steps', 0):,} steps of {enc.get('mlm_batch_size', 0)} "
                  "reviews): loss (lower is better) and the share of hidden words guessed right.")
  ws.add_figure("sentiment", figures[0], "Fine-tuning: loss and validation macro-F1 per epoch.")


@dataclasses.dataclass
class Finetuned:
  networks: dict
  is_test: np.ndarray
  text: CustomerText
  review_scores: pd.DataFrame
  e2e: Any = None  # the end-to-end model's E2EPredictor, when value.end_to_end trained one


def load_finetune(ws: Workspace) -> Finetuned:
  """What stage 2 left: value networks, test split, text features and review scores."""
  from cvlib import ziln
  networks = {}
  for name in NETWORK_INPUTS:
    folder = ws.root / "models" / name
    if folder.exists():
      networks[name] = (ziln.ZILNPredictor.load(folder), ws.load_frame(f"history_{name}"))
  text = CustomerText(None, None, None)
  if ws.has("text_calibration"):
    text = CustomerText(TextFeaturizer.load(ws.root / "models" / "text_featurizer.npz"),
                        ws.load_frame("text_calibration"), ws.load_frame("text_now"))
  e2e = None
  if (ws.root / "models" / E2E_MODEL).exists():
    from cvlib import history_text
    e2e = history_text.E2EPredictor.load(ws.root / "models" / E2E_MODEL)
  return Finetuned(networks, ws.load_array("is_test"), text, ws.load_frame("review_scores"), e2e)


def scoring_model(clv: dict | None, networks: dict) -> str | None:
  """The network that scores customers: the back-test's best network."""
  if clv is None:
    return None
  nets = [m for m in clv["models"] if m in networks]
  return max(nets, key=lambda m: clv["models"][m]["gini"])


def plot_deciles(preds: pd.DataFrame | None, clv: dict | None):
  """Decile chart of the three best models, or a placeholder when value does not apply."""
  from cvlib import plots, value_metrics as vm
  if clv is None:
    return plots.plot_not_applicable("Decile chart", "no customers with orders")
  return vm.plot_decile_chart(decile_tables(preds, clv))


def plot_gains(preds: pd.DataFrame | None):
  from cvlib import plots, value_metrics as vm
  if preds is None:
    return plots.plot_not_applicable("Gain curves", "no customers with orders")
  return vm.plot_gain_curves(*gain_inputs(preds))


def ablation_table(clv: dict | None) -> pd.DataFrame:
  """The "do reviews help?" comparisons, one row each (empty when value does not apply)."""
  return pd.DataFrame(clv["ablation"]).T if clv and clv.get("ablation") else pd.DataFrame()


def gini_difference_table(clv: dict | None) -> pd.DataFrame:
  """Best model minus each other model: Gini difference with its bootstrap 95% interval."""
  return pd.DataFrame(clv["gini_differences"]).T if clv else pd.DataFrame()


def decile_tables(preds: pd.DataFrame, clv: dict) -> dict[str, pd.DataFrame]:
  from cvlib import value_metrics as vm
  test = preds[preds["is_test"]]
  order = sorted(clv["models"], key=lambda m: -clv["models"][m]["gini"])[:3]
  return {VALUE_MODELS[m]: vm.decile_table(test["y_true"].to_numpy(),
                                           test[f"{m}_value"].to_numpy()) for m in order}


def gain_inputs(preds: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  test = preds[preds["is_test"]]
  return test["y_true"].to_numpy(), {VALUE_MODELS[m]: test[f"{m}_value"].to_numpy()
                                     for m in VALUE_MODELS if f"{m}_value" in test}


def oracle_metrics(preds: pd.DataFrame | None, truth: dict[str, pd.DataFrame]) -> dict | None:
  """Against the simulator's true expected value (synthetic data only; else None).

  Returns:
    The Gini of the true expected holdout value (the ceiling for any model on this holdout) and
    each model's Spearman correlation with the true expected value, on test customers.
  """
  from scipy.stats import spearmanr

  from cvlib import value_metrics as vm
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
                  churn: dict | None, info: dict, oracle: dict | None) -> dict:
  ws.save_json("clv", clv)
  ws.save_json("btyd_params", info)
  if clv is None:
    metrics = {"clv": None, "churn": None, "oracle": None,
               "notes": {"clv": NOT_APPLICABLE["value"], "churn": NOT_APPLICABLE["value"]}}
  else:
    ws.save_frame("predictions", preds.drop(columns=["customer_id"]))
    horizon = int(ws.load_json("split")["horizon_days"])
    metrics = {"clv": {"horizon_days": horizon, **clv}, "churn": churn, "oracle": oracle}
  ws.save_metrics(metrics)
  return metrics


# Fewer returning test customers than this and the model comparison is noise (olist: 8).
MIN_RETURNING = 30

# Why a part of the report is empty, in the reader's words.
NOT_APPLICABLE = {
    "value": "this dataset has no orders linked to customers, so customer value and churn do "
             "not apply",
    "sentiment": "this dataset has no reviews with both text and a rating",
    "recommendations": "this dataset has no product-level purchases before and after the cutoff",
    "aspects": "no labelled aspect sample exists for this dataset's reviews",
}


def report_evaluate(ws: Workspace, clv: dict | None, churn: dict | None, oracle: dict | None,
                    figures: list) -> None:
  if clv is None:
    ws.add_text("value", f"Not part of this report: {NOT_APPLICABLE['value']}.")
    return
  best = clv["models"][clv["best"]]
  if clv.get("n_test_returning", MIN_RETURNING) < MIN_RETURNING:
    ws.add_warning(f"Only {clv['n_test_returning']} of {clv['n_test']:,} test customers bought "
                   "again in the holdout period: too few to tell the value models apart; read "
                   "the comparison below as noise.")
  ws.add_headline("ranking quality (Gini)", f"{best['gini']:.2f}", VALUE_MODELS[clv["best"]])
  ws.add_text("value", f"Each model ranked {clv['n_test']:,} test customers by predicted spend. "
              f"The best, {VALUE_MODELS[clv['best']]}, reaches a Gini of {best['gini']:.2f}; its "
              f"top 20% of customers hold {best['top20_share']:.0%} of their actual holdout spend.")
  ws.add_table("value", model_table(clv), "Back-test on test customers, best first.")
  questions = {"do_reviews_help": "Do reviews (stars and text) add to purchase history?",
               "do_ratings_help": "Do star ratings add to purchase history?",
               "does_text_help": "Does review text add to the star ratings?"}
  for key, question in questions.items():
    a = clv["ablation"].get(key)
    if a:
      ws.add_text("value", f"{question} Gini {a['gini_with']:.3f} with, {a['gini_without']:.3f} "
                  f"without (difference {a['diff']:+.3f}, 95% interval {a['lo95']:+.3f} to "
                  f"{a['hi95']:+.3f}): {a['verdict']}.")
  if oracle:
    rho = oracle["spearman_vs_true_expected_value"]
    ws.add_text("value", f"On this synthetic shop the true expected spend reaches a Gini of "
                f"{oracle['gini']:.3f}: no model can rank better than that on this holdout. "
                "Spearman correlation of each model's prediction with the true expected spend: "
                + ", ".join(f"{VALUE_MODELS[m]} {r:.3f}" for m, r in rho.items()) + ".")
  if churn.get("auc") is not None:
    ws.add_text("value", f"Churn (no purchase in the holdout): AUC {churn['auc']:.3f} "
                f"(BG/NBD {churn['bgnbd_auc']:.3f}), PR-AUC {churn['pr_auc']:.3f}.")
  for fig, caption in zip(figures, (
      "Decile chart: customers ranked by predicted value, mean predicted vs actual holdout "
      "spend per tenth.", "Gain curves: share of holdout spend captured by the top-ranked "
      "customers.", "What the scoring model relies on: the drop in Gini when each input is "
      "shuffled (test customers).")):
    ws.add_figure("value", fig, caption)


def make_value_risk_matrix(scores: pd.DataFrame, seg_cfg) -> pd.DataFrame | None:
  """Customers and predicted value per (value tier, churn risk) cell; None without scores."""
  from cvlib import segments
  if not len(scores):
    return None
  return segments.value_risk_matrix(scores, value_tiers=seg_cfg.value_tiers,
                                    risk_thresholds=seg_cfg.risk_thresholds)


def plot_matrix(matrix: pd.DataFrame | None):
  from cvlib import plots, segments
  if matrix is None:
    return plots.plot_not_applicable("Value by churn risk", NOT_APPLICABLE["value"])
  return segments.plot_value_risk_matrix(matrix)


def plot_segments(profiles: pd.DataFrame | None):
  from cvlib import plots, segments
  if profiles is None:
    return plots.plot_not_applicable("Segments", NOT_APPLICABLE["value"])
  return segments.plot_segment_sizes(profiles)


def make_segment_profiles(scores: pd.DataFrame, prep: Prepared, review_scores: pd.DataFrame,
                          tables: Tables) -> pd.DataFrame | None:
  """Segment profile table with sentiment and top categories, keyed by pseudonymous key."""
  from cvlib import segments
  if not len(scores):
    return None
  key = dict(zip(prep.features_now["customer_id"].astype(str), prep.features_now["customer_key"]))
  sent = review_scores.dropna(subset=["customer_id"])
  sent = pd.DataFrame({"customer_id": sent["customer_id"].astype(str).map(key),
                       "sentiment": sent["sentiment"]}).dropna(subset=["customer_id"])
  lines = tables.items.merge(tables.transactions[["order_id", "customer_id"]], on="order_id") \
      .merge(tables.products[["product_id", "category"]], on="product_id", how="left")
  cats = pd.DataFrame({"customer_id": lines["customer_id"].astype(str).map(key),
                       "category": lines["category"], "amount": lines["amount"]}) \
      .dropna(subset=["customer_id"])
  seg_input = scores.assign(customer_id=scores["customer_key"])
  return segments.segment_profiles(seg_input, sentiment=sent, categories=cats)


@dataclasses.dataclass
class Opinions:
  tags: pd.DataFrame
  polarity: pd.DataFrame
  table: pd.DataFrame
  metrics: dict | None


ASPECT_LEXICONS = {"en": "DEFAULT_ASPECTS", "pt": "PORTUGUESE_ASPECTS"}


def make_aspect_opinions(review_scores: pd.DataFrame, tables: Tables, *, language: str,
                         encoder_dir: Path | None = None) -> Opinions | None:
  """Aspect mentions and their sentiment per review; precision/recall where labels exist.

  Args:
    review_scores: stage 2's scored reviews (the reviews with text).
    tables: cleaned tables (review text and, for synthetic data, the true aspects).
    language: picks the aspect seed lexicon; None is returned for a language without one.
    encoder_dir: the fine-tuned sentiment encoder; clause polarity for languages other than
      English comes from it (VADER, the English default, does not read Portuguese).

  Returns:
    The tags, polarities, aspect table and metrics; None when aspects do not apply.
  """
  from cvlib import aspects
  if language not in ASPECT_LEXICONS or not len(review_scores):
    return None
  lexicon = getattr(aspects, ASPECT_LEXICONS[language])
  texts = tables.reviews.set_index("review_id").loc[review_scores["review_id"], "text"].tolist()
  tags = aspects.tag_aspects(texts, lexicon)
  sentiment_fn = None
  if language != "en" and encoder_dir is not None:
    sentiment_fn = _encoder_sentiment_fn(encoder_dir)
  polarity = aspects.aspect_sentiment(texts, tags, sentiment_fn=sentiment_fn, aspects=lexicon)
  table = aspects.aspect_table(tags, polarity)
  metrics = None
  if "review_aspects" in tables.truth:
    truth = tables.truth["review_aspects"]
    true_tags = pd.DataFrame(False, index=range(len(texts)), columns=tags.columns)
    pos = {rid: i for i, rid in enumerate(review_scores["review_id"].astype(str))}
    for rid, aspect in zip(truth["review_id"].astype(str), truth["aspect"]):
      if rid in pos and aspect in true_tags.columns:
        true_tags.iloc[pos[rid], true_tags.columns.get_loc(aspect)] = True
    m = aspects.aspect_metrics(tags.reset_index(drop=True), true_tags)
    metrics = {"labelled_sample": len(texts), "precision": m["precision"], "recall": m["recall"],
               "f1": m["f1"], "labels": "synthetic ground truth (the generator's aspect list)"}
  return Opinions(tags, polarity, table, metrics)


def _encoder_sentiment_fn(encoder_dir: Path):
  """clauses -> P(positive) - P(negative) from the fine-tuned encoder saved in stage 2."""
  from cvlib import pretrained, sentiment
  model, _ = pretrained.load_saved_encoder(encoder_dir)
  tokenizer = pretrained.load_tokenizer(encoder_dir)

  def score(clauses):
    proba = sentiment.predict_proba(model, tokenizer, list(clauses), buckets=(32, 64, 128))
    return proba[:, -1] - proba[:, 0]
  return score


@dataclasses.dataclass
class Topics:
  """What customers write about: review clusters named by their keywords."""
  table: pd.DataFrame  # one row per topic (cvlib.topics.topic_table), largest first
  labels: np.ndarray  # topic of each scored review, in review_scores order
  silhouette: pd.Series  # silhouette per tried k (how the number of topics was chosen)
  examples: pd.DataFrame  # topic, review text: the reviews nearest each topic's centre


# Topics need this many reviews with text: fewer give clusters of a handful of reviews.
MIN_TOPIC_REVIEWS = 60


def make_review_topics(review_scores: pd.DataFrame, embeddings: np.ndarray, tables: Tables, *,
                       language: str, seed: int, max_chars: int = 200) -> Topics | None:
  """Clusters the review embeddings and names each cluster with class-based TF-IDF keywords.

  Returns:
    The topics, or None with fewer than ``MIN_TOPIC_REVIEWS`` reviews with text.
  """
  from cvlib import topics
  if len(review_scores) < MIN_TOPIC_REVIEWS or len(embeddings) != len(review_scores):
    return None
  texts = (tables.reviews.set_index("review_id")["text"]
           .reindex(review_scores["review_id"]).fillna("").astype(str).tolist())
  max_topics = int(min(10, max(3, len(texts) // 30)))
  sil = topics.silhouette_by_k(embeddings, min_topics=3, max_topics=max_topics, seed=seed)
  labels = topics.cluster_reviews(embeddings, n_topics=int(sil.idxmax()), seed=seed)
  keywords = topics.ctfidf_keywords(texts, labels, language=language,
                                    min_df=2 if len(texts) >= 200 else 1)
  has = lambda c: c in review_scores and review_scores[c].notna().any()  # noqa: E731
  table = topics.topic_table(
      texts, labels, keywords, sentiment=review_scores["sentiment"].to_numpy(),
      rating=review_scores["rating"].to_numpy() if has("rating") else None,
      timestamp=review_scores["timestamp"].to_numpy() if has("timestamp") else None,
      review_ids=review_scores["review_id"].astype(str).to_numpy(), embeddings=embeddings)
  pos = {rid: i for i, rid in enumerate(review_scores["review_id"].astype(str))}
  rows = []
  for _, row in table.iterrows():
    for rid in row["example_ids"]:
      body = texts[pos[str(rid)]]
      rows.append({"topic": row["label"],
                   "review": body if len(body) <= max_chars else body[:max_chars - 1] + "…"})
  return Topics(table, labels, sil, pd.DataFrame(rows))


def topics_summary(t: Topics | None) -> pd.DataFrame:
  """The topic table as the report shows it."""
  if t is None:
    return pd.DataFrame()
  cols = {"label": "topic", "share": "share of reviews", "mean_sentiment": "mean sentiment",
          "mean_rating": "mean stars", "share_negative": "negative", "trend": "trend (recent vs before)",
          "keywords": "keywords"}
  out = t.table[[c for c in cols if c in t.table]].rename(columns=cols)
  if "keywords" in out:  # a list, or already "a, b, c" (topics.topic_table's form)
    out["keywords"] = out["keywords"].apply(lambda k: k if isinstance(k, str) else ", ".join(k))
  return out


def plot_topics(t: Topics | None) -> Any:
  from cvlib import topics
  return None if t is None else topics.plot_topics(t.table)


def save_topics(ws: Workspace, t: Topics | None) -> None:
  if t is None:
    ws.save_metrics({"topics": None,
                     "notes": {"topics": f"fewer than {MIN_TOPIC_REVIEWS} reviews with text"}})
    return
  table = t.table.assign(keywords=t.table["keywords"].apply(list),
                         example_ids=t.table["example_ids"].apply(lambda x: [str(i) for i in x]))
  table.attrs = {}  # topic_table keeps its "recent" cut-off there; parquet metadata is JSON
  ws.save_frame("topics", table)
  ws.save_metrics({"topics": {
      "n_topics": int(len(t.table)), "silhouette": float(t.silhouette.max()),
      "topics": [{"label": r["label"], "share": float(r["share"]),
                  "mean_sentiment": (None if pd.isna(r.get("mean_sentiment")) else
                                     float(r["mean_sentiment"]))}
                 for _, r in t.table.iterrows()]}})


def report_topics(ws: Workspace, t: Topics | None, fig,
                  reviews: pd.DataFrame | None = None) -> None:
  """The topics section; with ``reviews`` (:func:`review_details`) each topic links to its
  reviews."""
  if t is None:
    ws.add_text("opinions", "What customers write about: not part of this report (too few "
                "reviews with text).")
    return
  ws.add_figure("opinions", fig, "What customers write about: reviews grouped by what they say "
                "(clusters of the encoder's review embeddings), named by the words that set each "
                "group apart; colour is the group's mean sentiment.")
  summary = topics_summary(t)
  links = None
  if reviews is not None and len(reviews) == len(t.labels):
    links = {"topic": [ws.add_page(
        f"topic {row['label']}", f"Topic: {row['label']}",
        details.reviews_for(reviews, t.labels == row["topic"], most_negative_first=False),
        intro=f"The {row['n_reviews']:,} reviews of this topic, newest first.",
        section="opinions", max_rows=details.MAX_ROWS) for _, row in t.table.iterrows()]}
  ws.add_table("opinions", summary, f"The {len(t.table)} topics: size, tone and whether "
               "they are growing (share in the latest quarter of the reviews against before)."
               + (" Each topic links to its reviews." if links else ""),
               floatfmt="{:.2f}", links=links)
  ws.add_table("opinions", t.examples, "Typical reviews of each topic (nearest its centre).")


def review_details(review_scores: pd.DataFrame, tables: Tables, opinions: Opinions | None = None
                   ) -> pd.DataFrame | None:
  """Every scored review as the detail pages list it (date, category, stars, sentiment, aspects,
  text), in ``review_scores`` order; None without reviews."""
  if not len(review_scores):
    return None
  categories = None
  if tables.products is not None and "category" in tables.products:
    categories = tables.products.drop_duplicates("product_id").set_index("product_id")["category"]
  return details.review_list(
      review_scores, tables.reviews.drop_duplicates("review_id").set_index("review_id")["text"],
      categories=categories, tags=opinions.tags if opinions is not None else None)


def example_reviews(review_scores: pd.DataFrame, tables: Tables, opinions: Opinions | None, *,
                    n: int = 5, max_chars: int = 280) -> pd.DataFrame:
  """The most negative and the most positive reviews, as written (escaped when rendered).

  Returns:
    Up to 2n rows: tone, date, stars, sentiment score, aspects mentioned and the review text.
  """
  if not len(review_scores):
    return pd.DataFrame()
  text = tables.reviews.set_index("review_id")["text"]
  r = review_scores.reset_index(drop=True)
  mentioned = [""] * len(r)
  if opinions is not None:
    tags = opinions.tags.reset_index(drop=True)
    mentioned = [", ".join(c for c in tags.columns if row[c]) for _, row in tags.iterrows()]
  r = r.assign(aspects=mentioned)
  # stars first (what the customer said outright), then the model's sentiment within a star level
  stars = r["rating"].fillna(3.0) if "rating" in r else pd.Series(3.0, index=r.index)
  key = stars.to_numpy() + 0.5 * r["sentiment"].to_numpy()  # sentiment in [-1, 1]
  order = np.lexsort((r["sentiment"].to_numpy(), key))
  rows = []
  for tone, idx in (("most negative", order[:n]), ("most positive", order[::-1][:n])):
    for i in idx:
      body = str(text.get(r.at[i, "review_id"], ""))
      rows.append({"tone": tone,
                   "date": r.at[i, "timestamp"] if "timestamp" in r else pd.NaT,
                   "stars": r.at[i, "rating"] if "rating" in r else None,
                   "sentiment": r.at[i, "sentiment"], "aspects": r.at[i, "aspects"],
                   "review": body if len(body) <= max_chars else body[:max_chars] + "…"})
  return pd.DataFrame(rows)


@dataclasses.dataclass
class Recommendations:
  recs: pd.DataFrame
  metrics: dict | None
  top_products: pd.DataFrame | None = None  # most often recommended, with their descriptions


# Recommender settings tried on the validation window (recommend.fit_recommender's keywords):
# EASE at three ridge penalties and item-kNN at four neighbourhood sizes (None: all).
RECOMMENDERS = tuple([{"method": "ease", "l2": l2} for l2 in (50.0, 250.0, 1000.0)]
                     + [{"method": "cooccurrence", "neighbours": n} for n in (10, 20, 50, None)])


# Weights of the co-purchase part tried with product-text similarity (1 - alpha for the text).
CONTENT_ALPHAS = (0.9, 0.7)


def recommender_label(settings: dict[str, Any] | None) -> str:
  """A reader's name for a recommender setting: "EASE (l2 250)", "co-purchase, 20 neighbours",
  "EASE (l2 250) + product text 10%"."""
  settings = settings or {}
  if settings.get("method") == "ease":
    label = f"EASE (l2 {settings.get('l2', 250.0):g})"
  else:
    n = settings.get("neighbours")
    label = f"co-purchase, {'all' if n is None else n} neighbours"
  if settings.get("product_embeddings") is not None:
    label += f" + product text {1 - settings.get('alpha', 0.5):.0%}"
  return label


def product_embeddings(tables: Tables, *, language: str, encoder_dir: Path | None = None
                       ) -> pd.DataFrame | None:
  """Each product's description (else category) embedded by the shop's encoder.

  The encoder saved by the fine-tuning stage when there is one, else the installed MiniLM for
  English; None for products without text or another language without a saved encoder.
  Returns a DataFrame indexed by product_id, one column per dimension (unit-norm rows).
  """
  from cvlib import pretrained
  products = tables.products
  if products is None or not len(products):
    return None
  text = pd.Series(pd.NA, index=products.index, dtype="string")
  for col in ("category", "description"):  # a description wins over a category
    if col in products:
      value = products[col].astype("string").str.strip().replace("", pd.NA)
      text = value.fillna(text) if col == "description" else text.fillna(value)
  keep = text.notna()
  if not keep.any():
    return None
  ids, text = products.loc[keep, "product_id"].astype(str), text[keep].str.lower()
  saved = encoder_dir is not None and (Path(encoder_dir) / "cvlib_model.json").is_file()
  if saved:
    model, _ = pretrained.load_saved_encoder(encoder_dir)
    tokenizer = pretrained.load_tokenizer(encoder_dir)
  elif language == "en":
    model = tokenizer = None  # the installed MiniLM
  else:
    return None
  unique = pd.unique(text.to_numpy())
  vectors = pretrained.embed(list(unique), model=model, tokenizer=tokenizer, buckets=(16, 32, 64))
  rows = pd.Index(unique).get_indexer(text.to_numpy())
  return (pd.DataFrame(vectors[rows], index=pd.Index(ids, name="product_id"))
          .groupby(level=0).first())


def choose_recommender(cal_items: pd.DataFrame, *, candidates=RECOMMENDERS, share: float = 0.25,
                       embeddings: pd.DataFrame | None = None
                       ) -> tuple[dict[str, Any], dict[str, float]]:
  """Picks the recommender's settings on the calibration period alone.

  The last ``share`` of the calibration span is held back: fitted on the purchases before it,
  each candidate is scored by hit rate at 10 on the purchases in it; the holdout period, on which
  the report judges the recommendations, is never looked at. EASE candidates are skipped when
  the products exceed ``recommend.DENSE_PRODUCT_LIMIT``. With product ``embeddings``, the best
  co-purchase candidate is also tried blended with product-text similarity (``CONTENT_ALPHAS``).

  Returns:
    (the best candidate's settings, {label: validation hit rate}); the first candidate that
    applies and {} without timestamps or with too little data on either side.
  """
  from cvlib import recommend
  n_products = cal_items["product_id"].nunique()
  usable = [c for c in candidates
            if c.get("method") != "ease" or n_products <= recommend.DENSE_PRODUCT_LIMIT]
  if not usable:
    raise ValueError("choose_recommender: no candidate applies to "
                     f"{n_products:,} products (EASE needs at most "
                     f"{recommend.DENSE_PRODUCT_LIMIT:,})")
  if "timestamp" not in cal_items or cal_items["timestamp"].isna().all():
    return dict(usable[0]), {}
  ts = pd.to_datetime(cal_items["timestamp"])
  split = ts.min() + (ts.max() - ts.min()) * (1 - share)
  early, late = cal_items[ts < split], cal_items[ts >= split]
  who = late["customer_id"].unique()
  who = who[pd.Index(who).isin(early["customer_id"])]
  if len(early) < 100 or len(who) < 30:
    return dict(usable[0]), {}
  scores = {}

  def score(settings: dict[str, Any]) -> float:
    model = recommend.fit_recommender(early[["customer_id", "product_id"]], **settings)
    recs = recommend.recommend(model, list(who), k=10)
    scores[recommender_label(settings)] = recommend.evaluate_recommendations(
        recs, late[["customer_id", "product_id"]], k=10)["hit_rate_at_10"]
    return scores[recommender_label(settings)]

  best = usable[0]
  for settings in usable:
    if score(settings) > scores[recommender_label(best)]:  # first of equals
      best = settings
  if embeddings is not None and early["product_id"].astype(str).isin(embeddings.index).any():
    plain = best
    for alpha in CONTENT_ALPHAS:
      blended = {**plain, "product_embeddings": embeddings, "alpha": alpha}
      if score(blended) > scores[recommender_label(best)]:
        best = blended
  return dict(best), scores


def make_recommendations(prep: Prepared, tables: Tables, *, k: int, language: str = "en",
                         encoder_dir: Path | None = None) -> Recommendations:
  """Fitted on calibration purchases, evaluated on holdout purchases against popularity.

  The method and its setting are chosen on a validation window inside the calibration period
  (:func:`choose_recommender`).
  """
  from cvlib import recommend
  if not len(prep.cal_items):
    return Recommendations(pd.DataFrame(), None)
  embeddings = product_embeddings(tables, language=language, encoder_dir=encoder_dir)
  settings, validation = choose_recommender(prep.cal_items, embeddings=embeddings)
  model = recommend.fit_recommender(prep.cal_items[["customer_id", "product_id"]], **settings)
  customers = prep.hold_items["customer_id"].unique()
  customers = customers[pd.Index(customers).isin(prep.cal_items["customer_id"])]
  # the contract's metrics are at 10 whatever k the shop asks for
  recs = recommend.recommend(model, list(customers), k=max(k, 10))
  pop = recommend.popularity_recommend(model, list(customers), k=10)
  hold = prep.hold_items[["customer_id", "product_id"]]
  ours = recommend.evaluate_recommendations(recs[recs["rank"] <= 10], hold, k=10)
  base = recommend.evaluate_recommendations(pop, hold, k=10)
  recs = recs[recs["rank"] <= k]
  top = (recs.groupby("product_id").size().rename("customers").sort_values(ascending=False)
         .head(10).reset_index()
         .merge(tables.products[["product_id", "category", "description"]], on="product_id",
                how="left"))
  metrics = {"hit_rate_at_10": ours["hit_rate_at_10"], "recall_at_10": ours["recall_at_10"],
             "n_customers": ours["n_customers"],
             "popularity": {"hit_rate_at_10": base["hit_rate_at_10"],
                            "recall_at_10": base["recall_at_10"]},
             "method": recommender_label(settings),
             "settings": {k: v for k, v in settings.items() if k != "product_embeddings"},
             "product_text": embeddings is not None,
             "validation_hit_rate_at_10": validation}
  return Recommendations(recs, metrics, top)


def save_segment(ws: Workspace, scores: pd.DataFrame, matrix: pd.DataFrame | None,
                 profiles: pd.DataFrame | None, opinions: Opinions | None,
                 recs: Recommendations) -> dict:
  from cvlib import scoring
  ref = scores.attrs.get("scoring_reference")
  if ref is not None:  # what `cvlib score` needs to segment new customers as these
    scoring.ScoringReference.from_dict(ref).save(ws.path("models", scoring.REFERENCE_FILE))
  out = scores.copy(deep=False)
  out.attrs = {k: v for k, v in scores.attrs.items() if k != "scoring_reference"}
  out.to_parquet(ws.path("scores.parquet"), index=False)
  notes = {}
  if matrix is not None:
    ws.save_frame("value_risk_matrix", matrix)
    ws.save_frame("segment_profiles", profiles.reset_index())
    segs = {"count": int(scores["rfm_segment"].nunique()), "customers": len(scores),
            "actions": scores["action"].value_counts().to_dict()}
  else:
    segs, notes["segments"] = None, NOT_APPLICABLE["value"]
  if opinions is not None:
    ws.save_frame("aspect_table", opinions.table.reset_index())
  if opinions is None or opinions.metrics is None:
    notes["aspects"] = NOT_APPLICABLE["aspects"]
  if recs.metrics is None:
    notes["recommendations"] = NOT_APPLICABLE["recommendations"]
  metrics = {"segments": segs, "recommendations": recs.metrics,
             "aspects": opinions.metrics if opinions is not None else None,
             "notes": notes}
  ws.save_metrics(metrics)
  return metrics


def report_segment(ws: Workspace, scores: pd.DataFrame, matrix: pd.DataFrame | None,
                   profiles: pd.DataFrame | None, opinions: Opinions | None,
                   recs: Recommendations, examples: pd.DataFrame, figures: list,
                   reviews: pd.DataFrame | None = None) -> None:
  """The segments, opinions and recommendations sections. Each segment, value-by-risk cell and
  action links to a page of its customers; with ``reviews`` (:func:`review_details`) each aspect
  links to the reviews that mention it."""
  _report_opinions(ws, opinions, reviews)
  if len(examples):
    ws.add_table("opinions", examples, "The most negative and the most positive reviews, as "
                 "customers wrote them.", floatfmt="{:.2f}")
  _report_recommendations(ws, recs)
  if matrix is None:
    ws.add_text("segments", f"Not part of this report: {NOT_APPLICABLE['value']}.")
    return
  for warning in scores.attrs.get("warnings", []):
    ws.add_warning(f"Segments: {warning}")
  total = scores["predicted_value"].sum()
  at_risk = scores.loc[scores["risk_band"] == "High", "predicted_value"].sum()
  ws.add_headline("predicted value, next period", f"{total:,.0f}",
                  f"{len(scores):,} customers")
  ws.add_headline("value at high churn risk", f"{at_risk / total:.0%}" if total else "n/a",
                  "share of predicted value")
  ws.add_figure("segments", figures[0], "Customers by value tier and churn risk: count and "
                "share of predicted value in each cell.")
  cells, cell_links = _matrix_cells(ws, scores, matrix)
  ws.add_table("segments", cells, "The same cells as a table: customers and share of predicted "
               "value; each cell links to its customers.", links=cell_links)
  table = profiles.reset_index()
  key = table.columns[0]  # the segment name
  ws.add_table("segments", table, "Segment profiles: size, value, risk, sentiment, what they buy "
               "and talk about, and the suggested action. Each segment links to its customers.",
               links={key: [_customer_page(ws, scores, scores[key] == name, f"segment {name}",
                                           f"Segment: {name}") if key in scores else None
                            for name in table[key]]})
  ws.add_figure("segments", figures[1], "Segment sizes and their share of predicted value.")
  actions = (scores.groupby("action").agg(customers=("customer_key", "size"),
                                          predicted_value=("predicted_value", "sum"))
             .sort_values("predicted_value", ascending=False).reset_index())
  ws.add_table("segments", actions, "Next-best actions: customers and predicted value per action; "
               "each action links to its customers.",
               links={"action": [_customer_page(ws, scores, scores["action"] == a, f"action {a}",
                                                f"Action: {a}") for a in actions["action"]]})


def _customer_page(ws: Workspace, scores: pd.DataFrame, mask: pd.Series, name: str,
                   title: str) -> str:
  rows = details.customer_list(scores, mask)
  return ws.add_page(name, title, rows, section="segments", max_rows=details.MAX_ROWS,
                     floatfmt="{:,.2f}", intro=f"{len(rows):,} customers, highest predicted value first"
                     + (f" (the first {details.MAX_ROWS:,} here; all of them in scores.parquet)."
                        if len(rows) > details.MAX_ROWS else "."))


def _matrix_cells(ws: Workspace, scores: pd.DataFrame, matrix: pd.DataFrame
                  ) -> tuple[pd.DataFrame, dict[str, list[str | None]]]:
  """The value-by-risk matrix as a table (tiers down, risk bands across) with a page per cell."""
  tiers = list(dict.fromkeys(matrix["value_tier"]))
  bands = list(dict.fromkeys(matrix["risk_band"]))
  cells = pd.DataFrame({"value tier": tiers})
  links: dict[str, list[str | None]] = {}
  for band in bands:
    column, hrefs = f"{band} churn risk", []
    texts = []
    for tier in tiers:
      row = matrix[(matrix["value_tier"] == tier) & (matrix["risk_band"] == band)].iloc[0]
      texts.append(f"{int(row['n_customers']):,} · {row['share_value']:.0%} of value")
      mask = (scores["value_tier"] == tier) & (scores["risk_band"] == band)
      hrefs.append(_customer_page(ws, scores, mask, f"cell {tier} value {band} risk",
                                  f"{tier} value, {band} churn risk") if mask.any() else None)
    cells[column], links[column] = texts, hrefs
  return cells, links


def _report_opinions(ws: Workspace, opinions: Opinions | None,
                     reviews: pd.DataFrame | None = None) -> None:
  if opinions is None:
    ws.add_text("opinions", "Not part of this report: no aspect lexicon for this language, or no "
                "review text.")
    return
  table = opinions.table.reset_index()
  links = None
  if reviews is not None and len(reviews) == len(opinions.tags) and "aspect" in table:
    tags = opinions.tags.reset_index(drop=True)
    links = {"aspect": [ws.add_page(
        f"aspect {a}", f"Reviews that mention {a}", details.reviews_for(reviews, tags[a]),
        intro="Most negative first.", section="opinions", max_rows=details.MAX_ROWS)
        if a in tags and tags[a].any() else None for a in table["aspect"]]}
  ws.add_table("opinions", table, "How often each aspect is mentioned and with which sentiment."
               + (" Each aspect links to its reviews." if links else ""), links=links)
  if opinions.metrics:
    ws.add_text("opinions", f"Aspect tagging checked on {opinions.metrics['labelled_sample']:,} "
                f"labelled reviews: precision {opinions.metrics['precision']:.2f}, recall "
                f"{opinions.metrics['recall']:.2f}.")


def _report_recommendations(ws: Workspace, recs: Recommendations) -> None:
  if not recs.metrics:
    ws.add_text("recommendations", f"Not part of this report: {NOT_APPLICABLE['recommendations']}.")
    return
  m = recs.metrics
  ws.add_text("recommendations", f"For {m['n_customers']:,} customers who bought again in the "
              f"holdout period, the top 10 recommendations contained a product they bought for "
              f"{m['hit_rate_at_10']:.0%} of them (popular products alone: "
              f"{m['popularity']['hit_rate_at_10']:.0%}); recall at 10 "
              f"{m['recall_at_10']:.2f} vs {m['popularity']['recall_at_10']:.2f}. Products they "
              "had bought before are never recommended, so repeat purchases count as misses.")
  if m.get("validation_hit_rate_at_10"):
    tried = ", ".join(f"{k} {v:.0%}" for k, v in m["validation_hit_rate_at_10"].items())
    ws.add_text("recommendations", f"Recommender: {m['method']}, chosen on the last quarter of the "
                f"calibration period (hit rate at 10 there: {tried}); the holdout was not used "
                "to choose it." + (" Product-description similarity was tried in the blend "
                                   "and did not raise the hit rate there."
                                   if m.get("product_text") and "product text" not in m["method"]
                                   else ""))
  if recs.top_products is not None and len(recs.top_products):
    ws.add_table("recommendations", recs.top_products, "The products recommended to the most "
                 "customers.")


# --- explanations and opinion monitoring (cvlib.explain, cvlib.monitoring) ----------------------

def value_importance(networks: dict, name: str | None, features: pd.DataFrame,
                     text: pd.DataFrame | None, is_test: np.ndarray, *, seed: int
                     ) -> pd.DataFrame | None:
  """Permutation importance (Gini drop) of the scoring network's inputs on test customers."""
  from cvlib import explain
  if name is None:
    return None
  predictor, _ = networks[name]
  X = network_inputs(name, features, text)[is_test].reset_index(drop=True)
  y = features["holdout_value"].to_numpy()[is_test]
  return explain.permutation_importance(predictor.predict, X, y, seed=seed)


def plot_value_importance(importance: pd.DataFrame | None):
  from cvlib import explain, plots
  if importance is None:
    return plots.plot_not_applicable("Feature importance", NOT_APPLICABLE["value"])
  return explain.plot_importance(importance)


@dataclasses.dataclass
class Monitoring:
  weekly: pd.DataFrame  # per week (and category): reviews, share negative, mean rating
  flags: pd.DataFrame  # the weekly rows with their control band and status
  explanations: pd.DataFrame  # the reviews behind each flagged week (the three most telling)
  flag_reviews: pd.DataFrame  # the same, up to details.MAX_ROWS per week: the flag's page


def make_opinion_monitoring(review_scores: pd.DataFrame, tables: Tables) -> Monitoring | None:
  """Weekly share of negative reviews per category against a control band; None without dates.

  The band uses exact binomial limits: with a few reviews a week the normal approximation flags
  ten times too many weeks (measured by the module's tests).
  """
  from cvlib import monitoring
  dated = review_scores.dropna(subset=["timestamp"])
  if len(dated) < 50:
    return None
  rs = dated.merge(tables.products[["product_id", "category"]], on="product_id", how="left")
  rs["category"] = rs["category"].fillna("(unknown)")
  weekly = monitoring.weekly_opinion(rs, by="category")
  flags = monitoring.control_flags(weekly, limits="exact")
  texts = tables.reviews.set_index("review_id")["text"]
  return Monitoring(weekly, flags, monitoring.flag_explanations(rs, flags, texts),
                    monitoring.flag_explanations(rs, flags, texts, n=details.MAX_ROWS))


def plot_monitoring(mon: Monitoring | None):
  from cvlib import monitoring, plots
  if mon is None:
    return plots.plot_not_applicable("Opinion over time", "reviews carry no dates")
  return monitoring.plot_opinion_trend(mon.weekly, mon.flags,
                                       title="Share of negative reviews per week")


def save_explanations(ws: Workspace, scores: pd.DataFrame, mon: Monitoring | None) -> dict:
  """Stage 4's monitoring and explanation metrics (added to the segment stage's metrics)."""
  metrics: dict[str, Any] = {"explanations": None, "monitoring": None}
  if "top_drivers" in scores:
    metrics["explanations"] = {"method": "integrated gradients vs the median customer",
                               "completeness_gap": scores.attrs.get("completeness_gap")}
  if mon is not None:
    status = mon.flags["status"].value_counts()
    metrics["monitoring"] = {"weeks": int(mon.flags["week"].nunique()),
                             "groups": int(mon.flags["category"].nunique()),
                             "flags_worse": int(status.get("worse", 0)),
                             "flags_improved": int(status.get("improved", 0))}
    ws.save_frame("opinion_flags", mon.flags)
    ws.save_frame("opinion_flag_reviews", mon.explanations)
  ws.save_metrics(metrics)
  return metrics


def report_explanations(ws: Workspace, scores: pd.DataFrame, mon: Monitoring | None,
                        fig_trend) -> None:
  if mon is None:
    ws.add_text("opinions", "Opinion over time: not part of this report (the reviews carry no "
                "dates).")
  else:
    worse = mon.flags[mon.flags["status"] == "worse"]
    ws.add_figure("opinions", fig_trend, "Share of negative reviews per week, by category, with "
                  "its control band (exact binomial limits around the previous eight weeks); "
                  "flagged weeks are marked.")
    ws.add_text("opinions", f"{len(worse)} category-weeks had a share of negative reviews above "
                "their control band." + (" The reviews behind each are listed below." if len(worse)
                                         else ""))
    if len(worse):
      flags = worse.reset_index(drop=True)
      cols = [c for c in ("category", "week", "n_reviews", "n_negative", "share_negative",
                          "upper") if c in flags]
      hrefs = []
      for _, f in flags.iterrows():
        behind = mon.flag_reviews
        behind = behind[(behind["category"] == f["category"]) & (behind["week"] == f["week"])]
        shown = [c for c in ("rating", "sentiment", "text") if c in behind]
        hrefs.append(ws.add_page(
            f"flag {f['category']} {pd.Timestamp(f['week']):%Y-%m-%d}",
            f"{f['category']}, week of {pd.Timestamp(f['week']):%Y-%m-%d}: "
            f"{f['share_negative']:.0%} negative", behind[shown].reset_index(drop=True),
            intro="The week's reviews in this category, most negative first.",
            section="opinions", max_rows=details.MAX_ROWS))
      ws.add_table("opinions", flags[cols], "Flagged category-weeks; each links to the week's "
                   "reviews.", floatfmt="{:.2f}", links={"category": hrefs})
    if len(mon.explanations):
      cols = [c for c in ("category", "week", "status", "share_negative", "rating", "sentiment",
                          "text") if c in mon.explanations]
      ws.add_table("opinions", mon.explanations[cols], "The reviews behind each flagged week.",
                   floatfmt="{:.2f}")
  if "top_drivers" in scores:
    top = scores.sort_values("predicted_value", ascending=False).head(10)
    risky = scores[scores["value_tier"] == "High"].sort_values("churn_probability",
                                                               ascending=False).head(10)
    cols = ["customer_key", "predicted_value", "value_lo", "value_hi", "churn_probability",
            "rfm_segment", "action", "top_drivers"]
    ws.add_table("segments", top[cols], "Profile cards: the ten customers with the highest "
                 "predicted value, with what drives each prediction (pseudonymised keys).")
    ws.add_table("segments", risky[cols], "Valuable customers most at risk of leaving, with what "
                 "drives each prediction.")

"""Per-customer text features for the value models: review-embedding PCA, sentiment aggregates and
a text return score, fitted on training customers (:class:`TextFeaturizer`, saved with the run so
``cvlib score`` rebuilds the same features).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib.data.split import Prepared



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


@dataclasses.dataclass
class CustomerText:
  """Text features per customer at the cutoff (back-test) and at as_of (forward scores)."""
  featurizer: TextFeaturizer | None
  calibration: pd.DataFrame | None
  now: pd.DataFrame | None


def make_customer_text(review_scores: pd.DataFrame, embeddings: np.ndarray, prep: Prepared,
                       is_test: np.ndarray, *, text_dims: int, seed: int = 0,
                       now: bool = True) -> CustomerText:
  """Text features, or all None when no customer wrote a review before the cutoff.

  ``now=False`` skips the features at as_of (``CustomerText.now`` None): the cross-fitted
  back-test needs only the calibration ones.
  """
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
  if not now:
    return CustomerText(fz, calibration, None)
  return CustomerText(fz, calibration,
                      fz.transform(prep.features_now["customer_id"], review_scores, embeddings,
                                   prep.as_of))

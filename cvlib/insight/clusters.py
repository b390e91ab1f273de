"""Customers grouped by what they write: clusters of each customer's mean review embedding.

Review topics (``cvlib.stages.segment.make_review_topics``) say what reviews are about; these clusters say
which kinds of customers write them. Each customer with review text becomes one point, the mean
of their reviews' encoder embeddings; k-means picks the number of clusters by silhouette
(``topics.cluster_reviews``), each cluster is named by the class-based TF-IDF keywords of its
customers' reviews taken together, and profiled with the customers' predicted value, churn risk
and sentiment. Each cluster links to its customers in the report.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from cvlib.insight import topics

# Clustering needs this many customers with text; fewer give clusters of a handful.
MIN_CUSTOMERS = 60


@dataclasses.dataclass
class CustomerClusters:
  """One row per cluster (``table``) and the cluster of each customer with text (``members``)."""
  table: pd.DataFrame  # cluster, label, keywords, customers, share_customers, value, risk, tone
  members: pd.DataFrame  # customer_key, cluster, label
  silhouette: pd.Series  # silhouette per tried k


def customer_embeddings(review_scores: pd.DataFrame, embeddings: np.ndarray
                        ) -> tuple[pd.Index, np.ndarray]:
  """Each customer's mean review embedding (unit-norm rows), customers in sorted id order.

  Reviews without a customer id are left out.

  Raises:
    ValueError: embeddings not aligned with review_scores.
  """
  if len(embeddings) != len(review_scores):
    raise ValueError(f"customer_embeddings: {len(embeddings)} embeddings for "
                     f"{len(review_scores)} reviews")
  who = review_scores["customer_id"]
  known = who.notna().to_numpy()
  codes, customers = pd.factorize(who[known].astype(str), sort=True)
  sums = np.zeros((len(customers), embeddings.shape[1]), np.float64)
  np.add.at(sums, codes, np.asarray(embeddings, np.float64)[known])
  norms = np.linalg.norm(sums, axis=1, keepdims=True)
  return pd.Index(customers), (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def make_customer_clusters(review_scores: pd.DataFrame, embeddings: np.ndarray,
                           texts: pd.Series, scores: pd.DataFrame,
                           keys: pd.DataFrame, *, language: str, seed: int,
                           max_clusters: int = 8) -> CustomerClusters | None:
  """Clusters customers by their mean review embedding and profiles each cluster.

  Args:
    review_scores: stage 2's scored reviews (customer_id, review_id, sentiment).
    embeddings: [n_reviews, dim] review embeddings in review_scores order.
    texts: review text by review_id.
    scores: the segment stage's scores (customer_key, predicted_value, churn_probability).
    keys: customer_id and its pseudonymised customer_key (e.g. ``prep.features_now``); reviews
      of customers not in it are left out.
    language: for the keywords' tokenizer.
    seed: seeds the clustering.
    max_clusters: largest k tried.

  Returns:
    The clusters, or None with fewer than ``MIN_CUSTOMERS`` customers with text.
  """
  if "customer_id" not in review_scores or not len(review_scores):
    return None
  unique = keys.drop_duplicates("customer_id")
  key_of = pd.Series(unique["customer_key"].to_numpy(), index=unique["customer_id"].astype(str))
  keep = review_scores["customer_id"].astype(str).isin(key_of.index).to_numpy()
  review_scores, embeddings = review_scores[keep], np.asarray(embeddings)[keep]
  customers, vectors = customer_embeddings(review_scores, embeddings)
  if len(customers) < MIN_CUSTOMERS:
    return None
  k_max = int(min(max_clusters, max(3, len(customers) // 30)))
  sil = topics.silhouette_by_k(vectors, min_topics=3, max_topics=k_max, seed=seed)
  labels = topics.cluster_reviews(vectors, n_topics=int(sil.idxmax()), seed=seed)
  rs = review_scores.dropna(subset=["customer_id"])
  body = rs["review_id"].map(texts).fillna("").astype(str)
  documents = body.groupby(rs["customer_id"].astype(str)).agg(" ".join).reindex(customers)
  keywords = topics.ctfidf_keywords(documents.fillna("").tolist(), labels, language=language,
                                    min_df=2 if len(customers) >= 200 else 1)
  sentiment = rs.groupby(rs["customer_id"].astype(str))["sentiment"].mean().reindex(customers)
  members = pd.DataFrame({"customer_key": customers.map(key_of).to_numpy(), "cluster": labels,
                          "sentiment": sentiment.to_numpy()})
  scored = members.merge(scores[[c for c in ("customer_key", "predicted_value",
                                              "churn_probability") if c in scores]],
                         on="customer_key", how="left")
  total_value = scores["predicted_value"].sum() if "predicted_value" in scores else np.nan
  rows = []
  for c in range(labels.max() + 1):
    part = scored[scored["cluster"] == c]
    words = [str(w) for w in keywords.get(c, [])]
    row: dict[str, Any] = {"cluster": c, "label": ", ".join(words[:3]) or f"cluster {c + 1}",
                           "customers": len(part), "share_customers": len(part) / len(scored),
                           "mean_sentiment": part["sentiment"].mean()}
    if "predicted_value" in part:
      row["share_value"] = (part["predicted_value"].sum() / total_value
                            if total_value else np.nan)
      row["mean_predicted_value"] = part["predicted_value"].mean()
    if "churn_probability" in part:
      row["mean_churn_probability"] = part["churn_probability"].mean()
    row["keywords"] = ", ".join(words)
    rows.append(row)
  labels_by_id = {r["cluster"]: r["label"] for r in rows}
  members["label"] = members["cluster"].map(labels_by_id)
  return CustomerClusters(pd.DataFrame(rows), members, sil)



"""Tests for cvlib.insight.clusters: customers grouped by what they write."""

import numpy as np
import pandas as pd
import pytest

from cvlib.insight import clusters
from cvlib.report.workspace import Workspace
from cvlib.stages import segment


def _shop(n_per_group=40, seed=0):
  """Three kinds of customers (delivery, sizes, price talk), two reviews each."""
  rng = np.random.default_rng(seed)
  words = {0: "late delivery courier parcel", 1: "size small tight fit", 2: "price cheap value"}
  rows, vecs = [], []
  centres = np.eye(3, 16)
  for g in range(3):
    for i in range(n_per_group):
      cid = f"C{g}{i:03d}"
      for j in range(2):
        rows.append({"customer_id": cid, "review_id": f"R{g}{i:03d}{j}",
                     "sentiment": -0.5 if g == 0 else 0.5, "group": g})
        vecs.append(centres[g] + 0.05 * rng.normal(size=16))
  rs = pd.DataFrame(rows)
  texts = pd.Series({r["review_id"]: f"{words[r['group']]} review" for r in rows})
  keys = pd.DataFrame({"customer_id": rs["customer_id"].unique()})
  keys["customer_key"] = "c-" + keys["customer_id"].str.lower()
  scores = keys[["customer_key"]].assign(
      predicted_value=np.where(keys["customer_id"].str[1] == "0", 10.0, 1.0),
      churn_probability=0.3)
  return rs, np.asarray(vecs, np.float32), texts, scores, keys


def test_customer_embeddings_average_and_normalise():
  rs = pd.DataFrame({"customer_id": ["b", "a", "b", None]})
  emb = np.array([[2.0, 0.0], [0.0, 3.0], [0.0, 2.0], [5.0, 5.0]])
  who, vec = clusters.customer_embeddings(rs, emb)
  assert list(who) == ["a", "b"]
  np.testing.assert_allclose(vec, [[0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]], atol=1e-6)
  with pytest.raises(ValueError, match="3 embeddings for 4 reviews"):
    clusters.customer_embeddings(rs, emb[:3])


def test_clusters_find_the_three_kinds_of_customers(tmp_path):
  rs, emb, texts, scores, keys = _shop()
  cc = clusters.make_customer_clusters(rs, emb, texts, scores, keys, language="en", seed=0)
  assert len(cc.table) == 3 and len(cc.members) == 120
  # each group is one kind of customer, named by its words
  kind = cc.members["customer_key"].str[3]
  assert (pd.crosstab(cc.members["cluster"], kind).to_numpy() > 0).sum() == 3
  delivery = cc.table[cc.table["keywords"].str.contains("delivery|courier|parcel")]
  assert len(delivery) == 1
  assert delivery["share_value"].iloc[0] == pytest.approx(400 / 480)
  assert delivery["mean_sentiment"].iloc[0] == pytest.approx(-0.5)
  assert cc.table["share_customers"].sum() == pytest.approx(1.0)
  # report: each group links to a page of its customers
  ws = Workspace(tmp_path / "run", "segment")
  segment.report_customer_clusters(ws, cc, scores)
  metrics = segment.save_customer_clusters(ws, cc)
  assert metrics["customer_clusters"]["n_clusters"] == 3
  table = [p for p in ws._parts if p["kind"] == "table"][0]
  assert all(isinstance(row[0], dict) and row[0]["href"].startswith("details/")
             for row in table["rows"])
  pages = [p for p in ws._parts if p["kind"] == "page"]
  assert sorted(p["total_rows"] for p in pages) == [40, 40, 40]


def test_too_few_customers_or_no_reviews():
  rs, emb, texts, scores, keys = _shop(n_per_group=10)
  assert clusters.make_customer_clusters(rs, emb, texts, scores, keys, language="en",
                                         seed=0) is None
  assert clusters.make_customer_clusters(rs.iloc[:0], emb[:0], texts, scores, keys,
                                         language="en", seed=0) is None

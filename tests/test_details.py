"""Tests for cvlib.report.details: the customer and review lists behind the report's links."""

import numpy as np
import pandas as pd
import pytest

from cvlib.report import details


def _scores():
  return pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "customer_key": ["c-b", "c-a", "c-c"],
                       "predicted_value": [5.0, 9.0, 5.0], "churn_probability": [0.1, 0.5, 0.9],
                       "rfm_segment": ["Lost", "Champions", "Lost"], "extra": [1, 2, 3]})


def test_customer_list_is_pseudonymised_and_sorted_by_value():
  out = details.customer_list(_scores())
  assert list(out.columns) == ["customer_key", "predicted_value", "churn_probability",
                               "rfm_segment"]  # no raw id, nothing unlisted
  assert out["customer_key"].tolist() == ["c-a", "c-b", "c-c"]  # value, then key on ties
  lost = details.customer_list(_scores(), _scores()["rfm_segment"] == "Lost")
  assert lost["customer_key"].tolist() == ["c-b", "c-c"]
  with pytest.raises(ValueError, match="customer_key"):
    details.customer_list(_scores().drop(columns="customer_key"))


def test_review_list_and_reviews_for():
  rs = pd.DataFrame({"review_id": ["r1", "r2", "r3"], "product_id": ["p1", "p2", "p9"],
                     "timestamp": pd.to_datetime(["2024-01-03", "2024-01-01", "2024-01-02"]),
                     "rating": [5, 1, 3], "sentiment": [0.9, -0.8, 0.0]})
  texts = pd.Series({"r1": "lovely", "r2": "x" * 30, "r3": "<b>meh</b>"})
  tags = pd.DataFrame({"delivery": [True, True, False], "price": [False, True, False]})
  out = details.review_list(rs, texts, categories=pd.Series({"p1": "toys", "p2": "home"}),
                            tags=tags, topics=["a", "b", "a"], max_chars=10)
  assert out["review"].tolist() == ["lovely", "x" * 10 + "…", "<b>meh</b>"]
  assert out["aspects"].tolist() == ["delivery", "delivery, price", ""]
  assert out["category"].tolist()[:2] == ["toys", "home"] and pd.isna(out["category"][2])
  assert out["date"].tolist() == ["2024-01-03", "2024-01-01", "2024-01-02"]
  neg = details.reviews_for(out, tags["delivery"].to_numpy())
  assert neg["review"].tolist() == ["x" * 10 + "…", "lovely"]  # most negative first
  assert "review_id" not in neg
  newest = details.reviews_for(out, np.array([True, True, True]), most_negative_first=False)
  assert newest["date"].tolist() == ["2024-01-03", "2024-01-02", "2024-01-01"]
  with pytest.raises(ValueError, match="tags has 2 rows for 3 reviews"):
    details.review_list(rs, texts, tags=tags.head(2))
  # a review the aspect model did not read (outside its sample) does not look like one without
  # aspects
  partly = details.review_list(rs, texts, tags=tags, tagged=[True, False, True])
  assert partly["aspects"].tolist() == ["delivery", details.NOT_READ, ""]
  with pytest.raises(ValueError, match=r"tagged has \(2,\) values for 3 reviews"):
    details.review_list(rs, texts, tags=tags, tagged=[True, False])
  with pytest.raises(ValueError, match="2 topic labels for 3 reviews"):
    details.review_list(rs, texts, topics=["a", "b"])

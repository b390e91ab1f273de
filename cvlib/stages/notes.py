"""What the stages tell the reader when a part of the report cannot be computed."""

from __future__ import annotations




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

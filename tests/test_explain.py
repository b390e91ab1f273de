"""Explanations: permutation importance, integrated gradients, readable drivers, word occlusion."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from matplotlib.figure import Figure

from cvlib.config import FinetuneConfig
from cvlib.text import bert as bert_lib
from cvlib.insight import explain
from cvlib.text import checkpoint, embedding, sentiment, tokens
from cvlib.value import ziln

# ----------------------------------------------------------------------------------------------
# Permutation importance


def _toy_data(n=400, seed=0):
  rng = np.random.default_rng(seed)
  X = pd.DataFrame({"noise": rng.normal(size=n), "weak": rng.normal(size=n),
                    "signal": rng.normal(size=n)})
  y = np.exp(X["signal"] + 0.3 * X["weak"] + 0.1 * rng.normal(size=n))
  return X, y.to_numpy()


def _toy_predict(X: pd.DataFrame) -> np.ndarray:
  # the model never reads "noise"
  return np.exp(X["signal"].to_numpy() + 0.3 * X["weak"].to_numpy())


def test_permutation_importance_ranks_the_planted_column_first():
  X, y = _toy_data()
  imp = explain.permutation_importance(_toy_predict, X, y, n_repeats=4, seed=0)
  assert imp["feature"].tolist() == ["signal", "weak", "noise"]
  assert list(imp.columns) == ["feature", "importance", "std"]
  assert imp["importance"].iloc[0] > 0.3 and imp["importance"].iloc[1] > 0.0
  # an unused column loses nothing, exactly
  assert imp.set_index("feature").loc["noise", "importance"] == 0.0
  assert imp.set_index("feature").loc["noise", "std"] == 0.0
  from cvlib.value.metrics import gini_normalised
  assert imp.attrs["baseline_score"] == pytest.approx(gini_normalised(y, _toy_predict(X)))


def test_permutation_importance_is_seeded_and_matches_a_manual_shuffle():
  X, y = _toy_data(n=200)
  a = explain.permutation_importance(_toy_predict, X, y, n_repeats=3, seed=5)
  b = explain.permutation_importance(_toy_predict, X, y, n_repeats=3, seed=5)
  pd.testing.assert_frame_equal(a, b)
  c = explain.permutation_importance(_toy_predict, X, y, n_repeats=3, seed=6)
  assert not np.allclose(a["importance"], c["importance"])
  # reference: the same shuffles done by hand (column "signal" is number 2)
  from cvlib.value.metrics import gini_normalised
  rng = np.random.default_rng([5, 2])
  scores = []
  for _ in range(3):
    Xs = X.copy()
    Xs["signal"] = X["signal"].to_numpy()[rng.permutation(len(X))]
    scores.append(gini_normalised(y, _toy_predict(Xs)))
  row = a.set_index("feature").loc["signal"]
  assert row["importance"] == pytest.approx(a.attrs["baseline_score"] - np.mean(scores))
  assert row["std"] == pytest.approx(np.std(scores, ddof=1))


def test_permutation_importance_custom_metric_and_dataframe_output():
  X, y = _toy_data(n=100)
  neg_mae = lambda yt, yp: -float(np.mean(np.abs(yt - yp)))
  imp = explain.permutation_importance(
      lambda d: pd.DataFrame({"predicted_value": _toy_predict(d)}), X, y, metric=neg_mae,
      n_repeats=2)
  assert imp["feature"].iloc[0] == "signal"


def test_permutation_importance_validation():
  X, y = _toy_data(n=20)
  with pytest.raises(ValueError, match="metric must be one of \\['gini'\\]"):
    explain.permutation_importance(_toy_predict, X, y, metric="auc")
  with pytest.raises(ValueError, match="n_repeats must be an int >= 1"):
    explain.permutation_importance(_toy_predict, X, y, n_repeats=0)
  with pytest.raises(ValueError, match="y must be 1-D with 20 rows"):
    explain.permutation_importance(_toy_predict, X, y[:5])
  with pytest.raises(ValueError, match="nothing to lose"):
    explain.permutation_importance(_toy_predict, X, np.zeros(20))
  with pytest.raises(ValueError, match="one prediction per row"):
    explain.permutation_importance(lambda d: np.zeros(3), X, y)
  with pytest.raises(ValueError, match="X must be a DataFrame"):
    explain.permutation_importance(_toy_predict, X.to_numpy(), y)


def test_plot_importance():
  X, y = _toy_data(n=100)
  fig = explain.plot_importance(explain.permutation_importance(_toy_predict, X, y, n_repeats=2))
  assert isinstance(fig, Figure)
  assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["noise", "weak", "signal"]
  with pytest.raises(ValueError, match=r"column\(s\) \['std'\] missing"):
    explain.plot_importance(pd.DataFrame({"feature": ["a"], "importance": [1.0]}))


# ----------------------------------------------------------------------------------------------
# Integrated gradients


@pytest.fixture(scope="module")
def toy_ziln():
  rng = np.random.default_rng(0)
  n = 500
  X = pd.DataFrame({"n_orders": rng.poisson(3, n).astype(float) + 1,
                    "days_since_last": rng.uniform(0, 300, n),
                    "noise": rng.normal(size=n)})
  p = 1 / (1 + np.exp(-(0.5 * X["n_orders"] - X["days_since_last"] / 100)))
  value = np.exp(2 + 0.2 * X["n_orders"] + 0.3 * rng.normal(size=n))
  y = np.where(rng.random(n) < p, value, 0.0)
  predictor, _ = ziln.train_ziln(X[:400], y[:400], X[400:], y[400:], hidden=(16, 8),
                                 epochs=15, batch_size=128, learning_rate=3e-3, seed=0)
  return predictor, X[400:]


def test_integrated_gradients_completeness(toy_ziln):
  predictor, X = toy_ziln
  f = predictor.predict(X)["predicted_value"].to_numpy()
  base = X.median()
  f_base = float(predictor.predict(pd.DataFrame([base]))["predicted_value"].iloc[0])
  gaps = {}
  for steps in (8, 256):
    attr = explain.integrated_gradients(predictor, X, steps=steps)
    assert attr.shape == X.shape and list(attr.columns) == list(X.columns)
    assert attr.index.equals(X.index)
    assert attr.attrs["baseline_value"] == pytest.approx(f_base, rel=1e-5)
    gap = np.abs(attr.sum(axis=1).to_numpy() - (f - f_base))
    gaps[steps] = gap.mean() / np.abs(f - f_base).mean()
    assert attr.attrs["completeness_gap"] == pytest.approx(gaps[steps], rel=1e-3, abs=1e-6)
  # attributions sum to f(x) - f(baseline) up to the quadrature error, which shrinks with steps
  assert gaps[256] < 0.005
  assert gaps[256] < gaps[8]
  # the default (32 steps) is within a few percent
  assert explain.integrated_gradients(predictor, X).attrs["completeness_gap"] < 0.05


def test_integrated_gradients_against_finite_differences(toy_ziln):
  """With one step IG is (x - b) * grad f at the midpoint: check the gradient numerically."""
  predictor, X = toy_ziln
  x = X.iloc[[3]]
  b = X.median().to_numpy()
  mid = (x.to_numpy()[0] + b) / 2
  attr = explain.integrated_gradients(predictor, x, steps=1, baseline=b).to_numpy()[0]
  f = lambda row: float(predictor.predict(pd.DataFrame([row], columns=X.columns))
                        ["predicted_value"].iloc[0])
  for j, col in enumerate(X.columns):
    h = 1e-3 * X[col].std()  # small: a wider step can cross a ReLU kink
    up, down = mid.copy(), mid.copy()
    up[j] += h
    down[j] -= h
    grad = (f(up) - f(down)) / (2 * h)
    assert attr[j] == pytest.approx((x.iloc[0, j] - b[j]) * grad, rel=2e-2, abs=1e-3), col


def test_integrated_gradients_zero_where_the_customer_equals_the_baseline(toy_ziln):
  predictor, X = toy_ziln
  base = X.median()
  x = X.head(4).copy()
  x["noise"] = base["noise"]
  attr = explain.integrated_gradients(predictor, x, baseline=base)
  assert (attr["noise"] == 0.0).all()
  # deterministic
  pd.testing.assert_frame_equal(attr, explain.integrated_gradients(predictor, x, baseline=base))
  # a baseline equal to the customer explains nothing
  same = explain.integrated_gradients(predictor, X.head(1), baseline=X.iloc[0])
  assert (same.to_numpy() == 0.0).all()


def test_integrated_gradients_chunks_agree(toy_ziln):
  predictor, X = toy_ziln
  whole = explain.integrated_gradients(predictor, X, steps=16)
  chunked = explain.integrated_gradients(predictor, X, steps=16, chunk_rows=17 * 7)
  np.testing.assert_allclose(chunked.to_numpy(), whole.to_numpy(), rtol=1e-5, atol=1e-6)


def test_integrated_gradients_validation(toy_ziln):
  predictor, X = toy_ziln
  with pytest.raises(ValueError, match="differ from the training columns"):
    explain.integrated_gradients(predictor, X[["noise", "n_orders", "days_since_last"]])
  with pytest.raises(ValueError, match="steps must be an int >= 1"):
    explain.integrated_gradients(predictor, X, steps=0)
  with pytest.raises(ValueError, match="baseline must be 'median', 'mean'"):
    explain.integrated_gradients(predictor, X, baseline="mode")
  with pytest.raises(ValueError, match=r"one value per feature \(3\)"):
    explain.integrated_gradients(predictor, X, baseline=[1.0, 2.0])
  with pytest.raises(ValueError, match="holds NaN/inf"):
    explain.integrated_gradients(predictor, X.assign(noise=np.nan))


# ----------------------------------------------------------------------------------------------
# Readable drivers


def test_top_drivers_formatting():
  # counts and money as the model sees them (log1p, cvlib.data.features.feature_matrix)
  X = pd.DataFrame({"n_orders": np.log1p([7.0, 1.0]), "days_since_last": [200.0, 3.0],
                    "total_spend": [np.log1p(1234.0), np.log1p(20.0)],
                    "mean_rating": [4.5, 3.0], "has_review": [1.0, 0.0],
                    "text_pc2": [0.31, -0.2], "mystery": [0.5, 2.0]})
  attr = pd.DataFrame({"n_orders": [124.0, -3.0], "days_since_last": [-80.0, 0.5],
                       "total_spend": [40.0, -2.0], "mean_rating": [1.0, -9.0],
                       "has_review": [0.0, 0.1], "text_pc2": [-0.04, 0.0],
                       "mystery": [0.0, 1.5]}, index=X.index)
  drivers = explain.top_drivers(attr, X, k=3)
  assert drivers == [
      "bought 7 times (+124); last order 200 days ago (-80); spent 1,234 in total (+40)",
      "no reviews yet (-9.0); bought once (-3.0); spent 20 in total (-2.0)",
  ]
  assert explain.top_drivers(attr, X, k=1) == ["bought 7 times (+124)", "no reviews yet (-9.0)"]
  last = explain.top_drivers(attr, X, k=7)[1].split("; ")
  assert "mystery = 2 (+1.5)" in last and "review topic 2 score -0.20 (+0.0)" in last
  with pytest.raises(ValueError, match="k must be an int >= 1"):
    explain.top_drivers(attr, X, k=0)
  with pytest.raises(ValueError, match="must have the same rows and columns"):
    explain.top_drivers(attr.drop(columns="mystery"), X)


def test_describe_feature_covers_every_model_input():
  from cvlib.data.features import BEHAVIOUR_FEATURES, REVIEW_FEATURES
  text = ["sent_mean", "sent_min", "sent_last", "n_negative_reviews", "has_text", "text_pc1"]
  for name in (*BEHAVIOUR_FEATURES, *REVIEW_FEATURES, "has_review", *text):
    phrase = explain.describe_feature(name, 2.0)
    assert "=" not in phrase, name  # every known input has its own sentence
  assert explain.describe_feature("share_low_ratings", 0.25) == "25% of ratings 1-2 stars"
  assert explain.describe_feature("avg_order_value", math.log1p(49.0)) == "average order 49"
  assert explain.describe_feature("avg_order_value", 49.0, log_money=False) == "average order 49"


# ----------------------------------------------------------------------------------------------
# Word attributions

POSITIVE = ["great", "excellent", "wonderful", "perfect", "lovely", "fantastic"]
NEGATIVE = ["terrible", "awful", "horrible", "broken", "disappointing", "bad"]
THINGS = ["delivery", "quality", "price", "fit", "service", "packaging"]


@nnx.jit(graph=False)
def _pooled(model, input_ids, attention_mask):
  sequence_output, _ = model.bert(input_ids, attention_mask, deterministic=True)
  return bert_lib.mean_pool(sequence_output, attention_mask)  # [batch, hidden]


@pytest.fixture(scope="module")
def polar_classifier():
  """One MiniLM layer with a logistic-regression head on its mean-pooled output (fitted in a
  second, no gradient training): a real tokenizer and encoder with a known polarity."""
  from sklearn.linear_model import LogisticRegression
  tokenizer = tokens.load_tokenizer()
  model, _ = checkpoint.load_classifier(2, num_layers=1, seed=0)
  texts = [f"the {t} was {w}" for t in THINGS for w in POSITIVE + NEGATIVE]
  labels = [int(w in POSITIVE) for t in THINGS for w in POSITIVE + NEGATIVE]
  feats = embedding.predict_batched(_pooled, model, tokenizer, texts, out_dim=384, buckets=(16,))
  clf = LogisticRegression(C=10.0, max_iter=2000).fit(feats, labels)
  w, c = clf.coef_[0] / 2, clf.intercept_[0] / 2  # softmax over (-s, s) = sigmoid(2s)
  model.classifier.kernel[...] = jnp.asarray(np.stack([-w, w], axis=1), jnp.float32)
  model.classifier.bias[...] = jnp.asarray([-c, c], jnp.float32)
  return model, tokenizer


def test_word_attributions_find_the_polar_word(polar_classifier):
  model, tokenizer = polar_classifier
  proba = sentiment.predict_proba(model, tokenizer, ["the delivery was terrible"], buckets=(16,))
  assert proba[0, 0] > 0.9  # the classifier calls it negative
  scores = explain.word_attributions(model, tokenizer, "the delivery was terrible",
                                     target_class=0, buckets=(16,))
  assert [w for w, _ in scores] == ["the", "delivery", "was", "terrible"]
  best = max(scores, key=lambda ws: ws[1])
  assert best[0] == "terrible" and best[1] > 0.2
  # towards the positive class the same word scores the opposite
  pos = dict(explain.word_attributions(model, tokenizer, "the delivery was terrible",
                                       target_class=1, buckets=(16,)))
  assert pos["terrible"] == pytest.approx(-best[1], abs=1e-5)


def test_word_attributions_one_score_per_word_in_order(polar_classifier):
  model, tokenizer = polar_classifier
  text = "Unbelievably, the packaging wasn't bad... but the fit is horrible!"
  scores = explain.word_attributions(model, tokenizer, text, target_class=0, buckets=(16, 32))
  words = [w for w, _ in scores]
  # WordPiece pieces ("unbel ##ie ##va ##bly") come back as one word; punctuation runs stay whole
  assert words == ["Unbelievably", ",", "the", "packaging", "wasn't", "bad", "...", "but", "the",
                   "fit", "is", "horrible", "!"]
  assert len(tokenizer.encode("Unbelievably").tokens) > 3
  assert all(isinstance(s, float) and math.isfinite(s) for _, s in scores)
  assert scores == explain.word_attributions(model, tokenizer, text, target_class=0,
                                             buckets=(16, 32))  # deterministic
  assert explain.word_attributions(model, tokenizer, "  ", target_class=0) == []


def test_word_attributions_split_chinese_into_characters(polar_classifier):
  """Chinese has no spaces: each ideograph is a word, not the whole clause."""
  model, tokenizer = polar_classifier
  scores = explain.word_attributions(model, tokenizer, "东西很差，isn't it", target_class=0,
                                     buckets=(16, 32))
  assert [w for w, _ in scores] == ["东", "西", "很", "差", "，", "isn't", "it"]


def test_word_attributions_past_the_length_limit_score_zero(polar_classifier):
  model, tokenizer = polar_classifier
  text = "the delivery was terrible " + " ".join(["fine"] * 30)
  scores = explain.word_attributions(model, tokenizer, text, target_class=0, buckets=(8,))
  # [CLS] + 6 words + [SEP]: the 6 first words are seen
  assert len(scores) == 34
  assert all(s == 0.0 for _, s in scores[6:]) and scores[3][1] != 0.0


def test_word_attributions_with_head_tail_see_the_end(polar_classifier):
  """finetune.truncation head_tail: the model reads the end of a long review, so its last words
  score; the start is still read too."""
  model, tokenizer = polar_classifier
  text = "the delivery was " + " ".join(["fine"] * 30) + " terrible"
  # [CLS] + the first word + the last 5 + [SEP]
  scores = explain.word_attributions(model, tokenizer, text, target_class=0, buckets=(8,),
                                     truncation="head_tail")
  assert len(scores) == 34 and scores[-1][0] == "terrible"
  assert scores[-1][1] > 0.05 and scores[-1][1] == max(s for _, s in scores)
  head = explain.word_attributions(model, tokenizer, text, target_class=0, buckets=(8,))
  assert head[-1][1] == 0.0  # head only: never seen


def test_word_attributions_validation(polar_classifier):
  model, tokenizer = polar_classifier
  with pytest.raises(ValueError, match=r"target_class must be an int in \[0, 2\)"):
    explain.word_attributions(model, tokenizer, "good", target_class=2)
  with pytest.raises(ValueError, match="text must be a str"):
    explain.word_attributions(model, tokenizer, None, target_class=0)


def test_sentiment_word_effects_name_the_words_behind_confident_calls_and_mistakes(
    polar_classifier):
  from cvlib.stages import finetune
  model, tokenizer = polar_classifier
  texts = ["the delivery was terrible", "the parcel was great", "the quality was awful",
           "the service was excellent", "the box was terrible"]
  labels = np.array([0, 1, 0, 1, 1])  # the last one is labelled positive: a mistake
  data = finetune.SentimentData(class_names=["negative", "positive"], train_texts=[],
                                train_labels=np.array([], int), val_texts=[],
                                val_labels=np.array([], int), test_texts=texts,
                                test_labels=labels, n_labelled=len(texts))
  cfg = FinetuneConfig(buckets=(16,))
  out = finetune.sentiment_word_effects(cfg, model, tokenizer, data, n=1)
  assert out["case"].tolist() == ["confident negative", "confident positive",
                                  "confident mistake"]
  mistake = out.iloc[2]
  assert mistake["review"] == "the box was terrible" and mistake["predicted"] == "negative"
  assert mistake["true"] == "positive" and mistake["words for it"].startswith("terrible (+")
  assert out.iloc[1]["words for it"].split(" (")[0] in ("great", "excellent")
  empty = dataclasses.replace(data, test_texts=[], test_labels=np.array([], int))
  assert finetune.sentiment_word_effects(cfg, model, tokenizer, empty).empty

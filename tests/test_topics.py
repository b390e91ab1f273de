"""Tests for cvlib.insight.topics: clusters recover known themes, c-TF-IDF by hand, the topic table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import adjusted_rand_score

from cvlib.insight import topics

THEMES = {
    "delivery": "delivery shipping courier arrived tracking parcel dispatch late".split(),
    "sizing": "size small large fit tight loose waist length".split(),
    "fabric": "fabric cotton material stitching soft thin seams wash".split(),
    "price": "price expensive cheap value money discount bargain cost".split(),
}
FILLER = "the was really item order dress okay very".split()
SIZES = (80, 60, 50, 40)  # distinct sizes, so topic ids (numbered by size) are known


@pytest.fixture(scope="module")
def corpus():
  """Texts from four themes and bag-of-words embeddings of them (+ noise), built independently."""
  rng = np.random.default_rng(0)
  texts, theme = [], []
  for t, words in enumerate(THEMES.values()):
    for _ in range(SIZES[t]):
      w = rng.choice(words, 4, replace=False)
      f = rng.choice(FILLER, 2, replace=False)
      texts.append(f"{f[0]} {w[0]} {w[1]} {f[1]} {w[2]} {w[3]}")
      theme.append(t)
  vocab = {w: i for i, w in enumerate(sorted({*FILLER, *sum(THEMES.values(), [])}))}
  emb = np.zeros((len(texts), len(vocab)))
  for i, text in enumerate(texts):
    for w in text.split():
      emb[i, vocab[w]] += 1.0
  emb += rng.normal(0.0, 0.3, emb.shape)
  emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  return texts, np.array(theme), emb


@pytest.fixture(scope="module")
def labels(corpus):
  return topics.cluster_reviews(corpus[2])


# --- clustering ---------------------------------------------------------------------------------

def test_auto_k_recovers_the_four_themes(corpus, labels):
  _, theme, emb = corpus
  assert labels.shape == (len(theme),) and labels.dtype.kind == "i"
  assert len(np.unique(labels)) == 4
  assert adjusted_rand_score(theme, labels) > 0.8
  scores = topics.silhouette_by_k(emb)
  assert list(scores.index) == list(range(3, 13))
  assert scores.idxmax() == 4


def test_topics_are_numbered_by_size(corpus, labels):
  sizes = np.bincount(labels)
  assert (np.diff(sizes) <= 0).all()
  # themes were made with sizes 80 > 60 > 50 > 40, so topic t is (mostly) theme t
  theme = corpus[1]
  assert all(np.bincount(theme[labels == t]).argmax() == t for t in range(4))


def test_fixed_k_sampled_fit_and_determinism(corpus, labels):
  emb = corpus[2]
  again = topics.cluster_reviews(emb, seed=0)
  np.testing.assert_array_equal(labels, again)
  # fitting on a 100-row sample still assigns every review, and recovers the themes
  sampled = topics.cluster_reviews(emb, n_topics=4, max_fit=100, seed=3)
  assert sampled.shape == labels.shape
  assert adjusted_rand_score(corpus[1], sampled) > 0.8
  np.testing.assert_array_equal(sampled, topics.cluster_reviews(emb, n_topics=4, max_fit=100,
                                                                seed=3))
  # without PCA (dims already small) the result is the same partition
  assert adjusted_rand_score(labels, topics.cluster_reviews(emb, n_topics=4, pca_dims=None)) > 0.95


def test_cluster_reviews_rejects_bad_input():
  rng = np.random.default_rng(1)
  with pytest.raises(ValueError, match="min_topics=3"):
    topics.cluster_reviews(rng.normal(size=(3, 5)))  # silhouette needs k < distinct rows
  with pytest.raises(ValueError, match="n_topics=4 but only 3 distinct"):
    topics.cluster_reviews(np.repeat(np.eye(3), 5, axis=0), n_topics=4)
  with pytest.raises(ValueError, match="2-D"):
    topics.cluster_reviews(np.ones(10))
  with pytest.raises(ValueError, match="NaN or inf"):
    topics.cluster_reviews(np.full((10, 3), np.nan))
  with pytest.raises(ValueError, match="min_topics, max_topics"):
    topics.cluster_reviews(rng.normal(size=(20, 5)), min_topics=5, max_topics=4)
  with pytest.raises(ValueError, match="n_topics"):
    topics.cluster_reviews(rng.normal(size=(20, 5)), n_topics=0)
  with pytest.raises(ValueError, match="max_fit"):
    topics.cluster_reviews(rng.normal(size=(20, 5)), max_fit=1)
  with pytest.raises(ValueError, match="pca_dims"):
    topics.cluster_reviews(rng.normal(size=(20, 5)), pca_dims=0)
  # just enough distinct rows for min_topics=3: four rows, k=3
  assert len(np.unique(topics.cluster_reviews(np.eye(4)))) == 3


# --- class-based TF-IDF -------------------------------------------------------------------------

def test_ctfidf_matches_hand_computation():
  # class 0: "apple banana", "apple cherry"; class 1: "cherry cherry" (no stop words, min_df 1)
  # counts  class 0: apple 2, banana 1, cherry 1, "apple banana" 1, "apple cherry" 1 -> 6 terms
  #         class 1: cherry 2, "cherry cherry" 1                               -> 3 terms
  # A = (6 + 3) / 2 = 4.5; f: apple 2, banana 1, cherry 3, each bigram 1
  m = topics.ctfidf_matrix(["apple banana", "apple cherry", "cherry cherry"], [0, 0, 1], min_df=1)
  assert list(m.index) == [0, 1]
  assert sorted(m.columns) == ["apple", "apple banana", "apple cherry", "banana", "cherry",
                               "cherry cherry"]
  expect = {
      (0, "apple"): 2 / 6 * math.log(1 + 4.5 / 2),
      (0, "banana"): 1 / 6 * math.log(1 + 4.5 / 1),
      (0, "cherry"): 1 / 6 * math.log(1 + 4.5 / 3),
      (0, "apple cherry"): 1 / 6 * math.log(1 + 4.5 / 1),
      (1, "cherry"): 2 / 3 * math.log(1 + 4.5 / 3),
      (1, "cherry cherry"): 1 / 3 * math.log(1 + 4.5 / 1),
      (1, "apple"): 0.0,
  }
  for (c, term), value in expect.items():
    assert m.loc[c, term] == pytest.approx(value, rel=1e-12), (c, term)
  # min_df counts reviews: only "apple" and "cherry" occur in two of them
  assert sorted(topics.ctfidf_matrix(["apple banana", "apple cherry", "cherry cherry"],
                                     [0, 0, 1], min_df=2).columns) == ["apple", "cherry"]


def test_keywords_name_each_theme(corpus, labels):
  texts, theme, _ = corpus
  kw = topics.ctfidf_keywords(texts, labels, top_n=8)
  assert sorted(kw) == [0, 1, 2, 3]
  names = list(THEMES)
  for t, words in kw.items():
    own = THEMES[names[np.bincount(theme[labels == t]).argmax()]]
    others = {w for name, ws in THEMES.items() if ws is not own for w in ws}
    assert len(words) == 8
    flat = {w for term in words for w in term.split()}
    assert not flat & others, (t, words)
    assert all(w in own for term in words[:5] for w in term.split()), (t, words)


def test_keyword_dedup_rule():
  texts = ["late delivery again", "late delivery", "the delivery was late", "late delivery today",
           "fit well", "good fit", "fit"]
  kw = topics.ctfidf_keywords(texts, [0, 0, 0, 0, 1, 1, 1], min_df=1)
  assert kw[0][0] == "late delivery"
  # neither "late" nor "delivery" on their own, nor "delivery late" (words already covered)
  assert not {"late", "delivery", "delivery late"} & set(kw[0])
  for words in kw.values():
    bigram_words = {w for term in words if " " in term for w in term.split()}
    assert not bigram_words & {term for term in words if " " not in term}
  # negations and "too" only lead bigrams, and do not block each other
  kw = topics.ctfidf_keywords(["It didn't fit, too small", "didn't fit at all, too small",
                               "never arrived", "parcel never arrived", "not received yet",
                               "still not received"], [0, 0, 1, 1, 1, 1])
  assert kw == {0: ["not fit", "too small"], 1: ["never arrived", "not received"]}


def test_lift_and_phrase_share_rules():
  texts = ["love dress", "love this dress", "dress arrived", "nice dress", "dress fabric",
           "love shoes", "love these shoes", "shoes pinch", "nice shoes", "shoes sole"]
  y = [0] * 5 + [1] * 5
  kw = topics.ctfidf_keywords(texts, y, min_df=1)
  # "love" and "nice" are as common in both topics (lift 1): not keywords; "love dress" holds
  # 2 of the 5 uses of "dress" (< PHRASE_SHARE), so "dress" stays a word
  assert kw == {0: ["dress", "arrived", "fabric"], 1: ["shoes", "pinch", "sole"]}
  plain = topics.ctfidf_keywords(texts, y, min_df=1, min_lift=0)
  assert "love" in plain[0] and "love" in plain[1]
  with pytest.raises(ValueError, match="min_lift"):
    topics.ctfidf_keywords(texts, y, min_lift=-1)


def test_portuguese_stop_words_removed():
  texts = ["a entrega foi muito rápida e chegou antes do prazo",
           "entrega rápida, chegou antes do prazo que eu esperava",
           "não recebi o produto até hoje", "ainda não recebi o produto",
           "o produto é de ótima qualidade", "produto de ótima qualidade, muito bom"]
  kw = topics.ctfidf_keywords(texts, [0, 0, 1, 1, 2, 2], language="pt")
  flat = {w for words in kw.values() for term in words for w in term.split()}
  assert not flat & topics.PORTUGUESE_STOP
  assert {"foi", "muito", "do", "de", "que", "até", "ainda"}.isdisjoint(flat)
  assert "entrega rápida" in kw[0] and "não recebi" in kw[1]
  assert {"ótima", "qualidade"} <= {w for term in kw[2] for w in term.split()}
  # the same texts read as English keep the Portuguese function words
  en = topics.ctfidf_keywords(texts, [0, 0, 1, 1, 2, 2], language="en")
  assert {w for words in en.values() for term in words for w in term.split()} & {"foi", "muito"}


def test_chinese_character_grams():
  texts = ["快递很快，物流不错", "物流很快，快递员态度好", "尺码偏小，太紧了", "尺码偏小，建议买大一号",
           "质量很好 nice", "质量不错 nice"]
  kw = topics.ctfidf_keywords(texts, [0, 0, 1, 1, 2, 2], language="zh")
  assert {"快递", "物流"} <= set(kw[0])
  assert {"尺码", "偏小"} <= set(kw[1])
  assert {"质量", "nice"} <= set(kw[2])  # Latin words stay whole
  for words in kw.values():
    assert all(len(t) <= 2 or t.isascii() for t in words)
    assert not any(c in t for t in words for c in "，的了很 ")  # punctuation, stop chars, spaces
    pairs = {c for t in words if len(t) == 2 and not t.isascii() for c in t}
    assert not pairs & set(words)  # "快" and "递" do not crowd "快递"
  m = topics.ctfidf_matrix(texts, [0, 0, 1, 1, 2, 2], language="zh", min_df=1)
  assert "快递" in m.columns and "快" in m.columns and "快递很" not in m.columns


def test_ctfidf_edge_cases_and_validation():
  assert topics.ctfidf_keywords(["the", None, "and"], [0, 1, 1]) == {0: [], 1: []}
  assert topics.ctfidf_matrix(["a b", "c d"], [0, 1]).shape == (2, 0)
  assert topics.ctfidf_keywords(["x1 good", "good"], np.array([2.0, 2.0]), language="de") == {
      2: ["good"]}
  with pytest.raises(ValueError, match="language"):
    topics.ctfidf_keywords(["a"], [0], language="English")
  with pytest.raises(ValueError, match="one topic per text"):
    topics.ctfidf_keywords(["a", "b"], [0])
  with pytest.raises(ValueError, match="integer topic ids"):
    topics.ctfidf_keywords(["a", "b"], [0.5, 1])
  with pytest.raises(ValueError, match="single str"):
    topics.ctfidf_keywords("great fit", [0])
  with pytest.raises(ValueError, match="top_n"):
    topics.ctfidf_keywords(["a"], [0], top_n=0)
  with pytest.raises(ValueError, match="min_df"):
    topics.ctfidf_keywords(["a"], [0], min_df=0)


# --- table and plot -----------------------------------------------------------------------------

def test_topic_table_values(corpus, labels):
  texts, _, emb = corpus
  n = len(texts)
  rng = np.random.default_rng(2)
  sentiment = rng.uniform(-1, 1, n)
  sentiment[5] = np.nan
  rating = rng.integers(1, 6, n).astype(float)
  # theme 3 (price) only appears at the end: it should trend up
  timestamp = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="D")
  ids = [f"r{i}" for i in range(n)]
  kw = topics.ctfidf_keywords(texts, labels)
  table = topics.topic_table(texts, labels, kw, sentiment=sentiment, rating=rating,
                             timestamp=timestamp, review_ids=ids, embeddings=emb)
  assert list(table.columns) == [
      "topic", "label", "keywords", "n_reviews", "share", "mean_sentiment", "share_negative",
      "mean_rating", "share_recent", "share_before", "trend", "example_ids"]
  assert table["n_reviews"].sum() == n and table["share"].sum() == pytest.approx(1.0)
  assert (np.diff(table["n_reviews"]) <= 0).all()
  for row in table.itertuples():
    member = labels == row.topic
    assert row.n_reviews == member.sum()
    assert row.mean_sentiment == pytest.approx(np.nanmean(sentiment[member]))
    s = sentiment[member]
    assert row.share_negative == pytest.approx((s[~np.isnan(s)] < 0).mean())
    assert row.mean_rating == pytest.approx(rating[member].mean())
    assert row.label == ", ".join(kw[row.topic][:3])
    assert len(row.example_ids) == 2 and all(labels[ids.index(r)] == row.topic
                                             for r in row.example_ids)
    recent = np.arange(n) > 0.75 * (n - 1)
    assert row.share_recent == pytest.approx(member[recent].mean())
    assert row.trend == pytest.approx(member[recent].mean() - member[~recent].mean())
  assert table.attrs["recent_since"] == timestamp[0] + 0.75 * (timestamp[-1] - timestamp[0])
  price = table.set_index("topic").loc[3]
  assert price["trend"] > 0.5
  # examples are the reviews closest to the topic's mean embedding
  t0 = labels == 0
  unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  centre = unit[t0].mean(axis=0)
  best = np.flatnonzero(t0)[np.argsort(-(unit[t0] @ centre))[:2]]
  assert table.set_index("topic").loc[0, "example_ids"] == [ids[i] for i in best]


@pytest.mark.filterwarnings("ignore:Could not infer format")
def test_topic_table_minimal_and_validation():
  texts = pd.Series(["late parcel", "late delivery", "tight fit", "fit"], index=[10, 11, 12, 13])
  table = topics.topic_table(texts, [1, 1, 0, 0], {1: ["late"]}, examples=1)
  assert list(table.columns) == ["topic", "label", "keywords", "n_reviews", "share",
                                 "example_ids"]
  assert table["label"].tolist() == ["topic 0", "late"]  # ties in size: by topic id
  assert table["example_ids"].tolist() == [[12], [10]]  # index ids; keyword hits, then order
  with pytest.raises(ValueError, match="sentiment: need one value per review"):
    topics.topic_table(texts, [0, 0, 1, 1], {}, sentiment=[0.1])
  with pytest.raises(ValueError, match="rating: must be numeric"):
    topics.topic_table(texts, [0, 0, 1, 1], {}, rating=["a", "b", "c", "d"])
  with pytest.raises(ValueError, match="timestamp"):
    topics.topic_table(texts, [0, 0, 1, 1], {}, timestamp=["x", "y", "z", "w"])
  with pytest.raises(ValueError, match="review_ids"):
    topics.topic_table(texts, [0, 0, 1, 1], {}, review_ids=["a"])
  with pytest.raises(ValueError, match="examples"):
    topics.topic_table(texts, [0, 0, 1, 1], {}, examples=-1)


def test_plot_topics(corpus, labels):
  texts = corpus[0]
  kw = topics.ctfidf_keywords(texts, labels)
  sentiment = np.where(labels == 1, -0.6, 0.4)
  table = topics.topic_table(texts, labels, kw, sentiment=sentiment)
  fig = topics.plot_topics(table)
  assert isinstance(fig, Figure)
  ax = fig.axes[0]
  assert len(fig.axes) == 2  # bars and the colour bar
  bars = ax.patches
  assert len(bars) == 4
  # largest topic at the top; the negative topic is red, the others blue
  widths = [b.get_width() for b in bars]
  assert widths == sorted(widths)
  labels_shown = [t.get_text() for t in ax.get_yticklabels()]
  negative = next(i for i, s in enumerate(labels_shown) if s.startswith(table.loc[
      table["topic"] == 1, "label"].item()))
  red, _, blue = bars[negative].get_facecolor()[:3]
  assert red > blue
  other = next(i for i in range(4) if i != negative)
  assert bars[other].get_facecolor()[2] > bars[other].get_facecolor()[0]
  # without sentiment: one colour, no colour bar
  plain = topics.plot_topics(topics.topic_table(texts, labels, kw))
  assert len(plain.axes) == 1
  with pytest.raises(ValueError, match="'share' missing"):
    topics.plot_topics(table.drop(columns="share"))


def test_topics_summary_shows_keywords_as_words():
  from cvlib.stages import segment
  table = pd.DataFrame({"topic": [0], "label": ["great, quality, good"],
                        "keywords": ["great, quality, good, happy"], "n_reviews": [5],
                        "share": [1.0]})
  t = segment.Topics(table=table, labels=np.zeros(5, int), silhouette=pd.Series(dtype=float),
                      examples=pd.DataFrame())
  assert segment.topics_summary(t)["keywords"].tolist() == ["great, quality, good, happy"]
  listed = table.assign(keywords=[["great", "quality"]])
  t = segment.Topics(table=listed, labels=np.zeros(5, int), silhouette=pd.Series(dtype=float),
                      examples=pd.DataFrame())
  assert segment.topics_summary(t)["keywords"].tolist() == ["great, quality"]

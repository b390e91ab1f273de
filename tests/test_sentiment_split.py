"""Tests for the sentiment split (cvlib.stages.finetune.make_sentiment_data, mlm_texts): a text and
its copies sit on one side, so neither fine-tuning, the baselines nor masked-LM see a test text."""

import dataclasses
import string
import unicodedata

import numpy as np
import pandas as pd
import pytest

from cvlib import config
from cvlib.stages import finetune

CFG = config.FinetuneConfig(max_train_examples=0)
WORDS = {5.0: ["great", "lovely", "perfect"], 4.0: ["fine", "good"], 2.0: ["poor", "flimsy"],
         1.0: ["broken", "awful"]}
THINGS = ["dress", "delivery", "shoes", "phone case", "jacket", "lamp"]
# spellings of one short review that many customers write ("Muito bom" x48 on Olist)
MUITO_BOM = ["Muito bom", "muito bom!", "  MUITO   bom. ", "\uff2d\uff55\uff49\uff54\uff4f bom"]


def _key(text: str) -> str:
  """The split's notion of "the same text", written out here independently of cvlib (ASCII
  punctuation is all these texts end with)."""
  s = " ".join(unicodedata.normalize("NFKC", text).lower().split())
  return s.rstrip(string.punctuation + " ")


def _reviews(build, seed: int = 0) -> pd.DataFrame:
  """587 labelled reviews, ~70% positive, with planted copies (all invented):

  - 500 distinct texts, 30 of them posted twice by their author;
  - "Muito bom" from 48 customers, in the four spellings of ``MUITO_BOM``;
  - "Not bad" from 9 customers who disagree: 6 x 4 stars, 3 x 2 stars;
  - 40 neutral (3 stars: no label) and 20 unrated reviews, some repeating labelled texts.
  """
  rng = np.random.default_rng(seed)
  rows = []
  add = lambda text, rating: rows.append((f"r{len(rows) + 1}", f"c{len(rows) % 97}",
                                          "2023-01-01", rating, text))
  for i in range(500):
    rating = float(rng.choice([5.0, 4.0]) if rng.random() < 0.7 else rng.choice([2.0, 1.0]))
    text = f"the {rng.choice(THINGS)} was {rng.choice(WORDS[rating])} on order {i}"
    add(text, rating)
    if i % 17 == 0 and i < 17 * 30:
      add(text, rating)  # the same review posted twice
  for i in range(48):
    add(MUITO_BOM[i % len(MUITO_BOM)], 5.0)
  for rating in [4.0] * 6 + [2.0] * 3:
    add("Not bad", rating)
  for i in range(40):
    add(f"the lamp was ok on order {i}" if i % 4 else rows[i * 3][4], 3.0)
  for i in range(20):
    add(f"no stars given on order {i}" if i % 2 else rows[i * 7][4], None)
  return build.reviews(rows)


def _sides(data: finetune.SentimentData) -> dict[str, list[str]]:
  return {"train": data.train_texts, "validation": data.val_texts, "test": data.test_texts}


def _labelled(reviews: pd.DataFrame) -> pd.DataFrame:
  return reviews[reviews["rating"].notna() & (reviews["rating"] != 3.0)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_text_on_two_sides(build, seed):
  reviews = _reviews(build)
  data = finetune.make_sentiment_data(CFG, reviews, seed=seed)
  keys = {side: {_key(t) for t in texts} for side, texts in _sides(data).items()}
  assert not keys["train"] & keys["validation"]
  assert not keys["train"] & keys["test"]
  assert not keys["validation"] & keys["test"]
  # every spelling of "Muito bom" went where the others went
  assert [side for side, k in keys.items() if "muito bom" in k] in (["train"], ["validation"],
                                                                     ["test"])
  where = {t: side for side, texts in _sides(data).items() for t in texts}
  assert len({where[t] for t in MUITO_BOM}) == 1
  # every labelled review is in exactly one split, copies included
  assert sum(map(len, _sides(data).values())) == data.n_labelled == len(_labelled(reviews))


@pytest.mark.parametrize("seed", [0, 3])
def test_sizes_and_stratification(build, seed):
  data = finetune.make_sentiment_data(CFG, _reviews(build), seed=seed)
  keys = {side: {_key(t) for t in texts} for side, texts in _sides(data).items()}
  # texts are split: their shares are the configured ones, up to rounding
  n_keys = sum(map(len, keys.values()))
  assert abs(len(keys["test"]) / n_keys - CFG.test_size) < 0.01
  assert abs(len(keys["validation"]) / (n_keys - len(keys["test"])) - 0.15) < 0.01
  # reviews follow their texts: off by at most the copies of the largest text (48) and a little
  n, big = data.n_labelled, len(MUITO_BOM) * 12
  assert abs(len(data.test_texts) - CFG.test_size * n) <= big + 0.02 * n
  rest = len(data.train_texts) + len(data.val_texts)
  assert abs(len(data.val_texts) - 0.15 * rest) <= big + 0.02 * rest
  # stratified by text: the share of mostly positive texts is the same on every side ...
  sides = ((data.train_texts, data.train_labels), (data.val_texts, data.val_labels),
           (data.test_texts, data.test_labels))
  votes = [pd.Series(labels).groupby([_key(t) for t in texts]).mean().round() for texts, labels
           in sides]  # ties ("Not bad" has none) would round to even
  overall = pd.concat(votes).mean()
  for v in votes:
    assert abs(v.mean() - overall) < 0.02
  # ... and so, "Muito bom" set aside, is the share of positive reviews
  overall = np.mean([y for texts, labels in sides for t, y in zip(texts, labels)
                     if _key(t) != "muito bom"])
  for texts, labels in sides:
    share = np.mean([y for t, y in zip(texts, labels) if _key(t) != "muito bom"])
    assert abs(share - overall) < 0.05
  assert data.class_names == ["negative", "positive"]


def test_same_seed_same_split(build):
  reviews = _reviews(build)
  one = finetune.make_sentiment_data(CFG, reviews, seed=5)
  two = finetune.make_sentiment_data(CFG, reviews, seed=5)
  for a, b in ((one.train_texts, two.train_texts), (one.val_texts, two.val_texts),
               (one.test_texts, two.test_texts)):
    assert a == b
  np.testing.assert_array_equal(one.train_labels, two.train_labels)
  other = finetune.make_sentiment_data(CFG, reviews, seed=6)
  assert set(other.test_texts) != set(one.test_texts)


@pytest.mark.parametrize("seed", range(4))
def test_conflicting_labels_stay_on_one_side(build, seed):
  # "Not bad" with 4 stars and with 2 stars is still one text: both labels go to one split
  data = finetune.make_sentiment_data(CFG, _reviews(build), seed=seed)
  found = []
  for texts, labels in ((data.train_texts, data.train_labels), (data.val_texts, data.val_labels),
                        (data.test_texts, data.test_labels)):
    mine = [y for t, y in zip(texts, labels) if t == "Not bad"]
    if mine:
      found.append(sorted(mine))
  assert found == [[0, 0, 0, 1, 1, 1, 1, 1, 1]]


def test_training_cap_keeps_sides_apart(build):
  cfg = dataclasses.replace(CFG, max_train_examples=200)
  full = finetune.make_sentiment_data(CFG, _reviews(build), seed=0)
  data = finetune.make_sentiment_data(cfg, _reviews(build), seed=0)
  assert len(data.train_texts) == 200
  assert not {_key(t) for t in data.train_texts} & {_key(t) for t in data.test_texts}
  assert set(data.train_texts) <= set(full.train_texts)  # the cap only leaves reviews out
  assert (data.val_texts, data.test_texts) == (full.val_texts, full.test_texts)
  assert abs(data.train_labels.mean() - full.train_labels.mean()) < 0.02  # stratified


def test_too_few_reviews_or_texts_per_class(build):
  positive = [(f"p{i}", "a", "2023-01-01", 5.0, f"lovely dress number {i}") for i in range(40)]
  negative = lambda texts: build.reviews(positive + [
      (f"n{i}", "b", "2023-01-01", 1.0, t) for i, t in enumerate(texts)])
  # min_per_class counts labelled reviews, copies included, as it always has
  assert finetune.make_sentiment_data(CFG, negative(["Broken"] * 7 + ["awful", "bad"]),
                                      seed=0) is None
  assert finetune.make_sentiment_data(CFG, negative(["Broken"] * 8 + ["awful", "bad"]),
                                      seed=0) is not None
  # 30 negative reviews but two texts: no text for each of train, validation and test
  assert finetune.make_sentiment_data(CFG, negative(["Broken"] * 25 + ["awful"] * 5),
                                      seed=0) is None
  # three classes of three texts each, ten copies of each: 9 texts, 2 of them for the test split,
  # cannot hold three classes
  rows = [(f"r{k}-{i}", "a", "2023-01-01", stars, f"{stars:.0f} stars, text {k}")
          for stars in (1.0, 3.0, 5.0) for k in range(3) for i in range(10)]
  three = dataclasses.replace(CFG, label_scheme="three_class")
  assert finetune.make_sentiment_data(three, build.reviews(rows), seed=0) is None


@pytest.mark.parametrize("seed", range(6))
def test_mlm_texts_leave_out_every_copy_of_a_test_text(build, seed):
  reviews = _reviews(build)
  data = finetune.make_sentiment_data(CFG, reviews, seed=seed)
  texts = finetune.mlm_texts(reviews, data)
  test_keys = {_key(t) for t in data.test_texts}
  assert not {_key(t) for t in texts} & test_keys
  # everything else stays: training and validation texts, neutral and unrated reviews
  others = [t for t in reviews["text"].dropna() if _key(t) not in test_keys]
  assert texts == others
  assert set(data.train_texts + data.val_texts) <= set(texts)


def test_mlm_texts_match_test_texts_as_the_split_does(build):
  reviews = build.reviews([(f"r{i}", None, "2023-01-01", None, t) for i, t in enumerate(
      MUITO_BOM + ["Muito bom, chegou rápido", "bom", "¡Muito bom"])])
  data = finetune.SentimentData(["negative", "positive"], [], np.zeros(0, int), [],
                                np.zeros(0, int), ["MUITO BOM"], np.ones(1, int), 1)
  assert finetune.mlm_texts(reviews, data) == ["Muito bom, chegou rápido", "bom", "¡Muito bom"]
  assert finetune.mlm_texts(reviews, None) == reviews["text"].tolist()

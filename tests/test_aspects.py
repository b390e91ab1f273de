"""Tests for cvlib.insight.aspects."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import f1_score, precision_recall_fscore_support

from cvlib.insight import aspects as asp

ASPECTS = list(asp.DEFAULT_ASPECTS)

# Hand-labelled reviews: text -> aspects a reader would say it talks about. Written before running
# the tagger; includes typos, plurals, negation, mixed reviews and a few honest hard cases
# ("sturdy box" is packaging, not quality; "parcel" is not a seed).
LABELLED = [
    ("Delivery was super fast and the quality is excellent.", {"delivery", "quality"}),
    ("Great quality, but the shipping took ages.", {"quality", "delivery"}),
    ("Way too expensive for what you get.", {"price"}),
    ("The shoes run small, order a size up.", {"size_fit"}),
    ("Customer service never replied to my emails.", {"service"}),
    ("The box was crushed and the item inside was scratched.", {"packaging", "quality"}),
    ("Not bad at all for the price.", {"price"}),
    ("It wasn't what I expected, the fabric feels thin.", {"quality"}),
    ("Arrived two days late and the packaging was ripped.", {"delivery", "packaging"}),
    ("Fits perfectly and looks great.", {"size_fit"}),
    ("The seller was really helpful when I asked for a refund.", {"service"}),
    ("Cheap and cheerful, does the job.", {"price"}),
    ("Stopped working after a week.", {"quality"}),
    ("Lovely colour, I use it every day.", set()),
    ("I love it!", set()),
    ("The deliverys were always on time.", {"delivery"}),
    ("Qualty is poor, it broke on the first day.", {"quality"}),
    ("Good value for money, would buy again.", {"price"}),
    ("The jacket is too tight around the shoulders.", {"size_fit"}),
    ("Nicely wrapped in bubble wrap, arrived safe.", {"packaging", "delivery"}),
    ("Support team was rude and unhelpful.", {"service"}),
    ("Overpriced and flimsy.", {"price", "quality"}),
    ("Took three weeks to arrive, however the product itself is sturdy.", {"delivery", "quality"}),
    ("My daughter says it is perfect for school.", set()),
    ("The return process was easy and the replacement came quickly.", {"service", "delivery"}),
    ("Sizing is true to size and the material is soft.", {"size_fit", "quality"}),
    ("Parcel was left at the door in the rain.", {"delivery"}),
    ("Paid a lot but it was worth every penny.", {"price"}),
    ("Packed carefully in a sturdy box.", {"packaging"}),
    ("Although it's a bit pricey, the build quality is superb.", {"price", "quality"}),
    ("The courier lost my first order, the shop sent a new one straight away.",
     {"delivery", "service"}),
    ("Works as described.", set()),
    ("Waist is too loose but the length is fine.", {"size_fit"}),
    ("Answered my question within an hour, very polite staff.", {"service"}),
]


def _truth() -> pd.DataFrame:
  return pd.DataFrame([[a in labels for a in ASPECTS] for _, labels in LABELLED], columns=ASPECTS)


def _texts() -> list[str]:
  return [t for t, _ in LABELLED]


# ----------------------------------------------------------------------------- text handling


def test_stem_merges_inflections():
  for words in (("ship", "ships", "shipped", "shipping"), ("price", "prices", "priced"),
                ("delivery", "deliveries"), ("fit", "fits", "fitted", "fitting"),
                ("box", "boxes"), ("arrive", "arrived", "arrives")):
    assert len({asp.stem(w) for w in words}) == 1, words
  assert asp.stem("packaging") != asp.stem("package")
  assert asp.stem("last") != asp.stem("lasted long")


def test_split_clauses():
  assert asp.split_clauses("Great quality, but the shipping took ages.") == [
      "Great quality", "the shipping took ages"]
  assert asp.split_clauses("Good; however slow. Although cheap!") == ["Good", "slow", "cheap"]
  assert asp.split_clauses(None) == [] and asp.split_clauses("") == []
  assert asp.split_clauses("Bom produto, porém caro") == ["Bom produto", "caro"]


def test_split_contrast_marks_the_clause_after_a_contrast_word():
  assert asp.split_contrast("Love the colour, but, sadly, it runs small. However thin") == [
      ("Love the colour", False), ("sadly", True), ("it runs small", False), ("thin", True)]
  assert asp.split_contrast("butter-soft fabric") == [("butter-soft fabric", False)]


# ----------------------------------------------------------------------------- tagging


def test_keyword_tagger_on_labelled_reviews():
  pred = asp.tag_aspects(_texts())
  m = asp.aspect_metrics(pred, _truth())
  assert m["precision"] >= 0.8, m
  assert m["recall"] >= 0.7, m
  assert m["per_aspect"]["support"].sum() == _truth().to_numpy().sum()
  # the typo'd and plural cases are found
  assert pred.loc[15, "delivery"] and pred.loc[16, "quality"]
  # reviews with no aspect stay untagged
  for i, (_, labels) in enumerate(LABELLED):
    if not labels:
      assert not pred.loc[i].any(), LABELLED[i][0]


def test_fuzzy_matching_can_be_switched_off():
  texts = ["Qualty is poor", "Shiping was quick", "took eight days at night"]
  fuzzy = asp.tag_aspects(texts)
  strict = asp.tag_aspects(texts, fuzzy=False)
  assert fuzzy.loc[0, "quality"] and not strict.loc[0, "quality"]
  assert fuzzy.loc[1, "delivery"]  # "shiping" -> "shipp" is one edit from "shipping"'s stem
  assert not fuzzy.loc[2, "size_fit"]  # "eight", "night" are not typos of "tight"


def test_tag_aspects_index_and_missing_text():
  texts = pd.Series(["Fast delivery", None, np.nan, "Too expensive"],
                    index=["r1", "r2", "r3", "r4"])
  tags = asp.tag_aspects(texts)
  assert tags.index.tolist() == ["r1", "r2", "r3", "r4"] and tags.columns.tolist() == ASPECTS
  assert tags.dtypes.eq(bool).all()
  assert tags.loc["r1", "delivery"] and tags.loc["r4", "price"]
  assert not tags.loc[["r2", "r3"]].any().any()


def test_portuguese_seed_list():
  texts = ["A entrega atrasou e a embalagem veio amassada.", "Preço ótimo, produto de qualidade!",
           "Atendimento péssimo, o vendedor não respondeu."]
  tags = asp.tag_aspects(texts, asp.PORTUGUESE_ASPECTS)
  assert tags.loc[0, ["delivery", "packaging"]].all() and tags.loc[0].sum() == 2
  assert tags.loc[1, ["price", "quality"]].all() and tags.loc[1].sum() == 2
  assert tags.loc[2, "service"] and tags.loc[2].sum() == 1


def _concept_embed(texts: list[str]) -> np.ndarray:
  """Toy embedding: one dimension per concept word list, plus a constant so nothing is zero."""
  concepts = [("parcel", "courier", "delivery", "arrive", "late"), ("quality", "scratched"),
              ("price", "expensive"), ("size", "fit"), ("service", "shop"), ("box", "packaging")]
  out = np.zeros((len(texts), len(concepts) + 1), dtype=np.float32)
  for i, t in enumerate(texts):
    low = t.lower()
    out[i, :-1] = [sum(w in low for w in words) for words in concepts]
    out[i, -1] = 0.3
  return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_embedding_match_adds_tags_and_scores():
  # Seeds the toy embedding understands; "parcel" is close to delivery but is not a seed.
  seeds = {"delivery": ["delivery", "arrived late"], "quality": ["quality"], "price": ["expensive"]}
  texts = ["Parcel was left at the door in the rain.", "I love it!", None]
  plain = asp.tag_aspects(texts, seeds)
  assert not plain.loc[0].any()
  with_emb = asp.tag_aspects(texts, seeds, embed_fn=_concept_embed, threshold=0.8)
  assert with_emb.loc[0, "delivery"] and with_emb.loc[0].sum() == 1
  assert not with_emb.loc[1].any() and not with_emb.loc[2].any()
  scores = asp.aspect_scores(texts, seeds, embed_fn=_concept_embed)
  assert scores.shape == (3, 3)
  assert scores.loc[0].idxmax() == "delivery" and scores.loc[0, "delivery"] > 0.9
  assert scores.loc[1].max() < 0.5
  assert (scores.loc[2] == -1.0).all()
  per_aspect = {"delivery": 0.5, "quality": 0.99, "price": 0.99}
  tags = asp.tag_aspects(texts, seeds, embed_fn=_concept_embed, threshold=per_aspect)
  assert tags.loc[0, "delivery"]
  # the embedding also locates the clause for aspect_sentiment when no keyword matches
  pol = asp.aspect_sentiment(["Lovely colours. Parcel was soaked and ruined"], with_emb.iloc[:1],
                             aspects=seeds, embed_fn=_concept_embed)
  assert pol.loc[0, "delivery"] == -1


def test_tagging_validation():
  with pytest.raises(ValueError, match="threshold: only used with embed_fn"):
    asp.tag_aspects(["x"], threshold=0.5)
  with pytest.raises(ValueError, match="aspects\\['price'\\]: need a non-empty list"):
    asp.tag_aspects(["x"], {"price": "price"})
  with pytest.raises(ValueError, match="single str"):
    asp.tag_aspects("Fast delivery")
  with pytest.raises(ValueError, match="rows must be L2-normalised"):
    asp.tag_aspects(["x"], embed_fn=lambda t: np.ones((len(t), 3)))
  with pytest.raises(ValueError, match="returned shape"):
    asp.tag_aspects(["x"], embed_fn=lambda t: np.ones((1, 1)))
  with pytest.raises(ValueError, match="no value for aspect"):
    asp.tag_aspects(["x"], embed_fn=_concept_embed, threshold={"price": 0.5})


# ----------------------------------------------------------------------------- polarity


def _polarity(texts: list[str]) -> pd.DataFrame:
  return asp.aspect_sentiment(texts, asp.tag_aspects(texts))


def test_negation_in_aspect_sentiment():
  pol = _polarity(["The delivery was not fast.", "Not bad at all for the price.",
                   "Delivery was fast.", "It wasn't what I expected, the fabric feels thin.",
                   "Did not arrive on time."])
  assert pol.loc[0, "delivery"] == -1
  assert pol.loc[1, "price"] == 1
  assert pol.loc[2, "delivery"] == 1
  assert pol.loc[3, "quality"] == -1  # neutral clause falls back to its sentence
  assert pol.loc[4, "delivery"] == -1


def test_mixed_reviews_get_per_clause_polarity():
  texts = ["Great quality, but the shipping took ages.",
           "Although it's a bit pricey, the build quality is superb.",
           "The delivery, however, was slow."]
  pol = _polarity(texts)
  assert pol.loc[0, "quality"] == 1 and pol.loc[0, "delivery"] == -1
  assert pol.loc[1, "price"] == -1 and pol.loc[1, "quality"] == 1
  assert pol.loc[2, "delivery"] == -1
  assert pol.dtypes.eq("Int64").all()
  assert pol.loc[0, "price"] is pd.NA  # not mentioned


def test_custom_sentiment_fn_and_untagged_clauses():
  calls = []

  def fn(clauses):
    calls.append(list(clauses))
    return [0.9 if "good" in c else -0.9 for c in clauses]

  texts = ["good delivery, bad price", "no keywords here, good"]
  tags = pd.DataFrame({"delivery": [True, False], "price": [True, True]})
  pol = asp.aspect_sentiment(texts, tags, sentiment_fn=fn)
  assert pol.loc[0, "delivery"] == 1 and pol.loc[0, "price"] == -1
  assert pol.loc[1, "price"] == 1  # tag without a keyword: whole review scored
  assert pol.loc[1, "delivery"] is pd.NA
  assert len(calls) == 1 and len(calls[0]) == len(set(calls[0]))  # one batched call, unique
  with pytest.raises(ValueError, match="must be finite and lie in \\[-1, 1\\]"):
    asp.aspect_sentiment(texts, tags, sentiment_fn=lambda c: [2.0] * len(c))
  with pytest.raises(ValueError, match="2 texts but 1 rows"):
    asp.aspect_sentiment(texts, tags.iloc[:1])
  with pytest.raises(ValueError, match="have no seed phrases"):
    asp.aspect_sentiment(texts, tags.rename(columns={"price": "colour"}))


def test_labelled_polarity_mostly_right():
  # Polarity a reader would give, for reviews whose verdict is clear.
  expected = {(0, "delivery"): 1, (0, "quality"): 1, (2, "price"): -1, (4, "service"): -1,
              (10, "service"): 1, (12, "quality"): -1, (16, "quality"): -1, (17, "price"): 1,
              (18, "size_fit"): -1, (20, "service"): -1, (21, "price"): -1, (21, "quality"): -1,
              (22, "delivery"): -1, (22, "quality"): 1, (33, "service"): 1}
  pol = _polarity(_texts())
  right = sum(pol.loc[i, a] == v for (i, a), v in expected.items())
  assert right >= 0.8 * len(expected), {k: pol.loc[k] for k in expected}


# ----------------------------------------------------------------------------- metrics


def test_calibrate_threshold_hand_case_and_reference():
  assert asp.calibrate_threshold([0.9, 0.8, 0.7, 0.3, 0.2], [1, 1, 0, 1, 0]) == 0.3
  rng = np.random.default_rng(0)
  labels = rng.random(300) < 0.3
  scores = np.round(labels * 0.2 + rng.random(300), 2)  # rounded: ties
  t = asp.calibrate_threshold(scores, labels)
  best = max(f1_score(labels, scores >= c) for c in np.unique(scores))
  np.testing.assert_allclose(f1_score(labels, scores >= t), best)
  frame = pd.DataFrame({"a": scores, "b": 1 - scores})
  out = asp.calibrate_threshold(frame, pd.DataFrame({"a": labels, "b": ~labels}))
  assert set(out) == {"a", "b"} and out["a"] == t
  with pytest.raises(ValueError, match="no positive labels"):
    asp.calibrate_threshold([0.1, 0.2], [0, 0])
  with pytest.raises(ValueError, match="same length"):
    asp.calibrate_threshold([0.1, 0.2], [1])


def test_aspect_metrics_against_sklearn():
  rng = np.random.default_rng(1)
  true = pd.DataFrame(rng.random((50, 4)) < 0.3, columns=list("abcd"))
  pred = pd.DataFrame(rng.random((50, 4)) < 0.3, columns=list("dcba"))
  m = asp.aspect_metrics(pred, true)
  p, r, f, _ = precision_recall_fscore_support(true.to_numpy(), pred[list("abcd")].to_numpy(),
                                               average="micro")
  np.testing.assert_allclose([m["precision"], m["recall"], m["f1"]], [p, r, f])
  per = precision_recall_fscore_support(true.to_numpy(), pred[list("abcd")].to_numpy())
  np.testing.assert_allclose(m["per_aspect"].loc[list("abcd"), "precision"], per[0])
  np.testing.assert_allclose(m["per_aspect"].loc[list("abcd"), "recall"], per[1])
  assert m["per_aspect"]["support"].tolist() == per[3].tolist()
  with pytest.raises(ValueError, match="columns differ"):
    asp.aspect_metrics(pred.drop(columns="a"), true)
  with pytest.raises(ValueError, match="same index"):
    asp.aspect_metrics(pred.iloc[:10], true)


def test_aspect_table_and_records():
  records = pd.DataFrame({"review_id": ["r1", "r1", "r2", "r3", "rX"],
                          "aspect": ["delivery", "price", "delivery", "delivery", "price"],
                          "polarity": ["positive", "negative", "negative", "positive", "negative"]})
  tags, pol = asp.tags_from_records(records, ["r1", "r2", "r3", "r4"])
  assert tags.sum().to_dict() == {"delivery": 3, "quality": 0, "price": 1, "size_fit": 0,
                                  "service": 0, "packaging": 0}
  assert pol.loc["r2", "delivery"] == -1 and pol.loc["r4", "delivery"] is pd.NA
  table = asp.aspect_table(tags, pol)
  assert table.loc["delivery"].to_dict() == {"mentions": 3, "share": 0.75, "positive": 2,
                                             "negative": 1, "neutral": 0, "net": 1 / 3}
  assert table.loc["price", "net"] == -1.0 and np.isnan(table.loc["quality", "net"])
  with pytest.raises(ValueError, match="unknown aspect"):
    asp.tags_from_records(records.assign(aspect="colour"), ["r1"])
  with pytest.raises(ValueError, match="same shape"):
    asp.aspect_table(tags, pol.iloc[:2])


def test_plot_aspect_sentiment():
  texts = _texts()
  tags = asp.tag_aspects(texts)
  table = asp.aspect_table(tags, asp.aspect_sentiment(texts, tags))
  fig = asp.plot_aspect_sentiment(table)
  assert isinstance(fig, Figure)
  assert len(fig.axes[0].patches) == 2 * len(ASPECTS)
  with pytest.raises(ValueError, match="column 'net' missing"):
    asp.plot_aspect_sentiment(table.drop(columns="net"))

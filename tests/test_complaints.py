"""cvlib.insight.complaints: wording that makes a remark a complaint whatever the stars, and how
the aspect model uses it (its effect on labelled reviews is benchmarks/aspects_labelled.py's)."""

import dataclasses

import numpy as np
import pytest

from cvlib.insight import aspect_model as am
from cvlib.insight import complaints


@pytest.mark.parametrize("clause", [
    "runs a bit small", "it is a little pricey", "way too tight in the hips", "size down",
    "i had to order a size up", "the fit is slightly loose", "a little see through",
    "too short for a tall person", "too much sugar",
    # the tenth draw's additions: shortfalls against what was expected or wanted, wishes, "on
    # the ... side" (the expectation words do not make these hypothetical)
    "much smaller than i expected", "it was a little bigger than i thought it would be",
    "a bit shorter than i would prefer", "larger than pictured", "i wish these cost a little less",
    "i do wish it was a tad more fitted", "the drawers are on the shallow side",
    # contracted subjects (before the twelfth draw was scored)
    "a bit longer than i’d like", "smaller than we'd hoped",
])
def test_cues_found(clause):
  assert complaints.is_complaint(am.fold(clause))


@pytest.mark.parametrize("clause", [
    "not too big", "it wasn't too tight", "too cute", "too bad it sold out",
    "i was worried it would be too small", "runs true to size", "i love it too",
    "the colour is lovely", "a little goes a long way",
    "better than expected", "the fabric is thicker than i thought",
    "if it runs smaller than you need",
    "i wish i had bought two", "softer than i expected",
    "i'm a little heavier than i'd like",  # the shopper, not the item
])
def test_no_cue(clause):
  assert not complaints.is_complaint(am.fold(clause))


def test_cues_are_english_only():
  clauses = ["runs a bit small", "um pouco pequeno"]
  assert complaints.complaint_cues(clauses, "en").tolist() == [True, False]
  assert complaints.complaint_cues(clauses, "pt").tolist() == [False, False]


def _embed(texts):
  """A stand-in encoder: one constant direction, so every similarity is 1 and the head's logit is
  its bias."""
  out = np.zeros((len(texts), 8), np.float32)
  out[:, 0] = 1.0
  return out


def test_a_cue_makes_the_aspect_negative_in_a_five_star_review(tmp_path):
  names = [s.name for s in am.ENGLISH_SPECS]
  head = am.PolarityHead(np.zeros(8), 3.0, {"data": "toy"})  # reads every clause as praise
  rated = {"head": 1.0, "examples": 0.0, "rating": 2.0, "bias": 0.0}
  model = am.AspectModel("en", am.ENGLISH_SPECS, {n: -1.0 for n in names},
                         {n: 1.01 for n in names}, head,
                         {"head": 1.0, "examples": 0.0, "bias": 0.0}, mix_rated=rated)
  texts = ["love the colour, the size runs a bit small", "the size is perfect"]
  pol = am.score_reviews(texts, model, tag_embed=_embed, ratings=[5, 5])
  assert pol.loc[0, "size_fit"] == -1 and pol.loc[1, "size_fit"] == 1
  off = dataclasses.replace(model, complaint_cues=False)
  assert am.score_reviews(texts, off, tag_embed=_embed, ratings=[5, 5]).loc[0, "size_fit"] == 1
  # a Portuguese model has no cues: the same words do nothing there
  pt = dataclasses.replace(model, language="pt")
  assert am.score_reviews(texts, pt, tag_embed=_embed, ratings=[5, 5]).loc[0, "size_fit"] == 1
  assert "worded as a complaint" in am.describe(model, 2, 2)
  assert "worded as a complaint" not in am.describe(off, 2, 2)
  assert "worded as a complaint" not in am.describe(pt, 2, 2)
  off.save(tmp_path / "m")
  assert am.AspectModel.load(tmp_path / "m").complaint_cues is False
  model.save(tmp_path / "on")
  assert am.AspectModel.load(tmp_path / "on").complaint_cues is True

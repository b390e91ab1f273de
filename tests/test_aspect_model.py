"""cvlib.insight.aspect_model: keyword rules, the polarity head, calibration, the saved model and
the public cvlib.aspect_opinions (its accuracy is benchmarks/aspects_labelled.py's)."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

import cvlib
from cvlib.insight import aspect_model as am


def _bag_embed(texts):
  """A deterministic stand-in encoder: hashed bag of words, L2-normalised."""
  out = np.zeros((len(texts), 64), np.float32)
  for i, t in enumerate(texts):
    for w in am.fold(t).split():
      out[i, sum(map(ord, w.strip(".,!"))) % 64] += 1.0
  norms = np.linalg.norm(out, axis=1, keepdims=True)
  return out / np.where(norms > 0, norms, 1.0)


@pytest.fixture(scope="module")
def matcher():
  return am.KeywordMatcher(am.ENGLISH_SPECS, am.vocabulary_words())


def _hits(matcher, text):
  return {n for n, hit in zip(matcher.names, matcher.match(text)) if hit}


def test_keywords_match_with_gaps_and_not_across_long_spans(matcher):
  assert "size_fit" in _hits(matcher, "they run a little large")
  assert "size_fit" in _hits(matcher, "runs very small")
  assert "quality" in _hits(matcher, "the buttons pop right off")
  assert not am._in_order(["run", "x", "y", "z", "large"], ("run", "large"))


def test_typos_only_where_no_other_word_is_one_edit_away(matcher):
  # "switch", "effective", "mostly" are words: never read as stitch, defective, costly
  assert "quality" not in _hits(matcher, "the switch is easy to reach")
  assert "quality" not in _hits(matcher, "very effective cleanser")
  assert "price" not in _hits(matcher, "mostly worn at home")
  # a long keyword with no vocabulary neighbour tolerates a typo that is not a word
  assert _hits(matcher, "lovely craftmanship") == {"quality"}


def test_one_keyword_covers_every_english_negation(matcher):
  # "not stay" (written so in the keyword list) matches however the negation is spelled, and
  # the older keywords written with a contraction match the other spellings too
  for text in ("the strap would not stay on", "it doesn't stay attached", "never stays closed",
               "the glue didn't hold at all", "it did not work"):
    assert "quality" in _hits(matcher, text), text
  assert am.keyword_tokens("It Doesn't stay") == ["it", "not", "stay"]
  assert "quality" not in _hits(matcher, "the stay was lovely")


def test_a_products_effect_is_no_quality_keyword(matcher):
  # the guide: a cosmetic's or a food's effect is not quality; the product's own feel is
  assert "quality" not in _hits(matcher, "it leaves my skin so soft")
  assert "quality" not in _hits(matcher, "makes my hair feel silky smooth and soft")
  assert "quality" in _hits(matcher, "the fabric is so soft")
  # another quality keyword in the same clause still counts
  assert "quality" in _hits(matcher, "durable and it makes my hair soft")


def test_polarity_training_set_uses_short_rated_texts():
  texts = ["love it", "runs small and the fabric is thin " * 3, "awful", "okay", None]
  ratings = [5, 1, 1, 3, 4]
  titles = ["Great", None, "Bad", "Fine", "Nice"]
  got, labels = am.polarity_training_set(texts, ratings, titles=titles, max_words=12)
  assert got == ["love it", "awful", "Great", "Bad", "Nice"]
  assert labels.tolist() == [1, 0, 1, 0, 1]
  with pytest.raises(ValueError, match="3 texts, 2 ratings"):
    am.polarity_training_set(["a", "b", "c"], [1, 2])


def test_polarity_training_set_labels_aspect_clauses_of_long_reviews(matcher):
  long = ("I love the colour and the print is lovely on me, but the fabric is thin. It runs "
          "small. The stitching is neat.")

  def pairs(stars):
    got, labels = am.polarity_training_set([long], [stars], matcher=matcher)
    return set(zip(got, labels.tolist()))

  # 5 stars: the clause after "but" is the complaint, the other aspect clauses are praise;
  # 4 stars: only the clause after "but"; 1 star: every aspect clause is negative
  assert pairs(5) == {("the fabric is thin", 0), ("It runs small", 1),
                      ("The stitching is neat", 1)}
  assert pairs(4) == {("the fabric is thin", 0)}
  assert pairs(1) == {("the fabric is thin", 0), ("It runs small", 0),
                      ("The stitching is neat", 0)}
  # short texts keep the review's stars; without a matcher long reviews are left out
  assert ("great price", 0) in set(zip(*[x.tolist() if hasattr(x, "tolist") else x for x in
                                         am.polarity_training_set([long, "great price"], [1, 2],
                                                                  matcher=matcher)]))
  assert am.polarity_training_set([long, "great price"], [5, 2])[0] == ["great price"]


def test_short_verdicts_are_tagged_by_their_keyword(matcher):
  assert am.short_verdicts(["awful service", "on sale", "the box", "rubbish quality",
                            "the service was slow today"]).tolist() == [
                                True, False, False, True, False]
  texts = ["awful service, terrible, useless"]
  table = am.clause_table(texts, am.ENGLISH_SPECS, _bag_embed, matcher)
  names = [s.name for s in am.ENGLISH_SPECS]
  never = {n: 1.01 for n in names}  # no similarity reaches these: only the short rule tags
  hits = am.clause_hits(table, names, never, never)
  assert hits[0, names.index("service")] and hits.sum() == 1


def test_scoring_embeds_each_clause_once(matcher):
  calls = []

  def counting(texts):
    calls.append(len(texts))
    return _bag_embed(texts)

  model = _toy_model(am.PolarityHead(np.zeros(64), 1.0, {"data": "toy"}))
  texts = ["delivery was fast, the fabric is thin", "great price"]
  pol = am.score_reviews(texts, model, tag_embed=counting)
  n_refs = sum(len(s.descriptions) + len(s.positive) + len(s.negative) for s in model.specs)
  assert sorted(calls) == sorted([n_refs, 3])  # references once, the 3 clauses once
  assert pol.loc[0, "delivery"] == 1 and pol.loc[1, "price"] == 1


def test_threshold_calibration_weighs_each_group_the_same():
  # one clause per review, all with the keyword: group "a" (20 reviews) is all true, 8 of them
  # with a middling similarity; in group "b" (8) the middling ones are wrong
  sim = np.r_[np.full(12, 0.6), np.full(8, 0.3), np.full(6, 0.3), np.full(2, 0.6)]
  truth = np.r_[np.ones(20, bool), np.zeros(6, bool), np.ones(2, bool)]
  groups = np.r_[["a"] * 20, ["b"] * 8]
  table = am.ClauseTable([f"c{i}" for i in range(28)], np.arange(28), np.ones((28, 1), bool),
                         sim[:, None].astype(np.float32), np.zeros((28, 1), np.float32))
  floor, _ = am.calibrate_thresholds(table, truth[:, None], ["x"])
  assert floor["x"] < 0.3  # pooled: the 20 rows of "a" win
  floor, _ = am.calibrate_thresholds(table, truth[:, None], ["x"], groups=groups)
  assert 0.3 < floor["x"] <= 0.6  # by group: "b" counts as much as "a"


def test_polarity_head_learns_and_round_trips(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 8))
  y = (x[:, 0] > 0).astype(int)
  head = am.fit_polarity_head(x, y, trained_on={"data": "toy"})
  assert ((head.proba(x) > 0.5) == y).mean() > 0.95
  head.save(tmp_path / "h.npz")
  back = am.PolarityHead.load(tmp_path / "h.npz")
  np.testing.assert_allclose(back.proba(x), head.proba(x), rtol=1e-5)
  assert back.trained_on["n_positive"] == int(y.sum())
  with pytest.raises(ValueError, match="at least 20 negative"):
    am.fit_polarity_head(x[:30], np.r_[np.zeros(5), np.ones(25)].astype(int), trained_on={})
  with pytest.raises(ValueError, match="width 8"):
    head.proba(np.zeros((2, 3)))


def _toy_model(head):
  names = [s.name for s in am.ENGLISH_SPECS]
  return am.AspectModel("en", am.ENGLISH_SPECS, {n: -1.0 for n in names},
                        {n: 1.01 for n in names}, head,
                        {"head": 1.0, "examples": 0.0, "bias": 0.0})


def test_calibration_and_scoring_on_a_toy_encoder(matcher, tmp_path):
  texts = ["delivery was fast", "the fabric is thin", "great price", "lovely colour",
           "delivery took weeks", "the fabric is soft"] * 4
  table = am.clause_table(texts, am.ENGLISH_SPECS, _bag_embed, matcher)
  names = [s.name for s in am.ENGLISH_SPECS]
  labels = np.zeros((len(texts), len(names)), dtype=bool)
  for i, t in enumerate(texts):
    labels[i, names.index("delivery")] = "delivery" in t
    labels[i, names.index("quality")] = "fabric" in t
    labels[i, names.index("price")] = "price" in t
  floor, alone = am.calibrate_thresholds(table, labels, names)
  assert floor["delivery"] == -1.0 and alone["delivery"] == 1.01  # keywords are exact here
  # a head that reads "weeks" and "thin" as negative
  w = np.zeros(64)
  for word, sign in (("weeks", -4.0), ("thin", -4.0), ("fast", 4.0), ("soft", 4.0),
                     ("great", 4.0)):
    w[sum(map(ord, word)) % 64] += sign
  model = _toy_model(am.PolarityHead(w, 0.0, {"data": "toy"}))
  pol = am.score_reviews(texts[:6], model, tag_embed=_bag_embed)
  assert pol.loc[0, "delivery"] == 1 and pol.loc[4, "delivery"] == -1
  assert pol.loc[1, "quality"] == -1 and pol.loc[5, "quality"] == 1
  assert pol.loc[2, "price"] == 1 and pol.loc[3].isna().all()
  model.save(tmp_path / "m")
  back = am.AspectModel.load(tmp_path / "m")
  assert back.floor == model.floor and back.specs == model.specs and back.mix == model.mix
  with pytest.raises(FileNotFoundError, match="aspect model file missing"):
    am.AspectModel.load(tmp_path / "nothing")


def test_cell_polarity_a_complaint_wins_and_mixed_needs_confident_disagreement():
  mix = {"head": 1.0, "examples": 0.0, "bias": 0.0}
  assert am.cell_polarity(np.array([[4.0, 0.0], [-4.0, 0.0]]), mix) == 0
  # praise elsewhere does not outvote a confident complaint
  assert am.cell_polarity(np.array([[2.5, 0.0], [2.5, 0.0], [-2.0, 0.0]]), mix) == -1
  assert am.cell_polarity(np.array([[3.0, 0.0], [-0.5, 0.0]]), mix) == 1
  assert am.cell_polarity(np.array([[-0.2, 0.0]]), mix) == -1
  assert am.cell_polarity(np.array([[0.0, -0.1]]), {"head": 0.0, "examples": 5.0, "bias": 0.0}) == -1


def test_star_rating_enters_polarity_through_its_own_mix(matcher, tmp_path):
  assert am.rating_term(5) == 1.0 and am.rating_term(1) == -1.0 and am.rating_term(3) == 0.0
  assert am.rating_term(9) == 1.0 and np.isnan(am.rating_term(None))
  assert np.isnan(am.rating_term(float("nan")))
  mix = {"head": 1.0, "examples": 0.0, "bias": 0.0}
  rated = {"head": 1.0, "examples": 0.0, "rating": 3.0, "bias": 0.0}
  mild = np.array([[0.5, 0.0]])  # a clause the head reads as mildly positive
  assert am.cell_polarity(mild, mix) == 1
  assert am.cell_polarity(mild, mix, am.rating_term(1), rated) == -1  # a 1-star review
  assert am.cell_polarity(mild, mix, math.nan, rated) == 1  # unknown stars: the plain mix
  assert am.cell_polarity(mild, mix, am.rating_term(1), None) == 1  # no rated mix: stars unused
  # the rated mix is learnt with the rating as a third input
  feats = [np.array([[v, 0.0]]) for v in (-2, -1, 1, -2, -1, 2, 1, -1, 2, 1)]
  stars = [am.rating_term(s) for s in (1, 2, 1, 1, 2, 5, 4, 5, 5, 4)]
  got = am.calibrate_mix(feats, [False] * 5 + [True] * 5, ratings=stars)
  assert set(got) == {"head", "examples", "rating", "bias"} and got["rating"] > 0
  with pytest.raises(ValueError, match="one known value per cell"):
    am.calibrate_mix(feats, [False] * 5 + [True] * 5, ratings=stars[:-1] + [math.nan])
  # scoring: the stars go with their review; a saved model keeps its rated mix
  model = dataclasses.replace(_toy_model(am.PolarityHead(np.zeros(64), 0.0, {"data": "toy"})),
                              mix={"head": 1.0, "examples": 0.0, "bias": 0.1}, mix_rated=rated)
  texts = ["the fabric is thin", "the fabric is thin"]
  pol = am.score_reviews(texts, model, tag_embed=_bag_embed, matcher=matcher, ratings=[1, None])
  assert pol.loc[0, "quality"] == -1 and pol.loc[1, "quality"] == 1
  with pytest.raises(ValueError, match="1 values for 2 reviews"):
    am.score_reviews(texts, model, tag_embed=_bag_embed, matcher=matcher, ratings=[1])
  model.save(tmp_path / "m")
  assert am.AspectModel.load(tmp_path / "m").mix_rated == rated
  assert "star rating" in am.describe(model, 2, 2)


def test_each_aspect_with_enough_cells_gets_its_own_offset_to_the_bias(matcher):
  # same clause features everywhere: only the aspect tells sizing remarks (mostly complaints)
  # from price remarks (mostly praise); an aspect with few cells keeps the shared bias
  feats = [np.array([[0.2, 0.0]])] * 27
  aspects = ["size_fit"] * 12 + ["price"] * 12 + ["service"] * 3
  positive = [False] * 9 + [True] * 3 + [True] * 9 + [False] * 3 + [True, False, True]
  mix = am.calibrate_mix(feats, positive, aspects=aspects)
  assert mix["bias:size_fit"] < 0 < mix["bias:price"] and "bias:service" not in mix
  assert mix["bias"] + mix["bias:size_fit"] + 0.2 * mix["head"] < 0
  assert am.cell_polarity(feats[0], mix, aspect="size_fit") == -1
  assert am.cell_polarity(feats[0], mix, aspect="price") == 1
  assert am.cell_polarity(feats[0], mix) == am.cell_polarity(feats[0], mix, aspect="service")
  with pytest.raises(ValueError, match="26 aspect names for 27 cells"):
    am.calibrate_mix(feats, positive, aspects=aspects[:-1])
  # scoring passes each cell's aspect; the offsets are saved with the model
  model = dataclasses.replace(_toy_model(am.PolarityHead(np.zeros(64), 0.0, {"data": "toy"})),
                              mix={"head": 1.0, "examples": 0.0, "bias": 0.1,
                                   "bias:quality": -1.0})
  pol = am.score_reviews(["the fabric is thin"], model, tag_embed=_bag_embed, matcher=matcher)
  assert pol.loc[0, "quality"] == -1
  model = dataclasses.replace(model, mix={"head": 1.0, "examples": 0.0, "bias": 0.1})
  assert am.score_reviews(["the fabric is thin"], model, tag_embed=_bag_embed,
                          matcher=matcher).loc[0, "quality"] == 1


def test_a_clause_table_serves_subsets_of_its_reviews(matcher):
  texts = ["the fabric is thin. it runs small", None, "fast delivery", "great price, thin fabric"]
  table = am.clause_table(texts, am.ENGLISH_SPECS, _bag_embed, matcher)
  part = table.of_reviews([3, 0, 1])
  alone = am.clause_table([texts[3], texts[0], texts[1]], am.ENGLISH_SPECS, _bag_embed, matcher)
  assert part.clauses == alone.clauses and part.owner.tolist() == alone.owner.tolist()
  for field in ("keyword", "similarity", "examples", "vectors", "short"):
    np.testing.assert_array_equal(getattr(part, field), getattr(alone, field))
  assert table.of_reviews([]).clauses == [] and table.of_reviews([1]).clauses == []


def test_calibrate_mix_needs_both_polarities():
  feats = [np.array([[v, 0.0]]) for v in (-2, -1, -3, -2, -1, 2, 1, 3, 2, 1)]
  mix = am.calibrate_mix(feats, [False] * 5 + [True] * 5)
  assert mix["head"] > 0
  with pytest.raises(ValueError, match="5\\+ cells of each"):
    am.calibrate_mix(feats[:6], [False] * 5 + [True])


def test_aspect_opinions_public_function(tmp_path):
  texts = pd.Series(["Runs very small, I had to return it.", "Arrived fast and the quality is "
                     "great.", None, "Lovely colour."], index=[10, 11, 12, 13])
  out = cvlib.aspect_opinions(texts, "en")
  assert list(out.index) == [10, 11, 12, 13]
  assert list(out.columns) == [s.name for s in am.ENGLISH_SPECS]
  assert out.loc[10, "size_fit"] == -1
  assert out.loc[11, "delivery"] == 1 and out.loc[11, "quality"] == 1
  assert out.loc[12].isna().all() and out.loc[13].isna().all()
  # with the stars (what the report passes): same tags, each aspect's polarity may use them
  rated = cvlib.aspect_opinions(texts, "en", ratings=pd.Series([2, 5, None, 4], index=texts.index))
  pd.testing.assert_frame_equal(rated.notna(), out.notna())
  assert rated.loc[10, "size_fit"] == -1 and rated.loc[11, "quality"] == 1
  with pytest.raises(ValueError, match="3 values for 4 reviews"):
    cvlib.aspect_opinions(texts, "en", ratings=[1, 2, 3])
  with pytest.raises(ValueError, match="single str"):
    cvlib.aspect_opinions("runs small", "en")
  with pytest.raises(ValueError, match="pass a finished run folder"):
    cvlib.aspect_opinions(["chegou rapido"], "pt")
  with pytest.raises(ValueError, match="supported: en, pt"):
    cvlib.aspect_opinions(["x"], "de")
  # a run folder's model is used as saved, and must be of the asked language
  model = am.default_model("en")
  model.save(tmp_path / am.RUN_SUBDIR)
  again = cvlib.aspect_opinions(texts, "en", run_dir=tmp_path)
  pd.testing.assert_frame_equal(again, out)
  with pytest.raises(ValueError, match="for language 'en', not 'pt'"):
    cvlib.aspect_opinions(["x"], "pt", run_dir=tmp_path)
  with pytest.raises(FileNotFoundError, match="aspect model file missing"):
    cvlib.aspect_opinions(["x"], "en", run_dir=tmp_path / "none")


def test_a_shop_without_enough_rated_short_texts():
  texts, stars = ["love it", "awful"] * 5, [5, 1] * 5
  en = am.fit_shop_model("en", texts, stars)  # English falls back to the shipped head
  assert en.head.trained_on == am.default_model("en").head.trained_on
  with pytest.raises(ValueError, match="5 negative and 5 positive rated opinion texts"):
    am.fit_shop_model("pt", texts, stars)


def test_aspects_from_the_params():
  from cvlib.config import ParamsError, params_from_dict
  battery = {"descriptions": ["the battery life"], "positive": ["battery lasts all day"],
             "negative": ["the battery dies fast"], "keywords": ["battery", "charge"]}
  p = params_from_dict({"dataset": "x", "segment": {"aspects": {"battery": battery}}})
  specs = am.specs_from(p.segment.aspects, "en")
  assert [s.name for s in specs] == ["battery"] and specs[0].keywords == ("battery", "charge")
  assert am.specs_from({}, "en") == am.ENGLISH_SPECS
  model = am._calibrated("en", specs, am.default_model("en").head)
  cal = am.calibration("en")
  assert model.floor["battery"] == pytest.approx(np.median(list(cal["floor"].values())))
  with pytest.raises(ParamsError, match="segment.aspects.battery.positive must be a non-empty"):
    params_from_dict({"dataset": "x", "segment": {"aspects": {"battery": battery | {
        "positive": []}}}})
  with pytest.raises(ParamsError, match="unknown key 'segment.aspects.battery.kw'"):
    params_from_dict({"dataset": "x", "segment": {"aspects": {"battery": battery | {
        "kw": ["x"]}}}})


def test_the_reviews_a_report_quotes_are_among_those_read_for_aspects():
  """With more reviews than segment.aspect_max_reviews, the reviews the report quotes (the most
  negative and most positive) are read first, so a quoted complaint shows its aspects; a review
  outside the sample says so instead of showing no aspect."""
  from types import SimpleNamespace

  from cvlib.report import details
  from cvlib.stages import segment
  n = 30
  ratings = np.full(n, 3.0)
  ratings[[7, 11, 13, 17, 23]] = 1.0
  ratings[[2, 5, 19, 26, 29]] = 5.0
  texts = [f"Review number {i}, an ordinary day." for i in range(n)]
  texts[7] = "The price is far too high and the strap broke after a week."
  texts[19] = "Great price and lovely quality."
  ids = [f"r{i}" for i in range(n)]
  scores = pd.DataFrame({"review_id": ids, "sentiment": np.linspace(-0.5, 0.5, n),
                         "rating": ratings})
  tables = SimpleNamespace(reviews=pd.DataFrame({"review_id": ids, "text": texts,
                                                 "rating": ratings}),
                           products=None, truth={})
  opinions = segment.make_aspect_opinions(scores, tables, language="en", max_reviews=12)
  negative, positive = segment.example_positions(scores, texts)
  shown = np.r_[negative, positive]
  assert sorted(shown) == [2, 5, 7, 11, 13, 17, 19, 23, 26, 29]
  assert opinions.tagged.sum() == 12 and opinions.tagged[shown].all()
  quoted = segment.example_reviews(scores, tables, opinions).set_index("review")["aspects"]
  assert set(quoted[texts[7]].split(", ")) >= {"price", "quality"}
  assert quoted[texts[19]] == "quality, price"
  listed = segment.review_details(scores, tables, opinions)
  unread = np.flatnonzero(~opinions.tagged)
  assert len(unread) == n - 12 and (listed["aspects"].iloc[unread] == details.NOT_READ).all()


def test_the_report_quotes_each_review_text_once():
  from cvlib.stages import segment
  scores = pd.DataFrame({"review_id": list("abcdefg"), "rating": [1, 1, 1, 2, 5, 5, 4],
                         "sentiment": [-0.9, -0.8, -0.7, -0.5, 0.9, 0.8, 0.5]})
  texts = ["Não recebi o produto", "não recebi o produto!", "Veio quebrado", "Demorou",
           "Ótimo", "ótimo.", "Bom"]
  negative, positive = segment.example_positions(scores, texts, n=2)
  assert negative.tolist() == [0, 2] and positive.tolist() == [4, 6]
  with pytest.raises(ValueError, match="6 texts for 7 reviews"):
    segment.example_positions(scores, texts[:6])

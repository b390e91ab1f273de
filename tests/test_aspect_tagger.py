"""The review tagger's pure parts (cvlib.insight.aspect_tagger: the multi-label loss, positive
weights, threshold choice, the inner split) and benchmarks/aspect_tagger.py's paired bootstrap
(tiny inputs, no model)."""


import jax
import jax.numpy as jnp
import numpy as np
import optax

import benchmark_script
from cvlib.insight import aspect_tagger as tagger

at = benchmark_script.load("aspect_tagger")


def test_multilabel_loss_is_weighted_binary_cross_entropy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(4, 3)).astype(np.float32)
  y = (rng.random((4, 3)) < 0.5).astype(np.float32)
  pw = np.array([1.0, 3.0, 0.5], np.float32)
  w = np.array([1.0, 1.0, 1.0, 0.0], np.float32)  # the last row is filler
  got = float(tagger.multilabel_loss(jnp.asarray(z), jnp.asarray(y), jnp.asarray(pw), jnp.asarray(w)))
  p = 1 / (1 + np.exp(-z.astype(np.float64)))
  per = -(pw * y * np.log(p) + (1 - y) * np.log(1 - p))
  assert np.isclose(got, per[:3].mean(), rtol=1e-5)
  # with unit positive weights it is optax's sigmoid cross-entropy
  ones = jnp.ones(3)
  ref = optax.sigmoid_binary_cross_entropy(jnp.asarray(z[:3]), jnp.asarray(y[:3])).mean()
  assert np.isclose(float(tagger.multilabel_loss(jnp.asarray(z[:3]), jnp.asarray(y[:3]), ones,
                                             jnp.ones(3))), float(ref), rtol=1e-5)


def test_multilabel_loss_gradient_pushes_positives_up_by_their_weight():
  z = jnp.zeros((2, 2))
  y = jnp.asarray([[1.0, 0.0], [0.0, 0.0]])
  pw = jnp.asarray([4.0, 1.0])
  g = np.asarray(jax.grad(tagger.multilabel_loss)(z, y, pw, jnp.asarray([1.0, 0.0])))
  # d/dz of pw*y*softplus(-z) + (1-y)*softplus(z) at 0, over 1 real row x 2 aspects
  assert np.allclose(g, [[-4.0 * 0.5 / 2, 0.5 / 2], [0.0, 0.0]])


def test_positive_weights_are_clipped_ratios():
  y = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
  w = tagger.positive_weights(y, cap=2.0)
  assert w.tolist() == [2.0, 2.0, 1.0]  # 3/1 capped, no positive -> cap, 1/3 -> at least 1


def test_choose_thresholds_picks_the_best_f1_and_defaults_without_positives():
  scores = np.array([[0.9, 0.2], [0.7, 0.1], [0.3, 0.4], [0.1, 0.3]])
  true = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
  t = tagger.choose_thresholds(scores, true, grid=[0.2, 0.5, 0.8])
  assert t[0] == 0.5  # 0.5 keeps both positives and nothing else; 0.2 adds a false positive
  assert t[1] == 0.5  # no positive: the default
  tied = tagger.choose_thresholds(np.array([[0.9], [0.1]]), np.array([[1], [0]]),
                              grid=[0.2, 0.4, 0.7, 0.8])
  assert tied[0] == 0.4  # every threshold is perfect: the one nearest 0.5


def test_inner_split_takes_the_share_of_each_source_and_is_seeded():
  sources = ["a"] * 10 + ["b"] * 5
  v = tagger.inner_split(sources, share=0.2, seed=0)
  assert v[:10].sum() == 2 and v[10:].sum() == 1
  assert (v == tagger.inner_split(sources, share=0.2, seed=0)).all()


def test_paired_bootstrap_is_zero_for_the_same_tagger_and_signed_otherwise():
  rng = np.random.default_rng(0)
  true = rng.random((60, 3)) < 0.3
  same = at.paired_bootstrap(true, true, true, n=50)
  assert all(v["diff"] == 0 and v["low"] == 0 and v["high"] == 0 for v in same.values())
  worse = true.copy()
  worse[:30] = False  # drops half the reviews' tags: recall falls, precision stays 1
  out = at.paired_bootstrap(true, worse, true, n=200)
  assert out["recall"]["low"] > 0 and out["f1"]["low"] > 0
  assert out["precision"]["diff"] == 0


def _table(owner, keyword, similarity):
  from cvlib.insight import aspect_model as am
  n = len(owner)
  return am.ClauseTable([f"c{j}" for j in range(n)], np.asarray(owner), np.asarray(keyword, bool),
                        np.asarray(similarity, np.float32), np.zeros_like(similarity, np.float32))


def test_tagger_hits_keep_the_rules_clauses_then_a_keyword_then_the_most_similar_clause():
  from cvlib.insight import aspect_model as am
  # three reviews, two aspects; review 0: clauses 0-1, review 1: clauses 2-4, review 2: none
  owner = [0, 0, 1, 1, 1]
  keyword = [[1, 0], [0, 0], [0, 0], [0, 1], [0, 0]]
  similarity = [[0.9, 0.1], [0.2, 0.3], [0.1, 0.2], [0.1, 0.4], [0.3, 0.8]]
  hits = np.array([[1, 0], [0, 0], [0, 0], [0, 0], [0, 0]], bool)  # the rule: review 0, aspect 0
  tags = np.array([[0, 1], [1, 1], [1, 1]], bool)
  got = am.tagger_hits(_table(owner, keyword, similarity), hits, tags)
  want = np.array([[0, 0],   # the rule's hit on aspect 0 goes: the tagger does not tag it
                   [0, 1],   # review 0, aspect 1: no rule clause, no keyword: most similar
                   [0, 0],
                   [0, 1],   # review 1, aspect 1: the keyword clause (not the more similar one)
                   [1, 0]],  # review 1, aspect 0: no keyword: the most similar clause
                  bool)
  np.testing.assert_array_equal(got, want)
  # where the rule's clauses and the tagger agree, the rule's clauses carry the polarity
  both = am.tagger_hits(_table(owner, keyword, similarity), hits, np.array([[1, 0], [0, 0],
                                                                            [0, 0]], bool))
  np.testing.assert_array_equal(both, hits)


def test_a_tagger_round_trips_its_trained_parameters(tmp_path):
  from cvlib.text import checkpoint
  model, _ = checkpoint.load_classifier(len(tagger.ASPECTS), seed=0)
  params = checkpoint.flat_params(model)
  key = "bert.encoder.layer.5.output.dense.kernel"
  params[key][...] = params[key][...] + 0.01  # a trained change of the "top3" variant
  params["classifier.kernel"][...] = params["classifier.kernel"][...] * 3
  t = tagger.ReviewTagger(model, np.full(6, 0.4), {"variant": "top3", "data": "toy"})
  t.save(tmp_path / "t.npz")
  back = tagger.ReviewTagger.load(tmp_path / "t.npz")
  assert back.info == t.info and (back.thresholds == t.thresholds).all()
  got = checkpoint.flat_params(back.model)
  np.testing.assert_allclose(got[key][...], params[key][...], atol=2e-3)  # float16 stored
  texts = ["runs small", "arrived late", None]
  np.testing.assert_allclose(back.proba(texts), t.proba(texts), atol=5e-3)
  assert (back.proba(texts)[2] == 0).all()  # no text, no tag
  with np.load(tmp_path / "t.npz") as f:  # only the variant's parameters are stored
    stored = [k for k in f.files if k.startswith("param:")]
  assert f"param:{key}" in stored and "param:bert.encoder.layer.0.output.dense.kernel" not in stored


def test_the_packaged_tagger_serves_the_default_aspects_only():
  from cvlib.insight import aspect_model as am
  shipped = tagger.packaged("en")
  assert shipped is not None and tagger.packaged("pt") is None
  assert shipped.info["variant"] == tagger.VARIANT and "draw is not read" in shipped.info["data"]
  assert ((shipped.thresholds > 0) & (shipped.thresholds < 1)).all()
  assert am.default_model("en").tagger is shipped
  battery = am._spec("battery", ["the battery life"], ["battery"], ["lasts all day"],
                     ["dies fast"])
  assert am._calibrated("en", (battery,), am.default_model("en").head).tagger is None
  tags = am.review_tags(am.default_model("en"), ["It arrived two weeks late.", "Lovely."])
  assert tags.shape == (2, 6) and tags.dtype == bool


def test_a_run_folder_names_the_packaged_tagger(tmp_path):
  from cvlib.insight import aspect_model as am
  am.default_model("en").save(tmp_path)
  assert '"tagger": "packaged"' in (tmp_path / am.MODEL_FILE).read_text()
  assert am.AspectModel.load(tmp_path).tagger is tagger.packaged("en")

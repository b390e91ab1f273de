"""cvlib.insight.aspect_candidates: planted opinion targets come out as groups, coverage and the
params snippet, and the report part (customer text escaped). How well the proposals recover
hand-labelled aspects is benchmarks/aspect_candidates.py's."""

import json
import zlib

import numpy as np
import pytest
import yaml

from cvlib import config
from cvlib.insight import aspect_candidates as ac
from cvlib.report import html as report
from cvlib.report.workspace import Workspace
from cvlib.stages import segment

DIM = 32
PLANTED = {"battery": ("battery", "charger", "charging"), "screen": ("screen", "display"),
           "strap": ("strap", "buckle", "band")}
POSITIVE, NEGATIVE = ("great", "love", "solid"), ("bad", "broken", "awful")
SCRIPT = "<script>alert(1)</script>"


def _word_vector(word: str) -> np.ndarray:
  """Words of a planted group share a direction; opinion words carry +-1 on dimension 0 (the
  toy polarity head reads it); every other word is its own seeded random direction."""
  rng = np.random.default_rng(zlib.crc32(word.encode()))
  v = np.r_[0.0, rng.normal(size=DIM - 1)]
  for g, (name, words) in enumerate(PLANTED.items()):
    if word in words:
      base = np.random.default_rng(100 + g).normal(size=DIM - 1)
      v = np.r_[0.0, base + 0.3 * rng.normal(size=DIM - 1)]
  if word in POSITIVE + NEGATIVE:
    v = np.r_[4.0 if word in POSITIVE else -4.0, 0.2 * rng.normal(size=DIM - 1)]
  return v / np.linalg.norm(v)


def toy_embed(texts):
  out = np.zeros((len(texts), DIM), np.float32)
  for i, text in enumerate(texts):
    words = text.lower().split()
    out[i] = np.mean([_word_vector(w) for w in words], axis=0) if words else 0.0
  norms = np.linalg.norm(out, axis=1, keepdims=True)
  return out / np.where(norms > 0, norms, 1.0)


def toy_proba(vectors):
  return 1.0 / (1.0 + np.exp(-8.0 * np.asarray(vectors)[:, 0]))


def _shop(n_reviews=240, seed=0):
  """Clauses of seeded reviews: each names one planted target with an opinion, plus one clause of
  words no other review uses (never frequent). Stars follow the opinion."""
  rng = np.random.default_rng(seed)
  weights = {"battery": 0.5, "screen": 0.3, "strap": 0.2}
  clauses, owner, stars = [], [], []
  for i in range(n_reviews):
    group = rng.choice(list(weights), p=list(weights.values()))
    good = rng.random() < 0.6
    word = rng.choice(PLANTED[group])
    opinion = rng.choice(POSITIVE if good else NEGATIVE)
    clauses += [f"the {word} is {opinion}", f"zz{i}a zz{i}b"]
    owner += [i, i]
    stars.append(5.0 if good else 1.0)
  return clauses, np.array(owner), np.array(stars)


@pytest.fixture(scope="module")
def proposed():
  clauses, owner, stars = _shop()
  tagged = np.array([[any(w in c.split() for w in PLANTED["screen"])] for c in clauses])
  return clauses, ac.propose_aspects(
      clauses, owner, toy_embed(clauses), n_reviews=240, language="en", embed_fn=toy_embed,
      tagged=tagged, aspect_names=["display"], proba=toy_proba, ratings=stars)


def test_planted_targets_come_out_as_named_groups(proposed):
  _, cands = proposed
  groups = {name: set(keys) for name, keys in cands.keys.items()}
  stems = {g: {ac.lexicon.stem(w) for w in words} for g, words in PLANTED.items()}
  assert sorted(map(frozenset, groups.values()), key=sorted) == sorted(
      map(frozenset, stems.values()), key=sorted)
  table = cands.table.set_index("candidate")
  # named by the most used word of the group; shares near the planted 0.5 / 0.3 / 0.2
  assert set(table.index) <= {w for words in PLANTED.values() for w in words}
  share = {next(g for g, s in stems.items() if set(cands.keys[c]) == s): table.loc[c, "share"]
           for c in table.index}
  assert share["battery"] == pytest.approx(0.5, abs=0.08)
  assert share["strap"] == pytest.approx(0.2, abs=0.08)
  assert list(cands.table["share"]) == sorted(cands.table["share"], reverse=True)
  # words used by one review each, and the opinion words, are no target
  assert not any(w.startswith("zz") or w in POSITIVE + NEGATIVE
                 for keys in cands.keys.values() for k in keys for w in k.split())


def test_coverage_and_the_params_snippet(proposed):
  clauses, cands = proposed
  covered = dict(zip(cands.table["candidate"], cands.table["covered_by"]))
  screen = next(c for c, keys in cands.keys.items() if "screen" in keys)
  assert covered[screen] == "display"
  assert sorted(v for c, v in covered.items() if c != screen) == ["none", "none"]
  aspects = yaml.safe_load(cands.yaml)["segment"]["aspects"]
  assert screen not in aspects and len(aspects) == 2
  for spec in aspects.values():
    assert spec["descriptions"] and set(spec["descriptions"]) <= set(clauses)
    assert all(any(o in p.split() for o in POSITIVE) for p in spec["positive"])
    assert all(any(o in n.split() for o in NEGATIVE) for n in spec["negative"])
    assert spec["positive"] and spec["negative"]
  # the snippet is valid params as it stands
  raw = {"dataset": "x", "data": {"adapter": "synthetic"}, **yaml.safe_load(cands.yaml)}
  params = config.params_from_dict(raw)
  assert set(params.segment.aspects) == set(aspects)


def test_deterministic_and_checks_its_inputs(proposed):
  clauses, cands = proposed
  _, owner, stars = _shop()
  again = ac.propose_aspects(clauses, owner, toy_embed(clauses), n_reviews=240, language="en",
                             embed_fn=toy_embed, proba=toy_proba, ratings=stars)
  assert again.keys == cands.keys
  assert set(again.table["covered_by"]) == {"none"}
  mentions = cands.mentions(["The Battery is dead", "nothing here", None])
  assert mentions.sum(axis=1).tolist() == [1, 0, 0]
  with pytest.raises(ValueError, match="supported: en, pt"):
    ac.propose_aspects(clauses, owner, toy_embed(clauses), n_reviews=240, language="de",
                       embed_fn=toy_embed)
  with pytest.raises(ValueError, match="3 clauses, 2 owners"):
    ac.propose_aspects(clauses[:3], owner[:2], toy_embed(clauses[:3]), n_reviews=2,
                       language="en", embed_fn=toy_embed)


def test_portuguese_stop_and_generic_words_are_no_targets():
  assert ac.content_words("O produto chegou antes do prazo, ótima embalagem", "pt") == [
      "antes", "prazo", "embalagem"]
  assert ac.content_words("I love the fabric but it's not great", "en") == ["fabric"]


def test_report_part_escapes_customer_text(tmp_path):
  clauses = [f"the battery {SCRIPT} is great"] * 2
  table = ac.pd.DataFrame({"candidate": ["battery"], "words": [f"battery, {SCRIPT}"],
                           "share": [0.5], "reviews": [2], "example": [clauses[0]],
                           "covered_by": ["none"]})
  snippet = yaml.safe_dump({"segment": {"aspects": {"battery": {
      "descriptions": clauses[:1], "positive": clauses[:1], "negative": [], "keywords": ["x"]}}}})
  cands = ac.Candidates(table, snippet, 4, 8, 3, {"battery": ("battery",)})
  ws = Workspace(tmp_path / "run", "segment")
  segment.report_candidates(ws, cands)
  run_info = {"params": {}, "ended": "2024-07-01T10:00:00", "started": "2024-07-01T09:55:00",
              "cvlib_version": "0", "params_file": "p.yaml", "git_commit": None}
  html = report.render_index(ws.root, {"dataset": "x"}, run_info).read_text(encoding="utf-8")
  assert SCRIPT not in html and "<script" not in html
  escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
  assert html.count(escaped) >= 3  # table words, example, and the YAML in <pre>
  assert "<pre>segment:\n  aspects:\n    battery:" in html
  assert "Candidate aspects for this shop" in html


def test_tiny_report_shows_candidates(tiny_run):
  """The tiny run's report: the candidates part of the opinions section and its artefacts."""
  page = (tiny_run / "index.html").read_text(encoding="utf-8")
  assert "Candidate aspects for this shop" in page
  saved = json.loads((tiny_run / "artifacts" / "aspect_candidates.json").read_text())
  assert saved["reviews"] > 0 and saved["terms"] > 0
  table = ac.pd.read_parquet(tiny_run / "artifacts" / "aspect_candidates.parquet")
  assert len(table) >= 1 and table["share"].between(0, 1).all()
  if saved["yaml"]:
    assert "<pre>segment:" in page
    spec = yaml.safe_load(saved["yaml"])
    for aspect in spec["segment"]["aspects"].values():  # what the analyst fills in, if anything
      for kind in ("positive", "negative"):
        if not aspect[kind]:
          assert f"{kind}: []  {ac.MISSING_EXAMPLE}" in saved["yaml"]
          aspect[kind] = ["an example the analyst wrote"]
    config.params_from_dict({"dataset": "x", "data": {"adapter": "synthetic"}, **spec})


def test_candidate_clause_cap_is_validated():
  with pytest.raises(config.ParamsError, match="segment.aspect_candidate_clauses must be >= 0"):
    config.params_from_dict({"dataset": "x", "data": {"adapter": "synthetic"},
                             "segment": {"aspect_candidate_clauses": -1}})
  assert config.params_from_dict({"dataset": "x", "data": {"adapter": "synthetic"}}
                                 ).segment.aspect_candidate_clauses == 4000


def test_stage_step_caps_the_clauses_by_whole_reviews(monkeypatch):
  from cvlib.insight import aspect_model as am
  clauses, owner, stars = _shop()
  vectors = toy_embed(clauses)
  keyword = np.array([[any(w in c.split() for w in PLANTED["screen"])] for c in clauses])
  table = am.ClauseTable(clauses, owner, keyword, np.ones((len(clauses), 1), np.float32),
                         np.zeros((len(clauses), 1), np.float32), vectors)
  head = am.PolarityHead(np.r_[8.0, np.zeros(DIM - 1)], 0.0, {})
  spec = am.AspectSpec("display", ("the screen",), ("screen", "display"), ("great screen",),
                       ("bad screen",))
  model = am.AspectModel("en", (spec,), {"display": 0.5}, {"display": 1.01}, head)
  opinions = segment.Opinions(None, None, None, None, model, np.ones(240, dtype=bool), table,
                              stars)
  monkeypatch.setattr(am, "minilm_embed", toy_embed)
  full = segment.make_aspect_candidates(opinions, language="en", max_clauses=4000, seed=0)
  assert full.n_reviews == 240 and full.n_clauses == 480
  screen = next(c for c, keys in full.keys.items() if "screen" in keys)
  assert dict(zip(full.table["candidate"], full.table["covered_by"]))[screen] == "display"
  capped = segment.make_aspect_candidates(opinions, language="en", max_clauses=101, seed=0)
  assert capped.n_clauses == 100 and capped.n_reviews == 50  # two clauses per review
  assert segment.make_aspect_candidates(opinions, language="en", max_clauses=0) is None
  assert segment.make_aspect_candidates(opinions, language="zh") is None

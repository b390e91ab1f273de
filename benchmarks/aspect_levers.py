"""Levers for issue 20's unmet aspect targets, measured on the tuning part and then held out.

Each lever is a change to :mod:`cvlib.insight.aspect_model` that could raise polarity accuracy,
negatives recognised or tag precision. A lever is measured the way it would be adopted:

- **tune (cross-validated).** Whatever the lever fits on labelled cells (the polarity mix, tag
  thresholds) is fitted on 4/5 of the tuning part's reviews and scored on the fifth, five folds
  drawn by review, repeated with ``REPEATS`` seeds (mean and spread reported).
- **held-out.** Fitted on the whole tuning part, scored on the held-out part (per domain). The
  held-out texts are only scored, never read to design a lever.

Polarity levers (tags as shipped; polarity accuracy on pos/neg cells both tag, and the share of
negative cells called negative, untagged ones counted as missed):

- ``head_logistic``: the shipped method (logistic head on the clause embedding, its logit mixed
  with the example-opinion similarity).
- ``mix_vader``: VADER's compound score of the clause (English; 0 in Portuguese) as a third input
  of the mix.
- ``mix_negation``: the head logit of clauses with a negation word as a third input (the mix can
  then trust the head less where the pooled embedding loses the negation's scope).
- ``head_contrast_filter``: the head's training clauses right after a contrast word in a 4-5 star
  review ("..., but it's worth the price") kept as negatives only when a first head trained
  without them does not call them positive.
- ``head_mlp_seed{0,1,2}``: a one-hidden-layer network (64 ReLU units, L2 0.1, early stopping)
  instead of the logistic head, three seeds.
- ``complaint_{t}``: the cell rule's complaint threshold (``COMPLAINT_LOGIT``, 1.5) at t.

Tagging levers (polarity as shipped; micro precision/recall per domain):

- ``tags_f1``: thresholds calibrated by domain-weighted F1 (shipped).
- ``tags_fbeta_{b}``: the same grid maximising F-beta (precision weighs more).
- ``tags_margin_{m}``: a keyword tag also needs the clause's similarity to the aspect to exceed
  its similarity to every other aspect by m (the encoder says the keyword is used in this sense).

Also counted: how many tagged clauses tag two aspects or more (the room for aspect-conditioned
sub-spans) and, of the negative cells missed on the tuning part, how many were not tagged.

Writes ``benchmarks/results/aspect_levers.json``. Usage::

  python benchmarks/aspect_levers.py [--embed-cache /tmp/emb.npz]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import aspects_labelled as bl  # noqa: E402  pylint: disable=wrong-import-position
from cvlib.insight import aspect_model as am  # noqa: E402  pylint: disable=wrong-import-position
from cvlib.insight import aspects as lexicon  # noqa: E402  pylint: disable=wrong-import-position

RESULTS = HERE / "results" / "aspect_levers.json"
FOLDS, REPEATS = 5, 10
SHOPS = {"en": "womens", "pt": "olist"}  # whose rated reviews train each language's head
NEGATION = re.compile(r"\b(not|no|never|nor|cannot|without|nao|nem|nunca|sem)\b|n't\b")
COMPLAINTS = (0.0, 0.5, 1.0, 1.5, 2.0)
BETAS = (0.75, 0.5)
MARGINS = (-0.05, 0.0, 0.05)


class MLPHead:
  """A one-hidden-layer polarity head (sklearn), with the PolarityHead ``proba`` interface."""

  def __init__(self, vectors: np.ndarray, labels: np.ndarray, seed: int):
    from sklearn.neural_network import MLPClassifier  # pylint: disable=import-outside-toplevel
    self.clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=0.1, max_iter=300,
                             early_stopping=True, random_state=seed).fit(vectors, labels)

  def proba(self, vectors: np.ndarray) -> np.ndarray:
    return self.clf.predict_proba(np.asarray(vectors, dtype=np.float64))[:, 1]


def cell_rule(z: np.ndarray, complaint: float = am.COMPLAINT_LOGIT) -> int:
  """:func:`cvlib.insight.aspect_model.cell_polarity` on mixed logits, complaint threshold free."""
  return am.polarity_from_logits(z, complaint)


def contrast_clauses(texts: list, ratings: np.ndarray) -> set[str]:
  """Clauses right after a contrast word in the shop's 4-5 star reviews."""
  out = set()
  for text, stars in zip(texts, ratings):
    if isinstance(text, str) and stars >= 4:
      for sentence in re.split(r"[.!?;\n]+", text.replace("<br />", "\n")):
        out.update(c for c, after in lexicon.split_contrast(sentence) if after)
  return out


def heads(language: str, labels: pd.DataFrame, embed: Callable) -> dict[str, Any]:
  """The polarity heads compared, all trained on the language's shop (labelled rows left out)."""
  texts, ratings, titles = bl.shop_reviews(SHOPS[language], labels)
  matcher = am.KeywordMatcher(am.SPECS[language], am.vocabulary_words())
  train, y = am.polarity_training_set(texts, ratings, titles=titles, matcher=matcher)
  x = np.asarray(embed(train), dtype=np.float64)
  out = {"head_logistic": am.fit_polarity_head(x, y, trained_on={})}
  after = contrast_clauses(texts, ratings)
  k = np.array([t in after for t in train]) & (y == 0)
  first = am.fit_polarity_head(x[~k], y[~k], trained_on={})
  keep = ~k | (first.proba(x) <= 0.5)
  out["head_contrast_filter"] = am.fit_polarity_head(x[keep], y[keep], trained_on={})
  for seed in range(3):
    out[f"head_mlp_seed{seed}"] = MLPHead(x, y, seed)
  return out


class Part:
  """One language's rows of one split, split into clauses and embedded once."""

  def __init__(self, rows: pd.DataFrame, language: str, embed: Callable):
    self.rows = rows.reset_index(drop=True)
    self.specs = am.SPECS[language]
    self.names = [s.name for s in self.specs]
    self.table = am.clause_table(self.rows["text"].tolist(), self.specs, embed,
                                 am.KeywordMatcher(self.specs, am.vocabulary_words()))
    self.truth = self.rows[self.names].to_numpy().astype(bool)
    self.polarity = self.rows[[f"{n}_polarity" for n in self.names]].to_numpy()
    self.source = self.rows["source"].to_numpy()
    clauses = self.table.clauses
    self.vader = (lexicon.vader_sentiment(clauses) if language == "en"
                  else np.zeros(len(clauses)))
    self.negated = np.array([bool(NEGATION.search(am.fold(c))) for c in clauses])
    sim = self.table.similarity
    # each clause's highest similarity to any other aspect (the margin gate)
    self.other = np.stack([np.delete(sim, a, axis=1).max(axis=1) for a in range(sim.shape[1])],
                          1)

  def hits(self, floor: dict, alone: dict, margin: float | None = None) -> np.ndarray:
    """[n_clauses, n_aspects] tags: the shipped rule, optionally with the margin gate."""
    return np.stack([self.hit_one(a, floor[n], alone[n], margin)
                     for a, n in enumerate(self.names)], 1)

  def hit_one(self, a: int, floor: float, alone: float, margin: float | None) -> np.ndarray:
    t = self.table
    sim = t.similarity[:, a]
    hit = am.tag_rule(t.keyword[:, a], sim, t.short, floor, alone)  # clause_hits' rule
    if margin is not None:
      hit &= (sim >= alone) | (sim - self.other[:, a] >= margin)
    return hit

  def cells(self, hits: np.ndarray, head: Any, extra: str | None) -> dict:
    """(review, aspect) -> [n_clauses, k] mix inputs: head logit, example similarity[, extra]."""
    feats = am.cell_features(self.table, hits, head)
    out = {}
    for (i, a), f in feats.items():
      js = np.flatnonzero((self.table.owner == i) & hits[:, a])
      cols = [f[:, 0], f[:, 1]]
      if extra == "vader":
        cols.append(self.vader[js])
      elif extra == "negation":
        cols.append(f[:, 0] * self.negated[js])
      out[(i, a)] = np.stack(cols, 1)
    return out

  def polarity_scores(self, pred: dict, hits_any: np.ndarray | None = None) -> dict:
    """Per domain: accuracy on pos/neg cells both tag, negatives recognised, counts."""
    out = {}
    for source in sorted(set(self.source)):
      keys = [k for k in pred if self.source[k[0]] == source]
      lab = np.array([self.polarity[k] for k in keys])
      sign = np.array([pred[k] for k in keys])
      clear = np.isin(lab, ["pos", "neg"])
      negs = (self.polarity[self.source == source] == "neg").sum()
      out[source] = {"polarity": _r(((sign[clear] == 1) == (lab[clear] == "pos")).mean()),
                     "negatives": _r(((lab == "neg") & (sign == -1)).sum() / max(negs, 1)),
                     "n_cells": int(clear.sum()), "n_negative": int(negs)}
    return out

  def tag_scores(self, hits: np.ndarray) -> dict:
    pred = np.zeros_like(self.truth)
    for j in np.flatnonzero(hits.any(axis=1)):
      pred[self.table.owner[j]] |= hits[j]
    out = {}
    for source in sorted(set(self.source)):
      m = self.source == source
      tp = (pred[m] & self.truth[m]).sum()
      out[source] = {"precision": _r(tp / max(pred[m].sum(), 1)),
                     "recall": _r(tp / max(self.truth[m].sum(), 1))}
    return out


def _r(x: float) -> float:
  return round(float(x), 4)


def fit_mix(cells: dict, part: Part, keys: list) -> np.ndarray:
  """Class-balanced logistic regression of the cells' mean inputs (as calibrate_mix)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  keys = [k for k in keys if part.polarity[k] in ("pos", "neg")]
  x = np.stack([cells[k].mean(axis=0) for k in keys])
  y = np.array([part.polarity[k] == "pos" for k in keys])
  clf = LogisticRegression(C=100.0, class_weight="balanced", max_iter=1000).fit(x, y)
  return np.r_[clf.coef_[0], clf.intercept_[0]]


def _apply(cells: dict, keys: list, w: np.ndarray, complaint: float) -> dict:
  return {k: cell_rule(cells[k] @ w[:-1] + w[-1], complaint) for k in keys}


def _folds(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, FOLDS, n)


def _mean_spread(runs: list[dict]) -> dict:
  """Per domain and metric: mean and standard deviation over the repeats."""
  out = {}
  for source in runs[0]:
    out[source] = {m: {"mean": _r(np.mean([r[source][m] for r in runs])),
                       "sd": _r(np.std([r[source][m] for r in runs]))}
                   for m in runs[0][source] if m not in ("n_cells", "n_negative")}
  return out


def polarity_lever(tune: Part, held: Part, model: am.AspectModel, head: Any,
                   extra: str | None = None, complaint: float = am.COMPLAINT_LOGIT) -> dict:
  hits_t = tune.hits(model.floor, model.alone)
  hits_h = held.hits(model.floor, model.alone)
  cells_t, cells_h = tune.cells(hits_t, head, extra), held.cells(hits_h, head, extra)
  keys = sorted(cells_t)
  runs = []
  for seed in range(REPEATS):
    fold = _folds(len(tune.rows), seed)
    pred = {}
    for f in range(FOLDS):
      w = fit_mix(cells_t, tune, [k for k in keys if fold[k[0]] != f])
      pred |= _apply(cells_t, [k for k in keys if fold[k[0]] == f], w, complaint)
    runs.append(tune.polarity_scores(pred))
  w = fit_mix(cells_t, tune, keys)
  return {"tune_cv": _mean_spread(runs),
          "heldout": held.polarity_scores(_apply(cells_h, sorted(cells_h), w, complaint))}


def calibrate(part: Part, keep: np.ndarray, beta: float, margin: float | None
              ) -> tuple[dict, dict]:
  """calibrate_thresholds' grid and tie rule on the reviews ``keep``, maximising F-beta."""
  n = len(part.rows)
  _, inverse, counts = np.unique(part.source[keep], return_inverse=True, return_counts=True)
  weight = np.zeros(n)
  weight[keep] = 1.0 / counts[inverse]
  floors = np.r_[-1.0, np.round(np.arange(0.05, 0.6001, 0.025), 3)]
  alones = np.r_[np.round(np.arange(0.3, 0.8001, 0.025), 3), 1.01]
  b2 = beta * beta
  floor, alone = {}, {}
  for a, name in enumerate(part.names):
    y = part.truth[:, a]
    best = None
    for fl in floors:
      for al in alones:
        hit = part.hit_one(a, fl, al, margin)
        pred = np.zeros(n, dtype=bool)
        np.logical_or.at(pred, part.table.owner[hit], True)
        tp = weight[pred & y].sum()
        score = (1 + b2) * tp / max(weight[pred].sum() + b2 * weight[y].sum(), 1e-12)
        key = (round(score, 9), al, -fl)
        if best is None or key > best[0]:
          best = (key, float(fl), float(al))
    floor[name], alone[name] = best[1], best[2]
  return floor, alone


def tag_lever(tune: Part, held: Part, beta: float = 1.0, margin: float | None = None) -> dict:
  runs = []
  for seed in range(3):  # the grid search is slow; three repeats
    fold = _folds(len(tune.rows), seed)
    hits = np.zeros_like(tune.table.keyword)
    for f in range(FOLDS):
      floor, alone = calibrate(tune, fold != f, beta, margin)
      test = fold[tune.table.owner] == f
      hits[test] = tune.hits(floor, alone, margin)[test]
    runs.append(tune.tag_scores(hits))
  floor, alone = calibrate(tune, np.ones(len(tune.rows), dtype=bool), beta, margin)
  return {"tune_cv": _mean_spread(runs), "heldout": held.tag_scores(held.hits(floor, alone,
                                                                               margin))}


def structure(tune: Part, model: am.AspectModel) -> dict:
  """Multi-aspect clauses, and whether the tuning part's missed negatives were tagged at all."""
  hits = tune.hits(model.floor, model.alone)
  cells = tune.cells(hits, model.head, None)
  mix = np.array([model.mix["head"], model.mix["examples"], model.mix["bias"]])
  missed = {"untagged": 0, "called_positive_or_mixed": 0, "called_negative": 0}
  for i, a in zip(*np.nonzero(tune.polarity == "neg")):
    if (i, a) not in cells:
      missed["untagged"] += 1
    elif cell_rule(cells[(i, a)] @ mix[:-1] + mix[-1]) == -1:
      missed["called_negative"] += 1
    else:
      missed["called_positive_or_mixed"] += 1
  return {"tagged_clauses": int(hits.any(axis=1).sum()),
          "clauses_tagging_two_or_more": int((hits.sum(axis=1) >= 2).sum()),
          "negative_cells_tune": missed}


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
  parser.add_argument("--out", type=Path, default=RESULTS)
  parser.add_argument("--embed-cache", type=Path, default=None,
                      help="cache MiniLM embeddings in this .npz (reruns)")
  args = parser.parse_args(argv)
  t0 = time.perf_counter()
  embed = bl.cached(bl._minilm_embed, args.embed_cache) if args.embed_cache else bl._minilm_embed  # pylint: disable=protected-access
  labels = bl.attach_texts(bl.load_labels())
  out: dict[str, Any] = {"settings": {
      "labels": "cvlib/insight/aspects_labelled.csv", "folds": FOLDS, "repeats": REPEATS,
      "tags": "shipped thresholds (aspect_calibration.json) for the polarity levers",
      "python": platform.python_version()}, "languages": {}}
  for language in ("en", "pt"):
    rows = labels[labels["language"] == language]
    tune = Part(rows[rows["split"] == "tune"], language, embed)
    held = Part(rows[rows["split"] == "heldout"], language, embed)
    model = am.default_model("en") if language == "en" else am.AspectModel(
        "pt", am.SPECS["pt"], am.calibration("pt")["floor"], am.calibration("pt")["alone"],
        None, am.calibration("pt")["mix"])
    hs = heads(language, labels, embed)
    model.head = hs["head_logistic"]
    res: dict[str, Any] = {"structure": structure(tune, model), "polarity": {}, "tags": {}}
    for name, head in hs.items():
      res["polarity"][name] = polarity_lever(tune, held, model, head)
      print(language, name, json.dumps(res["polarity"][name]["heldout"]), flush=True)
    for extra in ("vader", "negation"):
      res["polarity"][f"mix_{extra}"] = polarity_lever(tune, held, model, hs["head_logistic"],
                                                       extra)
    for t in COMPLAINTS:
      res["polarity"][f"complaint_{t}"] = polarity_lever(tune, held, model, hs["head_logistic"],
                                                         complaint=t)
    res["tags"]["tags_f1"] = tag_lever(tune, held)
    for b in BETAS:
      res["tags"][f"tags_fbeta_{b}"] = tag_lever(tune, held, beta=b)
    for m in MARGINS:
      res["tags"][f"tags_margin_{m}"] = tag_lever(tune, held, margin=m)
    out["languages"][language] = res
  out["seconds"] = round(time.perf_counter() - t0, 1)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(out, indent=2) + "\n")
  print(f"wrote {args.out}")
  return out


if __name__ == "__main__":
  main()

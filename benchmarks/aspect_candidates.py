"""Candidate aspects against hand labels: do the proposals recover the labelled aspects, and what
new ones do they propose per domain?

For each domain of ``cvlib/insight/aspects_labelled.csv`` (clothing, beauty, electronics, Olist in
Portuguese, the synthetic shop, home and garden tools, toys and sports, pet and household
supplies, automotive and industrial) cvlib's proposal
(:func:`cvlib.insight.aspect_candidates.propose_aspects`, what the report shows) reads a seeded
sample of that domain's reviews (at most ``CORPUS`` reviews; the Amazon domains have only a few
hundred in the file), with the language's default aspects for coverage and the polarity head of the
report (English: the shipped head; Portuguese: the head a run learns from Olist's rated reviews).
The proposal never sees a label.

Then, on the labelled reviews of the domain, each candidate "mentions" a review when the review uses
one of its terms, and for each labelled aspect with at least ``MIN_SUPPORT`` labelled reviews in
the part, candidates and aspects are matched one to one by F1 (the best pair first); the aspect is
recovered when its match's F1 is at least ``RECOVERED_F1``. ``--grid`` scores settings of the
proposal (cut distance, weight of the clause context, opinion band) on the tuning part only and
writes them beside the result, with the frequent words each setting drops as opinions (and which
of them are keywords of the default aspects); the held-out part is reported, never used to
choose.

Usage::

  python benchmarks/aspect_candidates.py            # write benchmarks/results/aspect_candidates.json
  python benchmarks/aspect_candidates.py --grid     # also score the settings grid on the tune part
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere
sys.path.insert(0, str(HERE))

import aspects_labelled as al  # noqa: E402  pylint: disable=wrong-import-position

from cvlib.insight import aspect_candidates as ac  # noqa: E402  pylint: disable=wrong-import-position
from cvlib.insight import aspect_model as am  # noqa: E402  pylint: disable=wrong-import-position

RESULTS = HERE / "results" / "aspect_candidates.json"
CORPUS = 1500  # reviews per domain the proposal reads (the report's default aspect_max_reviews)
MIN_SUPPORT = 3  # labelled aspects with fewer labelled reviews in a part are not scored
RECOVERED_F1 = 0.5  # a labelled aspect is recovered when its best candidate reaches this F1
SEED = 0
DOMAINS = {  # domain -> (labels' source, language, name in the docs)
    "womens": ("womens", "en", "clothing (Women's E-Commerce, en)"),
    "amazon_beauty": ("amazon_beauty", "en", "beauty (Amazon, en)"),
    "amazon_electronics": ("amazon_electronics", "en",
                           "electronics and phone accessories (Amazon, en)"),
    "amazon_home": ("amazon_home", "en", "home and garden tools (Amazon, en)"),
    "amazon_toys_sports": ("amazon_toys_sports", "en", "toys and sports (Amazon, en)"),
    "amazon_pets": ("amazon_pets", "en", "pet and household supplies (Amazon, en)"),
    "amazon_auto": ("amazon_auto", "en", "automotive and industrial (Amazon, en)"),
    "olist": ("olist", "pt", "marketplace (Olist, pt)"),
    "synthetic": ("synthetic", "en", "synthetic demo shop (en)"),
}
GRID = {"distance": (0.45, 0.5), "context": (0.0, 0.5, 1.0),
        "opinion_band": ((0.0, 1.01), (0.03, 0.97), (0.1, 0.9), (0.2, 0.8))}


def corpus(source: str) -> tuple[list[str], np.ndarray]:
  """A seeded sample of at most CORPUS review texts of the domain and their stars."""
  if source == "synthetic":
    from cvlib.data import synthetic  # pylint: disable=import-outside-toplevel
    reviews = synthetic.make_demo_data(**al.SYNTHETIC_ARGS)["reviews"]
    reviews = reviews[reviews["text"].notna() & (reviews["text"].astype(str).str.strip() != "")]
    texts, stars = reviews["text"].astype(str), reviews["rating"].astype(float)
  else:
    texts = al.read_texts(source)
    stars = al.read_ratings(source).reindex(texts.index)
  rows = np.arange(len(texts))
  if len(rows) > CORPUS:
    rows = np.sort(np.random.default_rng(SEED).choice(rows, CORPUS, replace=False))
  return texts.iloc[rows].tolist(), stars.iloc[rows].to_numpy(dtype=float)


def polarity_model(language: str) -> am.AspectModel:
  """The aspect model the report would use: English defaults, or Olist's own head (its rated
  reviews minus the labelled rows, as benchmarks/aspects_labelled.py does)."""
  if language == "en":
    return am.default_model("en")
  frame = al.read_file("olist")
  labelled = set(al.load_labels().query("source == 'olist'")["row_id"].astype(int))
  frame = frame[~frame.index.isin(labelled)]
  return am.fit_shop_model("pt", frame["review_comment_message"].tolist(),
                           frame["review_score"].to_numpy(dtype=float),
                           titles=frame["review_comment_title"].tolist(), seed=SEED)


def prepare(domain: str) -> dict[str, Any]:
  """Clauses, their embeddings and tags, the polarity head: what the report has at hand."""
  source, language, _ = DOMAINS[domain]
  texts, stars = corpus(source)
  model = polarity_model(language)
  specs = am.SPECS[language]
  matcher = am.KeywordMatcher(specs, am.vocabulary_words())
  start = time.perf_counter()
  table = am.clause_table(texts, specs, am.minilm_embed, matcher)
  embed_s = time.perf_counter() - start
  cal = am.calibration(language)
  hits = am.clause_hits(table, [s.name for s in specs], cal["floor"], cal["alone"])
  return {"texts": texts, "stars": stars, "model": model, "table": table, "hits": hits,
          "names": [s.name for s in specs], "language": language, "embed_s": embed_s}


def propose(prep: dict[str, Any], **settings) -> tuple[ac.Candidates, float]:
  table = prep["table"]
  start = time.perf_counter()
  cands = ac.propose_aspects(table.clauses, table.owner, table.vectors,
                             n_reviews=len(prep["texts"]), language=prep["language"],
                             embed_fn=am.minilm_embed, tagged=prep["hits"],
                             aspect_names=prep["names"], proba=prep["model"].head.proba,
                             ratings=prep["stars"], **settings)
  return cands, time.perf_counter() - start


def recovery(cands: ac.Candidates, labels: pd.DataFrame) -> dict[str, Any]:
  """Per labelled aspect of enough support: its matching candidate and their F1.

  Matching is one to one (greedy, highest F1 first): a candidate that is the best match of two
  aspects recovers only one, so a broad group ("works") cannot count for quality and price.
  """
  mentions = cands.mentions(labels["text"].tolist())
  pairs, support = [], {}
  for aspect in al.ASPECTS:
    truth = labels[aspect].to_numpy(dtype=bool)
    if truth.sum() < MIN_SUPPORT:
      continue
    support[aspect] = int(truth.sum())
    for name in mentions.columns:
      pred = mentions[name].to_numpy()
      tp = int((pred & truth).sum())
      f1 = 2 * tp / (int(pred.sum()) + int(truth.sum()))
      if tp:
        pairs.append((f1, aspect, name, tp / int(pred.sum()), tp / int(truth.sum())))
  out: dict[str, Any] = {}
  used: set[str] = set()
  for f1, aspect, name, precision, recall in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
    if aspect in out or name in used:
      continue
    used.add(name)
    out[aspect] = {"support": support[aspect], "candidate": name, "f1": f1,
                   "precision": precision, "recall": recall, "recovered": f1 >= RECOVERED_F1}
  for aspect in support:
    out.setdefault(aspect, {"support": support[aspect], "candidate": None, "f1": 0.0,
                            "precision": float("nan"), "recall": 0.0, "recovered": False})
  return {a: out[a] for a in support}


def default_keywords(language: str) -> set[str]:
  """Stems of the words of the language's default aspects' keywords: known opinion targets."""
  return {ac.lexicon.stem(w) for s in am.SPECS[language] for k in s.keywords
          for w in am.fold(k).split()}


def _summary(rec: dict[str, Any]) -> dict[str, Any]:
  scored = list(rec.values())
  return {"aspects_scored": len(scored), "recovered": sum(r["recovered"] for r in scored),
          "mean_best_f1": float(np.mean([r["f1"] for r in scored])) if scored else float("nan")}


def _labelled(domain: str) -> pd.DataFrame:
  labels = al.attach_texts(al.load_labels())
  return labels[labels["source"] == DOMAINS[domain][0]].reset_index(drop=True)


def run(grid: bool) -> dict[str, Any]:
  out: dict[str, Any] = {"domains": {}, "grid": {}}
  for domain in DOMAINS:
    prep = prepare(domain)
    labels = _labelled(domain)
    parts = {split: labels[labels["split"] == split] for split in al.SPLITS
             if (labels["split"] == split).any()}  # home and garden tools: held out only
    if grid:
      for d in GRID["distance"]:
        for c in GRID["context"]:
          for band in GRID["opinion_band"]:
            cands, _ = propose(prep, distance=d, context=c, opinion_band=band)
            key = f"distance={d},context={c},opinion_band={band[0]}-{band[1]}"
            known = default_keywords(prep["language"])
            out["grid"].setdefault(key, {})[domain] = {
                **_summary(recovery(cands, parts.get("tune", labels.iloc[:0]))), "opinion_terms": cands.opinion_terms,
                "opinion_terms_default_keywords": [
                    w for w in cands.opinion_terms if ac.lexicon.stem(w) in known]}
    cands, seconds = propose(prep)
    out["domains"][domain] = {
        "name": DOMAINS[domain][2], "language": prep["language"],
        "reviews": cands.n_reviews, "clauses": cands.n_clauses, "terms": cands.n_terms,
        "clause_embedding_s": round(prep["embed_s"], 2), "proposal_s": round(seconds, 2),
        "candidates": cands.table.to_dict(orient="records"),
        "opinion_terms": cands.opinion_terms,
        "yaml": cands.yaml,
        "recovery": {split: {"n_reviews": len(part), **_summary(rec := recovery(cands, part)),
                             "aspects": rec} for split, part in parts.items()},
    }
    print(domain, json.dumps({s: {k: v for k, v in r.items() if k != "aspects"}
                              for s, r in out["domains"][domain]["recovery"].items()}),
          flush=True)
  if grid:
    for key, per in out["grid"].items():
      per["mean_best_f1"] = float(np.nanmean([v["mean_best_f1"] for v in per.values()]))
      print(key, round(per["mean_best_f1"], 3))
  else:
    del out["grid"]
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--grid", action="store_true", help="also score the settings grid (tune)")
  parser.add_argument("--out", type=Path, default=RESULTS)
  args = parser.parse_args(argv)
  result = run(args.grid)
  defaults = {k: ac.propose_aspects.__kwdefaults__[k] for k in (
      "min_share", "max_terms", "context", "opinion_band", "distance", "min_group_share",
      "max_candidates")}
  result = {"benchmark": "aspect_candidates", "settings": defaults,
            "corpus_reviews": CORPUS, "min_support": MIN_SUPPORT, "recovered_f1": RECOVERED_F1,
            "machine": {"python": platform.python_version(), "processor": platform.machine()},
            **result}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2, allow_nan=True, default=float) + "\n")
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

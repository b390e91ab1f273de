"""Candidate aspects for a shop, proposed from its own reviews: what its customers talk about,
grouped and named, for an analyst to copy into ``segment.aspects``.

The report's six default aspects (delivery, quality, price, size_fit, service, packaging) fit a
clothing or general shop; a shop of cosmetics or appliances has its own ("scent", "battery"). The
proposal works from what the aspect model already computed for tagging, so nothing is embedded
twice except the terms themselves:

1. **Opinion targets.** Each clause is cut into content words: lower-cased, accents dropped, stop
   words (:data:`cvlib.insight.topics.ENGLISH_STOP`, ``PORTUGUESE_STOP``) and :data:`GENERIC`
   review words ("love", "great", "bought", "recomendo") removed, inflections merged by the light
   stemmer. Terms are these words and collocations of two adjacent ones ("customer service",
   "prazo entrega") used in at least ``COLLOCATION_SHARE`` of the reviews of their rarer word. A
   term is frequent when at least ``min_share`` of the reviews (and ``MIN_REVIEWS``) use it.
   With a polarity model, terms that are themselves opinions (P(positive) of the term alone
   outside ``OPINION_BAND``: "versatile", "annoying") are dropped too: they say how, not what.
2. **Embedding.** A term's vector is the encoder's embedding of the term alone plus ``context``
   times the mean embedding of the clauses that use it (normalised), so that "fabric" and
   "material" meet because they mean the same and are said in the same kind of clause.
3. **Groups.** Average-linkage agglomerative clustering on cosine distance, cut at ``distance``
   (no randomness: the same reviews give the same groups). Groups that fewer than
   ``min_group_share`` of the reviews mention are dropped; the ``max_candidates`` most mentioned
   are kept.
4. **Names.** A group is named by its most used term; its words are listed most used first; its
   example is the clause nearest the mean of the clauses that mention it.
5. **Coverage.** A group is covered by a configured aspect when at least ``COVERED_SHARE`` of the
   clauses that mention it are tagged with that aspect by the aspect model; uncovered groups go
   into a YAML snippet in the ``segment.aspects`` format: descriptions are the group's most
   typical clauses, keywords its terms, positive and negative examples its clauses from 4-5 and
   1-2 star reviews the polarity model agrees with (none is invented: when there is none the
   snippet says so, and the params check will ask for one).
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import yaml

from cvlib.insight import aspects as lexicon
from cvlib.insight import topics
from cvlib.insight.aspect_model import EmbedFn, fold, split_reviews

ProbaFn = Callable[[np.ndarray], np.ndarray]  # clause embeddings [n, dim] -> P(positive) [n]

# Words every shop's reviews use that are not what an opinion is about: opinion adjectives,
# verbs of buying and wearing, hedges. Folded (no accents). Other shops' opinion words are caught
# by the polarity model (OPINION_BAND).
GENERIC = {
    "en": frozenset("""
    love loved loves like liked likes great good nice perfect perfectly beautiful pretty cute
    lovely gorgeous amazing awesome excellent fantastic wonderful best better worse worst bad
    terrible horrible awful poor happy glad pleased disappointed disappointing disappoint
    unfortunately definitely absolutely totally really super pretty quite bit little lot lots
    just maybe probably usually normally actually especially overall highly ok okay fine well
    bought buy buying purchased purchase purchasing ordered order ordering got get getting
    received receive tried try trying wear wearing wore worn use used using want wanted wanting
    think thought know knew say said saw see look looks looked looking feel feels felt make made
    makes need needed wish going went come came way thing things time times day days one ones
    item items product products recommend recommended review reviews reviewer reviewers star
    stars thank thanks lol wow yes sure far else anyway though even still also much many
    lbs usual regular different right left new old""".split()),
    "pt": frozenset("""
    produto produtos bom boa bons boas otimo otima otimos otimas excelente excelentes perfeito
    perfeita lindo linda lindos lindas maravilhoso maravilhosa gostei gosto adorei amei recomendo
    recomendado satisfeito satisfeita satisfeitos feliz ruim pessimo pessima horrivel
    decepcionado decepcionada legal top show parabens obrigado obrigada grato grata bem mal
    comprei compra comprar compras comprado comprada pedido pedidos pedi recebi receber recebido
    recebida veio vem vieram chegou chegaram dia dias hoje ate tudo certo certinho nota
    super muito pouco acho achei ficou fiquei estou gostaria espero esperava quero queria
    fazer feito fez ter tinha sendo sido vezes coisa coisas ainda sim""".split()),
}
# Negations and "too" stay in clauses (topics.BIGRAM_ONLY) but are never terms.
_NEVER = topics.BIGRAM_ONLY | {"don", "didn", "doesn", "isn", "wasn", "won", "can", "couldn"}
_WORD = re.compile(r"[a-z]+")
MIN_WORD_LEN = 3
MIN_REVIEWS = 3  # a term used by fewer reviews is never frequent
COLLOCATION_SHARE = 0.3  # a word pair is a term when this share of its rarer word's reviews use it
# Terms whose own P(positive) lies outside are opinions, not targets. A band as wide as (0.2, 0.8)
# also drops targets the stars lean on ("fabric", "price", "prazo", "defeito"): see
# docs/benchmarks.md, "Candidate aspects proposed from a shop's reviews".
OPINION_BAND = (0.03, 0.97)
COVERED_SHARE = 0.5  # share of a group's clauses tagged with an aspect for it to cover the group
EXAMPLE_WORDS = (3, 25)  # example and description clauses have this many words
EXAMPLE_PROBA = 0.7  # a positive example needs P(positive) >= this (a negative <= 1 - this)
# The YAML's comment on an example list left empty (the params check asks for one).
MISSING_EXAMPLE = "# none of the reviews gave one: write one before use"
NONE = "none"


@dataclasses.dataclass
class Candidates:
  """Proposed aspects of one shop."""
  table: pd.DataFrame  # one row per group, most mentioned first (see propose_aspects)
  yaml: str  # the uncovered groups as a segment.aspects snippet ("" when every group is covered)
  n_reviews: int  # reviews the proposal read
  n_clauses: int  # their clauses
  n_terms: int  # frequent terms grouped
  # candidate -> its terms' keys (stemmed words and word pairs), for :meth:`mentions`
  keys: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  language: str = "en"
  # frequent terms dropped as opinions (their own P(positive) outside the opinion band)
  opinion_terms: list[str] = dataclasses.field(default_factory=list)

  def mentions(self, texts: Sequence[str | None]) -> pd.DataFrame:
    """Bool [n_texts, n_candidates]: the text uses one of the candidate's terms."""
    found = [_keys_of(t, self.language) if isinstance(t, str) else set() for t in texts]
    return pd.DataFrame({name: [bool(f & set(k)) for f in found] for name, k in self.keys.items()},
                        index=range(len(found)), columns=list(self.keys), dtype=bool)


def content_words(clause: str, language: str) -> list[str]:
  """The clause's content words, in order: folded, without stop and generic words."""
  stop = _STOP[language]
  return [w for w in _WORD.findall(fold(clause)) if len(w) >= MIN_WORD_LEN and w not in stop]


def _stop_words() -> dict[str, frozenset[str]]:
  base = {"en": topics.ENGLISH_STOP, "pt": topics.PORTUGUESE_STOP}
  return {lang: frozenset(fold(w) for w in base[lang]) | GENERIC[lang] | _NEVER for lang in base}


_STOP = _stop_words()
LANGUAGES = tuple(_STOP)


def _clause_keys(clause: str, language: str) -> tuple[list[str], list[str]]:
  """(keys, written forms) of a clause's terms: stemmed content words, then adjacent pairs."""
  words = content_words(clause, language)
  keys = [lexicon.stem(w) for w in words]
  pairs = [(f"{k1} {k2}", f"{w1} {w2}") for k1, w1, k2, w2 in zip(keys, words, keys[1:], words[1:])
           if k1 != k2]
  return keys + [k for k, _ in pairs], words + [w for _, w in pairs]


def _keys_of(text: str, language: str) -> set[str]:
  return {k for c in split_reviews([text])[0] for k in _clause_keys(c, language)[0]}


@dataclasses.dataclass
class _Terms:
  """Frequent terms and where they occur."""
  keys: list[str]  # stemmed form ("fabric", "customer servic")
  surface: list[str]  # most used written form ("fabric", "customer service")
  reviews: list[np.ndarray]  # review positions using each term
  clauses: list[np.ndarray]  # clause positions using each term


def find_terms(clauses: Sequence[str], owner: np.ndarray, language: str, *, n_reviews: int,
               min_share: float, max_terms: int) -> _Terms:
  """Frequent content words and collocations of the clauses (step 1 without the opinion filter).

  Args:
    clauses: clause texts.
    owner: [n_clauses] review position of each clause.
    language: "en" or "pt".
    n_reviews: reviews the clauses come from (the base of shares).
    min_share: least share of reviews using a term.
    max_terms: most terms returned (the most used).

  Returns:
    The terms, most used first.
  """
  where: dict[str, list[int]] = collections.defaultdict(list)  # key -> clause positions
  forms: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for j, clause in enumerate(clauses):
    keys, written = _clause_keys(clause, language)
    for k, w in zip(keys, written):
      forms[k][w] += 1
    for key in set(keys):
      where[key].append(j)
  need = max(MIN_REVIEWS, int(np.ceil(min_share * n_reviews)))
  review_sets = {k: np.unique(owner[js]) for k, js in where.items()}
  df = {k: len(r) for k, r in review_sets.items()}
  keep = []
  for k, n in df.items():
    if n < need:
      continue
    if " " in k:
      rarer = min(df.get(p, 0) for p in k.split(" "))
      if n < COLLOCATION_SHARE * rarer:
        continue
    keep.append(k)
  keep.sort(key=lambda k: (-df[k], k))
  keep = keep[:max_terms]
  return _Terms(keep, [forms[k].most_common(1)[0][0] for k in keep],
                [review_sets[k] for k in keep], [np.asarray(where[k]) for k in keep])


def _subset(terms: _Terms, mask: np.ndarray) -> _Terms:
  idx = np.flatnonzero(mask)
  return _Terms([terms.keys[i] for i in idx], [terms.surface[i] for i in idx],
                [terms.reviews[i] for i in idx], [terms.clauses[i] for i in idx])


def _unit_rows(x: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(norms > 0, norms, 1.0)


def term_vectors(terms: _Terms, own: np.ndarray, clause_vectors: np.ndarray,
                 context: float = 1.0) -> np.ndarray:
  """[n_terms, dim]: each term's own embedding (``own``, unit rows) plus ``context`` times the
  (unit) mean embedding of the clauses that use it, normalised."""
  mean = _unit_rows(np.stack([clause_vectors[js].mean(axis=0) for js in terms.clauses]))
  return _unit_rows(own + context * mean)


def group_terms(vectors: np.ndarray, distance: float) -> np.ndarray:
  """Group number of each term: average-linkage clustering on cosine distance, cut at
  ``distance`` (deterministic)."""
  if len(vectors) < 2:
    return np.zeros(len(vectors), dtype=int)
  from sklearn.cluster import AgglomerativeClustering  # pylint: disable=import-outside-toplevel
  return AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                 distance_threshold=distance).fit_predict(vectors)


def _typical(rows: np.ndarray, clauses: Sequence[str], vectors: np.ndarray, k: int,
             exclude: set[str] = frozenset()) -> list[str]:
  """Up to k distinct clauses of ``rows`` nearest their mean embedding, of EXAMPLE_WORDS words."""
  if not len(rows):
    return []
  centre = vectors[rows].mean(axis=0)
  order = rows[np.argsort(-(vectors[rows] @ centre), kind="stable")]
  out: list[str] = []
  for j in order:
    text = " ".join(clauses[j].split())
    if EXAMPLE_WORDS[0] <= len(text.split()) <= EXAMPLE_WORDS[1] and text.lower() not in exclude:
      out.append(text)
      exclude = exclude | {text.lower()}
      if len(out) == k:
        break
  return out


def _name(word: str, taken: set[str]) -> str:
  base = re.sub(r"[^a-z0-9]+", "_", fold(word)).strip("_") or "aspect"
  if not base[0].isalpha():
    base = f"a_{base}"
  name, n = base, 2
  while name in taken:
    name, n = f"{base}_{n}", n + 1
  return name


def propose_aspects(clauses: Sequence[str], owner: np.ndarray, clause_vectors: np.ndarray, *,
                    n_reviews: int, language: str, embed_fn: EmbedFn,
                    tagged: np.ndarray | None = None, aspect_names: Sequence[str] = (),
                    proba: ProbaFn | None = None, ratings: np.ndarray | None = None,
                    min_share: float = 0.01, max_terms: int = 150, distance: float = 0.5,
                    context: float = 0.5, opinion_band: tuple[float, float] = OPINION_BAND,
                    min_group_share: float = 0.03, max_candidates: int = 8) -> Candidates:
  """Candidate aspects of a shop from the clauses of its reviews.

  Args:
    clauses: the clauses (:func:`cvlib.insight.aspect_model.split_reviews`).
    owner: [n_clauses] review position of each clause (0 .. n_reviews - 1).
    clause_vectors: [n_clauses, dim] their L2-normalised embeddings (the tagging encoder's).
    n_reviews: reviews the clauses come from.
    language: "en" or "pt".
    embed_fn: the encoder of ``clause_vectors`` (embeds the terms).
    tagged: [n_clauses, n_aspects] bool, the configured aspects' clause tags (coverage).
    aspect_names: the configured aspects, in ``tagged``'s column order.
    proba: P(positive) of clause embeddings (the polarity head): drops opinion terms and picks
      positive and negative examples; None: neither.
    ratings: [n_reviews] stars (NaN: none); with ``proba``, examples come from 4-5 and 1-2 star
      reviews only.
    min_share, max_terms: frequent terms (step 1).
    context: weight of the clauses' mean embedding in a term's vector (step 2).
    opinion_band: terms whose P(positive) lies outside are dropped (with ``proba``).
    distance: cosine distance at which groups are cut (step 3).
    min_group_share, max_candidates: which groups are proposed.

  Returns:
    :class:`Candidates`; its table has columns candidate, words, share (of reviews mentioning
    it), reviews, example, covered_by (a configured aspect or "none").

  Raises:
    ValueError: an unsupported language, or inputs that are not aligned.
  """
  if language not in _STOP:
    raise ValueError(f"language {language!r}: candidate aspects need a stop-word list; "
                     f"supported: {', '.join(LANGUAGES)}")
  owner = np.asarray(owner, dtype=int)
  vectors = np.asarray(clause_vectors, dtype=np.float32)
  if len(owner) != len(clauses) or vectors.shape[0] != len(clauses):
    raise ValueError(f"propose_aspects: {len(clauses)} clauses, {len(owner)} owners and "
                     f"{vectors.shape[0]} vectors (need one each)")
  if tagged is not None and np.shape(tagged) != (len(clauses), len(aspect_names)):
    raise ValueError(f"propose_aspects: tagged has shape {np.shape(tagged)}, need "
                     f"({len(clauses)}, {len(aspect_names)})")
  columns = ["candidate", "words", "share", "reviews", "example", "covered_by"]
  terms = find_terms(clauses, owner, language, n_reviews=n_reviews, min_share=min_share,
                     max_terms=max_terms)
  dropped: list[str] = []
  own = _unit_rows(np.asarray(embed_fn(terms.surface), dtype=np.float32).reshape(
      len(terms.keys), -1)) if terms.keys else np.zeros((0, vectors.shape[1]), np.float32)
  if terms.keys and proba is not None:
    p = np.asarray(proba(own))
    keep = (p > opinion_band[0]) & (p < opinion_band[1])
    dropped = [w for w, k in zip(terms.surface, keep) if not k]
    terms, own = _subset(terms, keep), own[keep]
  empty = Candidates(pd.DataFrame(columns=columns), "", n_reviews, len(clauses), len(terms.keys),
                     language=language, opinion_terms=dropped)
  if not terms.keys:
    return empty
  groups = group_terms(term_vectors(terms, own, vectors, context), distance)
  rows = []
  for g in np.unique(groups):
    members = np.flatnonzero(groups == g)
    reviews = np.unique(np.concatenate([terms.reviews[i] for i in members]))
    if len(reviews) < max(MIN_REVIEWS, min_group_share * n_reviews):
      continue
    members = members[np.argsort([-len(terms.reviews[i]) for i in members], kind="stable")]
    rows.append((len(reviews), members,
                 np.unique(np.concatenate([terms.clauses[i] for i in members]))))
  rows.sort(key=lambda r: (-r[0], terms.keys[r[1][0]]))
  rows = rows[:max_candidates]
  if not rows:
    return empty
  taken: set[str] = set()
  table, snippet, keys = [], {}, {}
  for n, members, js in rows:
    covered = NONE
    if tagged is not None and len(aspect_names):
      share = np.asarray(tagged, dtype=bool)[js].mean(axis=0)
      if share.max() >= COVERED_SHARE:
        covered = str(aspect_names[int(np.argmax(share))])
    # an uncovered group's name must not replace a configured aspect when pasted
    name = _name(terms.surface[members[0]], taken | (set(aspect_names) if covered == NONE
                                                     else set()))
    taken.add(name)
    keys[name] = tuple(terms.keys[i] for i in members)
    words = [terms.surface[i] for i in members]
    typical = _typical(js, clauses, vectors, 3)
    table.append({"candidate": name, "words": ", ".join(words[:6]), "share": n / n_reviews,
                  "reviews": n, "example": typical[0] if typical else "", "covered_by": covered})
    if covered == NONE:
      snippet[name] = _spec(js, words, typical, clauses, vectors, owner, proba, ratings)
  text = ""
  if snippet:
    text = yaml.safe_dump({"segment": {"aspects": snippet}}, sort_keys=False, allow_unicode=True,
                          width=100)
    # an example list this shop's reviews could not fill says so where the analyst edits it
    text = re.sub(r"^(\s+(positive|negative): \[\])$", r"\1  " + MISSING_EXAMPLE, text,
                  flags=re.M)
  return Candidates(pd.DataFrame(table, columns=columns), text, n_reviews, len(clauses),
                    len(terms.keys), keys, language, dropped)


def _spec(js: np.ndarray, words: list[str], typical: list[str], clauses: Sequence[str],
          vectors: np.ndarray, owner: np.ndarray, proba: ProbaFn | None,
          ratings: np.ndarray | None) -> dict:
  """One segment.aspects entry: descriptions, positive, negative, keywords."""
  positive: list[str] = []
  negative: list[str] = []
  if proba is not None:
    p = np.asarray(proba(vectors[js]))
    stars = (np.asarray(ratings, dtype=float)[owner[js]] if ratings is not None
             else np.full(len(js), np.nan))
    rated = np.isfinite(stars)
    pos = (p >= EXAMPLE_PROBA) & (~rated | (stars >= 4))
    neg = (p <= 1 - EXAMPLE_PROBA) & (~rated | (stars <= 2))
    if rated.any():  # a shop with stars: examples only from rated reviews that agree
      pos, neg = pos & rated, neg & rated
    positive = _typical(js[pos], clauses, vectors, 2)
    negative = _typical(js[neg], clauses, vectors, 2)
  return {"descriptions": typical, "positive": positive, "negative": negative,
          "keywords": words[:10]}


def describe(c: Candidates) -> str:
  """One paragraph for the report: where the candidates come from and how to use them."""
  return (f"Candidate aspects proposed from {c.n_reviews:,} reviews ({c.n_clauses:,} clauses): "
          f"the {c.n_terms:,} words and word pairs they use most, without stop words and opinion "
          "words, grouped by meaning (MiniLM embeddings of the word and of the clauses using "
          "it), each group named by its most used word. A group is covered by an aspect when "
          "half its clauses are tagged with it. To track an uncovered group, paste its part of "
          "the YAML below into the params' segment.aspects (with the aspects to keep) and edit "
          "it: the descriptions and examples are customers' own clauses.")


"""Lexicon aspect tagging of review text (delivery, quality, price, size_fit, service, packaging)
and per-aspect VADER polarity: the baseline of :mod:`cvlib.insight.aspect_model`, which the report
uses, and the metrics and tables both share.

Reviews are split into clauses on punctuation and on contrast words ("but", "however",
"although" ...), so "great quality but delivery took ages" gives quality and delivery their own
clause. An aspect is tagged when one of its seed phrases occurs in a clause (lower-cased, accents
dropped, light suffix stripping so "ships"/"shipped"/"shipping" all match "ship", and one-edit
typo tolerance on words of 6+ letters), or, when an embedding function is given, when a clause is
close enough in embedding space to one of the aspect's seed phrases.

Polarity per mentioned aspect comes from the clause(s) that mention it: a caller-supplied
``sentiment_fn`` (e.g. the fine-tuned review model) or VADER with a small e-commerce lexicon
(VADER handles negation: "not fast" is negative, "not bad at all" positive). VADER is English-only:
pass ``sentiment_fn`` for Portuguese (olist) reviews.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

EmbedFn = Callable[[list[str]], np.ndarray]  # texts -> [n, dim], rows L2-normalised
SentimentFn = Callable[[list[str]], Sequence[float]]  # clauses -> scores in [-1, 1]
Aspects = Mapping[str, Sequence[str]]

DEFAULT_ASPECTS: dict[str, tuple[str, ...]] = {
    "delivery": (
        "delivery", "deliver", "shipping", "ship", "shipment", "arrive", "arrival", "courier",
        "dispatch", "postage", "postal", "tracking", "on time", "late", "delay", "delayed",
        "took ages", "took forever", "took weeks", "took days", "came quickly", "came fast",
        "came early", "came late", "next day", "in transit", "lost in the post", "eta",
    ),
    "quality": (
        "quality", "well made", "poorly made", "badly made", "cheaply made", "well built",
        "build", "durable", "sturdy", "flimsy", "material", "fabric", "stitching", "seam",
        "broke", "broken", "defective", "faulty", "fell apart", "falls apart", "ripped", "tore",
        "torn", "craftsmanship", "stopped working", "doesn't work", "does not work",
        "didn't work", "feels cheap", "looks cheap", "didn't last", "did not last",
        "built to last", "lasted long",
        "wore out", "worn out", "sturdiness",
    ),
    "price": (
        "price", "pricey", "overpriced", "expensive", "cheap", "cheaper", "inexpensive",
        "affordable", "cost", "costly", "bargain", "value for money", "good value",
        "great value", "poor value", "worth the money", "worth every penny", "worth the price",
        "waste of money", "deal", "discount", "paid", "money",
    ),
    "size_fit": (
        "size", "sizing", "fit", "too small", "too big", "too large", "too tight", "too loose",
        "too long", "too short", "tight", "loose", "runs small", "runs large", "runs big",
        "true to size", "size up", "size down", "smaller than", "bigger than", "larger than",
        "waist", "length",
    ),
    "service": (
        "customer service", "service", "support", "seller", "vendor", "staff", "refund",
        "return", "exchange", "replacement", "responded", "response", "reply", "replied",
        "unhelpful", "helpful", "rude", "polite", "contacted", "complaint", "answered",
        "customer care",
    ),
    "packaging": (
        "packaging", "packed", "packaged", "box", "boxed", "wrapped", "wrapping",
        "bubble wrap", "envelope", "padding", "padded", "sealed", "crushed box", "dented box",
    ),
}

# Short seed lists for Brazilian Portuguese reviews (olist); accents are dropped before matching.
PORTUGUESE_ASPECTS: dict[str, tuple[str, ...]] = {
    "delivery": ("entrega", "entregue", "entregou", "chegou", "chegaram", "chegada", "prazo",
                 "atraso", "atrasado", "atrasou", "correios", "frete", "demorou", "rapido"),
    "quality": ("qualidade", "material", "defeito", "quebrado", "quebrou", "resistente",
                "frageis", "fragil", "acabamento", "durou", "bem feito"),
    "price": ("preco", "caro", "barato", "custo beneficio", "valor", "desconto", "promocao"),
    "size_fit": ("tamanho", "pequeno", "grande", "apertado", "folgado", "medida", "serviu"),
    "service": ("atendimento", "vendedor", "loja", "suporte", "resposta", "respondeu",
                "reembolso", "devolucao", "troca", "sac"),
    "packaging": ("embalagem", "embalado", "embalada", "caixa", "lacrado", "lacre",
                  "plastico bolha"),
}

# Contrast words start a new clause, so each side of "good X but bad Y" is scored on its own
# (Portuguese with and without accents: "porém", "porem").
CLAUSE_BREAKERS = ("but", "however", "although", "though", "whereas", "except", "mas", "porem",
                   "porém", "embora", "entretanto", "contudo")
_CLAUSE_SPLIT = re.compile(r"[.!?;:,\n()]+|\b(?:" + "|".join(CLAUSE_BREAKERS) + r")\b",
                           re.IGNORECASE)
_SENTENCE_SPLIT = re.compile(r"[.!?;\n]+")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Words the suffix stripper must not merge ("packaging" is the packaging aspect, "package" is
# mostly said of a delivery).
_STEM_EXCEPTIONS = {"packaging": "packaging", "package": "package", "packages": "package",
                    "boxes": "box", "news": "news"}
# Their stems are deliberate, so the typo tolerance must not move them onto a seed either
# ("package" is one edit from "packag", the stem of the packaging seed "packaged").
_EXACT_STEMS = frozenset(_STEM_EXCEPTIONS.values())
# One-edit typo tolerance only on stems this long: shorter ones clash with common words
# ("tight" vs "eight", "night", "light").
_FUZZY_MIN_LEN = 6
# VADER's rule of thumb: |compound| < 0.05 is neutral.
NEUTRAL_BAND = 0.05


def _fold(text: str) -> str:
  """Lower-case without accents ("Preço" -> "preco"); curly apostrophes become straight."""
  text = unicodedata.normalize("NFKD", text.replace("\u2019", "'").lower())
  return "".join(c for c in text if not unicodedata.combining(c))


@functools.lru_cache(maxsize=200_000)
def stem(token: str) -> str:
  """Light English suffix stripping: plural, -ed, -ing, doubled consonant, final e.

  Aims only at matching inflections of the same word ("shipped", "shipping", "ships" -> "ship";
  "prices", "priced" -> "pric"), not at a linguistically correct stem.
  """
  if token in _STEM_EXCEPTIONS:
    return _STEM_EXCEPTIONS[token]
  t = token[:-2] if token.endswith("'s") else token
  if len(t) > 4 and t.endswith("ies"):
    t = t[:-3] + "y"
  elif len(t) > 4 and t.endswith(("sses", "xes", "ches", "shes")):
    t = t[:-2]
  elif len(t) > 3 and t.endswith("s") and not t.endswith(("ss", "us", "is")):
    t = t[:-1]
  if len(t) > 5 and t.endswith("ing"):
    t = t[:-3]
  elif len(t) > 4 and t.endswith("ed"):
    t = t[:-2]
  if len(t) > 3 and t[-1] == t[-2] and t[-1] not in "aeiouls":
    t = t[:-1]
  if len(t) > 4 and t.endswith("e"):
    t = t[:-1]
  return t


def _deletes(word: str) -> set[str]:
  return {word[:i] + word[i + 1:] for i in range(len(word))} | {word}


def split_clauses(text: str) -> list[str]:
  """Clauses of a review: split on punctuation and on ``CLAUSE_BREAKERS``; empty parts dropped."""
  return [c for c, _ in split_contrast(text)]


def split_contrast(text: str) -> list[tuple[str, bool]]:
  """:func:`split_clauses` with, per clause, whether it is the first one after a contrast word
  ("love the colour, but it runs small" -> [("love the colour", False), ("it runs small", True)]).
  """
  if not isinstance(text, str):
    return []
  out, start, after = [], 0, False
  for m in _CLAUSE_SPLIT.finditer(text):
    piece = text[start:m.start()].strip()
    if piece:
      out.append((piece, after))
      after = False
    after = after or m.group(0)[0].isalpha()
    start = m.end()
  piece = text[start:].strip()
  if piece:
    out.append((piece, after))
  return out


class _Matcher:
  """Seed-phrase matcher over stemmed tokens, with one-edit typo tolerance on long stems."""

  def __init__(self, aspects: Aspects, fuzzy: bool):
    self.names = list(aspects)
    self.phrases: list[tuple[int, tuple[str, ...]]] = []  # (aspect number, stemmed tokens)
    vocab: set[str] = set()
    for a, name in enumerate(self.names):
      for phrase in aspects[name]:
        tokens = tuple(stem(t) for t in _TOKEN.findall(_fold(phrase)))
        if tokens:
          self.phrases.append((a, tokens))
          vocab.update(tokens)
    self.vocab = vocab
    self.fuzzy = fuzzy
    # Deletion index (SymSpell-style): two words within one edit share a one-deletion variant.
    self._by_delete: dict[str, set[str]] = {}
    for word in vocab:
      if len(word) >= _FUZZY_MIN_LEN:
        for d in _deletes(word):
          self._by_delete.setdefault(d, set()).add(word)
    self._cache: dict[str, str] = {}

  def _normal(self, token: str) -> str:
    s = stem(token)
    if s in self.vocab or not self.fuzzy or len(s) < _FUZZY_MIN_LEN or s in _EXACT_STEMS:
      return s
    hit = self._cache.get(s)
    if hit is None:
      candidates = set().union(*(self._by_delete.get(d, set()) for d in _deletes(s)))
      hit = min(candidates) if len(candidates) >= 1 else s  # min: deterministic on a tie
      self._cache[s] = hit
    return hit

  def tokens(self, clause: str) -> list[str]:
    return [self._normal(t) for t in _TOKEN.findall(_fold(clause))]

  def match(self, clause: str) -> np.ndarray:
    """[n_aspects] bool: which aspects a seed phrase of occurs in ``clause``."""
    tokens = self.tokens(clause)
    present = set(tokens)
    out = np.zeros(len(self.names), dtype=bool)
    joined = " " + " ".join(tokens) + " "
    for a, phrase in self.phrases:
      if out[a] or phrase[0] not in present:
        continue
      out[a] = len(phrase) == 1 or (" " + " ".join(phrase) + " ") in joined
    return out


@functools.lru_cache(maxsize=8)
def _cached_matcher(key: tuple, fuzzy: bool) -> _Matcher:
  return _Matcher({name: list(seeds) for name, seeds in key}, fuzzy)


def _matcher(aspects: Aspects, fuzzy: bool) -> _Matcher:
  _check_aspects(aspects)
  return _cached_matcher(tuple((name, tuple(seeds)) for name, seeds in aspects.items()), fuzzy)


def _check_aspects(aspects: Aspects) -> None:
  if not isinstance(aspects, Mapping) or not aspects:
    raise ValueError("aspects: need a non-empty dict aspect -> seed phrases")
  for name, seeds in aspects.items():
    if isinstance(seeds, str) or not seeds or not all(isinstance(s, str) and s.strip()
                                                      for s in seeds):
      raise ValueError(f"aspects[{name!r}]: need a non-empty list of seed phrases (str), "
                       f"got {seeds!r}")


def _as_texts(texts: Sequence[str] | pd.Series) -> pd.Series:
  if isinstance(texts, str):
    raise ValueError("texts: need a list or Series of review texts, got a single str")
  s = texts if isinstance(texts, pd.Series) else pd.Series(list(texts), dtype=object)
  return s.astype(object).where(s.notna(), None)


def _clause_table(texts: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
  """All clauses, the review position [n_clauses] and the sentence number [n_clauses] of each."""
  clauses, owner, sentence = [], [], []
  n_sentences = 0
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      continue
    for part in _SENTENCE_SPLIT.split(text):
      pieces = split_clauses(part)
      clauses += pieces
      owner += [i] * len(pieces)
      sentence += [n_sentences] * len(pieces)
      n_sentences += 1
  return clauses, np.asarray(owner, dtype=int), np.asarray(sentence, dtype=int)


def _keyword_clause_hits(clauses: list[str], matcher: _Matcher) -> np.ndarray:
  if not clauses:
    return np.zeros((0, len(matcher.names)), dtype=bool)
  return np.stack([matcher.match(c) for c in clauses])  # [n_clauses, n_aspects]


def _check_embeddings(vectors, n: int, what: str) -> np.ndarray:
  arr = np.asarray(vectors, dtype=np.float32)
  if arr.ndim != 2 or arr.shape[0] != n:
    raise ValueError(f"embed_fn: for {n} {what} returned shape {arr.shape}, need ({n}, dim)")
  norms = np.linalg.norm(arr, axis=1)
  if not np.allclose(norms[norms > 0], 1.0, atol=1e-3):
    raise ValueError(f"embed_fn: rows must be L2-normalised (norms {norms.min():.3f}-"
                     f"{norms.max():.3f})")
  return arr


def _clause_similarity(clauses: list[str], aspects: Aspects, embed_fn: EmbedFn) -> np.ndarray:
  """[n_clauses, n_aspects] max cosine between each clause and the aspect's seed phrases."""
  names = list(aspects)
  seeds = [s for name in names for s in aspects[name]]
  seed_owner = np.repeat(np.arange(len(names)), [len(aspects[n]) for n in names])
  seed_vecs = _check_embeddings(embed_fn(seeds), len(seeds), "seed phrases")  # [n_seeds, dim]
  if not clauses:
    return np.zeros((0, len(names)), dtype=np.float32)
  clause_vecs = _check_embeddings(embed_fn(clauses), len(clauses), "clauses")
  sim = clause_vecs @ seed_vecs.T  # [n_clauses, n_seeds]
  out = np.full((len(clauses), len(names)), -1.0, dtype=np.float32)
  for a in range(len(names)):
    out[:, a] = sim[:, seed_owner == a].max(axis=1)
  return out


def _per_review_max(values: np.ndarray, owner: np.ndarray, n: int, fill: float) -> np.ndarray:
  out = np.full((n, values.shape[1]), fill, dtype=values.dtype)
  if len(owner):
    np.maximum.at(out, owner, values)
  return out


def aspect_scores(texts: Sequence[str] | pd.Series, aspects: Aspects = DEFAULT_ASPECTS, *,
                  embed_fn: EmbedFn) -> pd.DataFrame:
  """Max cosine similarity between any clause of each review and each aspect's seed phrases.

  Args:
    texts: review texts (None/NaN allowed).
    aspects: aspect -> seed phrases.
    embed_fn: texts -> [n, dim] L2-normalised embeddings (e.g. ``cvlib.embed``).

  Returns:
    One float column per aspect, index aligned to ``texts``; -1 for reviews without text.

  Raises:
    ValueError: bad aspects, or embed_fn returns the wrong shape or unnormalised rows.
  """
  _check_aspects(aspects)
  s = _as_texts(texts)
  clauses, owner, _ = _clause_table(s)
  sim = _clause_similarity(clauses, aspects, embed_fn)
  return pd.DataFrame(_per_review_max(sim, owner, len(s), -1.0), index=s.index,
                      columns=list(aspects))


def _thresholds(threshold: float | Mapping[str, float] | None, names: list[str]) -> np.ndarray:
  if threshold is None:
    threshold = 0.5
  if isinstance(threshold, Mapping):
    missing = [n for n in names if n not in threshold]
    if missing:
      raise ValueError(f"threshold: no value for aspect(s) {', '.join(missing)}")
    values = np.array([float(threshold[n]) for n in names])
  else:
    values = np.full(len(names), float(threshold))
  if ((values < -1) | (values > 1)).any():
    raise ValueError(f"threshold: cosine thresholds must lie in [-1, 1], got {threshold!r}")
  return values


def tag_aspects(texts: Sequence[str] | pd.Series, aspects: Aspects = DEFAULT_ASPECTS, *,
                embed_fn: EmbedFn | None = None,
                threshold: float | Mapping[str, float] | None = None,
                fuzzy: bool = True) -> pd.DataFrame:
  """Which aspects each review mentions.

  An aspect is tagged when a seed phrase occurs in the review (case-insensitive, accents dropped,
  inflections and, with ``fuzzy``, one-edit typos of words of 6+ letters tolerated), or, when
  ``embed_fn`` is given, when some clause's cosine similarity to one of the aspect's seed phrases
  is at least ``threshold``.

  Args:
    texts: review texts (None/NaN: nothing tagged).
    aspects: aspect -> seed phrases, e.g. ``DEFAULT_ASPECTS`` or ``PORTUGUESE_ASPECTS``.
    embed_fn: optional texts -> [n, dim] L2-normalised embeddings.
    threshold: cosine threshold for the embedding match, one float or one per aspect (see
      :func:`calibrate_threshold`); default 0.5. Only valid with ``embed_fn``.
    fuzzy: tolerate one-edit typos in keyword matching.

  Returns:
    One bool column per aspect, index aligned to ``texts``.

  Raises:
    ValueError: bad aspects, a threshold without embed_fn, or a bad threshold.
  """
  _check_aspects(aspects)
  if threshold is not None and embed_fn is None:
    raise ValueError("threshold: only used with embed_fn; pass embed_fn or drop threshold")
  s = _as_texts(texts)
  names = list(aspects)
  clauses, owner, _ = _clause_table(s)
  hits = _keyword_clause_hits(clauses, _matcher(aspects, fuzzy))  # [n_clauses, n_aspects]
  if embed_fn is not None:
    limits = _thresholds(threshold, names)
    hits |= _clause_similarity(clauses, aspects, embed_fn) >= limits[None, :]
  tagged = _per_review_max(hits, owner, len(s), False)
  return pd.DataFrame(tagged, index=s.index, columns=names)


# E-commerce words VADER's lexicon lacks (valence on VADER's -4..4 scale); VADER's own entries win.
DOMAIN_LEXICON: dict[str, float] = {
    "fast": 1.5, "quick": 1.5, "quickly": 1.2, "speedy": 1.5, "promptly": 1.2, "prompt": 1.0,
    "slow": -1.5, "slowly": -1.2, "late": -1.5, "overdue": -1.5, "overpriced": -2.0,
    "pricey": -1.0, "expensive": -1.2, "affordable": 1.5, "inexpensive": 1.0, "reasonable": 1.0,
    "flimsy": -1.8, "sturdy": 1.5, "durable": 1.5, "ripped": -1.5, "tight": -0.8,
    "dented": -1.5, "scratched": -1.2, "unhelpful": -1.8, "decent": 1.0, "refunded": 0.8,
    "on_time": 1.5, "took_forever": -1.8, "fell_apart": -2.2,
    "not_working": -2.0, "no_reply": -1.8, "polite": 1.5, "ill_fitting": -1.5,
    "true_to_size": 1.5, "well_made": 1.8, "poorly_made": -1.8, "well_packed": 1.5,
    "poorly_packed": -1.5, "value_for_money": 1.5, "rubbish": -2.0, "accurate": 1.2,
    "cheaper": 1.0, "unbeatable": 2.0, "spot_on": 1.8, "worn_out": -1.8, "had_to_chase": -1.5,
}
# VADER entries that mislead on reviews: "support" is the support team, not approval; "expected"
# is made positive so that VADER's negation turns "wasn't what I expected" negative.
DOMAIN_OVERRIDES: dict[str, float | None] = {"support": None, "expected": 1.0}
# Multi-word cues mapped to single tokens of DOMAIN_LEXICON before VADER sees the clause; VADER's
# own negation still applies ("did not arrive on time" -> "not on_time" -> negative).
DOMAIN_PHRASES: tuple[tuple[str, str], ...] = (
    (r"\bon time\b", "on_time"),
    (r"\btook (?:\w+ ){0,2}(?:forever|ages|weeks|months)\b", "took_forever"),
    (r"\b(?:never|nobody|no one|noone) (?:replied|responded|answered|got back)\b"
     r"|\bno (?:reply|response|answer)\b", "no_reply"),
    (r"\b(?:paid |costs? |charged? )?(?:far |way |much )?too much\b", "overpriced"),
    (r"\b(?:can't|cannot|can not) beat\b", "unbeatable"),
    (r"\bspot on\b", "spot_on"),
    (r"\bin no time\b", "quickly"),
    (r"\b(?:wore|worn|wears) out\b", "worn_out"),
    (r"\bhad to (?:chase|call|email|ring)\b", "had_to_chase"),
    (r"\bf[ae]ll apart\b|\bfalls apart\b", "fell_apart"),
    (r"\bstopped working\b|\b(?:doesn't|does not|didn't|did not) work\b", "not_working"),
    (r"\btoo (?:small|big|large|tight|loose|long|short)\b|\bruns? (?:small|large|big)\b",
     "ill_fitting"),
    (r"\btrue to size\b", "true_to_size"),
    (r"\bwell (?:made|built|finished)\b", "well_made"),
    (r"\b(?:poorly|badly|cheaply) (?:made|built)\b", "poorly_made"),
    (r"\b(?:well|nicely|carefully) (?:packed|packaged|wrapped)\b", "well_packed"),
    (r"\b(?:poorly|badly|barely) (?:packed|packaged|wrapped)\b", "poorly_packed"),
    (r"\bvalue for (?:the )?money\b", "value_for_money"),
)
_DOMAIN_PHRASES = tuple((re.compile(p, re.IGNORECASE), r) for p, r in DOMAIN_PHRASES)


@functools.lru_cache(maxsize=1)
def _vader():
  try:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
  except ImportError as e:  # pragma: no cover - vaderSentiment is a dependency
    raise ImportError("aspect_sentiment needs vaderSentiment (or pass sentiment_fn)") from e
  analyzer = SentimentIntensityAnalyzer()
  for word, valence in DOMAIN_LEXICON.items():
    analyzer.lexicon.setdefault(word, valence)
  for word, valence in DOMAIN_OVERRIDES.items():
    if valence is None:
      analyzer.lexicon.pop(word, None)
    else:
      analyzer.lexicon[word] = valence
  return analyzer


def word_valence(word: str) -> float:
  """A lower-case word's valence in the adapted VADER lexicon (about -4 to +4; 0 when absent)."""
  return float(_vader().lexicon.get(word, 0.0))


_PRETTY = re.compile(r"\bpretty (\w+)", re.IGNORECASE)


def _defuse_pretty(text: str, lexicon: dict) -> str:
  """"pretty slow" is a hedge, not praise: VADER scores "pretty" +2.2, so make it "quite"."""
  return _PRETTY.sub(lambda m: ("quite " if m.group(1).lower() in lexicon else "pretty ")
                     + m.group(1), text)


def vader_sentiment(clauses: Sequence[str]) -> np.ndarray:
  """VADER compound score in [-1, 1] per clause, adapted to reviews.

  Adds ``DOMAIN_LEXICON`` and ``DOMAIN_OVERRIDES`` to VADER's lexicon, rewrites
  ``DOMAIN_PHRASES`` into single tokens first, and reads "pretty <sentiment word>" as a hedge.
  """
  analyzer = _vader()
  out = np.zeros(len(clauses))
  for i, clause in enumerate(clauses):
    text = clause
    for pattern, token in _DOMAIN_PHRASES:
      text = pattern.sub(token, text)
    out[i] = analyzer.polarity_scores(_defuse_pretty(text, analyzer.lexicon))["compound"]
  return out


def _run_sentiment(fn: SentimentFn, texts: list[str]) -> dict[str, float]:
  unique = list(dict.fromkeys(texts))
  if not unique:
    return {}
  scores = np.asarray(fn(unique), dtype=float).ravel()
  if scores.shape[0] != len(unique):
    raise ValueError(f"sentiment_fn: returned {scores.shape[0]} scores for {len(unique)} clauses")
  if not np.isfinite(scores).all() or (np.abs(scores) > 1 + 1e-6).any():
    raise ValueError("sentiment_fn: scores must be finite and lie in [-1, 1]")
  return dict(zip(unique, scores))


def aspect_sentiment(texts: Sequence[str] | pd.Series, tags: pd.DataFrame, *,
                     sentiment_fn: SentimentFn | None = None, aspects: Aspects = DEFAULT_ASPECTS,
                     embed_fn: EmbedFn | None = None, fuzzy: bool = True) -> pd.DataFrame:
  """Polarity (+1 / -1 / 0) of each mentioned aspect, from the clause(s) that mention it.

  The clauses of a review whose keywords match the aspect are scored (mean score); when none
  matches (the tag came from embeddings or from elsewhere), the clause most similar to the seed
  phrases is used with ``embed_fn``, else the whole review. A neutral clause score
  (``|score| < NEUTRAL_BAND``) falls back to the whole sentence around it, because comma
  splitting can separate the aspect from its verdict ("The delivery, however, was slow").

  Args:
    texts: review texts, aligned with ``tags``.
    tags: bool DataFrame from :func:`tag_aspects` (one column per aspect); only True cells get a
      polarity.
    sentiment_fn: clauses -> scores in [-1, 1], called once or twice with lists of unique
      clauses; default :func:`vader_sentiment` (English only).
    aspects: seed phrases used to find the clauses; must cover the columns of ``tags``.
    embed_fn: optional embeddings to find the clause for tags without a keyword match.
    fuzzy: tolerate one-edit typos when locating clauses.

  Returns:
    Int64 DataFrame shaped like ``tags``: +1 positive, -1 negative, 0 neutral, <NA> not mentioned.

  Raises:
    ValueError: texts and tags are not aligned, a tags column has no seed phrases, bad scores.
  """
  s = _as_texts(texts)
  if len(s) != len(tags):
    raise ValueError(f"aspect_sentiment: {len(s)} texts but {len(tags)} rows of tags")
  missing = [c for c in tags.columns if c not in aspects]
  if missing:
    raise ValueError(f"aspect_sentiment: tags column(s) {', '.join(map(str, missing))} have no "
                     f"seed phrases in aspects (have: {', '.join(aspects)})")
  sub_aspects = {c: aspects[c] for c in tags.columns}
  fn = sentiment_fn or vader_sentiment
  matcher = _matcher(sub_aspects, fuzzy)
  mask = tags.fillna(False).to_numpy(dtype=bool)  # [n_reviews, n_aspects]
  clauses, owner, sentence = _clause_table(s)
  hits = _keyword_clause_hits(clauses, matcher)  # [n_clauses, n_aspects]
  sim = None
  if embed_fn is not None and mask.any():
    sim = _clause_similarity(clauses, sub_aspects, embed_fn)
  starts = np.searchsorted(owner, np.arange(len(s) + 1))

  # Which clauses (positions) score each (review, aspect) cell.
  cell_clauses: dict[tuple[int, int], list[int]] = {}
  for i, a in zip(*np.nonzero(mask)):
    lo, hi = starts[i], starts[i + 1]
    chosen = [j for j in range(lo, hi) if hits[j, a]]
    if not chosen and sim is not None and hi > lo:
      chosen = [lo + int(np.argmax(sim[lo:hi, a]))]
    cell_clauses[(i, a)] = chosen
  # A cell with no clause (tag from elsewhere, no keyword, no embeddings) scores the whole review.
  texts_of = {(i, a): [clauses[j] for j in js] if js else
              ([s.iloc[i]] if isinstance(s.iloc[i], str) else [])
              for (i, a), js in cell_clauses.items()}
  scores = _run_sentiment(fn, [c for cs in texts_of.values() for c in cs])
  cell_score = {cell: float(np.mean([scores[c] for c in cs])) if cs else 0.0
                for cell, cs in texts_of.items()}
  # A neutral clause often lost its verdict to a comma ("The delivery, however, was slow"): score
  # its sentence instead, minus the clauses about other mentioned aspects (so "took three weeks to
  # arrive, however the product is sturdy" does not make delivery positive).
  retry = {}
  for (i, a), js in cell_clauses.items():
    if not js or abs(cell_score[(i, a)]) >= NEUTRAL_BAND:
      continue
    others = mask[i].copy()
    others[a] = False
    near = {sentence[k] for k in js}
    keep = [j for j in range(starts[i], starts[i + 1])
            if sentence[j] in near and (hits[j, a] or not hits[j, others].any())]
    if len(keep) > len(js):
      retry[(i, a)] = ", ".join(clauses[j] for j in keep)
  if retry:
    sentence_scores = _run_sentiment(fn, list(retry.values()))
    for cell, text in retry.items():
      cell_score[cell] = sentence_scores[text]

  out = np.full(mask.shape, pd.NA, dtype=object)
  for (i, a), v in cell_score.items():
    out[i, a] = 1 if v >= NEUTRAL_BAND else (-1 if v <= -NEUTRAL_BAND else 0)
  return pd.DataFrame(out, index=tags.index, columns=tags.columns).astype("Int64")


def _calibrate_one(scores: np.ndarray, labels: np.ndarray, name: str) -> float:
  if scores.shape != labels.shape or scores.ndim != 1:
    raise ValueError(f"calibrate_threshold{name}: scores {scores.shape} and labels "
                     f"{labels.shape} must be 1-D of the same length")
  if not np.isfinite(scores).all():
    raise ValueError(f"calibrate_threshold{name}: scores hold NaN or infinite values")
  n_pos = int(labels.sum())
  if n_pos == 0:
    raise ValueError(f"calibrate_threshold{name}: no positive labels; F1 is undefined")
  order = np.argsort(-scores, kind="stable")
  s, y = scores[order], labels[order]
  tp = np.cumsum(y)
  fp = np.cumsum(~y)
  last = np.r_[s[1:] != s[:-1], True]  # last position of each distinct score
  tp, fp, cut = tp[last], fp[last], s[last]
  f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
  return float(cut[int(np.argmax(f1))])  # argmax: first = highest threshold among equal F1


def calibrate_threshold(scores, labels) -> float | dict[str, float]:
  """Threshold t maximising F1 of ``score >= t`` against labels (ties: the highest such t).

  Args:
    scores: 1-D similarity scores, or a DataFrame of them (one column per aspect, e.g. from
      :func:`aspect_scores`).
    labels: bools of the same shape (a DataFrame with the same columns for the per-aspect case).

  Returns:
    The threshold (a float), or a dict aspect -> threshold for DataFrame input.

  Raises:
    ValueError: shapes differ, scores not finite, or no positive label (for some aspect).
  """
  if isinstance(scores, pd.DataFrame):
    if not isinstance(labels, pd.DataFrame) or set(labels.columns) != set(scores.columns):
      raise ValueError("calibrate_threshold: labels must be a DataFrame with the same columns as "
                       "scores")
    if not labels.index.equals(scores.index):
      if len(labels) != len(scores) or not labels.index.isin(scores.index).all():
        raise ValueError("calibrate_threshold: labels and scores must have the same index")
      labels = labels.loc[scores.index]
    return {c: _calibrate_one(scores[c].to_numpy(dtype=float),
                              labels[c].to_numpy(dtype=bool), f"[{c!r}]") for c in scores.columns}
  return _calibrate_one(np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool), "")


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
  precision = tp / (tp + fp) if tp + fp else float("nan")
  recall = tp / (tp + fn) if tp + fn else float("nan")
  f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
  return precision, recall, f1


# The hand-labelled sample shipped with cvlib (cvlib/insight/aspects_labelled.md) and the adapters whose
# review ids are its row ids, so that a report on that dataset can score the tagger on it.
LABELLED_FILE = "insight/aspects_labelled.csv"
LABELLED_SOURCES = {"womens_clothing": "womens"}
# The shipped aspect calibration (aspect_calibration.json) is fitted on the file's first
# CALIBRATED_ROWS rows (its first twelve draws, benchmarks/aspects_labelled.py); the later rows are
# outside it.
CALIBRATED_ROWS = 2575


def labelled_sample(source: str) -> pd.DataFrame:
  """The hand-labelled reviews of one source ("womens", "olist" or "synthetic").

  Returns:
    review_id (str, the source's row id), calibrated (bool: the row is one the shipped aspect
    calibration was fitted on, ``CALIBRATED_ROWS``) and one bool column per aspect of
    DEFAULT_ASPECTS.

  Raises:
    ValueError: no labelled row has that source.
  """
  from importlib import resources  # pylint: disable=import-outside-toplevel
  with resources.files("cvlib").joinpath(LABELLED_FILE).open("r", encoding="utf-8") as f:
    labels = pd.read_csv(f, dtype={"row_id": str})
  calibrated = pd.Series(np.arange(len(labels)) < CALIBRATED_ROWS, index=labels.index)
  rows = labels[labels["source"] == source]
  if not len(rows):
    raise ValueError(f"no labelled reviews of source {source!r}; sources: "
                     f"{sorted(labels['source'].unique())}")
  out = rows[list(DEFAULT_ASPECTS)].astype(bool)
  out.insert(0, "review_id", rows["row_id"].astype(str))
  out.insert(1, "calibrated", calibrated[rows.index])
  return out.reset_index(drop=True)


def aspect_metrics(pred_tags: pd.DataFrame, true_tags: pd.DataFrame) -> dict:
  """Micro-averaged precision, recall and F1 of aspect tags, plus per-aspect numbers.

  Args:
    pred_tags: bool DataFrame (reviews x aspects).
    true_tags: bool DataFrame with the same index and columns.

  Returns:
    {"precision", "recall", "f1": micro-averaged over all (review, aspect) cells, "per_aspect":
    DataFrame indexed by aspect with precision, recall, f1, support (true mentions), predicted}.
    Undefined ratios (no predictions / no truths) are NaN.

  Raises:
    ValueError: columns or index differ.
  """
  if set(pred_tags.columns) != set(true_tags.columns):
    raise ValueError(f"aspect_metrics: columns differ: pred {list(pred_tags.columns)}, true "
                     f"{list(true_tags.columns)}")
  if len(pred_tags) != len(true_tags) or not pred_tags.index.sort_values().equals(
      true_tags.index.sort_values()):
    raise ValueError("aspect_metrics: pred_tags and true_tags must have the same index")
  cols = list(true_tags.columns)
  pred = pred_tags.loc[true_tags.index, cols].fillna(False).to_numpy(dtype=bool)
  true = true_tags[cols].fillna(False).to_numpy(dtype=bool)
  tp = (pred & true).sum(axis=0)
  fp = (pred & ~true).sum(axis=0)
  fn = (~pred & true).sum(axis=0)
  rows = {c: (*_prf(tp[j], fp[j], fn[j]), int(tp[j] + fn[j]), int(tp[j] + fp[j]))
          for j, c in enumerate(cols)}
  per_aspect = pd.DataFrame.from_dict(
      rows, orient="index", columns=["precision", "recall", "f1", "support", "predicted"])
  per_aspect.index.name = "aspect"
  precision, recall, f1 = _prf(tp.sum(), fp.sum(), fn.sum())
  return {"precision": precision, "recall": recall, "f1": f1, "per_aspect": per_aspect}


def aspect_table(tags: pd.DataFrame, polarity: pd.DataFrame) -> pd.DataFrame:
  """Mentions and sentiment per aspect.

  Args:
    tags: bool DataFrame (reviews x aspects).
    polarity: from :func:`aspect_sentiment`, same shape.

  Returns:
    Indexed by aspect: mentions, share (of reviews), positive, negative, neutral, net
    ((positive - negative) / mentions; NaN without mentions).

  Raises:
    ValueError: tags and polarity are not the same shape.
  """
  if tags.shape != polarity.shape or list(tags.columns) != list(polarity.columns):
    raise ValueError(f"aspect_table: tags {tags.shape} and polarity {polarity.shape} must have the "
                     "same shape and columns")
  mask = tags.fillna(False).to_numpy(dtype=bool)
  pol = polarity.to_numpy(dtype=float, na_value=np.nan)
  mentions = mask.sum(axis=0)
  positive = (mask & (pol > 0)).sum(axis=0)
  negative = (mask & (pol < 0)).sum(axis=0)
  table = pd.DataFrame({
      "mentions": mentions,
      "share": mentions / max(len(tags), 1),
      "positive": positive,
      "negative": negative,
      "neutral": mentions - positive - negative,
  }, index=pd.Index(tags.columns, name="aspect"))
  with np.errstate(invalid="ignore", divide="ignore"):
    table["net"] = np.where(mentions > 0, (positive - negative) / np.maximum(mentions, 1), np.nan)
  return table


def tags_from_records(records: pd.DataFrame, review_ids: Sequence[str] | pd.Index,
                      aspects: Sequence[str] = tuple(DEFAULT_ASPECTS)
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Wide tags and polarity from a long ``review_id, aspect[, polarity]`` table (ground truth).

  Args:
    records: one row per (review, mentioned aspect); polarity "positive"/"negative"/"neutral" or
      +1/-1/0, optional.
    review_ids: the reviews (index of the result, in this order); records of other reviews are
      ignored.
    aspects: columns of the result.

  Returns:
    (tags, polarity): bool and Int64 DataFrames indexed by review_id.

  Raises:
    ValueError: missing columns, an unknown aspect or polarity label.
  """
  for col in ("review_id", "aspect"):
    if col not in records.columns:
      raise ValueError(f"tags_from_records: column {col!r} missing (have: "
                       f"{', '.join(map(str, records.columns))})")
  index = pd.Index([str(r) for r in review_ids], name="review_id")
  unknown = set(records["aspect"].astype(str)) - set(aspects)
  if unknown:
    raise ValueError(f"tags_from_records: unknown aspect(s) {sorted(unknown)}; allowed: "
                     f"{', '.join(aspects)}")
  tags = pd.DataFrame(False, index=index, columns=list(aspects))
  polarity = pd.DataFrame(pd.NA, index=index, columns=list(aspects), dtype="Int64")
  labels = {"positive": 1, "negative": -1, "neutral": 0, "1": 1, "-1": -1, "0": 0}
  rec = records[records["review_id"].astype(str).isin(index)]
  for row in rec.itertuples(index=False):
    rid, asp = str(row.review_id), str(row.aspect)
    tags.at[rid, asp] = True
    if "polarity" in records.columns and pd.notna(row.polarity):
      numeric = isinstance(row.polarity, (int, float, np.integer, np.floating))
      key = str(int(row.polarity)) if numeric else str(row.polarity)
      if key not in labels:
        raise ValueError(f"tags_from_records: unknown polarity {row.polarity!r}; allowed: "
                         "positive, negative, neutral, 1, -1, 0")
      polarity.at[rid, asp] = labels[key]
  return tags, polarity


def plot_aspect_sentiment(table: pd.DataFrame) -> Figure:
  """Diverging horizontal bars per aspect: negative mentions left, positive right, net annotated.

  Args:
    table: from :func:`aspect_table`.

  Returns:
    The figure (not shown).
  """
  for col in ("mentions", "positive", "negative", "net"):
    if col not in table.columns:
      raise ValueError(f"plot_aspect_sentiment: column {col!r} missing (have: "
                       f"{', '.join(map(str, table.columns))})")
  order = table.sort_values("mentions", kind="stable")
  y = np.arange(len(order))
  fig = Figure(figsize=(7, 0.5 * len(order) + 1.5), layout="constrained")
  ax = fig.subplots()
  ax.barh(y, -order["negative"], color="#d6604d", label="negative")
  ax.barh(y, order["positive"], color="#4393c3", label="positive")
  ax.axvline(0, color="black", linewidth=0.8)
  limit = max(float(order[["positive", "negative"]].to_numpy().max(initial=0)), 1.0)
  ax.set_xlim(-1.25 * limit, 1.25 * limit)
  for yi, (pos, net) in enumerate(zip(order["positive"], order["net"])):
    if np.isfinite(net):
      ax.text(pos + 0.02 * limit, yi, f"net {net:+.0%}", va="center", fontsize=8)
  ax.set_yticks(y, [f"{a} (n={m:,})" for a, m in zip(order.index, order["mentions"])])
  ax.xaxis.set_major_formatter(lambda x, _: f"{abs(x):,.0f}")
  ax.set_xlabel("reviews mentioning the aspect")
  ax.set_title("What reviews say, by aspect")
  ax.legend(loc="lower right")
  return fig

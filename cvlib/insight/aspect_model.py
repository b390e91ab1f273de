"""Aspect opinions from an encoder: which aspects a review talks about and with which polarity.

The report's "opinions by aspect" come from here, and so does :func:`aspect_opinions`, the public
function analysts score new reviews with (docs/contract.md). Each review is split into clauses
(:func:`cvlib.insight.aspects.split_clauses`); each clause is embedded by a sentence encoder and
then:

- **Tagging.** A clause speaks of an aspect when one of the aspect's keywords occurs in it *and*
  its cosine similarity to the aspect's descriptions (a few sentences of what opinions on it say)
  reaches the aspect's ``floor``, or, without a keyword, when the similarity reaches the aspect's
  ``alone`` threshold. Both thresholds are calibrated per language on the rows of the draws
  before the check draw of the labelled sample, fourteen shops
  (``benchmarks/aspects_labelled.py``); the check draw is never used for it.
  Multi-word keywords match with up to ``MAX_GAP`` words between their words ("runs a little
  large" matches "runs large"). Typo tolerance (one edit) applies only to keywords of at least
  ``FUZZY_MIN_LEN`` letters that no other word of the encoder's vocabulary is one edit away from
  ("stitch" is not tolerated: "switch" is a word), and only to tokens that are not vocabulary
  words themselves. A clause of a keyword and one verdict word ("awful service") is tagged by the
  keyword alone (:func:`short_verdicts`). English negations are written "not" on both sides
  ("didn't stay", "would not stay" and "never stays" all match the keyword "not stay"), and in a
  clause that describes an effect on something else ("leaves my skin soft", "keeps it fresh")
  the effect's word is no keyword (:func:`keyword_tokens`). Thresholds are calibrated with each
  product domain weighing the same.
- **Polarity.** A logistic head on the clause embedding gives a polarity logit. It is trained on
  what a shop has, its star ratings, read at the clause (:func:`polarity_training_set`): titles
  and short reviews carry their review's stars; longer reviews give their clauses that name an
  aspect, negative in 1-2 star reviews and right after a contrast word ("but", "however",
  "porém") in 4-5 star ones, positive in 5-star ones. Stars say little about a fit remark ("Runs
  small" is a common 4-star title), so the head's logit is mixed with an aspect-conditioned term,
  the clause's similarity to the aspect's positive minus its negative example opinions; the two
  weights, a bias and each aspect's offset to it (how often remarks on the aspect are complaints:
  sizing remarks far more often than price remarks) are calibrated on the same labelled rows'
  cells, classes balanced (:func:`calibrate_mix`). When the review's star rating is known (the
  report always passes it; :func:`aspect_opinions` takes ``ratings``), a third term, the rating
  centred on 3 stars, enters the mix with its own calibrated weights (``mix_rated``): a clause's
  wording still decides against the stars ("love it but it runs small" in a 5-star review), while
  the stars settle clauses the head reads weakly. An aspect is negative when one of the clauses that tag
  it is a confident complaint, else the sign of their mean logit; clauses that disagree very
  confidently make it mixed (0). The head reads the clause embeddings made for tagging. In
  English, a tagging clause with a complaint cue in its words (:mod:`cvlib.insight.complaints`:
  "runs a bit small", "too pricey", "a little see-through") makes the aspect negative whatever
  the stars and the head say: stars teach the head that such hedged remarks of 5-star reviews
  are praise.

Both use the pretrained MiniLM, the encoder the thresholds and the mix are calibrated for (the
run's fine-tuned sentiment encoder is not used here). Without a run folder, English uses the head
shipped with cvlib (``aspect_polarity_en.npz``, trained on the Women's E-Commerce Clothing
Reviews titles and short reviews, CC0; provenance in ``aspects_labelled.md``); with a finished run
folder, the head the run learnt from that shop's rated reviews (``models/aspects/``).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import os
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib.insight import aspects as lexicon
from cvlib.insight import complaints

EmbedFn = Callable[[list[str]], np.ndarray]  # texts -> [n, dim] L2-normalised rows

LANGUAGES = ("en", "pt")
# Words allowed between the words of a multi-word keyword ("runs a little large").
MAX_GAP = 2
# Typo tolerance only on keywords at least this long (and without a vocabulary neighbour).
FUZZY_MIN_LEN = 7
# A clause of at most this many words, none a stop word, is tagged by its keyword alone.
SHORT_CLAUSE = 2
# A clause whose polarity logit is below -COMPLAINT_LOGIT (P(positive) 0.18) is a complaint, and
# a complaint makes the aspect negative however much praise the review's other clauses give it,
# unless clauses disagree very confidently (one above MIXED_LOGIT, another below -MIXED_LOGIT,
# P(positive) 0.95 / 0.05): the aspect is then mixed (0).
COMPLAINT_LOGIT = 1.5
MIXED_LOGIT = 3.0
# An aspect keeps its own offset to the mix's bias (key "bias:<aspect>") when the calibration has
# at least this many labelled pos/neg cells of it; other aspects (and a shop's own aspects) use
# the shared bias, the centre of the aspects' biases.
ASPECT_BIAS_MIN_CELLS = 10
# Where the aspect model of a run lives inside its run folder.
RUN_SUBDIR = Path("models") / "aspects"
MODEL_FILE = "aspect_model.json"
HEAD_FILE = "polarity_head.npz"
CALIBRATION_FILE = "aspect_calibration.json"
DEFAULT_HEAD = {"en": "aspect_polarity_en.npz"}


@dataclasses.dataclass(frozen=True)
class AspectSpec:
  """One aspect: its name, sentences describing opinions on it (tagging), its reliable keywords,
  and example positive and negative opinions on it (the aspect-conditioned part of polarity)."""
  name: str
  descriptions: tuple[str, ...]
  keywords: tuple[str, ...]
  positive: tuple[str, ...]
  negative: tuple[str, ...]


def _spec(name: str, descriptions: Sequence[str], keywords: Sequence[str],
          positive: Sequence[str] = (), negative: Sequence[str] = ()) -> AspectSpec:
  if not descriptions or not positive or not negative:
    raise ValueError(f"aspect {name!r}: needs descriptions, positive and negative examples")
  return AspectSpec(name, tuple(descriptions), tuple(keywords), tuple(positive), tuple(negative))


# Example opinions per aspect, positive then negative: a clause's similarity to them is the
# aspect-conditioned part of its polarity ("a surprisingly baggy fit" is near "too big and baggy").
ENGLISH_EXAMPLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "delivery": (("fast delivery, it arrived quickly", "shipping was quick and on time",
                  "arrived earlier than expected"),
                 ("the delivery was slow and late", "it took weeks to arrive", "it never arrived",
                  "still waiting for my order")),
    "quality": (("great quality, well made", "the fabric is soft and nice", "sturdy and durable",
                 "high quality material", "it works perfectly and feels solid"),
                ("poor quality, cheaply made", "the fabric is thin, scratchy and see-through",
                 "it broke after a week", "it stopped working", "it fell apart and has holes",
                 "it wrinkles and pills")),
    "price": (("great price, good value for money", "worth every penny",
               "affordable and cheap for what you get", "a great deal on sale"),
              ("overpriced, too expensive", "not worth the money", "waste of money",
               "too pricey for what it is")),
    "size_fit": (("fits perfectly, true to size", "the length is just right", "fits like a glove",
                  "the size is perfect"),
                 ("runs small, too tight", "runs large, too big and baggy", "too long",
                  "too short", "I had to size down", "it is too small",
                  "boxy and wide, does not fit")),
    "service": (("customer service was helpful and quick", "the seller was great and responsive",
                 "easy refund and replacement"),
                ("customer service was rude and unhelpful", "the seller sent the wrong item",
                 "they refused a refund", "items were missing from my order")),
    "packaging": (("well packaged, nice box", "it came carefully wrapped", "pretty packaging"),
                  ("the box was crushed and damaged", "poorly packed, it leaked",
                   "the packaging was broken")),
}
PORTUGUESE_EXAMPLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "delivery": (("entrega rapida, chegou antes do prazo", "chegou no prazo, tudo certo"),
                 ("a entrega atrasou", "ainda nao recebi o produto", "demorou muito para chegar")),
    "quality": (("produto de otima qualidade", "muito bem feito e resistente"),
                ("produto de pessima qualidade", "veio com defeito e quebrou",
                 "nao funciona, material fragil")),
    "price": (("preco otimo, bom custo beneficio", "barato e vale a pena"),
              ("muito caro", "o frete e caro", "nao vale o preco")),
    "size_fit": (("o tamanho serviu perfeitamente", "tamanho certo"),
                 ("o tamanho e pequeno", "ficou apertado", "muito grande, nao serviu")),
    "service": (("otimo atendimento", "o vendedor foi atencioso e resolveu"),
                ("recebi o produto errado", "veio modelo diferente", "faltou um item do pedido",
                 "o vendedor nao respondeu")),
    "packaging": (("produto bem embalado", "embalagem perfeita"),
                  ("embalagem violada", "a caixa veio amassada", "mal embalado")),
}

ENGLISH_SPECS: tuple[AspectSpec, ...] = (
    _spec("delivery", (
        "the delivery was fast and the package arrived on time",
        "shipping took weeks and the order arrived late",
        "it never arrived, the courier lost my parcel",
    ), ("delivery", "deliver", "delivered", "shipping", "shipped", "shipment", "arrive",
        "arrived", "arrival", "courier", "dispatch", "dispatched", "postage", "tracking",
        "on time", "took forever", "took weeks", "took ages", "came quickly", "came fast",
        "came early", "came late", "arrived late", "arrived early", "arrived quickly",
        "next day", "in transit", "fast ship", "quick ship", "never received",
        "never arrived", "came right away", "no damage"),
        *ENGLISH_EXAMPLES["delivery"]),
    _spec("quality", (
        "the fabric and material quality is good and it is well made",
        "poor quality, it broke and fell apart after a few uses",
        "the material is thin, cheap and see-through",
        "it stopped working and is defective",
        "it does not work properly: it won't charge, won't stay on and keeps coming off",
    ), ("quality", "well made", "poorly made", "badly made", "cheaply made", "well built",
        "built well", "made well", "durable", "durability", "sturdy", "flimsy", "material",
        "fabric", "stitching", "seam", "seams", "fell apart", "falls apart", "ripped", "tore",
        "torn", "broke", "broken", "breaks", "defective", "defect", "faulty", "craftsmanship",
        "stopped working", "doesn't work", "does not work", "not working", "quit working",
        "don't work", "won't work", "won't charge", "wouldn't charge", "not charging",
        "stopped charging", "stay connected", "won't stay", "malfunction", "malfunctioned",
        "came apart", "coming off", "keeps coming", "kept coming",
        "gave out", "cheap", "cheaply", "feels cheap", "looks cheap", "didn't last",
        "wore out", "worn out", "pilling", "pilled", "see through", "sheer", "thin", "scratchy",
        "itchy", "shed", "sheds", "shedding", "snag", "snagged", "holes", "unravel",
        "shrank", "shrunk", "lining", "soft", "softness", "leak", "leaked", "leaks",
        "scratched", "peel", "peels", "peeling", "wrinkle", "wrinkles", "pop off",
        "popped off", "came off", "fall off", "fell off", "warm", "lightweight", "sturdiness",
        "inferior", "adhere",
        # durability and failure words of any durable good (the labelling guide's quality
        # definition: breaks, cracks, rusts, flimsy or sturdy, dead on arrival, holds up)
        "fragile", "crack", "cracked", "cracks", "rust", "rusted", "rusty", "failed",
        "substandard", "sturdier", "flimsier", "well constructed", "poorly constructed",
        "build quality", "dead on arrival", "chipped", "dented", "warped", "held up",
        "holds up", "still working", "still works", "workmanship",
        # the guide's defects of other goods: food gone off, kits short of pieces, parts that
        # bend, split or sag, machines that jam (issue 20, sixth draw)
        "split", "splitting", "mold", "moldy", "stale", "expired", "rancid", "spoiled",
        "missing pieces", "pieces missing", "missing parts", "parts missing", "zipper", "stiff",
        "bent", "bends", "sag", "sagging", "come apart", "comes apart", "coming apart",
        "fall apart", "falling apart", "jammed", "jams", "dried out", "poorly finished",
        "cheap plastic", "dollar store",
        # a food's condition, things that wobble, melt or freeze, "still looks brand new"
        # (issue 20, eighth draw)
        "fresh", "freshness", "wobbly", "melted", "reliable", "brand new", "error code",
        "freezes", "mushy",
        # parts that fail to do their job, whatever the negation ("would not stay attached",
        # "the glue didn't hold", "wouldn't click closed"; the guide's "won't stay connected")
        "not stay", "not hold", "not stick", "not latch", "not lock", "not unlock", "not click",
        "not seal", "not charge", "not connect", "not turn on", "not power on", "not last"),
        *ENGLISH_EXAMPLES["quality"]),
    _spec("price", (
        "good value for the money, a great price",
        "it is overpriced and too expensive for what you get",
        "worth every penny, I got it on sale",
    ), ("price", "priced", "pricey", "overpriced", "expensive", "inexpensive", "affordable",
        "cost", "bargain", "value for money", "good value", "great value", "poor value",
        "value", "worth the money", "worth every penny", "worth the price", "worth it",
        "waste of money", "waste your money", "deal", "discount", "sale", "full price",
        "money", "paid", "for the price", "cheaper", "reasonably priced", "reasonable",
        "dollars", "bucks", "costly", "pricy", "save your money", "price point",
        "you get what you pay for", "for what you get", "pay for", "spend", "spent",
        "worth buying", "worth the investment", "a steal", "great buy", "good buy",
        "good purchase", "as cheap as"),
        *ENGLISH_EXAMPLES["price"]),
    _spec("size_fit", (
        "it fits true to size and the length is perfect",
        "it runs small, too tight, I should have sized up",
        "the size was too big and baggy, way too long",
        "it fits my phone perfectly",
    ), ("size", "sizing", "sized", "fit", "fits", "fitted", "fitting", "too small", "too big",
        "too large", "too tight", "too loose", "too long", "too short", "tight", "loose",
        "snug", "baggy", "roomy", "runs small", "runs large", "runs big", "run small",
        "run large", "run big", "true to size", "tts", "size up", "size down", "sized up",
        "sized down", "smaller than", "bigger than", "larger than", "smaller then",
        "bigger then", "smaller", "bigger", "waist", "length", "petite", "oversized", "boxy",
        "small", "large", "big", "wide", "compact", "compatible", "dig into"),
        *ENGLISH_EXAMPLES["size_fit"]),
    _spec("service", (
        "customer service was helpful and the seller answered quickly",
        "the seller sent the wrong item and refused a refund",
        "the warranty replacement process was easy",
    ), ("customer service", "service", "seller", "vendor", "staff", "refund", "refunded",
        "return policy", "replacement", "warranty", "guarantee", "responded", "response",
        "reply", "replied", "unhelpful", "rude", "polite", "contacted", "complaint",
        "customer care", "wrong item", "sent the wrong", "missing", "answer", "answered",
        "email", "emailed", "emails", "customer support", "support team", "transaction",
        "out of business", "packing list"),
        *ENGLISH_EXAMPLES["service"]),
    _spec("packaging", (
        "it was well packaged in a nice box",
        "the box was crushed and the bottle leaked in the packaging",
        "the jar and pump dispenser packaging",
    ), ("packaging", "packed", "packaged", "box", "boxed", "wrapped", "wrapping",
        "bubble wrap", "envelope", "padding", "padded", "sealed", "bottle", "jar", "pump",
        "tube", "container", "dispenser", "packages", "bag", "bagged", "boxing", "gift box"),
        *ENGLISH_EXAMPLES["packaging"]),
)

PORTUGUESE_SPECS: tuple[AspectSpec, ...] = (
    _spec("delivery", (
        "a entrega foi rapida e chegou antes do prazo",
        "o produto atrasou e ainda nao recebi",
        "delivery was fast and it arrived before the deadline",
    ), ("entrega", "entregue", "entregou", "chegou", "chegaram", "chegada", "prazo", "atraso",
        "atrasado", "atrasou", "correios", "demorou", "rapido", "rapida", "rapidez",
        "agilidade", "nao recebi", "ainda nao", "antes do prazo", "veio com atraso",
        "aguardando", "receber", "recebo tudo", "veio tudo", "vieram", "pontual",
        "pontualidade", "transportadora", "prometido"),
        *PORTUGUESE_EXAMPLES["delivery"]),
    _spec("quality", (
        "o produto e de otima qualidade e bem feito",
        "veio com defeito, quebrou e nao funciona",
        "good quality product, it broke, defective",
    ), ("qualidade", "material", "defeito", "defeituoso", "quebrado", "quebrada", "quebrou",
        "resistente", "fragil", "frageis", "acabamento", "durou", "bem feito", "mal feito",
        "riscado", "risco", "falsificado", "nao funciona", "parou de funcionar",
        "de verdade", "inferior", "tecido", "rasgou", "rasgado", "rasgada", "estraga",
        "estragou", "estragado", "pirata", "falso", "falsa", "partes faltando",
        "pecas faltando", "encaixa", "encaixava", "fino", "fina"),
        *PORTUGUESE_EXAMPLES["quality"]),
    _spec("price", (
        "preco bom, otimo custo beneficio",
        "muito caro, o frete caro",
        "good price and value for money",
    ), ("preco", "caro", "cara", "barato", "barata", "custo beneficio", "valor", "desconto",
        "promocao", "frete caro", "frete barato", "vale a pena", "dinheiro", "custam", "custa"),
        *PORTUGUESE_EXAMPLES["price"]),
    _spec("size_fit", (
        "o tamanho ficou pequeno e apertado",
        "serviu perfeitamente, tamanho certo",
        "the size was too small",
    ), ("tamanho", "pequeno", "pequena", "grande", "apertado", "folgado", "medida", "medidas",
        "serviu"),
        *PORTUGUESE_EXAMPLES["size_fit"]),
    _spec("service", (
        "otimo atendimento da loja e do vendedor",
        "recebi o produto errado, veio modelo diferente e faltou um item",
        "the seller sent the wrong item",
    ), ("atendimento", "atendendo", "vendedor", "vendedora", "loja", "suporte", "reclamacao",
        "reenvio", "so recebi", "outro tipo",
        "resposta", "respondeu", "reembolso", "devolucao", "estorno", "cancelamento",
        "item errado", "produto errado", "errado", "modelo diferente", "diferente", "faltou",
        "faltando", "apenas 1", "somente 1", "recebi apenas", "recebi somente", "so veio",
        "site", "contato", "empresa", "estoque", "fraude", "informado", "informada", "parceira",
        "parceiro", "outra marca"),
        *PORTUGUESE_EXAMPLES["service"]),
    _spec("packaging", (
        "o produto veio bem embalado",
        "a embalagem veio violada e a caixa amassada",
        "it was well packaged",
    ), ("embalagem", "embalado", "embalada", "embalados", "caixa", "lacrado", "lacre",
        "plastico bolha", "acondicionado", "acondicione", "intacto", "intactas", "intatas"),
        *PORTUGUESE_EXAMPLES["packaging"]),
)

SPECS = {"en": ENGLISH_SPECS, "pt": PORTUGUESE_SPECS}

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# English negations, written "not" before keywords are matched (keywords too), so that one keyword
# covers "doesn't stay", "did not stay", "would not stay", "never stays": "not stay".
_NEGATION = re.compile(r"\b(?:doesn't|does not|didn't|did not|don't|do not|won't|will not|wouldn't|"
                       r"would not|can't|cannot|can not|couldn't|could not|isn't|wasn't|aren't|"
                       r"weren't|never)\b")
# A cosmetic's or a food's effect ("leaves my skin soft", "makes my hair feel silky", "keeps the
# cuticles soft"): the labelling guide does not count it as the product's quality, so in a clause
# with such a construction these words are no keywords.
EFFECT_WORDS = ("soft", "smooth", "silky", "warm", "fresh", "moisturized", "hydrated", "clean",
                "dry")
_EFFECT = re.compile(r"\b(?:leaves?|left|leaving|makes?|made|making|keeps?|kept|keeping)\b"
                     r"(?:\s+\w+){0,3}?\s+(?:feel(?:ing)?\s+|look(?:ing)?\s+|so\s+|very\s+|"
                     rf"super\s+|really\s+|nice\s+and\s+)*(?:{'|'.join(EFFECT_WORDS)})\b")


def _negations_as_not(text: str) -> str:
  """Folded text with its English negations written "not" (keywords and clauses alike)."""
  return _NEGATION.sub("not", fold(text))


def keyword_tokens(text: str) -> list[str]:
  """The tokens keywords are matched on: folded, English negations written "not", and the
  effect words of an effect construction (``_EFFECT``) left out."""
  folded = _negations_as_not(text)
  toks = _TOKEN.findall(folded)
  if _EFFECT.search(folded):
    toks = [t for t in toks if t not in EFFECT_WORDS]
  return toks


_SENTENCE_SPLIT = re.compile(r"[.!?;\n]+")


def sentences(text: str) -> list[str]:
  """A review's sentences (HTML line breaks, as some review dumps write them, end one too)."""
  return _SENTENCE_SPLIT.split(text.replace("<br />", "\n"))


def fold(text: str) -> str:
  """Lower-case without accents ("Preço" -> "preco"); curly apostrophes become straight."""
  text = unicodedata.normalize("NFKD", text.replace("\u2019", "'").lower())
  return "".join(c for c in text if not unicodedata.combining(c))


def _one_edit(a: str, b: str) -> bool:
  """a and b differ by exactly one insertion, deletion or substitution."""
  if a == b or abs(len(a) - len(b)) > 1:
    return False
  if len(a) > len(b):
    a, b = b, a
  i = 0
  while i < len(a) and a[i] == b[i]:
    i += 1
  return a[i + (len(a) == len(b)):] == b[i + 1:]


def _deletes(word: str) -> set[str]:
  return {word[:i] + word[i + 1:] for i in range(len(word))} | {word}


@functools.lru_cache(maxsize=1)
def vocabulary_words() -> frozenset[str]:
  """Whole alphabetic words of the MiniLM tokenizer's vocabulary (no ``##`` pieces): the word
  list behind the typo rule."""
  from cvlib.text import tokens  # pylint: disable=import-outside-toplevel
  vocab = tokens.load_tokenizer().get_vocab()
  return frozenset(w for w in vocab if w.isalpha() and w.isascii() and len(w) > 1)


class KeywordMatcher:
  """Keywords over stemmed tokens (:func:`keyword_tokens`): multi-word ones with gaps, typos only
  where unambiguous."""

  def __init__(self, specs: Sequence[AspectSpec], vocabulary: frozenset[str] = frozenset()):
    self.names = [s.name for s in specs]
    self.phrases: list[tuple[int, tuple[str, ...]]] = []
    words: set[str] = set()
    for a, spec in enumerate(specs):
      for phrase in spec.keywords:
        toks = tuple(lexicon.stem(t) for t in _TOKEN.findall(_negations_as_not(phrase)))
        if toks:
          self.phrases.append((a, toks))
          words.update(toks)
    self.words = words
    self.vocabulary = vocabulary
    # Typo targets: long keyword stems with no other vocabulary word one edit away.
    by_delete: dict[str, set[str]] = {}
    for v in vocabulary:
      if len(v) >= FUZZY_MIN_LEN - 1:
        for d in _deletes(v):
          by_delete.setdefault(d, set()).add(v)
    self._targets: dict[str, set[str]] = {}
    for word in words:
      if len(word) < FUZZY_MIN_LEN:
        continue
      near = set().union(*(by_delete.get(d, set()) for d in _deletes(word)))
      if any(_one_edit(v, word) and lexicon.stem(v) != word for v in near):
        continue
      for d in _deletes(word):
        self._targets.setdefault(d, set()).add(word)
    self._cache: dict[str, str] = {}

  def normal(self, token: str) -> str:
    """The token's stem, or the keyword stem it is a typo of."""
    s = lexicon.stem(token)
    if s in self.words or len(s) < FUZZY_MIN_LEN or token in self.vocabulary:
      return s
    hit = self._cache.get(s)
    if hit is None:
      cands = sorted(w for d in _deletes(s) for w in self._targets.get(d, ()) if _one_edit(s, w))
      hit = cands[0] if cands else s
      self._cache[s] = hit
    return hit

  def match(self, clause: str) -> np.ndarray:
    """[n_aspects] bool: which aspects have a keyword in ``clause``."""
    toks = [self.normal(t) for t in keyword_tokens(clause)]
    present = set(toks)
    out = np.zeros(len(self.names), dtype=bool)
    for a, phrase in self.phrases:
      if out[a] or not set(phrase) <= present:
        continue
      out[a] = _in_order(toks, phrase)
    return out


def _in_order(toks: list[str], phrase: tuple[str, ...]) -> bool:
  """phrase's tokens occur in toks in order, at most MAX_GAP tokens apart."""
  if len(phrase) == 1:
    return phrase[0] in toks
  for start in (i for i, t in enumerate(toks) if t == phrase[0]):
    pos, ok = start, True
    for word in phrase[1:]:
      window = toks[pos + 1:pos + 2 + MAX_GAP]
      if word not in window:
        ok = False
        break
      pos = pos + 1 + window.index(word)
    if ok:
      return True
  return False


@dataclasses.dataclass
class PolarityHead:
  """Logistic regression on a clause embedding: P(positive) = sigmoid(x . weights + bias)."""
  weights: np.ndarray  # [dim]
  bias: float
  trained_on: dict[str, Any]  # what it learnt from: sources, counts, label rule, encoder

  def proba(self, vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[1] != self.weights.shape[0]:
      raise ValueError(f"polarity head: embeddings of width {self.weights.shape[0]} needed, got "
                       f"shape {vectors.shape}")
    return 1.0 / (1.0 + np.exp(-(vectors @ self.weights + self.bias)))

  def save(self, path: str | os.PathLike) -> None:
    np.savez(path, weights=self.weights.astype(np.float32), bias=np.float32(self.bias),
             trained_on=np.array(json.dumps(self.trained_on)))

  @classmethod
  def load(cls, path: str | os.PathLike) -> PolarityHead:
    with np.load(path, allow_pickle=False) as f:
      return cls(f["weights"].astype(np.float64), float(f["bias"]),
                 json.loads(str(f["trained_on"])))


# Titles and reviews of at most this many words are one opinion, labelled by their stars; the
# polarity head learns from at most HEAD_EXAMPLES texts.
SHORT_TEXT_WORDS = 12
HEAD_EXAMPLES = 6000


def polarity_training_set(texts: Sequence[str], ratings: Sequence[float], *,
                          titles: Sequence[str] | None = None,
                          matcher: KeywordMatcher | None = None,
                          max_words: int = SHORT_TEXT_WORDS, max_examples: int = HEAD_EXAMPLES,
                          seed: int = 0) -> tuple[list[str], np.ndarray]:
  """Opinion texts with labels from the stars: the polarity head's training data.

  Titles and reviews of at most ``max_words`` words are nearly always one opinion, so their stars
  label it: 1-2 stars negative, 4-5 positive, 3 left out. With a ``matcher``, longer reviews add
  their clauses that name an aspect (a keyword of it), labelled at the clause: every such clause
  of a 1-2 star review is negative; one of a 5-star review is positive, unless it is the first
  clause after a contrast word ("love the colour, but the fabric is thin"): in a 4 or 5-star
  review that is the complaint, a negative; other clauses of 4-star reviews are left out (praise
  and reservations mix there). Stars are a review-level signal: these clause-level rules keep
  the complaints inside well-rated reviews from being learnt as praise. At most ``max_examples``
  are kept (a seeded sample, negatives kept whole up to half the budget).

  Args:
    texts: review texts (None allowed).
    ratings: their 1-5 stars (NaN allowed: left out).
    titles: optional review titles, aligned with texts.
    matcher: keyword matcher of the aspect list (None: short texts and titles only).
    max_words: longest review text used whole.
    max_examples: cap on the training set.
    seed: sampling seed.

  Returns:
    (texts, labels) with labels 1 positive, 0 negative.

  Raises:
    ValueError: texts, ratings (and titles) are not aligned.
  """
  texts = list(texts)
  ratings = np.asarray(ratings, dtype=float)
  if len(texts) != len(ratings) or (titles is not None and len(titles) != len(texts)):
    raise ValueError(f"polarity_training_set: {len(texts)} texts, {len(ratings)} ratings"
                     + (f", {len(titles)} titles" if titles is not None else "") +
                     " (need one each)")
  out_texts, out_labels, long = [], [], []
  candidates = [texts] + ([list(titles)] if titles is not None else [])
  for column in candidates:
    for i, (text, stars) in enumerate(zip(column, ratings)):
      if not isinstance(text, str) or not text.strip() or not np.isfinite(stars) or stars == 3:
        continue
      if len(text.split()) <= max_words:
        out_texts.append(text.strip())
        out_labels.append(int(stars >= 4))
      elif column is texts:
        long.append(i)
  if matcher is not None:
    # long reviews in a seeded order, until each class has twice the budget (large shops)
    counts = np.bincount(np.asarray(out_labels, dtype=int), minlength=2)
    for i in np.random.default_rng(seed).permutation(np.asarray(long, dtype=int)):
      if counts.min() >= max_examples:
        break
      for clause, label in _aspect_clauses(texts[i], ratings[i], matcher):
        out_texts.append(clause)
        out_labels.append(label)
        counts[label] += 1
  labels = np.asarray(out_labels, dtype=int)
  if len(labels) > max_examples:
    rng = np.random.default_rng(seed)
    neg, pos = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    n_neg = min(len(neg), max_examples // 2)
    keep = np.sort(np.r_[rng.choice(neg, n_neg, replace=False),
                         rng.choice(pos, min(len(pos), max_examples - n_neg), replace=False)])
    out_texts = [out_texts[i] for i in keep]
    labels = labels[keep]
  return out_texts, labels


def _aspect_clauses(text: str, stars: float, matcher: KeywordMatcher
                    ) -> list[tuple[str, int]]:
  """The clauses of a long review that name an aspect, with their clause-level label."""
  out = []
  for sentence in sentences(text):
    for clause, after_contrast in lexicon.split_contrast(sentence):
      if stars == 4 and not after_contrast:
        continue
      if len(clause.split()) < 2 or not matcher.match(clause).any():
        continue
      out.append((clause, 0 if stars <= 2 or after_contrast else 1))
  return out


def fit_polarity_head(vectors: np.ndarray, labels: np.ndarray, *, trained_on: dict[str, Any],
                      c: float = 4.0) -> PolarityHead:
  """Class-balanced L2 logistic regression on embeddings (sklearn, lbfgs, deterministic).

  Raises:
    ValueError: fewer than 20 examples of either class.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  labels = np.asarray(labels, dtype=int)
  counts = np.bincount(labels, minlength=2)
  if counts.min() < 20:
    raise ValueError(f"polarity head: need at least 20 negative and 20 positive short texts, "
                     f"have {counts[0]} negative and {counts[1]} positive")
  clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
  clf.fit(np.asarray(vectors, dtype=np.float64), labels)
  info = dict(trained_on, n_negative=int(counts[0]), n_positive=int(counts[1]), c=c)
  return PolarityHead(clf.coef_[0].astype(np.float64), float(clf.intercept_[0]), info)


@dataclasses.dataclass
class AspectModel:
  """Everything that turns clause embeddings into aspect tags and polarities."""
  language: str
  specs: tuple[AspectSpec, ...]
  floor: dict[str, float]  # keyword + similarity >= floor tags the aspect
  alone: dict[str, float]  # similarity >= alone tags it without a keyword (> 1: never)
  head: PolarityHead
  # polarity logit of a clause = head * head logit + examples * (similarity to the aspect's
  # positive examples - to its negative ones) + bias; calibrated on labelled cells
  mix: dict[str, float] = dataclasses.field(
      default_factory=lambda: {"head": 1.0, "examples": 0.0, "bias": 0.0})
  calibration: dict[str, Any] = dataclasses.field(default_factory=dict)
  # the mix for reviews whose star rating is known: the same terms plus ``rating`` times the
  # centred stars (:func:`rating_term`); None: ratings are not used
  mix_rated: dict[str, float] | None = None
  # a tagging clause with a complaint cue (:mod:`cvlib.insight.complaints`) makes the aspect
  # negative (languages with cues only); False: the mix alone decides
  complaint_cues: bool = True

  @property
  def names(self) -> list[str]:
    return [s.name for s in self.specs]

  def save(self, folder: str | os.PathLike) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    self.head.save(folder / HEAD_FILE)
    (folder / MODEL_FILE).write_text(json.dumps({
        "format": 1, "language": self.language,
        "specs": [dataclasses.asdict(s) for s in self.specs],
        "floor": self.floor, "alone": self.alone, "mix": self.mix,
        "mix_rated": self.mix_rated, "complaint_cues": self.complaint_cues,
        "calibration": self.calibration}, indent=2) + "\n")

  @classmethod
  def load(cls, folder: str | os.PathLike) -> AspectModel:
    folder = Path(folder)
    for name in (MODEL_FILE, HEAD_FILE):
      if not (folder / name).is_file():
        raise FileNotFoundError(f"{folder / name}: aspect model file missing (a run folder "
                                f"written by cvlib keeps it in {RUN_SUBDIR})")
    d = json.loads((folder / MODEL_FILE).read_text())
    specs = tuple(_spec(s["name"], s["descriptions"], s["keywords"], s["positive"],
                        s["negative"]) for s in d["specs"])
    return cls(d["language"], specs, {k: float(v) for k, v in d["floor"].items()},
               {k: float(v) for k, v in d["alone"].items()}, PolarityHead.load(folder / HEAD_FILE),
               {k: float(v) for k, v in d["mix"].items()}, d.get("calibration", {}),
               _floats(d.get("mix_rated")), bool(d.get("complaint_cues", True)))


def _floats(mix: Mapping[str, Any] | None) -> dict[str, float] | None:
  return None if mix is None else {k: float(v) for k, v in mix.items()}


def specs_from(aspects: Mapping[str, Any] | None, language: str) -> tuple[AspectSpec, ...]:
  """The aspect list: the language's defaults, or the params' ``segment.aspects`` (name -> an
  object with ``descriptions``, ``positive``, ``negative`` and ``keywords``) when not empty.

  Raises:
    ValueError: an unsupported language, or an aspect without descriptions or examples.
  """
  if language not in SPECS:
    raise ValueError(f"language {language!r} has no aspect model; supported: "
                     f"{', '.join(LANGUAGES)}")
  if not aspects:
    return SPECS[language]
  return tuple(_spec(name, a.descriptions, a.keywords, a.positive, a.negative)
               for name, a in aspects.items())


# --- scoring -------------------------------------------------------------------------------------

@dataclasses.dataclass
class ClauseTable:
  """The clauses of a set of reviews and what the model needs of them."""
  clauses: list[str]
  owner: np.ndarray  # [n_clauses] review position
  keyword: np.ndarray  # [n_clauses, n_aspects] bool
  similarity: np.ndarray  # [n_clauses, n_aspects] max cosine to the aspect's descriptions
  examples: np.ndarray  # [n_clauses, n_aspects] max cosine to positive - to negative examples
  vectors: np.ndarray | None = None  # [n_clauses, dim] the clause embeddings (tagging encoder)
  # [n_clauses] bool: a bare verdict on a keyword ("awful service"), see short_verdicts
  short: np.ndarray | None = None

  def of_reviews(self, positions: Sequence[int]) -> ClauseTable:
    """The clauses of the reviews at ``positions`` of this table, those reviews renumbered
    0..len(positions)-1 in that order: the table :func:`clause_table` makes of those reviews, so
    that clauses split and embedded once serve several subsets (the calibration's folds)."""
    positions = np.asarray(positions, dtype=int)
    size = max(int(positions.max(initial=-1)), int(self.owner.max(initial=-1))) + 1
    renumber = np.full(size, -1)
    renumber[positions] = np.arange(len(positions))
    keep = np.flatnonzero(renumber[self.owner] >= 0)
    keep = keep[np.argsort(renumber[self.owner[keep]], kind="stable")]  # in the new order
    return ClauseTable([self.clauses[j] for j in keep], renumber[self.owner[keep]],
                       self.keyword[keep], self.similarity[keep], self.examples[keep],
                       None if self.vectors is None else self.vectors[keep],
                       None if self.short is None else self.short[keep])


def split_reviews(texts: Sequence[str | None]) -> tuple[list[str], np.ndarray]:
  """All clauses (sentences split by :func:`cvlib.insight.aspects.split_clauses`) and the review
  position of each."""
  clauses, owner = [], []
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      continue
    for part in sentences(text):
      pieces = lexicon.split_clauses(part)
      clauses += pieces
      owner += [i] * len(pieces)
  return clauses, np.asarray(owner, dtype=int)


def _max_by_group(sim: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
  out = np.full((sim.shape[0], n_groups), -1.0, dtype=np.float32)
  for g in range(n_groups):
    out[:, g] = sim[:, groups == g].max(axis=1)
  return out


def clause_table(texts: Sequence[str | None], specs: Sequence[AspectSpec], tag_embed: EmbedFn,
                 matcher: KeywordMatcher) -> ClauseTable:
  """Splits reviews into clauses, matches keywords, embeds clauses, descriptions and examples."""
  clauses, owner = split_reviews(texts)
  n_a = len(specs)
  keyword = (np.stack([matcher.match(c) for c in clauses]) if clauses
             else np.zeros((0, n_a), dtype=bool))
  similarity = np.full((len(clauses), n_a), -1.0, dtype=np.float32)
  examples = np.zeros((len(clauses), n_a), dtype=np.float32)
  c_vecs = None
  if clauses:
    refs = [(a, kind, text) for a, s in enumerate(specs)
            for kind, texts_ in (("d", s.descriptions), ("p", s.positive), ("n", s.negative))
            for text in texts_]
    r_vecs = _unit(tag_embed([r[2] for r in refs]), len(refs))
    c_vecs = _unit(tag_embed(clauses), len(clauses))
    sim = c_vecs @ r_vecs.T  # [n_clauses, n_refs]
    kinds = np.array([r[1] for r in refs])
    aspect = np.array([r[0] for r in refs])
    similarity = _max_by_group(sim[:, kinds == "d"], aspect[kinds == "d"], n_a)
    examples = (_max_by_group(sim[:, kinds == "p"], aspect[kinds == "p"], n_a)
                - _max_by_group(sim[:, kinds == "n"], aspect[kinds == "n"], n_a))
  return ClauseTable(clauses, owner, keyword, similarity, examples, c_vecs,
                     short_verdicts(clauses))


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
  from cvlib.insight import topics  # pylint: disable=import-outside-toplevel
  return frozenset(fold(w) for w in topics.ENGLISH_STOP | topics.PORTUGUESE_STOP)


def short_verdicts(clauses: Sequence[str]) -> np.ndarray:
  """[n_clauses] bool: clauses of at most ``SHORT_CLAUSE`` words, none of them a stop word.

  Such a clause with a keyword is a verdict on the aspect ("awful service", "rubbish quality"):
  too short to resemble an aspect's descriptions (the similarity floor would drop it), and too
  short to use the keyword in another sense, so the keyword alone tags it.
  """
  stop = _stop_words()
  out = np.zeros(len(clauses), dtype=bool)
  for j, clause in enumerate(clauses):
    toks = _TOKEN.findall(fold(clause))
    out[j] = 0 < len(toks) <= SHORT_CLAUSE and not any(t in stop for t in toks)
  return out


def _unit(vectors: Any, n: int) -> np.ndarray:
  arr = np.asarray(vectors, dtype=np.float32)
  if arr.ndim != 2 or arr.shape[0] != n:
    raise ValueError(f"embed function: for {n} texts returned shape {arr.shape}")
  return arr


def tag_rule(keyword: np.ndarray, similarity: np.ndarray, short: np.ndarray | None, floor: Any,
          alone: Any) -> np.ndarray:
  """The tagging rule: a keyword with the clause's similarity to the aspect at least ``floor``
  (or in a short verdict clause), or the similarity alone at least ``alone``. ``keyword`` and
  ``similarity`` are [n_clauses] or [n_clauses, n_aspects], the thresholds broadcast over them."""
  if short is not None and keyword.ndim == 2:
    short = short[:, None]
  near = similarity >= floor
  if short is not None:
    near = near | short
  return (keyword & near) | (similarity >= alone)


def clause_hits(table: ClauseTable, names: Sequence[str], floor: Mapping[str, float],
                alone: Mapping[str, float]) -> np.ndarray:
  """[n_clauses, n_aspects] bool: the clause tags the aspect."""
  lo = np.array([floor[n] for n in names])[None, :]
  hi = np.array([alone[n] for n in names])[None, :]
  return tag_rule(table.keyword, table.similarity, table.short, lo, hi)


def cell_features(table: ClauseTable, hits: np.ndarray, head: PolarityHead,
                  polarity_embed: EmbedFn | None = None) -> dict[tuple[int, int], np.ndarray]:
  """(review, aspect) -> [n_tagging_clauses, 2]: head logit and example similarity per clause.

  The head reads the clause embeddings the table already holds unless ``polarity_embed`` names
  another encoder (a head trained on it); then the tagging clauses are embedded by that one.
  """
  used = np.flatnonzero(hits.any(axis=1))
  out: dict[tuple[int, int], list] = {}
  if not len(used):
    return {}
  if polarity_embed is None:
    if table.vectors is None:
      raise ValueError("cell_features: the clause table has no embeddings; pass polarity_embed")
    vectors = table.vectors[used]
  else:
    vectors = _unit(polarity_embed([table.clauses[j] for j in used]), len(used))
  p = head.proba(vectors)
  logit = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
  for j, z in zip(used, logit):
    for a in np.flatnonzero(hits[j]):
      out.setdefault((int(table.owner[j]), int(a)), []).append((z, table.examples[j, a]))
  return {cell: np.asarray(v, dtype=np.float64) for cell, v in out.items()}


def rating_term(stars: Any) -> float:
  """The review's stars as a polarity input: (stars - 3) / 2, within [-1, 1]; NaN when unknown."""
  stars = float(stars) if stars is not None and not pd.isna(stars) else math.nan
  return float(np.clip((stars - 3.0) / 2.0, -1.0, 1.0)) if math.isfinite(stars) else math.nan


def cell_polarity(features: np.ndarray, mix: Mapping[str, float], rating: float = math.nan,
                  mix_rated: Mapping[str, float] | None = None, aspect: str | None = None) -> int:
  """+1, -1, or 0 (clauses that very confidently disagree) from a cell's clause features.

  With a known ``rating`` (:func:`rating_term`) and a ``mix_rated``, that mix weighs the clause
  features and the rating; otherwise ``mix`` weighs the clause features. The mix's bias is
  shifted by its ``"bias:<aspect>"`` offset where it has one (how often opinions on that aspect
  are complaints: a sizing remark is one far more often than a remark on quality). A confident
  complaint (logit below ``-COMPLAINT_LOGIT``) makes the cell negative; otherwise the sign of the
  clauses' mean logit decides.
  """
  rated = mix_rated is not None and math.isfinite(rating)
  m = mix_rated if rated else mix
  z = m["head"] * features[:, 0] + m["examples"] * features[:, 1] + m["bias"]
  if rated:
    z = z + m["rating"] * rating
  if aspect is not None:
    z = z + m.get(f"bias:{aspect}", 0.0)
  return polarity_from_logits(z)


def polarity_from_logits(z: np.ndarray, complaint: float = COMPLAINT_LOGIT) -> int:
  """The cell rule on a cell's mixed clause logits: 0 when clauses very confidently disagree,
  -1 for a complaint below ``-complaint``, else the sign of their mean."""
  if z.max() > MIXED_LOGIT and z.min() < -MIXED_LOGIT:
    return 0
  if z.min() < -complaint:
    return -1
  return 1 if z.mean() >= 0 else -1


def score_reviews(texts: Sequence[str | None], model: AspectModel, *, tag_embed: EmbedFn,
                  polarity_embed: EmbedFn | None = None, matcher: KeywordMatcher | None = None,
                  ratings: Sequence[float] | None = None) -> pd.DataFrame:
  """Aspect polarity per review: +1, -1, 0 (mixed), <NA> (aspect not mentioned).

  Args:
    texts: review texts (None: nothing tagged).
    model: thresholds, polarity head and its mix.
    tag_embed: the encoder the thresholds were calibrated for (pretrained MiniLM).
    polarity_embed: the encoder the head was trained on, when it is not ``tag_embed`` (None:
      the head reads the clause embeddings made for tagging; clauses are embedded once).
    matcher: keyword matcher for ``model.specs`` (built when None).
    ratings: each review's stars (1-5; NaN/None: unknown), or None: none known.

  Returns:
    Int64 DataFrame, one row per text (RangeIndex), one column per aspect.
  """
  matcher = matcher or KeywordMatcher(model.specs, vocabulary_words())
  table = clause_table(texts, model.specs, tag_embed, matcher)
  return score_table(table, len(texts), model, polarity_embed=polarity_embed, ratings=ratings)


def score_table(table: ClauseTable, n_texts: int, model: AspectModel, *,
                polarity_embed: EmbedFn | None = None,
                ratings: Sequence[float] | None = None) -> pd.DataFrame:
  """:func:`score_reviews` on clauses already split and embedded (:func:`clause_table`)."""
  terms = _rating_terms(ratings, n_texts)
  hits = clause_hits(table, model.names, model.floor, model.alone)
  out = np.full((n_texts, len(model.specs)), pd.NA, dtype=object)
  cued = complaint_cells(table, hits, model.language) if model.complaint_cues else set()
  for (i, a), f in cell_features(table, hits, model.head, polarity_embed).items():
    out[i, a] = -1 if (i, a) in cued else cell_polarity(f, model.mix, terms[i], model.mix_rated,
                                                        model.names[a])
  return pd.DataFrame(out, columns=model.names).astype("Int64")


def complaint_cells(table: ClauseTable, hits: np.ndarray, language: str) -> set[tuple[int, int]]:
  """(review, aspect) cells one of whose tagging clauses carries a complaint cue
  (:mod:`cvlib.insight.complaints`: "runs a bit small", "too pricey"): negative whatever the
  stars and the head say."""
  used = np.flatnonzero(hits.any(axis=1))
  cues = complaints.complaint_cues([fold(table.clauses[j]) for j in used], language)
  return {(int(table.owner[j]), int(a)) for j in used[cues] for a in np.flatnonzero(hits[j])}


def _rating_terms(ratings: Sequence[float] | None, n: int) -> np.ndarray:
  if ratings is None:
    return np.full(n, math.nan)
  values = list(ratings)
  if len(values) != n:
    raise ValueError(f"ratings: {len(values)} values for {n} reviews")
  return np.array([rating_term(r) for r in values], dtype=float)


# --- calibration (on labelled reviews) ----------------------------------------------------------

def calibrate_thresholds(table: ClauseTable, labels: np.ndarray, names: Sequence[str],
                         groups: Sequence[Any] | None = None
                         ) -> tuple[dict[str, float], dict[str, float]]:
  """Per aspect, the (floor, alone) pair maximising the F1 of review tags against labels.

  Floors from -1 (any keyword) to 0.6, alone from 0.3 to 1.01 (never) in steps of 0.025; on equal
  F1 the higher ``alone`` and then the lower floor win (fewer tags without a keyword). With
  ``groups`` (each review's product domain) every group weighs the same in the F1, so that the
  largest domain does not set thresholds the others pay for ("small" is nearly always a size
  remark on clothes, not on a mouse).

  Args:
    table: from :func:`clause_table` over the labelled reviews.
    labels: [n_reviews, n_aspects] bool.
    names: aspect names, in the columns' order.
    groups: optional [n_reviews] group of each review.

  Returns:
    (floor, alone): dicts aspect -> threshold.
  """
  n = labels.shape[0]
  weight = np.ones(n)
  if groups is not None:
    _, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    weight = 1.0 / counts[inverse]
  floors = np.r_[-1.0, np.round(np.arange(0.05, 0.6001, 0.025), 3)]
  alones = np.r_[np.round(np.arange(0.3, 0.8001, 0.025), 3), 1.01]
  floor, alone = {}, {}
  for a, name in enumerate(names):
    y = labels[:, a].astype(bool)
    best = None
    for f in floors:
      for h in alones:
        hit = tag_rule(table.keyword[:, a], table.similarity[:, a], table.short, f, h)
        pred = np.zeros(n, dtype=bool)
        np.logical_or.at(pred, table.owner[hit], True)
        tp = weight[pred & y].sum()
        f1 = 2 * tp / max(weight[pred].sum() + weight[y].sum(), 1e-12)
        key = (round(f1, 9), h, -f)
        if best is None or key > best[0]:
          best = (key, float(f), float(h))
    floor[name], alone[name] = best[1], best[2]
  return floor, alone


def calibrate_mix(features: Sequence[np.ndarray], positive: Sequence[bool],
                  ratings: Sequence[float] | None = None,
                  aspects: Sequence[str] | None = None) -> dict[str, float]:
  """Weights of head logit and example similarity: logistic regression on labelled cells.

  Args:
    features: per labelled pos/neg cell, its [n_clauses, 2] features (:func:`cell_features`).
    positive: the cell's label.
    ratings: per cell, its review's :func:`rating_term` (every one known): the rating is then a
      third input (the ``mix_rated`` of a model).
    aspects: per cell, its aspect's name: each aspect with ``ASPECT_BIAS_MIN_CELLS`` cells or
      more gets an offset to the bias (``"bias:<aspect>"``), fitted with the other weights.

  Returns:
    {"head", "examples", "bias"}, "rating" when ``ratings`` are given, "bias:<aspect>" per
    aspect with enough cells when ``aspects`` are.

  Raises:
    ValueError: fewer than 5 cells of either polarity, or ratings / aspects not one per cell.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  y = np.asarray(positive, dtype=int)
  counts = np.bincount(y, minlength=2)
  if len(features) != len(y) or counts.min() < 5:
    raise ValueError(f"calibrate_mix: need aligned features and labels with 5+ cells of each "
                     f"polarity, have {counts[0]} negative and {counts[1]} positive")
  x = np.stack([f.mean(axis=0) for f in features])
  names = ["head", "examples"]
  if ratings is not None:
    r = np.asarray(ratings, dtype=float)
    if r.shape != (len(y),) or not np.isfinite(r).all():
      raise ValueError("calibrate_mix: ratings need one known value per cell")
    x = np.column_stack([x, r])
    names.append("rating")
  if aspects is not None:
    aspects = np.asarray(aspects, dtype=object)
    if aspects.shape != (len(y),):
      raise ValueError(f"calibrate_mix: {len(aspects)} aspect names for {len(y)} cells")
    # every aspect gets a column, so that the shared bias is their centre (the small penalty
    # splits the bias between them evenly); offsets of aspects with few cells are not kept
    count = collections.Counter(aspects)
    columns = sorted(count)
    x = np.column_stack([x, *[(aspects == a).astype(float) for a in columns]])
    names += [f"bias:{a}" for a in columns]
  # nearly unpenalised (a few weights); classes balanced, so that the many positive cells do not
  # push the bias towards calling complaints positive
  clf = LogisticRegression(C=100.0, class_weight="balanced", max_iter=1000).fit(x, y)
  out = {"head": float(clf.coef_[0, 0]), "examples": float(clf.coef_[0, 1]),
         "bias": float(clf.intercept_[0])}
  out |= {name: float(w) for name, w in zip(names[2:], clf.coef_[0, 2:])
          if not name.startswith("bias:") or count[name[5:]] >= ASPECT_BIAS_MIN_CELLS}
  return out


# --- loading and the public function -------------------------------------------------------------

def minilm_embed(texts: list[str]) -> np.ndarray:
  """The pretrained MiniLM's sentence embeddings (the encoder the thresholds are calibrated for)."""
  from cvlib.text import embedding  # pylint: disable=import-outside-toplevel
  return embedding.embed(texts)


def default_model(language: str) -> AspectModel:
  """The model used without a run folder: calibrated thresholds and the shipped polarity head.

  Raises:
    ValueError: no default for the language (Portuguese polarity is learnt from a shop's own
      reviews, so it needs a run folder).
  """
  if language not in LANGUAGES:
    raise ValueError(f"language {language!r} has no aspect model; supported: "
                     f"{', '.join(LANGUAGES)}")
  if language not in DEFAULT_HEAD:
    raise ValueError(f"language {language!r}: no polarity head ships with cvlib (it is learnt "
                     "from a shop's own rated reviews); pass a finished run folder (run_dir)")
  from importlib import resources  # pylint: disable=import-outside-toplevel
  with resources.as_file(resources.files("cvlib").joinpath("insight", DEFAULT_HEAD[language])) as p:
    head = PolarityHead.load(p)
  return _calibrated(language, SPECS[language], head)


def calibration(language: str) -> dict[str, Any]:
  """The shipped calibration of a language: floor, alone (per aspect), mix, and how it was made
  (``aspect_calibration.json``, written by ``benchmarks/aspects_labelled.py --calibrate``)."""
  from importlib import resources  # pylint: disable=import-outside-toplevel
  data = json.loads(resources.files("cvlib").joinpath("insight", CALIBRATION_FILE).read_text())
  if language not in data["languages"]:
    raise ValueError(f"language {language!r} has no calibration; have "
                     f"{', '.join(data['languages'])}")
  return data["languages"][language] | {"how": data["how"]}


def _calibrated(language: str, specs: tuple[AspectSpec, ...], head: PolarityHead) -> AspectModel:
  cal = calibration(language)
  # Aspects of the params without a calibrated value get the median of the calibrated ones.
  floor = {s.name: cal["floor"].get(s.name, float(np.median(list(cal["floor"].values()))))
           for s in specs}
  alone = {s.name: cal["alone"].get(s.name, float(np.median(list(cal["alone"].values()))))
           for s in specs}
  return AspectModel(language, specs, floor, alone, head, dict(cal["mix"]),
                     {"how": cal["how"]}, _floats(cal.get("mix_rated")))


# How the polarity head's training texts are chosen and labelled (polarity_training_set), as the
# report and the head's record say it.
TRAINING_RULE = (f"titles and reviews of up to {SHORT_TEXT_WORDS} words labelled by their stars "
                 "(1-2 negative, 4-5 positive, 3 left out), and the clauses of longer reviews "
                 "that name an aspect labelled at the clause (negative in 1-2 star reviews and "
                 "right after a 'but' in 4-5 star ones, positive in 5-star ones); at most "
                 f"{HEAD_EXAMPLES}, seeded, negatives up to half")


def fit_shop_model(language: str, texts: Sequence[str | None], ratings: Sequence[float], *,
                   titles: Sequence[str | None] | None = None, embed_fn: EmbedFn | None = None,
                   specs: tuple[AspectSpec, ...] | None = None,
                   matcher: KeywordMatcher | None = None, seed: int = 0) -> AspectModel:
  """The aspect model of one shop: its polarity head learnt from its own rated reviews.

  The head is trained on the shop's titles and short reviews and on the aspect clauses of its
  longer reviews, labelled from their stars (:func:`polarity_training_set`,
  :func:`fit_polarity_head`); thresholds and the mix are the shipped calibration. With too few
  rated texts (fewer than 20 of either class) an English shop gets the shipped head.

  Args:
    language: "en" or "pt".
    texts, ratings, titles: the shop's reviews.
    embed_fn: the encoder the head is trained on (default: the pretrained MiniLM).
    specs: the aspect list (default: the language's).
    matcher: keyword matcher of ``specs`` (built when None).
    seed: sampling seed.

  Raises:
    ValueError: an unsupported language; a Portuguese shop with too few rated texts.
  """
  specs = specs or SPECS[language]
  matcher = matcher or KeywordMatcher(specs, vocabulary_words())
  train_texts, labels = polarity_training_set(texts, ratings, titles=titles, matcher=matcher,
                                              seed=seed)
  counts = np.bincount(labels, minlength=2)
  if counts.min() < 20:
    if language in DEFAULT_HEAD:
      return _calibrated(language, specs, default_model(language).head)
    raise ValueError(f"aspect polarity: the shop has {counts[0]} negative and {counts[1]} "
                     f"positive rated opinion texts (titles, reviews of up to {SHORT_TEXT_WORDS} "
                     "words, aspect clauses of longer reviews); 20 of each are needed to learn "
                     "polarity")
  embed_fn = embed_fn or minilm_embed
  head = fit_polarity_head(embed_fn(train_texts), labels, trained_on={
      "data": f"the shop's {TRAINING_RULE}", "encoder": "pretrained MiniLM",
      "language": language})
  return _calibrated(language, specs, head)



def describe(model: AspectModel, n_tagged: int, n_reviews: int) -> str:
  """One paragraph for the report: what was tagged and how the polarity model was trained."""
  info = model.head.trained_on
  n = info.get("n_negative", 0) + info.get("n_positive", 0)
  sample = (f"{n_tagged:,} of the {n_reviews:,} reviews (a seeded sample)"
            if n_tagged < n_reviews else f"all {n_reviews:,} reviews")
  rated = " and, where the review has one, its star rating" if model.mix_rated else ""
  cues = (" A remark worded as a complaint (\"runs a bit small\", \"too pricey\") counts as "
          "negative whatever the stars." if model.complaint_cues
          and model.language in complaints.LANGUAGES else "")
  return (f"Aspects are tagged in {sample} by keywords checked against the clause's meaning "
          f"(MiniLM similarity to each aspect's description). Each mentioned aspect's polarity "
          f"comes from a model trained on {n:,} star-rated opinion texts "
          f"({info.get('n_negative', 0):,} negative): {info.get('data', '')}; its output is mixed "
          "with the clause's similarity to positive and negative example opinions on the aspect"
          f"{rated}, with weights calibrated on hand-labelled reviews (docs/benchmarks.md).{cues}")


def load_run(run_dir: str | os.PathLike) -> AspectModel:
  """A finished run's aspect model (``models/aspects/`` of its folder).

  Raises:
    FileNotFoundError: the run folder has no aspect model.
  """
  return AspectModel.load(Path(run_dir) / RUN_SUBDIR)


def aspect_opinions(texts: Sequence[str] | pd.Series, language: str = "en",
                    run_dir: str | os.PathLike | None = None,
                    ratings: Sequence[float] | pd.Series | None = None) -> pd.DataFrame:
  """Per-review aspect tags and polarities, as the report's "opinions by aspect" computes them.

  Args:
    texts: review texts (a list or Series; None/NaN allowed: nothing tagged).
    language: "en" or "pt".
    run_dir: a finished run folder: its aspect list, thresholds and the polarity head trained on
      that shop's rated reviews. None: the defaults (English only).
    ratings: each review's star rating (1-5, NaN where unknown), aligned with ``texts``: the
      report passes them, and polarity is better with them (docs/benchmarks.md). None: unknown.

  Returns:
    One row per text (the Series' index, else 0..n-1), one Int64 column per aspect: +1 positive,
    -1 negative, 0 mixed, <NA> not mentioned (so ``.notna()`` are the tags).

  Raises:
    ValueError: texts is a single string, an unsupported language, or Portuguese without a run
      folder; a run folder's model of another language; ratings of another length than texts.
    FileNotFoundError: run_dir has no aspect model.
  """
  if isinstance(texts, str):
    raise ValueError("texts: need a list or Series of review texts, got a single str")
  index = texts.index if isinstance(texts, pd.Series) else None
  values = [t if isinstance(t, str) else None for t in (list(texts))]
  model = default_model(language) if run_dir is None else load_run(run_dir)
  if run_dir is not None:
    if model.language != language:
      raise ValueError(f"run_dir {run_dir}: its aspect model is for language "
                       f"{model.language!r}, not {language!r}")
  out = score_reviews(values, model, tag_embed=minilm_embed,
                      ratings=None if ratings is None else list(ratings))
  if index is not None:
    out.index = index
  return out



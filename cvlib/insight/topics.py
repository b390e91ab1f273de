"""What customers write about: clusters of review embeddings, named by class-based TF-IDF keywords.

The BERTopic recipe (Grootendorst 2022) without BERTopic:

1. ``cluster_reviews``: L2-normalise the review embeddings, reduce them with PCA (instead of UMAP:
   deterministic, fast, no extra dependency) and cluster with k-means (instead of HDBSCAN: every
   review gets a topic, the number of topics is bounded). k is chosen by silhouette when not given.
2. ``ctfidf_keywords``: class-based TF-IDF. All reviews of a topic form one document; a term scores
   high when it is frequent in that topic and rare across topics.
3. ``topic_table`` and ``plot_topics``: one row per topic with its size, sentiment, rating and
   trend, and a bar chart of topic shares coloured by sentiment.

Sentiment follows cvlib's review score in [-1, 1] (positive minus negative probability); a review is
negative when its score is below 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer
from sklearn.metrics import pairwise_distances, silhouette_score

ArrayLike = pd.Series | np.ndarray | Sequence[float]
Texts = Sequence[str] | pd.Series

N_INIT = 4  # k-means restarts per k; fixed so that a seed always gives the same topics
SILHOUETTE_SAMPLE = 3000  # silhouette is O(n^2) in time and memory: score k on a sample this big
RECENT_QUANTILE = 0.75  # "recent" = reviews after this quantile of the timestamps (last quarter)

# Negations and "too" carry meaning in reviews ("not received", "too small"), so they are kept
# for bigrams but never listed as keywords on their own.
BIGRAM_ONLY = frozenset({"no", "not", "nor", "never", "too", "não", "nao", "nunca", "nem"})
# "did"/"does" would pair with "not" ("didn't fit" -> "did not fit" should give "not fit").
ENGLISH_STOP = frozenset((ENGLISH_STOP_WORDS - BIGRAM_ONLY) | {"did", "does", "just", "really"})
# A short Brazilian Portuguese list, with and without accents (olist reviews often drop them).
# Single letters ("a", "e", "o") are dropped by the tokenizer anyway. "não", "bem" and "antes"
# stay: "não recebi", "bem embalado", "chegou antes do prazo" are what reviews are about.
PORTUGUESE_STOP = frozenset("""
de da do das dos em no na nos nas um uma uns umas para pra pro por pelo pela pelos pelas com sem
que se ao aos as os como mais mas muito muita muitos muitas foi ser sou era são sao está esta
estava estão estao este esse essa isso isto aquele aquela aquilo meu minha meus minhas seu sua
seus suas eu ele ela eles elas nós você voce vocês voces vc me te lhe já ja ainda também tambem só
so quando onde porque pois então entao até ate ou há ha tem têm ter tinha tive foram fui vou vai
sobre entre depois tudo todo toda todos todas nada algum alguma mesmo mesma qual quais aqui lá la
dessa desse deste desta nesse nessa neste nesta num numa pq estou porém porem apenas agora após
apos vez
""".split())
# Chinese and Japanese are written without spaces: terms are single characters and character
# pairs. Grams containing one of these function characters are dropped.
CJK_STOP = {
    "zh": frozenset("的了是在我你他她它们也都就和与很吗吧呢啊呀这那个着过把被"),
    "ja": frozenset("のはがをにでともたてだかねよ"),
}
CHAR_LANGUAGES = frozenset(CJK_STOP)
# A bigram replaces a chosen unigram when at least this share of the unigram's uses are in it.
PHRASE_SHARE = 0.5
_CJK_RUN = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+"
_CHAR_TOKENS = re.compile(rf"({_CJK_RUN})|([^\W\d_]{{2,}})")
_IS_CJK = re.compile(rf"^{_CJK_RUN}$")
_WORD_PATTERN = r"(?u)\b(?!\d+\b)\w\w+\b"  # sklearn's default, without bare numbers
_CONTRACTIONS = ((re.compile(r"\bcan[’']t\b"), "can not"),
                 (re.compile(r"\bwon[’']t\b"), "will not"),
                 (re.compile(r"n[’']t\b"), " not"))


# --- clustering ---------------------------------------------------------------------------------

def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
  x = np.asarray(embeddings)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"embeddings: need a non-empty 2-D array [n_reviews, dim], got shape "
                     f"{x.shape}")
  if not np.issubdtype(x.dtype, np.number):
    raise ValueError(f"embeddings: must be numeric, got dtype {x.dtype}")
  x = x.astype(np.float32, copy=False)
  if not np.isfinite(x).all():
    bad = int((~np.isfinite(x)).any(axis=1).sum())
    raise ValueError(f"embeddings: {bad} row(s) hold NaN or inf")
  return x


def _check_k_range(n_topics: int | None, min_topics: int, max_topics: int, max_fit: int,
                   pca_dims: int | None) -> None:
  if n_topics is not None and (not isinstance(n_topics, (int, np.integer)) or n_topics < 1):
    raise ValueError(f"n_topics: must be an int >= 1 or None (choose by silhouette), got "
                     f"{n_topics!r}")
  if not (isinstance(min_topics, (int, np.integer)) and isinstance(max_topics, (int, np.integer))
          and 2 <= min_topics <= max_topics):
    raise ValueError(f"min_topics, max_topics: need ints with 2 <= min_topics <= max_topics, got "
                     f"{min_topics!r}, {max_topics!r}")
  if not isinstance(max_fit, (int, np.integer)) or max_fit < 2:
    raise ValueError(f"max_fit: must be an int >= 2, got {max_fit!r}")
  if pca_dims is not None and (not isinstance(pca_dims, (int, np.integer)) or pca_dims < 1):
    raise ValueError(f"pca_dims: must be an int >= 1 or None (no PCA), got {pca_dims!r}")


def _reduce(embeddings: np.ndarray, *, seed: int, max_fit: int, pca_dims: int | None
            ) -> tuple[np.ndarray, np.ndarray]:
  """Normalised, PCA-reduced rows [n, d] and the (sorted) positions of the fit sample."""
  x = _check_embeddings(embeddings)
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # [n, dim], unit rows
  n = len(x)
  rng = np.random.default_rng(seed)
  fit_rows = np.sort(rng.choice(n, size=max_fit, replace=False)) if n > max_fit else np.arange(n)
  dims = None if pca_dims is None else min(pca_dims, len(fit_rows))
  if dims is not None and dims < x.shape[1]:
    pca = PCA(n_components=dims, random_state=seed).fit(x[fit_rows])
    x = pca.transform(x)  # [n, dims]
  return x.astype(np.float64), fit_rows


def _distinct(rows: np.ndarray) -> int:
  return len(np.unique(rows, axis=0))


def _fit_kmeans(x_fit: np.ndarray, k: int, seed: int) -> KMeans:
  return KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit(x_fit)


def _sweep(x: np.ndarray, fit_rows: np.ndarray, ks: range, seed: int
           ) -> tuple[pd.Series, dict[int, KMeans]]:
  """Silhouette of each k on a seeded sample of the fit rows, and the fitted models."""
  x_fit = x[fit_rows]
  rng = np.random.default_rng(seed + 1)  # not the fit sample's stream
  sample = (np.sort(rng.choice(len(x_fit), size=SILHOUETTE_SAMPLE, replace=False))
            if len(x_fit) > SILHOUETTE_SAMPLE else np.arange(len(x_fit)))
  distances = pairwise_distances(x_fit[sample])  # [m, m], once for all k
  scores, models = {}, {}
  for k in ks:
    model = _fit_kmeans(x_fit, k, seed)
    labels = model.labels_[sample]
    n_labels = len(np.unique(labels))
    scores[k] = (silhouette_score(distances, labels, metric="precomputed")
                 if 2 <= n_labels < len(sample) else np.nan)
    models[k] = model
  return pd.Series(scores, name="silhouette").rename_axis("n_topics"), models


def _auto_ks(x: np.ndarray, fit_rows: np.ndarray, min_topics: int, max_topics: int) -> range:
  # silhouette needs 2 <= k <= distinct points - 1
  top = min(max_topics, _distinct(x[fit_rows]) - 1)
  if top < min_topics:
    raise ValueError(f"cluster_reviews: {len(x)} review(s) with {top + 1} distinct embedding(s) "
                     f"cannot be split into min_topics={min_topics} topics chosen by silhouette "
                     f"(need at least {min_topics + 1} distinct); lower min_topics or pass "
                     "n_topics")
  return range(min_topics, top + 1)


def silhouette_by_k(embeddings: np.ndarray, *, min_topics: int = 3, max_topics: int = 12,
                    seed: int = 0, max_fit: int = 20000, pca_dims: int | None = 20) -> pd.Series:
  """Silhouette score of k-means with each k in [min_topics, max_topics] (what auto-k maximises).

  Args:
    embeddings: [n_reviews, dim] review embeddings.
    min_topics, max_topics, seed, max_fit, pca_dims: as in :func:`cluster_reviews`.

  Returns:
    Silhouette (Euclidean, in the normalised PCA space; in [-1, 1], higher is better separated)
    indexed by n_topics.

  Raises:
    ValueError: as :func:`cluster_reviews` with ``n_topics=None``.
  """
  _check_k_range(None, min_topics, max_topics, max_fit, pca_dims)
  x, fit_rows = _reduce(embeddings, seed=seed, max_fit=max_fit, pca_dims=pca_dims)
  scores, _ = _sweep(x, fit_rows, _auto_ks(x, fit_rows, min_topics, max_topics), seed)
  return scores


def cluster_reviews(embeddings: np.ndarray, *, n_topics: int | None = None, min_topics: int = 3,
                    max_topics: int = 12, seed: int = 0, max_fit: int = 20000,
                    pca_dims: int | None = 20) -> np.ndarray:
  """Topic of each review: k-means on L2-normalised, PCA-reduced embeddings.

  Rows are L2-normalised (so Euclidean k-means groups by cosine similarity), reduced to
  ``pca_dims`` principal components when they have more, and clustered with k-means
  (``N_INIT`` restarts, ``random_state=seed``). PCA and k-means are fitted on at most ``max_fit``
  rows (a seeded random sample); every review is then assigned to its nearest centre.

  With ``n_topics=None``, k-means is fitted for every k in [min_topics, max_topics] and the k with
  the highest silhouette score wins (smallest k on a tie). The silhouette is computed on a seeded
  sample of at most ``SILHOUETTE_SAMPLE`` (3000) fit rows; :func:`silhouette_by_k` returns the
  scores. max_topics is lowered to (distinct rows - 1) when the data has fewer rows.

  Too few reviews raise a ValueError rather than returning fewer topics than asked.

  Args:
    embeddings: [n_reviews, dim] review embeddings (any scale; rows are normalised here).
    n_topics: number of topics, or None to choose it by silhouette.
    min_topics: smallest k tried when choosing (>= 2).
    max_topics: largest k tried when choosing.
    seed: seeds the samples, PCA and k-means; the same seed gives the same labels.
    max_fit: fit on at most this many rows.
    pca_dims: PCA components before k-means; None keeps the embedding as it is.

  Returns:
    [n_reviews] int topic ids 0..k-1, numbered by size (0 is the largest topic; ties by k-means'
    own order).

  Raises:
    ValueError: embeddings not a finite 2-D array; bad k range; fewer distinct rows than
      ``n_topics`` (or than ``min_topics + 1`` when choosing k).
  """
  _check_k_range(n_topics, min_topics, max_topics, max_fit, pca_dims)
  x, fit_rows = _reduce(embeddings, seed=seed, max_fit=max_fit, pca_dims=pca_dims)
  if n_topics is None:
    scores, models = _sweep(x, fit_rows, _auto_ks(x, fit_rows, min_topics, max_topics), seed)
    if scores.isna().all():
      raise ValueError("cluster_reviews: no k gave two or more clusters in the silhouette sample; "
                       "pass n_topics")
    model = models[int(scores.idxmax())]
  else:
    n_distinct = _distinct(x[fit_rows])
    if n_distinct < n_topics:
      raise ValueError(f"cluster_reviews: n_topics={n_topics} but only {n_distinct} distinct "
                       f"embedding(s) among {len(fit_rows)} fitted review(s)")
    model = _fit_kmeans(x[fit_rows], n_topics, seed)
  raw = model.predict(x)  # [n]
  sizes = np.bincount(raw, minlength=model.n_clusters)
  order = np.argsort(-sizes, kind="stable")  # old ids, largest first
  new_id = np.empty_like(order)
  new_id[order] = np.arange(len(order))
  return new_id[raw].astype(int)


# --- class-based TF-IDF -------------------------------------------------------------------------

def _as_texts(texts: Texts) -> list[str]:
  if isinstance(texts, str):
    raise ValueError("texts: need a list or Series of review texts, got a single str")
  return [t if isinstance(t, str) else "" for t in texts]


def _as_labels(labels: ArrayLike, n: int) -> np.ndarray:
  arr = np.asarray(labels)
  if arr.ndim != 1 or len(arr) != n:
    raise ValueError(f"labels: need one topic per text ({n}), got shape {arr.shape}")
  if n and not (np.issubdtype(arr.dtype, np.integer)
                or (np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all()
                    and (arr == np.round(arr)).all())):
    raise ValueError(f"labels: must be integer topic ids, got dtype {arr.dtype}")
  return arr.astype(int)


def _check_language(language: str) -> str:
  if not (isinstance(language, str) and 2 <= len(language) <= 3 and language.isalpha()
          and language.islower()):
    raise ValueError(f"language: must be an ISO 639 code such as 'en', 'pt' or 'zh', got "
                     f"{language!r}")
  return language


def _english_preprocess(text: str) -> str:
  text = text.lower()
  for pattern, repl in _CONTRACTIONS:  # "didn't fit" -> "did not fit" -> bigram "not fit"
    text = pattern.sub(repl, text)
  return text


def _char_analyzer(language: str):
  stop = CJK_STOP[language]

  def analyze(text: str) -> list[str]:
    grams = []
    for run, word in _CHAR_TOKENS.findall(text.lower()):
      if word:  # Latin words inside CJK text stay whole
        grams.append(word)
        continue
      grams += [c for c in run if c not in stop]
      grams += [a + b for a, b in zip(run, run[1:]) if a not in stop and b not in stop]
    return grams
  return analyze


def _vectorizer(language: str, min_df: int) -> CountVectorizer:
  if language in CHAR_LANGUAGES:
    return CountVectorizer(analyzer=_char_analyzer(language), min_df=min_df)
  stop = {"en": ENGLISH_STOP, "pt": PORTUGUESE_STOP}.get(language)
  return CountVectorizer(ngram_range=(1, 2), token_pattern=_WORD_PATTERN, min_df=min_df,
                         stop_words=sorted(stop) if stop else None,
                         preprocessor=_english_preprocess if language == "en" else None)


def _ctfidf(texts: Texts, labels: ArrayLike, *, language: str, min_df: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(classes [c], terms [t], weights [c, t], term counts [c, t]) of class-based TF-IDF."""
  docs = _as_texts(texts)
  y = _as_labels(labels, len(docs))
  _check_language(language)
  if not isinstance(min_df, (int, np.integer)) or min_df < 1:
    raise ValueError(f"min_df: must be an int >= 1 (reviews a term must occur in), got {min_df!r}")
  classes, inverse = np.unique(y, return_inverse=True)
  vectorizer = _vectorizer(language, min_df)
  try:
    counts = vectorizer.fit_transform(docs)  # [n_docs, n_terms]
  except ValueError:  # sklearn: empty vocabulary (no texts, only stop words, or min_df too high)
    empty = np.zeros((len(classes), 0))
    return classes, np.array([], dtype=object), empty, empty
  terms = vectorizer.get_feature_names_out()
  members = sparse.csr_matrix((np.ones(len(docs)), (inverse, np.arange(len(docs)))),
                              shape=(len(classes), len(docs)))
  tf = np.asarray((members @ counts).todense(), dtype=np.float64)  # [n_classes, n_terms]
  words_per_class = tf.sum(axis=1, keepdims=True)  # [n_classes, 1]
  mean_words = words_per_class.mean()
  freq = tf.sum(axis=0)  # [n_terms], > 0 for every kept term
  idf = np.log1p(mean_words / freq)
  weights = tf / np.maximum(words_per_class, 1.0) * idf
  return classes, terms, weights, tf


def ctfidf_matrix(texts: Texts, labels: ArrayLike, *, language: str = "en",
                  min_df: int = 2) -> pd.DataFrame:
  """Class-based TF-IDF weight of every term in every topic (Grootendorst 2022, eq. 1).

  W[t, c] = tf[t, c] / words[c] * log(1 + A / f[t]), where tf[t, c] counts term t in topic c,
  words[c] is the total count of all terms in topic c, f[t] is the count of t over all topics
  and A the mean of words[c]. Terms are counted over the vectoriser's vocabulary (unigrams and
  bigrams together, stop words removed). Unlike BERTopic, A is not rounded down to an integer and
  ``min_df`` counts reviews, not topics.

  Terms: word unigrams and bigrams (lower-cased; English stop words for "en", a short built-in list
  for "pt", none for other languages; stop words are removed before bigrams are formed, as in
  scikit-learn); for "zh" and "ja" single characters and character pairs (without function
  characters, ``CJK_STOP``), with Latin words kept whole.

  Args:
    texts: review texts; missing texts count as empty.
    labels: [n] topic id of each text.
    language: ISO 639 code of the texts.
    min_df: keep terms that occur in at least this many reviews.

  Returns:
    DataFrame indexed by topic id (sorted), one column per term; empty columns when no term is
    left (e.g. every text is empty).

  Raises:
    ValueError: texts is a single str, labels do not match texts, bad language or min_df.
  """
  classes, terms, weights, _ = _ctfidf(texts, labels, language=language, min_df=min_df)
  return pd.DataFrame(weights, index=pd.Index(classes, name="topic"), columns=terms)


def _parts(term: str) -> tuple[str, ...]:
  if " " in term:
    return tuple(term.split(" "))
  if len(term) == 2 and _IS_CJK.match(term):
    return tuple(term)
  return (term,)


def _lift_ok(tf: np.ndarray, min_lift: float) -> np.ndarray:
  """[c, t] bool: term t is at least min_lift times as frequent in topic c as in the others."""
  words = tf.sum(axis=1, keepdims=True)  # [c, 1]
  inside = tf / np.maximum(words, 1.0)
  rest = tf.sum(axis=0, keepdims=True) - tf  # [c, t] counts in the other topics
  rest_words = words.sum() - words
  outside = rest / np.maximum(rest_words, 1.0)
  return inside >= min_lift * outside


def _select(terms: np.ndarray, scores: np.ndarray, counts: np.ndarray, eligible: np.ndarray,
            top_n: int) -> list[str]:
  """Top eligible terms by score, de-duplicated as ctfidf_keywords describes."""
  candidates = np.flatnonzero((scores > 0) & eligible)
  # terms come sorted from the vectoriser, so a stable sort breaks ties alphabetically
  order = candidates[np.argsort(-scores[candidates], kind="stable")]
  index = {}  # term -> column, filled for the terms taken

  chosen: list[str] = []
  used: set[str] = set()  # words (characters) of the chosen terms
  for i in order:
    term = str(terms[i])
    parts = _parts(term)
    if parts[-1] in BIGRAM_ONLY:
      continue
    words = {w for w in parts if w not in BIGRAM_ONLY}  # "not received" and "not fit" coexist
    clash = used & words
    index[term] = i
    if not clash:
      chosen.append(term)
    elif (len(parts) == 2 and clash <= set(chosen)
          and all(counts[i] >= PHRASE_SHARE * counts[index[w]] for w in clash)):
      # the words are mostly used in this phrase: the phrase takes the first word's place
      slots = [j for j, t in enumerate(chosen) if t in clash]
      chosen[slots[0]] = term
      chosen = [t for j, t in enumerate(chosen) if j not in slots[1:]]
    else:
      continue
    used.update(words)
    if len(chosen) == top_n:
      break
  return chosen


def ctfidf_keywords(texts: Texts, labels: ArrayLike, *, top_n: int = 8, language: str = "en",
                    min_df: int = 2, min_lift: float = 1.5) -> dict[int, list[str]]:
  """The ``top_n`` highest-scoring class-based TF-IDF terms of each topic.

  Scores come from :func:`ctfidf_matrix`. Two rules on top of the recipe:

  - Lift: a keyword must be at least ``min_lift`` times as frequent (per term counted) in its
    topic as in all other topics together. With a handful of topics, c-TF-IDF alone lets words
    every review uses ("love", "great", "wear") into every topic's list; 0 turns this off.
  - De-duplication, so that a phrase does not fill three slots ("late", "delivery",
    "late delivery"): terms are taken in score order and a term that shares a word with a term
    already taken is skipped (a unigram inside a chosen bigram, "delivery late" after
    "late delivery"), except that a bigram replaces chosen unigrams when, in this topic, at
    least ``PHRASE_SHARE`` (half) of each one's occurrences are inside the bigram; it takes the
    first one's place. So "late", "delivery" become "late delivery" when that is how they are
    mostly said, while "dress" stays "dress" rather than turning into "love dress". In
    "zh"/"ja" character pairs count as bigrams of their two characters ("酒", "店" -> "酒店").

  Negations and "too" (``BIGRAM_ONLY``) appear only as the first word of a bigram
  ("not received", "too small"; never "not" or "fit too"). Ties go to the alphabetically first
  term.

  Args:
    texts: review texts; missing texts count as empty.
    labels: [n] topic id of each text.
    top_n: keywords per topic (fewer when a topic has fewer terms with a positive score).
    language: ISO 639 code of the texts ("en", "pt", "zh", "ja" get special handling).
    min_df: keep terms that occur in at least this many reviews.
    min_lift: keep terms at least this over-represented in the topic (>= 0).

  Returns:
    Topic id -> keywords, best first, for every topic in ``labels`` (fewer than top_n, possibly
    none, when few terms pass).

  Raises:
    ValueError: as :func:`ctfidf_matrix`, or top_n < 1, or min_lift < 0.
  """
  if not isinstance(top_n, (int, np.integer)) or top_n < 1:
    raise ValueError(f"top_n: must be an int >= 1, got {top_n!r}")
  if not isinstance(min_lift, (int, float, np.number)) or not min_lift >= 0:
    raise ValueError(f"min_lift: must be a number >= 0, got {min_lift!r}")
  classes, terms, weights, tf = _ctfidf(texts, labels, language=language, min_df=min_df)
  eligible = _lift_ok(tf, min_lift)
  return {int(c): _select(terms, weights[i], tf[i], eligible[i], top_n)
          for i, c in enumerate(classes)}


# --- topic table and plot -----------------------------------------------------------------------

def _optional(values: ArrayLike | None, n: int, name: str) -> np.ndarray | None:
  if values is None:
    return None
  try:
    arr = np.asarray(pd.Series(values).astype("float64"))
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name}: must be numeric ({e})") from None
  if arr.shape != (n,):
    raise ValueError(f"{name}: need one value per review ({n}), got {arr.shape[0]}")
  return arr


def _mean(values: np.ndarray) -> float:
  values = values[np.isfinite(values)]
  return float(values.mean()) if len(values) else np.nan


def _examples_by_centroid(embeddings: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
  x = embeddings[rows]
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # [m, dim]
  centre = x.mean(axis=0)
  similarity = x @ (centre / max(np.linalg.norm(centre), 1e-12))  # [m] cosine to the centroid
  return rows[np.argsort(-similarity, kind="stable")[:k]]


def _examples_by_keywords(texts: list[str], rows: np.ndarray, keywords: list[str],
                          k: int) -> np.ndarray:
  parts = [_parts(w) for w in keywords]  # "antes prazo" was "antes do prazo" in the text
  lower = (texts[r].lower() for r in rows)
  hits = np.array([sum(all(p in text for p in ps) for ps in parts) for text in lower], dtype=int)
  return rows[np.argsort(-hits, kind="stable")[:k]]


def topic_table(texts: Texts, labels: ArrayLike, keywords: Mapping[int, Sequence[str]], *,
                sentiment: ArrayLike | None = None, rating: ArrayLike | None = None,
                timestamp: ArrayLike | None = None, review_ids: ArrayLike | None = None,
                embeddings: np.ndarray | None = None, examples: int = 2) -> pd.DataFrame:
  """One row per topic: keywords, size, sentiment, rating, trend and example reviews.

  Trend compares the topic's share among reviews after the 75% quantile of the timestamps (the
  most recent quarter of reviews) with its share among the reviews before; reviews without a
  timestamp are left out of it, and ``table.attrs["recent_since"]`` holds the cut-off.

  Example reviews are those closest (cosine) to the topic's mean embedding when ``embeddings`` is
  given, else those containing the most of the topic's keywords (ties: first in order).

  Args:
    texts: review texts.
    labels: [n] topic id of each review (from :func:`cluster_reviews`).
    keywords: topic id -> keywords (from :func:`ctfidf_keywords`); missing topics get "topic <id>".
    sentiment: [n] review sentiment in [-1, 1]; a review is negative when below 0.
    rating: [n] star rating.
    timestamp: [n] review times.
    review_ids: [n] ids listed as examples; default the texts' index (or 0..n-1).
    embeddings: [n, dim] review embeddings, to pick the examples.
    examples: example reviews per topic.

  Returns:
    Sorted by n_reviews (largest first, ties by topic): topic, label (top 3 keywords), keywords
    (all, comma-separated), n_reviews, share; mean_sentiment and share_negative with sentiment;
    mean_rating with rating; share_recent, share_before and trend (share_recent - share_before)
    with timestamps; example_ids (list). Means skip missing values (NaN when all are missing).

  Raises:
    ValueError: lengths differ, non-numeric sentiment or rating, unparseable timestamps,
      examples < 0.
  """
  docs = _as_texts(texts)
  n = len(docs)
  y = _as_labels(labels, n)
  if not isinstance(examples, (int, np.integer)) or examples < 0:
    raise ValueError(f"examples: must be an int >= 0, got {examples!r}")
  sent = _optional(sentiment, n, "sentiment")
  stars = _optional(rating, n, "rating")
  if review_ids is None:
    ids = list(texts.index) if isinstance(texts, pd.Series) else list(range(n))
  else:
    ids = list(review_ids)
    if len(ids) != n:
      raise ValueError(f"review_ids: need one id per review ({n}), got {len(ids)}")
  emb = None
  if embeddings is not None:
    emb = _check_embeddings(embeddings)
    if len(emb) != n:
      raise ValueError(f"embeddings: need one row per review ({n}), got {len(emb)}")
  recent = None
  if timestamp is not None:
    try:
      ts = pd.Series(pd.to_datetime(pd.Series(list(timestamp)), errors="raise"))
    except (TypeError, ValueError) as e:
      raise ValueError(f"timestamp: could not be read as times ({e})") from None
    if len(ts) != n:
      raise ValueError(f"timestamp: need one value per review ({n}), got {len(ts)}")
    dated = ts.notna().to_numpy()
    cutoff = ts[dated].quantile(RECENT_QUANTILE) if dated.any() else pd.NaT
    recent = (ts > cutoff).to_numpy() & dated
    before = dated & ~recent

  rows = []
  for topic in np.unique(y):
    member = y == topic
    where = np.flatnonzero(member)
    words = [str(w) for w in keywords.get(int(topic), [])]
    row = {"topic": int(topic), "label": ", ".join(words[:3]) or f"topic {topic}",
           "keywords": ", ".join(words), "n_reviews": int(member.sum()),
           "share": float(member.mean())}
    if sent is not None:
      s = sent[member]
      row["mean_sentiment"] = _mean(s)
      known = np.isfinite(s)
      row["share_negative"] = float((s[known] < 0).mean()) if known.any() else np.nan
    if stars is not None:
      row["mean_rating"] = _mean(stars[member])
    if recent is not None:
      row["share_recent"] = float(member[recent].mean()) if recent.any() else np.nan
      row["share_before"] = float(member[before].mean()) if before.any() else np.nan
      row["trend"] = row["share_recent"] - row["share_before"]
    picked = (_examples_by_centroid(emb, where, examples) if emb is not None
              else _examples_by_keywords(docs, where, words, examples))
    row["example_ids"] = [ids[i] for i in picked]
    rows.append(row)
  table = pd.DataFrame(rows)
  if len(table):
    table = table.sort_values(["n_reviews", "topic"], ascending=[False, True], kind="stable")
  table = table.reset_index(drop=True)
  if recent is not None:
    table.attrs["recent_since"] = cutoff
  return table


def plot_topics(table: pd.DataFrame) -> Figure:
  """Horizontal bars of topic share, coloured by mean sentiment, labelled with keywords.

  Args:
    table: from :func:`topic_table` (needs label and share; mean_sentiment optional: without it
      the bars share one colour and there is no colour bar; n_reviews, when present, is shown).

  Returns:
    The figure (not shown).

  Raises:
    ValueError: a required column is missing.
  """
  for col in ("label", "share"):
    if col not in table.columns:
      raise ValueError(f"plot_topics: column {col!r} missing (have: "
                       f"{', '.join(map(str, table.columns))})")
  order = table.sort_values("share", kind="stable")  # largest at the top of the chart
  y = np.arange(len(order))
  fig = Figure(figsize=(8, 0.45 * len(order) + 1.5), layout="constrained")
  ax = fig.subplots()
  sentiment = (order["mean_sentiment"].to_numpy(dtype=float) if "mean_sentiment" in order
               else np.full(len(order), np.nan))
  if np.isfinite(sentiment).any():
    # centred at 0 so red always means "negative on average"; symmetric so the scale is honest
    limit = max(float(np.nanmax(np.abs(sentiment))), 0.05)
    norm = mpl.colors.Normalize(vmin=-limit, vmax=limit)
    cmap = mpl.colormaps["RdBu"]
    colors = [cmap(norm(s)) if np.isfinite(s) else "#bdbdbd" for s in sentiment]
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="mean sentiment")
  else:
    colors = ["#9ecae1"] * len(order)
  ax.barh(y, order["share"], color=colors, edgecolor="#636363", linewidth=0.5)
  for yi, share in zip(y, order["share"]):
    ax.text(share, yi, f" {share:.0%}", va="center", fontsize=8)
  labels = order["label"].astype(str)
  if "n_reviews" in order:
    labels = [f"{lab} (n={n:,})" for lab, n in zip(labels, order["n_reviews"])]
  ax.set_yticks(y, list(labels))
  ax.set_xlim(0, 1.15 * max(float(order["share"].max()) if len(order) else 0.0, 0.01))
  ax.xaxis.set_major_formatter("{x:.0%}")
  ax.set_xlabel("share of reviews")
  ax.set_title("What customers write about")
  return fig

"""Product recommendations: item-item co-purchase similarity blended with embedding similarity.

A customer's score for a product is the sum, over the products they bought, of the similarity
between the two. Two similarities are blended:

* co-purchase: cosine-normalised co-occurrence counts, ``C[a, b] / sqrt(C[a, a] * C[b, b])`` where
  ``C[a, b]`` is the number of customers who bought both a and b ("customers who bought A also
  bought B");
* content (optional): cosine similarity of product embeddings (e.g. MiniLM embeddings of product
  descriptions or categories).

The co-purchase part comes in two kinds (``method``):

* ``"cooccurrence"``: the cosine above, optionally cut to each product's nearest ``neighbours``
  (item-kNN);
* ``"ease"``: EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019), the
  closed-form ridge regression of each product's purchase column on all the others,
  ``B = I - P / diag(P)`` with ``P = (X^T X + l2 I)^-1`` and ``diag(B) = 0``. It learns which
  co-purchases carry information beyond popularity (weights can be negative); it needs the dense
  [n_products, n_products] inverse, so it is limited to ``DENSE_PRODUCT_LIMIT`` products.

Each part is min-max scaled per customer before blending, so ``alpha`` (the weight of the
co-purchase part) means the same whatever the raw scales. Products with no positive score are
filled in by popularity, and customers unseen at fit time get the popularity ranking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

# Products up to this count keep a dense similarity matrix (4k x 4k float32 = 64 MB), which
# scores a batch with one sparse @ dense product; above it the matrix stays sparse.
DENSE_PRODUCT_LIMIT = 8192
METHODS = ("cooccurrence", "ease")
# Scores are computed for this many (customer, product) cells at a time to bound memory.
_CELLS_PER_BATCH = 1 << 23


@dataclasses.dataclass(frozen=True)
class Recommender:
  """A fitted recommender; build it with :func:`fit_recommender`."""
  customer_ids: pd.Index  # [n_customers] row order of `purchases`
  product_ids: pd.Index  # [n_products] column order of everything product-shaped
  purchases: sp.csr_matrix  # [n_customers, n_products] 1 where bought (or recency weight)
  bought: sp.csr_matrix  # [n_customers, n_products] 1 where bought, for exclusion
  # [n_products, n_products] zero diagonal: row a holds what buying a adds to each product's score
  co_similarity: np.ndarray | sp.csr_matrix
  embeddings: np.ndarray | None  # [n_products, dim] L2-normalised; zero rows where missing
  has_embedding: np.ndarray | None  # [n_products] bool
  popularity: np.ndarray  # [n_products] distinct buyers
  alpha: float  # weight of the co-purchase part when embeddings are given
  method: str = "cooccurrence"  # see METHODS


def _check_columns(df: pd.DataFrame, required: Sequence[str], where: str) -> None:
  missing = [c for c in required if c not in df.columns]
  if missing:
    raise ValueError(f"{where}: column(s) {', '.join(map(repr, missing))} missing "
                     f"(have: {', '.join(map(str, df.columns))})")


def _embedding_matrix(product_embeddings: Mapping | pd.DataFrame, product_ids: pd.Index
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Rows of the embeddings in ``product_ids`` order, L2-normalised; zeros where missing."""
  if isinstance(product_embeddings, pd.DataFrame):
    emb = product_embeddings
    if "product_id" in emb.columns:
      emb = emb.set_index("product_id")
    emb.index = emb.index.astype(str)
    try:
      table = emb.to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as e:
      raise ValueError(f"product_embeddings: columns must be numeric ({e})") from None
    keys = emb.index
  elif isinstance(product_embeddings, Mapping):
    if not product_embeddings:
      raise ValueError("product_embeddings: empty")
    keys = pd.Index([str(k) for k in product_embeddings])
    vectors = [np.asarray(v, dtype=np.float32).ravel() for v in product_embeddings.values()]
    dims = {v.shape[0] for v in vectors}
    if len(dims) != 1:
      raise ValueError(f"product_embeddings: vectors have different lengths {sorted(dims)}")
    table = np.stack(vectors)
  else:
    raise ValueError("product_embeddings: need a dict product_id -> vector or a DataFrame indexed "
                     f"by product_id, got {type(product_embeddings).__name__}")
  if keys.has_duplicates:
    raise ValueError(f"product_embeddings: product_id {keys[keys.duplicated()][0]!r} repeats")
  if not np.isfinite(table).all():
    raise ValueError("product_embeddings: holds NaN or infinite values")
  norms = np.linalg.norm(table, axis=1, keepdims=True)
  table = np.divide(table, norms, out=np.zeros_like(table), where=norms > 0)
  pos = keys.get_indexer(product_ids)
  has = pos >= 0
  out = np.zeros((len(product_ids), table.shape[1]), dtype=np.float32)  # [n_products, dim]
  out[has] = table[pos[has]]
  has &= np.linalg.norm(out, axis=1) > 0
  return out, has


def keep_top_neighbours(similarity: np.ndarray | sp.csr_matrix, k: int
                        ) -> np.ndarray | sp.csr_matrix:
  """Keeps each product's k most similar products (a row's k largest entries), zeroing the rest.

  Item-kNN's neighbourhood: a few strong co-purchase links per product predict better than the
  long tail of weak ones. Ties at the k-th value are all kept.
  """
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"neighbours must be a positive integer or None, got {k!r}")
  if sp.issparse(similarity):
    rows = similarity.tolil(copy=True)
    for i, (cols, vals) in enumerate(zip(rows.rows, rows.data)):
      if len(vals) > k:
        thr = np.partition(np.asarray(vals), len(vals) - k)[len(vals) - k]
        keep = [(c, v) for c, v in zip(cols, vals) if v >= thr]
        rows.rows[i] = [c for c, _ in keep]
        rows.data[i] = [v for _, v in keep]
    return rows.tocsr()
  n = similarity.shape[1]
  if k >= n:
    return similarity
  thr = -np.partition(-similarity, k - 1, axis=1)[:, k - 1][:, None]  # k-th largest per row
  return np.where(similarity >= thr, similarity, 0.0).astype(similarity.dtype, copy=False)


def ease_weights(bought: sp.csr_matrix, l2: float) -> np.ndarray:
  """EASE's item-item weights [n_products, n_products] from 0/1 purchases (zero diagonal).

  ``B = -P / diag(P)`` off the diagonal, ``P = (X^T X + l2 I)^-1``: the closed form of
  ``min ||X - X B||^2 + l2 ||B||^2`` subject to ``diag(B) = 0``. Computed in float64 (the Gram
  matrix of a few thousand products inverts in seconds), returned as float32.
  """
  if not l2 > 0:
    raise ValueError(f"l2 must be > 0, got {l2!r}")
  gram = (bought.T @ bought).toarray().astype(np.float64)
  gram[np.diag_indices_from(gram)] += l2
  p = np.linalg.inv(gram)
  weights = -p / np.diag(p)[None, :]
  np.fill_diagonal(weights, 0.0)
  return weights.astype(np.float32)


def _cosine_similarity(bought: sp.csr_matrix, buyers: np.ndarray) -> np.ndarray | sp.csr_matrix:
  """Cosine of the 0/1 purchase columns, zero diagonal; dense up to DENSE_PRODUCT_LIMIT."""
  co = bought.T @ bought  # [n_products, n_products] customers who bought both
  inv = (1.0 / np.sqrt(np.maximum(buyers, 1.0))).astype(np.float32)
  if co.shape[0] <= DENSE_PRODUCT_LIMIT:
    dense = co.toarray().astype(np.float32, copy=False)
    dense *= inv[:, None]
    dense *= inv[None, :]
    np.fill_diagonal(dense, 0.0)
    return dense
  co = (sp.diags(inv) @ co @ sp.diags(inv)).tocsr().astype(np.float32)
  co.setdiag(0.0)
  co.eliminate_zeros()
  return co


def fit_recommender(items_with_customer: pd.DataFrame, *,
                    product_embeddings: Mapping | pd.DataFrame | None = None, alpha: float = 0.5,
                    half_life_days: float | None = None,
                    neighbours: int | None = None, method: str = "cooccurrence",
                    l2: float = 250.0) -> Recommender:
  """Fits the co-purchase similarity (and stores product embeddings) from purchase lines.

  Args:
    items_with_customer: one row per purchased line, columns customer_id, product_id and optionally
      timestamp; repeats of a (customer, product) pair count once.
    product_embeddings: optional product vectors, a dict product_id -> [dim] vector or a DataFrame
      indexed by product_id (or with a product_id column) with one numeric column per dimension.
      Products never purchased are ignored; purchased products without a vector get no content
      score.
    alpha: weight in [0, 1] of the co-purchase part; 1 - alpha goes to the embedding part. Ignored
      without embeddings.
    half_life_days: when set (needs timestamp), a customer's older purchases count less in their
      profile: weight 0.5 ** (age_days / half_life_days), age measured from the last timestamp.
    neighbours: keep only each product's this many most similar products
      (:func:`keep_top_neighbours`); None keeps all. Co-occurrence only.
    method: "cooccurrence" (cosine item-kNN) or "ease" (see the module docstring; at most
      ``DENSE_PRODUCT_LIMIT`` purchased products).
    l2: EASE's ridge penalty; larger values pull the weights towards zero.

  Returns:
    A :class:`Recommender`.

  Raises:
    ValueError: missing columns, missing ids, no rows, bad alpha or half-life, bad embeddings.
  """
  _check_columns(items_with_customer, ("customer_id", "product_id"), "fit_recommender")
  if len(items_with_customer) == 0:
    raise ValueError("fit_recommender: no purchase lines")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"fit_recommender: alpha must lie in [0, 1], got {alpha}")
  if method not in METHODS:
    raise ValueError(f"fit_recommender: method must be one of {METHODS}, got {method!r}")
  if method == "ease" and neighbours is not None:
    raise ValueError("fit_recommender: neighbours applies to method='cooccurrence' only")
  lines = items_with_customer
  for col in ("customer_id", "product_id"):
    n_missing = int(lines[col].isna().sum())
    if n_missing:
      raise ValueError(f"fit_recommender: {n_missing} line(s) with missing {col}; drop them first")
  cust_codes, customer_ids = pd.factorize(lines["customer_id"].astype(str), sort=True)
  prod_codes, product_ids = pd.factorize(lines["product_id"].astype(str), sort=True)
  n_c, n_p = len(customer_ids), len(product_ids)
  if method == "ease" and n_p > DENSE_PRODUCT_LIMIT:
    raise ValueError(f"fit_recommender: method='ease' needs a dense [products, products] inverse; "
                     f"{n_p:,} purchased products exceed DENSE_PRODUCT_LIMIT "
                     f"({DENSE_PRODUCT_LIMIT:,}): use method='cooccurrence'")

  bought = sp.csr_matrix((np.ones(len(lines), dtype=np.float32), (cust_codes, prod_codes)),
                         shape=(n_c, n_p))  # [n_customers, n_products] line counts
  bought.data[:] = 1.0  # repeat purchases count once
  purchases = bought
  if half_life_days is not None:
    if half_life_days <= 0:
      raise ValueError(f"fit_recommender: half_life_days must be > 0, got {half_life_days}")
    _check_columns(lines, ("timestamp",), "fit_recommender (half_life_days)")
    ts = pd.to_datetime(lines["timestamp"])
    if ts.isna().any():
      raise ValueError("fit_recommender: timestamp holds missing values")
    age_days = ((ts.max() - ts).dt.total_seconds() / 86400.0).to_numpy()
    weight = np.power(0.5, age_days / half_life_days).astype(np.float32)
    # A repeated pair keeps the weight of its most recent purchase.
    pair = pd.DataFrame({"c": cust_codes, "p": prod_codes, "w": weight})
    pair = pair.groupby(["c", "p"])["w"].max()
    purchases = sp.csr_matrix((pair.to_numpy(), (pair.index.get_level_values(0),
                                                 pair.index.get_level_values(1))), shape=(n_c, n_p))

  buyers = np.asarray(bought.sum(axis=0), dtype=np.float32).ravel()  # [n_products] distinct buyers
  if method == "ease":
    co_similarity = ease_weights(bought, l2)
  else:
    co_similarity = _cosine_similarity(bought, buyers)
  if neighbours is not None:

    co_similarity = keep_top_neighbours(co_similarity, neighbours)
  embeddings = has_embedding = None
  if product_embeddings is not None:
    embeddings, has_embedding = _embedding_matrix(product_embeddings, product_ids)
    if not has_embedding.any():
      raise ValueError("product_embeddings: none of the purchased product ids has a vector "
                       f"(e.g. purchased {product_ids[0]!r})")
  return Recommender(customer_ids=pd.Index(customer_ids), product_ids=pd.Index(product_ids),
                     purchases=purchases.tocsr(), bought=bought.tocsr(),
                     co_similarity=co_similarity, embeddings=embeddings,
                     has_embedding=has_embedding, popularity=buyers, alpha=float(alpha),
                     method=method)


def _minmax_rows(x: np.ndarray) -> np.ndarray:
  lo = x.min(axis=1, keepdims=True)
  span = x.max(axis=1, keepdims=True) - lo
  return np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)


def _score_batch(model: Recommender, rows: np.ndarray) -> np.ndarray:
  """Blended scores [len(rows), n_products] for known customers (row numbers of ``purchases``)."""
  profile = model.purchases[rows]  # [batch, n_products] sparse
  co = profile @ model.co_similarity
  co = co.toarray() if sp.issparse(co) else np.asarray(co)
  co = co.astype(np.float32, copy=False)  # [batch, n_products]
  if model.embeddings is None or model.alpha == 1.0:
    return co
  # Content part: sum of cosines to the bought products = profile @ E @ E^T, without E E^T.
  content = np.asarray(profile @ model.embeddings) @ model.embeddings.T  # [batch, n_products]
  content[:, ~model.has_embedding] = content.min(axis=1, keepdims=True)
  co_max = co.max(axis=1, keepdims=True)
  co_scaled = np.divide(co, co_max, out=np.zeros_like(co), where=co_max > 0)
  return model.alpha * co_scaled + (1.0 - model.alpha) * _minmax_rows(content)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Column indices [batch, k] of the k largest scores per row, best first, and their scores."""
  k = min(k, scores.shape[1])
  part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  part_scores = np.take_along_axis(scores, part, axis=1)
  # Stable sort on (-score, column) so ties resolve the same way on every run.
  order = np.lexsort((part, -part_scores), axis=1)
  idx = np.take_along_axis(part, order, axis=1)
  return idx, np.take_along_axis(scores, idx, axis=1)


def _check_k(k: int) -> None:
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}")


def _rank_all(model: Recommender, customer_ids, k: int, exclude_purchased: bool,
              use_similarity: bool) -> pd.DataFrame:
  _check_k(k)
  ids = model.customer_ids if customer_ids is None else pd.Index(
      [str(c) for c in customer_ids])
  rows = model.customer_ids.get_indexer(ids)  # -1 for customers unseen at fit time
  n_p = len(model.product_ids)
  # Popularity key in [0, 1): orders the fill-in below every positive similarity score.
  pop_order = np.lexsort((np.arange(n_p), -model.popularity))
  pop_key = np.empty(n_p, dtype=np.float32)
  pop_key[pop_order] = 1.0 - (np.arange(n_p) + 1.0) / (n_p + 1.0)
  pop_share = (model.popularity / max(len(model.customer_ids), 1)).astype(np.float32)
  batch = max(1, _CELLS_PER_BATCH // max(n_p, 1))
  out_c, out_rank, out_p, out_s = [], [], [], []
  for start in range(0, len(ids), batch):
    r = rows[start:start + batch]
    known = r >= 0
    scores = np.zeros((len(r), n_p), dtype=np.float32)  # [batch, n_products]
    if use_similarity and known.any():
      scores[known] = _score_batch(model, r[known])
    reported = scores if use_similarity else np.broadcast_to(pop_share, scores.shape)
    key = np.where(scores > 0, scores, pop_key - 1.0)
    if exclude_purchased and known.any():
      bought = model.bought[r[known]].toarray() > 0
      sub = key[known]
      sub[bought] = -np.inf
      key[known] = sub
    idx, best = _top_k(key, k)
    valid = np.isfinite(best)
    which = np.repeat(np.arange(len(r)), idx.shape[1]).reshape(idx.shape)
    out_c.append(ids[start:start + batch].to_numpy()[which[valid]])
    out_rank.append(np.tile(np.arange(1, idx.shape[1] + 1), (len(r), 1))[valid])
    out_p.append(idx[valid])
    out_s.append(np.maximum(np.take_along_axis(np.asarray(reported), idx, axis=1)[valid], 0.0))
  if not out_c:
    return pd.DataFrame({"customer_id": pd.Series(dtype="string"), "rank": pd.Series(dtype=int),
                         "product_id": pd.Series(dtype="string"),
                         "score": pd.Series(dtype=float)})
  return pd.DataFrame({
      "customer_id": pd.array(np.concatenate(out_c), dtype="string"),
      "rank": np.concatenate(out_rank).astype(int),
      "product_id": pd.array(model.product_ids.to_numpy()[np.concatenate(out_p)], dtype="string"),
      "score": np.concatenate(out_s).astype(float),
  })


def recommend(model: Recommender, customer_ids: Sequence[str] | pd.Index | None = None, k: int = 10,
              exclude_purchased: bool = True) -> pd.DataFrame:
  """Top-k products per customer by blended similarity to what they bought.

  Products with no positive score, and customers unseen at fit time, are filled in by popularity
  (distinct buyers).

  Args:
    model: from :func:`fit_recommender`.
    customer_ids: customers to recommend for; None: every customer seen at fit time.
    k: recommendations per customer.
    exclude_purchased: never recommend a product the customer already bought.

  Returns:
    Columns customer_id, rank (1 = best), product_id, score (the blended similarity score; 0 for
    popularity fill-ins), k rows per customer (fewer when fewer products are left).

  Raises:
    ValueError: k is not a positive integer.
  """
  return _rank_all(model, customer_ids, k, exclude_purchased, use_similarity=True)


def popularity_recommend(model: Recommender, customer_ids: Sequence[str] | pd.Index | None = None,
                         k: int = 10, exclude_purchased: bool = True) -> pd.DataFrame:
  """Baseline: the k products bought by the most distinct customers.

  Args:
    model: from :func:`fit_recommender` (only its popularity and purchases are used).
    customer_ids: customers to recommend for; None: every customer seen at fit time.
    k: recommendations per customer.
    exclude_purchased: skip products the customer already bought.

  Returns:
    Same columns as :func:`recommend`; score is the share of customers who bought the product.

  Raises:
    ValueError: k is not a positive integer.
  """
  return _rank_all(model, customer_ids, k, exclude_purchased, use_similarity=False)


def evaluate_recommendations(recs: pd.DataFrame, holdout: pd.DataFrame, k: int = 10, *,
                             calibration: pd.DataFrame | None = None) -> dict[str, float]:
  """Hit rate and recall at k of recommendations against held-out purchases.

  Customers evaluated: those with at least one holdout purchase and, when ``calibration`` is given,
  at least one calibration purchase (else: those present in ``recs``). A customer evaluated but
  absent from ``recs`` counts as a miss. Holdout products the customer had already bought count
  too, so with ``exclude_purchased=True`` pure repeat purchases cannot be hit.

  Args:
    recs: columns customer_id, rank, product_id (from :func:`recommend`); ranks above k ignored.
    holdout: columns customer_id, product_id, purchases after the calibration period.
    k: cut-off.
    calibration: optional calibration purchases (column customer_id).

  Returns:
    {"hit_rate_at_{k}": share of customers with >= 1 holdout product in their top k,
     "recall_at_{k}": mean over customers of the share of their distinct holdout products in their
     top k, "n_customers": customers evaluated}. Rates are NaN when no customer qualifies.

  Raises:
    ValueError: missing columns or bad k.
  """
  _check_k(k)
  _check_columns(recs, ("customer_id", "rank", "product_id"), "evaluate_recommendations recs")
  _check_columns(holdout, ("customer_id", "product_id"), "evaluate_recommendations holdout")
  truth = holdout[["customer_id", "product_id"]].dropna().astype(str).drop_duplicates()
  if calibration is not None:
    _check_columns(calibration, ("customer_id",), "evaluate_recommendations calibration")
    eligible = set(calibration["customer_id"].dropna().astype(str))
  else:
    eligible = set(recs["customer_id"].dropna().astype(str))
  truth = truth[truth["customer_id"].isin(eligible)]
  customers = truth["customer_id"].unique()
  if len(customers) == 0:
    return {f"hit_rate_at_{k}": float("nan"), f"recall_at_{k}": float("nan"), "n_customers": 0}
  top = recs.loc[recs["rank"] <= k, ["customer_id", "product_id"]].astype(str).drop_duplicates()
  found = truth.merge(top, on=["customer_id", "product_id"], how="left", indicator=True)
  found["hit"] = found["_merge"] == "both"
  per_customer = found.groupby("customer_id")["hit"].agg(["sum", "size"])
  return {
      f"hit_rate_at_{k}": float((per_customer["sum"] > 0).mean()),
      f"recall_at_{k}": float((per_customer["sum"] / per_customer["size"]).mean()),
      "n_customers": int(len(per_customer)),
  }


# Recommender settings tried on the validation window (fit_recommender's keywords):
# EASE at three ridge penalties and item-kNN at four neighbourhood sizes (None: all).
RECOMMENDERS = tuple([{"method": "ease", "l2": l2} for l2 in (50.0, 250.0, 1000.0)]
                     + [{"method": "cooccurrence", "neighbours": n} for n in (10, 20, 50, None)])


# Weights of the co-purchase part tried with product-text similarity (1 - alpha for the text).
CONTENT_ALPHAS = (0.9, 0.7)


def recommender_label(settings: dict[str, Any] | None) -> str:
  """A reader's name for a recommender setting: "EASE (l2 250)", "co-purchase, 20 neighbours",
  "EASE (l2 250) + product text 10%"."""
  settings = settings or {}
  if settings.get("method") == "ease":
    label = f"EASE (l2 {settings.get('l2', 250.0):g})"
  else:
    n = settings.get("neighbours")
    label = f"co-purchase, {'all' if n is None else n} neighbours"
  if settings.get("product_embeddings") is not None:
    label += f" + product text {1 - settings.get('alpha', 0.5):.0%}"
  return label


def choose_recommender(cal_items: pd.DataFrame, *, candidates=RECOMMENDERS, share: float = 0.25,
                       embeddings: pd.DataFrame | None = None
                       ) -> tuple[dict[str, Any], dict[str, float]]:
  """Picks the recommender's settings on the calibration period alone.

  The last ``share`` of the calibration span is held back: fitted on the purchases before it,
  each candidate is scored by hit rate at 10 on the purchases in it; the holdout period, on which
  the report judges the recommendations, is never looked at. EASE candidates are skipped when
  the products exceed ``DENSE_PRODUCT_LIMIT``. With product ``embeddings``, the best
  co-purchase candidate is also tried blended with product-text similarity (``CONTENT_ALPHAS``).

  Returns:
    (the best candidate's settings, {label: validation hit rate}); the first candidate that
    applies and {} without timestamps or with too little data on either side.
  """
  n_products = cal_items["product_id"].nunique()
  usable = [c for c in candidates
            if c.get("method") != "ease" or n_products <= DENSE_PRODUCT_LIMIT]
  if not usable:
    raise ValueError("choose_recommender: no candidate applies to "
                     f"{n_products:,} products (EASE needs at most "
                     f"{DENSE_PRODUCT_LIMIT:,})")
  if "timestamp" not in cal_items or cal_items["timestamp"].isna().all():
    return dict(usable[0]), {}
  ts = pd.to_datetime(cal_items["timestamp"])
  split = ts.min() + (ts.max() - ts.min()) * (1 - share)
  early, late = cal_items[ts < split], cal_items[ts >= split]
  who = late["customer_id"].unique()
  who = who[pd.Index(who).isin(early["customer_id"])]
  if len(early) < 100 or len(who) < 30:
    return dict(usable[0]), {}
  scores: dict[str, float] = {}

  def best_of(settings: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores each setting on the validation window; the best, the first of equals."""
    for s in settings:
      model = fit_recommender(early[["customer_id", "product_id"]], **s)
      recs = recommend(model, list(who), k=10)
      scores[recommender_label(s)] = evaluate_recommendations(
          recs, late[["customer_id", "product_id"]], k=10)["hit_rate_at_10"]
    return max(settings, key=lambda s: scores[recommender_label(s)])

  best = best_of(usable)
  if embeddings is not None and early["product_id"].astype(str).isin(embeddings.index).any():
    blends = [{**best, "product_embeddings": embeddings, "alpha": a} for a in CONTENT_ALPHAS]
    best_of(blends)
    best = max([best, *blends], key=lambda s: scores[recommender_label(s)])  # plain wins ties
  return dict(best), scores

"""Scoring with a finished run's models (``cvlib score``, :class:`Scorer`).

One function, :func:`score_frame`, turns customer features into the scores table; the run's own
stage 4 (``cvlib.stages.segment.forward_scores``), ``cvlib score`` (:meth:`Scorer.score_tables`, in
chunks of customers) and :meth:`Scorer.score` (one customer's events) all call it, so the same
inputs give the same row. Two things keep rows independent of who else is scored: the networks
always run on blocks of :data:`PREDICT_BLOCK` rows (XLA's CPU matmul rounds differently for other
batch shapes), and the one population-relative feature, "days since last review" of a customer who
never wrote one, is anchored to the run's data start instead of the scored population's longest
history. A service call (:meth:`Scorer.score`, a few customers) computes the features in numpy
(``features.compute_features_small``, the DuckDB query's numbers bit for bit) because the query's
fixed cost would be most of the call. The folder's layout and manifest are
:mod:`cvlib.serve.model_folder`'s.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib.data import privacy, schema
from cvlib.value.networks import NETWORK_INPUTS, predictor_inputs
from cvlib.value.text_features import TextFeaturizer
from cvlib.data import features as feats
from cvlib.data.adapters import Tables
from cvlib.data.clean import clean_tables
from cvlib.insight import segments
from cvlib.text import blend as blend_lib
from cvlib.report.workspace import ENCODER_DIR, MODELS_DIR, TEXT_FEATURIZER_FILE
from cvlib.serve.model_folder import (CATALOGUE_FILE, REFERENCE_FILE, ModelFolderError,
                                      ScoringReference, load_manifest)

# JAX, the models and DuckDB load on first use, so `cvlib validate` stays quick.

# Rows per value-network call: one compiled shape whatever the number of customers scored.
PREDICT_BLOCK = 512
# Rows per encoder batch in batch scoring: the shape the run encoded its reviews with
# (``cvlib.stages.finetune.score_reviews``), so ``cvlib score`` gives the run's text features bit for bit.
ENCODER_BATCH = 64
# Customers per chunk in batch scoring: features, encoder and network work on one chunk at a time.
DEFAULT_CHUNK = 50_000
# Up to this many customers, Scorer.score computes features in numpy (compute_features_small)
# instead of a DuckDB query, whose fixed cost dominates a service call.
SMALL_CALL = 64
# Reviews whose encoder outputs a Scorer keeps for its service calls (EncodingCache): about
# 1.5 kB each (MiniLM's 384-wide embedding and the sentiment probabilities, float32).
REVIEW_CACHE = 20_000
# Drivers per customer in top_drivers (explain.add_drivers' default).
DRIVERS = 3

# scores.parquet columns (more follow from the segment rules)
SCORE_COLUMNS = ["customer_key", "predicted_value", "churn_probability", "value_lo", "value_hi",
                 "recency_days", "frequency", "monetary", "total_spend", "r_score", "f_score",
                 "m_score", "rfm_segment", "value_tier", "risk_band", "action", "action_reason",
                 "model"]


# --- the value networks, one compiled shape -----------------------------------------------------

def _interval_levels(interval: float) -> tuple[float, float]:
  return ((1 - interval) / 2, (1 + interval) / 2)


# (id(predictor), interval) -> (predictor, compiled block); the predictor is held so its id stays
# its own. Predictors are unhashable dataclasses, hence no lru_cache.
_BLOCK_FNS: dict[tuple[int, float], tuple[Any, Callable]] = {}


def _block_fn(predictor: Any, interval: float) -> Callable:
  """A jitted [PREDICT_BLOCK, features] -> (p_return, mean, quantiles) for one predictor."""
  key = (id(predictor), interval)
  if key not in _BLOCK_FNS:
    if len(_BLOCK_FNS) >= 8:
      _BLOCK_FNS.pop(next(iter(_BLOCK_FNS)))
    _BLOCK_FNS[key] = (predictor, _make_block_fn(predictor, interval))
  return _BLOCK_FNS[key][1]


def _make_block_fn(predictor: Any, interval: float) -> Callable:
  import jax
  from flax import nnx

  from cvlib.value import ziln
  graphdef, state = nnx.split(nnx.view(predictor.model, deterministic=True))
  qs = _interval_levels(interval)
  # the same cap and interval calibration as ZILNPredictor.predict, so the scores equal the
  # back-test's predictions of the same customers
  sigma_max = predictor.config.get("sigma_max")
  scale = predictor.interval_scale(qs)

  @jax.jit
  def block(state, x):
    out = ziln.ziln_predict(nnx.merge(graphdef, state)(x), qs,  # [block, 3] logits inside
                            sigma_max=sigma_max, interval_scale=scale)
    return out["p_return"], out["mean"], out["quantiles"]

  return functools.partial(block, state)


def predict_values(predictor: Any, X: pd.DataFrame, *, interval: float) -> dict[str, np.ndarray]:
  """A value network's predictions, computed block by block so no row depends on the others.

  Args:
    predictor: a :class:`cvlib.value.ziln.ZILNPredictor`.
    X: its inputs (``cvlib.value.networks.network_inputs``), columns in training order.
    interval: central interval level, e.g. 0.8 for the 10% and 90% quantiles.

  Returns:
    float64 arrays p_return, predicted_value, value_lo, value_hi, one entry per row of X.

  Raises:
    ValueError: columns differ from the network's training columns, or non-finite inputs.
  """
  names = predictor.config.get("feature_names")
  if names is not None and list(map(str, X.columns)) != names:
    raise ValueError(f"inputs {list(X.columns)} differ from the network's training columns "
                     f"{names}: the models were trained by a different cvlib")
  arr = X.to_numpy(np.float64)
  if not np.isfinite(arr).all():
    rows = np.unique(np.nonzero(~np.isfinite(arr))[0])[:5].tolist()
    raise ValueError(f"inputs hold NaN/inf (first rows: {rows})")
  import jax.numpy as jnp
  x = predictor.standardiser.transform(arr)  # [n, features] float32
  n = len(x)
  fn = _block_fn(predictor, float(interval))
  p, mean, lo, hi = (np.zeros(n) for _ in range(4))
  for start in range(0, n, PREDICT_BLOCK):
    rows = x[start:start + PREDICT_BLOCK]
    padded = np.zeros((PREDICT_BLOCK, x.shape[1]), np.float32)
    padded[:len(rows)] = rows
    pr, mu, q = (np.asarray(a, np.float64) for a in fn(jnp.asarray(padded)))
    end = start + len(rows)
    p[start:end], mean[start:end] = pr[:len(rows)], mu[:len(rows)]
    lo[start:end], hi[start:end] = q[:len(rows), 0], q[:len(rows), 1]
  return {"p_return": p, "predicted_value": mean, "value_lo": lo, "value_hi": hi}


def model_version(name: str, predictor: Any) -> str:
  """``<network>-<12 hex>``: a digest of the network's weights, standardiser and config."""
  from cvlib.value import ziln
  h = hashlib.sha256(json.dumps(predictor.config, sort_keys=True).encode())
  for key, var in sorted(ziln.flat_params(predictor.model).items()):
    h.update(key.encode())
    h.update(np.ascontiguousarray(np.asarray(var[...], np.float32)).tobytes())
  h.update(json.dumps(predictor.standardiser.to_dict(), sort_keys=True).encode())
  return f"{name}-{h.hexdigest()[:12]}"


# --- the scoring reference ------------------------------------------------------------------------


def anchor_features(features: pd.DataFrame, reference_start: dt.date, as_of: dt.date
                    ) -> pd.DataFrame:
  """Fills days_since_last_review of customers without reviews with days since the data start.

  ``features.feature_matrix`` would fill them with the scored population's longest history,
  which differs between one customer, a chunk and everyone; on the run's own customers the two
  are the same number.
  """
  fill = float(max((as_of - reference_start).days, 0))
  return features.assign(days_since_last_review=features["days_since_last_review"].fillna(fill))


def _segment_values(features: pd.DataFrame, pred: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
  return {"customer_key": features["customer_key"].to_numpy(),
          "predicted_value": pred["predicted_value"], "churn_probability": 1 - pred["p_return"],
          "value_lo": pred["value_lo"], "value_hi": pred["value_hi"],
          "recency_days": features["days_since_last"].to_numpy(),
          "frequency": features["n_orders"].to_numpy(),
          "monetary": features["avg_order_value"].to_numpy(),
          "total_spend": features["total_spend"].to_numpy()}


def _segment_input(features: pd.DataFrame, pred: dict[str, np.ndarray]) -> pd.DataFrame:
  return pd.DataFrame(_segment_values(features, pred))


def fit_reference(features: pd.DataFrame, text: pd.DataFrame | None, networks: dict[str, Any],
                  scoring_model: str, *, as_of: dt.date, horizon_days: int, interval: float,
                  value_tiers: tuple[float, float], risk_thresholds: tuple[float, float],
                  value_floor: float = 0.0) -> ScoringReference:
  """The run's scoring reference from its own customers as of ``as_of``.

  Args:
    features: every customer's features as of ``as_of`` (with customer_key).
    text: their text features, or None.
    networks: {name: ZILNPredictor}; value-tier cut-offs are fitted for each.
    scoring_model: the network the run scores with.
    as_of: the scoring day.
    horizon_days: the prediction horizon.
    interval: central interval level of value_lo / value_hi.
    value_tiers: (High, Medium) shares of customers.
    risk_thresholds: churn probability bounds of Medium and High risk.
    value_floor: the least predicted value of the High and Medium tiers
      (:func:`cvlib.insight.segments.value_floor`); the value-tier cut-offs hold it.

  Returns:
    The reference.

  Raises:
    ValueError: no customers, or ``scoring_model`` not among the networks.
  """
  if not len(features):
    raise ValueError("fit_reference: no customers")
  if scoring_model not in networks:
    raise ValueError(f"fit_reference: scoring model {scoring_model!r} not among the networks "
                     f"({', '.join(networks)})")
  data_start = pd.Timestamp(features["first_purchase"].min()).date()
  anchored = anchor_features(features, data_start, as_of)
  cuts, baselines, ref, warnings = {}, {}, None, []
  for name, predictor in networks.items():
    if "text" in NETWORK_INPUTS[name] and text is None:
      continue
    X = predictor_inputs(name, predictor, anchored, text)
    baselines[name] = tuple(X.median().to_numpy(np.float64).tolist())  # explain's "median"
    pred = predict_values(predictor, X, interval=interval)
    ref, warnings = segments.fit_segment_reference(_segment_input(anchored, pred),
                                                   value_tiers=value_tiers,
                                                   risk_thresholds=risk_thresholds,
                                                   value_floor=value_floor)
    cuts[name] = (ref.high_from, ref.medium_from)
  if scoring_model not in cuts:
    raise ValueError(f"fit_reference: scoring model {scoring_model!r} reads text, but there are "
                     "no text features")
  # RFM edges are the same for every network: they do not look at predictions
  return ScoringReference(scoring_model, as_of, data_start, int(horizon_days), float(interval),
                          len(features), ref.rfm_edges, cuts, ref.value_tiers,
                          ref.risk_thresholds, tuple(warnings), baselines)


def score_frame(features: pd.DataFrame, text: pd.DataFrame | None, predictor: Any, name: str,
                reference: ScoringReference, *, as_of: dt.date, raw_ids: bool = False,
                version: str | None = None, drivers: bool = True) -> pd.DataFrame:
  """The scores table for customers: value, interval, churn, RFM segment, tier, risk, action.

  Every row depends on its own customer only, so scoring one customer, a chunk or all of them
  gives the same row (to float32 rounding for text models: see ``encode_reviews``).

  Args:
    features: customer features as of ``as_of`` (``features.compute_customer_features`` plus
      customer_key).
    text: text features (``TextFeaturizer.transform``) when the network reads text, else None.
    predictor: the value network.
    name: its name (a key of ``NETWORK_INPUTS``).
    reference: the run's scoring reference.
    as_of: the scoring day.
    raw_ids: add the raw customer_id after customer_key.
    version: the model_version column (default: :func:`model_version`).
    drivers: add ``top_drivers``, the inputs that moved the prediction most from the run's
      median customer (``explain.integrated_gradients``), when the reference has a baseline.

  Returns:
    One row per customer, in the order of ``features``.
  """
  # only rating networks read days_since_last_review: the history network skips the copy
  anchored = (features if NETWORK_INPUTS[name] == ("history",) else
              anchor_features(features, reference.data_start, as_of))
  X = predictor_inputs(name, predictor, anchored, text)
  pred = predict_values(predictor, X, interval=reference.interval)
  # one frame built once from arrays (a service call scores one customer: every column added to
  # a frame one by one cost more than the network); raw ids join only at the end, if allowed
  cols = _segment_values(anchored, pred)
  cols.update(segments.segment_columns(
      cols["recency_days"], cols["frequency"], cols["monetary"], cols["predicted_value"],
      cols["churn_probability"], reference.segment_reference(name)))
  cols["model"] = np.full(len(anchored), name, dtype=object)
  cols["model_version"] = np.full(len(anchored), version or model_version(name, predictor),
                                  dtype=object)
  seg = pd.DataFrame(cols)
  if drivers and name in reference.baselines:
    from cvlib.insight import explain
    attributions = explain.integrated_gradients(predictor, X,
                                                baseline=np.asarray(reference.baselines[name]))
    seg["top_drivers"] = explain.top_drivers(attributions, X, k=DRIVERS)
    seg.attrs["completeness_gap"] = attributions.attrs.get("completeness_gap")
  if raw_ids:
    seg.insert(1, "customer_id", features["customer_id"].to_numpy())
  # text columns as pandas' string dtype, which is what scores.parquet reads back as: a frame
  # scored in memory then equals the written one (object columns would not)
  for col in seg.columns[seg.dtypes.to_numpy() == object]:
    if pd.api.types.infer_dtype(seg[col], skipna=True) in ("string", "empty"):
      seg[col] = seg[col].astype("str")
  return seg


# --- features of a few customers, without DuckDB --------------------------------------------------


# --- review text ---------------------------------------------------------------------------------

class EncodingCache:
  """Encoder outputs of review texts already seen, keyed by their token ids (least recently used
  go first beyond ``max_entries``).

  A service request carries the customer's whole history, so the same reviews come back on
  every call for that customer; the encoder is most of a text-aware call's cost. A cached row
  was computed in some earlier batch: it agrees with a fresh one to float32 rounding, as rows
  of different batches do (bit for bit when every call encodes one review at a time).
  """

  def __init__(self, max_entries: int):
    self.max_entries = max_entries
    self._rows: collections.OrderedDict[bytes, np.ndarray] = collections.OrderedDict()
    self._lock = threading.Lock()
    self.hits = self.misses = 0

  def get(self, key: bytes) -> np.ndarray | None:
    with self._lock:
      row = self._rows.get(key)
      if row is None:
        self.misses += 1
        return None
      self._rows.move_to_end(key)
      self.hits += 1
      return row

  def put(self, key: bytes, row: np.ndarray) -> None:
    if self.max_entries < 1:
      return
    with self._lock:
      self._rows[key] = row
      self._rows.move_to_end(key)
      while len(self._rows) > self.max_entries:
        self._rows.popitem(last=False)

  def __len__(self) -> int:
    return len(self._rows)


def encode_reviews(model: Any, tokenizer: Any, reviews: pd.DataFrame, *,
                   buckets: tuple[int, ...], batch_size: int, blend: Any = None,
                   truncation: str = "head", fit_last: bool = False,
                   cache: EncodingCache | None = None
                   ) -> tuple[pd.DataFrame, np.ndarray]:
  """Sentiment and embedding of every review with text, every batch of one fixed shape.

  The same as ``cvlib.stages.finetune.score_reviews`` on the same reviews when ``batch_size`` is the run's
  (64); on other sets of reviews (one customer, a chunk) a review lands elsewhere in its batch,
  and on some CPUs (AVX2) XLA's float32 result then differs in the last bit, so scores agree
  with the run's to float32 rounding. ``blend``: the run's TF-IDF blend
  (``blend.SentimentBlend``), when it saved one. ``fit_last``: each bucket's last batch has the
  next power of two >= its reviews as rows (``tokens.batches_from_ids``); ``cache``: encoder
  outputs of texts seen before are taken from it, and new ones added.

  Returns:
    (frame with review_id, customer_id, timestamp, rating, sentiment, p_negative;
    embeddings [n, hidden] float32).
  """
  import jax.numpy as jnp

  from cvlib.text import sentiment, tokens
  r = reviews[reviews["text"].notna()].reset_index(drop=True)
  k = model.num_labels
  out = np.zeros((len(r), k + model.bert.config.hidden_size), np.float32)
  if len(r):
    ids = tokens.tokenize_texts(tokenizer, r["text"].tolist(), max_length=max(buckets),
                                truncation=truncation)
    todo = list(range(len(ids)))  # reviews to encode: those the cache does not hold
    if cache is not None:
      keys = [x.tobytes() for x in ids]
      cached = [cache.get(key) for key in keys]
      todo = [i for i, row in enumerate(cached) if row is None]
      for i, row in enumerate(cached):
        if row is not None:
          out[i] = row
    for batch in tokens.batches_from_ids([ids[i] for i in todo], batch_size=batch_size,
                                         buckets=buckets, fit_last=fit_last,
                                         pad_id=tokens.pad_token_id(tokenizer)):
      res = np.asarray(sentiment.proba_embed_step(model, jnp.asarray(batch["input_ids"]),
                                                   jnp.asarray(batch["attention_mask"])))
      real = batch["index"] >= 0
      rows = np.asarray(todo, np.int64)[batch["index"][real]]
      out[rows] = res[real]
      if cache is not None:
        for row in rows.tolist():
          cache.put(keys[row], out[row].copy())
  proba, emb = out[:, :k], out[:, k:]
  if blend is not None:
    proba = blend.proba(proba, r["text"].tolist())
  score = proba[:, -1] - proba[:, 0]  # positive minus negative, as cvlib.stages.finetune.score_reviews
  cols = [c for c in ("review_id", "customer_id", "product_id", "timestamp", "rating")
          if c in r.columns]
  frame = r[cols].copy()
  frame["sentiment"] = score.astype("float64")
  frame["p_negative"] = proba[:, 0].astype("float64")
  return frame, emb


# --- the manifest ---------------------------------------------------------------------------------


# --- the scorer -----------------------------------------------------------------------------------

def as_date(value: Any, what: str) -> dt.date:
  """A date from a date, a datetime or a YYYY-MM-DD string; ValueError naming ``what`` else."""
  if isinstance(value, dt.datetime):
    return value.date()
  if isinstance(value, dt.date):
    return value
  try:
    return dt.date.fromisoformat(str(value))
  except ValueError:
    raise ValueError(f"{what}: {value!r} is not a date (YYYY-MM-DD)") from None


def _canonical(name: str, df: pd.DataFrame | None) -> pd.DataFrame:
  if df is None:
    return schema.empty_table(name)
  if not isinstance(df, pd.DataFrame):
    raise ValueError(f"{name}: need a DataFrame, got {type(df).__name__}")
  try:
    return schema.coerce_table(name, df)
  except KeyError as e:
    raise ValueError(str(e.args[0])) from None
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name}: a column does not convert to its canonical type ({e})") from None


class Scorer:
  """A finished run's models, loaded once, scoring customers from their events.

  Example::

    scorer = cvlib.Scorer("reports/demo")
    scorer.score(transactions, reviews, as_of="2024-07-01")   # one customer or a few
    scorer.score_tables(cvlib.load_data(params), out="scores.parquet")  # everyone, in chunks

  Args:
    run_dir: the run folder (``reports/<dataset>``).
    model: the value network to score with (default: the run's scoring network).
    verify: check the models' sha256 against the manifest.
    warm_up: compile the network block and, for a text-aware network, the encoder's few length
      buckets now rather than on the first call.
    salt: pseudonymisation key for customer_key (default: $CVLIB_SALT, then the run's params).
    drivers: add ``top_drivers`` (integrated gradients from the run's median customer), as the
      run's scores.parquet has them; off by default, since they cost a service call more than the
      scores (``cvlib score`` turns them on).
    review_cache: reviews whose encoder outputs :meth:`score` keeps (:class:`EncodingCache`) for
      a text-aware network; 0 keeps none. Batch scoring (:meth:`score_tables`) never uses it.

  Raises:
    ModelFolderError: the folder fails the manifest checks, or has no such model.
  """

  def __init__(self, run_dir: str | os.PathLike, *, model: str | None = None,
               verify: bool = True, warm_up: bool = True, salt: str | None = None,
               drivers: bool = False, review_cache: int = REVIEW_CACHE):
    from cvlib.text import checkpoint, tokens
    from cvlib.value import ziln
    self.run_dir = Path(run_dir)
    self.drivers = drivers
    self.manifest = load_manifest(self.run_dir, verify=verify)
    models = self.run_dir / MODELS_DIR
    if not self.manifest.get("scoring"):
      raise ModelFolderError([f"{models}: {self.manifest.get('not_scorable')}"])
    self.reference = ScoringReference.load(models / REFERENCE_FILE)
    self.name = model or self.reference.scoring_model
    nets = self.manifest["value_models"]
    usable = [n for n in nets if n in self.reference.value_cuts]
    if self.name not in usable:
      raise ModelFolderError([f"{models}: no value model {self.name!r} to score with "
                              f"(have: {', '.join(usable)})"])
    self.predictor = ziln.ZILNPredictor.load(models / self.name)
    self.version = model_version(self.name, self.predictor)
    self.needs_text = "text" in NETWORK_INPUTS[self.name]
    self.horizon_days = self.reference.horizon_days
    params = self.manifest["params"]["values"]
    self.salt = salt or privacy.resolve_salt((params.get("report") or {}).get("salt"))[0]
    self.buckets = tuple((params.get("finetune") or {}).get("buckets") or (32, 64, 128))
    # runs before finetune.truncation existed cut at the head
    self.truncation = (params.get("finetune") or {}).get("truncation") or "head"
    self.catalogue = (pd.read_parquet(models / CATALOGUE_FILE)
                      if (models / CATALOGUE_FILE).exists() else schema.empty_table("products"))
    self.encoder = self.tokenizer = self.featurizer = self.blend = None
    self.review_cache = EncodingCache(review_cache)
    if self.needs_text:
      self.featurizer = TextFeaturizer.load(models / TEXT_FEATURIZER_FILE)
      self.encoder, _ = checkpoint.load_saved_encoder(models / ENCODER_DIR)
      self.tokenizer = tokens.load_tokenizer(models / ENCODER_DIR, max_length=max(self.buckets))
      self.blend = blend_lib.SentimentBlend.load(models / ENCODER_DIR)
    self.fast_features = feats.small_path_agrees()
    if warm_up:
      self.warm_up()

  def warm_up(self, encoder_batch: int = 1) -> None:
    """Compiles the network block and, for a text-aware network, the encoder's shapes of
    :meth:`score` with ``encoder_batch`` (every power of two up to it, per bucket), so no call
    pays for compilation."""
    import jax.numpy as jnp

    from cvlib.text import sentiment, tokens
    width = self.predictor.config["in_features"]
    _block_fn(self.predictor, self.reference.interval)(jnp.zeros((PREDICT_BLOCK, width),
                                                                 jnp.float32))
    if self.needs_text:
      rows = {tokens.inference_batch_size(n, encoder_batch) for n in range(1, encoder_batch + 1)}
      for length in self.buckets:  # fit_last's shapes: [rows, length]
        for n in rows:
          ids = jnp.zeros((n, length), jnp.int32)
          sentiment.proba_embed_step(self.encoder, ids, jnp.ones((n, length), jnp.int32))

  # --- one customer or a few ----------------------------------------------------------------
  def score(self, transactions: pd.DataFrame, reviews: pd.DataFrame | None = None, *,
            items: pd.DataFrame | None = None, products: pd.DataFrame | None = None,
            as_of: Any = None, clean: bool = True, encoder_batch: int = 1) -> pd.DataFrame:
    """Scores the customers in a few customers' events (a service call).

    Args:
      transactions: canonical transactions (customer_id, order_id, timestamp, amount): each
        customer's whole history up to ``as_of``.
      reviews: their canonical reviews (review_id, customer_id, timestamp, rating, text), if any.
      items: their order lines (order_id, product_id, quantity, unit_price, amount), if any.
      products: product categories (default: the run's catalogue).
      as_of: the scoring day (default: the day after the last transaction).
      clean: clean the events as a run does (cancellations, duplicates, bad rows).
      encoder_batch: reviews per encoder call (text-aware network). 1 makes every customer's
        row independent of the others' bit for bit; more is faster for many reviews and agrees
        to float32 rounding (see :func:`encode_reviews`).

    Returns:
      One row per customer with a purchase before ``as_of``: customer_id, customer_key and the
      columns of the run's scores.parquet (value, interval, churn, segments, model,
      model_version).

    Raises:
      ValueError: missing columns or values that do not convert.
    """
    tables = Tables(customers=pd.DataFrame(), transactions=_canonical("transactions", transactions),
                    items=_canonical("items", items),
                    products=self.catalogue if products is None else products,
                    reviews=_canonical("reviews", reviews))
    if clean:
      tables, _ = clean_tables(tables)
    tx = tables.transactions
    if not len(tx):
      return self._empty(raw_ids=True)
    day = (as_date(as_of, "as_of") if as_of is not None
           else tx["timestamp"].max().date() + dt.timedelta(days=1))
    return self._score_chunk(tx, tables.items, tables.products, tables.reviews, day,
                             raw_ids=True, salt=self.salt, encoder_batch=encoder_batch,
                             small=self.fast_features
                             and tx["customer_id"].nunique() <= SMALL_CALL, service=True)

  # --- everyone, in chunks ------------------------------------------------------------------
  def score_tables(self, tables: Any, *, as_of: Any = None, out: str | os.PathLike | None = None,
                   chunk_size: int = DEFAULT_CHUNK, raw_ids: bool = False,
                   salt: str | None = None, log: Callable[[str], None] | None = None
                   ) -> pd.DataFrame | int:
    """Scores every customer of cleaned canonical tables, ``chunk_size`` customers at a time.

    Args:
      tables: cleaned :class:`cvlib.data.adapters.Tables`.
      as_of: the scoring day (default: the day after the last transaction).
      out: a .parquet or .csv file to stream the rows to; None returns them as one DataFrame.
      chunk_size: customers per chunk (bounds the memory of features, encoder and network).
      raw_ids: add the raw customer_id column.
      salt: pseudonymisation key (default: the scorer's).
      log: called with a progress line per chunk.

    Returns:
      The scores (out=None), else the number of rows written.

    Raises:
      ValueError: bad as_of, chunk_size or output suffix; no customer bought before as_of.
    """
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
      raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    tx, items, reviews = tables.transactions, tables.items, tables.reviews
    if not len(tx):
      raise ValueError("no transactions: nothing to score (customer value needs orders)")
    day = (as_date(as_of, "as_of") if as_of is not None
           else tx["timestamp"].max().date() + dt.timedelta(days=1))
    if tx["timestamp"].min() >= pd.Timestamp(day):
      raise ValueError(f"no purchase before as_of {day} (data from "
                       f"{tx['timestamp'].min().date()} to {tx['timestamp'].max().date()})")
    sink = _Sink(out)
    n = 0
    for part in _customer_chunks(tx, items, reviews, chunk_size):
      rows = self._score_chunk(*part[:2], tables.products, part[2], day, raw_ids=raw_ids,
                               salt=salt or self.salt, encoder_batch=ENCODER_BATCH)
      sink.add(rows)
      n += len(rows)
      if log:
        log(f"[cvlib] scored {n:,} customers")
    frame = sink.close()
    return frame if out is None else n

  # --- shared ---------------------------------------------------------------------------------
  def _empty(self, raw_ids: bool) -> pd.DataFrame:
    cols = list(SCORE_COLUMNS) + ["model_version"]
    return pd.DataFrame(columns=cols[:1] + ["customer_id"] + cols[1:] if raw_ids else cols)

  def _score_chunk(self, tx: pd.DataFrame, items: pd.DataFrame, products: pd.DataFrame,
                   reviews: pd.DataFrame, as_of: dt.date, *, raw_ids: bool, salt: str,
                   encoder_batch: int, small: bool = False, service: bool = False
                   ) -> pd.DataFrame:
    compute = feats.compute_features_small if small else feats.compute_customer_features
    f = compute(tx, items, products, reviews, as_of, self.horizon_days)
    if not len(f):
      return self._empty(raw_ids)
    return self.score_features(f, reviews, as_of, raw_ids=raw_ids, salt=salt,
                               encoder_batch=encoder_batch, service=service)

  def score_features(self, f: pd.DataFrame, reviews: pd.DataFrame | None, as_of: dt.date, *,
                     raw_ids: bool, salt: str, encoder_batch: int,
                     drivers: bool | None = None, service: bool = False) -> pd.DataFrame:
    """Scores rows of customer features computed elsewhere (this scorer's chunks, or Spark's
    feature query): pseudonymous keys, the text features from ``reviews`` when the network
    reads text (only those of these customers before ``as_of`` count), then
    :func:`score_frame`. ``drivers`` defaults to the scorer's own setting. ``service``: a few
    customers' call (:meth:`score`): the encoder's last batches fit their reviews and the
    review cache is used."""
    f.insert(1, "customer_key", privacy.pseudonymise(f["customer_id"], salt))
    text = None
    if self.needs_text:
      keep = (reviews["customer_id"].notna() & reviews["timestamp"].notna()
              & (reviews["timestamp"] < pd.Timestamp(as_of)))
      review_scores, emb = encode_reviews(self.encoder, self.tokenizer, reviews[keep],
                                          buckets=self.buckets, batch_size=encoder_batch,
                                          blend=self.blend, truncation=self.truncation,
                                          fit_last=service,
                                          cache=self.review_cache if service else None)
      text = self.featurizer.transform(f["customer_id"], review_scores, emb, as_of)
    return score_frame(f, text, self.predictor, self.name, self.reference, as_of=as_of,
                       raw_ids=raw_ids, version=self.version,
                       drivers=self.drivers if drivers is None else drivers)


def _customer_chunks(tx: pd.DataFrame, items: pd.DataFrame, reviews: pd.DataFrame,
                     chunk_size: int):
  """Yields (transactions, items, reviews) of ``chunk_size`` customers at a time, in id order.

  Rows keep their input order within a customer. When every customer fits in one chunk the
  tables are passed through untouched (the run's own inputs, row for row).
  """
  codes, uniques = pd.factorize(tx["customer_id"], sort=True)
  if len(uniques) <= chunk_size:
    yield tx, items, reviews
    return
  tx_order = np.argsort(codes, kind="stable")
  tx_codes = codes[tx_order]
  pos = pd.Index(tx["order_id"]).get_indexer(items["order_id"])  # order ids are unique
  item_codes = np.where(pos >= 0, codes[np.maximum(pos, 0)], -1)
  item_order = np.argsort(item_codes, kind="stable")
  item_sorted = item_codes[item_order]
  rv_codes = pd.Index(uniques).get_indexer(reviews["customer_id"])
  rv_order = np.argsort(rv_codes, kind="stable")
  rv_sorted = rv_codes[rv_order]
  for start in range(0, len(uniques), chunk_size):
    bounds = [start, start + chunk_size]
    a, b = np.searchsorted(tx_codes, bounds)
    c, d = np.searchsorted(item_sorted, bounds)
    e, g = np.searchsorted(rv_sorted, bounds)
    yield (tx.iloc[tx_order[a:b]].reset_index(drop=True),
           items.iloc[item_order[c:d]].reset_index(drop=True),
           reviews.iloc[rv_order[e:g]].reset_index(drop=True))


class _Sink:
  """Collects chunks of scores: a parquet file (row group per chunk), a csv file, or memory."""

  def __init__(self, out: str | os.PathLike | None):
    self.path = None if out is None else Path(out)
    self.kind = None
    if self.path is not None:
      suffix = self.path.suffix.lower()
      if suffix not in (".parquet", ".csv"):
        raise ValueError(f"--out {self.path}: the file name must end in .parquet or .csv")
      self.kind = suffix[1:]
      self.path.parent.mkdir(parents=True, exist_ok=True)
      self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
    self.frames: list[pd.DataFrame] = []
    self.writer = None
    self.schema = None

  def add(self, df: pd.DataFrame) -> None:
    if self.kind is None:
      self.frames.append(df)
    elif self.kind == "csv":
      df.to_csv(self.tmp, mode="w" if self.writer is None else "a", header=self.writer is None,
                index=False)
      self.writer = True
    else:
      import pyarrow as pa
      import pyarrow.parquet as pq
      if self.writer is None:
        table = pa.Table.from_pandas(df, preserve_index=False)
        self.schema = table.schema
        self.writer = pq.ParquetWriter(self.tmp, self.schema)
      else:
        table = pa.Table.from_pandas(df, schema=self.schema, preserve_index=False)
      self.writer.write_table(table)

  def close(self) -> pd.DataFrame | None:
    if self.kind is None:
      frames = [f for f in self.frames if len(f)] or self.frames[:1]
      return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if self.kind == "parquet" and self.writer is not None:
      self.writer.close()
    os.replace(self.tmp, self.path)  # readers never see a half-written file
    return None

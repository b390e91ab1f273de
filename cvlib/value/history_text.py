"""End-to-end customer value: the calibration history written as text, BERT + ZILN on top.

``customer_history_texts`` writes each customer's orders and reviews before the cutoff as one
short text, oldest first, e.g.::

  2023-03-02: order 45.00 (2 items: floral dress, dresses; socks); 2023-04-10: review 2 stars:
  'too small, returned it'

``train_e2e_ziln`` fine-tunes a ``bert.BertForZILN`` (the encoder copied from any cvlib BERT)
on those texts plus the customer's numeric features, with the zero-inflated lognormal loss of
``cvlib.value.ziln``, and returns an ``E2EPredictor`` whose ``predict`` gives the same columns as
``ziln.ZILNPredictor.predict``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from cvlib import training
from cvlib.text import checkpoint, devices, mlm, tokens

from cvlib.value import ziln
from cvlib.text.bert import BertConfig, BertForZILN

Batch = dict[str, jax.Array]

# The text of a customer without any event before the cutoff.
NO_HISTORY_TEXT = "no purchases before the cutoff"
_MAX_LABELS = 3  # product labels listed per order; more become "+N more"
_MAX_LABEL_CHARS = 40  # a product description is cut to this many characters
_SEP = "; "

# ----------------------------------------------------------------------------------------------
# History as text


def _check_columns(df: pd.DataFrame, table: str, needed: Sequence[str]) -> None:
  missing = [c for c in needed if c not in df.columns]
  if missing:
    raise ValueError(f"{table}: column(s) {missing} missing (have: {list(map(str, df.columns))})")


def _cut(text: str, limit: int, ellipsis: str = "...") -> str:
  """text cut to at most limit characters, at a space if one is in the second half."""
  head = text[:max(limit - len(ellipsis), 0)]
  space = head.rfind(" ")
  if space > limit // 2:  # a word boundary; texts without spaces (Chinese) cut anywhere
    head = head[:space]
  return head.rstrip(" ,;:-") + ellipsis


def _clip(texts: Sequence[Any], limit: int, ellipsis: str = "...") -> list[Any]:
  """Each text cut to at most ``limit`` characters (ending in ellipsis when cut); None stays."""
  return [t if t is None or len(t) <= limit else _cut(t, limit, ellipsis) for t in texts]


def _clean(series: pd.Series) -> pd.Series:
  """Whitespace (newlines, tabs, runs of spaces) collapsed to single spaces; NA stays NA."""
  return series.astype("string").str.replace(r"\s+", " ", regex=True).str.strip()


def _day_strings(timestamps: pd.Series) -> np.ndarray:
  """ "YYYY-MM-DD" per timestamp; formats each distinct day once (there are few)."""
  codes, days = pd.factorize(timestamps.dt.floor("D"))
  return np.asarray(days.strftime("%Y-%m-%d"), dtype=object)[codes]


def _member(column: pd.Series, values: pd.Index) -> np.ndarray:
  """Boolean [len(column)]: whether each entry is one of values (unique); NA is never one.

  A hash lookup: pandas' ``isin`` on Arrow strings builds a Python scalar per value (seconds for
  a million order ids).
  """
  return values.get_indexer(column.astype("string").astype(object)) >= 0


def _number(x: float) -> str:
  return f"{x:g}"


def _item_notes(order_ids: pd.Series, items: pd.DataFrame | None,
                products: pd.DataFrame | None) -> np.ndarray:
  """Per entry of order_ids: " (3 items: floral dress, dresses; socks)", or "" without lines."""
  out = np.full(len(order_ids), "", dtype=object)
  if items is None or not len(items):
    return out
  _check_columns(items, "items", ("order_id", "product_id", "quantity"))
  member = _member(items["order_id"], pd.Index(order_ids.unique()))
  if not member.any():
    return out
  lines = pd.DataFrame({
      "order_id": items["order_id"].to_numpy(dtype=object)[member],
      "product_id": items["product_id"].to_numpy(dtype=object, na_value=None)[member],
      "quantity": pd.to_numeric(items["quantity"]).to_numpy(dtype=float, na_value=1.0)[member],
      "amount": (pd.to_numeric(items["amount"]).to_numpy(dtype=float, na_value=0.0)[member]
                 if "amount" in items.columns else 0.0)})
  quantity = lines.groupby("order_id", sort=False)["quantity"].sum()
  orders = pd.Index(quantity.index.to_numpy(dtype=object))

  label = np.full(len(lines), None, dtype=object)
  if products is not None and len(products):
    _check_columns(products, "products", ("product_id",))
    info = products.drop_duplicates("product_id")
    product_index = pd.Index(info["product_id"].to_numpy(dtype=object))
    at = product_index.get_indexer(lines["product_id"])
    parts = []
    for column in ("description", "category"):
      if column in info.columns:
        values = _clean(info[column]).str.lower().replace("", pd.NA)
        values = np.asarray(_clip(values.to_numpy(dtype=object, na_value=None),
                                  _MAX_LABEL_CHARS, ellipsis=""), dtype=object)
        parts.append(np.where(at >= 0, values[at], None))
    if parts:
      desc = parts[0]
      cat = parts[1] if len(parts) > 1 else np.full(len(lines), None, dtype=object)
      label = np.asarray([(d if c is None or c == d else f"{d}, {c}") if d is not None else c
                          for d, c in zip(desc, cat)], dtype=object)
  named = lines.assign(label=label, neg_amount=-lines["amount"]).dropna(subset=["label"])
  # The dearest lines first, then alphabetical: a deterministic order, most telling labels first.
  named = (named.sort_values(["order_id", "neg_amount", "label"], kind="mergesort")
           .drop_duplicates(["order_id", "label"]))
  oid = named["order_id"].to_numpy(dtype=object)
  labels = named["label"].to_numpy(dtype=object)
  listed = np.full(len(orders), "", dtype=object)
  if len(oid):
    starts = np.flatnonzero(np.r_[True, oid[1:] != oid[:-1]])
    ends = np.r_[starts[1:], len(oid)]
    texts = []
    for s, e in zip(starts, ends):
      text = _SEP.join(labels[s:min(e, s + _MAX_LABELS)])
      texts.append(text + f"; +{e - s - _MAX_LABELS} more" if e - s > _MAX_LABELS else text)
    listed[orders.get_indexer(oid[starts])] = texts
  notes = np.asarray([f" ({_number(q)} {'item' if q == 1 else 'items'}{': ' + n if n else ''})"
                      for q, n in zip(quantity.to_numpy(), listed)], dtype=object)
  at = orders.get_indexer(order_ids.to_numpy(dtype=object))
  return np.where(at >= 0, notes[at], "")


def _order_events(transactions: pd.DataFrame, items: pd.DataFrame | None,
                  products: pd.DataFrame | None) -> pd.DataFrame:
  orders = transactions["order_id"].astype(str)
  notes = _item_notes(orders, items, products)
  days = _day_strings(transactions["timestamp"])
  amounts = pd.to_numeric(transactions["amount"]).to_numpy(dtype=float, na_value=np.nan)
  pieces = [f"{d}: order {a:.2f}{n}" if a == a else f"{d}: order{n}"
            for d, a, n in zip(days, amounts, notes)]
  return pd.DataFrame({"customer_id": transactions["customer_id"].astype("string").to_numpy(
                           dtype=object),
                       "timestamp": transactions["timestamp"].to_numpy(), "kind": 0,
                       "key": orders.to_numpy(dtype=object), "day": days, "piece": pieces})


def _review_events(reviews: pd.DataFrame, max_review_chars: int) -> pd.DataFrame:
  days = _day_strings(reviews["timestamp"])
  if "rating" in reviews.columns:
    ratings = pd.to_numeric(reviews["rating"]).to_numpy(dtype=float, na_value=np.nan)
  else:
    ratings = np.full(len(reviews), np.nan)
  stars = [("" if r != r else f" {_number(r)} star" if r == 1 else f" {_number(r)} stars")
           for r in ratings]
  words = []
  for column in ("title", "text"):
    if column in reviews.columns:
      words.append(_clean(reviews[column]).replace("", pd.NA).to_numpy(dtype=object,
                                                                        na_value=None))
  if words:
    said = [" - ".join(w for w in ws if w is not None) for ws in zip(*words)]
  else:
    said = [""] * len(reviews)
  said = _clip(said, max_review_chars)
  pieces = [f"{d}: review{s}: '{w}'" if w else f"{d}: review{s}"
            for d, s, w in zip(days, stars, said)]
  key = (reviews["review_id"].astype(str).to_numpy() if "review_id" in reviews.columns
         else np.asarray([str(i) for i in range(len(reviews))], dtype=object))
  return pd.DataFrame({"customer_id": reviews["customer_id"].astype("string").to_numpy(
                           dtype=object),
                       "timestamp": reviews["timestamp"].to_numpy(), "kind": 1, "key": key,
                       "day": days, "piece": pieces})


def _summary(n_orders: int, n_reviews: int, first_day: str) -> str:
  parts = []
  if n_orders:
    parts.append(f"{n_orders} order{'s' if n_orders != 1 else ''}")
  if n_reviews:
    parts.append(f"{n_reviews} review{'s' if n_reviews != 1 else ''}")
  return f"{', '.join(parts)} since {first_day}{_SEP}"


def customer_history_texts(transactions: pd.DataFrame, reviews: pd.DataFrame | None,
                           customer_ids: Sequence[str] | pd.Series | pd.Index,
                           cutoff: dt.date | pd.Timestamp | str, *,
                           items: pd.DataFrame | None = None,
                           products: pd.DataFrame | None = None, max_chars: int = 600,
                           max_review_chars: int = 160) -> list[str]:
  """One text per customer: its orders and reviews strictly before the cutoff, oldest first.

  Each event reads "YYYY-MM-DD: order 45.00 (2 items: floral dress, dresses; socks)" or
  "YYYY-MM-DD: review 2 stars: 'too small, returned it'"; events are joined by "; ". Same-day
  events go orders before reviews, then by order / review id. When the text would exceed
  max_chars the oldest events are dropped and a summary of the whole history starts the text
  ("12 orders, 3 reviews since 2022-01-03; ..."). Reviews without a timestamp or customer are
  left out (they cannot be placed before the cutoff). Customers without any event get
  ``NO_HISTORY_TEXT``.

  Args:
    transactions: canonical transactions (customer_id, order_id, timestamp, amount).
    reviews: canonical reviews (customer_id, timestamp; rating, title, text used when present),
      or None.
    customer_ids: the customers to describe; the result follows this order.
    cutoff: first moment not described (a date means its midnight): events at timestamps
      ``< cutoff`` only.
    items: canonical items (order_id, product_id, quantity; amount), or None: orders then get
      the number of items and the product labels.
    products: canonical products (product_id; description, category), or None: the labels.
    max_chars: longest text; at least 40.
    max_review_chars: a review's title and text are cut to this many characters.

  Returns:
    A list of len(customer_ids) strings, each at most max_chars long.

  Raises:
    ValueError: a required column is missing, a customer id is missing, a bad cutoff or limit.
  """
  if not isinstance(max_chars, (int, np.integer)) or max_chars < 40:
    raise ValueError(f"max_chars must be an int >= 40, got {max_chars!r}")
  if not isinstance(max_review_chars, (int, np.integer)) or max_review_chars < 4:
    raise ValueError(f"max_review_chars must be an int >= 4, got {max_review_chars!r}")
  try:
    cut = pd.Timestamp(cutoff)
  except (TypeError, ValueError) as e:
    raise ValueError(f"cutoff must be a date or timestamp, got {cutoff!r}") from e
  if cut is pd.NaT:
    raise ValueError(f"cutoff must be a date or timestamp, got {cutoff!r}")
  ids = pd.Series(customer_ids, dtype="string") if not isinstance(customer_ids, pd.Series) else (
      customer_ids.astype("string"))
  if ids.isna().any():
    raise ValueError(f"customer_ids holds missing ids at positions "
                     f"{np.flatnonzero(ids.isna().to_numpy())[:5].tolist()}")
  ids = ids.to_numpy(dtype=object)
  wanted = pd.Index(pd.unique(ids))

  _check_columns(transactions, "transactions", ("customer_id", "order_id", "timestamp", "amount"))
  keep = (_member(transactions["customer_id"], wanted)
          & (transactions["timestamp"] < cut).fillna(False).to_numpy(dtype=bool))
  frames = [_order_events(transactions.loc[keep], items, products)]
  if reviews is not None and len(reviews):
    _check_columns(reviews, "reviews", ("customer_id", "timestamp"))
    keep = (_member(reviews["customer_id"], wanted)
            & (reviews["timestamp"] < cut).fillna(False).to_numpy(dtype=bool))
    frames.append(_review_events(reviews.loc[keep], int(max_review_chars)))
  events = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(
      len(f) for f in frames) else frames[0]

  texts_by_code: dict[int, str] = {}
  if len(events):
    code = wanted.get_indexer(events["customer_id"])
    key_code, _ = pd.factorize(events["key"], sort=True)
    order = np.lexsort((key_code, events["kind"].to_numpy(),
                        events["timestamp"].to_numpy().astype("datetime64[us]").astype(np.int64),
                        code))
    code = code[order]
    pieces = events["piece"].to_numpy(dtype=object)[order]
    days = events["day"].to_numpy(dtype=object)[order]
    is_order = (events["kind"].to_numpy() == 0)[order]
    lengths = np.fromiter((len(p) for p in pieces), np.int64, len(pieces)) + len(_SEP)
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    ends = np.r_[starts[1:], len(code)]
    full = np.add.reduceat(lengths, starts) - len(_SEP)  # joined length of the whole history
    n_orders = np.add.reduceat(is_order.astype(np.int64), starts)
    # Length of the joined events i..end of i's group: a suffix sum, vectorised.
    cum = np.cumsum(lengths)
    group_of = np.repeat(np.arange(len(starts)), ends - starts)
    suffix = cum[ends - 1][group_of] - cum + lengths - len(_SEP)
    for g, (s, e) in enumerate(zip(starts, ends)):
      if full[g] <= max_chars:
        text = _SEP.join(pieces[s:e])
      else:
        prefix = _summary(int(n_orders[g]), int(e - s - n_orders[g]), days[s])
        budget = max_chars - len(prefix)
        # The first event that still fits with everything after it; the newest always stays.
        first = s + int(np.searchsorted(-suffix[s:e], -budget, side="left"))
        text = prefix + _SEP.join(pieces[min(first, e - 1):e])
      texts_by_code[int(code[s])] = text
  texts = [texts_by_code.get(i, NO_HISTORY_TEXT) for i in range(len(wanted))]
  texts = _clip(texts, int(max_chars))  # only a newest event longer than the budget is cut here
  return [texts[i] for i in wanted.get_indexer(ids)]


# ----------------------------------------------------------------------------------------------
# End-to-end model: optimiser and steps


def _e2e_param_labels(params: Any) -> Any:
  """ "encoder" for the BERT parameters, "head" for the MLP on top."""

  def label(path: tuple, _: Any) -> str:
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    return "encoder" if names[0] == "bert" else "head"

  return jax.tree_util.tree_map_with_path(label, params)


# Cached like training.make_optimizer: a rerun with the same settings reuses the compiled step.
@functools.lru_cache(maxsize=16)
def make_e2e_optimizer(*, learning_rate: float, head_learning_rate: float, warmup_steps: int,
                       total_steps: int, weight_decay: float = 0.01,
                       max_grad_norm: float | None = 1.0) -> optax.GradientTransformation:
  """AdamW (warmup + linear decay, no decay on biases and LayerNorm) with its own head rate.

  The MLP head starts from scratch and needs a rate (1e-3) that would wreck a pretrained
  encoder (5e-5), hence two rates, as ``mlm.make_mlm_optimizer``. Clipping is on the global
  norm of all gradients together.

  Args:
    learning_rate: peak learning rate of the encoder.
    head_learning_rate: peak learning rate of the MLP head.
    warmup_steps: steps of linear warmup.
    total_steps: steps of the whole run.
    weight_decay: decoupled weight decay (kernels and embeddings only).
    max_grad_norm: global-norm clipping; None disables it.

  Returns:
    An optax GradientTransformation for ``nnx.Optimizer(model, tx, wrt=nnx.Param)``.

  Raises:
    ValueError: a value out of range.
  """
  return training.make_two_rate_optimizer(
      _e2e_param_labels, learning_rate=learning_rate, head_learning_rate=head_learning_rate,
      warmup_steps=warmup_steps, total_steps=total_steps, weight_decay=weight_decay,
      max_grad_norm=max_grad_norm)


_STEP_KEYS = ("input_ids", "attention_mask", "numeric", "y", "weight")


def e2e_loss_fn(model: BertForZILN, batch: Batch) -> jax.Array:
  """Weighted ZILN loss of a batch, dropout on (filler rows have weight 0)."""
  logits = model(batch["input_ids"], batch["attention_mask"], batch["numeric"],
                 deterministic=False)  # [batch, 3]
  return ziln.ziln_loss(logits, batch["y"], batch["weight"])


# graph=False and donation: see sentiment.train_step.
@nnx.jit(graph=False, donate_argnums=(0, 1))
def e2e_train_step(model: BertForZILN, optimizer: nnx.Optimizer, batch: Batch) -> jax.Array:
  """One optimisation step in place; returns the batch loss."""
  loss, grads = nnx.value_and_grad(e2e_loss_fn)(model, batch)
  optimizer.update(model, grads)
  return loss


@devices.inference_jit  # a pure function of the model
def _logits_step(model: BertForZILN, input_ids: jax.Array, attention_mask: jax.Array,
                 numeric: jax.Array) -> jax.Array:
  return model(input_ids, attention_mask, numeric, deterministic=True)


def _epoch_batches(ids: Sequence[np.ndarray], numeric: np.ndarray, y: np.ndarray, *,
                   batch_size: int, buckets: tuple[int, ...], shuffle: bool, seed: int,
                   pad_id: int) -> list[dict[str, np.ndarray]]:
  """tokens.batches_from_ids plus each row's numeric features and label (0 for filler)."""
  out = []
  for batch in tokens.batches_from_ids(ids, None, batch_size=batch_size, buckets=buckets,
                                           shuffle=shuffle, seed=seed, pad_id=pad_id):
    rows = np.maximum(batch["index"], 0)  # filler rows borrow row 0; their weight is 0
    out.append({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                "numeric": numeric[rows], "y": np.where(batch["weight"] > 0, y[rows], 0.0)
                .astype(np.float32), "weight": batch["weight"], "index": batch["index"]})
  return out


def _batch_logits(model: BertForZILN, batches: list[dict[str, np.ndarray]], n: int) -> np.ndarray:
  """Logits [n, 3] in input order."""
  out = np.zeros((n, 3), np.float32)
  for batch in batches:
    logits = np.asarray(_logits_step(model, jnp.asarray(batch["input_ids"]),
                                     jnp.asarray(batch["attention_mask"]),
                                     jnp.asarray(batch["numeric"])))
    real = batch["index"] >= 0
    out[batch["index"][real]] = logits[real]
  return out


# ----------------------------------------------------------------------------------------------
# Predictor

_WEIGHTS_FILE = "e2e_ziln.safetensors"
_CONFIG_FILE = "e2e_ziln.json"
_TOKENIZER_FILE = "tokenizer.json"


def _numeric_array(numeric: Any, n: int, n_numeric: int, name: str) -> np.ndarray:
  """numeric as float64 [n, n_numeric]; None means no numeric features."""
  if numeric is None:
    if n_numeric:
      raise ValueError(f"{name} is None but the model takes {n_numeric} numeric features")
    return np.zeros((n, 0), np.float64)
  arr = np.asarray(numeric, dtype=np.float64)
  if arr.ndim != 2 or arr.shape[0] != n:
    raise ValueError(f"{name} must be 2-D with one row per text ({n}), got shape {arr.shape}")
  if arr.shape[0] == 0:
    return arr.reshape(0, n_numeric)
  return ziln.check_features(arr, name, n_numeric)


@dataclasses.dataclass
class E2EPredictor:
  """A fine-tuned BertForZILN with its tokenizer and the numeric standardisation it learnt.

  ``config`` holds: bert (BertConfig as a dict), n_numeric, hidden, dropout, feature_names
  (or None), sigma_max, buckets, batch_size.
  """

  model: BertForZILN
  tokenizer: Tokenizer
  standardiser: ziln.Standardiser
  config: dict[str, Any]

  def logits(self, texts: Sequence[str], numeric: Any = None) -> np.ndarray:
    """[n, 3] ZILN logits for history texts and raw (unstandardised) numeric features."""
    texts = tokens.check_texts(texts)
    arr = _numeric_array(numeric, len(texts), self.config["n_numeric"], "numeric")
    if not texts:
      return np.zeros((0, 3), np.float32)
    buckets = tuple(self.config["buckets"])
    ids = tokens.tokenize_texts(self.tokenizer, texts, max_length=buckets[-1])
    rows = tokens.inference_batch_size(len(texts), self.config["batch_size"])
    pad_id = tokens.pad_token_id(self.tokenizer)
    batches = _epoch_batches(ids, self.standardiser.transform(arr), np.zeros(len(texts)),
                             batch_size=rows, buckets=buckets, shuffle=False, seed=0,
                             pad_id=pad_id)
    return _batch_logits(self.model, batches, len(texts))

  def predict(self, texts: Sequence[str], numeric: Any = None,
              qs: tuple[float, float] = (0.1, 0.9)) -> pd.DataFrame:
    """Predicts value for customers, with the columns of ``ziln.ZILNPredictor.predict``.

    Args:
      texts: one history text per customer (``customer_history_texts``).
      numeric: [n, n_numeric] raw features (a DataFrame's columns must match training when
        names were kept, and its index becomes the result's); None without numeric features.
      qs: levels of the two interval columns ``q10``/``q90`` (named by the default levels).

    Returns:
      DataFrame with p_return, predicted_value, q10, q90.

    Raises:
      ValueError: wrong feature count/names, non-finite features, or texts that are not strings.
    """
    names = self.config.get("feature_names")
    index = None
    if isinstance(numeric, pd.DataFrame):
      index = numeric.index
      if names is not None and list(map(str, numeric.columns)) != names:
        raise ValueError(f"numeric columns {list(numeric.columns)} differ from the training "
                         f"columns {names}")
    return ziln.prediction_frame(self.logits(texts, numeric), qs,
                                 sigma_max=self.config.get("sigma_max"), index=index)

  def save(self, folder: str | os.PathLike) -> Path:
    """Writes e2e_ziln.safetensors (weights by nnx path), e2e_ziln.json and tokenizer.json.

    Returns:
      The folder (created if needed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = checkpoint.flat_params(self.model)
    save_file({k: np.asarray(v[...]) for k, v in params.items()}, str(folder / _WEIGHTS_FILE),
              metadata={"format": "cvlib-e2e-ziln-1"})
    meta = {"format": "cvlib-e2e-ziln-1", "config": self.config,
            "standardiser": self.standardiser.to_dict()}
    (folder / _CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    self.tokenizer.save(str(folder / _TOKENIZER_FILE))
    return folder

  @classmethod
  def load(cls, folder: str | os.PathLike) -> E2EPredictor:
    """Reads a predictor written by :meth:`save`.

    Raises:
      FileNotFoundError: a file is missing.
      ValueError: the weights do not match the config (every problem listed).
    """
    folder = Path(folder)
    for name in (_WEIGHTS_FILE, _CONFIG_FILE, _TOKENIZER_FILE):
      if not (folder / name).is_file():
        raise FileNotFoundError(f"{folder / name} missing: not a saved end-to-end ZILN model")
    meta = json.loads((folder / _CONFIG_FILE).read_text())
    config = meta["config"]
    model = BertForZILN(BertConfig(**config["bert"]), config["n_numeric"], hidden=config["hidden"],
                        dropout=config["dropout"], rngs=nnx.Rngs(0))
    weights = load_file(str(folder / _WEIGHTS_FILE))
    params = checkpoint.flat_params(model)
    problems = [f"missing: {k}" for k in sorted(set(params) - set(weights))]
    problems += [f"unexpected: {k}" for k in sorted(set(weights) - set(params))]
    problems += [f"shape mismatch: {k}: saved {weights[k].shape}, model {params[k].shape}"
                 for k in sorted(set(params) & set(weights))
                 if weights[k].shape != params[k].shape]
    if problems:
      raise ValueError(f"{folder / _WEIGHTS_FILE}: {len(problems)} problem(s):\n  "
                       + "\n  ".join(problems))
    for key, var in params.items():
      var.set_value(jnp.asarray(weights[key], dtype=var.dtype))
    tokenizer = Tokenizer.from_file(str(folder / _TOKENIZER_FILE))
    return cls(model, tokenizer, ziln.Standardiser.from_dict(meta["standardiser"]), config)


# ----------------------------------------------------------------------------------------------
# Training


def train_e2e_ziln(texts: Sequence[str], numeric: Any, y: Any, val_texts: Sequence[str],
                   val_numeric: Any, val_y: Any, *, encoder_model: Any, tokenizer: Tokenizer,
                   epochs: int = 3, batch_size: int = 32, learning_rate: float = 5e-5,
                   head_learning_rate: float = 1e-3, patience: int | None = 2,
                   buckets: Sequence[int] = (64, 128, 256), seed: int = 0, hidden: int = 64,
                   dropout: float = 0.1, warmup_ratio: float = 0.1, weight_decay: float = 0.01,
                   max_grad_norm: float | None = 1.0, progress: bool = True,
                   log_every_s: float = 15.0) -> tuple[E2EPredictor, pd.DataFrame]:
  """Fine-tunes BERT + numeric features + ZILN head end to end on customers' holdout value.

  The encoder weights are copied from encoder_model (which is left untouched) into a new
  ``BertForZILN``; the head's output bias starts at the marginal fit of y
  (``ziln.make_output_bias``). Numeric features are standardised with the training rows'
  statistics (``ziln.fit_standardiser``). Batches are length-bucketed with a fixed number of
  rows (weight-0 filler rows), so the step compiles once per bucket. After each epoch the
  validation ZILN loss is computed; the best epoch's weights (a host copy) are restored at the
  end and training stops after ``patience`` epochs without improvement. Deterministic for a seed
  on CPU.

  Args:
    texts: training history texts (``customer_history_texts``), one per customer.
    numeric: [n, n_numeric] raw numeric features (array or DataFrame, whose column names are
      kept), or None for text only.
    y: [n] non-negative holdout values.
    val_texts: validation texts for early stopping.
    val_numeric: [m, n_numeric] validation features (None when numeric is None).
    val_y: [m] validation values.
    encoder_model: a cvlib BertModel or a model with ``.bert`` (e.g. ``checkpoint.load_encoder``,
      a fine-tuned sentiment classifier, an MLM-adapted model).
    tokenizer: the encoder's tokenizer.
    epochs: maximum number of epochs.
    batch_size: rows per step.
    learning_rate: peak learning rate of the encoder.
    head_learning_rate: peak learning rate of the MLP head.
    patience: epochs without validation improvement before stopping; None never stops early.
    buckets: padded sequence lengths; longer texts are cut to the largest.
    seed: initialisation of the head, dropout and shuffling.
    hidden: width of the head's hidden layer.
    dropout: the head's dropout rate.
    warmup_ratio: share of all steps spent warming up, in [0, 1).
    weight_decay: AdamW decoupled weight decay.
    max_grad_norm: global-norm clipping; None disables it.
    progress: print a line at most every log_every_s seconds and one per epoch.
    log_every_s: seconds between progress lines within an epoch.

  Returns:
    (predictor with the best weights, history): one row per epoch with epoch, train_loss,
    val_loss, constant_val_loss (the validation loss of the marginal fit the head starts from),
    learning_rate (the encoder's, at the epoch's end), seconds, best.

  Raises:
    ValueError: bad shapes, labels, features or hyper-parameters, or a tokenizer/bucket that
      does not fit the encoder.
  """
  for name, value in (("epochs", epochs), ("batch_size", batch_size)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be an int >= 1, got {value!r}")
  if patience is not None and (not isinstance(patience, (int, np.integer)) or patience < 1):
    raise ValueError(f"patience must be an int >= 1 or None, got {patience!r}")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
  if not 0.0 <= warmup_ratio < 1.0:
    raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio!r}")
  texts = tokens.check_texts(texts)
  val_texts = tokens.check_texts(val_texts)
  if not texts or not val_texts:
    raise ValueError(f"need training and validation texts, got {len(texts)} and "
                     f"{len(val_texts)}")
  if (numeric is None) != (val_numeric is None):
    raise ValueError("give numeric and val_numeric both or neither")
  feature_names = list(map(str, numeric.columns)) if isinstance(numeric, pd.DataFrame) else None
  n_numeric = 0 if numeric is None else int(np.asarray(numeric).shape[-1])
  x_train = _numeric_array(numeric, len(texts), n_numeric, "numeric")
  x_val = _numeric_array(val_numeric, len(val_texts), n_numeric, "val_numeric")
  y_train = ziln.check_labels(y, "y", len(texts))
  y_val = ziln.check_labels(val_y, "val_y", len(val_texts))
  source = checkpoint.as_bert(encoder_model)
  bert_config = source.config
  buckets = tokens.check_buckets(buckets)
  if buckets[-1] > bert_config.max_position_embeddings:
    raise ValueError(f"the largest bucket ({buckets[-1]}) exceeds the encoder's "
                     f"max_position_embeddings ({bert_config.max_position_embeddings})")
  if tokenizer.get_vocab_size() > bert_config.vocab_size:
    raise ValueError(f"the tokenizer has {tokenizer.get_vocab_size()} ids but the encoder only "
                     f"{bert_config.vocab_size} embeddings: not its tokenizer")

  model = BertForZILN(bert_config, n_numeric, hidden=hidden, dropout=dropout,
                      rngs=nnx.Rngs(seed))
  mlm.transfer_encoder(source, model)
  model.set_output_bias(ziln.make_output_bias(y_train))
  standardiser = ziln.fit_standardiser(x_train)
  config = {"bert": bert_config.to_dict(), "n_numeric": n_numeric, "hidden": int(hidden),
            "dropout": float(dropout), "feature_names": feature_names,
            "sigma_max": ziln.sigma_cap(y_train), "buckets": list(buckets),
            "batch_size": int(batch_size)}
  predictor = E2EPredictor(model, tokenizer, standardiser, config)

  pad_id = tokens.pad_token_id(tokenizer)
  train_ids = tokens.tokenize_texts(tokenizer, texts, max_length=buckets[-1])
  val_ids = tokens.tokenize_texts(tokenizer, val_texts, max_length=buckets[-1])
  make_epoch = functools.partial(_epoch_batches, train_ids, standardiser.transform(x_train),
                                 y_train, batch_size=batch_size, buckets=buckets, shuffle=True,
                                 pad_id=pad_id)
  val_batches = _epoch_batches(val_ids, standardiser.transform(x_val), y_val,
                               batch_size=batch_size, buckets=buckets, shuffle=False, seed=0,
                               pad_id=pad_id)
  val_labels = jnp.asarray(y_val, jnp.float32)
  constant = jnp.broadcast_to(jnp.asarray(ziln.make_output_bias(y_train)), (len(y_val), 3))
  constant_val_loss = float(ziln.ziln_loss(constant, val_labels))

  steps_per_epoch = len(make_epoch(seed=seed))
  total_steps = epochs * steps_per_epoch
  warmup_steps = int(round(warmup_ratio * total_steps))
  tx = make_e2e_optimizer(learning_rate=learning_rate, head_learning_rate=head_learning_rate,
                          warmup_steps=warmup_steps, total_steps=total_steps,
                          weight_decay=weight_decay, max_grad_norm=max_grad_norm)
  schedule = training.make_schedule(learning_rate=learning_rate, warmup_steps=warmup_steps,
                                     total_steps=total_steps)  # the encoder's, for the history
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  nnx.reseed(model, default=seed, dropout=seed)  # dropout masks follow this run's seed
  if progress:
    print(f"e2e ziln: {len(texts)} customers, {n_numeric} numeric features, {epochs} epoch(s) "
          f"of {steps_per_epoch} steps; constant-prediction val loss {constant_val_loss:.4f}",
          flush=True)

  def train_epoch(epoch: int) -> dict[str, float]:
    start = last_log = time.perf_counter()
    batches = make_epoch(seed=seed + epoch)
    losses = []  # kept on device: a float() per step would stall the dispatch pipeline
    for step, batch in enumerate(batches, 1):
      losses.append(e2e_train_step(model, optimizer,
                                   {k: jnp.asarray(batch[k]) for k in _STEP_KEYS}))
      if progress and time.perf_counter() - last_log >= log_every_s:
        last_log = time.perf_counter()
        print(f"epoch {epoch}/{epochs} step {step}/{len(batches)} loss {float(losses[-1]):.4f} "
              f"{step * batch_size / (last_log - start):.1f} seq/s", flush=True)
    weights = np.asarray([b["weight"].sum() for b in batches])
    # Batch losses are weighted means; weighting them by batch weight gives the epoch's mean.
    return {"train_loss": float(np.average(np.asarray(jax.device_get(losses)), weights=weights))}

  def evaluate(epoch: int) -> dict[str, float]:
    val_logits = _batch_logits(model, val_batches, len(val_texts))
    return {"val_loss": float(ziln.ziln_loss(jnp.asarray(val_logits), val_labels)),
            "constant_val_loss": constant_val_loss,
            "learning_rate": float(schedule(epoch * steps_per_epoch - 1))}

  history = training.fit(
      model, train_epoch, epochs=epochs, evaluate=evaluate,
      stopping=training.EarlyStopping("val_loss", patience=patience, stop_if_not_finite=True),
      progress=progress, desc="end-to-end value model",
      describe=lambda r: (f"train loss {r['train_loss']:.4f}, val loss {r['val_loss']:.4f}"
                          f"{' (best)' if r['best'] else ''}, {r['seconds']:.1f} s"))
  if len(history) and history["val_loss"].notna().any() and history["best"].any():
    history["best"] = history["epoch"] == int(history.loc[history["val_loss"].idxmin(), "epoch"])
  return predictor, history


__all__ = [
    "E2EPredictor", "NO_HISTORY_TEXT", "customer_history_texts", "e2e_loss_fn", "e2e_train_step",
    "make_e2e_optimizer", "train_e2e_ziln",
]

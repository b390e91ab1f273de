"""Seeded synthetic e-commerce shop in cvlib's canonical tables, with the truth kept apart.

``make_demo_data`` simulates a shop whose customers follow a known generative story, so that every
stage of cvlib (cleaning, review models, value/churn models, segmentation, recommendations) can be
checked against the truth that produced the data.

Calendar (days from ``start``)::

  [0, 0.75 * calibration_days)        customers make their first purchase (acquisition), uniform
  [0, calibration_days)               calibration period, the model inputs
  [calibration_days, + horizon_days)  holdout (prediction) period; nothing is simulated past its end

Story per customer (parameters in the ``_*`` constants below):

* Purchases (BG/NBD with experience-dependent dropout). Rate ``lambda ~ Gamma(shape=1.6,
  rate=90)`` per day (the median customer buys every ~70 days), base dropout ``p_base ~ Beta(1.2,
  6)``. While alive, purchases come as a Poisson process. Every order (including the first, as in
  MBG/NBD) has an experience ``e = s + eps`` where ``s`` is the customer's latent satisfaction
  (``N(0, 1)`` at acquisition) and ``eps ~ N(0, 0.8**2)`` minus 1.5 on a bad delivery (7% of orders).
  After the order the customer drops out with ``logit(p) = logit(p_base) - 1.25 * e``, and
  satisfaction drifts with the experience: ``s <- s + 0.25 * eps``.
* Spend (Fader-Hardie Gamma-Gamma). ``nu ~ Gamma(shape=4, rate=30)``, mean order value
  ``zeta = 6 / nu`` (median ~49, 5-95% about 23-130), each order's value ``~ Gamma(6, 6 / zeta)``.
  An order has 1-4 lines (more for larger orders); products come from the customer's category
  preferences (Dirichlet), a few favourite products, companion products of the first line
  (co-purchase pairs) and a price kernel around the order value. Unit prices are the list price
  times noise, rescaled so the lines sum to the order value (to the cent); ``items.amount =
  quantity * unit_price`` and ``transactions.amount`` is the sum of its items.
* Reviews. After an order the customer reviews one of its products with probability ~0.35 (higher
  after very good or very bad experiences), 2-14 days later (reviews after the window end are not
  kept). Stars come from the experience plus noise (about 55% five-star, 12% one/two-star), and 1.5%
  of reviewers flip the scale (``6 - stars``). The text mentions 1-3 aspects (delivery, quality,
  price, size_fit [apparel and shoes only], service, packaging); each aspect's polarity comes from
  its own noisy score (a bad delivery makes "delivery" negative but not "quality"), so reviews can be
  mixed and may disagree slightly with the stars. 40% of reviews also say whether the customer
  will order again, and what they say is their actual decision after that order (dropout or not;
  10% of statements are wrong): information the stars do not carry, as in real reviews ("great
  dress, but I'm moving abroad"). Text uses many templates, negation,
  intensifiers, hedges, seeded typos (~5% of words) and varied length; ~5% of reviews have no text.

Extra columns beyond the schema: ``customers.country``, ``customers.signup_date`` (= first order),
``products.name``, ``products.list_price``.

Truth (never a model input):

* ``truth``: one row per customer with ``lambda``, ``p_base``, ``zeta``, ``satisfaction`` (at the
  calibration cutoff), ``satisfaction_initial``, ``p_eff`` (expected dropout probability of a
  future order at the current satisfaction), ``alive_at_cutoff``, ``expected_orders_holdout``,
  ``expected_value_holdout``, the realised ``holdout_orders`` / ``holdout_value`` (clean orders
  in the holdout period), and ``dropout_date``: when the customer dropped out (the date of the
  order after which they did; NaT while still alive at the window's end), which tells who churned
  for any cut of the window, e.g. two monthly runs a quarter apart with ``data.until``. With ``H = horizon_days``::

      p_eff = E_eps[sigmoid(logit(p_base) - 1.25 * (satisfaction + eps))]   (Gauss-Hermite)
      expected_orders_holdout = alive_at_cutoff * (1 - exp(-lambda * p_eff * H)) / p_eff
      expected_value_holdout  = zeta * expected_orders_holdout

  This is exact for a customer whose satisfaction stays at its cutoff value; the future drift of
  ``s`` is mean-zero noise and is ignored (over 30k customers the realised holdout order count is
  within ~1% of the expected one).
* ``review_aspects``: ``review_id, aspect, polarity`` for every aspect the review text mentions.

Warts for the cleaning step (deliberate, small, seeded):

* ~0.5% of order rows in ``transactions`` appear twice (exact duplicate rows, same ``order_id``);
  ``items`` is not duplicated.
* A handful of zero-amount orders (~0.05% of orders, at least 2): free replacement orders 1-10 days
  after a real order, one line with ``unit_price == 0``. They are not part of the purchase process
  and are excluded from the truth's realised holdout numbers.
* ~0.3% of reviews have a missing ``customer_id``.
* ~5% of reviews have missing ``text`` (rating only); 1.5% have reversed stars (label noise).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib.data import schema

GENERATOR_VERSION = "1.0"
LICENCE = "synthetic, generated by cvlib, CC0"

# --- purchase process (BG/NBD with experience-dependent dropout)
_ACQUISITION_FRACTION = 0.75  # first purchases spread over this share of the calibration period
_LAMBDA_SHAPE, _LAMBDA_RATE = 1.6, 90.0  # lambda ~ Gamma(r, alpha), per day
_P_A, _P_B = 1.2, 6.0  # p_base ~ Beta(a, b)
_EPS_SD = 0.8  # order-level experience noise
_SHOCK_PROB, _SHOCK_SIZE = 0.07, 1.5  # bad delivery
_BETA = 1.25  # effect of the order experience on the dropout logit
_DRIFT = 0.25  # satisfaction moves by this share of each order's experience noise
# --- spend (Gamma-Gamma)
_SPEND_P, _SPEND_Q, _SPEND_GAMMA = 6.0, 4.0, 30.0
# --- products and baskets
_PRODUCTS_PER_CATEGORY = 15
_POPULARITY_EXPONENT = 0.6  # Zipf-like popularity within a category
_CATEGORY_CONCENTRATION = 0.25  # Dirichlet concentration of category preferences (small = focused)
_N_FAVOURITES = 4
_P_FAVOURITE_FIRST, _P_FAVOURITE_OTHER = 0.3, 0.2
_P_COMPANION, _P_SAME_CATEGORY = 0.25, 0.4
_PRICE_KERNEL_SD = 0.4  # log-price kernel for choosing products near the per-line budget
# --- reviews
_REVIEW_BASE, _REVIEW_EXTREME = -1.05, 0.45  # logit(P(review)) = base + extreme * |e - 0.3|
_RATING_NOISE_SD = 0.45
_RATING_CUTS = (-2.08, -1.63, -1.06, -0.03)  # latent rating cutpoints for 2, 3, 4, 5 stars
_RATING_FLIP_PROB = 0.015
# Stated intent: a review says whether the customer will order again with this probability; what it
# says is the customer's actual decision after that order (whether they dropped out), wrong with
# probability _INTENT_NOISE. Stars carry the experience, not the decision.
_INTENT_PROB, _INTENT_NOISE = 0.4, 0.1
_ASPECT_NOISE_SD = 0.7
_POLARITY_CUT = -0.9
_EMPTY_TEXT_PROB = 0.05
_TYPO_PROB = 0.05
# --- warts
_DUPLICATE_ORDER_RATE = 0.005
_ZERO_ORDER_RATE = 0.0005
_MISSING_REVIEW_CUSTOMER_RATE = 0.003

_COUNTRIES = ("DE", "FR", "NL", "GB", "ES", "IT")
_COUNTRY_PROBS = (0.34, 0.2, 0.14, 0.14, 0.1, 0.08)

ASPECTS = ("delivery", "quality", "price", "size_fit", "service", "packaging")
_ASPECT_WEIGHTS = np.array([1.0, 1.3, 0.8, 1.0, 0.5, 0.45])

# category -> (popularity, review word, nouns (name, base price, plural), adjectives, materials,
# colours or None, features). Plural nouns are mentioned as "pair of"/"set of" in reviews.
_CATEGORIES: dict[str, dict] = {
    "apparel": dict(
        popularity=0.2, word="clothes",
        nouns=[("t-shirt", 18, ""), ("hoodie", 45, ""), ("jeans", 55, "pair"), ("dress", 50, ""),
               ("jacket", 85, ""), ("sweater", 48, ""), ("shorts", 25, "pair"), ("shirt", 35, "")],
        adjectives=["Slim-fit", "Relaxed-fit", "Classic", "Oversized", "Cropped", "Lightweight"],
        materials=["organic cotton", "linen", "merino wool", "recycled polyester", "denim"],
        colours=["navy", "black", "olive", "white", "grey", "burgundy", "sand"],
        features=["machine washable", "with a ribbed collar", "with side pockets",
                  "made in Portugal", "cut for everyday wear"]),
    "shoes": dict(
        popularity=0.1, word="shoes",
        nouns=[("sneakers", 70, "pair"), ("running shoes", 95, "pair"), ("boots", 120, "pair"),
               ("sandals", 40, "pair"), ("loafers", 80, "pair"), ("slippers", 25, "pair")],
        adjectives=["Lightweight", "Waterproof", "Cushioned", "Classic", "Minimalist"],
        materials=["leather", "suede", "mesh", "canvas"],
        colours=["white", "black", "tan", "grey", "navy"],
        features=["with a memory-foam insole", "with a non-slip sole", "with a padded collar",
                  "built for all-day comfort"]),
    "home": dict(
        popularity=0.14, word="home decor",
        nouns=[("cushion cover", 18, ""), ("throw blanket", 40, ""), ("table lamp", 55, ""),
               ("picture frame", 15, ""), ("scented candle", 20, ""), ("wall mirror", 70, ""),
               ("storage basket", 28, "")],
        adjectives=["Hand-woven", "Minimalist", "Rustic", "Modern", "Cosy"],
        materials=["jute", "velvet", "ceramic", "oak", "glass", "soy wax"],
        colours=["ivory", "sage", "charcoal", "terracotta", "natural"],
        features=["for living room or bedroom", "adds a warm touch to any room",
                  "easy to clean", "designed in Denmark"]),
    "kitchen": dict(
        popularity=0.12, word="kitchen gear",
        nouns=[("chef's knife", 60, ""), ("frying pan", 45, ""), ("cutting board", 25, ""),
               ("coffee grinder", 55, ""), ("mixing bowls", 30, "set"), ("teapot", 35, ""),
               ("saucepan", 40, "")],
        adjectives=["Non-stick", "Professional", "Compact", "Everyday", "Heavy"],
        materials=["stainless steel", "cast iron", "bamboo", "enamel", "borosilicate glass"],
        colours=None,
        features=["dishwasher safe", "suitable for induction hobs", "with a lifetime guarantee",
                  "comfortable to hold"]),
    "beauty": dict(
        popularity=0.14, word="skincare",
        nouns=[("face serum", 28, ""), ("moisturiser", 22, ""), ("shampoo", 12, ""),
               ("lip balm", 6, ""), ("hand cream", 9, ""), ("perfume", 65, ""),
               ("face mask", 15, "")],
        adjectives=["Hydrating", "Fragrance-free", "Nourishing", "Gentle", "Vegan"],
        materials=["with hyaluronic acid", "with shea butter", "with vitamin C", "with aloe vera"],
        colours=None,
        features=["for sensitive skin", "50 ml", "dermatologically tested", "cruelty free"]),
    "electronics accessories": dict(
        popularity=0.12, word="gadget",
        nouns=[("phone case", 18, ""), ("USB-C cable", 12, ""), ("wireless charger", 35, ""),
               ("power bank", 40, ""), ("earbuds", 60, "pair"), ("laptop stand", 45, ""),
               ("screen protector", 10, "")],
        adjectives=["Slim", "Fast-charging", "Magnetic", "Braided", "Foldable"],
        materials=["aluminium", "silicone", "tempered glass", "nylon"],
        colours=["black", "white", "space grey", "blue"],
        features=["compatible with most smartphones", "with a two-year warranty",
                  "travel friendly"]),
    "toys": dict(
        popularity=0.09, word="toy",
        nouns=[("building blocks", 35, "set"), ("plush bear", 20, ""), ("jigsaw puzzle", 15, ""),
               ("toy car", 12, ""), ("board game", 30, ""), ("doll house", 75, ""),
               ("kite", 18, "")],
        adjectives=["Colourful", "Educational", "Classic", "Award-winning"],
        materials=["wooden", "plush", "recycled plastic", "cardboard"],
        colours=None,
        features=["for ages 3+", "for the whole family", "safety tested", "great as a gift"]),
    "garden": dict(
        popularity=0.09, word="garden tool",
        nouns=[("garden hose", 35, ""), ("pruning shears", 25, "pair"), ("plant pot", 15, ""),
               ("bird feeder", 20, ""), ("solar lights", 30, "set"), ("watering can", 18, ""),
               ("garden chair", 90, ""), ("raised bed", 110, "")],
        adjectives=["Weatherproof", "Heavy-duty", "Foldable", "Rust-resistant"],
        materials=["galvanised steel", "terracotta", "teak", "recycled plastic"],
        colours=["green", "anthracite", "natural"],
        features=["for balconies and patios", "easy to assemble", "UV resistant"]),
}
CATEGORIES = tuple(_CATEGORIES)
_SIZED_CATEGORIES = ("apparel", "shoes")
# a product's companion (co-purchase pair) is drawn from these categories
_COMPLEMENTS = {
    "apparel": ("shoes", "apparel"), "shoes": ("apparel",), "home": ("kitchen", "home"),
    "kitchen": ("home", "kitchen"), "beauty": ("beauty",),
    "electronics accessories": ("electronics accessories",), "toys": ("toys", "home"),
    "garden": ("garden", "home"),
}

TABLE_NAMES = ("customers", "transactions", "items", "products", "reviews", "truth",
               "review_aspects")


def make_demo_data(n_customers: int = 3000, seed: int = 0, *, start: str = "2023-01-01",
                   calibration_days: int = 365, horizon_days: int = 180) -> dict[str, pd.DataFrame]:
  """Simulates the demo shop (see the module docstring for the story and the warts).

  Args:
    n_customers: number of customers, all of whom buy at least once.
    seed: seed for every random draw; the same seed gives identical frames.
    start: first day of the data (ISO date).
    calibration_days: length of the calibration period in days.
    horizon_days: length of the holdout period after it, in days.

  Returns:
    Dict with the canonical tables "customers", "transactions", "items", "products", "reviews"
    (dtypes as in ``schema.TABLES``) and the truth tables "truth" and "review_aspects".

  Raises:
    ValueError: on a non-positive size or period, a negative seed or an unparseable start.
  """
  start_ts = _check_args(n_customers, seed, start, calibration_days, horizon_days)
  # independent streams, so that changing one part of the story leaves the others' draws alone
  seeds = np.random.SeedSequence(seed).spawn(6)
  rng_customers, rng_tastes, rng_products, rng_items, rng_reviews, rng_warts = (
      np.random.default_rng(s) for s in seeds)
  t_cal = float(calibration_days)
  t_end = float(calibration_days + horizon_days)

  products = _make_products(rng_products)
  cust = _draw_customers(rng_customers, rng_tastes, n_customers, t_cal)
  orders = _simulate_orders(rng_customers, cust, t_end)
  lines = _make_lines(rng_items, cust, orders, products)
  orders, lines = _add_zero_orders(rng_warts, orders, lines, t_end)

  # order ids follow time; ties (none in practice) broken by customer
  order_sort = np.lexsort((orders["customer"], orders["t"]))
  orders = {k: v[order_sort] for k, v in orders.items()}
  new_index = np.empty_like(order_sort)
  new_index[order_sort] = np.arange(len(order_sort))
  lines["order"] = new_index[lines["order"]]
  line_sort = np.lexsort((lines["line"], lines["order"]))
  lines = {k: v[line_sort] for k, v in lines.items()}

  customer_ids = _ids("C", n_customers)
  order_ids = _ids("O", len(orders["t"]), width=7)
  product_ids = products["product_id"].to_numpy(dtype=object)

  reviews, review_aspects = _make_reviews(rng_reviews, orders, lines, products, t_end)
  reviews, review_aspects = _finish_reviews(rng_warts, reviews, review_aspects, customer_ids,
                                            order_ids, product_ids, start_ts)

  items = pd.DataFrame({
      "order_id": order_ids[lines["order"]],
      "product_id": product_ids[lines["product"]],
      "quantity": lines["quantity"],
      "unit_price": lines["unit_price"],
      "amount": lines["amount"],
  })
  order_amount = np.round(np.bincount(lines["order"], weights=lines["amount"],
                                      minlength=len(orders["t"])), 2)
  transactions = pd.DataFrame({
      "customer_id": customer_ids[orders["customer"]],
      "order_id": order_ids,
      "timestamp": _to_timestamps(start_ts, orders["t"]),
      "amount": order_amount,
  })
  transactions = _duplicate_rows(rng_warts, transactions)

  first_t = np.full(n_customers, np.inf)
  np.minimum.at(first_t, orders["customer"], orders["t"])
  customers = pd.DataFrame({
      "customer_id": customer_ids,
      "country": pd.array(cust["country"], dtype="string"),
      "signup_date": _to_timestamps(start_ts, first_t),
  })
  truth = _make_truth(cust, orders, order_amount, customer_ids, t_cal, t_end)
  # who churned, and when, for any cut of the window (monthly runs with data.until): the day of
  # the order after which the customer dropped out; NaT while still alive at the window's end
  died = orders["die"] & ~orders["replacement"]
  last_day = np.full(len(customer_ids), np.nan)
  last_day[orders["customer"][died]] = orders["t"][died]
  truth["dropout_date"] = pd.Series(pd.NaT, index=truth.index, dtype="datetime64[us]")
  known = np.isfinite(last_day)
  truth.loc[known, "dropout_date"] = _to_timestamps(start_ts, last_day[known])

  out = {
      "customers": schema.coerce_table("customers", customers),
      "transactions": schema.coerce_table("transactions", transactions),
      "items": schema.coerce_table("items", items),
      # popularity and the review mention are part of the generator, not of the shop's catalogue
      "products": schema.coerce_table(
          "products", products[["product_id", "category", "name", "description", "list_price"]]),
      "reviews": schema.coerce_table("reviews", reviews),
      "truth": truth,
      "review_aspects": review_aspects,
  }
  out["products"]["name"] = out["products"]["name"].astype("string")
  return out


def write_demo_data(out_dir: str | os.PathLike, n_customers: int = 3000, seed: int = 0, *,
                    start: str = "2023-01-01", calibration_days: int = 365,
                    horizon_days: int = 180) -> dict[str, Path]:
  """Generates the demo shop and writes ``<table>.parquet`` files plus ``meta.json``.

  Files are first written to a temporary folder beside ``out_dir`` and then renamed in, with
  ``meta.json`` last, so a crash leaves either the old set or a set without ``meta.json``.

  Args:
    out_dir: folder to write to (created if missing; existing files of the same name replaced).
    n_customers: number of customers.
    seed: random seed.
    start: first day of the data (ISO date).
    calibration_days: length of the calibration period in days.
    horizon_days: length of the holdout period in days.

  Returns:
    Dict from table name (and "meta") to the written path.
  """
  tables = make_demo_data(n_customers, seed, start=start, calibration_days=calibration_days,
                          horizon_days=horizon_days)
  out_dir = Path(out_dir)
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  start_ts = pd.Timestamp(start)
  meta = {
      "start": start_ts.date().isoformat(),
      "calibration_end": (start_ts + pd.Timedelta(days=calibration_days)).date().isoformat(),
      "calibration_days": int(calibration_days),
      "horizon_days": int(horizon_days),
      "n_customers": int(n_customers),
      "seed": int(seed),
      "generator": f"cvlib.data.synthetic {GENERATOR_VERSION}",
      "generator_version": GENERATOR_VERSION,
      "licence": LICENCE,
      "tables": {name: len(df) for name, df in tables.items()},
  }
  tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
  try:
    names = []
    for name, df in tables.items():
      df.to_parquet(tmp / f"{name}.parquet", index=False)
      names.append(f"{name}.parquet")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    out_dir.mkdir(exist_ok=True)
    # meta.json goes in last: its presence marks a complete set
    stale = out_dir / "meta.json"
    if stale.exists():
      stale.unlink()
    for fname in names + ["meta.json"]:
      os.replace(tmp / fname, out_dir / fname)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  paths = {name: out_dir / f"{name}.parquet" for name in tables}
  paths["meta"] = out_dir / "meta.json"
  return paths


# ----------------------------------------------------------------------------------------------
# simulation
# ----------------------------------------------------------------------------------------------


def _check_args(n_customers, seed, start, calibration_days, horizon_days) -> pd.Timestamp:
  for name, value in (("n_customers", n_customers), ("calibration_days", calibration_days),
                      ("horizon_days", horizon_days)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
  try:
    start_ts = pd.Timestamp(start)
  except (ValueError, TypeError) as e:
    raise ValueError(f"start must be an ISO date like '2023-01-01', got {start!r}") from e
  if start_ts is pd.NaT or start_ts.tz is not None or start_ts != start_ts.normalize():
    raise ValueError(f"start must be a naive ISO date like '2023-01-01', got {start!r}")
  return start_ts


def _ids(prefix: str, n: int, width: int = 5) -> np.ndarray:
  width = max(width, len(str(n)))
  return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _to_timestamps(start_ts: pd.Timestamp, days: np.ndarray) -> np.ndarray:
  # floor to whole seconds so nothing rounds up past the window end
  seconds = np.floor(np.asarray(days) * 86400.0).astype("int64")
  return np.datetime64(start_ts.to_datetime64(), "us") + seconds.astype("timedelta64[s]")


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
  return np.log(p) - np.log1p(-p)


def _make_products(rng: np.random.Generator) -> pd.DataFrame:
  rows = []
  for cat, spec in _CATEGORIES.items():
    n_nouns = len(spec["nouns"])
    # every noun at least once, the rest random; popularity is Zipf-like within the category
    noun_idx = np.concatenate([np.arange(n_nouns),
                               rng.integers(0, n_nouns, _PRODUCTS_PER_CATEGORY - n_nouns)])
    popularity = 1.0 / (1.0 + rng.permutation(_PRODUCTS_PER_CATEGORY)) ** _POPULARITY_EXPONENT
    for j, k in enumerate(noun_idx):
      noun, base_price, plural = spec["nouns"][k]
      adj = spec["adjectives"][rng.integers(len(spec["adjectives"]))]
      material = spec["materials"][rng.integers(len(spec["materials"]))]
      feature = spec["features"][rng.integers(len(spec["features"]))]
      if cat == "beauty":
        text = f"{adj} {noun} {material}, {feature}."
      else:
        text = f"{adj} {material} {noun}"
        if spec["colours"] is not None:
          text += f" in {spec['colours'][rng.integers(len(spec['colours']))]}"
        text += f", {feature}."
      # prices end in .99 like a real shop
      price = max(3.99, np.floor(base_price * np.exp(rng.normal(0.0, 0.25)))) + 0.99
      mention = f"{plural} of {noun}" if plural else noun
      rows.append(dict(category=cat, name=text.split(",")[0].split(" in ")[0], description=text,
                       list_price=float(price), popularity=float(popularity[j]), mention=mention))
  products = pd.DataFrame(rows)
  products.insert(0, "product_id", [f"P{i:03d}" for i in range(1, len(products) + 1)])
  return products


def _draw_customers(rng: np.random.Generator, rng_tastes: np.random.Generator, n: int,
                    t_cal: float) -> dict[str, np.ndarray]:
  cat_pop = np.array([spec["popularity"] for spec in _CATEGORIES.values()])
  cat_pop = cat_pop / cat_pop.sum()
  return dict(
      t0=rng.uniform(0.0, _ACQUISITION_FRACTION * t_cal, n),
      lam=rng.gamma(_LAMBDA_SHAPE, 1.0 / _LAMBDA_RATE, n),
      p_base=np.clip(rng.beta(_P_A, _P_B, n), 1e-4, 1 - 1e-4),
      zeta=_SPEND_P / rng.gamma(_SPEND_Q, 1.0 / _SPEND_GAMMA, n),
      s0=rng.normal(0.0, 1.0, n),
      # [n, n_cat]
      cat_pref=rng_tastes.dirichlet(_CATEGORY_CONCENTRATION * cat_pop * len(cat_pop), n),
      country=np.asarray(_COUNTRIES, dtype=object)[
          rng_tastes.choice(len(_COUNTRIES), n, p=_COUNTRY_PROBS)],
  )


def _simulate_orders(rng: np.random.Generator, cust: dict, t_end: float) -> dict[str, np.ndarray]:
  """Runs all customers' purchase processes in lockstep, one purchase index per pass."""
  n = len(cust["t0"])
  t = cust["t0"].copy()
  s = cust["s0"].copy()
  logit_p = _logit(cust["p_base"])
  active = np.ones(n, dtype=bool)
  parts = []
  while active.any():
    idx = np.flatnonzero(active)
    shock = rng.random(len(idx)) < _SHOCK_PROB
    eps_g = rng.normal(0.0, _EPS_SD, len(idx))
    eps = eps_g - _SHOCK_SIZE * shock
    s_before = s[idx]
    experience = s_before + eps
    die = rng.random(len(idx)) < _sigmoid(logit_p[idx] - _BETA * experience)
    parts.append(dict(customer=idx, t=t[idx].copy(), eps=eps, eps_g=eps_g, shock=shock,
                      s_before=s_before, experience=experience, die=die))
    s[idx] = s_before + _DRIFT * eps
    t[idx] += rng.exponential(1.0 / cust["lam"][idx])
    active[idx] = ~die & (t[idx] < t_end)
  orders = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  orders["value"] = rng.gamma(_SPEND_P, cust["zeta"][orders["customer"]] / _SPEND_P)
  orders["replacement"] = np.zeros(len(orders["t"]), dtype=bool)
  return orders


def _make_lines(rng: np.random.Generator, cust: dict, orders: dict,
                products: pd.DataFrame) -> dict[str, np.ndarray]:
  """Picks 1-4 products per order and prices them so that they sum to the order value."""
  n_orders = len(orders["t"])
  n_cust = len(cust["t0"])
  cat_index = {c: i for i, c in enumerate(CATEGORIES)}
  prod_cat = products["category"].map(cat_index).to_numpy()
  log_price = np.log(products["list_price"].to_numpy())
  popularity = products["popularity"].to_numpy()
  n_prod = len(products)

  # each product has a companion in a complementary category (co-purchase pairs)
  companion = np.empty(n_prod, dtype=np.int64)
  for j in range(n_prod):
    comp_cats = [cat_index[c] for c in _COMPLEMENTS[CATEGORIES[prod_cat[j]]]]
    cands = np.flatnonzero(np.isin(prod_cat, comp_cats) & (np.arange(n_prod) != j))
    companion[j] = cands[rng.integers(len(cands))]

  # favourites: a few products per customer from their preferred categories
  fav_cat = _sample_rows(rng, cust["cat_pref"], _N_FAVOURITES)  # [n_cust, n_fav]
  favourites = np.empty((n_cust, _N_FAVOURITES), dtype=np.int64)
  for c in range(len(CATEGORIES)):
    mask = fav_cat == c
    members = np.flatnonzero(prod_cat == c)
    w = popularity[members] / popularity[members].sum()
    favourites[mask] = members[rng.choice(len(members), mask.sum(), p=w)]

  value = orders["value"]
  p_extra = _sigmoid(1.2 * np.log(value / 60.0) - 0.6)
  n_lines = 1 + rng.binomial(3, p_extra)
  order_of_line = np.repeat(np.arange(n_orders), n_lines)
  line_no = np.arange(len(order_of_line)) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines)
  customer = orders["customer"][order_of_line]
  n_l = len(order_of_line)
  quantity = rng.choice([1.0, 2.0, 3.0], n_l, p=[0.86, 0.11, 0.03])
  target = np.log(value[order_of_line] / n_lines[order_of_line] / quantity)

  first = line_no == 0
  first_idx = np.flatnonzero(first)[order_of_line]  # the first line of each line's order
  product = np.empty(n_l, dtype=np.int64)
  # category and product are chosen jointly: preference x popularity x price kernel, so that the
  # category also fits the budget. Later lines may stick to the first line's category.
  product[first] = _choose_products(rng, cust["cat_pref"][customer[first]], target[first],
                                    prod_cat, log_price, popularity)
  rest = np.flatnonzero(~first)
  cat_w = cust["cat_pref"][customer[rest]].copy()  # [rest, n_cat]
  same_cat = rng.random(len(rest)) < _P_SAME_CATEGORY
  first_cat = prod_cat[product[first_idx[rest[same_cat]]]]
  cat_w[same_cat] = np.eye(len(CATEGORIES))[first_cat]
  product[rest] = _choose_products(rng, cat_w, target[rest], prod_cat, log_price, popularity)

  # favourites and companions, when their price is not far off the line budget
  u = rng.random(n_l)
  fav_pick = favourites[customer, rng.integers(0, _N_FAVOURITES, n_l)]
  fav_fits = np.abs(log_price[fav_pick] - target) < np.log(2.0)
  use_fav = fav_fits & np.where(first, u < _P_FAVOURITE_FIRST,
                                (u >= _P_COMPANION) & (u < _P_COMPANION + _P_FAVOURITE_OTHER))
  product[use_fav] = fav_pick[use_fav]
  comp_pick = companion[product[first_idx]]
  comp_fits = np.abs(log_price[comp_pick] - target) < np.log(2.0)
  use_comp = ~first & (u < _P_COMPANION) & comp_fits
  product[use_comp] = comp_pick[use_comp]

  # one line per product and order
  keep = ~pd.DataFrame({"o": order_of_line, "p": product}).duplicated().to_numpy()
  order_of_line, line_no, product, quantity = (
      order_of_line[keep], line_no[keep], product[keep], quantity[keep])

  list_price = products["list_price"].to_numpy()[product]
  raw = quantity * list_price * np.exp(rng.normal(0.0, 0.06, len(product)))
  scale = value / np.bincount(order_of_line, weights=raw, minlength=n_orders)
  unit_price = np.maximum(np.round(raw * scale[order_of_line] / quantity, 2), 0.01)
  amount = np.round(quantity * unit_price, 2)
  return dict(order=order_of_line, line=line_no, product=product, quantity=quantity,
              unit_price=unit_price, amount=amount)


def _choose_products(rng: np.random.Generator, cat_weights: np.ndarray, target: np.ndarray,
                     prod_cat: np.ndarray, log_price: np.ndarray,
                     popularity: np.ndarray) -> np.ndarray:
  """One product per row: category weight x popularity x log-price kernel around the target."""
  out = np.empty(len(target), dtype=np.int64)
  for lo in range(0, len(target), 20_000):  # bounded memory for large shops
    sl = slice(lo, lo + 20_000)
    kernel = np.exp(-0.5 * ((log_price[None, :] - target[sl, None]) / _PRICE_KERNEL_SD) ** 2)
    w = cat_weights[sl][:, prod_cat] * popularity[None, :] * (kernel + 1e-9)  # [rows, products]
    out[sl] = _sample_rows(rng, w, 1)[:, 0]
  return out


def _sample_rows(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
  """k independent categorical draws per row of a [rows, classes] weight matrix."""
  cum = np.cumsum(weights, axis=1)
  u = rng.random((weights.shape[0], k)) * cum[:, -1:]
  out = (cum[:, None, :] <= u[:, :, None]).sum(axis=2)  # [rows, k]
  return np.minimum(out, weights.shape[1] - 1)


def _add_zero_orders(rng: np.random.Generator, orders: dict, lines: dict,
                     t_end: float) -> tuple[dict, dict]:
  """Adds a handful of free replacement orders (amount 0) after real orders."""
  n_orders = len(orders["t"])
  n_zero = max(2, int(round(_ZERO_ORDER_RATE * n_orders)))
  delay = rng.uniform(1.0, 10.0, n_orders)
  eligible = np.flatnonzero(orders["t"] + delay < t_end)
  if len(eligible) == 0:
    return orders, lines
  src = np.sort(rng.choice(eligible, min(n_zero, len(eligible)), replace=False))
  new = {k: v[src].copy() for k, v in orders.items()}
  new["t"] = orders["t"][src] + delay[src]
  new["value"] = np.zeros(len(src))
  new["replacement"] = np.ones(len(src), dtype=bool)
  first_line = np.searchsorted(lines["order"], src)  # lines are ordered by order here
  new_lines = dict(order=n_orders + np.arange(len(src)), line=np.zeros(len(src), dtype=np.int64),
                   product=lines["product"][first_line], quantity=np.ones(len(src)),
                   unit_price=np.zeros(len(src)), amount=np.zeros(len(src)))
  orders = {k: np.concatenate([orders[k], new[k]]) for k in orders}
  lines = {k: np.concatenate([lines[k], new_lines[k]]) for k in lines}
  return orders, lines


def _duplicate_rows(rng: np.random.Generator, transactions: pd.DataFrame) -> pd.DataFrame:
  n_dup = int(round(_DUPLICATE_ORDER_RATE * len(transactions)))
  dup = rng.choice(len(transactions), n_dup, replace=False)
  out = pd.concat([transactions, transactions.iloc[dup]])
  return out.sort_values(["timestamp", "order_id"], kind="stable").reset_index(drop=True)


def _expected_dropout(p_base: np.ndarray, satisfaction: np.ndarray) -> np.ndarray:
  """E over the next order's experience noise of its dropout probability."""
  nodes, weights = np.polynomial.hermite_e.hermegauss(40)
  weights = weights / weights.sum()
  logit_p = _logit(p_base)[:, None]
  eps = _EPS_SD * nodes[None, :]  # [1, nodes]
  base = _sigmoid(logit_p - _BETA * (satisfaction[:, None] + eps)) @ weights
  shocked = _sigmoid(logit_p - _BETA * (satisfaction[:, None] + eps - _SHOCK_SIZE)) @ weights
  return (1 - _SHOCK_PROB) * base + _SHOCK_PROB * shocked


def _make_truth(cust: dict, orders: dict, order_amount: np.ndarray, customer_ids: np.ndarray,
                t_cal: float, t_end: float) -> pd.DataFrame:
  n = len(customer_ids)
  clean = ~orders["replacement"]
  c = orders["customer"]
  in_cal = clean & (orders["t"] < t_cal)
  in_hold = clean & (orders["t"] >= t_cal)
  satisfaction = cust["s0"] + _DRIFT * np.bincount(c[in_cal], weights=orders["eps"][in_cal],
                                                   minlength=n)
  died_before = np.bincount(c[in_cal & orders["die"]], minlength=n) > 0
  alive = ~died_before
  p_eff = _expected_dropout(cust["p_base"], satisfaction)
  horizon = t_end - t_cal
  expected_orders = alive * -np.expm1(-cust["lam"] * p_eff * horizon) / p_eff
  return pd.DataFrame({
      "customer_id": pd.array(customer_ids, dtype="string"),
      "lambda": cust["lam"],
      "p_base": cust["p_base"],
      "zeta": cust["zeta"],
      "satisfaction": satisfaction,
      "satisfaction_initial": cust["s0"],
      "p_eff": p_eff,
      "alive_at_cutoff": alive,
      "expected_orders_holdout": expected_orders,
      "expected_value_holdout": expected_orders * cust["zeta"],
      "holdout_orders": np.bincount(c[in_hold], minlength=n).astype("int64"),
      "holdout_value": np.round(np.bincount(c[in_hold], weights=order_amount[in_hold],
                                            minlength=n), 2),
  })


# ----------------------------------------------------------------------------------------------
# reviews
# ----------------------------------------------------------------------------------------------


def _make_reviews(rng: np.random.Generator, orders: dict, lines: dict, products: pd.DataFrame,
                  t_end: float) -> tuple[dict, list]:
  """Decides which orders get reviewed and draws stars, aspects and polarities (vectorised)."""
  e = orders["experience"]
  p_review = _sigmoid(_REVIEW_BASE + _REVIEW_EXTREME * np.abs(e - 0.3))
  delay = rng.uniform(2.0, 14.0, len(e))
  reviewed = (rng.random(len(e)) < p_review) & ~orders["replacement"]
  reviewed &= orders["t"] + delay < t_end
  o = np.flatnonzero(reviewed)
  n = len(o)

  # one product of the order: lines are sorted by order, so pick a random offset into its block
  starts = np.searchsorted(lines["order"], o)
  counts = np.searchsorted(lines["order"], o, side="right") - starts
  line = starts + (rng.random(n) * counts).astype(np.int64)
  product = lines["product"][line]

  latent = e[o] + rng.normal(0.0, _RATING_NOISE_SD, n)
  rating = 1 + np.searchsorted(np.asarray(_RATING_CUTS), latent)
  flip = rng.random(n) < _RATING_FLIP_PROB
  rating = np.where(flip, 6 - rating, rating).astype(float)

  # aspects: weighted sampling without replacement via Gumbel top-k
  category = products["category"].to_numpy()[product]
  sized = np.isin(category, _SIZED_CATEGORIES)
  shock = orders["shock"][o]
  w = np.tile(_ASPECT_WEIGHTS, (n, 1))  # [n, aspects]
  w[:, 0] += 2.5 * shock  # a bad delivery gets talked about
  w[:, 4] += 0.6 * (e[o] < -1.0)  # unhappy customers contact service
  w[~sized, 3] = 0.0
  with np.errstate(divide="ignore"):
    keys = np.log(w) + rng.gumbel(size=w.shape)
  order_by_key = np.argsort(-keys, axis=1, kind="stable")
  k = rng.choice([1, 2, 3], n, p=[0.45, 0.37, 0.18])
  k = np.minimum(k, (w > 0).sum(axis=1))
  base = (orders["s_before"] + orders["eps_g"])[o]
  score = base[:, None] + rng.normal(0.0, _ASPECT_NOISE_SD, w.shape)
  score[:, 0] -= 1.5 * _SHOCK_SIZE * shock
  positive = score > _POLARITY_CUT  # [n, aspects]
  has_text = rng.random(n) >= _EMPTY_TEXT_PROB
  says_intent = rng.random(n) < _INTENT_PROB
  stays = ~orders["die"][o] ^ (rng.random(n) < _INTENT_NOISE)

  aspect_lists = []
  for i in range(n):
    if not has_text[i]:
      aspect_lists.append([])
      continue
    aspect_lists.append([(int(a), bool(positive[i, a])) for a in order_by_key[i, :k[i]]])

  text_rng = random.Random(int(rng.integers(2**62)))
  prod_mention = products["mention"].to_numpy()
  cat_word = {c: spec["word"] for c, spec in _CATEGORIES.items()}
  titles, texts = [], []
  for i in range(n):
    if not has_text[i]:
      titles.append(None)
      texts.append(None)
      continue
    title, text = _compose_review(text_rng, int(rating[i]), aspect_lists[i],
                                  prod_mention[product[i]], cat_word[category[i]],
                                  intent=bool(stays[i]) if says_intent[i] else None)
    titles.append(title)
    texts.append(text)

  reviews = dict(order=o, customer=orders["customer"][o], product=product,
                 t=orders["t"][o] + delay[o], rating=rating, title=titles, text=texts)
  return reviews, aspect_lists


def _finish_reviews(rng: np.random.Generator, reviews: dict, aspect_lists: list,
                    customer_ids: np.ndarray, order_ids: np.ndarray, product_ids: np.ndarray,
                    start_ts: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Sorts reviews by time, assigns ids, adds the missing-customer wart; builds review_aspects."""
  sort = np.lexsort((reviews["order"], reviews["t"]))
  n = len(sort)
  review_ids = _ids("R", n, width=6)
  customer = customer_ids[reviews["customer"][sort]].astype(object)
  missing = rng.choice(n, int(round(_MISSING_REVIEW_CUSTOMER_RATE * n)), replace=False)
  customer[missing] = None
  df = pd.DataFrame({
      "review_id": review_ids,
      "customer_id": customer,
      "product_id": product_ids[reviews["product"][sort]],
      "order_id": order_ids[reviews["order"][sort]],
      "timestamp": _to_timestamps(start_ts, reviews["t"][sort]),
      "rating": reviews["rating"][sort],
      "title": pd.array([reviews["title"][i] for i in sort], dtype="string"),
      "text": pd.array([reviews["text"][i] for i in sort], dtype="string"),
  })
  rid, asp, pol = [], [], []
  for new_i, old_i in enumerate(sort):
    for a, positive in aspect_lists[old_i]:
      rid.append(review_ids[new_i])
      asp.append(ASPECTS[a])
      pol.append("positive" if positive else "negative")
  aspects = pd.DataFrame({
      "review_id": pd.array(rid, dtype="string"),
      "aspect": pd.array(asp, dtype="string"),
      "polarity": pd.array(pol, dtype="string"),
  })
  return df, aspects


# Review text templates. {int} is an intensifier (possibly empty), {thing} the product mention.
_INTENSIFIERS = ("", "", "", "very", "really", "extremely", "super", "quite", "pretty", "so")
_SOFTENERS = ("a bit", "rather", "slightly", "somewhat", "kind of")
_HEDGES = ("Honestly, ", "To be fair, ", "Overall, ", "If I'm honest, ", "For me, ")
# these need a clause with a subject after them
_CLAUSE_HEDGES = ("I think ", "I'd say ", "Tbh ", "I feel like ")
_SUBJECTS = ("The", "Delivery", "Shipping", "Customer", "Support", "It", "Sizing", "Packaging",
             "Tracking", "Sizes", "Nobody", "Nothing", "Quality")

_TEMPLATES: dict[tuple[str, bool], tuple[str, ...]] = {
    ("delivery", True): (
        "Delivery was {int} fast.", "Arrived {int} quickly, a day earlier than promised.",
        "Shipping was quick and the courier was friendly.", "Got it in two days, {int} impressed.",
        "Never had to wait long, delivery was spot on.", "The parcel came right on time.",
        "Delivery wasn't slow at all.", "No problems with shipping whatsoever.",
        "Came the next day, {int} quick.", "Delivery was not bad at all.",
        "Tracking was accurate and it arrived when they said.", "Speedy delivery.",
        "Dispatched the same day and delivered in no time."),
    ("delivery", False): (
        "Delivery took forever.", "It never arrived on time.", "Shipping was {int} slow.",
        "Waited almost three weeks for the parcel.", "The courier left it out in the rain.",
        "Delivery was not fast at all.", "Tracking said delivered but it wasn't there for days.",
        "Arrived a week late.", "The delivery date kept getting pushed back.",
        "Had to chase the courier twice before it showed up.",
        "Shipping wasn't what they promised.", "Took ages to arrive.",
        "Delivery was {int} late, no updates at all."),
    ("quality", True): (
        "The quality is {int} good.", "The {thing} feels {int} well made.",
        "Excellent build quality.", "Solid and sturdy, feels like it will last.",
        "The material is {int} nice, better than I expected.", "Doesn't feel cheap at all.",
        "Still looks new after weeks of use.", "Great quality for sure.",
        "Nothing flimsy about it.", "The {thing} is exactly as described and {int} well finished.",
        "Top quality, no complaints.", "The quality is not bad at all, actually really decent."),
    ("quality", False): (
        "The quality is {int} poor.", "The {thing} broke after a few days.",
        "Feels {int} cheap and flimsy.", "Not the quality I expected.",
        "It started falling apart after the first week.",
        "Wasn't what I expected, the material is thin.", "Rubbish quality.",
        "Looks nothing like the pictures.", "The {thing} stopped working within a week.",
        "Quality is not good at all.", "Scratched and worn out in no time.",
        "The {thing} feels {int} cheaply made."),
    ("price", True): (
        "Great value for money.", "{Int} good price for what you get.",
        "Cheaper than anywhere else I looked.", "Worth every penny.",
        "Not expensive at all for this quality.", "Affordable and does the job.",
        "Good deal, especially on sale.", "Fair price.", "The price is {int} reasonable.",
        "You can't beat the price."),
    ("price", False): (
        "{Int} overpriced for what it is.", "Way too expensive.", "Not worth the money.",
        "You can find the same thing for half the price elsewhere.", "The price is {int} high.",
        "Not cheap, and it doesn't feel worth it.", "Poor value.", "Paid far too much for this.",
        "Not worth what they charge.", "The price isn't justified."),
    ("size_fit", True): (
        "Fits {int} well.", "True to size.", "The fit is perfect.",
        "Sizing was spot on, I ordered my usual size.", "Comfortable fit from day one.",
        "Not too tight, not too loose.", "Fits like a glove.", "The size chart was accurate.",
        "The {thing} fits {int} nicely."),
    ("size_fit", False): (
        "Runs {int} small, order a size up.", "Way too big, had to send it back.",
        "The sizing is all over the place.", "Doesn't fit at all.",
        "Too tight, even in my usual size.", "The fit isn't right.", "Sizes run large.",
        "The {thing} doesn't fit the way the size chart says.", "Far too narrow."),
    ("service", True): (
        "Customer service was {int} helpful.",
        "Support answered within an hour and sorted everything out.",
        "Friendly and quick customer service.", "The team replied fast when I had a question.",
        "Great service.", "They went above and beyond to help.",
        "Customer service was not unhelpful at all, they fixed it straight away.",
        "The seller was {int} kind and responsive."),
    ("service", False): (
        "Customer service was {int} unhelpful.", "Nobody answered my emails.",
        "Support never got back to me.", "Terrible service.",
        "Spent ages on hold and got nowhere.", "The seller was rude when I complained.",
        "Customer service wasn't helpful at all.", "Still waiting for a reply from support."),
    ("packaging", True): (
        "Nicely packaged.", "The packaging was {int} neat and secure.",
        "Arrived well wrapped and undamaged.", "Lovely packaging, would make a great gift.",
        "Packed with care.", "The box was in perfect condition."),
    ("packaging", False): (
        "The box was crushed when it arrived.", "The packaging was {int} poor.",
        "Arrived damaged because of bad packaging.", "Way too much plastic in the packaging.",
        "The box was open and things were loose.", "The packaging wasn't great."),
}
_SHORT: dict[tuple[str, bool], tuple[str, ...]] = {
    ("delivery", True): ("Fast delivery", "Quick shipping", "Arrived fast"),
    ("delivery", False): ("Slow delivery", "Late again", "Never arrived on time"),
    ("quality", True): ("Good quality", "Well made", "Great quality"),
    ("quality", False): ("Poor quality", "Broke quickly", "Cheap quality"),
    ("price", True): ("Good value", "Great price", "Bargain"),
    ("price", False): ("Overpriced", "Too expensive", "Not worth it"),
    ("size_fit", True): ("Fits well", "True to size", "Perfect fit"),
    ("size_fit", False): ("Runs small", "Wrong size", "Too big"),
    ("service", True): ("Helpful service", "Great support", "Friendly service"),
    ("service", False): ("Bad service", "Useless support", "No reply from support"),
    ("packaging", True): ("Nice packaging", "Well packed", "Lovely box"),
    ("packaging", False): ("Damaged box", "Poor packaging", "Box was crushed"),
}
_OPENERS = {
    "pos": ("Love it!", "Really happy with this purchase.", "Very pleased.",
            "Exactly what I needed.", "Great {cat}.", "Would recommend.", "So glad I bought this.",
            "Second order here and still happy.", "Lovely {thing}."),
    "neu": ("It's okay.", "Mixed feelings about this one.", "Not bad, not great.",
            "Does the job, I guess.", "Average {cat}.", "Fine, nothing special.",
            "The {thing} is alright."),
    "neg": ("Very disappointed.", "Would not recommend.", "Not happy with this order.",
            "What a letdown.", "Avoid.", "Really regret buying this {thing}.",
            "Not what I hoped for."),
}
# Closers give tone only; whether the customer will order again is the separate intent sentence.
_CLOSERS = {
    "pos": ("Thanks!", "Highly recommend.", "Five stars from me.", "Great shop.",
            "Happy with it.", "Recommended to my friends."),
    "neu": ("Maybe it was just bad luck.", "Could be better.", "We'll see how it holds up.",
            "It does the job."),
    "neg": ("Returning it.", "I want a refund.", "Save your money.", "Zero stars if I could.",
            "Very disappointed."),
}
_INTENT = {
    True: ("Will buy again.", "Already planning my next order.", "I'll be back for more.",
           "Definitely ordering from here again.", "Will order again soon.",
           "This is my go-to shop now."),
    False: ("Won't be ordering again.", "This was my last order here.",
            "Taking my business elsewhere.", "Not coming back.", "Never again.",
            "I'm done with this shop."),
}
_TITLES = {
    "pos": ("Great!", "Love it", "Excellent", "Good buy", "Happy customer", "Very good",
            "Recommended"),
    "neu": ("OK", "Could be better", "Average", "Decent", "Mixed"),
    "neg": ("Disappointed", "Terrible", "Don't buy", "Not as described", "Poor",
            "Waste of money"),
}


def _band(rating: int) -> str:
  return "pos" if rating >= 4 else ("neu" if rating == 3 else "neg")


def _fill(rnd: random.Random, template: str, positive: bool, mention: str, cat: str) -> str:
  word = rnd.choice(_INTENSIFIERS)
  if word and not positive and rnd.random() < 0.3:
    word = rnd.choice(_SOFTENERS)
  out = template.replace("{int}", word).replace("{Int}", word.capitalize())
  out = out.replace("{thing}", mention).replace("{cat}", cat)
  out = " ".join(out.split())  # an empty intensifier leaves a double space
  return out[0].upper() + out[1:]


def _lower_first(sentence: str) -> str:
  if sentence.startswith("I ") or sentence.startswith("I'"):
    return sentence
  return sentence[0].lower() + sentence[1:]


def _compose_review(rnd: random.Random, rating: int, aspects: list[tuple[int, bool]],
                    mention: str, cat: str, intent: bool | None = None) -> tuple[str | None, str]:
  """Builds (title, text) from the star band, the (aspect, positive) list and the stated intent
  (True: will order again, False: will not, None: says nothing about it)."""
  band = _band(rating)
  # the tone of the framing sentences sometimes drifts from the stars
  if rnd.random() < 0.12:
    band = rnd.choice([b for b in ("pos", "neu", "neg") if b != band])
  title = rnd.choice(_TITLES[band]) if rnd.random() < 0.4 else None
  if rnd.random() < 0.15:  # a few words only
    parts = [rnd.choice(_SHORT[ASPECTS[a], pos]) for a, pos in aspects]
    text = ", ".join(parts[:1] + [p.lower() for p in parts[1:]])
    text += rnd.choice(("", ".", "!", "!!", " :)" if band == "pos" else "."))
    if intent is not None:
      text += " " + rnd.choice(_INTENT[intent])
    return title, _add_typos(rnd, text)

  sentences = []
  for a, pos in aspects:
    s = _fill(rnd, rnd.choice(_TEMPLATES[ASPECTS[a], pos]), pos, mention, cat)
    if rnd.random() < 0.12:
      has_subject = s.split(" ", 1)[0] in _SUBJECTS
      s = rnd.choice(_HEDGES + _CLAUSE_HEDGES if has_subject else _HEDGES) + _lower_first(s)
    sentences.append((s, pos))
  # join contrasting neighbours: "quality is great but delivery took forever"
  joined = [sentences[0][0]]
  for (s, pos), (_, prev_pos) in zip(sentences[1:], sentences[:-1]):
    if pos != prev_pos and rnd.random() < 0.6:
      joined[-1] = joined[-1].rstrip(".!") + rnd.choice((", but ", " but ", ", although ")) + \
          _lower_first(s)
    elif pos == prev_pos and rnd.random() < 0.2:
      joined[-1] = joined[-1].rstrip(".!") + rnd.choice((" and ", ", also ")) + _lower_first(s)
    else:
      joined.append(s)
  if rnd.random() < 0.45:
    joined.insert(0, _fill(rnd, rnd.choice(_OPENERS[band]), band != "neg", mention, cat))
  if rnd.random() < 0.35:
    joined.append(rnd.choice(_CLOSERS[band]))
  if intent is not None:
    joined.append(rnd.choice(_INTENT[intent]))
  return title, _add_typos(rnd, " ".join(joined))


def _add_typos(rnd: random.Random, text: str) -> str:
  words = text.split(" ")
  for i, w in enumerate(words):
    if len(w) >= 4 and rnd.random() < _TYPO_PROB:
      j = rnd.randrange(1, len(w) - 1)
      if rnd.random() < 0.5:
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]  # swap neighbours
      else:
        words[i] = w[:j] + w[j + 1:]  # drop one
  return " ".join(words)

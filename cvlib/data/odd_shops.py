"""Odd shops on purpose: seeded shop shapes that real small, new and unusual shops have.

Each shape writes the files a shop would bring (``orders.csv``, ``reviews.csv``) and a params file
for the generic adapter with tiny training settings, so the whole pipeline runs on it in seconds.
The tests run a fixed subset; ``benchmarks/odd_shops.py`` runs them all and records per shop the
exit status, the wall time and what the report skipped and why.

The rows are invented by the generator (no real shop's data); see ``SHAPES`` for what each shape
is about.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

START = dt.datetime(2022, 1, 3)
SPAN_DAYS = 730

# Review phrases by sentiment; Portuguese for the two-language shape.
_EN = {1: ["arrived broken and late", "poor quality, returned it", "awful fit, very disappointed"],
       2: ["not great, the fabric feels cheap", "delivery took too long"],
       3: ["it is ok for the price", "average, nothing special"],
       4: ["good value, fast delivery", "nice quality, fits well"],
       5: ["love it, excellent quality", "perfect, arrived quickly and well packed"]}
_PT = {1: ["chegou quebrado e atrasado", "péssima qualidade"], 2: ["não gostei do tecido"],
       3: ["razoável pelo preço"], 4: ["bom produto, entrega rápida"],
       5: ["adorei, excelente qualidade", "perfeito, recomendo"]}


@dataclasses.dataclass
class Shop:
  """One generated shop: its order lines and reviews (generic adapter columns)."""
  orders: pd.DataFrame  # customer, order, ts, amount, sku
  reviews: pd.DataFrame | None  # customer, sku, ts, stars, body (None: the shop has no reviews)
  horizon_days: int = 90
  note: str = ""


def _orders(rng: np.random.Generator, n_customers: int, *, max_orders: int = 6,
            span_days: int = SPAN_DAYS, products: int = 30, low: float = 5.0,
            high: float = 200.0) -> pd.DataFrame:
  """1..max_orders orders per customer at random days, uniform amounts, one product each."""
  rows = []
  order = 0
  for c in range(n_customers):
    for _ in range(int(rng.integers(1, max_orders + 1))):
      order += 1
      day = float(rng.uniform(0, span_days))
      rows.append((f"C{c:05d}", f"O{order:06d}", START + dt.timedelta(days=day),
                   round(float(rng.uniform(low, high)), 2), f"P{int(rng.integers(products)):04d}"))
  return pd.DataFrame(rows, columns=["customer", "order", "ts", "amount", "sku"])


def _reviews(rng: np.random.Generator, orders: pd.DataFrame, *, share: float = 0.7,
             stars: Callable[[np.random.Generator], int] | None = None,
             phrases: dict[int, list[str]] = _EN, text: bool = True) -> pd.DataFrame:
  """A review on about ``share`` of the orders, a day or two after it."""
  picked = orders[rng.random(len(orders)) < share]
  rows = []
  for row in picked.itertuples():
    s = stars(rng) if stars else int(rng.choice([1, 2, 3, 4, 5], p=[.1, .1, .15, .3, .35]))
    body = _text(rng, phrases, s) if text else None
    rows.append((row.customer, row.sku, row.ts + dt.timedelta(days=float(rng.uniform(1, 3))), s,
                 body))
  return pd.DataFrame(rows, columns=["customer", "sku", "ts", "stars", "body"])


_EN_ITEMS = ["dress", "jacket", "kettle", "lamp", "shoes", "bag", "blender", "shirt", "mug", "toy"]
_PT_ITEMS = ["vestido", "jaqueta", "chaleira", "luminária", "sapato", "bolsa", "camisa", "caneca"]


def _text(rng: np.random.Generator, phrases: dict[int, list[str]], stars: int) -> str:
  """A review of one or two phrases of its star level about one of a few products: varied enough
  that most reviews are texts of their own, as in a real shop."""
  items = _PT_ITEMS if phrases is _PT else _EN_ITEMS
  pool = phrases[stars]
  picked = [pool[i] for i in rng.permutation(len(pool))[: int(rng.integers(1, 3))]]
  item = items[int(rng.integers(len(items)))]
  return f"{item}: " + ", ".join(picked) + ("." if rng.random() < 0.5 else "")


def small_generic(rng, n=120):
  """The shop of issue 24: 1-6 orders over two years, amounts 5-200, 30 products, 70% reviewed."""
  o = _orders(rng, n)
  return Shop(o, _reviews(rng, o))


def every_customer_buys_once(rng):
  o = _orders(rng, 150, max_orders=1)
  return Shop(o, _reviews(rng, o))


def one_customer_has_90_percent(rng):
  o = _orders(rng, 100)
  whale = o["customer"] == "C00000"
  o.loc[whale, "amount"] = o.loc[~whale, "amount"].sum() * 9 / whale.sum()
  return Shop(o, _reviews(rng, o))


def all_orders_on_one_day(rng):
  o = _orders(rng, 80)
  o["ts"] = START + dt.timedelta(hours=10)
  return Shop(o, _reviews(rng, o))


def shorter_than_the_horizon(rng):
  o = _orders(rng, 100, span_days=60)
  return Shop(o, _reviews(rng, o), horizon_days=90)


def identical_amounts(rng):
  o = _orders(rng, 120)
  o["amount"] = 25.0
  return Shop(o, _reviews(rng, o))


def zero_and_negative_amounts(rng):
  o = _orders(rng, 120)
  pick = rng.random(len(o))
  o.loc[pick < 0.1, "amount"] = 0.0
  o.loc[(pick >= 0.1) & (pick < 0.2), "amount"] *= -1  # refunds written as negative orders
  return Shop(o, _reviews(rng, o))


def no_reviews(rng):
  return Shop(_orders(rng, 150), None)


def reviews_without_text(rng):
  o = _orders(rng, 120)
  return Shop(o, _reviews(rng, o, text=False))


def only_one_star(rng):
  o = _orders(rng, 120)
  return Shop(o, _reviews(rng, o, stars=lambda r: 1))


def only_five_stars(rng):
  o = _orders(rng, 120)
  return Shop(o, _reviews(rng, o, stars=lambda r: 5))


def one_product(rng):
  o = _orders(rng, 120, products=1)
  return Shop(o, _reviews(rng, o))


def thousands_of_products(rng):
  o = _orders(rng, 400, max_orders=6)
  o["sku"] = [f"P{i:05d}" for i in range(len(o))]  # every order a product of its own
  return Shop(o, _reviews(rng, o, share=0.3))


def two_languages(rng):
  o = _orders(rng, 120)
  en = _reviews(rng, o.iloc[: len(o) // 2])
  pt = _reviews(rng, o.iloc[len(o) // 2:], phrases=_PT)
  return Shop(o, pd.concat([en, pt], ignore_index=True))


def time_zones(rng):
  o = _orders(rng, 120)
  zones = np.array(["+00:00", "-05:00", "+09:00"])[rng.integers(3, size=len(o))]
  o["ts"] = [t.strftime("%Y-%m-%dT%H:%M:%S") + z for t, z in zip(o["ts"], zones)]
  return Shop(o, _reviews(rng, o.assign(ts=pd.to_datetime(o["ts"], utc=True)
                                     .dt.tz_localize(None))))


def no_one_returns_in_the_holdout(rng):
  o = _orders(rng, 120)
  end = START + dt.timedelta(days=SPAN_DAYS)
  holdout = o["ts"] >= end - dt.timedelta(days=90)
  first = o.groupby("customer")["ts"].transform("min")
  o = o[~holdout | (first >= end - dt.timedelta(days=90))]  # only new customers buy in it
  return Shop(o.reset_index(drop=True), _reviews(rng, o))


# name -> builder; builders take a seeded numpy Generator.
SHAPES: dict[str, Callable[[np.random.Generator], Shop]] = {
    "small_generic": small_generic,
    "customers_10": lambda rng: small_generic(rng, 10),
    "customers_50": lambda rng: small_generic(rng, 50),
    "customers_200": lambda rng: small_generic(rng, 200),
    "every_customer_buys_once": every_customer_buys_once,
    "one_customer_has_90_percent": one_customer_has_90_percent,
    "all_orders_on_one_day": all_orders_on_one_day,
    "shorter_than_the_horizon": shorter_than_the_horizon,
    "identical_amounts": identical_amounts,
    "zero_and_negative_amounts": zero_and_negative_amounts,
    "no_reviews": no_reviews,
    "reviews_without_text": reviews_without_text,
    "only_one_star": only_one_star,
    "only_five_stars": only_five_stars,
    "one_product": one_product,
    "thousands_of_products": thousands_of_products,
    "two_languages": two_languages,
    "time_zones": time_zones,
    "no_one_returns_in_the_holdout": no_one_returns_in_the_holdout,
}

# Settings that make a whole run take seconds: the first MiniLM layer, one epoch, small networks.
TINY_SETTINGS = {
    "finetune": {"encoder": "minilm", "num_layers": 1, "max_train_examples": 100,
                 "buckets": [32], "training": {"epochs": 1, "batch_size": 16}},
    "value": {"hidden": [8], "epochs": 10, "patience": 3, "cv_folds": 2},
    "report": {"salt": "odd-shops"},
}


def write_shop(shape: str, folder: str | Path, *, seed: int = 0) -> Path:
  """Writes one shape's files and params into ``folder``; returns the params file.

  Raises:
    KeyError: an unknown shape (see ``SHAPES``).
  """
  shop = SHAPES[shape](np.random.default_rng(seed))
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  shop.orders.to_csv(folder / "orders.csv", index=False)
  data: dict = {"adapter": "generic", "transactions": {
      "path": "orders.csv", "columns": {"customer_id": "customer", "order_id": "order",
                                        "timestamp": "ts", "amount": "amount",
                                        "product_id": "sku"}}}
  if shop.reviews is not None:
    shop.reviews.to_csv(folder / "reviews.csv", index=False)
    data["reviews"] = {"path": "reviews.csv", "columns": {
        "customer_id": "customer", "product_id": "sku", "timestamp": "ts", "rating": "stars",
        "text": "body"}}
  params = {"dataset": f"{shape}_{seed}", "language": "en", "seed": seed, "data": data,
            "split": {"horizon_days": shop.horizon_days}, **TINY_SETTINGS}
  path = folder / "params.yaml"
  path.write_text(yaml.safe_dump(params, sort_keys=False))
  return path

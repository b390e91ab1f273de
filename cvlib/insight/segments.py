"""Customer segments: RFM scores and names, value tiers, churn-risk bands and next best actions.

Turns per-customer scores into the groups a marketing manager acts on. The input frame has one row
per customer with columns ``customer_id, recency_days, frequency, monetary, predicted_value,
churn_probability``; other columns are passed through.

Ties: every rank-based score gives tied customers the score of the *worst placed* member of the tie
group, so a score never depends on row order and the top groups are never over-filled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

ArrayLike = pd.Series | np.ndarray | Sequence[float]

REQUIRED_COLUMNS = (
    "customer_id", "recency_days", "frequency", "monetary", "predicted_value", "churn_probability",
)
TIERS = ("High", "Medium", "Low")
RISKS = ("Low", "Medium", "High")
ACTIONS = ("retain", "win back", "upsell", "nurture", "maintain")


@dataclasses.dataclass(frozen=True)
class SegmentRule:
  """One cell block of the R x F grid: the segment for r_score in ``r`` and f_score in ``f``."""
  name: str
  r: tuple[int, ...]
  f: tuple[int, ...]
  meaning: str


# The common R x F segment grid (the "RFM segment map"), with "Lost" carved out of Hibernating.
#
#            F=1             F=2             F=3             F=4        F=5
#   R=5   New             Potential l.    Potential l.    Champions  Champions
#   R=4   Promising       Potential l.    Potential l.    Loyal      Loyal
#   R=3   About to sleep  About to sleep  Need attention  Loyal      Loyal
#   R=2   Hibernating     Hibernating     At risk         At risk    Can't lose
#   R=1   Lost            Hibernating     At risk         At risk    Can't lose
RFM_SEGMENT_RULES: tuple[SegmentRule, ...] = (
    SegmentRule("Champions", (5,), (4, 5), "bought recently, buy often"),
    SegmentRule("Loyal", (3, 4), (4, 5), "buy often, fairly recent"),
    SegmentRule("Potential loyalist", (4, 5), (2, 3), "recent, a few purchases"),
    SegmentRule("New", (5,), (1,), "first purchase very recently"),
    SegmentRule("Promising", (4,), (1,), "recent single purchase"),
    SegmentRule("Need attention", (3,), (3,), "middling recency and frequency"),
    SegmentRule("About to sleep", (3,), (1, 2), "few purchases, fading"),
    SegmentRule("At risk", (1, 2), (3, 4), "used to buy regularly, not lately"),
    SegmentRule("Can't lose", (1, 2), (5,), "were the most frequent buyers, gone quiet"),
    SegmentRule("Hibernating", (1, 2), (1, 2), "few purchases long ago (not R=1 and F=1)"),
    SegmentRule("Lost", (1,), (1,), "one purchase, longest ago"),
)
SEGMENTS = tuple(rule.name for rule in RFM_SEGMENT_RULES)
# "Hibernating" lists (1, 1) too; "Lost" is applied after it and wins that cell.
_SEGMENT_GRID = np.empty((6, 6), dtype=object)  # [r_score, f_score], index 0 unused
for _rule in RFM_SEGMENT_RULES:
  for _r in _rule.r:
    for _f in _rule.f:
      _SEGMENT_GRID[_r, _f] = _rule.name
LAPSED = ("At risk", "Can't lose", "Hibernating", "Lost")
ENGAGED = ("Champions", "Loyal", "Potential loyalist")


@dataclasses.dataclass(frozen=True)
class ActionRule:
  """Next best action when tier, risk and RFM segment are all in the listed sets (None: any)."""
  action: str
  tiers: tuple[str, ...] | None
  risks: tuple[str, ...] | None
  segments: tuple[str, ...] | None


# First matching rule wins; the last rule matches everything.
#   1. maintain  High value, Low risk                        (any segment)
#   2. win back  High/Medium value, lapsed RFM segment        (any risk)
#   3. retain    High value at Medium/High risk, or Medium value at High risk
#   4. upsell    Medium/Low value, Low/Medium risk, engaged RFM segment
#   5. nurture   everything else (low or uncertain value)
NEXT_BEST_ACTION_RULES: tuple[ActionRule, ...] = (
    ActionRule("maintain", ("High",), ("Low",), None),
    ActionRule("win back", ("High", "Medium"), None, LAPSED),
    ActionRule("retain", ("High",), ("Medium", "High"), None),
    ActionRule("retain", ("Medium",), ("High",), None),
    ActionRule("upsell", ("Medium", "Low"), ("Low", "Medium"), ENGAGED),
    ActionRule("nurture", None, None, None),
)
ACTION_REASONS: dict[str, str] = {
    "maintain": "High value and likely to stay: keep service levels and VIP perks, no discounts.",
    "win back": "Valuable but has lapsed: a personal win-back offer before they are gone for good.",
    "retain": "Valuable and at risk of churning: act now (service follow-up, loyalty reward).",
    "upsell": "Engaged with room to grow: cross-sell, bundles, higher tiers.",
    "nurture": "Low or uncertain value: low-cost automated nurturing towards the next purchase.",
}


def _as_float(values: ArrayLike, name: str) -> pd.Series:
  s = values.copy() if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
  try:
    s = s.astype("float64")
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name}: must be numeric ({e})") from None
  if s.isna().any():
    raise ValueError(f"{name}: {int(s.isna().sum())} missing value(s); fill or drop them first")
  if np.isinf(s.to_numpy()).any():
    raise ValueError(f"{name}: holds infinite values")
  return s


def _share_strictly_worse(values: pd.Series, higher_is_better: bool) -> np.ndarray:
  """Share of values strictly worse than each value (ties: the worst placed member's share)."""
  key = values if higher_is_better else -values
  return (key.rank(method="min").to_numpy() - 1.0) / len(values)


def rfm_scores(recency_days: ArrayLike, frequency: ArrayLike,
               monetary: ArrayLike) -> tuple[pd.DataFrame, list[str]]:
  """Quintile scores 1-5 for recency, frequency and monetary value (5 = best).

  score = 1 + floor(5 * share of customers strictly worse), so tied customers share the score of
  the worst placed among them and a value held by many customers leaves quintiles empty (e.g. when
  60% bought once, F scores are 1, 4, 5). Each collapsed score is reported in the warnings list.

  Args:
    recency_days: days since last purchase; smaller is better.
    frequency: number of purchases; larger is better.
    monetary: spend; larger is better.

  Returns:
    (scores, warnings): a DataFrame with int columns r_score, f_score, m_score, indexed like
    ``recency_days`` when it is a Series (else 0..n-1); and human-readable warnings (empty list when
    all five quintiles are used by every score).

  Raises:
    ValueError: lengths differ, no values, missing or non-numeric values, negative recency.
  """
  r = _as_float(recency_days, "recency_days")
  f = _as_float(frequency, "frequency")
  m = _as_float(monetary, "monetary")
  if not len(r) == len(f) == len(m):
    raise ValueError(f"rfm_scores: lengths differ: recency_days {len(r)}, frequency {len(f)}, "
                     f"monetary {len(m)}")
  if len(r) == 0:
    raise ValueError("rfm_scores: no customers")
  if (r < 0).any():
    raise ValueError(f"recency_days: must be >= 0, got min {r.min()}")
  index = recency_days.index if isinstance(recency_days, pd.Series) else pd.RangeIndex(len(r))
  scores = pd.DataFrame(index=index)
  warnings: list[str] = []
  for col, name, values, higher in (("r_score", "recency_days", r, False),
                                    ("f_score", "frequency", f, True),
                                    ("m_score", "monetary", m, True)):
    score = 1 + np.floor(5 * _share_strictly_worse(values.reset_index(drop=True), higher))
    score = np.clip(score, 1, 5).astype(int)
    scores[col] = score
    used = sorted(set(score.tolist()))
    if len(used) < 5:
      counts = values.value_counts(normalize=True)
      warnings.append(
          f"{col}: only {len(used)} of 5 quintiles used {used}; {counts.iloc[0]:.0%} of customers "
          f"share {name}={counts.index[0]:g}. Segments relying on the missing scores stay empty.")
  return scores, warnings


def _as_int_scores(values: ArrayLike, name: str) -> np.ndarray:
  arr = np.asarray(values)
  try:
    arr = arr.astype(float)
  except (TypeError, ValueError):
    raise ValueError(f"{name}: must be integers 1-5") from None
  bad = ~np.isin(arr, [1, 2, 3, 4, 5])
  if bad.any():
    raise ValueError(f"{name}: must be integers 1-5, got {arr[bad][0]:g}")
  return arr.astype(int)


def rfm_segment(r_score: ArrayLike, f_score: ArrayLike) -> pd.Series:
  """Names each customer's segment from the R x F grid in ``RFM_SEGMENT_RULES``.

  ==================  ========  ========
  segment             r_score   f_score
  ==================  ========  ========
  Champions           5         4-5
  Loyal               3-4       4-5
  Potential loyalist  4-5       2-3
  New                 5         1
  Promising           4         1
  Need attention      3         3
  About to sleep      3         1-2
  At risk             1-2       3-4
  Can't lose          1-2       5
  Hibernating         1-2       1-2 (except R=1 and F=1)
  Lost                1         1
  ==================  ========  ========

  Args:
    r_score: recency scores 1-5 (5 = most recent).
    f_score: frequency scores 1-5 (5 = most frequent).

  Returns:
    Segment names (str), indexed like ``r_score`` when it is a Series.

  Raises:
    ValueError: lengths differ or a score is not an integer 1-5.
  """
  r = _as_int_scores(r_score, "r_score")
  f = _as_int_scores(f_score, "f_score")
  if len(r) != len(f):
    raise ValueError(f"rfm_segment: lengths differ: r_score {len(r)}, f_score {len(f)}")
  index = r_score.index if isinstance(r_score, pd.Series) else None
  return pd.Series(_SEGMENT_GRID[r, f], index=index, dtype=object, name="rfm_segment")


def value_tier(predicted_value: ArrayLike, *, shares: tuple[float, float] = (0.2, 0.3),
               floor: float = 0.0) -> pd.Series:
  """Value tier by rank: top ``shares[0]`` of customers High, next ``shares[1]`` Medium, rest Low;
  a customer predicted below ``floor`` is Low whatever the rank.

  A customer is High when the share of customers valued at least as much is <= shares[0], so
  ties at a boundary go to the lower tier and High never holds more than shares[0] of customers
  (many customers predicted at exactly 0 all land in Low). The floor keeps a shop where almost
  nobody returns (the top fifth predicted at a few cents) from calling anyone valuable
  (:func:`value_floor`).

  Args:
    predicted_value: predicted next-period value per customer.
    shares: (High share, Medium share) of customers; each in (0, 1), sum <= 1.
    floor: least predicted value of the High and Medium tiers (0: rank alone).

  Returns:
    "High" / "Medium" / "Low" per customer, indexed like ``predicted_value`` when it is a Series.

  Raises:
    ValueError: bad shares, missing or non-numeric values.
  """
  top, middle = _check_shares(shares)
  v = _as_float(predicted_value, "predicted_value")
  at_or_above = v.rank(method="max", ascending=False).to_numpy() / max(len(v), 1)
  # Small epsilon so 0.2 * n customers land in High despite float error in the division.
  tiers = np.where(at_or_above <= top + 1e-12, "High",
                   np.where(at_or_above <= top + middle + 1e-12, "Medium", "Low"))
  tiers = np.where(v.to_numpy() < floor, "Low", tiers)
  return pd.Series(tiers, index=v.index, dtype=object, name="value_tier")


def value_floor(order_values: ArrayLike, share: float) -> float:
  """The least predicted value a valuable customer has: ``share`` of the shop's typical order
  (the median of its customers' mean order values, customers without a paid order left out);
  0 when ``share`` is 0 or no customer has paid."""
  if share < 0:
    raise ValueError(f"value floor: share must be >= 0, got {share!r}")
  v = _as_float(order_values, "order values")
  v = v[v > 0]
  return float(share * v.median()) if share > 0 and len(v) else 0.0


def _check_shares(shares: tuple[float, float]) -> tuple[float, float]:
  if len(shares) != 2:
    raise ValueError(f"value tier shares: need (high, medium), got {shares!r}")
  top, middle = (float(x) for x in shares)
  if not (0 < top < 1 and 0 <= middle < 1 and top + middle <= 1):
    raise ValueError(f"value tier shares: need 0 < high < 1, 0 <= medium, high + medium <= 1; "
                     f"got {shares!r}")
  return top, middle


def risk_band(churn_probability: ArrayLike, *,
              thresholds: tuple[float, float] = (0.3, 0.6)) -> pd.Series:
  """Churn risk band: Low below thresholds[0], Medium below thresholds[1], High from thresholds[1].

  Args:
    churn_probability: probability in [0, 1] per customer.
    thresholds: (medium_from, high_from), 0 <= medium_from <= high_from <= 1.

  Returns:
    "Low" / "Medium" / "High" per customer, indexed like the input when it is a Series.

  Raises:
    ValueError: bad thresholds, probabilities outside [0, 1] or missing.
  """
  if len(thresholds) != 2 or not 0 <= thresholds[0] <= thresholds[1] <= 1:
    raise ValueError("risk thresholds: need 0 <= medium_from <= high_from <= 1, "
                     f"got {thresholds!r}")
  p = _as_float(churn_probability, "churn_probability")
  if ((p < 0) | (p > 1)).any():
    raise ValueError(f"churn_probability: must lie in [0, 1], got range [{p.min()}, {p.max()}]")
  bands = np.where(p >= thresholds[1], "High", np.where(p >= thresholds[0], "Medium", "Low"))
  return pd.Series(bands, index=p.index, dtype=object, name="risk_band")


def next_best_action(tier, risk, rfm_segment):
  """Next best action from value tier, churn-risk band and RFM segment (``NEXT_BEST_ACTION_RULES``).

  First matching rule wins:

  ====  =========  ==============  ==============  =================================
  rule  action     value tier      risk band       RFM segment
  ====  =========  ==============  ==============  =================================
  1     maintain   High            Low             any
  2     win back   High, Medium    any             At risk, Can't lose, Hibernating, Lost
  3     retain     High            Medium, High    any
  4     retain     Medium          High            any
  5     upsell     Medium, Low     Low, Medium     Champions, Loyal, Potential loyalist
  6     nurture    any             any             any
  ====  =========  ==============  ==============  =================================

  ``ACTION_REASONS[action]`` holds a one-line reason for each action.

  Args:
    tier: "High" / "Medium" / "Low" (scalar or array-like).
    risk: "Low" / "Medium" / "High" (scalar or array-like, same length).
    rfm_segment: a name from ``SEGMENTS`` (scalar or array-like, same length).

  Returns:
    The action (str) for scalar inputs, else a Series of actions indexed like ``tier`` when it is
    a Series.

  Raises:
    ValueError: unknown tier, risk or segment name, or lengths differ.
  """
  scalar = all(isinstance(x, str) for x in (tier, risk, rfm_segment))
  index = tier.index if isinstance(tier, pd.Series) else None
  t, r, s = (np.atleast_1d(np.asarray(x, dtype=object)) for x in (tier, risk, rfm_segment))
  if not len(t) == len(r) == len(s):
    raise ValueError(f"next_best_action: lengths differ: tier {len(t)}, risk {len(r)}, "
                     f"rfm_segment {len(s)}")
  for name, arr, allowed in (("tier", t, TIERS), ("risk", r, RISKS), ("rfm_segment", s, SEGMENTS)):
    bad = ~np.isin(arr, allowed)
    if bad.any():
      raise ValueError(f"{name}: unknown value {arr[bad][0]!r}; allowed: {', '.join(allowed)}")
  action = np.full(len(t), None, dtype=object)
  for rule in NEXT_BEST_ACTION_RULES:
    hit = action == None  # noqa: E711 (elementwise on an object array)
    for arr, allowed in ((t, rule.tiers), (r, rule.risks), (s, rule.segments)):
      if allowed is not None:
        hit &= np.isin(arr, allowed)
    action[hit] = rule.action
  if scalar:
    return str(action[0])
  return pd.Series(action, index=index, dtype=object, name="action")


def _check_columns(df: pd.DataFrame, required: Sequence[str], where: str) -> None:
  missing = [c for c in required if c not in df.columns]
  if missing:
    raise ValueError(f"{where}: column(s) {', '.join(map(repr, missing))} missing "
                     f"(have: {', '.join(map(str, df.columns))})")


def assign_segments(df: pd.DataFrame, *, value_tiers: tuple[float, float] = (0.2, 0.3),
                    risk_thresholds: tuple[float, float] = (0.3, 0.6), value_floor: float = 0.0
                    ) -> tuple[pd.DataFrame, list[str]]:
  """Adds RFM scores, RFM segment, value tier, risk band, action and reason to a customer frame.

  Args:
    df: one row per customer with columns ``REQUIRED_COLUMNS`` (others are kept).
    value_tiers: (High, Medium) shares of customers, see :func:`value_tier`.
    risk_thresholds: churn probability bounds, see :func:`risk_band`.
    value_floor: least predicted value of the High and Medium tiers, see :func:`value_tier`.

  Returns:
    (frame, warnings): a copy of ``df`` with columns r_score, f_score, m_score, rfm_segment,
    value_tier, risk_band, action, action_reason; and the warnings of :func:`rfm_scores`.

  Raises:
    ValueError: a required column is missing, customer ids repeat, or a value is invalid.
  """
  _check_columns(df, REQUIRED_COLUMNS, "assign_segments")
  if df["customer_id"].duplicated().any():
    dup = df.loc[df["customer_id"].duplicated(), "customer_id"].iloc[0]
    raise ValueError(f"assign_segments: customer_id {dup!r} appears more than once; need one row "
                     "per customer")
  out = df.copy()
  scores, warnings = rfm_scores(out["recency_days"], out["frequency"], out["monetary"])
  out[["r_score", "f_score", "m_score"]] = scores.to_numpy()
  out["rfm_segment"] = rfm_segment(out["r_score"], out["f_score"])
  out["value_tier"] = value_tier(out["predicted_value"], shares=value_tiers, floor=value_floor)
  out["risk_band"] = risk_band(out["churn_probability"], thresholds=risk_thresholds)
  out["action"] = next_best_action(out["value_tier"], out["risk_band"], out["rfm_segment"])
  out["action_reason"] = out["action"].map(ACTION_REASONS)
  return out, warnings


# --- reference-based segments: the rules of one population applied to new customers ------------

RFM_COLUMNS = ("recency_days", "frequency", "monetary")


@dataclasses.dataclass(frozen=True)
class SegmentReference:
  """The cut-offs :func:`assign_segments` used on a reference population, to score others alike.

  ``rfm_edges[col]`` holds four edges. frequency / monetary: score = 1 + number of edges the value
  is strictly above; recency_days: 1 + number of edges it is strictly below. Value tiers: High
  from ``high_from`` (None: nobody), Medium from ``medium_from``, Low below.
  """
  rfm_edges: dict[str, tuple[float, ...]]
  high_from: float | None
  medium_from: float | None
  value_tiers: tuple[float, float]
  risk_thresholds: tuple[float, float]

  def to_dict(self) -> dict:
    return {"rfm_edges": {k: list(v) for k, v in self.rfm_edges.items()},
            "high_from": self.high_from, "medium_from": self.medium_from,
            "value_tiers": list(self.value_tiers), "risk_thresholds": list(self.risk_thresholds)}

  @classmethod
  def from_dict(cls, d: dict) -> SegmentReference:
    edges = {k: tuple(float(x) for x in d["rfm_edges"][k]) for k in RFM_COLUMNS}
    if any(len(e) != 4 for e in edges.values()):
      raise ValueError(f"segment reference: rfm_edges need 4 edges per score, got {edges}")
    opt = lambda x: None if x is None else float(x)
    return cls(edges, opt(d["high_from"]), opt(d["medium_from"]),
               tuple(d["value_tiers"]), tuple(d["risk_thresholds"]))


def _edges_from_scores(values: np.ndarray, scores: np.ndarray, higher_is_better: bool
                       ) -> tuple[float, ...]:
  """Edges that give back ``scores``: each is the best value scoring below k, for k = 2..5.

  Scores are monotone in the value and tied values share a score, so "value beyond the best
  value scoring below k" holds exactly for the customers scoring k or more.
  """
  edges = []
  for k in range(2, 6):
    below = values[scores < k]  # never empty: the worst value always scores 1
    edges.append(float(below.max() if higher_is_better else below.min()))
  return tuple(edges)


def fit_segment_reference(df: pd.DataFrame, *, value_tiers: tuple[float, float] = (0.2, 0.3),
                          risk_thresholds: tuple[float, float] = (0.3, 0.6),
                          value_floor: float = 0.0) -> tuple[SegmentReference, list[str]]:
  """The RFM score edges and value-tier cut-offs of a population (see :func:`assign_segments`).

  Applying the reference to the same population with :func:`assign_segments_from_reference`
  gives exactly what :func:`assign_segments` gives; new customers are placed by the same edges.

  Args:
    df: one row per customer with recency_days, frequency, monetary and predicted_value.
    value_tiers: (High, Medium) shares of customers.
    risk_thresholds: churn probability bounds (kept in the reference).
    value_floor: least predicted value of the High and Medium tiers (the cut-offs hold it:
      nobody is High when no customer reaches it).

  Returns:
    (reference, the warnings of :func:`rfm_scores`).

  Raises:
    ValueError: a column is missing or holds invalid values, or there are no customers.
  """
  _check_columns(df, RFM_COLUMNS + ("predicted_value",), "fit_segment_reference")
  if len(thresholds := tuple(risk_thresholds)) != 2 or not 0 <= thresholds[0] <= thresholds[1] <= 1:
    raise ValueError("risk thresholds: need 0 <= medium_from <= high_from <= 1, "
                     f"got {risk_thresholds!r}")
  scores, warnings = rfm_scores(df["recency_days"], df["frequency"], df["monetary"])
  edges = {}
  for col, score, higher in (("recency_days", "r_score", False), ("frequency", "f_score", True),
                             ("monetary", "m_score", True)):
    edges[col] = _edges_from_scores(df[col].to_numpy(np.float64), scores[score].to_numpy(), higher)
  value = _as_float(df["predicted_value"], "predicted_value").to_numpy()
  tier = value_tier(df["predicted_value"], shares=value_tiers, floor=value_floor).to_numpy()
  cut = lambda mask: float(value[mask].min()) if mask.any() else None
  ref = SegmentReference(edges, cut(tier == "High"), cut(tier != "Low"),
                         tuple(float(x) for x in _check_shares(value_tiers)),
                         tuple(float(x) for x in thresholds))
  return ref, warnings


def _finite(values: pd.Series, name: str) -> np.ndarray:
  try:
    arr = np.asarray(values, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name}: must be numeric ({e})") from None
  if not np.isfinite(arr).all():
    bad = int((~np.isfinite(arr)).sum())
    raise ValueError(f"{name}: {bad} missing or infinite value(s); fill or drop them first")
  return arr


def _action_table() -> dict[tuple[str, str, str], str]:
  """Every (tier, risk, segment) combination's action, from :func:`next_best_action` itself."""
  combos = [(t, r, s) for t in TIERS for r in RISKS for s in SEGMENTS]
  actions = next_best_action(*(pd.Series([c[i] for c in combos]) for i in range(3)))
  return dict(zip(combos, actions))


_ACTIONS_BY_CELL = _action_table()


def assign_segments_from_reference(df: pd.DataFrame, reference: SegmentReference) -> pd.DataFrame:
  """Like :func:`assign_segments`, with the cut-offs of a reference population.

  Each customer is placed on their own, so the result does not depend on who else is scored
  (one customer, a chunk or everyone give the same row). Plain numpy, since a service scores one
  customer at a time.

  Args:
    df: one row per customer with ``REQUIRED_COLUMNS`` (others are kept).
    reference: from :func:`fit_segment_reference`.

  Returns:
    A copy of ``df`` with r_score, f_score, m_score, rfm_segment, value_tier, risk_band, action
    and action_reason.

  Raises:
    ValueError: a required column is missing, or a value is invalid.
  """
  _check_columns(df, REQUIRED_COLUMNS, "assign_segments_from_reference")
  cols = segment_columns(df["recency_days"], df["frequency"], df["monetary"],
                         df["predicted_value"], df["churn_probability"], reference)
  out = df.copy()
  obj = lambda values: pd.Series(values, index=out.index, dtype=object)  # noqa: E731
  for col, values in cols.items():
    out[col] = values if values.dtype == np.int64 else obj(values)
  out["action_reason"] = out["action"].map(ACTION_REASONS)  # the dtype assign_segments gives
  return out


def segment_columns(recency_days: Any, frequency: Any, monetary: Any, predicted_value: Any,
                    churn_probability: Any, reference: SegmentReference) -> dict[str, np.ndarray]:
  """:func:`assign_segments_from_reference`'s new columns as arrays, each customer on their own:
  r_score, f_score, m_score (int64), rfm_segment, value_tier, risk_band, action, action_reason
  (object arrays of str).

  Raises:
    ValueError: a value is missing, infinite or out of range.
  """
  recency = _finite(recency_days, "recency_days")
  if (recency < 0).any():
    raise ValueError(f"recency_days: must be >= 0, got min {recency.min()}")
  p = _finite(churn_probability, "churn_probability")
  if ((p < 0) | (p > 1)).any():
    raise ValueError(f"churn_probability: must lie in [0, 1], got range [{p.min()}, {p.max()}]")
  e = reference.rfm_edges
  r = 1 + (recency[:, None] < np.asarray(e["recency_days"])[None, :]).sum(axis=1)
  f = 1 + (_finite(frequency, "frequency")[:, None]
           > np.asarray(e["frequency"])[None, :]).sum(axis=1)
  m = 1 + (_finite(monetary, "monetary")[:, None]
           > np.asarray(e["monetary"])[None, :]).sum(axis=1)
  value = _finite(predicted_value, "predicted_value")
  high = np.inf if reference.high_from is None else reference.high_from
  medium = np.inf if reference.medium_from is None else reference.medium_from
  tier = np.where(value >= high, "High", np.where(value >= medium, "Medium", "Low"))
  low_from, high_from = reference.risk_thresholds
  risk = np.where(p >= high_from, "High", np.where(p >= low_from, "Medium", "Low"))
  segment = _SEGMENT_GRID[r, f]
  action = [_ACTIONS_BY_CELL[cell] for cell in zip(tier.tolist(), risk.tolist(), segment.tolist())]
  obj = lambda values: np.asarray(values, dtype=object)  # noqa: E731
  return {"r_score": r.astype(np.int64), "f_score": f.astype(np.int64),
          "m_score": m.astype(np.int64), "rfm_segment": obj(segment), "value_tier": obj(tier),
          "risk_band": obj(risk), "action": obj(action),
          "action_reason": obj([ACTION_REASONS[a] for a in action])}


def value_risk_matrix(df: pd.DataFrame, *, value_tiers: tuple[float, float] = (0.2, 0.3),
                      risk_thresholds: tuple[float, float] = (0.3, 0.6)) -> pd.DataFrame:
  """Customers and predicted value in each (value tier, risk band) cell.

  Uses the frame's ``value_tier`` / ``risk_band`` columns when present, else computes them.

  Args:
    df: one row per customer with predicted_value and churn_probability.
    value_tiers: (High, Medium) shares, used when ``value_tier`` is absent.
    risk_thresholds: churn probability bounds, used when ``risk_band`` is absent.

  Returns:
    Nine rows (all cells, empty ones with zeros), columns value_tier, risk_band, n_customers,
    share_customers, predicted_value (sum), share_value (of the total predicted value; 0 when the
    total is 0). Tiers are ordered High, Medium, Low and bands Low, Medium, High.

  Raises:
    ValueError: a needed column is missing or holds invalid values.
  """
  _check_columns(df, ("predicted_value", "churn_probability"), "value_risk_matrix")
  value = _as_float(df["predicted_value"], "predicted_value")
  tier = df["value_tier"] if "value_tier" in df else value_tier(value, shares=value_tiers)
  band = df["risk_band"] if "risk_band" in df else risk_band(df["churn_probability"],
                                                              thresholds=risk_thresholds)
  cells = pd.DataFrame({"value_tier": np.asarray(tier, dtype=object),
                        "risk_band": np.asarray(band, dtype=object),
                        "predicted_value": value.to_numpy()})
  grouped = cells.groupby(["value_tier", "risk_band"]).agg(
      n_customers=("predicted_value", "size"), predicted_value=("predicted_value", "sum"))
  full = pd.MultiIndex.from_product([TIERS, RISKS], names=["value_tier", "risk_band"])
  out = grouped.reindex(full, fill_value=0).reset_index()
  out["n_customers"] = out["n_customers"].astype(int)
  out["predicted_value"] = out["predicted_value"].astype(float)
  out["share_customers"] = out["n_customers"] / max(len(cells), 1)
  total = value.sum()
  out["share_value"] = out["predicted_value"] / total if total != 0 else 0.0
  return out[["value_tier", "risk_band", "n_customers", "share_customers", "predicted_value",
              "share_value"]]


def _customer_mean_sentiment(sentiment: pd.Series | pd.DataFrame) -> pd.Series:
  if isinstance(sentiment, pd.DataFrame):
    _check_columns(sentiment, ("customer_id", "sentiment"), "segment_profiles sentiment")
    return sentiment.groupby("customer_id")["sentiment"].mean()
  return sentiment.groupby(level=0).mean()


def _top_aspects(aspects: pd.DataFrame, members: pd.Index, n_top: int) -> str:
  rows = aspects[aspects["customer_id"].isin(members)]
  if rows.empty:
    return ""
  cols = [c for c in aspects.columns if c != "customer_id"]
  # Booleans are tags; anything else (polarity with <NA> for "not mentioned") counts when present.
  mentioned = pd.DataFrame({c: rows[c].fillna(False).astype(bool)
                            if pd.api.types.is_bool_dtype(rows[c].dtype) else rows[c].notna()
                            for c in cols})
  rate = mentioned.mean().sort_values(ascending=False, kind="stable")
  rate = rate[rate > 0].head(n_top)
  return ", ".join(f"{name} ({share:.0%})" for name, share in rate.items())


def _top_category(categories: pd.DataFrame, members: pd.Index) -> str:
  rows = categories[categories["customer_id"].isin(members)].dropna(subset=["category"])
  if rows.empty:
    return ""
  weight = rows["amount"] if "amount" in rows else pd.Series(1.0, index=rows.index)
  totals = weight.groupby(rows["category"].astype(str)).sum()
  # Sort by weight, then name, so ties resolve the same way on every run.
  totals = totals.sort_index().sort_values(ascending=False, kind="stable")
  return str(totals.index[0])


def _mode_action(actions: pd.Series) -> str:
  counts = actions.value_counts()
  best = counts[counts == counts.max()].index
  return next(a for a in ACTIONS if a in best)


def segment_profiles(df: pd.DataFrame, *, sentiment: pd.Series | pd.DataFrame | None = None,
                     aspects: pd.DataFrame | None = None, categories: pd.DataFrame | None = None,
                     by: str = "rfm_segment", n_top_aspects: int = 2,
                     value_tiers: tuple[float, float] = (0.2, 0.3),
                     risk_thresholds: tuple[float, float] = (0.3, 0.6)) -> pd.DataFrame:
  """One row per segment: size, value, risk, sentiment, what customers talk about and what to do.

  Args:
    df: one row per customer with ``REQUIRED_COLUMNS``; segment columns from
      :func:`assign_segments` are used when present, else computed.
    sentiment: per-customer sentiment, a Series indexed by customer_id or a DataFrame with columns
      customer_id, sentiment (one row per review; averaged per customer first).
    aspects: one row per review with column customer_id and one column per aspect, either boolean
      tags or polarity with <NA> where the aspect is not mentioned.
    categories: one row per purchased line with columns customer_id, category (and optionally
      amount, which then weights the top category).
    by: column to group on: "rfm_segment", "value_tier", "risk_band", "action" or any df column.
    n_top_aspects: how many aspects to name per segment.
    value_tiers: (High, Medium) shares, used when segment columns are computed here.
    risk_thresholds: churn probability bounds, used when segment columns are computed here.

  Returns:
    Indexed by segment (sorted by share of predicted value, largest first), columns n_customers,
    share_customers, share_value, mean_predicted_value, mean_churn_probability, mean_sentiment
    (NaN without sentiment), top_aspects ("delivery (40%), price (12%)": share of the segment's
    reviews mentioning it), top_category, suggested_action (the most common per-customer action),
    action_reason.

  Raises:
    ValueError: a required column is missing.
  """
  needed = ("rfm_segment", "value_tier", "risk_band", "action")
  frame = df if all(c in df for c in needed) else assign_segments(
      df, value_tiers=value_tiers, risk_thresholds=risk_thresholds)[0]
  _check_columns(frame, (by, "customer_id", "predicted_value", "churn_probability"),
                 "segment_profiles")
  if aspects is not None:
    _check_columns(aspects, ("customer_id",), "segment_profiles aspects")
  if categories is not None:
    _check_columns(categories, ("customer_id", "category"), "segment_profiles categories")
  cust_sentiment = _customer_mean_sentiment(sentiment) if sentiment is not None else None
  total_value = frame["predicted_value"].sum()
  rows = []
  for segment, group in frame.groupby(by, sort=True):
    members = pd.Index(group["customer_id"])
    mean_sent = np.nan
    if cust_sentiment is not None:
      mean_sent = float(cust_sentiment.reindex(members).mean())
    action = _mode_action(group["action"])
    rows.append({
        by: segment,
        "n_customers": len(group),
        "share_customers": len(group) / len(frame),
        "share_value": group["predicted_value"].sum() / total_value if total_value else 0.0,
        "mean_predicted_value": group["predicted_value"].mean(),
        "mean_churn_probability": group["churn_probability"].mean(),
        "mean_sentiment": mean_sent,
        "top_aspects": _top_aspects(aspects, members, n_top_aspects) if aspects is not None else "",
        "top_category": _top_category(categories, members) if categories is not None else "",
        "suggested_action": action,
        "action_reason": ACTION_REASONS[action],
    })
  out = pd.DataFrame(rows).set_index(by)
  return out.sort_values(["share_value", "n_customers"], ascending=False, kind="stable")


def plot_value_risk_matrix(matrix: pd.DataFrame) -> Figure:
  """Heatmap of the value x risk matrix: colour = share of predicted value, text = count and share.

  Args:
    matrix: output of :func:`value_risk_matrix`.

  Returns:
    The figure (not shown).
  """
  _check_columns(matrix, ("value_tier", "risk_band", "n_customers", "share_value"),
                 "plot_value_risk_matrix")
  share = matrix.pivot(index="value_tier", columns="risk_band", values="share_value")
  count = matrix.pivot(index="value_tier", columns="risk_band", values="n_customers")
  share = share.reindex(index=list(TIERS), columns=list(RISKS)).fillna(0.0)
  count = count.reindex(index=list(TIERS), columns=list(RISKS)).fillna(0).astype(int)
  fig = Figure(figsize=(6, 4.5), layout="constrained")
  ax = fig.subplots()
  vmax = max(float(share.to_numpy().max()), 1e-9)
  image = ax.imshow(share.to_numpy(), cmap="Blues", vmin=0, vmax=vmax)
  for i in range(len(TIERS)):
    for j in range(len(RISKS)):
      v = share.iat[i, j]
      ax.text(j, i, f"{count.iat[i, j]:,} customers\n{v:.0%} of value", ha="center", va="center",
              color="white" if v > 0.6 * vmax else "black", fontsize=9)
  ax.set_xticks(range(len(RISKS)), [f"{r} risk" for r in RISKS])
  ax.set_yticks(range(len(TIERS)), [f"{t} value" for t in TIERS])
  ax.set_xlabel("churn risk band")
  ax.set_title("Where the predicted value sits")
  fig.colorbar(image, ax=ax, label="share of predicted value", format="{x:.0%}")
  return fig


def plot_segment_sizes(profiles: pd.DataFrame) -> Figure:
  """Horizontal bars per segment: share of customers next to share of predicted value.

  Args:
    profiles: output of :func:`segment_profiles`.

  Returns:
    The figure (not shown).
  """
  _check_columns(profiles, ("share_customers", "share_value"), "plot_segment_sizes")
  order = profiles.sort_values("share_value", kind="stable")
  y = np.arange(len(order))
  fig = Figure(figsize=(7, 0.45 * len(order) + 1.5), layout="constrained")
  ax = fig.subplots()
  height = 0.4
  ax.barh(y + height / 2, order["share_customers"], height, label="share of customers",
          color="#9ecae1")
  ax.barh(y - height / 2, order["share_value"], height, label="share of predicted value",
          color="#08519c")
  labels = [str(s) for s in order.index]
  if "suggested_action" in order:
    labels = [f"{s}  [{a}]" for s, a in zip(labels, order["suggested_action"])]
  ax.set_yticks(y, labels)
  ax.xaxis.set_major_formatter("{x:.0%}")
  ax.set_xlabel("share")
  ax.set_title("Segment size vs value")
  ax.legend(loc="best")
  return fig

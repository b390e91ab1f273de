"""Opinion monitoring: weekly share of negative reviews, a p-chart control band, and the reviews
behind every flag.

A category manager asks "did opinion about this product (category) just change?". Per week and
group, :func:`weekly_opinion` counts reviews and the share that are negative; :func:`control_flags`
compares each week with the pooled share of the ``baseline_weeks`` weeks before it (a p-chart:
``p +/- z * sqrt(p (1 - p) / n)`` with the week's own ``n``); :func:`flag_explanations` lists the
reviews that explain each flagged week, and :func:`plot_opinion_trend` draws it all.

A review is negative when its model sentiment is below 0 (P(negative) > P(positive)); reviews
without a sentiment score fall back to their stars (1-2 stars is negative).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cvlib.report.plots import BLUE, GREY, ORANGE

# The columns weekly_opinion writes; any other column of its output is a group column.
WEEKLY_COLUMNS = ("week", "n_reviews", "n_negative", "share_negative", "mean_rating",
                  "mean_sentiment")
FLAG_COLUMNS = ("baseline_reviews", "center", "lower", "upper", "status", "flagged")
STATUSES = ("worse", "improved", "in band", "too few reviews", "no baseline")
_METRIC_COLUMNS = frozenset(WEEKLY_COLUMNS + FLAG_COLUMNS)


def _as_list(by: str | Sequence[str] | None) -> list[str]:
  if by is None:
    return []
  return [by] if isinstance(by, str) else list(by)


def _check_columns(df: pd.DataFrame, needed: Sequence[str], where: str) -> None:
  missing = [c for c in needed if c not in df.columns]
  if missing:
    raise ValueError(f"{where}: column(s) {missing} missing (have: {list(df.columns)})")


def _periods(timestamps: pd.Series, freq: str, where: str) -> pd.Series:
  try:
    return pd.to_datetime(timestamps).dt.to_period(freq)
  except (ValueError, TypeError) as e:
    raise ValueError(f"{where}: freq {freq!r} is not a pandas period frequency "
                     "(use e.g. 'W', 'W-MON', 'M', 'D')") from e


def _negative(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
  """(is negative [bool], has an opinion [bool]) per row: sentiment first, stars as fallback."""
  sent = (pd.to_numeric(df["sentiment"], errors="coerce") if "sentiment" in df
          else pd.Series(np.nan, index=df.index))
  rating = (pd.to_numeric(df["rating"], errors="coerce") if "rating" in df
            else pd.Series(np.nan, index=df.index))
  sent, rating = sent.astype("float64"), rating.astype("float64")
  neg = np.where(sent.notna(), sent < 0, rating <= 2)
  return pd.Series(neg, index=df.index), sent.notna() | rating.notna()


def _tone(df: pd.DataFrame) -> pd.Series:
  """Sentiment in [-1, 1]; where it is absent, stars on the same scale: (rating - 3) / 2."""
  sent = (pd.to_numeric(df["sentiment"], errors="coerce").astype("float64") if "sentiment" in df
          else pd.Series(np.nan, index=df.index))
  rating = (pd.to_numeric(df["rating"], errors="coerce").astype("float64") if "rating" in df
            else pd.Series(np.nan, index=df.index))
  return sent.fillna((rating - 3.0) / 2.0)


def weekly_opinion(review_scores: pd.DataFrame, *, by: str | Sequence[str] | None = None,
                   freq: str = "W") -> pd.DataFrame:
  """Reviews, share negative, mean rating and mean sentiment per week (and group).

  Args:
    review_scores: one row per review with ``timestamp`` and ``sentiment`` and/or ``rating``
      (:func:`cvlib.stages.finetune.score_reviews` output, with any group column joined by the caller).
    by: group column(s), e.g. "category" or "product_id"; None for the whole shop.
    freq: pandas period frequency; "W" is calendar weeks Monday to Sunday.

  Returns:
    One row per group and period that has reviews (periods without reviews are absent), sorted by
    group then period: the group columns, ``week`` (the period's first day), ``n_reviews``,
    ``n_negative``, ``share_negative``, ``mean_rating`` and ``mean_sentiment`` (NaN where the
    column is absent). Reviews without a date, or without both sentiment and stars, are left out.
    ``attrs["freq"]`` keeps ``freq`` for :func:`control_flags`.

  Raises:
    ValueError: a missing column, or an invalid ``freq``.
  """
  groups = _as_list(by)
  _check_columns(review_scores, ["timestamp", *groups], "weekly_opinion")
  if "sentiment" not in review_scores and "rating" not in review_scores:
    raise ValueError("weekly_opinion: need a 'sentiment' or a 'rating' column (have: "
                     f"{list(review_scores.columns)})")
  bad = [g for g in groups if g in _METRIC_COLUMNS]
  if bad:
    raise ValueError(f"weekly_opinion: group column(s) {bad} clash with output column names")
  r = review_scores
  neg, has_opinion = _negative(r)
  keep = (has_opinion & r["timestamp"].notna()).to_numpy()
  r = r[keep]
  frame = pd.DataFrame({g: r[g].to_numpy() for g in groups})
  frame["week"] = _periods(r["timestamp"], freq, "weekly_opinion").dt.start_time.to_numpy()
  frame["neg"] = neg[keep].astype("float64").to_numpy()
  frame["rating"] = (pd.to_numeric(r["rating"], errors="coerce").astype("float64").to_numpy()
                     if "rating" in r else np.nan)
  frame["sentiment"] = (pd.to_numeric(r["sentiment"], errors="coerce").astype("float64")
                        .to_numpy() if "sentiment" in r else np.nan)
  out = (frame.groupby([*groups, "week"], sort=True, dropna=False)
         .agg(n_reviews=("neg", "size"), n_negative=("neg", "sum"),
              mean_rating=("rating", "mean"), mean_sentiment=("sentiment", "mean"))
         .reset_index())
  out["n_reviews"] = out["n_reviews"].astype("int64")
  out["n_negative"] = out["n_negative"].round().astype("int64")
  out["share_negative"] = out["n_negative"] / out["n_reviews"]
  out = out[[*groups, *WEEKLY_COLUMNS]]
  out.attrs["freq"] = freq
  return out


def _group_columns(df: pd.DataFrame) -> list[str]:
  return [c for c in df.columns if c not in _METRIC_COLUMNS]


def control_flags(weekly: pd.DataFrame, *, baseline_weeks: int = 8, z: float = 3.0,
                  min_reviews: int = 5, min_baseline_reviews: int = 20, min_negative: int = 3,
                  limits: str = "normal", freq: str | None = None) -> pd.DataFrame:
  """Flags weeks whose share of negative reviews leaves a control band around the recent past.

  For each group and week, the center ``p`` is the pooled share of negative reviews over the
  ``baseline_weeks`` calendar weeks before it (weeks without reviews add nothing). With
  ``limits="normal"`` (the classic p-chart) the band is ``p +/- z * sqrt(p (1 - p) / n)`` with the
  week's own ``n``, clipped to [0, 1]; a baseline with no negative review (or only negative ones)
  would give a zero-width band, so the width uses ``p`` kept within ``[0.5 / N, 1 - 0.5 / N]``
  (``N`` baseline reviews) while the center stays the pooled share. The normal band is too narrow
  when ``n * p`` is small (the binomial is skewed): on stationary weekly series with 10-40
  reviews and 5-10% negative it flags about 1-2% of weeks instead of the nominal 0.13%.
  ``limits="exact"`` instead takes the band from the beta-binomial predictive distribution of the
  week's negatives given the baseline (Jeffreys prior), at the same one-sided tail probability
  as ``z``: it accounts for skew and for a thin baseline (about 0.05% false flags on those
  series) at the cost of missing more small shifts.

  Flagged weeks stay in later baselines: a lasting shift becomes the new normal after
  ``baseline_weeks`` weeks, and a one-week spike raises the next weeks' center a little.

  Args:
    weekly: :func:`weekly_opinion` output; every column not written by it is a group column,
      and groups are monitored independently.
    baseline_weeks: weeks before each week that form its baseline (>= 1).
    z: band half-width in standard errors (> 0); 3 is the classic control-chart choice.
    min_reviews: weeks with fewer reviews are not judged ("too few reviews").
    min_baseline_reviews: weeks whose baseline holds fewer reviews are not judged ("no baseline").
    min_negative: a "worse" flag needs at least this many negative reviews in the week, so one
      or two complaints never raise an alarm alone.
    limits: "normal" or "exact" (see above).
    freq: the period frequency of ``weekly``; None reads ``weekly.attrs["freq"]`` (default "W").

  Returns:
    ``weekly`` plus ``baseline_reviews``, ``center``, ``lower``, ``upper`` (NaN without a
    baseline), ``status`` (one of :data:`STATUSES`: "worse" above the band, "improved" below it)
    and ``flagged`` (status is "worse" or "improved").

  Raises:
    ValueError: a missing column or an argument out of range.
  """
  _check_columns(weekly, WEEKLY_COLUMNS[:4], "control_flags")
  for name, value, ok in (("baseline_weeks", baseline_weeks, baseline_weeks >= 1),
                          ("z", z, z > 0), ("min_reviews", min_reviews, min_reviews >= 1),
                          ("min_baseline_reviews", min_baseline_reviews,
                           min_baseline_reviews >= 1),
                          ("min_negative", min_negative, min_negative >= 1)):
    if not ok:
      raise ValueError(f"control_flags: {name} must be {'> 0' if name == 'z' else '>= 1'}, "
                       f"got {value!r}")
  if limits not in ("normal", "exact"):
    raise ValueError(f"control_flags: limits must be 'normal' or 'exact', got {limits!r}")
  freq = freq or weekly.attrs.get("freq", "W")
  groups = _group_columns(weekly)
  w = weekly.sort_values([*groups, "week"], kind="stable").reset_index(drop=True)
  ordinal = pd.PeriodIndex(pd.to_datetime(w["week"]), freq=freq).asi8.astype(np.int64)
  if w.duplicated([*groups, "week"]).any():
    raise ValueError("control_flags: a group has two rows for one week; every column that is not "
                     f"a weekly_opinion metric counts as a group column (groups: {groups})")
  # w is sorted by group, so codes in order of appearance increase down the frame
  code = (w.groupby(groups, sort=False, dropna=False).ngroup().to_numpy(np.int64) if groups
          else np.zeros(len(w), np.int64))
  # One sorted key over all groups; groups are spaced more than baseline_weeks apart, so a
  # window [key - baseline_weeks, key) never reaches into the previous group.
  rel = ordinal - (ordinal.min() if len(w) else 0)
  span = (rel.max() if len(w) else 0) + baseline_weeks + 1
  key = code.astype(np.int64) * span + rel
  n = w["n_reviews"].to_numpy(np.float64)
  neg = w["n_negative"].to_numpy(np.float64)
  cum_n, cum_neg = np.concatenate([[0.0], np.cumsum(n)]), np.concatenate([[0.0], np.cumsum(neg)])
  start = np.searchsorted(key, key - baseline_weeks, side="left")
  idx = np.arange(len(w))
  base_n = cum_n[idx] - cum_n[start]
  base_neg = cum_neg[idx] - cum_neg[start]
  with np.errstate(invalid="ignore", divide="ignore"):
    center = np.where(base_n > 0, base_neg / base_n, np.nan)
    if limits == "normal":
      p = np.clip(center, 0.5 / base_n, 1.0 - 0.5 / base_n)
      half = z * np.sqrt(p * (1.0 - p) / n)
      lower, upper = np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)
    else:
      lower, upper = _exact_band(n, base_n, base_neg, z)
  share = w["share_negative"].to_numpy(np.float64)
  status = np.select(
      [n < min_reviews, base_n < min_baseline_reviews,
       (share > upper) & (neg >= min_negative), share < lower],
      ["too few reviews", "no baseline", "worse", "improved"], default="in band")
  out = w.copy()
  out["baseline_reviews"] = base_n.astype(np.int64)
  out["center"], out["lower"], out["upper"] = center, lower, upper
  out["status"] = status
  out["flagged"] = np.isin(status, ("worse", "improved"))
  out.attrs["freq"] = freq
  return out


def _exact_band(n: np.ndarray, base_n: np.ndarray, base_neg: np.ndarray,
                z: float) -> tuple[np.ndarray, np.ndarray]:
  """Shares [lower, upper] outside which a week's negatives have tail probability < sf(z).

  The week's negative count follows a beta-binomial: binomial in its n, with the share drawn
  from the Beta(K + 1/2, N - K + 1/2) posterior of the baseline's K negatives in N reviews.
  """
  from scipy import stats  # pylint: disable=import-outside-toplevel
  alpha = float(stats.norm.sf(z))
  ok = base_n > 0
  lower, upper = np.full(len(n), np.nan), np.full(len(n), np.nan)
  if ok.any():
    dist = stats.betabinom(n[ok].astype(np.int64), base_neg[ok] + 0.5,
                           base_n[ok] - base_neg[ok] + 0.5)
    # above upper: P(X > q_hi) <= alpha; below lower: P(X < q_lo) < alpha
    upper[ok] = dist.isf(alpha) / n[ok]
    lower[ok] = dist.ppf(alpha) / n[ok]
  return lower, upper


def flag_explanations(review_scores: pd.DataFrame, flags: pd.DataFrame,
                      texts: pd.Series | Mapping[str, str], *, n: int = 3,
                      max_chars: int = 280) -> pd.DataFrame:
  """The reviews behind each flagged week: the most negative ones (the most positive ones for an
  "improved" week).

  Args:
    review_scores: the reviews given to :func:`weekly_opinion` (``review_id``, ``timestamp``,
      ``sentiment`` and/or ``rating``, and the same group columns).
    flags: :func:`control_flags` output.
    texts: review text by review_id (a Series indexed by review_id, or a dict).
    n: reviews per flagged week (>= 1).
    max_chars: longer texts are cut and end in an ellipsis.

  Returns:
    One row per shown review, flagged weeks in ``flags`` order: the group columns, ``week``,
    ``status``, ``share_negative``, ``rank`` (1 = most negative, or most positive for
    "improved"), ``review_id``, ``rating``, ``sentiment`` and ``text`` ("" when unknown).

  Raises:
    ValueError: a missing column or n < 1.
  """
  if n < 1:
    raise ValueError(f"flag_explanations: n must be >= 1, got {n!r}")
  _check_columns(flags, ["week", "status", "flagged", "share_negative"], "flag_explanations")
  groups = _group_columns(flags)
  _check_columns(review_scores, ["review_id", "timestamp", *groups], "flag_explanations")
  columns = [*groups, "week", "status", "share_negative", "rank", "review_id", "rating",
             "sentiment", "text"]
  flagged = flags[flags["flagged"]]
  if not len(flagged):
    return pd.DataFrame(columns=columns)
  freq = flags.attrs.get("freq", "W")
  r = review_scores[review_scores["timestamp"].notna()]
  r = r.assign(week=_periods(r["timestamp"], freq, "flag_explanations").dt.start_time,
               _tone=_tone(r).to_numpy())
  r = r[r["_tone"].notna()]
  lookup = texts if isinstance(texts, Mapping) else texts.to_dict()
  by_key = {k: g for k, g in r.groupby([*groups, "week"], sort=False, dropna=False)}
  rows = []
  for _, f in flagged.iterrows():
    k = tuple(f[c] for c in [*groups, "week"])
    week_reviews = by_key.get(k)
    if week_reviews is None:
      continue
    ascending = f["status"] != "improved"
    pick = week_reviews.sort_values(["_tone", "review_id"], ascending=[ascending, True],
                                    kind="stable").head(n)
    for rank, (_, rev) in enumerate(pick.iterrows(), 1):
      body = lookup.get(rev["review_id"], "")
      body = "" if body is None or body is pd.NA else str(body)
      rows.append({**{c: f[c] for c in groups}, "week": f["week"], "status": f["status"],
                   "share_negative": f["share_negative"], "rank": rank,
                   "review_id": rev["review_id"],
                   "rating": rev["rating"] if "rating" in rev else np.nan,
                   "sentiment": rev["sentiment"] if "sentiment" in rev else np.nan,
                   "text": body if len(body) <= max_chars else body[:max_chars] + "…"})
  return pd.DataFrame(rows, columns=columns)


def plot_opinion_trend(weekly: pd.DataFrame, flags: pd.DataFrame | None = None, *,
                       title: str = "Share of negative reviews per week",
                       max_panels: int = 6) -> Figure:
  """Share of negative reviews per week, with the control band and flagged weeks marked.

  With group columns, one panel per group (up to ``max_panels``: the groups with the most
  "worse" flags, then the most reviews). Flags are told apart by marker shape, not only colour,
  so the chart reads in black and white: filled triangles up for "worse", open triangles down for
  "improved", small grey dots for weeks with too few reviews to judge.

  Args:
    weekly: :func:`weekly_opinion` output.
    flags: :func:`control_flags` output for it, or None for the trend alone.
    title: figure title.
    max_panels: most groups drawn.

  Returns:
    The figure (not shown).

  Raises:
    ValueError: a missing column.
  """
  _check_columns(weekly, WEEKLY_COLUMNS[:4], "plot_opinion_trend")
  data = flags if flags is not None else weekly
  if flags is not None:
    _check_columns(flags, ["week", "share_negative", "lower", "upper", "center", "status"],
                   "plot_opinion_trend")
  groups = _group_columns(data)
  if groups:
    stats = data.assign(_worse=(data["status"] == "worse") if "status" in data else False) \
        .groupby(groups, sort=False, dropna=False) \
        .agg(worse=("_worse", "sum"), reviews=("n_reviews", "sum"))
    keys = stats.sort_values(["worse", "reviews"], ascending=False, kind="stable") \
        .index[:max_panels].tolist()
  else:
    keys = [None]
  fig = Figure(figsize=(7.5, 0.4 + 2.4 * len(keys)), layout="constrained")
  axes = np.atleast_1d(fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0])
  for ax, key in zip(axes, keys):
    d = data
    if key is not None:
      values = key if isinstance(key, tuple) else (key,)
      mask = np.ones(len(d), bool)
      for c, v in zip(groups, values):
        mask &= (d[c] == v).to_numpy() if pd.notna(v) else d[c].isna().to_numpy()
      d = d[mask]
      ax.set_title(", ".join(f"{c} {v}" for c, v in zip(groups, values)), fontsize=10,
                   loc="left")
    d = d.sort_values("week")
    _draw_panel(ax, d, with_band=flags is not None)
  if not len(data):
    axes[0].text(0.5, 0.5, "no dated reviews", ha="center", va="center",
                 transform=axes[0].transAxes, color=GREY)
  fig.suptitle(title)
  seen: dict = {}  # one legend for all panels, each label once
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      seen.setdefault(label, handle)
  if seen:
    fig.legend(list(seen.values()), list(seen), loc="outside lower center", fontsize=8,
               ncol=len(seen))
  for label in axes[-1].get_xticklabels():
    label.set_rotation(30)
    label.set_horizontalalignment("right")
  return fig


def _draw_panel(ax, d: pd.DataFrame, *, with_band: bool) -> None:
  x = pd.to_datetime(d["week"]).to_numpy()
  share = d["share_negative"].to_numpy(np.float64)
  if with_band:
    judged = d["lower"].notna().to_numpy()
    ax.fill_between(x, d["lower"].to_numpy(np.float64), d["upper"].to_numpy(np.float64),
                    where=judged, step="mid", color=GREY, alpha=0.25, lw=0,
                    label="control band")
    ax.step(x, d["center"].to_numpy(np.float64), where="mid", color=GREY, ls="--", lw=1,
            label="baseline share")
  ax.plot(x, share, "-", color=BLUE, lw=1.3, label="share negative")
  if with_band:
    status = d["status"].to_numpy()
    few = status == "too few reviews"
    ok = ~few & ~np.isin(status, ("worse", "improved"))
    ax.plot(x[ok], share[ok], "o", color=BLUE, ms=3.5)
    if few.any():
      ax.plot(x[few], share[few], "o", color=GREY, ms=3, label="too few reviews")
    worse, better = status == "worse", status == "improved"
    if worse.any():
      ax.plot(x[worse], share[worse], "^", color=ORANGE, mec="black", ms=9, label="worse (flag)")
    if better.any():
      ax.plot(x[better], share[better], "v", mfc="white", mec="black", ms=9,
              label="improved (flag)")
  else:
    ax.plot(x, share, "o", color=BLUE, ms=3.5)
  top = np.nanmax(np.concatenate([share, d["upper"].to_numpy(np.float64) if with_band else []],
                                  dtype=np.float64)) if len(share) else 1.0
  ax.set_ylim(0, min(1.0, max(0.05, float(top) * 1.15)))
  ax.yaxis.set_major_formatter("{x:.0%}")
  ax.set_ylabel("negative")


__all__ = ["FLAG_COLUMNS", "STATUSES", "WEEKLY_COLUMNS", "control_flags", "flag_explanations",
           "plot_opinion_trend", "weekly_opinion"]

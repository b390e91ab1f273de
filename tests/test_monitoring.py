"""Opinion monitoring: weekly shares, the p-chart band, flags and the reviews behind them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cvlib.insight import monitoring

MONDAY = pd.Timestamp("2024-01-01")  # a Monday: weekly periods start here


def _reviews(weeks: dict[int, tuple[int, int]], group: str | None = None,
             start: pd.Timestamp = MONDAY) -> pd.DataFrame:
  """Reviews with exactly (n, negatives) in each week index, spread over the week's days."""
  rows = []
  for week, (n, neg) in weeks.items():
    for i in range(n):
      bad = i < neg
      rows.append({"review_id": f"{group or 'x'}-{week}-{i}", "customer_id": f"c{i}",
                   "product_id": "p1", "timestamp": start + pd.Timedelta(days=7 * week + i % 7,
                                                                         hours=i % 24),
                   "rating": 1.0 if bad else 5.0,
                   # the most negative review of a week is its first
                   "sentiment": -0.9 + 0.01 * i if bad else 0.8 - 0.001 * i,
                   "p_negative": 0.9 if bad else 0.1})
  df = pd.DataFrame(rows)
  if group is not None:
    df.insert(1, "category", group)
  return df


def _series(rng: np.random.Generator, n_weeks: int, p: float, mean_n: int = 40,
            spike: dict[int, float] | None = None) -> dict[int, tuple[int, int]]:
  spike = spike or {}
  out = {}
  for w in range(n_weeks):
    n = int(rng.poisson(mean_n))
    out[w] = (n, int(rng.binomial(n, spike.get(w, p))))
  return out


# ----------------------------------------------------------------------------------------------
# weekly_opinion


def test_weekly_opinion_counts_and_fallback_to_stars():
  df = pd.DataFrame({
      "review_id": ["a", "b", "c", "d", "e", "f"],
      "timestamp": pd.to_datetime(["2024-01-01 00:00", "2024-01-07 23:00", "2024-01-03 00:00",
                                   "2024-01-08 00:00", None, "2024-01-09 00:00"]),
      "rating": [1.0, 5.0, 2.0, 4.0, 1.0, np.nan],
      # c has no sentiment: its 2 stars make it negative; a's -0.5 makes it negative
      "sentiment": [-0.5, 0.5, np.nan, -0.1, -0.9, np.nan],
  })
  w = monitoring.weekly_opinion(df)
  # e (no date) and f (no sentiment, no stars) are left out; Sunday the 7th is still week 1
  assert w["week"].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-08")]
  assert w["n_reviews"].tolist() == [3, 1]
  assert w["n_negative"].tolist() == [2, 1]
  np.testing.assert_allclose(w["share_negative"], [2 / 3, 1.0])
  np.testing.assert_allclose(w["mean_rating"], [8 / 3, 4.0])
  np.testing.assert_allclose(w["mean_sentiment"], [0.0, -0.1])
  assert list(w.columns) == list(monitoring.WEEKLY_COLUMNS) and w.attrs["freq"] == "W"


def test_weekly_opinion_groups_and_ratings_only():
  df = pd.concat([_reviews({0: (4, 1)}, "shoes"), _reviews({0: (2, 2), 1: (3, 0)}, "hats")])
  df = df.drop(columns="sentiment")  # stars only
  w = monitoring.weekly_opinion(df, by="category")
  assert w[["category", "n_reviews", "n_negative"]].values.tolist() == [
      ["hats", 2, 2], ["hats", 3, 0], ["shoes", 4, 1]]
  assert w["mean_sentiment"].isna().all()


def test_weekly_opinion_validation():
  df = _reviews({0: (3, 1)})
  with pytest.raises(ValueError, match=r"column\(s\) \['category'\] missing"):
    monitoring.weekly_opinion(df, by="category")
  with pytest.raises(ValueError, match="need a 'sentiment' or a 'rating' column"):
    monitoring.weekly_opinion(df.drop(columns=["sentiment", "rating"]))
  with pytest.raises(ValueError, match="freq 'fortnight' is not a pandas period frequency"):
    monitoring.weekly_opinion(df, freq="fortnight")
  with pytest.raises(ValueError, match="clash with output column names"):
    monitoring.weekly_opinion(df.assign(status="x"), by="status")


# ----------------------------------------------------------------------------------------------
# control_flags


def test_planted_spike_is_the_only_flag():
  rng = np.random.default_rng(7)
  weeks = _series(rng, 30, 0.10, spike={20: 0.45})
  flags = monitoring.control_flags(monitoring.weekly_opinion(_reviews(weeks)))
  flagged = flags[flags["flagged"]]
  assert flagged["week"].tolist() == [MONDAY + pd.Timedelta(weeks=20)]
  assert flagged["status"].tolist() == ["worse"]
  # the first weeks have no (or too thin a) baseline and are not judged
  assert flags["status"].iloc[0] == "no baseline"


def test_stationary_series_is_not_flagged():
  # many reviews a week: the normal approximation of the p-chart holds
  rng = np.random.default_rng(0)
  weeks = _series(rng, 52, 0.2, mean_n=200)
  for limits in ("normal", "exact"):
    flags = monitoring.control_flags(monitoring.weekly_opinion(_reviews(weeks)), limits=limits)
    assert (flags["status"] == "in band").sum() == 51 and not flags["flagged"].any()


@pytest.mark.parametrize("limits, max_rate", [("normal", 0.03), ("exact", 0.004)])
def test_stationary_false_positive_rate(limits, max_rate):
  # 60 stationary groups x 52 weeks of about 20 reviews, 10% negative: the normal p-chart flags
  # more than its nominal 0.13% (skewed binomial), the exact limits stay near nominal
  rng = np.random.default_rng(1)
  frames = [_reviews(_series(rng, 52, 0.1, mean_n=20), group=f"g{g:02d}") for g in range(60)]
  flags = monitoring.control_flags(monitoring.weekly_opinion(pd.concat(frames), by="category"),
                                   limits=limits)
  judged = flags["status"].isin(["worse", "improved", "in band"])
  assert judged.sum() > 2800
  rate = flags.loc[judged, "flagged"].mean()
  assert rate < max_rate, rate


def test_exact_limits_catch_a_planted_spike():
  rng = np.random.default_rng(7)
  weeks = _series(rng, 30, 0.10, spike={20: 0.45})
  flags = monitoring.control_flags(monitoring.weekly_opinion(_reviews(weeks)), limits="exact")
  assert flags.loc[flags["flagged"], "week"].tolist() == [MONDAY + pd.Timedelta(weeks=20)]
  # the exact band of the spike week is wider above than below (skew)
  row = flags.iloc[20]
  assert row["upper"] - row["center"] > row["center"] - row["lower"]


def test_band_matches_hand_computation():
  # week 3 has no reviews; week 5's baseline (3 weeks) is weeks 2-4, i.e. weeks 2 and 4 only
  weeks = {0: (10, 1), 1: (20, 2), 2: (30, 3), 4: (10, 4), 5: (16, 8)}
  w = monitoring.weekly_opinion(_reviews(weeks))
  flags = monitoring.control_flags(w, baseline_weeks=3, z=2.0, min_reviews=5,
                                   min_baseline_reviews=10)
  row = flags.set_index("week").loc[MONDAY + pd.Timedelta(weeks=5)]
  p = (3 + 4) / (30 + 10)
  half = 2.0 * math.sqrt(p * (1 - p) / 16)
  assert row["baseline_reviews"] == 40
  assert row["center"] == pytest.approx(p)
  assert row["lower"] == pytest.approx(max(0.0, p - half))
  assert row["upper"] == pytest.approx(p + half)
  assert row["status"] == "worse" and 8 / 16 > p + half
  # week 1's baseline is week 0 alone (10 reviews, 1 negative)
  row1 = flags.set_index("week").loc[MONDAY + pd.Timedelta(weeks=1)]
  assert row1["center"] == pytest.approx(0.1)
  assert row1["upper"] == pytest.approx(0.1 + 2.0 * math.sqrt(0.09 / 20))
  assert row1["status"] == "in band"
  # week 0 has no baseline at all
  assert flags["status"].iloc[0] == "no baseline" and np.isnan(flags["center"].iloc[0])


def test_zero_negative_baseline_keeps_a_band():
  # 100 baseline reviews, none negative: the band keeps a width, and one complaint in 20 (above
  # that band) is still not a flag: a flag needs min_negative complaints
  weeks = {0: (50, 0), 1: (50, 0), 2: (20, 1), 3: (20, 6)}
  flags = monitoring.control_flags(monitoring.weekly_opinion(_reviews(weeks)), baseline_weeks=2)
  p = 0.5 / 100
  assert flags["center"].iloc[2] == 0.0
  assert flags["upper"].iloc[2] == pytest.approx(3.0 * math.sqrt(p * (1 - p) / 20))
  assert flags["status"].tolist()[2:] == ["in band", "worse"]


def test_groups_are_independent():
  rng = np.random.default_rng(3)
  a = _reviews(_series(rng, 26, 0.1, spike={15: 0.6}), "a")
  b = _reviews(_series(rng, 26, 0.3), "b", start=MONDAY + pd.Timedelta(weeks=4))
  both = monitoring.control_flags(monitoring.weekly_opinion(pd.concat([a, b]), by="category"))
  for name, df in (("a", a), ("b", b)):
    alone = monitoring.control_flags(
        monitoring.weekly_opinion(df.drop(columns="category")))
    part = both[both["category"] == name].drop(columns="category").reset_index(drop=True)
    pd.testing.assert_frame_equal(part, alone, check_like=False)
  assert MONDAY + pd.Timedelta(weeks=15) in both.loc[both["flagged"] & (both["category"] == "a"),
                                                     "week"].tolist()


def test_small_weeks_are_not_flagged():
  weeks = {w: (40, 4) for w in range(10)}
  weeks[10] = (4, 4)  # every review negative, but only four of them
  weeks[11] = (40, 30)
  flags = monitoring.control_flags(monitoring.weekly_opinion(_reviews(weeks)), min_reviews=5)
  assert flags["status"].iloc[10] == "too few reviews" and not flags["flagged"].iloc[10]
  assert flags["status"].iloc[11] == "worse"


def test_improved_week_is_flagged_below():
  weeks = {w: (60, 30) for w in range(8)}
  weeks[8] = (60, 5)
  flags = monitoring.control_flags(monitoring.weekly_opinion(_reviews(weeks)))
  assert flags["status"].iloc[8] == "improved" and flags["flagged"].iloc[8]


def test_control_flags_validation():
  w = monitoring.weekly_opinion(_reviews({0: (5, 1)}))
  with pytest.raises(ValueError, match="baseline_weeks must be >= 1, got 0"):
    monitoring.control_flags(w, baseline_weeks=0)
  with pytest.raises(ValueError, match="z must be > 0, got -1"):
    monitoring.control_flags(w, z=-1)
  with pytest.raises(ValueError, match=r"column\(s\) \['n_negative'\] missing"):
    monitoring.control_flags(w.drop(columns="n_negative"))
  with pytest.raises(ValueError, match="limits must be 'normal' or 'exact', got 'poisson'"):
    monitoring.control_flags(w, limits="poisson")
  with pytest.raises(ValueError, match="two rows for one week"):
    monitoring.control_flags(pd.concat([w, w]))


# ----------------------------------------------------------------------------------------------
# explanations and plot


def test_flag_explanations_lists_the_most_negative_reviews_of_each_flagged_week():
  weeks = {w: (40, 4) for w in range(10)}
  weeks[10] = (40, 25)
  weeks[11] = (40, 4)
  reviews = pd.concat([_reviews(weeks, "a"), _reviews({w: (40, 4) for w in range(12)}, "b")])
  flags = monitoring.control_flags(monitoring.weekly_opinion(reviews, by="category"))
  texts = pd.Series({rid: f"text of {rid}" for rid in reviews["review_id"]})
  texts["a-10-0"] = "x" * 400
  expl = monitoring.flag_explanations(reviews, flags, texts, n=3)
  assert expl["review_id"].tolist() == ["a-10-0", "a-10-1", "a-10-2"]
  assert expl["rank"].tolist() == [1, 2, 3]
  assert (expl["category"] == "a").all() and (expl["status"] == "worse").all()
  assert (expl["week"] == MONDAY + pd.Timedelta(weeks=10)).all()
  assert expl["sentiment"].is_monotonic_increasing
  assert expl["text"].iloc[0] == "x" * 280 + "…" and expl["text"].iloc[1] == "text of a-10-1"
  # a dict works as well, and an unknown id gives ""
  expl2 = monitoring.flag_explanations(reviews, flags, {}, n=1)
  assert expl2["text"].tolist() == [""]
  with pytest.raises(ValueError, match="n must be >= 1"):
    monitoring.flag_explanations(reviews, flags, texts, n=0)


def test_flag_explanations_for_an_improved_week_show_the_most_positive():
  weeks = {w: (60, 30) for w in range(8)}
  weeks[8] = (60, 5)
  reviews = _reviews(weeks)
  flags = monitoring.control_flags(monitoring.weekly_opinion(reviews))
  expl = monitoring.flag_explanations(reviews, flags, {}, n=2)
  assert expl["status"].tolist() == ["improved"] * 2
  assert expl["review_id"].tolist() == ["x-8-5", "x-8-6"]  # sentiment 0.795, 0.794


def test_no_flags_gives_empty_explanations():
  reviews = _reviews({w: (10, 1) for w in range(3)})
  flags = monitoring.control_flags(monitoring.weekly_opinion(reviews))
  expl = monitoring.flag_explanations(reviews, flags, {})
  assert len(expl) == 0 and "review_id" in expl.columns


def test_plot_opinion_trend():
  rng = np.random.default_rng(1)
  reviews = pd.concat([_reviews(_series(rng, 20, 0.1, spike={12: 0.6}), "a"),
                       _reviews(_series(rng, 20, 0.2), "b")])
  weekly = monitoring.weekly_opinion(reviews, by="category")
  flags = monitoring.control_flags(weekly)
  fig = monitoring.plot_opinion_trend(weekly, flags, title="Opinion by category")
  assert isinstance(fig, Figure) and len(fig.axes) == 2
  assert fig.axes[0].get_title(loc="left") == "category a"  # the flagged group comes first
  labels = fig.legends[0].get_texts()
  assert "worse (flag)" in [t.get_text() for t in labels]
  one = monitoring.plot_opinion_trend(weekly[weekly["category"] == "b"].drop(columns="category"),
                                      title="b")
  assert len(one.axes) == 1
  empty = monitoring.plot_opinion_trend(monitoring.weekly_opinion(reviews.iloc[:0]), title="none")
  assert isinstance(empty, Figure)


def test_a_flagged_week_in_the_report_links_to_its_reviews(tmp_path):
  from types import SimpleNamespace

  from cvlib.stages import segment
  from cvlib.report.workspace import Workspace
  weeks = {w: (40, 4) for w in range(10)}
  weeks[10] = (40, 25)
  reviews = _reviews(weeks).assign(product_id="p1")
  reviews.loc[reviews["review_id"] == "x-10-0", "sentiment"] = -0.95
  texts = pd.DataFrame({"review_id": reviews["review_id"],
                        "text": [f"<b>review</b> {r}" for r in reviews["review_id"]]})
  tables = SimpleNamespace(products=pd.DataFrame({"product_id": ["p1"], "category": ["toys"]}),
                           reviews=texts)
  mon = segment.make_opinion_monitoring(reviews, tables)
  worse = mon.flags[mon.flags["status"] == "worse"]
  assert len(worse) == 1
  # the inline explanations are what flag_explanations gives with its default n
  direct = monitoring.flag_explanations(reviews.assign(category="toys"), mon.flags,
                                        texts.set_index("review_id")["text"])
  pd.testing.assert_frame_equal(mon.explanations, direct)
  ws = Workspace(tmp_path / "run", "segment")
  segment.report_explanations(ws, pd.DataFrame(), mon, segment.plot_monitoring(mon))
  table = next(p for p in ws._parts if p["kind"] == "table" and "Flagged" in p["caption"])
  cell = table["rows"][0][0]
  assert cell["text"] == "toys" and cell["href"].startswith("details/segment-flag-toys-")
  page = next(p for p in ws._parts if p["kind"] == "page")
  assert page["total_rows"] == 40  # all the week's reviews, not only the three shown inline
  assert page["rows"][0][-1] == "<b>review</b> x-10-0"  # most negative first, escaped on render

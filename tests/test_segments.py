"""Tests for cvlib.insight.segments."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cvlib.insight import segments as sg


def _customers(n: int = 200, seed: int = 0) -> pd.DataFrame:
  rng = np.random.default_rng(seed)
  return pd.DataFrame({
      "customer_id": pd.array([f"c{i:04d}" for i in range(n)], dtype="string"),
      "recency_days": rng.integers(0, 365, n).astype(float),
      "frequency": rng.geometric(0.55, n).astype(float),
      "monetary": rng.gamma(2.0, 50.0, n),
      "predicted_value": np.where(rng.random(n) < 0.4, 0.0, rng.gamma(2.0, 60.0, n)),
      "churn_probability": rng.random(n),
      "country": "UK",
  })


# ----------------------------------------------------------------------------- rfm_scores


def test_rfm_scores_match_qcut_on_distinct_values():
  rng = np.random.default_rng(1)
  r, f, m = rng.permutation(1000) + 0.5, rng.permutation(1000) * 2.0, rng.normal(size=1000)
  scores, warnings = sg.rfm_scores(r, f, m)
  labels = [1, 2, 3, 4, 5]
  np.testing.assert_array_equal(scores["r_score"], pd.qcut(r, 5, labels=labels[::-1]).astype(int))
  np.testing.assert_array_equal(scores["f_score"], pd.qcut(f, 5, labels=labels).astype(int))
  np.testing.assert_array_equal(scores["m_score"], pd.qcut(m, 5, labels=labels).astype(int))
  assert warnings == []
  assert (scores.apply(pd.Series.value_counts) == 200).all().all()


def test_rfm_scores_small_hand_case():
  scores, _ = sg.rfm_scores([10, 1, 5, 30, 2], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
  assert scores["r_score"].tolist() == [2, 5, 3, 1, 4]
  assert scores["f_score"].tolist() == [1, 2, 3, 4, 5]
  assert scores["m_score"].tolist() == [5, 4, 3, 2, 1]


def test_rfm_scores_ties_share_the_lower_score_and_warn():
  # 60% bought once: the quintiles of frequency collapse.
  freq = np.array([1] * 60 + [2] * 20 + [3] * 10 + list(range(4, 14)), dtype=float)
  recency = np.arange(100, dtype=float)
  scores, warnings = sg.rfm_scores(recency, freq, recency)
  f = scores["f_score"].to_numpy()
  assert set(f[:60]) == {1}  # one-time buyers are all F=1
  assert set(f[60:80]) == {4}  # share strictly worse = 0.6
  assert set(f[80:]) == {5}
  assert len(warnings) == 1 and warnings[0].startswith("f_score") and "60%" in warnings[0]


def test_rfm_scores_do_not_depend_on_row_order():
  df = _customers(300)
  df["frequency"] = np.minimum(df["frequency"], 3)  # heavy ties
  scores, _ = sg.rfm_scores(df["recency_days"], df["frequency"], df["monetary"])
  perm = np.random.default_rng(2).permutation(len(df))
  shuffled = df.iloc[perm]
  scores2, _ = sg.rfm_scores(shuffled["recency_days"], shuffled["frequency"], shuffled["monetary"])
  pd.testing.assert_frame_equal(scores, scores2.loc[scores.index])
  assert scores2.index.equals(shuffled.index)


def test_rfm_scores_validation():
  with pytest.raises(ValueError, match="lengths differ"):
    sg.rfm_scores([1, 2], [1, 2, 3], [1, 2])
  with pytest.raises(ValueError, match="recency_days: must be >= 0"):
    sg.rfm_scores([-1, 2], [1, 2], [1, 2])
  with pytest.raises(ValueError, match="frequency: 1 missing"):
    sg.rfm_scores([1, 2], [1, np.nan], [1, 2])
  with pytest.raises(ValueError, match="no customers"):
    sg.rfm_scores([], [], [])


# ----------------------------------------------------------------------------- rfm_segment


def test_rfm_segment_grid_follows_rule_table():
  r, f = np.meshgrid(np.arange(1, 6), np.arange(1, 6), indexing="ij")
  names = sg.rfm_segment(r.ravel(), f.ravel()).to_numpy().reshape(5, 5)
  expected = {  # written out independently of the rule table
      5: ["New", "Potential loyalist", "Potential loyalist", "Champions", "Champions"],
      4: ["Promising", "Potential loyalist", "Potential loyalist", "Loyal", "Loyal"],
      3: ["About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"],
      2: ["Hibernating", "Hibernating", "At risk", "At risk", "Can't lose"],
      1: ["Lost", "Hibernating", "At risk", "At risk", "Can't lose"],
  }
  for rr, row in expected.items():
    assert names[rr - 1].tolist() == row
  assert set(names.ravel()) == set(sg.SEGMENTS)
  assert len(sg.SEGMENTS) == 11


def test_rfm_segment_keeps_index_and_validates():
  out = sg.rfm_segment(pd.Series([5, 1], index=["a", "b"]), pd.Series([5, 1], index=["a", "b"]))
  assert out.to_dict() == {"a": "Champions", "b": "Lost"}
  with pytest.raises(ValueError, match="r_score: must be integers 1-5, got 6"):
    sg.rfm_segment([6], [1])
  with pytest.raises(ValueError, match="lengths differ"):
    sg.rfm_segment([1, 2], [1])


# ----------------------------------------------------------------------------- tiers and bands


def test_value_tier_shares_and_ties():
  tiers = sg.value_tier(np.arange(100.0))
  assert tiers.value_counts().to_dict() == {"Low": 50, "Medium": 30, "High": 20}
  assert (tiers.iloc[80:] == "High").all() and (tiers.iloc[:50] == "Low").all()
  # Many zeros must never reach the upper tiers; High never exceeds its share.
  values = np.r_[np.zeros(70), np.arange(1.0, 31.0)]
  tiers = sg.value_tier(values)
  assert (tiers.iloc[:70] == "Low").all()
  assert (tiers == "High").sum() == 20
  custom = sg.value_tier(np.arange(10.0), shares=(0.1, 0.5))
  assert custom.value_counts().to_dict() == {"Low": 4, "Medium": 5, "High": 1}
  with pytest.raises(ValueError, match="high \\+ medium <= 1"):
    sg.value_tier([1.0], shares=(0.6, 0.6))


def test_below_the_value_floor_nobody_is_valuable():
  # a shop where almost nobody returns: the top fifth is predicted at cents
  values = np.linspace(0.0, 0.6, 100)
  assert sg.value_tier(values).value_counts()["High"] == 20
  floored = sg.value_tier(values, floor=10.0)
  assert (floored == "Low").all()
  # a floor inside the range demotes only those below it
  mixed = sg.value_tier(np.arange(100.0), floor=75.0)
  assert mixed.value_counts().to_dict() == {"Low": 75, "High": 20, "Medium": 5}
  # the floor: a share of the median customer's mean order value, unpaid customers left out
  assert sg.value_floor([0.0, 0.0, 80.0, 100.0, 120.0], 0.1) == pytest.approx(10.0)
  assert sg.value_floor([50.0], 0.0) == 0.0 and sg.value_floor([0.0], 0.1) == 0.0
  with pytest.raises(ValueError, match="share must be >= 0"):
    sg.value_floor([1.0], -0.1)
  df = pd.DataFrame({"customer_id": list("abcde"), "recency_days": [1.0, 5, 30, 90, 200],
                     "frequency": [1, 1, 1, 1, 1], "monetary": [100.0] * 5,
                     "predicted_value": [0.5, 0.4, 0.3, 0.2, 0.1],
                     "churn_probability": [0.99] * 5})
  out, _ = sg.assign_segments(df, value_floor=sg.value_floor(df["monetary"], 0.1))
  assert (out["value_tier"] == "Low").all() and (out["action"] == "nurture").all()


def test_the_report_says_when_the_value_floor_kept_customers_out():
  from cvlib.stages import segment
  floor = {"share_of_typical_order": 0.1, "value": 10.5865, "top_share_by_rank": 0.5,
           "below_by_rank_valuable": 9798}
  assert segment.value_floor_text(floor) == (
      "9,798 customers among the top 50% by predicted value are predicted less than 10.6 (10% of "
      "a typical order, 106; segment.value_floor): they count as Low value, so no action treats "
      "them as valuable.")
  assert segment.value_floor_text({**floor, "below_by_rank_valuable": 0}) is None
  assert segment.value_floor_text(None) is None


def test_risk_band_thresholds():
  p = [0.0, 0.29, 0.3, 0.59, 0.6, 1.0]
  assert sg.risk_band(p).tolist() == ["Low", "Low", "Medium", "Medium", "High", "High"]
  assert sg.risk_band(p, thresholds=(0.5, 0.9)).tolist() == ["Low"] * 3 + ["Medium"] * 2 + ["High"]
  with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
    sg.risk_band([1.2])
  with pytest.raises(ValueError, match="risk thresholds"):
    sg.risk_band([0.1], thresholds=(0.7, 0.2))


def test_value_risk_matrix_hand_case():
  df = pd.DataFrame({"predicted_value": [10.0, 5.0, 3.0, 2.0, 0.0],
                     "churn_probability": [0.1, 0.9, 0.5, 0.5, 0.95]})
  m = sg.value_risk_matrix(df, value_tiers=(0.2, 0.4))
  assert len(m) == 9 and m["n_customers"].sum() == 5
  np.testing.assert_allclose(m["share_value"].sum(), 1.0)
  cell = m.set_index(["value_tier", "risk_band"])
  assert cell.loc[("High", "Low"), "n_customers"] == 1
  np.testing.assert_allclose(cell.loc[("High", "Low"), "share_value"], 0.5)
  assert cell.loc[("Medium", "High"), "n_customers"] == 1  # value 5
  assert cell.loc[("Medium", "Medium"), "n_customers"] == 1  # value 3
  assert cell.loc[("Low", "Medium"), "n_customers"] == 1
  assert cell.loc[("Low", "High"), "n_customers"] == 1
  np.testing.assert_allclose(cell.loc[("Low", "High"), "share_value"], 0.0)


# ----------------------------------------------------------------------------- actions


@pytest.mark.parametrize("tier,risk,segment,action", [
    ("High", "Low", "Lost", "maintain"),
    ("High", "High", "At risk", "win back"),
    ("Medium", "Low", "Hibernating", "win back"),
    ("High", "Medium", "Champions", "retain"),
    ("Medium", "High", "Loyal", "retain"),
    ("Medium", "Medium", "Loyal", "upsell"),
    ("Low", "Low", "Champions", "upsell"),
    ("Low", "High", "Champions", "nurture"),
    ("Low", "Low", "Lost", "nurture"),
    ("Medium", "Low", "New", "nurture"),
])
def test_next_best_action_rules(tier, risk, segment, action):
  assert sg.next_best_action(tier, risk, segment) == action


def test_next_best_action_vectorised_and_total():
  tiers, risks, segs = zip(*[(t, r, s) for t in sg.TIERS for r in sg.RISKS for s in sg.SEGMENTS])
  actions = sg.next_best_action(pd.Series(tiers), list(risks), np.array(segs))
  assert isinstance(actions, pd.Series) and len(actions) == 99
  assert set(actions) == set(sg.ACTIONS)
  assert set(sg.ACTION_REASONS) == set(sg.ACTIONS)
  with pytest.raises(ValueError, match="rfm_segment: unknown value 'VIP'"):
    sg.next_best_action("High", "Low", "VIP")
  with pytest.raises(ValueError, match="tier: unknown value 'high'"):
    sg.next_best_action(["high"], ["Low"], ["Lost"])


# ----------------------------------------------------------------------------- frames


def test_assign_segments_adds_columns_and_passes_extras():
  df = _customers()
  out, warnings = sg.assign_segments(df)
  for col in ("r_score", "f_score", "m_score", "rfm_segment", "value_tier", "risk_band", "action",
              "action_reason", "country"):
    assert col in out
  assert len(out) == len(df) and out.index.equals(df.index)
  assert any(w.startswith("f_score") for w in warnings)  # geometric frequency has heavy ties
  with pytest.raises(ValueError, match="column\\(s\\) 'churn_probability' missing"):
    sg.assign_segments(df.drop(columns="churn_probability"))
  with pytest.raises(ValueError, match="appears more than once"):
    sg.assign_segments(pd.concat([df, df.iloc[:1]]))


def test_segment_profiles_hand_case():
  df = pd.DataFrame({
      "customer_id": ["a", "b", "c", "d"],
      "recency_days": [1.0, 2.0, 300.0, 400.0],
      "frequency": [10.0, 8.0, 1.0, 1.0],
      "monetary": [500.0, 400.0, 20.0, 10.0],
      "predicted_value": [300.0, 100.0, 0.0, 0.0],
      "churn_probability": [0.1, 0.2, 0.9, 0.8],
  })
  seg, _ = sg.assign_segments(df)
  seg["group"] = ["top", "top", "rest", "rest"]
  sentiment = pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
                            "sentiment": [1.0, 0.0, 1.0, -1.0]})
  aspects = pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
                          "delivery": [True, True, False, True],
                          "price": [False, True, False, False],
                          "quality": [False, False, False, False]})
  categories = pd.DataFrame({"customer_id": ["a", "b", "b", "c", "d"],
                             "category": ["toys", "books", "books", "garden", "garden"]})
  prof = sg.segment_profiles(seg, sentiment=sentiment, aspects=aspects, categories=categories,
                             by="group")
  assert prof.index.tolist() == ["top", "rest"]
  np.testing.assert_allclose(prof["share_customers"], [0.5, 0.5])
  np.testing.assert_allclose(prof["share_value"], [1.0, 0.0])
  np.testing.assert_allclose(prof.loc["top", "mean_predicted_value"], 200.0)
  np.testing.assert_allclose(prof.loc["top", "mean_sentiment"], 0.75)  # mean of a=0.5, b=1
  np.testing.assert_allclose(prof.loc["rest", "mean_sentiment"], -1.0)  # d has no reviews
  assert prof.loc["top", "top_aspects"] == "delivery (67%), price (33%)"
  assert prof.loc["top", "top_category"] == "books"
  assert prof.loc["rest", "top_category"] == "garden"
  assert set(prof["suggested_action"]) <= set(sg.ACTIONS)


def test_segment_profiles_default_by_rfm_segment():
  prof = sg.segment_profiles(_customers())
  assert set(prof.index) <= set(sg.SEGMENTS)
  np.testing.assert_allclose(prof["share_customers"].sum(), 1.0)
  np.testing.assert_allclose(prof["share_value"].sum(), 1.0)
  assert prof["share_value"].is_monotonic_decreasing
  assert prof["mean_sentiment"].isna().all()


# ----------------------------------------------------------------------------- plots


def test_plots_return_figures():
  df, _ = sg.assign_segments(_customers())
  fig = sg.plot_value_risk_matrix(sg.value_risk_matrix(df))
  assert isinstance(fig, Figure)
  texts = [t.get_text() for t in fig.axes[0].texts]
  assert len(texts) == 9 and all("customers" in t and "of value" in t for t in texts)
  fig = sg.plot_segment_sizes(sg.segment_profiles(df))
  assert isinstance(fig, Figure) and len(fig.axes[0].patches) == 2 * df["rfm_segment"].nunique()

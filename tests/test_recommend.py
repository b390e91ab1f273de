"""Tests for cvlib.insight.recommend."""

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from cvlib.insight import recommend as rc


def _two_clusters(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Products A0-A9 and B0-B9; customers buy within one cluster; cluster B is twice as popular."""
  rng = np.random.default_rng(seed)
  calib, hold = [], []
  for i in range(90):
    cluster = "A" if i < 30 else "B"
    picks = rng.choice(10, size=6, replace=False)
    cid = f"c{i:02d}"
    calib += [(cid, f"{cluster}{p}") for p in picks[:4]]
    hold += [(cid, f"{cluster}{p}") for p in picks[4:]]
  cols = ["customer_id", "product_id"]
  return pd.DataFrame(calib, columns=cols), pd.DataFrame(hold, columns=cols)


def _random_lines(n_customers=12, n_products=9, n_lines=40, seed=0) -> pd.DataFrame:
  rng = np.random.default_rng(seed)
  return pd.DataFrame({"customer_id": [f"c{i}" for i in rng.integers(0, n_customers, n_lines)],
                       "product_id": [f"p{i}" for i in rng.integers(0, n_products, n_lines)]})


def test_beats_popularity_on_two_clusters():
  calib, hold = _two_clusters()
  model = rc.fit_recommender(calib)
  ours = rc.evaluate_recommendations(rc.recommend(model, k=3), hold, k=3, calibration=calib)
  base = rc.evaluate_recommendations(rc.popularity_recommend(model, k=3), hold, k=3,
                                     calibration=calib)
  assert ours["n_customers"] == base["n_customers"] == 90
  # Popularity only serves cluster B products, so cluster A customers (1/3) can never be hit.
  assert base["hit_rate_at_3"] <= 2 / 3 + 1e-9
  assert ours["hit_rate_at_3"] >= base["hit_rate_at_3"] + 0.2
  assert ours["recall_at_3"] >= base["recall_at_3"] + 0.1
  recs = rc.recommend(model, ["c00", "c50"], k=5)
  assert recs.loc[recs["customer_id"] == "c00", "product_id"].str.startswith("A").all()
  assert recs.loc[recs["customer_id"] == "c50", "product_id"].str.startswith("B").all()


def test_scores_match_brute_force_cooccurrence():
  lines = _random_lines()
  model = rc.fit_recommender(lines)
  baskets = lines.groupby("customer_id")["product_id"].agg(set).to_dict()
  products = sorted(set(lines["product_id"]))
  buyers = {p: {c for c, b in baskets.items() if p in b} for p in products}
  sim = {(a, b): len(buyers[a] & buyers[b]) / np.sqrt(len(buyers[a]) * len(buyers[b]))
         for a, b in itertools.product(products, products) if a != b}
  recs = rc.recommend(model, k=len(products))
  for cid, basket in baskets.items():
    expected = {p: sum(sim[(q, p)] for q in basket) for p in products if p not in basket}
    got = recs[recs["customer_id"] == cid].set_index("product_id")["score"]
    assert set(got.index) == set(expected)
    np.testing.assert_allclose(got.to_numpy(), [expected[p] for p in got.index], rtol=1e-5,
                               atol=1e-6)
    assert got.is_monotonic_decreasing


def test_sparse_similarity_path_matches_dense(monkeypatch):
  lines = _random_lines(n_customers=30, n_products=15, n_lines=120, seed=3)
  dense = rc.recommend(rc.fit_recommender(lines), k=5)
  monkeypatch.setattr(rc, "DENSE_PRODUCT_LIMIT", 0)
  model = rc.fit_recommender(lines)
  assert not isinstance(model.co_similarity, np.ndarray)
  sparse = rc.recommend(model, k=5)
  pd.testing.assert_frame_equal(dense, sparse, rtol=1e-5)


def test_excluded_items_never_recommended():
  lines = _random_lines(n_customers=20, n_products=12, n_lines=80, seed=1)
  model = rc.fit_recommender(lines)
  bought = set(map(tuple, lines[["customer_id", "product_id"]].to_numpy()))
  for recs in (rc.recommend(model, k=12), rc.popularity_recommend(model, k=12)):
    pairs = set(map(tuple, recs[["customer_id", "product_id"]].to_numpy()))
    assert not pairs & bought
    # every product not bought is still offered, so the exclusion removed exactly the bought ones
    n_bought = lines.drop_duplicates(["customer_id", "product_id"]).groupby("customer_id").size()
    sizes = recs.groupby("customer_id").size()
    assert (sizes + n_bought.reindex(sizes.index) == 12).all()
    assert not recs.duplicated(["customer_id", "product_id"]).any()
  recs = rc.recommend(model, k=12, exclude_purchased=False)
  assert (recs.groupby("customer_id").size() == 12).all()


def test_cold_customers_get_popularity_and_fill_in():
  lines = pd.DataFrame({"customer_id": ["a", "a", "b", "b", "c", "d", "e"],
                        "product_id": ["p1", "p2", "p1", "p2", "p1", "p3", "p4"]})
  model = rc.fit_recommender(lines)
  cold = rc.recommend(model, ["zz"], k=3)
  assert cold["product_id"].tolist() == ["p1", "p2", "p3"]  # by distinct buyers, then id
  assert (cold["score"] == 0).all()
  pd.testing.assert_frame_equal(cold[["customer_id", "rank", "product_id"]],
                                rc.popularity_recommend(model, ["zz"], k=3)[
                                    ["customer_id", "rank", "product_id"]])
  # d bought p3 alone (no co-purchases): the list is filled with popular products.
  assert rc.recommend(model, ["d"], k=2)["product_id"].tolist() == ["p1", "p2"]
  # c bought p1: p2 is co-bought with it (positive score), the rest follows by popularity.
  recs = rc.recommend(model, ["c"], k=3)
  assert recs["product_id"].tolist() == ["p2", "p3", "p4"]
  assert recs["score"].iloc[0] > 0 and (recs["score"].iloc[1:] == 0).all()
  assert recs["rank"].tolist() == [1, 2, 3]


def test_embeddings_blend():
  # Co-purchases are uninformative (everyone bought x); embeddings put p_a* and p_b* in two groups.
  lines = pd.DataFrame({"customer_id": ["u", "u", "v", "v", "w", "w", "z", "z"],
                        "product_id": ["a0", "x", "a1", "x", "b0", "x", "b1", "x"]})
  emb = {"a0": [1.0, 0.1], "a1": [1.0, -0.1], "b0": [0.1, 1.0], "b1": [-0.1, 1.0], "x": [1, 1],
         "unused": [5.0, 5.0]}
  content = rc.fit_recommender(lines, product_embeddings=emb, alpha=0.0)
  assert rc.recommend(content, ["u"], k=1)["product_id"].tolist() == ["a1"]
  assert rc.recommend(content, ["w"], k=1)["product_id"].tolist() == ["b1"]
  emb_df = pd.DataFrame(emb).T.rename_axis("product_id").reset_index()
  from_df = rc.fit_recommender(lines, product_embeddings=emb_df, alpha=0.0)
  np.testing.assert_allclose(from_df.embeddings, content.embeddings)
  co_only = rc.fit_recommender(lines, product_embeddings=emb, alpha=1.0)
  plain = rc.fit_recommender(lines)
  pd.testing.assert_frame_equal(rc.recommend(co_only), rc.recommend(plain))


def test_half_life_prefers_recent_purchases():
  t_old, t_new = pd.Timestamp("2020-01-01"), pd.Timestamp("2021-01-01")
  rows = [("me", "old", t_old), ("me", "new", t_new)]
  for i in range(3):  # "old" is co-bought with q_old, "new" with q_new, equally often
    rows += [(f"o{i}", "old", t_old), (f"o{i}", "q_old", t_old),
             (f"n{i}", "new", t_new), (f"n{i}", "q_new", t_new)]
  lines = pd.DataFrame(rows, columns=["customer_id", "product_id", "timestamp"])
  flat = rc.recommend(rc.fit_recommender(lines), ["me"], k=2)
  np.testing.assert_allclose(flat["score"].iloc[0], flat["score"].iloc[1])
  decayed = rc.recommend(rc.fit_recommender(lines, half_life_days=90), ["me"], k=2)
  assert decayed["product_id"].tolist() == ["q_new", "q_old"]
  assert decayed["score"].iloc[0] > 10 * decayed["score"].iloc[1]


def test_deterministic():
  lines = _random_lines(n_customers=40, n_products=20, n_lines=150, seed=4)
  a = rc.recommend(rc.fit_recommender(lines), k=7)
  b = rc.recommend(rc.fit_recommender(lines.sample(frac=1.0, random_state=0)), k=7)
  pd.testing.assert_frame_equal(a, b)


def test_evaluate_hand_case():
  recs = pd.DataFrame({"customer_id": ["c1", "c1", "c1", "c2", "c2"],
                       "rank": [1, 2, 3, 1, 2],
                       "product_id": ["p1", "p2", "p3", "p4", "p5"]})
  holdout = pd.DataFrame({"customer_id": ["c1", "c1", "c1", "c2", "c3"],
                          "product_id": ["p2", "p9", "p2", "p7", "p1"]})
  m = rc.evaluate_recommendations(recs, holdout, k=2)
  assert m == {"hit_rate_at_2": 0.5, "recall_at_2": 0.25, "n_customers": 2}
  calib = pd.DataFrame({"customer_id": ["c1", "c2", "c3", "c4"]})
  m = rc.evaluate_recommendations(recs, holdout, k=2, calibration=calib)
  assert m["n_customers"] == 3  # c3 had no recommendations: a miss
  np.testing.assert_allclose([m["hit_rate_at_2"], m["recall_at_2"]], [1 / 3, 1 / 6])
  m = rc.evaluate_recommendations(recs, holdout, k=1)
  assert m["hit_rate_at_1"] == 0.0 and m["recall_at_1"] == 0.0
  m = rc.evaluate_recommendations(recs, holdout)
  assert set(m) == {"hit_rate_at_10", "recall_at_10", "n_customers"}
  assert m["hit_rate_at_10"] == 0.5 and m["recall_at_10"] == 0.25
  empty = rc.evaluate_recommendations(recs, holdout.iloc[4:], k=2)
  assert empty["n_customers"] == 0 and np.isnan(empty["hit_rate_at_2"])


def test_validation():
  lines = _random_lines()
  with pytest.raises(ValueError, match="column\\(s\\) 'product_id' missing"):
    rc.fit_recommender(lines.drop(columns="product_id"))
  with pytest.raises(ValueError, match="alpha must lie in \\[0, 1\\], got 1.5"):
    rc.fit_recommender(lines, alpha=1.5)
  with pytest.raises(ValueError, match="missing customer_id"):
    rc.fit_recommender(lines.assign(customer_id=[None] + lines["customer_id"].tolist()[1:]))
  with pytest.raises(ValueError, match="none of the purchased product ids has a vector"):
    rc.fit_recommender(lines, product_embeddings={"zz": [1.0, 0.0]})
  with pytest.raises(ValueError, match="different lengths"):
    rc.fit_recommender(lines, product_embeddings={"p1": [1.0, 0.0], "p2": [1.0]})
  with pytest.raises(ValueError, match="column\\(s\\) 'timestamp' missing"):
    rc.fit_recommender(lines, half_life_days=30)
  model = rc.fit_recommender(lines)
  with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
    rc.recommend(model, k=0)
  with pytest.raises(ValueError, match="column\\(s\\) 'rank' missing"):
    rc.evaluate_recommendations(lines, lines)


def test_keep_top_neighbours_dense_and_sparse_agree():
  rng = np.random.default_rng(0)
  sim = rng.random((30, 30)).astype(np.float32)
  np.fill_diagonal(sim, 0.0)
  dense = rc.keep_top_neighbours(sim, 5)
  assert ((dense > 0).sum(axis=1) == 5).all()
  for i in range(30):  # the kept ones are the row's five largest
    np.testing.assert_array_equal(np.sort(np.flatnonzero(dense[i])),
                                  np.sort(np.argsort(-sim[i])[:5]))
  sparse = rc.keep_top_neighbours(scipy.sparse.csr_matrix(sim), 5)
  np.testing.assert_array_equal(sparse.toarray(), dense)
  with pytest.raises(ValueError, match="neighbours must be a positive integer"):
    rc.keep_top_neighbours(sim, 0)


def test_neighbours_cut_weak_links_from_recommendations():
  # product a is bought with b by many customers and with c by one: with one neighbour, only b
  lines = [(f"u{i}", p) for i in range(8) for p in ("a", "b")] + [("u9", "a"), ("u9", "c")]
  df = pd.DataFrame(lines, columns=["customer_id", "product_id"])
  full = rc.fit_recommender(df)
  cut = rc.fit_recommender(df, neighbours=1)
  sim_full = full.co_similarity[full.product_ids.get_loc("a")]
  sim_cut = cut.co_similarity[cut.product_ids.get_loc("a")]
  assert sim_full[full.product_ids.get_loc("c")] > 0 and sim_cut[cut.product_ids.get_loc("c")] == 0
  assert sim_cut[cut.product_ids.get_loc("b")] == sim_full[full.product_ids.get_loc("b")]


def _dated_items(rng: np.random.Generator) -> pd.DataFrame:
  """200 customers, 6 dated purchases each within their group's 5 products, over 300 days."""
  rows = []
  for c in range(200):
    for d in rng.choice(300, 6, replace=False):
      rows.append((f"c{c}", f"p{(c % 10) * 5 + rng.integers(5)}",
                   pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(d))))
  return pd.DataFrame(rows, columns=["customer_id", "product_id", "timestamp"])


def test_recommender_is_chosen_inside_the_calibration_period(monkeypatch):
  from cvlib.insight import recommend
  items = _dated_items(np.random.default_rng(1))
  candidates = ({"method": "ease", "l2": 10.0}, {"method": "cooccurrence", "neighbours": 2},
                {"method": "cooccurrence", "neighbours": None})
  best, scores = recommend.choose_recommender(items, candidates=candidates)
  assert best in candidates
  assert set(scores) == {"EASE (l2 10)", "co-purchase, 2 neighbours",
                         "co-purchase, all neighbours"}
  assert all(0 <= v <= 1 for v in scores.values())
  # without timestamps: the first candidate, nothing validated
  assert recommend.choose_recommender(items.drop(columns="timestamp"),
                                     candidates=candidates) == (candidates[0], {})
  # too many products for EASE: only the co-purchase candidates are tried
  monkeypatch.setattr(rc, "DENSE_PRODUCT_LIMIT", 10)
  best, scores = recommend.choose_recommender(items, candidates=candidates)
  assert best["method"] == "cooccurrence" and not any(k.startswith("EASE") for k in scores)


def test_ease_weights_are_the_constrained_ridge_regression():
  # EASE's closed form equals regressing each product's column on all the other columns.
  lines = _random_lines(n_customers=30, n_products=7, n_lines=90, seed=3)
  model = rc.fit_recommender(lines, method="ease", l2=5.0)
  x = model.bought.toarray().astype(np.float64)
  for j in range(x.shape[1]):
    others = np.delete(np.arange(x.shape[1]), j)
    a = x[:, others]
    b = np.linalg.solve(a.T @ a + 5.0 * np.eye(len(others)), a.T @ x[:, j])
    np.testing.assert_allclose(model.co_similarity[others, j], b, atol=1e-5)
    assert model.co_similarity[j, j] == 0.0
  assert model.method == "ease"


def test_ease_beats_popularity_on_two_clusters():
  calib, hold = _two_clusters()
  model = rc.fit_recommender(calib, method="ease", l2=10.0)
  ours = rc.evaluate_recommendations(rc.recommend(model, k=3), hold, k=3, calibration=calib)
  base = rc.evaluate_recommendations(rc.popularity_recommend(model, k=3), hold, k=3,
                                     calibration=calib)
  assert ours["hit_rate_at_3"] >= base["hit_rate_at_3"] + 0.2
  recs = rc.recommend(model, ["c00", "c50"], k=5)
  assert recs.loc[recs["customer_id"] == "c00", "product_id"].str.startswith("A").all()
  assert recs.loc[recs["customer_id"] == "c50", "product_id"].str.startswith("B").all()


def test_ease_settings_are_checked(monkeypatch):
  lines = _random_lines()
  with pytest.raises(ValueError, match="method must be one of"):
    rc.fit_recommender(lines, method="svd")
  with pytest.raises(ValueError, match="neighbours applies to method='cooccurrence'"):
    rc.fit_recommender(lines, method="ease", neighbours=5)
  with pytest.raises(ValueError, match="l2 must be > 0"):
    rc.fit_recommender(lines, method="ease", l2=0.0)
  monkeypatch.setattr(rc, "DENSE_PRODUCT_LIMIT", 3)
  with pytest.raises(ValueError, match="exceed DENSE_PRODUCT_LIMIT"):
    rc.fit_recommender(lines, method="ease")


def test_product_text_blend_is_tried_on_the_validation_window():
  from cvlib.insight import recommend
  rng = np.random.default_rng(1)
  items = _dated_items(rng)
  products = sorted(items["product_id"].unique())
  emb = pd.DataFrame(rng.normal(size=(len(products), 4)), index=products)
  candidates = ({"method": "cooccurrence", "neighbours": None},)
  best, scores = recommend.choose_recommender(items, candidates=candidates, embeddings=emb)
  assert set(scores) == {"co-purchase, all neighbours",
                         "co-purchase, all neighbours + product text 10%",
                         "co-purchase, all neighbours + product text 30%"}
  assert recommend.recommender_label(best) in scores
  assert scores[recommend.recommender_label(best)] == max(scores.values())


def test_product_embeddings_use_the_description_else_the_category():
  from types import SimpleNamespace

  from cvlib.stages import segment
  products = pd.DataFrame({"product_id": ["a", "b", "c", "d"],
                           "category": ["garden", "kitchen", None, None],
                           "description": ["red watering can", None, "blue teapot", "  "]})
  emb = segment.product_embeddings(SimpleNamespace(products=products), language="en")
  assert list(emb.index) == ["a", "b", "c"]  # d has no text
  np.testing.assert_allclose(np.linalg.norm(emb.to_numpy(), axis=1), 1.0, atol=1e-5)
  from cvlib.text import embedding
  expected = embedding.embed(["red watering can", "kitchen"], buckets=(16, 32, 64))
  np.testing.assert_allclose(emb.loc[["a", "b"]].to_numpy(), expected, atol=1e-5)
  # another language without the shop's own encoder: no product vectors
  assert segment.product_embeddings(SimpleNamespace(products=products), language="pt") is None

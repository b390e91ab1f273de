"""Stage 4, segment (notebook 04): forward scores, the value-by-risk matrix, segment profiles,
aspect opinions, review topics, text clusters, opinion monitoring, recommendations and their
report pages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib.config import Params, SegmentConfig
from cvlib.data.adapters import Tables
from cvlib.data.split import Prepared
from cvlib.insight import aspect_model, aspects, monitoring, recommend, segments, topics
from cvlib.insight import aspect_candidates, clusters, since_last
from cvlib.insight.clusters import MIN_CUSTOMERS, CustomerClusters
from cvlib.insight.recommend import choose_recommender, recommender_label
from cvlib.insight.since_last import SinceLast
from cvlib.report import details, plots
from cvlib.report.workspace import MODELS_DIR, Workspace, number, percent, to_jsonable
from cvlib.serve import model_folder
from cvlib.serve import scorer as scoring
from cvlib.serve.scorer import SCORE_COLUMNS
from cvlib.stages.notes import NOT_APPLICABLE, optional, reason_of, skip, take_skipped
from cvlib.value import metrics as vm
from cvlib.value.networks import scoring_model


# The steps notebook 04 calls, in its order.
__all__ = [
    "scoring_model", "forward_scores", "make_value_risk_matrix", "plot_matrix",
    "make_aspect_opinions", "make_aspect_candidates", "example_reviews", "review_details",
    "make_segment_profiles",
    "plot_segments", "make_review_topics", "topics_summary", "plot_topics",
    "make_customer_clusters", "make_opinion_monitoring", "plot_monitoring",
    "make_recommendations", "save_segment", "report_segment", "save_explanations",
    "report_explanations", "save_topics", "report_topics", "save_customer_clusters",
    "report_customer_clusters", "save_snapshot", "make_since_last", "save_since_last",
    "report_since_last"
]


def make_value_risk_matrix(cfg: SegmentConfig, scores: pd.DataFrame) -> pd.DataFrame | None:
  """Customers and predicted value per (value tier, churn risk) cell; None without scores."""
  if not len(scores):
    return None
  return segments.value_risk_matrix(scores, value_tiers=cfg.value_tiers,
                                    risk_thresholds=cfg.risk_thresholds)


def plot_matrix(matrix: pd.DataFrame | None):
  if matrix is None:
    return plots.plot_not_applicable("Value by churn risk", NOT_APPLICABLE["value"])
  return segments.plot_value_risk_matrix(matrix)


def plot_segments(profiles: pd.DataFrame | None):
  if profiles is None:
    return plots.plot_not_applicable("Segments", NOT_APPLICABLE["value"])
  return segments.plot_segment_sizes(profiles)


# Customers grouped by what they write (cvlib.insight.clusters), as an optional step.
make_customer_clusters = optional("customer groups by review text")(clusters.make_customer_clusters)


@optional("segment profiles")
def make_segment_profiles(scores: pd.DataFrame, prep: Prepared, review_scores: pd.DataFrame,
                          tables: Tables, opinions: Opinions | None = None) -> pd.DataFrame | None:
  """Segment profile table with sentiment, top categories and (with ``opinions``, the aspect tags
  of ``review_scores``' reviews) top aspects, keyed by pseudonymous key."""
  if not len(scores):
    return None
  key = dict(zip(prep.features_now["customer_id"].astype(str), prep.features_now["customer_key"]))
  sent = review_scores.dropna(subset=["customer_id"])
  sent = pd.DataFrame({"customer_id": sent["customer_id"].astype(str).map(key),
                       "sentiment": sent["sentiment"]}).dropna(subset=["customer_id"])
  lines = tables.items.merge(tables.transactions[["order_id", "customer_id"]], on="order_id") \
      .merge(tables.products[["product_id", "category"]], on="product_id", how="left")
  cats = pd.DataFrame({"customer_id": lines["customer_id"].astype(str).map(key),
                       "category": lines["category"], "amount": lines["amount"]}) \
      .dropna(subset=["customer_id"])
  aspect_rows = None
  if opinions is not None and len(opinions.tags) == len(review_scores):
    who = review_scores["customer_id"].astype("string").map(key)
    aspect_rows = (opinions.tags.reset_index(drop=True).astype(bool)
                   .assign(customer_id=who.to_numpy()))
    if opinions.tagged is not None:
      aspect_rows = aspect_rows[opinions.tagged]
    aspect_rows = aspect_rows.dropna(subset=["customer_id"])
  seg_input = scores.assign(customer_id=scores["customer_key"])
  return segments.segment_profiles(seg_input, sentiment=sent, categories=cats,
                                   aspects=aspect_rows)


@dataclasses.dataclass
class Recommendations:
  recs: pd.DataFrame
  metrics: dict | None
  top_products: pd.DataFrame | None = None  # most often recommended, with their descriptions


def product_embeddings(tables: Tables, *, language: str, encoder_dir: Path | None = None
                       ) -> pd.DataFrame | None:
  """Each product's description (else category) embedded by the shop's encoder.

  The encoder saved by the fine-tuning stage when there is one, else the installed MiniLM for
  English; None for products without text or another language without a saved encoder.
  Returns a DataFrame indexed by product_id, one column per dimension (unit-norm rows).
  """
  from cvlib.text import checkpoint, embedding, tokens
  products = tables.products
  if products is None or not len(products):
    return None
  def column(name: str) -> pd.Series:  # stripped text, <NA> where missing or blank
    if name not in products:
      return pd.Series(pd.NA, index=products.index, dtype="string")
    return products[name].astype("string").str.strip().replace("", pd.NA)

  text = column("description").fillna(column("category"))  # a description wins
  keep = text.notna()
  if not keep.any():
    return None
  ids, text = products.loc[keep, "product_id"].astype(str), text[keep].str.lower()
  saved = encoder_dir is not None and (Path(encoder_dir) / "cvlib_model.json").is_file()
  if saved:
    model, _ = checkpoint.load_saved_encoder(encoder_dir)
    tokenizer = tokens.load_tokenizer(encoder_dir)
  elif language == "en":
    model = tokenizer = None  # the installed MiniLM
  else:
    return None
  unique = pd.unique(text.to_numpy())
  vectors = embedding.embed(list(unique), model=model, tokenizer=tokenizer, buckets=(16, 32, 64))
  rows = pd.Index(unique).get_indexer(text.to_numpy())
  return (pd.DataFrame(vectors[rows], index=pd.Index(ids, name="product_id"))
          .groupby(level=0).first())


@optional("recommendations",
          fallback=lambda *a, **kw: Recommendations(pd.DataFrame(), None))
def make_recommendations(cfg: SegmentConfig, prep: Prepared, tables: Tables, *,
                         language: str = "en", encoder_dir: Path | None = None) -> Recommendations:
  """Fitted on calibration purchases, evaluated on holdout purchases against popularity.

  The method and its setting are chosen on a validation window inside the calibration period
  (:func:`choose_recommender`).
  """
  if not len(prep.cal_items):
    return Recommendations(pd.DataFrame(), None)
  embeddings = product_embeddings(tables, language=language, encoder_dir=encoder_dir)
  settings, validation = choose_recommender(prep.cal_items, embeddings=embeddings)
  model = recommend.fit_recommender(prep.cal_items[["customer_id", "product_id"]], **settings)
  customers = prep.hold_items["customer_id"].unique()
  customers = customers[pd.Index(customers).isin(prep.cal_items["customer_id"])]
  k = cfg.top_k  # the contract's metrics are at 10 whatever k the shop asks for
  recs = recommend.recommend(model, list(customers), k=max(k, 10))
  pop = recommend.popularity_recommend(model, list(customers), k=10)
  hold = prep.hold_items[["customer_id", "product_id"]]
  ours = recommend.evaluate_recommendations(recs[recs["rank"] <= 10], hold, k=10)
  base = recommend.evaluate_recommendations(pop, hold, k=10)
  recs = recs[recs["rank"] <= k]
  top = (recs.groupby("product_id").size().rename("customers").sort_values(ascending=False)
         .head(10).reset_index()
         .merge(tables.products[["product_id", "category", "description"]], on="product_id",
                how="left"))
  metrics = {"hit_rate_at_10": ours["hit_rate_at_10"], "recall_at_10": ours["recall_at_10"],
             "n_customers": ours["n_customers"],
             "popularity": {"hit_rate_at_10": base["hit_rate_at_10"],
                            "recall_at_10": base["recall_at_10"]},
             "method": recommender_label(settings),
             "settings": {k: v for k, v in settings.items() if k != "product_embeddings"},
             "product_text": embeddings is not None,
             "validation_hit_rate_at_10": validation}
  return Recommendations(recs, metrics, top)


def save_segment(ws: Workspace, scores: pd.DataFrame, matrix: pd.DataFrame | None,
                 profiles: pd.DataFrame | None, opinions: Opinions | None,
                 recs: Recommendations,
                 candidates: aspect_candidates.Candidates | None = None) -> dict:
  ref = scores.attrs.get("scoring_reference")
  if ref is not None:  # what `cvlib score` needs to segment new customers as these
    model_folder.ScoringReference.from_dict(ref).save(
        ws.path(MODELS_DIR, model_folder.REFERENCE_FILE))
  out = scores.copy(deep=False)
  out.attrs = {k: v for k, v in scores.attrs.items() if k != "scoring_reference"}
  out.to_parquet(ws.path("scores.parquet"), index=False)
  notes = {}
  if matrix is not None:
    ws.save_frame("value_risk_matrix", matrix)
    ws.save_frame("segment_profiles", profiles.reset_index())
    segs = {"count": int(scores["rfm_segment"].nunique()), "customers": len(scores),
            "actions": scores["action"].value_counts().to_dict(),
            "value_floor": scores.attrs.get("value_floor")}
  else:
    segs, notes["segments"] = None, NOT_APPLICABLE["value"]
  if opinions is not None:
    ws.save_frame("aspect_table", opinions.table.reset_index())
    if opinions.model is not None:
      opinions.model.save(ws.path(*aspect_model.RUN_SUBDIR.parts))
  if candidates is not None:
    ws.save_frame("aspect_candidates", candidates.table)
    ws.save_json("aspect_candidates", {"yaml": candidates.yaml, "reviews": candidates.n_reviews,
                                       "clauses": candidates.n_clauses,
                                       "terms": candidates.n_terms})
  if opinions is None or opinions.metrics is None:
    notes["aspects"] = NOT_APPLICABLE["aspects"]
  if recs.metrics is None:
    notes["recommendations"] = NOT_APPLICABLE["recommendations"]
  metrics = {"segments": segs, "recommendations": recs.metrics,
             "aspects": opinions.metrics if opinions is not None else None,
             "notes": notes}
  ws.save_metrics(metrics)
  return metrics


def value_floor_text(floor: Mapping[str, Any] | None) -> str | None:
  """What the report says when the value floor (``scores.attrs["value_floor"]``, set by
  :func:`forward_scores`) kept customers out of the High and Medium tiers; None when it kept
  nobody out."""
  if not floor or not floor.get("below_by_rank_valuable"):
    return None
  share = floor["share_of_typical_order"]
  return (f"{floor['below_by_rank_valuable']:,} customers among the top "
          f"{percent(floor['top_share_by_rank'])} by predicted value are predicted less than "
          f"{number(floor['value'])} ({percent(share)} of a typical order, "
          f"{number(floor['value'] / share)}; segment.value_floor): they count as Low value, so no "
          "action treats them as valuable.")


def report_segment(ws: Workspace, scores: pd.DataFrame, matrix: pd.DataFrame | None,
                   profiles: pd.DataFrame | None, opinions: Opinions | None,
                   recs: Recommendations, examples: pd.DataFrame, figures: list,
                   reviews: pd.DataFrame | None = None,
                   candidates: aspect_candidates.Candidates | None = None) -> None:
  ws.add_skipped(take_skipped())
  """The segments, opinions and recommendations sections. Each segment, value-by-risk cell and
  action links to a page of its customers; with ``reviews`` (:func:`review_details`) each aspect
  links to the reviews that mention it."""
  report_opinions(ws, opinions, reviews, candidates)
  if len(examples):
    ws.add_table("opinions", examples, "The most negative and the most positive reviews, as "
                 "customers wrote them.", floatfmt="{:.2f}")
  _report_recommendations(ws, recs)
  if matrix is None:
    ws.add_text("segments", f"Not part of this report: {NOT_APPLICABLE['value']}.")
    return
  for warning in scores.attrs.get("warnings", []):
    ws.add_warning(f"Segments: {warning}")
  total = scores["predicted_value"].sum()
  at_risk = scores.loc[scores["risk_band"] == "High", "predicted_value"].sum()
  ws.add_headline("predicted value, next period", f"{total:,.0f}",
                  f"{len(scores):,} customers")
  ws.add_headline("value at high churn risk", percent(at_risk / total) if total else "n/a",
                  "share of predicted value")
  if (floor_text := value_floor_text(scores.attrs.get("value_floor"))) is not None:
    ws.add_text("segments", floor_text)
  ws.add_figure("segments", figures[0], "Customers by value tier and churn risk: count and "
                "share of predicted value in each cell.")
  cells, cell_links = _matrix_cells(ws, scores, matrix)
  ws.add_table("segments", cells, "The same cells as a table: customers and share of predicted "
               "value; each cell links to its customers.", links=cell_links)
  table = profiles.reset_index()
  key = table.columns[0]  # the segment name
  links = [_customer_page(ws, scores, scores[key] == name, f"segment {name}", f"Segment: {name}")
           if key in scores else None for name in table[key]]
  table = table.rename(columns={key: "segment", **PROFILE_COLUMNS})
  ws.add_table("segments", table, "Segment profiles: size, value, risk, sentiment, what they buy "
               "and talk about, and the suggested action. Each segment links to its customers.",
               links={"segment": links})
  ws.add_figure("segments", figures[1], "Segment sizes and their share of predicted value.")
  actions = (scores.groupby("action").agg(customers=("customer_key", "size"),
                                          predicted_value=("predicted_value", "sum"))
             .sort_values("predicted_value", ascending=False).reset_index())
  ws.add_table("segments", actions.rename(columns={"predicted_value": "predicted value"}),
               "Next-best actions: customers and predicted value per action; each action links "
               "to its customers.",
               links={"action": [_customer_page(ws, scores, scores["action"] == a, f"action {a}",
                                                f"Action: {a}") for a in actions["action"]]})


# The profile table's columns as the stakeholder page names them.
PROFILE_COLUMNS = {"n_customers": "customers", "share_customers": "share of customers",
                   "share_value": "share of predicted value",
                   "mean_predicted_value": "mean predicted value",
                   "mean_churn_probability": "mean churn probability",
                   "mean_sentiment": "mean sentiment", "top_aspects": "top aspects",
                   "top_category": "top category", "suggested_action": "suggested action",
                   "action_reason": "why"}


def _customer_page(ws: Workspace, scores: pd.DataFrame, mask: pd.Series, name: str,
                   title: str) -> str:
  rows = details.customer_list(scores, mask)
  more = (f" (the first {details.MAX_ROWS:,} here; all of them in scores.parquet)."
          if len(rows) > details.MAX_ROWS else ".")
  return ws.add_page(name, title, rows, section="segments", max_rows=details.MAX_ROWS,
                     floatfmt="{:,.2f}",
                     intro=f"{len(rows):,} customers, highest predicted value first{more}")


def _matrix_cells(ws: Workspace, scores: pd.DataFrame, matrix: pd.DataFrame
                  ) -> tuple[pd.DataFrame, dict[str, list[str | None]]]:
  """The value-by-risk matrix as a table (tiers down, risk bands across) with a page per cell."""
  tiers = list(dict.fromkeys(matrix["value_tier"]))
  bands = list(dict.fromkeys(matrix["risk_band"]))
  cells = pd.DataFrame({"value tier": tiers})
  links: dict[str, list[str | None]] = {}
  for band in bands:
    column, hrefs = f"{band} churn risk", []
    texts = []
    for tier in tiers:
      row = matrix[(matrix["value_tier"] == tier) & (matrix["risk_band"] == band)].iloc[0]
      texts.append(f"{int(row['n_customers']):,} · {row['share_value']:.0%} of value")
      mask = (scores["value_tier"] == tier) & (scores["risk_band"] == band)
      hrefs.append(_customer_page(ws, scores, mask, f"cell {tier} value {band} risk",
                                  f"{tier} value, {band} churn risk") if mask.any() else None)
    cells[column], links[column] = texts, hrefs
  return cells, links


def _report_recommendations(ws: Workspace, recs: Recommendations) -> None:
  if not recs.metrics:
    ws.add_text("recommendations", f"Not part of this report: {NOT_APPLICABLE['recommendations']}.")
    return
  m = recs.metrics
  ws.add_text("recommendations", f"For {m['n_customers']:,} customers who bought again in the "
              f"holdout period, the top 10 recommendations contained a product they bought for "
              f"{m['hit_rate_at_10']:.0%} of them (popular products alone: "
              f"{m['popularity']['hit_rate_at_10']:.0%}); recall at 10 "
              f"{m['recall_at_10']:.2f} vs {m['popularity']['recall_at_10']:.2f}. Products they "
              "had bought before are never recommended, so repeat purchases count as misses.")
  if m.get("validation_hit_rate_at_10"):
    tried = ", ".join(f"{k} {v:.0%}" for k, v in m["validation_hit_rate_at_10"].items())
    ws.add_text("recommendations", f"Recommender: {m['method']}, chosen on the last quarter of the "
                f"calibration period (hit rate at 10 there: {tried}); the holdout was not used "
                "to choose it." + (" Product-description similarity was tried in the blend "
                                   "and did not raise the hit rate there."
                                   if m.get("product_text") and "product text" not in m["method"]
                                   else ""))
  if recs.top_products is not None and len(recs.top_products):
    ws.add_table("recommendations", recs.top_products, "The products recommended to the most "
                 "customers.")


def forward_scores(params: Params, prep: Prepared, networks: dict, text_now: pd.DataFrame | None,
                   best: str | None) -> pd.DataFrame:
  """Scores as of the end of the data: value over the next horizon, churn, interval, segment.

  Reads the ``value.interval``, the ``segment`` rules and ``report.raw_ids_in_scores``.

  The network chosen for scoring (``best``: ``clv.scoring_model``, chosen on the selection customers) scores
  every customer's features as of ``prep.as_of``. The segment rules' cut-offs (RFM quintile
  edges, value-tier thresholds) are fitted on these customers and kept in
  ``scores.attrs["scoring_reference"]``; :func:`save_segment` stores them with the models, and
  ``cvlib score`` scores new data through the same :func:`cvlib.serve.scorer.score_frame`.
  """
  if best is None:
    return pd.DataFrame(columns=SCORE_COLUMNS)
  seg_cfg = params.segment
  # where almost nobody returns, the top fifth by rank is predicted at cents: not "valuable"
  floor = segments.value_floor(prep.features_now["avg_order_value"], seg_cfg.value_floor)
  ref = scoring.fit_reference(prep.features_now, text_now,
                              {n: predictor for n, (predictor, _) in networks.items()}, best,
                              as_of=prep.as_of, horizon_days=prep.horizon_days,
                              interval=params.value.interval,
                              value_tiers=seg_cfg.value_tiers,
                              risk_thresholds=seg_cfg.risk_thresholds,
                              value_floor=floor)
  seg = scoring.score_frame(prep.features_now, text_now, networks[best][0], best, ref,
                            as_of=prep.as_of, raw_ids=params.report.raw_ids_in_scores)
  seg.attrs["warnings"] = list(ref.warnings)  # score_frame set completeness_gap
  seg.attrs["scoring_reference"] = ref.to_dict()
  by_rank = segments.value_tier(seg["predicted_value"], shares=seg_cfg.value_tiers)
  seg.attrs["value_floor"] = {"share_of_typical_order": seg_cfg.value_floor, "value": floor,
                              "top_share_by_rank": float(sum(seg_cfg.value_tiers)),
                              "below_by_rank_valuable": int(((by_rank != "Low")
                                                             & (seg["value_tier"] == "Low")).sum())}
  return seg


def save_customer_clusters(ws: Workspace, cc: CustomerClusters | None) -> dict:
  """The clusters' table and members as artifacts; their summary in metrics.json."""
  if cc is None:
    metrics = {"customer_clusters": None,
               "notes": {"customer_clusters": f"fewer than {MIN_CUSTOMERS} customers with review "
                                              "text"}}
  else:
    ws.save_frame("customer_clusters", cc.table)
    ws.save_frame("customer_cluster_members", cc.members)
    metrics = {"customer_clusters": {
        "n_clusters": int(len(cc.table)), "silhouette": float(cc.silhouette.max()),
        "customers": int(len(cc.members)),
        "clusters": [{"label": r["label"], "customers": int(r["customers"]),
                      "share_value": (None if pd.isna(r.get("share_value", np.nan))
                                      else float(r["share_value"]))}
                     for _, r in cc.table.iterrows()]}}
  ws.save_metrics(metrics)
  return metrics


def report_customer_clusters(ws: Workspace, cc: CustomerClusters | None,
                             scores: pd.DataFrame) -> None:
  ws.add_skipped(take_skipped())
  """The segments section's table of text clusters, each linked to its customers."""
  if cc is None:
    ws.add_text("segments", "Customers grouped by what they write: not part of this report "
                f"(fewer than {MIN_CUSTOMERS} customers with review text).")
    return
  hrefs = []
  for _, row in cc.table.iterrows():
    keys = cc.members.loc[cc.members["cluster"] == row["cluster"], "customer_key"]
    rows = details.customer_list(scores, scores["customer_key"].isin(keys))
    hrefs.append(ws.add_page(
        f"cluster {row['label']}", f"Customers who write about: {row['label']}", rows,
        section="segments", max_rows=details.MAX_ROWS, floatfmt="{:,.2f}",
        intro=f"{len(keys):,} customers in this group ({len(rows):,} of them scored), highest "
              "predicted value first."))
  shown = cc.table.drop(columns=["cluster"]).rename(columns={
      "label": "group", "share_customers": "share of customers with text",
      "mean_sentiment": "mean sentiment", "share_value": "share of predicted value",
      "mean_predicted_value": "mean predicted value",
      "mean_churn_probability": "mean churn probability"})
  ws.add_table("segments", shown, f"Customers grouped by what they write: {len(cc.table)} groups "
               f"of the {len(cc.members):,} customers with review text (clusters of each "
               "customer's mean review embedding, number chosen by silhouette, named by their "
               "distinctive words). Each group links to its customers.", floatfmt="{:.2f}",
               links={"group": hrefs})


# --- opinions: aspects, review topics, example reviews, monitoring ----------------------------

@dataclasses.dataclass
class Opinions:
  tags: pd.DataFrame  # bool, one row per scored review (False where not among the tagged)
  polarity: pd.DataFrame  # Int64 +1/-1/0, <NA> where not mentioned or not tagged
  table: pd.DataFrame  # aspect_table over the tagged reviews
  metrics: dict | None
  model: aspect_model.AspectModel | None = None
  tagged: np.ndarray | None = None  # bool per scored review: among the reviews tagged
  # the tagged reviews' clauses, embeddings and keyword hits (owner: position among the tagged)
  clauses: aspect_model.ClauseTable | None = None
  ratings: np.ndarray | None = None  # stars of the tagged reviews (NaN: none)


@optional("opinions by aspect")
def make_aspect_opinions(review_scores: pd.DataFrame, tables: Tables, *, language: str,
                         adapter: str | None = None, seed: int = 0,
                         aspects_params: Mapping[str, Any] | None = None,
                         max_reviews: int = SegmentConfig.aspect_max_reviews) -> Opinions | None:
  """Aspect mentions and their polarity per review (:mod:`cvlib.insight.aspect_model`);
  precision/recall where labels exist.

  The shop's polarity head is learnt from its own rated titles and short reviews
  (:func:`cvlib.insight.aspect_model.fit_shop_model`); tagging and polarity are then what
  :func:`cvlib.insight.aspect_model.aspect_opinions` returns with this run's folder. Clause
  embeddings cost CPU time, so at most ``max_reviews`` reviews are tagged (a seeded sample, the
  reviews the report quotes (:func:`example_positions`) and the hand-labelled reviews of the
  dataset always among them); the table says how many.

  Args:
    review_scores: stage 2's scored reviews (the reviews with text).
    tables: cleaned tables (review text, stars and titles; for synthetic data the true aspects).
    language: "en" or "pt"; None is returned for another language.
    adapter: the data adapter; for one in ``aspects.LABELLED_SOURCES`` the tagger is scored on
      the hand-labelled reviews of that dataset (synthetic data is scored on its own truth).
    seed: seed of the sample.
    aspects_params: ``segment.aspects`` of the params (empty: the language's six aspects);
      aspects without a calibrated threshold get the median of the calibrated ones.
    max_reviews: most reviews tagged.

  Returns:
    The tags, polarities, aspect table, metrics and the aspect model; None when aspects do not
    apply.
  """
  if language not in aspect_model.LANGUAGES or not len(review_scores):
    return None
  reviews = tables.reviews.drop_duplicates("review_id").set_index("review_id")
  ids = review_scores["review_id"].astype(str)
  texts = reviews.loc[review_scores["review_id"], "text"].tolist()
  titles = reviews["title"].tolist() if "title" in reviews else None
  stars = (reviews["rating"].to_numpy(dtype=float) if "rating" in reviews
           else np.full(len(reviews), np.nan))
  specs = aspect_model.specs_from(aspects_params, language)
  matcher = aspect_model.KeywordMatcher(specs, aspect_model.vocabulary_words())
  model = aspect_model.fit_shop_model(language, reviews["text"].tolist(), stars, titles=titles,
                                      specs=specs, matcher=matcher, seed=seed)
  tagged = np.ones(len(texts), dtype=bool)
  if len(texts) > max_reviews:
    labelled = set()
    if adapter in aspects.LABELLED_SOURCES:
      labelled = set(aspects.labelled_sample(aspects.LABELLED_SOURCES[adapter])["review_id"])
    # the reviews the report quotes (example_reviews) are read first: a quoted complaint about
    # the price must show its aspects, not an empty cell
    shown = np.concatenate(example_positions(review_scores, texts))
    must = np.r_[shown, np.setdiff1d(np.flatnonzero(ids.isin(labelled).to_numpy()), shown)]
    must = must[:max_reviews].astype(int)
    rest = np.setdiff1d(np.arange(len(texts)), must)
    pick = np.random.default_rng(seed).choice(rest, max_reviews - len(must), replace=False)
    tagged = np.zeros(len(texts), dtype=bool)
    tagged[np.r_[must, pick].astype(int)] = True
  picked = np.flatnonzero(tagged)
  ratings = (reviews.loc[review_scores["review_id"], "rating"].to_numpy(dtype=float)[picked]
             if "rating" in reviews else np.full(len(picked), np.nan))
  clauses = aspect_model.clause_table([texts[i] for i in picked], model.specs,
                                      aspect_model.minilm_embed, matcher)
  # clauses embedded once; the stars enter each aspect's polarity where the review has them
  scored = aspect_model.score_table(clauses, len(picked), model, ratings=ratings)
  polarity = pd.DataFrame(pd.NA, index=range(len(texts)), columns=model.names, dtype="Int64")
  polarity.iloc[np.flatnonzero(tagged)] = scored.to_numpy()
  tags = polarity.notna()
  table = aspects.aspect_table(tags[tagged].reset_index(drop=True),
                               polarity[tagged].reset_index(drop=True))
  table["tagged_reviews"] = int(tagged.sum())
  metrics = None
  if "review_aspects" in tables.truth:
    truth = tables.truth["review_aspects"]
    true_tags = pd.DataFrame(False, index=range(len(texts)), columns=tags.columns)
    pos = {rid: i for i, rid in enumerate(ids)}
    for rid, aspect in zip(truth["review_id"].astype(str), truth["aspect"]):
      if rid in pos and aspect in true_tags.columns:
        true_tags.iloc[pos[rid], true_tags.columns.get_loc(aspect)] = True
    m = aspects.aspect_metrics(tags[tagged].reset_index(drop=True),
                               true_tags[tagged].reset_index(drop=True))
    metrics = {"labelled_sample": int(tagged.sum()), "precision": m["precision"],
               "recall": m["recall"], "f1": m["f1"],
               "labels": "synthetic ground truth (the generator's aspect list)"}
  elif adapter in aspects.LABELLED_SOURCES:
    metrics = _hand_labelled_metrics(review_scores[tagged].reset_index(drop=True),
                                     tags[tagged].reset_index(drop=True),
                                     aspects.LABELLED_SOURCES[adapter])
  return Opinions(tags, polarity, table, metrics, model, tagged, clauses, ratings)


@optional("candidate aspects")
def make_aspect_candidates(opinions: Opinions | None, *, language: str,
                           max_clauses: int = SegmentConfig.aspect_candidate_clauses,
                           seed: int = 0) -> aspect_candidates.Candidates | None:
  """Candidate aspects proposed from the tagged reviews' clauses
  (:func:`cvlib.insight.aspect_candidates.propose_aspects`), reusing their embeddings and tags.

  At most ``max_clauses`` clauses are read: the clauses of a seeded sample of the tagged reviews.

  Returns:
    The candidates; None without opinions, with ``max_clauses`` 0, or for a language without a
    stop-word list.
  """
  if (opinions is None or opinions.clauses is None or opinions.clauses.vectors is None
      or max_clauses == 0 or language not in aspect_candidates.LANGUAGES):
    return None
  table, model = opinions.clauses, opinions.model
  n_reviews = int(opinions.tagged.sum())
  keep = np.ones(len(table.clauses), dtype=bool)
  if len(table.clauses) > max_clauses:  # whole reviews, in a seeded order, up to the cap
    order = np.random.default_rng(seed).permutation(n_reviews)
    counts = np.bincount(table.owner, minlength=n_reviews)[order]
    chosen = order[np.cumsum(counts) <= max_clauses]
    keep = np.isin(table.owner, chosen)
    n_reviews = len(chosen)
  position = np.cumsum(np.bincount(table.owner[keep], minlength=int(opinions.tagged.sum())) > 0)
  owner = position[table.owner[keep]] - 1  # 0 .. n_reviews - 1 among the reviews read
  ratings = opinions.ratings[np.unique(table.owner[keep])] if opinions.ratings is not None else None
  hits = aspect_model.clause_hits(table, model.names, model.floor, model.alone)[keep]
  return aspect_candidates.propose_aspects(
      [c for c, k in zip(table.clauses, keep) if k], owner, table.vectors[keep],
      n_reviews=n_reviews, language=language, embed_fn=aspect_model.minilm_embed, tagged=hits,
      aspect_names=model.names, proba=model.head.proba, ratings=ratings)


# Fewer labelled reviews among the scored ones than this give no precision/recall worth showing.
MIN_LABELLED = 20
# The report quotes this many most negative and most positive reviews (example_reviews).
EXAMPLE_REVIEWS = 5


def _hand_labelled_metrics(review_scores: pd.DataFrame, tags: pd.DataFrame, source: str
                           ) -> dict | None:
  labelled = aspects.labelled_sample(source)
  pos = {rid: i for i, rid in enumerate(review_scores["review_id"].astype(str))}
  hit = labelled[labelled["review_id"].isin(pos)].reset_index(drop=True)
  columns = [c for c in tags.columns if c in hit.columns]
  if len(hit) < MIN_LABELLED or not columns:
    return None
  pred = tags.reset_index(drop=True).iloc[[pos[r] for r in hit["review_id"]]][columns]
  pred = pred.reset_index(drop=True)
  m = aspects.aspect_metrics(pred, hit[columns])
  inside = int(hit["calibrated"].sum())
  out = {"labelled_sample": len(hit), "precision": m["precision"], "recall": m["recall"],
         "f1": m["f1"], "labels": f"hand-labelled reviews of this dataset ({len(hit)}, "
                                  f"cvlib/insight/aspects_labelled.csv; {inside} of them in the "
                                  "shipped thresholds' calibration, so flattering: "
                                  "docs/benchmarks.md scores shops left out of it)"}
  # the labelled reviews no threshold was fitted on, scored apart where there are enough
  fresh = ~hit["calibrated"].to_numpy()
  if fresh.sum() >= MIN_LABELLED:
    f = aspects.aspect_metrics(pred[fresh].reset_index(drop=True),
                               hit.loc[fresh, columns].reset_index(drop=True))
    out["outside_calibration"] = {"labelled_sample": int(fresh.sum()),
                                  "precision": f["precision"], "recall": f["recall"],
                                  "f1": f["f1"]}
  return out


@dataclasses.dataclass
class Topics:
  """What customers write about: review clusters named by their keywords."""
  table: pd.DataFrame  # one row per topic (cvlib.insight.topics.topic_table), largest first
  labels: np.ndarray  # topic of each scored review, in review_scores order
  silhouette: pd.Series  # silhouette per tried k (how the number of topics was chosen)
  examples: pd.DataFrame  # topic, review text: the reviews nearest each topic's centre


# Topics need this many reviews with text: fewer give clusters of a handful of reviews.
MIN_TOPIC_REVIEWS = 60


@optional("review topics")
def make_review_topics(review_scores: pd.DataFrame, embeddings: np.ndarray, tables: Tables, *,
                       language: str, seed: int, max_chars: int = 200) -> Topics | None:
  """Clusters the review embeddings and names each cluster with class-based TF-IDF keywords.

  Returns:
    The topics, or None with fewer than ``MIN_TOPIC_REVIEWS`` reviews with text.
  """
  if len(review_scores) < MIN_TOPIC_REVIEWS or len(embeddings) != len(review_scores):
    return None
  texts = (tables.reviews.set_index("review_id")["text"]
           .reindex(review_scores["review_id"]).fillna("").astype(str).tolist())
  max_topics = int(min(10, max(3, len(texts) // 30)))
  sil = topics.silhouette_by_k(embeddings, min_topics=3, max_topics=max_topics, seed=seed)
  labels = topics.cluster_reviews(embeddings, n_topics=int(sil.idxmax()), seed=seed)
  keywords = topics.ctfidf_keywords(texts, labels, language=language,
                                    min_df=2 if len(texts) >= 200 else 1)
  has = lambda c: c in review_scores and review_scores[c].notna().any()  # noqa: E731
  table = topics.topic_table(
      texts, labels, keywords, sentiment=review_scores["sentiment"].to_numpy(),
      rating=review_scores["rating"].to_numpy() if has("rating") else None,
      timestamp=review_scores["timestamp"].to_numpy() if has("timestamp") else None,
      review_ids=review_scores["review_id"].astype(str).to_numpy(), embeddings=embeddings)
  pos = {rid: i for i, rid in enumerate(review_scores["review_id"].astype(str))}
  rows = []
  for _, row in table.iterrows():
    for rid in row["example_ids"]:
      body = texts[pos[str(rid)]]
      rows.append({"topic": row["label"],
                   "review": body if len(body) <= max_chars else body[:max_chars - 1] + "…"})
  return Topics(table, labels, sil, pd.DataFrame(rows))


def topics_summary(t: Topics | None) -> pd.DataFrame:
  """The topic table as the report shows it."""
  if t is None:
    return pd.DataFrame()
  cols = {"label": "topic", "share": "share of reviews", "mean_sentiment": "mean sentiment",
          "mean_rating": "mean stars", "share_negative": "negative", "trend": "trend (recent vs before)",
          "keywords": "keywords"}
  out = t.table[[c for c in cols if c in t.table]].rename(columns=cols)
  if "keywords" in out:  # a list, or already "a, b, c" (topics.topic_table's form)
    out["keywords"] = out["keywords"].apply(lambda k: k if isinstance(k, str) else ", ".join(k))
  return out


def plot_topics(t: Topics | None) -> Any:
  return None if t is None else topics.plot_topics(t.table)


def save_topics(ws: Workspace, t: Topics | None) -> None:
  if t is None:
    ws.save_metrics({"topics": None,
                     "notes": {"topics": f"fewer than {MIN_TOPIC_REVIEWS} reviews with text"}})
    return
  table = t.table.assign(keywords=t.table["keywords"].apply(list),
                         example_ids=t.table["example_ids"].apply(lambda x: [str(i) for i in x]))
  table.attrs = {}  # topic_table keeps its "recent" cut-off there; parquet metadata is JSON
  ws.save_frame("topics", table)
  ws.save_metrics({"topics": {
      "n_topics": int(len(t.table)), "silhouette": float(t.silhouette.max()),
      "topics": [{"label": r["label"], "share": float(r["share"]),
                  "mean_sentiment": (None if pd.isna(r.get("mean_sentiment")) else
                                     float(r["mean_sentiment"]))}
                 for _, r in t.table.iterrows()]}})


def report_topics(ws: Workspace, t: Topics | None, fig,
                  reviews: pd.DataFrame | None = None) -> None:
  """The topics section; with ``reviews`` (:func:`review_details`) each topic links to its
  reviews."""
  if t is None:
    ws.add_text("opinions", "What customers write about: not part of this report (too few "
                "reviews with text).")
    return
  ws.add_figure("opinions", fig, "What customers write about: reviews grouped by what they say "
                "(clusters of the encoder's review embeddings), named by the words that set each "
                "group apart; colour is the group's mean sentiment.")
  summary = topics_summary(t)
  links = None
  if reviews is not None and len(reviews) == len(t.labels):
    links = {"topic": [ws.add_page(
        f"topic {row['label']}", f"Topic: {row['label']}",
        details.reviews_for(reviews, t.labels == row["topic"], most_negative_first=False),
        intro=f"The {row['n_reviews']:,} reviews of this topic, newest first.",
        section="opinions", max_rows=details.MAX_ROWS) for _, row in t.table.iterrows()]}
  ws.add_table("opinions", summary, f"The {len(t.table)} topics: size, tone and whether "
               "they are growing (share in the latest quarter of the reviews against before)."
               + (" Each topic links to its reviews." if links else ""),
               floatfmt="{:.2f}", links=links)
  ws.add_table("opinions", t.examples, "Typical reviews of each topic (nearest its centre).")


@optional("review detail pages")
def review_details(review_scores: pd.DataFrame, tables: Tables, opinions: Opinions | None = None
                   ) -> pd.DataFrame | None:
  """Every scored review as the detail pages list it (date, category, stars, sentiment, aspects,
  text), in ``review_scores`` order; None without reviews."""
  if not len(review_scores):
    return None
  categories = None
  if tables.products is not None and "category" in tables.products:
    categories = tables.products.drop_duplicates("product_id").set_index("product_id")["category"]
  return details.review_list(
      review_scores, tables.reviews.drop_duplicates("review_id").set_index("review_id")["text"],
      categories=categories, tags=opinions.tags if opinions is not None else None,
      tagged=opinions.tagged if opinions is not None else None)


def example_order(review_scores: pd.DataFrame) -> np.ndarray:
  """Positions of ``review_scores`` from the most negative review to the most positive: stars
  first (what the customer said outright), then the model's sentiment within a star level."""
  r = review_scores.reset_index(drop=True)
  stars = r["rating"].fillna(3.0) if "rating" in r else pd.Series(3.0, index=r.index)
  key = stars.to_numpy() + 0.5 * r["sentiment"].to_numpy()  # sentiment in [-1, 1]
  return np.lexsort((r["sentiment"].to_numpy(), key))


def example_positions(review_scores: pd.DataFrame, texts: Sequence[Any],
                      n: int = EXAMPLE_REVIEWS) -> tuple[np.ndarray, np.ndarray]:
  """The positions :func:`example_reviews` shows: the ``n`` most negative reviews and the ``n``
  most positive, each text once (five copies of "Não recebi o produto" say less than five
  different complaints); ``texts`` are the reviews' texts in ``review_scores`` order."""
  order = example_order(review_scores)
  if len(texts) != len(order):
    raise ValueError(f"example_positions: {len(texts)} texts for {len(order)} reviews")

  def distinct(positions: np.ndarray) -> np.ndarray:
    seen, out = set(), []
    for i in positions:
      key = " ".join(re.findall(r"\w+", str(texts[i]).lower()))
      if key not in seen:
        seen.add(key)
        out.append(int(i))
        if len(out) == n:
          break
    return np.asarray(out, dtype=int)

  negative = distinct(order)
  taken = set(negative.tolist())
  return negative, distinct(np.asarray([i for i in order[::-1] if i not in taken], dtype=int))


@optional("example reviews", fallback=lambda *a, **kw: pd.DataFrame())
def example_reviews(review_scores: pd.DataFrame, tables: Tables, opinions: Opinions | None, *,
                    n: int = EXAMPLE_REVIEWS, max_chars: int = 280) -> pd.DataFrame:
  """The most negative and the most positive reviews, as written (escaped when rendered).

  Returns:
    Up to 2n rows: tone, date, stars, sentiment score, aspects mentioned and the review text.
  """
  if not len(review_scores):
    return pd.DataFrame()
  text = tables.reviews.set_index("review_id")["text"]
  r = review_scores.reset_index(drop=True)
  r = r.assign(aspects=[""] * len(r) if opinions is None
               else details.aspect_cells(opinions.tags, opinions.tagged))
  negative, positive = example_positions(r, [text.get(i, "") for i in r["review_id"]], n)
  rows = []
  for tone, idx in (("most negative", negative), ("most positive", positive)):
    for i in idx:
      body = str(text.get(r.at[i, "review_id"], ""))
      rows.append({"tone": tone,
                   "date": r.at[i, "timestamp"] if "timestamp" in r else pd.NaT,
                   "stars": r.at[i, "rating"] if "rating" in r else None,
                   "sentiment": r.at[i, "sentiment"], "aspects": r.at[i, "aspects"],
                   "review": body if len(body) <= max_chars else body[:max_chars] + "…"})
  return pd.DataFrame(rows)


def report_opinions(ws: Workspace, opinions: Opinions | None,
                     reviews: pd.DataFrame | None = None,
                     candidates: aspect_candidates.Candidates | None = None) -> None:
  if opinions is None:
    ws.add_text("opinions", "Not part of this report: no aspect model for this language, or no "
                "review text.")
    return
  table = opinions.table.reset_index()
  links = None
  if reviews is not None and len(reviews) == len(opinions.tags) and "aspect" in table:
    tags = opinions.tags.reset_index(drop=True)
    links = {"aspect": [ws.add_page(
        f"aspect {a}", f"Reviews that mention {a}", details.reviews_for(reviews, tags[a]),
        intro="Most negative first.", section="opinions", max_rows=details.MAX_ROWS)
        if a in tags and tags[a].any() else None for a in table["aspect"]]}
  read = int(table["tagged_reviews"].iloc[0]) if len(table) and "tagged_reviews" in table else None
  shown = table.drop(columns=["tagged_reviews"], errors="ignore").rename(
      columns={"share": "share of reviews", "net": "net (positive - negative) / mentions"})
  ws.add_table("opinions", shown, "How often each aspect is mentioned and with which sentiment"
               + (f", in the {read:,} reviews read." if read is not None else ".")
               + (" Each aspect links to its reviews." if links else ""), links=links)
  if opinions.model is not None and opinions.tagged is not None:
    ws.add_text("opinions", aspect_model.describe(opinions.model, int(opinions.tagged.sum()),
                                                  len(opinions.tagged)))
  if opinions.metrics:
    m = opinions.metrics
    fresh = m.get("outside_calibration")
    ws.add_text("opinions", f"Aspect tagging checked on {m['labelled_sample']:,} labelled reviews "
                f"({m['labels']}): precision {m['precision']:.2f}, recall {m['recall']:.2f}."
                + (f" On the {fresh['labelled_sample']:,} of them outside the calibration: "
                   f"precision {fresh['precision']:.2f}, recall {fresh['recall']:.2f}."
                   if fresh else ""))
  report_candidates(ws, candidates)


def report_candidates(ws: Workspace, candidates: aspect_candidates.Candidates | None) -> None:
  """The "candidate aspects for this shop" part: the groups and, for the uncovered ones, the
  YAML to paste into the params (customer text: escaped when rendered, like every part)."""
  if candidates is None:
    return
  if not len(candidates.table):
    ws.add_text("opinions", "Candidate aspects for this shop: none (no word is used by enough "
                f"of the {candidates.n_reviews:,} reviews read).")
    return
  shown = candidates.table.rename(columns={
      "share": "share of reviews", "example": "example clause", "covered_by": "covered by"})
  ws.add_table("opinions", shown, "Candidate aspects for this shop: what its reviews talk about "
               "most, grouped by meaning. 'covered by' names the configured aspect that already "
               "tags most of a group's clauses.", floatfmt="{:.1%}")
  ws.add_text("opinions", aspect_candidates.describe(candidates))
  if candidates.yaml:
    ws.add_preformatted("opinions", candidates.yaml, "The uncovered candidates in the params' "
                        "format (segment.aspects), to edit and paste:")


@dataclasses.dataclass
class Monitoring:
  weekly: pd.DataFrame  # per week (and category): reviews, share negative, mean rating
  flags: pd.DataFrame  # the weekly rows with their control band and status
  explanations: pd.DataFrame  # the reviews behind each flagged week (the three most telling)
  flag_reviews: pd.DataFrame  # the same, up to details.MAX_ROWS per week: the flag's page


@optional("opinion monitoring over time")
def make_opinion_monitoring(review_scores: pd.DataFrame, tables: Tables) -> Monitoring | None:
  """Weekly share of negative reviews per category against a control band; None without dates.

  The band uses exact binomial limits: with a few reviews a week the normal approximation flags
  ten times too many weeks (measured by the module's tests).
  """
  dated = review_scores.dropna(subset=["timestamp"])
  if len(dated) < 50:
    return None
  rs = dated.merge(tables.products[["product_id", "category"]], on="product_id", how="left")
  rs["category"] = rs["category"].fillna("(unknown)")
  weekly = monitoring.weekly_opinion(rs, by="category")
  flags = monitoring.control_flags(weekly, limits="exact")
  texts = tables.reviews.set_index("review_id")["text"]
  # One pass: the page lists up to MAX_ROWS reviews per flagged week in rank order; the report's
  # inline explanations are the first three of them (flag_explanations' default n).
  behind = monitoring.flag_explanations(rs, flags, texts, n=details.MAX_ROWS)
  return Monitoring(weekly, flags, behind[behind["rank"] <= 3].reset_index(drop=True), behind)


def plot_monitoring(mon: Monitoring | None):
  if mon is None:
    return plots.plot_not_applicable("Opinion over time", "reviews carry no dates")
  return monitoring.plot_opinion_trend(mon.weekly, mon.flags,
                                       title="Share of negative reviews per week")


def save_explanations(ws: Workspace, scores: pd.DataFrame, mon: Monitoring | None) -> dict:
  """Stage 4's monitoring and explanation metrics (added to the segment stage's metrics)."""
  metrics: dict[str, Any] = {"explanations": None, "monitoring": None}
  if "top_drivers" in scores:
    metrics["explanations"] = {"method": "integrated gradients vs the median customer",
                               "completeness_gap": scores.attrs.get("completeness_gap")}
  if mon is not None:
    status = mon.flags["status"].value_counts()
    metrics["monitoring"] = {"weeks": int(mon.flags["week"].nunique()),
                             "groups": int(mon.flags["category"].nunique()),
                             "flags_worse": int(status.get("worse", 0)),
                             "flags_improved": int(status.get("improved", 0))}
    ws.save_frame("opinion_flags", mon.flags)
    ws.save_frame("opinion_flag_reviews", mon.explanations)
  ws.save_metrics(metrics)
  return metrics


def report_explanations(ws: Workspace, scores: pd.DataFrame, mon: Monitoring | None,
                        fig_trend) -> None:
  if mon is None:
    ws.add_text("opinions", "Opinion over time: not part of this report (the reviews carry no "
                "dates).")
  else:
    worse = mon.flags[mon.flags["status"] == "worse"]
    ws.add_figure("opinions", fig_trend, "Share of negative reviews per week, by category, with "
                  "its control band (exact binomial limits around the previous eight weeks); "
                  "flagged weeks are marked.")
    ws.add_text("opinions", f"{len(worse)} category-weeks had a share of negative reviews above "
                "their control band." + (" The reviews behind each are listed below." if len(worse)
                                         else ""))
    if len(worse):
      flags = worse.reset_index(drop=True)
      cols = [c for c in ("category", "week", "n_reviews", "n_negative", "share_negative",
                          "upper") if c in flags]
      hrefs = []
      for _, f in flags.iterrows():
        behind = mon.flag_reviews
        behind = behind[(behind["category"] == f["category"]) & (behind["week"] == f["week"])]
        shown = [c for c in ("rating", "sentiment", "text") if c in behind]
        hrefs.append(ws.add_page(
            f"flag {f['category']} {pd.Timestamp(f['week']):%Y-%m-%d}",
            f"{f['category']}, week of {pd.Timestamp(f['week']):%Y-%m-%d}: "
            f"{f['share_negative']:.0%} negative", behind[shown].reset_index(drop=True),
            intro="The week's reviews in this category, most negative first.",
            section="opinions", max_rows=details.MAX_ROWS))
      ws.add_table("opinions", flags[cols], "Flagged category-weeks; each links to the week's "
                   "reviews.", floatfmt="{:.2f}", links={"category": hrefs})
    if len(mon.explanations):
      cols = [c for c in ("category", "week", "status", "share_negative", "rating", "sentiment",
                          "text") if c in mon.explanations]
      ws.add_table("opinions", mon.explanations[cols], "The reviews behind each flagged week.",
                   floatfmt="{:.2f}")
  if "top_drivers" in scores:
    top = scores.sort_values("predicted_value", ascending=False).head(10)
    risky = scores[scores["value_tier"] == "High"].sort_values("churn_probability",
                                                               ascending=False).head(10)
    cols = ["customer_key", "predicted_value", "value_lo", "value_hi", "churn_probability",
            "rfm_segment", "action", "top_drivers"]
    ws.add_table("segments", top[cols], "Profile cards: the ten customers with the highest "
                 "predicted value, with what drives each prediction (pseudonymised keys).")
    ws.add_table("segments", risky[cols], "Valuable customers most at risk of leaving, with what "
                 "drives each prediction.")


# --- since the last report (monthly runs) -------------------------------------------------------

def _keyed_transactions(params: Params, tables: Tables) -> pd.DataFrame:
  from cvlib.data import privacy
  salt, _ = privacy.resolve_salt(params.report.salt)
  tx = tables.transactions
  return tx.assign(customer_key=privacy.pseudonymise(tx["customer_id"], salt))


def _aspect_reviews(review_scores: pd.DataFrame, opinions: Opinions | None) -> pd.DataFrame | None:
  """One row per review and aspect it mentions: timestamp, aspect, negative."""
  if (opinions is None or "timestamp" not in review_scores
      or len(opinions.polarity) != len(review_scores)):
    return None
  pol = opinions.polarity.reset_index(drop=True)
  pol.index = pd.RangeIndex(len(pol))
  long = pol.stack().dropna().rename("polarity").reset_index()
  long.columns = ["row", "aspect", "polarity"]
  ts = pd.to_datetime(review_scores["timestamp"]).reset_index(drop=True)
  return pd.DataFrame({"timestamp": ts.iloc[long["row"]].to_numpy(),
                       "aspect": long["aspect"].astype(str).to_numpy(),
                       "negative": (long["polarity"].astype(int) < 0).to_numpy()}) \
      .dropna(subset=["timestamp"])


def _topic_names(t: Topics | None) -> list[str] | None:
  if t is None:
    return None
  kw = t.table["keywords"] if "keywords" in t.table else t.table["label"]
  return [k if isinstance(k, str) else ", ".join(map(str, k)) for k in kw]


def _time_profile(ws: Workspace, prep: Prepared) -> dict | None:
  """BG/NBD's expected purchases of the scored customers by each week of the horizon."""
  from cvlib.value import btyd
  if not ws.has_json("btyd_params"):
    return None
  fit = ws.load_json("btyd_params").get("bgnbd")
  f = prep.features_now
  if not fit or not len(f):
    return None
  h = prep.horizon_days
  days = sorted({*range(7, h, 7), h})
  expected = btyd.expected_purchases_profile(fit, f["frequency"], f["recency_days"], f["T_days"],
                                             days)
  return {"days": days, "expected_purchases": expected.tolist(),
          "method": "BG/NBD fitted in the back-test, applied to the histories as of the data end"}


@optional("since the last report: this run's snapshot for the next")
def save_snapshot(ws: Workspace, params: Params, tables: Tables, prep: Prepared,
                  review_scores: pd.DataFrame, opinions: Opinions | None,
                  t: Topics | None) -> dict | None:
  """Writes ``snapshot.json``, what the next run's "since the last report" compares with."""
  import json

  import cvlib
  if prep.as_of is None:
    return None
  aspect_rows = _aspect_reviews(review_scores, opinions)
  snap = since_last.make_snapshot(
      dataset=params.dataset, cvlib_version=cvlib.__version__, transactions=tables.transactions,
      reviews=tables.reviews, features_now=prep.features_now, as_of=prep.as_of,
      horizon_days=prep.horizon_days, profile=optional("BG/NBD time profile")(_time_profile)(
          ws, prep),
      aspects=since_last.aspect_counts(aspect_rows) if aspect_rows is not None else None,
      topics=_topic_names(t))
  ws.path(since_last.SNAPSHOT_FILE).write_text(json.dumps(to_jsonable(snap), indent=1))
  return snap


def make_since_last(params: Params, ws: Workspace, tables: Tables, prep: Prepared,
                    scores: pd.DataFrame, review_scores: pd.DataFrame,
                    opinions: Opinions | None, t: Topics | None) -> SinceLast | None:
  """The comparison with the latest earlier run in the reports folder (the run folder's parent),
  or None: in a first report (no earlier run) with metrics.json's ``notes.since_last`` saying so,
  otherwise with the reason listed under "Not in this report" (one from an older cvlib, another
  dataset under the same name, a damaged folder)."""
  section = "since the last report"
  if prep.as_of is None or not len(scores):
    skip(section, "no forward scores in this run (no orders linked to customers)")
    return None
  try:
    prev = since_last.find_previous(ws.root.parent, params.dataset,
                                    prep.as_of - dt.timedelta(days=1))
    return since_last.compare(
        prev, transactions=_keyed_transactions(params, tables), reviews=tables.reviews,
        features_now=prep.features_now, scores=scores, as_of=prep.as_of,
        aspect_reviews=_aspect_reviews(review_scores, opinions), topics=_topic_names(t))
  except since_last.FirstReport as e:  # nothing failed: the section says it, "skipped" does not
    ws.save_metrics({"notes": {"since_last": str(e)}})
  except since_last.NoComparison as e:
    skip(section, str(e))
  except Exception as e:  # never a failed run: the section is left out with the reason
    skip(section, reason_of(e))
  return None


def save_since_last(ws: Workspace, since: SinceLast | None) -> None:
  """metrics.json's ``since_last`` block (null when there is none, the reason under skipped)."""
  ws.save_metrics({"since_last": since.metrics if since is not None else None})


def report_since_last(ws: Workspace, since: SinceLast | None, scores: pd.DataFrame) -> None:
  """The "Since the last report" section: read it first in a monthly run."""
  ws.add_skipped(take_skipped())
  if since is None:
    return
  m = since.metrics
  f = m["forecast"]
  prev = m["previous"]["data_end"]
  pct = lambda x: "n/a" if x is None or pd.isna(x) else f"{x:.0%}"  # noqa: E731
  num = lambda x, fmt="{:.3f}": "n/a" if x is None or pd.isna(x) else fmt.format(x)  # noqa: E731
  window = (f"{f['window_start']} to {f['window_end']}, {f['elapsed_days']} of the "
            f"{f['horizon_days']}-day horizon")
  prorate = ("The whole horizon has elapsed: predictions are compared as they were."
             if f["whole_horizon"] else
             f"The horizon has not fully elapsed, so the last run's predictions are prorated to "
             f"{f['proration']['share']:.0%} of their horizon values: {f['proration']['method']}. "
             "Gini and churn AUC rank customers and do not depend on it.")
  ws.add_text("since_last", f"The last report used data up to {prev}. Its forward scores for "
              f"{f['customers']:,} customers against the orders that came in since ({window}). "
              + prorate)
  ws.add_headline("since the last report: realised / predicted spend",
                  pct(f["spend"]["ratio"]), f"{f['spend']['realised']:,.0f} realised, "
                  f"{f['spend']['predicted']:,.0f} predicted")
  rows = [("realised spend", f"{f['spend']['realised']:,.0f}"),
          ("predicted spend" + ("" if f["whole_horizon"] else " (prorated)"),
           f"{f['spend']['predicted']:,.0f}"),
          ("purchases realised", f"{f['purchases']['realised']:,}"),
          ("purchases predicted (BG/NBD)", num(f["purchases"]["predicted"], "{:,.0f}")),
          ("Gini (ranking by predicted value)", num(f["gini"])),
          ("decile MAPE", pct(f["decile_mape"])),
          ("churn AUC (no purchase since)", num(f["churn_auc"])),
          ("interval coverage", pct(f["interval_coverage"])),
          ("customers who bought again", pct(f["returned_share"]))]
  ws.add_table("since_last", pd.DataFrame(rows, columns=["measure", "value"]),
               "How the last report's predictions did on what customers then did.")
  ws.add_figure("since_last", vm.plot_decile_chart({"last report": since.deciles}),
                "The last report's predicted (prorated where the horizon has not elapsed) and "
                "realised spend per decile of its predictions.")
  seg = since.segment_migration
  ws.add_table("since_last", seg.rename(columns={"predicted_value": "predicted value now"}),
               "Segment migration: each customer's segment in the last report by the one now, "
               "with customers and predicted value now.", max_rows=30, floatfmt="{:,.0f}")
  ws.add_table("since_last", since.cell_migration.rename(
      columns={"predicted_value": "predicted value now"}),
      "Value-by-risk cells, last report by now.", max_rows=30, floatfmt="{:,.0f}")
  newly = since.new_high_risk
  if len(newly):
    mask = scores["customer_key"].isin(newly["customer_key"])
    href = ws.add_page("since last new high value high risk",
                       "Newly high value and high churn risk since the last report",
                       details.customer_list(scores, mask), section="since_last",
                       intro="Customers in the High value / High risk cell now who were not in "
                       "it in the last report, highest predicted value first.",
                       max_rows=details.MAX_ROWS)
    ws.add_table("since_last", pd.DataFrame(
        {"action list": ["newly high value + high risk"], "customers": [len(newly)],
         "predicted value": [float(scores.loc[mask, "predicted_value"].sum())]}),
                 "Act first: customers who newly entered high value and high churn risk "
                 "(pseudonymised; the link lists them).",
                 links={"action list": [href]})
  else:
    ws.add_text("since_last", "No customer newly entered high value and high churn risk.")
  if since.opinion_shift is not None:
    cols = ["aspect", "reviews_then", "negative_then", "reviews_now", "negative_now",
            "now_lo", "now_hi", "change", "clear_change"]
    ws.add_table("since_last", since.opinion_shift[cols], "Share of negative mentions per aspect: "
                 "the last report's reviews against the reviews since, with the 95% interval "
                 "now; clear_change when the two intervals do not overlap.", floatfmt="{:.2f}")
  if m.get("new_topics"):
    ws.add_text("since_last", "New topics since the last report: " + "; ".join(m["new_topics"]))
  d = m["drift"]
  ws.add_table("since_last", since.drift, f"Drift: population stability index of each customer "
               f"feature (now against the last report) and of review length and rating (reviews "
               f"since against before); flagged above {d['psi_flag']}.", floatfmt="{:.3f}",
               max_rows=40)
  then, now = d["reviews"]["then"] or {}, d["reviews"]["now"]
  mix = lambda m: ", ".join(f"{k} {v:.0%}" for k, v in (m or {}).items()) or "n/a"  # noqa: E731
  ws.add_text("since_last", f"Reviews per 30 days (over the last {now['window_days']} days of "
              f"data): {then.get('per_30_days', 'n/a')} then, {now['per_30_days']} now. Writing "
              f"systems (language mix): then {mix(then.get('script_mix'))}; now "
              f"{mix(now['script_mix'])}.")

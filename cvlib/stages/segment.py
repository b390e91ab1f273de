"""Stage 4, segments: value-by-risk matrix, segment profiles, recommendations, the segment report.

Called by the notebooks through :mod:`cvlib.pipeline`, which re-exports every name here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from cvlib.report import details
from cvlib.data.adapters import Tables
from cvlib.stages.opinions import Opinions, report_opinions
from cvlib.stages.preprocess import NOT_APPLICABLE, Prepared
from cvlib.report.workspace import Workspace


def make_value_risk_matrix(scores: pd.DataFrame, seg_cfg) -> pd.DataFrame | None:
  """Customers and predicted value per (value tier, churn risk) cell; None without scores."""
  from cvlib.insight import segments
  if not len(scores):
    return None
  return segments.value_risk_matrix(scores, value_tiers=seg_cfg.value_tiers,
                                    risk_thresholds=seg_cfg.risk_thresholds)


def plot_matrix(matrix: pd.DataFrame | None):
  from cvlib.report import plots
  from cvlib.insight import segments
  if matrix is None:
    return plots.plot_not_applicable("Value by churn risk", NOT_APPLICABLE["value"])
  return segments.plot_value_risk_matrix(matrix)


def plot_segments(profiles: pd.DataFrame | None):
  from cvlib.report import plots
  from cvlib.insight import segments
  if profiles is None:
    return plots.plot_not_applicable("Segments", NOT_APPLICABLE["value"])
  return segments.plot_segment_sizes(profiles)


def make_segment_profiles(scores: pd.DataFrame, prep: Prepared, review_scores: pd.DataFrame,
                          tables: Tables, opinions: Opinions | None = None) -> pd.DataFrame | None:
  """Segment profile table with sentiment, top categories and (with ``opinions``, the aspect tags
  of ``review_scores``' reviews) top aspects, keyed by pseudonymous key."""
  from cvlib.insight import segments
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
                   .assign(customer_id=who.to_numpy()).dropna(subset=["customer_id"]))
  seg_input = scores.assign(customer_id=scores["customer_key"])
  return segments.segment_profiles(seg_input, sentiment=sent, categories=cats,
                                   aspects=aspect_rows)


@dataclasses.dataclass
class Recommendations:
  recs: pd.DataFrame
  metrics: dict | None
  top_products: pd.DataFrame | None = None  # most often recommended, with their descriptions


# Recommender settings tried on the validation window (recommend.fit_recommender's keywords):
# EASE at three ridge penalties and item-kNN at four neighbourhood sizes (None: all).
RECOMMENDERS = tuple([{"method": "ease", "l2": l2} for l2 in (50.0, 250.0, 1000.0)]
                     + [{"method": "cooccurrence", "neighbours": n} for n in (10, 20, 50, None)])


# Weights of the co-purchase part tried with product-text similarity (1 - alpha for the text).
CONTENT_ALPHAS = (0.9, 0.7)


def recommender_label(settings: dict[str, Any] | None) -> str:
  """A reader's name for a recommender setting: "EASE (l2 250)", "co-purchase, 20 neighbours",
  "EASE (l2 250) + product text 10%"."""
  settings = settings or {}
  if settings.get("method") == "ease":
    label = f"EASE (l2 {settings.get('l2', 250.0):g})"
  else:
    n = settings.get("neighbours")
    label = f"co-purchase, {'all' if n is None else n} neighbours"
  if settings.get("product_embeddings") is not None:
    label += f" + product text {1 - settings.get('alpha', 0.5):.0%}"
  return label


def product_embeddings(tables: Tables, *, language: str, encoder_dir: Path | None = None
                       ) -> pd.DataFrame | None:
  """Each product's description (else category) embedded by the shop's encoder.

  The encoder saved by the fine-tuning stage when there is one, else the installed MiniLM for
  English; None for products without text or another language without a saved encoder.
  Returns a DataFrame indexed by product_id, one column per dimension (unit-norm rows).
  """
  from cvlib.text import pretrained
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
    model, _ = pretrained.load_saved_encoder(encoder_dir)
    tokenizer = pretrained.load_tokenizer(encoder_dir)
  elif language == "en":
    model = tokenizer = None  # the installed MiniLM
  else:
    return None
  unique = pd.unique(text.to_numpy())
  vectors = pretrained.embed(list(unique), model=model, tokenizer=tokenizer, buckets=(16, 32, 64))
  rows = pd.Index(unique).get_indexer(text.to_numpy())
  return (pd.DataFrame(vectors[rows], index=pd.Index(ids, name="product_id"))
          .groupby(level=0).first())


def choose_recommender(cal_items: pd.DataFrame, *, candidates=RECOMMENDERS, share: float = 0.25,
                       embeddings: pd.DataFrame | None = None
                       ) -> tuple[dict[str, Any], dict[str, float]]:
  """Picks the recommender's settings on the calibration period alone.

  The last ``share`` of the calibration span is held back: fitted on the purchases before it,
  each candidate is scored by hit rate at 10 on the purchases in it; the holdout period, on which
  the report judges the recommendations, is never looked at. EASE candidates are skipped when
  the products exceed ``recommend.DENSE_PRODUCT_LIMIT``. With product ``embeddings``, the best
  co-purchase candidate is also tried blended with product-text similarity (``CONTENT_ALPHAS``).

  Returns:
    (the best candidate's settings, {label: validation hit rate}); the first candidate that
    applies and {} without timestamps or with too little data on either side.
  """
  from cvlib.insight import recommend
  n_products = cal_items["product_id"].nunique()
  usable = [c for c in candidates
            if c.get("method") != "ease" or n_products <= recommend.DENSE_PRODUCT_LIMIT]
  if not usable:
    raise ValueError("choose_recommender: no candidate applies to "
                     f"{n_products:,} products (EASE needs at most "
                     f"{recommend.DENSE_PRODUCT_LIMIT:,})")
  if "timestamp" not in cal_items or cal_items["timestamp"].isna().all():
    return dict(usable[0]), {}
  ts = pd.to_datetime(cal_items["timestamp"])
  split = ts.min() + (ts.max() - ts.min()) * (1 - share)
  early, late = cal_items[ts < split], cal_items[ts >= split]
  who = late["customer_id"].unique()
  who = who[pd.Index(who).isin(early["customer_id"])]
  if len(early) < 100 or len(who) < 30:
    return dict(usable[0]), {}
  scores: dict[str, float] = {}

  def best_of(settings: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores each setting on the validation window; the best, the first of equals."""
    for s in settings:
      model = recommend.fit_recommender(early[["customer_id", "product_id"]], **s)
      recs = recommend.recommend(model, list(who), k=10)
      scores[recommender_label(s)] = recommend.evaluate_recommendations(
          recs, late[["customer_id", "product_id"]], k=10)["hit_rate_at_10"]
    return max(settings, key=lambda s: scores[recommender_label(s)])

  best = best_of(usable)
  if embeddings is not None and early["product_id"].astype(str).isin(embeddings.index).any():
    blends = [{**best, "product_embeddings": embeddings, "alpha": a} for a in CONTENT_ALPHAS]
    best_of(blends)
    best = max([best, *blends], key=lambda s: scores[recommender_label(s)])  # plain wins ties
  return dict(best), scores


def make_recommendations(prep: Prepared, tables: Tables, *, k: int, language: str = "en",
                         encoder_dir: Path | None = None) -> Recommendations:
  """Fitted on calibration purchases, evaluated on holdout purchases against popularity.

  The method and its setting are chosen on a validation window inside the calibration period
  (:func:`choose_recommender`).
  """
  from cvlib.insight import recommend
  if not len(prep.cal_items):
    return Recommendations(pd.DataFrame(), None)
  embeddings = product_embeddings(tables, language=language, encoder_dir=encoder_dir)
  settings, validation = choose_recommender(prep.cal_items, embeddings=embeddings)
  model = recommend.fit_recommender(prep.cal_items[["customer_id", "product_id"]], **settings)
  customers = prep.hold_items["customer_id"].unique()
  customers = customers[pd.Index(customers).isin(prep.cal_items["customer_id"])]
  # the contract's metrics are at 10 whatever k the shop asks for
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
                 recs: Recommendations) -> dict:
  from cvlib.serve import scorer as scoring
  ref = scores.attrs.get("scoring_reference")
  if ref is not None:  # what `cvlib score` needs to segment new customers as these
    scoring.ScoringReference.from_dict(ref).save(ws.path("models", scoring.REFERENCE_FILE))
  out = scores.copy(deep=False)
  out.attrs = {k: v for k, v in scores.attrs.items() if k != "scoring_reference"}
  out.to_parquet(ws.path("scores.parquet"), index=False)
  notes = {}
  if matrix is not None:
    ws.save_frame("value_risk_matrix", matrix)
    ws.save_frame("segment_profiles", profiles.reset_index())
    segs = {"count": int(scores["rfm_segment"].nunique()), "customers": len(scores),
            "actions": scores["action"].value_counts().to_dict()}
  else:
    segs, notes["segments"] = None, NOT_APPLICABLE["value"]
  if opinions is not None:
    ws.save_frame("aspect_table", opinions.table.reset_index())
  if opinions is None or opinions.metrics is None:
    notes["aspects"] = NOT_APPLICABLE["aspects"]
  if recs.metrics is None:
    notes["recommendations"] = NOT_APPLICABLE["recommendations"]
  metrics = {"segments": segs, "recommendations": recs.metrics,
             "aspects": opinions.metrics if opinions is not None else None,
             "notes": notes}
  ws.save_metrics(metrics)
  return metrics


def report_segment(ws: Workspace, scores: pd.DataFrame, matrix: pd.DataFrame | None,
                   profiles: pd.DataFrame | None, opinions: Opinions | None,
                   recs: Recommendations, examples: pd.DataFrame, figures: list,
                   reviews: pd.DataFrame | None = None) -> None:
  """The segments, opinions and recommendations sections. Each segment, value-by-risk cell and
  action links to a page of its customers; with ``reviews`` (:func:`review_details`) each aspect
  links to the reviews that mention it."""
  report_opinions(ws, opinions, reviews)
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
  ws.add_headline("value at high churn risk", f"{at_risk / total:.0%}" if total else "n/a",
                  "share of predicted value")
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

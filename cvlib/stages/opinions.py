"""Stage 4, opinions: aspects, review topics, example reviews, opinion monitoring over time.

Called by the notebooks through :mod:`cvlib.pipeline`, which re-exports every name here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib.report import details
from cvlib.data.adapters import Tables
from cvlib.report.workspace import Workspace


@dataclasses.dataclass
class Opinions:
  tags: pd.DataFrame
  polarity: pd.DataFrame
  table: pd.DataFrame
  metrics: dict | None


ASPECT_LEXICONS = {"en": "DEFAULT_ASPECTS", "pt": "PORTUGUESE_ASPECTS"}


def make_aspect_opinions(review_scores: pd.DataFrame, tables: Tables, *, language: str,
                         encoder_dir: Path | None = None,
                         adapter: str | None = None) -> Opinions | None:
  """Aspect mentions and their sentiment per review; precision/recall where labels exist.

  Args:
    review_scores: stage 2's scored reviews (the reviews with text).
    tables: cleaned tables (review text and, for synthetic data, the true aspects).
    language: picks the aspect seed lexicon; None is returned for a language without one.
    encoder_dir: the fine-tuned sentiment encoder; clause polarity for languages other than
      English comes from it (VADER, the English default, does not read Portuguese).
    adapter: the data adapter; for one in ``aspects.LABELLED_SOURCES`` the tagger is scored on
      the hand-labelled reviews of that dataset (synthetic data is scored on its own truth).

  Returns:
    The tags, polarities, aspect table and metrics; None when aspects do not apply.
  """
  from cvlib.insight import aspects
  if language not in ASPECT_LEXICONS or not len(review_scores):
    return None
  lexicon = getattr(aspects, ASPECT_LEXICONS[language])
  texts = tables.reviews.set_index("review_id").loc[review_scores["review_id"], "text"].tolist()
  tags = aspects.tag_aspects(texts, lexicon)
  sentiment_fn = None
  if language != "en" and encoder_dir is not None:
    sentiment_fn = _encoder_sentiment_fn(encoder_dir)
  polarity = aspects.aspect_sentiment(texts, tags, sentiment_fn=sentiment_fn, aspects=lexicon)
  table = aspects.aspect_table(tags, polarity)
  metrics = None
  if "review_aspects" in tables.truth:
    truth = tables.truth["review_aspects"]
    true_tags = pd.DataFrame(False, index=range(len(texts)), columns=tags.columns)
    pos = {rid: i for i, rid in enumerate(review_scores["review_id"].astype(str))}
    for rid, aspect in zip(truth["review_id"].astype(str), truth["aspect"]):
      if rid in pos and aspect in true_tags.columns:
        true_tags.iloc[pos[rid], true_tags.columns.get_loc(aspect)] = True
    m = aspects.aspect_metrics(tags.reset_index(drop=True), true_tags)
    metrics = {"labelled_sample": len(texts), "precision": m["precision"], "recall": m["recall"],
               "f1": m["f1"], "labels": "synthetic ground truth (the generator's aspect list)"}
  elif adapter in aspects.LABELLED_SOURCES:
    metrics = _hand_labelled_metrics(review_scores, tags, aspects.LABELLED_SOURCES[adapter])
  return Opinions(tags, polarity, table, metrics)


# Fewer labelled reviews among the scored ones than this give no precision/recall worth showing.
MIN_LABELLED = 20


def _hand_labelled_metrics(review_scores: pd.DataFrame, tags: pd.DataFrame, source: str
                           ) -> dict | None:
  from cvlib.insight import aspects
  labelled = aspects.labelled_sample(source)
  pos = {rid: i for i, rid in enumerate(review_scores["review_id"].astype(str))}
  hit = labelled[labelled["review_id"].isin(pos)].reset_index(drop=True)
  columns = [c for c in tags.columns if c in hit.columns]
  if len(hit) < MIN_LABELLED or not columns:
    return None
  pred = tags.reset_index(drop=True).iloc[[pos[r] for r in hit["review_id"]]][columns]
  m = aspects.aspect_metrics(pred.reset_index(drop=True), hit[columns])
  return {"labelled_sample": len(hit), "precision": m["precision"], "recall": m["recall"],
          "f1": m["f1"], "labels": f"hand-labelled reviews of this dataset ({len(hit)}, "
                                   "cvlib/insight/aspects_labelled.csv)"}


def _encoder_sentiment_fn(encoder_dir: Path):
  """clauses -> P(positive) - P(negative) from the fine-tuned encoder saved in stage 2 (with its
  TF-IDF blend when it has one, as the review scores)."""
  from cvlib.text import pretrained, sentiment
  from cvlib.text.blend import SentimentBlend
  model, _ = pretrained.load_saved_encoder(encoder_dir)
  tokenizer = pretrained.load_tokenizer(encoder_dir)
  blend = SentimentBlend.load(encoder_dir)

  def score(clauses):
    clauses = list(clauses)
    proba = sentiment.predict_proba(model, tokenizer, clauses, buckets=(32, 64, 128))
    if blend is not None:
      proba = blend.proba(proba, clauses)
    return proba[:, -1] - proba[:, 0]
  return score


@dataclasses.dataclass
class Topics:
  """What customers write about: review clusters named by their keywords."""
  table: pd.DataFrame  # one row per topic (cvlib.insight.topics.topic_table), largest first
  labels: np.ndarray  # topic of each scored review, in review_scores order
  silhouette: pd.Series  # silhouette per tried k (how the number of topics was chosen)
  examples: pd.DataFrame  # topic, review text: the reviews nearest each topic's centre


# Topics need this many reviews with text: fewer give clusters of a handful of reviews.
MIN_TOPIC_REVIEWS = 60


def make_review_topics(review_scores: pd.DataFrame, embeddings: np.ndarray, tables: Tables, *,
                       language: str, seed: int, max_chars: int = 200) -> Topics | None:
  """Clusters the review embeddings and names each cluster with class-based TF-IDF keywords.

  Returns:
    The topics, or None with fewer than ``MIN_TOPIC_REVIEWS`` reviews with text.
  """
  from cvlib.insight import topics
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
  from cvlib.insight import topics
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
      categories=categories, tags=opinions.tags if opinions is not None else None)


def example_reviews(review_scores: pd.DataFrame, tables: Tables, opinions: Opinions | None, *,
                    n: int = 5, max_chars: int = 280) -> pd.DataFrame:
  """The most negative and the most positive reviews, as written (escaped when rendered).

  Returns:
    Up to 2n rows: tone, date, stars, sentiment score, aspects mentioned and the review text.
  """
  if not len(review_scores):
    return pd.DataFrame()
  text = tables.reviews.set_index("review_id")["text"]
  r = review_scores.reset_index(drop=True)
  mentioned = [""] * len(r)
  if opinions is not None:
    tags = opinions.tags.reset_index(drop=True)
    mentioned = [", ".join(c for c in tags.columns if row[c]) for _, row in tags.iterrows()]
  r = r.assign(aspects=mentioned)
  # stars first (what the customer said outright), then the model's sentiment within a star level
  stars = r["rating"].fillna(3.0) if "rating" in r else pd.Series(3.0, index=r.index)
  key = stars.to_numpy() + 0.5 * r["sentiment"].to_numpy()  # sentiment in [-1, 1]
  order = np.lexsort((r["sentiment"].to_numpy(), key))
  rows = []
  for tone, idx in (("most negative", order[:n]), ("most positive", order[::-1][:n])):
    for i in idx:
      body = str(text.get(r.at[i, "review_id"], ""))
      rows.append({"tone": tone,
                   "date": r.at[i, "timestamp"] if "timestamp" in r else pd.NaT,
                   "stars": r.at[i, "rating"] if "rating" in r else None,
                   "sentiment": r.at[i, "sentiment"], "aspects": r.at[i, "aspects"],
                   "review": body if len(body) <= max_chars else body[:max_chars] + "…"})
  return pd.DataFrame(rows)


def report_opinions(ws: Workspace, opinions: Opinions | None,
                     reviews: pd.DataFrame | None = None) -> None:
  if opinions is None:
    ws.add_text("opinions", "Not part of this report: no aspect lexicon for this language, or no "
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
  ws.add_table("opinions", table, "How often each aspect is mentioned and with which sentiment."
               + (" Each aspect links to its reviews." if links else ""), links=links)
  if opinions.metrics:
    ws.add_text("opinions", f"Aspect tagging checked on {opinions.metrics['labelled_sample']:,} "
                f"labelled reviews ({opinions.metrics['labels']}): precision "
                f"{opinions.metrics['precision']:.2f}, recall {opinions.metrics['recall']:.2f}.")


@dataclasses.dataclass
class Monitoring:
  weekly: pd.DataFrame  # per week (and category): reviews, share negative, mean rating
  flags: pd.DataFrame  # the weekly rows with their control band and status
  explanations: pd.DataFrame  # the reviews behind each flagged week (the three most telling)
  flag_reviews: pd.DataFrame  # the same, up to details.MAX_ROWS per week: the flag's page


def make_opinion_monitoring(review_scores: pd.DataFrame, tables: Tables) -> Monitoring | None:
  """Weekly share of negative reviews per category against a control band; None without dates.

  The band uses exact binomial limits: with a few reviews a week the normal approximation flags
  ten times too many weeks (measured by the module's tests).
  """
  from cvlib.insight import monitoring
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
  from cvlib.insight import monitoring
  from cvlib.report import plots
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

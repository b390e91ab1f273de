"""Stage 2, fine-tune (notebook 02): sentiment data, the encoder's path per language (masked-LM,
fine-tuning, the TF-IDF combination), review scores, text features per customer and the value
networks trained on them.

Each step takes its params section and its inputs; ``save_finetune`` writes what the later stages
read back with ``load_finetune``. JAX loads inside the steps that train or run the encoder.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from cvlib import config
from cvlib.data.adapters import Tables
from cvlib.data.split import Prepared
from cvlib.report.workspace import ENCODER_DIR, MODELS_DIR, TEXT_FEATURIZER_FILE, Workspace
from cvlib.stages.notes import NOT_APPLICABLE, optional, take_skipped
from cvlib.text import blend as blend_lib
from cvlib.text import labels as sentiment_labels
from cvlib.text import sentiment_baselines
from cvlib.value.networks import (E2E_MODEL, NETWORK_INPUTS, e2e_numeric, history_texts,
                                  train_value_networks, value_split)
from cvlib.value import sampling, text_features
from cvlib.value.text_features import CustomerText, TextFeaturizer


# The steps notebook 02 calls, in its order.
__all__ = [
    "make_sentiment_data", "describe_sentiment_data", "prepare_encoder", "plot_mlm",
    "fine_tune_sentiment", "combine_with_tfidf", "sentiment_metrics", "sentiment_table",
    "sentiment_word_effects", "compare_without_mlm", "score_reviews", "split_customers",
    "describe_training", "make_customer_text", "train_value_networks", "train_end_to_end",
    "save_finetune", "report_finetune", "load_finetune"
]


# --- 02 finetune: sentiment ---------------------------------------------------------------------

@dataclasses.dataclass
class SentimentData:
  """Labelled reviews split for fine-tuning and testing (stratified, seeded)."""
  class_names: list[str]
  train_texts: list[str]
  train_labels: np.ndarray
  val_texts: list[str]
  val_labels: np.ndarray
  test_texts: list[str]
  test_labels: np.ndarray
  n_labelled: int

  def summary(self) -> pd.DataFrame:
    rows = []
    for split, labels in (("train", self.train_labels), ("validation", self.val_labels),
                          ("test", self.test_labels)):
      counts = np.bincount(labels, minlength=len(self.class_names))
      rows.append({"split": split, "reviews": len(labels),
                   **{name: int(c) for name, c in zip(self.class_names, counts)}})
    return pd.DataFrame(rows)


def _text_key(text: str) -> str:
  """The text as the sentiment split compares it: Unicode NFKC, lower case, whitespace collapsed,
  trailing punctuation and spaces dropped ("Muito bom!" and "muito  bom" are one text)."""
  import unicodedata
  s = " ".join(unicodedata.normalize("NFKC", text).lower().split())
  end = len(s)
  while end and (s[end - 1] == " " or unicodedata.category(s[end - 1]).startswith("P")):
    end -= 1
  return s[:end]


def make_sentiment_data(cfg: config.FinetuneConfig, reviews: pd.DataFrame, *, seed: int,
                        min_per_class: int = 10) -> SentimentData | None:
  """Labels reviews from their ratings (``cfg.label_scheme``) and splits them: ``cfg.test_size``
  for test, 15% of the rest for validation, training capped at ``cfg.max_train_examples``.

  The split is by text: reviews whose texts are equal as :func:`_text_key` compares them ("Muito
  bom" from many customers, one review posted twice) form a group, and each group goes whole to
  one side of each split, so no test or validation text is also trained on. Groups are split
  stratified by their most common label (ties: the lower class); every copy keeps its own label,
  so a text whose copies disagree sits, with all its labels, on one side. The shares hold for
  texts exactly and for reviews approximately; the training cap samples reviews (stratified).

  Returns:
    The split, or None when fewer than ``min_per_class`` labelled reviews exist for some class, or
    when the texts are too few to split stratified (a class needs a text for each of the three
    sides).
  """
  from sklearn.model_selection import train_test_split

  has = reviews["text"].notna() & reviews["rating"].notna()
  r = reviews[has]
  if not len(r):
    return None
  label_scheme, test_size, max_train_examples = cfg.label_scheme, cfg.test_size, cfg.max_train_examples
  labels, keep = sentiment_labels.labels_from_ratings(r["rating"].to_numpy(), label_scheme)
  texts = r["text"].to_numpy()[keep].tolist()
  labels = np.asarray(labels)[keep]
  if len(labels) == 0:
    return None
  names = sentiment_labels.class_names(label_scheme)
  # group number per review, numbered in order of first appearance (deterministic for a seed)
  group = pd.factorize(pd.Series([_text_key(str(t)) for t in texts]))[0]
  votes = np.zeros((group.max() + 1, len(names)), np.int64)
  np.add.at(votes, (group, labels), 1)
  group_label = votes.argmax(axis=1)
  if (np.bincount(labels, minlength=len(names)).min() < min_per_class
      or np.bincount(group_label, minlength=len(names)).min() < 3):
    return None
  ids = np.arange(len(group_label))
  rng = np.random.default_rng(seed)
  try:
    rest, test = train_test_split(ids, test_size=test_size, stratify=group_label,
                                  random_state=seed)
    train, val = train_test_split(rest, test_size=0.15, stratify=group_label[rest],
                                  random_state=seed)
    # back from groups to their reviews, shuffled as a row split would leave them
    train, val, test = (rng.permutation(np.flatnonzero(np.isin(group, g)))
                        for g in (train, val, test))
    if max_train_examples and len(train) > max_train_examples:
      train, _ = train_test_split(train, train_size=max_train_examples, stratify=labels[train],
                                  random_state=seed)
  except ValueError:  # a few texts with many copies: too few to stratify
    return None
  pick = lambda ix: [texts[i] for i in ix]
  return SentimentData(names, pick(train), labels[train], pick(val), labels[val], pick(test),
                       labels[test], len(labels))


# Languages written without spaces between words: the bag-of-words baseline uses characters.
CHAR_LANGUAGES = ("zh", "ja", "th")


@optional("encoder + TF-IDF combination (the encoder scores reviews alone)")
def combine_with_tfidf(cfg, model: Any, tokenizer: Any, data: SentimentData | None, *,
                       language: str, seed: int) -> Any:
  """With ``finetune.blend.tfidf``: the encoder combined with TF-IDF + LR, weighted on validation.

  Returns:
    A ``blend_lib.SentimentBlend`` (the encoder's weight chosen on the validation reviews against
    TF-IDF fitted on the training reviews, then TF-IDF refitted on both), or None when off or
    without labelled reviews.
  """
  from cvlib.text import sentiment
  if data is None or not cfg.blend.tfidf:
    return None
  val_proba = sentiment.predict_proba(model, tokenizer, data.val_texts, buckets=cfg.buckets,
                                      truncation=cfg.truncation)
  return blend_lib.fit_blend(val_proba, data.train_texts, data.train_labels, data.val_texts,
                             data.val_labels, seed=seed,
                             analyzer="char" if language in CHAR_LANGUAGES else "word")


def sentiment_metrics(cfg: config.FinetuneConfig, model: Any, tokenizer: Any,
                      data: SentimentData | None, *, seed: int, language: str = "en",
                      encoder: Any = None, blend: Any = None) -> dict[str, Any] | None:
  """Test-set accuracy and macro-F1 of the model and of the two baselines (None without data).

  The lexicon baseline (VADER) reads English only; for other languages it is null, with a note.
  ``encoder`` (the ``prepare_encoder`` result) names the model and adds how it was made. With
  ``blend`` (:func:`combine_with_tfidf`) the combination's scores go under ``"combined"``; the
  top-level scores stay the encoder's own.
  """
  from cvlib.text import sentiment
  if data is None:
    return None
  label_scheme, buckets = cfg.label_scheme, cfg.buckets
  proba = sentiment.predict_proba(model, tokenizer, data.test_texts, buckets=buckets,
                                  truncation=cfg.truncation)
  pred = proba.argmax(axis=1)
  ours = sentiment_labels.classification_metrics(data.test_labels, pred)
  strip = lambda m: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
  vader = None
  if language == "en":
    vader = strip(sentiment_labels.classification_metrics(
        data.test_labels, sentiment_baselines.vader_predict(data.test_texts, label_scheme)))
  tfidf = sentiment_labels.classification_metrics(
      data.test_labels, sentiment_baselines.tfidf_logreg(
          data.train_texts + data.val_texts, np.concatenate([data.train_labels, data.val_labels]),
          data.test_texts, seed=seed,
          analyzer="char" if language in CHAR_LANGUAGES else "word"))
  name = encoder_name(encoder) if encoder is not None else "MiniLM-L6, fine-tuned"
  out = {"model": name, "label_scheme": label_scheme,
         "classes": data.class_names, "n_train": len(data.train_labels),
         "n_test": len(data.test_labels), **strip(ours),
         "baselines": {"lexicon": vader, "tfidf_logreg": strip(tfidf)}}
  from cvlib.text import devices
  out["device"] = {**devices.describe(data_mesh(cfg)),
                   "compute_dtype": str(model.bert.config.dtype)}
  if encoder is not None:
    # minus its run time: metrics.json must be identical for a seed apart from timing_s
    out["encoder"] = {"description": encoder.description,
                      **{k: v for k, v in encoder.details.items() if k != "seconds"}}
  if vader is None:
    out["notes"] = {"lexicon": f"VADER is an English lexicon; not run on language {language!r}"}
  if blend is not None:
    both = sentiment_labels.classification_metrics(
        data.test_labels, blend.proba(proba, data.test_texts).argmax(axis=1),
        num_classes=len(data.class_names))
    by_weight = blend.validation.set_index("weight")["macro_f1"]
    out["combined"] = {"model": f"{name} + TF-IDF + logistic regression",
                       "encoder_weight": blend.weight, **strip(both),
                       "validation_macro_f1": float(by_weight.loc[blend.weight]),
                       "validation_macro_f1_encoder_alone": float(by_weight.loc[1.0])}
  return out


def sentiment_table(metrics: dict[str, Any] | None) -> pd.DataFrame:
  if metrics is None:
    return pd.DataFrame()
  rows = [{"model": metrics["model"], "accuracy": metrics["accuracy"],
           "macro_f1": metrics["macro_f1"]}]
  names = {"lexicon": "VADER lexicon (no training)", "tfidf_logreg": "TF-IDF + logistic regression"}
  for key, m in metrics["baselines"].items():
    if m is not None:
      rows.append({"model": names.get(key, key), **m})
  both = metrics.get("combined")
  if both:
    rows.insert(1, {"model": f"the two combined (encoder weight {both['encoder_weight']:.2f}, "
                             "chosen on validation reviews)",
                    "accuracy": both["accuracy"], "macro_f1": both["macro_f1"]})
  return pd.DataFrame(rows)


def score_reviews(cfg: config.FinetuneConfig, model: Any, tokenizer: Any, reviews: pd.DataFrame,
                  *, blend: Any = None) -> tuple[pd.DataFrame, np.ndarray]:
  """Sentiment score in [-1, 1] and an embedding for every review with text (``cfg.buckets``).

  With ``blend`` (:func:`combine_with_tfidf`) the score and p_negative come from the combined
  probabilities; the embedding is the encoder's either way.

  Returns:
    (frame with review_id, customer_id, product_id, timestamp, rating, sentiment, p_negative;
    embeddings [n, hidden] in the frame's row order).
  """
  from cvlib.text import sentiment
  r = reviews[reviews["text"].notna()].reset_index(drop=True)
  proba, emb = sentiment.predict_proba_and_embed(model, tokenizer, r["text"].tolist(),
                                                 buckets=cfg.buckets, truncation=cfg.truncation)
  if blend is not None:
    proba = blend.proba(proba, r["text"].tolist())
  # positive minus negative probability: the same scale for the binary and 3-class schemes
  score = proba[:, -1] - proba[:, 0] if len(r) else np.zeros(0)
  cols = [c for c in ("review_id", "customer_id", "product_id", "timestamp", "rating")
          if c in r.columns]
  out = r[cols].copy()
  out["sentiment"] = score.astype("float64")
  out["p_negative"] = proba[:, 0].astype("float64") if len(r) else np.zeros(0)
  return out, emb.astype(np.float32)


# --- 02 finetune: customer value ----------------------------------------------------------------

def split_customers(cfg: config.ValueConfig, features: pd.DataFrame, *, seed: int) -> np.ndarray:
  """A seeded random customer split: True for the test customers (never seen in training).

  The ``cfg.test_size`` share is drawn at random. With ``cfg.train_sample`` below the number of
  customers left, the value models train on a stratified sample of that many of them
  (:func:`cvlib.value.sampling.training_sample`) and the rest join the test customers: every
  customer no model learnt from is reported on.
  """
  test_size = cfg.test_size
  rng = np.random.default_rng(seed)
  n = len(features)
  is_test = np.zeros(n, dtype=bool)
  is_test[rng.permutation(n)[: int(round(test_size * n))]] = True
  return ~sampling.training_sample(features, ~is_test, cfg.train_sample, seed + 4)


def describe_training(cfg: config.ValueConfig, features: pd.DataFrame,
                      is_test: np.ndarray) -> dict[str, Any] | None:
  """Which customers the value models learnt from, for metrics.json and the report.

  Returns:
    {"customers", "trained_on", "test_customers", "train_sample" (the param), "sample"
    ("all customers" or "stratified sample"), "strata" (null without a sample), "text"}; None
    without customers (no value models).
  """
  m, trained = len(features), int((~is_test).sum())
  if not m:
    return None
  pool = m - int(round(cfg.test_size * m))
  sampled = bool(cfg.train_sample) and cfg.train_sample < pool
  how = "stratified sample" if sampled else "all customers"
  text = (f"trained on {trained:,} of {m:,} customers ({how}"
          + (f" of the {pool:,} training customers; the other {m - trained:,} are test "
             "customers" if sampled else f"; the {m - trained:,} test customers held out")
          + ")")
  return {"customers": m, "trained_on": trained, "test_customers": m - trained,
          "train_sample": cfg.train_sample, "sample": how,
          "strata": sampling.STRATA if sampled else None, "text": text}


def describe_sentiment_data(data: SentimentData | None) -> pd.DataFrame | str:
  return data.summary() if data is not None else (
      "No reviews with both text and a rating (or too few per class): sentiment is skipped.")


def mlm_texts(reviews: pd.DataFrame, data: SentimentData | None) -> list[str]:
  """Review texts the encoder may learn from before fine-tuning: all but the sentiment test split.

  Unlabelled reviews (no rating, or a neutral one the label scheme drops) stay in: masked-LM needs
  no labels. Every copy of a test text (equal as the split compares texts, :func:`_text_key`) is
  left out, so the test split stays unseen.
  """
  texts = reviews["text"].dropna().astype(str)
  texts = texts[texts.str.strip() != ""].tolist()
  if data is None:
    return texts
  held_out = {_text_key(t) for t in data.test_texts}
  return [t for t in texts if _text_key(t) not in held_out]


def learns_from_scratch(cfg, language: str) -> bool:
  """True when the run learns its own vocabulary (``config.learns_own_vocabulary``)."""
  return config.learns_own_vocabulary(cfg, language)


def prepare_encoder(cfg, reviews: pd.DataFrame, data: SentimentData | None, *, language: str,
                    seed: int, mlm_steps: int | None = None, progress: bool = True):
  """The encoder to fine-tune: MiniLM, a folder's BERT, or a small BERT from scratch (see
  ``encoders.prepare_encoder``), with ``cfg.mlm.steps`` of masked-LM on ``mlm_texts`` first.

  A dataset without review text has nothing to pretrain on or to score: the pretrained MiniLM
  stands in, whatever the language.

  Returns:
    An ``encoders.EncoderResult``.
  """
  from cvlib.text import devices, encoders
  texts = mlm_texts(reviews, data)
  steps = cfg.mlm.steps if mlm_steps is None else mlm_steps
  encoder, lang = cfg.encoder, language
  if not texts:
    steps = 0
    if learns_from_scratch(cfg, language):
      encoder, lang = "minilm", "en"
  result = encoders.prepare_encoder(
      texts, language=lang, encoder=encoder, num_layers=cfg.num_layers, mlm_steps=steps,
      mlm_batch_size=cfg.mlm.batch_size, mlm_learning_rate=cfg.mlm.learning_rate,
      mlm_max_texts=cfg.mlm.max_texts, mask_rate=cfg.mlm.mask_rate,
      vocab_size=cfg.small_bert.vocab_size, small_layers=cfg.small_bert.layers,
      small_hidden=cfg.small_bert.hidden, small_heads=cfg.small_bert.heads,
      small_intermediate=cfg.small_bert.intermediate, buckets=cfg.buckets, dtype=cfg.dtype,
      seed=seed, progress=progress, mesh=data_mesh(cfg))
  if cfg.data_parallel:  # trained over the mesh; what follows runs on one device, as on a CPU
    devices.to_default_device(result.encoder)
  return result


def data_mesh(cfg: config.FinetuneConfig) -> Any:
  """With ``cfg.data_parallel``: a mesh over every local device, each training batch split over
  them (``cvlib.text.devices``); else None (the default device, the CPU path's results)."""
  if not cfg.data_parallel:
    return None
  from cvlib.text import devices
  return devices.make_mesh()


def device_note(device: dict[str, Any] | None) -> str:
  """" It ran on 1 CPU device (float32)." from metrics' sentiment.device; "" without it."""
  if not device:
    return ""
  n = device.get("devices", 1)
  kind = str(device.get("backend", "")).upper()
  return (f" It ran on {n} {kind} device{'s' if n != 1 else ''} ({device.get('kind')}, "
          f"{device.get('compute_dtype')} compute).")


def encoder_story(details: dict[str, Any] | None) -> str:
  """One plain sentence on where the sentiment model's language knowledge came from."""
  from cvlib.text import encoders
  if not details:
    return "A pretrained English language model (MiniLM) read the reviews."
  lang = encoders.LANGUAGE_NAMES.get(details.get("language"), details.get("language"))
  if details.get("kind") == "scratch":
    return (f"The pretrained English language model does not read {lang}, so a small language "
            f"model learnt this shop's own vocabulary and wording from {details['mlm_texts']:,} "
            "of its reviews (masked-word training).")
  if details.get("kind") == "transfer":
    return (f"A pretrained English language model (MiniLM) learnt to read {lang}: it was given "
            f"this shop's own vocabulary and trained on {details['mlm_texts']:,} of its reviews "
            "(masked-word training), keeping what it knew about how sentences work.")
  base = ("A pretrained English language model (MiniLM)" if details.get("kind") == "minilm"
          else "The pretrained language model given in the parameters")
  if details.get("mlm_steps"):
    return (f"{base} was first adapted to this shop's wording by masked-word training on "
            f"{details['mlm_texts']:,} of its reviews.")
  return f"{base} read the reviews."


def encoder_name(encoder) -> str:
  """A short name of a prepared encoder for tables: "MiniLM-L6 + domain MLM", "small BERT ..."."""
  if encoder.kind == "scratch":
    name = f"small BERT {encoder.config.num_layers}x{encoder.config.hidden_size} from scratch"
  elif encoder.kind == "transfer":
    name = "MiniLM-L6 layers, shop vocabulary"
  elif encoder.kind == "minilm":
    name = "MiniLM-L6"
  else:
    name = "BERT checkpoint"
  if encoder.mlm_history is not None and encoder.kind not in ("scratch", "transfer"):
    name += " + domain MLM"
  return name + ", fine-tuned"


def fine_tune_sentiment(cfg, data: SentimentData | None, encoder, *, seed: int):
  """Puts a classifier head on the prepared encoder and fine-tunes it on ``data``.

  Without labelled data the encoder is returned with an untrained head (its embeddings still
  feed the text-aware value model) and an empty history.

  Returns:
    (model, tokenizer, history DataFrame).
  """
  from cvlib.text import devices, sentiment
  n_labels = len(data.class_names) if data is not None else 2
  model = encoder.make_classifier(n_labels, seed=seed)
  if data is None:
    return model, encoder.tokenizer, pd.DataFrame()
  model, history = sentiment.finetune_sentiment(
      model, encoder.tokenizer, data.train_texts, data.train_labels, data.val_texts,
      data.val_labels, epochs=cfg.training.epochs, batch_size=cfg.training.batch_size,
      learning_rate=cfg.optimizer.learning_rate, warmup_ratio=cfg.optimizer.warmup_ratio,
      weight_decay=cfg.optimizer.weight_decay, patience=cfg.training.patience, seed=seed,
      buckets=cfg.buckets, truncation=cfg.truncation, mesh=data_mesh(cfg))
  if cfg.data_parallel:  # trained over the mesh; what follows runs on one device, as on a CPU
    devices.to_default_device(model)
  return model, encoder.tokenizer, history


@optional("with/without masked-LM comparison",
          fallback=lambda cfg, reviews, data, sent, **kw: sent)
def compare_without_mlm(cfg, reviews: pd.DataFrame, data: SentimentData | None,
                        sent: dict[str, Any] | None, *, language: str,
                        seed: int) -> dict[str, Any] | None:
  """With ``finetune.mlm.compare``: the downstream effect of the domain MLM.

  Fine-tunes the same pretrained encoder again, without MLM, with the same data, settings and
  seed, and scores it on the same test split.

  Returns:
    ``sent`` with "mlm_effect": {"with_mlm": {accuracy, macro_f1}, "without_mlm": {...},
    "macro_f1_gain", "accuracy_gain"}, or null when the comparison is off or does not apply.
  """
  from cvlib.text import sentiment
  if sent is None:
    return None
  if not cfg.mlm.compare or data is None:
    return {**sent, "mlm_effect": None}
  encoder = prepare_encoder(cfg, reviews, data, language=language, seed=seed, mlm_steps=0)
  model, tokenizer, _ = fine_tune_sentiment(cfg, data, encoder, seed=seed)
  proba = sentiment.predict_proba(model, tokenizer, data.test_texts, buckets=cfg.buckets,
                                  truncation=cfg.truncation)
  m = sentiment_labels.classification_metrics(data.test_labels, proba.argmax(axis=1))
  without = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
  with_mlm = {"accuracy": sent["accuracy"], "macro_f1": sent["macro_f1"]}
  return {**sent, "mlm_effect": {
      "with_mlm": with_mlm, "without_mlm": without,
      "macro_f1_gain": with_mlm["macro_f1"] - without["macro_f1"],
      "accuracy_gain": with_mlm["accuracy"] - without["accuracy"]}}


def plot_mlm(encoder) -> Any:
  """The masked-LM loss curve of the prepared encoder, or None when it had no MLM."""
  from cvlib.text import mlm
  if encoder.mlm_history is None or not len(encoder.mlm_history):
    return None
  return mlm.plot_mlm_history(encoder.mlm_history)


def save_finetune(ws: Workspace, model, tokenizer, history: pd.DataFrame, sent: dict | None,
                  review_scores: pd.DataFrame, embeddings: np.ndarray, is_test: np.ndarray,
                  text: CustomerText, networks: dict, encoder: Any = None,
                  e2e: tuple[Any, pd.DataFrame] | None = None, blend: Any = None,
                  training: dict | None = None) -> dict:
  """Writes the fine-tuned encoder (with its TF-IDF blend), the value networks, review scores and
  text features; ``training`` (:func:`describe_training`) goes to metrics.json as
  ``value_training``."""
  from cvlib.text import checkpoint
  checkpoint.save_encoder(model, model.bert.config, ws.path(MODELS_DIR, ENCODER_DIR),
                          tokenizer=tokenizer)
  if blend is not None:
    blend.save(ws.path(MODELS_DIR, ENCODER_DIR))
  for name, (predictor, hist) in networks.items():
    predictor.save(ws.path(MODELS_DIR, name))
    ws.save_frame(f"history_{name}", hist)
  ws.save_frame("finetune_history", history)
  if e2e is not None:
    e2e[0].save(ws.path(MODELS_DIR, E2E_MODEL))
    ws.save_frame(f"history_{E2E_MODEL}", e2e[1])
  if encoder is not None and encoder.mlm_history is not None:
    ws.save_frame("mlm_history", encoder.mlm_history)
  ws.save_frame("review_scores", review_scores)
  ws.save_array("review_embeddings", embeddings)
  ws.save_array("is_test", is_test)
  if text.calibration is not None:
    ws.save_frame("text_calibration", text.calibration)
    ws.save_frame("text_now", text.now)
    text.featurizer.save(ws.path(MODELS_DIR, TEXT_FEATURIZER_FILE))
  metrics = {"sentiment": sent}
  if training is not None:
    metrics["value_training"] = training
  if sent is None:
    metrics["notes"] = {"sentiment": NOT_APPLICABLE["sentiment"]}
  ws.save_metrics(metrics)
  return metrics


@optional("words behind the sentiment calls", fallback=lambda *a, **kw: pd.DataFrame())
def sentiment_word_effects(cfg: config.FinetuneConfig, model, tokenizer, data: SentimentData | None,
                           *, n: int = 3, top: int = 3, max_chars: int = 300) -> pd.DataFrame:
  """The words that moved the sentiment model on a few held-out reviews.

  Picks the ``n`` test reviews it calls most confidently for the first class (negative) and for
  the last (positive), and its ``n`` most confident mistakes; for each, every word is dropped in
  turn (:func:`cvlib.insight.explain.word_attributions`) and the ``top`` words that pushed hardest
  towards the predicted class and against it are listed with the change in probability.

  Returns:
    One row per review: case, predicted class, its probability, the true class, the words for and
    against, the review (cut at ``max_chars``); empty without test reviews.
  """
  from cvlib.insight import explain
  from cvlib.text import sentiment
  if data is None or not len(data.test_texts):
    return pd.DataFrame()
  buckets, truncation = cfg.buckets, cfg.truncation
  proba = sentiment.predict_proba(model, tokenizer, data.test_texts, buckets=buckets,
                                  truncation=truncation)
  pred, conf = proba.argmax(axis=1), proba.max(axis=1)
  truth = np.asarray(data.test_labels)
  last = proba.shape[1] - 1
  order = np.argsort(-conf, kind="stable")  # most confident first
  cases = [(f"confident {data.class_names[0]}", [i for i in order if pred[i] == 0 == truth[i]]),
           (f"confident {data.class_names[last]}",
            [i for i in order if pred[i] == last == truth[i]]),
           ("confident mistake", [i for i in order if pred[i] != truth[i]])]

  def words(scores: list[tuple[str, float]], sign: int) -> str:
    picked = sorted((x for x in scores if sign * x[1] > 0.005 and any(ch.isalnum() for ch in x[0])),
                    key=lambda x: -sign * x[1])[:top]  # words, not punctuation
    return ", ".join(f"{w} ({v:+.2f})" for w, v in picked)

  rows = []
  for case, picks in cases:
    for i in picks[:n]:
      text = data.test_texts[i]
      scores = explain.word_attributions(model, tokenizer, text, target_class=int(pred[i]),
                                         buckets=buckets, truncation=truncation)
      rows.append({"case": case, "predicted": data.class_names[pred[i]],
                   "probability": float(conf[i]), "true": data.class_names[truth[i]],
                   "words for it": words(scores, +1), "words against it": words(scores, -1),
                   "review": text if len(text) <= max_chars else text[:max_chars] + "…"})
  return pd.DataFrame(rows)


def report_finetune(ws: Workspace, sent: dict | None, figures: list, networks: dict,
                    word_effects: pd.DataFrame | None = None,
                    training: dict | None = None) -> None:
  ws.add_skipped(take_skipped())
  if networks:
    if training:
      ws.add_text("value", f"The value models were {training['text']}."
                  + (f" The sample keeps the share of each stratum: {training['strata']}. Every "
                     "customer is still scored; the back-test reports on customers outside the "
                     "sample, and the cross-fitted one on every customer, each predicted by "
                     "models trained on a sample that left them out." if training["strata"]
                     else ""))
    ws.add_figure("value", figures[1], "Value networks: ZILN loss per epoch; the kept epoch is "
                  "marked.")
  if sent is None:
    ws.add_text("sentiment", "This dataset has no reviews with both text and a star rating, so "
                "no sentiment model was trained.")
    return
  best_base = max((m for m in sent["baselines"].values() if m), key=lambda m: m["macro_f1"])
  both = sent.get("combined")
  used = both or sent  # what the review scores below come from
  ws.add_headline("sentiment macro-F1", f"{used['macro_f1']:.2f}",
                  (f"encoder alone {sent['macro_f1']:.2f}, " if both else "")
                  + f"best baseline {best_base['macro_f1']:.2f}")
  ws.add_text("sentiment", f"{encoder_story(sent.get('encoder'))} It was then fine-tuned on "
              f"{sent['n_train']:,} reviews to predict sentiment from the text "
              f"({', '.join(sent['classes'])}, from the star ratings) and tested on "
              f"{sent['n_test']:,} reviews it never saw.{device_note(sent.get('device'))}")
  ws.add_table("sentiment", sentiment_table(sent), "Sentiment on held-out reviews: the "
               "fine-tuned encoder against a word-list (lexicon) model and a bag-of-words model"
               + (", and the encoder and the bag-of-words model combined." if both else "."))
  if both:
    w = both["encoder_weight"]
    how = ("the encoder alone did best on the validation reviews, so review scores are the "
           "encoder's" if w >= 1.0 else
           f"review scores below mix the two: {w:.0%} the encoder's probabilities, {1 - w:.0%} "
           "the bag-of-words model's (trained on the same reviews)")
    ws.add_text("sentiment", f"Which model scores the reviews was settled on validation reviews, "
                f"before the test: {how}. Review embeddings are the encoder's either way.")
  if best_base["macro_f1"] > used["macro_f1"]:
    ws.add_text("sentiment", f"On this shop's reviews a simpler model reads sentiment better "
                f"(macro-F1 {best_base['macro_f1']:.2f} against {used['macro_f1']:.2f}); the "
                f"scores below are still {'the combination' if both else 'the encoder'}'s "
                "because they come with the review embeddings the value model reads, but treat "
                "single review scores with care.")
  effect = sent.get("mlm_effect")
  if effect:
    ws.add_table("sentiment", pd.DataFrame([
        {"encoder": "adapted to the shop's reviews first (domain MLM)", **effect["with_mlm"]},
        {"encoder": "fine-tuned directly", **effect["without_mlm"]}]),
        f"Does adapting to the shop's wording first help? Same held-out reviews, same settings: "
        f"macro-F1 {effect['macro_f1_gain']:+.3f}.")
  if len(figures) > 2 and figures[2] is not None:
    enc = sent.get("encoder") or {}
    ws.add_figure("sentiment", figures[2], "Masked-word training on the shop's reviews "
                  f"({enc.get('mlm_steps', 0):,} steps of {enc.get('mlm_batch_size', 0)} "
                  "reviews): loss (lower is better) and the share of hidden words guessed right.")
  ws.add_figure("sentiment", figures[0], "Fine-tuning: loss and validation macro-F1 per epoch.")
  if word_effects is not None and len(word_effects):
    moved = "encoder" if both else "model"
    ws.add_table("sentiment", word_effects, f"Which words moved the {moved}, on held-out reviews: "
                 "each word dropped in turn, with the change in the probability of the predicted "
                 "class (its most confident calls each way, and its most confident mistakes).",
                 floatfmt="{:.2f}")


@dataclasses.dataclass
class Finetuned:
  networks: dict
  is_test: np.ndarray
  text: CustomerText
  review_scores: pd.DataFrame
  e2e: Any = None  # the end-to-end model's E2EPredictor, when value.end_to_end trained one
  embeddings: np.ndarray | None = None  # review embeddings, rows of review_scores


def load_finetune(ws: Workspace) -> Finetuned:
  """What stage 2 left: value networks, test split, text features and review scores."""
  from cvlib.value import ziln
  networks = {}
  for name in NETWORK_INPUTS:
    folder = ws.root / MODELS_DIR / name
    if folder.exists():
      networks[name] = (ziln.ZILNPredictor.load(folder), ws.load_frame(f"history_{name}"))
  text = CustomerText(None, None, None)
  if ws.has("text_calibration"):
    text = CustomerText(TextFeaturizer.load(ws.root / MODELS_DIR / TEXT_FEATURIZER_FILE),
                        ws.load_frame("text_calibration"), ws.load_frame("text_now"))
  e2e = None
  if (ws.root / MODELS_DIR / E2E_MODEL).exists():
    from cvlib.value import history_text
    e2e = history_text.E2EPredictor.load(ws.root / MODELS_DIR / E2E_MODEL)
  return Finetuned(networks, ws.load_array("is_test"), text, ws.load_frame("review_scores"), e2e,
                   ws.load_array("review_embeddings"))


@optional("review text features of the value model",
          fallback=lambda *a, **kw: CustomerText(None, None, None))
def make_customer_text(cfg: config.ValueConfig, review_scores: pd.DataFrame, embeddings: np.ndarray,
                       prep: Prepared, is_test: np.ndarray, *, seed: int) -> CustomerText:
  """Text features per customer (``cfg.text_dims`` embedding directions, sentiment aggregates and
  the text return score), fitted on the training customers; all None without reviews before the
  cutoff (:func:`cvlib.value.text_features.make_customer_text`)."""
  return text_features.make_customer_text(review_scores, embeddings, prep, is_test,
                                          text_dims=cfg.text_dims, seed=seed)


@optional("end-to-end value model")
def train_end_to_end(cfg: config.ValueConfig, prep: Prepared, tables: Tables, model: Any,
                     tokenizer: Any, is_test: np.ndarray, *, seed: int
                     ) -> tuple[Any, pd.DataFrame] | None:
  """With ``value.end_to_end``: the end-to-end value model on the training customers.

  The encoder starts from ``model`` (the fine-tuned sentiment classifier's encoder). Training and
  validation customers are the same as the value networks'.

  Returns:
    (E2EPredictor, history), or None when off or there are no customers.
  """
  from cvlib.value import history_text
  if not cfg.end_to_end or not prep.has_customers or not len(prep.features):
    return None
  y = prep.features["holdout_value"].to_numpy(np.float64)
  fit_idx, val_idx = value_split(is_test, seed)
  if cfg.e2e_max_customers and len(fit_idx) > cfg.e2e_max_customers:
    rng = np.random.default_rng(seed + 2)
    fit_idx = np.sort(rng.choice(fit_idx, cfg.e2e_max_customers, replace=False))
  texts = history_texts(prep, tables, max_chars=cfg.e2e_max_chars)
  numeric = e2e_numeric(prep.features)
  pick = lambda ix: [texts[i] for i in ix]  # noqa: E731
  return history_text.train_e2e_ziln(
      pick(fit_idx), numeric.iloc[fit_idx], y[fit_idx], pick(val_idx), numeric.iloc[val_idx],
      y[val_idx], encoder_model=model, tokenizer=tokenizer, epochs=cfg.e2e_epochs,
      batch_size=cfg.e2e_batch_size, learning_rate=cfg.e2e_learning_rate,
      head_learning_rate=cfg.e2e_head_learning_rate, seed=seed)

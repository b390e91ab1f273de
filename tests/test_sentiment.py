"""Tests for cvlib.text.sentiment: labels, optimiser, steps, fine-tuning, prediction and baselines."""

import dataclasses

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from sklearn.utils.class_weight import compute_class_weight

from cvlib import training
from cvlib.text import bert, checkpoint, sentiment, sentiment_baselines, tokens
from cvlib.text import blend as blend_lib
from cvlib.text import labels as sentiment_labels

POSITIVE = ["great", "excellent", "wonderful", "perfect", "lovely", "fantastic", "amazing"]
NEGATIVE = ["terrible", "awful", "broken", "horrible", "useless", "disappointing", "bad"]
THINGS = ["product", "dress", "delivery", "shoes", "service", "package", "phone case", "jacket"]


def _polar_reviews(n, seed, positive_share=0.7):
  """Clearly polar synthetic reviews, imbalanced towards positive like real shops."""
  rng = np.random.default_rng(seed)
  texts, labels = [], []
  for _ in range(n):
    y = int(rng.random() < positive_share)
    word, thing = rng.choice(POSITIVE if y else NEGATIVE), rng.choice(THINGS)
    if rng.random() < 0.5:
      texts.append(f"the {thing} was {word}")
    else:
      texts.append(f"{word} {thing}, {'would buy again' if y else 'I want a refund'}")
    labels.append(y)
  return texts, np.asarray(labels)


@pytest.fixture(scope="module")
def tokenizer():
  return tokens.load_tokenizer()


# ----------------------------------------------------------------------------------------------
# Labels


def test_labels_from_ratings_schemes():
  ratings = [1, 2, 3, 4, 5, np.nan, 2.5]
  labels, keep = sentiment_labels.labels_from_ratings(ratings, "binary")
  np.testing.assert_array_equal(labels, [0, 0, -1, 1, 1, -1, -1])
  np.testing.assert_array_equal(keep, [1, 1, 0, 1, 1, 0, 0])
  labels, keep = sentiment_labels.labels_from_ratings(ratings, "binary_keep_neutral")
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, -1, 0])
  labels, keep = sentiment_labels.labels_from_ratings(ratings, "three_class")
  np.testing.assert_array_equal(labels, [0, 0, 1, 2, 2, -1, 1])
  np.testing.assert_array_equal(keep, labels >= 0)
  nullable = pd.Series([5, None, 1], dtype="Float64")
  np.testing.assert_array_equal(sentiment_labels.labels_from_ratings(nullable)[0], [1, -1, 0])
  assert sentiment_labels.class_names("three_class") == ["negative", "neutral", "positive"]
  assert sentiment_labels.class_names("binary") == ["negative", "positive"]


def test_labels_from_ratings_validation():
  with pytest.raises(ValueError, match="scheme must be one of binary, binary_keep_neutral, "
                                       "three_class; got 'five_class'"):
    sentiment_labels.labels_from_ratings([1, 5], "five_class")
  with pytest.raises(ValueError, match=r"ratings must lie in \[1, 5\]; got \[0.0, 6.0\]"):
    sentiment_labels.labels_from_ratings([0, 3, 6])
  with pytest.raises(ValueError, match="scheme must be one of"):
    sentiment_labels.class_names("stars")


def test_class_weights_are_balanced():
  labels = np.array([1] * 8 + [0] * 2)
  weights = sentiment.compute_class_weights(labels, 2)
  np.testing.assert_allclose(weights, [2.5, 0.625])
  np.testing.assert_allclose(weights, compute_class_weight("balanced", classes=np.arange(2),
                                                           y=labels), rtol=1e-6)
  # Weighted class totals are equal: each class counts as much as the other.
  assert weights[0] * 2 == pytest.approx(weights[1] * 8)
  with pytest.warns(UserWarning, match=r"classes \[1\] have no training example"):
    np.testing.assert_allclose(sentiment.compute_class_weights([0, 0, 2], 3), [0.5, 0.0, 1.0])
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
    sentiment.compute_class_weights([0, 2], 2)


# ----------------------------------------------------------------------------------------------
# Optimiser


def test_schedule_warmup_and_decay():
  linear = training.make_schedule(learning_rate=1.0, warmup_steps=4, total_steps=14)
  np.testing.assert_allclose([float(linear(s)) for s in (0, 3, 4, 9, 14)],
                             [0.25, 1.0, 1.0, 0.5, 0.0], atol=1e-6)
  cosine = training.make_schedule(learning_rate=2.0, warmup_steps=0, total_steps=10,
                                   decay="cosine")
  np.testing.assert_allclose([float(cosine(s)) for s in (0, 5, 10)], [2.0, 1.0, 0.0], atol=1e-6)
  with pytest.raises(ValueError, match="decay must be 'linear' or 'cosine'"):
    training.make_schedule(learning_rate=1.0, warmup_steps=0, total_steps=1, decay="step")


@pytest.mark.parametrize("kwargs, match", [
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"warmup_steps": 20}, r"warmup_steps must be an int in \[0, total_steps=10\]"),
    ({"max_grad_norm": -1.0}, "max_grad_norm must be > 0 or None"),
    ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
])
def test_make_optimizer_validation(kwargs, match):
  args = {"learning_rate": 1e-3, "warmup_steps": 1, "total_steps": 10, "weight_decay": 0.01,
          "max_grad_norm": 1.0, **kwargs}
  with pytest.raises(ValueError, match=match):
    training.make_optimizer(**args)


def test_weight_decay_mask_skips_biases_and_layer_norm():
  model = bert.BertForSequenceClassification(bert.BertConfig.tiny(), 2, rngs=nnx.Rngs(0))
  mask = training.decay_mask(nnx.state(model, nnx.Param))
  flat = {".".join(map(str, p)): v for p, v in nnx.to_flat_state(mask)}
  flat = {k: bool(v.get_value() if hasattr(v, "get_value") else v) for k, v in flat.items()}
  assert flat["classifier.kernel"] and flat["bert.embeddings.word_embeddings.embedding"]
  assert flat["bert.encoder.layer.0.attention.self_attn.query.kernel"]
  assert not flat["classifier.bias"] and not flat["bert.embeddings.LayerNorm.scale"]
  assert not flat["bert.encoder.layer.1.output.LayerNorm.bias"]
  decayed = {k for k, v in flat.items() if v}
  assert all(k.endswith(("kernel", "embedding")) for k in decayed)


# ----------------------------------------------------------------------------------------------
# Steps


def _tiny_batch(config, num_labels=3, batch=4, seq=8, seed=0):
  rng = np.random.default_rng(seed)
  mask = (np.arange(seq)[None] < np.array([8, 5, 3, 1])[:, None]).astype(np.int32)
  return {"input_ids": jnp.asarray(rng.integers(1, config.vocab_size, (batch, seq)) * mask,
                                   jnp.int32),
          "attention_mask": jnp.asarray(mask),
          "label": jnp.asarray(np.arange(batch) % num_labels, jnp.int32),
          "weight": jnp.asarray([1.0, 2.0, 0.5, 0.0], jnp.float32)}


def test_train_step_changes_every_parameter():
  config = bert.BertConfig.tiny(vocab_size=40)  # 2 layers: parameters in a list of layers too
  model = bert.BertForSequenceClassification(config, 3, rngs=nnx.Rngs(0))
  batch = _tiny_batch(config)
  batch["input_ids"] = batch["input_ids"].at[0].set(jnp.arange(8) % 40)
  before = jax.device_get(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  tx = training.make_optimizer(learning_rate=1e-3, warmup_steps=0, total_steps=10,
                                weight_decay=0.01, max_grad_norm=1.0)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  loss = sentiment.train_step(model, optimizer, batch)
  assert np.isfinite(float(loss))
  after = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  unchanged = []
  for path, var in before:
    old, new = np.asarray(var.get_value()), np.asarray(after[path].get_value())
    if path[-1] == "embedding" and "word_embeddings" in path:
      # Only rows of ids in the batch get gradients; weight decay moves the rest a little.
      continue
    if np.array_equal(old, new):
      unchanged.append(".".join(map(str, path)))
  assert not unchanged, f"train_step left {unchanged} unchanged"
  words_old = np.asarray(dict(before)[("bert", "embeddings", "word_embeddings", "embedding")]
                         .get_value())
  words_new = np.asarray(after[("bert", "embeddings", "word_embeddings", "embedding")].get_value())
  assert not np.array_equal(words_old[:8], words_new[:8])
  assert int(optimizer.step[...]) == 1


def test_loss_is_weighted_cross_entropy():
  config = dataclasses.replace(bert.BertConfig.tiny(vocab_size=40), hidden_dropout=0.0,
                               attention_dropout=0.0)
  model = bert.BertForSequenceClassification(config, 3, rngs=nnx.Rngs(0))
  batch = _tiny_batch(config)
  loss, logits = sentiment.loss_fn(model, batch)
  logits = np.asarray(logits, np.float64)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  ce = -logp[np.arange(4), np.asarray(batch["label"])]
  w = np.asarray(batch["weight"])
  assert float(loss) == pytest.approx((w * ce).sum() / w.sum(), rel=1e-5)
  # A weight-0 (filler) row cannot move the loss, whatever its label.
  batch2 = {**batch, "label": batch["label"].at[3].set(0)}
  assert float(sentiment.loss_fn(model, batch2)[0]) == pytest.approx(float(loss), rel=1e-6)
  row_ce, eval_logits = sentiment.eval_step(model, batch)
  np.testing.assert_allclose(np.asarray(row_ce), ce, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(eval_logits), logits, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Fine-tuning


def _finetune(tokenizer, train, val, **kwargs):
  model, _ = checkpoint.load_classifier(2, num_layers=1, seed=0)
  args = {"epochs": 2, "batch_size": 16, "learning_rate": 1e-4, "seed": 0, "progress": False,
          **kwargs}
  return sentiment.finetune_sentiment(model, tokenizer, *train, *val, **args)


def test_finetune_learns_and_is_deterministic(tokenizer):
  train, val = _polar_reviews(200, seed=1), _polar_reviews(60, seed=2)
  model_a, history = _finetune(tokenizer, train, val)
  model_b, history_b = _finetune(tokenizer, train, val)
  assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_accuracy",
                                   "val_macro_f1", "learning_rate", "seconds", "best"]
  assert len(history) == 2 and history["best"].sum() == 1
  assert history["val_macro_f1"].max() > 0.8
  pd.testing.assert_frame_equal(history.drop(columns="seconds"),
                                history_b.drop(columns="seconds"))
  for a, b in zip(jax.tree.leaves(nnx.state(model_a, nnx.Param)),
                  jax.tree.leaves(nnx.state(model_b, nnx.Param))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  # Prediction: probabilities in input order, matching the history's best macro-F1.
  proba = sentiment.predict_proba(model_a, tokenizer, val[0])
  assert proba.shape == (60, 2)
  np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
  metrics = sentiment_labels.classification_metrics(val[1], proba.argmax(1))
  assert metrics["macro_f1"] == pytest.approx(history["val_macro_f1"].max())
  reordered = sentiment.predict_proba(model_a, tokenizer, val[0][::-1])
  np.testing.assert_allclose(reordered, proba[::-1], atol=1e-6)

  emb = sentiment.encode_texts(model_a, tokenizer, val[0][:5])
  assert emb.shape == (5, 384)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_predict_proba_and_embed_is_both_in_one_pass(tokenizer, pooling):
  config = bert.BertConfig.tiny(vocab_size=tokenizer.get_vocab_size())
  model = bert.BertForSequenceClassification(config, 3, rngs=nnx.Rngs(0), pooling=pooling)
  texts = ["good", "a much longer review about the delivery", "bad"]
  proba, emb = sentiment.predict_proba_and_embed(model, tokenizer, texts)
  np.testing.assert_allclose(proba, sentiment.predict_proba(model, tokenizer, texts), atol=1e-6)
  np.testing.assert_allclose(emb, sentiment.encode_texts(model, tokenizer, texts), atol=1e-6)
  assert proba.shape == (3, 3) and emb.shape == (3, 32)


def test_finetune_early_stops_and_keeps_best(tokenizer, capsys):
  """With a learning rate too small to change any prediction, F1 never improves after epoch 1."""
  train, val = _polar_reviews(24, seed=3), _polar_reviews(8, seed=4)
  config = dataclasses.replace(bert.BertConfig.tiny(vocab_size=tokenizer.get_vocab_size()),
                               num_layers=1)  # one layer compiles faster
  model = bert.BertForSequenceClassification(config, 2, rngs=nnx.Rngs(0))
  model, history = sentiment.finetune_sentiment(
      model, tokenizer, *train, *val, epochs=5, batch_size=8, learning_rate=1e-12, patience=1,
      seed=0, progress=True, log_every_s=0.0, buckets=(16,))
  assert len(history) == 2 and history["best"].tolist() == [True, False]
  # Progress: plain lines for papermill logs, no carriage-return progress bars.
  out = capsys.readouterr().out
  assert "\r" not in out and "epoch 1/5 step 1/3 loss" in out
  assert "epoch 2/5: train loss" in out and "early stop" in out


def test_finetune_trains_only_what_trainable_accepts(tokenizer):
  """Parameter-efficient fine-tuning: the parameters ``trainable`` rejects keep their values."""
  train, val = _polar_reviews(24, seed=3), _polar_reviews(8, seed=4)
  config = dataclasses.replace(bert.BertConfig.tiny(vocab_size=tokenizer.get_vocab_size()),
                               num_layers=1)
  model = bert.BertForSequenceClassification(config, 2, rngs=nnx.Rngs(0))
  before = {k: np.asarray(v[...]).copy() for k, v in checkpoint.flat_params(model).items()}
  trainable = lambda path: path.startswith("classifier.") or path.endswith(".bias")
  model, _ = sentiment.finetune_sentiment(
      model, tokenizer, *train, *val, epochs=1, batch_size=8, learning_rate=1e-2,
      seed=0, progress=False, buckets=(16,), trainable=trainable)
  after = {k: np.asarray(v[...]) for k, v in checkpoint.flat_params(model).items()}
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  assert changed and all(trainable(k) for k in changed)
  assert "classifier.kernel" in changed and "bert.encoder.layer.0.output.dense.bias" in changed
  assert "bert.encoder.layer.0.output.dense.kernel" not in changed


def test_finetune_validation(tokenizer):
  model = bert.BertForSequenceClassification(bert.BertConfig.tiny(vocab_size=30522), 2,
                                             rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"train: labels must be ints in \[0, 2\)"):
    sentiment.finetune_sentiment(model, tokenizer, ["a", "b"], [0, 2], ["c"], [0], epochs=1,
                                 batch_size=2, learning_rate=1e-3)
  with pytest.raises(ValueError, match="validation: 1 texts but labels of shape"):
    sentiment.finetune_sentiment(model, tokenizer, ["a", "b"], [0, 1], ["c"], [0, 1], epochs=1,
                                 batch_size=2, learning_rate=1e-3)
  with pytest.raises(ValueError, match="epochs must be an int >= 1"):
    sentiment.finetune_sentiment(model, tokenizer, ["a", "b"], [0, 1], ["c"], [0], epochs=0,
                                 batch_size=2, learning_rate=1e-3)


# ----------------------------------------------------------------------------------------------
# Baselines, metrics, plots


def test_vader_predict():
  texts = ["I love this, it is great!", "Terrible, awful, broken.", "The box is brown."]
  np.testing.assert_array_equal(sentiment_baselines.vader_predict(texts, "three_class"), [2, 0, 1])
  np.testing.assert_array_equal(sentiment_baselines.vader_predict(texts, "binary"), [1, 0, 0])
  with pytest.raises(ValueError, match="scheme must be one of"):
    sentiment_baselines.vader_predict(texts, "stars")


def test_tfidf_logreg():
  (train_x, train_y), (test_x, test_y) = _polar_reviews(200, seed=1), _polar_reviews(60, seed=2)
  pred = sentiment_baselines.tfidf_logreg(train_x, train_y, test_x, seed=0)
  assert pred.shape == (60,)
  assert sentiment_labels.classification_metrics(test_y, pred)["macro_f1"] > 0.9
  with pytest.raises(ValueError, match="at least two classes"):
    sentiment_baselines.tfidf_logreg(["a", "b"], [1, 1], ["c"])
  fitted = sentiment_baselines.fit_tfidf_logreg(train_x, train_y, seed=0)
  proba = fitted.predict_proba(test_x)
  assert proba.shape == (60, 2) and np.allclose(proba.sum(1), 1.0)
  np.testing.assert_array_equal(proba.argmax(1), pred)
  with pytest.raises(ValueError, match="200 training texts but 3 labels"):
    sentiment_baselines.fit_tfidf_logreg(train_x, [0, 1, 0])


def test_classification_metrics():
  assert sentiment_labels.classification_metrics([0, 1, 1], [0, 1, 1]) == {
      "accuracy": 1.0, "macro_f1": 1.0, "n": 3}
  # Always predicting the majority class: accuracy 0.75, F1 (0 + 6/7) / 2.
  m = sentiment_labels.classification_metrics([0, 1, 1, 1], [1, 1, 1, 1])
  assert m["accuracy"] == 0.75 and m["macro_f1"] == pytest.approx(3 / 7)
  assert sentiment_labels.classification_metrics([0, 0], [0, 0], num_classes=2)["macro_f1"] == 0.5
  with pytest.raises(ValueError, match="equal length"):
    sentiment_labels.classification_metrics([0, 1], [0])


def test_plot_history():
  history = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.6, 0.4], "val_loss": [0.5, 0.45],
                          "val_macro_f1": [0.7, 0.8], "best": [False, True]})
  fig = sentiment.plot_history(history)
  assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
  assert len(fig.axes[0].lines) == 2
  with pytest.raises(ValueError, match=r"history lacks columns \['val_macro_f1'\]"):
    sentiment.plot_history(history.drop(columns="val_macro_f1"))


def test_tfidf_char_analyzer_reads_text_without_spaces():
  train = ["很好用非常满意", "质量很好喜欢", "太差了退货", "质量差不满意"] * 5
  labels = np.array([1, 1, 0, 0] * 5)
  pred = sentiment_baselines.tfidf_logreg(train, labels, ["非常满意很好", "太差了"], seed=0, analyzer="char")
  assert pred.tolist() == [1, 0]
  with pytest.raises(ValueError, match="analyzer must be 'word' or 'char'"):
    sentiment_baselines.tfidf_logreg(train, labels, ["x"], analyzer="bytes")


def test_finetune_writes_orbax_checkpoints_and_restores_the_best(tokenizer, tmp_path):
  train, val = _polar_reviews(24, seed=3), _polar_reviews(16, seed=4)
  config = dataclasses.replace(bert.BertConfig.tiny(vocab_size=tokenizer.get_vocab_size()),
                               num_layers=1)
  model = bert.BertForSequenceClassification(config, 2, rngs=nnx.Rngs(0))
  model, history = sentiment.finetune_sentiment(
      model, tokenizer, *train, *val, epochs=3, batch_size=8, learning_rate=3e-3, patience=None,
      seed=0, progress=False, buckets=(16,), checkpoint_dir=tmp_path / "ckpt")
  best_epoch = int(history.loc[history["best"], "epoch"].iloc[0])
  best = checkpoint.Checkpoints(tmp_path / "ckpt" / "best", best_metric="val_macro_f1")
  last = checkpoint.Checkpoints(tmp_path / "ckpt" / "last")
  assert best.steps == [best_epoch] and last.steps == [3]
  fresh = bert.BertForSequenceClassification(config, 2, rngs=nnx.Rngs(9))
  best.restore(fresh)
  for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)),
                  jax.tree.leaves(nnx.state(fresh, nnx.Param))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the model returned is the best


# ----------------------------------------------------------------------------------------------
# The encoder combined with TF-IDF


def test_blend_leans_on_tfidf_when_the_encoder_guesses_and_keeps_a_perfect_encoder():
  (train_x, train_y), (val_x, val_y) = _polar_reviews(200, seed=1), _polar_reviews(80, seed=2)
  rng = np.random.default_rng(0)
  noise = rng.dirichlet([1.0, 1.0], size=len(val_y))  # an encoder that learnt nothing
  blend = blend_lib.fit_blend(noise, train_x, train_y, val_x, val_y, seed=0)
  assert blend.weight <= 0.5
  assert list(blend.validation.columns) == ["weight", "accuracy", "macro_f1"]
  assert len(blend.validation) == len(blend_lib.BLEND_WEIGHTS)
  chosen = blend.validation.set_index("weight").loc[blend.weight, "macro_f1"]
  assert chosen == blend.validation["macro_f1"].max() > 0.9
  perfect = np.eye(2)[val_y] * 0.98 + 0.01
  blend = blend_lib.fit_blend(perfect, train_x, train_y, val_x, val_y, seed=0)
  assert blend.weight == 1.0  # ties go to the encoder
  np.testing.assert_array_equal(blend.proba(perfect, val_x), perfect)


def test_blend_keeps_tfidf_refitted_on_training_and_validation_reviews():
  (train_x, train_y), (val_x, val_y) = _polar_reviews(120, seed=1), _polar_reviews(60, seed=2)
  noise = np.random.default_rng(0).dirichlet([1.0, 1.0], size=len(val_y))
  blend = blend_lib.fit_blend(noise, train_x, train_y, val_x, val_y, seed=0)
  assert blend.weight < 1.0
  both = sentiment_baselines.fit_tfidf_logreg([*train_x, *val_x], np.concatenate([train_y, val_y]), 0)
  train_only = sentiment_baselines.fit_tfidf_logreg(train_x, train_y, 0)
  new = _polar_reviews(30, seed=3)[0]
  np.testing.assert_allclose(blend.tfidf.predict_proba(new), both.predict_proba(new))
  assert len(blend.tfidf.named_steps["tfidf"].vocabulary_) > len(
      train_only.named_steps["tfidf"].vocabulary_)  # words seen only in validation are known
  # The weight was chosen with the training-only model: the table says so.
  w = blend.validation.set_index("weight")
  tfidf_val = train_only.predict_proba(val_x)
  mix = (blend.weight * noise + (1 - blend.weight) * tfidf_val).argmax(1)
  assert w.loc[blend.weight, "accuracy"] == pytest.approx(np.mean(mix == val_y))


def test_blend_proba_mixes_the_two_models():
  (train_x, train_y), (val_x, val_y) = _polar_reviews(200, seed=1), _polar_reviews(40, seed=2)
  enc = np.random.default_rng(1).dirichlet([1.0, 1.0], size=len(val_y))
  blend = blend_lib.fit_blend(enc, train_x, train_y, val_x, val_y, seed=0)
  blend.weight = 0.3
  tfidf = blend.tfidf.predict_proba(val_x)
  np.testing.assert_allclose(blend.proba(enc, val_x), 0.3 * enc + 0.7 * tfidf)
  assert blend.proba(np.zeros((0, 2)), []).shape == (0, 2)
  with pytest.raises(ValueError, match="3 encoder rows but 40 texts"):
    blend.proba(enc[:3], val_x)


def test_blend_save_and_load_give_the_same_probabilities(tmp_path):
  train = ["很好用非常满意", "质量很好喜欢", "太差了退货", "质量差不满意", "物流慢\n但是好"] * 6
  labels = np.array([1, 1, 0, 0, 1] * 6)
  val = ["非常满意很好", "太差了", "不满意", "喜欢"]
  enc = np.array([[0.4, 0.6], [0.7, 0.3], [0.45, 0.55], [0.2, 0.8]])
  blend = blend_lib.fit_blend(enc, train, labels, val, [1, 0, 0, 1], seed=0, analyzer="char")
  blend.weight = 0.4
  path = blend.save(tmp_path / "enc")
  assert path.name == blend_lib.BLEND_FILE
  loaded = blend_lib.SentimentBlend.load(tmp_path / "enc")
  new = ["满意", "退货了，太差", "unseen words 好"]
  enc_new = np.full((3, 2), 0.5)
  np.testing.assert_allclose(loaded.proba(enc_new, new), blend.proba(enc_new, new), rtol=1e-12)
  assert loaded.weight == 0.4
  pd.testing.assert_frame_equal(loaded.validation, blend.validation)
  assert blend_lib.SentimentBlend.load(tmp_path / "none") is None
  with np.load(path, allow_pickle=False) as z:  # plain arrays: no pickle needed to read it
    assert z["coef"].shape[0] == 1


def test_fit_blend_rejects_bad_inputs():
  (train_x, train_y), (val_x, val_y) = _polar_reviews(60, seed=1), _polar_reviews(10, seed=2)
  with pytest.raises(ValueError, match=r"must be \[len\(val_texts\)=10, classes\]"):
    blend_lib.fit_blend(np.ones((9, 2)) / 2, train_x, train_y, val_x, val_y)
  with pytest.raises(ValueError, match="every class 0..2"):
    blend_lib.fit_blend(np.ones((10, 3)) / 3, train_x, train_y, val_x, val_y)
  with pytest.raises(ValueError, match="no validation texts"):
    blend_lib.fit_blend(np.ones((0, 2)), train_x, train_y, [], [])

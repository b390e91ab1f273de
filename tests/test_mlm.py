"""Tests for cvlib.text.mlm: BERT masking, the MLM step and loop, handing the encoder on."""

import dataclasses

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from tokenizers import Tokenizer, models

from cvlib.text import bert, mlm, wordpiece

SPECIAL = [0, 1, 2, 3, 4]  # [PAD] [UNK] [CLS] [SEP] [MASK], as wordpiece.train_wordpiece numbers
MASK_ID = 4
VOCAB = 500


def _random_batch(batch=4000, seq=64, seed=0):
  """[CLS] w w ... [SEP] [PAD]...: random lengths, some [UNK]s among the words."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, seq + 1, batch)
  ids = rng.integers(5, VOCAB, (batch, seq))
  ids[rng.random((batch, seq)) < 0.02] = 1  # [UNK]
  pos = np.arange(seq)[None]
  ids = np.where(pos < lengths[:, None], ids, 0)
  ids[:, 0] = 2
  ids[np.arange(batch), lengths - 1] = 3
  return ids.astype(np.int32), (pos < lengths[:, None]).astype(np.int32)


def _mask(ids, mask, seed=0, **kwargs):
  return mlm.mask_tokens(ids, mask, rng=np.random.default_rng(seed), mask_id=MASK_ID,
                         special_ids=SPECIAL, vocab_size=VOCAB, **kwargs)


def test_masking_statistics_on_a_large_batch():
  ids, mask = _random_batch()
  out = _mask(ids, mask)
  maskable = (mask > 0) & ~np.isin(ids, SPECIAL)
  chosen = out["labels"] != mlm.IGNORE_LABEL
  assert not (chosen & ~maskable).any()  # never a special token or padding
  assert abs(chosen.sum() / maskable.sum() - 0.15) < 0.005  # 15% of the ordinary tokens
  # Short rows too get 15% on average (stochastic rounding), not 0 or a rounded-up share.
  short = maskable.sum(1) <= 5
  assert abs(chosen[short].sum() / maskable[short].sum() - 0.15) < 0.03
  # 80% [MASK], 10% random token, 10% unchanged.
  new = out["input_ids"][chosen]
  old = ids[chosen]
  share_mask = np.mean(new == MASK_ID)
  share_same = np.mean(new == old)
  share_random = np.mean((new != MASK_ID) & (new != old))
  assert abs(share_mask - 0.8) < 0.01 and abs(share_random - 0.1) < 0.01
  assert abs(share_same - 0.1) < 0.01  # (a random pick equal to the original counts here: 0.2%)
  assert not np.isin(new[(new != MASK_ID) & (new != old)], SPECIAL).any()
  # Everything that is not a target is untouched and labelled IGNORE_LABEL.
  np.testing.assert_array_equal(out["input_ids"][~chosen], ids[~chosen])
  np.testing.assert_array_equal(out["labels"][chosen], ids[chosen])
  assert (out["labels"][~chosen] == -100).all()


def test_gathered_targets_match_labels():
  ids, mask = _random_batch(batch=300, seq=32, seed=1)
  out = _mask(ids, mask, seed=1)
  assert out["masked_positions"].shape == (300, mlm.max_predictions(32)) == (300, 5)
  for row in range(300):
    positions = np.flatnonzero(out["labels"][row] != -100)
    k = len(positions)
    np.testing.assert_array_equal(out["masked_positions"][row, :k], positions)
    np.testing.assert_array_equal(out["masked_ids"][row, :k], ids[row, positions])
    assert out["masked_weights"][row, :k].tolist() == [1.0] * k
    assert not out["masked_weights"][row, k:].any() and not out["masked_positions"][row, k:].any()


def test_masking_is_deterministic_for_a_seed():
  ids, mask = _random_batch(batch=50, seq=16)
  a, b, c = _mask(ids, mask, seed=3), _mask(ids, mask, seed=3), _mask(ids, mask, seed=4)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["labels"], c["labels"])


def test_masking_validation():
  ids, mask = _random_batch(batch=2, seq=8)
  with pytest.raises(ValueError, match=r"mask_rate must be in \(0, 1\)"):
    _mask(ids, mask, mask_rate=0.0)
  with pytest.raises(ValueError, match="must be >= 0 with a sum <= 1"):
    _mask(ids, mask, replace_mask=0.95, replace_random=0.1)
  with pytest.raises(ValueError, match="must be the same"):
    _mask(ids, mask[:, :4])


def test_masked_positions_logits_equal_full_logits():
  config = bert.BertConfig.tiny(vocab_size=VOCAB)
  model = bert.BertForMaskedLM(config, rngs=nnx.Rngs(0))
  ids, mask = _random_batch(batch=3, seq=10, seed=2)
  positions = jnp.asarray([[1, 2], [3, 1], [0, 0]], jnp.int32)
  full = model(jnp.asarray(ids), jnp.asarray(mask))  # [3, 10, vocab]
  gathered = model(jnp.asarray(ids), jnp.asarray(mask), masked_positions=positions)
  want = np.take_along_axis(np.asarray(full), np.asarray(positions)[..., None], axis=1)
  np.testing.assert_allclose(np.asarray(gathered), want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Pretraining

CORPUS = [f"the {c} {t} was {w}" for c in ("red", "blue", "green") for t in ("dress", "shirt")
          for w in ("lovely", "too small", "fine")] * 4


@pytest.fixture(scope="module")
def tokenizer():
  return wordpiece.train_wordpiece(CORPUS, language="en", vocab_size=60, min_frequency=1,
                                   max_length=16)


def _tiny_mlm(tokenizer, seed=0):
  config = bert.BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_layers=1,
                           num_heads=2, intermediate_size=64, max_position_embeddings=16,
                           hidden_dropout=0.0, attention_dropout=0.0)
  return bert.BertForMaskedLM(config, rngs=nnx.Rngs(seed))


def test_pretrain_loss_falls_and_is_deterministic(tokenizer):
  args = {"steps": 60, "batch_size": 8, "learning_rate": 1e-2, "buckets": (16,), "seed": 0,
          "progress": False}
  model, history = mlm.pretrain_mlm(_tiny_mlm(tokenizer), tokenizer, CORPUS, **args)
  assert list(history.columns) == ["step", "epoch", "loss", "accuracy", "targets",
                                   "learning_rate", "seconds"]
  assert history["step"].tolist() == list(range(1, 61))
  # 72 texts / 8 per batch = 9 batches per epoch; masks are drawn afresh every epoch.
  assert (history["epoch"] == 1).sum() == 9 and history["epoch"].max() == 7
  assert (history["targets"] > 0).all()
  first, last = history["loss"].head(5).mean(), history["loss"].tail(5).mean()
  assert first > np.log(tokenizer.get_vocab_size()) - 1.0  # starts near chance
  assert last < 0.5 * first, (first, last)  # seen: 3.9 -> 1.3
  assert history["accuracy"].tail(5).mean() > 0.4  # seen: 0.62
  # The same seed gives the same run.
  model_b, history_b = mlm.pretrain_mlm(_tiny_mlm(tokenizer), tokenizer, CORPUS, **args)
  pd.testing.assert_frame_equal(history.drop(columns="seconds"),
                                history_b.drop(columns="seconds"))
  for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)),
                  jax.tree.leaves(nnx.state(model_b, nnx.Param))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  scores = mlm.evaluate_mlm(model, tokenizer, CORPUS[:12], batch_size=8, buckets=(16,))
  assert scores["targets"] > 0 and scores["perplexity"] == pytest.approx(np.exp(scores["loss"]))
  assert scores["loss"] < first
  fig = mlm.plot_mlm_history(history)
  assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2


def test_pretrain_epochs_and_validation(tokenizer):
  model = _tiny_mlm(tokenizer)
  _, history = mlm.pretrain_mlm(model, tokenizer, CORPUS[:16], epochs=2, batch_size=8,
                                buckets=(16,), progress=False)
  assert len(history) == 4 and history["epoch"].tolist() == [1, 1, 2, 2]
  with pytest.raises(ValueError, match="exactly one of steps and epochs"):
    mlm.pretrain_mlm(model, tokenizer, CORPUS, steps=2, epochs=1, progress=False)
  with pytest.raises(ValueError, match="texts is empty"):
    mlm.pretrain_mlm(model, tokenizer, [], steps=2, progress=False)
  with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings"):
    mlm.pretrain_mlm(model, tokenizer, CORPUS, steps=2, buckets=(32,), progress=False)
  with pytest.raises(ValueError, match="must be a BertForMaskedLM"):
    mlm.pretrain_mlm(bert.BertModel(model.bert.config, rngs=nnx.Rngs(0)), tokenizer, CORPUS,
                     steps=2)
  no_mask = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "the": 2}, unk_token="[UNK]"))
  with pytest.raises(ValueError, match=r"has no \[MASK\] token"):
    mlm.pretrain_mlm(model, no_mask, CORPUS, steps=1, buckets=(16,), progress=False)
  bigger = wordpiece.train_wordpiece(CORPUS + ["completely different words here"], language="en",
                                     vocab_size=200, min_frequency=1)
  with pytest.raises(ValueError, match="but the model only"):
    mlm.pretrain_mlm(model, bigger, CORPUS, steps=1, buckets=(16,), progress=False)


def test_transfer_encoder_into_classifier(tokenizer):
  source = _tiny_mlm(tokenizer, seed=1)
  config = source.bert.config
  target = bert.BertForSequenceClassification(config, 2, rngs=nnx.Rngs(5), pooling="cls")
  head_before = np.asarray(target.classifier.kernel[...])
  not_copied = mlm.transfer_encoder(source, target)
  assert sorted(not_copied) == ["pooler.dense.bias", "pooler.dense.kernel"]  # MLM has no pooler
  src = nnx.to_flat_state(nnx.state(source.bert, nnx.Param))
  dst = dict(nnx.to_flat_state(nnx.state(target.bert, nnx.Param)))
  for path, var in src:
    np.testing.assert_array_equal(np.asarray(dst[path][...]), np.asarray(var[...]))
  np.testing.assert_array_equal(np.asarray(target.classifier.kernel[...]), head_before)
  # Copies, not shared buffers: training the target leaves the source alone.
  target.bert.embeddings.word_embeddings.embedding[...] = 0.0
  assert np.abs(np.asarray(source.bert.embeddings.word_embeddings.embedding[...])).sum() > 0
  other = dataclasses.replace(config, hidden_size=64)
  with pytest.raises(ValueError, match="encoder shapes differ"):
    mlm.transfer_encoder(source, bert.BertForSequenceClassification(other, 2, rngs=nnx.Rngs(0)))


def test_head_gets_its_own_learning_rate():
  params = {"bert": {"embeddings": {"LayerNorm": {"bias": 0.0}}},
            "transform": {"dense": {"kernel": 0.0}}, "bias": 0.0}
  labels = mlm._mlm_param_labels(params)
  assert labels == {"bert": {"embeddings": {"LayerNorm": {"bias": "encoder"}}},
                    "transform": {"dense": {"kernel": "head"}}, "bias": "head"}
  tx = mlm.make_mlm_optimizer(learning_rate=1e-4, head_learning_rate=1e-2, warmup_steps=0,
                              total_steps=10, weight_decay=0.0, max_grad_norm=None)
  grads = {"bert": {"w": jnp.ones(3)}, "transform": {"w": jnp.ones(3)}, "bias": jnp.ones(3)}
  updates, _ = tx.update(grads, tx.init(grads), grads)
  # Adam's first step moves every weight by its learning rate (the gradient's sign).
  np.testing.assert_allclose(np.asarray(updates["bert"]["w"]), -1e-4, rtol=1e-3)
  np.testing.assert_allclose(np.asarray(updates["transform"]["w"]), -1e-2, rtol=1e-3)
  np.testing.assert_allclose(np.asarray(updates["bias"]), -1e-2, rtol=1e-3)

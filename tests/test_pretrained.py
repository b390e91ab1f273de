"""Tests for cvlib.text.pretrained: MiniLM loading, tokenizer, bucketed batches, embeddings, saving."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file
from scipy.special import erf

from cvlib.text import bert, embedding, tokens
from cvlib.text import checkpoint as ckpt

SENTENCES = ["the delivery was late", "shipping took forever", "I love this dress"]


@pytest.fixture(scope="module")
def checkpoint():
  return load_file(str(tokens.minilm_path() / "model.safetensors"))


@pytest.fixture(scope="module")
def tokenizer():
  return tokens.load_tokenizer()


# ----------------------------------------------------------------------------------------------
# An independent numpy re-implementation of HF BertModel (float64), straight from the checkpoint
# names, to check the nnx model against.


def _np_layer_norm(x, w, b, eps=1e-12):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * w + b


def _np_bert(ckpt, ids, mask, num_layers, num_heads=12):
  w = {k: v.astype(np.float64) for k, v in ckpt.items() if k != "embeddings.position_ids"}
  batch, seq = ids.shape
  x = (w["embeddings.word_embeddings.weight"][ids]
       + w["embeddings.position_embeddings.weight"][np.arange(seq)][None]
       + w["embeddings.token_type_embeddings.weight"][0])
  x = _np_layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
  bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e30)
  for i in range(num_layers):
    p = f"encoder.layer.{i}."

    def lin(h, name, p=p):
      return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

    def split(h):
      return h.reshape(batch, seq, num_heads, -1).transpose(0, 2, 1, 3)

    q, k, v = (split(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]) + bias
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, -1)
    attn = _np_layer_norm(lin(ctx, "attention.output.dense") + x,
                          w[p + "attention.output.LayerNorm.weight"],
                          w[p + "attention.output.LayerNorm.bias"])
    h = lin(attn, "intermediate.dense")
    h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
    x = _np_layer_norm(lin(h, "output.dense") + attn, w[p + "output.LayerNorm.weight"],
                       w[p + "output.LayerNorm.bias"])
  return x


def _encode(tokenizer, texts):
  encs = tokenizer.encode_batch(texts)
  return (np.asarray([e.ids for e in encs], np.int32),
          np.asarray([e.attention_mask for e in encs], np.int32))


# ----------------------------------------------------------------------------------------------
# Files and tokenizer


def test_minilm_path_and_bad_folders(tmp_path):
  folder = tokens.minilm_path()
  assert (folder / "model.safetensors").is_file()
  assert tokens.minilm_path(str(folder)) == folder
  with pytest.raises(FileNotFoundError, match="lacks config.json, model.safetensors"):
    tokens.minilm_path(tmp_path)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    tokens.minilm_path(tmp_path / "nope")


def test_tokenizer_matches_sentence_transformers_settings(tokenizer):
  encs = tokenizer.encode_batch(["hello world", "a somewhat longer sentence here"])
  assert encs[0].ids[:4] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP]
  assert len(encs[0].ids) == len(encs[1].ids) == 7  # padded to the longest, not to 128
  assert encs[0].ids[4:] == [0, 0, 0] and encs[0].attention_mask[4:] == [0, 0, 0]
  long = tokenizer.encode("word " * 400)
  assert len(long.ids) == 256 and long.ids[-1] == 102
  short = tokens.load_tokenizer(max_length=16).encode("word " * 400)
  assert len(short.ids) == 16
  with pytest.raises(ValueError, match=r"max_length must be an int in \[2, 512\]"):
    tokens.load_tokenizer(max_length=1000)


# ----------------------------------------------------------------------------------------------
# Checkpoint loading


def test_loader_reports_every_problem_at_once(checkpoint):
  config = ckpt.load_config(num_layers=1)
  model = bert.BertModel(config, rngs=nnx.Rngs(0))
  before = np.asarray(model.embeddings.word_embeddings.embedding[...]).copy()
  bad = dict(checkpoint)
  bad["encoder.layer.0.attention.self.kwery.weight"] = bad.pop(
      "encoder.layer.0.attention.self.query.weight")
  bad["embeddings.LayerNorm.bias"] = np.zeros(383, np.float32)
  del bad["pooler.dense.bias"]
  with pytest.raises(ValueError, match="4 problem") as info:
    ckpt.load_bert_state_dict(model, bad)
  message = str(info.value)
  assert "missing from checkpoint: encoder.layer.0.attention.self.query.weight" in message
  assert "unexpected in checkpoint: encoder.layer.0.attention.self.kwery.weight" in message
  assert "shape mismatch: embeddings.LayerNorm.bias: checkpoint (383,)" in message
  assert "missing from checkpoint: pooler.dense.bias" in message
  # Strict failure loads nothing.
  np.testing.assert_array_equal(np.asarray(model.embeddings.word_embeddings.embedding[...]),
                                before)
  # Non-strict: warn, load everything else.
  with pytest.warns(UserWarning, match="4 problem"):
    report = ckpt.load_bert_state_dict(model, bad, strict=False)
  assert "embeddings.word_embeddings.weight" in report["loaded"]
  np.testing.assert_array_equal(np.asarray(model.embeddings.word_embeddings.embedding[...]),
                                checkpoint["embeddings.word_embeddings.weight"])


def test_loader_reads_a_safetensors_file_with_bert_prefix(tmp_path, checkpoint):
  from safetensors.numpy import save_file
  keep = {f"bert.{k}": v for k, v in checkpoint.items()
          if not k.startswith("encoder.layer.") or k.startswith("encoder.layer.0.")}
  save_file(keep, str(tmp_path / "w.safetensors"))
  model = bert.BertModel(ckpt.load_config(num_layers=1), rngs=nnx.Rngs(0))
  report = ckpt.load_bert_weights(model, tmp_path / "w.safetensors")
  assert report["unused"] == ["embeddings.position_ids"] and not report["unexpected"]
  # A model deeper than the checkpoint: the missing layers are errors.
  deep = bert.BertModel(ckpt.load_config(num_layers=2), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="missing from checkpoint: encoder.layer.1"):
    ckpt.load_bert_weights(deep, tmp_path / "w.safetensors")


def test_truncated_minilm_loads(checkpoint):
  model, config = ckpt.load_encoder(num_layers=1)
  assert config.num_layers == 1 and len(model.encoder.layer) == 1
  q = model.encoder.layer[0].attention.self_attn.query.kernel[...]
  np.testing.assert_array_equal(np.asarray(q),
                                checkpoint["encoder.layer.0.attention.self.query.weight"].T)
  np.testing.assert_array_equal(np.asarray(model.embeddings.LayerNorm.scale[...]),
                                checkpoint["embeddings.LayerNorm.weight"])
  # Layers 1-5 of the checkpoint are expected-unused; a fresh load reports them.
  report = ckpt.load_bert_weights(model)
  assert "encoder.layer.5.output.dense.weight" in report["unused"]
  assert not report["unexpected"] and not report["missing"]
  with pytest.raises(ValueError, match=r"num_layers must be an int in \[1, 6\]"):
    ckpt.load_config(num_layers=7)


def test_config_from_hf_validation():
  hf = json.loads((tokens.minilm_path() / "config.json").read_text())
  assert ckpt.config_from_hf(hf) == bert.BertConfig.minilm_l6()
  with pytest.raises(ValueError, match="hidden_act must be 'gelu'"):
    ckpt.config_from_hf({**hf, "hidden_act": "relu"})
  with pytest.raises(ValueError, match="key 'hidden_size' missing"):
    ckpt.config_from_hf({k: v for k, v in hf.items() if k != "hidden_size"})


def test_first_layer_matches_numpy_reference(checkpoint, tokenizer):
  model, _ = ckpt.load_encoder(num_layers=1)
  ids, mask = _encode(tokenizer, SENTENCES)
  got, _ = model(jnp.asarray(ids), jnp.asarray(mask))
  want = _np_bert(checkpoint, ids, mask, num_layers=1)
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(got)[real], want[real], atol=1e-5)  # seen: 1.4e-6


# ----------------------------------------------------------------------------------------------
# Sentence embeddings


def test_full_minilm_embeddings(checkpoint, tokenizer):
  emb = embedding.embed(SENTENCES)
  assert emb.shape == (3, 384) and emb.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
  cos = emb @ emb.T
  assert cos[0, 1] > cos[0, 2] + 0.2  # late delivery ~ slow shipping, not ~ loving a dress
  assert cos[0, 1] > cos[1, 2] + 0.2
  # Against the float64 numpy re-implementation of all six layers + mean pooling.
  ids, mask = _encode(tokenizer, SENTENCES)
  seq = _np_bert(checkpoint, ids, mask, num_layers=6)
  pooled = (seq * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  want = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
  np.testing.assert_allclose(emb, want, atol=2e-6)  # seen: 1.6e-7
  # Row order follows the input; a text alone (another batch shape) embeds the same.
  np.testing.assert_allclose(embedding.embed(SENTENCES[::-1]), emb[::-1], atol=1e-5)
  np.testing.assert_allclose(embedding.embed([SENTENCES[2]])[0], emb[2], atol=1e-5)
  assert embedding.embed([]).shape == (0, 384)


# ----------------------------------------------------------------------------------------------
# Length-bucketed batches


def test_make_batches_fixed_shapes_and_original_order(tokenizer):
  texts = [f"review number {i} " + "very " * (i % 7) * 4 for i in range(23)]
  labels = np.arange(23) % 2
  ids = tokens.tokenize_texts(tokenizer, texts)
  batches = tokens.make_batches(tokenizer, texts, labels, batch_size=4, buckets=(8, 16, 32))
  seen = []
  for batch in batches:
    length = batch["input_ids"].shape[1]
    assert length in (8, 16, 32) and batch["input_ids"].shape == (4, length)
    assert batch["input_ids"].dtype == np.int32 and batch["weight"].dtype == np.float32
    for row in range(4):
      i = batch["index"][row]
      if i < 0:  # filler row
        assert batch["weight"][row] == 0 and batch["attention_mask"][row].sum() == 1
        continue
      assert batch["weight"][row] == 1 and batch["label"][row] == labels[i]
      n = len(ids[i])
      assert n <= length and (length == 8 or n > {16: 8, 32: 16}[length])  # smallest bucket
      np.testing.assert_array_equal(batch["input_ids"][row, :n], ids[i])
      assert batch["attention_mask"][row].sum() == n
      seen.append(i)
  assert sorted(seen) == list(range(23))
  # Shuffling is a permutation, reproducible for a seed.
  a = tokens.make_batches(tokenizer, texts, labels, batch_size=4, buckets=(8, 16, 32),
                              shuffle=True, seed=3)
  b = tokens.make_batches(tokenizer, texts, labels, batch_size=4, buckets=(8, 16, 32),
                              shuffle=True, seed=3)
  assert [list(x["index"]) for x in a] == [list(x["index"]) for x in b]
  assert sorted(i for x in a for i in x["index"] if i >= 0) == list(range(23))
  # fit_last: the same batches, but each bucket's last one cut to a power of two >= its rows
  fitted = tokens.batches_from_ids(ids, labels, batch_size=4, buckets=(8, 16, 32), fit_last=True)
  assert len(fitted) == len(batches)
  for full, fit in zip(batches, fitted):
    real = int((full["index"] >= 0).sum())
    assert len(fit["index"]) == (4 if real > 2 else real)  # 3 rows -> 4, 2 -> 2, 1 -> 1
    for key in full:
      np.testing.assert_array_equal(fit[key], full[key][:len(fit["index"])])


def test_make_batches_truncates_to_largest_bucket_keeping_sep(tokenizer):
  (batch,) = tokens.make_batches(tokenizer, ["word " * 50], batch_size=2, buckets=(8, 16))
  assert batch["input_ids"].shape == (2, 16)
  assert batch["input_ids"][0, 0] == 101 and batch["input_ids"][0, 15] == 102
  assert batch["input_ids"][0, 14] != 102


@pytest.mark.parametrize("kwargs, match", [
    ({"buckets": (16, 8)}, "strictly increasing"),
    ({"buckets": ()}, "strictly increasing"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
])
def test_make_batches_validation(tokenizer, kwargs, match):
  with pytest.raises(ValueError, match=match):
    tokens.make_batches(tokenizer, ["a", "b"], **{"batch_size": 2, **kwargs})


def test_texts_must_be_strings(tokenizer):
  with pytest.raises(ValueError, match=r"texts\[1\] is nan"):
    tokens.make_batches(tokenizer, ["fine", float("nan")], batch_size=2)
  with pytest.raises(ValueError, match="single string"):
    tokens.make_batches(tokenizer, "just one", batch_size=2)
  with pytest.raises(ValueError, match="one entry per text"):
    tokens.make_batches(tokenizer, ["a", "b"], [0], batch_size=2)


def test_inference_batch_size():
  assert tokens.inference_batch_size(3, 64) == 4
  assert tokens.inference_batch_size(1, 64) == 1
  assert tokens.inference_batch_size(1000, 64) == 64


# ----------------------------------------------------------------------------------------------
# Saving fine-tuned models


def test_save_and_load_roundtrip(tmp_path, tokenizer):
  config = bert.BertConfig.tiny(vocab_size=tokenizer.get_vocab_size())
  model = bert.BertForSequenceClassification(config, 3, rngs=nnx.Rngs(0))
  ckpt.save_encoder(model, config, tmp_path / "m", tokenizer=tokenizer)
  loaded, loaded_config = ckpt.load_saved_encoder(tmp_path / "m")
  assert loaded_config == config and isinstance(loaded, bert.BertForSequenceClassification)
  assert loaded.num_labels == 3 and loaded.pooling == "mean"
  ids, mask = _encode(tokenizer, SENTENCES)
  np.testing.assert_array_equal(np.asarray(loaded(ids, mask)), np.asarray(model(ids, mask)))
  tok = tokens.load_tokenizer(tmp_path / "m")
  assert tok.encode("hello").ids == tokenizer.encode("hello").ids
  with pytest.raises(ValueError, match="differs from the model's"):
    ckpt.save_encoder(model, bert.BertConfig.tiny(), tmp_path / "x")
  with pytest.raises(FileNotFoundError, match="lacks cvlib_model.json"):
    ckpt.load_saved_encoder(tmp_path)


def test_load_saved_encoder_reports_mismatch(tmp_path):
  config = bert.BertConfig.tiny()
  ckpt.save_encoder(bert.BertModel(config, rngs=nnx.Rngs(0)), config, tmp_path)
  meta = json.loads((tmp_path / "cvlib_model.json").read_text())
  meta["config"]["intermediate_size"] = 48
  meta["add_pooler"] = False
  (tmp_path / "cvlib_model.json").write_text(json.dumps(meta))
  with pytest.raises(ValueError, match="problem") as info:
    ckpt.load_saved_encoder(tmp_path)
  assert "unexpected: pooler.dense.kernel" in str(info.value)
  assert "shape mismatch: encoder.layer.0.intermediate.dense.kernel" in str(info.value)


# ----------------------------------------------------------------------------------------------
# Parity with the PyTorch reference (fixture computed once with transformers; see its README)

PARITY = Path(__file__).resolve().parent / "data" / "parity" / "minilm_reference.json"


def test_parity_with_pytorch_reference():
  ref = json.loads(PARITY.read_text())
  sentences = ref["sentences"]
  assert len(sentences) >= 20 and any(ord(c) > 127 for s in sentences for c in s)
  tokenizer = tokens.load_tokenizer(max_length=ref["max_length"])
  ids = tokens.tokenize_texts(tokenizer, sentences)
  assert [list(x) for x in ids] == ref["input_ids"]  # same WordPiece ids, truncation included
  assert max(len(x) for x in ids) == ref["max_length"]  # the long review was cut at 256
  emb = embedding.embed(sentences, tokenizer=tokenizer, buckets=(32, 64, 128, 256))
  want = np.asarray(ref["embeddings"], np.float32)
  assert emb.dtype == np.float32 and emb.shape == want.shape == (len(sentences), 384)
  assert np.abs(emb - want).max() <= 1e-4  # seen: 2.9e-7


# ----------------------------------------------------------------------------------------------
# Masked-LM loading and orbax checkpoints


def test_load_masked_lm_from_minilm(checkpoint):
  model, report = ckpt.load_masked_lm(num_layers=1)
  assert isinstance(model, bert.BertForMaskedLM) and report["head"] == []  # MiniLM has no head
  np.testing.assert_array_equal(np.asarray(model.bert.embeddings.word_embeddings.embedding[...]),
                                checkpoint["embeddings.word_embeddings.weight"])
  assert "pooler.dense.weight" in report["unused"]


def test_special_token_ids(tokenizer):
  assert tokens.special_token_ids(tokenizer) == [0, 100, 101, 102, 103]


def _tiny_classifier(seed):
  return bert.BertForSequenceClassification(bert.BertConfig.tiny(vocab_size=30), 2,
                                            rngs=nnx.Rngs(seed))


def _same_params(a, b):
  la, lb = (jax.tree.leaves(nnx.state(m, nnx.Param)) for m in (a, b))
  return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                    for x, y in zip(la, lb))


def test_orbax_checkpoints_round_trip_and_keep_the_best(tmp_path):
  best = ckpt.Checkpoints(tmp_path / "best", best_metric="f1")
  models = {step: _tiny_classifier(step) for step in (1, 2, 3)}
  for step, f1 in ((1, 0.5), (2, 0.9), (3, 0.7)):
    best.save(step, models[step], metrics={"f1": f1})
  assert best.steps == [2] and best.best_step() == 2  # max_to_keep=1 keeps the best only
  restored = _tiny_classifier(7)
  assert not _same_params(restored, models[2])
  assert best.restore(restored) == 2
  assert _same_params(restored, models[2])
  with pytest.raises(ValueError, match="metrics must contain 'f1'"):
    best.save(4, models[1])
  with pytest.raises(FileNotFoundError, match="no checkpoint 9"):
    best.restore(restored, step=9)
  best.close()
  # A fresh manager on the same folder finds the step; without best_metric: the latest.
  assert ckpt.Checkpoints(tmp_path / "best", best_metric="f1").best_step() == 2
  last = ckpt.Checkpoints(tmp_path / "last", max_to_keep=2)
  for step in (1, 2, 3):
    last.save(step, models[step])
  assert last.steps == [2, 3] and last.best_step() == 3
  last.restore(restored)
  assert _same_params(restored, models[3])
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    ckpt.Checkpoints(tmp_path / "empty").restore(restored)

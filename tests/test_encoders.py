"""Tests for cvlib.text.encoders.prepare_encoder: the three paths, tiny sizes."""

import numpy as np
import pytest
from flax import nnx

from cvlib.text import checkpoint, encoders, tokens

PT = ["o produto chegou rápido e é ótimo", "péssimo, veio quebrado", "recomendo o vendedor",
      "não gostei da qualidade", "entrega antes do prazo, ótimo",
      "produto ruim, não recomendo"] * 6
EN = ["the dress fits well", "the zipper broke after a week", "lovely colour", "too small"] * 6
SMALL = {"small_layers": 1, "small_hidden": 32, "small_heads": 2, "small_intermediate": 64,
         "vocab_size": 120, "buckets": (16,), "mlm_batch_size": 8, "progress": False}


def _params(model):
  return {".".join(map(str, p)): np.asarray(v[...])
          for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_portuguese_trains_vocabulary_and_small_bert_from_scratch():
  result = encoders.prepare_encoder(PT, language="pt", mlm_steps=4, seed=0, **SMALL)
  assert result.kind == "scratch" and result.language == "pt"
  assert result.tokenizer.token_to_id("[MASK]") == 4
  assert "ótimo" in result.tokenizer.get_vocab()
  assert result.config.vocab_size == result.tokenizer.get_vocab_size() <= 120
  assert (result.config.num_layers, result.config.hidden_size) == (1, 32)
  assert len(result.mlm_history) == 4
  assert "small BERT 1x32 pretrained from scratch on 36 Portuguese reviews" in result.description
  assert "MiniLM was not used" in result.description
  assert result.details["mlm_steps"] == 4 and result.details["unk_share"] == 0.0
  # Classifiers start from copies of the pretrained encoder, heads from their own seed.
  a, b = result.make_classifier(2, seed=0), result.make_classifier(3, seed=1)
  enc = _params(result.encoder)
  for key, value in _params(a.bert).items():
    np.testing.assert_array_equal(value, enc[key])
  assert b.num_labels == 3 and a.bert.pooler is None
  # Deterministic for a seed.
  again = encoders.prepare_encoder(PT, language="pt", mlm_steps=4, seed=0, **SMALL)
  for key, value in _params(again.encoder).items():
    np.testing.assert_array_equal(value, enc[key])


def test_english_minilm_without_and_with_domain_mlm():
  plain = encoders.prepare_encoder(EN, language="en", num_layers=1, buckets=(16,),
                                   progress=False)
  assert plain.kind == "minilm" and plain.mlm_history is None
  assert plain.description == "MiniLM-L6 (all-MiniLM-L6-v2), first 1 layer(s)"
  model = plain.make_classifier(2, seed=0)
  reference, _ = checkpoint.load_classifier(2, num_layers=1, seed=0)
  for (ka, va), (kb, vb) in zip(sorted(_params(model).items()),
                                sorted(_params(reference).items())):
    assert ka == kb
    np.testing.assert_array_equal(va, vb)  # same encoder and, for the same seed, the same head

  adapted = encoders.prepare_encoder(EN, language="en", num_layers=1, mlm_steps=2,
                                     mlm_batch_size=8, buckets=(16,), progress=False)
  assert adapted.kind == "minilm" and len(adapted.mlm_history) == 2
  assert "+ domain MLM (2 steps on 24 reviews" in adapted.description
  changed = [k for k, v in _params(adapted.encoder).items()
             if not np.array_equal(v, _params(plain.encoder)[k])]
  assert changed  # MLM moved the encoder
  assert adapted.tokenizer.get_vocab_size() == 30522


def test_validation():
  with pytest.raises(ValueError, match="needs mlm_steps > 0"):
    encoders.prepare_encoder(PT, language="pt", mlm_steps=0)
  with pytest.raises(ValueError, match="mlm_steps must be an int >= 0"):
    encoders.prepare_encoder(EN, mlm_steps=-1)
  with pytest.raises(ValueError, match="language must be an ISO 639 code"):
    encoders.prepare_encoder(EN, language="english")
  with pytest.raises(ValueError, match="no non-blank text"):
    encoders.prepare_encoder(["", " "], language="pt", mlm_steps=2)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    encoders.prepare_encoder(EN, encoder="/nonexistent/bert")


def test_transfer_keeps_minilm_layers_under_a_learnt_vocabulary():
  result = encoders.prepare_encoder(PT, language="pt", encoder="transfer", num_layers=1,
                                    mlm_steps=2, vocab_size=120, buckets=(16,), mlm_batch_size=8,
                                    progress=False, seed=0)
  assert result.kind == "transfer" and result.language == "pt"
  assert "ótimo" in result.tokenizer.get_vocab()
  assert result.config.vocab_size == result.tokenizer.get_vocab_size() <= 120
  assert (result.config.num_layers, result.config.hidden_size) == (1, 384)  # MiniLM's shape
  assert result.description.startswith("MiniLM-L6's layers with a ")
  counts = result.details["embeddings_from_minilm"]
  assert sum(counts.values()) == result.config.vocab_size and counts["copied"] > 10
  assert len(result.mlm_history) == 2


def test_transfer_word_embeddings_copy_or_compose_minilm_vectors():
  from cvlib.text import wordpiece
  new = wordpiece.train_wordpiece(PT, language="pt", vocab_size=120, max_length=16)
  old = tokens.load_tokenizer()
  old_emb = np.random.default_rng(0).normal(size=(old.get_vocab_size(), 4)).astype(np.float32)
  emb, counts = checkpoint.transfer_word_embeddings(new, old, old_emb)
  assert emb.shape == (new.get_vocab_size(), 4)
  assert sum(counts.values()) == new.get_vocab_size()
  old_vocab = old.get_vocab()
  for piece, i in new.get_vocab().items():
    if piece in old_vocab:  # [CLS], [MASK], "o", "##s" ...: the same vector
      np.testing.assert_array_equal(emb[i], old_emb[old_vocab[piece]])
  # a piece MiniLM does not have is the mean of the pieces MiniLM cuts its text into
  piece = next(p for p in new.get_vocab() if p not in old_vocab and len(p) > 3)
  ids = old.encode(piece.removeprefix("##"), add_special_tokens=False).ids
  np.testing.assert_allclose(emb[new.token_to_id(piece)], old_emb[ids].mean(axis=0), rtol=1e-6)


def test_load_masked_lm_with_a_new_vocabulary_keeps_the_layers():
  from cvlib.text import wordpiece
  new = wordpiece.train_wordpiece(PT, language="pt", vocab_size=120, max_length=16)
  model, report = checkpoint.load_masked_lm(num_layers=1, tokenizer=new)
  reference, _ = checkpoint.load_masked_lm(num_layers=1)
  got, ref = _params(model), _params(reference)
  assert got["bert.embeddings.word_embeddings.embedding"].shape == (new.get_vocab_size(), 384)
  assert got["bias"].shape == (new.get_vocab_size(),)
  for key in ("bert.encoder.layer.0.intermediate.dense.kernel",
              "bert.embeddings.position_embeddings.embedding",
              "bert.embeddings.LayerNorm.scale"):
    np.testing.assert_array_equal(got[key], ref[key])
  cls = new.token_to_id("[CLS]")
  np.testing.assert_array_equal(got["bert.embeddings.word_embeddings.embedding"][cls],
                                ref["bert.embeddings.word_embeddings.embedding"][101])
  assert report["transfer"]["copied"] > 10


def test_transfer_needs_mlm_steps():
  with pytest.raises(ValueError, match="encoder 'transfer' learns a vocabulary"):
    encoders.prepare_encoder(PT, language="pt", encoder="transfer", mlm_steps=0)


def test_report_words_for_each_encoder_kind():
  from types import SimpleNamespace

  from cvlib.stages import finetune
  story = finetune.encoder_story
  assert "MiniLM" in story(None)
  assert "small language model learnt" in story({"kind": "scratch", "language": "pt",
                                                  "mlm_texts": 1200})
  words = story({"kind": "transfer", "language": "pt", "mlm_texts": 1200})
  assert "learnt to read Portuguese" in words and "1,200" in words
  assert "adapted to this shop's wording" in story({"kind": "minilm", "language": "en",
                                                     "mlm_steps": 10, "mlm_texts": 50})
  config = SimpleNamespace(num_layers=4, hidden_size=256)
  name = finetune.encoder_name
  assert name(SimpleNamespace(kind="scratch", config=config, mlm_history=1)) == (
      "small BERT 4x256 from scratch, fine-tuned")
  assert name(SimpleNamespace(kind="transfer", config=config, mlm_history=1)) == (
      "MiniLM-L6 layers, shop vocabulary, fine-tuned")
  assert name(SimpleNamespace(kind="minilm", config=config, mlm_history=1)) == (
      "MiniLM-L6 + domain MLM, fine-tuned")

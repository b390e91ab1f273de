"""Tests for cvlib.text.wordpiece: corpus vocabularies for Portuguese, Chinese and English."""

import pytest

from cvlib.text import tokens, wordpiece

PT = ["O produto chegou rápido e é ótimo.", "Péssimo, veio quebrado e não funciona.",
      "Recomendo o vendedor, entrega antes do prazo.", "Não gostei da qualidade do tecido.",
      "Ótimo produto, chegou antes do prazo!", "A entrega atrasou, produto é bom."] * 5
ZH = ["质量很好，物流也很快。", "东西不错，下次还会再来买。",
      "太差了，用了一天就坏了。", "快递很慢，包装也破了。"] * 5


def test_portuguese_vocabulary_keeps_accents():
  tok = wordpiece.train_wordpiece(PT, language="pt", vocab_size=200, min_frequency=1)
  assert [tok.token_to_id(t) for t in wordpiece.SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
  enc = tok.encode("Ótimo produto, não é.")
  assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
  assert "ótimo" in enc.tokens and "não" in enc.tokens and "é" in enc.tokens  # accents kept
  assert tok.token_to_id("[UNK]") not in enc.ids


def test_english_strips_accents_like_bert_uncased():
  tok = wordpiece.train_wordpiece(["café crème naïve"] * 3, language="en", vocab_size=100,
                                  min_frequency=1)
  assert tok.encode("Café").tokens[1:-1] == ["cafe"]


def test_chinese_characters_are_single_tokens():
  tok = wordpiece.train_wordpiece(ZH, language="zh", vocab_size=300, min_frequency=1)
  pieces = tok.encode("质量很好").tokens
  assert pieces == ["[CLS]", "质", "量", "很", "好", "[SEP]"]
  stats = wordpiece.describe_vocabulary(tok, ZH)
  assert stats["unk_share"] == 0.0 and stats["tokens_per_word"] == pytest.approx(1.0)
  # MiniLM's English vocabulary: many Chinese characters are [UNK].
  assert wordpiece.describe_vocabulary(tokens.load_tokenizer(), ZH)["unk_share"] > 0.3


def test_vocabulary_is_deterministic_and_bounded():
  a = wordpiece.train_wordpiece(PT * 3, language="pt", vocab_size=80, min_frequency=1)
  b = wordpiece.train_wordpiece(PT * 3, language="pt", vocab_size=80, min_frequency=1)
  assert a.get_vocab() == b.get_vocab()
  assert a.get_vocab_size() <= 80
  # Pieces continue words with "##" once the vocabulary is too small for whole words.
  assert any(t.startswith("##") for t in a.get_vocab())


def test_saved_tokenizer_loads_like_minilm(tmp_path):
  tok = wordpiece.train_wordpiece(PT, language="pt", vocab_size=200, min_frequency=1,
                                  max_length=64)
  path = wordpiece.save_tokenizer(tok, tmp_path / "enc")
  assert path.name == "tokenizer.json" and path.is_file()
  loaded = tokens.load_tokenizer(tmp_path / "enc", max_length=8)
  assert loaded.encode(PT[2]).ids[:7] == tok.encode(PT[2]).ids[:7]
  assert len(loaded.encode(PT[2]).ids) == 8  # the loader's truncation applies
  assert tokens.special_token_ids(loaded) == [0, 1, 2, 3, 4]
  batches = tokens.make_batches(loaded, PT[:4], batch_size=2, buckets=(8,))
  assert batches[0]["input_ids"].shape == (2, 8) and batches[0]["input_ids"][0, 0] == 2  # [CLS]


def test_validation():
  with pytest.raises(ValueError, match="language must be an ISO 639 code"):
    wordpiece.train_wordpiece(PT, language="Portuguese")
  with pytest.raises(ValueError, match="vocab_size must be an int > 5"):
    wordpiece.train_wordpiece(PT, language="pt", vocab_size=5)
  with pytest.raises(ValueError, match="no non-blank text"):
    wordpiece.train_wordpiece(["", "  "], language="pt")
  with pytest.raises(ValueError, match="every text must be a str"):
    wordpiece.train_wordpiece(["ok", None], language="pt")
  assert wordpiece.normalizer_options("pt")["strip_accents"] is False
  assert wordpiece.normalizer_options("zh")["handle_chinese_chars"] is True


def test_merges_follow_pair_counts_with_lexicographic_ties():
  # aab x3, ab x2: pairs (a,##a) 3, (##a,##b) 3, (a,##b) 2. The tie goes to the smaller pair
  # ("##a" < "a"), then "a"+"##ab" (3), then "a"+"##b" (2).
  pieces = wordpiece._learn_vocabulary({"aab": 3, "ab": 2}, vocab_size=100, min_frequency=1,
                                       limit_alphabet=None)
  assert pieces == ["##a", "##b", "a", "##ab", "aab", "ab"]
  # min_frequency 3 stops before the pair seen twice; vocab_size caps the pieces.
  assert wordpiece._learn_vocabulary({"aab": 3, "ab": 2}, vocab_size=100, min_frequency=3,
                                     limit_alphabet=None)[-1] == "aab"
  assert len(wordpiece._learn_vocabulary({"aab": 3, "ab": 2}, vocab_size=4, min_frequency=1,
                                         limit_alphabet=None)) == 4

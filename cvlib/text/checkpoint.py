"""Checkpoints: BERT weights from safetensors (HF names mapped to nnx paths in one table), the
models built from them, and saving / loading a fine-tuned encoder with its tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from cvlib.text.bert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel
from cvlib.text.tokens import load_tokenizer, minilm_path, special_token_ids


def _weights_file(path: str | os.PathLike | None) -> Path:
  if path is not None and Path(path).suffix == ".safetensors":
    if not Path(path).is_file():
      raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    return Path(path)
  return minilm_path(path) / "model.safetensors"


# The one table from checkpoint (Hugging Face) names to nnx parameter paths. ``{i}`` is a layer
# index. True in the last column: the checkpoint stores a torch Linear weight as (out, in), nnx's
# kernel is (in, out), so it is transposed.
_KEY_TABLE: tuple[tuple[str, str, bool], ...] = (
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.embedding", False),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.embedding", False),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.embedding",
     False),
    ("embeddings.LayerNorm.weight", "embeddings.LayerNorm.scale", False),
    ("embeddings.LayerNorm.bias", "embeddings.LayerNorm.bias", False),
    ("encoder.layer.{i}.attention.self.query.weight",
     "encoder.layer.{i}.attention.self_attn.query.kernel", True),
    ("encoder.layer.{i}.attention.self.query.bias",
     "encoder.layer.{i}.attention.self_attn.query.bias", False),
    ("encoder.layer.{i}.attention.self.key.weight",
     "encoder.layer.{i}.attention.self_attn.key.kernel", True),
    ("encoder.layer.{i}.attention.self.key.bias",
     "encoder.layer.{i}.attention.self_attn.key.bias", False),
    ("encoder.layer.{i}.attention.self.value.weight",
     "encoder.layer.{i}.attention.self_attn.value.kernel", True),
    ("encoder.layer.{i}.attention.self.value.bias",
     "encoder.layer.{i}.attention.self_attn.value.bias", False),
    ("encoder.layer.{i}.attention.output.dense.weight",
     "encoder.layer.{i}.attention.output.dense.kernel", True),
    ("encoder.layer.{i}.attention.output.dense.bias",
     "encoder.layer.{i}.attention.output.dense.bias", False),
    ("encoder.layer.{i}.attention.output.LayerNorm.weight",
     "encoder.layer.{i}.attention.output.LayerNorm.scale", False),
    ("encoder.layer.{i}.attention.output.LayerNorm.bias",
     "encoder.layer.{i}.attention.output.LayerNorm.bias", False),
    ("encoder.layer.{i}.intermediate.dense.weight",
     "encoder.layer.{i}.intermediate.dense.kernel", True),
    ("encoder.layer.{i}.intermediate.dense.bias",
     "encoder.layer.{i}.intermediate.dense.bias", False),
    ("encoder.layer.{i}.output.dense.weight", "encoder.layer.{i}.output.dense.kernel", True),
    ("encoder.layer.{i}.output.dense.bias", "encoder.layer.{i}.output.dense.bias", False),
    ("encoder.layer.{i}.output.LayerNorm.weight", "encoder.layer.{i}.output.LayerNorm.scale",
     False),
    ("encoder.layer.{i}.output.LayerNorm.bias", "encoder.layer.{i}.output.LayerNorm.bias", False),
    ("pooler.dense.weight", "pooler.dense.kernel", True),
    ("pooler.dense.bias", "pooler.dense.bias", False),
)


# Torch buffers in the checkpoint that are not weights.
_IGNORED_KEYS = ("embeddings.position_ids",)


_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.")


def as_bert(model: Any) -> BertModel:
  if isinstance(model, BertModel):
    return model
  if isinstance(getattr(model, "bert", None), BertModel):
    return model.bert
  raise TypeError(f"expected a BertModel or a model with a .bert BertModel, got "
                  f"{type(model).__name__}")


def flat_params(module: nnx.Module) -> dict[str, nnx.Variable]:
  """Dotted nnx path -> Param variable, e.g. 'encoder.layer.0.output.dense.kernel'."""
  flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
  return {".".join(map(str, path)): var for path, var in flat}


def load_bert_state_dict(model: Any, state_dict: dict[str, np.ndarray], *,
                         strict: bool = True) -> dict[str, list[str]]:
  """Copies Hugging Face BERT weights (name -> array) into a BertModel in place.

  A model with fewer layers than the checkpoint takes the first ones; the checkpoint's further
  layers (and its pooler, when the model has none) are reported as ``unused``, not as errors.
  Keys prefixed ``bert.`` (HF task-model checkpoints) are accepted.

  Args:
    model: a BertModel, or a model whose ``.bert`` is one (its head is left as it is).
    state_dict: checkpoint name -> numpy array.
    strict: raise on any missing, unexpected or mis-shaped key; otherwise warn and load the rest.

  Returns:
    {"loaded", "missing", "unexpected", "mismatched", "unused"}: lists of checkpoint keys
    (mismatched entries also give both shapes).

  Raises:
    ValueError: strict and at least one problem; the message lists every problem at once.
  """
  bert = as_bert(model)
  num_layers = bert.config.num_layers
  state_dict = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state_dict.items()}
  params = flat_params(bert)

  pairs: list[tuple[str, str, bool]] = []
  for ckpt_key, nnx_key, transpose in _KEY_TABLE:
    if nnx_key.startswith("pooler.") and bert.pooler is None:
      continue
    if "{i}" in ckpt_key:
      pairs += [(ckpt_key.format(i=i), nnx_key.format(i=i), transpose) for i in range(num_layers)]
    else:
      pairs.append((ckpt_key, nnx_key, transpose))

  report: dict[str, list[str]] = {k: [] for k in ("loaded", "missing", "unexpected",
                                                  "mismatched", "unused")}
  not_in_table = sorted(set(params) - {nnx_key for _, nnx_key, _ in pairs})
  updates: list[tuple[nnx.Variable, np.ndarray]] = []
  for ckpt_key, nnx_key, transpose in pairs:
    if ckpt_key not in state_dict:
      report["missing"].append(ckpt_key)
      continue
    value = np.asarray(state_dict[ckpt_key])
    value = value.T if transpose else value
    target = params[nnx_key]
    if value.shape != target.shape:
      report["mismatched"].append(f"{ckpt_key}: checkpoint {tuple(state_dict[ckpt_key].shape)}"
                                  f"{' (transposed ' + str(value.shape) + ')' if transpose else ''}"
                                  f", model {nnx_key} {tuple(target.shape)}")
      continue
    updates.append((target, value))
    report["loaded"].append(ckpt_key)

  used = set(report["loaded"]) | {m.split(":")[0] for m in report["mismatched"]}
  for key in sorted(set(state_dict) - used):
    layer = _LAYER_RE.match(key)
    if (key in _IGNORED_KEYS or (layer and int(layer.group(1)) >= num_layers)
        or (key.startswith("pooler.") and bert.pooler is None)):
      report["unused"].append(key)
    else:
      report["unexpected"].append(key)

  problems = ([f"missing from checkpoint: {k}" for k in report["missing"]]
              + [f"unexpected in checkpoint: {k}" for k in report["unexpected"]]
              + [f"shape mismatch: {m}" for m in report["mismatched"]]
              + [f"model parameter not in the key table: {k}" for k in not_in_table])
  if problems:
    message = f"{len(problems)} problem(s) loading BERT weights:\n  " + "\n  ".join(problems)
    if strict:
      raise ValueError(message)
    warnings.warn(message, stacklevel=2)
  for target, value in updates:
    target.set_value(jnp.asarray(value, dtype=target.dtype))
  return report


def load_bert_weights(model: Any, path: str | os.PathLike | None = None, *,
                      strict: bool = True) -> dict[str, list[str]]:
  """Loads ``model.safetensors`` from a model folder (default: the installed MiniLM) into model.

  Args:
    model: a BertModel, or a model whose ``.bert`` is one.
    path: a model folder or a ``.safetensors`` file; None for the installed MiniLM.
    strict: see ``load_bert_state_dict``.

  Returns:
    The report of ``load_bert_state_dict``.

  Raises:
    ValueError: strict and the checkpoint does not fit the model (all problems listed).
    FileNotFoundError: no weights at path.
  """
  file = _weights_file(path)
  return load_bert_state_dict(model, load_file(str(file)), strict=strict)


def config_from_hf(hf_config: dict[str, Any], source: str = "config.json") -> BertConfig:
  """Builds a BertConfig from a Hugging Face BERT ``config.json`` dict.

  Raises:
    ValueError: the config describes something this BERT does not implement.
  """
  if hf_config.get("model_type", "bert") != "bert":
    raise ValueError(f"{source}: model_type must be 'bert', got {hf_config['model_type']!r}")
  if hf_config.get("hidden_act", "gelu") != "gelu":
    raise ValueError(f"{source}: hidden_act must be 'gelu' (exact erf GELU), got "
                     f"{hf_config['hidden_act']!r}")
  if hf_config.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{source}: position_embedding_type must be 'absolute', got "
                     f"{hf_config['position_embedding_type']!r}")
  try:
    return BertConfig(
        vocab_size=hf_config["vocab_size"],
        hidden_size=hf_config["hidden_size"],
        num_layers=hf_config["num_hidden_layers"],
        num_heads=hf_config["num_attention_heads"],
        intermediate_size=hf_config["intermediate_size"],
        max_position_embeddings=hf_config["max_position_embeddings"],
        type_vocab_size=hf_config.get("type_vocab_size", 2),
        hidden_dropout=hf_config.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf_config.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
    )
  except KeyError as e:
    raise ValueError(f"{source}: key {e.args[0]!r} missing") from e


def load_config(path: str | os.PathLike | None = None, num_layers: int | None = None, *,
                dtype: str = "float32") -> BertConfig:
  """Reads a model folder's config.json, optionally keeping only the first num_layers layers.

  Args:
    path: a model folder; None for the installed MiniLM.
    num_layers: keep only the first num_layers layers; None keeps all.
    dtype: compute dtype of activations ("float32" or "bfloat16"; parameters stay float32).

  Raises:
    ValueError: num_layers outside 1..(the checkpoint's layers), or a bad dtype.
  """
  file = minilm_path(path) / "config.json"
  config = config_from_hf(json.loads(file.read_text()), source=str(file))
  if num_layers is not None:
    if not isinstance(num_layers, int) or not 1 <= num_layers <= config.num_layers:
      raise ValueError(f"num_layers must be an int in [1, {config.num_layers}] for {file}, "
                       f"got {num_layers!r}")
    config = dataclasses.replace(config, num_layers=num_layers)
  return dataclasses.replace(config, dtype=dtype)


def load_encoder(path: str | os.PathLike | None = None, num_layers: int | None = None, *,
                 seed: int = 0, dtype: str = "float32") -> tuple[BertModel, BertConfig]:
  """Builds a BertModel from a model folder's config.json and loads its weights.

  Args:
    path: a model folder; None for the installed MiniLM.
    num_layers: keep only the first num_layers layers (fast tests); None keeps all.
    seed: seeds dropout (every weight comes from the checkpoint).
    dtype: compute dtype of activations ("float32" or "bfloat16").

  Returns:
    (model, config).
  """
  config = load_config(path, num_layers, dtype=dtype)
  model = BertModel(config, rngs=nnx.Rngs(seed))
  load_bert_weights(model, path)
  return model, config


def load_classifier(num_labels: int, path: str | os.PathLike | None = None,
                    num_layers: int | None = None, *, seed: int = 0, pooling: str = "mean",
                    dtype: str = "float32") -> tuple[BertForSequenceClassification, BertConfig]:
  """A BertForSequenceClassification whose encoder starts from a checkpoint (default MiniLM).

  Args:
    num_labels: number of classes.
    path: a model folder; None for the installed MiniLM.
    num_layers: keep only the first num_layers layers; None keeps all.
    seed: seeds the classifier head's initialisation and dropout.
    pooling: "mean" (default; how MiniLM was trained) or "cls".
    dtype: compute dtype of activations ("float32" or "bfloat16").

  Returns:
    (model, config).
  """
  config = load_config(path, num_layers, dtype=dtype)
  model = BertForSequenceClassification(config, num_labels, rngs=nnx.Rngs(seed), pooling=pooling)
  load_bert_weights(model, path)
  return model, config


# HF BertForMaskedLM's head keys -> nnx paths of BertForMaskedLM (the decoder weight is tied to
# the word embeddings, so the checkpoint's copy is not read).
_MLM_HEAD_TABLE: tuple[tuple[str, str, bool], ...] = (
    ("cls.predictions.transform.dense.weight", "transform.dense.kernel", True),
    ("cls.predictions.transform.dense.bias", "transform.dense.bias", False),
    ("cls.predictions.transform.LayerNorm.weight", "transform.LayerNorm.scale", False),
    ("cls.predictions.transform.LayerNorm.bias", "transform.LayerNorm.bias", False),
    ("cls.predictions.bias", "bias", False),
)


WORD_EMBEDDINGS_KEY = "embeddings.word_embeddings.weight"


def transfer_word_embeddings(new_tokenizer: Tokenizer, old_tokenizer: Tokenizer,
                             old_embeddings: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
  """Word embeddings for a new vocabulary, started from a pretrained model's.

  A new piece the old vocabulary also has (``[CLS]``, ``de``, ``##s``) keeps its old vector. Any
  other is the mean of the old vectors of the pieces the old tokenizer cuts its text into
  (``##ção`` is cut as the word ``cao`` would be). A piece the old tokenizer leaves empty gets the
  mean of all old vectors. The transformer layers above then see inputs in the space they were
  trained on, and masked-LM only has to refine them.

  Returns:
    ([new vocabulary, hidden] float32 matrix, {"copied", "composed", "mean"}: pieces per route).
  """
  old_vocab = old_tokenizer.get_vocab()
  fallback = old_embeddings.mean(axis=0)
  out = np.empty((new_tokenizer.get_vocab_size(), old_embeddings.shape[1]), np.float32)
  counts = {"copied": 0, "composed": 0, "mean": 0}
  specials = set(special_token_ids(old_tokenizer))
  for piece, i in new_tokenizer.get_vocab().items():
    if piece in old_vocab:
      out[i] = old_embeddings[old_vocab[piece]]
      counts["copied"] += 1
      continue
    ids = [t for t in old_tokenizer.encode(piece.removeprefix("##"), add_special_tokens=False).ids
           if t not in specials]
    if ids:
      out[i] = old_embeddings[ids].mean(axis=0)
      counts["composed"] += 1
    else:
      out[i] = fallback
      counts["mean"] += 1
  return out, counts


def load_masked_lm(path: str | os.PathLike | None = None, num_layers: int | None = None, *,
                   seed: int = 0, dtype: str = "float32", tokenizer: Tokenizer | None = None
                   ) -> tuple[BertForMaskedLM, dict[str, Any]]:
  """A BertForMaskedLM whose encoder (and MLM head, if the checkpoint has one) is pretrained.

  all-MiniLM-L6-v2 ships without its masked-LM head (it was trained as a sentence encoder), so
  for MiniLM the head's transform starts from the usual N(0, 0.02) initialisation and its bias
  from zeros; the decoder is tied to the pretrained word embeddings either way.

  Args:
    path: a model folder; None for the installed MiniLM.
    num_layers: keep only the first num_layers layers; None keeps all.
    seed: seeds the head's initialisation and dropout.
    dtype: compute dtype of activations.
    tokenizer: another vocabulary (say, one learnt from Portuguese reviews): the model keeps the
      checkpoint's layers, positions and LayerNorms, and its word embeddings start from
      :func:`transfer_word_embeddings`; a head bias of the checkpoint's vocabulary is not loaded.

  Returns:
    (model, report): report is load_bert_state_dict's, plus "head": the head keys loaded, and
    with ``tokenizer`` "transfer": how the new pieces were started.

  Raises:
    ValueError: the checkpoint does not fit (every problem listed).
  """
  config = load_config(path, num_layers, dtype=dtype)
  state_dict = load_file(str(_weights_file(path)))
  transfer = None
  if tokenizer is not None:
    config = dataclasses.replace(config, vocab_size=tokenizer.get_vocab_size())
    key = next(k for k in state_dict if k.removeprefix("bert.") == WORD_EMBEDDINGS_KEY)
    state_dict[key], transfer = transfer_word_embeddings(
        tokenizer, load_tokenizer(path), np.asarray(state_dict[key], np.float32))
    state_dict = {k: v for k, v in state_dict.items() if k != "cls.predictions.bias"
                  and not k.startswith("cls.predictions.decoder")}
  model = BertForMaskedLM(config, rngs=nnx.Rngs(seed))
  head = {k: v for k, v in state_dict.items() if k.startswith("cls.")}
  report = load_bert_state_dict(model, {k: v for k, v in state_dict.items()
                                        if not k.startswith("cls.")})
  params = flat_params(model)
  report["head"] = []
  for ckpt_key, nnx_key, transpose in _MLM_HEAD_TABLE:
    if ckpt_key in head:
      value = head[ckpt_key].T if transpose else head[ckpt_key]
      if value.shape != params[nnx_key].shape:
        raise ValueError(f"shape mismatch: {ckpt_key}: checkpoint {value.shape}, model "
                         f"{nnx_key} {params[nnx_key].shape}")
      params[nnx_key].set_value(jnp.asarray(value, jnp.float32))
      report["head"].append(ckpt_key)
  if transfer is not None:
    report["transfer"] = transfer
  return model, report


_MODEL_CLASSES = {cls.__name__: cls for cls in (BertModel, BertForSequenceClassification,
                                                BertForMaskedLM)}


_META_FILE = "cvlib_model.json"


_WEIGHTS_FILE = "weights.safetensors"


def save_encoder(model: Any, config: BertConfig, folder: str | os.PathLike, *,
                 tokenizer: Tokenizer | None = None) -> Path:
  """Saves a BertModel / BertForSequenceClassification / BertForMaskedLM with its head.

  Writes ``weights.safetensors`` (every nnx Param, keyed by its dotted nnx path),
  ``cvlib_model.json`` (model class, config, head settings) and, if given, ``tokenizer.json``.

  Args:
    model: the model to save.
    config: its BertConfig (must equal the model's).
    folder: created if needed; existing files of the same names are replaced.
    tokenizer: optionally saved alongside.

  Returns:
    The folder.

  Raises:
    ValueError: config differs from the model's or the model class is not supported.
  """
  name = type(model).__name__
  if name not in _MODEL_CLASSES:
    raise ValueError(f"cannot save a {name}; supported: {', '.join(_MODEL_CLASSES)}")
  if as_bert(model).config != config:
    raise ValueError(f"config {config} differs from the model's {as_bert(model).config}")
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  meta: dict[str, Any] = {"format": "cvlib-bert-1", "model_class": name,
                          "config": config.to_dict()}
  if isinstance(model, BertModel):
    meta["add_pooler"] = model.pooler is not None
  if isinstance(model, BertForSequenceClassification):
    meta.update(num_labels=model.num_labels, pooling=model.pooling)
  weights = {k: np.asarray(v[...]) for k, v in flat_params(model).items()}
  save_file(weights, str(folder / _WEIGHTS_FILE), metadata={"format": "cvlib-bert-1"})
  (folder / _META_FILE).write_text(json.dumps(meta, indent=2))
  if tokenizer is not None:
    tokenizer.save(str(folder / "tokenizer.json"))
  return folder


def load_saved_encoder(folder: str | os.PathLike, *, seed: int = 0) -> tuple[Any, BertConfig]:
  """Loads a model written by ``save_encoder``.

  Args:
    folder: the folder save_encoder wrote.
    seed: seeds dropout of the rebuilt model.

  Returns:
    (model, config), the model of the saved class.

  Raises:
    FileNotFoundError: the folder lacks the files save_encoder writes.
    ValueError: the weights do not fit the saved config (every problem listed).
  """
  folder = Path(folder)
  for name in (_META_FILE, _WEIGHTS_FILE):
    if not (folder / name).is_file():
      raise FileNotFoundError(f"{str(folder)!r} lacks {name}; was it written by save_encoder?")
  meta = json.loads((folder / _META_FILE).read_text())
  config = BertConfig(**meta["config"])
  rngs = nnx.Rngs(seed)
  cls_name = meta.get("model_class")
  if cls_name == "BertModel":
    model: Any = BertModel(config, rngs=rngs, add_pooler=meta.get("add_pooler", True))
  elif cls_name == "BertForSequenceClassification":
    model = BertForSequenceClassification(config, meta["num_labels"], rngs=rngs,
                                          pooling=meta.get("pooling", "mean"))
  elif cls_name == "BertForMaskedLM":
    model = BertForMaskedLM(config, rngs=rngs)
  else:
    raise ValueError(f"{folder / _META_FILE}: model_class must be one of "
                     f"{', '.join(_MODEL_CLASSES)}, got {cls_name!r}")
  weights = load_file(str(folder / _WEIGHTS_FILE))
  params = flat_params(model)
  problems = [f"missing: {k}" for k in sorted(set(params) - set(weights))]
  problems += [f"unexpected: {k}" for k in sorted(set(weights) - set(params))]
  problems += [f"shape mismatch: {k}: saved {weights[k].shape}, model {params[k].shape}"
               for k in sorted(set(params) & set(weights)) if weights[k].shape != params[k].shape]
  if problems:
    raise ValueError(f"{folder / _WEIGHTS_FILE}: {len(problems)} problem(s):\n  "
                     + "\n  ".join(problems))
  for key, var in params.items():
    var.set_value(jnp.asarray(weights[key], dtype=var.dtype))
  return model, config


class Checkpoints:
  """Orbax-managed checkpoints of a model's parameters in one folder.

  Each ``save`` writes the model's nnx Params (float32, under their nnx paths) as a numbered step
  with its metrics. With ``best_metric`` the manager keeps the ``max_to_keep`` steps with the
  highest value of that metric (e.g. validation macro-F1), otherwise the latest ones. Saving is
  synchronous, so a step on disk is complete when ``save`` returns. ``save_encoder`` remains the
  format of the report's model folder (one safetensors file next to the tokenizer); these are the
  checkpoints taken during training.

  Args:
    directory: the checkpoint folder (created if needed).
    best_metric: metric to keep the best steps by (higher is better); None keeps the latest.
    max_to_keep: steps kept on disk.

  Raises:
    ValueError: max_to_keep < 1.
  """

  def __init__(self, directory: str | os.PathLike, *, best_metric: str | None = None,
               max_to_keep: int = 1):
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel  (slow import)
    if not isinstance(max_to_keep, int) or max_to_keep < 1:
      raise ValueError(f"max_to_keep must be an int >= 1, got {max_to_keep!r}")
    self._ocp = ocp
    self.directory = Path(directory).absolute()
    self.best_metric = best_metric
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False,
        best_fn=(lambda m: m[best_metric]) if best_metric else None, best_mode="max")
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  @property
  def steps(self) -> list[int]:
    """Steps on disk, oldest first."""
    return list(self._manager.all_steps())

  def best_step(self) -> int | None:
    """The kept step with the highest best_metric (the latest without best_metric)."""
    if self.best_metric is None:
      return self._manager.latest_step()
    return self._manager.best_step()

  def save(self, step: int, model: nnx.Module, *, metrics: dict[str, float] | None = None) -> None:
    """Writes model's parameters as ``step`` (metrics must hold best_metric when it is set).

    Raises:
      ValueError: best_metric is set but missing from metrics.
    """
    if self.best_metric and (metrics is None or self.best_metric not in metrics):
      raise ValueError(f"metrics must contain {self.best_metric!r} to rank checkpoints, got "
                       f"{sorted(metrics or {})}")
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    self._manager.save(step, args=self._ocp.args.StandardSave(params),
                       metrics={k: float(v) for k, v in (metrics or {}).items()})
    self._manager.wait_until_finished()

  def restore(self, model: nnx.Module, step: int | None = None) -> int:
    """Loads a saved step (default: ``best_step()``) into model's parameters in place.

    Returns:
      The step restored.

    Raises:
      FileNotFoundError: no checkpoint (or not that step) in the folder.
    """
    step = self.best_step() if step is None else step
    if step is None or step not in self.steps:
      raise FileNotFoundError(f"no checkpoint {'' if step is None else step} in "
                              f"{str(self.directory)!r} (steps: {self.steps})")
    state = nnx.state(model, nnx.Param)
    target = nnx.to_pure_dict(state)
    restored = self._manager.restore(step, args=self._ocp.args.StandardRestore(target))
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(model, state)
    return step

  def close(self) -> None:
    self._manager.close()

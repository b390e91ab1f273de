"""A run folder as a model folder: its layout, the scoring reference, ``manifest.json`` and its check.

A run's ``models/`` folder holds everything scoring needs: the fine-tuned encoder and its
tokenizer, the text featurizer, the value networks, the scoring reference (the run's RFM score
edges, value-tier cut-offs and data start, so that population-relative rules place new customers
the way the run placed its own), the product catalogue and ``manifest.json``, which records the
versions, params, training data and the sha256 of every file. Loading checks the manifest first.
The folders' names are :mod:`cvlib.report.workspace`'s (the run folder every stage writes into);
the files this module adds are named here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib.data import features as feats
from cvlib.data.adapters import file_sha256
from cvlib.report.workspace import ARTIFACTS_DIR, ENCODER_DIR, MODELS_DIR, TEXT_FEATURIZER_FILE
from cvlib.value.networks import NETWORK_INPUTS, VALUE_MODELS



MANIFEST_FILE = "manifest.json"


MANIFEST_FORMAT = "cvlib-models-1"


REFERENCE_FILE = "scoring_reference.json"


CATALOGUE_FILE = "catalogue.parquet"


class ModelFolderError(ValueError):
  """A run's models/ folder that cannot be used; ``problems`` holds one message per problem."""

  def __init__(self, problems: list[str]):
    self.problems = list(problems)
    super().__init__("\n".join(self.problems))


def _major_minor(version: str) -> tuple[int, ...]:
  parts = version.split("+")[0].split(".")
  try:
    return tuple(int(p) for p in parts[:2])
  except ValueError:
    return tuple(parts[:2])


def _cvlib_version() -> str:
  import cvlib
  return cvlib.__version__


def write_manifest(run_dir: str | os.PathLike, run_info: dict[str, Any]) -> Path:
  """Writes ``models/manifest.json`` (and the product catalogue) into a finished run folder.

  Args:
    run_dir: the run folder (its artifacts/ and models/ as the stages left them).
    run_info: the run's run.json content (params, inputs, packages).

  Returns:
    The manifest's path.
  """
  # The blend's file name and the segment rules come with scikit-learn and matplotlib: imported
  # where used, so that the CLI (which catches ModelFolderError) starts without them.
  from cvlib.text.blend import BLEND_FILE
  run_dir = Path(run_dir)
  models = run_dir / MODELS_DIR
  models.mkdir(exist_ok=True)
  products = run_dir / ARTIFACTS_DIR / "products.parquet"
  if products.exists():  # item features need each product's category
    pd.read_parquet(products, columns=["product_id", "category"]) \
        .to_parquet(models / CATALOGUE_FILE, index=False)
  split_path = run_dir / ARTIFACTS_DIR / "split.json"
  split = json.loads(split_path.read_text()) if split_path.exists() else {}
  params = run_info.get("params", {})
  ref_path = models / REFERENCE_FILE
  ref = ScoringReference.load(ref_path) if ref_path.exists() else None
  networks = {}
  for name, uses in NETWORK_INPUTS.items():
    cfg_path = models / name / "ziln.json"
    if cfg_path.exists():
      cfg = json.loads(cfg_path.read_text())["config"]
      networks[name] = {
          "path": name, "files": ["ziln.safetensors", "ziln.json"], "inputs": list(uses),
          "description": VALUE_MODELS.get(name), "in_features": cfg["in_features"],
          "feature_names": cfg.get("feature_names"), "hidden": cfg.get("hidden"),
          "btyd_inputs": cfg.get("btyd"),
          "outputs": {"predicted_value": f"expected spend in the {split.get('horizon_days')} "
                                         "days after as_of (ZILN mean)",
                      "value_lo/value_hi": "central interval of that spend",
                      "churn_probability": "1 - P(any purchase in the horizon)"}}
  encoder = None
  enc_meta = models / ENCODER_DIR / "cvlib_model.json"
  if enc_meta.exists():
    meta = json.loads(enc_meta.read_text())
    fin = params.get("finetune", {})
    encoder = {"path": ENCODER_DIR, "format": meta.get("format"), "model_class": meta["model_class"],
               "checkpoint": "weights.safetensors", "tokenizer": "tokenizer.json",
               "config": meta["config"], "num_labels": meta.get("num_labels"),
               "label_scheme": fin.get("label_scheme"), "buckets": fin.get("buckets"),
               "truncation": fin.get("truncation") or "head",
               "base_encoder": fin.get("encoder"),
               "expects": "review texts (str); tokenized with tokenizer.json, cut to the largest "
                          "bucket (truncation head: its first tokens; head_tail: the first "
                          "quarter and the last three quarters of that length)",
               "outputs": "class probabilities (negative first) and the L2-normalised mean-pooled "
                          "embedding",
               "sentiment_blend": (None if not (models / ENCODER_DIR / BLEND_FILE).exists()
                                   else {"path": f"{ENCODER_DIR}/{BLEND_FILE}",
                                         "outputs": "review sentiment: encoder_weight x the "
                                                    "encoder's class probabilities + (1 - "
                                                    "encoder_weight) x TF-IDF + logistic "
                                                    "regression's (cvlib.text.blend.SentimentBlend)"})}
  featurizer = None
  if (models / TEXT_FEATURIZER_FILE).exists():
    with np.load(models / TEXT_FEATURIZER_FILE, allow_pickle=False) as z:
      dims = int(z["components"].shape[0])
    featurizer = {"path": TEXT_FEATURIZER_FILE, "text_dims": dims,
                  "expects": "per review: sentiment, timestamp, customer and encoder embedding",
                  "outputs": ["sent_mean", "sent_min", "sent_last", "n_negative_reviews",
                              "has_text"] + [f"text_pc{i + 1}" for i in range(dims)]
                             + [f"last_text_pc{i + 1}" for i in range(dims)]}
  scoring = None
  if ref is not None and ref.scoring_model in networks:
    predictor_cfg = networks[ref.scoring_model]
    scoring = {"model": ref.scoring_model, "reference": REFERENCE_FILE,
               "catalogue": CATALOGUE_FILE if (models / CATALOGUE_FILE).exists() else None,
               "churn_model": ref.scoring_model, "value_model": ref.scoring_model,
               "needs_text": "text" in predictor_cfg["inputs"],
               "explanations": "top_drivers: integrated gradients of the predicted value from "
                               "the run's median customer (reference baselines)",
               "as_of": ref.as_of.isoformat(), "horizon_days": ref.horizon_days,
               "interval": ref.interval}
  params_json = json.dumps(params, sort_keys=True, default=str)
  manifest = {
      "format": MANIFEST_FORMAT,
      "cvlib_version": _cvlib_version(),
      "dataset": run_info.get("dataset"),
      "created": run_info.get("ended"),
      "git_commit": run_info.get("git_commit"),
      "python": run_info.get("python"),
      "packages": run_info.get("packages", {}),
      "params": {"sha256": hashlib.sha256(params_json.encode()).hexdigest(),
                 "file": run_info.get("params_file"), "overrides": run_info.get("overrides", []),
                 "values": params},
      "training_data": run_info.get("inputs", []),
      "split": {k: split.get(k) for k in ("cutoff", "as_of", "horizon_days", "data_start",
                                          "data_end")},
      "features": {"function": "cvlib.data.features.compute_customer_features",
                   "as_of": split.get("as_of"), "calibration_cutoff": split.get("cutoff"),
                   "definitions": feats.FEATURE_DEFINITIONS,
                   "behaviour": list(feats.BEHAVIOUR_FEATURES),
                   "review": list(feats.REVIEW_FEATURES) + ["has_review"],
                   "text": featurizer["outputs"] if featurizer else None,
                   "days_since_last_review_without_reviews": "days from the reference's "
                                                             "data_start to as_of"},
      "encoder": encoder,
      "text_featurizer": featurizer,
      "value_models": networks,
      "scoring": scoring,
      "not_scorable": None if scoring else "this run has no value model (no customers with "
                                           "orders), so `cvlib score` does not apply",
  }
  files = {}
  for path in sorted(p for p in models.rglob("*") if p.is_file()):
    rel = path.relative_to(models).as_posix()
    if rel != MANIFEST_FILE:
      files[rel] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
  manifest["files"] = files
  out = models / MANIFEST_FILE
  tmp = out.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(manifest, indent=2, default=str))
  os.replace(tmp, out)
  return out


def load_manifest(run_dir: str | os.PathLike, *, verify: bool = True) -> dict[str, Any]:
  """Reads and checks a run's ``models/manifest.json``.

  Args:
    run_dir: the run folder (e.g. ``reports/demo``).
    verify: check every file's sha256 against the manifest.

  Returns:
    The manifest.

  Raises:
    ModelFolderError: no manifest, another cvlib major/minor version, or files missing or
      altered since the run (every problem listed).
  """
  run_dir = Path(run_dir)
  models = run_dir / MODELS_DIR
  path = models / MANIFEST_FILE
  if not run_dir.is_dir():
    raise ModelFolderError([f"{run_dir}: run folder not found"])
  if not path.is_file():
    raise ModelFolderError([f"{path}: missing; {run_dir} is not a finished cvlib run (or it was "
                            "made by a cvlib without scoring support): run the report again"])
  try:
    manifest = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ModelFolderError([f"{path}: not readable JSON ({e})"]) from None
  if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
    got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    raise ModelFolderError([f"{path}: format {got!r} is not {MANIFEST_FORMAT!r}"])
  ours, theirs = _cvlib_version(), str(manifest.get("cvlib_version"))
  if _major_minor(ours) != _major_minor(theirs):
    raise ModelFolderError([f"{path}: the models were written by cvlib {theirs}; this is cvlib "
                            f"{ours} (major.minor must match): re-run the report with this "
                            f"version, or score with cvlib {'.'.join(theirs.split('.')[:2])}"])
  if verify:
    problems = []
    for rel, entry in sorted(manifest.get("files", {}).items()):
      f = models / rel
      if not f.is_file():
        problems.append(f"{f}: missing (listed in {path})")
      elif file_sha256(f) != entry["sha256"]:
        problems.append(f"{f}: altered since the run (sha256 differs from {path})")
    if problems:
      raise ModelFolderError(problems)
  return manifest


@dataclasses.dataclass(frozen=True)
class ScoringReference:
  """What the run's population fixed for scoring anyone later: segment edges, data start."""
  scoring_model: str  # the network the run scored with (chosen on the selection customers)
  as_of: dt.date  # the run's scoring day
  data_start: dt.date  # the run's first purchase day: anchors days_since_last_review's filler
  horizon_days: int
  interval: float
  n_customers: int
  rfm_edges: dict[str, tuple[float, ...]]
  value_cuts: dict[str, tuple[float | None, float | None]]  # network -> (high_from, medium_from)
  value_tiers: tuple[float, float]
  risk_thresholds: tuple[float, float]
  warnings: tuple[str, ...] = ()
  # network -> the median customer's inputs: the baseline of the top_drivers explanations
  baselines: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

  def segment_reference(self, name: str):
    """The :class:`cvlib.insight.segments.SegmentReference` for scores of network ``name``."""
    if name not in self.value_cuts:
      raise ValueError(f"no value-tier cut-offs for network {name!r} (have: "
                       f"{', '.join(self.value_cuts)})")
    from cvlib.insight import segments  # matplotlib: see write_manifest
    high, medium = self.value_cuts[name]
    return segments.SegmentReference(self.rfm_edges, high, medium, self.value_tiers,
                                     self.risk_thresholds)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d.update(as_of=self.as_of.isoformat(), data_start=self.data_start.isoformat(),
             rfm_edges={k: list(v) for k, v in self.rfm_edges.items()},
             value_cuts={k: list(v) for k, v in self.value_cuts.items()},
             value_tiers=list(self.value_tiers), risk_thresholds=list(self.risk_thresholds),
             warnings=list(self.warnings),
             baselines={k: list(v) for k, v in self.baselines.items()}, format=1)
    return d

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> ScoringReference:
    d = dict(d)
    d.pop("format", None)
    d["as_of"] = dt.date.fromisoformat(d["as_of"])
    d["data_start"] = dt.date.fromisoformat(d["data_start"])
    d["rfm_edges"] = {k: tuple(float(x) for x in v) for k, v in d["rfm_edges"].items()}
    d["value_cuts"] = {k: tuple(None if x is None else float(x) for x in v)
                       for k, v in d["value_cuts"].items()}
    d["value_tiers"] = tuple(d["value_tiers"])
    d["risk_thresholds"] = tuple(d["risk_thresholds"])
    d["warnings"] = tuple(d.get("warnings", ()))
    d["baselines"] = {k: tuple(float(x) for x in v) for k, v in d.get("baselines", {}).items()}
    return cls(**d)

  def save(self, path: Path) -> None:
    # json writes floats with repr, so every edge reads back as the same double
    Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))

  @classmethod
  def load(cls, path: Path) -> ScoringReference:
    return cls.from_dict(json.loads(Path(path).read_text()))

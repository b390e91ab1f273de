"""Params: one YAML file per dataset, read into typed, frozen dataclasses.

Every key is checked where it enters: unknown keys, wrong types and out-of-range values raise
:class:`ParamsError` naming the file and the dotted key. YAML is read with ``yaml.safe_load`` only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import os
import re
import types
import typing
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import yaml

ADAPTERS = ("synthetic", "generic", "olist", "online_retail", "cdnow", "womens_clothing",
            "chinese_reviews")
FILE_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet")  # json: a JSON document or JSON Lines
SQL_SCHEMES = ("postgresql", "postgres")
LABEL_SCHEMES = ("binary", "binary_keep_neutral", "three_class")
STAGES = ("preprocess", "finetune", "evaluate", "segment")
TRUNCATIONS = ("head", "head_tail")  # cvlib.text.tokens.TRUNCATIONS
ENGINES = ("duckdb", "spark")  # where customer features (and `cvlib score --engine`) run
MIN_TRAIN_SAMPLE = 100  # value.train_sample: below this a sample leaves the networks too few rows

# The source tree: notebooks/, params/ and reports/ sit beside the package.
REPO = Path(__file__).resolve().parents[1]
RESERVED_NAMES = ("history", "failed")  # folders of the reports directory itself


class ParamsError(ValueError):
  """Bad params; ``problems`` holds one message per problem."""

  def __init__(self, problems: list[str]):
    self.problems = list(problems)
    super().__init__("\n".join(self.problems))


@dataclasses.dataclass(frozen=True)
class SqlSource:
  """A table or query in a PostgreSQL database (the generic adapter's ``sql:`` source).

  The password never sits in the params file: ``url_env`` names an environment variable that
  holds the whole URL, or ``url`` (without a password) lets libpq take it from ``PGPASSWORD`` or
  ``~/.pgpass``.
  """
  url_env: str | None = None  # name of the environment variable holding postgresql://user:pw@host/db
  url: str | None = None  # or the URL itself, without a password
  table: str | None = None  # a table (or schema.table), read whole
  query: str | None = None  # or a SELECT query (add ORDER BY for a reproducible row order)


@dataclasses.dataclass(frozen=True)
class TableSpec:
  """One input of the generic adapter: a file (``path``) or a database table or query (``sql``)."""
  path: str | None = None  # csv | tsv | json | jsonl | parquet, optionally .gz; relative to the params file or $CVLIB_DATA_DIR
  sql: SqlSource | None = None  # or a PostgreSQL table or query
  table: str | None = None  # or (engine spark) a table of the Spark catalog, e.g. shop.orders
  format: str | None = None  # one of FILE_FORMATS: the file's format when its name does not say it
  columns: dict[str, str] = dataclasses.field(default_factory=dict)  # canonical name -> file's column
  timestamp_unit: str | None = None  # numeric timestamps: "s" | "ms"
  timestamp_format: str | None = None  # strftime format when dates are ambiguous, e.g. "%d/%m/%Y"


@dataclasses.dataclass(frozen=True)
class DataConfig:
  adapter: str = "synthetic"  # one of ADAPTERS
  path: str | None = None  # adapter-specific file or folder; synthetic: folder from `cvlib demo-data`
  customers: int = 3000  # synthetic only: customers to generate when no path is given
  seed: int = 0  # synthetic only: generator seed
  transactions: TableSpec | None = None  # generic only
  reviews: TableSpec | None = None  # generic only
  reviews_as_purchases: bool = False  # each review counts as a purchase of amount 1
  # Last day of data the run sees (YYYY-MM-DD, inclusive): orders and reviews after it are left out
  # before cleaning, so a month-by-month series of runs can be made from one history file.
  until: dt.date | None = None


@dataclasses.dataclass(frozen=True)
class SplitConfig:
  calibration_end: dt.date | None = None  # first day of the holdout; None: last event - horizon_days
  horizon_days: int = 180  # length of the holdout (prediction) period


# finetune.encoder values that name a way to build the encoder; anything else is a model folder
BUILT_ENCODERS = ("minilm", "scratch", "transfer")


def learns_own_vocabulary(finetune: Any, language: str) -> bool:
  """Whether a run learns its vocabulary from the shop's reviews (so needs masked-LM steps): a
  small BERT from scratch, MiniLM's layers under a new vocabulary ("transfer"), or "minilm" asked
  for another language (MiniLM's vocabulary is English, so that falls back to scratch)."""
  return (finetune.encoder in ("scratch", "transfer")
          or (finetune.encoder == "minilm" and language != "en"))


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """The sentiment fine-tuning loop (``cvlib.training.fit``)."""
  epochs: int = 2  # upper bound; early stopping on validation macro-F1 may stop sooner
  batch_size: int = 32
  patience: int = 1  # epochs without validation improvement before stopping


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW with warm-up and linear decay (``cvlib.training.make_optimizer``)."""
  learning_rate: float = 5e-5
  warmup_ratio: float = 0.1  # share of steps with linear warm-up
  weight_decay: float = 0.01  # AdamW decay, never on biases or LayerNorm


@dataclasses.dataclass(frozen=True)
class MaskedLMConfig:
  """Masked-LM pretraining on the shop's review texts (test reviews left out) before fine-tuning:
  domain adaptation of a pretrained encoder, or the whole pretraining from scratch."""
  steps: int = 0  # 0 skips it (pretrained encoders only: from scratch it must be > 0)
  batch_size: int = 32
  learning_rate: float | None = None  # None: 1e-4 for a pretrained encoder, 5e-4 from scratch
  max_texts: int = 0  # a seeded sample of at most this many texts; 0 uses all
  mask_rate: float = 0.15  # share of tokens masked (80% [MASK], 10% random, 10% kept)
  compare: bool = False  # also fine-tune without masked-LM and report the difference (2x the time)


@dataclasses.dataclass(frozen=True)
class SmallBertConfig:
  """The BERT a shop's own vocabulary gets when it is learnt from scratch."""
  vocab_size: int = 16000  # WordPiece vocabulary size (an upper bound)
  layers: int = 4
  hidden: int = 256
  heads: int = 4
  intermediate: int = 1024


@dataclasses.dataclass(frozen=True)
class BlendConfig:
  # Combine the fine-tuned encoder with TF-IDF + logistic regression (trained on the same reviews),
  # the encoder's weight chosen on the validation reviews (1.0 keeps it alone); review scores
  # use the combination. false: the encoder alone.
  tfidf: bool = True


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  # "minilm" (the installed package; English), "scratch" (a WordPiece vocabulary and a small BERT
  # learnt from the shop's reviews with masked-LM; what other languages get from "minilm"),
  # "transfer" (a WordPiece vocabulary learnt from the reviews on MiniLM's layers, embeddings
  # started from MiniLM's, then masked-LM), or a folder with config.json, model.safetensors and
  # tokenizer.json
  encoder: str = "minilm"
  num_layers: int | None = None  # keep only the first k layers (fast tests); None keeps all
  label_scheme: str = "binary"  # one of LABEL_SCHEMES: how star ratings become sentiment labels
  max_train_examples: int = 2000  # cap on training reviews (CPU budget); 0 = no cap
  buckets: tuple[int, ...] = (32, 64, 128)  # padded sequence lengths; longer text is truncated
  test_size: float = 0.2  # share of labelled reviews held out for the sentiment metrics
  dtype: str = "float32"  # compute dtype: float32, or bfloat16 on GPUs
  # How a review longer than the largest bucket is cut: "head" keeps its start; "head_tail" keeps
  # a quarter of the length from its start and three quarters from its end (cvlib.text.tokens).
  truncation: str = "head"
  # Split every training batch over all local devices (a jax.sharding Mesh; parameters
  # replicated); the batch sizes must divide by the device count. false: the default device.
  data_parallel: bool = False
  training: TrainingConfig = TrainingConfig()
  optimizer: OptimizerConfig = OptimizerConfig()
  mlm: MaskedLMConfig = MaskedLMConfig()
  small_bert: SmallBertConfig = SmallBertConfig()
  blend: BlendConfig = BlendConfig()


# The flat finetune keys of cvlib 0.1, still read (with a deprecation message) for one version.
FLAT_FINETUNE_KEYS = {
    "epochs": "training.epochs", "batch_size": "training.batch_size",
    "patience": "training.patience", "learning_rate": "optimizer.learning_rate",
    "warmup_ratio": "optimizer.warmup_ratio", "weight_decay": "optimizer.weight_decay",
    "mlm_steps": "mlm.steps", "mlm_batch_size": "mlm.batch_size",
    "mlm_learning_rate": "mlm.learning_rate", "mlm_max_texts": "mlm.max_texts",
    "mask_rate": "mlm.mask_rate", "compare_mlm": "mlm.compare", "blend_tfidf": "blend.tfidf",
    "vocab_size": "small_bert.vocab_size", "small_layers": "small_bert.layers",
    "small_hidden": "small_bert.hidden", "small_heads": "small_bert.heads",
    "small_intermediate": "small_bert.intermediate",
}


class ParamsDeprecationWarning(FutureWarning):
  """A params key that still works but will not in the next version."""


@dataclasses.dataclass(frozen=True)
class ValueConfig:
  hidden: tuple[int, ...] = (64, 32)  # ZILN network hidden layer widths
  dropout: float = 0.1
  epochs: int = 200  # upper bound; early stopping on validation loss
  batch_size: int = 256
  learning_rate: float = 1e-3
  patience: int = 20
  text_dims: int = 4  # review-embedding dimensions (PCA) given to the text-aware model
  test_size: float = 0.3  # share of customers held out for evaluation
  # Train the value models on a seeded sample of this many of the training customers, stratified
  # by return in the target window x past spend x tenure (cvlib.value.sampling); every customer
  # outside it is a test customer, and every customer is still scored. 0: all training customers.
  train_sample: int = 0
  # A second back-test over every customer: the networks (with their text features) and the trees
  # are retrained on all folds but one and predict that one. 0 or 1 turns it off.
  cv_folds: int = 5
  # Every network also reads BG/NBD + Gamma-Gamma's expected purchases, P(alive), P(return), order
  # value and value, fitted on the training customers' calibration histories (issue 19).
  btyd_inputs: bool = True
  # Without review text, the networks also train on their training customers as they stood up to
  # this many horizons earlier (labels: spend in the horizon that followed, all before the cutoff;
  # an input `window` numbers the window, 0 when scoring), where the data hold 30 days before that
  # earlier cutoff. 0, the default: the one window (issue 19: no Gini gain beyond what another
  # seed gives, benchmarks/results/value_levers.json `windows`).
  train_windows: int = 0
  interval: float = 0.8  # central prediction interval reported per customer
  # The end-to-end model: each customer's history written as text, read by the fine-tuned encoder
  # with the numeric features, ZILN head, trained end to end. Slow on CPU; back-test only (the
  # forward scores come from the best of the other networks).
  end_to_end: bool = False
  e2e_epochs: int = 2
  e2e_batch_size: int = 32
  e2e_learning_rate: float = 5.0e-5
  e2e_head_learning_rate: float = 1.0e-3
  e2e_max_customers: int = 0  # a seeded sample of training customers (CPU budget); 0 uses all
  e2e_max_chars: int = 600  # history text per customer; the oldest events go first


@dataclasses.dataclass(frozen=True)
class AspectParams:
  """One aspect of the report's "opinions by aspect" (cvlib.insight.aspect_model.AspectSpec)."""
  descriptions: tuple[str, ...]  # sentences of what opinions on the aspect say (tagging)
  positive: tuple[str, ...]  # example positive opinions on it (polarity)
  negative: tuple[str, ...]  # example negative opinions on it
  keywords: tuple[str, ...] = ()  # reliable words; phrases match with up to two words between


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
  value_tiers: tuple[float, float] = (0.2, 0.3)  # shares of customers in the High and Medium tiers
  # High and Medium also need a predicted value of at least this share of a typical order (the
  # median customer's mean order value): where almost nobody returns, nobody is called valuable
  value_floor: float = 0.1
  risk_thresholds: tuple[float, float] = (0.3, 0.6)  # churn probability bounds of Medium and High risk
  top_k: int = 10  # recommendations per customer
  # reviews whose aspects are tagged (a seeded sample beyond it): clause embeddings cost CPU time
  aspect_max_reviews: int = 1500
  # clauses of the tagged reviews read to propose candidate aspects (whole reviews, a seeded
  # sample beyond it); 0: no candidates
  aspect_candidate_clauses: int = 4000
  # name -> AspectParams; empty: the language's six default aspects
  aspects: dict[str, AspectParams] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  title: str | None = None  # report title; None: the dataset name
  salt: str | None = None  # key for pseudonymising customer ids; $CVLIB_SALT wins when set
  raw_ids_in_scores: bool = False  # write raw customer ids into scores.parquet
  keep_history: int = 3  # earlier runs' reports kept under <out>/history/<dataset>/ (no models)


@dataclasses.dataclass(frozen=True)
class SparkConfig:
  """The Spark session of ``engine: spark`` (docs/spark.md); unused on DuckDB."""
  master: str | None = None  # local[2], spark://host:7077, yarn...; None: the active session, else local[*] (spark-submit sets it)
  app_name: str = "cvlib"
  shuffle_partitions: int = 8  # spark.sql.shuffle.partitions (Spark's default, 200, suits clusters)
  conf: dict[str, str] = dataclasses.field(default_factory=dict)  # more settings, e.g. spark.driver.memory: 4g


@dataclasses.dataclass(frozen=True)
class Params:
  dataset: str  # name of the report folder, [A-Za-z0-9_-]+
  language: str = "en"
  seed: int = 0  # seeds every model
  engine: str = "duckdb"  # one of ENGINES: where customer features are computed
  spark: SparkConfig = SparkConfig()
  data: DataConfig = DataConfig()
  split: SplitConfig = SplitConfig()
  finetune: FinetuneConfig = FinetuneConfig()
  value: ValueConfig = ValueConfig()
  segment: SegmentConfig = SegmentConfig()
  report: ReportConfig = ReportConfig()
  source: str = ""  # the params file these came from (set by the loader)

  def resolve_path(self, path: str) -> Path:
    """Resolves a data path against the params file's folder, then $CVLIB_DATA_DIR."""
    return resolve_data_path(path, Path(self.source).parent if self.source else Path.cwd())

  def to_dict(self) -> dict[str, Any]:
    return _to_plain(dataclasses.asdict(self))


def resolve_data_path(path: str, base: Path) -> Path:
  p = Path(os.path.expanduser(path))
  if p.is_absolute():
    return p
  candidates = [base / p]
  if os.environ.get("CVLIB_DATA_DIR"):
    candidates.append(Path(os.environ["CVLIB_DATA_DIR"]) / p)
  for c in candidates:
    if c.exists():
      return c
  return candidates[-1] if len(candidates) > 1 else candidates[0]


class _Loader(yaml.SafeLoader):
  """Safe YAML without implicit timestamps: dates stay strings and are checked with the key's name
  (PyYAML's own parser raises a bare ValueError on an impossible date such as 2024-02-30)."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_params(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Params:
  """Reads, overrides and checks a params file.

  Args:
    path: the YAML file.
    overrides: ``"dotted.key=value"`` strings; values are parsed as YAML scalars/lists.

  Returns:
    The typed, validated params.

  Raises:
    ParamsError: listing every problem, each naming the file and the key.
  """
  path = Path(path)
  name = str(path)
  try:
    text = path.read_text(encoding="utf-8")
  except FileNotFoundError:
    raise ParamsError([f"{name}: params file not found"]) from None
  except UnicodeDecodeError as e:
    raise ParamsError([f"{name}: not UTF-8 text ({e.reason} at byte {e.start})"]) from None
  try:
    raw = yaml.load(text, Loader=_Loader)
  except yaml.YAMLError as e:
    raise ParamsError([f"{name}: not valid YAML: {' '.join(str(e).split())}"]) from None
  if not isinstance(raw, dict):
    raise ParamsError([f"{name}: must be a mapping of keys to values, got {type(raw).__name__}"])
  problems: list[str] = []
  _nest_flat_finetune_keys(raw, name, problems)
  for item in overrides:
    _apply_override(raw, item, name, problems)
  raw["source"] = str(path.resolve())
  params = _build(Params, raw, name, "", problems)
  if not problems:
    problems.extend(_check(params, name))
  if problems:
    raise ParamsError(problems)
  return params


def params_from_dict(raw: dict[str, Any], name: str = "<params>") -> Params:
  """Builds params from a plain dict (e.g. run.json's copy); same checks as :func:`load_params`."""
  problems: list[str] = []
  raw = dict(raw)
  if isinstance(raw.get("finetune"), dict):
    raw["finetune"] = dict(raw["finetune"])
  _nest_flat_finetune_keys(raw, name, problems)
  params = _build(Params, raw, name, "", problems)
  if not problems:
    problems.extend(_check(params, name))
  if problems:
    raise ParamsError(problems)
  return params


def _deprecated(message: str) -> None:
  warnings.warn(message, ParamsDeprecationWarning, stacklevel=4)


def _nest_flat_finetune_keys(raw: dict, name: str, problems: list[str]) -> None:
  """Moves cvlib 0.1's flat finetune keys (``finetune.epochs``) to their sections
  (``finetune.training.epochs``), with a deprecation message for each."""
  section = raw.get("finetune")
  if not isinstance(section, dict):
    return
  for old, new in FLAT_FINETUNE_KEYS.items():
    if old not in section:
      continue
    group, key = new.split(".")
    sub = section.setdefault(group, {})
    if not isinstance(sub, dict):
      continue  # the section's own check names it
    if key in sub:
      problems.append(f"{name}: finetune.{old} and finetune.{new} are the same setting; keep "
                      f"finetune.{new}")
      continue
    sub[key] = section.pop(old)
    _deprecated(f"{name}: finetune.{old} is now finetune.{new}; the old key is read for one more "
                "version")


def _apply_override(raw: dict, item: str, name: str, problems: list[str]) -> None:
  key, sep, value = item.partition("=")
  if not sep or not key.strip():
    problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. finetune.training.epochs=1")
    return
  old = key.strip().partition("finetune.")[2] if key.strip().startswith("finetune.") else ""
  if old in FLAT_FINETUNE_KEYS:
    key = f"finetune.{FLAT_FINETUNE_KEYS[old]}"
    _deprecated(f"--set finetune.{old}: now finetune.{FLAT_FINETUNE_KEYS[old]}; the old key is "
                "read for one more version")
  try:
    parsed = yaml.load(value, Loader=_Loader) if value.strip() else None
  except yaml.YAMLError:
    parsed = value
  node = raw
  parts = key.strip().split(".")
  for part in parts[:-1]:
    child = node.get(part)
    if child is None:
      child = node[part] = {}
    if not isinstance(child, dict):
      problems.append(f"--set {item!r}: {part!r} is not a section")
      return
    node = child
  node[parts[-1]] = parsed


def _build(cls: type, raw: Any, name: str, prefix: str, problems: list[str]) -> Any:
  if not isinstance(raw, dict):
    problems.append(f"{name}: {prefix.rstrip('.') or 'top level'} must be a mapping, "
                    f"got {raw!r}")
    return None
  hints = typing.get_type_hints(cls)
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(raw) - set(fields), key=str)
  for key in unknown:
    paths = _key_paths(cls)  # a misspelt key, or one that moved into a sub-section
    by_leaf = {path.rsplit(".", 1)[-1]: path for path in reversed(paths)}
    near = (difflib.get_close_matches(str(key), paths, n=1)
            or [by_leaf[m] for m in difflib.get_close_matches(str(key), list(by_leaf), n=1)])
    hint = f"; did you mean {prefix + near[0]!r}?" if near else ""
    problems.append(f"{name}: unknown key {prefix + str(key)!r} (allowed: {', '.join(fields)})"
                    + hint)
  values = {}
  for key, field in fields.items():
    if key not in raw:
      if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        problems.append(f"{name}: key {prefix + key!r} is required")
      continue
    values[key] = _convert(hints[key], raw[key], name, prefix + key, problems)
  if problems:
    return None
  return cls(**values)


def _key_paths(cls: type) -> list[str]:
  """A section's keys, and its sub-sections' keys as dotted paths (``training.epochs``)."""
  out = []
  for field in dataclasses.fields(cls):
    tp = typing.get_type_hints(cls)[field.name]
    out.append(field.name)
    if dataclasses.is_dataclass(tp):
      out += [f"{field.name}.{sub}" for sub in _key_paths(tp)]
  return out


def _convert(tp: Any, value: Any, name: str, key: str, problems: list[str]) -> Any:
  origin = typing.get_origin(tp)
  if origin in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None:
      return None
    return _convert(args[0], value, name, key, problems)
  if dataclasses.is_dataclass(tp):
    return _build(tp, value, name, key + ".", problems)
  bad = lambda what: problems.append(f"{name}: {key} must be {what}, got {value!r}")
  if tp is bool:
    if not isinstance(value, bool):
      bad("true or false")
    return value
  if tp is int:
    if isinstance(value, bool) or not isinstance(value, int):
      bad("an integer")
    return value
  if tp is float:
    if isinstance(value, str):
      try:
        value = float(value)  # YAML 1.1 reads 5e-5 as a string
      except ValueError:
        pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      bad("a number")
      return value
    return float(value)
  if tp is str:
    if not isinstance(value, str):
      bad("a string")
    return value
  if tp is dt.date:
    if isinstance(value, dt.datetime):
      return value.date()
    if isinstance(value, dt.date):
      return value
    try:
      return dt.datetime.fromisoformat(str(value).strip()).date()  # a date or a date with time
    except ValueError:
      bad("a date YYYY-MM-DD")
      return value
  if origin is tuple:
    args = typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
      bad("a list")
      return value
    item_tp = args[0]
    if len(args) == 2 and args[1] is Ellipsis:
      pass
    elif len(args) != len(value):
      bad(f"a list of {len(args)} values")
      return value
    return tuple(_convert(item_tp, v, name, f"{key}[{i}]", problems) for i, v in enumerate(value))
  if origin is dict and dataclasses.is_dataclass(typing.get_args(tp)[1]):
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
      bad("a mapping of names to sections")
      return value
    return {k: _build(typing.get_args(tp)[1], v, name, f"{key}.{k}.", problems)
            for k, v in value.items()}
  if origin is dict:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
      bad("a mapping of names to column names")
      return value
    return dict(value)
  raise TypeError(f"unsupported params type {tp!r} for {key}")


def _check(p: Params, name: str) -> list[str]:
  """Range and choice checks; one message per problem."""
  out = []

  def need(cond: bool, key: str, what: str, value: Any) -> None:
    if not cond:
      out.append(f"{name}: {key} must be {what}, got {value!r}")

  need(bool(re.fullmatch(r"[A-Za-z0-9_-]+", p.dataset)) and p.dataset not in RESERVED_NAMES,
       "dataset", f"letters, digits, '_' or '-', and not {' or '.join(RESERVED_NAMES)}", p.dataset)
  need(p.engine in ENGINES, "engine", f"one of {', '.join(ENGINES)}", p.engine)
  need(p.spark.master is None or bool(p.spark.master.strip()), "spark.master",
       "a Spark master URL such as local[2] or spark://host:7077, or null", p.spark.master)
  need(p.spark.shuffle_partitions > 0, "spark.shuffle_partitions", "> 0",
       p.spark.shuffle_partitions)
  need(bool(p.spark.app_name.strip()), "spark.app_name", "a name", p.spark.app_name)
  need(all(k.startswith("spark.") for k in p.spark.conf), "spark.conf",
       "Spark settings, each named spark.*", sorted(p.spark.conf))
  need(p.data.adapter in ADAPTERS, "data.adapter", f"one of {', '.join(ADAPTERS)}", p.data.adapter)
  need(p.seed >= 0, "seed", ">= 0", p.seed)
  need(isinstance(p.language, str) and 2 <= len(p.language) <= 3 and p.language.isalpha()
       and p.language.islower(), "language", "an ISO 639 code such as en, pt or zh", p.language)
  need(p.data.seed >= 0, "data.seed", ">= 0", p.data.seed)
  need(p.data.customers > 0, "data.customers", "> 0", p.data.customers)
  if p.data.adapter == "generic":
    need(p.data.transactions is not None or p.data.reviews is not None, "data",
         "given a transactions or a reviews table for the generic adapter", None)
  for tname in ("transactions", "reviews"):
    spec = getattr(p.data, tname)
    if spec is not None:
      out.extend(_check_source(spec, f"data.{tname}", name, p.engine))
    if spec is not None and spec.timestamp_unit is not None:
      need(spec.timestamp_unit in ("s", "ms"), f"data.{tname}.timestamp_unit", "s or ms",
           spec.timestamp_unit)
  need(p.split.horizon_days > 0, "split.horizon_days", "> 0", p.split.horizon_days)
  f = p.finetune
  need(f.label_scheme in LABEL_SCHEMES, "finetune.label_scheme", f"one of {', '.join(LABEL_SCHEMES)}",
       f.label_scheme)
  need(f.num_layers is None or f.num_layers > 0, "finetune.num_layers", "> 0 or null", f.num_layers)
  tr, opt, mlm, small = f.training, f.optimizer, f.mlm, f.small_bert
  need(tr.epochs > 0, "finetune.training.epochs", "> 0", tr.epochs)
  need(tr.batch_size > 0, "finetune.training.batch_size", "> 0", tr.batch_size)
  need(tr.patience > 0, "finetune.training.patience", "> 0", tr.patience)
  need(0 < opt.learning_rate < 1, "finetune.optimizer.learning_rate", "in (0, 1)",
       opt.learning_rate)
  need(0 <= opt.warmup_ratio < 1, "finetune.optimizer.warmup_ratio", "in [0, 1)",
       opt.warmup_ratio)
  need(opt.weight_decay >= 0, "finetune.optimizer.weight_decay", ">= 0", opt.weight_decay)
  need(f.max_train_examples >= 0, "finetune.max_train_examples", ">= 0", f.max_train_examples)
  need(len(f.buckets) > 0 and all(b > 2 for b in f.buckets) and list(f.buckets) == sorted(f.buckets),
       "finetune.buckets", "increasing lengths > 2", f.buckets)
  need(0 < f.test_size < 1, "finetune.test_size", "in (0, 1)", f.test_size)
  need(mlm.steps >= 0, "finetune.mlm.steps", ">= 0", mlm.steps)
  scratch = learns_own_vocabulary(f, p.language)
  if scratch:
    need(mlm.steps > 0, "finetune.mlm.steps",
         f"> 0 when the encoder's vocabulary is learnt from the reviews (encoder {f.encoder!r}, "
         f"language {p.language!r}: MiniLM's vocabulary is English)", mlm.steps)
  need(mlm.batch_size > 0, "finetune.mlm.batch_size", "> 0", mlm.batch_size)
  need(mlm.learning_rate is None or 0 < mlm.learning_rate < 1, "finetune.mlm.learning_rate",
       "in (0, 1) or null", mlm.learning_rate)
  need(mlm.max_texts >= 0, "finetune.mlm.max_texts", ">= 0", mlm.max_texts)
  need(0 < mlm.mask_rate < 1, "finetune.mlm.mask_rate", "in (0, 1)", mlm.mask_rate)
  need(not mlm.compare or (mlm.steps > 0 and not scratch), "finetune.mlm.compare",
       "false unless a pretrained encoder gets mlm.steps > 0 (from scratch there is nothing to "
       "compare with)", mlm.compare)
  need(small.vocab_size >= 100, "finetune.small_bert.vocab_size", ">= 100", small.vocab_size)
  for key in ("layers", "hidden", "heads", "intermediate"):
    need(getattr(small, key) > 0, f"finetune.small_bert.{key}", "> 0", getattr(small, key))
  need(small.hidden % max(small.heads, 1) == 0, "finetune.small_bert.hidden",
       f"a multiple of finetune.small_bert.heads ({small.heads})", small.hidden)
  need(f.dtype in ("float32", "bfloat16"), "finetune.dtype", "float32 or bfloat16", f.dtype)
  need(f.truncation in TRUNCATIONS, "finetune.truncation", f"one of {', '.join(TRUNCATIONS)}",
       f.truncation)
  v = p.value
  need(v.e2e_epochs > 0, "value.e2e_epochs", "> 0", v.e2e_epochs)
  need(v.e2e_batch_size > 0, "value.e2e_batch_size", "> 0", v.e2e_batch_size)
  need(0 < v.e2e_learning_rate < 1, "value.e2e_learning_rate", "in (0, 1)", v.e2e_learning_rate)
  need(0 < v.e2e_head_learning_rate < 1, "value.e2e_head_learning_rate", "in (0, 1)",
       v.e2e_head_learning_rate)
  need(v.e2e_max_customers >= 0, "value.e2e_max_customers", ">= 0", v.e2e_max_customers)
  need(v.e2e_max_chars >= 50, "value.e2e_max_chars", ">= 50", v.e2e_max_chars)
  need(len(v.hidden) > 0 and all(h > 0 for h in v.hidden), "value.hidden", "positive widths", v.hidden)
  need(0 <= v.dropout < 1, "value.dropout", "in [0, 1)", v.dropout)
  need(v.epochs > 0, "value.epochs", "> 0", v.epochs)
  need(v.batch_size > 0, "value.batch_size", "> 0", v.batch_size)
  need(0 < v.learning_rate < 1, "value.learning_rate", "in (0, 1)", v.learning_rate)
  need(v.text_dims >= 0, "value.text_dims", ">= 0", v.text_dims)
  need(0 < v.test_size < 1, "value.test_size", "in (0, 1)", v.test_size)
  need(v.train_sample == 0 or v.train_sample >= MIN_TRAIN_SAMPLE, "value.train_sample",
       f"0 (all training customers) or at least {MIN_TRAIN_SAMPLE}", v.train_sample)
  need(0 < v.interval < 1, "value.interval", "in (0, 1)", v.interval)
  need(0 <= v.cv_folds <= 20, "value.cv_folds", "in [0, 20]", v.cv_folds)
  need(0 <= v.train_windows <= 12, "value.train_windows", "in [0, 12]", v.train_windows)
  s = p.segment
  need(all(0 < x < 1 for x in s.value_tiers) and sum(s.value_tiers) < 1, "segment.value_tiers",
       "two shares in (0, 1) summing below 1", s.value_tiers)
  need(0 <= s.value_floor <= 10, "segment.value_floor", "in [0, 10] (a share of a typical order)",
       s.value_floor)
  need(0 < s.risk_thresholds[0] < s.risk_thresholds[1] < 1, "segment.risk_thresholds",
       "two increasing probabilities in (0, 1)", s.risk_thresholds)
  need(s.top_k > 0, "segment.top_k", "> 0", s.top_k)
  need(s.aspect_max_reviews > 0, "segment.aspect_max_reviews", "> 0", s.aspect_max_reviews)
  need(s.aspect_candidate_clauses >= 0, "segment.aspect_candidate_clauses", ">= 0",
       s.aspect_candidate_clauses)
  for aspect, spec in s.aspects.items():
    need(bool(re.fullmatch(r"[a-z][a-z0-9_]*", aspect)), "segment.aspects",
         "named in lower-case letters, digits and '_'", aspect)
    for part in ("descriptions", "positive", "negative"):
      texts = getattr(spec, part)
      need(len(texts) > 0 and all(t.strip() for t in texts), f"segment.aspects.{aspect}.{part}",
           "a non-empty list of non-empty strings", list(texts))
  need(p.report.keep_history >= 0, "report.keep_history", ">= 0", p.report.keep_history)
  return out


def _check_source(spec: TableSpec, key: str, name: str, engine: str = "duckdb") -> list[str]:
  """A generic input is a file, a database source or a Spark table; a database password stays
  out of params."""
  out = []
  given = [k for k in ("path", "sql", "table") if getattr(spec, k) is not None]
  if len(given) != 1:
    out.append(f"{name}: {key} needs exactly one of path (a file) or sql (a database table or "
               "query)" + (" or table (a Spark table)" if engine == "spark" else ""))
  if spec.table is not None and engine != "spark":
    out.append(f"{name}: {key}.table is a Spark table: it needs engine: spark")
  if spec.table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*"
                                                 r"(\.[A-Za-z_][A-Za-z0-9_]*){0,2}", spec.table):
    out.append(f"{name}: {key}.table must be a table name such as shop.orders, got "
               f"{spec.table!r}")
  if spec.format is not None and spec.format not in FILE_FORMATS:
    out.append(f"{name}: {key}.format must be one of {', '.join(FILE_FORMATS)}, got "
               f"{spec.format!r}")
  if spec.format is not None and spec.sql is not None:
    out.append(f"{name}: {key}.format is for files; a sql source has no format")
  sql = spec.sql
  if sql is None:
    return out
  if (sql.url_env is None) == (sql.url is None):
    out.append(f"{name}: {key}.sql needs exactly one of url_env (the name of an environment "
               "variable holding the connection URL) or url (a URL without a password)")
  if (sql.table is None) == (sql.query is None):
    out.append(f"{name}: {key}.sql needs exactly one of table or query")
  if sql.url_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sql.url_env):
    # not echoed: it may be the URL itself, password and all
    out.append(f"{name}: {key}.sql.url_env must be the name of an environment variable (letters, "
               "digits, '_'), such as SHOP_DB_URL, not the URL itself")
  if sql.url is not None:
    parts = urllib.parse.urlsplit(sql.url)
    query = urllib.parse.parse_qs(parts.query)
    if parts.password is not None or "password" in query:
      out.append(f"{name}: {key}.sql.url holds a password: passwords do not go in params files; "
                 "put the whole URL in an environment variable and name it in url_env (e.g. "
                 "url_env: SHOP_DB_URL), or set PGPASSWORD")
    elif parts.scheme not in SQL_SCHEMES:
      out.append(f"{name}: {key}.sql.url must start with postgresql://, got {sql.url!r}")
  if sql.table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*"
                                                r"(\.[A-Za-z_][A-Za-z0-9_$]*)?", sql.table):
    out.append(f"{name}: {key}.sql.table must be a table name or schema.table, got "
               f"{sql.table!r}; use query for anything else")
  if sql.query is not None and not sql.query.strip():
    out.append(f"{name}: {key}.sql.query is empty")
  return out


def _to_plain(x: Any) -> Any:
  if isinstance(x, dict):
    return {k: _to_plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_to_plain(v) for v in x]
  if isinstance(x, dt.date):
    return x.isoformat()
  return x

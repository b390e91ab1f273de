"""Tests for cvlib.config: loading, checking and overriding params files."""

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest

from cvlib import config
from cvlib.config import ParamsError

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch):
  monkeypatch.delenv("CVLIB_DATA_DIR", raising=False)


def _load_text(write_params, text, overrides=()):
  return config.load_params(write_params(text), overrides)


# --- the shipped params -------------------------------------------------------------------------

def test_load_demo_params():
  p = config.load_params(PARAMS_DIR / "demo.yaml")
  assert p.dataset == "demo"
  assert p.data.adapter == "synthetic" and p.data.customers == 3000
  assert p.split.calibration_end is None and p.split.horizon_days == 180
  assert p.finetune.optimizer.learning_rate == pytest.approx(5e-5)
  assert p.finetune.buckets == (32, 64, 128)
  assert p.value.hidden == (64, 32) and p.value.epochs == 300
  assert p.segment.value_tiers == (0.2, 0.3)
  assert Path(p.source) == (PARAMS_DIR / "demo.yaml").resolve()


def test_load_tiny_params():
  p = config.load_params(PARAMS_DIR / "tiny.yaml")
  assert p.dataset == "tiny"
  assert p.data.customers == 300 and p.data.seed == 1
  assert p.finetune.num_layers == 1 and p.finetune.training.epochs == 1
  assert p.finetune.buckets == (32,)
  assert p.value.hidden == (16,) and p.value.text_dims == 4
  assert p.segment.aspect_max_reviews == 150
  # defaults fill what the file leaves out
  assert p.segment == config.SegmentConfig(aspect_max_reviews=150)
  assert p.report == config.ReportConfig()


def test_to_dict_round_trips_through_params_from_dict(write_params):
  path = write_params("dataset: a\nsplit: {calibration_end: 2024-03-01}\n")
  p = config.load_params(path)
  d = p.to_dict()
  assert d["split"]["calibration_end"] == "2024-03-01"
  assert d["finetune"]["buckets"] == [32, 64, 128]
  assert config.params_from_dict(d) == p


def test_sections_are_frozen_and_replaceable():
  p = config.load_params(PARAMS_DIR / "tiny.yaml")
  with pytest.raises(dataclasses.FrozenInstanceError):
    p.finetune.training.epochs = 5  # type: ignore[misc]
  f = dataclasses.replace(p.finetune, training=dataclasses.replace(p.finetune.training, epochs=3))
  assert f.training.epochs == 3 and p.finetune.training.epochs == 1
  q = dataclasses.replace(p, finetune=f)
  assert q.finetune.training.epochs == 3 and q.value == p.value


# --- file-level errors --------------------------------------------------------------------------

def test_missing_file(tmp_path):
  path = tmp_path / "nope.yaml"
  with pytest.raises(ParamsError, match=re.escape(f"{path}: params file not found")):
    config.load_params(path)


def test_invalid_yaml_names_file(write_params):
  path = write_params("dataset: [a\n")
  with pytest.raises(ParamsError, match=re.escape(str(path)) + ": not valid YAML") as e:
    config.load_params(path)
  assert len(e.value.problems) == 1 and "\n" not in e.value.problems[0]  # one line per problem


@pytest.mark.parametrize("text, got", [("- a\n- b\n", "list"), ("", "NoneType"),
                                       ("just a string\n", "str")])
def test_non_mapping_yaml(write_params, text, got):
  path = write_params(text)
  with pytest.raises(ParamsError, match=re.escape(f"{path}: must be a mapping") + f".*got {got}"):
    config.load_params(path)


def test_not_utf8(tmp_path):
  path = tmp_path / "latin.yaml"
  path.write_bytes("dataset: caf\xe9\n".encode("latin-1"))
  with pytest.raises(ParamsError, match=re.escape(f"{path}: not UTF-8")):
    config.load_params(path)


# --- key-level errors ---------------------------------------------------------------------------

def test_unknown_key_names_file_and_dotted_key(write_params):
  path = write_params("dataset: a\nfinetune: {epoch: 1}\n")
  with pytest.raises(ParamsError, match=re.escape(f"{path}: unknown key 'finetune.epoch'")) as e:
    config.load_params(path)
  assert "training" in str(e.value)  # lists what is allowed ...
  assert "did you mean 'finetune.training.epochs'?" in str(e.value)  # ... and the nearest key


def test_unknown_top_level_key(write_params):
  with pytest.raises(ParamsError, match="unknown key 'colour'"):
    _load_text(write_params, "dataset: a\ncolour: red\n")


def test_dataset_required(write_params):
  with pytest.raises(ParamsError, match="key 'dataset' is required"):
    _load_text(write_params, "language: en\n")


@pytest.mark.parametrize("text, pattern", [
    ("finetune: {training: {epochs: two}}", "finetune.training.epochs must be an integer, got 'two'"),
    ("finetune: {training: {epochs: 2.5}}", "finetune.training.epochs must be an integer, got 2.5"),
    ("finetune: {training: {epochs: true}}", "finetune.training.epochs must be an integer, got True"),
    ("finetune: {optimizer: {learning_rate: fast}}", "finetune.optimizer.learning_rate must be a number, got 'fast'"),
    ("data: {reviews_as_purchases: 'yes please'}", "data.reviews_as_purchases must be true or false"),
    ("finetune: {encoder: 3}", "finetune.encoder must be a string, got 3"),
    ("split: {calibration_end: 'soon'}", "split.calibration_end must be a date YYYY-MM-DD"),
    ("split: {calibration_end: '2024-02-30'}", "split.calibration_end must be a date YYYY-MM-DD"),
    ("value: {hidden: 16}", "value.hidden must be a list, got 16"),
    ("value: {hidden: [16, x]}", r"value.hidden\[1\] must be an integer, got 'x'"),
    ("segment: {value_tiers: [0.2]}", "segment.value_tiers must be a list of 2 values"),
    ("data: 5", "data must be a mapping, got 5"),
    ("data: {adapter: generic, reviews: {path: r.csv, columns: {text: 3}}}",
     "data.reviews.columns must be a mapping of names to column names"),
    ("dataset: 7", "dataset must be a string, got 7"),
])
def test_wrong_types(write_params, text, pattern):
  body = text if text.startswith("dataset") else "dataset: a\n" + text
  path = write_params(body + "\n")
  with pytest.raises(ParamsError, match=re.escape(f"{path}: ") + pattern):
    config.load_params(path)


@pytest.mark.parametrize("columns", ["[text]", "5"])
def test_columns_not_a_mapping(write_params, columns):
  path = write_params("dataset: a\ndata: {adapter: generic, reviews: {path: r.csv, columns: "
                      f"{columns}}}}}\n")
  with pytest.raises(ParamsError, match=re.escape(f"{path}: data.reviews.columns must be a mapping")):
    config.load_params(path)


@pytest.mark.parametrize("text, pattern", [
    ("dataset: 'a b'", r"dataset must be letters, digits"),
    ("dataset: a\ndata: {customers: 0}", r"data.customers must be > 0, got 0"),
    ("dataset: a\nsplit: {horizon_days: 0}", r"split.horizon_days must be > 0"),
    ("dataset: a\nfinetune: {num_layers: 0}", r"finetune.num_layers must be > 0 or null"),
    ("dataset: a\nfinetune: {training: {epochs: 0}}", r"finetune.training.epochs must be > 0"),
    ("dataset: a\nfinetune: {training: {batch_size: -1}}", r"finetune.training.batch_size must be > 0"),
    ("dataset: a\nfinetune: {optimizer: {learning_rate: 2}}", r"finetune.optimizer.learning_rate must be in \(0, 1\), got 2.0"),
    ("dataset: a\nfinetune: {optimizer: {learning_rate: .nan}}", r"finetune.optimizer.learning_rate must be in \(0, 1\)"),
    ("dataset: a\nfinetune: {optimizer: {warmup_ratio: 1.0}}", r"finetune.optimizer.warmup_ratio must be in \[0, 1\)"),
    ("dataset: a\nfinetune: {training: {patience: -1}}", r"finetune.training.patience must be > 0"),
    ("dataset: a\nfinetune: {max_train_examples: -5}", r"finetune.max_train_examples must be >= 0"),
    ("dataset: a\nfinetune: {buckets: [64, 32]}", r"finetune.buckets must be increasing lengths"),
    ("dataset: a\nfinetune: {buckets: []}", r"finetune.buckets must be increasing lengths"),
    ("dataset: a\nfinetune: {test_size: 1}", r"finetune.test_size must be in \(0, 1\)"),
    ("dataset: a\nlanguage: Portuguese", r"language must be an ISO 639 code"),
    ("dataset: a\nlanguage: pt", r"finetune.mlm.steps must be > 0 when the encoder's vocabulary "
     r"is learnt from the reviews \(encoder 'minilm', language 'pt': MiniLM's vocabulary is "
     r"English\)"),
    ("dataset: a\nfinetune: {encoder: scratch}", r"finetune.mlm.steps must be > 0 when"),
    ("dataset: a\nlanguage: pt\nfinetune: {encoder: transfer}", r"finetune.mlm.steps must be > 0 when"),
    ("dataset: a\nfinetune: {mlm: {steps: -1}}", r"finetune.mlm.steps must be >= 0"),
    ("dataset: a\nfinetune: {mlm: {compare: true}}", r"finetune.mlm.compare must be false unless"),
    ("dataset: a\nlanguage: zh\nfinetune: {mlm: {steps: 5, compare: true}}",
     r"finetune.mlm.compare must be false unless"),
    ("dataset: a\nfinetune: {mlm: {mask_rate: 0}}", r"finetune.mlm.mask_rate must be in \(0, 1\)"),
    ("dataset: a\nfinetune: {small_bert: {hidden: 100, heads: 3}}",
     r"finetune.small_bert.hidden must be a multiple of finetune.small_bert.heads \(3\), got 100"),
    ("dataset: a\nfinetune: {dtype: float16}", r"finetune.dtype must be float32 or bfloat16"),
    ("dataset: a\nvalue: {hidden: [16, 0]}", r"value.hidden must be positive widths"),
    ("dataset: a\nvalue: {dropout: 1.0}", r"value.dropout must be in \[0, 1\)"),
    ("dataset: a\nvalue: {text_dims: -1}", r"value.text_dims must be >= 0"),
    ("dataset: a\nvalue: {interval: 1.5}", r"value.interval must be in \(0, 1\)"),
    ("dataset: a\nvalue: {train_sample: 50}",
     r"value.train_sample must be 0 \(all training customers\) or at least 100, got 50"),
    ("dataset: a\nvalue: {train_sample: -1}", r"value.train_sample must be 0 .*got -1"),
    ("dataset: a\nsegment: {value_tiers: [0.6, 0.5]}", r"segment.value_tiers must be two shares"),
    ("dataset: a\nsegment: {risk_thresholds: [0.6, 0.3]}",
     r"segment.risk_thresholds must be two increasing probabilities"),
    ("dataset: a\nsegment: {top_k: 0}", r"segment.top_k must be > 0"),
])
def test_out_of_range(write_params, text, pattern):
  path = write_params(text + "\n")
  with pytest.raises(ParamsError, match=re.escape(f"{path}: ") + pattern):
    config.load_params(path)


def test_bad_adapter(write_params):
  with pytest.raises(ParamsError, match=r"data.adapter must be one of synthetic, generic, olist, "
                     r"online_retail, cdnow, womens_clothing, chinese_reviews, got 'amazon'"):
    _load_text(write_params, "dataset: a\ndata: {adapter: amazon}\n")


def test_generic_adapter_needs_a_table(write_params):
  with pytest.raises(ParamsError, match="given a transactions or a reviews table"):
    _load_text(write_params, "dataset: a\ndata: {adapter: generic}\n")


def test_bad_timestamp_unit(write_params):
  with pytest.raises(ParamsError, match=r"data.reviews.timestamp_unit must be s or ms, got 'us'"):
    _load_text(write_params, "dataset: a\ndata: {adapter: generic, reviews: "
               "{path: r.csv, columns: {text: body}, timestamp_unit: us}}\n")


def test_bad_label_scheme(write_params):
  with pytest.raises(ParamsError, match="finetune.label_scheme must be one of binary, "
                     "binary_keep_neutral, three_class, got 'five_class'"):
    _load_text(write_params, "dataset: a\nfinetune: {label_scheme: five_class}\n")


def test_every_problem_is_reported(write_params):
  path = write_params("dataset: a\nsplit: {horizon_days: -1}\nvalue: {dropout: 1.0}\n"
                      "finetune: {training: {epochs: 0}}\n")
  with pytest.raises(ParamsError) as e:
    config.load_params(path)
  assert len(e.value.problems) == 3
  assert all(p.startswith(f"{path}: ") for p in e.value.problems)
  assert str(e.value).splitlines() == e.value.problems


# --- values -------------------------------------------------------------------------------------

def test_dates_parsed(write_params):
  p = _load_text(write_params, "dataset: a\nsplit: {calibration_end: 2024-03-01}\n")
  assert p.split.calibration_end == dt.date(2024, 3, 1)
  p = _load_text(write_params, "dataset: a\nsplit: {calibration_end: '2024-03-01'}\n")
  assert p.split.calibration_end == dt.date(2024, 3, 1)
  p = _load_text(write_params, "dataset: a\nsplit: {calibration_end: 2024-03-01 10:30:00}\n")
  assert p.split.calibration_end == dt.date(2024, 3, 1)


def test_yaml11_exponent_read_as_float(write_params):
  # PyYAML (YAML 1.1) reads 5e-5 as a string; the loader still gives a float
  p = _load_text(write_params, "dataset: a\nfinetune: {optimizer: {learning_rate: 5e-5}}\n")
  assert p.finetune.optimizer.learning_rate == pytest.approx(5e-5)
  assert isinstance(p.finetune.optimizer.learning_rate, float)


def test_ints_accepted_for_floats(write_params):
  p = _load_text(write_params, "dataset: a\nfinetune: {optimizer: {warmup_ratio: 0}}\n")
  assert p.finetune.optimizer.warmup_ratio == 0.0 and isinstance(p.finetune.optimizer.warmup_ratio, float)


def test_generic_table_spec(write_params):
  p = _load_text(write_params, """
dataset: shop
data:
  adapter: generic
  transactions:
    path: orders.csv.gz
    columns: {customer_id: cust, order_id: order, timestamp: ts, amount: total}
  reviews:
    path: reviews.jsonl
    columns: {text: reviewText}
    timestamp_unit: ms
""")
  assert p.data.transactions == config.TableSpec(
      path="orders.csv.gz",
      columns={"customer_id": "cust", "order_id": "order", "timestamp": "ts", "amount": "total"})
  assert p.data.reviews.timestamp_unit == "ms"


# --- --set overrides ----------------------------------------------------------------------------

def test_flat_finetune_keys_of_the_last_version_still_work_with_a_deprecation_message(
    write_params):
  path = write_params("dataset: a\nfinetune: {epochs: 3, mlm_steps: 5, small_heads: 2, "
                      "small_hidden: 64, blend_tfidf: false}\n")
  with pytest.warns(config.ParamsDeprecationWarning,
                    match=r"finetune.epochs is now finetune.training.epochs"):
    p = config.load_params(path, ["finetune.learning_rate=1e-4"])
  f = p.finetune
  assert (f.training.epochs, f.mlm.steps, f.small_bert.heads, f.small_bert.hidden) == (3, 5, 2, 64)
  assert f.blend.tfidf is False and f.optimizer.learning_rate == pytest.approx(1e-4)
  with pytest.warns(config.ParamsDeprecationWarning, match=r"--set finetune.epochs: now"):
    assert config.load_params(path, ["finetune.epochs=1"]).finetune.training.epochs == 1
  with pytest.warns(config.ParamsDeprecationWarning):  # a run.json written by the last version
    old = config.params_from_dict({"dataset": "a", "finetune": {"patience": 4}})
  assert old.finetune.training.patience == 4
  both = write_params("dataset: a\nfinetune: {epochs: 3, training: {epochs: 2}}\n", name="b.yaml")
  with pytest.raises(ParamsError, match="finetune.epochs and finetune.training.epochs are the "
                                        "same setting; keep finetune.training.epochs"):
    config.load_params(both)


def test_overrides_dotted_and_yaml_typed(write_params):
  path = write_params("dataset: a\nfinetune: {training: {epochs: 2}}\n")
  p = config.load_params(path, ["finetune.training.epochs=1", "finetune.optimizer.learning_rate=1e-4",
                                "value.hidden=[8, 4]", "split.calibration_end=2024-01-01",
                                "data.reviews_as_purchases=true", "report.title=My shop",
                                "finetune.num_layers=null"])
  assert p.finetune.training.epochs == 1
  assert p.finetune.optimizer.learning_rate == pytest.approx(1e-4)
  assert p.value.hidden == (8, 4)
  assert p.split.calibration_end == dt.date(2024, 1, 1)
  assert p.data.reviews_as_purchases is True
  assert p.report.title == "My shop"
  assert p.finetune.num_layers is None


def test_override_value_with_equals_sign(write_params):
  p = config.load_params(write_params("dataset: a\n"), ["report.title=a=b"])
  assert p.report.title == "a=b"


def test_override_creates_new_sections(write_params):
  p = config.load_params(write_params("dataset: a\n"), [
      "data.adapter=generic", "data.reviews.path=r.csv", "data.reviews.columns={text: body}"])
  assert p.data.adapter == "generic"
  assert p.data.reviews == config.TableSpec(path="r.csv", columns={"text": "body"})


def test_override_top_level(write_params):
  p = config.load_params(write_params("dataset: a\n"), ["dataset=b", "seed=7"])
  assert p.dataset == "b" and p.seed == 7


@pytest.mark.parametrize("item", ["novalue", "=3", " =3"])
def test_override_bad_syntax(write_params, item):
  with pytest.raises(ParamsError, match=re.escape(f"--set {item!r}: expected KEY=VALUE")):
    config.load_params(write_params("dataset: a\n"), [item])


def test_override_into_a_scalar(write_params):
  with pytest.raises(ParamsError, match=re.escape("--set 'dataset.x=1': 'dataset' is not a section")):
    config.load_params(write_params("dataset: a\n"), ["dataset.x=1"])


def test_override_unknown_key_is_checked(write_params):
  path = write_params("dataset: a\n")
  with pytest.raises(ParamsError, match=re.escape(f"{path}: unknown key 'finetune.epoch'")):
    config.load_params(path, ["finetune.epoch=1"])
  with pytest.raises(ParamsError, match="unknown key 'foo'"):
    config.load_params(path, ["foo.bar=1"])


def test_override_values_are_validated(write_params):
  path = write_params("dataset: a\n")
  with pytest.raises(ParamsError, match="finetune.training.epochs must be > 0, got 0"):
    config.load_params(path, ["finetune.training.epochs=0"])
  with pytest.raises(ParamsError, match=r"finetune.buckets must be a list, got '\[32, 64'"):
    config.load_params(path, ["finetune.buckets=[32, 64"])  # unparseable YAML stays a string


def test_override_does_not_touch_the_file(write_params):
  path = write_params("dataset: a\nfinetune: {training: {epochs: 2}}\n")
  before = path.read_text()
  config.load_params(path, ["finetune.training.epochs=1"])
  assert path.read_text() == before
  assert config.load_params(path).finetune.training.epochs == 2


def test_impossible_unquoted_date_is_a_params_error(write_params):
  path = write_params("dataset: a\nsplit: {calibration_end: 2024-02-30}\n")
  with pytest.raises(ParamsError, match="split.calibration_end"):
    config.load_params(path)


def test_impossible_date_override_is_a_params_error(write_params):
  with pytest.raises(ParamsError, match="split.calibration_end"):
    config.load_params(write_params("dataset: a\n"), ["split.calibration_end=2024-02-30"])


@pytest.mark.parametrize("key", ["seed", "data.seed"])
def test_negative_seed_rejected(write_params, key):
  with pytest.raises(ParamsError, match=re.escape(key) + " must be"):
    config.load_params(write_params("dataset: a\n"), [f"{key}=-1"])


# --- data paths ---------------------------------------------------------------------------------

def test_resolve_data_path_params_folder_first(tmp_path, monkeypatch):
  base = tmp_path / "params"
  env = tmp_path / "env"
  for folder in (base, env):
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "orders.csv").write_text("x\n")
  monkeypatch.setenv("CVLIB_DATA_DIR", str(env))
  assert config.resolve_data_path("data/orders.csv", base) == base / "data" / "orders.csv"


def test_resolve_data_path_falls_back_to_env(tmp_path, monkeypatch):
  base = tmp_path / "params"
  base.mkdir()
  env = tmp_path / "env"
  env.mkdir()
  (env / "orders.csv").write_text("x\n")
  monkeypatch.setenv("CVLIB_DATA_DIR", str(env))
  assert config.resolve_data_path("orders.csv", base) == env / "orders.csv"
  # found nowhere: the env candidate is reported (the last place looked)
  assert config.resolve_data_path("missing.csv", base) == env / "missing.csv"


def test_resolve_data_path_without_env(tmp_path):
  assert config.resolve_data_path("missing.csv", tmp_path) == tmp_path / "missing.csv"
  absolute = tmp_path / "abs.csv"
  assert config.resolve_data_path(str(absolute), Path("/elsewhere")) == absolute


def test_params_resolve_path_uses_params_folder(write_params, tmp_path):
  p = config.load_params(write_params("dataset: a\n"))
  assert p.resolve_path("data/x.csv") == tmp_path.resolve() / "data" / "x.csv"

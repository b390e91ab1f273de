"""Tests for cvlib.serve.scorer and `cvlib score` / `cvlib run --all`: the run's own scores come back
exactly, the models folder checks itself, and one customer, a chunk and everyone score alike."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cvlib import cli

from cvlib.data import features

from cvlib.serve import model_folder
from cvlib.serve import scorer as scoring

from cvlib.insight import segments

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "params" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _restore_sigterm():
  before = signal.getsignal(signal.SIGTERM)
  yield
  signal.signal(signal.SIGTERM, before)  # cli.main installs its own handler


# A few float32 roundings (2**-23 each) apart.
FLOAT32_RTOL = 1e-6


def _as_of(run: Path) -> dt.date:
  return dt.date.fromisoformat(json.loads((run / "artifacts" / "split.json").read_text())["as_of"])


def _copy_models(run: Path, tmp_path: Path) -> Path:
  """A run folder holding only what scoring reads (models/)."""
  dst = tmp_path / "run"
  shutil.copytree(run / "models", dst / "models")
  return dst


# --- reference-based segments (no run needed) ---------------------------------------------------

def _population(seed: int, n: int) -> pd.DataFrame:
  rng = np.random.default_rng(seed)
  return pd.DataFrame({
      "customer_id": [f"c{i}" for i in range(n)],
      "recency_days": rng.integers(0, 40, n).astype(float),
      "frequency": rng.choice([1, 1, 1, 2, 3, 7], n).astype(float),  # ties: quintiles collapse
      "monetary": np.round(rng.lognormal(3, 1, n), 1),
      "predicted_value": np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(2, 1, n)),
      "churn_probability": rng.random(n)})


@pytest.mark.parametrize("seed,n", [(0, 1), (1, 7), (2, 250), (3, 999)])
def test_reference_reproduces_assign_segments_on_its_population(seed, n):
  df = _population(seed, n)
  expected, warnings = segments.assign_segments(df, value_tiers=(0.2, 0.3))
  ref, ref_warnings = segments.fit_segment_reference(df, value_tiers=(0.2, 0.3))
  got = segments.assign_segments_from_reference(df, ref)
  pd.testing.assert_frame_equal(got, expected, check_exact=True)
  assert ref_warnings == warnings
  # the JSON round trip keeps every edge bit for bit
  again = segments.SegmentReference.from_dict(json.loads(json.dumps(ref.to_dict())))
  assert again == ref


def test_a_reference_with_a_value_floor_reproduces_assign_segments():
  df = _population(5, 400)
  floor = float(df["predicted_value"].quantile(0.9))  # half of the High tier is below it
  expected, _ = segments.assign_segments(df, value_floor=floor)
  ref, _ = segments.fit_segment_reference(df, value_floor=floor)
  assert ref.high_from >= floor and ref.medium_from >= floor
  pd.testing.assert_frame_equal(segments.assign_segments_from_reference(df, ref), expected,
                                check_exact=True)
  assert (expected["value_tier"] != "Low").sum() == (df["predicted_value"] >= floor).sum()
  nobody, _ = segments.fit_segment_reference(df, value_floor=1e9)
  assert nobody.high_from is None and nobody.medium_from is None


def test_reference_places_each_customer_on_their_own():
  df = _population(4, 300)
  ref, _ = segments.fit_segment_reference(df)
  whole = segments.assign_segments_from_reference(df, ref)
  one_by_one = pd.concat([segments.assign_segments_from_reference(df.iloc[[i]], ref)
                          for i in range(0, 300, 7)])
  pd.testing.assert_frame_equal(one_by_one, whole.iloc[list(range(0, 300, 7))])
  # beyond the population: the best recency/frequency/spend get 5, the worst 1
  new = pd.DataFrame({"customer_id": ["x", "y"], "recency_days": [0.0, 1e4],
                      "frequency": [1e3, 1.0], "monetary": [1e6, 0.0],
                      "predicted_value": [1e9, 0.0], "churn_probability": [0.1, 0.9]})
  out = segments.assign_segments_from_reference(new, ref)
  assert out[["r_score", "f_score", "m_score"]].to_numpy().tolist() == [[5, 5, 5], [1, 1, 1]]
  assert out["value_tier"].tolist() == ["High", "Low"]
  assert out["rfm_segment"].tolist() == ["Champions", "Lost"]


def test_reference_validation():
  with pytest.raises(ValueError, match="column.*'monetary'"):
    segments.fit_segment_reference(_population(0, 5).drop(columns=["monetary"]))
  ref, _ = segments.fit_segment_reference(_population(0, 20))
  with pytest.raises(ValueError, match="recency_days: must be >= 0"):
    segments.assign_segments_from_reference(_population(0, 3).assign(recency_days=-1.0), ref)


def test_feature_definitions_cover_every_model_feature():
  assert set(features.FEATURE_DEFINITIONS) == set(features.BEHAVIOUR_FEATURES
                                                  + features.REVIEW_FEATURES)


@pytest.mark.parametrize("cutoff,horizon", [("2015-02-01", 30), ("2015-01-21", 30),
                                            ("2015-04-01", 60)])
def test_small_feature_path_equals_duckdb_on_the_hand_made_shop(tiny_shop, cutoff, horizon):
  t = tiny_shop
  args = (t["transactions"], t["items"], t["products"], t["reviews"],
          dt.date.fromisoformat(cutoff), horizon)
  pd.testing.assert_frame_equal(features.compute_features_small(*args),
                                features.compute_customer_features(*args), check_exact=True)


def test_small_feature_path_equals_duckdb_on_the_tiny_shop(tiny_clean):
  tables, _ = tiny_clean
  for cutoff in (dt.date(2023, 6, 1), dt.date(2024, 1, 1), dt.date(2024, 6, 29)):
    args = (tables.transactions, tables.items, tables.products, tables.reviews, cutoff, 180)
    pd.testing.assert_frame_equal(features.compute_features_small(*args),
                                  features.compute_customer_features(*args), check_exact=True)


def test_small_feature_path_sums_in_duckdbs_order():
  """Amounts whose sum depends on the order (1e16 + 1 - 1e16) and fractional quantities."""
  rng = np.random.default_rng(0)
  n = 600
  from cvlib.data import schema
  tx = schema.coerce_table("transactions", pd.DataFrame({
      "customer_id": rng.choice([f"a{i}" for i in range(40)], n),
      "order_id": [f"o{i}" for i in range(n)],
      "timestamp": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 9000, n), "h"),
      "amount": rng.choice([1e16, 1.0, -1e16, 0.1, 0.2, 1 / 3], n)}))
  items = schema.coerce_table("items", pd.DataFrame({
      "order_id": tx["order_id"], "product_id": rng.choice(["p", "q", "z"], n),
      "quantity": rng.choice([0.1, 0.2, 1 / 3, 2.0], n), "unit_price": 1.0, "amount": 1.0}))
  products = schema.coerce_table("products", pd.DataFrame({
      "product_id": ["p", "q"], "category": ["x", None], "description": [None, None]}))
  reviews = schema.coerce_table("reviews", pd.DataFrame({
      "review_id": [f"r{i}" for i in range(80)],
      "customer_id": rng.choice([f"a{i}" for i in range(40)] + [None], 80),
      "timestamp": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 30, 80), "D"),
      "rating": rng.choice([1.0, 2.0, 3.5, 5.0, np.nan], 80), "text": "x"}))
  args = (tx, items, products, reviews, dt.date(2023, 12, 1), 90)
  pd.testing.assert_frame_equal(features.compute_features_small(*args),
                                features.compute_customer_features(*args), check_exact=True)


def test_scorer_falls_back_to_duckdb_when_the_small_path_disagrees(monkeypatch):
  features.small_path_agrees.cache_clear()
  right = features.compute_features_small
  wrong = lambda *a: right(*a).assign(n_orders=-1.0)
  monkeypatch.setattr(features, "compute_features_small", wrong)
  with pytest.warns(RuntimeWarning, match="using DuckDB"):
    assert features.small_path_agrees() is False
  monkeypatch.undo()
  features.small_path_agrees.cache_clear()
  assert features.small_path_agrees() is True


def test_run_without_value_model_is_not_scorable(tmp_path):
  (tmp_path / "artifacts").mkdir()
  (tmp_path / "artifacts" / "split.json").write_text(json.dumps({"cutoff": None, "as_of": None}))
  model_folder.write_manifest(tmp_path, {"dataset": "reviews_only", "params": {}})
  with pytest.raises(model_folder.ModelFolderError, match="no value model"):
    scoring.Scorer(tmp_path)


# --- the run's models folder ---------------------------------------------------------------------

def test_manifest_describes_the_models_folder(tiny_run):
  m = model_folder.load_manifest(tiny_run)
  run = json.loads((tiny_run / "run.json").read_text())
  assert m["cvlib_version"] == run["packages"]["cvlib"] and m["packages"]["jax"]
  assert m["params"]["values"] == run["params"] and len(m["params"]["sha256"]) == 64
  assert m["training_data"] == run["inputs"] and len(m["training_data"][0]["sha256"]) == 64
  assert m["split"]["as_of"] == _as_of(tiny_run).isoformat() and m["split"]["cutoff"]
  assert m["features"]["behaviour"] == list(features.BEHAVIOUR_FEATURES)
  assert m["encoder"]["tokenizer"] == "tokenizer.json" and m["encoder"]["buckets"]
  assert m["encoder"]["sentiment_blend"]["path"] == "encoder/sentiment_tfidf.npz"
  assert set(m["value_models"]) == {"ziln", "ziln_ratings", "ziln_text"}
  assert m["value_models"]["ziln_text"]["inputs"] == ["history", "ratings", "text"]
  assert m["scoring"]["model"] in m["value_models"]
  on_disk = {p.relative_to(tiny_run / "models").as_posix()
             for p in (tiny_run / "models").rglob("*") if p.is_file()}
  assert set(m["files"]) == on_disk - {"manifest.json"}
  assert {"encoder/weights.safetensors", "scoring_reference.json", "catalogue.parquet",
          "text_featurizer.npz"} <= set(m["files"])


@pytest.mark.parametrize("damage,message", [
    ("alter", "altered since the run"),
    ("remove", "missing"),
    ("version", "written by cvlib 9.9.0"),
    ("no_manifest", "not a finished cvlib run"),
])
def test_damaged_models_folder_exits_2(tiny_run, tmp_path, capsys, damage, message):
  run = _copy_models(tiny_run, tmp_path)
  models = run / "models"
  name = json.loads((models / "manifest.json").read_text())["scoring"]["model"]
  if damage == "alter":
    with open(models / name / "ziln.safetensors", "r+b") as f:  # one flipped byte of a weight
      f.seek(-1, 2)
      last = f.read(1)
      f.seek(-1, 2)
      f.write(bytes([last[0] ^ 1]))
  elif damage == "remove":
    (models / "scoring_reference.json").unlink()
  elif damage == "version":
    m = json.loads((models / "manifest.json").read_text())
    m["cvlib_version"] = "9.9.0"
    (models / "manifest.json").write_text(json.dumps(m))
  else:
    (models / "manifest.json").unlink()
  assert cli.main(["score", str(run), str(TINY), "--out", str(tmp_path / "s.parquet")]) == 2
  err = capsys.readouterr().err
  assert message in err and "Traceback" not in err
  assert all(line.startswith("error: ") for line in err.strip().splitlines())
  if damage in ("alter", "remove"):
    assert ("ziln.safetensors" if damage == "alter" else "scoring_reference.json") in err
  assert not (tmp_path / "s.parquet").exists()


# --- cvlib score ---------------------------------------------------------------------------------

def test_cli_score_reproduces_the_runs_scores_exactly(tiny_run, tmp_path, capsys):
  out = tmp_path / "scores.parquet"
  assert cli.main(["score", str(tiny_run), str(TINY), "--out", str(out)]) == 0
  assert f"Scored 300 customers as of {_as_of(tiny_run)}" in capsys.readouterr().out
  run_scores = pd.read_parquet(tiny_run / "scores.parquet")
  scored = pd.read_parquet(out)
  pd.testing.assert_frame_equal(scored, run_scores, check_exact=True)
  assert scored["model_version"].str.fullmatch(r"ziln\w*-[0-9a-f]{12}").all()
  # csv by extension, the same rows
  csv = tmp_path / "scores.csv"
  assert cli.main(["score", str(tiny_run), str(TINY), "--out", str(csv), "--chunk-size", "40"]) == 0
  back = pd.read_csv(csv)
  assert back["customer_key"].tolist() == run_scores["customer_key"].tolist()
  np.testing.assert_allclose(back["predicted_value"], run_scores["predicted_value"], rtol=1e-12)


def test_cli_score_default_output_and_earlier_as_of(tiny_run, tmp_path, capsys):
  run = _copy_models(tiny_run, tmp_path)
  cutoff = json.loads((tiny_run / "artifacts" / "split.json").read_text())["cutoff"]
  assert cli.main(["score", str(run), str(TINY), "--as-of", cutoff]) == 0
  scored = pd.read_parquet(run / f"scores_{cutoff}.parquet")
  # as of the cutoff: the calibration features the back-test used
  cal = pd.read_parquet(tiny_run / "artifacts" / "features.parquet")
  assert scored["customer_key"].tolist() == cal["customer_key"].tolist()
  np.testing.assert_array_equal(scored["recency_days"], cal["days_since_last"])
  assert capsys.readouterr().out.startswith("Scored 300 customers")


@pytest.mark.parametrize("args,message", [
    (["--as-of", "yesterday"], "--as-of: 'yesterday' is not a date"),
    (["--out", "scores.txt"], "must end in .parquet or .csv"),
    (["--as-of", "2001-01-01"], "no order before --as-of 2001-01-01"),
    (["--model", "gbt"], "no value model 'gbt'"),
])
def test_cli_score_bad_arguments_exit_2(tiny_run, tmp_path, capsys, args, message):
  run = _copy_models(tiny_run, tmp_path)
  assert cli.main(["score", str(run), str(TINY), *args]) == 2
  err = capsys.readouterr().err
  assert message in err and "Traceback" not in err


# --- Scorer: one customer, chunks -----------------------------------------------------------------

def _history(tables, customer_id: str | list[str]) -> dict:
  ids = [customer_id] if isinstance(customer_id, str) else customer_id
  tx = tables.transactions[tables.transactions["customer_id"].isin(ids)]
  return {"transactions": tx,
          "reviews": tables.reviews[tables.reviews["customer_id"].isin(ids)],
          "items": tables.items[tables.items["order_id"].isin(tx["order_id"])]}


def _some_customers(tables, k: int = 4) -> list[str]:
  """Customers with and without reviews, one order and many."""
  counts = tables.transactions["customer_id"].value_counts()
  reviewed = set(tables.reviews["customer_id"].dropna())
  picks = [counts.index[0], counts.index[-1],
           next(c for c in counts.index if c in reviewed),
           next(c for c in counts.index if c not in reviewed)]
  return list(dict.fromkeys(picks))[:k]


def test_scorer_one_customer_equals_the_batch_row(tiny_run, tiny_clean):
  tables, _ = tiny_clean
  # history and star ratings, no text; with the top_drivers explanations the run writes
  scorer = scoring.Scorer(tiny_run, model="ziln_ratings", drivers=True)
  batch = scorer.score_tables(tables).set_index("customer_key")
  if scorer.name == scorer.reference.scoring_model:
    pd.testing.assert_frame_equal(batch.reset_index(), pd.read_parquet(tiny_run / "scores.parquet"))
  for customer in _some_customers(tables):
    # the product catalogue comes from the models folder (no products passed)
    one = scorer.score(**_history(tables, customer), as_of=_as_of(tiny_run))
    assert len(one) == 1 and one["customer_id"].iloc[0] == customer
    row = one.drop(columns=["customer_id"]).set_index("customer_key")
    pd.testing.assert_frame_equal(row, batch.loc[row.index], check_exact=True)


def test_scorer_text_model_one_customer_matches_batch_to_float32(tiny_run, tiny_clean):
  tables, _ = tiny_clean
  scorer = scoring.Scorer(tiny_run, model="ziln_text")
  batch = scorer.score_tables(tables).set_index("customer_key")
  seen = {}
  for customer in _some_customers(tables):
    one = scorer.score(**_history(tables, customer), as_of=_as_of(tiny_run))
    row = one.drop(columns=["customer_id"]).set_index("customer_key")
    expected = batch.loc[row.index]
    # one review per encoder call: XLA rounds a [1, len] batch differently from [64, len]
    np.testing.assert_allclose(row["predicted_value"], expected["predicted_value"], rtol=1e-4)
    np.testing.assert_allclose(row["churn_probability"], expected["churn_probability"],
                               atol=1e-5)
    for col in ("r_score", "f_score", "rfm_segment", "risk_band", "model", "model_version"):
      assert row[col].tolist() == expected[col].tolist(), col
    seen[customer] = one
  # the same customers again: their reviews come from the encoding cache, the rows bit for bit
  assert scorer.review_cache.hits == 0 and len(scorer.review_cache) > 0
  for customer, first in seen.items():
    again = scorer.score(**_history(tables, customer), as_of=_as_of(tiny_run))
    pd.testing.assert_frame_equal(again, first, check_exact=True)
  assert scorer.review_cache.hits == len(scorer.review_cache)
  # eight reviews per encoder call, last calls fitted to their reviews: float32 rounding
  many = scorer.score(**_history(tables, list(seen)), as_of=_as_of(tiny_run), encoder_batch=8)
  small = scoring.EncodingCache(3)
  for k in range(5):
    small.put(bytes([k]), np.full(2, k, np.float32))
  assert len(small) == 3 and small.get(bytes([0])) is None and small.get(bytes([4]))[0] == 4
  want = pd.concat(seen.values()).set_index("customer_key").loc[many["customer_key"]]
  np.testing.assert_allclose(many["predicted_value"], want["predicted_value"], rtol=1e-4)


def test_text_model_batch_scoring_rebuilds_the_runs_text_features(tiny_run, tiny_clean):
  """Scores from the saved encoder equal scores from the text features the run computed."""
  from cvlib.value import networks
  tables, _ = tiny_clean
  scorer = scoring.Scorer(tiny_run, model="ziln_text", drivers=True)
  assert scorer.blend is not None and scorer.blend.weight < 1.0  # review scores are combined
  ours = scorer.score_tables(tables)
  art = tiny_run / "artifacts"
  theirs = scoring.score_frame(pd.read_parquet(art / "features_now.parquet"),
                               pd.read_parquet(art / "text_now.parquet"), scorer.predictor,
                               "ziln_text", scorer.reference, as_of=_as_of(tiny_run))
  # The scorer encodes only the reviews before as_of, so a review can sit elsewhere in its batch
  # than in the run: on some CPUs (AVX2) XLA's float32 result then differs in the last bit.
  pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=FLOAT32_RTOL, atol=0)
  assert networks.NETWORK_INPUTS["ziln_text"][-1] == "text"


def test_chunked_scoring_equals_unchunked(tiny_run, tiny_clean, tmp_path):
  tables, _ = tiny_clean
  scorer = scoring.Scorer(tiny_run, model="ziln_text", drivers=True)  # chunks: encoder, drivers
  whole = scorer.score_tables(tables, chunk_size=10_000)
  chunked = scorer.score_tables(tables, chunk_size=37)
  # other chunks put reviews elsewhere in the encoder's batches: equal to float32 rounding
  pd.testing.assert_frame_equal(chunked, whole, check_exact=False, rtol=FLOAT32_RTOL, atol=0)
  n = scorer.score_tables(tables, chunk_size=64, out=tmp_path / "s.parquet")
  assert n == len(whole) == 300
  whole.to_parquet(tmp_path / "whole.parquet", index=False)  # the same types as read back
  pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s.parquet"),
                                pd.read_parquet(tmp_path / "whole.parquet"), check_exact=False,
                                rtol=FLOAT32_RTOL, atol=0)


def test_scorer_input_checks(tiny_run, tiny_clean):
  tables, _ = tiny_clean
  scorer = scoring.Scorer(tiny_run, warm_up=False)
  with pytest.raises(ValueError, match="'amount' missing"):
    scorer.score(tables.transactions.drop(columns=["amount"]).head(3))
  with pytest.raises(ValueError, match="chunk_size must be a positive int"):
    scorer.score_tables(tables, chunk_size=0)
  # a customer whose only purchase is on the scoring day has no history before it: no row
  tx = tables.transactions.head(1)
  assert len(scorer.score(tx, as_of=tx["timestamp"].iloc[0].date())) == 0


# --- cvlib run --all -----------------------------------------------------------------------------

def test_run_all_keeps_the_good_report_and_exits_nonzero(tiny_run, tmp_path, capsys):
  """``run --all`` with a good and a bad params file. The good one is params/tiny.yaml itself,
  so its report doubles as the determinism check: the same params on CPU give the same
  metrics.json as the session's tiny run, timings apart (one report run serves both tests)."""
  folder = tmp_path / "params"
  folder.mkdir()
  shutil.copy(TINY, folder / "good.yaml")
  (folder / "bad.yaml").write_text(yaml.safe_dump({
      "dataset": "broken", "data": {"adapter": "generic", "transactions": {
          "path": "missing_orders.csv",
          "columns": {"customer_id": "c", "order_id": "o", "timestamp": "t", "amount": "a"}}}}))
  (folder / "notes.txt").write_text("not a params file")
  out = tmp_path / "reports"
  assert cli.main(["run", "--all", str(folder), "--out", str(out)]) == 2
  captured = capsys.readouterr()
  assert "bad.yaml" in captured.err and "missing_orders.csv" in captured.err
  assert "Traceback" not in captured.err
  assert "1 of 2 reports written" in captured.out
  assert (out / "tiny" / "index.html").is_file()
  assert (out / "tiny" / "models" / "manifest.json").is_file()
  assert not (out / "broken").exists()
  assert "tiny/index.html" in (out / "index.html").read_text()
  first = json.loads((tiny_run / "metrics.json").read_text())
  second = json.loads((out / "tiny" / "metrics.json").read_text())
  for m in (first, second):
    m.pop("timing_s")
  assert first == second


def test_run_all_argument_errors(tmp_path, capsys):
  assert cli.main(["run", "--all", str(tmp_path)]) == 2
  assert "no params files" in capsys.readouterr().err
  assert cli.main(["run", str(TINY), "--all", str(tmp_path)]) == 2
  assert "not both" in capsys.readouterr().err
  assert cli.main(["run"]) == 2
  assert "give a params file" in capsys.readouterr().err

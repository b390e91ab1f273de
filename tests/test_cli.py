"""Tests for cvlib.cli: `validate` and `demo-data` (exit status, messages on stderr)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cvlib import cli

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "params" / "tiny.yaml"
CVLIB = Path(sys.executable).parent / "cvlib"  # the installed console script of this venv

TX_COLUMNS = {"customer_id": "cust", "order_id": "order", "timestamp": "ts", "amount": "total"}


@pytest.fixture(autouse=True)
def _restore_sigterm(monkeypatch):
  monkeypatch.delenv("CVLIB_DATA_DIR", raising=False)
  before = signal.getsignal(signal.SIGTERM)
  yield
  signal.signal(signal.SIGTERM, before)  # main() installs its own handler


@pytest.fixture
def bad_generic(tmp_path, write_params):
  """Generic params whose two files each lack a mapped column: two problems."""
  (tmp_path / "orders.csv").write_text("cust,order,ts,total\n1,1,2023-01-01,5\n")
  (tmp_path / "reviews.csv").write_text("who,body\nu1,nice\n")
  return write_params({"dataset": "shop", "data": {
      "adapter": "generic",
      "transactions": {"path": "orders.csv", "columns": {**TX_COLUMNS, "amount": "price"}},
      "reviews": {"path": "reviews.csv", "columns": {"customer_id": "who", "text": "review"}}}})


def _errors(err: str) -> list[str]:
  lines = err.strip().splitlines()
  assert all(line.startswith("error: ") for line in lines), err
  assert "Traceback" not in err
  return lines


def test_validate_tiny(capsys):
  assert cli.main(["validate", str(TINY)]) == 0
  out, err = capsys.readouterr()
  assert err == ""
  first = out.splitlines()[0]
  assert first.startswith(f"{TINY}: OK") and "300 customers" in first
  assert "transactions: exact duplicate rows:" in out and "rows removed" in out


def test_validate_with_override(capsys):
  assert cli.main(["validate", str(TINY), "--set", "data.customers=25"]) == 0
  assert "25 customers" in capsys.readouterr().out


@pytest.mark.parametrize("encoder", ["scratch", "transfer"])
def test_validate_accepts_built_encoders(encoder, capsys):
  """Encoders cvlib builds are not folders to look for (``scratch`` once was)."""
  args = ["validate", str(TINY), "--set", "data.customers=25", "--set",
          f"finetune.encoder={encoder}", "--set", "finetune.mlm.compare=false"]
  assert cli.main(args) == 0, capsys.readouterr().err
  assert cli.main(["validate", str(TINY), "--set", "finetune.encoder=no_such_folder"]) == 2
  assert "finetune.encoder:" in capsys.readouterr().err


def test_validate_missing_columns_exits_2(bad_generic, tmp_path, capsys):
  assert cli.main(["validate", str(bad_generic)]) == 2
  out, err = capsys.readouterr()
  assert out == ""
  lines = _errors(err)
  assert lines == [
      f"error: {tmp_path / 'orders.csv'}: column 'price' (for amount) missing "
      "(have: cust, order, ts, total)",
      f"error: {tmp_path / 'reviews.csv'}: column 'review' (for text) missing (have: who, body)",
  ]


def test_validate_bad_params_exits_2(write_params, capsys):
  path = write_params("dataset: a\nfinetune: {training: {epochs: 0}, label_scheme: five}\ncolour: red\n")
  assert cli.main(["validate", str(path)]) == 2
  lines = _errors(capsys.readouterr().err)
  assert len(lines) == 1 and f"error: {path}: unknown key 'colour'" in lines[0]
  path = write_params("dataset: a\nfinetune: {training: {epochs: 0}, label_scheme: five}\n")
  assert cli.main(["validate", str(path)]) == 2
  lines = _errors(capsys.readouterr().err)
  assert lines == [f"error: {path}: finetune.label_scheme must be one of binary, "
                   "binary_keep_neutral, three_class, got 'five'",
                   f"error: {path}: finetune.training.epochs must be > 0, got 0"]


def test_validate_bad_override_exits_2(capsys):
  assert cli.main(["validate", str(TINY), "--set", "finetune.training.epochs"]) == 2
  assert _errors(capsys.readouterr().err) == [
      "error: --set 'finetune.training.epochs': expected KEY=VALUE, e.g. finetune.training.epochs=1"]


def test_validate_missing_params_file(tmp_path, capsys):
  assert cli.main(["validate", str(tmp_path / "nope.yaml")]) == 2
  assert _errors(capsys.readouterr().err) == [f"error: {tmp_path / 'nope.yaml'}: params file not found"]


def test_validate_missing_data_file(write_params, tmp_path, capsys):
  path = write_params({"dataset": "shop", "data": {"adapter": "generic", "transactions": {
      "path": "gone.csv", "columns": TX_COLUMNS}}})
  assert cli.main(["validate", str(path)]) == 2
  assert _errors(capsys.readouterr().err) == [f"error: {tmp_path / 'gone.csv'}: file not found"]


def test_validate_bad_rows_named(write_params, tmp_path, capsys):
  (tmp_path / "orders.csv").write_text("cust,order,ts,total\n1,1,2023-01-01,5\n2,2,2023-01-02,x\n")
  path = write_params({"dataset": "shop", "data": {"adapter": "generic", "transactions": {
      "path": "orders.csv", "columns": TX_COLUMNS}}})
  assert cli.main(["validate", str(path)]) == 2
  assert _errors(capsys.readouterr().err) == [
      f"error: {tmp_path / 'orders.csv'}: column 'total': 1 values are not numbers (rows 2)"]


def test_validate_generic_with_returns_and_anonymous_orders(write_params, tmp_path, capsys):
  (tmp_path / "orders.csv").write_text("cust,order,ts,total\n1,1,2023-01-01,5\n,2,2023-01-02,7\n"
                                       "3,3,2023-01-03,-1\n3,4,2023-01-04,2\n")
  path = write_params({"dataset": "retail", "data": {"adapter": "generic", "transactions": {
      "path": "orders.csv", "columns": TX_COLUMNS}}, "split": {"horizon_days": 2}})
  assert cli.main(["validate", str(path)]) == 0
  out = capsys.readouterr().out
  assert "missing customer id: 1 rows removed" in out and "negative amount: 1 rows removed" in out


def test_validate_data_too_short_for_the_split(write_params, tmp_path, capsys):
  """Orders shorter than the horizon still get a report (without the back-test); a calibration
  date the user set outside the data is bad input."""
  (tmp_path / "orders.csv").write_text("cust,order,ts,total\n1,1,2023-01-01,5\n2,2,2023-01-09,7\n")
  path = write_params({"dataset": "short", "data": {"adapter": "generic", "transactions": {
      "path": "orders.csv", "columns": TX_COLUMNS}}})
  assert cli.main(["validate", str(path)]) == 0
  out = capsys.readouterr().out
  assert "note: calibration_end 2022-07-14 is not after the first purchase" in out
  assert "will leave out customer value, churn, segments" in out
  assert cli.main(["validate", str(path), "--set", "split.calibration_end=2022-12-01"]) == 2
  err = capsys.readouterr().err
  assert "split: calibration_end 2022-12-01 is not after the first purchase" in err
  assert "Traceback" not in err


def test_demo_data_writes_files_that_validate(tmp_path, write_params, capsys):
  out_dir = tmp_path / "demo_data"
  assert cli.main(["demo-data", str(out_dir), "--customers", "30", "--seed", "2"]) == 0
  assert f"Wrote 8 files to {out_dir}" in capsys.readouterr().out
  names = {p.name for p in out_dir.iterdir()}
  assert names == {"customers.parquet", "transactions.parquet", "items.parquet",
                   "products.parquet", "reviews.parquet", "truth.parquet",
                   "review_aspects.parquet", "meta.json"}
  path = write_params({"dataset": "d", "data": {"adapter": "synthetic", "path": "demo_data"}})
  assert cli.main(["validate", str(path)]) == 0
  assert "30 customers" in capsys.readouterr().out


def test_demo_data_bad_customers(tmp_path, capsys):
  assert cli.main(["demo-data", str(tmp_path / "x"), "--customers", "0"]) == 2
  assert _errors(capsys.readouterr().err) == ["error: --customers must be > 0, got 0"]
  assert not (tmp_path / "x").exists()


def test_demo_data_negative_seed(tmp_path, capsys):
  assert cli.main(["demo-data", str(tmp_path / "x"), "--seed", "-1", "--customers", "5"]) == 2
  assert _errors(capsys.readouterr().err) == ["error: --seed must be >= 0, got -1"]


def test_usage_errors_exit_2(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main([])
  assert e.value.code == 2
  with pytest.raises(SystemExit) as e:
    cli.main(["demo-data", "x", "--customers", "many"])
  assert e.value.code == 2
  assert "invalid int value" in capsys.readouterr().err


def test_stages_argument_parsed():
  args = cli.make_parser().parse_args(["run", "p.yaml", "--stages", "preprocess, evaluate,",
                                       "--set", "a=1", "--set", "b=2"])
  assert args.stages == ["preprocess", "evaluate"] and args.overrides == ["a=1", "b=2"]
  assert args.out == "reports"


def test_console_script_exit_status(bad_generic, tmp_path):
  assert CVLIB.exists(), CVLIB
  env = {k: v for k, v in os.environ.items() if k != "CVLIB_DATA_DIR"}
  proc = subprocess.run([str(CVLIB), "validate", str(bad_generic)], capture_output=True, text=True,
                        timeout=120, env=env, cwd=tmp_path)
  assert proc.returncode == 2, proc.stderr
  assert proc.stdout == ""
  lines = _errors(proc.stderr)
  assert len(lines) == 2 and "column 'price' (for amount) missing" in lines[0]

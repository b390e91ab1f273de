"""The bad-input suite: each malformed input makes `cvlib run` exit 2 with one line per problem
naming the file (and the column and rows where they apply), no traceback, and nothing written to
the reports folder."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cvlib import cli

HEADER = "cust,order,ts,total\n"
GOOD_ROWS = "".join(f"{i % 7},{i},2023-{1 + i % 12:02d}-{1 + i % 27:02d},{10 + i}\n"
                    for i in range(1, 200))
TX = "{adapter: generic, transactions: {path: orders.csv, columns: {customer_id: cust, " \
     "order_id: order, timestamp: ts, amount: total}}}"


def _params(tmp_path: Path, data: str = TX, extra: str = "", name: str = "p.yaml") -> Path:
  p = tmp_path / name
  p.write_text(f"dataset: shop\ndata: {data}\nsplit: {{horizon_days: 60}}\n{extra}")
  return p


def _orders(tmp_path: Path, text: str | bytes, name: str = "orders.csv") -> None:
  path = tmp_path / name
  path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _case_missing_params(tmp_path):
  return tmp_path / "nope.yaml", [r"nope\.yaml: params file not found"]


def _case_invalid_yaml(tmp_path):
  p = tmp_path / "p.yaml"
  p.write_text("dataset: shop\ndata: {adapter: generic\n")
  return p, [r"p\.yaml: not valid YAML"]


def _case_typo_key(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS)
  return _params(tmp_path, extra="finetun: {epochs: 1}\n"), [r"unknown key 'finetun'"]


def _case_unknown_adapter(tmp_path):
  return _params(tmp_path, data="{adapter: shopify}"), [r"data\.adapter must be one of"]


def _case_wrong_type(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS)
  return _params(tmp_path, extra="finetune: {training: {epochs: two}}\n"), [r"finetune\.training\.epochs must be an integer"]


def _case_reserved_name(tmp_path):
  p = tmp_path / "p.yaml"
  p.write_text("dataset: history\n")
  return p, [r"dataset must be letters, digits"]


def _case_missing_data_file(tmp_path):
  return _params(tmp_path), [r"orders\.csv: file not found"]


def _case_directory_for_file(tmp_path):
  (tmp_path / "orders.csv").mkdir()
  return _params(tmp_path), [r"orders\.csv: is a folder, expected a file"]


def _case_empty_file(tmp_path):
  _orders(tmp_path, "")
  return _params(tmp_path), [r"orders\.csv: file is empty"]


def _case_header_only(tmp_path):
  _orders(tmp_path, HEADER)
  return _params(tmp_path), [r"orders\.csv: no data rows"]


def _case_missing_column(tmp_path):
  _orders(tmp_path, "cust,order,total\n1,2,3\n")
  return _params(tmp_path), [r"orders\.csv: column 'ts' \(for timestamp\) missing \(have: cust, order, total\)"]


def _case_misnamed_column(tmp_path):
  _orders(tmp_path, "Customer,order,ts,total\n1,2,2023-01-01,3\n")
  return _params(tmp_path), [r"orders\.csv: column 'cust' \(for customer_id\) missing"]


def _case_unmapped_required(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS)
  data = "{adapter: generic, transactions: {path: orders.csv, columns: {customer_id: cust, " \
         "order_id: order, amount: total}}}"
  return _params(tmp_path, data=data), [r"orders\.csv: no column for 'timestamp'"]


def _case_unparseable_dates(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS + "1,900,yesterday,5\n1,901,31/31/2023,5\n2,902,soon,5\n")
  return _params(tmp_path), [r"orders\.csv: column 'ts': 3 unparseable .* \(rows 200, 201, 202\)"]


def _case_future_dates(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS + "".join(f"1,{900 + i},2099-01-0{1 + i},5\n"
                                                 for i in range(5)))
  return _params(tmp_path), [r"orders\.csv: column 'ts': 5 timestamps outside 1990-01-01 to .* "
                             r"\(rows 200, 201, 202, 203, 204\)"]


def _case_non_numeric_amount(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS + "1,900,2023-03-01,ten\n")
  return _params(tmp_path), [r"orders\.csv: column 'total': 1 values are not numbers \(rows 200\)"]


def _case_missing_amounts(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS + "".join(f"1,{900 + i},2023-03-01,\n" for i in range(9)))
  return _params(tmp_path), [r"orders\.csv: column 'total': 9 empty values of 208 rows "
                             r"\(rows 200, 201, 202, 203, 204 \.\.\.\)"]


def _case_negative_amounts(tmp_path):
  _orders(tmp_path, HEADER + "".join(f"{i % 7},{i},2023-{1 + i % 12:02d}-01,-{i}\n"
                                     for i in range(1, 50)))
  return _params(tmp_path), [r"orders\.csv: column 'total': no positive amounts"]


def _case_non_utf8(tmp_path):
  _orders(tmp_path, (HEADER + GOOD_ROWS).encode() + "1,999,2023-01-01,5,caf\xe9\n".encode("latin-1"))
  return _params(tmp_path), [r"orders\.csv: not UTF-8 text \(byte \d+, line 201\)"]


def _case_not_gzip(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS, name="orders.csv.gz")
  return _params(tmp_path, data=TX.replace("orders.csv", "orders.csv.gz")), [
      r"orders\.csv\.gz: name ends in \.gz but the file is not gzip-compressed"]


def _case_corrupt_gzip(tmp_path):
  _orders(tmp_path, gzip.compress((HEADER + GOOD_ROWS).encode())[:60], name="orders.csv.gz")
  return _params(tmp_path, data=TX.replace("orders.csv", "orders.csv.gz")), [
      r"orders\.csv\.gz: could not be read as csv"]


def _case_all_ids_empty(tmp_path):
  _orders(tmp_path, HEADER + "".join(f",{i},2023-01-{1 + i % 27:02d},5\n" for i in range(1, 40)))
  return _params(tmp_path), [r"orders\.csv: column 'cust': every customer id is empty"]


def _case_shared_order_id(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS + "1,5,2023-02-01,5\n")
  return _params(tmp_path), [r"orders\.csv: column 'order': order id 5 belongs to 2 customers "
                             r"\(rows 5, 200\)"]


def _case_unknown_mapping_name(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS)
  data = TX.replace("amount: total", "amount: total, colour: c")
  return _params(tmp_path, data=data), [r"column mapping has unknown canonical name 'colour'"]


def _reviews_params(tmp_path, text: str, name: str = "reviews.csv") -> Path:
  (tmp_path / name).write_text(text)
  data = f"{{adapter: generic, reviews: {{path: {name}, columns: {{text: body, rating: stars}}}}}}"
  return _params(tmp_path, data=data)


def _case_huge_review(tmp_path):
  rows = "".join(f"fine {i},4\n" for i in range(50))
  return _reviews_params(tmp_path, "body,stars\n" + rows + "x" * 10_000_000 + ",5\n"), [
      r"reviews\.csv: column 'body': 1 texts longer than 100,000 characters \(rows 51\)"]


def _case_bad_rating(tmp_path):
  return _reviews_params(tmp_path, "body,stars\nok,4\ngood,five\n"), [
      r"reviews\.csv: column 'stars': 1 values are not numbers \(rows 2\)"]


def _case_reviews_without_text_column(tmp_path):
  return _reviews_params(tmp_path, "comment,stars\nok,4\n"), [
      r"reviews\.csv: column 'body' \(for text\) missing \(have: comment, stars\)"]


def _case_bad_jsonl(tmp_path):
  (tmp_path / "reviews.jsonl").write_text('{"body": "ok", "stars": 4}\n{"body": broken\n')
  data = "{adapter: generic, reviews: {path: reviews.jsonl, columns: {text: body, rating: stars}}}"
  return _params(tmp_path, data=data), [r"reviews\.jsonl: could not be read as jsonl"]


def _case_no_tables(tmp_path):
  return _params(tmp_path, data="{adapter: generic}"), [
      r"data must be given a transactions or a reviews table"]


def _case_bad_override(tmp_path):
  _orders(tmp_path, HEADER + GOOD_ROWS)
  return _params(tmp_path), [r"--set 'finetune\.training\.epochs': expected KEY=VALUE"], ["--set",
                                                                                "finetune.training.epochs"]


CASES = {name[len("_case_"):]: fn for name, fn in sorted(globals().items())
         if name.startswith("_case_")}


def test_suite_is_large_enough():
  assert len(CASES) >= 25


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_naming_the_problem(case, tmp_path, capsys):
  made = CASES[case](tmp_path)
  params, patterns = made[0], made[1]
  extra = made[2] if len(made) > 2 else []
  out = tmp_path / "reports"
  code = cli.main(["run", str(params), "--out", str(out), *extra])
  err = capsys.readouterr().err
  assert code == 2, err
  lines = err.strip().splitlines()
  assert lines and all(line.startswith("error: ") for line in lines), err
  for pattern in patterns:
    assert any(re.search(pattern, line) for line in lines), (pattern, lines)
  assert "Traceback" not in err
  assert not out.exists() or not any(out.iterdir()), "bad input wrote to the reports folder"


def test_bad_input_real_process_exit_status(tmp_path):
  params, _ = _case_missing_column(tmp_path)
  proc = subprocess.run([sys.executable, "-m", "cvlib.cli", "run", str(params), "--out",
                         str(tmp_path / "reports")], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert proc.stderr.count("\n") == 1

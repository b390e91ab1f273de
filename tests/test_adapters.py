"""Tests for cvlib.data.adapters: the generic file reader and the synthetic adapter."""

import gzip
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cvlib.data import adapters, schema, synthetic

from cvlib import config
from cvlib.data.adapters import DataError

TX_COLUMNS = {"customer_id": "cust", "order_id": "order", "timestamp": "ts", "amount": "total"}
# line-level export: two lines of order 1, one of order 2; ids exported as floats
LINES = pd.DataFrame({
    "cust": ["17850.0", "17850.0", "12.0", "17850.0"],
    "order": ["1", "1", "2", "3"],
    "ts": ["2023-01-01 10:00", "2023-01-01 09:00", "2023-01-02 08:00", "2023-02-01 12:00"],
    "qty": ["2", "1", "1", "3"],
    "price": ["3.5", "1", "4", "2"],
    "sku": ["A", "B", "A", "C"],
    "name": ["apple", "banana", "apple", "cherry"],
})
LINE_COLUMNS = {"customer_id": "cust", "order_id": "order", "timestamp": "ts", "quantity": "qty",
                "unit_price": "price", "product_id": "sku", "description": "name"}


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch):
  monkeypatch.delenv("CVLIB_DATA_DIR", raising=False)


@pytest.fixture
def load_generic(write_params):
  """Loads data through a generic params file written beside the data files."""

  def load(transactions=None, reviews=None, **data):
    block = {"adapter": "generic", **data}
    if transactions is not None:
      block["transactions"] = transactions
    if reviews is not None:
      block["reviews"] = reviews
    return adapters.load_data(config.load_params(write_params({"dataset": "t", "data": block})))

  return load


def _write(df: pd.DataFrame, path: Path) -> Path:
  """Writes ``df`` in the format the file name says (csv, tsv, jsonl, parquet; optionally .gz)."""
  name = path.name
  gz = name.endswith(".gz")
  stem = name[:-3] if gz else name
  if stem.endswith(".parquet"):
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    data = buf.getvalue()
  elif stem.endswith(".jsonl"):
    data = "".join(json.dumps(r) + "\n" for r in df.to_dict(orient="records")).encode()
  else:
    data = df.to_csv(index=False, sep="\t" if stem.endswith(".tsv") else ",").encode()
  path.write_bytes(gzip.compress(data) if gz else data)
  return path


def _problem(exc: pytest.ExceptionInfo) -> str:
  assert len(exc.value.problems) == 1, exc.value.problems
  return exc.value.problems[0]


# --- reading files ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lines.csv", "lines.tsv", "lines.jsonl", "lines.parquet",
                                  "lines.csv.gz", "lines.tsv.gz", "lines.jsonl.gz"])
def test_formats_give_the_same_tables(tmp_path, load_generic, name):
  _write(LINES, tmp_path / name)
  t = load_generic(transactions={"path": name, "columns": LINE_COLUMNS})
  tx = t.transactions
  assert tx["order_id"].tolist() == ["1", "2", "3"]
  assert tx["customer_id"].tolist() == ["17850", "12", "17850"]  # "17850.0" normalised
  assert tx["amount"].tolist() == [8.0, 4.0, 6.0]  # 2 * 3.5 + 1 * 1 for order 1
  assert tx["timestamp"].iloc[0] == pd.Timestamp("2023-01-01 09:00")  # earliest line
  for col in schema.TABLES["transactions"]:
    assert str(tx[col.name].dtype) == col.dtype
  assert t.customers["customer_id"].tolist() == ["12", "17850"]
  assert t.items["product_id"].tolist() == ["A", "B", "A", "C"]
  np.testing.assert_allclose(t.items["amount"], [7.0, 1.0, 4.0, 6.0])
  np.testing.assert_allclose(t.items["unit_price"], [3.5, 1.0, 4.0, 2.0])
  assert t.products.set_index("product_id")["description"].to_dict() == {
      "A": "apple", "B": "banana", "C": "cherry"}
  assert len(t.reviews) == 0 and list(t.reviews.columns)[:2] == ["review_id", "customer_id"]
  assert t.sources[0]["path"] == str(tmp_path / name)
  assert t.sources[0]["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def test_gzipped_parquet(tmp_path, load_generic):
  _write(LINES, tmp_path / "lines.parquet.gz")
  t = load_generic(transactions={"path": "lines.parquet.gz", "columns": LINE_COLUMNS})
  assert t.transactions["amount"].tolist() == [8.0, 4.0, 6.0]


def test_order_level_amounts_summed_per_order(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n"
                                  "7,A1,2023-01-02,5.5\n7,A1,2023-01-01,4.5\n8,B2,2023-01-03,10\n")
  t = load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})
  assert t.transactions[["order_id", "customer_id", "amount"]].values.tolist() == [
      ["A1", "7", 10.0], ["B2", "8", 10.0]]
  assert t.transactions["timestamp"].tolist() == [pd.Timestamp("2023-01-01"),
                                                 pd.Timestamp("2023-01-03")]
  assert len(t.items) == 0 and len(t.products) == 0  # no product column


def test_canonical_column_names_map_themselves(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("customer_id,order_id,timestamp,amount\n1,1,2023-01-01,2\n")
  t = load_generic(transactions={"path": "o.csv"})
  assert t.transactions["amount"].tolist() == [2.0]


def test_bom_and_na_strings(tmp_path, load_generic):
  # a UTF-8 BOM must not end up in the first column name; "NA" is a real id, not missing
  (tmp_path / "o.csv").write_bytes("\ufeffcust,order,ts,total\nNA,1,2023-01-01,2\n".encode())
  t = load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})
  assert t.transactions["customer_id"].tolist() == ["NA"]


def test_few_bad_timestamps_dropped_and_noted(tmp_path, load_generic):
  rows = [f"{i},{i},2023-01-{i % 28 + 1:02d},1" for i in range(1, 201)]
  rows[99] = "100,100,not a date,1"  # 1 of 200 rows: under the 1% limit
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n" + "\n".join(rows) + "\n")
  t = load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})
  assert len(t.transactions) == 199 and "100" not in set(t.transactions["order_id"])
  assert any("1 rows with an unusable timestamp in 'ts' dropped (rows 100)" in n for n in t.notes)


def test_timestamp_format(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n1,1,03/02/2023,1\n1,2,13/02/2023,1\n")
  t = load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS,
                                 "timestamp_format": "%d/%m/%Y"})
  assert t.transactions["timestamp"].tolist() == [pd.Timestamp("2023-02-03"),
                                                 pd.Timestamp("2023-02-13")]


def test_timezones_converted_to_naive_utc(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n1,1,2023-01-01T10:00:00+02:00,1\n")
  t = load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})
  assert t.transactions["timestamp"].tolist() == [pd.Timestamp("2023-01-01 08:00")]
  assert t.transactions["timestamp"].dt.tz is None


# --- reviews ------------------------------------------------------------------------------------

REVIEW_COLUMNS = {"customer_id": "reviewerID", "product_id": "asin", "timestamp": "unixReviewTime",
                  "rating": "overall", "text": "reviewText", "title": "summary"}


@pytest.mark.parametrize("unit, scale", [("s", 1), ("ms", 1000)])
def test_reviews_with_numeric_timestamps(tmp_path, load_generic, unit, scale):
  recs = [{"reviewerID": "u1", "asin": "B01", "unixReviewTime": 1700000000 * scale, "overall": 5,
           "reviewText": "great", "summary": "yes"},
          {"reviewerID": "u2", "asin": "B02", "unixReviewTime": (1700000000 + 86400) * scale,
           "overall": 1.0, "reviewText": "awful", "summary": "no"}]
  (tmp_path / "r.jsonl.gz").write_bytes(gzip.compress(
      "".join(json.dumps(r) + "\n" for r in recs).encode()))
  t = load_generic(reviews={"path": "r.jsonl.gz", "columns": REVIEW_COLUMNS, "timestamp_unit": unit})
  rv = t.reviews
  assert rv["timestamp"].tolist() == [pd.Timestamp("2023-11-14 22:13:20"),
                                      pd.Timestamp("2023-11-15 22:13:20")]
  assert rv["rating"].tolist() == [5.0, 1.0]
  assert rv["review_id"].tolist() == ["1", "2"]  # numbered when the file has none
  assert rv["title"].tolist() == ["yes", "no"]
  for col in schema.TABLES["reviews"]:
    assert str(rv[col.name].dtype) == col.dtype
  assert len(t.transactions) == 0
  assert t.customers["customer_id"].tolist() == ["u1", "u2"]


def test_numeric_timestamps_in_csv(tmp_path, load_generic):
  (tmp_path / "r.csv").write_text("who,t,body,stars\nu1,1700000000,x,5\nu2,1700086400.5,y,1\n")
  t = load_generic(reviews={"path": "r.csv", "timestamp_unit": "s", "columns": {
      "customer_id": "who", "timestamp": "t", "text": "body", "rating": "stars"}})
  assert t.reviews["timestamp"].tolist() == [pd.Timestamp("2023-11-14 22:13:20"),
                                             pd.Timestamp("2023-11-15 22:13:20.5")]


def test_reviews_as_purchases(tmp_path, load_generic):
  (tmp_path / "r.csv").write_text(
      "id,who,when,text,stars\nx1,u1,2023-01-01,good,5\nx2,u1,2023-02-01,bad,1\n"
      "x3,,2023-02-02,anon,3\nx4,u2,2023-03-01,ok,4\n")
  t = load_generic(reviews={"path": "r.csv", "columns": {
      "review_id": "id", "customer_id": "who", "timestamp": "when", "rating": "stars"}},
      reviews_as_purchases=True)
  tx = t.transactions
  assert tx["order_id"].tolist() == ["Rx1", "Rx2", "Rx4"]  # the anonymous review is no purchase
  assert tx["customer_id"].tolist() == ["u1", "u1", "u2"]
  assert (tx["amount"] == 1.0).all()
  assert str(tx["timestamp"].dtype) == "datetime64[us]"
  assert any("reviews_as_purchases" in n for n in t.notes)
  assert t.customers["customer_id"].tolist() == ["u1", "u2"]


def test_reviews_not_purchases_by_default(tmp_path, load_generic):
  (tmp_path / "r.csv").write_text("who,text,stars,when\nu1,good,5,2023-01-01\n")
  t = load_generic(reviews={"path": "r.csv", "columns": {
      "customer_id": "who", "rating": "stars", "timestamp": "when"}})
  assert len(t.transactions) == 0 and t.customers["customer_id"].tolist() == ["u1"]


def test_reviews_text_only(tmp_path, load_generic):
  (tmp_path / "r.csv").write_text("body\nnice\nugly\n")
  t = load_generic(reviews={"path": "r.csv", "columns": {"text": "body"}})
  assert t.reviews["text"].tolist() == ["nice", "ugly"]
  assert t.reviews["rating"].isna().all() and t.reviews["customer_id"].isna().all()


# --- errors -------------------------------------------------------------------------------------

def test_missing_file(tmp_path, load_generic):
  with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nope.csv'}: file not found")):
    load_generic(transactions={"path": "nope.csv", "columns": TX_COLUMNS})


def test_empty_file(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("")
  with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'o.csv'}: file is empty")):
    load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})


def test_gz_that_is_not_gzip(tmp_path, load_generic):
  (tmp_path / "o.csv.gz").write_text("cust,order,ts,total\n1,1,2023-01-01,1\n")
  with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'o.csv.gz'}: name ends in .gz but "
                                                "the file is not gzip-compressed")):
    load_generic(transactions={"path": "o.csv.gz", "columns": TX_COLUMNS})


def test_truncated_gzip(tmp_path):
  (tmp_path / "o.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n" * 100)[:30])
  with pytest.raises(DataError, match=r"o.csv.gz: could not be read as csv \(EOFError"):
    adapters.read_table_file(tmp_path / "o.csv.gz")


@pytest.mark.parametrize("name", ["o.csv", "o.csv.gz"])
def test_not_utf8_names_line(tmp_path, load_generic, name):
  raw = "cust,order,ts,total\n1,1,2023-01-01,1\n2,2,2023-01-02,caf\xe9\n".encode("latin-1")
  (tmp_path / name).write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
  with pytest.raises(DataError, match=re.escape(f"{tmp_path / name}: not UTF-8 text") +
                     r" \(byte \d+, line 3\)"):
    load_generic(transactions={"path": name, "columns": TX_COLUMNS})


def test_json_lines_in_a_json_file_are_read_as_such(tmp_path, load_generic):
  """The public Amazon review dumps are JSON Lines named *.json.gz (issue 18: this used to fail
  with "Trailing data")."""
  recs = [{"reviewerID": f"u{i}", "asin": "B01", "overall": r, "reviewText": text,
           "summary": text, "unixReviewTime": 1600000000 + 86400 * i}
          for i, (r, text) in enumerate([(5.0, "great"), (1.0, "broken")], 1)]
  (tmp_path / "Books.json.gz").write_bytes(gzip.compress(
      "".join(json.dumps(r) + "\n" for r in recs).encode()))
  t = load_generic(reviews={"path": "Books.json.gz", "columns": REVIEW_COLUMNS,
                            "timestamp_unit": "s"})
  assert t.reviews["text"].tolist() == ["great", "broken"]
  assert t.reviews["customer_id"].tolist() == ["u1", "u2"]


@pytest.mark.parametrize("content, rows", [
    ('[{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]', 2),  # a JSON array of records
    ('{\n  "a": {"0": 1, "1": 2},\n  "b": {"0": "x", "1": "y"}\n}\n', 2),  # pretty, by column
    ('{"a": {"0": 1, "1": 2}, "b": {"0": "x", "1": "y"}}', 2),  # pandas' to_json, one line
    ('{"a": 1, "b": "x"}\n', 1),  # JSON Lines of one record
    ('\n{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}', 2),  # JSON Lines
])
def test_json_documents_and_json_lines_told_apart(tmp_path, content, rows):
  (tmp_path / "t.json").write_text(content)
  df = adapters.read_table_file(tmp_path / "t.json")
  assert list(df.columns) == ["a", "b"] and len(df) == rows


def test_format_key_overrides_the_file_name(tmp_path, load_generic):
  (tmp_path / "export.txt").write_text("cust\torder\tts\ttotal\n1\t1\t2023-01-01\t5\n")
  t = load_generic(transactions={"path": "export.txt", "format": "tsv", "columns": TX_COLUMNS})
  assert t.transactions["amount"].tolist() == [5.0]
  (tmp_path / "r.json").write_text('{"a": {"0": 1}}\n')  # named JSON Lines: read as such
  assert adapters.read_table_file(tmp_path / "r.json", "jsonl")["a"].tolist() == [{"0": 1}]


@pytest.mark.parametrize("name, content, fmt", [("o.jsonl", "{\"a\": 1}\nnot json\n", "jsonl"),
                                                ("o.parquet", "not parquet", "parquet")])
def test_unreadable_format(tmp_path, name, content, fmt):
  (tmp_path / name).write_text(content)
  with pytest.raises(DataError, match=re.escape(f"{tmp_path / name}: could not be read as {fmt}")):
    adapters.read_table_file(tmp_path / name)


def test_missing_mapped_column_names_file_column_and_available(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n1,1,2023-01-01,1\n")
  with pytest.raises(DataError) as e:
    load_generic(transactions={"path": "o.csv", "columns": {**TX_COLUMNS, "amount": "tot"}})
  assert _problem(e) == (f"{tmp_path / 'o.csv'}: column 'tot' (for amount) missing "
                         "(have: cust, order, ts, total)")


def test_missing_required_mapping(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n1,1,2023-01-01,1\n")
  cols = {k: v for k, v in TX_COLUMNS.items() if k != "timestamp"}
  with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'o.csv'}: no column for 'timestamp'") +
                     r".*\(have: cust, order, ts, total\)"):
    load_generic(transactions={"path": "o.csv", "columns": cols})


def test_missing_text_mapping_for_reviews(tmp_path, load_generic):
  (tmp_path / "r.csv").write_text("who,body\nu1,hi\n")
  with pytest.raises(DataError, match=r"r.csv: no column for 'text'"):
    load_generic(reviews={"path": "r.csv", "columns": {"customer_id": "who"}})


def test_needs_amount_or_quantity_and_price(tmp_path, load_generic):
  _write(LINES, tmp_path / "lines.csv")
  cols = {k: v for k, v in LINE_COLUMNS.items() if k != "unit_price"}
  with pytest.raises(DataError, match=r"lines.csv: needs an 'amount' column or both 'quantity' "
                     "and 'unit_price'"):
    load_generic(transactions={"path": "lines.csv", "columns": cols})


def test_unknown_canonical_name(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("cust,order,ts,total,col\n1,1,2023-01-01,1,red\n")
  with pytest.raises(DataError) as e:
    load_generic(transactions={"path": "o.csv", "columns": {**TX_COLUMNS, "colour": "col"}})
  assert re.fullmatch(re.escape(f"{tmp_path / 'o.csv'}: column mapping has unknown canonical "
                                "name 'colour' (allowed: ") + r".*amount.*\)", _problem(e))


def test_unparseable_timestamps_name_rows(tmp_path, load_generic):
  rows = [f"{i},{i},2023-01-{i % 28 + 1:02d},1" for i in range(1, 51)]
  rows[2] = "3,3,yesterday,1"
  rows[6] = "7,7,,1"
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n" + "\n".join(rows) + "\n")
  with pytest.raises(DataError) as e:
    load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})
  assert _problem(e) == (f"{tmp_path / 'o.csv'}: column 'ts': 1 unparseable and 1 empty "
                         "timestamps of 50 rows (rows 3, 7); set timestamp_format or "
                         "timestamp_unit")


def test_unparseable_numeric_timestamps(tmp_path, load_generic):
  (tmp_path / "r.csv").write_text("t,body\n1700000000,a\nsoon,b\n")
  with pytest.raises(DataError, match=r"column 't': 1 unparseable .* \(rows 2\)"):
    load_generic(reviews={"path": "r.csv", "timestamp_unit": "s", "columns": {
        "timestamp": "t", "text": "body"}})


def test_non_numeric_amounts_name_rows(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text('cust,order,ts,total\n1,1,2023-01-01,1\n2,2,2023-01-01,"1,5"\n'
                                  "3,3,2023-01-02,N/A\n")
  with pytest.raises(DataError) as e:
    load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})
  assert _problem(e) == f"{tmp_path / 'o.csv'}: column 'total': 2 values are not numbers (rows 2, 3)"


def test_non_numeric_rating(tmp_path, load_generic):
  (tmp_path / "r.csv").write_text("body,stars\na,5\nb,five\n")
  with pytest.raises(DataError, match=r"r.csv: column 'stars': 1 values are not numbers \(rows 2\)"):
    load_generic(reviews={"path": "r.csv", "columns": {"text": "body", "rating": "stars"}})


def test_row_list_is_capped(tmp_path, load_generic):
  rows = [f"{i},{i},2023-01-01,x" for i in range(1, 9)]
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n" + "\n".join(rows) + "\n")
  with pytest.raises(DataError, match=r"8 values are not numbers \(rows 1, 2, 3, 4, 5 \.\.\.\)"):
    load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})


def test_all_customer_ids_empty(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n,1,2023-01-01,1\n ,2,2023-01-02,1\n")
  with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'o.csv'}: column 'cust': every "
                                                "customer id is empty")):
    load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})


def test_problems_of_both_tables_are_collected(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n1,1,2023-01-01,1\n")
  (tmp_path / "r.csv").write_text("who,body\nu1,hi\n")
  with pytest.raises(DataError) as e:
    load_generic(transactions={"path": "o.csv", "columns": {**TX_COLUMNS, "amount": "sum"}},
                 reviews={"path": "r.csv", "columns": {"text": "review"}})
  assert len(e.value.problems) == 2
  assert "o.csv: column 'sum'" in e.value.problems[0]
  assert "r.csv: column 'review'" in e.value.problems[1]


def test_empty_order_ids_not_merged(tmp_path, load_generic):
  (tmp_path / "o.csv").write_text("cust,order,ts,total\n1,,2023-01-01,5\n2,,2023-01-02,7\n"
                                  "3,9,2023-01-03,1\n")
  try:
    t = load_generic(transactions={"path": "o.csv", "columns": TX_COLUMNS})
  except DataError as e:  # an error naming the column is a fine answer too
    assert "'order'" in str(e)
    return
  assert not t.transactions["order_id"].isna().any()
  spend = t.transactions.groupby("customer_id")["amount"].sum().to_dict()
  assert spend.get("1", 0.0) == 5.0 and spend.get("2", 0.0) == 7.0


def test_data_dir_fallback(tmp_path, monkeypatch, write_params):
  data = tmp_path / "elsewhere"
  data.mkdir()
  (data / "o.csv").write_text("cust,order,ts,total\n1,1,2023-01-01,3\n")
  monkeypatch.setenv("CVLIB_DATA_DIR", str(data))
  path = write_params({"dataset": "t", "data": {"adapter": "generic", "transactions": {
      "path": "o.csv", "columns": TX_COLUMNS}}})
  t = adapters.load_data(config.load_params(path))
  assert t.transactions["amount"].tolist() == [3.0]
  assert t.sources[0]["path"] == str(data / "o.csv")


# --- synthetic ----------------------------------------------------------------------------------

def test_synthetic_in_memory(write_params):
  p = config.load_params(write_params({"dataset": "s", "data": {"customers": 40, "seed": 3}}))
  t = adapters.load_data(p)
  assert len(t.customers) == 40
  assert t.counts() == {n: len(getattr(t, n)) for n in adapters.CANONICAL_FILES}
  assert set(t.truth) == {"truth", "review_aspects"}
  assert t.meta == {"start": "2023-01-01", "horizon_days": 180, "calibration_end": "2024-01-01"}
  assert t.sources[0]["path"].startswith("generated: cvlib.data.synthetic (customers=40, seed=3)")
  again = adapters.load_data(p)
  assert t.sources[0]["sha256"] == again.sources[0]["sha256"]
  pd.testing.assert_frame_equal(t.transactions, again.transactions)
  for name in adapters.CANONICAL_FILES:
    for col in schema.TABLES[name]:
      if col.name in getattr(t, name):
        assert str(getattr(t, name)[col.name].dtype) == col.dtype, (name, col.name)


def test_synthetic_from_folder(tmp_path, write_params):
  folder = tmp_path / "demo_data"
  synthetic.write_demo_data(folder, n_customers=40, seed=3)
  p = config.load_params(write_params({"dataset": "s", "data": {"path": "demo_data"}}))
  t = adapters.load_data(p)
  mem = synthetic.make_demo_data(40, seed=3)
  pd.testing.assert_frame_equal(t.transactions, mem["transactions"])
  pd.testing.assert_frame_equal(t.reviews, mem["reviews"])
  assert t.meta["calibration_end"] == "2024-01-01" and t.meta["n_customers"] == 40
  assert {Path(s["path"]).name for s in t.sources} >= {f"{n}.parquet" for n in adapters.CANONICAL_FILES}
  src = {Path(s["path"]).name: s for s in t.sources}
  assert src["items.parquet"]["sha256"] == adapters.file_sha256(folder / "items.parquet")
  assert "canonical files from demo_data" in t.notes


def test_synthetic_folder_missing_file(tmp_path, write_params):
  folder = tmp_path / "demo_data"
  synthetic.write_demo_data(folder, n_customers=20, seed=0)
  (folder / "items.parquet").unlink()
  (folder / "reviews.parquet").write_text("not parquet")
  p = config.load_params(write_params({"dataset": "s", "data": {"path": "demo_data"}}))
  with pytest.raises(DataError) as e:
    adapters.load_data(p)
  assert e.value.problems[0] == f"{folder / 'items.parquet'}: file missing"
  assert e.value.problems[1].startswith(f"{folder / 'reviews.parquet'}: not a readable parquet file")


def test_synthetic_folder_missing_column(tmp_path, write_params):
  folder = tmp_path / "demo_data"
  synthetic.write_demo_data(folder, n_customers=20, seed=0)
  pd.read_parquet(folder / "transactions.parquet").drop(columns="amount").to_parquet(
      folder / "transactions.parquet")
  p = config.load_params(write_params({"dataset": "s", "data": {"path": "demo_data"}}))
  with pytest.raises(DataError, match=re.escape(f"{folder / 'transactions.parquet'}: column "
                                                "'amount' missing (have: ")):
    adapters.load_data(p)


def test_synthetic_folder_not_found(tmp_path, write_params):
  p = config.load_params(write_params({"dataset": "s", "data": {"path": "nowhere"}}))
  with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nowhere'}: folder not found")):
    adapters.load_data(p)

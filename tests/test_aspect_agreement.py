"""benchmarks/aspect_agreement.py: two readers' aspect labels compared (no data needed).

The second reader's labels (benchmarks/results/aspect_agreement_labels.csv) must be the seeded
sample's rows of the main labelled CSV with valid values, and the stored results must be what the
metric functions make of them.
"""

import json

import pandas as pd
import pytest

import benchmark_script

agree = benchmark_script.load("aspect_agreement")
ASPECTS = agree.ASPECTS


def _frame(cells: list[dict[str, str]]) -> pd.DataFrame:
  """Rows of {aspect: polarity} -> the labels' columns (0/1 tags, polarity or "")."""
  rows = [{**{a: int(a in c) for a in ASPECTS}, **{f"{a}_polarity": c.get(a, "") for a in ASPECTS}}
          for c in cells]
  return pd.DataFrame(rows)


def test_compare_counts_like_the_model_benchmark():
  true = _frame([{"quality": "neg"}, {"quality": "pos", "price": "neg"}, {"size_fit": "mixed"},
                 {}])
  pred = _frame([{"quality": "neg"}, {"quality": "neg"}, {"size_fit": "mixed", "price": "pos"},
                 {"delivery": "pos"}])
  m = agree.compare(pred, true)
  # tp: quality x2, size_fit; fp: price (row 3), delivery; fn: price (row 2).
  assert m["tags"]["micro"] == {"precision": 0.6, "recall": 0.75, "f1": 0.6667, "support": 4,
                                "predicted": 5}
  assert m["tags"]["per_aspect"]["price"]["precision"] == 0.0
  assert m["tags"]["per_aspect"]["service"]["precision"] is None
  # Cells both tag: quality x2 (neg/neg right, pos/neg wrong), size_fit mixed/mixed right.
  assert m["polarity"]["n_cells"] == 3 and m["polarity"]["n_pos_neg"] == 2
  assert m["polarity"]["accuracy_pos_neg"] == 0.5
  assert m["polarity"]["accuracy_strict"] == pytest.approx(0.6667)
  # Negative cells of the truth: quality row 1 (found), price row 2 (untagged: missed).
  assert m["negatives"] == {"n": 2, "recognised": 0.5}
  swapped = agree.compare(true, pred)
  assert swapped["tags"]["micro"]["precision"] == m["tags"]["micro"]["recall"]


def test_kappa():
  assert agree.kappa([1, 1, 0, 0], [1, 1, 0, 0]) == 1.0
  # observed 0.5, chance 0.5 -> 0
  assert agree.kappa([1, 1, 0, 0], [1, 0, 1, 0]) == 0.0
  assert agree.kappa([0, 0, 0], [0, 0, 0]) is None


def test_sample_sizes_proportional_with_a_floor():
  counts = {"womens": 190, "amazon_beauty": 110, "amazon_electronics": 110, "amazon_home": 50,
            "amazon_toys_sports": 50, "amazon_pets": 50, "amazon_auto": 50}
  sizes = agree.sample_sizes(counts)
  assert sizes == {"womens": 31, "amazon_beauty": 18, "amazon_electronics": 18, "amazon_home": 9,
                   "amazon_toys_sports": 8, "amazon_pets": 8, "amazon_auto": 8}
  assert agree.sample_sizes({"a": 1000, "b": 1}, n=20, floor=8) == {"a": 12, "b": 8}
  with pytest.raises(ValueError, match="cannot give"):
    agree.sample_sizes(counts, n=50)


def test_stored_labels_are_the_seeded_sample_and_valid():
  labels = agree.al.load_labels()
  b = agree.load_b()
  assert len(b) == agree.N_SAMPLE == 100
  first = labels.iloc[:agree.N_ROWS]
  known = set(zip(first["source"], first["row_id"]))
  assert set(zip(b["source"], b["row_id"])) <= known
  assert set(b["source"]) == set(agree.SOURCES)
  rows = agree.draw(labels)
  assert list(zip(rows["source"], rows["row_id"])) == list(zip(b["source"], b["row_id"]))


def test_load_b_rejects_a_polarity_on_an_untagged_cell(tmp_path):
  bad = _frame([{"quality": "pos"}])
  bad.insert(0, "row_id", "1")
  bad.insert(0, "source", "womens")
  bad.loc[0, "price_polarity"] = "neg"
  bad.to_csv(tmp_path / "b.csv", index=False)
  with pytest.raises(ValueError, match="price_polarity"):
    agree.load_b(tmp_path / "b.csv")


def test_results_file_matches_the_labels():
  labels = agree.al.load_labels()
  stored = json.loads(agree.RESULTS.read_text())
  b = agree.load_b()
  keys = list(zip(b["source"], b["row_id"]))
  a = labels.set_index(["source", "row_id"]).loc[keys].reset_index()
  assert stored["b_vs_a"] == json.loads(json.dumps(agree.compare(b, a)))
  assert stored["a_vs_b"] == json.loads(json.dumps(agree.compare(a, b)))
  assert stored["settings"]["sizes"] == agree.sample_sizes(
      {s: int((labels.iloc[:agree.N_ROWS]["source"] == s).sum()) for s in agree.SOURCES})

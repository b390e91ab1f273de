"""Agreement of two readers labelling aspects with the guide: a human ceiling for issue 20.

A fifth reader (reader B; reader A is the stored labels) labelled, blind to the stored labels,
a seeded sample of 100 English real rows of the first four draws of
``cvlib/insight/aspects_labelled.csv`` (the first 770 rows), following the labelling guide in
``cvlib/insight/aspects_labelled.md``. The labels are in
``benchmarks/results/aspect_agreement_labels.csv`` (no texts: like the main CSV, only source, row
id and labels).

The default mode scores reader B against the stored labels (reader A) with the metrics
``benchmarks/aspects_labelled.py`` reports for the aspect model (tag precision / recall / F1,
polarity accuracy on the pos/neg cells both tag, the share of A's negative cells B calls
negative), adds Cohen's kappa per aspect and A scored against B, and writes
``benchmarks/results/aspect_agreement.json``: read as "a second human scored like the model", the
ceiling issue 20's targets can be compared with. It needs no dataset (no texts are read).

Usage::

  python benchmarks/aspect_agreement.py                                 # score, write the JSON
  python benchmarks/aspect_agreement.py --sample /tmp/agree_sample.csv  # redraw the texts to label
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run as a script from anywhere

import aspects_labelled as al  # noqa: E402  pylint: disable=wrong-import-position

SEED = 5
N_SAMPLE = 100
MIN_PER_SOURCE = 8
N_BOOTSTRAP = 1000
# The rows of the first four draws (draw 5 is the aspect model's untouched check; left alone).
N_ROWS = al.N_BEFORE_ROUND5
# English real sources of draws 1-4, in the order the sample draws them.
SOURCES = ("womens", "amazon_beauty", "amazon_electronics", "amazon_home", "amazon_toys_sports",
           "amazon_pets", "amazon_auto")
B_LABELS = HERE / "results" / "aspect_agreement_labels.csv"
RESULTS = HERE / "results" / "aspect_agreement.json"
ASPECTS = al.ASPECTS
POLARITIES = al.POLARITIES


def sample_sizes(counts: dict[str, int], n: int = N_SAMPLE, floor: int = MIN_PER_SOURCE
                 ) -> dict[str, int]:
  """Rows per source: proportional to ``counts`` (largest remainders), at least ``floor`` each.

  Args:
    counts: rows available per source, in draw order.
    n: the sample's size.
    floor: the fewest rows any source gets.

  Returns:
    Source -> rows, summing to ``n``; ties in the remainders go to the earlier source.
  """
  sizes = {s: floor for s in counts}
  left = n - floor * len(counts)
  if left < 0:
    raise ValueError(f"{n} rows cannot give {floor} to each of {len(counts)} sources")
  quota = {s: n * c / sum(counts.values()) - floor for s, c in counts.items()}
  quota = {s: max(q, 0.0) for s, q in quota.items()}
  total = sum(quota.values())
  share = {s: left * q / total for s, q in quota.items()} if total else {s: 0.0 for s in quota}
  for s in counts:
    sizes[s] += int(np.floor(share[s]))
  rest = n - sum(sizes.values())
  order = sorted(counts, key=lambda s: (-(share[s] - np.floor(share[s])), list(counts).index(s)))
  for s in order[:rest]:
    sizes[s] += 1
  return sizes


def draw(labels: pd.DataFrame, seed: int = SEED) -> pd.DataFrame:
  """The seeded stratified sample: source and row_id of ``N_SAMPLE`` rows, in file order.

  Args:
    labels: the labelled CSV (:func:`aspects_labelled.load_labels`); only its first ``N_ROWS``
      rows of the English real ``SOURCES`` are drawn from.
    seed: for ``numpy.random.default_rng``; one generator draws every source in ``SOURCES`` order.

  Returns:
    Columns source, row_id (str, as in the CSV).
  """
  pool = labels.iloc[:N_ROWS]
  pool = pool[pool["source"].isin(SOURCES)]
  sizes = sample_sizes({s: int((pool["source"] == s).sum()) for s in SOURCES})
  rng = np.random.default_rng(seed)
  picked = []
  for s in SOURCES:
    index = pool.index[pool["source"] == s].to_numpy()
    picked.extend(rng.choice(index, size=sizes[s], replace=False).tolist())
  return pool.loc[sorted(picked), ["source", "row_id"]].reset_index(drop=True)


def load_b(path: Path = B_LABELS) -> pd.DataFrame:
  """Reader B's labels, checked like the main CSV's: 0/1 tags, polarity exactly on tagged cells.

  Args:
    path: CSV with source, row_id, the six aspect columns and the six ``<aspect>_polarity`` ones.

  Returns:
    The table (aspect columns int, the rest str).

  Raises:
    ValueError: a missing column, a duplicated (source, row_id), a tag not 0/1, a polarity
      outside pos/neg/mixed, a polarity on an untagged cell or a tagged cell without one.
  """
  b = pd.read_csv(path, dtype=str, keep_default_na=False)
  needed = ["source", "row_id", *ASPECTS, *(f"{a}_polarity" for a in ASPECTS)]
  missing = [c for c in needed if c not in b.columns]
  if missing:
    raise ValueError(f"{path}: column(s) {', '.join(missing)} missing")
  if b.duplicated(["source", "row_id"]).any():
    raise ValueError(f"{path}: duplicated (source, row_id) rows")
  return al.checked_aspect_columns(b, path)


def _r(x: float) -> float | None:
  return None if x is None or np.isnan(x) else round(float(x), 4)


def kappa(x: np.ndarray, y: np.ndarray) -> float | None:
  """Cohen's kappa of two 0/1 vectors; None when chance agreement is 1 (both constant, equal)."""
  x, y = np.asarray(x, dtype=bool), np.asarray(y, dtype=bool)
  observed = float((x == y).mean())
  chance = float(x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean()))
  return None if chance == 1 else _r((observed - chance) / (1 - chance))


def compare(pred: pd.DataFrame, true: pd.DataFrame) -> dict[str, Any]:
  """Score one reader's labels (``pred``) against another's (``true``), as the model is scored.

  Args:
    pred, true: aligned row for row (same length and order), each with the six aspect columns
      (0/1) and the six ``<aspect>_polarity`` columns ("" where untagged).

  Returns:
    ``tags`` (micro and per-aspect precision, recall, F1, support, predicted), ``polarity``
    (cells both tag; accuracy on those ``true`` calls pos or neg, and on all, a mixed cell right
    only when ``pred`` says mixed too), ``negatives`` (of ``true``'s neg cells, the share ``pred``
    tags neg) and ``kappa`` per aspect.
  """
  if len(pred) != len(true):
    raise ValueError(f"compare: {len(pred)} rows against {len(true)}")
  p = pred[ASPECTS].to_numpy(dtype=bool)  # [rows, aspects]
  t = true[ASPECTS].to_numpy(dtype=bool)
  pp = pred[[f"{a}_polarity" for a in ASPECTS]].to_numpy(dtype=object)
  tp_ = true[[f"{a}_polarity" for a in ASPECTS]].to_numpy(dtype=object)
  both = p & t
  clear = both & np.isin(tp_, ["pos", "neg"])
  neg = tp_ == "neg"
  confusion = {lab: {q: int((both & (tp_ == lab) & (pp == q)).sum()) for q in POLARITIES}
               for lab in POLARITIES}
  return {
      "tags": al.tag_scores(pd.DataFrame(p, columns=ASPECTS), pd.DataFrame(t, columns=ASPECTS)),
      "polarity": {"n_cells": int(both.sum()),
                   "accuracy_strict": _r((pp[both] == tp_[both]).mean()) if both.any() else None,
                   "n_pos_neg": int(clear.sum()),
                   "accuracy_pos_neg": _r((pp[clear] == tp_[clear]).mean()) if clear.any()
                   else None,
                   "confusion_true_to_pred": confusion},
      "negatives": {"n": int(neg.sum()),
                    "recognised": _r((neg & (pp == "neg")).sum() / neg.sum()) if neg.any()
                    else None},
      "kappa": {a: kappa(p[:, j], t[:, j]) for j, a in enumerate(ASPECTS)},
  }


def disagreements(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
  """``source:row_id:aspect A->B`` for every cell whose tag or polarity differs."""
  out = []
  for i in range(len(a)):
    for asp in ASPECTS:
      x, y = a[f"{asp}_polarity"].iat[i] or "-", b[f"{asp}_polarity"].iat[i] or "-"
      if x != y:
        out.append(f"{a['source'].iat[i]}:{a['row_id'].iat[i]}:{asp} {x}->{y}")
  return out


def bootstrap(pred: pd.DataFrame, true: pd.DataFrame, n: int = N_BOOTSTRAP, seed: int = SEED
              ) -> dict[str, list[float | None]]:
  """95% percentile intervals of the headline figures, resampling rows with replacement.

  Args:
    pred, true: as for :func:`compare`.
    n: resamples.
    seed: for ``numpy.random.default_rng``.

  Returns:
    Figure -> [low, high] for tag precision, recall, F1, polarity on pos/neg cells, negatives.
  """
  rng = np.random.default_rng(seed)
  draws: dict[str, list[float]] = {k: [] for k in ("precision", "recall", "f1",
                                                   "polarity_pos_neg", "negatives")}
  for _ in range(n):
    i = rng.integers(0, len(true), len(true))
    m = compare(pred.iloc[i], true.iloc[i])
    values = {**{k: m["tags"]["micro"][k] for k in ("precision", "recall", "f1")},
              "polarity_pos_neg": m["polarity"]["accuracy_pos_neg"],
              "negatives": m["negatives"]["recognised"]}
    for k, v in values.items():
      if v is not None:
        draws[k].append(v)
  return {k: [_r(np.percentile(v, 2.5)), _r(np.percentile(v, 97.5))] if v else [None, None]
          for k, v in draws.items()}


def agreement(labels: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
  """Reader B against the stored labels (reader A) on the drawn rows, overall and per source.

  Args:
    labels: the main CSV (:func:`aspects_labelled.load_labels`).
    b: reader B's labels (:func:`load_b`); its rows must be exactly the drawn sample's.

  Returns:
    ``b_vs_a`` (B scored with A as truth, as the model is), ``a_vs_b`` (A with B as truth),
    ``per_source`` (B vs A), ``disagreements`` and ``settings``.

  Raises:
    ValueError: B's rows are not the sample's (another seed or a stale labels file).
  """
  rows = draw(labels)
  keys = list(zip(rows["source"], rows["row_id"]))
  if sorted(keys) != sorted(zip(b["source"], b["row_id"])):
    raise ValueError(f"{B_LABELS.name}: rows differ from the seed-{SEED} sample of {N_SAMPLE}")
  a = labels.set_index(["source", "row_id"]).loc[keys].reset_index()
  b = b.set_index(["source", "row_id"]).loc[keys].reset_index()
  per_source = {}
  for s in SOURCES:
    m = (a["source"] == s).to_numpy()
    per_source[s] = {"rows": int(m.sum()), **compare(b[m], a[m])}
  return {
      "settings": {
          "sample": f"numpy default_rng({SEED}), {N_SAMPLE} rows of the first {N_ROWS} of "
                    "cvlib/insight/aspects_labelled.csv (draws 1-4), English real rows only, "
                    f"stratified: proportional to each source, at least {MIN_PER_SOURCE}",
          "seed": SEED, "sizes": {s: int((rows["source"] == s).sum()) for s in SOURCES},
          "reader_a": "the stored labels (draws 1-2: the first reader; draw 3: a second reader; "
                      "draw 4: a third reader)",
          "reader_b": "a fifth reader, blind to the stored labels: read the guide in "
                      "cvlib/insight/aspects_labelled.md, labelled the 100 texts by reading them "
                      "and committed the labels before this comparison was written or run; no "
                      "tagger or model was run on them",
          "interval95": f"b_vs_a_interval95: percentile bootstrap over rows, {N_BOOTSTRAP} "
                        f"resamples, default_rng({SEED})",
          "labels_b": str(B_LABELS.relative_to(HERE.parent)),
          "metrics": "as benchmarks/aspects_labelled.py scores the aspect model: B is the "
                     "'model', A the truth (b_vs_a); a_vs_b swaps them",
      },
      "b_vs_a": compare(b, a),
      "b_vs_a_interval95": bootstrap(b, a),
      "a_vs_b": compare(a, b),
      "per_source": per_source,
      "disagreements": disagreements(a, b),
  }


def main(argv: list[str] | None = None) -> dict[str, Any]:
  """Command line: score reader B against reader A, or redraw the sample with its texts."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
  parser.add_argument("--labels", type=Path, default=al.LABELS, help="the stored labels (reader A)")
  parser.add_argument("--data-dir", type=Path, default=al.DATA_DIR,
                      help="folder of the datasets (default: $CVLIB_DATA_DIR)")
  parser.add_argument("--b-labels", type=Path, default=B_LABELS, help="reader B's labels")
  parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
  parser.add_argument("--sample", type=Path, default=None,
                      help="only write the sample's source, row_id and text to this CSV (outside "
                      "the repository) and stop")
  args = parser.parse_args(argv)
  labels = al.load_labels(args.labels)
  rows = draw(labels)
  if args.sample is not None:
    keys = labels.set_index(["source", "row_id"])
    stub = keys.loc[list(zip(rows["source"], rows["row_id"])), ["language", "text", "text_sha256"]]
    stub = stub.reset_index()
    texts = al.attach_texts(stub, args.data_dir)
    texts[["source", "row_id", "text"]].to_csv(args.sample, index=False)
    print(f"wrote {args.sample}: {rows['source'].value_counts().to_dict()}")
    return {}
  results = agreement(labels, load_b(args.b_labels))
  tmp = args.out.with_suffix(".tmp")
  tmp.write_text(json.dumps(results, indent=2) + "\n")
  tmp.replace(args.out)
  m = results["b_vs_a"]
  print(json.dumps({"tags": m["tags"]["micro"], "polarity_pos_neg":
                    m["polarity"]["accuracy_pos_neg"], "negatives": m["negatives"],
                    "kappa": m["kappa"]}, indent=1))
  print(f"wrote {args.out}")
  return results


if __name__ == "__main__":
  main()

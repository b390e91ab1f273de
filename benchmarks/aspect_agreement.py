"""Agreement of two readers labelling aspects with the guide: a human ceiling for issue 20's targets.

A second reader (reader B) labelled, blind to the stored labels, a seeded sample of 100 English real
rows of the first four draws of ``cvlib/insight/aspects_labelled.csv`` (the first 770 rows),
following the labelling guide in ``cvlib/insight/aspects_labelled.md``. The labels are in
``benchmarks/results/aspect_agreement_labels.csv`` (no texts: like the main CSV, only source, row
id and labels).

Usage::

  python benchmarks/aspect_agreement.py --sample /tmp/agree_sample.csv  # redraw the texts to label
"""

from __future__ import annotations

import argparse
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
# The rows of the first four draws (draw 5 is the aspect model's untouched check; left alone).
N_ROWS = al.N_BEFORE_ROUND5
# English real sources of draws 1-4, in the order the sample draws them.
SOURCES = ("womens", "amazon_beauty", "amazon_electronics", "amazon_home", "amazon_toys_sports",
           "amazon_pets", "amazon_auto")
B_LABELS = HERE / "results" / "aspect_agreement_labels.csv"


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
  """Command line: redraw the sample with its texts."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
  parser.add_argument("--labels", type=Path, default=al.LABELS, help="the stored labels (reader A)")
  parser.add_argument("--data-dir", type=Path, default=al.DATA_DIR,
                      help="folder of the datasets (default: $CVLIB_DATA_DIR)")
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
  raise SystemExit("only --sample is implemented so far")


if __name__ == "__main__":
  main()

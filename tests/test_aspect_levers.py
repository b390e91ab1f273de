"""benchmarks/aspect_levers.py measures levers against the shipped aspect model: its copies of the
cell rule and the tagging rule must be the shipped ones, or every lever is compared with
something cvlib does not do."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

from cvlib.insight import aspect_model as am

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports aspects_labelled
_SPEC = importlib.util.spec_from_file_location("aspect_levers_benchmark",
                                               REPO / "benchmarks" / "aspect_levers.py")
levers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(levers)


def test_cell_rule_is_cell_polarity_at_the_shipped_threshold():
  rng = np.random.default_rng(0)
  mix = {"head": 0.7, "examples": 9.0, "bias": 0.4}
  w = np.array([mix["head"], mix["examples"]])
  for _ in range(300):
    n = int(rng.integers(1, 5))
    f = np.c_[rng.normal(0, 3, size=n), rng.normal(0, 0.3, size=n)]
    assert levers.cell_rule(f @ w + mix["bias"]) == am.cell_polarity(f, mix)


def _table(n_clauses: int, n_aspects: int, seed: int) -> am.ClauseTable:
  rng = np.random.default_rng(seed)
  sim = rng.uniform(-0.2, 0.9, (n_clauses, n_aspects)).astype(np.float32)
  return am.ClauseTable([f"c{j}" for j in range(n_clauses)], np.arange(n_clauses) // 3,
                        rng.random((n_clauses, n_aspects)) < 0.3, sim,
                        np.zeros_like(sim), None, rng.random(n_clauses) < 0.1)


def test_hit_one_is_the_shipped_tagging_rule_and_the_margin_only_removes_keyword_tags():
  part = levers.Part.__new__(levers.Part)  # no labels, no encoder: only the tagging table
  part.table = _table(60, 4, 1)
  part.names = ["a", "b", "c", "d"]
  sim = part.table.similarity
  part.other = np.stack([np.delete(sim, a, axis=1).max(axis=1) for a in range(4)], 1)
  floor = dict(zip(part.names, (0.1, 0.3, -1.0, 0.5)))
  alone = dict(zip(part.names, (0.6, 1.01, 0.7, 0.8)))
  shipped = am.clause_hits(part.table, part.names, floor, alone)
  assert (part.hits(floor, alone) == shipped).all()
  gated = part.hits(floor, alone, margin=0.05)
  assert not (gated & ~shipped).any()
  alone_hits = sim >= np.array([alone[n] for n in part.names])
  assert (gated[alone_hits] == shipped[alone_hits]).all()

"""benchmarks/aspect_levers.py measures levers against the shipped aspect model: its copies of the
cell rule and the tagging rule must be the shipped ones, or every lever is compared with
something cvlib does not do."""


import numpy as np

from cvlib.insight import aspect_model as am

import benchmark_script

levers = benchmark_script.load("aspect_levers")


def test_the_benchmarks_cell_rule_on_mixed_logits_is_cell_polarity():
  rng = np.random.default_rng(0)
  mix = {"head": 0.7, "examples": 9.0, "bias": 0.4}
  w = np.array([mix["head"], mix["examples"]])
  for _ in range(300):
    n = int(rng.integers(1, 5))
    f = np.c_[rng.normal(0, 3, size=n), rng.normal(0, 0.3, size=n)]
    assert am.polarity_from_logits(f @ w + mix["bias"]) == am.cell_polarity(f, mix)


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


def test_a_classifier_logit_reaches_the_mix_unchanged():
  """LogitHead + an embed function returning the fine-tuned classifier's logit: cell_features
  must hand the mix that logit, clause by clause."""
  table = _table(12, 2, 3)
  hits = np.zeros((12, 2), dtype=bool)
  hits[[0, 1, 4], 0] = True
  hits[[4, 7], 1] = True
  logits = {f"c{j}": 0.5 * j - 2.0 for j in range(12)}
  calls = []

  def embed(texts):
    calls.append(list(texts))
    return np.array([[logits[t]] for t in texts])

  feats = am.cell_features(table, hits, levers.LogitHead(), levers.memo(embed))
  np.testing.assert_allclose(feats[(0, 0)][:, 0], [-2.0, -1.5], atol=1e-9)
  np.testing.assert_allclose(feats[(1, 0)][:, 0], [0.0], atol=1e-9)
  np.testing.assert_allclose(feats[(1, 1)][:, 0], [0.0], atol=1e-9)
  np.testing.assert_allclose(feats[(2, 1)][:, 0], [1.5], atol=1e-9)
  assert calls == [["c0", "c1", "c4", "c7"]]  # tagged clauses only, each once


def test_the_small_variant_trains_a_delta_small_enough_to_ship():
  from flax import nnx
  from cvlib.text import bert, checkpoint
  model = nnx.eval_shape(lambda: bert.BertForSequenceClassification(  # shapes only, no weights
      bert.BertConfig.minilm_l6(), 2, rngs=nnx.Rngs(0)))
  params = checkpoint.flat_params(model)
  trained = [k for k in params if levers.small_trainable(k)]
  kernels = sorted(k for k in trained if k.endswith("kernel"))
  assert kernels == ["bert.encoder.layer.5.attention.self_attn.query.kernel",
                     "bert.encoder.layer.5.attention.self_attn.value.kernel",
                     "classifier.kernel"]
  assert all(k.endswith((".bias", ".scale", "kernel")) for k in trained)
  size = sum(int(np.prod(params[k].shape)) for k in trained)
  assert size * 2 < 2 * 2**20  # fp16 bytes, under 2 MB

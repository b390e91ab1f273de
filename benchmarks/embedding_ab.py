"""CPU cost of the embedding lookup change: the old and new BertEmbeddings in one process.

The GPU fix (``cvlib.bert.BertEmbeddings``: look up in the float32 tables, positions as a slice,
token types as a select) replaced three ``nnx.Embed`` calls that cast the table first. This times
the MiniLM fine-tuning step (batch 32, AdamW, dropout on) with each version, taking turns, so that
machine noise hits both alike; results go to ``benchmarks/results/embedding_ab.json``.

    python benchmarks/embedding_ab.py [--lengths 32,128] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cvlib import bert, pretrained, sentiment

NEW_CALL = bert.BertEmbeddings.__call__


def old_call(self, input_ids, token_type_ids, *, deterministic):
  """The lookup before the fix: nnx.Embed per table (each casts its table to the compute dtype)."""
  positions = jnp.arange(input_ids.shape[1])[None, :]
  x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
       + self.token_type_embeddings(token_type_ids))
  return self.dropout(self.LayerNorm(x), deterministic=deterministic)


def _step(model, optimizer, batch):
  loss, grads = nnx.value_and_grad(lambda m: sentiment.loss_fn(m, batch)[0])(model)
  optimizer.update(model, grads)
  return loss


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--lengths", default="32,128")
  p.add_argument("--rounds", type=int, default=6)
  p.add_argument("--calls", type=int, default=3, help="steps per timed turn")
  p.add_argument("--out", type=Path,
                 default=Path(__file__).parent / "results" / "embedding_ab.json")
  args = p.parse_args()
  rng = np.random.default_rng(0)
  results = []
  for length in [int(x) for x in args.lengths.split(",")]:
    batch = {"input_ids": jnp.asarray(rng.integers(1000, 29000, (32, length)), jnp.int32),
             "attention_mask": jnp.ones((32, length), jnp.int32),
             "label": jnp.asarray(np.arange(32) % 2, jnp.int32), "weight": jnp.ones(32)}
    sides = {}
    for name, call in (("before", old_call), ("after", NEW_CALL)):
      bert.BertEmbeddings.__call__ = call
      model = pretrained.load_classifier(2)
      model = model[0] if isinstance(model, tuple) else model
      tx = sentiment.make_optimizer(learning_rate=2e-5, warmup_steps=0, total_steps=100_000)
      optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
      step = nnx.jit(_step, graph=False, donate_argnums=(0, 1))  # traced with this version
      jax.block_until_ready(step(model, optimizer, batch))
      sides[name] = (model, optimizer, step)
    bert.BertEmbeddings.__call__ = NEW_CALL
    times = {"before": [], "after": []}
    for _ in range(args.rounds):
      for name, (model, optimizer, step) in sides.items():
        start = time.perf_counter()
        for _ in range(args.calls):
          loss = step(model, optimizer, batch)
        jax.block_until_ready(loss)
        times[name].append((time.perf_counter() - start) / args.calls)
    row = {"length": length, "batch": 32}
    for name, t in times.items():
      row[name] = {"median_s": statistics.median(t), "min_s": min(t),
                   "seq_per_s": 32 / statistics.median(t), "times_s": t}
    print(f"L={length}: before {row['before']['seq_per_s']:.1f} seq/s, "
          f"after {row['after']['seq_per_s']:.1f} seq/s", flush=True)
    results.append(row)
  args.out.write_text(json.dumps({"benchmark": "embedding_ab", "model": "MiniLM-L6-H384",
                                  "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                  "jax": jax.__version__, "results": results}, indent=2))


if __name__ == "__main__":
  main()

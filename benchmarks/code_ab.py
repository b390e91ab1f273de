"""CPU cost of a code change in the encoder: the old and new version in one process, taking turns.

Each change swaps one piece of ``cvlib.text.bert`` back to what it was before:

- ``embedding``: the GPU fix of ``BertEmbeddings`` (look up in the float32 tables, positions as a
  slice, token types as a select) against three ``nnx.Embed`` calls that cast the table first.
- ``cpu_kernel``: ``bert.attention`` (the fused C++ kernel of ``cvlib.text.cpu_attention`` on CPU)
  against ``bert.scaled_dot_product_attention`` (XLA).
- ``attention``: ``bert.scaled_dot_product_attention`` (hand-written backward pass, probabilities
  recomputed, blocks of sequences on CPU) against ``bert.attention_reference`` (the plain einsums,
  softmax and dropout, differentiated by JAX), same dropout mask.
- ``gelu``: ``bert.gelu`` (``x / 2 * (1 + erf(x / sqrt(2)))``) against
  ``jax.nn.gelu(x, approximate=False)`` (``x / 2 * erfc(-x / sqrt(2))``), the same function.

It times the MiniLM fine-tuning step (batch 32, AdamW, dropout on) and, with ``--ops``, inference
(``sentiment``'s compiled predict), before and after, alternating so that machine noise hits both
alike; results go to ``benchmarks/results/<change>_ab.json``.

    python benchmarks/code_ab.py --change attention [--lengths 32,64,128] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

# Both versions' compiled steps live in this one process: keep glibc's default malloc, which
# treats them alike (cvlib.text.hostmem's kept heap is sized for one training program at a time).
os.environ.setdefault("CVLIB_MALLOC", "default")

import jax  # noqa: E402  (after the environment is set)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from cvlib import training  # noqa: E402
from cvlib.text import bert, checkpoint, devices, sentiment  # noqa: E402


def old_embedding_call(self, input_ids, token_type_ids, *, deterministic):
  """The lookup before the fix: nnx.Embed per table (each casts its table to the compute dtype)."""
  positions = jnp.arange(input_ids.shape[1])[None, :]
  x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
       + self.token_type_embeddings(token_type_ids))
  return self.dropout(self.LayerNorm(x), deterministic=deterministic)


def old_gelu(x):
  """The GELU before: jax.nn's exact form, computed through erfc."""
  return jax.nn.gelu(x, approximate=False)


# change -> (object, attribute, the version before, the version now)
CHANGES: dict[str, tuple[Any, str, Callable, Callable]] = {
    "embedding": (bert.BertEmbeddings, "__call__", old_embedding_call,
                  bert.BertEmbeddings.__call__),
    "attention": (bert, "scaled_dot_product_attention", bert.attention_reference,
                  bert.scaled_dot_product_attention),
    "cpu_kernel": (bert, "attention", bert.scaled_dot_product_attention, bert.attention),
    "gelu": (bert, "gelu", old_gelu, bert.gelu),
}


def _train_step(model, optimizer, batch):
  loss, grads = nnx.value_and_grad(lambda m: sentiment.loss_fn(m, batch)[0])(model)
  optimizer.update(model, grads)
  return loss


def _side(op: str, batch: dict[str, Any]) -> Callable[[], Any]:
  """A model and its compiled step, traced with the code in place now; returns one call."""
  model = checkpoint.load_classifier(2)
  model = model[0] if isinstance(model, tuple) else model
  if op == "train":
    tx = training.make_optimizer(learning_rate=2e-5, warmup_steps=0, total_steps=100_000)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    step = nnx.jit(_train_step, graph=False, donate_argnums=(0, 1))
    call = lambda: step(model, optimizer, batch)  # noqa: E731
  else:
    # A fresh function per side, so neither reuses the other's compilation.
    predict = devices.inference_jit(
        lambda m, i, a: jax.nn.softmax(m(i, a, deterministic=True), axis=-1))
    call = lambda: predict(model, batch["input_ids"], batch["attention_mask"])  # noqa: E731
  jax.block_until_ready(call())
  return call


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--change", choices=sorted(CHANGES), required=True)
  p.add_argument("--lengths", default="32,128")
  p.add_argument("--ops", default="train", help="comma-separated: train, inference")
  p.add_argument("--rounds", type=int, default=6)
  p.add_argument("--calls", type=int, default=3, help="steps per timed turn")
  p.add_argument("--out", type=Path, help="default benchmarks/results/<change>_ab.json")
  args = p.parse_args()
  owner, attribute, before, now = CHANGES[args.change]
  rng = np.random.default_rng(0)
  results = []
  for op in args.ops.split(","):
    for length in [int(x) for x in args.lengths.split(",")]:
      batch = {"input_ids": jnp.asarray(rng.integers(1000, 29000, (32, length)), jnp.int32),
               "attention_mask": jnp.ones((32, length), jnp.int32),
               "label": jnp.asarray(np.arange(32) % 2, jnp.int32), "weight": jnp.ones(32)}
      calls = {}
      try:
        for name, version in (("before", before), ("after", now)):
          setattr(owner, attribute, version)
          calls[name] = _side(op, batch)  # traced (and compiled) with this version
      finally:
        setattr(owner, attribute, now)
      times: dict[str, list[float]] = {"before": [], "after": []}
      for _ in range(args.rounds):
        for name, call in calls.items():
          start = time.perf_counter()
          for _ in range(args.calls):
            out = call()
          jax.block_until_ready(out)
          times[name].append((time.perf_counter() - start) / args.calls)
      row = {"op": op, "length": length, "batch": 32}
      for name, t in times.items():
        row[name] = {"median_s": statistics.median(t), "min_s": min(t),
                     "seq_per_s": 32 / statistics.median(t), "times_s": t}
      row["after_over_before"] = row["after"]["seq_per_s"] / row["before"]["seq_per_s"]
      print(f"{op} L={length}: before {row['before']['seq_per_s']:.1f} seq/s, "
            f"after {row['after']['seq_per_s']:.1f} seq/s ({row['after_over_before']:.2f}x)",
            flush=True)
      results.append(row)
  out = args.out or Path(__file__).parent / "results" / f"{args.change}_ab.json"
  out.write_text(json.dumps({"benchmark": f"{args.change}_ab", "model": "MiniLM-L6-H384",
                             "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "machine": {"cpus": jax.local_device_count("cpu"),
                                         "load_avg": list(os.getloadavg())},
                             "jax": jax.__version__, "results": results}, indent=2))


if __name__ == "__main__":
  main()

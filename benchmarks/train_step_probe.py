"""Where a fine-tuning step's time goes: the same step written several ways, timed on one device.

The encoder benchmark measures cvlib's training step as it is (``sentiment.train_step``). This
probe times variants of it on the same model, batch and dtype, so that a slow step can be pinned
on its cause rather than guessed at:

- ``nnx``: ``sentiment.train_step`` (nnx.jit in tree mode, model and optimizer donated).
- ``functional``: the same computation as a pure ``jax.jit`` function of the split state
  (``nnx.split`` once, ``nnx.merge`` inside the trace), state donated.
- ``no_dropout``: ``functional`` with dropout off (deterministic forward).
- ``grad_only``: forward and backward without the optimizer update.
- ``forward``: the training forward pass alone (dropout on, no gradient).

Each variant reports its first-call (compile) time, the median of steps timed one by one (each
waited for), the per-step time of a pipelined run (``--steps`` calls, one wait at the end) and
the host time a call takes to return (dispatch). ``--trace DIR`` also records a profiler trace
of a few ``nnx`` steps (a Perfetto ``*.trace.json.gz`` under DIR) for kernel-level timings.

    python benchmarks/train_step_probe.py --config bert_base --dtype bfloat16 --attention cudnn \
        --batch 256 --length 128 --out /tmp/probe.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# pylint: disable-next=wrong-import-position
from encoder import _default_model_path, make_ids, model_flops_per_sequence  # noqa: E402

PEAK_BF16_FLOPS = 989e12  # H200 dense bfloat16


def build(args: argparse.Namespace, dropout: bool = True) -> tuple[Any, Any, Any]:
  from flax import nnx  # pylint: disable=import-outside-toplevel

  from cvlib import training  # pylint: disable=import-outside-toplevel
  from cvlib.text import bert, checkpoint  # pylint: disable=import-outside-toplevel
  if args.config == "minilm":
    config = checkpoint.load_config(args.model_path)
  else:
    config = getattr(bert.BertConfig, args.config)()
  changes: dict[str, Any] = {"dtype": args.dtype, "attention": args.attention}
  if args.attention == "cudnn" or not dropout:
    changes["attention_dropout"] = 0.0
  if not dropout:
    changes["hidden_dropout"] = 0.0
  config = dataclasses.replace(config, **changes)
  model = bert.BertForSequenceClassification(config, 2, rngs=nnx.Rngs(0))
  if args.config == "minilm":
    checkpoint.load_bert_weights(model, args.model_path)
  tx = training.make_optimizer(learning_rate=2e-5, warmup_steps=0, total_steps=100_000)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  return config, model, optimizer


def make_batch(config: Any, batch: int, length: int) -> dict[str, Any]:
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  ids = make_ids(batch, length, config.vocab_size)
  return {"input_ids": jnp.asarray(ids, jnp.int32),
          "attention_mask": jnp.ones(ids.shape, jnp.int32),
          "label": jnp.asarray(np.arange(batch) % 2, jnp.int32),
          "weight": jnp.ones(batch, jnp.float32)}


def functional_step(model: Any, optimizer: Any, deterministic: bool,
                    update: bool = True, backward: bool = True) -> tuple[Callable, Any]:
  """A pure jitted step over (state, batch) and the initial state."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  graphdef, state = nnx.split((model, optimizer))

  def loss_fn(m: Any, batch: dict[str, Any]) -> Any:
    logits = m(batch["input_ids"], batch["attention_mask"], deterministic=deterministic)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    return jnp.sum(batch["weight"] * ce) / jnp.maximum(jnp.sum(batch["weight"]), 1e-9)

  @jax.jit
  def forward(state: Any, batch: dict[str, Any]) -> Any:
    m, _ = nnx.merge(graphdef, state)
    return loss_fn(m, batch)

  @jax.jit
  def grads(state: Any, batch: dict[str, Any]) -> Any:
    m, _ = nnx.merge(graphdef, state)
    loss, g = nnx.value_and_grad(loss_fn)(m, batch)
    return loss, g

  @functools.partial(jax.jit, donate_argnums=(0,))
  def step(state: Any, batch: dict[str, Any]) -> Any:
    m, o = nnx.merge(graphdef, state)
    loss, g = nnx.value_and_grad(loss_fn)(m, batch)
    o.update(m, g)
    return nnx.state((m, o)), loss

  if not backward:
    return (lambda s, b: (s, forward(s, b))), state
  if not update:
    return (lambda s, b: (s, grads(s, b))), state
  return step, state


def time_variant(name: str, step: Callable, state: Any, batch: dict[str, Any],
                 args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
  import jax  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  state, out = step(state, batch)
  jax.block_until_ready(out)
  first = time.perf_counter() - start
  for _ in range(2):
    state, out = step(state, batch)
  jax.block_until_ready(out)
  blocked, dispatch = [], []
  for _ in range(args.steps):
    start = time.perf_counter()
    state, out = step(state, batch)
    dispatch.append(time.perf_counter() - start)
    jax.block_until_ready(out)
    blocked.append(time.perf_counter() - start)
  start = time.perf_counter()
  for _ in range(args.steps):
    state, out = step(state, batch)
  jax.block_until_ready((state, out))
  pipelined = (time.perf_counter() - start) / args.steps
  row = {"variant": name, "first_call_s": first, "blocked_median_s": statistics.median(blocked),
         "blocked_min_s": min(blocked), "dispatch_median_s": statistics.median(dispatch),
         "pipelined_s": pipelined}
  print(json.dumps(row), flush=True)
  return row, state


def main(argv: list[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="bert_base", help="bert_base, minilm or a BertConfig preset")
  p.add_argument("--model-path", default=None)
  p.add_argument("--dtype", default="bfloat16")
  p.add_argument("--attention", default="xla")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--length", type=int, default=128)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--variants", default="nnx,functional,no_dropout,grad_only,forward")
  p.add_argument("--trace", default=None, help="folder for a profiler trace of the nnx step")
  p.add_argument("--out", required=True)
  args = p.parse_args(argv)
  if args.config == "minilm" and args.model_path is None:
    args.model_path = _default_model_path()

  import jax  # pylint: disable=import-outside-toplevel

  from cvlib.text import sentiment  # pylint: disable=import-outside-toplevel
  rows: list[dict[str, Any]] = []
  result: dict[str, Any] = {}
  for name in args.variants.split(","):
    config, model, optimizer = build(args, dropout=name != "no_dropout")
    batch = make_batch(config, args.batch, args.length)
    if name == "nnx":
      def nnx_step(state: Any, b: dict[str, Any]) -> Any:
        return state, sentiment.train_step(state[0], state[1], b)
      step, state = nnx_step, (model, optimizer)
    else:
      step, state = functional_step(model, optimizer, deterministic=name == "no_dropout",
                                    update=name not in ("grad_only", "forward"),
                                    backward=name != "forward")
    row, state = time_variant(name, step, state, batch, args)
    rows.append(row)
    flops = model_flops_per_sequence(config, args.length, train=True) * args.batch
    if name in ("nnx", "functional", "no_dropout"):
      row["mfu_pipelined"] = flops / row["pipelined_s"] / PEAK_BF16_FLOPS
      row["seq_per_s_pipelined"] = args.batch / row["pipelined_s"]
    result = {"benchmark": "train_step_probe", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "settings": vars(args), "device": str(jax.devices()[0]),
              "device_kind": jax.devices()[0].device_kind, "platform": platform.platform(),
              "versions": {"jax": jax.__version__}, "train_flops_per_step": flops,
              "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))  # after each variant: a timeout
    if name == "nnx" and args.trace:                          # keeps what was measured
      try:
        with jax.profiler.trace(args.trace, create_perfetto_trace=True):
          for _ in range(3):
            state, out = step(state, batch)
          jax.block_until_ready(out)
      except Exception as e:  # pylint: disable=broad-except  (a profiler problem is not fatal)
        print(f"trace failed: {e!r}", flush=True)
    del model, optimizer, state
  return result


if __name__ == "__main__":
  main()

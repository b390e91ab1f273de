"""The matrix products of a MiniLM training step, alone, in JAX and in PyTorch on the same CPU.

The encoder benchmark finds cvlib's CPU training step slower than PyTorch's at 64 and 128 tokens.
This asks whether the matrix-product library is the reason: it times the three products of each
dense layer of the step (batch 32 x 128 tokens = 4,096 rows, 384 -> 1,536 as in the feed-forward
block) in isolation, on the same thread count:

- ``forward``   y = x @ W                 [4096, 384] x [384, 1536]
- ``grad_x``    dx = dy @ W.T             [4096, 1536] x [1536, 384]^T (the backward's input gradient)
- ``grad_w``    dW = x.T @ dy             [384, 4096] x [4096, 1536] (the weight gradient)

JAX runs them as jitted ``dot_general`` calls (XLA chooses the library: YNNPACK on this build);
PyTorch runs ``torch.matmul`` on transposed views. Medians of ``--repeats`` timed calls after a
warm-up. PyTorch comes from ``$CVLIB_TORCH_PYTHON`` or ``../torchvenv/bin/python``, as in
``benchmarks/encoder.py``; without it only the JAX side is measured.

    python benchmarks/matmul_cpu.py [--threads 2] [--out benchmarks/results/matmul_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TORCH_PYTHON = os.environ.get("CVLIB_TORCH_PYTHON",
                              str(HERE.parent.parent / "torchvenv" / "bin" / "python"))
ROWS, D_IN, D_OUT = 4096, 384, 1536
GFLOP = 2 * ROWS * D_IN * D_OUT / 1e9


def _median_ms(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def run_jax(repeats: int) -> dict[str, float]:
  import jax  # pylint: disable=import-outside-toplevel
  key = jax.random.key(0)
  x = jax.random.normal(key, (ROWS, D_IN))
  w = jax.random.normal(key, (D_IN, D_OUT))
  dy = jax.random.normal(key, (ROWS, D_OUT))
  dims = {"forward": (((1,), (0,)), ((), ())), "grad_x": (((1,), (1,)), ((), ())),
          "grad_w": (((0,), (0,)), ((), ()))}
  args = {"forward": (x, w), "grad_x": (dy, w), "grad_w": (x, dy)}
  out = {}
  for name, dn in dims.items():
    f = jax.jit(lambda a, b, dn=dn: jax.lax.dot_general(a, b, dn))
    out[name] = _median_ms(lambda f=f, a=args[name]: f(*a).block_until_ready(), repeats)
  return out


def run_torch(repeats: int, threads: int) -> dict[str, float]:
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(threads)
  gen = torch.Generator().manual_seed(0)
  x = torch.randn(ROWS, D_IN, generator=gen)
  w = torch.randn(D_IN, D_OUT, generator=gen)
  dy = torch.randn(ROWS, D_OUT, generator=gen)
  calls = {"forward": lambda: x @ w, "grad_x": lambda: dy @ w.T, "grad_w": lambda: x.T @ dy}
  return {name: _median_ms(fn, repeats) for name, fn in calls.items()}


def main(argv: list[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--repeats", type=int, default=30)
  p.add_argument("--out", type=Path, default=HERE / "results" / "matmul_cpu.json")
  p.add_argument("--torch-side", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.torch_side:  # the child process: PyTorch only, JSON on stdout
    print(json.dumps(run_torch(args.repeats, args.threads)))
    return {}

  os.environ.setdefault("XLA_FLAGS", "")
  jax_ms = run_jax(args.repeats)
  torch_ms = None
  if Path(TORCH_PYTHON).exists():
    child = subprocess.run([TORCH_PYTHON, __file__, "--torch-side", "--threads",
                            str(args.threads), "--repeats", str(args.repeats)],
                           capture_output=True, text=True, check=True)
    torch_ms = json.loads(child.stdout.strip().splitlines()[-1])
  rows = {}
  for name, ms in jax_ms.items():
    rows[name] = {"jax_ms": ms, "jax_gflops": GFLOP / ms * 1e3}
    if torch_ms:
      rows[name] |= {"torch_ms": torch_ms[name], "torch_gflops": GFLOP / torch_ms[name] * 1e3,
                     "jax_over_torch_speed": torch_ms[name] / ms}
  result = {"benchmark": "matmul_cpu", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "shape": {"rows": ROWS, "in": D_IN, "out": D_OUT, "gflop": GFLOP},
            "threads": args.threads, "repeats": args.repeats, "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(), "python": sys.version.split()[0], "results": rows}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + "\n")
  print(json.dumps(rows, indent=2))
  return result


if __name__ == "__main__":
  main()

"""A fused attention kernel for CPUs (``cvlib/text/native/cpu_attention.cc``), called through XLA's FFI.

XLA's CPU code for attention makes several passes over the [batch, heads, seq, seq] scores (the
softmax's max, exp and sum are separate loops); the kernel does one (sequence, head) at a time, its
[seq, seq] scores in cache, forward and backward (the backward pass recomputes the probabilities
from the forward pass's log-sum-exp). Its dropout
mask is ``bert.dropout_keep_mask``'s, so it computes what ``bert.attention_reference`` computes, up
to float rounding.

``make install`` (and ``make test``) compiles it with the machine's C++ compiler
(``python -m cvlib.text.cpu_attention build`` does the same in any environment); without the compiled
library (no compiler, a pip install without make) ``available()`` is False and cvlib uses the XLA
version. It handles float32 on the CPU backend only.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).parent / "native" / "cpu_attention.cc"
LIBRARY = Path(__file__).parent / "native" / "_cpu_attention.so"
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-Wall")


def find_compiler() -> str | None:
  """$CXX, else g++ or c++ on the PATH."""
  return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def build(compiler: str | None = None) -> Path:
  """Compiles the kernel for this machine's CPU into ``LIBRARY`` (``-march=native``: rebuild it
  on another CPU rather than copying it).

  Raises:
    RuntimeError: no C++ compiler.
    subprocess.CalledProcessError: the compiler failed (its messages are on stderr).
  """
  compiler = compiler or find_compiler()
  if not compiler:
    raise RuntimeError("no C++ compiler (set CXX or install g++)")
  partial = LIBRARY.with_name(LIBRARY.name + ".tmp")
  subprocess.run([compiler, *FLAGS, "-isystem", jax.ffi.include_dir(), str(SOURCE),
                  "-o", str(partial)], check=True)
  os.replace(partial, LIBRARY)  # a half-written library is never loaded
  return LIBRARY


@functools.cache
def available() -> bool:
  """True when the compiled kernel is there (and is then registered with XLA, once)."""
  if not LIBRARY.is_file():
    return False
  library = ctypes.CDLL(str(LIBRARY))
  for target, symbol in (("cvlib_attention_forward", library.CvlibAttentionForward),
                         ("cvlib_attention_backward", library.CvlibAttentionBackward)):
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(symbol), platform="cpu")
  return True


def usable(q: jax.Array) -> bool:
  """Whether ``attention`` takes these inputs here: the kernel is built, float32, one CPU device
  (a custom call is not split across devices, so sharded runs keep the XLA version), and the
  environment does not switch it off (``CVLIB_CPU_ATTENTION=0``, e.g. to compare the two)."""
  return (q.dtype == jnp.float32 and jax.default_backend() == "cpu"
          and jax.device_count() == 1 and os.environ.get("CVLIB_CPU_ATTENTION", "1") != "0"
          and available())


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask_bias: jax.Array, seeds: jax.Array,
              rate: float) -> jax.Array:
  """softmax(q k^T / sqrt(d) + bias) v with dropout on the probabilities; differentiable in q, k
  and v. Arguments as ``bert.scaled_dot_product_attention`` (float32; check ``usable`` first)."""
  if not available():
    raise RuntimeError(f"the CPU attention kernel is not built ({LIBRARY}); run make install")
  batch, seq, heads, head_dim = q.shape
  bias = jnp.broadcast_to(jax.lax.stop_gradient(mask_bias), (batch, 1, 1, seq))
  bias = bias.reshape(batch, seq).astype(jnp.float32)
  attrs = {"scale": np.float32(1.0 / math.sqrt(head_dim)),
           "threshold": np.uint32(min(int(rate * 2.0**32), 2**32 - 1)),
           "keep_prob": np.float32(1.0 - rate)}
  seeds = seeds.astype(jnp.uint32)

  def forward(q, k, v, want_lse):
    return jax.ffi.ffi_call(
        "cvlib_attention_forward",
        (jax.ShapeDtypeStruct(q.shape, jnp.float32),
         jax.ShapeDtypeStruct((batch, heads, seq), jnp.float32)),
        vmap_method="sequential")(q, k, v, bias, seeds, want_lse=want_lse, **attrs)

  @jax.custom_vjp
  def attend(q, k, v):
    return forward(q, k, v, want_lse=False)[0]  # no gradient taken: no log-sum-exp needed

  def attend_forward(q, k, v):
    out, lse = forward(q, k, v, want_lse=True)
    return out, (q, k, v, out, lse)

  def attend_backward(saved, d_out):
    q, k, v, out, lse = saved
    shape = jax.ShapeDtypeStruct(q.shape, jnp.float32)
    return jax.ffi.ffi_call("cvlib_attention_backward", (shape, shape, shape),
                            vmap_method="sequential")(
        q, k, v, bias, seeds, out, lse, d_out.astype(jnp.float32), **attrs)

  attend.defvjp(attend_forward, attend_backward)
  return attend(q, k, v)


if __name__ == "__main__":
  # python -m cvlib.text.cpu_attention build: what make install runs. Without a compiler it says so
  # and succeeds (cvlib then uses the XLA attention); a compiler error fails.
  if sys.argv[1:] != ["build"]:
    sys.exit("usage: python -m cvlib.text.cpu_attention build")
  if not find_compiler():
    print("cvlib: no C++ compiler (g++): attention on CPU runs as XLA code (slower)")
  else:
    print(f"cvlib: built {build()}")

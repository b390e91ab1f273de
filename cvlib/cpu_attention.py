"""A fused attention kernel for CPUs (``cvlib/native/cpu_attention.cc``), called through XLA's FFI.

XLA's CPU code for attention makes several passes over the [batch, heads, seq, seq] scores (the
softmax's max, exp and sum are separate loops); the kernel does one (sequence, head) at a time with
that head's keys and values in cache and each query row's scores in registers, forward and backward
(the backward pass recomputes the probabilities from the forward pass's log-sum-exp). Its dropout
mask is ``bert.dropout_keep_mask``'s, so it computes what ``bert.attention_reference`` computes, up
to float rounding.

``make install`` (and ``make test``) compiles it with the machine's C++ compiler; without the
compiled library (no compiler, a pip install without make) ``available()`` is False and cvlib
uses the XLA version. It handles float32 on the CPU backend only.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

LIBRARY = Path(__file__).parent / "native" / "_cpu_attention.so"


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

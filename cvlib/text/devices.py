"""Devices: data parallelism over local devices with jax.sharding, and the compute dtype.

Data parallel training here is plain SPMD: one ``Mesh`` with a single ``"data"`` axis over the
devices, the model and optimizer state replicated (``NamedSharding(mesh, P())``), every batch
split along its first axis (``NamedSharding(mesh, P("data"))``). The jit'd steps of
``cvlib.text.sentiment`` and ``cvlib.text.mlm`` are unchanged: XLA's partitioner sees the input shardings,
runs each device on its slice of the batch and inserts the all-reduce of the gradients, so the
result equals the single-device step up to float summation order.

On a CPU the same code runs over ``--xla_force_host_platform_device_count`` fake devices (the
tests do this); it only pays on machines with several accelerators.

Multi-host (several machines, each with its local accelerators): start the same program on every
host and call ``jax.distributed.initialize()`` first (on Cloud TPU and SLURM/Open MPI clusters it
finds the coordinator itself; elsewhere pass ``coordinator_address="host0:1234",
num_processes=N, process_id=i``). Then ``make_mesh(jax.devices())`` spans every device of every
host, each process feeds only its own rows (``shard_batch`` builds the global array with
``jax.make_array_from_process_local_data``, so the per-process batch is the global batch divided
by ``jax.process_count()``), and only process 0 should write reports and checkpoints (orbax
checkpoint managers coordinate this themselves).

bfloat16: ``BertConfig(dtype="bfloat16")`` (or ``with_compute_dtype``) keeps parameters and
optimizer state in float32 and computes activations in bfloat16, with LayerNorm statistics, the
attention softmax, the pooled vector and the losses in float32. Worth it on GPUs and TPUs; a CPU
without native bfloat16 arithmetic gets slower, hence ``default_compute_dtype``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cvlib.text.bert import BertConfig

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-d mesh with axis "data" over the given devices (default: every local device).

  Raises:
    ValueError: an empty device list.
  """
  devices = list(jax.local_devices() if devices is None else devices)
  if not devices:
    raise ValueError("make_mesh needs at least one device, got none")
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def default_mesh() -> Mesh | None:
  """A data mesh over all local devices when there are several, else None (plain single device)."""
  return make_mesh() if jax.local_device_count() > 1 else None


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Rows split over the "data" axis, everything else whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh | None) -> None:
  """Raises ValueError unless batch_size splits evenly over the mesh's data axis."""
  if mesh is None:
    return
  n = mesh.shape[DATA_AXIS]
  if batch_size % n:
    raise ValueError(f"batch_size {batch_size} must be a multiple of the {n} devices of the data "
                     f"mesh (each device takes batch_size / {n} rows)")


def replicate(*objects: nnx.Object, mesh: Mesh) -> None:
  """Moves the whole state of nnx objects (model, optimizer) onto every device, in place."""
  sharding = replicated_sharding(mesh)
  for obj in objects:
    state = nnx.state(obj)
    nnx.update(obj, jax.device_put(state, sharding))


def to_default_device(*objects: nnx.Object) -> None:
  """Moves the whole state of nnx objects onto the default device, in place (after data parallel
  training: what runs next, inference and saving, is written for one device)."""
  device = jax.local_devices()[0]
  for obj in objects:
    nnx.update(obj, jax.device_put(nnx.state(obj), device))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Splits every array of a batch along its first axis over the mesh's "data" axis.

  With several processes (multi-host) each passes its own rows and gets the global array.

  Raises:
    ValueError: a leading dimension that does not divide over the devices.
  """
  sharding = data_sharding(mesh)
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if jax.process_count() > 1:
      out[key] = jax.make_array_from_process_local_data(sharding, value)
      continue
    if value.ndim == 0 or value.shape[0] % mesh.shape[DATA_AXIS]:
      raise ValueError(f"batch[{key!r}] has shape {value.shape}; its first dimension must be a "
                       f"multiple of the {mesh.shape[DATA_AXIS]} devices")
    out[key] = jax.device_put(value, sharding)
  return out


def put_batch(batch: Mapping[str, np.ndarray], mesh: Mesh | None = None) -> dict[str, jax.Array]:
  """A batch on the default device (mesh None) or split over the mesh."""
  if mesh is None:
    return {k: jnp.asarray(v) for k, v in batch.items()}
  return shard_batch(batch, mesh)


def default_compute_dtype(backend: str | None = None) -> str:
  """ "bfloat16" on GPUs and TPUs, "float32" on CPUs (no fast bfloat16 arithmetic there)."""
  backend = jax.default_backend() if backend is None else backend
  return "bfloat16" if backend in ("gpu", "cuda", "rocm", "tpu") else "float32"


def with_compute_dtype(config: BertConfig, dtype: str | None) -> BertConfig:
  """The config with activations in dtype ("float32", "bfloat16"; None: default_compute_dtype)."""
  return dataclasses.replace(config, dtype=default_compute_dtype() if dtype is None else dtype)


# XLA:CPU (jaxlib 0.10) hands dots and the element-wise work around them to YNNPACK fusions. In
# MiniLM's inference graph at 128 tokens the fused attention block ran at ~17 GFLOP/s against ~95
# for plain dots; with those fusions off (Eigen dots, XLA's own loops) inference at 128 tokens
# measured 27 -> 33 seq/s (interleaved A/B in one process, 2 cores), equal at 32 and 64 tokens.
# Training steps measured the same either way, so they keep XLA's defaults.
_CPU_INFERENCE_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def inference_jit(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``jax.jit`` for pure functions of nnx modules (no state updates), with per-backend options.

  nnx modules are pytrees, so a function that only reads a model (inference) needs no nnx.jit.
  On CPUs the compilation turns YNNPACK fusions off (see above); if a future XLA does not know
  that option, the function is compiled with the defaults instead.
  """
  compiled: dict[str, Callable[..., Any]] = {}

  @functools.wraps(fn)
  def wrapper(*args: Any) -> Any:
    backend = jax.default_backend()
    if backend not in compiled:
      if backend == "cpu":
        tuned = jax.jit(fn, compiler_options=_CPU_INFERENCE_OPTIONS)
        try:
          out = tuned(*args)
        except Exception:  # pylint: disable=broad-except  (an unknown option: use the defaults)
          compiled[backend] = jax.jit(fn)
        else:
          compiled[backend] = tuned
          return out
      else:
        compiled[backend] = jax.jit(fn)
    return compiled[backend](*args)

  return wrapper


def describe(mesh: Mesh | None) -> dict[str, Any]:
  """Devices in use, for logs and metrics."""
  devices = jax.local_devices() if mesh is None else list(mesh.devices.flat)
  return {"backend": jax.default_backend(), "devices": len(devices),
          "kind": devices[0].device_kind, "processes": jax.process_count(),
          "data_parallel": mesh is not None}


# The accelerators `make report ACCEL=...` can ask for, and the JAX backend each one means.
ACCELERATORS = {"cpu": "cpu", "cuda": "gpu"}


def accelerator_problem(accel: str) -> str | None:
  """Why JAX would not run on ``accel`` here (one line), or None when it would.

  ``make report ACCEL=cuda`` asks this before the run, so a machine without the GPU (or without
  the CUDA build of jaxlib) stops with a message instead of running on the CPU unannounced.
  """
  if accel not in ACCELERATORS:
    return f"ACCEL={accel}: unknown accelerator (choose from {', '.join(ACCELERATORS)})"
  want = ACCELERATORS[accel]
  try:
    found = jax.devices(want)
  except RuntimeError:
    found = []
  if not found:
    have = ", ".join(sorted({d.platform for d in jax.devices()}))
    return (f"ACCEL={accel}: JAX finds no {want.upper()} device here (it has: {have}); "
            "run without ACCEL for the CPU build")
  return None


def _main(argv: Sequence[str]) -> int:
  """``python -m cvlib.text.devices require ACCEL``: exit 2 with one line when JAX lacks it."""
  import sys
  if len(argv) != 2 or argv[0] != "require":
    print("usage: python -m cvlib.text.devices require cpu|cuda", file=sys.stderr)
    return 2
  problem = accelerator_problem(argv[1])
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    return 2
  print(f"{argv[1]}: {describe(None)}")
  return 0


__all__ = [
    "ACCELERATORS", "DATA_AXIS", "accelerator_problem", "check_batch_size", "data_sharding",
    "default_compute_dtype", "default_mesh", "describe", "inference_jit", "make_mesh",
    "put_batch", "replicate", "replicated_sharding", "shard_batch", "to_default_device",
    "with_compute_dtype",
]


if __name__ == "__main__":
  import sys
  sys.exit(_main(sys.argv[1:]))

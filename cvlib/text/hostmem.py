"""Host memory policy for processes that run models on the CPU.

XLA:CPU allocates each call's temporary buffer with ``posix_memalign`` (1.2 GB for a MiniLM
training step at 32 x 128) and frees it at the end of the call. glibc serves allocations that
large with a fresh ``mmap`` and returns them with ``munmap``, so every step faults in every page
again: 313,813 page faults and 0.51 s of kernel time per 1.9 s step on the 2-core machine
(``benchmarks/results/host_memory.json``). Keeping freed memory in the process (one malloc arena, no mmap for large blocks, no
trimming of the heap below 2 GB) makes the next call reuse it (``benchmarks/host_memory.py``
measures both ways).

``keep_freed_memory`` sets that with ``mallopt``. It must run before XLA's threads first allocate
(threads keep the arena they started with), so ``cvlib.text.bert`` calls it when imported. It is
process-wide: peak heap memory stays with the process until it exits (report stages run in their
own processes). ``CVLIB_MALLOC=default`` leaves glibc's defaults, and so does a ``GLIBC_TUNABLES``
or ``MALLOC_ARENA_MAX`` setting of the user's own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))


@functools.cache
def keep_freed_memory() -> bool:
  """Sets glibc's malloc to keep and reuse freed memory (see the module docstring), once.

  Returns:
    True if the settings were applied; False on other C libraries or platforms, or when the
    environment asks for the defaults.
  """
  if (sys.platform != "linux" or os.environ.get("CVLIB_MALLOC") == "default"
      or "GLIBC_TUNABLES" in os.environ or "MALLOC_ARENA_MAX" in os.environ):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  except OSError:
    return False
  if not hasattr(libc, "gnu_get_libc_version"):  # glibc only (musl has no such function)
    return False
  return all(libc.mallopt(option, value) == 1 for option, value in _SETTINGS)

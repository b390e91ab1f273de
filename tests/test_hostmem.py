"""cvlib.text.hostmem: freed memory is reused instead of being unmapped and faulted in again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, json, resource
import cvlib.text.bert  # applies the policy when imported
from cvlib.text import hostmem

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def faults_of_a_fresh_block(size=64 * 2**20):  # as XLA's buffers: glibc's default mmaps it
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = libc.malloc(size)
  ctypes.memset(block, 1, size)
  libc.free(block)
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_a_fresh_block()
print(json.dumps({"applied": hostmem.keep_freed_memory(), "faults": faults_of_a_fresh_block()}))
"""


def _probe(**env: str) -> dict:
  environ = {k: v for k, v in os.environ.items()
             if k not in ("CVLIB_MALLOC", "GLIBC_TUNABLES", "MALLOC_ARENA_MAX")}
  out = subprocess.run([sys.executable, "-c", PROBE], env=environ | env, capture_output=True,
                       text=True, check=True).stdout
  return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_a_freed_large_block_is_reused_without_page_faults():
  tuned, default = _probe(), _probe(CVLIB_MALLOC="default")
  assert tuned["applied"] and not default["applied"]
  assert default["faults"] > 10_000  # 16,384 pages of 4 KiB, faulted in afresh
  assert tuned["faults"] < 100


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_a_users_own_malloc_settings_are_left_alone():
  assert not _probe(MALLOC_ARENA_MAX="4")["applied"]

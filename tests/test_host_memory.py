"""glibc malloc settings that keep freed host memory for reuse (host_memory.py)."""

import os
import subprocess
import sys

import pytest

from geopose_jax import host_memory

_HAS_MALLINFO2 = host_memory._glibc() is not None and hasattr(host_memory._glibc(), "mallinfo2")

# Where glibc puts an 80 MiB array made by the main thread or by another thread (whose own
# arena's heaps hold at most 64 MiB): mallinfo2's hblkhd counts the bytes held in mmapped
# blocks and arena the bytes of the heap, asked before, while and after the array is held.
_PROBE = """
import ctypes, sys, threading
import numpy as np
from geopose_jax import host_memory

class MallInfo2(ctypes.Structure):
  _fields_ = [(name, ctypes.c_size_t) for name in (
      "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
      "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
applied = (host_memory.keep_freed_memory(one_arena=sys.argv[1] == "apply_one_arena")
           if sys.argv[1].startswith("apply") else False)
sizes = []

def allocate_and_free():
  before = libc.mallinfo2()
  block = np.ones(20 << 20, np.float32)  # 80 MiB
  held = libc.mallinfo2()
  del block
  freed = libc.mallinfo2()
  sizes.extend([held.hblkhd - before.hblkhd, held.arena - before.arena,
                freed.arena - before.arena])

if sys.argv[2] == "thread":
  worker = threading.Thread(target=allocate_and_free)
  worker.start()
  worker.join()
else:
  allocate_and_free()
print(applied, *sizes)
"""


def _probe(mode: str, env: dict, thread: str = "main") -> tuple[bool, int, int, int]:
  out = subprocess.run([sys.executable, "-c", _PROBE, mode, thread], capture_output=True,
                       text=True, env=env, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  applied, mmapped, arena_held, arena_freed = out.stdout.split()
  return applied == "True", int(mmapped), int(arena_held), int(arena_freed)



@pytest.mark.skipif(not _HAS_MALLINFO2, reason="needs glibc >= 2.33 (mallinfo2)")
def test_large_blocks_come_from_the_heap_and_stay_there():
  env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  applied, mmapped, arena_held, arena_freed = _probe("apply", env)
  assert applied
  assert mmapped == 0  # not from mmap ...
  assert arena_held > 64 << 20 and arena_freed == arena_held  # ... but the heap, kept on free
  # Without the settings glibc maps the block (the behaviour the module changes).
  applied, mmapped, _, _ = _probe("default", env)
  assert not applied and mmapped >= 80 << 20


@pytest.mark.skipif(not _HAS_MALLINFO2, reason="needs glibc >= 2.33 (mallinfo2)")
def test_large_blocks_of_other_threads_come_from_the_heap_too():
  env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  applied, mmapped, arena_held, arena_freed = _probe("apply_one_arena", env, thread="thread")
  assert applied and mmapped == 0
  assert arena_held > 64 << 20 and arena_freed == arena_held
  # With mmap off but one arena per thread, glibc still maps what the thread's arena cannot
  # hold: the case the single arena is for.
  applied, mmapped, _, _ = _probe("apply", env, thread="thread")
  assert applied and mmapped >= 80 << 20


def test_the_users_own_malloc_settings_win():
  assert host_memory.keep_freed_memory({"MALLOC_ARENA_MAX": "2"}) is False
  assert host_memory.keep_freed_memory({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False
  assert host_memory.keep_freed_memory({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}) is False


def test_other_platforms_are_left_alone(monkeypatch):
  monkeypatch.setattr(sys, "platform", "darwin")
  assert host_memory._glibc() is None
  assert host_memory.keep_freed_memory({}) is False

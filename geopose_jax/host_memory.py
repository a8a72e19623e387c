"""Host memory that XLA's CPU runtime frees is kept for the next step (glibc malloc settings).

XLA's CPU runtime allocates a step's temporary buffers with malloc and frees them when the
step ends. glibc serves large requests with fresh pages from mmap (everything above 32 MiB at
the most) and hands them back on free, so every step faults its whole working set in again
and the kernel zero-fills it page by page: 7.5% of the NVS training step's CPU time went to
clearing pages. With mmap off and the heap never trimmed, freed buffers are reused instead:
the NVS step (batch 16, 128x128, 2 CPU cores) went from 4.43 s to 3.83 s.

XLA's worker threads allocate from glibc's per-thread arenas, whose heaps hold at most
64 MiB: a larger buffer there is mmapped whatever the settings above say, and unmapped on
free. One arena for all threads sends those buffers to the main heap as well: in the
VideoPose3D step (batch 256, 85 MB activations) an element-wise pass over such a buffer
went from 28 ms to 6 ms, and the step from 1.9-2.2 s to 1.65-1.73 s. The threads share the
arena's lock, which costs more than it saves where the buffers are small: XLA's
multi-threaded compiler compiles about a quarter slower (RIE demo step: 17-18 s -> 20-25 s)
and the NVS demo step runs 0.20 -> 0.24-0.28 s. So the single arena is opt-in
(`one_arena=True`, launch.py's `--config.train.one_malloc_arena`), on by default only in
configs whose activations are that large (configs/rie.py:tcn).

The cost is that the process keeps its peak heap until it exits, which a training or
benchmark process does anyway. Settings the user gives through glibc's own environment
variables (`MALLOC_MMAP_MAX_`, `MALLOC_ARENA_MAX`, ..., or `GLIBC_TUNABLES=glibc.malloc.*`)
are left alone, as is any C library other than glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

# mallopt(3) parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

# Whether `keep_freed_memory` made the settings in this process (benchmarks report it).
applied = False
single_arena = False  # and whether it gave all threads one arena


def _glibc() -> ctypes.CDLL | None:
  if not sys.platform.startswith("linux"):
    return None
  try:
    libc = ctypes.CDLL(None)
    libc.gnu_get_libc_version  # only glibc has it  # pylint: disable=pointless-statement
    return libc
  except (OSError, AttributeError):
    return None


def keep_freed_memory(environ: Mapping[str, str] = os.environ, one_arena: bool = False) -> bool:
  """Makes glibc serve allocations from the heap (no mmap) and never trim it.

  Call it early, before the large allocations and before other threads allocate (launch.py
  does, first thing): glibc fixes its arena limit when a second arena is first needed.
  `one_arena=True` also gives all threads one arena (see the module docstring). Returns
  True
  when the settings were made; False on another C library or when the user set glibc's
  malloc variables.
  """
  if (any(name.startswith("MALLOC_") for name in environ)
      or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")):
    return False
  libc = _glibc()
  if libc is None:
    return False
  global applied, single_arena
  # mallopt returns 1 on success; -1 as the trim threshold disables trimming (mallopt(3)).
  applied = (bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, -1))
             and (not one_arena or bool(libc.mallopt(M_ARENA_MAX, 1))))
  single_arena = applied and one_arena
  return applied

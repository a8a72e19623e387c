"""The device mesh: one axis, `data`, over every device of every host."""

from __future__ import annotations

import os
import pathlib

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from geopose_jax.train.task import Runtime

DATA_AXIS = "data"


def make_mesh() -> jax.sharding.Mesh:
  """Data parallelism over all devices: 1 CPU, 8 GPUs and a TPU pod take the same path."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,))


def make_runtime(workdir: str | os.PathLike) -> Runtime:
  mesh = make_mesh()
  return Runtime(
      mesh=mesh,
      data_sharding=NamedSharding(mesh, P(DATA_AXIS)),
      replicated=NamedSharding(mesh, P()),
      workdir=pathlib.Path(workdir),
      process_index=jax.process_index(),
      process_count=jax.process_count())

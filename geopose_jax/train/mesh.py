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


def batch_sharded_like(y: jax.Array, x: jax.Array) -> jax.Array:
  """`y` with its leading axis sharded as `x`'s is (explicit-sharding meshes); as is when
  `x` is not sharded."""
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec = getattr(sharding, "spec", None)
  if not spec or spec[0] is None:
    return y
  return jax.sharding.reshard(y, NamedSharding(
      sharding.mesh, P(spec[0], *([None] * (y.ndim - 1)))))

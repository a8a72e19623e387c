"""Output shardings a layer must name under an explicit-sharding mesh (batch on axis 0).

JAX infers most shardings itself; these are the two cases it cannot: a reshape that splits or
merges axes, and a sum over the (sharded) batch, whose result lives on every device.
"""

from __future__ import annotations

import jax


def replicated_like(x: jax.Array) -> jax.sharding.NamedSharding | None:
  """A replicated sharding on x's mesh when x is sharded under an explicit mesh, else None
  (for `out_sharding` of a product or convolution that sums over x's batch)."""
  sharding = getattr(jax.typeof(x), "sharding", None)
  if not any(axis is not None for axis in getattr(sharding, "spec", ())):
    return None
  return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())


def reshape_keep_batch(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """x.reshape(shape) that keeps the leading (batch) axis's sharding under an explicit mesh,
  where JAX cannot infer the output sharding of a reshape that splits an axis."""
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec = getattr(sharding, "spec", ())
  if not any(s is not None for s in spec) or tuple(x.shape) == tuple(shape):
    return x.reshape(shape)
  out = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(
      spec[0], *([None] * (len(shape) - 1))))
  return jax.lax.reshape(x, shape, out_sharding=out)

"""Choosing numpy or jax.numpy from the inputs, so host code stays off the accelerator."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def namespace(*arrays: Any):
  """Returns `jax.numpy` if any input is a JAX array (or tracer), else `numpy`.

  Host-side callers (data pipelines in Grain workers, evaluation on numpy outputs) get numpy
  results with no device transfer; anything traced or already on a device stays in JAX.
  """
  for a in arrays:
    if isinstance(a, jax.Array):
      return jnp
  return np


def as_float_array(xp, x: Any):
  """`x` as a floating array of namespace `xp` (integers become the default float)."""
  x = xp.asarray(x)
  if not xp.issubdtype(x.dtype, xp.floating):
    x = x.astype(xp.float32 if xp is jnp else xp.float64)
  return x

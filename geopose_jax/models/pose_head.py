"""The semi-supervised pose head of Rhodin et al. (the original's `to_pose` MLP).

Order of the original's `MLP_fromLatent(n_hidden=2)` Sequential, whose indices are our
submodule names (so PyTorch key `to_pose.fully_connected.4.weight` is `params/4/kernel`):
  0 Linear(600, 2048), 1 ReLU, 2 BatchNorm1d(2048), 3 Dropout(0.5),
  4 Linear(2048, 2048), 5 ReLU, 6 BatchNorm1d(2048), 7 Dropout(0.5),
  8 Linear(2048, 51).
Input: the *unrotated* geometry latent flattened to (B, 600); output (B, 51) = 17 joints
x 3 in the normalised space the task trains in ((pose - mean) / std).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from geopose_jax.models import resnet
from geopose_jax.models.dropout import Dropout


def _torch_dense(features: int, name: str, fan_in: int, dtype: Any) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, kernel_init=resnet.torch_default_kernel_init,
                  bias_init=resnet.torch_default_bias_init(fan_in), name=name)


class PoseHead(nn.Module):
  """MLP: (B, ...) flattened -> (B, output_dim). Dropout uses the 'dropout' rng stream."""
  hidden_dim: int = 2048
  output_dim: int = 51
  num_hidden: int = 2
  dropout: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, latent: jax.Array, train: bool = False) -> jax.Array:
    x = latent.reshape(latent.shape[0], -1).astype(self.dtype)
    dense = functools.partial(_torch_dense, dtype=self.dtype)
    bn_init = resnet.torch04_batch_norm_scale_init
    if self.num_hidden == 0:
      return dense(self.output_dim, "0", x.shape[-1])(x).astype(jnp.float32)
    x = nn.relu(dense(self.hidden_dim, "0", x.shape[-1])(x))
    x = resnet.batch_norm(train, self.dtype, "2", bn_init)(x)
    index = 3
    # As the original: each further hidden layer is [Dropout, Linear, ReLU, BN, Dropout].
    for _ in range(self.num_hidden - 1):
      x = Dropout(self.dropout, deterministic=not train)(x)
      x = nn.relu(dense(self.hidden_dim, str(index + 1), x.shape[-1])(x))
      x = resnet.batch_norm(train, self.dtype, str(index + 3), bn_init)(x)
      x = Dropout(self.dropout, deterministic=not train)(x)
      index += 5
    x = dense(self.output_dim, str(index), x.shape[-1])(x)
    return x.astype(jnp.float32)

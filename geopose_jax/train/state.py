"""The train state most tasks use: parameters, BatchNorm statistics and optimizer state."""

from __future__ import annotations

from typing import Any

import flax
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """One model's trainable state, a pytree the loop can jit, shard and checkpoint.

  `tx` is static (not a leaf): it is rebuilt from the config, never saved. Tasks with two
  players (generator and discriminator) keep one TrainState each inside a dict or their
  own dataclass.
  """
  step: Any
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, params: PyTree, tx: optax.GradientTransformation,
             batch_stats: PyTree | None = None) -> "TrainState":
    return cls(step=0, params=params, batch_stats=batch_stats if batch_stats is not None else {},
               opt_state=tx.init(params), tx=tx)

  def apply_gradients(self, grads: PyTree, batch_stats: PyTree | None = None) -> "TrainState":
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(
        step=self.step + 1,
        params=optax.apply_updates(self.params, updates),
        batch_stats=self.batch_stats if batch_stats is None else batch_stats,
        opt_state=opt_state)

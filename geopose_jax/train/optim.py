"""The one optimizer factory: `make_optimizer(config.optim, params)`.

Every task's config has the same `optim` keys (`configs/common.optim_config`):

    lr            peak learning rate
    b1, b2        Adam's moment decays
    weight_decay  > 0: decoupled weight decay (AdamW)
    amsgrad       AMSGrad's running maximum of the second moment (RIE's setting)
    lr_decay      per-epoch multiplicative decay (1.0: constant); needs `steps_per_epoch`
    frozen        parameter path patterns (regular expressions over '/'-joined paths, as
                  big_vision's `config.schedule`) whose leaves get a zero update and no
                  optimizer moments

Tasks with a second player (a discriminator) name its optimizer `config.disc_optim`, with
the same keys.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import ml_collections
import optax

from geopose_jax.errors import ConfigError

PyTree = Any
TRAINED, FROZEN = "trained", "frozen"


def parameter_paths(params: PyTree) -> list[str]:
  """'/'-joined paths of every leaf, in `jax.tree` leaf order."""
  paths = jax.tree_util.tree_flatten_with_path(params)[0]
  return ["/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
          for path, _ in paths]


def frozen_labels(params: PyTree, patterns: Sequence[str], key: str = "optim.frozen"
                  ) -> PyTree:
  """`params`-shaped tree of 'frozen' (path fully matches a pattern) or 'trained'.

  Every pattern must match at least one parameter, so a misspelt name fails instead of
  silently training everything.
  """
  names = parameter_paths(params)
  compiled = []
  for pattern in patterns:
    try:
      compiled.append(re.compile(pattern))
    except re.error as e:
      raise ConfigError(f"config.{key}: {pattern!r} is not a regular expression ({e})") from None
  for pattern, regex in zip(patterns, compiled):
    if not any(regex.fullmatch(n) for n in names):
      groups = sorted({"/".join(n.split("/")[:2]) for n in names})
      raise ConfigError(f"config.{key}: {pattern!r} matches no parameter; parameter groups "
                        f"are {groups} (patterns are regular expressions over the whole "
                        "path, e.g. 'encoder/layer1/.*')")
  labels = [FROZEN if any(r.fullmatch(n) for r in compiled) else TRAINED for n in names]
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), labels)


def learning_rate_schedule(optim: ml_collections.ConfigDict,
                           steps_per_epoch: int | None = None) -> optax.Schedule:
  """lr x lr_decay ** (completed epochs), or the constant lr."""
  decay = float(optim.lr_decay)
  if decay == 1.0:
    return optax.constant_schedule(float(optim.lr))
  if not steps_per_epoch:
    raise ConfigError(f"config.optim.lr_decay={decay} decays per epoch, which this task does "
                      "not define; set it to 1.0")
  return optax.exponential_decay(float(optim.lr), transition_steps=int(steps_per_epoch),
                                 decay_rate=decay, staircase=True)


def check_optim_config(optim: ml_collections.ConfigDict, key: str = "optim") -> None:
  if not float(optim.lr) > 0:
    raise ConfigError(f"config.{key}.lr={optim.lr} must be > 0")
  for name in ("b1", "b2"):
    if not 0.0 <= float(optim[name]) < 1.0:
      raise ConfigError(f"config.{key}.{name}={optim[name]} must be in [0, 1)")
  if float(optim.weight_decay) < 0:
    raise ConfigError(f"config.{key}.weight_decay={optim.weight_decay} must be >= 0")
  if not 0.0 < float(optim.lr_decay) <= 1.0:
    raise ConfigError(f"config.{key}.lr_decay={optim.lr_decay} must be in (0, 1]")


def make_optimizer(optim: ml_collections.ConfigDict, params: PyTree, *,
                   steps_per_epoch: int | None = None, key: str = "optim"
                   ) -> optax.GradientTransformation:
  """Adam (AdamW with weight decay, AMSGrad on request) with frozen leaves.

  Args:
    optim: `config.optim` (or `config.disc_optim`), keys as in the module docstring.
    params: the parameters (arrays or ShapeDtypeStructs) the optimizer will update.
    steps_per_epoch: for `lr_decay` < 1.
    key: the config key named in errors.
  """
  check_optim_config(optim, key)
  schedule = learning_rate_schedule(optim, steps_per_epoch)
  b1, b2 = float(optim.b1), float(optim.b2)
  moments = (optax.scale_by_amsgrad(b1=b1, b2=b2) if optim.amsgrad
             else optax.scale_by_adam(b1=b1, b2=b2))
  parts = [moments]
  if float(optim.weight_decay):
    parts.append(optax.add_decayed_weights(float(optim.weight_decay)))
  parts.append(optax.scale_by_learning_rate(schedule))
  tx = optax.chain(*parts)
  frozen = tuple(optim.frozen or ())
  if not frozen:
    return tx
  return optax.multi_transform({TRAINED: tx, FROZEN: optax.set_to_zero()},
                               frozen_labels(params, frozen, f"{key}.frozen"))

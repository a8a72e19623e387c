"""Up-front checks of the config values the loop relies on, each naming its key.

Run before anything is built or written, so a value that cannot work (a zero batch, a
negative step count) stops the run with one line instead of a deep error minutes later.
The hints the loop prints name keys through `lr_keys`, read from the config itself, so a
hint never names a key the task does not have.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from geopose_jax.errors import ConfigError

# key -> (smallest accepted value, what the key means when it is that small).
_INTEGER_BOUNDS = {
    "train.steps": (0, "0 only evaluates the initial or restored state"),
    "train.batch_size": (1, "the global batch, over all devices"),
    "train.log_every": (1, "steps between metric lines"),
    "train.eval_every": (0, "0 evaluates only at the end"),
    "train.checkpoint_every": (0, "0 saves only at the end"),
    "train.keep_checkpoints": (1, "0 would delete every checkpoint, the final one included"),
    "train.viz_every": (0, "0 draws only at the end"),
    "eval.batch_size": (1, "examples per evaluation batch"),
    "eval.max_examples": (0, "0 evaluates the whole split"),
    "data.num_workers": (0, "0 decodes in the main process"),
    "data.prefetch": (0, "batches each worker keeps ready"),
}


def _lookup(config: ml_collections.ConfigDict, key: str) -> tuple[bool, Any]:
  node = config
  for part in key.split("."):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      return False, None
    node = node[part]
  return True, node


def has_key(config: ml_collections.ConfigDict, key: str) -> bool:
  return _lookup(config, key)[0]


def lr_keys(config: ml_collections.ConfigDict) -> list[str]:
  """The learning-rate keys of this task's config: `lr` / `*_lr` under `optim` and under
  any `*_optim` section (e.g. a discriminator's `disc_optim`)."""
  keys = []
  for section in sorted(config.keys()):
    group = config[section]
    if not (section == "optim" or section.endswith("_optim")):
      continue
    if not isinstance(group, ml_collections.ConfigDict):
      continue
    keys += [f"{section}.{name}" for name in sorted(group.keys())
             if (name == "lr" or name.endswith("_lr")) and isinstance(group[name], (int, float))
             and not isinstance(group[name], bool)]
  return keys


def lr_hint(config: ml_collections.ConfigDict) -> str:
  """The task's learning-rate flags, e.g. '--config.optim.<name>', for messages."""
  keys = lr_keys(config)
  if not keys:
    return "a smaller learning rate"
  return " / ".join(f"--config.{key}" for key in keys)


def _is_integer(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def check_config(config: ml_collections.ConfigDict, mode: str = "train") -> None:
  """Raises ConfigError naming the first key whose value cannot work.

  Args:
    config: a task config (configs/<task>.py get_config()).
    mode: 'train', 'eval' or 'predict'.
  """
  if mode not in ("train", "eval", "predict"):
    raise ConfigError(f"--mode must be 'train', 'eval' or 'predict', got {mode!r}")
  for key, (low, meaning) in _INTEGER_BOUNDS.items():
    present, value = _lookup(config, key)
    if not present:
      continue
    if not _is_integer(value) or value < low:
      raise ConfigError(f"--config.{key}={value!r} is not accepted: give an integer >= {low} "
                        f"({meaning})")
  for key in lr_keys(config):
    value = _lookup(config, key)[1]
    if not (math.isfinite(value) and value > 0):
      raise ConfigError(f"--config.{key}={value!r} is not accepted: a learning rate must be "
                        "a finite number > 0")
  present, restart = _lookup(config, "train.restart")
  if present and not isinstance(restart, bool):
    raise ConfigError(f"--config.train.restart={restart!r}: give True or False")

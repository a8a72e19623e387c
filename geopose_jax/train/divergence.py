"""A loss or state that went NaN/Inf: stop, and leave the workdir resuming from a good step.

A checkpoint at step s is good when its state is finite (checked before saving) and the loss
it produces, logged at step s + 1, is finite. Checkpoints newer than that are moved to
`checkpoints_diverged/`, so relaunching with a smaller learning rate resumes from a good one.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.errors import GeoposeError
from geopose_jax.train import config_checks
from geopose_jax.train.task import Runtime

PyTree = Any


class NonFiniteLossError(GeoposeError, FloatingPointError):
  """The loss became NaN or Inf; the message names the steps and the last good checkpoint."""


DIVERGED_DIR = "checkpoints_diverged"


def diverged(workdir: pathlib.Path) -> list[pathlib.Path]:
  folder = workdir / DIVERGED_DIR
  return sorted(folder.iterdir()) if folder.is_dir() else []


def first_non_finite(host: list[Mapping[str, Any]], first_step: int) -> int | None:
  for offset, metrics in enumerate(host):
    if "loss" in metrics and not np.all(np.isfinite(metrics["loss"])):
      return first_step + offset
  return None


@jax.jit
def all_finite(state: PyTree) -> jax.Array:
  leaves = [x for x in jax.tree.leaves(state)
            if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else True


def stop(config, what: str, bad_step: int, checkpointer, runtime: Runtime) -> None:
  """Raises NonFiniteLossError after setting aside checkpoints that are not known good.

  A checkpoint at step s is good when its state is finite (checked before saving) and the
  loss it produces, logged at step s + 1, is finite. Newer ones go to checkpoints_diverged/
  so that relaunching resumes from a good one.
  """
  checkpointer.wait()
  moved = []
  for step in checkpointer.steps():
    if step >= bad_step - 1:
      target = runtime.workdir / DIVERGED_DIR / str(step)
      if runtime.process_index == 0:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
          target = target.with_name(f"{step}.{time.time():.0f}")
        os.replace(checkpointer.directory / str(step), target)
      moved.append(step)
  if moved:
    checkpointer.reload()
  last_good = checkpointer.latest_step()
  aside = (f" (steps {moved}, which already led to it, were moved to "
           f"{runtime.workdir / DIVERGED_DIR})" if moved else "")
  where = (f"the last good checkpoint is step {last_good} in {checkpointer.directory}{aside}; "
           "relaunching with the same --workdir resumes from it"
           if last_good is not None else f"no good checkpoint was written before it{aside}")
  raise NonFiniteLossError(
      f"{what}; stopping. {where}. Lower {config_checks.lr_hint(config)} or check the input "
      "data.")

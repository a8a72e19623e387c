"""Checkpoints: the train state and the data iterator's position, saved together.

Saving the iterator next to the state (as maxtext does) is what makes a resumed run see
the same data order as an uninterrupted one. Orbax writes each step into a temporary folder
and renames it when complete, so a crash mid-save never leaves a step that reads as whole.
A step that fails to restore anyway (disk trouble, a hand-edited folder) is reported by
name, moved aside into `checkpoints_corrupt/`, and the previous step is used instead; if no
step can be restored the run stops rather than silently starting over.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Any

from absl import logging
import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from geopose_jax.errors import CheckpointError  # re-exported for callers

PyTree = Any
STATE = "state"
DATA = "data"


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
  return pathlib.Path(workdir) / "checkpoints"


class Checkpointer:
  """Saves and restores (state, data iterator) pairs under `workdir/checkpoints`."""

  def __init__(self, workdir: str | os.PathLike, keep: int = 3, async_save: bool = True):
    self.directory = checkpoint_dir(workdir).absolute()
    self.workdir = pathlib.Path(workdir).absolute()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        handler_registry=_handler_registry())

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: PyTree, data_iterator: Any | None = None,
           force: bool = False) -> None:
    """Starts saving `step` (asynchronously); `wait()` or `close()` finishes it."""
    items = {STATE: ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, abstract_state: PyTree, data_iterator: Any | None = None
              ) -> tuple[int, PyTree] | None:
    """Restores the newest usable step into `abstract_state`'s structure and shardings.

    Returns (step, state), or None when there is no checkpoint at all. A step whose state
    fails to restore is logged with the reason, moved aside, and the next older step is
    tried. A data position that does not fit the current pipeline (other worker count,
    other dataset) is not corruption: the run stops and says so.
    """
    failures = []
    for step in reversed(self.steps()):
      try:
        restored = self._manager.restore(
            step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract_state)}))
      except Exception as e:  # pylint: disable=broad-except
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        failures.append((step, reason))
        moved = self._move_aside(step)
        logging.error("Checkpoint step %d in %s cannot be restored (%s); moved it to %s and "
                      "trying the previous step.", step, self.directory, reason, moved)
        print(f"WARNING: checkpoint {self.directory / str(step)} is corrupt ({reason}); "
              f"moved to {moved}; resuming from an earlier step.", flush=True)
        continue
      if data_iterator is not None:
        self._restore_data_position(step, data_iterator)
      return step, restored[STATE]
    if failures:
      listed = "; ".join(f"step {s}: {r}" for s, r in failures)
      raise CheckpointError(
          f"No checkpoint in {self.directory} could be restored ({listed}). The unreadable "
          f"steps were moved to {self.workdir / 'checkpoints_corrupt'}. Refusing to start "
          "from scratch over them: use a new --workdir, or delete that folder to start over.")
    return None

  def _restore_data_position(self, step: int, data_iterator: Any) -> None:
    if not (self.directory / str(step) / DATA).exists():
      print(f"WARNING: checkpoint step {step} holds no data position; the data order after "
            "resuming differs from an uninterrupted run.", flush=True)
      return
    try:
      self._manager.restore(step, args=ocp.args.Composite(
          **{DATA: grain.checkpoint.CheckpointRestore(data_iterator)}))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"the data position saved in {self.directory / str(step) / DATA} does not fit this "
          f"run's data pipeline ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
          "Resume with the data settings of the saved run (config.data.*, the number of hosts), "
          "or start a new --workdir with --config.init_from pointing at this one.") from e

  def _move_aside(self, step: int) -> pathlib.Path:
    corrupt = self.workdir / "checkpoints_corrupt"
    corrupt.mkdir(parents=True, exist_ok=True)
    target = corrupt / str(step)
    suffix = 0
    while target.exists():
      suffix += 1
      target = corrupt / f"{step}.{suffix}"
    if jax.process_index() == 0:
      shutil.move(str(self.directory / str(step)), str(target))
    # Reopen so the manager forgets the moved step.
    self._manager.reload()
    return target

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _handler_registry():
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  registry.add(STATE, ocp.args.StandardSave, ocp.StandardCheckpointHandler)
  registry.add(STATE, ocp.args.StandardRestore, ocp.StandardCheckpointHandler)
  registry.add(DATA, grain.checkpoint.CheckpointSave, grain.checkpoint.CheckpointHandler)
  registry.add(DATA, grain.checkpoint.CheckpointRestore, grain.checkpoint.CheckpointHandler)
  return registry


def _resolve_checkpoint_path(path: str | os.PathLike) -> tuple[pathlib.Path, int]:
  """A workdir, its checkpoints/ folder or one step folder -> (step folder, step)."""
  path = pathlib.Path(path).expanduser().absolute()
  if not path.exists():
    raise FileNotFoundError(f"init_from: {path} does not exist; give a run's workdir "
                            "(the folder holding checkpoints/) or one of its step folders")
  if (path / STATE).is_dir() and path.name.isdigit():
    return path, int(path.name)
  root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
  steps = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / STATE).is_dir())
  if not steps:
    raise FileNotFoundError(f"init_from: no checkpoint under {root}; train that run first "
                            "or point to a folder that holds checkpoints/<step>/state")
  return root / str(steps[-1]), steps[-1]


def load_state_dict(path: str | os.PathLike) -> tuple[dict, int]:
  """Reads another run's latest checkpoint as nested dicts of numpy arrays.

  Args:
    path: a workdir, its `checkpoints/` folder, or a step folder.
  Returns:
    (state, step): the saved train-state pytree as plain dicts (e.g. state["params"]) and
    the step it was saved at. No target structure is needed, so a task can take the parts
    it wants (an encoder, a prior) from a run of another task.
  """
  step_dir, step = _resolve_checkpoint_path(path)
  checkpointer = ocp.StandardCheckpointer()
  try:
    metadata = checkpointer.metadata(step_dir / STATE)
    tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata
    abstract = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype,
                                       sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
        tree)
    restored = checkpointer.restore(step_dir / STATE, abstract)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"cannot read checkpoint {step_dir / STATE}: {type(e).__name__}: {e}") from e
  return jax.tree.map(np.asarray, restored), step

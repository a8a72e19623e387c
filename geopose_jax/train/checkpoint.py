"""Checkpoints: the train state and the data iterator's position, saved together.

Saving the iterator next to the state (as maxtext does) is what makes a resumed run see
the same data order as an uninterrupted one. Orbax writes each step into a temporary folder
and renames it when complete, so a crash mid-save never leaves a step that reads as whole;
leftover temporary folders are removed when a run opens its checkpoints for writing.

A step that fails to restore is one of two things, told apart by its saved metadata:
- incompatible: the files read fine but hold another tree (a changed model key, another
  task's run). The run stops naming the differing keys and touches nothing.
- corrupt: the metadata, an array chunk or the data position cannot be read. The step is
  reported, moved aside into `checkpoints_corrupt/` (never in read-only use) and the previous
  step is tried; if no step can be restored the run stops rather than silently starting over.
"""

from __future__ import annotations

import json
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
from geopose_jax.train.partial_saves import remove_temporary_folders  # re-exported

PyTree = Any
STATE = "state"
DATA = "data"
CORRUPT_DIR = "checkpoints_corrupt"
_MAX_LISTED = 4


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
  return pathlib.Path(workdir) / "checkpoints"


def corrupt_dir(workdir: str | os.PathLike) -> pathlib.Path:
  return pathlib.Path(workdir) / CORRUPT_DIR


def short_reason(error: BaseException, limit: int = 160) -> str:
  """'Kind: first line of the message', cut to `limit` characters (Orbax and tensorstore
  messages carry whole specs)."""
  text = str(error).strip().splitlines()[0] if str(error).strip() else ""
  if len(text) > limit:
    text = text[:limit - 3] + "..."
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _path_name(path) -> str:
  names = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        names.append(str(getattr(key, attr)))
        break
    else:
      names.append(str(key))
  return "/".join(names)


def _leaf_table(tree: PyTree) -> dict[str, tuple]:
  """{'params/Dense_0/kernel': (shape, dtype name)} of the array leaves of a tree."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path_name(path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
          for path, leaf in leaves if hasattr(leaf, "shape")}


def tree_differences(saved: PyTree, wanted: PyTree) -> list[str]:
  """Readable differences between a saved tree's metadata and the current abstract state."""
  have, want = _leaf_table(saved), _leaf_table(wanted)
  # Parameters first: optimizer moments repeat the same differences.
  order = lambda keys: sorted(keys, key=lambda k: ("opt_state" in k, k))
  out = [f"{k} has shape {have[k][0]} in the checkpoint, {want[k][0]} now"
         for k in order(set(have) & set(want)) if have[k][0] != want[k][0]]
  out += [f"{k} is not in the checkpoint" for k in order(set(want) - set(have))]
  out += [f"{k} is only in the checkpoint" for k in order(set(have) - set(want))]
  return out


class _Corrupt(Exception):
  """A step that cannot be read (as opposed to one that does not fit)."""


class Checkpointer:
  """Saves and restores (state, data iterator) pairs under `workdir/checkpoints`.

  `read_only=True` (evaluation of a finished or archived run) creates, deletes and moves
  nothing.
  """

  def __init__(self, workdir: str | os.PathLike, keep: int = 3, async_save: bool = True,
               read_only: bool = False):
    if int(keep) < 1:
      raise CheckpointError(f"keep_checkpoints={keep} would delete every checkpoint, the final "
                            "one included; set --config.train.keep_checkpoints to 1 or more")
    self.directory = checkpoint_dir(workdir).absolute()
    self.workdir = pathlib.Path(workdir).absolute()
    self.read_only = read_only
    if not read_only and jax.process_index() == 0:
      for path in remove_temporary_folders(self.directory):
        print(f"Removed {path.name}, left by an interrupted save.", flush=True)
    if read_only:
      options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                             enable_async_checkpointing=False)
    else:
      options = ocp.CheckpointManagerOptions(
          max_to_keep=int(keep), create=True, enable_async_checkpointing=async_save)
    self._manager = None
    if not read_only or self.directory.is_dir():
      self._manager = ocp.CheckpointManager(
          self.directory, options=options, handler_registry=_handler_registry())

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps()) if self._manager is not None else []

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def quarantined(self) -> list[pathlib.Path]:
    """Steps moved aside earlier as unreadable."""
    folder = corrupt_dir(self.workdir)
    return sorted(folder.iterdir()) if folder.is_dir() else []

  def save(self, step: int, state: PyTree, data_iterator: Any | None = None,
           force: bool = False) -> None:
    """Starts saving `step` (asynchronously); `wait()` or `close()` finishes it."""
    if self.read_only:
      raise CheckpointError(f"{self.directory} was opened read-only; cannot save step {step}")
    items = {STATE: ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, abstract_state: PyTree, data_iterator: Any | None = None
              ) -> tuple[int, PyTree] | None:
    """Restores the newest usable step into `abstract_state`'s structure and shardings.

    Returns (step, state), or None when there is no checkpoint at all.

    Raises:
      CheckpointError: a step does not fit the current config (names the differing keys;
        nothing is touched), its data position does not fit the pipeline, or every step is
        unreadable (those were moved aside unless read-only).
    """
    failures = []
    for step in reversed(self.steps()):
      try:
        state = self._restore_state(step, abstract_state)
        if data_iterator is not None:
          self._restore_data_position(step, data_iterator)
      except _Corrupt as e:
        reason = str(e)
        failures.append((step, reason))
        where = self.directory / str(step)
        if self.read_only:
          logging.error("Checkpoint %s cannot be read (%s).", where, reason)
          print(f"WARNING: checkpoint {where} is corrupt ({reason}); trying an earlier step.",
                flush=True)
        else:
          moved = self._move_aside(step)
          logging.error("Checkpoint %s cannot be read (%s); moved to %s.", where, reason, moved)
          print(f"WARNING: checkpoint {where} is corrupt ({reason}); moved to {moved}; "
                "resuming from an earlier step.", flush=True)
        continue
      return step, state
    if failures:
      listed = "; ".join(f"step {s}: {r}" for s, r in failures[:_MAX_LISTED])
      where = (f"they are still in {self.directory}" if self.read_only else
               f"the unreadable steps were moved to {corrupt_dir(self.workdir)}")
      raise CheckpointError(
          f"No checkpoint in {self.directory} could be restored ({listed}); {where}. "
          "Refusing to start from scratch over them: use a new --workdir, or pass "
          "--config.train.restart=True to train from step 0 here.")
    return None

  def _restore_state(self, step: int, abstract_state: PyTree) -> PyTree:
    step_dir = self.directory / str(step)
    try:
      metadata = ocp.StandardCheckpointer().metadata(step_dir / STATE)
      saved = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata
    except Exception as e:  # pylint: disable=broad-except
      raise _Corrupt(f"unreadable metadata, {short_reason(e)}") from e
    differences = tree_differences(saved, abstract_state)
    if differences:
      shown = "; ".join(differences[:_MAX_LISTED])
      more = f" (and {len(differences) - _MAX_LISTED} more)" if len(differences) > _MAX_LISTED else ""
      raise CheckpointError(
          f"checkpoint {step_dir} does not fit this config: {shown}{more}. Nothing was changed. "
          "Resume with the config the run was trained with (its config.json), or start a new "
          "--workdir.")
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract_state)}))
    except Exception as e:  # pylint: disable=broad-except
      raise _Corrupt(short_reason(e)) from e
    return restored[STATE]

  def _restore_data_position(self, step: int, data_iterator: Any) -> None:
    data_dir = self.directory / str(step) / DATA
    if not data_dir.exists():
      print(f"WARNING: checkpoint step {step} holds no data position; the data order after "
            "resuming differs from an uninterrupted run.", flush=True)
      return
    for path in sorted(data_dir.glob("process_*.json")):
      try:
        json.loads(path.read_text())
      except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _Corrupt(f"data position {path.name} unreadable, {short_reason(e)}") from e
    try:
      self._manager.restore(step, args=ocp.args.Composite(
          **{DATA: grain.checkpoint.CheckpointRestore(data_iterator)}))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"the data position saved in {data_dir} does not fit this run's data pipeline "
          f"({short_reason(e)}). Resume with the data settings of the saved run "
          "(config.data.*, the number of hosts), or start a new --workdir.") from e

  def _move_aside(self, step: int) -> pathlib.Path:
    corrupt = corrupt_dir(self.workdir)
    target = corrupt / str(step)
    suffix = 0
    while target.exists():
      suffix += 1
      target = corrupt / f"{step}.{suffix}"
    if jax.process_index() == 0:
      corrupt.mkdir(parents=True, exist_ok=True)
      shutil.move(str(self.directory / str(step)), str(target))
    # Reopen so the manager forgets the moved step.
    self._manager.reload()
    return target

  def reload(self) -> None:
    """Re-reads the step list after folders were moved by hand or by the loop."""
    if self._manager is not None:
      self._manager.reload()

  def wait(self) -> None:
    if self._manager is not None:
      self._manager.wait_until_finished()

  def close(self) -> None:
    if self._manager is not None:
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
  given_step = pathlib.Path(path).expanduser().absolute() == step_dir
  try:
    return _read_state_dict(step_dir), step
  except CheckpointError as error:
    earlier = sorted(int(p.name) for p in step_dir.parent.iterdir()
                     if p.name.isdigit() and int(p.name) < step and (p / STATE).is_dir())
    if given_step or not earlier:
      raise
    # As the loop's own restore does: an unreadable newest step (a save cut short) gives way
    # to the previous one, said aloud.
    message = f"{error}; reading the previous checkpoint, step {earlier[-1]}, instead"
    logging.warning("%s", message)
    print(message, flush=True)
    return load_state_dict(step_dir.parent / str(earlier[-1]))


def _read_state_dict(step_dir: pathlib.Path) -> dict:
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
  return jax.tree.map(np.asarray, restored)

"""Starting a run from another one: `--config.init_from=PATH`, applied after `init`.

A task says what it accepts when it is built (`resolve`), which checks PATH before any
dataset is read: a missing path, a run of a task it cannot start from, a folder that is not
a run or a file of a kind it does not read each stop with one line naming PATH and what is
accepted. The weights themselves are put into the freshly initialised state by `merge`,
outside `jax.jit` (a closed-over checkpoint would be baked into the compiled program as
constants), and only on a fresh start: a run that resumes from its own checkpoint ignores
init_from.

Accepted sources, by task (each task's `build` lists its own):
  - the workdir of a compatible run (its newest checkpoint; `merge` checks every taken leaf
    against the fresh state and takes only the parts named by `only`);
  - the originals' files: Rhodin et al.'s `network_best_val_t1.pth` (nvs, nvs_pose), RIE's
    and VideoPose3D's `.bin` (rie).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any, Mapping, Sequence

import flax
import jax
import numpy as np

from geopose_jax.errors import InputError
from geopose_jax.train import checkpoint as checkpoint_lib
from geopose_jax.train import optim

PyTree = Any
MAX_LISTED = 5


@dataclasses.dataclass(frozen=True)
class Source:
  """What `--config.init_from` points at.

  Attributes:
    path: as given, expanded.
    kind: 'run' (a workdir, its checkpoints/ folder or a step folder) or 'file'.
    task: a run's task (from its config.json); None for a file.
    run_config: a run's saved config (config.json) as a dict; None for a file.
  """
  path: pathlib.Path
  kind: str
  task: str | None = None
  run_config: dict | None = None


def find_run_config(path: pathlib.Path) -> pathlib.Path | None:
  """config.json of the run holding `path` (a workdir, checkpoints/ or a step folder)."""
  for folder in (path, *path.parents[:3]):
    if (folder / "config.json").is_file():
      return folder / "config.json"
  return None


def _accepted(task: str, runs: Sequence[str], files: Sequence[str]) -> str:
  kinds = [f"the workdir of a {' or '.join(runs)} run"] if runs else []
  kinds += list(files)
  return (f"{task} accepts " + "; or ".join(kinds)) if kinds else (
      f"{task} does not start from another run: leave --config.init_from empty")


def resolve(path: str, *, task: str, runs: Sequence[str] = (),
            files: Sequence[str] = (), file_suffixes: Sequence[str] = (),
            key: str = "init_from") -> Source | None:
  """Checks `config.init_from` against what `task` accepts; None when it is empty.

  Args:
    path: the config value.
    task: the task's name (for messages).
    runs: the tasks whose runs it can start from.
    files: descriptions of the original files it reads (for messages).
    file_suffixes: the suffixes of those files (e.g. '.pth', '.bin').
    key: the config key that holds `path` (for messages), e.g. 'prior_from'.

  Raises:
    InputError: one line naming the path and what `task` accepts.
  """
  if not path:
    return None
  given = pathlib.Path(path).expanduser()
  accepted = _accepted(task, runs, files)
  if not runs and not files:
    raise InputError(f"--config.{key}={path}: {accepted}")
  if not given.exists():
    raise InputError(f"--config.{key}={path}: no such file or folder; {accepted}")
  if given.is_file():
    if not files or given.suffix not in file_suffixes:
      raise InputError(f"--config.{key}={path}: not a file this task reads; {accepted}")
    return Source(path=given, kind="file")
  config_path = find_run_config(given)
  if config_path is None:
    raise InputError(f"--config.{key}={path}: not the workdir of a geopose_jax run (no "
                     f"config.json there or above); {accepted}")
  try:
    run_config = json.loads(config_path.read_text())
  except (OSError, ValueError) as e:
    raise InputError(f"--config.{key}={path}: cannot read {config_path} "
                     f"({type(e).__name__}); {accepted}") from None
  run_task = run_config.get("task")
  if run_task not in runs:
    raise InputError(f"--config.{key}={path} is a {run_task!r} run; {accepted}")
  return Source(path=given, kind="run", task=run_task, run_config=run_config)


def load_run(source: Source) -> tuple[dict, int]:
  """(the run's newest saved state as nested dicts of numpy arrays, its step)."""
  try:
    return checkpoint_lib.load_state_dict(source.path)
  except FileNotFoundError as e:
    raise InputError(f"--config.init_from={source.path}: {e}") from None
  except checkpoint_lib.CheckpointError as e:
    raise InputError(f"--config.init_from={source.path}: the checkpoint cannot be read "
                     f"({str(e).splitlines()[0][:300]})") from None


def flatten(tree: Mapping) -> dict[str, Any]:
  """Nested dicts -> {'a/b/c': leaf}."""
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(dict(tree)), sep="/")


def merge(fresh: PyTree, loaded: Mapping, *, source: str, into: str = "", take: str = "",
          only: Sequence[str] = (".*",)) -> PyTree:
  """`fresh` with its leaves under `into` replaced by `loaded`'s leaves under `take`.

  Args:
    fresh: the initialised state (any pytree; leaves are jax arrays, replicated).
    loaded: nested dicts of numpy arrays (a saved state, or converted original weights).
    source: named in errors.
    into: '/'-joined path prefix in `fresh` ('' for the whole state), e.g. 'params/nvs'.
    take: the matching prefix in `loaded`, e.g. 'params'.
    only: regular expressions over the path below `into`; only matching leaves are taken
      (e.g. ('params/local_encoder_.*',)); something must be taken.

  Every taken leaf must exist in `loaded` with the same shape; otherwise one error lists
  the first differing leaves and how many differ.
  """
  have = flatten(loaded)
  leaves, treedef = jax.tree_util.tree_flatten(fresh)
  names = optim.parameter_paths(fresh)
  prefix = f"{into}/" if into else ""
  patterns = [re.compile(p) for p in only]
  problems, taken, out = [], 0, []
  for name, leaf in zip(names, leaves):
    relative = name[len(prefix):] if name.startswith(prefix) else None
    if relative is None or not any(p.fullmatch(relative) for p in patterns):
      out.append(leaf)
      continue
    key = f"{take}/{relative}" if take else relative
    if key not in have:
      problems.append(f"{key} missing")
      out.append(leaf)
    elif tuple(np.shape(have[key])) != tuple(np.shape(leaf)):
      problems.append(f"{key} is {tuple(np.shape(have[key]))}, the model has "
                      f"{tuple(np.shape(leaf))}")
      out.append(leaf)
    else:
      value = np.asarray(have[key], dtype=leaf.dtype)
      sharding = getattr(leaf, "sharding", None)
      out.append(jax.device_put(value, sharding) if sharding is not None else value)
      taken += 1
  if problems:
    listed = "; ".join(problems[:MAX_LISTED])
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    raise InputError(f"init_from {source}: {len(problems)} of its leaves do not fit this "
                     f"model: {listed}{more}; use the model settings of the run it came from")
  if not taken:
    raise InputError(f"init_from {source}: nothing of {list(only)} under "
                     f"{into or 'the state'} to take")
  return jax.tree_util.tree_unflatten(treedef, out)


def adopt_config(config, source: Source | None, keys: Sequence[str]) -> list[str]:
  """Copies `keys` ('model.net', ...) of a run source's saved config into `config`.

  Called by a task's `resolve_config` (config unlocked), so that a task built on a run (a
  frozen encoder) uses that run's network and config.json says so. Returns the keys that
  changed.
  """
  if source is None or source.kind != "run":
    return []
  changed = []
  for key in keys:
    saved: Any = source.run_config
    for part in key.split("."):
      saved = saved.get(part) if isinstance(saved, dict) else None
    if saved is None:
      continue
    node, leaf = config, key.split(".")
    for part in leaf[:-1]:
      node = node[part]
    current = node[leaf[-1]]
    current_plain = current.to_dict() if hasattr(current, "to_dict") else current
    if json.loads(json.dumps(current_plain, default=list)) != saved:
      node[leaf[-1]] = type(current)(saved) if hasattr(current, "to_dict") else saved
      changed.append(key)
  return changed


"""`--mode=predict`: a trained model on a user's 2D keypoints or images -> 3D poses, BVH,
MP4, GIF.

    python launch.py --config=configs/lifter.py:demo --workdir=runs/lifter_demo \
        --mode=predict --config.predict.input=keypoints.json --config.predict.output=out
    python launch.py --config=configs/nvs_pose.py:demo --workdir=runs/nvs_pose_demo \
        --mode=predict --config.predict.input=video.mp4 --config.predict.boxes=boxes.json \
        --config.predict.output=out

A task takes one kind of input: 2D keypoints (`Task.predict`: lifter, rie) or images, a
video or a folder of frames (`Task.predict_images`: nvs_pose, smpl; see
train/image_prediction.py, which follows the same steps on frames; the training loop
picks the module by `input_kind`). In order, each step
checked before the next, so that a mistake stops the run with one line and leaves nothing
in the output folder:
  1. the task predicts, `predict.input` and `predict.output` are given, the output folder
     is new (or empty), and the input is of the kind the task takes;
  2. the workdir's run is of this config's task (its config.json);
  3. the input is read (`keypoints.read_keypoints`): every sequence it holds, as H36M-17;
  4. the weights: the workdir's newest checkpoint, checked leaf by leaf against the model
     the config builds (a checkpoint that does not fit is reported, never moved aside); with
     no checkpoint, `--config.init_from` through the task's init-from step;
  5. per sequence, the task's predict (which streams its batches through
     `predict_in_chunks`) and `export.write_sequence`, all inside a temporary folder that is
     renamed to `predict.output` when every sequence is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Any, Callable, Mapping

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

from geopose_jax import export
from geopose_jax import images
from geopose_jax import keypoints
from geopose_jax.errors import CheckpointError, ConfigError, InputError
from geopose_jax.train import checkpoint as checkpoint_lib
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train.task import Runtime, Task

PyTree = Any
# Only the weights are taken from a checkpoint (never the optimizer's state): a task's state
# is one TrainState or a dict of them ('lifter', 'adapter', ...).
WEIGHT_PATTERNS = (r"(?:[^/]+/)?(?:params|batch_stats)/.*",)


# --------------------------------------------------------------------------- streaming
def predict_in_chunks(predict_batch: Callable[[np.ndarray], np.ndarray], num_items: int,
                      make_batch: Callable[[np.ndarray], np.ndarray], *, batch_size: int,
                      num_devices: int = 1, progress: bool = False,
                      desc: str = "predict") -> np.ndarray:
  """Predicts `num_items` items in batches, holding one batch of inputs at a time.

  As `evaluation.evaluate_sequences` does: every batch has `batch_size` items but the last,
  which is padded (repeating its last item) to a multiple of `num_devices`, so there are at
  most two compiled shapes and no work on padding beyond the device count.

  Args:
    predict_batch: `(B, ...)` inputs -> `(B, ...)` numpy outputs, or a dict of them.
    num_items: N.
    make_batch: `(b,)` int item indices -> `(b, ...)` inputs (a slice of frames, the
      temporal windows of those frames, ...).
    batch_size: B, a multiple of `num_devices`.
    num_devices: the device count the batch is sharded over.
    progress: show a progress bar.

  Returns:
    `(N, ...)` the outputs in item order (a dict of them for dict outputs).
  """
  if num_items < 1:
    raise InputError("nothing to predict: the sequence has zero frames")
  if batch_size < 1 or batch_size % num_devices:
    raise ConfigError(f"--config.eval.batch_size={batch_size} must be a positive multiple "
                      f"of the {num_devices} devices")
  out = None
  with tqdm.tqdm(total=num_items, desc=desc, unit="frame", leave=False, disable=not progress,
                 dynamic_ncols=True) as bar:
    for start in range(0, num_items, batch_size):
      indices = np.arange(start, min(start + batch_size, num_items))
      inputs = np.asarray(make_batch(indices))
      count = len(indices)
      padded = -(-count // num_devices) * num_devices
      if padded != count:
        inputs = np.concatenate([inputs, np.repeat(inputs[-1:], padded - count, axis=0)])
      result = predict_batch(inputs)
      named = result if isinstance(result, Mapping) else {None: result}
      named = {k: np.asarray(v)[:count] for k, v in named.items()}
      if out is None:
        out = {k: np.empty((num_items,) + v.shape[1:], v.dtype) for k, v in named.items()}
      for key, value in named.items():
        out[key][start:start + count] = value
      bar.update(count)
  return out if isinstance(result, Mapping) else out[None]


# --------------------------------------------------------------------------- checks
KEYPOINT_TASKS = "lifter (and configs/lifter.py:adapter), rie (and configs/rie.py:tcn)"
IMAGE_TASKS = "nvs_pose, smpl"


def input_kind(task: Task) -> str:
  """'keypoints' or 'images': what the task predicts from."""
  return "images" if task.predict is None and task.predict_images is not None else "keypoints"


def check_request(config: ml_collections.ConfigDict, task: Task) -> None:
  """The task predicts, input and output are given, the output folder is new or empty, and
  the input is of the kind the task takes."""
  if (task.predict is None and task.predict_images is None) or "predict" not in config:
    raise ConfigError(f"--mode=predict: task {config.task!r} does not predict; the tasks "
                      f"that do: from 2D keypoints {KEYPOINT_TASKS}; from a video or "
                      f"frames {IMAGE_TASKS}")
  p = config.predict
  kind = input_kind(task)
  if not p.input:
    raise ConfigError("--mode=predict needs --config.predict.input=PATH: " + (
        "a video file or a folder of frames (docs/IMAGE_INPUT.md)" if kind == "images" else
        "a keypoint file or OpenPose folder (formats: docs/KEYPOINT_FORMATS.md)"))
  check_input_kind(config.task, kind, os.path.expanduser(p.input))
  if kind == "images" and not p.boxes:
    raise ConfigError("--mode=predict on images needs --config.predict.boxes=FILE: the "
                      "person's box in each frame, a box file or a keypoint file of the "
                      "frames (docs/IMAGE_INPUT.md)")
  if not p.output:
    raise ConfigError("--mode=predict needs --config.predict.output=DIR: a new folder for "
                      "the 3D poses, BVH, MP4 and GIF")
  out = os.path.abspath(os.path.expanduser(p.output))
  if os.path.exists(out) and not (os.path.isdir(out) and not os.listdir(out)):
    raise InputError(f"--config.predict.output={p.output} exists and is not an empty "
                     "folder; choose a new folder or remove it")


def check_input_kind(task_name: str, kind: str, path: str) -> None:
  """One line when `path` is not the kind of input the task predicts from."""
  if not os.path.exists(path):
    return   # the reader of the task's kind says what is missing
  if kind == "keypoints" and images.is_image_input(path):
    raise InputError(f"task {task_name!r} predicts from 2D keypoints, and "
                     f"--config.predict.input={path} is a video or a folder of images; "
                     "give a keypoint file (docs/KEYPOINT_FORMATS.md), or use a task that "
                     f"predicts from images ({IMAGE_TASKS})")
  holds_json = os.path.isdir(path) and any(n.endswith(".json") for n in os.listdir(path))
  if kind == "images" and not images.is_image_input(path) and (
      holds_json or path.lower().endswith((".json", ".npz", ".npy", ".csv"))):
    raise InputError(f"task {task_name!r} predicts from images, and "
                     f"--config.predict.input={path} is a keypoint file without the frames; "
                     "give the video or a folder of its frames as --config.predict.input "
                     "and the keypoint file as --config.predict.boxes (docs/IMAGE_INPUT.md)")


def check_run_task(config: ml_collections.ConfigDict, workdir: os.PathLike) -> None:
  """The workdir's run (its config.json) is of `config.task`; else one line saying which
  config to use."""
  path = os.path.join(os.fspath(workdir), "config.json")
  if not os.path.isfile(path):
    return
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f).get("task")
  except (OSError, ValueError, AttributeError) as e:
    raise InputError(f"{path}: cannot read the run's config ({type(e).__name__}); "
                     "expected the config.json a training run writes") from None
  if saved != config.task:
    raise InputError(f"--workdir={workdir} holds a {saved!r} run, not a {config.task!r} "
                     f"one: predict with that run's config (configs/{saved}.py, with the "
                     "variant it trained with) or point --workdir at a "
                     f"{config.task!r} run")


def read_input(config: ml_collections.ConfigDict) -> list[keypoints.KeypointSequence]:
  """Every sequence of `predict.input`, with unique names (a repeated name gets '_2', ...)."""
  p = config.predict
  sequences = keypoints.read_keypoints(
      os.path.expanduser(p.input), format=p.format or None, layout=p.layout or None,
      track_id=None if int(p.track_id) < 0 else int(p.track_id),
      width=int(p.width) or None, height=int(p.height) or None,
      min_confidence=float(p.min_confidence))
  if not sequences:
    raise InputError(f"{p.input}: holds no sequence of keypoints")
  seen: dict[str, int] = {}
  named = []
  for seq in sequences:
    base = str(seq.name).replace(os.sep, "_") or "sequence"
    seen[base] = seen.get(base, 0) + 1
    name = base if seen[base] == 1 else f"{base}_{seen[base]}"
    named.append(seq if name == seq.name else dataclasses.replace(seq, name=name))
  return named


RUN_SOURCE_KEYS = ("init_from", "prior_from")


def adopt_run_sources(config: ml_collections.ConfigDict, workdir: os.PathLike) -> list[str]:
  """Fills an empty `init_from` / `prior_from` from the workdir run's config.json.

  A task built on another run (nvs_pose and smpl on an nvs run) needs it to build its model
  (the network's settings come from that run), even when the weights come from the
  workdir's own checkpoint; the run already names it. Returns the keys taken.
  """
  path = os.path.join(os.fspath(workdir), "config.json")
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, ValueError):
    return []           # no run here, or check_run_task reports the unreadable file
  if not isinstance(saved, dict) or saved.get("task") != config.task:
    return []
  taken = []
  for key in RUN_SOURCE_KEYS:
    if key in config and not config[key] and saved.get(key):
      config[key] = str(saved[key])
      taken.append(key)
      logging.info("predict: --config.%s=%s, as the run in %s", key, saved[key], workdir)
  return taken


# --------------------------------------------------------------------------- weights
def _fresh_state(config: ml_collections.ConfigDict, task: Task, runtime: Runtime) -> PyTree:
  init_rng = jax.random.fold_in(jax.random.key(config.seed), 0)
  return jax.jit(task.init, out_shardings=runtime.replicated)(init_rng)


def load_weights(config: ml_collections.ConfigDict, task: Task, runtime: Runtime
                 ) -> tuple[PyTree, str]:
  """(state with the trained weights, where they came from).

  The workdir's newest checkpoint, read without a target structure and merged into a fresh
  state leaf by leaf (so a checkpoint of other model settings stops with the leaves that
  differ and is left where it is); else `config.init_from` through the task's step.
  """
  workdir = runtime.workdir
  root = checkpoint_lib.checkpoint_dir(workdir)
  has_checkpoint = root.is_dir() and any(
      p.name.isdigit() and (p / checkpoint_lib.STATE).is_dir() for p in root.iterdir())
  if has_checkpoint:
    try:
      saved, step = checkpoint_lib.load_state_dict(workdir)
    except CheckpointError as e:
      raise CheckpointError(str(e).splitlines()[0][:400]) from None
    state = init_from_lib.merge(
        _fresh_state(config, task, runtime), saved, only=WEIGHT_PATTERNS,
        source=f"{root / str(step)} (the newest checkpoint of --workdir; predict with the "
               "config it trained with)")
    return state, str(root / str(step))
  if not config.init_from:
    raise InputError(f"--mode=predict: no checkpoint in {root} and no --config.init_from; "
                     "train first with this --workdir, point --workdir at a trained run, or "
                     "give --config.init_from (a run, or an original checkpoint the task reads)")
  if task.init_from is None or not task.predict_from_init_from:
    raise InputError(f"--mode=predict: task {config.task!r} needs its own trained "
                     f"checkpoint, and {root} holds none: point --workdir at a trained "
                     f"{config.task} run")
  return task.init_from(_fresh_state(config, task, runtime)), str(config.init_from)


# --------------------------------------------------------------------------- the mode
def sequence_metadata(config: ml_collections.ConfigDict, task: Task,
                      seq: keypoints.KeypointSequence, weights: str) -> dict[str, Any]:
  """What poses_3d.json says about where its numbers came from."""
  return {
      "task": config.task,
      "weights": weights,
      "input": seq.source,
      "source_layout": seq.source_layout,
      "image_size": [int(seq.width), int(seq.height)],
      "min_confidence": float(config.predict.min_confidence),
      "interpolated_joints": int(np.sum(seq.interpolated)),
      "fps": float(config.predict.fps),
      **dict(task.predict_metadata),
  }


def predict(config: ml_collections.ConfigDict, task: Task, runtime: Runtime) -> dict[str, str]:
  """Runs `--mode=predict` (see the module docstring); returns {sequence: its folder}."""
  check_request(config, task)
  check_run_task(config, runtime.workdir)
  sequences = read_input(config)
  state, weights = load_weights(config, task, runtime)
  p = config.predict
  is_main = runtime.process_index == 0
  show = bool(config.train.progress_bar) and is_main
  output = os.path.abspath(os.path.expanduser(p.output))
  folders = {}
  # Every process predicts (a model sharded over hosts needs them all); the main one writes.
  staged = export.staged_output(output) if is_main else contextlib.nullcontext()
  with staged as staging:
    for seq in sequences:
      out = dict(task.predict(state, seq))
      poses = np.asarray(out.pop("pose_3d_mm"), np.float32)
      if poses.shape != (seq.num_frames, 17, 3) or not np.isfinite(poses).all():
        raise FloatingPointError(
            f"task {config.task!r} predicted {poses.shape} poses for {seq.num_frames} frames "
            f"of {seq.name!r} (finite: {bool(np.isfinite(poses).all())})")
      if not is_main:
        continue
      extras = {"pose_2d_px": seq.pose_2d_px, "interpolated": seq.interpolated, **out}
      export.write_sequence(
          staging, seq.name, seq.frames, poses, seq.confidence, seq.pose_2d_px,
          (seq.width, seq.height), fps=float(p.fps), extras=extras, video=bool(p.video),
          gif=bool(p.gif), show_progress=show,
          metadata=sequence_metadata(config, task, seq, weights))
      folders[seq.name] = os.path.join(output, seq.name)
      logging.info("predict: %s, %d frames", seq.name, seq.num_frames)
  if is_main:
    print(f"Wrote {len(folders)} sequence(s) to {output} (weights: {weights})", flush=True)
  return folders

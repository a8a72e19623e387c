"""Evaluating a pose model through a dataset's own protocol, on its own data or another's.

    python launch.py --config=configs/rie.py --workdir=runs/rie --mode=eval \
        --config.eval.dataset=mpi_inf_3dhp --config.eval.manual_dir=~/mpi_inf_3dhp

writes `runs/rie/eval/mpi_inf_3dhp_test.json` and `.md`: the official MPI-INF-3DHP table
(protocols/mpi_inf_3dhp.py) of a model trained on another dataset. `humaneva` gives the
HumanEva-I table (protocols/humaneva.py: P1/P2 per action and subject), `h36m_poses` the
Human3.6M table of geopose_jax.evaluation.

The config keys (`config.eval`), each read here:
  dataset           '' = the task's own data (`config.data`), through its own protocol when
                    that is `humaneva` or `mpi_inf_3dhp`; else the dataset to evaluate on.
  split             '' = the dataset's evaluation split (`DEFAULT_SPLITS`).
  builder_config    '' = the dataset's default config (3DHP: `test`, HumanEva: `walk_jog_box`).
  data_dir          '' = `config.data.data_dir`: where the dataset is (or gets) built.
  manual_dir        '' = `<data_dir>/downloads/manual`: the licensed files it is built from
                    on first use (see docs/DATASETS.md), as `config.data.manual_dir`.
  mpi3dhp_grouping  'all17' | 'no_torso14' (protocols/mpi_inf_3dhp.GROUPINGS).
  mpi3dhp_target    'univ_annot3' (the protocol's) | 'annot3'.
The first four only mean something with a dataset named, so setting one of them without
`eval.dataset` is an error, not a silently ignored key.

Joints. A model predicts in the layout it was trained in: H36M-17 (Human3.6M, and
MPI-INF-3DHP, whose builder stores H36M order) or HumanEva-15. Its 2D input is mapped into
that layout (skeleton.h36m_to_humaneva, or humaneva_to_h36m, which fills Spine and
Neck/Nose by midpoints), and its prediction back into the dataset's for the protocol; a
15-joint model on a 17-joint dataset is scored on the joints it has (3DHP: grouping
`no_torso14` only, since `all17` would score the two filled joints).

Predictions are gathered by `evaluation.predict_sequences` over whole sequences (one window
per frame, every frame), the evaluator's one way of gathering.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from geopose_jax import evaluation
from geopose_jax import skeleton
from geopose_jax.data import eval_sequences
from geopose_jax.data import options as data_options
from geopose_jax.data import sources
from geopose_jax.errors import ConfigError, DatasetError
from geopose_jax.protocols import humaneva as humaneva_protocol
from geopose_jax.protocols import mpi_inf_3dhp as mpi3dhp_protocol

DEFAULT_SPLITS = {"mpi_inf_3dhp": "test", "humaneva": "validate", "h36m_poses": "test"}
# Datasets whose table is their own protocol's (h36m_poses: the evaluator's table).
PROTOCOL_DATASETS = ("mpi_inf_3dhp", "humaneva")
LAYOUTS = {skeleton.H36M_NUM_JOINTS: "h36m", skeleton.HUMANEVA_NUM_JOINTS: "humaneva15"}
LAYOUT_NAMES = {"h36m": "H36M-17", "humaneva15": "HumanEva-15"}
_DATASET_ONLY_KEYS = ("split", "builder_config", "data_dir", "manual_dir")


@dataclasses.dataclass(frozen=True)
class EvalTarget:
  """One split to evaluate on through its dataset's protocol.

  Attributes:
    dataset: 'mpi_inf_3dhp', 'humaneva' or 'h36m_poses'.
    split: the split's name in that dataset.
    data_config: how to open it (`sources.open_dataset`).
    grouping, annotation: the 3DHP joint grouping and ground truth.
    label: the name of its tables, `eval/<label>.json`: `<dataset>_<split>` for another
      dataset, the split alone for the task's own data.
  """
  dataset: str
  split: str
  data_config: ml_collections.ConfigDict
  grouping: str
  annotation: str
  label: str


def default_split(dataset: str) -> str:
  """The split a dataset's protocol scores ('test' for a dataset not listed)."""
  return DEFAULT_SPLITS.get(str(dataset), "test")


def check_eval_config(eval_config: ml_collections.ConfigDict) -> None:
  """The `config.eval` keys above, checked before any dataset is opened."""
  dataset = str(eval_config.dataset)
  if dataset and dataset not in DEFAULT_SPLITS:
    raise ConfigError(f"--config.eval.dataset={dataset!r}: expected '' (the task's own data) "
                      f"or one of {sorted(DEFAULT_SPLITS)}")
  if not dataset:
    named = [k for k in _DATASET_ONLY_KEYS if str(eval_config[k])]
    if named:
      raise ConfigError(f"--config.eval.{named[0]} is set but --config.eval.dataset is not: "
                        f"name the dataset to evaluate on (one of {sorted(DEFAULT_SPLITS)})")
  if eval_config.mpi3dhp_grouping not in mpi3dhp_protocol.GROUPINGS:
    raise ConfigError(f"--config.eval.mpi3dhp_grouping={eval_config.mpi3dhp_grouping!r}: "
                      f"expected one of {sorted(mpi3dhp_protocol.GROUPINGS)}")
  if eval_config.mpi3dhp_target not in mpi3dhp_protocol.ANNOTATIONS:
    raise ConfigError(f"--config.eval.mpi3dhp_target={eval_config.mpi3dhp_target!r}: "
                      f"expected one of {mpi3dhp_protocol.ANNOTATIONS}")


def check_model_joints(eval_config: ml_collections.ConfigDict, data_name: str,
                       num_joints: int) -> None:
  """A model's joint count fits the dataset it is evaluated on (module docstring)."""
  if num_joints not in LAYOUTS:
    raise ConfigError(f"--config.model.num_joints={num_joints}: expected 17 (H36M order) or "
                      "15 (HumanEva-I)")
  dataset = str(eval_config.dataset) or str(data_name)
  if (dataset == "mpi_inf_3dhp" and num_joints == skeleton.HUMANEVA_NUM_JOINTS
      and eval_config.mpi3dhp_grouping == "all17"):
    raise ConfigError("a 15-joint (HumanEva) model has no Spine or Neck/Nose, which the "
                      "MPI-INF-3DHP grouping 'all17' scores: add "
                      "--config.eval.mpi3dhp_grouping=no_torso14")


def eval_targets(config: ml_collections.ConfigDict, own_splits: Sequence[str]
                 ) -> dict[str, EvalTarget | None]:
  """{table label: its target}, in order; None = a split of the task's own data that the
  task evaluates with its own table (a dataset without a protocol of its own here)."""
  e = config.eval
  check_eval_config(e)
  grouping, annotation = str(e.mpi3dhp_grouping), str(e.mpi3dhp_target)
  if not str(e.dataset):
    own = str(config.data.name)
    if own not in PROTOCOL_DATASETS:
      return {split: None for split in own_splits}
    return {split: EvalTarget(own, split, config.data, grouping, annotation, split)
            for split in own_splits}
  dataset = str(e.dataset)
  split = str(e.split) or default_split(dataset)
  data_config = data_options.data_config(
      name=dataset, builder_config=str(e.builder_config),
      data_dir=str(e.data_dir) or str(config.data.data_dir), manual_dir=str(e.manual_dir),
      read_threads=int(config.data.read_threads))
  return {f"{dataset}_{split}": EvalTarget(dataset, split, data_config, grouping, annotation,
                                           f"{dataset}_{split}")}


def read_sequences(target: EvalTarget) -> list[eval_sequences.EvalSequence]:
  """The target split's whole sequences (building the dataset on first use)."""
  builder = sources.open_dataset(target.data_config)
  reader = sources.reader_for(builder, target.split)
  sequences = eval_sequences.read_eval_sequences(
      reader.builder_dir, target.split,
      target=target.annotation if target.dataset == "mpi_inf_3dhp" else "annot3")
  if not sequences:
    raise DatasetError(f"{os.fspath(builder.data_dir)} [{target.split}] holds no sequence")
  layouts = {s.layout for s in sequences}
  if len(layouts) != 1:
    raise DatasetError(f"{os.fspath(builder.data_dir)} [{target.split}] mixes joint layouts "
                       f"{sorted(layouts)}")
  return sequences


def to_layout(pose: np.ndarray, source: str, destination: str) -> np.ndarray:
  """`(..., J, D)` from one layout ('h36m', 'humaneva15') to another."""
  if source == destination:
    return np.asarray(pose)
  if (source, destination) == ("h36m", "humaneva15"):
    return np.asarray(skeleton.h36m_to_humaneva(pose))
  if (source, destination) == ("humaneva15", "h36m"):
    return np.asarray(skeleton.humaneva_to_h36m(pose))
  raise ValueError(f"no joint map from {source!r} to {destination!r}")


def describe_joint_map(data_layout: str, model_layout: str) -> str:
  if data_layout == model_layout:
    return f"{LAYOUT_NAMES[data_layout]} throughout"
  if model_layout == "h36m":
    return ("HumanEva-15 inputs -> H36M-17 (Spine and Neck/Nose filled by midpoints, "
            "skeleton.humaneva_to_h36m); predictions scored on HumanEva-15 "
            "(skeleton.h36m_to_humaneva)")
  return ("H36M-17 inputs -> HumanEva-15 (skeleton.h36m_to_humaneva); predictions back to "
          "H36M-17 with Spine and Neck/Nose filled by midpoints (skeleton.humaneva_to_h36m)")


def single_frames(sequence: np.ndarray, frames: np.ndarray) -> np.ndarray:
  """The "windows" of a per-frame model: `(N, J, D)`, `(F,)` -> `(F, J, D)`."""
  return np.asarray(sequence)[np.asarray(frames, np.int64)]


def evaluate(target: EvalTarget, predict_mm: Callable[[np.ndarray], np.ndarray], runtime, *,
             num_joints: int, batch_size: int,
             make_windows: Callable[[np.ndarray, np.ndarray], np.ndarray] = single_frames,
             notes: Sequence[str] = (), progress: bool = True) -> dict[str, Any]:
  """The target's protocol table of a model.

  Args:
    target: what to evaluate on (`eval_targets`).
    predict_mm: `(B, ...)` global windows of 2D in the model's layout (numpy, identical on
      every process, B a multiple of the device count) -> `(B, J, 3)` predictions in mm, any
      root (every protocol centres poses on their root).
    runtime: the run's Runtime.
    num_joints: J of the model (17: H36M-17, 15: HumanEva-15).
    batch_size: windows per call.
    make_windows: (one sequence's `(N, J, 2)`, frames `(F,)`) -> `(F, ...)` windows;
      `single_frames` for per-frame models.
    notes: what a reader must know about the model's numbers (added to the table's).

  Returns:
    the protocol's result (protocols/*.evaluate; h36m_poses: evaluation.summarize) plus
    `dataset`, `split`, `model_joints`, `joint_map` and `notes`.
  """
  model_layout = LAYOUTS[int(num_joints)]
  sequences = read_sequences(target)
  data_layout = sequences[0].layout
  inputs = [to_layout(s.pose_2d, data_layout, model_layout).astype(np.float32)
            for s in sequences]
  predictions = evaluation.predict_sequences(
      predict_mm, inputs, [np.arange(len(s.pose_2d)) for s in sequences], runtime,
      make_windows=make_windows, batch_size=batch_size, progress=progress,
      desc=f"eval {target.label}")
  pred = np.concatenate([to_layout(p, model_layout, data_layout) for p in predictions])
  flat = eval_sequences.concatenate(sequences)
  notes = list(notes)
  if target.dataset == "mpi_inf_3dhp":
    if model_layout != data_layout:
      notes.append("MPJPE includes Spine and Neck/Nose filled by midpoints (the model has "
                   "15 joints); PCK and AUC score only the no_torso14 joints")
    result = mpi3dhp_protocol.evaluate(
        pred, flat["pose_3d_cam"], flat["sequence"], flat["activity"], flat["valid"],
        grouping=target.grouping, joint_order="h36m", annotation=target.annotation)
  elif target.dataset == "humaneva":
    result = humaneva_protocol.evaluate(pred, flat["pose_3d_cam"], flat["subject"],
                                        flat["activity"])
  else:
    result = _h36m_table(pred, flat, sequences, model_layout)
  result.update(dataset=target.dataset, split=target.split,
                model_joints=LAYOUT_NAMES[model_layout],
                joint_map=describe_joint_map(data_layout, model_layout))
  if notes:
    result["notes"] = notes
  return result


def _h36m_table(pred: np.ndarray, flat: dict, sequences, model_layout: str) -> dict[str, Any]:
  """The evaluator's Human3.6M table; a 15-joint model is scored on its 15 joints."""
  target, joints = flat["pose_3d_cam"], "H36M-17"
  if model_layout == "humaneva15":
    pred, target = to_layout(pred, "h36m", "humaneva15"), to_layout(target, "h36m", "humaneva15")
    joints = "HumanEva-15 of H36M-17"
  convention = evaluation.Convention(root="both", joints=joints)
  info = evaluation.SequenceInfo(
      labels=tuple(f"{s.subject} {s.sequence} {s.camera}" for s in sequences),
      actions=tuple(str(s.activity[0]) if len(s.activity) else s.sequence for s in sequences))
  codes = np.repeat(np.arange(len(sequences)), [len(s.pose_2d) for s in sequences])
  valid = flat["valid"]
  errors = evaluation.frame_errors(pred[valid], target[valid], convention)
  return evaluation.summarize(errors, codes[valid], info, convention)

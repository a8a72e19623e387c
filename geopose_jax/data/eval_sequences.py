"""Whole evaluation sequences of a built pose dataset, for cross-dataset evaluation.

Reads the records of `h36m_poses`, `mpi_inf_3dhp` (pose configs) and `humaneva` by their
fields, so the evaluator needs no dataset-specific code beyond the joint layout:
  pose_2d      normalised screen coordinates, as the h36m_poses loaders give them;
  pose_3d_cam  camera frame in MILLIMETRES (as the evaluator's targets); for MPI-INF-3DHP
               `target="univ_annot3"` (the protocol's default) or `"annot3"`;
  valid        the frames a protocol scores (3DHP's valid_frame; all True elsewhere);
  activity     per-frame activity / action names (3DHP: the 7 test activities).
`layout` says the joint order: "h36m" (H36M-17: h36m_poses, mpi_inf_3dhp, which its builder
already mapped) or "humaneva15" (feed H36M-17 models through skeleton.humaneva_to_h36m and
compare their output through skeleton.h36m_to_humaneva).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from geopose_jax.data import sources
from geopose_jax.errors import ConfigError, DatasetError
from geopose_jax.protocols.mpi_inf_3dhp import ACTIVITY_NAMES

TARGETS = ("annot3", "univ_annot3")


@dataclasses.dataclass(frozen=True)
class EvalSequence:
  """One (subject, sequence, camera) of an evaluation split.

  Attributes:
    subject, sequence, camera: names ("TS1", "TS1", "0"; "Validate/S1", "Walking 1 chunk0",
      "C1"; ...).
    layout: "h36m" or "humaneva15".
    pose_2d: (N, J, 2) float32 normalised screen coordinates.
    pose_3d_cam: (N, J, 3) float32 camera frame, mm.
    valid: (N,) bool.
    activity: (N,) str.
  """
  subject: str
  sequence: str
  camera: str
  layout: str
  pose_2d: np.ndarray
  pose_3d_cam: np.ndarray
  valid: np.ndarray
  activity: np.ndarray


EvalSequence.__test__ = False


def _activity_names(record: dict, n: int) -> np.ndarray:
  if "activity" in record:
    codes = np.asarray(record["activity"]).reshape(-1)
    return np.asarray([ACTIVITY_NAMES[c - 1] if 1 <= c <= 7 else "" for c in codes])
  return np.asarray([str(record.get("action", ""))] * n)


def read_eval_sequences(builder_dir: str, split: str, *, target: str = "univ_annot3"
                        ) -> list[EvalSequence]:
  """Every record of `split` as an EvalSequence, sorted by (subject, sequence, camera).

  Raises:
    ConfigError: an unknown `target`.
    DatasetError: records without the pose fields (e.g. a crop config).
  """
  if target not in TARGETS:
    raise ConfigError(f"unknown 3D target {target!r}; expected one of {TARGETS}")
  reader = sources.RecordReader(builder_dir, split)
  result = []
  for index in range(len(reader)):
    record = reader.parse(index)
    if "pose_2d" not in record or "pose_3d_cam" not in record:
      raise DatasetError(f"{builder_dir} [{split}]: records have no pose_2d / pose_3d_cam "
                         f"(fields {sorted(record)}); evaluate on a pose config of the dataset")
    pose_3d = record["pose_3d_univ"] if target == "univ_annot3" and "pose_3d_univ" in record \
        else record["pose_3d_cam"]
    n = len(record["pose_2d"])
    valid = np.asarray(record.get("valid", np.ones(n, bool)), bool).reshape(-1)
    camera = str(record.get("camera_id", record.get("camera_index", "")))
    layout = "humaneva15" if record["pose_2d"].shape[1] == 15 else "h36m"
    result.append(EvalSequence(
        subject=str(record["subject"]), sequence=str(record["sequence"]), camera=camera,
        layout=layout, pose_2d=np.asarray(record["pose_2d"], np.float32),
        pose_3d_cam=np.asarray(pose_3d, np.float32) * np.float32(1000.0), valid=valid,
        activity=_activity_names(record, n)))
  result.sort(key=lambda s: (s.subject, s.sequence, s.camera))
  return result


def concatenate(sequences: list[EvalSequence]) -> dict[str, np.ndarray]:
  """Per-frame arrays of all sequences: pose_2d (F, J, 2), pose_3d_cam (F, J, 3) mm,
  sequence (F,) and subject (F,) names, activity (F,), valid (F,), frame (F,) index."""
  if not sequences:
    raise DatasetError("no evaluation sequences to concatenate")
  return {
      "pose_2d": np.concatenate([s.pose_2d for s in sequences]),
      "pose_3d_cam": np.concatenate([s.pose_3d_cam for s in sequences]),
      "sequence": np.concatenate([[s.sequence] * len(s.pose_2d) for s in sequences]),
      "subject": np.concatenate([[s.subject] * len(s.pose_2d) for s in sequences]),
      "activity": np.concatenate([s.activity for s in sequences]),
      "valid": np.concatenate([s.valid for s in sequences]),
      "frame": np.concatenate([np.arange(len(s.pose_2d)) for s in sequences]),
  }

"""2D/3D pose loaders: the pose tables of a split, frame batches for the lifters.

They read `h36m_poses` (one record per subject, sequence and camera; see
data_prep/h36m_poses) and datasets of the same fields (`humaneva`, 15 joints): the split's
sequences are loaded into memory once (poses are small)
and batches are gathered from them with vectorised indexing.

Data options (`config.data`): `name` ('h36m_poses'), `builder_config` ('' = the default,
'synthetic'), `data_dir`, `num_workers`, `prefetch`, `npz_3d` / `npz_2d`
(VideoPose3D-format files given by path, which select a dataset of their own),
`manual_dir`, `train_subjects` / `test_subjects` (keep these subjects of the split); the
loaders' own options are arguments (`frame_step`: the gap between a frame and its "next").

These loaders gather whole batches from memory, so `num_workers=0` is their fastest
setting (tens of thousands of windows, hundreds of thousands of frames per second on one
core); worker processes only add the copying of batches between processes.
"""

from __future__ import annotations

import dataclasses
import functools

import grain
import ml_collections
import numpy as np

from geopose_jax.data import batching
from geopose_jax.data import sources
from geopose_jax.data import vocab


@dataclasses.dataclass(frozen=True)
class PoseTable:
  """Every frame of a split's (subject, sequence, camera) records, concatenated.

  Attributes:
    pose_2d: (F, J, 2) float32 normalised screen coordinates (J = 17, or HumanEva's 15).
    pose_3d_cam: (F, J, 3) float32 camera frame, metres.
    start, length: (S,) int64 each sequence's first frame in the table and frame count.
    subject, action: (S,) int32 codes into `subject_names` / `action_names`.
    camera: (S,) int32 camera index per sequence.
    names: (S,) (subject, action, sequence, camera_id) per sequence.
    sequence_of_frame: (F,) int32 the sequence each frame belongs to (index into `names`).
    subject_names, action_names: the split's vocabularies (vocab.subject_vocabulary /
      action_vocabulary of the names present).
  """
  pose_2d: np.ndarray
  pose_3d_cam: np.ndarray
  start: np.ndarray
  length: np.ndarray
  subject: np.ndarray
  action: np.ndarray
  camera: np.ndarray
  names: tuple[tuple[str, str, str, str], ...]
  sequence_of_frame: np.ndarray
  subject_names: tuple[str, ...] = ()
  action_names: tuple[str, ...] = ()

  @property
  def num_frames(self) -> int:
    return len(self.pose_2d)


@functools.lru_cache(maxsize=8)
def _read_table(builder_dir: str, split: str, subjects: tuple[str, ...]) -> PoseTable:
  reader = sources.RecordReader(builder_dir, split)
  records = [reader.parse(i) for i in range(len(reader))]
  present = sorted({r["subject"] for r in records})
  missing = [s for s in subjects if s not in present]
  if missing:
    raise ValueError(f"config.data.{split}_subjects names {missing}, which split {split!r} of "
                     f"{builder_dir} does not hold (it has {present})")
  records = [r for r in records if not subjects or r["subject"] in subjects]
  if not records:
    raise ValueError(f"{builder_dir} [{split}]: no sequence of subjects {subjects}")
  # Stored order is a hash order; sort so frame numbering is the same on every machine.
  records.sort(key=lambda r: (r["subject"], r["sequence"], int(r["camera_index"])))
  length = np.asarray([len(r["pose_2d"]) for r in records], np.int64)
  subject_names = vocab.subject_vocabulary(r["subject"] for r in records)
  action_names = vocab.action_vocabulary(r["action"] for r in records)
  return PoseTable(
      pose_2d=np.concatenate([r["pose_2d"] for r in records]).astype(np.float32),
      pose_3d_cam=np.concatenate([r["pose_3d_cam"] for r in records]).astype(np.float32),
      start=np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64),
      length=length,
      subject=np.asarray([subject_names.index(r["subject"]) for r in records], np.int32),
      action=np.asarray([action_names.index(r["action"]) for r in records], np.int32),
      camera=np.asarray([int(r["camera_index"]) for r in records], np.int32),
      names=tuple((r["subject"], r["action"], r["sequence"], r["camera_id"]) for r in records),
      sequence_of_frame=np.repeat(np.arange(len(records), dtype=np.int32), length),
      subject_names=subject_names, action_names=action_names)


def load_poses(data_config: ml_collections.ConfigDict, split: str) -> PoseTable:
  """The split's poses (building the dataset on first use; read once per process)."""
  builder = sources.open_dataset(data_config)
  reader = sources.reader_for(builder, split)
  return _read_table(reader.builder_dir, split, sources.split_subjects(data_config, split))


# ----------------------------------------------------------------------------- batches


def _frame_pairs(batch, *, table: PoseTable, frames: np.ndarray, step: int
                 ) -> sources.Record:
  frame = frames[batch["index"]]
  sequence = table.sequence_of_frame[frame]
  out = {"pose_2d": table.pose_2d[frame], "pose_2d_next": table.pose_2d[frame + step],
         "subject": table.subject[sequence], "action": table.action[sequence],
         "camera": table.camera[sequence], "sequence": sequence.astype(np.int32)}
  if "valid" in batch:
    out["valid"] = batch["valid"]
  return out


def _labelled_frames(batch, *, table: PoseTable) -> sources.Record:
  frame = batch["index"]
  sequence = table.sequence_of_frame[frame]
  out = {"pose_2d": table.pose_2d[frame],
         "pose_3d_cam": table.pose_3d_cam[frame] * np.float32(1000.0),
         "subject": table.subject[sequence], "action": table.action[sequence],
         "camera": table.camera[sequence], "sequence": sequence.astype(np.int32)}
  if "valid" in batch:
    out["valid"] = batch["valid"]
  return out


def lifter_frames(data_config: ml_collections.ConfigDict, *, split: str = "train",
                  global_batch_size: int = 1024, process_index: int = 0,
                  process_count: int = 1, seed: int = 0, shuffle: bool = True,
                  num_epochs: int | None = None, frame_step: int = 1) -> grain.DataLoader:
  """2D-only frames and their successors, for self-supervised lifting (no 3D, by design).

  Every frame f with a frame f + `frame_step` in the same sequence (same camera) is one
  item.

  Batch (B = global_batch_size / process_count):
    pose_2d (B, 17, 2) f32 normalised screen coordinates, pose_2d_next (B, 17, 2) the same
    camera `frame_step` frames later, subject, action (B,) int32 codes into the table's
    subject_names / action_names, camera (B,) int32, sequence (B,) int32 index into
    `load_poses(...).names`;
    + valid (B,) bool for a finite pass. There is no 3D key.
  """
  local = batching.local_batch_size(global_batch_size, process_count)
  table = load_poses(data_config, split)
  step = int(frame_step)
  if step < 1:
    raise ValueError(f"config.data.frame_step={step} must be >= 1")
  position = np.arange(table.num_frames) - table.start[table.sequence_of_frame]
  has_next = position + step < table.length[table.sequence_of_frame]
  frames = np.flatnonzero(has_next)
  if not len(frames):
    raise ValueError(f"no sequence of split {split!r} is longer than frame_step={step}")
  return batching.make_batch_loader(
      len(frames), data_config=data_config, batch_size=local,
      batch_ops=[batching.FnMap(_frame_pairs, table=table, frames=frames, step=step)],
      process_index=process_index, process_count=process_count, seed=seed,
      shuffle=shuffle, num_epochs=num_epochs)


def labelled_frames(data_config: ml_collections.ConfigDict, *, split: str = "test",
                    global_batch_size: int = 1024, process_index: int = 0,
                    process_count: int = 1, seed: int = 0, shuffle: bool = False,
                    num_epochs: int | None = 1) -> grain.DataLoader:
  """Frames with their 3D pose: evaluation (default: one deterministic padded pass), or the
  training data of a 3D-supervised reference.

  Batch (B = global_batch_size / process_count):
    pose_2d (B, 17, 2) f32 normalised, pose_3d_cam (B, 17, 3) f32 camera frame mm,
    subject, action, camera, sequence (B,) int32 (as in `lifter_frames`); + valid (B,) bool
    for a finite pass.
  """
  local = batching.local_batch_size(global_batch_size, process_count)
  table = load_poses(data_config, split)
  return batching.make_batch_loader(
      table.num_frames, data_config=data_config, batch_size=local,
      batch_ops=[batching.FnMap(_labelled_frames, table=table)],
      process_index=process_index, process_count=process_count, seed=seed,
      shuffle=shuffle, num_epochs=num_epochs)

"""From a raw sequence's files to multi-view records, one per sampled frame.

`plan_sequence` reads and checks everything that is cheap to check (the pose file, each
video's header, each mask file's header) so that a bad file stops the build before any
record is written; `sequence_examples` then decodes the four videos in lockstep and cuts
the crops of every `frame_step`-th frame.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterator, Sequence

import numpy as np

from data_prep.h36m_multiview import framing
from data_prep.h36m_multiview import layout
from data_prep.h36m_multiview import media
from data_prep.h36m_poses import readers as pose_readers
from geopose_jax.geometry import cameras as cameras_lib
from geopose_jax.skeleton import H36M_32_TO_17

_LOG = logging.getLogger(__name__)

NUM_VIEWS = len(cameras_lib.H36M_CAMERA_IDS)
# Videos and mocap of one sequence differ by a few frames in the release; more than this
# is reported.
_FRAME_COUNT_SLACK = 10


@dataclasses.dataclass(frozen=True)
class SequencePlan:
  """A checked sequence, ready to be turned into records.

  Attributes:
    raw: its files.
    pose_world: (N, 17, 3) float32 world mm at 50 fps.
    videos: 4 headers in camera order.
    scales: 4 factors from the calibrated image to each video's frames.
  """
  raw: layout.RawSequence
  pose_world: np.ndarray
  videos: tuple[media.VideoInfo, ...]
  scales: tuple[float, ...]


def read_world_pose(path) -> np.ndarray:
  """D3_Positions .cdf -> (N, 17, 3) float32 world mm (errors name the file)."""
  # h36m_poses's reader of the release's .cdf files; one reader for both datasets.
  pose = pose_readers.read_cdf_pose(path, 3)
  return pose[:, list(H36M_32_TO_17)]


def plan_sequence(raw: layout.RawSequence, cameras: cameras_lib.Camera) -> SequencePlan:
  """Reads the poses and checks the videos and masks of one sequence.

  Args:
    raw: the sequence's files.
    cameras: the subject's Camera stack (4,).

  Raises:
    FileNotFoundError, ValueError: naming the file and what is wrong with it.
  """
  pose = read_world_pose(raw.pose_path)
  if len(pose) == 0:
    raise ValueError(f"{raw.pose_path}: 'Pose' holds no frame")
  videos, scales = [], []
  for view, path in enumerate(raw.video_paths):
    info = media.probe_video(path)
    videos.append(info)
    scales.append(framing.frame_scale(info.width, info.height,
                                      np.asarray(cameras.res[view]), str(path)))
    if info.num_frames and abs(info.num_frames - len(pose)) > _FRAME_COUNT_SLACK:
      _LOG.warning("%s: %d frames, but %s has %d poses; using the first %d", path,
                   info.num_frames, raw.pose_path, len(pose), min(info.num_frames, len(pose)))
  for path in raw.mask_paths:
    if path is not None:
      with media.MaskFile(path):
        pass  # opening checks the file and its 'Masks' variable
  return SequencePlan(raw, pose, tuple(videos), tuple(scales))


def _mask_crop(masks: media.MaskFile | None, index: int, points_px: np.ndarray,
               box_side_px: float, res: np.ndarray) -> np.ndarray | None:
  """(S, S) uint8 {0, 1} crop of frame `index`'s mask, None without a mask.

  Args:
    points_px: (S, S, 2) calibrated-image pixels to sample (framing.crop_sample_points).
    box_side_px: the crop's side in calibrated-image pixels.
    res: the calibrated (width, height).
  """
  if masks is None or index >= masks.num_frames:
    return None
  mask = masks.frame(index)
  scale = framing.frame_scale(mask.shape[1], mask.shape[0], res, str(masks.path))
  return framing.sample_crop(mask, framing.to_frame_pixels(points_px, scale),
                             box_side_px * scale, threshold=True)


def sequence_examples(plan: SequencePlan, cameras: cameras_lib.Camera,
                      backgrounds: Sequence[np.ndarray], frame_step: int
                      ) -> Iterator[tuple[str, dict]]:
  """Yields (key, record) for frames 0, frame_step, ... of one sequence.

  Args:
    plan: the checked sequence.
    cameras: the subject's cameras, float64 numpy (framing.numpy_cameras).
    backgrounds: 4 full-frame (H, W, 3) uint8 backgrounds, each in its video's pixels.
    frame_step: keep every this many 50 fps frames (5: 10 fps).

  Records are in the decoded multi-view layout (data_prep/synthetic_multiview/features.py:
  images as arrays, not yet encoded), plus `has_masks` (4,) bool: False where the release
  has no mask for that view and frame (its mask is then all zeros).
  """
  raw, size = plan.raw, framing.CROP_SIZE
  num_poses = len(plan.pose_world)
  mask_files = [media.MaskFile(p) if p is not None else None for p in raw.mask_paths]
  decoders = [media.iterate_frames(v.path, keep_every=frame_step) for v in plan.videos]
  last = -1
  try:
    for decoded in zip(*decoders):
      index = decoded[0][0]
      last = index
      if index >= num_poses:
        break
      if index % frame_step:
        continue
      geometry = framing.frame_geometry(plan.pose_world[index], cameras)
      images, crops_bg, masks, has_masks = [], [], [], []
      for view in range(NUM_VIEWS):
        points = framing.crop_sample_points(geometry["K"][view], cameras[view], size)
        side = float(geometry["box"][view][2])
        scale = plan.scales[view]
        in_frame = framing.to_frame_pixels(points, scale)
        images.append(framing.sample_crop(decoded[view][1], in_frame, side * scale))
        crops_bg.append(framing.sample_crop(backgrounds[view], in_frame, side * scale))
        mask = _mask_crop(mask_files[view], index, points, side, np.asarray(cameras.res[view]))
        has_masks.append(mask is not None)
        masks.append(mask if mask is not None else np.zeros((size, size), np.uint8))
      yield f"{raw.subject}/{raw.sequence}/{index:05d}", {
          "images": np.stack(images), "backgrounds": np.stack(crops_bg),
          "masks": np.stack(masks),
          "has_masks": np.asarray(has_masks, bool),
          "R": np.asarray(cameras.R, np.float32), "t": np.asarray(cameras.t, np.float32),
          "K": geometry["K"], "pose_3d_world": np.asarray(plan.pose_world[index], np.float32),
          "pose_3d_cam": geometry["pose_3d_cam"], "pose_2d_px": geometry["pose_2d_px"],
          "pose_2d_crop": geometry["pose_2d_crop"], "subject": raw.subject,
          "action": raw.action, "sequence": raw.sequence, "frame": int(index),
      }
  finally:
    for masks_file in mask_files:
      if masks_file is not None:
        masks_file.close()
    for decoder in decoders:
      decoder.close()
  if last + 1 < num_poses - _FRAME_COUNT_SLACK:
    _LOG.warning("%s %r: the videos end after %d frames, before the %d poses of %s",
                 raw.subject, raw.sequence, last + 1, num_poses, raw.pose_path)

"""Multi-view records of the synthetic subjects: poses, cameras, crops and renderings.

One record per (subject, sequence, frame) with all four Human3.6M cameras of the subject.
Crops follow how one would crop Human3.6M: a square box centred on the projected root
whose side covers the projected joints plus a body-width margin.

Projection choice: images are rendered through undistorted pinhole versions of the real
cameras, so the crop intrinsics K are exact for them: `pose_2d_crop` = K applied to
`pose_3d_cam` lands on the rendered body. `pose_2d_px` is, like Human3.6M's own 2D labels,
the *distorted* full-image projection (geometry.cameras.project_distorted) of the same
pose; it differs from the pinhole projection by the lens distortion (a few pixels at
1000 x 1000).
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
from typing import Iterator, Sequence

import numpy as np
import tqdm

from data_prep import crops
from data_prep.synthetic_multiview import body
from data_prep.synthetic_multiview import features as features_lib
from data_prep.synthetic_multiview import render
from geopose_jax.data import motion
from geopose_jax.data import motion_plan
from geopose_jax.data import vocab
from geopose_jax.geometry import cameras as cameras_lib

CROP_SIZE = 128
# Margin around the projected joints: a body radius (mm) at the root's depth, then a factor.
_BODY_PAD_MM = 140.0
_BOX_SCALE = 1.08


@dataclasses.dataclass(frozen=True)
class FramePlan:
  subject: str
  action: str
  sequence: str
  frame: int          # index at 50 fps within the sequence
  pose_world: np.ndarray


def plan_frames(subjects: Sequence[str], frame_step: int = 5,
                max_frames_per_subject: int = 0, max_sequences_per_subject: int = 0,
                library_dir: str | None = None) -> list[FramePlan]:
  """The frames to render: every `frame_step`-th 50 fps frame of each subject's sequences.

  The sequences are the action- and CMU-subject-balanced segments of motion_plan.default_plan,
  so a large step samples frames across many clips rather than many frames of few.

  Args:
    subjects: subject names (vocab.SUBJECTS).
    frame_step: 5 gives Human3.6M's usual 10 fps sampling; the default config uses 48.
    max_frames_per_subject: 0 for all; else keep the first this many frames per subject,
      spread over the subject's first sequences.
    max_sequences_per_subject: 0 for all; else only the first this many sequences.
    library_dir: the motion library (default the packaged one).

  Raises:
    ValueError: unknown subject or bad step.
  """
  unknown = [s for s in subjects if s not in vocab.SUBJECTS]
  if unknown:
    raise ValueError(f"unknown subject(s) {unknown}; synthetic subjects are {vocab.SUBJECTS}")
  if frame_step < 1:
    raise ValueError(f"frame_step must be >= 1, got {frame_step}")
  frames = []
  for subject in subjects:
    plan = motion_plan.default_plan()[subject]
    if max_sequences_per_subject:
      plan = plan[:max_sequences_per_subject]
    sequences = motion_plan.subject_sequences(subject, fps=50.0, plan=plan,
                                         library_dir=library_dir)
    kept = []
    for seq in sequences:
      for index in range(0, len(seq.poses_world), frame_step):
        kept.append(FramePlan(subject, seq.action, seq.sequence, index, seq.poses_world[index]))
    if max_frames_per_subject:
      kept = kept[:max_frames_per_subject]
    frames.extend(kept)
  return frames


def crop_geometry(pose_world: np.ndarray, cams: cameras_lib.Camera) -> dict[str, np.ndarray]:
  """Camera-frame pose, 2D projections, crop boxes and crop intrinsics of one frame.

  Args:
    pose_world: (17, 3) mm.
    cams: Camera stacked (4,).

  Returns:
    dict with pose_3d_cam (4, 17, 3), pose_2d_px (4, 17, 2) distorted, box (4, 3),
    K (4, 3, 3) crop intrinsics, pose_2d_crop (4, 17, 2).
  """
  pose = np.asarray(pose_world, np.float64)
  cam64 = cameras_lib.Camera(*(np.asarray(getattr(cams, f), np.float64)
                               for f in ("R", "t", "f", "c", "k", "p", "res")))
  pose_cam = cameras_lib.world_to_camera(np.broadcast_to(pose, (4, 17, 3)), cam64)
  distorted = cameras_lib.project_distorted(pose_cam, cam64)
  pinhole = cameras_lib.project_pinhole(pose_cam, cam64.f, cam64.c)
  pad = cam64.f.mean(axis=-1) * _BODY_PAD_MM / pose_cam[:, 0, 2]
  box = crops.square_box(pinhole, pinhole[:, 0], pad, _BOX_SCALE)
  k_crop = crops.crop_intrinsics(cam64.f, cam64.c, box, CROP_SIZE)
  pose_2d_crop = cameras_lib.project_with_intrinsics(pose_cam, k_crop.astype(np.float64))
  return {"pose_3d_cam": pose_cam.astype(np.float32), "pose_2d_px": distorted.astype(np.float32),
          "box": box.astype(np.float32), "K": k_crop,
          "pose_2d_crop": pose_2d_crop.astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class RenderOptions:
  """supersample: body samples per pixel and axis; room_scale: background resolution."""
  supersample: int = 2
  room_scale: float = render.ROOM_SCALE


@functools.lru_cache(maxsize=8)
def subject_rooms(subject: str, scale: float = render.ROOM_SCALE) -> tuple[np.ndarray, ...]:
  """The empty room seen by each of the subject's four cameras (render.room_image)."""
  cams = cameras_lib.load_h36m_cameras(subject)
  return tuple(render.room_image(cams.R[v], cams.t[v], cams.f[v], cams.c[v], cams.res[v],
                                 scale) for v in range(4))


def render_frame(frame: FramePlan, cams: cameras_lib.Camera,
                 options: RenderOptions = RenderOptions()) -> dict:
  """The full record of one frame (arrays and names; images not yet encoded)."""
  geometry = crop_geometry(frame.pose_world, cams)
  look = body.APPEARANCES[frame.subject]
  volumes = body.build_volumes(frame.pose_world, look)
  rooms = subject_rooms(frame.subject, options.room_scale)
  backgrounds = np.stack([
      render.background_crop(rooms[v], geometry["box"][v], CROP_SIZE, options.room_scale)
      if render.box_in_room(rooms[v], geometry["box"][v], options.room_scale) else
      render.room_crop(geometry["K"][v], cams.R[v], cams.t[v], CROP_SIZE)
      for v in range(4)])
  images, masks = render.render_views(
      volumes, look.palette(), geometry["K"], np.asarray(cams.R, np.float32),
      np.asarray(cams.t, np.float32), backgrounds, ss=options.supersample)
  return {
      "images": np.asarray(images), "backgrounds": np.asarray(backgrounds),
      "masks": np.asarray(masks),
      "R": np.asarray(cams.R, np.float32), "t": np.asarray(cams.t, np.float32),
      "K": geometry["K"], "pose_3d_world": np.asarray(frame.pose_world, np.float32),
      "pose_3d_cam": geometry["pose_3d_cam"], "pose_2d_px": geometry["pose_2d_px"],
      "pose_2d_crop": geometry["pose_2d_crop"], "subject": frame.subject,
      "action": frame.action, "sequence": frame.sequence, "frame": int(frame.frame),
  }


@functools.lru_cache(maxsize=8)
def _cameras(subject: str) -> cameras_lib.Camera:
  return cameras_lib.load_h36m_cameras(subject)


def frame_key(frame: FramePlan) -> str:
  return f"{frame.subject}/{frame.sequence}/{frame.frame:05d}"


def render_encoded(frame: FramePlan, options: RenderOptions, encode) -> tuple[str, dict]:
  """(key, record) of one frame with `encode` applied to the record (e.g. PNG encoding)."""
  return frame_key(frame), encode(render_frame(frame, _cameras(frame.subject), options))


def _identity(record):
  return record


def generate(frames: Sequence[FramePlan], options: RenderOptions = RenderOptions(),
             encode=_identity, num_workers: int = 0, progress: str | None = None
             ) -> Iterator[tuple[str, dict]]:
  """Yields (key, record) for each planned frame, in order.

  Args:
    frames: from `plan_frames`.
    options: rendering options.
    encode: record -> record applied in the worker (a picklable top-level function).
    num_workers: worker processes (0: render in this process).
    progress: a progress-bar description, or None for no bar.
  """
  bar = tqdm.tqdm(total=len(frames), desc=progress, unit="frame", disable=progress is None)
  task = functools.partial(render_encoded, options=options, encode=encode)
  try:
    if num_workers <= 0 or len(frames) < 8:
      for frame in frames:
        yield task(frame)
        bar.update()
      return
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_workers) as pool:
      # Contiguous chunks keep each worker on few subjects (their rooms are cached).
      chunk = max(1, min(32, len(frames) // (4 * num_workers)))
      for item in pool.imap(task, frames, chunksize=chunk):
        yield item
        bar.update()
  finally:
    bar.close()


def features():
  """The TFDS features of a multi-view record (features.multiview_features)."""
  return features_lib.multiview_features()

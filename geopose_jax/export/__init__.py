"""Writing predictions: 3D poses (npz, JSON), BVH motion, MP4 and GIF renders.

`write_sequence` writes one sequence's files into a folder; wrap several in
`staged_output(DIR)` so DIR appears only when everything is written.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from geopose_jax.export import bvh_writer, poses, render
from geopose_jax.export.output_dir import staged_output


def write_sequence(folder: str | os.PathLike, name: str, frames: np.ndarray,
                   poses_3d_mm: np.ndarray, confidence: np.ndarray | None,
                   pose_2d_px: np.ndarray | None, image_size: tuple[int, int],
                   fps: float = 50.0, extras: dict | None = None,
                   images: Iterable[np.ndarray] | None = None, video: bool = True,
                   gif: bool = True, show_progress: bool = True,
                   metadata: dict | None = None, boxes_xywh: np.ndarray | None = None) -> str:
  """Writes folder/<name>/{poses_3d.npz, poses_3d.json, motion.bvh, render.mp4, render.gif}.

  Args:
    poses_3d_mm: (N, 17, 3) camera-frame mm; confidence (N, 17) of the 2D input and
      pose_2d_px (N, 17, 2), both None for image input (then `images` is required).
    image_size: (width, height) of the input frames.
    images: optional N input frames (H, W, 3) uint8 shown under the 2D skeleton, an
      iterable read once, frame by frame (a video decoded as it renders).
    metadata: facts about the poses for poses_3d.json / .npz (see export/poses.py).
    boxes_xywh: optional (N, 4) person boxes drawn on the input frames.
  Returns:
    the sequence's folder.
  """
  out = os.path.join(os.fspath(folder), name.replace(os.sep, "_"))
  os.makedirs(out, exist_ok=True)
  poses.write_poses(out, frames, poses_3d_mm, confidence, extras, name=name,
                    metadata=metadata)
  bvh_writer.write_bvh(os.path.join(out, "motion.bvh"), poses_3d_mm, fps, show_progress)
  if video or gif:
    frames_iter = render.render_frames(poses_3d_mm, pose_2d_px, image_size, images,
                                       boxes_xywh=boxes_xywh)
    # The GIF keeps every k-th frame only, so memory stays bounded for long sequences.
    step = max(1, -(-len(poses_3d_mm) // render.GIF_MAX_FRAMES))
    kept = [] if gif else None

    def tee():
      for i, frame in enumerate(frames_iter):
        if kept is not None and i % step == 0:
          kept.append(frame)
        yield frame

    if video:
      render.write_mp4(os.path.join(out, "render.mp4"), tee(), fps, len(poses_3d_mm),
                       show_progress)
    elif kept is not None:
      kept.extend(f for i, f in enumerate(frames_iter) if i % step == 0)
    if gif:
      render.write_gif(os.path.join(out, "render.gif"), kept, fps / step)
  return out


__all__ = ["bvh_writer", "poses", "render", "staged_output", "write_sequence"]

"""Pictures of the self-supervised lifter: 2D input, lifted 3D against ground truth, and a
GIF of the lifted skeleton turning about the vertical axis.

The lifter's units are arbitrary (scale is unobservable from 2D), so for display the lifted
pose is brought onto the ground truth's root and scaled by the least-squares factor, with
no rotation fitted: what is drawn shows the depth the lifter chose.
"""

from __future__ import annotations

import os
import pathlib
from typing import Mapping

import numpy as np

from geopose_jax.viz import image_grid
from geopose_jax.viz import rie as rie_viz
from geopose_jax.viz import skeleton_plot


def scale_to_target(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
  """(..., J, 3) x2 -> pred root-centred and scaled by <p, g> / <p, p>, on target's root."""
  p = pred - pred[..., :1, :]
  g = target - target[..., :1, :]
  scale = np.sum(p * g, axis=(-2, -1)) / np.maximum(np.sum(p * p, axis=(-2, -1)), 1e-12)
  return scale[..., None, None] * p + target[..., :1, :]


def example_row(pose_2d: np.ndarray, lifted: np.ndarray, ground_truth: np.ndarray | None,
                size_px: int = 256, title: str | None = None) -> np.ndarray:
  """One example: the 2D input | lifted (solid) over ground truth (dashed), two 3D views.

  Args:
    pose_2d: (17, 2) normalised screen coordinates.
    lifted: (17, 3) lifter output; ground_truth: (17, 3) camera frame, or None.

  Returns:
    (size_px, 3 * size_px, 3) uint8.
  """
  if ground_truth is not None:
    lifted = scale_to_target(lifted, ground_truth)
    poses, labels = [lifted, ground_truth], ["lifted", "ground truth"]
  else:
    poses, labels = [lifted], ["lifted"]
  panels = [rie_viz.render_input_2d(pose_2d, size_px, title or "2D input")]
  for azim, name in ((-90.0, "camera view"), (0.0, "side view")):
    panel = skeleton_plot.render_poses_3d(poses, labels=labels, size_px=size_px, elev=10.0,
                                          azim=azim, title=name)
    if panel.shape[:2] != panels[0].shape[:2]:
      panel = image_grid.resize(panel, *panels[0].shape[:2])
    panels.append(panel)
  return np.concatenate(panels, axis=1)


def turntable_frames(lifted: np.ndarray, num_frames: int = 24, size_px: int = 200,
                     elev: float = 10.0) -> list[np.ndarray]:
  """(17, 3) lifted pose -> frames of it turning a full circle about the vertical axis."""
  lifted = np.asarray(lifted, np.float64)
  radius = float(np.abs(lifted - lifted[:1]).max()) * 1.1 + 1e-9
  return [skeleton_plot.render_poses_3d([lifted], size_px=size_px, radius=radius, elev=elev,
                                        azim=-90.0 + 360.0 * i / num_frames)
          for i in range(num_frames)]


def write_pictures(out_dir: str | os.PathLike, pose_2d: np.ndarray, lifted: np.ndarray,
                   ground_truth: np.ndarray | None = None, prefix: str = "lifter",
                   gif_frames: int = 24) -> dict[str, np.ndarray]:
  """Writes `<prefix>_examples.png` (all examples) and `<prefix>_turntable.gif` (the first).

  Args:
    out_dir: folder (created if missing).
    pose_2d: (N, 17, 2); lifted: (N, 17, 3); ground_truth: (N, 17, 3) or None.

  Returns:
    {'<prefix>/examples': the PNG as (H, W, 3) uint8} for TensorBoard.
  """
  pose_2d, lifted = np.asarray(pose_2d), np.asarray(lifted)
  if pose_2d.shape[0] != lifted.shape[0] or pose_2d.shape[0] == 0:
    raise ValueError(f"need the same non-zero number of 2D inputs and lifted poses, got "
                     f"{pose_2d.shape} and {lifted.shape}")
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  rows = [[example_row(pose_2d[i], lifted[i],
                       None if ground_truth is None else np.asarray(ground_truth[i]),
                       title=f"example {i}")] for i in range(pose_2d.shape[0])]
  grid = image_grid.make_grid(rows)
  image_grid.save_png(out_dir / f"{prefix}_examples.png", grid)
  image_grid.save_gif(out_dir / f"{prefix}_turntable.gif",
                      turntable_frames(lifted[0], gif_frames), fps=12.0)
  images: Mapping[str, np.ndarray] = {f"{prefix}/examples": grid}
  return dict(images)

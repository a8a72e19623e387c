"""Pictures for the temporal lifters: the 2D input sequence next to the predicted and
ground-truth 3D skeletons, as an animated GIF (the original's --render)."""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from geopose_jax.viz import image_grid
from geopose_jax.viz import skeleton_plot


def render_input_2d(pose_2d: np.ndarray, size_px: int = 256, title: str | None = None,
                    center: np.ndarray | None = None, half_size: float = 1.0) -> np.ndarray:
  """(17, 2) normalised screen coordinates (y down) -> (size, size, 3) uint8.

  Shows the square of half-size `half_size` around `center` (default: the whole image,
  x in [-1, 1]).
  """
  cx, cy = (0.0, 0.0) if center is None else (float(center[0]), float(center[1]))
  fig = Figure(figsize=(size_px / 100.0, size_px / 100.0), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(111)
  skeleton_plot.plot_pose_2d(ax, np.asarray(pose_2d, np.float64))
  ax.set_xlim(cx - half_size, cx + half_size)
  ax.set_ylim(cy + half_size, cy - half_size)  # image convention: y grows downwards
  ax.set_aspect("equal")
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title, fontsize=8)
  fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.93 if title else 0.98)
  return image_grid.figure_to_image(fig)


def render_frame(pose_2d: np.ndarray, predicted: np.ndarray, ground_truth: np.ndarray | None,
                 radius: float, size_px: int = 256, title: str | None = None,
                 view_2d: tuple[np.ndarray, float] | None = None) -> np.ndarray:
  """One GIF frame: the 2D input | predicted (solid) over ground truth (dashed) in 3D.

  Args:
    pose_2d: (17, 2) normalised 2D input of the frame.
    predicted, ground_truth: (17, 3) root-relative camera-frame poses (any unit).
    radius: half-size of the 3D plot cube, fixed over a sequence so the scale does not jump.
    view_2d: (centre (2,), half-size) of the 2D panel; None shows the whole image.
  Returns:
    (size_px, 2 * size_px, 3) uint8.
  """
  poses = [predicted] if ground_truth is None else [predicted, ground_truth]
  labels = ["predicted"] if ground_truth is None else ["predicted", "ground truth"]
  center, half = view_2d if view_2d is not None else (None, 1.0)
  left = render_input_2d(pose_2d, size_px, title, center, half)
  right = skeleton_plot.render_poses_3d(poses, labels=labels, size_px=size_px, radius=radius,
                                        elev=15.0, azim=-70.0)
  if right.shape[:2] != left.shape[:2]:
    right = image_grid.resize(right, left.shape[0], left.shape[1])
  return np.concatenate([left, right], axis=1)


def sequence_view_2d(pose_2d: np.ndarray) -> tuple[np.ndarray, float]:
  """(N, 17, 2) -> (centre, half-size) of a square holding every frame, with a margin."""
  low, high = pose_2d.reshape(-1, 2).min(0), pose_2d.reshape(-1, 2).max(0)
  return (low + high) / 2, float((high - low).max()) * 0.6 + 1e-3


def write_sequence_gif(path: str | os.PathLike, pose_2d: np.ndarray, predicted: np.ndarray,
                       ground_truth: np.ndarray | None = None, fps: float = 10.0,
                       size_px: int = 256, titles: Sequence[str] | None = None) -> pathlib.Path:
  """Writes the GIF of a sequence and returns its path.

  Args:
    pose_2d: (N, 17, 2); predicted: (N, 17, 3); ground_truth: (N, 17, 3) or None.
  """
  pose_2d, predicted = np.asarray(pose_2d), np.asarray(predicted)
  if pose_2d.shape[0] != predicted.shape[0] or (
      ground_truth is not None and np.shape(ground_truth)[0] != predicted.shape[0]):
    raise ValueError(f"sequence lengths differ: 2D {pose_2d.shape}, predicted {predicted.shape}, "
                     f"ground truth {None if ground_truth is None else np.shape(ground_truth)}")
  reference = predicted if ground_truth is None else np.asarray(ground_truth)
  radius = float(np.abs(reference - reference[:, :1]).max()) * 1.1 + 1e-6
  frames = [render_frame(pose_2d[i], predicted[i],
                         None if ground_truth is None else ground_truth[i], radius, size_px,
                         titles[i] if titles else None, view_2d=sequence_view_2d(pose_2d))
            for i in range(predicted.shape[0])]
  return image_grid.save_gif(path, frames, fps=fps)

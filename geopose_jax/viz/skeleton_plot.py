"""Human3.6M-17 skeletons drawn with matplotlib's Agg canvas (no display needed).

Poses are in a camera frame (x right, y down, z forward, any unit). 3D plots show them with
the vertical axis up: plot axes (x, z, -y), so an unrotated pose faces the viewer as the
camera saw it. Left limbs are blue, right limbs red, the spine grey.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import numpy as np  # noqa: E402

from geopose_jax import skeleton  # noqa: E402
from geopose_jax.viz import image_grid  # noqa: E402

LEFT_COLOR = "tab:blue"
RIGHT_COLOR = "tab:red"
CENTER_COLOR = "0.35"


def bone_colors(parents: Sequence[int] = skeleton.H36M_PARENTS,
                left: Sequence[int] = skeleton.H36M_LEFT,
                right: Sequence[int] = skeleton.H36M_RIGHT) -> list[str]:
  """One colour per joint, for the bone from the joint to its parent."""
  left, right = set(left), set(right)
  return [LEFT_COLOR if j in left else RIGHT_COLOR if j in right else CENTER_COLOR
          for j in range(len(parents))]


def _check_pose(pose: np.ndarray, dims: int, parents: Sequence[int]) -> np.ndarray:
  pose = np.asarray(pose, np.float64)
  if pose.shape != (len(parents), dims):
    raise ValueError(f"expected a ({len(parents)}, {dims}) pose, got shape {pose.shape}")
  return pose


def camera_to_plot(pose: np.ndarray) -> np.ndarray:
  """Camera-frame points `(..., 3)` (y down) -> plot coordinates `(..., 3)` = (x, z, -y)."""
  pose = np.asarray(pose)
  return np.stack([pose[..., 0], pose[..., 2], -pose[..., 1]], axis=-1)


def plot_pose_3d(ax, pose: np.ndarray, parents: Sequence[int] = skeleton.H36M_PARENTS,
                 linestyle: str = "-", alpha: float = 1.0, linewidth: float = 2.0,
                 colors: Sequence[str] | None = None, label: str | None = None) -> None:
  """Draws one `(J, 3)` camera-frame pose on a 3D axis."""
  pose = camera_to_plot(_check_pose(pose, 3, parents))
  colors = colors or bone_colors(parents)
  for j, p in enumerate(parents):
    if p < 0:
      continue
    ax.plot(*zip(pose[j], pose[p]), linestyle=linestyle, color=colors[j], alpha=alpha,
            linewidth=linewidth, label=label if label and j == 1 else None)


def plot_pose_2d(ax, pose_2d: np.ndarray, parents: Sequence[int] = skeleton.H36M_PARENTS,
                 linewidth: float = 2.0) -> None:
  """Draws one `(J, 2)` pixel-space pose on a 2D axis (image convention, y down)."""
  pose_2d = _check_pose(pose_2d, 2, parents)
  colors = bone_colors(parents)
  for j, p in enumerate(parents):
    if p >= 0:
      ax.plot(*zip(pose_2d[j], pose_2d[p]), color=colors[j], linewidth=linewidth)


def set_equal_3d(ax, center: np.ndarray, radius: float) -> None:
  """Cube-shaped limits of half-size `radius` around a plot-space centre."""
  for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), center):
    setter(c - radius, c + radius)
  ax.set_box_aspect((1, 1, 1))


def render_poses_3d(poses: Sequence[np.ndarray], styles: Sequence[str] = ("-", "--"),
                    labels: Sequence[str] | None = None, size_px: int = 256,
                    radius: float | None = None, elev: float = 10.0, azim: float = -90.0,
                    title: str | None = None,
                    parents: Sequence[int] = skeleton.H36M_PARENTS) -> np.ndarray:
  """Renders overlays of several `(J, 3)` poses, each centred on its own root, to uint8.

  Unless given, the radius is the first pose's extent, so a sweep of rotated poses drawn
  with the same `radius` keeps a fixed scale.

  Returns:
    `(size_px, size_px, 3)` uint8.
  """
  if not len(poses):
    raise ValueError("render_poses_3d needs at least one pose")
  poses = [_check_pose(p, 3, parents) for p in poses]
  poses = [p - p[:1] for p in poses]
  fig = Figure(figsize=(size_px / 100.0, size_px / 100.0), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(111, projection="3d")
  for i, pose in enumerate(poses):
    plot_pose_3d(ax, pose, parents, linestyle=styles[i % len(styles)],
                 alpha=1.0 if i == 0 else 0.7,
                 label=labels[i] if labels and i < len(labels) else None)
  if radius is None:
    radius = max(float(np.abs(poses[0]).max()), 1e-6) * 1.1
  set_equal_3d(ax, np.zeros(3), radius)
  ax.view_init(elev=elev, azim=azim)
  ax.set_xticklabels([])
  ax.set_yticklabels([])
  ax.set_zticklabels([])
  if labels:
    ax.legend(loc="upper right", fontsize=6, handlelength=1.5)
  if title:
    ax.set_title(title, fontsize=8)
  fig.subplots_adjust(left=0, right=1, bottom=0, top=0.93 if title else 1)
  return image_grid.figure_to_image(fig)


def render_pose_2d_on_image(image: np.ndarray, pose_2d: np.ndarray,
                            parents: Sequence[int] = skeleton.H36M_PARENTS) -> np.ndarray:
  """Draws a `(J, 2)` pixel-space pose over an `(H, W, 3)` image; returns uint8 of the same size."""
  image = image_grid.to_uint8(image)
  h, w = image.shape[:2]
  fig = Figure(figsize=(w / 100.0, h / 100.0), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_axes((0, 0, 1, 1))
  ax.imshow(image)
  plot_pose_2d(ax, pose_2d, parents, linewidth=max(1.0, w / 128.0))
  ax.set_xlim(0, w)
  ax.set_ylim(h, 0)
  ax.axis("off")
  return image_grid.figure_to_image(fig)

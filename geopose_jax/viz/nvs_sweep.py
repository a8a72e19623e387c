"""Novel-view sweeps: synthesised views of one image over a yaw rotation, as PNG grid and GIF.

The sweep turns the subject about the world's vertical axis as seen from the input camera:
the latent is rotated by `R_c R_z(psi) R_c^T` (R_c the input camera's world->camera
rotation), the background stays the input camera's. The 3D skeletons (prediction and
ground truth, camera frame) turn by the same rotation about their root.

The arrays come from the task (it owns the model); this module only arranges pictures, so it
runs without a display. `interactive_sweep` opens a matplotlib slider window where one exists.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Callable, Sequence

from absl import logging
import numpy as np
from PIL import Image, ImageDraw

from geopose_jax.viz import image_grid
from geopose_jax.viz import skeleton_plot


def sweep_angles(num_angles: int, start_deg: float = -180.0, stop_deg: float = 180.0) -> np.ndarray:
  """`(num_angles,)` yaw angles in degrees from `start_deg` to `stop_deg` inclusive."""
  if num_angles < 2:
    raise ValueError(f"a sweep needs at least 2 angles, got {num_angles}")
  return np.linspace(start_deg, stop_deg, num_angles)


def rotation_z(angle_rad: np.ndarray) -> np.ndarray:
  """`(...,)` angles -> `(..., 3, 3)` rotations about the z axis (the H36M world's vertical)."""
  c, s = np.cos(angle_rad), np.sin(angle_rad)
  zero, one = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1),
                   np.stack([zero, zero, one], -1)], -2)


def yaw_rotations(camera_rotation: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
  """Camera-frame rotations `R_c R_z(psi) R_c^T`.

  Args:
    camera_rotation: `(3, 3)` world->camera rotation of the input view.
    angles_deg: `(N,)` yaw angles in degrees.

  Returns:
    `(N, 3, 3)`; rotation i maps camera-frame points of the input view to the same camera's
    frame after the world turned by angle i about its vertical axis.
  """
  r_c = np.asarray(camera_rotation, np.float64)
  if r_c.shape != (3, 3):
    raise ValueError(f"camera_rotation must be (3, 3), got {r_c.shape}")
  r_z = rotation_z(np.deg2rad(np.asarray(angles_deg, np.float64)))
  return (r_c @ r_z @ r_c.T).astype(np.float32)


def rotate_pose(pose: np.ndarray, rotation: np.ndarray) -> np.ndarray:
  """`(J, 3)` pose rotated about its root (joint 0) by `(3, 3)` rotation: (x - r) R^T + r."""
  pose = np.asarray(pose, np.float64)
  root = pose[:1]
  return (pose - root) @ np.asarray(rotation, np.float64).T + root


def _label(image: np.ndarray, text: str, size: int | None = None) -> np.ndarray:
  """Writes a short caption in the top-left corner of a uint8 image (resized to `size`)."""
  image = image_grid.to_uint8(image)
  if size is not None:
    image = image_grid.resize(image, size, size)
  pil = Image.fromarray(image.copy())
  draw = ImageDraw.Draw(pil)
  draw.rectangle((0, 0, 6 * len(text) + 4, 11), fill=(0, 0, 0))
  draw.text((2, 0), text, fill=(255, 255, 255))
  return np.asarray(pil)


def skeleton_sweep(rotations: np.ndarray, pose_gt: np.ndarray | None,
                   pose_pred: np.ndarray | None, size_px: int) -> list[np.ndarray]:
  """One skeleton picture per rotation: prediction solid, ground truth dashed."""
  poses, labels = [], []
  if pose_pred is not None:
    poses.append(np.asarray(pose_pred))
    labels.append("pred")
  if pose_gt is not None:
    poses.append(np.asarray(pose_gt))
    labels.append("GT")
  if not poses:
    return []
  radius = 1.1 * max(float(np.abs(p - p[:1]).max()) for p in poses)
  styles = ("-", "--") if len(poses) == 2 else (("--",) if labels == ["GT"] else ("-",))
  return [skeleton_plot.render_poses_3d([rotate_pose(p, r) for p in poses], styles=styles,
                                        labels=labels, size_px=size_px, radius=radius)
          for r in rotations]


def sweep_pictures(input_image: np.ndarray, other_views: Sequence[np.ndarray],
                   synthesized: np.ndarray, angles_deg: np.ndarray, rotations: np.ndarray,
                   pose_gt: np.ndarray | None = None, pose_pred: np.ndarray | None = None,
                   grid_columns: int = 8) -> tuple[np.ndarray, list[np.ndarray]]:
  """Arranges one example's sweep as a PNG grid and GIF frames.

  Args:
    input_image: `(H, W, 3)` uint8, the encoded view.
    other_views: the real images of the same instant from the other cameras.
    synthesized: `(N, H, W, 3)` uint8, the decoded views for `angles_deg` `(N,)`.
    rotations: `(N, 3, 3)` the camera-frame rotations used (for the skeletons).
    pose_gt, pose_pred: `(J, 3)` camera-frame poses of the input view, or None.
    grid_columns: how many sweep angles the PNG shows (evenly spaced).

  Returns:
    (grid `(H', W', 3)` uint8, GIF frames each `(H, W'', 3)` uint8).
  """
  synthesized = np.asarray(synthesized)
  if (synthesized.ndim != 4 or len(synthesized) != len(angles_deg)
      or len(rotations) != len(angles_deg)):
    raise ValueError(f"synthesized {synthesized.shape} must be (N, H, W, 3) with N = "
                     f"{len(angles_deg)} angles and {len(rotations)} rotations")
  size = np.asarray(input_image).shape[0]
  skeletons = skeleton_sweep(rotations, pose_gt, pose_pred, size_px=size)
  picks = np.unique(np.linspace(0, len(angles_deg) - 1, min(grid_columns, len(angles_deg)))
                    .round().astype(int))
  rows = [[_label(input_image, "input")]
          + [_label(v, f"view {i + 1}") for i, v in enumerate(other_views)],
          [_label(synthesized[i], f"{angles_deg[i]:+.0f}", size) for i in picks]]
  if skeletons:
    rows.append([skeletons[i] for i in picks])
  grid = image_grid.make_grid(rows)
  frames = []
  for i, angle in enumerate(angles_deg):
    cells = [_label(input_image, "input"), _label(synthesized[i], f"{angle:+.0f} deg", size)]
    if skeletons:
      cells.append(skeletons[i])
    frames.append(image_grid.make_grid([cells]))
  return grid, frames


def write_sweep(out_dir: str | os.PathLike, name: str, input_image: np.ndarray,
                other_views: Sequence[np.ndarray], synthesized: np.ndarray,
                angles_deg: np.ndarray, rotations: np.ndarray,
                pose_gt: np.ndarray | None = None, pose_pred: np.ndarray | None = None,
                fps: float = 8.0) -> tuple[pathlib.Path, pathlib.Path, np.ndarray]:
  """Writes `<out_dir>/<name>.png` (grid) and `<name>.gif` (sweep); returns paths and grid."""
  grid, frames = sweep_pictures(input_image, other_views, synthesized, angles_deg, rotations,
                                pose_gt, pose_pred)
  out_dir = pathlib.Path(out_dir)
  png = image_grid.save_png(out_dir / f"{name}.png", grid)
  gif = image_grid.save_gif(out_dir / f"{name}.gif", frames, fps=fps)
  return png, gif, grid


def display_available() -> bool:
  """Whether an interactive matplotlib window can open here."""
  if sys.platform in ("darwin", "win32"):
    return True
  return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def interactive_sweep(synthesize: Callable[[float], np.ndarray], input_image: np.ndarray,
                      camera_rotation: np.ndarray, pose_gt: np.ndarray | None = None,
                      pose_pred: np.ndarray | None = None) -> None:
  """Opens a window with a yaw slider (-180..180 degrees), as the original demo did.

  Args:
    synthesize: yaw in degrees -> `(H, W, 3)` uint8 synthesised view.
    input_image: `(H, W, 3)` the encoded view; camera_rotation `(3, 3)` its R_c.
  """
  if not display_available():
    raise RuntimeError("viz.interactive=True needs a display (DISPLAY is not set); the PNG "
                       "and GIF sweeps in <workdir>/viz/ show the same views")
  import matplotlib  # pylint: disable=g-import-not-at-top
  for backend in ("TkAgg", "QtAgg", "MacOSX"):
    try:
      matplotlib.use(backend, force=True)
      break
    except (ImportError, ValueError):
      continue
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.widgets import Slider  # pylint: disable=g-import-not-at-top

  fig = plt.figure(figsize=(9, 3.6))
  ax_in = fig.add_subplot(1, 3, 1)
  ax_out = fig.add_subplot(1, 3, 2)
  ax_pose = fig.add_subplot(1, 3, 3, projection="3d")
  ax_in.imshow(image_grid.to_uint8(input_image))
  ax_in.set_title("input")
  view = ax_out.imshow(synthesize(0.0))
  ax_out.set_title("synthesised")
  for ax in (ax_in, ax_out):
    ax.axis("off")
  slider = Slider(fig.add_axes((0.2, 0.03, 0.6, 0.04)), "yaw (deg)", -180.0, 180.0, valinit=0.0)

  def update(angle):
    view.set_data(synthesize(float(angle)))
    ax_pose.cla()
    rotation = yaw_rotations(camera_rotation, np.array([angle]))[0]
    for pose, style in ((pose_pred, "-"), (pose_gt, "--")):
      if pose is not None:
        rotated = rotate_pose(pose, rotation)
        skeleton_plot.plot_pose_3d(ax_pose, rotated - rotated[:1], linestyle=style)
    ax_pose.view_init(elev=10.0, azim=-90.0)
    fig.canvas.draw_idle()

  slider.on_changed(update)
  update(0.0)
  plt.show()


def _stamp(step: int) -> str:
  return f"step{step:07d}"


def draw_examples(examples: dict, synthesize: Callable[..., np.ndarray] | None,
                  out_dir: str | os.PathLike, step: int, num_sweeps: int = 2,
                  num_angles: int = 37,
                  predict_poses: Callable[[np.ndarray], np.ndarray] | None = None,
                  interactive: bool = False) -> dict[str, np.ndarray]:
  """The NVS pictures of a few test frames: a view grid and yaw sweeps.

  Args:
    examples: images, backgrounds `(N, V, H, W, 3)` uint8, R `(N, V, 3, 3)` world->camera,
      pose_3d_cam `(N, V, 17, 3)`, names; view 0 is the input.
    synthesize: (images `(M, H, W, 3)` uint8, backgrounds `(M, H, W, 3)` uint8, rotations
      `(M, 3, 3)`) -> `(M, S, S, 3)` uint8 views of each image under its rotation; None
      draws only the real views (and poses), no synthesis and no sweeps.
    out_dir: where `views_<step>.png` and `sweep<i>_<step>.{png,gif}` go.
    num_sweeps: examples that get a sweep; num_angles: angles from -180 to 180 degrees.
    predict_poses: input images `(N, H, W, 3)` -> `(N, 17, 3)` camera-frame poses, or None.
    interactive: also open the slider window for example 0 (where a display exists).

  Returns:
    {"nvs/views": grid, "nvs/sweep<i>": sweep grid} uint8 images for TensorBoard.
  """
  images, backgrounds, rotations = examples["images"], examples["backgrounds"], examples["R"]
  n, v = images.shape[:2]
  inputs = images[:, 0]
  drawn = None
  if synthesize is not None:
    # Each view re-drawn from view 0: rotation R_v R_0^T, view v's background.
    to_views = rotations @ np.swapaxes(rotations[:, :1], -1, -2)
    drawn = synthesize(np.repeat(inputs, v, axis=0),
                       backgrounds.reshape((n * v,) + backgrounds.shape[2:]),
                       to_views.reshape(n * v, 3, 3))
    drawn = drawn.reshape((n, v) + drawn.shape[1:])
  poses = predict_poses(inputs) if predict_poses is not None else None
  rows = []
  for i in range(n):
    row = [_label(inputs[i], "input")]
    if drawn is not None:
      row.append(_label(drawn[i, 0], "recon", images.shape[2]))
    for j in range(1, v):
      row.append(_label(images[i, j], f"real {j}"))
      if drawn is not None:
        row.append(_label(drawn[i, j], f"synth {j}", images.shape[2]))
    if poses is not None:
      row.append(skeleton_plot.render_poses_3d(
          [poses[i], examples["pose_3d_cam"][i, 0]], labels=["pred", "GT"],
          size_px=images.shape[2]))
    rows.append(row)
  out_dir = pathlib.Path(out_dir)
  grid = image_grid.make_grid(rows)
  image_grid.save_png(out_dir / f"views_{_stamp(step)}.png", grid)
  pictures = {"nvs/views": grid}
  if synthesize is None:
    return pictures

  angles = sweep_angles(num_angles)
  for i in range(min(num_sweeps, n)):
    yaws = yaw_rotations(rotations[i, 0], angles)
    frames = synthesize(np.repeat(inputs[i:i + 1], len(angles), axis=0),
                        np.repeat(backgrounds[i:i + 1, 0], len(angles), axis=0), yaws)
    _, _, sweep_grid = write_sweep(
        out_dir, f"sweep{i}_{_stamp(step)}", inputs[i], list(images[i, 1:]), frames, angles,
        yaws, pose_gt=examples["pose_3d_cam"][i, 0],
        pose_pred=None if poses is None else poses[i])
    pictures[f"nvs/sweep{i}"] = sweep_grid

  if interactive:
    if display_available():
      interactive_sweep(
          lambda angle: synthesize(inputs[:1], backgrounds[:1, 0],
                                   yaw_rotations(rotations[0, 0], np.array([angle])))[0],
          inputs[0], rotations[0, 0], pose_gt=examples["pose_3d_cam"][0, 0],
          pose_pred=None if poses is None else poses[0])
    else:
      logging.warning("viz.interactive=True but no display is available; see the sweeps "
                      "in %s", out_dir)
  return pictures

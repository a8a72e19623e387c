"""Pictures of SMPL-format bodies: prior samples, fitted meshes over the input views, and the
fitted mesh in 3D next to the ground-truth skeleton (matplotlib Agg, no display needed)."""

from __future__ import annotations

import functools
import os
import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg", force=False)
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import numpy as np  # noqa: E402

from geopose_jax import skeleton  # noqa: E402
from geopose_jax.body import procedural, raster, smpl  # noqa: E402
from geopose_jax.viz import image_grid, skeleton_plot  # noqa: E402

OVERLAY_COLOR = np.array([255, 140, 0], np.float32)


@functools.lru_cache(maxsize=2)
def _front_renderer(size: int):
  body = procedural.procedural_body()
  R = jnp.diag(jnp.array([1.0, -1.0, -1.0]))   # looks at the body's front, image y down
  t = jnp.array([0.0, -0.3, 3.2])
  K = jnp.array([[1.3 * size, 0.0, size / 2], [0.0, 1.3 * size, size / 2], [0.0, 0.0, 1.0]])

  @jax.jit
  def render(theta, beta):
    theta = theta.reshape(-1, 24, 3).at[:, 0].set(0.0)   # upright, facing the camera
    vertices, _ = smpl.smpl(body, theta, beta)
    def one(v):
      xy, depth = raster.project(v, R, t, K)
      return raster.soft_silhouette(xy, depth, body.faces, (size, size), sigma=0.3)
    return jax.vmap(one)(vertices)

  return render


def prior_sample_grid(gen_theta, gen_beta, real_theta, real_beta, size: int = 96) -> np.ndarray:
  """Rows of bodies (procedural body, global orientation removed): generated, then real."""
  render = _front_renderer(size)
  num_betas = procedural.procedural_body().num_betas
  rows = []
  for theta, beta in ((gen_theta, gen_beta), (real_theta, real_beta)):
    beta = np.asarray(beta, np.float32)[:, :num_betas]
    silhouettes = np.asarray(render(jnp.asarray(theta, jnp.float32), jnp.asarray(beta)))
    rows.append([np.repeat((255 * (1 - s))[..., None], 3, -1).astype(np.uint8)
                 for s in silhouettes])
  return image_grid.make_grid(rows)


def write_prior_samples(out_dir, gen_theta, gen_beta, real_theta, real_beta,
                        step: int) -> dict[str, np.ndarray]:
  grid = prior_sample_grid(gen_theta, gen_beta, real_theta, real_beta)
  image_grid.save_png(pathlib.Path(out_dir) / f"prior_samples_{int(step):07d}.png", grid)
  return {"prior_samples": grid}


def overlay(image: np.ndarray, silhouette: np.ndarray, alpha: float = 0.55) -> np.ndarray:
  """(H, W, 3) uint8 image, (H, W) silhouette in [0, 1] -> tinted uint8 image."""
  weight = alpha * np.clip(silhouette, 0.0, 1.0)[..., None]
  return ((1 - weight) * image.astype(np.float32) + weight * OVERLAY_COLOR).astype(np.uint8)


def mesh_and_skeleton_3d(vertices: np.ndarray, faces: np.ndarray, pose_gt: np.ndarray,
                         pose_fit: np.ndarray | None = None, size_px: int = 256,
                         title: str | None = None) -> np.ndarray:
  """The fitted mesh (camera frame, mm) as a shaded surface beside the ground-truth H36M
  skeleton (solid) and, if given, the fitted one (dashed). Returns (size, size, 3) uint8."""
  root = pose_gt[0]
  fig = Figure(figsize=(size_px / 100.0, size_px / 100.0), dpi=100)
  FigureCanvasAgg(fig)
  fig.subplots_adjust(0, 0, 1, 1)
  ax = fig.add_subplot(111, projection="3d")
  plot = skeleton_plot.camera_to_plot(vertices - root)
  keep = faces[:: max(1, len(faces) // 3000)]
  ax.plot_trisurf(plot[:, 0], plot[:, 1], plot[:, 2], triangles=keep, color="orange",
                  alpha=0.35, linewidth=0.0, shade=True)
  skeleton_plot.plot_pose_3d(ax, pose_gt - root, linewidth=2.5, label="ground truth")
  if pose_fit is not None:
    skeleton_plot.plot_pose_3d(ax, pose_fit - root, linestyle="--", linewidth=1.5,
                               label="fitted")
  extent = float(np.abs(skeleton_plot.camera_to_plot(pose_gt - root)).max()) * 1.1 + 1e-6
  skeleton_plot.set_equal_3d(ax, np.zeros(3), extent)
  ax.set_box_aspect((1, 1, 1), zoom=1.4)   # the picture is small in the grid: fill it
  ax.view_init(elev=10.0, azim=-70.0)
  ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
  if title:
    ax.set_title(title, fontsize=8)
  return image_grid.figure_to_image(fig)


def fit_row(images: np.ndarray, silhouettes: np.ndarray, masks: np.ndarray,
            vertices: np.ndarray, faces: np.ndarray, pose_gt: np.ndarray,
            pose_fit: np.ndarray | None = None) -> list[np.ndarray]:
  """One test frame: each view with the fitted silhouette (orange) and the mask outline,
  then the 3D picture. images (V, H, W, 3), silhouettes/masks (V, H, W)."""
  row = []
  for image, sil, mask in zip(images, silhouettes, masks):
    tinted = overlay(image, sil)
    edge = mask.astype(bool) ^ np.pad(mask.astype(bool), 1, mode="edge")[1:-1, :-2]
    tinted[edge] = (0, 200, 255)
    row.append(tinted)
  row.append(mesh_and_skeleton_3d(vertices, faces, pose_gt, pose_fit,
                                  size_px=images.shape[1] * 2))
  return row


def write_fit_pictures(out_dir: str | os.PathLike, rows: list[list[np.ndarray]],
                       step: int) -> dict[str, np.ndarray]:
  grid = image_grid.make_grid(rows)
  image_grid.save_png(pathlib.Path(out_dir) / f"smpl_fits_{int(step):07d}.png", grid)
  return {"smpl_fits": grid}


__all__ = ["fit_row", "mesh_and_skeleton_3d", "overlay", "prior_sample_grid",
           "write_fit_pictures", "write_prior_samples", "skeleton"]

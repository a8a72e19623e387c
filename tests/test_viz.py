"""Pictures: grids, atomic PNG/GIF writing, skeleton renders, yaw-sweep geometry and layout."""

import numpy as np
from PIL import Image
import pytest

from geopose_jax import skeleton
from geopose_jax.viz import image_grid
from geopose_jax.viz import nvs_sweep
from geopose_jax.viz import skeleton_plot


def test_make_grid_places_cells_and_resizes():
  red = np.zeros((4, 6, 3), np.uint8)
  red[..., 0] = 255
  green = np.zeros((2, 3, 3), np.uint8)
  green[..., 1] = 255
  grid = image_grid.make_grid([[red, green], [red]], pad=1, pad_value=0)
  assert grid.shape == (2 * (4 + 1) + 1, 2 * (6 + 1) + 1, 3)
  np.testing.assert_array_equal(grid[1:5, 1:7], red)
  np.testing.assert_array_equal(grid[1:5, 8:14, 1], 255)  # green, resized to 4x6
  np.testing.assert_array_equal(grid[6:10, 8:14], 0)  # missing cell stays padding


def test_to_uint8_clips_floats():
  out = image_grid.to_uint8(np.array([[[-1.0, 0.5, 2.0]]]))
  np.testing.assert_array_equal(out, [[[0, 128, 255]]])


def test_png_and_gif_round_trip(tmp_path):
  frames = [np.full((5, 7, 3), v, np.uint8) for v in (0, 120, 250)]
  png = image_grid.save_png(tmp_path / "a" / "x.png", frames[1])
  np.testing.assert_array_equal(np.asarray(Image.open(png)), frames[1])
  gif = image_grid.save_gif(tmp_path / "x.gif", frames, fps=5)
  with Image.open(gif) as image:
    assert image.n_frames == 3
  assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["x.gif", "x.png"]
  with pytest.raises(ValueError, match="differ in size"):
    image_grid.save_gif(tmp_path / "bad.gif", [frames[0], np.zeros((3, 3, 3), np.uint8)])
  assert not (tmp_path / "bad.gif").exists()


def test_yaw_rotation_turns_about_the_world_vertical_seen_from_the_camera():
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  r_c = q * np.sign(np.linalg.det(q))
  angles = np.array([-180.0, -30.0, 0.0, 90.0])
  rotations = nvs_sweep.yaw_rotations(r_c, angles)
  world = rng.normal(size=(6, 3))
  for angle, rotation in zip(angles, rotations):
    a = np.deg2rad(angle)
    r_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    # Turning the world by R_z and viewing it with the same camera.
    expected = (world @ r_z.T) @ r_c.T
    np.testing.assert_allclose((world @ r_c.T) @ rotation.T, expected, atol=1e-5)
  np.testing.assert_allclose(rotations[2], np.eye(3), atol=1e-6)


def test_rotate_pose_keeps_root_and_bone_lengths():
  rng = np.random.default_rng(1)
  pose = rng.normal(size=(17, 3)) * 300 + [0, 0, 4000]
  rotation = nvs_sweep.yaw_rotations(np.eye(3), np.array([70.0]))[0]
  turned = nvs_sweep.rotate_pose(pose, rotation)
  np.testing.assert_allclose(turned[0], pose[0])
  parents = np.array(skeleton.H36M_PARENTS)
  bones = lambda p: np.linalg.norm(p[1:] - p[parents[1:]], axis=-1)  # noqa: E731
  np.testing.assert_allclose(bones(turned), bones(pose), rtol=1e-5)


def test_skeleton_render_draws_pixels_and_rejects_bad_shapes():
  pose = np.zeros((17, 3))
  pose[:, 1] = -np.arange(17) * 50.0  # a vertical line of joints
  image = skeleton_plot.render_poses_3d([pose], size_px=96)
  assert image.shape == (96, 96, 3) and image.dtype == np.uint8
  assert (image.min(axis=-1) < 200).any()  # something was drawn
  with pytest.raises(ValueError, match=r"\(17, 3\)"):
    skeleton_plot.render_poses_3d([np.zeros((16, 3))])
  overlay = skeleton_plot.render_pose_2d_on_image(np.full((32, 32, 3), 255, np.uint8),
                                                  np.random.default_rng(0).uniform(4, 28, (17, 2)))
  assert overlay.shape == (32, 32, 3) and (overlay < 250).any()


def test_draw_examples_writes_grid_and_sweeps(tmp_path):
  rng = np.random.default_rng(0)
  n, v, h = 2, 4, 16
  examples = {
      "images": rng.integers(0, 255, (n, v, h, h, 3), dtype=np.uint8),
      "backgrounds": rng.integers(0, 255, (n, v, h, h, 3), dtype=np.uint8),
      "R": np.broadcast_to(np.eye(3, dtype=np.float32), (n, v, 3, 3)).copy(),
      "pose_3d_cam": rng.normal(size=(n, v, 17, 3)) * 200,
      "names": ["a", "b"],
  }
  calls = []

  def synthesize(images, backgrounds, rotations):
    calls.append(len(images))
    return backgrounds[:, ::2, ::2]  # "draws" the given background at half size

  pictures = nvs_sweep.draw_examples(
      examples, synthesize, tmp_path, step=3, num_sweeps=1, num_angles=5,
      predict_poses=lambda images: examples["pose_3d_cam"][:, 0] + 10.0)
  assert calls == [n * v, 5]
  assert set(pictures) == {"nvs/views", "nvs/sweep0"}
  names = sorted(p.name for p in tmp_path.iterdir())
  assert names == ["sweep0_step0000003.gif", "sweep0_step0000003.png", "views_step0000003.png"]
  with Image.open(tmp_path / "sweep0_step0000003.gif") as gif:
    assert gif.n_frames == 5

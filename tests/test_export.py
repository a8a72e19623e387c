"""Prediction outputs: BVH round trip (ours and a third-party reader), MP4/GIF frame counts,
npz/JSON contents, and an output folder that appears whole or not at all."""

import json
import os

import numpy as np
import pytest

from geopose_jax import skeleton
from geopose_jax.data import bvh as bvh_reader
from geopose_jax.errors import InputError
from geopose_jax.export import bvh_writer, poses, render, staged_output, write_sequence


def _constant_bone_poses(n=12, seed=0):
  """(n, 17, 3) camera-frame mm poses with fixed bone lengths and moving directions."""
  rng = np.random.default_rng(seed)
  lengths = rng.uniform(100, 450, 17)
  base = rng.normal(size=(17, 3))
  out = np.zeros((n, 17, 3))
  out[:, 0] = [0, 0, 4000] + rng.normal(scale=50, size=(n, 3))
  for j, p in enumerate(skeleton.H36M_PARENTS):
    if p >= 0:
      d = base[j] + 0.4 * rng.normal(size=(n, 3))
      out[:, j] = out[:, p] + lengths[j] * d / np.linalg.norm(d, axis=-1, keepdims=True)
  return out


def _our_fk(path):
  motion = bvh_reader.read_bvh(path)
  positions = bvh_reader.joint_positions(motion)
  index = [motion.names.index(n) for n in bvh_writer.BVH_JOINT_NAMES]
  return bvh_writer.bvh_to_camera(positions[:, index]), motion


def test_bvh_round_trip_ours_within_1mm(tmp_path):
  p = _constant_bone_poses()
  path = tmp_path / "m.bvh"
  bvh_writer.write_bvh(path, p, fps=25)
  back, motion = _our_fk(path)
  assert motion.num_frames == len(p) and motion.frame_time == pytest.approx(0.04)
  assert np.abs(back - p).max() < 1.0


def test_bvh_uses_median_bone_lengths(tmp_path):
  p = _constant_bone_poses(9)
  stretched = p.copy()
  stretched[4, 3] = p[4, 2] + 2 * (p[4, 3] - p[4, 2])  # one long shin in one frame
  path = tmp_path / "m.bvh"
  bvh_writer.write_bvh(path, stretched)
  back, _ = _our_fk(path)
  shin = np.linalg.norm(back[:, 3] - back[:, 2], axis=-1)
  np.testing.assert_allclose(shin, np.linalg.norm(p[0, 3] - p[0, 2]), rtol=1e-5)
  assert np.abs(back[np.arange(9) != 4] - p[np.arange(9) != 4]).max() < 1.0


def _rot(axis, deg):
  a = np.radians(deg)
  c, s = np.cos(a), np.sin(a)
  i, j = [(1, 2), (2, 0), (0, 1)]["XYZ".index(axis)]
  m = np.eye(3)
  m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
  return m


def test_euler_zxy_inverts_rz_rx_ry():
  rng = np.random.default_rng(0)
  for z, x, y in rng.uniform([-170, -80, -170], [170, 80, 170], (20, 3)):
    m = _rot("Z", z) @ _rot("X", x) @ _rot("Y", y)
    np.testing.assert_allclose(bvh_writer.euler_zxy_degrees(m), [z, x, y], atol=1e-8)


def test_euler_zxy_at_gimbal_lock_rebuilds_the_rotation():
  for x in (90.0, -90.0):
    m = _rot("Z", 30) @ _rot("X", x) @ _rot("Y", 50)
    z, x2, y = bvh_writer.euler_zxy_degrees(m)
    np.testing.assert_allclose(_rot("Z", z) @ _rot("X", x2) @ _rot("Y", y), m, atol=1e-9)


def test_bvh_third_party_reader(tmp_path):
  bvh = pytest.importorskip("bvh")
  p = _constant_bone_poses(6)
  path = tmp_path / "m.bvh"
  bvh_writer.write_bvh(path, p, fps=50)
  ours = bvh_reader.read_bvh(path)
  theirs = bvh.Bvh(path.read_text())
  assert theirs.nframes == 6 and theirs.frame_time == pytest.approx(0.02)
  joints = [n for n in ours.names if not n.endswith("_end")]
  assert theirs.get_joints_names() == joints
  # Independent forward kinematics over the third-party reader's offsets and channels.
  world = {}
  for name in joints:
    parent = theirs.joint_parent(name)
    offset = np.asarray(theirs.joint_offset(name))
    chans = theirs.joint_channels(name)
    frames = np.asarray(theirs.frames_joint_channels(name, chans), np.float64)
    for f in range(6):
      values = dict(zip(chans, frames[f]))
      rot = np.eye(3)
      for ch in chans:
        if ch.endswith("rotation"):
          rot = rot @ _rot(ch[0], values[ch])
      if parent is None:
        pos = offset + [values["Xposition"], values["Yposition"], values["Zposition"]]
        world[name, f] = (rot, pos)
      else:
        prot, ppos = world[parent.name, f]
        world[name, f] = (prot @ rot, ppos + prot @ offset)
  got = np.array([[world[n, f][1] for n in bvh_writer.BVH_JOINT_NAMES] for f in range(6)])
  assert np.abs(bvh_writer.bvh_to_camera(got) - p).max() < 1.0


def test_bvh_bad_input():
  with pytest.raises(InputError, match="NaN"):
    bvh_writer.solve_motion(np.full((2, 17, 3), np.nan))
  with pytest.raises(InputError, match=r"\(frames >= 1, 17, 3\)"):
    bvh_writer.solve_motion(np.zeros((0, 17, 3)))


def test_poses_npz_and_json(tmp_path):
  p = _constant_bone_poses(3)
  conf = np.full((3, 17), 0.5)
  npz_path, json_path = poses.write_poses(tmp_path, [4, 5, 6], p, conf,
                                          {"beta": np.ones((3, 10))}, name="clip")
  with np.load(npz_path) as z:
    np.testing.assert_allclose(z["poses_3d_mm"], p, rtol=1e-6)
    np.testing.assert_array_equal(z["frames"], [4, 5, 6])
    assert z["beta"].shape == (3, 10) and str(z["sequence"]) == "clip"
  doc = json.loads(open(json_path).read())
  assert doc["joint_names"][0] == "Hip" and doc["units"] == "mm"
  np.testing.assert_allclose(doc["poses_3d_mm"], p, atol=1e-3)


def test_mp4_and_gif_frame_counts(tmp_path):
  av = pytest.importorskip("av")
  p = _constant_bone_poses(7)
  p2 = p[..., :2] / p[..., 2:] * 500 + [320, 240]
  frames = list(render.render_frames(p, p2, (640, 480), panel=96))
  assert frames[0].shape == (96, 96 + 96, 3) and frames[0].dtype == np.uint8
  assert render.write_mp4(tmp_path / "r.mp4", frames, fps=10, show_progress=False) == 7
  with av.open(str(tmp_path / "r.mp4")) as container:
    assert sum(1 for _ in container.decode(video=0)) == 7
  assert render.write_gif(tmp_path / "r.gif", frames, fps=10, max_frames=3) == 3
  import PIL.Image
  with PIL.Image.open(tmp_path / "r.gif") as gif:
    assert gif.n_frames == 3


def test_skeleton_window_fits_the_sequence():
  pts = np.array([[[100.0, 200.0], [300.0, 250.0]]])
  scale, origin = render.skeleton_window(pts, 120, margin=0.1)
  mapped = (pts - origin) * scale
  # Side 200 * 1.2 = 240 px -> 120: scale 0.5, centred at (200, 225) -> (60, 60).
  assert scale == pytest.approx(0.5)
  np.testing.assert_allclose(mapped[0], [[10, 47.5], [110, 72.5]])


def test_render_with_input_frames_on_the_left():
  p = _constant_bone_poses(2)
  p2 = np.full((2, 17, 2), 10.0)
  frame = np.zeros((48, 64, 3), np.uint8)
  frame[:, :, 1] = 200  # green input frames
  out = list(render.render_frames(p, p2, (64, 48), images=[frame, frame], panel=48))
  assert out[0].shape == (48, 64 + 48, 3)
  np.testing.assert_array_equal(out[1][40, 60], [0, 200, 0])  # a pixel of the input frame
  with pytest.raises(InputError, match="fewer frames"):
    list(render.render_frames(p, p2, (64, 48), images=[frame], panel=48))


def test_staged_output_whole_or_nothing(tmp_path):
  target = tmp_path / "out"
  p = _constant_bone_poses(4)
  with pytest.raises(RuntimeError):
    with staged_output(target) as tmp:
      write_sequence(tmp, "a", np.arange(4), p, np.ones((4, 17)), p[..., :2] / 10,
                     (640, 480), video=False, gif=False, show_progress=False)
      raise RuntimeError("fails after the first sequence")
  assert not target.exists() and os.listdir(tmp_path) == []
  with staged_output(target) as tmp:
    write_sequence(tmp, "a", np.arange(4), p, np.ones((4, 17)), p[..., :2] / 10 + 300,
                   (640, 480), gif=True, video=True, show_progress=False)
  assert sorted(os.listdir(target / "a")) == ["motion.bvh", "poses_3d.json",
                                              "poses_3d.npz", "render.gif", "render.mp4"]
  with pytest.raises(InputError, match="exists and is not empty"):
    with staged_output(target):
      pass


def test_long_sequence_gif_keeps_every_kth_frame(tmp_path):
  import PIL.Image
  p = np.resize(_constant_bone_poses(4), (160, 17, 3))
  out = write_sequence(tmp_path, "long", np.arange(160), p, np.ones((160, 17)),
                       p[..., :2] / 10 + 300, (640, 480), fps=50, video=False,
                       show_progress=False)
  with PIL.Image.open(os.path.join(out, "render.gif")) as gif:
    assert gif.n_frames == 80  # 160 frames, at most 150 kept: every 2nd
    assert gif.info["duration"] == 40  # 2 frames at 50 fps

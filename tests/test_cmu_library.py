"""The packaged CMU motion library: conversion of each skeleton variant, and what was left out."""

import numpy as np
import pytest

from data_prep import cmu_library
from geopose_jax.data import bvh
from geopose_jax.data import motion
from geopose_jax.data import motion_library
from geopose_jax.errors import InputError

_PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15])


def _bones(poses):
  return np.linalg.norm(poses[:, 1:] - poses[:, _PARENTS[1:]], axis=-1)


def _info(clip):
  return {c.clip: c for c in motion_library.clips()}[clip]


def test_library_matches_the_bvh_reader_on_the_bundled_clips():
  """T-pose dropped, 120 -> 50 fps, float16 rotations: the same poses as the BVH path."""
  for clip in ("02_01", "02_03", "16_01"):
    direct, _ = motion.clip_poses(motion.clip_path(clip), fps=50.0)
    stored = motion.library_poses(clip)
    assert stored.shape == direct.shape
    assert np.abs(stored - direct).max() < 1.0  # mm, float16 quaternions (measured 0.5)


def test_salsa_is_read_at_60_fps_and_rescaled():
  info = _info("60_01")
  assert info.skeleton == "cgspeed-Daz" and info.source_fps == 60.0
  assert info.header_fps == pytest.approx(120.0, rel=1e-3)
  assert info.dropped_frames == 0  # the salsa files have no T-pose frame
  assert info.num_frames == int((info.source_frames - 1) / 60.0 * 50.0 + 1e-6) + 1
  # The same generic Daz figure as the centimetre-unit Daz clips: the rescale is undone.
  salsa, other = _bones(motion.library_poses("60_01")[:1]), _bones(
      motion.library_poses("12_01")[:1])
  np.testing.assert_allclose(salsa, other, rtol=0.01)
  assert 300 < salsa[0, 1] < 500  # thigh, mm


def test_2008_names_are_renamed_to_the_later_release():
  clip = motion_library.load_clip("94_01")
  assert clip.info.skeleton == "cgspeed-MB" and "LeftUpLeg" in clip.joints
  assert "LeftHip" not in clip.joints and clip.info.dropped_frames == 0
  poses = motion.library_poses("94_01")
  shoulders = np.linalg.norm(poses[:, 11] - poses[:, 14], axis=-1)
  # 'LeftShoulder' was the collar in 2008: mapped by the old name, this would be ~half.
  assert 250 < np.median(shoulders) < 450


def test_tpose_frame_is_dropped_and_first_frames_are_motion():
  for clip in ("07_12", "09_10", "02_04"):
    info = _info(clip)
    assert info.dropped_frames >= 1
    poses = motion.library_poses(clip)
    root_step = np.linalg.norm(np.diff(poses[:, 0], axis=0), axis=-1)
    assert root_step.max() < 12000.0 / 50.0  # mm per frame: no T-pose jump left
    assert 1300 < np.median(poses[:, 10, 2]) < 1900  # head top over a floor at 0


def test_rejected_clips_are_listed_with_the_reason():
  rejected = {r["clip"]: r["reason"] for r in motion_library.rejected()}
  assert "calibration pose" in rejected["105_06"]
  assert "discontinuous" in rejected["03_02"]
  kept = {c.clip for c in motion_library.clips()}
  assert not kept & set(rejected) and len(kept) >= 240


def test_unknown_skeleton_and_short_clip_are_refused():
  tiny = bvh.parse_bvh("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition "
                       "Yposition Zposition\n End Site\n {\n  OFFSET 0 1 0\n }\n}\nMOTION\n"
                       "Frames: 2\nFrame Time: 0.01\n0 0 0\n0 0 0\n")
  with pytest.raises(InputError, match="not a cgspeed CMU skeleton"):
    cmu_library.convert_clip(tiny, fps=100.0, tpose_frame0=False, salsa_rescaled=False)
  clip = bvh.read_bvh(motion.clip_path("02_03"))
  short = bvh.BvhMotion(clip.names, clip.parents, clip.offsets, clip.channels,
                        clip.motion[:20], clip.frame_time)
  with pytest.raises(InputError, match="need at least 25"):
    cmu_library.convert_clip(short, fps=120.0, tpose_frame0=True, salsa_rescaled=False)


def test_discontinuous_root_is_refused():
  clip = bvh.read_bvh(motion.clip_path("02_03"))
  table = clip.motion.copy()
  table[100:, 0] += 50.0  # 2.8 m in one 1/120 s step
  broken = bvh.BvhMotion(clip.names, clip.parents, clip.offsets, clip.channels, table,
                         clip.frame_time)
  with pytest.raises(InputError, match="root jumps .* frames 98 and 99"):
    cmu_library.convert_clip(broken, fps=120.0, tpose_frame0=True, salsa_rescaled=False)


def test_packaged_assets_stay_small():
  import pathlib
  root = pathlib.Path(motion_library.default_library_dir()).parent
  size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
  assert size < 60e6

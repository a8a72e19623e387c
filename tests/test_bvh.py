"""BVH parsing and forward kinematics against hand-computed poses and the bundled clips."""

import numpy as np
import pytest

from geopose_jax.data import bvh
from geopose_jax.data import motion
from geopose_jax.errors import InputError

_TINY = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Chest
  {
    OFFSET 0 2 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT Arm
    {
      OFFSET 1 0 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      End Site
      {
        OFFSET 0 0 3
      }
    }
  }
  JOINT Leg
  {
    OFFSET 0 -1 0
    CHANNELS 3 Zrotation Yrotation Xrotation
  }
}
MOTION
Frames: 3
Frame Time: 0.5
0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
10 20 30 0 90 0 0 0 0 0 0 0 0 0 0
0 0 0 0 0 0 90 0 0 0 0 90 0 0 0
"""


def _rz(deg):
  a = np.deg2rad(deg)
  return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _rx(deg):
  a = np.deg2rad(deg)
  return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def test_parse_hierarchy_and_frames():
  m = bvh.parse_bvh(_TINY)
  assert m.names == ("Hips", "Chest", "Arm", "Arm_end", "Leg")
  np.testing.assert_array_equal(m.parents, [-1, 0, 1, 2, 0])
  assert m.channels[3] == () and len(m.channels[0]) == 6
  assert m.motion.shape == (3, 15) and m.fps == pytest.approx(2.0)


def test_forward_kinematics_matches_hand_computation():
  positions = bvh.joint_positions(bvh.parse_bvh(_TINY))
  # Frame 0: rest pose.
  np.testing.assert_allclose(positions[0], [[0, 0, 0], [0, 2, 0], [1, 2, 0], [1, 2, 3],
                                            [0, -1, 0]], atol=1e-12)
  # Frame 1: root at (10, 20, 30) turned +90 deg about Y: x -> -z, z -> x.
  np.testing.assert_allclose(positions[1], [[10, 20, 30], [10, 22, 30], [10, 22, 29],
                                            [13, 22, 29], [10, 19, 30]], atol=1e-12)
  # Frame 2: Chest Z by 90 deg then Arm X by 90 deg (intrinsic, global = parent @ local).
  chest = np.array([0, 2, 0.0])
  arm = chest + _rz(90) @ [1, 0, 0]
  end = arm + _rz(90) @ _rx(90) @ [0, 0, 3]
  np.testing.assert_allclose(positions[2, 1:4], [chest, arm, end], atol=1e-12)


def test_bad_input_gives_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.bvh"):
    bvh.read_bvh(tmp_path / "nope.bvh")
  bad = tmp_path / "bad.bvh"
  bad.write_text(_TINY.replace("Frames: 3", "Frames: 4"))
  with pytest.raises(InputError, match=r"bad.bvh, line 31: 3 frames .* Frames: 4"):
    bvh.read_bvh(bad)
  with pytest.raises(KeyError, match="Neck"):
    bvh.parse_bvh(_TINY).index("Neck")


def test_bundled_clip_has_expected_layout():
  m = bvh.read_bvh(motion.clip_path("02_03"))
  assert m.num_frames == 174 and m.fps == pytest.approx(120.0, rel=1e-4)
  assert len(m.names) == 38 and m.motion.shape == (174, 96)
  assert m.channels[0] == ("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation",
                           "Xrotation")


_LAST_FRAME = "0 0 0 0 0 0 90 0 0 0 0 90 0 0 0"


@pytest.mark.parametrize("old, new, message", [
    ("Frames: 3", "Frames: three", r"line 27: Frames: must be an integer, found 'three'"),
    ("Frame Time: 0.5", "Frame Time: 0", r"line 28: Frame Time: 0; expected a positive"),
    ("OFFSET 1 0 0", "OFFSET 1 x 0", r"line 12: OFFSET of 'Arm' must be a number"),
    (_LAST_FRAME, _LAST_FRAME.replace("90", "abc", 1), r"line 31: .*found 'abc'"),
    (_LAST_FRAME, _LAST_FRAME + " 7", r"line 31: 16 values in this frame; .* 15 channels"),
    (_LAST_FRAME, _LAST_FRAME.replace("90", "nan", 1), r"line 31: motion value nan in channel 6"),
    ("10 20 30", "10 inf 30", r"line 30: motion value inf in channel 1"),
    ("MOTION\nFrames: 3\nFrame Time: 0.5\n", "", r"no 'Frame Time:' line"),
    ("CHANNELS 3 Zrotation Yrotation Xrotation\n    JOINT Arm", "CHANNELS 3 Zrotation\n"
     "    JOINT Arm", r"line 10: 'JOINT' is not a channel \(joint 'Chest' declares 3"),
])
def test_malformed_file_names_the_file_and_line(tmp_path, old, new, message):
  assert old in _TINY
  path = tmp_path / "clip.bvh"
  path.write_text(_TINY.replace(old, new, 1))
  with pytest.raises(InputError, match=r"clip.bvh.*" + message):
    bvh.read_bvh(path)


def test_gzipped_file_reads_the_same(tmp_path):
  import gzip
  path = tmp_path / "clip.bvh.gz"
  with gzip.open(path, "wt") as f:
    f.write(_TINY)
  np.testing.assert_array_equal(bvh.read_bvh(path).motion, bvh.parse_bvh(_TINY).motion)
  (tmp_path / "broken.bvh.gz").write_bytes(b"not gzip at all")
  with pytest.raises(InputError, match="broken.bvh.gz"):
    bvh.read_bvh(tmp_path / "broken.bvh.gz")

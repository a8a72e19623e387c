"""The shipped example (examples/synthetic_S9_coco17.json) and the script that makes it."""

import importlib.util
import os
import pathlib

import numpy as np

from geopose_jax.data import motion_plan
from geopose_jax.geometry import cameras
from geopose_jax.keypoints import read_keypoints

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "synthetic_S9_coco17.json"


def _script():
  spec = importlib.util.spec_from_file_location("make_coco_example",
                                                ROOT / "scripts" / "make_coco_example.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_face_points_on_a_hand_made_head():
  pose = np.zeros((1, 17, 3))
  pose[0, 9] = (0, 0, 0)
  pose[0, 10] = (0, 10, 0)  # up = +y, L = 10
  pose[0, 11], pose[0, 14] = (5, 0, 0), (-5, 0, 0)  # left = +x, forward = x cross y = +z
  face = _script().face_points(pose)[0]
  np.testing.assert_allclose(face[0], (0, 3.5, 5))  # nose
  np.testing.assert_allclose(face[1], (1.7, 5.5, 4.2))  # left eye
  np.testing.assert_allclose(face[2], (-1.7, 5.5, 4.2))
  np.testing.assert_allclose(face[3], (4.2, 4.5, 0))  # left ear
  np.testing.assert_allclose(face[4], (-4.2, 4.5, 0))


def test_example_file_is_the_projected_held_out_clip():
  assert EXAMPLE.stat().st_size < 1_000_000
  seq, = read_keypoints(EXAMPLE)
  clip = motion_plan.subject_sequences("S9")[0]
  # A clip of a CMU subject no training subject's motion comes from.
  assert clip.sequence.split("_")[0] in motion_plan.TEST_CMU_SUBJECTS
  camera = cameras.load_h36m_cameras("S9")[0]
  cam = cameras.world_to_camera(np.asarray(clip.poses_world, np.float64), camera)
  pixels = np.asarray(cameras.project_distorted(cam, camera))
  assert seq.num_frames == len(pixels) and not seq.interpolated.any()
  assert (seq.width, seq.height) == tuple(int(v) for v in np.asarray(camera.res))
  limbs = [1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16]
  np.testing.assert_allclose(seq.pose_2d_px[:, limbs], pixels[:, limbs], atol=0.01)
  # The synthesised joints differ from the mocap ones by a detector-like amount.
  gap = np.linalg.norm(seq.pose_2d_px - pixels, axis=-1).max(axis=0)
  assert gap[0] < 2 and (gap[[8, 9, 10]] < 40).all()
  assert os.path.basename(seq.source) == EXAMPLE.name


def test_normalisation_is_the_pose_builders():
  from data_prep.h36m_poses import h36m_poses_dataset_builder as builder
  from geopose_jax.keypoints import normalized_pose_2d
  seq, = read_keypoints(EXAMPLE)
  camera = {"res": np.array([seq.width, seq.height], np.float32)}
  np.testing.assert_array_equal(normalized_pose_2d(seq),
                                builder._normalise(seq.pose_2d_px, camera))

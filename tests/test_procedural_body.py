"""The procedural SMPL-format body: format, skeleton, weights, regressor, shapes, posing."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geopose_jax import skeleton
from geopose_jax.body import procedural, smpl

NAMES = skeleton.SMPL_JOINT_NAMES


@pytest.fixture(scope="module")
def body():
  return procedural.procedural_body()


def test_smpl_format_and_name(body):
  assert "not SMPL" in body.name
  assert body.parents == skeleton.SMPL_PARENTS
  assert 2000 <= body.num_vertices <= 8000
  assert body.posedirs.shape == (body.num_vertices, 3, 207) and not np.any(body.posedirs)
  assert body.shapedirs.shape == (body.num_vertices, 3, len(procedural.SHAPE_DIRECTIONS))
  np.testing.assert_allclose(body.weights.sum(1), 1.0, atol=1e-5)
  assert body.weights.min() >= 0


def test_mesh_is_closed(body):
  # Every edge of a closed surface is shared by exactly two faces.
  edges = collections.Counter()
  for a, b, c in body.faces:
    for u, v in ((a, b), (b, c), (c, a)):
      edges[(min(u, v), max(u, v))] += 1
  assert set(edges.values()) == {2}


def test_regressor_reproduces_the_t_pose_skeleton(body):
  joints, _ = procedural.rest_skeleton()
  np.testing.assert_allclose(body.J_regressor @ body.v_template, joints, atol=1e-5)
  # T-pose: arms level at shoulder height, left side at +x, feet below the knees.
  j = dict(zip(NAMES, joints))
  assert j["left_wrist"][0] > j["left_elbow"][0] > j["left_shoulder"][0] > 0
  assert abs(j["left_wrist"][1] - j["left_shoulder"][1]) < 0.03
  assert j["left_ankle"][1] < j["left_knee"][1] < j["left_hip"][1]


def test_skinning_weights_follow_the_limbs(body):
  weights = np.asarray(body.weights)
  v = np.asarray(body.v_template)
  # A vertex at the middle of the left forearm moves with the left elbow joint.
  forearm = np.argmin(np.linalg.norm(v - np.array([0.57, 0.26, -0.04]), axis=1))
  assert NAMES[np.argmax(weights[forearm])] == "left_elbow"
  # Nothing on the right half of the body depends on a left joint.
  left = [i for i, n in enumerate(NAMES) if n.startswith("left_")]
  assert weights[v[:, 0] < -0.2][:, left].max() == 0


def test_shape_directions_do_what_they_say(body):
  def rest(beta_index, value=2.0):
    beta = np.zeros(body.num_betas)
    beta[beta_index] = value
    vertices = body.v_template + body.shapedirs @ beta
    return vertices, body.J_regressor @ vertices

  base_v, base_j = rest(0, 0.0)
  height = lambda v: v[:, 1].max() - v[:, 1].min()  # noqa: E731
  index = procedural.SHAPE_DIRECTIONS.index
  assert height(rest(index("stature"))[0]) > height(base_v) + 0.1
  _, legs = rest(index("leg_length"))
  ankle, hip = NAMES.index("left_ankle"), NAMES.index("left_hip")
  assert legs[ankle, 1] < base_j[ankle, 1] - 0.05           # joints move with the surface
  assert abs(legs[hip, 1] - base_j[hip, 1]) < 0.01
  girth_v, girth_j = rest(index("girth"))
  waist = (np.abs(base_v[:, 1]) < 0.05) & (np.abs(base_v[:, 0]) < 0.3)
  assert np.ptp(girth_v[waist, 0]) > np.ptp(base_v[waist, 0]) + 0.03
  np.testing.assert_allclose(girth_j, base_j, atol=0.02)  # girth barely moves the joints


def test_bending_the_left_knee(body):
  theta = np.zeros((24, 3), np.float32)
  theta[NAMES.index("left_knee")] = [np.pi / 2, 0.0, 0.0]  # about +x: shin swings back
  vertices, joints = jax.jit(smpl.smpl)(body, jnp.asarray(theta), jnp.zeros(10))
  vertices, joints = np.asarray(vertices), np.asarray(joints)
  rest, _ = procedural.rest_skeleton()
  knee, ankle = NAMES.index("left_knee"), NAMES.index("left_ankle")
  shin = rest[ankle] - rest[knee]
  rotated = np.array([shin[0], -shin[2], shin[1]])   # R_x(90 deg) applied to the shin
  np.testing.assert_allclose(joints[ankle], rest[knee] + rotated, atol=1e-5)
  right = np.asarray(body.v_template)[:, 0] < -0.02
  np.testing.assert_allclose(vertices[right], np.asarray(body.v_template)[right], atol=1e-6)
  # The left foot's vertices end up behind the knee, at about the knee's height.
  foot = np.asarray(body.weights)[:, NAMES.index("left_foot")] > 0.9
  assert np.all(vertices[foot, 2] < rest[knee, 2] - 0.3)
  assert np.all(np.abs(vertices[foot, 1] - rest[knee, 1]) < 0.25)

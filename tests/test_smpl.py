"""SMPL kernel against a loop implementation in numpy; model files (.pkl with chumpy, .npz)."""

import pickle
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from scipy.spatial.transform import Rotation

from geopose_jax import skeleton
from geopose_jax.body import smpl
from geopose_jax.geometry import rotations

PARENTS = skeleton.SMPL_PARENTS
NUM_JOINTS = len(PARENTS)


def random_model_arrays(rng, num_vertices=40, num_betas=12):
  weights = rng.random((num_vertices, NUM_JOINTS)) ** 4
  weights /= weights.sum(1, keepdims=True)
  regressor = rng.random((NUM_JOINTS, num_vertices))
  regressor /= regressor.sum(1, keepdims=True)
  return dict(
      v_template=rng.normal(size=(num_vertices, 3)) * 0.5,
      shapedirs=rng.normal(size=(num_vertices, 3, num_betas)) * 0.03,
      posedirs=rng.normal(size=(num_vertices, 3, 9 * (NUM_JOINTS - 1))) * 0.01,
      J_regressor=regressor, weights=weights,
      f=rng.integers(0, num_vertices, size=(20, 3)))


def reference_lbs(arrays, theta, beta):
  """Straightforward SMPL for one body: explicit loops over joints, float64 numpy,
  rotations from scipy."""
  num_betas = len(beta)
  v_shaped = arrays["v_template"] + arrays["shapedirs"][:, :, :num_betas] @ beta
  joints = arrays["J_regressor"] @ v_shaped
  rot = Rotation.from_rotvec(theta.reshape(NUM_JOINTS, 3)).as_matrix()
  feature = np.concatenate([(rot[j] - np.eye(3)).ravel() for j in range(1, NUM_JOINTS)])
  v_posed = v_shaped + arrays["posedirs"] @ feature
  world = [None] * NUM_JOINTS
  for j in range(NUM_JOINTS):
    local = np.eye(4)
    local[:3, :3] = rot[j]
    local[:3, 3] = joints[j] - (joints[PARENTS[j]] if j else 0.0)
    world[j] = local if j == 0 else world[PARENTS[j]] @ local
  posed_joints = np.array([world[j][:3, 3] for j in range(NUM_JOINTS)])
  out = np.zeros_like(v_posed)
  for j in range(NUM_JOINTS):
    skin = world[j].copy()
    skin[:3, 3] -= world[j][:3, :3] @ joints[j]
    homogeneous = np.concatenate([v_posed, np.ones((len(v_posed), 1))], 1)
    out += arrays["weights"][:, j:j + 1] * (homogeneous @ skin.T)[:, :3]
  return out, posed_joints


def make(arrays, num_betas=None):
  return smpl.make_body_model(arrays["v_template"], arrays["shapedirs"], arrays["posedirs"],
                              arrays["J_regressor"], arrays["weights"], arrays["f"], PARENTS,
                              num_betas=num_betas)


def test_matches_loop_reference_on_random_parameters():
  rng = np.random.default_rng(0)
  arrays = random_model_arrays(rng)
  model = make(arrays, num_betas=10)
  theta = rng.normal(size=(3, NUM_JOINTS * 3)) * 0.6
  beta = rng.normal(size=(3, 7))  # fewer betas than the model keeps: the first 7 are used
  vertices, joints = jax.jit(smpl.smpl)(model, theta, beta)
  for b in range(3):
    want_v, want_j = reference_lbs(arrays, theta[b], beta[b])
    np.testing.assert_allclose(vertices[b], want_v, atol=1e-5)
    np.testing.assert_allclose(joints[b], want_j, atol=1e-5)


def test_matrix_and_6d_inputs_and_vmap_agree():
  rng = np.random.default_rng(1)
  model = make(random_model_arrays(rng))
  theta = jnp.asarray(rng.normal(size=(2, NUM_JOINTS, 3)) * 0.8, jnp.float32)
  beta = jnp.asarray(rng.normal(size=(2, 10)), jnp.float32)

  @jax.jit
  def all_representations(theta, beta):
    matrices = rotations.axis_angle_to_matrix(theta)
    six = rotations.matrix_to_rotation_6d(matrices)
    return [smpl.smpl(model, theta, beta),
            smpl.smpl(model, matrices, beta, pose_rep="matrix"),
            smpl.smpl(model, six, beta, pose_rep="rotation_6d"),
            smpl.smpl(model, six.reshape(2, -1), beta, pose_rep="rotation_6d"),
            jax.vmap(lambda t, b: smpl.smpl(model, t, b))(theta, beta)]

  (want_v, want_j), *others = all_representations(theta, beta)
  for v, j in others:
    np.testing.assert_allclose(v, want_v, atol=1e-5)
    np.testing.assert_allclose(j, want_j, atol=1e-5)


def test_gradients_finite_at_zero_pose():
  model = make(random_model_arrays(np.random.default_rng(2)))

  def loss(theta, beta):
    vertices, joints = smpl.smpl(model, theta, beta)
    return jnp.sum(vertices ** 2) + jnp.sum(joints ** 2)

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.zeros((2, 72)), jnp.zeros((2, 10)))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
  assert float(jnp.abs(grads[0]).max()) > 0  # the pose does move the body


def test_bad_shapes_fail_clearly():
  model = make(random_model_arrays(np.random.default_rng(3)), num_betas=10)
  with pytest.raises(ValueError, match="betas"):
    smpl.smpl(model, jnp.zeros((1, 72)), jnp.zeros((1, 11)))
  with pytest.raises(ValueError, match="axis_angle"):
    smpl.smpl(model, jnp.zeros((1, 70)), jnp.zeros((1, 10)))
  with pytest.raises(ValueError, match="shape directions"):
    make(random_model_arrays(np.random.default_rng(3), num_betas=5), num_betas=10)


def _official_layout_pickle(path, arrays):
  """Writes an SMPL .pkl the way the official files are laid out: chumpy `Ch` objects (a
  stand-in class registered as chumpy.ch.Ch while pickling), a scipy sparse J_regressor,
  kintree_table with 2^32 - 1 as the root's parent, Python 2 protocol."""
  chumpy = types.ModuleType("chumpy")
  chumpy_ch = types.ModuleType("chumpy.ch")

  class Ch:  # The attributes real chumpy arrays pickle with.
    def __init__(self, x):
      self.x = x
      self._dirty_vars = set()
      self._itr = None
      self._depends_on_deps = {}
      self._make_dense = False
      self._make_sparse = False

  Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
  chumpy_ch.Ch = Ch
  sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, chumpy_ch
  try:
    kintree = np.stack([np.array(PARENTS, np.int64), np.arange(NUM_JOINTS)]).astype(np.uint32)
    kintree[0, 0] = 4294967295
    data = {
        "J_regressor_prior": scipy.sparse.csc_matrix(arrays["J_regressor"]),
        "f": arrays["f"].astype(np.uint32),
        "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"]),
        "kintree_table": kintree,
        "J": arrays["J_regressor"] @ arrays["v_template"],
        "weights_prior": arrays["weights"],
        "weights": arrays["weights"],
        "vert_sym_idxs": np.arange(len(arrays["v_template"])),
        "posedirs": arrays["posedirs"],
        "pose_training_info": {"pose_dims": 72},
        "bs_style": "lbs",
        "v_template": arrays["v_template"],
        "shapedirs": Ch(arrays["shapedirs"]),
        "bs_type": "lrotmin",
    }
    with open(path, "wb") as f:
      pickle.dump(data, f, protocol=2)
  finally:
    del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_pkl_with_official_layout_loads_without_chumpy(tmp_path):
  rng = np.random.default_rng(4)
  arrays = random_model_arrays(rng, num_betas=20)
  path = tmp_path / "SMPL_NEUTRAL.pkl"
  _official_layout_pickle(path, arrays)
  assert "chumpy" not in sys.modules
  model = smpl.load_body_model(path, num_betas=10)
  assert model.parents == PARENTS and model.num_betas == 10
  np.testing.assert_allclose(model.shapedirs, arrays["shapedirs"][..., :10], rtol=1e-6)
  np.testing.assert_allclose(model.J_regressor, arrays["J_regressor"], rtol=1e-6)
  np.testing.assert_array_equal(model.faces, arrays["f"])
  theta, beta = rng.normal(size=72) * 0.5, rng.normal(size=10)
  want_v, _ = reference_lbs(arrays, theta, beta)
  np.testing.assert_allclose(jax.jit(smpl.smpl)(model, theta, beta)[0], want_v, atol=1e-5)


def test_pkl_reader_refuses_code(tmp_path):
  path = tmp_path / "evil.pkl"

  class Evil:
    def __reduce__(self):
      return (print, ("should not run",))

  with open(path, "wb") as f:
    pickle.dump({"v_template": Evil()}, f, protocol=2)
  with pytest.raises(ValueError, match="print, which is not an array type"):
    smpl.load_body_model(path)


def test_npz_round_trip_and_missing_file(tmp_path):
  model = make(random_model_arrays(np.random.default_rng(5)))
  smpl.save_body_model(model, tmp_path / "body.npz")
  loaded = smpl.load_body_model(tmp_path / "body.npz", num_betas=None)
  assert loaded.parents == model.parents and loaded.name == model.name
  np.testing.assert_array_equal(loaded.posedirs, model.posedirs)
  with pytest.raises(FileNotFoundError, match="nowhere.pkl"):
    smpl.load_body_model(tmp_path / "nowhere.pkl")

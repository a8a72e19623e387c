"""The SMPL body model as a pytree, its loading, and linear blend skinning in pure jnp.

`smpl(model, theta, beta)` maps pose and shape parameters to posed vertices and joints
following the published model (Loper et al. 2015):

  v_shaped = v_template + shapedirs . beta
  J        = J_regressor v_shaped                       (rest joints)
  R_j      = rotation of joint j relative to its parent  (theta)
  v_posed  = v_shaped + posedirs . vec(R_1.. - I)       (pose correctives)
  G_j      = G_parent(j) [R_j | J_j - J_parent(j)]      (kinematic chain)
  v        = sum_j w_vj (G_j [v_posed; 1] - G_j [J_j; 0])

Coordinates are the model's own (SMPL: metres, y up, the body facing +z). Every function
is batched over leading dimensions and can be jitted, vmapped and differentiated.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any

import flax
import jax.numpy as jnp
import numpy as np

from geopose_jax.geometry import rotations

POSE_REPRESENTATIONS = ("axis_angle", "rotation_6d", "matrix")
_NPZ_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


@flax.struct.dataclass
class BodyModel:
  """A skinned body in SMPL's format.

  Attributes:
    v_template: (V, 3) rest-pose vertices.
    shapedirs: (V, 3, S) shape blend shapes, one per beta.
    posedirs: (V, 3, 9 (J - 1)) pose-corrective blend shapes.
    J_regressor: (J, V) rest joints as linear functions of the vertices.
    weights: (V, J) skinning weights, rows summing to 1.
    faces: (F, 3) int32 vertex indices.
    parents: J parent indices, parents[0] = -1, each parent before its child (static).
    name: what the model is, e.g. "SMPL neutral" or a procedural body (static).
  """
  v_template: Any
  shapedirs: Any
  posedirs: Any
  J_regressor: Any
  weights: Any
  faces: Any
  parents: tuple[int, ...] = flax.struct.field(pytree_node=False)
  name: str = flax.struct.field(pytree_node=False, default="body")

  @property
  def num_vertices(self) -> int:
    return self.v_template.shape[0]

  @property
  def num_joints(self) -> int:
    return len(self.parents)

  @property
  def num_betas(self) -> int:
    return self.shapedirs.shape[-1]


def make_body_model(v_template, shapedirs, posedirs, J_regressor, weights, faces, parents,
                    name: str = "body", num_betas: int | None = None) -> BodyModel:
  """Checks the arrays' shapes against each other and returns a float32 BodyModel.

  Args:
    num_betas: keep the first `num_betas` shape directions (SMPL 1.1 files carry 300);
      None keeps all. Asking for more than the model has is an error.
  """
  v_template = np.asarray(v_template, np.float32)
  shapedirs = np.asarray(shapedirs, np.float32)
  posedirs = np.asarray(posedirs, np.float32)
  J_regressor = np.asarray(J_regressor, np.float32)
  weights = np.asarray(weights, np.float32)
  faces = np.asarray(faces).astype(np.int32)
  parents = tuple(int(p) for p in np.asarray(parents).reshape(-1))
  num_vertices, num_joints = v_template.shape[0], len(parents)
  expected = {
      "v_template": (v_template.shape, (num_vertices, 3)),
      "shapedirs": (shapedirs.shape[:2], (num_vertices, 3)),
      "posedirs": (posedirs.shape, (num_vertices, 3, 9 * (num_joints - 1))),
      "J_regressor": (J_regressor.shape, (num_joints, num_vertices)),
      "weights": (weights.shape, (num_vertices, num_joints)),
  }
  for key, (got, want) in expected.items():
    if tuple(got) != want:
      raise ValueError(f"body model {name!r}: {key} has shape {tuple(got)}, expected {want} "
                       f"(from {num_vertices} vertices and {num_joints} joints)")
  if shapedirs.ndim != 3:
    raise ValueError(f"body model {name!r}: shapedirs must be (V, 3, S), got {shapedirs.shape}")
  if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= num_vertices:
    raise ValueError(f"body model {name!r}: faces must be (F, 3) indices below {num_vertices}")
  if parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents) if j):
    raise ValueError(f"body model {name!r}: parents {parents} must start with -1 and list "
                     "every parent before its child")
  if num_betas is not None:
    if num_betas > shapedirs.shape[-1]:
      raise ValueError(f"body model {name!r} has {shapedirs.shape[-1]} shape directions; "
                       f"{num_betas} betas were asked for")
    shapedirs = shapedirs[..., :num_betas]
  return BodyModel(v_template=v_template, shapedirs=np.ascontiguousarray(shapedirs),
                   posedirs=posedirs, J_regressor=J_regressor, weights=weights, faces=faces,
                   parents=parents, name=name)


def model_from_mapping(data, name: str, num_betas: int | None = None) -> BodyModel:
  """Builds a BodyModel from SMPL's key layout (a loaded .pkl dict or .npz archive)."""
  missing = [k for k in _NPZ_KEYS if k not in data and not (k == "kintree_table" and "parents" in data)]
  if missing:
    raise ValueError(f"body model {name!r} lacks the keys {missing}; an SMPL-format file "
                     f"has {list(_NPZ_KEYS)}")
  if "kintree_table" in data:
    parents = np.array(np.asarray(data["kintree_table"])[0], np.int64)
    parents[0] = -1  # The official files store 2^32 - 1 (or garbage) for the root.
  else:
    parents = np.asarray(data["parents"])
  J_regressor = data["J_regressor"]
  if hasattr(J_regressor, "toarray"):  # scipy sparse in the official files
    J_regressor = J_regressor.toarray()
  return make_body_model(data["v_template"], data["shapedirs"], data["posedirs"], J_regressor,
                         data["weights"], data["f"], parents, name=name, num_betas=num_betas)


def load_body_model(path: str | os.PathLike, num_betas: int | None = 10) -> BodyModel:
  """Reads an SMPL model file: the official .pkl (chumpy inside, no chumpy needed) or .npz.

  Args:
    path: SMPL_{NEUTRAL,MALE,FEMALE}.pkl, basicModel_*.pkl, or an .npz with the same keys
      (`save_body_model` writes one).
    num_betas: how many shape directions to keep; None keeps all.
  """
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f"SMPL model file {path} does not exist; give the path of an "
                            "official SMPL .pkl or an .npz written by save_body_model")
  if path.suffix == ".npz":
    with np.load(path, allow_pickle=False) as archive:
      data = {k: archive[k] for k in archive.files}
    name = str(data.pop("name")) if "name" in data else path.stem
  elif path.suffix == ".pkl":
    from geopose_jax.body import pkl_reader  # Only .pkl files need the unpickler.
    data = pkl_reader.read_smpl_pkl(path)
    name = path.stem
  else:
    raise ValueError(f"SMPL model file {path}: expected a .pkl or .npz file")
  return model_from_mapping(data, name=name, num_betas=num_betas)


def save_body_model(model: BodyModel, path: str | os.PathLike) -> None:
  """Writes `model` as an .npz with SMPL's key names, atomically (temp file + rename)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  kintree = np.stack([np.array(model.parents, np.int64), np.arange(model.num_joints)])
  arrays = dict(v_template=model.v_template, shapedirs=model.shapedirs, posedirs=model.posedirs,
                J_regressor=model.J_regressor, weights=model.weights, kintree_table=kintree,
                f=model.faces, name=np.array(model.name))
  with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
    np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
  os.replace(tmp.name, path)


def pose_to_matrices(theta, num_joints: int, pose_rep: str = "axis_angle") -> jnp.ndarray:
  """Per-joint rotations in any accepted representation -> (..., J, 3, 3).

  Args:
    theta: axis_angle (..., J, 3) or (..., 3 J); rotation_6d (..., J, 6) or (..., 6 J)
      (the first two columns of each matrix); matrix (..., J, 3, 3).
  """
  theta = jnp.asarray(theta)
  if pose_rep == "matrix":
    if theta.shape[-3:] != (num_joints, 3, 3):
      raise ValueError(f"pose as matrices must be (..., {num_joints}, 3, 3), got {theta.shape}")
    return theta
  if pose_rep not in POSE_REPRESENTATIONS:
    raise ValueError(f"unknown pose representation {pose_rep!r}; use one of {POSE_REPRESENTATIONS}")
  width = 3 if pose_rep == "axis_angle" else 6
  if theta.shape[-1] == num_joints * width:
    theta = theta.reshape(theta.shape[:-1] + (num_joints, width))
  if theta.shape[-2:] != (num_joints, width):
    raise ValueError(f"pose as {pose_rep} must be (..., {num_joints}, {width}) or "
                     f"(..., {num_joints * width}), got {theta.shape}")
  if pose_rep == "axis_angle":
    return rotations.axis_angle_to_matrix(theta)
  return rotations.rotation_6d_to_matrix(theta)


def rest_joints(model: BodyModel, beta) -> jnp.ndarray:
  """(..., S) betas -> (..., J, 3) rest-pose joints (J_regressor applied to v_shaped)."""
  beta = jnp.asarray(beta, jnp.float32)
  shapedirs = _shape_directions(model, beta)
  joint_template = jnp.asarray(model.J_regressor) @ jnp.asarray(model.v_template)
  joint_dirs = jnp.einsum("jv,vcs->jcs", jnp.asarray(model.J_regressor), shapedirs)
  return joint_template + jnp.einsum("...s,jcs->...jc", beta, joint_dirs)


def _shape_directions(model: BodyModel, beta) -> jnp.ndarray:
  num = beta.shape[-1]
  if num > model.num_betas:
    raise ValueError(f"{num} betas given but body model {model.name!r} has "
                     f"{model.num_betas} shape directions")
  return jnp.asarray(model.shapedirs)[..., :num]


def smpl(model: BodyModel, theta, beta, pose_rep: str = "axis_angle"):
  """Poses and shapes the body.

  Args:
    model: a BodyModel (SMPL or procedural).
    theta: joint rotations relative to the parent (joint 0: global orientation), in
      `pose_rep` (see `pose_to_matrices`); leading dims (...).
    beta: (..., S) shape coefficients, S <= model.num_betas (the first S directions are
      used); broadcast against theta's leading dims.
    pose_rep: "axis_angle", "rotation_6d" or "matrix".

  Returns:
    vertices (..., V, 3) and joints (..., J, 3): the posed mesh and the posed skeleton
    joints, in model coordinates (root joint at its rest position).
  """
  num_joints = model.num_joints
  rot = pose_to_matrices(theta, num_joints, pose_rep).astype(jnp.float32)
  beta = jnp.asarray(beta, jnp.float32)
  batch_shape = jnp.broadcast_shapes(rot.shape[:-3], beta.shape[:-1])
  rot = jnp.broadcast_to(rot, batch_shape + rot.shape[-3:])
  beta = jnp.broadcast_to(beta, batch_shape + beta.shape[-1:])

  shapedirs = _shape_directions(model, beta)
  v_shaped = jnp.asarray(model.v_template) + jnp.einsum("...s,vcs->...vc", beta, shapedirs)
  joints_rest = rest_joints(model, beta)

  pose_feature = (rot[..., 1:, :, :] - jnp.eye(3, dtype=rot.dtype)).reshape(batch_shape + (-1,))
  v_posed = v_shaped + jnp.einsum("...p,vcp->...vc", pose_feature, jnp.asarray(model.posedirs))

  global_rot, joints = _kinematic_chain(rot, joints_rest, model.parents)
  # Each joint's transform applied to rest-pose points: x -> G_rot x + (pos - G_rot J_rest).
  translation = joints - jnp.einsum("...jab,...jb->...ja", global_rot, joints_rest)

  weights = jnp.asarray(model.weights)
  blend_rot = jnp.einsum("vj,...jab->...vab", weights, global_rot)
  blend_translation = jnp.einsum("vj,...ja->...va", weights, translation)
  vertices = jnp.einsum("...vab,...vb->...va", blend_rot, v_posed) + blend_translation
  return vertices, joints


def _tree_levels(parents: tuple[int, ...]) -> list[list[int]]:
  """Joints grouped by depth in the tree (root first)."""
  depth = [0] * len(parents)
  for j in range(1, len(parents)):
    depth[j] = depth[parents[j]] + 1
  return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]


def _kinematic_chain(rot, joints_rest, parents: tuple[int, ...]):
  """World rotations (..., J, 3, 3) and positions (..., J, 3) of every joint.

  G_j = G_parent(j) [R_j | J_j - J_parent(j)], computed one tree level at a time (SMPL: 9
  levels instead of 24 joints), which keeps the traced program small.
  """
  levels = _tree_levels(parents)
  order = [j for level in levels for j in level]
  position_in_order = {j: i for i, j in enumerate(order)}
  level_rot = [rot[..., 0:1, :, :]]
  level_pos = [joints_rest[..., 0:1, :]]
  for level in levels[1:]:
    done_rot = jnp.concatenate(level_rot, axis=-3)
    done_pos = jnp.concatenate(level_pos, axis=-2)
    idx = np.array(level)
    parent_slots = np.array([position_in_order[parents[j]] for j in level])
    parent_rot = done_rot[..., parent_slots, :, :]
    offset = joints_rest[..., idx, :] - joints_rest[..., np.array([parents[j] for j in level]), :]
    level_rot.append(parent_rot @ rot[..., idx, :, :])
    level_pos.append(done_pos[..., parent_slots, :]
                     + jnp.einsum("...jab,...jb->...ja", parent_rot, offset))
  inverse = np.argsort(np.array(order))
  global_rot = jnp.concatenate(level_rot, axis=-3)[..., inverse, :, :]
  joints = jnp.concatenate(level_pos, axis=-2)[..., inverse, :]
  return global_rot, joints


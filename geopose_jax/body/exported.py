"""A predicted body as `--mode=predict` writes it: H36M-17 joints, theta, beta, vertices.

The regressor gives joint rotations and shape; the body model poses them; the posed body is
turned into the camera frame (mm, y down) with its pelvis at the origin, since a crop does
not show where the person is.
"""

from __future__ import annotations

import jax.numpy as jnp

from geopose_jax import skeleton
from geopose_jax.body import placement, smpl as smpl_lib
from geopose_jax.geometry import rotations


def body_arrays(body: smpl_lib.BodyModel, rot, beta) -> dict:
  """(B, 24, 3, 3) rotations, (B, S) beta -> {'pose_3d_mm': (B, 17, 3) H36M-17 joints,
  'theta': (B, 72) axis-angle, 'beta': (B, S), 'vertices': (B, V, 3)}: camera frame, mm,
  pelvis at the origin."""
  vertices, joints = smpl_lib.smpl(body, rot, beta, pose_rep="matrix")
  vertices, joints = placement.body_in_camera(vertices, joints,
                                              jnp.zeros((rot.shape[0], 3), vertices.dtype))
  theta = rotations.matrix_to_axis_angle(rot).reshape(rot.shape[0], -1)
  return {"pose_3d_mm": skeleton.smpl_to_h36m(joints), "theta": theta, "beta": beta,
          "vertices": vertices}


def body_metadata(model_path: str) -> dict:
  """What poses_3d.json says about bodies from `body_arrays`."""
  body = (f"SMPL from {model_path}" if model_path else
          "the procedural SMPL-format body (geopose_jax/body/procedural.py), not SMPL")
  return {
      "body": body,
      "root": "root-relative: the body's pelvis (joint 0) is at the origin of the camera "
              "frame in every frame; only pose and shape are predicted, not the position",
      "scale": "metric: the body model's size for the predicted shape beta (mm)",
      "joints": "H36M-17 from the body's 24 joints: the 14 corresponding joints as the "
                "method evaluates them; hips = the body's hip joints, head top = the "
                "neck-to-head segment continued by its own length (approximations)",
      "theta": "(N, 72) axis-angle rotations of the 24 joints as the body model takes them, "
               "in its y-up frame; vertices and joints are that body turned a half turn "
               "about x into the camera frame (x right, y down, z forward), in mm",
  }

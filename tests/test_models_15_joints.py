"""The lifting models on HumanEva-I's 15 joints: shapes, and RIE's body-part groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geopose_jax import skeleton
from geopose_jax.models import lifter as lifter_lib
from geopose_jax.models import rie as rie_lib
from geopose_jax.models import tcn as tcn_lib


def test_humaneva_groups_cover_every_joint_once_with_the_right_sides():
  groups = dict(rie_lib.joint_groups(15))
  assert sorted(j for joints in groups.values() for j in joints) == list(range(15))
  assert tuple(groups) == rie_lib.GROUP_NAMES  # same parts, same fusion order, same params
  names = skeleton.HUMANEVA_JOINT_NAMES
  for part in ("arm", "leg"):
    assert all(names[j].startswith("r") for j in groups[f"right_{part}"])
    assert all(names[j].startswith("l") for j in groups[f"left_{part}"])
  assert skeleton.HUMANEVA_ROOT in groups["torso"]
  with pytest.raises(ValueError, match="16"):
    rie_lib.joint_groups(16)


@pytest.mark.parametrize("num_joints, stage", [(15, 2)])
def test_rie_decoders_write_their_own_joints(num_joints, stage):
  model = rie_lib.RIE(filter_widths=(3, 3), channels=8, latent_dim=8, fc_hidden=16,
                      stage=stage, num_joints=num_joints)
  x = jax.random.normal(jax.random.key(0), (2, 9, num_joints, 2))
  variables = model.init(jax.random.key(1), x)
  apply = jax.jit(model.apply)
  out = apply(variables, x)
  assert out.shape == (2, 1, num_joints, 3)
  for name, joints in rie_lib.joint_groups(num_joints):
    # Moving one decoder's output bias moves exactly that group's joints.
    params = jax.tree_util.tree_map(lambda a: a, variables["params"])
    bias = params[f"decoder_{name}"]["fc_out"]["bias"]
    params[f"decoder_{name}"]["fc_out"]["bias"] = bias + 1.0
    moved = apply({**variables, "params": params}, x) - out
    changed = np.nonzero(np.abs(np.asarray(moved)).sum(axis=(0, 1, 3)))[0]
    assert tuple(changed) == tuple(sorted(joints)), name
  with pytest.raises(ValueError, match=f"\\(B, T, {num_joints}, 2\\)"):
    model.init(jax.random.key(0), jnp.zeros((1, 9, 32 - num_joints, 2)))


def test_tcn_and_lifter_on_15_joints():
  tcn = tcn_lib.TemporalConvNet(filter_widths=(3, 3), channels=8, num_joints_out=15)
  x = jax.random.normal(jax.random.key(0), (2, 9, 15, 2))
  variables = tcn.init(jax.random.key(1), x)
  assert tcn.apply(variables, x).shape == (2, 1, 15, 3)
  assert variables["params"]["encoder"]["shrink"]["kernel"].shape[-1] == 45

  lifter = lifter_lib.Lifter(features=16, num_blocks=1, num_joints=15)
  poses = lifter_lib.normalize_pose_2d(jax.random.normal(jax.random.key(2), (4, 15, 2)))
  variables = lifter.init(jax.random.key(3), poses)
  lifted = lifter.apply(variables, poses)
  assert lifted.shape == (4, 15, 3)
  np.testing.assert_allclose(lifter_lib.project(lifted), poses, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match=r"\(B, 15, 2\)"):
    lifter.init(jax.random.key(3), jnp.zeros((4, 17, 2)))
  # The default stays Human3.6M-17.
  assert lifter_lib.Lifter().num_joints == 17 and rie_lib.RIE().num_joints == 17

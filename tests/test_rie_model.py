"""RIE and VideoPose3D temporal models: receptive field, output length, relative encodings,
flip handling, parameter counts against the originals' architecture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geopose_jax import evaluation
from geopose_jax import skeleton
from geopose_jax.data import windows as windows_lib
from geopose_jax.models import rie as rie_lib
from geopose_jax.models import tcn as tcn_lib


def dilated_receptive_field(widths):
  """The original's bookkeeping: pad_0 = w_0 // 2, pad_i = (w_i - 1) * dilation_i // 2."""
  pads, dilation = [widths[0] // 2], widths[0]
  for w in widths[1:]:
    pads.append((w - 1) * dilation // 2)
    dilation *= w
  return 1 + 2 * sum(pads)


@pytest.mark.parametrize("widths", [(3,), (5, 3), (3, 5, 1)])
def test_receptive_field_and_output_length(widths):
  field = tcn_lib.receptive_field(widths)
  assert field == dilated_receptive_field(widths) == int(np.prod(widths))
  model = tcn_lib.TemporalConvNet(filter_widths=widths, channels=4, num_joints_out=2)
  x = jax.random.normal(jax.random.key(0), (2, 3 * field, 17, 2))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  out = jax.jit(model.apply)(variables, x)
  assert out.shape == (2, 3, 2, 3)
  # Output frame k sees exactly input frames [k * field, (k + 1) * field).
  grad = jax.jit(jax.grad(lambda x: model.apply(variables, x)[:, 1].sum()))(x)
  touched = np.nonzero(np.abs(np.asarray(grad)).sum(axis=(0, 2, 3)))[0]
  assert touched.min() >= field and touched.max() < 2 * field


def test_bad_filter_widths_and_lengths():
  with pytest.raises(ValueError, match="odd"):
    tcn_lib.receptive_field((3, 4))
  model = rie_lib.RIE(filter_widths=(3, 3), channels=4, latent_dim=4, fc_hidden=8)
  with pytest.raises(ValueError, match="receptive field 9"):
    model.init(jax.random.key(0), jnp.zeros((1, 10, 17, 2)))


def test_relative_encodings():
  x = jax.random.normal(jax.random.key(0), (2, 9, 17, 2))
  target = 4
  inputs = rie_lib.group_inputs(x, target)
  torso = inputs[0]                                   # raw 10 | positional 10 | temporal 10
  assert torso.shape == (2, 9, 30)
  np.testing.assert_array_equal(torso[..., 10:12], 0.0)          # root's positional channel
  np.testing.assert_array_equal(torso[:, target, 20:30], 0.0)    # centre frame's temporal channel
  assert np.abs(np.asarray(torso[:, target + 1, 20:30])).min() > 0
  # The raw channels hold the right joints in the original's order (x, y per joint).
  np.testing.assert_array_equal(torso[..., :10], x[:, :, [0, 7, 8, 9, 10]].reshape(2, 9, 10))
  right_arm = inputs[1]
  np.testing.assert_allclose(right_arm[..., 6:12],
                             (x[:, :, 14:17] - x[:, :, :1]).reshape(2, 9, 6), rtol=1e-6)


def test_flip_is_an_involution_and_tta_of_equivariant_model_is_identity():
  x = jax.random.normal(jax.random.key(0), (4, 9, 17, 2))
  np.testing.assert_array_equal(skeleton.flip_pose(skeleton.flip_pose(x)), x)
  assert not np.allclose(skeleton.flip_pose(x), x)

  def equivariant(windows):       # centre frame lifted with a symmetric depth
    centre = windows[:, 4]
    depth = jnp.sum(centre ** 2, axis=(-2, -1))[:, None, None] * jnp.ones_like(centre[..., :1])
    return jnp.concatenate([centre, depth], axis=-1)

  np.testing.assert_allclose(evaluation.flip_average(equivariant, skeleton.flip_pose)(x), equivariant(x), rtol=1e-6)

  def not_equivariant(windows):   # depth = x coordinate: flipping changes it
    centre = windows[:, 4]
    return jnp.concatenate([centre, centre[..., :1]], axis=-1)

  assert not np.allclose(evaluation.flip_average(not_equivariant, skeleton.flip_pose)(x), not_equivariant(x))


def test_frame_windows_edge_padding():
  seq = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 17, 2), np.float32)
  centred = windows_lib.sequence_windows(seq, np.array([0, 4]), 5, causal=False)[..., 0, 0]
  np.testing.assert_array_equal(centred, [[0, 0, 0, 1, 2], [2, 3, 4, 4, 4]])
  causal = windows_lib.sequence_windows(seq, np.array([1]), 3, causal=True)[..., 0, 0]
  np.testing.assert_array_equal(causal, [[0, 0, 1]])


def original_rie_parameter_count(stage, channels=256, latent=256, widths=(3, 3, 3, 3, 3),
                                 hidden=1024):
  """Parameters of the original RIEModel, counted from its layer list."""
  def temporal_block(c_in):
    n = c_in * channels * widths[0] + 2 * channels
    for w in widths[1:]:
      n += channels * channels * w + channels * channels + 4 * channels
    return n + channels * latent + latent

  def fc_block(c_in, out, blocks):
    return (c_in * hidden + hidden + 2 * hidden + blocks * 2 * (hidden * hidden + 3 * hidden)
            + hidden * out + out)

  groups = (5, 3, 3, 3, 3)
  total = sum(temporal_block(6 * n) for n in groups) + fc_block(34, latent, 2)
  if stage > 1:
    total += 5 * fc_block(4 * latent, latent, 1)
  dec_in = latent * (2 if stage == 1 else 3)
  return total + sum(fc_block(dec_in, 3 * n, 1) for n in groups)


def test_parameter_counts_match_the_originals():
  x = jnp.zeros((1, 243, 17, 2))
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(0)}
  for stage in (1, 3):
    shapes = jax.eval_shape(lambda: rie_lib.RIE(stage=stage).init(rngs, x))
    assert tcn_lib.count_parameters(shapes["params"]) == original_rie_parameter_count(stage)
  assert original_rie_parameter_count(3) == 41_783_091
  shapes = jax.eval_shape(lambda: tcn_lib.TemporalConvNet().init(rngs, x))
  # VideoPose3D, 1024 channels: expand 34*1024*3 + BN, 4 blocks, shrink to 51.
  expected = 34 * 1024 * 3 + 2048 + 4 * (1024 * 1024 * 4 + 4 * 1024) + 1024 * 51 + 51
  assert tcn_lib.count_parameters(shapes["params"]) == expected == 16_952_371

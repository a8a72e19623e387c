"""Import of RIE / VideoPose3D state dicts, checked against a numpy forward pass written in the
originals' layout (channels-first, PyTorch weight shapes, the original's slicing)."""

import collections

import numpy as np
import pytest

import fake_torch_checkpoint
from geopose_jax.convert import rie as convert
from geopose_jax.models.rie import RIE
from geopose_jax.models.tcn import TemporalConvNet

WIDTHS = (3, 3)
CHANNELS, LATENT, HIDDEN = 8, 4, 16
BN_EPS = 1e-5


def _bn(rng, prefix, n):
  return {f"{prefix}.weight": rng.uniform(0.5, 1.5, n), f"{prefix}.bias": rng.normal(size=n),
          f"{prefix}.running_mean": rng.normal(size=n), f"{prefix}.running_var": rng.uniform(0.5, 2, n),
          f"{prefix}.num_batches_tracked": np.array(7)}


def _temporal_block(rng, prefix, c_in, out):
  sd = {f"{prefix}expand_conv.weight": rng.normal(size=(CHANNELS, c_in, WIDTHS[0])) * 0.3}
  sd.update(_bn(rng, f"{prefix}expand_bn", CHANNELS))
  for i, w in enumerate(WIDTHS[1:]):
    sd[f"{prefix}layers_conv.{2 * i}.weight"] = rng.normal(size=(CHANNELS, CHANNELS, w)) * 0.3
    sd[f"{prefix}layers_conv.{2 * i + 1}.weight"] = rng.normal(size=(CHANNELS, CHANNELS, 1)) * 0.3
    sd.update(_bn(rng, f"{prefix}layers_bn.{2 * i}", CHANNELS))
    sd.update(_bn(rng, f"{prefix}layers_bn.{2 * i + 1}", CHANNELS))
  sd[f"{prefix}shrink.weight"] = rng.normal(size=(out, CHANNELS, 1)) * 0.3
  sd[f"{prefix}shrink.bias"] = rng.normal(size=out)
  return sd


def _fc_block(rng, prefix, c_in, out, blocks):
  sd = {f"{prefix}.fc_1.weight": rng.normal(size=(HIDDEN, c_in)) * 0.3,
        f"{prefix}.fc_1.bias": rng.normal(size=HIDDEN)}
  sd.update(_bn(rng, f"{prefix}.bn_1", HIDDEN))
  for i in range(blocks):
    for k in (1, 2):
      sd[f"{prefix}.layers.{i}.w{k}.weight"] = rng.normal(size=(HIDDEN, HIDDEN)) * 0.3
      sd[f"{prefix}.layers.{i}.w{k}.bias"] = rng.normal(size=HIDDEN)
      sd.update(_bn(rng, f"{prefix}.layers.{i}.batch_norm{k}", HIDDEN))
  sd[f"{prefix}.fc_2.weight"] = rng.normal(size=(out, HIDDEN)) * 0.3
  sd[f"{prefix}.fc_2.bias"] = rng.normal(size=out)
  return sd


ORIGINAL_GROUPS = ("Torso", "LArm", "RArm", "LLeg", "RLeg")


def original_rie_state_dict(rng, stage):
  sd = {}
  for name, joints in zip(ORIGINAL_GROUPS, (5, 3, 3, 3, 3)):
    sd.update(_temporal_block(rng, f"LocalLayer_{name}.", joints * 6, LATENT))
  sd.update(_fc_block(rng, "GlobalInfo", 34, LATENT, 2))
  if stage > 1:
    for i in range(5):
      sd.update(_fc_block(rng, f"FuseBlocks.{i}", 4 * LATENT, LATENT, 1))
  for name, joints in zip(ORIGINAL_GROUPS, (5, 3, 3, 3, 3)):
    sd.update(_fc_block(rng, f"Integration_{name}", LATENT * (2 if stage == 1 else 3), joints * 3, 1))
  return {k: np.asarray(v, np.float32) for k, v in sd.items()}


# ---- the originals' eval-mode forward pass in numpy, channels-first -----------------------

def np_bn(sd, prefix, x, axis):
  shape = [1] * x.ndim
  shape[axis] = -1
  g = lambda k: sd[f"{prefix}.{k}"].reshape(shape)
  return (x - g("running_mean")) / np.sqrt(g("running_var") + BN_EPS) * g("weight") + g("bias")


def np_conv1d(x, w, stride):
  """x (N, C, T), w (out, in, k): valid conv with the given stride, by explicit loops."""
  n, _, t = x.shape
  out, _, k = w.shape
  steps = (t - k) // stride + 1
  y = np.zeros((n, out, steps))
  for s in range(steps):
    y[:, :, s] = np.einsum("nck,ock->no", x[:, :, s * stride:s * stride + k], w)
  return y


def np_temporal_block(sd, prefix, x, act):
  x = act(np_bn(sd, f"{prefix}expand_bn", np_conv1d(x, sd[f"{prefix}expand_conv.weight"], WIDTHS[0]), 1))
  for i, w in enumerate(WIDTHS[1:]):
    res = x[:, :, w // 2::w]
    x = act(np_bn(sd, f"{prefix}layers_bn.{2 * i}", np_conv1d(x, sd[f"{prefix}layers_conv.{2 * i}.weight"], w), 1))
    x = res + act(np_bn(sd, f"{prefix}layers_bn.{2 * i + 1}",
                        np_conv1d(x, sd[f"{prefix}layers_conv.{2 * i + 1}.weight"], 1), 1))
  return np_conv1d(x, sd[f"{prefix}shrink.weight"], 1) + sd[f"{prefix}shrink.bias"][None, :, None]


def lrelu(x):
  return np.where(x > 0, x, 0.2 * x)


def np_fc_block(sd, prefix, x, blocks):
  lin = lambda name, y: y @ sd[f"{prefix}.{name}.weight"].T + sd[f"{prefix}.{name}.bias"]
  x = lrelu(np_bn(sd, f"{prefix}.bn_1", lin("fc_1", x), 1))
  for i in range(blocks):
    y = lrelu(np_bn(sd, f"{prefix}.layers.{i}.batch_norm1", lin(f"layers.{i}.w1", x), 1))
    y = lrelu(np_bn(sd, f"{prefix}.layers.{i}.batch_norm2", lin(f"layers.{i}.w2", y), 1))
    x = x + y
  return lin("fc_2", x)


def np_rie(sd, pose_2d, stage):
  """The original RIEModel.forward (eval mode, T = receptive field) in numpy."""
  n, t = pose_2d.shape[:2]
  current = pose_2d[:, t // 2].reshape(n, -1)
  x = pose_2d.reshape(n, t, -1).transpose(0, 2, 1)             # (N, 34, T)
  diff = x - np.tile(x[:, 0:2], (1, 17, 1))
  diff_t = x - x[:, :, t // 2:t // 2 + 1]
  cat = lambda sl: np.concatenate([a[:, s] for a in (x, diff, diff_t) for s in sl], axis=1)
  inputs = [cat([slice(0, 2), slice(14, 22)]), cat([slice(28, 34)]), cat([slice(22, 28)]),
            cat([slice(2, 8)]), cat([slice(8, 14)])]
  glob = np_fc_block(sd, "GlobalInfo", current, 2)
  local = [np_temporal_block(sd, f"LocalLayer_{g}.", inp, lrelu)[:, :, 0]
           for g, inp in zip(ORIGINAL_GROUPS, inputs)]
  outs = []
  for i, g in enumerate(ORIGINAL_GROUPS):
    feats = [local[i]]
    if stage > 1:
      feats.append(np_fc_block(sd, f"FuseBlocks.{i}", np.concatenate(local[:i] + local[i + 1:], 1), 1))
    feats.append(glob)
    outs.append(np_fc_block(sd, f"Integration_{g}", np.concatenate(feats, 1), 1).reshape(n, -1, 3))
  torso, larm, rarm, lleg, rleg = outs
  return np.concatenate([torso[:, :1], lleg, rleg, torso[:, 1:], rarm, larm], axis=1)


@pytest.mark.parametrize("stage", [1, 3])
def test_rie_import_matches_original_forward(stage):
  rng = np.random.default_rng(stage)
  sd = original_rie_state_dict(rng, stage)
  arch = convert.infer_rie_architecture(sd)
  assert arch == dict(stage=stage, latent_dim=LATENT, channels=CHANNELS, filter_widths=WIDTHS)
  model = RIE(filter_widths=WIDTHS, channels=CHANNELS, latent_dim=LATENT, stage=stage, fc_hidden=HIDDEN)
  variables = convert.convert_rie({f"module.{k}": v for k, v in sd.items()}, model)
  pose_2d = rng.uniform(-1, 1, size=(3, 9, 17, 2)).astype(np.float32)
  ours = np.asarray(model.apply(variables, pose_2d, train=False))[:, 0]
  np.testing.assert_allclose(ours, np_rie(sd, pose_2d.astype(np.float64), stage), rtol=1e-4, atol=1e-4)


def test_tcn_import_matches_original_forward():
  rng = np.random.default_rng(0)
  sd = {k: np.asarray(v, np.float32) for k, v in _temporal_block(rng, "", 34, 51).items()}
  assert convert.infer_tcn_architecture(sd) == dict(channels=CHANNELS, filter_widths=WIDTHS,
                                                    num_joints_out=17)
  model = TemporalConvNet(filter_widths=WIDTHS, channels=CHANNELS)
  variables = convert.convert_tcn(sd, model)
  pose_2d = rng.uniform(-1, 1, size=(2, 18, 17, 2)).astype(np.float32)   # two windows each
  ours = np.asarray(model.apply(variables, pose_2d, train=False))
  relu = lambda v: np.maximum(v, 0)
  x = pose_2d.astype(np.float64).reshape(2, 18, 34).transpose(0, 2, 1)
  expected = np_temporal_block(sd, "", x, relu).transpose(0, 2, 1).reshape(2, 2, 17, 3)
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_import_names_missing_misshaped_and_unexpected_keys():
  rng = np.random.default_rng(1)
  sd = original_rie_state_dict(rng, 3)
  model = RIE(filter_widths=WIDTHS, channels=CHANNELS, latent_dim=LATENT, stage=3, fc_hidden=HIDDEN)
  broken = dict(sd)
  del broken["GlobalInfo.fc_1.bias"]
  broken["LocalLayer_LArm.expand_conv.weight"] = np.zeros((CHANNELS, 17, 3), np.float32)
  broken["extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError) as info:
    convert.convert_rie(broken, model)
  message = str(info.value)
  assert "missing GlobalInfo.fc_1.bias" in message
  assert "mis-shaped LocalLayer_LArm.expand_conv.weight" in message
  assert "unexpected extra.weight" in message
  # A stage-1 checkpoint into a stage-3 model: the fusion blocks are missing.
  with pytest.raises(ValueError, match="missing FuseBlocks"):
    convert.convert_rie(original_rie_state_dict(rng, 1), model)


def test_load_original_state_dict_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing.bin"):
    convert.load_original_state_dict(tmp_path / "nothing.bin")


def test_original_bin_file_is_read_without_pytorch(tmp_path):
  rng = np.random.default_rng(4)
  sd = {k: np.asarray(v, np.float32) if k.endswith(("weight", "bias", "mean", "var"))
        else np.asarray(v) for k, v in original_rie_state_dict(rng, 3).items()}
  # As RIE's run.py saves it: a DataParallel model's weights next to the training state.
  path = tmp_path / "gt_pretrained.bin"
  fake_torch_checkpoint.save_zip(
      {"epoch": 80, "lr": 1e-5, "random_state": np.random.RandomState(1234),
       "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
       "model_pos": collections.OrderedDict((f"module.{k}", fake_torch_checkpoint.Tensor.of(v))
                                            for k, v in sd.items())}, path)
  model = RIE(filter_widths=WIDTHS, channels=CHANNELS, latent_dim=LATENT, stage=3, fc_hidden=HIDDEN)
  read = convert.load_original_state_dict(path)
  assert convert.infer_rie_architecture(read)["stage"] == 3
  np.testing.assert_equal(convert.convert_rie(read, model), convert.convert_rie(sd, model))

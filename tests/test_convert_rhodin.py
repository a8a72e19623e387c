"""Import of the original NVS checkpoint and of torchvision ResNets.

The original's state-dict layout is rebuilt here independently, following the PyTorch
constructors of `unet_encode3D`, `ResNetTwoStream` and `MLP_fromLatent` (key names and
shapes only); the converted model's outputs are checked against numpy computations.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fake_torch_checkpoint
from geopose_jax.convert import rhodin
from geopose_jax.convert import torch_io
from geopose_jax.convert import torchvision_resnet
from geopose_jax.errors import InputError
from geopose_jax.models import nvs
from geopose_jax.models import pose_head as pose_head_lib
from geopose_jax.models import resnet
import fake_poses  # tests/ is on sys.path under pytest

PAPER = dict(depth=(3, 4, 6), width=64, reg_blocks=3, to_vec=(512, 128), points=200,
             appearance=128, filters=(32, 64, 128, 256), image=128, hidden=2048)
SMALL = dict(depth=(1, 1, 1), width=16, reg_blocks=1, to_vec=(64, 32), points=32,
             appearance=16, filters=(8, 16, 32, 64), image=128, hidden=64)


# ---------------------------------------------------------------------- original layout
class _Spec:
  """Collects PyTorch key -> shape as the original's modules would register them."""

  def __init__(self):
    self.shapes: dict[str, tuple] = {}

  def conv(self, name, out, inp, k, bias):
    self.shapes[name + ".weight"] = (out, inp, k, k)
    if bias:
      self.shapes[name + ".bias"] = (out,)

  def bn(self, name, c):
    for leaf in ("weight", "bias", "running_mean", "running_var"):
      self.shapes[f"{name}.{leaf}"] = (c,)
    self.shapes[name + ".num_batches_tracked"] = ()

  def linear(self, name, out, inp):
    self.shapes[name + ".weight"] = (out, inp)
    self.shapes[name + ".bias"] = (out,)

  def bottleneck_layer(self, name, inplanes, planes, blocks, stride):
    for i in range(blocks):
      p = f"{name}.{i}"
      self.conv(p + ".conv1", planes, inplanes, 1, False)
      self.bn(p + ".bn1", planes)
      self.conv(p + ".conv2", planes, planes, 3, False)
      self.bn(p + ".bn2", planes)
      self.conv(p + ".conv3", 4 * planes, planes, 1, False)
      self.bn(p + ".bn3", 4 * planes)
      if i == 0 and (stride != 1 or inplanes != 4 * planes):
        self.conv(p + ".downsample.0", 4 * planes, inplanes, 1, False)
        self.bn(p + ".downsample.1", 4 * planes)
      inplanes = 4 * planes
    return inplanes

  def basic_layer(self, name, inplanes, planes, blocks, stride):
    for i in range(blocks):
      p = f"{name}.{i}"
      self.conv(p + ".conv1", planes, inplanes, 3, False)
      self.bn(p + ".bn1", planes)
      self.conv(p + ".conv2", planes, planes, 3, False)
      self.bn(p + ".bn2", planes)
      if i == 0 and (stride != 1 or inplanes != planes):
        self.conv(p + ".downsample.0", planes, inplanes, 1, False)
        self.bn(p + ".downsample.1", planes)
      inplanes = planes
    return inplanes

  def unet_conv2(self, name, inp, out, batchnorm):
    self.conv(name + ".conv1.0", out, inp, 3, True)
    if batchnorm:
      self.bn(name + ".conv1.1", out)
    self.conv(name + ".conv2.0", out, out, 3, True)
    if batchnorm:
      self.bn(name + ".conv2.1", out)


def original_shapes(c: dict) -> dict[str, tuple]:
  """The whole `unet_encode3D` state dict (ResNet encoder, bilinear decoder, 2-layer pose MLP)."""
  s = _Spec()
  w, f, n3 = c["width"], c["filters"], 3 * c["points"]
  s.conv("encoder.conv1", w, 3, 7, False)
  s.bn("encoder.bn1", w)
  inplanes = s.bottleneck_layer("encoder.layer1", w, w, c["depth"][0], 1)
  inplanes = s.bottleneck_layer("encoder.layer2", inplanes, 2 * w, c["depth"][1], 2)
  inplanes = s.bottleneck_layer("encoder.layer3", inplanes, 4 * w, c["depth"][2], 2)
  inplanes = s.bottleneck_layer("encoder.layer4_reg", inplanes, 4 * w, c["reg_blocks"], 1)
  s.conv("encoder.l4_reg_toVec.0", c["to_vec"][0], inplanes, 3, True)
  s.bn("encoder.l4_reg_toVec.1", c["to_vec"][0])
  s.conv("encoder.l4_reg_toVec.3", c["to_vec"][1], c["to_vec"][0], 5, False)
  s.bn("encoder.l4_reg_toVec.4", c["to_vec"][1])
  vec_width = c["image"] // 32 - 3
  s.linear("encoder.fc", c["appearance"] + n3, c["to_vec"][1] * vec_width ** 2)
  layers = len(f)
  for li in range(1, layers + 1):  # the UNet encoder, unused with the ResNet encoder
    s.unet_conv2(f"conv_{li}_stage0", 3 if li == 1 else f[li - 2], f[li - 1], True)
  s.unet_conv2("conv_1_stage_bg0", 3, f[0], True)
  bottleneck = c["image"] // 2 ** (layers - 1)
  features = bottleneck ** 2 * f[-1]
  s.linear("fc_1_stage0", 128, n3)
  s.linear("fc_2_stage0", 51, 128)
  hidden = c["hidden"]
  s.linear("to_pose.fully_connected.0", hidden, n3)
  s.bn("to_pose.fully_connected.2", hidden)
  s.linear("to_pose.fully_connected.4", hidden, hidden)
  s.bn("to_pose.fully_connected.6", hidden)
  s.linear("to_pose.fully_connected.8", 51, hidden)
  s.linear("to_3d.0", n3, features)
  s.linear("to_fg.0", c["appearance"], features)
  s.linear("from_latent.0", bottleneck ** 2 * (f[-1] - c["appearance"]), n3)
  for li in range(1, layers - 1):
    inp, out = f[layers - li], f[layers - li - 1]
    s.conv(f"upconv_{li}_stage0.up.1", out, inp, 3, True)
    s.bn(f"upconv_{li}_stage0.up.2", out)
    s.unet_conv2(f"upconv_{li}_stage0.conv", out, out, False)
  last = f"upconv_{layers - 1}_stage0"
  s.conv(last + ".up.1", f[0], f[1], 3, True)
  s.bn(last + ".up.2", f[0])
  s.unet_conv2(last + ".conv", f[1], f[0], False)
  s.conv("final_stage0", 3, f[0], 1, True)
  return s.shapes


def _models(c: dict):
  model = nvs.NVSModel(encoder_depth=c["depth"], width=c["width"],
                       layer4_reg_blocks=c["reg_blocks"], to_vec_channels=c["to_vec"],
                       bottleneck_num_latent_points=c["points"], appearance_dim=c["appearance"],
                       decoder_channels=c["filters"], image_size=c["image"])
  return model, pose_head_lib.PoseHead(hidden_dim=c["hidden"])


def _is_parameter(key: str) -> bool:
  return not key.endswith((".running_mean", ".running_var", ".num_batches_tracked"))


def _random_state_dict(shapes: dict, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in shapes.items():
    if key.endswith("num_batches_tracked"):
      out[key] = np.array(7, np.int64)
    elif key.endswith("running_var"):
      out[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    else:
      fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 4
      out[key] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
  return out


# ----------------------------------------------------------------------- numpy references
def np_conv(x, weight, bias=None, stride=1, padding=0):
  """NHWC input, PyTorch (out, in, kh, kw) weight: direct cross-correlation."""
  k = weight.shape[2]
  x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  h = (x.shape[1] - k) // stride + 1
  w = (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], h, w, weight.shape[0]), np.float64)
  for i in range(k):
    for j in range(k):
      patch = x[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (w - 1) + 1:stride]
      out += np.einsum("bhwc,oc->bhwo", patch, weight[:, :, i, j])
  return out if bias is None else out + bias


def np_bn_eval(x, sd, name):
  return ((x - sd[name + ".running_mean"]) / np.sqrt(sd[name + ".running_var"] + 1e-5)
          * sd[name + ".weight"] + sd[name + ".bias"])


def np_upsample2x(x):
  """Bilinear x2 with align_corners, straight from the definition, pixel by pixel."""
  b, h, w, c = x.shape
  out = np.zeros((b, 2 * h, 2 * w, c))
  for i in range(2 * h):
    for j in range(2 * w):
      y, z = i * (h - 1) / (2 * h - 1), j * (w - 1) / (2 * w - 1)
      y0, z0 = int(np.floor(y)), int(np.floor(z))
      y1, z1 = min(y0 + 1, h - 1), min(z0 + 1, w - 1)
      dy, dz = y - y0, z - z0
      out[:, i, j] = ((1 - dy) * (1 - dz) * x[:, y0, z0] + (1 - dy) * dz * x[:, y0, z1]
                      + dy * (1 - dz) * x[:, y1, z0] + dy * dz * x[:, y1, z1])
  return out


def _intermediate(tree, path):
  for key in path.split("/"):
    tree = tree[key]
  return np.asarray(tree["__call__"][0], np.float64)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def small():
  model, head = _models(SMALL)
  shapes = original_shapes(SMALL)
  state_dict = _random_state_dict(shapes)
  converted = rhodin.convert_state_dict(state_dict, model, head)
  return model, head, state_dict, converted


# --------------------------------------------------------------------------------- tests
def test_full_size_keys_shapes_and_counts_match_the_original():
  model, head = _models(PAPER)
  original = original_shapes(PAPER)
  used = {k: v for k, v in original.items()
          if not rhodin.is_unused_key(k) and not k.endswith("num_batches_tracked")}
  assert rhodin.expected_torch_shapes(model, head) == used

  def count(keys):
    return sum(int(np.prod(original[k])) for k in keys if _is_parameter(k))
  total = count(original)
  unused = count(k for k in original if rhodin.is_unused_key(k))
  assert abs(total / 1e6 - 93.3) < 0.05 and abs(unused / 1e6 - 49.0) < 0.05

  # Per module: the original's count (from its layout) equals ours (from our init shapes).
  ours = torch_io.shapes_of(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 128, 128, 3)), jnp.zeros((1, 128, 128, 3))))["params"]
  ours_head = rhodin.pose_head_variable_shapes(head, model)["params"]
  theirs = collections.Counter()
  for key in used:
    if _is_parameter(key):
      parts = key.split(".")
      module = parts[1] if parts[0] == "encoder" else parts[0]
      theirs[module] += int(np.prod(original[key]))
  mine = {k: nvs.count_params(v) for k, v in ours["encoder"].items()}
  mine.update({k: nvs.count_params(v) for k, v in ours.items() if k != "encoder"})
  mine["to_pose"] = nvs.count_params(ours_head)
  assert mine == dict(theirs)
  frozen = sum(mine[k] for k in ("conv1", "bn1", "layer1", "layer2"))
  model_total = nvs.count_params(ours)
  assert abs((model_total + mine["to_pose"]) / 1e6 - 44.3) < 0.1
  assert abs((model_total - frozen) / 1e6 - 37.4) < 0.05


def test_layouts_are_converted(small):
  _, _, sd, converted = small
  params, stats = converted["nvs"]["params"], converted["nvs"]["batch_stats"]
  np.testing.assert_array_equal(params["encoder"]["conv1"]["kernel"],
                                sd["encoder.conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["encoder"]["fc"]["kernel"], sd["encoder.fc.weight"].T)
  np.testing.assert_array_equal(stats["encoder"]["layer2"]["0"]["downsample"]["1"]["var"],
                                sd["encoder.layer2.0.downsample.1.running_var"])
  np.testing.assert_array_equal(params["upconv_2_stage0"]["conv"]["conv2"]["0"]["bias"],
                                sd["upconv_2_stage0.conv.conv2.0.bias"])
  np.testing.assert_array_equal(params["from_latent"]["kernel"], sd["from_latent.0.weight"].T)
  np.testing.assert_array_equal(converted["pose_head"]["params"]["8"]["kernel"],
                                sd["to_pose.fully_connected.8.weight"].T)


def test_converted_encoder_and_decoder_match_numpy(small):
  model, _, sd, converted = small
  rng = np.random.default_rng(1)
  images = rng.standard_normal((2, 128, 128, 3)).astype(np.float32)
  background = rng.standard_normal((2, 128, 128, 3)).astype(np.float32)
  variables = converted["nvs"]

  @jax.jit
  def run(variables, images, background):
    (appearance, geometry), state = model.apply(
        variables, images, method="encode", capture_intermediates=True)
    image, dec_state = model.apply(variables, appearance, geometry, background,
                                   method="decode", capture_intermediates=True)
    return appearance, geometry, image, state["intermediates"], dec_state["intermediates"]

  appearance, geometry, image, enc, dec = run(variables, images, background)
  assert image.shape == (2, 128, 128, 3)

  # First conv + BN + ReLU.
  x = np_conv(images.astype(np.float64), sd["encoder.conv1.weight"], stride=2, padding=3)
  np.testing.assert_allclose(_intermediate(enc, "encoder/conv1"), x, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.maximum(_intermediate(enc, "encoder/bn1"), 0),
                             np.maximum(np_bn_eval(x, sd, "encoder.bn1"), 0), rtol=1e-4, atol=1e-4)

  # fc on the (1x1) l4_reg_toVec output, split into appearance and 3D points.
  vec = _intermediate(enc, "encoder/l4_reg_toVec").reshape(2, -1)
  out = vec @ sd["encoder.fc.weight"].T + sd["encoder.fc.bias"]
  np.testing.assert_allclose(appearance, out[:, :16], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(geometry, out[:, 16:].reshape(2, -1, 3), rtol=1e-4, atol=1e-5)

  # Decoder entry: from_latent viewed NCHW, [appearance, geometry] concat, x2, conv.
  hidden = np.maximum(np.asarray(geometry, np.float64).reshape(2, -1)
                      @ sd["from_latent.0.weight"].T + sd["from_latent.0.bias"], 0)
  grid = hidden.reshape(2, 48, 16, 16).transpose(0, 2, 3, 1)
  tiled = np.broadcast_to(np.asarray(appearance, np.float64)[:, None, None], (2, 16, 16, 16))
  x = np_conv(np_upsample2x(np.concatenate([tiled, grid], -1)),
              sd["upconv_1_stage0.up.1.weight"], sd["upconv_1_stage0.up.1.bias"], padding=1)
  np.testing.assert_allclose(_intermediate(dec, "upconv_1_stage0/up/1"), x, rtol=1e-4, atol=1e-4)

  # Last block: background features first, then the upsampled decoder features.
  both = np.concatenate([_intermediate(dec, "conv_1_stage_bg0"),
                         _intermediate(dec, "upconv_3_stage0/up")], -1)
  x = np_conv(both, sd["upconv_3_stage0.conv.conv1.0.weight"],
              sd["upconv_3_stage0.conv.conv1.0.bias"], padding=1)
  np.testing.assert_allclose(_intermediate(dec, "upconv_3_stage0/conv/conv1/0"), x,
                             rtol=1e-4, atol=1e-4)
  x = np_conv(_intermediate(dec, "upconv_3_stage0/conv"), sd["final_stage0.weight"],
              sd["final_stage0.bias"])
  np.testing.assert_allclose(image, x, rtol=1e-4, atol=1e-4)


def test_converted_pose_head_matches_numpy(small):
  _, head, sd, converted = small
  latent = np.random.default_rng(2).standard_normal((3, 32, 3)).astype(np.float32)
  got = jax.jit(lambda v, x: head.apply(v, x))(converted["pose_head"], latent)
  p = "to_pose.fully_connected."
  x = latent.reshape(3, -1).astype(np.float64)
  x = np_bn_eval(np.maximum(x @ sd[p + "0.weight"].T + sd[p + "0.bias"], 0), sd, p + "2")
  x = np_bn_eval(np.maximum(x @ sd[p + "4.weight"].T + sd[p + "4.bias"], 0), sd, p + "6")
  x = x @ sd[p + "8.weight"].T + sd[p + "8.bias"]
  np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-4)


def test_errors_name_the_bad_keys(small):
  model, head, sd, _ = small
  broken = dict(sd)
  del broken["encoder.layer3.0.conv2.weight"]
  broken["upconv_1_stage0.up.2.running_mean"] = np.zeros(5, np.float32)
  with pytest.raises(ValueError, match=r"encoder\.layer3\.0\.conv2\.weight") as err:
    rhodin.convert_state_dict(broken, model, head, source="ckpt.pth")
  assert "upconv_1_stage0.up.2.running_mean: got (5,)" in str(err.value)
  assert "ckpt.pth" in str(err.value)
  with pytest.raises(ValueError, match="encoder.layer9.weight"):
    rhodin.convert_state_dict({**sd, "encoder.layer9.weight": np.zeros(1)}, model, head)
  # Unused parts and num_batches_tracked may be absent too.
  trimmed = {k: v for k, v in sd.items()
             if not rhodin.is_unused_key(k) and not k.endswith("num_batches_tracked")}
  rhodin.convert_state_dict(trimmed, model, head)
  # A model of another size fails on shapes, not deep inside JAX.
  with pytest.raises(ValueError, match="mis-shaped"):
    rhodin.convert_state_dict(sd, fake_poses.small_nvs_model(appearance_dim=8), head)


def test_load_from_npz_file(small, tmp_path):
  model, head, sd, converted = small
  path = tmp_path / "network_best_val_t1.npz"
  np.savez(path, **{"module." + k: v for k, v in sd.items()})
  loaded = rhodin.load_checkpoint(path, model, head)
  jax.tree.map(np.testing.assert_array_equal, loaded, converted)
  # The .pth as torch 0.4 wrote it (legacy layout, DataParallel names), read without PyTorch.
  pth = tmp_path / "network_best_val_t1.pth"
  fake_torch_checkpoint.save_legacy(
      collections.OrderedDict((f"module.{k}", fake_torch_checkpoint.Tensor.of(v))
                              for k, v in sd.items()), pth)
  jax.tree.map(np.testing.assert_array_equal, rhodin.load_checkpoint(pth, model, head), converted)
  with pytest.raises(FileNotFoundError, match="nothing.pth"):
    rhodin.load_checkpoint(tmp_path / "nothing.pth", model, head)
  # A .pth is read without PyTorch; a corrupt one gets one line naming the file.
  corrupt = tmp_path / "corrupt.pth"
  corrupt.write_bytes(b"not a checkpoint")
  with pytest.raises(InputError, match="corrupt.pth"):
    rhodin.load_checkpoint(corrupt, model, head)


def _torchvision_shapes(block: str, width: int, depth: tuple[int, ...]) -> dict[str, tuple]:
  s = _Spec()
  s.conv("conv1", width, 3, 7, False)
  s.bn("bn1", width)
  make = s.bottleneck_layer if block == "bottleneck" else s.basic_layer
  inplanes = width
  for k, blocks in enumerate(depth):
    inplanes = make(f"layer{k + 1}", inplanes, width * 2 ** k, blocks, 1 if k == 0 else 2)
  s.linear("fc", 1000, inplanes)
  return s.shapes


def test_torchvision_resnet18_features():
  model = resnet.ResNet18Features(width=8)
  sd = _random_state_dict(_torchvision_shapes("basic", 8, (2, 2, 2, 2)), seed=3)
  variables = torchvision_resnet.resnet18_features_variables(sd, model)
  images = np.random.default_rng(4).standard_normal((2, 32, 32, 3)).astype(np.float32)
  feats = jax.jit(lambda v, x: model.apply(v, x))(variables, images)
  assert [f.shape for f in feats] == [(2, 16, 16, 8), (2, 8, 8, 8), (2, 4, 4, 16)]
  x = np_bn_eval(np_conv(images.astype(np.float64), sd["conv1.weight"], stride=2, padding=3),
                 sd, "bn1")
  np.testing.assert_allclose(feats[0], np.maximum(x, 0), rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="layer2.1.bn2.weight"):
    torchvision_resnet.resnet18_features_variables(
        {k: v for k, v in sd.items() if k != "layer2.1.bn2.weight"}, model)


def test_torchvision_resnet50_into_encoder(small):
  model, _, _, converted = small
  sd = _random_state_dict(_torchvision_shapes("bottleneck", 16, (1, 1, 1, 1)), seed=5)
  merged = torchvision_resnet.resnet50_into_nvs(sd, converted["nvs"])
  enc = merged["params"]["encoder"]
  np.testing.assert_array_equal(enc["layer3"]["0"]["conv2"]["kernel"],
                                sd["layer3.0.conv2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(merged["batch_stats"]["encoder"]["bn1"]["mean"],
                                sd["bn1.running_mean"])
  # The regression stream and the decoder keep their values.
  before = converted["nvs"]["params"]["encoder"]
  np.testing.assert_array_equal(enc["layer4_reg"]["0"]["conv1"]["kernel"],
                                before["layer4_reg"]["0"]["conv1"]["kernel"])
  assert merged["params"]["from_latent"] is converted["nvs"]["params"]["from_latent"]
  with pytest.raises(ValueError, match="layer1.0.conv1.weight: got"):
    torchvision_resnet.resnet50_into_nvs(
        {**sd, "layer1.0.conv1.weight": np.zeros((3, 3, 1, 1), np.float32)}, converted["nvs"])

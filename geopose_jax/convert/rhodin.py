"""Import of Rhodin et al.'s `network_best_val_t1.pth` (the whole `unet_encode3D` network).

The file is a bare state dict. With the ResNet encoder, these parts exist in it but are
never used, and are skipped by name: the UNet encoder (`conv_{k}_stage0.*`), `to_3d.*`,
`to_fg.*`, `fc_1_stage0.*`, `fc_2_stage0.*` (and the implicit-rotation layers
`encode_angle.*`, `rotate_implicitely.*` if present); `*.num_batches_tracked` is ignored.
Everything else must match the model exactly:
  encoder.*                 -> NVSModel variables encoder/...
  from_latent.0.*           -> from_latent
  conv_1_stage_bg0.*, upconv_{k}_stage0.*, final_stage0.*  -> same names
  to_pose.fully_connected.* -> PoseHead variables
The mapping is derived from the model's own variable shapes, so it works at any size.
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp

from geopose_jax.convert import torch_io
from geopose_jax.models import nvs
from geopose_jax.models import pose_head as pose_head_lib

_UNUSED = re.compile(
    r"^(conv_\d+_stage0|to_3d|to_fg|fc_1_stage0|fc_2_stage0|encode_angle|rotate_implicitely)\.")
POSE_PREFIX = "to_pose.fully_connected."


def is_unused_key(key: str) -> bool:
  """True for the original's parameters that the ResNet-encoder network never uses."""
  return bool(_UNUSED.match(key))


def nvs_variable_shapes(model: nvs.NVSModel) -> dict:
  """{'params', 'batch_stats'} of ShapeDtypeStructs for `model` (nothing is computed)."""
  images = jnp.zeros((1, model.image_size, model.image_size, 3), jnp.float32)
  return torch_io.shapes_of(lambda: model.init(jax.random.key(0), images, images))


def pose_head_variable_shapes(head: pose_head_lib.PoseHead, model: nvs.NVSModel) -> dict:
  latent = jnp.zeros((1, model.bottleneck_num_latent_points, 3), jnp.float32)
  return torch_io.shapes_of(lambda: head.init(jax.random.key(0), latent))


def _nvs_targets(shapes: dict) -> dict[str, torch_io.Target]:
  targets = torch_io.torch_names(shapes)
  # The original's from_latent is nn.Sequential(Linear, Dropout, ReLU): its Linear is '0'.
  return {k.replace("from_latent.", "from_latent.0.", 1) if k.startswith("from_latent.") else k: t
          for k, t in targets.items()}


def expected_torch_shapes(model: nvs.NVSModel,
                          head: pose_head_lib.PoseHead | None = None) -> dict[str, tuple]:
  """The PyTorch keys and shapes `convert_state_dict` reads for this configuration."""
  out = {k: t.torch_shape for k, t in _nvs_targets(nvs_variable_shapes(model)).items()}
  if head is not None:
    out.update({k: t.torch_shape for k, t in torch_io.torch_names(
        pose_head_variable_shapes(head, model), POSE_PREFIX).items()})
  return out


def convert_state_dict(state_dict: torch_io.StateDict, model: nvs.NVSModel | None = None,
                       head: pose_head_lib.PoseHead | None = None,
                       source: str = "Rhodin state dict") -> dict[str, dict]:
  """Original state dict (name -> numpy) -> {'nvs': variables, 'pose_head': variables}.

  Variables are {'params': ..., 'batch_stats': ...} nested dicts of float32 numpy arrays
  for `model` (default: the paper's NVSModel) and `head` (default: the paper's PoseHead).
  Raises ValueError naming every missing, mis-shaped or unknown key.
  """
  model = model if model is not None else nvs.NVSModel()
  head = head if head is not None else pose_head_lib.PoseHead()
  nvs_targets = _nvs_targets(nvs_variable_shapes(model))
  pose_targets = torch_io.torch_names(pose_head_variable_shapes(head, model), POSE_PREFIX)
  torch_io.check_unexpected(state_dict, list(nvs_targets) + list(pose_targets), is_unused_key,
                            source)
  return {"nvs": torch_io.import_tensors(state_dict, nvs_targets, source),
          "pose_head": torch_io.import_tensors(state_dict, pose_targets, source)}


def load_checkpoint(path: str | os.PathLike, model: nvs.NVSModel | None = None,
                    head: pose_head_lib.PoseHead | None = None) -> dict[str, dict]:
  """Reads `network_best_val_t1.pth` (or an .npz of it) and converts it; see convert_state_dict."""
  state_dict = torch_io.load_state_dict(path)
  return convert_state_dict(state_dict, model, head, source=str(path))

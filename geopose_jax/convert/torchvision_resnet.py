"""Import of torchvision's ImageNet ResNet-50 / ResNet-18 state dicts (files the user brings).

ResNet-50 (`resnet50-*.pth`) initialises the NVS encoder's conv1, bn1 and layer1..layer3
as in the original (its layer4 and fc are not used: layer4_reg starts at random).
ResNet-18 (`resnet18-*.pth`) gives the frozen perceptual-loss network (conv1, bn1,
layer1, layer2; layer3, layer4, fc unused). Key names are torchvision's; the 'module.'
prefix of DataParallel saves is removed by `torch_io.load_state_dict`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from geopose_jax.convert import torch_io
from geopose_jax.models import resnet

IMAGENET_STEM_AND_LAYERS = ("conv1", "bn1", "layer1", "layer2", "layer3")


def _unused_after(kept_layers: tuple[str, ...]):
  """Skips torchvision's layers that the target does not have."""
  all_layers = ("layer1", "layer2", "layer3", "layer4", "fc")
  dropped = tuple(name + "." for name in all_layers if name not in kept_layers)
  return lambda key: key.startswith(dropped)


def resnet50_into_nvs(state_dict: torch_io.StateDict, nvs_variables: dict,
                      source: str = "torchvision ResNet-50 state dict") -> dict:
  """Returns `nvs_variables` with encoder conv1/bn1/layer1..3 taken from ImageNet ResNet-50.

  `nvs_variables` is an NVSModel's {'params', 'batch_stats'} (e.g. from `model.init`);
  only the encoder's ImageNet part is replaced, every other leaf is kept. The model's
  encoder must have ResNet-50's widths and depths for layer1..layer3 (width 64,
  (3, 4, 6) bottlenecks); any other shape is reported with its key.
  """
  encoder = {c: {k: v for k, v in nvs_variables[c]["encoder"].items()
                 if k in IMAGENET_STEM_AND_LAYERS}
             for c in ("params", "batch_stats")}
  targets = torch_io.torch_names(encoder)
  torch_io.check_unexpected(state_dict, targets, _unused_after(IMAGENET_STEM_AND_LAYERS), source)
  imported = torch_io.import_tensors(state_dict, targets, source)
  out = dict(nvs_variables)
  for collection in ("params", "batch_stats"):
    out[collection] = torch_io.merge(nvs_variables[collection], {"encoder": imported[collection]})
  return out


def resnet18_features_variables(state_dict: torch_io.StateDict,
                                model: resnet.ResNet18Features | None = None,
                                source: str = "torchvision ResNet-18 state dict") -> dict:
  """ImageNet ResNet-18 -> {'params', 'batch_stats'} of `ResNet18Features` (numpy)."""
  model = model if model is not None else resnet.ResNet18Features()
  shapes = torch_io.shapes_of(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.float32)))
  targets = torch_io.torch_names(shapes)
  torch_io.check_unexpected(state_dict, targets,
                            _unused_after(("conv1", "bn1", "layer1", "layer2")), source)
  return torch_io.import_tensors(state_dict, targets, source)


def load_resnet50_into_nvs(path: str | os.PathLike, nvs_variables: dict) -> dict:
  """`resnet50_into_nvs` from a `.pth` / `.npz` file."""
  return resnet50_into_nvs(torch_io.load_state_dict(path), nvs_variables, source=str(path))


def load_resnet18_features(path: str | os.PathLike,
                           model: resnet.ResNet18Features | None = None) -> dict:
  """`resnet18_features_variables` from a `.pth` / `.npz` file."""
  return resnet18_features_variables(torch_io.load_state_dict(path), model, source=str(path))

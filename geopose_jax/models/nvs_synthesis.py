"""Running the NVS network (models/nvs.py) as its tasks do: encode, rotate, decode.

Shared by the NVS family (stage 1 `nvs`, stage 2 `nvs_pose`, `smpl` on the frozen latent):
building the network from `config.model.net`, image preparation, the synthesis of a batch
whose appearance is exchanged inside groups of 4 views, initial variables, a jitted view
synthesizer for pictures, and the weights a run starts from (ImageNet encoder layers,
Rhodin et al.'s original network).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.errors import InputError
from geopose_jax.models import nvs as nvs_model
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import mesh

PyTree = Any
RHODIN_FILE = "Rhodin et al.'s network_best_val_t1.pth (or an .npz of its state dict)"
RHODIN_SUFFIXES = (".pth", ".npz")


def build_model(net: Mapping[str, Any]) -> nvs_model.NVSModel:
  """`config.model.net` (a ConfigDict or dict of NVSModel fields) -> the network."""
  fields = net.to_dict() if hasattr(net, "to_dict") else dict(net)
  return nvs_model.NVSModel(**fields)


def prepare_images(images: jax.Array, image_size: int) -> jax.Array:
  """uint8 `(B, H, W, 3)` -> normalised float `(B, S, S, 3)` (resized if H != S)."""
  images = nvs_model.normalize_image(images)
  if images.shape[1] != image_size or images.shape[2] != image_size:
    images = jax.image.resize(images, (images.shape[0], image_size, image_size, 3),
                              "linear", antialias=True)
  return images


def gather_in_groups(x: jax.Array, index: jax.Array) -> jax.Array:
  """`x[index]` for an index that stays inside each group of 4: `index[i] // 4 == i // 4`.

  Written as selects on a `(B / 4, 4, ...)` view rather than a gather across the batch, so
  that a batch sharded over devices (whole groups per device) needs no communication.

  Args:
    x: `(B, ...)`, B a multiple of 4.
    index: `(B,)` int.
  """
  x = jnp.asarray(x)
  b = x.shape[0]
  groups = mesh.batch_sharded_like(x.reshape((b // 4, 4) + x.shape[1:]), x)
  local = (index % 4).reshape((b // 4, 4) + (1,) * (x.ndim - 1))
  out = jnp.zeros_like(groups)
  for k in range(4):
    out = jnp.where(local == k, groups[:, k:k + 1], out)
  return mesh.batch_sharded_like(out.reshape(x.shape), x)


def _synthesize_method(module, images, rotations, appearance, backgrounds, train):
  app, geometry = module.encode(images, train)
  geometry = geometry @ jnp.swapaxes(rotations, -1, -2)  # L_3d R^T (row-vector points)
  if appearance is not None:
    app = gather_in_groups(app, appearance)
  return module.decode(app, geometry, backgrounds, train)


def synthesize(model, variables: PyTree, images: jax.Array, rotations: jax.Array,
               appearance: jax.Array | None, backgrounds: jax.Array, train: bool,
               rng: jax.Array | None = None) -> tuple[jax.Array, PyTree]:
  """Encodes `images`, rotates the latent points, decodes with swapped appearance.

  Args:
    images, backgrounds: `(B, S, S, 3)` normalised; backgrounds are already the targets'.
    rotations: `(B, 3, 3)` camera-to-camera rotations applied to each sample's points.
    appearance: `(B,)` index of the sample whose appearance each output uses (inside
      its group of 4), or None for its own.
    train: BatchNorm batch statistics and dropout on (then `rng` is needed).

  Returns:
    (images `(B, S, S, 3)` normalised, updated collections ({} when not training)).
  """
  if train:
    return model.apply(variables, images, rotations, appearance, backgrounds, True,
                       method=_synthesize_method, rngs={"dropout": rng},
                       mutable=["batch_stats"])
  return model.apply(variables, images, rotations, appearance, backgrounds, False,
                     method=_synthesize_method), {}


def _encode_method(module, images, train):
  return module.encode(images, train)


def encode(model, variables: PyTree, images: jax.Array, train: bool = False):
  """Normalised `(B, S, S, 3)` -> (appearance `(B, A)`, geometry `(B, P, 3)`); with `train`
  also the updated batch statistics: ((appearance, geometry), {'batch_stats': ...})."""
  if train:
    return model.apply(variables, images, True, method=_encode_method,
                       mutable=["batch_stats"])
  return model.apply(variables, images, False, method=_encode_method)


def init_variables(model, image_size: int, rng: jax.Array) -> PyTree:
  """{"params", "batch_stats"} of the NVS model at `image_size` input."""
  params_key, dropout_key = jax.random.split(rng)
  images = jnp.zeros((4, image_size, image_size, 3))
  rotations = jnp.broadcast_to(jnp.eye(3), (4, 3, 3))
  return model.init({"params": params_key, "dropout": dropout_key}, images, rotations,
                    None, images, False, method=_synthesize_method)


def abstract_variables(model, image_size: int) -> PyTree:
  """Shapes of `init_variables` (ShapeDtypeStructs), computed without running it."""
  return jax.eval_shape(lambda rng: init_variables(model, image_size, rng), jax.random.key(0))


def view_synthesizer(model, image_size: int) -> Callable[..., jax.Array]:
  """Jitted (variables, images, backgrounds uint8 `(N, H, W, 3)`, rotations `(N, 3, 3)`)
  -> uint8 `(N, S, S, 3)`: each image re-drawn under its rotation, own appearance."""

  @jax.jit
  def run(variables, images, backgrounds, rotations):
    output, _ = synthesize(model, variables, prepare_images(images, image_size), rotations,
                           None, prepare_images(backgrounds, image_size), train=False)
    return jnp.clip(jnp.round(nvs_model.denormalize_image(output) * 255.0), 0, 255
                    ).astype(jnp.uint8)

  return run


def load_encoder_weights(abstract: PyTree, path: str) -> dict:
  """ImageNet ResNet-50 weights for the encoder's conv1, bn1, layer1..layer3, from `path`.

  Args:
    abstract: the NVS variables' shapes (`abstract_variables`).
    path: a torchvision resnet50 checkpoint (.pth, or an .npz of its state dict).

  Returns {"params": {"encoder": ...}, "batch_stats": {"encoder": ...}} holding only those
  layers (numpy), to be merged into freshly initialised variables.
  """
  if not os.path.exists(path):
    raise InputError(
        f"config.model.encoder_weights: {path} does not exist; give the torchvision resnet50 "
        "checkpoint file (e.g. resnet50-0676ba61.pth) or '' to start from scratch")
  from geopose_jax.convert import torchvision_resnet  # pylint: disable=g-import-not-at-top
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
  full = torchvision_resnet.load_resnet50_into_nvs(path, zeros)
  keep = torchvision_resnet.IMAGENET_STEM_AND_LAYERS
  return {c: {"encoder": {k: v for k, v in full[c]["encoder"].items() if k in keep}}
          for c in ("params", "batch_stats")}


def merge_variables(state: PyTree, variables: Mapping, *, source: str, into: str = "",
                    only: tuple[str, ...] = (".*",)) -> PyTree:
  """`state` with NVS `variables` ({'params', 'batch_stats'}) put under `params/<into>` and
  `batch_stats/<into>` (`into` '' for a state that is the NVS network's own); `only`:
  patterns over the path below those. See train/init_from.merge."""
  for collection in ("params", "batch_stats"):
    if not init_from_lib.flatten(variables.get(collection, {})):
      continue
    target = f"{collection}/{into}" if into else collection
    state = init_from_lib.merge(state, variables, source=source, into=target, take=collection,
                                only=only)
  return state


def put_imagenet_encoder(state: PyTree, path: str, *, model, image_size: int,
                         into: str = "") -> PyTree:
  """`state` with the encoder's ImageNet layers (conv1..layer3) from a torchvision file."""
  from geopose_jax.convert import torchvision_resnet  # pylint: disable=g-import-not-at-top
  weights = load_encoder_weights(abstract_variables(model, image_size), path)
  layers = "|".join(torchvision_resnet.IMAGENET_STEM_AND_LAYERS)
  return merge_variables(state, weights, source=path, into=into,
                         only=(f"encoder/({layers})/.*",))


def load_rhodin(path, model, head=None) -> dict:
  """Rhodin et al.'s state dict -> {'nvs': variables, 'pose_head': variables} (numpy); one
  line naming the file when it does not fit `model` (and `head`)."""
  from geopose_jax.convert import rhodin  # pylint: disable=g-import-not-at-top
  try:
    return rhodin.load_checkpoint(path, model, head)
  except (OSError, ValueError, KeyError) as e:
    first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
    raise InputError(f"--config.init_from={path}: not a state dict of this network ({first}); "
                     "give the original's network_best_val_t1.pth with the paper's model.net"
                     ) from None

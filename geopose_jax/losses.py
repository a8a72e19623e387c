"""Image reconstruction losses for novel-view synthesis (Rhodin et al. 2018).

L1 in normalised image space plus a perceptual term: the L1 distance between the feature
maps [relu(bn1(conv1)), layer1, layer2] of a frozen ResNet-18 (ImageNet weights when the
user provides them), averaged over the three maps and weighted (2 in the original).
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

FeatureFn = Callable[[jax.Array], list]


def masked_mean_abs(a: jax.Array, b: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean |a - b| per sample, then the `(B,)`-weighted mean over samples (0 if no weight)."""
  per_sample = jnp.abs(a - b).reshape(a.shape[0], -1).mean(axis=1)
  return (per_sample * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def reconstruction_losses(output: jax.Array, target: jax.Array, perceptual: FeatureFn | None,
                          l1_weight: float = 1.0, perceptual_weight: float = 2.0,
                          valid: jax.Array | None = None) -> dict[str, jax.Array]:
  """L1 plus perceptual loss between synthesised and real images.

  Args:
    output, target: `(B, H, W, 3)` normalised images; no gradient flows into `target`.
    perceptual: images -> list of feature maps `(B, h, w, c)`, or None (term off).
    l1_weight, perceptual_weight: the weights of the two terms.
    valid: `(B,)` bool; padded samples do not count.

  Returns:
    {"l1", "perceptual", "loss"} scalars with
    loss = l1_weight * l1 + perceptual_weight * mean_layers(L1(features)).
  """
  target = jax.lax.stop_gradient(target)
  weights = jnp.ones(output.shape[0]) if valid is None else valid.astype(jnp.float32)
  l1 = masked_mean_abs(output, target, weights)
  if perceptual is None or perceptual_weight == 0:
    perceptual_loss = jnp.zeros((), output.dtype)
  else:
    # Two passes: the target's features need no backward pass, which a single pass over
    # [output; target] would still pay for (about 2x the cost of this term's gradient).
    output_features = perceptual(output)
    target_features = jax.lax.stop_gradient(perceptual(target))
    perceptual_loss = sum(
        masked_mean_abs(f, g, weights) for f, g in zip(output_features, target_features)
    ) / len(output_features)
  return {"l1": l1, "perceptual": perceptual_loss,
          "loss": l1_weight * l1 + perceptual_weight * perceptual_loss}


def perceptual_network(weights_path: str, image_size: int, without_weights: str = "random",
                       seed: int = 0, maxpool: bool = True) -> FeatureFn | None:
  """The frozen ResNet-18 feature function of the perceptual loss.

  Args:
    weights_path: a torchvision ResNet-18 checkpoint (`resnet18-*.pth`, or an `.npz` of its
      state dict) to take ImageNet weights from; '' for none.
    image_size: input side, to initialise the network.
    without_weights: what to do without a weights file: 'random' keeps the term with a
      frozen randomly initialised ResNet-18 (random convolutional features still compare
      local structure and edges, but do not know what matters to a human eye), 'off'
      drops the term (the loss is L1 only).
    seed: initialisation seed of the random network (fixed, so a resumed run sees the
      same loss).
    maxpool: the max-pooling between conv1 and layer1, the original's `do_maxpooling`:
      on in its published configuration (config_train_encodeDecode.py turns it on last).

  Returns:
    images `(N, H, W, 3)` normalised -> [(N, H/2, W/2, 64), (N, H/4, W/4, 64),
    (N, H/8, W/8, 128)] (without max-pooling: H/2 and H/4 for the last two), or None if off.
  """
  from geopose_jax.models import resnet  # pylint: disable=g-import-not-at-top

  if without_weights not in ("random", "off"):
    raise ValueError(f"loss.perceptual_without_weights must be 'random' or 'off', got "
                     f"{without_weights!r}")
  network = resnet.ResNet18Features(do_maxpooling=bool(maxpool))
  if weights_path:
    variables = load_resnet18_features(weights_path, network)
  elif without_weights == "off":
    return None
  else:
    variables = network.init(jax.random.key(seed), jnp.zeros((1, image_size, image_size, 3)))
  variables = jax.tree.map(jnp.asarray, variables)

  def features(images: jax.Array) -> list:
    return network.apply(jax.lax.stop_gradient(variables), images, train=False)

  return features


def load_resnet18_features(path: str, network) -> Mapping:
  """Reads ImageNet ResNet-18 weights for conv1, bn1, layer1, layer2 from a user file."""
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"model.perceptual_weights: {path} does not exist; give the torchvision "
        "resnet18 checkpoint file (e.g. resnet18-f37072fd.pth) or '' to go without")
  from geopose_jax.convert import torchvision_resnet  # pylint: disable=g-import-not-at-top
  return torchvision_resnet.load_resnet18_features(path, network)

"""Stage 1 of Rhodin et al. (ECCV 2018): geometry-aware representation by novel-view synthesis.

An image of view i is encoded into an appearance vector (128) and 200 3D points; the
points are rotated into another camera j (`L_3d R_ij^T`, R_ij = R_j R_i^T), the appearance
is swapped for that of another instant of the same sequence, and the decoder, given
view j's background, must draw view j. No 3D labels are used.

Batches come in groups of four, [t cam a, t cam b, t' cam c, t' cam d]. Inside the jitted
step, as in the original:
  - target: each adjacent pair (a, b) is permuted at random (half the time a sample is
    decoded into its own view, half into its pair's other view);
  - appearance: drawn from the pair of the other instant (a random one of its two views);
  - background: the target view's.
Loss (geopose_jax.losses): L1 + 2 * perceptual. Adam 1e-3; the encoder's conv1..layer2 are
frozen (optax masking), as in the original.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from geopose_jax import losses
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task

PyTree = Any


# --- batch composition -------------------------------------------------------------------

def pair_permutations(rng: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
  """The original's random batch composition for groups [t a, t b, t' c, t' d].

  Args:
    rng: PRNG key.
    batch_size: B, a multiple of 4.

  Returns:
    (target, appearance), each `(B,)` int32: sample i is decoded into view `target[i]`
    (i itself or its pair partner i ^ 1, one coin per pair) with the appearance of sample
    `appearance[i]`, a random view of the other instant of its group (i ^ 2 or i ^ 3).
  """
  if batch_size % 4:
    raise ValueError(f"NVS batches come in groups of 4 views; batch size {batch_size} is not "
                     "a multiple of 4")
  index = jnp.arange(batch_size, dtype=jnp.int32)
  target_key, appearance_key = jax.random.split(rng)
  swap_target = jax.random.bernoulli(target_key, 0.5, (batch_size // 2,)).astype(jnp.int32)
  swap_appearance = jax.random.bernoulli(appearance_key, 0.5,
                                         (batch_size // 2,)).astype(jnp.int32)
  target = index ^ jnp.repeat(swap_target, 2)
  # Shuffle inside each pair, then exchange pairs with the other instant's (bit 1).
  appearance = (index ^ jnp.repeat(swap_appearance, 2)) ^ 2
  return target, appearance


def eval_permutations(batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """The original's deterministic test composition for pairs of views of one instant.

  Returns (target, appearance) `(B,)` int32: target = the pair's other view, appearance =
  the sample's own.
  """
  if batch_size % 2:
    raise ValueError(f"NVS evaluation batches come in pairs of views; got {batch_size}")
  index = np.arange(batch_size, dtype=np.int32)
  return index ^ 1, index


def _batch_sharded_like(y: jax.Array, x: jax.Array) -> jax.Array:
  """`y` sharded on its leading axis as `x` is on its own (explicit-sharding meshes)."""
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec = getattr(sharding, "spec", None)
  if not spec or spec[0] is None:
    return y
  return jax.sharding.reshard(y, jax.sharding.NamedSharding(
      sharding.mesh, jax.sharding.PartitionSpec(spec[0], *([None] * (y.ndim - 1)))))


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
  groups = _batch_sharded_like(x.reshape((b // 4, 4) + x.shape[1:]), x)
  local = (index % 4).reshape((b // 4, 4) + (1,) * (x.ndim - 1))
  out = jnp.zeros_like(groups)
  for k in range(4):
    out = jnp.where(local == k, groups[:, k:k + 1], out)
  return _batch_sharded_like(out.reshape(x.shape), x)


def relative_rotations(rotations: jax.Array, target: jax.Array) -> jax.Array:
  """`(B, 3, 3)` world->camera rotations, `(B,)` targets -> `(B, 3, 3)` R_target R_i^T."""
  return gather_in_groups(rotations, target) @ jnp.swapaxes(rotations, -1, -2)


# --- model, parameters, optimizer ----------------------------------------------------------

def build_model(config: ml_collections.ConfigDict):
  from geopose_jax.models import nvs as nvs_model  # pylint: disable=g-import-not-at-top
  return nvs_model.NVSModel(**config.model.net.to_dict())


def prepare_images(images: jax.Array, image_size: int) -> jax.Array:
  """uint8 `(B, H, W, 3)` -> normalised float `(B, S, S, 3)` (resized if H != S)."""
  from geopose_jax.models import nvs as nvs_model  # pylint: disable=g-import-not-at-top
  images = nvs_model.normalize_image(images)
  if images.shape[1] != image_size or images.shape[2] != image_size:
    images = jax.image.resize(images, (images.shape[0], image_size, image_size, 3),
                              "linear", antialias=True)
  return images


def _synthesize_method(module, images, rotations, appearance, backgrounds, train):
  app, geometry = module.encode(images, train)
  geometry = geometry @ jnp.swapaxes(rotations, -1, -2)  # L_3d R^T (row-vector points)
  if appearance is not None:
    app = gather_in_groups(app, appearance)
  return module.decode(app, geometry, backgrounds, train)


def synthesize(model, variables: PyTree, images: jax.Array, rotations: jax.Array,
               appearance: jax.Array, backgrounds: jax.Array, train: bool,
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


def make_init_variables(model, image_size: int) -> Callable[[jax.Array], PyTree]:
  """rng -> {"params", "batch_stats"} of the NVS model at `image_size` input."""

  def init_variables(rng):
    params_key, dropout_key = jax.random.split(rng)
    images = jnp.zeros((4, image_size, image_size, 3))
    rotations = jnp.broadcast_to(jnp.eye(3), (4, 3, 3))
    return model.init({"params": params_key, "dropout": dropout_key}, images, rotations,
                      None, images, False, method=_synthesize_method)

  return init_variables


def trainable_labels(params: PyTree, frozen_prefixes: Sequence[str]) -> PyTree:
  """'frozen' for every leaf whose path starts with one of `frozen_prefixes`, else 'trained'.

  Prefixes are '/'-joined parameter paths, e.g. 'encoder/layer1'. Each must match at
  least one parameter, so a misspelt name fails instead of silently training everything.
  """
  paths = jax.tree_util.tree_flatten_with_path(params)[0]
  names = ["/".join(str(getattr(k, "key", k)) for k in path) for path, _ in paths]
  for prefix in frozen_prefixes:
    if not any(n == prefix or n.startswith(prefix + "/") for n in names):
      raise ValueError(f"model.frozen_layers: {prefix!r} matches no parameter; parameter "
                       f"groups are {sorted({'/'.join(n.split('/')[:2]) for n in names})}")
  labels = ["frozen" if any(n == p or n.startswith(p + "/") for p in frozen_prefixes)
            else "trained" for n in names]
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), labels)


def make_optimizer(optim: ml_collections.ConfigDict, params: PyTree,
                   frozen_prefixes: Sequence[str] = ()) -> optax.GradientTransformation:
  """Adam on the trained parameters, zero updates (and no moments) for the frozen ones."""
  adam = optax.adam(optim.lr)
  if not frozen_prefixes:
    return adam
  return optax.multi_transform({"trained": adam, "frozen": optax.set_to_zero()},
                               trainable_labels(params, frozen_prefixes))


def load_encoder_weights(abstract_variables: PyTree, path: str) -> PyTree:
  """ImageNet ResNet-50 weights for the encoder's conv1, bn1, layer1..layer3, from `path`.

  Returns {"params": {"encoder": ...}, "batch_stats": {"encoder": ...}} holding only those
  layers (numpy), to be merged into freshly initialised variables.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"model.encoder_weights: {path} does not exist; give the torchvision resnet50 "
        "checkpoint file (e.g. resnet50-0676ba61.pth) or '' to start from scratch")
  from geopose_jax.convert import torchvision_resnet  # pylint: disable=g-import-not-at-top
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_variables)
  full = torchvision_resnet.load_resnet50_into_nvs(path, zeros)
  keep = torchvision_resnet.IMAGENET_STEM_AND_LAYERS
  return {c: {"encoder": {k: v for k, v in full[c]["encoder"].items() if k in keep}}
          for c in ("params", "batch_stats")}


# --- the task -------------------------------------------------------------------------------

def compose_batch(batch, target: jax.Array, appearance: jax.Array,
                  image_size: int) -> dict[str, jax.Array]:
  """What the network sees for a composition (pure; the step's only data plumbing).

  Args:
    batch: image, background `(B, H, W, 3)` uint8, R `(B, 3, 3)`.
    target, appearance: `(B,)` from `pair_permutations` / `eval_permutations`.

  Returns:
    images (the inputs) `(B, S, S, 3)`, rotations `(B, 3, 3)` = R_target R_i^T,
    appearance `(B,)`, backgrounds = the targets' backgrounds, targets = the targets'
    images (all images normalised).
  """
  images = prepare_images(batch["image"], image_size)
  backgrounds = prepare_images(batch["background"], image_size)
  return {"images": images, "rotations": relative_rotations(batch["R"], target),
          "appearance": appearance, "backgrounds": gather_in_groups(backgrounds, target),
          "targets": gather_in_groups(images, target)}


def make_train_step(model, perceptual, config: ml_collections.ConfigDict):
  """(state, batch, rng) -> (state, metrics) with the original's random batch composition."""
  size = config.model.net.image_size

  def train_step(state: TrainState, batch, rng):
    permute_key, dropout_key = jax.random.split(rng)
    target, appearance = pair_permutations(permute_key, batch["image"].shape[0])
    inputs = compose_batch(batch, target, appearance, size)

    def loss_fn(params):
      output, updates = synthesize(
          model, {"params": params, "batch_stats": state.batch_stats}, inputs["images"],
          inputs["rotations"], inputs["appearance"], inputs["backgrounds"], train=True,
          rng=dropout_key)
      terms = losses.reconstruction_losses(output, inputs["targets"], perceptual,
                                           config.loss.l1_weight, config.loss.perceptual_weight)
      return terms["loss"], (terms, updates)

    grads, (terms, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads, batch_stats=updates["batch_stats"])
    return state, terms

  return train_step


def make_eval_step(model, perceptual, config: ml_collections.ConfigDict):
  """(variables, batch) -> sums over valid items of {l1, perceptual, loss} and `count`."""
  size = config.model.net.image_size

  def eval_step(variables, batch):
    target, _ = eval_permutations(batch["image"].shape[0])
    inputs = compose_batch(batch, jnp.asarray(target), None, size)
    output, _ = synthesize(model, variables, inputs["images"], inputs["rotations"],
                           inputs["appearance"], inputs["backgrounds"], train=False)
    # Both views of the pair are real.
    valid = batch["valid"] & gather_in_groups(batch["valid"], target)
    terms = losses.reconstruction_losses(output, inputs["targets"], perceptual,
                                         config.loss.l1_weight, config.loss.perceptual_weight,
                                         valid)
    count = valid.sum()
    return {k: v * count for k, v in terms.items()} | {"count": count}

  return eval_step


def make_view_synthesizer(model, image_size: int):
  """Jitted (variables, images, backgrounds uint8 `(N, H, W, 3)`, rotations `(N, 3, 3)`)
  -> uint8 `(N, S, S, 3)`: each image re-drawn under its rotation, own appearance."""
  from geopose_jax.models import nvs as nvs_model  # pylint: disable=g-import-not-at-top

  @jax.jit
  def run(variables, images, backgrounds, rotations):
    output, _ = synthesize(model, variables, prepare_images(images, image_size), rotations,
                           None, prepare_images(backgrounds, image_size), train=False)
    return jnp.clip(jnp.round(nvs_model.denormalize_image(output) * 255.0), 0, 255
                    ).astype(jnp.uint8)

  return run


def frozen_prefixes(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return tuple(config.model.frozen_layers) if config.model.freeze_low_level else ()


def eval_batches(loader, config: ml_collections.ConfigDict):
  """The first `config.eval.max_examples` items (0: all) of a finite loader, in batches."""
  limit = int(config.eval.max_examples)
  seen = 0
  for batch in loader:
    if limit and seen >= limit:
      return
    seen += len(batch["valid"])
    yield batch


_EXAMPLES_CACHE: dict = {}


def load_examples(data_config: ml_collections.ConfigDict, num: int) -> dict[str, Any]:
  """`num` test frames spread over the split, with all their views (for pictures).

  Returns images, backgrounds `(N, V, H, W, 3)` uint8, R `(N, V, 3, 3)`, pose_3d_cam
  `(N, V, 17, 3)` mm, names [str]. Read once per process and data configuration.
  """
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  from geopose_jax.data import sources  # pylint: disable=g-import-not-at-top

  key = (sources.dataset_name(data_config), str(data_config.data_dir),
         tuple(data_config.get("test_subjects", ()) or ()), num)
  if key not in _EXAMPLES_CACHE:
    reader, index = multiview.open_multiview(data_config, "test")
    # Evenly spaced over the split ordered by (sequence, frame): different motions.
    picks = index.members[np.linspace(0, len(index) - 1, num).round().astype(int)]
    items = {"images": [], "backgrounds": [], "R": [], "pose_3d_cam": [], "names": []}
    for entry in picks:
      record = reader.parse(int(index.record[entry]))
      views = range(len(record["R"]))
      items["images"].append(np.stack([sources.decode_view(record["images"], v) for v in views]))
      items["backgrounds"].append(
          np.stack([sources.decode_view(record["backgrounds"], v) for v in views]))
      items["R"].append(np.asarray(record["R"], np.float32))
      items["pose_3d_cam"].append(np.asarray(record["pose_3d_cam"], np.float32))
      items["names"].append(f"{record['subject']} {record['sequence']} {int(record['frame'])}")
    _EXAMPLES_CACHE[key] = {k: (v if k == "names" else np.stack(v)) for k, v in items.items()}
  return _EXAMPLES_CACHE[key]


def draw(synthesizer, variables, config, out_dir: pathlib.Path, step: int,
         predict_poses: Callable[[np.ndarray], np.ndarray] | None = None
         ) -> dict[str, np.ndarray]:
  """Writes the grid (input | real other views | synthesised ones) and yaw sweeps.

  `synthesizer` from `make_view_synthesizer`, or None to draw only images and poses.
  `config.viz.num_examples=0` draws nothing.

  Returns {name: image} for TensorBoard.
  """
  from geopose_jax.viz import nvs_sweep  # pylint: disable=g-import-not-at-top

  if config.viz.num_examples <= 0:
    return {}
  examples = load_examples(config.data, config.viz.num_examples)
  synthesize_fn = None
  if synthesizer is not None:
    synthesize_fn = lambda images, backgrounds, rotations: np.asarray(  # noqa: E731
        synthesizer(variables, images, backgrounds, rotations))
  return nvs_sweep.draw_examples(examples, synthesize_fn, out_dir, step,
                                 num_sweeps=config.viz.sweeps,
                                 num_angles=config.viz.sweep_angles,
                                 predict_poses=predict_poses,
                                 interactive=config.viz.interactive)


def check_group_batches(batch_size: int, runtime: Runtime, key: str) -> None:
  """Each device must hold whole groups of 4 views (the composition stays on-device)."""
  num_devices = runtime.mesh.devices.size
  if batch_size % (4 * num_devices):
    raise ValueError(f"{key}={batch_size} must be a multiple of 4 x {num_devices} devices = "
                     f"{4 * num_devices}, so that every device holds whole groups of 4 views")


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top

  check_group_batches(config.train.batch_size, runtime, "config.train.batch_size")
  check_group_batches(config.eval.batch_size, runtime, "config.eval.batch_size")

  model = build_model(config)
  size = config.model.net.image_size
  perceptual = losses.perceptual_network(config.model.perceptual_weights, size,
                                         config.loss.perceptual_without_weights, config.seed)
  init_variables = make_init_variables(model, size)
  frozen = frozen_prefixes(config)
  # Fail on a bad frozen-layer name or weights file now, before any data is read.
  abstract = jax.eval_shape(init_variables, jax.random.key(0))
  make_optimizer(config.optim, abstract["params"], frozen)
  encoder_weights = None
  if config.model.encoder_weights:
    encoder_weights = load_encoder_weights(abstract, config.model.encoder_weights)

  def init(rng):
    variables = init_variables(rng)
    if encoder_weights is not None:
      variables = merge_weights(variables, encoder_weights)
    tx = make_optimizer(config.optim, variables["params"], frozen)
    return TrainState.create(variables["params"], tx, variables.get("batch_stats", {}))

  eval_step = jax.jit(make_eval_step(model, perceptual, config))
  synthesizer = make_view_synthesizer(model, size)

  def evaluate(state, split):
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    loader = multiview.nvs_pairs(
        config.data, split=split, global_batch_size=config.eval.batch_size,
        process_index=runtime.process_index, process_count=runtime.process_count,
        seed=config.seed, shuffle=False, num_epochs=1)
    sums: dict[str, float] = {}
    for batch in eval_batches(loader, config):
      for k, v in jax.device_get(eval_step(variables, runtime.shard_batch(batch))).items():
        sums[k] = sums.get(k, 0.0) + float(v)
    count = sums.pop("count", 0.0)
    if not count:
      raise ValueError(f"NVS evaluation on split {split!r} saw no valid pair of views")
    return {k: v / count for k, v in sums.items()} | {"num_frames": int(count)}

  def visualize(state, out_dir: pathlib.Path, step: int):
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return draw(synthesizer, variables, config, out_dir, step)

  train_data = multiview.nvs_pairs(
      config.data, split="train", global_batch_size=config.train.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count,
      seed=config.seed, shuffle=True, num_epochs=None)
  return Task(init=init, train_step=make_train_step(model, perceptual, config),
              train_data=train_data, evaluate=evaluate, eval_splits=("test",),
              visualize=visualize)


def merge_weights(variables: PyTree, loaded: PyTree) -> PyTree:
  """`variables` with every leaf that `loaded` has (nested dicts) replaced by it."""
  if not isinstance(loaded, dict):
    if tuple(np.shape(loaded)) != tuple(variables.shape):
      raise ValueError(f"loaded weights of shape {np.shape(loaded)} do not fit {variables.shape}")
    return jnp.asarray(loaded, dtype=variables.dtype)
  out = dict(variables)
  for k, v in loaded.items():
    if k not in out:
      raise ValueError(f"loaded weights have {k!r}, which the model lacks")
    out[k] = merge_weights(out[k], v)
  return out

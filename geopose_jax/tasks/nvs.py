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
frozen (`optim.frozen`), as in the original.

`--config.init_from` accepts an nvs run's workdir (all parameters and BatchNorm statistics)
or Rhodin et al.'s `network_best_val_t1.pth` (its encoder and decoder; an .npz of the same
state dict too).
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from geopose_jax import losses
from geopose_jax.errors import ConfigError
from geopose_jax.models import nvs_synthesis as synthesis
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import optim
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task
from geopose_jax.viz import nvs_pictures

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


def relative_rotations(rotations: jax.Array, target: jax.Array) -> jax.Array:
  """`(B, 3, 3)` world->camera rotations, `(B,)` targets -> `(B, 3, 3)` R_target R_i^T."""
  return synthesis.gather_in_groups(rotations, target) @ jnp.swapaxes(rotations, -1, -2)


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
  images = synthesis.prepare_images(batch["image"], image_size)
  backgrounds = synthesis.prepare_images(batch["background"], image_size)
  return {"images": images, "rotations": relative_rotations(batch["R"], target),
          "appearance": appearance, "backgrounds": synthesis.gather_in_groups(backgrounds, target),
          "targets": synthesis.gather_in_groups(images, target)}


# --- steps ----------------------------------------------------------------------------------

def train_step(state: TrainState, batch, rng: jax.Array, *, model, perceptual,
               image_size: int, l1_weight: float, perceptual_weight: float):
  """One step with the original's random batch composition.

  Args:
    state: params and batch_stats of the NVS network, its optimizer.
    batch: image, background `(B, H, W, 3)` uint8, R `(B, 3, 3)`; B a multiple of 4.
    rng: the step's key (composition and dropout).
    model, perceptual: the network and the perceptual feature function (or None).

  Returns:
    (state, {'loss', 'l1', 'perceptual'}).
  """
  permute_key, dropout_key = jax.random.split(rng)
  target, appearance = pair_permutations(permute_key, batch["image"].shape[0])
  inputs = compose_batch(batch, target, appearance, image_size)

  def loss_fn(params):
    output, updates = synthesis.synthesize(
        model, {"params": params, "batch_stats": state.batch_stats}, inputs["images"],
        inputs["rotations"], inputs["appearance"], inputs["backgrounds"], train=True,
        rng=dropout_key)
    terms = losses.reconstruction_losses(output, inputs["targets"], perceptual, l1_weight,
                                         perceptual_weight)
    return terms["loss"], (terms, updates)

  grads, (terms, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads, batch_stats=updates["batch_stats"])
  return state, terms


def eval_step(variables: PyTree, batch, *, model, perceptual, image_size: int,
              l1_weight: float, perceptual_weight: float) -> dict[str, jax.Array]:
  """Sums over the valid pairs of {l1, perceptual, loss}, and their `count`: each view of a
  pair drawn in the other camera with its own appearance (the original's test setting)."""
  target, _ = eval_permutations(batch["image"].shape[0])
  inputs = compose_batch(batch, jnp.asarray(target), None, image_size)
  output, _ = synthesis.synthesize(model, variables, inputs["images"], inputs["rotations"],
                                   inputs["appearance"], inputs["backgrounds"], train=False)
  # Both views of the pair are real.
  valid = batch["valid"] & synthesis.gather_in_groups(batch["valid"], target)
  terms = losses.reconstruction_losses(output, inputs["targets"], perceptual, l1_weight,
                                       perceptual_weight, valid)
  count = valid.sum()
  return {k: v * count for k, v in terms.items()} | {"count": count}


def eval_batches(loader, max_examples: int):
  """The first `max_examples` items (0: all) of a finite loader, in batches."""
  seen = 0
  for batch in loader:
    if max_examples and seen >= max_examples:
      return
    seen += len(batch["valid"])
    yield batch


def check_group_batches(batch_size: int, runtime: Runtime, key: str) -> None:
  """Each device must hold whole groups of 4 views (the composition stays on-device)."""
  num_devices = runtime.mesh.devices.size
  if batch_size % (4 * num_devices):
    raise ConfigError(f"{key}={batch_size} must be a multiple of 4 x {num_devices} devices = "
                      f"{4 * num_devices}, so that every device holds whole groups of 4 views")


# --- starting points -------------------------------------------------------------------------

def resolve_source(config: ml_collections.ConfigDict) -> init_from_lib.Source | None:
  """Checks `config.init_from` (an nvs run or Rhodin's file); None when empty."""
  return init_from_lib.resolve(config.init_from, task="nvs", runs=("nvs",),
                               files=(synthesis.RHODIN_FILE,),
                               file_suffixes=synthesis.RHODIN_SUFFIXES)


def resolve_config(config: ml_collections.ConfigDict) -> None:
  """Starting from an nvs run, train its network (model.net)."""
  init_from_lib.adopt_config(config, resolve_source(config), ("model.net",))


def start_from(state: TrainState, *, source: init_from_lib.Source | None, model,
               image_size: int, encoder_weights: str) -> TrainState:
  """The fresh state with the ImageNet encoder layers (`model.encoder_weights`), then the
  network of `config.init_from` (an nvs run, or Rhodin's file)."""
  if encoder_weights:
    state = synthesis.put_imagenet_encoder(state, encoder_weights, model=model,
                                           image_size=image_size)
  if source is None:
    return state
  if source.kind == "run":
    loaded, _ = init_from_lib.load_run(source)
  else:
    loaded = synthesis.load_rhodin(source.path, model)["nvs"]
  return init_from_lib.merge(state, loaded, source=str(source.path),
                             only=("params/.*", "batch_stats/.*"))


def init(rng: jax.Array, *, model, image_size: int, optim_config) -> TrainState:
  variables = synthesis.init_variables(model, image_size, rng)
  tx = optim.make_optimizer(optim_config, variables["params"])
  return TrainState.create(variables["params"], tx, variables.get("batch_stats", {}))


# --- the task --------------------------------------------------------------------------------

def evaluate(state: TrainState, split: str, *, config, runtime: Runtime, step_fn) -> dict:
  """Mean reconstruction losses over the split's valid pairs (`config.eval.max_examples`)."""
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  loader = multiview.nvs_pairs(
      config.data, split=split, global_batch_size=config.eval.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count,
      seed=config.seed, shuffle=False, num_epochs=1,
      every_nth_frame=config.data.every_nth_frame)
  sums: dict[str, float] = {}
  for batch in eval_batches(loader, int(config.eval.max_examples)):
    for k, v in jax.device_get(step_fn(variables, runtime.shard_batch(batch))).items():
      sums[k] = sums.get(k, 0.0) + float(v)
  count = sums.pop("count", 0.0)
  if not count:
    raise ValueError(f"NVS evaluation on split {split!r} saw no valid pair of views")
  return {k: v / count for k, v in sums.items()} | {"num_frames": int(count)}


def train_data(config: ml_collections.ConfigDict, runtime: Runtime):
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  return multiview.nvs_pairs(
      config.data, split="train", global_batch_size=config.train.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count,
      seed=config.seed, shuffle=True, num_epochs=None,
      every_nth_frame=config.data.every_nth_frame)


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  source = resolve_source(config)
  check_group_batches(config.train.batch_size, runtime, "config.train.batch_size")
  check_group_batches(config.eval.batch_size, runtime, "config.eval.batch_size")

  model = synthesis.build_model(config.model.net)
  size = int(config.model.net.image_size)
  perceptual = losses.perceptual_network(config.model.perceptual_weights, size,
                                         config.loss.perceptual_without_weights, config.seed,
                                         config.loss.perceptual_maxpool)
  # Fail on a bad frozen-parameter pattern now, before any data is read.
  optim.make_optimizer(config.optim, synthesis.abstract_variables(model, size)["params"])
  step_args = dict(model=model, perceptual=perceptual, image_size=size,
                   l1_weight=float(config.loss.l1_weight),
                   perceptual_weight=float(config.loss.perceptual_weight))
  step_fn = jax.jit(functools.partial(eval_step, **step_args))
  synthesizer = synthesis.view_synthesizer(model, size)

  def visualize(state, out_dir: pathlib.Path, step: int):
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return nvs_pictures.draw(synthesizer, variables, config, out_dir, step)

  starts = source is not None or bool(config.model.encoder_weights)
  return Task(
      init=functools.partial(init, model=model, image_size=size, optim_config=config.optim),
      train_step=functools.partial(train_step, **step_args),
      train_data=functools.partial(train_data, config, runtime),
      evaluate=functools.partial(evaluate, config=config, runtime=runtime, step_fn=step_fn),
      eval_splits=("test",), visualize=visualize,
      init_from=functools.partial(start_from, source=source, model=model, image_size=size,
                                  encoder_weights=config.model.encoder_weights)
      if starts else None)

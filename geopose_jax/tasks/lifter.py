"""Self-supervised 2D -> 3D lifting with geometric consistency (Chen et al., CVPR 2019).

One training step, for a batch of normalised 2D poses x (and the next frame's x_next):

    Y  = L(x)                        lift (perspective unprojection of predicted depths)
    Y' = R (Y - T) + T               random virtual camera: azimuth about the vertical axis,
                                     then elevation; T is the pivot (the lifted root)
    x~ = proj(Y')                    must look like a real 2D pose  -> pose discriminator
    Y~ = L(x~)                       lift the synthetic view again
    x^ = proj(R^T (Y~ - T~) + T~)    back into the original camera   -> 2D consistency ||x^ - x||^2
                                                                    -> 3D consistency ||Y~ - Y'||^2
    (x~_t - x~_{t+1})                must move like real poses        -> temporal discriminator

No 3D label is read: the training pipeline (`train_data`) yields 2D poses and integer
metadata only, and `train_step` refuses a batch with any other key.

The rotation turns the body about the vertical axis (the camera's y axis, pointing down in
Human3.6M camera coordinates, tilted by `rotation.camera_pitch` for cameras that look down),
followed by an elevation about x. The unofficial public PyTorch code rotates about the
camera's z axis instead, an in-plane rotation of the image that reveals nothing about depth;
this module fixes that.

Where this differs from the paper's description, and why:
- The discriminators see synthetic views normalised like the real poses
  (`loss.normalize_fake_2d`) and both are scaled by c: otherwise the 2D scale of a view
  betrays it, and the lifter distorts depth to fix the scale.
- The rotation pivot is the lifted root (`rotation.pivot='root'`; 'fixed' = (0, 0, c) as in
  the paper), so synthetic views stay root-centred like the real ones.
- The consistency losses are measured in body units (the 2D error times c), so that the
  weights do not depend on c.
- The lifter's depth head starts near zero (the untrained lifter is the constant-depth
  lift), and projections clamp depths below 1: with the usual initialisation the first
  train-mode offsets swing joints behind the camera and the cycle diverges.

`config.supervised` trains the same lifter from 3D labels instead (the comparison
reference); its pipeline then carries `pose_3d_cam`. The 2D domain adapter in front of a
trained lifter is its own task (tasks/lifter_adapter.py, `configs/lifter.py:adapter`).

Evaluation and prediction (the lifter applied in mm with one body size) live in
geopose_jax/lifter_inference.py, shared with the domain adapter.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from geopose_jax import adversarial
from geopose_jax import lifter_inference
from geopose_jax.lifting import check_batch_keys, consistency_losses
from geopose_jax.lifting import cycle, normalize_pose_3d
from geopose_jax import protocol_eval
from geopose_jax import skeleton
from geopose_jax.data import poses as poses_data
from geopose_jax.geometry import virtual_camera
from geopose_jax.geometry.virtual_camera import rotate_about, rotation_pivot
from geopose_jax.models import discriminators
from geopose_jax.models import lifter as lifter_lib
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import optim
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task
from geopose_jax.viz import lifter as lifter_viz

PyTree = Any

# What a training batch may carry (with lifting.METADATA_KEYS); anything else stops the step.
UNSUPERVISED_KEYS = frozenset({"pose_2d", "pose_2d_next"})
SUPERVISED_KEYS = frozenset({"pose_2d", "pose_3d_cam"})


# --------------------------------------------------------------------------- models and state
def make_models(config: ml_collections.ConfigDict):
  """The lifter and the two discriminators of the config."""
  d = config.disc
  lifter = lifter_inference.make_lifter(config.model)
  pose_disc = discriminators.PoseDiscriminator(d.features, d.num_blocks, d.dropout)
  temporal_disc = discriminators.TemporalDiscriminator(d.features, d.num_blocks, d.dropout)
  return lifter, pose_disc, temporal_disc


def init_state(config: ml_collections.ConfigDict, rng: jax.Array) -> dict[str, TrainState]:
  """{'lifter': ..., and unless supervised 'pose_disc', 'temporal_disc'} train states.

  The lifter trains with `config.optim`, the discriminators with `config.disc_optim`.
  """
  lifter, pose_disc, temporal_disc = make_models(config)
  dummy = jnp.zeros((2, lifter.num_joints, 2), jnp.float32)
  k_l, k_d, k_t = jax.random.split(rng, 3)
  variables = lifter.init(k_l, dummy, train=False)
  params = variables["params"]
  state = {"lifter": TrainState.create(params, optim.make_optimizer(config.optim, params),
                                       variables["batch_stats"])}
  if not config.supervised:
    for name, disc, args, key in (("pose_disc", pose_disc, (dummy,), k_d),
                                  ("temporal_disc", temporal_disc, (dummy, dummy), k_t)):
      params = disc.init(key, *args)["params"]
      state[name] = TrainState.create(
          params, optim.make_optimizer(config.disc_optim, params, key="disc_optim"))
  return state


# --------------------------------------------------------------------------- train steps
def make_train_step(config: ml_collections.ConfigDict):
  """(state, batch, rng) -> (state, metrics) for the config's objective."""
  if config.supervised:
    return functools.partial(supervised_train_step, lifter=make_models(config)[0],
                             depth_offset=config.model.depth_offset)
  return functools.partial(self_supervised_train_step, models=make_models(config),
                           depth_offset=config.model.depth_offset, loss=config.loss,
                           rotation=config.rotation, gan_update=config.train.gan_update)


def _lift_fn(lifter, params, batch_stats, rngs_key):
  """A train-mode lift closure; the running BatchNorm statistics follow the first call only.

  The first call lifts real poses, later ones synthetic views; evaluation lifts real poses,
  so only their statistics go into the running averages.
  """
  stats = {"value": None}
  counter = {"n": 0}

  def lift(x):
    counter["n"] += 1
    y, updates = lifter.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                              rngs={"dropout": jax.random.fold_in(rngs_key, counter["n"])},
                              mutable=["batch_stats"])
    if stats["value"] is None:
      stats["value"] = updates["batch_stats"]
    return y

  return lift, stats


def self_supervised_train_step(state, batch, rng, *, models, depth_offset: float,
                               loss: ml_collections.ConfigDict,
                               rotation: ml_collections.ConfigDict, gan_update: str):
  """One generator + discriminator update of the geometric self-supervision objective.

  Args:
    state: {'lifter', 'pose_disc', 'temporal_disc'} train states.
    batch: {'pose_2d', 'pose_2d_next'} (B, 17, 2) and integer metadata only.
    rng: PRNG key.
    models: (lifter, pose discriminator, temporal discriminator) modules.
    depth_offset: c.
    loss: `config.loss` (gan kind, weights, normalize_fake_2d).
    rotation: `config.rotation` (ranges, vertical axis, camera pitch, pivot).
    gan_update: 'joint' (both players every step) or 'alternate' (discriminators on even
      steps, the lifter on odd ones).

  Both players are updated from the same lifted poses: the lifter against the current
  discriminators, the discriminators against the current fakes (gradient-stopped).
  """
  check_batch_keys(batch, UNSUPERVISED_KEYS, "self-supervised")
  lifter, pose_disc, temporal_disc = models
  c = depth_offset
  kind = loss.gan
  x = lifter_lib.normalize_pose_2d(batch["pose_2d"], c)
  x_next = lifter_lib.normalize_pose_2d(batch["pose_2d_next"], c)
  n = x.shape[0]
  k_rot, k_lift, k_d, k_t, k_gp, k_gpt = jax.random.split(rng, 6)
  rot = rotation
  rotation_matrix = virtual_camera.virtual_camera_rotation(
      k_rot, n, rot.azimuth_range, rot.elevation_range, rot.vertical_axis, rot.camera_pitch)

  def losses(params):
    lift, stats = _lift_fn(lifter, params["lifter"], state["lifter"].batch_stats, k_lift)
    both = lift(jnp.concatenate([x, x_next], axis=0))       # one pass for t and t+1
    out = cycle(lift, x, rotation_matrix, pivot=rot.pivot, depth_offset=c, lifted=both[:n])
    lifted_next = both[n:]
    proj_next = lifter_lib.project(rotate_about(
        lifted_next, rotation_matrix, rotation_pivot(lifted_next, rot.pivot, c)), 1.0)
    fake, fake_next = out["projected"], proj_next
    if loss.normalize_fake_2d:
      # Real poses are normalised per frame (mean root distance 1/c); without this, the
      # 2D scale of a synthetic view (small when the body is seen edge-on) gives it away,
      # and the lifter is pushed to distort depth to fix the scale.
      fake = lifter_lib.normalize_pose_2d(fake, c)
      fake_next = lifter_lib.normalize_pose_2d(fake_next, c)

    # The discriminators see poses times c (unit mean root distance): inputs of size 1/c
    # would leave their first layer, which has no BatchNorm, learning c times slower.
    real, real_next = c * x, c * x_next
    fake, fake_next = c * fake, c * fake_next

    def d_score(p, poses, key):
      return pose_disc.apply({"params": p}, poses, train=True, rngs={"dropout": key})

    def t_score(p, poses, poses_next, key):
      return temporal_disc.apply({"params": p}, poses, poses_next, train=True,
                                 rngs={"dropout": key})

    # Generator: scores of the fakes under frozen discriminators.
    d_frozen = jax.lax.stop_gradient(params["pose_disc"])
    t_frozen = jax.lax.stop_gradient(params["temporal_disc"])
    g_adv = adversarial.generator_loss(d_score(d_frozen, fake, k_d), kind)
    g_temporal = adversarial.generator_loss(t_score(t_frozen, fake, fake_next, k_t), kind)
    cons = consistency_losses(out, x, c)
    g_loss = (loss.adv * g_adv + loss.cycle_2d * cons["cycle_2d"]
              + loss.cycle_3d * cons["cycle_3d"] + loss.temporal * g_temporal)

    # Discriminators: real poses against the gradient-stopped fakes.
    fake_sg, fake_next_sg = jax.lax.stop_gradient(fake), jax.lax.stop_gradient(fake_next)
    pd, td = params["pose_disc"], params["temporal_disc"]
    d_real = d_score(pd, real, k_d)
    d_fake = d_score(pd, fake_sg, k_d)
    d_loss = adversarial.discriminator_loss(d_real, d_fake, kind)
    t_loss = adversarial.discriminator_loss(t_score(td, real, real_next, k_t),
                                            t_score(td, fake_sg, fake_next_sg, k_t), kind)
    metrics = dict(cycle_2d=cons["cycle_2d"], cycle_3d=cons["cycle_3d"], g_adv=g_adv,
                   g_temporal=g_temporal, d_loss=d_loss, t_loss=t_loss,
                   d_real=jnp.mean(d_real), d_fake=jnp.mean(d_fake),
                   mean_depth=jnp.mean(out["lifted"][..., 2]))
    if kind == "wgan_gp":
      gp_d = adversarial.gradient_penalty(lambda m: d_score(pd, m, k_d), real, fake_sg, k_gp)
      gp_t = adversarial.gradient_penalty(lambda m: t_score(td, m, jnp.zeros_like(m), k_t),
                                          real - real_next, fake_sg - fake_next_sg, k_gpt)
      d_loss = d_loss + loss.gp * gp_d
      t_loss = t_loss + loss.gp * gp_t
      metrics.update(gp=gp_d, gp_temporal=gp_t)
    metrics["g_loss"] = g_loss
    # Each player's gradient flows only into its own parameters (the stop_gradients above),
    # so one sum differentiates all three objectives at once.
    return g_loss + d_loss + t_loss, (metrics, stats["value"])

  params = {k: s.params for k, s in state.items()}
  grads, (metrics, new_stats) = jax.grad(losses, has_aux=True)(params)
  new_lifter = state["lifter"].apply_gradients(grads["lifter"], batch_stats=new_stats)
  new_d = state["pose_disc"].apply_gradients(grads["pose_disc"])
  new_t = state["temporal_disc"].apply_gradients(grads["temporal_disc"])
  if gan_update == "joint":
    new_state = {"lifter": new_lifter, "pose_disc": new_d, "temporal_disc": new_t}
  elif gan_update == "alternate":
    disc_turn = state["lifter"].step % 2 == 0   # the lifter's step counts every call
    new_lifter = new_lifter.replace(step=state["lifter"].step + 1)
    keep_lifter = state["lifter"].replace(step=state["lifter"].step + 1)
    new_state = jax.lax.cond(
        disc_turn,
        lambda: {"lifter": keep_lifter, "pose_disc": new_d, "temporal_disc": new_t},
        lambda: {"lifter": new_lifter, "pose_disc": state["pose_disc"],
                 "temporal_disc": state["temporal_disc"]})
  else:
    raise ValueError(f"train.gan_update must be 'joint' or 'alternate', got {gan_update!r}")
  metrics["loss"] = metrics["g_loss"]
  return new_state, metrics


def supervised_train_step(state, batch, rng, *, lifter, depth_offset: float):
  """The same lifter trained from 3D labels: MSE between scale-normalised root-relative poses.

  The lifter's output and the label are both brought to the root and to unit mean
  joint-to-root distance, since the lifter's units are arbitrary (scale is unobservable).
  """
  check_batch_keys(batch, SUPERVISED_KEYS, "supervised")
  x = lifter_lib.normalize_pose_2d(batch["pose_2d"], depth_offset)
  target = normalize_pose_3d(batch["pose_3d_cam"].astype(jnp.float32))
  ls = state["lifter"]

  def loss_fn(params):
    pred, updates = lifter.apply({"params": params, "batch_stats": ls.batch_stats}, x,
                                 train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
    loss = jnp.mean(jnp.square(normalize_pose_3d(pred) - target))
    return loss, updates["batch_stats"]

  (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(ls.params)
  return {"lifter": ls.apply_gradients(grads, batch_stats=new_stats)}, {"loss": loss}


# --------------------------------------------------------------------------- the task
def check_config(config: ml_collections.ConfigDict) -> None:
  if config.loss.gan not in adversarial.GAN_KINDS:
    raise ValueError(f"config.loss.gan={config.loss.gan!r}; expected one of "
                     f"{adversarial.GAN_KINDS}")
  if config.train.gan_update not in ("joint", "alternate"):
    raise ValueError(f"config.train.gan_update={config.train.gan_update!r}; expected 'joint' "
                     "or 'alternate'")
  if config.rotation.pivot not in ("root", "fixed"):
    raise ValueError(f"config.rotation.pivot={config.rotation.pivot!r}; expected 'root' or "
                     "'fixed'")
  for name in ("azimuth_range", "elevation_range"):
    low, high = config.rotation[name]
    if not low <= high:
      raise ValueError(f"config.rotation.{name}={(low, high)} must be (low, high), low <= high")
  if config.model.depth_offset <= 0:
    raise ValueError(f"config.model.depth_offset={config.model.depth_offset} must be > 0")
  if not config.eval.body_scale_mm > 0:
    raise ValueError(f"config.eval.body_scale_mm={config.eval.body_scale_mm} must be > 0")


def train_loader(config: ml_collections.ConfigDict, runtime: Runtime):
  """2D frame pairs (self-supervised: the pipeline carries no 3D), or labelled frames."""
  kwargs = dict(split="train", global_batch_size=config.train.batch_size,
                process_index=runtime.process_index, process_count=runtime.process_count,
                seed=config.seed, shuffle=True, num_epochs=None)
  if config.supervised:
    return poses_data.labelled_frames(config.data, **kwargs)
  return poses_data.lifter_frames(config.data, frame_step=config.data.frame_step, **kwargs)


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  """The lifter task for the training loop (see train/task.py)."""
  source = init_from_lib.resolve(config.init_from, task="lifter", runs=("lifter",))
  check_config(config)
  runtime.local_batch_size(config.train.batch_size)
  num_joints = lifter_inference.make_lifter(config.model).num_joints
  protocol_eval.check_model_joints(config.eval, config.data.name, num_joints)
  own_split = protocol_eval.default_split(config.data.name)
  targets = protocol_eval.eval_targets(config, (own_split,))
  predict_jit = jax.jit(functools.partial(lifter_inference.predict, config))

  def evaluate(state, split):
    if targets[split] is not None:
      return lifter_inference.evaluate_on_protocol(config, runtime, predict_jit, state, targets[split])
    return lifter_inference.evaluate_lifter(config, runtime, predict_jit, state, split)

  def visualize(state, out_dir, step):
    del step
    table = poses_data.load_poses(config.data, own_split)
    count = max(1, int(config.viz.num_examples))
    frames = np.linspace(0, table.num_frames - 1, count).round().astype(np.int64)
    pose_2d = table.pose_2d[frames]
    lifted = np.asarray(predict_jit(state["lifter"], pose_2d))
    truth = table.pose_3d_cam[frames] * 1000.0
    if num_joints == skeleton.HUMANEVA_NUM_JOINTS:
      # Drawn as H36M-17 skeletons (Spine and Neck/Nose at midpoints).
      pose_2d, lifted, truth = (skeleton.humaneva_to_h36m(x) for x in (pose_2d, lifted, truth))
    return lifter_viz.write_pictures(out_dir, pose_2d, lifted, truth,
                                     gif_frames=int(config.viz.gif_frames))

  def start_from(state):
    # A lifter run: every player's weights (a discriminator only if both runs have one).
    loaded, _ = init_from_lib.load_run(source)
    for name in state:
      if name in loaded:
        state = dict(state)
        state[name] = init_from_lib.merge(state[name], loaded[name], source=str(source.path),
                                          only=("params/.*", "batch_stats/.*"))
    return state

  return Task(init=functools.partial(init_state, config), train_step=make_train_step(config),
              train_data=lambda: train_loader(config, runtime), evaluate=evaluate,
              eval_splits=tuple(targets),
              visualize=None if config.eval.dataset else visualize,   # own data only
              init_from=start_from if source is not None else None,
              predict=functools.partial(lifter_inference.predict_keypoints, config, runtime, predict_jit),
              predict_metadata=lifter_inference.predict_metadata(config))

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
reference); its pipeline then carries `pose_3d_cam`. `config.adapter.enabled` trains the
2D domain adapter in front of a frozen trained lifter (`config.init_from`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from geopose_jax import metrics
from geopose_jax.data import poses as poses_data
from geopose_jax.geometry import rotations
from geopose_jax.models import discriminators
from geopose_jax.models import lifter as lifter_lib
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task
from geopose_jax.viz import lifter as lifter_viz

PyTree = Any
LiftFn = Callable[[jax.Array], jax.Array]

# What a training batch may carry. Anything else (a 3D key above all) stops the step.
METADATA_KEYS = frozenset({"subject", "action", "camera", "sequence", "valid"})
UNSUPERVISED_KEYS = frozenset({"pose_2d", "pose_2d_next"})
SUPERVISED_KEYS = frozenset({"pose_2d", "pose_3d_cam"})


# --------------------------------------------------------------------------- geometry of the cycle
def rotate_about(points: jax.Array, rotation: jax.Array, pivot: jax.Array) -> jax.Array:
  """R (X - T) + T for row-vector points.

  Args:
    points: (B, J, 3).
    rotation: (B, 3, 3).
    pivot: (B, 1, 3) or (B, J, 3) broadcastable.

  Returns:
    (B, J, 3).
  """
  return jnp.einsum("bij,bkj->bki", rotation, points - pivot) + pivot


def virtual_camera_rotation(key: jax.Array, num: int, azimuth_range=(-np.pi, np.pi),
                            elevation_range=(-np.pi / 9, np.pi / 9), vertical_axis: str = "y",
                            camera_pitch: float = 0.0) -> jax.Array:
  """(num, 3, 3) random rotations: azimuth about the vertical, then elevation about x.

  With `camera_pitch` = 0 this is `rotations.random_azimuth_elevation`: the vertical is the
  camera's y axis. A camera looking down by `camera_pitch` radians (Human3.6M's look down by
  11-16 degrees) sees the world's vertical tilted by that much about x; turning the body
  about the camera's own y axis would then show it from below after half a turn, a view
  no real camera has. The azimuth is applied about the tilted vertical instead:
  R = R_x(elevation) R_x(pitch) R_vertical(azimuth) R_x(pitch)^T.
  """
  if camera_pitch == 0.0:
    return rotations.random_azimuth_elevation(
        key, (num,), tuple(azimuth_range), tuple(elevation_range), vertical_axis)
  if vertical_axis != "y":
    raise ValueError("camera_pitch needs vertical_axis='y' (a tilt of the camera's y axis)")
  tilt = rotations.rotation_about_axis(jnp.asarray(camera_pitch, jnp.float32), "x")
  key_az, key_el = jax.random.split(key)
  azimuth = jax.random.uniform(key_az, (num,), jnp.float32, *azimuth_range)
  elevation = jax.random.uniform(key_el, (num,), jnp.float32, *elevation_range)
  return (rotations.rotation_about_axis(elevation, "x") @ tilt
          @ rotations.rotation_about_axis(azimuth, "y") @ tilt.T)


def rotation_pivot(points: jax.Array, kind: str, depth_offset: float) -> jax.Array:
  """(B, J, 3) lifted pose -> (B, 1, 3) centre of the virtual-camera rotation.

  'root': the lifted root joint, so the reprojected pose stays root-centred like the real
  normalised poses the discriminator sees. 'fixed': (0, 0, c), as written in the paper.
  """
  if kind == "root":
    return points[:, lifter_lib.ROOT:lifter_lib.ROOT + 1, :]
  if kind == "fixed":
    return jnp.broadcast_to(jnp.asarray([0.0, 0.0, depth_offset], points.dtype),
                            points[:, :1, :].shape)
  raise ValueError(f"rotation pivot must be 'root' or 'fixed', got {kind!r}")


def cycle(lift: LiftFn, pose_2d: jax.Array, rotation: jax.Array, *, pivot: str = "root",
          depth_offset: float = 10.0, lifted: jax.Array | None = None,
          min_depth: float = 1.0) -> dict[str, jax.Array]:
  """Lift -> rotate -> project -> lift -> rotate back -> project.

  Args:
    lift: (B, J, 2) normalised 2D -> (B, J, 3) lifted pose.
    pose_2d: (B, J, 2) normalised 2D input x.
    rotation: (B, 3, 3) virtual camera rotation R.
    pivot: see `rotation_pivot`.
    depth_offset: c.
    lifted: L(x) when already computed (B, J, 3); lifted here otherwise.
    min_depth: projections clamp depths below this (the lifter's own depths are >= 1; a
      rotation may swing a joint closer, or behind the camera, while training is young).

  Returns:
    dict with `lifted` Y, `rotated` Y', `projected` x~ (B, J, 2), `relifted` Y~,
    `reprojected` x^ (B, J, 2).
  """
  lifted = lift(pose_2d) if lifted is None else lifted
  pivot_1 = rotation_pivot(lifted, pivot, depth_offset)
  rotated = rotate_about(lifted, rotation, pivot_1)
  projected = lifter_lib.project(rotated, min_depth)
  relifted = lift(projected)
  pivot_2 = rotation_pivot(relifted, pivot, depth_offset)
  back = rotate_about(relifted, jnp.swapaxes(rotation, -1, -2), pivot_2)
  return dict(lifted=lifted, rotated=rotated, projected=projected, relifted=relifted,
              reprojected=lifter_lib.project(back, min_depth))


def consistency_losses(out: dict[str, jax.Array], pose_2d: jax.Array,
                       depth_offset: float = 10.0) -> dict[str, jax.Array]:
  """Mean squared 2D (||x^ - x||^2) and 3D (||Y~ - Y'||^2) cycle errors, per coordinate.

  Both are measured in body units: the 2D error times c (normalised poses have mean root
  distance 1/c), the 3D error as is (a lifted body has a radius of about 1), so that the
  weights of the two terms do not depend on c.
  """
  return dict(
      cycle_2d=jnp.mean(jnp.square(depth_offset * (out["reprojected"] - pose_2d))),
      cycle_3d=jnp.mean(jnp.square(out["relifted"] - out["rotated"])))


# --------------------------------------------------------------------------- adversarial losses
def discriminator_loss(real: jax.Array, fake: jax.Array, kind: str) -> jax.Array:
  """(N,) real and fake scores -> the discriminator's loss ('standard' BCE or 'wgan_gp')."""
  if kind == "standard":
    return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
  if kind == "wgan_gp":
    return jnp.mean(fake) - jnp.mean(real)
  raise ValueError(f"gan kind must be 'standard' or 'wgan_gp', got {kind!r}")


def generator_loss(fake: jax.Array, kind: str) -> jax.Array:
  """(N,) fake scores -> the generator's loss (non-saturating BCE, or -E[D(fake)])."""
  if kind == "standard":
    return jnp.mean(jax.nn.softplus(-fake))
  if kind == "wgan_gp":
    return -jnp.mean(fake)
  raise ValueError(f"gan kind must be 'standard' or 'wgan_gp', got {kind!r}")


def gradient_penalty(score: Callable[[jax.Array], jax.Array], real: jax.Array,
                     fake: jax.Array, key: jax.Array) -> jax.Array:
  """WGAN-GP: E[(||grad_x D(x_hat)|| - 1)^2] at x_hat uniformly between real and fake.

  Args:
    score: (N, ...) -> (N,) per-sample scores.
    real, fake: (N, ...) samples.
    key: PRNG key for the interpolation weights.
  """
  alpha = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  mixed = alpha * real + (1.0 - alpha) * fake
  grads = jax.grad(lambda m: jnp.sum(score(m)))(mixed)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


# --------------------------------------------------------------------------- models and state
def make_models(config: ml_collections.ConfigDict):
  """The lifter and the two discriminators of the config."""
  m, d = config.model, config.disc
  lifter = lifter_lib.Lifter(m.features, m.num_blocks, m.dropout, m.depth_offset)
  pose_disc = discriminators.PoseDiscriminator(d.features, d.num_blocks, d.dropout)
  temporal_disc = discriminators.TemporalDiscriminator(d.features, d.num_blocks, d.dropout)
  return lifter, pose_disc, temporal_disc


def adam(learning_rate: float, config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.adam(learning_rate, b1=config.optim.b1, b2=config.optim.b2)


def init_state(config: ml_collections.ConfigDict, rng: jax.Array) -> dict[str, TrainState]:
  """{'lifter': ..., and unless supervised 'pose_disc', 'temporal_disc'} train states."""
  lifter, pose_disc, temporal_disc = make_models(config)
  dummy = jnp.zeros((2, lifter_lib.NUM_JOINTS, 2), jnp.float32)
  k_l, k_d, k_t = jax.random.split(rng, 3)
  variables = lifter.init(k_l, dummy, train=False)
  state = {"lifter": TrainState.create(variables["params"], adam(config.optim.lifter_lr, config),
                                       variables["batch_stats"])}
  if not config.supervised:
    tx_d = adam(config.optim.disc_lr, config)
    state["pose_disc"] = TrainState.create(pose_disc.init(k_d, dummy)["params"], tx_d)
    state["temporal_disc"] = TrainState.create(
        temporal_disc.init(k_t, dummy, dummy)["params"], tx_d)
  return state


def check_batch_keys(batch: dict, needed: frozenset, what: str) -> None:
  """Training batches carry the keys the objective reads, integer metadata, and nothing else.

  This is what keeps 3D labels out of self-supervised training: a batch with any other key
  (`pose_3d_cam`, `pose_3d`, ...) is refused.
  """
  keys = set(batch)
  if not needed <= keys or keys - needed - METADATA_KEYS:
    raise ValueError(f"{what} training batch must carry {sorted(needed)} (and optionally "
                     f"{sorted(METADATA_KEYS)}), got {sorted(keys)}; the self-supervised "
                     "lifter may not see 3D labels")


# --------------------------------------------------------------------------- train steps
def make_train_step(config: ml_collections.ConfigDict):
  """(state, batch, rng) -> (state, metrics) for the config's objective."""
  if config.supervised:
    return functools.partial(supervised_train_step, config)
  return functools.partial(self_supervised_train_step, config)


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


def self_supervised_train_step(config, state, batch, rng):
  """One generator + discriminator update of the geometric self-supervision objective.

  Both players are updated from the same lifted poses: the lifter against the current
  discriminators, the discriminators against the current fakes (gradient-stopped).
  `config.train.gan_update == 'alternate'` applies the discriminator update on even steps and
  the lifter update on odd steps instead of both every step.
  """
  check_batch_keys(batch, UNSUPERVISED_KEYS, "self-supervised")
  lifter, pose_disc, temporal_disc = make_models(config)
  c = config.model.depth_offset
  kind = config.loss.gan
  x = lifter_lib.normalize_pose_2d(batch["pose_2d"], c)
  x_next = lifter_lib.normalize_pose_2d(batch["pose_2d_next"], c)
  n = x.shape[0]
  k_rot, k_lift, k_d, k_t, k_gp, k_gpt = jax.random.split(rng, 6)
  rot = config.rotation
  rotation = virtual_camera_rotation(k_rot, n, rot.azimuth_range, rot.elevation_range,
                                     rot.vertical_axis, rot.camera_pitch)

  def losses(params):
    lift, stats = _lift_fn(lifter, params["lifter"], state["lifter"].batch_stats, k_lift)
    both = lift(jnp.concatenate([x, x_next], axis=0))       # one pass for t and t+1
    out = cycle(lift, x, rotation, pivot=rot.pivot, depth_offset=c, lifted=both[:n])
    lifted_next = both[n:]
    proj_next = lifter_lib.project(rotate_about(
        lifted_next, rotation, rotation_pivot(lifted_next, rot.pivot, c)), 1.0)
    fake, fake_next = out["projected"], proj_next
    if config.loss.normalize_fake_2d:
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
    g_adv = generator_loss(d_score(d_frozen, fake, k_d), kind)
    g_temporal = generator_loss(t_score(t_frozen, fake, fake_next, k_t), kind)
    cons = consistency_losses(out, x, c)
    w = config.loss
    g_loss = (w.adv * g_adv + w.cycle_2d * cons["cycle_2d"] + w.cycle_3d * cons["cycle_3d"]
              + w.temporal * g_temporal)

    # Discriminators: real poses against the gradient-stopped fakes.
    fake_sg, fake_next_sg = jax.lax.stop_gradient(fake), jax.lax.stop_gradient(fake_next)
    pd, td = params["pose_disc"], params["temporal_disc"]
    d_real = d_score(pd, real, k_d)
    d_fake = d_score(pd, fake_sg, k_d)
    d_loss = discriminator_loss(d_real, d_fake, kind)
    t_loss = discriminator_loss(t_score(td, real, real_next, k_t),
                                t_score(td, fake_sg, fake_next_sg, k_t), kind)
    metrics = dict(cycle_2d=cons["cycle_2d"], cycle_3d=cons["cycle_3d"], g_adv=g_adv,
                   g_temporal=g_temporal, d_loss=d_loss, t_loss=t_loss,
                   d_real=jnp.mean(d_real), d_fake=jnp.mean(d_fake),
                   mean_depth=jnp.mean(out["lifted"][..., 2]))
    if kind == "wgan_gp":
      gp_d = gradient_penalty(lambda m: d_score(pd, m, k_d), real, fake_sg, k_gp)
      gp_t = gradient_penalty(lambda m: t_score(td, m, jnp.zeros_like(m), k_t),
                              real - real_next, fake_sg - fake_next_sg, k_gpt)
      d_loss = d_loss + w.gp * gp_d
      t_loss = t_loss + w.gp * gp_t
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
  if config.train.gan_update == "joint":
    new_state = {"lifter": new_lifter, "pose_disc": new_d, "temporal_disc": new_t}
  elif config.train.gan_update == "alternate":
    disc_turn = state["lifter"].step % 2 == 0   # the lifter's step counts every call
    new_lifter = new_lifter.replace(step=state["lifter"].step + 1)
    keep_lifter = state["lifter"].replace(step=state["lifter"].step + 1)
    new_state = jax.lax.cond(
        disc_turn,
        lambda: {"lifter": keep_lifter, "pose_disc": new_d, "temporal_disc": new_t},
        lambda: {"lifter": new_lifter, "pose_disc": state["pose_disc"],
                 "temporal_disc": state["temporal_disc"]})
  else:
    raise ValueError("train.gan_update must be 'joint' or 'alternate', got "
                     f"{config.train.gan_update!r}")
  metrics["loss"] = metrics["g_loss"]
  return new_state, metrics


def normalize_pose_3d(pose: jax.Array) -> jax.Array:
  """(..., J, 3) -> root-relative, scaled to unit mean joint-to-root distance."""
  centred = pose - pose[..., lifter_lib.ROOT:lifter_lib.ROOT + 1, :]
  dist = jnp.sum(lifter_lib.safe_norm(centred), axis=-1) / (pose.shape[-2] - 1)
  return centred / jnp.maximum(dist, 1e-8)[..., None, None]


def supervised_train_step(config, state, batch, rng):
  """The same lifter trained from 3D labels: MSE between scale-normalised root-relative poses.

  The lifter's output and the label are both brought to the root and to unit mean
  joint-to-root distance, since the lifter's units are arbitrary (scale is unobservable).
  """
  check_batch_keys(batch, SUPERVISED_KEYS, "supervised")
  lifter, _, _ = make_models(config)
  x = lifter_lib.normalize_pose_2d(batch["pose_2d"], config.model.depth_offset)
  target = normalize_pose_3d(batch["pose_3d_cam"].astype(jnp.float32))
  ls = state["lifter"]

  def loss_fn(params):
    pred, updates = lifter.apply({"params": params, "batch_stats": ls.batch_stats}, x,
                                 train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
    loss = jnp.mean(jnp.square(normalize_pose_3d(pred) - target))
    return loss, updates["batch_stats"]

  (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(ls.params)
  return {"lifter": ls.apply_gradients(grads, batch_stats=new_stats)}, {"loss": loss}


def predict(config: ml_collections.ConfigDict, lifter_state: TrainState,
            pose_2d: jax.Array) -> jax.Array:
  """(B, J, 2) normalised screen coordinates -> (B, J, 3) lifted pose in lifter units."""
  lifter, _, _ = make_models(config)
  x = lifter_lib.normalize_pose_2d(pose_2d, config.model.depth_offset)
  return lifter.apply({"params": lifter_state.params, "batch_stats": lifter_state.batch_stats},
                      x, train=False)


def constant_depth_lift(pose_2d: jax.Array, depth_offset: float = 10.0) -> jax.Array:
  """The baseline: every joint at the root's depth, a flat pose facing the camera."""
  x = lifter_lib.normalize_pose_2d(pose_2d, depth_offset)
  return lifter_lib.unproject(x, jnp.full(x.shape[:-1], depth_offset + 1.0, x.dtype))


# --------------------------------------------------------------------------- evaluation
def scale_fit(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
  """(N, J, 3) x2 -> pred root-centred and scaled by <p, g> / <p, p> (g root-centred)."""
  p = pred - pred[:, :1]
  g = target - target[:, :1]
  scale = np.sum(p * g, axis=(1, 2)) / np.maximum(np.sum(p * p, axis=(1, 2)), 1e-12)
  return scale[:, None, None] * p


def frame_errors(pred: np.ndarray, target_mm: np.ndarray) -> dict[str, np.ndarray]:
  """Per-frame metrics of lifted poses (any unit) against ground truth in mm.

  pa_mpjpe: Procrustes with scale (primary: the lifter's scale is unobservable);
  n_mpjpe: Rhodin's scale fit; mpjpe: root-aligned, least-squares scale, then MPJPE;
  pck (150 mm) and auc on the same root-aligned, scale-fitted poses.

  Returns:
    {metric: (N,)} in mm (pck, auc in percent).
  """
  pred = np.asarray(pred, np.float64)
  target = np.asarray(target_mm, np.float64)
  target_rr = target - target[:, :1]
  fitted = scale_fit(pred, target)
  return dict(pa_mpjpe=np.asarray(metrics.pa_mpjpe(pred, target)),
              n_mpjpe=np.asarray(metrics.n_mpjpe(pred, target)),
              mpjpe=np.asarray(metrics.mpjpe(fitted, target_rr)),
              pck=np.asarray(metrics.pck(fitted, target_rr)),
              auc=np.asarray(metrics.auc(fitted, target_rr)))


def summarize(errors: dict[str, np.ndarray], actions: np.ndarray,
              baseline_pa_mpjpe: np.ndarray | None = None) -> dict:
  """Human3.6M protocol tables (per action, then the unweighted mean over actions)."""
  result = metrics.h36m_protocol(errors, actions)
  if baseline_pa_mpjpe is not None:
    baseline = metrics.h36m_protocol({"pa_mpjpe": baseline_pa_mpjpe}, actions)
    result["constant_depth_pa_mpjpe"] = baseline["pa_mpjpe"]
  return result


# --------------------------------------------------------------------------- the task
def _check_config(config: ml_collections.ConfigDict) -> None:
  if config.loss.gan not in ("standard", "wgan_gp"):
    raise ValueError(f"config.loss.gan={config.loss.gan!r}; expected 'standard' or 'wgan_gp'")
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


def train_loader(config: ml_collections.ConfigDict, runtime: Runtime):
  """2D frame pairs (self-supervised: the pipeline carries no 3D), or labelled frames."""
  kwargs = dict(split="train", global_batch_size=config.train.batch_size,
                process_index=runtime.process_index, process_count=runtime.process_count,
                seed=config.seed, shuffle=True, num_epochs=None)
  if config.supervised:
    return poses_data.labelled_frames(config.data, **kwargs)
  return poses_data.lifter_frames(config.data, **kwargs)


class OnFirstUse:
  """An iterable that builds its loader when first iterated (eval-only runs never read the
  train split, so a dataset holding only test subjects can be evaluated)."""

  def __init__(self, make: Callable[[], Any]):
    self._make = make

  def __iter__(self):
    return iter(self._make())


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  """The lifter task for the training loop (see train/task.py)."""
  _check_config(config)
  if config.adapter.enabled:
    if runtime.process_count > 1:
      raise ValueError("the 2D domain adapter runs on one process; drop --multihost")
    from geopose_jax.tasks import lifter_adapter  # pylint: disable=g-import-not-at-top
    return lifter_adapter.build(config, runtime)
  runtime.local_batch_size(config.train.batch_size)
  predict_jit = jax.jit(functools.partial(predict, config))
  constant_jit = jax.jit(functools.partial(constant_depth_lift,
                                           depth_offset=config.model.depth_offset))

  def evaluate(state, split):
    loader = poses_data.labelled_frames(
        config.data, split=split, global_batch_size=config.eval.batch_size,
        process_index=runtime.process_index, process_count=runtime.process_count)
    limit = int(config.eval.max_examples) // runtime.process_count or None
    parts = {"pred": [], "flat": [], "gt": [], "action": [], "valid": []}
    seen = 0
    for batch in loader:
      parts["pred"].append(np.asarray(predict_jit(state["lifter"], batch["pose_2d"])))
      parts["flat"].append(np.asarray(constant_jit(batch["pose_2d"])))
      for key, name in (("gt", "pose_3d_cam"), ("action", "action"), ("valid", "valid")):
        parts[key].append(np.asarray(batch[name]))
      seen += len(batch["pose_2d"])
      if limit and seen >= limit:
        break
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    errors = frame_errors(joined["pred"], joined["gt"])
    errors["constant_depth"] = frame_errors(joined["flat"], joined["gt"])["pa_mpjpe"]
    errors["action"], errors["valid"] = joined["action"], joined["valid"]
    errors = {k: runtime.gather_local(v) for k, v in errors.items()}
    keep = errors.pop("valid").astype(bool)
    actions = np.asarray(poses_data.load_poses(config.data, split).action_names)[
        errors.pop("action")[keep]]
    baseline = errors.pop("constant_depth")[keep]
    return summarize({k: v[keep] for k, v in errors.items()}, actions, baseline)

  def visualize(state, out_dir, step):
    del step
    table = poses_data.load_poses(config.data, "test")
    count = max(1, int(config.viz.num_examples))
    frames = np.linspace(0, table.num_frames - 1, count).round().astype(np.int64)
    pose_2d = table.pose_2d[frames]
    lifted = np.asarray(predict_jit(state["lifter"], pose_2d))
    return lifter_viz.write_pictures(out_dir, pose_2d, lifted, table.pose_3d_cam[frames] * 1000.0,
                                     gif_frames=int(config.viz.gif_frames))

  return Task(init=functools.partial(init_state, config), train_step=make_train_step(config),
              train_data=OnFirstUse(lambda: train_loader(config, runtime)), evaluate=evaluate,
              eval_splits=("test",), visualize=visualize)

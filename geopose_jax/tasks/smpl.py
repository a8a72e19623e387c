"""SMPL body from the frozen NVS latent (the SMPL-from-latent method, METHODS.md §3).

For a 4-view sample, one view's image is encoded by the frozen NVS encoder
(`config.init_from`, an `nvs` run's workdir); the regressor (models/smpl_regressor.py) maps
the latent to joint rotations and betas; the body model (SMPL from `config.body.model_path`,
else the procedural SMPL-format body) gives the mesh and joints. As in the original, the
body is turned from SMPL's y-up into the camera's y-down frame (a half turn about x),
scaled to millimetres and translated so that its pelvis sits on the ground-truth root: only
pose and shape are predicted, not the position.

Losses:
  joints      mean distance (mm) of the 13 non-root corresponding joints
              (skeleton.SMPL_TO_H36M_*) to the labelled 3D pose;
  prior       BCE of a frozen smpl_prior discriminator (`config.prior_from`, an smpl_prior
              run) scoring the prediction as real (its global orientation excluded unless
              that run judged it);
  silhouette  BCE of soft silhouettes (body/raster.py) of the mesh in all 4 cameras against
              the dataset's masks, from step `loss.silhouette_start` on.

Evaluation (test subjects, every view of every sample as input; geopose_jax.evaluation):
the pose table on the 14 mapped joints, and the silhouette IoU of the mesh in the input
view, overall and per view, written by the loop to <workdir>/eval/<split>.json.
"""

from __future__ import annotations

import functools
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from geopose_jax import evaluation
from geopose_jax import skeleton
from geopose_jax.body import exported, placement
from geopose_jax.body import procedural, raster, smpl as smpl_lib
from geopose_jax.errors import ConfigError
from geopose_jax.models import nvs_synthesis as synthesis
from geopose_jax.models import smpl_prior as prior_lib
from geopose_jax.models import smpl_regressor
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import mesh
from geopose_jax.train import optim
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task

PyTree = Any
NUM_VIEWS = 4
SMPL_INDEX = np.asarray(skeleton.SMPL_TO_H36M_SMPL_INDICES)
H36M_INDEX = np.asarray(skeleton.SMPL_TO_H36M_H36M_INDICES)


# ------------------------------------------------------------------------ body and geometry
def load_body(config: ml_collections.ConfigDict) -> smpl_lib.BodyModel:
  """SMPL from `config.body.model_path`, else the procedural body (not SMPL)."""
  if config.body.model_path:
    return smpl_lib.load_body_model(config.body.model_path, num_betas=config.body.num_betas)
  body = procedural.procedural_body(detail=config.body.detail)
  if config.body.num_betas > body.num_betas:
    raise ConfigError(f"config.body.num_betas={config.body.num_betas}, but the procedural "
                      f"body has {body.num_betas} shape directions")
  return procedural.procedural_body(detail=config.body.detail, num_betas=config.body.num_betas)


def select_view(x, view):
  """(B, V, ...) and (B,) view indices -> (B, ...), as selects (keeps batch sharding)."""
  one_hot = (jnp.arange(x.shape[1]) == view[:, None]).reshape(
      view.shape + (x.shape[1],) + (1,) * (x.ndim - 2))
  return jnp.sum(jnp.where(one_hot, x, jnp.zeros((), x.dtype)), axis=1)


def per_device(fn, *args, replicated=()):
  """Runs `fn` on each device's slice of batch-sharded `args` (leading axis over `data`)
  when a mesh with a `data` axis is active, else on the whole batch. Per-sample geometry
  (skinning, projection, rasterisation) reshapes freely inside; `replicated` arguments
  (scalars) are passed whole. `fn` returns per-sample outputs (leading axis = batch).
  The mesh is the one the first argument is sharded over."""
  sharding = getattr(jax.typeof(args[0]), "sharding", None)
  spec = getattr(sharding, "spec", None)
  if not spec or spec[0] != "data":
    return fn(*args, *replicated)
  mesh = sharding.mesh
  spec, whole = jax.sharding.PartitionSpec("data"), jax.sharding.PartitionSpec()
  return jax.shard_map(fn, mesh=mesh, in_specs=(spec,) * len(args) + (whole,) * len(replicated),
                       out_specs=spec)(*args, *replicated)


# ------------------------------------------------------------------------ starting points
def resolve_source(config: ml_collections.ConfigDict) -> init_from_lib.Source:
  """The NVS run of `config.init_from` (required)."""
  if not config.init_from:
    raise ConfigError("smpl needs a trained NVS encoder: --config.init_from=<workdir of an nvs "
                      "run> (configs/nvs.py; configs/nvs.py:demo for a quick one)")
  return init_from_lib.resolve(config.init_from, task="smpl", runs=("nvs",))


def resolve_prior(config: ml_collections.ConfigDict) -> init_from_lib.Source | None:
  """The smpl_prior run of `config.prior_from`; None without one or without the prior loss."""
  source = init_from_lib.resolve(config.prior_from, task="smpl", runs=("smpl_prior",),
                                 key="prior_from")
  if source is None or not config.loss.prior:
    if config.loss.prior:
      logging.warning("smpl: no config.prior_from; training without the adversarial prior")
    return None
  return source


def resolve_config(config: ml_collections.ConfigDict) -> None:
  """Adopts the NVS run's model.net."""
  init_from_lib.adopt_config(config, resolve_source(config), ("model.net",))


def prior_settings(source: init_from_lib.Source) -> dict:
  """The prior run's discriminator settings (its config.json)."""
  model = source.run_config.get("model", {})
  return dict(num_betas=int(model["num_betas"]), include_global=bool(model["include_global"]),
              disc_features=int(model["disc_features"]))


def start_from(state: dict, *, source: init_from_lib.Source,
               prior_source: init_from_lib.Source | None) -> dict:
  """The fresh state with the NVS run's network and the prior run's discriminator."""
  loaded, _ = init_from_lib.load_run(source)
  state = init_from_lib.merge(state, loaded, source=str(source.path), into="nvs",
                              only=("params/.*", "batch_stats/.*"))
  if prior_source is not None:
    prior, _ = init_from_lib.load_run(prior_source)
    state = init_from_lib.merge(state, prior, source=str(prior_source.path), into="prior",
                                take="discriminator", only=("params/.*", "batch_stats/.*"))
  return state


# ------------------------------------------------------------------------ models and state
def build_regressor(config: ml_collections.ConfigDict) -> smpl_regressor.SMPLRegressor:
  m = config.model
  return smpl_regressor.SMPLRegressor(num_betas=config.body.num_betas, width=m.width,
                                      trunk_layers=m.trunk_layers, pose_rep=m.pose_rep,
                                      use_appearance=m.use_appearance)


def init(rng: jax.Array, *, model, regressor, image_size: int, optim_config,
         prior: dict | None) -> dict:
  """{'regressor': TrainState, 'nvs': variables, 'prior': variables (with a prior)}; the NVS
  network and the prior are random until `start_from` loads them."""
  nvs_vars = synthesis.init_variables(model, image_size, rng)
  latent = jnp.zeros((2, model.bottleneck_num_latent_points, 3))
  reg_vars = regressor.init(rng, latent, jnp.zeros((2, model.appearance_dim)), False)
  tx = optim.make_optimizer(optim_config, reg_vars["params"])
  state = {"regressor": TrainState.create(reg_vars["params"], tx, reg_vars["batch_stats"]),
           "nvs": {"params": nvs_vars["params"], "batch_stats": nvs_vars["batch_stats"]}}
  if prior is not None:
    state["prior"] = prior_lib.init_discriminator(
        prior["disc_features"], prior["num_betas"], prior["include_global"],
        jax.random.fold_in(rng, 1))
  return state


# ------------------------------------------------------------------------ prediction
def predict(nvs_vars, reg_vars, images, train: bool, *, model, regressor, image_size: int):
  """(images (B, H, W, 3) uint8) -> (rotations (B, 24, 3, 3), beta (B, S), new regressor
  batch_stats); the NVS encoder is frozen (inference mode, no gradient)."""
  appearance, geometry = synthesis.encode(model, nvs_vars,
                                          synthesis.prepare_images(images, image_size), False)
  appearance, geometry = jax.lax.stop_gradient((appearance, geometry))
  if train:
    (rot, beta), updates = regressor.apply(reg_vars, geometry, appearance, True,
                                           mutable=["batch_stats"])
    return rot, beta, updates["batch_stats"]
  rot, beta = regressor.apply(reg_vars, geometry, appearance, False)
  return rot, beta, reg_vars["batch_stats"]


def posed_in_camera(body, rot, beta, root_cam):
  """Skinning then `body_in_camera`: (B, 24, 3, 3), (B, S), (B, 3) -> vertices, joints."""
  vertices, joints = smpl_lib.smpl(body, rot, beta, pose_rep="matrix")
  return placement.body_in_camera(vertices, joints, root_cam)


def mapped_joint_errors(joints_cam, pose_gt):
  """(B, 24, 3) camera-frame SMPL joints, (B, 17, 3) ground truth -> mean error (B,) of the
  13 non-root corresponding joints (mm)."""
  diff = joints_cam[:, SMPL_INDEX[1:]] - pose_gt[:, H36M_INDEX[1:]]
  return jnp.mean(jnp.sqrt(jnp.sum(diff * diff, -1) + 1e-9), -1)


def render(body, vertices_world, R, t, K, mask_size: int, *, size: int, sigma: float,
           chunk_size: int = 1):
  """(B, V, 3) world meshes into (B, C, ...) cameras at `size` x `size` (masks' `mask_size`)."""
  K = placement.scale_intrinsics(K, size / mask_size)
  return raster.render_silhouettes(vertices_world, body.faces, R, t, K, (size, size),
                                   sigma=sigma, chunk_size=chunk_size)


def _logit(probability, eps: float = 1e-6):
  p = jnp.clip(probability, eps, 1.0 - eps)
  return jnp.log(p) - jnp.log1p(-p)


def sample_terms(rot, beta, pose_gt, R_in, t_in, R, t, K, masks, use_silhouettes, *, body,
                 render_fn, silhouette_size: int):
  """Per sample (this device's slice): joint error (mm), silhouette BCE and IoU `(b,)`."""
  vertices_cam, joints_cam = posed_in_camera(body, rot, beta, pose_gt[:, 0])
  joint_error = mapped_joint_errors(joints_cam, pose_gt)

  def silhouette_terms(vertices_cam):
    world = placement.camera_to_world(vertices_cam, R_in, t_in)
    sil = render_fn(body, world, R, t, K, masks.shape[-1])
    targets = placement.pool_masks(masks, silhouette_size)
    bce = jnp.mean(optax.sigmoid_binary_cross_entropy(_logit(sil), targets), axis=(1, 2, 3))
    return bce, jnp.mean(raster.silhouette_iou(sil, targets), axis=1)

  zeros = jax.lax.stop_gradient(joint_error) * 0.0   # per sample, like the other branch
  bce, iou = jax.lax.cond(use_silhouettes, silhouette_terms, lambda _: (zeros, zeros),
                          vertices_cam)
  return joint_error, bce, iou


def train_step(state: dict, batch, rng: jax.Array, *, predict_fn, terms_fn, prior_logits,
               joints_weight: float, silhouette_weight: float, prior_weight: float,
               silhouette_start: int):
  """One regressor step on 4-view samples: a random input view per sample, the joint loss,
  the frozen prior's BCE and (from `silhouette_start` on) the 4-view silhouette BCE.

  Args:
    batch: images (B, 4, H, W, 3) uint8, masks (B, 4, H, W), R, t, K, pose_3d_cam (B, 4, ...).
    predict_fn: `predict` bound to its networks; terms_fn: `sample_terms` bound to the body.
    prior_logits: `models.smpl_prior.frozen_prior_logits`, or None (no prior term).
  """
  reg = state["regressor"]
  batch_size = batch["masks"].shape[0]
  view = mesh.batch_sharded_like(
      jax.random.randint(rng, (batch_size,), 0, NUM_VIEWS), batch["masks"])
  images = select_view(batch["images"], view)
  pose_gt = select_view(batch["pose_3d_cam"], view)
  R_in, t_in = select_view(batch["R"], view), select_view(batch["t"], view)
  use_silhouettes = (reg.step >= silhouette_start) & (silhouette_weight > 0)

  def loss_fn(params):
    rot, beta, stats = predict_fn(
        state["nvs"], {"params": params, "batch_stats": reg.batch_stats}, images, True)
    joint_error, bce, iou = per_device(
        terms_fn, rot, beta, pose_gt, R_in, t_in, batch["R"], batch["t"], batch["K"],
        batch["masks"], replicated=(use_silhouettes,))
    joint_error, bce, iou = jnp.mean(joint_error), jnp.mean(bce), jnp.mean(iou)
    loss = joints_weight * joint_error + silhouette_weight * bce
    prior_loss = jnp.zeros(())
    if prior_logits is not None:
      prior_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(
          prior_logits(state["prior"], rot, beta), jnp.ones((batch_size,))))
      loss = loss + prior_weight * prior_loss
    return loss, (stats, joint_error, prior_loss, bce, iou, beta)

  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(reg.params)
  stats, joint_error, prior_loss, bce, iou, beta = aux
  new_state = dict(state)
  new_state["regressor"] = reg.apply_gradients(grads, batch_stats=stats)
  return new_state, {"loss": loss, "joints_mm": joint_error, "prior_bce": prior_loss,
                     "silhouette_bce": bce, "silhouette_iou": iou,
                     "beta_rms": jnp.sqrt(jnp.mean(beta ** 2))}


def view_terms(rot, beta, pose_gt, R, t, K, masks, *, body, render_fn, silhouette_size: int):
  """Per sample of one input view: the 14 mapped SMPL joints `(b, 14, 3)` (camera frame, mm)
  and the silhouette IoU `(b,)` in that view."""
  vertices_cam, joints_cam = posed_in_camera(body, rot, beta, pose_gt[:, 0])
  world = placement.camera_to_world(vertices_cam, R, t)
  sil = render_fn(body, world, R[:, None], t[:, None], K[:, None], masks.shape[-1])
  iou = raster.silhouette_iou(sil[:, 0], placement.pool_masks(masks, silhouette_size))
  return joints_cam[:, SMPL_INDEX], iou


def eval_step(state: dict, batch, *, predict_fn, view_fn) -> dict[str, jax.Array]:
  """Every view as input -> per (sample, view), sample-major `(B * 4, ...)`: pose_3d (the 14
  mapped joints), silhouette_iou, and silhouette_iou_view<v> (NaN for the other views)."""
  reg = state["regressor"]
  reg_vars = {"params": reg.params, "batch_stats": reg.batch_stats}

  def one_view(v):
    take = lambda x: jax.lax.dynamic_index_in_dim(x, v, axis=1, keepdims=False)  # noqa: E731
    rot, beta, _ = predict_fn(state["nvs"], reg_vars, take(batch["images"]), False)
    return per_device(view_fn, rot, beta, take(batch["pose_3d_cam"]), take(batch["R"]),
                      take(batch["t"]), take(batch["K"]), take(batch["masks"]))

  # One compiled body for the four views (a loop over a traced index).
  joints, iou = jax.lax.map(one_view, jnp.arange(NUM_VIEWS))          # (4, B, ...)
  flat = lambda x: jnp.moveaxis(x, 0, 1).reshape((-1,) + x.shape[2:])  # noqa: E731
  out = {"pose_3d": flat(joints), "silhouette_iou": flat(iou)}
  view = flat(jnp.broadcast_to(jnp.arange(NUM_VIEWS)[:, None], iou.shape))
  for v in range(NUM_VIEWS):
    out[f"silhouette_iou_view{v}"] = jnp.where(view == v, out["silhouette_iou"], jnp.nan)
  return out


def per_view_batches(loader):
  """4-view batches -> the same with per-(sample, view) `pose_3d_14` `(4 b, 14, 3)`, `valid`
  and `sequence` `(4 b,)`, sample-major as `eval_step`'s outputs."""
  for batch in loader:
    batch = dict(batch)
    b = len(batch["valid"])
    batch["pose_3d_14"] = batch["pose_3d_cam"][:, :, H36M_INDEX].reshape(b * NUM_VIEWS, -1, 3)
    batch["valid"] = np.repeat(np.asarray(batch["valid"], bool), NUM_VIEWS)
    batch["sequence"] = np.repeat(batch["sequence"], NUM_VIEWS)
    yield batch


def evaluate(state: dict, split: str, *, config, runtime: Runtime, step_fn) -> dict:
  """The pose table on the 14 mapped joints and the silhouette IoU, every view as input."""
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  loader = multiview.multiview_samples(
      config.data, split=split, global_batch_size=config.eval.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count,
      seed=config.seed, shuffle=False, num_epochs=1,
      every_nth_frame=config.data.every_nth_frame)
  ious = ("silhouette_iou", *(f"silhouette_iou_view{v}" for v in range(NUM_VIEWS)))

  def predict_fn(batch):
    arrays = {k: batch[k] for k in ("images", "masks", "R", "t", "K", "pose_3d_cam")}
    return step_fn(state, runtime.shard_batch(arrays))

  return evaluation.evaluate_frames(
      predict_fn, per_view_batches(loader), runtime,
      info=evaluation.SequenceInfo.from_names(
          multiview.open_multiview(config.data, split,
                                   every_nth_frame=config.data.every_nth_frame)[1].sequences),
      convention=evaluation.Convention(joints="SMPL-H36M-14"), target_key="pose_3d_14",
      max_examples=int(config.eval.max_examples) * NUM_VIEWS, extra_metrics=ious,
      progress=bool(config.train.progress_bar), desc=f"smpl {split}", decimals=4)


def fit_for_pictures(state, images, pose_gt, R, t, K, *, predict_fn, body, sigma: float):
  """(N, 4, ...) samples -> silhouettes of the fit from view 0 in all views, vertices."""
  reg = state["regressor"]
  rot, beta, _ = predict_fn(state["nvs"], {"params": reg.params, "batch_stats": reg.batch_stats},
                            images[:, 0], False)
  vertices_cam, _ = posed_in_camera(body, rot, beta, pose_gt[:, 0, 0])
  world = placement.camera_to_world(vertices_cam, R[:, 0], t[:, 0])
  size = images.shape[2]
  sil = raster.render_silhouettes(world, body.faces, R, t, K, (size, size), sigma=sigma)
  return sil, vertices_cam


def visualize(state, out_dir, step: int, *, config, fit_fn, body) -> dict[str, np.ndarray]:
  """The fit pictures of the first `config.viz.num_examples` test samples."""
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  from geopose_jax.viz import smpl as smpl_viz  # pylint: disable=g-import-not-at-top
  if int(config.viz.num_examples) <= 0:
    return {}
  loader = multiview.multiview_samples(
      config.data, split="test", global_batch_size=int(config.viz.num_examples),
      seed=config.seed, shuffle=False, num_epochs=1,
      every_nth_frame=config.data.every_nth_frame)
  batch = next(iter(loader))
  sil, vertices_cam = fit_fn(state, *(jnp.asarray(batch[k]) for k in (
      "images", "pose_3d_cam", "R", "t", "K")))
  rows = [smpl_viz.fit_row(batch["images"][i], np.asarray(sil[i]), batch["masks"][i],
                           np.asarray(vertices_cam[i]), np.asarray(body.faces),
                           batch["pose_3d_cam"][i, 0])
          for i in range(len(batch["images"]))]
  return smpl_viz.write_fit_pictures(out_dir, rows, step)


def train_data(config: ml_collections.ConfigDict, runtime: Runtime):
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  return multiview.multiview_samples(
      config.data, split="train", global_batch_size=config.train.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count,
      seed=config.seed, shuffle=True, num_epochs=None,
      every_nth_frame=config.data.every_nth_frame,
      labels=multiview.Labels.from_config(config.data))


# ------------------------------------------------------------------------ prediction
def predict_body(state: dict, images, *, predict_fn, body):
  """uint8 images `(B, H, W, 3)` -> `exported.body_arrays` (H36M-17 joints, theta, beta,
  vertices; camera frame, mm, the pelvis at the origin)."""
  reg = state["regressor"]
  rot, beta, _ = predict_fn(state["nvs"], {"params": reg.params,
                                           "batch_stats": reg.batch_stats}, images, False)
  return exported.body_arrays(body, rot, beta)


def predict_crops(state: dict, crops: np.ndarray, *, body_fn, runtime: Runtime
                  ) -> dict[str, np.ndarray]:
  """uint8 crops `(B, S, S, 3)` (the same on every process) -> `predict_body`'s arrays."""
  out = body_fn(state, runtime.shard_whole(crops))
  return {key: runtime.to_host(value) for key, value in out.items()}


# ------------------------------------------------------------------------ the task
def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  """The smpl task for the training loop (see train/task.py)."""
  source = resolve_source(config)
  prior_source = resolve_prior(config)
  runtime.local_batch_size(config.train.batch_size)
  body = load_body(config)
  model = synthesis.build_model(config.model.net)
  regressor = build_regressor(config)
  size = int(config.model.net.image_size)
  prior = prior_settings(prior_source) if prior_source is not None else None
  predict_fn = functools.partial(predict, model=model, regressor=regressor, image_size=size)
  render_fn = functools.partial(render, size=int(config.loss.silhouette_size),
                                sigma=float(config.loss.silhouette_sigma),
                                chunk_size=int(config.loss.chunk_size))
  geometry = dict(body=body, render_fn=render_fn,
                  silhouette_size=int(config.loss.silhouette_size))
  prior_logits = (prior_lib.frozen_prior_logits(**prior) if prior is not None else None)
  step = functools.partial(
      train_step, predict_fn=predict_fn, terms_fn=functools.partial(sample_terms, **geometry),
      prior_logits=prior_logits, joints_weight=float(config.loss.joints),
      silhouette_weight=float(config.loss.silhouette), prior_weight=float(config.loss.prior),
      silhouette_start=int(config.loss.silhouette_start))
  step_fn = jax.jit(functools.partial(eval_step, predict_fn=predict_fn,
                                      view_fn=functools.partial(view_terms, **geometry)))
  fit_fn = jax.jit(functools.partial(fit_for_pictures, predict_fn=predict_fn, body=body,
                                     sigma=float(config.loss.silhouette_sigma)))
  return Task(
      init=functools.partial(init, model=model, regressor=regressor, image_size=size,
                             optim_config=config.optim, prior=prior),
      train_step=step, train_data=functools.partial(train_data, config, runtime),
      evaluate=functools.partial(evaluate, config=config, runtime=runtime, step_fn=step_fn),
      eval_splits=("test",),
      visualize=functools.partial(visualize, config=config, fit_fn=fit_fn, body=body),
      init_from=functools.partial(start_from, source=source, prior_source=prior_source),
      predict_images=functools.partial(predict_crops, runtime=runtime, body_fn=jax.jit(
          functools.partial(predict_body, predict_fn=predict_fn, body=body))),
      predict_image_size=size, predict_metadata={
          "model": "SMPL regressor on the frozen NVS latent (the SMPL-from-latent method)",
          **exported.body_metadata(config.body.model_path)},
      predict_from_init_from=False)     # init_from gives the NVS network, not the regressor

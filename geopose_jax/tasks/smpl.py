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
  prior       BCE of a frozen smpl_prior discriminator (`config.prior_from`) scoring the
              prediction as real (its global orientation excluded unless that run judged it);
  silhouette  BCE of soft silhouettes (body/raster.py) of the mesh in all 4 cameras against
              the dataset's masks, from step `loss.silhouette_start` on.

Evaluation (test subjects, every view of every sample as input): MPJPE and PA-MPJPE on the
14 mapped joints and the silhouette IoU of the mesh in the input view, overall and per view,
written by the loop to <workdir>/eval/<split>.json.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from geopose_jax import metrics
from geopose_jax import skeleton
from geopose_jax.body import procedural, raster, smpl as smpl_lib
from geopose_jax.models import smpl_regressor
from geopose_jax.tasks import nvs
from geopose_jax.tasks import nvs_pose
from geopose_jax.tasks import smpl_prior
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task

PyTree = Any
NUM_VIEWS = 4
SMPL_INDEX = np.asarray(skeleton.SMPL_TO_H36M_SMPL_INDICES)
H36M_INDEX = np.asarray(skeleton.SMPL_TO_H36M_H36M_INDICES)
_Y_UP_TO_CAMERA = np.diag([1.0, -1.0, -1.0]).astype(np.float32)   # half turn about x


# ------------------------------------------------------------------------ body and geometry
def load_body(config: ml_collections.ConfigDict) -> smpl_lib.BodyModel:
  """SMPL from `config.body.model_path`, else the procedural body (not SMPL)."""
  if config.body.model_path:
    return smpl_lib.load_body_model(config.body.model_path, num_betas=config.body.num_betas)
  body = procedural.procedural_body(detail=config.body.detail)
  if config.body.num_betas > body.num_betas:
    raise ValueError(f"config.body.num_betas={config.body.num_betas}, but the procedural body "
                     f"has {body.num_betas} shape directions")
  return procedural.procedural_body(detail=config.body.detail, num_betas=config.body.num_betas)


def body_in_camera(vertices, joints, root_cam):
  """Model-frame body (metres, y up) -> camera frame (mm, y down), pelvis on `root_cam`.

  Args:
    vertices: (B, V, 3); joints: (B, J, 3); root_cam: (B, 3) ground-truth root (mm).

  Returns:
    vertices (B, V, 3) and joints (B, J, 3) in the camera frame.
  """
  flip = jnp.asarray(_Y_UP_TO_CAMERA)
  pelvis = joints[:, :1]
  to_cam = lambda x: (x - pelvis) @ flip * 1000.0 + root_cam[:, None]  # noqa: E731
  return to_cam(vertices), to_cam(joints)


def camera_to_world(points, R, t):
  """(B, N, 3) camera-frame points, (B, 3, 3) world->camera, (B, 3) centres -> world."""
  return points @ R + t[:, None]


def scale_intrinsics(K, factor: float):
  """Intrinsics of an image resized by `factor` (pixel centres at integer coordinates)."""
  scale = jnp.asarray([[factor, 0.0, 0.5 * factor - 0.5], [0.0, factor, 0.5 * factor - 0.5],
                       [0.0, 0.0, 1.0]], K.dtype)
  return scale @ K


def pool_masks(masks, size: int):
  """(..., H, W) {0, 1} masks -> (..., size, size) coverage fractions (H = W = k size)."""
  h = masks.shape[-1]
  if h % size:
    raise ValueError(f"config.loss.silhouette_size={size} must divide the mask size {h}")
  k = h // size
  m = masks.astype(jnp.float32).reshape(masks.shape[:-2] + (size, k, size, k))
  return m.mean(axis=(-3, -1))


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


# ------------------------------------------------------------------------ models and state
def build_regressor(config: ml_collections.ConfigDict) -> smpl_regressor.SMPLRegressor:
  m = config.model
  return smpl_regressor.SMPLRegressor(num_betas=config.body.num_betas, width=m.width,
                                      trunk_layers=m.trunk_layers, pose_rep=m.pose_rep,
                                      use_appearance=m.use_appearance)


def _encode_method(module, images, train):
  return module.encode(images, train)


def load_prior(prior_from: str):
  """(discriminator variables, the prior run's config) from an smpl_prior workdir."""
  from geopose_jax.train import checkpoint  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(prior_from).expanduser()
  config_path = next((p / "config.json" for p in (path, *path.parents[:3])
                      if (p / "config.json").is_file()), None)
  if config_path is None:
    raise FileNotFoundError(f"prior_from={prior_from}: no config.json of an smpl_prior run "
                            "there; give the workdir of a configs/smpl_prior.py run")
  prior_config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  if prior_config.get("task") != "smpl_prior":
    raise ValueError(f"prior_from={prior_from} is a {prior_config.get('task')!r} run, not "
                     "smpl_prior")
  state, step = checkpoint.load_state_dict(prior_from)
  if "discriminator" not in state:
    raise ValueError(f"prior_from={prior_from}: the checkpoint holds no discriminator "
                     f"(keys {sorted(state)})")
  logging.info("smpl: adversarial prior from %s (step %d)", prior_from, step)
  d = state["discriminator"]
  return {"params": d["params"], "batch_stats": d["batch_stats"]}, prior_config


def prior_logits_fn(prior_config):
  """(variables, (B, 24, 3, 3), (B, S)) -> (B,) logits of the frozen discriminator."""
  _, discriminator = smpl_prior.build_models(prior_config)
  include_global = bool(prior_config.model.include_global)
  num_betas = int(prior_config.model.num_betas)

  def logits(variables, rot, beta):
    if beta.shape[-1] < num_betas:
      beta = jnp.pad(beta, ((0, 0), (0, num_betas - beta.shape[-1])))
    features = smpl_prior.prior_lib.prior_features(rot, beta[:, :num_betas], include_global)
    return discriminator.apply(variables, features, False)

  return logits


# ------------------------------------------------------------------------ prediction
def make_predict(config, model, regressor, body):
  """(nvs_vars, reg_vars, images (B, H, W, 3) uint8, train) -> (rotations (B, 24, 3, 3),
  beta (B, S), new regressor batch_stats)."""
  size = config.model.net.image_size

  def predict(nvs_vars, reg_vars, images, train: bool):
    appearance, geometry = model.apply(nvs_vars, nvs.prepare_images(images, size), False,
                                       method=_encode_method)
    appearance, geometry = jax.lax.stop_gradient((appearance, geometry))
    if train:
      (rot, beta), updates = regressor.apply(reg_vars, geometry, appearance, True,
                                             mutable=["batch_stats"])
      stats = updates["batch_stats"]
    else:
      rot, beta = regressor.apply(reg_vars, geometry, appearance, False)
      stats = reg_vars["batch_stats"]
    return rot, beta, stats

  return predict


def posed_in_camera(body, rot, beta, root_cam):
  """Skinning then `body_in_camera`: (B, 24, 3, 3), (B, S), (B, 3) -> vertices, joints."""
  vertices, joints = smpl_lib.smpl(body, rot, beta, pose_rep="matrix")
  return body_in_camera(vertices, joints, root_cam)


def mapped_joint_errors(joints_cam, pose_gt):
  """(B, 24, 3) camera-frame SMPL joints, (B, 17, 3) ground truth -> mean error (B,) of the
  13 non-root corresponding joints (mm)."""
  diff = joints_cam[:, SMPL_INDEX[1:]] - pose_gt[:, H36M_INDEX[1:]]
  return jnp.mean(jnp.sqrt(jnp.sum(diff * diff, -1) + 1e-9), -1)


def render(config, body, vertices_world, R, t, K, mask_size: int):
  """(B, V, 3) world meshes into (B, C, ...) cameras at loss.silhouette_size."""
  size = int(config.loss.silhouette_size)
  K = scale_intrinsics(K, size / mask_size)
  return raster.render_silhouettes(vertices_world, body.faces, R, t, K, (size, size),
                                   sigma=float(config.loss.silhouette_sigma),
                                   chunk_size=int(config.loss.chunk_size))


def _logit(probability, eps: float = 1e-6):
  p = jnp.clip(probability, eps, 1.0 - eps)
  return jnp.log(p) - jnp.log1p(-p)


# ------------------------------------------------------------------------ the task
def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  """The smpl task for the training loop (see train/task.py)."""
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  if not config.init_from:
    raise ValueError("smpl needs a trained NVS encoder: --config.init_from=<workdir of an nvs "
                     "run> (configs/nvs.py; configs/nvs.py:demo for a quick one)")
  saved_net = nvs_pose.stage1_config(config.init_from)
  if saved_net is not None and saved_net != json.loads(config.model.net.to_json()):
    logging.info("smpl: using the NVS run's model.net %s", saved_net)
    with config.unlocked():
      config.model.net = ml_collections.ConfigDict(saved_net)
  runtime.local_batch_size(config.train.batch_size)
  body = load_body(config)
  model = nvs.build_model(config)
  regressor = build_regressor(config)
  predict = make_predict(config, model, regressor, body)
  init_nvs = nvs.make_init_variables(model, config.model.net.image_size)
  stage1 = nvs_pose.load_stage1(config.init_from)
  nvs_pose.check_compatible(jax.eval_shape(init_nvs, jax.random.key(0)), stage1,
                            config.init_from)
  prior_vars, prior_logits = None, None
  if config.prior_from and config.loss.prior:
    prior_vars, prior_config = load_prior(config.prior_from)
    prior_logits = prior_logits_fn(prior_config)
  elif config.loss.prior:
    logging.warning("smpl: no config.prior_from; training without the adversarial prior")
  tx = optax.adam(config.optim.lr)

  def init(rng):
    nvs_vars = nvs.merge_weights(init_nvs(rng), stage1)
    appearance_dim = config.model.net.appearance_dim
    reg_vars = regressor.init(rng, jnp.zeros((2, config.model.net.bottleneck_num_latent_points,
                                              3)), jnp.zeros((2, appearance_dim)), False)
    state = {"regressor": TrainState.create(reg_vars["params"], tx, reg_vars["batch_stats"]),
             "nvs": {"params": nvs_vars["params"], "batch_stats": nvs_vars["batch_stats"]}}
    if prior_vars is not None:
      state["prior"] = jax.tree.map(jnp.asarray, prior_vars)
    return state

  silhouette_size = int(config.loss.silhouette_size)

  def sample_terms(rot, beta, pose_gt, R_in, t_in, R, t, K, masks, use_silhouettes):
    """Per sample (this device's slice): joint error (mm), silhouette BCE and IoU."""
    vertices_cam, joints_cam = posed_in_camera(body, rot, beta, pose_gt[:, 0])
    joint_error = mapped_joint_errors(joints_cam, pose_gt)

    def silhouette_terms(vertices_cam):
      world = camera_to_world(vertices_cam, R_in, t_in)
      sil = render(config, body, world, R, t, K, masks.shape[-1])
      targets = pool_masks(masks, silhouette_size)
      bce = jnp.mean(optax.sigmoid_binary_cross_entropy(
          _logit(sil), targets), axis=(1, 2, 3))
      return bce, jnp.mean(raster.silhouette_iou(sil, targets), axis=1)

    zeros = jax.lax.stop_gradient(joint_error) * 0.0   # per sample, like the other branch
    bce, iou = jax.lax.cond(use_silhouettes, silhouette_terms, lambda _: (zeros, zeros),
                            vertices_cam)
    return joint_error, bce, iou

  def train_step(state, batch, rng):
    reg = state["regressor"]
    batch_size = batch["masks"].shape[0]
    view = smpl_prior.batch_sharded_like(
        jax.random.randint(rng, (batch_size,), 0, NUM_VIEWS), batch["masks"])
    images = select_view(batch["images"], view)
    pose_gt = select_view(batch["pose_3d_cam"], view)
    R_in, t_in = select_view(batch["R"], view), select_view(batch["t"], view)
    use_silhouettes = (reg.step >= config.loss.silhouette_start) & (config.loss.silhouette > 0)

    def loss_fn(params):
      rot, beta, stats = predict(
          state["nvs"], {"params": params, "batch_stats": reg.batch_stats}, images, True)
      joint_error, bce, iou = per_device(
          sample_terms, rot, beta, pose_gt, R_in, t_in, batch["R"], batch["t"], batch["K"],
          batch["masks"], replicated=(use_silhouettes,))
      joint_error, bce, iou = jnp.mean(joint_error), jnp.mean(bce), jnp.mean(iou)
      loss = config.loss.joints * joint_error + config.loss.silhouette * bce
      prior_loss = jnp.zeros(())
      if prior_logits is not None:
        prior_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(
            prior_logits(state["prior"], rot, beta), jnp.ones((batch_size,))))
        loss = loss + config.loss.prior * prior_loss
      return loss, (stats, joint_error, prior_loss, bce, iou, beta)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(reg.params)
    stats, joint_error, prior_loss, bce, iou, beta = aux
    new_state = dict(state)
    new_state["regressor"] = reg.apply_gradients(grads, batch_stats=stats)
    return new_state, {"loss": loss, "joints_mm": joint_error, "prior_bce": prior_loss,
                       "silhouette_bce": bce, "silhouette_iou": iou,
                       "beta_rms": jnp.sqrt(jnp.mean(beta ** 2))}


  def view_terms(rot, beta, pose_gt, R, t, K, masks):
    """Per sample: errors on the mapped joints and the IoU in the input view itself."""
    vertices_cam, joints_cam = posed_in_camera(body, rot, beta, pose_gt[:, 0])
    pred, gt = joints_cam[:, SMPL_INDEX], pose_gt[:, H36M_INDEX]
    world = camera_to_world(vertices_cam, R, t)
    sil = render(config, body, world, R[:, None], t[:, None], K[:, None], masks.shape[-1])
    iou = raster.silhouette_iou(sil[:, 0], pool_masks(masks, silhouette_size))
    return metrics.mpjpe(pred, gt), metrics.pa_mpjpe(pred, gt), iou

  @jax.jit
  def eval_step(state, batch):
    """Every view as input: per sample and view, joint errors and the IoU in that view."""
    reg = state["regressor"]
    reg_vars = {"params": reg.params, "batch_stats": reg.batch_stats}

    def one_view(v):
      take = lambda x: jax.lax.dynamic_index_in_dim(x, v, axis=1, keepdims=False)  # noqa: E731
      rot, beta, _ = predict(state["nvs"], reg_vars, take(batch["images"]), False)
      return per_device(view_terms, rot, beta, take(batch["pose_3d_cam"]), take(batch["R"]),
                        take(batch["t"]), take(batch["K"]), take(batch["masks"]))

    # One compiled body for the four views (a loop over a traced index).
    terms = jax.lax.map(one_view, jnp.arange(NUM_VIEWS))
    return {k: jnp.moveaxis(v, 0, 1)                                    # (B, 4) each
            for k, v in zip(("mpjpe", "pa_mpjpe", "silhouette_iou"), terms)}

  def evaluate(state, split):
    loader = multiview.multiview_samples(
        config.data, split=split, global_batch_size=config.eval.batch_size,
        process_index=runtime.process_index, process_count=runtime.process_count,
        seed=config.seed, shuffle=False, num_epochs=1, labelled_only=False)
    parts: dict[str, list[np.ndarray]] = {"mpjpe": [], "pa_mpjpe": [], "silhouette_iou": []}
    for batch in nvs.eval_batches(loader, config):
      valid = runtime.gather_local(batch.pop("valid")).astype(bool)
      arrays = {k: batch[k] for k in ("images", "masks", "R", "t", "K", "pose_3d_cam")}
      out = eval_step(state, runtime.shard_batch(arrays))
      for k in parts:
        parts[k].append(runtime.to_host(out[k])[valid])
    if not parts["mpjpe"] or not sum(len(p) for p in parts["mpjpe"]):
      raise ValueError(f"smpl evaluation on split {split!r} saw no valid sample")
    joined = {k: np.concatenate(v) for k, v in parts.items()}      # (N, 4)
    result = {k: round(float(v.mean()), 4 if k == "silhouette_iou" else 1)
              for k, v in joined.items()}
    for v in range(NUM_VIEWS):
      result[f"silhouette_iou_view{v}"] = round(float(joined["silhouette_iou"][:, v].mean()), 4)
    result["num_samples"] = int(len(joined["mpjpe"]))
    return result

  @jax.jit
  def fit_for_pictures(state, images, pose_gt, R, t, K):
    reg = state["regressor"]
    rot, beta, _ = predict(state["nvs"], {"params": reg.params, "batch_stats": reg.batch_stats},
                           images[:, 0], False)
    vertices_cam, _ = posed_in_camera(body, rot, beta, pose_gt[:, 0, 0])
    world = camera_to_world(vertices_cam, R[:, 0], t[:, 0])
    size = images.shape[2]
    sil = raster.render_silhouettes(world, body.faces, R, t, K, (size, size),
                                    sigma=float(config.loss.silhouette_sigma))
    return sil, vertices_cam

  def visualize(state, out_dir, step):
    from geopose_jax.viz import smpl as smpl_viz  # pylint: disable=g-import-not-at-top
    if int(config.viz.num_examples) <= 0:
      return {}
    loader = multiview.multiview_samples(
        config.data, split="test", global_batch_size=int(config.viz.num_examples),
        seed=config.seed, shuffle=False, num_epochs=1, labelled_only=False)
    batch = next(iter(loader))
    sil, vertices_cam = fit_for_pictures(state, *(jnp.asarray(batch[k]) for k in (
        "images", "pose_3d_cam", "R", "t", "K")))
    rows = [smpl_viz.fit_row(batch["images"][i], np.asarray(sil[i]), batch["masks"][i],
                             np.asarray(vertices_cam[i]), np.asarray(body.faces),
                             batch["pose_3d_cam"][i, 0])
            for i in range(len(batch["images"]))]
    return smpl_viz.write_fit_pictures(out_dir, rows, step)

  train_data = multiview.multiview_samples(
      config.data, split="train", global_batch_size=config.train.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count,
      seed=config.seed, shuffle=True, num_epochs=None, labelled_only=True)
  return Task(init=init, train_step=train_step, train_data=train_data, evaluate=evaluate,
              eval_splits=("test",), visualize=visualize)

"""Stage 2 of Rhodin et al. (ECCV 2018): 3D pose from the NVS latent with few labels.

Semi-supervised (default): the stage-1 network (`config.init_from`, an `nvs` run's workdir)
is frozen and the original's MLP head (models.pose_head.PoseHead) learns the 17 joints from
the *unrotated* geometry latent (200 x 3 = 600-d), on labels of a chosen subset (default S1
only). The encoder's BatchNorm runs in inference mode; `model.encoder_bn_train_mode=True`
reproduces the original, which left it in train mode (batch statistics, running averages
updated) although frozen.

Supervised baseline (`configs/nvs_pose.py:supervised`, `model.supervised=True`): the same
encoder and head trained end to end on the same labels, with no NVS pre-training (the
comparison of the paper's Figure 4a).

Targets: root-relative 3D pose in the camera frame (mm), normalised by the labelled
training set's per-coordinate mean and std (the root's std set to 1); loss MSE; Adam.
Evaluation (mm, test subjects): MPJPE, N-MPJPE (Rhodin's scale fit) and PA-MPJPE per action
and overall (the Human3.6M protocol of geopose_jax.metrics).
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

from geopose_jax import metrics
from geopose_jax.tasks import nvs
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task

PyTree = Any
NUM_JOINTS = 17


def root_relative(pose: jax.Array) -> jax.Array:
  """`(..., J, 3)` -> the same with joint 0 at the origin."""
  return pose - pose[..., :1, :]


def pose_statistics(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and std `(J, 3)` of root-relative poses `(N, J, 3)`; the root's std is 1.

  (The root is always 0 after centring; a std of 1 keeps the normalisation invertible.)
  A coordinate with zero spread gets std 1 for the same reason.
  """
  poses = root_relative(np.asarray(poses, np.float64))
  mean, std = poses.mean(axis=0), poses.std(axis=0)
  std[0] = 1.0
  std = np.where(std > 1e-6, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


def normalize_pose(pose: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """`(B, J, 3)` mm -> `(B, J * 3)` normalised root-relative targets."""
  return ((root_relative(pose) - mean) / std).reshape(pose.shape[0], -1)


def denormalize_pose(output: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """`(B, J * 3)` head output -> `(B, J, 3)` root-relative pose in mm."""
  return output.reshape(output.shape[0], -1, 3) * std + mean


def labelled_poses(data_config: ml_collections.ConfigDict) -> np.ndarray:
  """Camera-frame poses `(L * V, 17, 3)` of every view of the labelled training records."""
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  reader, index = multiview.open_multiview(data_config, "train")
  entries = multiview.label_subset(index, tuple(data_config.label_subjects or ()),
                                   float(data_config.label_fraction),
                                   int(data_config.label_seed))
  return np.concatenate([np.asarray(reader.parse(int(index.record[e]))["pose_3d_cam"],
                                    np.float32) for e in entries])


def stage1_config(init_from: str) -> dict | None:
  """The `model.net` settings of the stage-1 run in `init_from` (its config.json), if any."""
  path = pathlib.Path(init_from).expanduser()
  for folder in (path, *path.parents[:3]):
    if (folder / "config.json").is_file():
      with open(folder / "config.json") as f:
        saved = json.load(f)
      return saved.get("model", {}).get("net")
  return None


def build_head(config: ml_collections.ConfigDict):
  from geopose_jax.models import pose_head  # pylint: disable=g-import-not-at-top
  return pose_head.PoseHead(hidden_dim=config.model.head_hidden, output_dim=3 * NUM_JOINTS,
                            num_hidden=config.model.head_layers, dropout=config.model.head_dropout)


def _encode_method(module, images, train):
  return module.encode(images, train)[1]


def make_predict(model, head, config: ml_collections.ConfigDict, mean, std):
  """(params, batch_stats, images uint8, train, rng) -> (normalised output, new batch_stats)."""
  size = config.model.net.image_size
  supervised = config.model.supervised
  encoder_train = supervised or config.model.encoder_bn_train_mode

  def predict(params, batch_stats, images, train: bool, rng=None):
    inputs = nvs.prepare_images(images, size)
    nvs_vars = {"params": params["nvs"], "batch_stats": batch_stats["nvs"]}
    new_stats = dict(batch_stats)
    if train and encoder_train:
      geometry, updates = model.apply(nvs_vars, inputs, True, method=_encode_method,
                                      mutable=["batch_stats"])
      new_stats["nvs"] = updates["batch_stats"]
    else:
      geometry = model.apply(nvs_vars, inputs, False, method=_encode_method)
    if not supervised:
      geometry = jax.lax.stop_gradient(geometry)
    head_vars = {"params": params["head"], "batch_stats": batch_stats["head"]}
    if train:
      output, updates = head.apply(head_vars, geometry, True, rngs={"dropout": rng},
                                   mutable=["batch_stats"])
      new_stats["head"] = updates["batch_stats"]
    else:
      output = head.apply(head_vars, geometry, False)
    return output, new_stats

  return predict


def trainable_prefixes(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Frozen parameter prefixes: all of the NVS network, or (supervised) its decoder."""
  if not config.model.supervised:
    return ("nvs",)
  return ("nvs/from_latent", "nvs/conv_1_stage_bg0", "nvs/final_stage0",
          *(f"nvs/upconv_{i}_stage0" for i in range(1, len(config.model.net.decoder_channels))))


def make_optimizer(config: ml_collections.ConfigDict, params: PyTree):
  return nvs.make_optimizer(config.optim, params, trainable_prefixes(config))


def load_stage1(init_from: str) -> dict:
  """{'params', 'batch_stats'} of the NVS network saved by an `nvs` run."""
  from geopose_jax.train import checkpoint  # pylint: disable=g-import-not-at-top
  state, step = checkpoint.load_state_dict(init_from)
  if "params" not in state or "encoder" not in state["params"]:
    raise ValueError(f"init_from={init_from}: the checkpoint holds no NVS network "
                     f"(top-level keys {sorted(state)}); give the workdir of an `nvs` run")
  logging.info("nvs_pose: stage-1 network from %s (step %d)", init_from, step)
  return {"params": state["params"], "batch_stats": state.get("batch_stats", {})}


def check_compatible(abstract: PyTree, loaded: PyTree, init_from: str) -> None:
  """Every leaf of the model must be in the checkpoint with the same shape."""
  want = {jax.tree_util.keystr(p): v.shape
          for p, v in jax.tree_util.tree_flatten_with_path(abstract)[0]}
  have = {jax.tree_util.keystr(p): np.shape(v)
          for p, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
  bad = [k for k in want if have.get(k) != tuple(want[k])]
  if bad:
    raise ValueError(f"init_from={init_from}: the stage-1 network does not match "
                     f"config.model.net ({len(bad)} differing leaves, e.g. {bad[:3]}); use the "
                     "same model.net as the nvs run")


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top

  if not config.model.supervised and not config.init_from:
    raise ValueError("nvs_pose needs a stage-1 network: --config.init_from=<workdir of an nvs "
                     "run>; or train the supervised baseline with configs/nvs_pose.py:supervised")
  if config.init_from and not config.model.supervised:
    saved_net = stage1_config(config.init_from)
    if saved_net is not None and saved_net != json.loads(config.model.net.to_json()):
      logging.info("nvs_pose: using the stage-1 run's model.net %s", saved_net)
      with config.unlocked():
        config.model.net = ml_collections.ConfigDict(saved_net)
  model = nvs.build_model(config)
  head = build_head(config)
  size = config.model.net.image_size
  mean, std = pose_statistics(labelled_poses(config.data))
  predict = make_predict(model, head, config, jnp.asarray(mean), jnp.asarray(std))
  init_nvs = nvs.make_init_variables(model, size)

  def init_head(rng):
    latent = jnp.zeros((2, model.bottleneck_num_latent_points, 3))
    return head.init({"params": rng, "dropout": rng}, latent, False)

  stage1 = None
  if config.init_from and not config.model.supervised:
    stage1 = load_stage1(config.init_from)
    check_compatible(jax.eval_shape(init_nvs, jax.random.key(0)), stage1, config.init_from)
  encoder_weights = None
  if config.model.supervised and config.model.encoder_weights:
    encoder_weights = nvs.load_encoder_weights(jax.eval_shape(init_nvs, jax.random.key(0)),
                                               config.model.encoder_weights)

  def init(rng):
    nvs_key, head_key = jax.random.split(rng)
    nvs_vars = init_nvs(nvs_key)
    if stage1 is not None:
      nvs_vars = nvs.merge_weights(nvs_vars, stage1)
    elif encoder_weights is not None:
      nvs_vars = nvs.merge_weights(nvs_vars, encoder_weights)
    head_vars = init_head(head_key)
    params = {"nvs": nvs_vars["params"], "head": head_vars["params"]}
    stats = {"nvs": nvs_vars.get("batch_stats", {}), "head": head_vars.get("batch_stats", {})}
    return TrainState.create(params, make_optimizer(config, params), stats)

  def train_step(state: TrainState, batch, rng):
    target = normalize_pose(batch["pose_3d_cam"], mean, std)

    def loss_fn(params):
      output, stats = predict(params, state.batch_stats, batch["image"], True, rng)
      return jnp.mean((output - target) ** 2), (stats, output)

    (loss, (stats, output)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads, batch_stats=stats)
    train_mpjpe = metrics.mpjpe(denormalize_pose(output, mean, std),
                                root_relative(batch["pose_3d_cam"])).mean()
    return state, {"loss": loss, "mpjpe_mm": train_mpjpe}

  @jax.jit
  def eval_step(params, batch_stats, batch):
    output, _ = predict(params, batch_stats, batch["image"], False)
    pred = denormalize_pose(output, mean, std)
    gt = root_relative(batch["pose_3d_cam"])
    return {"mpjpe": metrics.mpjpe(pred, gt), "n_mpjpe": metrics.n_mpjpe(pred, gt),
            "pa_mpjpe": metrics.pa_mpjpe(pred, gt), "pred": pred}

  def evaluate(state, split):
    loader = multiview.single_views(
        config.data, split=split, global_batch_size=config.eval.batch_size,
        process_index=runtime.process_index, process_count=runtime.process_count,
        seed=config.seed, shuffle=False, num_epochs=1, labelled_only=False)
    errors = {"mpjpe": [], "n_mpjpe": [], "pa_mpjpe": []}
    actions = []
    for batch in nvs.eval_batches(loader, config):
      out = eval_step(state.params, state.batch_stats, runtime.shard_batch(batch))
      valid = batch["valid"]
      for k in errors:
        errors[k].append(runtime.to_host(out[k])[runtime.gather_local(valid)])
      actions.append(runtime.gather_local(batch["action"])[runtime.gather_local(valid)])
    if not actions or not sum(len(a) for a in actions):
      raise ValueError(f"nvs_pose evaluation on split {split!r} saw no valid frame")
    names = np.asarray(multiview.open_multiview(config.data, split)[1].action_names)
    return metrics.h36m_protocol({k: np.concatenate(v) for k, v in errors.items()},
                                 names[np.concatenate(actions)])

  synthesizer = nvs.make_view_synthesizer(model, size)

  def visualize(state, out_dir: pathlib.Path, step: int):
    nvs_vars = {"params": state.params["nvs"], "batch_stats": state.batch_stats["nvs"]}

    def predict_poses(images):
      output, _ = jax.jit(predict, static_argnums=3)(state.params, state.batch_stats,
                                                     jnp.asarray(images), False)
      return np.asarray(denormalize_pose(output, mean, std))

    return nvs.draw(None if config.model.supervised else synthesizer, nvs_vars, config,
                    out_dir, step, predict_poses=predict_poses)

  train_data = multiview.single_views(
      config.data, split="train", global_batch_size=config.train.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count,
      seed=config.seed, shuffle=True, num_epochs=None, labelled_only=True)
  return Task(init=init, train_step=train_step, train_data=train_data, evaluate=evaluate,
              eval_splits=("test",), visualize=visualize)

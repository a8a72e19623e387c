"""Stage 2 of Rhodin et al. (ECCV 2018): 3D pose from the NVS latent with few labels.

Semi-supervised (default): the stage-1 network (`config.init_from`) is frozen and the
original's MLP head (models.pose_head.PoseHead) learns the 17 joints from the *unrotated*
geometry latent (200 x 3 = 600-d), on labels of a chosen subset (default S1 only). The
encoder's BatchNorm runs in inference mode; `model.encoder_bn_train_mode=True` reproduces
the original, which left it in train mode (batch statistics, running averages updated)
although frozen.

Supervised baseline (`configs/nvs_pose.py:supervised`, `model.supervised=True`): the same
encoder and head trained end to end on the same labels, with no NVS pre-training (the
comparison of the paper's Figure 4a).

What the method freezes (the whole NVS network; supervised, its decoder) is added to
`optim.frozen` by `resolve_config`, so config.json lists it. `--config.init_from` accepts an
nvs run (-> the NVS network), an nvs_pose run (network and head), or Rhodin et al.'s
`network_best_val_t1.pth` (encoder, decoder and its pose head `to_pose`).

Targets: root-relative 3D pose in the camera frame (mm), normalised by the labelled
training set's per-coordinate mean and std (the root's std set to 1), kept in the state
(`batch_stats/pose_targets`) so that evaluation never opens the train split; loss MSE; Adam.
Evaluation (mm, test subjects): MPJPE, N-MPJPE (`n_mpjpe_rhodin`: Rhodin's scale fit over
the 16 non-root joints), PA-MPJPE, PCK, AUC per action and overall (geopose_jax.evaluation).
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from geopose_jax import evaluation
from geopose_jax import metrics
from geopose_jax.errors import ConfigError
from geopose_jax.models import nvs_synthesis as synthesis
from geopose_jax.models import pose_head
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import optim
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task
from geopose_jax.viz import nvs_pictures

PyTree = Any
NUM_JOINTS = 17
STATS = "pose_targets"   # batch_stats entry holding the label statistics


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
  reader, index = multiview.open_multiview(data_config, "train",
                                           every_nth_frame=data_config.every_nth_frame)
  labels = multiview.Labels.from_config(data_config)
  entries = multiview.label_subset(index, labels.subjects, labels.fraction, labels.seed)
  return np.concatenate([np.asarray(reader.parse(int(index.record[e]))["pose_3d_cam"],
                                    np.float32) for e in entries])


def build_head(config: ml_collections.ConfigDict) -> pose_head.PoseHead:
  return pose_head.PoseHead(hidden_dim=config.model.head_hidden, output_dim=3 * NUM_JOINTS,
                            num_hidden=config.model.head_layers, dropout=config.model.head_dropout)


def method_frozen(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """optim.frozen patterns the method implies: all of the NVS network, or (supervised) its
  decoder."""
  if not config.model.supervised:
    return ("nvs/.*",)
  decoder = ["from_latent", "conv_1_stage_bg0", "final_stage0",
             *(f"upconv_{i}_stage0" for i in range(1, len(config.model.net.decoder_channels)))]
  return tuple(f"nvs/{name}/.*" for name in decoder)


# --- starting points -------------------------------------------------------------------------

def resolve_source(config: ml_collections.ConfigDict) -> init_from_lib.Source | None:
  """Checks `config.init_from`; the semi-supervised method needs one."""
  if not config.model.supervised and not config.init_from:
    raise ConfigError("nvs_pose needs a stage-1 network: --config.init_from=<workdir of an nvs "
                      "run> (or Rhodin et al.'s network_best_val_t1.pth); or train the "
                      "supervised baseline with configs/nvs_pose.py:supervised")
  return init_from_lib.resolve(config.init_from, task="nvs_pose", runs=("nvs", "nvs_pose"),
                               files=(synthesis.RHODIN_FILE,),
                               file_suffixes=synthesis.RHODIN_SUFFIXES)


def resolve_config(config: ml_collections.ConfigDict) -> None:
  """Adopts the stage-1 run's model.net; adds the method's frozen parts to optim.frozen."""
  init_from_lib.adopt_config(config, resolve_source(config), ("model.net",))
  frozen = tuple(config.optim.frozen or ())
  config.optim.frozen = frozen + tuple(p for p in method_frozen(config) if p not in frozen)


def put_statistics(state: TrainState, mean: np.ndarray, std: np.ndarray) -> TrainState:
  """`state` with the label statistics `(J, 3)` in `batch_stats/pose_targets`."""
  old = state.batch_stats[STATS]
  put = lambda value, like: jax.device_put(  # noqa: E731
      np.asarray(value, np.float32), getattr(like, "sharding", None))
  stats = dict(state.batch_stats)
  stats[STATS] = {"mean": put(mean, old["mean"]), "std": put(std, old["std"])}
  return state.replace(batch_stats=stats)


def start_from(state: TrainState, *, source: init_from_lib.Source | None, model, head,
               image_size: int, encoder_weights: str,
               data_config: ml_collections.ConfigDict) -> TrainState:
  """The fresh state with `config.init_from`'s weights and the training labels' statistics."""
  if encoder_weights:
    state = synthesis.put_imagenet_encoder(state, encoder_weights, model=model,
                                           image_size=image_size, into="nvs")
  if source is not None and source.kind == "file":
    loaded = synthesis.load_rhodin(source.path, model, head)
    state = synthesis.merge_variables(state, loaded["nvs"], source=str(source.path), into="nvs")
    state = synthesis.merge_variables(state, loaded["pose_head"], source=str(source.path),
                                      into="head")
  elif source is not None and source.task == "nvs":
    loaded, _ = init_from_lib.load_run(source)
    state = synthesis.merge_variables(state, loaded, source=str(source.path), into="nvs")
  elif source is not None:
    loaded, _ = init_from_lib.load_run(source)
    state = init_from_lib.merge(state, loaded, source=str(source.path),
                                only=("params/.*", "batch_stats/(nvs|head)/.*"))
  return put_statistics(state, *pose_statistics(labelled_poses(data_config)))


def init(rng: jax.Array, *, model, head, image_size: int, optim_config) -> TrainState:
  """Fresh NVS network and head; label statistics 0 / 1 until `start_from` fills them."""
  nvs_key, head_key = jax.random.split(rng)
  nvs_vars = synthesis.init_variables(model, image_size, nvs_key)
  latent = jnp.zeros((2, model.bottleneck_num_latent_points, 3))
  head_vars = head.init({"params": head_key, "dropout": head_key}, latent, False)
  params = {"nvs": nvs_vars["params"], "head": head_vars["params"]}
  stats = {"nvs": nvs_vars.get("batch_stats", {}), "head": head_vars.get("batch_stats", {}),
           STATS: {"mean": jnp.zeros((NUM_JOINTS, 3)), "std": jnp.ones((NUM_JOINTS, 3))}}
  return TrainState.create(params, optim.make_optimizer(optim_config, params), stats)


# --- steps ----------------------------------------------------------------------------------

def predict(params: PyTree, batch_stats: PyTree, images: jax.Array, train: bool,
            rng: jax.Array | None = None, *, model, head, image_size: int, supervised: bool,
            encoder_bn_train_mode: bool) -> tuple[jax.Array, PyTree]:
  """uint8 images `(B, H, W, 3)` -> (normalised head output `(B, 51)`, new batch_stats)."""
  inputs = synthesis.prepare_images(images, image_size)
  nvs_vars = {"params": params["nvs"], "batch_stats": batch_stats["nvs"]}
  new_stats = dict(batch_stats)
  if train and (supervised or encoder_bn_train_mode):
    (_, geometry), updates = synthesis.encode(model, nvs_vars, inputs, True)
    new_stats["nvs"] = updates["batch_stats"]
  else:
    _, geometry = synthesis.encode(model, nvs_vars, inputs, False)
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


def predict_pose(params: PyTree, batch_stats: PyTree, images: jax.Array, *,
                 predict_fn) -> jax.Array:
  """uint8 images -> root-relative camera-frame poses `(B, 17, 3)` mm (inference)."""
  output, _ = predict_fn(params, batch_stats, images, False)
  return denormalize_pose(output, batch_stats[STATS]["mean"], batch_stats[STATS]["std"])


def train_step(state: TrainState, batch, rng: jax.Array, *, predict_fn):
  """MSE of the normalised pose on a labelled batch (image, pose_3d_cam `(B, 17, 3)` mm)."""
  mean, std = state.batch_stats[STATS]["mean"], state.batch_stats[STATS]["std"]
  target = normalize_pose(batch["pose_3d_cam"], mean, std)

  def loss_fn(params):
    output, stats = predict_fn(params, state.batch_stats, batch["image"], True, rng)
    return jnp.mean((output - target) ** 2), (stats, output)

  (loss, (stats, output)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads, batch_stats=stats)
  train_mpjpe = metrics.mpjpe(denormalize_pose(output, mean, std),
                              root_relative(batch["pose_3d_cam"])).mean()
  return state, {"loss": loss, "mpjpe_mm": train_mpjpe}


# --- prediction on a user's images ----------------------------------------------------------

def predict_metadata(config: ml_collections.ConfigDict) -> dict:
  """What poses_3d.json says about the poses predicted from image crops."""
  return {
      "model": ("encoder and pose head trained end to end on the labels (supervised "
                "baseline)" if config.model.supervised else
                "pose head on the frozen NVS geometry latent (Rhodin et al. 2018, stage 2)"),
      "root": "root-relative: the head predicts the pose minus the pelvis, and the pelvis "
              "(joint 0) is then put exactly at the origin in every frame; a crop does not "
              "show where the person is",
      "scale": "metric as learned from the labelled training poses (mean and std undone): "
               "a crop is resized to a fixed size, so the person's real size is not seen "
               "and every pose has about the training subjects' size",
      "orientation": "the camera frame as in training, where crops were centred on the "
                     "person: a person far from the image centre is posed as if seen in it",
  }


def predict_crops(state: TrainState, crops: np.ndarray, *, pose_fn, runtime: Runtime
                  ) -> dict[str, np.ndarray]:
  """uint8 crops `(B, S, S, 3)` (the same on every process) -> {'pose_3d_mm': (B, 17, 3)}
  root-relative camera-frame mm, the pelvis at the origin."""
  poses = runtime.to_host(pose_fn(state.params, state.batch_stats, runtime.shard_whole(crops)))
  return {"pose_3d_mm": np.asarray(root_relative(poses))}


# --- the task --------------------------------------------------------------------------------

def evaluate(state: TrainState, split: str, *, config, runtime: Runtime, pose_fn) -> dict:
  """The pose table of the split (every view of every frame), Rhodin's N-MPJPE included."""
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  loader = multiview.single_views(
      config.data, split=split, global_batch_size=config.eval.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count,
      seed=config.seed, shuffle=False, num_epochs=1,
      every_nth_frame=config.data.every_nth_frame)

  def predict_fn(batch):
    images = runtime.shard_batch({"image": batch["image"]})["image"]
    return {"pose_3d": pose_fn(state.params, state.batch_stats, images)}

  return evaluation.evaluate_frames(
      predict_fn, loader, runtime, info=evaluation.SequenceInfo.from_names(
          multiview.open_multiview(config.data, split,
                                   every_nth_frame=config.data.every_nth_frame)[1].sequences),
      convention=evaluation.Convention(rhodin_n_mpjpe=True),
      max_examples=int(config.eval.max_examples), progress=bool(config.train.progress_bar),
      desc=f"nvs_pose {split}")


def train_data(config: ml_collections.ConfigDict, runtime: Runtime):
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  return multiview.single_views(
      config.data, split="train", global_batch_size=config.train.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count,
      seed=config.seed, shuffle=True, num_epochs=None,
      every_nth_frame=config.data.every_nth_frame,
      labels=multiview.Labels.from_config(config.data))


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  source = resolve_source(config)
  model = synthesis.build_model(config.model.net)
  head = build_head(config)
  size = int(config.model.net.image_size)
  model_args = dict(model=model, head=head, image_size=size)
  abstract = jax.eval_shape(functools.partial(init, **model_args, optim_config=config.optim),
                            jax.random.key(0))   # a bad optim.frozen pattern fails here
  del abstract
  predict_fn = functools.partial(predict, **model_args, supervised=bool(config.model.supervised),
                                 encoder_bn_train_mode=bool(config.model.encoder_bn_train_mode))
  pose_fn = jax.jit(functools.partial(predict_pose, predict_fn=predict_fn))
  synthesizer = None if config.model.supervised else synthesis.view_synthesizer(model, size)

  def visualize(state, out_dir: pathlib.Path, step: int):
    nvs_vars = {"params": state.params["nvs"], "batch_stats": state.batch_stats["nvs"]}

    def predict_poses(images):
      return np.asarray(pose_fn(state.params, state.batch_stats, jnp.asarray(images)))

    return nvs_pictures.draw(synthesizer, nvs_vars, config, out_dir, step,
                             predict_poses=predict_poses)

  return Task(
      init=functools.partial(init, **model_args, optim_config=config.optim),
      train_step=functools.partial(train_step, predict_fn=predict_fn),
      train_data=functools.partial(train_data, config, runtime),
      evaluate=functools.partial(evaluate, config=config, runtime=runtime, pose_fn=pose_fn),
      eval_splits=("test",), visualize=visualize,
      predict_images=functools.partial(predict_crops, pose_fn=pose_fn, runtime=runtime),
      predict_image_size=size, predict_metadata=predict_metadata(config),
      # Without a checkpoint, init_from gives a usable model only with a trained head.
      predict_from_init_from=source is not None and (source.kind == "file"
                                                     or source.task == "nvs_pose"),
      init_from=functools.partial(
          start_from, source=source, **model_args,
          encoder_weights=config.model.encoder_weights if config.model.supervised else "",
          data_config=config.data))

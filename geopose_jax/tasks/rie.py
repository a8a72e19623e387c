"""RIE (Shan et al., ACM MM 2021) and the VideoPose3D baseline: supervised video lifting.

One train step: a batch of windows pose_2d (B, T, 17, 2) (T = receptive field, normalised
screen coordinates, flipped at random by the loader) -> the centre frame's root-relative
camera-frame 3D pose (B, 17, 3) in metres; loss MPJPE (mean joint distance, root included,
as the original). AdamW with AMSGrad, weight decay 0.01, lr x0.95 per epoch, BatchNorm
momentum of the temporal convolutions 0.1 -> 0.001 over the run.

Three stages (config.stage):
  1  local encoders + global encoder + decoders on [local, global].
  2  loads stage 1's encoders (config.init_from), freezes them (added to optim.frozen),
     trains the Feature Fusion Module and new decoders on [local, fused, global].
  3  loads stage 2 (config.init_from) and fine-tunes everything (at half the learning
     rate: `optim.lr` 0 means the stage's default, 1e-3, or 5e-4 in stage 3).

Departures from the original, on purpose:
- Frozen parameters are chosen by module name (local_encoder_*, global_encoder), not as
  "the first 167 parameters"; it is the same set.
- Stage 2's frozen encoders keep the original's behaviour by default: their BatchNorm runs in
  training mode (batch statistics, running averages updated with the scheduled momentum) and
  their dropout is active. `optim.freeze_batch_stats=True` runs them in inference mode
  instead, so that stage 2 leaves the encoders entirely unchanged.
- One epoch is the original's: every training frame once unflipped and once flipped when
  flip augmentation is on (the loader flips each window with probability 1/2 instead of
  enumerating both), so the lr decays and BatchNorm momentum schedule match.
- Causal models predict the last frame of the window and use it as the reference of the
  temporal encoding and as the global encoder's input (the original keeps the centre frame).

Evaluation (geopose_jax.evaluation): one window per frame with edge padding, test-time flip
average, P1 = `mpjpe`, the mean joint distance to the root-relative ground truth (the
prediction is not re-centred, as in the original: root convention 'target'), P2 =
`pa_mpjpe` after a similarity Procrustes fit, MPJVE and the acceleration error, per action
and per sequence, in millimetres.

`config.init_from` takes an rie run (the previous stage, or the same stage to continue from)
or an original checkpoint: RIE's `.bin` (its stage and sizes are read from its keys; a
stage-3 file needs --config.stage=2 or 3) or VideoPose3D's `.bin` for `:tcn`.
"""

from __future__ import annotations

import functools
import math
import pathlib
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from geopose_jax import evaluation
from geopose_jax import protocol_eval
from geopose_jax import skeleton
from geopose_jax import temporal_inference
from geopose_jax.convert import rie as convert_lib
from geopose_jax.data import poses as poses_data
from geopose_jax.data import windows as windows_lib
from geopose_jax.errors import ConfigError, InputError
from geopose_jax.models import rie as rie_lib
from geopose_jax.models import tcn as tcn_lib
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import optim
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task

PyTree = Any
ORIGINAL_CHECKPOINT_SUFFIXES = (".bin", ".pth", ".pt", ".tar")
STAGE_LEARNING_RATES = {1: 1e-3, 2: 1e-3, 3: 5e-4}   # the original's; the tcn's is 1e-3


# --------------------------------------------------------------------------- model and schedules
def filter_widths(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  value = config.model.filter_widths
  if isinstance(value, str):
    try:
      value = [int(w) for w in value.replace(" ", "").split(",") if w]
    except ValueError:
      raise ConfigError(f"--config.model.filter_widths={value!r}: expected comma-separated odd "
                        "integers such as 3,3,3,3,3") from None
  return tcn_lib.check_filter_widths(value)


def num_joints(config: ml_collections.ConfigDict) -> int:
  """J of the model: 17 (H36M order) or 15 (HumanEva-I); 17 for runs saved before the key."""
  return int(config.model.get("num_joints", rie_lib.NUM_JOINTS))


def make_model(config: ml_collections.ConfigDict):
  """config.model.name 'rie' -> models.rie.RIE; 'tcn' -> models.tcn.TemporalConvNet."""
  m, widths = config.model, filter_widths(config)
  if m.name == "rie":
    if config.stage not in (1, 2, 3):
      raise ConfigError(f"--config.stage must be 1, 2 or 3, got {config.stage}")
    return rie_lib.RIE(filter_widths=widths, channels=m.channels, latent_dim=m.latent_dim,
                       num_joints=num_joints(config),
                       stage=config.stage, causal=m.causal, dropout=m.dropout,
                       fc_hidden=m.fc_hidden, fc_dropout=m.fc_dropout,
                       frozen_encoders=config.stage == 2 and config.optim.freeze_batch_stats)
  if m.name == "tcn":
    return tcn_lib.TemporalConvNet(filter_widths=widths, channels=m.channels, dropout=m.dropout,
                                   causal=m.causal, num_joints_out=num_joints(config))
  raise ConfigError(f"--config.model.name must be 'rie' or 'tcn', got {m.name!r}")


def encoder_patterns() -> tuple[str, ...]:
  """optim.frozen patterns of stage 2: the local and global encoders."""
  return tuple(f"{name}/.*" for name in rie_lib.ENCODER_MODULES)


def frozen_modules(frozen_patterns) -> tuple[str, ...]:
  """The top-level modules every leaf of which `optim.frozen` freezes (their backward pass
  is cut with stop_gradient)."""
  return tuple(name for name in rie_lib.ENCODER_MODULES if f"{name}/.*" in frozen_patterns)


def bn_momentum(step: jax.Array, steps_per_epoch: int, total_steps: int, start: float,
                end: float) -> jax.Array:
  """start * (end / start) ** (epoch / epochs), epoch = completed epochs (the original's)."""
  epochs = max(total_steps / steps_per_epoch, 1e-9)
  epoch = jnp.floor(jnp.asarray(step, jnp.float32) / steps_per_epoch)
  return start * jnp.exp(epoch / epochs * math.log(end / start))


def mpjpe_loss(predicted: jax.Array, target: jax.Array) -> jax.Array:
  """Mean over frames and joints of the Euclidean joint error; (B, J, 3) x2 -> ()."""
  return jnp.mean(jnp.linalg.norm(predicted - target, axis=-1))


def train_step(state: TrainState, batch, rng, *, model, frozen: tuple[str, ...],
               steps_per_epoch, total_steps: int, optim_config: ml_collections.ConfigDict):
  """(state, batch {pose_2d (B, T, 17, 2), pose_3d (B, 17, 3)}, rng) -> (state, metrics).

  Parameters of the `frozen` top-level modules get no gradient (stop_gradient, so XLA drops
  their backward pass; the optimizer gives them a zero update). `steps_per_epoch`: an int,
  or a callable returning it (known once the training split has been opened).
  """
  epoch_steps = steps_per_epoch() if callable(steps_per_epoch) else steps_per_epoch
  momentum = bn_momentum(state.step, epoch_steps, total_steps, optim_config.bn_momentum_start,
                         optim_config.bn_momentum_end)

  def loss_fn(params):
    params = {k: jax.lax.stop_gradient(v) if k in frozen else v for k, v in params.items()}
    predicted, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, batch["pose_2d"], train=True,
        bn_momentum=momentum, rngs={"dropout": rng}, mutable=["batch_stats"])
    return mpjpe_loss(predicted[:, 0], batch["pose_3d"]), updates["batch_stats"]

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads, batch_stats)
  schedule = optim.learning_rate_schedule(optim_config, epoch_steps)
  return new_state, {"loss": loss, "mpjpe_mm": 1000.0 * loss, "lr": schedule(state.step),
                     "bn_momentum": momentum}


def init_state(rng, *, model, field: int, optim_config: ml_collections.ConfigDict,
               steps_per_epoch, joints: int = rie_lib.NUM_JOINTS) -> TrainState:
  # Initialisers drawn from an RBG key: the same values for the same seed, and a program
  # XLA compiles several times faster than ~200 threefry draws.
  rng = jax.random.key(jax.random.bits(rng, (), jnp.uint32), impl="rbg")
  params_key, dropout_key = jax.random.split(rng)
  variables = model.init({"params": params_key, "dropout": dropout_key},
                         jnp.zeros((1, field, joints, 2), jnp.float32))
  epoch_steps = steps_per_epoch() if callable(steps_per_epoch) else steps_per_epoch
  tx = optim.make_optimizer(optim_config, variables["params"], steps_per_epoch=epoch_steps)
  return TrainState.create(variables["params"], tx, variables.get("batch_stats", {}))


def make_train_step(config: ml_collections.ConfigDict, steps_per_epoch):
  """The task's train step for `config` (what `build` hands to the loop)."""
  return functools.partial(train_step, model=make_model(config),
                           frozen=frozen_modules(tuple(config.optim.frozen)),
                           steps_per_epoch=steps_per_epoch,
                           total_steps=int(config.train.steps), optim_config=config.optim)


def make_init(config: ml_collections.ConfigDict, steps_per_epoch):
  """The task's init for `config`: rng -> TrainState."""
  return functools.partial(init_state, model=make_model(config),
                           field=math.prod(filter_widths(config)), optim_config=config.optim,
                           steps_per_epoch=steps_per_epoch, joints=num_joints(config))


class EpochLength:
  """Steps per epoch: `optim.steps_per_epoch`, or counted from the training split the first
  time training asks (the original's epoch: every frame, flipped and not). Evaluation never
  asks, so it never opens the training split; the optimizer's state has the same structure
  whatever the number."""

  def __init__(self, config: ml_collections.ConfigDict):
    self._config = config
    self._value = int(config.optim.steps_per_epoch) or None

  def count(self, num_train_frames: int) -> int:
    if self._value is None:
      windows = num_train_frames * (2 if self._config.data.flip else 1)
      self._value = max(1, math.ceil(windows / self._config.train.batch_size))
    return self._value

  def __call__(self) -> int:
    return self._value or 1


# --------------------------------------------------------------------------- starting points
def load_original(path: pathlib.Path, config: ml_collections.ConfigDict) -> dict:
  """An original `.bin` as our {'params', 'batch_stats'} for `config`'s model."""
  try:
    state_dict = convert_lib.load_original_state_dict(path)
  except (ValueError, ImportError, OSError) as e:
    raise InputError(f"--config.init_from={path}: {str(e).splitlines()[0]}") from None
  model = make_model(config)
  if config.model.name == "tcn":
    return convert_lib.convert_tcn(state_dict, model)
  arch = convert_lib.infer_rie_architecture(state_dict)
  # A stage-1 file feeds stage 1 or 2, a stage-2/3 file stage 2 (encoders) or 3.
  as_stage = config.stage if arch["stage"] == 3 or config.stage == 1 else 1
  return convert_lib.convert_rie(state_dict, model.clone(stage=as_stage))


def check_original_stage(path: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """A stage-3 RIE file cannot start stage 1: say which stage to ask for."""
  if config.model.name != "rie":
    return
  try:
    arch = convert_lib.infer_rie_architecture(convert_lib.load_original_state_dict(path))
  except (ValueError, ImportError, OSError) as e:
    raise InputError(f"--config.init_from={path}: {str(e).splitlines()[0]}") from None
  if arch["stage"] == 3 and config.stage == 1:
    raise ConfigError(f"--config.init_from={path} is a stage-3 RIE checkpoint: add "
                      "--config.stage=3 (or --config.stage=2 to train a new fusion on its "
                      "encoders)")
  for key in ("latent_dim", "channels"):
    if arch[key] != config.model[key]:
      raise ConfigError(f"--config.init_from={path} has model.{key}={arch[key]}; add "
                        f"--config.model.{key}={arch[key]}")
  if tuple(arch["filter_widths"]) != filter_widths(config):
    widths = ",".join(str(w) for w in arch["filter_widths"])
    raise ConfigError(f"--config.init_from={path} has filter widths {widths}; add "
                      f"--config.model.filter_widths={widths}")


def resolve_source(config: ml_collections.ConfigDict) -> init_from_lib.Source | None:
  files = ("an RIE .bin (gt_pretrained.bin, cpn_pretrained.bin)" if config.model.name == "rie"
           else "a VideoPose3D .bin")
  return init_from_lib.resolve(config.init_from, task="rie", runs=("rie",), files=(files,),
                               file_suffixes=ORIGINAL_CHECKPOINT_SUFFIXES)


def resolve_config(config: ml_collections.ConfigDict) -> None:
  """The stage's learning rate (`optim.lr` 0) and frozen encoders (stage 2)."""
  if not config.optim.lr:
    config.optim.lr = STAGE_LEARNING_RATES[config.stage] if config.model.name == "rie" else 1e-3
  if config.model.name == "rie" and config.stage == 2:
    config.optim.frozen = tuple(dict.fromkeys(tuple(config.optim.frozen) + encoder_patterns()))


def start_from(state: TrainState, *, source: init_from_lib.Source,
               config: ml_collections.ConfigDict) -> TrainState:
  """The init-from step: stage 2 takes only the encoders of its starting point; every other
  stage takes the whole network."""
  if source.kind == "file":
    loaded = load_original(source.path, config)
  else:
    saved, step = init_from_lib.load_run(source)
    logging.info("init_from %s: step %d", source.path, step)
    loaded = {"params": saved["params"], "batch_stats": saved.get("batch_stats", {})}
  stage_2 = config.model.name == "rie" and config.stage == 2
  modules = "|".join(rie_lib.ENCODER_MODULES) if stage_2 else "[^/]+"
  return init_from_lib.merge(state, loaded, source=str(source.path),
                             only=(f"params/({modules})/.*", f"batch_stats/({modules})/.*"))


# --------------------------------------------------------------------------- prediction
def predict_metadata(config: ml_collections.ConfigDict) -> dict:
  """What poses_3d.json says about RIE's (or the TCN's) poses."""
  field = math.prod(filter_widths(config))
  model = (f"RIE stage {config.stage}" if config.model.name == "rie"
           else "VideoPose3D temporal convolutions")
  return {
      "model": f"{model}, receptive field {field} frames"
               f"{' (causal)' if config.model.causal else ''}, edge-padded windows"
               f"{', test-time flip average' if config.eval.test_time_flip else ''}",
      "root": "root-relative: trained on camera-frame poses minus the pelvis, its output is "
              "used as it is (the pelvis, joint 0, near the origin; not re-centred, as in "
              "the evaluation); the model does not estimate where the person is",
      "scale": "metric, as trained (metres, written in mm)",
  }


# --------------------------------------------------------------------------- the task
def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  source = resolve_source(config)
  if config.model.name == "rie" and config.stage == 2 and source is None:
    raise ConfigError("stage 2 trains on top of stage 1's encoders: set --config.init_from to "
                      "the stage-1 workdir (or an original stage-1 checkpoint file)")
  if source is not None and source.kind == "file":
    check_original_stage(source.path, config)
  model = make_model(config)
  field = math.prod(filter_widths(config))
  causal = bool(config.model.causal)
  local_batch = runtime.local_batch_size(config.train.batch_size)
  epoch_length = EpochLength(config)

  def train_data():
    table = poses_data.load_poses(config.data, "train")
    if table.num_frames < config.train.batch_size:
      raise ConfigError(f"the training split has {table.num_frames} frames, fewer than one "
                        f"batch ({config.train.batch_size}); lower --config.train.batch_size")
    steps = epoch_length.count(table.num_frames)
    logging.info("rie: %d training frames, %d steps per epoch, %.1f epochs",
                 table.num_frames, steps, config.train.steps / steps)
    return windows_lib.temporal_windows(
        config.data, receptive_field=field, split="train",
        global_batch_size=local_batch * runtime.process_count,
        process_index=runtime.process_index, process_count=runtime.process_count,
        seed=config.data.shuffle_seed, shuffle=True, flip=bool(config.data.flip),
        causal=causal)

  joints = num_joints(config)
  protocol_eval.check_model_joints(config.eval, config.data.name, joints)
  targets = protocol_eval.eval_targets(config, tuple(config.eval.splits))
  predict_windows = temporal_inference.make_predict_windows(model, runtime, bool(config.eval.test_time_flip), joints)
  make_windows = functools.partial(windows_lib.sequence_windows, receptive_field=field,
                                   causal=causal)

  def variables_of(state):
    return {"params": state.params, "batch_stats": state.batch_stats}

  def evaluate(state, split):
    variables = variables_of(state)
    if targets[split] is not None:
      # Every frame, as the datasets' protocols score them (eval.frame_stride is for the
      # evaluator's own table).
      return protocol_eval.evaluate(
          targets[split], lambda windows: 1000.0 * predict_windows(variables, windows),
          runtime, num_joints=joints, batch_size=int(config.eval.batch_size),
          make_windows=make_windows, progress=bool(config.train.progress_bar))
    table = poses_data.load_poses(config.data, split)
    return evaluation.evaluate_sequences(
        lambda windows: predict_windows(variables, windows), temporal_inference.sequences_of(table), runtime,
        info=evaluation.SequenceInfo.from_names(table.names), make_windows=make_windows,
        batch_size=int(config.eval.batch_size), frame_stride=int(config.eval.frame_stride),
        convention=evaluation.Convention(root="target"), scale=1000.0,
        progress=bool(config.train.progress_bar), desc=f"eval {split}")

  def visualize(state, out_dir: pathlib.Path, step: int):
    from geopose_jax.viz import rie as rie_viz  # pylint: disable=g-import-not-at-top
    table = poses_data.load_poses(config.data, config.viz.split)
    try:
      s = temporal_inference.find_sequence(table, config.viz.subject, config.viz.action, config.viz.camera)
    except ValueError as e:
      logging.warning("rie: no picture drawn: %s", e)
      print(f"rie: no picture drawn: {e}", flush=True)
      return {}
    seq = temporal_inference.sequences_of(table)[s]
    frames = np.arange(0, len(seq.pose_2d), max(1, int(config.viz.downsample)))
    frames = frames[:config.viz.max_frames] if config.viz.max_frames > 0 else frames
    windows = make_windows(seq.pose_2d, frames)
    padded = -(-len(windows) // runtime.mesh.devices.size) * runtime.mesh.devices.size
    windows = np.concatenate([windows, np.repeat(windows[-1:], padded - len(windows), 0)])
    predicted = predict_windows(variables_of(state), windows)[:len(frames)]
    pose_2d, truth = seq.pose_2d[frames], seq.pose_3d[frames]
    if joints == skeleton.HUMANEVA_NUM_JOINTS:
      # Drawn as H36M-17 skeletons (Spine and Neck/Nose at midpoints).
      pose_2d, predicted, truth = (skeleton.humaneva_to_h36m(x)
                                   for x in (pose_2d, predicted, truth))
    out_dir.mkdir(parents=True, exist_ok=True)
    subject, action = table.names[s][0], table.names[s][1]
    name = f"{subject}_{action}_cam{config.viz.camera}".replace(" ", "_")
    titles = [f"{subject} {action} cam {config.viz.camera} frame {f}" for f in frames]
    path = rie_viz.write_sequence_gif(out_dir / f"{name}_step{step}.gif", pose_2d,
                                      predicted, truth, fps=config.viz.fps, titles=titles)
    logging.info("wrote %s", path)
    radius = float(np.abs(truth).max()) * 1.1 + 1e-6
    return {"sequence": rie_viz.render_frame(
        pose_2d[0], predicted[0], truth[0], radius, title=titles[0],
        view_2d=rie_viz.sequence_view_2d(pose_2d))}

  def predict(state, sequence):
    variables = variables_of(state)
    return temporal_inference.predict_keypoints(
        sequence, predict_windows=lambda windows: predict_windows(variables, windows),
        make_windows=make_windows, runtime=runtime, batch_size=int(config.eval.batch_size),
        progress=bool(config.train.progress_bar))

  return Task(
      init=make_init(config, epoch_length), train_step=make_train_step(config, epoch_length),
      train_data=train_data, evaluate=evaluate, eval_splits=tuple(targets),
      visualize=None if config.eval.dataset else visualize,   # pictures of its own data
      init_from=(functools.partial(start_from, source=source, config=config)
                 if source is not None else None),
      predict=predict, predict_metadata=predict_metadata(config))

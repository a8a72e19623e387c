"""RIE (Shan et al., ACM MM 2021) and the VideoPose3D baseline: supervised video lifting.

One train step: a batch of windows pose_2d (B, T, 17, 2) (T = receptive field, normalised
screen coordinates, flipped at random by the loader) -> the centre frame's root-relative
camera-frame 3D pose (B, 17, 3) in metres; loss MPJPE (mean joint distance, root included,
as the original). AdamW with AMSGrad, weight decay 0.01, lr x0.95 per epoch, BatchNorm
momentum of the temporal convolutions 0.1 -> 0.001 over the run.

Three stages (config.stage):
  1  local encoders + global encoder + decoders on [local, global].
  2  loads stage 1's encoders (config.init_from), freezes them, trains the Feature Fusion
     Module and new decoders on [local, fused, global].
  3  loads stage 2 (config.init_from) and fine-tunes everything (config.optim.finetune_lr).

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

Evaluation (Task.evaluate): one window per frame with edge padding, test-time flip average,
P1 = mean joint distance to the root-relative ground truth (the prediction is not re-centred,
as in the original), P2 = after a similarity Procrustes fit, aggregated per action
(metrics.h36m_protocol), in millimetres.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Callable

from absl import logging
import flax
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from geopose_jax import metrics
from geopose_jax import skeleton
from geopose_jax.convert import rie as convert_lib
from geopose_jax.data import poses as poses_lib
from geopose_jax.data import windows as windows_lib
from geopose_jax.models import rie as rie_lib
from geopose_jax.models import tcn as tcn_lib
from geopose_jax.train import checkpoint as checkpoint_lib
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task

PyTree = Any
ORIGINAL_CHECKPOINT_SUFFIXES = (".bin", ".pth", ".pt", ".tar")


# --------------------------------------------------------------------------- model and schedules
def filter_widths(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  value = config.model.filter_widths
  if isinstance(value, str):
    try:
      value = [int(w) for w in value.replace(" ", "").split(",") if w]
    except ValueError:
      raise ValueError(f"--config.model.filter_widths={value!r}: expected comma-separated odd "
                       "integers such as 3,3,3,3,3") from None
  return tcn_lib.check_filter_widths(value)


def make_model(config: ml_collections.ConfigDict):
  """config.model.name 'rie' -> models.rie.RIE; 'tcn' -> models.tcn.TemporalConvNet."""
  m, widths = config.model, filter_widths(config)
  if m.name == "rie":
    if config.stage not in (1, 2, 3):
      raise ValueError(f"--config.stage must be 1, 2 or 3, got {config.stage}")
    return rie_lib.RIE(filter_widths=widths, channels=m.channels, latent_dim=m.latent_dim,
                       stage=config.stage, causal=m.causal, dropout=m.dropout,
                       fc_hidden=m.fc_hidden, fc_dropout=m.fc_dropout,
                       frozen_encoders=config.stage == 2 and config.optim.freeze_batch_stats)
  if m.name == "tcn":
    return tcn_lib.TemporalConvNet(filter_widths=widths, channels=m.channels, dropout=m.dropout,
                                   causal=m.causal)
  raise ValueError(f"--config.model.name must be 'rie' or 'tcn', got {m.name!r}")


def frozen_modules(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return rie_lib.ENCODER_MODULES if config.model.name == "rie" and config.stage == 2 else ()


def bn_momentum(step: jax.Array, steps_per_epoch: int, total_steps: int, start: float,
                end: float) -> jax.Array:
  """start * (end / start) ** (epoch / epochs), epoch = completed epochs (the original's)."""
  epochs = max(total_steps / steps_per_epoch, 1e-9)
  epoch = jnp.floor(jnp.asarray(step, jnp.float32) / steps_per_epoch)
  return start * jnp.exp(epoch / epochs * math.log(end / start))


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int,
                   labels: PyTree) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW (AMSGrad, decoupled weight decay) with lr x decay per epoch; frozen leaves get 0."""
  o = config.optim
  lr = o.finetune_lr if config.model.name == "rie" and config.stage == 3 else o.lr
  schedule = optax.exponential_decay(lr, transition_steps=steps_per_epoch,
                                     decay_rate=o.lr_decay, staircase=True)
  adamw = optax.chain(optax.scale_by_amsgrad() if o.amsgrad else optax.scale_by_adam(),
                      optax.add_decayed_weights(o.weight_decay),
                      optax.scale_by_learning_rate(schedule))
  return optax.multi_transform({"train": adamw, "frozen": optax.set_to_zero()}, labels), schedule


def mpjpe_loss(predicted: jax.Array, target: jax.Array) -> jax.Array:
  """Mean over frames and joints of the Euclidean joint error; (B, J, 3) x2 -> ()."""
  return jnp.mean(jnp.linalg.norm(predicted - target, axis=-1))


def flip_averaged(predict: Callable[[jax.Array], jax.Array], pose_2d: jax.Array) -> jax.Array:
  """Test-time augmentation: mean of predict(x) and flip(predict(flip(x))).

  predict: (B, T, 17, 2) -> (B, 17, 3). Equal to predict(x) for a flip-equivariant predictor.
  """
  return 0.5 * (predict(pose_2d) + skeleton.flip_pose(predict(skeleton.flip_pose(pose_2d))))


def frame_windows(sequence_2d: np.ndarray, frames: np.ndarray, field: int,
                  causal: bool) -> np.ndarray:
  """(N, 17, 2), (F,) frame indices -> (F, field, 17, 2) windows with edge padding.

  Frame f is at the window's centre (causal: its last position).
  """
  before = field - 1 if causal else field // 2
  index = np.clip(frames[:, None] - before + np.arange(field)[None, :], 0, len(sequence_2d) - 1)
  return sequence_2d[index]


def make_train_step(model, frozen: tuple[str, ...], steps_per_epoch: int, total_steps: int,
                    optim: ml_collections.ConfigDict, lr_schedule: optax.Schedule):
  """(state, batch {pose_2d (B, T, 17, 2), pose_3d (B, 17, 3)}, rng) -> (state, metrics).

  Parameters of the `frozen` top-level modules get no gradient (stop_gradient, so XLA drops
  their backward pass) and a zero update.
  """

  def train_step(state: TrainState, batch, rng):
    momentum = bn_momentum(state.step, steps_per_epoch, total_steps, optim.bn_momentum_start,
                           optim.bn_momentum_end)

    def loss_fn(params):
      params = {k: jax.lax.stop_gradient(v) if k in frozen else v for k, v in params.items()}
      predicted, updates = model.apply(
          {"params": params, "batch_stats": state.batch_stats}, batch["pose_2d"], train=True,
          bn_momentum=momentum, rngs={"dropout": rng}, mutable=["batch_stats"])
      return mpjpe_loss(predicted[:, 0], batch["pose_3d"]), updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, batch_stats)
    return new_state, {"loss": loss, "mpjpe_mm": 1000.0 * loss, "lr": lr_schedule(state.step),
                       "bn_momentum": momentum}

  return train_step


def trainable_labels(params: PyTree, frozen: tuple[str, ...]) -> PyTree:
  """The optimizer labels: 'frozen' for leaves under the `frozen` top-level modules."""
  return {k: jax.tree.map(lambda _, k=k: "frozen" if k in frozen else "train", v)
          for k, v in params.items()}


# --------------------------------------------------------------------------- starting points
def _flat(tree: PyTree) -> dict:
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)) if tree else {}


def host_array(value: np.ndarray) -> jax.Array:
  """A host array brought in at run time, not embedded in the program: under `jax.jit` a
  closed-over 40 M-parameter checkpoint would otherwise become a constant XLA must fold."""
  return jax.pure_callback(lambda: value, jax.ShapeDtypeStruct(value.shape, value.dtype))


def merge_variables(fresh: dict, loaded: dict, modules: tuple[str, ...] | None,
                    source: str) -> dict:
  """Overwrites `fresh` {'params', 'batch_stats'} with `loaded`'s leaves of `modules` (None:
  all); every overwritten leaf must exist in `loaded` with the same shape."""
  out, problems = {}, []
  for collection in ("params", "batch_stats"):
    have = _flat(loaded.get(collection, {}))
    merged = dict(_flat(fresh.get(collection, {})))
    for path, value in merged.items():
      if modules is not None and path[0] not in modules:
        continue
      if path not in have:
        problems.append(f"missing {collection}/{'/'.join(path)}")
      elif tuple(np.shape(have[path])) != tuple(np.shape(value)):
        problems.append(f"{collection}/{'/'.join(path)} has shape {np.shape(have[path])}, "
                        f"the model wants {np.shape(value)}")
      else:
        merged[path] = host_array(np.asarray(have[path], dtype=value.dtype))
    out[collection] = flax.traverse_util.unflatten_dict(merged)
  if problems:
    raise ValueError(f"init_from {source}: the checkpoint does not fit this model "
                     f"(stage, model.* sizes must match the run it came from):\n  "
                     + "\n  ".join(problems[:20]))
  return out


def load_init_variables(config: ml_collections.ConfigDict, model) -> dict | None:
  """The {'params', 'batch_stats'} to start from, read from config.init_from (or None)."""
  path = str(config.init_from)
  if not path:
    return None
  if path.endswith(ORIGINAL_CHECKPOINT_SUFFIXES):
    state_dict = convert_lib.load_original_state_dict(path)
    if config.model.name == "tcn":
      return convert_lib.convert_tcn(state_dict, model)
    arch = convert_lib.infer_rie_architecture(state_dict)
    # A stage-1 file feeds stage 1 or 2, a stage-2/3 file stage 2 (encoders) or 3.
    as_stage = config.stage if arch["stage"] == 3 or config.stage == 1 else 1
    source_model = model.clone(stage=as_stage)
    return convert_lib.convert_rie(state_dict, source_model)
  state, step = checkpoint_lib.load_state_dict(path)
  logging.info("init_from %s: step %d", path, step)
  return {"params": state["params"], "batch_stats": state.get("batch_stats", {})}


# --------------------------------------------------------------------------- data
def load_sequences(config: ml_collections.ConfigDict, split: str) -> list[dict]:
  """Whole sequences of one split of `h36m_poses` (every process gets all of them): dicts with
  pose_2d (N, 17, 2) normalised, pose_3d (N, 17, 3) root-relative camera frame (m), subject,
  action, camera (index 0-3)."""
  table = poses_lib.load_poses(config.data, split)
  out = []
  for s, (subject, action, _, _) in enumerate(table.names):
    frames = slice(table.start[s], table.start[s] + table.length[s])
    pose_3d = table.pose_3d_cam[frames]
    out.append(dict(pose_2d=table.pose_2d[frames], pose_3d=pose_3d - pose_3d[:, :1],
                    subject=subject, action=action, camera=int(table.camera[s])))
  return out


class WindowSource:
  """Random access to (window (field, 17, 2), centre pose (17, 3)) of every frame."""

  def __init__(self, sequences: list[dict], field: int, causal: bool):
    self._sequences = sequences
    self._field, self._causal = field, causal
    lengths = [len(s["pose_2d"]) for s in sequences]
    self._starts = np.concatenate([[0], np.cumsum(lengths)])

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __getitem__(self, index: int) -> dict:
    seq_index = int(np.searchsorted(self._starts, index, side="right") - 1)
    seq, frame = self._sequences[seq_index], index - self._starts[seq_index]
    window = frame_windows(seq["pose_2d"], np.array([frame]), self._field, self._causal)[0]
    return {"pose_2d": window, "pose_3d": seq["pose_3d"][frame]}


def _random_flip(example: dict, rng: np.random.Generator) -> dict:
  if rng.random() < 0.5:
    return {k: np.asarray(skeleton.flip_pose(v), np.float32) for k, v in example.items()}
  return example


def train_windows(config: ml_collections.ConfigDict, field: int, causal: bool, local_batch: int,
                  process_index: int, process_count: int):
  """(checkpointable iterator of {pose_2d (b, field, 17, 2), pose_3d (b, 17, 3), ...},
  number of training frames). Shuffled, repeated, sharded over hosts, flipped at random.

  Centred windows come from geopose_jax.data.windows; causal windows (ending at the target
  frame), which that loader does not make, from `WindowSource`.
  """
  if not causal:
    data_config = ml_collections.ConfigDict(config.data.to_dict())
    data_config.receptive_field = field
    loader = windows_lib.rie_windows(
        data_config, split="train", global_batch_size=local_batch * process_count,
        process_index=process_index, process_count=process_count,
        seed=config.data.shuffle_seed, shuffle=True, flip=bool(config.data.flip))
    return loader, poses_lib.load_poses(config.data, "train").num_frames
  source = WindowSource(load_sequences(config, "train"), field, causal)
  if len(source) < local_batch * process_count:
    raise ValueError(f"the training split has {len(source)} frames, fewer than one batch "
                     f"({local_batch * process_count}); lower --config.train.batch_size")
  dataset = grain.MapDataset.source(source).shuffle(seed=config.data.shuffle_seed).repeat()
  dataset = dataset[process_index::process_count]
  if config.data.flip:
    dataset = dataset.random_map(_random_flip, seed=config.data.shuffle_seed + 1)
  return dataset.batch(local_batch, drop_remainder=True).to_iter_dataset(), len(source)


def find_sequence(sequences: list[dict], subject: str, action: str, camera: int) -> dict:
  """The sequence with this subject, action and camera index (the first such)."""
  for seq in sequences:
    if seq["subject"] == subject and seq["action"] == action and seq["camera"] == camera:
      return seq
  have = sorted({(s["subject"], s["action"]) for s in sequences})
  raise ValueError(f"no sequence of subject {subject!r}, action {action!r}, camera "
                   f"{camera}; set --config.viz.subject/action/camera to one of {have}")


# --------------------------------------------------------------------------- the task
def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  model = make_model(config)
  widths = filter_widths(config)
  field = math.prod(widths)
  causal = bool(config.model.causal)
  if config.model.name == "rie" and config.stage == 2 and not config.init_from:
    raise ValueError("stage 2 trains on top of stage 1's encoders: set --config.init_from to "
                     "the stage-1 workdir (or an original stage-1 checkpoint file)")
  loaded = load_init_variables(config, model)
  # Stage 2 takes only the encoders of its starting point; everything else takes it all.
  modules = rie_lib.ENCODER_MODULES if config.model.name == "rie" and config.stage == 2 else None

  local_batch = runtime.local_batch_size(config.train.batch_size)
  train_data, num_train_frames = train_windows(config, field, causal, local_batch,
                                                        runtime.process_index,
                                                        runtime.process_count)
  windows_per_epoch = num_train_frames * (2 if config.data.flip else 1)
  steps_per_epoch = int(config.optim.steps_per_epoch) or max(
      1, math.ceil(windows_per_epoch / config.train.batch_size))
  total_steps = int(config.train.steps)
  frozen = frozen_modules(config)
  rngs = lambda rng: dict(zip(("params", "dropout"), jax.random.split(rng)))
  dummy = jnp.zeros((1, field, 17, 2), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(rngs(jax.random.key(0)), dummy))
  tx, lr_schedule = make_optimizer(config, steps_per_epoch, trainable_labels(shapes["params"], frozen))
  logging.info("rie: %d training frames, %d steps per epoch, %.1f epochs, %d parameters",
               num_train_frames, steps_per_epoch, total_steps / steps_per_epoch,
               tcn_lib.count_parameters(shapes["params"]))

  def init(rng):
    # Initialisers drawn from an RBG key: the same values for the same seed, and a program
    # XLA compiles several times faster than ~200 threefry draws.
    rng = jax.random.key(jax.random.bits(rng, (), jnp.uint32), impl="rbg")
    variables = model.init(rngs(rng), dummy)
    if loaded is not None:
      variables = merge_variables(variables, loaded, modules, str(config.init_from))
    return TrainState.create(variables["params"], tx, variables.get("batch_stats", {}))

  train_step = make_train_step(model, frozen, steps_per_epoch, total_steps, config.optim,
                               lr_schedule)

  def predict_fn(variables, pose_2d):
    plain = lambda x: model.apply(variables, x, train=False)[:, 0]
    return flip_averaged(plain, pose_2d) if config.eval.test_time_flip else plain(pose_2d)

  with runtime.mesh:
    predict = jax.jit(predict_fn, in_shardings=(runtime.replicated, runtime.data_sharding),
                      out_shardings=runtime.replicated)

  def predict_frames(state, sequence_2d: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(N, 17, 2) sequence, (F,) frames -> (F, 17, 3) predictions (metres)."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    batch = int(config.eval.batch_size)
    local = runtime.local_batch_size(batch)
    out = []
    for start in range(0, len(frames), batch):
      chunk = frames[start:start + batch]
      windows = frame_windows(sequence_2d, chunk, field, causal)
      padded = np.zeros((batch,) + windows.shape[1:], np.float32)
      padded[:len(chunk)] = windows
      mine = padded[runtime.process_index * local:(runtime.process_index + 1) * local]
      x = jax.make_array_from_process_local_data(runtime.data_sharding, mine)
      with runtime.mesh:
        out.append(np.asarray(jax.device_get(predict(variables, x)))[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, 17, 3), np.float32)

  cache: dict[str, list[dict]] = {}

  def sequences(split: str) -> list[dict]:
    if split not in cache:
      cache[split] = load_sequences(config, split)
    return cache[split]

  def evaluate(state, split):
    errors = {"mpjpe": [], "pa_mpjpe": []}
    actions = []
    stride = max(1, int(config.eval.frame_stride))
    for seq in sequences(split):
      frames = np.arange(0, len(seq["pose_2d"]), stride)
      predicted = predict_frames(state, seq["pose_2d"], frames)
      target = seq["pose_3d"][frames]
      errors["mpjpe"].append(1000.0 * metrics.mpjpe(predicted, target, root=None))
      errors["pa_mpjpe"].append(1000.0 * metrics.pa_mpjpe(predicted, target))
      actions += [seq["action"]] * len(frames)
    if not actions:
      raise ValueError(f"split {split!r} of the {config.data.name} data holds no frames")
    return metrics.h36m_protocol({k: np.concatenate(v) for k, v in errors.items()}, actions)

  def visualize(state, out_dir: pathlib.Path, step: int):
    from geopose_jax.viz import rie as viz_lib  # pylint: disable=g-import-not-at-top
    try:
      seq = find_sequence(sequences(config.viz.split), config.viz.subject, config.viz.action,
                          config.viz.camera)
    except ValueError as e:
      logging.warning("rie: no picture drawn: %s", e)
      print(f"rie: no picture drawn: {e}", flush=True)
      return {}
    frames = np.arange(0, len(seq["pose_2d"]), max(1, int(config.viz.downsample)))
    frames = frames[:config.viz.max_frames] if config.viz.max_frames > 0 else frames
    predicted = predict_frames(state, seq["pose_2d"], frames)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{seq['subject']}_{seq['action']}_cam{config.viz.camera}".replace(" ", "_")
    titles = [f"{seq['subject']} {seq['action']} cam {config.viz.camera} frame {f}" for f in frames]
    path = viz_lib.write_sequence_gif(out_dir / f"{name}_step{step}.gif", seq["pose_2d"][frames],
                                      predicted, seq["pose_3d"][frames], fps=config.viz.fps,
                                      titles=titles)
    logging.info("wrote %s", path)
    radius = float(np.abs(seq["pose_3d"][frames]).max()) * 1.1 + 1e-6
    return {"sequence": viz_lib.render_frame(
        seq["pose_2d"][frames[0]], predicted[0], seq["pose_3d"][frames[0]], radius,
        title=titles[0], view_2d=viz_lib.sequence_view_2d(seq["pose_2d"][frames]))}

  return Task(init=init, train_step=train_step, train_data=train_data, evaluate=evaluate,
              eval_splits=tuple(config.eval.splits), visualize=visualize)

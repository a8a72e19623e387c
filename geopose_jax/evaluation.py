"""The one pose evaluator: a prediction function and a loader in, metric tables out.

Every task that predicts 3D joints evaluates through here, so every table means the same:

    evaluate_frames(predict_fn, batches, runtime, info=..., convention=...)
        per-frame models (lifter, nvs_pose, smpl): batches of a finite loader;
    evaluate_sequences(predict_windows, sequences, runtime, info=..., make_windows=...)
        temporal models (RIE, TCN): whole sequences, one window per frame, which also gives
        the velocity (MPJVE) and acceleration errors.

The per-frame errors (`frame_errors`, `sequence_errors`), the table (`summarize`) and the
two drivers stay in one module so that what a table means is read in one place.

Both return the Human3.6M-style table: each metric frame-weighted within an action and
unweighted over actions (`metrics.h36m_protocol`), `per_action` and `per_sequence`
entries, and a `convention` entry that says how the numbers were computed:

- `root`: 'both' (default) centres the prediction and the target on their own root joint
  before comparing; 'target' (VideoPose3D's Protocol #1 as its code computes it) zeroes the
  target's root only and uses the prediction as it is, so a model that predicts a non-zero
  root is charged for it.
- `mpjpe`: mean per-joint position error (mm); `n_mpjpe`: after the least-squares scale of
  the root-centred prediction (VideoPose3D's N-MPJPE); `n_mpjpe_rhodin`: the same error
  averaged over the J - 1 non-root joints (Rhodin et al.'s 17/16 factor), reported where a
  method's paper uses it; `pa_mpjpe`: after a similarity Procrustes fit (Protocol #2);
  `pck` (< 150 mm) and `auc` (0-150 mm) in percent, root-centred; `mpjve`: mean per-joint
  velocity error (mm/frame, VideoPose3D's); `accel_error`: mean per-joint error of the
  second differences (mm/frame^2).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import numpy as np
import tqdm

from geopose_jax import metrics
from geopose_jax import skeleton
from geopose_jax.errors import GeoposeError

ROOT_CONVENTIONS = ("both", "target")


class NonFinitePredictionError(GeoposeError, FloatingPointError):
  """The model predicted NaN or Inf: its weights diverged (no metric is meaningful)."""
SCALE_FREE_METRICS = ("n_mpjpe", "pa_mpjpe")


@dataclasses.dataclass(frozen=True)
class Convention:
  """How predictions are compared with targets; written into every table.

  Attributes:
    root: 'both' or 'target' (see the module docstring).
    rhodin_n_mpjpe: also report `n_mpjpe_rhodin` (N-MPJPE times J / (J - 1)).
    joints: the joint set, e.g. 'H36M-17' or 'SMPL-H36M-14'.
    notes: anything else a reader of the table must know (how a scale-free prediction was
      brought to millimetres, ...).
  """
  root: str = "both"
  rhodin_n_mpjpe: bool = False
  joints: str = "H36M-17"
  notes: tuple[str, ...] = ()

  def __post_init__(self):
    if self.root not in ROOT_CONVENTIONS:
      raise ValueError(f"root convention must be one of {ROOT_CONVENTIONS}, got {self.root!r}")

  def describe(self) -> dict[str, Any]:
    root = ("prediction and target each centred on their root joint" if self.root == "both"
            else "target's root zeroed, prediction used as is (VideoPose3D Protocol #1)")
    out: dict[str, Any] = {
        "root": root, "joints": self.joints,
        "n_mpjpe": "least-squares scale of the root-centred prediction, mean over all joints"}
    if self.rhodin_n_mpjpe:
      out["n_mpjpe_rhodin"] = "n_mpjpe averaged over the non-root joints (x J/(J-1), Rhodin)"
    if self.notes:
      out["notes"] = list(self.notes)
    return out


def frame_errors(pred: np.ndarray, target: np.ndarray,
                 convention: Convention = Convention()) -> dict[str, np.ndarray]:
  """Per-frame metrics of `(N, J, 3)` predictions against `(N, J, 3)` targets (same units).

  Returns {metric: (N,)} (see the module docstring), in the inputs' units; pck/auc in %.
  """
  pred = np.asarray(pred, np.float64)
  target = np.asarray(target, np.float64)
  if pred.shape != target.shape or pred.ndim != 3:
    raise ValueError(f"predictions {pred.shape} and targets {target.shape} must both be "
                     "(N, J, 3)")
  if not np.all(np.isfinite(pred)):
    bad = int(np.sum(~np.all(np.isfinite(pred), axis=(1, 2))))
    raise NonFinitePredictionError(
        f"{bad} of {len(pred)} predicted poses are NaN or Inf: the model's weights diverged; "
        "evaluate an earlier checkpoint or retrain with a lower learning rate")
  target_rr = target - target[:, :1]
  pred_rr = pred - pred[:, :1]
  scaled = scale_to(pred_rr, target_rr)
  compared = pred_rr if convention.root == "both" else pred
  errors = {
      "mpjpe": metrics.mpjpe(compared, target_rr, root=None),
      "n_mpjpe": metrics.mpjpe(scaled, target_rr, root=None),
      "pa_mpjpe": metrics.pa_mpjpe(pred, target),
      "pck": metrics.pck(compared, target_rr, root=None),
      "auc": metrics.auc(compared, target_rr, root=None),
  }
  if convention.rhodin_n_mpjpe:
    errors["n_mpjpe_rhodin"] = metrics.n_mpjpe(pred, target, root=0,
                                               exclude_root_from_mean=True)
  return {k: np.asarray(v, np.float64) for k, v in errors.items()}


def scale_to(pred_rr: np.ndarray, target_rr: np.ndarray) -> np.ndarray:
  """`(N, J, 3)` root-centred predictions times s = <p, g> / <p, p>, per frame."""
  scale = (np.sum(pred_rr * target_rr, axis=(1, 2))
           / np.maximum(np.sum(pred_rr * pred_rr, axis=(1, 2)), 1e-12))
  return scale[:, None, None] * pred_rr


def sequence_errors(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
  """Velocity and acceleration errors of one sequence's consecutive `(T, J, 3)` frames.

  Both are root-relative (each pose centred on its root), as VideoPose3D computes MPJVE.

  Returns {'mpjve': (T,), 'accel_error': (T,)}: the value at frame t uses the finite
  differences that end at t (the first frame repeats the second's, the first two frames the
  third's), so each frame carries one value and a sequence's mean is the mean over its
  differences. Sequences shorter than 3 frames get NaN for what they cannot define.
  """
  pred = np.asarray(pred, np.float64)
  target = np.asarray(target, np.float64)
  p = pred - pred[:, :1]
  g = target - target[:, :1]
  out = {}
  for name, order in (("mpjve", 1), ("accel_error", 2)):
    if len(p) <= order:
      out[name] = np.full(len(p), np.nan)
      continue
    diff = np.diff(p, n=order, axis=0) - np.diff(g, n=order, axis=0)
    per_step = np.mean(np.linalg.norm(diff, axis=-1), axis=-1)       # (T - order,)
    out[name] = np.concatenate([np.full(order, per_step[0]), per_step])
  return out


@dataclasses.dataclass(frozen=True)
class SequenceInfo:
  """Names of the sequences a loader's `sequence` codes index.

  Attributes:
    labels: (S,) a readable name per sequence, e.g. 'S9 Walking 1 (54138969)'.
    actions: (S,) the action each belongs to (the per-action table's rows); a dataset
      without actions passes its sequence names (then each sequence is its own row).
  """
  labels: tuple[str, ...]
  actions: tuple[str, ...]

  def __post_init__(self):
    if len(self.labels) != len(self.actions):
      raise ValueError("SequenceInfo: one action per sequence label")

  @classmethod
  def from_names(cls, names: Sequence[Sequence[str]]) -> "SequenceInfo":
    """From (subject, action, sequence[, camera]) per sequence, as the pose tables and the
    multi-view index list them: label 'subject sequence [camera]', grouped by action (the
    builders give a free sequence name, 'Dance', itself as its action; a sequence with no
    action is its own row)."""
    labels = tuple(" ".join(str(part) for i, part in enumerate(name) if i != 1)
                   for name in names)
    return cls(labels=labels, actions=tuple(str(name[1]) or str(name[2]) for name in names))


def summarize(errors: Mapping[str, np.ndarray], sequence: np.ndarray, info: SequenceInfo,
              convention: Convention = Convention(), decimals: int = 1) -> dict[str, Any]:
  """Per-frame errors `(N,)` of frames of `sequence` codes `(N,)` -> the result table.

  Returns the `metrics.h36m_protocol` table over actions, plus `per_sequence`
  ({label: {metric: frame mean, num_frames}}) and `convention`.
  """
  sequence = np.asarray(sequence, np.int64).reshape(-1)
  if not len(sequence):
    raise ValueError("no valid frame to evaluate")
  actions = np.asarray(info.actions, dtype=object)[sequence]
  finite = {k: np.asarray(v, np.float64) for k, v in errors.items()}
  defined = {k: v for k, v in finite.items() if np.all(np.isfinite(v))}
  result = metrics.h36m_protocol(defined, actions, decimals)
  for name, v in finite.items():
    # A metric some frames cannot define (the velocity of a 1-frame sequence) is averaged
    # over the frames that define it.
    keep = np.isfinite(v)
    if name not in defined and keep.any():
      partial = metrics.h36m_protocol({name: v[keep]}, actions[keep], decimals)
      result[name] = partial[name]
      for action, entry in partial["per_action"].items():
        result["per_action"][action][name] = entry[name]
  per_sequence = {}
  for code in np.unique(sequence):
    selected = sequence == code
    entry = {k: round(float(np.mean(v[selected])), decimals) for k, v in finite.items()
             if np.isfinite(v[selected]).all()}
    entry["num_frames"] = int(np.sum(selected))
    per_sequence[info.labels[code]] = entry
  result["per_sequence"] = per_sequence
  result["convention"] = convention.describe()
  return result


def flip_average(predict: Callable[[Any], Any], flip_input: Callable[[Any], Any],
                 flip_output: Callable[[Any], Any] = skeleton.flip_pose
                 ) -> Callable[[Any], Any]:
  """Test-time flip augmentation: x -> mean of predict(x) and flip(predict(flip(x))).

  `flip_input` mirrors an input (e.g. `skeleton.flip_pose` for `(..., 17, 2)` poses; an
  image flip for image models) and `flip_output` a `(..., 17, 3)` prediction. For a
  flip-equivariant predictor the average equals predict(x).
  """

  def averaged(x):
    return 0.5 * (predict(x) + flip_output(predict(flip_input(x))))

  return averaged


# ------------------------------------------------------------------------------ drivers
def _host_global(x, runtime) -> np.ndarray:
  """A prediction for the global batch -> numpy on this process (gathering a global jax
  array that spans several processes)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return runtime.to_host(x)
  return np.asarray(x)


class _Progress:
  """A tqdm bar over evaluation batches on the main process only."""

  def __init__(self, total: int | None, desc: str, enabled: bool):
    self._bar = tqdm.tqdm(total=total, desc=desc, unit="batch", leave=False,
                          disable=not enabled, dynamic_ncols=True)

  def update(self):
    self._bar.update(1)

  def close(self):
    self._bar.close()


def evaluate_frames(predict_fn: Callable[[Mapping[str, np.ndarray]], Any],
                    batches: Iterable[Mapping[str, np.ndarray]], runtime, *,
                    info: SequenceInfo, convention: Convention = Convention(),
                    target_key: str = "pose_3d_cam", max_examples: int = 0,
                    extra_metrics: Sequence[str] = (), extra_poses: Sequence[str] = (),
                    progress: bool = True, desc: str = "eval", decimals: int = 1
                    ) -> dict[str, Any]:
  """Evaluates a per-frame model on every frame of a finite loader.

  Args:
    predict_fn: a process-local batch -> {'pose_3d': `(B, J, 3)` predictions for the
      GLOBAL batch in the targets' units, plus any `extra_metrics` as `(B,)` per-frame
      values}: either computed on the gathered batch (`runtime.gather_local`), or on the
      sharded one (`runtime.shard_batch`), returning arrays sharded over `data`; both are
      brought to the host here, on every process.
    batches: process-local batches with `target_key` `(b, J, 3)`, `valid` `(b,)` and
      `sequence` `(b,)` int codes into `info`.
    runtime: the run's `Runtime` (gathering across hosts).
    info: the names of the sequence codes.
    convention: see `Convention`.
    max_examples: stop after this many global items (0: all).
    extra_metrics: names of per-frame values predict_fn adds (e.g. 'silhouette_iou').
    extra_poses: names of other `(B, J, 3)` predictions predict_fn adds (a baseline, an
      ablation); each is reported by its scale-free errors as `<name>_n_mpjpe` and
      `<name>_pa_mpjpe`.
    decimals: rounding of the table's values (an IoU needs more than 1).

  Returns:
    the `summarize` table.
  """
  parts: dict[str, list[np.ndarray]] = {}
  seen = 0
  bar = _Progress(None, desc, progress and runtime.process_index == 0)
  try:
    for batch in batches:
      out = {k: _host_global(v, runtime) for k, v in predict_fn(batch).items()}
      pred = out["pose_3d"]
      valid = runtime.gather_local(batch["valid"]).astype(bool)
      target = runtime.gather_local(batch[target_key])
      sequence = runtime.gather_local(batch["sequence"])
      for name, value in frame_errors(pred[valid], target[valid], convention).items():
        parts.setdefault(name, []).append(value)
      for name in extra_metrics:
        parts.setdefault(name, []).append(out[name][valid])
      for name in extra_poses:
        other = frame_errors(out[name][valid], target[valid], convention)
        for metric in SCALE_FREE_METRICS:
          parts.setdefault(f"{name}_{metric}", []).append(other[metric])
      parts.setdefault("_sequence", []).append(sequence[valid])
      seen += len(valid)
      bar.update()
      if max_examples and seen >= max_examples:
        break
  finally:
    bar.close()
  if not parts or not sum(len(p) for p in parts["_sequence"]):
    raise ValueError("the evaluation split holds no valid frame")
  joined = {k: np.concatenate(v) for k, v in parts.items()}
  return summarize({k: v for k, v in joined.items() if k != "_sequence"},
                   joined["_sequence"], info, convention, decimals)


@dataclasses.dataclass(frozen=True)
class Sequence2D:
  """One whole sequence to lift: `pose_2d` `(T, ...)` inputs and `pose_3d` `(T, J, 3)`
  targets (any fixed unit), and its code in the `SequenceInfo`."""
  pose_2d: np.ndarray
  pose_3d: np.ndarray
  code: int


def evaluate_sequences(predict_windows: Callable[[np.ndarray], np.ndarray],
                       sequences: Sequence[Sequence2D], runtime, *, info: SequenceInfo,
                       make_windows: Callable[[np.ndarray, np.ndarray], np.ndarray],
                       batch_size: int, convention: Convention = Convention(),
                       frame_stride: int = 1, scale: float = 1.0, progress: bool = True,
                       desc: str = "eval") -> dict[str, Any]:
  """Evaluates a temporal model: one window per (strided) frame of every sequence, gathered
  by `predict_sequences`.

  Args:
    predict_windows: `(B, T, ...)` global windows (numpy, identical on every process) ->
      `(B, J, 3)` predictions as numpy.
    sequences: the sequences (every process passes all of them).
    make_windows: (sequence_2d `(N, ...)`, frames `(F,)`) -> `(F, T, ...)` windows.
    batch_size: windows per call.
    frame_stride: evaluate every n-th frame (1: all, the protocol; the velocity and
      acceleration errors need 1 and are left out otherwise).
    scale: multiplies predictions and targets before the metrics (e.g. 1000 for m -> mm).

  Returns:
    the `summarize` table, with `mpjve` and `accel_error` when `frame_stride` is 1.
  """
  stride = max(1, int(frame_stride))
  plan = [(s, np.arange(0, len(seq.pose_2d), stride)) for s, seq in enumerate(sequences)]
  predictions = predict_sequences(predict_windows, [seq.pose_2d for seq in sequences],
                                  [frames for _, frames in plan], runtime,
                                  make_windows=make_windows, batch_size=batch_size,
                                  progress=progress, desc=desc)
  errors: dict[str, list[np.ndarray]] = {}
  codes = []
  for (s, frames), pred in zip(plan, predictions):
    target = scale * np.asarray(sequences[s].pose_3d, np.float64)[frames]
    pred = scale * pred.astype(np.float64)
    per_frame = frame_errors(pred, target, convention)
    if stride == 1:
      per_frame.update(sequence_errors(pred, target))
    for name, value in per_frame.items():
      errors.setdefault(name, []).append(value)
    codes.append(np.full(len(frames), sequences[s].code))
  return summarize({k: np.concatenate(v) for k, v in errors.items()}, np.concatenate(codes),
                   info, convention)


def predict_sequences(predict_windows: Callable[[np.ndarray], np.ndarray],
                      inputs: Sequence[np.ndarray], frames: Sequence[np.ndarray], runtime, *,
                      make_windows: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      batch_size: int, progress: bool = True, desc: str = "eval"
                      ) -> list[np.ndarray]:
  """Predictions for chosen frames of whole sequences: the one way predictions are gathered
  from temporal models and from per-frame models fed whole sequences (a "window" of one
  frame), for the evaluator's tables and the datasets' own protocols alike.

  The windows of all sequences form one stream cut into batches of `batch_size`; only the
  last batch is short, padded to a multiple of the device count (so at most one extra
  compilation, and no work on padding beyond it).

  Args:
    predict_windows: `(B, ...)` global windows (numpy, identical on every process) ->
      `(B, ...)` predictions as numpy.
    inputs: per sequence, its `(N, ...)` inputs (every process passes all of them).
    frames: per sequence, the `(F,)` frames to predict.
    make_windows: (sequence inputs `(N, ...)`, frames `(F,)`) -> `(F, ...)` windows.
    batch_size: windows per call.

  Returns:
    per sequence, `(F, ...)` float32 predictions of its chosen frames.
  """
  plan = list(enumerate(np.asarray(f, np.int64) for f in frames))
  if len(plan) != len(inputs):
    raise ValueError(f"{len(inputs)} sequences but frames for {len(plan)}")
  total = sum(len(f) for _, f in plan)
  if not total:
    raise ValueError("the evaluation split holds no frame")
  num_devices = runtime.mesh.devices.size
  predictions: list[np.ndarray | None] = [None] * len(plan)
  bar = _Progress(-(-total // batch_size), desc, progress and runtime.process_index == 0)
  try:
    for chunk in _chunks(plan, batch_size):
      windows = np.concatenate([make_windows(inputs[s], plan[s][1][i:j]) for s, i, j in chunk])
      count = len(windows)
      padded = -(-count // num_devices) * num_devices
      if padded != count:
        windows = np.concatenate([windows, np.repeat(windows[-1:], padded - count, 0)])
      out = np.asarray(predict_windows(windows))[:count]
      offset = 0
      for s, i, j in chunk:
        if predictions[s] is None:
          predictions[s] = np.zeros((len(plan[s][1]),) + out.shape[1:], np.float32)
        predictions[s][i:j] = out[offset:offset + j - i]
        offset += j - i
      bar.update()
  finally:
    bar.close()
  shape = next(p.shape[1:] for p in predictions if p is not None)
  return [p if p is not None else np.zeros((0,) + shape, np.float32) for p in predictions]


def _chunks(plan, batch_size: int):
  """[(sequence, frames)] -> lists of (sequence, start, stop) holding batch_size frames."""
  chunk, room = [], batch_size
  for s, frames in plan:
    start = 0
    while start < len(frames):
      take = min(room, len(frames) - start)
      chunk.append((s, start, start + take))
      start += take
      room -= take
      if room == 0:
        yield chunk
        chunk, room = [], batch_size
  if chunk:
    yield chunk

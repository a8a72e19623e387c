"""The contract between a task (nvs, lifter, ...) and the generic training loop.

A task module `geopose_jax/tasks/<name>.py` exposes

    def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task

and everything else about the task (models, losses, data) stays inside it. The loop in
`geopose_jax.train.loop` owns the rest: jitting, sharding, checkpoints, logging, progress,
evaluation cadence, resuming.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, Iterable, Mapping

import jax
from jax.experimental import multihost_utils
import numpy as np

PyTree = Any
Batch = Mapping[str, np.ndarray]
Metrics = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Runtime:
  """Where the run happens: the device mesh and the shardings a task needs.

  Attributes:
    mesh: a mesh with one axis, `data`, over every device of every host.
    data_sharding: shards the leading (batch) axis over `data`.
    replicated: the same value on every device (parameters, optimizer state).
    workdir: the run's output folder (checkpoints, metrics, eval/, viz/).
    process_index, process_count: this host and the number of hosts; each host
      reads its own shard of the data and feeds `global_batch / process_count` items.
  """
  mesh: jax.sharding.Mesh
  data_sharding: jax.sharding.NamedSharding
  replicated: jax.sharding.NamedSharding
  workdir: pathlib.Path
  process_index: int
  process_count: int

  def local_batch_size(self, global_batch_size: int) -> int:
    """Items this host feeds per step; the global batch must split evenly over devices."""
    num_devices = self.mesh.devices.size
    if global_batch_size % num_devices:
      raise ValueError(
          f"batch size {global_batch_size} does not split over {num_devices} devices; "
          f"set --config.train.batch_size to a multiple of {num_devices}")
    return global_batch_size // self.process_count

  def to_host(self, x: jax.Array) -> np.ndarray:
    """A global array sharded over `data` -> the whole array as numpy, on every host."""
    if self.process_count == 1:
      return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  def gather_local(self, x: np.ndarray) -> np.ndarray:
    """Each host's numpy `(b, ...)` -> the global `(B, ...)` in process order, on every host."""
    if self.process_count == 1:
      return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))

  def shard_whole(self, x: np.ndarray) -> jax.Array:
    """The same numpy `(B, ...)` on every host -> a global array sharded over `data` (each
    device takes its slice; B a multiple of the device count)."""
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(self.data_sharding, x, x.shape)

  def shard_batch(self, batch: Batch) -> PyTree:
    """Process-local numpy batch -> global jax.Arrays sharded over `data`."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.data_sharding, np.asarray(x)),
        dict(batch))


@dataclasses.dataclass
class Task:
  """What a task hands to the loop.

  A task module `geopose_jax/tasks/<name>.py` exposes `build(config, runtime) -> Task`, and
  may expose `resolve_config(config) -> None`: called with the config unlocked before the
  run writes its `config.json`, it sets the keys the task derives (a frozen encoder's
  network adopted from its run, a stage's default learning rate), so that config.json
  always describes what trained. `build` must be cheap: it reads no dataset (the loop asks
  for `train_data` only in train mode) and checks `config.init_from` first.

  Attributes:
    init: rng -> initial train state (any pytree of arrays). Called under `jax.jit` with
      replicated output; must be pure, and closes over no loaded weights.
    train_step: (state, batch, rng) -> (state, metrics). Pure; the loop jits it once with
      the state donated, the batch sharded over `data`. `metrics` is a flat dict of scalars
      and must contain `loss` (checked for NaN/Inf).
    train_data: () -> an iterable of process-local numpy batches whose iterator supports
      `get_state()` / `set_state()` (a `grain.DataLoader`), so a resumed run sees the same
      data order. Called only in train mode: evaluation never opens the train split.
    evaluate: (state, split) -> metrics dict, run on every process; scalars are logged, the
      whole dict (per-action tables included) is written to `workdir/eval/<split>.json`
      and `.md`. None if the task has no evaluation.
    eval_splits: the splits `evaluate` is called with.
    visualize: (state, out_dir, step) -> {name: HxWx3 uint8 image} for TensorBoard; also
      writes its PNG/GIF files into `out_dir`. None if the task draws nothing.
    init_from: state -> state, applied once to the freshly initialised state of a run that
      has no checkpoint yet (outside jit): puts in what the run starts from outside itself
      (`config.init_from`'s weights, see train/init_from.py; statistics of the training
      labels). None when there is nothing to put in.
    predict: (state, KeypointSequence) -> {'pose_3d_mm': (N, 17, 3) camera-frame mm, and
      any other (N, ...) per-frame arrays to export}, for `--mode=predict`
      (train/prediction.py); every process calls it. None if the task cannot predict from
      2D keypoints.
    predict_images: (state, crops `(B, S, S, 3)` uint8, the same on every process) ->
      {'pose_3d_mm': (B, 17, 3) camera-frame mm, and any other (B, ...) per-frame arrays},
      for `--mode=predict` on a video or a folder of frames: train/image_prediction.py
      crops the frames (S = `predict_image_size`) and streams them through it in batches
      (B a multiple of the device count). None if the task does not predict from images.
    predict_image_size: S, the side of the square crops `predict_images` takes.
    predict_metadata: what a reader of the predicted files must know (units, where the
      root is, how a scale-free pose was given a size); written into each poses_3d.json.
    predict_from_init_from: whether `init` + `init_from` alone (no checkpoint in the
      workdir) give a usable model: False when init_from fills only part of it (the
      adapter's lifter).
  """
  init: Callable[[jax.Array], PyTree]
  train_step: Callable[[PyTree, PyTree, jax.Array], tuple[PyTree, Metrics]]
  train_data: Callable[[], Iterable[Batch]]
  evaluate: Callable[[PyTree, str], Metrics] | None = None
  eval_splits: tuple[str, ...] = ("test",)
  visualize: Callable[[PyTree, pathlib.Path, int], Mapping[str, np.ndarray]] | None = None
  init_from: Callable[[PyTree], PyTree] | None = None
  predict: Callable[[PyTree, Any], Mapping[str, np.ndarray]] | None = None
  predict_images: Callable[[PyTree, np.ndarray], Mapping[str, np.ndarray]] | None = None
  predict_image_size: int = 0
  predict_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  predict_from_init_from: bool = True

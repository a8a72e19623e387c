"""The one training loop every task uses.

    state, metrics = train_step(state, batch, rng)     # jitted once, state donated

around which the loop does the bookkeeping: it builds the mesh, restores the newest
checkpoint (state and data position) or initialises, feeds sharded global batches, logs
averaged metrics (metrics.jsonl, TensorBoard, progress bar), stops on a non-finite loss,
evaluates and draws on a cadence, checkpoints, and saves once more on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import pathlib
import signal
import time
from typing import Any, Mapping

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

from geopose_jax.errors import ConfigError
from geopose_jax.train import checkpoint as checkpoint_lib
from geopose_jax.train import mesh as mesh_lib
from geopose_jax.train import reporting
from geopose_jax.train.task import Runtime, Task
from geopose_jax.train.writer import MetricWriter

PyTree = Any


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or Inf; the message names the steps and the last good checkpoint."""


def task_module(name: str):
  """The module `geopose_jax.tasks.<name>`."""
  try:
    return importlib.import_module(f"geopose_jax.tasks.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"geopose_jax.tasks.{name}":
      raise
    tasks_dir = pathlib.Path(__file__).parent.parent / "tasks"
    known = sorted(p.stem for p in tasks_dir.glob("*.py") if not p.stem.startswith("_"))
    raise ConfigError(f"config.task={name!r} names no task; known tasks: {known}") from None


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sets the keys the task derives (its `resolve_config`), before config.json is written."""
  module = task_module(config.task)
  if hasattr(module, "resolve_config"):
    with config.unlocked():
      module.resolve_config(config)
  return config


def build_task(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  """Calls `geopose_jax.tasks.<config.task>.build(config, runtime)`."""
  return task_module(config.task).build(config, runtime)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
        mode: str = "train") -> dict:
  """Trains (resuming if `workdir` has a checkpoint) or evaluates the newest checkpoint.

  Returns the last evaluation results per split ({split: results}); for 'predict'
  (train/prediction.py) the folder written per sequence ({sequence: folder}).
  """
  if mode not in ("train", "eval", "predict"):
    raise ValueError(f"mode must be 'train', 'eval' or 'predict', got {mode!r}")
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  runtime = mesh_lib.make_runtime(workdir)
  resolve_config(config)
  task = build_task(config, runtime)
  if runtime.process_index == 0 and mode == "train":
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  if mode == "train":
    return train_and_evaluate(config, task, runtime)
  if mode == "predict":
    from geopose_jax.train import prediction  # pylint: disable=g-import-not-at-top
    return prediction.predict(config, task, runtime)
  return evaluate_checkpoint(config, task, runtime)


def jit_train_step(task: Task, runtime: Runtime):
  """The task's train step as the loop runs it: jitted once, state donated, batch sharded
  over `data` (benchmarks time this same function)."""
  with runtime.mesh:
    return jax.jit(
        task.train_step,
        in_shardings=(runtime.replicated, runtime.data_sharding, runtime.replicated),
        out_shardings=(runtime.replicated, runtime.replicated),
        donate_argnums=(0,))


def _abstract_state(task: Task, rng: jax.Array, runtime: Runtime) -> PyTree:
  shapes = jax.eval_shape(task.init, rng)
  return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=runtime.replicated), shapes)


def _initial_state(config, task: Task, runtime: Runtime, checkpointer, data_iterator):
  """(step, state): restored from the newest usable checkpoint, else freshly initialised."""
  init_rng = jax.random.fold_in(jax.random.key(config.seed), 0)
  restored = checkpointer.restore(_abstract_state(task, init_rng, runtime), data_iterator)
  if restored is not None:
    step, state = restored
    _print_main(f"Resumed from {checkpointer.directory / str(step)} at step {step}.")
    return step, state
  init = jax.jit(task.init, out_shardings=runtime.replicated)
  state = init(init_rng)
  if task.init_from is not None:
    state = task.init_from(state)
  return 0, state


class _StopRequests:
  """Ctrl-C and SIGTERM (preemption, `kill`) ask the loop to stop after the current step.

  The loop then saves a checkpoint and exits. Raising from the signal handler instead could
  interrupt a checkpoint being written; a second Ctrl-C still stops at once.
  """

  def __init__(self):
    self.requested = None
    self._previous = {}

  def __enter__(self):
    for signum in (signal.SIGINT, signal.SIGTERM):
      with contextlib.suppress(ValueError):  # Not the main thread: leave signals alone.
        self._previous[signum] = signal.signal(signum, self._request)
    return self

  def _request(self, signum, frame):
    del frame
    if self.requested is not None:
      raise KeyboardInterrupt(signal.Signals(signum).name)
    self.requested = signal.Signals(signum).name
    _print_main(f"{self.requested}: stopping after this step and saving a checkpoint "
                "(press Ctrl-C again to stop at once).")

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    return False


def _average_metrics(pending: list[Mapping[str, jax.Array]]) -> dict[str, float]:
  host = jax.device_get(pending)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def _check_finite(averages: Mapping[str, float], first_step: int, last_step: int,
                  checkpointer) -> None:
  if math.isfinite(averages.get("loss", 0.0)):
    return
  last_good = checkpointer.latest_step()
  where = (f"the last good checkpoint is step {last_good} in {checkpointer.directory}; "
           "relaunching with the same --workdir resumes from it"
           if last_good is not None else "no checkpoint was written before it")
  raise NonFiniteLossError(
      f"loss is {averages['loss']} between steps {first_step} and {last_step}; stopping. "
      f"{where}. Lower --config.optim.lr or check the input data.")


def train_and_evaluate(config: ml_collections.ConfigDict, task: Task, runtime: Runtime) -> dict:
  """Runs `task` for `config.train.steps` steps; see the module docstring."""
  workdir = runtime.workdir
  is_main = runtime.process_index == 0
  writer = MetricWriter(workdir, enabled=is_main)
  checkpointer = checkpoint_lib.Checkpointer(workdir, keep=config.train.keep_checkpoints)
  data_iterator = iter(task.train_data())
  step, state = _initial_state(config, task, runtime, checkpointer, data_iterator)
  total_steps = int(config.train.steps)
  train_rng = jax.random.fold_in(jax.random.key(config.seed), 1)

  train_step = jit_train_step(task, runtime)

  pending: list[Mapping[str, jax.Array]] = []
  first_pending_step = step + 1
  last_saved = checkpointer.latest_step()
  results: dict = {}
  progress = tqdm.tqdm(total=total_steps, initial=step, desc=config.task, unit="step",
                       disable=not (is_main and config.train.progress_bar), dynamic_ncols=True)
  log_clock = time.perf_counter()
  log_clock_step = step

  def flush_metrics() -> None:
    nonlocal pending, first_pending_step, log_clock, log_clock_step
    if not pending:
      return
    averages = _average_metrics(pending)
    _check_finite(averages, first_pending_step, step, checkpointer)
    now = time.perf_counter()
    averages["steps_per_sec"] = (step - log_clock_step) / max(now - log_clock, 1e-9)
    log_clock, log_clock_step = now, step
    writer.write_scalars(step, {f"train/{k}": v for k, v in averages.items()})
    progress.set_postfix({k: f"{v:.4g}" for k, v in averages.items() if k in ("loss",)})
    pending, first_pending_step = [], step + 1

  def save() -> None:
    nonlocal last_saved
    if last_saved == step:
      return
    flush_metrics()  # Never save a state whose loss went non-finite.
    checkpointer.save(step, state, data_iterator, force=True)
    last_saved = step

  def evaluate_and_draw(final: bool) -> None:
    nonlocal results
    if task.evaluate is not None:
      for split in task.eval_splits:
        results[split] = task.evaluate(state, split)
        if is_main:
          reporting.write_eval(workdir, split, results[split], step)
          writer.write_scalars(step, reporting.scalars(results[split], prefix=f"eval/{split}/"))
          if final:
            progress.write(reporting.as_markdown(results[split], title=f"{split} (step {step})"))
    if task.visualize is not None and is_main:
      images = task.visualize(state, workdir / "viz", step)
      writer.write_images(step, images or {})
    writer.flush()

  try:
    with _StopRequests() as stop_requests:
      while step < total_steps:
        if stop_requests.requested:
          raise KeyboardInterrupt(stop_requests.requested)
        try:
          batch = next(data_iterator)
        except StopIteration:
          raise RuntimeError(
              f"the training data ran out at step {step} of {total_steps}; the task's loader "
              "must repeat (num_epochs=None) for training") from None
        batch = runtime.shard_batch(batch)
        state, metrics = train_step(state, batch, jax.random.fold_in(train_rng, step))
        step += 1
        pending.append(metrics)
        progress.update(1)
        cfg = config.train
        if step % cfg.log_every == 0:
          flush_metrics()
        if step == total_steps:
          break
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
          save()
        if cfg.eval_every and step % cfg.eval_every == 0:
          evaluate_and_draw(final=False)
        elif cfg.viz_every and step % cfg.viz_every == 0 and task.visualize is not None and is_main:
          writer.write_images(step, task.visualize(state, workdir / "viz", step) or {})
  except KeyboardInterrupt:
    progress.close()
    _print_main(f"Interrupted at step {step}; saving a checkpoint before exiting.")
    save()
    checkpointer.close()
    writer.close()
    raise
  except BaseException:
    progress.close()
    checkpointer.close()  # Finish any save already under way; write nothing new.
    writer.close()
    raise

  flush_metrics()
  save()
  progress.close()
  evaluate_and_draw(final=True)
  checkpointer.close()
  writer.close()
  return results


def evaluate_checkpoint(config: ml_collections.ConfigDict, task: Task, runtime: Runtime) -> dict:
  """--mode=eval: evaluates the newest checkpoint of the workdir on every eval split."""
  if task.evaluate is None:
    raise ValueError(f"task {config.task!r} has no evaluation")
  checkpointer = checkpoint_lib.Checkpointer(runtime.workdir, keep=config.train.keep_checkpoints)
  init_rng = jax.random.fold_in(jax.random.key(config.seed), 0)
  restored = checkpointer.restore(_abstract_state(task, init_rng, runtime))
  checkpointer.close()
  if restored is None:
    raise FileNotFoundError(
        f"--mode=eval: no checkpoint in {checkpoint_lib.checkpoint_dir(runtime.workdir)}; "
        "train first with the same --workdir, or point --workdir at a trained run")
  step, state = restored
  results = {}
  for split in task.eval_splits:
    results[split] = task.evaluate(state, split)
    if runtime.process_index == 0:
      paths = reporting.write_eval(runtime.workdir, split, results[split], step)
      print(reporting.as_markdown(results[split], title=f"{split} (step {step})"))
      print(f"Wrote {', '.join(str(p) for p in paths)}")
  if task.visualize is not None and runtime.process_index == 0:
    task.visualize(state, runtime.workdir / "viz", step)
  return results


def _print_main(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)
  logging.info(message)

"""The one training loop every task uses.

    state, metrics = train_step(state, batch, rng)     # jitted once, state donated

around which the loop does the bookkeeping: it builds the mesh, restores the newest
checkpoint (state and data position) or initialises, feeds sharded global batches, logs
averaged metrics (metrics.jsonl, TensorBoard, progress bar), stops on a non-finite loss,
evaluates and draws on a cadence, checkpoints, and saves once more on Ctrl-C or SIGTERM.

Around it, nothing is lost and nothing is silent: the config is checked first, one training
run holds the workdir (`train.lock`), a workdir with checkpoints never restarts from step 0
unless `train.restart` says so, a saved state is checked finite before it counts as good,
and a full disk stops with one line. `--mode=eval` writes nothing but its results.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import time
from typing import Any, Mapping

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

from geopose_jax.errors import CheckpointError, ConfigError, GeoposeError
from geopose_jax.train import checkpoint as checkpoint_lib
from geopose_jax.train import config_checks
from geopose_jax.train import divergence
from geopose_jax.train import mesh as mesh_lib
from geopose_jax.train import reporting
from geopose_jax.train import signals
from geopose_jax.train import workdir_lock
from geopose_jax.train import writer as writer_lib
from geopose_jax.train.task import Runtime, Task
from geopose_jax.train.writer import MetricWriter

PyTree = Any


NonFiniteLossError = divergence.NonFiniteLossError
SaveInterruptedError = signals.SaveInterruptedError


class _FinalEvalInterrupted(KeyboardInterrupt):
  """Ctrl-C twice during the final evaluation, after the final checkpoint was saved."""


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
  workdir = pathlib.Path(workdir)
  runtime = mesh_lib.make_runtime(workdir)
  if mode == "predict":
    from geopose_jax.train import prediction  # pylint: disable=g-import-not-at-top
    # A task built on another run names it in its config.json; predict builds the same.
    prediction.adopt_run_sources(config, workdir)
  resolve_config(config)
  config_checks.check_config(config, mode)
  if mode == "eval":
    # Reads the workdir only, so an archived (read-only) run can be evaluated.
    if not workdir.is_dir():
      raise CheckpointError(f"--mode=eval: no checkpoint: {workdir} does not exist; point "
                            "--workdir at a trained run")
    task = build_task(config, runtime)
    return evaluate_checkpoint(config, task, runtime)
  if mode == "predict":
    # Reads the workdir only; writes nothing but config.predict.output.
    task = build_task(config, runtime)
    if prediction.input_kind(task) == "images":
      from geopose_jax.train import image_prediction  # pylint: disable=g-import-not-at-top
      return image_prediction.predict(config, task, runtime)
    return prediction.predict(config, task, runtime)
  lock = workdir_lock.WorkdirLock(workdir)
  if runtime.process_index == 0:
    lock.acquire()
  try:
    task = build_task(config, runtime)
    return train_and_evaluate(config, task, runtime)
  except OSError as e:
    if writer_lib.is_disk_full(e):
      raise writer_lib.DiskFullError(writer_lib.disk_full_message(
          workdir, "stopped while writing the run's files")) from None
    raise
  finally:
    lock.release()


def _write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  path = workdir / "config.json"
  tmp = path.with_name(".config.json.tmp")
  tmp.write_text(config.to_json_best_effort(indent=2))
  tmp.replace(path)


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
  """(step, state): restored from the newest usable checkpoint, else freshly initialised.

  A workdir that holds checkpoints (or steps moved aside as unreadable) but none usable is
  only started over from step 0 with `train.restart=True`.
  """
  init_rng = jax.random.fold_in(jax.random.key(config.seed), 0)
  restart = bool(config.train.restart)
  if restart and checkpointer.steps():
    raise ConfigError(
        f"--config.train.restart=True but {checkpointer.directory} holds checkpoints "
        f"(steps {checkpointer.steps()}) that training from step 0 would overwrite; "
        "drop the flag to resume, or use a new --workdir")
  restored = checkpointer.restore(_abstract_state(task, init_rng, runtime), data_iterator)
  if restored is not None:
    step, state = restored
    _print_main(f"Resumed from {checkpointer.directory / str(step)} at step {step}.")
    return step, state
  set_aside = checkpointer.quarantined() + divergence.diverged(runtime.workdir)
  if set_aside and not restart:
    raise CheckpointError(
        f"{runtime.workdir} has no usable checkpoint but holds steps set aside earlier "
        f"({', '.join(str(p) for p in set_aside[:4])}); refusing to start silently from step "
        "0. Pass --config.train.restart=True to train from scratch here, or use a new "
        "--workdir")
  if restart:
    _print_main(f"train.restart=True: training {runtime.workdir} from step 0.")
  init = jax.jit(task.init, out_shardings=runtime.replicated)
  state = init(init_rng)
  if task.init_from is not None:
    state = task.init_from(state)
  return 0, state


def _average_metrics(host: list[Mapping[str, Any]]) -> dict[str, float]:
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def train_and_evaluate(config: ml_collections.ConfigDict, task: Task, runtime: Runtime) -> dict:
  """Runs `task` for `config.train.steps` steps; see the module docstring."""
  workdir = runtime.workdir
  is_main = runtime.process_index == 0
  checkpointer = checkpoint_lib.Checkpointer(workdir, keep=config.train.keep_checkpoints)
  data_iterator = iter(task.train_data())
  try:
    step, state = _initial_state(config, task, runtime, checkpointer, data_iterator)
  except BaseException:
    checkpointer.close()
    raise
  if is_main:  # Only once the checkpoints are known to fit, so a refused launch keeps it.
    _write_config(workdir, config)
  writer = MetricWriter(workdir, enabled=is_main)
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
  stop_requests = signals.StopRequests()

  def flush_metrics() -> None:
    nonlocal pending, first_pending_step, log_clock, log_clock_step
    if not pending:
      return
    host = jax.device_get(pending)
    bad_step = divergence.first_non_finite(host, first_pending_step)
    if bad_step is not None:
      loss = float(np.asarray(host[bad_step - first_pending_step]["loss"]))
      divergence.stop(config, f"loss is {loss} at step {bad_step}", bad_step, checkpointer,
                       runtime)
    averages = _average_metrics(host)
    now = time.perf_counter()
    averages["steps_per_sec"] = (step - log_clock_step) / max(now - log_clock, 1e-9)
    log_clock, log_clock_step = now, step
    writer.write_scalars(step, {f"train/{k}": v for k, v in averages.items()})
    progress.set_postfix({k: f"{v:.4g}" for k, v in averages.items() if k in ("loss",)})
    pending, first_pending_step = [], step + 1

  def save(wait: bool = False) -> None:
    """Saves `state` at `step` once its losses and its own values are known finite."""
    nonlocal last_saved
    if last_saved == step:
      if wait:
        _wait_for_save()
      return
    flush_metrics()
    if not bool(divergence.all_finite(state)):
      # Its loss was finite, but the update it applied was not.
      divergence.stop(config, f"the state after step {step} holds NaN/Inf values", step + 1,
                       checkpointer, runtime)
    with stop_requests.during("saving"):
      try:
        stop_requests.finish_unless_abandoned(
            lambda: checkpointer.save(step, state, data_iterator, force=True))
      except SaveInterruptedError:
        _abandon_save()
    last_saved = step
    if wait:
      _wait_for_save()

  def _wait_for_save() -> None:
    with stop_requests.during("saving"):
      try:
        stop_requests.finish_unless_abandoned(checkpointer.wait)
      except SaveInterruptedError:
        _abandon_save()

  def _abandon_save() -> None:
    # The save's threads may still be writing its temporary folder: removing it under them
    # could let them rename what is left to a checkpoint. launch.py removes it once they are
    # gone (partial_saves.py); otherwise the next Checkpointer on this workdir does.
    complete = sorted(int(p.name) for p in checkpointer.directory.iterdir() if p.name.isdigit())
    _print_main(f"Stopped at once at step {step}, abandoning any save under way. The newest "
                f"complete checkpoint is step {complete[-1] if complete else 'none'}.")
    interrupt = SaveInterruptedError(str(step))
    interrupt.checkpoint_dir = checkpointer.directory
    raise interrupt

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

  def close_all(finish_saves: bool) -> None:
    progress.close()
    if finish_saves:
      checkpointer.close()
    writer.close()

  with stop_requests:
    try:
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
          with stop_requests.during("evaluation"):
            evaluate_and_draw(final=False)
        elif cfg.viz_every and step % cfg.viz_every == 0 and task.visualize is not None and is_main:
          writer.write_images(step, task.visualize(state, workdir / "viz", step) or {})
      flush_metrics()
      save(wait=True)  # The final checkpoint is on disk before the final evaluation starts.
      with stop_requests.during("final evaluation"):
        try:
          evaluate_and_draw(final=True)
        except KeyboardInterrupt as interrupt:
          close_all(finish_saves=True)
          _print_main(f"Interrupted during the final evaluation; the checkpoint of step {step} "
                      "is saved (--mode=eval evaluates it).")
          raise _FinalEvalInterrupted(str(interrupt)) from None
    except _FinalEvalInterrupted:
      raise
    except SaveInterruptedError as interrupt:
      progress.close()
      writer.close()
      if not hasattr(interrupt, "checkpoint_dir"):
        _abandon_save()
      raise
    except KeyboardInterrupt:
      progress.close()
      if stop_requests.requested is None:
        stop_requests.requested = "KeyboardInterrupt"
      try:
        if stop_requests.abandoned is None:
          _print_main(f"Interrupted at step {step}; saving a checkpoint before exiting.")
        save(wait=True)
      except SaveInterruptedError as interrupt:
        writer.close()
        if not hasattr(interrupt, "checkpoint_dir"):
          _abandon_save()
        raise
      close_all(finish_saves=True)
      raise
    except BaseException as error:
      disk_full = writer_lib.is_disk_full(error) or any(
          writer_lib.is_disk_full(e) for e in _causes(error))
      progress.close()
      if not disk_full:
        checkpointer.close()  # Finish any save already under way; write nothing new.
      writer.close()
      if disk_full:
        remove = checkpoint_lib.remove_temporary_folders(checkpointer.directory) if is_main else []
        del remove
        raise writer_lib.DiskFullError(writer_lib.disk_full_message(
            workdir, f"stopped at step {step}; {writer.lines_written} metric lines written by "
            f"this launch; newest complete checkpoint: step {last_saved}")) from None
      raise

  close_all(finish_saves=True)
  return results


def _causes(error: BaseException) -> list[BaseException]:
  out, seen = [], set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    error = error.__cause__ or error.__context__
    if error is not None:
      out.append(error)
  return out


def evaluate_checkpoint(config: ml_collections.ConfigDict, task: Task, runtime: Runtime) -> dict:
  """--mode=eval: evaluates the newest checkpoint of the workdir on every eval split.

  Reads the checkpoints without a lock and without changing them; writes only the result
  tables (into `config.eval.output`, default `workdir/eval`) and pictures (`viz/` next to
  them).
  """
  if task.evaluate is None:
    raise ConfigError(f"task {config.task!r} has no evaluation")
  checkpointer = checkpoint_lib.Checkpointer(runtime.workdir, keep=config.train.keep_checkpoints,
                                             read_only=True)
  init_rng = jax.random.fold_in(jax.random.key(config.seed), 0)
  try:
    restored = checkpointer.restore(_abstract_state(task, init_rng, runtime))
  finally:
    checkpointer.close()
  if restored is None:
    raise CheckpointError(
        f"--mode=eval: no checkpoint in {checkpoint_lib.checkpoint_dir(runtime.workdir)}; "
        "train first with the same --workdir, or point --workdir at a trained run")
  step, state = restored
  output = str(config.eval.output)
  eval_dir = pathlib.Path(output).expanduser() if output else runtime.workdir / "eval"
  viz_dir = eval_dir / "viz" if output else runtime.workdir / "viz"
  results = {}
  for split in task.eval_splits:
    results[split] = task.evaluate(state, split)
    if runtime.process_index == 0:
      try:
        paths = reporting.write_eval(runtime.workdir, split, results[split], step,
                                     eval_dir=eval_dir)
      except OSError as e:
        raise GeoposeError(
            f"--mode=eval: cannot write the results into {eval_dir} ({e.strerror}); give a "
            "writable folder with --config.eval.output=DIR") from None
      print(reporting.as_markdown(results[split], title=f"{split} (step {step})"))
      print(f"Wrote {', '.join(str(p) for p in paths)}")
  if task.visualize is not None and runtime.process_index == 0:
    task.visualize(state, viz_dir, step)
  return results


def _print_main(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)
  logging.info(message)

r"""Throughput of RIE and the VideoPose3D baseline: train windows/s, inference frames/s.

    python benchmarks/rie.py                          # RIE stage 3, RF 243, L 256, batch 1024
    python benchmarks/rie.py --stages=1,2,3 --out=rie_bench.json
    python benchmarks/rie.py --variant=tcn            # VideoPose3D, 1024 channels
    python benchmarks/rie.py --find_max_batch         # also the largest batch that fits
    python benchmarks/rie.py --variant=demo --steps=3
    python benchmarks/rie.py --batch_size=256 --profile=/tmp/rie_trace   # + top ops by time

One train step = forward and backward of the strided model on a batch of windows plus the
AdamW (AMSGrad) update, exactly the task's jitted step (stage 2 with its encoders frozen).
Inference = the model in eval mode on one window per frame, with the test-time flip average
(two passes), as the evaluation runs it. Inputs are random; the numbers do not depend on their
values. Parameter counts are given per stage next to the original's, computed from the
original's architecture. Runs on the default JAX device; JSON to stdout and to --out.
With --profile DIR, a `jax.profiler` trace of a few train steps is written there (TensorBoard
profile plugin and Perfetto formats) and the step's top operations by time go into the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from geopose_jax import host_memory  # noqa: E402
import profiling  # noqa: E402  (benchmarks/profiling.py, beside this script)
import report  # noqa: E402

from configs import rie as rie_config  # noqa: E402
from geopose_jax import evaluation  # noqa: E402
from geopose_jax import skeleton  # noqa: E402
from geopose_jax.models import tcn as tcn_lib  # noqa: E402
from geopose_jax.tasks import rie as task_lib  # noqa: E402
from geopose_jax.train import loop  # noqa: E402
from geopose_jax.train import mesh as mesh_lib  # noqa: E402
from geopose_jax.train import optim  # noqa: E402
from geopose_jax.train.state import TrainState  # noqa: E402
from geopose_jax.train.task import Task  # noqa: E402


def original_parameter_count(config) -> int:
  """Parameters of the original PyTorch model with this config's sizes (its layer list)."""
  widths = task_lib.filter_widths(config)
  m = config.model

  def temporal_block(c_in, channels, out):
    n = c_in * channels * widths[0] + 2 * channels
    for w in widths[1:]:
      n += channels * channels * w + channels * channels + 4 * channels
    return n + channels * out + out

  if m.name == "tcn":
    return temporal_block(34, m.channels, 51)

  def fc_block(c_in, out, blocks, hidden=m.fc_hidden):
    return (c_in * hidden + 3 * hidden + blocks * 2 * (hidden * hidden + 3 * hidden)
            + hidden * out + out)

  groups, latent = (5, 3, 3, 3, 3), m.latent_dim
  total = sum(temporal_block(6 * n, m.channels, latent) for n in groups)
  total += fc_block(34, latent, 2)
  if config.stage > 1:
    total += 5 * fc_block(4 * latent, latent, 1)
  return total + sum(fc_block(latent * (2 if config.stage == 1 else 3), 3 * n, 1) for n in groups)


def _setup(config, batch_size: int):
  """The task's own init and train step (as `build` makes them), jitted as the loop jits
  them, with random parameters and a random batch sharded over the devices."""
  task_lib.resolve_config(config)
  config.train.batch_size = batch_size
  model = task_lib.make_model(config)
  field = math.prod(task_lib.filter_widths(config))
  runtime = mesh_lib.make_runtime(tempfile.gettempdir())
  shapes = jax.eval_shape(task_lib.make_init(config, 100), jax.random.key(0))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: (0.05 * rng.normal(size=s.shape)).astype(np.float32),
                        shapes.params)
  stats = jax.tree.map(lambda s: np.ones(s.shape, np.float32), shapes.batch_stats)
  tx = optim.make_optimizer(config.optim, params, steps_per_epoch=100)
  state = jax.device_put(TrainState.create(params, tx, stats), runtime.replicated)
  task = Task(init=None, train_step=task_lib.make_train_step(config, 100), train_data=None)
  step = loop.jit_train_step(task, runtime)
  batch = runtime.shard_batch({
      "pose_2d": rng.uniform(-1, 1, (batch_size, field, 17, 2)).astype(np.float32),
      "pose_3d": (0.2 * rng.normal(size=(batch_size, 17, 3))).astype(np.float32)})
  return model, state, step, batch, field, shapes


def measure_train(config, batch_size: int, steps: int, warmup: int, profile_dir: str = "",
                  profile_steps: int = 3) -> dict:
  _, state, step, batch, _, _ = _setup(config, batch_size)
  holder = {"state": state, "i": 0}

  def one_step():
    holder["i"] += 1
    holder["state"], metrics = step(holder["state"], batch, jax.random.key(holder["i"]))
    jax.block_until_ready(metrics["loss"])

  start = time.perf_counter()
  one_step()
  compile_s = time.perf_counter() - start
  load_before = os.getloadavg()[0]
  train = report.time_calls(one_step, warmup, steps)
  result = {"batch_size": batch_size, "compile_s": round(compile_s, 2), "warmup_steps": warmup,
            **train.as_dict("train_step"),  # mean, median and every timed step
            "train_windows_per_s": round(batch_size / train.mean_s, 1),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
  if profile_dir:
    hlo = step.lower(holder["state"], batch, jax.random.key(0)).compile().as_text()
    path = profiling.trace(one_step, profile_steps, profile_dir)
    hlo_path = profiling.write_text(path.parent / "train_step.hlo.txt", hlo)
    result["profile"] = {"trace": str(path), "hlo": str(hlo_path), "steps": profile_steps,
                         **profiling.top_operations(path, hlo, profile_steps)}
  return result


def measure_inference(config, batch_size: int, steps: int, warmup: int) -> dict:
  model, state, _, _, field, _ = _setup(config, 8)
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  @jax.jit
  def predict(variables, x):
    plain = lambda w: model.apply(variables, w, train=False)[:, 0]  # noqa: E731
    return evaluation.flip_average(plain, skeleton.flip_pose)(x)

  x = jax.device_put(np.random.default_rng(1).uniform(-1, 1, (batch_size, field, 17, 2)).astype(
      np.float32))
  timing = report.time_calls(lambda: jax.block_until_ready(predict(variables, x)), warmup + 1,
                             steps)
  return {"inference_batch_size": batch_size, **timing.as_dict("inference_batch"),
          "inference_frames_per_s": round(batch_size / timing.mean_s, 1),
          "inference_note": "one window per frame, test-time flip average (two passes)"}


def find_max_batch(config, start: int, limit: int) -> int:
  """Doubles the batch from `start` until a train step fails to run (memory) or `limit`."""
  best, batch = 0, start
  while batch <= limit:
    try:
      measure_train(config, batch, steps=1, warmup=0)
    except (MemoryError, RuntimeError, jax.errors.JaxRuntimeError) as e:  # XLA: RESOURCE_EXHAUSTED
      print(f"batch {batch}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
      break
    best, batch = batch, batch * 2
  return best


def run(variant: str = "", stages=(3,), batch_size: int = 1024, steps: int = 5, warmup: int = 2,
        inference_batch_size: int = 1024, max_batch: bool = False, max_batch_limit: int = 16384,
        profile_dir: str = "", inference: bool = True):
  results = []
  base = rie_config.get_config(variant or None)
  for stage in (stages if base.model.name == "rie" else (1,)):
    config = rie_config.get_config(variant or None)
    config.stage = stage
    _, _, _, _, field, shapes = _setup(config, 8)
    entry = {"model": config.model.name, "stage": stage if config.model.name == "rie" else None,
             "receptive_field": field, "channels": config.model.channels,
             "latent_dim": config.model.latent_dim if config.model.name == "rie" else None,
             "num_params": tcn_lib.count_parameters(shapes.params),
             "num_params_original": original_parameter_count(config)}
    entry.update(measure_train(config, batch_size, steps, warmup,
                               f"{profile_dir}/stage{stage}" if profile_dir else ""))
    if inference:
      entry.update(measure_inference(config, inference_batch_size, steps, warmup))
    if max_batch:
      entry["max_train_batch"] = find_max_batch(config, batch_size * 2, max_batch_limit)
    results.append(entry)
    print(json.dumps(entry), file=sys.stderr, flush=True)
  return {
      "task": "rie", "variant": variant or "default",
      **report.device_facts(), "num_devices_used": 1, "timed_steps": steps, "results": results,
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--variant", default="", help="configs/rie.py variant: tcn, demo, cpn")
  parser.add_argument("--stages", default="3", help="RIE stages to measure, e.g. 1,2,3")
  parser.add_argument("--batch_size", type=int, default=1024)
  parser.add_argument("--inference_batch_size", type=int, default=1024)
  parser.add_argument("--steps", type=int, default=5, help="timed steps")
  parser.add_argument("--one_arena", action="store_true",
                      help="one malloc arena for all threads, whatever the variant's "
                           "train.one_malloc_arena says (configs/rie.py:tcn sets it)")
  parser.add_argument("--warmup", type=int, default=2,
                      help="untimed steps after the compiling one (the torch harness uses 2)")
  parser.add_argument("--find_max_batch", action="store_true",
                      help="double the batch until a train step no longer fits")
  parser.add_argument("--max_batch_limit", type=int, default=16384)
  parser.add_argument("--profile", default="", metavar="DIR",
                      help="write a jax.profiler trace of 3 train steps under DIR and report "
                           "the top operations by time")
  parser.add_argument("--no_inference", action="store_true", help="time the train step only")
  parser.add_argument("--out", default="", help="also write the JSON here")
  args = parser.parse_args(argv)
  # As launch.py does, with the variant's own setting, before JAX's first allocation.
  host_memory.keep_freed_memory(
      one_arena=args.one_arena or rie_config.get_config(args.variant or None).train.one_malloc_arena)
  try:
    stages = tuple(int(s) for s in args.stages.split(",") if s)
  except ValueError:
    parser.error(f"--stages={args.stages!r}: expected e.g. 1,2,3")
  if not stages or any(s not in (1, 2, 3) for s in stages):
    parser.error(f"--stages={args.stages!r}: stages are 1, 2 and 3")
  if args.batch_size < 1 or args.steps < 1:
    parser.error("--batch_size and --steps must be positive")
  result = run(args.variant, stages, args.batch_size, args.steps, args.warmup,
               args.inference_batch_size, args.find_max_batch, args.max_batch_limit,
               args.profile, not args.no_inference)
  return report.emit(result, args.out)


if __name__ == "__main__":
  main()

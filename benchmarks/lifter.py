r"""Throughput of the self-supervised lifter: train steps/s, poses/s, inference poses/s.

    python benchmarks/lifter.py                         # paper-sized models, batch 1024
    python benchmarks/lifter.py --variant=wgan --out=lifter_bench.json
    python benchmarks/lifter.py --variant=demo --steps=5

One train step = lift (frames t and t+1), rotate, project, lift again, the pose and temporal
discriminators, and the updates of all three players (as in training). Inference = the
lifter alone in eval mode. Inputs are random normalised 2D poses; the numbers do not depend
on their values. Runs on the default JAX device; JSON goes to stdout and to --out.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from geopose_jax import host_memory  # noqa: E402

host_memory.keep_freed_memory()  # as launch.py does, before the first large allocation

import report  # noqa: E402  (benchmarks/report.py, beside this script)

from configs import lifter as lifter_config  # noqa: E402
from geopose_jax import lifter_inference  # noqa: E402
from geopose_jax.train import loop  # noqa: E402
from geopose_jax.train import mesh as mesh_lib  # noqa: E402


def run(variant: str = "", batch_size: int = 1024, steps: int = 10, warmup: int = 2,
        inference_batch_size: int = 1024) -> dict:
  config = lifter_config.get_config(variant or None)
  config.train.batch_size = batch_size
  rng = np.random.default_rng(0)
  pose = rng.normal(scale=0.2, size=(batch_size, 17, 2)).astype(np.float32)
  batch = {"pose_2d": pose, "pose_2d_next": pose + 0.01 * rng.normal(size=pose.shape).astype(
      np.float32)}
  if config.supervised:
    batch = {"pose_2d": pose, "pose_3d_cam": rng.normal(size=(batch_size, 17, 3)).astype(
        np.float32) + np.array([0, 0, 5], np.float32)}
  # The task itself, as the loop builds and jits it (its data is never read here).
  runtime = mesh_lib.make_runtime(tempfile.gettempdir())
  task = loop.build_task(config, runtime)
  batch = runtime.shard_batch(batch)
  state = jax.jit(task.init, out_shardings=runtime.replicated)(jax.random.key(0))
  train_step = loop.jit_train_step(task, runtime)
  holder = {"state": state, "i": 0}

  def one_step():
    holder["i"] += 1
    holder["state"], metrics = train_step(holder["state"], batch, jax.random.key(holder["i"]))
    jax.block_until_ready(metrics["loss"])

  compile_start = time.perf_counter()
  one_step()
  compile_s = time.perf_counter() - compile_start
  load_before = os.getloadavg()[0]
  train = report.time_calls(one_step, warmup, steps)

  lifter_state = holder["state"]["lifter"]
  predict = jax.jit(lambda s, p: lifter_inference.predict(config, s, p))
  inputs = jax.device_put(rng.normal(scale=0.2, size=(inference_batch_size, 17, 2)).astype(
      np.float32))
  inference = report.time_calls(lambda: jax.block_until_ready(predict(lifter_state, inputs)),
                                warmup + 1, max(steps, 5))
  num_params = {name: int(sum(np.size(x) for x in jax.tree.leaves(s.params)))
                for name, s in holder["state"].items()}
  return {
      "task": "lifter",
      "variant": variant or "default",
      "gan": config.loss.gan,
      "objective": "supervised" if config.supervised else "self_supervised",
      **report.device_facts(),
      "num_devices_used": 1,
      # On a shared machine the wall-clock numbers depend on the other load; the CPU seconds
      # this process used per step say how much of the machine it had.
      "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
      "batch_size": batch_size,
      "timed_steps": steps,
      "num_params": num_params,
      "compile_s": round(compile_s, 3),
      "warmup_steps": warmup,
      **train.as_dict("train_step"),  # mean, median and every timed step
      "train_step_process_cpu_s": round(train.cpu_s, 5),
      "train_steps_per_s": round(1.0 / train.mean_s, 4),
      "train_poses_per_s": round(batch_size / train.mean_s, 1),
      "inference_batch_size": inference_batch_size,
      "inference_batch_s": round(inference.mean_s, 6),
      "inference_batch_process_cpu_s": round(inference.cpu_s, 6),
      "inference_poses_per_s": round(inference_batch_size / inference.mean_s, 1),
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--variant", default="", help="configs/lifter.py variant, e.g. wgan, demo")
  parser.add_argument("--batch_size", type=int, default=1024)
  parser.add_argument("--inference_batch_size", type=int, default=1024)
  parser.add_argument("--steps", type=int, default=10, help="timed train steps")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--out", default="", help="also write the JSON here")
  args = parser.parse_args(argv)
  if args.batch_size < 1 or args.steps < 1:
    parser.error("--batch_size and --steps must be positive")
  result = run(args.variant, args.batch_size, args.steps, args.warmup, args.inference_batch_size)
  return report.emit(result, args.out)


if __name__ == "__main__":
  main()

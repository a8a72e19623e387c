r"""Throughput and memory of the NVS network (Rhodin et al. 2018): train step and inference.

    python benchmarks/nvs.py                          # paper: ResNet-50, 128x128, batch 32
    python benchmarks/nvs.py --variant=demo           # the demo network of configs/nvs.py:demo
    python benchmarks/nvs.py --dtype=bfloat16         # mixed precision (GPU/TPU)
    python benchmarks/nvs.py --steps=3 --out=nvs_bench.json
    python benchmarks/nvs.py --batch_size=16 --profile=/tmp/nvs_trace   # + top ops by time

One train step is the nvs task's own jitted step (`loop.jit_train_step` on the task that
configs/nvs.py builds, the function training runs): the original's random batch
composition, encode, rotate the latent points into the target camera, decode with the
partner frame's appearance over the target background, L1 + 2 x perceptual loss (a frozen
ResNet-18), the gradient of the trained parameters (conv1..layer2 frozen, as the original)
and an Adam update; --dtype sets the NVS network's computation dtype. Inference is the
evaluation path: encode + rotate + decode in eval mode; `encode` alone is the pose path.
Inputs are random; the timings do not depend on their values. Runs on the task's mesh (every
local device); JSON goes to stdout and to --out. With --profile DIR, a `jax.profiler` trace of
a few train steps is written there and the step's top operations by time go into the JSON.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import profiling  # noqa: E402  (benchmarks/profiling.py, beside this script)
import report  # noqa: E402

from geopose_jax import host_memory  # noqa: E402
from geopose_jax import xla_flags  # noqa: E402

# The settings launch.py gives this task, before JAX starts.
# --one_arena as --config.train.one_malloc_arena=True.
host_memory.keep_freed_memory(one_arena="--one_arena" in sys.argv)
xla_flags.apply("nvs")

from geopose_jax.models import nvs  # noqa: E402
from geopose_jax.models import nvs_synthesis as synthesis  # noqa: E402
from geopose_jax.train import loop  # noqa: E402
from geopose_jax.train import mesh  # noqa: E402
from geopose_jax.train import optim  # noqa: E402

VARIANTS = ("paper", "demo")


def network_config(variant: str) -> tuple[dict[str, Any], int]:
  """(NVSModel fields, batch size) of a variant."""
  if variant == "paper":
    return dict(nvs.PAPER_CONFIG), 32
  if variant == "demo":
    from configs import nvs as nvs_config  # pylint: disable=g-import-not-at-top
    config = nvs_config.get_config("demo")
    return config.model.net.to_dict(), int(config.train.batch_size)
  raise ValueError(f"unknown --variant {variant!r}; use one of {VARIANTS}")


def fake_batch(batch_size: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.standard_normal((batch_size, 3, 3)))
  return {"image": rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8),
          "background": rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8),
          "R": (q * np.sign(np.linalg.det(q))[:, None, None]).astype(np.float32)}


def host_variables(shapes: Any, seed: int = 0) -> Any:
  """Variables filled on the host (He-scaled kernels, unit BatchNorm): no RNG to compile."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    value = 1.0 if name in ("scale", "var") else 0.0
    return np.full(leaf.shape, value, np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def task_config(variant: str, batch_size: int, dtype: str):
  """configs/nvs.py at the variant's network, with the paper's losses and frozen layers."""
  from configs import nvs as nvs_config  # pylint: disable=g-import-not-at-top
  config = nvs_config.get_config("demo" if variant == "demo" else None)
  # The paper's losses and freezing on either network (the CPU demo drops both).
  config.loss.perceptual_without_weights = "random"
  config.optim.frozen = nvs_config.STAGE1_FROZEN
  config.train.batch_size = config.eval.batch_size = batch_size
  if dtype != "float32":
    with config.unlocked():
      config.model.net.dtype = dtype
  return config


def make_task(config):
  """(task, runtime, initial state) on every local device; variables filled on the host."""
  runtime = mesh.make_runtime(tempfile.mkdtemp(prefix="nvs_bench_"))
  task = loop.build_task(config, runtime)
  shapes = jax.eval_shape(task.init, jax.random.key(0))
  variables = host_variables({"params": shapes.params, "batch_stats": shapes.batch_stats})
  tx = optim.make_optimizer(config.optim, variables["params"])
  state = shapes.replace(step=np.int32(0), params=variables["params"],
                         batch_stats=variables["batch_stats"],
                         opt_state=jax.jit(tx.init)(variables["params"]))
  return task, runtime, jax.device_put(state, runtime.replicated)


def _memory(compiled) -> dict[str, int]:
  """XLA's static buffer sizes of a compiled step (bytes)."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # Not every backend implements it.
    return {}
  if analysis is None:
    return {}
  return {"temp_bytes": int(analysis.temp_size_in_bytes),
          "argument_bytes": int(analysis.argument_size_in_bytes),
          "output_bytes": int(analysis.output_size_in_bytes)}


def run(variant: str = "paper", batch_size: int = 0, steps: int = 3, warmup: int = 2,
        dtype: str = "float32", profile_dir: str = "", profile_steps: int = 2) -> dict:
  fields, default_batch = network_config(variant)
  batch_size = batch_size or default_batch
  if batch_size % 4:
    raise ValueError(f"batch size {batch_size} must be a multiple of 4 (pairs of views x 2 frames)")
  config = task_config(variant, batch_size, dtype)
  start = time.perf_counter()
  task, runtime, state = make_task(config)
  model = synthesis.build_model(config.model.net)
  setup_s = time.perf_counter() - start
  host_batch = fake_batch(batch_size, model.image_size)
  batch = runtime.shard_batch(host_batch)
  step_fn = loop.jit_train_step(task, runtime)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, jax.random.key(1)).compile()
  compile_s = time.perf_counter() - start
  holder = {"state": state, "i": 0}

  def one_step():
    holder["i"] += 1
    holder["state"], metrics = compiled(holder["state"], batch, jax.random.key(holder["i"]))
    jax.block_until_ready(metrics["loss"])

  train = report.time_calls(one_step, warmup, steps)
  train_memory = _memory(compiled)
  profile = {}
  if profile_dir:
    path = profiling.trace(one_step, profile_steps, profile_dir)
    hlo_path = profiling.write_text(path.parent / "train_step.hlo.txt", compiled.as_text())
    profile = {"trace": str(path), "hlo": str(hlo_path), "steps": profile_steps,
               **profiling.top_operations(path, compiled.as_text(), profile_steps)}

  trained = holder["state"]
  variables = {"params": trained.params, "batch_stats": trained.batch_stats}
  size = model.image_size
  target = np.arange(batch_size) ^ 1
  rotations = jnp.asarray(host_batch["R"][target] @ np.swapaxes(host_batch["R"], 1, 2))
  images = jnp.asarray(host_batch["image"])
  backgrounds = jnp.asarray(host_batch["background"][target])
  synth = jax.jit(lambda v, x, b: synthesis.synthesize(
      model, v, synthesis.prepare_images(x, size), rotations, None,
      synthesis.prepare_images(b, size), train=False)[0]).lower(
          variables, images, backgrounds).compile()
  enc = jax.jit(lambda v, x: synthesis.encode(
      model, v, synthesis.prepare_images(x, size))).lower(variables, images).compile()
  repeats = max(steps, 3)
  synthesis_timing = report.time_calls(
      lambda: jax.block_until_ready(synth(variables, images, backgrounds)), warmup, repeats)
  encode = report.time_calls(lambda: jax.block_until_ready(enc(variables, images)), warmup,
                             repeats)
  device = jax.devices()[0]
  stats = device.memory_stats() or {}
  params = trained.params
  labels = optim.frozen_labels(params, tuple(config.optim.frozen))
  frozen = sum(int(np.size(p)) for p, label in zip(jax.tree.leaves(params),
                                                    jax.tree.leaves(labels))
               if label == optim.FROZEN)
  return {
      "task": "nvs",
      "variant": variant,
      **report.device_facts(),
      "num_devices_used": int(runtime.mesh.devices.size),
      "dtype": dtype,
      "image_size": model.image_size,
      "batch_size": batch_size,
      "network": {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
      "num_params": nvs.count_params(params),
      "num_trained_params": nvs.count_params(params) - frozen,
      "timed_steps": steps,
      "setup_s": round(setup_s, 2),
      "compile_s": round(compile_s, 2),
      "warmup_steps": warmup,
      **train.as_dict("train_step"),  # mean, median and every timed step
      "train_images_per_s": round(batch_size / train.mean_s, 2),
      "inference_synthesis_images_per_s": round(batch_size / synthesis_timing.mean_s, 2),
      "inference_encode_images_per_s": round(batch_size / encode.mean_s, 2),
      # CPU seconds the process used per call (all threads): on a shared CPU host the
      # wall times above include waiting for other processes; these do not.
      "cpu_s_per_train_step": round(train.cpu_s, 3),
      "cpu_s_per_synthesis_batch": round(synthesis_timing.cpu_s, 3),
      "cpu_s_per_encode_batch": round(encode.cpu_s, 3),
      "train_step_memory": train_memory,
      "device_peak_bytes": int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats
                           else None,
      "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      **({"profile": profile} if profile else {}),
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--variant", default="paper", choices=VARIANTS)
  parser.add_argument("--batch_size", type=int, default=0, help="0: the variant's own")
  parser.add_argument("--steps", type=int, default=3, help="timed train steps")
  parser.add_argument("--one_arena", action="store_true",
                      help="one malloc arena for all threads (--config.train.one_malloc_arena)")
  parser.add_argument("--warmup", type=int, default=2,
                      help="untimed steps after the compiling one (the torch harness uses 2)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="computation dtype (parameters stay float32)")
  parser.add_argument("--profile", default="", metavar="DIR",
                      help="write a jax.profiler trace of 2 train steps under DIR and report "
                           "the top operations by time")
  parser.add_argument("--out", default="", help="also write the JSON here")
  args = parser.parse_args(argv)
  if args.batch_size < 0 or args.steps < 1:
    parser.error("--batch_size must be >= 0 and --steps positive")
  result = run(args.variant, args.batch_size, args.steps, args.warmup, args.dtype, args.profile)
  return report.emit(result, args.out)


if __name__ == "__main__":
  main()

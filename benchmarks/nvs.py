r"""Throughput and memory of the NVS network (Rhodin et al. 2018): train step and inference.

    python benchmarks/nvs.py                          # paper: ResNet-50, 128x128, batch 32
    python benchmarks/nvs.py --variant=demo           # the demo network of configs/nvs.py:demo
    python benchmarks/nvs.py --dtype=bfloat16         # mixed precision (GPU/TPU)
    python benchmarks/nvs.py --steps=3 --out=nvs_bench.json

One train step is what stage 1 does per batch: encode, rotate the latent points into the
target camera, decode with the partner frame's appearance over the target background,
L1 + 2 x perceptual loss (frozen ResNet-18 features of [output; target], one pass), the
gradient of the trained parameters (conv1..layer2 frozen, as the original) and an Adam
update. Inference is the evaluation path: encode + rotate + decode in eval mode; `encode`
alone is the pose path. Inputs are random; the timings do not depend on their values.
Runs on the default JAX device; JSON goes to stdout and to --out.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import report  # noqa: E402  (benchmarks/report.py, beside this script)

from geopose_jax.models import nvs  # noqa: E402
from geopose_jax.models import resnet  # noqa: E402

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


def pairings(batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Target = the other view of each pair; appearance = the same view of the other frame."""
  index = np.arange(batch_size)
  return index ^ 1, index ^ 2


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


def make_optimizer(params: Any, frozen_prefixes=nvs.STAGE1_FROZEN_PREFIXES):
  """Adam on the trained parameters; zero updates (no moments) for the frozen ones."""
  labels = jax.tree.map(lambda frozen: "frozen" if frozen else "trained",
                        nvs.path_mask(params, frozen_prefixes))
  return optax.multi_transform({"trained": optax.adam(1e-3), "frozen": optax.set_to_zero()},
                               labels)


def make_steps(model: nvs.NVSModel, perceptual: resnet.ResNet18Features, batch_size: int):
  """(initial state, train_step(state, batch, rng), synthesize, encode) for the benchmark."""
  target, appearance = pairings(batch_size)
  size = model.image_size
  images = jnp.zeros((batch_size, size, size, 3))
  variables = host_variables(jax.eval_shape(model.init, jax.random.key(0), images, images))
  features = host_variables(jax.eval_shape(perceptual.init, jax.random.key(0), images), 1)
  tx = make_optimizer(variables["params"])
  state = {"variables": variables, "features": features,
           "opt_state": jax.jit(tx.init)(variables["params"])}

  def compose(batch):
    images = nvs.normalize_image(batch["image"])
    backgrounds = nvs.normalize_image(batch["background"])[target]
    rotations = batch["R"][target] @ jnp.swapaxes(batch["R"], 1, 2)
    return images, backgrounds, rotations

  def synthesize(variables, batch, train, rng=None):
    images, backgrounds, rotations = compose(batch)

    def forward(module):
      app, geometry = module.encode(images, train)
      geometry = nvs.rotate_latent(geometry, rotations)
      return module.decode(app[appearance], geometry, backgrounds, train)

    if train:
      return model.apply(variables, method=forward, rngs={"dropout": rng},
                         mutable=["batch_stats"])
    return model.apply(variables, method=forward)

  def train_step(state, batch, rng):
    variables = state["variables"]
    targets = nvs.normalize_image(batch["image"])[target]

    def loss_fn(params):
      output, updates = synthesize({"params": params,
                                    "batch_stats": variables["batch_stats"]}, batch, True, rng)
      l1 = jnp.abs(output - targets).mean()
      feats = perceptual.apply(state["features"], jnp.concatenate([output, targets]))
      perceptual_loss = sum(jnp.abs(f[:batch_size] - jax.lax.stop_gradient(f[batch_size:])
                                    ).mean() for f in feats) / len(feats)
      return l1 + 2.0 * perceptual_loss, updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    step, opt_state = tx.update(grads, state["opt_state"], variables["params"])
    params = optax.apply_updates(variables["params"], step)
    return {"variables": {"params": params, "batch_stats": updates["batch_stats"]},
            "features": state["features"], "opt_state": opt_state}, loss

  def encode(variables, images):
    return model.apply(variables, nvs.normalize_image(images), method="encode")

  return state, train_step, synthesize, encode


def _time(fn, warmup: int, steps: int) -> tuple[float, float]:
  """(wall seconds, process CPU seconds) per call of `fn()`, which must block."""
  for _ in range(warmup):
    fn()
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(steps):
    fn()
  return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


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


def run(variant: str = "paper", batch_size: int = 0, steps: int = 3, warmup: int = 1,
        dtype: str = "float32") -> dict:
  fields, default_batch = network_config(variant)
  batch_size = batch_size or default_batch
  if batch_size % 4:
    raise ValueError(f"batch size {batch_size} must be a multiple of 4 (pairs of views x 2 frames)")
  compute_dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]
  model = nvs.NVSModel(**{**fields, "dtype": compute_dtype})
  perceptual = resnet.ResNet18Features(do_maxpooling=True, dtype=compute_dtype)
  start = time.perf_counter()
  state, train_step, synthesize, encode = make_steps(model, perceptual, batch_size)
  setup_s = time.perf_counter() - start
  batch = jax.device_put(fake_batch(batch_size, model.image_size))
  step_fn = jax.jit(train_step, donate_argnums=(0,))
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, jax.random.key(1)).compile()
  compile_s = time.perf_counter() - start
  holder = {"state": state, "i": 0}

  def one_step():
    holder["i"] += 1
    holder["state"], loss = compiled(holder["state"], batch, jax.random.key(holder["i"]))
    jax.block_until_ready(loss)

  step_s, step_cpu_s = _time(one_step, warmup, steps)
  train_memory = _memory(compiled)

  variables = holder["state"]["variables"]
  synth = jax.jit(lambda v, b: synthesize(v, b, False)).lower(variables, batch).compile()
  enc = jax.jit(encode).lower(variables, batch["image"]).compile()
  repeats = max(steps, 3)
  synth_s, synth_cpu_s = _time(lambda: jax.block_until_ready(synth(variables, batch)), warmup,
                               repeats)
  encode_s, encode_cpu_s = _time(lambda: jax.block_until_ready(enc(variables, batch["image"])),
                                 warmup, repeats)
  device = jax.devices()[0]
  stats = device.memory_stats() or {}
  params = variables["params"]
  frozen_mask = nvs.path_mask(params, nvs.STAGE1_FROZEN_PREFIXES)
  frozen = sum(int(np.size(p)) for p, m in zip(jax.tree.leaves(params),
                                                jax.tree.leaves(frozen_mask)) if m)
  return {
      "task": "nvs",
      "variant": variant,
      **report.device_facts(),
      "num_devices_used": 1,
      "dtype": dtype,
      "image_size": model.image_size,
      "batch_size": batch_size,
      "network": {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
      "num_params": nvs.count_params(params),
      "num_trained_params": nvs.count_params(params) - frozen,
      "timed_steps": steps,
      "setup_s": round(setup_s, 2),
      "compile_s": round(compile_s, 2),
      "train_step_s": round(step_s, 4),
      "train_images_per_s": round(batch_size / step_s, 2),
      "inference_synthesis_images_per_s": round(batch_size / synth_s, 2),
      "inference_encode_images_per_s": round(batch_size / encode_s, 2),
      # CPU seconds the process used per call (all threads): on a shared CPU host the
      # wall times above include waiting for other processes; these do not.
      "cpu_s_per_train_step": round(step_cpu_s, 3),
      "cpu_s_per_synthesis_batch": round(synth_cpu_s, 3),
      "cpu_s_per_encode_batch": round(encode_cpu_s, 3),
      "train_step_memory": train_memory,
      "device_peak_bytes": int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats
                           else None,
      "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--variant", default="paper", choices=VARIANTS)
  parser.add_argument("--batch_size", type=int, default=0, help="0: the variant's own")
  parser.add_argument("--steps", type=int, default=3, help="timed train steps")
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="computation dtype (parameters stay float32)")
  parser.add_argument("--out", default="", help="also write the JSON here")
  args = parser.parse_args(argv)
  if args.batch_size < 0 or args.steps < 1:
    parser.error("--batch_size must be >= 0 and --steps positive")
  result = run(args.variant, args.batch_size, args.steps, args.warmup, args.dtype)
  return report.emit(result, args.out)


if __name__ == "__main__":
  main()

r"""Throughput of the SMPL kernel and the soft silhouette rasteriser.

    python benchmarks/smpl.py                                   # procedural body, SMPL-sized
    python benchmarks/smpl.py --model=SMPL_NEUTRAL.pkl          # the real model
    python benchmarks/smpl.py --batches=64,1024 --sizes=64,128 --out=smpl.json

Skinning: forward + backward (gradient of a loss on vertices and joints with respect to
theta and beta) of `smpl()` in bodies/s at each batch size. Rasteriser: forward + backward
of one soft silhouette (gradient with respect to the vertices) in silhouettes/s at each
image size, for the body in a T-pose seen from the front filling most of the image, and for
a batch of 16 through `render_silhouettes` (one at a time, its default). Each measurement compiles first, then runs for
at least `--seconds`; the best of `--repeats` runs is kept. JSON goes to stdout and --out.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from geopose_jax import host_memory  # noqa: E402

host_memory.keep_freed_memory()  # as launch.py does, before the first large allocation

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from geopose_jax.body import procedural, raster, smpl  # noqa: E402


def timed(fn, *args, seconds: float, repeats: int) -> float:
  """Best calls/s of `fn(*args)` over `repeats` runs of at least `seconds` each."""
  jax.block_until_ready(fn(*args))
  best = 0.0
  for _ in range(repeats):
    count, start = 0, time.perf_counter()
    while True:
      jax.block_until_ready(fn(*args))
      count += 1
      elapsed = time.perf_counter() - start
      if elapsed >= seconds:
        break
    best = max(best, count / elapsed)
  return best


def skinning(body, batch: int, seconds: float, repeats: int) -> dict:
  rng = np.random.default_rng(0)
  theta = jnp.asarray(rng.normal(size=(batch, 72)) * 0.3, jnp.float32)
  beta = jnp.asarray(rng.normal(size=(batch, body.num_betas)), jnp.float32)

  @jax.jit
  def step(theta, beta):
    def loss(theta, beta):
      vertices, joints = smpl.smpl(body, theta, beta)
      return jnp.mean(vertices ** 2) + jnp.mean(joints ** 2)
    return jax.grad(loss, argnums=(0, 1))(theta, beta)

  calls = timed(step, theta, beta, seconds=seconds, repeats=repeats)
  return {"batch": batch, "bodies_per_s": round(calls * batch, 1),
          "ms_per_step": round(1000.0 / calls, 2)}


def front_camera(size: int):
  R = jnp.diag(jnp.array([1.0, -1.0, -1.0]))
  t = jnp.array([0.0, -0.3, 3.0])
  f = 1.4 * size
  return R, t, jnp.array([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])


def silhouettes(body, size: int, batch: int, seconds: float, repeats: int) -> dict:
  R, t, K = front_camera(size)
  vertices = jnp.asarray(body.v_template)
  faces = body.faces

  @jax.jit
  def one(vertices):
    def loss(vertices):
      xy, depth = raster.project(vertices, R, t, K)
      return jnp.sum(raster.soft_silhouette(xy, depth, faces, (size, size)) ** 2)
    return jax.grad(loss)(vertices)

  single = timed(one, vertices, seconds=seconds, repeats=repeats)
  shifts = jnp.asarray(np.random.default_rng(0).normal(size=(batch, 1, 3)) * 0.05, jnp.float32)
  cams = lambda x: jnp.broadcast_to(x, (batch, 1) + x.shape)  # noqa: E731

  @jax.jit
  def many(shifts):
    def loss(shifts):
      sil = raster.render_silhouettes(vertices[None] + shifts, faces, cams(R), cams(t),
                                      cams(K), (size, size))
      return jnp.sum(sil ** 2)
    return jax.grad(loss)(shifts)

  batched = timed(many, shifts, seconds=seconds, repeats=repeats)
  return {"size": size, "silhouettes_per_s": round(single, 2),
          "ms_per_silhouette": round(1000.0 / single, 1),
          f"batch{batch}_silhouettes_per_s": round(batched * batch, 2)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="", help="SMPL .pkl/.npz; default: procedural body")
  parser.add_argument("--detail", type=float, default=1.25,
                      help="procedural body resolution (1.25: ~7k vertices, SMPL has 6890)")
  parser.add_argument("--batches", default="64,1024")
  parser.add_argument("--sizes", default="64,128")
  parser.add_argument("--raster_batch", type=int, default=16)
  parser.add_argument("--seconds", type=float, default=2.0)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  body = (smpl.load_body_model(args.model) if args.model
          else procedural.procedural_body(detail=args.detail))
  result = {
      "benchmark": "smpl", "model": body.name, "vertices": body.num_vertices,
      "faces": int(body.faces.shape[0]), "device": jax.devices()[0].device_kind,
      "num_devices": jax.device_count(), "cpu_count": os.cpu_count(),
      "platform": platform.platform(), "jax": jax.__version__,
      "skinning_fwd_bwd": [skinning(body, int(b), args.seconds, args.repeats)
                           for b in args.batches.split(",")],
      "silhouette_fwd_bwd": [silhouettes(body, int(s), args.raster_batch, args.seconds,
                                         args.repeats) for s in args.sizes.split(",")],
  }
  text = json.dumps(result, indent=2)
  print(text)
  if args.out:
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
  return 0


if __name__ == "__main__":
  sys.exit(main())

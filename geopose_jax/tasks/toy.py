"""A tiny regression task that exercises the training loop end to end in seconds.

Targets are y = tanh(x A) B + noise for fixed random A, B; a two-layer MLP learns them.
The data is split across hosts by striding (host p takes items p, p + P, ...), so the
global batch of every step holds the same items whatever the number of hosts: one
process on 4 devices and 2 processes on 2 devices each compute the same training run.
`config.init_from` takes another toy run's weights.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import optim
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task


class MLP(nn.Module):
  hidden: int = 32
  out: int = 2

  @nn.compact
  def __call__(self, x):  # (B, D) -> (B, out)
    return nn.Dense(self.out)(nn.relu(nn.Dense(self.hidden)(x)))


def make_examples(num: int, dim: int, seed: int) -> list[dict[str, np.ndarray]]:
  """num examples {x: (dim,), y: (2,)}: inputs drawn with `seed`, one fixed target function."""
  function_rng = np.random.default_rng(1234)
  a = function_rng.normal(size=(dim, 8)).astype(np.float32)
  b = function_rng.normal(size=(8, 2)).astype(np.float32)
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num, dim)).astype(np.float32)
  y = np.tanh(x @ a) @ b + 0.01 * rng.normal(size=(num, 2)).astype(np.float32)
  return [{"x": x[i], "y": y[i].astype(np.float32)} for i in range(num)]


def make_loader(examples, local_batch: int, seed: int, process_index: int, process_count: int):
  """Shuffled, repeated, strided over hosts, batched: a checkpointable Grain iterator."""
  dataset = grain.MapDataset.source(examples).shuffle(seed=seed).repeat()
  dataset = dataset[process_index::process_count].batch(local_batch, drop_remainder=True)
  return dataset.to_iter_dataset()


def init_state(rng: jax.Array, *, model: MLP, dim: int,
               optim_config: ml_collections.ConfigDict) -> TrainState:
  params = model.init(rng, jnp.zeros((1, dim)))["params"]
  return TrainState.create(params, optim.make_optimizer(optim_config, params))


def train_step(state: TrainState, batch, rng, *, model: MLP):
  """One Adam step on the mean squared error of `batch` {x (B, D), y (B, 2)}."""
  del rng

  def loss_fn(params):
    pred = model.apply({"params": params}, batch["x"])
    return jnp.mean((pred - batch["y"]) ** 2)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads), {"loss": loss}


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  source = init_from_lib.resolve(config.init_from, task="toy", runs=("toy",))
  model = MLP(hidden=config.model.hidden)
  local_batch = runtime.local_batch_size(config.train.batch_size)
  predict = jax.jit(lambda params, x: model.apply({"params": params}, x))

  def train_data():
    train = make_examples(config.data.num_train, config.data.dim, seed=config.data.seed)
    return make_loader(train, local_batch, config.seed, runtime.process_index,
                       runtime.process_count)

  def evaluate(state, split):
    del split
    test = make_examples(config.data.num_test, config.data.dim, seed=config.data.seed + 1)
    x = np.stack([e["x"] for e in test])
    y = np.stack([e["y"] for e in test])
    mse = float(np.mean((np.asarray(predict(state.params, x)) - y) ** 2))
    return {"mse": mse, "num_frames": len(test)}

  def start_from(state):
    loaded, _ = init_from_lib.load_run(source)
    return init_from_lib.merge(state, loaded, source=str(source.path), only=("params/.*",))

  return Task(init=functools.partial(init_state, model=model, dim=config.data.dim,
                                     optim_config=config.optim),
              train_step=functools.partial(train_step, model=model),
              train_data=train_data, evaluate=evaluate,
              init_from=start_from if source is not None else None)

"""The adversarial SMPL pose prior (METHODS.md §3): a GAN over (theta, beta).

The discriminator learns to tell SMPL parameters of real people (`smpl_params`: by default
the packaged CMU motion library on SMPL's tree, its test split the CMU subjects that the
synthetic test subjects perform; SURREAL with `:surreal`) from a generator's; the `smpl` task then
uses the trained discriminator, frozen, as an adversarial prior on its predictions
(`config.prior_from` there names this run's workdir).

Evaluation scores held-out real parameters, random ones (uniform joint rotations, the same
betas) and perturbed real ones (each body joint turned by ~0.4 rad) with the discriminator:
a useful prior ranks the real above the random (`real_vs_random_auc` near 1) and above the
perturbed (`real_vs_perturbed_auc` > 0.5), and accepts most real ones (`real_accepted`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from scipy.spatial.transform import Rotation

from geopose_jax.data import batching
from geopose_jax.data import smpl_parameters
from geopose_jax.geometry import rotations
from geopose_jax.models import smpl_prior as prior_lib
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import optim
from geopose_jax.train.mesh import batch_sharded_like
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task

PyTree = Any


def build_models(config: ml_collections.ConfigDict):
  m = config.model
  return (prior_lib.PriorGenerator(num_betas=m.num_betas, hidden=m.generator_hidden,
                                   include_global=m.include_global),
          prior_lib.PriorDiscriminator(features=m.disc_features))


def load_parameters(config: ml_collections.ConfigDict, split: str) -> dict[str, np.ndarray]:
  """The split's theta (N, 72) and beta (N, num_betas), building the dataset if needed."""
  return smpl_parameters.load_parameters(config.data, split, int(config.model.num_betas))


def real_features(theta, beta, include_global: bool) -> jax.Array:
  """(B, 72) axis-angle, (B, S) -> prior features."""
  rot = rotations.axis_angle_to_matrix(theta.reshape(theta.shape[0], 24, 3))
  return prior_lib.prior_features(rot, beta, include_global)


def init_state(config: ml_collections.ConfigDict, rng: jax.Array) -> dict[str, TrainState]:
  """{'generator': optim, 'discriminator': disc_optim} train states."""
  generator, discriminator = build_models(config)
  k_g, k_d = jax.random.split(rng)
  g_vars = generator.init(k_g, jnp.zeros((2, config.model.latent_dim)))
  size = prior_lib.feature_size(config.model.num_betas, config.model.include_global)
  d_vars = discriminator.init(k_d, jnp.zeros((2, size)))
  return {"generator": TrainState.create(
              g_vars["params"], optim.make_optimizer(config.optim, g_vars["params"])),
          "discriminator": TrainState.create(
              d_vars["params"], optim.make_optimizer(config.disc_optim, d_vars["params"],
                                                     key="disc_optim"),
              d_vars["batch_stats"])}


def _bce(logits, label: float):
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)))


def train_step(state, batch, rng, *, generator, discriminator, latent_dim: int,
               include_global: bool):
  """One discriminator update (real parameters against the generator's), then one
  generator update against the updated discriminator.

  Batch: theta (B, 72) axis-angle, beta (B, S).
  """
  g_state, d_state = state["generator"], state["discriminator"]
  real = real_features(batch["theta"], batch["beta"], include_global)
  z = batch_sharded_like(jax.random.normal(rng, (real.shape[0], latent_dim)), real)

  def fake_features(g_params):
    theta, beta = generator.apply({"params": g_params}, z)
    return prior_lib.generated_features(theta, beta, include_global)

  fake = jax.lax.stop_gradient(fake_features(g_state.params))

  def d_loss_fn(d_params):
    logits, updates = discriminator.apply(
        {"params": d_params, "batch_stats": d_state.batch_stats},
        jnp.concatenate([real, fake]), True, mutable=["batch_stats"])
    real_logits, fake_logits = jnp.split(logits, 2)
    loss = _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)
    return loss, (updates["batch_stats"], real_logits, fake_logits)

  (d_loss, (stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(d_state.params)
  d_state = d_state.apply_gradients(d_grads, batch_stats=stats)

  def g_loss_fn(g_params):
    logits, _ = discriminator.apply(
        {"params": d_state.params, "batch_stats": d_state.batch_stats},
        fake_features(g_params), True, mutable=["batch_stats"])
    return _bce(logits, 1.0)

  g_loss, g_grads = jax.value_and_grad(g_loss_fn)(g_state.params)
  g_state = g_state.apply_gradients(g_grads)
  metrics = {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss,
             "d_real_accuracy": jnp.mean(real_logits > 0),
             "d_fake_accuracy": jnp.mean(fake_logits < 0)}
  return {"generator": g_state, "discriminator": d_state}, metrics


def make_train_step(config: ml_collections.ConfigDict):
  generator, discriminator = build_models(config)
  return functools.partial(train_step, generator=generator, discriminator=discriminator,
                           latent_dim=int(config.model.latent_dim),
                           include_global=bool(config.model.include_global))


def discriminator_fn(config: ml_collections.ConfigDict):
  """(discriminator TrainState, (B, 24, 3, 3) rotations, (B, S) betas) -> (B,) logits,
  BatchNorm in inference mode: the frozen prior other tasks use."""
  _, discriminator = build_models(config)

  def score(d_state, rot, beta):
    features = prior_lib.prior_features(rot, beta, config.model.include_global)
    return discriminator.apply({"params": d_state.params, "batch_stats": d_state.batch_stats},
                               features, False)

  return score


def random_rotations_like(rng: np.random.Generator, count: int) -> np.ndarray:
  """(count, 72) axis-angle with every joint's rotation uniform on SO(3)."""
  return Rotation.random(count * 24, random_state=rng).as_rotvec().reshape(count, 72)


def ranking_auc(positive: np.ndarray, negative: np.ndarray) -> float:
  """P(score of a random positive > score of a random negative), ties counting half."""
  scores = np.concatenate([positive, negative])
  ranks = scores.argsort().argsort().astype(np.float64) + 1.0
  n_pos, n_neg = len(positive), len(negative)
  return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _take(item, theta, beta):
  return {"theta": theta[item["index"]], "beta": beta[item["index"]]}


def train_loader(config: ml_collections.ConfigDict, runtime: Runtime):
  data = load_parameters(config, "train")
  local = runtime.local_batch_size(config.train.batch_size)

  return batching.make_batch_loader(
      len(data["theta"]), data_config=config.data, batch_size=local,
      batch_ops=[batching.FnMap(_take, **data)], process_index=runtime.process_index,
      process_count=runtime.process_count, seed=config.seed)


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  """The smpl_prior task for the training loop (see train/task.py)."""
  source = init_from_lib.resolve(config.init_from, task="smpl_prior", runs=("smpl_prior",))
  runtime.local_batch_size(config.train.batch_size)
  generator, _ = build_models(config)
  score = jax.jit(discriminator_fn(config))
  sample = jax.jit(lambda params, z: generator.apply({"params": params}, z))

  def evaluate(state, split):
    data = load_parameters(config, split)
    limit = int(config.eval.max_examples) or len(data["theta"])
    theta, beta = data["theta"][:limit], data["beta"][:limit]
    random_theta = random_rotations_like(np.random.default_rng(config.seed), len(theta))
    batch = int(config.eval.batch_size)

    def scores(theta_aa):
      out = []
      for start in range(0, len(theta_aa), batch):
        rot = rotations.axis_angle_to_matrix(
            np.asarray(theta_aa[start:start + batch], np.float32).reshape(-1, 24, 3))
        out.append(np.asarray(score(state["discriminator"], rot, beta[start:start + batch])))
      return np.concatenate(out)

    # Harder negatives: the real poses with every body joint turned by ~0.4 rad at random.
    noise = np.random.default_rng(config.seed + 1).normal(size=theta.shape) * 0.25
    noise[:, :3] = 0.0
    perturbed_theta = (Rotation.from_rotvec(noise.reshape(-1, 3))
                       * Rotation.from_rotvec(theta.reshape(-1, 3))).as_rotvec()
    real, random = scores(theta), scores(random_theta)
    perturbed = scores(perturbed_theta.reshape(theta.shape))
    z = jax.random.normal(jax.random.PRNGKey(config.seed), (batch, config.model.latent_dim))
    gen_theta, gen_beta = sample(state["generator"].params, z)
    generated = np.asarray(score(state["discriminator"],
                                 rotations.axis_angle_to_matrix(gen_theta), gen_beta))
    return {"real_vs_random_auc": ranking_auc(real, random),
            "real_vs_perturbed_auc": ranking_auc(real, perturbed),
            "real_accepted": float(np.mean(real > 0)),
            "random_rejected": float(np.mean(random < 0)),
            "generated_accepted": float(np.mean(generated > 0)),
            "num_examples": int(len(theta))}

  def visualize(state, out_dir, step):
    from geopose_jax.viz import smpl as smpl_viz  # pylint: disable=g-import-not-at-top
    count = max(1, int(config.viz.num_examples))
    z = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (count, config.model.latent_dim))
    gen_theta, gen_beta = sample(state["generator"].params, z)
    real = load_parameters(config, "test")
    pick = np.linspace(0, len(real["theta"]) - 1, count).round().astype(int)
    return smpl_viz.write_prior_samples(
        out_dir, np.asarray(gen_theta).reshape(count, 72), np.asarray(gen_beta),
        real["theta"][pick], real["beta"][pick], step)

  def start_from(state):
    loaded, _ = init_from_lib.load_run(source)
    return {name: init_from_lib.merge(part, loaded[name], source=str(source.path),
                                      only=("params/.*", "batch_stats/.*"))
            for name, part in state.items()}

  return Task(init=functools.partial(init_state, config), train_step=make_train_step(config),
              train_data=lambda: train_loader(config, runtime), evaluate=evaluate,
              eval_splits=("test",), visualize=visualize,
              init_from=start_from if source is not None else None)

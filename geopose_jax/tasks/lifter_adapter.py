"""2D domain adapter for the self-supervised lifter (Chen et al. CVPR 2019, Sec. 3.4).

A residual MLP A maps 2D poses of a new domain (another detector, another dataset) into the
2D distribution the lifter was trained on, adversarially against a discriminator D_a, in
front of the frozen trained lifter of `config.init_from`:

    python launch.py --config=configs/lifter.py:demo --config.adapter.enabled=true \
        --config.init_from=<lifter run> --workdir=runs/adapt

Evaluation reports P-MPJPE of the lifter on the adapted and on the raw source 2D.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from geopose_jax import metrics
from geopose_jax.data import poses as poses_data
from geopose_jax.models import discriminators
from geopose_jax.models import lifter as lifter_lib
from geopose_jax.tasks import lifter
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task

ADAPTER_KEYS = frozenset({"pose_2d", "source_pose_2d"})


def init_adapter_state(config: ml_collections.ConfigDict, rng: jax.Array
                       ) -> dict[str, TrainState]:
  """{'adapter': DomainAdapter2D, 'adapter_disc': PoseDiscriminator} train states."""
  a = config.adapter
  adapter = lifter_lib.DomainAdapter2D(a.features, a.num_blocks)
  disc = discriminators.PoseDiscriminator(a.features, a.num_blocks)
  dummy = jnp.zeros((2, lifter_lib.NUM_JOINTS, 2), jnp.float32)
  k_a, k_d = jax.random.split(rng)
  return {"adapter": TrainState.create(adapter.init(k_a, dummy)["params"], lifter.adam(a.lr, config)),
          "adapter_disc": TrainState.create(disc.init(k_d, dummy)["params"], lifter.adam(a.lr, config))}


def adapter_train_step(config, state, batch, rng):
  """One adversarial update of the 2D domain adapter A and its discriminator D_a.

  Batch: `pose_2d` (B, J, 2) poses of the lifter's training domain (the "real" ones) and
  `source_pose_2d` (B, J, 2) poses of the new domain, unpaired. A maps normalised source
  poses to poses D_a cannot tell from the training domain; `adapter.identity` weighs
  ||A(x) - x||^2 (body units), which keeps A from inventing poses unrelated to its input.
  The lifter is not touched.
  """
  lifter.check_batch_keys(batch, ADAPTER_KEYS, "adapter")
  a, c, kind = config.adapter, config.model.depth_offset, config.loss.gan
  adapter = lifter_lib.DomainAdapter2D(a.features, a.num_blocks)
  disc = discriminators.PoseDiscriminator(a.features, a.num_blocks)
  target = c * lifter_lib.normalize_pose_2d(batch["pose_2d"], c)
  source = lifter_lib.normalize_pose_2d(batch["source_pose_2d"], c)

  def losses(params):
    adapted = c * lifter_lib.normalize_pose_2d(
        adapter.apply({"params": params["adapter"]}, source), c)
    score = lambda p, poses: disc.apply({"params": p}, poses)
    g_adv = lifter.generator_loss(score(jax.lax.stop_gradient(params["adapter_disc"]), adapted), kind)
    identity = jnp.mean(jnp.square(adapted - c * source))
    adapted_sg = jax.lax.stop_gradient(adapted)
    d_real, d_fake = score(params["adapter_disc"], target), score(params["adapter_disc"],
                                                                 adapted_sg)
    d_loss = lifter.discriminator_loss(d_real, d_fake, kind)
    if kind == "wgan_gp":
      d_loss = d_loss + config.loss.gp * lifter.gradient_penalty(
          lambda m: score(params["adapter_disc"], m), target, adapted_sg, rng)
    g_loss = g_adv + a.identity * identity
    metrics = dict(adapter_g_adv=g_adv, adapter_identity=identity, adapter_d_loss=d_loss,
                   loss=g_loss)
    return g_loss + d_loss, metrics

  params = {k: state[k].params for k in ("adapter", "adapter_disc")}
  grads, metrics = jax.grad(losses, has_aux=True)(params)
  new_state = dict(state)
  for name in params:
    new_state[name] = state[name].apply_gradients(grads[name])
  return new_state, metrics


def adapt(config: ml_collections.ConfigDict, adapter_state: TrainState,
          pose_2d: jax.Array) -> jax.Array:
  """(B, J, 2) source-domain 2D -> (B, J, 2) normalised 2D in the training domain's style."""
  adapter = lifter_lib.DomainAdapter2D(config.adapter.features, config.adapter.num_blocks)
  x = lifter_lib.normalize_pose_2d(pose_2d, config.model.depth_offset)
  return adapter.apply({"params": adapter_state.params}, x)


class PairedIterator:
  """Steps two loaders' iterators together: {pose_2d: target's, source_pose_2d: source's}.

  Its state (for checkpoints) is both iterators' states, so a resumed run sees the same
  pairs.
  """

  def __init__(self, target, source):
    self._its = {"target": iter(target), "source": iter(source)}

  def __iter__(self):
    return self

  def __next__(self):
    target, source = next(self._its["target"]), next(self._its["source"])
    return {"pose_2d": target["pose_2d"], "source_pose_2d": source["pose_2d"]}

  def get_state(self) -> bytes:
    return json.dumps({k: it.get_state().decode() for k, it in self._its.items()}).encode()

  def set_state(self, state: bytes) -> None:
    for name, value in json.loads(state.decode()).items():
      self._its[name].set_state(value.encode())

  def start_prefetch(self) -> None:
    for it in self._its.values():
      if hasattr(it, "start_prefetch"):
        it.start_prefetch()


def load_lifter(config: ml_collections.ConfigDict) -> TrainState:
  """The frozen lifter of `config.init_from` (a lifter run's workdir or checkpoint)."""
  if not config.init_from:
    raise ValueError("config.adapter.enabled needs a trained lifter: set "
                     "--config.init_from=<workdir of a configs/lifter.py run>")
  from geopose_jax.train import checkpoint  # pylint: disable=g-import-not-at-top
  loaded, _ = checkpoint.load_state_dict(config.init_from)
  if "lifter" not in loaded:
    raise ValueError(f"{config.init_from}: no 'lifter' in its checkpoint (keys "
                     f"{sorted(loaded)}); point --config.init_from at a lifter run")
  expected = jax.eval_shape(lambda k: lifter.init_state(config, k), jax.random.key(0))["lifter"]
  got = loaded["lifter"]
  for part in ("params", "batch_stats"):
    want = jax.tree.map(lambda a: tuple(a.shape), getattr(expected, part))
    have = jax.tree.map(lambda a: tuple(np.shape(a)), got.get(part, {}))
    if want != have:
      raise ValueError(f"{config.init_from}: the lifter's {part} do not match "
                       "config.model (features, num_blocks); use the config it was trained "
                       "with (e.g. add :demo)")
  return TrainState.create(got["params"], optax.set_to_zero(), got["batch_stats"])


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  """Adversarial 2D domain adaptation of `config.adapter.source_builder_config`'s 2D poses
  into the distribution of `config.data`'s, in front of a frozen trained lifter."""
  lifter_state = load_lifter(config)
  source_data = ml_collections.ConfigDict(config.data.to_dict())
  a = config.adapter
  if a.source_npz_3d:
    source_data.builder_config = ""
    source_data.npz_2d, source_data.npz_3d = a.source_npz_2d, a.source_npz_3d
  else:
    source_data.builder_config = a.source_builder_config
    source_data.npz_2d, source_data.npz_3d = "", ""

  def init(rng):
    return dict(init_adapter_state(config, rng), lifter=lifter_state)

  def make_data():
    kwargs = dict(split="train", global_batch_size=config.train.batch_size,
                  process_index=runtime.process_index, process_count=runtime.process_count,
                  shuffle=True, num_epochs=None)
    target = poses_data.lifter_frames(config.data, seed=config.seed, **kwargs)
    source = poses_data.lifter_frames(source_data, seed=config.seed + 1, **kwargs)
    return PairedIterator(target, source)

  predict_jit = jax.jit(functools.partial(lifter.predict, config))
  adapt_jit = jax.jit(functools.partial(adapt, config))

  def evaluate(state, split):
    loader = poses_data.labelled_frames(
        source_data, split=split, global_batch_size=config.eval.batch_size,
        process_index=runtime.process_index, process_count=runtime.process_count)
    plain, adapted, gt, actions, valid = [], [], [], [], []
    for batch in loader:
      plain.append(np.asarray(predict_jit(state["lifter"], batch["pose_2d"])))
      adapted.append(np.asarray(predict_jit(state["lifter"],
                                            adapt_jit(state["adapter"], batch["pose_2d"]))))
      gt.append(batch["pose_3d_cam"])
      actions.append(batch["action"])
      valid.append(batch["valid"])
    keep = np.concatenate(valid).astype(bool)
    names = np.asarray(poses_data.load_poses(source_data, split).action_names)
    actions = [names[a] for a in actions]
    gt = np.concatenate(gt)[keep]
    errors = lifter.frame_errors(np.concatenate(adapted)[keep], gt)
    result = lifter.summarize(errors, np.concatenate(actions)[keep])
    unadapted = metrics.h36m_protocol(
        {"pa_mpjpe": lifter.frame_errors(np.concatenate(plain)[keep], gt)["pa_mpjpe"]},
        np.concatenate(actions)[keep])
    result["unadapted_pa_mpjpe"] = unadapted["pa_mpjpe"]
    return result

  return Task(init=init, train_step=functools.partial(adapter_train_step, config),
              train_data=lifter.OnFirstUse(make_data), evaluate=evaluate, eval_splits=("test",))

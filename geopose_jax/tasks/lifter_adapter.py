"""2D domain adapter for the self-supervised lifter (Chen et al. CVPR 2019, Sec. 3.4).

A residual MLP A maps 2D poses of a new domain (another detector, another dataset) into the
2D distribution the lifter was trained on, adversarially against a discriminator D_a, in
front of the frozen trained lifter of `config.init_from`:

    python launch.py --config=configs/lifter.py:adapter --config.init_from=<lifter run> \
        --workdir=runs/adapt

The lifter's model settings are taken from that run (`resolve_config`). Evaluation reports
the lifter's errors on the adapted source 2D, and on the raw source 2D as `unadapted_*`.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import optax

from geopose_jax import adversarial
from geopose_jax import lifter_inference
from geopose_jax.data import poses as poses_data
from geopose_jax.lifting import check_batch_keys
from geopose_jax.errors import InputError
from geopose_jax.models import discriminators
from geopose_jax.models import lifter as lifter_lib
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import optim
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime, Task

ADAPTER_KEYS = frozenset({"pose_2d", "source_pose_2d"})


def make_models(config: ml_collections.ConfigDict):
  """(DomainAdapter2D, its PoseDiscriminator)."""
  a = config.adapter
  return (lifter_lib.DomainAdapter2D(a.features, a.num_blocks),
          discriminators.PoseDiscriminator(a.features, a.num_blocks))


def init_adapter_state(config: ml_collections.ConfigDict, rng: jax.Array
                       ) -> dict[str, TrainState]:
  """{'adapter', 'adapter_disc'} train states ('lifter' is added by the init-from step)."""
  adapter, disc = make_models(config)
  dummy = jnp.zeros((2, lifter_inference.make_lifter(config.model).num_joints, 2), jnp.float32)
  k_a, k_d = jax.random.split(rng)
  a_params = adapter.init(k_a, dummy)["params"]
  d_params = disc.init(k_d, dummy)["params"]
  return {"adapter": TrainState.create(a_params, optim.make_optimizer(config.optim, a_params)),
          "adapter_disc": TrainState.create(
              d_params, optim.make_optimizer(config.disc_optim, d_params, key="disc_optim"))}


def init_state(config: ml_collections.ConfigDict, rng: jax.Array) -> dict:
  """The adapter's states and a placeholder for the frozen lifter (filled by init_from)."""
  state = init_adapter_state(config, rng)
  lifter_model = lifter_inference.make_lifter(config.model)
  variables = lifter_model.init(jax.random.key(0), jnp.zeros((2, lifter_model.num_joints, 2)),
                                train=False)
  state["lifter"] = TrainState.create(variables["params"], optax.set_to_zero(),
                                      variables["batch_stats"])
  return state


def adapter_train_step(state, batch, rng, *, models, depth_offset: float, gan: str,
                       gp: float, identity: float):
  """One adversarial update of the 2D domain adapter A and its discriminator D_a.

  Batch: `pose_2d` (B, J, 2) poses of the lifter's training domain (the "real" ones) and
  `source_pose_2d` (B, J, 2) poses of the new domain, unpaired. A maps normalised source
  poses to poses D_a cannot tell from the training domain; `identity` weighs
  ||A(x) - x||^2 (body units), which keeps A from inventing poses unrelated to its input.
  The lifter is not touched.
  """
  check_batch_keys(batch, ADAPTER_KEYS, "adapter")
  adapter, disc = models
  c = depth_offset
  target = c * lifter_lib.normalize_pose_2d(batch["pose_2d"], c)
  source = lifter_lib.normalize_pose_2d(batch["source_pose_2d"], c)

  def losses(params):
    adapted = c * lifter_lib.normalize_pose_2d(
        adapter.apply({"params": params["adapter"]}, source), c)
    score = lambda p, poses: disc.apply({"params": p}, poses)  # noqa: E731
    g_adv = adversarial.generator_loss(
        score(jax.lax.stop_gradient(params["adapter_disc"]), adapted), gan)
    identity_loss = jnp.mean(jnp.square(adapted - c * source))
    adapted_sg = jax.lax.stop_gradient(adapted)
    d_real = score(params["adapter_disc"], target)
    d_fake = score(params["adapter_disc"], adapted_sg)
    d_loss = adversarial.discriminator_loss(d_real, d_fake, gan)
    if gan == "wgan_gp":
      d_loss = d_loss + gp * adversarial.gradient_penalty(
          lambda m: score(params["adapter_disc"], m), target, adapted_sg, rng)
    g_loss = g_adv + identity * identity_loss
    metrics = dict(adapter_g_adv=g_adv, adapter_identity=identity_loss, adapter_d_loss=d_loss,
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
  adapter, _ = make_models(config)
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


def source_data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.data` pointed at the new domain's 2D (an h36m_poses config or npz files)."""
  source = ml_collections.ConfigDict(config.data.to_dict())
  a = config.adapter
  if a.source_npz_3d:
    source.builder_config = ""
    source.npz_2d, source.npz_3d = a.source_npz_2d, a.source_npz_3d
  else:
    source.builder_config = a.source_builder_config
    source.npz_2d, source.npz_3d = "", ""
  return source


def resolve_source(config: ml_collections.ConfigDict) -> init_from_lib.Source:
  source = init_from_lib.resolve(config.init_from, task="lifter_adapter", runs=("lifter",))
  if source is None:
    raise InputError(
        "lifter_adapter adapts a trained lifter: set --config.init_from=<workdir of a "
        "configs/lifter.py run>")
  return source


def resolve_config(config: ml_collections.ConfigDict) -> None:
  """The frozen lifter's model settings come from its run."""
  init_from_lib.adopt_config(config, resolve_source(config), ("model",))


def build(config: ml_collections.ConfigDict, runtime: Runtime) -> Task:
  """Adversarial 2D domain adaptation of `config.adapter`'s source 2D into the distribution
  of `config.data`'s, in front of a frozen trained lifter."""
  source = resolve_source(config)
  if runtime.process_count > 1:
    raise InputError("the 2D domain adapter runs on one process; drop --multihost")
  if config.loss.gan not in adversarial.GAN_KINDS:
    raise ValueError(f"config.loss.gan={config.loss.gan!r}; expected one of "
                     f"{adversarial.GAN_KINDS}")
  source_data = source_data_config(config)

  def make_data():
    kwargs = dict(split="train", global_batch_size=config.train.batch_size,
                  process_index=runtime.process_index, process_count=runtime.process_count,
                  shuffle=True, num_epochs=None, frame_step=config.data.frame_step)
    target = poses_data.lifter_frames(config.data, seed=config.seed, **kwargs)
    source_frames = poses_data.lifter_frames(source_data, seed=config.seed + 1, **kwargs)
    return PairedIterator(target, source_frames)

  predict_jit = jax.jit(functools.partial(lifter_inference.predict, config))
  adapt_jit = jax.jit(functools.partial(adapt, config))

  def evaluate(state, split):
    return lifter_inference.evaluate_lifter(config, runtime, predict_jit, state, split,
                                  data_config=source_data,
                                  adapt=lambda x: adapt_jit(state["adapter"], x))

  def start_from(state):
    loaded, _ = init_from_lib.load_run(source)
    if "lifter" not in loaded:
      raise InputError(f"--config.init_from={source.path}: no lifter in its "
                                     "checkpoint")
    state = dict(state)
    state["lifter"] = init_from_lib.merge(state["lifter"], loaded["lifter"],
                                          source=str(source.path),
                                          only=("params/.*", "batch_stats/.*"))
    return state

  step = functools.partial(adapter_train_step, models=make_models(config),
                           depth_offset=config.model.depth_offset, gan=config.loss.gan,
                           gp=float(config.loss.gp), identity=float(config.adapter.identity))
  def predict(state, sequence):
    return lifter_inference.predict_keypoints(config, runtime, predict_jit, state, sequence,
                                    adapt=lambda x: adapt_jit(state["adapter"], x))

  return Task(init=functools.partial(init_state, config), train_step=step,
              train_data=make_data, evaluate=evaluate, eval_splits=("test",),
              init_from=start_from, predict=predict,
              predict_metadata=lifter_inference.predict_metadata(config, adapted=True),
              predict_from_init_from=False)   # init_from gives the lifter, not the adapter

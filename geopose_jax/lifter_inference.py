"""A trained lifter applied: lifting in millimetres, evaluation, prediction on keypoints.

Shared by the lifter task (tasks/lifter.py) and its 2D domain adapter
(tasks/lifter_adapter.py), which lifts with a trained lifter behind the adapter.

The lifter cannot observe scale, so its pose is brought to millimetres with one fixed body
size (`eval.body_scale_mm`, the mean joint-to-root distance of an adult skeleton): `mpjpe`
is the plain root-centred error under that assumption, `n_mpjpe` the error after the
per-frame least-squares scale (VideoPose3D's N-MPJPE), `pa_mpjpe` after a similarity
Procrustes fit (the primary metric of Chen et al.), and `constant_depth_*` the same for the
flat lift every lifter must beat.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from geopose_jax import evaluation
from geopose_jax import keypoints
from geopose_jax import protocol_eval
from geopose_jax.data import poses as poses_data
from geopose_jax.lifting import constant_depth_lift, in_millimetres
from geopose_jax.models import lifter as lifter_lib
from geopose_jax.train import prediction
from geopose_jax.train.state import TrainState
from geopose_jax.train.task import Runtime


def make_lifter(model: ml_collections.ConfigDict) -> lifter_lib.Lifter:
  """The lifter of `config.model` (a run saved before `num_joints` existed has 17)."""
  return lifter_lib.Lifter(model.features, model.num_blocks, model.dropout, model.depth_offset,
                           num_joints=int(model.get("num_joints", lifter_lib.NUM_JOINTS)))



def predict(config: ml_collections.ConfigDict, lifter_state: TrainState,
            pose_2d: jax.Array) -> jax.Array:
  """(B, J, 2) normalised screen coordinates -> (B, J, 3) lifted pose in lifter units."""
  lifter = make_lifter(config.model)
  x = lifter_lib.normalize_pose_2d(pose_2d, config.model.depth_offset)
  return lifter.apply({"params": lifter_state.params, "batch_stats": lifter_state.batch_stats},
                      x, train=False)


# --------------------------------------------------------------------------- evaluation
EVAL_CONVENTION = evaluation.Convention(
    root="both", notes=("the lifter's scale is unobservable: its pose is brought to mm with "
                        "one body size, eval.body_scale_mm (mean joint-to-root distance); "
                        "n_mpjpe and pa_mpjpe do not depend on it",))


def evaluate_on_protocol(config: ml_collections.ConfigDict, runtime: Runtime, predict_jit,
                         state, target: protocol_eval.EvalTarget) -> dict:
  """The lifter through a dataset's own protocol (protocol_eval), in mm with one body size."""
  scale = float(config.eval.body_scale_mm)

  def predict_mm(pose_2d):
    return np.asarray(in_millimetres(predict_jit(state["lifter"], pose_2d), scale))

  return protocol_eval.evaluate(
      target, predict_mm, runtime, num_joints=make_lifter(config.model).num_joints,
      batch_size=int(config.eval.batch_size), notes=EVAL_CONVENTION.notes,
      progress=bool(config.train.progress_bar))


def evaluate_lifter(config: ml_collections.ConfigDict, runtime: Runtime, predict_jit,
                    state, split: str, data_config: ml_collections.ConfigDict | None = None,
                    adapt: Callable[[jax.Array], jax.Array] | None = None) -> dict:
  """The evaluator over the split's labelled frames; `adapt` maps 2D before lifting (the
  domain adapter), and then the unadapted lift is reported as `unadapted_*`."""
  data_config = data_config or config.data
  table = poses_data.load_poses(data_config, split)
  loader = poses_data.labelled_frames(
      data_config, split=split, global_batch_size=config.eval.batch_size,
      process_index=runtime.process_index, process_count=runtime.process_count)
  scale, c = float(config.eval.body_scale_mm), config.model.depth_offset

  def predict_fn(batch):
    pose_2d = jnp.asarray(runtime.gather_local(batch["pose_2d"]))
    lifted = adapt(pose_2d) if adapt is not None else pose_2d
    out = {"pose_3d": in_millimetres(predict_jit(state["lifter"], lifted), scale),
           "constant_depth": in_millimetres(constant_depth_lift(pose_2d, c), scale)}
    if adapt is not None:
      out["unadapted"] = in_millimetres(predict_jit(state["lifter"], pose_2d), scale)
    return out

  extra = ("constant_depth",) + (("unadapted",) if adapt is not None else ())
  return evaluation.evaluate_frames(
      predict_fn, loader, runtime, info=evaluation.SequenceInfo.from_names(table.names),
      convention=EVAL_CONVENTION,
      max_examples=int(config.eval.max_examples), extra_poses=extra,
      progress=bool(config.train.progress_bar), desc=f"eval {split}")


# --------------------------------------------------------------------------- prediction
def predict_metadata(config: ml_collections.ConfigDict, adapted: bool = False) -> dict:
  """What poses_3d.json says about the lifter's poses."""
  return {
      "model": "domain adapter, then the self-supervised lifter" if adapted else (
          "lifter trained from 3D labels" if config.supervised else
          "self-supervised lifter (Chen et al. 2019)"),
      "root": "root-relative: the pelvis (joint 0) is at the origin of the camera frame in "
              "every frame; the lifter does not estimate where the person is",
      "scale": f"unobservable from 2D: each frame is scaled so that its mean joint-to-pelvis "
               f"distance is eval.body_scale_mm = {float(config.eval.body_scale_mm):g} mm",
  }


def predict_keypoints(config: ml_collections.ConfigDict, runtime: Runtime, predict_jit,
                      state, sequence, adapt: Callable[[jax.Array], jax.Array] | None = None
                      ) -> dict[str, np.ndarray]:
  """A user's keypoint sequence -> {'pose_3d_mm': (N, 17, 3)}, lifted frame by frame in
  batches of `eval.batch_size`, in mm as the evaluation measures it (`in_millimetres`)."""
  pose_2d = keypoints.normalized_pose_2d(sequence)
  scale = float(config.eval.body_scale_mm)

  def lift(batch):
    x = jnp.asarray(batch)
    x = adapt(x) if adapt is not None else x
    return np.asarray(in_millimetres(predict_jit(state["lifter"], x), scale))

  poses = prediction.predict_in_chunks(
      lift, len(pose_2d), lambda frames: pose_2d[frames],
      batch_size=int(config.eval.batch_size), num_devices=1,
      progress=bool(config.train.progress_bar) and runtime.process_index == 0,
      desc=f"lift {sequence.name}")
  return {"pose_3d_mm": poses}

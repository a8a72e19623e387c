"""Cross-dataset evaluation (`--config.eval.dataset`) and HumanEva-I training, end to end on
tiny fakes: a lifter trained on Human3.6M-format poses (17 joints) scored by the
MPI-INF-3DHP and HumanEva-I protocols; an RIE trained on HumanEva's 15 joints, scored by
HumanEva's protocol, then on MPI-INF-3DHP and Human3.6M."""

import copy
import json

import jax
import numpy as np
import pytest

from configs import lifter as lifter_config
from configs import rie as rie_config
from geopose_jax import protocol_eval
from geopose_jax import skeleton
from geopose_jax.errors import ConfigError
from geopose_jax.protocols import humaneva as humaneva_protocol
from geopose_jax.protocols import mpi_inf_3dhp as mpi3dhp_protocol
from geopose_jax import lifter_inference
from geopose_jax import lifting
from geopose_jax.tasks import lifter as lifter_task
from geopose_jax.train import loop
import fake_humaneva  # tests/ is on sys.path under pytest
import fake_mpi_inf_3dhp
import fake_poses

H36M_SEQUENCES = {"S1": {"Walking 1": 12, "Eating": 8}, "S9": {"WalkDog": 6},
                  "S11": {"Sitting 1": 5}}
MPI3DHP_FRAMES = {"TS1": 4, "TS2": 3, "TS3": 3, "TS4": 3, "TS5": 3, "TS6": 3}
HUMANEVA_CHUNKS = {"Train/S1": {"Walking 1 chunk0": 40, "Box 1 chunk0": 30},
                   "Train/S2": {"Jog 1 chunk0": 30},
                   "Validate/S2": {"Jog 1 chunk0": 6}, "Validate/S3": {"Walking 1 chunk0": 5}}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  root = tmp_path_factory.mktemp("cross")
  path_3d, path_2d = fake_poses.write_videopose3d_npz(root / "h36m", H36M_SEQUENCES)
  written_3dhp = fake_mpi_inf_3dhp.write_test_set(root / "mpi_inf_3dhp", MPI3DHP_FRAMES,
                                                  images=False)
  fake_humaneva.write_moving_body(root / "humaneva", HUMANEVA_CHUNKS)
  return {"root": root, "data_dir": str(root / "data"), "npz": (str(path_3d), str(path_2d)),
          "mpi_inf_3dhp": str(root / "mpi_inf_3dhp"), "humaneva": str(root / "humaneva"),
          "written_3dhp": written_3dhp}


def _quiet(config, data_dir):
  config.train.progress_bar = False
  config.train.log_every = 1
  config.train.eval_every = 0
  config.train.checkpoint_every = 0
  config.data.data_dir = data_dir
  return config


def _cross(config, dataset, manual_dir, **eval_keys):
  config = copy.deepcopy(config)
  if "test_time_flip" in config.eval:
    config.eval.test_time_flip = False
  config.eval.dataset = dataset
  config.eval.manual_dir = manual_dir
  config.eval.update(eval_keys)
  return config


def _tables(workdir, label):
  written = json.loads((workdir / "eval" / f"{label}.json").read_text())
  markdown = (workdir / "eval" / f"{label}.md").read_text()
  return written, markdown


def _valid_3dhp_frames():
  return sum(n - 1 for n in MPI3DHP_FRAMES.values())   # frame 1 of each is invalid


def test_lifter_trained_on_h36m_scored_by_3dhp_and_humaneva(sources, tmp_path):
  config = lifter_config.get_config("demo")
  config.model.features = config.disc.features = 16
  config.model.num_blocks = config.disc.num_blocks = 1
  config.train.batch_size, config.eval.batch_size = 8, 64
  config.train.steps = 2
  config.viz.num_examples, config.viz.gif_frames = 1, 2
  _quiet(config, sources["data_dir"])
  config.data.npz_3d, config.data.npz_2d = sources["npz"]
  workdir = tmp_path / "lifter"
  loop.run(config, workdir, "train")

  cross = _cross(config, "mpi_inf_3dhp", sources["mpi_inf_3dhp"], mpi3dhp_grouping="no_torso14",
                 mpi3dhp_target="annot3")
  result = loop.run(cross, workdir, "eval")["mpi_inf_3dhp_test"]
  written, markdown = _tables(workdir, "mpi_inf_3dhp_test")
  assert written["protocol"] == "mpi_inf_3dhp" and written["grouping"] == "no_torso14"
  assert written["annotation"] == "annot3" and written["num_frames"] == _valid_3dhp_frames()
  assert list(written["per_sequence"]) == list(MPI3DHP_FRAMES)
  assert written["joint_map"] == "H36M-17 throughout" and written["model_joints"] == "H36M-17"
  assert "14 joints (no pelvis, spine, head)" in markdown and "| TS6 |" in markdown
  assert "body size" in markdown                                    # the lifter's note

  # The same table by hand: every valid frame lifted on its own, mapped to mm with the
  # body size, and scored by the protocol on the release's own (3DHP-order) annot3.
  from geopose_jax.data import sources as sources_lib
  from geopose_jax.data import eval_sequences
  target = protocol_eval.eval_targets(cross, ("test",))["mpi_inf_3dhp_test"]
  builder = sources_lib.open_dataset(target.data_config)
  seqs = eval_sequences.read_eval_sequences(str(builder.data_dir), "test", target="annot3")
  state = _lifter_state(cross, workdir)
  preds, truths, names, activities, valid = [], [], [], [], []
  for seq in seqs:
    written_seq = sources["written_3dhp"][seq.sequence]
    for f in range(len(seq.pose_2d)):
      lifted = lifter_inference.predict(cross, state["lifter"], seq.pose_2d[f:f + 1])
      preds.append(np.asarray(lifting.in_millimetres(lifted, cross.eval.body_scale_mm))[0])
      truths.append(written_seq["pose_3d"][f])
      names.append(seq.sequence)
      activities.append(written_seq["activity"][f])
      valid.append(written_seq["valid"][f])
  by_hand = mpi3dhp_protocol.evaluate(
      skeleton.h36m_to_mpi3dhp(np.stack(preds)), np.stack(truths), names, activities, valid,
      grouping="no_torso14", joint_order="mpi_inf_3dhp", annotation="annot3")
  for key in ("PCK", "AUC", "MPJPE"):
    assert result[key] == pytest.approx(by_hand[key], abs=0.051)
    assert written[key] == result[key]
  assert 0 < result["MPJPE"] < 2000

  cross = _cross(config, "humaneva", sources["humaneva"])
  result = loop.run(cross, workdir, "eval")["humaneva_validate"]
  written, markdown = _tables(workdir, "humaneva_validate")
  assert written["protocol"] == "humaneva" and written["num_frames"] == 3 * (6 + 5)
  assert set(written["per_action"]) == {"Walk S3", "Jog S2"}
  assert "Spine and Neck/Nose filled by midpoints" in written["joint_map"]
  assert "| Jog S2 |" in markdown and np.isfinite(result["mpjpe"]) and result["pa_mpjpe"] > 0


def _lifter_state(config, workdir):
  """The newest checkpoint of a lifter run, restored as `--mode=eval` restores it."""
  from geopose_jax.train import checkpoint as checkpoint_lib
  from geopose_jax.train import mesh as mesh_lib
  runtime = mesh_lib.make_runtime(workdir)
  task = lifter_task.build(config, runtime)
  checkpointer = checkpoint_lib.Checkpointer(workdir)
  abstract = loop._abstract_state(task, jax.random.fold_in(jax.random.key(config.seed), 0),
                                  runtime)
  _, state = checkpointer.restore(abstract)
  checkpointer.close()
  return state


def tiny_rie(variant="demo"):
  config = rie_config.get_config(variant)
  config.model.filter_widths = "3"
  config.model.channels = 8
  config.model.latent_dim = 4
  config.model.fc_hidden = 8
  config.train.batch_size = 8
  config.eval.batch_size = 8
  config.optim.steps_per_epoch = 2
  config.viz.max_frames = 2
  return config



def test_rie_trains_on_humaneva_and_its_loss_falls(sources, tmp_path):
  config = _quiet(tiny_rie("demo,humaneva"), sources["data_dir"])
  config.model.filter_widths = "3,3"
  config.model.channels = 32
  config.model.latent_dim = 16
  config.model.fc_hidden = 32
  config.model.dropout = config.model.fc_dropout = 0.0
  config.data.manual_dir = sources["humaneva"]
  config.train.batch_size = 32
  config.train.steps = 80
  config.optim.lr = 3e-3
  config.optim.steps_per_epoch = 20
  config.eval.batch_size = 64         # every split in one call: one compilation per evaluation
  assert config.model.num_joints == 15 and config.eval.splits == ("validate",)
  workdir = tmp_path / "rie_humaneva"
  result = loop.run(config, workdir, "train")["validate"]
  losses = [json.loads(line)["train/loss"] for line in
            (workdir / "metrics.jsonl").read_text().splitlines() if "train/loss" in line]
  assert len(losses) >= 40
  first, last = np.mean(losses[:5]), np.mean(losses[-5:])
  assert last < 0.6 * first, (first, last)
  # Its own data through HumanEva's protocol: P1/P2 per action and subject of Validate.
  assert result["protocol"] == "humaneva" and result["model_joints"] == "HumanEva-15"
  assert set(result["per_action"]) == {"Walk S3", "Jog S2"}
  assert result["per_action"]["Jog S2"]["num_frames"] == 3 * 6
  cells = [result["per_action"][c]["mpjpe"] for c in ("Walk S3", "Jog S2")]
  assert result["mpjpe"] == pytest.approx(np.mean(cells), abs=0.051)

  # A 15-joint model on 3DHP: only the grouping without the joints it lacks.
  with pytest.raises(ConfigError, match="mpi3dhp_grouping=no_torso14"):
    loop.run(_cross(config, "mpi_inf_3dhp", sources["mpi_inf_3dhp"]), workdir, "eval")
  cross = _cross(config, "mpi_inf_3dhp", sources["mpi_inf_3dhp"], mpi3dhp_grouping="no_torso14")
  result = loop.run(cross, workdir, "eval")["mpi_inf_3dhp_test"]
  assert result["num_frames"] == _valid_3dhp_frames() and 0 < result["MPJPE"] < 5000
  assert any("filled by midpoints" in note for note in result["notes"])
  written, markdown = _tables(workdir, "mpi_inf_3dhp_test")
  assert written["step"] == 80 and "| **all** |" in markdown and "Note: MPJPE" in markdown

  # ... and on Human3.6M (the evaluator's table, over the 15 joints the model has).
  cross = _cross(config, "h36m_poses", str(sources["root"] / "h36m"), builder_config="npz")
  result = loop.run(cross, workdir, "eval")["h36m_poses_test"]
  assert set(result["per_action"]) == {"WalkDog", "Sitting"}
  assert result["num_frames"] == 4 * (6 + 5)
  assert result["convention"]["joints"] == "HumanEva-15 of H36M-17"
  assert 0 < result["mpjpe"] < 5000 and 0 < result["pa_mpjpe"] <= result["mpjpe"] + 0.1


def test_eval_keys_are_checked_before_any_data_is_read():
  config = lifter_config.get_config("demo")
  config.eval.manual_dir = "/somewhere"
  with pytest.raises(ConfigError, match="eval.manual_dir is set but --config.eval.dataset"):
    protocol_eval.eval_targets(config, ("test",))
  config = lifter_config.get_config("demo")
  config.eval.dataset = "mpii"
  with pytest.raises(ConfigError, match="eval.dataset='mpii'"):
    protocol_eval.eval_targets(config, ("test",))
  config.eval.dataset, config.eval.mpi3dhp_grouping = "mpi_inf_3dhp", "all14"
  with pytest.raises(ConfigError, match="mpi3dhp_grouping='all14'"):
    protocol_eval.eval_targets(config, ("test",))
  config.eval.mpi3dhp_grouping, config.eval.mpi3dhp_target = "all17", "univ"
  with pytest.raises(ConfigError, match="mpi3dhp_target='univ'"):
    protocol_eval.eval_targets(config, ("test",))
  config.eval.mpi3dhp_target = "univ_annot3"
  targets = protocol_eval.eval_targets(config, ("test",))
  assert list(targets) == ["mpi_inf_3dhp_test"]
  assert targets["mpi_inf_3dhp_test"].data_config.data_dir == config.data.data_dir


def test_joint_maps_round_trip_the_humaneva_joints():
  rng = np.random.default_rng(0)
  pose = rng.normal(size=(3, 15, 3))
  h36m = protocol_eval.to_layout(pose, "humaneva15", "h36m")
  np.testing.assert_array_equal(protocol_eval.to_layout(h36m, "h36m", "humaneva15"), pose)
  np.testing.assert_allclose(h36m[:, 7], 0.5 * (pose[:, 0] + pose[:, 1]))
  # HumanEva's protocol on a perfect prediction made in H36M order.
  result = humaneva_protocol.evaluate(protocol_eval.to_layout(h36m, "h36m", "humaneva15"),
                                      pose * 1.0, ["S1"] * 3, ["Walk"] * 3)
  assert result["mpjpe"] == 0.0


def test_lifter_trains_and_evaluates_on_humaneva(sources, tmp_path):
  config = lifter_config.get_config("demo,humaneva")
  config.model.features = config.disc.features = 16
  config.model.num_blocks = config.disc.num_blocks = 1
  config.train.batch_size, config.eval.batch_size = 8, 64
  config.train.steps = 2
  config.viz.num_examples, config.viz.gif_frames = 1, 2
  _quiet(config, sources["data_dir"]).data.manual_dir = sources["humaneva"]
  assert "test_subjects" not in config.data
  workdir = tmp_path / "lifter_humaneva"
  result = loop.run(config, workdir, "train")["validate"]
  assert result["protocol"] == "humaneva" and result["model_joints"] == "HumanEva-15"
  assert set(result["per_action"]) == {"Walk S3", "Jog S2"} and result["num_frames"] == 33
  assert (workdir / "eval" / "validate.md").read_text().count("| Jog S2 |") == 1
  assert (workdir / "viz" / "lifter_examples.png").stat().st_size > 0   # drawn as H36M-17

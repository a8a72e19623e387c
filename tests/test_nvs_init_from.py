"""--config.init_from of the NVS family through `loop.run`: each accepted kind is put into the
fresh state, and each refusal is one line before any dataset is read."""

import json

import jax
import numpy as np
import pytest

from configs import nvs as nvs_config
from configs import nvs_pose as nvs_pose_config
from configs import smpl as smpl_config
from geopose_jax.convert import rhodin
from geopose_jax.errors import InputError
from geopose_jax.models import nvs_synthesis as synthesis
from geopose_jax.models import pose_head
from geopose_jax.tasks import nvs
from geopose_jax.tasks import nvs_pose
from geopose_jax.train import checkpoint
from geopose_jax.train import loop
import fake_poses  # tests/ is on sys.path under pytest


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  folder = tmp_path_factory.mktemp("multiview")
  return str(folder), fake_poses.build_fake_multiview(folder)


def _config(config, data, steps=0):
  folder, name = data
  config = fake_poses.tiny_multiview_run(config, folder, name, steps, batch_size=16)
  config.viz.num_examples = 0
  config.eval.max_examples = 8
  return config


def _fake_rhodin(path, model, head):
  """A state dict with the original's names and random values for `model` and `head`."""
  rng = np.random.default_rng(3)
  shapes = rhodin.expected_torch_shapes(model, head)
  # Small weights and positive variances: finite outputs through the whole network.
  values = {k: (1.0 + np.abs(rng.normal(size=s)) if k.endswith("running_var")
                else 0.05 * rng.normal(size=s)).astype(np.float32) for k, s in shapes.items()}
  np.savez(path, **values)
  return rhodin.load_checkpoint(path, model, head)


def _assert_same(tree_a, tree_b):
  flat_a = jax.tree_util.tree_flatten_with_path(tree_a)[0]
  flat_b = dict(jax.tree_util.tree_flatten_with_path(tree_b)[0])
  assert flat_a and len(flat_a) == len(flat_b)
  for path, leaf in flat_a:
    np.testing.assert_array_equal(np.asarray(leaf), np.asarray(flat_b[path]), err_msg=str(path))


def _untouched_data(config):
  """A data folder that fails if anything reads it."""
  config.data.data_dir = "/nonexistent/geopose_no_data_here"
  return config


def test_nvs_starts_from_rhodin_file_and_from_an_nvs_run(data, tmp_path):
  config = _config(nvs_config.get_config("demo"), data)
  model = synthesis.build_model(config.model.net)
  converted = _fake_rhodin(tmp_path / "network_best_val_t1.npz", model, pose_head.PoseHead())
  config.init_from = str(tmp_path / "network_best_val_t1.npz")
  loop.run(config, tmp_path / "from_file")        # 0 steps: the saved state is the start
  saved, step = checkpoint.load_state_dict(tmp_path / "from_file")
  assert step == 0
  _assert_same(saved["params"], converted["nvs"]["params"])
  _assert_same(saved["batch_stats"], converted["nvs"]["batch_stats"])

  again = _config(nvs_config.get_config("demo"), data)
  again.init_from = str(tmp_path / "from_file")
  again.seed = 7                                  # a different fresh init, overwritten
  loop.run(again, tmp_path / "from_run")
  resumed, _ = checkpoint.load_state_dict(tmp_path / "from_run")
  _assert_same(resumed["params"], saved["params"])
  _assert_same(resumed["batch_stats"], saved["batch_stats"])


def test_the_pth_suffix_is_accepted_for_the_original_file(tmp_path):
  (tmp_path / "network_best_val_t1.pth").write_bytes(b"")
  for module, task_config in ((nvs, nvs_config), (nvs_pose, nvs_pose_config)):
    source = module.resolve_source(_with_init(str(tmp_path / "network_best_val_t1.pth"),
                                              task_config))
    assert source.kind == "file"


def _with_init(path, task_config=nvs_config):
  config = task_config.get_config("demo")
  config.init_from = path
  return config


def _lifter_run(tmp_path):
  run = tmp_path / "lifter_run"
  run.mkdir()
  (run / "config.json").write_text(json.dumps({"task": "lifter"}))
  return run


@pytest.mark.parametrize("task_config", [nvs_config, nvs_pose_config, smpl_config])
def test_refusals_are_one_line_before_any_data(task_config, tmp_path):
  (tmp_path / "notes.txt").write_text("not weights")
  cases = {str(tmp_path / "missing"): "no such file",
           str(_lifter_run(tmp_path)): "is a 'lifter' run",
           str(tmp_path / "notes.txt"): "not a file this task reads"}
  for path, message in cases.items():
    config = _untouched_data(_with_init(path, task_config))
    with pytest.raises(InputError, match=message) as error:
      loop.run(config, tmp_path / "refused")
    assert "\n" not in str(error.value) and path in str(error.value)


def test_smpl_prior_from_is_checked_before_any_data(tmp_path):
  config = _untouched_data(_with_init(str(tmp_path), smpl_config))
  nvs_run = tmp_path / "nvs_run"
  nvs_run.mkdir()
  (nvs_run / "config.json").write_text(json.dumps({"task": "nvs"}))
  config.init_from = str(nvs_run)
  config.prior_from = str(nvs_run)
  with pytest.raises(InputError, match=r"--config.prior_from=.* is a 'nvs' run; smpl accepts"):
    loop.run(config, tmp_path / "refused")


def test_nvs_pose_takes_the_original_head_and_its_own_runs(data, tmp_path):
  config = _config(nvs_pose_config.get_config("demo"), data)
  config.model.head_hidden = 16
  model = synthesis.build_model(config.model.net)
  converted = _fake_rhodin(tmp_path / "original.npz", model, nvs_pose.build_head(config))
  config.init_from = str(tmp_path / "original.npz")
  loop.run(config, tmp_path / "pose")
  saved, _ = checkpoint.load_state_dict(tmp_path / "pose")
  _assert_same(saved["params"]["nvs"], converted["nvs"]["params"])
  _assert_same(saved["params"]["head"], converted["pose_head"]["params"])
  _assert_same(saved["batch_stats"]["head"], converted["pose_head"]["batch_stats"])
  # The label statistics are filled from the training labels and saved with the state.
  mean, std = nvs_pose.pose_statistics(nvs_pose.labelled_poses(config.data))
  np.testing.assert_array_equal(saved["batch_stats"]["pose_targets"]["mean"], mean)
  np.testing.assert_array_equal(saved["batch_stats"]["pose_targets"]["std"], std)
  written = json.loads((tmp_path / "pose" / "config.json").read_text())
  assert written["optim"]["frozen"] == ["nvs/.*"]

  again = _config(nvs_pose_config.get_config("demo"), data)
  again.model.head_hidden = 16
  again.init_from = str(tmp_path / "pose")
  again.seed = 5
  loop.run(again, tmp_path / "pose_again")
  resumed, _ = checkpoint.load_state_dict(tmp_path / "pose_again")
  _assert_same(resumed["params"], saved["params"])

"""Starting a run from another: resolve (what is accepted) and merge (what is taken)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import toy as toy_config
from geopose_jax.errors import InputError
from geopose_jax.train import checkpoint as checkpoint_lib
from geopose_jax.train import init_from
from geopose_jax.train import loop
from geopose_jax.train.state import TrainState
import optax


def _fake_run(folder, task="toy"):
  folder.mkdir(parents=True)
  (folder / "config.json").write_text(json.dumps({"task": task, "model": {"hidden": 4}}))
  return folder


def test_resolve_refuses_in_one_line(tmp_path):
  with pytest.raises(InputError, match="no such file or folder; toy accepts the workdir of "
                     "a toy run"):
    init_from.resolve(str(tmp_path / "missing"), task="toy", runs=("toy",))
  random_file = tmp_path / "weights.bin"
  random_file.write_bytes(b"\x00" * 10)
  with pytest.raises(InputError, match="not a file this task reads"):
    init_from.resolve(str(random_file), task="toy", runs=("toy",))
  with pytest.raises(InputError, match="is a 'lifter' run; toy accepts"):
    init_from.resolve(str(_fake_run(tmp_path / "lifter_run", "lifter")), task="toy",
                      runs=("toy",))
  (tmp_path / "plain").mkdir()
  with pytest.raises(InputError, match="not the workdir of a geopose_jax run"):
    init_from.resolve(str(tmp_path / "plain"), task="toy", runs=("toy",))
  with pytest.raises(InputError, match="does not start from another run"):
    init_from.resolve(str(tmp_path / "plain"), task="smpl_prior")
  assert init_from.resolve("", task="toy", runs=("toy",)) is None
  checkpoints = _fake_run(tmp_path / "toy_run") / "checkpoints"
  checkpoints.mkdir()
  source = init_from.resolve(str(checkpoints), task="toy", runs=("toy",))
  assert source.kind == "run" and source.task == "toy"


def _state(width=3):
  params = {"encoder": {"kernel": jnp.zeros((2, width))}, "head": {"bias": jnp.zeros(4)}}
  return TrainState.create(params, optax.adam(1e-3), {"bn": {"mean": jnp.zeros(2)}})


def test_merge_takes_only_what_is_named_and_checks_shapes():
  fresh = _state()
  loaded = {"params": {"encoder": {"kernel": np.ones((2, 3))}, "head": {"bias": np.ones(4)}},
            "batch_stats": {"bn": {"mean": np.full(2, 5.0)}}}
  merged = init_from.merge(fresh, loaded, source="run", only=("params/encoder/.*",))
  np.testing.assert_array_equal(merged.params["encoder"]["kernel"], np.ones((2, 3)))
  np.testing.assert_array_equal(merged.params["head"]["bias"], np.zeros(4))   # not taken
  np.testing.assert_array_equal(merged.batch_stats["bn"]["mean"], np.zeros(2))
  # A prefix maps a sub-tree of the source into another place of the state.
  nested = {"nvs": {"kernel": np.full((2, 3), 7.0)}}
  into = init_from.merge(fresh, nested, source="run", into="params/encoder", take="nvs")
  np.testing.assert_array_equal(into.params["encoder"]["kernel"], np.full((2, 3), 7.0))

  with pytest.raises(InputError) as error:
    init_from.merge(_state(width=5), loaded, source="run", only=("params/.*",))
  message = str(error.value)
  assert "params/encoder/kernel is (2, 3), the model has (2, 5)" in message
  assert "\n" not in message
  with pytest.raises(InputError, match="to take"):
    init_from.merge(fresh, loaded, source="run", only=("params/decoder/.*",))


def _toy_config(steps, **kw):
  config = toy_config.get_config()
  config.train.progress_bar = False
  config.train.eval_every = 0
  config.train.steps = steps
  for k, v in kw.items():
    config[k] = v
  return config


def test_toy_starts_from_another_run(tmp_path, four_devices):
  loop.run(_toy_config(30), tmp_path / "a")
  trained, _ = checkpoint_lib.load_state_dict(tmp_path / "a")
  loop.run(_toy_config(0, init_from=str(tmp_path / "a")), tmp_path / "b")
  started, step = checkpoint_lib.load_state_dict(tmp_path / "b")
  assert step == 0
  for a, b in zip(jax.tree.leaves(trained["params"]), jax.tree.leaves(started["params"])):
    np.testing.assert_array_equal(a, b)
  # Without init_from the same run starts elsewhere (guards the comparison above).
  loop.run(_toy_config(0), tmp_path / "c")
  fresh, _ = checkpoint_lib.load_state_dict(tmp_path / "c")
  assert not np.array_equal(jax.tree.leaves(fresh["params"])[0],
                            jax.tree.leaves(trained["params"])[0])


def test_toy_refuses_a_random_file_before_doing_anything(tmp_path, four_devices):
  bogus = tmp_path / "weights.npz"
  bogus.write_bytes(b"not a checkpoint")
  with pytest.raises(InputError, match="toy accepts the workdir of a toy run"):
    loop.run(_toy_config(5, init_from=str(bogus)), tmp_path / "run")
  assert not (tmp_path / "run" / "checkpoints").exists()

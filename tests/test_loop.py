"""The generic training loop, end to end on the toy task over 4 fake devices."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import toy as toy_config
from geopose_jax.train import checkpoint as checkpoint_lib
from geopose_jax.train import loop

REPO = pathlib.Path(__file__).resolve().parent.parent


def make_config(**train):
  config = toy_config.get_config()
  config.train.progress_bar = False
  config.train.log_every = 10
  config.train.eval_every = 0
  config.train.checkpoint_every = 20
  for key, value in train.items():
    config.train[key] = value
  return config


def final_params(workdir):
  state, step = checkpoint_lib.load_state_dict(workdir)
  return state["params"], step


def assert_trees_equal(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)


def read_metrics(workdir):
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


def test_loss_falls_and_eval_is_written(tmp_path, four_devices):
  config = make_config(steps=100)
  results = loop.run(config, tmp_path)
  losses = [m["train/loss"] for m in read_metrics(tmp_path) if "train/loss" in m]
  assert losses[-1] < 0.5 * losses[0]
  written = json.loads((tmp_path / "eval" / "test.json").read_text())
  assert written["step"] == 100
  assert written["mse"] == pytest.approx(results["test"]["mse"])
  assert (tmp_path / "eval" / "test.md").read_text().startswith("### test")
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_reproduces_uninterrupted_run(tmp_path, four_devices):
  loop.run(make_config(steps=40), tmp_path / "straight")
  loop.run(make_config(steps=20), tmp_path / "resumed")
  loop.run(make_config(steps=40), tmp_path / "resumed")  # extends the same workdir
  straight, step_a = final_params(tmp_path / "straight")
  resumed, step_b = final_params(tmp_path / "resumed")
  assert step_a == step_b == 40
  assert_trees_equal(straight, resumed)


def test_resume_without_data_position_would_differ(tmp_path, four_devices):
  """Guards the test above: dropping the saved data position changes the result."""
  loop.run(make_config(steps=40), tmp_path / "straight")
  loop.run(make_config(steps=20), tmp_path / "resumed")
  for data_dir in (tmp_path / "resumed" / "checkpoints").glob("*/data"):
    shutil.rmtree(data_dir)
  loop.run(make_config(steps=40), tmp_path / "resumed")
  straight, _ = final_params(tmp_path / "straight")
  resumed, _ = final_params(tmp_path / "resumed")
  diffs = [np.abs(x - y).max() for x, y in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed))]
  assert max(diffs) > 0


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, four_devices, capsys):
  loop.run(make_config(steps=40), tmp_path / "run")
  step_dir = tmp_path / "run" / "checkpoints" / "40" / "state"
  for path in step_dir.rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")
  loop.run(make_config(steps=60), tmp_path / "run")
  out = capsys.readouterr().out
  assert "corrupt" in out and "Resumed from" in out and "at step 20" in out
  assert (tmp_path / "run" / "checkpoints_corrupt" / "40").is_dir()
  loop.run(make_config(steps=60), tmp_path / "straight")
  assert_trees_equal(final_params(tmp_path / "run")[0], final_params(tmp_path / "straight")[0])


def test_all_checkpoints_corrupt_refuses_to_restart(tmp_path, four_devices):
  loop.run(make_config(steps=20, keep_checkpoints=1), tmp_path)
  for path in (tmp_path / "checkpoints").rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")
  with pytest.raises(checkpoint_lib.CheckpointError, match="Refusing to start from scratch"):
    loop.run(make_config(steps=40), tmp_path)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, four_devices):
  config = make_config(steps=200, log_every=5, checkpoint_every=5)
  loop.run(make_config(steps=10), tmp_path)
  config.optim.lr = 1e38
  with pytest.raises(loop.NonFiniteLossError, match="last good checkpoint is step 10"):
    loop.run(config, tmp_path)
  state, step = checkpoint_lib.load_state_dict(tmp_path)
  assert step == 10
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


def test_eval_mode_reads_the_newest_checkpoint(tmp_path, four_devices):
  loop.run(make_config(steps=20), tmp_path)
  results = loop.run(make_config(steps=20), tmp_path, mode="eval")
  assert json.loads((tmp_path / "eval" / "test.json").read_text())["mse"] == pytest.approx(
      results["test"]["mse"])
  with pytest.raises(checkpoint_lib.CheckpointError, match="no checkpoint"):
    loop.run(make_config(steps=20), tmp_path / "empty", mode="eval")
  (tmp_path / "empty").mkdir()
  with pytest.raises(checkpoint_lib.CheckpointError, match="no checkpoint"):
    loop.run(make_config(steps=20), tmp_path / "empty", mode="eval")


def test_unknown_task_is_named(tmp_path):
  config = make_config()
  config.task = "no_such_task"
  with pytest.raises(ValueError, match="no_such_task"):
    loop.run(config, tmp_path)


def _launch(args, **kwargs):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  return subprocess.Popen([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_unknown_config_key_fails_with_one_line():
  proc = _launch(["--config=configs/toy.py", "--config.train.no_such_key=1"])
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode != 0
  lines = [line for line in out.splitlines() if line.strip()]
  assert len(lines) == 1 and "train.no_such_key" in lines[0], out


def test_killed_run_resumes_to_the_same_result(tmp_path):
  common = ["--config=configs/toy.py", "--config.train.steps=400", "--config.train.log_every=25",
            "--config.train.checkpoint_every=25", "--config.train.eval_every=0",
            "--config.train.progress_bar=False"]
  proc = _launch(common + [f"--workdir={tmp_path / 'killed'}"])
  checkpoints = tmp_path / "killed" / "checkpoints"
  deadline = time.time() + 120
  while not (checkpoints / "50").is_dir() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
  assert killed_at < 400, "the run finished before it could be killed"
  for args in ([f"--workdir={tmp_path / 'killed'}"], [f"--workdir={tmp_path / 'straight'}"]):
    proc = _launch(common + args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
  assert_trees_equal(final_params(tmp_path / "killed")[0], final_params(tmp_path / "straight")[0])


def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path):
  proc = _launch(["--config=configs/toy.py", "--config.train.steps=100000",
                  "--config.train.checkpoint_every=50", "--config.train.eval_every=0",
                  "--config.train.progress_bar=False", f"--workdir={tmp_path}"])
  deadline = time.time() + 120
  while not (tmp_path / "checkpoints" / "50").is_dir() and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(0.3)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode != 0
  assert "Interrupted at step" in out, out
  interrupted_at = int(out.split("Interrupted at step ")[1].split(";")[0])
  state, step = checkpoint_lib.load_state_dict(tmp_path)
  assert step == interrupted_at > 50

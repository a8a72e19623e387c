"""Two processes on 127.0.0.1 (2 CPU devices each) train as one process on 4 devices does."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np

from configs import toy
from geopose_jax.train import checkpoint as checkpoint_lib
from geopose_jax.train import loop

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path, four_devices):
  port = free_port()
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  procs = [subprocess.Popen([sys.executable, str(WORKER), str(port), str(i), str(tmp_path / "multi")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out
  assert "process 0 of 2: 4 global devices, 2 local" in outputs[0]
  assert "process 1 of 2: 4 global devices, 2 local" in outputs[1]

  config = toy.get_config()
  config.train.steps = 40
  config.train.eval_every = 0
  config.train.checkpoint_every = 20
  config.train.progress_bar = False
  loop.run(config, tmp_path / "single")

  multi, step_multi = checkpoint_lib.load_state_dict(tmp_path / "multi")
  single, step_single = checkpoint_lib.load_state_dict(tmp_path / "single")
  assert step_multi == step_single == 40
  for a, b in zip(jax.tree.leaves(multi["params"]), jax.tree.leaves(single["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

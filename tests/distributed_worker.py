"""One process of a 2-process CPU run of the toy task (started by test_distributed.py).

Usage: python distributed_worker.py PORT PROCESS_ID WORKDIR
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402


def main(port: str, process_id: str, workdir: str) -> None:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                             process_id=int(process_id))
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from configs import toy  # pylint: disable=g-import-not-at-top
  from geopose_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = toy.get_config()
  config.train.steps = 40
  config.train.eval_every = 0
  config.train.checkpoint_every = 20
  config.train.progress_bar = False
  print(f"process {jax.process_index()} of {jax.process_count()}: "
        f"{jax.device_count()} global devices, {jax.local_device_count()} local", flush=True)
  loop.run(config, workdir)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:])

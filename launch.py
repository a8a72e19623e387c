r"""Runs one geopose_jax task: train (resuming when the workdir has a checkpoint) or evaluate.

    python launch.py --config=configs/nvs.py                      # the paper's setting
    python launch.py --config=configs/nvs.py:demo                 # minutes on a laptop CPU
    python launch.py --config=configs/nvs.py --config.train.batch_size=64 --workdir=runs/mine
    python launch.py --config=configs/nvs.py --workdir=runs/mine --mode=eval
    python launch.py --config=configs/lifter.py:demo --workdir=runs/lifter_demo --mode=predict \
        --config.predict.input=examples/synthetic_S9_coco17.json --config.predict.output=out

On several hosts (TPU pod, multi-node GPU) start the same command on every host;
`jax.distributed.initialize()` is called when a multi-host environment is detected, or
when --multihost is given.
"""

import datetime
import os
import re
import signal
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

config_flags.DEFINE_config_file(
    "config", None, "Task config file, e.g. configs/nvs.py or configs/nvs.py:demo.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Output folder (default runs/<task>/<timestamp>); "
                    "an existing one is resumed.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "predict"], "Train (and evaluate), only "
                  "evaluate the newest checkpoint of --workdir, or predict 3D from the 2D "
                  "keypoints of --config.predict.input into --config.predict.output.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() even when no "
                  "multi-host environment is detected.")
flags.mark_flags_as_required(["config"])


def _multihost_detected() -> bool:
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  if "," in hosts:
    return True
  for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    if int(os.environ.get(name, "1") or 1) > 1:
      return True
  return bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax and Grain are chatty at INFO.
  from geopose_jax import host_memory  # pylint: disable=g-import-not-at-top
  from geopose_jax import xla_flags  # pylint: disable=g-import-not-at-top
  # Before the first large allocation, and before JAX's threads first allocate.
  host_memory.keep_freed_memory(one_arena=flags.FLAGS.config.train.one_malloc_arena)
  xla_flags.apply(flags.FLAGS.config.task)  # before JAX starts its CPU client
  import jax  # pylint: disable=g-import-not-at-top
  if flags.FLAGS.multihost or _multihost_detected():
    jax.distributed.initialize()
  import data_prep  # noqa: F401  pylint: disable=g-import-not-at-top  (registers the builders)
  from geopose_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = flags.FLAGS.config
  workdir = flags.FLAGS.workdir or os.path.join(
      "runs", config.task, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
  if jax.process_index() == 0:
    print(f"{config.task}: {flags.FLAGS.mode} in {workdir} on {jax.device_count()} "
          f"{jax.devices()[0].platform} device(s), {jax.process_count()} process(es)", flush=True)
  loop.run(config, workdir, flags.FLAGS.mode)


def _parse_flags_or_exit(argv: list[str]) -> list[str]:
  """Parses flags; a config key that does not exist ends the run with one line naming it."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    message = str(e).replace("\\n", "\n")
    overrides = [a.split("=")[0][2:] for a in argv if a.startswith("--config.")]
    bad = [o for o in overrides
           if re.search(rf"\b{re.escape(o.rsplit('.', 1)[-1])}\b", message)] or [message]
    suggestion = re.search(r'Did you mean "([^"]+)"', message)
    hint = f' (did you mean "{suggestion.group(1)}"?)' if suggestion else ""
    sys.stderr.write(f"launch.py: no such config key: {bad[0]}{hint}; "
                     "see the config file for the keys that exist.\n")
    sys.exit(2)


def _run():
  from geopose_jax.errors import GeoposeError  # pylint: disable=g-import-not-at-top
  try:
    app.run(main, flags_parser=_parse_flags_or_exit)
  except GeoposeError as error:
    # A mistake the user can fix: the message says what and how; a traceback would bury it.
    sys.stdout.flush()
    message = " ".join(str(error).split())
    sys.stderr.write(f"launch.py: {type(error).__name__}: {message}\n")
    sys.exit(2)
  except KeyboardInterrupt as interrupt:
    # The loop finished or abandoned everything before the interrupt got here. A further
    # Ctrl-C while Python shuts down would print a traceback from an exit hook, or kill the
    # process once the interpreter has put the default handlers back (it leaves ignored
    # signals ignored), so further signals are ignored from here on.
    for signum in (signal.SIGINT, signal.SIGTERM):
      signal.signal(signum, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.flush()
    if type(interrupt).__name__ == "SaveInterruptedError":
      # The abandoned save's threads may still be writing; this process is replaced, which
      # ends them, by a small program that removes the save's temporary folder and exits
      # with 130 (see partial_saves.py).
      partial_saves = os.path.join(os.path.dirname(os.path.abspath(__file__)), "geopose_jax",
                                   "train", "partial_saves.py")
      # -I: the script's folder (geopose_jax/train) does not go on sys.path.
      os.execv(sys.executable,
               [sys.executable, "-I", partial_saves, str(interrupt.checkpoint_dir)])
    sys.exit(130)


if __name__ == "__main__":
  _run()

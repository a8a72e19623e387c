"""Ctrl-C and SIGTERM during training: a stop request, never an interrupted save.

The first signal asks the loop to stop after the current step (it then saves and exits);
during the final evaluation, whose checkpoint is already complete, it lets the evaluation
finish. A second signal stops at once: `SaveInterruptedError` abandons any save under way,
the loop removes its partial folder, and launch.py exits without waiting for it. A second
signal during the final evaluation is a plain KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import signal

from absl import logging
import jax


class SaveInterruptedError(KeyboardInterrupt):
  """A second Ctrl-C (outside the final evaluation): stop at once, abandoning any save under
  way; the loop removes its partial folder and sets `checkpoint_dir`; exit without waiting."""



class StopRequests:
  """Ctrl-C and SIGTERM (preemption, `kill`) ask the loop to stop after the current step.

  The loop then saves a checkpoint and exits. Raising from the signal handler instead could
  interrupt a checkpoint being written; a second Ctrl-C still stops at once.
  """

  def __init__(self):
    self.requested = None
    self.phase = "training"   # or "saving", "final evaluation"
    self._previous = {}

  def __enter__(self):
    for signum in (signal.SIGINT, signal.SIGTERM):
      with contextlib.suppress(ValueError):  # Not the main thread: leave signals alone.
        self._previous[signum] = signal.signal(signum, self._request)
    return self

  def _request(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested is not None:
      if self.phase == "final evaluation":  # The final checkpoint is already complete.
        raise KeyboardInterrupt(name)
      # Stop at once, abandoning any save under way. Its threads fail noisily once its
      # folder is removed; the user asked to stop, so their reports are not wanted
      # (launch.py exits right after).
      silence_logging()
      raise SaveInterruptedError(name)
    self.requested = name
    if self.phase == "final evaluation":
      _print_main(f"{name}: the final checkpoint is saved; stopping after the evaluation "
                  "(press Ctrl-C again to skip it).")
    elif self.phase == "saving":
      _print_main(f"{name}: stopping once this checkpoint is saved "
                  "(press Ctrl-C again to abandon it).")
    else:
      _print_main(f"{name}: stopping after this step and saving a checkpoint "
                  "(press Ctrl-C again to stop at once).")

  @contextlib.contextmanager
  def during(self, phase: str):
    previous, self.phase = self.phase, phase
    try:
      yield
    finally:
      self.phase = previous

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    return False



def silence_logging() -> None:
  """Mutes every Python and absl log record from here on (see `restore_logging`)."""
  std_logging.disable(std_logging.CRITICAL)


def restore_logging() -> None:
  std_logging.disable(std_logging.NOTSET)


def _print_main(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)
  logging.info(message)

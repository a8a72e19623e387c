"""Ctrl-C and SIGTERM during training: a stop request, never an interrupted save.

The first signal asks the loop to stop after the current step (it then saves and exits);
during the final evaluation, whose checkpoint is already complete, it lets the evaluation
finish. A second signal stops at once: `SaveInterruptedError` abandons any save under way,
and launch.py exits without waiting for it, removing its temporary folder once its threads
are gone (partial_saves.py). A second signal during the final evaluation is a plain
KeyboardInterrupt.

While training and saving, the handler never raises: an exception raised from a signal
handler lands wherever the main thread happens to be, and inside a lock's wait (threading,
tqdm, orbax, a prefetching loader) it leaves the lock half released and turns into an
unrelated RuntimeError. The handler records the second signal instead: the loop checks it
after each step, and saves run in a helper thread that the main thread waits for in
`finish_unless_abandoned`, which raises `SaveInterruptedError` from our own code as soon as
the record appears. Only during an evaluation, which can take minutes and writes nothing of
ours, does the second signal raise at once.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import signal
import threading
from typing import Callable, TypeVar

from absl import logging
import jax

T = TypeVar("T")
_POLL_SECONDS = 0.05


class SaveInterruptedError(KeyboardInterrupt):
  """A second Ctrl-C (outside the final evaluation): stop at once, abandoning any save under
  way; the loop removes its partial folder and sets `checkpoint_dir`; exit without waiting."""



class StopRequests:
  """Ctrl-C and SIGTERM (preemption, `kill`) ask the loop to stop after the current step.

  The loop then saves a checkpoint and exits. `requested` names the first signal and
  `abandoned` the second (None until they arrive); the loop checks both between steps.
  """

  def __init__(self):
    self.requested = None
    self.abandoned = None
    self.phase = "training"   # or "saving", "evaluation", "final evaluation"
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
      # Stop at once, abandoning any save under way. Its threads may fail noisily when the
      # process exits under them; the user asked to stop, so their reports are not wanted.
      silence_logging()
      if self.phase == "evaluation":
        # Nothing of ours is being written, and an evaluation can take minutes.
        raise SaveInterruptedError(name)
      self.abandoned = name
      return
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

  def raise_if_abandoned(self) -> None:
    if self.abandoned is not None:
      raise SaveInterruptedError(self.abandoned)

  def finish_unless_abandoned(self, work: Callable[[], T]) -> T:
    """Runs `work()` (a save, or a wait for one) in a helper thread and returns its result,
    or raises `SaveInterruptedError` as soon as a second signal arrives, leaving `work`
    running (launch.py then exits without waiting for it)."""
    self.raise_if_abandoned()
    outcome = {}
    done = threading.Event()

    def run():
      try:
        outcome["result"] = work()
      except BaseException as error:  # pylint: disable=broad-exception-caught
        outcome["error"] = error
      finally:
        done.set()
    threading.Thread(target=run, name="save", daemon=True).start()
    while not done.wait(_POLL_SECONDS):
      self.raise_if_abandoned()
    if "error" in outcome:
      raise outcome["error"]
    return outcome["result"]

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
    try:
      print(message, flush=True)
    except RuntimeError:
      # Called from the signal handler inside a write to stdout that a signal interrupted:
      # Python refuses the re-entrant print, so the line goes to the descriptor directly.
      with contextlib.suppress(OSError):
        os.write(1, (message + "\n").encode())
  logging.info(message)

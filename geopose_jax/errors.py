"""The errors a user can fix: each says in one line what is wrong and what to do.

`launch.py` prints a `GeoposeError` as that one line and exits with status 2; any other
exception is a bug and keeps its traceback. Raise the narrowest kind that fits; each also
derives from the built-in exception it replaces, so existing `except ValueError` code keeps
working.
"""

from __future__ import annotations


class GeoposeError(Exception):
  """A mistake in the user's config, files or workdir; the message names it and the fix."""


class ConfigError(GeoposeError, ValueError):
  """A config value that cannot work (names the `config.` key and what is accepted)."""


class InputError(GeoposeError, ValueError):
  """A file the user gave (keypoints, motion, npz, checkpoint) that cannot be read as asked
  (names the file, the field and the expected form)."""


class DatasetError(GeoposeError, RuntimeError):
  """A dataset that is missing, incomplete or damaged (names the folder and the fix)."""


class CheckpointError(GeoposeError, RuntimeError):
  """A checkpoint that exists but cannot be used (names the step folder and the fix)."""

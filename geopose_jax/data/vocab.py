"""Canonical orders of subject and action names.

Batches carry `subject` and `action` as int32 codes into the vocabulary that the loaded data
carries (`PoseTable.subject_names` / `action_names`, `MultiviewIndex` likewise), made by
`subject_vocabulary` / `action_vocabulary` from the names present: canonical names first in
their canonical order, then any other names sorted, so every host derives the same codes.
"""

from __future__ import annotations

from typing import Iterable

SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
# HumanEva-I's subjects S1-S3 (S1 shares Human3.6M's code; only the name is shared).
HUMANEVA_SUBJECTS = ("S2", "S3")
CODED_SUBJECTS = SUBJECTS + HUMANEVA_SUBJECTS

H36M_ACTIONS = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing",
    "Purchases", "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking",
    "WalkTogether")
SYNTHETIC_ONLY_ACTIONS = ("Running", "Jumping", "Boxing", "Swordplay")
HUMANEVA_ACTIONS = ("Walk", "Jog", "Box", "ThrowCatch", "Gestures")
ACTIONS = H36M_ACTIONS + SYNTHETIC_ONLY_ACTIONS + HUMANEVA_ACTIONS
# The packaged CMU motion library's categories (geopose_jax/data/motion_library.py).
LIBRARY_ACTIONS = ("walking", "styled walking", "turning", "running", "jumping", "dancing",
                   "sports", "exercise", "reaching", "bending")


def subject_index(name: str) -> int:
  if name not in CODED_SUBJECTS:
    raise ValueError(f"unknown subject {name!r}; expected one of {CODED_SUBJECTS}")
  return CODED_SUBJECTS.index(name)


def action_index(name: str) -> int:
  if name not in ACTIONS:
    raise ValueError(f"unknown action {name!r}; expected one of {ACTIONS} "
                     "(canonicalise raw names with geopose_jax.skeleton.canonical_action)")
  return ACTIONS.index(name)


def subject_vocabulary(names: Iterable[str]) -> tuple[str, ...]:
  """The distinct subject names: SUBJECTS' order first, then others sorted."""
  present = set(names)
  return tuple(s for s in SUBJECTS if s in present) + tuple(sorted(present - set(SUBJECTS)))


def action_vocabulary(names: Iterable[str]) -> tuple[str, ...]:
  """The distinct action names: Human3.6M's canonical order first, then others sorted."""
  present = set(names)
  return (tuple(a for a in H36M_ACTIONS if a in present)
          + tuple(sorted(present - set(H36M_ACTIONS))))

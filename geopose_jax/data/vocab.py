"""Integer codes for subjects and actions, so that batches hold only arrays.

Batches carry `subject` and `action` as int32 indices into these tuples; records store the
names. Human3.6M's 15 canonical actions come first; the synthetic default's motions that
Human3.6M lacks follow (its walking clips use Human3.6M's "Walking").
"""

SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")

H36M_ACTIONS = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing",
    "Purchases", "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking",
    "WalkTogether")
SYNTHETIC_ONLY_ACTIONS = ("Running", "Jumping", "Boxing", "Swordplay")
ACTIONS = H36M_ACTIONS + SYNTHETIC_ONLY_ACTIONS


def subject_index(name: str) -> int:
  if name not in SUBJECTS:
    raise ValueError(f"unknown subject {name!r}; expected one of {SUBJECTS}")
  return SUBJECTS.index(name)


def action_index(name: str) -> int:
  if name not in ACTIONS:
    raise ValueError(f"unknown action {name!r}; expected one of {ACTIONS} "
                     "(canonicalise raw names with geopose_jax.skeleton.canonical_action)")
  return ACTIONS.index(name)

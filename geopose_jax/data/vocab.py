"""Integer codes for subjects and actions, so that batches hold only arrays.

Batches carry `subject` and `action` as int32 indices into these tuples; records store the
names. Human3.6M's 15 canonical actions come first; the synthetic default's motions that
Human3.6M lacks follow (its walking clips use Human3.6M's "Walking"), then HumanEva-I's.
Codes only ever grow at the end, so a code means the same in every dataset.
"""

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


def subject_index(name: str) -> int:
  if name not in CODED_SUBJECTS:
    raise ValueError(f"unknown subject {name!r}; expected one of {CODED_SUBJECTS}")
  return CODED_SUBJECTS.index(name)


def action_index(name: str) -> int:
  if name not in ACTIONS:
    raise ValueError(f"unknown action {name!r}; expected one of {ACTIONS} "
                     "(canonicalise raw names with geopose_jax.skeleton.canonical_action)")
  return ACTIONS.index(name)

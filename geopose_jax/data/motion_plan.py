"""What each synthetic subject performs: segments of the motion library's clips.

Split by CMU subject: the training subjects (S1, S5-S8) perform clips of one set of CMU
subjects, the test subjects (S9, S11) clips of disjoint CMU subjects (TEST_CMU_SUBJECTS),
so the test split measures generalisation to unseen people and motion. What each subject
performs is balanced by action (the library's categories) and CMU subject: long clips are
cut into segments and every action gets the same number of frames (`make_plan`). The
pieces of the training CMU subjects' clips that training leaves unused give the training
subjects a held-out set (`heldout_plan`, `heldout_sequences`). `subject_sequences` turns a
plan into placed pose sequences (the placement is geopose_jax/data/motion.py's).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np

from geopose_jax.data import motion_library
from geopose_jax.data import vocab
from geopose_jax.data.motion import SUBJECT_SCALES, MotionSequence, Variation
from geopose_jax.data.motion import library_poses, place

# CMU subjects whose clips only the test subjects perform (none of them in training):
# walking (06, 09, 12, 35), running (09), jumping, exercise and reaching (13), dancing
# (61 salsa, 94), sports (06). Styled walking (105 only), turning (16 only) and bending
# (02 only) are training actions without test clips.
TEST_CMU_SUBJECTS = ("06", "09", "12", "13", "35", "61", "94")
# Long clips are cut into segments of at most this many 50 fps frames (10 s) whose root
# stays within a square of SEGMENT_REACH_MM on the floor, so that a segment fits in the
# area all cameras see (about 2.4 x 3.2 m) without being cut by `place`.
SEGMENT_FRAMES = 500
SEGMENT_REACH_MM = 1500.0
# Frames per (synthetic subject, action): 5 x 10 x 2600 = 130k training frames (520k
# camera frames in h36m_poses); the test split has 2 x 7 x 700.
TRAIN_FRAMES_PER_ACTION = 2600
TEST_FRAMES_PER_ACTION = 700
# Frames per (training subject, action) of the held-out split (`heldout_plan`).
HELDOUT_FRAMES_PER_ACTION = 500
_MIN_PIECE = 50  # never plan a cut-off piece shorter than 1 s
_MAX_REPEATS = 3


@dataclasses.dataclass(frozen=True)
class PlanItem:
  """Frames [start, stop) of a library clip, performed with a variation."""
  clip: str
  start: int
  stop: int
  variation: Variation


def library_split(library_dir: str | None = None
                  ) -> dict[str, tuple[motion_library.ClipInfo, ...]]:
  """The library's clips of the training and of the test CMU subjects."""
  infos = motion_library.clips(library_dir)
  test = tuple(c for c in infos if c.cmu_subject in TEST_CMU_SUBJECTS)
  train = tuple(c for c in infos if c.cmu_subject not in TEST_CMU_SUBJECTS)
  return {"train": train, "test": test}


def clip_segments(root_floor: np.ndarray) -> list[tuple[int, int]]:
  """Cuts a clip into [start, stop) pieces of at most SEGMENT_FRAMES frames whose floor path
  stays within SEGMENT_REACH_MM in each floor axis (pieces of at least _MIN_PIECE frames,
  except a clip shorter than that).

  Args:
    root_floor: (F, 2) the root's floor-plane coordinates, mm.
  """
  pieces, start = [], 0
  num = len(root_floor)
  while start < num:
    window = root_floor[start:start + SEGMENT_FRAMES]
    extent = (np.maximum.accumulate(window, axis=0)
              - np.minimum.accumulate(window, axis=0)).max(axis=1)
    over = np.flatnonzero(extent > SEGMENT_REACH_MM)
    over = over[over >= _MIN_PIECE]  # the first frame that would leave the square
    stop = start + (int(over[0]) if len(over) else len(window))
    if num - stop < _MIN_PIECE:  # too short a rest: part of this piece
      stop = num
    pieces.append((start, stop))
    start = stop
  return pieces


def _segments(infos: Sequence[motion_library.ClipInfo], library_dir: str | None = None
              ) -> list[tuple[str, int, int]]:
  """`clip_segments` of every clip, CMU subjects interleaved (one piece of each CMU
  subject in turn), so that a stretch of the order is balanced over them."""
  by_subject: dict[str, list[tuple[str, int, int]]] = {}
  for info in sorted(infos, key=lambda c: c.clip):
    root = motion_library.root_path(info.clip, library_dir)[:, [0, 2]]  # Y up: x, z floor
    by_subject.setdefault(info.cmu_subject, []).extend(
        (info.clip, a, b) for a, b in clip_segments(root))
  queues = [by_subject[s] for s in sorted(by_subject)]
  out = []
  # A CMU subject with few pieces comes round again (up to _MAX_REPEATS times each), so a
  # subject with many (salsa) does not fill the tail of the order alone.
  for k in range(max((len(q) for q in queues), default=0)):
    out.extend(q[k % len(q)] for q in queues if k < _MAX_REPEATS * len(q))
  return out


def make_plan(train_frames_per_action: int = TRAIN_FRAMES_PER_ACTION,
              test_frames_per_action: int = TEST_FRAMES_PER_ACTION, seed: int = 0,
              library_dir: str | None = None) -> dict[str, list[PlanItem]]:
  """What each synthetic subject performs: per action the same number of frames.

  Every subject of a split takes, for each action its CMU subjects perform, segments in
  the interleaved order of `_segments` from its own starting point (so the subjects see
  different segments) until it has `<split>_frames_per_action` frames; an action with
  fewer frames than that is repeated with other variations. Deterministic.

  Returns:
    subject -> [PlanItem], for vocab.SUBJECTS.
  """
  split = library_split(library_dir)
  plan = {}
  for name, subjects, budget in (("train", vocab.TRAIN_SUBJECTS, train_frames_per_action),
                                 ("test", vocab.TEST_SUBJECTS, test_frames_per_action)):
    by_action = {a: [c for c in split[name] if c.action == a] for a in vocab.LIBRARY_ACTIONS}
    for s, subject in enumerate(subjects):
      items = []
      for a, action in enumerate(vocab.LIBRARY_ACTIONS):
        segments = _segments(by_action[action], library_dir)
        if not segments:
          continue
        rng = np.random.default_rng([seed, vocab.subject_index(subject), a])
        position = s * len(segments) // len(subjects)
        total = 0
        while total < budget:
          clip, start, stop = segments[position % len(segments)]
          position += 1
          if stop - start > budget - total:
            stop = start + max(budget - total, min(_MIN_PIECE, stop - start))
          total += stop - start
          variation = Variation(mirror=bool(rng.random() < 0.5),
                                heading_deg=float(rng.uniform(0.0, 360.0)),
                                offset_mm=tuple(float(v) for v in rng.uniform(-150, 150, 2)))
          items.append(PlanItem(clip, start, stop, variation))
      plan[subject] = items
  return plan


@functools.lru_cache(maxsize=2)
def default_plan() -> dict[str, list[PlanItem]]:
  """`make_plan()` with its defaults (computed once)."""
  return make_plan()


def heldout_plan(train_plan: dict[str, list[PlanItem]] | None = None,
                 frames_per_action: int = HELDOUT_FRAMES_PER_ACTION, seed: int = 0,
                 library_dir: str | None = None) -> dict[str, list[PlanItem]]:
  """Held-out frames of the training subjects: pieces of the training CMU subjects' clips
  that `train_plan` (default `default_plan()`) gives to no subject.

  A `clip_segments` piece counts as unused when no item of the plan overlaps it, so a
  held-out piece never shares a frame with training. The unused pieces of each action are
  dealt to the training subjects in turn (none is performed twice), each subject taking up
  to `frames_per_action` frames per action. Only the actions whose clips outnumber what
  training takes have such pieces (walking, styled walking and dancing by default).
  Deterministic.

  Returns:
    subject -> [PlanItem], for vocab.TRAIN_SUBJECTS (an empty list where nothing is left).
  """
  train_plan = default_plan() if train_plan is None else train_plan
  used: dict[str, list[tuple[int, int]]] = {}
  for items in train_plan.values():
    for item in items:
      used.setdefault(item.clip, []).append((item.start, item.stop))

  def unused(clip: str, start: int, stop: int) -> bool:
    return not any(a < stop and start < b for a, b in used.get(clip, ()))

  train_clips = library_split(library_dir)["train"]
  plan: dict[str, list[PlanItem]] = {s: [] for s in vocab.TRAIN_SUBJECTS}
  for a, action in enumerate(vocab.LIBRARY_ACTIONS):
    pieces = []
    for piece in _segments([c for c in train_clips if c.action == action], library_dir):
      if piece not in pieces and unused(*piece):  # _segments repeats short subjects' pieces
        pieces.append(piece)
    totals = dict.fromkeys(vocab.TRAIN_SUBJECTS, 0)
    rngs = {s: np.random.default_rng([seed, vocab.subject_index(s), a, 1])
            for s in vocab.TRAIN_SUBJECTS}
    for k, (clip, start, stop) in enumerate(pieces):
      subject = vocab.TRAIN_SUBJECTS[k % len(vocab.TRAIN_SUBJECTS)]
      room = frames_per_action - totals[subject]
      if room < _MIN_PIECE:
        continue
      stop = min(stop, start + room)
      totals[subject] += stop - start
      rng = rngs[subject]
      plan[subject].append(PlanItem(clip, start, stop, Variation(
          mirror=bool(rng.random() < 0.5), heading_deg=float(rng.uniform(0.0, 360.0)),
          offset_mm=tuple(float(v) for v in rng.uniform(-150, 150, 2)))))
  return plan


def subject_sequences(subject: str, fps: float = 50.0,
                      plan: Sequence[PlanItem] | None = None,
                      library_dir: str | None = None) -> list[MotionSequence]:
  """The sequences of one synthetic subject.

  Args:
    subject: a name of vocab.SUBJECTS.
    fps: output frame rate; the library's (50) is the only one offered.
    plan: what to perform; default `default_plan()[subject]`. Sequence names are
      '<clip>_<k>', k numbering the subject's uses of the clip in plan order.
    library_dir: the motion library (default the packaged one).
  """
  if subject not in vocab.SUBJECTS:
    raise ValueError(f"unknown synthetic subject {subject!r}; expected one of "
                     f"{vocab.SUBJECTS}")
  if abs(fps - motion_library.library_fps(library_dir)) > 1e-6:
    raise ValueError(f"fps={fps}: the motion library is stored at "
                     f"{motion_library.library_fps(library_dir):g} fps; resample afterwards")
  items = default_plan()[subject] if plan is None else plan
  infos = {c.clip: c for c in motion_library.clips(library_dir)}
  poses_of: dict[str, np.ndarray] = {}
  out = []
  counts: dict[str, int] = {}
  for item in items:
    if item.clip not in poses_of:
      poses_of[item.clip] = library_poses(item.clip, SUBJECT_SCALES[subject], library_dir)
    placed = place(poses_of[item.clip][item.start:item.stop], subject, item.variation)
    if len(placed) < 2:
      continue
    k = counts[item.clip] = counts.get(item.clip, -1) + 1
    out.append(MotionSequence(subject=subject, action=infos[item.clip].action,
                              sequence=f"{item.clip}_{k}",
                              poses_world=placed.astype(np.float32), fps=fps))
  return out


def heldout_sequences(fps: float = 50.0, subjects: Sequence[str] = vocab.TRAIN_SUBJECTS,
                      library_dir: str | None = None) -> list[MotionSequence]:
  """The training subjects performing `heldout_plan()`: motion of the training CMU
  subjects that no training sequence contains (see `heldout_plan`)."""
  plan = heldout_plan(library_dir=library_dir)
  unknown = [s for s in subjects if s not in plan]
  if unknown:
    raise ValueError(f"held-out sequences exist for the training subjects "
                     f"{vocab.TRAIN_SUBJECTS} only, not {unknown}")
  return [q for subject in subjects
          for q in subject_sequences(subject, fps, plan=plan[subject],
                                     library_dir=library_dir)]


def synthetic_sequences(fps: float = 50.0, subjects: Sequence[str] = vocab.SUBJECTS,
                        library_dir: str | None = None) -> list[MotionSequence]:
  """The synthetic default's pose sequences: every subject's planned segments.

  Training subjects S1, S5, S6, S7, S8 perform clips of the training CMU subjects; test
  subjects S9, S11 clips of TEST_CMU_SUBJECTS, which no training subject performs.

  Raises:
    ValueError: unknown subject or a frame rate other than the library's.
  """
  return [s for subject in subjects
          for s in subject_sequences(subject, fps, library_dir=library_dir)]

"""Which motion-library frames `smpl_params/cmu` takes: balanced by action and CMU subject.

The library is lopsided (two CMU subjects give 116 of its 249 clips, salsa a third of its
minutes), so frames are not taken in proportion to what it holds. Each action of a split
gets the same number of frames, shared equally among the CMU subjects that perform it
(`allocate`: a subject with fewer frames than its share gives what it has, each frame up to
`max_repeats` times, and the others share the rest); within a subject, the frames of its
clips of that action are drawn at random without replacement (`draw`). Deterministic for a
seed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from geopose_jax.data import motion_library
from geopose_jax.data import vocab


def allocate(available: dict[str, int], budget: int, max_repeats: int) -> dict[str, int]:
  """Shares `budget` frames among CMU subjects as equally as their frames allow.

  Args:
    available: subject -> frames it has (> 0).
    budget: frames wanted in all.
    max_repeats: a subject gives at most available * max_repeats frames.

  Returns:
    subject -> frames to take; the sum is min(budget, what the caps allow).
  """
  out, remaining = {}, budget
  order = sorted(available, key=lambda s: (available[s], s))   # smallest capacity first
  for i, subject in enumerate(order):
    share = remaining // (len(order) - i)
    out[subject] = min(available[subject] * max_repeats, share)
    remaining -= out[subject]
  return out


def draw(num_frames: int, count: int, rng: np.random.Generator) -> np.ndarray:
  """`count` indices into range(num_frames): every index count // num_frames times, the
  remainder drawn without replacement; sorted (int64)."""
  whole, rest = divmod(count, num_frames)
  picks = np.concatenate([np.tile(np.arange(num_frames), whole),
                          rng.choice(num_frames, rest, replace=False)])
  return np.sort(picks).astype(np.int64)


def balanced_frames(infos: Sequence[motion_library.ClipInfo], frames_per_action: int,
                    max_repeats: int, seed: Sequence[int]
                    ) -> list[tuple[motion_library.ClipInfo, np.ndarray]]:
  """The frames to take from `infos` (one split's clips).

  Args:
    infos: the clips.
    frames_per_action: frames wanted for each action the clips perform.
    max_repeats: how often one frame may be taken (1: never twice).
    seed: entropy for numpy's generator (e.g. [config seed, split code]).

  Returns:
    [(clip info, (N,) sorted frame indices into the clip at the library's 50 fps)] in
    clip order, clips given no frame left out.
  """
  picks: dict[str, list[np.ndarray]] = {}
  by_id = {c.clip: c for c in infos}
  for a, action in enumerate(vocab.LIBRARY_ACTIONS):
    by_subject: dict[str, list[motion_library.ClipInfo]] = {}
    for info in sorted(infos, key=lambda c: c.clip):
      if info.action == action:
        by_subject.setdefault(info.cmu_subject, []).append(info)
    counts = allocate({s: sum(c.num_frames for c in clips) for s, clips in by_subject.items()},
                      frames_per_action, max_repeats)
    for subject, clips in sorted(by_subject.items()):
      rng = np.random.default_rng([*seed, a, int(subject)])
      starts = np.cumsum([0] + [c.num_frames for c in clips])
      chosen = draw(int(starts[-1]), counts[subject], rng)
      for c, info in enumerate(clips):
        inside = chosen[(chosen >= starts[c]) & (chosen < starts[c + 1])] - starts[c]
        if len(inside):
          picks.setdefault(info.clip, []).append(inside)
  return [(by_id[clip], np.sort(np.concatenate(parts))) for clip, parts in sorted(picks.items())]

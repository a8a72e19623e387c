"""The humaneva builder on tiny VideoPose3D-format files."""

import numpy as np
import pytest

from data_prep import build
from data_prep.humaneva import calibration
from data_prep.humaneva import humaneva_dataset_builder as builder_lib
from geopose_jax.errors import DatasetError
import fake_humaneva  # tests/ is on sys.path under pytest

CHUNKS = {"Train/S1": {"Walking 1 chunk0": 5, "Box 1 chunk0": 4, "Gestures 1 chunk0": 3},
          "Validate/S2": {"Jog 1 chunk0": 4, "Jog 1 chunk2": 3},
          "Validate/S3": {"Walking 1 chunk0": 3}}


def write_npz(folder, chunks=CHUNKS, seed=0):
  return fake_humaneva.write_npz(folder, chunks, seed)


def _quaternion_rotate_inverse(q, v):
  """v rotated by the inverse of unit quaternion q = (w, x, y, z), by the Hamilton product."""
  def mul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])
  q = np.asarray(q) / np.linalg.norm(q)
  conj = q * [1, -1, -1, -1]
  return mul(mul(conj, np.concatenate([[0.0], v])), q)[1:]


def test_build_splits_actions_cameras(tmp_path):
  positions_3d, positions_2d = write_npz(tmp_path / "in")
  builder = build.ensure_built("humaneva", tmp_path / "data", manual_dir=str(tmp_path / "in"))
  train = [builder.as_data_source("train")[i] for i in range(len(builder.as_data_source("train")))]
  validate = [builder.as_data_source("validate")[i]
              for i in range(len(builder.as_data_source("validate")))]
  # Gestures is not one of the default actions; 3 cameras per chunk.
  assert len(train) == 2 * 3 and len(validate) == 3 * 3
  by_key = {(r["subject"].decode(), r["sequence"].decode(), r["camera_id"].decode()): r
            for r in train + validate}
  record = by_key[("S2", "Jog 1 chunk2", "C3")]
  assert record["action"].decode() == "Jog" and record["pose_2d_px"].shape == (3, 15, 2)
  np.testing.assert_allclose(record["pose_2d_px"],
                             positions_2d["Validate/S2"]["Jog 1 chunk2"][2][:3])
  np.testing.assert_allclose(record["pose_2d"],
                             record["pose_2d_px"] / 640 * 2 - [1, 480 / 640], atol=1e-5)
  world = positions_3d["Validate/S2"]["Jog 1 chunk2"]
  q, centre = calibration.EXTRINSICS["S2"][2]
  expected = np.stack([[_quaternion_rotate_inverse(q, p * 1000 - centre) for p in frame]
                       for frame in world]) / 1000
  np.testing.assert_allclose(record["pose_3d_cam"], expected, atol=1e-5)
  # The capture volume (world origin) is in front of every camera.
  for subject in ("S1", "S2", "S3"):
    rotations, centres = calibration.cameras(subject)
    depth = np.einsum("cij,cj->ci", rotations, -centres)[:, 2]
    assert (depth > 1000).all()

  everything = build.ensure_built("humaneva/all_actions", tmp_path / "data",
                                  manual_dir=str(tmp_path / "in"))
  assert everything.info.splits["train"].num_examples == 3 * 3


def test_action_names_and_bad_files(tmp_path):
  assert builder_lib.canonical_action("Walking 1 chunk0") == "Walk"
  assert builder_lib.canonical_action("ThrowCatch 1 chunk3") == "ThrowCatch"
  with pytest.raises(DatasetError, match="Swim"):
    builder_lib.canonical_action("Swim 1 chunk0")
  write_npz(tmp_path / "bad", {"Train/S1": {"Walking 1 chunk0": 3}})
  with np.load(tmp_path / "bad" / builder_lib.NPZ_2D, allow_pickle=True) as f:
    positions_2d = f["positions_2d"].item()
  positions_2d["Train/S1"]["Walking 1 chunk0"][1] = np.zeros((3, 17, 2), np.float32)
  np.savez(tmp_path / "bad" / builder_lib.NPZ_2D, positions_2d=positions_2d)
  with pytest.raises(DatasetError, match=r"C2: expected \(N, 15, 2\)"):
    builder_lib.read_chunks(tmp_path / "bad" / builder_lib.NPZ_3D,
                            tmp_path / "bad" / builder_lib.NPZ_2D, ("Walk",))


def test_protocol_per_action_and_subject_by_hand():
  from geopose_jax.protocols import humaneva as protocol
  rng = np.random.default_rng(3)
  target = rng.normal(scale=200.0, size=(3, 15, 3))
  pred = target.copy()
  pred[0, 4] += [30.0, 40.0, 0.0]      # one joint 50 mm off: MPJPE 50 / 15
  pred[2] = 2.0 * target[2] + 100.0    # a similarity of the truth: PA-MPJPE 0
  result = protocol.evaluate(pred, target, ["Validate/S1", "S1", "S2"], ["Walk", "Walk", "Box"],
                             decimals=6)
  assert list(result["per_action"]) == ["Walk S1", "Box S2"]
  np.testing.assert_allclose(result["per_action"]["Walk S1"]["mpjpe"], 50 / 15 / 2, atol=1e-5)
  np.testing.assert_allclose(result["per_action"]["Box S2"]["pa_mpjpe"], 0.0, atol=1e-5)
  # Root-relative, the prediction is 2 p for the truth p: each joint is |p| off.
  box = np.mean(np.linalg.norm(target[2] - target[2, :1], axis=-1))
  np.testing.assert_allclose(result["per_action"]["Box S2"]["mpjpe"], box, atol=1e-4)
  np.testing.assert_allclose(result["mpjpe"], (50 / 15 / 2 + box) / 2, atol=1e-4)


def test_eval_sequences_of_humaneva(tmp_path):
  from geopose_jax.data import eval_sequences
  write_npz(tmp_path / "in")
  builder = build.ensure_built("humaneva", tmp_path / "data", manual_dir=str(tmp_path / "in"))
  sequences = eval_sequences.read_eval_sequences(builder.data_dir, "validate")
  assert len(sequences) == 9 and {s.layout for s in sequences} == {"humaneva15"}
  first = sequences[0]
  assert (first.subject, first.sequence, first.camera) == ("S2", "Jog 1 chunk0", "C1")
  assert set(first.activity) == {"Jog"} and first.valid.all()
  frames = eval_sequences.concatenate(sequences)
  assert frames["pose_2d"].shape == (3 * (4 + 3 + 3), 15, 2)  # 3 cameras x validate frames
  assert build.main(["humaneva/all_actions", "--data_dir", str(tmp_path / "d2"),
                     "--manual_dir", str(tmp_path)]) == 2

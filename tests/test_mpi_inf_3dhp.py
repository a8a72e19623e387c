"""The mpi_inf_3dhp builder on tiny fakes of the release: test poses, crops, training poses."""

import h5py
import numpy as np
import pytest

from data_prep import build
from data_prep import mpi_inf_3dhp
from data_prep.mpi_inf_3dhp import readers
from data_prep.synthetic_multiview import features as multiview_record
from geopose_jax import skeleton
from geopose_jax.data import eval_sequences
from geopose_jax.errors import DatasetError
from geopose_jax.protocols import mpi_inf_3dhp as protocol
import fake_mpi_inf_3dhp as fake  # tests/ is on sys.path under pytest

FRAMES = {"TS1": 4, "TS2": 3, "TS3": 3, "TS4": 3, "TS5": 3, "TS6": 3}


def _records(builder, split):
  source = builder.as_data_source(split)
  return [source[i] for i in range(len(source))]


def _text(value):
  return value.decode() if isinstance(value, bytes) else value


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = tmp_path_factory.mktemp("mpi_inf_3dhp")
  return root, fake.write_test_set(root, FRAMES)


def test_fake_is_a_matlab_v73_file_with_reversed_dimensions(release):
  root, _ = release
  path = root / readers.TEST_DIR / "TS1" / "annot_data.mat"
  assert path.read_bytes()[:10] == b"MATLAB 7.3"
  with h5py.File(path, "r") as mat:
    assert mat["annot2"].shape == (4, 1, 17, 2) and mat["valid_frame"].shape == (4, 1)


def test_test_poses_in_h36m_order_metres_and_normalised(release, tmp_path):
  root, written = release
  builder = build.ensure_built("mpi_inf_3dhp", tmp_path / "data", manual_dir=str(root))
  records = {_text(r["sequence"]): r for r in _records(builder, "test")}
  assert sorted(records) == list(readers.TEST_SEQUENCES)
  ts1, ts5 = records["TS1"], records["TS5"]
  source = written["TS1"]
  np.testing.assert_allclose(ts1["pose_3d_cam"], skeleton.mpi3dhp_to_h36m(source["pose_3d"]) / 1000,
                             rtol=1e-6)
  np.testing.assert_allclose(ts1["pose_3d_univ"],
                             skeleton.mpi3dhp_to_h36m(source["univ_3d"]) / 1000, rtol=1e-6)
  # H36M's root (0) is the 3DHP pelvis (14); its head top (10) is 3DHP's joint 0.
  np.testing.assert_allclose(ts1["pose_2d_px"][:, 0], source["pose_2d"][:, 14], rtol=1e-6)
  np.testing.assert_allclose(ts1["pose_2d_px"][:, 10], source["pose_2d"][:, 0], rtol=1e-6)
  np.testing.assert_array_equal(ts1["valid"], source["valid"])
  np.testing.assert_array_equal(ts1["activity"], source["activity"])
  assert _text(ts1["setting"]) == "studio" and _text(ts5["setting"]) == "outdoor"
  np.testing.assert_allclose(ts5["camera"]["res"], [1920, 1080])
  np.testing.assert_allclose(ts5["pose_2d"], ts5["pose_2d_px"] / 1920 * 2 - [1, 1080 / 1920],
                             atol=1e-5)
  # The stored intrinsics reproject the 3D pose onto the 2D (the fake's 2D is pinhole).
  f, c = ts1["camera"]["f"], ts1["camera"]["c"]
  cam = ts1["pose_3d_cam"].astype(np.float64)
  np.testing.assert_allclose(cam[..., :2] / cam[..., 2:] * f + c, ts1["pose_2d_px"], atol=0.05)

  sequences = eval_sequences.read_eval_sequences(builder.data_dir, "test")
  frames = eval_sequences.concatenate(sequences)
  assert sequences[0].layout == "h36m" and len(frames["valid"]) == sum(FRAMES.values())
  np.testing.assert_allclose(frames["pose_3d_cam"][:4], ts1["pose_3d_univ"] * 1000, rtol=1e-6)
  assert frames["activity"][1] == "" and frames["sequence"][0] == "TS1"
  annot3 = eval_sequences.read_eval_sequences(builder.data_dir, "test", target="annot3")
  np.testing.assert_allclose(annot3[0].pose_3d_cam, ts1["pose_3d_cam"] * 1000, rtol=1e-6)
  # Ground truth scored against itself: the protocol is perfect on every valid frame.
  result = protocol.evaluate(frames["pose_3d_cam"], frames["pose_3d_cam"], frames["sequence"],
                             frames["activity"],
                             frames["valid"])
  assert result["PCK"] == 100.0 and result["MPJPE"] == 0.0
  assert result["num_frames"] == sum(FRAMES.values()) - len(FRAMES)


def test_test_crops_centre_the_pelvis_and_k_matches_the_2d(release, tmp_path):
  root, written = release
  builder = mpi_inf_3dhp.ensure_built("mpi_inf_3dhp/test_crops", tmp_path / "data",
                                      manual_dir=root)
  records = _records(builder, "test")
  assert len(records) == sum(FRAMES.values()) - len(FRAMES)  # the invalid frames are left out
  for record in records:
    record = multiview_record.decode_record(record)  # the multi-view decoder reads V = 1
    assert record["images"].shape == (1, 128, 128, 3) and bool(record["valid"])
    image = record["images"][0]
    # The white disc on the projected pelvis lands on the crop centre, the corners are black.
    assert image[62:66, 62:66].min() > 200 and image[:4, :4].max() < 40
    k = record["K"][0].astype(np.float64)
    cam = record["pose_3d_cam"][0].astype(np.float64)
    projected = (cam @ k.T)[:, :2] / cam[:, 2:]
    np.testing.assert_allclose(projected, record["pose_2d_crop"][0], atol=0.05)
    sequence, frame = _text(record["sequence"]), int(record["frame"])
    assert int(record["activity"]) == written[sequence]["activity"][frame]
    assert _text(record["action"]) == protocol.activity_name(int(record["activity"]))


def test_train_poses_28_to_17_with_calibrated_intrinsics(tmp_path):
  written = fake.write_train_set(tmp_path / "release")
  builder = build.ensure_built("mpi_inf_3dhp/train_8cams", tmp_path / "data",
                               manual_dir=str(tmp_path / "release"))
  records = _records(builder, "train")
  assert len(records) == 8 * 2 * 8
  assert sorted({int(r["camera_index"]) for r in records}) == [0, 1, 2, 4, 5, 6, 7, 8]
  record = next(r for r in records if (_text(r["subject"]), _text(r["sequence"]),
                                       int(r["camera_index"])) == ("S3", "Seq2", 5))
  source = written[("S3", "Seq2")]
  to_17 = [skeleton.MPI3DHP_28_TO_17[j] for j in skeleton.MPI3DHP_TO_H36M]
  np.testing.assert_allclose(record["pose_3d_cam"], source["annot3"][5][:, to_17] / 1000,
                             rtol=1e-6)
  # Joint by joint by name: H36M's root is the 28-joint pelvis (4), its head top joint 7.
  np.testing.assert_allclose(record["pose_2d_px"][:, 0], source["annot2"][5][:, 4], rtol=1e-6)
  np.testing.assert_allclose(record["pose_2d_px"][:, 10], source["annot2"][5][:, 7], rtol=1e-6)
  np.testing.assert_allclose(record["camera"]["f"], [1495.0, 1500.0])
  np.testing.assert_allclose(record["camera"]["c"], [1025.0, 1035.0])
  assert record["valid"].all() and (record["activity"] == 0).all()


def test_malformed_release_raises_one_clear_error(tmp_path):
  with pytest.raises(DatasetError, match="TS3"):
    fake.write_test_set(tmp_path / "a", {"TS1": 2, "TS2": 2}, images=False)
    readers.read_test_set(tmp_path / "a")
  fake.write_test_set(tmp_path / "b", {"TS1": 3}, images=False)
  path = tmp_path / "b" / readers.TEST_DIR / "TS1" / "annot_data.mat"
  with h5py.File(path, "r+") as mat:
    del mat["annot3"]
    mat.create_dataset("annot3", data=np.zeros((3, 1, 16, 3)))
  with pytest.raises(DatasetError, match=r"annot_data.mat: 'annot3' has shape \(3, 1, 16, 3\)"):
    readers.read_test_sequence(path.parent)
  fake.write_test_set(tmp_path / "c", {"TS2": 3}, images=True)
  (tmp_path / "c" / readers.TEST_DIR / "TS2" / "imageSequence" / "img_000003.jpg").unlink()
  sequence = readers.read_test_sequence(tmp_path / "c" / readers.TEST_DIR / "TS2")
  from data_prep.mpi_inf_3dhp import mpi_inf_3dhp_dataset_builder as builder_lib
  with pytest.raises(DatasetError, match="img_000003.jpg: no such file"):
    builder_lib.check_frames(sequence)

"""Reading torch.save files without PyTorch: round trips through a test-only writer, the
refusals, and (where PyTorch is installed) a comparison with files real torch.save wrote."""

import collections
import zipfile

import ml_dtypes
import numpy as np
import pytest

import fake_torch_checkpoint as fake
from geopose_jax.convert import rie
from geopose_jax.convert import torch_io
from geopose_jax.convert.torch_pickle import read_checkpoint
from geopose_jax.errors import InputError

SAVERS = {"zip": fake.save_zip, "legacy": fake.save_legacy}
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_,
          np.int16, np.int8, ml_dtypes.bfloat16]


def _values(dtype, shape, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape) * 50
  return (x > 0) if dtype is np.bool_ else x.astype(dtype)


@pytest.fixture(params=sorted(SAVERS))
def save(request):
  return SAVERS[request.param]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_every_dtype(save, tmp_path, dtype):
  values = _values(dtype, (3, 4))
  path = tmp_path / "sd.pth"
  save({"w": fake.Tensor.of(values), "scalar": fake.Tensor.of(values[1, 2]),
        "empty": fake.Tensor.of(values[:0])}, path)
  out = read_checkpoint(path)
  assert out["w"].dtype == np.dtype(dtype) and out["w"].shape == (3, 4)
  np.testing.assert_array_equal(out["w"], values)
  assert out["scalar"].shape == () and out["scalar"] == values[1, 2]
  assert out["empty"].shape == (0, 4) and out["empty"].dtype == np.dtype(dtype)


def test_strides_offsets_and_shared_storage(save, tmp_path):
  flat = np.arange(30, dtype=np.float64) * 1.5
  storage = fake.Storage(flat)
  path = tmp_path / "views.pth"
  save({"matrix": fake.Tensor(storage, 0, (5, 6), (6, 1)),
        "transposed": fake.Tensor(storage, 0, (6, 5), (1, 6)),
        "window": fake.Tensor(storage, 7, (2, 3), (6, 2)),
        "broadcast": fake.Tensor(storage, 4, (3, 2), (0, 1))}, path)
  out = read_checkpoint(path)

  def by_loop(offset, size, stride):  # element [i, j] = flat[offset + i * s0 + j * s1]
    return np.array([[flat[offset + i * stride[0] + j * stride[1]] for j in range(size[1])]
                     for i in range(size[0])])

  np.testing.assert_array_equal(out["matrix"], by_loop(0, (5, 6), (6, 1)))
  np.testing.assert_array_equal(out["transposed"], by_loop(0, (6, 5), (1, 6)))
  np.testing.assert_array_equal(out["transposed"], out["matrix"].T)
  np.testing.assert_array_equal(out["window"], [[10.5, 13.5, 16.5], [19.5, 22.5, 25.5]])
  np.testing.assert_array_equal(out["broadcast"], by_loop(4, (3, 2), (0, 1)))
  # Copies: writing one tensor does not change another that shared its storage.
  out["matrix"][1, 1] = -1
  assert out["window"][0, 0] == 10.5 and out["transposed"][1, 1] == 10.5


def test_tensor_past_its_storage_is_refused(save, tmp_path):
  path = tmp_path / "bad.pth"
  save({"w": fake.Tensor(fake.Storage(np.zeros(6, np.float32)), 2, (2, 3), (3, 1))}, path)
  with pytest.raises(InputError, match=r"bad\.pth.*storage of 6"):
    read_checkpoint(path)


def _rie_like(rng_seed=1234):
  """What RIE / VideoPose3D's run.py saves: epoch, lr, optimizer state, weights and the
  training generator's RandomState."""
  random_state = np.random.RandomState(rng_seed)
  random_state.uniform(size=5)  # a generator part-way through its stream
  weight = _values(np.float32, (8, 2, 3), seed=1)
  model_pos = collections.OrderedDict([
      ("module.expand_conv.weight", fake.Tensor.of(weight)),
      ("module.expand_bn.num_batches_tracked", fake.Tensor.of(np.array(17, np.int64)))])
  optimizer = {"state": {0: {"step": 12, "exp_avg": fake.Tensor.of(weight * 0.5)}},
               "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": True,
                                 "params": [0]}]}
  checkpoint = {"epoch": 80, "lr": 0.00095, "optimizer": optimizer, "model_pos": model_pos,
                "random_state": random_state, "tags": {"gt", "cpn"},
                "device": fake.Call("torch", "device", "cuda", 0)}
  return checkpoint, weight


def test_training_checkpoint_with_random_state(save, tmp_path):
  checkpoint, weight = _rie_like()
  path = tmp_path / "gt_pretrained.bin"
  save(checkpoint, path)
  out = read_checkpoint(path)
  assert set(out) == {"epoch", "lr", "optimizer", "model_pos", "random_state", "tags", "device"}
  assert out["epoch"] == 80 and out["lr"] == 0.00095 and out["tags"] == {"gt", "cpn"}
  assert out["device"] == "cuda:0"
  assert isinstance(out["model_pos"], collections.OrderedDict)
  assert list(out["model_pos"]) == ["module.expand_conv.weight",
                                    "module.expand_bn.num_batches_tracked"]
  np.testing.assert_array_equal(out["model_pos"]["module.expand_conv.weight"], weight)
  np.testing.assert_array_equal(out["optimizer"]["state"][0]["exp_avg"], weight * 0.5)
  assert out["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
  # The generator continues where it was saved.
  reference = np.random.RandomState(1234)
  reference.uniform(size=5)
  np.testing.assert_array_equal(out["random_state"].uniform(size=4), reference.uniform(size=4))
  # Both callers read through the same reader and keep their unwrapping.
  state = rie.load_original_state_dict(path)
  assert list(state) == list(checkpoint["model_pos"])
  np.testing.assert_array_equal(state["module.expand_conv.weight"], weight)


def test_torch_io_unwraps_state_dict_and_data_parallel(save, tmp_path):
  weight = _values(np.float32, (4, 3))
  path = tmp_path / "network_best_val_t1.pth"
  save({"state_dict": collections.OrderedDict([("module.fc.weight", fake.Tensor.of(weight))]),
        "epoch": 3}, path)
  out = torch_io.load_state_dict(path)
  assert list(out) == ["fc.weight"]
  np.testing.assert_array_equal(out["fc.weight"], weight)
  save({"fc.weight": fake.Tensor.of(weight), "note": "not a tensor"}, path)
  with pytest.raises(InputError, match=r"network_best_val_t1\.pth.*'note'"):
    torch_io.load_state_dict(path)


def test_global_that_runs_code_is_refused(save, tmp_path):
  marker = tmp_path / "ran"
  path = tmp_path / "evil.pth"
  save({"w": fake.Tensor.of(np.zeros(2, np.float32)),
        "x": fake.Call("os", "system", f"touch {marker}")}, path)
  with pytest.raises(InputError, match=r"evil\.pth.*os\.system") as info:
    read_checkpoint(path)
  assert "\n" not in str(info.value)
  assert not marker.exists()
  with pytest.raises(InputError, match="os.system"):
    rie.load_original_state_dict(path)
  with pytest.raises(InputError, match="os.system"):
    torch_io.load_state_dict(path)


def test_unknown_storage_type_is_refused(save, tmp_path):
  path = tmp_path / "complex.pth"
  save({"w": fake.Tensor.of(np.zeros(4, np.float32), type_name="ComplexFloatStorage")}, path)
  with pytest.raises(InputError, match=r"complex\.pth.*ComplexFloatStorage"):
    read_checkpoint(path)


def test_big_endian_is_refused(tmp_path):
  zip_path, legacy_path = tmp_path / "be.pth", tmp_path / "be_legacy.pth"
  fake.save_zip({"w": fake.Tensor.of(np.zeros(2, np.float32))}, zip_path, byteorder="big")
  fake.save_legacy({"w": fake.Tensor.of(np.zeros(2, np.float32))}, legacy_path,
                   little_endian=False)
  for path in (zip_path, legacy_path):
    with pytest.raises(InputError, match=rf"{path.name}.*big-endian"):
      read_checkpoint(path)


def test_zip_without_byteorder_record_is_little_endian(tmp_path):
  path = tmp_path / "old.pth"
  fake.save_zip({"w": fake.Tensor.of(np.arange(3, dtype=np.int32))}, path, byteorder=None,
                archive="old")
  np.testing.assert_array_equal(read_checkpoint(path)["w"], [0, 1, 2])


def test_files_that_are_not_checkpoints(tmp_path):
  random_file = tmp_path / "random.pth"
  random_file.write_bytes(np.random.default_rng(0).bytes(300))
  text = tmp_path / "text.pth"
  text.write_bytes(b"not a checkpoint")
  good = tmp_path / "good.pth"
  fake.save_zip({"w": fake.Tensor.of(np.zeros((50, 50), np.float32))}, good)
  truncated = tmp_path / "truncated.pth"
  truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
  no_pickle = tmp_path / "no_pickle.pth"
  fake.save_zip({"w": fake.Tensor.of(np.zeros(3, np.float32))}, no_pickle, with_data_pkl=False)
  other_zip = tmp_path / "other.pth"
  with zipfile.ZipFile(other_zip, "w") as z:
    z.writestr("readme.txt", "hello")
  legacy = tmp_path / "legacy_cut.pth"
  fake.save_legacy({"w": fake.Tensor.of(np.zeros(100, np.float64))}, legacy)
  legacy_cut = legacy.read_bytes()[:-8]
  legacy.write_bytes(legacy_cut)
  top_list = tmp_path / "list.pth"
  fake.save_zip([fake.Tensor.of(np.zeros(2, np.float32))], top_list)
  for path, what in ((random_file, "torch.save"), (text, "torch.save"),
                     (truncated, "truncated or damaged zip"), (no_pickle, "without a data.pkl"),
                     (other_zip, "without a data.pkl"), (legacy, "truncated"),
                     (top_list, "holds a list")):
    with pytest.raises(InputError, match=what) as info:
      read_checkpoint(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message, message
    assert "written by torch.save" in message, message
  with pytest.raises(InputError, match="nothing.pth"):
    read_checkpoint(tmp_path / "nothing.pth")
  # The callers report through the same one line.
  with pytest.raises(InputError, match=r"text\.pth.*torch\.save"):
    torch_io.load_state_dict(text)
  with pytest.raises(InputError, match=r"no_pickle\.pth"):
    rie.load_original_state_dict(no_pickle)


def test_npz_is_checked_to_be_a_zip(tmp_path):
  path = tmp_path / "weights.npz"
  np.savez(path, **{"module.a": np.ones(3, np.float32)})
  assert list(torch_io.load_state_dict(path)) == ["a"]
  path.write_bytes(b"garbage")
  with pytest.raises(InputError, match=r"weights\.npz.*np\.savez"):
    torch_io.load_state_dict(path)


# --------------------------------------------------------------------- against real torch


def test_matches_real_torch_save(tmp_path):
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  tensors = {f"t_{str(dt)[6:]}": (torch.randn(3, 5) * 10).to(dt)
             for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16,
                        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                        torch.bool)}
  tensors.update(transposed=base.t(), window=base[1:, 2:5], every_other=base[:, ::2],
                 base=base, scalar=torch.tensor(3.5), empty=torch.zeros(0, 3),
                 parameter=torch.nn.Parameter(torch.randn(2, 2)))
  linear = torch.nn.Linear(3, 2)
  optimizer = torch.optim.Adam(linear.parameters(), lr=1e-3)
  linear(torch.randn(4, 3)).sum().backward()
  optimizer.step()
  checkpoint = {"epoch": 7, "lr": 1e-3, "optimizer": optimizer.state_dict(),
                "model_pos": collections.OrderedDict(tensors),
                "bn": torch.nn.BatchNorm1d(4).state_dict(),
                "random_state": np.random.RandomState(99), "device": torch.device("cpu")}

  def expected(obj):
    if isinstance(obj, torch.Tensor):
      obj = obj.detach()
      if obj.dtype == torch.bfloat16:
        return obj.float().numpy().astype(ml_dtypes.bfloat16)
      return obj.numpy().copy()
    if isinstance(obj, dict):
      return {k: expected(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
      return type(obj)(expected(v) for v in obj)
    return obj

  def assert_same(ours, theirs, where):
    if isinstance(theirs, np.ndarray):
      assert isinstance(ours, np.ndarray) and ours.dtype == theirs.dtype, where
      assert ours.shape == theirs.shape, where
      np.testing.assert_array_equal(ours, theirs, err_msg=where)
    elif isinstance(theirs, np.random.RandomState):
      np.testing.assert_array_equal(ours.uniform(size=3), theirs.uniform(size=3))
    elif isinstance(theirs, dict):
      assert list(ours) == list(theirs), where
      for k in theirs:
        assert_same(ours[k], theirs[k], f"{where}/{k}")
    elif isinstance(theirs, (list, tuple)):
      assert type(ours) is type(theirs) and len(ours) == len(theirs), where
      for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, torch.device):
      assert ours == str(theirs), where
    else:
      assert type(ours) is type(theirs) and ours == theirs, where

  for name, kwargs in (("zip.pt", {}), ("legacy.pt", {"_use_new_zipfile_serialization": False})):
    torch.save(checkpoint, tmp_path / name, **kwargs)
    assert_same(read_checkpoint(tmp_path / name), expected(checkpoint), name)
  # And the other way: real torch reads what the test writer writes, with its strict
  # weights-only unpickler, sharing one storage between views as torch itself would.
  storage = fake.Storage(np.arange(12, dtype=np.float32))
  written = {"matrix": fake.Tensor(storage, 0, (3, 4), (4, 1)),
             "window": fake.Tensor(storage, 5, (2, 2), (4, 2)),
             "flags": fake.Tensor.of(np.array([True, False]))}
  for save_fn in SAVERS.values():
    save_fn(written, tmp_path / "fake.pt")
    loaded = torch.load(tmp_path / "fake.pt", weights_only=True)
    np.testing.assert_array_equal(loaded["matrix"].numpy(), np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(loaded["window"].numpy(), [[5, 7], [9, 11]])
    assert loaded["matrix"].untyped_storage().data_ptr() == \
        loaded["window"].untyped_storage().data_ptr()
    assert loaded["flags"].dtype == torch.bool

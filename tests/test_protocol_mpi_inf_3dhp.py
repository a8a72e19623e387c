"""The MPI-INF-3DHP protocol against hand-computed values, both joint groupings."""

import numpy as np
import pytest

from geopose_jax import skeleton
from geopose_jax.errors import ConfigError, InputError
from geopose_jax.protocols import mpi_inf_3dhp as protocol

# Per-joint errors (mm) in the test set's order; the pelvis (14) is the root, error 0.
# Errors stay clear of the 5 mm thresholds, where rounding would decide the count.
ERRORS_A = [10.5, 160.5, 100.5, 200.5, 50.5, 0, 30.5, 140.5, 155.5, 5.5, 75.5, 120.5, 151.5,
            60.5, 0, 145.5, 170.5]
ERRORS_B = [200.5] * 14 + [0, 200.5, 200.5]


def _frames():
  """Three frames whose per-joint errors are ERRORS_A, ERRORS_B and garbage (invalid)."""
  rng = np.random.default_rng(0)
  target = rng.normal(scale=300.0, size=(3, 17, 3))
  directions = rng.normal(size=(3, 17, 3))
  directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
  errors = np.asarray([ERRORS_A, ERRORS_B, [999] * 17], np.float64)
  errors[2, 14] = 0.0
  # A whole-body offset: the protocol centres both poses on the pelvis.
  pred = target + directions * errors[..., None] + rng.normal(scale=500.0, size=(3, 1, 3))
  return pred, target


def _in_h36m_order(pose):
  return skeleton.mpi3dhp_to_h36m(pose)


@pytest.mark.parametrize("grouping, expected", [
    # Hand counts: frame A has 12 of 17 joints below 150 mm (10 of the 14), frame B only the
    # pelvis (none of the 14). AUC: for an error e < 150 mm, 30 - floor(e / 5) of the 31
    # thresholds 0..150 lie strictly above it; frame A sums 213 (182 without pelvis, spine,
    # head), frame B 30 (0).
    ("all17", {"PCK_A": 100 * 12 / 17, "AUC_A": 100 * 213 / 527, "PCK": 100 * 13 / 34,
               "AUC": 100 * 243 / 1054, "Head": 100 * 1 / 4, "Hip": 100 * 3 / 6}),
    ("no_torso14", {"PCK_A": 100 * 10 / 14, "AUC_A": 100 * 182 / 434, "PCK": 100 * 10 / 28,
                    "AUC": 100 * 182 / 868, "Head": 100 * 1 / 2, "Hip": 100 * 1 / 4}),
])
def test_hand_computed_tables(grouping, expected):
  pred, target = _frames()
  result = protocol.evaluate(_in_h36m_order(pred), _in_h36m_order(target),
                             ["TS1", "TS5", "TS1"], [1, 6, 0], valid=[True, True, False],
                             grouping=grouping, decimals=6)
  assert result["grouping"] == grouping and result["annotation"] == "univ_annot3"
  assert len(result["joints"]) == (17 if grouping == "all17" else 14)
  assert result["num_frames"] == 2
  np.testing.assert_allclose(result["PCK"], expected["PCK"], atol=1e-4)
  np.testing.assert_allclose(result["AUC"], expected["AUC"], atol=1e-4)
  # MPJPE is over all 17 joints in both groupings (sum of ERRORS_A is 1578.5).
  np.testing.assert_allclose(result["MPJPE"], (1578.5 + 16 * 200.5) / 34, atol=1e-4)
  ts1 = result["per_sequence"]["TS1"]
  assert ts1["num_frames"] == 1 and set(result["per_sequence"]) == {"TS1", "TS5"}
  np.testing.assert_allclose(ts1["PCK"], expected["PCK_A"], atol=1e-4)
  np.testing.assert_allclose(ts1["AUC"], expected["AUC_A"], atol=1e-4)
  np.testing.assert_allclose(ts1["MPJPE"], 1578.5 / 17, atol=1e-4)
  assert result["per_activity"]["Standing/Walking"] == ts1
  assert list(result["per_activity"]) == ["Standing/Walking", "Sports"]
  np.testing.assert_allclose(result["per_group"]["Head"]["PCK"], expected["Head"], atol=1e-4)
  np.testing.assert_allclose(result["per_group"]["Hip"]["PCK"], expected["Hip"], atol=1e-4)
  table = protocol.format_markdown(result)
  assert protocol.GROUPING_TITLES[grouping] in table and "| TS5 |" in table


def test_test_set_order_matches_h36m_order_and_names():
  pred, target = _frames()
  a = protocol.evaluate(pred, target, ["TS2"] * 3, ["Sitting"] * 3,
                        joint_order="mpi_inf_3dhp", annotation="annot3")
  b = protocol.evaluate(_in_h36m_order(pred), _in_h36m_order(target), ["TS2"] * 3, [3] * 3,
                        annotation="annot3")
  assert a == b and a["annotation"] == "annot3" and a["num_frames"] == 3


def test_bad_arguments_raise_one_clear_error():
  pred, target = _frames()
  with pytest.raises(ConfigError, match="grouping"):
    protocol.evaluate(pred, target, ["TS1"] * 3, [1] * 3, grouping="all16")
  with pytest.raises(InputError, match="outside 1..7"):
    protocol.evaluate(pred, target, ["TS1"] * 3, [0, 1, 2])
  with pytest.raises(InputError, match=r"\(N, 17, 3\)"):
    protocol.evaluate(pred[:, :15], target[:, :15], ["TS1"] * 3, [1] * 3)
  with pytest.raises(InputError, match="no valid frame"):
    protocol.evaluate(pred, target, ["TS1"] * 3, [1] * 3, valid=[False] * 3)

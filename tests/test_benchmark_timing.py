"""benchmarks/report.py's timing: warm-up calls untimed, every timed call recorded."""

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))

import report  # noqa: E402


def test_time_calls_skips_the_warmup_and_records_each_call():
  durations = iter([0.2, 0.0, 0.03, 0.01, 0.02])  # the first two are the warm-up
  calls = []

  def work():
    calls.append(1)
    time.sleep(next(durations))
  timing = report.time_calls(work, warmup=2, calls=3)
  assert len(calls) == 5 and len(timing.all_s) == 3
  assert max(timing.all_s) < 0.15  # the 0.2 s warm-up call is not among them
  assert 0.019 <= timing.median_s < timing.all_s[0]  # the median is the middle call, 0.02 s
  assert abs(timing.mean_s - sum(timing.all_s) / 3) < 1e-12
  assert timing.cpu_s < 0.01  # sleeping uses no CPU
  assert set(timing.as_dict("step")) == {"step_s", "step_s_median", "step_s_all"}

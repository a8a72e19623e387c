"""A `jax.profiler` trace of a few calls of a jitted step, and its top operations by time.

The trace is written as TensorBoard's profile plugin reads it (`DIR/plugins/profile/...`) and
also as a Perfetto JSON trace (`perfetto_trace.json.gz`), which `top_operations` reads without
any extra package: on the CPU backend every XLA thunk (a fusion, a dot, a copy) is one event
whose `hlo_op` names the instruction in the compiled module, so the module's HLO text tells
what kind of operation each one is.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import pathlib
import re
from typing import Callable

import jax

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OPCODE = re.compile(r"^\S+(?:\s*\{[^}]*\})?\s+([a-z][\w\-]*)\(")
# How an operation is named in the table, in order of precedence: the most expensive kind of
# op a fusion holds names it.
# Threefry random bits (dropout masks) are integer elementwise ops: shifts and xors.
_KINDS = ("convolution", "dot", "custom-call", "rng-bit-generator", "xor", "reduce-window",
          "select-and-scatter", "scatter", "gather", "reduce", "sort", "transpose", "copy",
          "concatenate", "pad", "slice", "dynamic-slice", "dynamic-update-slice")
_KIND_NAMES = {"xor": "random bits"}
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def trace(step: Callable[[], None], calls: int, out_dir: str | pathlib.Path) -> pathlib.Path:
  """Runs `step()` (which must block until done) `calls` times under the profiler; returns
  the Perfetto trace file written under `out_dir`."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  before = set(out_dir.glob("plugins/profile/*/perfetto_trace.json.gz"))
  with jax.profiler.trace(str(out_dir), create_perfetto_trace=True):
    for _ in range(calls):
      step()
  written = sorted(set(out_dir.glob("plugins/profile/*/perfetto_trace.json.gz")) - before)
  if not written:
    raise RuntimeError(f"jax.profiler wrote no Perfetto trace under {out_dir}")
  return written[-1]


def write_text(path: pathlib.Path, text: str) -> pathlib.Path:
  """Writes `text` to `path` (temp file + rename); returns the path."""
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)
  return path


def _parse_hlo(hlo_text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
  """(instruction name -> its definition, computation name -> the opcodes it holds)."""
  definitions, opcodes = {}, collections.defaultdict(list)
  computation = ""
  for line in hlo_text.splitlines():
    head = _COMPUTATION.match(line)
    if head and "=" not in line.split("{")[0]:
      computation = head.group(1)
      continue
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    name, rest = match.groups()
    definitions.setdefault(name, rest.strip())
    op = _OPCODE.match(rest.strip())
    if op:
      opcodes[computation].append(op.group(1))
      callee = _CALLS.search(rest)
      if callee:
        opcodes[computation].append("@" + callee.group(1))
  return definitions, opcodes


def _kind(definition: str, opcodes: dict[str, list[str]]) -> str:
  """The kind of one instruction: its opcode, or for a fusion the heaviest op inside it."""
  op = _OPCODE.match(definition)
  opcode = op.group(1) if op else "?"
  callee = _CALLS.search(definition)
  if not callee:
    return opcode
  seen, pending, inside = set(), [callee.group(1)], set()
  while pending:
    name = pending.pop()
    if name in seen:
      continue
    seen.add(name)
    for entry in opcodes.get(name, ()):
      (pending.append(entry[1:]) if entry.startswith("@") else inside.add(entry))
  for kind in _KINDS:
    if kind in inside:
      return f"{opcode}({_KIND_NAMES.get(kind, kind)})"
  return f"{opcode}(elementwise)"


def _source(definition: str) -> str:
  """The JAX-level name of the op an instruction came from (its metadata), shortened."""
  match = _OP_NAME.search(definition)
  return match.group(1)[-140:] if match else ""


def top_operations(trace_path: str | pathlib.Path, hlo_text: str, calls: int,
                   module_prefix: str = "", limit: int = 15) -> dict:
  """The operations of the traced module(s) by total thunk time.

  Returns {'per_call_ms': summed op time per call, 'by_kind': [...], 'top': [...]}, every
  row with ms per call and share of the summed op time. Op time is summed over threads, so
  with intra-op parallelism it can exceed the wall time of a call.
  """
  with gzip.open(trace_path, "rt") as f:
    data = json.load(f)
  events = data["traceEvents"] if isinstance(data, dict) else data
  definitions, opcodes = _parse_hlo(hlo_text)
  per_op, counts = collections.Counter(), collections.Counter()
  for e in events:
    args = e.get("args") or {}
    if e.get("ph") != "X" or "hlo_op" not in args:
      continue
    if module_prefix and not str(args.get("hlo_module", "")).startswith(module_prefix):
      continue
    per_op[args["hlo_op"]] += e["dur"] / 1000.0
    counts[args["hlo_op"]] += 1
  total = sum(per_op.values()) or 1.0
  by_kind = collections.Counter()
  rows = []
  for name, ms in per_op.most_common():
    definition = definitions.get(name, "")
    kind = _kind(definition, opcodes) if definition else name
    by_kind[kind] += ms
    if len(rows) < limit:
      rows.append({"op": name, "kind": kind, "ms_per_call": round(ms / calls, 2),
                   "share": round(ms / total, 3), "events_per_call": counts[name] / calls,
                   "shape": definition.split(" ")[0], "source": _source(definition)})
  return {"per_call_ms": round(total / calls, 1),
          "by_kind": [{"kind": k, "ms_per_call": round(v / calls, 2), "share": round(v / total, 3)}
                      for k, v in by_kind.most_common(limit)],
          "top": rows}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description="top operations of a traced XLA module")
  parser.add_argument("trace", help="perfetto_trace.json.gz written by `trace`")
  parser.add_argument("hlo", help="the compiled module's HLO text")
  parser.add_argument("--calls", type=int, default=3, help="calls of the step in the trace")
  parser.add_argument("--limit", type=int, default=15)
  args = parser.parse_args(argv)
  result = top_operations(args.trace, pathlib.Path(args.hlo).read_text(), args.calls,
                          limit=args.limit)
  print(json.dumps(result, indent=2))
  return result


if __name__ == "__main__":
  main()

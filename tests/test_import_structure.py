"""The package's layering: tasks are leaves, geopose_jax never reaches into data_prep, and
no module imports itself back through another."""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "geopose_jax"


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path, modules=()) -> set[str]:
  """Every module `path` imports, at module level or inside functions. `from package
  import submodule` counts as importing the submodule only (when it is one of `modules`)."""
  tree = ast.parse(path.read_text())
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = {f"{node.module}.{alias.name}" for alias in node.names}
      submodules = names & set(modules)
      found.update(submodules if submodules == names else names | {node.module})
  return found


def package_graph() -> dict[str, set[str]]:
  modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
  return {name: {m for m in imports_of(path, modules) if m in modules and m != name}
          for name, path in modules.items()}


def test_geopose_jax_never_imports_data_prep():
  offenders = sorted(module_name(p) for p in PACKAGE.rglob("*.py")
                     if any(m == "data_prep" or m.startswith("data_prep.")
                            for m in imports_of(p)))
  assert not offenders, f"these modules import data_prep: {offenders}"


def test_tasks_import_no_other_task():
  offenders = []
  for path in (PACKAGE / "tasks").glob("*.py"):
    task = path.stem
    for imported in imports_of(path):
      if imported.startswith("geopose_jax.tasks."):
        other = imported.split(".")[2]
        if other != task:
          offenders.append(f"{task} imports {other}")
  assert not offenders, offenders


def test_no_import_cycle():
  graph = package_graph()
  state: dict[str, int] = {}

  def visit(node, trail):
    state[node] = 1
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        cycle = trail[trail.index(nxt):] + [nxt]
        raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
      if nxt not in state:
        visit(nxt, trail + [nxt])
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])


def test_the_checks_can_fail(tmp_path):
  """The parser sees in-function imports, so the checks above are not vacuous."""
  sample = tmp_path / "sample.py"
  sample.write_text("def f():\n  from data_prep import build\n  import geopose_jax.tasks.nvs\n")
  assert {"data_prep", "data_prep.build", "geopose_jax.tasks.nvs"} <= imports_of(sample)

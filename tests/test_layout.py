"""The package's shape stays as docs/design.md describes it: no import cycle, no
module using another module's private names, small modules and functions."""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lur_jax")
MAX_MODULE_LINES = 400  # an alarm only: modules split by concept (docs/design.md), not by size
MAX_FUNCTION_CODE_LINES = 60


def _modules() -> dict[str, str]:
  """``{"lur_jax.x": path}`` for every module of the package."""
  out = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
        out[rel.removesuffix(".__init__")] = path
  return out


MODULES = _modules()


def _imports(path: str) -> tuple[set[str], dict[str, str], list[str]]:
  """``(modules imported, {alias: module}, private names imported)``, function
  bodies included (an import inside a function still makes a cycle)."""
  tree = ast.parse(open(path).read())
  imported, aliases, private = set(), {}, []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name in MODULES:
          imported.add(a.name)
          aliases[a.asname or a.name] = a.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lur_jax"):
      for a in node.names:
        full = f"{node.module}.{a.name}"
        if full in MODULES:  # from package import module
          imported.add(full)
          aliases[a.asname or a.name] = full
        else:  # from module import name
          imported.add(node.module)
          if a.name.startswith("_"):
            private.append(f"from {node.module} import {a.name}")
  return imported, aliases, private


def _private_uses(path: str, aliases: dict[str, str]) -> list[str]:
  tree = ast.parse(open(path).read())
  return [f"{node.value.id}.{node.attr}" for node in ast.walk(tree)
          if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
          and node.value.id in aliases and node.attr.startswith("_")
          and not node.attr.startswith("__")]


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """A cycle of ``graph`` (as a list of nodes, first = last), or ``None``."""
  state = {}

  def visit(node, trail):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return trail[trail.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt, trail + [nxt])
        if found:
          return found
    state[node] = "done"
    return None

  for name in sorted(graph):
    if name not in state:
      found = visit(name, [name])
      if found:
        return found
  return None


def test_the_import_graph_has_no_cycle():
  graph = {}
  for name, path in MODULES.items():
    # A package's __init__ re-exports its modules; that is not a dependency of theirs.
    graph[name] = {m for m in _imports(path)[0] if not m.startswith(name + ".")} - {name}
  cycle = _find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_uses_another_modules_private_names(name):
  _, aliases, private = _imports(MODULES[name])
  uses = private + _private_uses(MODULES[name], aliases)
  assert not uses, f"{name} reaches into private names: {uses}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_small(name):
  source = open(MODULES[name]).read()
  lines = source.splitlines()
  assert len(lines) <= MAX_MODULE_LINES, f"{name}: {len(lines)} lines"
  for node in ast.walk(ast.parse(source)):
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    body = lines[node.lineno - 1:node.end_lineno]
    first = node.body[0]
    docstring = (first.end_lineno - first.lineno + 1 if isinstance(first, ast.Expr)
                 and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
                 else 0)
    code = sum(1 for line in body if line.strip() and not line.strip().startswith("#"))
    assert code - docstring <= MAX_FUNCTION_CODE_LINES, (
        f"{name}.{node.name}: {code - docstring} lines of code")


def test_the_checks_above_can_fail(tmp_path):
  """The graph walk finds a planted cycle and the scans a private use."""
  assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  a = tmp_path / "a.py"
  a.write_text("from lur_jax.training import loop\nx = loop._first_bad\n")
  _, aliases, _ = _imports(str(a))
  assert _private_uses(str(a), aliases) == ["loop._first_bad"]
  b = tmp_path / "b.py"
  b.write_text("from lur_jax.training.loop import _first_bad\n")
  assert _imports(str(b))[2] == ["from lur_jax.training.loop import _first_bad"]

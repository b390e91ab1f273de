"""The package's shape stays as docs/contract.md and the README describe it: no import cycles, no
module reaching into another's private names, ``import cvlib`` without JAX, and stage modules
that hold the steps their notebooks call."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cvlib"
NOTEBOOK_STAGES = {"01_preprocess": "preprocess", "02_finetune": "finetune",
                   "03_evaluate": "evaluate", "04_segment": "segment"}


def _modules() -> dict[str, Path]:
  out = {}
  for path in PACKAGE.rglob("*.py"):
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    out[name.removesuffix(".__init__")] = path
  return out


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[int, str, str]]:
  """(line, imported module, imported name or "") for every cvlib import, lazy ones included."""
  out = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cvlib"):
      for alias in node.names:
        full = f"{node.module}.{alias.name}"
        out.append((node.lineno, full if full in modules else node.module,
                    "" if full in modules else alias.name))
    elif isinstance(node, ast.Import):
      out += [(node.lineno, a.name, "") for a in node.names if a.name.startswith("cvlib")]
  return out


def test_no_import_cycles():
  modules = _modules()
  graph = {m: {t for _, t, _ in _imports(p, modules) if t in modules and t not in (m, "cvlib")}
           for m, p in modules.items()}
  state: dict[str, int] = {}  # 1 on the current path, 2 done

  def visit(m, path):
    state[m] = 1
    for t in sorted(graph[m]):
      if state.get(t) == 1:
        pytest.fail("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
      if t not in state:
        visit(t, path + [t])
    state[m] = 2

  for m in sorted(graph):
    if m not in state:
      visit(m, [m])


def test_no_module_imports_another_modules_private_names():
  modules = _modules()
  found = []
  for m, path in modules.items():
    tree = ast.parse(path.read_text())
    aliases = {}
    for line, target, name in _imports(path, modules):
      if name.startswith("_") and not name.startswith("__"):
        found.append(f"{path.relative_to(REPO)}:{line} imports {target}.{name}")
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cvlib"):
        aliases.update({a.asname or a.name: node.module for a in node.names})
      if isinstance(node, ast.Import):
        aliases.update({(a.asname or a.name): a.name for a in node.names})
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
          and node.value.id in aliases and node.attr.startswith("_")
          and not node.attr.startswith("__")):
        found.append(f"{path.relative_to(REPO)}:{node.lineno} uses {node.value.id}.{node.attr}")
  assert not found, "\n".join(found)


def test_import_cvlib_loads_no_jax():
  code = ("import sys, cvlib, cvlib.runner, cvlib.serve.model_folder, cvlib.text.blend; "
          "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_the_command_line_starts_without_the_model_libraries():
  """``cvlib --help`` and ``cvlib validate`` import neither JAX nor scikit-learn nor matplotlib:
  the models' modules load in the commands that use them."""
  code = ("import sys, cvlib.cli; print(sorted(m for m in ('jax', 'sklearn', 'matplotlib', "
          "'lifetimes', 'papermill') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_STAGES))
def test_notebooks_call_only_their_stages_steps(notebook):
  """A notebook calls steps of its own stage module (and the loaders of earlier stages); each stage
  module lists its notebook's steps in ``__all__``, and every name there exists."""
  import importlib
  stage = NOTEBOOK_STAGES[notebook]
  module = importlib.import_module(f"cvlib.stages.{stage}")
  missing = [n for n in module.__all__ if not hasattr(module, n)]
  assert not missing, f"cvlib.stages.{stage}.__all__ names what it lacks: {missing}"
  cells = json.loads((REPO / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
  source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
  called = set(re.findall(rf"\b{stage}\.(\w+)\(", source))
  assert called, f"{notebook} calls nothing from cvlib.stages.{stage}"
  assert called <= set(module.__all__), sorted(called - set(module.__all__))
  assert "pipeline" not in source
  for earlier in ("preprocess", "finetune"):
    if earlier != stage:
      assert set(re.findall(rf"\b{earlier}\.(\w+)\(", source)) <= {f"load_{'prepared' if earlier == 'preprocess' else 'finetune'}"}

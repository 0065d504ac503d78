"""The package's layout: subpackages in the order data flows, each importing only the ones
before it, no import cycle, no library module importing the CLI, and none using another's
private names. Read with `ast` (no TensorFlow), over every import, including those inside
functions."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "saic_tf")
# The pipeline's order (saic_tf/__init__.py): a package may import itself and those before it.
ORDER = ("common", "data", "codec", "semantic", "training", "evaluation", "deploy",
         "experiments")
CLI = ("saic_tf.cli", "saic_tf.commands")  # the flags and the commands (bin/, `saic`)
TOP_LEVEL = ("saic_tf",) + CLI  # the package's API, and the CLI (imports any)


def module_name(path, root=PACKAGE):
  relative = os.path.relpath(path, os.path.dirname(root))[:-len(".py")].replace(os.sep, ".")
  return relative[:-len(".__init__")] if relative.endswith(".__init__") else relative


def modules(root=PACKAGE):
  """{module name: path} of every .py file of the package."""
  found = {}
  for directory, _, names in os.walk(root):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        found[module_name(path, root)] = path
  return found


def imports(path, name):
  """([(module, name imported from it or None, the local name it binds to a module or None)] of
  every import in `path` (module `name`), relative ones resolved; the file's syntax tree)."""
  package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  tree, found = ast.parse(open(path).read(), path), []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(alias.name, None, alias.asname) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
      found += [(base, alias.name, alias.asname or alias.name) for alias in node.names]
  return found, tree


def imported(path, name, known):
  """The saic_tf modules `path` (module `name`) imports: `import a.b`, `from a import b` (b a
  module or a name in a)."""
  targets = {f"{base}.{what}" if f"{base}.{what}" in known else base
             for base, what, _ in imports(path, name)[0]}
  return {t for t in targets if t == "saic_tf" or t.startswith("saic_tf.")}


def private_uses(path, name, known):
  """Where module `name` uses another saic_tf module's private name (a leading _, not a
  __dunder__): `from saic_tf.a import _b`, or `a._b` with module a imported."""
  private = lambda n: n.startswith("_") and not n.endswith("__")
  found, tree = imports(path, name)
  local = {as_name: f"{base}.{what}" if what else base for base, what, as_name in found}
  uses = [f"{base}.{what}" for base, what, _ in found if base in known and what and private(what)]
  uses += [f"{local[n.value.id]}.{n.attr}" for n in ast.walk(tree)
           if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
           and local.get(n.value.id) in known and private(n.attr)]
  return [f"{name} uses {use}" for use in uses if use.rpartition(".")[0] != name]


def graph(root=PACKAGE):
  known = modules(root)
  return {name: imported(path, name, known) for name, path in known.items()}


def stage(module):
  """Index in ORDER of a module's subpackage; None for the top level."""
  parts = module.split(".")
  return ORDER.index(parts[1]) if len(parts) > 1 and parts[1] in ORDER else None


def problems(edges):
  """Every breach of the layout rules in an import graph {module: {imported modules}}."""
  found = []
  for module, targets in sorted(edges.items()):
    if module not in TOP_LEVEL and stage(module) is None:
      found.append(f"{module}: not in a subpackage of the pipeline ({', '.join(ORDER)})")
    for target in sorted(targets):
      if target in CLI and module not in CLI:
        found.append(f"{module} imports the CLI ({target})")
      elif module not in TOP_LEVEL and target != "saic_tf":
        if stage(target) is None or stage(target) > stage(module):
          found.append(f"{module} imports {target}, later in the pipeline")
  found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(edges)]
  return found


def cycles(edges):
  """One cycle per strongly connected group of modules that import each other."""
  found, state, stack = [], {}, []

  def visit(module):
    state[module] = "open"
    stack.append(module)
    for target in sorted(edges.get(module, ())):
      if state.get(target) == "open":
        found.append(stack[stack.index(target):] + [target])
      elif target not in state:
        visit(target)
    stack.pop()
    state[module] = "done"

  for module in sorted(edges):
    if module not in state:
      visit(module)
  return found


def test_the_package_follows_the_pipeline_order_with_no_cycle_and_no_cli_import():
  edges = graph()
  assert "saic_tf.training.trainer" in edges and "saic_tf.codec.bitstream" in edges
  assert "saic_tf.common.layout" in edges["saic_tf.training.trainer"]  # the walk sees imports
  assert problems(edges) == []


def test_no_module_uses_another_modules_private_names():
  known = modules()
  assert [use for name, path in sorted(known.items())
          for use in private_uses(path, name, known)] == []


def test_every_subpackage_of_the_order_exists_and_nothing_else_does():
  subpackages = {name for name in os.listdir(PACKAGE)
                 if os.path.exists(os.path.join(PACKAGE, name, "__init__.py"))}
  assert subpackages == set(ORDER)


@pytest.mark.parametrize("edges, expected", [
    ({"saic_tf.codec.bitstream": {"saic_tf.training.loop"}, "saic_tf.training.loop": set()},
     "saic_tf.codec.bitstream imports saic_tf.training.loop, later in the pipeline"),
    ({"saic_tf.experiments.reproduce": {"saic_tf.cli"}, "saic_tf.cli": set()},
     "saic_tf.experiments.reproduce imports the CLI (saic_tf.cli)"),
    ({"saic_tf.deploy.api": {"saic_tf.commands"}, "saic_tf.commands": set()},
     "saic_tf.deploy.api imports the CLI (saic_tf.commands)"),
    ({"saic_tf.deploy.export": {"saic_tf.deploy.file_codec"},
      "saic_tf.deploy.file_codec": {"saic_tf.deploy.export"}},
     "import cycle: saic_tf.deploy.export -> saic_tf.deploy.file_codec -> saic_tf.deploy.export"),
    ({"saic_tf.compression": set()},
     "saic_tf.compression: not in a subpackage of the pipeline"),
])
def test_the_check_catches_each_kind_of_breach(edges, expected):
  assert any(p.startswith(expected) for p in problems(edges)), problems(edges)


def test_the_walk_reads_lazy_and_relative_imports(tmp_path):
  package = tmp_path / "saic_tf"
  (package / "codec").mkdir(parents=True)
  (package / "__init__.py").write_text("")
  (package / "cli.py").write_text("")
  (package / "codec" / "__init__.py").write_text("")
  (package / "codec" / "networks.py").write_text("")
  (package / "codec" / "bitstream.py").write_text(
      "from . import networks\nfrom .networks import _a\nimport saic_tf.codec.networks as n\n\n"
      "def f():\n  from saic_tf import cli\n  return networks._b, n._c, cli.x._d, self._e\n")
  known = modules(str(package))
  edges = {name: imported(path, name, known) for name, path in known.items()}
  assert edges["saic_tf.codec.bitstream"] == {"saic_tf.codec.networks", "saic_tf.cli"}
  assert private_uses(str(package / "codec" / "bitstream.py"), "saic_tf.codec.bitstream",
                      known) == [f"saic_tf.codec.bitstream uses saic_tf.codec.networks.{n}"
                                 for n in ("_a", "_b", "_c")]

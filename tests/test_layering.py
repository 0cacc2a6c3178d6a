"""The house rule: a module never imports from a layer above its own."""

import ast
from pathlib import Path

import mmgraph

LAYERS = ["data", "nn", "models", "eval", "train", "plot", "serve", "cli"]
PACKAGE = Path(mmgraph.__file__).parent


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "mmgraph" or len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_imports_from_a_layer_above():
    violations = []
    for path in PACKAGE.rglob("*.py"):
        module = "mmgraph." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = layer_of(module)
        if own is None:
            continue  # shared leaves (errors, io, allocator, launch) and the package root
        for imported in imported_modules(path):
            theirs = layer_of(imported)
            if theirs is not None and theirs > own:
                violations.append(f"{module} imports {imported}")
    assert not violations, violations


def test_shared_leaf_modules_import_no_layer():
    for name in ("errors.py", "io.py"):
        imported = imported_modules(PACKAGE / name)
        assert all(layer_of(m) is None for m in imported), (name, imported)

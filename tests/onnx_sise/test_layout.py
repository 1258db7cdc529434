"""The package's layout: imports flow downwards through the layers of the README's
diagram, no module imports itself back through others, and the runtime imports neither
the export package nor torch. Read from the source files (every import statement,
function-level and TYPE_CHECKING ones too), not from what happens to be imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "onnx_sise"
# Lowest first; a module may import from its own layer or one below. The README's
# "Layout" section draws the same.
LAYERS = (
    ("errors", "_core"),
    ("cancel", "progress", "kernels", "files"),
    ("model",),
    ("images",),
    ("methods",),
    ("explainer",),
    ("evaluation",),
    ("batch", "serve"),  # batch: Ray Data, only onnx_sise.batch imports ray (RAY_ONLY_IN below)
    ("cli", "__main__", "", "preparation"),  # preparation: a deprecated alias of model.preparation
)
FORBIDDEN = ("onnx_sise_export", "torch", "torchvision", "onnx2torch")
# The `ray` extra: imported by this unit only, so that onnx_sise imports and runs without it.
RAY_ONLY_IN = "onnx_sise.batch"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() or name == "onnx_sise._core"


def imports_of(path: Path, root: Path) -> set[str]:
    """Every module `path` imports, absolute (`from . import kernels` gives onnx_sise.kernels)."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            submodules = [f"{source}.{alias.name}" for alias in node.names
                          if is_module(f"{source}.{alias.name}", root)]
            found.update(submodules if submodules else [source])
    return found


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(path, package.parent): imports_of(path, package.parent) for path in sorted(package.rglob("*.py"))}


def upward_imports(package: Path = PACKAGE) -> list[str]:
    return [f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
            for module, targets in graph(package).items() for target in targets
            if target.startswith("onnx_sise.") and layer_of(target) > layer_of(module)]


def layer_of(module: str) -> int:
    unit = module.split(".")[1] if "." in module else ""
    for rank, units in enumerate(LAYERS):
        if unit in units:
            return rank
    raise AssertionError(f"{module} is in no layer: add its unit ({unit}) to LAYERS and the README's diagram")


def cycle_in(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the modules of `edges`, or None."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if target not in edges or target == module:
                continue
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_every_import_goes_down_the_layers() -> None:
    upward = upward_imports()
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    edges = {module: {t for t in targets if t.startswith("onnx_sise")} for module, targets in graph().items()}
    cycle = cycle_in(edges)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_runtime_never_imports_the_export_package_or_torch() -> None:
    found = [f"{module} imports {target}" for module, targets in graph().items() for target in targets
             if target.split(".")[0] in FORBIDDEN]
    assert not found, "\n".join(found)


def test_only_the_batch_unit_imports_ray() -> None:
    found = [f"{module} imports {target}" for module, targets in graph().items() for target in targets
             if target.split(".")[0] in ("ray", "pyarrow") and not module.startswith(RAY_ONLY_IN)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("edges", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], expected: list[str] | None) -> None:
    assert cycle_in(edges) == expected


def test_an_upward_import_and_a_cycle_are_caught(tmp_path: Path) -> None:
    """The checks on a package written the wrong way round: the kernels import the
    explainer (upward, even inside a function), which imports them back (a cycle)."""
    package = tmp_path / "onnx_sise"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "kernels.py").write_text("def late():\n    from .explainer import Explainer\n")
    (package / "explainer.py").write_text("from . import kernels\n")
    assert upward_imports(package) == ["onnx_sise.kernels (layer 1) imports onnx_sise.explainer (layer 5)"]
    assert cycle_in(graph(package)) == ["onnx_sise.explainer", "onnx_sise.kernels", "onnx_sise.explainer"]

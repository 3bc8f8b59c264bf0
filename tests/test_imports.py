"""The package's import graph: one way only (no cycles), down the storeys, all at the top of each file,
tutorial on top.

Parsed from the source with `ast`, nothing is imported: an edge A -> B is any `import` or `from ... import`
in module A that names module B of sipmask_ref (or a name defined in B).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sipmask_ref"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement of `module` names."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] if node.level else [])
        stem = ".".join(part for part in (base, node.module or "") if part)
        names = [
            f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in MODULES else stem for alias in node.names
        ]
    found = []
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name != module and name != "sipmask_ref":
            found.append(name)
    return found


def _imports() -> tuple[dict[str, set[str]], list[str]]:
    """(module -> the package modules it imports, 'module:line -> target' of imports inside functions)."""
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    late = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node):
                    edges[module].add(target)
                    if id(node) not in top:
                        late.append(f"{module}:{node.lineno} -> {target}")
    return edges, late


EDGES, LATE = _imports()

# The storeys of docs/ARCHITECTURE.md section 2, lowest first: a module imports only from its own storey
# or from below it. An entry names a module relative to the package ("__init__" is the package itself)
# or a subpackage, which places every module under it ("data" is data/__init__, data/coco, ...).
# A new file fails test_every_module_has_a_storey until it is added here (and to the diagram).
STOREYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundations", ("config", "files", "geometry", "checkpoints")),
    (
        "paper",
        (
            "__init__",
            "backbone",
            "fcos",
            "head",
            "spatial_preservation",
            "basis_masks",
            "spatial_mask_prediction",
            "losses",
            "inference",
            "model_input",
            "model",
            "tracking",
            "trackers",
            "video_model",
        ),
    ),
    ("data", ("data",)),  # above the paper since model_input.py holds the model's input preparation
    ("evaluation", ("eval",)),
    ("engine", ("engine",)),
    (
        "helpers",
        (
            "cli_common",
            "workspace",
            "explorer",
            "explorer_maps",
            "viz",
            "architecture_figure",
            "leak_figure",
            "dataset_check",
            "export",
        ),
    ),
    ("experiments", ("reproduce", "compare", "video", "leak_table")),
    ("entry points", ("cli", "__main__", "tutorial", "commands")),
)

# Imports allowed to go up a storey, each with the reason ARCHITECTURE.md section 2 gives ("Where the
# picture bends"): (importer, imported), full module names -> reason. None today: the video package's
# imports of cli_common, workspace and viz are why the helpers sit under the experiments, and the model's
# input preparation moved out of the data package into model_input.py.
UPWARD_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _places(entry: str, module: str) -> bool:
    """Whether the STOREYS entry `entry` names `module` (itself, or a subpackage holding it)."""
    relative = module.removeprefix("sipmask_ref").removeprefix(".") or "__init__"
    return relative == entry or relative.startswith(entry + ".")


def _storey(module: str) -> int | None:
    """Index in STOREYS of the entry that places `module` (the longest one that matches), or None."""
    matches = [
        (len(entry), level)
        for level, (_, entries) in enumerate(STOREYS)
        for entry in entries
        if _places(entry, module)
    ]
    return max(matches)[1] if matches else None


def test_the_graph_was_read():
    assert "sipmask_ref.checkpoints" in EDGES["sipmask_ref.video_model"]
    assert "sipmask_ref.data.coco" in EDGES["sipmask_ref.data.ytvis"]
    # relative imports inside a subpackage: `from .tracks import` and `from .. import engine`
    assert {"sipmask_ref.video.tracks", "sipmask_ref.engine"} <= EDGES["sipmask_ref.video.training"]
    assert len(MODULES) > 30


def test_no_function_level_imports_of_package_modules():
    assert LATE == []


def test_no_import_cycles():
    """Depth-first search; a grey module met again closes a cycle."""
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "grey"
        for target in sorted(EDGES[module]):
            if state.get(target) == "grey":
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "black"

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_nothing_imports_tutorial_and_nothing_locates_itself(module):
    assert "sipmask_ref.tutorial" not in EDGES[module], "tutorial.py is the top layer: import from below it"
    assert "__file__" not in MODULES[module].read_text(), "the library is handed paths (workspace.repo_root)"


def test_every_module_has_a_storey():
    unplaced = sorted(module for module in MODULES if _storey(module) is None)
    assert unplaced == [], (
        f"{unplaced}: place each new module on a storey of STOREYS in tests/test_imports.py (a storey "
        f"imports only from itself and below) and in the diagram of docs/ARCHITECTURE.md section 2"
    )


def test_every_storey_entry_names_a_module():
    """A renamed or removed module leaves no stale entry behind."""
    stale = [
        entry for _, entries in STOREYS for entry in entries if not any(_places(entry, m) for m in MODULES)
    ]
    assert stale == []


def test_imports_go_down_the_storeys():
    upward = [
        f"{module} ({STOREYS[_storey(module)][0]}) imports {target} ({STOREYS[_storey(target)][0]})"
        for module, targets in sorted(EDGES.items())
        for target in sorted(targets)
        if None not in (_storey(module), _storey(target))
        and _storey(target) > _storey(module)
        and (module, target) not in UPWARD_EXCEPTIONS
    ]
    assert upward == [], "import from your storey or below (docs/ARCHITECTURE.md section 2)"


def test_each_upward_exception_is_still_an_upward_import():
    stale = [
        f"{module} -> {target}"
        for module, target in UPWARD_EXCEPTIONS
        if target not in EDGES[module] or _storey(target) <= _storey(module)
    ]
    assert stale == [], "not an upward import any more: remove it from UPWARD_EXCEPTIONS"

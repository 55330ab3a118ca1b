"""The tree's shape: modules import downward or sideways only, folders do not import each other in a circle, and no
product module grows past 400 lines."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("concept_patch", "nodes", "quality")
MAX_LINES = 400


def _modules():
    for top in PRODUCT:
        yield from sorted((REPO / top).rglob("*.py"))


def _package(path: Path) -> tuple[str, ...]:
    return path.relative_to(REPO).parent.parts


def _imported(path: Path):
    """The modules a file imports from the pack, as (line, folder parts, module name or None)."""
    package = _package(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = base + tuple(node.module.split(".")) if node.module else base
            yield node.lineno, target, [alias.name for alias in node.names]


def _is_folder(parts: tuple[str, ...]) -> bool:
    return (REPO.joinpath(*parts)).is_dir()


def _source_folder(target: tuple[str, ...]) -> tuple[str, ...]:
    """The folder whose module `from <target> import ...` reads: a module file's folder, or a package's own folder
    (its __init__, or its submodules)."""
    return target if _is_folder(target) else target[:-1]


def test_no_module_imports_from_a_folder_above_its_own():
    upward = []
    for path in _modules():
        own = _package(path)
        for line, target, _ in _imported(path):
            folder = _source_folder(target)
            if len(folder) < len(own) and own[: len(folder)] == folder:
                upward.append(f"{path.relative_to(REPO)}:{line} imports from {'/'.join(folder)}/")
    assert upward == []


def test_the_layout_check_sees_an_upward_import(tmp_path):
    package = tmp_path / "concept_patch" / "stream"
    package.mkdir(parents=True)
    (tmp_path / "concept_patch" / "encode.py").write_text("")
    (package / "session.py").write_text("from ..encode import encode_saliency\nfrom .options import X\n")
    globals()["REPO"], saved = tmp_path, REPO
    try:
        found = [_source_folder(t) for _, t, _ in _imported(package / "session.py")]
    finally:
        globals()["REPO"] = saved
    assert found == [("concept_patch",), ("concept_patch", "stream")]


def _folder_graph():
    graph = defaultdict(set)
    for path in (REPO / "concept_patch").rglob("*.py"):
        own = _package(path)
        if len(own) < 2:
            continue  # the top-level modules (encode, generation) sit above every folder
        for _, target, _ in _imported(path):
            if len(target) >= 2 and target[0] == "concept_patch" and target[1] != own[1]:
                graph[own[1]].add(target[1])
    return graph


def test_folders_do_not_import_each_other_in_a_circle():
    graph = _folder_graph()
    seen, stack, cycles = set(), [], []

    def visit(folder):
        if folder in stack:
            cycles.append(stack[stack.index(folder):] + [folder])
            return
        if folder in seen:
            return
        seen.add(folder)
        stack.append(folder)
        for other in sorted(graph[folder]):
            visit(other)
        stack.pop()

    for folder in sorted(graph):
        visit(folder)
    assert cycles == []
    assert "families" not in graph["stream"] and "requery" not in graph["stream"]


def test_product_code_never_imports_the_nodes():
    offenders = [f"{p.relative_to(REPO)}:{line}" for p in (REPO / "concept_patch").rglob("*.py")
                 for line, target, _ in _imported(p) if target[:1] == ("nodes",)]
    assert offenders == []


def test_the_benchmark_stays_outside_the_nodes_and_the_patching():
    """quality/ measures the pack: nothing the nodes run imports it, and it reads the pack only through
    concept_patch (never the nodes)."""
    offenders = [f"{p.relative_to(REPO)}:{line}" for top in ("concept_patch", "nodes") for p in (REPO / top).rglob("*.py")
                 for line, target, _ in _imported(p) if target[:1] == ("quality",)]
    offenders += [f"{p.relative_to(REPO)}:{line}" for p in (REPO / "quality").rglob("*.py")
                  for line, target, _ in _imported(p) if target[:1] == ("nodes",)]
    text = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "quality").rglob("*.py"))
    offenders += [f"quality/ names nodes.{m}" for m in re.findall(r"[\"']nodes\.(\w+)", text)]
    assert offenders == []


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(REPO)))
def test_product_modules_stay_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it by what its parts do"


def test_test_modules_have_names_of_their_own():
    """pytest imports each test module by its file name (rootdir-relative, no packages): two tiers with a
    test_x.py each stop the whole run at collection."""
    names = defaultdict(list)
    for path in (REPO / "tests").rglob("test_*.py"):
        names[path.name].append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}

"""What the family registry (concept_patch/families/registry.py) writes outside the code.

    python scripts/families.py readme          rewrites the list of supported models in README.md and the
                                               table of supported models in docs/models.md
    python scripts/families.py readme --check  exit 1 when either file is not what the registry makes
    python scripts/families.py compat          the pytest -k expression of scripts/test.sh's ComfyUI 0.3.x run:
                                               the tests of families 0.3.x cannot run left out

Each block sits between its markers in its file (BLOCKS); tests/unit/test_family_registry.py fails when one differs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MODELS_DOC = REPO / "docs" / "models.md"
# The blocks the registry writes: marker name -> (the file holding it: a path of this module, README or
# MODELS_DOC, looked up when used; the registry function that makes the block).
BLOCKS = {"supported-models": ("MODELS_DOC", "readme_table"), "supported-models-list": ("README", "readme_model_list")}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start (scripts/families.py readme) -->", f"<!-- {name}:end -->"


START, END = markers("supported-models")


def registry():
    """concept_patch.families.registry, imported as part of the pack (its modules import each other relatively)."""
    name = "concept_attention"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    from concept_attention.concept_patch.families import registry as families_registry

    return families_registry


def with_table(text: str, table: str, name: str = "supported-models") -> str:
    """The text with the block between `name`'s markers replaced by `table`."""
    start_marker, end_marker = markers(name)
    start, end = text.index(start_marker) + len(start_marker), text.index(end_marker)
    return text[:start] + "\n" + table + "\n" + text[end:]


def block_files() -> list[Path]:
    """The files holding the registry's blocks."""
    return list(dict.fromkeys(globals()[holder] for holder, _ in BLOCKS.values()))


def with_registry_blocks(text: str, path: Path | None = None) -> str:
    """The text of `path` (README.md by default) with every block the registry writes there made anew."""
    path = README if path is None else path
    families = registry()
    for name, (holder, function) in BLOCKS.items():
        if globals()[holder] == path:
            text = with_table(text, getattr(families, function)(), name)
    return text


# Tests of the LLM text encoders, which ComfyUI 0.3.x lacks whatever the family.
COMPAT_EXTRA_WORDS = ("llm",)


def compat_selection() -> str:
    words = [*registry().compatibility_exclusions(), *COMPAT_EXTRA_WORDS]
    return f"not ({' or '.join(words)})"


def main(argv: list[str]) -> int:
    if argv[:1] == ["compat"]:
        print(compat_selection())
        return 0
    if argv[:1] != ["readme"]:
        print(__doc__)
        return 2
    drifted = []
    for path in block_files():
        text = path.read_text(encoding="utf-8")
        wanted = with_registry_blocks(text, path)
        if wanted == text:
            continue
        if "--check" in argv:
            drifted.append(path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path))
        else:
            path.write_text(wanted, encoding="utf-8")
    if drifted:
        print(f"{', '.join(drifted)}: the supported models differ from the registry: run python scripts/families.py readme")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

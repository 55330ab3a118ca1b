"""What the family registry (concept_patch/families/registry.py) writes outside the code.

    python scripts/families.py readme          rewrites the README's table and list of supported models
    python scripts/families.py readme --check  exit 1 when README.md is not what the registry makes
    python scripts/families.py compat          the pytest -k expression of scripts/test.sh's ComfyUI 0.3.x run:
                                               the tests of families 0.3.x cannot run left out

Each block sits between its markers (BLOCKS); tests/unit/test_family_registry.py fails when one differs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
# The README's blocks the registry writes: marker name -> the registry function that makes the block.
BLOCKS = {"supported-models": "readme_table", "supported-models-list": "readme_model_list"}


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


def with_table(readme: str, table: str, name: str = "supported-models") -> str:
    """The README text with the block between `name`'s markers replaced by `table`."""
    start_marker, end_marker = markers(name)
    start, end = readme.index(start_marker) + len(start_marker), readme.index(end_marker)
    return readme[:start] + "\n" + table + "\n" + readme[end:]


def with_registry_blocks(readme: str) -> str:
    """The README text with every block the registry writes made anew."""
    families = registry()
    for name, function in BLOCKS.items():
        readme = with_table(readme, getattr(families, function)(), name)
    return readme


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
    text = README.read_text(encoding="utf-8")
    wanted = with_registry_blocks(text)
    if "--check" in argv:
        if wanted != text:
            print("README.md's supported-models table differs from the registry: run python scripts/families.py readme")
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

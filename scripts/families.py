"""What the family registry (concept_patch/families/registry.py) writes outside the code.

    python scripts/families.py readme          rewrites the README's table of supported models
    python scripts/families.py readme --check  exit 1 when README.md is not what the registry makes
    python scripts/families.py compat          the pytest -k expression of scripts/test.sh's ComfyUI 0.3.x run:
                                               the tests of families 0.3.x cannot run left out

The table sits between the markers below; tests/unit/test_family_registry.py fails when it differs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
START, END = "<!-- supported-models:start (scripts/families.py readme) -->", "<!-- supported-models:end -->"


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


def with_table(readme: str, table: str) -> str:
    """The README text with the block between the markers replaced by `table`."""
    start, end = readme.index(START) + len(START), readme.index(END)
    return readme[:start] + "\n" + table + "\n" + readme[end:]


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
    wanted = with_table(text, registry().readme_table())
    if "--check" in argv:
        if wanted != text:
            print("README.md's supported-models table differs from the registry: run python scripts/families.py readme")
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

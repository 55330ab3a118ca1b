"""The README reads in a newcomer's order, its commands are the install and test commands, and every link in it
and in docs/ points at a file and a heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _headings(text: str) -> list[str]:
    return [m.group(2).strip() for m in re.finditer(r"^(#{1,6}) (.+)$", text, re.M)]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _headings(text):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_readme_starts_with_what_it_does_a_picture_install_and_the_first_workflow():
    text = _readme()
    sections = [h for h in _headings(text) if not h.startswith("ComfyUI-ConceptAttention")]
    assert sections[:3] == ["Install", "First workflow", "Example workflows"], sections[:5]
    before_install = text[:text.index("\n## Install\n")]
    assert "saliency maps" in before_install and "![" in before_install  # what it does, and a picture
    assert before_install.index("saliency maps") < before_install.index("![")
    # The first workflow is a shipped template, named as the template browser shows it.
    first = text[text.index("\n## First workflow\n"):text.index("\n## Example workflows\n")]
    template = re.search(r"\*\*(Flux\.1 Concept Mask Inpaint)\*\*", first)
    assert template and (REPO / "example_workflows" / f"{template.group(1)}.json").is_file()
    assert "Templates" in first


def test_readme_keeps_the_model_internals_after_the_nodes_how_to():
    text = _readme()
    how_to = text.index("\n## Nodes\n")
    # No table of RoPE axes and modulation terms before a newcomer has read how to use the nodes.
    assert not re.search(r"RoPE|txt_mod|modulation", text[:how_to]), "model internals before the nodes' how-to"
    assert text.index("\n## Supported models\n") > how_to
    assert "<!-- supported-models:start" not in text  # the per-family table is in docs/models.md


def test_readme_install_and_test_commands():
    text = _readme()
    install = text[text.index("\n## Install\n"):text.index("\n## First workflow\n")]
    commands = re.findall(r"```bash\n(.*?)```", install, re.S)
    assert commands == ["git clone https://github.com/comfyui-concept-attention/ComfyUI-ConceptAttention "
                        "ComfyUI/custom_nodes/ComfyUI-ConceptAttention\ncd ComfyUI && python main.py\n"]
    tests = text[text.index("\n## Tests\n"):]
    assert re.findall(r"```bash\n(.*?)```", tests, re.S)[0] == "bash scripts/test.sh\n"
    assert (REPO / "scripts" / "test.sh").is_file()


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_point_at_existing_files_and_headings(path):
    text = path.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part.replace("%20", " ")).resolve() if file_part else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text(encoding="utf-8")):
            broken.append(target)
    assert broken == []

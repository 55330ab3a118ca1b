"""The family registry is the one list of families: what users read is made from it, and it is consistent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from concept_attention.concept_patch.families import registry
from concept_attention.concept_patch.families.base import ModelClass, ModelFamily, TextEncoder, TokenGrid

REPO = Path(__file__).resolve().parents[2]
README_FIELDS = ("name", "variants", "position", "modulation", "runs_on_comfyui_0_3")


def _families_script():
    spec = importlib.util.spec_from_file_location("families_script", REPO / "scripts" / "families.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _models_doc() -> str:
    return (REPO / "docs" / "models.md").read_text(encoding="utf-8")


def test_models_doc_table_is_the_registrys():
    script = _families_script()
    assert script.MODELS_DOC == REPO / "docs" / "models.md"
    doc = _models_doc()
    assert script.with_table(doc, registry.readme_table()) == doc, (
        "docs/models.md's supported-models table differs from the family registry: run python scripts/families.py readme")
    assert script.with_registry_blocks(doc, script.MODELS_DOC) == doc
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert script.with_registry_blocks(readme, script.README) == readme
    # The per-family table is in docs/models.md only: the README keeps its newcomer's list.
    assert script.START not in readme and script.START in doc


def test_readme_opening_list_is_the_registrys(monkeypatch):
    script = _families_script()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert script.with_table(readme, registry.readme_model_list(), "supported-models-list") == readme
    for family in registry.FAMILIES:
        assert family.name in registry.readme_model_list()
    monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, _NewFamily()))
    assert script.with_table(readme, registry.readme_model_list(), "supported-models-list") != readme


class _NewFamily(ModelFamily):
    name = "Brand-New DiT"
    variants = ("base",)
    model = ModelClass("comfy.ldm.brand_new.model", "BrandNewDiT")
    encoders = (TextEncoder("t5xxl", "T5-XXL", "CLIPLoader, `brand_new`"),)
    grid = TokenGrid("patch_size")
    position = "zero ids"
    modulation = "the text's"


def test_a_family_added_without_its_table_row_fails_the_check(monkeypatch):
    script = _families_script()
    doc = _models_doc()
    monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, _NewFamily()))
    assert script.with_table(doc, registry.readme_table()) != doc
    assert "Brand-New DiT" in registry.readme_table()


def test_a_table_row_of_a_family_the_registry_lacks_fails_the_check(monkeypatch):
    script = _families_script()
    doc = _models_doc()
    extra_row = "| Brand-New DiT | base | T5-XXL | zero ids | the text's |\n"
    edited = doc.replace(script.END, extra_row + script.END)
    assert edited != doc
    assert script.with_table(edited, registry.readme_table()) != edited


def test_the_check_command_fails_on_a_drifted_table_or_list(tmp_path):
    script = _families_script()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    doc = _models_doc()
    script.README, script.MODELS_DOC = tmp_path / "README.md", tmp_path / "models.md"
    script.README.write_text(readme, encoding="utf-8")
    drifted = doc.replace("| Mage-Flow |", "| Mage Flow |", 1)
    assert drifted != doc
    script.MODELS_DOC.write_text(drifted, encoding="utf-8")
    assert script.main(["readme", "--check"]) == 1
    script.MODELS_DOC.write_text(doc, encoding="utf-8")
    assert script.main(["readme", "--check"]) == 0
    script.README.write_text(readme.replace("Mage-Flow, ", "", 1), encoding="utf-8")
    assert script.main(["readme", "--check"]) == 1
    # `readme` rewrites both files from the registry
    assert script.main(["readme"]) == 0
    assert script.README.read_text(encoding="utf-8") == readme
    script.MODELS_DOC.write_text(drifted, encoding="utf-8")
    assert script.main(["readme"]) == 0 and script.MODELS_DOC.read_text(encoding="utf-8") == doc


@pytest.mark.parametrize("family", registry.FAMILIES, ids=lambda f: f.name)
def test_each_family_declares_its_own_readme_row(family):
    # A subclass adapter inherits its parent's maths, never its name or description silently.
    missing = [field for field in README_FIELDS if field not in type(family).__dict__]
    assert not missing, f"{type(family).__name__} inherits {missing} instead of declaring them"
    assert family.name and family.variants and family.position and family.modulation
    assert family.encoders and family.blocks and family.grid is not None and family.model is not None


def test_family_names_are_unique():
    names = [f.name for f in registry.FAMILIES]
    assert len(names) == len(set(names))


def test_one_name_per_text_space():
    named: dict = {}
    for family in registry.FAMILIES:
        for encoder in family.encoders:
            named.setdefault(encoder.space, set()).add(encoder.name)
    assert {space: names for space, names in named.items() if len(names) > 1} == {}
    assert registry.encoder_names()["qwen3_4b"] == "Qwen3 4B"  # not "Klein": Z-Image reads it too


def test_messages_name_every_family_and_encoder():
    models, encoders = registry.supported_models_text(), registry.supported_encoders_text()
    for family in registry.FAMILIES:
        assert family.name in models and family.name in encoders
        for encoder in family.encoders:
            assert encoder.name in encoders


def test_extensions_are_listed_as_such():
    text = registry.supported_models_text()
    rest, _, cross = text.partition("cross-attention models, in the paper's cross-attention baseline")
    paper, _, extension = rest.partition("as an extension of the method")
    for family in registry.FAMILIES:
        assert family.name in (cross if family.cross_attention else extension if family.extension else paper)


def test_compatibility_selection_comes_from_the_registry():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "families.py"), "compat"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out.startswith("not (") and out.endswith(")")
    words = set(out[len("not ("):-1].split(" or "))
    left_out = {word for f in registry.FAMILIES if not f.runs_on_comfyui_0_3 for word in f.test_ids}
    assert words == left_out | {"llm"}
    assert {"qwen", "flux2", "klein"} <= words and not words & {"hunyuan", "flux", "sd3", "chroma", "hidream"}


def test_test_script_reads_its_selection_from_the_registry():
    test_sh = (REPO / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "scripts/families.py compat" in test_sh
    assert "klein or" not in test_sh  # no hand-written list of families


def test_token_grid_rules():
    class Model:
        patch_size = 2
        patch_size_t = None
        video_patch = (1, 2, 2)
        picture_patch = (2, 2)

    assert TokenGrid("patch_size", round_up=False).spatial(Model, (65, 63)) == (33, 32)
    assert TokenGrid("patch_size").spatial(Model, (65, 63)) == (33, 32)
    assert TokenGrid("patch_size").spatial(Model, (64, 63)) == (32, 32)
    assert TokenGrid("patch_size", round_up=False).spatial(Model, (64, 63)) == (32, 32)
    assert TokenGrid("patch_size", round_up=False).spatial(Model, (5, 5)) == (3, 3)
    assert TokenGrid("patch_size").frames(Model, 13) is None
    assert TokenGrid("patch_size", time_patch="patch_size_t").frames(Model, 13) == 13
    assert TokenGrid("video_patch", time_patch="video_patch").frames(Model, 13) == 13
    assert TokenGrid("picture_patch", time_patch="picture_patch").frames(Model, 13) is None


def test_unknown_model_class_names_every_family():
    class Unknown:
        pass

    Unknown.__module__ = "comfy.ldm.brand_new.model"
    with pytest.raises(ValueError, match="this model's network is Unknown, which is not one") as error:
        registry.detect_family(Unknown())
    for family in registry.FAMILIES:
        assert family.name in str(error.value)

"""Server tier: one real ComfyUI process per test session, with this pack in custom_nodes.

Fixtures
  comfy_server            the session's ComfyServer (base_url, run_prompt, object_info, log, ...)
  comfy_server_extra_custom_nodes
                          test-only node packs copied into the server's custom_nodes/: every
                          folder in tests/server/fixture_nodes/ (override the fixture to change)
  comfy_server_prepare    callables run on the base dir before the server starts; by default it
                          puts the tiny model files (below) into models/
  tiny_model_files        small random-weight model files for the stock loaders, written once per
                          session (tests/server/model_files.py):
                          {"sd3": path, "flux2_klein": path, "clip_l": path}
  pack_node_ids           the node ids this pack exports, asked from its ComfyExtension
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from concept_attention_tests.server.comfy_server import start_comfy_server

FIXTURE_NODES_DIR = Path(__file__).resolve().parent / "fixture_nodes"


async def _exported_node_ids() -> list[str]:
    import concept_attention

    extension = await concept_attention.comfy_entrypoint()
    await extension.on_load()
    return [node_cls.define_schema().node_id for node_cls in await extension.get_node_list()]


@pytest.fixture(scope="session")
def pack_node_ids(comfyui_path) -> list[str]:
    """Node ids of the pack, from the same entry point ComfyUI calls."""
    return asyncio.run(_exported_node_ids())


@pytest.fixture(scope="session")
def comfy_server_extra_custom_nodes() -> list[Path]:
    if not FIXTURE_NODES_DIR.is_dir():
        return []
    return sorted(p for p in FIXTURE_NODES_DIR.iterdir()
                  if p.name != "__pycache__" and (p.is_dir() or p.suffix == ".py"))


@pytest.fixture(scope="session")
def tiny_model_files(comfyui_path, tmp_path_factory) -> Iterator[dict[str, Path]]:
    """A tiny SD3 and a tiny Flux.2 Klein for UNETLoader and a random CLIP-L for CLIPLoader(type sd3),
    written at test time (never committed) into a session temp dir."""
    from concept_attention_tests.server import model_files

    cache = tmp_path_factory.mktemp("tiny_models")
    files = {
        "sd3": model_files.write_tiny_sd3(cache / model_files.SD3_FILE),
        "flux2_klein": model_files.write_tiny_flux2_klein(cache / model_files.FLUX2_KLEIN_FILE),
        "clip_l": model_files.write_random_clip_l(cache / model_files.CLIP_L_FILE),
    }
    yield files
    for path in files.values():  # 250 MB: not worth keeping in pytest's retained temp dirs
        path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def comfy_server_prepare(tiny_model_files) -> Iterator[list]:
    from concept_attention_tests.server import model_files

    installed: list[Path] = []

    def install_tiny_models(base_dir: Path) -> None:
        models = base_dir / "models"
        for key, folder in (("sd3", "diffusion_models"), ("flux2_klein", "diffusion_models"),
                            ("clip_l", "text_encoders")):
            src = tiny_model_files[key]
            installed.append(model_files.link_or_copy(src, models / folder / src.name))

    yield [install_tiny_models]
    for path in installed:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def comfy_server(comfyui_path, tmp_path_factory, comfy_server_extra_custom_nodes, comfy_server_prepare):
    def prepare(base_dir: Path) -> None:
        for step in comfy_server_prepare:
            step(base_dir)

    base_dir = tmp_path_factory.mktemp("comfy_server")
    with start_comfy_server(base_dir, comfyui_path=comfyui_path,
                            extra_custom_nodes=comfy_server_extra_custom_nodes,
                            prepare=prepare) as server:
        yield server

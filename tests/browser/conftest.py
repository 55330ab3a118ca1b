"""Browser tier: the real ComfyUI front end in Debian's headless Chromium, against a real server.

Fixtures (per test module: Playwright's sync API keeps an asyncio loop running in the main
thread while it is open, which would break later tiers' asyncio.run(); so it closes when the
module's tests are done):
  browser_server   a ComfyUI server with this pack (copied as the registry ships it) and the
                   server tier's test-only node packs (tests/server/fixture_nodes/: tiny Flux.1, and
                   tiny stand-ins for the example workflows' loaders), with the examples' Load Image
                   picture (example.png) in its input folder
  chromium         a Playwright persistent context over /usr/bin/chromium, empty profile
  comfy            a ComfyPage: the UI opened once, with its console recorded from the start
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from concept_attention_tests.browser.browser_session import (
    FIXTURE_NODES_DIR,
    chromium_problem,
    launch_chromium,
    open_comfy,
)
from concept_attention_tests.server.comfy_server import start_comfy_server


@pytest.fixture(scope="module")
def browser_server(comfyui_path, tmp_path_factory):
    from concept_attention_tests.browser.example_runs import EXAMPLE_PICTURE, write_example_picture

    base_dir = tmp_path_factory.mktemp("comfy_browser_server")
    extra = sorted(p for p in FIXTURE_NODES_DIR.iterdir() if p.is_dir() and p.name != "__pycache__")

    def prepare(base: Path) -> None:
        (base / "input").mkdir(parents=True, exist_ok=True)
        write_example_picture(base / "input" / EXAMPLE_PICTURE)  # the examples' Load Image file

    with start_comfy_server(base_dir, comfyui_path=comfyui_path, extra_custom_nodes=extra, prepare=prepare) as server:
        yield server


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    problem = chromium_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp_path_factory.mktemp("chromium_profile"))
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def comfy(browser_server, chromium):
    page = open_comfy(chromium, browser_server)
    yield page
    page.page.close()

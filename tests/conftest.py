"""Shared test setup for every tier.

* The repository root is registered as the importable package ``concept_attention`` so tests
  import product code as ``concept_attention.concept_patch...`` / ``concept_attention.nodes...``
  (the way ComfyUI imports it: as a package, with relative imports inside). Tests must import
  product code through that name only.
* ComfyUI is found at ``$COMFYUI_PATH``, else ``~/ComfyUI``. When it exists it goes on
  ``sys.path`` and ComfyUI's own CLI args are switched to CPU mode before anything can import
  ``comfy.model_management``. Unit tests never need it.
* Tests are marked by directory: tests/unit -> ``unit``, tests/comfy -> ``comfy``,
  tests/server -> ``server``, tests/browser -> ``browser``.
* Without ComfyUI, every comfy/server test module is replaced by one FAILING test that says
  how to provide ComfyUI. Those tiers never skip.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO_ROOT / "tests"
PACKAGE_NAME = "concept_attention"
TIERS = ("unit", "comfy", "server", "browser")
COMFYUI_TIERS = ("comfy", "server", "browser")

# ---------------------------------------------------------------------------------------------
# (a) the repo root as the package `concept_attention`
# ---------------------------------------------------------------------------------------------


TESTS_PACKAGE_NAME = "concept_attention_tests"


def _register_package(name: str, directory: Path, init_file: Path | None) -> None:
    existing = sys.modules.get(name)
    if existing is not None:
        if [str(directory)] == list(getattr(existing, "__path__", [])):
            return
        raise RuntimeError(f"another module named {name!r} is already imported: {existing!r}")
    if init_file is None:  # a plain folder: a package with no code of its own
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(directory)]
    else:
        spec = importlib.util.spec_from_file_location(
            name, init_file, submodule_search_locations=[str(directory)]
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


_register_package(PACKAGE_NAME, REPO_ROOT, REPO_ROOT / "__init__.py")
# Helper modules that live among the tests can be imported by a stable, unique name as
# `concept_attention_tests.<tier>.<module>` (e.g. concept_attention_tests.server.comfy_server),
# whichever folder pytest happened to put on sys.path.
_register_package(TESTS_PACKAGE_NAME, TESTS_DIR, None)
# `python -m pytest` from the repo root puts the root on sys.path, where `import nodes` or
# `import concept_patch` would find the pack's folders as top-level modules (not how ComfyUI
# loads them) and shadow ComfyUI's own `nodes`. Product code is reachable only as
# `concept_attention.*`.
def _drop_repo_root_from_sys_path() -> None:
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != REPO_ROOT]


_drop_repo_root_from_sys_path()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # pytest's prepend import mode may put the checkout back on sys.path while it imports test
    # modules (it does when the checkout's folder name is not a Python identifier, e.g. "ci-check",
    # because the root has an __init__.py): drop it again before any test runs.
    _drop_repo_root_from_sys_path()

# ---------------------------------------------------------------------------------------------
# (b) ComfyUI location and CPU mode
# ---------------------------------------------------------------------------------------------


def find_comfyui() -> Path:
    """The ComfyUI checkout the comfy/server tiers run against (may not exist)."""
    env = os.environ.get("COMFYUI_PATH")
    return Path(env).expanduser().resolve() if env else (Path.home() / "ComfyUI").resolve()


COMFYUI_PATH = find_comfyui()


def comfyui_problem(path: Path = COMFYUI_PATH) -> str | None:
    """None when `path` is a ComfyUI checkout, else a message saying how to provide one."""
    if (path / "main.py").is_file() and (path / "comfy" / "model_management.py").is_file():
        return None
    return (
        f"ComfyUI was not found at {path}. The comfy and server test tiers run against a real "
        "ComfyUI checkout (0.33.0 is the tested version). Provide one with\n"
        "    git clone --branch v0.33.0 https://github.com/comfyanonymous/ComfyUI.git ~/ComfyUI\n"
        "or point COMFYUI_PATH at an existing checkout:\n"
        "    COMFYUI_PATH=/path/to/ComfyUI bash scripts/test.sh\n"
        "(scripts/setup_env.sh also tries that clone and builds the venv that runs it)."
    )


COMFYUI_PROBLEM = comfyui_problem()


def _setup_comfyui_cpu() -> None:
    # ComfyUI's own modules import each other as top-level names (comfy, folder_paths, utils...).
    if str(COMFYUI_PATH) not in sys.path:
        sys.path.insert(0, str(COMFYUI_PATH))
    if "comfy.model_management" in sys.modules:
        return  # already configured by whoever imported it first in this process
    # Same way ComfyUI's tests-unit do it: argument parsing stays off (comfy.options default),
    # so cli_args parses [] and we flip CPU mode on the resulting namespace before
    # comfy.model_management reads it at import time.
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = True


if COMFYUI_PROBLEM is None:
    _setup_comfyui_cpu()

# ---------------------------------------------------------------------------------------------
# (c) tier markers by directory, (d) failing placeholders when ComfyUI is missing
# ---------------------------------------------------------------------------------------------


def tier_of(path: Path | str) -> str | None:
    try:
        rel = Path(path).resolve().relative_to(TESTS_DIR)
    except ValueError:
        return None
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in TIERS else None


class _ComfyUIMissingItem(pytest.Item):
    def runtest(self):
        pytest.fail(COMFYUI_PROBLEM, pytrace=False)

    def reportinfo(self):
        return self.path, None, f"{self.name} (ComfyUI missing)"


class _ComfyUIMissingModule(pytest.File):
    """Stands in for a comfy/server test module that cannot be imported without ComfyUI."""

    def collect(self):
        yield _ComfyUIMissingItem.from_parent(self, name="comfyui_missing")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):
    if COMFYUI_PROBLEM is not None and tier_of(module_path) in COMFYUI_TIERS:
        return _ComfyUIMissingModule.from_parent(parent, path=module_path)
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = tier_of(item.path)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


# ---------------------------------------------------------------------------------------------
# shared fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    """The ComfyUI checkout (already on sys.path, CPU mode set). Fails when there is none."""
    if COMFYUI_PROBLEM is not None:
        pytest.fail(COMFYUI_PROBLEM, pytrace=False)
    return COMFYUI_PATH


@pytest.fixture(scope="session")
def comfy_dirs(comfyui_path, tmp_path_factory):
    """Points ComfyUI's folder_paths (input/output/temp/user) at a session temp dir, so
    in-process tests never write into the ComfyUI checkout. Returns that base dir."""
    import folder_paths

    base = tmp_path_factory.mktemp("comfy_base")
    saved = (
        folder_paths.get_input_directory(),
        folder_paths.get_output_directory(),
        folder_paths.get_temp_directory(),
        folder_paths.get_user_directory(),
    )
    for name in ("input", "output", "temp", "user"):
        (base / name).mkdir()
    folder_paths.set_input_directory(str(base / "input"))
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_temp_directory(str(base / "temp"))
    folder_paths.set_user_directory(str(base / "user"))
    try:
        yield base
    finally:
        folder_paths.set_input_directory(saved[0])
        folder_paths.set_output_directory(saved[1])
        folder_paths.set_temp_directory(saved[2])
        folder_paths.set_user_directory(saved[3])

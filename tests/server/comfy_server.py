"""A real ComfyUI server with this pack installed, for the server test tier.

Import as ``concept_attention_tests.server.comfy_server``. The session fixture ``comfy_server``
(tests/server/conftest.py) wraps :func:`start_comfy_server`; a test that needs its own server
(another pack copy, other flags) calls :func:`start_comfy_server` directly as a context manager.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The folder name users get from `git clone .../ComfyUI-ConceptAttention` in custom_nodes/.
PACK_DIR_NAME = "ComfyUI-ConceptAttention"
STARTUP_TIMEOUT_S = 180.0
# Never copied into the server's custom_nodes, whatever .comfyignore says.
ALWAYS_IGNORED = (".git", "__pycache__", ".pytest_cache", "test-artifacts", "*.pyc")


# ---------------------------------------------------------------------------------------------
# copying a pack the way the registry archive would ship it
# ---------------------------------------------------------------------------------------------


def read_comfyignore(root: Path) -> list[str]:
    path = root / ".comfyignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#") and not line.startswith("!")]


def _ignore_function(root: Path, patterns: Iterable[str]) -> Callable[[str, list[str]], set[str]]:
    """shutil.copytree ignore callable for a subset of gitwildmatch: `dir/` (directories only),
    `name` / `*.ext` (basename at any depth), `a/b` or `/a` (anchored at the pack root)."""
    rules = []
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        anchored = "/" in pattern
        rules.append((pattern.lstrip("/"), dir_only, anchored))

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel_dir = Path(directory).resolve().relative_to(root)
        ignored = set()
        for name in names:
            rel = (rel_dir / name).as_posix()
            is_dir = os.path.isdir(os.path.join(directory, name))
            for pattern, dir_only, anchored in rules:
                if dir_only and not is_dir:
                    continue
                if fnmatch.fnmatchcase(rel if anchored else name, pattern):
                    ignored.add(name)
                    break
        return ignored

    return ignore


def copy_pack(src: Path, dest: Path, *, use_comfyignore: bool = True) -> Path:
    """Copies a node pack folder to `dest` (which must not exist), leaving out VCS/cache files
    and, for packs with a .comfyignore, what the Comfy Registry archive leaves out."""
    src = Path(src).resolve()
    patterns = list(ALWAYS_IGNORED) + (read_comfyignore(src) if use_comfyignore else [])
    shutil.copytree(src, dest, ignore=_ignore_function(src, patterns), symlinks=False)
    return dest


# ---------------------------------------------------------------------------------------------
# results of a queued prompt
# ---------------------------------------------------------------------------------------------


@dataclass
class PromptResult:
    prompt_id: str | None
    #: "success", "error" (execution_error), "interrupted", "rejected" (/prompt said 400)
    status: str
    #: the /history/<prompt_id> entry (outputs, status, meta), None when rejected
    history: dict | None = None
    #: execution_error / execution_interrupted data, or the /prompt 400 body when rejected
    error: dict | None = None
    #: every JSON websocket message about this prompt, in order
    messages: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def outputs(self) -> dict:
        return (self.history or {}).get("outputs", {})

    def describe(self) -> str:
        if self.ok:
            return f"prompt {self.prompt_id} succeeded"
        if self.status == "error" and self.error:
            e = self.error
            return (
                f"prompt {self.prompt_id} failed in node {e.get('node_id')} ({e.get('node_type')}): "
                f"{e.get('exception_type')}: {e.get('exception_message')}\n"
                + "".join(e.get("traceback") or [])
            )
        return f"prompt {self.prompt_id} {self.status}: {json.dumps(self.error, indent=1)[:4000]}"


# ---------------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------------


class ComfyServer:
    """A running ComfyUI process. Created by :func:`start_comfy_server`."""

    def __init__(self, *, process, host, port, base_dir: Path, log_path: Path, pack_dir: Path):
        self.process: subprocess.Popen = process
        self.host = host
        self.port = port
        self.base_url = f"http://{host}:{port}"
        self.ws_url = f"ws://{host}:{port}/ws"
        self.base_dir = base_dir
        self.custom_nodes_dir = base_dir / "custom_nodes"
        self.models_dir = base_dir / "models"
        self.input_dir = base_dir / "input"
        self.output_dir = base_dir / "output"
        self.log_path = log_path
        #: this pack's folder inside custom_nodes
        self.pack_dir = pack_dir

    # -- logs --------------------------------------------------------------------------------
    @property
    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    # -- http --------------------------------------------------------------------------------
    def request(self, method: str, path: str, body=None, timeout: float = 60.0):
        """Returns (status, parsed JSON or text). Does not raise on HTTP error statuses."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base_url + path, data=data, method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        text = raw.decode("utf-8", errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def get_json(self, path: str, timeout: float = 60.0):
        status, payload = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise AssertionError(f"GET {path} -> {status}: {str(payload)[:2000]}")
        return payload

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    # -- prompts -----------------------------------------------------------------------------
    def queue_prompt(self, prompt: dict, *, client_id: str | None = None, extra_data: dict | None = None):
        """POST /prompt. Returns (status, body): 200 with prompt_id, or 400 with error/node_errors."""
        body = {"prompt": prompt}
        if client_id is not None:
            body["client_id"] = client_id
        if extra_data:
            body["extra_data"] = extra_data
        return self.request("POST", "/prompt", body)

    def run_prompt(self, prompt: dict, *, timeout: float = 300.0, extra_data: dict | None = None,
                   on_message=None) -> PromptResult:
        """Queues an API-format prompt and waits over the websocket until it finished.

        Returns a PromptResult: ``status`` "success" / "error" / "interrupted" / "rejected",
        ``history`` (the /history entry with ``outputs``), ``error`` (the execution_error
        message, or the validation error body), ``messages`` (the websocket messages).
        ``on_message(msg)`` is called with each of this prompt's messages as it arrives."""
        import websocket  # websocket-client

        client_id = uuid.uuid4().hex
        ws = websocket.create_connection(f"{self.ws_url}?clientId={client_id}", timeout=timeout)
        try:
            status, body = self.queue_prompt(prompt, client_id=client_id, extra_data=extra_data)
            if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
                return PromptResult(prompt_id=None, status="rejected",
                                    error=body if isinstance(body, dict) else {"body": body})
            prompt_id = body["prompt_id"]
            messages: list[dict] = []
            outcome, error = "success", None
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"prompt {prompt_id} did not finish in {timeout:.0f} s; server log tail:\n"
                        + self.log_tail()
                    )
                ws.settimeout(remaining)
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if isinstance(raw, bytes):
                    continue  # binary preview images
                msg = json.loads(raw)
                data = msg.get("data") or {}
                if data.get("prompt_id") != prompt_id:
                    continue
                messages.append(msg)
                if on_message is not None:
                    on_message(msg)
                kind = msg.get("type")
                if kind == "execution_error":
                    outcome, error = "error", data
                elif kind == "execution_interrupted":
                    outcome, error = "interrupted", data
                elif kind == "executing" and data.get("node") is None:
                    break  # sent after the history entry is written
        finally:
            ws.close()
        history = self.get_json(f"/history/{prompt_id}").get(prompt_id)
        return PromptResult(prompt_id=prompt_id, status=outcome, history=history, error=error,
                            messages=messages)

    def interrupt(self) -> None:
        self.request("POST", "/interrupt", {})

    # -- lifetime ----------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=grace_s)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def start_comfy_server(
    base_dir: Path,
    *,
    comfyui_path: Path,
    pack_src: Path | None = REPO_ROOT,
    pack_dir_name: str = PACK_DIR_NAME,
    extra_custom_nodes: Iterable[Path] = (),
    prepare: Callable[[Path], None] | None = None,
    extra_args: Iterable[str] = (),
    python: str = sys.executable,
    startup_timeout: float = STARTUP_TIMEOUT_S,
) -> Iterator[ComfyServer]:
    """Starts ComfyUI on the CPU with `base_dir` as its --base-directory and yields a ComfyServer.

    * `pack_src` (default: this repo) is copied to ``custom_nodes/<pack_dir_name>`` as the
      registry archive would ship it (.comfyignore applied); None installs no pack.
    * each of `extra_custom_nodes` (a folder or a single .py file) is copied into custom_nodes/
      under its own name: test-only fixture node packs.
    * `prepare(base_dir)` runs after the copies and before the start, e.g. to break the pack
      copy or to put model files into ``base_dir/models/...``.
    The database, user, input, output and temp folders all live in `base_dir`, nothing is
    written into the ComfyUI checkout. The server is always terminated (killed after 15 s).
    """
    base_dir = Path(base_dir).resolve()
    custom_nodes = base_dir / "custom_nodes"
    for sub in ("custom_nodes", "models", "input", "output", "temp", "user"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    pack_dir = custom_nodes / pack_dir_name
    if pack_src is not None:
        copy_pack(Path(pack_src), pack_dir)
    for extra in extra_custom_nodes:
        extra = Path(extra).resolve()
        if extra.is_dir():
            copy_pack(extra, custom_nodes / extra.name, use_comfyignore=False)
        else:
            shutil.copy2(extra, custom_nodes / extra.name)
    if prepare is not None:
        prepare(base_dir)

    port = free_port()
    host = "127.0.0.1"
    cmd = [
        python, str(Path(comfyui_path) / "main.py"),
        "--cpu",
        "--listen", host,
        "--port", str(port),
        "--base-directory", str(base_dir),
        "--database-url", f"sqlite:///{base_dir / 'user' / 'comfyui.db'}",
        "--disable-auto-launch",
        *extra_args,
    ]
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               DO_NOT_TRACK="1",
               # test-only fixture node packs build their tiny models with the tests' own builders
               CONCEPT_ATTENTION_TINY_MODELS=str(Path(__file__).resolve().parents[1] / "comfy" / "tiny" / "tiny_models.py"))
    log_path = base_dir / "comfyui-server.log"
    with open(log_path, "wb") as log_file:
        log_file.write(("$ " + " ".join(cmd) + "\n").encode())
        log_file.flush()
        process = subprocess.Popen(cmd, cwd=base_dir, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    server = ComfyServer(process=process, host=host, port=port, base_dir=base_dir,
                         log_path=log_path, pack_dir=pack_dir)
    try:
        _wait_until_ready(server, startup_timeout)
        yield server
    finally:
        server.stop()


def _wait_until_ready(server: ComfyServer, timeout: float) -> None:
    started = time.monotonic()
    while True:
        if not server.alive():
            raise RuntimeError(
                f"ComfyUI exited with code {server.process.returncode} before answering; "
                f"log tail ({server.log_path}):\n{server.log_tail()}"
            )
        try:
            status, _ = server.request("GET", "/system_stats", timeout=5)
            if status == 200:
                return
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(
                f"ComfyUI did not answer /system_stats within {timeout:.0f} s; "
                f"log tail ({server.log_path}):\n{server.log_tail()}"
            )
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# did the pack load?
# ---------------------------------------------------------------------------------------------

# What ComfyUI's nodes.py (load_custom_node / init_external_custom_nodes) logs when a custom
# node folder fails; those lines carry the folder's path.
LOAD_FAILURE_MARKERS = (
    "(IMPORT FAILED)",
    "Cannot import",
    "Error while calling comfy_entrypoint",
    "did not return a ComfyExtension",
    "did not return a list of nodes",
    "is not callable, skipping",
    "module for custom nodes due to the lack of NODE_CLASS_MAPPINGS",
)
# Logged without a path when a folder's pyproject.toml cannot be parsed.
PYPROJECT_FAILURE_MARKER = "Unable to parse pyproject.toml"


def check_pack_loaded(object_info: dict, log: str, node_ids: Iterable[str], pack_dir: Path) -> list[str]:
    """Problems (empty when none) with loading the pack at `pack_dir` into a server: node ids
    missing from /object_info or provided by another module, and load failures in its log."""
    problems = []
    pack_dir_name = Path(pack_dir).name
    module = f"custom_nodes.{pack_dir_name}"
    node_ids = list(node_ids)
    if not node_ids:
        problems.append("the pack exports no node ids")
    for node_id in node_ids:
        info = object_info.get(node_id)
        if info is None:
            problems.append(f"node {node_id!r} is missing from /object_info")
        elif info.get("python_module", module) != module:
            problems.append(
                f"node {node_id!r} comes from {info.get('python_module')!r}, not {module!r}"
            )
    path_re = re.compile(re.escape(str(pack_dir)) + r"(?![\w.-])")
    for line in log.splitlines():
        if any(marker in line for marker in LOAD_FAILURE_MARKERS) and path_re.search(line):
            problems.append(f"server log: {line.strip()}")
        elif PYPROJECT_FAILURE_MARKER in line:
            problems.append(f"server log: {line.strip()}")
    return problems

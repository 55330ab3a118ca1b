"""Puts a ComfyUI checkout on sys.path for the command-line tools (ComfyUI at $COMFYUI_PATH, else ~/ComfyUI)."""

from __future__ import annotations

import os
import sys


def setup_comfyui(cpu: bool = False) -> str:
    """Import path and CLI args as ComfyUI's own tests set them (argument parsing off; CPU mode when asked)."""
    path = os.path.expanduser(os.environ.get("COMFYUI_PATH", "~/ComfyUI"))
    if not os.path.isfile(os.path.join(path, "comfy", "model_management.py")):
        raise SystemExit(f"ComfyUI was not found at {path}: set COMFYUI_PATH to a ComfyUI checkout")
    if path not in sys.path:
        sys.path.insert(0, path)
    if "comfy.model_management" not in sys.modules:
        import comfy.options

        comfy.options.enable_args_parsing(False)
        from comfy.cli_args import args

        args.cpu = cpu
        args.disable_cuda_malloc = True
    return path

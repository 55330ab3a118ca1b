"""File names and folders of saved saliency files: safe names, ComfyUI's numbering, and the guard
that keeps every path inside its folder (a prefix or a file choice comes from the workflow, so it
is untrusted input)."""

from __future__ import annotations

import os
import re
import unicodedata

from ..checks.errors import ConceptAttentionError

MAX_NAME_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def sanitize_filename_part(text: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """A safe piece of a file name: only [A-Za-z0-9._-], other runs become '_', at most max_length
    characters, no leading dot (hidden files), never empty, '.' or '..' (then 'unnamed')."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    safe = _UNSAFE.sub("_", ascii_text).lstrip(".")[: max(1, max_length)].rstrip(".")  # Windows drops trailing dots
    if not safe.strip("._-"):
        return "unnamed"
    if safe.split(".")[0].upper() in _WINDOWS_RESERVED:
        safe = "_" + safe[: max(1, max_length) - 1]
    return safe


def resolve_inside(base_dir: str, relative: str, folder: str = "output folder") -> str:
    """The real path of base_dir/relative, refusing absolute paths and anything that leaves base_dir
    (through '..' or symlinks). Raises ConceptAttentionError naming the path and `folder` (the
    folder's name for the user, e.g. "input folder"; never the server's absolute path)."""
    if not isinstance(relative, str) or "\0" in relative:
        raise ConceptAttentionError(f"invalid path {relative!r}: give a relative path of text inside the {folder}")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative):
        raise ConceptAttentionError(f"the path {relative!r} is absolute; give a path relative to the {folder}")
    base = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(base, relative))
    try:
        inside = os.path.commonpath([base, target]) == base
    except ValueError:  # another drive (Windows)
        inside = False
    if not inside:
        raise ConceptAttentionError(f"the path {relative!r} points outside the {folder}; use a path inside it (no '..')")
    return target


def _next_counter(directory: str, prefix: str) -> int:
    """One more than the highest <prefix>_NNNNN already in directory (ComfyUI's numbering)."""
    pattern = re.compile(re.escape(prefix) + r"_(\d{5,})(?:[._]|$)")
    highest = 0
    for entry in os.listdir(directory):
        m = pattern.match(entry)
        if m:
            highest = max(highest, int(m.group(1)))
    return highest + 1


MAX_FOLDER_NAME_BYTES = 255  # the longest file or folder name common file systems take


def _check_prefix_parts(prefix: str) -> None:
    for part in prefix.split("/"):
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > MAX_FOLDER_NAME_BYTES:
            shown = part[:24] + "..."
            raise ConceptAttentionError(
                f"the folder name {shown!r} in filename_prefix is {size} bytes long; a folder name can have at most "
                f"{MAX_FOLDER_NAME_BYTES} (split it with '/' or shorten it)"
            )


def output_target(directory: str, filename_prefix: str, folder: str) -> tuple[str, str, str]:
    """(folder to write in, sanitised file name stem, the prefix's folder part as given) of a
    filename_prefix such as "maps/dog": its sub-folders stay inside directory and are created;
    folder names the directory in messages."""
    prefix = (filename_prefix or "").replace("\\", "/").strip()
    _check_prefix_parts(prefix)
    folder_part, _, name_part = prefix.rpartition("/")
    target_dir = resolve_inside(directory, folder_part or ".", folder)
    name = sanitize_filename_part(name_part or "concept_saliency")
    try:
        os.makedirs(target_dir, exist_ok=True)
    except OSError as e:
        raise ConceptAttentionError(
            f"cannot create the folder {folder_part!r} in the {folder} ({e.strerror or type(e).__name__}); "
            "choose another filename_prefix"
        ) from None
    return target_dir, name, folder_part


def numbered_base(target_dir: str, name: str) -> str:
    """target_dir/<name>_<counter:05>: the next free number, as ComfyUI's own savers count."""
    return os.path.join(target_dir, f"{name}_{_next_counter(target_dir, name):05}")

"""Atomic file writes: readers see the old file or the complete new one, never a partial write.

Write to a temporary file in the destination's directory, then os.replace() it into place
(atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file so that readers see the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def json_once(path: Path, make: Callable[[], dict], settings: dict) -> dict:
    """`make()`'s result with its `settings`, saved as JSON at `path` (atomically); or, when `path` exists,
    the saved result: a long study rerun on the same directory keeps what it already measured. A saved
    result measured under other settings is refused (it would be reported under the new ones)."""
    settings = json.loads(json.dumps(settings))  # as saved: tuples become lists
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("settings") != settings:
            differ = sorted(k for k in {*settings, *saved.get("settings", {})}
                            if settings.get(k) != saved.get("settings", {}).get(k))
            raise ValueError(f"{path} was measured with other settings ({', '.join(differ)} differ); rerun with "
                             "the settings it was measured with, or write to another output directory")
        return saved
    result = {**make(), "settings": settings}
    atomic_write_text(path, json.dumps(result))
    return result

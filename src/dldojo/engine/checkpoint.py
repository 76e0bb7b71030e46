"""Atomic checkpoint files that load without unpickling arbitrary objects.

A checkpoint is written to a temporary file in the same directory, flushed to disk and then renamed
over the old one (`os.replace` is atomic on POSIX), so a crash leaves either the old or the new file,
never half of one. Loading uses `torch.load(weights_only=True)`: only tensors, numbers, strings and
containers of them are accepted.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from dldojo.engine.errors import DojoError


def save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DojoError(f"no checkpoint at {path}") from None
    except Exception as exc:  # corrupted, truncated, or holds objects we refuse to unpickle
        raise DojoError(f"cannot load checkpoint {path}: {exc}. Delete it to start that run afresh.") from None

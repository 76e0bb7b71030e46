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
    """Write `obj` to a temp file beside `path`, fsync, rename. On a write error (disk full, read-only) the
    previous checkpoint stays as it was and the error says so."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DojoError(f"cannot write a checkpoint in {path.parent}: {exc.strerror or exc}.") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        Path(tmp).unlink(missing_ok=True)
        kept = " The previous checkpoint is intact." if path.exists() else ""
        raise DojoError(f"could not write the checkpoint {path} ({str(exc).splitlines()[0][:200]}): is the disk "
                        f"full? Free some space and resume the run.{kept}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_orphans(folder: Path) -> list[Path]:
    """Delete temp files left by a process killed while writing (`.last.pt.*.tmp`, `.summary.json.*.tmp`)."""
    removed = []
    for tmp in [*Path(folder).glob(".*.tmp"), *Path(folder).glob("*/.*.tmp")]:
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DojoError(f"no checkpoint at {path}") from None
    except Exception as exc:  # corrupted, truncated, or holds objects we refuse to unpickle
        raise DojoError(f"cannot load checkpoint {path}: {exc}. Delete it to start that run afresh.") from None

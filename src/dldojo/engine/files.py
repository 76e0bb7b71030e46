"""Small files of a run directory: JSON written atomically, JSON read with a one-line error, a log that
tolerates a torn last line.

Every JSON file is written to a temporary file in the same folder and renamed over the target (atomic on
POSIX), so a crash or a full disk leaves the old file or the new one, never half of one. `metrics.jsonl`
is appended to line by line; a line cut short by a crash or a full disk belongs to a step that was never
checkpointed, so readers drop it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dldojo.engine.errors import DojoError


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (temp file in the same folder + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, obj: Any, indent: int | None = 1) -> Path:
    """Write `obj` as JSON to `path` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False))


def read_json(path: Path, what: str = "") -> Any:
    """Parse a JSON file, or raise a DojoError that names the file and what to do."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DojoError(f"{path} does not exist{(' (' + what + ')') if what else ''}.") from None
    except PermissionError:
        raise DojoError(f"cannot read {path}: permission denied.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DojoError(f"{path} is damaged (not valid JSON: {exc}); restore it or delete the run.") from None
    except OSError as exc:
        raise DojoError(f"cannot read {path}: {exc.strerror or exc}.") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; a torn (unparsable) last line is dropped, a torn line elsewhere is an error."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # cut short by a crash: it belongs to an uncheckpointed step
                break
            raise DojoError(f"{path} line {i + 1} is damaged (not JSON); the log cannot be read.") from None
        if isinstance(record, dict):
            records.append(record)
    return records

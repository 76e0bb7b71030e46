"""Plain-text output shared by the command-line commands of the engine and the families: tables that fit the
terminal, output streams that survive a closed pipe, and progress lines for log files."""

from __future__ import annotations

import errno
import os
import shutil
import sys
from typing import IO, Any

ELLIPSIS = "…"


def terminal_width() -> int | None:
    """Columns a table may use: $COLUMNS when set, else the terminal's width when stdout is one; None (no
    limit) when stdout goes to a file or a pipe, so `dldojo list | grep ...` sees every word."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    try:
        if not sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):  # a replaced or closed stdout
        return None
    return shutil.get_terminal_size().columns


def format_table(rows: list[list[str]], header: list[str], *, max_width: int | None = None,
                 shrink: tuple[int, ...] = (), shrink_last: tuple[int, ...] = (), min_width: int = 8) -> str:
    """Columns padded to their widest cell, a dashed rule under the header.

    With `max_width`, the columns listed in `shrink` (indices; default: every column but the first) are
    narrowed, widest first and no narrower than `min_width`, until a line fits; a cut cell ends in '…'. The
    columns in `shrink_last` (e.g. a path one would copy) are narrowed only when that is not enough."""
    rows = [[str(x) for x in r] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    if max_width is not None:
        first = [i for i in (shrink or range(1, len(widths))) if i < len(widths)]
        for shrinkable in (first, first + [i for i in shrink_last if i < len(widths)]):
            _narrow(widths, header, shrinkable, sum(widths) + 2 * (len(widths) - 1) - max_width, min_width)

    def cell(x: str, w: int) -> str:
        return x if len(x) <= w else x[:w - 1] + ELLIPSIS

    def line(cells: list[str]) -> str:
        return "  ".join(cell(str(x), w).ljust(w) for x, w in zip(cells, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _narrow(widths: list[int], header: list[str], shrinkable: list[int], excess: int, min_width: int) -> None:
    """Take `excess` columns off `widths[shrinkable]`, widest first, none below `min_width` or its header."""
    while excess > 0:
        candidates = [i for i in shrinkable if widths[i] > max(min_width, len(header[i]))]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        others = max([widths[i] for i in candidates if i != widest] + [max(min_width, len(header[widest]))])
        cut = min(excess, widths[widest] - others) or 1  # down to the next widest, then one at a time
        widths[widest] -= cut
        excess -= cut


class SafeStream:
    """An output stream that stops writing, instead of raising, once its reader has gone (a closed pipe:
    `dldojo run ... | head`, or `2>&1 | tee log` after Ctrl-C). The run goes on and saves its checkpoint;
    what it would have printed is dropped. The file descriptor is pointed at /dev/null so that the
    interpreter's own flush at exit does not fail either."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self.broken = False

    def _broke(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._broke()
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.EINVAL):
                    raise
                self._broke()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._broke()
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.EINVAL):
                    raise
                self._broke()

    def isatty(self) -> bool:
        return not self.broken and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class StatusLines:
    """tqdm's output file where stderr is not a terminal (a log file, `2>&1 | tee`): every status the bar
    draws becomes a line of its own ending in a newline, instead of carriage-return redraws, so another
    line (a `--json` summary on stdout) never lands in the middle of a bar."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self._last = ""

    def write(self, text: str) -> int:
        for part in text.replace("\n", "\r").split("\r"):
            status = part.rstrip()
            if status and status != self._last:
                self._stream.write(status + "\n")
                self._last = status
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

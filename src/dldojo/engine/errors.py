"""Errors a user can act on: every message says what went wrong and what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DojoError(Exception):
    """An error caused by input or environment, shown to the user without a traceback."""


class RunInterrupted(DojoError):
    """The run was stopped (Ctrl-C / SIGTERM) after writing a checkpoint."""


class NonFiniteLoss(DojoError):
    """The loss became NaN or infinite."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest choices, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"

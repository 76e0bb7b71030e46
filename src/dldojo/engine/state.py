"""Declared loop state and named random streams: what a checkpoint holds, declared once.

An experiment declares the state of its loop once, as a dict, a dataclass or a namespace::

    state = {"model": model, "optimizer": optimizer, "buffer": buffer, "episodes": 0, "curve": []}
    step = ctx.restore(state)          # fresh run: 0; resumed run: loaded in place, the step to continue from
    while step < total:
        ...
        state["episodes"] += 1
        step += 1
        ctx.tick(step, state)          # checkpoints it when due (interval, Ctrl-C / SIGTERM)

Entries with `state_dict()` / `load_state_dict()` (modules, optimisers, schedulers, replay buffers,
wrapped environments, ...) are saved through them and loaded in place; every other entry (numbers, lists,
dicts of tensors) is saved as it is and put back into the container. This is Lightning Fabric's
`fabric.save(path, state)` / `fabric.load(path, state)`.

Random streams: `Streams` derives one NumPy or torch generator per name from the run seed, so that
adding a random draw in one part of a loop never shifts another part's numbers; their states are part of
every checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from dldojo.engine.errors import DojoError


def _entries(state: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(state, dict):
        yield from state.items()
    elif dataclasses.is_dataclass(state) and not isinstance(state, type):
        for f in dataclasses.fields(state):
            yield f.name, getattr(state, f.name)
    elif hasattr(state, "__dict__"):
        yield from vars(state).items()
    else:
        raise TypeError(f"loop state must be a dict, a dataclass or a namespace, not {type(state).__name__}")


def _put(state: Any, key: str, value: Any) -> None:
    if isinstance(state, dict):
        state[key] = value
    else:
        setattr(state, key, value)


def snapshot(state: Any) -> dict[str, Any]:
    """What a checkpoint stores of a declared state: each entry's state_dict(), or the value itself."""
    return {key: value.state_dict() if hasattr(value, "state_dict") else value for key, value in _entries(state)}


def load_into(state: Any, saved: dict[str, Any]) -> None:
    """Load a snapshot back into the declared state, in place."""
    declared = dict(_entries(state))
    missing, extra = sorted(set(declared) - set(saved)), sorted(set(saved) - set(declared))
    if missing or extra:
        raise DojoError(
            "the checkpoint does not match this experiment's loop state"
            + (f" (missing: {', '.join(missing)})" if missing else "")
            + (f" (not declared any more: {', '.join(extra)})" if extra else "")
            + "; it was written by another version of dldojo. Start a new run instead of resuming this one.")
    for key, value in declared.items():
        if hasattr(value, "load_state_dict"):
            try:
                value.load_state_dict(saved[key])
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                raise DojoError(f"the checkpoint's {key!r} does not fit this experiment ({str(exc).splitlines()[0]});"
                                f" start a new run instead of resuming this one.") from None
        else:
            _put(state, key, saved[key])


def derive_seed(seed: int, name: str, bits: int = 63) -> int:
    """A seed for the stream `name` of a run with seed `seed`: stable across versions, platforms and orders."""
    digest = hashlib.sha256(f"dldojo/{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> (64 - bits)


class Streams:
    """Named random generators of one run, each derived from the run seed and its name; checkpointable."""

    def __init__(self, seed: int):
        self.seed = seed
        self._numpy: dict[str, np.random.Generator] = {}
        self._torch: dict[str, torch.Generator] = {}

    def numpy(self, name: str) -> np.random.Generator:
        if name not in self._numpy:
            self._numpy[name] = np.random.default_rng(derive_seed(self.seed, name))
        return self._numpy[name]

    def torch(self, name: str) -> torch.Generator:
        if name not in self._torch:
            self._torch[name] = torch.Generator().manual_seed(derive_seed(self.seed, name))
        return self._torch[name]

    def state_dict(self) -> dict[str, Any]:
        return {"numpy": {name: g.bit_generator.state for name, g in self._numpy.items()},
                "torch": {name: g.get_state() for name, g in self._torch.items()}}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        for name, st in saved.get("numpy", {}).items():
            self.numpy(name).bit_generator.state = st
        for name, st in saved.get("torch", {}).items():
            self.torch(name).set_state(st)

"""Reading a pickle from a data folder without running anything in it.

`pickle.load` executes whatever the file asks for: a pickle names functions (`os.system`, ...) and the
arguments to call them with. A file in a data folder is untrusted input, so the data layer never calls
`pickle.load`; it reads pickles through `load_data`, which

  * resolves no global name at all except the three NumPy writes for an array
    (`numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`, also under `numpy._core`),
    and even those are not called: they become inert records of their arguments;
  * rebuilds every array afterwards, here, from its raw bytes (`np.frombuffer`), after checking that its
    dtype is a plain number type (no object arrays, no structured types) and that the byte count
    matches the shape;
  * refuses every other type: what comes out is made only of dict, list, tuple, bytes, str, int, float,
    bool, None and NumPy arrays of numbers.

That is exactly what the official CIFAR-10 python batches hold (Python 2 cPickle, protocol 2: a dict of
byte-string keys, a uint8 array, lists of ints and of byte strings); the same arrays pickled by
Python 3 (protocols 2-4) read the same way.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from dldojo.engine.errors import DojoError

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
}
PLAIN_DTYPES = frozenset("i1 u1 i2 u2 i4 u4 i8 u8 f2 f4 f8".split())
_PLAIN = (bytes, str, int, float, bool, type(None))


class _Global:
    """A whitelisted global, inert: calling it records the call instead of building anything."""

    __slots__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, *args: Any) -> _Call:
        return _Call(self.kind, args)


class _Call:
    """A recorded call of a whitelisted global: its arguments and the state BUILD gave it."""

    __slots__ = ("kind", "args", "state")

    def __init__(self, kind: str, args: tuple):
        self.kind, self.args, self.state = kind, args, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        kind = _NUMPY_GLOBALS.get((module, name))
        if kind is None:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a data file has no reason to")
        return _Global(kind)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it uses persistent ids")


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _dtype(record: Any) -> np.dtype:
    if not (isinstance(record, _Call) and record.kind == "dtype" and record.args):
        raise pickle.UnpicklingError("an array without a dtype")
    code = _text(record.args[0])
    if code not in PLAIN_DTYPES:
        raise pickle.UnpicklingError(f"an array of dtype {code!r} (only plain numbers are read)")
    dtype = np.dtype(code)
    state = record.state if isinstance(record.state, tuple) else ()
    if len(state) > 4 and any(s is not None for s in state[2:5]):
        raise pickle.UnpicklingError("an array of a structured dtype")
    order = _text(state[1]) if len(state) > 1 else "|"
    if order in ("<", ">"):
        dtype = dtype.newbyteorder(order)
    elif order not in ("|", "="):
        raise pickle.UnpicklingError(f"a dtype with byte order {order!r}")
    return dtype


def _array(record: _Call) -> np.ndarray:
    args, state = record.args, record.state
    if len(args) != 3 or not (isinstance(args[0], _Global) and args[0].kind == "ndarray"):
        raise pickle.UnpicklingError("an array of a subclass of ndarray")
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise pickle.UnpicklingError("an array without its data")
    shape, dtype_record, fortran, raw = state[-4:]
    if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
        raise pickle.UnpicklingError(f"an array of shape {shape!r}")
    dtype = _dtype(dtype_record)
    if not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dtype.itemsize:
        raise pickle.UnpicklingError(f"an array of shape {shape} whose data is not {math.prod(shape)} "
                                     f"{dtype} values")
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _plain(value: Any) -> Any:
    """The unpickled structure with recorded arrays rebuilt; anything that is not plain data is refused."""
    if type(value) in _PLAIN:
        return value
    if type(value) is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, _Call) and value.kind == "reconstruct":
        return _array(value)
    raise pickle.UnpicklingError(f"it holds a {type(value).__name__}, which is not plain data")


def loads(data: bytes, source: str = "the data", encoding: str = "bytes") -> Any:
    """Unpickle `data` without executing anything (see the module docstring); arrays come back read-only.

    Raises DojoError naming `source` when it holds anything but plain data (or is not a pickle at all)."""
    return _load(io.BytesIO(data), source, encoding)


def load_data(path: Path, encoding: str = "bytes") -> Any:
    """`loads` for a file; OSError (missing, unreadable) passes through for the caller to explain."""
    with open(path, "rb") as fh:
        return _load(fh, str(path), encoding)


def _load(fh: IO[bytes], source: str, encoding: str) -> Any:
    try:
        return _plain(_Unpickler(fh, encoding=encoding).load())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError, MemoryError, UnicodeDecodeError, OverflowError) as exc:
        raise DojoError(f"{source} is not a plain data pickle ({exc}); refusing to load it, as it could run "
                        "code. Delete it and fetch the official files again (`dldojo data verify <name>`).") from None

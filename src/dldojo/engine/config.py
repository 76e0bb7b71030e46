"""Experiment configs are plain dataclasses whose fields carry one-line docstrings (cleanrl's `Args`).

This module reads those docstrings for `--help`-style listings, applies presets and `--set key=value`
overrides with type checking, and turns configs into JSON for the run directory.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import typing
from typing import Any, Literal, get_args, get_origin

from dldojo.engine.errors import DojoError, did_you_mean


def field_docs(config_cls: type) -> dict[str, str]:
    """Map field name -> the string literal written right after the field (PEP 257 attribute docstring)."""
    docs: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, following in zip(body, body[1:] + [None]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def field_types(config_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is tuple:
        inner = get_args(tp)
        return f"tuple[{type_name(inner[0])}, ...]" if inner else "tuple"
    return getattr(tp, "__name__", str(tp))


def parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse a `--set` value for a field of type `tp`, or raise a DojoError naming the expected type."""
    origin = get_origin(tp)
    try:
        if origin is Literal:
            choices = get_args(tp)
            for choice in choices:
                if str(choice) == text:
                    return choice
            raise ValueError(f"choose one of {', '.join(map(str, choices))}")
        if origin is tuple:
            (inner, *_rest) = get_args(tp) or (str,)
            parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
            return tuple(parse_value(p.strip(), inner, key) for p in parts)
        if tp is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("use true or false")
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return text
    except ValueError as exc:
        hint = f" ({exc})" if "choose" in str(exc) or "use" in str(exc) else ""
        raise DojoError(f"bad value for {key}: {text!r} is not a valid {type_name(tp)}{hint}.") from None
    raise DojoError(f"config field {key} has unsupported type {tp!r}")


def check_value(value: Any, tp: Any, key: str) -> Any:
    """Validate a Python value (from a preset or JSON) against a field type; ints are accepted as floats."""
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise DojoError(f"bad value for {key}: {value!r}; choose one of {type_name(tp)}.")
        return value
    if origin is tuple:
        (inner, *_rest) = get_args(tp) or (object,)
        return tuple(check_value(v, inner, key) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise DojoError(f"bad value for {key}: {value!r} is not a {type_name(tp)}.")
    return value


def describe_fields(config_cls: type) -> str:
    """A table of `key (type, default, range): doc` lines for error messages and `dldojo show`."""
    docs = field_docs(config_cls)
    types = field_types(config_cls)
    lines = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        tp = types[f.name]
        inner = get_args(tp)[0] if get_origin(tp) is tuple and get_args(tp) else tp
        bounds = ""
        if inner in (int, float):
            low, high = field_range(config_cls, f.name)
            bounds = f", {_num(low)}..{_num(high)}" if high is not None else f", >= {_num(low)}"
        lines.append(f"  {f.name} ({type_name(tp)}, default {default!r}{bounds}): {docs.get(f.name, '')}")
    return "\n".join(lines)


def build_config(config_cls: type, *layers: dict[str, Any], sets: list[str] = (), experiment: str = "") -> Any:
    """Defaults <- each layer (preset overrides, resumed values) <- `key=value` strings, all type-checked."""
    types = field_types(config_cls)
    values: dict[str, Any] = {}

    def unknown(key: str) -> DojoError:
        where = f" of {experiment}" if experiment else ""
        return DojoError(
            f"unknown config key {key!r}{where}.{did_you_mean(key, types)}\nValid keys:\n{describe_fields(config_cls)}"
        )

    for layer in layers:
        for key, value in layer.items():
            if key not in types:
                raise unknown(key)
            values[key] = check_value(value, types[key], key)
    for item in sets:
        if "=" not in item:
            raise DojoError(f"--set expects key=value, got {item!r} (e.g. --set lr=0.01).")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in types:
            raise unknown(key)
        values[key] = parse_value(text.strip(), types[key], key)
    config = config_cls(**values)
    check_ranges(config)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def field_range(config_cls: type, name: str) -> tuple[float | None, float | None]:
    """(low, high) allowed for a numeric field: the config class's `RANGES` entry, else [0, +inf).

    Every int and float of every experiment is checked before anything is created: NaN and infinities are
    never accepted, and a negative number only where the class declares it, e.g.
    ``RANGES: ClassVar[dict] = {"fail_reward": (-1e6, 0.0), "n_factors": (1, 4096)}``."""
    return getattr(config_cls, "RANGES", {}).get(name, (0, None))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def check_ranges(config: Any) -> None:
    types = field_types(type(config))
    for f in dataclasses.fields(config):
        tp, value = types[f.name], getattr(config, f.name)
        numbers = value if get_origin(tp) is tuple else (value,)
        inner = get_args(tp)[0] if get_origin(tp) is tuple and get_args(tp) else tp
        if inner not in (int, float):
            continue
        low, high = field_range(type(config), f.name)
        for v in numbers:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if not math.isfinite(v):
                raise DojoError(f"bad value for {f.name}: {v!r}; it must be a finite number.")
            if (low is not None and v < low) or (high is not None and v > high):
                bounds = " and ".join(b for b in (f">= {_num(low)}" if low is not None else "",
                                                  f"<= {_num(high)}" if high is not None else "") if b)
                raise DojoError(f"bad value for {f.name}: {v!r}; it must be {bounds}.")


def to_jsonable(config: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}

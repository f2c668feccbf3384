"""Typed step artifacts: frozen dataclasses written as canonical JSON and read back into the same types.

A step that produces a fit or a plan (not a side table) returns a frozen dataclass; `write_record` stores it
as `record.json` (sorted keys, floats as written by `json`), `read_record(cls, folder)` rebuilds it, nested
dataclasses, tuples, dicts and optionals included, so no step reads another's output as untyped JSON.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from curate.errors import SchemaError
from curate.io import write_text

RECORD_FILE = "record.json"
T = TypeVar("T")


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data of a record: dataclasses as dicts, tuples as lists, numpy values unboxed."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _build(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _build(options[0], data, where) if len(options) == 1 else data
    if origin is typing.Literal:
        if data not in args:
            raise SchemaError(f"record field '{where}' must be one of {list(args)}; got {data!r}.")
        return data
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, dict):
            raise SchemaError(f"record field '{where}' must be an object; got {type(data).__name__}.")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp) if f.init]
        missing = [n for n in names if n not in data and _required(tp, n)]
        if missing:
            raise SchemaError(f"record '{where}' lacks field(s) {missing}.")
        return tp(**{n: _build(hints[n], data[n], f"{where}.{n}") for n in names if n in data})
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        return tuple(_build(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
    if origin is list:
        return [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        return {k: _build(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if tp is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if tp is np.ndarray:
        return np.asarray(data, dtype=np.float64)
    return data


def _required(cls: type, name: str) -> bool:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def from_jsonable(cls: type[T], data: Any) -> T:
    """Rebuild a `cls` record from `to_jsonable` data; SchemaError naming a missing or mistyped field."""
    return typing.cast(T, _build(cls, data, cls.__name__))


def write_record(record: Any, folder: Path) -> None:
    """Write `record` (a dataclass instance) as `folder/record.json`, atomically."""
    text = json.dumps(to_jsonable(record), indent=2, sort_keys=True, allow_nan=False)
    write_text(Path(folder) / RECORD_FILE, text + "\n")


def read_record(cls: type[T], folder: Path) -> T:
    """The `cls` record stored in `folder/record.json`."""
    path = Path(folder) / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read the {cls.__name__} record '{path}': {exc}") from exc
    return from_jsonable(cls, data)

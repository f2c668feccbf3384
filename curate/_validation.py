"""Parameter checks with one message shape: the parameter, its owner, what is allowed, what came."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, Literal

import numpy as np
import polars as pl

from curate.errors import ConfigError, InputError, SchemaError

Closed = Literal["both", "left", "right", "neither"]


def check_interval(
    name: str,
    value: float,
    low: float | None,
    high: float | None,
    *,
    caller: str,
    closed: Closed = "both",
) -> None:
    """Raise ConfigError unless `value` is a finite number within [low, high] (ends per `closed`)."""
    lo_br = "[" if closed in ("both", "left") else "("
    hi_br = "]" if closed in ("both", "right") else ")"
    span = f"{lo_br}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_br}"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value >= low if closed in ("both", "left") else value > low
    if ok and high is not None:
        ok = value <= high if closed in ("both", "right") else value < high
    if not ok:
        raise ConfigError(
            f"The '{name}' parameter of {caller}() must be a number in {span}. Got {value!r} instead."
        )


def check_option(name: str, value: Any, allowed: Collection[Any], *, caller: str) -> None:
    """Raise ConfigError unless `value` is one of `allowed`."""
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ConfigError(
            f"The '{name}' parameter of {caller}() must be one of {options}. Got {value!r} instead."
        )


def check_columns(df: pl.DataFrame | pl.LazyFrame, required: Mapping[str, Any], *, what: str) -> None:
    """Raise SchemaError unless `df` has every column of `required` (name -> polars dtype or None)."""
    schema = df.collect_schema() if isinstance(df, pl.LazyFrame) else df.schema
    missing = [c for c in required if c not in schema]
    wrong = [
        f"{c} (expected {t}, got {schema[c]})"
        for c, t in required.items()
        if c in schema and t is not None and not _dtype_matches(schema[c], t)
    ]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"lacks column(s) {', '.join(missing)}")
        if wrong:
            parts.append(f"has mistyped column(s) {', '.join(wrong)}")
        raise SchemaError(f"{what} {' and '.join(parts)} (found: {', '.join(schema.names())}).")


def _dtype_matches(actual: Any, expected: Any) -> bool:
    if expected in (pl.String, pl.Utf8):
        return actual in (pl.String, pl.Utf8, pl.Categorical)
    if expected is float:
        return actual.is_float()
    if expected is int:
        return actual.is_integer()
    return bool(actual == expected)


def check_embeddings(x: Any, *, what: str, dim: int | None = None, min_rows: int = 1) -> np.ndarray:
    """Return `x` as a 2-D finite float32 array; raise InputError naming `what` otherwise."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InputError(f"{what} must be a 2-D array of vectors; got shape {arr.shape}.")
    if dim is not None and arr.shape[1] != dim:
        raise InputError(f"{what} must have width {dim}; got width {arr.shape[1]}.")
    if arr.shape[0] < min_rows:
        raise InputError(f"{what} needs at least {min_rows} row(s); got {arr.shape[0]}.")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{what} must be numeric; got dtype {arr.dtype}.")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise InputError(f"{what} contains NaN or infinite values in {bad} row(s).")
    return arr

"""The mixture manifest (schema_version 1): the product's output, a frozen record with a JSON round trip.

Fields follow shared/DESIGN.md section 4; `manifest.schema.json` beside this module is the JSON Schema that
`from_json` enforces, so a hand-broken file raises ManifestError naming the field. `to_json` is canonical:
sorted keys, floats rounded to 12 significant digits at construction, so equal plans give equal bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from curate.errors import ManifestError
from curate.hashing import JSONValue
from curate.io import write_text

SCHEMA_VERSION = 1
WEIGHT_TOLERANCE = 1e-6
BudgetUnit = Literal["tokens", "samples"]
Policy = Literal["keep_hard", "keep_easy", "cluster_balanced", "random", "all"]


def canonical_float(x: float, *, name: str = "value") -> float:
    """`x` rounded to 12 significant digits, the one float form a manifest stores; must be finite."""
    if not (isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)):
        raise ManifestError(f"manifest field '{name}' must be a finite number; got {x!r}.")
    return float(f"{x:.12g}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """A pruning filter on one score: policy, the fraction it keeps and the score cut it used."""

    score: str
    policy: Policy
    keep_fraction: float
    threshold: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_fraction", canonical_float(self.keep_fraction, name="keep_fraction"))
        if self.threshold is not None:
            object.__setattr__(self, "threshold", canonical_float(self.threshold, name="threshold"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SourcePlan:
    """One source's share: documents in and written, weight (its share of the budget, summing to 1), epochs
    over the written documents, estimated tokens trained (with repeats), filters, and why it got its share."""

    name: str
    n_docs: int
    n_kept: int
    weight: float
    repeats: float
    filters: tuple[Filter, ...] = ()
    buckets: tuple[int, ...] = ()  # quality buckets (0 = best) in the QQT union; () = all
    tokens: int = 0  # estimated tokens (ceil(n_chars / 4) a document) trained, repeats included
    note: str = ""  # why the source got this share (e.g. why none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", canonical_float(self.weight, name="weight"))
        object.__setattr__(self, "repeats", canonical_float(self.repeats, name="repeats"))
        object.__setattr__(self, "filters", tuple(self.filters))
        object.__setattr__(self, "buckets", tuple(self.buckets))


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Training budget in tokens or samples."""

    unit: BudgetUnit
    value: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """The predicted metric at the budget with its interval [lo, hi] and the method that made it."""

    metric: str
    value: float
    interval: tuple[float, float]
    method: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", canonical_float(self.value, name="prediction.value"))
        object.__setattr__(
            self, "interval", tuple(canonical_float(x, name="prediction.interval") for x in self.interval)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Law:
    """A fitted law: its form, parameters and fit error (e.g. held-out MAE)."""

    form: str
    params: dict[str, float]
    fit_error: float

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "params",
            {k: canonical_float(v, name=f"laws.params.{k}") for k, v in sorted(self.params.items())},
        )
        object.__setattr__(self, "fit_error", canonical_float(self.fit_error, name="laws.fit_error"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The selection table (doc_id, source, weight, repeats): path relative to the manifest, sha256."""

    path: str
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """What produced the manifest: input shard digests, the config, code version and seed."""

    inputs: dict[str, str]
    config: dict[str, JSONValue]
    code_version: str
    seed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MixtureManifest:
    """A filtered, weighted training mix with its evidence (DESIGN.md section 4), checked when built."""

    sources: tuple[SourcePlan, ...]
    budget: Budget
    prediction: Prediction | None
    laws: dict[str, Law]
    selection: Selection
    provenance: Provenance
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        names = [s.name for s in self.sources]
        if not names:
            raise ManifestError("manifest field 'sources' must list at least one source; got none.")
        if len(set(names)) != len(names):
            raise ManifestError(f"manifest field 'sources' has duplicate names: {sorted(names)}.")
        for i, s in enumerate(self.sources):
            if s.n_kept > s.n_docs:
                raise ManifestError(
                    f"manifest field 'sources[{i}].n_kept' must be <= n_docs ({s.n_docs}); got {s.n_kept}."
                )
            if s.weight < 0:
                raise ManifestError(f"manifest field 'sources[{i}].weight' must be >= 0; got {s.weight}.")
        total = math.fsum(s.weight for s in self.sources)
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            raise ManifestError(
                f"manifest field 'sources[].weight' must sum to 1; got {total:.9g} ({names})."
            )
        if self.schema_version != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest field 'schema_version' must be {SCHEMA_VERSION}; got {self.schema_version!r}."
            )

    def weights(self) -> dict[str, float]:
        """Source name -> weight."""
        return {s.name: s.weight for s in self.sources}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return _plain(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, 2-space indent, final newline): equal manifests, equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> MixtureManifest:
        """Parse and validate against the packaged JSON Schema; ManifestError names the bad field."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ManifestError(f"manifest must be a JSON object; got {type(data).__name__}.")
        version = data.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            raise ManifestError(
                f"manifest field 'schema_version' is {version}, newer than this Curate reads "
                f"({SCHEMA_VERSION}); upgrade curate."
            )
        _check_schema(data)
        return _build(data)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple | list):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return obj


@cache
def manifest_schema() -> dict[str, Any]:
    """The packaged JSON Schema of manifest.json (schema_version 1)."""
    text = resources.files("curate").joinpath("manifest.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _check_schema(data: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(manifest_schema()).iter_errors(data))
    if error is None:
        return
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        field_name = ".".join(x for x in (where, unknown[0]) if x)
        raise ManifestError(f"manifest field '{field_name}' is not a known field (unknown key).")
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        field_name = ".".join(x for x in (where, missing) if x)
        raise ManifestError(f"manifest field '{field_name}' is required but missing.")
    raise ManifestError(f"manifest field '{where or '<root>'}' is invalid: {error.message}.")


def _build(d: dict[str, Any]) -> MixtureManifest:
    sources = tuple(
        SourcePlan(
            name=s["name"],
            n_docs=s["n_docs"],
            n_kept=s["n_kept"],
            weight=s["weight"],
            repeats=s["repeats"],
            filters=tuple(Filter(**f) for f in s["filters"]),
            buckets=tuple(s["buckets"]),
            tokens=s.get("tokens", 0),
            note=s.get("note", ""),
        )
        for s in d["sources"]
    )
    pred = d["prediction"]
    return MixtureManifest(
        schema_version=d["schema_version"],
        sources=sources,
        budget=Budget(**d["budget"]),
        prediction=None
        if pred is None
        else Prediction(
            metric=pred["metric"],
            value=pred["value"],
            interval=(pred["interval"][0], pred["interval"][1]),
            method=pred["method"],
        ),
        laws={k: Law(**v) for k, v in d["laws"].items()},
        selection=Selection(**d["selection"]),
        provenance=Provenance(**d["provenance"]),
    )


def write_manifest(manifest: MixtureManifest, path: Path) -> None:
    """Write `manifest.to_json()` to `path` atomically."""
    write_text(path, manifest.to_json())


def read_manifest(path: Path) -> MixtureManifest:
    """Load and validate a manifest file; ManifestError names the file and the bad field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest '{path}': {exc.strerror or exc}") from exc
    try:
        return MixtureManifest.from_json(text)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from exc

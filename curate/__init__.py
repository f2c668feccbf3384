"""Curate: from raw shards and a compute budget to a filtered, weighted training mix with its evidence.

Library calls live in `curate.api` and are exposed here lazily (PEP 562), so importing `curate` stays
cheap and `pruning`/`scaling` can import `curate.*` foundation modules without a cycle.
"""

from __future__ import annotations

from typing import Any

from curate.errors import (
    ConfigError,
    CurateError,
    DependencyError,
    EmbeddingSpaceError,
    FitError,
    FitWarning,
    InputError,
    ManifestError,
    SchemaError,
    StageError,
)

__version__ = "0.1.0"

_API_NAMES = frozenset(
    {
        "ingest",
        "read_documents",
        "find_duplicates",
        "dedup_documents",
        "embed_texts",
        "embed_documents",
        "score_dataset",
        "score_documents",
        "score_summary",
        "plan_quality",
        "plan_mixture",
    }
)

__all__ = [
    "ConfigError",
    "CurateError",
    "DependencyError",
    "EmbeddingSpaceError",
    "FitError",
    "FitWarning",
    "InputError",
    "ManifestError",
    "SchemaError",
    "StageError",
    *sorted(_API_NAMES),
]


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from curate import api

        return getattr(api, name)
    raise AttributeError(f"module 'curate' has no attribute '{name}'")

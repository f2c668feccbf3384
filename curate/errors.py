"""Every error and warning class Curate raises on purpose; nothing else lives here."""

from __future__ import annotations


class CurateError(Exception):
    """Base class of every error Curate raises on purpose."""


class ConfigError(CurateError, ValueError):
    """A parameter or config value is out of its allowed set or range."""


class InputError(CurateError, ValueError):
    """A whole input is unusable: missing path, unreadable shard, wrong format, empty dataset."""


class SchemaError(InputError):
    """A table lacks required columns or has the wrong types."""


class EmbeddingSpaceError(InputError):
    """Two embedding tables (or a table and a model) come from different embedders."""


class DependencyError(CurateError, ImportError):
    """An optional part of Curate is not installed; the message names the `pip install` that brings it."""


class StageError(CurateError, RuntimeError):
    """A stage broke its contract (row count, schema) or could not commit its output."""


class ManifestError(CurateError, ValueError):
    """A manifest is malformed, inconsistent or from a newer schema version."""


class FitError(CurateError, ValueError):
    """A fit cannot run on the data given (too few points, NaN, non-positive values)."""


class FitWarning(UserWarning):
    """A fit did not converge, is poorly identified or had its input repaired; it still returns a result."""


class UnreadableFileWarning(UserWarning):
    """A whole input file could not be read; it was recorded as one reject row."""

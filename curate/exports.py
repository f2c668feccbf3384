"""Exports of one manifest for training stacks: Megatron-LM blend, MosaicML streams, HF interleave, OLMo mix.

Each consumer sees the sources with a positive weight, in manifest order, at `<data_root>/<source>`. The
selection table (doc_id, source, weight, repeats) is written sorted by doc_id; its sha256 pins it in the
manifest. `weight` is a document's share of the budget (repeats x size / budget), so per source it sums to
the source weight within rounding.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl

from curate._validation import check_columns
from curate.errors import ManifestError
from curate.io import atomic_file, write_text
from curate.manifest import MixtureManifest

SELECTION_COLUMNS = {"doc_id": pl.String, "source": pl.String, "weight": pl.Float64, "repeats": pl.Int64}
EXPORT_FILES = {
    "selection": "selection.parquet",
    "megatron": "megatron_data_path.txt",
    "mosaic": "mosaic_streams.json",
    "hf": "hf_interleave.json",
    "olmo": "olmo_source_mixture.json",
}


def _active(manifest: MixtureManifest) -> list[tuple[str, float, float]]:
    return [(s.name, s.weight, s.repeats) for s in manifest.sources if s.weight > 0]


def _prefix(data_root: str, name: str) -> str:
    return f"{data_root.rstrip('/')}/{name}"


def megatron_data_path(manifest: MixtureManifest, *, data_root: str = "data") -> str:
    """Megatron-LM `--data-path` blend: `w1 prefix1 w2 prefix2 ...` (weights as stored, they sum to 1)."""
    return " ".join(f"{w!r} {_prefix(data_root, name)}" for name, w, _ in _active(manifest))


def mosaic_streams(manifest: MixtureManifest, *, data_root: str = "data") -> dict[str, list[dict[str, Any]]]:
    """MosaicML streaming `Stream` kwargs, two variants: relative `proportion` and absolute `repeat`.

    A StreamingDataset takes one kind for all its streams, so the variants are separate lists.
    """
    active = _active(manifest)
    return {
        "proportion": [{"local": _prefix(data_root, n), "proportion": w} for n, w, _ in active],
        "repeat": [{"local": _prefix(data_root, n), "repeat": r} for n, _, r in active],
    }


def hf_interleave(manifest: MixtureManifest) -> dict[str, Any]:
    """Arguments of `datasets.interleave_datasets`: dataset order, probabilities, seed, stopping strategy."""
    active = _active(manifest)
    return {
        "datasets": [n for n, _, _ in active],
        "probabilities": [w for _, w, _ in active],
        "seed": manifest.provenance.seed,
        "stopping_strategy": "all_exhausted",
    }


def olmo_source_mixture(manifest: MixtureManifest, *, data_root: str = "data") -> dict[str, Any]:
    """OLMo-core source mixture: per source `target_ratio`, `paths`, `max_repetition_ratio` (>= 1)."""
    out: dict[str, Any] = {
        "seed": manifest.provenance.seed,
        "sources": [
            {
                "source_name": n,
                "target_ratio": w,
                "paths": [f"{_prefix(data_root, n)}/*.npy"],
                "max_repetition_ratio": max(1.0, float(r)),
                "max_source_fraction": 1.0,
            }
            for n, w, r in _active(manifest)
        ],
    }
    if manifest.budget.unit == "tokens":
        out["requested_tokens"] = manifest.budget.value
    return out


def write_selection(selection: pl.DataFrame, path: Path) -> str:
    """Write the selection table (sorted by doc_id, fixed column order) atomically; return its sha256."""
    check_columns(selection, SELECTION_COLUMNS, what="selection table")
    table = selection.select(list(SELECTION_COLUMNS)).cast(SELECTION_COLUMNS).sort("doc_id")  # type: ignore[arg-type]
    with atomic_file(path) as tmp:
        table.write_parquet(tmp, compression="zstd", statistics=False)
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_selection(manifest: MixtureManifest, selection: pl.DataFrame) -> None:
    """Raise ManifestError unless the selection's sources are exactly the manifest's positive-weight ones."""
    check_columns(selection, SELECTION_COLUMNS, what="selection table")
    expected = {n for n, _, _ in _active(manifest)}
    found = set(selection["source"].unique().to_list())
    if found != expected:
        raise ManifestError(
            f"selection table sources {sorted(found)} do not match the manifest's weighted sources "
            f"{sorted(expected)}."
        )


def write_exports(
    manifest: MixtureManifest, selection: pl.DataFrame, out_dir: Path, *, data_root: str = "data"
) -> dict[str, Path]:
    """Write every export of `manifest` (and the selection table) into `out_dir`; return kind -> path."""
    check_selection(manifest, selection)
    out_dir = Path(out_dir)
    paths = {kind: out_dir / name for kind, name in EXPORT_FILES.items()}
    write_selection(selection, paths["selection"])
    write_text(paths["megatron"], megatron_data_path(manifest, data_root=data_root) + "\n")
    for kind, payload in (
        ("mosaic", mosaic_streams(manifest, data_root=data_root)),
        ("hf", hf_interleave(manifest)),
        ("olmo", olmo_source_mixture(manifest, data_root=data_root)),
    ):
        write_text(paths[kind], json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return paths

"""Fuzzy dedup on Ray Data: the result of `curate.dedup.fuzzy.fuzzy_duplicates`, no node holding all of it.

Signatures: `map_batches` of the `MinHashSignatures` stage. Band keys: one row (band, key, doc_id) per band,
shuffled with `groupby(["band", "key"])`; each bucket emits its doc_id pairs. Pairs are deduplicated with a
second `groupby`, joined twice to the signatures (never the text) and verified on signature Jaccard. Only the
verified pair list reaches the driver, which computes connected components (`pair_clusters`); a last
`map_batches` over doc_ids writes the DEDUP side table as Parquet parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import ray

from curate.dedup.fuzzy import check_fuzzy_params
from curate.dedup.lsh import band_keys, has_shingles, lsh_params
from curate.dedup.minhash import MinHashSignatures, Shingle
from curate.dedup.table import dedup_rows, pair_clusters
from curate.io import parquet_files, parquet_rows
from curate.schema import DEDUP

_PAIRS = pa.schema([pa.field("a", pa.string()), pa.field("b", pa.string())])


def _signature_matrix(table: pa.Table, column: str = "signature") -> np.ndarray:
    col = table.column(column).combine_chunks()
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), width)


def _band_rows(batch: pa.Table, *, bands: int, rows: int) -> pa.Table:
    """One (band, key, doc_id) row per band of each doc with shingles."""
    sig = _signature_matrix(batch)
    keep = np.flatnonzero(has_shingles(sig))
    keys = band_keys(sig[keep], bands=bands, rows=rows)
    ids = batch.column("doc_id").take(pa.array(np.repeat(keep, bands)))
    band = np.tile(np.arange(bands, dtype=np.int32), len(keep))
    return pa.table({"band": band, "key": keys.ravel(), "doc_id": ids})


def _bucket_pairs(group: pa.Table) -> pa.Table:
    """All doc_id pairs (a < b) of one bucket."""
    ids = sorted(group.column("doc_id").to_pylist())
    i, j = np.triu_indices(len(ids), k=1)
    arr = np.array(ids, dtype=object)
    return pa.table({"a": pa.array(arr[i], pa.string()), "b": pa.array(arr[j], pa.string())}, schema=_PAIRS)


def _verify(batch: pa.Table, *, threshold: float) -> pa.Table:
    """Pairs whose signature Jaccard is >= threshold."""
    if batch.num_rows == 0:
        return pa.table({"a": batch.column("a"), "b": batch.column("b")}, schema=_PAIRS)
    jac = (_signature_matrix(batch, "sig_a") == _signature_matrix(batch, "sig_b")).mean(axis=1)
    mask = pa.array(jac >= threshold)
    return pa.table({"a": batch.column("a"), "b": batch.column("b")}, schema=_PAIRS).filter(mask)


def _mark(batch: pa.Table, *, clusters: pa.Table) -> pa.Table:
    """DEDUP rows of a batch of doc_ids."""
    ids = pl.from_arrow(batch.column("doc_id")).alias("doc_id")  # type: ignore[union-attr]
    out = dedup_rows(ids, pl.from_arrow(clusters), kind="fuzzy")  # type: ignore[arg-type]
    return out.to_arrow().cast(DEDUP)


def _rename(batch: pa.Table, *, old: str, new: str) -> pa.Table:
    return batch.rename_columns([new if c == old else c for c in batch.column_names])


def fuzzy_duplicates_ray(
    files: Sequence[Path],
    out_dir: Path,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    shingle: Shingle = "word",
    seed: int = 0,
    false_negative_weight: float = 0.8,
    batch_size: int = 4096,
    num_partitions: int = 8,
) -> int:
    """Write the fuzzy DEDUP table of the documents in `files` (doc_id, text) to `out_dir`; rows written."""
    check_fuzzy_params(
        threshold=threshold,
        num_perm=num_perm,
        ngram=ngram,
        shingle=shingle,
        verify="signature",
        caller="fuzzy_duplicates_ray",
    )
    bands, rows = lsh_params(
        threshold,
        num_perm,
        false_positive_weight=1.0 - false_negative_weight,
        false_negative_weight=false_negative_weight,
    )
    stage = MinHashSignatures(num_perm=num_perm, ngram=ngram, shingle=shingle, seed=seed)
    docs = ray.data.read_parquet([str(f) for f in files]).select_columns(["doc_id", "text"])
    sigs = docs.map_batches(stage, batch_format="pyarrow", batch_size=batch_size).materialize()
    keyed = sigs.map_batches(
        _band_rows, batch_format="pyarrow", batch_size=batch_size, fn_kwargs={"bands": bands, "rows": rows}
    )
    pairs = (
        keyed.groupby(["band", "key"], num_partitions=num_partitions)
        .map_groups(_bucket_pairs, batch_format="pyarrow")
        .groupby(["a", "b"], num_partitions=num_partitions)
        .count()
        .select_columns(["a", "b"])
    )
    join: dict[str, Any] = {"join_type": "inner", "num_partitions": num_partitions}
    with_a = pairs.join(sigs, on=("a",), right_on=("doc_id",), **join)
    with_a = with_a.map_batches(
        _rename, batch_format="pyarrow", fn_kwargs={"old": "signature", "new": "sig_a"}
    )
    with_b = with_a.join(sigs, on=("b",), right_on=("doc_id",), **join)
    with_b = with_b.map_batches(
        _rename, batch_format="pyarrow", fn_kwargs={"old": "signature", "new": "sig_b"}
    )
    verified = with_b.map_batches(_verify, batch_format="pyarrow", fn_kwargs={"threshold": threshold})
    edge_tables = [
        t for t in ray.get(verified.to_arrow_refs()) if t.num_rows
    ]  # the pair list: all the driver holds
    edges = (
        pl.from_arrow(pa.concat_tables(edge_tables)) if edge_tables else pl.from_arrow(_PAIRS.empty_table())
    )
    clusters = pair_clusters(edges["a"], edges["b"]).to_arrow()  # type: ignore[index]
    marked = sigs.select_columns(["doc_id"]).map_batches(
        _mark, batch_format="pyarrow", batch_size=batch_size, fn_kwargs={"clusters": clusters}
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    marked.write_parquet(str(out_dir))
    for i, path in enumerate(sorted(out_dir.glob("[!.]*.parquet"))):  # Ray's names -> the part-* convention
        path.rename(out_dir / f"part-{i:05d}.parquet")
    return parquet_rows(parquet_files(out_dir))

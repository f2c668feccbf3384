"""Text dedup on Ray: the table of `curate.dedup.passes.text_duplicates` (exact, then fuzzy), no node
holding all of it.

1. Signatures: one Ray task per Parquet row group reads doc_id, text and content_hash in `batch_size`
   batches and returns one (doc_id, content_hash, signature) block per batch (`MinHashSignatures` stage);
   the text never leaves that task.
2. Exact (if on): each block's (doc_id, content_hash) is scattered by hash(content_hash) into P pieces; a
   reducer per partition marks its exact-duplicate groups (`mark_exact`, smallest doc_id kept).
3. Fuzzy (if on): a task per block computes the (bands, rows) LSH keys and scatters one row (band, key,
   doc_id, signature) per band by `key % P`; a reducer per partition forms the candidate pairs inside each
   bucket, deduplicates them and keeps those with signature Jaccard >= threshold;
   `pipelines.components.connected_components` labels them (distributed large/small star).
   Exact copies take part: they have their original's signature, so they join its component and change
   no other; a component's smallest doc_id is never an exact copy, so labels equal the in-process pass run
   after exact.
4. doc_ids, exact marks and component labels are scattered by hash(doc_id) into P pieces; reducer i writes
   `part-{i:05d}.parquet` of the DEDUP table: an exact copy is "exact", else a doc whose component label is
   another doc is "fuzzy" (test: equal to the in-process table).

Signatures travel with the band keys (`bands` copies of 4 * num_perm bytes per doc: 6 KiB at 12 x 10 and 128
perms) rather than being looked up after the shuffle: a lookup needs the candidate pairs joined twice to a
signature table partitioned by doc_id (two more shuffles). Memory: a scatter task holds one block; a
reducer holds about n * bands / P rows with their signatures, so P bounds it: by default
P = ceil(n * bands / 2^20) from the Parquet footers (~0.55 GiB per reducer at 128 perms). The driver holds
object refs and one integer per partition, never pairs, ids or texts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from curate._validation import check_interval
from curate.dedup.exact import mark_exact
from curate.dedup.lsh import (
    band_keys,
    bucket_pairs,
    has_shingles,
    lsh_params,
    signature_jaccard,
    unique_pairs,
)
from curate.dedup.minhash import MinHashSignatures
from curate.dedup.passes import TextDedup
from curate.dedup.table import dedup_rows
from curate.io import parquet_files, parquet_rows, write_table
from curate.schema import DEDUP
from pipelines.components import connected_components
from pipelines.ray_executor import RayExecutor

_PAIRS = pa.schema([pa.field("a", pa.string()), pa.field("b", pa.string())])
_LABELS = pa.schema([pa.field("doc_id", pa.string()), pa.field("component", pa.string())])
_IDS = pa.schema([_LABELS.field("doc_id")])
_HASHES = pa.schema([pa.field("doc_id", pa.string()), pa.field("content_hash", pa.binary(16))])
_EXACT = pa.schema([pa.field(c, pa.string()) for c in ("doc_id", "dup_of", "cluster_id")])
_REDUCER_ROWS = 1 << 20  # default band rows per reducer: ~0.55 GiB with 128-perm signatures


def _signature_matrix(table: pa.Table) -> np.ndarray:
    col = table.column("signature").combine_chunks()
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), width)


def _split(table: pa.Table, part: np.ndarray, parts: int) -> list[pa.Table]:
    """`table` rows grouped by `part` (values in [0, parts)): one table per partition, empty ones included."""
    order = np.argsort(part, kind="stable")
    grouped = table.take(pa.array(order))
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    return [grouped.slice(bounds[i], bounds[i + 1] - bounds[i]) for i in range(parts)]


def _refs(out: Any, parts: int) -> list[Any]:
    return list(out) if parts > 1 else [out]


def _row_groups(files: Sequence[Path]) -> list[tuple[Path, int, int]]:
    """(file, row group, rows) of every non-empty row group, from the Parquet footers."""
    out = []
    for path in files:
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            if rows := meta.row_group(g).num_rows:
                out.append((path, g, rows))
    return out


@ray.remote
def _sign(path: Path, group: int, batch_size: int, stage: MinHashSignatures) -> Iterator[pa.Table]:
    """Blocks (doc_id, content_hash, signature) of one row group, `batch_size` docs each (text stays here)."""
    reader = pq.ParquetFile(path)
    columns = ["doc_id", "text", "content_hash"]
    for batch in reader.iter_batches(batch_size=batch_size, row_groups=[group], columns=columns):
        table = pa.Table.from_batches([batch])
        signed = stage(table.select(["doc_id", "text"]))
        yield signed.append_column("content_hash", table.column("content_hash"))


@ray.remote
def _scatter_bands(block: pa.Table, parts: int, bands: int, rows: int) -> list[pa.Table] | pa.Table:
    """(band, key, doc_id, signature) rows of the docs with shingles, split by key % parts."""
    sig = _signature_matrix(block)
    keep = np.flatnonzero(has_shingles(sig))
    keys = band_keys(sig[keep], bands=bands, rows=rows).ravel()
    take = pa.array(np.repeat(keep, bands))
    table = pa.table(
        {
            "band": np.tile(np.arange(bands, dtype=np.int32), len(keep)),
            "key": keys,
            "doc_id": block.column("doc_id").take(take),
            "signature": block.column("signature").take(take),
        }
    )
    out = _split(table, (keys % np.uint64(parts)).astype(np.int64), parts)
    return out if parts > 1 else out[0]


@ray.remote(num_returns=2)
def _verified_pairs(threshold: float, *pieces: pa.Table) -> tuple[pa.Table, int]:
    """Pairs (a, b) of one partition's band buckets with signature Jaccard >= threshold, and their count."""
    rows = pa.concat_tables(pieces).combine_chunks() if pieces else None  # pieces: `_scatter_bands` tables
    if rows is None or rows.num_rows == 0:
        return _PAIRS.empty_table(), 0
    encoded = pc.dictionary_encode(rows.column("doc_id")).combine_chunks()
    code = encoded.indices.to_numpy().astype(np.int64)
    first = np.empty(len(encoded.dictionary), np.int64)
    first[code[::-1]] = np.arange(len(code))[::-1]  # a row of each doc (all rows of a doc hold its signature)
    sig = _signature_matrix(rows)[first]
    band, key = rows.column("band").to_numpy(), rows.column("key").to_numpy()
    found = [bucket_pairs(key[band == b], code[band == b]) for b in np.unique(band)]
    pairs = unique_pairs(np.concatenate(found))
    pairs = pairs[signature_jaccard(sig, pairs) >= threshold]
    ids = encoded.dictionary
    out = pa.table(
        {"a": ids.take(pa.array(pairs[:, 0])), "b": ids.take(pa.array(pairs[:, 1]))}, schema=_PAIRS
    )
    return out, out.num_rows


def _concat(schema: pa.Schema, pieces: Sequence[pa.Table]) -> pa.Table:
    """`pieces` as one table of `schema` (nullability differences cast away); empty when there are none."""
    return pa.concat_tables([schema.empty_table(), *(p.select(schema.names).cast(schema) for p in pieces)])


def _hash_split(table: pa.Table, column: str, parts: int) -> list[pa.Table] | pa.Table:
    """`table` split by hash(`column`) % parts (the same split on every node)."""
    values = pl.from_arrow(table.column(column))
    assert isinstance(values, pl.Series)
    out = _split(table, (values.hash(seed=0) % parts).cast(pl.Int64).to_numpy(), parts)
    return out if parts > 1 else out[0]


@ray.remote
def _scatter(block: pa.Table, parts: int, columns: list[str], by: str) -> list[pa.Table] | pa.Table:
    """`columns` of `block` split by hash(`by`) % parts."""
    return _hash_split(block.select(columns), by, parts)


@ray.remote
def _exact_marks(parts: int, *pieces: pa.Table) -> list[pa.Table] | pa.Table:
    """Exact marks (doc_id, dup_of, cluster_id) of one content-hash partition, split by hash(doc_id)."""
    frame = pl.from_arrow(_concat(_HASHES, pieces))
    assert isinstance(frame, pl.DataFrame)
    marks = (
        mark_exact(frame).select("doc_id", "dup_of", "cluster_id").filter(pl.col("cluster_id").is_not_null())
    )
    return _hash_split(marks.to_arrow().cast(_EXACT), "doc_id", parts)


@ray.remote
def _write_part(dest: Path, counts: tuple[int, int], *pieces: pa.Table) -> int:
    """DEDUP rows (sorted by doc_id) of one doc_id partition from its ids, exact marks and fuzzy labels
    (`counts` = how many of `pieces` are ids and exact marks; the rest are labels)."""
    n_ids, n_exact = counts
    ids = pl.from_arrow(_concat(_IDS, pieces[:n_ids]).column("doc_id"))
    exact = pl.from_arrow(_concat(_EXACT, pieces[n_ids : n_ids + n_exact]))
    labels = pl.from_arrow(_concat(_LABELS, pieces[n_ids + n_exact :]))
    assert isinstance(ids, pl.Series) and isinstance(exact, pl.DataFrame) and isinstance(labels, pl.DataFrame)
    fuzzy = dedup_rows(ids.sort(), labels.rename({"component": "kept"}), kind="fuzzy")
    exact_rows = exact.select(
        "doc_id",
        "dup_of",
        dup_kind=pl.when(pl.col("dup_of").is_not_null()).then(pl.lit("exact")),
        cluster_id="cluster_id",
    )
    out = fuzzy.join(exact_rows, on="doc_id", how="left", suffix="_x").select(
        "doc_id",
        dup_of=pl.coalesce("dup_of_x", "dup_of"),
        dup_kind=pl.coalesce("dup_kind_x", "dup_kind"),
        cluster_id=pl.when(pl.col("dup_of_x").is_not_null())
        .then("cluster_id_x")
        .when(pl.col("dup_of").is_not_null())
        .then("cluster_id")
        .otherwise(pl.coalesce("cluster_id_x", "cluster_id")),
    )
    write_table(out.to_arrow().cast(DEDUP), dest)
    return out.height


def text_duplicates_ray(
    files: Sequence[Path],
    out_dir: Path,
    params: TextDedup,
    *,
    executor: RayExecutor,
    num_partitions: int | None = None,
) -> int:
    """Write the DEDUP table of the documents in `files` (doc_id, text, content_hash) to `out_dir`: exact,
    then fuzzy, as `text_duplicates` does; returns the rows written. See the module doc for the steps."""
    batch_size = executor.batch_size
    check_interval("batch_size", batch_size, 2, None, caller="text_duplicates_ray")
    if num_partitions is not None:
        check_interval("num_partitions", num_partitions, 1, None, caller="text_duplicates_ray")
    bands, rows = lsh_params(
        params.threshold,
        params.num_perm,
        false_positive_weight=1.0 - params.false_negative_weight,
        false_negative_weight=params.false_negative_weight,
    )
    groups = _row_groups(files)
    docs = sum(rows for *_, rows in groups)
    parts = num_partitions or max(1, -(-docs * bands // _REDUCER_ROWS))
    stage = MinHashSignatures(
        num_perm=params.num_perm, ngram=params.ngram, shingle=params.shingle, seed=params.seed
    )
    blocks = [
        ref
        for path, group, rows in groups
        for k in [-(-rows // batch_size)]
        for ref in _refs(_sign.options(num_returns=k).remote(path, group, batch_size, stage), k)
    ]
    tasks = len(groups)
    exact: list[list[Any]] = []
    if params.exact:
        by_hash = [
            _refs(
                _scatter.options(num_returns=parts).remote(
                    b, parts, ["doc_id", "content_hash"], "content_hash"
                ),
                parts,
            )
            for b in blocks
        ]
        exact = [
            _refs(_exact_marks.options(num_returns=parts).remote(parts, *(s[i] for s in by_hash)), parts)
            for i in range(parts)
        ]
        tasks += len(blocks) + parts
    label_blocks: list[Any] = []
    if params.fuzzy:
        scattered = [
            _refs(_scatter_bands.options(num_returns=parts).remote(b, parts, bands, rows), parts)
            for b in blocks
        ]
        verified = [
            _verified_pairs.remote(params.threshold, *(s[i] for s in scattered)) for i in range(parts)
        ]
        del scattered
        tasks += len(blocks) + parts
        if sum(ray.get([count for _, count in verified])):
            pairs = ray.data.from_arrow_refs([p for p, _ in verified])
            label_blocks = list(connected_components(pairs, batch_size=batch_size).to_arrow_refs())
        del verified
    ids = [
        _refs(_scatter.options(num_returns=parts).remote(b, parts, ["doc_id"], "doc_id"), parts)
        for b in blocks
    ]
    labels = [
        _refs(_scatter.options(num_returns=parts).remote(b, parts, ["doc_id", "component"], "doc_id"), parts)
        for b in label_blocks
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _write_part.remote(
            out_dir / f"part-{i:05d}.parquet",
            (len(ids), len(exact)),
            *(s[i] for s in ids),
            *(e[i] for e in exact),
            *(s[i] for s in labels),
        )
        for i in range(parts)
    ]
    ray.get(written)
    executor.count_tasks(tasks + len(blocks) + len(label_blocks) + parts)
    return parquet_rows(parquet_files(out_dir))

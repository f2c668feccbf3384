"""Fuzzy dedup on Ray: the result of `curate.dedup.fuzzy.fuzzy_duplicates`, no node holding all of it.

1. Signatures: one Ray task per Parquet row group reads doc_id and text in `batch_size` batches and returns
   one (doc_id, signature) block per batch (`MinHashSignatures` stage); the text never leaves that task.
   Parallelism is across row groups (ingest writes many part files). Ray Data's `read_parquet` +
   `map_batches` did the same in 6 s at 100k docs vs 1.8 s for these tasks (2 CPUs).
2. Band keys: one Ray task per signature block computes the (bands, rows) LSH keys and scatters one row
   (band, key, doc_id, signature) per band by `key % P` into P pieces (P = `num_partitions`).
3. One reducer task per partition gets every row of its band buckets, forms the candidate pairs inside each
   bucket (`bucket_pairs`), deduplicates them and keeps those with signature Jaccard >= threshold.
4. `pipelines.components.connected_components` over the verified pairs (distributed large/small star).
5. doc_ids and component labels are scattered by hash(doc_id) into P pieces; reducer i writes
   `part-{i:05d}.parquet` of the DEDUP table (kept = smallest doc_id of its component).

Signatures travel with the band keys (`bands` copies of 4 * num_perm bytes per doc: 6 KiB at 12 x 10 and 128
perms) rather than being looked up after the shuffle: a lookup needs the candidate pairs joined twice to a
signature table partitioned by doc_id (two more shuffles, each a round of tasks and object-store writes).
Carrying them is the simpler plan with two shuffles fewer; the lookup variant was not built or measured, so
which is cheaper beyond the sizes in bench/dedup.py is open. Memory: a scatter task holds
one block (`batch_size` docs, their `bands` key rows and signatures); a reducer holds about n * bands / P rows
with their signatures, so P bounds it: by default P = ceil(n * bands / 2^20) from the Parquet footers
(~0.55 GiB per reducer at 128 perms). A shuffle writes blocks x P pieces, which is what limits P upward.
The driver holds object refs and one integer per partition, never pairs, ids or texts.
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
from curate.dedup.fuzzy import check_fuzzy_params
from curate.dedup.lsh import (
    band_keys,
    bucket_pairs,
    has_shingles,
    lsh_params,
    signature_jaccard,
    unique_pairs,
)
from curate.dedup.minhash import MinHashSignatures, Shingle
from curate.dedup.table import dedup_rows
from curate.io import parquet_files, parquet_rows, write_table
from curate.schema import DEDUP
from pipelines.components import connected_components

_PAIRS = pa.schema([pa.field("a", pa.string()), pa.field("b", pa.string())])
_LABELS = pa.schema([pa.field("doc_id", pa.string()), pa.field("component", pa.string())])
_IDS = pa.schema([_LABELS.field("doc_id")])
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
    """Signature blocks (doc_id, signature) of one row group, `batch_size` docs each; the text stays here."""
    reader = pq.ParquetFile(path)
    for batch in reader.iter_batches(batch_size=batch_size, row_groups=[group], columns=["doc_id", "text"]):
        yield stage(pa.Table.from_batches([batch]))


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


@ray.remote
def _scatter_ids(block: pa.Table, parts: int, columns: list[str]) -> list[pa.Table] | pa.Table:
    """`columns` of `block` split by hash(doc_id) % parts (the same split on every node)."""
    table = block.select(columns).cast(pa.schema([_LABELS.field(c) for c in columns]))
    ids = pl.from_arrow(table.column("doc_id"))
    assert isinstance(ids, pl.Series)
    out = _split(table, (ids.hash(seed=0) % parts).cast(pl.Int64).to_numpy(), parts)
    return out if parts > 1 else out[0]


@ray.remote
def _write_part(dest: Path, n_ids: int, *pieces: pa.Table) -> int:
    """DEDUP rows (sorted by doc_id) of one doc_id partition: its ids (first `n_ids` pieces) and labels."""
    ids = pl.from_arrow(pa.concat_tables([_IDS.empty_table(), *pieces[:n_ids]]).column("doc_id"))
    labels = pl.from_arrow(pa.concat_tables([_LABELS.empty_table(), *pieces[n_ids:]]))
    assert isinstance(ids, pl.Series) and isinstance(labels, pl.DataFrame)
    out = dedup_rows(ids.sort(), labels.rename({"component": "kept"}), kind="fuzzy")
    write_table(out.to_arrow().cast(DEDUP), dest)
    return out.height


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
    num_partitions: int | None = None,
) -> int:
    """Write the fuzzy DEDUP table of the documents in `files` (doc_id, text) to `out_dir`; rows written.

    `batch_size` docs per signature block (and pairs per components batch); `num_partitions` reducers per
    shuffle, each holding about docs * bands / num_partitions band rows (None: ~`_REDUCER_ROWS` each).
    See the module doc for the steps.
    """
    check_fuzzy_params(
        threshold=threshold,
        num_perm=num_perm,
        ngram=ngram,
        shingle=shingle,
        verify="signature",
        caller="fuzzy_duplicates_ray",
    )
    check_interval("batch_size", batch_size, 2, None, caller="fuzzy_duplicates_ray")
    if num_partitions is not None:
        check_interval("num_partitions", num_partitions, 1, None, caller="fuzzy_duplicates_ray")
    bands, rows = lsh_params(
        threshold,
        num_perm,
        false_positive_weight=1.0 - false_negative_weight,
        false_negative_weight=false_negative_weight,
    )
    groups = _row_groups(files)
    docs = sum(rows for *_, rows in groups)
    parts = num_partitions or max(1, -(-docs * bands // _REDUCER_ROWS))
    stage = MinHashSignatures(num_perm=num_perm, ngram=ngram, shingle=shingle, seed=seed)
    sig_blocks = [
        ref
        for path, group, rows in groups
        for k in [-(-rows // batch_size)]
        for ref in _refs(_sign.options(num_returns=k).remote(path, group, batch_size, stage), k)
    ]
    scattered = [
        _refs(_scatter_bands.options(num_returns=parts).remote(b, parts, bands, rows), parts)
        for b in sig_blocks
    ]
    verified = [_verified_pairs.remote(threshold, *(s[i] for s in scattered)) for i in range(parts)]
    del scattered
    label_blocks: list[Any] = []
    if sum(ray.get([count for _, count in verified])):
        pairs = ray.data.from_arrow_refs([p for p, _ in verified])
        label_blocks = list(connected_components(pairs, batch_size=batch_size).to_arrow_refs())
    del verified
    ids = [
        _refs(_scatter_ids.options(num_returns=parts).remote(b, parts, ["doc_id"]), parts) for b in sig_blocks
    ]
    labels = [
        _refs(_scatter_ids.options(num_returns=parts).remote(b, parts, ["doc_id", "component"]), parts)
        for b in label_blocks
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _write_part.remote(
            out_dir / f"part-{i:05d}.parquet", len(ids), *(s[i] for s in ids), *(s[i] for s in labels)
        )
        for i in range(parts)
    ]
    ray.get(written)
    return parquet_rows(parquet_files(out_dir))

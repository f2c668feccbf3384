"""The committed `dedup` step of a work dir: exact, then fuzzy, then semantic, merged into one DEDUP table.

Each method runs only on the documents the earlier ones left unmarked (the first kind that marks a doc wins),
so exact copies never reach the LSH buckets. The table has one row per document, sorted by doc_id; no document
is deleted. Key: the ingest key (and the embeddings key for semantic) plus every parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import polars as pl

from curate._validation import check_option
from curate.dedup.exact import mark_exact
from curate.dedup.fuzzy import check_fuzzy_params, fuzzy_duplicates
from curate.dedup.minhash import Shingle
from curate.dedup.semantic import DEFAULT_EPS, semantic_duplicates
from curate.dedup.table import combine_duplicates
from curate.errors import ConfigError, InputError
from curate.hashing import JSONValue, stage_key
from curate.io import write_table
from curate.schema import DEDUP
from curate.stages import StageOutput, commit_step, latest_committed

Method = Literal["exact", "fuzzy", "semantic"]
METHODS: tuple[Method, ...] = ("exact", "fuzzy", "semantic")
STAGE = "dedup"
VERSION = 1


def _require(work: Path, name: str, hint: str) -> StageOutput:
    output = latest_committed(work, name)
    if output is None:
        raise InputError(f"work dir '{work}' has no committed {name} output; run `{hint}` first.")
    return output


def dedup_work(
    work: Path,
    *,
    methods: Sequence[Method] = ("exact", "fuzzy"),
    threshold: float = 0.8,
    eps: float = DEFAULT_EPS,
    num_perm: int = 128,
    ngram: int = 5,
    shingle: Shingle = "word",
    seed: int = 0,
) -> StageOutput:
    """Commit the dedup side table of the latest ingest in `work` (a no-op when the same key is committed).

    `threshold` is the fuzzy Jaccard cut, `eps` the semantic one (cosine > 1 - eps; needs `curate embed`).
    """
    work = Path(work)
    if not methods:
        raise ConfigError("The 'methods' parameter of dedup_work() must name at least one method. Got none.")
    for m in methods:
        check_option("methods", m, METHODS, caller="dedup_work")
    check_fuzzy_params(
        threshold=threshold,
        num_perm=num_perm,
        ngram=ngram,
        shingle=shingle,
        verify="signature",
        caller="dedup_work",
    )
    ordered = [m for m in METHODS if m in methods]
    ingest = _require(work, "ingest", f"curate ingest {work} --source NAME=GLOB")
    inputs = [ingest.key]
    embed = None
    if "semantic" in ordered:
        embed = _require(work, "embed", f"curate embed {work}")
        inputs.append(embed.key)
    params: dict[str, JSONValue] = {
        "methods": list(ordered),
        "threshold": threshold,
        "eps": eps,
        "num_perm": num_perm,
        "ngram": ngram,
        "shingle": shingle,
        "seed": seed,
    }

    def build(tmp: Path) -> dict[str, Any]:
        docs = ingest.scan().select("doc_id", "text", "content_hash").sort("doc_id").collect()
        blank = docs.select(
            "doc_id", *(pl.lit(None, pl.String).alias(c) for c in ("dup_of", "dup_kind", "cluster_id"))
        )
        tables, todo = [blank], docs
        for method in ordered:
            tables.append(_run_method(method, todo))
            todo = todo.join(tables[-1].filter(pl.col("dup_of").is_not_null()), on="doc_id", how="anti")
        table = combine_duplicates(*tables)
        write_table(table.to_arrow().cast(DEDUP), tmp / "part-00000.parquet")
        counts = {str(k): int(n) for k, n in table["dup_kind"].drop_nulls().value_counts().iter_rows()}
        return {"rows_in": docs.height, "rows_out": table.height, "duplicates": counts}

    def _run_method(method: Method, todo: pl.DataFrame) -> pl.DataFrame:
        if method == "exact":
            return mark_exact(todo)
        if method == "fuzzy":
            return fuzzy_duplicates(
                todo, threshold=threshold, num_perm=num_perm, ngram=ngram, shingle=shingle, seed=seed
            )
        from curate.embeddings import read_embeddings

        ids, vectors, _ = read_embeddings(embed)  # type: ignore[arg-type]
        rows = todo.select("doc_id").join(
            pl.DataFrame({"doc_id": ids, "row": range(len(ids))}),
            on="doc_id",
            how="left",
            maintain_order="left",
        )
        if rows["row"].null_count():
            raise InputError(
                f"embeddings table lacks {rows['row'].null_count()} of the documents of '{work}'."
            )
        return semantic_duplicates(rows["doc_id"], vectors[rows["row"].to_numpy()], eps=eps, seed=seed)

    key = stage_key(STAGE, VERSION, params, inputs)
    return commit_step(work, STAGE, key, build, params=params, inputs=inputs)


def dedup_summary(work: Path) -> pl.DataFrame:
    """Per source of the latest dedup: n_docs, n_exact, n_fuzzy, n_semantic, n_clusters, bytes_removed.

    Raises InputError when `work` has no committed ingest or dedup output.
    """
    work = Path(work)
    dedup = _require(work, STAGE, f"curate dedup {work}")
    docs = _require(work, "ingest", f"curate ingest {work} --source NAME=GLOB").scan()
    joined = docs.select("doc_id", "source", n_bytes=pl.col("text").str.len_bytes()).join(
        dedup.scan(), on="doc_id", how="left"
    )
    kind = pl.col("dup_kind")
    return (
        joined.group_by("source")
        .agg(
            n_docs=pl.len(),
            n_exact=(kind == "exact").sum(),
            n_fuzzy=(kind == "fuzzy").sum(),
            n_semantic=(kind == "semantic").sum(),
            n_clusters=pl.col("cluster_id").drop_nulls().n_unique(),
            bytes_removed=pl.col("n_bytes").filter(kind.is_not_null()).sum(),
        )
        .sort("source")
        .collect()
        .cast(
            {
                c: pl.Int64
                for c in ("n_docs", "n_exact", "n_fuzzy", "n_semantic", "n_clusters", "bytes_removed")
            }
        )
    )

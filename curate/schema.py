"""Arrow schemas of every table Curate writes (DESIGN.md section 4) and the check that enforces them.

One orientation for every score column: larger = harder / further from the target.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from curate.errors import SchemaError

SCHEMA_VERSION = "1"

DOCUMENTS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),  # "<source>-<xxh64 of origin>", unique and stable
        pa.field("source", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),  # stored as read (NFC etc. only for the hash)
        pa.field("label", pa.string(), nullable=True),
        pa.field("content_hash", pa.binary(16), nullable=False),  # blake2b-128 of normalize_text(text)
        pa.field("n_chars", pa.int32(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),  # "<shard relpath>:<row>"
        pa.field("meta", pa.string(), nullable=True),  # JSON of the record's other fields
    ],
    metadata={"curate.table": "documents", "curate.schema_version": SCHEMA_VERSION},
)

REJECTS = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # short code, one of REJECT_REASONS
        pa.field("detail", pa.string(), nullable=True),
        pa.field("raw", pa.large_string(), nullable=True),
    ],
    metadata={"curate.table": "rejects", "curate.schema_version": SCHEMA_VERSION},
)

REJECT_REASONS = (
    "bad_json",
    "bad_encoding",
    "bad_record",
    "empty_text",
    "not_string",
    "missing_field",
    "too_long",
    "truncated_file",
    "unreadable_file",
    "schema_mismatch",
)

DEDUP = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("dup_of", pa.string(), nullable=True),  # null = kept
        pa.field("dup_kind", pa.string(), nullable=True),  # table.DupKind; null = kept
        pa.field("cluster_id", pa.string(), nullable=True),  # kept doc_id of the duplicate cluster
    ],
    metadata={"curate.table": "dedup", "curate.schema_version": SCHEMA_VERSION},
)

SCORES = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("cluster_id", pa.int32(), nullable=False),
        pa.field("proto_dist", pa.float32(), nullable=False),
        pa.field("class_proto_dist", pa.float32(), nullable=True),
        pa.field("difficulty", pa.float32(), nullable=True),
        pa.field("target_sim", pa.float32(), nullable=True),
    ],
    metadata={"curate.table": "scores", "curate.schema_version": SCHEMA_VERSION},
)


def embeddings_schema(dim: int, *, embedder: str, version: str, centering: str = "none") -> pa.Schema:
    """Schema of an embeddings side table; the embedder's name, version, width and centering digest ride in
    the metadata ("none" = raw vectors)."""
    return pa.schema(
        [
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
        ],
        metadata={
            "curate.table": "embeddings",
            "curate.schema_version": SCHEMA_VERSION,
            "curate.embedder": embedder,
            "curate.embedder_version": version,
            "curate.dim": str(dim),
            "curate.centering": centering,
            "curate.normalized": "true",
        },
    )


def validate_table(table: pa.Table | pa.Schema, expected: pa.Schema, *, where: str | Path) -> None:
    """Raise SchemaError naming `where` if `table` lacks a column of `expected` or has it mistyped."""
    schema = table if isinstance(table, pa.Schema) else table.schema
    found = {f.name: f.type for f in schema}
    missing = [f.name for f in expected if f.name not in found]
    wrong = [
        f"{f.name} (expected {f.type}, got {found[f.name]})"
        for f in expected
        if f.name in found and found[f.name] != f.type
    ]
    if missing or wrong:
        table_name = (expected.metadata or {}).get(b"curate.table", b"table").decode()
        parts = ([f"lacks column(s) {', '.join(missing)}"] if missing else []) + (
            [f"has mistyped column(s) {'; '.join(wrong)}"] if wrong else []
        )
        raise SchemaError(
            f"{table_name} table '{where}' {' and '.join(parts)} (found: {', '.join(found) or 'none'})."
        )

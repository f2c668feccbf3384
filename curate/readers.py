"""Shard readers: one JSONL(.gz/.zst), Parquet, CSV or .txt file -> document rows and reject rows.

Every bad row becomes a REJECTS row with a reason code and the raw record, so rows read = documents +
rejects per file. Well-formed JSONL goes through pyarrow's vectorised reader; a file it refuses is re-read
line by line.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
import zstandard

from curate.hashing import content_hashes, make_doc_ids
from curate.schema import DOCUMENTS, REJECTS

STAGE = "ingest"  # the stage name rejects carry

Format = Literal["jsonl", "parquet", "csv", "txt"]
Compression = Literal["gzip", "zstd"] | None
SUFFIXES: dict[str, tuple[Format, Compression]] = {
    ".jsonl": ("jsonl", None),
    ".ndjson": ("jsonl", None),
    ".jsonl.gz": ("jsonl", "gzip"),
    ".ndjson.gz": ("jsonl", "gzip"),
    ".jsonl.zst": ("jsonl", "zstd"),
    ".ndjson.zst": ("jsonl", "zstd"),
    ".parquet": ("parquet", None),
    ".csv": ("csv", None),
    ".txt": ("txt", None),
}

_FIRST_OBJECT = re.compile(rb"\s*\{")
_BLANK_RE = r"^[\s\x1c-\x1f]*$"  # whitespace-only text (the same set normalize_text folds)


@dataclass(frozen=True)
class Shard:
    """One input file of a source: its absolute path, its path relative to the glob root, its format."""

    source: str
    path: str
    relpath: str
    fmt: Format
    compression: Compression


def format_of(path: str) -> tuple[Format, Compression] | None:
    """(format, compression) from the file name's suffixes, or None when Curate does not read it."""
    name = path.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return None


@dataclass
class Rows:
    """Accumulates one shard group's outputs: documents as Arrow tables, rejects as dicts."""

    source: str
    max_chars: int
    docs: list[pa.Table] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, relpath: str, row: int, reason: str, detail: str, raw: str | None) -> None:
        self.rejects.append(
            {
                "source": self.source,
                "origin": f"{relpath}:{row}",
                "stage": STAGE,
                "reason": reason,
                "detail": detail,
                "raw": raw,
            }
        )

    def add(self, relpath: str, frame: pl.DataFrame, raw: Callable[[list[int]], list[str | None]]) -> None:
        """Classify `frame` (row, text, label, meta; text non-null str): keep good rows, reject the rest.

        `raw(positions)` returns the raw records of the rejected positions (computed only when needed).
        """
        text = pl.col("text")
        frame = frame.with_columns(text.str.len_chars().cast(pl.Int32).alias("n_chars")).with_columns(
            pl.when(text.str.contains(_BLANK_RE))
            .then(pl.lit("empty_text"))
            .when(pl.col("n_chars") > self.max_chars)
            .then(pl.lit("too_long"))
            .alias("reason"),
        )
        bad = frame.with_row_index("_pos").filter(pl.col("reason").is_not_null())
        if bad.height:
            for (_, row, reason, n), rec in zip(
                bad.select("_pos", "row", "reason", "n_chars").iter_rows(),
                raw(bad["_pos"].to_list()),
                strict=True,
            ):
                detail = (
                    "text is empty or whitespace only"
                    if reason == "empty_text"
                    else f"text has {n} characters, more than max_chars={self.max_chars}"
                )
                self.reject(relpath, row, reason, detail, rec)
        good = frame.filter(pl.col("reason").is_null())
        origins = good.select(pl.format("{}:{}", pl.lit(relpath), "row")).to_series()
        self.docs.append(
            pa.table(
                {
                    "doc_id": make_doc_ids(self.source, origins),
                    "source": pa.repeat(self.source, good.height).cast(pa.string()),
                    "text": good["text"].to_arrow().cast(pa.large_string()),
                    "label": good["label"].to_arrow().cast(pa.string()),
                    "content_hash": content_hashes(good["text"]),
                    "n_chars": good["n_chars"].to_arrow(),
                    "origin": origins.to_arrow().cast(pa.string()),
                    "meta": good["meta"].to_arrow().cast(pa.string()),
                },
                schema=DOCUMENTS,
            )
        )

    def documents(self) -> pa.Table:
        return pa.concat_tables(self.docs) if self.docs else DOCUMENTS.empty_table()

    def reject_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rejects, schema=REJECTS)


_Good = tuple[list[int], list[str], list[str | None], list[str | None]]  # row, text, label, meta


def _good_frame(
    rows: list[int], texts: list[str], labels: list[str | None], metas: list[str | None]
) -> pl.DataFrame:
    return pl.DataFrame(
        {"row": rows, "text": texts, "label": labels, "meta": metas},
        schema={"row": pl.Int64, "text": pl.String, "label": pl.String, "meta": pl.String},
    )


def _decompress(raw: bytes, compression: Compression) -> tuple[bytes, str | None]:
    """Decompressed bytes up to the first break, and what broke (None when the stream is complete)."""
    if compression is None:
        return raw, None

    def make() -> Any:
        if compression == "gzip":
            return zlib.decompressobj(wbits=31)
        return zstandard.ZstdDecompressor().decompressobj()

    out: list[bytes] = []
    d = make()
    view = memoryview(raw)
    try:
        for i in range(0, len(raw), 1 << 20):
            out.append(d.decompress(view[i : i + (1 << 20)]))
            while d.eof and d.unused_data:  # next gzip member / zstd frame
                rest, d = d.unused_data, make()
                out.append(d.decompress(rest))
    except (zlib.error, zstandard.ZstdError, EOFError) as exc:
        return b"".join(out), f"{compression} stream is corrupt: {exc}"
    if not d.eof:
        return b"".join(out), f"{compression} stream ends before its end marker (truncated file)"
    return b"".join(out), None


def _label_of(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _jsonl_fast(data: bytes, text_field: str, label_field: str | None) -> pl.DataFrame | None:
    """Vectorised parse (pyarrow) of a clean JSONL buffer: row, text, label, meta; None if anything is off."""
    if not _FIRST_OBJECT.match(data):  # pyarrow 26 crashes on a buffer that opens with a bare `null`
        return None
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    try:
        table = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=8 << 20))
        table.validate(full=True)  # the JSON reader does not check UTF-8 itself
    except (pa.ArrowException, UnicodeDecodeError, ValueError):
        return None
    names = table.column_names
    # One object per line, the text a string on every row (null also means "missing": re-read those).
    if table.num_rows != n_lines or text_field not in names or table[text_field].null_count:
        return None
    if not pa.types.is_string(table.schema.field(text_field).type):
        return None
    label_type = table.schema.field(label_field).type if label_field in names else pa.null()
    label_ok = (pa.types.is_string, pa.types.is_integer, pa.types.is_boolean, pa.types.is_null)
    if not any(ok(label_type) for ok in label_ok):  # other types print differently from json.dumps
        return None
    df = pl.DataFrame(table)
    if df.columns != names:  # polars renames some keys (an empty one becomes "column_0"): the exact path
        return None
    others = [c for c in names if c not in (text_field, label_field)]
    label = (
        pl.col(label_field).cast(pl.String)
        if label_field and label_field in names
        else pl.lit(None, pl.String)
    )
    meta = pl.struct(others).struct.json_encode() if others else pl.lit(None, pl.String)
    return df.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("row"),
        pl.col(text_field).alias("text"),
        label.alias("label"),
        meta.alias("meta"),
    )


def _read_jsonl(shard: Shard, data: bytes, rows: Rows, text_field: str, label_field: str | None) -> int:
    fast = _jsonl_fast(data, text_field, label_field)
    if fast is not None:
        lines: list[bytes] | None = None

        def raw_lines(positions: list[int]) -> list[str | None]:
            nonlocal lines
            lines = lines if lines is not None else data.split(b"\n")
            return [lines[p].decode("utf-8") for p in positions]

        rows.add(shard.relpath, fast, raw_lines)
        return fast.height
    n_read = 0
    good: _Good = ([], [], [], [])
    raws: list[str] = []
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        n_read += 1
        rel = shard.relpath
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = line.decode("utf-8", "backslashreplace")
            rows.reject(
                rel,
                lineno,
                "bad_encoding",
                f"line is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                raw,
            )
            continue
        try:
            rec = json.loads(s)
        except (ValueError, RecursionError) as exc:
            rows.reject(rel, lineno, "bad_json", f"line is not valid JSON ({exc})", s)
            continue
        if not isinstance(rec, dict):
            rows.reject(rel, lineno, "bad_record", f"expected a JSON object, got {type(rec).__name__}", s)
            continue
        if text_field not in rec:
            found = ", ".join(list(rec)[:10]) or "none"
            rows.reject(
                rel, lineno, "missing_field", f"record lacks field '{text_field}' (found: {found})", s
            )
            continue
        text = rec.pop(text_field)
        if text is None:
            rows.reject(rel, lineno, "empty_text", f"field '{text_field}' is null", s)
            continue
        if not isinstance(text, str):
            rows.reject(
                rel, lineno, "not_string", f"field '{text_field}' is {type(text).__name__}, not a string", s
            )
            continue
        label = _label_of(rec.pop(label_field, None)) if label_field else None
        meta = json.dumps(rec, ensure_ascii=False, separators=(",", ":")) if rec else None
        try:
            (text + (label or "") + (meta or "")).encode("utf-8")
        except UnicodeEncodeError:
            rows.reject(rel, lineno, "bad_encoding", "record holds an unpaired UTF-16 surrogate escape", s)
            continue
        for col, value in zip(good, (lineno, text, label, meta), strict=True):
            col.append(value)  # type: ignore[attr-defined]
        raws.append(s)
    rows.add(shard.relpath, _good_frame(*good), lambda positions: [raws[p] for p in positions])
    return n_read


def _read_csv(shard: Shard, data: bytes, rows: Rows, text_field: str, label_field: str | None) -> int:
    text = data.decode("utf-8", "surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    csv.field_size_limit(sys.maxsize)
    header = next(reader, None)
    if header is None:
        return 0
    if text_field not in header:
        detail = f"CSV header lacks column '{text_field}' (found: {', '.join(header)})"
        rows.reject(shard.relpath, 0, "schema_mismatch", detail, ",".join(header))
        return 1
    good: _Good = ([], [], [], [])
    raws: list[str] = []
    n_read = 0
    records: Iterator[list[str]] = iter(reader)
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except csv.Error as exc:
            n_read += 1
            rows.reject(
                shard.relpath, n_read, "bad_record", f"CSV parse error; rest of file skipped ({exc})", None
            )
            break
        if not record:
            continue
        n_read += 1
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(record)
        raw = buf.getvalue()
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            rows.reject(shard.relpath, n_read, "bad_encoding", "record is not valid UTF-8", raw)
            continue
        if len(record) != len(header):
            detail = f"record has {len(record)} fields, the header {len(header)}"
            rows.reject(shard.relpath, n_read, "bad_record", detail, raw)
            continue
        rec = dict(zip(header, record, strict=True))
        value = rec.pop(text_field)
        label = (rec.pop(label_field, None) or None) if label_field else None
        meta = json.dumps(rec, ensure_ascii=False, separators=(",", ":")) if rec else None
        for col, v in zip(good, (n_read, value, label, meta), strict=True):
            col.append(v)  # type: ignore[attr-defined]
        raws.append(raw)
    rows.add(shard.relpath, _good_frame(*good), lambda positions: [raws[p] for p in positions])
    return n_read


def _read_parquet(shard: Shard, rows: Rows, text_field: str, label_field: str | None) -> int:
    table = pq.read_table(shard.path)
    names = table.column_names
    ftype = table.schema.field(text_field).type if text_field in names else None
    if ftype is None or not (pa.types.is_string(ftype) or pa.types.is_large_string(ftype)):
        got = f"lacks column '{text_field}'" if ftype is None else f"has '{text_field}' of type {ftype}"
        detail = f"Parquet file {got}; expected a string column (found: {', '.join(names)})"
        rows.reject(shard.relpath, 0, "schema_mismatch", detail, None)
        return 1
    df = pl.DataFrame(table).with_row_index("row", offset=1).with_columns(pl.col("row").cast(pl.Int64))
    nulls = df.filter(pl.col(text_field).is_null())
    if nulls.height:
        for row, rec in zip(nulls["row"], _json_rows(nulls.drop("row")), strict=True):
            rows.reject(shard.relpath, row, "empty_text", f"field '{text_field}' is null", rec)
        df = df.filter(pl.col(text_field).is_not_null())
    others = [c for c in names if c not in (text_field, label_field)]
    label = (
        pl.col(label_field).cast(pl.String)
        if label_field and label_field in names
        else pl.lit(None, pl.String)
    )
    meta = pl.struct(others).struct.json_encode() if others else pl.lit(None, pl.String)
    frame = df.select("row", pl.col(text_field).alias("text"), label.alias("label"), meta.alias("meta"))
    full = df.drop("row")
    rows.add(shard.relpath, frame, lambda positions: _json_rows(full[positions]))
    return table.num_rows


def _json_rows(df: pl.DataFrame) -> list[str | None]:
    try:
        return df.select(pl.struct(df.columns).struct.json_encode()).to_series().to_list()
    except pl.exceptions.PolarsError:
        return [None] * df.height


def read_shard(shard: Shard, rows: Rows, *, text_field: str, label_field: str | None) -> int:
    """Read one shard into `rows` (documents and rejects); returns the number of rows read."""
    try:
        if shard.fmt == "parquet":
            return _read_parquet(shard, rows, text_field, label_field)
        with open(shard.path, "rb") as f:
            raw = f.read()
    except (OSError, pa.ArrowException) as exc:
        rows.reject(shard.relpath, 0, "unreadable_file", f"cannot read file: {exc}", None)
        return 1
    if shard.fmt == "txt":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            detail = f"file is not valid UTF-8 ({exc.reason} at byte {exc.start})"
            rows.reject(shard.relpath, 1, "bad_encoding", detail, raw.decode("utf-8", "backslashreplace"))
            return 1
        rows.add(shard.relpath, _good_frame([1], [text], [None], [None]), lambda _: [text])
        return 1
    data, broken = _decompress(raw, shard.compression)
    if broken is not None and not data:
        rows.reject(shard.relpath, 0, "unreadable_file", broken, None)
        return 1
    tail = b""
    if broken is not None:
        cut = data.rfind(b"\n") + 1
        data, tail = data[:cut], data[cut:]
    read = _read_jsonl if shard.fmt == "jsonl" else _read_csv
    n = read(shard, data, rows, text_field, label_field)
    if broken is not None:
        line = data.count(b"\n") + 1
        rows.reject(shard.relpath, line, "truncated_file", broken, tail.decode("utf-8", "backslashreplace"))
        n += 1
    return n

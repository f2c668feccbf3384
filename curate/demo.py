"""The demo corpus: real registry data sets (shared/DATA.md) written as messy multi-format shards.

Four clean sources of different domains and formats (Wikipedia EN as JSONL.zst, Wikipedia FR as JSONL.gz,
State of the Union paragraphs as CSV, BBC News as a folder of .txt) plus one degraded "web" source
(`curate.junk`: boilerplate, spam, shuffled words, near copies, off-language text; exact copies of other
sources and a few malformed lines).
Deterministic for a seed; the files are rewritten byte for byte, so re-ingesting them is a no-op.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import zstandard

from curate import corpora, junk
from curate.io import atomic_file

DEMO_SIZES = {"wiki_en": 1000, "wiki_fr": 600, "sotu": 1000, "bbc": 800}
_MALFORMED = (
    b'{"text": "unterminated string, id: 1}',
    b"{text: 'single quotes are not JSON'}",
    b'{"text": "trailing comma",}',
    b"not json at all",
    b'{"text": ""}',
    b'{"text": "   \\n\\t  "}',
    b'{"text": null}',
    b'{"text": 42}',
    b'{"text": ["a", "list"]}',
    b'{"body": "the text lives under another field"}',
    b'{"title": "no text field either"}',
    b'{"text": "caf\xe9 in Latin-1, not UTF-8"}',
)


def _write_bytes(dest: Path, data: bytes) -> None:
    with atomic_file(dest) as tmp:
        tmp.write_bytes(data)


def _jsonl(records: Sequence[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def _web_records(others: dict[str, pl.DataFrame], rng: np.random.Generator) -> list[bytes]:
    """~830 degraded records (each with meta 'kind': curate.junk generators plus exact copies) and the
    malformed lines, in a seeded order."""
    seed = int(rng.integers(1 << 31))
    wiki = others["wiki_en"]["text"].to_list()
    pool = others["sotu"]["text"].to_list() + others["bbc"]["text"].to_list()
    picks = {
        "shuffled": [wiki[int(i)] for i in rng.choice(len(wiki), size=200, replace=False)],
        "near_copy": [pool[int(i)] for i in rng.choice(len(pool), size=250, replace=False)],
        "exact_copy": [wiki[int(i)] for i in rng.choice(len(wiki), size=60, replace=False)],
    }
    kinds = {
        "boilerplate": junk.boilerplate(130, seed=seed),
        "spam": junk.spam_emails(70, seed=seed + 1),
        "shuffled": junk.shuffled_words(picks["shuffled"], seed=seed + 2),
        "near_copy": junk.near_copies(picks["near_copy"], seed=seed + 3),
        "exact_copy": picks["exact_copy"],
        "off_language": junk.off_language(120, lang="es", seed=seed + 4),
    }
    recs = [{"text": t, "kind": kind} for kind, texts in kinds.items() for t in texts]
    lines = [
        json.dumps({"url": f"https://web.example/{k}", **r}, ensure_ascii=False).encode()
        for k, r in enumerate(recs)
    ]
    lines.extend(_MALFORMED)
    return [lines[int(i)] for i in rng.permutation(len(lines))]


def _clean_frames(seed: int, sizes: Mapping[str, int | None] = DEMO_SIZES) -> dict[str, pl.DataFrame]:
    """The four clean sources (id, text, label, ...), `sizes[name]` rows each (None = the whole corpus)."""
    return {
        "wiki_en": corpora.wiki(sizes["wiki_en"], lang="en", seed=seed),
        "wiki_fr": corpora.wiki(sizes["wiki_fr"], lang="fr", seed=seed),
        "sotu": corpora.sotu_paragraphs(sizes["sotu"], seed=seed),
        "bbc": corpora.bbc_news(sizes["bbc"], seed=seed),
    }


def build_demo_corpus(root: Path, *, seed: int = 0) -> dict[str, str]:
    """Write the demo shards under `root`; returns source name -> folder to ingest (label field: `label`)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    frames = _clean_frames(seed)
    en = frames["wiki_en"].select("id", "text", "label").to_dicts()
    half = len(en) // 2
    zstd = zstandard.ZstdCompressor(level=3)
    for k, part in enumerate((en[:half], en[half:])):
        _write_bytes(root / "wiki_en" / f"part-{k:02d}.jsonl.zst", zstd.compress(_jsonl(part)))
    fr = _jsonl(frames["wiki_fr"].select("id", "text", "label").to_dicts())
    _write_bytes(root / "wiki_fr" / "wiki_fr.jsonl.gz", gzip.compress(fr, mtime=0))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "year", "label", "text"])
    writer.writerows(frames["sotu"].select("id", "year", "label", "text").iter_rows())
    _write_bytes(root / "sotu" / "sotu.csv", buf.getvalue().encode("utf-8"))
    for row in frames["bbc"].iter_rows(named=True):
        name = row["id"].replace(":", "-")
        _write_bytes(root / "bbc" / row["label"] / f"{name}.txt", row["text"].encode("utf-8"))
    _write_bytes(root / "web" / "scrape.jsonl", b"\n".join(_web_records(frames, rng)) + b"\n")
    return {name: str(root / name) for name in (*DEMO_SIZES, "web")}


# --- the demo's target and pipeline config (issue 8) ---

DEMO_TARGET_PER_SOURCE = 64
DEMO_CONFIG = """# The `curate demo` run: five sources (one degraded), a target of held-out clean documents.
seed = {seed}

[sources]
wiki_en = {{ path = "corpus/wiki_en", label_field = "label" }}
wiki_fr = {{ path = "corpus/wiki_fr", label_field = "label" }}
sotu = {{ path = "corpus/sotu", label_field = "label" }}
bbc = {{ path = "corpus/bbc", label_field = "label" }}
web = {{ path = "corpus/web", label_field = "label" }}

[target]
path = "corpus/target/*.jsonl"

[budget]
unit = "tokens"
value = 450000  # about half the corpus's tokens; ~5x the largest pilot (at ~200 tokens a document)

[score]
n_buckets = 3

[proxy]
pilot_sizes = [45, 150, 450]  # documents; run in tokens at the pools' mean document size
eval_size = 256
bootstrap = 5

[mixture]
ot_max_points = 800
"""


def build_demo_target(root: Path, *, seed: int = 0, per_source: int = DEMO_TARGET_PER_SOURCE) -> str:
    """Write `root/target/target.jsonl`: `per_source` documents of each clean corpus that are not in its
    training shards (the target is never trained on); returns the file's path."""
    root = Path(root)
    used = _clean_frames(seed)
    full = _clean_frames(seed, dict.fromkeys(DEMO_SIZES))
    rng = np.random.default_rng(seed + 1)
    records: list[dict[str, object]] = []
    for name in DEMO_SIZES:
        rest = full[name].join(used[name].select("id"), on="id", how="anti")
        pick = rest[np.sort(rng.choice(rest.height, size=min(per_source, rest.height), replace=False))]
        records.extend({"id": i, "text": t} for i, t in pick.select("id", "text").iter_rows())
    dest = root / "target" / "target.jsonl"
    _write_bytes(dest, _jsonl(records))
    return str(dest)


def write_demo_config(work: Path, *, seed: int = 0) -> Path:
    """Write `work/curate.toml`, the pipeline config of the demo corpus in `work/corpus`; returns the path."""
    dest = Path(work) / "curate.toml"
    _write_bytes(dest, DEMO_CONFIG.format(seed=seed).encode("utf-8"))
    return dest

"""Hypothesis strategies shared by the property tests: pair graphs and hostile input shards."""

from __future__ import annotations

import json

from hypothesis import strategies as st

DOC_IDS = st.integers(min_value=0, max_value=40).map(lambda i: f"doc-{i:03d}")


@st.composite
def pair_graphs(draw: st.DrawFn, *, max_pairs: int = 60) -> list[tuple[str, str]]:
    """Undirected pair lists over a few dozen doc_ids, with duplicates, both orientations and self-pairs."""
    return draw(st.lists(st.tuples(DOC_IDS, DOC_IDS), min_size=1, max_size=max_pairs))


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def _record(value: object) -> bytes:
    return json.dumps(value).encode()


SHARD_LINES = st.one_of(
    st.binary(max_size=80),  # random bytes, often not UTF-8
    JSON_VALUES.map(_record),  # random JSON of any shape
    st.dictionaries(st.sampled_from(["text", "label", "id"]), JSON_VALUES, max_size=3).map(_record),
    st.text(min_size=1, max_size=60).map(lambda t: _record({"text": t})),  # good rows
    st.integers(min_value=2_000, max_value=100_000).map(_nested),  # deeply nested JSON
    st.integers(min_value=1, max_value=3).map(lambda k: _record({"text": "x" * (k * 400_000)})),  # huge lines
)


@st.composite
def jsonl_shards(draw: st.DrawFn, *, max_files: int = 3) -> list[bytes]:
    """1-`max_files` JSONL shard bodies mixing good rows with hostile ones; a shard may be zero bytes."""
    files = []
    for _ in range(draw(st.integers(min_value=1, max_value=max_files))):
        lines = draw(st.lists(SHARD_LINES, max_size=8))
        files.append(b"\n".join(lines) + (b"\n" if lines and draw(st.booleans()) else b""))
    return files

"""Distributed connected components of a pair graph (fuzzy-dedup pairs) on Ray Data, nothing on the driver.

Label of a document = the smallest doc_id of its component (string order, as `pair_clusters` in
`curate.dedup.table`).

Method: alternating large-star / small-star rounds (Kiveris et al. 2014, "Connected Components in MapReduce
and Beyond", sec. 3), preceded by a local contraction. Edges are kept as (hi, lo) with hi > lo.
- contraction: every batch of `batch_size` pairs is replaced by the stars of its own connected components
  (scipy); connectivity is unchanged and most dedup clusters, found within one LSH bucket, end here.
- large-star: m(u) = min(u, neighbours of u); every neighbour v > u of u links to m(u).
- small-star: m(u) = min(u, neighbours v < u); u and every such v link to m(u).
Both keep every node and every component (ibid., lemmas 1-2); the loop stops when the edges form stars
(no node is both a leaf and a centre, no leaf has two centres), so each leaf's centre is its component's
minimum.
Rounds: at most O(log^2 n) in the worst case (ibid., theorem 3), about log2(n) observed; a chain of n ids in
random order converges within ceil(log2 n) + 2 rounds in the tests. `max_rounds` turns a runaway loop into a
StageError instead of a silent partial result.

Memory: the contraction is a `map_batches` over `batch_size` pairs. A round is two hash shuffles written
with Ray tasks: `_scatter` splits each edge block by hash(node) into P pieces, one reduce task per partition
gets its pieces (every edge of its nodes) and runs a star step with polars. P = ceil(2 * edges / batch_size),
so a reduce holds about `batch_size` directed edges (a node's whole neighbourhood is in one partition: a hub
of degree d needs d rows). The driver holds object refs and one integer per partition, never pairs or ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import ray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from curate._validation import check_interval
from curate.errors import SchemaError, StageError

EDGES = pa.schema([pa.field("hi", pa.string()), pa.field("lo", pa.string())])
LABELS = pa.schema([pa.field("doc_id", pa.string()), pa.field("component", pa.string())])


def _edges(hi: pa.Array | pa.ChunkedArray, lo: pa.Array | pa.ChunkedArray) -> pa.Table:
    return pa.table({"hi": hi, "lo": lo}, schema=EDGES)


def _orient(batch: pa.Table, *, a: str, b: str) -> pa.Table:
    """(hi, lo) = (max, min) of each pair; self-pairs dropped (they travel as `_self_loops`)."""
    x, y = batch.column(a).cast(pa.string()), batch.column(b).cast(pa.string())
    if x.null_count or y.null_count:
        raise StageError(f"connected_components(): pair columns '{a}', '{b}' hold nulls; doc_ids expected.")
    first = pc.less(x, y)
    keep = pc.not_equal(x, y)
    return _edges(pc.if_else(first, y, x), pc.if_else(first, x, y)).filter(keep)


def _self_loops(batch: pa.Table, *, a: str, b: str) -> pa.Table:
    """(doc, doc) edges of self-pairs: a document paired only with itself keeps a label (itself)."""
    x = batch.column(a).cast(pa.string())
    ids = x.filter(pc.equal(x, batch.column(b).cast(pa.string())))
    return _edges(ids, ids)


def _contract(batch: pa.Table) -> pa.Table:
    """The batch's edges replaced by one star per local component, centred on its smallest id."""
    if batch.num_rows == 0:
        return EDGES.empty_table()
    hi, lo = (
        batch.column("hi").to_numpy(zero_copy_only=False),
        batch.column("lo").to_numpy(zero_copy_only=False),
    )
    ids, inverse = np.unique(
        np.concatenate([hi, lo]), return_inverse=True
    )  # sorted: ids[i] < ids[j] for i < j
    n, m = len(ids), len(hi)
    graph = coo_matrix((np.ones(m, np.int8), (inverse[:m], inverse[m:])), shape=(n, n))
    _, label = scipy_components(graph, directed=False)
    centre = np.full(label.max() + 1, n, dtype=np.int64)
    np.minimum.at(centre, label, np.arange(n))
    leaf = centre[label] != np.arange(n)
    return _edges(pa.array(ids[leaf], pa.string()), pa.array(ids[centre[label][leaf]], pa.string()))


def _directed(block: pa.Table) -> pl.DataFrame:
    """Both directions (u, v) of the edges (hi, lo) in `block`."""
    if block.num_rows == 0:  # Ray Data may hand over an empty block without columns
        return pl.DataFrame(schema={"u": pl.String, "v": pl.String})
    e = pl.from_arrow(block.select(["hi", "lo"]).cast(EDGES))
    assert isinstance(e, pl.DataFrame)
    return pl.concat([e.select(u="hi", v="lo"), e.select(u="lo", v="hi")])


@ray.remote
def _scatter(block: pa.Table, parts: int) -> list[pa.Table]:
    """Split the directed edges of `block` into `parts` tables by hash of u (one node, one partition)."""
    d = _directed(block).with_columns(part=(pl.col("u").hash(seed=0) % parts).cast(pl.Int64))
    split = {key[0]: frame.drop("part") for key, frame in d.partition_by("part", as_dict=True).items()}
    empty = pl.DataFrame(schema={"u": pl.String, "v": pl.String})
    out = [split.get(i, empty).to_arrow() for i in range(parts)]
    return out if parts > 1 else out[0]


def _gather(parts: tuple[pa.Table, ...]) -> pl.DataFrame:
    frames = [pl.DataFrame(p) for p in parts]
    return pl.concat(frames).cast({"u": pl.String, "v": pl.String}).unique()


def _as_edges(frame: pl.DataFrame, directed: pl.DataFrame) -> pa.Table:
    """(v, m) rows -> (hi, lo) edges without self-loops, plus the input's own self-loops carried forward."""
    out = frame.select(hi=pl.max_horizontal("v", "m"), lo=pl.min_horizontal("v", "m")).filter(
        pl.col("hi") != pl.col("lo")
    )
    loops = directed.filter(pl.col("u") == pl.col("v")).select(hi="u", lo="v")
    return pl.concat([out, loops]).unique().to_arrow().cast(EDGES)


@ray.remote(num_returns=3)
def _large_star(*parts: pa.Table) -> tuple[pa.Table, pa.Table, int]:
    """Large-star on one partition: its edges, its nodes' labels m(u), and how many nodes are not stars."""
    d = _gather(parts)
    per = d.group_by("u").agg(
        m=pl.min_horizontal(pl.col("u").first(), pl.col("v").min()),
        below=(pl.col("v") < pl.col("u")).sum(),
        above=(pl.col("v") > pl.col("u")).sum(),
    )
    broken = per.filter((pl.col("below") > 1) | ((pl.col("below") > 0) & (pl.col("above") > 0))).height
    linked = d.filter(pl.col("v") > pl.col("u")).join(per.select("u", "m"), on="u")
    labels = per.select(doc_id="u", component="m").to_arrow().cast(LABELS)
    return _as_edges(linked, d), labels, broken


@ray.remote
def _small_star(*parts: pa.Table) -> pa.Table:
    """Small-star on one partition: u and its smaller neighbours link to m(u) = min(u, smaller ones)."""
    d = _gather(parts)
    below = d.filter(pl.col("v") < pl.col("u"))
    per = below.group_by("u").agg(m=pl.col("v").min())
    linked = pl.concat([below.join(per, on="u").select("v", "m"), per.select(v="u", m="m")])
    return _as_edges(linked, d)


def _shuffle(blocks: list[Any], parts: int, reduce: Any) -> list[Any]:
    """Scatter every block by node, then `reduce` each partition's pieces; only refs reach the driver."""
    pieces: list[Any] = [_scatter.options(num_returns=parts).remote(b, parts) for b in blocks]
    columns = [[p] for p in pieces] if parts == 1 else pieces
    return [reduce.remote(*(row[i] for row in columns)) for i in range(parts)]


def connected_components(
    pairs: ray.data.Dataset,
    *,
    columns: tuple[str, str] = ("a", "b"),
    batch_size: int = 65_536,
    max_rounds: int = 64,
) -> ray.data.Dataset:
    """(doc_id, component) for every id in `pairs`; component = the smallest doc_id connected to it.

    Kiveris et al. 2014 large-star / small-star rounds after a per-batch contraction; see the module doc for
    the memory and round bounds. StageError if the edges are not stars after `max_rounds` rounds.
    """
    check_interval("batch_size", batch_size, 2, None, caller="connected_components")
    check_interval("max_rounds", max_rounds, 0, None, caller="connected_components")
    a, b = columns
    names = pairs.columns(fetch_if_missing=True) or []
    missing = [c for c in columns if c not in names]
    if missing:
        raise SchemaError(
            f"connected_components() input lacks pair column(s) {', '.join(map(repr, missing))} "
            f"(found: {', '.join(names) or 'none'})."
        )
    kw: dict[str, Any] = {"batch_format": "pyarrow", "batch_size": batch_size, "fn_kwargs": {"a": a, "b": b}}
    selfs = pairs.map_batches(_self_loops, **kw)  # type: ignore[arg-type]
    edges = pairs.map_batches(_orient, **kw).map_batches(  # type: ignore[arg-type]
        _contract, batch_format="pyarrow", batch_size=batch_size
    )
    contracted = edges.union(selfs).materialize()
    blocks = list(contracted.to_arrow_refs())
    parts = max(1, -(-2 * contracted.count() // batch_size))  # a partition holds ~batch_size directed edges
    for _ in range(max_rounds + 1):
        out = _shuffle(blocks, parts, _large_star)
        if sum(ray.get([broken for _, _, broken in out])) == 0:  # the edges are stars: labels are final
            return ray.data.from_arrow_refs([labels for _, labels, _ in out])
        blocks = _shuffle([edges for edges, _, _ in out], parts, _small_star)
    raise StageError(
        f"connected_components() did not converge in max_rounds={max_rounds} rounds; "
        "raise it (the bound is O(log^2 n) rounds for n documents)."
    )

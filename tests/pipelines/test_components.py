"""Distributed connected components equal scipy's on the same pairs, converge on chains, name bad input."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from curate.errors import SchemaError, StageError
from tests.strategies import pair_graphs

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


def _scipy_labels(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    """Independent answer: scipy components over the ids, labelled by their smallest id (Python str order)."""
    ids = sorted({x for p in pairs for x in p})
    index = {d: i for i, d in enumerate(ids)}
    rows = [index[a] for a, _ in pairs]
    cols = [index[b] for _, b in pairs]
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(len(ids), len(ids)))
    _, label = scipy_components(graph, directed=False)
    smallest: dict[int, str] = {}
    for d, lab in zip(ids, label, strict=True):
        smallest.setdefault(int(lab), d)  # ids are sorted: the first seen is the smallest
    return pl.DataFrame({"doc_id": ids, "component": [smallest[int(lab)] for lab in label]})


def _collect(pairs: list[tuple[str, str]], **options: int) -> pl.DataFrame:
    from pipelines.components import connected_components

    ds = ray.data.from_items([{"a": a, "b": b} for a, b in pairs], override_num_blocks=3)
    tables = ray.get(connected_components(ds, **options).to_arrow_refs())
    return pl.concat([pl.from_arrow(t) for t in tables]).sort("doc_id")  # type: ignore[misc]


@settings(max_examples=2)  # each example is one Ray job of up to 5 graphs
@given(graphs=st.lists(pair_graphs(), min_size=1, max_size=5))
def test_components_equal_scipy_on_random_graphs(
    ray_runtime: None, graphs: list[list[tuple[str, str]]]
) -> None:
    """Random graphs (duplicates, self-pairs, both orientations) as one disjoint union get scipy's labels."""
    pairs = [(f"g{i}-{a}", f"g{i}-{b}") for i, g in enumerate(graphs) for a, b in g]
    got = _collect(pairs, batch_size=32)
    assert_frame_equal(got, _scipy_labels(pairs).sort("doc_id"))


def test_chain_in_random_order_converges_within_log2_n_plus_2_rounds(ray_runtime: None) -> None:
    """A 64-node path in shuffled id order (worst case for label propagation) needs <= log2(64) + 2 rounds."""
    n = 64
    ids = [f"d{i:03d}" for i in np.random.default_rng(0).permutation(n)]
    pairs = [(ids[i], ids[i + 1]) for i in range(n - 1)]
    got = _collect(pairs, batch_size=8, max_rounds=math.ceil(math.log2(n)) + 2)
    assert got["doc_id"].to_list() == sorted(ids)
    assert set(got["component"]) == {"d000"}


def test_too_few_rounds_raise_instead_of_returning_a_partial_answer(ray_runtime: None) -> None:
    """With max_rounds=0 an unfinished chain raises StageError naming max_rounds."""
    pairs = [(f"d{i}", f"d{i + 1}") for i in range(8)]
    with pytest.raises(StageError, match=r"max_rounds=0"):
        _collect(pairs, batch_size=2, max_rounds=0)


def test_missing_pair_columns_name_what_was_found(ray_runtime: None) -> None:
    """A dataset without the pair columns raises SchemaError listing the columns it has."""
    from pipelines.components import connected_components

    with pytest.raises(SchemaError, match=r"lacks pair column\(s\) 'b' \(found: a, c\)"):
        connected_components(ray.data.from_items([{"a": "x", "c": "y"}]))


@pytest.mark.slow
def test_components_equal_scipy_on_a_larger_random_graph(ray_runtime: None) -> None:
    """Slow twin: 20k random pairs over 15k ids, several partitions per round."""
    rng = np.random.default_rng(1)
    ends = rng.integers(0, 15_000, size=(20_000, 2))
    pairs = [(f"d{a:05d}", f"d{b:05d}") for a, b in ends]
    assert_frame_equal(_collect(pairs, batch_size=1024), _scipy_labels(pairs).sort("doc_id"))

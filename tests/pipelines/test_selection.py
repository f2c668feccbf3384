"""Selection helpers: the budget split by weight and the exact realisation of repeats."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curate.errors import InputError
from pipelines.selection import (
    realise,
    realised_share,
    selection_table,
    split_budget,
)


def test_split_budget_largest_remainder_by_hand() -> None:
    """7 split 0.5/0.3/0.2 is 3.5/2.1/1.4 -> floors 3/2/1, the spare unit to the largest remainder (a)."""
    assert split_budget({"a": 0.5, "b": 0.3, "c": 0.2}, 7) == {"a": 4, "b": 2, "c": 1}


@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6).filter(lambda w: sum(w) > 0), st.integers(0, 10**7)
)
def test_split_budget_sums_exactly(w: list[float], total: int) -> None:
    """Shares always sum to the total and each is within one unit of its exact value."""
    weights = {f"s{i}": x for i, x in enumerate(w)}
    shares = split_budget(weights, total)
    assert sum(shares.values()) == total
    for name, x in weights.items():
        assert abs(shares[name] - x / sum(w) * total) < 1


def test_realise_samples_by_hand() -> None:
    """7 samples from 3 docs: two passes each, the one left over goes to the first doc."""
    pool = pl.DataFrame({"doc_id": ["x", "y", "z"], "size": [1, 1, 1]})
    assert realise(pool, 7).to_dict(as_series=False) == {"doc_id": ["x", "y", "z"], "repeats": [3, 2, 2]}
    assert realise(pool, 2)["doc_id"].to_list() == ["x", "y"]  # fewer samples than docs: a prefix


def test_realise_tokens_within_half_a_document() -> None:
    """75 tokens from docs of 10/20/30: one pass (60), then doc x (midpoint 5 < 15) but not y (20 >= 15)."""
    pool = pl.DataFrame({"doc_id": ["x", "y", "z"], "size": [10, 20, 30]})
    out = realise(pool, 75)
    assert out["repeats"].to_list() == [2, 1, 1]
    with pytest.raises(InputError, match="empty pool"):
        realise(pool.clear(), 5)


def test_selection_counts_match_targets() -> None:
    """The selection realises each source's target exactly in samples; weights are budget shares."""
    pools = {
        "a": pl.DataFrame({"doc_id": [f"a{i}" for i in range(5)], "size": [1] * 5}),
        "b": pl.DataFrame({"doc_id": [f"b{i}" for i in range(3)], "size": [1] * 3}),
    }
    targets = split_budget({"a": 0.7, "b": 0.3}, 20)
    sel = selection_table(pools, targets, budget=20)
    sizes = pl.concat(list(pools.values()))
    assert realised_share(sel, sizes) == targets == {"a": 14, "b": 6}
    assert sel.group_by("source").agg(pl.col("weight").sum()).sort("source")["weight"].to_list() == [
        pytest.approx(0.7),
        pytest.approx(0.3),
    ]
    assert sel["doc_id"].to_list() == sorted(sel["doc_id"].to_list())

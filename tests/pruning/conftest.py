"""Fixtures of the pruning tests: real Wikipedia summaries and their MiniLM embeddings, computed once."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from curate.embeddings import load_embedder

N_DOCS = 120


@pytest.fixture(scope="session")
def wiki_small(wiki_docs: pl.DataFrame) -> pl.DataFrame:
    """The first 120 of the session's labelled Wikipedia summaries (11 topics), cut to 200 characters."""
    return wiki_docs.head(N_DOCS).rename({"id": "doc_id"}).with_columns(pl.col("text").str.slice(0, 200))


@pytest.fixture(scope="session")
def wiki_vectors(wiki_small: pl.DataFrame) -> np.ndarray:
    """MiniLM embeddings (float32, 384-d, unit rows) of `wiki_small`, encoded once per session."""
    return load_embedder("minilm", device="cpu").encode(wiki_small["text"].to_list())

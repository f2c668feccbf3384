"""Degraded-text generators and planted-junk cases (issue 14) on the real registry corpora."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate import corpora
from curate.errors import ConfigError, InputError
from curate.junk import (
    boilerplate,
    junk_case,
    keyword_stuffing,
    near_copies,
    off_language,
    plant_junk,
    shuffled_words,
    spam_emails,
    topic_keywords,
)


def test_generators_are_seeded_and_varied() -> None:
    """Same seed -> same texts; another seed -> other texts; random fields make (almost) every text unique."""
    for gen in (spam_emails, boilerplate):
        a, b, c = gen(60, seed=0), gen(60, seed=0), gen(60, seed=1)
        assert a == b and a != c
        assert len(set(a)) >= 58 and all(t.strip() for t in a)


def test_shuffled_words_keep_the_bag_of_words(wiki_docs: pl.DataFrame) -> None:
    """Shuffled texts hold exactly the source's words, in another order for a long text."""
    texts = wiki_docs["text"].to_list()[:20]
    out = shuffled_words(texts, seed=0)
    assert all(Counter(s.split()) == Counter(t.split()) for s, t in zip(out, texts, strict=True))
    assert sum(s != t for s, t in zip(out, texts, strict=True)) >= 19


def test_near_copies_edit_about_the_rate(wiki_docs: pl.DataFrame) -> None:
    """Near copies drop or double about edit_rate of the words; rate 0 returns the words unchanged."""
    texts = wiki_docs["text"].to_list()[:50]
    words = sum(len(t.split()) for t in texts)
    copies = near_copies(texts, edit_rate=0.1, seed=0)
    changed = sum(abs(len(c.split()) - len(t.split())) for c, t in zip(copies, texts, strict=True))
    assert 0.03 * words < changed < 0.15 * words
    assert near_copies(texts, edit_rate=0.0) == [" ".join(t.split()) for t in texts]


def test_keyword_stuffing_uses_the_topic_keywords(wiki_docs: pl.DataFrame) -> None:
    """Stuffed texts are built from the given keywords; topic_keywords drops stop words and short words."""
    keys = topic_keywords(wiki_docs["text"].to_list(), k=20)
    assert len(keys) == 20 and "the" not in keys and all(len(k) >= 4 for k in keys)
    stuffed = keyword_stuffing(10, keys, seed=0)
    assert all(sum(k in s for k in keys) >= 3 for s in stuffed)


def test_off_language_is_french_wikipedia() -> None:
    """off_language draws real French summaries (the fr corpus's texts)."""
    texts = off_language(5, lang="fr", seed=3)
    assert set(texts) <= set(corpora.wiki(lang="fr")["text"].to_list())


def test_junk_case_is_deterministic_and_disjoint() -> None:
    """A case has the asked sizes per kind, a target disjoint from the pool, and is identical for a seed."""
    a = junk_case("sotu", n_on_topic=50, n_junk=24, n_target=20, seed=0)
    b = junk_case("sotu", n_on_topic=50, n_junk=24, n_target=20, seed=0)
    c = junk_case("sotu", n_on_topic=50, n_junk=24, n_target=20, seed=1)
    assert_frame_equal(a.pool, b.pool)
    assert_frame_equal(a.target, b.target)
    assert not a.pool.equals(c.pool)
    counts = dict(Counter(a.pool["kind"].to_list()))
    assert counts == {"on_topic": 50, **dict.fromkeys(("spam", "boilerplate", "shuffled", "stuffing"), 4),
                      "off_language": 4, "other_domain": 4}  # fmt: skip
    assert not set(a.target["text"]) & set(a.pool["text"])
    np.testing.assert_array_equal(a.is_junk, a.pool["kind"].to_numpy() != "on_topic")
    sotu = set(corpora.sotu_paragraphs()["text"].to_list())
    assert set(a.target["text"]) <= sotu


def test_plant_junk_keeps_every_row() -> None:
    """plant_junk's pool holds every on-topic and junk text once, with its kind."""
    case = plant_junk("t", ["a b", "c d"], ["e f"], {"spam": ["x"], "boilerplate": ["y", "z"]}, seed=0)
    assert sorted(case.pool["text"]) == ["a b", "c d", "x", "y", "z"]
    assert dict(zip(case.pool["text"], case.pool["kind"], strict=True))["y"] == "boilerplate"
    assert case.is_junk.sum() == 3


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: junk_case(cast(Any, "imdb")),
            ConfigError,
            r"'name' parameter of junk_case\(\) must be one of",
        ),
        (lambda: junk_case("bbc", kinds=cast(Any, ("spam", "poems"))), ConfigError, r"'kinds' parameter"),
        (lambda: junk_case("bbc", n_target=0), ConfigError, r"'n_target' parameter of junk_case"),
        (lambda: junk_case("wiki_arts", n_on_topic=5000), InputError, r"needs 5\d+ on-topic texts"),
        (lambda: spam_emails(-1), ConfigError, r"'n' parameter of spam_emails"),
        (lambda: near_copies(["a"], edit_rate=2.0), ConfigError, r"'edit_rate' parameter"),
        (lambda: keyword_stuffing(3, []), InputError, r"at least one word"),
        (lambda: off_language(2, lang="de"), ConfigError, r"'lang' parameter"),  # type: ignore[arg-type]
        (lambda: plant_junk("t", ["a"], [], {}), InputError, r"target of case 't'"),
    ],
)
def test_bad_parameters_raise_named_errors(call: object, exc: type[Exception], match: str) -> None:
    """Bad case names, kinds, sizes and rates raise errors naming the parameter."""
    with pytest.raises(exc, match=match):
        call()  # type: ignore[operator]

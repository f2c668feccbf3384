"""The n-gram LM proxy (issue 14): Kneser-Ney against an independent computation, curves, real data."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest
import xxhash
from polars.testing import assert_frame_equal

from curate.errors import ConfigError, InputError
from curate.junk import junk_case, spam_emails
from scaling.ngram import NgramLM, TokenizedTexts, ngram_curve, tokenize, train_ngram_lm
from scaling.proxy import CURVE_SCHEMA

V, BOS, EOS = 7, 0, 1  # a tiny vocabulary: ids 2..6 are words


def tiny(docs: Sequence[Sequence[int]]) -> TokenizedTexts:
    """A TokenizedTexts over the tiny vocabulary, each document followed by EOS."""
    ids = [t for d in docs for t in (*d, EOS)]
    offsets = np.concatenate([[0], np.cumsum([len(d) + 1 for d in docs])])
    return TokenizedTexts(np.array(ids, dtype=np.int64), offsets, V, BOS, EOS, "words")


TRAIN = [[2, 3, 4, 2, 3], [3, 4, 5, 3], [2, 3, 5], [6, 2, 3, 4]]
EVAL = [[2, 3, 6, 4], [5, 5, 2]]


def reference_kn(docs: Sequence[Sequence[int]], order: int, d: float) -> dict[tuple[int, ...], float]:
    """Interpolated Kneser-Ney written from the textbook recursion with dicts (independent of numpy code)."""
    grams: Counter[tuple[int, ...]] = Counter()
    for doc in docs:
        seq = [BOS] * (order - 1) + list(doc) + [EOS]
        for i in range(order - 1, len(seq)):
            grams[tuple(seq[i - order + 1 : i + 1])] += 1
    counts = {order: dict(grams)}
    for n in range(order - 1, 0, -1):  # continuation counts: distinct left extensions
        counts[n] = dict(Counter(g[1:] for g in counts[n + 1]))

    def p(w: int, h: tuple[int, ...]) -> float:
        n = len(h) + 1
        table = counts[n]
        if n == 1:
            total = sum(table.values())
            return (max(table.get((w,), 0) - d, 0) + d * len(table) / V) / total
        follow = {g: c for g, c in table.items() if g[:-1] == h}
        lower = p(w, h[1:])
        if not follow:
            return lower
        total = sum(follow.values())
        return (max(follow.get((*h, w), 0) - d, 0) + d * len(follow) * lower) / total

    return {(*h, w): p(w, h) for h in _contexts(order) for w in range(V)}


def _contexts(order: int) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for _ in range(order - 1):
        out = [(*c, w) for c in out for w in range(V)]
    return out


@pytest.mark.parametrize("order", [1, 2, 3])
def test_probabilities_equal_the_textbook_recursion(order: int) -> None:
    """next_token_probs and token_nll equal a dict-based interpolated Kneser-Ney with the same discount."""
    lm = NgramLM(order=order, discount=0.75).fit(tiny(TRAIN))
    ref = reference_kn(TRAIN, order, 0.75)
    for h in [c for c in _contexts(order)][:60]:
        np.testing.assert_allclose(lm.next_token_probs(list(h)), [ref[(*h, w)] for w in range(V)], rtol=1e-12)
    expected = []
    for doc in EVAL:
        seq = [BOS] * (order - 1) + doc + [EOS]
        expected += [-np.log(ref[tuple(seq[i - order + 1 : i + 1])]) for i in range(order - 1, len(seq))]
    np.testing.assert_allclose(lm.token_nll(tiny(EVAL)), expected, rtol=1e-12)


def test_a_hand_computed_bigram_probability() -> None:
    """P(3 | 2) with D = 0.5 on the tiny corpus, worked out by hand."""
    lm = NgramLM(order=2, discount=0.5).fit(tiny(TRAIN))
    # every 2 in TRAIN is followed by 3: c(2, 3) = c(2, .) = 4, one type after 2.
    # 13 distinct bigrams (BOS/EOS included); distinct left neighbours of 3: {2, BOS, 5}, so N1+(. 3) = 3;
    # 6 unigram types have a left neighbour (2, 3, 4, 5, 6, EOS).
    p1 = (3 - 0.5 + 0.5 * 6 / V) / 13
    p2 = (4 - 0.5 + 0.5 * 1 * p1) / 4
    assert lm.next_token_probs([2])[3] == pytest.approx(p2, rel=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_sum_to_one_on_real_wordpiece_text(order: int, wiki_docs: pl.DataFrame) -> None:
    """For any context (seen or not), P(. | context) sums to 1 over the 30,522 WordPiece ids."""
    corpus = tokenize(wiki_docs["text"].to_list()[:40], tokenizer="wordpiece")
    lm = NgramLM(order=order).fit(corpus)
    for context in ([], [1996], [1996, 2103, 1997], [29000, 29001, 29002]):
        p = lm.next_token_probs(context)
        assert p.shape == (corpus.vocab_size,) and (p > 0).all()
        assert p.sum() == pytest.approx(1.0, abs=1e-9)


def test_estimated_discount_and_repeats() -> None:
    """D = n1 / (n1 + 2 n2) clipped to [0.1, 0.9]; repeats double the top counts, not the continuations."""
    corpus = tiny(TRAIN)
    once = NgramLM(order=2).fit(corpus)
    top = once.levels_[-1].counts
    n1, n2 = int((top == 1).sum()), int((top == 2).sum())
    assert once.levels_[-1].discount == pytest.approx(min(max(n1 / (n1 + 2 * n2), 0.1), 0.9))
    twice = NgramLM(order=2).fit(corpus, [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(twice.levels_[-1].counts, 2 * top)
    np.testing.assert_array_equal(twice.levels_[0].counts, once.levels_[0].counts)
    assert twice.levels_[-1].discount == once.levels_[-1].discount


def test_doc_loss_is_the_mean_token_nll_per_document() -> None:
    """doc_loss averages token_nll within each document (end-of-text included); loss averages all tokens;
    target_loss averages the documents' means (each document counts once)."""
    lm = NgramLM(order=3).fit(tiny(TRAIN))
    ev = tiny(EVAL)
    nll = lm.token_nll(ev)
    np.testing.assert_allclose(lm.doc_loss(ev), [nll[:5].mean(), nll[5:].mean()])
    assert lm.loss(ev) == pytest.approx(nll.mean())
    assert lm.target_loss(ev) == pytest.approx((nll[:5].mean() + nll[5:].mean()) / 2)


def test_a_checkpoint_equals_a_run_on_the_prefix(wiki_docs: pl.DataFrame) -> None:
    """ngram_curve's loss after n documents equals a model fitted on the first n ids of the sequence."""
    corpus = tokenize(wiki_docs["text"].to_list()[:30])
    target = tokenize(wiki_docs["text"].to_list()[30:40])
    seq = np.r_[np.arange(30), np.arange(15)]
    run = ngram_curve(corpus, seq, eval_corpus=target, checkpoints=[10, 30, 45])
    for n, loss in zip(run.curve["samples_seen"], run.curve["eval_loss"], strict=True):
        assert loss == pytest.approx(NgramLM(order=3).fit(corpus, seq[:n]).doc_loss(target).mean(), rel=1e-12)
    np.testing.assert_allclose(run.curve["epoch"].to_numpy(), [10 / 30, 1.0, 1.5])
    assert dict(run.curve.schema) == CURVE_SCHEMA


def test_train_ngram_lm_is_deterministic_and_shaped_like_train_tiny_lm(wiki_docs: pl.DataFrame) -> None:
    """Same seed, same curve; one row per epoch and checkpoint; eval_accuracy is null (no argmax kept)."""
    texts = wiki_docs["text"].to_list()
    a = train_ngram_lm(texts[:20], eval_texts=texts[20:25], epochs=2, checkpoints_per_epoch=2, seed=3)
    b = train_ngram_lm(texts[:20], eval_texts=texts[20:25], epochs=2, checkpoints_per_epoch=2, seed=3)
    assert_frame_equal(a.curve, b.curve)
    assert a.curve["samples_seen"].to_list() == [10, 20, 30, 40]
    assert a.curve["eval_accuracy"].null_count() == 4


def test_target_domain_beats_junk_and_other_domains() -> None:
    """On real text, a trigram LM trained on the target's domain has lower target loss than one on junk."""
    case = junk_case("bbc", n_on_topic=40, n_junk=40, n_target=30, kinds=("spam", "other_domain"))
    kind = case.pool["kind"].to_numpy()
    pool, target = tokenize(case.pool["text"].to_list()), tokenize(case.target["text"].to_list())
    loss = {k: NgramLM(order=3).fit(pool, np.flatnonzero(kind == k)[:20]).loss(target) for k in set(kind)}
    assert loss["on_topic"] + 0.2 < min(loss["spam"], loss["other_domain"])
    more = NgramLM(order=3).fit(pool, np.flatnonzero(kind == "on_topic")).loss(target)
    assert more < loss["on_topic"]  # 40 unique on-topic documents beat 20


def test_words_tokenizer_equals_an_independent_computation() -> None:
    """Words: 2 + xxh64(lowercase word or punctuation mark) mod (2^18 - 2), cut at max_tokens, then EOS."""
    texts = [*spam_emails(3, seed=0), "", "Caf\u00e9, CAFE!"]
    got = tokenize(texts, max_tokens=12)
    expected: list[int] = []
    for t in texts:
        words = re.findall(r"\w+|[^\w\s]", t.lower())[:12]
        expected += [2 + xxhash.xxh64_intdigest(w.encode()) % (2**18 - 2) for w in words] + [got.eos]
    np.testing.assert_array_equal(got.ids, expected)
    assert len(got) == 5 and got.vocab_size == 2**18 and got.bos == 0 and got.eos == 1


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: NgramLM(order=5).fit(tiny(TRAIN)), ConfigError, r"'order' parameter of NgramLM\(\)"),
        (
            lambda: NgramLM(order=4).fit(tokenize(["a b"])),
            ConfigError,
            r"at most 3 for a 262144-id vocabulary",
        ),
        (lambda: NgramLM(discount=1.0).fit(tiny(TRAIN)), ConfigError, r"'discount' parameter"),
        (lambda: NgramLM().fit(tiny(TRAIN), [9]), InputError, r"must index the corpus's 4 documents"),
        (lambda: NgramLM().fit(tiny(TRAIN), []), InputError, r"at least one training document"),
        (lambda: NgramLM().loss(tiny(EVAL)), InputError, r"needs fit\(\)"),
        (
            lambda: NgramLM().fit(tiny(TRAIN)).loss(tokenize(["a b"], tokenizer="wordpiece")),
            InputError,
            r"vocabulary of 7 ids; the texts have 30522",
        ),
        (
            lambda: ngram_curve(tiny(TRAIN), [0, 1], eval_corpus=tiny(EVAL), checkpoints=[3]),
            InputError,
            r"checkpoints must lie in \[1, 2\]",
        ),
        (lambda: tokenize(["a"], tokenizer="bytes"), ConfigError, r"'tokenizer' parameter"),  # type: ignore[arg-type]
        (lambda: tokenize(["a"], max_tokens=0), ConfigError, r"'max_tokens' parameter"),
        (lambda: train_ngram_lm(["a"], eval_texts=["b"], epochs=0), ConfigError, r"'epochs' parameter"),
        (lambda: tiny(TRAIN).select([7]), InputError, r"must index its 4 documents"),
    ],
)
def test_bad_parameters_raise_named_errors(call: object, exc: type[Exception], match: str) -> None:
    """Bad orders, discounts, rows, checkpoints and tokenizers raise errors naming the parameter."""
    with pytest.raises(exc, match=match):
        call()  # type: ignore[operator]

"""A smoothed n-gram LM as the CPU proxy for unlabelled text: interpolated Kneser-Ney, numpy-vectorised.

Interpolated Kneser-Ney (Kneser & Ney 1995; the interpolated form of Chen & Goodman 1999, one discount per
order): the highest order uses raw counts, lower orders continuation counts N1+(. h w), the unigram is
interpolated with the uniform distribution over the vocabulary, so every token has a positive probability
and `sum_w P(w | h) = 1` for every context h. Discounts default to D_n = n1 / (n1 + 2 n2) of each order's
count table, clipped to [0.1, 0.9]; the top order's is estimated on the distinct training documents, so
repeats sharpen the counts without resetting the discount.

Documents are tokenised once (default: lowercase words and punctuation marks, tokenised in polars and
hashed to 2^18 ids; or the packaged MiniLM WordPiece tokenizer) into one flat id array with an end-of-text
token per document; contexts are padded with a begin-of-text token and never cross documents. A training
multiset is a sequence of row ids (a row repeated k times counts k times: k repetition epochs). A count
model has no optimiser state, so the checkpoint of a run after n documents equals a run trained on its
first n documents; curves are computed that way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import numpy as np
import polars as pl
import xxhash

from curate._validation import check_interval, check_option
from curate.embeddings import source_model_path
from curate.errors import ConfigError, InputError

TokenizerKind = Literal["wordpiece", "words"]
TOKENIZERS: tuple[TokenizerKind, ...] = ("wordpiece", "words")
WORDS_VOCAB = 1 << 18  # hashed word vocabulary; ids 0 and 1 are begin/end of text
CURVE_SCHEMA = {
    "samples_seen": pl.Int64,
    "epoch": pl.Float64,
    "eval_loss": pl.Float64,
    "eval_accuracy": pl.Float64,
}
D_MIN, D_MAX = 0.1, 0.9


@dataclass(frozen=True, slots=True)
class TokenizedTexts:
    """Token ids of many documents: `ids` (flat int64, each document ends with `eos`), `offsets` (n + 1)."""

    ids: np.ndarray
    offsets: np.ndarray
    vocab_size: int
    bos: int
    eos: int
    tokenizer: TokenizerKind

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def n_tokens(self) -> int:
        """Number of predicted tokens (every document's tokens and its end-of-text token)."""
        return int(self.ids.shape[0])

    def select(self, rows: Sequence[int] | np.ndarray) -> TokenizedTexts:
        """The documents `rows` (in that order, repeats allowed) as a new TokenizedTexts."""
        idx = np.asarray(rows, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise InputError(f"TokenizedTexts.select rows must index its {len(self)} documents.")
        ids, _, _ = _gather(self, idx)
        offsets = np.concatenate([[0], np.cumsum(np.diff(self.offsets)[idx])])
        return TokenizedTexts(ids, offsets, self.vocab_size, self.bos, self.eos, self.tokenizer)


def word_hashes(texts: Sequence[str], *, pattern: str = r"\w+") -> tuple[np.ndarray, np.ndarray]:
    """(xxh64 of every lowercase token matching `pattern`, in order; tokens per text): polars tokenises,
    xxhash runs once per distinct token."""
    words = pl.Series("text", list(texts), dtype=pl.String).str.to_lowercase().str.extract_all(pattern)
    lens = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = words.explode().drop_nulls()
    types = flat.unique().sort()
    table = np.fromiter(
        (xxhash.xxh64_intdigest(w.encode("utf-8")) for w in types.to_list()),
        dtype=np.uint64,
        count=len(types),
    )
    hashes = flat.replace_strict(types, pl.Series(table, dtype=pl.UInt64), return_dtype=pl.UInt64)
    return hashes.to_numpy(), lens


@cache
def _wordpiece() -> object:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(source_model_path() / "tokenizer.json"))


def tokenize(
    texts: Sequence[str], *, tokenizer: TokenizerKind = "words", max_tokens: int | None = 512
) -> TokenizedTexts:
    """Token ids of `texts` (each cut to its first `max_tokens` tokens, then an end-of-text token)."""
    check_option("tokenizer", tokenizer, TOKENIZERS, caller="tokenize")
    if max_tokens is not None:
        check_interval("max_tokens", max_tokens, 1, None, caller="tokenize")
    if tokenizer == "wordpiece":
        tok = _wordpiece()
        encoded = tok.encode_batch_fast(list(texts), add_special_tokens=False)  # type: ignore[attr-defined]
        docs = [np.asarray(e.ids, dtype=np.int64) for e in encoded]
        if max_tokens is not None:
            docs = [d[:max_tokens] for d in docs]
        lens = np.array([len(d) for d in docs], dtype=np.int64)
        flat = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)
        vocab, bos, eos = int(tok.get_vocab_size()), 101, 102  # type: ignore[attr-defined]  # [CLS], [SEP]
    else:
        hashes, lens = word_hashes(texts, pattern=r"\w+|[^\w\s]")
        vocab, bos, eos = WORDS_VOCAB, 0, 1
        flat = (2 + hashes % np.uint64(vocab - 2)).astype(np.int64)
        if max_tokens is not None:
            keep = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens) < max_tokens
            flat, lens = flat[keep], np.minimum(lens, max_tokens)
    offsets = np.concatenate([[0], np.cumsum(lens + 1)])
    ids = np.full(int(offsets[-1]), eos, dtype=np.int64)
    ids[np.arange(len(flat)) + np.repeat(np.arange(len(lens)), lens)] = flat  # doc d shifts by d EOS tokens
    return TokenizedTexts(ids, offsets, vocab, bos, eos, tokenizer)


def _gather(corpus: TokenizedTexts, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids, position within its document, document index into `rows`) of the chosen documents."""
    if rows is None:
        rows = np.arange(len(corpus))
    starts, lens = corpus.offsets[rows], np.diff(corpus.offsets)[rows]
    total = int(lens.sum())
    doc = np.repeat(np.arange(len(rows)), lens)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    pos = np.arange(total) - first
    return corpus.ids[np.repeat(starts, lens) + pos], pos, doc


def _keys(ids: np.ndarray, pos: np.ndarray, order: int, vocab: int, bos: int) -> list[np.ndarray]:
    """Per order n = 1..order, the int64 key of (w_{i-n+1}, ..., w_i) at every position (BOS-padded)."""
    keys = [ids.copy()]
    for k in range(1, order):
        prev = np.where(pos >= k, np.roll(ids, k), bos)
        keys.append(prev * vocab**k + keys[-1])
    return keys


def _discount(counts: np.ndarray) -> float:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    d = n1 / (n1 + 2 * n2) if n1 + n2 else D_MAX
    return float(min(max(d, D_MIN), D_MAX))


@dataclass(frozen=True, slots=True)
class _Level:
    """One order's sorted n-gram keys with their (continuation) counts, and per-context totals."""

    keys: np.ndarray
    counts: np.ndarray
    ctx_keys: np.ndarray
    ctx_total: np.ndarray
    ctx_types: np.ndarray
    discount: float


def _level(keys: np.ndarray, counts: np.ndarray, vocab: int, discount: float | None) -> _Level:
    ctx, first = np.unique(keys // vocab, return_index=True)
    total = np.add.reduceat(counts, first) if len(keys) else np.zeros(0, dtype=np.int64)
    types = np.diff(np.append(first, len(keys)))
    d = _discount(counts) if discount is None else discount
    return _Level(keys, counts, ctx, total, types, d)


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[k] for each query key found in `sorted_keys`, else 0."""
    if len(sorted_keys) == 0:
        return np.zeros(len(query), dtype=values.dtype)
    at = np.searchsorted(sorted_keys, query).clip(0, len(sorted_keys) - 1)
    return np.where(sorted_keys[at] == query, values[at], 0)


@dataclass(kw_only=True)
class NgramLM:
    """Interpolated Kneser-Ney LM of `order` (1-4) over a tokenised corpus; `discount` None = estimated.

    Fitted: `levels_` (one per order, unigram first), `vocab_size_`, `n_train_tokens_`.
    """

    order: int = 3
    discount: float | None = None
    levels_: list[_Level] = field(default_factory=list, init=False, repr=False)

    def fit(self, corpus: TokenizedTexts, rows: Sequence[int] | np.ndarray | None = None) -> NgramLM:
        """Count the documents `rows` of `corpus` (repeats count again; None = every document once)."""
        check_interval("order", self.order, 1, 4, caller="NgramLM")
        if self.discount is not None:
            check_interval("discount", self.discount, 0, 1, caller="NgramLM", closed="neither")
        idx = None if rows is None else np.asarray(rows, dtype=np.int64)
        if idx is not None and len(idx) and (idx.min() < 0 or idx.max() >= len(corpus)):
            raise InputError(f"NgramLM.fit rows must index the corpus's {len(corpus)} documents.")
        if (idx is not None and len(idx) == 0) or len(corpus) == 0:
            raise InputError("NgramLM.fit needs at least one training document; got none.")
        v = corpus.vocab_size
        if v**self.order >= 2**63:
            most = max(n for n in range(1, 5) if v**n < 2**63)
            raise ConfigError(
                f"The 'order' parameter of NgramLM() must be at most {most} for a {v}-id vocabulary "
                f"(n-gram keys are int64). Got {self.order} instead."
            )
        ids, pos, _ = _gather(corpus, idx)
        keys = _keys(ids, pos, self.order, v, corpus.bos)
        top, top_counts = np.unique(keys[-1], return_counts=True)
        d_top = self.discount
        if d_top is None and idx is not None and len(np.unique(idx)) < len(idx):
            # repeats scale the raw counts: estimate the top discount on the distinct documents (continuation
            # counts of the lower orders do not change with repeats)
            u_ids, u_pos, _ = _gather(corpus, np.unique(idx))
            d_top = _discount(
                np.unique(_keys(u_ids, u_pos, self.order, v, corpus.bos)[-1], return_counts=True)[1]
            )
        levels = [_level(top, top_counts.astype(np.int64), v, d_top)]
        for n in range(self.order - 1, 0, -1):  # continuation counts: distinct left extensions
            suffix, cont = np.unique(levels[0].keys % v**n, return_counts=True)
            levels.insert(0, _level(suffix, cont.astype(np.int64), v, self.discount))
        self.levels_ = levels
        self.vocab_size_ = v
        self.bos_ = corpus.bos
        self.n_train_tokens_ = len(ids)
        return self

    def _check_fitted(self, corpus: TokenizedTexts) -> None:
        if not self.levels_:
            raise InputError("NgramLM needs fit() before it scores anything.")
        if corpus.vocab_size != self.vocab_size_:
            raise InputError(
                f"NgramLM was fitted on a vocabulary of {self.vocab_size_} ids; the texts have "
                f"{corpus.vocab_size} (another tokenizer)."
            )

    def _prob(self, keys: list[np.ndarray]) -> np.ndarray:
        """P(w_i | context) at every position, from the unigram level up (interpolated KN)."""
        v = self.vocab_size_
        p = np.full(len(keys[0]), 1.0 / v)
        for n, lev in enumerate(self.levels_, start=1):
            c = _lookup(lev.keys, lev.counts, keys[n - 1]).astype(np.float64)
            if n == 1:
                total, types = float(lev.counts.sum()), float(len(lev.keys))
                p = (np.maximum(c - lev.discount, 0.0) + lev.discount * types * p) / total
                continue
            ctx = keys[n - 1] // v
            total_h = _lookup(lev.ctx_keys, lev.ctx_total, ctx).astype(np.float64)
            types_h = _lookup(lev.ctx_keys, lev.ctx_types, ctx).astype(np.float64)
            seen = total_h > 0
            mixed = (np.maximum(c - lev.discount, 0.0) + lev.discount * types_h * p) / np.where(
                seen, total_h, 1
            )
            p = np.where(seen, mixed, p)
        return p

    def token_nll(self, corpus: TokenizedTexts) -> np.ndarray:
        """Negative log-likelihood (nats) of every token of `corpus`, end-of-text tokens included."""
        self._check_fitted(corpus)
        ids, pos, _ = _gather(corpus, None)
        return -np.log(self._prob(_keys(ids, pos, len(self.levels_), self.vocab_size_, corpus.bos)))

    def loss(self, corpus: TokenizedTexts) -> float:
        """Mean NLL per token (nats) over every token of `corpus`."""
        return float(self.token_nll(corpus).mean())

    def target_loss(self, corpus: TokenizedTexts) -> float:
        """The proxy's target metric: the mean over documents of their NLL per token (nats), so each target
        document counts once whatever its length (a token mean lets a target's long documents speak for it).
        """
        return float(self.doc_loss(corpus).mean())

    def doc_loss(self, corpus: TokenizedTexts) -> np.ndarray:
        """Mean NLL per token (nats) of each document of `corpus` (its end-of-text token included)."""
        nll = self.token_nll(corpus)
        return np.add.reduceat(nll, corpus.offsets[:-1]) / np.diff(corpus.offsets)

    def next_token_probs(self, context: Sequence[int]) -> np.ndarray:
        """P(w | context) for every id w of the vocabulary (the last order - 1 ids of `context` count)."""
        if not self.levels_:
            raise InputError("NgramLM needs fit() before it scores anything.")
        v, k = self.vocab_size_, len(self.levels_) - 1
        ctx = [self.bos_] * max(0, k - len(context)) + list(context)[-k:] if k else []
        ids = np.arange(v, dtype=np.int64)
        keys = [ids]
        for j in range(1, k + 1):
            keys.append(ctx[-j] * v**j + keys[-1])
        return self._prob(keys)


@dataclass(frozen=True, slots=True)
class NgramRun:
    """A fitted n-gram LM and its checkpoint curve (samples_seen, epoch, eval_loss; eval_accuracy null)."""

    curve: pl.DataFrame
    model: NgramLM = field(repr=False, compare=False)


def ngram_curve(
    corpus: TokenizedTexts,
    sequence: Sequence[int] | np.ndarray,
    *,
    eval_corpus: TokenizedTexts,
    checkpoints: Sequence[int],
    n_unique: int | None = None,
    order: int = 3,
) -> NgramRun:
    """Eval loss (`NgramLM.target_loss`) after the first n documents of `sequence` (row ids in training
    order) for each n in `checkpoints`; `epoch` = n / n_unique (default: distinct rows of `sequence`)."""
    seq = np.asarray(sequence, dtype=np.int64)
    marks = sorted({int(c) for c in checkpoints})
    if not marks or marks[0] < 1 or marks[-1] > len(seq):
        raise InputError(f"ngram_curve checkpoints must lie in [1, {len(seq)}] (the sequence); got {marks}.")
    per_epoch = n_unique or len(np.unique(seq))
    rows: list[dict[str, float | int | None]] = []
    model = NgramLM(order=order)
    for n in marks:
        model = NgramLM(order=order).fit(corpus, seq[:n])
        rows.append(
            {
                "samples_seen": n,
                "epoch": n / per_epoch,
                "eval_loss": model.target_loss(eval_corpus),
                "eval_accuracy": None,
            }
        )
    return NgramRun(curve=pl.DataFrame(rows, schema=CURVE_SCHEMA), model=model)


def train_ngram_lm(
    texts: Sequence[str] | TokenizedTexts,
    *,
    eval_texts: Sequence[str] | TokenizedTexts,
    epochs: int = 1,
    checkpoints_per_epoch: int = 1,
    order: int = 3,
    tokenizer: TokenizerKind = "words",
    seed: int = 0,
) -> NgramRun:
    """`train_tiny_lm`'s twin: `epochs` seeded passes over `texts`, eval loss (nats/token) at checkpoints."""
    check_interval("epochs", epochs, 1, None, caller="train_ngram_lm")
    check_interval("checkpoints_per_epoch", checkpoints_per_epoch, 1, None, caller="train_ngram_lm")
    train = texts if isinstance(texts, TokenizedTexts) else tokenize(texts, tokenizer=tokenizer)
    held = eval_texts if isinstance(eval_texts, TokenizedTexts) else tokenize(eval_texts, tokenizer=tokenizer)
    n = len(train)
    if n == 0 or len(held) == 0:
        raise InputError("train_ngram_lm needs at least one training text and one eval text.")
    rng = np.random.default_rng(seed)
    seq = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    marks = [e * n + math.ceil(n * (c + 1) / checkpoints_per_epoch) for e in range(epochs)
             for c in range(checkpoints_per_epoch)]  # fmt: skip
    return ngram_curve(train, seq, eval_corpus=held, checkpoints=marks, n_unique=n, order=order)

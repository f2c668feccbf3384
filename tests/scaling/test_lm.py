"""The byte LM proxy: encoding, per-document losses, the warmup-stable-decay schedule, repetition, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curate.errors import InputError
from scaling import lm
from scaling.lm import BOS, PAD, ByteLM, LMShape, Schedule, doc_losses, encode, lm_curve

TINY = LMShape(d_model=16, n_layers=1, n_heads=4, max_len=16)


def test_encode_cuts_documents_into_windows_of_their_bytes() -> None:
    """Each window is BOS then the next max_len UTF-8 bytes, padded; at most max_windows a document."""
    shape = LMShape(d_model=8, n_layers=1, max_len=4, max_windows=2)
    corpus = encode(["abcdefghij", "é", ""], shape)
    assert corpus.offsets.tolist() == [0, 2, 3, 4]  # 10 bytes -> 2 windows (capped), 2 bytes -> 1, empty -> 1
    assert corpus.n_bytes.tolist() == [8, 2, 0]
    assert corpus.tokens[0].tolist() == [BOS, *b"abcd"]
    assert corpus.tokens[1].tolist() == [BOS, *b"efgh"]
    assert corpus.tokens[2].tolist() == [BOS, *"é".encode(), PAD, PAD]
    assert corpus.tokens[3].tolist() == [BOS, PAD, PAD, PAD, PAD]


def test_windows_of_rows_follow_the_rows_repeats_included() -> None:
    shape = LMShape(d_model=8, n_layers=1, max_len=2, max_windows=3)
    corpus = encode(["aaaaaa", "b", "cccc"], shape)  # windows 0-2, 3, 4-5
    expected = [w for r in [2, 0, 2, 1] for w in range(corpus.offsets[r], corpus.offsets[r + 1])]
    assert corpus.windows(np.array([2, 0, 2, 1])).tolist() == expected


def test_n_params_counts_the_model() -> None:
    for shape in (TINY, LMShape(), LMShape(d_model=128, n_layers=4, max_len=256)):
        assert shape.n_params() == sum(p.numel() for p in ByteLM(shape).parameters())


def test_doc_losses_are_the_mean_byte_nll_of_each_document() -> None:
    """Against log-softmax of the model's logits, byte by byte, over all of a document's windows."""
    shape = LMShape(d_model=16, n_layers=1, max_len=4, max_windows=3)
    texts = ["hello world", "ab", "xyz!"]
    corpus = encode(texts, shape)
    model = ByteLM(shape)
    got = doc_losses(model, corpus)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.from_numpy(corpus.tokens[:, :-1].astype(np.int64))), -1).double()
    for i in range(len(texts)):
        total, count = 0.0, 0
        for w in range(corpus.offsets[i], corpus.offsets[i + 1]):
            for t in range(shape.max_len):
                byte = int(corpus.tokens[w, t + 1])
                if byte != PAD:
                    total -= float(logp[w, t, byte])
                    count += 1
        assert got[i] == pytest.approx(total / count, rel=1e-6)


def test_each_checkpoint_ends_its_own_decay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warmup to the peak, constant, then for each checkpoint a branch decaying linearly to 0 at its end."""
    calls: list[float] = []
    real = lm._step

    def record(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: torch.Tensor, rate: float) -> None:
        calls.append(rate)
        real(model, opt, batch, rate)

    monkeypatch.setattr(lm, "_step", record)
    corpus = encode([f"document {i}" for i in range(40)], TINY)
    sched = Schedule(lr=1e-2, batch_size=2, warmup=3, cooldown=0.25)
    lm_curve(corpus, np.arange(40), eval_corpus=corpus, checkpoints=[20, 40], shape=TINY, schedule=sched)
    # checkpoint 20: 10 steps, the branch from step 7 (floor(0.75 * 10)); checkpoint 40: 20 steps, from 15
    warm = [1e-2 * min(1.0, (s + 1) / 3) for s in range(20)]
    trunk_a = warm[:7]
    branch_a = [warm[s] * (10 - s) / 3 for s in range(7, 10)]
    trunk_b = warm[7:15]
    branch_b = [warm[s] * (20 - s) / 5 for s in range(15, 20)]
    assert calls == pytest.approx(trunk_a + branch_a + trunk_b + branch_b)


def test_a_decay_branch_trains_the_branch() -> None:
    """With the whole run as its decay (cooldown 1) every step is a branch step: the model must learn (an
    optimiser copied apart from its model would step copies of the weights and leave the branch untrained)."""
    texts = ["abab abab abab abab abab abab"] * 32
    shape = LMShape(d_model=16, n_layers=1, max_len=32)
    corpus = encode(texts, shape)
    torch.manual_seed(0)
    untrained = float(np.mean(doc_losses(ByteLM(shape), corpus)))
    curve = lm_curve(corpus, np.arange(32), eval_corpus=corpus, checkpoints=[32], shape=shape,
                     schedule=Schedule(lr=1e-2, batch_size=2, cooldown=1.0), seed=0)  # fmt: skip
    assert curve["eval_loss"][0] < untrained - 1.0  # learnt; an untrained branch stays near ln 258


def test_curves_pass_one_epoch_and_repetition_is_trained_on() -> None:
    """Four passes over a small corpus lower the loss on those documents below one pass (an n-gram model's
    counts would barely move); the epoch column counts passes."""
    texts = [f"the cat number {i} sat on the mat and looked at the dog." for i in range(24)]
    shape = LMShape(d_model=32, n_layers=1, max_len=64)
    corpus = encode(texts, shape)
    seq = np.concatenate([np.random.default_rng(k).permutation(24) for k in range(4)])
    curve = lm_curve(corpus, seq, eval_corpus=corpus, checkpoints=[24, 48, 96], shape=shape,
                     schedule=Schedule(lr=1e-2, batch_size=4), seed=0)  # fmt: skip
    assert curve["epoch"].to_list() == [1.0, 2.0, 4.0]
    loss = curve["eval_loss"].to_list()
    assert loss[2] < loss[1] < loss[0] < math.log(258)


def test_runs_are_seeded() -> None:
    corpus = encode([f"text {i} " * 3 for i in range(16)], TINY)
    kwargs = {"eval_corpus": corpus, "checkpoints": [8, 16], "shape": TINY, "schedule": Schedule()}
    a = lm_curve(corpus, np.arange(16), seed=1, **kwargs)  # type: ignore[arg-type]
    b = lm_curve(corpus, np.arange(16), seed=1, **kwargs)  # type: ignore[arg-type]
    c = lm_curve(corpus, np.arange(16), seed=2, **kwargs)  # type: ignore[arg-type]
    assert a.equals(b)
    assert not a.equals(c)


def test_bad_arguments_are_errors() -> None:
    corpus = encode(["a", "b"], TINY)
    with pytest.raises(InputError, match="checkpoints"):
        lm_curve(corpus, [0, 1], eval_corpus=corpus, checkpoints=[3], shape=TINY, schedule=Schedule())
    with pytest.raises(InputError, match="index"):
        lm_curve(corpus, [0, 5], eval_corpus=corpus, checkpoints=[2], shape=TINY, schedule=Schedule())
    with pytest.raises(InputError, match="n_heads"):
        LMShape(d_model=10, n_heads=4)

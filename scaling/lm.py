"""A small causal byte-level transformer LM: the neural proxy for unlabelled text, and the reference model of
the proxy-transfer bench.

Tokens are UTF-8 bytes (256 ids, then begin-of-window and padding): no vocabulary to fit, so every run of a
calibration sees the same tokenizer whatever its data. A document is cut into windows of `max_len` bytes
(at most `max_windows` of them: the proxy reads each document's first window, the reference every byte),
each window starting with the begin-of-window id. Pre-norm blocks, causal attention through
`scaled_dot_product_attention`, learned positions, no dropout.

Training is warmup-stable-decay (Hägele et al. 2024): a short warmup, a constant learning rate, and for each
checkpoint n a branch from the constant trajectory that decays linearly to 0 over the last `cooldown` share
of its steps and ends exactly at n, so every point of a curve is a run whose schedule ends at its own
budget, at the cost of one trajectory plus the cooldowns. A repeated document is trained on again, so the
curves show repetition (QQT's decay with passes). Runs use one torch thread (seeded, deterministic, the same
bytes in every executor) on the CPU, or the GPU when one is present; the metric is the mean over evaluation
documents of their NLL per byte (nats).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.nn import functional as F

from curate._validation import check_interval
from curate.errors import InputError
from scaling.ngram import CURVE_SCHEMA
from scaling.proxy import torch_device

BOS, PAD, VOCAB = 256, 257, 258


@dataclass(frozen=True)
class LMShape:
    """The transformer's size: width, depth, heads, window length (bytes) and windows read per document."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 128
    max_windows: int = 1

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "max_len", "max_windows"):
            check_interval(name, getattr(self, name), 1, None, caller="LMShape")
        if self.d_model % self.n_heads:
            raise InputError(f"LMShape d_model {self.d_model} is not a multiple of n_heads {self.n_heads}.")

    def n_params(self) -> int:
        """Parameters of the model (embeddings, blocks, head)."""
        d = self.d_model
        block = 12 * d * d + 13 * d  # qkv + proj + 4x MLP, biases and two LayerNorms
        return VOCAB * d + self.max_len * d + self.n_layers * block + 2 * d + d * VOCAB + VOCAB


@dataclass(frozen=True)
class ByteCorpus:
    """Documents as byte windows: `tokens` (windows, max_len + 1) int16 (BOS, bytes, PAD), `offsets` (n + 1):
    document i owns windows offsets[i]:offsets[i + 1]; `n_bytes` (n): the bytes each document contributes."""

    tokens: np.ndarray
    offsets: np.ndarray
    n_bytes: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def windows(self, rows: np.ndarray) -> np.ndarray:
        """Window indices of the documents `rows`, in order (repeats repeat their windows)."""
        counts = np.diff(self.offsets)[rows]
        starts = np.repeat(self.offsets[rows] - np.cumsum(counts) + counts, counts)
        return starts + np.arange(int(counts.sum()))


def encode(texts: Sequence[str], shape: LMShape) -> ByteCorpus:
    """Each text's first `max_windows` windows of `max_len` UTF-8 bytes (an empty text: one empty window)."""
    chunks: list[bytes] = []
    offsets = [0]
    n_bytes = []
    for text in texts:
        raw = text.encode("utf-8")[: shape.max_len * shape.max_windows]
        parts = [raw[s : s + shape.max_len] for s in range(0, len(raw), shape.max_len)] or [b""]
        chunks += parts
        offsets.append(offsets[-1] + len(parts))
        n_bytes.append(len(raw))
    tokens = np.full((len(chunks), shape.max_len + 1), PAD, dtype=np.int16)
    tokens[:, 0] = BOS
    for i, part in enumerate(chunks):
        tokens[i, 1 : len(part) + 1] = np.frombuffer(part, dtype=np.uint8)
    return ByteCorpus(tokens, np.asarray(offsets, dtype=np.int64), np.asarray(n_bytes, dtype=np.int64))


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True)  # fmt: skip
        h = h + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return h + self.mlp(self.ln2(h))


class ByteLM(nn.Module):
    """A pre-norm causal transformer over bytes."""

    def __init__(self, shape: LMShape) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, shape.d_model)
        self.pos = nn.Embedding(shape.max_len, shape.d_model)
        self.blocks = nn.ModuleList(_Block(shape.d_model, shape.n_heads) for _ in range(shape.n_layers))
        self.norm = nn.LayerNorm(shape.d_model)
        self.head = nn.Linear(shape.d_model, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


def _init(model: nn.Module, gen: torch.Generator) -> None:
    """Weights N(0, 0.02) from `gen` (output projections scaled by depth), biases 0, LayerNorms identity."""
    depth = sum(1 for m in model.modules() if isinstance(m, _Block))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if ".ln" in name or name.startswith("norm") else 0.0)
            else:
                std = 0.02 / math.sqrt(2 * depth) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def _nll(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL (nats) of each window's bytes and the number of bytes it holds."""
    target = batch[:, 1:]
    logits = model(batch[:, :-1])
    nll = F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=PAD, reduction="none")
    return nll.view_as(target).sum(dim=1), (target != PAD).sum(dim=1)


@contextmanager
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def doc_losses(model: nn.Module, corpus: ByteCorpus, *, batch_size: int = 256) -> np.ndarray:
    """Each document's NLL per byte (nats) over its windows; NaN for an empty document."""
    device = next(model.parameters()).device
    tokens = torch.from_numpy(corpus.tokens.astype(np.int64)).to(device)
    sums, counts = np.zeros(len(tokens)), np.zeros(len(tokens))
    model.eval()
    with torch.no_grad():
        for s in range(0, len(tokens), batch_size):
            nll, n = _nll(model, tokens[s : s + batch_size])
            sums[s : s + batch_size] = nll.double().cpu().numpy()
            counts[s : s + batch_size] = n.cpu().numpy()
    doc_sum = np.add.reduceat(sums, corpus.offsets[:-1])
    doc_n = np.add.reduceat(counts, corpus.offsets[:-1])
    return np.where(doc_n > 0, doc_sum / np.maximum(doc_n, 1), np.nan)


@dataclass(frozen=True)
class Schedule:
    """Warmup-stable-decay: peak `lr` after `warmup` steps, constant, then each branch decays linearly to 0
    over its last `cooldown` share of steps; AdamW with `weight_decay`, `batch_size` windows a step."""

    lr: float = 3e-3
    batch_size: int = 4
    warmup: int = 10
    cooldown: float = 0.2
    weight_decay: float = 0.1

    def __post_init__(self) -> None:
        check_interval("lr", self.lr, 0, None, caller="Schedule", closed="neither")
        check_interval("batch_size", self.batch_size, 1, None, caller="Schedule")
        check_interval("warmup", self.warmup, 0, None, caller="Schedule")
        check_interval("cooldown", self.cooldown, 0, 1, caller="Schedule", closed="right")
        check_interval("weight_decay", self.weight_decay, 0, None, caller="Schedule")


def _step(model: nn.Module, opt: torch.optim.Optimizer, batch: torch.Tensor, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
    model.train()
    opt.zero_grad(set_to_none=True)
    nll, n = _nll(model, batch)
    (nll.sum() / n.sum().clamp(min=1)).backward()
    opt.step()


def lm_curve(
    corpus: ByteCorpus,
    sequence: Sequence[int] | np.ndarray,
    *,
    eval_corpus: ByteCorpus,
    checkpoints: Sequence[int],
    shape: LMShape,
    schedule: Schedule,
    n_unique: int | None = None,
    seed: int = 0,
    device: str | None = None,
) -> pl.DataFrame:
    """Eval loss (mean over `eval_corpus` documents of NLL per byte) of a run trained on the first n documents
    of `sequence` (row ids in training order, repeats allowed), for each n in `checkpoints`, each run's
    schedule ending at its n (warmup-stable-decay branches; `epoch` = n / n_unique); on `device` (default: the
    GPU when one is present, else the CPU)."""
    seq = np.asarray(sequence, dtype=np.int64)
    marks = sorted({int(c) for c in checkpoints})
    if not marks or marks[0] < 1 or marks[-1] > len(seq):
        raise InputError(f"lm_curve checkpoints must lie in [1, {len(seq)}] (the sequence); got {marks}.")
    if len(seq) and (seq.min() < 0 or seq.max() >= len(corpus)):
        raise InputError(f"lm_curve sequence must index the corpus's {len(corpus)} documents.")
    per_epoch = n_unique or len(np.unique(seq))
    rng = np.random.default_rng(seed)
    # windows in training order; shuffled within each checkpoint's new documents (prefixes stay nested)
    bounds = [0, *(int(np.diff(corpus.offsets)[seq[:n]].sum()) for n in marks)]
    order = corpus.windows(seq[: marks[-1]])
    for a, b in itertools.pairwise(bounds):
        order[a:b] = order[a:b][rng.permutation(b - a)]
    dev = torch_device(device)
    tokens = torch.from_numpy(corpus.tokens.astype(np.int64)).to(dev)
    bs = schedule.batch_size
    ends = [math.ceil(b / bs) for b in bounds[1:]]
    starts = [min(e, math.floor((1 - schedule.cooldown) * e)) for e in ends]
    rows = []
    with _one_thread():
        gen = torch.Generator().manual_seed(seed)
        model = ByteLM(shape)
        _init(model, gen)
        model.to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)

        def batch(step: int) -> torch.Tensor:
            return tokens[torch.from_numpy(order[step * bs : (step + 1) * bs]).to(dev)]

        done = 0
        for n, start, end in zip(marks, starts, ends, strict=True):
            for step in range(done, start):  # the shared constant trajectory
                _step(model, opt, batch(step), schedule.lr * min(1.0, (step + 1) / max(1, schedule.warmup)))
            done = max(done, start)
            branch, branch_opt = copy.deepcopy((model, opt))  # one copy: the optimiser steps the branch
            for step in range(start, end):
                warm = min(1.0, (step + 1) / max(1, schedule.warmup))
                _step(branch, branch_opt, batch(step), schedule.lr * warm * (end - step) / (end - start))
            loss = float(np.nanmean(doc_losses(branch, eval_corpus)))
            rows.append({"samples_seen": n, "epoch": n / per_epoch, "eval_loss": loss, "eval_accuracy": None})
    return pl.DataFrame(rows, schema=CURVE_SCHEMA)

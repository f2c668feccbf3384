"""The labelled proxy: a small, deterministic torch MLP probe on frozen embeddings that logs a checkpoint
curve (samples seen -> eval loss and accuracy). The unlabelled proxy is the n-gram LM of `scaling.ngram`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch
from torch import nn

from curate._validation import check_embeddings, check_interval
from curate.errors import InputError

CURVE_SCHEMA = {
    "samples_seen": pl.Int64,
    "epoch": pl.Float64,
    "eval_loss": pl.Float64,
    "eval_accuracy": pl.Float64,
}


def torch_device(device: str | None) -> torch.device:
    """`device`, or the GPU when one is present, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _seeded_init(model: nn.Module, gen: torch.Generator) -> None:
    """Re-initialise weights from `gen` (uniform +-1/sqrt(fan_in)), LayerNorms as identity; no global RNG."""
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, nn.LayerNorm):
                    p.fill_(1.0 if name == "weight" else 0.0)
                else:
                    bound = 1.0 / math.sqrt(p.shape[1]) if p.dim() > 1 else 0.02
                    p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)


def _train_curve(
    model: nn.Module,
    *,
    n: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    evaluate: Callable[[], tuple[float, float | None]],
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    checkpoints_per_epoch: int,
    gen: torch.Generator,
) -> pl.DataFrame:
    """AdamW over shuffled mini-batches, the learning rate decaying linearly to 0 at the run's last step (a
    run's budget is its own); evaluate at `checkpoints_per_epoch` even points of every epoch."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n_batches = math.ceil(n / batch_size)
    total = n_batches * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1.0 - step / total))
    marks = {math.ceil(n_batches * (c + 1) / checkpoints_per_epoch) for c in range(checkpoints_per_epoch)}
    rows: list[dict[str, float | int | None]] = []
    seen = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            model.train()
            opt.zero_grad(set_to_none=True)
            batch_loss(idx).backward()
            opt.step()
            schedule.step()
            seen += len(idx)
            if b + 1 in marks:
                model.eval()
                with torch.no_grad():
                    loss, acc = evaluate()
                rows.append(
                    {
                        "samples_seen": seen,
                        "epoch": epoch + min(1.0, (b + 1) * batch_size / n),
                        "eval_loss": loss,
                        "eval_accuracy": acc,
                    }
                )
    return pl.DataFrame(rows, schema=CURVE_SCHEMA)


def _check_loop(
    epochs: int, batch_size: int, lr: float, weight_decay: float, checkpoints_per_epoch: int, caller: str
) -> None:
    check_interval("epochs", epochs, 1, None, caller=caller)
    check_interval("batch_size", batch_size, 1, None, caller=caller)
    check_interval("lr", lr, 0, None, caller=caller, closed="neither")
    check_interval("weight_decay", weight_decay, 0, None, caller=caller)
    check_interval("checkpoints_per_epoch", checkpoints_per_epoch, 1, None, caller=caller)


# --- MLP probe on frozen embeddings ---


@dataclass(frozen=True, slots=True)
class ProbeRun:
    """A trained MLP probe and its checkpoint curve (samples_seen, epoch, eval_loss, eval_accuracy)."""

    curve: pl.DataFrame
    n_classes: int
    model: nn.Module = field(repr=False, compare=False)
    device: torch.device = field(repr=False, compare=False)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Softmax class probabilities, shape (n, n_classes), float64."""
        arr = check_embeddings(x, what="predict_proba input x")
        self.model.eval()
        with torch.no_grad():
            logits = self.model(torch.from_numpy(arr).to(self.device))
        return torch.softmax(logits.double(), dim=1).cpu().numpy()


def _labels(y: np.ndarray, n_rows: int, *, what: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise InputError(f"{what} must be a 1-D array of {n_rows} class ids; got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
        raise InputError(f"{what} must hold non-negative integer class ids; got dtype {arr.dtype}.")
    return arr.astype(np.int64)


def train_probe(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    n_classes: int | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    hidden: int = 128,
    checkpoints_per_epoch: int = 1,
    seed: int = 0,
    device: str | None = None,
) -> ProbeRun:
    """Train a one-hidden-layer MLP on frozen embeddings (AdamW, learning rate decaying to 0 at the end of
    the run); eval cross-entropy and accuracy at checkpoints."""
    _check_loop(epochs, batch_size, lr, weight_decay, checkpoints_per_epoch, "train_probe")
    check_interval("hidden", hidden, 1, None, caller="train_probe")
    xs = check_embeddings(x, what="train_probe x")
    xe = check_embeddings(x_eval, what="train_probe x_eval", dim=xs.shape[1])
    ys = _labels(y, xs.shape[0], what="train_probe y")
    ye = _labels(y_eval, xe.shape[0], what="train_probe y_eval")
    top = int(max(ys.max(), ye.max())) + 1
    k = top if n_classes is None else n_classes
    if k < top or k < 2:
        raise InputError(
            f"train_probe n_classes must be >= 2 and exceed every class id ({top - 1}); got {k}."
        )
    dev = torch_device(device)
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(xs.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, k))
    _seeded_init(model, gen)
    model.to(dev)
    xt, yt = torch.from_numpy(xs).to(dev), torch.from_numpy(ys).to(dev)
    xet, yet = torch.from_numpy(xe).to(dev), torch.from_numpy(ye).to(dev)
    ce = nn.functional.cross_entropy

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(dev)
        return ce(model(xt[idx]), yt[idx])

    def evaluate() -> tuple[float, float | None]:
        logits = model(xet)
        acc = (logits.argmax(dim=1) == yet).double().mean()
        return float(ce(logits, yet)), float(acc)

    curve = _train_curve(
        model,
        n=xs.shape[0],
        batch_loss=batch_loss,
        evaluate=evaluate,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        checkpoints_per_epoch=checkpoints_per_epoch,
        gen=gen,
    )
    return ProbeRun(curve=curve, n_classes=k, model=model.eval(), device=dev)

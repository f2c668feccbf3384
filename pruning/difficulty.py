"""Difficulty scores from a proxy model, and distance to a target set; larger = harder / further.

- EL2N (Paul et al. 2021, "Deep learning on a data diet"): `||softmax(f(x)) - onehot(y)||_2` of a
  proxy model early in training, averaged over seeds; the same runs give the per-example proxy loss
  `-log softmax(f(x))_y`. As in the paper, the proxy is trained on all the examples it then scores (no
  held-out folds): the score is read early, before the model has memorised them. Defaults (10 epochs of
  AdamW, lr 1e-2 decaying to 0) were picked on 300 Wikipedia summaries: mislabelled examples score 0.90 vs
  0.47 for the rest at 10 epochs, 0.95 vs 0.76 at 5, while by 20 both fall (0.52 vs 0.19).
The probe is `scaling.proxy.train_probe` (shared with the calibration runs). The unlabelled difficulty (the
n-gram LM's per-document loss) and the target distances live in `pruning.scores` and `pruning.target`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from curate._validation import check_embeddings, check_interval
from curate.errors import InputError
from curate.stages import single_threaded
from pruning.prototypes import Labels
from scaling.proxy import ProbeRun, train_probe

EVAL_ROWS = 256  # the probes' eval curve is not used here; a small slice keeps it cheap


def seed_stream(seed: int, n: int) -> list[int]:
    """`n` independent integer seeds derived from `seed` (numpy SeedSequence)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


class EL2NScorer:
    """EL2N and proxy loss from `n_seeds` MLP probes trained `epochs` epochs on the scored rows.

    Fitted: `classes_` (sorted label strings; class id = position), `runs_` (one ProbeRun per seed).
    """

    def __init__(
        self,
        *,
        epochs: int = 10,
        n_seeds: int = 3,
        hidden: int = 128,
        batch_size: int = 64,
        lr: float = 1e-2,
        seed: int = 0,
    ) -> None:
        self.epochs = epochs
        self.n_seeds = n_seeds
        self.hidden = hidden
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed

    def _class_ids(self, y: Labels, n: int, *, what: str) -> np.ndarray:
        values = y.to_list() if isinstance(y, pl.Series) else list(y)
        if len(values) != n or any(v is None for v in values):
            raise InputError(f"{what} must hold {n} labels, one per row and none missing; got {len(values)}.")
        ys = np.array([str(v) for v in values], dtype=str)
        pos = np.searchsorted(self.classes_, ys).clip(0, len(self.classes_) - 1)
        unseen = sorted(set(ys[self.classes_[pos] != ys].tolist()))
        if unseen:
            raise InputError(f"{what} holds labels unseen in fit(): {', '.join(unseen[:5])}.")
        return pos.astype(np.int64)

    def fit(self, x: np.ndarray, y: Labels) -> EL2NScorer:
        """Train one probe per derived seed on all rows of (x, y); needs at least two classes."""
        check_interval("n_seeds", self.n_seeds, 1, None, caller="EL2NScorer")
        xs = check_embeddings(x, what="EL2NScorer.fit x", min_rows=2)
        values = y.to_list() if isinstance(y, pl.Series) else list(y)
        self.classes_ = np.unique(np.array([str(v) for v in values if v is not None], dtype=str))
        if len(self.classes_) < 2:
            raise InputError(
                f"EL2NScorer.fit y needs at least 2 classes; got {len(self.classes_)} ({self.classes_})."
            )
        ids = self._class_ids(y, xs.shape[0], what="EL2NScorer.fit y")
        held = slice(0, min(EVAL_ROWS, xs.shape[0]))
        with single_threaded():  # small probes: one thread is faster, and the same on every executor
            self.runs_: list[ProbeRun] = [
                self._probe(xs, ids, held, s) for s in seed_stream(self.seed, self.n_seeds)
            ]
        return self

    def _probe(self, xs: np.ndarray, ids: np.ndarray, held: slice, seed: int) -> ProbeRun:
        return train_probe(
            xs,
            ids,
            x_eval=xs[held],
            y_eval=ids[held],
            n_classes=len(self.classes_),
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            hidden=self.hidden,
            seed=seed,
            device="cpu",
        )

    def score(self, x: np.ndarray, y: Labels) -> pl.DataFrame:
        """Frame of el2n and loss (float32), each the mean over the fitted probes."""
        if not hasattr(self, "runs_"):
            raise InputError("EL2NScorer.score() needs a fitted scorer; call fit() first.")
        xs = check_embeddings(x, what="EL2NScorer.score x", min_rows=0)
        ids = self._class_ids(y, xs.shape[0], what="EL2NScorer.score y")
        onehot = np.eye(len(self.classes_))[ids]
        el2n = np.zeros(xs.shape[0])
        loss = np.zeros(xs.shape[0])
        for run in self.runs_:
            p = run.predict_proba(xs)
            el2n += np.linalg.norm(p - onehot, axis=1)
            loss -= np.log(np.clip(p[np.arange(len(ids)), ids], 1e-12, None))
        k = len(self.runs_)
        return pl.DataFrame({"el2n": (el2n / k).astype(np.float32), "loss": (loss / k).astype(np.float32)})


def el2n_scores(
    x: np.ndarray, y: Labels, *, epochs: int = 10, n_seeds: int = 3, seed: int = 0
) -> pl.DataFrame:
    """EL2N and proxy loss of every row of (x, y) (Paul et al. 2021), averaged over `n_seeds` probes."""
    return EL2NScorer(epochs=epochs, n_seeds=n_seeds, seed=seed).fit(x, y).score(x, y)

"""What the calibration steps train and evaluate on: the proxy pool, the target eval set, the proxy task.

The pool is, per source, a seeded sample of at most `[proxy] pool_rows` scored (kept) documents; the eval set
is a seeded sample of at most `[proxy] eval_size` target documents, never trained on and never used to pick a
checkpoint: calibration evaluates on the target's fit rows, the final prediction on its held-out rows.

Which proxy a step trains (`proxy_kind`): the default `hybrid` ranks the mixture design and makes the
prediction with the n-gram LM (many cheap runs) and uses the byte-level transformer LM for what the n-gram
LM cannot see or ranks worse: confirming the refinement's best candidates at the budget and the quality
buckets, whose curves must pass one epoch (bench/results/proxy_transfer.md measures both against a larger
reference LM). `ngram` and `lm` use one model everywhere; `probe` trains an MLP on embeddings and needs a
labelled target. OT distances use the same pool rows and target rows, in the centred space (the center step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from curate.config import ProxyConfig
from curate.errors import ConfigError, InputError
from pipelines.calibrate import LMTask, NgramTask, ProbeTask, ProxyTask
from pipelines.context import RunContext
from pipelines.data_steps import centred_embeddings, target_rows
from pipelines.score_step import read_scores
from scaling.lm import LMShape, Schedule, encode
from scaling.ngram import tokenize
from scaling.ot import MixtureDistance


@dataclass(frozen=True)
class ProxyData:
    """The proxy task, its pool (doc_id, source, row = task row) and the embeddings OT compares."""

    task: ProxyTask
    pool: pl.DataFrame
    x: np.ndarray
    x_eval: np.ndarray

    def source_rows(self) -> dict[str, np.ndarray]:
        """Task rows of each source's pool, by source name (sorted)."""
        return {
            str(s): part["row"].to_numpy()
            for (s,), part in self.pool.sort("source", "row").group_by("source", maintain_order=True)
        }

    def rows(self, ids: pl.Series) -> np.ndarray:
        """Task rows of the documents `ids` that are in the pool."""
        return self.pool.filter(pl.col("doc_id").is_in(ids.implode()))["row"].to_numpy()

    def distance(self, *, max_points: int, seed: int) -> MixtureDistance:
        """Projektor's OT: S_eps between a mixture of the source pools and the target eval set."""
        return MixtureDistance(
            {s: self.x[r] for s, r in self.source_rows().items()},
            self.x_eval,
            max_points=max_points,
            seed=seed,
        )


def _sample(frame: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    if frame.height <= n:
        return frame
    return frame[np.sort(np.random.default_rng(seed).choice(frame.height, size=n, replace=False))]


def calibration_pool(ctx: RunContext) -> pl.DataFrame:
    """Per source, a seeded sample of at most `[proxy] pool_rows` scored documents (doc_id, source, label)."""
    scored = read_scores(ctx.output("score")).select("doc_id", "source", "label").collect()
    groups = scored.sort("source", "doc_id").group_by("source", maintain_order=True)
    return pl.concat(
        _sample(part, ctx.cfg.proxy.pool_rows, ctx.cfg.seed + i) for i, (_, part) in enumerate(groups)
    )


def eval_rows(ctx: RunContext, eval_on: Literal["fit", "holdout"]) -> pl.DataFrame:
    """The proxy's eval set: a seeded sample of at most `[proxy] eval_size` of the target's `eval_on` rows
    (doc_id, text, label)."""
    target = target_rows(ctx, eval_on).select("doc_id", "text", "label").sort("doc_id")
    return _sample(target, ctx.cfg.proxy.eval_size, ctx.cfg.seed)


Role = Literal["design", "confirm", "quality", "predict"]
ProxyKind = Literal["ngram", "lm", "probe"]


def proxy_kind(kind: str, role: Role) -> ProxyKind:
    """The proxy model `[proxy] kind` trains for a step's `role`: hybrid = the n-gram LM for the mixture
    design and the prediction, the byte LM to confirm the refinement's best and for the quality buckets."""
    if kind == "hybrid":
        return "ngram" if role in ("design", "predict") else "lm"
    if kind not in ("ngram", "lm", "probe"):
        raise ConfigError(f"config key 'proxy.kind' must be hybrid, ngram, lm or probe; got {kind!r}.")
    return kind  # type: ignore[return-value]


# bench/results/proxy_transfer.md, against a byte LM of 0.9M parameters trained on 12 mixtures and 6 quality
# unions of a held-out two-domain case: rank correlation over the mixtures, and the reference-loss regret of
# each proxy's best mixture over the reference's standard error
TRANSFER = {
    "ngram": "Spearman 0.28 [-0.38, 0.75] over 12 mixtures, regret 0",
    "lm": "Spearman 0.92 [0.70, 0.98] over 12 mixtures, 0.83 over 6 quality unions, regret 0.38 reference se",
}


def proxy_statement(p: ProxyConfig) -> str:
    """Which proxy measured what, and its measured transfer to a larger LM (for the manifest)."""
    lm = f"byte LM (width {p.lm_width}, blocks {p.lm_layers}, the first {p.lm_window} bytes of each document)"
    models = {"ngram": f"word {p.order}-gram LM", "lm": lm, "probe": "MLP probe on embeddings"}
    if p.kind == "hybrid":
        text = (
            f"proxy 'hybrid': the {models['ngram']} ranked the mixture design and made the prediction, "
            f"the {lm} confirmed the best {p.confirm} candidates and measured the quality buckets"
        )
    else:
        text = f"proxy '{p.kind}': the {models[p.kind]} for every step"
    transfer = "; ".join(f"{k}: {v}" for k, v in TRANSFER.items() if p.kind in (k, "hybrid"))
    return text + (f"; measured transfer to a larger LM: {transfer}" if transfer else "")


def lm_shape(ctx: RunContext) -> tuple[LMShape, Schedule]:
    """The byte LM proxy's shape and schedule from `[proxy]`."""
    p = ctx.cfg.proxy
    return LMShape(d_model=p.lm_width, n_layers=p.lm_layers, max_len=p.lm_window), Schedule(lr=p.lm_lr)


def pool_texts(ctx: RunContext, doc_ids: pl.Series) -> list[str]:
    """The texts of the pool documents `doc_ids`, in order."""
    frame = (
        doc_ids.to_frame("doc_id")
        .lazy()
        .join(ctx.output("ingest").scan().select("doc_id", "text"), on="doc_id", maintain_order="left")
        .collect()
    )
    return frame["text"].to_list()


def proxy_data(
    ctx: RunContext, pool: pl.DataFrame, *, eval_on: Literal["fit", "holdout"], role: Role = "design"
) -> ProxyData:
    """The proxy task of `role` over `pool` (doc_id, source, label; a row per task row, in order) and its
    eval set: a sample of the target's `eval_on` rows ("fit": calibration, "holdout": the prediction)."""
    p = ctx.cfg.proxy
    kind = proxy_kind(p.kind, role)
    evals = eval_rows(ctx, eval_on)
    task: ProxyTask
    classes: list[str] = []
    if kind == "probe":
        classes = sorted(set(evals["label"].drop_nulls().to_list()))
        if len(classes) < 2:
            raise ConfigError(
                "config key 'proxy.kind' = 'probe' needs a labelled target with >= 2 classes (set "
                f"'target.label_field'); the target eval rows have {len(classes)}. Or use kind = 'ngram'."
            )
        pool = pool.filter(pl.col("label").is_in(classes))
        evals = evals.filter(pl.col("label").is_in(classes))
    if pool.is_empty():
        raise InputError(f"no document of the sources can train the '{kind}' proxy.")
    pool = pool.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    _, x = centred_embeddings(ctx, "embed", pool["doc_id"])
    _, x_eval = centred_embeddings(ctx, "embed.target", evals["doc_id"])
    if classes:
        code = {c: i for i, c in enumerate(classes)}
        task = ProbeTask(
            x=x,
            y=np.array([code[v] for v in pool["label"]], dtype=np.int64),
            x_eval=x_eval,
            y_eval=np.array([code[v] for v in evals["label"]], dtype=np.int64),
            n_classes=len(classes),
            hidden=p.hidden,
            batch_size=p.batch_size,
            lr=p.lr,
            weight_decay=p.weight_decay,
        )
    elif kind == "lm":
        shape, schedule = lm_shape(ctx)
        task = LMTask(
            corpus=encode(pool_texts(ctx, pool["doc_id"]), shape),
            eval_corpus=encode(_sample(evals, p.lm_eval_size, ctx.cfg.seed)["text"].to_list(), shape),
            shape=shape,
            schedule=schedule,
        )
    else:
        task = NgramTask(
            corpus=tokenize(pool_texts(ctx, pool["doc_id"])),
            eval_corpus=tokenize(evals["text"].to_list()),
            order=p.order,
        )
    return ProxyData(task=task, pool=pool.select("doc_id", "source", "row"), x=x, x_eval=x_eval)

"""Library calls: thin faces over the pipeline's step list (work dirs) and the same functions (frames).

A call on a work dir updates the work dir's config (`config.json`, written by the last run or stage command)
with its arguments and runs the steps it needs through `pipelines.runner.execute`, in this process unless
`address` names a Ray cluster; so `curate.score_documents(work)` after `curate run` reuses what the run
committed, and the other way round. A call on frames runs the same library functions in memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from curate._validation import check_columns, check_interval, check_option
from curate.config import CurateConfig, load_config, load_work_config, parse_config
from curate.dedup.passes import TextDedup, add_semantic, text_duplicates, unmarked
from curate.dedup.semantic import DEFAULT_EPS
from curate.embeddings import EmbedderKind, load_embedder
from curate.errors import ConfigError, InputError
from curate.hashing import content_hashes
from curate.ingest import ingest_sources
from curate.io import PathLike
from curate.manifest import MixtureManifest
from curate.records import read_record
from curate.report import IngestReport
from curate.stages import StageOutput, load_committed
from pipelines.quality_steps import QualityPlan
from pipelines.runner import PipelineRun, committed, execute
from pipelines.score_step import read_scores, summarize_scores
from pruning.scores import SCORE_COLUMNS_OUT, score_frame

Method = Literal["exact", "fuzzy", "semantic"]


def work_config(work: PathLike, **sections: dict[str, Any]) -> CurateConfig:
    """The work dir's config with `sections` ({"dedup": {"fuzzy": False}, "sources": {...}}) merged in: the
    one way a stage command or a library call on a work dir builds its config."""
    cfg = load_work_config(work)
    data = {} if cfg is None else cfg.dump()
    for name, values in sections.items():
        if name in ("sources",) or not isinstance(data.get(name), dict):
            data[name] = values
        else:
            data[name] = {**data[name], **values}
    if not data.get("sources"):
        raise InputError(
            f"work dir '{work}' has no sources yet; run `curate ingest {work} --source NAME=GLOB`."
        )
    return parse_config(data, base_dir=Path(work), where=f"work dir '{work}'")


def _given(**values: Any) -> dict[str, Any]:
    """The keyword arguments that were given (not None): what a call changes in the work dir's config."""
    return {k: v for k, v in values.items() if v is not None}


def run_until(
    cfg: CurateConfig, work: PathLike, steps: Sequence[str], *, address: str | None = None, local: bool = True
) -> PipelineRun:
    """Run the steps `steps` need on `cfg` in `work` (in-process unless `address`)."""
    return execute(cfg, work=work, address=address, local=local and address is None, until=steps)


def read_step(work: PathLike, step: str, *, config: PathLike | CurateConfig | None = None) -> StageOutput:
    """The committed output of `step` that `config` (default: the work dir's config) selects in `work`."""
    cfg = config_of(work, config)
    run = committed(cfg, work, [step])
    if run is None:
        raise InputError(
            f"work dir '{work}' has no committed '{step}' step for this config; run `curate run` or the "
            "stage command first."
        )
    return run.outputs[step]


def committed_step(
    work: PathLike, step: str, *, config: PathLike | CurateConfig | None = None
) -> StageOutput | None:
    """Like `read_step`, but None when that step is not committed for the config."""
    run = committed(config_of(work, config), work, [step])
    return None if run is None else run.outputs[step]


def config_of(work: PathLike, config: PathLike | CurateConfig | None = None) -> CurateConfig:
    """`config` (a config or a TOML file), else the config of the work dir's last run (its config.json)."""
    if isinstance(config, CurateConfig):
        return config
    if config is not None:
        return load_config(config)
    cfg = load_work_config(work)
    if cfg is None:
        raise InputError(f"work dir '{work}' holds no run yet (no config.json); run `curate ingest` first.")
    return cfg


# --- ingest ---


def ingest_config(
    sources: dict[str, str],
    work: PathLike,
    *,
    text_field: str = "text",
    label_field: str | None = None,
    max_chars: int = 1_000_000,
) -> CurateConfig:
    """The work dir's config with these sources (name -> glob or folder) and ingest settings."""
    if max_chars < 1:
        raise ConfigError(f"The 'max_chars' parameter of ingest must be >= 1. Got {max_chars}.")
    entry = {"text_field": text_field, "label_field": label_field}
    return work_config(
        work,
        sources={n: {"path": str(Path(p).absolute()), **entry} for n, p in sources.items()},
        ingest={"max_chars": max_chars},
    )


def ingest(
    sources: dict[str, str],
    work: PathLike,
    *,
    text_field: str = "text",
    label_field: str | None = None,
    max_chars: int = 1_000_000,
    address: str | None = None,
) -> IngestReport:
    """Ingest sources (name -> glob or folder) into `work`: rows read = documents + rejects, per source."""
    cfg = ingest_config(sources, work, text_field=text_field, label_field=label_field, max_chars=max_chars)
    return IngestReport.from_stage(run_until(cfg, work, ["ingest"], address=address).outputs["ingest"])


def read_documents(work: PathLike, *, config: PathLike | CurateConfig | None = None) -> pl.LazyFrame:
    """Lazy frame over the documents (schema.DOCUMENTS columns) of the ingest that `config` (default: the
    work dir's config) selects."""
    return read_step(work, "ingest", config=config).scan()


# --- dedup ---


def dedup_config(
    work: PathLike,
    *,
    methods: Sequence[Method] | None = None,
    threshold: float | None = None,
    eps: float | None = None,
    num_perm: int | None = None,
    ngram: int | None = None,
    shingle: Literal["word", "char"] | None = None,
) -> CurateConfig:
    """The work dir's config with the given dedup settings (None keeps the work dir's)."""
    dedup = _given(
        fuzzy_threshold=threshold, semantic_eps=eps, num_perm=num_perm, ngram=ngram, shingle=shingle
    )
    if methods is not None:
        for m in methods:
            check_option("methods", m, ("exact", "fuzzy", "semantic"), caller="dedup_documents")
        dedup.update({m: m in methods for m in ("exact", "fuzzy", "semantic")})
    return work_config(work, dedup=dedup)


def dedup_documents(
    work: PathLike,
    *,
    methods: Sequence[Method] | None = None,
    threshold: float | None = None,
    eps: float | None = None,
    num_perm: int | None = None,
    ngram: int | None = None,
    shingle: Literal["word", "char"] | None = None,
    address: str | None = None,
) -> StageOutput:
    """Commit the final DEDUP table of `work` (exact, fuzzy, target copies, then semantic): the dedup step.
    Arguments left None keep the work dir's [dedup] settings."""
    cfg = dedup_config(
        work, methods=methods, threshold=threshold, eps=eps, num_perm=num_perm, ngram=ngram, shingle=shingle
    )
    return run_until(cfg, work, ["dedup"], address=address).outputs["dedup"]


def find_duplicates(
    data: pl.DataFrame,
    *,
    method: Method,
    threshold: float | None = None,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 0,
) -> pl.DataFrame:
    """Mark duplicates in a frame (doc_id, text), in row order: doc_id, dup_of (null = kept), dup_kind.

    `threshold` is the Jaccard cut for "fuzzy" (default 0.8) and the cosine cut 1 - eps for "semantic"
    (default 0.95); "exact" ignores it. A work dir goes through `dedup_documents`.
    """
    check_option("method", method, ("exact", "fuzzy", "semantic"), caller="find_duplicates")
    cut = (1.0 - DEFAULT_EPS if method == "semantic" else 0.8) if threshold is None else threshold
    check_interval("threshold", cut, 0.0, 1.0, caller="find_duplicates", closed="right")
    check_columns(data, {"doc_id": pl.String, "text": pl.String}, what="find_duplicates() input")
    docs = data.select("doc_id", pl.col("text").fill_null(""))
    docs = docs.with_columns(content_hash=pl.Series(content_hashes(docs["text"].to_arrow()), dtype=pl.Binary))
    if method == "semantic":
        vectors = embed_texts(docs["text"].to_list())
        found = add_semantic(unmarked(docs["doc_id"]), docs["doc_id"], vectors, eps=1.0 - cut, seed=seed)
    else:
        params = TextDedup(
            exact=True, fuzzy=method == "fuzzy", threshold=cut, num_perm=num_perm, ngram=ngram, seed=seed
        )
        found = text_duplicates(docs, params)
        if method == "fuzzy":  # exact copies are fuzzy duplicates too (Jaccard 1)
            found = found.with_columns(pl.col("dup_kind").replace("exact", "fuzzy"))
    columns = ["doc_id", "dup_of", "dup_kind"]
    return docs.select("doc_id").join(found, on="doc_id", how="left", maintain_order="left").select(columns)


# --- embeddings and scores ---


def embed_texts(
    texts: Sequence[str], *, embedder: EmbedderKind = "auto", cache_dir: PathLike | None = None
) -> np.ndarray:
    """Embed `texts` in-process: float32 (n, dim), rows L2-normalised, all-zero for whitespace-only texts."""
    model = load_embedder(embedder, cache_dir=None if cache_dir is None else Path(cache_dir))
    return model.encode(list(texts))


def embed_config(work: PathLike, *, embedder: EmbedderKind | None = None) -> CurateConfig:
    """The work dir's config with the given embedder (None keeps the work dir's)."""
    return work_config(work, embed=_given(kind=embedder))


def embed_documents(
    work: PathLike, *, embedder: EmbedderKind | None = None, address: str | None = None
) -> StageOutput:
    """Commit the embeddings of the documents the text dedup kept (the embed step)."""
    cfg = embed_config(work, embedder=embedder)
    return run_until(cfg, work, ["embed"], address=address).outputs["embed"]


ScoreTarget = Sequence[str] | pl.DataFrame | str | Path  # texts, a frame with `text`, or a glob of shards


def score_config(
    work: PathLike,
    *,
    target: str | Path | None = None,
    n_clusters: int | None = None,
    fit_rows: int | None = None,
    holdout: float | None = None,
    seed: int | None = None,
    embedder: EmbedderKind | None = None,
) -> CurateConfig:
    """The work dir's config with the given score settings (None keeps the work dir's); `target` is a glob."""
    sections: dict[str, Any] = {
        "score": _given(n_clusters=n_clusters, fit_rows=fit_rows),
        "embed": _given(kind=embedder),
        "target": {
            **({} if target is None else {"path": str(Path(target).absolute())}),
            **_given(holdout=holdout),
        },
    }
    cfg = work_config(work, **{k: v for k, v in sections.items() if v})
    return cfg if seed is None else cfg.model_copy(update={"seed": seed})


def score_documents(
    work: PathLike,
    *,
    target: str | Path | None = None,
    n_clusters: int | None = None,
    fit_rows: int | None = None,
    holdout: float | None = None,
    seed: int | None = None,
    embedder: EmbedderKind | None = None,
    address: str | None = None,
) -> StageOutput:
    """Commit the scores of every kept document of `work` (the score step); `target` is a glob of shards.
    Arguments left None keep the work dir's settings."""
    cfg = score_config(
        work, target=target, n_clusters=n_clusters, fit_rows=fit_rows, holdout=holdout, seed=seed,
        embedder=embedder,
    )  # fmt: skip
    return run_until(cfg, work, ["score"], address=address).outputs["score"]


def score_dataset(
    data: pl.DataFrame | PathLike,
    *,
    target: ScoreTarget | None = None,
    label_field: str | None = None,
    n_clusters: int | None = None,
    fit_rows: int | None = None,
    holdout: float | None = None,
    seed: int | None = None,
    embedder: EmbedderKind | None = None,
) -> pl.DataFrame:
    """One row per document: doc_id, cluster_id, proto_dist, class_proto_dist, target_z, target_dist,
    target_ngram, target_lm, el2n, lm_loss, difficulty (larger = harder / further; null where not computable).

    `data` is a frame with doc_id and text (and `label_field`), scored in memory by the score step's own
    functions (defaults: fit_rows 100,000, holdout 0.5, seed 0, embedder auto), or a work dir, whose score
    step runs with the given settings (None keeps the work dir's; `target` must then be a glob).
    """
    if not isinstance(data, pl.DataFrame):
        if label_field is not None:
            raise InputError(
                "score_dataset(work) takes no 'label_field': a work dir's labels are set at ingest "
                "(`curate ingest --label-field`)."
            )
        if target is not None and not isinstance(target, str | Path):
            raise InputError(
                "score_dataset(work) needs 'target' as a glob or folder of shards (the target step ingests "
                f"it); got {type(target).__name__}."
            )
        out = score_documents(
            data, target=target, n_clusters=n_clusters, fit_rows=fit_rows, holdout=holdout, seed=seed,
            embedder=embedder,
        )  # fmt: skip
        return read_scores(out).select("doc_id", *SCORE_COLUMNS_OUT).collect()
    return score_frame(
        data,
        target=_target_texts(target),
        label_field=label_field,
        n_clusters=n_clusters,
        fit_rows=100_000 if fit_rows is None else fit_rows,
        holdout=0.5 if holdout is None else holdout,
        seed=0 if seed is None else seed,
        embedder="auto" if embedder is None else embedder,
    )


def _target_texts(target: ScoreTarget | None) -> list[str] | None:
    """Target texts from texts, a frame with `text`, or a glob of shards (read in memory)."""
    if target is None:
        return None
    if isinstance(target, pl.DataFrame):
        check_columns(target, {"text": pl.String}, what="score_dataset() target frame")
        return target["text"].fill_null("").to_list()
    if isinstance(target, str | Path):
        with tempfile.TemporaryDirectory() as tmp:
            report = ingest_sources({"target": str(target)}, tmp)
            out = load_committed(Path(tmp), "ingest", report.key)
            return [] if out is None else out.scan().select("text").collect()["text"].to_list()
    return [str(t) for t in target]


def score_summary(work: PathLike, *, config: PathLike | CurateConfig | None = None) -> pl.DataFrame:
    """Per source and score of the score step `config` (default: the work dir's) selects: n, n_null, mean,
    deciles q10..q90, and a 10-bin histogram."""
    return summarize_scores(read_scores(read_step(work, "score", config=config)))


# --- plans ---


def plan_config(work: PathLike, *, budget: int | None = None) -> CurateConfig:
    """The work dir's config with the given budget value (None keeps the work dir's)."""
    return work_config(work, **({} if budget is None else {"budget": {"value": budget}}))


def plan_quality(work: PathLike, *, budget: int | None = None, address: str | None = None) -> QualityPlan:
    """The quality-quantity plan (QQT, Goyal et al. 2024) of `work`: per source its bucket union."""
    run = run_until(plan_config(work, budget=budget), work, ["fit.quality"], address=address)
    return read_record(QualityPlan, run.outputs["fit.quality"].path)


def plan_mixture(
    config: PathLike | CurateConfig, *, work: PathLike | None = None, seed: int | None = None
) -> MixtureManifest:
    """Run the whole curation of `config` in-process (no Ray), resumable in `work`; returns the manifest."""
    cfg = config if isinstance(config, CurateConfig) else load_config(config)
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    return execute(cfg, work=work, local=True).manifest

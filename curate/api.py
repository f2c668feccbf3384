"""Library calls: thin faces over the pipeline's step list (work dirs) and the same functions (frames).

A call on a work dir updates the work dir's config (`config.json`, written by the last run or stage command)
with its arguments and runs the steps it needs through `pipelines.runner.execute`, in this process unless
`address` names a Ray cluster; so `curate.score_documents(work)` after `curate run` reuses what the run
committed, and the other way round. A call on frames runs the same library functions in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from curate.config import CurateConfig, load_work_config, parse_config
from curate.embeddings import EmbedderKind
from curate.errors import InputError
from curate.io import PathLike
from curate.manifest import MixtureManifest
from curate.report import IngestReport
from curate.stages import StageOutput

if TYPE_CHECKING:
    from pipelines.quality_steps import QualityPlan
    from pipelines.runner import PipelineRun

Method = Literal["exact", "fuzzy", "semantic"]


def work_config(work: PathLike, **sections: dict[str, Any]) -> CurateConfig:
    """The work dir's config with `sections` ({"dedup": {"fuzzy": False}, "sources": {...}}) merged in."""
    cfg = load_work_config(work)
    data = {} if cfg is None else cfg.dump()
    for name, values in sections.items():
        if name in ("sources", "target") or not isinstance(data.get(name), dict):
            data[name] = values
        else:
            data[name] = {**data[name], **values}
    if not data.get("sources"):
        raise InputError(
            f"work dir '{work}' has no sources yet; run `curate ingest {work} --source NAME=GLOB`."
        )
    return parse_config(data, base_dir=Path(work), where=f"work dir '{work}'")


def run_until(
    cfg: CurateConfig, work: PathLike, steps: Sequence[str], *, address: str | None = None, local: bool = True
) -> PipelineRun:
    """Run the steps `steps` need on `cfg` in `work` (in-process unless `address`)."""
    from pipelines.runner import execute

    return execute(cfg, work=work, address=address, local=local and address is None, until=steps)


# --- ingest ---


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
    entry = {"text_field": text_field, "label_field": label_field}
    cfg = work_config(
        work,
        sources={n: {"path": str(Path(p).absolute()), **entry} for n, p in sources.items()},
        ingest={"max_chars": max_chars},
    )
    return IngestReport.from_stage(run_until(cfg, work, ["ingest"], address=address).outputs["ingest"])


def read_documents(work: PathLike) -> pl.LazyFrame:
    """Lazy frame over the documents of the latest committed ingest in `work` (schema.DOCUMENTS columns)."""
    from curate.stages import latest_committed

    output = latest_committed(Path(work), "ingest")
    if output is None:
        raise InputError(f"work dir '{work}' has no committed ingest output; run `curate ingest` first.")
    return output.scan()


# --- dedup ---


def dedup_documents(
    work: PathLike,
    *,
    methods: Sequence[Method] = ("exact", "fuzzy", "semantic"),
    threshold: float = 0.8,
    eps: float = 0.05,
    num_perm: int = 128,
    ngram: int = 5,
    shingle: Literal["word", "char"] = "word",
    address: str | None = None,
) -> StageOutput:
    """Commit the final DEDUP table of `work` (exact, fuzzy, then semantic on embeddings): the dedup step."""
    from curate._validation import check_option

    for m in methods:
        check_option("methods", m, ("exact", "fuzzy", "semantic"), caller="dedup_documents")
    dedup = {
        "exact": "exact" in methods,
        "fuzzy": "fuzzy" in methods,
        "semantic": "semantic" in methods,
        "fuzzy_threshold": threshold,
        "semantic_eps": eps,
        "num_perm": num_perm,
        "ngram": ngram,
        "shingle": shingle,
    }
    cfg = work_config(work, dedup=dedup)
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
    from curate._validation import check_columns, check_interval, check_option
    from curate.dedup.passes import TextDedup, add_semantic, text_duplicates, unmarked
    from curate.dedup.semantic import DEFAULT_EPS
    from curate.hashing import content_hashes

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
    from curate.embeddings import load_embedder

    model = load_embedder(embedder, cache_dir=None if cache_dir is None else Path(cache_dir))
    return model.encode(list(texts))


def embed_documents(
    work: PathLike, *, embedder: EmbedderKind = "auto", address: str | None = None
) -> StageOutput:
    """Commit the embeddings of the documents the text dedup kept (the embed step)."""
    cfg = work_config(work, embed={"kind": embedder})
    return run_until(cfg, work, ["embed"], address=address).outputs["embed"]


ScoreTarget = Sequence[str] | pl.DataFrame | str | Path  # texts, a frame with `text`, or a glob of shards


def score_documents(
    work: PathLike,
    *,
    target: str | Path | None = None,
    n_clusters: int | None = None,
    address: str | None = None,
) -> StageOutput:
    """Commit the scores of every kept document of `work` (the score step); `target` is a glob of shards."""
    sections: dict[str, Any] = {} if n_clusters is None else {"score": {"n_clusters": n_clusters}}
    if target is not None:
        sections["target"] = {"path": str(Path(target).absolute())}
    cfg = work_config(work, **sections)
    return run_until(cfg, work, ["score"], address=address).outputs["score"]


def score_dataset(
    data: pl.DataFrame | PathLike,
    *,
    target: ScoreTarget | None = None,
    label_field: str | None = None,
    n_clusters: int | None = None,
    seed: int = 0,
    embedder: EmbedderKind = "auto",
) -> pl.DataFrame:
    """One row per document: doc_id, cluster_id, proto_dist, class_proto_dist, target_dist, target_ngram,
    el2n, lm_loss, difficulty (larger = harder / further; null where not computable).

    `data` is a frame with doc_id and text (and `label_field`), scored in memory by the functions the
    score step uses, or a work dir (its score step's output).
    """
    from pipelines.score_step import read_scores, score_frame

    if not isinstance(data, pl.DataFrame):
        return read_scores(score_documents(data, n_clusters=n_clusters)).collect()
    return score_frame(
        data,
        target=_target_texts(target),
        label_field=label_field,
        n_clusters=n_clusters,
        seed=seed,
        embedder=embedder,
    )


def _target_texts(target: ScoreTarget | None) -> list[str] | None:
    """Target texts from texts, a frame with `text`, or a glob of shards (read in memory)."""
    if target is None:
        return None
    if isinstance(target, pl.DataFrame):
        from curate._validation import check_columns

        check_columns(target, {"text": pl.String}, what="score_dataset() target frame")
        return target["text"].fill_null("").to_list()
    if isinstance(target, str | Path):
        import tempfile

        from curate.ingest import ingest_sources
        from curate.stages import load_committed

        with tempfile.TemporaryDirectory() as tmp:
            report = ingest_sources({"target": str(target)}, tmp)
            out = load_committed(Path(tmp), "ingest", report.key)
            return [] if out is None else out.scan().select("text").collect()["text"].to_list()
    return [str(t) for t in target]


def score_summary(work: PathLike) -> pl.DataFrame:
    """Per source and score of the latest score step: n, n_null, mean, deciles q10..q90, and a 10-bin hist."""
    from curate.stages import latest_committed
    from pipelines.score_step import read_scores, summarize_scores

    scores = latest_committed(Path(work), "score")
    if scores is None:
        raise InputError(f"work dir '{work}' has no committed scores; run `curate score {work}` first.")
    return summarize_scores(read_scores(scores))


# --- plans ---


def plan_quality(work: PathLike, *, budget: int | None = None, address: str | None = None) -> QualityPlan:
    """The quality-quantity plan (QQT, Goyal et al. 2024) of `work`: per source its bucket union."""
    from pipelines.quality_steps import QualityPlan

    sections: dict[str, Any] = {} if budget is None else {"budget": {"value": budget}}
    cfg = work_config(work, **sections)
    run = run_until(cfg, work, ["fit.quality"], address=address)
    from curate.records import read_record

    return read_record(QualityPlan, run.outputs["fit.quality"].path)


def plan_mixture(
    config: PathLike | CurateConfig, *, work: PathLike | None = None, seed: int | None = None
) -> MixtureManifest:
    """Run the whole curation of `config` in-process (no Ray), resumable in `work`; returns the manifest."""
    from curate.config import load_config
    from pipelines.runner import execute

    cfg = config if isinstance(config, CurateConfig) else load_config(config)
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    return execute(cfg, work=work, local=True).manifest

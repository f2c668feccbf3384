"""Library calls: thin faces that validate, build the stage objects, run them in-process and return frames.

Each section belongs to one part of the pipeline; keep them thin (the logic lives in the defining module).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

from curate.config import CurateConfig
from curate.embeddings import EmbedderKind, EmbeddingSpace
from curate.ingest import DEFAULT_MAX_CHARS
from curate.io import PathLike
from curate.manifest import MixtureManifest
from curate.report import IngestReport
from curate.stages import Executor, StageOutput

# --- ingest (issue 3) ---


def ingest(
    sources: dict[str, str],
    work: PathLike,
    *,
    text_field: str = "text",
    label_field: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    executor: Executor | None = None,
) -> IngestReport:
    """Ingest sources (name -> glob or folder) into `work/ingest/<key>/`, in-process unless `executor` says.

    Returns per-source counts (read = documents + rejects); a rerun with the same inputs does no work.
    """
    from curate.ingest import ingest_sources

    return ingest_sources(
        sources, work, text_field=text_field, label_field=label_field, max_chars=max_chars, executor=executor
    )


def read_documents(work: PathLike) -> pl.LazyFrame:
    """Lazy frame over the documents of the latest committed ingest in `work` (schema.DOCUMENTS columns)."""
    from curate.errors import InputError
    from curate.stages import latest_committed

    output = latest_committed(Path(work), "ingest")
    if output is None:
        raise InputError(f"work dir '{work}' has no committed ingest output; run `curate ingest` first.")
    return output.scan()


# --- dedup (issue 4) ---


def find_duplicates(
    data: pl.DataFrame | PathLike,
    *,
    method: Literal["exact", "fuzzy", "semantic"],
    threshold: float | None = None,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 0,
) -> pl.DataFrame:
    """Mark duplicates in a frame (doc_id, text) or a work dir: doc_id, dup_of (null = kept), dup_kind.

    Frame rows keep their order; a work dir gives doc_id order and commits its `dedup` side table. `threshold`
    is the Jaccard cut for "fuzzy" (default 0.8) and the cosine cut 1 - eps for "semantic" (default 0.95,
    embedded with `load_embedder("auto")`); "exact" ignores it.
    """
    from curate._validation import check_columns, check_interval, check_option
    from curate.dedup.exact import mark_exact
    from curate.dedup.fuzzy import fuzzy_duplicates
    from curate.dedup.semantic import DEFAULT_EPS, semantic_duplicates
    from curate.dedup.step import dedup_work
    from curate.hashing import content_hash

    check_option("method", method, ("exact", "fuzzy", "semantic"), caller="find_duplicates")
    cut = (1.0 - DEFAULT_EPS if method == "semantic" else 0.8) if threshold is None else threshold
    check_interval("threshold", cut, 0.0, 1.0, caller="find_duplicates", closed="right")
    columns = ["doc_id", "dup_of", "dup_kind"]
    if not isinstance(data, pl.DataFrame):
        out = dedup_work(  # the other method's cut keeps its default, so the content key matches the CLI's
            Path(data),
            methods=[method],
            threshold=cut if method == "fuzzy" else 0.8,
            eps=1.0 - cut if method == "semantic" else DEFAULT_EPS,
            num_perm=num_perm,
            ngram=ngram,
            seed=seed,
        )
        return out.scan().select(columns).sort("doc_id").collect()
    check_columns(data, {"doc_id": pl.String, "text": pl.String}, what="find_duplicates() input")
    if method == "fuzzy":
        found = fuzzy_duplicates(data, threshold=cut, num_perm=num_perm, ngram=ngram, seed=seed)
    elif method == "exact":
        hashes = pl.Series([content_hash(t or "") for t in data["text"].to_list()], dtype=pl.Binary)
        found = mark_exact(data.select("doc_id", content_hash=hashes))
    else:
        vectors = embed_texts(data["text"].fill_null("").to_list())
        found = semantic_duplicates(data["doc_id"], vectors, eps=1.0 - cut, seed=seed)
    return data.select("doc_id").join(found, on="doc_id", how="left", maintain_order="left").select(columns)


def dedup_documents(
    work: PathLike,
    *,
    methods: Sequence[Literal["exact", "fuzzy", "semantic"]] = ("exact", "fuzzy"),
    threshold: float = 0.8,
    eps: float = 0.05,
    num_perm: int = 128,
    ngram: int = 5,
    shingle: Literal["word", "char"] = "word",
    seed: int = 0,
) -> StageOutput:
    """Commit the `dedup` side table of the latest ingest in `work` (exact, then fuzzy, then semantic).

    `threshold` is the fuzzy Jaccard cut, `eps` the semantic one (cosine > 1 - eps; needs `curate embed`).
    """
    from curate.dedup.step import dedup_work

    return dedup_work(
        Path(work),
        methods=methods,
        threshold=threshold,
        eps=eps,
        num_perm=num_perm,
        ngram=ngram,
        shingle=shingle,
        seed=seed,
    )


# --- embeddings and scoring (issues 5, 10) ---


def embed_texts(
    texts: Sequence[str], *, embedder: EmbedderKind = "auto", cache_dir: PathLike | None = None
) -> np.ndarray:
    """Embed `texts` in-process: float32 (n, dim), rows L2-normalised, all-zero for whitespace-only texts.

    "auto" is the static tier on CPU-only machines and minilm with CUDA; static is distilled into
    `cache_dir` (default ~/.cache/curate/embedders) on first use.
    """
    from curate.embeddings import load_embedder

    model = load_embedder(embedder, cache_dir=None if cache_dir is None else Path(cache_dir))
    return model.encode(list(texts))


def embed_documents(
    work: PathLike, *, embedder: EmbedderKind = "auto", executor: Executor | None = None
) -> StageOutput:
    """Commit the embeddings side table of the latest ingest output in `work` (a no-op when committed).

    The static model is distilled once into `work/.cache/embedders` before any worker loads it.
    """
    from curate.embeddings import Embed, default_cache_dir, distill_static, resolve_kind
    from curate.errors import InputError
    from curate.stages import LocalExecutor, latest_committed, run_stage

    work = Path(work)
    source = latest_committed(work, "ingest")
    if source is None:
        raise InputError(f"work dir '{work}' has no committed ingest output; run `curate ingest` first.")
    tier = resolve_kind(embedder)
    cache_dir = default_cache_dir(work)
    if tier == "static":
        distill_static(cache_dir)
    stage = Embed(embedder=tier, cache_dir=str(cache_dir))
    return run_stage(stage, source, work, executor=executor or LocalExecutor())


ScoreTarget = Sequence[str] | pl.DataFrame | str | Path  # texts, a frame with `text`, or a glob of shards
SCORE_COLUMNS = ("proto_dist", "class_proto_dist", "difficulty", "target_sim")


def _target_texts(target: ScoreTarget, ingest_dir: Path) -> tuple[list[str], str]:
    """Target texts and their content key; a glob or folder is ingested (committed) into `ingest_dir`."""
    from curate._validation import check_columns
    from curate.hashing import content_hash, stage_key
    from curate.ingest import ingest_sources
    from curate.stages import load_committed

    if isinstance(target, str | Path):
        report = ingest_sources({"target": str(target)}, ingest_dir)
        output = load_committed(ingest_dir, "ingest", report.key)
        frame = pl.DataFrame() if output is None else output.scan().select("text").collect()
        return frame["text"].to_list() if frame.height else [], report.key
    if isinstance(target, pl.DataFrame):
        check_columns(target, {"text": pl.String}, what="score_dataset() target frame")
        texts = target["text"].fill_null("").to_list()
    else:
        texts = [str(t) for t in target]
    return texts, stage_key("target", 1, {}, [content_hash(t).hex() for t in texts])


def _score_table(
    doc_ids: Sequence[str],
    vectors: np.ndarray,
    *,
    texts: Sequence[str],
    labels: Sequence[str | None] | None,
    target: np.ndarray | None,
    k: int | None,
    seed: int,
) -> pl.DataFrame:
    """schema.SCORES columns in `doc_ids` order: prototypes, EL2N (labels) or LM loss, target distance."""
    from pruning.difficulty import EL2NScorer, LMLossScorer, target_distance
    from pruning.prototypes import PrototypeScorer

    protos = PrototypeScorer(k=k, seed=seed).fit(vectors, labels=labels).score(vectors, labels=labels)
    if labels is None:
        difficulty = LMLossScorer(seed=seed).fit(texts).score(texts)["lm_loss"]
    else:
        known = np.array([y is not None for y in labels], dtype=bool)
        named = [y for y in labels if y is not None]
        el2n = EL2NScorer(seed=seed).fit(vectors[known], named).score(vectors[known], named)["el2n"]
        filled = np.full(len(doc_ids), np.nan, dtype=np.float32)
        filled[known] = el2n.to_numpy()
        difficulty = pl.Series(filled).fill_nan(None)
    return pl.DataFrame(
        {
            "doc_id": pl.Series(list(doc_ids), dtype=pl.String),
            "cluster_id": protos["cluster_id"],
            "proto_dist": protos["proto_dist"],
            "class_proto_dist": protos["class_proto_dist"],
            "difficulty": difficulty.cast(pl.Float32),
            "target_sim": pl.Series(
                [None] * len(doc_ids) if target is None else target_distance(vectors, target),
                dtype=pl.Float32,
            ),
        }
    )


def _embed_target(texts: Sequence[str], space: EmbeddingSpace, cache_dir: Path | None) -> np.ndarray:
    """Target vectors in the data's embedding space (EmbeddingSpaceError if the embedder differs)."""
    from curate.embeddings import EmbeddingSpace, check_same_space, load_embedder
    from curate.errors import InputError

    if space.embedder not in ("minilm", "static"):
        raise InputError(f"target texts cannot be embedded in space {space}: unknown embedder.")
    model = load_embedder(space.embedder, cache_dir=cache_dir)  # type: ignore[arg-type]
    check_same_space(space, EmbeddingSpace(model.name, model.version, model.dim), what="score target")
    if not any(t.strip() for t in texts):
        raise InputError("score target holds no non-empty text; give target documents with text.")
    return model.encode(list(texts))


def score_documents(
    work: PathLike,
    *,
    target: ScoreTarget | None = None,
    label_field: str | None = None,
    k: int | None = None,
    seed: int = 0,
    embedder: EmbedderKind = "auto",
) -> StageOutput:
    """Commit the `scores` side table of the latest ingest in `work` (embedding it first if needed).

    Keyed on the ingest, embeddings and target keys plus the parameters, so a rerun is a no-op. A target
    glob is ingested under `work/target/`; `label_field` names a documents column holding class labels.
    """
    from curate._validation import check_columns
    from curate.embeddings import default_cache_dir, read_embeddings
    from curate.errors import InputError
    from curate.hashing import JSONValue, stage_key
    from curate.io import write_table
    from curate.schema import SCORES
    from curate.stages import commit_step, latest_committed

    work = Path(work)
    ingested = latest_committed(work, "ingest")
    if ingested is None:
        raise InputError(f"work dir '{work}' has no committed ingest output; run `curate ingest` first.")
    if label_field is not None:
        check_columns(ingested.scan(), {label_field: pl.String}, what=f"documents of '{work}'")
    embedded = embed_documents(work, embedder=embedder)
    inputs = [ingested.key, embedded.key]
    target_texts: list[str] | None = None
    if target is not None:
        target_texts, target_key = _target_texts(target, work / "target")
        inputs.append(target_key)
    params: dict[str, JSONValue] = {"k": k, "seed": seed, "label_field": label_field}

    def build(tmp: Path) -> dict[str, JSONValue]:
        ids, vectors, space = read_embeddings(embedded)
        columns = ["doc_id", "text", *([label_field] if label_field else [])]
        docs = pl.DataFrame({"doc_id": ids}, schema={"doc_id": pl.String}).join(
            ingested.scan().select(columns).collect(), on="doc_id", how="left", maintain_order="left"
        )
        far = None if target_texts is None else _embed_target(target_texts, space, default_cache_dir(work))
        table = _score_table(
            ids,
            vectors,
            texts=docs["text"].fill_null("").to_list(),
            labels=docs[label_field].to_list() if label_field else None,
            target=far,
            k=k,
            seed=seed,
        )
        write_table(table.to_arrow().cast(SCORES), tmp / "part-00000.parquet")
        return {"rows_out": table.height, "embedder": str(space)}

    return commit_step(
        work, "scores", stage_key("scores", 1, params, inputs), build, params=params, inputs=inputs
    )


def score_dataset(
    data: pl.DataFrame | PathLike,
    *,
    target: ScoreTarget | None = None,
    label_column: str | None = None,
    k: int | None = None,
    seed: int = 0,
    embedder: EmbedderKind = "auto",
) -> pl.DataFrame:
    """One row per document: doc_id, cluster_id, proto_dist, class_proto_dist, difficulty, target_sim.

    Larger = harder / further; null where not computable (no label, no target). `data` is a frame with
    doc_id and text (and `label_column`) or a work dir (then the `scores` side table is committed).
    """
    from curate._validation import check_columns
    from curate.embeddings import embedding_space, resolve_kind
    from curate.errors import InputError

    if not isinstance(data, pl.DataFrame):
        output = score_documents(
            data, target=target, label_field=label_column, k=k, seed=seed, embedder=embedder
        )
        return output.scan().collect()
    required = {"doc_id": pl.String, "text": pl.String, **({label_column: None} if label_column else {})}
    check_columns(data, required, what="score_dataset() data")
    if data.is_empty():
        raise InputError("score_dataset() data holds no rows; give at least one document.")
    if data["doc_id"].n_unique() != data.height:
        raise InputError(
            f"score_dataset() data must hold each doc_id once; got {data.height} rows for "
            f"{data['doc_id'].n_unique()} doc_ids."
        )
    texts = data["text"].fill_null("").to_list()
    vectors = embed_texts(texts, embedder=embedder)
    far = None
    if target is not None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            target_texts, _ = _target_texts(target, Path(tmp))
        far = _embed_target(target_texts, embedding_space(resolve_kind(embedder)), None)
    labels = None if label_column is None else data[label_column].cast(pl.String).to_list()
    table = _score_table(
        data["doc_id"].to_list(), vectors, texts=texts, labels=labels, target=far, k=k, seed=seed
    )
    return table


def score_summary(work: PathLike) -> pl.DataFrame:
    """Per source and score of the latest `scores` table: n, n_null, mean, min, deciles q10..q90, max, hist.

    `hist` counts the scores in 10 equal-width bins between that score's min and max over all sources.
    """
    from curate.errors import InputError
    from curate.stages import latest_committed

    work = Path(work)
    scores = latest_committed(work, "scores")
    if scores is None:
        raise InputError(f"work dir '{work}' has no committed scores; run `curate score {work}` first.")
    docs = read_documents(work).select("doc_id", "source")
    long = (
        scores.scan()
        .join(docs, on="doc_id", how="left")
        .unpivot(index=["doc_id", "source"], on=list(SCORE_COLUMNS), variable_name="score")
        .with_columns(pl.col("value").fill_nan(None))
        .collect()
    )
    span = long.group_by("score").agg(lo=pl.col("value").min(), hi=pl.col("value").max())
    binned = long.join(span, on="score").with_columns(
        bin=((pl.col("value") - pl.col("lo")) / (pl.col("hi") - pl.col("lo")) * 10)
        .fill_nan(0.0)
        .floor()
        .clip(0, 9)
        .cast(pl.Int32)
    )
    deciles = [pl.col("value").quantile(q / 10, "linear").alias(f"q{q * 10}") for q in range(1, 10)]
    order = {name: i for i, name in enumerate(SCORE_COLUMNS)}
    return (
        binned.group_by("source", "score")
        .agg(
            *deciles,
            n=pl.len(),
            n_null=pl.col("value").null_count(),
            mean=pl.col("value").mean(),
            min=pl.col("value").min(),
            max=pl.col("value").max(),
            hist=pl.concat_list([(pl.col("bin") == b).sum() for b in range(10)]),
        )
        .sort(pl.col("source"), pl.col("score").replace_strict(order, return_dtype=pl.Int32))
        .select(
            "source",
            "score",
            "n",
            "n_null",
            "mean",
            "min",
            *(f"q{q}" for q in range(10, 100, 10)),
            "max",
            "hist",
        )
    )


# --- scaling and mixtures (issues 6, 7) ---

# (issue 6: quality-quantity plan)
if TYPE_CHECKING:
    from pipelines.proxy_runs import BucketPlan


def plan_quality(
    work: PathLike,
    *,
    budgets: Sequence[int],
    score: str = "target_sim",
    n_buckets: int = 4,
    epochs: int = 8,
    max_rows: int = 2000,
    seed: int = 0,
    executor: Executor | None = None,
) -> BucketPlan:
    """QQT plan of the scored documents in `work`: quantile buckets of `score`, one multi-epoch proxy per
    bucket, the fit, and the best bucket union per budget (samples seen). `.laws()` feeds the manifest."""
    from curate._validation import check_option
    from curate.embeddings import read_embeddings
    from curate.errors import InputError
    from curate.stages import latest_committed
    from pipelines.proxy_runs import plan_buckets

    check_option("score", score, SCORE_COLUMNS, caller="plan_quality")
    work = Path(work)
    scored, embedded = latest_committed(work, "scores"), latest_committed(work, "embed")
    if scored is None or embedded is None:
        raise InputError(
            f"work dir '{work}' needs committed embeddings and scores; run `curate score {work}`."
        )
    ids, vectors, _ = read_embeddings(embedded)
    frame = (
        pl.DataFrame({"doc_id": ids, "_row": np.arange(len(ids))}, schema_overrides={"doc_id": pl.String})
        .join(
            scored.scan().select("doc_id", score).collect(), on="doc_id", how="inner", maintain_order="left"
        )
        .join(read_documents(work).select("doc_id", "label", "text").collect(), on="doc_id", how="left")
    )
    labelled = frame["label"].drop_nulls().n_unique() >= 2
    return plan_buckets(
        frame.select("doc_id", pl.col(score).cast(pl.Float64)),
        score=score,
        budgets=budgets,
        vectors=vectors[frame["_row"].to_numpy()] if labelled else None,
        labels=frame["label"].to_list() if labelled else None,
        texts=None if labelled else frame["text"].fill_null("").to_list(),
        n_buckets=n_buckets,
        epochs=epochs,
        max_rows=max_rows,
        executor=executor,
        seed=seed,
    )


# --- pipeline (issue 8) ---


def plan_mixture(
    config: PathLike | CurateConfig, *, work: PathLike | None = None, seed: int | None = None
) -> MixtureManifest:
    """Run the whole curation of `config` in-process (no Ray), resumable in `work`; returns the manifest.

    `seed` overrides the config's seed. Raises ConfigError / InputError naming the bad key or input.
    """
    from curate.config import load_config
    from pipelines.curate_pipeline import execute

    cfg = config if isinstance(config, CurateConfig) else load_config(config)
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    return execute(cfg, work=work, local=True).manifest

"""The end-to-end curation DAG (DESIGN.md sections 2, 4, 6): shards, target and budget -> manifest, evidence.

ingest -> dedup (exact, fuzzy, semantic) -> embed -> score -> calibrate.mix (proxy runs on a mixture grid)
-> fit.mix (Projektor) -> prune (pruning policy per source) -> calibrate.qqt (multi-epoch runs per bucket)
-> fit.qqt (QQT) -> select (selection table) -> publish (manifest.json, exports, report.html).

Every step is committed under `work/<step>/<key>/` by `curate.stages.commit_step` with a key made of its
inputs' keys and its parameters, so a rerun is a no-op, a killed run resumes at the first missing step, and
a config change reruns only the steps it reaches. Ray is used only through the executor passed in.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.table import Table

from curate.config import CurateConfig, load_config
from curate.errors import ConfigError, FitError, FitWarning, InputError, StageError
from curate.hashing import JSONValue, stage_key
from curate.io import PathLike, write_table, write_text
from curate.manifest import (
    Budget,
    Filter,
    Law,
    MixtureManifest,
    Prediction,
    Provenance,
    Selection,
    SourcePlan,
    write_manifest,
)
from curate.stages import CODE_VERSION, Executor, LocalExecutor, StageOutput, commit_step, load_committed
from pipelines.calibrate import LMTask, ProbeTask, bucket_runs, mixture_grid, mixture_runs, run_tasks
from pipelines.plan import doc_size, realised_share, selection_table, split_budget

VERSION = 1
PUBLISH_FILES = ("manifest.json", "report.html")


@dataclass(frozen=True)
class PipelineRun:
    """A finished run: the manifest, the committed folder with its exports and report, the step keys."""

    manifest: MixtureManifest
    out_dir: Path
    steps: dict[str, str]

    @property
    def manifest_path(self) -> Path:
        """manifest.json of this run."""
        return self.out_dir / "manifest.json"

    @property
    def report_path(self) -> Path:
        """report.html of this run."""
        return self.out_dir / "report.html"


@dataclass
class _Run:
    cfg: CurateConfig
    work: Path
    executor: Executor
    steps: dict[str, str] = field(default_factory=dict)

    def step(
        self,
        name: str,
        params: Mapping[str, JSONValue],
        inputs: list[StageOutput],
        build: Callable[[Path], Mapping[str, Any]],
    ) -> StageOutput:
        """Commit step `name` keyed by its params and its inputs' keys (a no-op when committed)."""
        keys = [i.key for i in inputs]
        key = stage_key(name, VERSION, dict(params), keys)
        out = commit_step(self.work, name, key, build, params=params, inputs=keys)
        self.steps[name] = key
        return out


# ----------------------------------------------------------------------------------------------------------
# ingest, embed, dedup, score


def _ingest(run: _Run) -> tuple[StageOutput, StageOutput]:
    """Ingest sources into `work/ingest`, the target into `work/target/ingest`; neither may be empty."""
    from curate.ingest import ingest_sources

    cfg = run.cfg
    fields = {(s.text_field, s.label_field) for s in cfg.sources.values()}
    if len(fields) > 1:
        raise ConfigError(
            "config keys 'sources.*.text_field' / 'label_field' must be the same for every source "
            f"(curate.ingest reads one field pair per call); got {sorted(fields, key=str)}."
        )
    text_field, label_field = fields.pop()
    globs = {name: str(cfg.resolve(src.path)) for name, src in sorted(cfg.sources.items())}
    report = ingest_sources(
        globs, run.work, text_field=text_field, label_field=label_field, executor=run.executor
    )
    target = ingest_sources(
        {"target": str(cfg.resolve(cfg.target.path))},
        run.work / "target",
        text_field=cfg.target.text_field,
        label_field=cfg.target.label_field,
        executor=run.executor,
    )
    for rep, what in ((report, "source"), (target, "target")):
        for row in rep.sources.iter_rows(named=True):
            if row["documents"] == 0:
                raise InputError(
                    f"{what} '{row['source']}' has no rows: {row['rows_read']} read, all rejected "
                    f"({_reasons(rep.reasons, row['source'])}); see `curate report {rep.path.parent.parent}`."
                )
    docs = load_committed(run.work, "ingest", report.key)
    tgt = load_committed(run.work / "target", "ingest", target.key)
    if docs is None or tgt is None:
        raise StageError(f"ingest did not commit under '{run.work}'.")
    run.steps["ingest"] = docs.key
    run.steps["ingest.target"] = tgt.key
    return docs, tgt


def _reasons(reasons: pl.DataFrame, source: str) -> str:
    rows = reasons.filter(pl.col("source") == source)
    return ", ".join(f"{r}={n}" for _, r, n in rows.iter_rows()) or "no rejects"


def _embed(run: _Run, docs: StageOutput, target: StageOutput) -> tuple[StageOutput, StageOutput]:
    """Embeddings of sources and target in one space (static on CPU, MiniLM on GPU, or as configured)."""
    from curate.embeddings import Embed, default_cache_dir, distill_static, resolve_kind
    from curate.stages import run_stage

    cfg = run.cfg.embed
    tier = resolve_kind(cfg.kind)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    if tier == "static":
        distill_static(cache)  # once, before any worker loads it
    stage = Embed(embedder=tier, cache_dir=str(cache), batch_size=cfg.batch_size)
    emb = run_stage(stage, docs, run.work, executor=run.executor)
    tgt = run_stage(stage, target, run.work / "target", executor=run.executor)
    run.steps["embed"], run.steps["embed.target"] = emb.key, tgt.key
    return emb, tgt


def _dedup(run: _Run, docs: StageOutput, emb: StageOutput) -> StageOutput | None:
    """The committed dedup side table (exact, then fuzzy, then semantic); None when every method is off."""
    from curate.dedup.step import dedup_work

    d = run.cfg.dedup
    methods = [m for m, on in (("exact", d.exact), ("fuzzy", d.fuzzy), ("semantic", d.semantic)) if on]
    if not methods:
        return None
    out = dedup_work(
        run.work,
        methods=methods,  # type: ignore[arg-type]
        threshold=d.fuzzy_threshold,
        eps=d.semantic_eps,
        num_perm=d.num_perm,
        ngram=d.ngram,
        seed=run.cfg.seed,
    )
    expected = [docs.key, *([emb.key] if d.semantic else [])]
    if list(out.info.get("inputs", [])) != expected:
        raise StageError(
            f"dedup in '{run.work}' read inputs {out.info.get('inputs')} instead of {expected}: the work dir "
            "holds a newer ingest or embed of another config; use a separate --work for each config."
        )
    run.steps["dedup"] = out.key
    return out


def _documents(docs: StageOutput, dedup: StageOutput | None) -> pl.DataFrame:
    """doc_id, source, label, n_chars, dup_kind (null = kept) of every ingested document, sorted by doc_id."""
    frame = docs.scan().select("doc_id", "source", "label", "n_chars")
    if dedup is None:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("dup_kind"))
    else:
        frame = frame.join(dedup.scan().select("doc_id", "dup_kind"), on="doc_id", how="left")
    return frame.sort("doc_id").collect()


def _check_not_empty_after_dedup(documents: pl.DataFrame, sources: list[str]) -> None:
    kept = documents.filter(pl.col("dup_kind").is_null()).group_by("source").len()
    n_kept = dict(kept.iter_rows())
    for s in sources:
        if n_kept.get(s, 0) == 0:
            kinds = documents.filter(pl.col("source") == s)["dup_kind"].value_counts()
            detail = ", ".join(f"{k}={n}" for k, n in kinds.iter_rows())
            raise InputError(
                f"source '{s}' is empty after dedup: every document duplicates another ({detail}); "
                "remove it from [sources] or relax [dedup]."
            )


def _matrix(emb: StageOutput, ids: pl.Series) -> tuple[np.ndarray, Any]:
    """Embedding rows of `ids` (in that order) and the table's space."""
    from curate.embeddings import read_embeddings

    all_ids, x, space = read_embeddings(emb)
    rows = pl.DataFrame({"doc_id": all_ids, "row": np.arange(len(all_ids))})
    picked = ids.to_frame("doc_id").join(rows, on="doc_id", how="left", maintain_order="left")["row"]
    if picked.null_count():
        raise StageError(f"embeddings '{emb.path}' lack {picked.null_count()} of the documents asked for.")
    return x[picked.to_numpy()], space


def _score(
    run: _Run, docs: StageOutput, emb: StageOutput, temb: StageOutput, dedup: StageOutput | None
) -> StageOutput:
    """Scores of every kept document: prototypes (Sorscher), target distance, difficulty when asked for."""
    s = run.cfg.score
    need_difficulty = "difficulty" in (s.bucket_metric, s.prune_metric)
    params: dict[str, JSONValue] = {
        "n_clusters": s.n_clusters,
        "difficulty": need_difficulty,
        "seed": run.cfg.seed,
    }
    inputs = [docs, emb, temb, *([dedup] if dedup else [])]

    def build(tmp: Path) -> dict[str, Any]:
        from curate.embeddings import check_same_space, read_embeddings
        from pruning.difficulty import el2n_scores, lm_loss_scores, target_distance
        from pruning.prototypes import prototype_scores

        kept = _documents(docs, dedup).filter(pl.col("dup_kind").is_null())
        x, space = _matrix(emb, kept["doc_id"])
        _, t, tspace = read_embeddings(temb)
        check_same_space(space, tspace, what="source and target embeddings")
        labels = kept["label"] if kept["label"].null_count() < kept.height else None
        proto = prototype_scores(x, labels=labels, k=s.n_clusters or None, seed=run.cfg.seed)
        scores = kept.select("doc_id", "source", "label").with_columns(
            proto.select("cluster_id", "proto_dist", "class_proto_dist"),
            target_sim=pl.Series(target_distance(x, t)),
        )
        if need_difficulty:
            if labels is not None and labels.null_count() == 0:
                diff = el2n_scores(x, labels.to_list(), seed=run.cfg.seed)["el2n"]
            else:
                text = docs.scan().select("doc_id", "text").collect()
                text = kept.select("doc_id").join(text, on="doc_id", maintain_order="left")
                diff = lm_loss_scores(text["text"].to_list(), seed=run.cfg.seed)["lm_loss"]
            scores = scores.with_columns(difficulty=diff)
        write_table(scores.to_arrow(), tmp / "part-00000.parquet")
        return {"rows": scores.height, "embedder": space.embedder}

    return run.step("score", params, inputs, build)


# ----------------------------------------------------------------------------------------------------------
# calibration and fits


@dataclass(frozen=True)
class _ProxySet:
    """The proxy task and what OT needs: pool rows (doc_id, source, row), their embeddings and labels, and
    the target eval set's embeddings and labels (labels only with the probe)."""

    task: ProbeTask | LMTask
    pool: pl.DataFrame
    x: np.ndarray
    x_eval: np.ndarray
    labels: np.ndarray | None
    eval_labels: np.ndarray | None

    def rows(self, ids: pl.Series) -> np.ndarray:
        """Task rows of the documents `ids` that are in the proxy pool."""
        return self.pool.filter(pl.col("doc_id").is_in(ids.implode()))["row"].to_numpy()

    def distance(self, sources: list[str], *, max_points: int, seed: int) -> Any:
        """Projektor's OT source: S_eps between a mixture of the source pools and the target eval set."""
        from scaling.ot import MixtureDistance

        rows = {s: self.pool.filter(pl.col("source") == s)["row"].to_numpy() for s in sources}
        return MixtureDistance(
            {s: self.x[r] for s, r in rows.items()},
            self.x_eval,
            pool_labels=None if self.labels is None else {s: self.labels[r] for s, r in rows.items()},
            target_labels=self.eval_labels,
            max_points=max_points,
            seed=seed,
        )


def _proxy_set(
    run: _Run, docs: StageOutput, emb: StageOutput, tdocs: StageOutput, temb: StageOutput, scores: StageOutput
) -> _ProxySet:
    """The proxy's pool (kept docs it can train on) and its eval set (a seeded sample of the target)."""
    p = run.cfg.proxy
    pool = scores.scan().select("doc_id", "source", "label").sort("doc_id").collect()
    target = tdocs.scan().select("doc_id", "text", "label").sort("doc_id").collect()
    rng = np.random.default_rng(run.cfg.seed)
    evals = target[np.sort(rng.choice(target.height, size=min(p.eval_size, target.height), replace=False))]
    classes: list[str] = []
    if p.kind == "probe":
        classes = sorted(set(evals["label"].drop_nulls().to_list()))
        if len(classes) < 2:
            raise ConfigError(
                "config key 'proxy.kind' = 'probe' needs a labelled target with >= 2 classes (set "
                f"'target.label_field'); the target eval rows have {len(classes)}. Or use kind = 'lm'."
            )
        pool = pool.filter(pl.col("label").is_in(classes))
        evals = evals.filter(pl.col("label").is_in(classes))
    missing = sorted(set(run.cfg.sources) - set(pool["source"].unique().to_list()))
    if missing:
        hint = " (none has a label among the target's classes; use proxy.kind = 'lm')" if classes else ""
        raise InputError(f"source(s) {missing} have no documents the '{p.kind}' proxy can train on{hint}.")
    x, _ = _matrix(emb, pool["doc_id"])
    x_eval, _ = _matrix(temb, evals["doc_id"])
    task: ProbeTask | LMTask
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
        )
    else:
        texts = pool.select("doc_id").join(
            docs.scan().select("doc_id", "text").collect(), on="doc_id", maintain_order="left"
        )
        task = LMTask(
            texts=tuple(texts["text"].to_list()),
            eval_texts=tuple(evals["text"].to_list()),
            batch_size=p.batch_size,
            d_model=p.hidden,
            max_len=p.max_len,
            lr=p.lr,
        )
    return _ProxySet(
        task=task,
        pool=pool.select("doc_id", "source", row=pl.int_range(pl.len())),
        x=x,
        x_eval=x_eval,
        labels=pool["label"].to_numpy() if classes else None,
        eval_labels=evals["label"].to_numpy() if classes else None,
    )


def _proxy_params(run: _Run) -> dict[str, JSONValue]:
    """What decides a proxy run's curve: the [proxy] keys (bar the fit's bootstrap) and the seed."""
    return {**run.cfg.proxy.model_dump(mode="json", exclude={"bootstrap"}), "seed": run.cfg.seed}


def _calibrate_mix(run: _Run, proxy: Callable[[], _ProxySet], inputs: list[StageOutput]) -> StageOutput:
    """Proxy runs on a mixture grid at every pilot size: one row per run (weights, n, final metric)."""
    p = run.cfg.proxy
    sources = sorted(run.cfg.sources)

    def build(tmp: Path) -> dict[str, Any]:
        ps = proxy()
        pools = {s: ps.pool.filter(pl.col("source") == s)["row"].to_numpy() for s in sources}
        grid = mixture_grid(sources, n_mixtures=p.n_mixtures, seed=run.cfg.seed)
        specs = mixture_runs(pools, grid, p.pilot_sizes, epochs=p.epochs, seed=run.cfg.seed)
        curves = run_tasks(ps.task, specs, executor=run.executor)
        final = curves.group_by("run").agg(pl.all().sort_by("samples_seen").last())
        distance = ps.distance(sources, max_points=run.cfg.mixture.ot_max_points, seed=run.cfg.seed)
        ot = [distance.value(g) for g in grid]
        table = pl.DataFrame(
            {
                "run": [str(r["run"]) for r in specs],
                "mixture": [i for i in range(len(grid)) for _ in p.pilot_sizes],
                "n": [n for _ in grid for n in p.pilot_sizes],
                **{s: [float(g[j]) for g in grid for _ in p.pilot_sizes] for j, s in enumerate(sources)},
                "ot": [float(d) for d in ot for _ in p.pilot_sizes],
            }
        ).join(final.select("run", metric="eval_loss", eval_accuracy="eval_accuracy"), on="run", how="left")
        write_table(table.sort("run").to_arrow(), tmp / "runs.parquet")
        return {"runs": table.height}

    params = {**_proxy_params(run), "ot_max_points": run.cfg.mixture.ot_max_points}
    return run.step("calibrate.mix", params, inputs, build)


def _read(out: StageOutput, name: str) -> pl.DataFrame:
    return pl.read_parquet(out.path / name)


def _read_json(out: StageOutput, name: str) -> Any:
    return json.loads((out.path / name).read_text())


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _budget_docs(run: _Run, scores: StageOutput) -> int:
    """The budget in documents: samples as given, tokens divided by the mean kept document's token size."""
    b = run.cfg.budget
    if b.unit == "samples":
        return b.value
    sizes = scores.scan().select("doc_id").collect().join(_sizes(run), on="doc_id")["size"]
    return max(1, round(b.value / float(sizes.mean())))  # type: ignore[arg-type]


def _sizes(run: _Run) -> pl.DataFrame:
    """doc_id, size (budget units) of every ingested source document."""
    docs = load_committed(run.work, "ingest", run.steps["ingest"])
    if docs is None:
        raise StageError("ingest is not committed.")
    return docs.scan().select("doc_id", size=doc_size(pl.col("n_chars"), unit=run.cfg.budget.unit)).collect()


def _check_budget(run: _Run, scores: StageOutput) -> None:
    """ConfigError when the budget holds less than one proxy batch of documents (no plan can train on it)."""
    b, batch = run.cfg.budget, run.cfg.proxy.batch_size
    n = _budget_docs(run, scores)
    if n < batch:
        raise ConfigError(
            f"config key 'budget.value' ({b.value} {b.unit}, about {n} documents) is smaller than one batch "
            f"(proxy.batch_size = {batch} documents); raise the budget or lower the batch size."
        )


def _fit_mix(
    run: _Run, calib: StageOutput, proxy: Callable[[], _ProxySet], scores: StageOutput
) -> StageOutput:
    """Source weights (Projektor's optimum, Kang et al. 2023, or a named baseline), the predicted metric
    at the budget with its interval, and Projektor's predictions of held-out mixtures (every 4th)."""
    m = run.cfg.mixture
    n_budget = _budget_docs(run, scores)
    params: dict[str, JSONValue] = {
        **m.model_dump(mode="json"),
        "n": n_budget,
        "seed": run.cfg.seed,
        "guard": "holdout_mae_vs_mean",  # projektor falls back to best_grid when the mean predicts better
    }

    def build(tmp: Path) -> dict[str, Any]:
        from scaling.mixture import plan_weights
        from scaling.projektor import fit_projektor

        runs = _read(calib, "runs.parquet")
        sources = sorted(run.cfg.sources)
        ps = proxy()
        distance = ps.distance(sources, max_points=run.cfg.mixture.ot_max_points, seed=run.cfg.seed)
        sizes = dict(scores.scan().group_by("source").len().collect().iter_rows())
        held = (pl.col("mixture") % 4) == 3
        model = fit_projektor(runs.filter(~held), sources=sources, distance=distance)
        n1 = int(runs["n"].max())  # type: ignore[arg-type]
        test = runs.filter(held & (pl.col("n") == n1))
        holdout = test.select(
            "run",
            predicted=pl.Series(
                [model.predict(n1, [r[s] for s in sources]).value for r in test.iter_rows(named=True)],
                dtype=pl.Float64,
            ),
            observed="metric",
        ).rename({"run": "mixture"})
        mae, mean_mae = _holdout_errors(holdout, runs.filter(~held & (pl.col("n") == n1))["metric"])
        method, reason = m.method, ""
        if method == "projektor" and mae > mean_mae:
            method = "best_grid"
            reason = (
                f"Projektor's held-out MAE {mae:.4g} is worse than the mean predictor's {mean_mae:.4g}; "
                "weights fall back to the best calibrated mixture (best_grid)"
            )
            warnings.warn(f"fit.mix: {reason}.", FitWarning, stacklevel=2)
        plan = plan_weights(
            runs,
            sources=sources,
            n=n_budget,
            method=method,
            source_sizes=sizes,
            distance=distance,
            seed=run.cfg.seed,
        )
        full = fit_projektor(runs, sources=sources, distance=distance)
        coef = {f"n{f.n}.c{i}": float(c) for f in full.fits for i, c in enumerate(f.coef)}
        pred = plan.prediction
        _write_json(tmp / "weights.json", dict(plan.weights))
        _write_json(
            tmp / "prediction.json",
            {
                "metric": pred.metric,
                "value": pred.value,
                "interval": list(pred.interval),
                "method": method,
                "fallback": reason,
            },
        )
        _write_json(
            tmp / "laws.json",
            {"projektor": {"form": "projektor_kang2023_stage1", "params": coef, "fit_error": mae}},
        )
        write_table(holdout.to_arrow(), tmp / "holdout.parquet")
        return {"n": n_budget, "holdout_mae": mae, "mean_holdout_mae": mean_mae, "method": method}

    return run.step("fit.mix", params, [calib, scores], build)


def _holdout_errors(holdout: pl.DataFrame, train_metric: pl.Series) -> tuple[float, float]:
    """Mean absolute held-out error of Projektor's predictions and of the mean training metric (the
    baseline a fit must beat); both 0.0 when nothing is held out."""
    if holdout.height == 0:
        return 0.0, 0.0
    observed = holdout["observed"].to_numpy()
    mae = float(np.mean(np.abs(holdout["predicted"].to_numpy() - observed)))
    return mae, float(np.mean(np.abs(float(train_metric.mean()) - observed)))  # type: ignore[arg-type]


def _prune(run: _Run, scores: StageOutput, fit_mix: StageOutput) -> StageOutput:
    """Per source: the pruning policy (auto: Sorscher's abundant/scarce rule at the source's share of the
    budget) keeps `keep_fraction` of the deduplicated documents, balanced per cluster or class."""
    s = run.cfg.score
    params: dict[str, JSONValue] = {
        "policy": s.policy,
        "balance": s.balance,
        "keep_fraction": s.keep_fraction,
        "prune_metric": s.prune_metric,
        "seed": run.cfg.seed,
    }

    def build(tmp: Path) -> dict[str, Any]:
        from pruning.policies import recommend_policy, select

        table = scores.scan().collect()
        weights = _read_json(fit_mix, "weights.json")
        n_docs = split_budget(weights, int(fit_mix.info["n"]))
        parts, plans = [], {}
        for source in sorted(run.cfg.sources):
            pool = table.filter(pl.col("source") == source)
            policy = s.policy
            if policy == "auto":
                policy = recommend_policy(pool.height, max(1, n_docs[source])).policy
            if policy == "all":
                chosen = pool.select("doc_id", kept=pl.lit(True), drop_reason=pl.lit(None, pl.String))
                threshold = None
            else:
                chosen = select(
                    pool,
                    keep_fraction=s.keep_fraction,
                    policy=policy,
                    balance=s.balance,
                    score=s.prune_metric,
                    seed=run.cfg.seed,
                )
                kept = pool.join(chosen.filter("kept"), on="doc_id")[s.prune_metric]
                threshold = (
                    None
                    if policy == "random" or kept.is_empty()
                    else float(
                        kept.min() if policy == "keep_hard" else kept.max()  # type: ignore[arg-type]
                    )
                )
            parts.append(chosen.with_columns(source=pl.lit(source)))
            plans[source] = {"policy": policy, "threshold": threshold, "n_pool": pool.height}
        write_table(pl.concat(parts).sort("doc_id").to_arrow(), tmp / "prune.parquet")
        _write_json(tmp / "plans.json", plans)
        return {"sources": len(plans)}

    return run.step("prune", params, [scores, fit_mix], build)


def _calibrate_qqt(
    run: _Run, proxy: Callable[[], _ProxySet], scores: StageOutput, prune: StageOutput
) -> StageOutput:
    """Quality buckets (quantiles of bucket_metric, 0 = best) of each source's pruned pool, and one
    multi-epoch proxy run per bucket on at most the largest pilot size of its rows."""
    s, p = run.cfg.score, run.cfg.proxy
    params = {**_proxy_params(run), "bucket_metric": s.bucket_metric, "n_buckets": s.n_buckets}

    def build(tmp: Path) -> dict[str, Any]:
        from scaling.buckets import bucket_name, quality_buckets

        ps = proxy()
        kept = _read(prune, "prune.parquet").filter("kept").select("doc_id")
        metric = s.bucket_metric
        table = scores.scan().select("doc_id", "source", metric).collect().join(kept, on="doc_id")
        table = pl.concat(
            quality_buckets(table.filter(pl.col("source") == source), column=metric, n_buckets=s.n_buckets)
            for source in sorted(run.cfg.sources)
        ).filter(pl.col("bucket").is_not_null())
        members = {}
        for (source, bucket), part in table.group_by("source", "bucket"):
            rows = ps.rows(part["doc_id"])
            if len(rows):
                members[f"{source}/{bucket_name(bucket)}"] = rows
        specs = bucket_runs(members, epochs=p.epochs, max_rows=p.pilot_sizes[-1], seed=run.cfg.seed)
        curves = run_tasks(ps.task, specs, executor=run.executor).rename({"run": "pool"})
        sizes = (
            table.group_by("source", "bucket")
            .len("n_docs")
            .with_columns(pool=pl.format("{}/q{}", "source", "bucket"))  # scaling.buckets.bucket_name
        )
        proxy_rows = pl.DataFrame(
            {"pool": list(members), "proxy_rows": [min(len(r), p.pilot_sizes[-1]) for r in members.values()]}
        )
        write_table(table.select("doc_id", "source", "bucket").to_arrow(), tmp / "buckets.parquet")
        write_table(
            sizes.join(proxy_rows, on="pool", how="left").sort("pool").to_arrow(), tmp / "pools.parquet"
        )
        write_table(curves.to_arrow(), tmp / "curves.parquet")
        return {"pools": len(specs)}

    return run.step("calibrate.qqt", params, [scores, prune], build)


def _fit_qqt(run: _Run, cal: StageOutput, fit_mix: StageOutput) -> StageOutput:
    """Per source: QQT (Goyal et al. 2024) fitted on its bucket curves (proxy-sized pools), then moved to the
    full bucket sizes; the best union of its top buckets at the source's share of the budget."""
    params: dict[str, JSONValue] = {"bootstrap": run.cfg.proxy.bootstrap, "seed": run.cfg.seed}

    def build(tmp: Path) -> dict[str, Any]:
        from scaling.buckets import qqt_curves
        from scaling.qqt import fit_qqt

        curves = qqt_curves(_read(cal, "curves.parquet"), metric="loss")
        pools = _read(cal, "pools.parquet")
        n_docs = split_budget(_read_json(fit_mix, "weights.json"), int(fit_mix.info["n"]))
        choice: dict[str, Any] = {}
        laws: dict[str, Any] = {}
        fitted, unions = [], []
        for source in sorted(run.cfg.sources):
            pp = pools.filter(pl.col("source") == source)
            if n_docs[source] == 0 or pp.is_empty():
                choice[source] = {"buckets": [], "error": None}
                continue
            names = pp["pool"].to_list()
            c = curves.filter(pl.col("pool").is_in(names))
            sizes = dict(zip(names, pp["proxy_rows"].to_list(), strict=True))
            try:
                fit = fit_qqt(c, sizes, n_bootstrap=run.cfg.proxy.bootstrap, seed=run.cfg.seed)
            except FitError as exc:  # e.g. curves that do not decrease: keep every bucket, say why
                warnings.warn(
                    f"fit.qqt: source '{source}' keeps all its buckets; its QQT fit failed: {exc}",
                    FitWarning,
                    stacklevel=2,
                )
                choice[source] = {"buckets": sorted(int(p.rsplit("/q", 1)[1]) for p in names), "error": None}
                continue
            predicted = [fit.predict([p], int(n)) for p, n in c.select("pool", "samples_seen").iter_rows()]
            fit = fit.with_pool_sizes(dict(zip(names, pp["n_docs"].to_list(), strict=True)))
            at = n_docs[source]
            best = fit.best_union([at]).row(0, named=True)
            choice[source] = {
                "buckets": sorted(int(p.rsplit("/q", 1)[1]) for p in best["pools"]),
                "error": best["error"],
            }
            laws[f"qqt/{source}"] = fit.to_laws()["qqt"]
            fitted.append(
                c.with_columns(predicted=pl.Series(predicted, dtype=pl.Float64)).rename(
                    {"pool": "bucket", "error": "observed"}
                )
            )
            grid = sorted({max(1, round(at * f)) for f in (0.25, 0.5, 1.0, 2.0, 4.0)})
            unions.append(
                fit.unions(grid).select(
                    "budget",
                    union=pl.format("{} top-{}", pl.lit(source), "n_pools"),
                    predicted="error",
                )
            )
        _write_json(tmp / "choice.json", choice)
        _write_json(tmp / "laws.json", laws)
        if fitted:
            write_table(pl.concat(fitted).to_arrow(), tmp / "fitted.parquet")
            write_table(pl.concat(unions).to_arrow(), tmp / "unions.parquet")
        return {"sources": len(choice)}

    return run.step("fit.qqt", params, [cal, fit_mix], build)


def _select(
    run: _Run,
    scores: StageOutput,
    prune: StageOutput,
    cal: StageOutput,
    fit_qqt: StageOutput,
    fit_mix: StageOutput,
) -> StageOutput:
    """The selection table: per source, the pruned documents of its chosen buckets (best first), repeated
    so that their total size is exactly the source's integer share of the budget."""
    from curate.exports import write_selection

    b, metric = run.cfg.budget, run.cfg.score.bucket_metric
    params: dict[str, JSONValue] = {"unit": b.unit, "value": b.value}

    def build(tmp: Path) -> dict[str, Any]:
        weights = _read_json(fit_mix, "weights.json")
        targets = split_budget(weights, b.value)
        choice = _read_json(fit_qqt, "choice.json")
        kept = _read(prune, "prune.parquet").filter("kept").select("doc_id")
        table = (
            _read(cal, "buckets.parquet")
            .join(kept, on="doc_id")
            .join(scores.scan().select("doc_id", metric).collect(), on="doc_id")
            .join(_sizes(run), on="doc_id")
        )
        pools, summary = {}, {}
        for source in sorted(run.cfg.sources):
            chosen = choice[source]["buckets"]
            pool = table.filter((pl.col("source") == source) & pl.col("bucket").is_in(chosen))
            pools[source] = pool.sort(metric, "doc_id").select("doc_id", "size")
            units = int(pools[source]["size"].sum())
            summary[source] = {
                "n_selected": pool.height,
                "units": units,
                "repeats": targets[source] / units if units else 0.0,
            }
        sel = selection_table(pools, targets, budget=b.value)
        got = realised_share(sel, table.select("doc_id", "size"))
        for source, want in targets.items():
            slack = 0 if b.unit == "samples" else int(pools[source]["size"].max() or 0)  # type: ignore[arg-type]
            if want and abs(got.get(source, 0) - want) > slack:
                raise StageError(
                    f"selection for '{source}' realises {got.get(source, 0)} {b.unit}, planned {want}."
                )
        sha = write_selection(sel, tmp / "selection.parquet")
        _write_json(tmp / "summary.json", {"sha256": sha, "sources": summary, "targets": targets})
        return {"rows": sel.height}

    return run.step("select", params, [scores, prune, cal, fit_qqt, fit_mix], build)


def _accounting(
    docs: StageOutput, dedup: StageOutput | None, prune: StageOutput, cal: StageOutput, sel: pl.DataFrame
) -> pl.DataFrame:
    """source, reason, n: every row read ends in one reason (ingest rejects, duplicates, pruned, bucket not
    chosen, kept), so per source the counts sum to the rows read."""
    from curate.report import IngestReport

    rejects = IngestReport.from_stage(docs).reasons.select("source", "reason", n="rows")
    documents = _documents(docs, dedup)
    dups = documents.filter(pl.col("dup_kind").is_not_null()).group_by("source", "dup_kind").len("n")
    pruned = _read(prune, "prune.parquet")
    dropped = pruned.filter(~pl.col("kept")).group_by("source", "drop_reason").len("n")
    kept = pruned.filter("kept").select("doc_id", "source")
    in_union = kept.join(sel.select("doc_id"), on="doc_id")
    outside = kept.join(in_union, on="doc_id", how="anti").group_by("source").len("n")
    final = in_union.group_by("source").len("n")
    parts = [
        rejects.with_columns(pl.col("n").cast(pl.Int64)),
        dups.select("source", reason=pl.format("dup_{}", "dup_kind"), n=pl.col("n").cast(pl.Int64)),
        dropped.select("source", reason=pl.format("pruned_{}", "drop_reason"), n=pl.col("n").cast(pl.Int64)),
        outside.select("source", reason=pl.lit("not_selected"), n=pl.col("n").cast(pl.Int64)),
        final.select("source", reason=pl.lit("kept"), n=pl.col("n").cast(pl.Int64)),
    ]
    _ = cal
    return pl.concat(parts).sort("source", "reason")


def _provenance_inputs(*outs: StageOutput) -> dict[str, str]:
    """Input shard -> blake2b digest, from the ingest steps' records (`<source>/<relpath>@<digest>`)."""
    pairs = (item.rsplit("@", 1) for out in outs for item in out.info.get("inputs", []))
    return dict(sorted((path, digest) for path, digest in pairs))


def _manifest_config(cfg: CurateConfig) -> dict[str, JSONValue]:
    """The config as recorded in provenance: the keys that change the result (not [ray], no speed knobs)."""
    data = cfg.dump()
    data.pop("ray")
    data["embed"] = {"kind": data["embed"]["kind"]}
    return data


def _publish(
    run: _Run,
    *,
    docs: StageOutput,
    tdocs: StageOutput,
    dedup: StageOutput | None,
    scores: StageOutput,
    fit_mix: StageOutput,
    prune: StageOutput,
    cal: StageOutput,
    fit_qqt: StageOutput,
    sel: StageOutput,
) -> StageOutput:
    """manifest.json, selection.parquet, the exports and report.html, committed together."""
    cfg = run.cfg
    params: dict[str, JSONValue] = {"config": _manifest_config(cfg), "code_version": CODE_VERSION}
    inputs = [docs, tdocs, *([dedup] if dedup else []), scores, fit_mix, prune, cal, fit_qqt, sel]

    def build(tmp: Path) -> dict[str, Any]:
        from curate.exports import write_exports
        from curate.html_report import ReportData, write_report

        selection = pl.read_parquet(sel.path / "selection.parquet")
        summary = _read_json(sel, "summary.json")
        manifest = _build_manifest(run, docs, tdocs, fit_mix, prune, fit_qqt, summary)
        write_manifest(manifest, tmp / "manifest.json")
        paths = write_exports(manifest, selection, tmp)
        if _sha(paths["selection"]) != manifest.selection.sha256:
            raise StageError("the exported selection.parquet differs from the one the manifest pins.")
        holdout = fit_mix.path / "holdout.parquet"
        metric = cfg.score.bucket_metric
        write_report(
            ReportData(
                manifest=manifest,
                accounting=_accounting(docs, dedup, prune, cal, selection),
                scores=scores.scan().select("source", *{metric, cfg.score.prune_metric}).collect(),
                qqt_curves=_maybe(fit_qqt.path / "fitted.parquet"),
                qqt_choice=_maybe(fit_qqt.path / "unions.parquet"),
                projektor_holdout=_maybe(holdout),
                title=f"Curate run: {len(cfg.sources)} sources, budget {cfg.budget.value} {cfg.budget.unit}",
            ),
            tmp / "report.html",
        )
        return {"files": sorted(p.name for p in tmp.iterdir())}

    return run.step("publish", params, inputs, build)


def _sha(path: Path) -> str:
    from curate.exports import file_sha256

    return file_sha256(path)


def _maybe(path: Path) -> pl.DataFrame | None:
    return pl.read_parquet(path) if path.is_file() else None


def _prediction_method(method: str, fallback: str) -> str:
    """The manifest's prediction.method: which weights Projektor predicts, and why when it fell back."""
    text = f"projektor at {method} weights"
    return f"{text} (fallback: {fallback})" if fallback else text


def _build_manifest(
    run: _Run,
    docs: StageOutput,
    tdocs: StageOutput,
    fit_mix: StageOutput,
    prune: StageOutput,
    fit_qqt: StageOutput,
    summary: dict[str, Any],
) -> MixtureManifest:
    cfg = run.cfg
    weights = _read_json(fit_mix, "weights.json")
    total = sum(weights.values())
    plans = _read_json(prune, "plans.json")
    choice = _read_json(fit_qqt, "choice.json")
    n_docs = dict(docs.scan().group_by("source").len().collect().iter_rows())
    sources = []
    for name in sorted(cfg.sources):
        plan = plans[name]
        keep = 1.0 if plan["policy"] == "all" else cfg.score.keep_fraction
        sources.append(
            SourcePlan(
                name=name,
                n_docs=int(n_docs.get(name, 0)),
                n_kept=int(summary["sources"][name]["n_selected"]),
                weight=weights[name] / total,
                repeats=float(summary["sources"][name]["repeats"]),
                filters=(
                    Filter(
                        score=cfg.score.prune_metric,
                        policy=plan["policy"],
                        keep_fraction=keep,
                        threshold=plan["threshold"],
                    ),
                ),
                buckets=tuple(choice[name]["buckets"]),
            )
        )
    pred = _read_json(fit_mix, "prediction.json")
    laws = {
        k: Law(form=str(v["form"]), params=dict(v["params"]), fit_error=float(v["fit_error"]))
        for k, v in {**_read_json(fit_mix, "laws.json"), **_read_json(fit_qqt, "laws.json")}.items()
    }
    return MixtureManifest(
        sources=tuple(sources),
        budget=Budget(unit=cfg.budget.unit, value=cfg.budget.value),
        prediction=Prediction(
            metric=f"proxy {pred['metric']} on the target",
            value=pred["value"],
            interval=(pred["interval"][0], pred["interval"][1]),
            method=_prediction_method(pred["method"], pred["fallback"]),
        ),
        laws=laws,
        selection=Selection(path="selection.parquet", sha256=summary["sha256"]),
        provenance=Provenance(
            inputs=_provenance_inputs(docs, tdocs),
            config=_manifest_config(cfg),
            code_version=CODE_VERSION,
            seed=cfg.seed,
        ),
    )


# ----------------------------------------------------------------------------------------------------------
# entry points


def run_pipeline(config: CurateConfig, *, work: PathLike, executor: Executor | None = None) -> PipelineRun:
    """Run (or resume) every step of `config` in `work`; returns the manifest and where it was published."""
    run = _Run(cfg=config, work=Path(work), executor=executor or LocalExecutor(progress=False))
    docs, tdocs = _ingest(run)
    emb, temb = _embed(run, docs, tdocs)
    dedup = _dedup(run, docs, emb)
    _check_not_empty_after_dedup(_documents(docs, dedup), sorted(config.sources))
    scores = _score(run, docs, emb, temb, dedup)
    _check_budget(run, scores)
    cache: dict[str, _ProxySet] = {}

    def proxy() -> _ProxySet:
        if "set" not in cache:
            cache["set"] = _proxy_set(run, docs, emb, tdocs, temb, scores)
        return cache["set"]

    cal_mix = _calibrate_mix(run, proxy, [scores, emb, tdocs, temb])
    fit_mix = _fit_mix(run, cal_mix, proxy, scores)
    prune = _prune(run, scores, fit_mix)
    cal_qqt = _calibrate_qqt(run, proxy, scores, prune)
    fit_qqt = _fit_qqt(run, cal_qqt, fit_mix)
    sel = _select(run, scores, prune, cal_qqt, fit_qqt, fit_mix)
    out = _publish(
        run,
        docs=docs,
        tdocs=tdocs,
        dedup=dedup,
        scores=scores,
        fit_mix=fit_mix,
        prune=prune,
        cal=cal_qqt,
        fit_qqt=fit_qqt,
        sel=sel,
    )
    manifest = MixtureManifest.from_json((out.path / "manifest.json").read_text())
    return PipelineRun(manifest=manifest, out_dir=out.path, steps=dict(run.steps))


def execute(
    config: CurateConfig | PathLike,
    *,
    work: PathLike | None = None,
    address: str | None = None,
    local: bool = False,
) -> PipelineRun:
    """Run the pipeline on Ray (embedded, or the cluster at `address` or [ray] address) or, with `local`,
    in-process; `work` defaults to `work/` beside the config file."""
    cfg = config if isinstance(config, CurateConfig) else load_config(config)
    where = Path(work) if work is not None else Path(cfg.base_dir) / "work"
    if local:
        return run_pipeline(cfg, work=where, executor=LocalExecutor(progress=False))
    from pipelines.ray_executor import ray_executor
    from pipelines.runtime import init_ray

    target = address or cfg.ray.address or None
    init_ray(target, num_cpus=cfg.ray.num_cpus or None)
    options = {"batch_size": cfg.ray.batch_size, "concurrency": cfg.ray.concurrency}
    with ray_executor(target, **options) as executor:
        return run_pipeline(cfg, work=where, executor=executor)


def run(
    config: CurateConfig | PathLike, *, work: PathLike | None = None, address: str | None = None
) -> MixtureManifest:
    """`pipelines.run(config)`: the whole curation on Ray, resumable in `work`; returns the manifest."""
    return execute(config, work=work, address=address).manifest


def summary_table(result: PipelineRun) -> Table:
    """A rich table of the plan: per source weight, documents in and selected, repeats, buckets, filter."""
    m = result.manifest
    p = m.prediction
    title = f"mix for {m.budget.value:,} {m.budget.unit}"
    if p is not None:
        title += f": {p.metric} {p.value:.4g} [{p.interval[0]:.4g}, {p.interval[1]:.4g}]"
    table = Table(title=title, title_justify="left")
    for name in ("source", "weight", "docs", "selected", "repeats", "buckets", "filter"):
        table.add_column(name, justify="left" if name in ("source", "buckets", "filter") else "right")
    for s in m.sources:
        f = "; ".join(f"{x.policy} {x.score} keep {x.keep_fraction:g}" for x in s.filters)
        buckets = ",".join(map(str, s.buckets)) or "-"
        table.add_row(s.name, f"{s.weight:.3f}", str(s.n_docs), str(s.n_kept), f"{s.repeats:.2f}", buckets, f)
    return table

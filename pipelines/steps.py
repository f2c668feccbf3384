"""The pipeline as a declared list of steps (DESIGN.md section 3), and the runner that walks it.

A step has a name (its folder under the work dir), its own version (part of its content key), its inputs
(earlier steps, possibly depending on the config) and a function `run(ctx) -> StageOutput` that calls the
library function of its concept and commits a typed artifact: a Parquet side table or a frozen-dataclass
record (`curate.records`). `run_steps` runs the steps a target step needs, in list order; a committed key is
reused, so every face (`curate run`, `curate <stage> WORK`, the library calls, the benchmarks) reads and
writes the same outputs. `Step` itself lives in `pipelines.context`, beside the `RunContext` it runs
with, so that the step modules never import this list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from curate.centering import Centering
from curate.config import CurateConfig
from curate.errors import ConfigError
from curate.exports import EXPORT_FILES
from curate.ingest import VERSION as INGEST_VERSION
from curate.manifest import Prediction
from curate.report import IngestCounts
from curate.stages import Executor, LocalExecutor
from pipelines import data_steps, mixture_steps, publish, quality_steps, score_step
from pipelines.context import PARTS, Artifact, Reporter, RunContext, Step
from pipelines.mixture_steps import MixtureFit
from pipelines.publish import SelectionSummary
from pipelines.quality_steps import PrunePlan, QualityPlan
from pipelines.score_step import ScoreStats


def _dedup_inputs(cfg: CurateConfig) -> tuple[str, ...]:
    target = ("ingest", "ingest.target") if cfg.target is not None else ()
    return ("dedup.text", *target, *(("embed",) if cfg.dedup.semantic else ()))


def _score_inputs(cfg: CurateConfig) -> tuple[str, ...]:
    target = ("ingest.target", "embed.target") if cfg.target is not None else ()
    return ("ingest", "dedup", "embed", "center", *target)


PROXY_INPUTS = ("ingest", "embed", "center", "ingest.target", "embed.target")  # what `proxy_data` reads
DOCUMENTS = Artifact(tables=(PARTS, "rejects"), record=IngestCounts)
EMBEDDINGS = Artifact(tables=(PARTS,))
DEDUP_TABLE = Artifact(tables=(PARTS,))

STEPS: tuple[Step, ...] = (
    Step("ingest", INGEST_VERSION, (), DOCUMENTS, data_steps.ingest),
    Step("ingest.target", INGEST_VERSION, (), DOCUMENTS, data_steps.ingest_target),
    Step("dedup.text", 2, ("ingest",), DEDUP_TABLE, data_steps.dedup_text),
    Step("embed", 2, ("ingest", "dedup.text"), EMBEDDINGS, data_steps.embed),
    Step("embed.target", 2, ("ingest.target",), EMBEDDINGS, data_steps.embed_target),
    Step("dedup", 3, _dedup_inputs, DEDUP_TABLE, data_steps.dedup),
    Step("center", 2, ("embed", "dedup"), Artifact(record=Centering), data_steps.center),
    Step(
        "score",
        4,
        _score_inputs,
        Artifact(tables=("embedding", "text", "labelled"), record=ScoreStats),
        score_step.score,
    ),
    Step(
        "calibrate.mixture",
        4,
        ("score", *PROXY_INPUTS),
        Artifact(tables=("runs",)),
        mixture_steps.calibrate_mixture,
    ),
    Step(
        "fit.mixture",
        5,
        ("calibrate.mixture", "score", *PROXY_INPUTS),
        Artifact(tables=("holdout", "refine"), record=MixtureFit),
        mixture_steps.fit_mixture,
    ),
    Step(
        "prune",
        3,
        ("score", "fit.mixture", "ingest"),
        Artifact(tables=("prune",), record=PrunePlan),
        quality_steps.prune,
    ),
    Step(
        "calibrate.quality",
        5,
        ("score", "prune", "fit.mixture", *PROXY_INPUTS),
        Artifact(tables=("buckets", "pools", "sizes", "curves", "coverage")),
        quality_steps.calibrate_quality,
    ),
    Step(
        "fit.quality",
        4,
        ("calibrate.quality", "fit.mixture", "score", "ingest"),
        Artifact(tables=("fitted", "unions"), record=QualityPlan),
        quality_steps.fit_quality,
    ),
    Step(
        "select",
        3,
        ("ingest", "score", "prune", "calibrate.quality", "fit.quality", "fit.mixture"),
        Artifact(tables=("selection",), record=SelectionSummary),
        publish.select,
    ),
    Step(
        "predict",
        4,
        ("select", "fit.mixture", *PROXY_INPUTS),
        Artifact(tables=("curves",), record=Prediction),
        mixture_steps.predict_selection,
    ),
    Step(
        "publish",
        4,
        (
            "ingest",
            "ingest.target",
            "dedup",
            "score",
            "fit.mixture",
            "prune",
            "calibrate.quality",
            "fit.quality",
            "select",
            "predict",
        ),
        Artifact(files=("manifest.json", "report.html", *EXPORT_FILES.values())),
        publish.publish,
    ),
)
STEP_NAMES = tuple(s.name for s in STEPS)


def step(name: str) -> Step:
    """The declared step `name`."""
    for s in STEPS:
        if s.name == name:
            return s
    raise ConfigError(f"unknown step {name!r}; steps: {', '.join(STEP_NAMES)}.")


def closure(cfg: CurateConfig, targets: Sequence[str]) -> list[Step]:
    """The steps that `targets` need under `cfg` (themselves included), in list order."""
    wanted: set[str] = set()
    todo = list(targets)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(step(name).needs(cfg))
    return [s for s in STEPS if s.name in wanted]


def run_steps(
    cfg: CurateConfig,
    work: Path,
    *,
    until: Sequence[str] = ("publish",),
    executor: Executor | None = None,
    report: Reporter | None = None,
    on_step: Callable[[Step], None] | None = None,
    committed_only: bool = False,
) -> RunContext:
    """Run (or reuse) every step that the `until` steps need; returns the context with their outputs.
    `committed_only` runs nothing: StageError names the first step not committed for `cfg`."""
    ctx = RunContext(
        cfg=cfg,
        work=Path(work),
        executor=executor or LocalExecutor(),
        committed_only=committed_only,
        artifacts={s.name: s.artifact for s in STEPS},
    )
    if report is not None:
        ctx.report = report
    for s in closure(cfg, until):
        ctx.step = s
        if on_step is not None:
            on_step(s)
        ctx.outputs[s.name] = s.run(ctx)
    ctx.step = None
    return ctx

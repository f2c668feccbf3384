"""Entry points over the step list: run some or all steps of a config in a work dir, in-process or on Ray.

`execute` is what `curate run`, `curate mix`, the stage commands and the library calls use: it records the
config in the work dir (`config.json`, so a later stage command reuses it), builds the executor from `[ray]`
(embedded Ray started here is shut down on return; `local` runs in this process) and walks the steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from curate.config import CurateConfig, load_config, save_work_config
from curate.errors import StageError
from curate.io import PathLike
from curate.manifest import MixtureManifest
from curate.stages import Executor, LocalExecutor, StageOutput
from pipelines.context import Reporter, Step
from pipelines.steps import run_steps


@dataclass(frozen=True)
class PipelineRun:
    """What a run produced: the outputs of the steps it ran (by name) and, after publish, the manifest."""

    outputs: dict[str, StageOutput]

    @property
    def out_dir(self) -> Path:
        """The publish step's folder (manifest.json, exports, report.html)."""
        return self.outputs["publish"].path

    @property
    def manifest(self) -> MixtureManifest:
        """The published manifest."""
        return MixtureManifest.from_json((self.out_dir / "manifest.json").read_text())

    @property
    def manifest_path(self) -> Path:
        """manifest.json of this run."""
        return self.out_dir / "manifest.json"

    @property
    def report_path(self) -> Path:
        """report.html of this run."""
        return self.out_dir / "report.html"


@contextmanager
def executor_for(cfg: CurateConfig, *, address: str | None, local: bool) -> Iterator[Executor]:
    """The executor `[ray]` asks for: this process with `local`, else Ray (embedded or at `address`)."""
    if local:
        with nullcontext(LocalExecutor(batch_size=cfg.ray.batch_size)) as ex:
            yield ex
        return
    from pipelines.ray_executor import ray_executor

    r = cfg.ray
    with ray_executor(
        address or r.address or None,
        num_cpus=r.num_cpus or None,
        batch_size=r.batch_size,
        actors=r.actors,
        cpus_per_actor=r.cpus_per_actor,
        num_gpus=r.num_gpus,
        max_tasks=r.max_tasks,
    ) as ex:
        yield ex


def execute(
    config: CurateConfig | PathLike,
    *,
    work: PathLike | None = None,
    address: str | None = None,
    local: bool = False,
    until: Sequence[str] = ("publish",),
    report: Reporter | None = None,
    on_step: Callable[[Step], None] | None = None,
) -> PipelineRun:
    """Run (or resume) the steps `until` needs; `work` defaults to `work/` beside the config file."""
    cfg = config if isinstance(config, CurateConfig) else load_config(config)
    where = Path(work) if work is not None else Path(cfg.base_dir) / "work"
    save_work_config(cfg, where)
    with executor_for(cfg, address=address, local=local) as executor:
        ctx = run_steps(cfg, where, until=until, executor=executor, report=report, on_step=on_step)
    return PipelineRun(outputs=dict(ctx.outputs))


def committed(config: CurateConfig, work: PathLike, until: Sequence[str]) -> PipelineRun | None:
    """The outputs `config` selects in `work` for the steps `until` needs, when all are committed (runs
    nothing; None otherwise): how faces read a work dir holding runs of several configs."""
    try:
        ctx = run_steps(config, Path(work), until=until, committed_only=True)
    except StageError:
        return None
    return PipelineRun(outputs=dict(ctx.outputs))


def run(
    config: CurateConfig | PathLike, *, work: PathLike | None = None, address: str | None = None
) -> MixtureManifest:
    """`pipelines.run(config)`: the whole curation on Ray, resumable in `work`; returns the manifest."""
    return execute(config, work=work, address=address).manifest


def summary_table(manifest: MixtureManifest) -> Table:
    """A rich table of the plan: per source weight, documents in and selected, repeats, buckets, filter."""
    p = manifest.prediction
    title = f"mix for {manifest.budget.value:,} {manifest.budget.unit}"
    if p is not None:
        title += f": {p.metric} {p.value:.4g} [{p.interval[0]:.4g}, {p.interval[1]:.4g}]"
    table = Table(title=title, title_justify="left")
    for name in ("source", "weight", "docs", "selected", "repeats", "buckets", "filter"):
        table.add_column(name, justify="left" if name in ("source", "buckets", "filter") else "right")
    for s in manifest.sources:
        f = "; ".join(f"{x.policy} {x.score} keep {x.keep_fraction:g}" for x in s.filters)
        buckets = ",".join(map(str, s.buckets)) or "-"
        table.add_row(s.name, f"{s.weight:.3f}", str(s.n_docs), str(s.n_kept), f"{s.repeats:.2f}", buckets, f)
    return table

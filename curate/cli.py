"""The `curate` command: each subcommand parses, runs the steps it needs through `curate.api` and prints a
short table. Stage commands update the work dir's config and reuse every committed step, so
`curate score WORK` after `curate run` (or the other way round) does no work twice.

Errors Curate raises on purpose print one line to stderr and exit 2; `--verbose` shows the traceback and
the libraries' own logs. Commands that run steps take `--address` (a Ray cluster) or `--local` (this
process); by default they start an embedded Ray runtime and shut it down at exit.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from curate import api
from curate.config import CurateConfig, load_config
from curate.dedup.passes import dedup_summary
from curate.demo import build_demo_corpus, build_demo_target, write_demo_config
from curate.embeddings import read_space
from curate.errors import ConfigError, CurateError, FitWarning, UnreadableFileWarning
from curate.manifest import write_manifest
from curate.progress import StepProgress, quiet_libraries
from curate.records import read_record
from curate.report import IngestReport, report_table
from pipelines.quality_steps import QualityPlan
from pipelines.runner import PipelineRun, execute, summary_table
from pipelines.score_step import read_scores, summarize_scores

console = Console()
err_console = Console(stderr=True)

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(
    name: str, help_text: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Handler], Handler]:
    """Register a subcommand: its help line, its arguments and the handler that runs it."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (help_text, add_arguments, handler)
        return handler

    return register


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        err_console.print(
            f"curate: error: {message} (see '{self.prog} --help')", highlight=False, soft_wrap=True
        )
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per registered command."""
    parser = _Parser(
        prog="curate",
        description="Curate raw data shards into a filtered, weighted training mix with its evidence.",
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and library logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad arguments, input or config)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    quiet_libraries(verbose=args.verbose)
    _, _, handler = COMMANDS[args.command]
    try:
        return handler(args)
    except CurateError as exc:
        if args.verbose:
            raise
        err_console.print(
            f"curate {args.command}: error: {exc}", highlight=False, markup=False, soft_wrap=True
        )
        return 2
    except KeyboardInterrupt:
        err_console.print("curate: interrupted; rerun the same command to resume.")
        return 130


def _runtime(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else an embedded Ray)")
    where.add_argument("--local", action="store_true", help="run in this process, without Ray")


def _work(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", help="work dir (its config.json holds the settings of the last command)")


def _steps(
    args: argparse.Namespace, cfg: CurateConfig, steps: Sequence[str], work: str | None
) -> PipelineRun:
    """Run the steps `steps` need with one progress line per step, then print the warnings they raised (one
    line each); returns what they committed."""
    with warnings.catch_warnings(record=True) as caught, StepProgress(err_console) as bar:
        warnings.simplefilter("default")
        run = execute(
            cfg,
            work=work,
            address=args.address,
            local=args.local,
            until=steps,
            report=bar.advance_for,
            on_step=lambda s: bar.start(s.name),
        )
    ours = (FitWarning, UnreadableFileWarning, FutureWarning)
    for w in caught:
        if args.verbose or issubclass(w.category, ours):
            err_console.print(f"warning: {w.message}", highlight=False, soft_wrap=True)
    return run


def _table(title: str, frame: Any, left: Sequence[str] = ("source",)) -> Table:
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        table.add_column(column, justify="left" if column in left else "right")
    for row in frame.iter_rows():
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    return table


# --- ingest, report ---


def _ingest_arguments(p: argparse.ArgumentParser) -> None:
    _work(p)
    p.add_argument(
        "--source", action="append", required=True, metavar="NAME=GLOB", help="a source (repeat for several)"
    )
    p.add_argument("--text-field", default="text", help="field/column holding the text (default: text)")
    p.add_argument("--label-field", default=None, help="optional field/column holding a label")
    p.add_argument("--max-chars", type=int, default=1_000_000, help="reject longer texts as too_long")
    _runtime(p)


def _parse_sources(values: Sequence[str]) -> dict[str, str]:
    sources: dict[str, str] = {}
    for value in values:
        name, sep, pattern = value.partition("=")
        if not sep or not name or not pattern:
            raise ConfigError(f"--source must look like NAME=GLOB. Got {value!r} instead.")
        if name in sources:
            raise ConfigError(f"--source names must be unique. Got {name!r} twice.")
        sources[name] = str(Path(pattern).absolute())
    return sources


@command("ingest", "Read sources into one validated documents table plus rejects.", _ingest_arguments)
def _ingest(args: argparse.Namespace) -> int:
    cfg = api.ingest_config(
        _parse_sources(args.source),
        args.work,
        text_field=args.text_field,
        label_field=args.label_field,
        max_chars=args.max_chars,
    )
    run = _steps(args, cfg, ["ingest"], args.work)
    console.print(report_table(IngestReport.from_stage(run.outputs["ingest"])))
    return 0


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", help="work dir holding a committed ingest")
    p.add_argument("--config", help="the run to report (default: the work dir's config.json, its last run)")
    p.add_argument("--json", action="store_true", help="print the accounting as JSON")


@command(
    "report",
    "Per source: rows read, kept, rejected by reason; duplicates when deduplicated.",
    _report_arguments,
)
def _report(args: argparse.Namespace) -> int:
    cfg = api.config_of(args.work, args.config)
    docs = api.read_step(args.work, "ingest", config=cfg)
    report = IngestReport.from_stage(docs)
    dedup = api.committed_step(args.work, "dedup", config=cfg) or api.committed_step(
        args.work, "dedup.text", config=cfg
    )
    summary = None if dedup is None else dedup_summary(dedup.scan(), docs.scan())
    if args.json:
        data = report.to_dict()
        if summary is not None:
            data["duplicates"] = {r.pop("source"): r for r in summary.to_dicts()}
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    console.print(report_table(report))
    if summary is not None:
        console.print(_table(f"duplicates ({dedup.name} {dedup.key[:12]})", summary))  # type: ignore[union-attr]
    return 0


# --- dedup, embed, score, plan ---


def _dedup_arguments(p: argparse.ArgumentParser) -> None:
    _work(p)
    p.add_argument(
        "--method",
        action="append",
        choices=["exact", "fuzzy", "semantic"],
        help="repeatable; run in the order exact, fuzzy, semantic (default: the work dir's [dedup])",
    )
    p.add_argument("--threshold", type=float, help="fuzzy Jaccard cut in (0, 1] (default 0.8)")
    p.add_argument("--eps", type=float, help="semantic: duplicate when cosine > 1 - eps (default 0.05)")
    p.add_argument("--num-perm", type=int, help="MinHash permutations (default 128)")
    p.add_argument("--ngram", type=int, help="tokens per shingle (default 5)")
    p.add_argument("--shingle", choices=["word", "char"], help="shingle tokens (default word)")
    _runtime(p)


@command("dedup", "Mark exact, fuzzy (then semantic) duplicates in the dedup side table.", _dedup_arguments)
def _dedup(args: argparse.Namespace) -> int:
    cfg = api.dedup_config(
        args.work,
        methods=args.method,
        threshold=args.threshold,
        eps=args.eps,
        num_perm=args.num_perm,
        ngram=args.ngram,
        shingle=args.shingle,
    )
    run = _steps(args, cfg, ["dedup"], args.work)
    out = run.outputs["dedup"]
    summary = dedup_summary(out.scan(), run.outputs["ingest"].scan())
    console.print(_table(f"dedup {out.key}", summary))
    console.print(f"side table: {out.path}", highlight=False)
    return 0


def _embed_arguments(p: argparse.ArgumentParser) -> None:
    _work(p)
    p.add_argument(
        "--embedder",
        choices=["auto", "minilm", "static"],
        help="auto: static on CPU-only machines, minilm with a GPU (default: the work dir's [embed])",
    )
    _runtime(p)


@command("embed", "Embed the documents the text dedup kept into the embeddings side table.", _embed_arguments)
def _embed(args: argparse.Namespace) -> int:
    cfg = api.embed_config(args.work, embedder=args.embedder)
    out = _steps(args, cfg, ["embed"], args.work).outputs["embed"]
    space = read_space(out)
    table = Table(title="embed", title_justify="left")
    for column in ("embedder", "version", "dim", "rows", "skipped (duplicates)", "output"):
        table.add_column(column)
    rows, skipped = str(out.info.get("rows_out", "")), str(out.info.get("rows_skipped", ""))
    table.add_row(space.embedder, space.version, str(space.dim), rows, skipped, str(out.path))
    console.print(table)
    return 0


def _score_arguments(p: argparse.ArgumentParser) -> None:
    _work(p)
    p.add_argument(
        "--target", metavar="GLOB", help="target shards (glob or folder): adds target_dist and target_ngram"
    )
    p.add_argument("--n-clusters", type=int, help="number of prototypes (default: sqrt(n/2), at most 1000)")
    _runtime(p)


_SPARK = " ▁▂▃▄▅▆▇█"


@command(
    "score",
    "Score documents (prototypes, difficulty, target distance) into the score tables.",
    _score_arguments,
)
def _score(args: argparse.Namespace) -> int:
    cfg = api.score_config(args.work, target=args.target, n_clusters=args.n_clusters)
    out = _steps(args, cfg, ["score"], args.work).outputs["score"]
    table = Table(title=f"scores per source (larger = harder / further); key {out.key}", title_justify="left")
    for column in ("source", "score", "n", "null", "q10", "q50", "q90", "histogram (min..max)"):
        table.add_column(column, justify="left" if column in ("source", "score") else "right")
    for row in summarize_scores(read_scores(out)).iter_rows(named=True):
        top = max(row["hist"]) or 1
        spark = "".join(_SPARK[round(c / top * 8)] for c in row["hist"]) if row["n"] > row["n_null"] else ""
        quantiles = [f"{row[q]:.3f}" if row[q] is not None else "-" for q in ("q10", "q50", "q90")]
        table.add_row(row["source"], row["score"], str(row["n"]), str(row["n_null"]), *quantiles, spark)
    console.print(table)
    console.print(f"scores written to {out.path}", highlight=False)
    return 0


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    _work(p)
    p.add_argument("--budget", type=int, metavar="N", help="budget value (default: the work dir's [budget])")
    _runtime(p)


@command("plan", "Quality buckets, proxy curves, QQT fit: the bucket union per source.", _plan_arguments)
def _plan(args: argparse.Namespace) -> int:
    cfg = api.plan_config(args.work, budget=args.budget)
    out = _steps(args, cfg, ["fit.quality"], args.work).outputs["fit.quality"]
    plan = read_record(QualityPlan, out.path)
    table = Table(
        title=f"QQT plan per source ({cfg.score.bucket_metric} buckets, 0 = best)", title_justify="left"
    )
    for column in ("source", "buckets", "predicted loss", "note"):
        table.add_column(column)
    for name, q in sorted(plan.sources.items()):
        error = "-" if q.error is None else f"{q.error:.4f}"
        table.add_row(name, ",".join(map(str, q.buckets)) or "-", error, q.note or "")
    console.print(table)
    return 0


# --- mix, run, demo ---


def _config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline config (TOML; see pipelines/configs/default.toml)")
    p.add_argument("--work", default=None, help="work dir (default: work/ beside the config file)")
    _runtime(p)


def _mix_arguments(p: argparse.ArgumentParser) -> None:
    _config_arguments(p)
    p.add_argument("-o", "--output", default="mix.json", help="manifest path to write (default mix.json)")
    p.add_argument(
        "--method",
        choices=["projektor", "uniform", "proportional", "dml", "best_grid"],
        help="override [mixture] method (default: the config's)",
    )


def _print_run(run: PipelineRun) -> None:
    manifest = run.manifest
    console.print(summary_table(manifest))
    if manifest.prediction is not None:
        console.print(f"prediction: {manifest.prediction.method}", highlight=False)
    console.print(f"manifest: {run.manifest_path}\nreport:   {run.report_path}", highlight=False)


@command("mix", "Plan source weights, buckets and pruning; write the mixture manifest.", _mix_arguments)
def _mix(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.method is not None:
        cfg = cfg.model_copy(update={"mixture": cfg.mixture.model_copy(update={"method": args.method})})
    run = _steps(args, cfg, ["publish"], args.work)
    write_manifest(run.manifest, Path(args.output))
    _print_run(run)
    console.print(f"written: {args.output}", highlight=False)
    return 0


@command(
    "run", "Run the whole curation: shards, target, budget -> manifest, exports, report", _config_arguments
)
def _run(args: argparse.Namespace) -> int:
    _print_run(_steps(args, load_config(args.config), ["publish"], args.work))
    return 0


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", default="curate-demo", help="work dir for the demo (default: ./curate-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo corpus sample (default: 0)")
    _runtime(p)


@command(
    "demo", "Build a five-source demo corpus from registry data and run the whole curation.", _demo_arguments
)
def _demo(args: argparse.Namespace) -> int:
    work = Path(args.work)
    with err_console.status("building the demo corpus"):
        build_demo_corpus(work / "corpus", seed=args.seed)
        build_demo_target(work / "corpus", seed=args.seed)
    config = write_demo_config(work, seed=args.seed)
    _print_run(_steps(args, load_config(config), ["publish"], str(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `curate` command: each subcommand parses, calls one library function and prints a short table.

Errors Curate raises on purpose print one line to stderr and exit 2; `--verbose` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from curate.errors import CurateError

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
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
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
    _, _, handler = COMMANDS[args.command]
    try:
        return handler(args)
    except CurateError as exc:
        if args.verbose:
            raise
        err_console.print(f"curate {args.command}: error: {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("curate: interrupted; rerun the same command to resume.")
        return 130


# Subcommands below: each imports what it needs inside its handler so `curate --help` stays quick.

# --- ingest, report, demo (issue 3) ---


def _runtime_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else an embedded Ray)")
    where.add_argument("--local", action="store_true", help="run in this process, without Ray")


def _ingest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", help="work dir (created if missing); output goes to WORK/ingest/<key>/")
    p.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="NAME=GLOB",
        help="a source: NAME=GLOB or NAME=FOLDER (repeat for several)",
    )
    p.add_argument("--text-field", default="text", help="field/column holding the text (default: text)")
    p.add_argument("--label-field", default=None, help="optional field/column holding a label")
    p.add_argument("--max-chars", type=int, default=None, help="reject longer texts as too_long")
    _runtime_arguments(p)


def _parse_sources(values: Sequence[str]) -> dict[str, str]:
    from curate.errors import ConfigError

    sources: dict[str, str] = {}
    for value in values:
        name, sep, pattern = value.partition("=")
        if not sep or not name or not pattern:
            raise ConfigError(f"--source must look like NAME=GLOB. Got {value!r} instead.")
        if name in sources:
            raise ConfigError(f"--source names must be unique. Got {name!r} twice.")
        sources[name] = pattern
    return sources


def _run_ingest(
    sources: dict[str, str],
    work: str,
    args: argparse.Namespace,
    *,
    text_field: str = "text",
    label_field: str | None = None,
    max_chars: int | None = None,
) -> int:
    """Ingest with a rich progress line (in-process or on Ray), then print the report table."""
    import warnings
    from contextlib import AbstractContextManager, nullcontext

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from curate.errors import UnreadableFileWarning
    from curate.ingest import DEFAULT_MAX_CHARS, ingest_sources
    from curate.report import report_table
    from curate.stages import Executor, LocalExecutor

    runtime: AbstractContextManager[Executor]
    if args.local:
        runtime = nullcontext(LocalExecutor(progress=False))
    else:
        from pipelines.ray_executor import ray_executor

        runtime = ray_executor(args.address)
    columns = (TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("files"))
    with (
        runtime as executor,
        Progress(*columns, console=err_console, transient=True) as bar,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always", UnreadableFileWarning)
        task = bar.add_task("ingest", total=None)
        report = ingest_sources(
            sources,
            work,
            text_field=text_field,
            label_field=label_field,
            max_chars=DEFAULT_MAX_CHARS if max_chars is None else max_chars,
            executor=executor,
            on_progress=lambda n: bar.advance(task, n),
        )
    for w in caught:
        err_console.print(f"warning: {w.message}", highlight=False, soft_wrap=True)
    console.print(report_table(report))
    return 0


@command("ingest", "Read sources into one validated documents table plus rejects.", _ingest_arguments)
def _ingest(args: argparse.Namespace) -> int:
    sources = _parse_sources(args.source)
    return _run_ingest(
        sources,
        args.work,
        args,
        text_field=args.text_field,
        label_field=args.label_field,
        max_chars=args.max_chars,
    )


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", help="work dir holding a committed ingest")
    p.add_argument("--json", action="store_true", help="print the accounting as JSON")


@command("report", "Per source: rows read, kept, rejected by reason, exact dups, bytes.", _report_arguments)
def _report(args: argparse.Namespace) -> int:
    from curate.report import load_report, report_table

    report = load_report(args.work)
    if args.json:
        print(report.to_json())
    else:
        console.print(report_table(report))
    return 0


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", default="curate-demo", help="work dir for the demo (default: ./curate-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo corpus sample (default: 0)")
    _runtime_arguments(p)


@command("demo", "Build a multi-source demo corpus from registry data, ingest it, report.", _demo_arguments)
def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from curate.demo import build_demo_corpus

    work = Path(args.work)
    with err_console.status("building the demo corpus"):
        sources = build_demo_corpus(work / "corpus", seed=args.seed)
    _run_ingest(sources, str(work), args, label_field="label")
    return _demo_pipeline(str(work), args)  # issue 8: the whole chain on the demo corpus


def _demo_pipeline(work_dir: str, args: argparse.Namespace) -> int:
    """Write the demo's target and config, run the pipeline on them, print the plan and where it went."""
    from pathlib import Path

    from curate.demo import build_demo_target, write_demo_config
    from pipelines.curate_pipeline import execute, summary_table

    work = Path(work_dir)
    build_demo_target(work / "corpus", seed=args.seed)
    config = write_demo_config(work, seed=args.seed)
    with err_console.status("running the pipeline (dedup, embed, score, proxy runs, fits, plan)"):
        result = execute(config, work=work, address=args.address, local=args.local)
    console.print(summary_table(result))
    console.print(f"manifest: {result.manifest_path}\nreport:   {result.report_path}", highlight=False)
    return 0


# --- dedup (issue 4) ---


def _dedup_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", help="work dir holding a committed ingest output")
    p.add_argument(
        "--method",
        action="append",
        choices=["exact", "fuzzy", "semantic"],
        help="repeatable; run in the order exact, fuzzy, semantic (default: exact and fuzzy)",
    )
    p.add_argument("--threshold", type=float, default=0.8, help="fuzzy Jaccard cut in (0, 1] (default 0.8)")
    p.add_argument("--eps", type=float, default=0.05, help="semantic: duplicate when cosine > 1 - eps")
    p.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
    p.add_argument("--ngram", type=int, default=5, help="tokens per shingle (default 5)")
    p.add_argument("--shingle", choices=["word", "char"], default="word", help="shingle tokens")
    p.add_argument("--seed", type=int, default=0)


@command("dedup", "Mark exact, fuzzy and semantic duplicates in the dedup side table.", _dedup_arguments)
def _dedup(args: argparse.Namespace) -> int:
    from rich.table import Table

    from curate.api import dedup_documents
    from curate.dedup.step import dedup_summary

    out = dedup_documents(
        args.work,
        methods=args.method or ["exact", "fuzzy"],
        threshold=args.threshold,
        eps=args.eps,
        num_perm=args.num_perm,
        ngram=args.ngram,
        shingle=args.shingle,
        seed=args.seed,
    )
    summary = dedup_summary(out.path.parent.parent)
    table = Table(title=f"dedup {out.key}")
    for column in summary.columns:
        table.add_column(column, justify="left" if column == "source" else "right")
    for row in summary.iter_rows():
        table.add_row(*(str(v) for v in row))
    console.print(table)
    console.print(f"side table: {out.path}")
    return 0


# --- embed, score (issues 5, 10) ---


def _embed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", help="work dir holding a committed ingest output")
    p.add_argument(
        "--embedder",
        choices=["auto", "minilm", "static"],
        default="auto",
        help="auto (default): static on CPU-only machines, minilm when a GPU is present",
    )
    _runtime_arguments(p)


@command("embed", "Embed the latest ingested documents into the embeddings side table.", _embed_arguments)
def _embed(args: argparse.Namespace) -> int:
    from contextlib import AbstractContextManager, nullcontext

    from rich.table import Table

    from curate.api import embed_documents
    from curate.embeddings import read_space, resolve_kind
    from curate.stages import Executor, LocalExecutor

    runtime: AbstractContextManager[Executor]
    if args.local:
        runtime = nullcontext(LocalExecutor())
    else:
        import torch

        from pipelines.ray_executor import ray_executor

        on_gpu = resolve_kind(args.embedder) == "minilm" and torch.cuda.is_available()
        runtime = ray_executor(args.address, num_gpus=1.0 if on_gpu else 0.0)  # one actor per GPU
    with runtime as executor:
        out = embed_documents(args.work, embedder=args.embedder, executor=executor)
    space = read_space(out)
    table = Table(title="embed")
    for column in ("embedder", "version", "dim", "rows", "key", "output"):
        table.add_column(column)
    rows = str(out.info.get("rows_out", ""))
    table.add_row(space.embedder, space.version, str(space.dim), rows, out.key, str(out.path))
    console.print(table)
    return 0


def _score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", help="work dir holding a committed ingest output (embedded first if needed)")
    p.add_argument("--target", metavar="GLOB", help="target shards (glob or folder): adds target_sim")
    p.add_argument(
        "--label-field",
        metavar="F",
        help="documents column with class labels (e.g. label): EL2N, class_proto_dist",
    )
    p.add_argument("--k", type=int, help="number of prototypes (default: sqrt(n/2), at most 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of k-means and the proxy models (default 0)")
    p.add_argument(
        "--embedder",
        choices=["auto", "minilm", "static"],
        default="auto",
        help="embedding tier (default auto)",
    )


_SPARK = " ▁▂▃▄▅▆▇█"


@command(
    "score",
    "Score documents (prototypes, difficulty, target distance) into the scores table.",
    _score_arguments,
)
def _score(args: argparse.Namespace) -> int:
    from rich.table import Table

    from curate.api import score_documents, score_summary

    out = score_documents(
        args.work,
        target=args.target,
        label_field=args.label_field,
        k=args.k,
        seed=args.seed,
        embedder=args.embedder,
    )
    summary = score_summary(args.work)
    table = Table(
        title=f"scores per source: deciles and histogram (larger = harder / further); key {out.key}"
    )
    for column in ("source", "score", "n", "null", "q10", "q50", "q90", "histogram (min..max)"):
        table.add_column(column, justify="left" if column in ("source", "score") else "right")
    for row in summary.iter_rows(named=True):
        counts = row["hist"]
        top = max(counts) or 1
        spark = "".join(_SPARK[round(c / top * 8)] for c in counts) if row["n"] > row["n_null"] else ""
        quantiles = [f"{row[q]:.3f}" if row[q] is not None else "-" for q in ("q10", "q50", "q90")]
        table.add_row(row["source"], row["score"], str(row["n"]), str(row["n_null"]), *quantiles, spark)
    console.print(table)
    console.print(f"scores written to {out.path}")
    return 0


# --- plan (issue 6) ---


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", help="work dir with committed embeddings and scores (run `curate score` first)")
    p.add_argument(
        "--budget", type=int, action="append", required=True, metavar="N", help="samples seen (repeatable)"
    )
    p.add_argument(
        "--score",
        default="target_sim",
        choices=["proto_dist", "class_proto_dist", "difficulty", "target_sim"],
        help="score column that cuts the quality buckets (default target_sim)",
    )
    p.add_argument("--buckets", type=int, default=4, help="number of quantile buckets (default 4)")
    p.add_argument("--epochs", type=int, default=8, help="proxy epochs per bucket (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the proxies (default 0)")


@command("plan", "Quality buckets, proxy curves, QQT fit: the best bucket union per budget", _plan_arguments)
def _plan(args: argparse.Namespace) -> int:
    from rich.table import Table

    from curate.api import plan_quality

    result = plan_quality(
        args.work,
        budgets=args.budget,
        score=args.score,
        n_buckets=args.buckets,
        epochs=args.epochs,
        seed=args.seed,
    )
    fit = result.fit
    laws = Table(title=f"QQT per bucket of {args.score} (a = {fit.a:.4g}, d = {fit.d:.4g})")
    for column in ("pool", "docs", "b", "tau"):
        laws.add_column(column, justify="left" if column == "pool" else "right")
    for row in fit.params.sort("b").iter_rows(named=True):
        laws.add_row(row["pool"], str(row["pool_size"]), f"{row['b']:.4f}", f"{row['tau']:.2f}")
    plan = Table(title="best union of top buckets per budget (90% bootstrap interval)")
    for column in ("budget", "pools", "predicted error", "interval"):
        plan.add_column(column, justify="left" if column == "pools" else "right")
    for row in result.plan.iter_rows(named=True):
        interval = f"[{row['lo']:.4f}, {row['hi']:.4f}]"
        plan.add_row(str(row["budget"]), "+".join(row["pools"]), f"{row['error']:.4f}", interval)
    console.print(laws)
    console.print(plan)
    return 0


# --- mix (issue 7) ---


def _mix_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline config (TOML) naming the sources, the target and the budget")
    p.add_argument("-o", "--output", default="mix.json", help="manifest path to write (default mix.json)")
    p.add_argument("--work", default=None, help="work dir (default: work/ beside the config file)")
    p.add_argument(
        "--method",
        choices=["projektor", "uniform", "proportional", "dml", "best_grid"],
        default=None,
        help="override [mixture] method (default: the config's, projektor)",
    )


@command("mix", "Plan source weights (Projektor on the target); write the mixture manifest.", _mix_arguments)
def _mix(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.table import Table

    from curate.api import plan_mixture
    from curate.config import load_config
    from curate.manifest import write_manifest

    cfg = load_config(args.config)
    if args.method is not None:
        cfg = cfg.model_copy(update={"mixture": cfg.mixture.model_copy(update={"method": args.method})})
    manifest = plan_mixture(cfg, work=args.work)
    write_manifest(manifest, Path(args.output))
    table = Table(title=f"mix ({cfg.mixture.method})")
    for column in ("source", "weight", "n_kept"):
        table.add_column(column)
    for s in manifest.sources:
        table.add_row(s.name, f"{s.weight:.4f}", str(s.n_kept))
    console.print(table)
    if manifest.prediction is not None:
        pred = manifest.prediction
        lo, hi = pred.interval
        console.print(f"predicted {pred.metric}: {pred.value:.4f} [{lo:.4f}, {hi:.4f}] ({pred.method})")
    console.print(f"manifest: {args.output}", highlight=False)
    return 0


# --- run (issue 8) ---


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline config (TOML; see pipelines/configs/default.toml)")
    p.add_argument("--work", default=None, help="work dir (default: work/ beside the config file)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="Ray cluster to join (default: [ray] address, else embedded Ray)")
    where.add_argument("--local", action="store_true", help="run in this process, without Ray")


@command("run", "Run the whole curation: shards, target, budget -> manifest, exports, report", _run_arguments)
def _run(args: argparse.Namespace) -> int:
    from pipelines.curate_pipeline import execute, summary_table

    result = execute(args.config, work=args.work, address=args.address, local=args.local)
    console.print(summary_table(result))
    console.print(f"manifest: {result.manifest_path}\nreport:   {result.report_path}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

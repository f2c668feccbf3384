"""The self-contained report.html of a curation run: tables and matplotlib PNGs inlined as base64, no network.

Sections: row accounting per source and reason, score histograms, fitted QQT curves and the bucket union
chosen per budget, Projektor predicted vs observed on held-out mixtures, final weights, predicted metric.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from curate._validation import check_columns
from curate.io import write_text
from curate.manifest import MixtureManifest

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}
.note{color:#666;font-size:.9em}
"""


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """Everything the report shows; optional frames are left out (with a note) when a stage did not run.

    accounting: source, reason ("kept" or a drop reason), n. scores: source + one float column per score.
    qqt_curves: bucket, samples_seen, observed, predicted. qqt_choice: budget, union, predicted.
    projektor_holdout: mixture, predicted, observed.
    """

    manifest: MixtureManifest
    accounting: pl.DataFrame
    scores: pl.DataFrame | None = None
    qqt_curves: pl.DataFrame | None = None
    qqt_choice: pl.DataFrame | None = None
    projektor_holdout: pl.DataFrame | None = None
    title: str = "Curate run report"


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _table(df: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for row in df.iter_rows():
        cells = "".join(
            f"<td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td>" for v in row
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _accounting(df: pl.DataFrame) -> str:
    check_columns(df, {"source": pl.String, "reason": pl.String, "n": int}, what="report accounting")
    wide = (
        df.pivot(on="reason", index="source", values="n", aggregate_function="sum")
        .fill_null(0)
        .sort("source")
    )
    reasons = [c for c in wide.columns if c != "source"]
    wide = wide.with_columns(pl.sum_horizontal(reasons).alias("rows read"))
    fig = Figure(figsize=(7, 0.6 + 0.45 * wide.height))
    ax = fig.subplots()
    left = np.zeros(wide.height)
    for reason in reasons:
        vals = wide[reason].to_numpy().astype(float)
        ax.barh(wide["source"].to_list(), vals, left=left, label=reason)
        left += vals
    ax.set_xlabel("rows")
    ax.legend(fontsize=8, loc="lower right")
    return _table(wide) + _png(fig)


def _histograms(df: pl.DataFrame) -> str:
    cols = [c for c, t in df.schema.items() if c != "source" and t.is_float()]
    fig = Figure(figsize=(4 * max(1, len(cols)), 3))
    axes = np.atleast_1d(fig.subplots(1, max(1, len(cols))))
    for ax, col in zip(axes, cols, strict=False):
        for (src,), part in df.drop_nulls(col).group_by("source", maintain_order=True):
            ax.hist(part[col].to_numpy(), bins=30, alpha=0.5, label=str(src))
        ax.set_title(col)
        ax.legend(fontsize=7)
    return _png(fig)


def _qqt(curves: pl.DataFrame | None, choice: pl.DataFrame | None) -> str:
    """One panel per source: its buckets' observed and fitted curves, and its chosen union by budget."""
    if curves is None or not curves.height:
        return '<p class="note">No QQT fit in this run.</p>'
    check_columns(
        curves,
        {
            "source": pl.String,
            "bucket": pl.String,
            "samples_seen": None,
            "observed": float,
            "predicted": float,
        },
        what="report qqt_curves",
    )
    choice = choice if choice is not None else pl.DataFrame(schema={"source": pl.String})
    check_columns(choice, {"source": pl.String}, what="report qqt_choice")
    parts = []
    for (source,), mine in curves.sort("source").group_by("source", maintain_order=True):
        fig = Figure(figsize=(9, 3.6))
        ax, bx = fig.subplots(1, 2)
        for (bucket,), part in mine.sort("samples_seen").group_by("bucket", maintain_order=True):
            line = ax.plot(part["samples_seen"], part["predicted"], label=f"{bucket} fit")[0]
            ax.scatter(part["samples_seen"], part["observed"], s=12, color=line.get_color())
        ax.set_xscale("log")
        ax.set_xlabel("documents seen (with repeats)")
        ax.set_ylabel("proxy eval loss")
        ax.set_title(f"{source}: bucket curves", fontsize=9)
        ax.legend(fontsize=7)
        picked = choice.filter(pl.col("source") == source)
        best = pl.DataFrame()
        if picked.height:
            check_columns(picked, {"budget": None, "union": pl.String, "predicted": float}, what="qqt_choice")
            best = picked.sort("predicted").group_by("budget", maintain_order=True).first().sort("budget")
            bx.plot(best["budget"], best["predicted"], marker="o", ms=4, color="k")
            for b, u, y in best.select("budget", "union", "predicted").iter_rows():
                short = str(u).split(": ", 1)[-1].replace(f"{source}/", "")
                bx.annotate(short, (b, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
            bx.set_xscale("log")
            bx.set_xlabel("documents of this source in the budget")
            bx.set_ylabel("predicted loss of the best union")
            bx.set_title(f"{source}: chosen union by budget", fontsize=9)
        else:
            bx.set_axis_off()
        for axis in (ax, bx):  # major ticks only: minor log labels collide
            axis.xaxis.set_minor_formatter(NullFormatter())
            axis.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        table = _table(best.select("budget", "union", "predicted")) if picked.height else ""
        parts.append(f"<h3>{html.escape(str(source))}</h3>" + _png(fig) + table)
    return "".join(parts)


def _projektor(df: pl.DataFrame | None) -> str:
    if df is None or not df.height:
        return '<p class="note">No held-out mixtures in this run.</p>'
    check_columns(df, {"mixture": pl.String, "predicted": float, "observed": float}, what="report holdout")
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.scatter(df["observed"], df["predicted"])
    lo = float(min(df["observed"].min(), df["predicted"].min()))  # type: ignore[type-var, arg-type]
    hi = float(max(df["observed"].max(), df["predicted"].max()))  # type: ignore[type-var, arg-type]
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey")
    ax.set_xlabel("observed")
    ax.set_ylabel("predicted")
    mae = float((df["predicted"] - df["observed"]).abs().mean())  # type: ignore[arg-type]
    ax.set_title(f"held-out MAE {mae:.4g}")
    return _png(fig) + _table(df)


def _weights(m: MixtureManifest) -> str:
    """Per source its share of the tokens and of the documents trained, and why it got that share."""
    tokens = sum(s.tokens for s in m.sources) or 1
    docs = sum(s.n_kept * s.repeats for s in m.sources) or 1.0
    df = pl.DataFrame(
        {
            "source": [s.name for s in m.sources],
            "weight": [s.weight for s in m.sources],
            "tokens trained": [s.tokens for s in m.sources],
            "token share": [s.tokens / tokens for s in m.sources],
            "document share": [s.n_kept * s.repeats / docs for s in m.sources],
            "n_docs": [s.n_docs for s in m.sources],
            "n_kept": [s.n_kept for s in m.sources],
            "repeats": [s.repeats for s in m.sources],
            "buckets": [",".join(map(str, s.buckets)) or ("all" if s.weight else "-") for s in m.sources],
            "filters": [
                "; ".join(f"{f.policy}({f.score}, keep {f.keep_fraction:.3g})" for f in s.filters) or "none"
                for s in m.sources
            ],
            "why": [s.note for s in m.sources],
        }
    )
    fig = Figure(figsize=(6, 0.6 + 0.45 * df.height))
    ax = fig.subplots()
    ax.barh(df["source"].to_list(), df["token share"].to_numpy(), label="tokens")
    ax.barh(df["source"].to_list(), df["document share"].to_numpy(), height=0.35, label="documents")
    ax.set_xlabel(f"share of the trained {m.budget.unit}")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _table(df) + _png(fig)


def _prediction(m: MixtureManifest) -> str:
    p = m.prediction
    budget = f"{m.budget.value:,} {m.budget.unit}"
    if p is None:
        return f"<p>Budget {budget}. No prediction in this run.</p>"
    lo, hi = p.interval
    return (
        f"<p>Budget {budget}: predicted <b>{html.escape(p.metric)} = {p.value:.4g}</b> "
        f"(interval [{lo:.4g}, {hi:.4g}], method {html.escape(p.method)}).</p>"
    )


def render_report(data: ReportData) -> str:
    """The report as one HTML string: inline CSS and base64 PNGs only, no scripts, no external links."""
    m = data.manifest
    sections = [
        ("Predicted metric", _prediction(m)),
        ("Final weights", _weights(m)),
        ("Row accounting per source and reason", _accounting(data.accounting)),
        (
            "Score histograms",
            _histograms(data.scores)
            if data.scores is not None and data.scores.height
            else '<p class="note">No scores in this run.</p>',
        ),
        ("Quality–quantity trade-off (QQT)", _qqt(data.qqt_curves, data.qqt_choice)),
        ("Projektor: predicted vs observed on held-out mixtures", _projektor(data.projektor_holdout)),
    ]
    body = "".join(f"<h2>{html.escape(t)}</h2>{s}" for t, s in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(data.title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{html.escape(data.title)}</h1>{body}</body></html>\n"
    )


def write_report(data: ReportData, path: Path) -> Path:
    """Render `data` and write report.html atomically at `path`; returns `path`."""
    write_text(Path(path), render_report(data))
    return Path(path)

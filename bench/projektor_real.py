"""Projektor on real text with the product's n-gram proxy: stage-1 held-out error, stage-2 error at 10x the
largest pilot, p* against every baseline at N, and the held-out rank correlation of the mixture laws.

Target (the proxy's eval set, never trained on): 200 held-out State of the Union paragraphs, 200 held-out
English Wikipedia summaries and 100 BBC News articles (a domain no source holds), so the best mixture is
interior. Sources: sotu, wiki_en, wiki_fr (off-language) and junk (templated spam, web boilerplate and
keyword stuffing), 9,000 documents each: large enough that no run at N repeats a document.
The calibration is the product's: the sources and the target are written as JSONL shards and
`pipelines.runner.execute(config, until=["fit.mixture"])` runs every step up to fit.mixture (static
embeddings centred on the pool by the center step; dedup off, since this bench controls its sources' sizes):
the product's mixture design (6 per source: ~30 mixtures) x pilot sizes 50..800 (5 sizes, 16x) x 3 repeats,
nested samples, each largest pilot's own-sample OT, on Ray tasks. The bench reads the calibrate.mixture step's
committed runs and the fit.mixture step's MixtureFit record (its weights, law, held-out and backtest
errors), and refits with the functions fit.mixture calls (`scaling.projektor.fit_projektor`, `plan_weights`
through `compare_mixtures`, `scaling.mixture.fit_mixture_law`) for the per-law tables. Held-out mixtures
follow fit.mixture's rule (every 4th grid mixture, `mixture % 4 == 3`). Check: every grid mixture and every
plan is then trained for real at N = 8,000 documents (10x the largest pilot), 3 repeats each, on the
calibration step's own proxy task and pools (`pipelines.proxy_data.proxy_data` over `calibration_pool`).

Run: .venv/bin/python bench/projektor_real.py [--work DIR] [--out DIR]   (writes OUT/projektor_real.{md,png},
OUT = bench/results by default; with --work the pipeline's steps and the runs at N are kept in DIR and
reused by the next run). --smoke: 40 documents per source, 3 pilot sizes, N = 2x the largest, in this
process, into --out: a check that the script runs, not a measurement.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from curate.stages import Executor
    from pipelines.context import RunContext
    from scaling.mixture import LawMethod

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

SEED = 0
OUT = Path(__file__).parent / "results"
SOURCES = ("junk", "sotu", "wiki_en", "wiki_fr")  # sorted, as the product orders its sources
LAWS: tuple[LawMethod, ...] = ("dml", "dml2", "dml3", "quadratic", "regression", "projektor", "auto")
CONFIG = """seed = {seed}
[sources]
junk = "junk/*.jsonl"
sotu = "sotu/*.jsonl"
wiki_en = "wiki_en/*.jsonl"
wiki_fr = "wiki_fr/*.jsonl"
[target]
path = "target/*.jsonl"
[budget]
unit = "samples"
value = {n_big}
[embed]
kind = "static"
[dedup]
exact = false
fuzzy = false
semantic = false
[proxy]
pilot_sizes = {pilots}
repeats = {repeats}
mixtures_per_source = {per_source}
pool_rows = {pool}
eval_size = {n_target}
[mixture]
law = "{law}"
ot_max_points = {ot_points}
max_projection = 20
"""


@dataclass(frozen=True)
class Setup:
    """Sizes of one run: pilots, N (10x the largest pilot), documents per source, repeats, the lattice."""

    pilots: tuple[int, ...] = (50, 100, 200, 400, 800)
    n_big: int = 8000
    pool: int = 9000
    repeats: int = 3
    per_source: int = 6  # [proxy] mixtures_per_source
    ot_points: int = 500
    target: tuple[int, int, int] = (200, 200, 100)  # held-out sotu, wiki_en and bbc documents
    law: LawMethod = "auto"  # fit.mixture's [mixture] law (one of `laws`)
    laws: tuple[LawMethod, ...] = LAWS  # the laws compared in the report
    cv_rows: int = 3  # run sets of the cross-validation table (the last ones of: smallest, largest pilot, N)


# 20 mixtures identify dml (5 parameters) but not every law 'auto' may pick: the smoke run names dml
SMOKE = Setup(
    pilots=(2, 6, 20),
    n_big=40,
    pool=40,
    repeats=2,
    per_source=3,
    ot_points=50,
    target=(12, 12, 6),
    law="dml",
    laws=("dml",),
    cv_rows=1,
)


def load(z: Setup) -> tuple[dict[str, list[str]], list[str]]:
    """Source pools (z.pool documents each) and the target texts, disjoint, seeded."""
    from curate import corpora, junk

    rng = np.random.default_rng(SEED)
    n_sotu, n_wiki, n_bbc = z.target
    sotu = corpora.sotu_paragraphs(seed=SEED)["text"].to_list()
    wiki = corpora.wiki(seed=SEED)["text"].to_list()
    fr = corpora.wiki(lang="fr", seed=SEED)["text"].to_list()
    bbc = corpora.bbc_news(n_bbc, seed=SEED)["text"].to_list()
    s_idx, w_idx = rng.permutation(len(sotu)), rng.permutation(len(wiki))
    target = [sotu[i] for i in s_idx[:n_sotu]] + [wiki[i] for i in w_idx[:n_wiki]] + bbc
    third = z.pool // 3
    keywords = junk.topic_keywords(
        [sotu[i] for i in s_idx[n_sotu : n_sotu + 2000]] + [wiki[i] for i in w_idx[n_wiki : n_wiki + 2000]]
    )
    spam = junk.spam_emails(third, seed=SEED) + junk.boilerplate(third, seed=SEED + 1)
    spam += junk.keyword_stuffing(z.pool - 2 * third, keywords, seed=SEED + 2)
    pools = {
        "junk": [spam[i] for i in rng.permutation(len(spam))],
        "sotu": [sotu[i] for i in s_idx[n_sotu : n_sotu + z.pool]],
        "wiki_en": [wiki[i] for i in w_idx[n_wiki : n_wiki + z.pool]],
        "wiki_fr": [fr[i] for i in rng.permutation(len(fr))[: z.pool]],
    }
    return pools, target


def write_inputs(root: Path, z: Setup) -> Path:
    """The sources and the target as JSONL shards and a config naming them; returns the config path."""
    import json

    pools, target = load(z)
    for name, texts in [*pools.items(), ("target", target)]:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "part.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    config = CONFIG.format(
        seed=SEED, n_big=z.n_big, pilots=list(z.pilots), repeats=z.repeats, per_source=z.per_source,
        pool=z.pool, n_target=sum(z.target), ot_points=z.ot_points, law=z.law,
    )  # fmt: skip
    (root / "curate.toml").write_text(config)
    return root / "curate.toml"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile
    from contextlib import AbstractContextManager, nullcontext

    from curate.config import load_config
    from curate.stages import LocalExecutor
    from pipelines.mixture_steps import MixtureFit
    from pipelines.ray_executor import ray_executor
    from pipelines.runner import execute
    from pipelines.steps import run_steps

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="keep the steps and the runs at N here")
    parser.add_argument("--smoke", action="store_true", help="tiny, in this process: not a measurement")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of projektor_real.{md,png}")
    args = parser.parse_args(argv)
    z = SMOKE if args.smoke else Setup()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.work or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        cfg = load_config(write_inputs(root / "inputs", z))
        print(f"inputs written in {time.perf_counter() - t0:.0f}s {_load()}")
        env: AbstractContextManager[Executor] = (
            nullcontext(LocalExecutor()) if args.smoke else ray_executor(None, num_cpus=2)
        )
        with env as executor:
            t1 = time.perf_counter()
            execute(cfg, work=root / "work", local=args.smoke, until=["fit.mixture"])
            run = run_steps(cfg, root / "work", until=["fit.mixture"], executor=executor, committed_only=True)
            cal_s = time.perf_counter() - t1
            runs = run.table("calibrate.mixture", "runs").collect()
            print(f"calibration: {runs.height} pilot points in {cal_s:.0f}s {_load()}")
            grid = _design(runs)
            held = [i for i in range(len(grid)) if i % 4 == 3]  # fit.mixture's held-out mixtures
            train = runs.filter(~pl.col("mixture").is_in(held))
            results = fit_all(runs, train, z, _source_sizes(run))
            t2 = time.perf_counter()
            big = runs_at_n(run, cfg, executor, grid, results["plans"].select(SOURCES).to_numpy(), z, root)
            big_s = time.perf_counter() - t2
            print(f"{big.height} runs at N={z.n_big} in {big_s:.0f}s {_load()}")
        record = run.record("fit.mixture", MixtureFit)
    args.out.mkdir(parents=True, exist_ok=True)
    timing = (cal_s, big_s, time.perf_counter() - t0)
    text = report(
        runs, big, results, grid, held, record, z, timing=timing, plot=args.out / "projektor_real.png"
    )
    text = ("# (smoke run: tiny sizes, not a measurement)\n\n" if args.smoke else "") + text
    print(text)
    (args.out / "projektor_real.md").write_text(text + "\n", encoding="utf-8")
    return 0


def _design(runs: pl.DataFrame) -> np.ndarray:
    """The calibration step's design mixtures, in its order (the `mixture` index)."""
    return (
        runs.group_by("mixture")
        .agg(pl.col(s).first() for s in SOURCES)
        .sort("mixture")
        .select(SOURCES)
        .to_numpy()
    )


def _source_sizes(run: RunContext) -> dict[str, int]:
    """Scored documents per source, as fit.mixture counts them for the proportional baseline."""
    from pipelines.score_step import read_scores

    return dict(read_scores(run.outputs["score"]).group_by("source").len().collect().iter_rows())


def runs_at_n(
    run: RunContext, cfg: Any, executor: Executor, grid: np.ndarray, plans: np.ndarray, z: Setup, root: Path
) -> pl.DataFrame:
    """Every grid mixture and every plan trained at N (z.repeats each) on the calibration step's own proxy
    task and pools; the grid's runs are kept under root/bench/ by the calibration's key."""
    from pipelines.calibrate import calibrate_mixtures
    from pipelines.proxy_data import calibration_pool, proxy_data

    data = proxy_data(run, calibration_pool(run), eval_on="fit")  # the eval set the laws were fitted on
    pools = data.source_rows()
    pools = {s: pools[s] for s in SOURCES}
    cache = root / "bench" / f"grid_at_n-{run.outputs['calibrate.mixture'].key}-{z.n_big}.parquet"
    if cache.is_file():
        at_grid = pl.read_parquet(cache)
    else:
        at_grid = calibrate_mixtures(
            data.task, pools, grid, [z.n_big], executor=executor, repeats=z.repeats, seed=SEED + 1
        )
        cache.parent.mkdir(parents=True, exist_ok=True)
        at_grid.write_parquet(cache)
    at_plans = calibrate_mixtures(
        data.task, pools, plans, [z.n_big], executor=executor, repeats=z.repeats, seed=SEED + 2
    )
    return pl.concat([at_grid, at_plans.with_columns(mixture=pl.col("mixture") + len(grid))])


def _load() -> str:
    return "(load avg {:.1f} {:.1f} {:.1f}, 2 cores)".format(*os.getloadavg())


def _fit_at(train: pl.DataFrame, n: int, law: LawMethod) -> Any:
    """`law` fitted to the pilots of size n (None for 'projektor' where the OT is measured only at the
    largest pilot, or not at all)."""
    from scaling.mixture import fit_mixture_law

    part = train.filter(pl.col("n") == n)
    ot = part["ot"].to_numpy() if "ot" in part.columns and part["ot"].null_count() == 0 else None
    if law == "projektor" and ot is None:
        return None
    p, y = part.select(SOURCES).to_numpy(), part["metric"].to_numpy()
    return fit_mixture_law(p, y, ot=ot, method=law, sources=SOURCES)


def fit_all(
    runs: pl.DataFrame, train: pl.DataFrame, z: Setup, source_sizes: dict[str, int]
) -> dict[str, Any]:
    """Every fit of the report: each law per pilot size and projected to N on the training mixtures, the
    product's fit (fit.mixture's law) on every mixture, and its plans (p* and the baselines)."""
    from scaling.projektor import compare_mixtures, fit_projektor

    has_ot = "ot" in runs.columns and runs["ot"].null_count() < runs.height
    laws = [law for law in z.laws if law != "projektor" or has_ot]
    with warnings.catch_warnings(record=True) as caught:  # poorly identified laws warn; counted in the report
        warnings.simplefilter("always")
        per_size = {law: [_fit_at(train, n, law) for n in z.pilots] for law in laws}
        at_n = {
            law: fit_projektor(train, sources=SOURCES, n=z.n_big, method=law, max_projection=20, seed=SEED)
            for law in laws
        }
        full = fit_projektor(runs, sources=SOURCES, n=z.n_big, method=z.law, max_projection=20, seed=SEED)
        plans = compare_mixtures(full, runs, source_sizes=source_sizes, seed=SEED)
    return {"per_size": per_size, "at_n": at_n, "full": full, "plans": plans, "warnings": len(caught)}


def _means(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.group_by("mixture", "n", *SOURCES)
        .agg(metric=pl.col("metric").mean(), sd=pl.col("metric").std())
        .sort("mixture", "n")
    )


def _row(name: str, cells: list[str]) -> str:
    return f"| {name} | " + " | ".join(cells) + " |"


def report(
    runs: pl.DataFrame,
    big: pl.DataFrame,
    results: dict[str, Any],
    grid: np.ndarray,
    held: list[int],
    record: Any,
    z: Setup,
    *,
    timing: tuple[float, float, float],
    plot: Path,
) -> str:
    """The markdown report and the parity plot (written to `plot`)."""
    from scipy.stats import spearmanr

    from scaling.mixture import fit_mixture_law

    pilots, at_n = _means(runs), _means(big)
    measured = at_n.filter(pl.col("mixture") < len(grid))["metric"].to_numpy()
    noise_n = float(np.sqrt(np.mean(at_n["sd"].to_numpy() ** 2)))
    check = np.array(held)
    is_held = pl.col("mixture").is_in(held)
    spread = float(np.ptp(measured[check]))
    ratio = z.n_big / z.pilots[-1]
    lines = [
        f"# Projektor on real text, n-gram proxy (pilots {list(z.pilots)}, N = {z.n_big} = {ratio:g}x the "
        "largest)",
        "",
        f"sources {list(SOURCES)}, {z.pool} documents each; target: {z.target[0]} sotu + {z.target[1]} "
        f"wiki_en + {z.target[2]} bbc (held out)",
        f"calibration (the calibrate.mixture step): {len(grid)} design mixtures x {len(z.pilots)} sizes x "
        f"{z.repeats} repeats (nested samples); {len(check)} mixtures (every 4th, fit.mixture's rule) left "
        "out of every fit below; metric: target eval loss (nats/token)",
        f"timing: pipeline up to fit.mixture {timing[0]:.0f}s (committed steps are reused), runs at N "
        f"{timing[1]:.0f}s, total {timing[2]:.0f}s {_load()}",
        "",
        "## The fit.mixture step's record",
        "",
        f"weights {', '.join(f'{s} {w:.3f}' for s, w in record.weights.items())} (method {record.method}"
        + (f"; fallback: {record.fallback}" if record.fallback else "")
        + f"); law '{record.law_method}' at N = {record.n}; held-out MAE {record.holdout_mae:.4f} vs the "
        f"mean predictor's {record.mean_mae:.4f}; repeat noise {record.noise:.4f}; backtest "
        + (
            "-"
            if record.backtest_mae is None
            else f"MAE {record.backtest_mae:.4f}, bias {record.backtest_bias:+.4f}"
        ),
        "",
        "## Stage 1: held-out MAE of each law per pilot size (noise: sd of one run across repeats)",
        "",
        "| law | " + " | ".join(f"n={n}" for n in z.pilots) + f" | Spearman (held-out, n={z.pilots[-1]}) |",
        "|---|" + "---|" * (len(z.pilots) + 1),
    ]
    for law, fits in results["per_size"].items():
        cells, rho = [], float("nan")
        for fit, n in zip(fits, z.pilots, strict=True):
            if fit is None:
                cells.append("-")
                continue
            part = pilots.filter((pl.col("n") == n) & is_held)
            pred, obs = fit.predict(part.select(SOURCES).to_numpy()), part["metric"].to_numpy()
            cells.append(f"{np.mean(np.abs(pred - obs)):.4f}")
            rho = float(spearmanr(pred, obs).statistic)
        name = law if law != "auto" else f"auto ({', '.join(f.method for f in fits if f is not None)})"
        lines.append(_row(name, [*cells, f"{rho:.3f}"]))
    mean_cells = []
    for n in z.pilots:
        part = pilots.filter(pl.col("n") == n)
        obs = part.filter(is_held)["metric"].to_numpy()
        mean_cells.append(f"{np.mean(np.abs(part.filter(~is_held)['metric'].mean() - obs)):.4f}")
    lines.append(_row("mean predictor", [*mean_cells, ""]))
    sd = [float(np.sqrt(np.mean(pilots.filter(pl.col("n") == n)["sd"].to_numpy() ** 2))) for n in z.pilots]
    lines.append(_row("repeat noise (sd)", [*(f"{x:.4f}" for x in sd), ""]))
    spreads = [np.ptp(pilots.filter((pl.col("n") == n) & is_held)["metric"].to_numpy()) for n in z.pilots]
    lines.append(_row("spread, held-out (max - min)", [*(f"{x:.3f}" for x in spreads), ""]))

    full = results["full"]
    law = full.size_law
    lines += [
        "",
        f"## Stage 2 at N = {z.n_big}: {ratio:g}x the largest pilot (size law on every curve: "
        f"alpha = {law.alpha:.3f}, "
        f"n0 = {law.n0:.1f}; w(N) = {np.round(law.weights(z.n_big), 3).tolist()})",
        "",
        "| prediction at N | MAE | mean signed error | spread of measured | spread / MAE "
        "| repeat noise at N |",
        "|---|---|---|---|---|---|",
    ]
    parity = {}
    for name, model in results["at_n"].items():
        err = model.predict(grid[check]) - measured[check]
        parity[name] = model.predict(grid[check])
        label = f"stage 1+2, {name}" + (f" ({model.law.method})" if name == "auto" else "")
        lines.append(_row(label, [f"{np.mean(np.abs(err)):.4f}", f"{np.mean(err):+.4f}", f"{spread:.3f}",
                                  f"{spread / np.mean(np.abs(err)):.1f}", f"{noise_n:.4f}"]))  # fmt: skip
    mean_curve = pilots.pivot(on="n", index=[*SOURCES, "mixture"], values="metric").sort("mixture")
    own = mean_curve.select(str(n) for n in z.pilots).to_numpy() @ law.weights(z.n_big) - measured
    lines.append(_row(f"stage 2 alone (own pilots), {len(check)} held-out", [
        f"{np.mean(np.abs(own[check])):.4f}", f"{np.mean(own[check]):+.4f}", f"{spread:.3f}",
        f"{spread / np.mean(np.abs(own[check])):.1f}", f"{noise_n:.4f}"]))  # fmt: skip
    lines.append(_row(f"stage 2 alone (own pilots), all {len(grid)}", [
        f"{np.mean(np.abs(own)):.4f}", f"{np.mean(own):+.4f}", f"{np.ptp(measured):.3f}",
        f"{np.ptp(measured) / np.mean(np.abs(own)):.1f}", f"{noise_n:.4f}"]))  # fmt: skip
    back = full.backtest()
    if back is not None:
        lines.append(_row(f"stage-2 backtest ({z.pilots[-2]} -> {z.pilots[-1]}), every curve", [
            f"{np.mean(np.abs(back)):.4f}", f"{np.mean(back):+.4f}", "", "", f"{sd[-1]:.4f}"]))  # fmt: skip

    plans = results["plans"]
    real = at_n.filter(pl.col("mixture") >= len(grid)).sort("mixture")
    best_i = int(np.argmin(measured))
    lines += [
        "",
        f"## p* against the baselines at N = {z.n_big} (fit on every mixture; measured: mean ± sd of "
        f"{z.repeats} runs; lower is better)",
        "",
        "| method | " + " | ".join(SOURCES) + " | predicted [90%] | measured | minus best grid mixture |",
        "|---|" + "---|" * (len(SOURCES) + 3),
    ]
    for r, m in zip(plans.iter_rows(named=True), real.iter_rows(named=True), strict=True):
        lines.append(_row(r["method"], [
            *(f"{r[s]:.3f}" for s in SOURCES), f"{r['predicted']:.4f} [{r['lo']:.3f}, {r['hi']:.3f}]",
            f"{m['metric']:.4f} ± {m['sd']:.4f}", f"{m['metric'] - measured[best_i]:+.4f}"]))  # fmt: skip
    lines.append(
        _row(
            "best measured grid mixture",
            [*(f"{w:.3f}" for w in grid[best_i]), "", f"{measured[best_i]:.4f}", "0"],
        )
    )
    lines += [
        "",
        f"{z.law} picked '{full.law.method}' at N (cross-validated MAE on the projections "
        f"{full.law.cv_error:.4f}); its parameters: "
        + ", ".join(f"{k} {v:.3g}" for k, v in full.law.params().items()),
        "",
        "## fit_mixture_law on these runs: cross-validated MAE / Spearman (10 folds of whole mixtures)",
        "",
        "| runs | " + " | ".join(LAWS[:-1]) + " | auto picks |",
        "|---|" + "---|" * len(LAWS),
    ]
    tables = [(f"pilots n={n}", runs.filter(pl.col("n") == n)) for n in (z.pilots[0], z.pilots[-1])]
    tables.append((f"measured at N={z.n_big}", big.filter(pl.col("mixture") < len(grid))))
    tables = tables[-z.cv_rows :]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, frame in tables:
            ot = frame["ot"].to_numpy() if "ot" in frame.columns and frame["ot"].null_count() == 0 else None
            fit = fit_mixture_law(frame.select(SOURCES).to_numpy(), frame["metric"].to_numpy(), ot=ot)
            cells = [
                f"{fit.cv[m].mae:.4f} / {fit.cv[m].spearman:.3f}" if m in fit.cv else "-" for m in LAWS[:-1]
            ]
            lines.append(_row(label, [*cells, fit.method]))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines += [
        "",
        f"fits warned {results['warnings']} times (a law with < 3 mixtures per parameter, N past 5x).",
        f"peak RSS {rss:.0f} MiB (driver)",
    ]
    top = pilots.filter((pl.col("n") == z.pilots[-1]) & is_held)
    stage1 = results["per_size"][z.law][-1].predict(top.select(SOURCES).to_numpy())
    _plot(top["metric"].to_numpy(), stage1, measured[check], parity[z.law], z, plot)
    return "\n".join(lines)


def _plot(
    obs1: np.ndarray, pred1: np.ndarray, obs2: np.ndarray, pred2: np.ndarray, z: Setup, dest: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, obs, pred, title in (
        (axes[0], obs1, pred1, f"stage 1 at n={z.pilots[-1]} (held-out mixtures)"),
        (axes[1], obs2, pred2, f"stage 1+2 at N={z.n_big} (held-out mixtures)"),
    ):
        lo, hi = min(obs.min(), pred.min()), max(obs.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        ax.scatter(obs, pred)
        ax.set_xlabel("measured eval loss (nats/token)")
        ax.set_ylabel(f"predicted ({z.law} law)")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

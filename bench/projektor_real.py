"""Projektor on real text with the product's n-gram proxy: stage-1 held-out error, stage-2 error at 10x the
largest pilot, p* against every baseline at N, and the held-out rank correlation of the mixture laws.

Target (the proxy's eval set, never trained on): 200 held-out State of the Union paragraphs, 200 held-out
English Wikipedia summaries and 100 BBC News articles (a domain no source holds), so the best mixture is
interior. Sources: sotu, wiki_en, wiki_fr (off-language) and junk (templated spam, web boilerplate and
keyword stuffing), 9,000 documents each: large enough that no run at N repeats a document.
Calibration: simplex lattice (divisions 4 -> 35 mixtures) x pilot sizes 50..800 (5 sizes, 16x) x 3 repeats,
nested samples, each pilot's own-sample OT (static embeddings, centred on the pools), all through
`pipelines.calibrate.calibrate_mixtures` on Ray tasks; fits through `scaling.projektor.fit_projektor`,
`plan_weights` and `scaling.mixture.fit_mixture_law`, the functions the fit.mixture step calls.
Check: every 5th grid mixture is left out of stage 1; every grid mixture and every plan is then trained for
real at N = 8,000 documents (10x the largest pilot), 3 repeats each.

Run: .venv/bin/python bench/projektor_real.py   (writes bench/results/projektor_real.{md,png}); with
PROJEKTOR_BENCH_CACHE=DIR the proxy runs of the grid are kept in DIR and reused by the next run.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from scaling.mixture import LawMethod

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

PILOTS = (50, 100, 200, 400, 800)
N_BIG = 10 * PILOTS[-1]
POOL = 9000
REPEATS = 3
DIVISIONS = 4
OT_POINTS = 500
SEED = 0
OUT = Path(__file__).parent / "results"
SOURCES = ("junk", "sotu", "wiki_en", "wiki_fr")
LAWS: tuple[LawMethod, ...] = ("dml", "dml2", "dml3", "quadratic", "regression", "projektor", "auto")


def load() -> tuple[dict[str, list[str]], list[str]]:
    """Source pools (POOL documents each) and the target texts, disjoint, seeded."""
    from curate import corpora, junk

    rng = np.random.default_rng(SEED)
    sotu = corpora.sotu_paragraphs(seed=SEED)["text"].to_list()
    wiki = corpora.wiki(seed=SEED)["text"].to_list()
    fr = corpora.wiki(lang="fr", seed=SEED)["text"].to_list()
    bbc = corpora.bbc_news(100, seed=SEED)["text"].to_list()
    s_idx, w_idx = rng.permutation(len(sotu)), rng.permutation(len(wiki))
    target = [sotu[i] for i in s_idx[:200]] + [wiki[i] for i in w_idx[:200]] + bbc
    third = POOL // 3
    keywords = junk.topic_keywords([sotu[i] for i in s_idx[200:2200]] + [wiki[i] for i in w_idx[200:2200]])
    spam = junk.spam_emails(third, seed=SEED) + junk.boilerplate(third, seed=SEED + 1)
    spam += junk.keyword_stuffing(POOL - 2 * third, keywords, seed=SEED + 2)
    pools = {
        "junk": [spam[i] for i in rng.permutation(len(spam))],
        "sotu": [sotu[i] for i in s_idx[200 : 200 + POOL]],
        "wiki_en": [wiki[i] for i in w_idx[200 : 200 + POOL]],
        "wiki_fr": [fr[i] for i in rng.permutation(len(fr))[:POOL]],
    }
    return pools, target


def main() -> int:
    from curate.centering import fit_centering
    from curate.embeddings import load_embedder
    from pipelines.calibrate import NgramTask, OTTask, calibrate_mixtures
    from pipelines.ray_executor import RayExecutor
    from pipelines.runtime import init_ray, shutdown_ray
    from scaling.ngram import tokenize
    from scaling.simplex import simplex_grid

    t0 = time.perf_counter()
    pools_text, target = load()
    texts = [t for s in SOURCES for t in pools_text[s]]
    offsets = np.cumsum([0, *(len(pools_text[s]) for s in SOURCES)])
    pools = {s: np.arange(offsets[i], offsets[i + 1]) for i, s in enumerate(SOURCES)}
    task = NgramTask(corpus=tokenize(texts), eval_corpus=tokenize(target))
    embed = load_embedder("static")
    x, x_target = embed.encode(texts), embed.encode(target)
    centre = fit_centering(x)
    ot = OTTask(centre.apply(x), centre.apply(x_target), max_points=OT_POINTS, seed=SEED)
    grid = simplex_grid(len(SOURCES), divisions=DIVISIONS)
    print(f"data: {len(texts)} pool + {len(target)} target docs, {time.perf_counter() - t0:.0f}s {_load()}")
    cache = Path(os.environ["PROJEKTOR_BENCH_CACHE"]) if "PROJEKTOR_BENCH_CACHE" in os.environ else None
    init_ray(None, num_cpus=2)
    executor = RayExecutor()
    try:
        t1 = time.perf_counter()
        if cache is not None and (cache / "runs.parquet").is_file():
            runs = pl.read_parquet(cache / "runs.parquet")
        else:
            runs = calibrate_mixtures(
                task, pools, grid, PILOTS, executor=executor, repeats=REPEATS, ot=ot, seed=SEED
            )
        cal_s = time.perf_counter() - t1
        print(f"calibration: {runs.height} pilot points in {cal_s:.0f}s {_load()}")
        t2 = time.perf_counter()
        if cache is not None and (cache / "grid_at_n.parquet").is_file():
            at_grid = pl.read_parquet(cache / "grid_at_n.parquet")
        else:
            at_grid = calibrate_mixtures(
                task, pools, grid, [N_BIG], executor=executor, repeats=REPEATS, seed=SEED + 1
            )
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            runs.write_parquet(cache / "runs.parquet")
            at_grid.write_parquet(cache / "grid_at_n.parquet")
        held = [i for i in range(len(grid)) if i % 5 == 2]
        train = runs.filter(~pl.col("mixture").is_in(held))
        results = fit_all(runs, train)
        at_plans = calibrate_mixtures(
            task, pools, results["plans"].select(SOURCES).to_numpy(), [N_BIG], executor=executor,
            repeats=REPEATS, seed=SEED + 2,
        )  # fmt: skip
        big = pl.concat([at_grid, at_plans.with_columns(mixture=pl.col("mixture") + len(grid))])
        big_s = time.perf_counter() - t2
        print(f"{big.height} runs at N={N_BIG} in {big_s:.0f}s {_load()}")
    finally:
        shutdown_ray()
    text = report(runs, big, results, grid, held, timing=(cal_s, big_s, time.perf_counter() - t0))
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "projektor_real.md").write_text(text + "\n", encoding="utf-8")
    return 0


def _load() -> str:
    return "(load avg {:.1f} {:.1f} {:.1f}, 2 cores)".format(*os.getloadavg())


def _fit_at(train: pl.DataFrame, n: int, law: LawMethod) -> Any:
    """`law` fitted to the pilots of size n (None for 'projektor' where the OT is measured only at the
    largest pilot)."""
    from scaling.mixture import fit_mixture_law

    part = train.filter(pl.col("n") == n)
    ot = part["ot"].to_numpy() if part["ot"].null_count() == 0 else None
    if law == "projektor" and ot is None:
        return None
    p, y = part.select(SOURCES).to_numpy(), part["metric"].to_numpy()
    return fit_mixture_law(p, y, ot=ot, method=law, sources=SOURCES)


def fit_all(runs: pl.DataFrame, train: pl.DataFrame) -> dict[str, Any]:
    """Every fit of the report: each law per pilot size and projected to N on the training mixtures, the
    product's fit (auto) on every mixture, and its plans (p* and the baselines)."""
    from scaling.projektor import compare_mixtures, fit_projektor

    with warnings.catch_warnings(record=True) as caught:  # poorly identified laws warn; counted in the report
        warnings.simplefilter("always")
        per_size = {law: [_fit_at(train, n, law) for n in PILOTS] for law in LAWS}
        at_n = {
            law: fit_projektor(train, sources=SOURCES, n=N_BIG, method=law, max_projection=20) for law in LAWS
        }
        full = fit_projektor(runs, sources=SOURCES, n=N_BIG, max_projection=20)
        plans = compare_mixtures(full, runs, source_sizes=dict.fromkeys(SOURCES, POOL), seed=SEED)
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
    *,
    timing: tuple[float, float, float],
) -> str:
    """The markdown report and the parity plot."""
    from scipy.stats import spearmanr

    from scaling.mixture import fit_mixture_law

    pilots, at_n = _means(runs), _means(big)
    measured = at_n.filter(pl.col("mixture") < len(grid))["metric"].to_numpy()
    noise_n = float(np.sqrt(np.mean(at_n["sd"].to_numpy() ** 2)))
    check = np.array(held)
    is_held = pl.col("mixture").is_in(held)
    spread = float(np.ptp(measured[check]))
    lines = [
        f"# Projektor on real text, n-gram proxy (pilots {list(PILOTS)}, N = {N_BIG} = 10x the largest)",
        "",
        f"sources {list(SOURCES)}, {POOL} documents each; target: 200 sotu + 200 wiki_en + 100 bbc "
        "(held out)",
        f"calibration: {len(grid)} lattice mixtures x {len(PILOTS)} sizes x {REPEATS} repeats (nested "
        f"samples); {len(check)} mixtures (every 5th) left out of every fit below; metric: target eval loss "
        "(nats/token)",
        f"timing: calibration {'read from the cache' if timing[0] < 1 else f'{timing[0]:.0f}s'}, "
        f"runs at N {timing[1]:.0f}s, total {timing[2]:.0f}s {_load()}",
        "",
        "## Stage 1: held-out MAE of each law per pilot size (noise: sd of one run across repeats)",
        "",
        "| law | " + " | ".join(f"n={n}" for n in PILOTS) + f" | Spearman (held-out, n={PILOTS[-1]}) |",
        "|---|" + "---|" * (len(PILOTS) + 1),
    ]
    for law, fits in results["per_size"].items():
        cells, rho = [], float("nan")
        for fit, n in zip(fits, PILOTS, strict=True):
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
    for n in PILOTS:
        part = pilots.filter(pl.col("n") == n)
        obs = part.filter(is_held)["metric"].to_numpy()
        mean_cells.append(f"{np.mean(np.abs(part.filter(~is_held)['metric'].mean() - obs)):.4f}")
    lines.append(_row("mean predictor", [*mean_cells, ""]))
    sd = [float(np.sqrt(np.mean(pilots.filter(pl.col("n") == n)["sd"].to_numpy() ** 2))) for n in PILOTS]
    lines.append(_row("repeat noise (sd)", [*(f"{x:.4f}" for x in sd), ""]))
    spreads = [np.ptp(pilots.filter((pl.col("n") == n) & is_held)["metric"].to_numpy()) for n in PILOTS]
    lines.append(_row("spread, held-out (max - min)", [*(f"{x:.3f}" for x in spreads), ""]))

    full = results["full"]
    law = full.size_law
    lines += [
        "",
        f"## Stage 2 at N = {N_BIG}: 10x the largest pilot (size law on every curve: "
        f"alpha = {law.alpha:.3f}, "
        f"n0 = {law.n0:.1f}; w(N) = {np.round(law.weights(N_BIG), 3).tolist()})",
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
    own = mean_curve.select(str(n) for n in PILOTS).to_numpy() @ law.weights(N_BIG) - measured
    lines.append(_row(f"stage 2 alone (own pilots), {len(check)} held-out", [
        f"{np.mean(np.abs(own[check])):.4f}", f"{np.mean(own[check]):+.4f}", f"{spread:.3f}",
        f"{spread / np.mean(np.abs(own[check])):.1f}", f"{noise_n:.4f}"]))  # fmt: skip
    lines.append(_row(f"stage 2 alone (own pilots), all {len(grid)}", [
        f"{np.mean(np.abs(own)):.4f}", f"{np.mean(own):+.4f}", f"{np.ptp(measured):.3f}",
        f"{np.ptp(measured) / np.mean(np.abs(own)):.1f}", f"{noise_n:.4f}"]))  # fmt: skip
    back = full.backtest()
    if back is not None:
        lines.append(_row(f"stage-2 backtest ({PILOTS[-2]} -> {PILOTS[-1]}), every curve", [
            f"{np.mean(np.abs(back)):.4f}", f"{np.mean(back):+.4f}", "", "", f"{sd[-1]:.4f}"]))  # fmt: skip

    plans = results["plans"]
    real = at_n.filter(pl.col("mixture") >= len(grid)).sort("mixture")
    best_i = int(np.argmin(measured))
    lines += [
        "",
        f"## p* against the baselines at N = {N_BIG} (fit on every mixture; measured: mean ± sd of {REPEATS} "
        "runs; lower is better)",
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
        f"auto picked '{full.law.method}' at N (cross-validated MAE on the projections "
        f"{full.law.cv_error:.4f}); its parameters: "
        + ", ".join(f"{k} {v:.3g}" for k, v in full.law.params().items()),
        "",
        "## fit_mixture_law on these runs: cross-validated MAE / Spearman (10 folds of whole mixtures)",
        "",
        "| runs | " + " | ".join(LAWS[:-1]) + " | auto picks |",
        "|---|" + "---|" * len(LAWS),
    ]
    tables = [(f"pilots n={n}", runs.filter(pl.col("n") == n)) for n in (PILOTS[0], PILOTS[-1])]
    tables.append((f"measured at N={N_BIG}", big.filter(pl.col("mixture") < len(grid))))
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
    top = pilots.filter((pl.col("n") == PILOTS[-1]) & is_held)
    stage1 = results["per_size"]["auto"][-1].predict(top.select(SOURCES).to_numpy())
    _plot(top["metric"].to_numpy(), stage1, measured[check], parity["auto"])
    return "\n".join(lines)


def _plot(obs1: np.ndarray, pred1: np.ndarray, obs2: np.ndarray, pred2: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, obs, pred, title in (
        (axes[0], obs1, pred1, f"stage 1 at n={PILOTS[-1]} (held-out mixtures)"),
        (axes[1], obs2, pred2, f"stage 1+2 at N={N_BIG} (held-out mixtures)"),
    ):
        lo, hi = min(obs.min(), pred.min()), max(obs.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        ax.scatter(obs, pred)
        ax.set_xlabel("measured eval loss (nats/token)")
        ax.set_ylabel("predicted (auto law)")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(OUT / "projektor_real.png", dpi=110)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

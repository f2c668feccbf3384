"""QQT on real text with the product's calibration and fit: buckets that differ in quality or in what of
the target they cover, seeds, unions never fitted nor used to choose the union law, decisions checked.

Data: labelled English Wikipedia summaries (11 topics), 1,500 of them held out as eval rows. Two sources:
(1) label noise, a controlled input built here: four random draws of 800 documents with 0 / 10 / 30 / 50 %
of their labels replaced at random (graded quality, one text distribution), static embeddings centred on
the pool's mean (as the center step does, `curate.centering.fit_centering`), the product's MLP probe task
(`pipelines.calibrate.ProbeTask`) and the functions the quality steps call (`calibrate_buckets`,
`coverage_gaps`, `fit_qqt`, `choose_union_rule`); (2) target distance, on the product path: 3,200 other
documents as one labelled source (a second source of 3,200 more, `wiki_b`, because the mixture steps the
quality steps depend on need >= 2 sources; uniform weights, so each gets a share) and the eval rows as the
labelled target, run by `pipelines.runner.execute(config, until=["fit.quality"])` with the probe proxy,
quality buckets = quartiles of `target_dist` (1 - cos to the centred target's mean direction: they differ in
what of the target they cover), no pruning and no dedup (sizes stay controlled); the bench reads the
calibrate.quality step's committed buckets, curves (every bucket, and the rule unions q0+q1 and q0+q3, alike
and unlike, that choose the union law) and coverage gaps, and the fit.quality step's QualityPlan record, and
trains the unions it evaluates with that step's own proxy task and pools (`pipelines.proxy_data`). Proxy:
AdamW, learning rate decaying to 0 at each run's own budget, chosen on a validation split, never these eval
rows; a curve point at k passes is a run trained k passes; eval error rate (1 - accuracy), >= 5 seeds, Ray
tasks. Fit: `scaling.qqt.fit_qqt` on the single buckets; union law (rule gamma, coverage kappa):
`choose_union_rule` on the rule unions (its error widens the intervals); evaluated on unions never fitted nor
used to choose the law, alike and unlike pairs and a triple, at 1, 2 and 4 passes: relative errors beside the
standard error of the observed mean (5 seeds), signs, 90% interval coverage; the decision regret at every
budget where buckets and unions were measured together (`scaling.qqt_check`); buckets that measurably harm.
Writes OUT/qqt_real.md (OUT = bench/results by default).

Usage: HF_HUB_OFFLINE=1 .venv/bin/python bench/qqt_real.py [--seeds 5] [--bucket 800] [--out DIR]
(--smoke: 2 seeds, buckets of 40 documents, 120 eval rows, 4 pass counts, no bootstrap (so no intervals), in
this process, into --out: a check that the script runs, not a measurement).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from curate import corpora
from curate.centering import fit_centering
from curate.embeddings import load_embedder
from curate.stages import Executor, LocalExecutor
from pipelines.calibrate import ProbeTask, calibrate_buckets
from pipelines.quality_steps import QualityPlan
from pipelines.ray_executor import ray_executor
from scaling.coverage import coverage_gaps, union_key
from scaling.qqt import QQTFit, fit_qqt
from scaling.qqt_check import decision_regret, harmful_buckets, observed_means
from scaling.qqt_union import GAMMAS, KAPPAS, UnionLaw, fit_union_law

RESULTS = Path(__file__).parent / "results"
NOISE = {"noise00": 0.0, "noise10": 0.1, "noise30": 0.3, "noise50": 0.5}
EPOCHS = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
PASSES = (1.0, 2.0, 4.0)  # where the evaluated unions are compared (each must be in the epochs)
SOURCE = "wiki"  # the target-distance source of the product run
CONFIG = """seed = 0
[sources.wiki]
path = "wiki/*.jsonl"
label_field = "label"
[sources.wiki_b]
path = "wiki_b/*.jsonl"
label_field = "label"
[target]
path = "target/*.jsonl"
label_field = "label"
[budget]
unit = "samples"
value = {budget}
[embed]
kind = "static"
[dedup]
exact = false
fuzzy = false
semantic = false
[score]
bucket_metric = "target_dist"
n_buckets = 4
policy = "all"
[proxy]
kind = "probe"
pilot_sizes = {pilots}
repeats = 1
seeds = {seeds}
bucket_epochs = {epochs}
mixtures_per_source = 3
pool_rows = {pool}
bucket_rows = {pool}
eval_size = {n_eval}
bootstrap = {bootstrap}
[mixture]
method = "uniform"
law = "regression"
probe_steps = {probe_steps}
"""


@dataclass(frozen=True)
class Setup:
    """Sizes of one run."""

    seeds: int = 5
    bucket: int = 800
    n_docs: int | None = None  # labelled Wikipedia summaries drawn (None: all of them)
    n_eval: int = 1500
    epochs: tuple[float, ...] = tuple(EPOCHS)
    bootstrap: int = 30
    probe_steps: int = 300  # the mixture calibration's probe runs (the steps before the quality ones)


SMOKE = Setup(
    seeds=2, bucket=40, n_docs=600, n_eval=120, epochs=(0.5, 1.0, 2.0, 4.0), bootstrap=0, probe_steps=20
)


@dataclass(frozen=True)
class Part:
    """One source of the bench: its single buckets' curves, the unions that choose the rule, those
    evaluated, and every pool's training rows (sizes)."""

    name: str
    curves: pl.DataFrame  # pool, seed, samples_seen, error
    sizes: dict[str, int]
    buckets: list[str]
    rule_unions: dict[str, list[str]]
    eval_unions: dict[str, list[str]]
    coverage: pl.DataFrame  # union (scaling.coverage.union_key of its buckets), gap, ...


def wiki_rows(n_docs: int | None, n_eval: int, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Labelled English Wikipedia summaries (all of them, or a seeded sample of n_docs), the held-out eval
    rows and the rest, seeded."""
    docs = corpora.wiki(n_docs, labelled_only=True, seed=0)
    order = np.random.default_rng(seed).permutation(docs.height)
    return docs, order[:n_eval], order[n_eval:]


def label_noise(
    docs: pl.DataFrame, eval_rows: np.ndarray, rest: np.ndarray, z: Setup, executor: Executor
) -> Part:
    """The controlled source: graded label noise on four draws of `bucket` documents."""
    labels = sorted(docs["label"].unique().to_list())
    y = docs["label"].replace_strict(labels, list(range(len(labels))), return_dtype=pl.Int64).to_numpy()
    raw = load_embedder("static").encode(docs["text"].to_list())
    x = fit_centering(raw).apply(raw)
    rng = np.random.default_rng(1)
    bucket = z.bucket
    noisy: dict[str, np.ndarray] = {}
    y_noisy = y.copy()
    for i, (name, rate) in enumerate(NOISE.items()):
        rows = rest[i * bucket : (i + 1) * bucket]
        flip = rows[rng.random(bucket) < rate]
        y_noisy[flip] = rng.integers(0, len(labels), len(flip))
        noisy[name] = rows
    task = ProbeTask(x=x, y=y_noisy, x_eval=x[eval_rows], y_eval=y[eval_rows], n_classes=len(labels))
    rule = {"noise00+noise10": ["noise00", "noise10"], "noise00+noise50": ["noise00", "noise50"]}
    evals = {
        "noise00+noise30": ["noise00", "noise30"],
        "noise10+noise30": ["noise10", "noise30"],
        "noise10+noise50": ["noise10", "noise50"],
        "noise00+noise10+noise30": ["noise00", "noise10", "noise30"],
    }
    pools = dict(noisy)
    for name, members in {**rule, **evals}.items():
        pools[name] = np.concatenate([noisy[m] for m in members])
    curves = calibrate_buckets(task, pools, executor=executor, epochs=z.epochs, max_rows=10**9, seeds=z.seeds)
    sizes = {name: len(rows) for name, rows in pools.items()}
    subsets = [c for k in (2, 3, 4) for c in itertools.combinations(sorted(noisy), k)]
    gaps = coverage_gaps({n: x[r] for n, r in noisy.items()}, x[eval_rows], sizes, subsets, seed=0)
    return Part("label noise", curves.select("pool", "seed", "samples_seen", "error"), sizes, list(noisy),
                rule, evals, gaps)  # fmt: skip


def target_distance(
    docs: pl.DataFrame,
    eval_rows: np.ndarray,
    rest: np.ndarray,
    z: Setup,
    executor: Executor,
    root: Path,
    *,
    local: bool,
) -> tuple[Part, QualityPlan]:
    """The product path: buckets of target_dist cut and run by the calibrate.quality step, its rule-choice
    unions, and the evaluated unions trained on that step's own proxy task; returns the part and the
    fit.quality step's QualityPlan record."""
    from curate.config import load_config
    from pipelines.proxy_data import calibration_pool, proxy_data
    from pipelines.runner import execute
    from pipelines.steps import run_steps

    bucket = z.bucket
    k = len(NOISE) * bucket
    pool, other = rest[k : 2 * k], rest[2 * k : 3 * k]
    for name, rows in ((SOURCE, pool), ("wiki_b", other), ("target", eval_rows)):
        (root / name).mkdir(parents=True, exist_ok=True)
        shard = docs[rows].select("text", "label")
        (root / name / "part.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in shard.iter_rows(named=True))
        )
    pilots = [max(2, bucket // 40), max(6, bucket // 12), bucket]
    config = CONFIG.format(
        budget=len(pool), pilots=pilots, seeds=z.seeds, epochs=list(z.epochs), pool=len(pool),
        n_eval=len(eval_rows), bootstrap=z.bootstrap, probe_steps=z.probe_steps,
    )  # fmt: skip
    (root / "curate.toml").write_text(config)
    cfg = load_config(root / "curate.toml")
    execute(cfg, work=root / "work", local=local, until=["fit.quality"])
    ctx = run_steps(cfg, root / "work", until=["fit.quality"], executor=executor, committed_only=True)
    table = ctx.table("calibrate.quality", "buckets").collect()
    curves = ctx.table("calibrate.quality", "curves").collect()
    pools = ctx.table("calibrate.quality", "pools").filter(pl.col("source") == SOURCE).collect()
    singles = pools.filter(~pl.col("union"))["pool"].to_list()
    rule = {
        r["pool"]: [f"{SOURCE}/q{b}" for b in r["buckets"]]
        for r in pools.filter("union").iter_rows(named=True)
    }
    evals = {f"{SOURCE}/q{'+'.join(map(str, b))}": b for b in ([0, 2], [1, 2], [1, 3], [2, 3], [0, 1, 2])}
    data = proxy_data(ctx, calibration_pool(ctx), eval_on="fit")
    members = {
        name: data.rows(table.filter((pl.col("source") == SOURCE) & pl.col("bucket").is_in(b))["doc_id"])
        for name, b in evals.items()
    }
    more = calibrate_buckets(
        data.task, members, executor=executor, epochs=z.epochs, max_rows=cfg.proxy.bucket_rows,
        seeds=cfg.proxy.seeds, seed=cfg.seed + 1,
    )  # fmt: skip
    both = pl.concat([c.select("pool", "seed", "samples_seen", "error", "pool_rows") for c in (curves, more)])
    sizes = dict(both.group_by("pool").agg(pl.col("pool_rows").first()).iter_rows())
    part = Part(
        "target distance (product path)",
        both.drop("pool_rows"),
        sizes,
        singles,
        rule,
        {name: [f"{SOURCE}/q{b}" for b in bs] for name, bs in evals.items()},
        ctx.table("calibrate.quality", "coverage").filter(pl.col("source") == SOURCE).collect(),
    )
    return part, ctx.record("fit.quality", QualityPlan)


@dataclass(frozen=True)
class Fitted:
    """One source's fit under the chosen union law and how it did on the unions it never saw."""

    law: UnionLaw  # single buckets, under the d, gamma and kappa chosen on the rule unions
    unions: pl.DataFrame  # per evaluated union and pass count: observed, its se, paper and chosen laws
    regret: pl.DataFrame  # per budget: the pool the law picks among those observed there, and the best
    harmful: list[str]  # buckets whose addition raised the observed error wherever it was measured


def members_of(part: Part) -> dict[str, list[str]]:
    """Every measured pool's buckets: a bucket is its own, a union its members."""
    return {**{b: [b] for b in part.buckets}, **part.rule_unions, **part.eval_unions}


def fit_part(part: Part, *, n_bootstrap: int) -> Fitted:
    """QQT on the single buckets with the coverage gaps; d, gamma and kappa chosen on the rule unions
    (`fit_union_law`, as fit.quality does; their error widens the intervals) beside the paper's law (d from
    the single buckets, gamma = 1, no coverage credit); each evaluated union's observed and predicted error
    at 1, 2 and 4 passes, the decision regret per budget and the harmful buckets."""
    curves, sizes = part.curves, part.sizes
    single = curves.filter(pl.col("pool").is_in(part.buckets))
    gaps = dict(part.coverage.select("union", "gap").iter_rows())
    bucket_sizes = {b: sizes[b] for b in part.buckets}
    rule_curves = curves.filter(pl.col("pool").is_in(list(part.rule_unions)))
    law = fit_union_law(single, bucket_sizes, rule_curves, part.rule_unions, gaps, n_bootstrap=n_bootstrap)
    paper = fit_qqt(single, bucket_sizes, n_bootstrap=n_bootstrap, seed=0).with_gamma(1.0)
    laws = {"paper": paper.with_model_error(law.fit.model_error), "chosen": law.fit}
    means = observed_means(curves)
    rows = []
    for name, members in part.eval_unions.items():
        for passes in PASSES:
            n = round(sizes[name] * passes)
            at = means.filter((pl.col("pool") == name) & (pl.col("samples_seen") == n)).row(0, named=True)
            row = {"source": part.name, "union": name, "passes": passes, "observed": at["observed"],
                   "rel_se": at["se"] / at["observed"], "gap": gaps.get(union_key(members), 0.0)}  # fmt: skip
            for label, version in laws.items():
                value, lo, hi = version.predict_interval(members, n)
                row |= {label: value, f"{label}_err": (value - at["observed"]) / at["observed"],
                        f"{label}_lo": lo, f"{label}_hi": hi}  # fmt: skip
            rows.append(row)
    measured = members_of(part)
    regret = decision_regret(law.fit, measured, means)
    return Fitted(law, pl.DataFrame(rows), regret, harmful_buckets(measured, means))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=Setup.seeds)
    parser.add_argument("--bucket", type=int, default=Setup.bucket)
    parser.add_argument("--smoke", action="store_true", help="tiny, in this process: not a measurement")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of qqt_real.md")
    args = parser.parse_args(argv)
    z = SMOKE if args.smoke else Setup(seeds=args.seeds, bucket=args.bucket)
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # tiny MLPs (probes, EL2N): one thread is fastest, as in bench/pruning_scaling.py
    try:
        return run(args, z)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace, z: Setup) -> int:
    """Both sources, their fits, the report and the plot."""
    t0 = time.perf_counter()
    docs, eval_rows, rest = wiki_rows(z.n_docs, z.n_eval, seed=0)
    env: AbstractContextManager[Executor] = (
        nullcontext(LocalExecutor()) if args.smoke else ray_executor(None, num_cpus=os.cpu_count())
    )
    with env as executor, tempfile.TemporaryDirectory() as tmp:
        parts = [label_noise(docs, eval_rows, rest, z, executor)]
        product, plan = target_distance(docs, eval_rows, rest, z, executor, Path(tmp), local=args.smoke)
        parts.append(product)
    results = [fit_part(part, n_bootstrap=z.bootstrap) for part in parts]
    same_as_product(results[1].law.fit, plan)
    args.out.mkdir(parents=True, exist_ok=True)
    report(parts, results, plan, z, args, time.perf_counter() - t0)
    return 0


def same_as_product(fit: QQTFit, plan: QualityPlan) -> None:
    """Fail unless the bench's fit of the product-path source is fit.quality's committed law (every
    parameter), so the evaluated law is the one `curate run` plans with."""
    committed = plan.laws[f"qqt/{SOURCE}"].params
    differ = {k: (v, committed.get(k)) for k, v in fit.to_laws().items()
              if not math.isclose(v, committed.get(k, math.nan), rel_tol=1e-9, abs_tol=1e-12)}  # fmt: skip
    if differ:
        raise RuntimeError(f"the bench's QQT fit differs from fit.quality's committed law: {differ}")


def edge(value: float, grid: np.ndarray) -> str:
    """' (its range's edge)' when a searched value sits on either end of its grid."""
    return " (its range's edge)" if value in (grid[0], grid[-1]) else ""


def summary(
    table: pl.DataFrame, regret: pl.DataFrame, harmful: list[str], chosen: list[list[str]]
) -> list[str]:
    """The acceptance figures over the evaluated unions of one or all sources."""
    err, se = table["chosen_err"].to_numpy(), table["rel_se"].to_numpy()
    paper = table["paper_err"].to_numpy()
    inside = (
        (table["chosen_lo"] <= table["observed"]) & (table["observed"] <= table["chosen_hi"])
    ).to_numpy()
    over, under = int((err > 0).sum()), int((err < 0).sum())
    picked_harm = sorted({b for members in chosen for b in members if b in harmful})
    mare, side = float(np.abs(err).mean()), max(over, under) / len(err)
    return [
        f"- mean |relative error| {mare:.2%} (paper law {np.abs(paper).mean():.2%}); mean standard error of "
        f"the observed means {se.mean():.2%}: ratio {mare / se.mean():.1f}; errors beyond 2 se: "
        f"{int((np.abs(err) > 2 * se).sum())} of {len(err)}",
        f"- signs: {over} over, {under} under (largest side {side:.0%}); 90% intervals cover "
        f"{inside.mean():.0%}",
        f"- decision regret within 2 se of the difference at {int(regret['within'].sum())} of "
        f"{regret.height} budgets; largest regret {float(regret['regret'].max()):.4f}",  # type: ignore[arg-type]
        f"- harmful buckets (observed): {', '.join(harmful) or 'none'}; chosen ones among them: "
        f"{', '.join(picked_harm) or 'none'}",
    ]


def report(
    parts: list[Part],
    results: list[Fitted],
    plan: QualityPlan,
    z: Setup,
    args: argparse.Namespace,
    wall: float,
) -> None:
    """Print and write OUT/qqt_real.md: per source the fit, the union law's choice, the evaluated unions with
    their standard errors, the decision regret per budget; then the figures over both sources."""
    lines = [
        "# QQT on real text (the product's calibration and fit)"
        + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else ""),
        "",
        f"{z.seeds} seeds; buckets of {z.bucket} docs; passes {list(z.epochs)}; wall {wall:.0f} s (load "
        f"{os.getloadavg()[0]:.2f} at the end)",
        "",
        "fit.quality's committed law for the target-distance source equals the fit evaluated below (every "
        "parameter checked); its record: "
        + "; ".join(
            f"{source}: buckets {list(q.buckets)}, note: {q.note}" for source, q in plan.sources.items()
        ),
    ]
    picks: list[list[str]] = []
    for part, r in zip(parts, results, strict=True):
        fit, rules = r.law.fit, r.law.rule_table
        best = fit.best_union([int(sum(fit.sizes) * f) for f in (0.05, 0.2, 1, 4, 16)])
        chosen = best["pools"].to_list() + [members_of(part)[p] for p in r.regret["chosen"]]
        picks += chosen
        lines += [
            "",
            f"## {part.name}",
            "",
            f"a = {fit.a:.4g}, d = {fit.d:.4g} (chosen with the rule unions; identified: "
            f"{fit.d_identified}), in-sample rmse(log) = {fit.rmse_log:.4f}, seed spread of the curve "
            f"points = {fit.seed_spread:.4f}",
            "",
            "| d | gamma | kappa | squared log error, buckets + rule unions |",
            "|---|---|---|---|",
            *(
                f"| {t['d']:.4g} | {t['gamma']:g} | {t['kappa']:g} | {t['sse']:.4f} |"
                for t in r.law.d_table.iter_rows(named=True)
            ),
            "",
            "| bucket | b | b 90% | tau | tau fitted | excluded |",
            "|---|---|---|---|---|---|",
            *(
                f"| {p['pool']} | {p['b']:.4f} | [{p['b_lo']:.4f}, {p['b_hi']:.4f}] | {p['tau']:.2f} | "
                f"{p['tau_identified']} | {p['excluded'] or ''} |"
                for p in fit.params.sort("b").iter_rows(named=True)
            ),
            "",
            "coverage gaps g (how much nearer the target the union is than its nearest bucket): "
            + ", ".join(
                f"{u} {g:.3f}" for u, g in part.coverage.sort("union").select("union", "gap").iter_rows()
            ),
            "",
            f"union law chosen on {', '.join(part.rule_unions)}: gamma = {fit.gamma:g}"
            f"{edge(fit.gamma, GAMMAS)} (1 = paper, 0 = shared), kappa = {fit.kappa:g}"
            f"{edge(fit.kappa, KAPPAS)}"
            + (" (no rule union has a gap: not identified)" if rules["kappa"].n_unique() == 1 else "")
            + "; at the chosen d:",
            "",
            "| gamma | best kappa | mean abs rel error | rmse(log) |",
            "|---|---|---|---|",
            *(
                f"| {g['gamma']:g} | {g['kappa']:g} | {g['mare']:.2%} | {g['rmse_log']:.4f} |"
                for g in rules.sort("mare", "kappa")
                .group_by("gamma", maintain_order=True)
                .first()
                .sort("gamma")
                .iter_rows(named=True)
            ),
            "",
            "| budget | best union (chosen law) | predicted |",
            "|---|---|---|",
            *(
                f"| {b['budget']} | {'+'.join(b['pools'])} | {b['error']:.4f} |"
                for b in best.iter_rows(named=True)
            ),
            "",
            "decision at each budget among the pools measured there (chosen = least predicted error):",
            "",
            "| budget | pools | chosen | best observed | regret | se of the difference | within 2 se |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {g['budget']} | {g['pools']} | {g['chosen']} | {g['best']} | {g['regret']:.4f} | "
                f"{g['se']:.4f} | {g['within']} |"
                for g in r.regret.iter_rows(named=True)
            ),
            "",
            *summary(r.unions, r.regret, r.harmful, chosen),
        ]
    table = pl.concat([r.unions for r in results])
    lines += [
        "",
        "## unions never fitted nor used to choose the rule",
        "",
        "| source | union | gap | passes | observed | se | paper | err | chosen | err | 90% band |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['source']} | {r['union']} | {r['gap']:.3f} | {r['passes']:g} | {r['observed']:.4f} | "
            f"{r['rel_se']:.2%} | {r['paper']:.4f} | {r['paper_err']:+.2%} | {r['chosen']:.4f} | "
            f"{r['chosen_err']:+.2%} | [{r['chosen_lo']:.4f}, {r['chosen_hi']:.4f}] |"
            for r in table.iter_rows(named=True)
        ),
        "",
        "both sources:",
        "",
        *summary(
            table, pl.concat([r.regret for r in results]), [h for r in results for h in r.harmful], picks
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "qqt_real.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())

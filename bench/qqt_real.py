"""QQT on real text with the product's calibration and fit: buckets that differ a lot, seeds, unions never
fitted, the paper's union rule against the one chosen on held-out unions.

Data: labelled English Wikipedia summaries (11 topics), 1,500 of them held out as eval rows. Two sources:
(1) label noise, a controlled input built here: four random draws of 800 documents with 0 / 10 / 30 / 50 %
of their labels replaced at random (graded quality), static embeddings centred on the pool's mean (as the
center step does, `curate.centering.fit_centering`), the product's MLP probe task
(`pipelines.calibrate.ProbeTask`) and the functions the quality steps call (`calibrate_buckets`, `fit_qqt`,
`choose_union_rule`); (2) target distance, on the product path: 3,200 other documents as one labelled source
(a second source of 3,200 more, `wiki_b`, because the mixture steps the quality steps depend on need >= 2
sources; uniform weights, so each gets a share) and the eval rows as the labelled target, run by
`pipelines.runner.execute(config, until=["fit.quality"])`
with the probe proxy, quality buckets = quartiles of `target_dist` (1 - cos to the centred target's mean
direction), no pruning and no dedup (sizes stay controlled); the bench reads the calibrate.quality step's
committed buckets and curves (every bucket, and the unions q0+q1 and q0+q1+q2 that choose the union rule)
and the fit.quality step's QualityPlan record, and trains the unions it evaluates with that step's own proxy
task and pools (`pipelines.proxy_data`). Proxy: AdamW, learning rate decaying to 0 at each run's own budget,
chosen on a validation split, never these eval rows; a curve point at k passes is a run trained k passes;
eval error rate (1 - accuracy), >= 5 seeds, Ray tasks. Fit: `scaling.qqt.fit_qqt` on the single buckets;
union rule: `choose_union_rule` on the rule-choice unions (its error widens the intervals); evaluated on
unions never fitted nor used to choose the rule, at 1, 2 and 4 passes.
Writes OUT/qqt_real.{md,png} (OUT = bench/results by default).

Usage: HF_HUB_OFFLINE=1 .venv/bin/python bench/qqt_real.py [--seeds 5] [--bucket 800] [--out DIR]
(--smoke: 2 seeds, buckets of 40 documents, 120 eval rows, 4 pass counts, no bootstrap (so no intervals), in
this process, into --out: a check that the script runs, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import torch

from curate import corpora
from curate.centering import fit_centering
from curate.embeddings import load_embedder
from curate.stages import Executor, LocalExecutor
from pipelines.calibrate import ProbeTask, calibrate_buckets
from pipelines.ray_executor import ray_executor
from scaling.qqt import QQTFit, choose_union_rule, fit_qqt

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
    rule = {"noise00+noise10": ["noise00", "noise10"]}
    evals = {
        "noise00+noise30": ["noise00", "noise30"],
        "noise00+noise10+noise30": ["noise00", "noise10", "noise30"],
        "noise10+noise50": ["noise10", "noise50"],
    }
    pools = dict(noisy)
    for name, members in {**rule, **evals}.items():
        pools[name] = np.concatenate([noisy[m] for m in members])
    curves = calibrate_buckets(task, pools, executor=executor, epochs=z.epochs, max_rows=10**9, seeds=z.seeds)
    sizes = {name: len(rows) for name, rows in pools.items()}
    return Part("label noise", curves.select("pool", "seed", "samples_seen", "error"), sizes, list(noisy),
                rule, evals)  # fmt: skip


def target_distance(
    docs: pl.DataFrame,
    eval_rows: np.ndarray,
    rest: np.ndarray,
    z: Setup,
    executor: Executor,
    root: Path,
    *,
    local: bool,
) -> tuple[Part, object]:
    """The product path: buckets of target_dist cut and run by the calibrate.quality step, its rule-choice
    unions, and the evaluated unions trained on that step's own proxy task; returns the part and the
    fit.quality step's QualityPlan record."""
    from curate.config import load_config
    from pipelines.proxy_data import calibration_pool, proxy_data
    from pipelines.quality_steps import QualityPlan
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
    evals = {f"{SOURCE}/q0+q2": [0, 2], f"{SOURCE}/q1+q3": [1, 3], f"{SOURCE}/q0+q3": [0, 3]}
    data = proxy_data(ctx, calibration_pool(ctx), eval_on="fit")
    members = {
        name: data.rows(table.filter(pl.col("bucket").is_in(b))["doc_id"]) for name, b in evals.items()
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
    )
    return part, ctx.record("fit.quality", QualityPlan)


def fit_part(part: Part, *, n_bootstrap: int) -> tuple[QQTFit, float, pl.DataFrame, pl.DataFrame]:
    """QQT on the single buckets, the union rule chosen on the rule unions (its error widens the intervals,
    as fit.quality does), and each evaluated union's observed vs predicted error at 1, 2 and 4 passes:
    (fit under the chosen rule, gamma, rule table, union table)."""
    curves, sizes = part.curves, part.sizes
    single = curves.filter(pl.col("pool").is_in(part.buckets))
    fit = fit_qqt(single, {b: sizes[b] for b in part.buckets}, n_bootstrap=n_bootstrap, seed=0)
    union_sizes = {u: {m: sizes[m] for m in ms} for u, ms in {**part.rule_unions, **part.eval_unions}.items()}
    rule_curves = curves.filter(pl.col("pool").is_in(list(part.rule_unions)))
    gamma, rule_table = choose_union_rule(fit, rule_curves, part.rule_unions, union_sizes)
    chosen_error = rule_table.filter(pl.col("gamma") == gamma)["rmse_log"].item()
    fit = fit.with_model_error(max(fit.model_error, chosen_error))
    rows = []
    for name, members in part.eval_unions.items():
        observed = curves.filter(pl.col("pool") == name)
        for passes in PASSES:
            n = round(sizes[name] * passes)
            at = observed.filter(pl.col("samples_seen") == n)["error"].to_numpy()
            obs, noise = float(at.mean()), float(at.std(ddof=1) / at.mean())
            row = {"source": part.name, "union": name, "passes": passes, "observed": obs, "seed_noise": noise}
            for label, g in (("paper", 1.0), ("chosen", gamma)):
                value, lo, hi = fit.with_gamma(g).predict_interval(members, n)
                row |= {
                    label: value,
                    f"{label}_err": (value - obs) / obs,
                    f"{label}_lo": lo,
                    f"{label}_hi": hi,
                }
            rows.append(row)
    return fit.with_gamma(gamma), gamma, rule_table, pl.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=Setup.seeds)
    parser.add_argument("--bucket", type=int, default=Setup.bucket)
    parser.add_argument("--smoke", action="store_true", help="tiny, in this process: not a measurement")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of qqt_real.{md,png}")
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
    results = [(*fit_part(part, n_bootstrap=z.bootstrap), part.curves) for part in parts]
    args.out.mkdir(parents=True, exist_ok=True)
    report(parts, results, plan, z, args, time.perf_counter() - t0)
    plot(parts, results, args.out / "qqt_real.png")
    return 0


Result = tuple[QQTFit, float, pl.DataFrame, pl.DataFrame, pl.DataFrame]


def report(
    parts: list[Part], results: list[Result], plan: object, z: Setup, args: argparse.Namespace, wall: float
) -> None:
    """Print and write OUT/qqt_real.md: per source the fit and rule choice, then every union."""
    lines = [
        "# QQT on real text (the product's calibration and fit)"
        + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else ""),
        "",
        f"{z.seeds} seeds; buckets of {z.bucket} docs; passes {list(z.epochs)}; wall {wall:.0f} s (load "
        f"{os.getloadavg()[0]:.2f} at the end)",
        "",
        "fit.quality's record for the target-distance source: "
        + "; ".join(
            f"{source}: buckets {list(q.buckets)}, note: {q.note}"
            for source, q in getattr(plan, "sources", {}).items()
        ),
    ]
    for part, (fit, gamma, rule_table, _, _) in zip(parts, results, strict=True):
        lines += [
            "",
            f"## {part.name}",
            "",
            f"a = {fit.a:.4g}, d = {fit.d:.4g} (identified: {fit.d_identified}), in-sample rmse(log) = "
            f"{fit.rmse_log:.4f}, seed spread of the curve points = {fit.seed_spread:.4f}",
            "",
            "| bucket | b | b 90% | tau | tau fitted | excluded |",
            "|---|---|---|---|---|---|",
            *(
                f"| {r['pool']} | {r['b']:.4f} | [{r['b_lo']:.4f}, {r['b_hi']:.4f}] | {r['tau']:.2f} | "
                f"{r['tau_identified']} | {r['excluded'] or ''} |"
                for r in fit.params.sort("b").iter_rows(named=True)
            ),
            "",
            f"union rule chosen on {', '.join(part.rule_unions)}: gamma = {gamma:g} (1 = paper, 0 = shared)",
            "",
            "| gamma | mean abs rel error | rmse(log) |",
            "|---|---|---|",
            *(f"| {g:g} | {e:.2%} | {r:.4f} |" for g, e, r in rule_table.iter_rows()),
        ]
        plan = fit.best_union([int(sum(fit.sizes) * f) for f in (0.05, 0.2, 1, 4, 16)])
        lines += [
            "",
            "| budget | best union (chosen rule) | predicted |",
            "|---|---|---|",
            *(
                f"| {r['budget']} | {'+'.join(r['pools'])} | {r['error']:.4f} |"
                for r in plan.iter_rows(named=True)
            ),
        ]
    table = pl.concat([r[3] for r in results])
    chosen, paper = table["chosen_err"].to_numpy(), table["paper_err"].to_numpy()
    noise = float(np.mean(table["seed_noise"].to_numpy()))
    inside = float(
        np.mean(
            ((table["chosen_lo"] <= table["observed"]) & (table["observed"] <= table["chosen_hi"])).to_numpy()
        )
    )
    lines += [
        "",
        "## unions never fitted nor used to choose the rule",
        "",
        "| source | union | passes | observed | seed noise | paper | err | chosen | err | 90% band |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['source']} | {r['union']} | {r['passes']:g} | {r['observed']:.4f} | "
            f"{r['seed_noise']:.2%} | {r['paper']:.4f} | {r['paper_err']:+.2%} | {r['chosen']:.4f} | "
            f"{r['chosen_err']:+.2%} | "
            f"[{r['chosen_lo']:.4f}, {r['chosen_hi']:.4f}] |"
            for r in table.iter_rows(named=True)
        ),
        "",
        f"mean |relative error|: chosen rule {np.abs(chosen).mean():.2%}, paper rule "
        f"{np.abs(paper).mean():.2%};"
        f" mean seed-to-seed noise of the observed unions {noise:.2%} (ratio chosen / noise "
        f"{np.abs(chosen).mean() / noise:.2f})",
        f"signs (chosen): {(chosen > 0).sum()} over, {(chosen < 0).sum()} under; "
        f"90% bands cover {inside:.0%}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "qqt_real.md").write_text(text)


def plot(parts: list[Part], results: list[Result], dest: Path) -> None:
    """Per source: single buckets and the evaluated unions, observed (mean of seeds) and predicted."""
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 4.5))
    for ax, part, (fit, *_, curves) in zip(np.atleast_1d(axes), parts, results, strict=True):
        mean = (
            curves.group_by("pool", "samples_seen").agg(pl.col("error").mean()).sort("pool", "samples_seen")
        )
        for pool in [*part.buckets, *part.eval_unions]:
            sub = mean.filter(pl.col("pool") == pool)
            n = sub["samples_seen"].to_numpy()
            (line,) = ax.plot(n, sub["error"], "o", ms=3, label=pool)
            members = part.eval_unions.get(pool, [pool])
            grid = np.geomspace(n.min(), n.max(), 60)
            ax.plot(grid, [fit.predict(members, g) for g in grid], "-", color=line.get_color())
        ax.set(xscale="log", xlabel="samples seen", ylabel="eval error (1 - accuracy)", title=part.name)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

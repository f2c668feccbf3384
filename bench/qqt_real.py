"""QQT on real text with the product's calibration and fit: buckets that differ a lot, seeds, unions never
fitted, the paper's union rule against the one chosen on held-out unions.

Data: every labelled English Wikipedia summary (11 topics), static embeddings centred on the pool's mean
(the product's space), 1,500 held out as eval rows. Two sources, each fitted on its own as the product fits
one source's buckets: (1) four random draws of 800 documents with 0 / 10 / 30 / 50 % of their labels replaced
at random (graded quality); (2) 800 documents of each quartile of the target distance of a pool, taken per
class (1 - cos to the eval rows' mean direction of the document's own class: typical to atypical).
Proxy: the product's MLP probe task with its defaults (`pipelines.calibrate.ProbeTask`: AdamW, learning
rate decaying to 0 at each run's own budget, chosen on a validation split, never these eval rows; a curve
point at k passes is a run trained k passes), eval error rate (1 - accuracy), >= 5 seeds, Ray tasks. Fit:
`scaling.qqt.fit_qqt` on the single buckets; union rule: `choose_union_rule` on one rule-choice union per
source (its error widens the intervals); evaluated on three other unions per source at 1, 2 and 4 passes.
Writes bench/results/qqt_real.{md,png}.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python bench/qqt_real.py [--seeds 5] [--bucket 800]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from curate import corpora
from curate.centering import fit_centering
from curate.embeddings import load_embedder
from curate.stages import Executor
from pipelines.calibrate import ProbeTask, calibrate_buckets
from pipelines.ray_executor import ray_executor
from scaling.qqt import QQTFit, choose_union_rule, fit_qqt

RESULTS = Path(__file__).parent / "results"
NOISE = {"noise00": 0.0, "noise10": 0.1, "noise30": 0.3, "noise50": 0.5}
EPOCHS = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]


@dataclass(frozen=True)
class Part:
    """One source of the bench: its proxy task, buckets, the unions that choose the rule, those evaluated."""

    name: str
    task: ProbeTask
    buckets: dict[str, np.ndarray]
    rule_unions: dict[str, list[str]]
    eval_unions: dict[str, list[str]]


def build(bucket: int, seed: int) -> list[Part]:
    """Two sources: graded label noise, and target-distance quartiles of a pool taken per class (distance to
    the eval rows' mean direction of the same class); eval: the held-out rows, every topic."""
    docs = corpora.wiki(None, labelled_only=True, seed=0)
    labels = sorted(docs["label"].unique().to_list())
    y = docs["label"].replace_strict(labels, list(range(len(labels))), return_dtype=pl.Int64).to_numpy()
    raw = load_embedder("static").encode(docs["text"].to_list())
    x = fit_centering(raw).apply(raw)
    rng = np.random.default_rng(seed)
    order = rng.permutation(docs.height)
    eval_rows, rest = order[:1500], order[1500:]
    noisy: dict[str, np.ndarray] = {}
    y_noisy = y.copy()
    for i, (name, rate) in enumerate(NOISE.items()):
        rows = rest[i * bucket : (i + 1) * bucket]
        flip = rows[rng.random(bucket) < rate]
        y_noisy[flip] = rng.integers(0, len(labels), len(flip))
        noisy[name] = rows
    pool = rest[len(NOISE) * bucket :]
    near: dict[str, list[np.ndarray]] = {f"sim{q}": [] for q in range(4)}
    for c in range(len(labels)):  # per class: quartiles of the distance to the eval rows' class direction
        members, targets = pool[y[pool] == c], eval_rows[y[eval_rows] == c]
        direction = x[targets].mean(axis=0)
        ranked = members[
            np.argsort(1.0 - x[members] @ (direction / np.linalg.norm(direction)), kind="stable")
        ]
        for q in range(4):
            near[f"sim{q}"].append(ranked[q * len(ranked) // 4 : (q + 1) * len(ranked) // 4])
    by_class = {name: rng.permutation(np.concatenate(parts))[:bucket] for name, parts in near.items()}
    return [
        Part(
            "label noise",
            ProbeTask(x=x, y=y_noisy, x_eval=x[eval_rows], y_eval=y[eval_rows], n_classes=len(labels)),
            noisy,
            {"noise00+noise10": ["noise00", "noise10"]},
            {
                "noise00+noise30": ["noise00", "noise30"],
                "noise00+noise10+noise30": ["noise00", "noise10", "noise30"],
                "noise10+noise50": ["noise10", "noise50"],
            },
        ),
        Part(
            "target distance",
            ProbeTask(x=x, y=y, x_eval=x[eval_rows], y_eval=y[eval_rows], n_classes=len(labels)),
            by_class,
            {"sim0+sim1": ["sim0", "sim1"]},
            {
                "sim0+sim1+sim2": ["sim0", "sim1", "sim2"],
                "sim0+sim2": ["sim0", "sim2"],
                "sim1+sim3": ["sim1", "sim3"],
            },
        ),
    ]


def run_part(
    part: Part, executor: Executor, seeds: int
) -> tuple[QQTFit, float, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The product's calibration and fit on one source: (fit under the chosen rule, gamma, rule table,
    union table, curves)."""
    pools = dict(part.buckets)
    for name, members in {**part.rule_unions, **part.eval_unions}.items():
        pools[name] = np.concatenate([part.buckets[m] for m in members])
    curves = calibrate_buckets(
        part.task, pools, executor=executor, epochs=EPOCHS, max_rows=10**9, seeds=seeds
    )
    curves = curves.select("pool", "seed", "samples_seen", "error")
    sizes = {name: len(rows) for name, rows in pools.items()}
    single = curves.filter(pl.col("pool").is_in(list(part.buckets)))
    fit = fit_qqt(single, {b: sizes[b] for b in part.buckets}, n_bootstrap=30, seed=0)
    union_sizes = {u: {m: sizes[m] for m in ms} for u, ms in {**part.rule_unions, **part.eval_unions}.items()}
    rule_curves = curves.filter(pl.col("pool").is_in(list(part.rule_unions)))
    gamma, rule_table = choose_union_rule(fit, rule_curves, part.rule_unions, union_sizes)
    chosen_error = rule_table.filter(pl.col("gamma") == gamma)["rmse_log"].item()
    fit = fit.with_model_error(max(fit.model_error, chosen_error))
    rows = []
    for name, members in part.eval_unions.items():
        observed = curves.filter(pl.col("pool") == name)
        for passes in (1.0, 2.0, 4.0):
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
    return fit.with_gamma(gamma), gamma, rule_table, pl.DataFrame(rows), curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bucket", type=int, default=800)
    args = parser.parse_args()
    t0 = time.perf_counter()
    parts = build(args.bucket, seed=0)
    with ray_executor(None, num_cpus=os.cpu_count()) as executor:
        results = [run_part(part, executor, args.seeds) for part in parts]
    report(parts, results, args, time.perf_counter() - t0)
    plot(parts, results, RESULTS / "qqt_real.png")


Result = tuple[QQTFit, float, pl.DataFrame, pl.DataFrame, pl.DataFrame]


def report(parts: list[Part], results: list[Result], args: argparse.Namespace, wall: float) -> None:
    """Print and write bench/results/qqt_real.md: per source the fit and rule choice, then every union."""
    lines = [
        "# QQT on real text (the product's calibration and fit)",
        "",
        f"{args.seeds} seeds; buckets of {args.bucket} docs; passes {EPOCHS}; wall {wall:.0f} s (load "
        f"{os.getloadavg()[0]:.2f} at the end)",
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
    noise = float(table["seed_noise"].mean())
    inside = float(
        ((table["chosen_lo"] <= table["observed"]) & (table["observed"] <= table["chosen_hi"])).mean()
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qqt_real.md").write_text(text)


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
    main()

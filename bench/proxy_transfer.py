"""Proxy fidelity: do the proxies' rankings and the product's selection hold for a larger LM trained on them?

The case is built from the registry corpora (bench/decisions.py `two_domains`: a target of Wikipedia
geography and BBC politics, six unlabelled sources with junk). The product runs first (`curate mix`:
`pipelines.runner.execute`, default config, embedded Ray); everything after reads its committed steps
(`run_steps(..., committed_only=True)`): the calibration pool, the target's held-out rows, the quality
buckets, the design runs and the selection.

1. Transfer: 12 source mixtures at the budget and 6 quality unions (a source's best, worst, and best + worst
   buckets, at half the budget: small buckets repeat) are each trained with the n-gram proxy, the byte LM
   proxy (the product's shape, and a two-block one) and a reference byte LM with >= 10x the LM proxy's compute
   (parameters x bytes), 2 seeds each, all evaluated on the same held-out target rows. Per proxy: Spearman
   against the reference's mean (95% Fisher interval, se 1.06 / sqrt(n - 3)), the regret of its best mixture
   under the reference, the reference's standard error, and its cost (core-seconds a run). The product's
   default (hybrid) is scored as it decides: the n-gram's best `[proxy] confirm` mixtures re-ranked by the
   byte LM, then the rest in the n-gram's order. The reference's own seed-to-seed Spearman bounds them all.
2. End to end: the reference trained at the budget (3 seeds) on the product's selection and on uniform,
   proportional, best-grid (the design's best mixture at the largest pilot), random-prune (the product's
   weights and per-source document counts, documents drawn at random instead of by bucket) and all-buckets
   (the product's weights over every document) alternatives.

    python bench/proxy_transfer.py [--local] [--out DIR] [--smoke]

Writes OUT/proxy_transfer.md (bench/results by default). --smoke: tiny sizes and models, in this process.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from decisions import CONFIG, SMOKE_CONFIG, Sizes, case_two_domains, write_case
from scipy.stats import spearmanr

OUT = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Plan:
    """Sizes of the case and of the models."""

    sizes: Sizes
    config: str
    lm: tuple[int, int, int]  # the product's LM proxy: width, layers, window
    deeper: tuple[int, int, int]
    reference: tuple[int, int, int, int]  # width, layers, window, windows per document
    seeds: int = 2
    e2e_seeds: int = 3
    eval_docs: int = 200


FULL = Plan(
    Sizes(source=500, target=300, budget=120_000), CONFIG, (64, 1, 128), (64, 2, 128), (128, 4, 256, 2)
)
SMOKE = Plan(
    Sizes(source=60, target=30, budget=6000), SMOKE_CONFIG, (16, 1, 32), (16, 2, 32), (16, 1, 32, 2), 2, 2, 20
)


def mixtures(sources: list[str], sizes: dict[str, float], seed: int = 7) -> tuple[list[str], np.ndarray]:
    """12 mixtures: blends of the target's two domains, the 50/50 blend with 20% junk or State of the Union,
    uniform, proportional to size, three flat Dirichlet draws."""
    m, at = len(sources), {s: i for i, s in enumerate(sources)}
    rows, labels = [], []

    def add(label: str, parts: dict[str, float]) -> None:
        p = np.zeros(m)
        for s, w in parts.items():
            p[at[s]] = w
        rows.append(p / p.sum())
        labels.append(label)

    for g in (1.0, 0.75, 0.5, 0.25, 0.0):
        add(f"geography {g:.2f} / politics {1 - g:.2f}", {"geography": g, "politics": 1 - g})
    add("0.4 / 0.4 / junk 0.2", {"geography": 0.4, "politics": 0.4, "junk": 0.2})
    add("0.4 / 0.4 / sotu 0.2", {"geography": 0.4, "politics": 0.4, "sotu": 0.2})
    add("uniform", dict.fromkeys(sources, 1.0))
    add("proportional", sizes)
    for i, p in enumerate(np.random.default_rng(seed).dirichlet(np.ones(m), size=3)):
        add(f"Dirichlet draw {i + 1}", dict(zip(sources, p, strict=True)))
    return labels, np.asarray(rows)


def spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Spearman's rho and its 95% interval (Fisher z, se 1.06 / sqrt(n - 3))."""
    rho = float(spearmanr(a, b).statistic)
    half = 1.96 * 1.06 / math.sqrt(max(1, len(a) - 3))
    z = math.atanh(min(max(rho, -0.999999), 0.999999))
    return rho, math.tanh(z - half), math.tanh(z + half)


Builder = Callable[[np.random.Generator, int], np.ndarray]


def alternatives(
    ctx: Any, pools: dict[str, np.ndarray], units: np.ndarray, row_of: dict[int, int], *, budget: int
) -> list[tuple[str, Builder]]:
    """The product's selection and the alternatives, each a function (rng, seed) -> training rows."""
    from pipelines.calibrate import mixture_sequence
    from pipelines.mixture_steps import selection_sample

    sources = list(pools)
    sel = ctx.table("select", "selection").collect().sort("doc_id")
    rows = np.array([row_of.get(d, -1) for d in sel["doc_id"].to_list()], dtype=np.int64)
    share = np.array([float((units[rows] * sel["repeats"].to_numpy())[sel["source"].to_numpy() == s].sum())
                      for s in sources])  # fmt: skip
    product = share / share.sum()
    distinct = {s: int((sel["source"] == s).sum()) for s in sources}
    sizes = np.array([float(units[pools[s]].sum()) for s in sources])
    runs = ctx.table("calibrate.mixture", "runs").collect()
    top = (
        runs.filter(pl.col("n") == pl.col("n").max())
        .group_by("mixture", *sources)
        .agg(pl.col("metric").mean())
    )
    best = top.sort("metric", "mixture").select(sources).row(0)

    def selection(rng: np.random.Generator, seed: int) -> np.ndarray:
        drawn = rows[selection_sample(sel, int(sel["repeats"].sum()), seed)]
        return drawn[drawn >= 0]

    def mix(p: np.ndarray, subset: bool = False) -> Builder:
        def build(rng: np.random.Generator, seed: int) -> np.ndarray:
            use = pools
            if subset:  # as many documents of each source as the product selected, drawn at random
                use = {s: rng.choice(r, size=min(len(r), max(1, distinct[s])), replace=False)
                       for s, r in pools.items()}  # fmt: skip
            return mixture_sequence(use, p, [budget], rng, units)[0]

        return build

    return [
        ("product selection", selection),
        ("all buckets (product weights)", mix(product)),
        ("random prune (product weights and counts)", mix(product, subset=True)),
        ("uniform", mix(np.full(len(sources), 1 / len(sources)))),
        ("proportional", mix(sizes / sizes.sum())),
        ("best grid", mix(np.asarray(best, dtype=np.float64))),
    ]


def main(argv: list[str] | None = None) -> int:
    from curate.config import load_config
    from curate.progress import quiet_libraries
    from curate.stages import LocalExecutor
    from pipelines.calibrate import LMTask, NgramTask, mixture_sequence, run_seed, run_tasks
    from pipelines.mixture_steps import doc_units
    from pipelines.proxy_data import calibration_pool, eval_rows, lm_shape, pool_texts, proxy_data
    from pipelines.ray_executor import ray_executor
    from pipelines.runner import execute
    from pipelines.steps import run_steps
    from scaling.lm import LMShape, Schedule, encode
    from scaling.ngram import tokenize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="run in-process instead of embedded Ray")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, in this process: not a measurement")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of proxy_transfer.md")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    args.local = args.local or args.smoke
    quiet_libraries()
    z = plan.sizes
    case, _ = case_two_domains(np.random.default_rng(0), z)
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(write_case(Path(tmp), case, budget=z.budget, config=plan.config))
        start = time.perf_counter()
        execute(cfg, work=Path(tmp) / "work", local=args.local)
        product_s = time.perf_counter() - start
        env = nullcontext(LocalExecutor()) if args.local else ray_executor(None, num_cpus=os.cpu_count())
        with env as executor:
            ctx = run_steps(cfg, Path(tmp) / "work", executor=executor, committed_only=True)
            design = proxy_data(ctx, calibration_pool(ctx), eval_on="holdout")
            pool = design.pool
            sources = sorted(cfg.sources)
            units = doc_units(ctx, pool["doc_id"])
            pools = {s: design.source_rows()[s] for s in sources}
            texts = pool_texts(ctx, pool["doc_id"])
            evals = eval_rows(ctx, "holdout")["text"].to_list()
            evals = [
                evals[i] for i in np.sort(np.random.default_rng(1).permutation(len(evals))[: plan.eval_docs])
            ]
            shape, schedule = lm_shape(ctx)
            if args.smoke:
                shape = LMShape(d_model=plan.lm[0], n_layers=plan.lm[1], max_len=plan.lm[2])
            shapes = {
                "lm": shape,
                "lm-2block": LMShape(d_model=plan.deeper[0], n_layers=plan.deeper[1], max_len=plan.deeper[2]),
                "reference": LMShape(d_model=plan.reference[0], n_layers=plan.reference[1],
                                     max_len=plan.reference[2], max_windows=plan.reference[3]),
            }  # fmt: skip
            tasks: dict[str, Any] = {"ngram": NgramTask(corpus=tokenize(texts), eval_corpus=tokenize(evals))}
            for name, sh in shapes.items():
                sched = Schedule(lr=2e-3) if name == "reference" else schedule
                tasks[name] = LMTask(encode(texts, sh), encode(evals, sh), sh, sched)

            # the training sets: 12 mixtures at the budget, 6 unions of one source's buckets at half of it
            sizes = {s: float(units[r].sum()) for s, r in pools.items()}
            labels, grid = mixtures(sources, sizes)
            buckets = ctx.table("calibrate.quality", "buckets").collect()
            row_of = dict(zip(pool["doc_id"].to_list(), pool["row"].to_list(), strict=True))
            sets: list[tuple[str, str, dict[str, np.ndarray], np.ndarray, int]] = [
                ("mixture", lab, pools, p, z.budget) for lab, p in zip(labels, grid, strict=True)
            ]
            for source in ("geography", "politics"):
                mine = buckets.filter(pl.col("source") == source)
                top = int(mine["bucket"].max())  # type: ignore[arg-type]
                for chosen in ([0], [top], [0, top]):
                    ids = mine.filter(pl.col("bucket").is_in(chosen))["doc_id"].to_list()
                    rows = np.array(sorted(row_of[d] for d in ids if d in row_of), dtype=np.int64)
                    name = f"{source} q{'+q'.join(map(str, chosen))}"
                    sets.append(("union", name, {source: rows}, np.ones(1), z.budget // 2))
            runs = []
            for i, (_, _, members, p, n) in enumerate(sets):
                for s in range(plan.seeds):
                    sd = run_seed(cfg.seed, 91, i, s)
                    seq, _ = mixture_sequence(members, p, [n], np.random.default_rng(sd), units)
                    runs.append({"run": f"set{i:02d}/s{s}", "rows": seq.tolist(), "checkpoints": [len(seq)],
                                 "n_unique": len(np.unique(seq)), "seed": sd})  # fmt: skip
            losses: dict[str, np.ndarray] = {}
            cost: dict[str, float] = {}
            for name, task in tasks.items():
                t0 = time.perf_counter()
                curves = run_tasks(task, runs, executor=executor)
                cost[name] = (
                    (time.perf_counter() - t0) * (1 if args.local else os.cpu_count() or 1) / len(runs)
                )
                per = curves.with_columns(set=pl.col("run").str.slice(3, 2).cast(pl.Int64)).sort("set", "run")
                losses[name] = per["eval_loss"].to_numpy().reshape(len(sets), plan.seeds)
                print(f"{name}: {cost[name]:.1f} core-s a run", flush=True)

            # end to end: the reference at the budget on the product's selection and the alternatives
            e2e = alternatives(ctx, pools, units, row_of, budget=z.budget)
            e2e_runs = []
            for i, (_, builder) in enumerate(e2e):
                for s in range(plan.e2e_seeds):
                    sd = run_seed(cfg.seed, 93, i, s)
                    seq = builder(np.random.default_rng(sd), sd)
                    e2e_runs.append({"run": f"alt{i:02d}/s{s}", "rows": seq.tolist(),
                                     "checkpoints": [len(seq)], "n_unique": len(np.unique(seq)),
                                     "seed": sd})  # fmt: skip
            t0 = time.perf_counter()
            e2e_curves = run_tasks(tasks["reference"], e2e_runs, executor=executor)
            e2e_s = time.perf_counter() - t0
    lines += _report(
        plan,
        sets,
        losses,
        cost,
        tasks,
        runs,
        e2e,
        e2e_curves,
        product_s,
        e2e_s,
        args.smoke,
        confirm=cfg.proxy.confirm,
    )
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "proxy_transfer.md").write_text(text)
    print(text)
    return 0


def _report(
    plan: Plan,
    sets: list[tuple[str, str, dict[str, np.ndarray], np.ndarray, int]],
    losses: dict[str, np.ndarray],
    cost: dict[str, float],
    tasks: dict[str, Any],
    runs: list[dict[str, Any]],
    e2e: list[tuple[str, Builder]],
    e2e_curves: pl.DataFrame,
    product_s: float,
    e2e_s: float,
    smoke: bool,
    *,
    confirm: int,
) -> list[str]:
    """The markdown tables."""
    ref = losses["reference"]
    ref_mean = ref.mean(axis=1)
    ref_sd = ref.std(axis=1, ddof=1)
    ref_se = float(np.mean(ref_sd)) / math.sqrt(plan.seeds)
    is_mix = np.array([k == "mixture" for k, *_ in sets])
    seqs = [np.asarray(r["rows"]) for r in runs]

    def compute(name: str) -> float:
        task = tasks[name]
        if name == "ngram":
            return float("nan")
        return task.shape.n_params() * float(np.mean([task.corpus.n_bytes[q].sum() for q in seqs]))

    lines = [
        "# Proxy transfer: rankings and the product's selection under a larger reference LM"
        + (" (smoke run: tiny sizes, not a measurement)" if smoke else ""),
        "",
        f"Case two_domains (target: Wikipedia geography + BBC politics; 6 sources, ~{plan.sizes.source} "
        f"documents each, junk included), budget {plan.sizes.budget} tokens, default config (`curate mix` "
        f"{product_s:.0f} s). "
        f"Each training set x {plan.seeds} seeds per model, evaluated on the same {plan.eval_docs} held-out "
        f"target rows (nats a byte for the LMs, a word token for the n-gram). Load average "
        f"{os.getloadavg()[0]:.2f} at the end.",
        "",
        "| proxy | params | core-s a run | compute vs lm | Spearman mixtures [95%] | Spearman unions [95%] "
        "| Spearman all 18 [95%] | regret (mixtures) | reference se | regret / se |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    scores = {name: losses[name].mean(axis=1) for name in tasks}
    # hybrid: the n-gram's best `confirm` mixtures re-ranked by the byte LM first, then the rest in the
    # n-gram's order; its unions are the byte LM's (it measures the quality buckets); no joint ranking
    mix_rank = np.argsort(np.argsort(np.where(is_mix, scores["ngram"], np.inf), kind="stable"), kind="stable")
    top = mix_rank < confirm
    hybrid = np.where(top, scores["lm"] - 1e6, mix_rank.astype(np.float64))
    scores = {"ngram": scores["ngram"], "hybrid (default)": np.where(is_mix, hybrid, scores["lm"]),
              **{n: v for n, v in scores.items() if n != "ngram"}}  # fmt: skip
    seed_split = spearman(ref[is_mix, 0], ref[is_mix, 1]) if plan.seeds >= 2 else (float("nan"),) * 3
    for name, mean in scores.items():
        known = name in tasks and name != "ngram"
        cost_cell = f"{cost[name]:.2f}" if name in cost else f"{cost['ngram']:.2f} + {confirm} lm runs"
        cells = [name, f"{tasks[name].shape.n_params():,}" if known else "-", cost_cell,
                 f"{compute(name) / compute('lm'):.1f}x" if known else "-"]  # fmt: skip
        for mask in (is_mix, ~is_mix, np.ones_like(is_mix)):
            if name not in tasks and mask.all():
                cells.append("-")
                continue
            rho, lo, hi = spearman(mean[mask], ref_mean[mask])
            cells.append(f"{rho:.3f} [{lo:.2f}, {hi:.2f}]")
        pick = int(np.argmin(np.where(is_mix, mean, np.inf)))
        regret = float(ref_mean[pick] - ref_mean[is_mix].min())
        cells += [f"{regret:.4f}", f"{ref_se:.4f}", f"{regret / ref_se:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"The reference against itself (seed 0 vs seed 1 over the mixtures): Spearman {seed_split[0]:.3f} "
        f"[{seed_split[1]:.2f}, {seed_split[2]:.2f}]: the ceiling of a proxy's agreement with one reference "
        "run.",
        "",
        f"reference se = the mean seed-to-seed sd of the reference over the sets / sqrt({plan.seeds}); "
        "regret = the reference loss of the proxy's best mixture minus the best reference loss among the 12.",
        "",
        "| set | kind | " + " | ".join(tasks) + " | reference sd |",
        "|---|---|" + "---|" * (len(tasks) + 1),
    ]
    for i, (kind, label, *_rest) in enumerate(sets):
        vals = " | ".join(f"{losses[n][i].mean():.4f}" for n in tasks)
        lines.append(f"| {label} | {kind} | {vals} | {ref_sd[i]:.4f} |")
    e2e_table = (
        e2e_curves.with_columns(alt=pl.col("run").str.slice(3, 2).cast(pl.Int64))
        .group_by("alt")
        .agg(mean=pl.col("eval_loss").mean(), se=pl.col("eval_loss").std() / math.sqrt(plan.e2e_seeds))
        .sort("alt")
    )
    best_row = e2e_table.sort("mean").row(0, named=True)
    best = float(best_row["mean"])
    lines += [
        "",
        f"## End to end: the reference LM at the budget, {plan.e2e_seeds} seeds ({e2e_s:.0f} s)",
        "",
        "| training data | reference loss | se | minus best | (minus best) / se of the difference |",
        "|---|---|---|---|---|",
    ]
    for (label, _), row in zip(e2e, e2e_table.iter_rows(named=True), strict=True):
        gap = row["mean"] - best
        se = math.hypot(row["se"], best_row["se"]) if row["alt"] != best_row["alt"] else float("nan")
        lines.append(f"| {label} | {row['mean']:.4f} | {row['se']:.4f} | {gap:.4f} | {gap / se:.2f} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())

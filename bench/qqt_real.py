"""QQT on real text: quality buckets of Wikipedia topic data, single-bucket multi-epoch proxy curves, a QQT
fit, then proxy runs on two unions the fit never saw, predicted vs observed error at three budgets.

Data: every labelled Wikipedia summary of curate.corpora.wiki (11 topics), embedded with the static tier of
curate.embeddings. Score: class_proto_dist (pruning.prototypes, distance to the own-class prototype). Pools:
four equal quantile buckets of that score plus one damaged bucket (a disjoint sample with 50% of its labels
replaced at random). Proxy: scaling.proxy.train_probe (MLP on frozen embeddings), error = 1 - accuracy on a
held-out set, mean over seeds. Baseline for the union prediction: the mean of the member buckets'
observed single-bucket errors at the same samples seen. Prints tables; writes bench/results/qqt_real.csv
and .png.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python bench/qqt_real.py [--bucket-size 1250] [--epochs 8] [--seeds 2]
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import torch

from curate import corpora
from curate.embeddings import load_embedder
from curate.errors import FitWarning
from pruning.prototypes import prototype_scores
from scaling.buckets import bucket_name, qqt_curves, quality_buckets
from scaling.proxy import train_probe
from scaling.qqt import QQTFit, fit_qqt

RESULTS = Path(__file__).parent / "results"


def run_curves(
    pools: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    xe: np.ndarray,
    ye: np.ndarray,
    *,
    epochs: int,
    seeds: int,
) -> pl.DataFrame:
    """One multi-epoch probe per pool and seed (2 checkpoints per epoch); rows pool, seed, curve columns."""
    parts = []
    for name, rows in pools.items():
        for s in range(seeds):
            run = train_probe(
                x[rows], y[rows], x_eval=xe, y_eval=ye, n_classes=int(y.max()) + 1, epochs=epochs,
                batch_size=32, lr=1e-2, hidden=128, checkpoints_per_epoch=2, seed=s, device="cpu",
            )  # fmt: skip
            parts.append(run.curve.with_columns(pool=pl.lit(name), seed=pl.lit(s)))
    return pl.concat(parts)


def observed_at(curve: pl.DataFrame, budget: int) -> float:
    """Error at `budget` samples, linear in log samples between the two nearest checkpoints."""
    n, e = curve["samples_seen"].to_numpy(), curve["error"].to_numpy()
    return float(np.interp(np.log(budget), np.log(n), e))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket-size", type=int, default=1250)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models on a shared machine: thread spin-waits cost more than they give
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)

    docs = corpora.wiki(None, labelled_only=True, seed=0)
    labels = sorted(docs["label"].unique().to_list())
    y_all = docs["label"].replace_strict(labels, list(range(len(labels))), return_dtype=pl.Int64).to_numpy()
    x_all = load_embedder("static").encode(docs["text"].to_list())
    t_embed = time.perf_counter() - t0
    order = rng.permutation(docs.height)
    eval_rows, train_rows = order[:1500], order[1500:]
    size = args.bucket_size
    if 5 * size > len(train_rows):
        raise SystemExit(
            f"--bucket-size {size} too large for {len(train_rows)} training rows (needs 5 buckets)"
        )

    # quality buckets by a real score; the damaged bucket is a disjoint sample with half its labels randomised
    scored_rows = train_rows[: 4 * size]
    scores = prototype_scores(x_all[scored_rows], labels=y_all[scored_rows], seed=0)
    table = quality_buckets(
        scores.with_columns(doc_id=pl.Series(docs["id"].to_numpy()[scored_rows])),
        column="class_proto_dist",
        n_buckets=4,
    )
    y_train = y_all.copy()
    pools = {bucket_name(b): scored_rows[table["bucket"].to_numpy() == b] for b in range(4)}
    damaged = train_rows[4 * size : 5 * size]
    flip = rng.random(size) < 0.5
    y_train[damaged[flip]] = rng.integers(0, len(labels), int(flip.sum()))
    pools["damaged"] = damaged
    sizes = {k: len(v) for k, v in pools.items()}
    xe, ye = x_all[eval_rows], y_all[eval_rows]

    t1 = time.perf_counter()
    single = run_curves(pools, x_all, y_train, xe, ye, epochs=args.epochs, seeds=args.seeds)
    curves = qqt_curves(single)
    # d (the proxy's irreducible error) is not identified by single-bucket curves: calibrate it as the best
    # error of one run on the whole clean training pool (none of the evaluated unions), and also fit it free
    clean = np.setdiff1d(train_rows, damaged)
    full = qqt_curves(run_curves({"all": clean}, x_all, y_train, xe, ye, epochs=4, seeds=1))
    d_cal = float(full["error"].min())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        fit = fit_qqt(curves, sizes, d=d_cal, n_bootstrap=30, seed=0)
        fit_free = fit_qqt(curves, sizes, n_bootstrap=0, seed=0)
    t_single = time.perf_counter() - t1

    print(f"# QQT on real text: {docs.height} wiki docs, {len(labels)} topics, static embeddings "
          f"{x_all.shape[1]}-d; {len(eval_rows)} eval docs; 5 pools x {size} docs; {args.epochs} epochs x "
          f"{args.seeds} seeds per pool")  # fmt: skip
    for message in dict.fromkeys(str(w.message) for w in caught):  # both fits warn alike: print each once
        print(f"FitWarning: {message}")
    print(f"\nd calibrated on the whole clean pool ({len(clean)} docs, 4 epochs): {d_cal:.4f}")
    print(f"fit with calibrated d: a = {fit.a:.4g}, rmse(log error) = {fit.law.rmse_log:.4f}")
    print(f"fit with free d: a = {fit_free.a:.4g}, d = {fit_free.d:.4g}, rmse = {fit_free.law.rmse_log:.4f}")
    ci = fit.law.intervals()
    print(fit.params.join(
        ci.filter(pl.col("param").str.starts_with("b[")).select(
            pl.col("param").str.extract(r"b\[(.*)\]").alias("pool"), pl.col("lo").alias("b_lo"),
            pl.col("hi").alias("b_hi")), on="pool").sort("b"))  # fmt: skip

    # two unions the fit never saw: the top two and the top three buckets by fitted b
    ranked = fit.pools
    unions = {"+".join(ranked[:2]): ranked[:2], "+".join(ranked[:3]): ranked[:3]}
    union_rows = {name: np.concatenate([pools[p] for p in members]) for name, members in unions.items()}
    t2 = time.perf_counter()
    union_epochs = max(2, args.epochs // 2)
    observed = qqt_curves(
        run_curves(union_rows, x_all, y_train, xe, ye, epochs=union_epochs, seeds=args.seeds)
    )
    t_union = time.perf_counter() - t2
    per_pool = {p: curves.filter(pl.col("pool") == p) for p in pools}

    rows = []
    for name, members in unions.items():
        union_size = sum(sizes[p] for p in members)
        for mult in (1, 3, union_epochs):
            budget = int(mult * union_size)
            pred, lo, hi = fit.predict_interval(members, budget)
            obs = observed_at(observed.filter(pl.col("pool") == name), budget)
            base = float(np.mean([observed_at(per_pool[p], budget) for p in members]))
            free = fit_free.predict(members, budget)
            rows.append({"union": name, "budget": budget, "epochs_of_union": mult, "predicted": pred,
                         "lo": lo, "hi": hi, "observed": obs, "rel_err": abs(pred - obs) / obs,
                         "free_d_rel_err": abs(free - obs) / obs, "baseline": base,
                         "baseline_rel_err": abs(base - obs) / obs})  # fmt: skip
    report = pl.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report.write_csv(RESULTS / "qqt_real.csv")
    with pl.Config(tbl_rows=20, tbl_cols=12, float_precision=4):
        print("\nunions never trained on during the fit: predicted vs observed error")
        print(report)
    mare, mare_base = report["rel_err"].mean(), report["baseline_rel_err"].mean()
    print(f"\nmean absolute relative error: QQT {mare:.2%} (target <= 5%), baseline {mare_base:.2%}, "
          f"ratio QQT/baseline {mare / mare_base:.2f}; "
          f"QQT with free d {report['free_d_rel_err'].mean():.2%}")  # fmt: skip
    inside = ((report["lo"] <= report["observed"]) & (report["observed"] <= report["hi"])).sum()
    print(f"observed inside the 90% bootstrap interval: {inside}/{report.height}")

    budgets = [int(sum(sizes.values()) * f) for f in (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)]
    plan = fit.best_union(budgets)
    with pl.Config(tbl_rows=20, float_precision=4, fmt_table_cell_list_len=6):
        print("\nbest union of top buckets per budget (samples seen)")
        print(plan)
    print(f"best union changes with budget: {plan['n_pools'].n_unique() > 1} "
          f"(sizes chosen: {plan['n_pools'].to_list()})")  # fmt: skip
    plot(fit, curves, observed, unions, sizes, RESULTS / "qqt_real.png")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\ntimings (shared 2-core machine, under contention): embed {t_embed:.0f}s, "
          f"single-bucket runs + fit "
          f"{t_single:.0f}s, union runs {t_union:.0f}s, total {time.perf_counter() - t0:.0f}s; "
          f"peak RSS {rss:.0f} MiB")  # fmt: skip


def plot(
    fit: QQTFit,
    curves: pl.DataFrame,
    observed: pl.DataFrame,
    unions: dict[str, list[str]],
    sizes: dict[str, int],
    dest: Path,
) -> None:
    """Left: single-bucket curves with their fits. Right: the two unions, observed vs predicted."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for pool in fit.pools:
        part = curves.filter(pl.col("pool") == pool)
        n = part["samples_seen"].to_numpy()
        (line,) = left.plot(
            n,
            part["error"],
            "o",
            ms=3,
            label=f"{pool} (b={fit.params.filter(pl.col('pool') == pool)['b'][0]:.3f})",
        )
        grid = np.geomspace(n.min(), n.max(), 80)
        left.plot(grid, [fit.predict([pool], int(g)) for g in grid], "-", color=line.get_color())
    left.set(
        xscale="log",
        xlabel="samples seen",
        ylabel="eval error (1 - accuracy)",
        title="single buckets: data and QQT fit",
    )
    left.legend(fontsize=7)
    for name, members in unions.items():
        part = observed.filter(pl.col("pool") == name)
        n = part["samples_seen"].to_numpy()
        (line,) = right.plot(n, part["error"], "o", ms=3, label=f"{name} observed")
        grid = np.geomspace(n.min(), n.max(), 80)
        bands = [fit.predict_interval(members, int(g)) for g in grid]
        right.plot(grid, [b[0] for b in bands], "-", color=line.get_color(), label=f"{name} predicted")
        right.fill_between(
            grid, [b[1] for b in bands], [b[2] for b in bands], color=line.get_color(), alpha=0.2
        )
    right.set(
        xscale="log",
        xlabel="samples seen",
        ylabel="eval error",
        title="unions never fitted: predicted vs observed",
    )
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""Reproduction of Sorscher et al. 2022 (keep-easy vs keep-hard) on real labelled text: Wikipedia topics.

Data: the labelled English Wikipedia summaries (11 topics, ~9k docs) embedded with the static tier
(`curate.embeddings.load_embedder("static")`; vectors cached in bench/out/). A fixed held-out set of 2,000
documents is the target; for each seed an initial training set of each size is drawn from the rest.
Scores are computed on the initial set only: self-supervised prototypes (SSP, spherical k-means with
k = 11, the number of topics, as the paper sets k to the class count), and the score step's labelled scores
(`pruning.scores.labelled_scores`: supervised prototypes, the distance to the own class mean, and EL2N with
3 probes, 5 epochs). Each score is pruned keep-hard and keep-easy with the prune step's
`pruning.policies.select`, class-balanced and not, plus random; the proxy classifier
(`scaling.proxy.train_probe`, the same epochs for every pruned set) is trained on what is kept and its
held-out accuracy recorded. 3 seeds.
Outputs: OUT/pruning_scaling.csv (one row per run) and pruning_scaling.png (OUT = bench/results by default);
prints mean +- sd.
Run: `.venv/bin/python bench/pruning_scaling.py [--sizes 200 1000 5000 --fractions 0.2 0.5] [--out DIR]`
(--smoke: 400 documents, one size, fraction and seed, into --out, no vector cache: a check that the script
runs, not a measurement).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from curate import corpora
from curate.embeddings import load_embedder
from pruning.policies import Balance, Policy, recommend_policy, select
from pruning.prototypes import PrototypeScorer
from pruning.scores import labelled_scores
from scaling.proxy import train_probe

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / "out" / "wiki_labelled_static.npz"
RESULTS = ROOT / "results"
N_TEST = 2000
SCORES = {"ssp": "proto_dist", "supervised": "class_proto_dist", "el2n": "difficulty"}
EPOCHS, BATCH, LR = 15, 64, 1e-2  # the same for every pruned set


def load_data(n: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Static-tier vectors, integer topic ids and topic names of the labelled Wikipedia set (cached when
    whole; `n`: a seeded sample of n documents, not cached)."""
    docs = corpora.wiki(n, labelled_only=True)
    if n is not None:
        vectors = load_embedder("static").encode(docs["text"].to_list())
    elif CACHE.is_file():
        cached = np.load(CACHE, allow_pickle=False)
        if list(cached["ids"]) == docs["id"].to_list():
            vectors = cached["vectors"]
        else:
            CACHE.unlink()
            return load_data(n)
    else:
        vectors = load_embedder("static").encode(docs["text"].to_list())
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        np.savez(CACHE, ids=np.array(docs["id"].to_list()), vectors=vectors)
    topics = sorted(set(docs["label"].to_list()))
    y = np.array([topics.index(t) for t in docs["label"]], dtype=np.int64)
    return vectors, y, topics


def score_initial(x: np.ndarray, y: np.ndarray, topics: list[str], seed: int) -> pl.DataFrame:
    """Scores of one initial set: doc_id, label, cluster_id, proto_dist, class_proto_dist, difficulty."""
    names = [topics[i] for i in y]
    protos = PrototypeScorer(k=len(topics), seed=seed).fit(x).score(x).select("cluster_id", "proto_dist")
    ids = [f"d{i:05d}" for i in range(len(y))]
    labelled = labelled_scores(ids, x, names, seed=seed).select(
        "doc_id", "class_proto_dist", difficulty="el2n"
    )
    frame = pl.DataFrame({"doc_id": ids, "label": names}).hstack(protos)
    return frame.join(labelled, on="doc_id", how="left", maintain_order="left")


def accuracy(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int, *, n_classes: int
) -> float:
    """Held-out accuracy of the proxy probe trained EPOCHS epochs on (x, y)."""
    run = train_probe(
        x,
        y,
        x_eval=x_test,
        y_eval=y_test,
        n_classes=n_classes,
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=LR,
        seed=seed,
    )
    return float(run.curve["eval_accuracy"][-1])


def run(
    sizes: list[int], fractions: list[float], seeds: list[int], out: Path, *, n_docs: int | None, n_test: int
) -> pl.DataFrame:
    """Every (size, seed, fraction, method, policy, balance) run; rows appended to `out` as they finish."""
    vectors, y, topics = load_data(n_docs)
    order = np.random.default_rng(12345).permutation(len(y))
    test, pool = order[:n_test], order[n_test:]
    x_test, y_test = vectors[test], y[test]
    rows: list[dict[str, object]] = []
    started = time.perf_counter()
    for n in sizes:
        for seed in seeds:
            pick = np.random.default_rng([seed, n]).choice(pool, size=n, replace=False)
            x, yy = vectors[pick], y[pick]
            scores = score_initial(x, yy, topics, seed)
            base = {"n_initial": n, "seed": seed}
            full = accuracy(x, yy, x_test, y_test, seed, n_classes=len(topics))
            rows.append(
                {
                    **base,
                    "keep_fraction": 1.0,
                    "n_kept": n,
                    "method": "full",
                    "policy": "all",
                    "balance": "none",
                    "accuracy": full,
                }
            )
            for f in fractions:
                plans: list[tuple[str, Policy, Balance]] = [
                    (m, p, b) for m in SCORES for p in ("keep_hard", "keep_easy") for b in ("none", "class")
                ]
                plans += [("random", "random", b) for b in ("none", "class")]
                for method, policy, balance in plans:
                    kept = select(
                        scores,
                        keep_fraction=f,
                        policy=policy,
                        balance=balance,
                        score=SCORES.get(method, "proto_dist"),
                        seed=seed,
                    )["kept"].to_numpy()
                    acc = accuracy(x[kept], yy[kept], x_test, y_test, seed, n_classes=len(topics))
                    rows.append(
                        {
                            **base,
                            "keep_fraction": f,
                            "n_kept": int(kept.sum()),
                            "method": method,
                            "policy": policy,
                            "balance": balance,
                            "accuracy": acc,
                        }
                    )
            pl.DataFrame(rows).write_csv(out)
            print(
                f"  n={n} seed={seed} done ({time.perf_counter() - started:.0f} s, full acc {full:.3f})",
                flush=True,
            )
    return pl.DataFrame(rows)


def summarise(df: pl.DataFrame) -> pl.DataFrame:
    """Mean and sd of accuracy over seeds per (n_initial, keep_fraction, method, policy, balance)."""
    keys = ["n_initial", "keep_fraction", "method", "policy", "balance"]
    return (
        df.group_by(keys)
        .agg(
            mean=pl.col("accuracy").mean(),
            sd=pl.col("accuracy").std(),
            n_kept=pl.col("n_kept").mean(),
            runs=pl.len(),
        )
        .sort(keys)
    )


def print_table(summary: pl.DataFrame) -> None:
    """One line per (method, policy, balance), one column per (size, fraction): mean +- sd accuracy."""
    cols = (
        summary.filter(pl.col("method") != "full")
        .select("n_initial", "keep_fraction")
        .unique()
        .sort(pl.all())
    )
    head = f"{'method/policy/balance':<28}" + "".join(f"{f'N={n} f={f:g}':>15}" for n, f in cols.iter_rows())
    print(head)
    full = summary.filter(pl.col("method") == "full")
    print(
        f"{'full (no pruning)':<28}"
        + "".join(f"{_cell(full.filter(pl.col('n_initial') == n)):>15}" for n, _ in cols.iter_rows())
    )
    for (method, policy, balance), grp in summary.filter(pl.col("method") != "full").group_by(
        "method", "policy", "balance", maintain_order=True
    ):
        label = f"{method}/{policy.replace('keep_', '')}/{balance}"
        cells = [
            _cell(grp.filter((pl.col("n_initial") == n) & (pl.col("keep_fraction") == f)))
            for n, f in cols.iter_rows()
        ]
        print(f"{label:<28}" + "".join(f"{c:>15}" for c in cells))


def _cell(rows: pl.DataFrame) -> str:
    if rows.is_empty():
        return "-"
    r = rows.row(0, named=True)
    return f"{r['mean']:.3f}+-{(r['sd'] or 0.0):.3f}"


def verdicts(df: pl.DataFrame) -> None:
    """Keep-easy minus keep-hard at the smallest and largest size, per score and balance, with seed spread."""
    sizes = sorted(df["n_initial"].unique().to_list())
    pruned = df.filter(pl.col("policy").is_in(["keep_hard", "keep_easy"]))
    wide = pruned.pivot(
        on="policy", index=["n_initial", "seed", "keep_fraction", "method", "balance"], values="accuracy"
    ).with_columns(gap=pl.col("keep_easy") - pl.col("keep_hard"))
    print("\nkeep-easy minus keep-hard accuracy, mean +- sd over seeds (> 0: keep-easy better):")
    for n in (sizes[0], sizes[-1]):
        stats = (
            wide.filter(pl.col("n_initial") == n)
            .group_by("keep_fraction", "method", "balance")
            .agg(mean=pl.col("gap").mean(), sd=pl.col("gap").std())
            .sort("keep_fraction", "method", "balance")
        )
        for f, grp in stats.group_by("keep_fraction", maintain_order=True):
            text = ", ".join(f"{m}/{b} {r:+.3f}+-{s or 0.0:.3f}" for _, m, b, r, s in grp.iter_rows())
            wins = int((grp["mean"] > 0).sum())
            print(f"  N={n} f={f[0]:g}: {text}  -> keep-easy ahead in {wins}/{grp.height}")
    fractions = sorted(df["keep_fraction"].unique().to_list())
    for f in fractions[:-1]:
        big = df.filter((pl.col("n_initial") == sizes[-1]) & (pl.col("keep_fraction") == f))
        ranked = (
            big.group_by("method", "policy", "balance")
            .agg(pl.col("accuracy").mean())
            .sort("accuracy", descending=True)
        )
        text = ", ".join(f"{m}/{p.replace('keep_', '')}/{b} {a:.3f}" for m, p, b, a in ranked.iter_rows())
        print(f"\nN={sizes[-1]}, keep_fraction={f:g}, ranked: {text}")
    f_mid = fractions[0]
    ssp = pl.col("method").is_in(["ssp", "random"]) & (pl.col("balance") == "class")
    for n in (sizes[0], sizes[-1]):
        frame = df.filter(ssp & (pl.col("n_initial") == n)).with_columns(pl.col("accuracy").cast(pl.Float64))
        budget = int(n * f_mid)
        advice = recommend_policy(n, budget, sweep=frame)
        print(f"recommend_policy(N={n}, budget={budget}), class-balanced SSP sweep: {advice.reason}")
        print(
            f"recommend_policy(N={n}, budget={budget}), ratio heuristic: {recommend_policy(n, budget).reason}"
        )


def plot(summary: pl.DataFrame, path: Path) -> None:
    """Accuracy vs keep fraction, one panel per (balance, size), error bars = sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(summary["n_initial"].unique().to_list())
    fig, axes = plt.subplots(2, len(sizes), figsize=(5 * len(sizes), 8), sharey="col", squeeze=False)
    colours = {"ssp": "tab:blue", "supervised": "tab:green", "el2n": "tab:red", "random": "black"}
    styles = {"keep_hard": "-", "keep_easy": "--", "random": ":"}
    for row, balance in enumerate(("none", "class")):
        for col, n in enumerate(sizes):
            ax = axes[row][col]
            full = summary.filter((pl.col("n_initial") == n) & (pl.col("method") == "full"))
            for (method, policy), grp in summary.filter(
                (pl.col("n_initial") == n) & (pl.col("balance") == balance) & (pl.col("method") != "full")
            ).group_by("method", "policy", maintain_order=True):
                grp = pl.concat(
                    [
                        grp,
                        full.with_columns(
                            method=pl.lit(method), policy=pl.lit(policy), balance=pl.lit(balance)
                        ),
                    ]
                ).sort("keep_fraction")
                ax.errorbar(
                    grp["keep_fraction"],
                    grp["mean"],
                    yerr=grp["sd"].fill_null(0.0),
                    capsize=2,
                    color=colours[method],
                    linestyle=styles[policy],
                    label=f"{method} {policy}",
                )
            ax.set_title(f"N={n}, balance={balance}")
            ax.set_xlabel("keep fraction")
            ax.set_ylabel("held-out accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--report-only", action="store_true", help="reprint the tables from the saved CSV")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a check, not a measurement")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the CSV and the plot")
    args = parser.parse_args(argv)
    n_docs, n_test = None, N_TEST
    if args.smoke:
        args.sizes, args.fractions, args.seeds, n_docs, n_test = [80], [0.5], [0], 400, 100
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLPs: one thread is fastest and kindest on a shared machine
    try:
        report(args, n_docs=n_docs, n_test=n_test)
    finally:
        torch.set_num_threads(threads)
    return 0


def report(args: argparse.Namespace, *, n_docs: int | None, n_test: int) -> None:
    """Run (or re-read) the sweep, plot it and print the tables."""
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "pruning_scaling.csv"
    start = time.perf_counter()
    if args.report_only:
        df = pl.read_csv(csv)
    else:
        df = run(args.sizes, args.fractions, args.seeds, csv, n_docs=n_docs, n_test=n_test)
    summary = summarise(df)
    plot(summary, args.out / "pruning_scaling.png")
    print(
        f"\nheld-out accuracy, {n_test} Wikipedia test docs, 11 topics, static-tier embeddings, "
        f"probe epochs={EPOCHS} batch={BATCH} lr={LR}; mean+-sd over seeds {args.seeds}"
        + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else "")
    )
    print_table(summary)
    verdicts(df)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    done = f"re-reported from {csv}" if args.report_only else f"{len(df)} probe runs in {wall:.0f} s"
    print(f"\n{done}, peak RSS {rss:.2f} GiB; plot in {args.out / 'pruning_scaling.png'}")


if __name__ == "__main__":
    sys.exit(main())

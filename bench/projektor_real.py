"""Projektor on real multi-source data: stage-1 held-out MAE, stage-2 error at 10x the pilot, p* vs baselines.

Task: topic classification of English Wikipedia summaries (11 vital-article topics; target = a held-out
sample of wiki_en, metric = the probe's eval cross-entropy, lower is better). Sources are pools that all
carry labels from the target's label space, with different relevance:
  wiki_en        English summaries (disjoint from the target)           in-domain
  wiki_fr        French summaries, topics mapped to the English names   same labels, shifted features
  wiki_es        Spanish summaries, 7 of its 8 topics mapped            partial label coverage, shifted
  wiki_en_noisy  English summaries with 60% of labels replaced at random  degraded (looks in-domain)
Embeddings: the static tier (curate.embeddings, 256-d) so 25k texts embed in under a minute on 2 cores.
Proxy: the shared MLP probe (scaling.proxy via pipelines.calibrate), best checkpoint of the eval loss.
Calibration: simplex lattice (divisions 4 -> 35 mixtures) x pilot sizes 200, 300 x 3 repeats, Ray tasks.
Real runs at N = 3000 (10x the largest pilot), 3 repeats each, median.

Run: .venv/bin/python bench/projektor_real.py   (writes bench/results/projektor_real.{md,png})
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

FR = {
    "Personnalités": "People",
    "Santé et médecine": "Biology and health sciences",
    "Géographie": "Geography",
    "Science": "Physical sciences",
    "Société et sciences sociales": "Society and social sciences",
    "Technologie": "Technology",
    "Histoire": "History",
    "Arts et culture": "Arts",
    "Vie quotidienne": "Everyday life",
    "Philosophie et religion": "Philosophy and religion",
    "Mathématiques": "Mathematics",
}
ES = {
    "Personas": "People",
    "Geografía": "Geography",
    "Historia": "History",
    "Artes": "Arts",
    "Tecnología": "Technology",
    "Filosofía y religión": "Philosophy and religion",
    "Matemáticas": "Mathematics",
}
PILOTS = (200, 300)
N_BIG = 10 * PILOTS[-1]
EPOCHS = 30
TARGET_SIZE = 800
NOISE = 0.6
OT_POINTS = 400
SEED = 0
OUT = Path(__file__).parent / "results"


def load_sources() -> tuple[
    dict[str, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray], list[str]
]:
    """Embedded, labelled source pools and the target eval set (class ids in sorted English topic order)."""
    from curate import corpora
    from curate.embeddings import load_embedder

    embed = load_embedder("static")
    en = corpora.wiki(lang="en", labelled_only=True)
    classes = sorted(en["label"].unique().to_list())
    ids = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(SEED)
    order = rng.permutation(en.height)
    target_rows, rest = order[:TARGET_SIZE], order[TARGET_SIZE:]
    clean_rows, noisy_rows = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    x_en = embed.encode(en["text"].to_list())
    y_en = np.array([ids[c] for c in en["label"]])
    y_noisy = y_en[noisy_rows].copy()
    flip = rng.random(len(y_noisy)) < NOISE
    y_noisy[flip] = rng.integers(0, len(classes), int(flip.sum()))
    pools = {"wiki_en": (x_en[clean_rows], y_en[clean_rows])}
    for lang, mapping in (("fr", FR), ("es", ES)):
        df = corpora.wiki(lang=lang, labelled_only=True).filter(pl.col("label").is_in(list(mapping)))
        pools[f"wiki_{lang}"] = (
            embed.encode(df["text"].to_list()),
            np.array([ids[mapping[c]] for c in df["label"]]),
        )
    pools["wiki_en_noisy"] = (x_en[noisy_rows], y_noisy)
    return pools, (x_en[target_rows], y_en[target_rows]), classes


def main() -> int:
    from pipelines.projektor_runs import calibrate_mixtures, proxy_runs

    from pipelines.ray_executor import RayExecutor
    from pipelines.runtime import init_ray, shutdown_ray
    from scaling.mixture import compare_mixtures
    from scaling.ot import MixtureDistance
    from scaling.projektor import fit_projektor, median_runs

    t0 = time.perf_counter()
    pools, target, classes = load_sources()
    sources = list(pools)
    sizes = {s: len(v[1]) for s, v in pools.items()}
    embed_s = time.perf_counter() - t0
    print(f"sources {sizes}; target {len(target[1])} rows, {len(classes)} classes; embed {embed_s:.0f}s")
    distance = MixtureDistance(
        {s: v[0] for s, v in pools.items()},
        target[0],
        pool_labels={s: v[1] for s, v in pools.items()},
        target_labels=target[1],
        max_points=OT_POINTS,
        seed=SEED,
    )
    init_ray(None, num_cpus=2)
    executor = RayExecutor(batch_size=1)
    try:
        t1 = time.perf_counter()
        runs = calibrate_mixtures(
            pools,
            target,
            distance=distance,
            executor=executor,
            pilot_sizes=PILOTS,
            divisions=4,
            repeats=3,
            epochs=EPOCHS,
            seed=SEED,
        )
        print(
            f"calibration: {runs.height} proxy runs + {runs['mixture'].n_unique()} OT values in "
            f"{time.perf_counter() - t1:.0f}s"
        )
        med = median_runs(runs, sources=sources)
        n_mix = runs["mixture"].n_unique()
        held = [i for i in range(n_mix) if i % 5 == 2]  # every 5th mixture held out of the stage-1 fit
        fit_part = runs.filter(~pl.col("mixture").is_in(held))
        model_ho = fit_projektor(fit_part, sources=sources, distance=distance)
        ho = (
            runs.filter(pl.col("mixture").is_in(held))
            .group_by("mixture", "n", *sources)
            .agg(pl.col("metric").median(), pl.col("ot").median())
        )
        stage1_err = []
        for r in ho.iter_rows(named=True):
            fit = next(f for f in model_ho.fits if f.n == r["n"])
            p = np.array([r[s] for s in sources])
            stage1_err.append(abs(float(fit.predict(p[None, :], np.array([r["ot"]]))[0]) - r["metric"]))
        stage1_mae = float(np.mean(stage1_err))
        stage1_spread = float(med["metric"].max() - med["metric"].min())  # type: ignore[operator]

        model = fit_projektor(runs, sources=sources, distance=distance)
        t2 = time.perf_counter()
        table = compare_mixtures(
            runs, sources=sources, n=N_BIG, source_sizes=sizes, distance=distance, seed=SEED
        )
        print(f"projektor optimise + baselines in {time.perf_counter() - t2:.0f}s")
        check_ids = held[:6] if len(held) >= 6 else list(range(0, n_mix, max(1, n_mix // 6)))[:6]
        grid = (
            runs.group_by("mixture", maintain_order=True)
            .agg(pl.col(s).first() for s in sources)
            .sort("mixture")
        )
        check_p = grid.filter(pl.col("mixture").is_in(check_ids)).select(sources).to_numpy()
        method_p = table.select(sources).to_numpy()
        all_p = np.vstack([check_p, method_p])
        t3 = time.perf_counter()
        big = proxy_runs(
            pools, target, all_p, [N_BIG], executor=executor, repeats=3, epochs=EPOCHS, seed=SEED + 1
        )
        print(f"{big.height} real runs at N={N_BIG} in {time.perf_counter() - t3:.0f}s")
    finally:
        shutdown_ray()
    real = big.group_by("mixture").agg(pl.col("metric").median()).sort("mixture")["metric"].to_numpy()
    pred_check = np.array([model.predict(N_BIG, p).value for p in check_p])
    real_check = real[: len(check_p)]
    stage2_mae = float(np.mean(np.abs(pred_check - real_check)))
    stage2_spread = float(real_check.max() - real_check.min())
    table = table.with_columns(pl.Series("real", real[len(check_p) :]))

    lines = [
        f"# Projektor on real multi-source data (wiki_en topic target; pilots {PILOTS}, N = {N_BIG})",
        "",
        f"sources: {sizes}; target {len(target[1])} wiki_en rows, {len(classes)} classes; metric = eval loss",
        f"grid: {n_mix} mixtures x {len(PILOTS)} pilot sizes x 3 repeats = {runs.height} proxy runs; "
        f"OT on <= {OT_POINTS} pool points",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| (i) stage-1 MAE on {len(held)} held-out mixtures (both pilot sizes) | {stage1_mae:.4f} |",
        f"| spread of pilot metrics (max - min) | {stage1_spread:.4f} |",
        f"| (ii) stage-2 MAE at N={N_BIG} on {len(check_p)} mixtures | {stage2_mae:.4f} |",
        f"| spread of real metrics on those mixtures | {stage2_spread:.4f} |",
        f"| spread / stage-2 MAE (target >= 5) | {stage2_spread / max(stage2_mae, 1e-12):.1f} |",
        "",
        "| mixture (check) | " + " | ".join(sources) + " | predicted | real |",
        "|---|" + "---|" * (len(sources) + 2),
    ]
    for p, pr, re_ in zip(check_p, pred_check, real_check, strict=True):
        lines.append("| check | " + " | ".join(f"{w:.2f}" for w in p) + f" | {pr:.4f} | {re_:.4f} |")
    lines += [
        "",
        "(iii) real performance at N (median of 3 runs; lower is better)",
        "",
        "| method | " + " | ".join(sources) + " | predicted [90% interval] | real |",
        "|---|" + "---|" * (len(sources) + 2),
    ]
    for r in table.iter_rows(named=True):
        lines.append(
            f"| {r['method']} | "
            + " | ".join(f"{r[s]:.3f}" for s in sources)
            + f" | {r['predicted']:.4f} [{r['lo']:.4f}, {r['hi']:.4f}] | {r['real']:.4f} |"
        )
    rep = big.filter(pl.col("mixture") >= len(check_p)).group_by("mixture").agg(pl.col("metric").std())
    noise = float(rep["metric"].median())  # type: ignore[arg-type]
    lines += [
        "",
        f"repeat noise (median std over 3 repeats at N): {noise:.4f}",
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (driver); "
        f"wall {time.perf_counter() - t0:.0f}s on the shared 2-core CPU",
    ]
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "projektor_real.md").write_text(text + "\n", encoding="utf-8")
    _plot(med, model, sources, check_p, pred_check, real_check, table)
    return 0


def _plot(med, model, sources, check_p, pred_check, real_check, table) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    ax = axes[0]
    lo = min(pred_check.min(), real_check.min())
    hi = max(pred_check.max(), real_check.max())
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
    ax.scatter(real_check, pred_check)
    ax.set_xlabel(f"real eval loss at N={N_BIG}")
    ax.set_ylabel("Projektor stage-2 prediction")
    ax.set_title("stage 2: predicted vs real")
    ax = axes[1]
    ax.bar(table["method"].to_list(), table["real"].to_list(), color="tab:blue", label="real")
    ax.scatter(
        table["method"].to_list(), table["predicted"].to_list(), color="tab:red", zorder=3, label="predicted"
    )
    ax.set_ylim(min(table["real"].min(), table["predicted"].min()) * 0.95, None)
    ax.set_ylabel(f"eval loss at N={N_BIG}")
    ax.set_title("mixture methods")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "projektor_real.png", dpi=110)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

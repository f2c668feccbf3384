"""Prototype k-means at scale: PrototypeScorer (fit on a seeded sample, assign all) vs faiss on all points.

Data: n random-but-clustered float32 vectors (k_true centres on the unit sphere, Gaussian noise, rows
L2-normalised), generated from a seed. Each variant runs in its own child process so its peak RSS
(ru_maxrss) is its own. Baseline: `faiss.Kmeans(spherical=True)` trained on every point (no faiss
subsampling), then one exact assignment. If the baseline is capped (`--baseline-iters` < `--iters`), its
fit time at the full iteration count is extrapolated linearly per iteration and marked as such.
The objective column is the mean proto_dist = mean(1 - max_c cos(z, mu_c)) over all n points (lower =
tighter prototypes), so the sample fit's quality loss is visible next to its speed-up.
Prints the table and writes it to OUT/kmeans.txt (bench/results by default).
Run: `.venv/bin/python bench/kmeans.py [--n 1000000 --dim 384 --k 1000 --sample 100000] [--out DIR]`
(--smoke: a few thousand small vectors, both variants in this process, into --out: a check that the script
runs, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from pruning.prototypes import PrototypeScorer

OUT = Path(__file__).parent / "results"
SMOKE = {"n": 2000, "dim": 16, "k": 8, "sample": 500, "iters": 5, "baseline_iters": 5}


def clustered(n: int, dim: int, *, centres: int, seed: int = 0, noise: float = 0.06) -> np.ndarray:
    """n unit rows around `centres` random unit centres (per-coordinate noise sd `noise`), float32."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centres, dim), dtype=np.float32)
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        block = mu[rng.integers(0, centres, e - s)] + noise * rng.standard_normal(
            (e - s, dim), dtype=np.float32
        )
        out[s:e] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far (GiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_variant(args: argparse.Namespace) -> dict[str, float | int | str]:
    """Generate the data, run one variant, return its timings, RSS and objective."""
    x = clustered(args.n, args.dim, centres=args.k, seed=args.seed)
    data_rss = peak_rss_gib()
    if args.variant == "sample":
        start = time.perf_counter()
        scorer = PrototypeScorer(k=args.k, sample_size=args.sample, n_iter=args.iters, seed=args.seed).fit(x)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        dist = scorer.score(x)["proto_dist"].to_numpy()
        assign_s = time.perf_counter() - start
        points, iters = scorer.n_fit_, args.iters
    else:
        iters = args.baseline_iters
        km = faiss.Kmeans(
            args.dim, args.k, niter=iters, spherical=True, seed=args.seed, max_points_per_centroid=args.n
        )
        start = time.perf_counter()
        km.train(x)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        sims, _ = km.index.search(x, 1)
        assign_s = time.perf_counter() - start
        dist = 1.0 - sims[:, 0]
        points = args.n
    return {
        "variant": args.variant,
        "fit_points": points,
        "iters": iters,
        "fit_s": fit_s,
        "fit_s_at_full_iters": fit_s * args.iters / iters,
        "assign_s": assign_s,
        "objective": float(dist.mean()),
        "data_rss_gib": data_rss,
        "peak_rss_gib": peak_rss_gib(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=100_000)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--baseline-iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, in this process: not a measurement")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of kmeans.txt")
    parser.add_argument("--variant", choices=["sample", "all"], help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.smoke:
        vars(args).update(SMOKE)
    if args.variant:
        print(json.dumps(run_variant(args)))
        return 0
    rows = []
    for variant in ("sample", "all"):
        if args.smoke:  # peak RSS is then this process's, not the variant's alone
            rows.append(run_variant(argparse.Namespace(**{**vars(args), "variant": variant})))
            continue
        cmd = [sys.executable, __file__, "--variant", variant, *(sys.argv[1:] if argv is None else argv)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[1]
    base_total = float(base["fit_s_at_full_iters"]) + float(base["assign_s"])
    lines = [f"k-means n={args.n:,} dim={args.dim} k={args.k} iters={args.iters} (2 shared CPU cores)"
             + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else "")]  # fmt: skip
    head = f"{'variant':<8} {'fit pts':>9} {'iters':>5} {'fit s':>8} {'fit s@full':>10} {'assign s':>8} "
    lines.append(head + f"{'total s':>8} {'vs all':>7} {'objective':>9} {'data GiB':>8} {'peak GiB':>8}")
    for r in rows:
        total = float(r["fit_s_at_full_iters"]) + float(r["assign_s"])
        ratio = base_total / total
        lines.append(
            f"{r['variant']:<8} {r['fit_points']:>9,} {r['iters']:>5} {r['fit_s']:>8.1f} "
            f"{r['fit_s_at_full_iters']:>10.1f} {r['assign_s']:>8.1f} {total:>8.1f} {ratio:>6.1f}x "
            f"{r['objective']:>9.4f} {r['data_rss_gib']:>8.2f} {r['peak_rss_gib']:>8.2f}"
        )
    if int(base["iters"]) < args.iters:
        lines.append(
            f"note: the all-points baseline ran {base['iters']} iterations; its 'fit s@full' and total are "
            f"extrapolated linearly to {args.iters} iterations."
        )
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kmeans.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

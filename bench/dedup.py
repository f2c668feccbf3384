"""Benchmark fuzzy dedup: MinHash signature throughput vs datasketch; end-to-end dedup of synthetic documents.

  python bench/dedup.py [--n 1000000] [--n-baseline 50000] [--n-sig 20000] [--n-sig-baseline 2000]
                        [--n-ray 20000 100000] [--ray-only] [--out DIR] [--smoke]

Documents are ~500 characters of Zipf-distributed random words; 10% are planted near-copies of another
document (one word substituted, deleted or inserted, or two adjacent words swapped: 5-gram Jaccard
~0.85-0.9).
Signatures: `minhash_signatures` vs a `datasketch.MinHash.update` loop and `MinHash.bulk` (hashfunc =
`shingle_hash`, so the signatures are equal; checked). End to end: `fuzzy_duplicates` in a child process (its
peak RSS is the dedup's alone) vs datasketch `MinHash.bulk` + `MinHashLSH` insert + query + union-find
(same bands). Ray (--n-ray): the dedup step's Ray path, `pipelines.dedup_ray.text_duplicates_ray` (exact, then
fuzzy, as Ray tasks), against the in-process passes the step runs otherwise (`text_duplicates`) on the same
part files; equal tables are checked. Prints the tables and writes them to OUT/dedup.txt (bench/results by
default). --smoke: a few hundred documents, everything in this process, into --out: a check that the script
runs, not a measurement.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import polars as pl
from datasketch import MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate.dedup.fuzzy import fuzzy_duplicates
from curate.dedup.lsh import lsh_params
from curate.dedup.minhash import minhash_signatures, shingle_hash
from curate.dedup.passes import TextDedup, text_duplicates
from curate.hashing import content_hashes

WORDS_PER_DOC = 82  # ~500 characters with the vocabulary below
THRESHOLD, NUM_PERM, FN_WEIGHT = 0.8, 128, 0.8
OUT = Path(__file__).parent / "results"


def synthetic_docs(n: int, *, dup_fraction: float = 0.1, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """`n` docs (doc_id, text), `dup_fraction` of them planted near-copies, and the (original, copy) rows."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, size=rng.integers(2, 9))) for _ in range(30_000)])
    prob = 1.0 / (np.arange(len(vocab)) + 20.0)
    prob /= prob.sum()
    n_copies = int(n * dup_fraction)
    tokens = rng.choice(len(vocab), size=(n, WORDS_PER_DOC), p=prob).astype(np.int32)
    texts = [" ".join(vocab[r].tolist()) for r in tokens]
    sources = rng.choice(n - n_copies, size=n_copies, replace=False)
    pairs = np.stack([sources, np.arange(n - n_copies, n)], axis=1)
    for src, dst in pairs:
        words = tokens[src].tolist()
        pos = int(rng.integers(1, WORDS_PER_DOC - 2))
        edit = int(rng.integers(4))
        if edit == 0:
            words[pos] = int(rng.integers(len(vocab)))
        elif edit == 1:
            del words[pos]
        elif edit == 2:
            words.insert(pos, int(rng.integers(len(vocab))))
        else:
            words[pos], words[pos + 1] = words[pos + 1], words[pos]
        texts[dst] = " ".join(vocab[words].tolist())
    ids = [f"doc{i:08d}" for i in rng.permutation(n)]  # copies are not always the larger doc_id
    return pl.DataFrame({"doc_id": ids, "text": texts}), pairs


def _py_shingles(text: str) -> list[tuple[str, ...]]:
    toks = re.findall(r"\w+", text.lower())
    return [tuple(toks[i : i + 5]) for i in range(len(toks) - 4)]


def bench_signatures(docs: pl.DataFrame, n_baseline: int) -> list[tuple[str, int, float]]:
    """(method, docs, seconds) for the vectorised code and two datasketch paths; asserts equal signatures."""
    t0 = time.perf_counter()
    ours = minhash_signatures(docs["text"], num_perm=NUM_PERM)
    t_ours = time.perf_counter() - t0
    sub = docs["text"][:n_baseline].to_list()
    t0 = time.perf_counter()
    loop = []
    for text in sub:
        m = MinHash(num_perm=NUM_PERM, seed=0, hashfunc=shingle_hash)
        for s in _py_shingles(text):
            m.update(s)
        loop.append(m.hashvalues)
    t_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    bulk = MinHash.bulk([_py_shingles(t) for t in sub], num_perm=NUM_PERM, seed=0, hashfunc=shingle_hash)
    t_bulk = time.perf_counter() - t0
    np.testing.assert_array_equal(ours[:n_baseline], np.array(loop))
    np.testing.assert_array_equal(ours[:n_baseline], np.array([m.hashvalues for m in bulk]))
    return [("curate vectorised", len(docs), t_ours), ("datasketch update loop", n_baseline, t_loop),
            ("datasketch MinHash.bulk", n_baseline, t_bulk)]  # fmt: skip


def _planted_recall(cluster: dict[str, str | None], ids: list[str], pairs: np.ndarray) -> float:
    hit = [cluster[ids[a]] is not None and cluster[ids[a]] == cluster[ids[b]] for a, b in pairs]
    return float(np.mean(hit)) if hit else float("nan")


def _run_ours(path: str) -> tuple[float, float, dict[str, str | None]]:
    """Child process: read the docs, dedup, return (seconds, peak RSS GiB, doc_id -> cluster_id)."""
    docs = pl.read_parquet(path)
    t0 = time.perf_counter()
    out = fuzzy_duplicates(docs, threshold=THRESHOLD, num_perm=NUM_PERM, false_negative_weight=FN_WEIGHT)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return seconds, rss, dict(zip(out["doc_id"].to_list(), out["cluster_id"].to_list(), strict=True))


def _run_datasketch(docs: pl.DataFrame) -> tuple[float, dict[str, str | None]]:
    """MinHash.bulk + MinHashLSH insert/query (same bands), then union-find; returns (seconds, clusters)."""
    ids, texts = docs["doc_id"].to_list(), docs["text"].to_list()
    t0 = time.perf_counter()
    sigs = MinHash.bulk([_py_shingles(t) for t in texts], num_perm=NUM_PERM, seed=0, hashfunc=shingle_hash)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, weights=(1 - FN_WEIGHT, FN_WEIGHT))
    for i, m in enumerate(sigs):
        lsh.insert(i, m)
    rows, cols = [], []
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if j > i and sigs[i].jaccard(sigs[j]) >= THRESHOLD:
                rows.append(i)
                cols.append(j)
    n = len(ids)
    _, label = connected_components(
        coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False
    )
    seconds = time.perf_counter() - t0
    frame = pl.DataFrame({"doc_id": ids, "label": label})
    frame = frame.with_columns(kept=pl.col("doc_id").min().over("label"), size=pl.len().over("label"))
    kept = frame.select(pl.when(pl.col("size") > 1).then("kept"))["kept"].to_list()
    return seconds, dict(zip(ids, kept, strict=True))


def _bench_ray(n: int, tmp: Path, say: Callable[[str], None]) -> None:
    """The dedup step's Ray path (embedded runtime, 2 CPUs; an existing one is reused) vs its in-process
    passes on the same part files; same DEDUP table?"""
    from pipelines.dedup_ray import text_duplicates_ray
    from pipelines.ray_executor import ray_executor

    docs, _ = synthetic_docs(n, seed=3)
    docs = docs.with_columns(content_hash=pl.Series(content_hashes(docs["text"].to_arrow()), dtype=pl.Binary))
    params = TextDedup(threshold=THRESHOLD, num_perm=NUM_PERM, false_negative_weight=FN_WEIGHT)
    tmp.mkdir(parents=True, exist_ok=True)
    paths = [tmp / f"part-{i:05d}.parquet" for i in range(8)]  # part files, as ingest writes them
    for i, path in enumerate(paths):
        docs[i * -(-n // 8) : (i + 1) * -(-n // 8)].write_parquet(path)
    t0 = time.perf_counter()
    local = text_duplicates(docs, params)
    sec_local = time.perf_counter() - t0
    with ray_executor(None, num_cpus=2) as executor:
        secs = []
        for run in ("cold", "warm"):  # cold: the first tasks start the worker processes and import
            t0 = time.perf_counter()
            text_duplicates_ray(paths, tmp / f"ray-out-{run}", params, executor=executor)
            secs.append(time.perf_counter() - t0)
    same = all(
        pl.read_parquet(tmp / f"ray-out-{run}" / "part-*.parquet").sort("doc_id").equals(local.sort("doc_id"))
        for run in ("cold", "warm")
    )
    say(f"Ray text dedup ({n} docs, exact + fuzzy, embedded, 2 CPUs): cold {secs[0]:.1f} s, warm "
        f"{secs[1]:.1f} s vs in-process {sec_local:.1f} s (Ray / in-process: cold "
        f"{secs[0] / sec_local:.2f}x, warm {secs[1] / sec_local:.2f}x); same table: {same}; load "
        f"{os.getloadavg()[0]:.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables and write them to OUT/dedup.txt."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="documents for our end-to-end run")
    ap.add_argument("--n-baseline", type=int, default=50_000, help="documents for the datasketch LSH run")
    ap.add_argument("--n-sig", type=int, default=20_000, help="documents for our signature throughput")
    ap.add_argument("--n-sig-baseline", type=int, default=2_000, help="documents for datasketch signatures")
    ap.add_argument(
        "--n-ray", type=int, nargs="*", default=[], help="also run pipelines.dedup_ray on these doc counts"
    )
    ap.add_argument("--ray-only", action="store_true", help="run only the --n-ray comparison")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, in this process: not a measurement")
    ap.add_argument("--out", type=Path, default=OUT, help="folder of dedup.txt")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n, args.n_baseline, args.n_sig, args.n_sig_baseline = 300, 300, 200, 40
        args.n_ray = args.n_ray or [200]
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} (shared machine: timings under contention)"
        + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else ""))  # fmt: skip
    bands = lsh_params(
        THRESHOLD, NUM_PERM, false_positive_weight=1 - FN_WEIGHT, false_negative_weight=FN_WEIGHT
    )
    say(f"bands x rows at threshold {THRESHOLD}: {bands}")
    with TemporaryDirectory() as tmp:
        if not args.ray_only:
            _bench_local(args, Path(tmp), say)
        for n in args.n_ray:
            _bench_ray(n, Path(tmp) / str(n), say)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dedup.txt").write_text("\n".join(lines) + "\n")
    return 0


def _bench_local(args: argparse.Namespace, tmp: Path, say: Callable[[str], None]) -> None:
    """Signature throughput, then end-to-end fuzzy dedup at each size (ours in a child process unless
    --smoke) and datasketch at --n-baseline."""
    sig_docs, _ = synthetic_docs(args.n_sig, seed=1)
    results = bench_signatures(sig_docs, args.n_sig_baseline)
    ours_rate = results[0][1] / results[0][2]
    say("\nMinHash signatures (128 perms, word 5-grams, ~500-char docs; signatures asserted equal)")
    say(f"{'method':<26}{'docs':>9}{'seconds':>10}{'docs/s':>11}{'ours / it':>11}")
    for name, n, sec in results:
        say(f"{name:<26}{n:>9}{sec:>10.2f}{n / sec:>11.0f}{ours_rate / (n / sec):>10.1f}x")

    say(f"\nEnd-to-end fuzzy dedup (threshold {THRESHOLD}, 10% planted near-copies)")
    head = f"{'method':<34}{'docs':>9}{'seconds':>10}{'docs/s':>10}{'peak RSS GiB':>14}"
    say(f"{head}{'planted recall':>16}")
    for n in sorted({args.n_baseline, args.n}):
        docs, pairs = synthetic_docs(n, seed=2)
        path = str(tmp / f"docs-{n}.parquet")
        docs.write_parquet(path)
        if args.smoke:  # RSS is then this process's, not the dedup's alone
            sec, rss, cluster = _run_ours(path)
        else:
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                sec, rss, cluster = pool.submit(_run_ours, path).result()
        recall = _planted_recall(cluster, docs["doc_id"].to_list(), pairs)
        line = f"{'curate fuzzy_duplicates':<34}{n:>9}{sec:>10.1f}{n / sec:>10.0f}{rss:>14.2f}"
        say(f"{line}{recall:>16.4f}")
        if n == args.n_baseline:
            sec_ds, cluster_ds = _run_datasketch(docs)
            rec_ds = _planted_recall(cluster_ds, docs["doc_id"].to_list(), pairs)
            rss_ds = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            say(f"{'datasketch bulk+MinHashLSH':<34}{n:>9}{sec_ds:>10.1f}{n / sec_ds:>10.0f}"
                f"{rss_ds:>14.2f}{rec_ds:>16.4f}   (RSS: this process, incl. generation)")  # fmt: skip
            say(f"  ratio at {n} docs: curate is {sec_ds / sec:.1f}x faster than datasketch")
        del docs, pairs


if __name__ == "__main__":
    sys.exit(main())

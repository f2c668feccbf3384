"""Ingest + exact dedup of synthetic 500-character documents on Ray (2 CPUs) vs a plain polars read + hash.

Usage: python bench/ingest.py [--docs 1000000] [--shards 16] [--cpus 2] [--local] [--out DIR] [--smoke]
Prints docs/s, MB/s, the ratio to the baseline measured in the same run, and peak RSS, and writes the table to
OUT/ingest.txt (bench/results by default). Target (DESIGN.md section 8): at least 0.5x the baseline's docs/s.
Ray: an embedded runtime started here (an existing one in this process is reused and left running).
--smoke: a few hundred documents, both executors, into --out: a check that the script runs, not a
measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import psutil

from curate.ingest import ingest_sources
from curate.stages import Executor, LocalExecutor

OUT = Path(__file__).parent / "results"

WORDS = (  # noqa: SIM905  (a sentence is easier to read than a 47-line list)
    "data model training corpus token quality filter scaling law mixture source weight sample budget "
    "loss curve proxy embedding cluster prototype duplicate shard parquet stream record language text "
    "the of and to in is that for on with as by at from it an be this which or"
).split()


def make_corpus(root: Path, *, n_docs: int, n_shards: int, chars: int, seed: int = 0) -> int:
    """Write `n_docs` JSONL records ({"id", "text"}, text of `chars` characters, 2% exact repeats)."""
    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)
    per = -(-n_docs // n_shards)
    total = 0
    for s in range(n_shards):
        n = min(per, n_docs - s * per)
        idx = rng.integers(0, len(vocab), size=(n, chars // 3))
        texts = [" ".join(vocab[row])[:chars] for row in idx]
        for j in rng.choice(n, size=n // 50, replace=False):
            texts[int(j)] = texts[0]
        lines = [json.dumps({"id": s * per + i, "text": t}) for i, t in enumerate(texts)]
        path = root / f"shard-{s:03d}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        total += path.stat().st_size
    return total


class PeakRSS:
    """Samples the RSS of this process and all its descendants (the embedded Ray processes) every 0.1 s."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.1)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn: Callable[[], object]) -> tuple[float, int]:
    """Wall seconds of fn() and the peak RSS (bytes) of this process tree meanwhile."""
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
    return seconds, rss.peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--chars", type=int, default=500)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--local", action="store_true", help="also time the in-process executor")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a check, not a measurement")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of ingest.txt")
    args = parser.parse_args(argv)
    if args.smoke:
        args.docs, args.shards, args.local = 200, 2, True
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    root = Path(tempfile.mkdtemp(prefix="curate-bench-ingest-"))
    try:
        src = root / "src"
        src.mkdir()
        t0 = time.perf_counter()
        size = make_corpus(src, n_docs=args.docs, n_shards=args.shards, chars=args.chars)
        say(
            f"corpus: {args.docs} docs x {args.chars} chars in {args.shards} JSONL shards, "
            f"{size / 1e6:.0f} MB, written in {time.perf_counter() - t0:.1f}s; machine load "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (timings taken under that load)"
            + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else "")
        )
        files = sorted(str(p) for p in src.glob("*.jsonl"))

        def baseline() -> None:
            out = pl.scan_ndjson(files).select(pl.col("text").hash().alias("h")).collect()
            assert out.height == args.docs

        rows = [("polars read_ndjson + hash (baseline)", *timed(baseline))]

        def run(executor: Executor, work: Path) -> Callable[[], None]:
            def go() -> None:
                report = ingest_sources({"synthetic": str(src)}, work, executor=executor)
                assert report.totals["documents"] == args.docs, report.totals

            return go

        if args.local:
            rows.append(
                (
                    "curate ingest + exact dedup, in-process",
                    *timed(run(LocalExecutor(), root / "wl")),
                )
            )

        from pipelines.ray_executor import ray_executor

        t0 = time.perf_counter()
        with ray_executor(None, num_cpus=args.cpus) as executor:
            startup = time.perf_counter() - t0
            seconds, peak = timed(run(executor, root / "wr"))
        rows.append((f"curate ingest + exact dedup, Ray ({args.cpus} CPUs)", seconds, peak))

        base = rows[0][1]
        say(f"\n{'method':48} {'seconds':>8} {'docs/s':>10} {'MB/s':>7} {'ratio':>6} {'peak RSS':>9}")
        for name, sec, rss in rows:
            say(
                f"{name:48} {sec:8.2f} {args.docs / sec:10,.0f} {size / 1e6 / sec:7.1f} {base / sec:6.2f} "
                f"{rss / 2**30:7.2f}GB"
            )
        driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        say(
            f"\nRay start-up (not in the timing): {startup:.1f}s; driver peak RSS {driver:.2f} GB; "
            "peak RSS = this process + its Ray processes. Target: ratio >= 0.5."
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end pipeline benchmark: docs/s, time share and peak RSS of every step on real + synthetic documents.

Corpus: real documents of the registry corpora (Wikipedia EN/FR summaries, State of the Union paragraphs,
BBC News; all of them, or a seeded half of --docs when that is smaller) plus synthetic ones up to --docs:
near copies (5% word edits, for fuzzy dedup), word shuffles (for semantic dedup), and random-word texts drawn
from the real vocabulary. The target is a held-out
sample of the real documents. Baseline in the same run: a plain polars read of every shard (the floor of any
pass over the data). Peak RSS per step comes from sampling this process every 50 ms against the step's
start and end times in its `_stage.json`: the driver's RSS and the largest Ray worker's. The run is the
product path itself (`pipelines.runner.execute`, as `curate run`), in-process or on embedded Ray.

    python bench/pipeline.py [--docs 100000] [--work DIR] [--ray] [--out DIR]

Prints the per-step table and writes it to OUT/pipeline.txt (bench/results by default). --smoke: 300 source
documents, a 60-document target and small calibration settings (SMOKE_CONFIG), in this process, into --out: a
check that the script runs, not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil

from curate import corpora
from curate.config import load_config

CONFIG = """seed = 0
[sources]
wiki = "wiki/*.parquet"
sotu = "sotu/*.parquet"
bbc = "bbc/*.parquet"
synth_near = "synth_near/*.parquet"
synth_shuffle = "synth_shuffle/*.parquet"
synth_random = "synth_random/*.parquet"
[target]
path = "target/*.parquet"
[budget]
unit = "samples"
value = {budget}
[score]
n_buckets = 3
[proxy]
eval_size = 256
bootstrap = 5
[mixture]
ot_max_points = 800
"""
SMOKE_CONFIG = """seed = 0
[sources]
wiki = "wiki/*.parquet"
sotu = "sotu/*.parquet"
bbc = "bbc/*.parquet"
synth_near = "synth_near/*.parquet"
synth_shuffle = "synth_shuffle/*.parquet"
synth_random = "synth_random/*.parquet"
[target]
path = "target/*.parquet"
[budget]
unit = "samples"
value = {budget}
[score]
n_buckets = 2
[proxy]
pilot_sizes = [3, 10, 30]
repeats = 1
seeds = 2
bucket_epochs = [0.25, 0.5, 1.0]
mixtures_per_source = 3
bucket_rows = 30
eval_size = 30
bootstrap = 2
[mixture]
law = "dml"
ot_max_points = 100
"""
OUT = Path(__file__).parent / "results"


def _write(root: Path, name: str, texts: list[str], *, shards: int = 4) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(texts)), shards)):
        pl.DataFrame({"text": [texts[j] for j in part]}).write_parquet(root / name / f"part-{i}.parquet")


def build_corpus(root: Path, n_docs: int, *, seed: int = 0, smoke: bool = False) -> int:
    """Write the benchmark shards and config under `root`; returns the number of source documents."""
    rng = np.random.default_rng(seed)
    real = {
        "wiki": pl.concat([corpora.wiki(lang="en")["text"], corpora.wiki(lang="fr")["text"]]).to_list(),
        "sotu": corpora.sotu_paragraphs()["text"].to_list(),
        "bbc": corpora.bbc_news()["text"].to_list(),
    }
    pool = [t for texts in real.values() for t in texts]
    target_idx = set(rng.choice(len(pool), size=60 if smoke else 512, replace=False).tolist())
    _write(root, "target", [pool[i] for i in sorted(target_idx)], shards=1)
    share = min(1.0, (n_docs // 2) / (len(pool) - len(target_idx)))  # at least half the corpus is synthetic
    offset, n_real = 0, 0
    for name, texts in real.items():
        if smoke:  # the same share of each real source (a few dozen documents each), not of their union
            share = min(1.0, (n_docs // 2 / len(real)) / len(texts))
        keep = [t for i, t in enumerate(texts) if i + offset not in target_idx and rng.random() < share]
        offset += len(texts)
        n_real += len(keep)
        _write(root, name, keep)
    n_synth = max(3, n_docs - n_real)
    vocab = np.array(" ".join(pool[:5000]).split())
    near, shuffle, random_words = [], [], []
    for k in range(n_synth):
        base = pool[int(rng.integers(len(pool)))].split()
        if k % 3 == 0:
            mask = rng.random(len(base)) > 0.05
            near.append(" ".join(w for w, m in zip(base, mask, strict=True) if m))
        elif k % 3 == 1:
            shuffle.append(" ".join(rng.permutation(base).tolist()))
        else:
            random_words.append(" ".join(rng.choice(vocab, size=int(rng.integers(20, 120))).tolist()))
    for name, texts in (("synth_near", near), ("synth_shuffle", shuffle), ("synth_random", random_words)):
        _write(root, name, texts)
    budget = 150 if smoke else max(1000, (n_real + n_synth) // 10)
    (root / "curate.toml").write_text((SMOKE_CONFIG if smoke else CONFIG).format(budget=budget))
    return n_real + n_synth


def _is_worker(proc: psutil.Process) -> bool:
    """A Ray worker process (task or actor), as opposed to Ray's own daemons."""
    with contextlib.suppress(psutil.Error):
        return any("default_worker.py" in part or part.startswith("ray::") for part in proc.cmdline())
    return False


class RSSSampler:
    """Samples, every `interval` seconds in a daemon thread, the RSS of this (driver) process and the largest
    RSS of any Ray worker process below it."""

    def __init__(self, interval: float = 0.05) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            driver = self._proc.memory_info().rss
            worker = 0
            for child in self._proc.children(recursive=True):
                if _is_worker(child):
                    with contextlib.suppress(psutil.Error):
                        worker = max(worker, child.memory_info().rss)
            self.samples.append((time.time(), driver, worker))
            time.sleep(self._interval)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> tuple[int, int]:
        """Largest (driver, worker) RSS sampled in [start, end] (the nearest sample if none is inside)."""
        inside = [(d, w) for t, d, w in self.samples if start <= t <= end]
        if not inside:
            near = min(self.samples, key=lambda s: abs(s[0] - start))
            inside = [(near[1], near[2])]
        return max(d for d, _ in inside), max(w for _, w in inside)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000, help="source documents, real + synthetic")
    parser.add_argument("--work", type=Path, default=None, help="folder for shards and work dir")
    parser.add_argument("--ray", action="store_true", help="run on an embedded Ray runtime")
    parser.add_argument("--smoke", action="store_true", help="tiny, in this process: not a measurement")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of pipeline.txt")
    args = parser.parse_args(argv)
    if args.smoke:
        args.docs, args.ray = 300, False
    root = args.work or Path(tempfile.mkdtemp(prefix="curate-bench-"))
    try:
        lines = run(args, root)
    finally:
        if args.smoke and args.work is None:
            shutil.rmtree(root, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.txt").write_text("\n".join(lines) + "\n")
    return 0


def run(args: argparse.Namespace, root: Path) -> list[str]:
    """Build the corpus, run every step, return the printed report lines."""
    n = build_corpus(root, args.docs, smoke=args.smoke)
    shards = sorted(str(p) for p in root.glob("*/part-*.parquet") if p.parent.name != "target")
    t0 = time.perf_counter()
    baseline_rows = pl.scan_parquet(shards).select(pl.col("text").str.len_bytes().sum()).collect()
    baseline = time.perf_counter() - t0
    from pipelines.runner import execute

    cfg = load_config(root / "curate.toml")
    with RSSSampler() as rss:
        t0 = time.perf_counter()
        result = execute(cfg, work=root / "work", local=not args.ray)
        total = time.perf_counter() - t0
    rows = []
    for name, out in result.outputs.items():
        info = json.loads((out.path / "_stage.json").read_text())
        driver, worker = rss.peak(info["started_at"], info["finished_at"])
        rows.append(
            {
                "step": name,
                "seconds": info["seconds"],
                "share": info["seconds"] / total,
                "driver_rss_mib": driver / 2**20,
                "worker_rss_mib": worker / 2**20,
                "started": info["started_at"],
            }
        )
    table = pl.DataFrame(rows).sort("started").drop("started")
    driver_peak = max(d for _, d, _ in rss.samples) / 2**20
    worker_peak = max(w for _, _, w in rss.samples) / 2**20
    weights = ", ".join(f"{s.name} {s.weight:.3f}" for s in result.manifest.sources)
    with pl.Config(tbl_rows=50):
        lines = [
            f"corpus: {n:,} source documents ({root}); executor: {'ray' if args.ray else 'local'}"
            + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else ""),
            str(table),
            f"end to end: {total:.1f} s, {n / total:,.0f} docs/s, peak RSS driver {driver_peak:,.0f} MiB, "
            f"largest worker {worker_peak:,.0f} MiB (load average {os.getloadavg()[0]:.2f}); "
            f"baseline polars read of the shards ({baseline_rows.item():,} text bytes): {baseline:.2f} s, "
            f"pipeline / baseline = {total / baseline:,.0f}x",
            f"weights: {weights}",
        ]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    sys.exit(main())

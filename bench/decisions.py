"""Mix decisions on real held-out cases: does `curate mix` weight the target's own domain most and junk least?

Each case is built from the registry corpora (shared/DATA.md): the target is a held-out sample of one domain;
the sources are the rest of that domain, two other domains and a junk source (spam e-mails, web boilerplate,
shuffled words of the target's domain, keyword stuffing, off-language text: `curate.junk`), about 1,000
documents each, unlabelled. The run is the product path (`pipelines.runner.execute`, what `curate mix`
runs, on embedded Ray) with the default config and a budget of 5,000 samples. The last case's best source
looks unlike the target (full Wikipedia paragraphs for a target of their first sentences) while the junk
source (short lines) looks like it by length.

    python bench/decisions.py [--cases sotu,bbc,wiki_science,wiki_first_sentence] [--local] [--out DIR]

Writes OUT/decisions.md (bench/results by default: weights per case, the two checks, wall time, load
average); the weights are the published manifest's (`run.manifest`, the publish step's committed output).
--smoke: the sotu case with 60 documents per source, a 30-document target and small calibration settings
(SMOKE_CONFIG), in this process, into --out: a check that the script runs, not a measurement.
"""

from __future__ import annotations

import argparse
import json
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

from curate import corpora, junk

OUT = Path(__file__).parent / "results"
CONFIG = """seed = 0
[sources]
{sources}
[target]
path = "target/*.jsonl"
[budget]
unit = "tokens"
value = {budget}
"""
SMOKE_CONFIG = (
    CONFIG
    + """[score]
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
)


@dataclass(frozen=True)
class Sizes:
    """Documents per source, target documents and the budget (tokens)."""

    source: int = 700
    target: int = 300
    budget: int = 200_000


SMOKE = Sizes(source=60, target=30, budget=6000)


def _take(texts: list[str], n: int, rng: np.random.Generator) -> list[str]:
    idx = rng.permutation(len(texts))[:n]
    return [texts[int(i)] for i in idx]


def _junk(domain: list[str], rng: np.random.Generator, seed: int, n: int) -> list[str]:
    """n junk documents: five kinds of n / 5 (shuffled words and keywords come from the target's domain)."""
    k = n // 5
    return [
        *junk.spam_emails(k, seed=seed),
        *junk.boilerplate(k, seed=seed + 1),
        *junk.shuffled_words(_take(domain, k, rng), seed=seed + 2),
        *junk.keyword_stuffing(k, junk.topic_keywords(domain), seed=seed + 3),
        *junk.off_language(k, lang="fr", seed=seed + 4),
    ]


def _wiki_topics(*topics: str) -> list[str]:
    wiki = corpora.wiki(labelled_only=True, seed=0)
    return wiki.filter(pl.col("label").is_in(list(topics)))["text"].to_list()


Case = dict[str, list[str]]  # "target", the target's own domain first, then the others and "junk"


def case_sotu(rng: np.random.Generator, z: Sizes) -> tuple[Case, str]:
    """Target: State of the Union paragraphs; others: BBC News, Wikipedia."""
    sotu = _take(corpora.sotu_paragraphs()["text"].to_list(), z.source + z.target + 200, rng)
    return {
        "target": sotu[: z.target],
        "sotu": sotu[z.target : z.target + z.source],
        "bbc": _take(corpora.bbc_news()["text"].to_list(), z.source, rng),
        "wiki": _take(corpora.wiki(seed=1)["text"].to_list(), z.source, rng),
        "junk": _junk(sotu[z.target + z.source :] + sotu[: z.target], rng, 10, z.source),
    }, "sotu"


def case_bbc(rng: np.random.Generator, z: Sizes) -> tuple[Case, str]:
    """Target: BBC News articles; others: State of the Union, Wikipedia."""
    bbc = _take(corpora.bbc_news()["text"].to_list(), z.source + z.target, rng)
    return {
        "target": bbc[: z.target],
        "bbc": bbc[z.target :],
        "sotu": _take(corpora.sotu_paragraphs()["text"].to_list(), z.source, rng),
        "wiki": _take(corpora.wiki(seed=2)["text"].to_list(), z.source, rng),
        "junk": _junk(bbc, rng, 20, z.source),
    }, "bbc"


def case_wiki_science(rng: np.random.Generator, z: Sizes) -> tuple[Case, str]:
    """Target: Wikipedia science and technology; others: Wikipedia arts/people/history, BBC News."""
    science = _take(_wiki_topics("Physical sciences", "Technology", "Mathematics"), z.source + z.target, rng)
    return {
        "target": science[: z.target],
        "science": science[z.target :],
        "humanities": _take(_wiki_topics("Arts", "People", "History"), z.source, rng),
        "bbc": _take(corpora.bbc_news()["text"].to_list(), z.source, rng),
        "junk": _junk(science, rng, 30, z.source),
    }, "science"


def _first_sentence(text: str) -> str:
    head = text.split(". ")[0].strip()
    return head if head.endswith(".") else head + "."


def case_wiki_first_sentence(rng: np.random.Generator, z: Sizes) -> tuple[Case, str]:
    """Target: first sentences of Wikipedia summaries; the on-target source is whole summaries (longer, so
    unlike the target by length); others: BBC News, State of the Union; junk: short lines."""
    wiki = _take(corpora.wiki(seed=3)["text"].to_list(), z.source + z.target, rng)
    short = [line[:160] for line in _junk(wiki, rng, 40, z.source)]
    return {
        "target": [_first_sentence(t) for t in wiki[: z.target]],
        "wiki": wiki[z.target :],
        "bbc": _take(corpora.bbc_news()["text"].to_list(), z.source, rng),
        "sotu": _take(corpora.sotu_paragraphs()["text"].to_list(), z.source, rng),
        "junk": short,
    }, "wiki"


CASES: dict[str, Callable[[np.random.Generator, Sizes], tuple[Case, str]]] = {
    "sotu": case_sotu,
    "bbc": case_bbc,
    "wiki_science": case_wiki_science,
    "wiki_first_sentence": case_wiki_first_sentence,
}


def write_case(root: Path, case: Case, *, budget: int, config: str = CONFIG) -> Path:
    """JSONL shards per source and the target, and a config naming them; returns the config path."""
    for name, texts in case.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "part.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    sources = "\n".join(f'{n} = "{n}/*.jsonl"' for n in case if n != "target")
    (root / "curate.toml").write_text(config.format(sources=sources, budget=budget))
    return root / "curate.toml"


def _wiki_lang(lang: str, topic: str) -> list[str]:
    wiki = corpora.wiki(lang=lang, labelled_only=True, seed=0)  # type: ignore[arg-type]
    return wiki.filter(pl.col("label") == topic)["text"].to_list()


def case_two_domains(rng: np.random.Generator, z: Sizes) -> tuple[Case, str]:
    """Target: half Wikipedia geography, half BBC politics; others: Wikipedia arts, BBC sport, State of the
    Union, junk. The answer is a blend of two sources."""
    geo = _take(_wiki_topics("Geography"), z.source + z.target // 2, rng)
    pol = _take(corpora.bbc_news().filter(pl.col("label") == "politics")["text"].to_list(), 417, rng)
    half = min(z.target // 2, len(pol) // 3)
    return {
        "target": geo[: z.target // 2] + pol[:half],
        "geography": geo[z.target // 2 :],
        "politics": pol[half:],
        "arts": _take(_wiki_topics("Arts"), z.source, rng),
        "sport": _take(
            corpora.bbc_news().filter(pl.col("label") == "sport")["text"].to_list(), z.source, rng
        ),
        "sotu": _take(corpora.sotu_paragraphs()["text"].to_list(), z.source, rng),
        "junk": _junk(geo, rng, 50, z.source),
    }, "geography+politics"


def case_junk_inside(rng: np.random.Generator, z: Sizes) -> tuple[Case, str]:
    """Target: State of the Union; its own-domain source holds 30% junk; others: BBC News, Wikipedia. The
    selection's junk share must fall below the source's."""
    sotu = _take(corpora.sotu_paragraphs()["text"].to_list(), z.source + z.target + 200, rng)
    k = int(0.3 * z.source)
    return {
        "target": sotu[: z.target],
        "sotu": sotu[z.target : z.target + z.source - k] + _junk(sotu, rng, 60, k),
        "bbc": _take(corpora.bbc_news()["text"].to_list(), z.source, rng),
        "wiki": _take(corpora.wiki(seed=1)["text"].to_list(), z.source, rng),
    }, "sotu"


def case_many_sources(rng: np.random.Generator, z: Sizes) -> tuple[Case, str]:
    """22 sources (11 Wikipedia topics, 5 BBC categories, State of the Union by era) and a target drawn
    from two of them: Wikipedia technology and BBC politics."""
    case: Case = {"target": []}
    wiki = corpora.wiki(labelled_only=True, seed=0)
    for label in sorted(wiki["label"].unique().to_list()):
        texts = _take(wiki.filter(pl.col("label") == label)["text"].to_list(), z.source, rng)
        name = "wiki_" + label.split()[0].lower().replace("&", "")
        if label == "Technology":
            case["target"] += texts[: z.target // 2]
            texts = texts[z.target // 2 :]
        case[name] = texts
    bbc = corpora.bbc_news()
    for label in sorted(bbc["label"].unique().to_list()):
        texts = _take(bbc.filter(pl.col("label") == label)["text"].to_list(), z.source, rng)
        if label == "politics":
            case["target"] += texts[: z.target // 2]
            texts = texts[z.target // 2 :]
        case["bbc_" + label] = texts
    sotu = corpora.sotu_paragraphs()
    for lo, hi in [(1790, 1830), (1830, 1870), (1870, 1910), (1910, 1950), (1950, 1990), (1990, 2030)]:
        era = sotu.filter((pl.col("year") >= lo) & (pl.col("year") < hi))["text"].to_list()
        case[f"sotu_{lo}"] = _take(era, z.source, rng)
    return case, "wiki_technology+bbc_politics"


CASES.update(two_domains=case_two_domains, junk_inside=case_junk_inside, many_sources=case_many_sources)
JUNK_SEEDS = (10, 20, 30, 40, 50, 60)


def dense_search(ctx: Any, *, budget: int, seeds: int, executor: Any, seed: int = 1) -> pl.DataFrame:
    """The best mixes a dense search at the budget finds, on the target's held-out rows: the vertices, the
    lattice at d = 2 (up to 8 sources) and 20 x m Dirichlet draws (flat and sparse), `seeds` proxy runs
    each; then the five best re-measured with fresh seeds. Returns mixture, weights, mean, se, runs."""
    from pipelines.calibrate import calibrate_mixtures
    from pipelines.mixture_steps import doc_units
    from pipelines.proxy_data import calibration_pool, proxy_data
    from scaling.simplex import mixture_design, simplex_grid

    data = proxy_data(ctx, calibration_pool(ctx), eval_on="holdout")
    sources = sorted(ctx.cfg.sources)
    pools = {s: data.source_rows()[s] for s in sources}
    units = doc_units(ctx, data.pool["doc_id"])
    m = len(sources)
    rng = np.random.default_rng(seed)
    draws = [mixture_design(m, per_source=10, seed=seed), rng.dirichlet(np.ones(m), size=10 * m)]
    if m <= 8:
        draws.append(simplex_grid(m, divisions=2))
    grid = np.unique(np.round(np.vstack(draws), 9), axis=0)
    first = calibrate_mixtures(
        data.task, pools, grid, [budget], executor=executor, repeats=seeds, units=units, seed=seed
    )
    top = first.group_by("mixture").agg(pl.col("metric").mean()).sort("metric", "mixture").head(5)
    again = grid[top["mixture"].to_numpy()]
    return measure(ctx, again, budget=budget, seeds=5, executor=executor, seed=seed + 1).with_columns(
        runs=pl.lit(first.height + 5 * len(again))
    )


def measure(ctx: Any, grid: np.ndarray, *, budget: int, seeds: int, executor: Any, seed: int) -> pl.DataFrame:
    """Each mixture of `grid` trained at the budget `seeds` times on the target's held-out rows: mixture,
    one weight column per source, mean, se (the standard error of the mean)."""
    from pipelines.calibrate import calibrate_mixtures
    from pipelines.mixture_steps import doc_units
    from pipelines.proxy_data import calibration_pool, proxy_data

    data = proxy_data(ctx, calibration_pool(ctx), eval_on="holdout")
    sources = sorted(ctx.cfg.sources)
    pools = {s: data.source_rows()[s] for s in sources}
    units = doc_units(ctx, data.pool["doc_id"])
    runs = calibrate_mixtures(
        data.task, pools, grid, [budget], executor=executor, repeats=seeds, units=units, seed=seed
    )
    return (
        runs.group_by("mixture", *sources)
        .agg(mean=pl.col("metric").mean(), se=pl.col("metric").std() / np.sqrt(seeds))
        .sort("mean", "mixture")
    )


def junk_share(ctx: Any, source: str, junk_texts: set[str]) -> tuple[float, float]:
    """(junk share of `source`'s documents, junk share of its selected documents, repeats counted)."""
    docs = ctx.table("ingest").filter(pl.col("source") == source).select("doc_id", "text").collect()
    flag = docs.with_columns(junk=pl.col("text").is_in(list(junk_texts)))
    sel = (
        ctx.table("select", "selection").filter(pl.col("source") == source).collect().join(flag, on="doc_id")
    )
    chosen = float((sel["junk"] * sel["repeats"]).sum() / max(1, int(sel["repeats"].sum())))
    return float(flag["junk"].mean() or 0.0), chosen


def main(argv: list[str] | None = None) -> int:
    from curate.config import load_config
    from curate.progress import quiet_libraries
    from curate.stages import LocalExecutor
    from pipelines.ray_executor import ray_executor
    from pipelines.runner import execute
    from pipelines.steps import run_steps

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--local", action="store_true", help="run in-process instead of embedded Ray")
    parser.add_argument(
        "--smoke", action="store_true", help="one tiny case, in this process: not a measurement"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="folder of decisions.md")
    args = parser.parse_args(argv)
    sizes, config = Sizes(), CONFIG
    if args.smoke:
        args.cases, args.local, sizes, config = "junk_inside", True, SMOKE, SMOKE_CONFIG
    quiet_libraries()
    lines = [
        "# Mix decisions on real held-out cases"
        + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else ""),
        "",
        f"{'smoke' if args.smoke else 'default'} config, budget {sizes.budget} tokens, ~{sizes.source} "
        f"documents per source, unlabelled; executor: {'local' if args.local else 'embedded Ray'}. Product: "
        "`curate mix` (pipelines.runner.execute). Dense search at the budget on the target's held-out rows "
        "(vertices, lattice d=2 up to 8 sources, 20 x m Dirichlet draws, 3 seeds each; the five best and the "
        "product's mix re-measured with 5 fresh seeds). noise = standard error of the best mix's mean.",
        "",
        "| case | m | product's top weights | junk w | product loss | best loss | noise | "
        "(prod-best)/noise | within 2x noise | junk in source / selected | product runs | dense runs | "
        "product s | dense s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.cases.split(","):
        case, own = CASES[name](np.random.default_rng(0), sizes)
        junk_texts = {t for t in case.get("junk", [])} | set(_junk_inside(case, name))
        with tempfile.TemporaryDirectory() as tmp:
            path = write_case(Path(tmp), case, budget=sizes.budget, config=config)
            cfg = load_config(path)
            start = time.perf_counter()
            run = execute(cfg, work=Path(tmp) / "work", local=args.local)
            wall = time.perf_counter() - start
            weights = run.manifest.weights()
            env = nullcontext(LocalExecutor()) if args.local else ray_executor(None, num_cpus=os.cpu_count())
            with env as executor:
                ctx = run_steps(cfg, Path(tmp) / "work", executor=executor, committed_only=True)
                t1 = time.perf_counter()
                best = dense_search(ctx, budget=sizes.budget, seeds=3, executor=executor)
                product = np.array([[weights[s] for s in sorted(cfg.sources)]])
                mine = measure(ctx, product, budget=sizes.budget, seeds=5, executor=executor, seed=2)
                dense_s = time.perf_counter() - t1
                inside = junk_share(ctx, "sotu", junk_texts) if name == "junk_inside" else None
            product_runs = sum(
                int(ctx.output(step).info.get("runs", 0))
                for step in ("calibrate.mixture", "calibrate.quality")
            ) + run.outputs["fit.mixture"].info.get("refine_runs", 0)
        b, p = best.row(0, named=True), mine.row(0, named=True)
        ratio = (p["mean"] - b["mean"]) / b["se"] if b["se"] > 0 else float("inf")
        shown = ", ".join(
            f"{s} {w:.2f}" for s, w in sorted(weights.items(), key=lambda kv: -kv[1])[:4] if w > 0
        )
        junk_w = weights.get("junk", 0.0)
        inside_text = f"{inside[0]:.2f} / {inside[1]:.2f}" if inside else "-"
        cells = [
            f"{name} ({own})", str(len(cfg.sources)), shown, f"{junk_w:.3f}", f"{p['mean']:.4f}",
            f"{b['mean']:.4f}", f"{b['se']:.4f}", f"{ratio:.2f}", "yes" if ratio <= 2 else "NO", inside_text,
            str(product_runs), str(int(b["runs"])), f"{wall:.0f}", f"{dense_s:.0f}",
            f"{os.getloadavg()[0]:.2f}",
        ]  # fmt: skip
        row = "| " + " | ".join(cells) + " |"
        print(row, flush=True)
        lines.append(row)
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decisions.md").write_text(text)
    print(text)
    return 0


def _junk_inside(case: Case, name: str) -> list[str]:
    """The junk planted inside the junk_inside case's sotu source (its last 30%)."""
    if name != "junk_inside":
        return []
    texts = case["sotu"]
    return texts[len(texts) - int(0.3 * len(texts)) :]


if __name__ == "__main__":
    sys.exit(main())

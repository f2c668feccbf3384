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
from dataclasses import dataclass
from pathlib import Path

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
unit = "samples"
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
    """Documents per source, target documents and the budget (samples)."""

    source: int = 1000
    target: int = 300
    budget: int = 5000


SMOKE = Sizes(source=60, target=30, budget=100)


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


def main(argv: list[str] | None = None) -> int:
    from curate.config import load_config
    from curate.progress import quiet_libraries
    from pipelines.runner import execute

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
        args.cases, args.local, sizes, config = "sotu", True, SMOKE, SMOKE_CONFIG
    quiet_libraries()
    lines = [
        "# Mix decisions on real held-out cases"
        + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else ""),
        "",
        f"{'smoke' if args.smoke else 'default'} config, budget {sizes.budget} samples, ~{sizes.source} "
        f"documents per source, unlabelled; executor: {'local' if args.local else 'embedded Ray'}",
        "",
        "| case | weights | target domain largest | junk least | wall s | load |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.cases.split(","):
        case, own = CASES[name](np.random.default_rng(0), sizes)
        with tempfile.TemporaryDirectory() as tmp:
            path = write_case(Path(tmp), case, budget=sizes.budget, config=config)
            start = time.perf_counter()
            run = execute(load_config(path), work=Path(tmp) / "work", local=args.local)
            wall = time.perf_counter() - start
            weights = run.manifest.weights()
        top = max(weights.values())
        largest = weights[own] == top and sum(w == top for w in weights.values()) == 1
        least = weights["junk"] == min(weights.values())
        strictly = least and sum(w == weights["junk"] for w in weights.values()) == 1
        shown = ", ".join(f"{s} {w:.3f}" for s, w in sorted(weights.items(), key=lambda kv: -kv[1]))
        least_text = ("yes" if strictly else "yes (tie)") if least else "NO"
        load = os.getloadavg()[0]
        row = f"| {name} | {shown} | {'yes' if largest else 'NO'} | {least_text} | {wall:.0f} | {load:.2f} |"
        print(row, flush=True)
        lines.append(row)
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decisions.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

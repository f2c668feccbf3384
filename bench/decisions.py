"""Mix decisions on real held-out cases: does `curate mix` weight the target's own domain most and junk least?

Each case is built from the registry corpora (shared/DATA.md): the target is a held-out sample of one domain;
the sources are the rest of that domain, two other domains and a junk source (spam e-mails, web boilerplate,
shuffled words of the target's domain, keyword stuffing, off-language text: `curate.junk`), about 1,000
documents each, unlabelled. The run is the product path (`pipelines.runner.execute`, what `curate mix`
runs, on embedded Ray) with the default config and a budget of 5,000 samples. The last case's best source
looks unlike the target (full Wikipedia paragraphs for a target of their first sentences) while the junk
source (short lines) looks like it by length.

    python bench/decisions.py [--cases sotu,bbc,wiki_science,wiki_first_sentence] [--local]

Writes bench/results/decisions.md (weights per case, the two checks, wall time, load average).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from curate import corpora, junk

N_SOURCE = 1000
N_TARGET = 300
BUDGET = 5000
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


def _take(texts: list[str], n: int, rng: np.random.Generator) -> list[str]:
    idx = rng.permutation(len(texts))[:n]
    return [texts[int(i)] for i in idx]


def _junk(domain: list[str], rng: np.random.Generator, seed: int) -> list[str]:
    """1,000 junk documents: five kinds of 200 (shuffled words and keywords come from the target's domain)."""
    return [
        *junk.spam_emails(200, seed=seed),
        *junk.boilerplate(200, seed=seed + 1),
        *junk.shuffled_words(_take(domain, 200, rng), seed=seed + 2),
        *junk.keyword_stuffing(200, junk.topic_keywords(domain), seed=seed + 3),
        *junk.off_language(200, lang="fr", seed=seed + 4),
    ]


def _wiki_topics(*topics: str) -> list[str]:
    wiki = corpora.wiki(labelled_only=True, seed=0)
    return wiki.filter(pl.col("label").is_in(list(topics)))["text"].to_list()


Case = dict[str, list[str]]  # "target", the target's own domain first, then the others and "junk"


def case_sotu(rng: np.random.Generator) -> tuple[Case, str]:
    """Target: State of the Union paragraphs; others: BBC News, Wikipedia."""
    sotu = _take(corpora.sotu_paragraphs()["text"].to_list(), N_SOURCE + N_TARGET + 200, rng)
    return {
        "target": sotu[:N_TARGET],
        "sotu": sotu[N_TARGET : N_TARGET + N_SOURCE],
        "bbc": _take(corpora.bbc_news()["text"].to_list(), N_SOURCE, rng),
        "wiki": _take(corpora.wiki(seed=1)["text"].to_list(), N_SOURCE, rng),
        "junk": _junk(sotu[N_TARGET + N_SOURCE :] + sotu[:N_TARGET], rng, 10),
    }, "sotu"


def case_bbc(rng: np.random.Generator) -> tuple[Case, str]:
    """Target: BBC News articles; others: State of the Union, Wikipedia."""
    bbc = _take(corpora.bbc_news()["text"].to_list(), N_SOURCE + N_TARGET, rng)
    return {
        "target": bbc[:N_TARGET],
        "bbc": bbc[N_TARGET:],
        "sotu": _take(corpora.sotu_paragraphs()["text"].to_list(), N_SOURCE, rng),
        "wiki": _take(corpora.wiki(seed=2)["text"].to_list(), N_SOURCE, rng),
        "junk": _junk(bbc, rng, 20),
    }, "bbc"


def case_wiki_science(rng: np.random.Generator) -> tuple[Case, str]:
    """Target: Wikipedia science and technology; others: Wikipedia arts/people/history, BBC News."""
    science = _take(_wiki_topics("Physical sciences", "Technology", "Mathematics"), N_SOURCE + N_TARGET, rng)
    return {
        "target": science[:N_TARGET],
        "science": science[N_TARGET:],
        "humanities": _take(_wiki_topics("Arts", "People", "History"), N_SOURCE, rng),
        "bbc": _take(corpora.bbc_news()["text"].to_list(), N_SOURCE, rng),
        "junk": _junk(science, rng, 30),
    }, "science"


def _first_sentence(text: str) -> str:
    head = text.split(". ")[0].strip()
    return head if head.endswith(".") else head + "."


def case_wiki_first_sentence(rng: np.random.Generator) -> tuple[Case, str]:
    """Target: first sentences of Wikipedia summaries; the on-target source is whole summaries (longer, so
    unlike the target by length); others: BBC News, State of the Union; junk: short lines."""
    wiki = _take(corpora.wiki(seed=3)["text"].to_list(), N_SOURCE + N_TARGET, rng)
    short = [line[:160] for line in _junk(wiki, rng, 40)]
    return {
        "target": [_first_sentence(t) for t in wiki[:N_TARGET]],
        "wiki": wiki[N_TARGET:],
        "bbc": _take(corpora.bbc_news()["text"].to_list(), N_SOURCE, rng),
        "sotu": _take(corpora.sotu_paragraphs()["text"].to_list(), N_SOURCE, rng),
        "junk": short,
    }, "wiki"


CASES: dict[str, Callable[[np.random.Generator], tuple[Case, str]]] = {
    "sotu": case_sotu,
    "bbc": case_bbc,
    "wiki_science": case_wiki_science,
    "wiki_first_sentence": case_wiki_first_sentence,
}


def write_case(root: Path, case: Case) -> Path:
    """JSONL shards per source and the target, and a config naming them; returns the config path."""
    for name, texts in case.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "part.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    sources = "\n".join(f'{n} = "{n}/*.jsonl"' for n in case if n != "target")
    (root / "curate.toml").write_text(CONFIG.format(sources=sources, budget=BUDGET))
    return root / "curate.toml"


def main() -> None:
    from curate.config import load_config
    from curate.progress import quiet_libraries
    from pipelines.runner import execute

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--local", action="store_true", help="run in-process instead of embedded Ray")
    args = parser.parse_args()
    quiet_libraries()
    lines = [
        "# Mix decisions on real held-out cases",
        "",
        f"default config, budget {BUDGET} samples, ~{N_SOURCE} documents per source, unlabelled; executor: "
        f"{'local' if args.local else 'embedded Ray'}",
        "",
        "| case | weights | target domain largest | junk least | wall s | load |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.cases.split(","):
        case, own = CASES[name](np.random.default_rng(0))
        with tempfile.TemporaryDirectory() as tmp:
            config = write_case(Path(tmp), case)
            start = time.perf_counter()
            run = execute(load_config(config), work=Path(tmp) / "work", local=args.local)
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
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "decisions.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

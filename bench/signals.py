"""Signals that see (issue 14): junk detection, the static tier's geometry and the n-gram proxy on real cases.

One run prints, and writes to bench/results/signals.md:
1. AUROC of planted junk against on-topic rows (target = a held-out on-topic sample, curate.junk) for four
   domains (Wikipedia Physical sciences, Wikipedia Arts, BBC News, State of the Union) and two junk mixtures
   (spam + boilerplate; six kinds), per method: 1 - cos to the target mean in MiniLM and static space, raw and
   corpus-centred (curate.centering), the cross-fitted hashed n-gram classifier and the target-LM context gain
   (pruning.target), and target_z (their combination); +- is a 200-resample bootstrap standard error; ratios
   are to MiniLM's.
2. Per junk kind, the mean AUROC over the four domains.
3. 5-NN topic accuracy (leave-one-out, 11 Wikipedia topics) per tier, raw and centred, and docs/s of each tier
   on one thread in the same run, next to the 1-minute load average.
4. The n-gram proxy (scaling.ngram): target loss after training on each source of a case, loss against unique
   documents and repeats, and per-run time. (It replaced the tiny byte LM this section used to compare
   against; the product has no byte LM any more, so neither does the bench.)
Every target score is the score step's own: `pruning.scores.fit_scores` fitted on the case's pool (the whole
pool is its sample) in the space named by the row (raw, or centred on the pool as the center step does),
then the step's batch scorers (`ScoreModel.embedding_scores`, `text_scores`) and `pruning.scores.target_z`.
Run: `HF_HUB_OFFLINE=1 .venv/bin/python bench/signals.py [--out DIR]` (--smoke: one case at tiny sizes into
--out, a check that the script runs, not a measurement).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["RAYON_NUM_THREADS"] = "1"  # one core for the tokenizers too

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from sklearn.metrics import roc_auc_score

from curate import corpora
from curate.centering import fit_centering
from curate.embeddings import Tier, default_cache_dir, load_embedder
from curate.junk import CASES, DEFAULT_JUNK, JunkCase, JunkKind, junk_case
from pruning.scores import ScoreModel, fit_scores, target_z
from scaling.ngram import NgramLM, ngram_curve, tokenize

MIXTURES: dict[str, tuple[JunkKind, ...]] = {
    "spam+boiler": ("spam", "boilerplate"),
    "six kinds": DEFAULT_JUNK,
}
METHODS = (
    "minilm raw",
    "minilm centred",
    "static raw",
    "static centred",
    "n-gram clf",
    "target_lm",
    "z2 static",
    "target_z static",
    "target_z minilm",
)
DEFAULT_METHOD = "target_z static"  # z of static centred target_dist + target_ngram + target_lm
OUT = Path(__file__).parent / "results"


def load() -> str:
    """The 1-minute load average, formatted."""
    return f"{os.getloadavg()[0]:.1f}"


class Vectors:
    """Embeds texts once per tier (a dict cache by text), so cases sharing rows do not pay twice."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.rows: dict[str, dict[str, np.ndarray]] = {"minilm": {}, "static": {}}

    def __call__(self, tier: Tier, texts: Sequence[str]) -> np.ndarray:
        seen = self.rows[tier]
        todo = list(dict.fromkeys(t for t in texts if t not in seen))
        if todo:
            model = load_embedder(tier, cache_dir=self.cache_dir, device="cpu")
            seen.update(zip(todo, model.encode(todo), strict=True))
        return np.stack([seen[t] for t in texts])


def auroc(y: np.ndarray, s: np.ndarray, *, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """AUROC of `s` for the positives `y`, and its bootstrap standard error."""
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            boots.append(roc_auc_score(y[i], s[i]))
    return float(roc_auc_score(y, s)), float(np.std(boots))


def space_scores(
    pool: list[str], target: list[str], p: np.ndarray, t: np.ndarray, *, seed: int
) -> tuple[pl.DataFrame, ScoreModel]:
    """The score step's scores of the pool rows in the space of `p` / `t` (fit_scores on the whole pool, then
    its batch scorers): target_dist, target_ngram, target_lm, target_z and z2 (target_z without target_lm)."""
    ids = [f"d{i:06d}" for i in range(len(pool))]
    model = fit_scores(ids, p, pool, target_vectors=t, target_texts=target, difficulty=False, seed=seed)
    batch = pa.table(
        {"doc_id": ids, "source": ["pool"] * len(ids), "label": pa.nulls(len(ids), pa.string()), "text": pool}
    )
    emb = pl.from_arrow(model.embedding_scores(pa.array(ids, pa.string()), p))
    text = pl.from_arrow(model.text_scores(batch))
    assert isinstance(emb, pl.DataFrame) and isinstance(text, pl.DataFrame)
    two = {k: v for k, v in model.z_stats.items() if k != "target_lm"}
    frame = text.join(emb, on="doc_id", maintain_order="left")
    return frame.with_columns(target_z(model.z_stats), target_z(two).alias("z2")), model


def case_scores(case: JunkCase, vec: Vectors, *, seed: int) -> dict[str, np.ndarray]:
    """Every method's pool scores (larger = further from the target) on one case."""
    pool, target = case.pool["text"].to_list(), case.target["text"].to_list()
    out: dict[str, np.ndarray] = {}
    for tier in ("minilm", "static"):
        p, t = vec(tier, pool), vec(tier, target)
        centring = fit_centering(p)  # the corpus statistic: the pool being scored, as the center step fits it
        raw, _ = space_scores(pool, target, p, t, seed=seed)
        centred, _ = space_scores(pool, target, centring.apply(p), centring.apply(t), seed=seed)
        out[f"{tier} raw"] = raw["target_dist"].to_numpy()
        out[f"{tier} centred"] = centred["target_dist"].to_numpy()
        out[f"target_z {tier}"] = centred["target_z"].to_numpy()
        if tier == "static":
            out["z2 static"] = centred["z2"].to_numpy()
            out["n-gram clf"] = centred["target_ngram"].to_numpy()
            out["target_lm"] = centred["target_lm"].to_numpy()
    return out


def junk_tables(args: argparse.Namespace, vec: Vectors, md: list[str]) -> dict[str, float]:
    """Sections 1 and 2: AUROC per case and method, and per junk kind; returns the default's worst ratio."""
    kinds_auc: dict[str, dict[str, list[float]]] = {m: {k: [] for k in DEFAULT_JUNK} for m in METHODS}
    head = f"| case | {' | '.join(METHODS)} | default / minilm raw | default / minilm centred |"
    lines = [head, "|" + "---|" * (len(METHODS) + 3)]
    worst = {"abs": 1.0, "raw": 9.0, "centred": 9.0}
    for domain in args.cases:
        for mix, kinds in args.mixtures.items():
            case = junk_case(
                domain,
                n_on_topic=args.n_on,
                n_junk=args.n_junk,
                n_target=args.n_target,
                kinds=kinds,
                seed=args.seed,
            )
            y = case.is_junk
            scores = case_scores(case, vec, seed=args.seed)
            res = {m: auroc(y, scores[m], n_boot=args.n_boot, seed=args.seed) for m in METHODS}
            d = res[DEFAULT_METHOD][0]
            r_raw, r_c = d / res["minilm raw"][0], d / res["minilm centred"][0]
            worst = {
                "abs": min(worst["abs"], d),
                "raw": min(worst["raw"], r_raw),
                "centred": min(worst["centred"], r_c),
            }
            cells = " | ".join(f"{a:.3f} ± {se:.3f}" for a, se in res.values())
            lines.append(
                f"| {domain} / {mix} ({int(y.sum())} junk, {int((~y).sum())} on-topic) | {cells} | "
                f"{r_raw:.2f} | {r_c:.2f} |"
            )
            print(lines[-1], f"(load {load()})", flush=True)
            if mix == "six kinds":
                kind = case.pool["kind"].to_numpy()
                for k in DEFAULT_JUNK:
                    m = (kind == "on_topic") | (kind == k)
                    for method in METHODS:
                        kinds_auc[method][k].append(roc_auc_score(kind[m] == k, scores[method][m]))
    md += [
        "## 1. Junk AUROC (junk vs on-topic pool rows; target = held-out on-topic sample; "
        f"+- {args.n_boot}-resample bootstrap SE)",
        "",
        *lines,
        "",
    ]
    md += [
        f"Default CPU method: `{DEFAULT_METHOD}` = target_z of static centred 1-cos (target_dist), the "
        "n-gram classifier (target_ngram) and the target-LM context gain (target_lm); `z2 static` leaves "
        "out target_lm."
    ]
    md += [
        f"Worst case: AUROC {worst['abs']:.3f}; ratio {worst['raw']:.2f} to MiniLM raw 1-cos and "
        f"{worst['centred']:.2f} to MiniLM centred.",
        "",
    ]
    rows = [f"| {m} | " + " | ".join(_mean(kinds_auc[m][k]) for k in DEFAULT_JUNK) + " |" for m in METHODS]
    md += [f"## 2. AUROC per junk kind (six-kind cases, mean over {len(args.cases)} domain(s))", ""]
    md += ["| method | " + " | ".join(DEFAULT_JUNK) + " |", "|" + "---|" * (len(DEFAULT_JUNK) + 1), *rows, ""]
    print("\n".join(md[-len(rows) - 3 :]))
    return worst


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.2f}" if values else "-"


def knn_accuracy(x: np.ndarray, y: np.ndarray, *, k: int = 5) -> float:
    """Leave-one-out k-NN (cosine, majority vote, ties to the nearest label) accuracy."""
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = z @ z.T
    np.fill_diagonal(sims, -np.inf)
    nb = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    labels, codes = np.unique(y, return_inverse=True)
    votes = np.zeros((len(y), len(labels)))
    for j in range(k):  # earlier neighbours weigh a hair more: ties go to the nearer label
        np.add.at(votes, (np.arange(len(y)), codes[nb[:, j]]), 1.0 + 1e-3 * (k - j))
    return float(np.mean(votes.argmax(axis=1) == codes))


def timed(fn: Callable[[], object], repeats: int, n: int) -> tuple[object, float, float]:
    """fn's result, docs per wall second and docs per CPU second over `repeats` calls of `n` docs."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        out = fn()
    return out, repeats * n / (time.perf_counter() - wall), repeats * n / (time.process_time() - cpu)


def speed_table(args: argparse.Namespace, md: list[str]) -> None:
    """Scoring speed of the score step's batch scorers on one thread (pool rows of wiki_science, repeated)."""
    case = junk_case("wiki_science", n_on_topic=args.n_on, n_junk=args.n_junk, n_target=args.n_target)
    pool, target = case.pool["text"].to_list() * 4, case.target["text"].to_list()
    static = load_embedder("static", cache_dir=args.cache_dir, device="cpu")
    p = static.encode(case.pool["text"].to_list())
    centring = fit_centering(static.encode(pool))
    _, model = space_scores(
        case.pool["text"].to_list(), target, centring.apply(p), centring.apply(static.encode(target)),
        seed=args.seed,
    )  # fmt: skip
    ids = pa.array([f"d{i:06d}" for i in range(len(pool))], pa.string())
    classifier, target_lm = model.classifier, model.target_lm
    assert classifier is not None and target_lm is not None
    work: dict[str, Callable[[], object]] = {
        "embedding scores (static encode + centre + proto_dist + target_dist)": lambda: (
            model.embedding_scores(ids, centring.apply(static.encode(pool)))
        ),
        "target_ngram (features + 5 fold models)": lambda: classifier.score(pool),
        "target_lm (word tokens + trigram/unigram doc loss)": lambda: target_lm.score(tokenize(pool)),
    }
    md += [f"### Scoring speed, one thread ({len(pool)} Wikipedia paragraphs and junk rows)", ""]
    md += ["| signal | docs/CPU-s | docs/wall-s | load |", "|---|---|---|---|"]
    for name, fn in work.items():
        _, wall, cpu = timed(fn, args.speed_repeats, len(pool))
        md.append(f"| {name} | {cpu:,.0f} | {wall:,.0f} | {load()} |")
    md.append("")
    print("\n".join(md[-6:]), flush=True)


def knn_table(args: argparse.Namespace, md: list[str]) -> dict[str, float]:
    """Section 3: 5-NN topic accuracy and docs/s of each tier on one thread, in one run."""
    docs = corpora.wiki(args.n_knn, labelled_only=True, seed=args.seed)
    texts, labels = docs["text"].to_list(), np.asarray(docs["label"].to_list())
    rates: dict[str, tuple[float, float, str]] = {}
    acc: dict[str, float] = {}
    tiers: tuple[tuple[Tier, int], ...] = (("static", args.static_repeats), ("minilm", 1))
    for tier, repeats in tiers:
        model = load_embedder(tier, cache_dir=args.cache_dir, device="cpu")
        model.encode(texts[:8])
        out, wall, cpu = timed(partial(model.encode, texts), repeats, len(texts))
        x = np.asarray(out)
        rates[tier] = (wall, cpu, load())
        acc[f"{tier} raw"] = knn_accuracy(x, labels)
        acc[f"{tier} centred"] = knn_accuracy(fit_centering(x).apply(x), labels)
    ratio = rates["static"][1] / rates["minilm"][1]
    md += [
        f"## 3. 5-NN topic accuracy ({len(texts)} labelled Wikipedia summaries, 11 topics, leave-one-out)",
        "",
    ]
    md += [
        "| space | 5-NN accuracy | / MiniLM raw | docs/CPU-s (1 thread) | docs/wall-s | load |",
        "|---|---|---|---|---|---|",
    ]
    for name, a in acc.items():
        wall, cpu, ld = rates[name.split()[0]]
        md.append(f"| {name} | {a:.3f} | {a / acc['minilm raw']:.2f} | {cpu:,.0f} | {wall:,.0f} | {ld} |")
    md += ["", f"static / MiniLM speed: {ratio:,.0f}x per core (CPU time).", ""]
    print("\n".join(md[-len(acc) - 6 :]), flush=True)
    return {"knn_ratio": acc["static centred"] / acc["minilm raw"], "speed": ratio}


def proxy_tables(args: argparse.Namespace, md: list[str]) -> None:
    """Section 4: the n-gram proxy: target loss per training source, vs unique data and repeats; speed."""
    sources = ("on_topic", *DEFAULT_JUNK)
    n = args.n_proxy
    loss_rows, curve_rows = [], []
    timing = ""
    n_on = max(300, n) if not args.smoke else 3 * n
    uniq_at = [n_on // 6, n_on // 3, 2 * n_on // 3, n_on]
    for domain in args.cases:
        case = junk_case(
            domain,
            n_on_topic=n_on,
            n_junk=n * len(DEFAULT_JUNK),
            n_target=args.n_target,
            seed=args.seed,
        )
        kind = case.pool["kind"].to_numpy()
        texts, target = case.pool["text"].to_list(), case.target["text"].to_list()
        rows = {s: np.flatnonzero(kind == s)[:n] for s in sources}
        for tok in ("wordpiece", "words"):  # the default (words) last: its corpus is used below
            pool_tok, target_tok = tokenize(texts, tokenizer=tok), tokenize(target, tokenizer=tok)
            losses = {s: NgramLM(order=3).fit(pool_tok, r).loss(target_tok) for s, r in rows.items()}
            gap = min(v for s, v in losses.items() if s != "on_topic") - losses["on_topic"]
            cells = " | ".join(f"{losses[s]:.2f}" for s in sources)
            loss_rows.append(f"| {domain} | {tok} | {cells} | {gap:+.2f} | {gap / losses['on_topic']:+.1%} |")
        on = np.flatnonzero(kind == "on_topic")
        uniq = ngram_curve(pool_tok, on[:n_on], eval_corpus=target_tok, checkpoints=uniq_at)
        third = n_on // 3
        reps = ngram_curve(
            pool_tok,
            np.tile(on[:third], 3),
            eval_corpus=target_tok,
            checkpoints=[third, 2 * third, 3 * third],
        )
        u, r = uniq.curve["eval_loss"].to_list(), reps.curve["eval_loss"].to_list()
        curve_rows.append(
            f"| {domain} | "
            + " | ".join(f"{v:.3f}" for v in u)
            + " | "
            + " | ".join(f"{v:.3f}" for v in r)
            + " |"
        )
        if domain == "wiki_science":
            seq = np.resize(np.arange(len(texts)), 1000)
            walls, cpus = [], []
            for _ in range(args.proxy_repeats):
                w, c = time.perf_counter(), time.process_time()
                NgramLM(order=3).fit(pool_tok, seq).loss(target_tok)
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
            timing = (
                f"One run (1,000 documents, {int(np.diff(pool_tok.offsets)[seq].sum()):,} tokens, fit + eval "
                "on "
                f"{target_tok.n_tokens():,} target tokens): median {1e3 * np.median(walls):.0f} ms wall, "
                f"{1e3 * np.median(cpus):.0f} ms CPU (load {load()}); tokenising is done once per corpus."
            )
        print(loss_rows[-1], curve_rows[-1], f"(load {load()})", flush=True)
    md += [
        f"## 4. N-gram proxy (interpolated Kneser-Ney trigram); {n} training docs per source",
        "",
        "Target loss (nats/token on the held-out target) after training on each source; gap = best other "
        "source minus target domain (positive: the target domain wins), also relative to the target-domain "
        "loss. Tokens: hashed words and punctuation (default) or MiniLM WordPiece (losses per token are not "
        "comparable across tokenizers).",
        "",
        "| case | tokens | " + " | ".join(sources) + " | gap | gap / loss |",
        "|" + "---|" * (len(sources) + 4),
        *loss_rows,
        "",
        f"Loss (word tokens) vs unique on-topic documents, and {n_on // 3} documents repeated (a count "
        "model's checkpoint after n documents equals a run trained on those n documents):",
        "",
        "| case | "
        + " | ".join(f"{u} uniq" for u in uniq_at)
        + " | "
        + " | ".join(f"{n_on // 3} x{r}" for r in (1, 2, 3))
        + " |",
        "|---|---|---|---|---|---|---|---|",
        *curve_rows,
        "",
        timing,
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-on", type=int, default=400, help="on-topic pool rows per case")
    parser.add_argument("--n-junk", type=int, default=180, help="junk rows per case")
    parser.add_argument("--n-target", type=int, default=200, help="held-out target rows per case")
    parser.add_argument("--n-knn", type=int, default=1500, help="labelled Wikipedia summaries for 5-NN")
    parser.add_argument(
        "--n-proxy", type=int, default=100, help="training documents per source (n-gram proxy)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="one case at tiny sizes: a check, not a measurement"
    )
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--out", type=Path, default=OUT, help="folder of signals.md")
    args = parser.parse_args(argv)
    args.cases, args.mixtures = CASES, MIXTURES
    args.n_boot, args.speed_repeats, args.proxy_repeats, args.static_repeats = 200, 3, 5, 10
    if args.smoke:
        args.n_on, args.n_junk, args.n_target, args.n_knn, args.n_proxy = 16, 12, 10, 24, 8
        args.cases, args.mixtures = ("wiki_science",), {"six kinds": DEFAULT_JUNK}
        args.n_boot, args.speed_repeats, args.proxy_repeats, args.static_repeats = 10, 1, 1, 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # rates per core; the tiny models are also fastest on one thread
    try:
        md = run(args)
    finally:
        torch.set_num_threads(threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "signals.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'signals.md'}")
    return 0


def run(args: argparse.Namespace) -> list[str]:
    """Every section of the report, as markdown lines."""
    load_embedder("static", cache_dir=args.cache_dir)  # distil outside the clock on first use
    md = [
        f"# Signals that see (issue 14): bench/signals.py, seed {args.seed}"
        + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else ""),
        "",
        f"CPU: {os.cpu_count()} cores, shared machine; 1-minute load average at start {load()}.",
        "",
    ]
    worst = junk_tables(args, Vectors(args.cache_dir), md)
    speed_table(args, md)
    knn = knn_table(args, md)
    proxy_tables(args, md)
    md += [
        "## Verdict",
        "",
        f"- CPU default `{DEFAULT_METHOD}`: worst AUROC {worst['abs']:.3f} over the {len(args.cases)} x "
        f"{len(args.mixtures)} cases (acceptance "
        f">= 0.88: {'met' if worst['abs'] >= 0.88 else 'NOT met'}), worst ratio {worst['raw']:.2f} to MiniLM "
        "raw "
        f"and {worst['centred']:.2f} to MiniLM centred (>= 0.95: "
        f"{'met' if min(worst['raw'], worst['centred']) >= 0.95 else 'NOT met'}).",
        f"- Static centred 5-NN accuracy / MiniLM raw = {knn['knn_ratio']:.2f} (>= 0.9: "
        f"{'met' if knn['knn_ratio'] >= 0.9 else 'NOT met'}); static is {knn['speed']:,.0f}x faster per core "
        f"(>= 50x: {'met' if knn['speed'] >= 50 else 'NOT met'}).",
        "",
    ]
    print("\n".join(md[-4:]))
    return md


if __name__ == "__main__":
    sys.exit(main())

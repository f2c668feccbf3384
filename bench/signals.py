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
   documents and repeats, per-run time, and the tiny byte LM (scaling.proxy) on the same sources.
Run: `HF_HUB_OFFLINE=1 .venv/bin/python bench/signals.py` (add --quick for a small smoke run).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["RAYON_NUM_THREADS"] = "1"  # one core for the tokenizers too

import argparse
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from curate import corpora
from curate.centering import fit_centering
from curate.embeddings import Tier, default_cache_dir, load_embedder
from curate.junk import CASES, DEFAULT_JUNK, JunkCase, JunkKind, junk_case
from pruning.difficulty import target_distance
from pruning.target import TargetClassifier, target_lm_scores, target_self_distance, target_z
from scaling.ngram import NgramLM, ngram_curve, tokenize
from scaling.proxy import train_tiny_lm

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
OUT = Path(__file__).parent / "results" / "signals.md"


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


def auroc(y: np.ndarray, s: np.ndarray, *, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """AUROC of `s` for the positives `y`, and its bootstrap standard error."""
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            boots.append(roc_auc_score(y[i], s[i]))
    return float(roc_auc_score(y, s)), float(np.std(boots))


def case_scores(case: JunkCase, vec: Vectors, *, seed: int) -> dict[str, np.ndarray]:
    """Every method's pool scores (larger = further from the target) on one case."""
    pool, target = case.pool["text"].to_list(), case.target["text"].to_list()
    clf = TargetClassifier(seed=seed).fit(pool, target)
    ngram = (clf.pool_scores(pool), clf.target_scores_)
    lm = target_lm_scores(pool, target, seed=seed)
    out: dict[str, np.ndarray] = {"n-gram clf": ngram[0], "target_lm": lm[0]}
    for tier in ("minilm", "static"):
        p, t = vec(tier, pool), vec(tier, target)
        centring = fit_centering(p)  # the corpus statistic: the pool being scored
        pc, tc = centring.apply(p), centring.apply(t)
        out[f"{tier} raw"] = target_distance(p, t)
        out[f"{tier} centred"] = target_distance(pc, tc)
        dist = (out[f"{tier} centred"], target_self_distance(tc))
        out[f"target_z {tier}"] = target_z({"target_dist": dist, "target_ngram": ngram, "target_lm": lm})
        if tier == "static":
            out["z2 static"] = target_z({"target_dist": dist, "target_ngram": ngram})
    return out


def junk_tables(args: argparse.Namespace, vec: Vectors, md: list[str]) -> dict[str, float]:
    """Sections 1 and 2: AUROC per case and method, and per junk kind; returns the default's worst ratio."""
    kinds_auc: dict[str, dict[str, list[float]]] = {m: {k: [] for k in DEFAULT_JUNK} for m in METHODS}
    head = f"| case | {' | '.join(METHODS)} | default / minilm raw | default / minilm centred |"
    lines = [head, "|" + "---|" * (len(METHODS) + 3)]
    worst = {"abs": 1.0, "raw": 9.0, "centred": 9.0}
    for domain in CASES:
        for mix, kinds in MIXTURES.items():
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
            res = {m: auroc(y, scores[m], seed=args.seed) for m in METHODS}
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
    md += ["## 1. Junk AUROC (junk vs on-topic pool rows; target = held-out on-topic sample)", "", *lines, ""]
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
    rows = [
        f"| {m} | " + " | ".join(f"{np.mean(kinds_auc[m][k]):.2f}" for k in DEFAULT_JUNK) + " |"
        for m in METHODS
    ]
    md += ["## 2. AUROC per junk kind (six-kind cases, mean over the four domains)", ""]
    md += ["| method | " + " | ".join(DEFAULT_JUNK) + " |", "|" + "---|" * (len(DEFAULT_JUNK) + 1), *rows, ""]
    print("\n".join(md[-len(rows) - 3 :]))
    return worst


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


def timed(fn: Callable[[], np.ndarray], repeats: int, n: int) -> tuple[np.ndarray, float, float]:
    """fn's result, docs per wall second and docs per CPU second over `repeats` calls of `n` docs."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        out = fn()
    return out, repeats * n / (time.perf_counter() - wall), repeats * n / (time.process_time() - cpu)


def speed_table(args: argparse.Namespace, md: list[str]) -> None:
    """Scoring speed of each target signal on one thread (pool rows of the wiki_science case, repeated)."""
    case = junk_case("wiki_science", n_on_topic=args.n_on, n_junk=args.n_junk, n_target=args.n_target)
    pool, target = case.pool["text"].to_list() * 4, case.target["text"].to_list()
    static = load_embedder("static", cache_dir=args.cache_dir, device="cpu")
    clf = TargetClassifier(seed=args.seed).fit(case.pool["text"].to_list(), target)
    t_tok = tokenize(target)
    lm3, lm1 = NgramLM(order=3).fit(t_tok), NgramLM(order=1).fit(t_tok)
    centring = fit_centering(static.encode(pool))
    t_vec = centring.apply(static.encode(target))
    work: dict[str, Callable[[], np.ndarray]] = {
        "target_dist (static encode + centre + 1-cos)": lambda: target_distance(
            centring.apply(static.encode(pool)), t_vec
        ),
        "target_ngram (features + 5 fold models)": lambda: clf.score(pool),
        "target_lm (word tokens + trigram/unigram doc loss)": lambda: (
            lm3.doc_loss(p := tokenize(pool)) - lm1.doc_loss(p)
        ),
    }
    md += [f"### Scoring speed, one thread ({len(pool)} Wikipedia paragraphs and junk rows)", ""]
    md += ["| signal | docs/CPU-s | docs/wall-s | load |", "|---|---|---|---|"]
    for name, fn in work.items():
        _, wall, cpu = timed(fn, 3, len(pool))
        md.append(f"| {name} | {cpu:,.0f} | {wall:,.0f} | {load()} |")
    md.append("")
    print("\n".join(md[-6:]), flush=True)


def knn_table(args: argparse.Namespace, md: list[str]) -> dict[str, float]:
    """Section 3: 5-NN topic accuracy and docs/s of each tier on one thread, in one run."""
    docs = corpora.wiki(args.n_knn, labelled_only=True, seed=args.seed)
    texts, labels = docs["text"].to_list(), np.asarray(docs["label"].to_list())
    rates: dict[str, tuple[float, float, str]] = {}
    acc: dict[str, float] = {}
    tiers: tuple[tuple[Tier, int], ...] = (("static", 10), ("minilm", 1))
    for tier, repeats in tiers:
        model = load_embedder(tier, cache_dir=args.cache_dir, device="cpu")
        model.encode(texts[:8])
        x, wall, cpu = timed(partial(model.encode, texts), repeats, len(texts))
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
    loss_rows, curve_rows, tiny_rows = [], [], []
    timing = ""
    for domain in CASES:
        case = junk_case(
            domain,
            n_on_topic=max(300, n),
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
        uniq = ngram_curve(pool_tok, on[:300], eval_corpus=target_tok, checkpoints=[50, 100, 200, 300])
        reps = ngram_curve(
            pool_tok, np.tile(on[:100], 3), eval_corpus=target_tok, checkpoints=[100, 200, 300]
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
            for _ in range(5):
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
        if args.tiny_lm and domain in ("wiki_science", "bbc"):
            tl = {
                s: train_tiny_lm(
                    [texts[i] for i in rows[s]], eval_texts=target, epochs=3, seed=args.seed, device="cpu"
                ).curve["eval_loss"][-1]
                for s in sources
            }
            gap = min(v for s, v in tl.items() if s != "on_topic") - tl["on_topic"]
            tiny_rows.append(
                f"| {domain} | " + " | ".join(f"{tl[s]:.3f}" for s in sources) + f" | {gap:+.3f} |"
            )
            print(tiny_rows[-1], flush=True)
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
        "Loss (word tokens) vs unique on-topic documents, and 100 documents repeated (a count model's "
        "checkpoint after n documents equals a run trained on those n documents):",
        "",
        "| case | 50 uniq | 100 uniq | 200 uniq | 300 uniq | 100 x1 | 100 x2 | 100 x3 |",
        "|---|---|---|---|---|---|---|---|",
        *curve_rows,
        "",
        timing,
        "",
    ]
    if tiny_rows:
        md += [
            "Tiny byte LM (scaling.proxy.train_tiny_lm, 3 epochs, 128 bytes, nats/byte) on the same sources:",
            "",
            "| case | " + " | ".join(sources) + " | gap |",
            "|" + "---|" * (len(sources) + 2),
            *tiny_rows,
            "",
        ]


def main() -> None:
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
        "--no-tiny-lm", dest="tiny_lm", action="store_false", help="skip the byte-LM comparison"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.n_on, args.n_junk, args.n_target, args.n_knn, args.n_proxy = 60, 30, 40, 200, 30
    torch.set_num_threads(1)
    load_embedder("static", cache_dir=args.cache_dir)  # distil outside the clock on first use
    md = [
        f"# Signals that see (issue 14): bench/signals.py, seed {args.seed}",
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
        f"- CPU default `{DEFAULT_METHOD}`: worst AUROC {worst['abs']:.3f} over the eight cases (acceptance "
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Does another model2vec distillation of the packaged MiniLM make a better static tier (issue 14)?

Distils variants offline (model2vec.distill: PCA width, SIF/Zipf token weighting) into a scratch folder and
prints, per variant: 5-NN topic accuracy (leave-one-out, Wikipedia's 11 topics) and the junk AUROC of
`target_dist` (1 - cos to the target mean, as the score step computes it: `pruning.scores.fit_scores` and
`ScoreModel.embedding_scores`) on the planted-junk cases of curate.junk (six kinds), raw and corpus-centred.
The current tier (`distill_static`, `pca256_sif1e-4`) is the product's own cached model
(`load_embedder("static")`), not a re-distillation. Each other distillation takes about a minute on 2 cores;
every variant is encoded through the product's `StaticEmbedder`.
Run: `HF_HUB_OFFLINE=1 .venv/bin/python bench/static_variants.py [--out DIR]` (--smoke: the current tier on
one tiny case, a check that the script runs, not a measurement; it distils nothing).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from curate import corpora
from curate.centering import fit_centering
from curate.embeddings import Embedder, StaticEmbedder, default_cache_dir, load_embedder, source_model_path
from curate.junk import CASES, CaseName, junk_case

CURRENT = "pca256_sif1e-4"  # what distill_static builds (model2vec's defaults at pca_dims=256)
VARIANTS: dict[str, dict[str, Any]] = {
    CURRENT: {"pca_dims": 256},
    "pca256_no-sif": {"pca_dims": 256, "sif_coefficient": None},
    "pca384_sif1e-4": {"pca_dims": 384},
    "no-pca_sif1e-4": {"pca_dims": None},
}
OUT = Path(__file__).parent / "results"


def variant_embedder(name: str, scratch: Path, cache_dir: Path) -> Embedder:
    """The product's static embedder for the current variant; a fresh distillation for the others."""
    if name == CURRENT:
        return load_embedder("static", cache_dir=cache_dir)
    from model2vec import StaticModel
    from model2vec.distill import distill

    folder = scratch / name
    distill(model_name=str(source_model_path()), **VARIANTS[name]).save_pretrained(folder)
    model = StaticModel.from_pretrained(folder, quantize_to="float32", normalize=True)
    return StaticEmbedder(model, version=name, dim=int(model.dim))


def main(argv: list[str] | None = None) -> int:
    from signals import knn_accuracy, space_scores  # bench/signals.py (the script folder is on sys.path)

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-knn", type=int, default=1500)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--smoke", action="store_true", help="current tier, one tiny case: not a measurement")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of static_variants.md")
    args = parser.parse_args(argv)
    n_on, n_junk, n_target = 400, 180, 200  # junk_case's defaults
    names: tuple[CaseName, ...] = CASES
    if args.smoke:
        args.n_knn, args.variants, names = 24, [CURRENT], ("wiki_science",)
        n_on, n_junk, n_target = 16, 12, 10
    docs = corpora.wiki(args.n_knn, labelled_only=True, seed=0)
    texts, labels = docs["text"].to_list(), np.asarray(docs["label"].to_list())
    cases = {name: junk_case(name, n_on_topic=n_on, n_junk=n_junk, n_target=n_target) for name in names}
    lines = [
        "| variant | 5-NN raw | 5-NN centred | " + " | ".join(f"{c} raw | {c} centred" for c in cases) + " |",
        "|" + "---|" * (3 + 2 * len(cases)),
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.variants:
            model = variant_embedder(name, Path(scratch), args.cache_dir)
            x = model.encode(texts)
            cells = [
                f"{knn_accuracy(x, labels):.3f}",
                f"{knn_accuracy(fit_centering(x).apply(x), labels):.3f}",
            ]
            for case in cases.values():
                pool, target = case.pool["text"].to_list(), case.target["text"].to_list()
                p, t = model.encode(pool), model.encode(target)
                c = fit_centering(p)
                for a, b in ((p, t), (c.apply(p), c.apply(t))):
                    scores, _ = space_scores(pool, target, a, b, seed=0)
                    cells.append(f"{roc_auc_score(case.is_junk, scores['target_dist'].to_numpy()):.3f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            print(lines[-1], f"(load {os.getloadavg()[0]:.1f})", flush=True)
    title = "# Static-tier distillation variants (bench/static_variants.py)"
    md = [title + (" (smoke run: tiny sizes, not a measurement)" if args.smoke else ""), "", *lines, ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "static_variants.md").write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {args.out / 'static_variants.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

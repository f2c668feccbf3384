"""Does another model2vec distillation of the packaged MiniLM make a better static tier (issue 14)?

Distils variants offline (model2vec.distill: PCA width, SIF/Zipf token weighting) into a scratch folder and
prints, per variant: 5-NN topic accuracy (leave-one-out, Wikipedia's 11 topics) and the junk AUROC of
1 - cos to the target mean on the planted-junk cases of curate.junk (six kinds), raw and corpus-centred.
The current `distill_static` is `pca256_sif1e-4`. Each distillation takes about a minute on 2 cores.
Run: `HF_HUB_OFFLINE=1 .venv/bin/python bench/static_variants.py`.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from curate import corpora
from curate.centering import fit_centering
from curate.embeddings import source_model_path
from curate.junk import CASES, junk_case
from pruning.difficulty import target_distance

VARIANTS: dict[str, dict[str, Any]] = {
    "pca256_sif1e-4": {"pca_dims": 256},
    "pca256_no-sif": {"pca_dims": 256, "sif_coefficient": None},
    "pca384_sif1e-4": {"pca_dims": 384},
    "no-pca_sif1e-4": {"pca_dims": None},
}


def main() -> None:
    from model2vec import StaticModel
    from model2vec.distill import distill
    from signals import knn_accuracy  # bench/signals.py (the script folder is on sys.path): one 5-NN

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-knn", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "static_variants.md")
    args = parser.parse_args()
    docs = corpora.wiki(args.n_knn, labelled_only=True, seed=0)
    texts, labels = docs["text"].to_list(), np.asarray(docs["label"].to_list())
    cases = {name: junk_case(name) for name in CASES}
    lines = [
        "| variant | 5-NN raw | 5-NN centred | " + " | ".join(f"{c} raw | {c} centred" for c in CASES) + " |",
        "|" + "---|" * (3 + 2 * len(CASES)),
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for name, kwargs in VARIANTS.items():
            folder = Path(scratch) / name
            distill(model_name=str(source_model_path()), **kwargs).save_pretrained(folder)
            model = StaticModel.from_pretrained(folder, quantize_to="float32", normalize=True)

            def enc(t: list[str], m: Any = model) -> np.ndarray:
                return np.asarray(m.encode(t, max_length=None, use_multiprocessing=False), dtype=np.float32)

            x = enc(texts)
            cells = [
                f"{knn_accuracy(x, labels):.3f}",
                f"{knn_accuracy(fit_centering(x).apply(x), labels):.3f}",
            ]
            for case in cases.values():
                p, t = enc(case.pool["text"].to_list()), enc(case.target["text"].to_list())
                c = fit_centering(p)
                cells.append(f"{roc_auc_score(case.is_junk, target_distance(p, t)):.3f}")
                cells.append(f"{roc_auc_score(case.is_junk, target_distance(c.apply(p), c.apply(t))):.3f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            print(lines[-1], f"(load {os.getloadavg()[0]:.1f})", flush=True)
    md = ["# Static-tier distillation variants (bench/static_variants.py)", "", *lines, ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

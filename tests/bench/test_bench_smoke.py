"""Benchmarks that cannot rot (issue 21): every bench/ script imports and runs at smoke size in this process.

Each script's `main(["--smoke", "--out", DIR])` must return 0 and write its table into DIR, never into
bench/results/. The list of scripts is the bench folder itself, so a new script is covered the day it lands
(and fails here until TABLES says what its table looks like).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))
TABLES = {  # script -> (file it writes into --out, a line of its table)
    "decisions": ("decisions.md", "| case | m | product's top weights | junk w | product loss | best loss |"),
    "dedup": ("dedup.txt", "End-to-end fuzzy dedup"),
    "embed": ("embed.txt", "tier, pool"),
    "embed_tiers": ("embed_tiers.txt", "topic acc (3-fold)"),
    "ingest": ("ingest.txt", "polars read_ndjson + hash (baseline)"),
    "kmeans": ("kmeans.txt", "fit pts"),
    "ot_divergence": ("ot_divergence.md", "## Equal accuracy"),
    "pipeline": ("pipeline.txt", "end to end:"),
    "projektor_real": ("projektor_real.md", "## Stage 1: held-out MAE"),
    "proxy_transfer": ("proxy_transfer.md", "| proxy | params | core-s a run | compute vs lm |"),
    "pruning_scaling": ("pruning_scaling.csv", "n_initial,seed,keep_fraction,n_kept,method,policy,balance"),
    "qqt_real": ("qqt_real.md", "## unions never fitted nor used to choose the rule"),
    "scale": ("scale.md", "| docs | mode | step | wall s |"),
    "signals": ("signals.md", "## 1. Junk AUROC"),
    "static_variants": ("static_variants.md", "| variant | 5-NN raw | 5-NN centred |"),
}
RAY = {"dedup", "embed", "ingest"}  # their smoke runs use the embedded Ray runtime


def load(script: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module, imported as `python bench/<script>` would (its folder first on sys.path)."""
    monkeypatch.syspath_prepend(str(script.parent))
    spec = importlib.util.spec_from_file_location(script.stem, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, script.stem, module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def results_snapshot() -> dict[str, int]:
    """Every file of bench/results/ with its modification time (ns)."""
    folder = BENCH / "results"
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.is_dir() else {}


def test_every_script_has_an_expected_table() -> None:
    """The bench folder and TABLES name the same scripts."""
    assert sorted(p.stem for p in SCRIPTS) == sorted(TABLES)


@pytest.mark.parametrize(
    "script",
    [pytest.param(p, id=p.stem, marks=[pytest.mark.ray] if p.stem in RAY else []) for p in SCRIPTS],
)
def test_bench_runs_at_smoke_size(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """main(["--smoke", "--out", tmp]) returns 0 and writes its table (header and rows) into tmp only."""
    if script.stem in RAY:
        request.getfixturevalue("ray_runtime")
    before = results_snapshot()
    module = load(script, monkeypatch)
    assert module.main(["--smoke", "--out", str(tmp_path)]) == 0
    name, header = TABLES[script.stem]
    text = (tmp_path / name).read_text(encoding="utf-8")
    assert header in text
    rows = [line for line in text.split(header, 1)[1].splitlines() if line.strip() and "---" not in line]
    assert rows, f"bench/{script.name} wrote a header without rows"
    assert results_snapshot() == before  # bench/results/ untouched

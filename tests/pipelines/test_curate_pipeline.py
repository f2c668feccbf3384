"""End-to-end curation on a few hundred real Wikipedia summaries: manifest, selection, resume, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate import corpora
from curate.config import load_config
from curate.errors import ConfigError, FitWarning, InputError
from curate.manifest import MixtureManifest
from pipelines.curate_pipeline import PipelineRun, execute
from pipelines.plan import split_budget

# The QQT and Projektor fits on a few hundred documents are poorly identified (FitWarning); their quality is
# tested in tests/scaling, here only the plumbing is.
pytestmark = pytest.mark.filterwarnings("ignore::curate.errors.FitWarning")

CONFIG = """seed = 0
[sources.alpha]
path = "alpha/*.jsonl"
label_field = "label"
[sources.beta]
path = "beta/*.jsonl"
label_field = "label"
[sources.noisy]
path = "noisy/*.jsonl"
label_field = "label"
[target]
path = "target/*.jsonl"
label_field = "label"
[budget]
unit = "{unit}"
value = {value}
[embed]
kind = "static"
[proxy]
pilot_sizes = [64, 128]
epochs = 4
n_mixtures = 6
eval_size = 100
bootstrap = 2
[mixture]
ot_max_points = 200
[score]
n_buckets = 3
"""


def write_corpus(root: Path, *, unit: str = "samples", value: int = 400) -> Path:
    """Three labelled sources (one with shuffled labels: the degraded one), a labelled target, the config."""
    rows = corpora.wiki(700, labelled_only=True, seed=0).to_dicts()
    labels = sorted({r["label"] for r in rows})
    rng = np.random.default_rng(0)
    parts = {"alpha": rows[:220], "beta": rows[220:440], "noisy": rows[440:600], "target": rows[600:]}
    for r in parts["noisy"]:
        r["label"] = labels[int(rng.integers(len(labels)))]
    for name, part in parts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    (root / "curate.toml").write_text(CONFIG.format(unit=unit, value=value))
    return root / "curate.toml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """One in-process run of the small corpus."""
    root = tmp_path_factory.mktemp("e2e")
    return execute(write_corpus(root), local=True)


def test_manifest_weights_selection_and_exports(finished: PipelineRun) -> None:
    """Weights sum to 1, the selection realises weight x budget per source exactly, every export is there."""
    m = finished.manifest
    assert MixtureManifest.from_json(finished.manifest_path.read_text()) == m
    assert sum(m.weights().values()) == pytest.approx(1.0, abs=1e-9)
    sel = pl.read_parquet(finished.out_dir / m.selection.path)
    counts = dict(sel.group_by("source").agg(pl.col("repeats").sum()).iter_rows())
    planned = split_budget(m.weights(), m.budget.value)
    assert counts == {s: n for s, n in planned.items() if n > 0}
    assert sel["doc_id"].is_unique().all() and (sel["repeats"] > 0).all()
    for s in m.sources:
        got = sel.filter(pl.col("source") == s.name)
        assert got.height == (s.n_kept if s.weight > 0 else 0)
        assert float(got["weight"].sum()) == pytest.approx(planned[s.name] / m.budget.value)
    hf = json.loads((finished.out_dir / "hf_interleave.json").read_text())
    assert dict(zip(hf["datasets"], hf["probabilities"], strict=True)) == {
        s.name: s.weight for s in m.sources if s.weight > 0
    }
    assert (finished.out_dir / "megatron_data_path.txt").read_text().split()[1::2] == [
        f"data/{s.name}" for s in m.sources if s.weight > 0
    ]
    assert "<img" in finished.report_path.read_text()


def test_provenance_pins_inputs_and_config(finished: PipelineRun) -> None:
    """Provenance lists every input shard with its digest and the config without runtime-only keys."""
    prov = finished.manifest.provenance
    assert sorted(prov.inputs) == [
        "alpha/part.jsonl",
        "beta/part.jsonl",
        "noisy/part.jsonl",
        "target/part.jsonl",
    ]
    assert "ray" not in prov.config and prov.config["budget"] == {"unit": "samples", "value": 400}


def test_rerun_is_a_noop(finished: PipelineRun) -> None:
    """A second run of the same config does no work: same step keys, no new folders, same manifest bytes."""
    work = finished.out_dir.parents[1]
    before = sorted(p for p in work.rglob("_stage.json"))
    again = execute(work.parent / "curate.toml", local=True)
    assert again.steps == finished.steps
    assert sorted(p for p in work.rglob("_stage.json")) == before
    assert again.manifest_path.read_bytes() == finished.manifest_path.read_bytes()


def test_budget_change_reruns_only_the_plan(finished: PipelineRun, tmp_path: Path) -> None:
    """Changing only the budget keeps every step up to calibration and reruns the fit, plan and publish."""
    work = finished.out_dir.parents[1]
    cfg = load_config(work.parent / "curate.toml")
    cfg = cfg.model_copy(update={"budget": cfg.budget.model_copy(update={"value": 600})})
    changed = execute(cfg, work=work, local=True)
    same = ("ingest", "embed", "dedup", "score", "calibrate.mix")
    assert {k: changed.steps[k] for k in same} == {k: finished.steps[k] for k in same}
    assert all(changed.steps[k] != finished.steps[k] for k in ("fit.mix", "select", "publish"))
    assert changed.manifest.budget.value == 600


def test_glob_matching_nothing_is_an_input_error(tmp_path: Path) -> None:
    """A source glob that matches no file stops the run before any work, naming the source."""
    cfg = write_corpus(tmp_path)
    cfg.write_text(cfg.read_text().replace('"beta/*.jsonl"', '"nowhere/*.jsonl"'))
    with pytest.raises(InputError, match=r"source 'beta': .*nowhere/\*\.jsonl' matches no supported file"):
        execute(cfg, local=True)


def test_target_without_rows_is_an_input_error(tmp_path: Path) -> None:
    """A target whose every row is rejected raises InputError naming the target and the reject reasons."""
    cfg = write_corpus(tmp_path)
    (tmp_path / "target" / "part.jsonl").write_text('{"text": ""}\n{"body": "x"}\n')
    with pytest.raises(
        InputError, match=r"target 'target' has no rows: 2 read, all rejected \(.*empty_text=1"
    ):
        execute(cfg, local=True)


def test_source_empty_after_dedup_is_an_input_error(tmp_path: Path) -> None:
    """A source made only of copies of another source's documents is reported as empty after dedup."""
    cfg = write_corpus(tmp_path)
    (tmp_path / "zcopy").mkdir()
    (tmp_path / "zcopy" / "part.jsonl").write_text((tmp_path / "alpha" / "part.jsonl").read_text())
    cfg.write_text(cfg.read_text() + '[sources.zcopy]\npath = "zcopy/*.jsonl"\nlabel_field = "label"\n')
    with pytest.raises(InputError, match=r"source 'zcopy' is empty after dedup: every document duplicates"):
        execute(cfg, local=True)


def test_token_budget_below_one_batch_is_a_config_error(tmp_path: Path) -> None:
    """A token budget worth fewer documents than one proxy batch is refused with the key named."""
    cfg = write_corpus(tmp_path, unit="tokens", value=500)
    with pytest.raises(
        ConfigError, match=r"'budget\.value' \(500 tokens, about \d+ documents\) is smaller than one"
    ):
        execute(cfg, local=True)


def test_cli_run_prints_the_plan(finished: PipelineRun, capsys: pytest.CaptureFixture[str]) -> None:
    """`curate run CONFIG --local` on a finished run exits 0, printing the weights and where the files are."""
    from curate.cli import main

    config = finished.out_dir.parents[2] / "curate.toml"
    assert main(["run", str(config), "--local"]) == 0
    out = capsys.readouterr().out
    assert str(finished.manifest_path) in out.replace("\n", "")
    for s in finished.manifest.sources:
        assert s.name in out and f"{s.weight:.3f}" in out


@pytest.mark.slow
@pytest.mark.ray
def test_ray_from_scratch_gives_byte_identical_manifest(finished: PipelineRun, tmp_path: Path) -> None:
    """The same config and seed run from scratch on Ray give the local run's manifest byte for byte."""
    config = finished.out_dir.parents[2] / "curate.toml"
    on_ray = execute(config, work=tmp_path / "work")
    assert on_ray.manifest_path.read_bytes() == finished.manifest_path.read_bytes()


def test_projektor_guard_against_the_mean_predictor(finished: PipelineRun) -> None:
    """fit.mix compares Projektor's held-out MAE with the mean predictor's and, when worse, plans the best
    calibrated mixture and names the fallback in prediction.method."""
    work = finished.out_dir.parents[1]
    fit = work / "fit.mix" / finished.steps["fit.mix"]
    info = json.loads((fit / "_stage.json").read_text())
    runs = pl.read_parquet(work / "calibrate.mix" / finished.steps["calibrate.mix"] / "runs.parquet")
    hold = pl.read_parquet(fit / "holdout.parquet")
    top = runs.filter(pl.col("n") == runs["n"].max())
    train_mean = float(top.filter(pl.col("mixture") % 4 != 3)["metric"].mean())  # type: ignore[arg-type]
    observed = hold["observed"].to_numpy()
    mae = float(np.abs(hold["predicted"].to_numpy() - observed).mean())
    mean_mae = float(np.abs(train_mean - observed).mean())
    assert (info["holdout_mae"], info["mean_holdout_mae"]) == pytest.approx((mae, mean_mae))
    assert finished.manifest.prediction is not None
    method = finished.manifest.prediction.method
    if mae > mean_mae:
        best = top.row(int(np.argmin(top["metric"].to_numpy())), named=True)
        assert finished.manifest.weights() == pytest.approx(
            {s.name: best[s.name] for s in finished.manifest.sources}
        )
        assert method.startswith("projektor at best_grid weights (fallback: Projektor's held-out MAE")
    else:
        assert method == "projektor at projektor weights"


def test_noise_calibration_falls_back_to_best_grid(finished: PipelineRun, tmp_path: Path) -> None:
    """Calibration metrics that are pure noise (no mixture signal) make Projektor lose to the mean predictor:
    the plan takes the best calibrated mixture and prediction.method says why."""
    src = finished.out_dir.parents[1]
    work = tmp_path / "work"
    shutil.copytree(src, work)
    calib = work / "calibrate.mix" / finished.steps["calibrate.mix"] / "runs.parquet"
    runs = pl.read_parquet(calib)
    noise = pl.Series(np.random.default_rng(0).normal(0.0, 0.5, runs.height))
    runs = runs.with_columns(metric=pl.col("metric").mean() + noise)
    runs.write_parquet(calib)
    for step in ("fit.mix", "prune", "calibrate.qqt", "fit.qqt", "select", "publish"):
        shutil.rmtree(work / step, ignore_errors=True)
    with pytest.warns(FitWarning, match="held-out MAE .* is worse than the mean predictor"):
        again = execute(load_config(src.parent / "curate.toml"), work=work, local=True)
    top = runs.filter(pl.col("n") == runs["n"].max())
    best = top.row(int(np.argmin(top["metric"].to_numpy())), named=True)
    assert again.manifest.weights() == pytest.approx({s.name: best[s.name] for s in again.manifest.sources})
    assert again.manifest.prediction is not None
    assert again.manifest.prediction.method.startswith("projektor at best_grid weights (fallback: ")


def test_a_failed_qqt_fit_keeps_every_bucket_of_that_source(finished: PipelineRun, tmp_path: Path) -> None:
    """A source whose bucket curves cannot be fitted (noise seed 2 gives it one) keeps all its buckets,
    with a FitWarning naming it, instead of stopping the run."""
    src = finished.out_dir.parents[1]
    work = tmp_path / "work"
    shutil.copytree(src, work)
    calib = work / "calibrate.mix" / finished.steps["calibrate.mix"] / "runs.parquet"
    runs = pl.read_parquet(calib)
    noise = pl.Series(np.random.default_rng(2).normal(0.0, 0.5, runs.height))
    runs.with_columns(metric=pl.col("metric").mean() + noise).write_parquet(calib)
    for step in ("fit.mix", "prune", "calibrate.qqt", "fit.qqt", "select", "publish"):
        shutil.rmtree(work / step, ignore_errors=True)
    with pytest.warns(FitWarning) as record:
        again = execute(load_config(src.parent / "curate.toml"), work=work, local=True)
    failed = [str(w.message) for w in record if "keeps all its buckets" in str(w.message)]
    assert failed, [str(w.message) for w in record]
    source = failed[0].split("'")[1]
    plan = {s.name: s for s in again.manifest.sources}
    assert plan[source].weight > 0
    assert sum(plan[s].weight for s in plan) == pytest.approx(1.0)

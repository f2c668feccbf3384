"""End-to-end curation of a tiny unlabelled corpus (real Wikipedia text plus junk): the manifest, the
selection, reuse across faces (run, stage commands, library calls), resume, Ray equal to in-process,
errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate import corpora
from curate.config import ProxyConfig, load_config
from curate.errors import FitWarning, InputError
from curate.manifest import MixtureManifest
from pipelines.runner import PipelineRun, execute
from pipelines.selection import split_budget

CONFIG = """seed = 0
[sources]
alpha = "alpha/*.jsonl"
beta = "beta/*.jsonl"
junk = "junk/*.jsonl"
[target]
path = "target/*.jsonl"
[budget]
unit = "{unit}"
value = {value}
[embed]
kind = "static"
[score]
n_buckets = 2
[proxy]
pilot_sizes = [12, 40, 120]
repeats = 1
seeds = 2
bucket_epochs = [0.5, 1.0, 2.0, 3.0]
bucket_rows = 60
eval_size = 60
bootstrap = 2
[mixture]
ot_max_points = 200
"""


PLANTED = 12  # target rows copied into alpha: exact, then with one or two words changed


def edit_words(text: str, n: int, seed: int) -> str:
    """`text` with `n` of its words replaced by "lorem"."""
    words = text.split()
    for i in np.random.default_rng(seed).choice(len(words), size=n, replace=False):
        words[i] = "lorem"
    return " ".join(words)


def write_corpus(root: Path, *, unit: str = "samples", value: int = 300) -> Path:
    """alpha: one Wikipedia topic, plus copies of target rows (exact and edited); beta: other topics; junk:
    more such texts with their words shuffled; the target: held-out documents of alpha's topic. Returns the
    config path."""
    docs = corpora.wiki(labelled_only=True, seed=0)
    topic = docs.filter(pl.col("label") == "Geography").head(200)
    other = docs.filter(pl.col("label") != "Geography").head(270)
    rng = np.random.default_rng(0)
    shuffled = [" ".join(rng.permutation(t.split())) for t in other["text"].to_list()[150:]]
    target = topic["text"].to_list()[140:]
    copies = target[:PLANTED] + [
        edit_words(t, 1 + i % 2, i) for i, t in enumerate(target[PLANTED : 2 * PLANTED])
    ]
    parts = {
        "alpha": topic["text"].to_list()[:140] + copies,
        "target": target,
        "beta": other["text"].to_list()[:150],
        "junk": shuffled,
    }
    for name, texts in parts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "part.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (root / "curate.toml").write_text(CONFIG.format(unit=unit, value=value))
    return root / "curate.toml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """One in-process run of the tiny corpus (no warning: any would fail the test)."""
    return execute(write_corpus(tmp_path_factory.mktemp("e2e")), local=True)


def _work(run: PipelineRun) -> Path:
    return run.out_dir.parents[1]


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
    hf = json.loads((finished.out_dir / "hf_interleave.json").read_text())
    assert dict(zip(hf["datasets"], hf["probabilities"], strict=True)) == {
        s.name: s.weight for s in m.sources if s.weight > 0
    }
    assert "<img" in finished.report_path.read_text()


def test_prediction_is_for_the_selection_written(finished: PipelineRun) -> None:
    """manifest.prediction is the proxy run trained on the selection, its interval the 90% t interval of
    >= 5 bootstrap runs (non-zero width even for the n-gram proxy), and it says what it covers."""
    p = finished.manifest.prediction
    assert p is not None and "final selection" in p.method and "bootstrap" in p.method
    assert "It covers" in p.method and "held-out rows" in p.metric
    curves = pl.read_parquet(finished.outputs["predict"].path / "curves.parquet")
    end = curves.sort("samples_seen").group_by("run", maintain_order=True).last()
    assert p.value == pytest.approx(float(end.filter(pl.col("run") == "selection")["eval_loss"][0]), rel=1e-9)
    boot = end.filter(pl.col("run").str.starts_with("bootstrap"))["eval_loss"].to_numpy()
    assert len(boot) >= 5
    t95 = {4: 2.131846786, 5: 2.015048373}[len(boot) - 1]  # Student t 0.95 quantiles (tables)
    half = t95 * float(np.std(boot, ddof=1))
    assert half > 0
    assert p.interval == pytest.approx((p.value - half, p.value + half), rel=1e-6)


def test_default_hybrid_proxy_measures_buckets_past_one_epoch(finished: PipelineRun) -> None:
    """The default (hybrid) proxy: the n-gram LM made the prediction, the byte LM measured the quality buckets
    of every source with a share, past one pass, so QQT fits tau from them (each note says so); the byte LM
    also confirmed the refinement's best candidates; the manifest names the proxies."""
    m = finished.manifest
    assert m.prediction is not None and "(ngram)" in m.prediction.metric
    assert "proxy 'hybrid'" in m.prediction.method and "byte LM" in m.prediction.method
    curves = pl.read_parquet(finished.outputs["calibrate.quality"].path / "curves.parquet")
    shared = {s.name for s in m.sources if s.weight > 0}
    measured = set(curves["pool"].str.split("/").list.first().unique().to_list())
    assert measured == shared
    assert curves["epoch"].max() == pytest.approx(3.0, rel=0.1)
    assert (curves["error"] < 1).all()  # trained byte LMs beat the uniform guess (ln 258 nats a byte)
    for s in m.sources:
        if s.buckets:
            assert "tau fitted" in s.note and "no held-out union runs" in s.note, s.note  # two buckets
    pools = pl.read_parquet(finished.outputs["calibrate.quality"].path / "pools.parquet")
    coverage = pl.read_parquet(finished.outputs["calibrate.quality"].path / "coverage.parquet")
    for source in shared:  # rule unions (from 3 buckets): the best with the next and with the last; every gap
        k = pools.filter((pl.col("source") == source) & ~pl.col("union")).height
        rule = pools.filter((pl.col("source") == source) & pl.col("union"))["buckets"].to_list()
        assert rule == ([[0, 1], [0, k - 1]] if k > 2 else [])
        assert coverage.filter(pl.col("source") == source).height == 2**k - k - 1
    assert (coverage["gap"] >= 0).all()
    refine = pl.read_parquet(finished.outputs["fit.mixture"].path / "refine.parquet")
    assert refine["lm_mean"].drop_nulls().len() == min(ProxyConfig().confirm, refine.height)


def test_n_kept_is_the_rows_exported(finished: PipelineRun) -> None:
    """Each source's n_kept in the manifest is its rows in the exported selection (and in the stream list)."""
    m = finished.manifest
    sel = pl.read_parquet(finished.out_dir / m.selection.path)
    rows = dict(sel.group_by("source").len().iter_rows())
    assert {s.name: s.n_kept for s in m.sources} == {s.name: rows.get(s.name, 0) for s in m.sources}


def test_target_copies_are_marked_never_selected_and_counted(finished: PipelineRun) -> None:
    """Every planted copy of a target row in alpha (exact, or one or two words changed) is marked in the
    DEDUP table with its own reason, none is selected, and the report's accounting counts them."""
    work = _work(finished)
    docs = finished.outputs["ingest"].scan().select("doc_id", "source", "text").collect()
    target = (work.parent / "target" / "part.jsonl").read_text().splitlines()
    texts = [json.loads(t)["text"] for t in target]
    planted = docs.filter(pl.col("source") == "alpha").tail(2 * PLANTED)
    assert planted["text"].to_list()[:PLANTED] == texts[:PLANTED]  # the corpus holds what was planted
    marks = finished.outputs["dedup"].scan().collect().join(planted.select("doc_id"), on="doc_id")
    kinds = marks.sort("doc_id")["dup_kind"].value_counts().sort("dup_kind")
    assert dict(kinds.iter_rows()) == {"target_exact": PLANTED, "target_near": PLANTED}
    sel = pl.read_parquet(finished.out_dir / "selection.parquet")
    assert sel.join(planted, on="doc_id").is_empty()
    others = finished.outputs["dedup"].scan().filter(pl.col("dup_kind").str.starts_with("target")).collect()
    assert others.height == 2 * PLANTED  # nothing else in the pool is taken for a copy
    html = finished.report_path.read_text()
    assert "dup_target_exact" in html and "dup_target_near" in html


def test_provenance_pins_inputs_and_config(finished: PipelineRun) -> None:
    """Provenance lists every input shard with its digest and the config without runtime-only keys."""
    prov = finished.manifest.provenance
    assert sorted(prov.inputs) == [
        "alpha/part.jsonl",
        "beta/part.jsonl",
        "junk/part.jsonl",
        "target/part.jsonl",
    ]
    assert "ray" not in prov.config and prov.config["budget"] == {"unit": "samples", "value": 300}


def test_step_records_executor_and_version(finished: PipelineRun) -> None:
    """Every committed step records its own version and the executor that ran it."""
    for name, out in finished.outputs.items():
        if name.startswith("ingest"):
            continue
        info = json.loads((out.path / "_stage.json").read_text())
        assert info["run_by"]["executor"] == "local", name
        assert isinstance(info["version"], int), name


def test_rerun_is_a_noop(finished: PipelineRun) -> None:
    """A second run of the same config commits nothing new and writes the same manifest bytes."""
    work = _work(finished)
    before = {p: p.stat().st_mtime_ns for p in work.rglob("_stage.json")}
    again = execute(work.parent / "curate.toml", local=True)
    assert {p: p.stat().st_mtime_ns for p in work.rglob("_stage.json")} == before
    assert again.manifest_path.read_bytes() == finished.manifest_path.read_bytes()


def test_stage_commands_reuse_what_run_committed(
    finished: PipelineRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """`curate dedup|embed|score|plan WORK` after `curate run` on the same work dir are no-ops that print
    the run's outputs (same step keys, no new _stage.json)."""
    from curate.cli import main

    work = _work(finished)
    before = set(work.rglob("_stage.json"))
    for command in ("dedup", "embed", "score", "plan"):
        assert main([command, str(work), "--local"]) == 0, command
    out = capsys.readouterr().out
    assert set(work.rglob("_stage.json")) == before
    assert finished.outputs["score"].key in out.replace("\n", "")


def test_run_reuses_what_stage_commands_committed(tmp_path: Path) -> None:
    """The other way round: ingest and embed run as stage commands first; `execute` then reuses them."""
    from curate.cli import main

    config = write_corpus(tmp_path)
    work = tmp_path / "work"
    sources = [f"--source={n}={tmp_path / n}" for n in ("alpha", "beta", "junk")]
    assert main(["ingest", str(work), *sources, "--local"]) == 0
    cfg_now = json.loads((work / "config.json").read_text())
    cfg_now["embed"]["kind"] = "static"
    (work / "config.json").write_text(json.dumps(cfg_now))
    assert main(["embed", str(work), "--local"]) == 0
    committed = {p.parent.name for p in (work / "embed").glob("*/_stage.json")}
    run = execute(load_config(config), work=work, local=True, until=["embed"])
    assert {run.outputs["embed"].key} == committed


def test_budget_change_reruns_only_the_plan(finished: PipelineRun) -> None:
    """Changing only the budget keeps every step up to the calibrations and reruns the fits and the plan."""
    work = _work(finished)
    cfg = load_config(work.parent / "curate.toml")
    cfg = cfg.model_copy(update={"budget": cfg.budget.model_copy(update={"value": 400})})
    changed = execute(cfg, work=work, local=True)
    same = ("ingest", "dedup", "embed", "score", "calibrate.mixture")
    assert {k: changed.outputs[k].key for k in same} == {k: finished.outputs[k].key for k in same}
    assert all(
        changed.outputs[k].key != finished.outputs[k].key for k in ("fit.mixture", "select", "publish")
    )
    assert changed.manifest.budget.value == 400


def test_glob_matching_nothing_is_an_input_error(tmp_path: Path) -> None:
    """A source glob that matches no file stops the run before any work, naming the source."""
    cfg = write_corpus(tmp_path)
    cfg.write_text(cfg.read_text().replace('"beta/*.jsonl"', '"nowhere/*.jsonl"'))
    with pytest.raises(InputError, match=r"source 'beta': .*nowhere/\*\.jsonl' matches no supported file"):
        execute(cfg, local=True)


def test_target_without_rows_is_an_input_error(tmp_path: Path) -> None:
    """A target whose every row is rejected raises InputError naming it and the reject reasons."""
    cfg = write_corpus(tmp_path)
    (tmp_path / "target" / "part.jsonl").write_text('{"text": ""}\n{"body": "x"}\n')
    with pytest.raises(
        InputError, match=r"source 'target' has no usable rows: 2 read, all rejected \(.*empty_text=1"
    ):
        execute(cfg, local=True)


def test_source_empty_after_dedup_is_an_input_error(tmp_path: Path) -> None:
    """A source made only of copies of another source's documents is reported as empty after dedup."""
    cfg = write_corpus(tmp_path)
    (tmp_path / "zcopy").mkdir()
    (tmp_path / "zcopy" / "part.jsonl").write_text((tmp_path / "alpha" / "part.jsonl").read_text())
    cfg.write_text(
        cfg.read_text().replace('junk = "junk/*.jsonl"', 'junk = "junk/*.jsonl"\nzcopy = "zcopy/*.jsonl"')
    )
    with pytest.raises(InputError, match=r"source 'zcopy' is empty after dedup: every document duplicates"):
        execute(cfg, local=True)


def test_cli_run_prints_the_plan(finished: PipelineRun, capsys: pytest.CaptureFixture[str]) -> None:
    """`curate run CONFIG --local` on a finished run exits 0, printing the weights and where the files are."""
    from curate.cli import main

    config = _work(finished).parent / "curate.toml"
    assert main(["run", str(config), "--local"]) == 0
    out = capsys.readouterr().out
    assert str(finished.manifest_path) in out.replace("\n", "")
    for s in finished.manifest.sources:
        assert s.name in out and f"{s.weight:.3f}" in out


@pytest.mark.ray
def test_ray_run_gives_the_local_manifest_byte_for_byte(
    finished: PipelineRun, tmp_path: Path, ray_runtime: None
) -> None:
    """The same config run from scratch on Ray gives the in-process manifest byte for byte, and the steps
    record Ray tasks (the dedup shuffles among them)."""
    config = _work(finished).parent / "curate.toml"
    on_ray = execute(config, work=tmp_path / "work")
    assert on_ray.manifest_path.read_bytes() == finished.manifest_path.read_bytes()
    dedup = json.loads((on_ray.outputs["dedup.text"].path / "_stage.json").read_text())
    assert dedup["run_by"]["executor"] == "ray" and dedup["run_by"]["tasks"] > 0


def test_noise_calibration_falls_back_to_best_grid(finished: PipelineRun, tmp_path: Path) -> None:
    """Calibration metrics that are pure noise make Projektor lose to the mean predictor: the plan takes
    the best calibrated mixture, warns, and the manifest says why."""
    work = tmp_path / "work"
    shutil.copytree(_work(finished), work)
    calib = work / "calibrate.mixture" / finished.outputs["calibrate.mixture"].key / "runs.parquet"
    runs = pl.read_parquet(calib)
    noise = pl.Series(np.random.default_rng(0).normal(0.0, 0.5, runs.height))
    runs = runs.with_columns(metric=pl.col("metric").mean() + noise)
    runs.write_parquet(calib)
    for step in ("fit.mixture", "prune", "calibrate.quality", "fit.quality", "select", "predict", "publish"):
        shutil.rmtree(work / step, ignore_errors=True)
    with pytest.warns(FitWarning) as record:
        again = execute(load_config(_work(finished).parent / "curate.toml"), work=work, local=True)
    assert any("is worse than the mean predictor" in str(w.message) for w in record)
    top = runs.filter(pl.col("n") == runs["n"].max())
    best = top.row(int(np.argmin(top["metric"].to_numpy())), named=True)
    assert again.manifest.weights() == pytest.approx({s.name: best[s.name] for s in again.manifest.sources})
    assert again.manifest.prediction is not None
    assert "fallback: " in again.manifest.prediction.method

"""The ingest, report and demo subcommands: tables and JSON on success, exit 2 with one line on bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import polars as pl
import pytest

from curate.cli import main
from curate.errors import FitWarning
from curate.manifest import MixtureManifest


@pytest.fixture
def src(tmp_path: Path, wiki_docs: pl.DataFrame) -> Path:
    """A folder with one JSONL shard of 40 real docs plus two bad lines."""
    folder = tmp_path / "src"
    folder.mkdir()
    lines = [json.dumps(r) for r in wiki_docs.select("text", "label").head(40).to_dicts()]
    (folder / "a.jsonl").write_text("\n".join([*lines, "{oops", '{"text": ""}']) + "\n")
    return folder


def test_ingest_then_report_json(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`curate ingest --local` prints the table; `curate report --json` gives the same counts as JSON."""
    work = tmp_path / "work"
    assert main(["ingest", str(work), "--source", f"wiki={src}", "--label-field", "label", "--local"]) == 0
    table = capsys.readouterr().out
    assert "wiki" in table and "total" in table and "bad_json" in table
    assert main(["report", str(work), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    wiki = data["sources"]["wiki"]
    assert (wiki["rows_read"], wiki["documents"], wiki["rejected"]) == (42, 40, 2)
    assert wiki["rejected_by_reason"] == {"bad_json": 1, "empty_text": 1}
    assert data["totals"]["rows_read"] == 42


def test_ingest_on_ray_joins_the_running_runtime(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], ray_runtime: None
) -> None:
    """Without --local the CLI runs on Ray and reports the same counts."""
    assert main(["ingest", str(tmp_path / "w"), "--source", f"wiki={src}"]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "w"), "--json"]) == 0
    wiki = json.loads(capsys.readouterr().out)["sources"]["wiki"]
    assert (wiki["rows_read"], wiki["documents"], wiki["rejected"]) == (42, 40, 2)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["ingest", "{work}", "--source", "nameonly", "--local"], "--source must look like NAME=GLOB"),
        (
            ["ingest", "{work}", "--source", "a={src}", "--source", "a={src}", "--local"],
            "names must be unique",
        ),
        (["ingest", "{work}", "--source", "a={src}/missing/*.jsonl", "--local"], "matches no supported file"),
        (["ingest", "{work}", "--source", "a={src}", "--max-chars", "0", "--local"], "'max_chars' parameter"),
        (["report", "{work}"], "holds no run yet"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], match: str
) -> None:
    """Bad arguments, missing paths and bad values print one error line (no traceback) and exit 2."""
    filled = [a.format(work=tmp_path / "work", src=src) for a in argv]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert match in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"curate {argv[0]}: error:")


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing required option is an argparse error: exit 2 and a short message, no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "somewhere"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "the following arguments are required: --source" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "command", ["ingest", "dedup", "embed", "score", "plan", "mix", "run", "demo", "report"]
)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`curate <command> --help` exits 0 and describes the command's arguments."""
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: curate" in capsys.readouterr().out


def test_demo_builds_ingests_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`curate demo --local` runs the chain on five sources without a warning; the degraded one is rejected
    and gets no weight; Projektor beats the mean predictor on held-out mixtures with sane coefficients."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        assert main(["demo", "--work", str(tmp_path), "--local"]) == 0
    assert "web" in capsys.readouterr().out
    (manifest_path,) = tmp_path.rglob("manifest.json")
    manifest = MixtureManifest.from_json(manifest_path.read_text())
    weights = {s.name: s.weight for s in manifest.sources}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["web"] == 0.0 and max(weights, key=weights.__getitem__) != "web"
    assert manifest.prediction is not None and "fallback" not in manifest.prediction.method
    (record_path,) = (tmp_path / "fit.mixture").rglob("record.json")
    fit = json.loads(record_path.read_text())
    assert fit["fallback"] is None and fit["holdout_mae"] < fit["mean_mae"]
    mixture_law = {
        k: v for k, v in fit["law"]["params"].items() if k not in ("alpha", "n0") and k[:3] != "w.n"
    }
    assert max(abs(v) for v in mixture_law.values()) < 100  # the size law's n0 is in tokens
    assert main(["report", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["sources"]) == {"bbc", "sotu", "web", "wiki_en", "wiki_fr"}
    for counts in data["sources"].values():
        assert counts["rows_read"] == counts["documents"] + counts["rejected"]
    web = data["sources"]["web"]
    assert web["rejected_by_reason"] == {
        "bad_encoding": 1,
        "bad_json": 4,
        "empty_text": 3,
        "missing_field": 2,
        "not_string": 2,
    }
    assert data["duplicates"]["web"]["n_exact"] > 0
    assert data["sources"]["wiki_en"]["documents"] == 1000
    suffixes = {p.name.split(".", 1)[-1] for p in (tmp_path / "corpus").rglob("*.*")}
    assert {"jsonl.zst", "jsonl.gz", "csv", "txt", "jsonl"} <= suffixes

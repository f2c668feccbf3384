"""Hostile input: random shards, zero-byte files, symlink loops, odd file names, configs, bad manifests.

Nothing crashes, nothing is lost (rows read = documents + rejects), every error and reject names its cause.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.cli import main
from curate.config import load_config
from curate.errors import ConfigError, InputError, ManifestError, UnreadableFileWarning
from curate.ingest import ingest_sources
from curate.io import parquet_files
from curate.manifest import MixtureManifest
from curate.schema import REJECT_REASONS
from tests.strategies import JSON_VALUES, jsonl_shards

MAX_CHARS = 1_000_000


def _expected_documents(body: bytes) -> int:
    """Independent count of the lines ingest must keep: a JSON object whose 'text' is a non-blank str."""
    kept = 0
    for line in body.split(b"\n"):
        try:
            rec = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):
            continue
        text = rec.get("text") if isinstance(rec, dict) else None
        if isinstance(text, str) and text.strip(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f") and len(text) <= MAX_CHARS:
            try:
                line.decode("utf-8").encode("utf-8")
                json.dumps(rec, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                continue
            kept += 1
    return kept


def _check_accounting(work: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    (stage,) = [p for p in (work / "ingest").iterdir() if (p / "_stage.json").is_file()]
    docs = pl.read_parquet([str(p) for p in parquet_files(stage)])
    reject_files = parquet_files(stage / "rejects")
    rejects = pl.read_parquet([str(p) for p in reject_files]) if reject_files else pl.DataFrame()
    counts = json.loads((stage / "_stage.json").read_text())["sources"]
    for name, c in counts.items():
        assert c["rows_read"] == c["documents"] + c["rejected"], name
    assert docs.height == sum(c["documents"] for c in counts.values())
    assert rejects.height == sum(c["rejected"] for c in counts.values())
    if rejects.height:
        assert set(rejects["reason"]) <= set(REJECT_REASONS)
        assert rejects["detail"].str.len_chars().min() > 0  # every reject says why
    assert docs["doc_id"].n_unique() == docs.height
    return docs, rejects, counts


@settings(max_examples=25)
@given(bodies=jsonl_shards())
def test_random_shards_never_crash_and_account_for_every_row(
    tmp_path_factory: pytest.TempPathFactory, bodies: list[bytes]
) -> None:
    """Random bytes, random and deeply nested JSON, huge lines, empty files: each row a doc or a reject."""
    root = tmp_path_factory.mktemp("random")
    for i, body in enumerate(bodies):
        (root / "src" / f"{i}.jsonl").parent.mkdir(exist_ok=True)
        (root / "src" / f"{i}.jsonl").write_bytes(body)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ingest_sources({"s": str(root / "src")}, root / "work", max_chars=MAX_CHARS)
    # an unreadable shard may warn (its rows are asserted through the counts); nothing else may
    others = [str(w.message) for w in caught if not issubclass(w.category, UnreadableFileWarning)]
    assert others == []
    docs, _, counts = _check_accounting(root / "work")
    assert counts["s"]["documents"] == sum(_expected_documents(b) for b in bodies)
    assert docs.height == counts["s"]["documents"]


def test_random_shards_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The CLI ingests a hostile folder (bytes, nesting, a huge line, an empty file) and exits 0."""
    src = tmp_path / "src"
    src.mkdir()
    noise = bytes(b for b in range(256) if b != 10) * 3
    (src / "bytes.jsonl").write_bytes(noise + b"\n" + b'{"text": "fine"}\n')
    (src / "nested.jsonl").write_bytes(b"[" * 200_000 + b"]" * 200_000 + b"\n" + b'{"text": "ok"}\n')
    (src / "huge.jsonl").write_bytes(json.dumps({"text": "y" * 1_500_000}).encode() + b"\n")
    (src / "empty.jsonl").write_bytes(b"")
    rc = main(["ingest", str(tmp_path / "work"), "--source", f"s={src}", "--local"])
    assert rc == 0, capsys.readouterr().err
    docs, rejects, counts = _check_accounting(tmp_path / "work")
    assert sorted(docs["text"]) == ["fine", "ok"]
    assert counts["s"]["rows_read"] == 5
    reasons = dict(zip(rejects["origin"], rejects["reason"], strict=True))
    assert reasons["huge.jsonl:1"] == "too_long"
    assert reasons["nested.jsonl:1"] == "bad_json"


def test_zero_byte_files_only_commit_an_empty_source(tmp_path: Path) -> None:
    """A source of zero-byte shards reads 0 rows and commits 0 documents, not an error."""
    (tmp_path / "src").mkdir()
    for i in range(3):
        (tmp_path / "src" / f"{i}.jsonl").write_bytes(b"")
    report = ingest_sources({"s": str(tmp_path / "src")}, tmp_path / "work")
    _, _, counts = _check_accounting(tmp_path / "work")
    assert counts["s"]["rows_read"] == counts["s"]["documents"] == 0
    assert report.sources.height == 1


def test_symlink_loops_are_unreadable_files_not_hangs(tmp_path: Path) -> None:
    """A file symlink loop is an 'unreadable_file' reject naming the cause; a folder loop ends the walk."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "good.jsonl").write_text('{"text": "kept"}\n')
    os.symlink(src / "b.jsonl", src / "a.jsonl")
    os.symlink(src / "a.jsonl", src / "b.jsonl")
    os.symlink(src, src / "sub" / "up")  # a folder loop
    with pytest.warns(UnreadableFileWarning, match=r"[ab]\.jsonl"):
        ingest_sources({"s": str(src)}, tmp_path / "work")
    docs, rejects, _ = _check_accounting(tmp_path / "work")
    assert docs["text"].to_list() == ["kept"]
    loops = rejects.filter(pl.col("reason") == "unreadable_file")
    assert sorted(o.split(":")[0] for o in loops["origin"]) == ["a.jsonl", "b.jsonl"]
    assert loops["detail"].str.contains("symbolic links").all()


def test_non_utf8_file_names_are_ingested_with_a_readable_origin(tmp_path: Path) -> None:
    """A shard whose name is not UTF-8 is read; its origin escapes the bad byte instead of crashing."""
    src = tmp_path / "src"
    src.mkdir()
    name = os.fsdecode(b"caf\xe9.jsonl")
    (src / name).write_text('{"text": "bonjour"}\n')
    ingest_sources({"s": str(src)}, tmp_path / "work")
    docs, _, _ = _check_accounting(tmp_path / "work")
    assert docs["text"].to_list() == ["bonjour"]
    assert docs["origin"][0].startswith("caf") and docs["origin"][0].endswith(".jsonl:1")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../escape", "source name '../escape'"),
        ("a/b", "source name 'a/b'"),
        (".hidden", "source name '.hidden'"),
    ],
)
def test_source_names_cannot_escape_the_work_dir(tmp_path: Path, name: str, match: str) -> None:
    """Source names become folder and prefix names, so path-like names are ConfigErrors."""
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ConfigError, match=match.replace("'", "['\"]?")):
        ingest_sources({name: str(tmp_path / "a.jsonl")}, tmp_path / "work")
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("_stage.json"))


# ------------------------------------------------------------------------------------------------------
# Hostile configs (curate.config) and malformed manifests (curate.manifest).

_BASE = '[sources]\nwiki = "data/*.jsonl"\n[target]\npath = "t/*.jsonl"\n'


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ('[sources]\n"../../etc" = "x"\n[target]\npath = "t"\n', r"source names must match"),
        ('base_dir = "/"\n' + _BASE, r"config key 'base_dir' is not allowed"),
        (_BASE + "[dedup]\nnum_perm = 1000000000\n", r"config key 'dedup\.num_perm'"),
        (_BASE + "[dedup]\nfuzzy_threshold = 1e300\n", r"config key 'dedup\.fuzzy_threshold'"),
        (_BASE + "[score]\nn_buckets = 1000000\n", r"config key 'score\.n_buckets'"),
        ("seed = -1\n" + _BASE, r"config key 'seed'"),
        (_BASE + "[ray]\naddress = 5\n", r"config key 'ray\.address'"),
        (_BASE + "[embed]\nkind = \"__import__('os')\"\n", r"config key 'embed\.kind'"),
        ("[sources\n", r"is not valid TOML"),
        pytest.param(
            _BASE + "[ray]\nbatch_size = 1000000000000\n",
            r"config key 'ray\.batch_size'",
        ),
        pytest.param(
            _BASE + "[proxy]\nn_mixtures = 1000000000\n",
            r"config key 'proxy\.n_mixtures'",
        ),
    ],
)
def test_hostile_configs_raise_config_errors_naming_the_key(tmp_path: Path, extra: str, match: str) -> None:
    """Traversal names, injected keys, absurd sizes, code in strings, bad TOML: ConfigError naming the key."""
    path = tmp_path / "curate.toml"
    path.write_text(extra)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_config_strings_are_never_executed(tmp_path: Path) -> None:
    """A config whose string values hold Python code loads as plain strings; the code does not run."""
    canary = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(canary)!r}).touch()"
    path = tmp_path / "curate.toml"
    path.write_text(f'[sources]\nwiki = "{code}"\n[target]\npath = "{code}"\n[embed]\ncache_dir = "{code}"\n')
    config = load_config(path)
    assert config.sources["wiki"].path == code
    assert not canary.exists()


@settings(max_examples=40)
@given(value=JSON_VALUES | st.text(max_size=40) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_malformed_manifests_raise_manifest_errors(value: object) -> None:
    """Random JSON values and non-JSON text never load as a manifest: ManifestError, never another crash."""
    text = value if isinstance(value, str) else json.dumps(value)
    with pytest.raises(ManifestError):
        MixtureManifest.from_json(text)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{", r"not valid JSON"),
        ("[]", r"must be a JSON object; got list"),
        ('{"schema_version": 99}', r"'schema_version' is 99, newer"),
        ('{"schema_version": 1, "sources": "x"}', r"manifest field '\w+'"),
        ('{"schema_version": 1e999}', r"manifest field '\w+'"),
    ],
)
def test_malformed_manifest_errors_name_the_field(text: str, match: str) -> None:
    """Each malformed manifest names what is wrong."""
    with pytest.raises(ManifestError, match=match):
        MixtureManifest.from_json(text)


def test_manifest_reader_names_a_missing_file(tmp_path: Path) -> None:
    """Reading a manifest that does not exist is a CurateError naming the path, not a bare OSError."""
    from curate.manifest import read_manifest

    with pytest.raises((ManifestError, InputError), match=r"nope\.json"):
        read_manifest(tmp_path / "nope.json")

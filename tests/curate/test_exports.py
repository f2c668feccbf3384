"""Exports: each format is parsed back by its own library or checked against its documented rules."""

from __future__ import annotations

import json
import shlex
import warnings
from pathlib import Path

import polars as pl
import pytest

from curate.errors import ManifestError, SchemaError
from curate.exports import (
    check_selection,
    file_sha256,
    hf_interleave,
    megatron_data_path,
    mosaic_streams,
    olmo_source_mixture,
    write_exports,
    write_selection,
)
from curate.manifest import Budget, MixtureManifest
from tests.curate.test_manifest import make_manifest


def _selection() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "doc_id": ["wiki-2", "bbc-1", "wiki-1"],
            "source": ["wiki", "bbc", "wiki"],
            "weight": [0.3, 0.375, 0.325],
            "repeats": [1, 3, 2],
        }
    )


def test_megatron_blend_parses_with_megatron_core() -> None:
    """megatron.core's own get_blend_from_list reads back our prefixes and weights; importing it warns only
    that Apex / Transformer Engine are absent and of its own and torch.jit's deprecations."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from megatron.core.datasets.utils import get_blend_from_list
    for w in caught:
        absent = w.category is UserWarning and "Transformer Engine and Apex are not installed" in str(
            w.message
        )
        deprecated = w.category is DeprecationWarning and any(
            part in w.filename for part in ("/megatron/", "/torch/jit/")
        )
        assert absent or deprecated, (w.category, w.filename, str(w.message))

    text = megatron_data_path(make_manifest(), data_root="/data/mix/")
    prefixes, weights = get_blend_from_list(shlex.split(text))
    assert prefixes == ["/data/mix/wiki", "/data/mix/bbc"]
    assert weights == [0.625, 0.375]


def test_hf_interleave_probabilities_drive_datasets() -> None:
    """datasets.interleave_datasets accepts the exported probabilities and samples sources in that ratio."""
    import datasets

    m = make_manifest({"wiki": 0.8, "bbc": 0.2})
    spec = hf_interleave(m)
    parts = {name: datasets.Dataset.from_dict({"src": [name] * 2000}) for name in spec["datasets"]}
    mixed = datasets.interleave_datasets(
        [parts[n] for n in spec["datasets"]],
        probabilities=spec["probabilities"],
        seed=spec["seed"],
        stopping_strategy="first_exhausted",
    )
    share = mixed["src"].count("wiki") / len(mixed)
    assert spec["probabilities"] == [0.8, 0.2]
    assert share == pytest.approx(0.8, abs=0.03)


def _check_mosaic_streams(streams: list[dict[str, object]]) -> None:
    """Rules of streaming.Stream / StreamingDataset (mosaicml-streaming docs): at most one of proportion,
    repeat, choose per stream, non-negative, and the same kind on every stream."""
    allowed = {"remote", "local", "split", "proportion", "repeat", "choose", "download_retry"}
    kinds = set()
    for s in streams:
        assert set(s) <= allowed, set(s) - allowed
        weighting = [k for k in ("proportion", "repeat", "choose") if k in s]
        assert len(weighting) <= 1
        kinds.add(tuple(weighting))
        for k in weighting:
            assert float(s[k]) >= 0  # type: ignore[arg-type]
    assert len(kinds) == 1


def test_mosaic_streams_follow_stream_rules() -> None:
    """Both stream lists obey the documented Stream rules and carry weights / repeats from the manifest."""
    streams = mosaic_streams(make_manifest(), data_root="s3-local")
    for variant in streams.values():
        _check_mosaic_streams(variant)
    assert [s["proportion"] for s in streams["proportion"]] == [0.625, 0.375]
    assert [s["repeat"] for s in streams["repeat"]] == [1.5, 1.5]
    assert streams["repeat"][0]["local"] == "s3-local/wiki"


def test_olmo_mixture_follows_source_mixture_rules() -> None:
    """OLMo-core SourceMixtureConfig rules: 0 < target_ratio <= 1, ratios sum to 1, repetition >= 1, paths."""
    m = make_manifest()
    mix = olmo_source_mixture(m)
    ratios = [s["target_ratio"] for s in mix["sources"]]
    assert all(0 < r <= 1 for r in ratios)
    assert sum(ratios) == pytest.approx(1.0)
    assert all(s["max_repetition_ratio"] >= 1 and s["paths"] for s in mix["sources"])
    assert "requested_tokens" not in mix  # the budget is in samples
    tokens = MixtureManifest.from_json(m.to_json().replace('"unit": "samples"', '"unit": "tokens"'))
    assert tokens.budget == Budget(unit="tokens", value=240)
    assert olmo_source_mixture(tokens)["requested_tokens"] == 240


def test_zero_weight_sources_are_left_out_of_blends() -> None:
    """A source with weight 0 appears in no blend (OLMo and Megatron reject or mis-handle zero weights)."""
    m = make_manifest({"wiki": 1.0, "bbc": 0.0})
    assert megatron_data_path(m) == "1.0 data/wiki"
    assert hf_interleave(m)["datasets"] == ["wiki"]
    assert [s["source_name"] for s in olmo_source_mixture(m)["sources"]] == ["wiki"]


def test_write_exports_writes_every_file(tmp_path: Path) -> None:
    """write_exports writes all five files; selection.parquet is sorted by doc_id with its sha256 stable."""
    paths = write_exports(make_manifest(), _selection(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    sel = pl.read_parquet(paths["selection"])
    assert sel["doc_id"].to_list() == ["bbc-1", "wiki-1", "wiki-2"]
    assert sel.columns == ["doc_id", "source", "weight", "repeats"]
    assert json.loads(paths["hf"].read_text())["probabilities"] == [0.625, 0.375]
    first = file_sha256(paths["selection"])
    assert write_selection(_selection().reverse(), tmp_path / "again.parquet") == first


def test_selection_must_match_manifest_sources() -> None:
    """A selection with a source the manifest does not weight, or lacking columns, is refused."""
    with pytest.raises(ManifestError, match=r"sources \['bbc', 'wiki'\] do not match .* \['wiki'\]"):
        check_selection(make_manifest({"wiki": 1.0, "bbc": 0.0}), _selection())
    with pytest.raises(SchemaError, match="selection table lacks column"):
        check_selection(make_manifest(), _selection().drop("repeats"))

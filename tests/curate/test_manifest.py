"""MixtureManifest: construction checks, canonical JSON round trip, JSON Schema validation of broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from curate.errors import ManifestError
from curate.manifest import (
    Budget,
    Filter,
    Law,
    MixtureManifest,
    Prediction,
    Provenance,
    Selection,
    SourcePlan,
    manifest_schema,
    read_manifest,
    write_manifest,
)


def make_manifest(weights: dict[str, float] | None = None) -> MixtureManifest:
    """A small valid manifest with two filtered sources."""
    weights = weights or {"wiki": 0.625, "bbc": 0.375}
    return MixtureManifest(
        sources=tuple(
            SourcePlan(
                name=name,
                n_docs=100,
                n_kept=80,
                weight=w,
                repeats=1.5,
                filters=(Filter(score="proto_dist", policy="keep_hard", keep_fraction=0.8, threshold=0.12),),
                buckets=(0, 1),
            )
            for name, w in weights.items()
        ),
        budget=Budget(unit="samples", value=240),
        prediction=Prediction(metric="eval_loss", value=1.25, interval=(1.1, 1.4), method="projektor"),
        laws={"qqt/wiki/0": Law(form="qqt", params={"b": -0.3, "tau": 4.0}, fit_error=0.01)},
        selection=Selection(path="selection.parquet", sha256="ab" * 32),
        provenance=Provenance(
            inputs={"wiki/a.jsonl": "00" * 16}, config={"seed": 0}, code_version="0.1.0", seed=0
        ),
    )


def test_round_trip_is_exact_and_canonical() -> None:
    """from_json(to_json(m)) equals m and re-serialises to the same bytes."""
    m = make_manifest()
    text = m.to_json()
    back = MixtureManifest.from_json(text)
    assert back == m
    assert back.to_json() == text
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_to_json_validates_against_packaged_schema() -> None:
    """The shipped manifest.schema.json is a valid draft 2020-12 schema and accepts to_json output."""
    Draft202012Validator.check_schema(manifest_schema())
    Draft202012Validator(manifest_schema()).validate(json.loads(make_manifest().to_json()))


def test_floats_are_canonicalised_to_12_significant_digits() -> None:
    """Weights differing below the 12th significant digit serialise identically."""
    a = make_manifest({"wiki": 0.6, "bbc": 0.4})
    b = make_manifest({"wiki": 0.6 + 1e-15, "bbc": 0.4 - 1e-15})
    assert a.to_json() == b.to_json()


def _broken(edit: str) -> str:
    data = json.loads(make_manifest().to_json())
    exec(edit, {"d": data})
    return json.dumps(data)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ("d['sources'][1]['weight'] = 'heavy'", r"'sources\[1\]\.weight'"),
        ("d['sources'][0]['colour'] = 'red'", r"'sources\[0\]\.colour' is not a known field"),
        ("d['extra'] = 1", r"'extra' is not a known field"),
        ("del d['budget']['unit']", r"'budget\.unit' is required"),
        ("d['budget']['unit'] = 'bytes'", r"'budget\.unit'"),
        ("d['sources'][0]['filters'][0]['policy'] = 'hardest'", r"'sources\[0\]\.filters\[0\]\.policy'"),
        ("d['selection']['sha256'] = 'xyz'", r"'selection\.sha256'"),
        ("d['sources'][0]['weight'] = 0.9", r"'sources\[\]\.weight' must sum to 1"),
        ("d['sources'][0]['n_kept'] = 101", r"'sources\[0\]\.n_kept' must be <= n_docs"),
        ("d['sources'][1]['name'] = 'wiki'", r"'sources' has duplicate names"),
        ("d['schema_version'] = 2", r"'schema_version' is 2, newer than"),
        ("d['schema_version'] = 0", r"'schema_version'"),
    ],
)
def test_hand_broken_manifest_names_the_field(edit: str, match: str) -> None:
    """A hand-edited manifest with one bad field raises ManifestError naming that field."""
    with pytest.raises(ManifestError, match=match):
        MixtureManifest.from_json(_broken(edit))


def test_not_json_and_not_object() -> None:
    """Text that is not JSON, or not an object, raises ManifestError."""
    with pytest.raises(ManifestError, match="not valid JSON"):
        MixtureManifest.from_json("{")
    with pytest.raises(ManifestError, match="must be a JSON object"):
        MixtureManifest.from_json("[1]")


def test_nan_prediction_is_rejected_at_construction() -> None:
    """A NaN predicted value is refused when the manifest is built, not when it is written."""
    with pytest.raises(ManifestError, match=r"'prediction\.value' must be a finite number"):
        Prediction(metric="loss", value=float("nan"), interval=(0.0, 1.0), method="x")


def test_write_and_read_manifest(tmp_path: Path) -> None:
    """write_manifest then read_manifest gives the same manifest; a broken file names the path."""
    m = make_manifest()
    write_manifest(m, tmp_path / "m.json")
    assert read_manifest(tmp_path / "m.json") == m
    (tmp_path / "bad.json").write_text(_broken("d['budget']['value'] = -3"))
    with pytest.raises(ManifestError, match=r"bad\.json: manifest field 'budget\.value'"):
        read_manifest(tmp_path / "bad.json")


_names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def manifests(draw: st.DrawFn) -> MixtureManifest:
    """Random valid manifests: 1-5 uniquely named sources with weights normalised to 1."""
    names = draw(st.lists(_names, min_size=1, max_size=5, unique=True))
    raw = draw(st.lists(st.integers(1, 1000), min_size=len(names), max_size=len(names)))
    weights = [r / sum(raw) for r in raw]
    sources = []
    for name, w in zip(names, weights, strict=True):
        n_docs = draw(st.integers(0, 10**6))
        filters = draw(
            st.lists(
                st.builds(
                    Filter,
                    score=_names,
                    policy=st.sampled_from(["keep_hard", "keep_easy", "cluster_balanced", "random", "all"]),
                    keep_fraction=st.floats(min_value=1e-3, max_value=1.0),
                    threshold=st.none() | _floats,
                ),
                max_size=2,
            )
        )
        sources.append(
            SourcePlan(
                name=name,
                n_docs=n_docs,
                n_kept=draw(st.integers(0, n_docs)),
                weight=w,
                repeats=draw(st.floats(min_value=0, max_value=100)),
                filters=tuple(filters),
                buckets=tuple(draw(st.lists(st.integers(0, 20), max_size=4))),
            )
        )
    lo = draw(_floats)
    prediction = draw(
        st.none()
        | st.builds(Prediction, metric=_names, value=_floats, interval=st.just((lo, lo + 1.0)), method=_names)
    )
    laws = draw(
        st.dictionaries(
            _names,
            st.builds(
                Law,
                form=_names,
                params=st.dictionaries(_names, _floats, max_size=3),
                fit_error=st.floats(min_value=0, max_value=10),
            ),
            max_size=2,
        )
    )
    return MixtureManifest(
        sources=tuple(sources),
        budget=Budget(unit=draw(st.sampled_from(["tokens", "samples"])), value=draw(st.integers(1, 10**12))),
        prediction=prediction,
        laws=laws,
        selection=Selection(path="selection.parquet", sha256="0" * 64),
        provenance=Provenance(
            inputs=draw(st.dictionaries(_names, _names, max_size=3)),
            config={"seed": draw(st.integers(0, 9))},
            code_version="0.1.0",
            seed=draw(st.integers(0, 2**31)),
        ),
    )


@given(manifests())
def test_round_trip_property(m: MixtureManifest) -> None:
    """Every valid manifest round trips through JSON exactly, schema-valid, with weights summing to 1."""
    text = m.to_json()
    Draft202012Validator(manifest_schema()).validate(json.loads(text))
    back = MixtureManifest.from_json(text)
    assert back == m
    assert back.to_json() == text
    assert sum(back.weights().values()) == pytest.approx(1.0, abs=1e-9)

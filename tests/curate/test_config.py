"""Pipeline config: TOML loading, documented defaults, errors naming the key and the allowed values."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from curate.config import CurateConfig, load_config, parse_config
from curate.errors import ConfigError

DEFAULT_TOML = Path(__file__).parents[2] / "pipelines" / "configs" / "default.toml"
MINIMAL = {"sources": {"wiki": "w/*.jsonl"}, "target": "t/*.jsonl"}


def _flatten(d: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_default_toml_documents_every_key_with_its_default() -> None:
    """default.toml sets every config key (bar the example sources/target) to the model's own default."""
    documented = _flatten(tomllib.loads(DEFAULT_TOML.read_text()))
    defaults = _flatten(parse_config(MINIMAL).dump())
    skip = ("sources.", "target.")
    assert {k for k in documented if not k.startswith(skip)} == {
        k for k in defaults if not k.startswith(skip)
    }
    for key, value in defaults.items():
        if not key.startswith(skip):
            assert documented[key] == value, key


def test_load_config_resolves_globs_from_the_config_folder(tmp_path: Path) -> None:
    """Plain-glob and table sources both load; relative globs resolve against the config's folder."""
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "a.jsonl").write_text("{}\n")
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(
        'seed = 3\n[sources]\nwiki = "w/*.jsonl"\n[sources.bbc]\npath = "b/*.csv"\nlabel_field = "topic"\n'
        '[target]\npath = "w/*.jsonl"\n[budget]\nunit = "tokens"\nvalue = 5000\n'
    )
    cfg = load_config(cfg_path)
    assert cfg.seed == 3 and cfg.budget.unit == "tokens"
    assert cfg.sources["bbc"].label_field == "topic" and cfg.sources["wiki"].text_field == "text"
    assert cfg.resolve(cfg.sources["wiki"].path) == tmp_path.resolve() / "w" / "*.jsonl"
    assert cfg.resolve("/abs/x.csv") == Path("/abs/x.csv")
    assert "base_dir" not in cfg.dump()


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        (
            {"budget": {"unit": "bytes"}},
            r"'budget\.unit': Input should be 'samples' or 'tokens'; got 'bytes'",
        ),
        ({"budget": {"valu": 3}}, r"'budget\.valu' is not allowed; allowed here: unit, value"),
        ({"colour": "red"}, r"'colour' is not allowed; allowed here: seed, sources, target, ingest, budget"),
        (
            {"sources": {"wiki": {"path": "x", "txt": "t"}}},
            r"'sources\.wiki\.txt' is not allowed; .*text_field",
        ),
        ({"target": {"path": "t", "lable_field": "y"}}, r"'target\.lable_field' is not allowed"),
        (
            {"dedup": {"fuzzy_threshold": 1.5}},
            r"'dedup\.fuzzy_threshold': Input should be less than or equal",
        ),
        ({"score": {"policy": "hardest"}}, r"'score\.policy': Input should be 'auto', 'keep_hard'"),
        ({"proxy": {"pilot_sizes": [512, 256]}}, r"'proxy\.pilot_sizes': must be positive and strictly"),
        ({"mixture": {"method": "regmix"}}, r"'mixture\.method': Input should be 'projektor', 'uniform'"),
        ({"ray": {"num_cpus": -1}}, r"'ray\.num_cpus': Input should be greater than or equal to 0"),
        ({"seed": "zero"}, r"'seed': Input should be a valid integer"),
        ({"sources": {}}, r"\[sources\] must name at least one source"),
        ({"sources": {"my source": "x"}}, r"source names must match"),
        ({"score": {"bucket_metric": "target_similarity"}}, r"'score\.bucket_metric': Input should be"),
    ],
)
def test_bad_config_names_key_and_allowed_values(patch: dict[str, object], match: str) -> None:
    """Each bad key or value raises ConfigError naming the dotted key and what is allowed."""
    with pytest.raises(ConfigError, match=match):
        parse_config({**MINIMAL, **patch})


def test_target_is_optional_but_needed_by_the_target_steps(tmp_path: Path) -> None:
    """A config without [target] is valid (the data steps run); a step that needs it names the key."""
    from pipelines.runner import execute

    cfg = parse_config({"sources": {"a": str(tmp_path / "a")}})
    assert cfg.target is None
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jsonl").write_text('{"text": "one document"}\n')
    with pytest.raises(ConfigError, match=r"config key 'target' is required for this step"):
        execute(cfg, work=tmp_path / "work", local=True, until=["ingest.target"])


def test_the_old_score_name_is_an_alias_with_a_warning() -> None:
    """`target_sim` (a distance) still works for one version as `target_dist`, with a FutureWarning."""
    with pytest.warns(FutureWarning, match="'target_sim' is now called 'target_dist'"):
        cfg = parse_config({**MINIMAL, "score": {"bucket_metric": "target_sim"}})
    assert cfg.score.bucket_metric == "target_dist"


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    """Unreadable TOML or a missing file each raise ConfigError naming it."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[budget\nunit=1")
    with pytest.raises(ConfigError, match=r"bad\.toml' is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.toml"):
        load_config(tmp_path / "nope.toml")


def test_config_is_frozen() -> None:
    """A loaded config cannot be mutated (it is hashed into stage keys and provenance)."""
    cfg = parse_config(MINIMAL)
    assert isinstance(cfg, CurateConfig)
    with pytest.raises(ValueError, match="frozen"):
        cfg.seed = 4

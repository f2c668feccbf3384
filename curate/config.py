"""The pipeline config: one TOML file (tomllib) validated by pydantic models that forbid unknown keys.

Every key and its default is documented in pipelines/configs/default.toml. A bad key or value raises
ConfigError naming the dotted key, what is allowed and what came. Globs are relative to the config file.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.errors import ConfigError
from curate.io import PathLike

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SourceConfig(_Section):
    """One input: a glob of shards and the fields holding text and (optional) label."""

    path: str = Field(min_length=1)
    text_field: str = "text"
    label_field: str | None = None


class BudgetConfig(_Section):
    """The training budget: `value` samples or tokens (tokens estimated as ceil(n_chars / 4))."""

    unit: Literal["samples", "tokens"] = "samples"
    value: int = Field(default=10_000, ge=1)


class DedupConfig(_Section):
    """Which dedup passes run and their thresholds (MinHash for fuzzy, SemDeDup eps for semantic)."""

    exact: bool = True
    fuzzy: bool = True
    fuzzy_threshold: float = Field(default=0.8, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16, le=1024)
    ngram: int = Field(default=5, ge=1, le=32)
    semantic: bool = True
    semantic_eps: float = Field(default=0.02, gt=0, lt=1)


class EmbedConfig(_Section):
    """The embedder: static (model2vec) on CPU, MiniLM on GPU, or forced; where the static model is cached."""

    kind: Literal["auto", "minilm", "static"] = "auto"
    batch_size: int = Field(default=256, ge=1, le=65_536)
    cache_dir: str = ""  # "" = the user cache (~/.cache/curate/embedders)


class ScoreConfig(_Section):
    """Scores: which one cuts quality buckets (QQT), which one the pruning policy ranks, what it keeps."""

    bucket_metric: Literal["target_sim", "proto_dist", "difficulty"] = "target_sim"
    prune_metric: Literal["proto_dist", "target_sim", "difficulty"] = "proto_dist"
    n_clusters: int = Field(default=0, ge=0, le=100_000)  # 0 = chosen from the data
    policy: Literal["auto", "keep_hard", "keep_easy", "random", "all"] = "auto"
    balance: Literal["cluster", "class", "none"] = "cluster"
    keep_fraction: float = Field(default=0.8, gt=0, le=1)
    n_buckets: int = Field(default=4, ge=1, le=20)


class ProxyConfig(_Section):
    """Calibration proxy runs: model kind, pilot sizes, epochs and the mixture grid."""

    kind: Literal["probe", "lm"] = "probe"
    pilot_sizes: list[int] = Field(default_factory=lambda: [256, 1024], min_length=2)
    epochs: int = Field(default=6, ge=1, le=1_000)
    hidden: int = Field(default=128, ge=4, le=8_192, multiple_of=4)  # probe hidden width / LM model width
    max_len: int = Field(default=128, ge=8, le=65_536)  # bytes per text the LM reads
    batch_size: int = Field(default=64, ge=1, le=65_536)
    lr: float = Field(default=3e-3, gt=0, le=1)
    n_mixtures: int = Field(default=12, ge=2, le=1_000)
    eval_size: int = Field(default=256, ge=8, le=1_000_000)
    bootstrap: int = Field(default=20, ge=0, le=1_000)  # bootstrap refits of each QQT fit (its intervals)

    @field_validator("pilot_sizes")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(v)) or v[0] < 1:
            raise ValueError(f"must be positive and strictly increasing, got {v}")
        return v


class MixtureConfig(_Section):
    """How source weights are chosen: Projektor (OT-based prediction) or a named baseline."""

    method: Literal["projektor", "uniform", "proportional", "dml", "best_grid"] = "projektor"
    ot_max_points: int = Field(
        default=2000, ge=2, le=1_000_000
    )  # OT subsamples each side above this (fixed seed)


class RayConfig(_Section):
    """Where stages run: an embedded Ray runtime (empty address) or a cluster, and its resources."""

    address: str = ""
    num_cpus: int = Field(default=0, ge=0)  # 0 = every local core (embedded runtime only)
    num_gpus: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=4096, ge=1, le=1_000_000)
    concurrency: int = Field(default=1, ge=1, le=1_024)


class CurateConfig(_Section):
    """The whole pipeline config; `base_dir` (the config file's folder) anchors relative globs."""

    seed: int = Field(default=0, ge=0)
    sources: dict[str, SourceConfig]
    target: SourceConfig
    budget: BudgetConfig = BudgetConfig()
    dedup: DedupConfig = DedupConfig()
    embed: EmbedConfig = EmbedConfig()
    score: ScoreConfig = ScoreConfig()
    proxy: ProxyConfig = ProxyConfig()
    mixture: MixtureConfig = MixtureConfig()
    ray: RayConfig = RayConfig()
    base_dir: str = Field(default=".", exclude=True)

    @field_validator("sources", mode="before")
    @classmethod
    def _plain_globs(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: {"path": s} if isinstance(s, str) else s for k, s in v.items()}
        return v

    @field_validator("target", mode="before")
    @classmethod
    def _plain_target(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _names(self) -> CurateConfig:
        if not self.sources:
            raise ValueError("[sources] must name at least one source")
        bad = [n for n in self.sources if not SOURCE_NAME.match(n)]
        if bad:
            raise ValueError(f"source names must match {SOURCE_NAME.pattern}; got {bad}")
        if self.budget.unit == "samples" and self.budget.value < self.proxy.batch_size:
            raise ValueError(
                f"config key 'budget.value' ({self.budget.value} samples) is smaller than one batch "
                f"(proxy.batch_size = {self.proxy.batch_size})"
            )
        return self

    def resolve(self, pattern: str) -> Path:
        """`pattern` as an absolute path (relative globs are taken from the config file's folder)."""
        p = Path(pattern).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def dump(self) -> dict[str, Any]:
        """JSON-able dict of every key (defaults included), as recorded in manifest provenance."""
        return self.model_dump(mode="json")


def _key(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after", "function-before"))


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed in the table at `loc` (the parent of an unknown key)."""
    model: Any = CurateConfig
    parts = [str(p) for p in loc]
    while parts:
        part = parts.pop(0)
        if model is CurateConfig and part == "sources":
            if not parts:
                return []
            parts.pop(0)  # the source name
            model = SourceConfig
        elif model is CurateConfig and part == "target":
            model = SourceConfig
        else:
            model = model.model_fields[part].annotation
    return [k for k, f in model.model_fields.items() if not f.exclude]


def config_error(exc: ValidationError, *, where: str) -> ConfigError:
    """Translate a pydantic ValidationError into ConfigError sentences naming each dotted key."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _key(loc)
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(loc[:-1])) or "source names"
            lines.append(f"config key '{key}' is not allowed; allowed here: {allowed}.")
        elif err["type"] == "missing":
            lines.append(f"config key '{key}' is required but missing.")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            if key:
                lines.append(f"config key '{key}': {msg}; got {err.get('input')!r}.")
            else:
                lines.append(f"{msg}.")
    return ConfigError(f"{where}: " + " ".join(lines))


def parse_config(data: dict[str, Any], *, base_dir: PathLike = ".", where: str = "config") -> CurateConfig:
    """Validate a config dict (as read from TOML); ConfigError names the bad key and the allowed values."""
    try:
        return CurateConfig.model_validate({**data, "base_dir": str(Path(base_dir).resolve())})
    except ValidationError as exc:
        raise config_error(exc, where=where) from exc


def load_config(path: PathLike) -> CurateConfig:
    """Read and validate a TOML config; globs in it are relative to the file's folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config '{path}': {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config '{path}' is not valid TOML: {exc}") from exc
    if "base_dir" in data:
        raise ConfigError(f"{path}: config key 'base_dir' is not allowed (it is the config file's folder).")
    return parse_config(data, base_dir=path.parent, where=str(path))

"""The pipeline config: one TOML file (tomllib) validated by pydantic models that forbid unknown keys.

Every key and its default is documented in pipelines/configs/default.toml. A bad key or value raises
ConfigError naming the dotted key, what is allowed and what came. Globs are relative to the config file.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.errors import ConfigError
from curate.io import PathLike, write_text

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SourceConfig(_Section):
    """One input: a glob of shards and the fields holding text and (optional) label."""

    path: str = Field(min_length=1)
    text_field: str = "text"
    label_field: str | None = None


class TargetConfig(SourceConfig):
    """The target sample; `holdout` of its rows (by content hash) only score the final prediction."""

    holdout: float = Field(default=0.5, ge=0, lt=1)


class IngestConfig(_Section):
    """Ingest limits: texts longer than `max_chars` characters are rejected as too_long."""

    max_chars: int = Field(default=1_000_000, ge=1, le=1_000_000_000)


class BudgetConfig(_Section):
    """The training budget: `value` samples or tokens (tokens estimated as ceil(n_chars / 4))."""

    unit: Literal["samples", "tokens"] = "tokens"
    value: int = Field(default=2_000_000, ge=1)


class DedupConfig(_Section):
    """Which dedup passes run and their thresholds (MinHash for fuzzy, SemDeDup eps for semantic)."""

    exact: bool = True
    fuzzy: bool = True
    fuzzy_threshold: float = Field(default=0.8, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16, le=1024)
    ngram: int = Field(default=5, ge=1, le=32)
    shingle: Literal["word", "char"] = "word"
    semantic: bool = True
    semantic_eps: float = Field(default=0.05, gt=0, lt=1)  # curate.dedup.semantic.DEFAULT_EPS


class EmbedConfig(_Section):
    """The embedder: static (model2vec) on CPU, MiniLM on GPU, or forced; where the static model is cached."""

    kind: Literal["auto", "minilm", "static"] = "auto"
    batch_size: int = Field(default=256, ge=1, le=65_536)
    cache_dir: str = ""  # "" = the user cache (~/.cache/curate/embedders)


ScoreName = Literal[
    "target_z", "target_dist", "target_ngram", "target_lm", "proto_dist", "class_proto_dist", "difficulty"
]
RENAMED_SCORES = {
    "target_sim": "target_dist"
}  # old name -> new name, accepted (with a warning) for one version


class ScoreConfig(_Section):
    """Scores: which one cuts quality buckets (QQT), which one the pruning policy ranks, what it keeps."""

    bucket_metric: ScoreName = "target_z"
    prune_metric: ScoreName = "proto_dist"
    n_clusters: int = Field(default=0, ge=0, le=100_000)  # 0 = chosen from the data
    fit_rows: int = Field(default=100_000, ge=100, le=10_000_000)  # sample the score statistics are fitted on
    policy: Literal["auto", "keep_hard", "keep_easy", "random", "all"] = "all"
    balance: Literal["cluster", "class", "none"] = "cluster"
    keep_fraction: float = Field(default=0.8, gt=0, le=1)
    n_buckets: int = Field(default=4, ge=1, le=20)

    @field_validator("bucket_metric", "prune_metric", mode="before")
    @classmethod
    def _renamed(cls, v: Any) -> Any:
        if v in RENAMED_SCORES:
            warnings.warn(
                f"score '{v}' is now called '{RENAMED_SCORES[v]}' (it is a distance); the old name will be "
                "refused in the next version.",
                FutureWarning,
                stacklevel=2,
            )
            return RENAMED_SCORES[v]
        return v


class ProxyConfig(_Section):
    """Calibration proxy runs: the proxy model, pilot sizes, repeats and seeds, the mixture grid."""

    # "hybrid": the n-gram LM ranks the mixture design and predicts, the byte LM confirms the best candidates
    # and measures the quality buckets (repetition); "ngram", "lm" or "probe" for every step
    kind: Literal["hybrid", "ngram", "lm", "probe"] = "hybrid"
    order: int = Field(default=3, ge=1, le=4)  # n-gram order of the ngram proxy
    lm_width: int = Field(default=64, ge=8, le=4_096)  # byte LM proxy: model width (4 heads)
    lm_layers: int = Field(default=1, ge=1, le=64)  # byte LM proxy: transformer blocks
    lm_window: int = Field(default=128, ge=8, le=8_192)  # byte LM proxy: bytes read from each document
    lm_lr: float = Field(default=3e-3, gt=0, le=1)  # byte LM proxy: peak learning rate (warmup-stable-decay)
    lm_bucket_rows: int = Field(default=64, ge=3, le=1_000_000)  # documents a bucket's LM run trains on
    lm_eval_size: int = Field(default=100, ge=8, le=1_000_000)  # byte LM proxy: target rows it evaluates on
    confirm: int = Field(default=3, ge=1, le=1_000)  # hybrid: refinement candidates the byte LM measures
    # mixture pilot sizes (documents; in budget units at the pools' mean document size): >= 3, spanning
    # >= 10x, for the stage-2 size law
    pilot_sizes: list[int] = Field(default_factory=lambda: [250, 500, 1000, 2000, 4000], min_length=1)
    repeats: int = Field(default=2, ge=1, le=100)  # proxy runs per (mixture, pilot size)
    seeds: int = Field(default=2, ge=1, le=100)  # proxy runs per quality bucket (and for the prediction)
    bucket_epochs: list[float] = (
        Field(  # passes at which a bucket's curve is measured (the n-gram proxy: <= 1)
            default_factory=lambda: [0.125, 0.25, 0.5, 1.0, 2.0, 4.0], min_length=3
        )
    )
    mixtures_per_source: int = Field(default=6, ge=1, le=1_000)  # random design mixtures per source
    pool_rows: int = Field(default=5_000, ge=10, le=1_000_000)  # proxy pool per source (seeded sample)
    bucket_rows: int = Field(default=1_000, ge=3, le=1_000_000)  # rows a bucket's proxy trains on
    hidden: int = Field(default=128, ge=4, le=8_192)  # probe hidden width
    batch_size: int = Field(default=32, ge=1, le=65_536)  # probe mini-batch
    lr: float = Field(default=0.1, gt=0, le=1)  # probe peak learning rate (decays to 0 at each run's end)
    weight_decay: float = Field(default=0.5, ge=0, le=10)  # probe AdamW weight decay
    eval_size: int = Field(default=500, ge=8, le=1_000_000)
    bootstrap: int = Field(default=20, ge=0, le=1_000)  # bootstrap refits of each QQT fit (its intervals)

    @field_validator("lm_width")
    @classmethod
    def _four_heads(cls, v: int) -> int:
        if v % 4:
            raise ValueError(f"must be a multiple of 4 (the byte LM has 4 attention heads), got {v}")
        return v

    @field_validator("pilot_sizes", "bucket_epochs")
    @classmethod
    def _increasing(cls, v: list[Any]) -> list[Any]:
        if any(b <= a for a, b in itertools.pairwise(v)) or v[0] <= 0:
            raise ValueError(f"must be positive and strictly increasing, got {v}")
        return v

    @field_validator("pilot_sizes")
    @classmethod
    def _spans_10x(cls, v: list[int]) -> list[int]:
        if len(v) < 3 or v[-1] < 10 * v[0]:
            raise ValueError(f"must be >= 3 sizes spanning >= 10x (the size law needs them), got {v}")
        return v


class QualityConfig(_Section):
    """The QQT plan: how a union of buckets repeats (Goyal et al. 2024)."""

    union_rule: Literal["auto", "paper", "shared"] = "auto"  # auto: chosen on held-out union runs


class MixtureConfig(_Section):
    """How source weights are chosen: Projektor (mixture laws projected to the budget) or a baseline."""

    method: Literal["projektor", "uniform", "proportional", "dml", "regression", "best_grid"] = "projektor"
    law: Literal["auto", "dml", "dml2", "dml3", "logsum", "quadratic", "regression", "projektor"] = "auto"
    ot: bool = True  # OT distance of every pilot's own training sample (the 'projektor' law's feature)
    ot_max_points: int = Field(default=2000, ge=2, le=1_000_000)  # OT subsamples each side above this
    max_projection: float = Field(default=5.0, gt=1, le=1_000)  # warn past this multiple of the largest pilot
    probe_steps: int = Field(default=300, ge=1, le=1_000_000)  # probe pilots: at least this many steps
    refine: bool = True  # measure candidates near the law's optimum at the budget (when the pools hold it)


class RayConfig(_Section):
    """Where stages run: an embedded Ray runtime (empty address) or a cluster, and its parallelism."""

    address: str = ""
    num_cpus: int = Field(default=0, ge=0)  # 0 = every local core (embedded runtime only)
    num_gpus: float = Field(default=0.0, ge=0)  # GPUs per model-stage actor
    batch_size: int = Field(default=4096, ge=1, le=1_000_000)
    actors: int = Field(default=0, ge=0, le=1_024)  # model-stage actor pool; 0 = CPUs // cpus_per_actor
    cpus_per_actor: int = Field(default=1, ge=1, le=1_024)  # each actor's torch threads use them all
    max_tasks: int = Field(default=0, ge=0, le=100_000)  # tasks in flight; 0 = every cluster CPU


class CurateConfig(_Section):
    """The whole pipeline config; `base_dir` (the config file's folder) anchors relative globs."""

    seed: int = Field(default=0, ge=0)
    sources: dict[str, SourceConfig]
    target: TargetConfig | None = None
    ingest: IngestConfig = IngestConfig()
    budget: BudgetConfig = BudgetConfig()
    dedup: DedupConfig = DedupConfig()
    embed: EmbedConfig = EmbedConfig()
    score: ScoreConfig = ScoreConfig()
    proxy: ProxyConfig = ProxyConfig()
    quality: QualityConfig = QualityConfig()
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
        return self

    def resolved(self) -> CurateConfig:
        """The same config with every source and target glob made absolute (it no longer needs base_dir)."""
        sources = {
            n: s.model_copy(update={"path": str(self.resolve(s.path))}) for n, s in self.sources.items()
        }
        target = (
            None
            if self.target is None
            else self.target.model_copy(update={"path": str(self.resolve(self.target.path))})
        )
        return self.model_copy(update={"sources": sources, "target": target})

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
            model = TargetConfig
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


WORK_CONFIG = "config.json"


def save_work_config(cfg: CurateConfig, work: PathLike) -> Path:
    """Record `cfg` (globs made absolute) as the work dir's config, which stage commands start from."""
    path = Path(work) / WORK_CONFIG
    write_text(path, json.dumps(cfg.resolved().dump(), indent=2, sort_keys=True) + "\n")
    return path


def load_work_config(work: PathLike) -> CurateConfig | None:
    """The config recorded in `work` by the last run or stage command, or None when there is none."""
    path = Path(work) / WORK_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the work dir's config '{path}': {exc}") from exc
    return parse_config(data, base_dir=Path(work), where=str(path))

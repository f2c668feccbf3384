"""Shared fixtures: real corpora samples, one Ray runtime per session, both executors, Hypothesis profile."""

from __future__ import annotations

import os
from collections.abc import Iterator

import polars as pl
import pytest
from hypothesis import HealthCheck, settings

from curate import corpora
from curate.stages import Executor, LocalExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

settings.register_profile(
    "curate", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("curate")


@pytest.fixture(scope="session")
def wiki_docs() -> pl.DataFrame:
    """300 real Wikipedia summaries (en, labelled topics), fixed sample."""
    return corpora.wiki(300, labelled_only=True, seed=0)


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[None]:
    """One embedded Ray runtime for the whole session (2 CPUs), shut down at the end."""
    from pipelines.runtime import init_ray, shutdown_ray

    init_ray(None, num_cpus=2)
    yield
    shutdown_ray()


@pytest.fixture(params=["local", "ray"])
def executor(request: pytest.FixtureRequest) -> Executor:
    """Every stage test runs on both executors."""
    if request.param == "ray":
        request.getfixturevalue("ray_runtime")
        from pipelines.ray_executor import RayExecutor

        return RayExecutor(batch_size=64)
    return LocalExecutor(batch_size=64)

"""A local two-node Ray cluster (head + one worker node, 1 CPU each) shared by the cluster and fault tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def local_ray_cluster() -> Iterator[object]:
    """`start_local_cluster(workers=1)`; every node process is killed at the end, pass or fail."""
    from pipelines.cluster import start_local_cluster

    cluster = start_local_cluster(workers=1, num_cpus=1)
    try:
        yield cluster
    finally:
        cluster.stop()

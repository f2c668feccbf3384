"""`curate ingest --address` on a local two-node Ray cluster writes what an embedded Ray run writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate.errors import ConfigError
from curate.ingest import ingest_sources
from curate.io import parquet_files
from pipelines.cluster import LocalCluster, start_local_cluster

pytestmark = pytest.mark.ray

# A driver process on the cluster: checks the nodes, spreads probe tasks, then runs the CLI against it.
_DRIVER = """
import json, sys
import ray
from curate.cli import main
from pipelines.runtime import init_ray

address, work, src = sys.argv[1:4]
init_ray(address)
nodes = [n for n in ray.nodes() if n["Alive"]]

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

@ray.remote(num_cpus=1)
def where() -> str:
    return ray.get_runtime_context().get_node_id()

pinned = [NodeAffinitySchedulingStrategy(n["NodeID"], soft=False) for n in nodes]
ran_on = sorted(ray.get([where.options(scheduling_strategy=s).remote() for s in pinned]))
rc = main(["ingest", work, "--source", f"s={src}", "--label-field", "label", "--address", address])
info = {
    "rc": rc,
    "nodes": [n["NodeID"] for n in nodes],
    "stores": [n["Resources"].get("object_store_memory", 0) for n in nodes],
    "ran_on": ran_on,
}
print("RESULT " + json.dumps(info))
"""


def _shards(src: Path, docs: pl.DataFrame) -> None:
    """Eight JSONL shards of real docs, with one broken line, one missing text and one empty text each."""
    src.mkdir()
    rows = docs.select("text", "label").to_dicts()
    for i in range(8):
        lines = [json.dumps(r) for r in rows[i * 25 : (i + 1) * 25]]
        lines += ['{"text": "unterminated', '{"label": "no text"}', '{"text": "   "}']
        (src / f"part-{i}.jsonl").write_text("\n".join(lines) + "\n")


def _outputs(work: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    (stage,) = [p for p in (work / "ingest").iterdir() if (p / "_stage.json").is_file()]
    docs = pl.read_parquet([str(p) for p in parquet_files(stage)]).sort("doc_id")
    rejects = pl.read_parquet(str(stage / "rejects")).sort("origin")
    return docs, rejects, json.loads((stage / "_stage.json").read_text())["sources"]


def run_driver(cluster: LocalCluster, work: Path, src: Path) -> dict:
    """Run `_DRIVER` as its own process on `cluster`; its parsed RESULT line (fails with its stderr)."""
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, cluster.address, str(work), str(src)],
        env=cluster.driver_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_cli_ingest_on_two_nodes_equals_embedded_ray(
    local_ray_cluster: LocalCluster, tmp_path: Path, wiki_docs: pl.DataFrame, ray_runtime: None
) -> None:
    """Two nodes, each with its own object store, run the tasks; outputs equal an embedded Ray run's."""
    from pipelines.ray_executor import RayExecutor

    src = tmp_path / "src"
    _shards(src, wiki_docs)
    info = run_driver(local_ray_cluster, tmp_path / "cluster", src)
    assert info["rc"] == 0
    assert len(info["nodes"]) == 2
    assert all(store >= 80 * 1024**2 for store in info["stores"])  # one object store per node
    assert info["ran_on"] == sorted(info["nodes"])  # each node runs tasks (pinned probes)
    ingest_sources({"s": str(src)}, tmp_path / "embedded", label_field="label", executor=RayExecutor())
    got, want = _outputs(tmp_path / "cluster"), _outputs(tmp_path / "embedded")
    assert_frame_equal(got[0], want[0])
    assert_frame_equal(got[1], want[1])
    assert got[2] == want[2]
    assert got[0].height == 200
    assert got[2]["s"]["rows_read"] == got[2]["s"]["documents"] + got[2]["s"]["rejected"] == 224


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"workers": -1}, r"'workers' parameter of start_local_cluster\(\)"),
        ({"num_cpus": 0}, r"'num_cpus' parameter of start_local_cluster\(\)"),
        ({"object_store_bytes": 1024}, r"'object_store_bytes' parameter of start_local_cluster\(\)"),
    ],
)
def test_start_local_cluster_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    """Bad sizes raise ConfigError naming the parameter before any process starts."""
    with pytest.raises(ConfigError, match=match):
        start_local_cluster(**kwargs)


def test_cluster_token_file_is_private_and_nodes_are_separate_processes(
    local_ray_cluster: LocalCluster,
) -> None:
    """The auth token is mode 0600 and each node is its own live process group."""
    token = Path(local_ray_cluster.env["RAY_AUTH_TOKEN_PATH"])
    assert token.stat().st_mode & 0o777 == 0o600
    assert local_ray_cluster.env["RAY_AUTH_MODE"] == "token"
    pids = [node.proc.pid for node in local_ray_cluster.nodes]
    assert len(set(pids)) == 2 and all(node.alive for node in local_ray_cluster.nodes)

"""A local multi-node Ray cluster: a head and worker nodes started with `ray start` as separate processes.

Each node is its own `ray start --block` process group (raylet, object store, workers), so killing a node is
one `killpg`. Used by the cluster and fault tests and by bench/scale.py; `python -m pipelines.cluster` starts
one for a user and prints the address and the environment a driver needs.

Security: the dashboard is off and no Ray Client server runs. Ray's gRPC servers (GCS, raylet, object manager)
listen on every interface and Ray 2.x has no option to change that, so every node and driver of the cluster
runs with token authentication (`RAY_AUTH_MODE=token`) and a fresh 256-bit token in a 0600 file of the
cluster's temp dir: a process without the token cannot join or submit work.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from curate._validation import check_interval
from curate.errors import ConfigError, StageError

MIN_OBJECT_STORE = 80 * 1024**2  # Ray refuses object stores below 75 MiB
_RAY = str(Path(sys.executable).with_name("ray"))
_WAIT_FOR_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
deadline = time.monotonic() + float(sys.argv[3])
while sum(n["Alive"] for n in ray.nodes()) < int(sys.argv[2]):
    if time.monotonic() > deadline:
        sys.exit(f"only {sum(n['Alive'] for n in ray.nodes())} of {sys.argv[2]} nodes joined")
    time.sleep(0.2)
"""


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One `ray start --block` process and its log file; `proc.pid` is also its process-group id."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        """Whether the node's `ray start` process still runs."""
        return self.proc.poll() is None


@dataclass
class LocalCluster:
    """A running local cluster: its address, the environment drivers need, and its nodes (head first)."""

    address: str
    temp_dir: Path
    env: dict[str, str]
    num_cpus: int
    object_store_bytes: int
    nodes: list[Node] = field(default_factory=list)

    def driver_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a driver process joining this cluster (address and auth token included)."""
        return {**(os.environ if base is None else base), **self.env, "RAY_ADDRESS": self.address}

    def add_worker(self, *, timeout: float = 120.0) -> Node:
        """Start one more worker node and wait until the cluster counts it as alive."""
        node = _start_node(self, head=False)
        self.nodes.append(node)
        self.wait_for_nodes(sum(n.alive for n in self.nodes), timeout=timeout)
        return node

    def wait_for_nodes(self, n: int, *, timeout: float = 120.0) -> None:
        """Block until `n` nodes are alive in the cluster; StageError naming the logs otherwise."""
        done = subprocess.run(
            [sys.executable, "-c", _WAIT_FOR_NODES, self.address, str(n), str(timeout)],
            env=self.driver_env(),
            capture_output=True,
            text=True,
            timeout=timeout + 60,
            check=False,
        )
        if done.returncode != 0:
            logs = ", ".join(str(node.log) for node in self.nodes)
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StageError(
                f"local Ray cluster at {self.address} did not reach {n} nodes: {tail[0]} (logs: {logs})"
            )

    def kill_node(self, index: int, *, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to every process of node `index` (0 = head) and wait for its `ray start` to exit."""
        node = self.nodes[index]
        _signal_group(node, sig)
        try:
            node.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(node, signal.SIGKILL)
            node.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 15 s) and delete the cluster's temp dir."""
        for node in reversed(self.nodes):
            _signal_group(node, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for node in reversed(self.nodes):
            with suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            _signal_group(node, signal.SIGKILL)  # stragglers in the group (workers, agents)
            if node.proc.poll() is None:
                node.proc.wait(timeout=30)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _signal_group(node: Node, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(node.proc.pid, sig)


def _start_node(cluster: LocalCluster, *, head: bool) -> Node:
    index = len(cluster.nodes)
    name = "head" if head else f"worker-{index}"
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    args = [
        _RAY,
        "start",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cluster.num_cpus}",
        "--num-gpus=0",
        f"--object-store-memory={cluster.object_store_bytes}",
        "--disable-usage-stats",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    if head:
        port = cluster.address.rsplit(":", 1)[1]
        args += ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={cluster.temp_dir}"]
    else:
        args += [f"--address={cluster.address}"]
    log = cluster.temp_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args,
            env={**os.environ, **cluster.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: kill_node / stop reach the raylet and its workers
        )
    return Node(name, proc, log)


def start_local_cluster(
    *,
    workers: int = 1,
    num_cpus: int = 1,
    object_store_bytes: int = 128 * 1024**2,
    timeout: float = 180.0,
) -> LocalCluster:
    """Start a head plus `workers` worker nodes on this machine (`num_cpus` each) and wait until all joined.

    The caller owns the cluster: call `stop()` (or use `local_cluster()`), which kills every node process.
    """
    check_interval("workers", workers, 0, 64, caller="start_local_cluster")
    check_interval("num_cpus", num_cpus, 1, 256, caller="start_local_cluster")
    check_interval(
        "object_store_bytes", object_store_bytes, MIN_OBJECT_STORE, None, caller="start_local_cluster"
    )
    if not Path(_RAY).is_file():
        raise ConfigError(
            f"start_local_cluster() needs the 'ray' command beside {sys.executable}; it is missing."
        )
    temp_dir = Path(
        tempfile.mkdtemp(prefix="curate-ray-", dir="/tmp")
    )  # short: Ray's socket paths are limited
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cluster = LocalCluster(f"127.0.0.1:{free_port()}", temp_dir, env, num_cpus, object_store_bytes)
    try:
        cluster.nodes.append(_start_node(cluster, head=True))
        cluster.nodes.extend(_start_node(cluster, head=False) for _ in range(workers))
        cluster.wait_for_nodes(1 + workers, timeout=timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def local_cluster(**options: int | float) -> Iterator[LocalCluster]:
    """`start_local_cluster(**options)` as a context manager that always stops the cluster."""
    cluster = start_local_cluster(**options)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    """Start a local cluster, print how to point Curate at it, and keep it up until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.cluster", description=main.__doc__)
    parser.add_argument("--workers", type=int, default=1, help="worker nodes besides the head (default 1)")
    parser.add_argument("--num-cpus", type=int, default=1, help="CPUs per node (default 1)")
    parser.add_argument("--object-store-mb", type=int, default=512, help="object store per node, MiB")
    args = parser.parse_args(argv)
    with local_cluster(
        workers=args.workers, num_cpus=args.num_cpus, object_store_bytes=args.object_store_mb * 1024**2
    ) as cluster:
        exports = " ".join(f"{k}={v}" for k, v in cluster.env.items())
        print(f"cluster up: {len(cluster.nodes)} nodes at {cluster.address}")
        print(f"  {exports} curate ingest WORK --source NAME=GLOB --address {cluster.address}")
        with suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())

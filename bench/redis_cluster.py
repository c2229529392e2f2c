"""A throw-away Redis Cluster on this machine: three masters started with redis-server.

Used by the load benchmark's ``redis-cluster-2`` mode and by tests/bot/test_redis_cluster.py.

    with running_cluster(Path("/tmp/cluster")) as url:   # redis://127.0.0.1:<port>/0
        ...
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

BUS_OFFSET = 10_000  # a node's cluster bus listens this many ports higher (so below 55,536)


class ClusterUnavailable(RuntimeError):
    """redis-server or redis-cli is missing, or the nodes did not form a cluster."""


@contextmanager
def running_cluster(root: Path, nodes: int = 3, *, timeout: float = 30.0) -> Iterator[str]:
    """Start `nodes` masters (no persistence) under `root`, split the 16,384 slots between them,
    and yield the URL of one node; stop them all afterwards."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise ClusterUnavailable("a Redis Cluster needs redis-server and redis-cli "
                                 "(Debian package redis-server)")
    ports = free_ports(nodes)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            directory = root / str(port)
            directory.mkdir(parents=True)
            processes.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"],
                cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            _wait_for(partial(_answers, cli, port), f"the node on port {port} to start", timeout)
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{port}" for port in ports],
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout)
        _wait_for(lambda: all(b"cluster_state:ok" in _cli(cli, port, "CLUSTER", "INFO")
                              for port in ports), "the nodes to agree on the slots", timeout)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def free_ports(count: int) -> list[int]:
    """Ports free together with their cluster bus ports."""
    found: list[int] = []
    rng = random.Random()
    while len(found) < count:
        port = rng.randrange(20_000, 65_535 - BUS_OFFSET)
        if port not in found and _bindable(port) and _bindable(port + BUS_OFFSET):
            found.append(port)
    return found


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(cli: str, port: int) -> bool:
    return _cli(cli, port, "PING").strip() == b"PONG"


def _cli(cli: str, port: int, *command: str) -> bytes:
    return subprocess.run([cli, "-p", str(port), *command], capture_output=True,
                          timeout=10).stdout


def _wait_for(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise ClusterUnavailable(f"timed out waiting for {what}")

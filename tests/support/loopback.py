"""A real multi-node Ray cluster on one machine: a head and worker nodes started with `ray start`,
each its own set of processes with its own ports, temp dir and resources, all on loopback, with token
authentication (a fresh token, shared with this process so that its clients authenticate).

The cluster tests and benchmarks/cluster_scaling.py run on it: jobs go in through the job submission
API exactly as on a cloud cluster, a node can be killed like a crashed machine, and `stop()` reports
anything left running. Needs psutil (the `test` extra) and, for `cores=`, taskset (util-linux).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mixscribe.errors import MixscribeError

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    temp_dir: str
    log: Path
    resources: dict[str, float]
    pids: set[int] = field(default_factory=set)  # every process seen in its tree (for the clean-stop check)

    def tree(self) -> list:
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        self.pids.update(p.pid for p in procs)
        return procs


class LoopbackCluster:
    """`with LoopbackCluster(root) as c: c.start_head(1, {"render": 1}); c.add_worker(...)`."""

    def __init__(self, root: str | os.PathLike | None = None, drain_s: float = 5.0):
        self.root = Path(root or tempfile.mkdtemp(prefix="mxc", dir="/tmp"))  # short: socket paths <= 107 chars
        self.root.mkdir(parents=True, exist_ok=True)
        self.nodes: list[Node] = []
        self.gcs_port = self.dashboard_port = 0
        bin_dir = os.path.dirname(sys.executable)
        # This process's own clients (node listing, job submission) authenticate with the same token;
        # Ray reads the mode when first imported, so a LoopbackCluster is made before this process imports Ray.
        os.environ["RAY_AUTH_TOKEN"] = os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)
        os.environ["RAY_AUTH_MODE"] = "token"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": str(drain_s), "MLFLOW_DISABLE_TELEMETRY": "true",
                    "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
        self.env.pop("RAY_ADDRESS", None)
        self.env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # several nodes: Ray's multi-node mode
        self.ray = os.path.join(bin_dir, "ray")

    @property
    def address(self) -> str:
        """The GCS address (`ray start --address`, `RAY_ADDRESS`)."""
        return f"{HOST}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        """The job server (`ray job submit --address`, `mixscribe submit --address`)."""
        return f"http://{HOST}:{self.dashboard_port}"

    def _start(self, name: str, cpus: float, resources: dict[str, float], args: list[str],
               object_store_mb: int, cores: list[int] | None) -> Node:  # fmt: skip
        temp_dir = str(self.root / name)
        log = self.root / f"{name}.log"
        cmd = [self.ray, "start", "--block", "--disable-usage-stats", f"--num-cpus={int(cpus)}",
               f"--resources={json.dumps(resources)}", f"--temp-dir={temp_dir}", f"--node-ip-address={HOST}",
               f"--object-store-memory={object_store_mb * 2**20}", f"--node-manager-port={free_port()}",
               f"--object-manager-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}", *args]  # fmt: skip
        if cores:  # every process of the node inherits the affinity: a node is then a machine of len(cores) cores
            cmd = ["taskset", "-c", ",".join(map(str, cores)), *cmd]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        node = Node(name, proc, temp_dir, log, resources)
        self.nodes.append(node)
        return node

    def start_head(self, cpus: float = 1, resources: dict[str, float] | None = None, object_store_mb: int = 400,
                   timeout: float = 90, cores: list[int] | None = None) -> Node:  # fmt: skip
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        node = self._start("head", cpus, resources or {}, [
            "--head", f"--port={self.gcs_port}", "--include-dashboard=true", f"--dashboard-host={HOST}",
            f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}"], object_store_mb,
            cores)  # fmt: skip
        self.wait_for_nodes(1, timeout)
        return node

    def add_worker(self, cpus: float = 1, resources: dict[str, float] | None = None, object_store_mb: int = 400,
                   timeout: float = 90, cores: list[int] | None = None) -> Node:  # fmt: skip
        if not self.gcs_port:
            raise MixscribeError("start the head node first")
        node = self._start(f"worker{len(self.nodes)}", cpus, resources or {}, [f"--address={self.address}"],
                           object_store_mb, cores)  # fmt: skip
        self.wait_for_nodes(sum(n.process.poll() is None for n in self.nodes), timeout)
        return node

    def alive_nodes(self) -> list[dict]:
        from ray.util.state import list_nodes

        nodes = [dict(vars(n)) for n in list_nodes(address=self.dashboard_url, limit=10_000)]
        return [n for n in nodes if n["state"] == "ALIVE"]  # (a server-side filter reports "truncation")

    def wait_for_nodes(self, count: int, timeout: float = 90) -> list[dict]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process.poll() is not None and node.name == "head":
                    raise MixscribeError(f"head node exited ({node.log.read_text()[-600:]})")
            try:
                if self.dashboard_port and port_open(self.dashboard_port):
                    alive = self.alive_nodes()
                    if len(alive) >= count:
                        return alive
            except Exception as exc:  # the dashboard answers a moment after the port opens
                last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            time.sleep(1.0)
        raise MixscribeError(f"{count} Ray node(s) not up within {timeout:.0f} s ({last})")

    def kill_node(self, node: Node) -> None:
        """SIGKILL every process of a node at once, as when its machine dies."""
        for proc in node.tree():
            try:
                proc.kill()
            except Exception:  # already gone
                pass
        node.process.wait(timeout=30)

    def _running(self) -> list:
        import psutil

        running = []
        for node in self.nodes:
            for pid in sorted(node.pids):
                try:
                    proc = psutil.Process(pid)
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        running.append((node.name, proc))
                except psutil.NoSuchProcess:
                    pass
        return running

    def stop(self, timeout: float = 60, grace_s: float = 15) -> list[str]:
        """SIGTERM each node (workers first; `ray start --block` then drains and stops its processes) and
        return what is still running afterwards (killed, and reported: a clean stop returns [])."""
        import psutil

        for node in self.nodes:
            node.tree()  # remember every pid before any exits
        for node in [*self.nodes[1:], *self.nodes[:1]]:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
                try:
                    node.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
        # Helpers whose parent just exited (multiprocessing's forkserver and resource tracker) notice
        # the closed pipe a moment later: give them grace_s before calling them leftovers.
        deadline = time.monotonic() + grace_s
        while (running := self._running()) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = []
        for name, proc in running:
            try:
                leftovers.append(f"{name}: pid {proc.pid} {' '.join(proc.cmdline())[:120]}")
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        if self.gcs_port and port_open(self.gcs_port):
            leftovers.append(f"GCS port {self.gcs_port} still open")
        return leftovers

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

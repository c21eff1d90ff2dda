"""A local run is private to this machine: every Ray process listens on loopback only, with token
authentication on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def _listeners(root: psutil.Process) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of a process tree."""
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            for c in proc.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN:
                    found.append((proc.name(), c.laddr.ip, c.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def _token_mode(root: psutil.Process) -> set[str]:
    modes = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            if proc.name() in ("gcs_server", "raylet"):
                modes.add(proc.environ().get("RAY_AUTH_MODE", ""))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return modes


def test_a_local_synth_listens_on_loopback_only_with_token_authentication(tmp_path):
    out = tmp_path / "shards"
    exe = str(Path(sys.executable).parent / "mixscribe")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # as a user's shell has it
    proc = subprocess.Popen([exe, "synth", "--config", "tiny", "--out", str(out), "--clips", "200", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not list(out.glob("clips/part-*.parquet")):  # rendering is under way
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        assert time.monotonic() < deadline, "no shard written within 240 s"
        root = psutil.Process(proc.pid)
        listeners = _listeners(root)
        names = {n for n, _, _ in listeners}
        assert {"gcs_server", "raylet"} <= names, listeners  # the check sees Ray's servers
        exposed = [(n, ip, port) for n, ip, port in listeners if ip not in LOOPBACK]
        assert not exposed, f"listening beyond loopback: {exposed}"
        assert _token_mode(root) == {"token"}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def test_ray_data_scheduling_is_paced_in_the_driver_and_in_every_worker(ray_local):
    """Ray Data's scheduling loop spins a core while its consumers lag (a SplitCoordinator feeding
    training took 55-68 % of one); mixscribe's Ray processes stretch each loop step to at least
    RAY_DATA_LOOP_MIN_S, which still hands every row over."""
    ray = ray_local
    from ray.data._internal.execution.streaming_executor import StreamingExecutor

    @ray.remote(num_cpus=0)
    def worker_is_paced() -> bool:
        from ray.data._internal.execution.streaming_executor import StreamingExecutor

        return getattr(StreamingExecutor._scheduling_loop_step, "mixscribe_paced", False)

    assert getattr(StreamingExecutor._scheduling_loop_step, "mixscribe_paced", False)
    assert all(ray.get([worker_is_paced.remote() for _ in range(3)]))
    ds = ray_local.data.range(400, override_num_blocks=8).map_batches(lambda b: {"id": b["id"] * 2})
    from concurrent.futures import ThreadPoolExecutor

    def read(split) -> list[int]:
        return [int(x) for b in split.iter_batches(batch_size=50) for x in b["id"]]

    with ThreadPoolExecutor(2) as pool:  # a split's consumers read together, as training workers do
        got = sorted(x for part in pool.map(read, ds.streaming_split(2, equal=True)) for x in part)
    assert got == list(range(0, 800, 2))


def test_a_paced_step_lasts_at_least_the_pace_and_is_wrapped_once():
    import types

    from mixscribe.raycluster import RAY_DATA_LOOP_MIN_S, _pace_streaming_executor

    class Executor:  # the shape of Ray's StreamingExecutor that the pacing relies on
        def _scheduling_loop_step(self, topology) -> bool:
            return topology

    module = types.SimpleNamespace(StreamingExecutor=Executor)
    _pace_streaming_executor(module)
    paced = Executor._scheduling_loop_step
    _pace_streaming_executor(module)  # the driver and a hook may both install it
    assert Executor._scheduling_loop_step is paced and paced.__wrapped__.__qualname__.endswith("_scheduling_loop_step")
    start = time.perf_counter()
    assert Executor()._scheduling_loop_step(True) is True
    assert time.perf_counter() - start >= RAY_DATA_LOOP_MIN_S  # a lower bound: sleep never returns early
    assert Executor()._scheduling_loop_step(False) is False
    _pace_streaming_executor(types.SimpleNamespace())  # a Ray without the method is left alone

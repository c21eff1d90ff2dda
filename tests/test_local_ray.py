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

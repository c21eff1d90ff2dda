"""Connecting to Ray the same way everywhere: a local cluster by default, RAY_ADDRESS for a real one."""

from __future__ import annotations

import os
import tempfile


def init_ray(num_cpus: int | None = None) -> None:
    """Start (or join, when RAY_ADDRESS is set) Ray once per process.

    `address="local"` ignores a stale ray_current_cluster file that would otherwise make ray.init
    try to attach to a dead cluster; the short temp dir keeps socket paths under the OS limit.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"env_vars": {"PYTHONPATH": pkg_root, "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=True)
        return
    temp_dir = os.environ.get("MIXSCRIBE_RAY_TMP") or os.path.join(tempfile.gettempdir(), "mxray")
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        _temp_dir=temp_dir,
        runtime_env=env,
        log_to_driver=True,
        configure_logging=True,
        logging_level="WARNING",
    )


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def unwrap_ray_error(exc: BaseException) -> BaseException:
    """A MixscribeError raised inside a Ray task comes back wrapped; return the original."""
    from mixscribe.errors import MixscribeError

    seen = exc
    for _ in range(8):
        if isinstance(seen, MixscribeError):
            return seen
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None:
            break
        seen = cause
    return exc

"""Connecting to Ray the same way everywhere: a local cluster by default, RAY_ADDRESS for a real one."""

from __future__ import annotations

import os
import tempfile

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def init_ray(num_cpus: int | None = None) -> None:
    """Start or join Ray once per process, in one of three ways:

    - inside a Ray job (`ray job submit` / `mixscribe submit`): join the job's cluster and keep the
      job's runtime env (its working_dir carries the code; adding our own would conflict);
    - RAY_ADDRESS set: join that cluster and ship this package with `py_modules`, so its nodes run
      the driver's code, not whatever version they have installed;
    - otherwise a local cluster: `address="local"` ignores a stale ray_current_cluster file that would
      make ray.init attach to a dead cluster; the short temp dir keeps socket paths under the OS limit.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if in_ray_job():
        ray.init(log_to_driver=True)
        return
    env_vars = {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        env = {"py_modules": [PACKAGE_DIR], "env_vars": env_vars}
        ray.init(address=address, runtime_env=env, log_to_driver=True)
        return
    temp_dir = os.environ.get("MIXSCRIBE_RAY_TMP") or os.path.join(tempfile.gettempdir(), "mxray")
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        _temp_dir=temp_dir,
        runtime_env={"env_vars": {**env_vars, "PYTHONPATH": os.path.dirname(PACKAGE_DIR)}},
        log_to_driver=True,
        configure_logging=True,
        logging_level="WARNING",
    )


def in_ray_job() -> bool:
    """True in the driver of a submitted Ray job (the job supervisor sets this variable)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def node_id() -> str:
    """The Ray node this task or actor runs on (manifests and histories record it)."""
    import ray

    return ray.get_runtime_context().get_node_id()


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

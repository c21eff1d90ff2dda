"""Connecting to Ray the same way everywhere: a local cluster by default, RAY_ADDRESS for a real one.

A local cluster is private to this machine: every Ray process listens on 127.0.0.1 only, and token
authentication is on with a fresh random token per run, held in the environment that Ray's processes
inherit (never written to disk). Ray binds its servers to the node's address, and it takes the loopback
address as the node's address only where multi-node clusters are off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
its setting for single-machine Ray); otherwise it replaces 127.0.0.1 by the machine's network address and
its gRPC servers listen on every interface. A real cluster is secured by its own configuration
(cluster_configs/, README "Securing a cluster").
"""

from __future__ import annotations

import os
import secrets
import tempfile

from mixscribe.errors import MixscribeError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
LOOPBACK = "127.0.0.1"
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray reads it once, when ray is first imported


def joins_existing_cluster() -> bool:
    """True when Ray work goes to a cluster that someone else started (a Ray job, or RAY_ADDRESS)."""
    return in_ray_job() or bool(os.environ.get("RAY_ADDRESS"))


def prepare_local_environment() -> None:
    """Environment of a local cluster, set before Ray is imported or started (its processes inherit it):
    loopback only and token authentication. A token given in RAY_AUTH_TOKEN is kept."""
    if joins_existing_cluster():
        return
    os.environ[_SINGLE_MACHINE_ENV] = "0"
    os.environ["RAY_AUTH_MODE"] = "token"
    if not os.environ.get("RAY_AUTH_TOKEN"):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def import_ray():
    """Ray, imported only once the local cluster's environment is set (Ray reads it on import)."""
    prepare_local_environment()
    import ray

    return ray


def init_ray(num_cpus: int | None = None) -> None:
    """Start or join Ray once per process, in one of three ways:

    - inside a Ray job (`ray job submit` / `mixscribe submit`): join the job's cluster and keep the
      job's runtime env (its working_dir carries the code; adding our own would conflict);
    - RAY_ADDRESS set: join that cluster and ship this package with `py_modules`, so its nodes run
      the driver's code, not whatever version they have installed;
    - otherwise a local cluster on loopback with token authentication (prepare_local_environment):
      `address="local"` ignores a stale ray_current_cluster file that would make ray.init attach to a
      dead cluster; the short temp dir keeps socket paths under the OS limit.
    """
    ray = import_ray()
    if ray.is_initialized():
        return
    from mixscribe.console import route_library_logs

    route_library_logs()  # Ray's driver-side loggers into the command's log file, also while it starts
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if in_ray_job():
        ray.init(log_to_driver=True)  # a job's log is what `ray job logs` shows: keep the workers' output there
        pace_ray_data_scheduler()  # the job's workers have it from the job's runtime env (mixscribe submit)
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env={"py_modules": [PACKAGE_DIR], "worker_process_setup_hook": SETUP_HOOK},
                 log_to_driver=verbose_logs())  # fmt: skip
        pace_ray_data_scheduler()
        return
    _single_machine_ray()
    _require_token_auth()
    temp_dir = os.environ.get("MIXSCRIBE_RAY_TMP") or os.path.join(tempfile.gettempdir(), "mxray")
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        _temp_dir=temp_dir,
        runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(PACKAGE_DIR)}, "worker_process_setup_hook": SETUP_HOOK},
        log_to_driver=verbose_logs(),  # workers' output stays in the session's log folder unless --verbose
        configure_logging=True,
        logging_level="INFO",
    )
    pace_ray_data_scheduler()
    global _LOCAL_TEMP_DIR
    _LOCAL_TEMP_DIR = temp_dir
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:
        ray.shutdown()
        raise MixscribeError(f"local Ray took the network address {node_ip}, not {LOOPBACK}: refusing to run a "
                             "cluster that other machines can reach")  # fmt: skip


_LOCAL_TEMP_DIR: str | None = None  # where this process's local Ray session lives, once started


def local_session_logs() -> str | None:
    """The log folder of the local Ray session this process started (worker output, Ray's own logs)."""
    if _LOCAL_TEMP_DIR is None:
        return None
    try:
        import ray

        return os.path.join(_LOCAL_TEMP_DIR, ray.get_runtime_context().get_session_name(), "logs")
    except Exception:  # Ray already shut down: the latest session is this one's unless another run started since
        return os.path.join(_LOCAL_TEMP_DIR, "session_latest", "logs")


# Ray Data's scheduling loop runs at most this often (seconds per step) in mixscribe's Ray processes.
RAY_DATA_LOOP_MIN_S = 0.01
_STREAMING_EXECUTOR = "ray.data._internal.execution.streaming_executor"
SETUP_HOOK = "mixscribe.raycluster.pace_ray_data_scheduler"
PACING_ENV = "MIXSCRIBE_RAY_DATA_PACING"  # "off": Ray Data's loop as Ray ships it (benchmarks/ray_data_pacing.py)


def pace_ray_data_scheduler() -> None:
    """Keep Ray Data's scheduling loop from spinning a core while its consumers are the bottleneck.

    Ray 2.60's streaming executor blocks (in ray.wait) only while tasks are pending; once the data are
    ahead of their consumers, as in training, where the model is slower than remixing, its loop runs
    without pause, and the SplitCoordinator actor feeding Ray Train's workers took 55-68 % of a core:
    a third of a 2-core machine, taken from the model (docs/benchmarks.md). Each loop step is stretched
    to at least RAY_DATA_LOOP_MIN_S, far below a training step, so no batch comes later than the model
    would take it. Installed in the driver and, as Ray's worker_process_setup_hook, in every worker
    process, to act once Ray Data is imported there (a worker that never uses it pays nothing). A Ray
    without this private method is left as it is."""
    if os.environ.get(PACING_ENV, "") in ("0", "off"):
        return
    import wrapt

    wrapt.register_post_import_hook(_pace_streaming_executor, _STREAMING_EXECUTOR)


def _pace_streaming_executor(module) -> None:
    import functools
    import time

    executor = getattr(module, "StreamingExecutor", None)
    step = getattr(executor, "_scheduling_loop_step", None)
    if step is None or getattr(step, "mixscribe_paced", False):
        return

    @functools.wraps(step)
    def paced_step(self, topology):
        start = time.perf_counter()
        more = step(self, topology)
        left = RAY_DATA_LOOP_MIN_S - (time.perf_counter() - start)
        if more and left > 0:
            time.sleep(left)
        return more

    paced_step.mixscribe_paced = True
    executor._scheduling_loop_step = paced_step


def _require_token_auth() -> None:
    """Ray reads RAY_AUTH_MODE once, when first imported: a process that imported Ray before
    prepare_local_environment ran would start a cluster without authentication."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    if not is_token_auth_enabled():
        raise MixscribeError("Ray was imported before mixscribe set up its local cluster: call "
                             "mixscribe.raycluster.prepare_local_environment() before importing ray")  # fmt: skip


def _single_machine_ray() -> None:
    """Ray computes its single-machine switch when first imported: where something imported Ray before
    prepare_local_environment ran, apply the same setting to the value it computed."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


VERBOSE_ENV = "MIXSCRIBE_VERBOSE"


def verbose_logs() -> bool:
    """`--verbose`: Ray's worker output and the libraries' logs shown live (also in a Ray job's driver)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


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


def _causes(exc: BaseException):
    """exc and what it wraps, outermost first: Ray's task and actor errors (.cause), Ray Train's worker
    and controller failures, chained exceptions."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "cause", None), *getattr(e, "worker_failures", {}).values(),
                 getattr(e, "controller_failure", None), e.__cause__, e.__context__]  # fmt: skip


def _from_ray(e: BaseException) -> bool:
    """A Ray wrapper: RayTaskError subclasses carry the original's type too, and its traceback in str()."""
    return any(c.__module__.split(".")[0] == "ray" for c in type(e).__mro__ if c not in (BaseException, Exception))


def unwrap_ray_error(exc: BaseException) -> BaseException:
    """The MixscribeError raised inside a Ray task, actor or training worker, however many layers of Ray
    wrap it; exc itself when there is none."""
    from mixscribe.errors import MixscribeError

    for e in _causes(exc):
        if isinstance(e, MixscribeError) and not _from_ray(e):
            return e
    return exc


def innermost_error(exc: BaseException) -> BaseException | None:
    """For an error that came out of Ray: the first exception in its chain that Ray did not make (what the
    task raised); None when exc did not come out of Ray."""
    if not any(_from_ray(e) for e in _causes(exc)):
        return None
    inner = [e for e in _causes(exc) if not _from_ray(e)]
    return inner[0] if inner else exc

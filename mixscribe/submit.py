"""`mixscribe submit STAGE ...`: run a stage as a Ray job on a cluster and follow its logs.

A thin wrapper over Ray's job submission API: the same `mixscribe STAGE ...` command line becomes the
job's entrypoint (exactly what `ray job submit --working-dir . -- mixscribe STAGE ...` runs); this adds
what people get wrong by hand: the stage's arguments are checked here before anything is sent, paths
that would land in the job's temporary working directory on the head node are refused, the source
checkout travels as the working_dir, MLFLOW_TRACKING_URI is passed on, and the exit status is the job's.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import yaml

from mixscribe.errors import MixscribeError

STAGES = ("synth", "train", "evaluate", "pipeline", "chorales", "study")
# Options whose value the job writes to or reads from: on a cluster they must be shared storage.
PATH_OPTIONS = ("out", "data", "storage", "checkpoint", "tune_data", "workdir")
# Never uploaded with the working_dir (Ray also honours .gitignore): environments, outputs, stores.
EXCLUDES = [".git", ".venv", "venv", "out", "runs", "mlruns", "mlartifacts", "*.db", "*.parquet", "__pycache__",
            ".pytest_cache", ".bench-basic-pitch"]  # fmt: skip
PASSED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def source_checkout() -> str | None:
    """The repository this package runs from, when it is a source checkout (its pyproject.toml beside it)."""
    root = Path(__file__).resolve().parent.parent
    return str(root) if (root / "pyproject.toml").is_file() and (root / "mixscribe").is_dir() else None


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MixscribeError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def load_runtime_env(path: str | None) -> dict:
    """A runtime_env YAML (see cluster_configs/runtime_env.yaml) as a mapping; {} without one."""
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise MixscribeError(f"{path}: cannot read runtime env ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise MixscribeError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise MixscribeError(f"{path}: a runtime env must be a mapping (working_dir, pip, env_vars, ...)")
    return data


def build_runtime_env(base: dict, working_dir: str | None, env: dict[str, str]) -> dict:
    """The job's runtime env: the YAML's fields, then the working_dir, then environment variables
    (this process's MLflow settings, then --env, which wins)."""
    from mixscribe.raycluster import SETUP_HOOK

    runtime_env = dict(base)
    runtime_env.setdefault("worker_process_setup_hook", SETUP_HOOK)  # Ray Data's loop paced in the job too
    if working_dir:
        if not Path(working_dir).is_dir():
            raise MixscribeError(f"--working-dir {working_dir}: not a folder")
        runtime_env["working_dir"] = str(Path(working_dir).resolve())
        runtime_env["excludes"] = sorted(set(runtime_env.get("excludes", [])) | set(EXCLUDES))
    env_vars = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    env_vars.update({str(k): str(v) for k, v in (runtime_env.get("env_vars") or {}).items()})
    env_vars.update(env)
    if env_vars:
        runtime_env["env_vars"] = env_vars
    return runtime_env


def check_stage_args(stage: str, stage_args: list[str], env_vars: dict[str, str]) -> argparse.Namespace:
    """Parse the stage's arguments with its own parser (a typo fails here, not on the cluster) and
    refuse relative local paths: in a job they resolve inside a temporary folder on the head node."""
    from mixscribe.cli.parser import build_parser

    if stage not in STAGES:
        raise MixscribeError(f"stage {stage!r}: not submittable (choose from {', '.join(STAGES)})")
    try:
        ns = build_parser().parse_args([stage, *stage_args])
    except SystemExit as exc:  # argparse printed the reason
        raise MixscribeError(f"{stage}: invalid arguments {shlex.join(stage_args)!r}") from exc
    mlflow_remote = "MLFLOW_TRACKING_URI" in env_vars or getattr(ns, "no_mlflow", False)
    for name in PATH_OPTIONS:
        value = getattr(ns, name, None)
        if not value or "://" in str(value) or os.path.isabs(str(value)):
            continue
        if name == "workdir" and stage in ("train", "evaluate") and mlflow_remote:
            continue  # only names the local MLflow store, unused here
        option = "--" + name.replace("_", "-")
        raise MixscribeError(f"{stage} {option} {value}: a relative path would land in the job's temporary "
                             "working dir on the head node; give an absolute path on shared storage or an "
                             "s3:// / gs:// URI")  # fmt: skip
    return ns


def ship_config(stage_args: list[str], config: str | None, working_dir: str | None) -> list[str]:
    """A config YAML given as a local file must reach the job: inside the working_dir it is rewritten
    relative to it (the job runs there); an absolute path elsewhere is taken as shared storage; a
    relative one outside would not exist on the head node."""
    if not config or not Path(config).is_file() or os.path.isabs(config) and not working_dir:
        return stage_args
    path = Path(config).resolve()
    if working_dir and path.is_relative_to(Path(working_dir).resolve()):
        shipped = str(path.relative_to(Path(working_dir).resolve()))
    elif os.path.isabs(config):
        return stage_args
    else:
        raise MixscribeError(f"--config {config}: not inside the working dir shipped with the job; move it there "
                             "or give an absolute path on shared storage")  # fmt: skip
    out = []
    for arg in stage_args:
        if arg == config:
            out.append(shipped)
        elif arg.startswith("--config=") and arg.split("=", 1)[1] == config:
            out.append(f"--config={shipped}")
        else:
            out.append(arg)
    return out


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, ValueError, RuntimeError depending on what fails
        raise MixscribeError(f"--address {address}: no Ray job server answers ({str(exc).splitlines()[0]})") from exc


def submit(address: str, stage: str, stage_args: list[str], runtime_env: dict, job_id: str | None = None) -> str:
    import mixscribe

    entrypoint = shlex.join(["mixscribe", stage, *stage_args])
    return client(address).submit_job(
        entrypoint=entrypoint,
        runtime_env=runtime_env,
        submission_id=job_id,
        metadata={"mixscribe.stage": stage, "mixscribe.version": mixscribe.__version__},
    )


def follow(address: str, job_id: str, out=sys.stdout) -> str:
    """Print the job's logs as they come, until it ends; return its final status."""
    import asyncio
    import time

    jobs = client(address)

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    asyncio.run(tail())
    for _ in range(60):  # the log stream closes a moment before the status turns final
        status = str(jobs.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        time.sleep(1.0)
    return status


def run(args: argparse.Namespace) -> int:
    address = args.address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise MixscribeError("--address: give the cluster's job server (http://HEAD:8265) or set RAY_API_SERVER_ADDRESS")
    working_dir = None if args.no_working_dir else (args.working_dir or source_checkout())
    runtime_env = build_runtime_env(load_runtime_env(args.runtime_env), working_dir, parse_env(args.env or []))
    ns = check_stage_args(args.stage, args.stage_args, runtime_env.get("env_vars", {}))
    stage_args = ship_config(args.stage_args, getattr(ns, "config", None), working_dir)
    job_id = submit(address, args.stage, stage_args, runtime_env, args.job_id)
    print(f"submitted Ray job {job_id} to {address}: mixscribe {args.stage} {shlex.join(stage_args)}",
          file=sys.stderr)  # fmt: skip
    if args.no_wait:
        print(job_id)
        return 0
    try:
        status = follow(address, job_id)
    except KeyboardInterrupt:
        print(f"mixscribe: stopped following; job {job_id} keeps running "
              f"(ray job logs -f {job_id} --address {address}; ray job stop {job_id} --address {address})",
              file=sys.stderr)  # fmt: skip
        return 130
    if status != "SUCCEEDED":
        info = client(address).get_job_info(job_id)
        reason = (info.message or "").strip().splitlines()[0] if info.message else "no message"
        raise MixscribeError(f"Ray job {job_id} {status}: {reason}")
    print(f"Ray job {job_id} SUCCEEDED", file=sys.stderr)
    return 0

"""MLflow the same way everywhere: an embedded SQLite store by default, MLFLOW_TRACKING_URI for a server.

One experiment per study; runs are found again by their tags (never by name), which is what lets an
interrupted pipeline resume its own runs instead of starting duplicates.
"""

from __future__ import annotations

import contextlib

import os
import subprocess
import time
from pathlib import Path

DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
TAG_PREFIX = "mixscribe."
MAX_PARAM_CHARS = 6000  # MLflow's limit on one param value


def tracking_uri(workdir: str | os.PathLike = ".") -> str:
    """MLFLOW_TRACKING_URI when set (a server or another store), else SQLite in the working folder."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{(Path(workdir).resolve() / DEFAULT_DB)}"


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(mlf, name: str, workdir: str | os.PathLike = ".") -> str:
    """Get or create the experiment. Local stores get an absolute artifact folder (the default ./mlruns
    would depend on whichever directory the experiment happened to be created from)."""
    exp = mlf.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlf.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if mlf.tracking_uri.startswith("sqlite:"):
        location = (Path(workdir).resolve() / ARTIFACT_DIR).as_uri()
    return mlf.create_experiment(name, artifact_location=location)


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags() -> dict[str, str]:
    """Where a run came from: code, library versions, the Ray job."""
    from mixscribe.raycluster import import_ray

    ray = import_ray()
    import torch

    import mixscribe
    from mixscribe.synth.render import fluidsynth_version

    commit = _git_commit()
    tags = {
        "mlflow.source.git.commit": commit,
        f"{TAG_PREFIX}git_commit": commit,
        f"{TAG_PREFIX}version": mixscribe.__version__,
        f"{TAG_PREFIX}fluidsynth_version": fluidsynth_version(),
        f"{TAG_PREFIX}ray_version": ray.__version__,
        f"{TAG_PREFIX}torch_version": torch.__version__,
    }
    if ray.is_initialized():
        tags[f"{TAG_PREFIX}ray_job_id"] = ray.get_runtime_context().get_job_id()
    return tags


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def log_params(mlf, run_id: str, config: dict, prefix: str = "") -> None:
    """The flattened config as params (a.b.c = value), in batches of 100 (one HTTP call each)."""
    from mlflow.entities import Param

    from mixscribe.config import flatten

    flat = flatten(config, prefix)
    params = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(flat.items())]
    for chunk in _chunks(params, 100):
        mlf.log_batch(run_id, params=chunk)


def log_metrics(mlf, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Many metrics in one call: over HTTP each single log_metric costs ~60 ms."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entries = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for chunk in _chunks(entries, 1000):
        mlf.log_batch(run_id, metrics=chunk)


def find_run(mlf, exp_id: str, tags: dict[str, str]):
    """The newest run carrying all these tags, or None."""
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = mlf.search_runs([exp_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def start_or_resume(mlf, exp_id: str, name: str, tags: dict[str, str], parent_id: str | None = None):
    """Reuse the run with these tags if one exists (marking it running again), else create it.
    Returns (run, existed)."""
    from mlflow.entities import RunStatus

    query_tags = dict(tags)
    if parent_id:
        query_tags["mlflow.parentRunId"] = parent_id
    run = find_run(mlf, exp_id, query_tags)
    if run is not None:
        if run.info.status != "FINISHED":
            mlf.update_run(run.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        return run, True
    all_tags = {**tags, **environment_tags()}
    if parent_id:
        all_tags["mlflow.parentRunId"] = parent_id
    return mlf.create_run(exp_id, tags=all_tags, run_name=name), False


def finish(mlf, run_id: str, ok: bool = True) -> None:
    mlf.set_terminated(run_id, status="FINISHED" if ok else "FAILED")


@contextlib.contextmanager
def lifecycle(mlf, run_id: str | None):
    """One MLflow run's end, for every stage alike: FINISHED when the block completes, FAILED when
    anything escapes it (Ctrl-C too), so no run is left RUNNING by a crash. run_id None: no run."""
    if run_id is None:
        yield
        return
    try:
        yield
    except BaseException:
        finish(mlf, run_id, ok=False)
        raise
    finish(mlf, run_id)


def log_shards_input(run_id: str, uri: str, shards: str, context: str) -> None:
    """Dataset lineage: the shard set as an MLflow dataset whose digest is the manifest's content hash,
    so two runs trained on the same shards show the same dataset."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    from mixscribe.shards import ShardSet

    shard_set = ShardSet.open(shards)
    root = shard_set.root  # local paths come back absolute; URIs keep their scheme below
    with warnings.catch_warnings():
        # MLflow warns that a file:// URI "can be interpreted in multiple ways" (two identical classes)
        warnings.filterwarnings("ignore", message="The specified dataset source")
        source = resolve_dataset_source(shards if "://" in shards else Path(root).as_uri())
    dataset = MetaDataset(source=source, name=Path(root).name, digest=shard_set.manifest.content_hash())
    # Through the client: a fluent `with start_run(run_id)` would mark the still-running stage FINISHED.
    from mlflow.tracking.fluent import _create_dataset_input

    client(uri).log_inputs(run_id, datasets=[_create_dataset_input(dataset, context, None)])


def log_artifacts(mlf, run_id: str, paths, artifact_path: str) -> None:
    for path in paths:
        mlf.log_artifact(run_id, str(path), artifact_path=artifact_path)


def log_evaluation(mlf, uri: str, run_id: str, result, shards: str, report_paths: list[str]) -> dict[str, float]:
    """An evaluation into its run: its config as params, the summary as metrics, the shard set as the
    `evaluation` input, the report folder's files as artifacts. Returns the summary."""
    from mixscribe.config import to_dict

    summary = result.summary()
    log_params(mlf, run_id, to_dict(result.config), prefix="evaluate.")
    log_metrics(mlf, run_id, summary | result.pair_summary())
    log_shards_input(run_id, uri, shards, "evaluation")
    log_artifacts(mlf, run_id, report_paths, "report")
    return summary


def log_trained_model(uri: str, run_id: str, checkpoint: str | os.PathLike, config: dict) -> None:
    """The model three ways: mlflow.pytorch (loadable with mlflow.pytorch.load_model("runs:/ID/model")),
    the mixscribe checkpoint and its ONNX graph under mixscribe/, plus the resolved config."""
    import logging
    import tempfile

    import mlflow
    import torch
    import yaml

    import mixscribe
    from mixscribe.model import load_model
    from mixscribe.model.export import export_onnx

    model = load_model(checkpoint)
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # the pickle notice, on every run
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        # "pickle": MLflow's traced "pt2" default needs torch.export, which the CQT front end does not pass
        mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                 pip_requirements=[f"torch=={torch.__version__}", f"mixscribe=={mixscribe.__version__}"])  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        onnx_path = export_onnx(model, Path(d) / "mixscribe.onnx")
        config_path = Path(d) / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_artifacts(client(uri), run_id, (checkpoint, onnx_path, config_path), "mixscribe")

"""A real two-node Ray cluster on this machine (head and worker started with `ray start`, each with its
own processes, ports and temp dir): jobs go in through the job submission API, as on a cloud cluster."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from tests.support.loopback import LoopbackCluster
from mixscribe.synth.clips import clip_id
from mixscribe.shards import ShardSet

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def cluster():
    c = LoopbackCluster()
    try:
        c.start_head(cpus=1, resources={"render": 1})
        c.add_worker(cpus=1, resources={"render": 1})
        yield c
    finally:
        c.stop()


def _run(cmd: list[str], cluster: LoopbackCluster, timeout: float = 400) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=cluster.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[:3]} exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _alive_ids(cluster: LoopbackCluster) -> set[str]:
    return {n["node_id"] for n in cluster.alive_nodes()}


def _assert_every_clip_once(shards: str, num_clips: int) -> None:
    ids = ShardSet.open(shards).read_table(columns=["id"]).column("id").to_pylist()
    assert ids == [clip_id(i) for i in range(num_clips)]
    # and no stray files beside the manifest's (a retried shard rewrote its own name, nothing else)
    opened = ShardSet.open(shards)
    root, manifest = opened.root, opened.manifest.record
    on_disk = sorted(os.path.relpath(p, root) for p in glob.glob(f"{root}/clips/*"))
    assert on_disk == sorted(f["path"] for f in manifest["files"])
    assert not glob.glob(f"{root}/clips/.tmp-*")
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in glob.glob(f"{root}/clips/*")) == num_clips


def test_synth_train_evaluate_jobs_use_both_nodes_and_cluster_stops_cleanly(cluster, tmp_path):
    nodes = _alive_ids(cluster)
    assert len(nodes) == 2
    shards = str(tmp_path / "shards")
    # Synth through `mixscribe submit` (the job submission API; the checkout travels as working_dir).
    proc = _run([str(BIN / "mixscribe"), "submit", "--address", cluster.dashboard_url,
                 "synth", "--config", "tiny", "--out", shards, "--clips", "24"], cluster)  # fmt: skip
    assert "SUCCEEDED" in proc.stderr and "wrote 24 clips" in proc.stdout
    manifest = ShardSet.open(shards).manifest.record
    assert set(manifest["render_nodes"]) == nodes, "render actors ran on one node only"
    assert manifest["render_resource"] == "render" and manifest["workers"] == 2
    _assert_every_clip_once(shards, 24)
    ShardSet.open(shards).verify(("train", "valid"))  # hashes and schemas as written by both nodes

    # Training through Ray's own CLI, unchanged: two workers, spread over the two nodes.
    config = tmp_path / "spread.yaml"
    config.write_text(yaml.safe_dump({"train": {
        "stage": "amt", "epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "valid_examples": 4,
        "remix": {"crop_frames": 96}, "workers": 2, "placement_strategy": "SPREAD"}}))  # fmt: skip
    runs = tmp_path / "runs"
    _run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(ROOT), "--",
          "mixscribe", "train", "--config", str(config), "--data", shards, "--storage", str(runs),
          "--name", "spread", "--no-mlflow"], cluster)  # fmt: skip
    checkpoints = sorted(p for p in glob.glob(f"{runs}/spread/checkpoint_*") if os.path.isdir(p))
    assert checkpoints, "no checkpoint written"
    from mixscribe.model import load_model
    from mixscribe.train.trainer import CHECKPOINT_FILE, STATE_FILE

    load_model(os.path.join(checkpoints[-1], CHECKPOINT_FILE))
    state = torch.load(os.path.join(checkpoints[-1], STATE_FILE), weights_only=True)
    assert [h["epoch"] for h in state["history"]] == [-1, 0, 1]  # -1: the model as it started
    assert len(state["worker_nodes"]) == 2 and set(state["worker_nodes"]) == nodes

    # Evaluation of that checkpoint as a job too, its metrics logged to MLflow (SQLite on the shared disk).
    report, mlwork = tmp_path / "report", tmp_path / "mlflow"
    _run([str(BIN / "mixscribe"), "submit", "--address", cluster.dashboard_url, "evaluate",
          "--checkpoint", os.path.join(checkpoints[-1], CHECKPOINT_FILE), "--data", shards, "--config", "tiny",
          "--sets", "valid", "--max-clips", "4", "--tune-on", "", "--out", str(report),
          "--workdir", str(mlwork), "--experiment", "cluster"], cluster)  # fmt: skip
    assert (report / "summary.md").is_file() and (report / "metrics.json").is_file()
    from mlflow.tracking import MlflowClient

    mlf = MlflowClient(f"sqlite:///{mlwork / 'mlflow.db'}")
    (run,) = mlf.search_runs([mlf.get_experiment_by_name("cluster").experiment_id])
    assert any(k.startswith("eval/valid/") for k in run.data.metrics)

    assert cluster.stop() == []  # every process of both nodes gone, the GCS port closed


def test_worker_node_killed_mid_synthesis_every_clip_exactly_once(cluster, tmp_path):
    from ray.job_submission import JobSubmissionClient

    shards = str(tmp_path / "shards")
    victim = cluster.add_worker(cpus=1, resources={"render": 1})
    nodes_before = _alive_ids(cluster)
    assert len(nodes_before) == 3
    jobs = JobSubmissionClient(cluster.dashboard_url)
    job = jobs.submit_job(entrypoint=f"mixscribe synth --config tiny --out {shards} --clips 96",
                          runtime_env={"working_dir": str(ROOT)})  # fmt: skip
    deadline = time.monotonic() + 300
    while len(glob.glob(f"{shards}/clips/part-*.parquet")) < 3:
        assert time.monotonic() < deadline and jobs.get_job_status(job).value in ("PENDING", "RUNNING")
        time.sleep(0.2)
    cluster.kill_node(victim)  # mid-synthesis: 3 of 24 shards staged
    while (status := jobs.get_job_status(job).value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, "job did not finish after the node died"
        time.sleep(1.0)
    assert status == "SUCCEEDED", jobs.get_job_logs(job)[-3000:]
    _assert_every_clip_once(shards, 96)
    # The GCS marks a node dead after missed health checks (tens of seconds); a job that did not need
    # the dead node's work can finish before that.
    deadline = time.monotonic() + 120
    while len(nodes_before - _alive_ids(cluster)) != 1 and time.monotonic() < deadline:
        time.sleep(2.0)
    assert len(nodes_before - _alive_ids(cluster)) == 1, "the killed node should be marked dead"
    assert cluster.stop() == []

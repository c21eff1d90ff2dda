"""The main job through its real entry point (`mixscribe pipeline --config tiny`): a real local Ray, real
FluidSynth, a real SQLite MLflow store. Checks what lands in MLflow, that a finished pipeline is not run
twice, and that an interrupted one resumes without duplicating finished stages."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

STAGES = {"synth", "train-amt", "train-encoder", "evaluate"}


def mlflow_client(workdir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def runs_of(client, name: str) -> list:
    exp = client.get_experiment_by_name("mixscribe-tiny")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`mixscribe.pipeline` = '{name}'")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    env = {"MLFLOW_TRACKING_URI": ""}
    r = run_cli("pipeline", "--config", "tiny", "--workdir", str(workdir), "--name", "t1", env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return workdir, r


def test_pipeline_logs_nested_runs_params_metrics_lineage_and_models(finished):
    import mlflow
    import onnxruntime

    workdir, r = finished
    client = mlflow_client(workdir)
    runs = runs_of(client, "t1")
    parent = [x for x in runs if x.data.tags["mixscribe.stage"] == "pipeline"]
    children = {x.data.tags["mixscribe.stage"]: x for x in runs if x.data.tags["mixscribe.stage"] != "pipeline"}
    assert len(parent) == 1 and set(children) == STAGES and len(runs) == 5
    pid = parent[0].info.run_id
    assert all(x.info.status == "FINISHED" for x in runs)
    assert all(x.data.tags["mlflow.parentRunId"] == pid for x in children.values())
    # params: the flattened config; tags: where the run came from
    assert parent[0].data.params["synth.generator.clip_frames"] == "256"
    assert parent[0].data.params["train.lr"] == "0.003" and parent[0].data.params["pipeline.num_clips"] == "16"
    # pipeline.stage_train: the encoder stage trains with its own lr, the AMT stage with the section's
    assert children["train-amt"].data.params["train.lr"] == "0.003"
    assert children["train-encoder"].data.params["train.lr"] == "0.002"
    tags = children["train-amt"].data.tags
    assert len(tags["mixscribe.git_commit"]) == 40 and tags["mixscribe.fluidsynth_version"].startswith("2.")
    assert tags["mixscribe.ray_version"] == "2.60.0" and tags["mixscribe.ray_job_id"]
    # metrics: per epoch, stable namespace, rank 0 only (one value per epoch)
    history = client.get_metric_history(children["train-amt"].info.run_id, "val/loss")
    assert sorted(m.step for m in history) == [-1, 0, 1]  # -1: the model as the stage started
    # the stage ships its best epoch by train.select_by (val/loss unless set), and says which
    losses = {m.step: m.value for m in history if m.step >= 0}
    assert children["train-amt"].data.tags["train.chosen_epoch"] == str(min(losses, key=losses.get)) and "chosen by val/loss" in r.stdout
    assert {"train/loss", "train/data_wait_frac", "train/lr"} <= set(children["train-amt"].data.metrics)
    assert "val/timbre" in children["train-encoder"].data.metrics
    # the learning curve in transcription figures: per epoch in MLflow, and as a table and plot per stage
    assert sorted(m.step for m in client.get_metric_history(children["train-amt"].info.run_id, "val/note_f1")) == [-1, 0, 1]
    assert {"val/sep_note_f1", "val/cluster_purity"} <= set(children["train-encoder"].data.metrics)
    with (workdir / "t1" / "curves" / "encoder.csv").open() as f:
        curve = list(csv.DictReader(f))
    assert len(curve) >= 2 and all(0 <= float(row["val/sep_note_f1"]) <= 1 for row in curve)
    assert (curve[0]["epoch"], curve[0]["train/examples_seen"]) == ("-1", "0")  # the fresh encoder on the trained AMT
    assert (workdir / "t1" / "curves" / "amt.png").stat().st_size > 5_000
    assert {"amt.csv", "amt.png"} <= {p.name for p in Path(client.download_artifacts(
        children["train-amt"].info.run_id, "curve", str(workdir / "curve"))).iterdir()}
    synth = children["synth"].data.metrics  # the manifest's own figures, not defaults
    manifest = json.loads((workdir / "t1" / "shards" / "manifest.json").read_text())
    assert synth["synth/clips"] == 16 and synth["synth/audio_seconds"] == pytest.approx(3600 * manifest["hours"])
    assert synth["synth/audio_seconds"] > 0 and synth["synth/dropped_stems"] == manifest["dropped_stems_total"]
    eval_metrics = children["evaluate"].data.metrics
    assert "eval/valid/all/note_f1" in eval_metrics and "eval/unseen-soundfont/all/sep_note_f1" in eval_metrics
    assert parent[0].data.metrics["eval/valid/all/note_f1"] == eval_metrics["eval/valid/all/note_f1"]
    # the chorales (pipeline.chorales: 1 in tiny): 2-, 3- and 4-part mixtures, with the valid set's thresholds
    assert {"eval/chorales/2mix/note_f1", "eval/chorales/4mix/sep_note_f1"} <= set(eval_metrics)
    assert parent[0].data.metrics["eval/chorales/all/note_f1"] == eval_metrics["eval/chorales/all/note_f1"]
    chorale_report = (workdir / "t1" / "report-chorales" / "summary.md").read_text()
    params = children["evaluate"].data.params
    assert f"onset {params['evaluate.decode.onset_threshold']}, frame {params['evaluate.decode.frame_threshold']} (notes longer than" in chorale_report
    # lineage: every stage saw the same shard set (same digest); the chorales are a second input
    inputs = [(i.dataset.digest, {t.value for t in i.tags}) for x in children.values() for i in x.inputs.dataset_inputs]
    digests = {d for d, tags in inputs if "evaluation-chorales" not in tags}
    contexts = set().union(*(tags for _, tags in inputs))
    assert len(digests) == 1 and {"synth-output", "training", "evaluation", "evaluation-chorales"} <= contexts
    # the model: loadable through MLflow, as ONNX, and as a mixscribe checkpoint
    rid = children["train-encoder"].info.run_id
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    model = mlflow.pytorch.load_model(f"runs:/{rid}/model")
    assert type(model).__name__ == "TwoBranchModel"
    local = Path(client.download_artifacts(rid, "mixscribe", str(workdir / "dl")))
    assert {"encoder.pt", "mixscribe.onnx", "config.yaml"} <= {p.name for p in local.iterdir()}
    sess = onnxruntime.InferenceSession(str(local / "mixscribe.onnx"))
    assert [o.name for o in sess.get_outputs()] == ["frame", "onset", "embedding"]
    report = Path(client.download_artifacts(children["evaluate"].info.run_id, "report", str(workdir / "rep")))
    assert "| valid (tuning set) | all |" in (report / "summary.md").read_text()
    assert (workdir / "t1" / "models" / "encoder.pt").is_file()


def test_rerunning_a_finished_pipeline_does_nothing(finished):
    workdir, _ = finished
    r = run_cli("pipeline", "--config", "tiny", "--workdir", str(workdir), "--name", "t1", env={"MLFLOW_TRACKING_URI": ""})
    assert r.returncode == 0 and "already finished" in r.stdout
    assert len(runs_of(mlflow_client(workdir), "t1")) == 5


def test_interrupted_pipeline_resumes_without_duplicate_runs(tmp_path):
    """Ctrl-C during training, then the same command again: synth is skipped, training resumes."""
    exe = Path(sys.executable).parent / "mixscribe"
    args = [str(exe), "pipeline", "--config", "tiny", "--workdir", str(tmp_path), "--name", "t2"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    ray_dir = tmp_path / "t2" / "ray" / "t2-amt"
    deadline = time.time() + 300
    while time.time() < deadline and not any(ray_dir.glob("checkpoint_*")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.5)
    assert any(ray_dir.glob("checkpoint_*")), "training never wrote a checkpoint"
    live = {x.data.tags["mixscribe.stage"]: x.info.status for x in runs_of(mlflow_client(tmp_path), "t2")}
    assert live["train-amt"] == live["pipeline"] == "RUNNING", live  # logging lineage must not end the run
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0, out[-2000:]
    client = mlflow_client(tmp_path)
    states = {x.data.tags["mixscribe.stage"]: x.info.status for x in runs_of(client, "t2")}
    assert states["synth"] == "FINISHED" and states["pipeline"] != "FINISHED"

    r = run_cli("pipeline", "--config", "tiny", "--workdir", str(tmp_path), "--name", "t2", env={"MLFLOW_TRACKING_URI": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "synth: finished earlier" in r.stdout and "train-amt: resuming" in r.stdout
    runs = runs_of(client, "t2")
    stages = sorted(x.data.tags["mixscribe.stage"] for x in runs)
    assert stages == sorted(STAGES | {"pipeline"})  # one run each: nothing duplicated
    assert all(x.info.status == "FINISHED" for x in runs)
    from mixscribe.model import load_model

    load_model(tmp_path / "t2" / "models" / "encoder.pt")  # the resumed model is whole


def test_pipeline_continues_a_trained_checkpoint(finished, tmp_path):
    """pipeline.init_checkpoint: the first stage starts from the given model, here "pipeline:t1", the
    model the finished pipeline t1 of the same workdir wrote (copied, its sha256 tagged); an encoder-only
    continuation keeps that model's frozen AMT branch bit for bit and moves its encoder."""
    import hashlib

    import torch
    import yaml

    from mixscribe.config import load_preset
    from mixscribe.model import load_model

    from tests.test_datasets import make_bach10

    workdir, _ = finished
    init = workdir / "t1" / "models" / "encoder.pt"
    bach10 = make_bach10(tmp_path / "Bach10", pieces=("01-AchGottundHerr",))
    cfg = tmp_path / "continue.yaml"
    cfg.write_text(yaml.safe_dump({**load_preset("tiny"),
                                   "pipeline": {"experiment": "mixscribe-tiny", "num_clips": 16, "train_stages": ["encoder"],
                                                "init_checkpoint": "pipeline:t1", "compare_with": str(init),
                                                "compare_sets": ["unseen-soundfont"], "datasets": {"bach10": str(bach10)}},
                                   "evaluate": {"sets": ["valid", "unseen-soundfont"], "k_mode": "given"}}))  # fmt: skip
    r = run_cli("pipeline", "--config", str(cfg), "--workdir", str(workdir), "--name", "c1",
                env={"MLFLOW_TRACKING_URI": ""}, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"training continues from {init} " in r.stdout
    copied = workdir / "c1" / "models" / "init.pt"
    assert copied.read_bytes() == init.read_bytes()
    before, after = load_model(init).state_dict(), load_model(workdir / "c1" / "models" / "encoder.pt").state_dict()
    amt = [k for k in before if not k.startswith(("encoder", "cqt"))]
    enc = [k for k in before if k.startswith("encoder")]
    assert amt and enc and all(torch.equal(before[k], after[k]) for k in amt)
    assert any(not torch.equal(before[k], after[k]) for k in enc)
    parent = [x for x in runs_of(mlflow_client(workdir), "c1") if x.data.tags["mixscribe.stage"] == "pipeline"][0]
    assert parent.data.tags["mixscribe.init_checkpoint_sha256"] == hashlib.sha256(init.read_bytes()).hexdigest()
    # pipeline.compare_with: the reference scored on the same held-out set, one table on the console and in MLflow
    m = parent.data.metrics
    ours, theirs = m["compare/pipeline/eval/unseen-soundfont/all/sep_note_f1"], m["compare/reference/eval/unseen-soundfont/all/sep_note_f1"]
    assert ours == m["eval/unseen-soundfont/all/sep_note_f1"]  # this pipeline's row is its evaluate stage's figure
    table = (workdir / "c1" / "comparison.md").read_text()
    assert f"| this pipeline's model (encoder.pt) | {100 * m['eval/unseen-soundfont/all/note_f1']:.1f} | {100 * ours:.1f} |" in table
    assert f"| {init} | {100 * m['compare/reference/eval/unseen-soundfont/all/note_f1']:.1f} | {100 * theirs:.1f} |" in table
    assert table.splitlines()[2] in r.stdout  # printed too
    # pipeline.datasets: real recordings scored beside the synthetic sets with valid's thresholds
    assert (m["eval/bach10/2mix/clips"], m["eval/bach10/3mix/clips"], m["eval/bach10/4mix/clips"]) == (6, 4, 1)
    assert (workdir / "datasets" / "bach10" / "manifest.json").is_file()  # shared by every pipeline in the folder
    assert "| bach10 | all | 11 |" in (workdir / "c1" / "report-bach10" / "summary.md").read_text()


def test_missing_init_checkpoint_is_a_named_config_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("pipeline:\n  init_checkpoint: nowhere/model.pt\n")
    r = run_cli("pipeline", "--config", str(cfg), "--workdir", str(tmp_path))
    assert r.returncode != 0
    assert "pipeline.init_checkpoint: no such checkpoint file 'nowhere/model.pt'" in r.stderr
    assert not (tmp_path / "bad").exists()  # nothing started


def test_a_start_from_an_unfinished_pipeline_is_named_before_work(tmp_path):
    """pipeline:NAME needs NAME finished in the same workdir; else one line naming the field, before any
    stage starts (the pipeline's folder holds only the log of the attempt)."""
    cfg = tmp_path / "next.yaml"
    cfg.write_text("pipeline:\n  init_checkpoint: pipeline:first\n  init_branches: [amt]\n  train_stages: [encoder]\n")
    r = run_cli("pipeline", "--config", str(cfg), "--workdir", str(tmp_path / "out"), env={"MLFLOW_TRACKING_URI": ""})
    assert r.returncode != 0
    assert (f"pipeline.init_checkpoint: pipeline:first: that pipeline has not finished (no pipeline of that name "
            f"in {tmp_path / 'out'}); run it first, in the same --workdir") in r.stderr  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "out" / "next").iterdir()) == ["logs"]
    assert not mlflow_client(tmp_path / "out").search_runs(
        [e.experiment_id for e in mlflow_client(tmp_path / "out").search_experiments()])  # no run was opened

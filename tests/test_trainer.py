"""Ray Train on a real local cluster: 2 workers (CPU, gloo) lower the loss, and a re-run resumes."""

import dataclasses
from pathlib import Path

import pytest

from mixscribe.config import load_synth_config
from mixscribe.synth.pipeline import run_synth
from mixscribe.train.augment import AugmentConfig
from mixscribe.train.data import RemixConfig
from mixscribe.train.trainer import CHECKPOINT_FILE, TrainConfig, epochs_done, read_history, run_training
from tests.conftest import run_cli

SHORT_CROP = RemixConfig(crop_frames=96, augment=AugmentConfig())  # the training remix, on short crops


@pytest.fixture(scope="module")
def data(ray_local, tmp_path_factory):
    cfg = load_synth_config("tiny")
    cfg = dataclasses.replace(cfg, workers=2, splits=dataclasses.replace(cfg.splits, fractions={"train": 0.5, "valid": 0.5}))
    out = tmp_path_factory.mktemp("train-shards")
    run_synth(cfg, str(out), 16)
    return str(out)


def test_two_workers_lower_the_loss_and_a_rerun_resumes(data, tmp_path):
    from mixscribe.model import load_model
    from mixscribe.model.checkpoint import load_checkpoint

    cfg = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=4, valid_examples=4, remix=SHORT_CROP, workers=2, lr=3e-3)
    first = run_training(cfg, data, "run", str(tmp_path))
    history = first.metrics_dataframe
    assert list(history["epoch"]) == [0, 1]
    assert history["val/loss"].iloc[1] < history["val/loss"].iloc[0]
    assert ((0 <= history["train/data_wait_frac"]) & (history["train/data_wait_frac"] < 1)).all()
    assert (history["train/examples_per_s"] > 0).all()
    aug = history[[f"train/aug/{t}_frac" for t in ("reverb", "eq_tilt", "gain", "compressor")]]
    assert ((aug >= 0) & (aug <= 1)).all().all() and aug.to_numpy().mean() > 0  # augmentation on by default
    curve = history[["val/frame_f1", "val/note_f1"]]  # the learning curve in figures, every epoch
    assert ((curve >= 0) & (curve <= 1)).all().all() and "val/sep_note_f1" not in history  # amt: no encoder
    (tmp_path / "stopped-early" / "checkpoint_2026-01-01_00-00-00.000000").mkdir(parents=True)  # no Ray record yet
    assert epochs_done(str(tmp_path), "run") == 2 and epochs_done(str(tmp_path), "another") == 0
    assert epochs_done(str(tmp_path), "stopped-early") == 0
    resumed = run_training(dataclasses.replace(cfg, epochs=3), data, "run", str(tmp_path))
    assert epochs_done(str(tmp_path), "run") == 3  # what the driver reads before building the data stream
    assert resumed.metrics["epoch"] == 2  # only the missing epoch ran
    # the curve starts at the model as it began (epoch -1, scored before the first step), once
    assert [(h["epoch"], h["start_epoch"]) for h in read_history(resumed)] == [(-1, 0), (0, 0), (1, 0), (2, 2)]
    start = read_history(resumed)[0]
    assert start["train/examples_seen"] == 0 and 0 <= start["val/note_f1"] <= 1 and start["val/loss"] > 0
    with resumed.checkpoint.as_directory() as d:
        model = load_model(Path(d) / CHECKPOINT_FILE)
        extra = load_checkpoint(Path(d) / CHECKPOINT_FILE)["extra"]
    assert 0.005 <= model.amt.affine.k.item() <= 3.0
    per_epoch = 3 * 4 * 2  # steps x batch x workers
    assert list(history["train/examples_seen"]) == [per_epoch, 2 * per_epoch]
    assert resumed.metrics["train/examples_seen"] == 3 * per_epoch and extra["examples_seen"] == {"amt": 3 * per_epoch}
    kept = [p for p in (tmp_path / "run").iterdir() if p.is_dir() and p.name.startswith("checkpoint_")]
    assert 1 <= len(kept) <= cfg.num_to_keep
    shown = run_cli("curve", str(tmp_path / "run"), "--out", str(tmp_path / "curves"))  # the learning curve so far
    assert shown.returncode == 0, shown.stderr
    assert "amt: 3 epochs" in shown.stdout and f"examples {3 * per_epoch:>9,}" in shown.stdout
    assert f"start      examples {0:>9,}" in shown.stdout
    rows = (tmp_path / "curves" / "amt.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train/examples_seen,") and [r.split(",")[:2] for r in rows[1:]] == [
        [str(e), str((e + 1) * per_epoch)] for e in range(-1, 3)]
    assert (tmp_path / "curves" / "amt.png").stat().st_size > 0


def test_bf16_training_lowers_the_loss_and_ships_the_epoch_its_figure_chooses(data, tmp_path):
    """train.precision bf16 through Ray Train: DDP over channels-last float32 weights, autocast steps.
    With train.select_by a scored figure, the checkpoints are ranked by it: the best is kept beside the
    latest and is the one a training ships, whatever the loss says."""
    from mixscribe.model.checkpoint import load_checkpoint
    from mixscribe.train.trainer import chosen_checkpoint

    cfg = TrainConfig(epochs=3, steps_per_epoch=3, batch_size=4, valid_examples=4, remix=SHORT_CROP, workers=2, lr=3e-3,
                      precision="bf16", select_by="val/note_f1", num_to_keep=1)  # fmt: skip
    result = run_training(cfg, data, "bf16", str(tmp_path))
    history = [row for row in read_history(result) if row["epoch"] >= 0]  # every epoch's, kept or not
    assert [h["epoch"] for h in history] == [0, 1, 2] and history[2]["val/loss"] < history[0]["val/loss"]
    best, chosen = chosen_checkpoint(result, cfg)
    with best.as_directory() as d:
        shipped = load_checkpoint(Path(d) / CHECKPOINT_FILE)["extra"]["epoch"]
    top = max(h["val/note_f1"] for h in history)
    first_best = next(h["epoch"] for h in history if h["val/note_f1"] == top)  # of equal bests, Ray keeps the first
    assert shipped == chosen["epoch"] == first_best and chosen["val/note_f1"] == top
    kept = {load_checkpoint(p / CHECKPOINT_FILE)["extra"]["epoch"] for p in (tmp_path / "bf16").glob("checkpoint_*") if p.is_dir()}
    assert kept == {first_best, 2}  # the best by note F and the latest, to resume from


def test_compiled_auto_precision_training_says_what_it_ran(data, tmp_path):
    """train.compile through DDP on two workers still learns; precision "auto" resolves on the worker to
    what its CPU multiplies natively, and the MLflow run says which arithmetic and how many threads ran."""
    from mlflow.tracking import MlflowClient

    from mixscribe.model.arithmetic import resolve_precision

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("compile"))
    cfg = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=4, valid_examples=4, remix=SHORT_CROP, workers=2, lr=3e-3,
                      precision="auto", compile=True)  # fmt: skip
    result = run_training(cfg, data, "compiled", str(tmp_path / "runs"),
                          mlflow={"tracking_uri": client.tracking_uri, "run_id": run.info.run_id})  # fmt: skip
    history = result.metrics_dataframe
    assert list(history["epoch"]) == [0, 1] and history["val/loss"].iloc[1] < history["val/loss"].iloc[0]
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["train.precision_used"] == resolve_precision("auto") and tags["train.threads_per_worker"] == "1"


def test_a_continuation_counts_examples_on_from_its_initial_checkpoint(data, tmp_path):
    """The encoder stage started from an AMT checkpoint: the AMT count is carried, the encoder's starts;
    a second continuation of the encoder counts on from the first's."""
    from mixscribe.model.checkpoint import load_checkpoint

    base = dict(epochs=1, steps_per_epoch=2, batch_size=4, valid_examples=4, remix=SHORT_CROP, workers=2, lr=3e-3)
    amt = run_training(TrainConfig(**base), data, "amt", str(tmp_path))
    with amt.checkpoint.as_directory() as d:
        (tmp_path / "amt.pt").write_bytes((Path(d) / CHECKPOINT_FILE).read_bytes())
    enc = run_training(TrainConfig(**base, stage="encoder", init_checkpoint=str(tmp_path / "amt.pt")), data, "enc", str(tmp_path))
    assert enc.metrics["train/examples_seen"] == 16
    with enc.checkpoint.as_directory() as d:
        (tmp_path / "enc.pt").write_bytes((Path(d) / CHECKPOINT_FILE).read_bytes())
    assert load_checkpoint(tmp_path / "enc.pt")["extra"]["examples_seen"] == {"amt": 16, "encoder": 16}
    more = run_training(TrainConfig(**base, stage="encoder", init_checkpoint=str(tmp_path / "enc.pt")), data, "more", str(tmp_path))
    assert more.metrics["train/examples_seen"] == 32


def test_compile_without_a_compiler_is_refused_before_training(data, tmp_path, monkeypatch):
    from mixscribe.errors import ConfigError

    monkeypatch.setenv("CXX", "no-such-c++")
    monkeypatch.setenv("PATH", str(tmp_path))  # no clang++ either
    with pytest.raises(ConfigError, match=r"train.compile: no C\+\+ compiler \(no-such-c\+\+\)"):
        run_training(TrainConfig(compile=True), data, "x", str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_bad_shards_fail_before_training(data, tmp_path):
    import json
    import shutil

    from mixscribe.errors import ShardError

    with pytest.raises(ShardError, match="no manifest"):
        run_training(TrainConfig(), str(tmp_path), "x", str(tmp_path / "runs"))
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    victim = sorted((copy / "clips").glob("*.parquet"))[0]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the middle of the file
    victim.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=f"{victim.name}: corrupt shard"):
        run_training(TrainConfig(), str(copy), "x", str(tmp_path / "runs"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="schema version 99"):
        run_training(TrainConfig(), str(copy), "x", str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()  # nothing started


def test_train_cli_and_config_errors(data, tmp_path):
    from mixscribe.errors import ConfigError
    from mixscribe.train.trainer import load_train_config
    from tests.conftest import run_cli

    assert load_train_config("tiny").remix.crop_frames == 96 and load_train_config("demo").workers == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stage: everything\n")
    with pytest.raises(ConfigError, match="train.stage"):
        load_train_config(str(bad))
    with pytest.raises(ConfigError, match="train.precision: must be one of"):
        load_train_config("tiny", precision="fp8")
    with pytest.raises(ConfigError, match="train.compile"):
        load_train_config("tiny", compile="yes")
    assert load_train_config("default").compile and load_train_config("default").precision == "auto"
    args = ("train", "--config", "tiny", "--data", data, "--workers", "1", "--name", "cli", "--storage",
            str(tmp_path / "runs"), "--workdir", str(tmp_path))  # fmt: skip
    r = run_cli(*args, env={"MLFLOW_TRACKING_URI": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "run cli: epoch 1" in r.stdout and "val/loss" in r.stdout
    assert (tmp_path / "runs" / "cli").is_dir()
    again = run_cli(*args, env={"MLFLOW_TRACKING_URI": ""})  # resumes: nothing left to train, same MLflow run
    assert again.returncode == 0, again.stderr[-2000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mixscribe").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["train.remix.crop_frames"] == "96"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [-1, 0, 1]  # -1: the model as it started
    assert {a.path for a in client.list_artifacts(run.info.run_id, "mixscribe")} >= {"mixscribe/model.pt", "mixscribe/mixscribe.onnx"}
    r = run_cli("train", "--config", str(bad), "--data", data)
    assert r.returncode == 2 and "train.stage" in r.stderr.strip().splitlines()[-1]


def _registered_checkpoint(run_dir) -> bool:
    """True once Ray Train's checkpoint manager has persisted a snapshot that names a latest checkpoint."""
    import json

    for snapshot in run_dir.glob("**/checkpoint_manager_snapshot.json"):
        try:
            if json.loads(snapshot.read_text()).get("latest_checkpoint_result"):
                return True
        except (OSError, ValueError):  # being written right now
            pass
    return False


def test_a_killed_worker_recovers_from_the_last_checkpoint(data, tmp_path):
    """SIGKILL one of two Ray Train workers mid-run: Ray restarts the group, which resumes from the latest
    checkpoint (no epoch reported twice, none missing) and finishes."""
    import signal
    import threading
    import time

    import psutil

    cfg = TrainConfig(epochs=6, steps_per_epoch=6, batch_size=4, valid_examples=4, remix=SHORT_CROP, workers=2,
                      lr=3e-3, max_failures=2, num_to_keep=10)  # fmt: skip
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", run_training(cfg, data, "kill", str(tmp_path))))
    thread.start()
    deadline = time.time() + 300
    # kill only once the controller has registered a checkpoint (its snapshot names one): a checkpoint folder
    # alone is not enough, under load the controller may not have polled it yet and Ray restarts from scratch
    while time.time() < deadline and not _registered_checkpoint(tmp_path / "kill"):
        time.sleep(0.1)
    assert _registered_checkpoint(tmp_path / "kill"), "no checkpoint registered within 300 s"
    workers = [p for p in psutil.process_iter(["cmdline"]) if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])]
    assert len(workers) == 2, [p.info["cmdline"] for p in workers]
    victim = workers[-1]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    thread.join(timeout=600)
    result = box["result"]
    assert result.error is None
    history = read_history(result)
    assert [h["epoch"] for h in history] == [-1, 0, 1, 2, 3, 4, 5]  # each epoch once: none lost, none repeated
    assert history[0]["start_epoch"] == 0 and history[-1]["start_epoch"] >= 1  # resumed, not restarted at 0
    survivors = [p for p in psutil.process_iter(["cmdline"]) if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])]
    assert victim.pid not in {p.pid for p in survivors}


def test_the_learning_curve_scores_transcriptions_and_tells_a_trained_model_from_a_fresh_one(data):
    """The validation mixtures transcribed with the fixed decoding and K given, scored against the notes
    they were made from: the shipped model far above an untrained one on the same mixtures, separated
    figures only where the encoder trains, and the training copy of the model left as it was."""
    import torch

    from mixscribe.model import TwoBranchModel, load_model
    from mixscribe.train.curve import validation_scores
    from mixscribe.train.data import RemixConfig, Remixer, load_split

    remixer = Remixer(load_split(data, "valid"), RemixConfig(crop_frames=256).for_validation(), seed=5)
    examples = [remixer.example(0, i) for i in range(12)]
    shipped = load_model()
    before = {k: v.clone() for k, v in shipped.state_dict().items()}
    trained = validation_scores(shipped, examples, "encoder")
    assert set(trained) == {"val/frame_f1", "val/note_f1", "val/sep_note_f1", "val/cluster_purity"}
    assert all(torch.equal(before[k], v) for k, v in shipped.state_dict().items())
    fresh = validation_scores(TwoBranchModel(shipped.cfg), examples, "encoder")
    assert trained["val/note_f1"] > 0.5 and trained["val/note_f1"] > fresh["val/note_f1"] + 0.3, (trained, fresh)
    assert set(validation_scores(shipped, examples, "amt")) == {"val/frame_f1", "val/note_f1"}


def test_a_resumed_runs_progress_bar_times_only_its_own_steps():
    import io

    from tqdm import tqdm

    from mixscribe.train.trainer import show_progress

    cfg = TrainConfig(epochs=40, steps_per_epoch=500)
    for first_epoch, before in ((0, 0), (15, 7500)):
        with tqdm(total=20000, file=io.StringIO()) as bar:
            shown: dict[str, str] = {}
            for index in range(4):  # four steps of this run, then its epoch's validation loss
                show_progress(bar, cfg, ("step", first_epoch, index, 0.01), shown)
            show_progress(bar, cfg, ("epoch", first_epoch, 499, 0.02), shown)
            # as shown after 4 s: 4 steps in 4 s, so the steps left take as many seconds
            line = tqdm.format_meter(**{**bar.format_dict, "elapsed": 4.0})
        left = 20000 - before - 4
        assert bar.n == before + 4 and f"{left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}" in line, line
        assert f"epoch={first_epoch + 1}/40" in line and "val_loss=0.0200" in line and "loss=0.0100" in line

"""`mixscribe evaluate` end to end on tiny sets: logged over HTTP to a real `mlflow server` on 127.0.0.1,
and its bad-input errors (before any work starts)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mixscribe.transcription.kestimate import FEATURES
from tests.conftest import run_cli

GOLDEN = Path(__file__).parent / "data" / "golden.pt"


@pytest.fixture(scope="module")
def shards(ray_local, tmp_path_factory):
    from mixscribe.config import load_synth_config
    from mixscribe.synth.pipeline import run_synth

    cfg = load_synth_config("tiny")
    cfg = dataclasses.replace(cfg, splits=dataclasses.replace(cfg.splits, fractions={"valid": 0.5, "unseen-soundfont": 0.5}))
    out = tmp_path_factory.mktemp("eval-shards")
    run_synth(cfg, str(out), 8)
    return str(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    exe = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                             "--artifacts-destination", str(root / "artifacts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield url, root
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


def test_evaluate_cli_logs_to_a_real_mlflow_server(shards, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    url, root = mlflow_server
    out = tmp_path / "report"
    r = run_cli("evaluate", "--checkpoint", str(GOLDEN), "--data", shards, "--config", "tiny", "--out", str(out),
                "--experiment", "eval-http", "--k", "auto", env={"MLFLOW_TRACKING_URI": url})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| valid (tuning set) | all |" in r.stdout and "K auto (K classifier, " in r.stdout
    assert "tuned on `valid` (" in r.stdout and "% right on the tuning set, 5-fold cross-validated by clip)" in r.stdout
    tuned = json.loads((out / "metrics.json").read_text())
    # the K classifier fitted on valid, then used; the eigengap's sharpness tuned beside it as the fallback
    decode = tuned["config"]["decode"]  # the decoding used, as DecodeParams' fields (what package-model stores)
    assert decode["k_model"]["classes"] and len(decode["k_model"]["coef"][0]) == len(FEATURES)
    assert tuple(decode["k_model"]["features"]) == FEATURES
    assert decode["k_sharpness"] == tuned["tuned"]["k_sharpness"]
    assert 0 <= tuned["tuned"]["k_accuracy"] <= 1 and 0 <= tuned["tuned"]["k_eigengap_accuracy"] <= 1
    figures = {"bars_per_set.png", "per_k.png", "clip_best.png", "clip_worst.png"}
    assert {p.name for p in out.iterdir()} >= {"summary.md", "clips.csv", "metrics.json"} | figures
    assert "![per_k.png](per_k.png)" in (out / "summary.md").read_text()
    client = MlflowClient(url)
    exp = client.get_experiment_by_name("eval-http")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["evaluate.k_mode"] == "auto"
    metrics = run.data.metrics
    assert 0 <= metrics["eval/valid/all/note_f1"] <= 1 and "eval/unseen-soundfont/all/k_est" in metrics
    assert [i.dataset.digest for i in run.inputs.dataset_inputs]
    import csv

    rows = list(csv.DictReader((out / "clips.csv").open()))
    assert rows and all(0 <= float(r["register_est"]) <= 1 and 0 <= float(r["register_ref"]) <= 1 for r in rows)
    pairs = {(r["set"], r["parts"]) for r in rows if r["k"] == "2"}
    for name, parts in pairs:  # every 2-part clip's pair of families reaches MLflow
        assert f"eval/{name}/pair/{parts.replace('+', '_and_')}/register_est" in metrics
    assert (out / "register_per_pair.png").exists() == bool(pairs)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} >= {
        "report/summary.md", "report/clips.csv", "report/metrics.json", "report/per_k.png"}  # fmt: skip
    assert list((root / "artifacts").rglob("summary.md"))  # uploaded through the server, not written locally


def test_evaluate_bad_input_fails_before_work(shards, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cases = [
        (["--checkpoint", str(bad), "--data", shards], "bad.pt"),
        (["--checkpoint", str(GOLDEN), "--data", shards, "--sets", "nope"], "no set 'nope'"),
        (["--checkpoint", str(GOLDEN), "--data", str(tmp_path)], "no manifest"),
    ]
    for args, expected in cases:
        r = run_cli("evaluate", *args, "--no-mlflow", "--out", str(tmp_path / "r"))
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and expected in last and last.startswith("mixscribe: error:"), r.stderr[-2000:]
    assert not (tmp_path / "r").exists()


def test_a_set_without_ground_truth_is_refused(shards, tmp_path):
    import pyarrow.parquet as pq

    from mixscribe.errors import MixscribeError
    from mixscribe.evaluate.runner import set_tables

    with pytest.raises(MixscribeError, match="no set 'train'"):
        set_tables(shards, ["train"])
    tables = set_tables(shards, ["valid"])
    assert tables["valid"].num_rows >= 1
    # strip the notes of every clip: the set has nothing to score against
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    for f in (copy / "clips").glob("*.parquet"):
        t = pq.read_table(f)
        empty = t.set_column(t.schema.get_field_index("notes"), "notes", [[[] for _ in range(t.num_rows)]])
        pq.write_table(empty.replace_schema_metadata(t.schema.metadata), f)
    with pytest.raises(MixscribeError, match="no clip with ground-truth notes"):
        set_tables(str(copy), ["valid"])


def test_thresholds_are_tuned_on_the_validation_set_only(shards):
    from mixscribe.config import to_dict
    from mixscribe.evaluate.runner import EvalConfig, _cluster_tuning_clips, set_tables, _tuning_clips, evaluate_checkpoint
    from mixscribe.evaluate.thresholds import tune_clustering, tune_thresholds

    one = evaluate_checkpoint(str(GOLDEN), shards, EvalConfig(sets=("unseen-soundfont",), max_clips_per_set=1))
    two = evaluate_checkpoint(str(GOLDEN), shards, EvalConfig(sets=("unseen-soundfont",), max_clips_per_set=2))
    assert {r["set"] for r in one.rows} == {"unseen-soundfont"}  # the tuning set is not scored unless asked
    assert (one.config.decode.frame_threshold, one.config.decode.onset_threshold) == (
        two.config.decode.frame_threshold, two.config.decode.onset_threshold)
    valid = set_tables(shards, ["valid"])["valid"]
    expected = tune_thresholds(_tuning_clips(GOLDEN.read_bytes(), valid))
    assert dataclasses.replace(one.tuned, pool_power=None, cluster_sharpness=None, sep_note_f1=None) == expected
    assert one.config.decode.frame_threshold == expected.frame_threshold
    shape = expected.note_shape()  # the note shape is tuned too, and is what the scoring used
    assert set(shape) == {"min_note_frames", "energy_tolerance", "infer_onsets"}
    assert all(getattr(one.config.decode, k) == v for k, v in shape.items())
    assert "tuned on `valid`" in one.markdown() and f"gaps up to {shape['energy_tolerance']} frames" in one.markdown()
    # then the clustering, on the same clips' notes at those thresholds and shape, with their true K
    at_tuned = EvalConfig().with_decode(onset_threshold=expected.onset_threshold,
                                        frame_threshold=expected.frame_threshold, **shape)  # fmt: skip
    clustering = tune_clustering(_cluster_tuning_clips(GOLDEN.read_bytes(), valid, to_dict(at_tuned)))
    assert set(clustering) == {"pool_power", "cluster_sharpness", "sep_note_f1"}
    assert one.tuned.clustering() == {k: clustering[k] for k in ("pool_power", "cluster_sharpness")}
    assert (one.config.decode.pool_power, one.config.decode.cluster_sharpness) == (
        clustering["pool_power"], clustering["cluster_sharpness"])
    assert f"pooled with Y_F^{clustering['pool_power']:g}, affinity exp({clustering['cluster_sharpness']:g} cos)" in one.markdown()
    fixed = evaluate_checkpoint(str(GOLDEN), shards, EvalConfig(sets=("valid",), tune_on="", max_clips_per_set=1))
    assert fixed.tuned is None and fixed.config.decode.onset_threshold == 0.5 and "fixed (not tuned)" in fixed.markdown()


def test_the_backend_is_checked_and_named_in_the_report(shards):
    """Evaluation runs float32 (machine-independent figures) unless told to score what transcribe runs;
    auto is resolved before any work, so the report says what ran."""
    from mixscribe.errors import ConfigError
    from mixscribe.evaluate.runner import METRICS, EvalConfig, EvalResult, evaluate_checkpoint
    from mixscribe.transcription.inference import resolve_backend

    one = EvalConfig(sets=("valid",), tune_on="", max_clips_per_set=1)
    f32 = evaluate_checkpoint(str(GOLDEN), shards, one)
    auto = evaluate_checkpoint(str(GOLDEN), shards, dataclasses.replace(one, backend="auto"))
    assert (f32.config.backend, auto.config.backend) == ("float32", resolve_backend("auto"))
    assert abs(auto.rows[0]["frame_f1"] - f32.rows[0]["frame_f1"]) < 0.05  # the same clip, close posteriorgrams

    with pytest.raises(ConfigError, match="evaluate.backend"):
        EvalConfig(backend="fp8").validate()
    row = {"set": "chorales", "clip": "c0", "k": 2, **{m: 0.5 for m in METRICS}}
    assert "backend" not in EvalResult(EvalConfig(), [row]).markdown()
    assert "; model run with the bf16 backend; K given." in EvalResult(EvalConfig(backend="bf16"), [row]).markdown()


def test_a_report_of_another_transcriber_claims_none_of_our_decoding():
    from mixscribe.evaluate.runner import METRICS, EvalConfig, EvalResult

    row = {"set": "chorales", "clip": "c0", "k": 2, **{m: 0.5 for m in METRICS}}
    ours = EvalResult(EvalConfig(), [row]).markdown()
    theirs = EvalResult(EvalConfig(), [row], label="Basic Pitch 0.4.0 (its own decoding)").markdown()
    assert ours.startswith("Thresholds: onset 0.5, frame 0.3 (notes longer than 7.5 frames, gaps up to 11 frames")
    assert theirs.startswith("Basic Pitch 0.4.0 (its own decoding); K given.") and "Thresholds" not in theirs


def test_fixed_threshold_evaluation_decodes_a_packaged_model_as_it_transcribes():
    """No tuning set: the shipped model's stored decoding is used where the config does not set a field;
    a field the config sets wins; a checkpoint without stored decoding keeps the config's."""
    from mixscribe import load_model
    from mixscribe.evaluate.runner import EvalConfig, stored_decoding
    from mixscribe.model.checkpoint import DEFAULT_CHECKPOINT

    stored = load_model(DEFAULT_CHECKPOINT).decode_params
    cfg, taken = stored_decoding(EvalConfig(tune_on="").with_decode(onset_threshold=0.6), str(DEFAULT_CHECKPOINT),
                                 {"onset_threshold"})  # fmt: skip
    d = cfg.decode
    assert d.onset_threshold == 0.6 and "onset_threshold" not in taken
    assert (d.frame_threshold, d.pool_power, d.cluster_sharpness) == (stored.frame_threshold, stored.pool_power,
                                                                      stored.cluster_sharpness)  # fmt: skip
    assert {"frame_threshold", "pool_power", "cluster_sharpness", "k_model"} <= set(taken)
    assert dataclasses.replace(d, onset_threshold=stored.onset_threshold) == stored  # every other stored field
    tuned, none = stored_decoding(EvalConfig(tune_on="valid"), str(DEFAULT_CHECKPOINT), set())
    assert tuned == EvalConfig(tune_on="valid") and none == []  # tuning decides: nothing taken
    plain, none = stored_decoding(EvalConfig(tune_on=""), "tests/data/golden.pt", set())
    assert plain == EvalConfig(tune_on="") and none == []

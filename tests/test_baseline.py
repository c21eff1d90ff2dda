"""Basic Pitch baseline: installed into its own venv (not a mixscribe dependency), scored with our metrics.
Slow: the first run installs Basic Pitch from the package index."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_basic_pitch_baseline_on_a_tiny_set(ray_local, tmp_path):
    import dataclasses

    from mlflow.tracking import MlflowClient

    from mixscribe.config import load_synth_config
    from mixscribe.synth.pipeline import run_synth

    cfg = load_synth_config("tiny")
    cfg = dataclasses.replace(cfg, splits=dataclasses.replace(cfg.splits, fractions={"valid": 1.0}))
    run_synth(cfg, str(tmp_path / "shards"), 3)
    r = run_cli("baseline", "--data", str(tmp_path / "shards"), "--sets", "valid", "--out", str(tmp_path / "rep"),
                "--workdir", str(tmp_path), env={"MLFLOW_TRACKING_URI": ""}, timeout=1200)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Basic Pitch 0.4.0" in r.stdout and "| valid | all | 3 |" in r.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mixscribe").experiment_id])
    assert run.info.run_name == "baseline/basic-pitch"
    assert run.data.metrics["eval/valid/all/note_f1"] > 0.2  # Basic Pitch transcribes FluidSynth audio well
    import importlib.util

    assert importlib.util.find_spec("basic_pitch") is None  # never installed into mixscribe's environment

"""Generalisation studies: fold configs, the matrix with its seen-vs-unseen gap, and a real 2-fold study
on the tiny preset (slow: two whole pipelines)."""

from __future__ import annotations

import pytest

from mixscribe.evaluate.study import StudyConfig, fold_config, heatmap, load_study, matrix_from_metrics
from tests.conftest import run_cli


def test_fold_config_holds_out_one_family_and_keeps_the_rest():
    cfg = StudyConfig(name="s", base="tiny", holdout_families=("opl3", "tim"), overrides={"train": {"epochs": 1}})
    fold = fold_config(cfg, "tim")
    assert fold["synth"]["splits"]["holdout_sf_family"] == "tim"
    assert fold["synth"]["splits"]["holdout_gm_families"] == ["brass", "ethnic"]  # untouched
    assert fold["train"]["epochs"] == 1 and fold["train"]["crop_frames"] == 96
    assert fold["pipeline"]["experiment"] == "study-s"


def test_matrix_and_gap(tmp_path):
    metrics = {
        "tim": {"eval/valid/all/note_f1": 0.8, "eval/unseen-soundfont/all/note_f1": 0.5, "eval/valid/2mix/note_f1": 0.9},
        "opl3": {"eval/valid/all/note_f1": 0.7, "eval/unseen-soundfont/all/note_f1": 0.2, "eval/unseen-family/all/note_f1": 0.4},
    }
    m = matrix_from_metrics(metrics, "note_f1")
    assert m.sets == ["valid", "unseen-soundfont", "unseen-family"]
    assert m.gap("tim") == pytest.approx(0.3) and m.gap("opl3") == pytest.approx(0.5)
    assert "| tim | 80.0 | 50.0 | - | +30.0 |" in m.markdown()
    assert m.csv().splitlines()[0] == "held_out_family,valid,unseen-soundfont,unseen-family,gap"
    assert heatmap(m, tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_study_config(tmp_path):
    from mixscribe.errors import ConfigError, MixscribeError

    bad = tmp_path / "s.yaml"
    bad.write_text("study:\n  holdout_families: []\n")
    with pytest.raises(ConfigError, match="study.holdout_families"):
        load_study(str(bad))
    bad.write_text("train: {}\n")
    with pytest.raises(MixscribeError, match="no study: section"):
        load_study(str(bad))
    assert load_study("mixscribe/presets/study-loo.yaml").holdout_families == ("fluidr3", "tim", "opl3")


@pytest.mark.slow
def test_two_fold_study_end_to_end(tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = tmp_path / "study.yaml"
    cfg.write_text("study:\n  name: t\n  base: tiny\n  holdout_families: [opl3, tim]\n")
    r = run_cli("study", str(cfg), "--workdir", str(tmp_path), env={"MLFLOW_TRACKING_URI": ""}, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {p.name for p in (tmp_path / "t").iterdir()} >= {"matrix.md", "matrix.csv", "matrix.png"}
    assert "| opl3 |" in (tmp_path / "t" / "matrix.md").read_text()
    client = MlflowClient(f"sqlite:///{tmp_path / 't' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("study-t").experiment_id])
    study = [x for x in runs if x.data.tags.get("mixscribe.stage") == "study"][0]
    folds = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == study.info.run_id]
    assert len(folds) == 2 and "study/tim/gap/note_f1" in study.data.metrics

"""Generalisation studies: fold configs, the matrix with its seen-vs-unseen gap, and a real 2-fold study
on the tiny preset (slow: two whole pipelines)."""

from __future__ import annotations

import dataclasses

import pytest

from mixscribe.evaluate.study import StudyConfig, fold_config, heatmap, load_study, matrix_from_metrics
from tests.conftest import run_cli


def test_fold_config_holds_out_one_family_and_keeps_the_rest():
    cfg = StudyConfig(name="s", base="tiny", holdout_families=("opl3", "tim"), overrides={"train": {"epochs": 1}})
    fold = fold_config(cfg, "tim")
    assert fold["synth"]["splits"]["holdout_sf_family"] == "tim"
    assert fold["synth"]["splits"]["holdout_gm_families"] == ["brass", "ethnic"]  # untouched
    assert fold["train"]["epochs"] == 1 and fold["train"]["remix"]["crop_frames"] == 96
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
    assert m.rotation()[""]["valid"] == pytest.approx((0.75, 0.05))
    assert m.rotation()[""]["unseen-soundfont"] == pytest.approx((0.35, 0.15))
    assert "| mean over folds | 75.0 | 35.0 | 40.0 | +40.0 |" in m.markdown()
    assert "| largest distance from the mean | ±5.0 | ±15.0 | ±0.0 | |" in m.markdown()
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


def test_arms_run_every_family_with_their_own_overrides():
    cfg = StudyConfig(name="p", base="tiny", holdout_families=("opl3", "tim"),
                      arms={"without": {}, "with": {"synth": {"procedural": {"seen_instruments": 40}}}})  # fmt: skip
    assert cfg.folds() == [("without", "opl3"), ("with", "opl3"), ("without", "tim"), ("with", "tim")]
    with_tim = fold_config(cfg, "tim", "with")
    assert with_tim["synth"]["procedural"] == {"seen_instruments": 40}
    assert with_tim["synth"]["splits"]["holdout_sf_family"] == "tim"
    assert "procedural" not in fold_config(cfg, "tim", "without")["synth"]
    assert StudyConfig(name="x").folds() == [("", "fluidr3"), ("", "tim"), ("", "opl3")]  # no arms: as before


def test_arm_comparison_reports_each_arm_and_its_change():
    from mixscribe.evaluate.study import arm_comparison

    cfg = StudyConfig(name="p", holdout_families=("tim",), arms={"without": {}, "with": {}},
                      compare_metrics=("note_f1",))  # fmt: skip
    metrics = {
        "without/tim": {"eval/valid/all/note_f1": 0.60, "eval/unseen-soundfont/all/note_f1": 0.30},
        "with/tim": {"eval/valid/all/note_f1": 0.62, "eval/unseen-soundfont/all/note_f1": 0.45},
    }
    text = arm_comparison(cfg, metrics)
    assert "| tim | valid | 60.0 | 62.0 | +2.0 |" in text
    assert "| tim | unseen-soundfont | 30.0 | 45.0 | +15.0 |" in text
    assert "| tim | gap (seen - unseen SoundFont) | 30.0 | 17.0 | -13.0 |" in text
    assert "| **mean over folds** | unseen-soundfont | 30.0 | 45.0 | +15.0 |" in text


def test_an_arm_that_builds_on_another_is_also_compared_with_it():
    """What an addition is worth is its change from the arm it extends, not only from the first arm."""
    from mixscribe.evaluate.study import arm_comparison

    cfg = StudyConfig(name="p", holdout_families=("tim",), arms={"a": {}, "b": {}, "b-plus": {}},
                      compare_metrics=("note_f1",), builds_on={"b-plus": "b"})  # fmt: skip
    assert cfg.comparisons() == [("b", "a"), ("b-plus", "a"), ("b-plus", "b")]
    metrics = {f"{arm}/tim": {"eval/valid/all/note_f1": v} for arm, v in (("a", 0.5), ("b", 0.6), ("b-plus", 0.65))}
    text = arm_comparison(cfg, metrics)
    assert "changes from `a`, `b-plus` also from `b`" in text
    assert "| held-out family | set | a | b | b-plus | b - a | b-plus - a | b-plus - b |" in text
    assert "| tim | valid | 50.0 | 60.0 | 65.0 | +10.0 | +15.0 | +5.0 |" in text
    metrics["b-plus/tim"] = {"eval/valid/all/note_f1": 0.59996}  # a fall that rounds to nothing
    assert "| tim | valid | 50.0 | 60.0 | 60.0 | +10.0 | +10.0 | +0.0 |" in arm_comparison(cfg, metrics)
    # building on the first arm adds no second column
    assert StudyConfig(arms={"a": {}, "b": {}}, builds_on={"b": "a"}).comparisons() == [("b", "a")]


def test_arms_are_decided_on_the_mean_over_the_rotation():
    """One fold favouring an arm does not decide: the mean over held-out families does."""
    from mixscribe.evaluate.study import arm_comparison, decision

    cfg = StudyConfig(name="p", holdout_families=("tim", "opl3"), arms={"a": {}, "b": {}}, metric="sep_note_f1",
                      compare_metrics=("sep_note_f1",))  # fmt: skip
    unseen = {"a/tim": 0.50, "b/tim": 0.60, "a/opl3": 0.40, "b/opl3": 0.20}
    metrics = {k: {"eval/unseen-soundfont/all/sep_note_f1": v, "eval/valid/all/sep_note_f1": 0.7} for k, v in unseen.items()}
    assert decision(cfg, metrics).startswith("Decision rule") and "Best: `a` (45.0; `b` 40.0)" in decision(cfg, metrics)
    text = arm_comparison(cfg, metrics)
    assert "| **mean over folds** | unseen-soundfont | 45.0 | 40.0 | -5.0 |" in text and "Best: `a`" in text


def test_a_run_can_be_limited_to_some_arms_and_families_in_the_studys_order():
    from mixscribe.errors import MixscribeError
    from mixscribe.evaluate.study import selected_folds

    cfg = StudyConfig(name="p", holdout_families=("tim", "fluidr3", "opl3"), arms={"a": {}, "b": {}, "c": {}})
    assert selected_folds(cfg) == cfg.folds()
    assert selected_folds(cfg, ["c", "a"], ["opl3", "fluidr3"]) == [("a", "fluidr3"), ("c", "fluidr3"),
                                                                  ("a", "opl3"), ("c", "opl3")]  # fmt: skip
    assert selected_folds(cfg, families=["tim"]) == [("a", "tim"), ("b", "tim"), ("c", "tim")]
    with pytest.raises(MixscribeError, match=r"--arms: d not in study 'p' \(it has a, b, c\)"):
        selected_folds(cfg, ["a", "d"])
    with pytest.raises(MixscribeError, match="--families: sonatina not in study 'p'"):
        selected_folds(cfg, families=["sonatina"])
    with pytest.raises(MixscribeError, match="it has no arms"):
        selected_folds(StudyConfig(name="q"), ["a"])


def test_arms_are_compared_only_on_families_every_arm_has_finished():
    """A fold one arm lacks would tilt the means (and the decision) toward an easier family."""
    from mixscribe.evaluate.study import arm_comparison

    cfg = StudyConfig(name="p", holdout_families=("tim", "opl3"), arms={"a": {}, "b": {}}, metric="sep_note_f1",
                      compare_metrics=("sep_note_f1",))  # fmt: skip
    unseen = {"a/tim": 0.50, "b/tim": 0.60, "a/opl3": 0.90}
    metrics = {k: {"eval/unseen-soundfont/all/sep_note_f1": v} for k, v in unseen.items()}
    text = arm_comparison(cfg, metrics)
    assert "families with every arm: tim)" in text and "| opl3 |" not in text
    assert "| **mean over folds** | unseen-soundfont | 50.0 | 60.0 | +10.0 |" in text and "Best: `b`" in text
    apart = {"a/opl3": metrics["a/opl3"], "b/tim": metrics["b/tim"]}  # each arm run, never on the same family
    assert "no held-out family has figures of every arm" in arm_comparison(cfg, apart)
    # an arm added later and not run anywhere yet does not hide the comparison of the others
    grown = dataclasses.replace(cfg, arms={**cfg.arms, "c": {}}, builds_on={"c": "b"})
    text = arm_comparison(grown, metrics)
    assert "Not run on any family yet, left out: c." in text and "| **mean over folds** | unseen-soundfont | 50.0 | 60.0 | +10.0 |" in text
    assert "fewer than two arms" in arm_comparison(grown, {"a/opl3": metrics["a/opl3"]})


def test_bad_arms(tmp_path):
    from mixscribe.errors import ConfigError

    bad = tmp_path / "s.yaml"
    bad.write_text("study:\n  arms: {only: {}}\n")
    with pytest.raises(ConfigError, match="study.arms: needs at least two arms"):
        load_study(str(bad))
    bad.write_text("study:\n  arms: {'a b': {}, c: {}}\n")
    with pytest.raises(ConfigError, match="study.arms: arm names"):
        load_study(str(bad))
    bad.write_text("study:\n  arms: {a: {}, b: {}}\n  builds_on: {b: c}\n")
    with pytest.raises(ConfigError, match=r"study.builds_on: names arms the study does not have: \['c'\]"):
        load_study(str(bad))
    bad.write_text("study:\n  arms: {a: {}, b: {}}\n  builds_on: {b: b}\n")
    with pytest.raises(ConfigError, match="study.builds_on: an arm cannot build on itself"):
        load_study(str(bad))
    study = load_study("mixscribe/presets/study-procedural.yaml")
    assert list(study.arms) == ["without", "with"]
    proc = fold_config(study, study.holdout_families[0], "with")["synth"]["procedural"]
    assert proc["seen_instruments"] > 0 and proc.get("unseen_instruments", 0) == 0  # same unseen set in both arms


@pytest.mark.slow
def test_two_arm_study_end_to_end(tmp_path):
    """Without and with the procedural family on the tiny preset: two pipelines, arms.md, MLflow figures."""
    from mlflow.tracking import MlflowClient

    cfg = tmp_path / "study.yaml"
    cfg.write_text("study:\n  name: a\n  base: tiny\n  holdout_families: [opl3]\n  arms:\n    without: {}\n"
                   "    with: {synth: {procedural: {seen_instruments: 40, share: 0.5}}}\n")  # fmt: skip
    bad = run_cli("study", str(cfg), "--workdir", str(tmp_path), "--arms", "wihtout", env={"MLFLOW_TRACKING_URI": ""})
    assert bad.returncode != 0 and "--arms: wihtout not in study 'a'" in bad.stderr and not (tmp_path / "a").exists()
    # One arm per run, as a study too long for one machine's lease is run: the second reads the first's figures.
    r = run_cli("study", str(cfg), "--workdir", str(tmp_path), "--arms", "without", env={"MLFLOW_TRACKING_URI": ""},
                timeout=1800)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "a" / "a-with-holdout-opl3").exists()
    first = (tmp_path / "a" / "arms.md").read_text()
    assert "fewer than two arms have figures yet" in first and "Not run on any family yet, left out: with." in first
    r = run_cli("study", str(cfg), "--workdir", str(tmp_path), "--arms", "with", env={"MLFLOW_TRACKING_URI": ""},
                timeout=1800)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "fold without/opl3: not chosen this run; its finished figures are read" in r.stdout
    arms = (tmp_path / "a" / "arms.md").read_text()
    assert "| opl3 | unseen-soundfont |" in arms and "with - without" in arms
    client = MlflowClient(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("study-a").experiment_id])
    study = [x for x in runs if x.data.tags.get("mixscribe.stage") == "study"][0]
    assert {"study/with/opl3/valid/note_f1", "study/without/opl3/gap/sep_note_f1"} <= set(study.data.metrics)
    import json

    with_fold = json.loads((tmp_path / "a" / "a-with-holdout-opl3" / "shards" / "manifest.json").read_text())
    without_fold = json.loads((tmp_path / "a" / "a-without-holdout-opl3" / "shards" / "manifest.json").read_text())
    assert with_fold["procedural_instruments"] and all(k.startswith("proc-") for k in with_fold["procedural_instruments"])
    assert without_fold["procedural_instruments"] == {}


def arm_plans(preset: str, family: str, tmp_path) -> dict:
    """Every arm's fold holding out `family`, written as the study writes it and loaded as a plan."""
    import yaml

    from mixscribe.pipeline import load_plan

    study = load_study(f"mixscribe/presets/{preset}.yaml")
    plans = {}
    for arm in study.arms:
        path = tmp_path / f"{arm}.yaml"
        path.write_text(yaml.safe_dump(fold_config(study, family, arm)))
        plans[arm] = load_plan(str(path))
    return plans


@pytest.mark.parametrize("preset", ["study-procedural", "study-same-family"])
def test_shipped_study_presets_give_valid_continuation_pipelines(preset, tmp_path):
    """Both shipped arm studies continue the default model (pipeline.init_checkpoint) and every fold is
    a plan that loads; the arms differ in exactly the studied setting."""
    plans = arm_plans(preset, "tim", tmp_path)
    assert all(plan.pipeline.init_checkpoint == "default" for plan in plans.values())
    without, with_ = plans["without"], plans["with"]
    if preset == "study-same-family":
        assert (without.train.remix.same_family_prob, with_.train.remix.same_family_prob) == (0.0, 0.5)
        assert with_.synth == without.synth and with_.pipeline.train_stages == ("encoder",)
    else:
        assert with_.synth.procedural.seen_instruments > 0 == without.synth.procedural.seen_instruments
        assert with_.train == without.train


def test_lines_study_preset_continues_both_branches_on_line_stems(tmp_path):
    """study-lines: one fold, the default model continued (AMT then encoder) on data whose stems are half
    one-voice lines; everything else is the default preset."""
    import yaml

    from mixscribe.pipeline import load_plan

    study = load_study("mixscribe/presets/study-lines.yaml")
    assert study.folds() == [("", "tim")]
    path = tmp_path / "fold.yaml"
    path.write_text(yaml.safe_dump(fold_config(study, "tim")))
    plan, default = load_plan(str(path)), load_plan("default")
    assert plan.pipeline.init_checkpoint == "default" and plan.pipeline.train_stages == ("amt", "encoder")
    assert (plan.synth.generator.line_prob, default.synth.generator.line_prob) == (0.5, 0.0)
    assert (plan.train_for("amt").epochs, plan.train_for("encoder").epochs) == (3, 5)
    assert plan.train == default.train


def test_register_study_preset_varies_only_where_register_comes_from(tmp_path):
    """study-register: every arm adds the same-register split to data and evaluation; remix changes only
    train.register_match_prob, synth only generator.shared_register_prob."""
    plans = arm_plans("study-register", "opl3", tmp_path)
    without, remix, synth = plans["without"], plans["remix"], plans["synth"]
    assert "same-register" in without.evaluate.sets and without.synth.splits.fractions["same-register"] > 0
    assert (without.train.remix.register_match_prob, remix.train.remix.register_match_prob) == (0.0, 0.5)
    assert remix.synth == without.synth and synth.train == without.train
    assert (without.synth.generator.shared_register_prob, synth.synth.generator.shared_register_prob) == (0.0, 0.5)
    assert synth.synth.splits.holdout_sf_family == "opl3"


def test_timbre_study_preset_varies_only_the_training_stems_timbre(tmp_path):
    """study-timbre: whole-range changes only the generator's range; varied, coloured and other-pitch add
    one change to whole-range stems and are read against whole-range; the recipe arms, the wider
    exclusion and the note-level loss change one setting of other-pitch and are read against it."""
    plans = arm_plans("study-timbre", "fluidr3", tmp_path)
    without, whole = plans["without"], plans["whole-range"]
    varied, coloured = plans["whole-range-varied"], plans["whole-range-coloured"]
    assert (without.synth.generator.whole_range_prob, whole.synth.generator.whole_range_prob) == (0.0, 1.0)
    assert dataclasses.replace(whole.synth, generator=without.synth.generator) == without.synth
    assert whole.train == without.train and whole.evaluate == without.evaluate
    assert (whole.synth.timbre.prob, varied.synth.timbre.prob) == (0.0, 0.5)
    assert varied.synth.timbre.splits == ("train",)
    assert dataclasses.replace(varied.synth, timbre=whole.synth.timbre) == whole.synth
    assert varied.train == whole.train and varied.evaluate == whole.evaluate
    assert (whole.train.remix.augment.p_stem_colour, coloured.train.remix.augment.p_stem_colour) == (0.0, 0.5)
    assert coloured.synth == whole.synth and coloured.evaluate == whole.evaluate
    assert dataclasses.replace(coloured.train.remix.augment, p_stem_colour=0.0) == whole.train.remix.augment
    assert varied.synth.splits.holdout_sf_family == "fluidr3" and "same-register" in varied.evaluate.sets
    other = plans["whole-range-other-pitch"]
    assert (whole.train.timbre_positives, other.train.timbre_positives) == ("all", "other-pitch")
    assert other.synth == whole.synth and other.evaluate == whole.evaluate and other.pipeline == whole.pipeline
    assert dataclasses.replace(other.train, timbre_positives="all") == whole.train
    recipe = {"other-pitch-paper-lr": ("lr", 3e-4), "other-pitch-fp32": ("precision", "float32"),
              "other-pitch-long-crops": ("remix", dataclasses.replace(whole.train.remix, crop_frames=600)),
              "other-pitch-wide": ("timbre_exclude_semitones", 3), "other-note": ("timbre_positives", "other-note")}
    for arm, (name, value) in recipe.items():  # one training setting each, on top of other-pitch
        plan = plans[arm]
        assert plan.synth == other.synth and plan.evaluate == other.evaluate and plan.pipeline == other.pipeline
        assert getattr(plan.train, name) == value != getattr(other.train, name)
        assert dataclasses.replace(plan.train, **{name: getattr(other.train, name)}) == other.train
    assert load_study("mixscribe/presets/study-timbre.yaml").builds_on == {
        "whole-range-varied": "whole-range", "whole-range-coloured": "whole-range", "whole-range-other-pitch": "whole-range",
        **{arm: "whole-range-other-pitch" for arm in recipe}}
    for plan in plans.values():  # new encoders on the shipped AMT branch, as in the register study
        assert plan.pipeline.init_checkpoint == "default" and plan.pipeline.init_branches == ("amt",)
        assert plan.pipeline.train_stages == ("encoder",) and plan.train_for("encoder").epochs == 8
    assert load_study("mixscribe/presets/study-timbre.yaml").folds()[:4] == [
        ("without", "tim"), ("whole-range", "tim"), ("whole-range-varied", "tim"), ("whole-range-coloured", "tim")]


def test_fresh_encoder_register_study_trains_new_encoders_on_the_shipped_amt_branch(tmp_path):
    """study-register-fresh: both arms take only the AMT branch from the shipped model and train the
    default recipe's encoder epochs; remix changes only train.register_match_prob; whole folds first."""
    plans = arm_plans("study-register-fresh", "tim", tmp_path)
    without, remix = plans["without"], plans["remix"]
    for plan in (without, remix):
        assert plan.pipeline.init_checkpoint == "default" and plan.pipeline.init_branches == ("amt",)
        assert plan.pipeline.train_stages == ("encoder",) and plan.train_for("encoder").epochs == 8
        assert "same-register" in plan.evaluate.sets
    assert (without.train.remix.register_match_prob, remix.train.remix.register_match_prob) == (0.0, 0.5)
    assert remix.synth == without.synth and remix.evaluate == without.evaluate
    assert load_study("mixscribe/presets/study-register-fresh.yaml").folds()[:2] == [("without", "tim"), ("remix", "tim")]


def test_arms_are_compared_clip_by_clip_with_their_standard_error(tmp_path):
    """The paired table reads each fold's report (clips.csv), pairs the clips both arms scored, and gives
    the mean change and its standard error per fold and pooled over the folds done; a fold not yet run
    is named, and the CLI prints the same without running anything."""
    import csv

    from mixscribe.evaluate.study import paired_comparison, pipeline_name

    cfg = StudyConfig(name="s", base="tiny", holdout_families=("tim", "opl3", "fluidr3"), metric="sep_note_f1",
                      compare_metrics=("sep_note_f1",), arms={"a": {}, "b": {"train": {"epochs": 3}}})  # fmt: skip
    scores = {("a", "tim"): [0.5, 0.6, 0.7], ("b", "tim"): [0.6, 0.6, 0.9],  # changes +10, 0, +20
              ("a", "opl3"): [0.4, 0.4], ("b", "opl3"): [0.3, 0.5]}  # changes -10, +10
    for (arm, fam), values in scores.items():
        report = tmp_path / "s" / pipeline_name(cfg, arm, fam) / "report"
        report.mkdir(parents=True)
        with (report / "clips.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["set", "clip", "k", "sep_note_f1"])
            w.writerows(["valid", f"clip-{i}", 2, v] for i, v in enumerate(values))
            w.writerow(["valid", "solo", 1, 0.9 if arm == "a" else 0.1])  # one part: not a separation figure
    text = paired_comparison(cfg, tmp_path / "s")
    assert "Folds done: tim, opl3; not yet: fluidr3." in text and "not the audio" not in text
    assert "| tim | valid | +10.0 ± 5.8 (3) |" in text  # mean of (10, 0, 20), sd 10 / sqrt 3
    assert "| opl3 | valid | +0.0 ± 10.0 (2) |" in text
    assert "| **all folds** | valid | +6.0 ± 5.1 (5) |" in text  # (10, 0, 20, -10, 10): sd 11.4 / sqrt 5
    r = run_cli("study", str(_write_study(tmp_path, cfg)), "--workdir", str(tmp_path), "--summary")
    assert r.returncode == 0 and "| tim | valid | +10.0 ± 5.8 (3) |" in r.stdout, r.stderr
    # a third arm run on one fold only: its fold is compared, the others' cells are empty
    cfg = dataclasses.replace(cfg, arms={**cfg.arms, "c": {"train": {"epochs": 4}}})
    report = tmp_path / "s" / pipeline_name(cfg, "c", "tim") / "report"
    report.mkdir(parents=True)
    (report / "clips.csv").write_text("set,clip,k,sep_note_f1\nvalid,clip-0,2,0.8\n")
    text = paired_comparison(cfg, tmp_path / "s")
    assert "Folds done: tim, opl3 (arms not yet run: c); not yet: fluidr3." in text
    assert "| tim | valid | +10.0 ± 5.8 (3) | +30.0 (1) |" in text and "| opl3 | valid | +0.0 ± 10.0 (2) | - |" in text
    # arms that change training clips only score the same audio; one that changes every split does not
    train_only = {"whole": {"synth": {"generator": {"whole_range_prob": 1.0}}}, "varied": {"synth": {"timbre": {"prob": 0.5}}}}
    assert "not the audio" not in paired_comparison(dataclasses.replace(cfg, arms={**cfg.arms, **train_only}), tmp_path / "s")
    lines = {"lines": {"synth": {"generator": {"line_prob": 0.5}}}}
    assert "pairs share a clip index, not the audio" in paired_comparison(dataclasses.replace(cfg, arms={**cfg.arms, **lines}), tmp_path / "s")
    # an arm that builds on another is paired with it too, clip by clip: c - b on tim is 0.8 - 0.6
    text = paired_comparison(dataclasses.replace(cfg, builds_on={"c": "b"}), tmp_path / "s")
    assert "Paired changes from `a`, `c` also from `b`" in text and "| b - a | c - a | c - b |" in text
    assert "| tim | valid | +10.0 ± 5.8 (3) | +30.0 (1) | +20.0 (1) |" in text


def test_finished_folds_are_kept_in_the_working_folders_layout_and_never_overwritten(tmp_path):
    """--keep copies what the comparisons read (clips, summary, metrics, curves, the fold's config) of
    finished pipelines only; --summary then reads the kept copy alone; a kept file that differs is an
    error naming it, and an unchanged one is not rewritten."""
    from mixscribe.evaluate.study import pipeline_name

    cfg = StudyConfig(name="s", base="tiny", holdout_families=("tim", "opl3"), metric="sep_note_f1",
                      compare_metrics=("sep_note_f1",), arms={"a": {}, "b": {"train": {"epochs": 3}}})  # fmt: skip
    work = tmp_path / "work" / "s"
    for arm, fam, score in (("a", "tim", 0.5), ("b", "tim", 0.7)):
        pipe = work / pipeline_name(cfg, arm, fam)
        (pipe / "report").mkdir(parents=True)
        (pipe / "curves").mkdir()
        (pipe / "report" / "clips.csv").write_text(f"set,clip,k,sep_note_f1\nvalid,c0,2,{score}\n")
        for name in ("summary.md", "metrics.json"):
            (pipe / "report" / name).write_text(f"{arm} {name}")
        (pipe / "report" / "tsne_embeddings.png").write_bytes(b"big")
        (pipe / "curves" / "encoder.csv").write_text("epoch\n0\n")
        (work / "folds").mkdir(exist_ok=True)
        (work / "folds" / f"{arm}-{fam}.yaml").write_text(f"arm: {arm}\n")
    (work / pipeline_name(cfg, "a", "opl3") / "models").mkdir(parents=True)  # started, not finished
    study = _write_study(tmp_path, cfg)
    r = run_cli("study", str(study), "--workdir", str(tmp_path / "work"), "--keep", str(tmp_path / "kept"))
    assert r.returncode == 0 and "kept 10 new file(s)" in r.stdout, r.stderr
    kept = tmp_path / "kept" / "s"
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*") if p.is_file()) == sorted(
        [f"{pipeline_name(cfg, a, 'tim')}/{f}" for a in "ab" for f in
         ("report/clips.csv", "report/summary.md", "report/metrics.json", "curves/encoder.csv")]
        + ["folds/a-tim.yaml", "folds/b-tim.yaml"])  # fmt: skip
    r = run_cli("study", str(study), "--workdir", str(tmp_path / "kept"), "--summary")
    assert r.returncode == 0 and "| tim | valid | +20.0 (1) |" in r.stdout, r.stderr
    r = run_cli("study", str(study), "--workdir", str(tmp_path / "work"), "--keep", str(tmp_path / "kept"))
    assert r.returncode == 0 and "kept 0 new file(s)" in r.stdout
    (work / pipeline_name(cfg, "b", "tim") / "report" / "clips.csv").write_text("set,clip,k,sep_note_f1\n")
    r = run_cli("study", str(study), "--workdir", str(tmp_path / "work"), "--keep", str(tmp_path / "kept"))
    assert r.returncode != 0 and "clips.csv: already kept with other contents" in r.stderr
    assert "0.7" in (kept / pipeline_name(cfg, "b", "tim") / "report" / "clips.csv").read_text()


def _write_study(tmp_path, cfg: StudyConfig):
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"study": {"name": cfg.name, "base": cfg.base, "metric": cfg.metric,
                                              "holdout_families": list(cfg.holdout_families),
                                              "compare_metrics": list(cfg.compare_metrics), "arms": cfg.arms}}))
    return path

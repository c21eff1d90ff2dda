import re

import pytest
import yaml

from mixscribe.config import (ModelConfig, SynthConfig, available_presets, flatten, from_dict, load_section,
                              load_synth_config, to_dict)
from mixscribe.errors import ConfigError


def test_presets_load_and_validate():
    assert {"demo", "tiny", "full"} <= set(available_presets())
    for name in available_presets():
        cfg = load_synth_config(name)
        assert isinstance(cfg, SynthConfig)


def test_round_trip_through_dict():
    cfg = load_synth_config("tiny")
    assert from_dict(SynthConfig, to_dict(cfg)) == cfg
    flat = flatten(to_dict(cfg))
    assert flat["generator.clip_frames"] == 256
    assert flat["splits.holdout_sf_family"] == "opl3"


@pytest.mark.parametrize(
    "data, field",
    [
        ({"stems_mx": 3}, "synth.stems_mx"),
        ({"generator": {"clip_frame": 3}}, "synth.generator.clip_frame"),
        ({"generator": {"clip_frames": "long"}}, "synth.generator.clip_frames"),
        ({"generator": {"near_prob": 1.5}}, "generator.near_prob"),
        ({"render": {"reverb": "yes"}}, "synth.render.reverb"),
        ({"programs": [0, 200]}, "synth.programs"),
        ({"splits": {"fractions": {"train": 1, "test": 1}}}, "splits.fractions"),
        ({"splits": {"holdout_gm_families": ["kazoo"]}}, "splits.holdout_gm_families"),
        ({"stems_min": 3, "stems_max": 2}, "synth.stems_min"),
    ],
)
def test_bad_fields_are_named(data, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        from_dict(SynthConfig, data, prefix="synth.").validate()


def test_the_scale_presets_train_one_branch_each_ten_times_on_the_same_whole_range_clips():
    """scale-amt continues the shipped AMT branch (and keeps its encoder); scale-encoder trains a new
    encoder with other-pitch positives on scale-amt's AMT branch, so its model is both scale-ups; their
    synth sections are one, so the two pipelines render the same clips."""
    from mixscribe.pipeline import load_plan

    amt, enc = load_plan("scale-amt"), load_plan("scale-encoder")
    assert amt.synth == enc.synth and amt.synth.generator.whole_range_prob == 1.0 and amt.pipeline.num_clips == 9600
    assert amt.pipeline.train_stages == ("amt",) and set(amt.pipeline.init_branches) == {"amt", "encoder"}
    assert enc.pipeline.train_stages == ("encoder",) and enc.pipeline.init_branches == ("amt",)
    assert (amt.pipeline.init_checkpoint, enc.pipeline.init_checkpoint) == ("default", "pipeline:scale-amt")
    a, e = amt.train_for("amt"), enc.train_for("encoder")
    assert (a.timbre_positives, e.timbre_positives) == ("all", "other-pitch")
    examples = [c.epochs * c.steps_per_epoch * c.batch_size * c.workers for c in (a, e)]
    assert examples == [320_000, 480_000]  # about 10x the shipped branches' 34,000 and 50,000


def test_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such preset"):
        load_synth_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_synth_config(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_synth_config(str(tmp_path / "missing.yaml"))


def test_pipeline_stage_train_overrides_one_stage_and_bad_fields_are_named(tmp_path):
    from mixscribe.pipeline import load_plan

    plan = load_plan("default")
    assert plan.train_for("amt").epochs == plan.train.epochs == 16
    assert plan.train_for("encoder").epochs == 8 and plan.train_for("encoder").lr == plan.train.lr
    assert plan.train_for("encoder", "amt.pt").init_checkpoint == "amt.pt"
    for stage_train, field in [({"joint": {"epochs": 2}}, "pipeline.stage_train.joint"),
                               ({"encoder": {"epoch": 2}}, "train.epoch"),
                               ({"encoder": {"epochs": 0}}, "train.epochs"),
                               ({"encoder": {"stage": "amt"}}, "pipeline.stage_train.encoder.stage")]:  # fmt: skip
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump({"pipeline": {"train_stages": ["amt", "encoder"], "stage_train": stage_train}}))
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_plan(str(path))


def test_pipeline_init_branches_are_checked(tmp_path):
    from mixscribe.pipeline import load_plan

    assert load_plan("default").pipeline.init_branches == ("amt", "encoder")  # a continuation keeps both
    for pipeline in [{"init_branches": ["amt"]},  # nothing to take the AMT branch from
                     {"init_checkpoint": "default", "init_branches": []},
                     {"init_checkpoint": "default", "init_branches": ["decoder"]}]:  # fmt: skip
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump({"pipeline": pipeline}))
        with pytest.raises(ConfigError, match=r"pipeline\.init_branches"):
            load_plan(str(path))


def test_a_start_from_another_pipeline_is_checked_by_name_and_found_at_run_time(tmp_path):
    """pipeline:NAME names a pipeline of the run's workdir, which a config cannot see: only the name's
    form is checked when the config loads (the run looks the model up before any work)."""
    from mixscribe.pipeline import load_plan

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"init_checkpoint": "pipeline:scale-amt", "init_branches": ["amt"]}}))
    assert load_plan(str(path)).pipeline.init_checkpoint == "pipeline:scale-amt"
    for spec in ("pipeline:", "pipeline:../elsewhere", "pipeline:a/b"):
        path.write_text(yaml.safe_dump({"pipeline": {"init_checkpoint": spec}}))
        with pytest.raises(ConfigError, match=r"pipeline\.init_checkpoint.*expected pipeline:NAME"):
            load_plan(str(path))


def test_fresh_branches_keep_the_named_branch_bit_for_bit_and_reseed_the_other(tmp_path):
    """A new encoder on a trained AMT branch: the AMT weights copied exactly, the encoder's drawn anew
    (the same for the same seed, so a resumed run starts where the first did) and its examples reset."""
    import torch

    from mixscribe import load_model as load_transcriber
    from mixscribe.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, load_model
    from mixscribe.pipeline import with_fresh_branches

    a = with_fresh_branches(DEFAULT_CHECKPOINT, tmp_path / "a.pt", ("amt",), seed=3)
    b = with_fresh_branches(DEFAULT_CHECKPOINT, tmp_path / "b.pt", ("amt",), seed=3)
    shipped, fresh, again = (load_model(p).state_dict() for p in (DEFAULT_CHECKPOINT, a, b))
    amt = [k for k in shipped if k.startswith("amt.")]
    enc = [k for k in shipped if k.startswith("encoder.") and shipped[k].is_floating_point()]
    assert amt and enc
    assert all(torch.equal(shipped[k], fresh[k]) for k in amt)
    assert sum(not torch.equal(shipped[k], fresh[k]) for k in enc) > len(enc) // 2
    assert all(torch.equal(fresh[k], again[k]) for k in fresh)
    extra = load_checkpoint(a)["extra"]
    assert extra["examples_seen"]["encoder"] == 0 and extra["init_branches"] == ["amt"]
    assert load_transcriber(a).decode_params is None  # the shipped decoding was fitted to the old encoder


def test_pipeline_datasets_are_checked(tmp_path):
    from mixscribe.pipeline import load_plan

    for datasets, message in [({"maestro": str(tmp_path)}, r"pipeline\.datasets\.maestro: unknown dataset"),
                              ({"bach10": str(tmp_path / "nowhere")}, r"pipeline\.datasets\.bach10: no such folder")]:  # fmt: skip
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump({"pipeline": {"datasets": datasets}}))
        with pytest.raises(ConfigError, match=message):
            load_plan(str(path))
    path.write_text(yaml.safe_dump({"pipeline": {"datasets": {"urmp": str(tmp_path)}}}))
    assert load_plan(str(path)).pipeline.datasets == {"urmp": str(tmp_path)}


def test_settings_added_later_leave_a_pipelines_digest_as_it_was(tmp_path):
    """A pipeline started before a setting existed (init_branches, datasets, the remix gains and noise,
    whole-range training stems, the timbre loss's positives and exclusion) resumes after an upgrade: at their defaults they are not part of the
    digest; set, they are."""
    import hashlib
    import json

    from mixscribe.pipeline import load_plan

    plan = load_plan("default")
    before = plan.as_dict()
    del before["pipeline"]["init_branches"], before["pipeline"]["datasets"]
    before["train"] |= before["train"].pop("remix")  # the remix settings as the section once held them, inline
    del before["train"]["gain_low"], before["train"]["gain_high"], before["train"]["noise_std"]
    del before["train"]["score_valid_every"], before["train"]["timbre_positives"], before["train"]["timbre_exclude_semitones"]
    del before["train"]["select_by"]
    del before["synth"]["generator"]["whole_range_prob"]
    # the evaluate section as it was: these decoding settings inline, none of DecodeParams' others
    decode = before["evaluate"].pop("decode")
    before["evaluate"] |= {k: decode[k] for k in ("onset_threshold", "frame_threshold", "k_sharpness", "k_model",
                                                  "min_note_frames", "energy_tolerance", "infer_onsets",
                                                  "pool_power", "cluster_sharpness")}  # fmt: skip
    assert plan.digest() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    # a decoding setting the section never held inline counts once set, not at its default
    digests = []
    for name, gate in (("plain", None), ("at-default", -55.0), ("gated", -40.0)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"evaluate": {"decode": {} if gate is None else {"gate_dbfs": gate}}}))
        digests.append(load_plan(str(path)).digest())
    assert digests[0] == digests[1] != digests[2]
    fresh, continued = tmp_path / "fresh.yaml", tmp_path / "continued.yaml"
    fresh.write_text(yaml.safe_dump({"pipeline": {"init_checkpoint": "default", "init_branches": ["amt"]}}))
    continued.write_text(yaml.safe_dump({"pipeline": {"init_checkpoint": "default"}}))
    assert load_plan(str(fresh)).digest() != load_plan(str(continued)).digest()
    whole = tmp_path / "whole.yaml"
    whole.write_text(yaml.safe_dump({"synth": {"generator": {"whole_range_prob": 1.0}}}))
    assert load_plan(str(whole)).digest() != plan.digest()
    other = tmp_path / "other-pitch.yaml"
    other.write_text(yaml.safe_dump({"train": {"timbre_positives": "other-pitch"}}))
    assert load_plan(str(other)).digest() != load_plan(str(tmp_path / "plain.yaml")).digest()
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text(yaml.safe_dump({"train": {"select_by": "val/note_f1"}}))
    assert load_plan(str(chosen)).digest() != load_plan(str(tmp_path / "plain.yaml")).digest()


def test_a_wider_exclusion_needs_other_pitch_positives_and_a_sane_width():
    from mixscribe.train.trainer import load_train_config

    assert load_train_config({"train": {"timbre_positives": "other-pitch", "timbre_exclude_semitones": 3}}).timbre_exclude_semitones == 3
    for fields, message in (({"timbre_exclude_semitones": 2}, "needs train.timbre_positives: other-pitch"),
                            ({"timbre_positives": "other-pitch", "timbre_exclude_semitones": 13}, "integer in \\[0, 12\\]"),
                            ({"timbre_positives": "other-pitch", "timbre_exclude_semitones": 1.5}, "integer")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"train.timbre_exclude_semitones: .*{message}"):
            load_train_config({"train": fields})


def test_checkpoints_are_ranked_by_a_figure_every_epoch_has():
    from mixscribe.train.trainer import load_train_config

    assert load_train_config({"train": {"stage": "encoder", "select_by": "val/sep_note_f1"}}).select_by == "val/sep_note_f1"
    for fields, message in (({"select_by": "val/timbre"}, "must be one of"),
                            ({"select_by": "val/note_f1", "score_valid_every": 2}, "needs train.score_valid_every: 1"),
                            ({"select_by": "val/sep_note_f1"}, "not in stage amt")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"train.select_by: .*{message}"):
            load_train_config({"train": fields})


def test_the_model_runs_at_the_record_schemas_rate_and_hop():
    from mixscribe.config import ModelConfig
    from mixscribe.schema import HOP, SAMPLE_RATE

    ModelConfig(sample_rate=SAMPLE_RATE, hop=HOP).validate()
    for fields in ({"sample_rate": 44100}, {"hop": 512}):
        with pytest.raises(ConfigError, match=r"model\.sample_rate: the shards and the note times are at 22050 Hz"):
            ModelConfig(**fields).validate()


def test_the_train_section_holds_the_remix_settings_once(tmp_path):
    """The training mixtures are one RemixConfig under train.remix: a partial section keeps the training
    defaults for the rest (augmentation on), a stage's override merges into it, validation mixtures
    keep only the crop and the K weights, and settings written inline are told where they went."""
    from mixscribe.pipeline import load_plan
    from mixscribe.train.augment import AugmentConfig
    from mixscribe.train.data import RemixConfig
    from mixscribe.train.trainer import load_train_config

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"train": {"remix": {"gain_low": 0.5, "gain_high": 1.5, "noise_std": 0.0,
                                                        "crop_frames": 128, "register_match_prob": 0.5,
                                                        "augment": {"p_stem_colour": 0.25}}}}))  # fmt: skip
    remix = load_train_config(str(path)).remix
    assert (remix.gain_low, remix.gain_high, remix.noise_std, remix.crop_frames) == (0.5, 1.5, 0.0, 128)
    assert remix.register_match_prob == 0.5 and remix.augment == AugmentConfig(p_stem_colour=0.25)  # still enabled
    assert remix.for_validation() == RemixConfig(crop_frames=128, k_weights=remix.k_weights)
    assert not remix.for_validation().augment.enabled
    path.write_text(yaml.safe_dump({"train": {"remix": {"crop_frames": 96}},
                                    "pipeline": {"stage_train": {"encoder": {"remix": {"same_family_prob": 0.5}}}}}))
    plan = load_plan(str(path))
    amt, encoder = plan.train_for("amt"), plan.train_for("encoder")
    assert (amt.remix.crop_frames, amt.remix.same_family_prob, amt.remix.augment.enabled) == (96, 0.0, True)
    assert (encoder.remix.crop_frames, encoder.remix.same_family_prob) == (96, 0.5)  # merged, not replaced
    for section, message in (({"remix": {"gain_low": 2.0, "gain_high": 1.0}}, r"train\.remix\.gain_low"),
                             ({"crop_frames": 96}, r"train\.crop_frames: .* \(train\.remix\.crop_frames\)"),
                             ({"remix": {"augment": {"p_reverb": 2}}}, r"field train\.remix\.augment\.p_reverb: ")):  # fmt: skip
        path.write_text(yaml.safe_dump({"train": section}))
        with pytest.raises(ConfigError, match=message):
            load_train_config(str(path))


def test_an_invalid_nested_value_is_named_by_the_path_a_preset_sets_it_under(tmp_path):
    """A nested config checks itself under its own name; the error must name what the user edits."""
    for sections, name in (({"synth": {"generator": {"near_prob": 3}}}, "synth.generator.near_prob"),
                           ({"synth": {"splits": {"fractions": {"train": -1}}}}, "synth.splits."),
                           ({"evaluate": {"decode": {"onset_threshold": 3}}}, "evaluate.decode.onset_threshold"),
                           ({"model": {"tau": 0}}, "model.tau")):  # fmt: skip
        (section,) = sections
        from mixscribe.evaluate.runner import EvalConfig

        cls = {"synth": SynthConfig, "evaluate": EvalConfig, "model": ModelConfig}[section]
        with pytest.raises(ConfigError, match=rf"^config field {re.escape(name)}"):
            load_section(sections, section, cls)


def test_the_evaluate_section_holds_the_decoding_once(tmp_path):
    """The decoding an evaluation scores with is one DecodeParams under evaluate.decode, checked by its
    own rules; a preset written with the settings inline is told where they went, not silently ignored."""
    from mixscribe.pipeline import load_plan
    from mixscribe.transcription.decode import DecodeParams

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"evaluate": {"decode": {"onset_threshold": 0.4, "gate_dbfs": -50.0}}}))
    decode = load_plan(str(path)).evaluate.decode
    assert decode == DecodeParams(onset_threshold=0.4, gate_dbfs=-50.0)
    for section, message in (({"onset_threshold": 0.4}, r"evaluate\.onset_threshold: .*evaluate\.decode\.onset_threshold"),
                             ({"decode": {"pool_power": 0.0}}, r"decode\.pool_power: must be > 0"),
                             ({"decode": {"frame_treshold": 0.3}}, r"evaluate\.decode\.frame_treshold: unknown")):  # fmt: skip
        path.write_text(yaml.safe_dump({"evaluate": section}))
        with pytest.raises(ConfigError, match=message):
            load_plan(str(path))


def _bad_configs():
    import dataclasses

    from mixscribe.config import GeneratorConfig
    from mixscribe.evaluate.runner import EvalConfig
    from mixscribe.evaluate.study import StudyConfig
    from mixscribe.pipeline import PipelineConfig
    from mixscribe.train.data import RemixConfig
    from mixscribe.train.trainer import TrainConfig

    return [
        (lambda: TrainConfig(epochs=0), r"train\.epochs"),
        (lambda: dataclasses.replace(TrainConfig(), remix=RemixConfig(gain_low=2.0)), r"train\.remix\.gain_low"),
        (lambda: EvalConfig(backend="fp8"), r"evaluate\.backend"),
        (lambda: dataclasses.replace(SynthConfig(), generator=GeneratorConfig(line_prob=1.5)), r"line_prob"),
        (lambda: PipelineConfig(train_stages=("nope",)), r"pipeline\.train_stages"),
        (lambda: StudyConfig(name="s", base="tiny", holdout_families=()), r"study\.holdout_families"),
    ]


@pytest.mark.parametrize("build, field", _bad_configs())
def test_an_invalid_config_cannot_be_built(build, field):
    """Every config checks itself when built, also through dataclasses.replace: no caller can forget."""
    with pytest.raises(ConfigError, match=field):
        build()

import pytest

from mixscribe.config import SynthConfig, available_presets, flatten, from_dict, load_synth_config, to_dict
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


def test_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such preset"):
        load_synth_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_synth_config(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_synth_config(str(tmp_path / "missing.yaml"))

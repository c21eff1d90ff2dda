"""Timbre variation at render time: FluidSynth generator offsets per stem, drawn from synth.timbre,
stored in the shard row; real FluidSynth and the catalog's SoundFonts."""

import dataclasses
import json

import numpy as np
import pytest

from mixscribe.config import TimbreConfig, load_synth_config
from mixscribe.errors import ConfigError
from mixscribe.schema import clips_to_table, table_to_clips
from mixscribe.synth.catalog import select
from mixscribe.synth.clips import ClipMaker
from mixscribe.synth.generator import Performance, PerformedNote
from mixscribe.synth.render import FluidSynthRenderer, Instrument
from mixscribe.synth.timbre import GENERATORS, Timbre, draw_timbre

SECONDS = 1.5


@pytest.fixture(scope="module")
def renderer():
    cfg = load_synth_config("tiny")
    r = FluidSynthRenderer(cfg.render, select(cfg.soundfonts))
    yield r
    r.close()


def held_note(pitch: int) -> Performance:
    """One plain note (no bend, no vibrato), held 1.2 s."""
    return Performance([PerformedNote(pitch, 0, 103, 100, 0, 0.0, 1.2)], [], int(SECONDS * 22050) // 256)


def render(renderer, timbre=None, program=73, pitch=69) -> np.ndarray:
    renderer.restart()
    return renderer.render_raw(Instrument("timgm6mb", 0, program), held_note(pitch), int(SECONDS * 22050), timbre)


def spectrum(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seg = audio[2205:2205 + 22050]  # 1 s after the attack: 1 Hz bins
    mag = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    return np.fft.rfftfreq(seg.size, 1 / 22050), mag


def f0_near(audio: np.ndarray, expected_hz: float) -> float:
    """The strongest frequency within 3 semitones of the expected fundamental."""
    freqs, mag = spectrum(audio)
    band = (freqs > expected_hz * 2 ** (-3 / 12)) & (freqs < expected_hz * 2 ** (3 / 12))
    return float(freqs[band][np.argmax(mag[band])])


def centroid(audio: np.ndarray) -> float:
    freqs, mag = spectrum(audio)
    return float((freqs * mag).sum() / mag.sum())


def test_neutral_timbre_renders_bit_for_bit_as_the_preset(renderer):
    np.testing.assert_array_equal(render(renderer, Timbre()), render(renderer, None))


@pytest.mark.parametrize("name, value", [("filter_cents", -3000.0), ("filter_q_cb", 120.0), ("attack_timecents", 1200.0),
                                         ("release_timecents", 1200.0), ("vibrato_cents", 25.0), ("tremolo_cb", 40.0)])  # fmt: skip
def test_each_offset_changes_the_sound(renderer, name, value):
    plain = render(renderer)
    moved = render(renderer, Timbre(**{name: value}))
    assert np.abs(moved - plain).max() > 1e-3 * np.abs(plain).max(), name


def test_a_lower_cutoff_darkens_the_sound(renderer):
    plain, dark = render(renderer, program=40, pitch=57), render(renderer, Timbre(filter_cents=-3600.0), program=40, pitch=57)
    assert centroid(dark) < 0.8 * centroid(plain)


def test_formant_shift_plays_another_keys_sample_at_the_written_pitch(renderer):
    """Where the neighbouring key has a sample of its own, the stem sounds different at the same pitch
    (where one sample spans both keys, the retuned key plays it exactly as before)."""
    plain = render(renderer)
    assert f0_near(plain, 440.0) == pytest.approx(440.0, rel=0.01)
    differ = 0
    for shift in (-2, -1, 1, 2):
        shifted = render(renderer, Timbre(formant_semitones=shift))
        assert f0_near(shifted, 440.0) == pytest.approx(440.0, rel=0.01), shift  # unretuned: 6-12 % off
        differ += np.abs(shifted - plain).max() > 1e-2 * np.abs(plain).max()
    assert differ >= 1


def tiny(**timbre):
    cfg = load_synth_config("tiny")
    return dataclasses.replace(cfg, stems_min=2, stems_max=3, timbre=dataclasses.replace(cfg.timbre, **timbre))


def test_draws_stay_in_their_ranges_and_follow_the_seed():
    cfg = TimbreConfig(prob=1.0)
    draws = [draw_timbre(cfg, np.random.default_rng(i)) for i in range(200)]
    for name in GENERATORS:
        values = [getattr(t, name) for t in draws]
        low, high = getattr(cfg, name)
        assert low <= min(values) and max(values) <= high and max(values) - min(values) > 0.5 * (high - low)
    assert {t.formant_semitones for t in draws} == set(range(-2, 3))
    assert draw_timbre(cfg, np.random.default_rng(7)) == draws[7]
    assert Timbre.from_json(draws[3].to_json()) == draws[3] and Timbre.from_json("") == Timbre()


def test_clip_maker_stores_each_stems_timbre_in_the_row_and_only_for_the_chosen_splits():
    cfg = tiny(prob=1.0)
    cfg = dataclasses.replace(cfg, splits=dataclasses.replace(cfg.splits, fractions={"train": 0.5, "valid": 0.5}))
    entries = select(cfg.soundfonts)
    maker = ClipMaker(cfg, entries, FluidSynthRenderer(cfg.render, entries))
    clips = []
    for i in range(8):
        maker.renderer.restart()  # as every shard starts: bytes independent of what was rendered before
        clips.append(maker.make(i))
    train = [c for c in clips if c.split == "train"]
    valid = [c for c in clips if c.split == "valid"]
    assert train and valid
    assert all(s.timbre for c in train for s in c.stems)
    assert not any(s.timbre for c in valid for s in c.stems)
    back = table_to_clips(clips_to_table(train))
    assert [s.timbre for c in back for s in c.stems] == [s.timbre for c in train for s in c.stems]
    assert {json.loads(s.timbre)["formant_semitones"] for c in train for s in c.stems} <= set(range(-2, 3))

    maker.renderer.restart()  # same index, fresh synth: the same draws and bytes again
    again = maker.make(clips.index(train[0]))
    assert [s.timbre for s in again.stems] == [s.timbre for s in train[0].stems]
    assert [s.pcm.tobytes() for s in again.stems] == [s.pcm.tobytes() for s in train[0].stems]


def test_timbre_prob_zero_keeps_every_clip_as_it_was():
    entries = select(tiny().soundfonts)
    plain = ClipMaker(tiny(), entries, FluidSynthRenderer(tiny().render, entries))
    half = ClipMaker(tiny(prob=0.5), entries, FluidSynthRenderer(tiny().render, entries))
    kept = changed = 0
    for i in range(6):
        plain.renderer.restart()
        half.renderer.restart()
        a, b = plain.make(i), half.make(i)
        assert a.notes == b.notes and [s.preset for s in a.stems] == [s.preset for s in b.stems]
        for s, t in zip(a.stems, b.stems):
            if t.timbre:
                changed += 1
            else:
                kept += 1
                assert s.pcm.tobytes() == t.pcm.tobytes()
    assert kept and changed


@pytest.mark.parametrize("field, value, match", [
    ("prob", 1.5, "synth.timbre.prob"), ("splits", ("train", "test"), "synth.timbre.splits"),
    ("filter_cents", (-100.0, 300.0), "synth.timbre.filter_cents"), ("attack_timecents", (500.0, 100.0), "attack_timecents"),
    ("formant_semitones", 13, "synth.timbre.formant_semitones"), ("tremolo_cb", (-10.0, 10.0), "synth.timbre"),
])  # fmt: skip
def test_timbre_config_is_validated(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TimbreConfig(**{field: value}).validate()


def test_timbre_section_loads_from_yaml(tmp_path):
    (tmp_path / "t.yaml").write_text("synth:\n  timbre: {prob: 0.5, formant_semitones: 1, filter_cents: [-1200, 0]}\n")
    cfg = load_synth_config(str(tmp_path / "t.yaml"))
    assert cfg.timbre.prob == 0.5 and cfg.timbre.formant_semitones == 1 and cfg.timbre.filter_cents == (-1200.0, 0.0)
    (tmp_path / "bad.yaml").write_text("synth:\n  timbre: {cutoff: 3}\n")
    with pytest.raises(ConfigError, match="synth.timbre.cutoff: unknown"):
        load_synth_config(str(tmp_path / "bad.yaml"))

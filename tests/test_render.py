"""The FluidSynth renderer on real SoundFonts: sound where and at the pitch the labels say."""

import numpy as np
import pytest

from mixscribe.config import RenderConfig
from mixscribe.schema import HOP, SAMPLE_RATE
from mixscribe.synth import catalog
from mixscribe.synth.generator import Performance, PerformedNote
from mixscribe.synth.render import FluidSynthRenderer, Instrument, frame_rms, normalise_and_check

FRAME_S = HOP / SAMPLE_RATE


@pytest.fixture(scope="module")
def renderer():
    r = FluidSynthRenderer(RenderConfig(), catalog.select(("timgm6mb", "csound_gmbank")))
    yield r
    r.close()


def one_note(pitch, onset=20, offset=60, frames=100, bend=0):
    return Performance([PerformedNote(pitch, onset, offset, 100, bend, onset * FRAME_S, offset * FRAME_S)], [], frames)


def f0_of(audio, onset, offset, fmin, fmax):
    seg = audio[(onset + 4) * HOP : offset * HOP]
    seg = seg * np.hanning(len(seg))
    n = 1 << 16
    spec = np.abs(np.fft.rfft(seg, n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    band = (freqs > fmin) & (freqs < fmax)
    return freqs[band][np.argmax(spec[band])]


@pytest.mark.parametrize("pitch", [60, 72, 84])
def test_energy_at_labelled_onset_and_pitch(renderer, pitch):
    out = renderer.render(Instrument("timgm6mb", 0, 73), one_note(pitch), 100 * HOP)  # flute
    assert out.problem is None
    env = frame_rms(out.audio)
    assert env[:18].max() < 1e-4 * env.max()  # silent before the labelled onset (frame 20)
    assert np.argmax(env > 0.1 * env.max()) in (19, 20, 21, 22)
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    measured = f0_of(out.audio, 20, 60, f0 / 1.5, f0 * 1.5)
    assert abs(1200 * np.log2(measured / f0)) < 25  # within 25 cents of the label


def test_detune_bends_the_pitch(renderer):
    f0 = 440.0
    up = renderer.render(Instrument("timgm6mb", 0, 73), one_note(69, bend=2048), 100 * HOP).audio
    cents = 1200 * np.log2(f0_of(up, 20, 60, 350, 550) / f0)
    assert 35 < cents < 65  # +2048/8192 of a 2-semitone range = +50 cents


def test_output_is_22k_normalised_and_deterministic(renderer):
    perf = one_note(48, frames=80)
    renderer.restart()  # the pipeline's guarantee: same renders since a restart -> same bytes
    a = renderer.render(Instrument("csound_gmbank", 0, 0), perf, 80 * HOP)
    renderer.render(Instrument("timgm6mb", 0, 40), one_note(76), 100 * HOP)
    renderer.restart()
    b = renderer.render(Instrument("csound_gmbank", 0, 0), perf, 80 * HOP)
    assert a.audio.dtype == np.float32 and a.audio.shape == (80 * HOP,)
    assert np.abs(a.audio).max() <= RenderConfig().peak_limit + 1e-6
    np.testing.assert_array_equal(a.audio, b.audio)


def test_no_note_is_stolen_in_dense_chords(renderer):
    notes = [PerformedNote(p, 10, 60, 90, 0, 10 * FRAME_S, 60 * FRAME_S) for p in range(36, 96)]
    raw = renderer.render_raw(Instrument("timgm6mb", 0, 48), Performance(notes, [], 80), 80 * HOP)
    assert renderer.synth.get_setting("synth.polyphony") >= 1024
    spec = np.abs(np.fft.rfft(raw[30 * HOP : 55 * HOP] * np.hanning(25 * HOP)))
    freqs = np.fft.rfftfreq(25 * HOP, 1 / SAMPLE_RATE)
    for p in (36, 60, 95):  # lowest, middle and highest of 60 simultaneous notes all sound
        f = 440.0 * 2 ** ((p - 69) / 12)
        near = spec[(freqs > f * 0.985) & (freqs < f * 1.015)].max()
        assert near > 10 * np.median(spec)


def test_effects_are_off_and_short_notes_stay_short(renderer):
    s = renderer.synth
    assert s.get_setting("synth.reverb.active") == 0 and s.get_setting("synth.chorus.active") == 0
    assert s.get_setting("synth.min-note-length") == 0


def test_unknown_preset_is_a_clear_error(renderer):
    from mixscribe.errors import SoundFontError

    with pytest.raises(SoundFontError, match="TimGM6mb.sf2: unknown preset bank 5 program 3"):
        renderer.render(Instrument("timgm6mb", 5, 3), one_note(60), 100 * HOP)


def test_drop_rules():
    cfg = RenderConfig()
    perf = one_note(60, onset=10, offset=30, frames=40)
    tone = np.sin(np.arange(40 * HOP) * 2 * np.pi * 261.6 / SAMPLE_RATE).astype(np.float32) * 0.3
    tone[: 9 * HOP] = 0
    assert normalise_and_check(tone, perf, cfg).problem is None
    assert normalise_and_check(np.zeros(40 * HOP, np.float32), perf, cfg).problem == "silent"
    nan = tone.copy()
    nan[100] = np.nan
    assert normalise_and_check(nan, perf, cfg).problem == "non_finite"
    assert normalise_and_check(tone * 100, perf, cfg).problem == "out_of_bounds"
    late = Performance(perf.notes + [PerformedNote(50, 32, 38, 90, 0, 0, 0)], [], 40)
    gated = tone.copy()
    gated[31 * HOP :] = 0  # nothing sounds at the second labelled note
    assert normalise_and_check(gated, late, cfg).problem == "silent_note"

"""The procedural instrument family: deterministic, never silent across its parameter ranges, in tune,
and with disjoint instrument streams for seen and unseen instruments."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mixscribe.schema import SAMPLE_RATE
from mixscribe.synth.generator import Performance, PerformedNote
from mixscribe.synth.procedural import (
    ProceduralInstrument,
    instrument_set,
    render_note,
    render_performance,
)


def _f0_cents_error(audio: np.ndarray, pitch: int, bend_cents: float = 0.0) -> float:
    """Mean pitch of the fundamental over 0.1-0.9 s, in cents from the expected one: per 186 ms frame
    (hop 46 ms), the strongest spectral peak within +-100 cents of the expected fundamental, zero-padded
    FFT with parabolic interpolation; the mean over frames is the centre of any vibrato (a single long
    FFT would pick a vibrato sideband)."""
    expected = 440.0 * 2 ** ((pitch - 69 + bend_cents / 100) / 12)
    seg = audio[int(0.1 * SAMPLE_RATE) : int(0.9 * SAMPLE_RATE)].astype(np.float64)
    frame, hop, n_fft = 4096, 1024, 1 << 17
    bins = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    lo, hi = np.searchsorted(bins, [expected * 2 ** (-1 / 12), expected * 2 ** (1 / 12)])
    cents = []
    for start in range(0, len(seg) - frame + 1, hop):
        spec = np.abs(np.fft.rfft(seg[start : start + frame] * np.hanning(frame), n_fft))
        i = lo + int(np.argmax(spec[lo:hi]))
        a, b, c = np.log(spec[i - 1 : i + 2] + 1e-30)
        peak = bins[i] + 0.5 * (a - c) / (a - 2 * b + c) * (bins[1] - bins[0])
        cents.append(1200 * np.log2(peak / expected))
    return float(np.mean(cents))


def _instruments(n: int, seed: int = 7) -> list[ProceduralInstrument]:
    return instrument_set(seed, n, "seen")


def test_same_instrument_and_seed_render_the_same_samples():
    ins = _instruments(1)[0]
    a = render_note(ins, 60, 100, 0.5, 0.0, np.random.default_rng(3))
    b = render_note(ins, 60, 100, 0.5, 0.0, np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert instrument_set(7, 5, "seen") == instrument_set(7, 5, "seen")


def test_id_is_stable_and_parameters_round_trip():
    ins = _instruments(1)[0]
    again = ProceduralInstrument.from_json(ins.to_json())
    assert again == ins and again.id == ins.id
    assert ins.id.startswith(f"proc-{ins.kind}-")
    assert dataclasses.replace(ins, tilt_db_oct=ins.tilt_db_oct + 1).id != ins.id


def test_seen_and_unseen_streams_share_no_instrument():
    seen = {i.id for i in instrument_set(0, 300, "seen")}
    unseen = {i.id for i in instrument_set(0, 300, "unseen")}
    assert len(seen) == 300 and len(unseen) == 300
    assert not seen & unseen
    assert {i.id for i in instrument_set(1, 300, "seen")}.isdisjoint(seen)


def test_both_kinds_and_wide_ranges_are_drawn():
    pool = _instruments(400)
    assert {i.kind for i in pool} == {"sustained", "plucked"}
    tilts = [i.tilt_db_oct for i in pool]
    assert max(tilts) - min(tilts) > 9
    assert {len(i.formant_hz) for i in pool} == {1, 2, 3}


@pytest.mark.parametrize("pitch", [28, 40, 55, 69, 84, 100])
@pytest.mark.parametrize("velocity", [46, 127])
def test_never_silent_never_out_of_bounds(pitch, velocity):
    """Every instrument, the whole pitch range the generator uses, soft and loud: finite, audible while
    the key is down, well below clipping before normalisation."""
    for ins in _instruments(60):
        audio = render_note(ins, pitch, velocity, 0.4, 0.0, np.random.default_rng(0))
        assert np.all(np.isfinite(audio))
        held = audio[: int(0.4 * SAMPLE_RATE)]
        rms = float(np.sqrt(np.mean(held.astype(np.float64) ** 2)))
        assert rms > 1e-3, (ins.id, pitch, velocity, rms)
        assert np.abs(audio).max() < 4.0
        tail = audio[-256:]
        assert np.abs(tail).max() < 0.05 * np.abs(audio).max()  # the release ends the note


def test_every_drawn_instrument_is_within_10_cents_of_its_midi_pitch():
    worst = 0.0
    for ins in _instruments(40, seed=11):
        for pitch in (36, 57, 69, 81):
            audio = render_note(ins, pitch, 100, 1.0, 0.0, np.random.default_rng(1))
            worst = max(worst, abs(_f0_cents_error(audio, pitch)))
    assert worst <= 10.0, f"worst pitch error {worst:.1f} cents"


def test_extreme_inharmonicity_and_vibrato_keep_the_fundamental_in_tune():
    base = _instruments(1)[0]
    stiff = dataclasses.replace(base, kind="plucked", inharmonicity=4e-4)
    wobbly = dataclasses.replace(base, kind="sustained", vibrato_cents=20.0, vibrato_delay_s=0.1)
    for ins in (stiff, wobbly):
        audio = render_note(ins, 45, 110, 1.0, 0.0, np.random.default_rng(2))
        assert abs(_f0_cents_error(audio, 45)) <= 10.0


def test_detune_bend_moves_the_pitch_by_its_cents():
    ins = dataclasses.replace(_instruments(1)[0], vibrato_cents=0.0)
    audio = render_note(ins, 60, 100, 1.0, 24.0, np.random.default_rng(0))
    assert abs(_f0_cents_error(audio, 60) - 24.0) <= 2.0


def test_performance_places_notes_at_their_times():
    ins = dataclasses.replace(_instruments(1)[0], kind="sustained", noise_db=-60.0)
    notes = [PerformedNote(60, 0, 20, 100, 0, 0.0, 0.2), PerformedNote(67, 60, 80, 100, 0, 0.7, 0.9)]
    audio = render_performance(ins, Performance(notes, [], 120), 120 * 256, seed=0)
    env = np.sqrt(np.convolve(audio.astype(np.float64) ** 2, np.ones(256) / 256, mode="same"))
    t = lambda s: int(s * SAMPLE_RATE)  # noqa: E731
    assert env[t(0.1)] > 10 * env[t(0.55)]  # the first note has gone by 0.55 s
    assert env[t(0.8)] > 10 * env[t(0.55)]  # the second sounds at 0.8 s
    assert np.array_equal(audio, render_performance(ins, Performance(notes, [], 120), 120 * 256, seed=0))


def test_procedural_family_inside_the_ray_synth_pipeline(ray_local, tiny_cfg, tmp_path):
    """Real run_synth (Ray Data actors) with the family on: generated stems are stored with their
    parameters, unseen-stream instruments reach only unseen-soundfont, the manifest lists every
    generated instrument, and a clip re-made from (config, index) is the same, sample for sample."""
    from mixscribe.config import ProceduralConfig
    from mixscribe.synth.catalog import select
    from mixscribe.synth.clips import ClipMaker
    from mixscribe.shards import ShardSet
    from mixscribe.synth.pipeline import run_synth
    from mixscribe.synth.procedural import MixedRenderer, ProceduralRenderer
    from mixscribe.synth.render import FluidSynthRenderer

    proc = ProceduralConfig(seen_instruments=12, unseen_instruments=6, seed=3, share=0.5)
    cfg = dataclasses.replace(tiny_cfg, procedural=proc, stems_min=2, stems_max=3)
    run_synth(cfg, str(tmp_path), 24)
    rows = ShardSet.open(str(tmp_path)).read_table().to_pylist()
    generated = [(row["split"], s) for row in rows for s in row["stems"] if s["sf_family"] == "procedural"]
    share = len(generated) / sum(len(row["stems"]) for row in rows)
    assert 0.3 <= share <= 0.7, f"procedural.share 0.5 gave {share:.2f} of the stems"
    seen = {i.id for i in instrument_set(3, 12, "seen")}
    unseen = {i.id for i in instrument_set(3, 6, "unseen")}
    for split, stem in generated:
        assert ProceduralInstrument.from_json(stem["instrument_params"]).id == stem["preset_name"]
        allowed = unseen if split == "unseen-soundfont" else seen
        assert stem["preset_name"] in allowed, (split, stem["preset_name"])
        assert stem["bank"] == (1 if split == "unseen-soundfont" else 0)
    assert all(not s["instrument_params"] for row in rows for s in row["stems"] if s["sf_family"] != "procedural")
    manifest = ShardSet.open(str(tmp_path)).manifest.record
    assert set(manifest["procedural_instruments"]) == {s["preset_name"] for _, s in generated}
    for _, stem in generated:
        assert manifest["procedural_instruments"][stem["preset_name"]] == json.loads(stem["instrument_params"])

    # Re-render: the clip of one index, made again by a fresh maker in this process.
    index = next(i for i, row in enumerate(rows) if any(s["sf_family"] == "procedural" for s in row["stems"]))
    entries = select(cfg.soundfonts)
    renderer = MixedRenderer(FluidSynthRenderer(cfg.render, entries), ProceduralRenderer(cfg.render, proc))
    clip = ClipMaker(cfg, entries, renderer).make(index)
    for stem, stored in zip(clip.stems, rows[index]["stems"]):
        if stem.sf_family == "procedural":
            assert stem.pcm.tobytes() == stored["pcm"]

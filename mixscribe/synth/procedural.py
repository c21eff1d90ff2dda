"""Procedural instruments: a seeded distribution of plausible instruments, rendered by a spectral model.

Why hand-written (docs/procedural.md has the measurements): the Faust physical models that DawDreamer
runs (pm.lib clarinet, flute, violin, guitars, brass) were tried first; out of the box several are
near-silent or several tens of cents off their MIDI pitch across a normal range, and each would need
its own calibration before its notes could be labels. A source-filter spectral model is exact in pitch
by construction and exposes every timbral dimension as a parameter:

- a harmonic source: spectral tilt, odd/even balance, stiff-string inharmonicity (the fundamental is
  kept on the MIDI pitch; upper partials stretch), velocity-dependent brightness;
- a body: 1-3 formant resonances applied to the partials by frequency (the same body for every note,
  which is what makes an instrument recognisable across its range);
- excitation and envelopes: sustained (bowed/blown: attack, decay, sustain, release) or decaying
  (plucked/struck: per-partial decay, high partials dying first), attack noise, a brightness sweep;
- modulation: delayed vibrato, tremolo.

Everything is numpy at 22,050 Hz with partials kept below 0.45 x the sample rate, so nothing aliases.
An instrument is a frozen `ProceduralInstrument`; its id is a hash of its parameters, so a clip can be
re-rendered and an instrument re-used from the parameters stored with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from mixscribe.schema import SAMPLE_RATE
from mixscribe.synth.generator import Performance

MAX_PARTIALS = 48
PARTIAL_FLOOR_DB = -60.0  # partials this far below the strongest one are not rendered
NYQUIST_FRACTION = 0.45
KINDS = ("sustained", "plucked")


@dataclass(frozen=True)
class ProceduralInstrument:
    kind: str  # "sustained" (bowed/blown) or "plucked" (plucked/struck, decaying)
    tilt_db_oct: float  # partial level per octave above the fundamental (negative: darker)
    odd_even: float  # level of even partials relative to odd ones (0.1: clarinet-like; 1: full)
    inharmonicity: float  # stiff-string B: partial k at k f0 sqrt(1 + B k^2) / sqrt(1 + B)
    formant_hz: tuple[float, ...]
    formant_bw_hz: tuple[float, ...]
    formant_db: tuple[float, ...]
    attack_s: float
    decay_s: float  # sustained: attack peak to sustain level; plucked: fundamental's decay time constant
    sustain: float  # sustained: level held while the key is down (plucked: unused)
    release_s: float
    damping: float  # plucked: partial k decays (1 + damping (k - 1)) times faster than the fundamental
    noise_db: float  # attack noise level relative to the first partial
    noise_s: float  # attack noise duration
    sweep_db: float  # brightness change over the first 0.3 s of a note, per octave of partial number
    vibrato_hz: float
    vibrato_cents: float
    vibrato_delay_s: float
    tremolo_hz: float
    tremolo_depth: float
    velocity_brightness: float  # dB per octave of partial number gained from velocity 64 to 127

    @property
    def id(self) -> str:
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:12]
        return f"proc-{self.kind}-{digest}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ProceduralInstrument:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


def draw_instrument(rng: np.random.Generator) -> ProceduralInstrument:
    """One instrument from the family's distribution. The ranges are those of acoustic instruments: a
    flute-like dark sustained tone to a bright buzzy reed, a nylon-string pluck to a bright harpsichord."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    n_formants = int(rng.integers(1, 4))
    formants = np.sort(np.exp(rng.uniform(np.log(250), np.log(3500), n_formants)))
    plucked = kind == "plucked"
    return ProceduralInstrument(
        kind=kind,
        tilt_db_oct=round(float(rng.uniform(-14, -3)), 3),
        odd_even=round(float(rng.choice([rng.uniform(0.05, 0.35), rng.uniform(0.6, 1.0)], p=[0.25, 0.75])), 3),
        inharmonicity=round(float(rng.uniform(0, 4e-4) if plucked else rng.uniform(0, 2e-5)), 7),
        formant_hz=tuple(round(float(f), 1) for f in formants),
        formant_bw_hz=tuple(round(float(b), 1) for b in rng.uniform(80, 500, n_formants)),
        formant_db=tuple(round(float(g), 2) for g in rng.uniform(3, 15, n_formants)),
        attack_s=round(float(rng.uniform(0.002, 0.01) if plucked else rng.uniform(0.015, 0.12)), 4),
        decay_s=round(float(rng.uniform(0.4, 2.5) if plucked else rng.uniform(0.05, 0.4)), 3),
        sustain=round(float(rng.uniform(0.5, 1.0)), 3),
        release_s=round(float(rng.uniform(0.03, 0.25)), 3),
        damping=round(float(rng.uniform(0.05, 0.6)), 3),
        noise_db=round(float(rng.uniform(-40, -14)), 2),
        noise_s=round(float(rng.uniform(0.01, 0.06)), 3),
        sweep_db=round(float(rng.uniform(-4, 2)), 3),
        vibrato_hz=round(float(rng.uniform(4.5, 6.5)), 3),
        vibrato_cents=round(float(0.0 if plucked else rng.uniform(0, 20)), 2),
        vibrato_delay_s=round(float(rng.uniform(0.1, 0.4)), 3),
        tremolo_hz=round(float(rng.uniform(3, 7)), 3),
        tremolo_depth=round(float(rng.uniform(0, 0.15)), 3),
        velocity_brightness=round(float(rng.uniform(0.5, 3.0)), 3),
    )


def instrument_set(seed: int, count: int, stream: str) -> list[ProceduralInstrument]:
    """`count` instruments of one named stream ("seen", "unseen"): different streams never share an
    instrument (their seeds differ), the same (seed, stream) always gives the same list."""
    salt = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:4], "little")
    return [draw_instrument(np.random.default_rng([seed, salt, i])) for i in range(count)]


def _partials(ins: ProceduralInstrument, f0: float, velocity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partial numbers, frequencies and levels of one note (fundamental exactly at f0); levels sum to 1,
    partials more than 60 dB below the strongest are left out."""
    k = np.arange(1, MAX_PARTIALS + 1, dtype=np.float64)
    freqs = k * f0 * np.sqrt(1 + ins.inharmonicity * k**2) / np.sqrt(1 + ins.inharmonicity)
    keep = freqs < NYQUIST_FRACTION * SAMPLE_RATE
    k, freqs = k[keep], freqs[keep]
    octaves = np.log2(k)
    bright = ins.velocity_brightness * (velocity - 64) / 63
    level_db = (ins.tilt_db_oct + bright) * octaves
    level_db = level_db + np.where(k % 2 == 0, 20 * np.log10(ins.odd_even), 0.0)
    for fc, bw, gain in zip(ins.formant_hz, ins.formant_bw_hz, ins.formant_db):
        level_db = level_db + gain / (1 + ((freqs - fc) / (bw / 2)) ** 2)  # a resonance's magnitude, in dB
    amps = 10 ** (level_db / 20)
    audible = amps >= amps.max() * 10 ** (PARTIAL_FLOOR_DB / 20)  # skip what nobody hears (and nobody pays for)
    k, freqs, amps = k[audible], freqs[audible], amps[audible]
    return k, freqs, amps / amps.sum()  # partials can never add up past 1: no clipping before normalisation


SWEEP_S = 0.3  # the brightness sweep reaches its full value this long after the onset


def render_note(ins: ProceduralInstrument, pitch: int, velocity: int, duration_s: float, bend_cents: float,
                rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """One note, key down for duration_s, followed by its release; float32 at SAMPLE_RATE."""
    f0 = 440.0 * 2 ** ((pitch - 69 + bend_cents / 100) / 12)
    ks, freqs, amps = _partials(ins, f0, velocity)
    n_on = max(1, int(round(duration_s * SAMPLE_RATE)))
    n = n_on + int(round(ins.release_s * 4 * SAMPLE_RATE))
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    vib_env = np.clip((t - ins.vibrato_delay_s) / 0.2, 0, 1)
    cents = ins.vibrato_cents * vib_env * np.sin(2 * np.pi * ins.vibrato_hz * t)
    phase = 2 * np.pi * np.cumsum(2 ** (cents / 1200)) / SAMPLE_RATE  # the fundamental's phase / f0
    start = rng.uniform(0, 2 * np.pi, len(freqs))
    m = min(n, int(SWEEP_S * SAMPLE_RATE))
    ramp = t[:m] / SWEEP_S
    plucked = ins.kind == "plucked"
    out = np.zeros(n, np.float64)
    for j, (k, f, a) in enumerate(zip(ks, freqs, amps)):
        partial = np.sin(phase * f + start[j])
        sweep_ln = np.log(10) / 20 * ins.sweep_db * np.log2(k)  # brightness sweep of this partial, in nepers
        partial[:m] *= np.exp(sweep_ln * ramp)
        partial[m:] *= np.exp(sweep_ln)
        if plucked:  # high partials die first
            partial *= np.exp(-t * (1 + ins.damping * (k - 1)) / ins.decay_s)
        out += a * partial
    if plucked:
        env = np.clip(t / ins.attack_s, 0, 1) * _release(t, n_on, ins.release_s)
    else:
        env = _adsr(t, n_on, ins)
    tremolo = 1 - ins.tremolo_depth * 0.5 * (1 - np.cos(2 * np.pi * ins.tremolo_hz * t))
    noise_len = min(n, max(1, int(ins.noise_s * SAMPLE_RATE)))
    noise = np.zeros(n)
    burst = rng.standard_normal(noise_len) * np.exp(-np.arange(noise_len) / (noise_len / 4))
    noise[:noise_len] = np.convolve(burst, [0.5, 0.5], mode="same") * 10 ** (ins.noise_db / 20)
    loudness = 10 ** ((velocity - 127) / 127 * 30 / 20)  # 30 dB from velocity 0 to 127
    return (loudness * (out * env * tremolo + noise)).astype(np.float32)


def _adsr(t: np.ndarray, n_on: int, ins: ProceduralInstrument) -> np.ndarray:
    attack = np.clip(t / ins.attack_s, 0, 1)
    decay = ins.sustain + (1 - ins.sustain) * np.exp(-np.clip(t - ins.attack_s, 0, None) / ins.decay_s)
    env = np.where(t < ins.attack_s, attack, decay)
    return env * _release(t, n_on, ins.release_s)


def _release(t: np.ndarray, n_on: int, release_s: float) -> np.ndarray:
    gate = np.ones_like(t)
    t_off = n_on / SAMPLE_RATE
    gate[n_on:] = np.exp(-(t[n_on:] - t_off) / (release_s / 3))  # -26 dB after one release_s
    return gate


def render_performance(ins: ProceduralInstrument, perf: Performance, num_samples: int, seed: int) -> np.ndarray:
    """A whole stem: every note at its jittered times with the same detune bends as the SoundFont
    renderer (+-8192 = +-2 semitones). Vibrato is the instrument's own (the performance's CC1 events
    are a SoundFont modulation-wheel control and are not used here)."""
    out = np.zeros(num_samples, np.float64)
    rng = np.random.default_rng(seed)
    for note in perf.notes:
        start = int(round(note.on_time * SAMPLE_RATE))
        if start >= num_samples:
            continue
        audio = render_note(ins, note.pitch, note.velocity, note.off_time - note.on_time, note.bend / 8192 * 200, rng)
        stop = min(num_samples, start + len(audio))
        out[start:stop] += audio[: stop - start]
    return out.astype(np.float32)


# GM programs whose register and GM family a generated instrument takes (it has no GM program of its
# own): the pitch range the generator draws from and the family the "distinct GM family" rule and the
# held-out GM families see. Sustained tones take bowed/blown programs, plucked ones plucked/struck.
PSEUDO_PROGRAMS = {
    "sustained": (40, 41, 42, 43, 56, 57, 58, 60, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 109, 111),
    "plucked": (0, 6, 8, 11, 12, 13, 24, 25, 26, 27, 32, 33, 45, 46, 104, 105, 106, 107, 108),
}
SEEN_BANK, UNSEEN_BANK = 0, 1  # Instrument.bank of a generated instrument: which stream it comes from


def pseudo_program(instrument_id: str) -> int:
    """From the id alone ("proc-<kind>-<hash>"), so pools can be built from a renderer's preset table."""
    _, kind, digest = instrument_id.split("-")
    options = PSEUDO_PROGRAMS[kind]
    return options[int(digest, 16) % len(options)]


class ProceduralRenderer:
    """The Renderer of the procedural family: `soundfont` "procedural", bank 0 (seen stream) or 1
    (unseen stream), preset = the instrument's index in its stream."""

    def __init__(self, render_cfg, cfg) -> None:
        self.render_cfg = render_cfg
        self.streams = {SEEN_BANK: instrument_set(cfg.seed, cfg.seen_instruments, "seen"),
                        UNSEEN_BANK: instrument_set(cfg.seed, cfg.unseen_instruments, "unseen")}  # fmt: skip

    def restart(self) -> None:  # stateless: every stem's randomness comes from its own seed
        pass

    def instrument(self, bank: int, preset: int) -> ProceduralInstrument:
        return self.streams[bank][preset]

    def presets(self, soundfont: str) -> dict[tuple[int, int], str]:
        return {(bank, i): ins.id for bank, stream in self.streams.items() for i, ins in enumerate(stream)}

    def params(self, instrument) -> str:
        return self.instrument(instrument.bank, instrument.preset).to_json()

    def render(self, instrument, perf: Performance, num_samples: int, timbre=None):
        """timbre (a SoundFont generator offset) does not apply: a generated instrument is its own variety."""
        from mixscribe.synth.render import normalise_and_check

        ins = self.instrument(instrument.bank, instrument.preset)
        raw = render_performance(ins, perf, num_samples, stem_seed(ins, perf))
        return normalise_and_check(raw, perf, self.render_cfg)


def stem_seed(ins: ProceduralInstrument, perf: Performance) -> int:
    """Phases and noise of a stem follow from its instrument and notes alone: the stored parameters and
    labels re-render it sample for sample."""
    key = ins.id + "".join(f"|{n.pitch},{n.on_time:.6f},{n.off_time:.6f},{n.velocity},{n.bend}" for n in perf.notes)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


class MixedRenderer:
    """SoundFonts through FluidSynth, the procedural family through its spectral model."""

    def __init__(self, soundfonts, procedural: ProceduralRenderer) -> None:
        self.soundfonts, self.procedural = soundfonts, procedural

    def _for(self, soundfont: str):
        from mixscribe.config import PROCEDURAL_FAMILY

        return self.procedural if soundfont == PROCEDURAL_FAMILY else self.soundfonts

    def restart(self) -> None:
        self.soundfonts.restart()

    def presets(self, soundfont: str) -> dict[tuple[int, int], str]:
        return self._for(soundfont).presets(soundfont)

    def params(self, instrument) -> str:
        return self._for(instrument.soundfont).params(instrument)

    def render(self, instrument, perf: Performance, num_samples: int, timbre=None):
        return self._for(instrument.soundfont).render(instrument, perf, num_samples, timbre)

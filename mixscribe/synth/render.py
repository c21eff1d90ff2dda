"""Rendering behind one small interface: (instrument, performance) -> mono PCM at 22,050 Hz.

FluidSynthRenderer is the first implementation. One per process (Ray actor or thread): never fork a
process after it created a Synth (the child hangs in sfload). SoundFonts load once, lazily.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.signal import resample_poly

from mixscribe.config import RenderConfig
from mixscribe.errors import SoundFontError
from mixscribe.schema import HOP, SAMPLE_RATE
from mixscribe.synth.catalog import SoundFontEntry
from mixscribe.synth.generator import Performance
from mixscribe.synth.timbre import Timbre

FLUSH_SAMPLES = 1024  # a multiple of FluidSynth's 64-sample block
MELODIC_CHANNELS = tuple(c for c in range(16) if c != 9)  # channel 10 is drums in GM


@dataclass(frozen=True)
class Instrument:
    soundfont: str  # catalog id
    bank: int
    preset: int


@dataclass(frozen=True)
class RenderedStem:
    audio: np.ndarray  # float32 mono at SAMPLE_RATE, loudness-normalised, |x| <= peak_limit
    gain: float  # normalisation gain applied
    problem: str | None  # None, or why the stem must be dropped


class Renderer(Protocol):
    """What the synth stage needs from an instrument source; other sources plug in here."""

    def restart(self) -> None: ...

    def presets(self, soundfont: str) -> dict[tuple[int, int], str]: ...

    # timbre: offsets to a SoundFont preset's generators (None: the preset as it is); other sources ignore it
    def render(self, instrument: Instrument, performance: Performance, num_samples: int,
               timbre: Timbre | None = None) -> RenderedStem: ...  # fmt: skip

    def params(self, instrument: Instrument) -> str: ...  # what re-renders a generated instrument; "" otherwise


def _bind_float_writer():
    import fluidsynth

    fl = fluidsynth._fl
    fl.fluid_synth_write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                           ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]  # fmt: skip
    fl.fluid_synth_write_float.restype = ctypes.c_int
    fl.fluid_synth_set_interp_method.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    fl.fluid_synth_set_interp_method.restype = ctypes.c_int
    fl.fluid_synth_set_gen.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_float]
    fl.fluid_synth_set_gen.restype = ctypes.c_int
    return fl


def fluidsynth_version() -> str:
    import fluidsynth

    fl = fluidsynth._fl
    fl.fluid_version_str.restype = ctypes.c_char_p
    return fl.fluid_version_str().decode()


class FluidSynthRenderer:
    """Offline FluidSynth (no audio driver), float output, every default that biases data overridden."""

    def __init__(self, cfg: RenderConfig, soundfonts: list[SoundFontEntry]):
        self.cfg = cfg
        self._fl = _bind_float_writer()
        self.entries = {e.id: e for e in soundfonts}
        self._settings = {
            "synth.reverb.active": int(cfg.reverb),
            "synth.chorus.active": int(cfg.chorus),
            "synth.polyphony": cfg.polyphony,
            "synth.min-note-length": 0,  # FluidSynth lengthens notes to 10 ms by default
            "synth.dynamic-sample-loading": 1,  # sf3 would decode every sample on load
            "synth.cpu-cores": 1,
            "synth.audio-channels": 1,
        }
        self.synth = None
        self._sfids: dict[str, int] = {}
        self._presets: dict[str, dict[tuple[int, int], str]] = {}

        self.restart()

    def restart(self) -> None:
        """A new Synth with nothing played yet. FluidSynth voices keep state from earlier notes (output
        differs by ~1e-3), so a shard is rendered by a fresh Synth to make its bytes independent of
        whatever the actor rendered before it."""
        import fluidsynth

        self.close()
        cfg = self.cfg
        self.synth = fluidsynth.Synth(gain=cfg.synth_gain, samplerate=float(cfg.render_rate), channels=16,
                                      **self._settings)  # fmt: skip
        self._sfids = {}

    def close(self) -> None:
        if self.synth is not None:
            self.synth.delete()
            self.synth = None

    def _sfid(self, sf_id: str) -> int:
        if sf_id not in self._sfids:
            if sf_id not in self.entries:
                raise SoundFontError(f"soundfont {sf_id!r}: not among this renderer's SoundFonts")
            path = self.entries[sf_id].path
            sfid = self.synth.sfload(path)
            if sfid < 0:
                raise SoundFontError(f"{path}: FluidSynth cannot load this SoundFont (missing or corrupt)")
            self._sfids[sf_id] = sfid
        return self._sfids[sf_id]

    def presets(self, soundfont: str) -> dict[tuple[int, int], str]:
        """Every (bank, program) -> name that the SoundFont defines."""
        if soundfont not in self._presets:
            sfid = self._sfid(soundfont)
            table = {}
            for bank in range(129):
                for prog in range(128):
                    name = self.synth.sfpreset_name(sfid, bank, prog)
                    if name is not None:
                        table[(bank, prog)] = name
            self._presets[soundfont] = table
        return self._presets[soundfont]

    def _reset(self, sfid: int, instrument: Instrument) -> None:
        """Silence and reset controllers. (Not system_reset: it re-selects the default preset on every
        channel, which reloads that preset's samples, ~0.3 s each time with dynamic sample loading.)"""
        s = self.synth
        for ch in range(16):
            s.all_sounds_off(ch)
            s.cc(ch, 121, 0)  # reset all controllers: bend, modulation, expression, pedals
        self._fl.fluid_synth_set_interp_method(s.synth, -1, self.cfg.interpolation)
        for ch in MELODIC_CHANNELS:
            if s.program_select(ch, sfid, instrument.bank, instrument.preset) != 0:
                raise SoundFontError(
                    f"{self.entries[instrument.soundfont].path}: no preset bank {instrument.bank} "
                    f"program {instrument.preset}"
                )
        self._flush()

    def _set_timbre(self, timbre: Timbre) -> None:
        """Every melodic channel's generator offsets, set after the controller reset (which clears them)
        and before the first note; all zero (the neutral Timbre) renders bit for bit as no offsets."""
        for ch in MELODIC_CHANNELS:
            for gen, value in timbre.offsets().items():
                if self._fl.fluid_synth_set_gen(self.synth.synth, ch, gen, value) != 0:
                    raise SoundFontError(f"FluidSynth refused generator {gen} = {value} on channel {ch}")

    def _flush(self) -> None:
        """Render and discard until the synth is silent: state left by the previous stem (voices being
        killed, the partly consumed 64-sample block) must not leak into the next one."""
        scratch = np.zeros(FLUSH_SAMPLES, np.float32)
        for _ in range(64):
            self._fl.fluid_synth_write_float(self.synth.synth, FLUSH_SAMPLES, scratch.ctypes.data, 0, 1,
                                             scratch.ctypes.data, 0, 1)  # fmt: skip
            if self.synth.get_active_voice_count() == 0 and not np.any(scratch):
                return

    def _events(self, perf: Performance, rate: int) -> list[tuple[int, int, tuple]]:
        """(sample, order, action) sorted; offs before ons at the same sample; CC before notes."""
        ev: list[tuple[int, int, tuple]] = [(int(t * rate), 0, ("cc1", v)) for t, v in perf.vibrato]
        for i, n in enumerate(perf.notes):
            ev.append((int(round(n.on_time * rate)), 2, ("on", i)))
            ev.append((int(round(n.off_time * rate)), 1, ("off", i)))
        ev.sort(key=lambda e: (e[0], e[1], e[2][1]))
        return ev

    def render_raw(self, instrument: Instrument, perf: Performance, num_samples: int,
                   timbre: Timbre | None = None) -> np.ndarray:  # fmt: skip
        """Dry float render at SAMPLE_RATE (anti-alias resampled when rendered higher), no normalisation."""
        rate = self.cfg.render_rate
        sfid = self._sfid(instrument.soundfont)
        if (instrument.bank, instrument.preset) not in self.presets(instrument.soundfont):
            raise SoundFontError(
                f"{self.entries[instrument.soundfont].path}: unknown preset bank {instrument.bank} "
                f"program {instrument.preset}"
            )
        self._reset(sfid, instrument)
        key_shift = 0  # the sounding key's distance from the written pitch, which coarse tune cancels
        if timbre is not None:  # the reset above cleared any earlier stem's offsets
            self._set_timbre(timbre)
            key_shift = timbre.formant_semitones
        total = num_samples * rate // SAMPLE_RATE
        left = np.zeros(total, np.float32)
        right = np.zeros(total, np.float32)
        s, write = self.synth, self._fl.fluid_synth_write_float
        # Each note gets its own channel where possible, so its detune bend does not bend its neighbours.
        channel_of: dict[int, int] = {}
        busy: dict[int, int] = {}
        last_used = {c: -1 for c in MELODIC_CHANNELS}
        pos = 0
        for sample, _, action in self._events(perf, rate) + [(total, 9, ("end", 0))]:
            sample = min(sample, total)
            if sample > pos:
                write(s.synth, sample - pos, left.ctypes.data, pos, 1, right.ctypes.data, pos, 1)
                pos = sample
            kind, arg = action
            if kind == "cc1":
                for ch in MELODIC_CHANNELS:
                    s.cc(ch, 1, arg)
            elif kind == "on":
                n = perf.notes[arg]
                free = [c for c in MELODIC_CHANNELS if busy.get(c, 0) == 0] or list(MELODIC_CHANNELS)
                ch = min(free, key=lambda c: last_used[c])
                channel_of[arg], last_used[ch] = ch, sample
                busy[ch] = busy.get(ch, 0) + 1
                s.pitch_bend(ch, n.bend)
                s.noteon(ch, n.pitch + key_shift, n.velocity)
            elif kind == "off" and arg in channel_of:
                ch = channel_of.pop(arg)
                busy[ch] -= 1
                s.noteoff(ch, perf.notes[arg].pitch + key_shift)
        mono = (left + right) * 0.5
        if rate != SAMPLE_RATE:
            mono = resample_poly(mono, SAMPLE_RATE, rate).astype(np.float32)
        return mono[:num_samples]

    def params(self, instrument: Instrument) -> str:
        return ""  # a SoundFont preset is named by (soundfont, bank, preset) alone

    def render(self, instrument: Instrument, perf: Performance, num_samples: int,
               timbre: Timbre | None = None) -> RenderedStem:  # fmt: skip
        raw = self.render_raw(instrument, perf, num_samples, timbre)
        return normalise_and_check(raw, perf, self.cfg)


def frame_rms(audio: np.ndarray) -> np.ndarray:
    n = len(audio) // HOP
    return np.sqrt((audio[: n * HOP].reshape(n, HOP).astype(np.float64) ** 2).mean(1))


def normalise_and_check(raw: np.ndarray, perf: Performance, cfg: RenderConfig) -> RenderedStem:
    """Per-stem loudness normalisation; decide whether the stem may be written with its labels.

    A stem is dropped when it is non-finite or absurdly loud (out of bounds), silent overall, or
    silent at any labelled note (a preset without samples for that key would teach wrong labels).
    """
    if not np.all(np.isfinite(raw)):
        return RenderedStem(raw, 0.0, "non_finite")
    peak = float(np.abs(raw).max()) if raw.size else 0.0
    if peak > cfg.max_raw_peak:
        return RenderedStem(raw, 0.0, "out_of_bounds")
    env = frame_rms(raw)
    rms = float(np.sqrt((env**2).mean())) if env.size else 0.0
    if rms < cfg.silence_rms:
        return RenderedStem(raw, 0.0, "silent")
    floor = env.max() * 10 ** (cfg.note_silence_db / 20)
    for n in perf.notes:
        window = env[n.onset : min(n.offset, n.onset + 8, len(env))]
        if window.size and window.max() < floor:
            return RenderedStem(raw, 0.0, "silent_note")
    active = env[env > floor]
    active_rms = float(np.sqrt((active**2).mean())) if active.size else rms
    gain = 10 ** (cfg.target_rms_dbfs / 20) / active_rms
    gain = min(gain, cfg.peak_limit / peak)
    return RenderedStem((raw * gain).astype(np.float32), float(gain), None)

"""Realism the paper's synthetic data lacked, applied to each training mixture.

FluidSynth renders dry, flat, uncompressed audio; real recordings have a room, a tilted spectrum, a
level and some dynamics processing. Each transform fires with its own probability and draws its
parameters from the example's RNG, so an example is still deterministic in (seed, epoch, index). The DSP
is Spotify's pedalboard (JUCE): no hand-written filters. The labels are untouched: a reverb tail is not a
note. The paper's additive noise stays in the remixer (RemixConfig.noise_std) and comes after these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixscribe.config import SelfChecking
from mixscribe.schema import SAMPLE_RATE

TRANSFORMS = ("reverb", "eq_tilt", "gain", "compressor")  # on the mixture, in this order
STEM_TRANSFORM = "stem_colour"  # on single stems before they are mixed


@dataclass(frozen=True)
class AugmentConfig(SelfChecking):
    enabled: bool = True
    p_reverb: float = 0.5
    room_size: tuple[float, float] = (0.1, 0.8)
    wet_level: tuple[float, float] = (0.05, 0.35)
    damping: tuple[float, float] = (0.2, 0.8)
    p_eq_tilt: float = 0.5
    tilt_db: tuple[float, float] = (-6.0, 6.0)  # low shelf gets -tilt/2, high shelf +tilt/2
    tilt_pivot_hz: float = 800.0
    p_gain: float = 0.5
    gain_db: tuple[float, float] = (-12.0, 6.0)
    p_compressor: float = 0.3
    threshold_db: tuple[float, float] = (-30.0, -12.0)
    ratio: tuple[float, float] = (2.0, 4.0)
    # Per-stem colour: each stem of a mixture, with this chance, through its own EQ (two shelves and a
    # peak) before mixing, so two stems of one preset rarely share a spectrum and the embedding cannot
    # key on a preset's exact spectral envelope. 0: stems mixed as rendered.
    p_stem_colour: float = 0.0
    stem_shelf_db: tuple[float, float] = (-9.0, 9.0)  # low shelf at 250 Hz, high shelf at 3 kHz, each its own draw
    stem_peak_db: tuple[float, float] = (-9.0, 9.0)
    stem_peak_hz: tuple[float, float] = (200.0, 5000.0)  # log-uniform
    stem_peak_q: tuple[float, float] = (0.7, 3.0)

    def validate(self) -> None:
        from mixscribe.config import check_field

        for name in ("p_reverb", "p_eq_tilt", "p_gain", "p_compressor", "p_stem_colour"):
            check_field(0 <= getattr(self, name) <= 1, f"augment.{name}", "must be a probability in [0, 1]")
        for name in ("room_size", "wet_level", "damping", "tilt_db", "gain_db", "threshold_db", "ratio",
                     "stem_shelf_db", "stem_peak_db", "stem_peak_hz", "stem_peak_q"):  # fmt: skip
            lo_hi = getattr(self, name)
            check_field(len(lo_hi) == 2 and lo_hi[0] <= lo_hi[1], f"augment.{name}", "needs [low, high] with low <= high")
        for name in ("room_size", "wet_level", "damping"):
            check_field(0 <= min(getattr(self, name)) and max(getattr(self, name)) <= 1, f"augment.{name}", "must lie in [0, 1]")
        check_field(self.ratio[0] >= 1, "augment.ratio", "must be >= 1")
        check_field(0 < self.tilt_pivot_hz < SAMPLE_RATE / 2, "augment.tilt_pivot_hz", "must be below Nyquist")
        check_field(0 < self.stem_peak_hz[0] and self.stem_peak_hz[1] < SAMPLE_RATE / 2, "augment.stem_peak_hz",
               "must lie in (0, Nyquist)")  # fmt: skip
        check_field(self.stem_peak_q[0] > 0, "augment.stem_peak_q", "must be > 0")


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def draw_chain(cfg: AugmentConfig, rng: np.random.Generator) -> tuple[list, dict[str, float]]:
    """The pedalboard plugins for one example and a record of what was drawn (for logging)."""
    import pedalboard as pb

    plugins, drawn = [], {}
    if not cfg.enabled:
        return plugins, drawn
    # One draw per transform, always in the same order, so toggling one never shifts the others' RNG.
    fire = {name: rng.uniform() for name in TRANSFORMS}
    if fire["eq_tilt"] < cfg.p_eq_tilt:
        tilt = _uniform(rng, cfg.tilt_db)
        plugins += [pb.LowShelfFilter(cutoff_frequency_hz=cfg.tilt_pivot_hz, gain_db=-tilt / 2),
                    pb.HighShelfFilter(cutoff_frequency_hz=cfg.tilt_pivot_hz, gain_db=tilt / 2)]  # fmt: skip
        drawn["eq_tilt_db"] = tilt
    if fire["compressor"] < cfg.p_compressor:
        threshold, ratio = _uniform(rng, cfg.threshold_db), _uniform(rng, cfg.ratio)
        plugins.append(pb.Compressor(threshold_db=threshold, ratio=ratio, attack_ms=5.0, release_ms=80.0))
        drawn["compressor_threshold_db"], drawn["compressor_ratio"] = threshold, ratio
    if fire["reverb"] < cfg.p_reverb:
        room, wet, damp = _uniform(rng, cfg.room_size), _uniform(rng, cfg.wet_level), _uniform(rng, cfg.damping)
        plugins.append(pb.Reverb(room_size=room, wet_level=wet, dry_level=1.0 - wet, damping=damp, width=0.0))
        drawn["reverb_room_size"], drawn["reverb_wet_level"] = room, wet
    if fire["gain"] < cfg.p_gain:
        gain = _uniform(rng, cfg.gain_db)
        plugins.append(pb.Gain(gain_db=gain))
        drawn["gain_db"] = gain
    return plugins, drawn


def augment(audio: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """Apply a freshly drawn chain to mono float32 audio; returns the audio and what was applied.
    The result is clipped to [-1, 1] as a recording would be."""
    import pedalboard as pb

    plugins, drawn = draw_chain(cfg, rng)
    if not plugins:
        return audio, drawn
    out = pb.Pedalboard(plugins)(audio.astype(np.float32)[None, :], SAMPLE_RATE, reset=True)[0]
    return np.clip(out, -1.0, 1.0).astype(np.float32), drawn


def colour_stem(audio: np.ndarray, index: int, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """One stem through its own EQ (with cfg.p_stem_colour), before mixing; returns the audio and what
    was drawn, keyed 'stem_colour_{index}_...'."""
    import pedalboard as pb

    if not cfg.enabled or cfg.p_stem_colour <= 0 or rng.uniform() >= cfg.p_stem_colour:
        return audio, {}
    low, high, peak = _uniform(rng, cfg.stem_shelf_db), _uniform(rng, cfg.stem_shelf_db), _uniform(rng, cfg.stem_peak_db)
    hz = float(np.exp(rng.uniform(np.log(cfg.stem_peak_hz[0]), np.log(cfg.stem_peak_hz[1]))))
    q = _uniform(rng, cfg.stem_peak_q)
    board = pb.Pedalboard([pb.LowShelfFilter(cutoff_frequency_hz=250.0, gain_db=low),
                           pb.HighShelfFilter(cutoff_frequency_hz=3000.0, gain_db=high),
                           pb.PeakFilter(cutoff_frequency_hz=hz, gain_db=peak, q=q)])  # fmt: skip
    out = board(audio.astype(np.float32)[None, :], SAMPLE_RATE, reset=True)[0]
    # Colour, not level (the remixer's gains draw the level): the stem keeps its RMS, and its peak stays
    # within full scale so the mixture, a weighted mean, never clips.
    rms_in, rms_out = float(np.sqrt(np.mean(audio**2))), float(np.sqrt(np.mean(out**2)))
    if rms_out > 0:
        out = out * (rms_in / rms_out)
    out = out / max(1.0, float(np.abs(out).max()))
    key = f"{STEM_TRANSFORM}_{index}"
    return out.astype(np.float32), {f"{key}_low_db": low, f"{key}_high_db": high, f"{key}_peak_db": peak,
                                    f"{key}_peak_hz": hz, f"{key}_peak_q": q}  # fmt: skip

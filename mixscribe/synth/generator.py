"""Random piano rolls and their humanised performance (paper-spec §8.1-8.2), per instrument range.

Labels live on the frame grid (hop 256 at 22,050 Hz); the performance (event times, bends, vibrato)
is what the renderer plays. Everything is drawn from one numpy Generator, so (config, seed) fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import truncnorm

from mixscribe.config import GeneratorConfig
from mixscribe.schema import HOP, MIDI_MIN, SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class RollNote:
    pitch: int  # MIDI
    onset: int  # frame
    offset: int  # frame (exclusive)


@dataclass(frozen=True, slots=True)
class PerformedNote:
    pitch: int
    onset: int  # label frame
    offset: int  # label frame (exclusive)
    velocity: int
    bend: int  # pitch-bend offset from centre (+-8192 = +-2 semitones)
    on_time: float  # seconds, jittered
    off_time: float  # seconds, jittered


@dataclass(frozen=True)
class Performance:
    notes: list[PerformedNote]
    vibrato: list[tuple[float, int]]  # (seconds, CC1 value)
    num_frames: int


def _truncnorm(rng: np.random.Generator, loc: float, scale: float, low: float, high: float) -> float:
    """Normal(loc, scale) truncated to [low, high]. Rejection is exact and ~100x faster than
    scipy.stats.truncnorm here (the bounds keep most of the mass); scipy handles the rare tight case."""
    for _ in range(32):
        x = rng.normal(loc, scale)
        if low <= x <= high:
            return float(x)
    a, b = (low - loc) / scale, (high - loc) / scale
    return float(truncnorm.rvs(a, b, loc=loc, scale=scale, random_state=rng))


class PitchBag:
    """Each pitch in the bag w_octave times; popped in shuffled order, refilled when empty."""

    def __init__(self, low: int, high: int, octave_weights: tuple[float, ...], rng: np.random.Generator):
        self.rng = rng
        pitches = np.arange(low, high + 1)
        octave = np.clip((pitches - MIDI_MIN) // 12, 0, len(octave_weights) - 1)
        weights = np.rint(np.asarray(octave_weights, float)[octave]).astype(int)
        if weights.sum() == 0:
            weights[:] = 1
        self.template = np.repeat(pitches, weights)
        self.bag: list[int] = []

    def pop(self, near_to: int | None = None, near_prob: float = 0.0, window: int = 9) -> int:
        if not self.bag:
            self.bag = [int(p) for p in self.rng.permutation(self.template)]
        if near_to is not None and self.rng.random() < near_prob:
            top = self.bag[-window:]
            j = int(np.argmin([abs(p - near_to) for p in top]))
            i = len(self.bag) - len(top) + j
            self.bag[i], self.bag[-1] = self.bag[-1], self.bag[i]
        return self.bag.pop()


def _duration(cfg: GeneratorConfig, rng: np.random.Generator) -> int:
    sigma = (cfg.duration_mean - cfg.duration_min) / 2 or 1.0
    return int(round(_truncnorm(rng, cfg.duration_mean, sigma, cfg.duration_min, cfg.duration_max)))


def generate_roll(cfg: GeneratorConfig, low: int, high: int, rng: np.random.Generator) -> list[RollNote]:
    """The paper's main melodic line plus geometric chord chains, confined to [low, high]; with
    probability cfg.line_prob the main line alone, its notes never overlapping (one voice)."""
    T = cfg.clip_frames
    line = cfg.line_prob > 0 and rng.random() < cfg.line_prob  # no draw at 0: old seeds, same rolls
    occupied = np.zeros((high - low + 1, T), dtype=bool)
    bag = PitchBag(low, high, cfg.octave_weights, rng)
    notes: list[RollNote] = []
    queue: list[RollNote] = []

    def free_span(pitch: int, onset: int, length: int) -> int:
        """Frames from onset until the row is occupied or the clip ends (at most length)."""
        row = occupied[pitch - low, onset : min(onset + length, T)]
        hits = np.flatnonzero(row)
        return int(hits[0]) if hits.size else row.size

    def place(pitch: int, onset: int, end: int) -> RollNote:
        occupied[pitch - low, onset:end] = True
        note = RollNote(pitch, onset, end)
        notes.append(note)
        return note

    prev: RollNote | None = None
    for _ in range(4 * T):  # a bound, never reached in practice: each pass advances or ends
        pitch = bag.pop(prev.pitch if prev else None, cfg.near_prob, cfg.near_window)
        length = _duration(cfg, rng)
        if prev is None:
            onset = 0
        else:
            prev_len = prev.offset - prev.onset
            gap = _truncnorm(rng, cfg.onset_mu, cfg.onset_scale, -(prev_len + 0.5), prev_len / 3)
            step = int(round(gap))
            onset = max(0, prev.offset + (max(step, 0) if line else step))  # a voice never overlaps itself
        while onset < T and occupied[pitch - low, onset]:
            onset += 1  # slide forward to the next free frame
        if onset >= T:
            break
        span = free_span(pitch, onset, length)
        if onset + span >= T and span < length and span < cfg.duration_mean / 2:
            break  # a note truncated at the clip end that is too short ends generation
        if span < cfg.duration_min:
            continue  # squeezed by a later note on the same pitch: draw again
        prev = place(pitch, onset, onset + span)
        if line:
            continue
        if rng.random() < cfg.poly_prob + 0.2 * span / cfg.duration_max:
            queue.append(prev)

    mid = (low + high) / 2
    while queue:
        base = queue.pop(0)
        if occupied[:, base.onset].sum() >= cfg.max_polyphony:
            continue
        if rng.random() < cfg.chord_prob:
            step = int(rng.choice(cfg.chord_intervals))
            direction = 1 if base.pitch < mid else -1
            pitch = base.pitch + direction * step
            if not low <= pitch <= high:
                pitch = base.pitch - direction * step
            if not low <= pitch <= high:
                continue
        else:
            pitch = bag.pop()
        span = free_span(pitch, base.onset, _duration(cfg, rng))
        if span >= cfg.duration_min and not occupied[pitch - low, base.onset]:
            place(pitch, base.onset, base.onset + span)
            if rng.random() < cfg.poly_prob:
                queue.append(base)
    notes.sort(key=lambda n: (n.onset, n.pitch))
    return notes


def humanise(cfg: GeneratorConfig, roll: list[RollNote], rng: np.random.Generator) -> Performance:
    """Velocity walk, per-note detune, CC1 vibrato and sub-frame timing jitter (labels unchanged)."""
    frame_s = HOP / SAMPLE_RATE
    vmin, vmax = cfg.velocity_min, cfg.velocity_max
    step = (vmax - (vmin + vmax) / 2) / 8
    v = rng.uniform(vmin, vmax)
    performed = []
    for n in roll:
        v += rng.normal(0, step)
        while v < vmin or v > vmax:  # reflect at the bounds
            v = 2 * vmin - v if v < vmin else 2 * vmax - v
        bend = int(round(rng.triangular(-cfg.detune_max, 0, cfg.detune_max))) if cfg.detune_max else 0
        j_on, j_off = rng.uniform(-cfg.jitter_frames, cfg.jitter_frames, 2)
        on_time = max(0.0, (n.onset + j_on) * frame_s)
        off_time = max(on_time + frame_s, (n.offset + j_off) * frame_s)
        performed.append(PerformedNote(n.pitch, n.onset, n.offset, int(round(v)), bend, on_time, off_time))
    beat_s = 60.0 / cfg.tempo_bpm
    duration_s = cfg.clip_frames * frame_s
    vibrato, t = [], 0.0
    while t < duration_s:
        value = max(0.0, rng.triangular(cfg.vibrato_low, cfg.vibrato_mode, cfg.vibrato_high))
        vibrato.append((t, int(round(min(value, 127)))))
        t += rng.uniform(0.5, max(cfg.vibrato_max_beats, 0.5)) * beat_s
    return Performance(performed, vibrato, cfg.clip_frames)


def generate_performance(cfg: GeneratorConfig, low: int, high: int, rng: np.random.Generator) -> Performance:
    return humanise(cfg, generate_roll(cfg, low, high, rng), rng)

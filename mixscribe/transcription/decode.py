"""From posteriorgrams and embeddings to notes and K tracks (paper-spec §7). NumPy only: the model run
is kept apart from note decoding, so decoding is tested on synthetic posteriorgrams with known notes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixscribe.transcription.kestimate import KModel, laplacian_eigenvalues
from mixscribe.schema import HOP, MIDI_MIN, SAMPLE_RATE, Note


@dataclass(frozen=True)
class DecodeParams:
    onset_threshold: float = 0.5
    frame_threshold: float = 0.3
    min_note_frames: float = 7.5  # L_min: a note must be longer than this
    energy_tolerance: int = 11  # tol: frames below threshold allowed inside a note
    infer_onsets: bool = True
    melodia: bool = True
    neighbour_trick: bool = False
    peak_axis: str = "time"  # "pitch" reproduces the reference bug (§11)
    normalise: bool = True  # divide Y_F, Y_O by their maxima first
    pool_power: float = 1.0  # note embedding weights Y_F ** pool_power (1: paper, 2: browser app)
    cluster_sharpness: float = 1.0  # clustering affinity exp(s cos) (1: spec §7.2); tuned on validation
    k_sharpness: float = 10.0  # eigengap K estimate's affinity exp(s (cos - 1)); tuned on validation
    max_k: int = 8  # the K estimate's upper bound
    k_model: KModel | None = None  # the K classifier fitted on validation (kestimate.py); None: eigengap
    # Transcription only: frames whose audio (DC removed) stays below this RMS level are never notes, so
    # noise and hum cannot become notes once the posteriorgrams are normalised to their maximum.
    gate_dbfs: float = -55.0

    def __post_init__(self) -> None:
        from mixscribe.errors import ConfigError

        for name in LIMITS:
            why = out_of_range(name, getattr(self, name))
            if why:
                raise ConfigError(f"config field decode.{name}: {why}")


# The values a caller may set, each with its valid range (finite, and this test): DecodeParams checks
# them, and `mixscribe transcribe` checks its options by the same rules before any work.
LIMITS = {
    "onset_threshold": (lambda v: 0 < v < 1, "must be in (0, 1)"),
    "frame_threshold": (lambda v: 0 < v < 1, "must be in (0, 1)"),
    "min_note_frames": (lambda v: v >= 0, "must be >= 0"),
    "energy_tolerance": (lambda v: v >= 0, "must be >= 0"),
    "gate_dbfs": (lambda v: v <= 0, "must be a level <= 0 dBFS"),
    "pool_power": (lambda v: v > 0, "must be > 0"),
    "cluster_sharpness": (lambda v: v > 0, "must be > 0"),
    "k_sharpness": (lambda v: v > 0, "must be > 0"),
    "max_k": (lambda v: v >= 1, "must be >= 1"),
}


def out_of_range(name: str, value: float) -> str | None:
    """Why value is not a valid DecodeParams.<name>, or None when it is."""
    ok, why = LIMITS[name]
    return None if np.isfinite(value) and ok(value) else f"{why}, got {value}"


@dataclass(frozen=True)
class RawNote:
    pitch_index: int  # 0..83 -> MIDI 24 + index
    start: int  # frame
    end: int  # frame, exclusive
    amplitude: float  # mean Y_F over the note

    def to_note(self, track: int = 0) -> Note:
        frame_s = HOP / SAMPLE_RATE
        velocity = int(np.clip(round(self.amplitude * 127), 1, 127))
        return Note(self.start * frame_s, self.end * frame_s, MIDI_MIN + self.pitch_index, velocity, track)


def infer_onsets(frame: np.ndarray, onset: np.ndarray) -> np.ndarray:
    """max(Y_O, d) with d the smallest rise of Y_F over 1-3 frames, rescaled to max(Y_O) (§7.1 step 1)."""
    d = np.full_like(frame, np.inf)
    for n in (1, 2, 3):  # running minimum: one extra array, not three (long files)
        np.minimum(d[:, n:], frame[:, n:] - frame[:, :-n], out=d[:, n:])
    d[:, :3] = 0
    np.maximum(d, 0.0, out=d)
    d[:, :3] = 0
    if d.max() > 0:
        d = d * (onset.max() / d.max())
    return np.maximum(onset, d)


def onset_peaks(onset: np.ndarray, threshold: float, axis: str = "time") -> list[tuple[int, int]]:
    """(pitch, frame) of strict local maxima >= threshold along time (or pitch, for parity runs)."""
    o = onset if axis == "time" else onset.T
    left = np.full_like(o, -np.inf)
    right = np.full_like(o, -np.inf)
    left[:, 1:] = o[:, :-1]
    right[:, :-1] = o[:, 1:]
    peaks = (o > left) & (o > right) & (o >= threshold)
    rows, cols = np.nonzero(peaks)
    return list(zip(rows, cols)) if axis == "time" else list(zip(cols, rows))


def _walk(row: np.ndarray, start: int, step: int, threshold: float, tol: int, stop: int) -> int:
    """Walk from start while fewer than tol consecutive frames are below threshold; return one past the
    last frame at or above threshold (forward) or that frame itself (backward)."""
    last_ok, misses, t = start, 0, start + step
    while (t < stop if step > 0 else t > stop) and misses < tol:
        if row[t] >= threshold:
            last_ok, misses = t, 0
        else:
            misses += 1
        t += step
    return last_ok + 1 if step > 0 else last_ok


def create_notes(frame: np.ndarray, onset: np.ndarray, p: DecodeParams = DecodeParams()) -> list[RawNote]:
    """Note creation of §7.1 on [84, T] posteriorgrams."""
    frame = np.asarray(frame, np.float32)
    onset = np.asarray(onset, np.float32)
    if p.normalise:
        frame = frame / frame.max() if frame.max() > 0 else frame
        onset = onset / onset.max() if onset.max() > 0 else onset
    n_pitch, T = frame.shape
    o = infer_onsets(frame, onset) if p.infer_onsets else onset
    remaining = frame.copy()
    notes: list[RawNote] = []

    def emit(pitch: int, start: int, end: int) -> None:
        notes.append(RawNote(int(pitch), int(start), int(end), float(frame[pitch, start:end].mean())))
        remaining[pitch, start:end] = 0
        if p.neighbour_trick:
            remaining[max(pitch - 1, 0) : pitch + 2, start:end] = 0

    for pitch, t0 in sorted(onset_peaks(o, p.onset_threshold, p.peak_axis), key=lambda x: -x[1]):
        if t0 >= T - 1:
            continue
        end = _walk(remaining[pitch], t0, +1, p.frame_threshold, p.energy_tolerance, T - 1)
        if end - t0 <= p.min_note_frames:
            continue
        emit(pitch, t0, end)

    if p.melodia:
        # The strongest frame left, again and again: bins are only ever zeroed, so visiting the bins above
        # threshold once in descending order (stable: argmax's first-index tie rule) and skipping zeroed
        # ones is the same sequence as re-scanning the array per note, without its O(notes x bins) cost.
        flat = remaining.ravel()
        above = np.flatnonzero(flat > p.frame_threshold)
        for idx in above[np.argsort(-flat[above], kind="stable")]:
            if flat[idx] <= p.frame_threshold:
                continue
            pitch, mid = divmod(int(idx), T)
            remaining[pitch, mid] = 0
            end = _walk(remaining[pitch], mid, +1, p.frame_threshold, p.energy_tolerance, T - 1)
            start = _walk(remaining[pitch], mid, -1, p.frame_threshold, p.energy_tolerance, -1)
            remaining[pitch, start:end] = 0
            if end - start > p.min_note_frames:
                notes.append(RawNote(int(pitch), int(start), int(end), float(frame[pitch, start:end].mean())))
    notes.sort(key=lambda n: (n.start, n.pitch_index))
    return notes


def pool_note_embeddings(notes: list[RawNote], frame: np.ndarray, embedding: np.ndarray, power: float = 1.0) -> np.ndarray:
    """u = sum_t Y_F[p,t]^power V[:,p,t] over the note, L2-normalised (§7.2). embedding [D, 84, T]."""
    out = np.zeros((len(notes), embedding.shape[0]), np.float64)
    for i, n in enumerate(notes):
        w = np.asarray(frame[n.pitch_index, n.start : n.end], np.float64) ** power
        out[i] = embedding[:, n.pitch_index, n.start : n.end].astype(np.float64) @ w
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def affinity(u: np.ndarray, sharpness: float = 1.0) -> np.ndarray:
    """A_ij = exp(s cos(u_i, u_j)); s = 1 is the spec's (§7.2), in [1/e, e]."""
    return np.exp(sharpness * np.clip(u @ u.T, -1.0, 1.0))


def estimate_k(u: np.ndarray, max_k: int = 8, sharpness: float = 10.0) -> int:
    """Number of timbres from the eigengap of the normalised note affinity.

    exp(cos) is too flat to show a gap (its floor is 1/e), so the estimate uses the sharper
    exp(sharpness (cos - 1)); K = the position of the largest gap among the first max_k+1 eigenvalues of
    the normalised Laplacian.
    """
    n = len(u)
    if n <= 1:
        return n
    eig = laplacian_eigenvalues(u @ u.T, sharpness)[: min(max_k, n - 1) + 1]
    gaps = np.diff(eig)
    return int(np.argmax(gaps) + 1)


MAX_DENSE_NOTES = 2000  # a dense n x n affinity (and spectral clustering's copies of it) beyond this: memory, O(n^3)


def cluster_notes(u: np.ndarray, k: int | None, max_k: int = 8, seed: int = 0, sharpness: float = 10.0,
                  cluster_sharpness: float = 1.0) -> tuple[np.ndarray, int]:  # fmt: skip
    """Track labels for notes by spectral clustering on exp(s cos) (s = cluster_sharpness; sharpness is
    the K estimate's); K estimated when not given.

    Long files: the clustering (and the K estimate) runs on a seeded sample of MAX_DENSE_NOTES notes,
    and every note then joins the track whose mean embedding is nearest, so memory stays bounded."""
    from sklearn.cluster import SpectralClustering

    n = len(u)
    if n == 0:
        return np.zeros(0, int), k or 0
    sample = np.sort(np.random.default_rng(seed).choice(n, MAX_DENSE_NOTES, replace=False)) if n > MAX_DENSE_NOTES else None
    core = u if sample is None else u[sample]
    k = estimate_k(core, max_k, sharpness) if k is None else k
    if k <= 1:
        return np.zeros(n, int), 1
    if n <= k:
        return np.arange(n), k  # one note per track, the rest empty (§7.2)
    labels = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr",
                                random_state=seed).fit_predict(affinity(core, cluster_sharpness))  # fmt: skip
    if sample is not None:
        centres = np.stack([core[labels == c].mean(0) if np.any(labels == c) else np.zeros(u.shape[1]) for c in range(k)])
        labels = np.argmax(u @ centres.T, axis=1)
    return _order_tracks(labels, k), k


def _order_tracks(labels: np.ndarray, k: int) -> np.ndarray:
    """Renumber tracks by first appearance, so output order is stable."""
    order = {}
    for lab in labels:
        order.setdefault(int(lab), len(order))
    for lab in range(k):
        order.setdefault(lab, len(order))
    return np.array([order[int(x)] for x in labels])


def frame_level_tracks(frame: np.ndarray, onset: np.ndarray, embedding: np.ndarray, k: int,
                       p: DecodeParams = DecodeParams(), seed: int = 0) -> list[list[RawNote]]:  # fmt: skip
    """The comparison variant (§7.3): cluster active bins, then create notes per masked Y_F."""
    from sklearn.cluster import KMeans, SpectralClustering

    f = frame / frame.max() if p.normalise and frame.max() > 0 else frame
    pitches, times = np.nonzero(f > p.frame_threshold)
    if len(pitches) == 0:
        return [[] for _ in range(k)]
    v = embedding[:, pitches, times].T
    if len(v) <= k or k == 1:
        labels = np.zeros(len(v), int)
    elif len(v) > 22000:
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(v)
    else:
        labels = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr",
                                    random_state=seed).fit_predict(affinity(v))  # fmt: skip
    tracks = []
    for lab in range(k):
        masked = np.zeros_like(f)
        sel = labels == lab
        masked[pitches[sel], times[sel]] = f[pitches[sel], times[sel]]
        tracks.append(create_notes(masked, onset, DecodeParams(**{**p.__dict__, "normalise": False})))
    return tracks

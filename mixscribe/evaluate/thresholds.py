"""Decoding thresholds tuned on a validation set and frozen before any test set is scored.

The search is the authors' (spec §9.4): theta_F coarse-to-fine to maximise the mean frame F1, then
theta_O the same way at that theta_F to maximise the mean note F. The difference is where it runs: the
authors searched on their test sets; here it only ever sees the validation outputs it is given.
After that, by default, the note shape (minimum length, the gap a note may bridge, onset inference:
spec §7.1's fixed constants) is chosen the same way over a small grid, and theta_O searched again:
on the default model's tuning set this gave +0.7 note F (69.2 -> 69.9, docs/model-card.md).
Then the clustering (how note embeddings are pooled, how sharp the affinity is) is chosen for
separated note F with the true K, on the notes of the decoding just tuned: +0.5 / +0.7 separated
note F on the multi-instrument clips of the default model's tuning set (step 5 / 6 weights); on
timbres the encoder never heard it helped 3-4 instruments and cost a little on 2 (docs/model-card.md).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mixscribe.schema import Note


@dataclass(frozen=True)
class TuningClip:
    """What tuning needs of one validation clip: the model's posteriorgrams and the true notes."""

    frame: np.ndarray  # [84, T]
    onset: np.ndarray  # [84, T]
    notes: list[Note]


@dataclass(frozen=True)
class Tuned:
    frame_threshold: float
    onset_threshold: float
    frame_f1: float
    note_f1: float
    clips: int
    k_sharpness: float | None = None  # tuned only when K is estimated (k_mode auto)
    k_accuracy: float | None = None  # of the K estimate used: the classifier's (cross-validated), else the eigengap's
    k_eigengap_accuracy: float | None = None  # the eigengap's, at the tuned sharpness, on the tuning set
    min_note_frames: float | None = None  # the note shape, when tuned (else the spec's 7.5, 11, True)
    energy_tolerance: int | None = None
    infer_onsets: bool | None = None
    pool_power: float | None = None  # the clustering, when tuned (else the spec's 1, 1)
    cluster_sharpness: float | None = None
    sep_note_f1: float | None = None  # on the tuning set's multi-instrument clips, at the tuned clustering

    def note_shape(self) -> dict:
        """The tuned note-shape fields of DecodeParams (empty when the shape was not tuned)."""
        return {name: getattr(self, name) for name in SHAPE_FIELDS if getattr(self, name) is not None}

    def clustering(self) -> dict:
        """The tuned clustering fields of DecodeParams (empty when the clustering was not tuned)."""
        return {name: getattr(self, name) for name in CLUSTER_FIELDS if getattr(self, name) is not None}


@dataclass(frozen=True)
class ClusterClip:
    """What clustering tuning needs of one validation clip: the notes decoded at the tuned thresholds,
    their embeddings pooled at each power of CLUSTER_GRID, the true notes and the clip's length."""

    raw: list  # decode.RawNote
    pooled: dict  # pool power -> [N, D] unit vectors (None when the clip has no note)
    notes: list[Note]
    n_frames: int

    @property
    def k(self) -> int:
        return len({n.stem for n in self.notes}) or 1


# Every combination is tried (one setting at a time misses pairs that only help together, e.g. a longer
# gap tolerance with onsets from Y_O only); the spec's is kept unless another raises the mean note F.
SHAPE_GRID = (("min_note_frames", (6.0, 7.5, 9.0, 12.0)), ("energy_tolerance", (8, 11, 15, 20)),
              ("infer_onsets", (True, False)))  # fmt: skip
SHAPE_FIELDS = tuple(name for name, _ in SHAPE_GRID)
# Pooling with Y_F^2 (the authors' browser app) weighs a note's confident frames more; a sharper affinity
# than the spec's exp(cos) separates close timbres more (much sharper measured worse: 8 and 16 lost 1.5
# and 4 points on the default model's tuning set).
CLUSTER_GRID = (("pool_power", (1.0, 2.0)), ("cluster_sharpness", (1.0, 2.0, 3.0)))
CLUSTER_FIELDS = tuple(name for name, _ in CLUSTER_GRID)


def _search(score, lo: float = 0.05, hi: float = 0.95, steps: int = 10, rounds: int = 4) -> tuple[float, float]:
    """Coarse-to-fine 1-D grid search for the maximum of score(theta): `steps` points per round, each
    round zooming on the best point's neighbours; stops early when a round does not improve."""
    best_t, best_s = None, -1.0
    for _ in range(rounds):
        grid = np.linspace(lo, hi, steps)
        scores = [score(float(t)) for t in grid]
        i = int(np.argmax(scores))
        if scores[i] <= best_s:
            break
        best_t, best_s = float(grid[i]), float(scores[i])
        width = (hi - lo) / (steps - 1)
        lo, hi = max(0.01, best_t - width), min(0.99, best_t + width)
    return best_t, best_s


def tune_thresholds(clips: list[TuningClip], note_shape: bool = True) -> Tuned:
    """theta_F for frame F1, theta_O for note F; with note_shape, then the note shape (SHAPE_GRID) and
    theta_O once more, for note F."""
    from mixscribe.transcription.decode import DecodeParams, create_notes
    from mixscribe.evaluate.metrics import frame_scores, note_scores, notes_to_roll, remove_short_runs

    if not clips:
        raise ValueError("threshold tuning needs at least one validation clip")
    refs = [notes_to_roll([Note(n.onset, n.offset, n.pitch, n.velocity, 0) for n in c.notes], c.frame.shape[1]) for c in clips]

    def frame_f1(theta: float) -> float:
        return float(np.mean([frame_scores(r, remove_short_runs(c.frame > theta))["frame_f1"] for r, c in zip(refs, clips)]))

    theta_f, best_frame = _search(frame_f1)

    def note_f1(theta: float, **shape) -> float:
        params = DecodeParams(onset_threshold=theta, frame_threshold=theta_f, **shape)
        return float(np.mean([note_scores(c.notes, [n.to_note() for n in create_notes(c.frame, c.onset, params)])["note_f1"]
                              for c in clips]))  # fmt: skip

    theta_o, best_note = _search(note_f1)
    shape: dict = {}
    if note_shape:
        for values in itertools.product(*(values for _, values in SHAPE_GRID)):  # 32 settings, all of them
            score = note_f1(theta_o, **dict(zip(SHAPE_FIELDS, values)))
            if score > best_note:
                shape, best_note = dict(zip(SHAPE_FIELDS, values)), score
        theta, score = _search(lambda t: note_f1(t, **shape))
        if score > best_note:
            theta_o, best_note = theta, score
        defaults = DecodeParams()
        shape = {name: shape.get(name, getattr(defaults, name)) for name in SHAPE_FIELDS}
    return Tuned(round(theta_f, 4), round(theta_o, 4), best_frame, best_note, len(clips), **shape)


def tune_clustering(clips: list[ClusterClip]) -> dict:
    """The pooling power and affinity sharpness (CLUSTER_GRID, every combination) with the highest mean
    separated note F over the clips of more than one instrument, each clustered into its true K; the
    spec's (1, 1) is kept unless another scores higher. Returns the DecodeParams fields and the score."""
    from mixscribe.transcription.decode import cluster_notes
    from mixscribe.evaluate.metrics import separated_scores

    multi = [c for c in clips if c.k > 1 and c.raw]
    if not multi:
        return {}

    def sep_f1(pool_power: float, cluster_sharpness: float) -> float:
        scores = []
        for c in multi:
            labels, _ = cluster_notes(c.pooled[pool_power], c.k, cluster_sharpness=cluster_sharpness)
            est = [n.to_note(int(t)) for n, t in zip(c.raw, labels)]
            scores.append(separated_scores(c.notes, est, c.n_frames)["sep_note_f1"])
        return float(np.mean(scores))

    best, best_score = dict.fromkeys(CLUSTER_FIELDS, 1.0), -1.0
    for values in itertools.product(*(values for _, values in CLUSTER_GRID)):  # the spec's (1, 1) first
        score = sep_f1(*values)
        if score > best_score:
            best, best_score = dict(zip(CLUSTER_FIELDS, values)), score
    return {**best, "sep_note_f1": best_score}


SHARPNESS_GRID = (2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 20.0, 28.0, 40.0)


def tune_k_sharpness(clips: list[tuple[np.ndarray, int]], max_k: int = 8) -> tuple[float, float]:
    """The K estimate's affinity sharpness that gets K right on most validation clips, given each clip's
    pooled note embeddings and true K (ties go to the smaller sharpness). Returns (sharpness, accuracy)."""
    from mixscribe.transcription.decode import estimate_k

    if not clips:
        raise ValueError("K tuning needs at least one validation clip")

    def accuracy(s: float) -> float:
        return float(np.mean([estimate_k(u, max_k, s) == k for u, k in clips]))

    scores = [accuracy(s) for s in SHARPNESS_GRID]
    i = int(np.argmax(scores))
    return SHARPNESS_GRID[i], scores[i]

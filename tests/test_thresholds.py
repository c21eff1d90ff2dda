"""Threshold tuning: finds the thresholds that separate true from false activations, by the spec's search."""

import dataclasses

import numpy as np

from mixscribe.evaluate.metrics import FRAME_S
from mixscribe.evaluate.thresholds import ClusterClip, TuningClip, _search, tune_clustering, tune_thresholds
from mixscribe.schema import Note


def synthetic_clip(rng, false_level=0.35, distractor_onset=0.45, true_level=1.0, onset_level=0.8):
    """Posteriorgrams where true notes sit at true_level, ghost notes (harmonics) at false_level, and a
    spurious onset bump (distractor_onset) sits inside every true note. Decoding normalises Y_O by its
    maximum, so the bump reads distractor_onset / onset_level: an onset threshold below that splits
    every note in two (a false note), one above it keeps them whole (the melodia pass still finds any
    note whose onset peak was missed)."""
    frame = np.zeros((84, 400), np.float32)
    onset = np.zeros_like(frame)
    notes = []
    for i in range(6):
        p, a = int(rng.integers(10, 70)), 20 + 60 * i
        frame[p, a : a + 30] = true_level
        onset[p, a] = onset_level
        onset[p, a + 15] = distractor_onset
        notes.append(Note(a * FRAME_S, (a + 30) * FRAME_S, 24 + p, 90))
        q = (p + 7) % 84
        frame[q, a + 5 : a + 25] = false_level  # a ghost note (e.g. a harmonic)
    return TuningClip(frame, onset, notes)


def test_tuning_separates_true_from_ghost_notes():
    rng = np.random.default_rng(0)
    clips = [synthetic_clip(rng) for _ in range(3)]
    tuned = tune_thresholds(clips)
    assert 0.35 <= tuned.frame_threshold < 1.0
    assert tuned.onset_threshold > 0.45 / 0.8
    assert tuned.frame_f1 > 0.99 and tuned.note_f1 > 0.99 and tuned.clips == 3


def test_tuning_follows_the_data_it_is_given_and_nothing_else():
    rng = np.random.default_rng(1)
    loud_ghosts = [synthetic_clip(rng, false_level=0.6, distractor_onset=0.7) for _ in range(2)]
    tuned = tune_thresholds(loud_ghosts)
    assert 0.6 <= tuned.frame_threshold < 1.0 and tuned.onset_threshold > 0.7 / 0.8
    assert tuned.note_f1 > 0.99


def test_coarse_to_fine_search_zooms_in():
    calls = []

    def score(t):
        calls.append(t)
        return -abs(t - 0.4321)

    best, _ = _search(score)
    assert abs(best - 0.4321) < 0.01
    assert len(calls) > 10  # more than the coarse grid


def test_k_sharpness_is_the_one_that_gets_k_right_most_often():
    """Tight groups are told apart at any sharpness; loose ones only by a sharp affinity. The tuner
    picks the grid value with the best K accuracy on the clips it is given (smallest on ties)."""
    from mixscribe.transcription.decode import estimate_k
    from mixscribe.evaluate.thresholds import SHARPNESS_GRID, tune_k_sharpness
    from tests.test_decode import clustered_embeddings

    clips = []
    for seed in range(12):
        k = 1 + seed % 4
        u, _ = clustered_embeddings(k, n=40, spread=0.3, seed=seed)
        clips.append((u, k))
    sharpness, accuracy = tune_k_sharpness(clips)
    per_value = {s: np.mean([estimate_k(u, 8, s) == k for u, k in clips]) for s in SHARPNESS_GRID}
    assert accuracy == max(per_value.values()) == per_value[sharpness]
    assert sharpness == min(s for s, a in per_value.items() if a == accuracy)
    assert min(per_value.values()) < accuracy  # the choice matters on these clips


def gapped_clip(rng, gap=13):
    """Long notes whose Y_F dips to nothing for `gap` frames in the middle (a bow change, a re-struck
    key fading): the spec's 11-frame tolerance splits each into two notes, the second a false one."""
    frame = np.zeros((84, 500), np.float32)
    onset = np.zeros_like(frame)
    notes = []
    for i in range(5):
        p, a = int(rng.integers(10, 70)), 10 + 95 * i
        frame[p, a : a + 30] = 1.0
        frame[p, a + 30 + gap : a + 80] = 0.9
        onset[p, a] = 0.8
        notes.append(Note(a * FRAME_S, (a + 80) * FRAME_S, 24 + p, 90))
    return TuningClip(frame, onset, notes)


def test_note_shape_is_tuned_when_the_spec_constants_split_notes():
    rng = np.random.default_rng(2)
    clips = [gapped_clip(rng) for _ in range(3)]
    spec = tune_thresholds(clips, note_shape=False)
    assert spec.note_f1 < 0.8 and spec.note_shape() == {}  # every note split in two
    tuned = tune_thresholds(clips)
    # bridging a 13-frame gap needs both a longer tolerance and no onset inferred where Y_F rises again
    assert tuned.energy_tolerance >= 15 and tuned.infer_onsets is False
    assert tuned.note_f1 > 0.99 and tuned.frame_threshold == spec.frame_threshold


def test_note_shape_stays_the_specs_unless_another_scores_higher():
    rng = np.random.default_rng(0)
    tuned = tune_thresholds([synthetic_clip(rng) for _ in range(3)])
    assert tuned.note_shape() == {"min_note_frames": 7.5, "energy_tolerance": 11, "infer_onsets": True}


def two_instrument_clip(rng, separated: dict[float, bool]) -> ClusterClip:
    """Two instruments of 12 notes each, decoded exactly; the pooled embeddings at each power either
    fall in two tight groups by instrument (separated) or are random unit vectors."""
    from mixscribe.transcription.decode import RawNote

    raw = [RawNote(10 + i, 20 * i, 20 * i + 15, 0.9) for i in range(24)]
    notes = [Note(n.start * FRAME_S, n.end * FRAME_S, 24 + n.pitch_index, 90, i % 2) for i, n in enumerate(raw)]
    centres = rng.normal(size=(2, 12))
    pooled = {}
    for power, good in separated.items():
        u = centres[np.arange(24) % 2] + 0.05 * rng.normal(size=(24, 12)) if good else rng.normal(size=(24, 12))
        pooled[power] = u / np.linalg.norm(u, axis=1, keepdims=True)
    return ClusterClip(raw, pooled, notes, 24 * 20)


def test_clustering_tuning_picks_the_pooling_whose_embeddings_separate_the_instruments():
    rng = np.random.default_rng(0)
    best = tune_clustering([two_instrument_clip(rng, {1.0: False, 2.0: True}) for _ in range(4)])
    assert best["pool_power"] == 2.0 and best["sep_note_f1"] > 0.99


def test_clustering_stays_the_specs_unless_another_scores_higher():
    rng = np.random.default_rng(1)
    clips = [two_instrument_clip(rng, {1.0: True, 2.0: True}) for _ in range(3)]
    assert tune_clustering(clips) == {"pool_power": 1.0, "cluster_sharpness": 1.0, "sep_note_f1": 1.0}
    solo = [dataclasses.replace(n, stem=0) for n in clips[0].notes]
    assert tune_clustering([ClusterClip(clips[0].raw, clips[0].pooled, solo, 480)]) == {}  # no clip of 2+ instruments


def test_clustering_affinity_sharpness():
    from mixscribe.transcription.decode import affinity

    u = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(affinity(u), np.exp(u @ u.T))  # the spec's exp(cos)
    np.testing.assert_allclose(affinity(u, 3.0), np.exp(3 * u @ u.T))

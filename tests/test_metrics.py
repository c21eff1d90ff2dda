"""Metric functions against hand-computed cases: perfect, empty, shifted onsets, swapped tracks, K mismatch."""

import numpy as np
import pytest

from mixscribe.evaluate.metrics import (
    FRAME_S,
    clip_scores,
    clustering_scores,
    frame_scores,
    match_tracks,
    note_scores,
    notes_to_roll,
    remove_short_runs,
    separated_scores,
    split_tracks,
)
from mixscribe.schema import Note


def two_parts():
    a = [Note(0.0, 0.5, 60, 90, 0), Note(1.0, 1.5, 62, 90, 0), Note(2.0, 2.5, 64, 90, 0)]
    b = [Note(0.2, 0.9, 48, 90, 1), Note(1.2, 1.9, 50, 90, 1)]
    return a + b


def retrack(notes, mapping):
    return [Note(n.onset, n.offset, n.pitch, n.velocity, mapping[n.stem]) for n in notes]


def test_perfect_transcription_scores_one_everywhere():
    ref = two_parts()
    roll = notes_to_roll(ref, 300)
    s = clip_scores(ref, ref, roll, k_ref=2, k_est=2)
    for key in ("frame_f1", "note_f1", "note_offset_f1", "sep_note_f1", "sep_frame_f1", "cluster_purity", "cluster_ari", "k_correct"):
        assert s[key] == pytest.approx(1.0), key


def test_empty_cases():
    assert note_scores([], [])["note_f1"] == 1.0
    assert note_scores(two_parts(), [])["note_f1"] == 0.0 and note_scores([], two_parts())["note_precision"] == 0.0
    empty = np.zeros((84, 50), bool)
    assert frame_scores(empty, empty)["frame_f1"] == 1.0
    assert clustering_scores(two_parts(), [])["cluster_ari"] == 0.0


def test_onsets_shifted_beyond_50ms_miss_and_within_hit():
    ref = [Note(1.0, 1.5, 60, 90)]
    assert note_scores(ref, [Note(1.04, 1.5, 60, 90)])["note_f1"] == 1.0
    assert note_scores(ref, [Note(1.06, 1.5, 60, 90)])["note_f1"] == 0.0
    assert note_scores(ref, [Note(1.0, 1.5, 61, 90)])["note_f1"] == 0.0  # a semitone is beyond 50 cents
    # offsets ignored for F_N, counted for the second figure
    s = note_scores(ref, [Note(1.0, 3.0, 60, 90)])
    assert s["note_f1"] == 1.0 and s["note_offset_f1"] == 0.0
    # 2 of 3 reference notes found, one false alarm: P = R = 2/3
    ref3 = [Note(0, 0.3, 60, 90), Note(1, 1.3, 62, 90), Note(2, 2.3, 64, 90)]
    est3 = [Note(0, 0.3, 60, 90), Note(1, 1.3, 62, 90), Note(3, 3.3, 70, 90)]
    s = note_scores(ref3, est3)
    assert s["note_precision"] == pytest.approx(2 / 3) and s["note_recall"] == pytest.approx(2 / 3)


def test_frame_scores_by_hand():
    ref = np.zeros((84, 10), bool)
    est = np.zeros((84, 10), bool)
    ref[36, 0:4] = True  # 4 reference frames
    est[36, 2:6] = True  # 2 hits, 2 false alarms
    s = frame_scores(ref, est)
    assert s["frame_precision"] == pytest.approx(0.5) and s["frame_recall"] == pytest.approx(0.5)
    assert s["frame_accuracy"] == pytest.approx(2 / 6)


@pytest.mark.parametrize("seed", range(4))
def test_frame_scores_are_mir_eval_multipitch_evaluate(seed):
    """frame_scores runs mir_eval's own steps without resampling and the chroma variants: on random rolls
    (silent frames, chords, one side empty) it gives exactly what mir_eval.multipitch.evaluate gives."""
    import mir_eval

    rng = np.random.default_rng(seed)
    ref = rng.random((84, 300)) < 0.03
    est = (rng.random((84, 300)) < 0.03) | (ref & (rng.random((84, 300)) < 0.7))
    ref[:, 100:140] = False  # silent reference frames
    est[:, 200:230] = False
    for a, b in ((ref, est), (ref, np.zeros_like(est)), (np.zeros_like(ref), est)):
        hz = [440.0 * 2.0 ** ((24 + np.nonzero(r[:, t])[0] - 69.0) / 12.0) for r in (a, b) for t in range(300)]
        times = np.arange(300) * FRAME_S
        want = mir_eval.multipitch.evaluate(times, hz[:300], times, hz[300:])
        got = frame_scores(a, b)
        assert got["frame_precision"] == want["Precision"] and got["frame_recall"] == want["Recall"]
        assert got["frame_accuracy"] == want["Accuracy"]


def test_short_runs_are_removed():
    roll = np.zeros((2, 12), bool)
    roll[0, 1:3] = True  # 2 frames: removed
    roll[0, 5:8] = True  # 3 frames: kept
    roll[1, 10:12] = True  # 2 frames at the edge: removed
    out = remove_short_runs(roll)
    assert list(np.nonzero(out[0])[0]) == [5, 6, 7] and not out[1].any()


def test_swapped_track_labels_change_nothing():
    ref = two_parts()
    est = retrack(ref, {0: 1, 1: 0})
    pairs = match_tracks(split_tracks(ref), split_tracks(est), 300)
    assert sorted(pairs) == [(0, 1), (1, 0)]
    assert separated_scores(ref, est, 300)["sep_note_f1"] == 1.0
    assert clustering_scores(ref, est)["cluster_ari"] == 1.0


def test_matching_is_invariant_to_permuting_estimated_tracks():
    rng = np.random.default_rng(0)
    ref = two_parts() + [Note(2.5, 2.9, 72, 90, 2), Note(0.5, 0.9, 74, 90, 2)]
    est = retrack(ref, {0: 0, 1: 0, 2: 1})  # parts 0 and 1 merged into one track
    base = separated_scores(ref, est, 300)
    for _ in range(5):
        perm = rng.permutation(2)
        assert separated_scores(ref, retrack(est, {0: int(perm[0]), 1: int(perm[1])}), 300) == base


def test_k_mismatch_unmatched_parts_and_tracks_score_zero():
    ref = two_parts()
    merged = retrack(ref, {0: 0, 1: 0})  # K_est = 1 < K_ref = 2
    s = separated_scores(ref, merged, 300)
    # track 0 matched to part 0 (3 of 5 notes right: P 3/5, R 1, F 0.75); part 1 unmatched: 0
    assert s["sep_note_f1"] == pytest.approx((0.75 + 0.0) / 2)
    split = ref[:3] + [Note(n.onset, n.offset, n.pitch, n.velocity, 1 + i % 2) for i, n in enumerate(ref[3:])]
    s = separated_scores(ref, split, 300)  # K_est = 3: part 1 split over two tracks, one left over
    assert s["sep_note_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    assert clip_scores(ref, merged, notes_to_roll(merged, 300), 2, 1)["k_correct"] == 0.0


def test_cluster_purity_and_ari_on_a_half_wrong_labelling():
    ref = two_parts()
    est = [Note(n.onset, n.offset, n.pitch, n.velocity, i % 2) for i, n in enumerate(ref)]
    s = clustering_scores(ref, est)
    assert s["matched_notes"] == 5 and s["cluster_purity"] == pytest.approx(3 / 5)
    assert s["cluster_ari"] < 0.2


def test_roll_uses_the_model_hop():
    roll = notes_to_roll([Note(10 * FRAME_S, 20 * FRAME_S, 24, 90), Note(0, 1, 108, 90)], 40)
    assert list(np.nonzero(roll[0])[0]) == list(range(10, 20)) and roll.sum() == 10


def test_register_agreement_by_hand():
    from mixscribe.evaluate.metrics import register_agreement

    assert register_agreement([60, 62, 70, 72], [0, 0, 1, 1]) == 1.0  # one threshold splits them
    assert register_agreement([60, 62, 70, 72], [1, 1, 0, 0]) == 1.0  # whichever label is low
    assert register_agreement([60, 70, 62, 72], [0, 0, 1, 1]) == pytest.approx(3 / 4)  # crossing lines
    assert register_agreement([60, 60, 70], [0, 1, 1]) == pytest.approx(2 / 3)  # one pitch, two labels
    assert register_agreement([40, 50, 60, 70, 80, 90], [0, 0, 1, 1, 2, 2]) == 1.0  # K - 1 = 2 thresholds
    assert register_agreement([40, 50, 60, 70, 80, 90], [0, 1, 2, 0, 1, 2]) == pytest.approx(4 / 6)
    assert register_agreement([1, 2, 3], [5, 5, 5]) == 1.0


def test_register_scores_tell_a_register_split_from_a_timbre_split():
    """Two crossing parts: the true parts are far from a pitch threshold; tracks that split the notes at
    one pitch score 1.0 there, tracks that follow the parts score what the parts do."""
    from mixscribe.evaluate.metrics import register_scores

    a = [Note(t, t + 0.4, p, 90, 0) for t, p in ((0.0, 60), (1.0, 67), (2.0, 62), (3.0, 70))]
    b = [Note(t + 0.5, t + 0.9, p, 90, 1) for t, p in ((0.0, 66), (1.0, 61), (2.0, 69), (3.0, 63))]
    ref = a + b
    by_register = [Note(n.onset, n.offset, n.pitch, n.velocity, int(n.pitch >= 65)) for n in ref]
    s = register_scores(ref, by_register)
    assert s["register_est"] == 1.0 and s["register_ref"] == pytest.approx(5 / 8)
    s = register_scores(ref, ref)
    assert s["register_est"] == s["register_ref"] == pytest.approx(5 / 8)
    assert clip_scores(ref, by_register, notes_to_roll(ref, 500), 2, 2)["register_est"] == 1.0

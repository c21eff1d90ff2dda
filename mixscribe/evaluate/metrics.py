"""Metrics of paper-spec §9: mir_eval frame and note scores, timbre-separated scores after optimal track
matching, and how well notes were clustered. Inputs are Note lists (Note.stem = reference part or
estimated track), so the same functions score any transcriber."""

from __future__ import annotations

import numpy as np

from mixscribe.schema import HOP, MIDI_MIN, N_PITCH, SAMPLE_RATE, Note

FRAME_S = HOP / SAMPLE_RATE
ONSET_TOLERANCE = 0.05  # seconds (§9.3)
MIN_RUN_FRAMES = 3  # §9.2: runs shorter than this are removed before frame scoring


def _hz(midi: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, float) - 69.0) / 12.0)


def notes_to_roll(notes: list[Note], n_frames: int) -> np.ndarray:
    """Binary roll [84, n_frames] at the model's hop; pitches outside the 84 rows are dropped."""
    roll = np.zeros((N_PITCH, n_frames), bool)
    for n in notes:
        p = n.pitch - MIDI_MIN
        a, b = int(round(n.onset / FRAME_S)), int(round(n.offset / FRAME_S))
        if 0 <= p < N_PITCH and b > a:
            roll[p, max(a, 0) : min(max(b, a + 1), n_frames)] = True
    return roll


def remove_short_runs(roll: np.ndarray, min_len: int = MIN_RUN_FRAMES) -> np.ndarray:
    """Drop runs of active frames shorter than min_len at each pitch (§9.2 step 2)."""
    out = roll.copy()
    padded = np.pad(roll.astype(np.int8), ((0, 0), (1, 1)))
    diff = np.diff(padded, axis=1)
    for p, start in zip(*np.nonzero(diff == 1)):
        end = start + np.argmax(diff[p, start + 1 :] == -1) + 1
        if end - start < min_len:
            out[p, start:end] = False
    return out


def _per_frame_midi(roll: np.ndarray) -> list[np.ndarray]:
    """The MIDI numbers sounding in each frame of a [84, T] roll, as mir_eval.multipitch holds them."""
    _, pitch = np.nonzero(roll.T)  # frame-major, so each frame's pitches are contiguous
    return np.split((MIDI_MIN + pitch).astype(float), np.cumsum(roll.sum(axis=0))[:-1])


def frame_scores(ref_roll: np.ndarray, est_roll: np.ndarray) -> dict[str, float]:
    """mir_eval.multipitch's frame precision, recall and accuracy on binary rolls at the same hop, and F
    from P and R (mir_eval leaves it out). Its own steps (frequency counts, per-frame matching within half
    a semitone, accuracy) without what `evaluate` adds around them: resampling (the rolls share their
    frames) and the chroma variants no report shows, which took half the time of threshold tuning."""
    from mir_eval import multipitch

    if not ref_roll.any() and not est_roll.any():
        return {"frame_precision": 1.0, "frame_recall": 1.0, "frame_f1": 1.0, "frame_accuracy": 1.0}
    ref, est = _per_frame_midi(ref_roll), _per_frame_midi(est_roll)
    tp = multipitch.compute_num_true_positives(ref, est)
    p, r, acc = multipitch.compute_accuracy(tp, multipitch.compute_num_freqs(ref), multipitch.compute_num_freqs(est))
    return {"frame_precision": float(p), "frame_recall": float(r), "frame_f1": _f1(float(p), float(r)),
            "frame_accuracy": float(acc)}  # fmt: skip


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def note_intervals(notes: list[Note]) -> tuple[np.ndarray, np.ndarray]:
    if not notes:
        return np.zeros((0, 2)), np.zeros(0)
    iv = np.array([[n.onset, max(n.offset, n.onset + 1e-3)] for n in notes], float)
    return iv, _hz([n.pitch for n in notes])


def note_scores(ref: list[Note], est: list[Note]) -> dict[str, float]:
    """Onset-only note P/R/F (50 ms, offsets ignored: the paper's F_N) and onset+offset F as a second
    figure. Empty against empty is a perfect score; one side empty scores zero."""
    import mir_eval

    if not ref and not est:
        return {"note_precision": 1.0, "note_recall": 1.0, "note_f1": 1.0, "note_offset_f1": 1.0}
    if not ref or not est:
        return {"note_precision": 0.0, "note_recall": 0.0, "note_f1": 0.0, "note_offset_f1": 0.0}
    ri, rp = note_intervals(ref)
    ei, ep = note_intervals(est)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ri, rp, ei, ep, onset_tolerance=ONSET_TOLERANCE, pitch_tolerance=50.0, offset_ratio=None)  # fmt: skip
    _, _, f_off, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ri, rp, ei, ep, onset_tolerance=ONSET_TOLERANCE, pitch_tolerance=50.0)  # fmt: skip
    return {"note_precision": float(p), "note_recall": float(r), "note_f1": float(f), "note_offset_f1": float(f_off)}


def split_tracks(notes: list[Note]) -> dict[int, list[Note]]:
    tracks: dict[int, list[Note]] = {}
    for n in notes:
        tracks.setdefault(n.stem, []).append(n)
    return tracks


def match_tracks(ref: dict[int, list[Note]], est: dict[int, list[Note]], n_frames: int) -> list[tuple[int | None, int | None]]:
    """Optimal one-to-one matching of estimated tracks to reference parts (§9.6): Hungarian on the summed
    squared roll difference. With K_est != K_ref the smaller side is padded with empty tracks, which
    come back as None (a part nobody transcribed, or an extra track)."""
    from scipy.optimize import linear_sum_assignment

    r_ids, e_ids = sorted(ref), sorted(est)
    n = max(len(r_ids), len(e_ids))
    rolls_r = [notes_to_roll(ref[i], n_frames) for i in r_ids] + [np.zeros((N_PITCH, n_frames), bool)] * (n - len(r_ids))
    rolls_e = [notes_to_roll(est[j], n_frames) for j in e_ids] + [np.zeros((N_PITCH, n_frames), bool)] * (n - len(e_ids))
    cost = np.array([[np.count_nonzero(a != b) for b in rolls_e] for a in rolls_r], float)
    rows, cols = linear_sum_assignment(cost)
    pairs = []
    for i, j in zip(rows, cols):
        pairs.append((r_ids[i] if i < len(r_ids) else None, e_ids[j] if j < len(e_ids) else None))
    return pairs


def separated_scores(ref: list[Note], est: list[Note], n_frames: int) -> dict[str, float]:
    """Timbre-separated note and frame F after matching, averaged over tracks (the paper's figure). A
    reference part without a track, or a track without a part, counts as a track scoring zero."""
    pairs = match_tracks(split_tracks(ref), split_tracks(est), n_frames)
    r_tracks, e_tracks = split_tracks(ref), split_tracks(est)
    note_f, frame_f = [], []
    for i, j in pairs:
        r, e = r_tracks.get(i, []), e_tracks.get(j, [])
        if i is None or j is None:
            note_f.append(0.0)
            frame_f.append(0.0)
            continue
        note_f.append(note_scores(r, e)["note_f1"])
        frame_f.append(frame_scores(notes_to_roll(r, n_frames), notes_to_roll(e, n_frames))["frame_f1"])
    return {"sep_note_f1": float(np.mean(note_f)) if note_f else 1.0, "sep_frame_f1": float(np.mean(frame_f)) if frame_f else 1.0}


def matched_pairs(ref: list[Note], est: list[Note]) -> list[tuple[int, int]]:
    """(reference note, estimated note) indices of each estimated note that hits a reference note (same
    pitch, onset within 50 ms, each reference note used once): the notes on which clustering and
    register can be judged."""
    import mir_eval

    if not ref or not est:
        return []
    ri, rp = note_intervals(ref)
    ei, ep = note_intervals(est)
    return mir_eval.transcription.match_notes(ri, rp, ei, ep, onset_tolerance=ONSET_TOLERANCE,
                                              pitch_tolerance=50.0, offset_ratio=None)  # fmt: skip


def clustering_scores(ref: list[Note], est: list[Note], pairs: list[tuple[int, int]] | None = None) -> dict[str, float]:
    """Purity and adjusted Rand index of the track labels over correctly transcribed notes (`pairs`:
    matched_pairs(ref, est), when the caller has it already)."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.metrics.cluster import contingency_matrix

    pairs = matched_pairs(ref, est) if pairs is None else pairs
    truth, pred = [ref[i].stem for i, _ in pairs], [est[j].stem for _, j in pairs]
    if not truth:
        return {"cluster_purity": 0.0, "cluster_ari": 0.0, "matched_notes": 0.0}
    table = contingency_matrix(truth, pred)
    purity = float(table.max(axis=0).sum() / table.sum())
    return {"cluster_purity": purity, "cluster_ari": float(adjusted_rand_score(truth, pred)), "matched_notes": float(len(truth))}


def register_agreement(pitches: list[int], labels: list[int]) -> float:
    """The largest share of notes that K-1 pitch thresholds put in their own label's band (every order
    of the labels tried, every threshold between distinct pitches): 1.0 when register alone explains
    the labelling. Run on true parts it says how far register could separate them; on estimated tracks,
    how far the model separated by register."""
    from itertools import permutations

    kinds = sorted(set(labels))
    if len(kinds) <= 1:
        return 1.0
    unique = sorted(set(pitches))
    counts = np.zeros((len(unique), len(kinds)))
    for p, lab in zip(pitches, labels):
        counts[unique.index(p), kinds.index(lab)] += 1
    best = 0.0
    for order in permutations(range(len(kinds))):
        gain = counts[:, order]  # [pitch, band]: notes of the band's label at that pitch
        dp = gain[0].copy()  # dp[b]: best count with the pitches so far, the last one in band b
        for row in gain[1:]:
            dp = np.maximum.accumulate(dp) + row  # this pitch in band b, the pitches below in bands <= b
        best = max(best, float(dp.max()))
    return best / len(labels)


def register_scores(ref: list[Note], est: list[Note], pairs: list[tuple[int, int]] | None = None) -> dict[str, float]:
    """register_agreement of the estimated tracks and of the true parts, on the same notes (those the
    model transcribed correctly, `pairs` as in clustering_scores): est far above ref means tracks split
    by register, not timbre."""
    if not ref or not est:
        return {"register_est": 1.0, "register_ref": 1.0}
    pairs = matched_pairs(ref, est) if pairs is None else pairs
    pitches = [ref[i].pitch for i, _ in pairs]
    return {"register_est": register_agreement(pitches, [est[j].stem for _, j in pairs]),
            "register_ref": register_agreement(pitches, [ref[i].stem for i, _ in pairs])}  # fmt: skip


def clip_scores(ref: list[Note], est: list[Note], est_frame_roll: np.ndarray, k_ref: int, k_est: int) -> dict[str, float]:
    """Every per-clip figure: timbre-agnostic frame (on the thresholded posteriorgram, short runs removed)
    and note scores, separated scores, clustering scores and whether K was right."""
    n_frames = est_frame_roll.shape[1]
    agnostic_ref = [Note(n.onset, n.offset, n.pitch, n.velocity, 0) for n in ref]
    agnostic_est = [Note(n.onset, n.offset, n.pitch, n.velocity, 0) for n in est]
    out = frame_scores(notes_to_roll(agnostic_ref, n_frames), remove_short_runs(est_frame_roll))
    out.update(note_scores(agnostic_ref, agnostic_est))
    out.update(separated_scores(ref, est, n_frames))
    pairs = matched_pairs(ref, est)  # one note matching for the clustering and the register figures
    out.update(clustering_scores(ref, est, pairs))
    out.update(register_scores(ref, est, pairs))
    out["k_correct"] = float(k_ref == k_est)
    out["k_est"] = float(k_est)
    return out

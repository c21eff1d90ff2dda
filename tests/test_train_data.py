"""Training targets from notes (hand-checked) and remixing of stored stems."""

import numpy as np
import pytest

from mixscribe.schema import HOP, SAMPLE_RATE, Clip, Note, Stem
from mixscribe.train.data import ONSET, SUSTAIN, RemixConfig, Remixer, note_roll, targets_from_rolls

F = HOP / SAMPLE_RATE  # seconds per frame


def test_note_roll_marks_onset_then_sustain():
    roll = note_roll([Note(2 * F, 5 * F, 60, 100), Note(4 * F, 6 * F, 24, 90)], 8)
    assert roll.shape == (84, 8)
    assert list(roll[36]) == [0, 0, ONSET, SUSTAIN, SUSTAIN, 0, 0, 0]
    assert list(roll[0]) == [0, 0, 0, 0, ONSET, SUSTAIN, 0, 0]
    assert roll.sum() == 2 + 1 + 1 + 2 + 1


def test_crop_start_inside_a_note_is_sustain_and_out_of_range_pitches_are_skipped():
    roll = note_roll([Note(1 * F, 9 * F, 60, 100), Note(0, 3 * F, 110, 80)], 4, start_frame=3)
    assert list(roll[36]) == [SUSTAIN] * 4
    assert roll.sum() == 4


def test_targets_are_max_over_sources_and_membership_is_per_source():
    a = note_roll([Note(0, 4 * F, 60, 100)], 6)
    b = note_roll([Note(2 * F, 6 * F, 60, 100), Note(F, 3 * F, 64, 100)], 6)
    t = targets_from_rolls(np.stack([a, b]))
    assert list(t.frame[36]) == [1, 1, 1, 1, 1, 1]
    assert list(t.onset[36]) == [1, 0, 1, 0, 0, 0]  # both sources' onsets; max(2, 1) = 2 at frame 2
    assert list(t.onset[40]) == [0, 1, 0, 0, 0, 0]
    assert t.membership.shape == (2, 84, 6)
    assert list(t.membership[0, 36]) == [1, 1, 1, 1, 0, 0] and list(t.membership[1, 36]) == [0, 0, 1, 1, 1, 1]


def fake_clips(n=6, frames=64):
    rng = np.random.default_rng(0)
    families = ["piano", "strings", "reed", "brass", "pipe", "organ"]
    clips = []
    for i in range(n):
        pcm = (rng.normal(size=frames * HOP) * 3000).astype(np.int16)
        stem = Stem(pcm, "timgm6mb", "tim", 0, i * 8, "x", i * 8, families[i % len(families)], 1.0)
        notes = [Note(4 * F, 20 * F, 48 + i, 100, 0), Note(30 * F, 50 * F, 60 + i, 100, 0)]
        clips.append(Clip(f"c{i}", i, "train", SAMPLE_RATE, frames * HOP, [stem], notes))
    return clips


def test_remix_is_deterministic_mixes_different_families_and_never_clips():
    remixer = Remixer(fake_clips(), RemixConfig(crop_frames=32), seed=3)
    a, b = remixer.example(0, 7), remixer.example(0, 7)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.stems == b.stems
    assert remixer.example(1, 7).stems != a.stems or not np.array_equal(remixer.example(1, 7).audio, a.audio)
    ks = []
    for i in range(200):
        ex = remixer.example(0, i)
        ks.append(len(ex.stems))
        assert len({s.gm_family for s in ex.stems}) == len(ex.stems)
        assert ex.audio.shape == (32 * HOP,) and np.abs(ex.audio).max() <= 1.0
        assert ex.targets.membership.shape == (len(ex.stems), 84, 32)
        assert np.all((0.8 <= ex.gains) & (ex.gains <= 1.2))
    counts = np.bincount(ks, minlength=5)[1:]
    assert counts.argmax() == 1 and counts.min() > 10  # K=2 most frequent, as k_weights say


def test_same_family_mixtures_have_distinct_programs_at_the_asked_rate():
    """same_family_prob: hard negatives (e.g. clarinet + sax + bassoon) at that rate, never one program
    twice; the rule-abiding draws stay as they were (same seed, prob 0: identical examples)."""
    import dataclasses

    rng = np.random.default_rng(1)
    clips = []
    for i, (family, program) in enumerate([("reed", 64), ("reed", 66), ("reed", 70), ("reed", 71),
                                           ("strings", 40), ("strings", 42), ("piano", 0), ("brass", 56)]):  # fmt: skip
        pcm = (rng.normal(size=64 * HOP) * 3000).astype(np.int16)
        stem = Stem(pcm, "timgm6mb", "tim", 0, program, "x", program, family, 1.0)
        clips.append(Clip(f"c{i}", i, "train", SAMPLE_RATE, 64 * HOP, [stem], [Note(4 * F, 20 * F, 60, 100, 0)]))
    cfg = RemixConfig(crop_frames=32, k_weights=(0, 0, 1.0))  # K = 3
    mixed = Remixer(clips, dataclasses.replace(cfg, same_family_prob=0.5), seed=0)
    shared = 0
    for i in range(400):
        stems = mixed.example(0, i).stems
        programs, families = [s.gm_program for s in stems], [s.gm_family for s in stems]
        assert len(stems) == 3 and len(set(programs)) == 3
        shared += len(set(families)) < 3
        if len(set(families)) == 2:  # only 2 string programs: topped up from another family
            assert families.count("strings") == 2
        if len(set(families)) == 1:
            assert families[0] == "reed"  # the only family with 3 programs
    assert 0.4 < shared / 400 < 0.6
    plain = [Remixer(clips, c, seed=0).example(0, 5).stems for c in (cfg, dataclasses.replace(cfg, same_family_prob=0.0))]
    assert plain[0] == plain[1] and len({s.gm_family for s in plain[0]}) == 3


def test_register_matched_mixtures_share_a_register_at_the_asked_rate():
    """register_match_prob: stems of different families whose median pitches lie within
    register_semitones of each other's first, at that rate; prob 0 draws exactly as before."""
    import dataclasses

    rng = np.random.default_rng(2)
    clips = []
    families = ["reed", "strings", "piano", "brass", "pipe", "guitar"]
    for i in range(24):  # each family in a low, a middle and a high register (36, 60, 84) and between
        pitch = 36 + 12 * (i % 5)
        pcm = (rng.normal(size=64 * HOP) * 3000).astype(np.int16)
        stem = Stem(pcm, "timgm6mb", "tim", 0, i, "x", i, families[i % len(families)], 1.0)
        notes = [Note(4 * F, 20 * F, pitch - 2, 100, 0), Note(24 * F, 40 * F, pitch + 2, 100, 0)]
        clips.append(Clip(f"c{i}", i, "train", SAMPLE_RATE, 64 * HOP, [stem], notes))
    cfg = RemixConfig(crop_frames=32, k_weights=(0, 1.0))  # K = 2
    remixer = Remixer(clips, dataclasses.replace(cfg, register_match_prob=0.5, register_semitones=6), seed=0)
    assert [r.pitch for r in remixer.stems[:3]] == [36.0, 48.0, 60.0]
    matched = 0
    for i in range(400):
        stems = remixer.example(0, i).stems
        assert len(stems) == 2 and stems[0].gm_family != stems[1].gm_family
        matched += abs(stems[0].pitch - stems[1].pitch) <= 6
    plain = Remixer(clips, cfg, seed=0)
    by_chance = np.mean([abs(a.pitch - b.pitch) <= 6 for a, b in (plain.example(0, i).stems for i in range(400))])
    assert 0.5 + 0.4 * by_chance < matched / 400 < 0.6 + 0.5 * by_chance  # half always, the rest by chance
    zero = Remixer(clips, dataclasses.replace(cfg, register_match_prob=0.0), seed=0)
    assert [zero.example(0, i).stems for i in range(20)] == [plain.example(0, i).stems for i in range(20)]


def test_remixed_targets_follow_the_crop():
    clips = fake_clips(1)
    remixer = Remixer(clips, RemixConfig(crop_frames=64, k_weights=(1.0,), noise_std=0.0), seed=0)
    ex = remixer.example(0, 0)
    assert ex.targets.onset[48 - 24, 4] == 1 and ex.targets.frame[48 - 24, 4:20].all()
    expected = (ex.gains[0] * clips[0].stems[0].audio()) / ex.gains[0]
    np.testing.assert_allclose(ex.audio, expected, rtol=1e-5)
    with pytest.raises(ValueError):
        Remixer([])


def test_remix_batch_keeps_its_split_pads_to_fixed_shapes_and_is_seeded():
    import dataclasses

    from mixscribe.schema import clips_to_table
    from mixscribe.train.data import remix_batch

    clips = fake_clips(6)
    clips[5] = dataclasses.replace(clips[5], split="valid", id="v")
    table = clips_to_table(clips)
    cfg = RemixConfig(crop_frames=80)  # longer than the 64-frame clips: padded
    cols = remix_batch(table, "train", cfg, mixes_per_clip=3, seed=1)
    assert cols["audio"].shape == (15, 80 * HOP) and cols["membership"].shape == (15, 4, 84, 80)
    assert cols["frame"].dtype == np.uint8 and set(np.unique(cols["k"])) <= {1, 2, 3, 4}
    assert not cols["frame"][:, :, 64:].any() and not cols["audio"][:, 64 * HOP :].any()
    for i, k in enumerate(cols["k"]):
        assert cols["membership"][i, :k].any(axis=(1, 2)).all() and not cols["membership"][i, k:].any()
    np.testing.assert_array_equal(cols["audio"], remix_batch(table, "train", cfg, 3, seed=1)["audio"])
    assert not np.array_equal(cols["audio"], remix_batch(table, "train", cfg, 3)["audio"])  # fresh entropy
    assert remix_batch(table, "unseen-family", cfg, 3)["audio"].shape == (0, 80 * HOP)


def test_remix_tasks_cover_every_file_once_per_copy_in_new_groups_deterministically():
    from mixscribe.train.data import remix_tasks

    paths = [f"/s/part-{i}.parquet" for i in range(10)]
    items = remix_tasks(paths, train_clips=40, pool_clips=8, copies=3, seed=5)  # 4 clips per file: pairs
    assert items == remix_tasks(paths, 40, 8, 3, seed=5) and items != remix_tasks(paths, 40, 8, 3, seed=6)
    assert len(items) == 15 and all(len(it["paths"].split("\n")) == 2 for it in items)
    groups = [frozenset(it["paths"].split("\n")) for it in items]
    for c in range(3):
        assert sorted(p for g in groups[5 * c : 5 * c + 5] for p in g) == sorted(paths)
    assert set(groups[:5]) != set(groups[5:10])  # regrouped: stems meet new partners
    assert len({it["seed"] for it in items}) == 15
    assert remix_tasks(paths, 40, 8, 2, seed=5, first_copy=1) == items[5:]  # a resumed stream goes on


def test_a_resumed_run_streams_the_copies_its_first_epochs_did_not_reach():
    """Ten epochs at 24 examples each over 32 examples per copy of the split: a run resumed after epoch
    k starts at the copy its k epochs were in and holds enough copies for the rest, inside the stream an
    uninterrupted run would have had."""
    from mixscribe.train.trainer import TrainConfig, copies_consumed, passes_needed

    cfg = TrainConfig(epochs=10, steps_per_epoch=3, batch_size=4, workers=2, mixes_per_clip=4)
    whole = passes_needed(cfg, train_clips=8)
    assert whole == 9 and copies_consumed(cfg, 8, 0) == 0
    for start in range(11):
        first, copies = copies_consumed(cfg, 8, start), passes_needed(cfg, 8, start)
        assert first * 32 <= start * 24 < (first + 1) * 32  # at most part of one copy is seen twice
        assert (first + copies) * 32 >= 10 * 24 and first + copies <= whole + 1
    assert copies_consumed(cfg, 8, 4) == 3 and passes_needed(cfg, 8, 4) == 6


def test_remix_files_reads_shards_and_remixes_with_the_item_seed(tmp_path):
    import pyarrow.parquet as pq

    from mixscribe.schema import clips_to_table
    from mixscribe.train.data import AUG_KEYS, remix_files

    clips = fake_clips(6)
    for i in range(2):
        pq.write_table(clips_to_table(clips[3 * i : 3 * i + 3]), tmp_path / f"p{i}.parquet")
    batch = {"paths": np.array([f"{tmp_path}/p0.parquet\n{tmp_path}/p1.parquet"]), "seed": np.array([11])}
    cols = remix_files(batch, "train", RemixConfig(crop_frames=32), mixes_per_clip=2)
    assert cols["audio"].shape == (12, 32 * HOP) and cols["aug"].shape == (12, len(AUG_KEYS)) == (12, 5)
    np.testing.assert_array_equal(cols["audio"], remix_files(batch, "train", RemixConfig(crop_frames=32), 2)["audio"])


def test_crop_notes_are_the_notes_inside_the_crop_in_its_time():
    from mixscribe.train.data import crop_notes

    notes = [Note(1 * F, 9 * F, 60, 100), Note(4 * F, 5 * F, 62, 90), Note(10 * F, 12 * F, 64, 80), Note(0, F, 65, 70)]
    got = crop_notes(notes, start_frame=3, n_frames=6, stem=2)  # the crop is frames 3..8
    want = [Note(0.0, 6 * F, 60, 100, 2), Note(F, 2 * F, 62, 90, 2)]  # cut at both edges, shifted
    assert [(n.pitch, n.velocity, n.stem) for n in got] == [(n.pitch, n.velocity, n.stem) for n in want]
    np.testing.assert_allclose([(n.onset, n.offset) for n in got], [(n.onset, n.offset) for n in want], atol=1e-12)


def test_a_remixed_example_carries_the_notes_its_targets_were_made_from():
    clips = fake_clips()
    for i in range(12):
        e = Remixer(clips, RemixConfig(crop_frames=32), seed=1).example(0, i)
        assert e.notes and {n.stem for n in e.notes} <= set(range(len(e.stems)))
        for n in e.notes:
            first = int(round(n.onset / F))
            assert e.targets.membership[n.stem, n.pitch - 24, first] == 1  # the source sounds there
        frames = {(n.pitch - 24, f) for n in e.notes for f in range(int(round(n.onset / F)), int(round(n.offset / F)))}
        assert frames == set(zip(*np.nonzero(e.targets.frame)))  # and nothing else sounds

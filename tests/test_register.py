"""Register as a shortcut: clips whose stems share one pitch window (the same-register split and
generator.shared_register_prob), and the evaluation's per-pair and register figures."""

import dataclasses

import pytest

from mixscribe.config import load_synth_config
from mixscribe.evaluate.runner import EvalConfig, EvalResult
from mixscribe.synth.catalog import select
from mixscribe.synth.clips import ClipMaker
from mixscribe.synth.instruments import program_range
from mixscribe.synth.render import FluidSynthRenderer


def maker(fractions, **generator):
    cfg = load_synth_config("tiny")
    cfg = dataclasses.replace(cfg, stems_min=2, stems_max=3, splits=dataclasses.replace(cfg.splits, fractions=fractions),
                              generator=dataclasses.replace(cfg.generator, **generator))  # fmt: skip
    entries = select(cfg.soundfonts)
    return ClipMaker(cfg, entries, FluidSynthRenderer(cfg.render, entries)), cfg


def span(clip) -> int:
    pitches = [n.pitch for n in clip.notes]
    return max(pitches) - min(pitches)


def test_same_register_clips_play_in_one_window_with_crossing_parts():
    make, cfg = maker({"same-register": 1.0})
    window = cfg.generator.register_window
    clips = [make.make(i) for i in range(6)]
    assert all(c.split == "same-register" and len(c.stems) >= 2 for c in clips)
    crossing = 0
    for clip in clips:
        assert span(clip) <= window, clip.id
        ranges = []
        for i, stem in enumerate(clip.stems):
            pitches = [n.pitch for n in clip.notes if n.stem == i]
            low, high = program_range(stem.gm_program)
            assert low <= min(pitches) and max(pitches) <= high
            assert stem.gm_family not in {s.gm_family for s in clip.stems[:i]}  # still one family per stem
            ranges.append((min(pitches), max(pitches)))
        crossing += all(a[0] < b[1] and b[0] < a[1] for a in ranges for b in ranges)
    assert crossing >= 4  # every part's pitches reach into every other's


def test_shared_register_prob_windows_some_clips_and_leaves_the_others_as_they_were():
    plain, _ = maker({"train": 1.0})
    shared, cfg = maker({"train": 1.0}, shared_register_prob=0.5)
    kept = windowed = 0
    for i in range(8):
        plain.renderer.restart()  # as every shard starts: bytes independent of what was rendered before
        shared.renderer.restart()
        before, after = plain.make(i), shared.make(i)
        if after.notes == before.notes:
            kept += 1
            assert [s.pcm.tobytes() for s in after.stems] == [s.pcm.tobytes() for s in before.stems]
        else:
            windowed += 1
            assert span(after) <= cfg.generator.register_window
    assert kept >= 1 and windowed >= 1


def outside_program_range(clip) -> int:
    """Notes a stem plays beyond its GM program's range."""
    count = 0
    for i, stem in enumerate(clip.stems):
        low, high = program_range(stem.gm_program)
        count += sum(not low <= n.pitch <= high for n in clip.notes if n.stem == i)
    return count


def test_whole_range_training_clips_ignore_program_ranges_and_validation_keeps_them():
    """whole_range_prob: a share of training clips plays every stem anywhere (the paper's generator);
    the other training clips are byte for byte those of the default data, and validation never changes."""
    plain, _ = maker({"train": 1.0})
    whole, _ = maker({"train": 1.0}, whole_range_prob=0.5)
    kept = freed = 0
    for i in range(10):
        plain.renderer.restart()
        whole.renderer.restart()
        before, after = plain.make(i), whole.make(i)
        assert outside_program_range(before) == 0
        if after.notes == before.notes:
            kept += 1
            assert [s.pcm.tobytes() for s in after.stems] == [s.pcm.tobytes() for s in before.stems]
        else:
            freed += outside_program_range(after) > 0
    assert kept >= 1 and freed >= 1
    always, _ = maker({"train": 1.0}, whole_range_prob=1.0)
    assert sum(outside_program_range(always.make(i)) > 0 for i in range(6)) >= 4
    valid, _ = maker({"valid": 1.0}, whole_range_prob=1.0)
    assert all(outside_program_range(valid.make(i)) == 0 for i in range(4))


def test_register_window_is_validated():
    from mixscribe.errors import ConfigError

    cfg = load_synth_config("tiny")
    with pytest.raises(ConfigError, match="generator.shared_register_prob"):
        dataclasses.replace(cfg.generator, shared_register_prob=1.5).validate()
    with pytest.raises(ConfigError, match="generator.register_window"):
        dataclasses.replace(cfg.generator, register_window=3).validate()
    with pytest.raises(ConfigError, match="generator.whole_range_prob"):
        dataclasses.replace(cfg.generator, whole_range_prob=-0.1)


def test_pair_summary_and_table():
    def row(clip, k, parts, sep, purity, est, ref):
        return {"set": "valid", "clip": clip, "k": k, "parts": parts, "sep_note_f1": sep, "cluster_purity": purity,
                "register_est": est, "register_ref": ref}  # fmt: skip

    rows = [row("a", 2, "reed+strings", 0.5, 0.6, 1.0, 0.8), row("b", 2, "reed+strings", 0.7, 0.8, 0.9, 0.8),
            row("c", 2, "brass+pipe", 0.9, 1.0, 0.9, 0.9), row("d", 3, "bass+brass+pipe", 0.4, 0.5, 0.7, 0.6)]  # fmt: skip
    result = EvalResult(EvalConfig(sets=("valid",)), rows)
    s = result.pair_summary()
    assert s["eval/valid/pair/reed_and_strings/sep_note_f1"] == pytest.approx(0.6)
    assert s["eval/valid/pair/reed_and_strings/register_est"] == pytest.approx(0.95)
    assert s["eval/valid/pair/reed_and_strings/clips"] == 2 and s["eval/valid/pair/brass_and_pipe/clips"] == 1
    assert not any("bass" in k for k in s)  # 3-part clips are not pairs
    table = result.pair_markdown().splitlines()
    assert table[-2].startswith("| valid | reed+strings | 2 | 60.0 | 70.0 | 95.0 | 80.0 |")  # worst first
    assert table[-1].startswith("| valid | brass+pipe | 1 | 90.0 |")


def test_diagnose_register_preset_scores_with_the_shipped_models_stored_decoding():
    """The preset's figures in the model card are the shipped model's own decoding: if the model or its
    stored decoding changes, the preset (and the card's diagnosis) must be redone with it."""
    import torch

    from mixscribe.evaluate.runner import load_eval_config
    from mixscribe.model.checkpoint import DEFAULT_CHECKPOINT

    stored = torch.load(DEFAULT_CHECKPOINT, weights_only=True)["extra"]["decode"]
    cfg = load_eval_config("diagnose-register")
    assert {k: getattr(cfg.decode, k) for k in stored if k != "k_model"} == {k: v for k, v in stored.items() if k != "k_model"}
    synth = load_synth_config("diagnose-register")
    assert set(synth.splits.fractions) == set(cfg.sets) == {"valid", "same-register"}

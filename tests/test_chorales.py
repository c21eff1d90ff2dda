"""The chorale set builder: real music21 chorales, BACH10 parts, every 2/3/4-part combination, rendered
with real FluidSynth from the held-out SoundFont family, readable as a shard set and evaluable."""

from __future__ import annotations

import numpy as np
import pytest

from mixscribe.evaluate.chorales import PARTS, ChoraleConfig, build_chorale_set, chorale_names, chorale_parts
from mixscribe.schema import HOP, SAMPLE_RATE
from tests.conftest import run_cli

GOLDEN = "tests/data/golden.pt"


def test_parts_are_four_voices_ordered_from_soprano_to_bass():
    (name,) = chorale_names(1)
    parts = chorale_parts(name, 0.5)
    assert len(parts) == 4 and all(parts)
    means = [np.mean([n.pitch for n in p]) for p in parts]
    assert means == sorted(means, reverse=True)  # S > A > T > B
    for p in parts:  # monophonic voices, in time order, positive lengths
        assert all(a.offset <= b.onset + 1e-9 for a, b in zip(p, p[1:])) and all(n.offset > n.onset for n in p)
    slower = chorale_parts(name, 1.0)
    assert slower[0][-1].offset == pytest.approx(2 * parts[0][-1].offset)  # tempo scales time


@pytest.fixture(scope="module")
def chorale_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("chorales")
    manifest = build_chorale_set(ChoraleConfig(chorales=2, max_seconds=12.0), str(out), log=lambda *_: None)
    return str(out), manifest


def test_every_combination_with_reindexed_stems_and_ground_truth(chorale_set):
    from mixscribe.shards import ShardSet
    from mixscribe.schema import table_to_clips

    out, manifest = chorale_set
    assert manifest["rows_per_split"] == {"chorales": 22}  # (6 + 4 + 1) x 2 chorales
    ShardSet.open(out).verify(("chorales",))  # manifest, sha256 and schema all check out
    clips = table_to_clips(ShardSet.open(out).read_table())
    tags = sorted(c.id.split("-")[1] for c in clips[:11])
    assert tags == sorted(["SA", "ST", "SB", "AT", "AB", "TB", "SAT", "SAB", "STB", "ATB", "SATB"])
    full = next(c for c in clips if c.id.endswith("-SATB"))
    assert [s.gm_program for s in full.stems] == [p for _, p in PARTS]
    assert {s.sf_family for s in full.stems} == {"tim"}  # the held-out family only
    assert full.num_samples <= (12.0 * SAMPLE_RATE // HOP + 9) * HOP
    for c in clips:
        assert sorted({n.stem for n in c.notes}) == list(range(len(c.stems)))
        assert all(np.abs(s.audio()).max() > 0.01 for s in c.stems)
    tb = next(c for c in clips if c.id == full.id.replace("SATB", "TB"))
    assert np.array_equal(tb.stems[0].pcm, full.stems[2].pcm)  # the same rendered parts, recombined
    assert [n.pitch for n in tb.notes if n.stem == 1] == [n.pitch for n in full.notes if n.stem == 3]


def test_same_seed_same_bytes(chorale_set, tmp_path):
    out, manifest = chorale_set
    again = build_chorale_set(ChoraleConfig(chorales=2, max_seconds=12.0), str(tmp_path), log=lambda *_: None)
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in manifest["files"]]


def test_evaluate_chorales_with_thresholds_tuned_on_another_shard_set(chorale_set, ray_local, tmp_path):
    import dataclasses

    from mixscribe.config import load_synth_config
    from mixscribe.synth.pipeline import run_synth

    out, _ = chorale_set
    cfg = load_synth_config("tiny")
    cfg = dataclasses.replace(cfg, splits=dataclasses.replace(cfg.splits, fractions={"train": 0.5, "valid": 0.5}))
    training = tmp_path / "training"
    run_synth(cfg, str(training), 4)
    r = run_cli("evaluate", "--checkpoint", GOLDEN, "--data", out, "--sets", "chorales", "--tune-data", str(training),
                "--max-clips", "11", "--no-mlflow", "--out", str(tmp_path / "rep"))  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    for k in (2, 3, 4):
        assert f"| chorales | {k}mix |" in r.stdout
    r = run_cli("evaluate", "--checkpoint", GOLDEN, "--data", out, "--sets", "chorales", "--no-mlflow", "--out", str(tmp_path / "r2"))
    assert r.returncode == 2 and "no set 'valid'" in r.stderr.strip().splitlines()[-1]


def test_procedural_family_chorales_are_played_by_four_generated_sustained_instruments(tmp_path):
    """A rotation that holds out the procedural family gets chorales too: its unseen stream's
    instruments, re-renderable from what each stem stores."""
    from mixscribe.config import PROCEDURAL_FAMILY
    from mixscribe.schema import table_to_clips
    from mixscribe.shards import ShardSet
    from mixscribe.synth.procedural import UNSEEN_BANK, ProceduralInstrument, instrument_set

    cfg = ChoraleConfig(chorales=2, max_seconds=6.0, sf_family=PROCEDURAL_FAMILY, procedural_seed=5)
    manifest = build_chorale_set(cfg, str(tmp_path / "proc"), log=lambda *_: None)
    assert manifest["rows_per_split"] == {"chorales": 22} and manifest["soundfonts"] == {}
    clips = table_to_clips(ShardSet.open(str(tmp_path / "proc")).read_table())
    unseen = {ins.id for ins in instrument_set(5, cfg.procedural_pool, "unseen")}
    for full in (c for c in clips if c.id.endswith("-SATB")):
        assert {s.sf_family for s in full.stems} == {PROCEDURAL_FAMILY} and {s.bank for s in full.stems} == {UNSEEN_BANK}
        assert len({s.preset_name for s in full.stems}) == 4 and {s.preset_name for s in full.stems} <= unseen
        assert all(ProceduralInstrument.from_json(s.instrument_params).kind == "sustained" for s in full.stems)
        assert all(np.abs(s.audio()).max() > 0.01 for s in full.stems)
    assert set(manifest["procedural_instruments"]) == {s.preset_name for c in clips for s in c.stems}
    again = build_chorale_set(cfg, str(tmp_path / "again"), log=lambda *_: None)
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in manifest["files"]]

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixscribe.errors import ShardError
from mixscribe.schema import CLIP_SCHEMA, SCHEMA_VERSION, Clip, DroppedStem, Note, Stem, check_schema, clips_to_table, table_to_clips


def make_clip(i=0):
    rng = np.random.default_rng(i)
    stems = [
        Stem(rng.integers(-2000, 2000, 512).astype(np.int16), "timgm6mb", "tim", 0, p, f"P{p}", p, "piano", 1.5)
        for p in (0, 40)
    ]
    notes = [Note(0.0, 0.5, 60, 100, 0), Note(0.1, 0.3, 67, 80, 1)]
    return Clip(f"clip-{i:08d}", 123 + i, "train", 22050, 512, stems, notes, [DroppedStem("opl3_fm", 0, 5, "silent")])


def test_round_trip_through_parquet(tmp_path):
    clips = [make_clip(i) for i in range(3)]
    table = clips_to_table(clips)
    assert table.schema.equals(CLIP_SCHEMA, check_metadata=True)
    pq.write_table(table, tmp_path / "a.parquet")
    back = table_to_clips(pq.read_table(tmp_path / "a.parquet"))
    for a, b in zip(clips, back):
        assert (a.id, a.seed, a.split, a.notes, a.dropped_stems) == (b.id, b.seed, b.split, b.notes, b.dropped_stems)
        for s, t in zip(a.stems, b.stems):
            np.testing.assert_array_equal(s.pcm, t.pcm)
            assert s.preset_name == t.preset_name and s.gain == pytest.approx(t.gain)


def test_mix_is_a_weighted_mean_that_never_clips():
    c = make_clip()
    loud = [Stem(np.full(512, 32767, np.int16), *[getattr(s, f) for f in ("soundfont", "sf_family", "bank", "preset",
            "preset_name", "gm_program", "gm_family", "gain")]) for s in c.stems]  # fmt: skip
    c2 = Clip(c.id, c.seed, c.split, c.sample_rate, c.num_samples, loud, c.notes)
    assert np.abs(c2.mix(np.array([0.8, 1.2]))).max() <= 1.0
    np.testing.assert_allclose(c.mix(), (c.stems[0].audio() + c.stems[1].audio()) / 2, rtol=1e-6)


def test_schema_version_is_checked():
    check_schema(CLIP_SCHEMA, "x")
    with pytest.raises(ShardError, match="f.parquet: schema version 99"):
        check_schema(CLIP_SCHEMA.with_metadata({b"mixscribe.schema_version": b"99"}), "f.parquet")
    with pytest.raises(ShardError, match="not a mixscribe shard"):
        check_schema(pa.schema([("id", pa.string())]), "g.parquet")
    assert SCHEMA_VERSION == 3  # 3 added stems' timbre; 2 (instrument_params) still reads, 1 is refused
    with pytest.raises(ShardError, match="old.parquet: schema version 1, this mixscribe reads 2 or 3"):
        check_schema(CLIP_SCHEMA.with_metadata({b"mixscribe.schema_version": b"1"}), "old.parquet")


def test_version_2_shards_read_as_stems_without_timbre(tmp_path):
    """A shard written before stems had a timbre field: same rows, that field absent from the struct."""
    table = clips_to_table([make_clip(0)])
    stems = table.column("stems").to_pylist()
    old_stem = pa.struct([f for f in CLIP_SCHEMA.field("stems").type.value_type if f.name != "timbre"])
    for row in stems:
        for s in row:
            del s["timbre"]
    v2 = pa.schema([pa.field("stems", pa.list_(old_stem)) if f.name == "stems" else f for f in CLIP_SCHEMA],
                   metadata={b"mixscribe.schema_version": b"2"})  # fmt: skip
    old = pa.Table.from_pydict({**table.to_pydict(), "stems": stems}, schema=v2)
    pq.write_table(old, tmp_path / "v2.parquet")
    back = pq.read_table(tmp_path / "v2.parquet")
    check_schema(back.schema, "v2.parquet")
    clip = table_to_clips(back)[0]
    assert [s.timbre for s in clip.stems] == ["", ""]
    np.testing.assert_array_equal(clip.stems[1].pcm, make_clip(0).stems[1].pcm)

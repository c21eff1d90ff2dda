"""The one reader and writer of shard sets: a typed manifest from what every writer records, and every
way a set can be unfit named in one line before work starts. The shards are real Parquet files written
by the renderer's own shard writer; the clips are short tones (no SoundFont needed)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from mixscribe.errors import MixscribeError, ShardError
from mixscribe.schema import SAMPLE_RATE, SCHEMA_VERSION, Clip, Note, Stem, clips_to_table
from mixscribe.shards import MANIFEST, Manifest, ShardFile, ShardSet, previous_manifest, write_manifest
from mixscribe.synth.pipeline import write_shard


def tone_clip(i: int, split: str) -> Clip:
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)
    stem = Stem(pcm, "test-sf", "test", 0, 0, "tone", 0, "piano", 1.0)
    return Clip(f"clip-{i:04d}", i, split, SAMPLE_RATE, len(pcm), [stem], [Note(0.0, 0.4, 57, 80, 0)])


def write_set(root, splits_per_shard: list[list[str]], kind: str = "chorales") -> dict:
    """A set written as the chorale and dataset builders write theirs (write_shard's records, ids kept)."""
    from mixscribe.fsio import resolve

    fs, path = resolve(str(root))
    fs.create_dir(f"{path}/clips", recursive=True)
    files, n = [], 0
    for shard, splits in enumerate(splits_per_shard):
        clips = [tone_clip(n + j, s) for j, s in enumerate(splits)]
        n += len(clips)
        info = write_shard(fs, path, shard, clips_to_table(clips))
        files.append(info)
    rows: dict[str, int] = {}
    for splits in splits_per_shard:
        for s in splits:
            rows[s] = rows.get(s, 0) + 1
    record = {"schema_version": SCHEMA_VERSION, "kind": kind, "config": {"seed": 1}, "package_version": "0.1.0",
              "num_clips": n, "rows_per_split": rows, "files": files}  # fmt: skip
    write_manifest(fs, path, record)
    return record


def test_a_written_set_opens_typed_and_reads_whole(tmp_path):
    record = write_set(tmp_path, [["train", "train"], ["valid"]])
    opened = ShardSet.open(str(tmp_path))
    m = opened.manifest
    assert (m.schema_version, m.kind, m.num_clips, m.rows_per_split) == (SCHEMA_VERSION, "chorales", 3,
                                                                         {"train": 2, "valid": 1})  # fmt: skip
    assert m.files[0] == ShardFile("clips/part-00000000.parquet", 2, record["files"][0]["sha256"], "clip-0000",
                                   "clip-0001", ("train",))  # fmt: skip
    assert m.files[1].may_hold("valid") and not m.files[1].may_hold("train")
    assert m.record == json.loads((tmp_path / MANIFEST).read_text())  # every writer's own keys kept
    table = opened.read_table(columns=["id", "split"])
    assert table.column("id").to_pylist() == ["clip-0000", "clip-0001", "clip-0002"]
    # verify reads only the files that hold a split, and checks each one's hash
    assert opened.verify(("valid",)) == {"valid": [f"{opened.root}/clips/part-00000001.parquet"]}
    assert len(m.content_hash()) == 16 and m.content_hash() == ShardSet.open(str(tmp_path)).manifest.content_hash()


def test_rows_of_some_splits_or_ids_are_filtered_file_by_file(tmp_path):
    """A training worker reads its validation clips, not the whole set: rows of other splits are
    dropped as each file is read, and a file the manifest says holds none of them is not opened."""
    write_set(tmp_path, [["train", "valid", "test"], ["train", "train"], ["valid", "test"]])
    opened = ShardSet.open(str(tmp_path))
    valid = opened.read_table(splits=("valid",))
    assert valid.column("id").to_pylist() == ["clip-0001", "clip-0005"]
    assert valid.schema == opened.read_table().schema  # whole rows, as the unfiltered read gives them
    assert opened.read_table(columns=["id"], splits=("test", "valid")).to_pydict() == {
        "id": ["clip-0001", "clip-0002", "clip-0005", "clip-0006"]}  # the filter's column is read, not returned
    assert opened.read_table(columns=["split"], ids=("clip-0004", "clip-0006")).column("split").to_pylist() == [
        "train", "test"]
    assert opened.read_table(splits=("valid",), ids=("clip-0002",)).num_rows == 0
    (tmp_path / "clips" / "part-00000001.parquet").unlink()  # holds only train rows
    assert opened.read_table(columns=["id"], splits=("valid",)).num_rows == 2
    with pytest.raises(ShardError, match="part-00000001.parquet: listed in the manifest but missing"):
        opened.read_table(splits=("train",))


def test_finding_clips_by_id_reads_audio_only_from_the_shards_holding_them(tmp_path, monkeypatch):
    """`inspect --clip` on a set of gigabytes: each shard's id column is read, its audio only where the id is."""
    write_set(tmp_path, [["train", "valid", "test"], ["train", "train"], ["valid", "test"]])
    opened = ShardSet.open(str(tmp_path))
    whole_rows = opened.read_table().schema
    reads: list[tuple | None] = []
    real_read = pq.ParquetFile.read

    def spy(self, columns=None, **kwargs):
        reads.append(tuple(columns) if columns else None)
        return real_read(self, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read", spy)
    clip = opened.read_table(ids=("clip-0004",))
    assert clip.column("id").to_pylist() == ["clip-0004"] and clip.schema == whole_rows
    assert reads == [("id",), ("id",), None, ("id",)]  # whole rows of the second file only
    reads.clear()
    assert opened.read_table(columns=["id"], ids=("clip-0009",)).num_rows == 0
    assert reads == [("id",)] * 3


def test_a_renderers_record_without_ids_or_splits_is_read_too():
    """The synthetic renderer lists rows and first/last ids, and no splits: each file may hold any."""
    f = ShardFile.from_record({"path": "clips/part-00000000.parquet", "rows": 16, "first_id": "a", "last_id": "b",
                               "sha256": "00"})  # fmt: skip
    assert (f.rows, f.first_id, f.splits, f.may_hold("valid")) == (16, "a", (), True)


def test_every_unfit_set_is_named_before_work(tmp_path):
    with pytest.raises(ShardError, match=f"{tmp_path}/{MANIFEST}: no manifest"):
        ShardSet.open(str(tmp_path))
    record = write_set(tmp_path, [["train"], ["valid"]])
    manifest = tmp_path / MANIFEST
    for broken, message in (("{", "corrupt manifest"),
                            (json.dumps({**record, "schema_version": 99}), "schema version 99, this mixscribe reads"),
                            (json.dumps({k: v for k, v in record.items() if k != "files"}), "corrupt manifest \\(KeyError"),
                            (json.dumps({**record, "num_clips": "many"}), "corrupt manifest \\(ValueError")):  # fmt: skip
        manifest.write_text(broken)
        with pytest.raises(ShardError, match=message):
            ShardSet.open(str(tmp_path))
    manifest.write_text(json.dumps(record))
    opened = ShardSet.open(str(tmp_path))
    with pytest.raises(ShardError, match="no clips in split 'test'"):
        opened.verify(("train", "test"))
    shard = tmp_path / record["files"][1]["path"]
    data = shard.read_bytes()
    mid = len(data) // 2
    shard.write_bytes(data[:mid] + bytes([data[mid] ^ 1]) + data[mid + 1 :])  # one bit: still opens, the hash tells
    with pytest.raises(ShardError, match=f"{shard}: corrupt shard \\(sha256 differs"):
        opened.verify(("valid",))
    assert opened.verify(("train",))["train"]  # a file that holds no asked split is not read
    shard.unlink()
    with pytest.raises(ShardError, match=f"{shard}: listed in the manifest but missing"):
        opened.read_table()


def test_a_manifest_its_readers_would_refuse_is_never_written(tmp_path):
    from mixscribe.fsio import resolve

    fs, root = resolve(str(tmp_path))
    with pytest.raises(ShardError, match="schema version 0"):
        write_manifest(fs, root, {"schema_version": 0, "num_clips": 0, "files": []})
    assert not (tmp_path / MANIFEST).exists()
    (tmp_path / MANIFEST).write_text('{"not": "ours"}')
    with pytest.raises(MixscribeError, match="not a mixscribe manifest"):
        previous_manifest(fs, root)
    assert isinstance(Manifest.from_record({"schema_version": SCHEMA_VERSION, "num_clips": 0, "files": []}, "m"), Manifest)


def test_inspect_summarises_a_set_no_renderer_wrote(tmp_path):
    """A real-recording or chorale set records no FluidSynth version: inspect says what kind it is."""
    from mixscribe.synth.inspect import summary

    write_set(tmp_path, [["bach10", "bach10"]], kind="dataset")
    text = summary(str(tmp_path))
    assert f"schema         v{SCHEMA_VERSION}, mixscribe 0.1.0, dataset set" in text and "clips          2" in text

"""The synth stage on a real local Ray cluster (2 CPUs) with real small SoundFonts."""

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mixscribe.config import SplitConfig, load_synth_config
from mixscribe.errors import MixscribeError
from mixscribe.schema import SCHEMA_VERSION, table_to_clips
from mixscribe.shards import ShardSet
from mixscribe.synth.pipeline import run_synth


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def even_cfg():
    cfg = load_synth_config("tiny")
    fractions = {"train": 0.25, "valid": 0.25, "unseen-soundfont": 0.25, "unseen-family": 0.25}
    return dataclasses.replace(cfg, workers=2, splits=dataclasses.replace(cfg.splits, fractions=fractions))


@pytest.fixture(scope="module")
def shards(ray_local, even_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    result = run_synth(even_cfg, str(out), 14)
    return out, result.manifest


def test_manifest_describes_what_was_written(shards):
    out, m = shards
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["num_clips"] == 14 and sum(on_disk["rows_per_split"].values()) == 14
    assert on_disk["schema_version"] == SCHEMA_VERSION and on_disk["fluidsynth_version"].startswith("2.")
    assert set(on_disk["soundfonts"]) == {"timgm6mb", "csound_gmbank", "opl3_fm"}
    assert on_disk["config"]["generator"]["clip_frames"] == 256
    for f in on_disk["files"]:
        assert sha(out / f["path"]) == f["sha256"]
    assert sorted(p.name for p in (out / "clips").iterdir()) == [f"part-{i:08d}.parquet" for i in (0, 4, 8, 12)]
    assert not list(out.glob(".tmp-*")) and not list((out / "clips").glob(".tmp-*"))
    ids = ShardSet.open(str(out)).read_table(columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == [f"clip-{i:08d}" for i in range(14)]  # every clip exactly once


def test_clips_are_sound_and_splits_never_leak(shards, even_cfg):
    out, m = shards
    clips = table_to_clips(ShardSet.open(str(out)).read_table())
    held_sf, held_gm = even_cfg.splits.holdout_sf_family, set(even_cfg.splits.holdout_gm_families)
    seen_splits = set()
    for c in clips:
        seen_splits.add(c.split)
        assert 1 <= len(c.stems) <= 3 and c.num_samples == 256 * 256
        assert {n.stem for n in c.notes} == set(range(len(c.stems)))
        assert len({s.gm_family for s in c.stems}) == len(c.stems)  # distinct GM families per clip
        for s in c.stems:
            assert len(s.pcm) == c.num_samples and s.pcm.std() > 50  # not silent
            unseen_sf, unseen_gm = s.sf_family == held_sf, s.gm_family in held_gm
            if c.split in ("train", "valid"):
                assert not unseen_sf and not unseen_gm
            elif c.split == "unseen-soundfont":
                assert unseen_sf and not unseen_gm
            else:
                assert unseen_gm and not unseen_sf
    assert len(seen_splits) >= 3


def test_rerun_gives_identical_bytes_also_through_a_uri(shards, even_cfg, tmp_path):
    out, m = shards
    again = run_synth(even_cfg, f"file://{tmp_path}", 14)
    assert [f["sha256"] for f in again.manifest["files"]] == [f["sha256"] for f in m["files"]]
    for f in m["files"]:
        assert sha(tmp_path / f["path"]) == f["sha256"]


def test_other_config_into_same_folder_needs_overwrite(shards, even_cfg, tmp_path):
    run_synth(even_cfg, str(tmp_path), 4)
    other = dataclasses.replace(even_cfg, seed=99)
    with pytest.raises(MixscribeError, match="already holds shards of another config"):
        run_synth(other, str(tmp_path), 4)
    assert (tmp_path / "manifest.json").exists()  # the refused run destroyed nothing
    run_synth(other, str(tmp_path), 4, overwrite=True)
    assert json.loads((tmp_path / "manifest.json").read_text())["config"]["seed"] == 99


def test_empty_split_pool_is_a_config_error(ray_local, even_cfg, tmp_path):
    cfg = dataclasses.replace(
        even_cfg, soundfonts=("timgm6mb",), splits=SplitConfig(fractions={"unseen-soundfont": 1.0}, holdout_sf_family="opl3")
    )
    with pytest.raises(MixscribeError, match="splits.fractions.unseen-soundfont: no SoundFont preset fits"):
        run_synth(cfg, str(tmp_path), 2)
    assert not (tmp_path / "manifest.json").exists()


def test_cli_end_to_end_killed_run_leaves_no_manifest_and_rerun_recovers(tmp_path):
    """The real entry point on 2 CPUs with 2 render actors (no deadlock), killed mid-run, then re-run."""
    out = tmp_path / "shards"
    exe = str(Path(sys.executable).parent / "mixscribe")
    args = [exe, "synth", "--config", "tiny", "--out", str(out), "--clips", "6", "--workers", "2"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "wrote 6 clips" in first.stdout
    before = json.loads((out / "manifest.json").read_text())

    bigger = args[:-3] + ["40", "--workers", "2", "--overwrite"]
    proc = subprocess.Popen(bigger, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    launched = time.time()

    def writing() -> bool:  # the new run's own shards (the first run's are still there until it clears clips/)
        for p in out.glob("clips/*.parquet"):
            try:
                if p.stat().st_mtime > launched:
                    return True
            except FileNotFoundError:  # being cleared right now
                pass
        return False

    while time.time() < deadline and not writing():
        time.sleep(0.2)
    assert time.time() < deadline, "the run never started writing"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "manifest.json").exists()  # a run that dies leaves no manifest

    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    after = json.loads((out / "manifest.json").read_text())
    assert [f["sha256"] for f in after["files"]] == [f["sha256"] for f in before["files"]]
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["part-00000000.parquet", "part-00000004.parquet"]

    insp = subprocess.run([exe, "inspect", str(out), "--clip", "clip-00000001", "--out", str(tmp_path / "ins")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert insp.returncode == 0, insp.stderr[-2000:]
    assert "clips          6" in insp.stdout and "timbre varied  0 of " in insp.stdout
    _check_exported_clip(tmp_path / "ins" / "clip-00000001", out)


def _check_exported_clip(folder: Path, shards: Path):
    import pretty_midi
    import soundfile as sf

    clip = [c for c in table_to_clips(pq.read_table(shards / "clips" / "part-00000000.parquet")) if c.id == "clip-00000001"][0]
    mix, sr = sf.read(folder / "mix.wav")
    assert sr == 22050 and len(mix) == clip.num_samples and abs(mix).max() > 0.01
    stems = sorted(folder.glob("stem*.wav"))
    assert len(stems) == len(clip.stems)
    meta = json.loads((folder / "stems.json").read_text())
    assert [(m["soundfont"], m["preset"], m["gm_program"], m["timbre"]) for m in meta] == \
        [(s.soundfont, s.preset, s.gm_program, None) for s in clip.stems]
    midi = pretty_midi.PrettyMIDI(str(folder / "notes.mid"))
    assert [i.program for i in midi.instruments] == [s.gm_program for s in clip.stems]
    assert sum(len(i.notes) for i in midi.instruments) == len(clip.notes)
    png = (folder / "pianoroll.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_training_reads_one_split_and_refuses_bad_shards(shards, tmp_path):
    import shutil

    from mixscribe.errors import ShardError
    from mixscribe.train.data import Remixer, load_split

    out, m = shards
    train = load_split(str(out), "train")
    assert len(train) == m["rows_per_split"]["train"] and {c.split for c in train} == {"train"}
    assert Remixer(train).example(0, 0).audio.size > 0
    with pytest.raises(ShardError, match="no clips in split 'test'"):
        load_split(str(out), "test")
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ShardError, match=f"schema version {SCHEMA_VERSION + 1}, this mixscribe reads 2 or {SCHEMA_VERSION}"):
        load_split(str(bad), "train")
    (bad / "manifest.json").write_text(json.dumps(manifest))
    victim = bad / manifest["files"][0]["path"]
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(ShardError, match=f"{victim}: corrupt shard"):
        load_split(str(bad), "train")


def test_commit_checks_ids_and_files_and_removes_strays(tmp_path):
    """The driver's commit: one listing of clips/, every shard there, every id once, its own strays removed
    and nothing else."""
    import pyarrow.fs as pafs

    from mixscribe.errors import ShardError
    from mixscribe.synth.clips import clip_id
    from mixscribe.synth.pipeline import _commit, shard_name

    clips = tmp_path / "clips"
    clips.mkdir()
    ranges = [(0, 2), (2, 3)]
    summaries = [{"start": a, "ids": [clip_id(i) for i in range(a, b)]} for a, b in ranges]
    for a, _ in ranges:
        (clips / shard_name(a)).write_bytes(b"x")
    (clips / f".tmp-{'d' * 32}-part-00000002.parquet").write_bytes(b"half")  # a writer killed mid-write
    (clips / "notes.txt").write_text("the user's")
    fs = pafs.LocalFileSystem()
    _commit(fs, str(clips), ranges, summaries + summaries[:1])  # a retried shard reported twice
    assert sorted(p.name for p in clips.iterdir()) == ["notes.txt", shard_name(0), shard_name(2)]
    with pytest.raises(ShardError, match="expected 3"):
        _commit(fs, str(clips), ranges, summaries[:1])
    (clips / shard_name(2)).unlink()
    with pytest.raises(ShardError, match="part-00000002.parquet: reported written but missing"):
        _commit(fs, str(clips), ranges, summaries)


def _synth_cli(out: Path, *extra: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "mixscribe")
    args = [exe, "synth", "--config", "tiny", "--out", str(out), "--clips", "4", "--workers", "1", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_synth_refuses_a_clips_folder_holding_what_it_did_not_write(tmp_path):
    """A user's files in clips/ (hidden ones too) stop the run before any work unless --overwrite, and
    are kept even then; a re-run replaces only what its own manifest lists."""
    out = tmp_path / "u"
    (out / "clips").mkdir(parents=True)
    (out / "clips" / "video.mp4").write_text("precious")
    (out / "clips" / ".hidden").write_text("mine too")
    refused = _synth_cli(out)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"mixscribe: error: {out}/clips: holds files mixscribe did not write ('.hidden' and 1 more); choose "
        "another --out, or pass --overwrite to write beside them (they are kept)"]
    assert sorted(p.name for p in (out / "clips").iterdir()) == [".hidden", "video.mp4"]
    assert not (out / "manifest.json").exists()

    kept = _synth_cli(out, "--overwrite")
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert (out / "clips" / "video.mp4").read_text() == "precious" and (out / "clips" / ".hidden").exists()
    shards = sorted(p.name for p in (out / "clips").glob("part-*.parquet"))
    assert shards == ["part-00000000.parquet"]
    assert ShardSet.open(str(out)).read_table().num_rows == 4


def test_synth_never_clears_through_a_symlinked_clips_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "part-00000000.parquet").write_text("not a shard, but named like one")
    (elsewhere / "video.mp4").write_text("precious")
    out = tmp_path / "u"
    out.mkdir()
    (out / "clips").symlink_to(elsewhere, target_is_directory=True)
    refused = _synth_cli(out)
    assert refused.returncode == 2 and "clips: is a symlink" in refused.stderr
    replaced = _synth_cli(out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert not (out / "clips").is_symlink() and (out / "clips" / "part-00000000.parquet").stat().st_size > 1000
    assert sorted(p.name for p in elsewhere.iterdir()) == ["part-00000000.parquet", "video.mp4"]
    assert (elsewhere / "video.mp4").read_text() == "precious"


def test_synth_refuses_a_manifest_it_did_not_write(tmp_path):
    (tmp_path / "manifest.json").write_text('{"title": "my playlist"}')
    for extra in ((), ("--overwrite",)):
        refused = _synth_cli(tmp_path, *extra)
        assert refused.returncode == 2 and "manifest.json: not a mixscribe manifest" in refused.stderr
    assert (tmp_path / "manifest.json").read_text() == '{"title": "my playlist"}'

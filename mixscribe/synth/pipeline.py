"""`mixscribe synth`: seeds -> Ray Data map_batches(ShardRenderer actors) -> write_parquet -> manifest.

Exactly-once and restartable: every shard holds a fixed range of clip indices and is named after it;
files are written to a staging folder, checked (every clip id once), moved into `clips/`, and the
manifest is written last. A run that dies leaves no manifest; re-running the same command produces the
same shards, byte for byte.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import mixscribe
from mixscribe.config import SynthConfig, from_dict, to_dict
from mixscribe.errors import MixscribeError, ShardError
from mixscribe.fsio import atomic_write_json, ensure_writable_dir, exists, read_json, resolve
from mixscribe.schema import CLIP_SCHEMA, SCHEMA_VERSION, check_schema
from mixscribe.synth import catalog
from mixscribe.synth.clips import clip_id

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
CLIPS_DIR = "clips"


class ShardRenderer:
    """Ray Data callable class: one FluidSynth per actor, SoundFonts loaded once per actor."""

    def __init__(self, cfg: dict, soundfont_ids: list[str]):
        from mixscribe.synth.clips import ClipMaker
        from mixscribe.synth.render import FluidSynthRenderer

        self.cfg = from_dict(SynthConfig, cfg)
        entries = catalog.select(tuple(soundfont_ids))
        self.renderer = FluidSynthRenderer(self.cfg.render, entries)
        self.maker = ClipMaker(self.cfg, entries, self.renderer)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from mixscribe.schema import clips_to_table

        clips = []
        for start, stop in zip(batch["start"].to_pylist(), batch["stop"].to_pylist()):
            self.renderer.restart()  # a shard's bytes must not depend on what this actor rendered before
            clips.extend(self.maker.make(i) for i in range(start, stop))
        return clips_to_table(clips)


def _validate_instruments(cfg: dict, soundfont_ids: list[str]) -> dict[str, int]:
    """Runs in a Ray worker (never create a Synth in a process that may fork): pool size per split."""
    return {k: len(v) for k, v in ShardRenderer(cfg, soundfont_ids).maker.pools.items()}


@dataclass(frozen=True)
class SynthResult:
    out: str
    manifest: dict


def shard_ranges(num_clips: int, per_shard: int) -> list[tuple[int, int]]:
    return [(s, min(s + per_shard, num_clips)) for s in range(0, num_clips, per_shard)]


def shard_name(start: int) -> str:
    return f"part-{start:08d}.parquet"


def _file_sha256(fs: pafs.FileSystem, path: str) -> str:
    h = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _check_previous(fs: pafs.FileSystem, root: str, manifest: dict, overwrite: bool) -> None:
    """Re-running the same command overwrites identical shards; another config needs --overwrite."""
    path = f"{root}/{MANIFEST}"
    if not exists(fs, path) or overwrite:
        return
    old = read_json(fs, path)
    same = all(old.get(k) == manifest[k] for k in ("config", "num_clips"))
    if not same:
        raise MixscribeError(f"{root}: already holds shards of another config or size (pass --overwrite to replace)")


def _soundfont_ids(cfg: SynthConfig) -> list[str]:
    entries = catalog.select(cfg.soundfonts)
    if not entries:
        raise MixscribeError("no catalog SoundFont is installed (mixscribe soundfonts install)")
    for e in entries:
        catalog.verify_file(e)
    return [e.id for e in entries]


def run_synth(cfg: SynthConfig, out: str, num_clips: int, overwrite: bool = False) -> SynthResult:
    import ray

    from mixscribe.raycluster import cluster_cpus, init_ray, unwrap_ray_error
    from mixscribe.synth.render import fluidsynth_version

    if num_clips < 1:
        raise MixscribeError(f"--clips: must be >= 1, got {num_clips}")
    fs, root = resolve(out)
    ensure_writable_dir(fs, root)
    sf_ids = _soundfont_ids(cfg)
    cfg_dict = to_dict(cfg)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "config": cfg_dict,
        "num_clips": num_clips,
        "package_version": mixscribe.__version__,
        "fluidsynth_version": fluidsynth_version(),
        "ray_version": ray.__version__,
        "soundfonts": {e.id: {"sha256": e.sha256, "family": e.family, "package": e.package}
                       for e in map(catalog.get_entry, sf_ids)},  # fmt: skip
    }
    _check_previous(fs, root, manifest, overwrite)
    if exists(fs, f"{root}/{MANIFEST}"):
        fs.delete_file(f"{root}/{MANIFEST}")  # from here until the end, a dying run leaves no manifest

    init_ray()
    try:
        pools = ray.get(ray.remote(num_cpus=0.25)(_validate_instruments).remote(cfg_dict, sf_ids))
    except Exception as exc:  # Ray wraps the worker's exception
        raise unwrap_ray_error(exc) from None
    workers = cfg.workers or cluster_cpus()
    staging = f"{root}/.staging-{uuid.uuid4().hex[:12]}"
    ranges = shard_ranges(num_clips, cfg.clips_per_shard)
    t0 = time.perf_counter()
    try:
        _render_to(staging, fs, cfg_dict, sf_ids, ranges, workers, cfg.actor_cpus)
        files = _commit(fs, root, staging, ranges)
    except Exception as exc:
        if exists(fs, staging):
            fs.delete_dir(staging)
        raise unwrap_ray_error(exc) from None
    manifest.update(_summarise(fs, root, files))
    manifest["pool_sizes"] = pools
    manifest["render_seconds"] = round(time.perf_counter() - t0, 3)
    manifest["workers"] = workers
    atomic_write_json(fs, f"{root}/{MANIFEST}", manifest)
    return SynthResult(out=root, manifest=manifest)


def _render_to(staging: str, fs, cfg_dict: dict, sf_ids: list[str], ranges, workers: int, actor_cpus: float) -> None:
    import ray
    from ray.data import ActorPoolStrategy
    items = [{"start": a, "stop": b} for a, b in ranges]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(
        ShardRenderer,
        fn_constructor_kwargs={"cfg": cfg_dict, "soundfont_ids": sf_ids},
        batch_size=1,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=min(workers, len(items))),
        num_cpus=actor_cpus,
    )
    ds.write_parquet(
        staging,
        filesystem=fs,
        ray_remote_args={"num_cpus": 0.1},
        compression="zstd",
    )


def _commit(fs: pafs.FileSystem, root: str, staging: str, ranges) -> list[str]:
    """Check that every clip is present exactly once, then move one file per shard range under clips/,
    named by its range. A staging file holding several ranges (Ray may bundle) is split first."""
    by_start = {a: b for a, b in ranges}
    seen: list[str] = []
    moves: list[tuple[str, int]] = []
    for info in sorted(fs.get_file_info(pafs.FileSelector(staging)), key=lambda i: i.path):
        if not info.path.endswith(".parquet"):
            continue
        pf = pq.ParquetFile(info.path, filesystem=fs)
        check_schema(pf.schema_arrow, info.path)
        ids = pf.read(columns=["id"]).column("id").to_pylist()
        seen.extend(ids)
        first = int(ids[0].rsplit("-", 1)[1]) if ids else -1
        if first in by_start and ids == [clip_id(i) for i in range(first, by_start[first])]:
            moves.append((info.path, first))
            continue
        log.info("%s holds several shard ranges: splitting it", info.path)
        table = pf.read()
        index = {v: i for i, v in enumerate(ids)}
        for a, b in ranges:
            if clip_id(a) in index:
                part = table.take(pa.array([index[clip_id(i)] for i in range(a, b) if clip_id(i) in index]))
                tmp = f"{staging}/split-{a:08d}.parquet.part"
                pq.write_table(part, tmp, filesystem=fs, compression="zstd")
                moves.append((tmp, a))
    expected = {clip_id(i) for a, b in ranges for i in range(a, b)}
    if len(seen) != len(set(seen)) or set(seen) != expected:
        raise ShardError(f"{staging}: rendered {len(seen)} rows, {len(set(seen))} distinct, expected {len(expected)}")
    final_dir = f"{root}/{CLIPS_DIR}"
    if exists(fs, final_dir):
        fs.delete_dir_contents(final_dir)
    fs.create_dir(final_dir, recursive=True)
    files = []
    for path, start in sorted(moves, key=lambda m: m[1]):
        fs.move(path, f"{final_dir}/{shard_name(start)}")
        files.append(f"{final_dir}/{shard_name(start)}")
    fs.delete_dir(staging)
    return files


def _summarise(fs: pafs.FileSystem, root: str, files: list[str]) -> dict:
    cols = ["id", "split", "num_samples", "sample_rate", "notes", "dropped_stems"]
    rows_per_split: dict[str, int] = {}
    dropped: dict[str, int] = {}
    file_info = []
    seconds = 0.0
    n_stems = 0
    for path in files:
        t = pq.read_table(path, filesystem=fs, columns=cols + ["stems"])
        for split in t.column("split").to_pylist():
            rows_per_split[split] = rows_per_split.get(split, 0) + 1
        for lst in t.column("dropped_stems").to_pylist():
            for d in lst:
                dropped[d["reason"]] = dropped.get(d["reason"], 0) + 1
        seconds += float(pc.sum(pc.divide(pc.cast(t["num_samples"], pa.float64()), t["sample_rate"])).as_py())
        n_stems += int(pc.sum(pc.list_value_length(t["stems"])).as_py())
        ids = t.column("id").to_pylist()
        file_info.append({"path": path[len(root) + 1 :], "rows": t.num_rows, "first_id": ids[0],
                          "last_id": ids[-1], "sha256": _file_sha256(fs, path)})  # fmt: skip
    return {
        "rows_per_split": dict(sorted(rows_per_split.items())),
        "dropped_stems": dict(sorted(dropped.items())),
        "dropped_stems_total": int(sum(dropped.values())),
        "stems_total": n_stems,
        "hours": round(seconds / 3600, 4),
        "files": file_info,
    }


def read_manifest(shards: str) -> tuple[pafs.FileSystem, str, dict]:
    """Open a shard set; refuse it (naming the path) when unfinished or of another schema."""
    fs, root = resolve(shards)
    path = f"{root}/{MANIFEST}"
    if not exists(fs, path):
        raise ShardError(f"{path}: no manifest (not a shard set, or its synth run did not finish)")
    try:
        manifest = read_json(fs, path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ShardError(f"{path}: corrupt manifest ({exc})") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ShardError(
            f"{path}: schema version {manifest.get('schema_version')}, this mixscribe reads {SCHEMA_VERSION}"
        )
    return fs, root, manifest


def read_clips_table(shards: str, columns: list[str] | None = None) -> pa.Table:
    """All rows of a finished shard set, checked against the manifest's file list."""
    fs, root, manifest = read_manifest(shards)
    tables = []
    for f in manifest["files"]:
        path = f"{root}/{f['path']}"
        if not exists(fs, path):
            raise ShardError(f"{path}: listed in the manifest but missing")
        try:
            pf = pq.ParquetFile(path, filesystem=fs)
        except Exception as exc:
            raise ShardError(f"{path}: corrupt shard ({exc})") from exc
        check_schema(pf.schema_arrow, path)
        tables.append(pf.read(columns=columns))
    return pa.concat_tables(tables) if tables else CLIP_SCHEMA.empty_table()


def audio_seconds(manifest: dict) -> float:
    return float(manifest.get("hours", 0.0)) * 3600.0



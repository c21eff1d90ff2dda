"""`mixscribe synth`: seeds -> Ray Data map_batches(ShardRenderer actors, each writing its Parquet
shards) -> commit -> manifest.

Exactly-once and restartable: every shard holds a fixed range of clip indices and is named after it,
so a retried or re-run shard rewrites the same file. Shards are written in place under `clips/` (each
atomically), the driver checks that every clip id arrived exactly once, and the manifest, written last,
is what makes the set exist: a run that dies leaves no manifest, and re-running the same command
produces the same shards, byte for byte. No shard is ever copied (a rename on an object store is a
copy: a staging folder cost one copy per shard).

Only what mixscribe wrote is ever deleted: the shards an earlier manifest lists, those a pending record
(`clips/.mixscribe-pending.json`, written before rendering starts) names, and mixscribe's own temporary
names. A `clips/` holding anything else, or being a symlink, is refused before any work unless
--overwrite; even then the other files are kept and a symlink is replaced, never cleared through.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import mixscribe
from mixscribe.config import SynthConfig, from_dict, to_dict
from mixscribe.errors import MixscribeError, ShardError
from mixscribe.fsio import (
    atomic_write_bytes,
    atomic_write_json,
    ensure_writable_dir,
    exists,
    read_json,
    resolve,
)
from mixscribe.raycluster import node_id
from mixscribe.schema import SCHEMA_VERSION
from mixscribe.shards import CLIPS_DIR, MANIFEST, previous_manifest, write_manifest
from mixscribe.synth import catalog
from mixscribe.synth.clips import clip_id

PENDING = ".mixscribe-pending.json"  # in clips/: the shard names a run is writing, until its manifest lists them
_SHARD_NAME = re.compile(r"part-\d{8}\.parquet")
_TEMP_SHARD_NAME = re.compile(r"\.tmp-[0-9a-f]{32}-part-\d{8}\.parquet")  # fsio.atomic_write_bytes' names


class ShardRenderer:
    """Ray Data callable class: one FluidSynth per actor, SoundFonts loaded once per actor.

    Each call renders whole shards and writes each one itself, to a name that depends only on its
    clip range (`part-<first index>.parquet`, via a temporary name and a rename), and returns one small
    summary row per shard. So a retried task rewrites the same file (exactly once), the audio never
    travels through the object store to a separate write task, and the driver's commit reads nothing
    back. (This replaced `Dataset.write_parquet`, whose file names and bytes vary run to run and
    whose write tasks took about a third of the render CPU on a 2-core machine in a one-off psutil
    profile during development; see docs/synth.md.)
    """

    def __init__(self, cfg: dict, soundfont_ids: list[str], set_root: str | None = None):
        from mixscribe.synth.clips import ClipMaker
        from mixscribe.synth.render import FluidSynthRenderer

        self.cfg = from_dict(SynthConfig, cfg)
        entries = catalog.select(tuple(soundfont_ids))
        self.renderer = FluidSynthRenderer(self.cfg.render, entries)
        if self.cfg.procedural.enabled:
            from mixscribe.synth.procedural import MixedRenderer, ProceduralRenderer

            self.renderer = MixedRenderer(self.renderer, ProceduralRenderer(self.cfg.render, self.cfg.procedural))
        self.maker = ClipMaker(self.cfg, entries, self.renderer)
        self.fs, self.set_root = resolve(set_root) if set_root else (None, None)

    def render_shard(self, start: int, stop: int) -> pa.Table:
        from mixscribe.schema import clips_to_table

        self.renderer.restart()  # a shard's bytes must not depend on what this actor rendered before
        return clips_to_table([self.maker.make(i) for i in range(start, stop)])

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for start, stop in zip(batch["start"].to_pylist(), batch["stop"].to_pylist()):
            table = self.render_shard(start, stop)
            rows.append({**write_shard(self.fs, self.set_root, start, table), "node": node_id()})
        return pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)


SUMMARY_SCHEMA = pa.schema(
    [
        ("start", pa.int64()),
        ("path", pa.string()),
        ("ids", pa.list_(pa.string())),
        ("splits", pa.list_(pa.string())),
        ("stems", pa.int64()),
        ("empty", pa.int64()),
        ("seconds", pa.float64()),
        ("dropped", pa.list_(pa.string())),
        ("sha256", pa.string()),
        ("node", pa.string()),  # the Ray node that rendered it (the manifest counts shards per node)
        ("generated", pa.map_(pa.string(), pa.string())),  # generated instrument id -> its parameters (JSON)
    ]
)


def write_shard(fs: pafs.FileSystem, set_root: str, start: int, table: pa.Table) -> dict:
    """Write one shard atomically (temporary name, then rename) into the clips folder of the set at
    set_root, and describe it for the manifest, whose paths are relative to the set (so a set can be
    moved or copied)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", compression_level=1)
    data = sink.getvalue().to_pybytes()
    path = f"{CLIPS_DIR}/{shard_name(start)}"
    atomic_write_bytes(fs, f"{set_root}/{path}", data)
    notes = table.column("notes").to_pylist()
    return {
        "start": start,
        "path": path,
        "ids": table.column("id").to_pylist(),
        "splits": table.column("split").to_pylist(),
        "stems": sum(len({n["stem"] for n in ns}) for ns in notes),  # every stem has notes
        "empty": sum(not ns for ns in notes),
        "seconds": float(sum(n / sr for n, sr in zip(table.column("num_samples").to_pylist(),
                                                     table.column("sample_rate").to_pylist()))),  # fmt: skip
        "dropped": [d["reason"] for ds in table.column("dropped_stems").to_pylist() for d in ds],
        "sha256": hashlib.sha256(data).hexdigest(),
        "generated": sorted({(s["preset_name"], s["instrument_params"]) for ss in table.column("stems").to_pylist()
                             for s in ss if s["instrument_params"]}),  # fmt: skip
    }


def _validate_instruments(cfg: dict, soundfont_ids: list[str]) -> dict[str, int]:
    """Runs in a Ray worker (never create a Synth in a process that may fork): pool size per split."""
    return {k: len(v) for k, v in ShardRenderer(cfg, soundfont_ids).maker.pools.items()}


@dataclass(frozen=True)
class RenderPlacement:
    """Where render actors go: nodes that advertise the config's render resource when the cluster
    has any (mixed CPU/GPU clusters keep FluidSynth off the GPU nodes), any CPU otherwise."""

    resource: str  # "" when rendering is placed by CPU alone
    default_workers: int

    @classmethod
    def for_cluster(cls, cfg: SynthConfig) -> RenderPlacement:
        import ray

        from mixscribe.raycluster import cluster_cpus

        units = int(ray.cluster_resources().get(cfg.render_resource, 0)) if cfg.render_resource else 0
        if units >= 1:
            return cls(resource=cfg.render_resource, default_workers=units)
        return cls(resource="", default_workers=cluster_cpus())

    @property
    def actor_resources(self) -> dict[str, float]:
        return {self.resource: 1.0} if self.resource else {}

    @property
    def probe_resources(self) -> dict[str, float]:
        """The instrument check loads SoundFonts too: keep it on a render node, taking a sliver."""
        return {self.resource: 0.01} if self.resource else {}


@dataclass(frozen=True)
class SynthResult:
    out: str
    manifest: dict


def shard_ranges(num_clips: int, per_shard: int) -> list[tuple[int, int]]:
    return [(s, min(s + per_shard, num_clips)) for s in range(0, num_clips, per_shard)]


def shard_name(start: int) -> str:
    return f"part-{start:08d}.parquet"


def reopenable_uri(fs: pafs.FileSystem, path: str) -> str:
    """A path the actors can reopen on their own node: keep the scheme of remote filesystems."""
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    return f"{fs.type_name}://{path}"


def _check_previous(root: str, old: dict | None, manifest: dict, overwrite: bool) -> None:
    """Re-running the same command overwrites identical shards; another config needs --overwrite."""
    if old is None or overwrite:
        return
    same = all(old.get(k) == manifest[k] for k in ("config", "num_clips"))
    if not same:
        raise MixscribeError(f"{root}: already holds shards of another config or size (pass --overwrite to replace)")


@dataclass(frozen=True)
class ClipsFolder:
    """What an existing clips/ holds, split by who wrote it: only `own` may ever be deleted."""

    path: str
    own: frozenset[str]  # names an earlier manifest or pending record lists, and mixscribe's temporary names
    foreign: tuple[str, ...]  # everything else: hidden files and folders included
    symlink: bool

    @classmethod
    def survey(cls, fs: pafs.FileSystem, root: str, old_manifest: dict | None) -> ClipsFolder:
        path = f"{root}/{CLIPS_DIR}"
        symlink = isinstance(fs, pafs.LocalFileSystem) and os.path.islink(path)
        if symlink or not exists(fs, path):
            return cls(path, frozenset(), (), symlink)
        listed = {i.base_name: i for i in fs.get_file_info(pafs.FileSelector(path))}
        recorded = {f["path"].rsplit("/", 1)[-1] for f in (old_manifest or {}).get("files", [])}
        recorded |= _pending_names(fs, path) if PENDING in listed else set()
        own = {n for n, info in listed.items() if info.is_file and (
            _TEMP_SHARD_NAME.fullmatch(n) or (_SHARD_NAME.fullmatch(n) and n in recorded))}  # fmt: skip
        foreign = tuple(sorted(n for n in listed if n not in own and n != PENDING))
        return cls(path, frozenset(own), foreign, symlink)

    def check(self, overwrite: bool) -> None:
        """Refuse, before any work, a clips/ that is a symlink or holds what mixscribe did not write."""
        if overwrite:
            return
        if self.symlink:
            raise MixscribeError(f"{self.path}: is a symlink; choose another --out, or pass --overwrite to replace "
                                 "the link (never what it points to)")  # fmt: skip
        if self.foreign:
            more = f" and {len(self.foreign) - 1} more" if len(self.foreign) > 1 else ""
            raise MixscribeError(f"{self.path}: holds files mixscribe did not write ({self.foreign[0]!r}{more}); choose "
                                 "another --out, or pass --overwrite to write beside them (they are kept)")  # fmt: skip

    def record(self, fs: pafs.FileSystem, names: list[str]) -> None:
        """Write the pending record: the names this run writes and the earlier runs' own files, so a re-run
        after a crash still knows them as its own. A symlink is removed itself, its target untouched."""
        if self.symlink:
            os.unlink(self.path)
        fs.create_dir(self.path, recursive=True)
        atomic_write_json(fs, f"{self.path}/{PENDING}", sorted(set(names) | self.own))

    def clear_stale(self, fs: pafs.FileSystem, names: list[str]) -> None:
        """Delete mixscribe's own files of earlier runs that this run does not rewrite."""
        for name in sorted(self.own - set(names)):
            fs.delete_file(f"{self.path}/{name}")


def _pending_names(fs: pafs.FileSystem, clips_dir: str) -> set[str]:
    try:
        names = read_json(fs, f"{clips_dir}/{PENDING}")
    except (ValueError, UnicodeDecodeError, OSError):
        return set()
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def _soundfont_ids(cfg: SynthConfig) -> list[str]:
    entries = catalog.select(cfg.soundfonts)
    if not entries:
        raise MixscribeError("no catalog SoundFont is installed (mixscribe soundfonts install)")
    for e in entries:
        catalog.verify_file(e)
    return [e.id for e in entries]


def run_synth(cfg: SynthConfig, out: str, num_clips: int, overwrite: bool = False) -> SynthResult:
    from mixscribe.raycluster import import_ray

    ray = import_ray()

    from mixscribe.raycluster import init_ray, unwrap_ray_error
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
    old = previous_manifest(fs, root)
    _check_previous(root, old, manifest, overwrite)
    folder = ClipsFolder.survey(fs, root, old)
    folder.check(overwrite)

    init_ray()
    placement = RenderPlacement.for_cluster(cfg)
    try:
        check = ray.remote(num_cpus=0.25, resources=placement.probe_resources)(_validate_instruments)
        pools = ray.get(check.remote(cfg_dict, sf_ids))
    except Exception as exc:  # Ray wraps the worker's exception
        raise unwrap_ray_error(exc) from None
    workers = cfg.workers or placement.default_workers
    clips_dir = folder.path
    ranges = shard_ranges(num_clips, cfg.clips_per_shard)
    names = [shard_name(a) for a, _ in ranges]
    folder.record(fs, names)
    if old is not None:
        fs.delete_file(f"{root}/{MANIFEST}")  # from here until the end, a dying run leaves no manifest
    folder.clear_stale(fs, names)
    t0 = time.perf_counter()
    try:
        summaries = _render_to(reopenable_uri(fs, root), cfg_dict, sf_ids, ranges, workers, cfg.actor_cpus,
                               placement.actor_resources)
        summaries = _commit(fs, clips_dir, ranges, summaries)
    except Exception as exc:
        raise unwrap_ray_error(exc) from None
    manifest.update(_summarise(summaries))
    manifest["pool_sizes"] = pools
    manifest["render_seconds"] = round(time.perf_counter() - t0, 3)
    manifest["workers"] = workers
    manifest["render_resource"] = placement.resource
    write_manifest(fs, root, manifest)
    fs.delete_file(f"{clips_dir}/{PENDING}")  # the manifest lists them now
    return SynthResult(out=root, manifest=manifest)


ACTOR_START_TIMEOUT_S = 600  # a node being provisioned by an autoscaler may take minutes


def _render_to(set_root: str, cfg_dict: dict, sf_ids: list[str], ranges, workers: int, actor_cpus: float,
               resources: dict[str, float]) -> list[dict]:
    """Render every shard; progress is one bar over shards and clips as their summaries stream back.
    (Ray Data's per-operator bars are off: in a one-off development comparison, 2-worker scaling was
    1.80x without them and 1.70x with them; not a benchmark.)"""
    import ray
    from ray.data import ActorPoolStrategy
    from tqdm import tqdm

    from mixscribe.console import bar_interval

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    # Start only once every render actor is up: Ray otherwise starts them asynchronously, and on a
    # cluster the first actor (its node already holding the job's working_dir) can render every shard
    # of a small job before a second node has unpacked the runtime env (seen in CI: 6 shards, one node).
    ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S

    items = [{"start": a, "stop": b} for a, b in ranges]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(
        ShardRenderer,
        fn_constructor_kwargs={"cfg": cfg_dict, "soundfont_ids": sf_ids, "set_root": set_root},
        batch_size=1,
        batch_format="pyarrow",
        # One shard in flight per actor: shards go to whichever actor is free, so no actor idles
        # at the end while another still holds a queue.
        compute=ActorPoolStrategy(size=min(workers, len(items)), max_tasks_in_flight_per_actor=1),
        num_cpus=actor_cpus,
        resources=resources or None,
    )
    total = sum(b - a for a, b in ranges)
    summaries = []
    with tqdm(total=total, unit="clip", desc="rendering", mininterval=bar_interval()) as bar:
        for row in ds.iter_rows():
            summaries.append(row)
            bar.update(len(row["ids"]))
    return summaries


def _commit(fs: pafs.FileSystem, clips_dir: str, ranges, summaries: list[dict]) -> list[dict]:
    """Check that every clip was written exactly once and every shard is there (one listing, no per-file
    requests), and remove the temporary files of writers killed mid-write (only mixscribe's own names)."""
    summaries = sorted({s["start"]: s for s in summaries}.values(), key=lambda s: s["start"])
    ids = [i for s in summaries for i in s["ids"]]
    expected = [clip_id(i) for a, b in ranges for i in range(a, b)]
    if ids != expected:
        raise ShardError(f"{clips_dir}: rendered {len(ids)} clips ({len(set(ids))} distinct), expected {len(expected)}")
    listed = {info.path for info in fs.get_file_info(pafs.FileSelector(clips_dir)) if info.is_file}
    wanted = {f"{clips_dir}/{shard_name(s['start'])}" for s in summaries}
    missing = sorted(wanted - listed)
    if missing:
        raise ShardError(f"{missing[0]}: reported written but missing ({len(missing)} shard(s))")
    for stray in sorted(listed - wanted):
        if _TEMP_SHARD_NAME.fullmatch(stray.rsplit("/", 1)[-1]):
            fs.delete_file(stray)
    return summaries


def _summarise(summaries: list[dict]) -> dict:
    splits = Counter(x for s in summaries for x in s["splits"])
    dropped = Counter(x for s in summaries for x in s["dropped"])
    files = [
        {"path": s["path"], "rows": len(s["ids"]), "first_id": s["ids"][0],
         "last_id": s["ids"][-1], "sha256": s["sha256"]}  # fmt: skip
        for s in summaries
    ]
    return {
        "rows_per_split": dict(sorted(splits.items())),
        "dropped_stems": dict(sorted(dropped.items())),
        "dropped_stems_total": int(sum(dropped.values())),
        "stems_total": int(sum(s["stems"] for s in summaries)),
        "empty_clips": int(sum(s["empty"] for s in summaries)),
        "hours": round(sum(s["seconds"] for s in summaries) / 3600, 4),
        "render_nodes": dict(sorted(Counter(s["node"] for s in summaries).items())),
        # every generated instrument the set holds, with what re-renders it (ids are hashes of these)
        "procedural_instruments": {k: json.loads(v) for s in summaries for k, v in s["generated"]},
        "files": files,
    }

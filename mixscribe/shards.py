"""A shard set: Parquet shards of clip rows under `clips/`, and `manifest.json`, written last, which
makes the set exist. Every stage reads a set through `ShardSet.open`, so one place refuses an
unfinished set, a set of another schema, a listed shard that is missing or corrupt, or a split the
set lacks, each with one line naming the file.

The synthetic renderer (synth/), the chorale builder and the real-recording sets (evaluate/) all write
this one format; what a writer records beyond the common fields (versions, SoundFonts, render figures,
the dataset and its protocol) stays in `Manifest.record`, the JSON as written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mixscribe.errors import MixscribeError, ShardError
from mixscribe.fsio import atomic_write_json, exists, read_json, resolve
from mixscribe.schema import CLIP_SCHEMA, READABLE_VERSIONS, check_schema, readable_versions

MANIFEST = "manifest.json"
CLIPS_DIR = "clips"


@dataclass(frozen=True)
class ShardFile:
    """One shard as the manifest lists it."""

    path: str  # relative to the set's root, e.g. clips/part-00000000.parquet
    rows: int
    sha256: str = ""  # "" where the writer recorded none: then only presence and schema are checked
    first_id: str = ""
    last_id: str = ""
    splits: tuple[str, ...] = ()  # the splits of its rows; () where the writer did not record them

    @classmethod
    def from_record(cls, f: dict) -> ShardFile:
        """A listed file; writers that keep each row's id record `ids` instead of `rows` and first/last."""
        ids = f.get("ids") or []
        return cls(path=f["path"], rows=int(f.get("rows", len(ids))), sha256=f.get("sha256") or "",
                   first_id=f.get("first_id") or (ids[0] if ids else ""),
                   last_id=f.get("last_id") or (ids[-1] if ids else ""),
                   splits=tuple(dict.fromkeys(f.get("splits") or ())))  # fmt: skip

    def may_hold(self, split: str) -> bool:
        return not self.splits or split in self.splits


@dataclass(frozen=True)
class Manifest:
    """The common fields of a manifest.json, typed; `record` is the whole JSON as written."""

    schema_version: int
    kind: str  # "synth" (rendered from SoundFonts), "chorales" or "dataset"
    num_clips: int
    rows_per_split: dict[str, int]
    files: tuple[ShardFile, ...]
    config: dict  # what built the set: a re-run with the same config may reuse or rewrite it
    package_version: str
    record: dict

    @classmethod
    def from_record(cls, record: dict, path: str) -> Manifest:
        """The manifest at `path` (named in every error) from its JSON; refused when of another schema."""
        if not isinstance(record, dict):
            raise ShardError(f"{path}: corrupt manifest (not a mapping)")
        version = record.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ShardError(f"{path}: schema version {version}, this mixscribe reads {readable_versions()}")
        try:
            files = tuple(ShardFile.from_record(f) for f in record["files"])
            return cls(schema_version=int(version), kind=record.get("kind") or "synth",
                       num_clips=int(record["num_clips"]),
                       rows_per_split={str(k): int(v) for k, v in (record.get("rows_per_split") or {}).items()},
                       files=files, config=dict(record.get("config") or {}),
                       package_version=str(record.get("package_version", "")), record=record)  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ShardError(f"{path}: corrupt manifest ({type(exc).__name__}: {exc})") from exc

    def content_hash(self) -> str:
        """A short hash of the JSON as written: the set's identity in MLflow's dataset lineage."""
        import json

        return hashlib.sha256(json.dumps(self.record, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ShardSet:
    """A finished shard set, opened: where it is and what its manifest says."""

    fs: pafs.FileSystem
    root: str
    manifest: Manifest

    @classmethod
    def open(cls, shards: str) -> ShardSet:
        """Open a shard set; refuse it (naming the path) when unfinished, corrupt or of another schema."""
        fs, root = resolve(shards)
        path = f"{root}/{MANIFEST}"
        if not exists(fs, path):
            raise ShardError(f"{path}: no manifest (not a shard set, or its synth run did not finish)")
        try:
            record = read_json(fs, path)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ShardError(f"{path}: corrupt manifest ({exc})") from exc
        return cls(fs, root, Manifest.from_record(record, path))

    def path(self, f: ShardFile) -> str:
        return f"{self.root}/{f.path}"

    def require_split(self, split: str) -> None:
        if not self.manifest.rows_per_split.get(split):
            raise ShardError(f"{self.root}: no clips in split {split!r} (it has {self.manifest.rows_per_split})")

    def read_table(self, columns: list[str] | None = None, splits: tuple[str, ...] | None = None,
                   ids: tuple[str, ...] | None = None) -> pa.Table:
        """All rows, or those of `splits` and/or `ids`, each file read checked present and of this
        schema. Rows are filtered file by file as they are read, so memory holds one shard and the
        kept rows: a 10,000-clip set is gigabytes of audio, and each training worker wants its few
        hundred validation clips from it. A file's id and split columns are read first, and its audio
        only if it holds a wanted row: finding one clip reads one shard's audio, not the set's."""
        wanted = {name: pa.array(list(values), pa.string())
                  for name, values in (("split", splits), ("id", ids)) if values is not None}  # fmt: skip
        read = list(columns) if columns else None  # the filter's columns are read apart (_rows_wanted)
        tables = []
        for f in self.manifest.files:
            if splits is not None and not any(f.may_hold(s) for s in splits):
                continue
            path = self.path(f)
            if not exists(self.fs, path):
                raise ShardError(f"{path}: listed in the manifest but missing")
            try:
                pf = pq.ParquetFile(path, filesystem=self.fs)
            except Exception as exc:
                raise ShardError(f"{path}: corrupt shard ({exc})") from exc
            check_schema(pf.schema_arrow, path)
            keep = _rows_wanted(pf, wanted)
            if keep is not None and not pc.any(keep).as_py():
                continue
            table = pf.read(columns=read)
            if keep is not None:
                table = table.filter(keep)
            tables.append(table.select(columns) if columns else table)
        if tables:
            return pa.concat_tables(tables)
        empty = CLIP_SCHEMA.empty_table()
        return empty.select(columns) if columns else empty

    def verify(self, splits: tuple[str, ...]) -> dict[str, list[str]]:
        """Every file holding one of the splits, checked before work starts: present, of this schema,
        and with the manifest's sha256, so a truncated or corrupted shard is a one-line error naming it,
        not a crash inside a worker. Each file is read once; returns the paths per split."""
        for split in splits:
            self.require_split(split)
        paths: dict[str, list[str]] = {split: [] for split in splits}
        for f in self.manifest.files:
            holds = [split for split in splits if f.may_hold(split)]
            if not holds:
                continue
            path = self.path(f)
            try:
                with self.fs.open_input_stream(path) as stream:
                    digest = hashlib.sha256()
                    while chunk := stream.read(1 << 22):
                        digest.update(chunk)
                schema = pq.ParquetFile(path, filesystem=self.fs).schema_arrow
            except FileNotFoundError as exc:
                raise ShardError(f"{path}: listed in the manifest but missing") from exc
            except Exception as exc:
                raise ShardError(f"{path}: corrupt shard ({exc})") from exc
            if f.sha256 and digest.hexdigest() != f.sha256:
                raise ShardError(f"{path}: corrupt shard (sha256 differs from the manifest)")
            check_schema(schema, path)
            for split in holds:
                paths[split].append(path)
        return paths


def _rows_wanted(pf: pq.ParquetFile, wanted: dict[str, pa.Array]) -> pa.BooleanArray | None:
    """Which of a shard's rows have every wanted column's value among the wanted ones, read from those
    (small string) columns alone; None when nothing is filtered."""
    if not wanted:
        return None
    keys = pf.read(columns=list(wanted))
    masks = [pc.is_in(keys[name], value_set=values) for name, values in wanted.items()]
    keep = masks[0]
    for mask in masks[1:]:
        keep = pc.and_(keep, mask)
    return keep


def previous_manifest(fs: pafs.FileSystem, root: str) -> dict | None:
    """The manifest an earlier run left in root, as written; a manifest.json that mixscribe did not
    write is refused (it would be replaced), even with --overwrite."""
    path = f"{root}/{MANIFEST}"
    if not exists(fs, path):
        return None
    try:
        old = read_json(fs, path)
    except (ValueError, UnicodeDecodeError, OSError):
        old = None
    if not isinstance(old, dict) or "schema_version" not in old or not isinstance(old.get("files"), list):
        raise MixscribeError(f"{path}: not a mixscribe manifest; choose another --out (mixscribe will not replace it)")
    return old


def write_manifest(fs: pafs.FileSystem, root: str, record: dict) -> Manifest:
    """Write the manifest last and atomically: from this moment the set exists. Checked by the reader's
    rules first, so no writer can leave a set its readers refuse."""
    path = f"{root}/{MANIFEST}"
    manifest = Manifest.from_record(record, path)
    atomic_write_json(fs, path, record)
    return manifest

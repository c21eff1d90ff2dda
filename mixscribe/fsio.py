"""Filesystem helpers: local paths and pyarrow URIs alike, writes that never leave half a file."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from mixscribe.errors import MixscribeError


def resolve(uri_or_path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """Split a local path or a URI (s3://, gs://, file://) into (filesystem, path)."""
    text = str(uri_or_path)
    if "://" in text:
        try:
            return pafs.FileSystem.from_uri(text)
        except Exception as exc:  # pyarrow raises several types here
            raise MixscribeError(f"{text}: cannot open filesystem ({exc})") from exc
    return pafs.LocalFileSystem(), str(Path(text).absolute())


def absolute(uri_or_path: str | os.PathLike) -> str:
    """A URI unchanged, a local path made absolute: what a Ray worker on another node (or in another
    working directory) can open again."""
    text = str(uri_or_path)
    return text if "://" in text else str(Path(text).absolute())


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def atomic_write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Readers see all or nothing. Locally: a temporary name beside the target, then a rename. On object
    stores (S3, GCS) an object appears only when its upload completes, and a rename there is a full
    copy, so the object is written in place."""
    if not isinstance(fs, pafs.LocalFileSystem):
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    parent = path.rsplit("/", 1)[0]
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{path.rsplit('/', 1)[-1]}"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, path)


def atomic_write_json(fs: pafs.FileSystem, path: str, obj: Any) -> None:
    atomic_write_bytes(fs, path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(fs: pafs.FileSystem, path: str) -> Any:
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def ensure_writable_dir(fs: pafs.FileSystem, path: str) -> None:
    """Fail early, with the path named, when the output cannot be written."""
    try:
        fs.create_dir(path, recursive=True)
        probe = f"{path}/.probe-{uuid.uuid4().hex}"
        with fs.open_output_stream(probe) as out:
            out.write(b"ok")
        fs.delete_file(probe)
    except OSError as exc:  # pyarrow's IO errors derive from OSError
        raise MixscribeError(f"{path}: output is not writable ({exc.__class__.__name__}: {exc})") from exc


def atomic_local_write(target: Path, write) -> Path:
    """Call write(tmp) on a temporary sibling of a local target, then rename it over the target;
    on failure the temporary file is removed and the target is untouched."""
    target = Path(target)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target

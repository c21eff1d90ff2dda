"""The SoundFont catalog (soundfonts/catalog.toml): what may be rendered, where it lives, its family."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mixscribe.errors import SoundFontError

CATALOG_ENV = "MIXSCRIBE_CATALOG"
# A link to soundfonts/catalog.toml in a checkout, a copy of it in a built wheel (cluster nodes install one).
DEFAULT_CATALOG = Path(__file__).parent / "catalog.toml"


@dataclass(frozen=True)
class SoundFontEntry:
    id: str
    package: str
    path: str
    sha256: str
    license: str
    family: str

    def installed(self) -> bool:
        return Path(self.path).is_file()


def catalog_path() -> Path:
    return Path(os.environ.get(CATALOG_ENV, DEFAULT_CATALOG))


@lru_cache(maxsize=8)
def _load(path: str) -> tuple[SoundFontEntry, ...]:
    p = Path(path)
    if not p.is_file():
        raise SoundFontError(f"{p}: SoundFont catalog not found (set {CATALOG_ENV})")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SoundFontError(f"{p}: invalid TOML ({exc})") from exc
    entries = []
    for i, raw in enumerate(data.get("soundfont", [])):
        try:
            entries.append(SoundFontEntry(**raw))
        except TypeError as exc:
            raise SoundFontError(f"{p}: soundfont entry {i}: {exc}") from exc
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise SoundFontError(f"{p}: duplicate soundfont ids")
    return tuple(entries)


def load_catalog(path: Path | None = None) -> tuple[SoundFontEntry, ...]:
    return _load(str(path or catalog_path()))


def get_entry(sf_id: str) -> SoundFontEntry:
    for e in load_catalog():
        if e.id == sf_id:
            return e
    raise SoundFontError(f"soundfont {sf_id!r}: not in the catalog {catalog_path()}")


def select(ids: tuple[str, ...] = (), installed_only: bool = True) -> list[SoundFontEntry]:
    """Entries by id (all when empty); unknown ids and missing files are errors, never skipped."""
    entries = [get_entry(i) for i in ids] if ids else list(load_catalog())
    if ids:
        for e in entries:
            if not e.installed():
                raise SoundFontError(f"{e.path}: SoundFont {e.id!r} is missing (mixscribe soundfonts install)")
    elif installed_only:
        entries = [e for e in entries if e.installed()]
    return entries


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=32)
def _cached_sha(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def verify_file(entry: SoundFontEntry) -> str:
    """Checksum one SoundFont against the catalog; raises naming the file on mismatch."""
    p = Path(entry.path)
    if not p.is_file():
        raise SoundFontError(f"{p}: SoundFont {entry.id!r} is missing (mixscribe soundfonts install)")
    st = p.stat()
    digest = _cached_sha(str(p), st.st_size, st.st_mtime_ns)
    if digest != entry.sha256:
        raise SoundFontError(f"{p}: checksum mismatch for {entry.id!r} (corrupt or another version)")
    return digest


def install(entries: list[SoundFontEntry]) -> None:
    """Install the catalog's Debian packages with apt (needs root)."""
    if shutil.which("apt-get") is None:
        raise SoundFontError("apt-get not found: install the packages listed in the catalog by hand")
    pkgs = sorted({e.package for e in entries})
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise SoundFontError(f"apt-get install {' '.join(pkgs)} failed: {last}")

"""Real recordings as evaluation sets: BACH10, URMP and PHENICX-Anechoic, read from the folders their
publishers distribute and turned into a shard set, so they are scored, reported and logged like any
synthetic split.

Every published figure for timbre-separated transcription is on these recordings, so a study that
reports only synthetic sets cannot be put next to the literature. Mixtures are built as the paper
builds them (paper-spec §9.5): every 2-, 3- and 4-part subset of each BACH10 piece's stems, summed; the
whole ensemble of each URMP piece with 2 or 3 distinct instruments, parts of one instrument merged into
one timbre; PHENICX-Anechoic as its full orchestra (the paper scores it timbre-agnostic only).

Nothing is downloaded: the user points `--data-home` at a copy they obtained under the dataset's
licence. The readers check that every file a piece needs is there before any audio is read, and name
the first one missing. mirdata has a PHENICX-Anechoic loader, but it fetches its file index from Zenodo
on first use (a download at run time, and impossible where only package registries are reachable) and
has none for BACH10 or URMP, so all three are small readers of the published layouts.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixscribe.errors import MixscribeError
from mixscribe.schema import HOP, SAMPLE_RATE, Clip, Note, Stem


class DatasetError(MixscribeError):
    """A dataset folder is missing, incomplete or not laid out as published."""


@dataclass(frozen=True)
class RefNote:
    onset: float  # seconds
    offset: float
    pitch: int  # MIDI


@dataclass(frozen=True)
class Part:
    """One timbre of a piece: every recording of that instrument (summed) and its notes."""

    instrument: str
    gm_program: int  # 0-based GM program of the nearest General MIDI instrument (for the per-pair tables)
    audio: tuple[Path, ...]
    notes: tuple[RefNote, ...]


@dataclass(frozen=True)
class Piece:
    name: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Protocol:
    """Which mixtures a dataset contributes: every subset of `sizes` parts of each piece, or (whole) each
    piece's full ensemble when its part count is in `sizes` (any count when sizes is empty)."""

    sizes: tuple[int, ...]
    whole: bool

    def mixtures(self, piece: Piece) -> list[tuple[int, ...]]:
        n = len(piece.parts)
        if self.whole:
            return [tuple(range(n))] if n >= 1 and (not self.sizes or n in self.sizes) else []
        return [c for k in self.sizes if 2 <= k <= n for c in itertools.combinations(range(n), k)]


# ------------------------------------------------------------------------------------------------ BACH10

BACH10_PARTS = (("violin", 40), ("clarinet", 71), ("saxphone", 66), ("bassoon", 70))  # the files' spelling
BACH10_F0_HOP = 0.010  # seconds between GTF0s frames
BACH10_F0_START = 0.023  # the first frame's centre (46 ms windows)
MIN_NOTE_FRAMES = 3  # F0 runs shorter than 30 ms are glitches of the tracker, not notes


def f0_to_notes(midi: np.ndarray, hop: float = BACH10_F0_HOP, start: float = BACH10_F0_START,
                min_frames: int = MIN_NOTE_FRAMES) -> list[RefNote]:  # fmt: skip
    """Notes from one part's frame-wise F0 in (fractional) MIDI numbers, 0 where silent: runs of one
    rounded pitch after a 5-frame median filter (vibrato that brushes a semitone boundary for a frame or
    two does not split a note); a note spans its frames' centres plus one hop. Repeated notes of one
    pitch with no silent frame between them stay one note: the F0 track does not mark re-attacks."""
    from scipy.ndimage import median_filter

    pitch = np.where(np.asarray(midi, np.float64) > 0, np.rint(midi), 0).astype(np.int64)
    pitch = median_filter(pitch, size=5, mode="nearest")
    notes = []
    edges = np.flatnonzero(np.diff(pitch)) + 1
    for a, b in zip(np.r_[0, edges], np.r_[edges, pitch.size]):
        if pitch[a] > 0 and b - a >= min_frames:
            notes.append(RefNote(start + a * hop, start + b * hop, int(pitch[a])))
    return notes


def read_bach10_alignment(path: Path) -> list[list[RefNote]]:
    """BACH10's NN-Title.txt, the score aligned to the performance: one note per line, onset (ms),
    offset (ms), MIDI pitch, part (1-4), tab-separated; returns the notes of each part."""
    parts: list[list[RefNote]] = [[] for _ in BACH10_PARTS]
    for i, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            onset, offset, pitch, part = float(fields[0]), float(fields[1]), int(float(fields[2])), int(fields[3])
            if not 1 <= part <= len(parts):
                raise ValueError(part)
            parts[part - 1].append(RefNote(onset / 1000, offset / 1000, pitch))
        except (ValueError, IndexError):
            raise DatasetError(f"{path}:{i}: expected 'onset_ms offset_ms pitch part(1-4)', got {line.strip()!r}") from None
    return [sorted(p, key=lambda n: (n.onset, n.pitch)) for p in parts]


def _bach10_f0_notes(mat: Path) -> list[list[RefNote]]:
    from scipy.io import loadmat

    f0 = loadmat(mat).get("GTF0s")
    if f0 is None or f0.ndim != 2 or f0.shape[0] != len(BACH10_PARTS):
        raise DatasetError(f"{mat}: expected a GTF0s matrix of {len(BACH10_PARTS)} rows (one per part)")
    return [f0_to_notes(row) for row in f0]


def read_bach10(home: Path) -> list[Piece]:
    """BACH10 (v1.1): HOME/NN-Title/ with NN-Title-{violin,clarinet,saxphone,bassoon}.wav and the notes
    of each part from NN-Title.txt (the score aligned to the performance: exact re-attacks), or, where a
    piece has none, from NN-Title-GTF0s.mat (GTF0s: 4 x frames, MIDI, rows in that part order)."""
    folders = sorted(p for p in home.iterdir() if p.is_dir() and re.match(r"^\d+-", p.name))
    if not folders:
        raise DatasetError(f"{home}: no BACH10 piece folders (NN-Title/, e.g. 01-AchGottundHerr/)")
    sources = []
    for folder in folders:
        for name, _ in BACH10_PARTS:
            _require(folder / f"{folder.name}-{name}.wav")
        aligned = folder / f"{folder.name}.txt"
        sources.append(aligned if aligned.is_file() else _require(folder / f"{folder.name}-GTF0s.mat"))
    pieces = []
    for folder, source in zip(folders, sources):
        notes = read_bach10_alignment(source) if source.suffix == ".txt" else _bach10_f0_notes(source)
        parts = tuple(Part(name, program, (folder / f"{folder.name}-{name}.wav",), tuple(part_notes))
                      for (name, program), part_notes in zip(BACH10_PARTS, notes))  # fmt: skip
        pieces.append(Piece(folder.name, parts))
    return pieces


# -------------------------------------------------------------------------------------------------- URMP

URMP_PROGRAMS = {"vn": 40, "va": 41, "vc": 42, "db": 43, "fl": 73, "ob": 68, "cl": 71, "sax": 65, "bn": 70,
                 "tpt": 56, "hn": 60, "tbn": 57, "tba": 58}  # fmt: skip
URMP_FOLDER = re.compile(r"^(\d+)_([^_]+)_([a-z]+(?:_[a-z]+)*)$")


def read_urmp_notes(path: Path) -> list[RefNote]:
    """URMP's Notes_*.txt: one note per line, onset (s), frequency (Hz), duration (s)."""
    from pretty_midi import hz_to_note_number

    notes = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            onset, hz, duration = (float(x) for x in fields[:3])
        except ValueError:
            raise DatasetError(f"{path}:{i}: expected 'onset frequency duration', got {line.strip()!r}") from None
        if hz > 0 and duration > 0:
            notes.append(RefNote(onset, onset + duration, int(round(hz_to_note_number(hz)))))
    return notes


def read_urmp(home: Path) -> list[Piece]:
    """URMP: HOME/NN_Title_codes/ (or HOME/Dataset/...) with AuSep_i_code_NN_Title.wav and
    Notes_i_code_NN_Title.txt per part; parts of one instrument merge into one timbre."""
    root = home / "Dataset" if (home / "Dataset").is_dir() else home
    folders = sorted((p for p in root.iterdir() if p.is_dir() and URMP_FOLDER.match(p.name)), key=lambda p: p.name)
    if not folders:
        raise DatasetError(f"{home}: no URMP piece folders (NN_Title_codes/, e.g. 01_Jupiter_vn_vc/)")
    layout = []
    for folder in folders:
        number, title, codes = URMP_FOLDER.match(folder.name).groups()
        files = []
        for i, code in enumerate(codes.split("_"), 1):
            audio = _require(folder / f"AuSep_{i}_{code}_{number}_{title}.wav")
            files.append((code, audio, _require(folder / f"Notes_{i}_{code}_{number}_{title}.txt")))
        layout.append((folder.name, files))
    pieces = []
    for name, files in layout:
        by_code: dict[str, list] = {}
        for code, audio, notes in files:
            by_code.setdefault(code, []).append((audio, read_urmp_notes(notes)))
        parts = tuple(Part(code, URMP_PROGRAMS.get(code, 48), tuple(a for a, _ in entries),
                           tuple(sorted((n for _, ns in entries for n in ns), key=lambda n: (n.onset, n.pitch))))
                      for code, entries in by_code.items())  # fmt: skip
        pieces.append(Piece(name, parts))
    return pieces


# -------------------------------------------------------------------------------------- PHENICX-Anechoic

PHENICX_PROGRAMS = {"violin": 40, "viola": 41, "cello": 42, "doublebass": 43, "flute": 73, "oboe": 68,
                    "clarinet": 71, "bassoon": 70, "horn": 60, "trumpet": 56}  # fmt: skip


def read_phenicx_notes(path: Path) -> list[RefNote]:
    """PHENICX-Anechoic's annotations/PIECE/INSTRUMENT.txt: onset (s), offset (s), note name, per line."""
    from pretty_midi import note_name_to_number

    notes = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        fields = [f.strip() for f in line.split(",")]
        if not any(fields):
            continue
        try:
            notes.append(RefNote(float(fields[0]), float(fields[1]), int(note_name_to_number(fields[2]))))
        except (ValueError, IndexError):
            raise DatasetError(f"{path}:{i}: expected 'onset,offset,note name', got {line.strip()!r}") from None
    return notes


def read_phenicx(home: Path) -> list[Piece]:
    """PHENICX-Anechoic: HOME/audio/PIECE/INSTRUMENT[n].wav (one file per player, summed) and
    HOME/annotations/PIECE/INSTRUMENT.txt (score aligned to the audio; *_o.txt, the unaligned score, is
    not used)."""
    audio_root, notes_root = _require(home / "audio", folder=True), _require(home / "annotations", folder=True)
    pieces = []
    for folder in sorted(p for p in audio_root.iterdir() if p.is_dir()):
        notes_dir = _require(notes_root / folder.name, folder=True)
        instruments = sorted(p.stem for p in notes_dir.glob("*.txt") if not p.stem.endswith("_o"))
        if not instruments:
            raise DatasetError(f"{notes_dir}: no note annotations (INSTRUMENT.txt)")
        parts = []
        for instrument in instruments:
            players = sorted(p for p in folder.glob("*.wav") if re.fullmatch(rf"{re.escape(instrument)}\d*", p.stem))
            if not players:
                raise DatasetError(f"{folder / (instrument + '.wav')}: missing (no recording of the annotated {instrument})")
            parts.append((instrument, tuple(players), notes_dir / f"{instrument}.txt"))
        pieces.append((folder.name, parts))
    if not pieces:
        raise DatasetError(f"{audio_root}: no piece folders (e.g. audio/beethoven/)")
    return [Piece(name, tuple(Part(i, PHENICX_PROGRAMS.get(i, 48), players, tuple(read_phenicx_notes(notes)))
                              for i, players, notes in parts))
            for name, parts in pieces]  # fmt: skip


# ------------------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    reader: object  # Path -> list[Piece]
    protocol: Protocol
    source: str  # where it is published
    licence: str


DATASETS = {
    "bach10": DatasetSpec("bach10", read_bach10, Protocol((2, 3, 4), whole=False),
                          "https://labsites.rochester.edu/air/resource.html (Bach10 v1.1)",
                          "research use, on the terms of the download page"),
    "urmp": DatasetSpec("urmp", read_urmp, Protocol((2, 3), whole=True),
                        "https://labsites.rochester.edu/air/projects/URMP.html",
                        "research use, on the terms of the download page"),
    "phenicx": DatasetSpec("phenicx", read_phenicx, Protocol((), whole=True),
                           "https://zenodo.org/record/840025 (PHENICX-Anechoic)", "CC BY-NC-SA 4.0"),
}  # fmt: skip


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DatasetError(f"--dataset: unknown dataset {name!r}; one of {sorted(DATASETS)}")
    return DATASETS[name]


def dataset_home(name: str, home: str | Path | None) -> Path:
    """The folder a dataset was unpacked to, checked to exist: the one message for a missing one."""
    if not home:
        raise DatasetError(f"--dataset needs --data-home (the folder {name} was unpacked to)")
    path = Path(home).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{home}: no such folder (--data-home: where {name} was unpacked)")
    return path


def read_dataset(name: str, home: str | Path) -> list[Piece]:
    """The dataset's pieces, every file checked before any audio is read."""
    return dataset_spec(name).reader(dataset_home(name, home))


def _require(path: Path, folder: bool = False) -> Path:
    if not (path.is_dir() if folder else path.is_file()):
        raise DatasetError(f"{path}: missing")
    return path


# --------------------------------------------------------------------------------------- to a shard set


def _load_part(part: Part) -> np.ndarray:
    """Every recording of the part at SAMPLE_RATE, mono, summed (float32)."""
    import soundfile as sf

    from mixscribe.transcription.inference import to_model_rate

    total = None
    for path in part.audio:
        try:
            audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises several types for a bad file
            raise DatasetError(f"{path}: not a readable audio file ({type(exc).__name__})") from None
        audio = to_model_rate(audio.mean(axis=1), sr)
        if total is None:
            total = audio
        else:
            n = max(total.size, audio.size)
            total = np.pad(total, (0, n - total.size)) + np.pad(audio, (0, n - audio.size))
    return total


def piece_clips(piece: Piece, dataset: str, protocol: Protocol, max_seconds: float = 0.0) -> list[Clip]:
    """The piece's mixtures as clips: each part a stem (its recordings at their recorded balance, one
    gain for the whole piece so that the loudest stays below full scale), notes from the annotations."""
    from mixscribe.schema import gm_family

    combos = protocol.mixtures(piece)
    if not combos:
        return []
    audio = [_load_part(p) for p in piece.parts]
    n = max(a.size for a in audio)
    if max_seconds:
        n = min(n, int(max_seconds * SAMPLE_RATE))
    n = int(np.ceil(n / HOP) * HOP)
    audio = [np.pad(a[:n], (0, n - min(a.size, n))) for a in audio]
    peak = max(float(np.abs(a).max()) for a in audio)
    gain = 0.99 / peak if peak > 0 else 1.0
    end = n / SAMPLE_RATE
    stems = [Stem(np.clip(np.rint(a * gain * 32767), -32768, 32767).astype(np.int16), dataset, "recorded", 0, 0,
                  p.instrument, p.gm_program, gm_family(p.gm_program), gain)
             for a, p in zip(audio, piece.parts)]  # fmt: skip
    clips = []
    for combo in combos:
        notes = sorted((Note(r.onset, min(r.offset, end), r.pitch, 80, j)
                        for j, i in enumerate(combo) for r in piece.parts[i].notes if r.onset < end),
                       key=lambda x: (x.onset, x.pitch, x.stem))  # fmt: skip
        name = "+".join(piece.parts[i].instrument for i in combo)
        clips.append(Clip(f"{piece.name}/{name}", 0, dataset, SAMPLE_RATE, n, [stems[i] for i in combo], notes))
    return clips


def build_dataset_set(name: str, home: str | Path, out: str, sizes: tuple[int, ...] | None = None,
                      max_seconds: float = 0.0, log=print) -> dict:  # fmt: skip
    """Read the dataset, write its mixtures as a shard set (split = the dataset's name, one shard per
    piece) and return the manifest. An existing set built from the same folder and protocol is reused."""
    import dataclasses

    import mixscribe
    from mixscribe.fsio import ensure_writable_dir, resolve
    from mixscribe.schema import SCHEMA_VERSION, clips_to_table
    from mixscribe.shards import CLIPS_DIR, previous_manifest, write_manifest
    from mixscribe.synth.pipeline import ClipsFolder, write_shard

    spec = dataset_spec(name)
    protocol = spec.protocol if sizes is None else dataclasses.replace(spec.protocol, sizes=tuple(sizes))
    config = {"dataset": name, "data_home": str(Path(home).expanduser().resolve()), "sizes": list(protocol.sizes),
              "whole_pieces": protocol.whole, "max_seconds": max_seconds}  # fmt: skip
    fs, root = resolve(out)
    previous = previous_manifest(fs, root)
    if previous and previous.get("kind") == "dataset" and previous.get("config") == config:
        log(f"  {name}: {previous['num_clips']} mixtures already in {out}")
        return previous
    if previous:
        raise DatasetError(f"{out}: holds another shard set ({previous.get('kind') or 'synth'} "
                           f"{(previous.get('config') or {}).get('dataset', '')}); choose another --data")  # fmt: skip
    pieces = read_dataset(name, home)  # every file checked before anything is written
    ClipsFolder.survey(fs, root, previous).check(overwrite=False)  # nothing of the user's replaced
    ensure_writable_dir(fs, root)
    fs.create_dir(f"{root}/{CLIPS_DIR}", recursive=True)
    files = []
    for i, piece in enumerate(pieces):
        clips = piece_clips(piece, name, protocol, max_seconds)
        if not clips:
            continue
        info = write_shard(fs, root, i, clips_to_table(clips))
        files.append(info)
        log(f"  {name} {piece.name}: {len(clips)} mixtures")
    count = sum(len(f["ids"]) for f in files)
    if not count:
        raise DatasetError(f"{home}: no {name} piece has a mixture of {list(protocol.sizes)} parts")
    manifest = {"schema_version": SCHEMA_VERSION, "kind": "dataset", "config": config,
                "package_version": mixscribe.__version__, "source": spec.source, "licence": spec.licence,
                "num_clips": count, "rows_per_split": {name: count}, "files": files}  # fmt: skip
    write_manifest(fs, root, manifest)
    return manifest

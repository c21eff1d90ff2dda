"""The one record schema that flows synth -> shards -> train -> evaluate -> transcribe.

A shard row is one clip: its stems (int16 PCM, rendered separately so training can remix them)
and its notes. Bump SCHEMA_VERSION whenever a field changes meaning; readers refuse other versions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 3  # 2: stems carry instrument_params (procedural instruments); 3: and their timbre
# Versions this code reads: a version-2 stem has no timbre field and reads as its preset as it is ("").
READABLE_VERSIONS = (2, 3)
SAMPLE_RATE = 22050
HOP = 256
MIDI_MIN, MIDI_MAX = 24, 107  # the model's 84 pitch rows
N_PITCH = MIDI_MAX - MIDI_MIN + 1


# The 16 General MIDI instrument families (8 programs each): a stem's `gm_family`, the held-out families
# of a split, the per-pair tables. Here, not in synth/, because configs and every stage name them.
GM_FAMILIES = (
    "piano", "chromatic-percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth-lead", "synth-pad", "synth-effects", "ethnic", "percussive", "sound-effects",
)  # fmt: skip


def gm_family(program: int) -> str:
    return GM_FAMILIES[program // 8]


def frame_to_seconds(frame: int | float) -> float:
    return float(frame) * HOP / SAMPLE_RATE


def seconds_to_frame(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE / HOP))


@dataclass(frozen=True, slots=True)
class Note:
    """One note. `stem` is the source stem in a shard, or the output track in a transcription."""

    onset: float  # seconds
    offset: float  # seconds
    pitch: int  # MIDI
    velocity: int  # 1..127
    stem: int = 0


@dataclass(frozen=True, slots=True)
class Stem:
    """One instrument of a clip, rendered on its own."""

    pcm: np.ndarray  # int16, mono, SAMPLE_RATE
    soundfont: str  # catalog id
    sf_family: str  # catalog family (shared samples)
    bank: int
    preset: int
    preset_name: str
    gm_program: int
    gm_family: str
    gain: float  # loudness-normalisation gain that was applied before int16 quantisation
    instrument_params: str = ""  # JSON of a generated instrument's parameters (re-renderable); "" for SoundFonts
    timbre: str = ""  # JSON of the offsets its SoundFont preset was rendered with (synth.timbre); "": none

    def audio(self) -> np.ndarray:
        return self.pcm.astype(np.float32) / 32768.0


@dataclass(frozen=True, slots=True)
class DroppedStem:
    """An instrument draw that rendered silent or out of bounds and was replaced; kept for the manifest."""

    soundfont: str
    bank: int
    preset: int
    reason: str


@dataclass(frozen=True)
class Clip:
    id: str
    seed: int
    split: str
    sample_rate: int
    num_samples: int
    stems: list[Stem]
    notes: list[Note]
    dropped_stems: list[DroppedStem] = field(default_factory=list)

    def mix(self, gains: np.ndarray | None = None) -> np.ndarray:
        """Weighted mean of the stems, sum(w_i x_i) / sum(w_i) as in the paper: it never clips."""
        if not self.stems:
            return np.zeros(self.num_samples, np.float32)
        w = np.ones(len(self.stems), np.float32) if gains is None else np.asarray(gains, np.float32)
        stacked = np.stack([s.audio() for s in self.stems])
        return (w[:, None] * stacked).sum(0) / w.sum()


NOTE_TYPE = pa.struct(
    [
        ("onset", pa.float64()),
        ("offset", pa.float64()),
        ("pitch", pa.int16()),
        ("velocity", pa.int16()),
        ("stem", pa.int16()),
    ]
)
STEM_TYPE = pa.struct(
    [
        ("pcm", pa.large_binary()),  # little-endian int16
        ("soundfont", pa.string()),
        ("sf_family", pa.string()),
        ("bank", pa.int16()),
        ("preset", pa.int16()),
        ("preset_name", pa.string()),
        ("gm_program", pa.int16()),
        ("gm_family", pa.string()),
        ("gain", pa.float32()),
        ("instrument_params", pa.string()),
        ("timbre", pa.string()),
    ]
)
DROPPED_TYPE = pa.struct(
    [("soundfont", pa.string()), ("bank", pa.int16()), ("preset", pa.int16()), ("reason", pa.string())]
)
CLIP_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("seed", pa.int64()),
        ("split", pa.string()),
        ("sample_rate", pa.int32()),
        ("num_samples", pa.int64()),
        ("stems", pa.list_(STEM_TYPE)),
        ("notes", pa.list_(NOTE_TYPE)),
        ("dropped_stems", pa.list_(DROPPED_TYPE)),
    ],
    metadata={b"mixscribe.schema_version": str(SCHEMA_VERSION).encode()},
)


def _stem_row(stem: Stem) -> dict:
    row = {k: getattr(stem, k) for k in STEM_TYPE.names}
    row["pcm"] = np.ascontiguousarray(stem.pcm, dtype="<i2").tobytes()
    return row


def clips_to_table(clips: list[Clip]) -> pa.Table:
    rows = []
    for c in clips:
        rows.append(
            {
                "id": c.id,
                "seed": c.seed,
                "split": c.split,
                "sample_rate": c.sample_rate,
                "num_samples": c.num_samples,
                "stems": [_stem_row(s) for s in c.stems],
                "notes": [asdict(n) for n in c.notes],
                "dropped_stems": [asdict(d) for d in c.dropped_stems],
            }
        )
    return pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)


def clip_from_row(row: dict) -> Clip:
    stems = [
        Stem(**{**s, "pcm": np.frombuffer(s["pcm"], dtype="<i2").copy()}) for s in row["stems"]
    ]
    return Clip(
        id=row["id"],
        seed=row["seed"],
        split=row["split"],
        sample_rate=row["sample_rate"],
        num_samples=row["num_samples"],
        stems=stems,
        notes=[Note(**n) for n in row["notes"]],
        dropped_stems=[DroppedStem(**d) for d in (row.get("dropped_stems") or [])],
    )


def table_to_clips(table: pa.Table) -> list[Clip]:
    return [clip_from_row(r) for r in table.to_pylist()]


def readable_versions() -> str:
    return " or ".join(str(v) for v in READABLE_VERSIONS)


def check_schema(schema: pa.Schema, where: str) -> None:
    """Refuse shards of another schema version, naming the file."""
    from mixscribe.errors import ShardError

    meta = schema.metadata or {}
    version = meta.get(b"mixscribe.schema_version")
    if version is None:
        raise ShardError(f"{where}: not a mixscribe shard (no schema version in its metadata)")
    if int(version) not in READABLE_VERSIONS:
        raise ShardError(f"{where}: schema version {int(version)}, this mixscribe reads {readable_versions()}")
    missing = [n for n in CLIP_SCHEMA.names if n not in schema.names]
    if missing:
        raise ShardError(f"{where}: missing fields {missing}")

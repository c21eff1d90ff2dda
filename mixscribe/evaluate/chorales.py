"""Bach chorales as an evaluation set: real four-part writing, rendered part by part with the BACH10
instrumentation from SoundFonts of a held-out family, mixed as BACH10's 2mix/3mix/4mix are built.
Held out the procedural family, the parts are played by four generated sustained instruments (the
family's unseen stream), so every family of a rotation has chorales of its own.

Each chorale (music21's offline corpus) gets a tempo, light timing and velocity humanisation and one
SoundFont of the family per part; its four parts are rendered once, then every 2-, 3- and 4-part
combination becomes one clip (6 + 4 + 1 per chorale). Ground truth is the score as rendered. The set is
written as shards with a manifest (split `chorales`), like training data: versioned and reusable.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mixscribe.errors import MixscribeError
from mixscribe.schema import HOP, SAMPLE_RATE, Clip, Note, Stem, seconds_to_frame

# BACH10: soprano violin, alto clarinet, tenor (tenor) saxophone, bass bassoon; GM programs, 0-based
PARTS = (("violin", 40), ("clarinet", 71), ("saxophone", 66), ("bassoon", 70))
SPLIT = "chorales"


@dataclass(frozen=True)
class ChoraleConfig:
    chorales: int = 10  # the first N chorales of music21's corpus iterator
    sf_family: str = "tim"  # render with the catalog SoundFonts of this family (held out from training)
    tempo_bpm: tuple[float, float] = (60.0, 90.0)  # quarter notes per minute, drawn per chorale
    max_seconds: float = 30.0  # crop each chorale (evaluation cost); 0 keeps it whole
    timing_jitter_ms: float = 12.0  # per-note onset/offset jitter (std), as players are not a grid
    velocity: tuple[int, int] = (64, 100)
    seed: int = 0
    # sf_family "procedural": the parts' instruments come from the first `procedural_pool` instruments
    # of the family's unseen stream under this seed (synth.procedural.seed: the unseen split's own)
    procedural_seed: int = 0
    procedural_pool: int = 64

    def __post_init__(self) -> None:
        from mixscribe.config import check_field

        check_field(self.chorales >= 1, "chorales.chorales", "must be >= 1")
        check_field(self.max_seconds >= 0, "chorales.max_seconds", "must be >= 0")
        check_field(0 <= self.seed < 2**63, "chorales.seed", "must be in [0, 2^63)")
        check_field(self.procedural_pool >= len(PARTS), "chorales.procedural_pool", f"must be >= {len(PARTS)}")


@dataclass(frozen=True)
class PartNote:
    onset: float  # seconds
    offset: float
    pitch: int


def chorale_names(n: int) -> list[str]:
    from music21 import corpus

    names = list(itertools.islice(corpus.chorales.Iterator(returnType="filename"), n))
    if len(names) < n:
        raise MixscribeError(f"chorales: music21's corpus has only {len(names)} chorales, asked for {n}")
    return names


def chorale_parts(name: str, seconds_per_quarter: float) -> list[list[PartNote]]:
    """The four voices (S, A, T, B) as timed notes; ties merged, rests skipped."""
    from music21 import corpus

    score = corpus.parse(name)
    if len(score.parts) < 4:
        raise MixscribeError(f"chorales: {name} has {len(score.parts)} parts, not 4")
    parts = []
    for part in list(score.parts)[:4]:
        notes = []
        for n in part.stripTies().flatten().notes:
            for p in getattr(n, "pitches", [n.pitch])[:1]:  # a chord in a voice: keep its first pitch
                start = float(n.offset) * seconds_per_quarter
                notes.append(PartNote(start, start + float(n.quarterLength) * seconds_per_quarter, int(p.midi)))
        parts.append(notes)
    return parts


def _performance(notes: list[PartNote], cfg: ChoraleConfig, rng: np.random.Generator, num_frames: int):
    """A Performance for the renderer: labels on the frame grid, sounding times jittered."""
    from mixscribe.synth.generator import Performance, PerformedNote

    jitter = cfg.timing_jitter_ms / 1000.0
    out = []
    for n in notes:
        on, off = seconds_to_frame(n.onset), seconds_to_frame(n.offset)
        if on >= num_frames or off - on < 1:
            continue
        off = min(off, num_frames)
        on_t = max(0.0, n.onset + rng.normal(0, jitter))
        off_t = max(on_t + 0.02, min(n.offset, off * HOP / SAMPLE_RATE) + rng.normal(0, jitter) - 0.01)
        vel = int(rng.integers(cfg.velocity[0], cfg.velocity[1] + 1))
        out.append(PerformedNote(n.pitch, on, off, vel, 0, float(on_t), float(off_t)))
    return Performance(out, [], num_frames)


@dataclass(frozen=True)
class Voice:
    """Who plays one part: what the renderer needs and what the stem records."""

    soundfont: str
    family: str
    bank: int
    preset: int
    preset_name: str
    gm_program: int
    instrument_params: str = ""


class SoundFontVoices:
    """Each part on its BACH10 program, from a SoundFont of the family drawn per part."""

    def __init__(self, renderer, entries) -> None:
        self.renderer, self.entries = renderer, entries

    def pick(self, part: int, rng: np.random.Generator, taken: list[Voice]) -> Voice:
        label, program = PARTS[part]
        entry = self.entries[int(rng.integers(len(self.entries)))]
        name = self.renderer.presets(entry.id).get((0, program), label)
        return Voice(entry.id, entry.family, 0, program, name, program)


class ProceduralVoices:
    """Each part on a generated sustained instrument (BACH10's are all bowed or blown), four distinct
    per chorale, from the family's unseen stream."""

    def __init__(self, renderer, cfg: ChoraleConfig) -> None:
        from mixscribe.synth.procedural import UNSEEN_BANK

        self.renderer, self.bank = renderer, UNSEEN_BANK
        stream = renderer.streams[UNSEEN_BANK]
        self.sustained = [i for i, ins in enumerate(stream) if ins.kind == "sustained"]
        if len(self.sustained) < len(PARTS):
            raise MixscribeError(f"chorales: only {len(self.sustained)} sustained instruments among the first "
                                 f"{cfg.procedural_pool} generated ones; raise chorales.procedural_pool")  # fmt: skip

    def pick(self, part: int, rng: np.random.Generator, taken: list[Voice]) -> Voice:
        from mixscribe.config import PROCEDURAL_FAMILY
        from mixscribe.synth.procedural import pseudo_program

        free = [i for i in self.sustained if i not in {v.preset for v in taken}]
        index = free[int(rng.integers(len(free)))]
        ins = self.renderer.instrument(self.bank, index)
        return Voice(PROCEDURAL_FAMILY, PROCEDURAL_FAMILY, self.bank, index, ins.id, pseudo_program(ins.id), ins.to_json())


def render_chorale(name: str, index: int, cfg: ChoraleConfig, renderer, voices) -> list[Clip]:
    """Every 2-, 3- and 4-part combination of one chorale, each a clip."""
    from mixscribe.schema import gm_family
    from mixscribe.synth.render import Instrument

    rng = np.random.default_rng([cfg.seed, index])
    bpm = float(rng.uniform(*cfg.tempo_bpm))
    parts = chorale_parts(name, 60.0 / bpm)
    end = max(n.offset for p in parts for n in p)
    if cfg.max_seconds:
        end = min(end, cfg.max_seconds)
    num_frames = seconds_to_frame(end) + 8
    stems, notes, taken = [], [], []
    for i, ((label, _), part) in enumerate(zip(PARTS, parts)):
        voice = voices.pick(i, rng, taken)
        taken.append(voice)
        perf = _performance(part, cfg, rng, num_frames)
        out = renderer.render(Instrument(voice.soundfont, voice.bank, voice.preset), perf, num_frames * HOP)
        if out.problem:
            raise MixscribeError(f"chorales: {name} {label} on {voice.preset_name} ({voice.soundfont}) rendered {out.problem}")
        stems.append(Stem(np.clip(np.rint(out.audio * 32767), -32768, 32767).astype(np.int16), voice.soundfont,
                          voice.family, voice.bank, voice.preset, voice.preset_name, voice.gm_program,
                          gm_family(voice.gm_program), out.gain, voice.instrument_params))  # fmt: skip
        notes.append([Note(n.onset * HOP / SAMPLE_RATE, n.offset * HOP / SAMPLE_RATE, n.pitch, n.velocity) for n in perf.notes])
    clips = []
    short = name.split("/")[-1]
    for k in (2, 3, 4):
        for combo in itertools.combinations(range(4), k):
            tag = "".join("SATB"[i] for i in combo)
            clip_notes = sorted((Note(n.onset, n.offset, n.pitch, n.velocity, j) for j, i in enumerate(combo) for n in notes[i]),
                                key=lambda n: (n.onset, n.pitch, n.stem))  # fmt: skip
            clips.append(Clip(f"{short}-{tag}", int(rng.integers(2**31)), SPLIT, SAMPLE_RATE, num_frames * HOP,
                              [stems[i] for i in combo], clip_notes))  # fmt: skip
    return clips


def build_chorale_set(cfg: ChoraleConfig, out: str, log=print) -> dict:
    """Render the set and write it as a shard set (one shard per chorale); returns the manifest."""
    import mixscribe
    from mixscribe.config import to_dict
    from mixscribe.fsio import ensure_writable_dir, resolve
    from mixscribe.schema import SCHEMA_VERSION, clips_to_table
    from mixscribe.shards import CLIPS_DIR, previous_manifest, write_manifest
    from mixscribe.synth import catalog
    from mixscribe.synth.pipeline import ClipsFolder, write_shard
    from mixscribe.synth.render import FluidSynthRenderer, fluidsynth_version

    from mixscribe.config import PROCEDURAL_FAMILY, ProceduralConfig, RenderConfig
    from mixscribe.synth.procedural import ProceduralRenderer

    procedural = cfg.sf_family == PROCEDURAL_FAMILY
    entries = [] if procedural else [e for e in catalog.select(()) if e.family == cfg.sf_family]
    if not procedural and not entries:
        raise MixscribeError(f"chorales: no installed catalog SoundFont of family {cfg.sf_family!r}")
    if procedural:
        renderer = ProceduralRenderer(RenderConfig(), ProceduralConfig(unseen_instruments=cfg.procedural_pool,
                                                                       seed=cfg.procedural_seed))  # fmt: skip
        voices = ProceduralVoices(renderer, cfg)
    else:
        renderer = FluidSynthRenderer(RenderConfig(), entries)
        voices = SoundFontVoices(renderer, entries)
    fs, root = resolve(out)
    ClipsFolder.survey(fs, root, previous_manifest(fs, root)).check(overwrite=False)  # nothing of the user's replaced
    ensure_writable_dir(fs, root)
    fs.create_dir(f"{root}/{CLIPS_DIR}", recursive=True)
    files, generated = [], {}
    for i, name in enumerate(chorale_names(cfg.chorales)):
        renderer.restart()  # a fresh synth per chorale: output independent of what came before
        clips = render_chorale(name, i, cfg, renderer, voices)
        generated |= {s.preset_name: s.instrument_params for c in clips for s in c.stems if s.instrument_params}
        info = write_shard(fs, root, i, clips_to_table(clips))
        files.append(info)
        log(f"  {name}: {len(clips)} mixtures")
    manifest = {
        "schema_version": SCHEMA_VERSION, "kind": "chorales", "config": to_dict(cfg),
        "package_version": mixscribe.__version__, "fluidsynth_version": fluidsynth_version(),
        "soundfonts": {e.id: {"sha256": e.sha256, "family": e.family} for e in entries},
        "procedural_instruments": dict(sorted(generated.items())),
        "num_clips": sum(len(f["ids"]) for f in files), "rows_per_split": {SPLIT: sum(len(f["ids"]) for f in files)},
        "files": files,
    }  # fmt: skip
    write_manifest(fs, root, manifest)
    return manifest

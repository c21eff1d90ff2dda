"""From (config, clip index) to a rendered Clip: split, instruments, notes, stems. Deterministic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixscribe.config import PROCEDURAL_FAMILY, SPLITS, SynthConfig
from mixscribe.errors import ConfigError
from mixscribe.schema import HOP, SAMPLE_RATE, Clip, DroppedStem, Note, Stem, frame_to_seconds
from mixscribe.synth.catalog import SoundFontEntry
from mixscribe.synth.generator import generate_performance
from mixscribe.synth.instruments import PITCHED_PROGRAMS, gm_family, program_range
from mixscribe.synth.render import Instrument, Renderer
from mixscribe.synth.timbre import Timbre, draw_timbre


@dataclass(frozen=True)
class Candidate:
    instrument: Instrument
    sf_family: str
    preset_name: str
    gm_program: int

    @property
    def gm_family(self) -> str:
        return gm_family(self.gm_program)


def clip_rng(base_seed: int, index: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([base_seed, index, purpose]))


def clip_seed(base_seed: int, index: int) -> int:
    return int(np.random.SeedSequence([base_seed, index]).generate_state(1, np.uint64)[0] >> 1)


def clip_id(index: int) -> str:
    return f"clip-{index:08d}"


def assign_split(cfg: SynthConfig, index: int) -> str:
    names = [s for s in SPLITS if cfg.splits.fractions.get(s, 0) > 0]
    p = np.array([cfg.splits.fractions[s] for s in names], float)
    return names[int(clip_rng(cfg.seed, index, 0).choice(len(names), p=p / p.sum()))]


def build_pools(
    cfg: SynthConfig, entries: list[SoundFontEntry], renderer: Renderer
) -> dict[str, list[Candidate]]:
    """Instruments each split may draw. Held-out SoundFont family and GM families never reach train."""
    programs = cfg.programs or PITCHED_PROGRAMS
    unpitched = [p for p in programs if p not in PITCHED_PROGRAMS]
    if unpitched:
        raise ConfigError(f"config field synth.programs: GM program(s) {unpitched} have no definite pitch")
    held_sf, held_gm = cfg.splits.holdout_sf_family, set(cfg.splits.holdout_gm_families)
    pools: dict[str, list[Candidate]] = {s: [] for s in SPLITS}

    def place(cand: Candidate, unseen_sf: bool) -> None:
        unseen_gm = cand.gm_family in held_gm
        if unseen_sf and not unseen_gm:
            pools["unseen-soundfont"].append(cand)
        elif unseen_gm and not unseen_sf:
            pools["unseen-family"].append(cand)
        elif not unseen_sf and not unseen_gm:
            pools["train"].append(cand)
            pools["valid"].append(cand)
            pools["same-register"].append(cand)

    for entry in entries:
        table = renderer.presets(entry.id)
        for prog in programs:
            name = table.get((0, prog))
            if name is not None:
                place(Candidate(Instrument(entry.id, 0, prog), entry.family, name, prog), entry.family == held_sf)
    if cfg.procedural.enabled:
        from mixscribe.synth.procedural import UNSEEN_BANK, pseudo_program

        # Generated instruments of the unseen stream are held out like a held-out SoundFont family.
        for (bank, index), name in sorted(renderer.presets(PROCEDURAL_FAMILY).items()):
            cand = Candidate(Instrument(PROCEDURAL_FAMILY, bank, index), PROCEDURAL_FAMILY, name, pseudo_program(name))
            if not cfg.programs or cand.gm_program in cfg.programs:
                place(cand, held_sf == PROCEDURAL_FAMILY or bank == UNSEEN_BANK)
    for split, frac in cfg.splits.fractions.items():
        if frac > 0 and not pools[split]:
            raise ConfigError(
                f"config field synth.splits.fractions.{split}: no SoundFont preset fits this split "
                f"(soundfonts {[e.id for e in entries]}, held-out family {held_sf!r}, "
                f"held-out GM families {sorted(held_gm)})"
            )
    return pools


class ClipMaker:
    """Renders clips for one process: holds the renderer, the SoundFonts and the instrument pools."""

    def __init__(self, cfg: SynthConfig, entries: list[SoundFontEntry], renderer: Renderer):
        self.cfg = cfg
        self.renderer = renderer
        self.pools = build_pools(cfg, entries, renderer)

    def _draw(self, rng: np.random.Generator, pool: list[Candidate], taken: list[Candidate],
              tried: set[Candidate], window: tuple[int, int] | None = None, ranges: bool = True) -> Candidate | None:  # fmt: skip
        used_programs = {c.gm_program for c in taken}
        used_families = {c.gm_family for c in taken}
        options = [
            c
            for c in pool
            if c not in tried
            and c.gm_program not in used_programs
            and not (self.cfg.distinct_gm_family and c.gm_family in used_families)
            and (window is None or self._fits(c, window, ranges))
        ]
        share = self.cfg.procedural.share
        if share > 0 and self.cfg.procedural.enabled:
            generated = [c for c in options if c.sf_family == PROCEDURAL_FAMILY]
            sampled = [c for c in options if c.sf_family != PROCEDURAL_FAMILY]
            if generated and sampled:
                options = generated if rng.random() < share else sampled
        return options[int(rng.integers(len(options)))] if options else None

    def _fits(self, cand: Candidate, window: tuple[int, int], ranges: bool) -> bool:
        """Whether the program can play at least half of the shared window."""
        low, high = program_range(cand.gm_program, ranges)
        return min(high, window[1]) - max(low, window[0]) >= (window[1] - window[0]) // 2

    def _keeps_program_ranges(self, index: int, split: str) -> bool:
        """Whether this clip's stems play within their programs' ranges, or (a share of training clips,
        generator.whole_range_prob) anywhere. Drawn from a stream of its own: other clips keep their draws."""
        gen = self.cfg.generator
        if not gen.use_program_ranges:
            return False
        if split != "train" or gen.whole_range_prob <= 0:
            return True
        return not clip_rng(self.cfg.seed, index, 3).random() < gen.whole_range_prob

    def _shared_window(self, index: int, split: str, first: Candidate, ranges: bool) -> tuple[int, int] | None:
        """The clip's shared pitch window, placed inside the first stem's range, or None (each stem in
        its own range). Drawn from a stream of its own: clips without one keep their old draws."""
        gen = self.cfg.generator
        rng = clip_rng(self.cfg.seed, index, 2)
        if split != "same-register" and not rng.random() < gen.shared_register_prob:
            return None
        low, high = program_range(first.gm_program, ranges)
        width = min(gen.register_window, high - low)
        lo = int(rng.integers(low, high - width + 1))
        return lo, lo + width

    def _timbre(self, index: int, split: str, cand: Candidate, draw: int) -> Timbre | None:
        """The stem's timbre offsets, or None (its preset as it is). Only SoundFont presets have
        generators to move; drawn from a stream of its own, so other stems keep their draws."""
        cfg = self.cfg.timbre
        if cfg.prob <= 0 or split not in cfg.splits or cand.sf_family == PROCEDURAL_FAMILY:
            return None
        rng = clip_rng(self.cfg.seed, index, 300 + draw)
        return draw_timbre(cfg, rng) if rng.random() < cfg.prob else None

    def make(self, index: int) -> Clip:
        cfg, gen = self.cfg, self.cfg.generator
        split = assign_split(cfg, index)
        pick = clip_rng(cfg.seed, index, 1)
        window: tuple[int, int] | None = None
        n_stems = int(pick.integers(cfg.stems_min, cfg.stems_max + 1))
        num_samples = gen.clip_frames * HOP
        stems: list[Stem] = []
        notes: list[Note] = []
        dropped: list[DroppedStem] = []
        taken: list[Candidate] = []
        tried: set[Candidate] = set()
        ranges = self._keeps_program_ranges(index, split)
        for k in range(n_stems):
            for attempt in range(cfg.max_draw_attempts):
                cand = self._draw(pick, self.pools[split], taken, tried, window, ranges)
                if cand is None:
                    break
                tried.add(cand)
                low, high = program_range(cand.gm_program, ranges)
                if not stems:
                    window = self._shared_window(index, split, cand, ranges)
                if window is not None:
                    low, high = max(low, window[0]), min(high, window[1])
                perf = generate_performance(gen, low, high, clip_rng(cfg.seed, index, 100 + 16 * k + attempt))
                if not perf.notes:
                    continue
                timbre = self._timbre(index, split, cand, 16 * k + attempt)
                out = self.renderer.render(cand.instrument, perf, num_samples, timbre)
                if out.problem:
                    ins = cand.instrument
                    dropped.append(DroppedStem(ins.soundfont, ins.bank, ins.preset, out.problem))
                    continue
                stem_index = len(stems)
                taken.append(cand)
                stems.append(
                    Stem(
                        pcm=np.clip(np.rint(out.audio * 32767), -32768, 32767).astype(np.int16),
                        soundfont=cand.instrument.soundfont,
                        sf_family=cand.sf_family,
                        bank=cand.instrument.bank,
                        preset=cand.instrument.preset,
                        preset_name=cand.preset_name,
                        gm_program=cand.gm_program,
                        gm_family=cand.gm_family,
                        gain=out.gain,
                        instrument_params=self.renderer.params(cand.instrument),
                        timbre=timbre.to_json() if timbre else "",
                    )
                )
                notes.extend(
                    Note(frame_to_seconds(n.onset), frame_to_seconds(n.offset), n.pitch, n.velocity, stem_index)
                    for n in perf.notes
                )
                break
        notes.sort(key=lambda n: (n.onset, n.pitch, n.stem))
        return Clip(clip_id(index), clip_seed(cfg.seed, index), split, SAMPLE_RATE, num_samples, stems, notes,
                    dropped)  # fmt: skip

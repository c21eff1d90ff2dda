"""What the catalog's SoundFonts really contain: preset tables, silent presets, shared samples.

`overlap` measures, preset by preset, whether two SoundFonts render the same samples: the same GM
program is played at three pitches in each, and the log-magnitude spectra of the sustained part are
correlated. Identical samples correlate >= 0.98 (measured: FluidR3 vs FluidR3Mono, TimGM6mb vs
csound); different sample sets of one instrument stay below ~0.96. Users of generalization studies
need this to trust that a held-out family really is unheard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixscribe.config import RenderConfig
from mixscribe.synth.catalog import SoundFontEntry
from mixscribe.synth.generator import Performance, PerformedNote
from mixscribe.synth.instruments import PITCHED_PROGRAMS, PROGRAM_RANGES
from mixscribe.synth.render import FluidSynthRenderer, Instrument

PROBE_FRAMES = 60
SIMILAR = 0.98


def _probe(pitch: int) -> Performance:
    return Performance([PerformedNote(pitch, 0, 40, 100, 0, 0.0, 0.45)], [], PROBE_FRAMES)


@dataclass(frozen=True)
class PresetRow:
    soundfont: str
    bank: int
    program: int
    name: str
    silent: bool


def preset_table(entries: list[SoundFontEntry], cfg: RenderConfig | None = None) -> list[PresetRow]:
    """Every (bank, program, name) of every SoundFont, with a flag for presets that render silence."""
    cfg = cfg or RenderConfig()
    renderer = FluidSynthRenderer(cfg, entries)
    rows = []
    for e in entries:
        for (bank, prog), name in sorted(renderer.presets(e.id).items()):
            lo, hi = PROGRAM_RANGES.get(prog, (48, 72)) if bank == 0 else (48, 72)
            audio = renderer.render_raw(Instrument(e.id, bank, prog), _probe((lo + hi) // 2), PROBE_FRAMES * 256)
            rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
            rows.append(PresetRow(e.id, bank, prog, name, rms < cfg.silence_rms))
    renderer.close()
    return rows


def _spectra(renderer: FluidSynthRenderer, sf: str, program: int) -> np.ndarray | None:
    lo, hi = PROGRAM_RANGES[program]
    feats = []
    for pitch in (lo + (hi - lo) // 4, (lo + hi) // 2, hi - (hi - lo) // 4):
        x = renderer.render_raw(Instrument(sf, 0, program), _probe(pitch), PROBE_FRAMES * 256)
        seg = x[2048 : 2048 + 4096] * np.hanning(4096)
        mag = np.abs(np.fft.rfft(seg))[:1500]  # up to ~8 kHz
        if mag.max() <= 0:
            return None
        feats.append(np.log(mag + 1e-4 * mag.max()))
    return np.concatenate(feats)


@dataclass(frozen=True)
class OverlapReport:
    ids: list[str]
    families: list[str]
    shared: np.ndarray  # [n, n] presets whose spectra match
    compared: np.ndarray  # [n, n] presets present in both
    min_shared: int

    def disagreements(self) -> list[str]:
        """Pairs whose measured sharing contradicts the declared families."""
        out = []
        n = len(self.ids)
        for i in range(n):
            for j in range(i + 1, n):
                same = self.families[i] == self.families[j]
                shares = self.shared[i, j] >= self.min_shared
                if same and not shares:
                    out.append(f"{self.ids[i]} and {self.ids[j]} are both family {self.families[i]!r} "
                               f"but share only {self.shared[i, j]} of {self.compared[i, j]} presets")  # fmt: skip
                elif shares and not same:
                    out.append(f"{self.ids[i]} ({self.families[i]}) and {self.ids[j]} ({self.families[j]}) "
                               f"share samples in {self.shared[i, j]} of {self.compared[i, j]} presets")  # fmt: skip
        return out

    def format(self) -> str:
        width = max(len(i) for i in self.ids) + 2
        head = " " * width + "".join(f"{i[:12]:>14s}" for i in self.ids)
        lines = [head]
        for i, a in enumerate(self.ids):
            cells = "".join(
                f"{'-':>14s}" if i == j else f"{f'{self.shared[i, j]}/{self.compared[i, j]}':>14s}"
                for j in range(len(self.ids))
            )
            lines.append(f"{a:<{width}s}{cells}   [{self.families[i]}]")
        return "\n".join(lines)


def overlap(entries: list[SoundFontEntry], programs: tuple[int, ...] = (), min_shared: int = 3,
            threshold: float = SIMILAR) -> OverlapReport:  # fmt: skip
    renderer = FluidSynthRenderer(RenderConfig(), entries)
    programs = programs or PITCHED_PROGRAMS
    feats: dict[str, dict[int, np.ndarray]] = {}
    for e in entries:
        table = renderer.presets(e.id)
        feats[e.id] = {}
        for p in programs:
            if (0, p) in table and (f := _spectra(renderer, e.id, p)) is not None:
                feats[e.id][p] = f
    renderer.close()
    n = len(entries)
    shared = np.zeros((n, n), int)
    compared = np.zeros((n, n), int)
    for i, a in enumerate(entries):
        for j, b in enumerate(entries):
            common = sorted(set(feats[a.id]) & set(feats[b.id]))
            compared[i, j] = len(common)
            shared[i, j] = sum(np.corrcoef(feats[a.id][p], feats[b.id][p])[0, 1] >= threshold for p in common)
    return OverlapReport([e.id for e in entries], [e.family for e in entries], shared, compared, min_shared)

"""More timbres from the samples the catalog already has.

A SoundFont preset is a fixed recipe over its samples: filter, envelopes, LFOs. FluidSynth lets a
channel add an offset to any of the preset's generators (SoundFont 2.04 §8.1.3), so one preset can be
heard as many related instruments without a new sample: darker or brighter (filter cutoff and
resonance), softer or sharper (attack, release), with more vibrato or tremolo, and with its formants
moved by playing the sample recorded for a neighbouring key, retuned to the written pitch. A model
that meets these variants in training cannot lean on one preset's exact spectrum to tell
instruments apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from mixscribe.config import TimbreConfig

# SoundFont 2.04 generator numbers (FluidSynth's fluid_gen_type)
GENERATORS = {
    "filter_cents": 8,  # initialFilterFc
    "filter_q_cb": 9,  # initialFilterQ
    "vibrato_cents": 6,  # vibLfoToPitch
    "tremolo_cb": 13,  # modLfoToVolume
    "attack_timecents": 34,  # attackVolEnv
    "release_timecents": 38,  # releaseVolEnv
}
COARSE_TUNE = 51  # coarseTune, semitones


@dataclass(frozen=True)
class Timbre:
    """One stem's offsets to its preset's generators; all zero is the preset as it is."""

    filter_cents: float = 0.0
    filter_q_cb: float = 0.0
    attack_timecents: float = 0.0
    release_timecents: float = 0.0
    vibrato_cents: float = 0.0
    tremolo_cb: float = 0.0
    formant_semitones: int = 0  # the key whose sample sounds = written pitch + this

    def offsets(self) -> dict[int, float]:
        """Generator number -> offset, the coarse tune cancelling the formant shift's transposition."""
        out = {gen: float(getattr(self, name)) for name, gen in GENERATORS.items()}
        out[COARSE_TUNE] = float(-self.formant_semitones)
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Timbre:
        """The stored form back; "" (a stem rendered as its preset is) gives the neutral Timbre."""
        return cls(**json.loads(text)) if text else cls()


def draw_timbre(cfg: TimbreConfig, rng: np.random.Generator) -> Timbre:
    """Each offset uniform in its configured range, the formant shift a whole number of semitones."""
    values = {f.name: float(rng.uniform(*getattr(cfg, f.name))) for f in fields(Timbre) if f.name in GENERATORS}
    shift = int(rng.integers(-cfg.formant_semitones, cfg.formant_semitones + 1))
    return Timbre(**values, formant_semitones=shift)

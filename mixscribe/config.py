"""Frozen dataclass configs with YAML presets.

A preset is a YAML file with one section per stage (`synth:`, later `model:`, `train:` ...). Every
field is checked: an unknown key or a value of the wrong type is a ConfigError naming the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixscribe.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "presets"


class SelfChecking:
    """A config that checks its fields whenever it is built (directly, from a preset, or by
    dataclasses.replace), so an invalid config never exists and no caller has to remember to check."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class GeneratorConfig(SelfChecking):
    """Random piano-roll rules of paper-spec §8.1-8.2 (Our:Sep column), every number a field."""

    clip_frames: int = 600
    octave_weights: tuple[float, ...] = (1, 3, 5, 5, 5, 3, 2)
    near_prob: float = 0.53
    near_window: int = 9
    duration_mean: float = 32.0
    duration_min: int = 4
    duration_max: int = 100
    onset_mu: float = 0.0
    onset_scale: float = 14.0
    poly_prob: float = 0.18
    chord_prob: float = 0.85
    chord_intervals: tuple[int, ...] = (4, 5, 7, 12)
    max_polyphony: int = 8
    velocity_min: int = 46
    velocity_max: int = 127
    detune_max: int = 1000  # pitch-bend units of +-8192 (2 semitones)
    vibrato_low: float = -30.0
    vibrato_mode: float = 0.0
    vibrato_high: float = 96.0
    vibrato_max_beats: float = 2.0
    tempo_bpm: float = 120.0
    jitter_frames: float = 0.49
    use_program_ranges: bool = True  # the register constraint the paper lacked
    # share of stems played as one monophonic line (no overlaps, no chord chains), as the voices of a
    # chorale or a quartet are; 0 keeps the paper's generator and its draws exactly
    line_prob: float = 0.0
    # Share of clips whose stems all play inside one shared pitch window (each within its own program's
    # range), so their lines cross and register cannot tell them apart; every clip of the same-register
    # split does. 0 keeps every stem in its program's whole range, and the draws as they were.
    shared_register_prob: float = 0.0
    register_window: int = 19  # semitones of the shared window (an octave and a fifth)
    # Share of *training* clips whose stems ignore their programs' ranges and play anywhere in MIDI
    # 24..107, as the paper's generator has every stem do: there pitch tells no stem from another, so a
    # timbre encoder cannot learn register for timbre. Validation and held-out splits keep the ranges
    # real parts have, so every arm is scored on the same music. 0 keeps the draws as they were.
    whole_range_prob: float = 0.0

    def validate(self) -> None:
        check_field(self.clip_frames >= 32, "generator.clip_frames", "must be >= 32")
        check_field(0 <= self.whole_range_prob <= 1, "generator.whole_range_prob", "must be in [0, 1]")
        check_field(0 <= self.shared_register_prob <= 1, "generator.shared_register_prob", "must be in [0, 1]")
        check_field(7 <= self.register_window <= 48, "generator.register_window", "must be in [7, 48] semitones")
        check_field(len(self.octave_weights) == 7, "generator.octave_weights", "needs 7 weights")
        check_field(all(w >= 0 for w in self.octave_weights), "generator.octave_weights", "must be >= 0")
        check_field(0 <= self.near_prob <= 1, "generator.near_prob", "must be in [0, 1]")
        check_field(self.near_window >= 1, "generator.near_window", "must be >= 1")
        check_field(
            1 <= self.duration_min <= self.duration_mean <= self.duration_max,
            "generator.duration_mean",
            "needs duration_min <= duration_mean <= duration_max",
        )
        check_field(self.onset_scale > 0, "generator.onset_scale", "must be > 0")
        check_field(0 <= self.poly_prob < 1, "generator.poly_prob", "must be in [0, 1)")
        check_field(0 <= self.chord_prob <= 1, "generator.chord_prob", "must be in [0, 1]")
        check_field(self.max_polyphony >= 1, "generator.max_polyphony", "must be >= 1")
        check_field(0 <= self.line_prob <= 1, "generator.line_prob", "must be in [0, 1]")
        check_field(
            1 <= self.velocity_min < self.velocity_max <= 127,
            "generator.velocity_min",
            "needs 1 <= velocity_min < velocity_max <= 127",
        )
        check_field(0 <= self.detune_max <= 8191, "generator.detune_max", "must be in [0, 8191]")
        check_field(
            self.vibrato_low <= self.vibrato_mode <= self.vibrato_high,
            "generator.vibrato_mode",
            "needs vibrato_low <= vibrato_mode <= vibrato_high",
        )
        check_field(self.tempo_bpm > 0, "generator.tempo_bpm", "must be > 0")
        check_field(0 <= self.jitter_frames < 0.5, "generator.jitter_frames", "must be in [0, 0.5)")


@dataclass(frozen=True)
class RenderConfig(SelfChecking):
    """FluidSynth settings, all explicit: its defaults (reverb on, gain 0.2, 10 ms notes) bias data."""

    render_rate: int = 44100  # rendered here, then anti-alias resampled to 22,050 Hz
    synth_gain: float = 0.5
    interpolation: int = 7  # FluidSynth: 0 none, 1 linear, 4 fourth-order, 7 seventh-order
    polyphony: int = 1024  # far above any stem's need (<= 8 notes x layers x release tails)
    reverb: bool = False
    chorus: bool = False
    target_rms_dbfs: float = -20.0
    peak_limit: float = 0.98
    silence_rms: float = 1e-5
    note_silence_db: float = -50.0
    max_raw_peak: float = 4.0

    def validate(self) -> None:
        check_field(self.render_rate in (22050, 44100, 88200), "render.render_rate", "must be 22050, 44100 or 88200")
        check_field(0 < self.synth_gain <= 10, "render.synth_gain", "must be in (0, 10]")
        check_field(self.interpolation in (0, 1, 4, 7), "render.interpolation", "must be 0, 1, 4 or 7")
        check_field(16 <= self.polyphony <= 65535, "render.polyphony", "must be in [16, 65535]")
        check_field(0 < self.peak_limit <= 1, "render.peak_limit", "must be in (0, 1]")
        check_field(self.target_rms_dbfs < 0, "render.target_rms_dbfs", "must be < 0")


# same-register: the valid split's instruments (seen in training, new clips), every clip's stems in one
# shared pitch window: what the model separates when register cannot help.
SPLITS = ("train", "valid", "unseen-soundfont", "unseen-family", "same-register")


@dataclass(frozen=True)
class SplitConfig(SelfChecking):
    """Declared held-out sets: studies rotate them by changing one value."""

    fractions: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "valid": 0.1, "unseen-soundfont": 0.05, "unseen-family": 0.05}
    )
    holdout_sf_family: str = "tim"
    holdout_gm_families: tuple[str, ...] = ("brass", "ethnic")

    def validate(self) -> None:
        unknown = set(self.fractions) - set(SPLITS)
        check_field(not unknown, "splits.fractions", f"unknown split(s) {sorted(unknown)}; known: {list(SPLITS)}")
        check_field(all(v >= 0 for v in self.fractions.values()), "splits.fractions", "must be >= 0")
        check_field(sum(self.fractions.values()) > 0, "splits.fractions", "must not all be 0")
        from mixscribe.schema import GM_FAMILIES

        bad = [f for f in self.holdout_gm_families if f not in GM_FAMILIES]
        check_field(not bad, "splits.holdout_gm_families", f"unknown GM famil(ies) {bad}; known: {list(GM_FAMILIES)}")


PROCEDURAL_FAMILY = "procedural"


@dataclass(frozen=True)
class ProceduralConfig(SelfChecking):
    """The generated instrument family (mixscribe/synth/procedural.py): `seen` instruments may reach
    train and valid, `unseen` ones only the unseen-soundfont split; the two are drawn from disjoint
    seeded streams. 0 and 0 turns the family off. Holding the whole family out of training:
    `splits.holdout_sf_family: procedural`."""

    seen_instruments: int = 0
    unseen_instruments: int = 0
    seed: int = 0
    # Chance that a stem is drawn from the family when both it and SoundFont presets fit the draw;
    # 0: no preference (each generated instrument counts like one SoundFont preset).
    share: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.seen_instruments + self.unseen_instruments > 0

    def validate(self) -> None:
        check_field(0 <= self.seen_instruments <= 100_000, "synth.procedural.seen_instruments", "must be in [0, 100000]")
        check_field(0 <= self.unseen_instruments <= 100_000, "synth.procedural.unseen_instruments",
               "must be in [0, 100000]")  # fmt: skip
        check_field(0 <= self.share <= 1, "synth.procedural.share", "must be in [0, 1]")
        check_field(0 <= self.seed < 2**63, "synth.procedural.seed", "must be in [0, 2^63)")


@dataclass(frozen=True)
class TimbreConfig(SelfChecking):
    """More timbres from the catalog's own samples: a share of SoundFont stems rendered with their
    preset's sound moved by offsets drawn per stem (mixscribe/synth/timbre.py): low-pass cutoff and
    resonance, attack and release times, vibrato and tremolo depth, and a formant shift (the sample
    of a key up to `formant_semitones` away, retuned to the written pitch). Every range is (low, high),
    drawn uniformly; what was drawn is stored with the stem. prob 0 renders every stem as before."""

    prob: float = 0.0
    splits: tuple[str, ...] = ("train",)  # the other splits keep the presets' own sound: what they measure
    filter_cents: tuple[float, float] = (-3600.0, 0.0)  # added to the preset's cutoff: down to 1/8 of it
    filter_q_cb: tuple[float, float] = (0.0, 120.0)  # resonance added, centibels
    attack_timecents: tuple[float, float] = (-600.0, 1200.0)  # 1200: twice the preset's attack time
    release_timecents: tuple[float, float] = (-1200.0, 1200.0)
    vibrato_cents: tuple[float, float] = (0.0, 25.0)  # vibrato LFO depth added to the pitch
    tremolo_cb: tuple[float, float] = (0.0, 40.0)  # modulation LFO depth added to the volume
    formant_semitones: int = 2

    def validate(self) -> None:
        check_field(0 <= self.prob <= 1, "synth.timbre.prob", "must be in [0, 1]")
        bad = [s for s in self.splits if s not in SPLITS]
        check_field(not bad, "synth.timbre.splits", f"unknown split(s) {bad}; known: {list(SPLITS)}")
        for name, bound in (("filter_cents", 9600), ("filter_q_cb", 960), ("attack_timecents", 4800),
                            ("release_timecents", 4800), ("vibrato_cents", 1200), ("tremolo_cb", 240)):  # fmt: skip
            low, high = getattr(self, name)
            check_field(-bound <= low <= high <= bound, f"synth.timbre.{name}", f"needs -{bound} <= low <= high <= {bound}")
        check_field(self.filter_cents[1] <= 0, "synth.timbre.filter_cents", "must be <= 0 (a cutoff above the preset's adds nothing)")
        check_field(self.filter_q_cb[0] >= 0 and self.vibrato_cents[0] >= 0 and self.tremolo_cb[0] >= 0, "synth.timbre",
               "filter_q_cb, vibrato_cents and tremolo_cb add depth: they must be >= 0")  # fmt: skip
        check_field(0 <= self.formant_semitones <= 12, "synth.timbre.formant_semitones", "must be in [0, 12]")


@dataclass(frozen=True)
class SynthConfig(SelfChecking):
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    procedural: ProceduralConfig = field(default_factory=ProceduralConfig)
    timbre: TimbreConfig = field(default_factory=TimbreConfig)
    soundfonts: tuple[str, ...] = ()  # catalog ids; empty = every installed catalog entry
    programs: tuple[int, ...] = ()  # GM programs (0-based); empty = every pitched program
    stems_min: int = 1
    stems_max: int = 4
    distinct_gm_family: bool = True
    clips_per_shard: int = 16
    seed: int = 0
    workers: int = 0  # render actors; 0 = one per CPU of the cluster
    actor_cpus: float = 0.75  # < 1 so read/write tasks never starve on a 2-CPU machine
    # Custom Ray resource that marks render nodes (cluster_configs/ give CPU nodes `render: <CPUs>`):
    # when the cluster has it, each render actor takes one unit and `workers: 0` means one actor per
    # unit, so rendering stays off GPU nodes; without it, actors use CPUs anywhere. "" turns it off.
    render_resource: str = "render"
    max_draw_attempts: int = 6

    def validate(self) -> None:  # the nested configs checked themselves when built
        check_field(1 <= self.stems_min <= self.stems_max <= 8, "synth.stems_min", "needs 1 <= stems_min <= stems_max <= 8")
        bad = [p for p in self.programs if not 0 <= p <= 127]
        check_field(not bad, "synth.programs", f"GM programs must be 0..127, got {bad}")
        check_field(self.clips_per_shard >= 1, "synth.clips_per_shard", "must be >= 1")
        check_field(self.workers >= 0, "synth.workers", "must be >= 0")
        check_field(0 < self.actor_cpus <= 16, "synth.actor_cpus", "must be in (0, 16]")
        check_field(self.max_draw_attempts >= 1, "synth.max_draw_attempts", "must be >= 1")
        check_field(0 <= self.seed < 2**63, "synth.seed", "must be in [0, 2^63) (numpy seeds are non-negative)")


@dataclass(frozen=True)
class ModelConfig(SelfChecking):
    """The two-branch model of paper-spec §2-§5, with its ablations as switches (not forks)."""

    sample_rate: int = 22050
    hop: int = 256
    fmin: float = 32.07955284
    n_bins: int = 288
    bins_per_octave: int = 36
    cqt: str = "octave"  # "octave": octave-wise CQT on nnAudio kernels (fast); "nnaudio": CQT1992v2 (spec parity)
    trainable_cqt: bool = False  # the paper's learnable-CQT ablation
    norm: str = "energy"  # "energy" (EnergyNorm), "energy-nolog", "batchnorm" (log -> BatchNorm)
    energy_eps: float = 1.01e-8
    sigma_floor: float = 1e-12  # EnergyNorm's sigma floor: silent input gives no NaN/Inf
    stack_src_bins: int = 288  # 252 reproduces the reference bug (8th octave never read)
    dilated: bool = True  # False: the undilated 39-wide conv ablation
    embed_dim: int = 12
    encoder_out_pad: int = 0  # 1 reproduces the reference's 1/3-semitone offset
    affine_k_min: float = 0.005
    affine_k_max: float = 3.0
    timbre_loss: str = "infonce"  # or "mse" (classic deep clustering)
    tau: float = 0.15
    frame_alpha: float = 0.2
    onset_alpha: float = 0.06
    focal_gamma: float = 1.0
    max_anchors: int = 1024  # InfoNCE anchors sampled per item (memory O(anchors x bins), not O(bins^2))

    def validate(self) -> None:
        check_field(self.cqt in ("octave", "nnaudio"), "model.cqt", "must be 'octave' or 'nnaudio'")
        check_field(self.norm in ("energy", "energy-nolog", "batchnorm"), "model.norm",
               "must be 'energy', 'energy-nolog' or 'batchnorm'")  # fmt: skip
        check_field(self.stack_src_bins in (252, 288), "model.stack_src_bins", "must be 252 or 288")
        check_field(self.timbre_loss in ("infonce", "mse"), "model.timbre_loss", "must be 'infonce' or 'mse'")
        check_field(self.encoder_out_pad in (0, 1), "model.encoder_out_pad", "must be 0 or 1")
        check_field(self.embed_dim >= 2, "model.embed_dim", "must be >= 2")
        check_field(self.tau > 0, "model.tau", "must be > 0")
        from mixscribe.schema import HOP, SAMPLE_RATE

        check_field((self.sample_rate, self.hop) == (SAMPLE_RATE, HOP), "model.sample_rate",
                    f"the shards and the note times are at {SAMPLE_RATE} Hz, hop {HOP}: the model must match")  # fmt: skip
        check_field(self.n_bins == 288 and self.bins_per_octave == 36, "model.n_bins",
               "the network is built for 288 bins at 36 per octave")  # fmt: skip


def check_field(ok: bool, name: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"config field {name}: {why}")


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"config field {name}: expected a mapping, got {type(value).__name__}")
        return from_dict(hint, value, prefix=f"{name}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config field {name}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config field {name}: expected a mapping, got {type(value).__name__}")
        _, vt = typing.get_args(hint)
        return {str(k): _coerce(v, vt, f"{name}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], name)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config field {name}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config field {name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config field {name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config field {name}: expected a string, got {value!r}")
        return value
    return value


T = typing.TypeVar("T")


def from_dict(cls: type[T], data: dict, prefix: str = "", base: T | None = None) -> T:
    """Build a frozen config from a plain mapping; unknown keys are errors, not silently ignored. Fields
    the mapping leaves out keep `base`'s values (else the class defaults); a nested section sets fields
    of its parent's default for it, so a train section's `remix: {crop_frames: 96}` keeps the training
    remix's augmentation on rather than falling back to RemixConfig's own default."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"config field {prefix}{unknown[0]}: unknown (known: {sorted(fields)})")
    kwargs = {}
    for k, v in data.items():
        default = getattr(base, k) if base is not None else _default(fields[k])
        if isinstance(v, dict) and dataclasses.is_dataclass(default) and not isinstance(default, type):
            kwargs[k] = from_dict(type(default), v, prefix=f"{prefix}{k}.", base=default)
        else:
            kwargs[k] = _coerce(v, hints[k], f"{prefix}{k}")
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_named_in_full(str(exc), prefix)) from exc


def _named_in_full(message: str, prefix: str) -> str:
    """A nested config checks itself under its own section's name ('augment.p_reverb'); a preset sets it
    under a longer path ('train.remix.augment.p_reverb'), and that path is what the user has to edit."""
    lead = "config field "
    if not (prefix and message.startswith(lead)):
        return message
    name, sep, why = message[len(lead):].partition(": ")
    head, _, rest = name.partition(".")
    if name.startswith(prefix) or not rest or head != prefix.rstrip(".").rsplit(".", 1)[-1]:
        return message
    return f"{lead}{prefix}{rest}{sep}{why}"


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def merge_sections(base: dict, extra: dict) -> dict:
    """extra over base, mapping by mapping: what a preset's overrides, a study's arms and a stage's
    train settings do to the sections below them."""
    import copy

    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = merge_sections(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def to_dict(cfg: Any) -> dict:
    """Plain, JSON/YAML-serialisable form (tuples become lists)."""
    return json_safe(dataclasses.asdict(cfg))


def json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: the form MLflow params take."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(spec: str) -> dict:
    """A preset name (see available_presets) or a path to a YAML file -> its raw mapping."""
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{spec}.yaml"
        if not path.exists():
            raise ConfigError(f"config {spec!r}: no such preset (known: {available_presets()}) or file")
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def load_section(spec: str | dict, name: str, cls: type[T], **overrides: Any) -> T:
    """One section of a preset (a name, a YAML path, or the preset's mapping already read) as its config,
    with the given overrides (None: not given) over it; every error names `name.field`."""
    data = load_preset(spec) if isinstance(spec, str) else spec
    section = dict(data.get(name) or {})
    section.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, section, prefix=f"{name}.")


def load_synth_config(spec: str | dict, **overrides: Any) -> SynthConfig:
    return load_section(spec, "synth", SynthConfig, **overrides)

"""Training examples from shards: mixtures remixed on the fly from stored stems, and their targets.

One shard set yields far more mixtures than it stores: each example draws K stems (1-4, distribution
configurable) of different GM families from the training split, one common crop, gains U(0.8, 1.2),
mix = sum(w x) / sum(w) (paper-spec §6), and the targets of §5.1 from the stems' notes.
Deterministic in (seed, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mixscribe.train.augment import STEM_TRANSFORM, TRANSFORMS, AugmentConfig, augment, colour_stem

from mixscribe.config import SelfChecking
from mixscribe.schema import HOP, MIDI_MIN, N_PITCH, SAMPLE_RATE, Note

SILENCE, SUSTAIN, ONSET = 0, 1, 2


def note_roll(notes: list[Note], n_frames: int, start_frame: int = 0) -> np.ndarray:
    """Label roll [84, T] of one source: 0 silence, 1 sustain, 2 the first frame of a note (§5.1).
    Frames are relative to start_frame; a note already sounding at the crop start is sustain there."""
    roll = np.zeros((N_PITCH, n_frames), np.uint8)
    for n in notes:
        p = n.pitch - MIDI_MIN
        if not 0 <= p < N_PITCH:
            continue
        on = int(round(n.onset * SAMPLE_RATE / HOP)) - start_frame
        off = int(round(n.offset * SAMPLE_RATE / HOP)) - start_frame
        lo, hi = max(on, 0), min(off, n_frames)
        if hi <= lo:
            continue
        roll[p, lo:hi] = np.maximum(roll[p, lo:hi], SUSTAIN)
        if on >= 0:
            roll[p, on] = ONSET
    return roll


@dataclass(frozen=True)
class Targets:
    frame: np.ndarray  # [84, T] float32, 1 where any source sounds
    onset: np.ndarray  # [84, T] float32, 1 at note starts
    membership: np.ndarray  # [K, 84, T] float32, per-source activity (the InfoNCE labels)


def crop_notes(notes: list[Note], start_frame: int, n_frames: int, stem: int) -> list[Note]:
    """The notes that sound inside a crop, in seconds from its start (a note already sounding begins at
    0, one running past the end ends there), as source `stem`; notes shorter than a frame there dropped."""
    frame_s = HOP / SAMPLE_RATE
    t0, t1 = start_frame * frame_s, (start_frame + n_frames) * frame_s
    out = []
    for n in notes:
        on, off = max(n.onset, t0) - t0, min(n.offset, t1) - t0
        if off - on >= frame_s:
            out.append(Note(on, off, n.pitch, n.velocity, stem))
    return out


def targets_from_rolls(rolls: np.ndarray) -> Targets:
    """rolls [K, 84, T] -> the mixture's AMT targets (element-wise max) and per-source labels."""
    mix = rolls.max(axis=0)
    return Targets(
        frame=(mix >= SUSTAIN).astype(np.float32),
        onset=(mix == ONSET).astype(np.float32),
        membership=(rolls > 0).astype(np.float32),
    )


@dataclass(frozen=True)
class StemRef:
    clip: int  # row in the table of clips
    stem: int
    gm_family: str
    gm_program: int = -1
    pitch: float = float("nan")  # median MIDI pitch of the stem's notes: its register


@dataclass(frozen=True)
class Example:
    audio: np.ndarray  # [crop_frames * HOP] float32
    targets: Targets
    stems: tuple[StemRef, ...]
    gains: np.ndarray
    augmentation: dict = field(default_factory=dict)  # what augment() drew, for logging
    # The notes inside the crop (seconds from its start; a note sounding at the start begins at 0), stem =
    # the source's index: what the example's transcription is scored against (train.curve).
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class RemixConfig(SelfChecking):
    """How mixtures are drawn from stored stems: the crop, how many stems, which stems go together,
    their gains, the realism transforms and the noise. The train section's `remix:` is one of these (the
    training mixtures); validation mixtures keep the paper's rule (`for_validation`)."""

    crop_frames: int = 256
    k_weights: tuple[float, ...] = (0.2, 0.4, 0.25, 0.15)  # P(K = 1..4)
    gain_low: float = 0.8
    gain_high: float = 1.2
    noise_std: float = 5e-4  # additive Gaussian noise, std = noise_std * U(0, 1) per example (paper)
    # Chance that a mixture's stems share one GM family (distinct programs: violin + viola + cello,
    # clarinet + sax + bassoon); otherwise every stem is of another family. 0: never (the paper's rule).
    same_family_prob: float = 0.0
    # Chance that a mixture's stems (of different families) all sit in one register: each stem's median
    # pitch within register_semitones of the first's, so pitch alone cannot tell them apart. 0: never.
    register_match_prob: float = 0.0
    register_semitones: float = 6.0
    augment: AugmentConfig = AugmentConfig(enabled=False)  # realism transforms, before the noise

    def for_validation(self) -> RemixConfig:
        """Fixed validation mixtures: this crop and these K weights, no augmentation, the paper's rule
        for everything else, so validation losses compare across remix settings."""
        return RemixConfig(crop_frames=self.crop_frames, k_weights=self.k_weights)

    def validate(self) -> None:
        from mixscribe.config import check_field

        prefix = "train.remix."  # where a preset sets it
        check_field(self.crop_frames >= 16, f"{prefix}crop_frames", "must be >= 16")
        check_field(len(self.k_weights) >= 1 and min(self.k_weights) >= 0 and sum(self.k_weights) > 0,
                    f"{prefix}k_weights", "needs non-negative weights for K = 1, 2, ...")  # fmt: skip
        check_field(0 < self.gain_low <= self.gain_high, f"{prefix}gain_low", "needs 0 < gain_low <= gain_high")
        check_field(self.noise_std >= 0, f"{prefix}noise_std", "must be >= 0")
        check_field(0 <= self.same_family_prob <= 1, f"{prefix}same_family_prob", "must be in [0, 1]")
        check_field(0 <= self.register_match_prob <= 1, f"{prefix}register_match_prob", "must be in [0, 1]")
        check_field(self.register_semitones >= 0, f"{prefix}register_semitones", "must be >= 0")


def _median_pitch(notes: list[Note], stem: int) -> float:
    pitches = [n.pitch for n in notes if n.stem == stem]
    return float(np.median(pitches)) if pitches else float("nan")


def load_split(shards: str, split: str) -> list:
    """Every clip of one split of a finished shard set, checked before any training starts: the
    manifest's schema version, every listed file present and of this schema (errors name the file)."""
    from mixscribe.schema import table_to_clips
    from mixscribe.shards import ShardSet

    shard_set = ShardSet.open(shards)
    shard_set.require_split(split)
    return table_to_clips(shard_set.read_table(splits=(split,)))


class Remixer:
    """Mixtures from stems of different GM families (or, with cfg.same_family_prob, of one family),
    drawn from a list of clips (one split's rows)."""

    def __init__(self, clips: list, cfg: RemixConfig = RemixConfig(), seed: int = 0):
        self.clips, self.cfg, self.seed = clips, cfg, seed
        self.stems = [StemRef(i, j, s.gm_family, s.gm_program, _median_pitch(c.notes, j))
                      for i, c in enumerate(clips) for j, s in enumerate(c.stems)]  # fmt: skip
        if not self.stems:
            raise ValueError("no stems to remix")
        self.by_family: dict[str, list[StemRef]] = {}  # in stem order: the draws index into these
        for ref in self.stems:
            self.by_family.setdefault(ref.gm_family, []).append(ref)
        self.families = sorted(self.by_family)
        self.shared_families = [f for f in self.families if len({r.gm_program for r in self.by_family[f]}) >= 2]

    def _draw_stems(self, rng: np.random.Generator, k: int) -> list[StemRef]:
        if k >= 2 and self.cfg.same_family_prob > 0 and self.shared_families and rng.random() < self.cfg.same_family_prob:
            return self._draw_one_family(rng, k)
        if k >= 2 and self.cfg.register_match_prob > 0 and rng.random() < self.cfg.register_match_prob:
            return self._draw_one_register(rng, k)
        k = min(k, len(self.families))
        families = rng.choice(self.families, size=k, replace=False)
        chosen = []
        for fam in families:
            pool = self.by_family[fam]
            chosen.append(pool[int(rng.integers(len(pool)))])
        return chosen

    def _draw_one_family(self, rng: np.random.Generator, k: int) -> list[StemRef]:
        """k stems, as many as it has programs of one GM family (distinct programs), the rest of other
        families: the hard negatives of timbre separation, which a family-distinct rule never shows."""
        family = self.shared_families[int(rng.integers(len(self.shared_families)))]
        pool = self.by_family[family]
        chosen, programs = [], set()
        for i in rng.permutation(len(pool)):
            if pool[i].gm_program not in programs:
                chosen.append(pool[i])
                programs.add(pool[i].gm_program)
                if len(chosen) == k:
                    return chosen
        others = [f for f in self.families if f != family]
        for fam in rng.choice(others, size=min(k - len(chosen), len(others)), replace=False):
            fam_pool = self.by_family[fam]
            chosen.append(fam_pool[int(rng.integers(len(fam_pool)))])
        return chosen

    def _draw_one_register(self, rng: np.random.Generator, k: int) -> list[StemRef]:
        """Up to k stems of different families whose median pitches lie within cfg.register_semitones
        of the first stem's: mixtures where the parts share a register, as real ensembles' often do,
        and the embedding has to tell them apart by timbre. Fewer when no other family plays there."""
        first = self.stems[int(rng.integers(len(self.stems)))]
        chosen = [first]
        for fam in rng.permutation([f for f in self.families if f != first.gm_family]):
            near = [r for r in self.by_family[fam] if abs(r.pitch - first.pitch) <= self.cfg.register_semitones]
            if near:
                chosen.append(near[int(rng.integers(len(near)))])
                if len(chosen) == k:
                    break
        return chosen

    def example(self, epoch: int, index: int) -> Example:
        cfg = self.cfg
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))
        w = np.asarray(cfg.k_weights, float)
        k = int(rng.choice(len(w), p=w / w.sum())) + 1
        refs = self._draw_stems(rng, k)
        n_frames = min(self.clips[r.clip].num_samples for r in refs) // HOP
        crop = min(cfg.crop_frames, n_frames)
        start = int(rng.integers(0, n_frames - crop + 1))  # the same crop for every stem
        gains = rng.uniform(cfg.gain_low, cfg.gain_high, len(refs)).astype(np.float32)
        audio = np.zeros(crop * HOP, np.float32)
        rolls = np.zeros((len(refs), N_PITCH, crop), np.uint8)
        notes: list[Note] = []
        # Per-stem colour draws from a stream of its own: with it off, every other draw is as it was.
        colour_rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index, 1]))
        coloured: dict[str, float] = {}
        for i, r in enumerate(refs):
            clip = self.clips[r.clip]
            stem, drawn = colour_stem(clip.stems[r.stem].audio()[start * HOP : (start + crop) * HOP], i, cfg.augment,
                                      colour_rng)  # fmt: skip
            coloured.update(drawn)
            audio += gains[i] * stem
            own = [n for n in clip.notes if n.stem == r.stem]
            rolls[i] = note_roll(own, crop, start)
            notes += crop_notes(own, start, crop, i)
        audio /= gains.sum()
        audio, drawn = augment(audio, cfg.augment, rng)
        drawn = coloured | drawn
        audio += rng.normal(0, cfg.noise_std * rng.uniform(), audio.shape).astype(np.float32)
        return Example(audio, targets_from_rolls(rolls), tuple(refs), gains, drawn,
                       tuple(sorted(notes, key=lambda n: (n.onset, n.stem, n.pitch))))


# --- Streaming: Ray Data remixes batches of stored clips into ready training examples -------------------


# drawn keys start with the transform's name: reverb_..., eq_tilt_db, gain_db, compressor_..., stem_colour_...
AUG_KEYS = TRANSFORMS + (STEM_TRANSFORM,)


def examples_to_columns(examples: list[Example], crop_frames: int, max_k: int) -> dict[str, np.ndarray]:
    """Examples as fixed-shape columns (zero-padded to crop_frames and max_k sources) for Ray Data."""
    n = len(examples)
    audio = np.zeros((n, crop_frames * HOP), np.float32)
    frame = np.zeros((n, N_PITCH, crop_frames), np.uint8)
    onset = np.zeros_like(frame)
    member = np.zeros((n, max_k, N_PITCH, crop_frames), np.uint8)
    k = np.zeros(n, np.int8)
    aug = np.zeros((n, len(AUG_KEYS)), np.uint8)  # which realism transforms each example got
    for i, e in enumerate(examples):
        aug[i] = [any(key.startswith(t) for key in e.augmentation) for t in AUG_KEYS]
        t, m = e.targets.frame.shape[1], e.targets.membership.shape[0]
        audio[i, : len(e.audio)] = e.audio
        frame[i, :, :t], onset[i, :, :t] = e.targets.frame, e.targets.onset
        member[i, :m, :, :t] = e.targets.membership
        k[i] = m
    return {"audio": audio, "frame": frame, "onset": onset, "membership": member, "k": k, "aug": aug}


def remix_batch(table, split: str, remix: RemixConfig, mixes_per_clip: int, seed: int | None = None) -> dict[str, np.ndarray]:
    """Ray Data map_batches function: the `split` clips of a batch of shard rows -> mixes_per_clip
    mixtures per clip drawn across the whole batch (so the batch size is the remix pool).
    seed None draws fresh entropy, so every pass over the data yields new mixtures."""
    import pyarrow.compute as pc

    from mixscribe.schema import table_to_clips

    clips = table_to_clips(table.filter(pc.equal(table["split"], split)))
    max_k = len(remix.k_weights)
    if not clips:
        return examples_to_columns([], remix.crop_frames, max_k)
    seed = int(np.random.SeedSequence().entropy % (1 << 63)) if seed is None else seed
    remixer = Remixer(clips, remix, seed=seed)
    examples = [remixer.example(0, i) for i in range(len(clips) * mixes_per_clip)]
    return examples_to_columns(examples, remix.crop_frames, max_k)


def remix_tasks(paths: list[str], train_clips: int, pool_clips: int, copies: int, seed: int,
                first_copy: int = 0) -> list[dict]:  # fmt: skip
    """The work items of a training stream: each a group of shard files (about pool_clips training
    clips, remixed together) and its seed. Every copy of the split regroups the files in a new order,
    so stems meet new partners; the items, and so the mixtures, are deterministic in `seed`. A stream
    from `first_copy` on is the tail of the one from 0: a resumed run goes on with mixtures it has not
    seen rather than replaying its first epochs'."""
    per_file = max(1.0, train_clips / max(1, len(paths)))
    group = max(1, int(round(pool_clips / per_file)))
    items = []
    for copy in range(first_copy, first_copy + copies):
        order = np.random.default_rng([seed, copy]).permutation(len(paths))
        for g in range(0, len(order), group):
            items.append({"paths": "\n".join(paths[i] for i in order[g : g + group]),
                          "seed": int(np.random.SeedSequence([seed, copy, g]).generate_state(1)[0])})  # fmt: skip
    return items


def remix_files(batch: dict, split: str, remix: RemixConfig, mixes_per_clip: int) -> dict[str, np.ndarray]:
    """Ray Data map_batches function over remix_tasks items: read each item's shard files (local paths or
    URIs) and remix their `split` clips with the item's seed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mixscribe.fsio import resolve

    parts = []
    for paths, seed in zip(batch["paths"], batch["seed"]):
        tables = []
        for uri in str(paths).split("\n"):
            fs, path = resolve(uri)
            tables.append(pq.read_table(path, filesystem=fs))
        parts.append(remix_batch(pa.concat_tables(tables), split, remix, mixes_per_clip, seed=int(seed)))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

"""`mixscribe inspect`: what a shard set holds, and one clip as WAV, MIDI and a piano roll over its CQT."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from mixscribe.errors import MixscribeError
from mixscribe.fsio import atomic_local_write
from mixscribe.schema import HOP, MIDI_MIN, SAMPLE_RATE, Clip, Note, clip_from_row, seconds_to_frame
from mixscribe.synth.instruments import GM_NAMES
from mixscribe.shards import ShardSet


def polyphony(clip: Clip) -> tuple[float, int]:
    """Mean (over sounding frames) and maximum number of simultaneous notes, all stems together."""
    frames = clip.num_samples // HOP
    active = np.zeros(frames, int)
    for n in clip.notes:
        active[seconds_to_frame(n.onset) : seconds_to_frame(n.offset)] += 1
    sounding = active[active > 0]
    return (float(sounding.mean()) if sounding.size else 0.0, int(active.max(initial=0)))


def summary(shards: str) -> str:
    shard_set = ShardSet.open(shards)
    root, manifest, record = shard_set.root, shard_set.manifest, shard_set.manifest.record
    t = shard_set.read_table(columns=["id", "split", "num_samples", "sample_rate", "notes", "stems"])
    stems = t.column("stems").combine_chunks().flatten() if t.num_rows else None
    n_stems = len(stems) if stems is not None else 0
    programs = Counter(stems.field("gm_program").to_pylist()) if n_stems else Counter()
    gm_fams = Counter(stems.field("gm_family").to_pylist()) if n_stems else Counter()
    sf_fams = Counter(stems.field("sf_family").to_pylist()) if n_stems else Counter()
    sfs = Counter(stems.field("soundfont").to_pylist()) if n_stems else Counter()
    splits = Counter(t.column("split").to_pylist())
    seconds = sum(n / sr for n, sr in zip(t.column("num_samples").to_pylist(), t.column("sample_rate").to_pylist()))
    polys = []
    for notes, n in zip(t.column("notes").to_pylist(), t.column("num_samples").to_pylist()):
        polys.append(polyphony(Clip("", 0, "", SAMPLE_RATE, n, [], [Note(**x) for x in notes])))
    mean_poly = float(np.mean([p[0] for p in polys])) if polys else 0.0
    max_poly = max((p[1] for p in polys), default=0)
    n_notes = sum(len(x) for x in t.column("notes").to_pylist())
    top = ", ".join(f"{GM_NAMES[p]} ({c})" for p, c in programs.most_common(8))
    has_timbre = n_stems and "timbre" in [f.name for f in stems.type]  # version-2 sets have no such field
    varied = sum(bool(x) for x in stems.field("timbre").to_pylist()) if has_timbre else 0
    lines = [
        f"shards         {root}",
        f"schema         v{manifest.schema_version}, mixscribe {manifest.package_version}, "
        + (f"FluidSynth {record['fluidsynth_version']}" if "fluidsynth_version" in record else f"{manifest.kind} set"),
        f"clips          {t.num_rows}",
        f"hours          {seconds / 3600:.3f}",
        f"stems          {n_stems} ({n_stems / max(t.num_rows, 1):.2f} per clip), "
        f"dropped {record.get('dropped_stems_total', 0)} {record.get('dropped_stems', {})}",
        f"notes          {n_notes}",
        f"polyphony      mean {mean_poly:.2f} while sounding, max {max_poly}",
        f"splits         {dict(sorted(splits.items()))}",
        f"soundfonts     {dict(sorted(sfs.items()))}",
        f"sf families    {dict(sorted(sf_fams.items()))}",
        f"GM families    {len(gm_fams)}: {dict(sorted(gm_fams.items()))}",
        f"programs       {len(programs)} distinct; most used: {top}",
        f"timbre varied  {varied} of {n_stems} stems (synth.timbre)",
    ]
    return "\n".join(lines)


def load_clip(shards: str, clip_id: str) -> Clip:
    shard_set = ShardSet.open(shards)
    t = shard_set.read_table(ids=(clip_id,))
    if t.num_rows == 0:
        ids = shard_set.read_table(columns=["id"]).column("id").to_pylist()
        raise MixscribeError(f"{shards}: no clip {clip_id!r} (ids run {ids[0]} .. {ids[-1]})" if ids else
                             f"{shards}: the shard set is empty")  # fmt: skip
    return clip_from_row(t.slice(0, 1).to_pylist()[0])


def _write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    atomic_local_write(path, lambda tmp: sf.write(str(tmp), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV"))


def clip_midi(clip: Clip):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for i, stem in enumerate(clip.stems):
        inst = pretty_midi.Instrument(program=stem.gm_program, name=f"{i}: {stem.preset_name} ({stem.soundfont})")
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.onset, n.offset) for n in clip.notes if n.stem == i]
        pm.instruments.append(inst)
    return pm


def cqt_power(audio: np.ndarray) -> np.ndarray:
    """[288, T] CQT power with the model's front-end settings (spec §2.1), for display."""
    import torch
    from nnAudio.features import CQT1992v2

    cqt = CQT1992v2(sr=SAMPLE_RATE, hop_length=HOP, fmin=32.07955284, n_bins=288, bins_per_octave=36,
                    filter_scale=1, norm=1, window="blackmanharris", center=True, pad_mode="constant",
                    trainable=False, output_format="Complex", verbose=False)  # fmt: skip
    with torch.no_grad():
        out = cqt(torch.from_numpy(audio.astype(np.float32))[None], normalization_type="convolutional")
    power = (out[0, ..., 0] ** 2 + out[0, ..., 1] ** 2).numpy()
    return power[:, : len(audio) // HOP]


def piano_roll_png(clip: Clip, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    power = cqt_power(clip.mix())
    fig, ax = plt.subplots(figsize=(14, 6), dpi=100)
    ax.imshow(np.log(power + power.max() * 1e-7 + 1e-20), origin="lower", aspect="auto", cmap="gray_r",
              extent=(0, power.shape[1] * HOP / SAMPLE_RATE, -0.5, power.shape[0] - 0.5))  # fmt: skip
    colors = plt.get_cmap("tab10")
    for n in clip.notes:
        y = 3 * (n.pitch - MIDI_MIN) + 1  # semitone p sits on bin 3p+1
        ax.add_patch(Rectangle((n.onset, y - 1.5), n.offset - n.onset, 3, fill=False, lw=1.2,
                               edgecolor=colors(n.stem % 10)))  # fmt: skip
    for i, s in enumerate(clip.stems):
        ax.plot([], [], color=colors(i % 10), label=f"{i}: {s.preset_name} ({s.soundfont})")
    ax.legend(loc="upper right", fontsize=8)
    ticks = np.arange(0, 288, 36)
    ax.set_yticks(ticks, [f"C{1 + t // 36}" for t in ticks])
    ax.set_xlabel("seconds")
    ax.set_title(f"{clip.id} ({clip.split}): labelled notes over the CQT of the mix")
    fig.tight_layout()
    atomic_local_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def export_clip(shards: str, clip_id: str, out_dir: str) -> list[Path]:
    clip = load_clip(shards, clip_id)
    out = Path(out_dir) / clip.id
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MixscribeError(f"{out}: cannot create output folder ({exc.strerror})") from exc
    written = [out / "mix.wav"]
    _write_wav(written[0], clip.mix())
    for i, s in enumerate(clip.stems):
        p = out / f"stem{i}_{s.soundfont}_p{s.gm_program:03d}.wav"
        _write_wav(p, s.audio())
        written.append(p)
    meta = [{k: getattr(s, k) for k in ("soundfont", "sf_family", "bank", "preset", "preset_name", "gm_program",
                                         "gm_family", "gain")} | {"timbre": json.loads(s.timbre) if s.timbre else None,
            "instrument_params": json.loads(s.instrument_params) if s.instrument_params else None}
            for s in clip.stems]  # fmt: skip
    written.append(atomic_local_write(out / "stems.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=1))))
    midi_path = out / "notes.mid"
    atomic_local_write(midi_path, lambda tmp: clip_midi(clip).write(str(tmp)))
    written.append(midi_path)
    png = out / "pianoroll.png"
    piano_roll_png(clip, png)
    written.append(png)
    return written


def first_clip_id(shards: str) -> str:
    t = ShardSet.open(shards).read_table(columns=["id"])
    if not t.num_rows:
        raise MixscribeError(f"{shards}: the shard set is empty")
    return pa.compute.min(t.column("id")).as_py()

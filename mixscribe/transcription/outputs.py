"""Writing transcriptions: MIDI (one named track per timbre, each on its own channel), CSV, JSON, PNG.
Every file is written to a temporary name and renamed: no half-written output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from mixscribe.fsio import atomic_local_write as _atomic
from mixscribe.schema import Note

# Distinct, clearly different GM programs so the tracks are told apart when the MIDI is played.
TRACK_PROGRAMS = (0, 40, 71, 56, 73, 24, 32, 68, 11, 19)
FORMATS = ("mid", "csv", "json", "png")


def to_midi(notes: list[Note], k: int):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for track in range(k):
        inst = pretty_midi.Instrument(program=TRACK_PROGRAMS[track % len(TRACK_PROGRAMS)], name=f"timbre {track + 1}")
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.onset, n.offset) for n in notes if n.stem == track]
        pm.instruments.append(inst)
    return pm


def write_midi(notes: list[Note], k: int, path: Path) -> Path:
    return _atomic(path, lambda tmp: to_midi(notes, k).write(str(tmp)))


def write_csv(notes: list[Note], path: Path) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["onset", "offset", "pitch", "velocity", "track"])
    for n in notes:
        w.writerow([f"{n.onset:.4f}", f"{n.offset:.4f}", n.pitch, n.velocity, n.stem])
    return _atomic(path, lambda tmp: tmp.write_text(buf.getvalue()))


def write_json(notes: list[Note], k: int, k_estimated: bool, source: str, path: Path) -> Path:
    doc = {
        "source": source,
        "tracks": k,
        "k_estimated": k_estimated,
        "notes": [{"onset": round(n.onset, 4), "offset": round(n.offset, 4), "pitch": n.pitch,
                   "velocity": n.velocity, "track": n.stem} for n in notes],  # fmt: skip
    }
    return _atomic(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=1) + "\n"))


def write_png(notes: list[Note], k: int, frame: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from mixscribe.schema import HOP, MIDI_MIN, SAMPLE_RATE

    duration = frame.shape[1] * HOP / SAMPLE_RATE
    fig, ax = plt.subplots(figsize=(14, 5), dpi=100)
    ax.imshow(frame, origin="lower", aspect="auto", cmap="gray_r", vmin=0, vmax=max(float(frame.max()), 1e-6),
              extent=(0, duration, MIDI_MIN - 0.5, MIDI_MIN + 83.5))  # fmt: skip
    colors = plt.get_cmap("tab10")
    for n in notes:
        ax.add_patch(Rectangle((n.onset, n.pitch - 0.4), n.offset - n.onset, 0.8, color=colors(n.stem % 10), alpha=0.8))
    for t in range(k):
        ax.plot([], [], color=colors(t % 10), lw=6, label=f"timbre {t + 1}")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
    fig.tight_layout()

    def save(tmp: Path) -> None:
        fig.savefig(tmp, format="png")
        plt.close(fig)

    return _atomic(path, save)

"""Spotify's Basic Pitch as the timbre-agnostic baseline, scored on the same sets with the same metrics.

Basic Pitch must never become a dependency of mixscribe (it pins TensorFlow and an old numpy), so it
lives in its own virtual environment (`.bench-basic-pitch/`, created on first use with the lightest set
that works: the wheel without deps plus onnxruntime and librosa) and runs there as a subprocess on WAV
files. Its notes are scored here: frame scores from its notes on our hop (Basic Pitch's own
posteriorgram has another hop), note scores as for mixscribe; its default thresholds, not tuned.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mixscribe.errors import MixscribeError

ROOT = Path(__file__).resolve().parents[2]
BP_VENV = ROOT / ".bench-basic-pitch"
BP_VERSION = "0.4.0"

_TRANSCRIBE = r"""
import json, pathlib, sys
from basic_pitch.inference import predict, Model
from basic_pitch import ICASSP_2022_MODEL_PATH
onnx = pathlib.Path(str(ICASSP_2022_MODEL_PATH) + ".onnx")
if not onnx.exists():
    onnx = pathlib.Path(ICASSP_2022_MODEL_PATH).with_suffix(".onnx")
model = Model(onnx)
out = {}
for wav in sys.argv[2:]:
    _, _, events = predict(wav, model)
    out[wav] = [[float(s), float(e), int(p)] for s, e, p, *_ in events]
pathlib.Path(sys.argv[1]).write_text(json.dumps(out))
"""


def basic_pitch_env(venv: Path = BP_VENV) -> Path:
    """The Basic Pitch interpreter, installing its environment on first use (needs the package index)."""
    py = venv / "bin" / "python"
    if py.exists():
        return py
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", f"basic-pitch=={BP_VERSION}"],
        [str(venv / "bin" / "pip"), "install", "-q", "onnxruntime", "librosa", "resampy>=0.2.2,<0.4.3",
         "mir_eval", "pretty_midi", "scikit-learn", "scipy", "typing-extensions"],
    ]  # fmt: skip
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise MixscribeError(f"Basic Pitch environment {venv}: `{' '.join(cmd[:5])}` failed ({r.stderr.strip()[-200:]})")
    return py


def transcribe_with_basic_pitch(wavs: list[Path], python: Path) -> dict[str, list[tuple[float, float, int]]]:
    """Notes (onset s, offset s, MIDI pitch) per WAV, from one Basic Pitch process for all files."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "notes.json"
        r = subprocess.run([str(python), "-c", _TRANSCRIBE, str(out), *map(str, wavs)], capture_output=True, text=True)
        if r.returncode != 0:
            raise MixscribeError(f"Basic Pitch failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
        return {k: [tuple(n) for n in v] for k, v in json.loads(out.read_text()).items()}


def evaluate_basic_pitch(shards: str, sets: tuple[str, ...], max_clips_per_set: int = 0, python: Path | None = None):
    """An EvalResult for Basic Pitch on the given sets (timbre-agnostic figures; the separated ones are
    those of a single track, which is what Basic Pitch outputs)."""
    import soundfile as sf

    from mixscribe.evaluate.metrics import clip_scores, notes_to_roll
    from mixscribe.evaluate.runner import METRICS, EvalConfig, EvalResult, set_tables, part_families
    from mixscribe.schema import HOP, SAMPLE_RATE, Note, table_to_clips

    tables = set_tables(shards, sets)
    python = python or basic_pitch_env()
    clips = [c for t in tables.values() for c in table_to_clips(t.slice(0, max_clips_per_set or t.num_rows))]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        wavs = []
        for c in clips:
            path = Path(d) / f"{c.split}__{c.id}.wav"
            sf.write(path, c.mix(), SAMPLE_RATE, subtype="FLOAT")
            wavs.append(path)
        found = transcribe_with_basic_pitch(wavs, python)
        for c, wav in zip(clips, wavs):
            est = [Note(s, e, p, 90, 0) for s, e, p in found[str(wav)]]
            k_ref = len({n.stem for n in c.notes}) or 1
            n_frames = c.num_samples // HOP + 1
            scores = clip_scores(c.notes, est, notes_to_roll(est, n_frames), k_ref, 1)
            rows.append({"set": c.split, "clip": c.id, "k": k_ref, "parts": part_families(c), **{m: scores[m] for m in METRICS}})
    cfg = EvalConfig(sets=tuple(sets), tune_on="", max_clips_per_set=max_clips_per_set)
    return EvalResult(cfg, rows, None, [], label=f"Basic Pitch {BP_VERSION} (its default thresholds, one track per file)")



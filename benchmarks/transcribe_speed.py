"""Transcription speed and memory: real-time factor and peak RSS on 60 s and 600 s of audio,
side by side with Spotify's Basic Pitch where it installs (in its own venv, never a mixscribe dependency).

RTF = (inference + note creation + timbre clustering) / duration with the shipped default model, its
stored thresholds and K = 3, one process per measurement (peak RSS is that process's ru_maxrss): the
path `mixscribe transcribe -k 3` runs (backend auto: bf16 where the CPU has it), and beside it the
float32 backend (onnxruntime) in the same run. Targets: RTF <= 0.02; 600 s peak <= 1 GB and
<= 1.5x the 60 s figure.
Usage: python benchmarks/transcribe_speed.py [--no-basic-pitch] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BP_VENV = ROOT / ".bench-basic-pitch"

MEASURE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from mixscribe.model import load_model
from mixscribe.transcription.inference import _Runner, default_params, load_audio, transcribe_audio
from mixscribe.transcription.decode import cluster_notes, create_notes
model = load_model(sys.argv[2] or None)
backend = sys.argv[3]
params = default_params(model)
audio = load_audio(sys.argv[1])
transcribe_audio(model, audio[: 22050 * 5], k=3, backend=backend)  # warm-up: sessions / twins, first calls
t1 = time.perf_counter()
runner = _Runner(model, audio, backend)  # the CQT once, then the posteriorgram pass,
frame, onset = runner.posteriorgrams()
t2 = time.perf_counter()
notes = create_notes(frame, onset, params)  # the model's own notes,
t3 = time.perf_counter()
u = runner.pooled_embeddings(notes, frame, params.pool_power)  # embeddings pooled into them window by window,
t4 = time.perf_counter()
labels, k = cluster_notes(u, 3, params.max_k, sharpness=params.k_sharpness,
                          cluster_sharpness=params.cluster_sharpness)  # one clustering over the file
t5 = time.perf_counter()
print(json.dumps({"duration": len(audio) / 22050, "inference": (t2 - t1) + (t4 - t3),
                  "decode": (t3 - t2) + (t5 - t4), "notes": len(notes), "load": t1 - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BASIC_PITCH = r"""
import json, resource, sys, time
from basic_pitch.inference import predict, Model
from basic_pitch import ICASSP_2022_MODEL_PATH
import pathlib
onnx = pathlib.Path(str(ICASSP_2022_MODEL_PATH) + ".onnx")
if not onnx.exists():
    onnx = pathlib.Path(ICASSP_2022_MODEL_PATH).with_suffix(".onnx")
model = Model(onnx)
predict(sys.argv[1][:-4] + "_warm.wav", model)
t = time.perf_counter()
_, _, notes = predict(sys.argv[1], model)
dt = time.perf_counter() - t
print(json.dumps({"total": dt, "notes": len(notes), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


BF16_WORDS = (": the branches' convolutions in bfloat16 by oneDNN, channels-last, features and norms "
              "float32; the CPU multiplies bf16 natively")


def render_music(seconds: float, seed: int = 0):
    """A three-instrument piece (piano, violin, bassoon), its frame/onset rolls and per-note stems."""
    from mixscribe.config import GeneratorConfig, RenderConfig
    from mixscribe.synth import catalog
    from mixscribe.synth.generator import generate_performance
    from mixscribe.synth.instruments import program_range
    from mixscribe.synth.render import FluidSynthRenderer, Instrument

    frames = int(seconds * 22050 / 256)
    gen = GeneratorConfig(clip_frames=frames)
    renderer = FluidSynthRenderer(RenderConfig(), catalog.select(("timgm6mb",)))
    mix = np.zeros(frames * 256, np.float32)
    rolls = np.zeros((3, 84, frames), np.float32)
    onsets = np.zeros((84, frames), np.float32)
    for i, prog in enumerate((0, 40, 70)):
        lo, hi = program_range(prog)
        perf = generate_performance(gen, lo, hi, np.random.default_rng(seed + i))
        mix += renderer.render(Instrument("timgm6mb", 0, prog), perf, frames * 256).audio / 3
        for n in perf.notes:
            rolls[i, n.pitch - 24, n.onset : n.offset] = 1
            onsets[n.pitch - 24, n.onset] = 1
    return mix, rolls, onsets


def basic_pitch_env() -> Path | None:
    """Basic Pitch in its own venv (mixscribe.evaluate.baseline installs it); None when it cannot install."""
    from mixscribe.errors import MixscribeError
    from mixscribe.evaluate.baseline import basic_pitch_env as install

    try:
        return install(BP_VENV)
    except MixscribeError as exc:
        print(f"{exc}: Basic Pitch skipped")
        return None


def measure(wav: Path, checkpoint: str, backend: str) -> dict:
    """One process transcribing one file: seconds per step, RTF and peak RSS."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(wav), checkpoint, backend],
                         capture_output=True, text=True, check=True)  # fmt: skip
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["rtf"] = (r["inference"] + r["decode"]) / r["duration"]
    return r


def main() -> None:
    import soundfile as sf

    from mixscribe.transcription.inference import BF16_WINDOW_FRAMES, WINDOW_FRAMES, resolve_backend

    ap = argparse.ArgumentParser()
    ap.add_argument("--no-basic-pitch", action="store_true")
    ap.add_argument("--checkpoint", default="", help="model file (default: the shipped default model)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mx-bench-"))
    mix, _, _ = render_music(60.0)
    rows, f32 = {}, {}
    auto = resolve_backend("auto")
    branch_window = BF16_WINDOW_FRAMES if auto == "bf16" else WINDOW_FRAMES  # the CQT's: WINDOW_FRAMES
    bp_py = None if args.no_basic_pitch else basic_pitch_env()
    for seconds, reps in ((60, 1), (600, 10)):
        wav = work / f"music_{seconds}.wav"
        sf.write(wav, np.tile(mix, reps), 22050)
        sf.write(work / f"music_{seconds}_warm.wav", mix[: 22050 * 5], 22050)
        r = measure(wav, args.checkpoint, "auto")
        f32[seconds] = measure(wav, args.checkpoint, "float32") if auto != "float32" else r
        if bp_py:
            bp = subprocess.run([str(bp_py), "-c", BASIC_PITCH, str(wav)], capture_output=True, text=True)
            if bp.returncode == 0:
                b = json.loads(bp.stdout.strip().splitlines()[-1])
                r["bp_rtf"], r["bp_rss"] = b["total"] / r["duration"], b["peak_rss_mb"]
            else:
                print("Basic Pitch failed:", bp.stderr.strip().splitlines()[-1:])
        rows[seconds] = r
        print(f"{seconds} s: RTF {r['rtf']:.4f} ({auto}; float32 {f32[seconds]['rtf']:.4f}) (inference {r['inference']:.1f} s, notes+clustering {r['decode']:.1f} s, "
              f"{r['notes']} notes), peak RSS {r['peak_rss_mb']:.0f} MB"
              + (f"; Basic Pitch RTF {r['bp_rtf']:.4f}, {r['bp_rss']:.0f} MB" if "bp_rtf" in r else ""))  # fmt: skip
    growth = rows[600]["peak_rss_mb"] / rows[60]["peak_rss_mb"]
    speedup = {sec: f32[sec]["inference"] / rows[sec]["inference"] for sec in (60, 600)}
    print(f"peak RSS 600 s / 60 s = {growth:.2f}; float32 inference / {auto} inference: "
          f"{speedup[60]:.2f}x (60 s), {speedup[600]:.2f}x (600 s)")
    bp = lambda r, key, fmt: format(r[key], fmt) if key in r else "not measured"  # noqa: E731
    body = f"""## Transcription speed and memory (`benchmarks/transcribe_speed.py`)

Separated transcription (K = 3) of a rendered piano/violin/bassoon piece (600 s = the 60 s piece 10 times)
by {args.checkpoint or 'the shipped default model'} with its stored thresholds, the backend `mixscribe transcribe` picks
here (auto: **{auto}**{BF16_WORDS if auto == 'bf16' else ''}): one process per figure,
{__import__('os').cpu_count()} threads, the CQT computed once per file (float32),
the branches in windows of {branch_window:,} frames and two passes over them (posteriorgrams -> the model's notes, then embeddings
pooled into the notes), one clustering over the whole file.
Targets: RTF <= 0.02; 600 s peak RSS <= 1 GB and <= 1.5x the 60 s figure.

| audio | RTF (total) | inference (s) | notes + clustering (s) | notes | peak RSS (MB) | Basic Pitch RTF | Basic Pitch peak RSS (MB) |
|---|---|---|---|---|---|---|---|
| 60 s | {rows[60]['rtf']:.4f} | {rows[60]['inference']:.2f} | {rows[60]['decode']:.2f} | {rows[60]['notes']} | {rows[60]['peak_rss_mb']:.0f} | {bp(rows[60], 'bp_rtf', '.4f')} | {bp(rows[60], 'bp_rss', '.0f')} |
| 600 s | {rows[600]['rtf']:.4f} | {rows[600]['inference']:.2f} | {rows[600]['decode']:.2f} | {rows[600]['notes']} | {rows[600]['peak_rss_mb']:.0f} | {bp(rows[600], 'bp_rtf', '.4f')} | {bp(rows[600], 'bp_rss', '.0f')} |

Peak RSS grows {growth:.2f}x from 60 s to 600 s (Basic Pitch is timbre-agnostic: no embeddings, no clustering).
The same files in the same run with the float32 backend (onnxruntime, one shared memory arena; what
evaluation runs): RTF {f32[60]['rtf']:.4f} / {f32[600]['rtf']:.4f} for 60 / 600 s, inference {f32[60]['inference']:.2f} / {f32[600]['inference']:.2f} s
({speedup[60]:.2f}x / {speedup[600]:.2f}x the {auto} backend's), peak RSS {f32[60]['peak_rss_mb']:.0f} / {f32[600]['peak_rss_mb']:.0f} MB."""
    update_section("transcribe-speed", body)


if __name__ == "__main__":
    main()

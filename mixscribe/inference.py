"""Audio in, K note tracks out: the Python API behind `mixscribe transcribe`.

Long audio runs in overlapping windows, so memory stays flat with file length: EnergyNorm's sigma comes
from a first pass over the whole file (cheap: the octave-wise CQT alone), each window gets CQT context
on both sides, and only its centre is kept. Timbre clustering runs once over the notes of the whole file,
never per window (per-window assignment scatters one instrument over several tracks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np

from mixscribe.errors import MixscribeError
from mixscribe.evaluate.decode import DecodeParams, RawNote, cluster_notes, create_notes, pool_note_embeddings
from mixscribe.schema import HOP, SAMPLE_RATE, Note

WINDOW_FRAMES = 2048  # ~24 s kept per window
CONTEXT_FRAMES = 160  # ~1.9 s of audio either side: more than half the lowest CQT kernel (1.6 s)
MIN_SECONDS = 0.5


class TranscribeError(MixscribeError):
    """Bad audio, K or checkpoint for a transcription."""


@dataclass
class Transcription:
    notes: list[Note]  # Note.stem is the track index
    k: int
    k_estimated: bool
    duration: float
    frame: np.ndarray = field(repr=False)  # [84, T]
    onset: np.ndarray = field(repr=False)


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Any format libsndfile reads (WAV, FLAC, OGG, MP3, ...), any rate, mono or multi-channel -> mono
    float32 at 22,050 Hz, checked."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        if not Path(path).exists():
            raise TranscribeError(f"{path}: no such file") from exc
        raise TranscribeError(f"{path}: not a readable audio file") from exc
    return prepare_audio(data.mean(axis=1), sr, str(path))


def prepare_audio(audio: np.ndarray, sr: int, where: str = "audio") -> np.ndarray:
    from scipy.signal import resample_poly

    audio = np.asarray(audio, np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1 if audio.shape[1] <= 8 else 0)
    if audio.size == 0:
        raise TranscribeError(f"{where}: empty audio")
    if not np.all(np.isfinite(audio)):
        raise TranscribeError(f"{where}: audio contains NaN or Inf samples")
    if audio.size / sr < MIN_SECONDS:
        raise TranscribeError(f"{where}: too short ({audio.size / sr:.2f} s; at least {MIN_SECONDS} s)")
    if np.abs(audio).max() < 1e-6:
        raise TranscribeError(f"{where}: audio is silent")
    if sr != SAMPLE_RATE:
        g = gcd(int(sr), SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, int(sr) // g).astype(np.float32)
    return audio


def _windows(n_frames: int) -> list[tuple[int, int]]:
    return [(a, min(a + WINDOW_FRAMES, n_frames)) for a in range(0, n_frames, WINDOW_FRAMES)]


def _segment(audio: np.ndarray, a: int, b: int) -> tuple[np.ndarray, int]:
    """Audio of frames [a - C, b + C) (zero-padded at the file edges) and the offset of frame a in it."""
    lo, hi = (a - CONTEXT_FRAMES) * HOP, (b + CONTEXT_FRAMES) * HOP
    seg = audio[max(lo, 0) : min(hi, len(audio))]
    seg = np.pad(seg, (max(-lo, 0), max(hi - len(audio), 0)))
    return seg, CONTEXT_FRAMES


def _ort_model(model):
    """An onnxruntime twin of the model, built once per model object; None when unavailable."""
    cached = getattr(model, "_ort_twin", None)
    if cached is None:
        try:
            from mixscribe.model.export import OrtModel

            cached = OrtModel(model)
        except ImportError:
            cached = False
        model._ort_twin = cached
    return cached or None


def run_model(model, audio: np.ndarray, with_embedding: bool = True, backend: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Posteriorgrams [84, T] and embeddings [D, 84, T] (float16) for a whole file, window by window.

    backend: "onnxruntime", "torch", or "auto" (onnxruntime when installed)."""
    import torch

    from mixscribe.model.frontend import power_of

    ort_model = _ort_model(model) if backend in ("auto", "onnxruntime") else None
    if backend == "onnxruntime" and ort_model is None:
        raise TranscribeError("backend onnxruntime requested but onnxruntime is not installed")

    n_frames = len(audio) // HOP
    audio = audio[: n_frames * HOP]
    wins = _windows(n_frames)
    with torch.inference_mode():
        energy = np.zeros(n_frames, np.float64)  # pass 1: frame energy for EnergyNorm's sigma
        for a, b in wins:
            seg, off = _segment(audio, a, b)
            p = power_of(model.cqt(torch.from_numpy(seg)[None]))[0].sum(0).double().numpy()
            energy[a:b] = p[off : off + b - a]
        sigma = torch.tensor([energy.std(ddof=1) if n_frames > 1 else 0.0], dtype=torch.float32)
        frame = np.zeros((84, n_frames), np.float32)
        onset = np.zeros((84, n_frames), np.float32)
        emb = np.zeros((model.cfg.embed_dim, 84, n_frames), np.float16) if with_embedding else None
        for a, b in wins:
            seg, off = _segment(audio, a, b)
            if ort_model is not None:
                f, o, e = ort_model(seg[None], sigma.numpy())
            else:
                out = model(torch.from_numpy(seg)[None], sigma=sigma, with_embedding=with_embedding)
                f, o, e = out.frame.numpy(), out.onset.numpy(), out.embedding.numpy() if with_embedding else None
            frame[:, a:b] = f[0, 0, :, off : off + b - a]
            onset[:, a:b] = o[0, 0, :, off : off + b - a]
            if with_embedding:
                emb[:, :, a:b] = e[0, :, :, off : off + b - a].astype(np.float16)
    return frame, onset, emb


def decode(frame: np.ndarray, onset: np.ndarray, emb: np.ndarray | None, k: int | None,
           params: DecodeParams = DecodeParams(), strict_k: bool = True) -> tuple[list[Note], int]:  # fmt: skip
    """Notes and tracks. With strict_k (a user's request) K above the number of notes is an error;
    without (evaluation with the true K) the spec's rule applies: one note per track, the rest empty."""
    raw: list[RawNote] = create_notes(frame, onset, params)
    if k is not None and k < 1:
        raise TranscribeError(f"K must be >= 1, got {k}")
    if strict_k and k is not None and k > max(len(raw), 1):
        raise TranscribeError(f"K = {k} is larger than the {len(raw)} notes found")
    if emb is None or k == 1 or not raw:
        return [n.to_note(0) for n in raw], k or 1
    u = pool_note_embeddings(raw, frame, emb.astype(np.float32), params.pool_power)
    labels, k_used = cluster_notes(u, k)
    return [n.to_note(int(t)) for n, t in zip(raw, labels)], k_used


def transcribe_audio(model, audio: np.ndarray, k: int | None = None, params: DecodeParams = DecodeParams()) -> Transcription:
    if k is not None and k < 1:
        raise TranscribeError(f"K must be >= 1, got {k}")
    frame, onset, emb = run_model(model, audio, with_embedding=k != 1)
    notes, k_used = decode(frame, onset, emb, k, params)
    return Transcription(notes, k_used, k is None, len(audio) / SAMPLE_RATE, frame, onset)


def transcribe(audio_or_path, sr: int | None = None, k: int | None = None, checkpoint: str | None = None,
               model=None, params: DecodeParams = DecodeParams()) -> list[Note]:  # fmt: skip
    """Notes of every timbre; Note.stem is the track (0..K-1). K is estimated when not given."""
    from mixscribe.model import load_model

    if isinstance(audio_or_path, (str, os.PathLike)):
        audio = load_audio(audio_or_path)
    else:
        if sr is None:
            raise TranscribeError("sr is required when audio is an array")
        audio = prepare_audio(audio_or_path, sr)
    model = model or load_model(checkpoint)
    return transcribe_audio(model, audio, k, params).notes

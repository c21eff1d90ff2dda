"""Audio in, K note tracks out: the Python API behind `mixscribe transcribe`.

Long audio runs in overlapping windows, so memory grows only by what the file's length must hold
(audio, CQT power, posteriorgrams: ~150 MB per 10 minutes), never by the network's activations: the CQT
runs once, window by window with audio context on both sides, into the file's power; EnergyNorm's sigma
comes from it; each branch then reads windows of it with its receptive field as context and keeps the
centre. Timbre clustering runs once over the notes of the whole file, never per window (per-window
assignment scatters one instrument over several tracks).
"""

from __future__ import annotations

import dataclasses

import os
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np

from mixscribe.errors import MixscribeError
from mixscribe.transcription.decode import DecodeParams, RawNote, cluster_notes, create_notes, pool_note_embeddings
from mixscribe.schema import HOP, SAMPLE_RATE, Note

WINDOW_FRAMES = 1024  # ~12 s kept per window (2,048 peaked ~130 MB higher for no speed: docs/benchmarks.md)
CONTEXT_FRAMES = 160  # ~1.9 s of audio either side: more than half the lowest CQT kernel (1.6 s)
NET_CONTEXT_FRAMES = 16  # CQT frames either side for the branches (receptive field: +-9 frames)
BF16_WINDOW_FRAMES = 512  # the bf16 branches' windows: 1.13x faster over 600 s than 1,024 (activations
# nearer the caches), chorale separated note F the same to 0.02 (docs/benchmarks.md); the CQT keeps WINDOW_FRAMES
MIN_SECONDS = 0.5
BACKENDS = ("auto", "bf16", "float32", "onnxruntime", "torch")


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
    gated: float = 0.0  # share of frames below the level gate (DecodeParams.gate_dbfs)


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


def check_audio_file(path: str | os.PathLike) -> None:
    """Refuse a missing or unreadable file without decoding it (a batch checks every input first)."""
    import soundfile as sf

    if not Path(path).is_file():
        raise TranscribeError(f"{path}: no such file")
    try:
        sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise TranscribeError(f"{path}: not a readable audio file") from exc


def prepare_audio(audio: np.ndarray, sr: int, where: str = "audio") -> np.ndarray:
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
    audio = audio - audio.mean(dtype=np.float64).astype(np.float32)  # a DC offset is no sound
    if np.abs(audio).max() < 1e-6:
        raise TranscribeError(f"{where}: audio is silent (nothing but a constant offset)")
    return to_model_rate(audio, sr)


def to_model_rate(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 audio at the model's 22,050 Hz (polyphase, anti-aliased), unchanged when already there."""
    from scipy.signal import resample_poly

    if sr == SAMPLE_RATE:
        return audio
    g = gcd(int(sr), SAMPLE_RATE)
    return resample_poly(audio, SAMPLE_RATE // g, int(sr) // g).astype(np.float32)


GATE_WINDOW = 2048  # samples (93 ms) over which a frame's level is measured


def frame_levels_dbfs(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Each frame's RMS level in dBFS (1.0 = full scale) over GATE_WINDOW samples centred on it, with the
    window's own mean removed (a DC offset or slow drift is no sound). O(samples) by running sums."""
    x = np.pad(audio.astype(np.float64), GATE_WINDOW // 2)
    s1 = np.concatenate([[0.0], np.cumsum(x)])
    s2 = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(n_frames) * HOP + HOP // 2  # window [c - W/2, c + W/2) about the frame centre, in padded x
    ends = starts + GATE_WINDOW
    mean = (s1[ends] - s1[starts]) / GATE_WINDOW
    var = np.maximum((s2[ends] - s2[starts]) / GATE_WINDOW - mean * mean, 0.0)
    return 10 * np.log10(var + 1e-20)


def _windows(n_frames: int, size: int | None = None) -> list[tuple[int, int]]:
    size = size or WINDOW_FRAMES
    return [(a, min(a + size, n_frames)) for a in range(0, n_frames, size)]


def _segment(audio: np.ndarray, a: int, b: int) -> tuple[np.ndarray, int]:
    """Audio of frames [a - C, b + C) (zero-padded at the file edges) and the offset of frame a in it."""
    lo, hi = (a - CONTEXT_FRAMES) * HOP, (b + CONTEXT_FRAMES) * HOP
    seg = audio[max(lo, 0) : min(hi, len(audio))]
    seg = np.pad(seg, (max(-lo, 0), max(hi - len(audio), 0)))
    return seg, CONTEXT_FRAMES


def resolve_backend(backend: str) -> str:
    """"auto" (what `mixscribe transcribe` runs): bf16 where the CPU has it, else float32. "float32"
    (what evaluation runs: the same figures on every machine): onnxruntime, else torch."""
    if backend not in BACKENDS:
        raise TranscribeError(f"backend: unknown {backend!r} (choose from {', '.join(BACKENDS)})")
    from mixscribe.model.arithmetic import bf16_supported  # torch: imported only when the model runs

    if backend == "auto":
        return "bf16" if bf16_supported() else "float32"
    if backend == "bf16" and not bf16_supported():
        raise TranscribeError("backend bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); use float32")
    return backend


class _Bf16Branches:
    """The two branches in channels-last layout, run under bfloat16 autocast (oneDNN): features and
    norms stay float32, convolutions multiply in bf16 and accumulate in float32. Posteriorgrams within
    ~0.003 of float32, embeddings at cosine >= 0.99 (tests/test_transcribe.py); quality on the chorales
    in docs/model-card.md. The encoder is the layout-friendly copy (its norms from pooled moments:
    0.86x the time of the layers as trained, measured in one process). Copies, so the model itself
    stays as it was (training may go on with it)."""

    def __init__(self, model):
        import copy

        import torch

        from mixscribe.model.export import layout_friendly_encoder

        self.amt = copy.deepcopy(model.amt).eval().to(memory_format=torch.channels_last)
        self.encoder = layout_friendly_encoder(model).encoder.eval().to(memory_format=torch.channels_last)

    def run(self, branch, features):
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = branch(features.contiguous(memory_format=torch.channels_last))
        return tuple(o.float().numpy() for o in out) if isinstance(out, tuple) else out.float().numpy()


def _bf16_model(model) -> _Bf16Branches:
    """The bf16 twin of the model, built once per model object."""
    cached = getattr(model, "_bf16_twin", None)
    if cached is None:
        cached = model._bf16_twin = _Bf16Branches(model)
    return cached


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


class _Runner:
    """Runs the model window by window on one file. The CQT runs once (with audio context at window
    edges) into the file's power [288, T]; EnergyNorm's sigma comes from it, and the branches read
    windows of it with only their receptive field as context."""

    def __init__(self, model, audio: np.ndarray, backend: str = "auto"):
        import torch

        self.model = model
        kind = resolve_backend(backend)
        self.bf16 = _bf16_model(model) if kind == "bf16" else None
        self.ort = _ort_model(model) if kind in ("float32", "onnxruntime") else None
        if kind == "onnxruntime" and self.ort is None:
            raise TranscribeError("backend onnxruntime requested but onnxruntime is not installed")
        self.n_frames = len(audio) // HOP
        self.audio = audio[: self.n_frames * HOP]
        self.windows = _windows(self.n_frames, BF16_WINDOW_FRAMES if self.bf16 is not None else None)  # the branches'
        self.power = np.zeros((model.cfg.n_bins, self.n_frames), np.float32)  # 60 MB per 10 minutes
        with torch.inference_mode():
            for a, b in _windows(self.n_frames):  # the CQT's
                seg, off = _segment(self.audio, a, b)
                self.power[:, a:b] = model.power(torch.from_numpy(seg)[None])[0, :, off : off + b - a].numpy()
        energy = self.power.sum(axis=0, dtype=np.float64)
        self.sigma = np.array([energy.std(ddof=1) if self.n_frames > 1 else 0.0], np.float32)

    def segments(self, windows: list[tuple[int, int]] | None = None):
        """(a, b, power of frames [a - C, b + C) within the file, offset of frame a in it) of every
        window, or of the windows given."""
        for a, b in self.windows if windows is None else windows:
            lo, hi = max(a - NET_CONTEXT_FRAMES, 0), min(b + NET_CONTEXT_FRAMES, self.n_frames)
            yield a, b, np.ascontiguousarray(self.power[None, :, lo:hi]), a - lo

    def _features(self, power: np.ndarray):
        import torch

        return self.model.features_from_power(torch.from_numpy(power), torch.from_numpy(self.sigma))

    def amt(self, power: np.ndarray, release: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """release: the pass's last window, after which onnxruntime's arena hands back its memory."""
        import torch

        if self.ort is not None:
            return tuple(self.ort.amt(power, self.sigma, release))
        if self.bf16 is not None:
            with torch.inference_mode():
                return self.bf16.run(self.bf16.amt, self._features(power))
        with torch.inference_mode():
            frame, onset = self.model.amt(self._features(power))
        return frame.numpy(), onset.numpy()

    def embed(self, power: np.ndarray, release: bool = False) -> np.ndarray:
        import torch

        if self.ort is not None:
            return self.ort.embed(power, self.sigma, release)
        if self.bf16 is not None:
            with torch.inference_mode():
                return self.bf16.run(self.bf16.encoder, self._features(power))
        with torch.inference_mode():
            return self.model.encoder(self._features(power)).numpy()

    def posteriorgrams(self) -> tuple[np.ndarray, np.ndarray]:
        """Pass 1: Y_F, Y_O [84, T] (float32: 35 MB per 10 minutes)."""
        frame = np.zeros((84, self.n_frames), np.float32)
        onset = np.zeros((84, self.n_frames), np.float32)
        for a, b, seg, off in self.segments():
            f, o = self.amt(seg, release=b == self.n_frames)
            frame[:, a:b] = f[0, 0, :, off : off + b - a]
            onset[:, a:b] = o[0, 0, :, off : off + b - a]
        return frame, onset

    def pooled_embeddings(self, notes: list[RawNote], frame: np.ndarray, power: float) -> np.ndarray:
        """Pass 2: each note's sum_t Y_F^power V[:, p, t], accumulated window by window, so the
        [D, 84, T] embeddings of the whole file never exist at once; L2-normalised."""
        u = np.zeros((len(notes), self.model.cfg.embed_dim), np.float64)
        starts = np.array([n.start for n in notes])
        ends = np.array([n.end for n in notes])
        windows = [(a, b) for a, b in self.windows if np.any((starts < b) & (ends > a))]
        for a, b, seg, off in self.segments(windows):
            e = self.embed(seg, release=(a, b) == windows[-1])[0, :, :, off : off + b - a]
            for i in np.flatnonzero((starts < b) & (ends > a)):
                n = notes[i]
                s, t = max(n.start, a), min(n.end, b)
                w = frame[n.pitch_index, s:t].astype(np.float64) ** power
                u[i] += e[:, n.pitch_index, s - a : t - a].astype(np.float64) @ w
        return u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)


def run_model(model, audio: np.ndarray, with_embedding: bool = True, backend: str = "float32"):
    """Dense Y_F, Y_O [84, T] and embeddings [D, 84, T] of a (short) clip, for evaluation and tests
    (float32 by default, so that figures do not depend on the machine's CPU)."""
    runner = _Runner(model, audio, backend)
    frame, onset = runner.posteriorgrams()
    if not with_embedding:
        return frame, onset, None
    emb = np.zeros((model.cfg.embed_dim, 84, runner.n_frames), np.float32)
    for a, b, seg, off in runner.segments():
        emb[:, :, a:b] = runner.embed(seg, release=b == runner.n_frames)[0, :, :, off : off + b - a]
    return frame, onset, emb


def _check_k(k: int | None, n_notes: int, strict_k: bool) -> None:
    if k is not None and k < 1:
        raise TranscribeError(f"K must be >= 1, got {k}")
    if strict_k and k is not None and k > max(n_notes, 1):
        raise TranscribeError(f"K = {k} is larger than the {n_notes} notes found")


def note_tracks(raw: list[RawNote], u: np.ndarray | None, k: int | None, params: DecodeParams = DecodeParams(),
            n_frames: int | None = None) -> tuple[list[Note], int]:  # fmt: skip
    """Notes into K tracks; K None: estimated by the model's K classifier (else the eigengap)."""
    if k is None and u is not None and raw and params.k_model is not None:
        from mixscribe.transcription.kestimate import note_spans

        k = params.k_model.estimate(note_spans(raw), n_frames or max(n.end for n in raw))
    if u is None or k == 1 or not raw:
        return [n.to_note(0) for n in raw], k or 1
    labels, k_used = cluster_notes(u, k, params.max_k, sharpness=params.k_sharpness,
                                   cluster_sharpness=params.cluster_sharpness)  # fmt: skip
    return [n.to_note(int(t)) for n, t in zip(raw, labels)], k_used


def decode(frame: np.ndarray, onset: np.ndarray, emb: np.ndarray | None, k: int | None,
           params: DecodeParams = DecodeParams(), strict_k: bool = True) -> tuple[list[Note], int]:  # fmt: skip
    """Notes and tracks from dense outputs. With strict_k (a user's request) K above the number of notes
    is an error; without (evaluation with the true K) the spec's rule applies: one note per track."""
    raw = create_notes(frame, onset, params)
    _check_k(k, len(raw), strict_k)
    u = pool_note_embeddings(raw, frame, emb, params.pool_power) if emb is not None and k != 1 and raw else None
    return note_tracks(raw, u, k, params, frame.shape[1])


def load_transcriber(path: str | os.PathLike | None = None):
    """The model of a checkpoint (no path: the shipped default) with `decode_params`: the decoding a
    packaged model stores (tuned on its validation set), or None. A checkpoint whose stored decoding does
    not validate is named here, before any audio is read."""
    from mixscribe.model import load_model

    model = load_model(path)
    stored_decoding_of(model)
    return model


def stored_decoding_of(model) -> DecodeParams | None:
    """The decoding stored with a model's checkpoint, read once from what the checkpoint records
    (`model.extra`) and kept as `model.decode_params`; None for a model without one (fresh, untuned,
    or trained here), so a model loaded by the model room alone still transcribes as packaged."""
    if not hasattr(model, "decode_params"):
        extra = getattr(model, "extra", None) or {}
        model.decode_params = stored_params(extra.get("decode"), getattr(model, "checkpoint_path", "checkpoint"))
    return model.decode_params


def stored_params(stored: dict | None, path) -> DecodeParams | None:
    """A checkpoint's stored decoding as DecodeParams; a K classifier fitted on other features than this
    version computes is dropped with a warning (K then comes from the eigengap) rather than misused."""
    import warnings

    from mixscribe.config import from_dict
    from mixscribe.model.checkpoint import CheckpointError

    if not stored:
        return None
    try:
        params = from_dict(DecodeParams, stored, prefix="decode.")
    except MixscribeError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    if params.k_model is not None and not params.k_model.usable():
        warnings.warn(f"{path}: its K classifier was fitted on other features than this version computes; K is "
                      "estimated by the eigengap (re-fit: mixscribe evaluate --k auto, then package-model)", stacklevel=2)
        params = dataclasses.replace(params, k_model=None)
    return params


def default_params(model) -> DecodeParams:
    """The thresholds stored with the model (tuned on its validation set), else the spec's defaults."""
    return stored_decoding_of(model) or DecodeParams()


def stored_overrides(model) -> list[str]:
    """The decoding settings where the model's stored values stand in for DecodeParams' defaults, as
    'name value': changing a default in code changes nothing for such a model, and the user is told."""
    stored = stored_decoding_of(model)
    if stored is None:
        return []
    default = DecodeParams()
    out = []
    for f in dataclasses.fields(DecodeParams):
        value = getattr(stored, f.name)
        if value != getattr(default, f.name):
            shown = "fitted" if f.name == "k_model" else (f"{value:g}" if isinstance(value, float) else str(value))
            out.append(f"{f.name} {shown}")
    return out


def transcribe_audio(model, audio: np.ndarray, k: int | None = None, params: DecodeParams | None = None,
                     backend: str = "auto") -> Transcription:  # fmt: skip
    """The CQT once, then two passes over its windows: posteriorgrams -> notes, then embeddings pooled
    into the notes. Memory: the audio, its CQT power, Y_F/Y_O and one window's activations.
    backend: see resolve_backend (auto: bf16 where the CPU multiplies it natively)."""
    if k is not None and k < 1:
        raise TranscribeError(f"K must be >= 1, got {k}")
    params = params or default_params(model)
    runner = _Runner(model, audio, backend)
    frame, onset = runner.posteriorgrams()
    quiet = frame_levels_dbfs(runner.audio, runner.n_frames) < params.gate_dbfs
    frame[:, quiet] = 0  # below the gate nothing is a note, whatever the normalised posteriorgrams say
    onset[:, quiet] = 0
    raw = create_notes(frame, onset, params)
    _check_k(k, len(raw), strict_k=True)
    u = runner.pooled_embeddings(raw, frame, params.pool_power) if k != 1 and raw else None
    notes, k_used = note_tracks(raw, u, k, params, frame.shape[1])
    return Transcription(notes, k_used, k is None, len(audio) / SAMPLE_RATE, frame, onset,
                         float(quiet.mean()) if quiet.size else 1.0)


def transcribe(audio_or_path, sr: int | None = None, k: int | None = None, checkpoint: str | None = None,
               model=None, params: DecodeParams | None = None, backend: str = "auto") -> list[Note]:  # fmt: skip
    """Notes of every timbre; Note.stem is the track (0..K-1). K is estimated when not given.
    No checkpoint and no model: the shipped default model, with its stored thresholds. backend: "auto"
    (bf16 where the CPU multiplies it natively), "bf16" or "float32" (see resolve_backend)."""
    if isinstance(audio_or_path, (str, os.PathLike)):
        audio = load_audio(audio_or_path)
    else:
        if sr is None:
            raise TranscribeError("sr is required when audio is an array")
        audio = prepare_audio(audio_or_path, sr)
    model = model or load_transcriber(checkpoint)
    return transcribe_audio(model, audio, k, params, backend).notes

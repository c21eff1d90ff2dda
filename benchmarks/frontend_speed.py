"""Front-end and model speed on CPU: the CQT options, and the model under eager torch vs onnxruntime.

Seconds of compute per second of audio (lower is better) on 27.5 s windows (what transcription runs),
median of 3 after a warm-up. Usage: python benchmarks/frontend_speed.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402

from mixscribe.config import ModelConfig  # noqa: E402
from mixscribe.model.export import OrtModel, export_onnx_bytes  # noqa: E402
from mixscribe.model.frontend import NNAudioCQT, OctaveCQT, midi_to_hz, power_of  # noqa: E402
from mixscribe.model.network import TwoBranchModel  # noqa: E402

SECONDS = 2368 * 256 / 22050  # one transcription window with its context


def per_second(fn, reps: int = 3) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) / SECONDS


def kernel_mb(module: torch.nn.Module) -> float:
    return sum(b.numel() * b.element_size() for b in list(module.buffers()) + list(module.parameters())) / 1e6


class TextbookDecimationCQT(OctaveCQT):
    """The octave-wise CQT with the decimation filter as written in the textbook (one long one-channel
    conv forward, flip, forward, flip, keep every other sample): the comparison for the chunked one."""

    def _decimate(self, x: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional as F

        pad = self.lowpass.shape[-1] // 2
        y = F.conv1d(F.pad(x, (pad, pad)), self.lowpass)
        return F.conv1d(F.pad(y.flip(-1), (pad, pad)), self.lowpass).flip(-1)[..., ::2]


def main() -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    x = torch.randn(1, 2368 * 256) * 0.1
    cfg = ModelConfig()
    octave, nnaudio = OctaveCQT(cfg), NNAudioCQT(cfg)
    with torch.inference_mode():
        t_oct = per_second(lambda: octave(x))
        textbook = TextbookDecimationCQT(cfg)
        t_textbook = per_second(lambda: textbook(x))
        t_oct = min(t_oct, per_second(lambda: octave(x)))  # again after the comparison: alternate the order
        t_nn = per_second(lambda: nnaudio(x))
        sine = torch.from_numpy(np.sin(2 * np.pi * midi_to_hz(69) * np.arange(200 * 256) / 22050).astype(np.float32))[None]
        a, b = power_of(octave(sine))[0, :, 100], power_of(nnaudio(sine))[0, :, 100]
    level = float(a.max() / b.max())
    model = TwoBranchModel(cfg).eval()
    with torch.inference_mode():
        t_torch = per_second(lambda: model(x))
        t_torch_amt = per_second(lambda: model(x, with_embedding=False))
    ort = OrtModel(model)
    sigma = np.ones(1, np.float32)
    with torch.inference_mode():
        power = model.power(x).numpy()  # transcription runs the CQT once; both graphs read its power
    t_ort_amt = per_second(lambda: ort.amt(power, sigma))
    t_ort_enc = per_second(lambda: ort.embed(power, sigma))
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    plain = onnxruntime.InferenceSession(export_onnx_bytes(model, True, "encoder"), opts)  # the layers as trained
    t_ort_enc_plain = per_second(lambda: plain.run(None, {"power": power, "sigma": sigma}))
    t_ort_enc = per_second(lambda: ort.embed(power, sigma))  # again, after the plain graph: alternate the order
    print(f"CQT octave-wise {t_oct:.4f} s/s (textbook decimation {t_textbook:.4f}, {t_textbook / t_oct:.2f}x)")
    print(f"CQT octave-wise {t_oct:.4f} s/s ({kernel_mb(octave):.2f} MB), nnAudio CQT1992v2 {t_nn:.4f} s/s "
          f"({kernel_mb(nnaudio):.0f} MB); A4 peak level octave/nnAudio = {level:.3f}")
    print(f"model torch {t_torch:.4f} s/s (AMT only {t_torch_amt:.4f}); onnxruntime AMT {t_ort_amt:.4f} + encoder {t_ort_enc:.4f} "
          f"(the layers as trained: {t_ort_enc_plain:.4f}, {t_ort_enc_plain / t_ort_enc:.2f}x)")
    body = f"""## Front end and model speed (`benchmarks/frontend_speed.py`)

Seconds of compute per second of audio, {os.cpu_count()} threads, 27.5 s windows, median of 3.

| what | s per s of audio | kernels / notes |
|---|---|---|
| CQT, octave-wise on nnAudio kernels (default) | {t_oct:.4f} | {kernel_mb(octave):.2f} MB; A4 peak level {level:.3f}x nnAudio's, same bins |
| the same with the textbook decimation filter (before 2026-12-03) | {t_textbook:.4f} | {t_textbook / t_oct:.2f}x the default's time |
| CQT, nnAudio CQT1992v2 (spec parity option) | {t_nn:.4f} | {kernel_mb(nnaudio):.0f} MB of kernels |
| whole model, eager torch | {t_torch:.4f} | AMT branch alone {t_torch_amt:.4f} |
| AMT graph from CQT power, onnxruntime (transcription pass 1) | {t_ort_amt:.4f} | |
| encoder graph from CQT power, onnxruntime (transcription pass 2) | {t_ort_enc:.4f} | layout-friendly copy of the encoder (export.py) |
| the same, exported from the layers as trained | {t_ort_enc_plain:.4f} | {t_ort_enc_plain / t_ort_enc:.2f}x the copy's time |
| transcription's model work: CQT once + both graphs | {t_oct + t_ort_amt + t_ort_enc:.4f} | |

The octave-wise CQT is the reference algorithm (one 36-kernel bank, the signal decimated by 2 per
octave with a zero-phase 33-tap FIR); it is the default because CQT1992v2 alone would use most of the
RTF budget. Both put a sine at MIDI m on bin 3(m-24)+1 (tests/test_model.py). Its decimation filter runs
as a batch of 2,048-sample chunks, the backward pass only at the kept samples (the textbook filter's
row above; the same values to float rounding, tests/test_model.py)."""
    update_section("frontend-speed", body)


if __name__ == "__main__":
    main()

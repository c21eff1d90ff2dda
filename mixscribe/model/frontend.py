"""CQT front end (paper-spec §2.1) and EnergyNorm (§2.2).

Two CQT implementations with the same bins, window (Blackman-Harris), L1 kernel normalisation, hop and
frame centring (frame t centred on sample 256 t, T = n / 256 frames):
* `OctaveCQT` (default): the reference algorithm. One 36-kernel bank for the top octave, built with
  nnAudio's kernel utility, applied as a strided conv; each lower octave reuses it on the signal
  decimated by 2 (zero-phase FIR), with the stride halved. ~30 M multiply-adds per second of audio and
  0.1 MB of kernels, instead of CQT1992v2's 65,536-tap kernels (151 MB, 0.08 s per second of audio).
* `nnaudio`: nnAudio's CQT1992v2, the spec's parity mapping.
Neither stores its kernels in checkpoints: they are rebuilt from the config.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mixscribe.config import ModelConfig

DECIMATION_TAPS = 33
CHUNK = 2048  # samples per chunk of the decimation filter (even, so stride 2 stays aligned)


class OctaveCQT(nn.Module):
    def __init__(self, cfg: ModelConfig, trainable: bool = False):
        super().__init__()
        from nnAudio.utils import create_cqt_kernels
        from scipy.signal import firwin

        self.hop = cfg.hop
        self.octaves = cfg.n_bins // cfg.bins_per_octave
        if cfg.hop % 2 ** (self.octaves - 1):
            raise ValueError(f"hop {cfg.hop} must be divisible by 2^{self.octaves - 1}")
        q = 1.0 / (2 ** (1.0 / cfg.bins_per_octave) - 1)
        top_fmin = cfg.fmin * 2 ** (self.octaves - 1)
        kernels, fft_len, _, _ = create_cqt_kernels(q, cfg.sample_rate, top_fmin, cfg.bins_per_octave,
                                                    cfg.bins_per_octave, norm=1, window="blackmanharris",
                                                    topbin_check=False)  # fmt: skip
        weight = torch.from_numpy(np.concatenate([kernels.real, kernels.imag]).astype(np.float32))[:, None]
        self.fft_len = fft_len
        self.bins = cfg.bins_per_octave
        self.kernels = nn.Parameter(weight, requires_grad=trainable) if trainable else None
        if not trainable:
            self.register_buffer("kernels_buf", weight, persistent=False)
        lowpass = torch.from_numpy(firwin(DECIMATION_TAPS, 0.5, window="hamming").astype(np.float32))
        assert torch.equal(lowpass, lowpass.flip(0)), "_decimate relies on a symmetric (linear-phase) filter"
        self.register_buffer("lowpass", lowpass[None, None], persistent=False)

    def _weight(self) -> torch.Tensor:
        return self.kernels if self.kernels is not None else self.kernels_buf

    def _decimate(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-phase low-pass (forward and backward), then every other sample. The filter is symmetric,
        so the backward pass is the same convolution unflipped, and only its kept samples are computed."""
        return self._lowpass(self._lowpass(x, 1), 2)

    def _lowpass(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        """x [B, 1, n] -> the low-passed signal (zero-padded edges) at every `stride`-th sample. Outside an
        ONNX export the signal runs as a batch of overlapping 2,048-sample chunks: a one-channel conv over
        a long signal is ~2x slower (benchmarks/frontend_speed.py)."""
        pad = DECIMATION_TAPS // 2
        if torch.onnx.is_in_onnx_export():
            return F.conv1d(F.pad(x, (pad, pad)), self.lowpass, stride=stride)
        b, n = x.shape[0], x.shape[-1]
        padded = F.pad(x[:, 0], (pad, pad + (-n) % CHUNK))
        chunks = padded.unfold(-1, CHUNK + 2 * pad, CHUNK).reshape(-1, 1, CHUNK + 2 * pad)
        y = F.conv1d(chunks, self.lowpass, stride=stride).reshape(b, 1, -1)
        return y[..., : -(-n // stride)]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, n] (n a multiple of hop) -> complex parts [B, 288, T, 2]."""
        x = audio[:, None]
        weight, outs = self._weight(), []
        for octave in range(self.octaves):
            hop = self.hop >> octave
            frames = F.conv1d(F.pad(x, (self.fft_len // 2, self.fft_len // 2)), weight, stride=hop)
            outs.append(frames[..., : audio.shape[-1] // self.hop])
            if octave < self.octaves - 1:
                x = self._decimate(x)
        outs = outs[::-1]  # lowest octave first
        re = torch.cat([o[:, : self.bins] for o in outs], dim=1)
        im = torch.cat([o[:, self.bins :] for o in outs], dim=1)
        return torch.stack([re, im], dim=-1)


class NNAudioCQT(nn.Module):
    """nnAudio CQT1992v2 with the spec's settings; the last frame is dropped so T = n / hop."""

    def __init__(self, cfg: ModelConfig, trainable: bool = False):
        super().__init__()
        from nnAudio.features import CQT1992v2

        self.hop = cfg.hop
        self.cqt = CQT1992v2(sr=cfg.sample_rate, hop_length=cfg.hop, fmin=cfg.fmin, n_bins=cfg.n_bins,
                             bins_per_octave=cfg.bins_per_octave, filter_scale=1, norm=1,
                             window="blackmanharris", center=True, pad_mode="constant",
                             trainable=trainable, output_format="Complex", verbose=False)  # fmt: skip

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        out = self.cqt(audio, normalization_type="convolutional")
        return out[:, :, : audio.shape[-1] // self.hop]


def build_cqt(cfg: ModelConfig) -> nn.Module:
    return (OctaveCQT if cfg.cqt == "octave" else NNAudioCQT)(cfg, trainable=cfg.trainable_cqt)


class EnergyNorm(nn.Module):
    """EN[f,t] = ln(E[f,t] + eps) - ln(sigma), sigma = unbiased std over the clip of the frame energy.

    Gain invariant; sigma is floored so silent or constant input gives finite output. A precomputed
    sigma (from a first pass over a long file) can be passed so that windows of one file share it.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.eps, self.floor, self.log = cfg.energy_eps, cfg.sigma_floor, cfg.norm != "energy-nolog"

    @staticmethod
    def frame_energy(power: torch.Tensor) -> torch.Tensor:
        return power.sum(dim=1)  # [B, T]

    def sigma(self, power: torch.Tensor) -> torch.Tensor:
        p = self.frame_energy(power)
        s = p.std(dim=-1, unbiased=True) if p.shape[-1] > 1 else torch.zeros_like(p[:, 0])
        return s.clamp_min(self.floor)

    def forward(self, power: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """power [B, F, T] -> [B, 1, F, T]."""
        power = power.float()
        sigma = self.sigma(power) if sigma is None else sigma.clamp_min(self.floor)
        if self.log:
            out = torch.log(power + self.eps) - torch.log(sigma)[:, None, None]
        else:
            out = power / sigma[:, None, None]
        return out[:, None]


class LogBatchNorm(nn.Module):
    """The Basic Pitch-style ablation: log power, then BatchNorm (running statistics at inference)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.eps = cfg.energy_eps
        self.bn = nn.BatchNorm2d(1)

    def forward(self, power: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return self.bn(torch.log(power.float() + self.eps)[:, None])


def power_of(cqt_out: torch.Tensor) -> torch.Tensor:
    return cqt_out[..., 0] ** 2 + cqt_out[..., 1] ** 2


def pitch_to_bin(midi: float) -> int:
    """Semitone p = midi - 24 sits on CQT bin 3p + 1."""
    return 3 * int(round(midi - 24)) + 1


def midi_to_hz(midi: float) -> float:
    return 440.0 * math.pow(2.0, (midi - 69) / 12)

"""The two-branch network, layer for layer as paper-spec §2.3-§4 (tensor layout [B, C, F, T])."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mixscribe.config import ModelConfig
from mixscribe.model.frontend import EnergyNorm, LogBatchNorm, build_cqt, power_of

HARMONIC_SHIFTS = (-36, 0, 36, 57, 72, 84, 93, 101)  # round(36 log2 h), h = 1/2, 1..7
STACK_BINS = 252


class HarmonicStack(nn.Module):
    """[B, 1, 288, T] -> [B, 8, 252, T]: channel h at bin f holds EN[f + s_h] (0 outside the source)."""

    def __init__(self, src_bins: int = 288):
        super().__init__()
        self.src_bins = src_bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, : self.src_bins]
        chans = []
        for s in HARMONIC_SHIFTS:
            lo, hi = s, s + STACK_BINS  # source bins for output bins 0..251
            part = x[:, :, max(lo, 0) : min(hi, self.src_bins)]
            chans.append(F.pad(part, (0, 0, max(-lo, 0), max(hi - self.src_bins, 0))))
        return torch.cat(chans, dim=1)


class Affine(nn.Module):
    """y = k x + b with scalar k (clamped after every optimiser step) and b."""

    def __init__(self, k_min: float, k_max: float):
        super().__init__()
        self.k = nn.Parameter(torch.ones(()))
        self.b = nn.Parameter(torch.zeros(()))
        self.k_min, self.k_max = k_min, k_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * x + self.b

    @torch.no_grad()
    def clamp_(self) -> None:
        self.k.clamp_(self.k_min, self.k_max)


def _core_conv(cfg: ModelConfig, bias: bool) -> nn.Conv2d:
    """The two-octave lattice: 25 taps 3 bins apart (or the undilated 39-wide ablation)."""
    if cfg.dilated:
        return nn.Conv2d(16, 8, (25, 3), dilation=(3, 1), padding=(36, 1), bias=bias)
    return nn.Conv2d(16, 8, (39, 3), padding=(19, 1), bias=bias)


class AMTBranch(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.affine = Affine(cfg.affine_k_min, cfg.affine_k_max)
        self.block1 = nn.Sequential(nn.Conv2d(8, 16, 5, padding=2, bias=False), nn.BatchNorm2d(16), nn.LeakyReLU(0.01))
        self.block2 = nn.Sequential(_core_conv(cfg, bias=True), nn.BatchNorm2d(8))
        self.neck = nn.Sequential(nn.Conv2d(8, 16, 5, padding=2, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.frame_head = nn.Conv2d(16, 1, 5, stride=(3, 1), padding=(1, 2))
        self.onset_pre = nn.Sequential(
            nn.Conv2d(16, 7, (7, 3), stride=(3, 1), padding=(2, 1), bias=False), nn.BatchNorm2d(7), nn.ReLU()
        )
        self.onset_head = nn.Conv2d(8, 1, (3, 5), padding=(1, 2))

    def forward(self, stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = self.affine(stacked)
        x = F.relu(self.block2(self.block1(x0)) + x0)
        x = self.neck(x)
        frame = torch.sigmoid(self.frame_head(x))
        onset = torch.sigmoid(self.onset_head(torch.cat([frame, self.onset_pre(x)], dim=1)))
        return frame, onset


class CenterNorm(nn.Module):
    """Per item and channel: (x - mean) / (std + 1e-9) over (F, T), times a learnable scale; no shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=(2, 3), keepdim=True)
        sd = x.std(dim=(2, 3), keepdim=True)
        return (x - mu) / (sd + 1e-9) * self.scale[None, :, None, None]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels at each TF bin."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TimbreEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.affine = Affine(cfg.affine_k_min, cfg.affine_k_max)
        self.block1 = nn.Sequential(nn.Conv2d(8, 16, 5, padding=2), nn.GroupNorm(4, 16), nn.LeakyReLU(0.01))
        self.block2 = _core_conv(cfg, bias=True)
        self.block3 = nn.Sequential(nn.GroupNorm(2, 8), nn.Conv2d(8, 16, 5, padding=2), nn.PReLU(1))
        self.res = nn.Sequential(
            ChannelLayerNorm(16, eps=1.01e-8),
            nn.Conv2d(16, 24, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(24, 16, 3, padding=1),
        )
        self.center = CenterNorm(16)
        pad = cfg.encoder_out_pad
        self.out = nn.Conv2d(16, cfg.embed_dim, (3, 5), stride=(3, 1), padding=(pad, 2))

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        x0 = self.affine(stacked)
        x = self.block2(self.block1(x0)) + x0
        x = self.block3(x)
        x = x + self.res(x)
        return F.normalize(self.out(self.center(x)), dim=1)


@dataclass
class ModelOutput:
    frame: torch.Tensor  # [B, 1, 84, T]
    onset: torch.Tensor  # [B, 1, 84, T]
    embedding: torch.Tensor  # [B, D, 84, T], unit norm over D


class TwoBranchModel(nn.Module):
    """Audio -> CQT -> EnergyNorm -> harmonic stacking -> (AMT branch, timbre encoder)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.cqt = build_cqt(cfg)
        self.norm = LogBatchNorm(cfg) if cfg.norm == "batchnorm" else EnergyNorm(cfg)
        self.stack = HarmonicStack(cfg.stack_src_bins)
        self.amt = AMTBranch(cfg)
        self.encoder = TimbreEncoder(cfg)

    def power(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, n] -> CQT power [B, 288, T], T = n // hop."""
        n = audio.shape[-1] - audio.shape[-1] % self.cfg.hop
        return power_of(self.cqt(audio[..., :n].float()))

    def features(self, audio: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """audio [B, n] -> stacked features [B, 8, 252, T]."""
        return self.features_from_power(self.power(audio), sigma)

    def features_from_power(self, power: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """CQT power [B, 288, T] -> stacked features: long files compute the CQT once and window this."""
        return self.stack(self.norm(power, sigma))

    def forward(self, audio: torch.Tensor, sigma: torch.Tensor | None = None, with_embedding: bool = True,
                with_amt: bool = True) -> ModelOutput:  # fmt: skip
        x = self.features(audio, sigma)
        frame, onset = self.amt(x) if with_amt else (torch.empty(0), torch.empty(0))
        emb = self.encoder(x) if with_embedding else torch.empty(0)
        return ModelOutput(frame, onset, emb)

    def embed(self, audio: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """The timbre encoder alone: [B, D, 84, T]."""
        return self.encoder(self.features(audio, sigma))

    def clamp_affines_(self) -> None:
        """Call after every optimiser step (spec §2.3)."""
        self.amt.affine.clamp_()
        self.encoder.affine.clamp_()


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

"""ONNX export: audio samples -> (frame, onset, embedding), the CQT included.

`external_sigma=True` adds EnergyNorm's sigma as a second input, so that the windows of one long file
share the sigma of the whole file (what `mixscribe transcribe` does with onnxruntime)."""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

OUTPUTS = ["frame", "onset", "embedding"]


PART_OUTPUTS = {"all": OUTPUTS, "amt": ["frame", "onset"], "encoder": ["embedding"]}


class _Graph(nn.Module):
    def __init__(self, model: nn.Module, external_sigma: bool, part: str):
        super().__init__()
        self.model, self.external_sigma, self.part = model, external_sigma, part

    def forward(self, audio: torch.Tensor, sigma: torch.Tensor | None = None):
        sigma = sigma if self.external_sigma else None
        if self.part == "amt":  # input: CQT power [1, 288, T] (transcription runs the CQT once per file)
            return self.model.amt(self.model.features_from_power(audio, sigma))
        if self.part == "encoder":
            return self.model.encoder(self.model.features_from_power(audio, sigma))
        out = self.model(audio, sigma=sigma)
        return out.frame, out.onset, out.embedding


class _ChannelLayerNormAsConvs(nn.Module):
    """LayerNorm over channels as 1x1 convolutions (centring: I - 1/C; mean square: 1/C; affine: depthwise),
    which onnxruntime keeps in its blocked NCHWc layout: a Transpose-LayerNorm-Transpose would leave it."""

    def __init__(self, ln: nn.LayerNorm):
        super().__init__()
        c = ln.normalized_shape[0]
        self.centre = nn.Conv2d(c, c, 1, bias=False)
        self.centre.weight.data = (torch.eye(c) - 1.0 / c)[:, :, None, None]
        self.mean_square = nn.Conv2d(c, c, 1)
        self.mean_square.weight.data = torch.full((c, c, 1, 1), 1.0 / c)
        self.mean_square.bias.data = torch.full((c,), ln.eps)
        self.affine = nn.Conv2d(c, c, 1, groups=c)
        self.affine.weight.data = ln.weight.data[:, None, None, None].clone()
        self.affine.bias.data = ln.bias.data.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.centre(x)
        return self.affine(d * torch.rsqrt(self.mean_square(d * d)))


def _pooled_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel E[x] and E[x^2] over (F, T) as GlobalAveragePools, which stay in NCHWc layout."""
    return F.adaptive_avg_pool2d(x, 1), F.adaptive_avg_pool2d(x * x, 1)


class _GroupNormFromMoments(nn.Module):
    """GroupNorm as x * a + b with per-channel a, b from pooled moments (a [B, C, 1, 1] computation)."""

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.groups, self.eps, self.weight, self.bias = gn.num_groups, gn.eps, gn.weight, gn.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        m1, m2 = (m.reshape(b, self.groups, -1).mean(-1, keepdim=True) for m in _pooled_moments(x))
        rstd = torch.rsqrt(m2 - m1 * m1 + self.eps)
        per_channel = lambda g: g.expand(b, self.groups, c // self.groups).reshape(b, c, 1, 1)  # noqa: E731
        a = per_channel(rstd) * self.weight[None, :, None, None]
        return x * a + (self.bias[None, :, None, None] - per_channel(m1) * a)


class _CenterNormFromMoments(nn.Module):
    """CenterNorm (unbiased std) as x * a + b from pooled moments."""

    def __init__(self, cn: nn.Module):
        super().__init__()
        self.scale = cn.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3]
        m1, m2 = _pooled_moments(x)
        a = self.scale[None, :, None, None] / (torch.sqrt((m2 - m1 * m1) * (n / (n - 1))) + 1e-9)
        return x * a - m1 * a


def layout_friendly_encoder(model: nn.Module) -> nn.Module:
    """A copy of the model whose encoder computes the same function (to ~1e-4: moments in one pass)
    with ops onnxruntime fuses or keeps in NCHWc layout: its norms as above, PReLU(1) as the LeakyReLU
    of its slope (fused into the conv before it). Layout reorders around the norms took ~15 % of the
    encoder's time in a profile; this copy measured 1.06-1.08x faster (benchmarks/frontend_speed.py).
    Used for the transcription graph."""
    from mixscribe.model.network import CenterNorm, ChannelLayerNorm

    twin = type(model)(model.cfg)  # rebuilt, not deep-copied: a model may carry its onnxruntime sessions
    twin.load_state_dict(model.state_dict())
    twin.eval()
    enc = twin.encoder
    for seq in (enc.block1, enc.block3, enc.res):
        for i, layer in enumerate(seq):
            if isinstance(layer, nn.GroupNorm):
                seq[i] = _GroupNormFromMoments(layer)
            elif isinstance(layer, ChannelLayerNorm):
                seq[i] = _ChannelLayerNormAsConvs(layer)
            elif isinstance(layer, nn.PReLU) and layer.weight.numel() == 1:
                seq[i] = nn.LeakyReLU(float(layer.weight.detach()))
    if isinstance(enc.center, CenterNorm):
        enc.center = _CenterNormFromMoments(enc.center)
    return twin


def export_onnx_bytes(model: nn.Module, external_sigma: bool = False, part: str = "all") -> bytes:
    """part: "all" (the user-facing graph, from audio), or "amt" (frame, onset) / "encoder" (embedding)
    from CQT power (input "power" [1, 288, T]; with external_sigma, as transcription runs them)."""
    graph = _Graph(model, external_sigma, part).eval()
    from_power = part != "all"
    first = torch.rand(1, model.cfg.n_bins, 64) if from_power else torch.randn(1, 256 * 64)
    args = (first, torch.ones(1)) if external_sigma else (first,)
    inputs = ["power" if from_power else "audio"] + (["sigma"] if external_sigma else [])
    outputs = PART_OUTPUTS[part]
    frames = {3: "frames"}
    audio_axes = {inputs[0]: {2: "frames"} if from_power else {1: "samples"}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is chatty about constant folding
        torch.onnx.export(graph, args, buf, input_names=inputs, output_names=outputs, opset_version=17,
                          dynamic_axes={**audio_axes, **{o: frames for o in outputs}},
                          dynamo=False)  # fmt: skip
    return buf.getvalue()


def export_onnx(model: nn.Module, path: str | os.PathLike, external_sigma: bool = False) -> Path:
    path = Path(path)
    data = export_onnx_bytes(model, external_sigma)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


@functools.cache
def _register_shared_arena() -> None:
    """One CPU memory arena for every onnxruntime session of this process (registered once), growing by
    exactly what is asked (kSameAsRequested, not powers of two)."""
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))  # max, kSameAsRequested, defaults


class OrtModel:
    """The two branches run by onnxruntime (about 1.5x faster than eager torch on 2 CPU cores:
    benchmarks/frontend_speed.py); same outputs to ~1e-5. Separate graphs from CQT power, because
    transcription computes the CQT once per file and runs the branches in separate passes.

    Both sessions draw on one shared memory arena: without an arena every window's activations are
    fresh pages from the OS (inference 1.13x slower at 600 s, docs/benchmarks.md); with one arena per
    session each would keep its own peak. A run with `release=True` (a pass's last window) hands the
    arena's free memory back, so clustering and the next file do not sit on top of it."""

    def __init__(self, model: nn.Module, threads: int | None = None, arena: bool = True):
        """arena=False: no arena at all (what benchmarks/transcribe_speed.py compares against)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        opts.log_severity_level = 3
        self._release = None  # without an arena there is nothing to hand back (and shrinking it is an error)
        if arena:
            _register_shared_arena()
            opts.add_session_config_entry("session.use_env_allocators", "1")
            self._release = ort.RunOptions()
            self._release.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        else:
            opts.enable_cpu_mem_arena = False
        self.amt_session = ort.InferenceSession(export_onnx_bytes(model, True, "amt"), opts)
        self.encoder_session = ort.InferenceSession(export_onnx_bytes(layout_friendly_encoder(model), True, "encoder"), opts)

    def amt(self, power, sigma, release: bool = False):
        return self.amt_session.run(None, {"power": power, "sigma": sigma}, self._release if release else None)

    def embed(self, power, sigma, release: bool = False):
        return self.encoder_session.run(None, {"power": power, "sigma": sigma}, self._release if release else None)[0]

"""ONNX export: audio samples -> (frame, onset, embedding), the CQT included.

`external_sigma=True` adds EnergyNorm's sigma as a second input, so that the windows of one long file
share the sigma of the whole file (what `mixscribe transcribe` does with onnxruntime)."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

OUTPUTS = ["frame", "onset", "embedding"]


class _Graph(nn.Module):
    def __init__(self, model: nn.Module, external_sigma: bool):
        super().__init__()
        self.model, self.external_sigma = model, external_sigma

    def forward(self, audio: torch.Tensor, sigma: torch.Tensor | None = None):
        out = self.model(audio, sigma=sigma if self.external_sigma else None)
        return out.frame, out.onset, out.embedding


def export_onnx_bytes(model: nn.Module, external_sigma: bool = False) -> bytes:
    graph = _Graph(model, external_sigma).eval()
    audio = torch.randn(1, 256 * 64)
    args = (audio, torch.ones(1)) if external_sigma else (audio,)
    inputs = ["audio", "sigma"] if external_sigma else ["audio"]
    frames = {3: "frames"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is chatty about constant folding
        torch.onnx.export(graph, args, buf, input_names=inputs, output_names=OUTPUTS, opset_version=17,
                          dynamic_axes={"audio": {1: "samples"}, **{o: frames for o in OUTPUTS}},
                          dynamo=False)  # fmt: skip
    return buf.getvalue()


def export_onnx(model: nn.Module, path: str | os.PathLike, external_sigma: bool = False) -> Path:
    path = Path(path)
    data = export_onnx_bytes(model, external_sigma)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


class OrtModel:
    """The model run by onnxruntime (about 2.8x faster than eager torch on 2 CPU cores, measured in
    benchmarks/transcribe_speed.py); same outputs to ~1e-5."""

    def __init__(self, model: nn.Module, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(export_onnx_bytes(model, external_sigma=True), opts)

    def __call__(self, audio, sigma):
        frame, onset, emb = self.session.run(None, {"audio": audio, "sigma": sigma})
        return frame, onset, emb

"""Which arithmetic a device does fast: training (train.precision "auto") and transcription (backend
"auto") both take bf16 only where it is native, since emulated bf16 is slower than float32."""

from __future__ import annotations

import torch


def bf16_supported() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), so oneDNN's bf16 convolutions
    are fast (inference 1.05-1.69x faster than onnxruntime's float32 here, end to end, four runs:
    docs/benchmarks.md); elsewhere it emulates them, slower than float32."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return torch.backends.mkldnn.is_available() and any(probe is not None and probe() for probe in probes)


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """"auto": bf16 where the device multiplies it natively (a CUDA GPU that supports it, a CPU with
    AVX512-BF16 or AMX), else float32; "float32" and "bf16" stand."""
    if precision != "auto":
        return precision
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "float32"
    return "bf16" if bf16_supported() else "float32"

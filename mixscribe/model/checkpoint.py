"""Checkpoints that rebuild their model: state_dict (no CQT kernels) + model config + versions.

Loaded with torch.load(weights_only=True): plain tensors and primitives, never unpickled code.
Written to a temporary name and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mixscribe.config import ModelConfig, from_dict, to_dict
from mixscribe.errors import MixscribeError

FORMAT = "mixscribe-checkpoint"
FORMAT_VERSION = 1
# The default model, trained by this platform (docs/model-card.md), shipped in the package.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "weights" / "default.pt"
DEFAULT_ONNX = DEFAULT_CHECKPOINT.with_suffix(".onnx")


class CheckpointError(MixscribeError):
    """A checkpoint is missing, unreadable, or does not match this mixscribe."""


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Everything but the fixed CQT kernels (rebuilt from the config; ~45-150 MB with nnAudio's).
    The learnable-CQT ablation trains its kernels, so they are kept there."""
    keep_cqt = model.cfg.trainable_cqt
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if keep_cqt or not k.startswith("cqt.")}


def save_checkpoint(model, path: str | os.PathLike, extra: dict | None = None) -> Path:
    import mixscribe

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": to_dict(model.cfg),
        "state_dict": _weights(model),
        "versions": {"mixscribe": mixscribe.__version__, "torch": str(torch.__version__)},
        "extra": extra or {},
    }
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a mixscribe checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format_version')}, expected {FORMAT_VERSION}")
    return payload


def load_model(path: str | os.PathLike | None = None):
    """Rebuild the model a checkpoint describes, in eval mode; no path: the shipped default model.
    `model.extra` holds what the checkpoint records beside its weights (examples seen, where it came from,
    the decoding a packaged model was tuned with); this room stores it and leaves its meaning to the rooms
    that use it, so a model loads without knowing how notes are decoded."""
    from mixscribe.model.network import TwoBranchModel

    if path is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise CheckpointError(f"{DEFAULT_CHECKPOINT}: the default model is missing from this install: pass --checkpoint")
        path = DEFAULT_CHECKPOINT
    payload = load_checkpoint(path)
    cfg = from_dict(ModelConfig, payload["model_config"], prefix="model.")
    model = TwoBranchModel(cfg)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    missing = [k for k in missing if not k.startswith("cqt.")]  # fixed kernels are rebuilt, not stored
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the model config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.extra = dict(payload.get("extra") or {})
    model.checkpoint_path = str(path)  # named in errors about what the checkpoint records
    return model.eval()

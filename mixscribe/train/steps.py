"""One optimisation step of each training stage (paper-spec §6), shared by the local loop and the Ray
Train worker loop: stage "amt" (focal loss), stage "encoder" (InfoNCE, AMT branch frozen), "joint"."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from mixscribe.model.arithmetic import resolve_precision
from mixscribe.model.losses import amt_loss, timbre_loss
from mixscribe.model.network import TwoBranchModel
from mixscribe.train.data import Example

STAGES = ("amt", "encoder", "joint")
PRECISIONS = ("float32", "bf16", "auto")


@dataclass
class Batch:
    audio: torch.Tensor  # [B, n]
    frame: torch.Tensor  # [B, 1, 84, T]
    onset: torch.Tensor  # [B, 1, 84, T]
    membership: torch.Tensor  # [B, M, 84, T], zero-padded to the batch's largest K

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.audio, self.frame, self.onset, self.membership)))


def collate(examples: list[Example]) -> Batch:
    m = max(e.targets.membership.shape[0] for e in examples)
    member = np.zeros((len(examples), m) + examples[0].targets.frame.shape, np.float32)
    for i, e in enumerate(examples):
        member[i, : e.targets.membership.shape[0]] = e.targets.membership
    return Batch(
        audio=torch.from_numpy(np.stack([e.audio for e in examples])),
        frame=torch.from_numpy(np.stack([e.targets.frame for e in examples]))[:, None],
        onset=torch.from_numpy(np.stack([e.targets.onset for e in examples]))[:, None],
        membership=torch.from_numpy(member),
    )


def set_stage(model: TwoBranchModel, stage: str) -> list[torch.nn.Parameter]:
    """Freeze what the stage does not train; the frozen AMT branch also runs its BatchNorm in eval mode."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    train_amt, train_enc = stage in ("amt", "joint"), stage in ("encoder", "joint")
    for p in model.amt.parameters():
        p.requires_grad_(train_amt)
    for p in model.encoder.parameters():
        p.requires_grad_(train_enc)
    model.train()
    if not train_amt:
        model.amt.eval()
    return [p for p in model.parameters() if p.requires_grad]


def losses(model: TwoBranchModel, batch: Batch, stage: str, forward=None, positives: str = "all",
           exclude_semitones: int = 0) -> dict[str, torch.Tensor]:  # fmt: skip
    """forward: what runs the model (its DDP wrapper on several workers); the config comes from model;
    positives and exclude_semitones: the timbre loss's (model.losses.timbre_loss). The encoder stage runs no AMT branch: frozen,
    its outputs are not in the loss (15 % of the step)."""
    out = (model if forward is None else forward)(batch.audio, with_embedding=stage != "amt", with_amt=stage != "encoder")
    result = {}
    if stage in ("amt", "joint"):
        result["amt"] = amt_loss(model.cfg, batch.frame, batch.onset, out.frame, out.onset)
    if stage in ("encoder", "joint"):
        result["timbre"] = timbre_loss(model.cfg, out.embedding, batch.membership, positives=positives,
                                       exclude_semitones=exclude_semitones)  # fmt: skip
    result["loss"] = sum(result.values())
    return result


def train_step(model: TwoBranchModel, batch: Batch, optimizer: torch.optim.Optimizer, stage: str,
               forward=None, precision: str = "float32", positives: str = "all",
               exclude_semitones: int = 0) -> dict[str, float]:  # fmt: skip
    """One step; with `forward` a DDP wrapper, gradients are averaged across workers. precision "bf16":
    the forward under bfloat16 autocast (convolutions in bf16, float32 accumulation; weights, gradients
    and the optimiser stay float32); "auto": bf16 where the device has it natively."""
    optimizer.zero_grad(set_to_none=True)
    device = next(model.parameters()).device.type
    bf16 = resolve_precision(precision, device) == "bf16"
    with torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        parts = losses(model, batch, stage, forward, positives, exclude_semitones)
    parts["loss"].backward()
    optimizer.step()
    model.clamp_affines_()  # spec §2.3: after every optimiser step, in every stage
    return {k: float(v.detach()) for k, v in parts.items()}

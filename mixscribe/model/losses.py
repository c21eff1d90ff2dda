"""Losses of paper-spec §5: focal loss for the AMT branch, multi-positive InfoNCE (or the deep-clustering
MSE ablation) for the timbre encoder. Mean-reduced, so the scale does not depend on batch or clip length."""

from __future__ import annotations

import torch

from mixscribe.config import ModelConfig

EPS = 1e-8


def focal_loss(target: torch.Tensor, prob: torch.Tensor, alpha: float, gamma: float, reduction: str = "mean") -> torch.Tensor:
    """-[a y (1-p)^g ln(p+eps) + (1-a)(1-y) p^g ln(1-p+eps)]: small alpha for rare positives (spec §5.2)."""
    pos = alpha * target * (1 - prob) ** gamma * torch.log(prob + EPS)
    neg = (1 - alpha) * (1 - target) * prob**gamma * torch.log(1 - prob + EPS)
    loss = -(pos + neg)
    return loss.mean() if reduction == "mean" else loss.sum()


def amt_loss(cfg: ModelConfig, frame_t: torch.Tensor, onset_t: torch.Tensor, frame_p: torch.Tensor,
             onset_p: torch.Tensor, reduction: str = "mean") -> torch.Tensor:  # fmt: skip
    return focal_loss(frame_t, frame_p, cfg.frame_alpha, cfg.focal_gamma, reduction) + focal_loss(
        onset_t, onset_p, cfg.onset_alpha, cfg.focal_gamma, reduction
    )


# Which bins of a source are an anchor's positives: "all" (the paper's), or "other-pitch": only those at
# another pitch, the source's bins at the anchor's own pitch (mostly frames of the same note) leaving the
# loss altogether. Frames of one note are near-copies of each other: with them in the sum of positives,
# the loss falls as they grow alike, while what clustering needs, one instrument's notes at different
# pitches alike, gets only the small share of the gradient those harder positives have.
POSITIVES = ("all", "other-pitch")
# With "other-pitch", how many semitones either side of the anchor's pitch also leave the loss for the
# anchor's source. A SoundFont plays neighbouring keys from one sample, resampled: notes a semitone or
# two apart can be near-copies as much as one note's frames are, and a wider exclusion puts the positives
# across the instrument's sample zones.
MAX_EXCLUDE_SEMITONES = 12


def _active(embedding: torch.Tensor, membership: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One item: V [D, P, T], Y [M, P, T] -> (v [n, D], y [n, M], pitch row [n]) over bins where any
    source is active."""
    y = (membership > 0.1).flatten(1).T.float()
    mask = y.sum(1) > 0
    rows = torch.arange(y.shape[0], device=y.device) // membership.shape[-1]
    return embedding.flatten(1).T[mask], y[mask], rows[mask]


def info_nce_item(v: torch.Tensor, y: torch.Tensor, tau: float, max_anchors: int,
                  generator: torch.Generator | None = None, rows: torch.Tensor | None = None,
                  exclude_semitones: int = 0) -> torch.Tensor | None:  # fmt: skip
    """Multi-positive InfoNCE with the positives summed inside the log, anchors sampled.

    L_i = -log( sum_{j in P(i)} exp(s_ij) / sum_{j != i} exp(s_ij) ), s = v_i.v_j / tau, P(i) = bins
    sharing an instrument with i. Anchors without positives are skipped; one timbre gives exactly 0.
    With `rows` (each bin's pitch row, one per semitone), bins sharing an instrument with i at its pitch,
    or within exclude_semitones of it, leave both sums (positives "other-pitch"); another instrument
    there stays a negative.
    """
    n = v.shape[0]
    if n < 2:
        return None
    anchors = torch.arange(n, device=v.device)
    if n > max_anchors:
        anchors = torch.randperm(n, generator=generator, device="cpu")[:max_anchors].to(v.device)
    sim = v[anchors] @ v.T / tau  # [A, n]
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[torch.arange(len(anchors)), anchors] = True
    sim = sim.masked_fill(self_mask, float("-inf"))
    positive = ((y[anchors] @ y.T) >= 1) & ~self_mask
    if rows is not None:
        own_pitch = positive & ((rows[anchors][:, None] - rows[None, :]).abs() <= exclude_semitones)
        sim = sim.masked_fill(own_pitch, float("-inf"))
        positive &= ~own_pitch
    has_pos = positive.any(1)
    if not has_pos.any():
        return None
    log_all = torch.logsumexp(sim, dim=1)
    log_pos = torch.logsumexp(sim.masked_fill(~positive, float("-inf")), dim=1)
    return (log_all - log_pos)[has_pos].mean()


def deep_clustering_item(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """||VV^T - YY^T||_F^2 in its O(n D M) form, divided by n^2 (spec §5.4)."""
    n = v.shape[0]
    if n < 2:
        return None
    vv = (v.T @ v).pow(2).sum()
    vy = (v.T @ y).pow(2).sum()
    yy = (y.T @ y).pow(2).sum()
    return (vv - 2 * vy + yy) / n**2


def timbre_loss(cfg: ModelConfig, embedding: torch.Tensor, membership: torch.Tensor,
                generator: torch.Generator | None = None, positives: str = "all",
                exclude_semitones: int = 0) -> torch.Tensor:  # fmt: skip
    """Batch mean over items. embedding [B, D, 84, T]; membership [B, M, 84, T] (per-source rolls);
    positives: one of POSITIVES, with "other-pitch" excluding exclude_semitones either side (InfoNCE only)."""
    if positives not in POSITIVES:
        raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}")
    if not 0 <= exclude_semitones <= MAX_EXCLUDE_SEMITONES or (exclude_semitones and positives != "other-pitch"):
        raise ValueError(f"exclude_semitones must be in [0, {MAX_EXCLUDE_SEMITONES}], and 0 unless positives "
                         f"are 'other-pitch'; got {exclude_semitones} with {positives!r}")  # fmt: skip
    losses = []
    for b in range(embedding.shape[0]):
        v, y, rows = _active(embedding[b], membership[b])
        item = (info_nce_item(v, y, cfg.tau, cfg.max_anchors, generator, rows if positives == "other-pitch" else None,
                              exclude_semitones) if cfg.timbre_loss == "infonce" else deep_clustering_item(v, y))  # fmt: skip
        if item is not None:
            losses.append(item)
    return torch.stack(losses).mean() if losses else embedding.sum() * 0.0

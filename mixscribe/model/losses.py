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
# "other-note" moves the loss from bins to notes: each note's bins summed into one unit vector (what
# transcription clusters, mixscribe.transcription.decode.pool_note_embeddings, with the ground-truth
# roll as the weights), the anchors and positives notes, a note's positives the source's other notes.
# One note's frames are then one vector, neither positive nor negative to each other.
POSITIVES = ("all", "other-pitch", "other-note")
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


def _notes(embedding: torch.Tensor, membership: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One item: V [D, P, T], Y [M, P, T] -> (u [notes, D], y [notes, M]): every run of active frames of
    one source at one pitch is a note, its embedding the L2-normalised sum of its bins' (float32, also
    under bf16 autocast)."""
    on = membership > 0.1
    start = on & ~torch.nn.functional.pad(on[..., :-1], (1, 0), value=False)
    note_of = (torch.cumsum(start.flatten(), 0) - 1).view_as(on)  # row-major, as nonzero() counts the starts
    m, p, t = on.nonzero(as_tuple=True)
    source = start.nonzero(as_tuple=True)[0]
    pooled = torch.zeros(len(source), embedding.shape[0], device=embedding.device, dtype=torch.float32)
    pooled = pooled.index_add(0, note_of[m, p, t], embedding[:, p, t].T.float())
    y = torch.nn.functional.one_hot(source, membership.shape[0]).float()
    return torch.nn.functional.normalize(pooled, dim=1), y


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


def positives_problem(positives: str, exclude_semitones: int, prefix: str = "") -> tuple[str, str] | None:
    """What is wrong with a choice of positives and exclusion, as (option, why), or None: one rule for the
    training config's check and the loss itself, so that a config that passes is one the loss accepts.
    prefix names the options as the caller's user knows them (the config's "train.timbre_")."""
    if positives not in POSITIVES:
        return f"{prefix}positives", f"must be one of {list(POSITIVES)}"
    if not isinstance(exclude_semitones, int) or not 0 <= exclude_semitones <= MAX_EXCLUDE_SEMITONES:
        return f"{prefix}exclude_semitones", f"must be an integer in [0, {MAX_EXCLUDE_SEMITONES}]"
    if exclude_semitones and positives != "other-pitch":
        return f"{prefix}exclude_semitones", f"needs {prefix}positives: other-pitch"
    return None


def timbre_loss(cfg: ModelConfig, embedding: torch.Tensor, membership: torch.Tensor,
                generator: torch.Generator | None = None, positives: str = "all",
                exclude_semitones: int = 0) -> torch.Tensor:  # fmt: skip
    """Batch mean over items. embedding [B, D, 84, T]; membership [B, M, 84, T] (per-source rolls);
    positives: one of POSITIVES, with "other-pitch" excluding exclude_semitones either side (InfoNCE only)."""
    problem = positives_problem(positives, exclude_semitones)
    if problem:
        raise ValueError(f"{problem[0]} {problem[1]}; got positives {positives!r}, exclude_semitones {exclude_semitones!r}")
    items = (_item_loss(cfg, embedding[b], membership[b], generator, positives, exclude_semitones)
             for b in range(embedding.shape[0]))  # fmt: skip
    losses = [item for item in items if item is not None]
    return torch.stack(losses).mean() if losses else embedding.sum() * 0.0


def _item_loss(cfg: ModelConfig, embedding: torch.Tensor, membership: torch.Tensor, generator: torch.Generator | None,
               positives: str, exclude_semitones: int) -> torch.Tensor | None:  # fmt: skip
    if cfg.timbre_loss != "infonce":
        v, y, _ = _active(embedding, membership)
        return deep_clustering_item(v, y)
    if positives == "other-note":
        return info_nce_item(*_notes(embedding, membership), cfg.tau, cfg.max_anchors, generator)
    v, y, rows = _active(embedding, membership)
    return info_nce_item(v, y, cfg.tau, cfg.max_anchors, generator, rows if positives == "other-pitch" else None,
                         exclude_semitones)  # fmt: skip

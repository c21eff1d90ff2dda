"""The learning curve in transcription figures: the fixed validation mixtures transcribed and scored
during training, so MLflow plots note F and separated note F against examples seen, not only the loss.

A falling loss does not say whether notes got better or whether another chunk of training would still
help; these figures do. The decoding is fixed (the spec's DecodeParams defaults, never tuned here) and
K is given, so the curve measures the model alone and one epoch compares with the next. The mixtures
are short crops with notes cut at their edges: absolute figures sit below a full evaluation's, which
remains the measure of a finished model (mixscribe evaluate). A run that starts (not resumes) scores
the model it starts from too, as epoch -1: a continuation's curve then begins where its model began.
"""

from __future__ import annotations

import numpy as np

from mixscribe.transcription.decode import DecodeParams

AGNOSTIC = ("frame_f1", "note_f1")
SEPARATED = ("sep_note_f1", "cluster_purity")  # meaningful once the encoder trains


def validation_scores(model, examples: list, stage: str, params: DecodeParams = DecodeParams()) -> dict[str, float]:
    """Mean figures over the examples that hold notes, as {"val/note_f1": ...}; the separated ones only
    where the stage trains the encoder. Runs a float32 copy of the model on the CPU (the training copy
    may sit on a GPU, in bf16 and channels-last), leaving the training copy untouched."""
    from mixscribe.evaluate.metrics import clip_scores
    from mixscribe.transcription.inference import decode, run_model

    twin = cpu_copy(model)
    separated = stage != "amt"
    rows = []
    for example in examples:
        if not example.notes:
            continue
        k = len({n.stem for n in example.notes})
        frame, onset, emb = run_model(twin, example.audio, with_embedding=separated and k > 1)
        est, k_est = decode(frame, onset, emb, k, params, strict_k=False)
        rows.append(clip_scores(list(example.notes), est, frame > params.frame_threshold, k, k_est))
    names = AGNOSTIC + (SEPARATED if separated else ())
    return {f"val/{m}": float(np.mean([r[m] for r in rows])) for m in names} if rows else {}


def cpu_copy(model):
    """A float32 CPU copy of a model in eval mode (the CQT kernels rebuilt from its config)."""
    import torch

    from mixscribe.model.network import TwoBranchModel

    twin = TwoBranchModel(model.cfg)
    state = {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}  # fmt: skip
    twin.load_state_dict(state)
    return twin.eval()

"""Regenerate the golden fixtures: a fixed small checkpoint (seeded init) and its notes on a rendered
two-instrument clip, and the shipped default model's notes on the same clip. Run only when the model or decoding changes on purpose, and say why in the commit.
    .venv/bin/python tests/data/make_golden.py
"""

import json
from pathlib import Path

import torch

HERE = Path(__file__).parent


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE.parents[1]))
    from mixscribe.config import ModelConfig
    from mixscribe.model import TwoBranchModel, save_checkpoint
    from mixscribe.transcription.inference import transcribe_audio
    from tests.test_transcribe import GOLDEN_PARAMS, render_duet

    torch.manual_seed(1234)
    model = TwoBranchModel(ModelConfig()).eval()
    save_checkpoint(model, HERE / "golden.pt", extra={"purpose": "golden-output regression test, untrained"})
    audio, _ = render_duet()
    result = transcribe_audio(model, audio, k=2, params=GOLDEN_PARAMS, backend="float32")  # the same on every CPU
    notes = [[round(n.onset, 4), round(n.offset, 4), n.pitch, n.velocity, n.stem] for n in result.notes]
    (HERE / "golden_notes.json").write_text(json.dumps(notes) + "\n")
    print(f"{len(notes)} golden notes")
    from mixscribe.model import load_model

    shipped = transcribe_audio(load_model(), audio, k=2, backend="float32")  # the default model, its stored thresholds
    notes = [[round(n.onset, 4), round(n.offset, 4), n.pitch, n.velocity, n.stem] for n in shipped.notes]
    (HERE / "golden_default_notes.json").write_text(json.dumps(notes) + "\n")
    print(f"{len(notes)} golden notes of the shipped default model")


if __name__ == "__main__":
    main()

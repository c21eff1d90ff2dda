"""The shipped default model: it loads safely, matches its config, and separates a rendered
two-instrument clip from a SoundFont family it never heard. A regression test: the floors sit below
what the shipped weights measured (docs/model-card.md), so a broken model or decoding path fails it."""

import numpy as np
import pytest
import torch

from mixscribe.model.checkpoint import DEFAULT_CHECKPOINT, DEFAULT_ONNX
from tests.test_transcribe import render_duet

# Measured with the shipped weights on render_duet(860) (10 s, flute + bassoon from TimGM6mb, the
# held-out family): see docs/model-card.md. Floors leave room for float noise across machines.
NOTE_F_FLOOR = 0.75  # measured 0.847
SEP_NOTE_F_FLOOR = 0.74  # measured 0.845


@pytest.fixture(scope="module")
def shipped():
    from mixscribe import load_model

    return load_model()


def test_shipped_weights_are_small_safe_and_match_their_config(shipped):
    from mixscribe.config import ModelConfig, to_dict
    from mixscribe.model.network import count_trainable

    assert DEFAULT_CHECKPOINT.stat().st_size <= 1_000_000
    payload = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)  # tensors only, no code
    assert payload["model_config"] == to_dict(ModelConfig())  # the paper's model, every switch at its default
    assert (count_trainable(shipped.amt), count_trainable(shipped.encoder)) == (18_978, 25_983)
    assert not any(k.startswith("cqt.") for k in payload["state_dict"])  # kernels are rebuilt, never stored
    d = shipped.decode_params
    assert d is not None and 0 < d.onset_threshold < 1 and 0 < d.frame_threshold < 1  # tuned on validation
    assert payload["extra"]["packaged_from"]["thresholds_tuned_on"] == "valid"


def test_the_stored_decoding_reaches_a_model_loaded_by_the_model_room_alone(shipped):
    """The model room stores the decoding without reading it; transcription reads it from any loaded
    model, so one loaded without the transcription room's loader still transcribes as it was packaged."""
    from mixscribe.model import load_model
    from mixscribe.model.network import TwoBranchModel
    from mixscribe.transcription.inference import default_params
    from mixscribe.transcription.decode import DecodeParams

    raw = load_model()
    assert not hasattr(raw, "decode_params") and raw.extra["decode"]
    assert default_params(raw) == shipped.decode_params != DecodeParams()
    assert default_params(TwoBranchModel(shipped.cfg)) == DecodeParams()  # nothing stored: the defaults


def test_shipped_onnx_graph_matches_the_weights(shipped):
    import onnxruntime as ort

    session = ort.InferenceSession(str(DEFAULT_ONNX))
    x = (torch.randn(1, 256 * 120) * 0.1).float()
    got = session.run(None, {"audio": x.numpy()})
    with torch.no_grad():
        want = shipped(x)
    for g, w in zip(got, (want.frame, want.onset, want.embedding)):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4)


def _reference_notes(perfs) -> list:
    from mixscribe.schema import Note
    from mixscribe.schema import frame_to_seconds

    return [Note(frame_to_seconds(n.onset), frame_to_seconds(n.offset), n.pitch, n.velocity, stem)
            for stem, perf in enumerate(perfs) for n in perf.notes]  # fmt: skip


def test_shipped_model_separates_an_unseen_soundfont_duet(shipped):
    import mixscribe
    from mixscribe.evaluate.metrics import note_scores, separated_scores

    audio, perfs = render_duet(frames=860)
    ref = _reference_notes(perfs)
    notes = mixscribe.transcribe(audio, sr=22050, k=2)  # the default model, its stored thresholds
    assert {n.stem for n in notes} == {0, 1}
    agnostic = note_scores(ref, notes)["note_f1"]
    separated = separated_scores(ref, notes, 860)["sep_note_f1"]
    assert agnostic >= NOTE_F_FLOOR, f"note F {agnostic:.3f} < {NOTE_F_FLOOR}"
    assert separated >= SEP_NOTE_F_FLOOR, f"separated note F {separated:.3f} < {SEP_NOTE_F_FLOOR}"


def test_shipped_k_classifier_counts_the_duet(shipped):
    """Without K, the K classifier stored with the weights (fitted on validation) finds the duet's two
    instruments: the path a user without `-k` takes."""
    from mixscribe.transcription.inference import transcribe_audio

    assert shipped.decode_params.k_model is not None and shipped.decode_params.k_model.classes == (1, 2, 3, 4)
    audio, _ = render_duet(frames=860)
    result = transcribe_audio(shipped, audio)
    assert result.k_estimated and result.k == 2 and {n.stem for n in result.notes} == {0, 1}



def test_golden_output_of_the_shipped_model(shipped):
    """The shipped weights and the decoding path together: the same notes, pitches and tracks as when
    the weights were packaged (tests/data/make_golden.py regenerates them, on purpose only)."""
    import json

    from mixscribe.transcription.inference import transcribe_audio
    from tests.test_transcribe import DATA

    audio, _ = render_duet()
    got = {(round(n.onset, 2), n.pitch, n.stem) for n in transcribe_audio(shipped, audio, k=2, backend="float32").notes}
    want = {(round(o, 2), p, s) for o, _, p, _, s in json.loads((DATA / "golden_default_notes.json").read_text())}
    assert len(want) >= 10
    overlap = len(got & want) / max(len(got | want), 1)
    assert overlap >= 0.95, f"golden notes changed: {len(got)} now, {len(want)} expected, {overlap:.2%} shared"

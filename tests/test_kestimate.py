"""The K classifier (mixscribe/evaluate/kestimate.py) on synthetic notes with known K: K monophonic
voices whose notes' embeddings scatter around one direction per voice, of varied density."""

from __future__ import annotations

import numpy as np
import pytest

from mixscribe.config import from_dict, to_dict
from mixscribe.evaluate.decode import DecodeParams
from mixscribe.evaluate.kestimate import FEATURES, KModel, file_features, fit_k_model, window_features


def voices(k: int, seed: int, frames: int = 600, spread: float = 0.35) -> tuple[np.ndarray, np.ndarray, int, int]:
    """K voices, each a run of notes with gaps; (spans, u, frames, K)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 12))
    spans, u = [], []
    for v in range(k):
        t = int(rng.integers(0, 20))
        while t < frames - 8:
            length = int(rng.integers(8, 60))
            spans.append((t, min(t + length, frames)))
            u.append(centres[v] / np.linalg.norm(centres[v]) + spread * rng.normal(size=12))
            t += length + int(rng.integers(0, 30))
    u = np.array(u)
    return np.array(spans), u / np.linalg.norm(u, axis=1, keepdims=True), frames, k


def test_fitted_classifier_gets_k_right_on_fresh_clips_and_round_trips_as_config():
    train = [voices(k, seed) for k in (1, 2, 3, 4) for seed in range(12)]
    model, cv = fit_k_model(train)
    assert model is not None and model.classes == (1, 2, 3, 4)
    assert cv is not None and cv >= 0.8
    test = [voices(k, 1000 + seed) for k in (1, 2, 3, 4) for seed in range(8)]
    assert np.mean([model.estimate(s, u, n) == k for s, u, n, k in test]) >= 0.85
    # stored with a checkpoint as plain numbers, rebuilt by from_dict
    params = from_dict(DecodeParams, to_dict(DecodeParams(k_model=model)))
    assert params.k_model == model and isinstance(params.k_model, KModel)


def test_long_files_are_judged_in_windows_of_the_training_length():
    spans, u, _, _ = voices(3, 7, frames=3000)
    x = file_features(spans, u, 3000)
    assert x.shape == (5, len(FEATURES)) and np.isfinite(x).all()
    # the first window's features are those of its notes alone
    first = spans[:, 0] < 600
    np.testing.assert_allclose(x[0], window_features(np.clip(spans[first], 0, 600), u[first], 600))
    model, _ = fit_k_model([voices(k, s) for k in (1, 2, 3, 4) for s in range(12)])
    assert model.estimate(spans, u, 3000) == 3


def test_degenerate_inputs():
    model, _ = fit_k_model([voices(k, s) for k in (1, 3) for s in range(6)])
    assert model.classes == (1, 3)  # two classes: the binary fit is stored as two rows
    assert model.estimate(np.array([[0, 10]]), np.ones((1, 12)) / np.sqrt(12), 600) == 1  # one note: K 1
    spans, u, n, _ = voices(3, 1)
    assert model.estimate(spans[:2], u[:2], n) <= 2  # never more tracks than notes
    assert fit_k_model([voices(2, s) for s in range(5)]) == (None, None)  # one K only: nothing to learn
    few = [voices(1, 0), voices(1, 1), voices(2, 2)]  # too few clips per K to stratify: plain folds
    fitted, accuracy = fit_k_model(few)
    assert fitted is not None and fitted.classes == (1, 2) and accuracy in (0.0, 1 / 3, 2 / 3, 1.0)


@pytest.mark.parametrize("k", [2, 4])
def test_counts_of_sounding_notes_are_features(k):
    spans, u, n, _ = voices(k, 3)
    x = window_features(spans, u, n)
    counts = np.zeros(n)
    for a, b in spans:
        counts[a:b] += 1
    assert x[FEATURES.index("concurrency max")] == counts.max() <= k
    assert x[FEATURES.index("concurrency mean")] == pytest.approx(counts[counts > 0].mean())

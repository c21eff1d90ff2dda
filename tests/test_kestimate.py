"""The K classifier (mixscribe/transcription/kestimate.py) on synthetic notes with known K: K monophonic
voices of varied density, as the chorale parts are."""

from __future__ import annotations

import numpy as np
import pytest

from mixscribe.config import from_dict, to_dict
from mixscribe.transcription.decode import DecodeParams
from mixscribe.transcription.kestimate import FEATURES, KModel, file_features, fit_k_model, window_features


def voices(k: int, seed: int, frames: int = 600) -> tuple[np.ndarray, int, int]:
    """K voices, each a run of notes with gaps (rests); (spans, frames, K)."""
    rng = np.random.default_rng(seed)
    spans = []
    for _ in range(k):
        t = int(rng.integers(0, 20))
        while t < frames - 8:
            length = int(rng.integers(8, 60))
            spans.append((t, min(t + length, frames)))
            t += length + int(rng.integers(0, 30))
    return np.array(spans), frames, k


def test_fitted_classifier_gets_k_right_on_fresh_clips_and_round_trips_as_config():
    train = [voices(k, seed) for k in (1, 2, 3, 4) for seed in range(12)]
    model, cv = fit_k_model(train)
    assert model is not None and model.classes == (1, 2, 3, 4) and model.usable()
    assert cv is not None and cv >= 0.8
    test = [voices(k, 1000 + seed) for k in (1, 2, 3, 4) for seed in range(8)]
    assert np.mean([model.estimate(s, n) == k for s, n, k in test]) >= 0.85
    # stored with a checkpoint as plain numbers, rebuilt by from_dict, names of its features included
    params = from_dict(DecodeParams, to_dict(DecodeParams(k_model=model)))
    assert params.k_model == model and isinstance(params.k_model, KModel) and params.k_model.features == FEATURES
    older = {key: v for key, v in to_dict(model).items() if key != "features"}  # stored before features had names
    assert not from_dict(KModel, older).usable()


def test_long_files_are_judged_in_windows_of_the_training_length():
    spans, _, _ = voices(3, 7, frames=3000)
    x = file_features(spans, 3000)
    assert x.shape == (5, len(FEATURES)) and np.isfinite(x).all()
    # the first window's features are those of its notes alone
    first = spans[:, 0] < 600
    np.testing.assert_allclose(x[0], window_features(np.clip(spans[first], 0, 600), 600))
    model, _ = fit_k_model([voices(k, s) for k in (1, 2, 3, 4) for s in range(12)])
    assert model.estimate(spans, 3000) == 3


def test_degenerate_inputs():
    model, _ = fit_k_model([voices(k, s) for k in (1, 3) for s in range(6)])
    assert model.classes == (1, 3)  # two classes: the binary fit is stored as two rows
    assert model.estimate(np.array([[0, 10]]), 600) == 1  # one note: K 1
    spans, n, _ = voices(3, 1)
    assert model.estimate(spans[:2], n) <= 2  # never more tracks than notes
    assert fit_k_model([voices(2, s) for s in range(5)]) == (None, None)  # one K only: nothing to learn
    few = [voices(1, 0), voices(1, 1), voices(2, 2)]  # too few clips per K to stratify: plain folds
    fitted, accuracy = fit_k_model(few)
    assert fitted is not None and fitted.classes == (1, 2) and accuracy in (0.0, 1 / 3, 2 / 3, 1.0)


@pytest.mark.parametrize("k", [2, 4])
def test_counts_of_sounding_notes_are_features(k):
    spans, n, _ = voices(k, 3)
    x = window_features(spans, n)
    counts = np.zeros(n, int)
    for a, b in spans:
        counts[a:b] += 1
    sounding = counts[counts > 0]
    assert x[FEATURES.index("concurrency max")] == sounding.max() <= k
    assert x[FEATURES.index("concurrency mean")] == pytest.approx(sounding.mean())
    hist = [x[FEATURES.index(f"share sounding {i}")] for i in range(1, 8)]
    assert hist == pytest.approx([np.mean(sounding == i) for i in range(1, 8)]) and sum(hist) == pytest.approx(1.0)
    mode = int(np.bincount(sounding).argmax())
    assert x[FEATURES.index("concurrency mode")] == mode
    assert x[FEATURES.index("concurrency mode share")] == pytest.approx(np.mean(sounding == mode))


def test_counts_of_eight_or_more_share_the_last_bin():
    spans = np.array([(0, 100)] * 10 + [(100, 200)] * 8)  # 10 at once, then 8
    x = window_features(spans, 200)
    assert x[FEATURES.index("share sounding 8+")] == 1.0 and x[FEATURES.index("concurrency max")] == 10

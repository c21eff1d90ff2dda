"""Estimating K, the number of timbres, with a small classifier fitted on the validation set.

The eigengap of the note affinity alone gets K right on about a quarter of the synthetic clips with the
current embeddings: one instrument's notes are not compact enough for its gap to show. A multinomial
logistic regression over the histogram of how many decoded notes sound at once does much better: with
K voices the count sits at K most of the time. It reads the AMT branch's notes only, never the
embeddings: the embedding spectrum (tried: Laplacian eigenvalues and mean note cosine) added nothing on
validation and is exactly what fails on instruments the encoder cannot tell apart, where it says
"fewer timbres" (docs/model-card.md). It is fitted, like the thresholds, on the validation split only
(whose stems must include one-voice lines, `generator.line_prob`, for the histogram to mean K), and is
stored with the model as plain numbers with the names of its features (a checkpoint stays loadable with
weights_only; a classifier of other features is not used).

A file is cut into windows as long as the training clips (600 frames, 7 s), so the features never see a
duration the classifier was not fitted on; the windows' class probabilities are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW_FRAMES = 600  # the synthetic clips' length: the features' scale depends on it
MIN_NOTES = 2
MAX_COUNT = 8  # the histogram's last bin holds every count >= this
FEATURES = ("concurrency mean", "concurrency p50", "concurrency p75", "concurrency p90", "concurrency p95",
            "concurrency max", "concurrency mode", "concurrency mode share",
            *[f"share sounding {i}" for i in range(1, MAX_COUNT)], f"share sounding {MAX_COUNT}+")  # fmt: skip


def laplacian_eigenvalues(gram: np.ndarray, sharpness: float) -> np.ndarray:
    """Ascending eigenvalues of the normalised Laplacian of the sharpened note affinity
    exp(sharpness (cos - 1)), from the notes' cosine matrix `gram` (u @ u.T): the eigengap estimate."""
    a = np.exp(sharpness * (np.clip(gram, -1.0, 1.0) - 1.0))
    d = a.sum(1)
    return np.sort(np.linalg.eigvalsh(np.eye(len(gram)) - a / np.sqrt(np.outer(d, d))))


def window_features(spans: np.ndarray, n_frames: int) -> np.ndarray:
    """Features of one window's notes, spans [n, 2] of (start, end) frames in the window: statistics
    and histogram of the number of notes sounding, over the frames where any does."""
    count = np.zeros(n_frames + 1)
    np.add.at(count, np.clip(spans[:, 0], 0, n_frames), 1)
    np.add.at(count, np.clip(spans[:, 1], 0, n_frames), -1)
    sounding = np.cumsum(count)[:n_frames].astype(np.int64)
    sounding = sounding[sounding > 0]
    if not len(sounding):
        sounding = np.ones(1, np.int64)
    stats = [sounding.mean(), *np.percentile(sounding, [50, 75, 90, 95]), sounding.max()]
    hist = np.bincount(np.minimum(sounding, MAX_COUNT), minlength=MAX_COUNT + 1)[1:] / len(sounding)
    mode = int(np.argmax(hist)) + 1
    return np.concatenate([stats, [mode, hist[mode - 1]], hist])


def file_features(spans: np.ndarray, n_frames: int, window: int = WINDOW_FRAMES) -> np.ndarray:
    """[windows, features] for every window of `window` frames holding >= MIN_NOTES note onsets (a
    last, shorter window counts when it is at least half as long); [0, features] when none does."""
    rows = []
    for w0 in range(0, max(n_frames - window // 2, 1), window):
        sel = (spans[:, 0] >= w0) & (spans[:, 0] < w0 + window)
        if sel.sum() >= MIN_NOTES:
            length = min(window, n_frames - w0)
            rows.append(window_features(np.clip(spans[sel] - w0, 0, length), length))
    return np.array(rows).reshape(len(rows), len(FEATURES))


@dataclass(frozen=True)
class KModel:
    """Standardisation and multinomial logistic regression, as numbers (sklearn fits it)."""

    classes: tuple[int, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[tuple[float, ...], ...]  # [classes, features]
    intercept: tuple[float, ...]
    window: int = WINDOW_FRAMES
    features: tuple[str, ...] = ()  # the names it was fitted on; () for a classifier older than them

    def usable(self) -> bool:
        """Fitted on the features this code computes (an older stored classifier is not)."""
        return self.features == FEATURES

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = z @ np.asarray(self.coef).T + np.asarray(self.intercept)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def estimate(self, spans: np.ndarray, n_frames: int) -> int:
        """K for a whole file from its notes' (start, end) frames: the class of the windows' mean
        probability; 1 for fewer than MIN_NOTES notes; never more than the number of notes."""
        spans = np.asarray(spans, np.int64).reshape(-1, 2)
        if len(spans) < MIN_NOTES:
            return 1
        x = file_features(spans, n_frames, self.window)
        if not len(x):  # notes too sparse for any window: the whole file as one
            x = window_features(spans, n_frames)[None]
        return self.decide(x, len(spans))

    def decide(self, x: np.ndarray, n_notes: int) -> int:
        """K from a file's window features [windows, features]: the class of their mean probability,
        never more than the number of notes."""
        k = self.classes[int(np.argmax(self.probabilities(x).mean(0)))]
        return int(min(k, n_notes))


def fit_k_model(clips: list[tuple[np.ndarray, int, int]], c: float = 0.3,
                seed: int = 0) -> tuple[KModel | None, float | None]:  # fmt: skip
    """Fit on validation clips (note spans, n_frames, true K); one row per window, labelled with its clip's
    K. Returns the model and its accuracy per clip cross-validated over up to 5 folds by clip
    (stratified by K where every K has enough clips), or (None, None) when fewer than two K values occur."""
    import warnings

    from sklearn.model_selection import KFold, StratifiedKFold

    feats = [file_features(s, n) for s, n, _ in clips]
    keep = [i for i, f in enumerate(feats) if len(f)]
    ks = np.array([clips[i][2] for i in keep])
    if len(set(ks.tolist())) < 2:
        return None, None

    def fit(idx: np.ndarray) -> KModel:
        return _fit_rows(np.concatenate([feats[keep[i]] for i in idx]),
                         np.concatenate([[ks[i]] * len(feats[keep[i]]) for i in idx]), c)  # fmt: skip

    folds = min(5, len(keep))
    counts = np.bincount(ks)
    stratified = counts[counts > 0].min() >= folds
    splitter = (StratifiedKFold if stratified else KFold)(folds, shuffle=True, random_state=seed)
    hits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, test in splitter.split(np.zeros(len(keep)), ks):
            model = fit(train)
            hits += [model.decide(feats[keep[i]], len(clips[keep[i]][0])) == ks[i] for i in test]
    return fit(np.arange(len(keep))), float(np.mean(hits))


def _fit_rows(x: np.ndarray, y: np.ndarray, c: float) -> KModel:
    """Standardise, then multinomial logistic regression; a single class gives a constant model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y)
    if len(classes) == 1:
        n = x.shape[1]
        return KModel((int(classes[0]),), (0.0,) * n, (1.0,) * n, ((0.0,) * n,), (0.0,), features=FEATURES)
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x), y)
    coef, intercept = lr.coef_, lr.intercept_
    if len(lr.classes_) == 2:  # sklearn stores one row for two classes: the same softmax as two rows
        coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return KModel(tuple(int(k) for k in lr.classes_), tuple(map(float, scaler.mean_)),
                  tuple(float(s) if s > 0 else 1.0 for s in scaler.scale_),
                  tuple(tuple(map(float, row)) for row in coef), tuple(map(float, intercept)),
                  features=FEATURES)  # fmt: skip


def note_spans(raw) -> np.ndarray:
    """[n, 2] (start, end) frames of decoded notes (RawNote)."""
    return np.array([(n.start, n.end) for n in raw], np.int64).reshape(-1, 2)

"""Estimating K, the number of timbres, with a small classifier fitted on the validation set.

The eigengap of the note affinity alone gets K right on about a quarter of the synthetic clips with the
current embeddings: one instrument's notes are not compact enough for its gap to show. A multinomial
logistic regression over a few statistics of a window of notes does much better, because it combines
the affinity spectrum with cues the embeddings do not carry: how many notes sound together and how
dense the notes are. It is fitted, like the thresholds, on the validation split only, and stored with
the model as plain numbers (a checkpoint stays loadable with weights_only).

A file is cut into windows as long as the training clips (600 frames, 7 s), so the features never see a
duration the classifier was not fitted on; the windows' class probabilities are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixscribe.schema import HOP, SAMPLE_RATE

WINDOW_FRAMES = 600  # the synthetic clips' length: the features' scale depends on it
SHARPNESSES = (3.0, 10.0)  # affinity exp(s (cos - 1)) whose normalised-Laplacian spectrum is a feature
EIGENVALUES = 6  # per sharpness: the smallest non-trivial eigenvalues
MIN_NOTES = 2
FEATURES = ("concurrency mean", "concurrency p50", "concurrency p75", "concurrency p90", "concurrency p95",
            "concurrency max", "log notes per second",
            *[f"laplacian s={s:g} eig {i}" for s in SHARPNESSES for i in range(1, EIGENVALUES + 1)],
            "mean note cosine")  # fmt: skip


def laplacian_eigenvalues(gram: np.ndarray, sharpness: float) -> np.ndarray:
    """Ascending eigenvalues of the normalised Laplacian of the sharpened note affinity
    exp(sharpness (cos - 1)), from the notes' cosine matrix `gram` (u @ u.T). The eigengap estimate
    and the classifier's spectrum features both read it."""
    a = np.exp(sharpness * (np.clip(gram, -1.0, 1.0) - 1.0))
    d = a.sum(1)
    return np.sort(np.linalg.eigvalsh(np.eye(len(gram)) - a / np.sqrt(np.outer(d, d))))


def _spectrum_feature(gram: np.ndarray, sharpness: float) -> np.ndarray:
    """The EIGENVALUES smallest non-trivial eigenvalues (padded with 1: 'no cluster structure')."""
    eig = laplacian_eigenvalues(gram, sharpness)[1 : EIGENVALUES + 1]
    return np.pad(eig, (0, EIGENVALUES - len(eig)), constant_values=1.0)


def window_features(spans: np.ndarray, u: np.ndarray, n_frames: int) -> np.ndarray:
    """Features of one window's notes: spans [n, 2] of (start, end) frames in the window, u [n, D] their
    L2-normalised embeddings."""
    count = np.zeros(n_frames + 1)
    np.add.at(count, np.clip(spans[:, 0], 0, n_frames), 1)
    np.add.at(count, np.clip(spans[:, 1], 0, n_frames), -1)
    sounding = np.cumsum(count)[:n_frames]
    sounding = sounding[sounding > 0]
    if not len(sounding):
        sounding = np.ones(1)
    conc = [sounding.mean(), *np.percentile(sounding, [50, 75, 90, 95]), sounding.max()]
    density = np.log(len(u) / (n_frames * HOP / SAMPLE_RATE))
    gram = u @ u.T
    spectra = [_spectrum_feature(gram, s) for s in SHARPNESSES]
    mean_cos = gram[np.triu_indices(len(u), 1)].mean()
    return np.concatenate([conc, [density], *spectra, [mean_cos]])


def file_features(spans: np.ndarray, u: np.ndarray, n_frames: int, window: int = WINDOW_FRAMES) -> np.ndarray:
    """[windows, features] for every window of `window` frames holding >= MIN_NOTES note onsets (a
    last, shorter window counts when it is at least half as long); [0, features] when none does."""
    rows = []
    for w0 in range(0, max(n_frames - window // 2, 1), window):
        sel = (spans[:, 0] >= w0) & (spans[:, 0] < w0 + window)
        if sel.sum() >= MIN_NOTES:
            length = min(window, n_frames - w0)
            rows.append(window_features(np.clip(spans[sel] - w0, 0, length), u[sel], length))
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

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = z @ np.asarray(self.coef).T + np.asarray(self.intercept)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def estimate(self, spans: np.ndarray, u: np.ndarray, n_frames: int) -> int:
        """K for a whole file: the class of the windows' mean probability; 1 for fewer than MIN_NOTES
        notes; never more than the number of notes."""
        if len(u) < MIN_NOTES:
            return 1
        spans = np.asarray(spans, np.int64).reshape(-1, 2)
        x = file_features(spans, u, n_frames, self.window)
        if not len(x):  # notes too sparse for any window: the whole file as one
            x = window_features(spans, u, n_frames)[None]
        return self.decide(x, len(u))

    def decide(self, x: np.ndarray, n_notes: int) -> int:
        """K from a file's window features [windows, features]: the class of their mean probability,
        never more than the number of notes."""
        k = self.classes[int(np.argmax(self.probabilities(x).mean(0)))]
        return int(min(k, n_notes))


def fit_k_model(clips: list[tuple[np.ndarray, np.ndarray, int, int]], c: float = 0.3,
                seed: int = 0) -> tuple[KModel | None, float | None]:  # fmt: skip
    """Fit on validation clips (spans, u, n_frames, true K); one row per window, labelled with its clip's
    K. Returns the model and its accuracy per clip cross-validated over up to 5 folds by clip
    (stratified by K where every K has enough clips), or (None, None) when fewer than two K values occur."""
    import warnings

    from sklearn.model_selection import KFold, StratifiedKFold

    feats = [file_features(s, u, n) for s, u, n, _ in clips]
    keep = [i for i, f in enumerate(feats) if len(f)]
    ks = np.array([clips[i][3] for i in keep])
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
            hits += [model.decide(feats[keep[i]], len(clips[keep[i]][1])) == ks[i] for i in test]
    return fit(np.arange(len(keep))), float(np.mean(hits))


def _fit_rows(x: np.ndarray, y: np.ndarray, c: float) -> KModel:
    """Standardise, then multinomial logistic regression; a single class gives a constant model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y)
    if len(classes) == 1:
        n = x.shape[1]
        return KModel((int(classes[0]),), (0.0,) * n, (1.0,) * n, ((0.0,) * n,), (0.0,))
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x), y)
    coef, intercept = lr.coef_, lr.intercept_
    if len(lr.classes_) == 2:  # sklearn stores one row for two classes: the same softmax as two rows
        coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return KModel(tuple(int(k) for k in lr.classes_), tuple(map(float, scaler.mean_)),
                  tuple(float(s) if s > 0 else 1.0 for s in scaler.scale_),
                  tuple(tuple(map(float, row)) for row in coef), tuple(map(float, intercept)))  # fmt: skip


def note_spans(raw) -> np.ndarray:
    """[n, 2] (start, end) frames of decoded notes (RawNote)."""
    return np.array([(n.start, n.end) for n in raw], np.int64).reshape(-1, 2)

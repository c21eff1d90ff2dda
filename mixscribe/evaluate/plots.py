"""Figures of an evaluation report: bars per set, curves per K, the t-SNE of note embeddings coloured by
true instrument (the paper's Figure 5), and piano rolls of the best and worst clips. Each is written
atomically; matplotlib runs headless (Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mixscribe.schema import Note

BAR_METRICS = ("frame_f1", "note_f1", "sep_note_f1", "cluster_purity")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    from mixscribe.fsio import atomic_local_write

    atomic_local_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    pyplot().close(fig)
    return path


def bars_per_set(summary: dict[str, float], path: Path) -> Path:
    """One group of bars per set (all K pooled), one bar per metric, in %."""
    plt = pyplot()
    sets = sorted({k.split("/")[1] for k in summary})
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(sets)), 3.5))
    width = 0.8 / len(BAR_METRICS)
    for i, m in enumerate(BAR_METRICS):
        values = [100 * summary.get(f"eval/{s}/all/{m}", np.nan) for s in sets]
        ax.bar(np.arange(len(sets)) + i * width, values, width, label=m)
    ax.set_xticks(np.arange(len(sets)) + width * (len(BAR_METRICS) - 1) / 2, sets)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    return save_figure(fig, path)


def register_per_pair(pairs: dict[str, float], path: Path, limit: int = 24) -> Path:
    """Per instrument pair (2-part clips, the pooled sets' worst separated first): separated note F
    beside how far one pitch threshold explains the estimated tracks and the true parts. Where the
    first register bar stands far above the second, the tracks follow register rather than timbre."""
    plt = pyplot()
    keys = sorted({k.rsplit("/", 1)[0] for k in pairs}, key=lambda k: pairs[f"{k}/sep_note_f1"])[:limit]
    labels = [f"{k.split('/')[3].replace('_and_', '+')} ({k.split('/')[1]})" for k in keys]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * len(keys)))
    y = np.arange(len(keys))
    for i, (metric, name) in enumerate((("sep_note_f1", "separated note F"), ("register_est", "register: tracks"),
                                        ("register_ref", "register: true parts"))):  # fmt: skip
        ax.barh(y + (i - 1) * 0.27, [100 * pairs[f"{k}/{metric}"] for k in keys], 0.27, label=name)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("%")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def curves_per_k(summary: dict[str, float], path: Path, metric: str = "sep_note_f1") -> Path:
    """The metric against the number of instruments K, one line per set."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for s in sorted({k.split("/")[1] for k in summary}):
        ks = sorted(int(k.split("/")[2][:-3]) for k in summary if k.startswith(f"eval/{s}/") and k.split("/")[2] != "all"
                    and k.endswith(f"/{metric}"))  # fmt: skip
        if ks:
            ax.plot(ks, [100 * summary[f"eval/{s}/{k}mix/{metric}"] for k in ks], marker="o", label=s)
    ax.set_xlabel("instruments in the mixture (K)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def tsne_embeddings(embeddings: np.ndarray, labels: list[str], path: Path, seed: int = 0) -> Path:
    """Note embeddings (N x D) projected with scikit-learn's t-SNE, coloured by true instrument."""
    from sklearn.manifold import TSNE

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if len(embeddings) >= 5:
        xy = TSNE(n_components=2, perplexity=min(30.0, (len(embeddings) - 1) / 3), random_state=seed,
                  init="pca").fit_transform(np.asarray(embeddings, np.float64))  # fmt: skip
        names = sorted(set(labels))
        cmap = plt.get_cmap("tab20")
        for i, name in enumerate(names):
            sel = np.array([lab == name for lab in labels])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=cmap(i % 20), label=name)
        ax.legend(fontsize=6, markerscale=2, loc="best")
    else:
        ax.text(0.5, 0.5, f"{len(embeddings)} matched notes: too few for t-SNE", ha="center", transform=ax.transAxes)
    ax.set_title("note embeddings by true instrument (t-SNE)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path)


def piano_roll(ref: list[Note], est: list[Note], title: str, path: Path) -> Path:
    """Estimated notes as coloured bars (one colour per track), reference notes outlined in black on top,
    so both stay visible even when a weak model floods the roll."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    cmap = plt.get_cmap("tab10")
    for n in est:
        ax.plot([n.onset, n.offset], [n.pitch, n.pitch], color=cmap(n.stem % 10), linewidth=2, alpha=0.6)
    for n in ref:
        ax.add_patch(_box(n))
    pitches = [n.pitch for n in ref + est] or [60]
    ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set_xlim(0, max([n.offset for n in ref + est] or [1.0]))
    ax.set_xlabel("seconds")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _box(n: Note):
    from matplotlib.patches import Rectangle

    return Rectangle((n.onset, n.pitch - 0.5), n.offset - n.onset, 1.0, fill=False, edgecolor="black", linewidth=0.8, zorder=3)


CURVE_METRICS = (("val/loss", "validation loss"), ("val/note_f1", "note F"), ("val/sep_note_f1", "separated note F"))


def learning_curve(history: list[dict], title: str, path: Path) -> Path:
    """A training run's validation figures against the examples its branch has seen: the loss, and the
    transcription figures where they were scored (train.score_valid_every), one panel each."""
    plt = pyplot()
    panels = [(key, label) for key, label in CURVE_METRICS if any(key in h for h in history)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        points = [(h["train/examples_seen"], h[key]) for h in history if key in h and "train/examples_seen" in h]
        x, y = zip(*points) if points else ((), ())
        ax.plot(x, [100 * v for v in y] if key != "val/loss" else y, marker="o", ms=3)
        ax.set_xlabel("training examples seen")
        ax.set_ylabel(label + (" (%)" if key != "val/loss" else ""))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)

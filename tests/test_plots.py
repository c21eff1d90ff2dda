"""Report figures: each one a real PNG, written atomically, for typical and degenerate inputs."""

import numpy as np

from mixscribe.evaluate.plots import bars_per_set, curves_per_k, piano_roll, register_per_pair, tsne_embeddings
from mixscribe.schema import Note

SUMMARY = {
    **{f"eval/{s}/{k}/{m}": v for s, v in (("valid", 0.6), ("unseen-family", 0.3))
       for k in ("all", "2mix", "3mix") for m in ("frame_f1", "note_f1", "sep_note_f1", "cluster_purity")},
}


def is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_bars_and_k_curves(tmp_path):
    assert is_png(bars_per_set(SUMMARY, tmp_path / "bars.png"))
    assert is_png(curves_per_k(SUMMARY, tmp_path / "k.png"))
    assert not list(tmp_path.glob(".tmp-*"))


def test_register_per_pair(tmp_path):
    pairs = {f"eval/valid/pair/{p}/{m}": v for p, v in (("reed_and_strings", 0.5), ("brass_and_pipe", 0.9))
             for m in ("sep_note_f1", "cluster_purity", "register_est", "register_ref", "clips")}  # fmt: skip
    assert is_png(register_per_pair(pairs, tmp_path / "pairs.png"))
    assert not list(tmp_path.glob(".tmp-*"))


def test_tsne_separates_two_instruments_and_copes_with_few_notes(tmp_path):
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(0, 0.05, (40, 12)) + 1, rng.normal(0, 0.05, (40, 12)) - 1])
    labels = ["strings"] * 40 + ["reed"] * 40
    assert is_png(tsne_embeddings(emb, labels, tmp_path / "tsne.png"))
    assert tsne_embeddings(emb[:3], labels[:3], tmp_path / "few.png").stat().st_size > 1000


def test_piano_roll(tmp_path):
    ref = [Note(0, 1, 60, 90, 0), Note(1, 2, 64, 90, 1)]
    est = [Note(0.01, 1, 60, 90, 1), Note(1, 2.1, 64, 90, 0)]
    assert is_png(piano_roll(ref, est, "clip-0 (sep F 100 %)", tmp_path / "roll.png"))
    assert is_png(piano_roll([], [], "empty", tmp_path / "empty.png"))

"""Real-recording sets: each reader on a fixture folder laid out exactly as its dataset is published
(tiny synthetic audio and annotation files written here), the paper's mixtures, the references, and one
end-to-end `mixscribe evaluate --dataset` through the real CLI, Ray and MLflow store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from mixscribe.evaluate.datasets import (BACH10_F0_HOP, BACH10_F0_START, DatasetError, Protocol, RefNote,
                                         build_dataset_set, f0_to_notes, piece_clips, read_dataset)  # fmt: skip
from tests.conftest import run_cli

RATE = 44100
SECONDS = 4.0


def tone(notes: list[tuple[float, float, int]], harmonics: tuple[float, ...], rate: int = RATE,
         seconds: float = SECONDS) -> np.ndarray:  # fmt: skip
    """A part as harmonic tones with short fades: each instrument gets its own harmonic balance."""
    out = np.zeros(int(seconds * rate), np.float32)
    for onset, offset, pitch in notes:
        a, b = int(onset * rate), min(int(offset * rate), out.size)
        t = np.arange(b - a) / rate
        f = 440.0 * 2 ** ((pitch - 69) / 12)
        wave = sum(h * np.sin(2 * np.pi * f * (i + 1) * t) for i, h in enumerate(harmonics))
        fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
        out[a:b] += 0.2 * wave * fade
    return out


# BACH10-style chorale fragment: four parts, whole notes, voices in their own registers
BACH10_NOTES = [
    [(0.2, 1.8, 72), (2.0, 3.8, 74)],  # violin
    [(0.2, 1.8, 67), (2.0, 3.8, 65)],  # clarinet
    [(0.2, 1.8, 60), (2.0, 3.8, 62)],  # saxphone
    [(0.2, 1.8, 48), (2.0, 3.8, 46)],  # bassoon
]
HARMONICS = [(1.0, 0.5, 0.3), (1.0, 0.05, 0.4, 0.02, 0.2), (1.0, 0.8, 0.6, 0.4), (1.0, 0.7, 0.2, 0.3)]


def f0_track(notes: list[tuple[float, float, int]], frames: int) -> np.ndarray:
    """The GTF0s row of a part: fractional MIDI per 10 ms frame (a little vibrato), 0 where silent."""
    times = BACH10_F0_START + BACH10_F0_HOP * np.arange(frames)
    row = np.zeros(frames)
    for onset, offset, pitch in notes:
        on = (times >= onset) & (times < offset)
        row[on] = pitch + 0.3 * np.sin(2 * np.pi * 5 * times[on])
    return row


def make_bach10(root, pieces=("01-AchGottundHerr", "02-AchLiebenChristen"), aligned=("01-AchGottundHerr",)):
    """Pieces as published; those in `aligned` also carry NN-Title.txt (the aligned score), the others
    only the F0 tracks."""
    from scipy.io import savemat

    frames = int((SECONDS - BACH10_F0_START) / BACH10_F0_HOP)
    for piece in pieces:
        folder = root / piece
        folder.mkdir(parents=True)
        for (name, notes, harmonics) in zip(("violin", "clarinet", "saxphone", "bassoon"), BACH10_NOTES, HARMONICS):
            sf.write(folder / f"{piece}-{name}.wav", tone(notes, harmonics), RATE)
        sf.write(folder / f"{piece}.wav", sum(tone(n, h) for n, h in zip(BACH10_NOTES, HARMONICS)), RATE)
        savemat(folder / f"{piece}-GTF0s.mat", {"GTF0s": np.stack([f0_track(n, frames) for n in BACH10_NOTES])})
        (folder / f"{piece}.mid").write_bytes(b"")  # the score MIDI is in the folder, unused
        if piece in aligned:
            lines = [f"{round(1000 * on)}\t{round(1000 * off)}\t{pitch}\t{part}"
                     for part, notes in enumerate(BACH10_NOTES, 1) for on, off, pitch in notes]  # fmt: skip
            (folder / f"{piece}.txt").write_text("\n".join(sorted(lines, key=lambda x: int(x.split()[0]))) + "\n")
    return root


def test_f0_track_to_notes_hand_checked():
    """Frames: 5 silent, 31 around MIDI 60 with one frame of vibrato rounding to 61, 3 silent, 10 at 64,
    then a 2-frame blip (a tracker glitch, not a note)."""
    row = np.r_[np.zeros(5), np.full(20, 60.2), [60.6], np.full(10, 59.9), np.zeros(3), np.full(10, 64.0),
                np.zeros(5), [67.0, 67.0], np.zeros(5)]  # fmt: skip
    notes = f0_to_notes(row)
    assert [n.pitch for n in notes] == [60, 64]
    assert notes[0].onset == pytest.approx(0.023 + 0.05) and notes[0].offset == pytest.approx(0.023 + 0.36)
    assert notes[1].onset == pytest.approx(0.023 + 0.39) and notes[1].offset == pytest.approx(0.023 + 0.49)


def test_bach10_aligned_score_hand_checked(tmp_path):
    """Lines of NN-Title.txt: onset ms, offset ms, pitch, part. A repeated note with no gap stays two
    notes (what the F0 track cannot show); parts come back in BACH10's order, each sorted by onset."""
    from mixscribe.evaluate.datasets import read_bach10_alignment

    path = tmp_path / "01-Test.txt"
    path.write_text("1000\t1500\t60\t2\n0\t500\t72\t1\n500\t1000\t72\t1\n250\t900\t48\t4\n")
    violin, clarinet, sax, bassoon = read_bach10_alignment(path)
    assert violin == [RefNote(0.0, 0.5, 72), RefNote(0.5, 1.0, 72)]
    assert clarinet == [RefNote(1.0, 1.5, 60)] and sax == [] and bassoon == [RefNote(0.25, 0.9, 48)]
    for bad in ("0\t500\t72\t5\n", "0\t500\t72\t0\n", "0\t500\n"):
        path.write_text(bad)
        with pytest.raises(DatasetError, match=r"01-Test\.txt:1: expected 'onset_ms offset_ms pitch part\(1-4\)'"):
            read_bach10_alignment(path)


def test_bach10_reader_and_the_papers_mixtures(tmp_path):
    pieces = read_dataset("bach10", make_bach10(tmp_path / "Bach10"))
    assert [p.name for p in pieces] == ["01-AchGottundHerr", "02-AchLiebenChristen"]
    parts = pieces[0].parts
    assert [p.instrument for p in parts] == ["violin", "clarinet", "saxphone", "bassoon"]
    assert [p.gm_program for p in parts] == [40, 71, 66, 70]
    for part, expected in zip(parts, BACH10_NOTES):  # from the aligned score: the written notes exactly
        assert [(n.onset, n.offset, n.pitch) for n in part.notes] == [(pytest.approx(a), pytest.approx(b), p)
                                                                      for a, b, p in expected]  # fmt: skip
    for part, expected in zip(pieces[1].parts, BACH10_NOTES):  # no .txt: from the F0 tracks, within a frame
        assert [n.pitch for n in part.notes] == [p for _, _, p in expected]
        for got, (onset, offset, _) in zip(part.notes, expected):
            assert abs(got.onset - onset) <= 0.011 and abs(got.offset - offset) <= 0.011
    clips = piece_clips(pieces[0], "bach10", Protocol((2, 3, 4), whole=False))
    assert [len(c.stems) for c in clips] == [2] * 6 + [3] * 4 + [4]  # C(4,2) + C(4,3) + C(4,4)
    assert clips[0].id == "01-AchGottundHerr/violin+clarinet" and clips[0].split == "bach10"
    duo = clips[0]
    assert {n.stem: n.pitch for n in duo.notes if n.onset < 1} == {0: 72, 1: 67}  # stems renumbered per clip
    assert duo.num_samples % 256 == 0 and duo.sample_rate == 22050
    assert abs(duo.num_samples / 22050 - SECONDS) < 0.02  # resampled from 44.1 kHz, not cut
    peak = max(np.abs(s.audio()).max() for s in clips[-1].stems)
    assert 0.95 < peak < 1.0  # one gain per piece: the loudest part just below full scale
    assert len({s.gain for s in clips[-1].stems}) == 1


def test_urmp_reader_merges_parts_of_one_instrument_and_keeps_2_and_3_instrument_pieces(tmp_path):
    root = tmp_path / "URMP" / "Dataset"
    layout = {"01_Jupiter_vn_vc": ["vn", "vc"], "02_Sonata_vn_vn_vc": ["vn", "vn", "vc"],
              "03_Dance_fl_cl_tpt": ["fl", "cl", "tpt"], "04_Quartet_vn_vn_va_vc": ["vn", "vn", "va", "vc"],
              "05_Quintet_fl_ob_cl_hn_bn": ["fl", "ob", "cl", "hn", "bn"]}  # fmt: skip
    for folder, codes in layout.items():
        number, title = folder.split("_")[:2]
        (root / folder).mkdir(parents=True)
        sf.write(root / folder / f"AuMix_{folder}.wav", np.zeros(RATE, np.float32), RATE)
        for i, code in enumerate(codes, 1):
            pitch = 60 + 5 * i
            sf.write(root / folder / f"AuSep_{i}_{code}_{number}_{title}.wav", tone([(0.1, 0.9, pitch)], (1.0, 0.3),
                                                                                 seconds=1.0), RATE)  # fmt: skip
            hz = 440.0 * 2 ** ((pitch - 69) / 12)
            (root / folder / f"Notes_{i}_{code}_{number}_{title}.txt").write_text(f"0.100\t{hz:.3f}\t0.800\n\n")
            (root / folder / f"F0s_{i}_{code}_{number}_{title}.txt").write_text("0.0 0.0\n")
    (root / "Supplementary_Files").mkdir()  # not a piece
    pieces = {p.name: p for p in read_dataset("urmp", tmp_path / "URMP")}
    assert sorted(pieces) == sorted(layout)
    sonata = pieces["02_Sonata_vn_vn_vc"]
    assert [p.instrument for p in sonata.parts] == ["vn", "vc"] and len(sonata.parts[0].audio) == 2
    assert [n.pitch for n in sonata.parts[0].notes] == [65, 70]  # both violins' notes in one timbre
    assert sonata.parts[0].notes[0] == RefNote(0.1, pytest.approx(0.9), 65)
    protocol = Protocol((2, 3), whole=True)
    assert {name: protocol.mixtures(p) for name, p in pieces.items()} == {
        "01_Jupiter_vn_vc": [(0, 1)], "02_Sonata_vn_vn_vc": [(0, 1)], "03_Dance_fl_cl_tpt": [(0, 1, 2)],
        "04_Quartet_vn_vn_va_vc": [(0, 1, 2)], "05_Quintet_fl_ob_cl_hn_bn": []}  # fmt: skip
    (clip,) = piece_clips(sonata, "urmp", protocol)
    violins = clip.stems[0].audio()
    assert np.abs(violins).max() > 1.5 * np.abs(clip.stems[1].audio()).max()  # two recordings summed


def test_phenicx_reader_sums_players_and_reads_note_names(tmp_path):
    root = tmp_path / "PHENICX-Anechoic"
    (root / "audio" / "mozart").mkdir(parents=True)
    (root / "annotations" / "mozart").mkdir(parents=True)
    for name in ("violin1", "violin2", "viola", "cello"):
        sf.write(root / "audio" / "mozart" / f"{name}.wav", tone([(0.0, 0.9, 60)], (1.0,), seconds=1.0), RATE)
    for name, text in (("violin", "0.10,0.50,A4\n0.50,0.90,C#5\n"), ("viola", "0.1,0.9,Eb4\n"),
                       ("cello", "0.1,0.9,C3\n"), ("violin_o", "0,1,A4\n")):  # fmt: skip
        (root / "annotations" / "mozart" / f"{name}.txt").write_text(text)
    (piece,) = read_dataset("phenicx", root)
    parts = {p.instrument: p for p in piece.parts}
    assert sorted(parts) == ["cello", "viola", "violin"]  # *_o.txt (the unaligned score) is no part
    assert [a.name for a in parts["violin"].audio] == ["violin1.wav", "violin2.wav"]  # viola.wav is not a violin
    assert [n.pitch for n in parts["violin"].notes] == [69, 73] and parts["viola"].notes[0].pitch == 63
    assert parts["cello"].notes == (RefNote(0.1, 0.9, 48),)
    assert Protocol((), whole=True).mixtures(piece) == [(0, 1, 2)]  # the full orchestra


@pytest.mark.parametrize("dataset,remove,named", [
    ("bach10", "01-AchGottundHerr/01-AchGottundHerr-saxphone.wav", "01-AchGottundHerr-saxphone.wav: missing"),
    ("bach10", "02-AchLiebenChristen/02-AchLiebenChristen-GTF0s.mat", "02-AchLiebenChristen-GTF0s.mat: missing"),
])  # fmt: skip
def test_partial_data_is_named_before_any_work(tmp_path, dataset, remove, named):
    home = make_bach10(tmp_path / "Bach10")
    (home / remove).unlink()
    out = tmp_path / "shards"
    with pytest.raises(DatasetError, match=named.replace(".", r"\.")):
        build_dataset_set(dataset, home, str(out))
    assert not out.exists()  # nothing written


def test_bad_annotation_lines_and_empty_folders_are_named(tmp_path):
    root = tmp_path / "PHENICX-Anechoic"
    (root / "audio" / "mozart").mkdir(parents=True)
    (root / "annotations" / "mozart").mkdir(parents=True)
    sf.write(root / "audio" / "mozart" / "horn.wav", np.zeros(RATE, np.float32), RATE)
    (root / "annotations" / "mozart" / "horn.txt").write_text("0.1,0.5,A4\n0.5,oops,B4\n")
    with pytest.raises(DatasetError, match=r"horn\.txt:2: expected 'onset,offset,note name'"):
        read_dataset("phenicx", root)
    (root / "annotations" / "mozart" / "flute.txt").write_text("0.1,0.5,A4\n")
    with pytest.raises(DatasetError, match=r"flute\.wav: missing"):
        read_dataset("phenicx", root)
    with pytest.raises(DatasetError, match="no BACH10 piece folders"):
        read_dataset("bach10", tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        read_dataset("urmp", tmp_path / "nowhere")


def test_evaluate_dataset_end_to_end(tmp_path):
    """The real CLI scores the shipped model on a BACH10-laid-out fixture: the report's per-K rows,
    MLflow's eval/bach10/{K}mix/... figures; the mixtures are built once (a re-run reuses them)."""
    from mlflow.tracking import MlflowClient

    from mixscribe.model.checkpoint import DEFAULT_CHECKPOINT

    home = make_bach10(tmp_path / "Bach10", pieces=("01-AchGottundHerr",))
    args = ["evaluate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--dataset", "bach10", "--data-home", str(home),
            "--workdir", str(tmp_path / "out"), "--out", str(tmp_path / "report")]  # fmt: skip
    r = run_cli(*args, env={"MLFLOW_TRACKING_URI": ""}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    shards = tmp_path / "out" / "datasets" / "bach10"
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["kind"] == "dataset" and manifest["rows_per_split"] == {"bach10": 11}
    assert "decoding: " in r.stdout  # the model's stored (validation-tuned) decoding, never tuned here
    for kmix, clips in (("2mix", 6), ("3mix", 4), ("4mix", 1)):
        assert f"| bach10 | {kmix} | {clips} |" in r.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mixscribe").experiment_id])
    m = run.data.metrics
    assert m["eval/bach10/2mix/clips"] == 6 and m["eval/bach10/4mix/clips"] == 1
    assert m["eval/bach10/all/note_f1"] > 0.5  # sustained harmonic tones in four registers: mostly found
    assert 0 <= m["eval/bach10/2mix/sep_note_f1"] <= m["eval/bach10/2mix/note_f1"]
    stamp = (shards / "manifest.json").stat().st_mtime_ns
    messages = []
    again = build_dataset_set("bach10", home, str(shards), log=messages.append)  # what a re-run does first
    assert again["num_clips"] == 11 and "already in" in messages[0]
    assert (shards / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    with pytest.raises(DatasetError, match="holds another shard set"):  # another protocol never overwrites it
        build_dataset_set("bach10", home, str(shards), sizes=(2,))


def test_evaluate_dataset_errors_are_one_line_and_early(tmp_path):
    r = run_cli("evaluate", "--checkpoint", "nowhere.pt", "--dataset", "bach10", "--data-home", str(tmp_path))
    assert r.returncode != 0 and "nowhere.pt: checkpoint not found" in r.stderr
    r = run_cli("evaluate", "--checkpoint", "nowhere.pt", "--dataset", "bach10")
    assert r.returncode != 0 and "--dataset needs --data-home" in r.stderr
    r = run_cli("evaluate", "--checkpoint", "nowhere.pt")
    assert r.returncode != 0 and "pass --data SHARDS, or --dataset NAME --data-home DIR" in r.stderr
    home = make_bach10(tmp_path / "Bach10", pieces=("01-AchGottundHerr",))
    (home / "01-AchGottundHerr" / "01-AchGottundHerr-violin.wav").unlink()
    from mixscribe.model.checkpoint import DEFAULT_CHECKPOINT

    r = run_cli("evaluate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--dataset", "bach10", "--data-home", str(home),
                "--workdir", str(tmp_path / "out"), "--no-mlflow")  # fmt: skip
    assert r.returncode != 0 and "01-AchGottundHerr-violin.wav: missing" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out" / "datasets").exists()

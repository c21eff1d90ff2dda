"""Transcription end to end: real rendered audio, the real CLI, every bad input."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mixscribe.transcription.decode import DecodeParams
from tests.conftest import run_cli

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden.pt"
GOLDEN_PARAMS = DecodeParams(onset_threshold=0.8, frame_threshold=0.7)


def render_duet(frames: int = 344):
    """4 s of a flute and a bassoon (TimGM6mb), rendered with the synth stage's own code."""
    from mixscribe.config import GeneratorConfig, RenderConfig
    from mixscribe.synth import catalog
    from mixscribe.synth.generator import generate_performance
    from mixscribe.synth.render import FluidSynthRenderer, Instrument

    gen = GeneratorConfig(clip_frames=frames)
    renderer = FluidSynthRenderer(RenderConfig(), catalog.select(("timgm6mb",)))
    stems, perfs = [], []
    for seed, (prog, lo, hi) in enumerate([(73, 60, 84), (70, 36, 55)]):
        perf = generate_performance(gen, lo, hi, np.random.default_rng(seed))
        stems.append(renderer.render(Instrument("timgm6mb", 0, prog), perf, frames * 256).audio)
        perfs.append(perf)
    renderer.close()
    return np.mean(stems, axis=0).astype(np.float32), perfs


@pytest.fixture(scope="module")
def duet(tmp_path_factory):
    audio, perfs = render_duet()
    path = tmp_path_factory.mktemp("audio") / "duet.flac"
    from scipy.signal import resample_poly

    stereo = np.stack([resample_poly(audio, 2, 1), resample_poly(audio, 2, 1) * 0.9], axis=1)
    sf.write(path, stereo, 44100)  # a stereo FLAC at 44.1 kHz: resampled and downmixed on load
    return audio, path


@pytest.fixture(scope="module")
def model():
    from mixscribe.model import load_model

    return load_model(GOLDEN)


def test_golden_output_of_the_fixed_checkpoint(duet, model):
    from mixscribe.transcription.inference import transcribe_audio

    audio, _ = duet
    result = transcribe_audio(model, audio, k=2, params=GOLDEN_PARAMS, backend="float32")  # as on every CPU
    got = {(round(n.onset, 2), n.pitch, n.stem) for n in result.notes}
    want = {(round(o, 2), p, s) for o, _, p, _, s in json.loads((DATA / "golden_notes.json").read_text())}
    assert len(want) > 20
    overlap = len(got & want) / max(len(got | want), 1)
    assert overlap >= 0.95, f"golden notes changed: {len(got)} now, {len(want)} expected, {overlap:.2%} shared"


def test_api_returns_schema_notes_in_k_tracks(duet):
    import mixscribe
    from mixscribe.schema import Note
    from mixscribe.transcription.inference import TranscribeError

    audio, _ = duet
    notes = mixscribe.transcribe(audio, sr=22050, k=2, checkpoint=str(GOLDEN))
    assert notes and all(isinstance(n, Note) for n in notes)
    assert {n.stem for n in notes} <= {0, 1} and all(24 <= n.pitch <= 107 and n.offset > n.onset for n in notes)
    with pytest.raises(TranscribeError, match="NaN"):
        mixscribe.transcribe(np.full(22050, np.nan, np.float32), sr=22050, checkpoint=str(GOLDEN))
    with pytest.raises(TranscribeError, match="sr is required"):
        mixscribe.transcribe(audio, checkpoint=str(GOLDEN))


def test_windowed_inference_matches_whole_file(model, monkeypatch):
    """The AMT branch sees only local context and the file's sigma: windows must not change it."""
    from mixscribe.transcription import inference as tr

    rng = np.random.default_rng(0)
    audio = (rng.normal(size=256 * 1500) * np.sin(np.arange(256 * 1500) / 5000) ** 2).astype(np.float32) * 0.1
    monkeypatch.setattr(tr, "WINDOW_FRAMES", 400)
    f_win, o_win, _ = tr.run_model(model, audio, with_embedding=False)
    monkeypatch.setattr(tr, "WINDOW_FRAMES", 10_000)
    f_all, o_all, _ = tr.run_model(model, audio, with_embedding=False)
    assert f_win.shape == (84, 1500)
    np.testing.assert_allclose(f_win, f_all, atol=2e-4)
    np.testing.assert_allclose(o_win, o_all, atol=2e-4)


def test_checkpoint_round_trip_is_small_and_safe(tmp_path):
    from mixscribe.config import ModelConfig
    from mixscribe.model import TwoBranchModel, load_model, save_checkpoint

    for cfg in (ModelConfig(), ModelConfig(cqt="nnaudio", dilated=False)):
        m = TwoBranchModel(cfg).eval()
        path = save_checkpoint(m, tmp_path / "m.pt")
        assert path.stat().st_size < 400_000  # no CQT kernel buffers (~45-150 MB with them)
        payload = torch.load(path, weights_only=True)
        assert payload["model_config"]["dilated"] == cfg.dilated
        x = torch.randn(1, 256 * 30)
        with torch.no_grad():
            torch.testing.assert_close(m(x).frame, load_model(path)(x).frame)


def test_cli_end_to_end_on_a_real_audio_file(duet, tmp_path):
    import pretty_midi

    _, path = duet
    out = tmp_path / "out"
    r = run_cli("transcribe", str(path), "-k", "2", "-o", str(out), "--checkpoint", str(GOLDEN),
                "--onset-threshold", "0.8", "--frame-threshold", "0.7", "--format", "mid,csv,json,png")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "in 2 tracks (K given)" in r.stdout
    midi = pretty_midi.PrettyMIDI(str(out / "duet.mid"))
    assert [i.name for i in midi.instruments] == ["timbre 1", "timbre 2"]
    assert len({i.program for i in midi.instruments}) == 2
    doc = json.loads((out / "duet.json").read_text())
    assert doc["tracks"] == 2 and len(doc["notes"]) == sum(len(i.notes) for i in midi.instruments)
    assert len((out / "duet.csv").read_text().splitlines()) == len(doc["notes"]) + 1
    assert (out / "duet.png").read_bytes()[:4] == b"\x89PNG"
    est = run_cli("transcribe", str(path), "-o", str(tmp_path / "est"), "--checkpoint", str(GOLDEN), "--format", "json")
    assert est.returncode == 0 and "(K estimated)" in est.stdout


def one_line_error(r, *needles):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mixscribe: error: "), r.stderr
    for n in needles:
        assert n in lines[0]


@pytest.mark.parametrize(
    "kind, needle",
    [("text", "not a readable audio file"), ("empty", "empty audio"), ("short", "too short"),
     ("silent", "silent"), ("nan", "NaN"), ("missing", "no such file")],
)  # fmt: skip
def test_bad_audio(tmp_path, kind, needle):
    path = tmp_path / f"{kind}.wav"
    if kind == "text":
        path.write_text("this is not audio")
    elif kind == "empty":
        sf.write(path, np.zeros(0, np.float32), 22050)
    elif kind == "short":
        sf.write(path, np.random.default_rng(0).normal(size=2000).astype(np.float32) * 0.1, 22050)
    elif kind == "silent":
        sf.write(path, np.zeros(22050 * 2, np.float32), 22050)
    elif kind == "nan":
        x = np.random.default_rng(0).normal(size=22050 * 2).astype(np.float32) * 0.1
        x[100] = np.nan
        sf.write(path, x, 22050, subtype="FLOAT")
    out = tmp_path / "out"
    r = run_cli("transcribe", str(path), "-o", str(out), "--checkpoint", str(GOLDEN))
    one_line_error(r, str(path), needle)
    assert not list(out.glob("*")) if out.exists() else True  # nothing written


def test_bad_k_checkpoint_and_output(tmp_path, duet):
    _, path = duet
    one_line_error(run_cli("transcribe", str(path), "-k", "0", "-o", str(tmp_path), "--checkpoint", str(GOLDEN)), "K must be >= 1")
    tone = tmp_path / "tone.wav"
    sf.write(tone, (0.3 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)).astype(np.float32), 22050)
    r = run_cli("transcribe", str(tone), "-k", "500", "-o", str(tmp_path / "o"), "--checkpoint", str(GOLDEN))
    one_line_error(r, "K = 500 is larger than the")
    assert not list((tmp_path / "o").glob("*.mid"))
    garbage = tmp_path / "bad.pt"
    garbage.write_bytes(b"\x00garbage" * 100)
    one_line_error(run_cli("transcribe", str(path), "-o", str(tmp_path), "--checkpoint", str(garbage)), "bad.pt", "unreadable checkpoint")
    one_line_error(run_cli("transcribe", str(path), "-o", str(tmp_path), "--checkpoint", str(tmp_path / "none.pt")), "checkpoint not found")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(run_cli("transcribe", str(path), "-o", str(blocker / "sub"), "--checkpoint", str(GOLDEN)), "not writable")
    one_line_error(run_cli("transcribe", str(path), "-o", str(tmp_path), "--checkpoint", str(GOLDEN), "--format", "mp4"), "--format")
    one_line_error(run_cli("transcribe", str(path), "-o", str(tmp_path), "--checkpoint", str(GOLDEN), "--backend", "fp8"), "backend", "fp8")


def test_onnx_export_matches_torch(tmp_path, model):
    import onnxruntime as ort

    r = run_cli("export-onnx", "--checkpoint", str(GOLDEN), "-o", str(tmp_path / "m.onnx"))
    assert r.returncode == 0, r.stderr
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    for frames in (90, 250):  # the graph takes any length
        x = torch.randn(1, 256 * frames) * 0.1
        got = session.run(None, {"audio": x.numpy()})
        with torch.no_grad():
            want = model(x)
        for g, w in zip(got, (want.frame, want.onset, want.embedding)):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4)


def test_layout_friendly_encoder_computes_the_same_embeddings(model):
    """The copy exported for transcription (norms as pooled moments and 1x1 convs, PReLU as LeakyReLU)
    is the same function as the encoder, in torch and under onnxruntime, for the golden model and the
    shipped one."""
    import onnxruntime as ort

    from mixscribe.model import load_model
    from mixscribe.model.export import export_onnx_bytes, layout_friendly_encoder

    audio, _ = render_duet(frames=300)
    for m in (model, load_model()):
        twin = layout_friendly_encoder(m)
        assert not any(isinstance(x, (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.PReLU)) for x in twin.encoder.modules())
        with torch.no_grad():
            power = m.power(torch.from_numpy(audio)[None])
            sigma = torch.ones(1) * float(power.sum(1).std())
            want = m.encoder(m.features_from_power(power, sigma)).numpy()
            got = twin.encoder(twin.features_from_power(power, sigma)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)
        session = ort.InferenceSession(export_onnx_bytes(twin, True, "encoder"))
        np.testing.assert_allclose(session.run(None, {"power": power.numpy(), "sigma": sigma.numpy()})[0], want, atol=1e-3)


def test_onnxruntime_backend_matches_torch_backend(model):
    from mixscribe.transcription.inference import run_model

    audio, _ = render_duet(frames=300)
    f_t, o_t, e_t = run_model(model, audio, backend="torch")
    f_o, o_o, e_o = run_model(model, audio, backend="onnxruntime")
    np.testing.assert_allclose(f_t, f_o, atol=1e-4)
    np.testing.assert_allclose(o_t, o_o, atol=1e-4)
    np.testing.assert_allclose(e_t, e_o, atol=2e-3)  # group/centre norms: float32 summation order


def test_bf16_backend_where_the_cpu_multiplies_bf16(model, monkeypatch):
    """auto (what transcribe runs) is bf16 where the CPU has native bfloat16: posteriorgrams within 0.01
    of float32 and embeddings pointing the same way (golden and shipped model), and the shipped model's
    notes and tracks the same; the model itself is left as it was. Elsewhere auto is float32 and an
    explicit bf16 is a clear error."""
    from mixscribe.transcription import inference as tr
    from mixscribe.transcription.inference import TranscribeError, resolve_backend, run_model, transcribe_audio
    from mixscribe.model.arithmetic import bf16_supported
    from mixscribe.model import load_model

    audio, _ = render_duet(frames=600)
    if not bf16_supported():
        assert resolve_backend("auto") == "float32"
        with pytest.raises(TranscribeError, match="no native bfloat16"):
            run_model(model, audio, backend="bf16")
        return
    assert resolve_backend("auto") == "bf16"
    shipped = load_model()
    with monkeypatch.context() as patch:  # the arithmetic alone: float32's windows (the encoder's norms are per window)
        patch.setattr(tr, "BF16_WINDOW_FRAMES", tr.WINDOW_FRAMES)
        outputs = [(m, run_model(m, audio, backend="float32"), run_model(m, audio, backend="bf16")) for m in (model, shipped)]
    for m, f32, b16 in outputs:
        np.testing.assert_allclose(b16[0], f32[0], atol=0.01)  # frame
        np.testing.assert_allclose(b16[1], f32[1], atol=0.01)  # onset
        sounding = f32[0] > np.quantile(f32[0], 0.9)
        assert (b16[2] * f32[2]).sum(0)[sounding].min() > 0.98  # the unit embeddings' cosine
        assert all(p.is_contiguous() for p in m.parameters())  # the bf16 twin is a copy: no channels-last weights here
    # then the notes and tracks as transcribe makes them (bf16 in its own, shorter windows)
    # (the golden model's notes are not compared: its Y_F peaks at 0.58, so its notes come from the
    # normalised posteriorgram's near-flat values, where any rounding moves them)
    notes = {b: {(n.onset, n.pitch, n.stem) for n in transcribe_audio(shipped, audio, k=2, backend=b).notes}
             for b in ("float32", "auto")}  # fmt: skip
    swapped = {(o, p, 1 - s) for o, p, s in notes["auto"]}  # tracks are anonymous
    shared = max(len(notes["float32"] & notes["auto"]), len(notes["float32"] & swapped))
    assert len(notes["float32"]) > 50 and shared >= 0.95 * len(notes["float32"]), (shared, len(notes["float32"]))


def test_two_pass_pooling_equals_dense_pooling(model, monkeypatch):
    """Transcription pools embeddings window by window (never the whole [D, 84, T]); same result."""
    from mixscribe.transcription import inference as tr
    from mixscribe.transcription.decode import create_notes, pool_note_embeddings

    audio, _ = render_duet(frames=600)
    monkeypatch.setattr(tr, "WINDOW_FRAMES", 128)  # notes straddle windows
    runner = tr._Runner(model, audio, "torch")
    frame, onset = runner.posteriorgrams()
    notes = create_notes(frame, onset, GOLDEN_PARAMS)
    _, _, emb = tr.run_model(model, audio, backend="torch")
    dense = pool_note_embeddings(notes, frame, emb)
    np.testing.assert_allclose(runner.pooled_embeddings(notes, frame, 1.0), dense, atol=2e-3)


def test_packaged_model_carries_its_tuned_thresholds_to_the_cli(duet, tmp_path):
    """package-model stores the thresholds an evaluation tuned; transcribe uses them unless told otherwise."""
    from mixscribe import load_model
    from mixscribe.config import to_dict
    from mixscribe.transcription.inference import load_audio, transcribe_audio
    from mixscribe.transcription.kestimate import FEATURES, KModel

    _, path = duet
    report = tmp_path / "report"
    report.mkdir()
    # a K classifier that says 3 whatever it sees (intercepts only): the one transcribe must then use
    width = len(FEATURES)
    k_model = KModel((1, 2, 3), (0.0,) * width, (1.0,) * width, ((0.0,) * width,) * 3, (0.0, 0.0, 5.0),
                     features=FEATURES)  # fmt: skip

    def write_report(classifier: KModel, nested: bool = True) -> None:
        decode = {"onset_threshold": 0.8, "frame_threshold": 0.7, "min_note_frames": 9.0, "energy_tolerance": 15,
                  "infer_onsets": False, "pool_power": 2.0, "cluster_sharpness": 3.0, "k_model": to_dict(classifier)}
        # reports hold the decoding under `decode`; those written before held it inline, and still package
        config = {"tune_on": "valid", "decode": decode} if nested else {"tune_on": "valid", **decode}
        (report / "metrics.json").write_text(json.dumps({"config": config, "tuned": None}))

    write_report(k_model)
    r = run_cli("package-model", "--checkpoint", str(GOLDEN), "--report", str(report), "-o", str(tmp_path / "m.pt"))
    assert r.returncode == 0, r.stderr
    packaged = load_model(tmp_path / "m.pt")
    assert (packaged.decode_params.onset_threshold, packaged.decode_params.frame_threshold) == (0.8, 0.7)
    assert packaged.decode_params.k_model == k_model
    shape = {"min_note_frames": 9.0, "energy_tolerance": 15, "infer_onsets": False}  # the tuned note shape too
    assert all(getattr(packaged.decode_params, k) == v for k, v in shape.items())
    assert (packaged.decode_params.pool_power, packaged.decode_params.cluster_sharpness) == (2.0, 3.0)  # the clustering
    auto = transcribe_audio(packaged, load_audio(path))
    assert auto.k == 3 and {n.stem for n in auto.notes} == {0, 1, 2}
    assert load_model(GOLDEN).decode_params is None
    assert (tmp_path / "m.onnx").stat().st_size > 10_000
    params = dataclasses.replace(GOLDEN_PARAMS, **shape)
    want = len(transcribe_audio(load_model(GOLDEN), load_audio(path), k=2, params=params).notes)
    for args, n in ((), want), (("--frame-threshold", "0.9"), None):
        r = run_cli("transcribe", str(path), "-k", "2", "-o", str(tmp_path / "o"), "--checkpoint",
                    str(tmp_path / "m.pt"), "--format", "json", *args)  # fmt: skip
        assert r.returncode == 0, r.stderr
        got = len(json.loads((tmp_path / "o" / "duet.json").read_text())["notes"])
        assert (got == n) if n is not None else (got < want), (got, n, want)  # higher frame threshold: fewer notes
        # the user is told which stored values stand in for the defaults (not those given on the command line)
        told = next(line for line in r.stderr.splitlines() if line.startswith("decoding: "))
        assert "onset_threshold 0.8" in told and "pool_power 2" in told and "k_model fitted" in told
        assert ("frame_threshold 0.7" in told) == (not args)
    r = run_cli("transcribe", str(path), "-k", "2", "-o", str(tmp_path / "g"), "--checkpoint", str(GOLDEN))
    assert r.returncode == 0 and "decoding: " not in r.stderr  # nothing stored: nothing to report
    # a classifier stored by a version with other features is not used: the eigengap decides, with a warning
    write_report(dataclasses.replace(k_model, features=()), nested=False)
    r = run_cli("package-model", "--checkpoint", str(GOLDEN), "--report", str(report), "-o", str(tmp_path / "s.pt"))
    assert r.returncode == 0, r.stderr
    with pytest.warns(UserWarning, match="K classifier was fitted on other features"):
        old = load_model(tmp_path / "s.pt")
    assert old.decode_params.k_model is None and old.decode_params.onset_threshold == 0.8
    (report / "metrics.json").write_text("{}")
    one_line_error(run_cli("package-model", "--checkpoint", str(GOLDEN), "--report", str(report), "-o",
                           str(tmp_path / "x.pt")), "metrics.json", "not an evaluation report")  # fmt: skip
    assert not (tmp_path / "x.pt").exists()


def test_onnxruntime_sessions_share_one_arena_that_a_release_run_hands_back(model):
    """Two models' sessions on the process's shared arena give identical outputs, and a run with
    release=True returns the arena's free memory to the OS (docs/benchmarks.md)."""
    import psutil

    from mixscribe.model.export import OrtModel

    rss = lambda: psutil.Process().memory_info().rss / 2**20  # noqa: E731
    first, second = OrtModel(model, threads=1), OrtModel(model, threads=1)
    power = np.random.default_rng(0).random((1, model.cfg.n_bins, 3000), np.float32)
    sigma = np.ones(1, np.float32)
    want = first.embed(power, sigma)
    kept = second.embed(power, sigma)
    held = rss()
    released = second.embed(power, sigma, release=True)
    after = rss()
    np.testing.assert_array_equal(kept, want)
    np.testing.assert_array_equal(released, want)
    assert held - after > 100, (held, after)  # ~16 channels x 252 bins x 3,000 frames per activation


def test_two_inputs_that_would_share_an_output_name_are_refused_before_any_work(duet, tmp_path):
    _, path = duet
    audio, sr = sf.read(path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sf.write(tmp_path / "a" / "duet.wav", audio, sr)
    sf.write(tmp_path / "b" / "duet.wav", audio, sr)
    out = tmp_path / "out"
    for inputs in ([path, tmp_path / "a" / "duet.wav"], [tmp_path / "a" / "duet.wav", tmp_path / "b" / "duet.wav"]):
        r = run_cli("transcribe", *map(str, inputs), "-o", str(out), "--checkpoint", str(GOLDEN))
        one_line_error(r, str(inputs[0]), str(inputs[1]), f"{out}/duet.*")
    assert not out.exists()
    dotted = run_cli("transcribe", str(tmp_path / "a" / "duet.wav"), "-o", str(out), "--checkpoint", str(GOLDEN))
    assert dotted.returncode == 0, dotted.stderr
    sf.write(tmp_path / "a" / "take.2.wav", audio, sr)  # every dot of a name is kept: take.2.mid, not take.mid
    r = run_cli("transcribe", str(tmp_path / "a" / "take.2.wav"), "-o", str(out), "--checkpoint", str(GOLDEN))
    assert r.returncode == 0 and sorted(p.name for p in out.iterdir()) == ["duet.mid", "take.2.mid"]


def test_a_batch_names_the_file_that_failed_and_goes_on_with_the_others(duet, tmp_path):
    _, path = duet
    short = tmp_path / "short.wav"  # readable (checked before any work), refused once decoded
    sf.write(short, np.random.default_rng(0).normal(size=2000).astype(np.float32) * 0.1, 22050)
    out = tmp_path / "out"
    r = run_cli("transcribe", str(short), str(path), "-k", "2", "-o", str(out), "--checkpoint", str(GOLDEN),
                "--onset-threshold", "0.8", "--frame-threshold", "0.7")  # fmt: skip
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("mixscribe: error: ")]
    assert errors[0].startswith(f"mixscribe: error: {short}: too short") and len(errors) == 2
    assert errors[1] == f"mixscribe: error: 1 of 2 files failed: {short}"
    assert f"{path}: " in r.stdout and "in 2 tracks (K given)" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["duet.mid"]


@pytest.mark.parametrize("option, value, why", [
    ("--onset-threshold", "5", "must be in (0, 1)"), ("--frame-threshold", "-1", "must be in (0, 1)"),
    ("--onset-threshold", "nan", "must be in (0, 1)"), ("--frame-threshold", "1", "must be in (0, 1)"),
    ("--min-note-ms", "-3", "must be >= 0"), ("--min-note-ms", "inf", "must be >= 0"),
    ("--gate-dbfs", "6", "must be a level <= 0 dBFS")])  # fmt: skip
def test_decoding_options_out_of_range_are_one_line_errors_before_any_work(duet, tmp_path, option, value, why):
    _, path = duet
    r = run_cli("transcribe", str(path), option, value, "-o", str(tmp_path / "out"), "--checkpoint", str(GOLDEN))
    one_line_error(r, option, why)
    assert not (tmp_path / "out").exists()


def test_the_api_refuses_out_of_range_decoding_parameters():
    from mixscribe.errors import MixscribeError

    for bad in ({"onset_threshold": 5.0}, {"frame_threshold": float("nan")}, {"min_note_frames": -1.0}):
        with pytest.raises(MixscribeError, match=f"decode.{next(iter(bad))}"):
            DecodeParams(**bad)


def test_noise_and_a_dc_offset_are_not_notes(model, tmp_path):
    from mixscribe.transcription.inference import TranscribeError, frame_levels_dbfs, prepare_audio, transcribe_audio

    rng = np.random.default_rng(0)
    noise = (rng.normal(size=22050 * 4) * 10 ** (-60 / 20)).astype(np.float32)  # RMS -60 dBFS
    levels = frame_levels_dbfs(noise, len(noise) // 256)
    assert abs(np.median(levels) + 60) < 0.5  # the gate measures the RMS level
    result = transcribe_audio(model, prepare_audio(noise, 22050), None, GOLDEN_PARAMS, "float32")
    assert result.notes == [] and result.gated == 1.0
    loud = transcribe_audio(model, prepare_audio(noise * 1000, 22050), None, GOLDEN_PARAMS, "float32")
    assert loud.gated == 0.0  # the same noise at 0 dBFS passes the gate (whatever the model makes of it)
    with pytest.raises(TranscribeError, match="nothing but a constant offset"):
        prepare_audio(np.full(22050 * 2, 0.3, np.float32), 22050)
    dc_noise = prepare_audio(noise + 0.3, 22050)  # noise riding on an offset: the offset is removed
    assert transcribe_audio(model, dc_noise, None, GOLDEN_PARAMS, "float32").notes == []
    path = tmp_path / "hiss.wav"
    sf.write(path, noise, 22050)
    r = run_cli("transcribe", str(path), "-o", str(tmp_path), "--checkpoint", str(GOLDEN))
    assert r.returncode == 0 and f"{path}: 0 notes in 1 track" in r.stdout
    assert "100% of the audio is below the -55 dBFS level gate" in r.stdout

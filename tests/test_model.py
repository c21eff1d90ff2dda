"""The two-branch model against paper-spec §2-§5."""

import numpy as np
import pytest
import torch

from mixscribe.config import ModelConfig
from mixscribe.model.frontend import EnergyNorm, NNAudioCQT, OctaveCQT, midi_to_hz, power_of
from mixscribe.model.losses import deep_clustering_item, focal_loss, info_nce_item, timbre_loss
from mixscribe.model.network import HARMONIC_SHIFTS, HarmonicStack, TwoBranchModel, count_trainable

SR, HOP = 22050, 256


def tone(midi, frames=200, harmonics=1, amp=0.3):
    t = np.arange(frames * HOP) / SR
    x = sum(np.sin(2 * np.pi * h * midi_to_hz(midi) * t) / h for h in range(1, harmonics + 1))
    return torch.from_numpy((amp * x).astype(np.float32))[None]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TwoBranchModel(ModelConfig()).eval()


def test_parameter_counts_and_shapes(model):
    assert count_trainable(model.amt) == 18_978
    assert count_trainable(model.encoder) == 25_983
    assert count_trainable(model) == 44_961  # the CQT is frozen
    with torch.no_grad():
        out = model(torch.randn(2, 100 * HOP))
    assert out.frame.shape == out.onset.shape == (2, 1, 84, 100)
    assert out.embedding.shape == (2, 12, 84, 100)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2, 84, 100))
    assert 0 <= out.frame.min() and out.frame.max() <= 1


@pytest.mark.parametrize("cqt_cls", [OctaveCQT, NNAudioCQT])
@pytest.mark.parametrize("midi", [28, 45, 60, 81, 100])
def test_cqt_sine_peaks_on_bin_3p_plus_1(cqt_cls, midi):
    cqt = cqt_cls(ModelConfig())
    with torch.no_grad():
        power = power_of(cqt(tone(midi)))[0]
    assert power.shape == (288, 200)
    assert int(power[:, 100].argmax()) == 3 * (midi - 24) + 1


def test_octave_cqt_matches_nnaudio_level():
    x = tone(57) + tone(76)
    with torch.no_grad():
        a = power_of(OctaveCQT(ModelConfig())(x))[0, :, 50:150].mean(1)
        b = power_of(NNAudioCQT(ModelConfig())(x))[0, :, 50:150].mean(1)
    for bin_ in (3 * (57 - 24) + 1, 3 * (76 - 24) + 1):
        assert float(a[bin_]) == pytest.approx(float(b[bin_]), rel=0.1)


def test_energy_norm_is_gain_invariant_and_safe_on_silence():
    norm = EnergyNorm(ModelConfig())
    cqt = OctaveCQT(ModelConfig())
    x = tone(60, harmonics=4)
    with torch.no_grad():
        power = power_of(cqt(x))
        loud, quiet = norm(power), norm(power_of(cqt(x * 0.5)))
    strong = power[:, None] > 1e-3  # bins where eps (1e-8) moves ln E by < 4e-5
    assert strong.sum() > 50
    assert (loud - quiet)[strong].abs().max() < 1e-4  # spec §2.1 parity test
    for silent in (torch.zeros(1, 50 * HOP), torch.full((1, 50 * HOP), 0.5)):
        with torch.no_grad():
            out = norm(power_of(cqt(silent)))
        assert torch.isfinite(out).all()


def test_model_output_is_finite_on_silence(model):
    with torch.no_grad():
        out = model(torch.zeros(1, 60 * HOP))
    assert all(torch.isfinite(t).all() for t in (out.frame, out.onset, out.embedding))


def test_harmonic_stacking_direction():
    """A harmonic tone at MIDI m appears at bin 3(m-24)+1 in every channel whose partial exists."""
    cqt, norm, stack = OctaveCQT(ModelConfig()), EnergyNorm(ModelConfig()), HarmonicStack(288)
    m = 45
    with torch.no_grad():
        stacked = stack(norm(power_of(cqt(tone(m, harmonics=7)))))[0, :, :, 100]
    assert stacked.shape == (8, 252)
    for h, shift in enumerate(HARMONIC_SHIFTS):
        if h == 0:
            continue  # the sub-harmonic channel holds no partial of this tone
        assert int(stacked[h, 3 * (m - 24) - 6 : 3 * (m - 24) + 9].argmax()) + 3 * (m - 24) - 6 == 3 * (m - 24) + 1
    legacy = HarmonicStack(252)(torch.arange(288.0)[None, None, :, None])
    assert legacy[0, 7, 251 - 101 + 1 :, 0].abs().sum() == 0  # the reference never reads the 8th octave
    full = HarmonicStack(288)(torch.arange(288.0)[None, None, :, None])
    assert full[0, 7, 150, 0] == 251  # ... we do


def _geometry_model(cfg):
    """A model whose weights only route the h=1 channel's centre tap to the heads: tests the strides
    and paddings that map CQT bin 3j+1 to output row j."""
    m = TwoBranchModel(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.fill_(1.0)
        m.amt.affine.k.fill_(1.0)
        m.amt.neck[0].weight[0, 1, 2, 2] = 1.0  # channel h=1 at the centre tap
        m.amt.frame_head.weight[0, 0, 2, 2] = 1.0  # centre frequency tap of the stride-3 head
        m.encoder.affine.k.fill_(1.0)
    return m


@pytest.mark.parametrize("midi", [36, 60, 90])
def test_84_pitch_alignment(midi):
    m = _geometry_model(ModelConfig())
    with torch.no_grad():
        out = m(tone(midi))
    assert int(out.frame[0, 0, :, 100].argmax()) == midi - 24
    enc = m.encoder.out
    assert enc.padding == (0, 2) and enc.stride == (3, 1)  # rows of the encoder centred on bin 3j+1
    x = torch.zeros(1, 16, 252, 1)
    x[0, 0, 3 * (midi - 24) + 1] = 1
    with torch.no_grad():
        enc.weight.zero_()
        enc.weight[0, 0, 1, 2] = 1.0  # centre tap
        y = enc(x)
    assert int(y[0, 0, :, 0].argmax()) == midi - 24


def test_ablation_switches_build():
    for cfg in (ModelConfig(norm="batchnorm"), ModelConfig(norm="energy-nolog"), ModelConfig(dilated=False),
                ModelConfig(trainable_cqt=True), ModelConfig(timbre_loss="mse"), ModelConfig(stack_src_bins=252),
                ModelConfig(encoder_out_pad=1), ModelConfig(cqt="nnaudio")):  # fmt: skip
        m = TwoBranchModel(cfg).eval()
        with torch.no_grad():
            out = m(torch.randn(1, 40 * HOP))
        assert out.frame.shape == (1, 1, 84, 40) and out.embedding.shape[2] == 84
    assert count_trainable(TwoBranchModel(ModelConfig(trainable_cqt=True)).cqt) > 0
    assert count_trainable(TwoBranchModel(ModelConfig(dilated=False)).amt) == 18_978 - 9_608 + 8 * 16 * 39 * 3 + 8


def test_affine_clamp():
    m = TwoBranchModel(ModelConfig())
    with torch.no_grad():
        m.amt.affine.k.fill_(10.0)
        m.encoder.affine.k.fill_(-1.0)
    m.clamp_affines_()
    assert m.amt.affine.k.item() == 3.0 and m.encoder.affine.k.item() == pytest.approx(0.005)


def test_focal_loss_hand_computed():
    y = torch.tensor([1.0, 0.0])
    p = torch.tensor([0.8, 0.3])
    a, g = 0.2, 1.0
    expected = (-(a * 1 * 0.2 * np.log(0.8 + 1e-8)) - (1 - a) * 0.3 * np.log(0.7 + 1e-8)) / 2
    assert focal_loss(y, p, a, g).item() == pytest.approx(expected, rel=1e-5)
    assert focal_loss(y, p, a, g, "sum").item() == pytest.approx(expected * 2, rel=1e-5)


def test_info_nce_hand_computed_and_single_timbre_is_zero():
    v = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    tau = 0.15
    s = (v @ v.T / tau).numpy()
    # anchor 0: positive 1; anchor 1: positive 0; anchor 2: no positive (skipped)
    l0 = -np.log(np.exp(s[0, 1]) / (np.exp(s[0, 1]) + np.exp(s[0, 2])))
    l1 = -np.log(np.exp(s[1, 0]) / (np.exp(s[1, 0]) + np.exp(s[1, 2])))
    assert info_nce_item(v, y, tau, 100).item() == pytest.approx((l0 + l1) / 2, rel=1e-5)
    one = torch.ones(3, 1)
    assert info_nce_item(v, one, tau, 100).item() == pytest.approx(0.0, abs=1e-6)
    emb = torch.nn.functional.normalize(torch.randn(1, 12, 84, 20), dim=1)
    members = torch.zeros(1, 1, 84, 20)
    members[0, 0, 40, :] = 1
    assert timbre_loss(ModelConfig(), emb, members).item() == pytest.approx(0.0, abs=1e-6)


def test_other_pitch_positives_drop_the_anchors_own_pitch_from_both_sums():
    """Source A at pitch rows 10 (two frames) and 20, source B at row 30. With positives "other-pitch" an
    anchor of A at row 10 is pulled only toward A at row 20 (the other frame at row 10 is in neither sum),
    so A's two pitches sharing a direction costs less than A's two frames at one pitch sharing one."""
    tau = 0.15
    members = torch.zeros(1, 2, 84, 2)
    members[0, 0, 10, :] = 1
    members[0, 0, 20, 0] = 1
    members[0, 1, 30, 0] = 1
    e1, e2, e3 = torch.eye(12)[:3]

    def embedding(a10, a20, b30):
        emb = torch.zeros(1, 12, 84, 2)
        emb[0, :, 10, :] = a10[:, None]
        emb[0, :, 20, 0], emb[0, :, 30, 0] = a20, b30
        return emb

    def nce(a, b):  # -log(sum over positives / sum over all), similarities a (positives) and b (others)
        return -np.log(np.sum(np.exp(a)) / (np.sum(np.exp(a)) + np.sum(np.exp(b))))

    one, half = 1 / tau, 0.0
    # A's pitches alike: anchors A@10 (x2): positive A@20; anchor A@20: positives A@10 x2; B: none.
    alike = embedding(e1, e1, e2)
    expected = (2 * nce([one], [half]) + nce([one, one], [half])) / 3
    assert timbre_loss(ModelConfig(), alike, members, positives="other-pitch").item() == pytest.approx(expected, rel=1e-3)
    # A's pitches apart (register-like): only the same-note frames alike, which "all" rewards.
    apart = embedding(e1, e3, e2)
    expected = (2 * nce([half], [half]) + nce([half, half], [half])) / 3
    assert timbre_loss(ModelConfig(), apart, members, positives="other-pitch").item() == pytest.approx(expected, rel=1e-3)
    assert timbre_loss(ModelConfig(), apart, members, positives="other-pitch") > timbre_loss(ModelConfig(), alike, members, positives="other-pitch")
    all_apart = (2 * nce([one, half], [half]) + nce([half, half], [half])) / 3  # A@10's other frame: a positive
    assert timbre_loss(ModelConfig(), apart, members).item() == pytest.approx(all_apart, rel=1e-3)
    with pytest.raises(ValueError, match="positives"):
        timbre_loss(ModelConfig(), apart, members, positives="same-note")


def test_a_wider_exclusion_drops_the_sources_neighbouring_pitches_too():
    """Source A at rows 10, 11 and 20, source B at row 12. Excluding 1 semitone, A@10 and A@11 are in
    neither of each other's sums (a SoundFont plays them from one sample) and each is pulled only toward
    A@20; B@12, one semitone from A@11 but another instrument, stays a negative."""
    tau = 0.15
    members = torch.zeros(1, 2, 84, 1)
    members[0, 0, [10, 11, 20], 0] = 1
    members[0, 1, 12, 0] = 1
    e1, e2 = torch.eye(12)[:2]
    emb = torch.zeros(1, 12, 84, 1)
    emb[0, :, 10, 0], emb[0, :, 11, 0], emb[0, :, 20, 0], emb[0, :, 12, 0] = e1, e1, e2, e2

    def nce(a, b):
        return -np.log(np.sum(np.exp(a)) / (np.sum(np.exp(a)) + np.sum(np.exp(b))))

    one, zero = 1 / tau, 0.0
    # anchors A@10, A@11: positive A@20 (0), negative B@12 (0); anchor A@20: positives A@10, A@11 (0, 0),
    # negative B@12 (1); anchor B@12 has no positive.
    wide = (2 * nce([zero], [zero]) + nce([zero, zero], [one])) / 3
    got = timbre_loss(ModelConfig(), emb, members, positives="other-pitch", exclude_semitones=1)
    assert got.item() == pytest.approx(wide, rel=1e-3)
    # excluding only the own pitch, A@10 and A@11 are each other's positive (similarity 1/tau)
    narrow = (2 * nce([one, zero], [zero]) + nce([zero, zero], [one])) / 3
    assert timbre_loss(ModelConfig(), emb, members, positives="other-pitch").item() == pytest.approx(narrow, rel=1e-3)
    for positives, semitones in (("all", 1), ("other-pitch", -1), ("other-pitch", 13)):
        with pytest.raises(ValueError, match="exclude_semitones"):
            timbre_loss(ModelConfig(), emb, members, positives=positives, exclude_semitones=semitones)


def test_a_training_config_passes_its_check_exactly_when_the_loss_accepts_its_positives():
    """Checked at load time so that a bad choice fails before synthesis, not in a worker hours later."""
    from mixscribe.config import ConfigError
    from mixscribe.train.trainer import load_train_config

    emb = torch.nn.functional.normalize(torch.randn(1, 4, 84, 6), dim=1)
    members = torch.zeros(1, 2, 84, 6)
    members[0, 0, 40, :3] = members[0, 0, 44, 3:] = members[0, 1, 50, :] = 1
    outcomes = []
    for positives in ("all", "other-pitch", "other-note", "nearby"):
        for semitones in (0, 3, 12, 13, -1):
            try:
                load_train_config({"train": {"timbre_positives": positives, "timbre_exclude_semitones": semitones}})
                config_ok = True
            except ConfigError:
                config_ok = False
            try:
                timbre_loss(ModelConfig(), emb, members, positives=positives, exclude_semitones=semitones)
                loss_ok = True
            except ValueError:
                loss_ok = False
            outcomes.append((positives, semitones, config_ok, loss_ok))
    assert all(config_ok == loss_ok for *_, config_ok, loss_ok in outcomes), outcomes
    accepted = {(p, s) for p, s, ok, _ in outcomes if ok}
    assert accepted == {("all", 0), ("other-note", 0), ("other-pitch", 0), ("other-pitch", 3), ("other-pitch", 12)}


def test_note_level_positives_pool_each_note_and_pull_the_sources_other_notes():
    """Source A: a two-frame note at row 10 (frames e1, e3) and a note at row 20 (e1) after a gap, then
    row 10 again (e2: a new note, the run having ended); source B: one note at row 30 (e2). Each note is
    its bins' sum, normalised: A's first note is (e1 + e3) / sqrt 2. Anchors are notes; B's only note
    has no positive."""
    tau = 0.15
    members = torch.zeros(1, 2, 84, 5)
    members[0, 0, 10, [0, 1]] = 1
    members[0, 0, 20, 2] = 1
    members[0, 0, 10, 4] = 1
    members[0, 1, 30, 0] = 1
    e1, e2, e3 = torch.eye(12)[:3]
    emb = torch.zeros(1, 12, 84, 5)
    emb[0, :, 10, 0], emb[0, :, 10, 1], emb[0, :, 20, 2], emb[0, :, 10, 4], emb[0, :, 30, 0] = e1, e3, e1, e2, e2
    u = {"a1": (e1 + e3) / np.sqrt(2), "a2": e1, "a3": e2, "b": e2}

    def s(x, y):
        return float(u[x] @ u[y]) / tau

    def nce(anchor, positives, negatives):
        pos = np.exp([s(anchor, p) for p in positives]).sum()
        return -np.log(pos / (pos + np.exp([s(anchor, n) for n in negatives]).sum()))

    expected = np.mean([nce("a1", ["a2", "a3"], ["b"]), nce("a2", ["a1", "a3"], ["b"]), nce("a3", ["a1", "a2"], ["b"])])
    got = timbre_loss(ModelConfig(), emb, members, positives="other-note")
    assert got.item() == pytest.approx(expected, rel=1e-4)
    got_bf16 = timbre_loss(ModelConfig(), emb.bfloat16(), members, positives="other-note")  # pooled in float32
    assert got_bf16.dtype == torch.float32 and got_bf16.item() == pytest.approx(expected, rel=1e-2)
    grad = emb.clone().requires_grad_(True)
    timbre_loss(ModelConfig(), grad, members, positives="other-note").backward()
    assert grad.grad[:, :, 10, 0].abs().sum() > 0 and grad.grad[:, :, 40].abs().sum() == 0  # through every note bin


def test_deep_clustering_matches_dense_form():
    v = torch.nn.functional.normalize(torch.randn(30, 12), dim=1)
    y = (torch.rand(30, 3) > 0.5).float()
    dense = ((v @ v.T - y @ y.T) ** 2).sum() / 900
    assert deep_clustering_item(v, y).item() == pytest.approx(dense.item(), rel=1e-4)


@pytest.mark.parametrize("n", [1, 40, 2047, 2048, 2049, 70_001])
def test_octave_cqt_decimation_is_the_forward_backward_filter(n):
    """The chunked, stride-2 decimation gives what the textbook zero-phase filter (forward, flip,
    forward, flip, every other sample) gives, at any length and batch size."""
    from torch.nn import functional as F

    cqt = OctaveCQT(ModelConfig())
    x = torch.randn(3, 1, n, generator=torch.Generator().manual_seed(n))
    pad = cqt.lowpass.shape[-1] // 2
    y = F.conv1d(F.pad(x, (pad, pad)), cqt.lowpass)
    y = F.conv1d(F.pad(y.flip(-1), (pad, pad)), cqt.lowpass).flip(-1)[..., ::2]
    got = cqt._decimate(x)
    assert got.shape == y.shape
    assert torch.allclose(got, y, atol=1e-5)

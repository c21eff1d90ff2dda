"""Realism augmentation: each transform does what its name says, draws are deterministic and recorded."""

import numpy as np
import pytest

from mixscribe.config import from_dict
from mixscribe.errors import ConfigError
from mixscribe.schema import SAMPLE_RATE
from mixscribe.train.augment import AugmentConfig, augment, colour_stem
from mixscribe.train.data import AUG_KEYS, RemixConfig, Remixer, examples_to_columns
from tests.test_train_data import fake_clips

ONLY = {name: 0.0 for name in ("p_reverb", "p_eq_tilt", "p_gain", "p_compressor")}


def only(name: str, **ranges) -> AugmentConfig:
    return AugmentConfig(**{**ONLY, f"p_{name}": 1.0, **ranges})


def tone(freqs, seconds=1.0, amp=0.2):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return sum(amp * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def band_energy(x, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return spec[(f >= lo) & (f < hi)].sum()


def test_disabled_is_identity_and_leaves_the_rng_alone():
    x = tone([440])
    rng = np.random.default_rng(1)
    y, drawn = augment(x, AugmentConfig(enabled=False), rng)
    assert y is x and drawn == {}
    assert rng.uniform() == np.random.default_rng(1).uniform()


def test_reverb_adds_a_tail_after_the_sound_stops():
    x = np.zeros(SAMPLE_RATE, np.float32)
    x[:2000] = tone([440], 2000 / SAMPLE_RATE)
    y, drawn = augment(x, only("reverb", room_size=(0.8, 0.8), wet_level=(0.3, 0.3)), np.random.default_rng(0))
    assert drawn["reverb_room_size"] == pytest.approx(0.8)
    assert np.abs(x[6000:]).max() == 0 and np.sqrt(np.mean(y[6000:8000] ** 2)) > 1e-3


def test_positive_eq_tilt_brightens_and_negative_darkens():
    x = tone([100, 5000])
    ratio = band_energy(x, 3000, 8000) / band_energy(x, 0, 300)
    for tilt, brighter in ((6.0, True), (-6.0, False)):
        y, drawn = augment(x, only("eq_tilt", tilt_db=(tilt, tilt)), np.random.default_rng(0))
        r = band_energy(y, 3000, 8000) / band_energy(y, 0, 300)
        assert drawn["eq_tilt_db"] == tilt
        assert (r > 2 * ratio) if brighter else (r < ratio / 2)


def test_gain_is_exact():
    x = tone([440])
    y, _ = augment(x, only("gain", gain_db=(-6.0, -6.0)), np.random.default_rng(0))
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), atol=1e-5)


def test_compressor_lowers_the_loud_part_more_than_the_quiet_part():
    x = np.concatenate([tone([440], 0.5, amp=0.05), tone([440], 0.5, amp=0.8)])
    cfg = only("compressor", threshold_db=(-30.0, -30.0), ratio=(4.0, 4.0))
    y, drawn = augment(x, cfg, np.random.default_rng(0))
    half = len(x) // 2
    quiet_gain = np.abs(y[2000:half]).max() / np.abs(x[2000:half]).max()
    loud_gain = np.abs(y[half + 4000 :]).max() / np.abs(x[half + 4000 :]).max()
    assert drawn["compressor_ratio"] == 4.0 and loud_gain < 0.6 * quiet_gain


def test_full_chain_is_deterministic_bounded_and_recorded():
    x = tone([220, 880], amp=0.4)
    cfg = AugmentConfig(p_reverb=1, p_eq_tilt=1, p_gain=1, p_compressor=1, gain_db=(6.0, 6.0))
    a, da = augment(x, cfg, np.random.default_rng(5))
    b, db = augment(x, cfg, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert da == db and set(da) >= {"eq_tilt_db", "compressor_ratio", "reverb_room_size", "gain_db"}
    assert np.isfinite(a).all() and np.abs(a).max() <= 1.0


def test_remixer_applies_augmentation_deterministically_and_keeps_labels():
    clips = fake_clips()
    plain = Remixer(clips, RemixConfig(crop_frames=32), seed=3)
    cfg = AugmentConfig(p_reverb=1, p_eq_tilt=1, p_gain=1, p_compressor=1)
    aug = Remixer(clips, RemixConfig(crop_frames=32, augment=cfg), seed=3)
    a, b, p = aug.example(0, 4), aug.example(0, 4), plain.example(0, 4)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.augmentation and not p.augmentation and a.stems == p.stems
    np.testing.assert_array_equal(a.targets.frame, p.targets.frame)
    assert not np.allclose(a.audio, p.audio)


def test_bad_augment_config_names_the_field():
    with pytest.raises(ConfigError, match="augment.p_reverb"):
        AugmentConfig(p_reverb=1.5).validate()
    with pytest.raises(ConfigError, match="augment.room_size"):
        from_dict(AugmentConfig, {"room_size": [0.9, 0.1]}).validate()


def test_stem_colour_reshapes_a_stems_spectrum_at_its_own_level():
    noise = (np.random.default_rng(0).normal(size=SAMPLE_RATE) * 0.1).astype(np.float32)
    cfg = AugmentConfig(**ONLY, p_stem_colour=1.0, stem_shelf_db=(0.0, 0.0), stem_peak_db=(9.0, 9.0),
                        stem_peak_hz=(1000.0, 1000.0), stem_peak_q=(2.0, 2.0))  # fmt: skip
    y, drawn = colour_stem(noise, 2, cfg, np.random.default_rng(1))
    assert drawn["stem_colour_2_peak_hz"] == pytest.approx(1000.0) and drawn["stem_colour_2_peak_db"] == 9.0
    share = band_energy(y, 800, 1250) / band_energy(y, 0, SAMPLE_RATE / 2)
    assert share > 2.5 * band_energy(noise, 800, 1250) / band_energy(noise, 0, SAMPLE_RATE / 2)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(noise**2)), rel=1e-3)
    loud = np.clip(noise * 9, -1, 1)
    assert np.abs(colour_stem(loud, 0, cfg, np.random.default_rng(1))[0]).max() <= 1.0
    untouched, nothing = colour_stem(noise, 0, AugmentConfig(p_stem_colour=0.0), np.random.default_rng(1))
    assert untouched is noise and nothing == {}


def test_remixer_colours_stems_from_a_stream_of_its_own():
    """Stem colour changes the audio and records a draw per coloured stem; the mixture's stems, crop,
    gains, labels and every other draw stay what they were without it."""
    clips = fake_clips()
    base = AugmentConfig(p_reverb=1, p_eq_tilt=0, p_gain=1, p_compressor=0)
    plain = Remixer(clips, RemixConfig(crop_frames=32, augment=base), seed=3)
    coloured = Remixer(clips, RemixConfig(crop_frames=32, augment=AugmentConfig(**{**base.__dict__, "p_stem_colour": 1.0})), seed=3)
    for i in range(6):
        p, c = plain.example(0, i), coloured.example(0, i)
        assert p.stems == c.stems and np.array_equal(p.gains, c.gains)
        np.testing.assert_array_equal(p.targets.membership, c.targets.membership)
        assert {k: v for k, v in c.augmentation.items() if not k.startswith("stem_colour")} == p.augmentation
        assert {k.split("_")[2] for k in c.augmentation if k.startswith("stem_colour")} == {str(j) for j in range(len(c.stems))}
        assert not np.allclose(p.audio, c.audio) and np.abs(c.audio).max() <= 1.0
        np.testing.assert_array_equal(c.audio, coloured.example(0, i).audio)
    columns = examples_to_columns([coloured.example(0, 0), plain.example(0, 0)], 32, 4)
    assert AUG_KEYS[-1] == "stem_colour" and columns["aug"][:, -1].tolist() == [1, 0]


def test_bad_stem_colour_config_names_the_field():
    with pytest.raises(ConfigError, match="augment.p_stem_colour"):
        AugmentConfig(p_stem_colour=2.0).validate()
    with pytest.raises(ConfigError, match="augment.stem_peak_hz"):
        AugmentConfig(stem_peak_hz=(100.0, 20000.0)).validate()

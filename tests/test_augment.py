"""Realism augmentation: each transform does what its name says, draws are deterministic and recorded."""

import numpy as np
import pytest

from mixscribe.config import from_dict
from mixscribe.errors import ConfigError
from mixscribe.schema import SAMPLE_RATE
from mixscribe.train.augment import AugmentConfig, augment
from mixscribe.train.data import RemixConfig, Remixer
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

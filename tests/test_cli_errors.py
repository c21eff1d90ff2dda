"""Bad input: one clear line naming the thing, a non-zero exit, nothing half-written."""

import shutil

import pytest

from mixscribe.synth import catalog
from tests.conftest import run_cli


def assert_one_line_error(result, *needles):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mixscribe: error: ")
    for n in needles:
        assert n in lines[0]


def write_cfg(tmp_path, body):
    path = tmp_path / "cfg.yaml"
    path.write_text(body)
    return str(path)


def test_invalid_config_field(tmp_path):
    cfg = write_cfg(tmp_path, "synth:\n  generator:\n    clip_frames: -5\n")
    out = tmp_path / "out"
    r = run_cli("synth", "--config", cfg, "--out", str(out), "--clips", "2")
    assert_one_line_error(r, "generator.clip_frames")
    assert not out.exists()


def test_curve_of_a_folder_that_is_no_training_run(tmp_path):
    r = run_cli("curve", str(tmp_path / "nowhere"), "--out", str(tmp_path / "curves"))
    assert_one_line_error(r, "nowhere", "not a training run")
    assert not (tmp_path / "curves").exists()


def test_unknown_field_and_unpitched_program(tmp_path):
    r = run_cli("synth", "--config", write_cfg(tmp_path, "synth:\n  stemz: 2\n"), "--out", str(tmp_path / "o"), "--clips", "1")
    assert_one_line_error(r, "synth.stemz", "unknown")
    r = run_cli("synth", "--config", write_cfg(tmp_path, "synth:\n  programs: [0, 200]\n"), "--out", str(tmp_path / "o"), "--clips", "1")
    assert_one_line_error(r, "synth.programs")


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("synth", "--config", "tiny", "--out", str(blocker / "sub"), "--clips", "1")
    assert_one_line_error(r, str(blocker / "sub"), "not writable")


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_missing_or_corrupt_soundfont(tmp_path, fake_catalog, problem):
    good = catalog.get_entry("timgm6mb")
    path = tmp_path / "Tim.sf2"
    if problem == "corrupt":
        shutil.copy(good.path, path)
        with open(path, "r+b") as f:
            f.seek(5000)
            f.write(b"garbage" * 10)
    env = fake_catalog([{**good.__dict__, "path": str(path)}])
    out = tmp_path / "out"
    r = run_cli("synth", "--config", write_cfg(tmp_path, "synth:\n  soundfonts: [timgm6mb]\n"), "--out", str(out),
                "--clips", "1", env=env)  # fmt: skip
    assert_one_line_error(r, str(path), "missing" if problem == "missing" else "checksum mismatch")
    assert not (out / "manifest.json").exists()
    verify = run_cli("soundfonts", "verify", env=env)
    assert verify.returncode == 1 and "FAILED" in verify.stdout


def test_unknown_soundfont_id(tmp_path):
    r = run_cli("synth", "--config", write_cfg(tmp_path, "synth:\n  soundfonts: [nosuchfont]\n"),
                "--out", str(tmp_path / "o"), "--clips", "1")  # fmt: skip
    assert_one_line_error(r, "nosuchfont", "not in the catalog")


def test_inspect_of_something_that_is_not_a_shard_set(tmp_path):
    r = run_cli("inspect", str(tmp_path))
    assert_one_line_error(r, "manifest.json", "no manifest")
    (tmp_path / "manifest.json").write_text("{not json")
    r = run_cli("inspect", str(tmp_path))
    assert_one_line_error(r, "corrupt manifest")
    (tmp_path / "manifest.json").write_text('{"schema_version": 7}')
    r = run_cli("inspect", str(tmp_path))
    assert_one_line_error(r, "schema version 7")


def test_a_negative_seed_is_refused_before_ray_starts(tmp_path):
    r = run_cli("synth", "--config", "tiny", "--out", str(tmp_path / "s"), "--clips", "4", "--seed", "-5")
    assert_one_line_error(r, "synth.seed", "must be in [0, 2^63)")
    assert r.returncode == 2 and "Ray" not in r.stdout


def test_a_soundfont_fluidsynth_cannot_load_is_one_line_from_inside_ray(tmp_path, fake_catalog):
    """The checksum matches (a custom catalog lists the broken file as it is): the error can only happen
    when FluidSynth loads it, inside a Ray task, and comes back as the task's own one-line message."""
    import hashlib

    good = catalog.get_entry("timgm6mb")
    broken = tmp_path / "Broken.sf2"
    broken.write_bytes(open(good.path, "rb").read(300_000))  # truncated: RIFF sizes disagree
    entry = {**good.__dict__, "path": str(broken), "sha256": hashlib.sha256(broken.read_bytes()).hexdigest()}
    r = run_cli("synth", "--config", write_cfg(tmp_path, "synth:\n  soundfonts: [timgm6mb]\n"), "--out",
                str(tmp_path / "out"), "--clips", "2", env=fake_catalog([entry]))  # fmt: skip
    assert_one_line_error(r, str(broken), "FluidSynth cannot load this SoundFont")
    assert r.returncode == 2 and "\x1b[" not in r.stderr


def test_train_on_a_missing_or_empty_shard_set_leaves_no_run_and_no_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for data in (empty, tmp_path / "absent"):
        r = run_cli("train", "--data", str(data), "--workdir", str(tmp_path / "work"), env={"MLFLOW_TRACKING_URI": ""})
        assert_one_line_error(r, f"{data}/manifest.json", "no manifest")
    assert not (tmp_path / "work").exists()  # no MLflow store, no run left RUNNING, no empty folder

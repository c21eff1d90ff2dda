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

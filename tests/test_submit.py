"""`mixscribe submit`: what is checked before anything reaches a cluster (the real submissions run in
tests/test_cluster.py against a two-node cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mixscribe.errors import MixscribeError
from tests.support.loopback import free_port
from mixscribe.submit import build_runtime_env, check_stage_args, load_runtime_env, parse_env, ship_config

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "mixscribe"]


def _submit(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there: a check must fail before
    return subprocess.run([*CLI, "submit", "--address", address, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def _error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mixscribe: error:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("argv, option", [
    (["synth", "--config", "tiny", "--out", "shards", "--clips", "8"], "--out shards"),
    (["train", "--data", "/shared/shards", "--no-mlflow"], "--storage runs"),  # the default is relative too
    (["evaluate", "--checkpoint", "model.pt", "--data", "s3://b/shards", "--out", "/shared/r", "--no-mlflow"],
     "--checkpoint model.pt"),
    (["pipeline", "--config", "tiny"], "--workdir out"),
])  # fmt: skip
def test_relative_paths_are_refused_naming_the_option(argv, option):
    line = _error_line(_submit(*argv))
    assert option in line and "shared storage" in line


def test_a_typo_in_the_stage_arguments_fails_before_submitting():
    proc = _submit("synth", "--config", "tiny", "--out", "/shared/x", "--clipz", "8")
    assert "synth: invalid arguments" in _error_line(proc)
    assert "--clips" in proc.stderr  # argparse's own usage line says what is required


def test_unknown_stage_and_bad_env_are_one_line_errors():
    assert "not submittable" in _error_line(_submit("transcribe", "song.wav"))
    assert "KEY=VALUE" in _error_line(_submit("--env", "NOEQUALS", "synth", "--out", "/x", "--clips", "1"))


def test_unreachable_job_server_is_a_one_line_error():
    line = _error_line(_submit("synth", "--config", "tiny", "--out", "/shared/x", "--clips", "8"))
    assert "no Ray job server answers" in line and "--address http://127.0.0.1:" in line


def test_no_address_anywhere_is_an_error(monkeypatch):
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    proc = subprocess.run([*CLI, "submit", "synth", "--out", "/x", "--clips", "1"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert "--address" in _error_line(proc)


def test_workdir_is_only_required_for_train_when_mlflow_runs_locally():
    args = ["--data", "s3://b/shards", "--storage", "s3://b/runs"]
    check_stage_args("train", args, {"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    check_stage_args("train", [*args, "--no-mlflow"], {})
    with pytest.raises(MixscribeError, match="--workdir out"):
        check_stage_args("train", args, {})


def test_runtime_env_merges_yaml_working_dir_and_env(tmp_path, monkeypatch):
    yml = tmp_path / "env.yaml"
    yml.write_text("pip: [psutil]\nenv_vars: {A: from-yaml, B: from-yaml}\nexcludes: [data]\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    env = build_runtime_env(load_runtime_env(str(yml)), str(ROOT), parse_env(["B=from-flag", "C=x=y"]))
    assert env["pip"] == ["psutil"] and env["working_dir"] == str(ROOT)
    assert env["env_vars"] == {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "A": "from-yaml", "B": "from-flag",
                               "C": "x=y"}  # fmt: skip
    assert {"data", ".venv", ".git", "out"} <= set(env["excludes"])
    assert env["worker_process_setup_hook"] == "mixscribe.raycluster.pace_ray_data_scheduler"


def test_bad_runtime_env_files(tmp_path):
    with pytest.raises(MixscribeError, match="cannot read runtime env"):
        load_runtime_env(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(MixscribeError, match="must be a mapping"):
        load_runtime_env(str(tmp_path / "list.yaml"))
    (tmp_path / "bad.yaml").write_text("a: [\n")
    with pytest.raises(MixscribeError, match="invalid YAML"):
        load_runtime_env(str(tmp_path / "bad.yaml"))
    with pytest.raises(MixscribeError, match="not a folder"):
        build_runtime_env({}, str(tmp_path / "nope"), {})


def test_config_files_are_shipped_relative_to_the_working_dir(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "configs").mkdir(parents=True)
    (work / "configs" / "mine.yaml").write_text("synth: {}\n")
    monkeypatch.chdir(work / "configs")  # the caller stands in a subfolder: the job runs at the root
    args = ["--config", "mine.yaml", "--out", "/x", "--clips", "1"]
    assert ship_config(args, "mine.yaml", str(work))[1] == "configs/mine.yaml"
    assert ship_config(["--config=mine.yaml"], "mine.yaml", str(work)) == ["--config=configs/mine.yaml"]
    assert ship_config(args, "tiny", str(work)) == args  # a preset name travels as it is
    outside = tmp_path / "outside.yaml"
    outside.write_text("synth: {}\n")
    assert ship_config(["--config", str(outside)], str(outside), str(work)) == ["--config", str(outside)]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MixscribeError, match="not inside the working dir"):
        ship_config(["--config", "outside.yaml"], "outside.yaml", str(work))

"""What a command prints: its own lines and one progress bar per stage; Ray's, Ray Data's and MLflow's
logs in a file under the work folder, named at the end (--verbose shows them)."""

from __future__ import annotations

import re
import warnings

from tests.conftest import run_cli

NOISE = ("core_worker.cc", "(raylet)", "Progress bars disabled", "INFO", "WARNING", "DeprecationWarning",
         "streaming_executor", "Started a local Ray instance")  # fmt: skip


def _log_file(stdout: str):
    from pathlib import Path

    m = re.search(r"^logs: (\S+); Ray's worker logs: (\S+)$", stdout, re.M)
    assert m, stdout
    return Path(m.group(1)), Path(m.group(2))


def test_a_synth_prints_its_own_lines_and_a_bar_while_ray_logs_go_to_a_named_file(tmp_path):
    out = tmp_path / "shards"
    r = run_cli("synth", "--config", "tiny", "--out", str(out), "--clips", "8", "--workers", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    noisy = [line for line in (r.stdout + r.stderr).splitlines() if any(n in line for n in NOISE)]
    assert not noisy, noisy
    assert "rendering: 100%" in r.stderr and "wrote 8 clips" in r.stdout
    log, ray_logs = _log_file(r.stdout)
    assert log.parent == out / "logs" and ray_logs.is_dir()
    text = log.read_text()
    assert "ray.data" in text and "Starting execution of Dataset" in text  # what the console no longer shows

    verbose = run_cli("synth", "--config", "tiny", "--out", str(out), "--clips", "8", "--workers", "2", "--verbose")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "Starting execution of Dataset" in verbose.stderr


def test_ray_trains_dataset_options_carry_no_deprecated_field():
    """Ray Train's default ingest options still set ExecutionOptions.exclude_resources (removed after
    January 2027); the trainer passes its own."""
    import pytest
    from ray.data import DataContext
    from ray.train import DataConfig

    from mixscribe.train.trainer import ingest_config

    DataContext.get_current()  # Ray's own context warns about other fields when first made
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*exclude_resources.*")
        with pytest.raises(Warning, match="exclude_resources"):  # what Ray Train's defaults still do
            DataConfig()._resolve_execution_options("train")
        options = ingest_config()._resolve_execution_options("train")
    assert options.resource_limits == DataContext.get_current().execution_options.resource_limits
    assert options.verbose_progress is False

"""Shared fixtures: real SoundFonts from the catalog, one real local Ray cluster per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
from mixscribe.raycluster import prepare_local_environment  # noqa: E402  (before anything imports Ray)

prepare_local_environment()

SMALL_SOUNDFONTS = ("timgm6mb", "csound_gmbank", "opl3_fm")


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from mixscribe.raycluster import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture()
def tiny_cfg():
    from mixscribe.config import load_synth_config

    return load_synth_config("tiny")


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """The real console entry point, in its own process (its own Ray, if it needs one)."""
    exe = shutil.which("mixscribe", path=str(Path(sys.executable).parent)) or "mixscribe"
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.fixture()
def fake_catalog(tmp_path):
    """Write a catalog of chosen entries (e.g. a corrupt or missing SoundFont) and point mixscribe at it."""
    from mixscribe.synth import catalog

    def make(entries: list[dict]) -> dict:
        lines = []
        for e in entries:
            lines.append("[[soundfont]]")
            lines += [f'{k} = "{v}"' for k, v in e.items()]
        path = tmp_path / "catalog.toml"
        path.write_text("\n".join(lines) + "\n")
        return {catalog.CATALOG_ENV: str(path)}

    return make

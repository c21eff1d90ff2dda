"""Every file under cluster_configs/ parses, passes Ray's own validation where Ray has one, and agrees
with the code: package and Ray versions, the apt packages and torch pin of the Makefile/pyproject, the
`render` resource the synth stage asks for, and entrypoints that the CLI accepts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import ray
import yaml

import mixscribe
from mixscribe.cli import build_parser
from mixscribe.config import SynthConfig
from mixscribe.submit import build_runtime_env, check_stage_args, load_runtime_env

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "cluster_configs"
LAUNCHER = ["aws.yaml", "local.yaml"]
RENDER = SynthConfig().render_resource
WHEEL = f"mixscribe-{mixscribe.__version__}-py3-none-any.whl"


def load(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def apt_packages() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    block = re.search(r"APT_PACKAGES := (.*?)\n(?!\t)", text, re.S).group(1)
    return block.replace("\\", " ").split()


def torch_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d for d in deps if d.startswith("torch=="))


def test_every_yaml_is_checked_here():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(
        [*LAUNCHER, "kuberay-raycluster.yaml", "kuberay-rayjob.yaml", "runtime_env.yaml"]
    )


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_config_passes_rays_schema(name):
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    validate_config(fillout_defaults(load(name)))  # raises on any schema error


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_setup_installs_what_the_code_needs(name):
    setup = " ".join(load(name)["setup_commands"])
    missing = [p for p in apt_packages() if p not in setup.split()]
    assert not missing, f"{name}: setup_commands lack apt packages {missing}"
    assert torch_pin() in setup
    assert WHEEL in setup, f"{name}: installs another mixscribe version than {mixscribe.__version__}"
    assert "mixscribe soundfonts verify" in setup


def test_aws_places_render_on_cpu_nodes_and_training_on_gpu_nodes():
    types = load("aws.yaml")["available_node_types"]
    render_nodes = [n for n, t in types.items() if t.get("resources", {}).get(RENDER, 0) > 0]
    gpu_nodes = [n for n, t in types.items() if t.get("resources", {}).get("GPU", 0) > 0]
    assert render_nodes and gpu_nodes
    assert not set(render_nodes) & set(gpu_nodes)
    for n in render_nodes:  # one render actor per CPU
        assert types[n]["resources"][RENDER] == types[n]["resources"]["CPU"]
    assert types[load("aws.yaml")["head_node_type"]]["resources"].get(RENDER, 0) == 0


def test_local_head_advertises_render_as_valid_json():
    cmd = next(c for c in load("local.yaml")["head_start_ray_commands"] if " start " in c)
    assert "ray start --head" in cmd
    args = cmd.split("ray start", 1)[1]
    # Let bash expand the quoting and $(nproc) exactly as the launcher's shell would.
    out = subprocess.run(["bash", "-c", f"printf '%s\\n' {args}"], capture_output=True, text=True, check=True).stdout
    value = next(line for line in out.splitlines() if line.startswith("--resources="))
    assert json.loads(value.split("=", 1)[1]) == {RENDER: os.cpu_count()}


def test_dockerfile_matches_versions():
    text = (CONFIGS / "Dockerfile").read_text()
    assert f"rayproject/ray:{ray.__version__}-py311" in text
    assert f"ARG MIXSCRIBE_VERSION={mixscribe.__version__}" in text
    assert torch_pin() in text
    installed = text.split("apt-get install", 1)[1].split("&&")[0].replace("\\", " ").split()
    assert not [p for p in apt_packages() if p not in installed]


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def _ray_start_resources(group: dict) -> dict:
    raw = group["rayStartParams"].get("resources")
    return json.loads(raw.strip('"').replace('\\"', '"')) if raw else {}


def test_kuberay_cluster_versions_resources_and_env():
    spec = load("kuberay-raycluster.yaml")["spec"]
    assert spec["rayVersion"] == ray.__version__
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for group in [spec["headGroupSpec"], *groups.values()]:
        for c in _containers(group):
            image, tag = c["image"].rsplit(":", 1)
            assert tag.split("-")[0] == mixscribe.__version__, c["image"]
            assert {e["name"] for e in c["env"]} >= {"MLFLOW_TRACKING_URI"}
            assert any(m["mountPath"] == "/mnt/shared" for m in c["volumeMounts"])
    render = [n for n, g in groups.items() if _ray_start_resources(g).get(RENDER, 0) > 0]
    gpu = [n for n, g in groups.items() if "nvidia.com/gpu" in _containers(g)[0]["resources"]["limits"]]
    assert render and gpu and not set(render) & set(gpu)
    for n in render:
        assert _ray_start_resources(groups[n])[RENDER] == int(groups[n]["rayStartParams"]["num-cpus"])
    for n in gpu:
        assert groups[n]["rayStartParams"]["num-gpus"] == "1"
        assert _containers(groups[n])[0]["image"].endswith("-gpu")


def test_kuberay_job_targets_the_cluster_with_a_valid_entrypoint():
    job = load("kuberay-rayjob.yaml")["spec"]
    assert job["clusterSelector"]["ray.io/cluster"] == load("kuberay-raycluster.yaml")["metadata"]["name"]
    argv = shlex.split(job["entrypoint"])
    assert argv[0] == "mixscribe"
    env = yaml.safe_load(job["runtimeEnvYAML"])
    check_stage_args(argv[1], argv[2:], env["env_vars"])  # parses, and its paths are shared ones


def test_runtime_env_example_is_a_valid_ray_runtime_env():
    from ray.runtime_env import RuntimeEnv

    data = load("runtime_env.yaml")
    RuntimeEnv(**data)  # Ray's own validation of every field
    env = build_runtime_env(load_runtime_env(str(CONFIGS / "runtime_env.yaml")), str(ROOT), {"EXTRA": "1"})
    assert env["working_dir"] == str(ROOT)
    assert env["env_vars"]["MLFLOW_TRACKING_URI"].startswith("http")
    assert env["env_vars"]["EXTRA"] == "1"
    assert ".venv" in env["excludes"]


def _documented_commands() -> list[list[str]]:
    """Every `mixscribe submit ...` command line in the cluster configs' comments and the README."""
    commands = []
    for path in [*CONFIGS.iterdir(), ROOT / "README.md"]:
        for line in path.read_text().splitlines():
            command = line.lstrip("# ")
            if command.startswith("mixscribe submit ") and "--address" in command:  # commands, not prose
                text = command.split("mixscribe submit ", 1)[1].split("  #")[0]
                commands.append(shlex.split(text))
    return commands


def test_documented_submit_commands_parse():
    commands = _documented_commands()
    assert len(commands) >= 6
    for argv in commands:
        args = build_parser().parse_args(["submit", *argv])
        check_stage_args(args.stage, args.stage_args, {"MLFLOW_TRACKING_URI": "http://x"})


def test_the_wheel_nodes_install_carries_catalog_and_presets(tmp_path):
    import shutil
    import zipfile

    # built from a copy of the sources, as a clean clone builds it: a checkout's own build/ can hold
    # modules that no longer exist, which setuptools would pack again
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "out", "runs", "mlruns", "*.egg-info", "__pycache__", ".*cache", "*.sf2"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)  # fmt: skip
    wheel = tmp_path / WHEEL  # the file name the configs install
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"mixscribe/synth/catalog.toml", "mixscribe/presets/full.yaml"} <= names
    assert not any("loopback" in n for n in names)  # the test cluster ships with the tests, not the package
    # the default model: `pip install mixscribe` then `mixscribe transcribe song.wav -k 3` needs no download
    assert {"mixscribe/weights/default.pt", "mixscribe/weights/default.onnx", "mixscribe/presets/default.yaml"} <= names
    packaged = zipfile.ZipFile(wheel).read("mixscribe/synth/catalog.toml").decode()
    assert packaged == (ROOT / "soundfonts" / "catalog.toml").read_text()  # a copy, not a dangling link

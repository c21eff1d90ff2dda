# Two commands on a fresh Debian machine (as root): `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# g++ (torch.compile builds its CPU kernels), FluidSynth (pyfluidsynth is a ctypes wrapper around the
# Debian library) and the catalog's SoundFonts.
APT_PACKAGES := g++ fluidsynth libfluidsynth3 fluid-soundfont-gm fluidr3mono-gm-soundfont \
	musescore-general-soundfont timgm6mb-soundfont csound-soundfont opl3-soundfont
OUT ?= out
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: setup system run test test-all bench dist clean

system:
	@if dpkg-query -W -f='$${Status}\n' $(APT_PACKAGES) 2>/dev/null | grep -vq "install ok installed" \
	   || [ "$$(dpkg-query -W -f='$${Status}\n' $(APT_PACKAGES) 2>/dev/null | wc -l)" -ne $(words $(APT_PACKAGES)) ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	else echo "system packages present"; fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned to the CPU build (a bare `torch` would pull multi-GB CUDA wheels).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: system $(STAMP)

run: setup
	$(BIN)/mixscribe soundfonts verify
	$(BIN)/mixscribe pipeline --config demo --workdir $(OUT)
	$(BIN)/mixscribe inspect $(OUT)/demo/shards --clip first --out $(OUT)/demo/inspect
	$(BIN)/mixscribe transcribe $(OUT)/demo/inspect/*/mix.wav --checkpoint $(OUT)/demo/models/encoder.pt \
		-o $(OUT)/demo/transcribed --format mid,csv,png
	$(BIN)/mixscribe transcribe $(OUT)/demo/inspect/*/mix.wav -o $(OUT)/demo/transcribed-default --format mid,csv,png
	@echo
	@echo "Done. Shards: $(OUT)/demo/shards; model: $(OUT)/demo/models/encoder.pt; report: $(OUT)/demo/report/summary.md;"
	@echo "one clip as WAV/MIDI/PNG: $(OUT)/demo/inspect/; its transcription: $(OUT)/demo/transcribed/"
	@echo "(by the demo model) and $(OUT)/demo/transcribed-default/ (by the shipped default model)."
	@echo "Open the runs in MLflow:  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(OUT)/mlflow.db --port 5000"
	@echo
	@cat $(OUT)/demo/comparison.md

test: setup
	$(BIN)/ruff check --select F,E9 --quiet mixscribe tests benchmarks
	$(BIN)/python -m pytest -m "not slow" -q

test-all: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/synth_throughput.py
	$(BIN)/python benchmarks/transcribe_speed.py
	$(BIN)/python benchmarks/frontend_speed.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/ray_data_pacing.py
	$(BIN)/python benchmarks/procedural_throughput.py
	$(BIN)/python benchmarks/cluster_scaling.py

# The wheel that cluster nodes install (cluster_configs/aws.yaml, local.yaml, Dockerfile).
dist: $(STAMP)
	rm -rf dist build/lib build/bdist.* && $(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist .  # no stale modules from build/
	@ls dist/*.whl

clean:
	rm -rf $(OUT) .pytest_cache

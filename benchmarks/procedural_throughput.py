"""Procedural instruments vs FluidSynth: audio-seconds rendered per CPU-second, same performances.

One process, one thread, bare renderers (no Ray, no Parquet): each performance (the demo generator's
7 s stems, pitch ranges of the instrument's GM program) is rendered once by a random SoundFont preset
and once by a random generated instrument, both through the same loudness normalisation and checks.
Usage: python benchmarks/procedural_throughput.py [--stems 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402

from mixscribe.config import PROCEDURAL_FAMILY, ProceduralConfig, load_synth_config  # noqa: E402
from mixscribe.schema import HOP, SAMPLE_RATE  # noqa: E402
from mixscribe.synth.catalog import select  # noqa: E402
from mixscribe.synth.clips import build_pools  # noqa: E402
from mixscribe.synth.generator import generate_performance  # noqa: E402
from mixscribe.synth.instruments import program_range  # noqa: E402
from mixscribe.synth.procedural import MixedRenderer, ProceduralRenderer  # noqa: E402
from mixscribe.synth.render import FluidSynthRenderer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stems", type=int, default=60)
    ap.add_argument("--instruments", type=int, default=200)
    args = ap.parse_args()
    cfg = load_synth_config("demo")
    proc = ProceduralConfig(seen_instruments=args.instruments, seed=0)
    cfg = dataclasses.replace(cfg, procedural=proc)
    entries = select(cfg.soundfonts)
    renderer = MixedRenderer(FluidSynthRenderer(cfg.render, entries), ProceduralRenderer(cfg.render, proc))
    pool = build_pools(cfg, entries, renderer)["train"]
    generated = [c for c in pool if c.sf_family == PROCEDURAL_FAMILY]
    sampled = [c for c in pool if c.sf_family != PROCEDURAL_FAMILY]
    rng = np.random.default_rng(0)
    num_samples = cfg.generator.clip_frames * HOP
    cpu = {"fluidsynth": 0.0, "procedural": 0.0}
    audio_s = {"fluidsynth": 0.0, "procedural": 0.0}
    dropped = {"fluidsynth": 0, "procedural": 0}
    for i in range(args.stems):
        for name, options in (("fluidsynth", sampled), ("procedural", generated)):
            cand = options[int(rng.integers(len(options)))]
            low, high = program_range(cand.gm_program, True)
            perf = generate_performance(cfg.generator, low, high, np.random.default_rng([i, 7]))
            if not perf.notes:
                continue
            t0 = time.process_time()
            out = renderer.render(cand.instrument, perf, num_samples)
            cpu[name] += time.process_time() - t0
            audio_s[name] += num_samples / SAMPLE_RATE
            dropped[name] += out.problem is not None
    rate = {k: audio_s[k] / cpu[k] for k in cpu}
    rows = "\n".join(f"| {k} | {audio_s[k]:.0f} | {cpu[k]:.2f} | {rate[k]:.1f} | {dropped[k]} |" for k in cpu)
    body = f"""## Procedural instruments vs FluidSynth (`benchmarks/procedural_throughput.py --stems {args.stems}`)

Bare renderers in one process and thread, the same {args.stems} performances (demo generator, 7 s stems, each
drawn in the register of its instrument's GM program), loudness normalisation and checks included;
SoundFont presets drawn from every installed catalog SoundFont, generated instruments from {args.instruments}.

| renderer | audio rendered (s) | CPU (s) | audio-s per CPU-s | stems dropped |
|---|---|---|---|---|
{rows}

The spectral model renders at {rate['procedural'] / rate['fluidsynth']:.2f}x FluidSynth's rate per CPU-second.
"""
    update_section("procedural-throughput", body)
    print(body)


if __name__ == "__main__":
    main()

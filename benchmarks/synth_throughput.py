"""Synth throughput: bare FluidSynth vs the whole Ray Data pipeline to Parquet, 1 and 2 workers.

Audio-seconds rendered per CPU-second, where "audio" counts every stem rendered (stems are what the
synth renders). The bare rate is the limit: one FluidSynth rendering the very same notes and presets in
a loop, nothing else. The pipeline's rate is audio / CPU-seconds of the whole machine during the job
(psutil), Ray already running; scaling is the wall-time ratio of whole jobs, best of 2 (a noisy machine).
Targets: pipeline >= 70 % of the bare rate per CPU-second; 2 workers >= 1.7x one worker.
Usage: python benchmarks/synth_throughput.py [--clips 512] [--config demo]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402

from mixscribe.config import load_synth_config  # noqa: E402
from mixscribe.synth import catalog  # noqa: E402
from mixscribe.synth.clips import ClipMaker  # noqa: E402
from mixscribe.synth.render import FluidSynthRenderer  # noqa: E402


class Recording(FluidSynthRenderer):
    """Records what the clip maker asks to render, so the bare loop renders exactly the same."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = []

    def render(self, instrument, performance, num_samples):
        self.calls.append((instrument, performance, num_samples))
        return super().render(instrument, performance, num_samples)


def _render_calls(args) -> float:
    cfg, calls = args
    renderer = FluidSynthRenderer(cfg.render, catalog.select(cfg.soundfonts))
    for ins, perf, n in calls[:20]:
        renderer.render_raw(ins, perf, n)
    t0 = time.perf_counter()
    for ins, perf, n in calls:
        renderer.render_raw(ins, perf, n)
    return time.perf_counter() - t0


def bare_parallel_speedup(cfg, calls) -> float:
    """The machine's own limit: the same bare loop in 1 process vs split over 2 processes (spawned)."""
    from multiprocessing import get_context

    with get_context("spawn").Pool(1) as pool:
        one = pool.map(_render_calls, [(cfg, calls)])[0]
    half = len(calls) // 2
    with get_context("spawn").Pool(2) as pool:
        two = max(pool.map(_render_calls, [(cfg, calls[:half]), (cfg, calls[half:])]))
    return one / two


def bare_rate(cfg, clips: int) -> tuple[float, float, list]:
    entries = catalog.select(cfg.soundfonts)
    rec = Recording(cfg.render, entries)
    maker = ClipMaker(cfg, entries, rec)
    for i in range(clips):
        maker.make(i)
    calls = rec.calls
    renderer = FluidSynthRenderer(cfg.render, entries)
    for ins, perf, n in calls[:20]:  # load the SoundFonts' samples outside the timed loop
        renderer.render_raw(ins, perf, n)
    t0 = time.process_time()
    for ins, perf, n in calls:
        renderer.render_raw(ins, perf, n)
    cpu = time.process_time() - t0
    audio = sum(n for _, _, n in calls) / 22050
    return audio / cpu, audio, calls


def busy_cpu_seconds() -> float:
    """CPU time used by every process on the machine (Ray's workers, raylet, internal actors, driver)."""
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0)


def pipeline_run(cfg, clips: int, workers: int) -> tuple[float, float, float]:
    """(stem audio seconds, wall seconds, CPU seconds of the whole machine) of one `run_synth` job."""
    from mixscribe.synth.pipeline import run_synth

    with tempfile.TemporaryDirectory() as out:
        c0, t0 = busy_cpu_seconds(), time.perf_counter()
        result = run_synth(dataclasses.replace(cfg, workers=workers), out, clips)
        wall, cpu = time.perf_counter() - t0, busy_cpu_seconds() - c0
    return result.manifest["stems_total"] * cfg.generator.clip_frames * 256 / 22050, wall, cpu


def pipeline_rate(cfg, clips: int, workers: int, repeats: int = 2) -> dict:
    """The whole job, best of `repeats` (this machine is noisy): wall time, and audio per CPU-second
    of the whole machine in that run."""
    best = None
    for _ in range(repeats):
        audio, wall, cpu = pipeline_run(cfg, clips, workers)
        if best is None or wall < best["wall"]:
            best = {"wall": wall, "cpu_rate": audio / cpu, "cores_busy": cpu / wall, "per_worker": audio / (wall * workers)}
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=512)
    ap.add_argument("--config", default="demo")
    ap.add_argument("--clips-per-shard", type=int, default=16)
    args = ap.parse_args()
    cfg = dataclasses.replace(load_synth_config(args.config), clips_per_shard=args.clips_per_shard)

    from mixscribe.raycluster import init_ray

    init_ray()
    bare, audio, calls = bare_rate(cfg, args.clips)
    print(f"bare FluidSynth: {bare:.1f} audio-s per CPU-s over {audio:.0f} audio-s")
    machine_limit = bare_parallel_speedup(cfg, calls)
    print(f"bare FluidSynth in 2 processes: {machine_limit:.2f}x one (this machine's limit)")
    runs = {w: pipeline_rate(cfg, args.clips, w) for w in (1, 2)}
    for w, r in runs.items():
        print(f"pipeline, {w} worker(s): {r['wall']:.1f} s wall, {r['cpu_rate']:.1f} audio-s per CPU-s used "
              f"({r['cores_busy']:.2f} cores busy), {r['per_worker']:.1f} audio-s per worker-s")
    keep1, keep2 = runs[1]["cpu_rate"] / bare, runs[2]["cpu_rate"] / bare
    speedup = runs[1]["wall"] / runs[2]["wall"]
    print(f"pipeline keeps {keep1:.0%} (1 worker) / {keep2:.0%} (2 workers) of bare per CPU-s; 2 workers = {speedup:.2f}x one")
    body = f"""## Synth throughput (`benchmarks/synth_throughput.py --clips {args.clips} --config {args.config}`)

{args.clips} clips of {cfg.generator.clip_frames} frames (7 s), 1-4 stems, {args.clips_per_shard} clips per shard; every rendered
stem counts as audio. Bare = one FluidSynth rendering exactly the same notes and presets in a loop, nothing else.
Pipeline = the whole `run_synth` job (Ray Data actors, normalisation and checks, int16, Parquet, commit,
manifest; Ray already started), best of 2 runs. CPU-seconds are those of the whole machine (render actors,
Ray's raylet and internal actors, the driver), read with psutil.
Targets: >= 70 % of bare per CPU-second; 2 workers >= 1.7x one.

| what | wall (s) | audio-s per CPU-s used | vs bare | cores busy | audio-s per worker-s |
|---|---|---|---|---|---|
| bare FluidSynth, same notes, one process | - | {bare:.1f} | 100 % | 1.00 | {bare:.1f} |
| bare FluidSynth split over 2 processes (no Ray) | - | - | - | 2 | {machine_limit:.2f}x one process |
| pipeline, 1 worker | {runs[1]['wall']:.1f} | {runs[1]['cpu_rate']:.1f} | {keep1:.0%} | {runs[1]['cores_busy']:.2f} | {runs[1]['per_worker']:.1f} |
| pipeline, 2 workers | {runs[2]['wall']:.1f} | {runs[2]['cpu_rate']:.1f} | {keep2:.0%} | {runs[2]['cores_busy']:.2f} | {runs[2]['per_worker']:.1f} |

2 workers vs 1: **{speedup:.2f}x** on wall time (this machine's own limit, bare FluidSynth in 2 processes:
{machine_limit:.2f}x). The job includes fixed start-up (actors, SoundFont loading, dataset planning, commit)
that a long job amortises."""
    update_section("synth-throughput", body)


if __name__ == "__main__":
    main()

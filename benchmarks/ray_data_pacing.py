"""Ray Data's scheduling loop, as Ray ships it and paced by mixscribe: training throughput and the CPU
the SplitCoordinator (the actor that feeds Ray Train's workers) takes, in one run on the same shards.

Ray 2.60's streaming executor blocks only while tasks are pending; when the data are ahead of the model,
as they are in training, its loop spins. mixscribe stretches each loop step to RAY_DATA_LOOP_MIN_S in
its Ray processes (mixscribe.raycluster.pace_ray_data_scheduler); MIXSCRIBE_RAY_DATA_PACING=off turns
that off, as for the first run here. Each run is a fresh local Ray session: the encoder stage (the
default recipe's second stage), 2 workers, the preset's precision and compile settings.
Target: the coordinator below 10 % of a core, training faster than without pacing.
Usage: python benchmarks/ray_data_pacing.py [--clips 48] [--epochs 3] [--steps 20] [--buffer-mb 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402

from mixscribe.raycluster import PACING_ENV, RAY_DATA_LOOP_MIN_S, prepare_local_environment  # noqa: E402

prepare_local_environment()  # before anything imports Ray

from mixscribe.config import load_synth_config  # noqa: E402
from mixscribe.train.trainer import load_train_config, read_history, run_training  # noqa: E402


class CoordinatorCPU:
    """CPU seconds of the SplitCoordinator processes alive during a run, sampled until it ends (their
    last reading counts: a process that exits takes its counter with it)."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            for proc in psutil.process_iter(["cmdline"]):
                try:
                    if "SplitCoordinator" in " ".join(proc.info["cmdline"] or []):
                        t = proc.cpu_times()
                        self.seconds[proc.pid] = t.user + t.system
                except psutil.Error:
                    pass

    def __enter__(self) -> CoordinatorCPU:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _limit_buffer(buffer_mb: int) -> None:
    """Ray Data's object-store budget, small enough that the remixed examples fill it within seconds, as a
    real run's fill the default budget after its first few thousand examples: from then on the data are
    ahead of the model and the loop has nothing to wait on. (A short run whose examples all fit finishes
    its pipeline at once and its loop stops: no spin to measure.)"""
    from ray.data import DataContext

    options = DataContext.get_current().execution_options
    options.resource_limits = options.resource_limits.copy(object_store_memory=buffer_mb * 2**20)


def run(cfg, shards: str, storage: str, paced: bool, buffer_mb: int) -> dict:
    import ray

    from mixscribe.raycluster import init_ray

    os.environ[PACING_ENV] = "on" if paced else "off"
    init_ray()
    _limit_buffer(buffer_mb)
    try:
        t0 = time.perf_counter()
        with CoordinatorCPU() as cpu:
            result = run_training(cfg, shards, f"pacing-{paced}", storage)
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    if result.error:
        raise result.error
    later = [h for h in read_history(result) if h["epoch"] >= 1]
    return {"per_worker": mean(h["train/examples_per_s"] for h in later),
            "wait": mean(h["train/data_wait_frac"] for h in later),
            "coordinator": sum(cpu.seconds.values()) / wall, "wall": wall}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--config", default="default")
    ap.add_argument("--buffer-mb", type=int, default=64, help="Ray Data's object-store budget (MiB)")
    args = ap.parse_args()

    from mixscribe.synth.pipeline import run_synth

    cfg = dataclasses.replace(load_train_config(args.config), epochs=args.epochs, steps_per_epoch=args.steps,
                              stage="encoder", workers=2, score_valid_every=0)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        import ray

        from mixscribe.raycluster import init_ray

        init_ray()
        run_synth(load_synth_config(args.config), f"{tmp}/shards", args.clips)
        ray.shutdown()
        stock = run(cfg, f"{tmp}/shards", f"{tmp}/runs", paced=False, buffer_mb=args.buffer_mb)
        paced = run(cfg, f"{tmp}/shards", f"{tmp}/runs", paced=True, buffer_mb=args.buffer_mb)
    rows = (("as Ray ships it", stock), (f"paced ({1000 * RAY_DATA_LOOP_MIN_S:.0f} ms per step)", paced))
    body = "\n".join([
        "## Ray Data's scheduling loop while training (`benchmarks/ray_data_pacing.py`)",
        "",
        f"Preset `{args.config}`, stage `encoder`, 2 workers, batch {cfg.batch_size} of {cfg.remix.crop_frames} frames, "
        f"precision {cfg.precision}, compile {cfg.compile}; {args.clips} clips; {args.epochs} epochs x {args.steps} "
        f"steps, each run a fresh local Ray session, Ray Data's object-store budget {args.buffer_mb} MiB (so that the "
        "examples fill it within seconds, as a real run's fill the default budget). Rates are over epochs >= 1; the coordinator's share is its CPU "
        "seconds over the run's wall time (1.0 = one core).",
        "",
        "| Ray Data loop | examples/s per worker | data wait | SplitCoordinator CPU (cores) | wall (s) |",
        "|---|---|---|---|---|",
        *[f"| {n} | {r['per_worker']:.2f} | {100 * r['wait']:.1f} % | {r['coordinator']:.2f} | {r['wall']:.0f} |"
          for n, r in rows],
        "",
        f"Paced training runs at {paced['per_worker'] / stock['per_worker']:.2f}x the examples per second of the "
        f"loop as shipped; the coordinator takes {paced['coordinator']:.2f} instead of {stock['coordinator']:.2f} of a core.",
    ])  # fmt: skip
    print(body)
    update_section("ray_data_pacing", body)


if __name__ == "__main__":
    main()

"""Training throughput on Ray Train: examples (remixed training mixtures) per second per worker, the
fraction of step time spent waiting for data, and 1 vs 2 workers, on the same shard set in one run.

The reference is the bare step: the same model, batch and stage trained in this process on batches
made beforehand (no Ray, no data path), with torch limited to one thread as each Ray worker is.
Epoch 0 (Ray Data start-up, worker start) is excluded; figures are means over the later epochs.
Target (issue 4): data wait < 10 % of step time.
Usage: python benchmarks/train_throughput.py [--clips 48] [--epochs 4] [--steps 8] [--batch 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402

from mixscribe.config import load_synth_config  # noqa: E402
from mixscribe.train.trainer import load_train_config, run_training  # noqa: E402


def bare_step_rate(cfg, shards: str, steps: int) -> float:
    """Examples per second of train_step alone, one thread, pre-built batches."""
    import torch

    from mixscribe.model import TwoBranchModel
    from mixscribe.train.data import RemixConfig, Remixer, load_split
    from mixscribe.train.steps import collate, set_stage, train_step

    torch.set_num_threads(1)
    remix = RemixConfig(crop_frames=cfg.crop_frames, k_weights=cfg.k_weights, augment=cfg.augment)
    remixer = Remixer(load_split(shards, "train"), remix, seed=0)
    batches = [collate([remixer.example(0, s * cfg.batch_size + i) for i in range(cfg.batch_size)]) for s in range(steps + 2)]
    model = TwoBranchModel(cfg.model)
    opt = torch.optim.AdamW(set_stage(model, cfg.stage), lr=cfg.lr)
    for b in batches[:2]:
        train_step(model, b, opt, cfg.stage)
    t0 = time.perf_counter()
    for b in batches[2:]:
        train_step(model, b, opt, cfg.stage)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def ray_run(cfg, shards: str, workers: int, storage: str) -> dict:
    t0 = time.perf_counter()
    result = run_training(dataclasses.replace(cfg, workers=workers), shards, f"bench-{workers}", storage)
    wall = time.perf_counter() - t0
    if result.error:
        raise result.error
    df = result.metrics_dataframe
    later = df[df["epoch"] >= 1]
    return {
        "per_worker": float(later["train/examples_per_s"].mean()),
        "wait": float(later["train/data_wait_frac"].mean()),
        "wait_max": float(later["train/data_wait_frac"].max()),
        "wall": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--config", default="demo")
    args = ap.parse_args()

    from mixscribe.raycluster import init_ray
    from mixscribe.synth.pipeline import run_synth

    cfg = dataclasses.replace(load_train_config(args.config), epochs=args.epochs, steps_per_epoch=args.steps,
                              batch_size=args.batch, stage="amt")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        init_ray()
        shards = f"{tmp}/shards"
        run_synth(load_synth_config(args.config), shards, args.clips)
        bare = bare_step_rate(cfg, shards, args.steps)
        one = ray_run(cfg, shards, 1, f"{tmp}/runs")
        two = ray_run(cfg, shards, 2, f"{tmp}/runs")
    speedup = 2 * two["per_worker"] / one["per_worker"]
    rows = [
        ("bare train_step (1 thread, no Ray, no data path)", f"{bare:.2f}", "-", "-"),
        ("Ray Train, 1 worker", f"{one['per_worker']:.2f}", f"{100 * one['wait']:.1f} % (max {100 * one['wait_max']:.1f} %)", "1.00x"),
        ("Ray Train, 2 workers", f"{two['per_worker']:.2f}", f"{100 * two['wait']:.1f} % (max {100 * two['wait_max']:.1f} %)", f"{speedup:.2f}x"),
    ]
    body = "\n".join([
        "## Training throughput (`benchmarks/train_throughput.py`)",
        "",
        f"Preset `{args.config}`, stage `amt`, batch {args.batch} mixtures of {cfg.crop_frames} frames, augmentation on; "
        f"{args.clips} synthesised clips; {args.epochs} epochs x {args.steps} steps, epoch 0 excluded. "
        "Examples are remixed training mixtures; the data wait is the time a worker blocks on the next batch.",
        "",
        "| setting | examples/s per worker | data wait (of step time) | total vs 1 worker |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"Ray Train, 1 worker, runs at {100 * one['per_worker'] / bare:.0f} % of the bare step rate. "
        "Target: data wait < 10 %.",
    ])  # fmt: skip
    print(body)
    update_section("train_throughput", body)


if __name__ == "__main__":
    main()

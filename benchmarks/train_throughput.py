"""Training throughput on Ray Train: examples (remixed training mixtures) per second per worker, the
fraction of step time spent waiting for data, and 1 vs 2 workers, on the same shard set in one run.

The reference is the bare step: the same model, batch and stage trained in this process on batches
made beforehand (no Ray, no data path), with torch limited to one thread as each Ray worker is.
Rates are means over epochs >= 1; the data wait is given for those epochs and for the whole run (epoch 0
includes Ray Data's start-up, once per run). --mixes 4 (a quarter of the demo's) makes the run cross
the end of the training split several times, which is where a streaming pass used to restart.
Targets: data wait < 10 % of step time; >= 2.0x float32's examples per CPU-second for both stages.
Usage: python benchmarks/train_throughput.py [--clips 48] [--epochs 4] [--steps 8] [--batch 8] [--mixes 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402

from mixscribe.raycluster import prepare_local_environment  # noqa: E402

prepare_local_environment()  # before anything imports Ray

from mixscribe.config import load_synth_config  # noqa: E402
from mixscribe.train.trainer import load_train_config, read_history, run_training  # noqa: E402


SETTINGS = {"float32": {"precision": "float32", "compile": False}, "bf16": {"precision": "bf16", "compile": False},
            "bf16 + compile": {"precision": "bf16", "compile": True}}  # fmt: skip
BASE = "float32"


def bare_step_rate(cfg, shards: str, steps: int) -> float:
    """Examples per second of train_step alone, one thread, pre-built batches."""
    import torch

    from mixscribe.model import TwoBranchModel
    from mixscribe.train.data import Remixer, load_split
    from mixscribe.train.steps import collate, set_stage, train_step

    torch.set_num_threads(1)
    remix = cfg.remix
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
    name = f"bench-{workers}-{cfg.stage}-{cfg.precision}-{cfg.compile}"  # the same name would resume another run
    result = run_training(dataclasses.replace(cfg, workers=workers), shards, name, storage)
    wall = time.perf_counter() - t0
    if result.error:
        raise result.error
    history = read_history(result)  # every epoch (metrics_dataframe keeps only the kept checkpoints')
    later = [h for h in history if h["epoch"] >= 1]
    return {
        "per_worker": mean(h["train/examples_per_s"] for h in later),
        "wait": mean(h["train/data_wait_frac"] for h in later),
        "wait_max": max(h["train/data_wait_frac"] for h in later),
        "wait_all": mean(h["train/data_wait_frac"] for h in history),
        "wall": wall,
        "first_epoch": cfg.steps_per_epoch * cfg.batch_size / history[0]["train/examples_per_s"],
    }


def _wait(r: dict) -> str:
    return f"{100 * r['wait']:.1f} % ({100 * r['wait_max']:.1f} %); {100 * r['wait_all']:.1f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--mixes", type=int, default=4, help="mixtures per stored clip per copy of the split")
    ap.add_argument("--config", default="demo")
    args = ap.parse_args()

    import torch

    from mixscribe.raycluster import init_ray
    from mixscribe.synth.pipeline import run_synth

    cfg = dataclasses.replace(load_train_config(args.config), epochs=args.epochs, steps_per_epoch=args.steps,
                              batch_size=args.batch, stage="amt", mixes_per_clip=args.mixes,
                              **SETTINGS[BASE])  # fmt: skip
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        init_ray()
        shards = f"{tmp}/shards"
        run_synth(load_synth_config(args.config), shards, args.clips)
        bare = bare_step_rate(cfg, shards, args.steps)
        one = ray_run(cfg, shards, 1, f"{tmp}/runs")
        for stage in ("amt", "encoder"):
            for setting in SETTINGS:
                runs[stage, setting] = ray_run(dataclasses.replace(cfg, stage=stage, **SETTINGS[setting]), shards, 2,
                                               f"{tmp}/runs")  # fmt: skip
        gpu = {}
        if torch.cuda.is_available():  # the same runs on one GPU worker, where there is one
            for stage in ("amt", "encoder"):
                gpu[stage] = ray_run(dataclasses.replace(cfg, stage=stage, use_gpu=True, precision="auto", compile=True,
                                                         cpus_per_worker=1), shards, 1, f"{tmp}/runs")  # fmt: skip
    two = runs["amt", BASE]
    speedup = 2 * two["per_worker"] / one["per_worker"]
    rows = [
        ("bare train_step (1 thread, no Ray, no data path)", f"{bare:.2f}", "-", "-"),
        ("Ray Train, 1 worker", f"{one['per_worker']:.2f}", _wait(one), "1.00x"),
        ("Ray Train, 2 workers", f"{two['per_worker']:.2f}", _wait(two), f"{speedup:.2f}x"),
    ]
    precision_rows = [f"| {stage} | {setting} | {r['per_worker']:.2f} | {2 * r['per_worker'] / os.cpu_count():.2f} | "
                      f"{r['per_worker'] / runs[stage, BASE]['per_worker']:.2f}x | {_wait(r)} | {r['first_epoch']:.0f} |"
                      for (stage, setting), r in runs.items()]  # fmt: skip
    precision_rows += [f"| {stage} | GPU ({torch.cuda.get_device_name(0)}), 1 worker, auto + compile | "
                       f"{r['per_worker']:.2f} | - | {r['per_worker'] / runs[stage, BASE]['per_worker']:.2f}x | "
                       f"{_wait(r)} | {r['first_epoch']:.0f} |" for stage, r in gpu.items()]  # fmt: skip
    body = "\n".join([
        "## Training throughput (`benchmarks/train_throughput.py`)",
        "",
        f"Preset `{args.config}`, stage `amt`, batch {args.batch} mixtures of {cfg.remix.crop_frames} frames, augmentation on; "
        f"{args.clips} synthesised clips, {args.mixes} mixtures per clip per copy of the split; "
        f"{args.epochs} epochs x {args.steps} steps. "
        "Examples are remixed training mixtures; the data wait is the time a worker blocks on the next batch.",
        "",
        "| setting | examples/s per worker | data wait: epochs >= 1 mean (max); whole run | total vs 1 worker |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"Ray Train, 1 worker, runs at {100 * one['per_worker'] / bare:.0f} % of the bare step rate. "
        "Target: data wait < 10 %.",
        "",
        f"**`train.precision` and `train.compile`**, Ray Train with 2 workers on this {os.cpu_count()}-CPU machine, "
        "both stages, same shards and seed, in this one run (the encoder stage from a fresh model: throughput "
        "only). Rates are over epochs >= 1; the first epoch's seconds include torch.compile's one-off build.",
        "",
        "| stage | setting | examples/s per worker | examples per CPU-second | vs float32 | data wait | first epoch (s) |",
        "|---|---|---|---|---|---|---|",
        *precision_rows,
    ])  # fmt: skip
    print(body)
    update_section("train_throughput", body)


if __name__ == "__main__":
    main()

"""Where a training step's time goes, before choosing how to make it faster: torch.profiler over steps
of each stage (amt, encoder) with one thread, as each Ray Train worker has, the step split into its
parts (CQT front end, features, AMT branch, encoder, losses, backward, optimiser), the data path per
example (remix with augmentation, collate), and the CPU's arithmetic options measured on the same
batches: float32, channels-last, bfloat16 autocast, both.

Figures are examples per second of the bare step (pre-built batches, no Ray), medians of --repeats
timed passes over --steps steps, each option in this one process; ratios are against "before" in the
same run: float32, and the encoder stage also running the frozen AMT branch, whose outputs are not in
its loss (it no longer does). `train.precision: bf16` is the sixth row, with `train.compile` the last.
Usage: python benchmarks/train_profile.py [--clips 24] [--steps 6] [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402

from mixscribe.raycluster import prepare_local_environment  # noqa: E402

prepare_local_environment()  # before anything imports Ray

from mixscribe.config import load_synth_config  # noqa: E402
from mixscribe.train.trainer import load_train_config  # noqa: E402

PARTS = ("front end (CQT)", "features (norm, harmonic stack)", "AMT branch", "encoder", "losses", "backward",
         "optimiser step")  # fmt: skip


def make_batches(cfg, shards: str, count: int):
    from mixscribe.train.data import Remixer, load_split
    from mixscribe.train.steps import collate

    remix = cfg.remix
    remixer = Remixer(load_split(shards, "train"), remix, seed=0)
    t0 = time.perf_counter()
    examples = [remixer.example(0, i) for i in range(count * cfg.batch_size)]
    t_remix = (time.perf_counter() - t0) / len(examples)
    t0 = time.perf_counter()
    batches = [collate(examples[i * cfg.batch_size : (i + 1) * cfg.batch_size]) for i in range(count)]
    t_collate = (time.perf_counter() - t0) / len(examples)
    return batches, t_remix, t_collate


def new_model(cfg, stage: str):
    import torch

    from mixscribe.model import TwoBranchModel
    from mixscribe.train.steps import set_stage

    torch.manual_seed(0)
    model = TwoBranchModel(cfg.model)
    return model, torch.optim.AdamW(set_stage(model, stage), lr=cfg.lr)


def step_parts(model, batch, optimizer, stage: str) -> dict[str, float]:
    """One training step timed part by part (the same arithmetic as train_step)."""
    from mixscribe.model.losses import amt_loss, timbre_loss

    times, t = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name] = now - t
        t = now

    optimizer.zero_grad(set_to_none=True)
    power = model.power(batch.audio)
    lap(PARTS[0])
    x = model.features_from_power(power)
    lap(PARTS[1])
    frame, onset = model.amt(x) if stage != "encoder" else (None, None)  # as losses(): no frozen AMT forward
    lap(PARTS[2])
    emb = model.encoder(x) if stage != "amt" else None
    lap(PARTS[3])
    if stage == "amt":
        loss = amt_loss(model.cfg, batch.frame, batch.onset, frame, onset)
    else:
        loss = timbre_loss(model.cfg, emb, batch.membership)
    lap(PARTS[4])
    loss.backward()
    lap(PARTS[5])
    optimizer.step()
    model.clamp_affines_()
    lap(PARTS[6])
    return times


def rate(cfg, stage: str, batches, repeats: int, channels_last: bool = False, bf16: bool = False,
         frozen_amt_forward: bool = False, compile: bool = False) -> float:  # fmt: skip
    """Examples per second of train_step under an arithmetic option; median of repeats. frozen_amt_forward:
    the step as it was before, when the encoder stage ran the frozen AMT branch too. compile: the forward
    through torch.compile (its one-off build falls in the untimed first pass)."""
    import torch

    from mixscribe.train.steps import train_step

    model, opt = new_model(cfg, stage)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = (lambda audio, with_embedding, with_amt: model(audio, with_embedding=with_embedding)) if frozen_amt_forward else None
    if compile:
        forward = torch.compile(model)
    runs = []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        for b in batches:
            train_step(model, b, opt, stage, forward=forward, precision="bf16" if bf16 else "float32")
        if r:  # the first pass warms oneDNN's kernel caches
            runs.append(len(batches) * cfg.batch_size / (time.perf_counter() - t0))
    return median(runs)


def top_ops(cfg, stage: str, batches, n: int = 8) -> list[tuple[str, float]]:
    """The ops with the most self CPU time over the batches (torch.profiler), as shares of the total."""
    from torch.profiler import ProfilerActivity, profile

    from mixscribe.train.steps import train_step

    model, opt = new_model(cfg, stage)
    train_step(model, batches[0], opt, stage)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches:
            train_step(model, b, opt, stage)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: -e.self_cpu_time_total)[:n]
    return [(e.key, e.self_cpu_time_total / total) for e in ranked]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--config", default="demo")
    args = ap.parse_args()

    import dataclasses

    import torch

    from mixscribe.model.arithmetic import bf16_supported
    from mixscribe.raycluster import init_ray
    from mixscribe.synth.pipeline import run_synth

    cfg = dataclasses.replace(load_train_config(args.config), batch_size=args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        init_ray()
        shards = f"{tmp}/shards"
        run_synth(load_synth_config(args.config), shards, args.clips)
        batches, t_remix, t_collate = make_batches(cfg, shards, args.steps)
    import ray

    ray.shutdown()
    torch.set_num_threads(1)  # as each Ray Train worker (cpus_per_worker 0.5 on this machine)

    lines = ["## Training step profile (`benchmarks/train_profile.py`)", "",
             f"Preset `{args.config}`, batch {args.batch} mixtures of {cfg.remix.crop_frames} frames, one thread, "
             f"{args.steps} pre-built batches; {args.clips} synthesised clips.", ""]  # fmt: skip
    for stage in ("amt", "encoder"):
        model, opt = new_model(cfg, stage)
        step_parts(model, batches[0], opt, stage)  # warm-up
        parts = [step_parts(model, b, opt, stage) for b in batches]
        mean = {p: sum(x[p] for x in parts) / len(parts) for p in PARTS}
        total = sum(mean.values())
        lines += [f"**Stage `{stage}`**: {1000 * total:.0f} ms per step ({args.batch / total:.2f} examples/s).", "",
                  "| part | ms per step | share |", "|---|---|---|",
                  *[f"| {p} | {1000 * mean[p]:.1f} | {100 * mean[p] / total:.1f} % |" for p in PARTS], ""]  # fmt: skip
        lines += ["Top ops by self CPU time (torch.profiler):", "", "| op | share |", "|---|---|",
                  *[f"| `{name}` | {100 * share:.1f} % |" for name, share in top_ops(cfg, stage, batches)], ""]  # fmt: skip

    lines += [f"**Data path** per example (one process): remix with augmentation {1000 * t_remix:.1f} ms, "
              f"collate {1000 * t_collate:.2f} ms.", ""]  # fmt: skip

    options = [("before: float32, the encoder stage running the frozen AMT branch", {"frozen_amt_forward": True}),
               ("float32 (train.precision: float32)", {}), ("float32, channels-last", {"channels_last": True}),
               ("float32 + torch.compile", {"compile": True})]  # fmt: skip
    if bf16_supported():
        options += [("bf16 autocast", {"bf16": True}), ("bf16 autocast + channels-last (train.precision: bf16)",
                                                         {"bf16": True, "channels_last": True}),
                    ("bf16 autocast + channels-last + torch.compile (train.compile: true)",
                     {"bf16": True, "channels_last": True, "compile": True})]  # fmt: skip
    lines += [f"**Arithmetic options** (examples/s of train_step, median of {args.repeats} passes; "
              f"bf16 {'native on this CPU' if bf16_supported() else 'not native here: not measured'}):", "",
              "| option | amt | vs before | encoder | vs before |", "|---|---|---|---|---|"]  # fmt: skip
    base = {}
    for label, kw in options:
        got = {stage: rate(cfg, stage, batches, args.repeats, **kw) for stage in ("amt", "encoder")}
        base = base or got
        lines.append(f"| {label} | {got['amt']:.2f} | {got['amt'] / base['amt']:.2f}x | {got['encoder']:.2f} | "
                     f"{got['encoder'] / base['encoder']:.2f}x |")  # fmt: skip
        print(lines[-1], flush=True)
    body = "\n".join(lines)
    print(body)
    update_section("train_profile", body)


if __name__ == "__main__":
    main()

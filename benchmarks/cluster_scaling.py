"""Synth and training throughput on a real Ray cluster of 1 vs 2 nodes (loopback, one CPU per node),
jobs submitted through the job submission API, and a projection to 10-100 nodes from the measured
per-worker rates and bytes.

Per node: `ray start` with 1 CPU and `render: 1`, pinned with taskset to its own core (every process of
the node, Ray's own included, inherits it), so a node is a one-core machine: it holds one render actor,
and each training worker (placement SPREAD) its own node. The head also runs the job drivers, GCS and
dashboard on its core, as on a real cluster. Also measured outside Ray: the CPU cost of the training data path
(reading shards and remixing them into augmented mixtures), which decides how many CPUs a fast (GPU)
training worker needs beside it. Writes the measured table to docs/benchmarks.md and the projection to
docs/scaling.md.
Usage: python benchmarks/cluster_scaling.py [--clips 128] [--epochs 3] [--steps 8]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the loopback cluster

from _report import update_section  # noqa: E402

from tests.support.loopback import LoopbackCluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCALING_DOC = ROOT / "docs" / "scaling.md"
MEASURED = ROOT / "docs" / "scaling-measured.json"  # the raw figures behind scaling.md
# Assumptions of the projection (not measured here): stated in the doc next to every figure they touch.
VCPU_PRICE_USD_H = 1.36 / 32  # c6i.8xlarge on-demand, us-east-1 list price at the time of writing
SPOT_FRACTION = 0.4  # spot is typically 30-50 % of on-demand for c6i
NODE_CPUS = 32
NODE_NET_GBPS = 12.5  # c6i.8xlarge network
S3_PUT_PER_S = 3500  # per prefix


def run_job(cluster: LoopbackCluster, entrypoint: str, timeout: float = 1200) -> float:
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(cluster.dashboard_url)
    t0 = time.perf_counter()
    job = jobs.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(ROOT)})
    while (status := jobs.get_job_status(job).value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"{entrypoint}: no result in {timeout} s")
        time.sleep(0.5)
    if status != "SUCCEEDED":
        raise RuntimeError(f"{entrypoint}: {status}\n{jobs.get_job_logs(job)[-3000:]}")
    return time.perf_counter() - t0


def measure(nodes: int, args, work: Path) -> dict:
    with LoopbackCluster() as cluster:
        cluster.start_head(cpus=1, resources={"render": 1}, cores=[0])
        for i in range(1, nodes):
            cluster.add_worker(cpus=1, resources={"render": 1}, cores=[i % os.cpu_count()])
        shards = work / f"shards-{nodes}"
        synth_wall = run_job(cluster, f"mixscribe synth --config {args.config} --out {shards} --clips {args.clips}")
        manifest = json.loads((shards / "manifest.json").read_text())
        shard_bytes = sum(os.path.getsize(p) for p in glob.glob(f"{shards}/clips/*.parquet"))
        config = work / f"train-{nodes}.yaml"
        preset = yaml.safe_load((ROOT / "mixscribe" / "presets" / f"{args.config}.yaml").read_text())
        train = {**preset["train"], "workers": nodes, "placement_strategy": "SPREAD", "epochs": args.epochs,
                 "steps_per_epoch": args.steps}  # fmt: skip
        config.write_text(yaml.safe_dump({"train": train}))
        runs = work / f"runs-{nodes}"
        train_wall = run_job(cluster, f"mixscribe train --config {config} --data {shards} --storage {runs} "
                                      "--name bench --no-mlflow")  # fmt: skip
        last = sorted(p for p in glob.glob(f"{runs}/bench/checkpoint_*") if os.path.isdir(p))[-1]
        state = torch.load(f"{last}/trainer_state.pt", weights_only=True)
        later = [h for h in state["history"] if h["epoch"] >= 1]
        leftovers = cluster.stop()
    return {
        "nodes": nodes,
        "synth_wall": synth_wall,
        "render_s": manifest["render_seconds"],
        "clip_hours": manifest["hours"],
        "render_nodes": len(manifest["render_nodes"]),
        "bytes": shard_bytes,
        "shards": len(manifest["files"]),
        "train_wall": train_wall,
        "per_worker": mean(h["train/examples_per_s"] for h in later),
        "wait": mean(h["train/data_wait_frac"] for h in later),
        "train_nodes": len(set(state["worker_nodes"])),
        "batch": train["batch_size"],
        "crop": train["remix"]["crop_frames"],
        "clean_stop": not leftovers,
    }


def remix_cost(shards: Path, config: str, examples: int = 256) -> float:
    """Training examples the data path makes per CPU-second (read shards, remix, augment), one process."""
    from mixscribe.train.data import remix_files, remix_tasks
    from mixscribe.train.trainer import load_train_config

    cfg = load_train_config(config)
    files = sorted(glob.glob(f"{shards}/clips/*.parquet"))
    manifest = json.loads((shards / "manifest.json").read_text())
    items = remix_tasks(files, manifest["rows_per_split"]["train"], cfg.remix_pool_clips, 4, seed=0)
    remix = cfg.remix
    made, t0 = 0, time.process_time()
    for item in items:
        out = remix_files({"paths": [item["paths"]], "seed": [item["seed"]]}, "train", remix, cfg.mixes_per_clip)
        made += len(next(iter(out.values())))
        if made >= examples:
            break
    return made / (time.process_time() - t0)


def projection(one: dict, two: dict, remix_rate: float, config: str) -> str:
    audio_s_per_worker_s = two["clip_hours"] * 3600 / two["render_s"] / two["render_nodes"]  # per render CPU
    bytes_per_audio_h = two["bytes"] / two["clip_hours"]
    cpu_h_per_1000h = 1000 * 3600 / audio_s_per_worker_s / 3600
    audio_s_per_shard = two["clip_hours"] * 3600 / two["shards"]
    rows = []
    for nodes in (1, 10, 30, 100):
        cpus = nodes * NODE_CPUS
        rate = cpus * audio_s_per_worker_s  # audio-s per s
        hours = 1000 * 3600 / rate / 3600
        write_mb_s = rate * bytes_per_audio_h / 3600 / 1e6
        puts = rate / audio_s_per_shard
        rows.append(f"| {nodes} | {cpus} | {rate / 3600:,.1f} | {hours * 60:,.1f} min | {write_mb_s:,.0f} MB/s | {puts:,.0f} |")
    per_node_gbps = audio_s_per_worker_s * NODE_CPUS * bytes_per_audio_h / 3600 * 8 / 1e9
    puts_100 = 100 * NODE_CPUS * audio_s_per_worker_s / audio_s_per_shard
    shards_1000h = 1000 * 3600 / audio_s_per_shard
    commit_min = shards_1000h * 0.075 / 60
    render_min_100 = 1000 * 3600 / (100 * NODE_CPUS * audio_s_per_worker_s) / 60
    speedup = one["synth_wall"] / two["synth_wall"]
    render_speedup = (two["clip_hours"] / two["render_s"]) / (one["clip_hours"] / one["render_s"])
    train_speedup = 2 * two["per_worker"] / one["per_worker"]
    return f"""# Scaling: from one machine to 100 nodes

Measured figures come from `benchmarks/cluster_scaling.py` (a real 1- and 2-node Ray cluster on this
2-core machine, each node pinned to its own core, jobs through the job submission API; table in
[benchmarks.md](benchmarks.md#cluster-scaling)); everything beyond 2 nodes is a projection from those
per-worker rates, with its assumptions stated. Regenerate this page by rerunning the benchmark.

## Measured here (1 vs 2 nodes)

| | 1 node | 2 nodes | 2 vs 1 |
|---|---|---|---|
| synth job, wall (submit to done) | {one['synth_wall']:.1f} s | {two['synth_wall']:.1f} s | {speedup:.2f}x |
| synth, render stage only (audio h per render h) | {one['clip_hours'] * 3600 / one['render_s']:.1f} | {two['clip_hours'] * 3600 / two['render_s']:.1f} | {render_speedup:.2f}x |
| training, examples/s per worker (CPU, {one['batch']} x {one['crop']} frames) | {one['per_worker']:.2f} | {two['per_worker']:.2f} | {train_speedup:.2f}x total |
| training data wait (epochs >= 1) | {100 * one['wait']:.1f} % | {100 * two['wait']:.1f} % | |

Per render worker (one CPU): **{audio_s_per_worker_s:.0f} s of clip audio per second** (clips of 1-4 stems,
each stem rendered, normalised, checked and written). Shards take **{bytes_per_audio_h / 1e6:.0f} MB per hour of
clip audio** (int16 stems, zstd Parquet). The training data path (read, remix, augment) makes
**{remix_rate:.0f} examples per CPU-second** in one process.

## Synthesis at scale (projection)

Rendering is embarrassingly parallel: every shard is an independent actor call that writes its own
file; the only shared work is the driver's commit (one listing) and the manifest. Assuming {NODE_CPUS}-vCPU render nodes at the measured
per-CPU rate (a vCPU is a hyperthread, a core here: the cloud figure may be ~30 % lower):

| nodes | render CPUs | audio h per wall s | 1,000 h of audio in (render) | shard bytes written | shard writes/s |
|---|---|---|---|---|---|
{chr(10).join(rows)}

**Cost of 1,000 hours of audio**: {cpu_h_per_1000h:.1f} CPU-hours of rendering, about
**${cpu_h_per_1000h * VCPU_PRICE_USD_H:.2f} on demand** (c6i.8xlarge list price, ${VCPU_PRICE_USD_H * NODE_CPUS:.2f}/h for 32 vCPUs, assumed) or
~${cpu_h_per_1000h * VCPU_PRICE_USD_H * SPOT_FRACTION:.2f} on spot, plus {1000 * bytes_per_audio_h / 1e9:.0f} GB of shards
(~${1000 * bytes_per_audio_h / 1e9 * 0.023:.2f}/month on S3 standard at $0.023/GB, assumed). Rendering is cheap; what costs is the time a
cluster of GPUs spends waiting, so render ahead of training.

### Where the bottleneck moves
- **1-10 nodes: the render CPUs.** Throughput grows with render actors (measured here: render stage
  {render_speedup:.2f}x on 2 nodes; the whole job {speedup:.2f}x, because job start-up, actor start and SoundFont
  loading are fixed costs of ~10 s that a long job amortises).
- **Storage bandwidth does not bind**: shard writes take {per_node_gbps:.2f} Gbps per node at the measured rate
  ({100 * per_node_gbps / NODE_NET_GBPS:.0f} % of a {NODE_NET_GBPS} Gbps link), whatever the node count, and S3 has
  no aggregate limit.
- **The commit does not either**: shards are written in place (one PUT each; an object appears only when
  complete, so no rename), and the driver's commit is one listing of `clips/` ({shards_1000h / 1000:.0f} list requests
  for the {shards_1000h:,.0f} shards of 1,000 h) plus the manifest. An earlier version staged shards and moved
  them into place: on S3 every move is a server-side copy (~75 ms, assumed), **{commit_min:,.0f} min of sequential
  commit** for 1,000 h, more than the rendering itself from the first node on.
- **At 30-100 nodes: requests per shard.** With these `{config}` shards ({audio_s_per_shard:.0f} s of audio each),
  100 nodes finish {puts_100:,.0f} shards per second: that many PUTs (S3 allows {S3_PUT_PER_S:,}/s per prefix)
  and as many actor calls and summary rows through Ray's scheduler and the driver (not measured here).
  Raise `clips_per_shard` with the cluster: the `full` preset's 32 clips of 10.45 s hold {32 * 10.45:.0f} s,
  {32 * 10.45 / audio_s_per_shard:.1f}x fewer calls (rendering 1,000 h takes {render_min_100:.1f} min on 100 nodes either way).
- **Training**: a one-core CPU worker here trains {one['per_worker']:.1f} examples/s (its core shared with the node's
  Ray processes; an unpinned worker reaches ~5/s, docs/benchmarks.md); a GPU worker is far faster, and its
  data path then needs CPUs beside it: at {remix_rate:.0f} examples per CPU-second, a GPU training at N examples/s
  needs N / {remix_rate:.0f} CPUs of remixing (Ray Data runs them on any node; `train.data_cpus` sizes each task).
  That, not rendering, sets the CPU:GPU ratio of a training cluster. GPU throughput is not measured here
  (no GPU on this machine).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--config", default="demo")
    ap.add_argument("--project-only", action="store_true", help="rewrite docs/scaling.md from the saved figures")
    args = ap.parse_args()
    if args.project_only:
        saved = json.loads(MEASURED.read_text())
        SCALING_DOC.write_text(projection(*saved["results"], saved["remix_rate"], saved["config"]))
        return
    with tempfile.TemporaryDirectory(prefix="mxscale", dir="/tmp") as d:
        work = Path(d)
        results = [measure(n, args, work) for n in (1, 2)]
        remix_rate = remix_cost(work / "shards-2", args.config)
    one, two = results
    MEASURED.write_text(json.dumps({"results": results, "remix_rate": remix_rate, "config": args.config}, indent=1))
    for r in results:
        print(json.dumps(r))
    print(f"remix: {remix_rate:.1f} examples per CPU-second")
    rows = "\n".join(
        f"| {r['nodes']} | {r['synth_wall']:.1f} | {r['render_s']:.1f} | {r['clip_hours'] * 3600 / r['render_s']:.1f} "
        f"| {r['render_nodes']} | {r['train_wall']:.1f} | {r['per_worker']:.2f} | {r['nodes'] * r['per_worker']:.2f} "
        f"| {100 * r['wait']:.1f} % | {r['train_nodes']} | {'yes' if r['clean_stop'] else 'NO'} |"
        for r in results
    )
    body = f"""## Cluster scaling (`benchmarks/cluster_scaling.py --clips {args.clips} --config {args.config}`)

A real Ray cluster on this machine: head and worker nodes started with `ray start` (one CPU and
`render: 1` each, each node pinned to its own core with taskset; the head also runs GCS, dashboard and
the job drivers), every stage submitted as a Ray job. Synth: {args.clips} `{args.config}` clips. Training:
`{args.config}` train section, one worker per node (SPREAD), {args.epochs} epochs x {args.steps} steps; rates are
means over epochs >= 1. Projection to 10-100 nodes: [scaling.md](scaling.md).

| nodes | synth job wall (s) | render stage (s) | audio s per s | nodes rendering | train job wall (s) | examples/s per worker | examples/s total | data wait | nodes training | clean stop |
|---|---|---|---|---|---|---|---|---|---|---|
{rows}

2 nodes vs 1: synth job {one['synth_wall'] / two['synth_wall']:.2f}x, render stage
{(two['clip_hours'] / two['render_s']) / (one['clip_hours'] / one['render_s']):.2f}x, training {2 * two['per_worker'] / one['per_worker']:.2f}x. Data path: {remix_rate:.0f} examples per CPU-second.
"""
    update_section("cluster-scaling", body)
    tmp = SCALING_DOC.with_suffix(".md.tmp")
    tmp.write_text(projection(one, two, remix_rate, args.config))
    tmp.replace(SCALING_DOC)
    print(body)


if __name__ == "__main__":
    main()

"""Ray Train: the same command on one laptop or a cluster.

The driver builds a Ray Data pipeline over the training split's shards (read -> remix into mixtures with
augmentation, in Ray Data tasks that run beside the training) and each worker streams its share through
`get_dataset_shard`, prefetching so the model rarely waits. The validation loss comes from fixed
mixtures of the `valid` split, rank 0 writes a checkpoint every epoch and logs metrics to MLflow when
given a run, and re-running with the same run name and storage path resumes from the latest checkpoint
(Ray Train V2 restores the run)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from mixscribe.config import ModelConfig, SelfChecking, from_dict, to_dict
from mixscribe.train.augment import AugmentConfig
from mixscribe.train.data import RemixConfig


# The figures train.select_by may rank checkpoints by, and which way is better.
SELECT_BY = {"val/loss": "min", "val/note_f1": "max", "val/sep_note_f1": "max"}


@dataclass(frozen=True)
class TrainConfig(SelfChecking):
    stage: str = "amt"  # "amt" (focal), "encoder" (InfoNCE, AMT frozen), "joint"
    epochs: int = 2
    steps_per_epoch: int = 20
    batch_size: int = 18
    valid_examples: int = 16
    # Every this many epochs (and after the last), rank 0 transcribes the validation mixtures and logs
    # note F and separated note F (train.curve): the learning curve in figures, not only the loss. 0: never.
    score_valid_every: int = 1
    lr: float = 3e-4
    # The timbre loss's positives (mixscribe.model.losses.POSITIVES): "all" bins of the anchor's source
    # (the paper's), "other-pitch" (not the source's bins at the anchor's pitch, mostly the same note's
    # frames), or "other-note" (the loss over pooled notes). A training choice, so it lives here and not
    # in the model config a checkpoint carries.
    timbre_positives: str = "all"
    # With other-pitch: the source's bins this many semitones either side of the anchor's pitch leave the
    # loss too (neighbouring keys of a SoundFont share a sample; mixscribe.model.losses).
    timbre_exclude_semitones: int = 0
    weight_decay: float = 0.01
    seed: int = 0
    mixes_per_clip: int = 4  # mixtures drawn per stored clip on each pass over the data
    remix_pool_clips: int = 16  # clips per Ray Data remix batch: stems are mixed across this pool
    prefetch_batches: int = 2
    data_cpus: float = 0.25  # per Ray Data remix task (fractional: room beside the workers on 2 CPUs)
    workers: int = 1
    cpus_per_worker: float = 0.5  # < 1: 2 workers x 1 CPU starve Ray's other tasks on 2 CPUs
    use_gpu: bool | None = None  # one GPU per worker (Ray places workers on GPU nodes); None: when the cluster has GPUs
    placement_strategy: str = "PACK"  # Ray's: PACK (fewest nodes), SPREAD, STRICT_SPREAD (one per node)
    num_to_keep: int = 2
    # The validation figure that ranks checkpoints: the num_to_keep best are kept (and the latest, to
    # resume from), and the best is the model a pipeline ships. "val/loss" (the stage's loss, lower is
    # better), or a scored figure (higher is better, needs score_valid_every: 1): "val/note_f1", or for
    # an encoder "val/sep_note_f1", the figure it is judged by, which its InfoNCE does not always follow.
    select_by: str = "val/loss"
    max_failures: int = 2
    init_checkpoint: str = ""  # e.g. the AMT stage's checkpoint when training the encoder
    # The training steps' arithmetic: "float32", "bf16" (bfloat16 autocast, channels-last: 2.1-2.9x the
    # bare step's examples/s where the CPU multiplies bf16 natively, docs/benchmarks.md), or "auto" (bf16
    # where the worker's device has it natively, else float32). Validation losses are float32 either way.
    precision: str = "float32"
    # torch.compile the forward pass (TorchInductor: fuses the encoder's normalisation arithmetic, which
    # eager mode runs as separate passes over full-size maps). Costs about half a minute per worker
    # before the first step and needs a C++ compiler; pays on runs of more than a few minutes.
    compile: bool = False
    # The training mixtures (crop, K weights, gains, noise, same-family and same-register draws, the
    # realism transforms): set in a preset's train.remix; augmentation on unless the preset says not.
    remix: RemixConfig = field(default_factory=lambda: RemixConfig(augment=AugmentConfig()))
    model: ModelConfig = field(default_factory=ModelConfig)

    def validate(self) -> None:
        from mixscribe.config import check_field
        from mixscribe.model.losses import positives_problem
        from mixscribe.train.steps import PRECISIONS, STAGES

        check_field(self.stage in STAGES, "train.stage", f"must be one of {list(STAGES)}")
        check_field(self.epochs >= 1 and self.steps_per_epoch >= 1, "train.epochs", "epochs and steps_per_epoch must be >= 1")
        check_field(self.batch_size >= 1 and self.workers >= 1, "train.batch_size", "batch_size and workers must be >= 1")
        check_field(self.lr > 0, "train.lr", "must be > 0")
        check_field(self.score_valid_every >= 0, "train.score_valid_every", "must be >= 0 (0: never)")
        check_field(0 <= self.seed < 2**62, "train.seed", "must be in [0, 2^62) (numpy and torch seeds are non-negative)")
        check_field(self.precision in PRECISIONS, "train.precision", f"must be one of {list(PRECISIONS)}")
        problem = positives_problem(self.timbre_positives, self.timbre_exclude_semitones, prefix="train.timbre_")
        if problem:
            check_field(False, *problem)
        check_field(self.select_by in SELECT_BY, "train.select_by", f"must be one of {list(SELECT_BY)}")
        check_field(self.select_by == "val/loss" or self.score_valid_every == 1, "train.select_by",
                    f"{self.select_by} ranks every epoch's checkpoint, so needs train.score_valid_every: 1")  # fmt: skip
        check_field(self.select_by != "val/sep_note_f1" or self.stage != "amt", "train.select_by",
                    "val/sep_note_f1 is scored where the stage trains the encoder, not in stage amt")  # fmt: skip
        check_field(isinstance(self.compile, bool), "train.compile", "must be true or false")
        check_field(self.mixes_per_clip >= 1 and self.remix_pool_clips >= 1, "train.mixes_per_clip",
               "mixes_per_clip and remix_pool_clips must be >= 1")  # fmt: skip
        check_field(0 < self.data_cpus <= 64 and self.prefetch_batches >= 0, "train.data_cpus", "must be > 0")
        check_field(self.placement_strategy in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"), "train.placement_strategy",
               "must be PACK, SPREAD, STRICT_PACK or STRICT_SPREAD")  # fmt: skip


# Remix settings a preset's train: section once held directly: named in the error that points to
# train.remix:, and kept in the form a pipeline's config digest takes (pipeline.Plan.digest).
FLAT_REMIX_FIELDS = ("crop_frames", "k_weights", "same_family_prob", "register_match_prob", "register_semitones",
                     "gain_low", "gain_high", "noise_std", "augment")  # fmt: skip


def check_remix_section(train: dict, prefix: str = "train.") -> None:
    """A train section (or a stage's override of it) written with the remix settings inline is told where
    they went, not silently ignored."""
    from mixscribe.config import ConfigError

    flat = [k for k in train if k in FLAT_REMIX_FIELDS]
    if flat:
        raise ConfigError(f"config field {prefix}{flat[0]}: the training mixtures' settings live under "
                          f"train.remix: (train.remix.{flat[0]})")  # fmt: skip


def load_train_config(spec: str | dict, **overrides) -> TrainConfig:
    """The `train:` section of a preset or YAML file, with its `model:` section as the model config."""
    from mixscribe.config import load_preset, load_section

    data = load_preset(spec) if isinstance(spec, str) else spec
    check_remix_section(data.get("train") or {})
    if "model" in data:
        overrides["model"] = data["model"] or {}
    return load_section(data, "train", TrainConfig, **overrides)


def make_scheduler(optimizer, stage: str):
    """The paper's schedulers (spec §6): ReduceLROnPlateau (factor 0.35, patience 3) for the AMT branch;
    cosine warm restarts (T0 4, T_mult 2, eta_min 1e-6, stepped per epoch) for the encoder."""
    import torch

    if stage == "encoder":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=4, T_mult=2, eta_min=1e-6)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.35, patience=3, threshold=1e-3)


def step_scheduler(scheduler, val_loss: float) -> None:
    import torch

    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    else:
        scheduler.step()


CHECKPOINT_FILE = "model.pt"
STATE_FILE = "trainer_state.pt"


def _batches(shard, cfg: TrainConfig):
    """Training batches from this worker's Ray Data shard, pass after pass (each pass remixes anew).
    Every worker gets the same number of batches per pass (equal split, drop_last), so DDP stays in step."""
    import torch

    from mixscribe.errors import ShardError
    from mixscribe.train.steps import Batch

    while True:
        got = 0
        for b in shard.iter_torch_batches(batch_size=cfg.batch_size, drop_last=True,
                                          prefetch_batches=cfg.prefetch_batches):  # fmt: skip
            got += 1
            yield Batch(audio=b["audio"], frame=b["frame"][:, None].float(), onset=b["onset"][:, None].float(),
                        membership=b["membership"].to(torch.float32)), b["aug"].sum(0)  # fmt: skip
        if not got:
            raise ShardError("a training worker received no full batch: too few training clips for "
                             f"batch_size {cfg.batch_size} x {cfg.workers} workers (raise mixes_per_clip)")  # fmt: skip


def _restore(model, optimizer, scheduler) -> tuple[int, list[dict]]:
    """Load the latest checkpoint Ray Train hands this run (resume or restart): the next epoch to run
    and the metrics of every epoch so far."""
    import ray.train
    import torch

    from mixscribe.model import load_model

    restored = ray.train.get_checkpoint()
    if not restored:
        return 0, []
    with restored.as_directory() as d:
        model.load_state_dict(load_model(os.path.join(d, CHECKPOINT_FILE)).state_dict())
        state = torch.load(os.path.join(d, STATE_FILE), weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return int(state["epoch"]) + 1, list(state.get("history", []))


def read_history(result) -> list[dict]:
    """Every epoch's metrics of a finished run, from its latest checkpoint (Ray's metrics_dataframe only
    holds the kept checkpoints). Each entry's `start_epoch` says where its worker group started, so a
    resumed run shows start_epoch > 0 after the resume."""
    if not result.checkpoint:
        return []
    with result.checkpoint.as_directory() as d:
        return _history_in(d)


def _history_in(checkpoint_dir: str) -> list[dict]:
    import torch

    return list(torch.load(os.path.join(checkpoint_dir, STATE_FILE), weights_only=True).get("history", []))


def examples_seen_before(init_checkpoint: str) -> dict[str, int]:
    """Training examples each stage had seen in the checkpoint a run starts from ({} from scratch, or
    for a checkpoint that predates the count): a continuation's learning curve goes on from there."""
    from mixscribe.model.checkpoint import load_checkpoint

    if not init_checkpoint:
        return {}
    seen = (load_checkpoint(init_checkpoint).get("extra") or {}).get("examples_seen") or {}
    return {str(k): int(v) for k, v in seen.items()}


def _loop(config: dict) -> None:
    import logging
    import time

    import ray.train
    import ray.train.torch
    import torch

    from mixscribe.model import TwoBranchModel, load_model, save_checkpoint
    from mixscribe.train.data import AUG_KEYS
    from mixscribe.model.arithmetic import resolve_precision
    from mixscribe.train.steps import collate, set_stage, train_step

    cfg = from_dict(TrainConfig, config["train"])
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per report and checkpoint
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.set_num_threads(worker_threads(cfg))
    torch.manual_seed(cfg.seed + rank)
    model = load_model(cfg.init_checkpoint).train() if cfg.init_checkpoint else TwoBranchModel(cfg.model)
    params = set_stage(model, cfg.stage)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.stage)
    start_epoch, history = _restore(model, optimizer, scheduler)
    set_stage(model, cfg.stage)
    device = ray.train.torch.get_device()  # the worker's GPU when use_gpu, else CPU
    model.to(device)
    precision = resolve_precision(cfg.precision, device)
    if precision == "bf16":
        model.to(memory_format=torch.channels_last)  # oneDNN's bf16 convolutions want NHWC
    ddp = ray.train.torch.prepare_model(model) if ctx.get_world_size() > 1 else model
    forward = torch.compile(ddp) if cfg.compile else ddp  # DDP wrapped first: compiled around its hooks
    valid_examples = validation_examples(config["data"], cfg)
    valid_batch = collate(valid_examples).to(device)
    batches = _batches(ray.train.get_dataset_shard("train"), cfg)
    tracker = _RankZeroTracker(config.get("mlflow"), rank)
    tracker.tag({"train.precision_used": precision, "train.threads_per_worker": str(torch.get_num_threads())})
    before = examples_seen_before(cfg.init_checkpoint)
    per_epoch = examples_per_epoch(cfg, ctx.get_world_size())
    if cfg.init_checkpoint and cfg.stage not in before:
        tracker.tag({"train.examples_seen_before": "unknown (the initial checkpoint does not record it)"})
    progress = config.get("progress")
    nodes = _worker_nodes(ctx.get_world_size())
    if start_epoch == 0 and rank == 0 and cfg.score_valid_every:
        # The curve's first point: the model as it starts (epoch -1), so a continued run's curve shows
        # what its training changed, and a new one's where it began.
        start = {**validation_figures(model, cfg, valid_batch, valid_examples, scored=True), "epoch": -1,
                 "train/examples_seen": before.get(cfg.stage, 0)}  # fmt: skip
        tracker.log(start, -1)
        history.append({**start, "start_epoch": 0})
    for epoch in range(start_epoch, cfg.epochs):
        set_stage(model, cfg.stage)
        totals: dict[str, float] = {}
        wait = 0.0
        augmented = torch.zeros(len(AUG_KEYS))
        t_epoch = time.perf_counter()
        for step in range(cfg.steps_per_epoch):
            t0 = time.perf_counter()
            batch, aug_counts = next(batches)
            batch = batch.to(device)
            augmented += aug_counts
            wait += time.perf_counter() - t0
            parts = train_step(model, batch, optimizer, cfg.stage, forward=forward, precision=precision,
                               positives=cfg.timbre_positives, exclude_semitones=cfg.timbre_exclude_semitones)  # fmt: skip
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v / cfg.steps_per_epoch
            if rank == 0:
                _put_progress(progress, ("step", epoch, step, parts["loss"]))
        elapsed = time.perf_counter() - t_epoch
        val = validation_figures(model, cfg, valid_batch, valid_examples, scored=rank == 0 and scores_due(cfg, epoch))
        step_scheduler(scheduler, val["val/loss"])
        if rank == 0:
            _put_progress(progress, ("epoch", epoch, cfg.steps_per_epoch - 1, val["val/loss"]))
        metrics = {**{f"train/{k}": v for k, v in totals.items()}, **val, "epoch": epoch,
                   "train/lr": optimizer.param_groups[0]["lr"], "train/data_wait_frac": wait / elapsed,
                   "train/examples_per_s": examples_per_epoch(cfg, workers=1) / elapsed,
                   "train/examples_seen": before.get(cfg.stage, 0) + (epoch + 1) * per_epoch,
                   **{f"train/aug/{t}_frac": float(c) / examples_per_epoch(cfg, workers=1)
                      for t, c in zip(AUG_KEYS, augmented)}}  # fmt: skip
        tracker.log(metrics, epoch)
        history.append({**metrics, "start_epoch": start_epoch})
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0:
                seen = before | {cfg.stage: int(metrics["train/examples_seen"])}  # what each branch has trained on
                save_checkpoint(model, os.path.join(d, CHECKPOINT_FILE),
                                extra={"epoch": epoch, "stage": cfg.stage, "examples_seen": seen})  # fmt: skip
                torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                            "history": history, "worker_nodes": nodes}, os.path.join(d, STATE_FILE))  # fmt: skip
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=checkpoint)


def validation_examples(data: str, cfg: TrainConfig) -> list:
    """The fixed validation mixtures every epoch of a run is scored on (the same for every run of one
    seed and shard set, so runs compare epoch by epoch)."""
    from mixscribe.train.data import Remixer, load_split

    valid_set = Remixer(load_split(data, "valid"), cfg.remix.for_validation(), seed=cfg.seed + 999_999)
    return [valid_set.example(0, i) for i in range(cfg.valid_examples)]


def validation_figures(model, cfg: TrainConfig, valid_batch, valid_examples: list, scored: bool) -> dict[str, float]:
    """The validation losses on the fixed mixtures, and where `scored`, their transcription figures."""
    import torch

    from mixscribe.train.curve import validation_scores
    from mixscribe.train.steps import losses

    model.eval()
    with torch.no_grad():
        val = losses(model, valid_batch, cfg.stage, positives=cfg.timbre_positives,
                     exclude_semitones=cfg.timbre_exclude_semitones)  # fmt: skip
    val = {f"val/{k}": float(v) for k, v in val.items()}
    return val | validation_scores(model, valid_examples, cfg.stage) if scored else val


def scores_due(cfg: TrainConfig, epoch: int) -> bool:
    """Whether this epoch's validation mixtures are transcribed and scored (always after the last)."""
    every = cfg.score_valid_every
    return every > 0 and ((epoch + 1) % every == 0 or epoch == cfg.epochs - 1)


def _worker_nodes(world_size: int) -> list[str]:
    """The Ray node of every rank (gathered over the process group), kept in the checkpoint state so a
    run records where it trained."""
    import torch.distributed as dist

    from mixscribe.raycluster import node_id

    nodes = [node_id()] * world_size
    if world_size > 1 and dist.is_initialized():
        dist.all_gather_object(nodes, nodes[0])
    return nodes


def read_worker_nodes(result) -> list[str]:
    """The Ray node id of each rank in the latest run of a training (empty without a checkpoint)."""
    import torch

    if not result.checkpoint:
        return []
    with result.checkpoint.as_directory() as d:
        return list(torch.load(os.path.join(d, STATE_FILE), weights_only=True).get("worker_nodes", []))


class _RankZeroTracker:
    """Per-epoch metrics into the driver's MLflow run, from rank 0 only, batched in one call."""

    def __init__(self, mlflow_cfg: dict | None, rank: int):
        self.client = self.run_id = None
        if mlflow_cfg and rank == 0:
            from mlflow.tracking import MlflowClient

            self.client, self.run_id = MlflowClient(mlflow_cfg["tracking_uri"]), mlflow_cfg["run_id"]

    def tag(self, tags: dict[str, str]) -> None:
        if self.client is not None:
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, value)

    def log(self, metrics: dict[str, float], epoch: int) -> None:
        if self.client is None:
            return
        from mixscribe.tracking import log_metrics

        log_metrics(self.client, self.run_id, {k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)


def examples_per_epoch(cfg: TrainConfig, workers: int | None = None) -> int:
    """Examples one epoch of all workers takes: the unit of the stream's arithmetic and of each branch's
    examples_seen. workers: as many as run (the config's unless given)."""
    return cfg.steps_per_epoch * cfg.batch_size * (cfg.workers if workers is None else workers)


def _stream_arithmetic(cfg: TrainConfig, train_clips: int, epochs: int) -> tuple[int, int]:
    """(examples in one copy of the training split, examples `epochs` epochs of every worker take)."""
    per_copy = max(1, train_clips * cfg.mixes_per_clip)
    return per_copy, max(0, epochs) * examples_per_epoch(cfg)


def passes_needed(cfg: TrainConfig, train_clips: int, start_epoch: int = 0) -> int:
    """How many copies of the training split one streaming pass must hold to feed the run's epochs from
    start_epoch on. Restarting a pass costs seconds of idle workers (Ray Data starts its pipeline again),
    so the work items repeat the split and one pass spans every epoch; each copy is regrouped and
    remixed anew."""
    per_copy, needed = _stream_arithmetic(cfg, train_clips, cfg.epochs - start_epoch)
    return -(-needed // per_copy) + 1  # +1: equal splits and drop_last trim a little from each pass


def copies_consumed(cfg: TrainConfig, train_clips: int, start_epoch: int) -> int:
    """Whole copies of the training split that start_epoch finished epochs have used up: where a resumed
    run's stream starts (at most part of one copy is seen twice)."""
    per_copy, used = _stream_arithmetic(cfg, train_clips, start_epoch)
    return used // per_copy


def build_train_dataset(cfg: TrainConfig, fs, paths: list[str], train_clips: int, start_epoch: int = 0):
    """The driver's Ray Data pipeline over the training split's (already verified) shard files: work
    items (groups of shard files, each with a seed) -> remixed examples, in Ray Data tasks beside
    training. One streaming pass holds enough copies of the split for the epochs left (passes_needed);
    a resumed run's pass starts after the copies its finished epochs consumed."""
    import ray.data

    from mixscribe.synth.pipeline import reopenable_uri
    from mixscribe.train.data import remix_files, remix_tasks

    uris = [reopenable_uri(fs, p) for p in paths]
    ray.data.DataContext.get_current().enable_progress_bars = False  # one bar per worker floods the log
    remix = cfg.remix
    items = remix_tasks(uris, train_clips, cfg.remix_pool_clips, passes_needed(cfg, train_clips, start_epoch), cfg.seed,
                        first_copy=copies_consumed(cfg, train_clips, start_epoch))  # fmt: skip
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        remix_files, batch_size=1, num_cpus=cfg.data_cpus,
        fn_kwargs={"split": "train", "remix": remix, "mixes_per_clip": cfg.mixes_per_clip})  # fmt: skip


def _latest_result(run: str):
    """Ray Train's record of the run folder `run` (STORAGE/NAME), or None where there is none: no run
    was started there, or it was stopped before Ray wrote its record, in which case Ray starts it afresh
    too."""
    import logging

    import ray.train

    logger = logging.getLogger("ray.train")
    level = logger.level
    logger.setLevel(logging.WARNING)  # not Ray's paragraph on the snapshot it found, which re-running wants
    try:
        return ray.train.Result.from_path(run)
    except RuntimeError:  # Ray's "doesn't exist" / "snapshot doesn't exist": nothing to resume from
        return None
    finally:
        logger.setLevel(level)


def chosen_checkpoint(result, cfg: TrainConfig):
    """The run's best kept checkpoint by train.select_by (its latest where none carries the figure), and
    that epoch's metrics: the model a training ships. Of equal figures the first kept wins, as in Ray's
    own ranking."""
    scored = [(c, m) for c, m in result.best_checkpoints or [] if m.get(cfg.select_by) is not None]
    if not scored:
        return result.checkpoint, result.metrics or {}
    pick = max if SELECT_BY[cfg.select_by] == "max" else min
    return pick(scored, key=lambda kept: kept[1][cfg.select_by])


def epochs_done(storage: str, name: str) -> int:
    """Epochs the run `name` under `storage` has finished (0 for a new run), from Ray Train's record of
    its latest checkpoint: the epoch a re-run resumes at, known to the driver before the data stream is
    built."""
    from mixscribe.fsio import absolute

    result = _latest_result(f"{absolute(storage).rstrip('/')}/{name}")
    latest = (result.metrics if result else None) or {}
    return int(latest["epoch"]) + 1 if "epoch" in latest else 0


def run_history(run: str) -> tuple[str, list[dict]]:
    """The stage a training run (its folder, STORAGE/NAME) trains and every finished epoch's metrics,
    from its latest checkpoint: the learning curve of a run that is still going or was stopped, which the
    pipeline otherwise writes only when the stage ends."""
    from mixscribe.errors import MixscribeError
    from mixscribe.fsio import absolute
    from mixscribe.model.checkpoint import load_checkpoint

    result = _latest_result(absolute(run))
    if result is None or not result.checkpoint:
        raise MixscribeError(f"{run}: not a training run with a checkpoint (expected the folder Ray Train "
                             "writes under --storage, STORAGE/NAME, e.g. out/PIPELINE/ray/PIPELINE-amt)")  # fmt: skip
    with result.checkpoint.as_directory() as d:
        stage = (load_checkpoint(os.path.join(d, CHECKPOINT_FILE)).get("extra") or {}).get("stage", "train")
        return str(stage), _history_in(d)


def ingest_config():
    """Ray Train's dataset options, set here rather than by its defaults, which still pass Ray Data's
    deprecated `exclude_resources` (removed after January 2027): the driver's resource limits and
    order, no per-operator progress bars."""
    from ray.data import DataContext, ExecutionOptions
    from ray.train import DataConfig

    current = DataContext.get_current().execution_options
    return DataConfig(execution_options=ExecutionOptions(resource_limits=current.resource_limits,
                                                         preserve_order=current.preserve_order,
                                                         verbose_progress=False))  # fmt: skip


def worker_threads(cfg: TrainConfig) -> int:
    """torch's intra-op threads in a worker: the CPUs Ray reserved for it (at least one), so workers
    sharing a machine do not oversubscribe its cores."""
    return max(1, int(cfg.cpus_per_worker))


def check_compiler(cfg: TrainConfig) -> None:
    """train.compile needs the C++ compiler TorchInductor builds its CPU kernels with: say so before
    any worker starts rather than as a traceback from the first step."""
    import shutil

    from mixscribe.errors import ConfigError

    compiler = os.environ.get("CXX", "g++")
    if cfg.compile and not (shutil.which(compiler) or shutil.which("clang++")):
        raise ConfigError(f"config field train.compile: no C++ compiler ({compiler}) on PATH; install g++ "
                          "(Debian: apt-get install g++) or set compile: false")  # fmt: skip


def wants_gpu(cfg: TrainConfig) -> bool:
    """The config's choice, or (None) whether the cluster has a GPU for every worker: the same command
    trains on CPUs on a laptop and on GPUs where there are some."""
    from mixscribe.raycluster import import_ray

    ray = import_ray()
    if cfg.use_gpu is not None:
        return cfg.use_gpu
    return ray.cluster_resources().get("GPU", 0) >= cfg.workers


def run_training(cfg: TrainConfig, data: str, name: str, storage: str, mlflow: dict | None = None):
    """Train (or resume `name` under `storage`) and return Ray Train's Result. mlflow: {"tracking_uri",
    "run_id"} of a run to receive rank 0's per-epoch metrics."""
    from mixscribe.raycluster import prepare_local_environment

    prepare_local_environment()  # before Ray is imported
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mixscribe.fsio import absolute
    from mixscribe.raycluster import init_ray
    from mixscribe.shards import ShardSet

    shard_set = ShardSet.open(data)
    paths = shard_set.verify(("train", "valid"))  # clear errors before any worker starts
    check_compiler(cfg)
    init_ray()
    start_epoch = epochs_done(storage, name)
    dataset = build_train_dataset(cfg, shard_set.fs, paths["train"], shard_set.manifest.rows_per_split["train"],
                                  start_epoch)  # fmt: skip
    progress = TrainingProgress(cfg, name)
    trainer = TorchTrainer(
        _loop,
        train_loop_config={"train": to_dict(cfg), "data": absolute(data), "mlflow": mlflow,
                           "progress": progress.queue},  # fmt: skip
        datasets={"train": dataset},
        dataset_config=ingest_config(),
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=wants_gpu(cfg),
                                     resources_per_worker={"CPU": cfg.cpus_per_worker},
                                     placement_strategy=cfg.placement_strategy),  # fmt: skip
        run_config=RunConfig(
            name=name,
            storage_path=absolute(storage),  # an s3:// or gs:// URI stays one: every node reaches it
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.num_to_keep, checkpoint_score_attribute=cfg.select_by,
                                               checkpoint_score_order=SELECT_BY[cfg.select_by]),  # fmt: skip
            failure_config=FailureConfig(max_failures=cfg.max_failures),
        ),
    )
    with progress:
        return trainer.fit()


class TrainingProgress:
    """One progress bar in the driver over the run's steps, with the loss: rank 0 puts each step's
    loss and each epoch's validation loss into a Ray queue, a driver thread moves the bar."""

    def __init__(self, cfg: TrainConfig, name: str):
        import threading

        from ray.util.queue import Queue

        self.cfg, self.name = cfg, name
        self.queue = Queue(actor_options={"num_cpus": 0})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="train-progress", daemon=True)

    def __enter__(self) -> TrainingProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import ray

        self._stop.set()
        self._thread.join(timeout=10)
        ray.kill(self.queue.actor)

    def _follow(self) -> None:
        from queue import Empty

        from tqdm import tqdm

        from mixscribe.console import bar_interval

        total = self.cfg.epochs * self.cfg.steps_per_epoch
        with tqdm(total=total, unit="step", desc=f"training {self.cfg.stage}", mininterval=bar_interval()) as bar:
            shown: dict[str, str] = {}
            while not (self._stop.is_set() and self.queue.empty()):
                try:
                    message = self.queue.get(timeout=0.5)
                except Empty:
                    continue
                except Exception:  # the queue's actor is gone (the run ended): nothing more to show
                    return
                show_progress(bar, self.cfg, message, shown)


def show_progress(bar, cfg: TrainConfig, message: tuple, shown: dict[str, str]) -> None:
    """Move the bar to rank 0's report (kind, epoch, step index, loss). A resumed run's first step
    starts the bar's clock at the steps done before, so its rate and time left are this run's own
    (counted from zero they promised a 3-hour resume in minutes)."""
    kind, epoch, index, loss = message
    if kind == "step":
        done = epoch * cfg.steps_per_epoch + index + 1
        if bar.n == 0 and done > 1:
            bar.reset(total=bar.total)
            bar.initial = done - 1
        bar.n = done
        shown["loss"] = f"{loss:.4f}"
    else:
        shown["val_loss"] = f"{loss:.4f}"
    shown["epoch"] = f"{epoch + 1}/{cfg.epochs}"
    bar.set_postfix(shown, refresh=False)
    bar.refresh()


def _put_progress(queue, item: tuple) -> None:
    """Rank 0's report to the driver's bar; never allowed to stop training."""
    if queue is None:
        return
    try:
        queue.put_nowait(item)
    except Exception:  # the driver went away or the queue is full: the run goes on
        pass

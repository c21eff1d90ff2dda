"""Ray Train: the same command on one laptop or a cluster (first cut; MLflow and the pipeline: issue 4).

Each worker remixes its own mixtures from the training split (seeded by rank), the validation loss comes
from fixed mixtures of the `valid` split, rank 0 writes a checkpoint every epoch, and re-running with the
same run name and storage path resumes from the latest checkpoint (Ray Train V2 restores the run)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from mixscribe.config import ModelConfig, from_dict, to_dict


@dataclass(frozen=True)
class TrainConfig:
    stage: str = "amt"  # "amt" (focal), "encoder" (InfoNCE, AMT frozen), "joint"
    epochs: int = 2
    steps_per_epoch: int = 20
    batch_size: int = 18
    valid_examples: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    crop_frames: int = 256
    k_weights: tuple[float, ...] = (0.2, 0.4, 0.25, 0.15)
    seed: int = 0
    workers: int = 1
    cpus_per_worker: float = 0.5  # < 1: 2 workers x 1 CPU starve Ray's other tasks on 2 CPUs
    use_gpu: bool = False
    num_to_keep: int = 2
    max_failures: int = 2
    init_checkpoint: str = ""  # e.g. the AMT stage's checkpoint when training the encoder
    model: ModelConfig = field(default_factory=ModelConfig)


def load_train_config(spec: str, **overrides) -> TrainConfig:
    """The `train:` section of a preset or YAML file, with its `model:` section as the model config."""
    from mixscribe.config import load_preset

    data = load_preset(spec)
    train = dict(data.get("train") or {})
    train.update({k: v for k, v in overrides.items() if v is not None})
    if "model" in data:
        train["model"] = data["model"] or {}
    cfg = from_dict(TrainConfig, train, prefix="train.")
    _validate(cfg)
    return cfg


def _validate(cfg: TrainConfig) -> None:
    from mixscribe.config import _check
    from mixscribe.train.steps import STAGES

    _check(cfg.stage in STAGES, "train.stage", f"must be one of {list(STAGES)}")
    _check(cfg.epochs >= 1 and cfg.steps_per_epoch >= 1, "train.epochs", "epochs and steps_per_epoch must be >= 1")
    _check(cfg.batch_size >= 1 and cfg.workers >= 1, "train.batch_size", "batch_size and workers must be >= 1")
    _check(cfg.lr > 0, "train.lr", "must be > 0")
    _check(cfg.crop_frames >= 16, "train.crop_frames", "must be >= 16")
    _check(len(cfg.k_weights) >= 1 and min(cfg.k_weights) >= 0 and sum(cfg.k_weights) > 0, "train.k_weights",
           "needs non-negative weights for K = 1, 2, ...")  # fmt: skip
    cfg.model.validate()


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


def _loop(config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch

    from mixscribe.model import TwoBranchModel, load_model, save_checkpoint
    from mixscribe.train.data import RemixConfig, Remixer, load_split
    from mixscribe.train.steps import collate, losses, set_stage, train_step

    cfg = from_dict(TrainConfig, config["train"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.manual_seed(cfg.seed + rank)
    model = load_model(cfg.init_checkpoint).train() if cfg.init_checkpoint else TwoBranchModel(cfg.model)
    params = set_stage(model, cfg.stage)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.stage)
    start_epoch = 0
    restored = ray.train.get_checkpoint()
    if restored:
        with restored.as_directory() as d:
            model.load_state_dict(load_model(os.path.join(d, CHECKPOINT_FILE)).state_dict())
            state = torch.load(os.path.join(d, STATE_FILE), weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"]) + 1
        set_stage(model, cfg.stage)
    ddp = ray.train.torch.prepare_model(model) if ctx.get_world_size() > 1 else model
    remix = RemixConfig(crop_frames=cfg.crop_frames, k_weights=cfg.k_weights)
    train = Remixer(load_split(config["data"], "train"), remix, seed=cfg.seed * 1000 + rank)
    valid_set = Remixer(load_split(config["data"], "valid"), remix, seed=cfg.seed + 999_999)
    valid_batch = collate([valid_set.example(0, i) for i in range(cfg.valid_examples)])
    for epoch in range(start_epoch, cfg.epochs):
        set_stage(model, cfg.stage)
        totals: dict[str, float] = {}
        for step in range(cfg.steps_per_epoch):
            batch = collate([train.example(epoch, step * cfg.batch_size + i) for i in range(cfg.batch_size)])
            for k, v in train_step(model, batch, optimizer, cfg.stage, forward=ddp).items():
                totals[k] = totals.get(k, 0.0) + v / cfg.steps_per_epoch
        model.eval()
        with torch.no_grad():
            val = {f"val/{k}": float(v) for k, v in losses(model, valid_batch, cfg.stage).items()}
        step_scheduler(scheduler, val["val/loss"])
        metrics = {**{f"train/{k}": v for k, v in totals.items()}, **val, "epoch": epoch,
                   "train/lr": optimizer.param_groups[0]["lr"]}  # fmt: skip
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0:
                save_checkpoint(model, os.path.join(d, CHECKPOINT_FILE), extra={"epoch": epoch, "stage": cfg.stage})
                torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch},
                           os.path.join(d, STATE_FILE))  # fmt: skip
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=checkpoint)


def run_training(cfg: TrainConfig, data: str, name: str, storage: str):
    """Train (or resume `name` under `storage`) and return Ray Train's Result."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mixscribe.raycluster import init_ray
    from mixscribe.synth.pipeline import read_manifest

    read_manifest(data)  # a clear error before any worker starts
    init_ray()
    trainer = TorchTrainer(
        _loop,
        train_loop_config={"train": to_dict(cfg), "data": os.path.abspath(data) if "://" not in data else data},
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),  # fmt: skip
        run_config=RunConfig(
            name=name,
            storage_path=os.path.abspath(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.num_to_keep, checkpoint_score_attribute="val/loss",
                                               checkpoint_score_order="min"),  # fmt: skip
            failure_config=FailureConfig(max_failures=cfg.max_failures),
        ),
    )
    return trainer.fit()

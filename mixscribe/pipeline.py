"""The main job: synth -> train (AMT branch, then the timbre encoder) -> evaluate, as one MLflow parent
run with a nested run per stage.

Re-running the same pipeline (same name, same working folder) skips the stages whose runs finished and
resumes the others: synth re-renders (byte-identical), training continues from Ray Train's latest
checkpoint, nothing finished is logged twice. Each stage's outputs live under WORKDIR/NAME/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mixscribe.config import SelfChecking, check_field, from_dict, load_preset, merge_sections, to_dict
from mixscribe.errors import MixscribeError

STAGE_TAG, PIPELINE_TAG, DIGEST_TAG = "mixscribe.stage", "mixscribe.pipeline", "mixscribe.config_digest"
OUTPUT_TAG = "mixscribe.output"
BRANCHES = ("amt", "encoder")
FROM_PIPELINE = "pipeline:"  # pipeline.init_checkpoint: another pipeline's model, by name
INIT_MODEL = "init.pt"  # the copy of the starting model, under the pipeline's models/
REPORT_DIR = "report"  # a pipeline's evaluation report, under its folder; studies read it back
FIELDS_ADDED_LATER = {"pipeline": ("init_branches", "datasets"),
                      "train": ("gain_low", "gain_high", "noise_std", "score_valid_every", "timbre_positives",
                                "timbre_exclude_semitones", "select_by"),
                      "synth": ("generator.whole_range_prob",)}


@dataclass(frozen=True)
class PipelineConfig(SelfChecking):
    experiment: str = "mixscribe"
    num_clips: int = 48
    train_stages: tuple[str, ...] = ("amt", "encoder")
    # Bach chorales (BACH10 instruments, rendered by the held-out family: its SoundFonts, or generated
    # instruments when it is the procedural one) scored beside the
    # synthetic sets, with the thresholds tuned on valid; 0: none.
    chorales: int = 0
    chorale_seconds: float = 30.0
    # Fields of the train section that differ per stage, e.g. {encoder: {epochs: 8}}: the frozen-AMT
    # encoder stage converges in fewer epochs than the AMT stage.
    stage_train: dict[str, dict] = field(default_factory=dict)
    # Continued training: a checkpoint the first training stage starts from ("default": the shipped
    # model; "pipeline:NAME": the model the finished pipeline NAME wrote in the same workdir), so a study
    # can measure a change on top of a trained model at the cost of a few epochs, and one branch's
    # scale-up can start from another's result.
    init_checkpoint: str = ""
    # The branches taken from init_checkpoint; the others start from fresh (seeded) weights. [amt] trains a
    # new timbre encoder on the trained AMT branch: what an encoder learns from its first examples (e.g.
    # register) is what a short continuation cannot undo, so a change of training data is compared on
    # encoders that saw only it.
    init_branches: tuple[str, ...] = ("amt", "encoder")
    # A reference model ("default": the shipped one) scored beside this pipeline's model on compare_sets
    # and the chorales, decoded by the same rule (thresholds tuned on valid): a table on the console and
    # in MLflow. "": none.
    compare_with: str = ""
    compare_sets: tuple[str, ...] = ("unseen-family",)
    # Real recordings scored beside the synthetic sets with the thresholds valid chose: {name: the folder
    # it was unpacked to}, name one of bach10, urmp, phenicx (README: Real recordings). Their mixtures are
    # built once under WORKDIR/datasets/ and shared by every pipeline (and study fold) there.
    datasets: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        from mixscribe.train.steps import STAGES

        check_field(self.num_clips >= 4, "pipeline.num_clips", "must be >= 4")
        check_field(self.chorales >= 0 and self.chorale_seconds >= 0, "pipeline.chorales", "must be >= 0")
        check_field(bool(self.train_stages) and all(s in STAGES for s in self.train_stages), "pipeline.train_stages",
               f"each must be one of {list(STAGES)}")  # fmt: skip
        for stage, fields in self.stage_train.items():
            check_field(stage in self.train_stages, f"pipeline.stage_train.{stage}", "not one of pipeline.train_stages")
            check_field(isinstance(fields, dict), f"pipeline.stage_train.{stage}", "expected a mapping of train fields")
            check_field("stage" not in fields, f"pipeline.stage_train.{stage}.stage", "the stage is set by its key")
        for name in ("init_checkpoint", "compare_with"):
            spec = getattr(self, name)
            if name == "init_checkpoint" and spec.startswith(FROM_PIPELINE):
                check_field(_pipeline_name_ok(spec[len(FROM_PIPELINE):]), f"pipeline.{name}",
                            f"{spec!r}: expected pipeline:NAME, NAME a pipeline of the same workdir")  # fmt: skip
                continue
            check_field(not spec or Path(resolve_init_checkpoint(spec)).is_file(), f"pipeline.{name}",
                   f"no such checkpoint file {spec!r}")  # fmt: skip
        check_field(bool(self.init_branches) and all(b in BRANCHES for b in self.init_branches), "pipeline.init_branches",
               f"each must be one of {list(BRANCHES)}, at least one")  # fmt: skip
        check_field(set(self.init_branches) == set(BRANCHES) or bool(self.init_checkpoint), "pipeline.init_branches",
               "needs pipeline.init_checkpoint to take branches from")  # fmt: skip
        from mixscribe.evaluate.datasets import DATASETS

        for name, home in self.datasets.items():
            check_field(name in DATASETS, f"pipeline.datasets.{name}", f"unknown dataset; one of {sorted(DATASETS)}")
            check_field(Path(str(home)).expanduser().is_dir(), f"pipeline.datasets.{name}", f"no such folder {home!r}")
        check_field(bool(self.compare_sets) or not self.compare_with, "pipeline.compare_sets", "needs at least one set")


def _pipeline_name_ok(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..")


def finished_pipeline_model(workdir: str | Path, name: str) -> str:
    """The model the finished pipeline `name` wrote (its MLflow run's output), found in the workdir's
    tracking store; a clear error naming the field when it has not finished or its model is gone."""
    from mixscribe import tracking

    Path(workdir).mkdir(parents=True, exist_ok=True)  # the tracking store lives there
    mlf = tracking.client(tracking.tracking_uri(workdir))
    experiments = [e.experiment_id for e in mlf.search_experiments()]
    query = f"tags.`{PIPELINE_TAG}` = '{name}' and tags.`{STAGE_TAG}` = 'pipeline'"
    runs = mlf.search_runs(experiments, filter_string=query, order_by=["attributes.start_time DESC"]) if experiments else []
    finished = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get(OUTPUT_TAG)]
    where = f"pipeline.init_checkpoint: {FROM_PIPELINE}{name}"
    if not finished:
        state = f"its run is {runs[0].info.status}" if runs else f"no pipeline of that name in {Path(workdir).resolve()}"
        raise MixscribeError(f"{where}: that pipeline has not finished ({state}); run it first, in the same --workdir")
    model = finished[0].data.tags[OUTPUT_TAG]
    if not Path(model).is_file():
        raise MixscribeError(f"{where}: its model {model} is missing")
    return model


def resolve_init_checkpoint(spec: str) -> str:
    """"default" -> the shipped model's file; anything else is a path, made absolute (the training
    workers may run in another folder)."""
    from mixscribe.model.checkpoint import DEFAULT_CHECKPOINT

    return str(DEFAULT_CHECKPOINT if spec == "default" else Path(spec).expanduser().resolve())


@dataclass(frozen=True)
class Plan:
    """Every config of one pipeline, resolved and validated before anything runs."""

    pipeline: PipelineConfig
    synth: object
    train: object
    evaluate: object

    def train_for(self, stage: str, init_checkpoint: str = ""):
        """The train config of one stage: the train section, this stage's stage_train fields over it."""
        from mixscribe.train.trainer import check_remix_section

        override = self.pipeline.stage_train.get(stage, {})
        check_remix_section(override, prefix=f"pipeline.stage_train.{stage}.")
        fields = merge_sections(to_dict(self.train), {**override, "stage": stage, "init_checkpoint": init_checkpoint})
        return from_dict(type(self.train), fields, prefix="train.")

    def as_dict(self) -> dict:
        return {"pipeline": to_dict(self.pipeline), "synth": to_dict(self.synth), "train": to_dict(self.train),
                "evaluate": to_dict(self.evaluate)}  # fmt: skip

    def digest(self) -> str:
        """What a resumed pipeline must match. Settings added since pipelines were first digested leave the
        digest as it was while at their default, so an upgrade does not refuse to resume a pipeline that
        never used them."""
        data = self.as_dict()
        data["evaluate"] = _digest_form_of_evaluate(self.evaluate)
        data["train"] = _digest_form_of_train(self.train)
        defaults = {"pipeline": to_dict(type(self.pipeline)()), "train": _digest_form_of_train(type(self.train)()),
                    "synth": to_dict(type(self.synth)())}  # fmt: skip
        for section, names in FIELDS_ADDED_LATER.items():
            for name in names:
                *parents, leaf = name.split(".")
                here, default = data[section], defaults[section]
                for parent in parents:
                    here, default = here[parent], default[parent]
                if here[leaf] == default[leaf]:
                    here.pop(leaf)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _digest_form_of_train(cfg) -> dict:
    """The train section as digests were first taken: the remix settings inline."""
    data = to_dict(cfg)
    return data | data.pop("remix")


def _digest_form_of_evaluate(cfg) -> dict:
    """The evaluate section as digests were first taken: the decoding settings it then held inline,
    the decoding settings it gained later only where set, so moving them under `decode` changed no
    digest of a pipeline that never set those."""
    from mixscribe.evaluate.runner import FLAT_DECODE_FIELDS
    from mixscribe.transcription.decode import DecodeParams

    data = to_dict(cfg)
    decode, default = data.pop("decode"), to_dict(DecodeParams())
    data |= {name: decode[name] for name in FLAT_DECODE_FIELDS}
    data |= {name: value for name, value in decode.items()
             if name not in FLAT_DECODE_FIELDS and value != default[name]}  # fmt: skip
    return data


def load_plan(spec: str, workers: int | None = None, num_clips: int | None = None) -> Plan:
    from mixscribe.config import load_section, load_synth_config
    from mixscribe.evaluate.runner import load_eval_config
    from mixscribe.train.trainer import load_train_config

    data = load_preset(spec)  # read once: every section comes from the same file
    pipeline = load_section(data, "pipeline", PipelineConfig, num_clips=num_clips)
    plan = Plan(pipeline, load_synth_config(data), load_train_config(data, workers=workers), load_eval_config(data))
    for stage in pipeline.train_stages:
        plan.train_for(stage)  # every stage's fields checked before anything runs
    return plan


class _Stages:
    """Bookkeeping of one pipeline's MLflow runs."""

    def __init__(self, plan: Plan, name: str, workdir: Path):
        from mixscribe import tracking

        self.plan, self.name, self.workdir = plan, name, workdir
        self.uri = tracking.tracking_uri(workdir)
        self.mlf = tracking.client(self.uri)
        self.exp = tracking.experiment_id(self.mlf, plan.pipeline.experiment, workdir)
        self.parent = None

    def open_parent(self, parent_id: str | None = None):
        from mixscribe import tracking

        tags = {PIPELINE_TAG: self.name, STAGE_TAG: "pipeline"}
        run, existed = tracking.start_or_resume(self.mlf, self.exp, self.name, {**tags}, parent_id)
        if existed and run.data.tags.get(DIGEST_TAG) not in (None, self.plan.digest()):
            raise MixscribeError(f"pipeline {self.name!r} was started with another config "
                                 f"(digest {run.data.tags.get(DIGEST_TAG)}): use another --name")  # fmt: skip
        if not existed:
            self.mlf.set_tag(run.info.run_id, DIGEST_TAG, self.plan.digest())
            tracking.log_params(self.mlf, run.info.run_id, self.plan.as_dict())
        self.parent = run
        return run, existed

    def child(self, stage: str):
        from mixscribe import tracking

        tags = {PIPELINE_TAG: self.name, STAGE_TAG: stage}
        return tracking.start_or_resume(self.mlf, self.exp, f"{self.name}/{stage}", tags, self.parent.info.run_id)


def run_pipeline(spec: str, workdir: str = "out", name: str | None = None, workers: int | None = None,
                 num_clips: int | None = None, log=print, parent_run_id: str | None = None) -> dict:  # fmt: skip
    """Run (or resume) the pipeline; returns {'run_id', 'checkpoint', 'metrics'}. parent_run_id nests
    the pipeline's run under another (a study's)."""
    from mixscribe import tracking
    from mixscribe.raycluster import init_ray

    plan = load_plan(spec, workers, num_clips)
    name = name or Path(spec).stem
    root = Path(workdir).resolve() / name
    init_source = _init_source(plan, workdir, root)  # another pipeline's model: found before any work
    root.mkdir(parents=True, exist_ok=True)
    init_ray()
    stages = _Stages(plan, name, Path(workdir).resolve())
    parent, existed = stages.open_parent(parent_run_id)
    pid = parent.info.run_id
    if existed and parent.info.status == "FINISHED":
        log(f"pipeline {name}: already finished (MLflow run {pid}); use another --name to run it again")
        return {"run_id": pid, "checkpoint": parent.data.tags.get(OUTPUT_TAG), "metrics": parent.data.metrics}
    log(f"pipeline {name}: MLflow run {pid} in experiment {plan.pipeline.experiment!r} ({stages.uri})")
    with tracking.lifecycle(stages.mlf, pid):
        if plan.pipeline.datasets:  # every file of every dataset checked before any work
            from mixscribe.evaluate.datasets import read_dataset

            for dataset, home in plan.pipeline.datasets.items():
                read_dataset(dataset, home)
        shards = _synth_stage(stages, plan, root, log)
        checkpoint = _init_checkpoint(stages, plan, root, init_source, log)
        for stage in plan.pipeline.train_stages:
            checkpoint = _train_stage(stages, plan, root, shards, stage, checkpoint, log)
        metrics = _evaluate_stage(stages, plan, root, shards, checkpoint, log)
        if plan.pipeline.compare_with:
            _compare_stage(stages, plan, root, shards, checkpoint, log)
        stages.mlf.set_tag(pid, OUTPUT_TAG, checkpoint)
    log(f"pipeline {name}: finished; model {checkpoint}")
    return {"run_id": pid, "checkpoint": checkpoint, "metrics": metrics}


def _init_source(plan: Plan, workdir: str, root: Path) -> Path | None:
    """Where the first stage's starting model comes from; None without one, and for a pipeline:NAME
    source once its copy exists (a resumed run starts from the copy, whatever NAME has become since)."""
    spec = plan.pipeline.init_checkpoint
    if not spec:
        return None
    if spec.startswith(FROM_PIPELINE):
        if (root / "models" / INIT_MODEL).exists():
            return None
        return Path(finished_pipeline_model(workdir, spec[len(FROM_PIPELINE):]))
    return Path(resolve_init_checkpoint(spec))


def _init_checkpoint(stages: _Stages, plan: Plan, root: Path, source: Path | None, log) -> str | None:
    """The checkpoint the first stage continues, copied into the pipeline's folder once (so replacing the
    shipped model, or re-running the pipeline it came from, cannot change what a resumed run starts
    from) and its sha256 tagged on the run."""
    from mixscribe.fsio import atomic_local_write

    if not plan.pipeline.init_checkpoint:
        return None
    target = root / "models" / INIT_MODEL
    keep = plan.pipeline.init_branches
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        if set(keep) == set(BRANCHES):
            atomic_local_write(target, lambda tmp: shutil.copyfile(source, tmp))
        else:
            with_fresh_branches(source, target, keep, seed=plan.train.seed)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    stages.mlf.set_tag(stages.parent.info.run_id, "mixscribe.init_checkpoint_sha256", digest)
    stages.mlf.set_tag(stages.parent.info.run_id, "mixscribe.init_branches", ",".join(keep))
    fresh = [b for b in BRANCHES if b not in keep]
    log(f"  training continues from {source or plan.pipeline.init_checkpoint} (sha256 {digest[:12]}, copied to {target})"
        + (f"; fresh weights for: {', '.join(fresh)}" if fresh else ""))
    return str(target)


def with_fresh_branches(source: Path, target: Path, keep: tuple[str, ...], seed: int) -> Path:
    """A copy of a checkpoint whose branches outside `keep` are newly initialised (torch seeded by
    `seed`, so a resumed or repeated run starts from the same weights) and whose record of examples seen
    says so; the decoding stored with the source is dropped, since it was fitted to the old branches."""
    import torch

    from mixscribe.model.checkpoint import load_model, save_checkpoint
    from mixscribe.model.network import TwoBranchModel

    model = load_model(source)
    torch.manual_seed(seed)
    fresh = TwoBranchModel(model.cfg)
    for branch in BRANCHES:
        if branch not in keep:
            setattr(model, branch, getattr(fresh, branch))
    seen = dict(model.extra.get("examples_seen") or {})
    seen |= {b: 0 for b in BRANCHES if b not in keep}
    return save_checkpoint(model, target, extra={"examples_seen": seen, "init_from": str(source),
                                                 "init_branches": list(keep)})  # fmt: skip


def _evaluate_chorales(stages: _Stages, plan: Plan, root: Path, checkpoint: str, tuned, rid: str, log,
                       report: str = "report-chorales") -> dict:  # fmt: skip
    """The chorale set (built once under the pipeline's folder) scored with the thresholds the synthetic
    valid set chose: nothing about the chorales tunes anything."""

    from mixscribe import tracking
    from mixscribe.evaluate.chorales import ChoraleConfig, build_chorale_set
    from mixscribe.shards import MANIFEST

    data = root / "chorales"
    if not (data / MANIFEST).exists():
        cfg = ChoraleConfig(chorales=plan.pipeline.chorales, sf_family=plan.synth.splits.holdout_sf_family,
                            max_seconds=plan.pipeline.chorale_seconds, seed=plan.synth.seed,
                            procedural_seed=plan.synth.procedural.seed)  # fmt: skip
        build_chorale_set(cfg, str(data), log=lambda m: log(f"    {m}"))
    result = _score_fixed(stages, root, checkpoint, tuned, rid, data, "chorales", report, log)
    summary = result.summary()
    tracking.log_metrics(stages.mlf, rid, summary)
    return summary


def _evaluate_dataset(stages: _Stages, root: Path, checkpoint: str, tuned, rid: str, dataset: str, home: str,
                      log) -> dict:  # fmt: skip
    """A real-recording set (its mixtures built once under the working folder, shared by every pipeline
    there) scored with the thresholds valid chose, as the chorales are."""
    from mixscribe import tracking
    from mixscribe.evaluate.datasets import build_dataset_set

    data = stages.workdir / "datasets" / dataset
    build_dataset_set(dataset, home, str(data), log=lambda m: log(f"    {m}"))
    result = _score_fixed(stages, root, checkpoint, tuned, rid, data, dataset, f"report-{dataset}", log)
    summary = result.summary()
    tracking.log_metrics(stages.mlf, rid, summary | result.pair_summary())
    return summary


def _score_fixed(stages: _Stages, root: Path, checkpoint: str, tuned, rid: str, data: Path, split: str,
                 report: str, log):  # fmt: skip
    """One held-out set of its own shard set scored whole with the thresholds valid chose (nothing about
    it tunes anything): its report under root/report, the shards as the run's input, the table logged."""
    from mixscribe import tracking
    from mixscribe.evaluate.runner import evaluate_checkpoint, write_report

    fixed = dataclasses.replace(tuned, sets=(split,), tune_on="", max_clips_per_set=0)
    result = evaluate_checkpoint(checkpoint, str(data), fixed)
    paths = write_report(result, str(root / report))
    tracking.log_shards_input(rid, stages.uri, str(data), f"evaluation-{split}")
    tracking.log_artifacts(stages.mlf, rid, paths, report)
    log("    " + result.markdown().replace("\n", "\n    ").rstrip())
    return result


def _run_stage(stages: _Stages, stage: str, log, body) -> str:
    """Skip a finished stage (returning its recorded output), else run body(run_id) -> output in its run."""
    from mixscribe import tracking

    run, existed = stages.child(stage)
    rid = run.info.run_id
    if existed and run.info.status == "FINISHED":
        output = run.data.tags.get(OUTPUT_TAG)
        if output and os.path.exists(output):
            log(f"  {stage}: finished earlier (run {rid}), skipped")
            return output
    log(f"  {stage}: {'resuming' if existed else 'running'} (run {rid})")
    with tracking.lifecycle(stages.mlf, rid):
        output = body(rid)
        stages.mlf.set_tag(rid, OUTPUT_TAG, output)
    return output


def _synth_stage(stages: _Stages, plan: Plan, root: Path, log) -> str:
    from mixscribe import tracking
    from mixscribe.synth.pipeline import run_synth

    def body(rid: str) -> str:
        out = str(root / "shards")
        tracking.log_params(stages.mlf, rid, to_dict(plan.synth), prefix="synth.")
        result = run_synth(plan.synth, out, plan.pipeline.num_clips, overwrite=True)
        m = result.manifest
        tracking.log_metrics(stages.mlf, rid, {
            "synth/clips": m.get("num_clips", 0), "synth/audio_seconds": 3600 * m.get("hours", 0.0),
            "synth/render_seconds": m.get("render_seconds", 0.0), "synth/dropped_stems": m.get("dropped_stems_total", 0),
            **{f"synth/split/{k}": v for k, v in m.get("rows_per_split", {}).items()}})  # fmt: skip
        tracking.log_shards_input(rid, stages.uri, out, "synth-output")
        log(f"    {m.get('num_clips')} clips -> {out}")
        return out

    return _run_stage(stages, "synth", log, body)


def _train_stage(stages: _Stages, plan: Plan, root: Path, shards: str, stage: str, init: str | None, log) -> str:
    from mixscribe import tracking
    from mixscribe.train.trainer import CHECKPOINT_FILE, chosen_checkpoint, read_history, run_training

    cfg = plan.train_for(stage, init or "")

    def body(rid: str) -> str:
        tracking.log_params(stages.mlf, rid, to_dict(cfg), prefix="train.")
        tracking.log_shards_input(rid, stages.uri, shards, "training")
        result = run_training(cfg, shards, f"{stages.name}-{stage}", str(root / "ray"),
                              mlflow={"tracking_uri": stages.uri, "run_id": rid})  # fmt: skip
        if result.error:
            raise result.error
        best, chosen = chosen_checkpoint(result, cfg)
        stages.mlf.set_tag(rid, "train.chosen_epoch", str(chosen.get("epoch")))
        models = root / "models"
        models.mkdir(exist_ok=True)
        target = models / f"{stage}.pt"
        with best.as_directory() as d:
            tmp = target.with_name(f".tmp-{target.name}")
            shutil.copyfile(Path(d) / CHECKPOINT_FILE, tmp)
            os.replace(tmp, target)
        tracking.log_trained_model(stages.uri, rid, target, {"train": to_dict(cfg)})
        tracking.log_artifacts(stages.mlf, rid, write_curve(root / "curves", stage, read_history(result)), "curve")
        log(f"    {stage}: epoch {chosen.get('epoch')} of {result.metrics.get('epoch')} chosen by {cfg.select_by}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in chosen.items() if k.startswith("val/")))  # fmt: skip
        return str(target)

    return _run_stage(stages, f"train-{stage}", log, body)


def write_curve(folder: Path, stage: str, history: list[dict]) -> list[Path]:
    """A stage's learning curve beside its model: every epoch's validation figures against the examples
    seen (STAGE.csv) and their plot (STAGE.png), each written atomically."""
    import csv
    import io

    from mixscribe.evaluate.plots import learning_curve
    from mixscribe.fsio import atomic_local_write

    folder.mkdir(parents=True, exist_ok=True)
    keys = ["epoch", "train/examples_seen", *sorted({k for h in history for k in h if k.startswith("val/")})]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    table = atomic_local_write(folder / f"{stage}.csv", lambda tmp: tmp.write_text(buf.getvalue()))
    return [table, learning_curve(history, f"{stage} stage", folder / f"{stage}.png")]


def _evaluate_stage(stages: _Stages, plan: Plan, root: Path, shards: str, checkpoint: str, log) -> dict:
    from mixscribe import tracking
    from mixscribe.evaluate.runner import evaluate_checkpoint, write_report

    summary: dict = {}

    def body(rid: str) -> str:
        result = evaluate_checkpoint(checkpoint, shards, plan.evaluate)
        report = root / REPORT_DIR
        paths = write_report(result, str(report))
        summary.update(tracking.log_evaluation(stages.mlf, stages.uri, rid, result, shards, paths))
        log("    " + result.markdown().replace("\n", "\n    ").rstrip())
        if plan.pipeline.chorales:
            summary.update(_evaluate_chorales(stages, plan, root, checkpoint, result.config, rid, log))
        for dataset, home in plan.pipeline.datasets.items():
            summary.update(_evaluate_dataset(stages, root, checkpoint, result.config, rid, dataset, home, log))
        tracking.log_metrics(stages.mlf, stages.parent.info.run_id, summary)  # pipelines compare on the parent
        return str(report)

    _run_stage(stages, "evaluate", log, body)
    return summary


COMPARE_METRICS = (("note_f1", "note F"), ("sep_note_f1", "separated note F"))


def _compare_stage(stages: _Stages, plan: Plan, root: Path, shards: str, checkpoint: str, log) -> str:
    """The reference model on the same held-out sets as this pipeline's model, its thresholds tuned on
    the same valid split by the same search; the evaluate stage's figures stand for this pipeline's model.
    One table: on the console, as comparison.md, and as metrics on the pipeline's run."""
    from mixscribe import tracking
    from mixscribe.evaluate.runner import evaluate_checkpoint, write_report
    from mixscribe.fsio import atomic_local_write

    reference = resolve_init_checkpoint(plan.pipeline.compare_with)
    sets = [*plan.pipeline.compare_sets, *(["chorales"] if plan.pipeline.chorales else [])]

    def body(rid: str) -> str:
        ours = stages.mlf.get_run(stages.parent.info.run_id).data.metrics  # the evaluate stage's summary
        cfg = dataclasses.replace(plan.evaluate, sets=tuple(plan.pipeline.compare_sets))
        result = evaluate_checkpoint(reference, shards, cfg)
        theirs = result.summary()
        write_report(result, str(root / "report-reference"))
        if plan.pipeline.chorales:
            theirs.update(_evaluate_chorales(stages, plan, root, reference, result.config, rid, lambda m: None,
                                             report="report-reference-chorales"))  # fmt: skip
        label = plan.pipeline.compare_with if plan.pipeline.compare_with != "default" else "shipped default model"
        rows = {f"this pipeline's model ({Path(checkpoint).name})": ours, label: theirs}
        table = comparison_table(rows, sets)
        metrics = {f"compare/{tag}/{key}": value for tag, m in zip(("pipeline", "reference"), rows.values())
                   for key, value in m.items() if key.startswith("eval/") and key.split("/")[1] in sets}  # fmt: skip
        tracking.log_metrics(stages.mlf, stages.parent.info.run_id, metrics)
        path = root / "comparison.md"
        atomic_local_write(path, lambda tmp: tmp.write_text(table))
        tracking.log_artifacts(stages.mlf, stages.parent.info.run_id, [path], "comparison")
        log("    " + table.replace("\n", "\n    ").rstrip())
        return str(path)

    return _run_stage(stages, "compare", log, body)


def comparison_table(rows: dict[str, dict], sets: list[str]) -> str:
    """Markdown: one row per model, note F and separated note F (all mixtures, K given) per set."""
    head = "| model | " + " | ".join(f"{name} {label}" for name in sets for _, label in COMPARE_METRICS) + " |"
    lines = ["Held-out sets, % (thresholds of each model tuned on the same valid split):", "", head,
             "|---|" + "---|" * (len(sets) * len(COMPARE_METRICS))]  # fmt: skip
    for model, m in rows.items():
        cells = []
        for name in sets:
            for metric, _ in COMPARE_METRICS:
                value = m.get(f"eval/{name}/all/{metric}")
                cells.append("n/a" if value is None else f"{100 * value:.1f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{name}: {int(m)} clips" for name in sets
                       if (m := next(iter(rows.values())).get(f"eval/{name}/all/clips")) is not None)  # fmt: skip
    return "\n".join(lines) + (f"\n\n({counts})" if counts else "") + "\n"

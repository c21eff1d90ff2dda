"""The `mixscribe` command. Thin: parses arguments, imports the stage it runs only when it runs it."""

from __future__ import annotations

import argparse
import os
import sys


def _cmd_synth(args: argparse.Namespace) -> int:
    from mixscribe.config import load_synth_config
    from mixscribe.synth.pipeline import run_synth

    cfg = load_synth_config(args.config, seed=args.seed, workers=args.workers)
    result = run_synth(cfg, args.out, args.clips, overwrite=args.overwrite)
    m = result.manifest
    print(f"wrote {m['num_clips']} clips ({m['hours'] * 60:.1f} min of audio, {m['stems_total']} stems) "
          f"in {m['render_seconds']:.1f} s to {result.out}")  # fmt: skip
    print(f"splits {m['rows_per_split']}; dropped stems {m['dropped_stems_total']} {m['dropped_stems']}")
    print(f"inspect: mixscribe inspect {result.out} [--clip {m['files'][0]['first_id']}]")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from mixscribe.synth import inspect

    print(inspect.summary(args.shards))
    if args.clip:
        clip_id = inspect.first_clip_id(args.shards) if args.clip == "first" else args.clip
        for p in inspect.export_clip(args.shards, clip_id, args.out):
            print(f"wrote {p}")
    return 0


def _cmd_soundfonts(args: argparse.Namespace) -> int:
    from mixscribe.synth import catalog

    entries = catalog.select(tuple(args.soundfont or ()), installed_only=args.action != "install")
    if args.action == "install":
        missing = [e for e in entries if not e.installed()]
        if missing:
            catalog.install(missing)
        for e in entries:
            catalog.verify_file(e)
            print(f"ok  {e.id:20s} {e.path}")
        return 0
    if args.action == "verify":
        bad = 0
        for e in catalog.select(tuple(args.soundfont or ()), installed_only=False):
            try:
                catalog.verify_file(e)
                print(f"ok       {e.id:20s} {e.family:8s} {e.path}")
            except Exception as exc:  # report every file, then fail
                bad += 1
                print(f"FAILED   {e.id:20s} {exc}")
        return 1 if bad else 0
    if args.action == "list":
        from mixscribe.synth.survey import preset_table

        rows = preset_table(entries)
        lines = ["soundfont\tbank\tprogram\tname\tsilent"]
        lines += [f"{r.soundfont}\t{r.bank}\t{r.program}\t{r.name}\t{'SILENT' if r.silent else ''}" for r in rows]
        text = "\n".join(lines) + "\n"
        if args.out:
            from pathlib import Path

            from mixscribe.fsio import atomic_local_write

            atomic_local_write(Path(args.out), lambda tmp: tmp.write_text(text))
        else:
            sys.stdout.write(text)
        silent = sum(r.silent for r in rows)
        print(f"{len(rows)} presets in {len(entries)} SoundFonts, {silent} render silence", file=sys.stderr)
        return 0
    from mixscribe.synth.survey import overlap

    report = overlap(entries, tuple(args.programs or ()), min_shared=args.min_shared)
    print("presets whose samples match (shared/compared):")
    print(report.format())
    problems = report.disagreements()
    for p in problems:
        print(f"DISAGREES: {p}")
    if problems:
        print("mixscribe: error: declared SoundFont families disagree with the measured overlap", file=sys.stderr)
        return 1
    print("declared families agree with the measured overlap")
    return 0


def _check_decoding_options(args: argparse.Namespace) -> None:
    """DecodeParams' own ranges, checked on the options before any work: one line naming the option.
    (--min-note-ms is >= 0 exactly when the frames it becomes are.)"""
    from mixscribe.errors import MixscribeError
    from mixscribe.transcription.decode import out_of_range

    options = (("--onset-threshold", "onset_threshold", args.onset_threshold),
               ("--frame-threshold", "frame_threshold", args.frame_threshold),
               ("--min-note-ms", "min_note_frames", args.min_note_ms), ("--gate-dbfs", "gate_dbfs", args.gate_dbfs))
    for flag, name, value in options:
        why = None if value is None else out_of_range(name, value)
        if why:
            raise MixscribeError(f"{flag}: {why}")


def _output_stems(inputs: list[str], out) -> list:
    """One output name per input; two inputs that would write the same file are refused, naming both."""
    from pathlib import Path

    from mixscribe.errors import MixscribeError

    seen: dict = {}
    for a in inputs:
        stem = out / Path(a).stem
        if stem in seen:
            raise MixscribeError(f"{seen[stem]} and {a} would both be written as {stem}.*: transcribe them into "
                                 "separate folders (-o) or rename one")  # fmt: skip
        seen[stem] = a
    return list(seen)


def _cmd_transcribe(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from mixscribe.errors import MixscribeError
    from mixscribe.transcription.inference import (TranscribeError, check_audio_file, default_params, resolve_backend,
                                                   stored_overrides)
    from mixscribe.transcription.outputs import FORMATS
    from mixscribe.schema import HOP, SAMPLE_RATE

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise MixscribeError(f"--format: unknown format(s) {unknown} (choose from {','.join(FORMATS)})")
    if args.k is not None and args.k < 1:
        raise TranscribeError(f"-k: K must be >= 1, got {args.k}")
    _check_decoding_options(args)
    resolve_backend(args.backend)  # an unknown backend, or bf16 on a CPU without it: before any work
    out = Path(args.output_dir)
    stems = _output_stems(args.audio, out)
    for a in args.audio:  # every input readable before any work; each is decoded when its turn comes
        check_audio_file(a)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise MixscribeError(f"{out}: output folder is not writable ({exc.strerror})") from exc
    from mixscribe.model import load_model

    model = load_model(args.checkpoint)
    given = {"onset_threshold": args.onset_threshold, "frame_threshold": args.frame_threshold,
             "min_note_frames": None if args.min_note_ms is None else args.min_note_ms / 1000 * SAMPLE_RATE / HOP,
             "gate_dbfs": args.gate_dbfs}  # fmt: skip
    params = dataclasses.replace(default_params(model), **{k: v for k, v in given.items() if v is not None})
    stored = [s for s in stored_overrides(model) if given.get(s.split()[0]) is None]
    if stored:
        print(f"decoding: {', '.join(stored)}: stored with {args.checkpoint or 'the default model'} (tuned on its "
              "validation set), in place of the built-in defaults", file=sys.stderr)  # fmt: skip
    from tqdm import tqdm

    failed = []
    for path, stem in zip(tqdm(args.audio, desc="transcribing", unit="file", disable=len(args.audio) < 2), stems):
        try:
            tqdm.write(_transcribe_one(model, Path(path), stem, args, params, formats))
        except MixscribeError as exc:  # name the file, go on with the others
            failed.append(path)
            message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
            if len(args.audio) == 1:
                raise MixscribeError(message) from exc
            tqdm.write(f"mixscribe: error: {message}", file=sys.stderr)  # on its own line, above the bar
    if failed:
        print(f"mixscribe: error: {len(failed)} of {len(args.audio)} files failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def _beside(stem, suffix: str):
    """stem + suffix, keeping every dot of the input's name ("take.2" -> "take.2.mid", not "take.mid")."""
    return stem.with_name(stem.name + suffix)


def _transcribe_one(model, path, stem, args: argparse.Namespace, params, formats: list[str]) -> str:
    """Transcribe one file and write its outputs; returns the line that reports it."""
    from mixscribe.transcription.inference import load_audio, transcribe_audio
    from mixscribe.transcription.outputs import write_csv, write_json, write_midi, write_png

    result = transcribe_audio(model, load_audio(path), args.k, params, args.backend)
    written = []
    if "mid" in formats:
        written.append(write_midi(result.notes, result.k, _beside(stem, ".mid")))
    if "csv" in formats:
        written.append(write_csv(result.notes, _beside(stem, ".csv")))
    if "json" in formats:
        written.append(write_json(result.notes, result.k, result.k_estimated, str(path), _beside(stem, ".json")))
    if "png" in formats:
        written.append(write_png(result.notes, result.k, result.frame, _beside(stem, ".png"), path.name))
    how = "estimated" if result.k_estimated else "given"
    line = (f"{path}: {len(result.notes)} notes in {result.k} track{'s' if result.k != 1 else ''} (K {how}) -> "
            f"{', '.join(map(str, written))}")  # fmt: skip
    if result.gated >= 0.5:
        line += (f"\n{path}: warning: {result.gated:.0%} of the audio is below the {params.gate_dbfs:g} dBFS level "
                 "gate, where nothing is a note (a quieter recording: lower --gate-dbfs)")  # fmt: skip
    return line


def _cmd_package_model(args: argparse.Namespace) -> int:
    from mixscribe.model.checkpoint import package_model

    pt, onnx = package_model(args.checkpoint, args.report, args.output)
    print(f"wrote {pt} ({pt.stat().st_size / 1e3:.0f} kB) and {onnx} ({onnx.stat().st_size / 1e3:.0f} kB)")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from mixscribe.model import load_model
    from mixscribe.model.export import export_onnx

    path = export_onnx(load_model(args.checkpoint), args.output, external_sigma=args.external_sigma)
    print(f"wrote {path} (inputs: audio [1, samples] at 22,050 Hz{', sigma [1]' if args.external_sigma else ''}; "
          "outputs: frame, onset [1, 1, 84, frames], embedding [1, D, 84, frames])")  # fmt: skip
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from mixscribe.train.trainer import CHECKPOINT_FILE, load_train_config, read_worker_nodes, run_training

    from mixscribe.synth.pipeline import read_manifest
    from mixscribe.train.data import require_split

    cfg = load_train_config(args.config, workers=args.workers)
    _, root, manifest = read_manifest(args.data)  # a missing or empty shard set: before any run or folder exists
    for split in ("train", "valid"):
        require_split(root, manifest, split)
    from mixscribe import tracking

    run = None if args.no_mlflow else _open_train_run(args, cfg)
    mlflow_target = {"tracking_uri": run[0], "run_id": run[2]} if run else None
    with tracking.lifecycle(run[1] if run else None, run[2] if run else None):
        result = run_training(cfg, args.data, args.name, args.storage, mlflow=mlflow_target)
        if result.error:
            raise result.error
        print(f"run {args.name}: epoch {result.metrics.get('epoch')}, "
              + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if "/" in k))  # fmt: skip
        if result.checkpoint:
            print(f"latest checkpoint: {result.checkpoint.path}/{CHECKPOINT_FILE}")
            nodes = read_worker_nodes(result)
            print(f"{len(nodes)} worker(s) on {len(set(nodes))} Ray node(s)")
        if run:
            _log_trained_model(run, result, cfg)
    return 0


def _open_train_run(args: argparse.Namespace, cfg) -> tuple:
    """The training's MLflow run, found again by (name, storage) so a resumed training logs into the run
    it started rather than a new one."""
    from mixscribe import tracking
    from mixscribe.config import to_dict
    from mixscribe.fsio import absolute
    from mixscribe.synth.pipeline import read_manifest

    uri = tracking.tracking_uri(args.workdir)
    mlf = tracking.client(uri)
    exp = tracking.experiment_id(mlf, args.experiment, args.workdir)
    tags = {"mixscribe.stage": "train", "mixscribe.train_run": f"{absolute(args.storage)}/{args.name}"}
    run, existed = tracking.start_or_resume(mlf, exp, args.name, tags)
    rid = run.info.run_id
    if not existed:
        tracking.log_params(mlf, rid, to_dict(cfg), prefix="train.")
        tracking.log_shards_input(rid, uri, args.data, "training", read_manifest(args.data)[2])
    print(f"MLflow run {rid} ({uri})")
    return uri, mlf, rid


def _log_trained_model(run: tuple, result, cfg) -> None:
    from mixscribe import tracking
    from mixscribe.config import to_dict
    from mixscribe.train.trainer import CHECKPOINT_FILE

    uri, mlf, rid = run
    best = result.get_best_checkpoint("val/loss", "min") or result.checkpoint
    if best:
        with best.as_directory() as d:
            tracking.log_trained_model(uri, rid, os.path.join(d, CHECKPOINT_FILE), {"train": to_dict(cfg)})


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from mixscribe.pipeline import run_pipeline

    run_pipeline(args.config, workdir=args.workdir, name=args.name, workers=args.workers, num_clips=args.clips)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from mixscribe.config import from_dict, load_preset
    from mixscribe.evaluate.runner import EvalConfig, evaluate_checkpoint, stored_decoding, write_report

    section = dict(load_preset(args.config).get("evaluate") or {})
    cfg = from_dict(EvalConfig, section, prefix="evaluate.")
    overrides = {"sets": tuple(args.sets) if args.sets else None, "k_mode": args.k,
                 "max_clips_per_set": args.max_clips, "backend": args.backend}  # fmt: skip
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.tune_on is not None:
        cfg = dataclasses.replace(cfg, tune_on=args.tune_on)
    if args.dataset:
        cfg = _dataset_evaluation(args, cfg)
    elif not args.data:
        from mixscribe.errors import MixscribeError

        raise MixscribeError("evaluate: pass --data SHARDS, or --dataset NAME --data-home DIR")
    cfg, taken = stored_decoding(cfg, args.checkpoint, explicit=set(section))
    if taken:
        print(f"decoding: {', '.join(taken)} from {args.checkpoint} (fixed thresholds; set them in the "
              "config's evaluate: section to override)")  # fmt: skip
    if args.dataset:  # the recordings read (every file checked first) once the rest is known to be right
        from mixscribe.evaluate.datasets import build_dataset_set

        build_dataset_set(args.dataset, args.data_home, args.data, max_seconds=args.max_seconds or 0.0,
                          sizes=tuple(args.mix_sizes) if args.mix_sizes else None)  # fmt: skip
    result = evaluate_checkpoint(args.checkpoint, args.data, cfg, tune_shards=args.tune_data)
    paths = write_report(result, args.out)
    fixed = fixed_paths = None
    if args.dataset and result.tuned:  # the frozen decoding's figures beside the tuned ones
        fixed_cfg, _ = stored_decoding(dataclasses.replace(cfg, tune_on=""), args.checkpoint, explicit=set(section))
        fixed = evaluate_checkpoint(args.checkpoint, args.data, fixed_cfg)
        fixed_paths = write_report(fixed, os.path.join(args.out, "fixed"))
    if not args.no_mlflow:
        _log_evaluation(args, result, paths, fixed=(fixed, fixed_paths) if fixed else None)
    print(result.markdown(), end="")
    if fixed:
        print("\nThe same sets with the model's stored (fixed) decoding:\n" + fixed.markdown(), end="")
    print(f"report: {os.path.dirname(paths[0])}")
    return 0


def _dataset_evaluation(args: argparse.Namespace, cfg):
    """--dataset: the recordings under --data-home become a shard set (built once, under --data or
    WORKDIR/datasets/NAME) scored as the one set NAME; thresholds come from --tune-data's tuning set when
    given, else the model's stored decoding: never from the recordings being scored."""
    import dataclasses

    from mixscribe.evaluate.datasets import DatasetError
    from mixscribe.model import load_model

    if not args.data_home:
        raise DatasetError("--dataset needs --data-home (the folder the dataset was unpacked to)")
    if not os.path.isdir(os.path.expanduser(args.data_home)):
        raise DatasetError(f"{args.data_home}: no such folder (--data-home: where {args.dataset} was unpacked)")
    if not args.tune_data:
        cfg = dataclasses.replace(cfg, tune_on="")
    elif cfg.tune_on == args.dataset:
        raise DatasetError(f"--tune-on: {args.dataset} is the set being scored; tune on a validation set")
    load_model(args.checkpoint)  # a bad checkpoint is named before the recordings are read
    args.data = args.data or os.path.join(args.workdir, "datasets", args.dataset)
    return dataclasses.replace(cfg, sets=(args.dataset,))


def _cmd_baseline(args: argparse.Namespace) -> int:
    from mixscribe.evaluate.baseline import evaluate_basic_pitch
    from mixscribe.evaluate.runner import write_report

    result = evaluate_basic_pitch(args.data, tuple(args.sets), args.max_clips or 0)
    paths = write_report(result, args.out)
    if not args.no_mlflow:
        args.checkpoint = "basic-pitch"
        _log_evaluation(args, result, paths, run_name="baseline/basic-pitch")
    print(result.markdown(), end="")
    print(f"report: {os.path.dirname(paths[0])}")
    return 0


def _log_evaluation(args: argparse.Namespace, result, paths: list[str], run_name: str | None = None,
                    fixed: tuple | None = None) -> None:  # fmt: skip
    """A standalone evaluation is its own MLflow run in the chosen experiment; `fixed` (result, report
    paths): the same sets decoded with fixed thresholds, logged as fixed/eval/... beside the tuned."""
    from mixscribe import tracking

    uri = tracking.tracking_uri(args.workdir)
    mlf = tracking.client(uri)
    exp = tracking.experiment_id(mlf, args.experiment, args.workdir)
    run = mlf.create_run(exp, tags={**tracking.environment_tags(), "mixscribe.stage": "evaluate",
                                    "mixscribe.checkpoint": os.path.abspath(args.checkpoint)},
                         run_name=run_name or f"evaluate/{os.path.basename(args.checkpoint)}")  # fmt: skip
    rid = run.info.run_id
    with tracking.lifecycle(mlf, rid):
        tracking.log_evaluation(mlf, uri, rid, result, args.data, paths)
        if fixed:
            tracking.log_metrics(mlf, rid, {f"fixed/{k}": v for k, v in fixed[0].summary().items()})
            tracking.log_artifacts(mlf, rid, fixed[1], "report-fixed")
    print(f"MLflow run {rid} ({uri})")


def _cmd_study(args: argparse.Namespace) -> int:
    from mixscribe.evaluate.study import load_study, run_study

    cfg = load_study(args.config)
    run_study(cfg, workdir=args.workdir, workers=args.workers)
    print(f"matrix: {os.path.join(args.workdir, cfg.name)}/matrix.md, matrix.csv, matrix.png")
    return 0


def _cmd_chorales(args: argparse.Namespace) -> int:
    from mixscribe.evaluate.chorales import ChoraleConfig, build_chorale_set

    cfg = ChoraleConfig(chorales=args.chorales, sf_family=args.family, max_seconds=args.max_seconds, seed=args.seed,
                        procedural_seed=args.procedural_seed)  # fmt: skip
    manifest = build_chorale_set(cfg, args.out)
    print(f"{manifest['num_clips']} chorale mixtures (2-, 3- and 4-part) -> {args.out}; "
          f"evaluate with: mixscribe evaluate --data {args.out} --sets chorales --tune-data TRAINING_SHARDS")  # fmt: skip
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from mixscribe import tracking
    from mixscribe.evaluate.compare import DEFAULT_METRICS, compare_runs
    from mixscribe.fsio import atomic_local_write

    result = compare_runs(args.refs, tracking.tracking_uri(args.workdir), tuple(args.metric or DEFAULT_METRICS))
    print(result.markdown(), end="")
    if args.out:
        from pathlib import Path

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".md", result.markdown()), (".csv", result.csv())):
            atomic_local_write(out.with_name(out.name + suffix), lambda tmp, text=text: tmp.write_text(text))
        print(f"wrote {out}.md and {out}.csv")
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from mixscribe.submit import run

    return run(args)


def _add_mlflow_args(p: argparse.ArgumentParser, no_mlflow_help: str) -> None:
    """Where a command that logs to MLflow logs: the same three options on train, evaluate, baseline."""
    p.add_argument("--workdir", default="out", help="MLflow store folder when MLFLOW_TRACKING_URI is unset")
    p.add_argument("--experiment", default="mixscribe", help="MLflow experiment (default: mixscribe)")
    p.add_argument("--no-mlflow", action="store_true", help=no_mlflow_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixscribe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="show Ray's, Ray Train's and MLflow's logs live (they always go to the log file)")

    def command(name: str, **kw) -> argparse.ArgumentParser:  # every command takes --verbose
        return sub.add_parser(name, parents=[common], **kw)

    p = command("synth", help="render random multi-stem clips into Parquet shards (Ray Data)")
    p.add_argument("--config", default="demo", help="preset name or YAML file (default: demo)")
    p.add_argument("--out", required=True, help="output folder or URI (s3://, gs://)")
    p.add_argument("--clips", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=None, help="base seed (overrides the config)")
    p.add_argument("--workers", type=int, default=None, help="render actors (default: one per CPU)")
    p.add_argument("--overwrite", action="store_true", help="replace shards of another config in --out")
    p.set_defaults(func=_cmd_synth)

    p = command("inspect", help="summarise a shard set; export one clip as WAV/MIDI/PNG")
    p.add_argument("shards")
    p.add_argument("--clip", help="clip id to export ('first' for the first clip)")
    p.add_argument("--out", default="inspect", help="folder for the exported clip (default: ./inspect)")
    p.set_defaults(func=_cmd_inspect)

    p = command("train", help="train the model with Ray Train (re-run the same name to resume)")
    p.add_argument("--config", default="demo", help="preset name or YAML file with train: and model: sections")
    p.add_argument("--data", required=True, help="shard set written by mixscribe synth")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (default: the config's)")
    p.add_argument("--name", default="mixscribe", help="run name: the same name and storage resume")
    p.add_argument("--storage", default="runs", help="where runs and checkpoints live")
    _add_mlflow_args(p, "do not log to MLflow")
    p.set_defaults(func=_cmd_train)

    p = command("pipeline", help="the main job: synth -> train -> evaluate as one MLflow run (re-run to resume)")
    p.add_argument("--config", default="demo", help="preset name or YAML file (default: demo)")
    p.add_argument("--workdir", default="out", help="outputs under WORKDIR/NAME; MLflow in WORKDIR/mlflow.db "
                   "unless MLFLOW_TRACKING_URI is set (default: out)")  # fmt: skip
    p.add_argument("--name", default=None, help="pipeline name (default: the preset's); the same name resumes")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (default: the config's)")
    p.add_argument("--clips", type=int, default=None, help="clips to synthesise (default: the config's)")
    p.set_defaults(func=_cmd_pipeline)

    p = command("evaluate", help="score a checkpoint on held-out sets of a shard set; log to MLflow")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None, help="shard set whose splits are the evaluation sets (with --dataset: "
                   "where its mixtures are written, default WORKDIR/datasets/NAME)")  # fmt: skip
    p.add_argument("--dataset", default=None, choices=["bach10", "urmp", "phenicx"],
                   help="score real recordings you downloaded (README: Real recordings) instead of --data's splits")
    p.add_argument("--data-home", default=None, help="with --dataset: the folder the dataset was unpacked to")
    p.add_argument("--mix-sizes", type=int, nargs="+", default=None,
                   help="with --dataset: the part counts of its mixtures (default: the paper's)")
    p.add_argument("--max-seconds", type=float, default=None, help="with --dataset: crop each piece (0: whole)")
    p.add_argument("--sets", nargs="+", default=None, help="split names (default: the config's)")
    p.add_argument("--k", choices=["given", "auto"], default=None, help="K given (true) or estimated")
    p.add_argument("--config", default="demo", help="preset or YAML with an evaluate: section")
    p.add_argument("--max-clips", type=int, default=None, help="at most this many clips per set")
    p.add_argument("--tune-on", default=None, help="set that tunes the thresholds (default: valid; '' = fixed)")
    p.add_argument("--tune-data", default=None, help="shard set holding the tuning set (default: --data)")
    p.add_argument("--backend", default=None,
                   help="the model's arithmetic: float32 (the config's default), auto (what transcribe runs), bf16")
    p.add_argument("--out", default="report", help="report folder (default: ./report)")
    _add_mlflow_args(p, "write the report only")
    p.set_defaults(func=_cmd_evaluate)

    p = command("baseline", help="Spotify's Basic Pitch on the same sets (in its own venv), same metrics")
    p.add_argument("--data", required=True, help="shard set whose splits are the evaluation sets")
    p.add_argument("--sets", nargs="+", required=True, help="split names, e.g. valid unseen-family chorales")
    p.add_argument("--max-clips", type=int, default=None, help="at most this many clips per set")
    p.add_argument("--out", default="baseline-report", help="report folder (default: ./baseline-report)")
    _add_mlflow_args(p, "write the report only")
    p.set_defaults(func=_cmd_baseline)

    p = command("study", help="a SoundFont-generalisation study: one pipeline per held-out family, a matrix")
    p.add_argument("config", help="YAML with a study: section (e.g. mixscribe/presets/study-loo.yaml)")
    p.add_argument("--workdir", default="out", help="outputs and MLflow store under WORKDIR/STUDY (default: out)")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (default: the base config's)")
    p.set_defaults(func=_cmd_study)

    p = command("chorales", help="build the Bach chorale evaluation set (BACH10 instruments, held-out SoundFonts)")
    p.add_argument("--out", required=True, help="output folder or URI for the shard set")
    p.add_argument("--chorales", type=int, default=10, help="number of chorales (default: 10)")
    p.add_argument("--family", default="tim", help="SoundFont family to render with (default: tim, held out by the "
                   "presets), or procedural: generated sustained instruments of the family's unseen stream")  # fmt: skip
    p.add_argument("--procedural-seed", type=int, default=0, help="with --family procedural: the stream's seed "
                   "(synth.procedural.seed of the training data; default: 0)")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=30.0, help="crop each chorale (0: whole; default: 30)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_chorales)

    p = command("compare", help="metrics of MLflow runs side by side (run ids or experiment names)")
    p.add_argument("refs", nargs="+", help="run ids and/or experiment names")
    p.add_argument("--metric", action="append", help="metric name pattern, e.g. 'eval/unseen-*/all/note_f1' (repeatable)")
    p.add_argument("--out", help="also write OUT.md and OUT.csv")
    p.add_argument("--workdir", default="out", help="MLflow store folder when MLFLOW_TRACKING_URI is unset")
    p.set_defaults(func=_cmd_compare)

    p = command("submit", help="run a stage as a Ray job on a cluster and follow its logs",
                       description="Options go before STAGE; everything after STAGE is the stage's own arguments, "
                                   "e.g. mixscribe submit --address http://head:8265 synth --config full "
                                   "--out s3://bucket/shards --clips 100000")  # fmt: skip
    p.add_argument("--address", default=None, help="job server, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS "
                                                   "or RAY_ADDRESS)")  # fmt: skip
    p.add_argument("--working-dir", default=None, help="code shipped with the job (default: this source checkout, "
                                                       "if mixscribe runs from one)")  # fmt: skip
    p.add_argument("--no-working-dir", action="store_true", help="use the package installed on the cluster")
    p.add_argument("--runtime-env", default=None, help="runtime_env YAML (pip, env_vars, ...), e.g. "
                                                       "cluster_configs/runtime_env.yaml")  # fmt: skip
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable for the job (repeatable)")
    p.add_argument("--job-id", default=None, help="submission id (default: Ray's)")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return instead of following")
    p.add_argument("stage", help="synth, train, evaluate, pipeline, chorales or study")
    p.add_argument("stage_args", nargs=argparse.REMAINDER, help="the stage's arguments")
    p.set_defaults(func=_cmd_submit)

    p = command("transcribe", help="audio files -> one MIDI file each, one track per timbre")
    p.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, MP3; any rate; mono or stereo)")
    p.add_argument("-k", type=int, default=None, help="number of timbres (default: estimated)")
    p.add_argument("-o", "--output-dir", default=".", help="output folder (default: .)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (.pt; default: the shipped model)")
    p.add_argument("--onset-threshold", type=float, default=None, help="default: the model's (tuned on validation)")
    p.add_argument("--frame-threshold", type=float, default=None, help="default: the model's")
    p.add_argument("--min-note-ms", type=float, default=None, help="minimum note length (default: the model's)")
    p.add_argument("--gate-dbfs", type=float, default=None,
                   help="audio quieter than this RMS level (dBFS) is never a note (default: -55)")
    p.add_argument("--format", default="mid", help="comma-separated: mid,csv,json,png (default: mid)")
    p.add_argument("--backend", default="auto",
                   help="auto (default): bf16 where the CPU multiplies it natively, else float32; or bf16, float32")
    p.set_defaults(func=_cmd_transcribe)

    p = command("export-onnx", help="export a checkpoint as an ONNX graph (audio -> frame, onset, embedding)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("-o", "--output", default="mixscribe.onnx")
    p.add_argument("--external-sigma", action="store_true", help="take EnergyNorm's sigma as a second input")
    p.set_defaults(func=_cmd_export_onnx)

    p = command("package-model", help="a checkpoint + the thresholds its evaluation tuned -> a shippable model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--report", required=True, help="evaluation report folder (its metrics.json holds the thresholds)")
    p.add_argument("-o", "--output", required=True, help="model file (.pt); its ONNX graph is written beside it")
    p.set_defaults(func=_cmd_package_model)

    p = command("soundfonts", help="install, list, verify the catalog; measure sample overlap")
    p.add_argument("action", choices=["install", "list", "verify", "overlap"])
    p.add_argument("--soundfont", action="append", help="catalog id (repeatable; default: all)")
    p.add_argument("--out", help="list: write the preset table (TSV) here")
    p.add_argument("--programs", type=int, nargs="*", help="overlap: GM programs to compare (default: all pitched)")
    p.add_argument("--min-shared", type=int, default=3, help="overlap: presets that make two SoundFonts share")
    p.set_defaults(func=_cmd_soundfonts)
    return parser


def _log_dir(args: argparse.Namespace):
    """Where a command that runs Ray or MLflow keeps its log file: beside its outputs (a local folder)."""
    from pathlib import Path

    command = args.command
    if command == "pipeline":
        return Path(args.workdir) / (args.name or Path(args.config).stem) / "logs"
    if command in ("train", "evaluate", "baseline", "study"):
        return Path(args.workdir) / "logs"
    if command in ("synth", "chorales"):
        return Path(args.out) / "logs" if "://" not in args.out else Path("mixscribe-logs")
    return None  # the others run no Ray: warnings stay on the console


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mixscribe.console import Console
    from mixscribe.errors import MixscribeError
    from mixscribe.raycluster import VERBOSE_ENV, prepare_local_environment

    if args.command != "submit":  # a job server's client keeps the user's own Ray settings
        prepare_local_environment()  # before any stage imports Ray: Ray reads these settings once, on import
    if args.verbose:  # every command takes --verbose
        os.environ[VERBOSE_ENV] = "1"
    console = Console(_log_dir(args), args.command, verbose=args.verbose)
    try:
        return args.func(args)
    except MixscribeError as exc:
        print(f"mixscribe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mixscribe: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _report_ray_error(exc, console)
    finally:
        where = console.close()
        if where:
            print(where)  # stdout: stderr holds nothing but an error's one line


def _report_ray_error(exc: Exception, console) -> int:
    """An error that came out of a Ray task, actor or training worker: the original error on one line
    (its traceback goes to the log file); anything else is a bug and keeps its traceback."""
    import logging

    from mixscribe.errors import MixscribeError
    from mixscribe.raycluster import innermost_error, unwrap_ray_error

    original = unwrap_ray_error(exc)
    if isinstance(original, MixscribeError):
        print(f"mixscribe: error: {original}", file=sys.stderr)
        return 2
    inner = innermost_error(exc)
    if inner is None:
        raise exc
    logging.getLogger("mixscribe").error("failed inside Ray", exc_info=exc)
    text = " ".join(str(inner).split()) or "(no message)"
    print(f"mixscribe: error: {type(inner).__name__} inside a Ray task: {text[:400]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""What each `mixscribe` command does, one function per command; each imports the stage it runs only
when it runs it, so `mixscribe --help` and a typo stay instant."""

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
    from mixscribe.transcription.inference import load_transcriber

    model = load_transcriber(args.checkpoint)
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
    from mixscribe.evaluate.package import package_model

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

    from mixscribe.shards import ShardSet

    cfg = load_train_config(args.config, workers=args.workers)
    shard_set = ShardSet.open(args.data)  # a missing or empty shard set: before any run or folder exists
    for split in ("train", "valid"):
        shard_set.require_split(split)
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

    uri = tracking.tracking_uri(args.workdir)
    mlf = tracking.client(uri)
    exp = tracking.experiment_id(mlf, args.experiment, args.workdir)
    tags = {"mixscribe.stage": "train", "mixscribe.train_run": f"{absolute(args.storage)}/{args.name}"}
    run, existed = tracking.start_or_resume(mlf, exp, args.name, tags)
    rid = run.info.run_id
    if not existed:
        tracking.log_params(mlf, rid, to_dict(cfg), prefix="train.")
        tracking.log_shards_input(rid, uri, args.data, "training")
    print(f"MLflow run {rid} ({uri})")
    return uri, mlf, rid


def _log_trained_model(run: tuple, result, cfg) -> None:
    from mixscribe import tracking
    from mixscribe.config import to_dict
    from mixscribe.train.trainer import CHECKPOINT_FILE, chosen_checkpoint

    uri, mlf, rid = run
    best, _ = chosen_checkpoint(result, cfg)
    if best:
        with best.as_directory() as d:
            tracking.log_trained_model(uri, rid, os.path.join(d, CHECKPOINT_FILE), {"train": to_dict(cfg)})


def _cmd_curve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mixscribe.pipeline import write_curve
    from mixscribe.train.trainer import run_history

    stage, history = run_history(args.run)
    table, plot = write_curve(Path(args.out), stage, history)
    figures = [k for k in ("val/loss", "val/note_f1", "val/sep_note_f1", "val/cluster_purity") if k in history[-1]]
    epochs = sum(1 for row in history if row["epoch"] >= 0)
    print(f"{stage}: {epochs} epochs, {history[-1].get('train/examples_seen', 0):,} examples seen")
    for row in history:
        when = f"epoch {row['epoch']:>3}" if row["epoch"] >= 0 else "start    "  # -1: the model as it started
        print(f"  {when}  examples {row.get('train/examples_seen', 0):>9,}  "
              + "  ".join(f"{k} {row[k]:.4f}" for k in figures if k in row))  # fmt: skip
    print(f"{table}\n{plot}")
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from mixscribe.pipeline import run_pipeline

    run_pipeline(args.config, workdir=args.workdir, name=args.name, workers=args.workers, num_clips=args.clips)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from mixscribe.config import load_preset
    from mixscribe.evaluate.runner import evaluate_checkpoint, load_eval_config, stored_decoding, write_report

    preset = load_preset(args.config)
    cfg = load_eval_config(preset)
    explicit = set((preset.get("evaluate") or {}).get("decode") or {})  # decoding the preset sets: a packaged model's never replaces it
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
    cfg, taken = stored_decoding(cfg, args.checkpoint, explicit)
    if taken:
        print(f"decoding: {', '.join(taken)} from {args.checkpoint} (fixed thresholds; set them in the "
              "config's evaluate.decode: section to override)")  # fmt: skip
    if args.dataset:  # the recordings read (every file checked first) once the rest is known to be right
        from mixscribe.evaluate.datasets import build_dataset_set

        build_dataset_set(args.dataset, args.data_home, args.data, max_seconds=args.max_seconds or 0.0,
                          sizes=tuple(args.mix_sizes) if args.mix_sizes else None)  # fmt: skip
    result = evaluate_checkpoint(args.checkpoint, args.data, cfg, tune_shards=args.tune_data)
    paths = write_report(result, args.out)
    fixed = fixed_paths = None
    if args.dataset and result.tuned:  # the frozen decoding's figures beside the tuned ones
        fixed_cfg, _ = stored_decoding(dataclasses.replace(cfg, tune_on=""), args.checkpoint, explicit)
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

    from mixscribe.evaluate.datasets import DatasetError, dataset_home
    from mixscribe.model import load_model

    dataset_home(args.dataset, args.data_home)
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
    from pathlib import Path

    from mixscribe.evaluate.study import keep_results, load_study, paired_comparison, run_study

    cfg = load_study(args.config)
    if args.keep:
        kept = keep_results(cfg, Path(args.workdir).resolve() / cfg.name, Path(args.keep).resolve() / cfg.name)
        print(f"kept {len(kept)} new file(s) under {Path(args.keep) / cfg.name}")
        if not args.summary:
            return 0
    if args.summary:
        if not cfg.arms:
            from mixscribe.errors import MixscribeError

            raise MixscribeError(f"{args.config}: --summary compares arms, and this study has none")
        print(paired_comparison(cfg, Path(args.workdir).resolve() / cfg.name), end="")
        return 0
    run_study(cfg, workdir=args.workdir, workers=args.workers, arms=args.arms, families=args.families)
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


COMMANDS = {
    "synth": _cmd_synth,
    "inspect": _cmd_inspect,
    "train": _cmd_train,
    "curve": _cmd_curve,
    "pipeline": _cmd_pipeline,
    "evaluate": _cmd_evaluate,
    "baseline": _cmd_baseline,
    "study": _cmd_study,
    "chorales": _cmd_chorales,
    "compare": _cmd_compare,
    "submit": _cmd_submit,
    "transcribe": _cmd_transcribe,
    "export-onnx": _cmd_export_onnx,
    "package-model": _cmd_package_model,
    "soundfonts": _cmd_soundfonts,
}

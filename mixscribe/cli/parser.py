"""The `mixscribe` command line: every command's arguments and nothing that runs them, so that
`mixscribe submit` checks a stage's arguments with the same parser without importing the commands."""

from __future__ import annotations

import argparse

DESCRIPTION = "The `mixscribe` command. Thin: parses arguments, imports the stage it runs only when it runs it."


def add_mlflow_args(p: argparse.ArgumentParser, no_mlflow_help: str) -> None:
    """Where a command that logs to MLflow logs: the same three options on train, evaluate, baseline."""
    p.add_argument("--workdir", default="out", help="MLflow store folder when MLFLOW_TRACKING_URI is unset")
    p.add_argument("--experiment", default="mixscribe", help="MLflow experiment (default: mixscribe)")
    p.add_argument("--no-mlflow", action="store_true", help=no_mlflow_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixscribe", description=DESCRIPTION)
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

    p = command("inspect", help="summarise a shard set; export one clip as WAV/MIDI/PNG")
    p.add_argument("shards")
    p.add_argument("--clip", help="clip id to export ('first' for the first clip)")
    p.add_argument("--out", default="inspect", help="folder for the exported clip (default: ./inspect)")

    p = command("train", help="train the model with Ray Train (re-run the same name to resume)")
    p.add_argument("--config", default="demo", help="preset name or YAML file with train: and model: sections")
    p.add_argument("--data", required=True, help="shard set written by mixscribe synth")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (default: the config's)")
    p.add_argument("--name", default="mixscribe", help="run name: the same name and storage resume")
    p.add_argument("--storage", default="runs", help="where runs and checkpoints live")
    add_mlflow_args(p, "do not log to MLflow")

    p = command("curve", help="the learning curve of a training run so far (running, stopped or finished)")
    p.add_argument("run", help="the run's folder: STORAGE/NAME of mixscribe train, WORKDIR/PIPELINE/ray/PIPELINE-STAGE "
                   "of a pipeline")  # fmt: skip
    p.add_argument("--out", default="curves", help="folder for STAGE.csv and STAGE.png (default: ./curves)")

    p = command("pipeline", help="the main job: synth -> train -> evaluate as one MLflow run (re-run to resume)")
    p.add_argument("--config", default="demo", help="preset name or YAML file (default: demo)")
    p.add_argument("--workdir", default="out", help="outputs under WORKDIR/NAME; MLflow in WORKDIR/mlflow.db "
                   "unless MLFLOW_TRACKING_URI is set (default: out)")  # fmt: skip
    p.add_argument("--name", default=None, help="pipeline name (default: the preset's); the same name resumes")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (default: the config's)")
    p.add_argument("--clips", type=int, default=None, help="clips to synthesise (default: the config's)")

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
    add_mlflow_args(p, "write the report only")

    p = command("baseline", help="Spotify's Basic Pitch on the same sets (in its own venv), same metrics")
    p.add_argument("--data", required=True, help="shard set whose splits are the evaluation sets")
    p.add_argument("--sets", nargs="+", required=True, help="split names, e.g. valid unseen-family chorales")
    p.add_argument("--max-clips", type=int, default=None, help="at most this many clips per set")
    p.add_argument("--out", default="baseline-report", help="report folder (default: ./baseline-report)")
    add_mlflow_args(p, "write the report only")

    p = command("study", help="a SoundFont-generalisation study: one pipeline per held-out family, a matrix")
    p.add_argument("config", help="YAML with a study: section (e.g. mixscribe/presets/study-loo.yaml)")
    p.add_argument("--summary", action="store_true",
                   help="run nothing: print the arms' paired changes over the folds finished so far")  # fmt: skip
    p.add_argument("--keep", metavar="DIR", default=None,
                   help="run nothing: copy the finished folds' per-clip reports, learning curves and configs to "
                        "DIR/STUDY (e.g. docs/studies), which --summary --workdir DIR then reads")  # fmt: skip
    p.add_argument("--arms", nargs="+", metavar="ARM", default=None,
                   help="run only these arms' folds (default: all); other finished folds still count")  # fmt: skip
    p.add_argument("--families", nargs="+", metavar="FAMILY", default=None,
                   help="run only the folds holding out these families (default: all)")  # fmt: skip
    p.add_argument("--workdir", default="out", help="outputs and MLflow store under WORKDIR/STUDY (default: out)")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (default: the base config's)")

    p = command("chorales", help="build the Bach chorale evaluation set (BACH10 instruments, held-out SoundFonts)")
    p.add_argument("--out", required=True, help="output folder or URI for the shard set")
    p.add_argument("--chorales", type=int, default=10, help="number of chorales (default: 10)")
    p.add_argument("--family", default="tim", help="SoundFont family to render with (default: tim, held out by the "
                   "presets), or procedural: generated sustained instruments of the family's unseen stream")  # fmt: skip
    p.add_argument("--procedural-seed", type=int, default=0, help="with --family procedural: the stream's seed "
                   "(synth.procedural.seed of the training data; default: 0)")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=30.0, help="crop each chorale (0: whole; default: 30)")
    p.add_argument("--seed", type=int, default=0)

    p = command("compare", help="metrics of MLflow runs side by side (run ids or experiment names)")
    p.add_argument("refs", nargs="+", help="run ids and/or experiment names")
    p.add_argument("--metric", action="append", help="metric name pattern, e.g. 'eval/unseen-*/all/note_f1' (repeatable)")
    p.add_argument("--out", help="also write OUT.md and OUT.csv")
    p.add_argument("--workdir", default="out", help="MLflow store folder when MLFLOW_TRACKING_URI is unset")

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

    p = command("export-onnx", help="export a checkpoint as an ONNX graph (audio -> frame, onset, embedding)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("-o", "--output", default="mixscribe.onnx")
    p.add_argument("--external-sigma", action="store_true", help="take EnergyNorm's sigma as a second input")

    p = command("package-model", help="a checkpoint + the thresholds its evaluation tuned -> a shippable model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--report", required=True, help="evaluation report folder (its metrics.json holds the thresholds)")
    p.add_argument("-o", "--output", required=True, help="model file (.pt); its ONNX graph is written beside it")

    p = command("soundfonts", help="install, list, verify the catalog; measure sample overlap")
    p.add_argument("action", choices=["install", "list", "verify", "overlap"])
    p.add_argument("--soundfont", action="append", help="catalog id (repeatable; default: all)")
    p.add_argument("--out", help="list: write the preset table (TSV) here")
    p.add_argument("--programs", type=int, nargs="*", help="overlap: GM programs to compare (default: all pitched)")
    p.add_argument("--min-shared", type=int, default=3, help="overlap: presets that make two SoundFonts share")
    return parser

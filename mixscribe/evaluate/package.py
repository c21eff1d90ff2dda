"""A model to ship: a checkpoint's weights with the decoding its evaluation tuned on validation.

Packaging reads an evaluation report, so it lives with evaluation; the model room only stores what it
is given (`extra`) and the transcription room reads the decoding back (`load_transcriber`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from mixscribe.model.checkpoint import CheckpointError, load_model, save_checkpoint
from mixscribe.transcription.decode import DecodeParams


def report_decoding(report: str | os.PathLike) -> tuple[dict, dict]:
    """The decoding an evaluation report (report/metrics.json) used, as DecodeParams' fields, and the
    report itself. Reports written before the decoding moved under `decode` hold the fields inline;
    older reports lack some fields: those stay defaults."""
    from mixscribe.evaluate.runner import REPORT_METRICS

    metrics = Path(report) / REPORT_METRICS
    try:
        evaluation = json.loads(metrics.read_text())
        config = evaluation["config"]
        used = config.get("decode") or config
        decode = {k: float(used[k]) for k in ("onset_threshold", "frame_threshold")}
        decode |= {f.name: used[f.name] for f in dataclasses.fields(DecodeParams)
                   if f.name not in decode and used.get(f.name) is not None}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{metrics}: not an evaluation report with thresholds ({type(exc).__name__})") from exc
    return decode, evaluation


def package_model(checkpoint: str | os.PathLike, report: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, Path]:
    """The checkpoint's weights and config, the decoding (thresholds, note shape, clustering, K) its
    evaluation tuned on validation, and where it came from; its ONNX graph beside it."""
    from mixscribe.model.export import export_onnx

    decode, evaluation = report_decoding(report)
    model = load_model(checkpoint)
    extra = dict(model.extra)
    extra["decode"] = decode
    extra["packaged_from"] = {"checkpoint": Path(checkpoint).name,
                              "sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest(),
                              "thresholds_tuned_on": evaluation["config"].get("tune_on", ""),
                              "tuning": evaluation.get("tuned")}  # fmt: skip
    pt = save_checkpoint(model, out, extra=extra)
    return pt, export_onnx(model, pt.with_suffix(".onnx"))

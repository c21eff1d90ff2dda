"""Score a checkpoint on the held-out splits of a shard set, in parallel Ray tasks.

Each clip's mixture (equal-weight mean of its stems) is transcribed with K given (the true number of
parts) or estimated, and scored with every metric of metrics.py against the clip's notes. Figures are
averaged per file, then grouped by set and by K (`eval/{set}/{k}mix/{metric}`), as the paper reports
them. The thresholds used are part of the result: every report states them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from mixscribe.errors import MixscribeError

K_MODES = ("given", "auto")


@dataclass(frozen=True)
class EvalConfig:
    sets: tuple[str, ...] = ("valid", "unseen-soundfont", "unseen-family")
    k_mode: str = "given"
    max_clips_per_set: int = 0  # 0: all
    onset_threshold: float = 0.5
    frame_threshold: float = 0.3
    clips_per_task: int = 4
    task_cpus: float = 0.5
    tune_on: str = "valid"  # set whose clips tune the thresholds before any scoring; "" keeps them fixed

    def validate(self) -> None:
        from mixscribe.config import _check

        _check(self.k_mode in K_MODES, "evaluate.k_mode", f"must be one of {list(K_MODES)}")
        _check(len(self.sets) >= 1, "evaluate.sets", "needs at least one set")
        _check(0 < self.onset_threshold < 1 and 0 < self.frame_threshold < 1, "evaluate.onset_threshold",
               "thresholds must lie in (0, 1)")  # fmt: skip
        _check(self.clips_per_task >= 1 and self.task_cpus > 0, "evaluate.clips_per_task", "must be >= 1")


@dataclass
class EvalResult:
    config: EvalConfig  # with the thresholds actually used (tuned ones when tune_on is set)
    rows: list[dict] = field(default_factory=list)  # one per clip: set, clip, k, metrics
    tuned: object = None  # thresholds.Tuned when tuned

    def summary(self) -> dict[str, float]:
        """Means per set and K, and per set over all K: {'eval/unseen-family/2mix/note_f1': ...}."""
        out: dict[str, float] = {}
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in self.rows:
            groups.setdefault((r["set"], f"{r['k']}mix"), []).append(r)
            groups.setdefault((r["set"], "all"), []).append(r)
        for (name, kmix), rows in sorted(groups.items()):
            for metric in METRICS:
                out[f"eval/{name}/{kmix}/{metric}"] = float(np.mean([r[metric] for r in rows]))
            out[f"eval/{name}/{kmix}/clips"] = float(len(rows))
        return out

    def markdown(self) -> str:
        s = self.summary()
        how = (f"tuned on `{self.config.tune_on}` ({self.tuned.clips} clips) before any set was scored"
               if self.tuned else "fixed (not tuned)")  # fmt: skip
        lines = [f"Thresholds: onset {self.config.onset_threshold}, frame {self.config.frame_threshold}, {how}; "
                 f"K {self.config.k_mode}.", "",
                 "| set | mix | clips | " + " | ".join(TABLE_METRICS) + " |",
                 "|---|---|---|" + "---|" * len(TABLE_METRICS)]  # fmt: skip
        keys = sorted({k.rsplit("/", 1)[0] for k in s})
        for key in keys:
            _, name, kmix = key.split("/")
            cells = " | ".join(f"{100 * s[f'{key}/{m}']:.1f}" for m in TABLE_METRICS)
            label = f"{name} (tuning set)" if self.tuned and name == self.config.tune_on else name
            lines.append(f"| {label} | {kmix} | {int(s[f'{key}/clips'])} | {cells} |")
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        if self.rows:
            writer = csv.DictWriter(buf, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        return buf.getvalue()


METRICS = ("frame_precision", "frame_recall", "frame_f1", "frame_accuracy", "note_precision", "note_recall",
           "note_f1", "note_offset_f1", "sep_note_f1", "sep_frame_f1", "cluster_purity", "cluster_ari",
           "k_correct", "k_est")  # fmt: skip
TABLE_METRICS = ("frame_f1", "note_f1", "sep_note_f1", "cluster_purity", "k_correct")


def _score_clips(checkpoint: bytes, table, cfg_dict: dict) -> list[dict]:
    """Ray task: transcribe and score a few clips (one model load per task)."""
    import torch

    from mixscribe.config import from_dict
    from mixscribe.evaluate.decode import DecodeParams
    from mixscribe.evaluate.metrics import clip_scores
    from mixscribe.inference import decode, run_model
    from mixscribe.schema import table_to_clips

    torch.set_num_threads(1)
    cfg = from_dict(EvalConfig, cfg_dict)
    model = _load_blob(checkpoint)
    params = DecodeParams(onset_threshold=cfg.onset_threshold, frame_threshold=cfg.frame_threshold)
    rows = []
    for clip in table_to_clips(table):
        k_ref = len({n.stem for n in clip.notes}) or 1
        frame, onset, emb = run_model(model, clip.mix(), with_embedding=True)
        est, k_est = decode(frame, onset, emb, k_ref if cfg.k_mode == "given" else None, params, strict_k=False)
        scores = clip_scores(clip.notes, est, frame > cfg.frame_threshold, k_ref, k_est)
        rows.append({"set": clip.split, "clip": clip.id, "k": k_ref, **{m: scores[m] for m in METRICS}})
    return rows


def _tuning_clips(checkpoint: bytes, table) -> list:
    """Ray task: posteriorgrams and true notes of validation clips, for threshold tuning."""
    import torch

    from mixscribe.evaluate.thresholds import TuningClip
    from mixscribe.inference import run_model
    from mixscribe.schema import table_to_clips

    torch.set_num_threads(1)
    model = _load_blob(checkpoint)
    out = []
    for clip in table_to_clips(table):
        frame, onset, _ = run_model(model, clip.mix(), with_embedding=False)
        out.append(TuningClip(frame, onset, clip.notes))
    return out


def _load_blob(checkpoint: bytes):
    import tempfile

    from mixscribe.model import load_model

    with tempfile.NamedTemporaryFile(suffix=".pt") as f:
        f.write(checkpoint)
        f.flush()
        return load_model(f.name)


def _set_tables(shards: str, cfg: EvalConfig) -> dict:
    import pyarrow.compute as pc

    from mixscribe.synth.pipeline import read_clips_table, read_manifest

    _, root, manifest = read_manifest(shards)
    have = manifest.get("rows_per_split", {})
    unknown = [s for s in (*cfg.sets, *([cfg.tune_on] if cfg.tune_on else [])) if s not in have]
    if unknown:
        raise MixscribeError(f"{root}: no set {unknown[0]!r} in this shard set (it has {sorted(have)})")
    table = read_clips_table(shards)
    out = {}
    for name in dict.fromkeys((*([cfg.tune_on] if cfg.tune_on else []), *cfg.sets)):
        part = table.filter(pc.equal(table["split"], name))
        part = part.filter(pc.greater(pc.list_value_length(part["notes"]), 0))  # a clip without notes scores nothing
        if part.num_rows == 0:
            raise MixscribeError(f"{root}: set {name!r} has no clip with ground-truth notes")
        out[name] = part
    return out


def evaluate_checkpoint(checkpoint: str, shards: str, cfg: EvalConfig = EvalConfig()) -> EvalResult:
    """Every clip of every requested set, scored in parallel Ray tasks; errors come before any work."""
    import ray

    from mixscribe.config import to_dict
    from mixscribe.model import load_model
    from mixscribe.raycluster import init_ray, unwrap_ray_error

    cfg.validate()
    load_model(checkpoint)  # a checkpoint that does not rebuild its model fails here, not in a task
    with open(checkpoint, "rb") as f:
        blob = f.read()
    tables = _set_tables(shards, cfg)
    init_ray()
    ref = ray.put(blob)
    tuned = None
    try:
        if cfg.tune_on:  # the whole tuning set; max_clips_per_set limits only what is scored
            tuned = _tune(ref, tables.pop(cfg.tune_on) if cfg.tune_on not in cfg.sets else tables[cfg.tune_on], cfg)
            cfg = dataclasses.replace(cfg, onset_threshold=tuned.onset_threshold, frame_threshold=tuned.frame_threshold)
        if cfg.max_clips_per_set:
            tables = {name: t.slice(0, cfg.max_clips_per_set) for name, t in tables.items()}
        task = ray.remote(num_cpus=cfg.task_cpus)(_score_clips)
        futures = [task.remote(ref, t.slice(i, cfg.clips_per_task), to_dict(cfg))
                   for t in tables.values() for i in range(0, t.num_rows, cfg.clips_per_task)]  # fmt: skip
        rows = [r for chunk in ray.get(futures) for r in chunk]
    except Exception as exc:
        raise unwrap_ray_error(exc) from None
    return EvalResult(cfg, rows, tuned)


def _tune(ref, table, cfg: EvalConfig):
    """Thresholds from the tuning set only: its clips are the only ones whose outputs are computed here."""
    import ray

    from mixscribe.evaluate.thresholds import tune_thresholds

    task = ray.remote(num_cpus=cfg.task_cpus)(_tuning_clips)
    futures = [task.remote(ref, table.slice(i, cfg.clips_per_task)) for i in range(0, table.num_rows, cfg.clips_per_task)]
    return tune_thresholds([c for chunk in ray.get(futures) for c in chunk])


def write_report(result: EvalResult, out_dir: str) -> list[str]:
    """summary.md, clips.csv and metrics.json in out_dir, each written atomically."""
    import json

    from mixscribe.fsio import atomic_local_write

    os.makedirs(out_dir, exist_ok=True)
    files = {
        "summary.md": "# Evaluation\n\n" + result.markdown(),
        "clips.csv": result.csv(),
        "metrics.json": json.dumps({"config": asdict(result.config), "summary": result.summary(),
                                    "tuned": asdict(result.tuned) if result.tuned else None}, indent=1),  # fmt: skip
    }
    paths = []
    for name, text in files.items():
        path = os.path.join(out_dir, name)
        atomic_local_write(path, lambda tmp, text=text: tmp.write_text(text))
        paths.append(path)
    return paths

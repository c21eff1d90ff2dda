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

from mixscribe.config import SelfChecking
from mixscribe.errors import MixscribeError
from mixscribe.transcription.decode import DecodeParams

K_MODES = ("given", "auto")


@dataclass(frozen=True)
class EvalConfig(SelfChecking):
    """How a checkpoint is scored. What decoding it scores with is one DecodeParams, the same settings
    `transcribe` uses and a packaged model stores: tuning replaces the fields it tunes."""

    sets: tuple[str, ...] = ("valid", "unseen-soundfont", "unseen-family")
    k_mode: str = "given"
    max_clips_per_set: int = 0  # 0: all
    clips_per_task: int = 4
    task_cpus: float = 0.5
    tune_on: str = "valid"  # set whose clips tune the thresholds before any scoring; "" keeps them fixed
    tune_note_shape: bool = True  # tune the note shape too (thresholds.SHAPE_GRID) when tuning
    tune_clustering: bool = True  # tune the clustering too (thresholds.CLUSTER_GRID) when tuning
    backend: str = "float32"  # the model's arithmetic (inference.BACKENDS); "auto" scores what transcribe runs
    decode: DecodeParams = DecodeParams()  # thresholds, note shape, clustering, K's sharpness and classifier

    def validate(self) -> None:
        from mixscribe.config import check_field
        from mixscribe.transcription.inference import BACKENDS

        check_field(self.k_mode in K_MODES, "evaluate.k_mode", f"must be one of {list(K_MODES)}")
        check_field(len(self.sets) >= 1, "evaluate.sets", "needs at least one set")
        check_field(self.clips_per_task >= 1 and self.task_cpus > 0, "evaluate.clips_per_task", "must be >= 1")
        check_field(self.backend in BACKENDS, "evaluate.backend", f"must be one of {list(BACKENDS)}")

    def with_decode(self, **changes) -> EvalConfig:
        """This config with some decoding settings replaced (tuned or taken from a packaged model)."""
        return dataclasses.replace(self, decode=dataclasses.replace(self.decode, **changes))


# Decoding settings a preset's evaluate: section once held directly; named in the error that points to
# evaluate.decode:, and kept in the form a pipeline's config digest takes (pipeline.Plan.digest).
FLAT_DECODE_FIELDS = ("onset_threshold", "frame_threshold", "k_sharpness", "k_model", "min_note_frames",
                      "energy_tolerance", "infer_onsets", "pool_power", "cluster_sharpness")  # fmt: skip


def load_eval_config(spec: str | dict) -> EvalConfig:
    """A preset's evaluate: section as an EvalConfig (checked as it is built)."""
    from mixscribe.config import ConfigError, load_preset, load_section

    data = load_preset(spec) if isinstance(spec, str) else spec
    flat = [k for k in data.get("evaluate") or {} if k in FLAT_DECODE_FIELDS]
    if flat:
        raise ConfigError(f"config field evaluate.{flat[0]}: decoding settings live under evaluate.decode: "
                          f"(evaluate.decode.{flat[0]})")  # fmt: skip
    return load_section(data, "evaluate", EvalConfig)


@dataclass
class EvalResult:
    config: EvalConfig  # with the thresholds actually used (tuned ones when tune_on is set)
    rows: list[dict] = field(default_factory=list)  # one per clip: set, clip, k, metrics
    tuned: object = None  # thresholds.Tuned when tuned
    extras: list[dict] = field(default_factory=list)  # per clip: notes and matched-note embeddings, for figures
    label: str = ""  # what was evaluated, when not a mixscribe checkpoint

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

    def pair_summary(self) -> dict[str, float]:
        """Means over each set's 2-part clips per pair of instrument families, e.g.
        'eval/valid/pair/reed_and_strings/sep_note_f1': which timbres the model tells apart, and whether
        register did it (register_est against register_ref)."""
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in self.rows:
            if r["k"] == 2 and r.get("parts"):
                groups.setdefault((r["set"], r["parts"]), []).append(r)
        out: dict[str, float] = {}
        for (name, parts), rows in sorted(groups.items()):
            pair = parts.replace("+", "_and_")  # MLflow metric names take no '+'
            for metric in PAIR_METRICS:
                out[f"eval/{name}/pair/{pair}/{metric}"] = float(np.mean([r[metric] for r in rows]))
            out[f"eval/{name}/pair/{pair}/clips"] = float(len(rows))
        return out

    def pair_markdown(self) -> str:
        """The per-pair table, worst separated first; empty without 2-part clips."""
        s = self.pair_summary()
        keys = sorted({k.rsplit("/", 1)[0] for k in s}, key=lambda k: (k.split("/")[1], s[f"{k}/sep_note_f1"]))
        if not keys:
            return ""
        lines = ["Per pair of instrument families (GM), 2-part clips; register_est/register_ref: the share of "
                 "notes that one pitch threshold puts in their estimated track / true part (est well above ref: "
                 "the tracks follow register, not timbre).", "",
                 "| set | pair | clips | " + " | ".join(PAIR_METRICS) + " |", "|---|---|---|" + "---|" * len(PAIR_METRICS)]  # fmt: skip
        for key in keys:
            _, name, _, pair = key.split("/")
            parts = pair.replace("_and_", "+")
            cells = " | ".join(f"{100 * s[f'{key}/{m}']:.1f}" for m in PAIR_METRICS)
            lines.append(f"| {name} | {parts} | {int(s[f'{key}/clips'])} | {cells} |")
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        s = self.summary()
        how = (f"tuned on `{self.config.tune_on}` ({self.tuned.clips} clips) before any set was scored"
               if self.tuned else "fixed (not tuned)")  # fmt: skip
        k_how = self.config.k_mode
        if self.config.k_mode == "auto":
            method = "K classifier" if self.config.decode.k_model else f"eigengap, sharpness {self.config.decode.k_sharpness}"
            acc = self.tuned.k_accuracy if self.tuned else None
            if acc is not None:
                method += f", {100 * acc:.1f} % right on the tuning set"
                method += ", 5-fold cross-validated by clip" if self.config.decode.k_model else ""
            k_how += f" ({method})"
        c = self.config.decode
        shape = (f"notes longer than {c.min_note_frames:g} frames, gaps up to {c.energy_tolerance} frames, onsets "
                 + ("inferred from Y_F too" if c.infer_onsets else "from Y_O only"))  # fmt: skip
        clustering = f"notes clustered on embeddings pooled with Y_F^{c.pool_power:g}, affinity exp({c.cluster_sharpness:g} cos)"
        decoding = f"Thresholds: onset {c.onset_threshold}, frame {c.frame_threshold} ({shape}; {clustering}), {how}"
        if self.config.backend != "float32":
            decoding += f"; model run with the {self.config.backend} backend"
        if self.label:  # another transcriber, decoded its own way: none of the above applies
            decoding = self.label
        lines = [f"{decoding}; K {k_how}.", "",
                 "| set | mix | clips | " + " | ".join(TABLE_METRICS) + " |",
                 "|---|---|---|" + "---|" * len(TABLE_METRICS)]  # fmt: skip
        keys = sorted({k.rsplit("/", 1)[0] for k in s})
        for key in keys:
            _, name, kmix = key.split("/")
            cells = " | ".join(f"{100 * s[f'{key}/{m}']:.1f}" for m in TABLE_METRICS)
            label = f"{name} (tuning set)" if self.tuned and name == self.config.tune_on else name
            lines.append(f"| {label} | {kmix} | {int(s[f'{key}/clips'])} | {cells} |")
        pairs = self.pair_markdown()
        return "\n".join(lines) + "\n" + ("\n" + pairs if pairs else "")

    def csv(self) -> str:
        buf = io.StringIO()
        if self.rows:
            writer = csv.DictWriter(buf, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        return buf.getvalue()


METRICS = ("frame_precision", "frame_recall", "frame_f1", "frame_accuracy", "note_precision", "note_recall",
           "note_f1", "note_offset_f1", "sep_note_f1", "sep_frame_f1", "cluster_purity", "cluster_ari",
           "k_correct", "k_est", "register_est", "register_ref")  # fmt: skip
TABLE_METRICS = ("frame_f1", "note_f1", "sep_note_f1", "cluster_purity", "k_correct", "register_est", "register_ref")
PAIR_METRICS = ("sep_note_f1", "cluster_purity", "register_est", "register_ref")


def part_families(clip) -> str:
    """The GM families of the parts that play in the clip, sorted and joined: 'reed+strings'."""
    return "+".join(sorted(clip.stems[i].gm_family for i in {n.stem for n in clip.notes}))


def _score_clips(checkpoint: bytes, table, cfg_dict: dict) -> tuple[list[dict], list[dict]]:
    """Ray task: transcribe and score a few clips (one model load per task); returns the score rows and
    what the report's figures need."""
    import torch

    from mixscribe.config import from_dict
    from mixscribe.evaluate.metrics import clip_scores
    from mixscribe.transcription.inference import note_tracks
    from mixscribe.schema import table_to_clips

    torch.set_num_threads(1)
    cfg = from_dict(EvalConfig, cfg_dict)
    model = _load_blob(checkpoint)
    params = cfg.decode
    rows, extras = [], []
    for clip in table_to_clips(table):
        k_ref = len({n.stem for n in clip.notes}) or 1
        frame, raw, pooled = _clip_notes(model, clip, params, [params.pool_power], cfg.backend)
        u = pooled[params.pool_power]
        est, k_est = note_tracks(raw, u, k_ref if cfg.k_mode == "given" else None, params, frame.shape[1])
        scores = clip_scores(clip.notes, est, frame > params.frame_threshold, k_ref, k_est)
        rows.append({"set": clip.split, "clip": clip.id, "k": k_ref, "parts": part_families(clip),
                     **{m: scores[m] for m in METRICS}})  # fmt: skip
        extras.append({"set": clip.split, "clip": clip.id, "ref": clip.notes, "est": est,
                       **_matched_embeddings(clip, est, u)})  # fmt: skip
    return rows, extras


def _matched_embeddings(clip, est: list, u, limit: int = 64) -> dict:
    """Embeddings of the estimated notes that hit a reference note, labelled with that note's true
    instrument (its GM family): what the t-SNE figure shows."""
    from mixscribe.evaluate.metrics import matched_pairs

    if u is None or not est or not clip.notes:
        return {"emb": np.zeros((0, 0), np.float32), "labels": []}
    pairs = matched_pairs(clip.notes, est)[:limit]
    return {"emb": np.asarray([u[j] for _, j in pairs], np.float32),
            "labels": [clip.stems[clip.notes[i].stem].gm_family for i, _ in pairs]}  # fmt: skip


def _tuning_clips(checkpoint: bytes, table, backend: str = "float32") -> list:
    """Ray task: posteriorgrams and true notes of validation clips, for threshold tuning."""
    import torch

    from mixscribe.evaluate.thresholds import TuningClip
    from mixscribe.transcription.inference import run_model
    from mixscribe.schema import table_to_clips

    torch.set_num_threads(1)
    model = _load_blob(checkpoint)
    out = []
    for clip in table_to_clips(table):
        frame, onset, _ = run_model(model, clip.mix(), with_embedding=False, backend=backend)
        out.append(TuningClip(frame, onset, clip.notes))
    return out


def _load_blob(checkpoint: bytes):
    import tempfile

    from mixscribe.model import load_model

    with tempfile.NamedTemporaryFile(suffix=".pt") as f:
        f.write(checkpoint)
        f.flush()
        return load_model(f.name)


def set_tables(shards: str, names) -> dict:
    """The clips with ground truth of each named split; unknown or empty sets are errors before any work."""
    import pyarrow.compute as pc

    from mixscribe.shards import ShardSet

    shard_set = ShardSet.open(shards)
    root, have = shard_set.root, shard_set.manifest.rows_per_split
    unknown = [s for s in names if s not in have]
    if unknown:
        raise MixscribeError(f"{root}: no set {unknown[0]!r} in this shard set (it has {sorted(have)})")
    table = shard_set.read_table(splits=tuple(dict.fromkeys(names)))
    out = {}
    for name in dict.fromkeys(names):
        part = table.filter(pc.equal(table["split"], name))
        part = part.filter(pc.greater(pc.list_value_length(part["notes"]), 0))  # a clip without notes scores nothing
        if part.num_rows == 0:
            raise MixscribeError(f"{root}: set {name!r} has no clip with ground-truth notes")
        out[name] = part
    return out


def stored_decoding(cfg: EvalConfig, checkpoint: str, explicit: set[str]) -> tuple[EvalConfig, list[str]]:
    """With fixed thresholds (no tuning set), score a packaged model the way it transcribes: every
    decoding field its checkpoint stores and the config does not set (`explicit`: the names under the
    preset's evaluate.decode) is taken from the checkpoint. Returns the config and the fields taken."""
    from mixscribe.transcription.inference import load_transcriber

    if cfg.tune_on:  # tuning decides every field: nothing to read
        return cfg, []
    stored = load_transcriber(checkpoint).decode_params
    if stored is None:
        return cfg, []
    taken = [f.name for f in dataclasses.fields(stored) if f.name not in explicit
             and getattr(stored, f.name) != getattr(cfg.decode, f.name)]  # fmt: skip
    return cfg.with_decode(**{name: getattr(stored, name) for name in taken}), taken


def evaluate_checkpoint(checkpoint: str, shards: str, cfg: EvalConfig = EvalConfig(),
                        tune_shards: str | None = None) -> EvalResult:  # fmt: skip
    """Every clip of every requested set, scored in parallel Ray tasks; errors come before any work.
    The tuning set (cfg.tune_on) is read from tune_shards when given (e.g. the training shard set's
    `valid` split when scoring chorales), else from shards."""
    from mixscribe.config import to_dict
    from mixscribe.transcription.inference import resolve_backend
    from mixscribe.model import load_model
    from mixscribe.raycluster import import_ray, init_ray, unwrap_ray_error

    ray = import_ray()

    cfg = dataclasses.replace(cfg, backend=resolve_backend(cfg.backend))  # the report names what ran: bf16, not auto
    load_model(checkpoint)  # a checkpoint that does not rebuild its model fails here, not in a task
    with open(checkpoint, "rb") as f:
        blob = f.read()
    tables = set_tables(shards, cfg.sets)
    tune_table = None
    if cfg.tune_on:  # the whole tuning set; max_clips_per_set limits only what is scored
        tune_table = set_tables(tune_shards or shards, [cfg.tune_on])[cfg.tune_on]
    init_ray()
    ref = ray.put(blob)
    tuned = None
    try:
        if tune_table is not None:
            tuned = _tune(ref, tune_table, cfg)
            cfg = cfg.with_decode(onset_threshold=tuned.onset_threshold, frame_threshold=tuned.frame_threshold,
                                  **tuned.note_shape())  # fmt: skip
            if cfg.tune_clustering or cfg.k_mode == "auto":  # both read the tuning clips' note embeddings
                clips = [c for chunk in _map_chunks(_cluster_tuning_clips, ref, [tune_table], cfg, to_dict(cfg))
                         for c in chunk]  # fmt: skip
                if cfg.tune_clustering:
                    tuned, cfg = _tune_clustering(clips, cfg, tuned)
                if cfg.k_mode == "auto":
                    tuned, k_model = _tune_k(clips, cfg, tuned)
                    cfg = cfg.with_decode(k_sharpness=tuned.k_sharpness, k_model=k_model)
        if cfg.max_clips_per_set:
            tables = {name: t.slice(0, cfg.max_clips_per_set) for name, t in tables.items()}
        done = _map_chunks(_score_clips, ref, list(tables.values()), cfg, to_dict(cfg))
    except Exception as exc:
        raise unwrap_ray_error(exc) from None
    return EvalResult(cfg, [r for rows, _ in done for r in rows], tuned, [e for _, extras in done for e in extras])


def _clip_notes(model, clip, params, powers, backend: str = "float32"):
    """A clip's mixture through the model, once: Y_F, its notes, and their embeddings pooled with Y_F^p
    for each p of powers ({p: [n, D]}, None where the clip has no note)."""
    from mixscribe.transcription.decode import create_notes, pool_note_embeddings
    from mixscribe.transcription.inference import run_model

    frame, onset, emb = run_model(model, clip.mix(), with_embedding=True, backend=backend)
    raw = create_notes(frame, onset, params)
    return frame, raw, {p: pool_note_embeddings(raw, frame, emb, p) if raw else None for p in powers}


def _cluster_tuning_clips(checkpoint: bytes, table, cfg_dict: dict) -> list:
    """Ray task: each tuning clip's notes at the tuned decoding, their embeddings pooled at every power
    the clustering search tries, its true notes and length (thresholds.ClusterClip)."""
    import torch

    from mixscribe.config import from_dict
    from mixscribe.evaluate.thresholds import CLUSTER_GRID, ClusterClip
    from mixscribe.schema import table_to_clips

    torch.set_num_threads(1)
    cfg = from_dict(EvalConfig, cfg_dict)
    params = cfg.decode
    powers = sorted({params.pool_power, *dict(CLUSTER_GRID)["pool_power"]})
    model = _load_blob(checkpoint)
    out = []
    for clip in table_to_clips(table):
        frame, raw, pooled = _clip_notes(model, clip, params, powers, cfg.backend)
        out.append(ClusterClip(raw, pooled, clip.notes, frame.shape[1]))
    return out


def _tune_clustering(clips: list, cfg: EvalConfig, tuned):
    """The pooling power and affinity sharpness for separated note F (true K) on the tuning clips."""
    from mixscribe.evaluate.thresholds import CLUSTER_FIELDS, tune_clustering

    best = tune_clustering(clips)
    if not best:  # no tuning clip of more than one instrument: the spec's clustering stays
        return tuned, cfg
    return dataclasses.replace(tuned, **best), cfg.with_decode(**{k: best[k] for k in CLUSTER_FIELDS})


def _tune_k(clips: list, cfg: EvalConfig, tuned):
    """The K classifier, fitted on the tuning set's notes at the decoding just tuned (its accuracy
    cross-validated there), and the eigengap's sharpness as the fallback when it cannot be fitted."""
    from mixscribe.transcription.kestimate import fit_k_model, note_spans
    from mixscribe.evaluate.thresholds import tune_k_sharpness

    clips = [c for c in clips if c.raw]
    sharpness, eig_accuracy = tune_k_sharpness([(c.pooled[cfg.decode.pool_power], c.k) for c in clips])
    k_model, accuracy = fit_k_model([(note_spans(c.raw), c.n_frames, c.k) for c in clips])
    if k_model is None:
        accuracy = eig_accuracy
    return dataclasses.replace(tuned, k_sharpness=sharpness, k_accuracy=accuracy,
                               k_eigengap_accuracy=eig_accuracy), k_model  # fmt: skip


def _tune(ref, table, cfg: EvalConfig):
    """Thresholds from the tuning set only: its clips are the only ones whose outputs are computed here."""
    from mixscribe.evaluate.thresholds import tune_thresholds

    return tune_thresholds([c for chunk in _map_chunks(_tuning_clips, ref, [table], cfg, cfg.backend) for c in chunk],
                           note_shape=cfg.tune_note_shape)  # fmt: skip


def _map_chunks(fn, ref, tables: list, cfg: EvalConfig, *args) -> list:
    """fn(checkpoint, chunk, *args) as one Ray task per cfg.clips_per_task clips of each table; results
    in table and clip order."""
    import ray
    from tqdm import tqdm

    from mixscribe.console import bar_interval

    task = ray.remote(num_cpus=cfg.task_cpus)(fn)
    sizes, refs = {}, []
    for t in tables:
        for i in range(0, t.num_rows, cfg.clips_per_task):
            chunk = t.slice(i, cfg.clips_per_task)
            refs.append(task.remote(ref, chunk, *args))
            sizes[refs[-1]] = chunk.num_rows
    desc = {"_score_clips": "scoring"}.get(fn.__name__, "tuning")
    pending = list(refs)
    with tqdm(total=sum(sizes.values()), unit="clip", desc=desc, mininterval=bar_interval()) as bar:
        while pending:  # the bar moves as chunks finish; results stay in table and clip order
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(sizes[done[0]])
    return ray.get(refs)


# An evaluation report's files, named once: studies and model packaging read them back.
REPORT_SUMMARY, REPORT_CLIPS, REPORT_METRICS = "summary.md", "clips.csv", "metrics.json"


def write_report(result: EvalResult, out_dir: str) -> list[str]:
    """summary.md, clips.csv, metrics.json and the figures in out_dir, each written atomically."""
    import json

    from mixscribe.fsio import atomic_local_write

    os.makedirs(out_dir, exist_ok=True)
    figures = write_figures(result, out_dir)
    listing = "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in figures)
    files = {
        REPORT_SUMMARY: "# Evaluation\n\n" + result.markdown() + ("\n" + listing + "\n" if listing else ""),
        REPORT_CLIPS: result.csv(),
        REPORT_METRICS: json.dumps({"config": asdict(result.config), "summary": result.summary() | result.pair_summary(),
                                    "tuned": asdict(result.tuned) if result.tuned else None}, indent=1),  # fmt: skip
    }
    paths = []
    for name, text in files.items():
        path = os.path.join(out_dir, name)
        atomic_local_write(path, lambda tmp, text=text: tmp.write_text(text))
        paths.append(path)
    return paths + figures


def write_figures(result: EvalResult, out_dir: str, max_points: int = 2000) -> list[str]:
    """Bars per set, sep. note F per K, t-SNE of matched note embeddings, best and worst clips."""
    from pathlib import Path

    from mixscribe.evaluate import plots

    if not result.rows:
        return []
    out = Path(out_dir)
    summary = result.summary()
    paths = [plots.bars_per_set(summary, out / "bars_per_set.png"), plots.curves_per_k(summary, out / "per_k.png")]
    if pairs := result.pair_summary():
        paths.append(plots.register_per_pair(pairs, out / "register_per_pair.png"))
    emb = [e for e in result.extras if len(e["labels"])]
    if emb:
        vectors = np.concatenate([e["emb"] for e in emb])
        labels = [lab for e in emb for lab in e["labels"]]
        keep = np.random.default_rng(0).permutation(len(labels))[:max_points]
        paths.append(plots.tsne_embeddings(vectors[keep], [labels[i] for i in keep], out / "tsne_embeddings.png"))
    ranked = sorted(zip(result.rows, result.extras), key=lambda re: re[0]["sep_note_f1"])
    for tag, (row, extra) in (("worst", ranked[0]), ("best", ranked[-1])) if ranked else ():
        title = f"{tag}: {row['set']} {row['clip']} (K={row['k']}, separated note F {100 * row['sep_note_f1']:.1f} %)"
        paths.append(plots.piano_roll(extra["ref"], extra["est"], title, out / f"clip_{tag}.png"))
    return [str(p) for p in paths]

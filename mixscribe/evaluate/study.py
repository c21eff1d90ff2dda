"""`mixscribe study`: SoundFont-generalisation studies, e.g. leave one SoundFont family out.

Each fold is a whole pipeline (synth -> train -> evaluate) whose declared `unseen-soundfont` split is one
family, nested under the study's MLflow run; the study ends in a generalisation matrix (held-out family
x evaluation set) with the seen-vs-unseen gap per fold, as a table, CSV and heat map. With `arms`
(configurations to compare, e.g. with and without the procedural family) every arm runs on every
held-out family and `arms.md` gives each arm's figures and their change from the first arm. Re-running the
same study resumes it: finished folds are skipped by the pipeline's own bookkeeping.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from mixscribe.config import SelfChecking
from mixscribe.errors import MixscribeError
from mixscribe.evaluate.runner import REPORT_CLIPS, REPORT_METRICS, REPORT_SUMMARY
from mixscribe.pipeline import REPORT_DIR

SEEN, UNSEEN = "valid", "unseen-soundfont"


@dataclass(frozen=True)
class StudyConfig(SelfChecking):
    name: str = "loo"
    base: str = "demo"  # the preset (or YAML) every fold starts from
    holdout_families: tuple[str, ...] = ("fluidr3", "tim", "opl3")
    experiment: str = ""  # default: study-NAME
    metric: str = "note_f1"  # the matrix's figure, averaged over K ("all")
    overrides: dict = field(default_factory=dict)  # deep-merged into every fold's config
    # Configurations to compare, each deep-merged over the overrides and run on every held-out family
    # (e.g. {without: {}, with: {synth: {procedural: {...}}}}); the first is the reference of the deltas.
    arms: dict[str, dict] = field(default_factory=dict)
    compare_metrics: tuple[str, ...] = ("note_f1", "sep_note_f1")  # the arm comparison's figures
    # Arm -> the arm it adds one change to (e.g. {whole-range-varied: whole-range}): its change from that
    # arm is reported too, as what the addition is worth where the first arm is not the one it extends.
    builds_on: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        from mixscribe.config import check_field

        check_field(bool(self.name) and "/" not in self.name, "study.name", "needs a name without '/'")
        check_field(len(self.holdout_families) >= 1, "study.holdout_families", "needs at least one family")
        bad = [a for a in self.arms if not a or not all(c.isalnum() or c in "-_" for c in a)]
        check_field(not bad, "study.arms", f"arm names need letters, digits, - or _ only, got {bad}")
        check_field(len(self.arms) != 1, "study.arms", "needs at least two arms to compare (or none)")
        unknown = sorted({a for pair in self.builds_on.items() for a in pair} - set(self.arms))
        check_field(not unknown, "study.builds_on", f"names arms the study does not have: {unknown}")
        same = [a for a, b in self.builds_on.items() if a == b]
        check_field(not same, "study.builds_on", f"an arm cannot build on itself: {same}")

    def comparisons(self) -> list[tuple[str, str]]:
        """(arm, reference) of every change reported: each arm from the first, then each arm from the
        one it builds on where that is another."""
        arms = list(self.arms)
        return [(a, arms[0]) for a in arms[1:]] + [(a, b) for a, b in self.builds_on.items() if b != arms[0]]

    def folds(self) -> list[tuple[str, str]]:
        """(arm, held-out family) of every pipeline; arm "" when the study has no arms. Family by family,
        every arm in turn: a study stopped part way (it resumes) has compared its arms on whole folds."""
        return [(arm, fam) for fam in self.holdout_families for arm in (list(self.arms) or [""])]


def selected_folds(cfg: StudyConfig, arms: list[str] | None = None,
                   families: list[str] | None = None) -> list[tuple[str, str]]:  # fmt: skip
    """The folds of some arms and held-out families only (every one where None), in the study's order:
    a study's folds can take longer than one machine is held, and the ones that decide come first. A name
    the study does not have is an error naming the flag, before any work."""
    known = {"--arms": list(cfg.arms), "--families": list(cfg.holdout_families)}
    for flag, asked in (("--arms", arms), ("--families", families)):
        unknown = [x for x in asked or () if x not in known[flag]]
        if unknown:
            has = ", ".join(known[flag]) or "no arms"
            raise MixscribeError(f"{flag}: {', '.join(unknown)} not in study {cfg.name!r} (it has {has})")
    return [(a, f) for a, f in cfg.folds() if (not arms or a in arms) and (not families or f in families)]


def finished_fold_metrics(root: Path, name: str) -> dict[str, float] | None:
    """A finished pipeline's summary figures, read from its report (None when it has none), so that folds
    left out of this run still count in the matrix and the comparisons."""
    import json

    path = root / name / REPORT_DIR / REPORT_METRICS
    return json.loads(path.read_text())["summary"] if path.is_file() else None


def fold_label(arm: str, family: str) -> str:
    """A matrix row and MLflow key part: the family, or arm/family."""
    return f"{arm}/{family}" if arm else family


def load_study(path: str) -> StudyConfig:
    from mixscribe.config import load_preset, load_section

    data = load_preset(path)
    if "study" not in data:
        raise MixscribeError(f"{path}: no study: section")
    return load_section(data, "study", StudyConfig)


def fold_config(cfg: StudyConfig, family: str, arm: str = "") -> dict:
    """The base preset with the study's overrides, the arm's, this fold's held-out family and the
    study's experiment."""
    from mixscribe.config import load_preset, merge_sections

    fold = merge_sections(merge_sections(load_preset(cfg.base), cfg.overrides), cfg.arms.get(arm) or {})
    return merge_sections(fold, {"synth": {"splits": {"holdout_sf_family": family}},
                         "pipeline": {"experiment": cfg.experiment or f"study-{cfg.name}"}})  # fmt: skip


@dataclass
class Matrix:
    metric: str
    sets: list[str]
    rows: dict[str, dict[str, float]]  # held-out family -> set -> value

    def gap(self, family: str) -> float:
        r = self.rows[family]
        return r.get(SEEN, float("nan")) - r.get(UNSEEN, float("nan"))

    def rotation(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Per arm ("" without arms) and set: (mean over the held-out families, the largest distance of
        one family from that mean). Decisions read the mean; the spread says whether one fold is off."""
        groups: dict[str, list[dict[str, float]]] = {}
        for label, r in self.rows.items():
            groups.setdefault(label.rsplit("/", 1)[0] if "/" in label else "", []).append(r)
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for arm, rows in groups.items():
            out[arm] = {}
            for name in self.sets:
                values = [r[name] for r in rows if name in r]
                if values:
                    mean = sum(values) / len(values)
                    out[arm][name] = (mean, max(abs(v - mean) for v in values))
        return out

    def markdown(self) -> str:
        head = ["held-out family", *self.sets, "gap (seen - unseen SoundFont)"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for fam, r in self.rows.items():
            cells = [f"{100 * r[s]:.1f}" if s in r else "-" for s in self.sets]
            lines.append(f"| {fam} | " + " | ".join(cells) + f" | {100 * self.gap(fam):+.1f} |")
        for arm, figures in self.rotation().items():
            mean = [f"{100 * figures[s][0]:.1f}" if s in figures else "-" for s in self.sets]
            spread = [f"±{100 * figures[s][1]:.1f}" if s in figures else "-" for s in self.sets]
            gap = figures.get(SEEN, (float("nan"),))[0] - figures.get(UNSEEN, (float("nan"),))[0]
            lines.append(f"| mean over folds{' (' + arm + ')' if arm else ''} | " + " | ".join(mean) + f" | {100 * gap:+.1f} |")
            lines.append(f"| largest distance from the mean{' (' + arm + ')' if arm else ''} | " + " | ".join(spread) + " | |")
        return f"Generalisation matrix: {self.metric} (%), all K.\n\n" + "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["held_out_family", *self.sets, "gap"])
        for fam, r in self.rows.items():
            w.writerow([fam, *[r.get(s, "") for s in self.sets], self.gap(fam)])
        return buf.getvalue()


def matrix_from_metrics(fold_metrics: dict[str, dict[str, float]], metric: str) -> Matrix:
    """{family: pipeline summary metrics} -> the matrix of eval/{set}/all/{metric}."""
    rows = {}
    for fam, m in fold_metrics.items():
        rows[fam] = {k.split("/")[1]: v for k, v in m.items() if k.startswith("eval/") and k.endswith(f"/all/{metric}")}
    sets = sorted({s for r in rows.values() for s in r}, key=lambda s: (s != SEEN, s != UNSEEN, s))
    return Matrix(metric, sets, rows)


def _points(change: float) -> str:
    """A change of a fraction in signed points, one decimal; no "-0.0" for a change that rounds to nothing."""
    return f"{round(100 * change, 1) + 0.0:+.1f}"


def _changes_from(cfg: StudyConfig) -> str:
    """The references of a comparison's changes, in words: the first arm, and any arm another builds on."""
    first = next(iter(cfg.arms))
    return f"changes from `{first}`" + "".join(f", `{a}` also from `{b}`" for a, b in cfg.comparisons() if b != first)


def arm_comparison(cfg: StudyConfig, fold_metrics: dict[str, dict[str, float]]) -> str:
    """Markdown: per metric, held-out family and set, each arm's figure and its change from the first
    arm, then the same for the seen-vs-unseen gap. Arms not run on any family yet are left out and named
    (an arm added to a study must not hide the comparison of those already run)."""
    import dataclasses

    unrun = [a for a in cfg.arms if not any(fold_label(a, f) in fold_metrics for f in cfg.holdout_families)]
    note = f" Not run on any family yet, left out: {', '.join(unrun)}." if unrun else ""
    if len(cfg.arms) - len(unrun) < 2:
        return "Arm comparison: fewer than two arms have figures yet." + note + "\n"
    cfg = dataclasses.replace(cfg, arms={a: v for a, v in cfg.arms.items() if a not in unrun},
                              builds_on={a: b for a, b in cfg.builds_on.items() if a not in unrun and b not in unrun})  # fmt: skip
    arms = list(cfg.arms)
    families = [f for f in cfg.holdout_families if all(fold_label(a, f) in fold_metrics for a in arms)]
    if not families:
        return "Arm comparison: no held-out family has figures of every arm yet." + note + "\n"
    # Means over the same families for every arm, or a family one arm lacks would tilt the decision.
    fold_metrics = {fold_label(a, f): fold_metrics[fold_label(a, f)] for a in arms for f in families}
    pairs = cfg.comparisons()
    parts = [f"Arm comparison (all K; {_changes_from(cfg)}, in points; held-out families with every arm: "
             f"{', '.join(families)}).{note}\n"]
    for metric in cfg.compare_metrics:
        head = ["held-out family", "set", *arms, *[f"{a} - {b}" for a, b in pairs]]
        lines = [f"**{metric}** (%)\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for fam in families:
            matrices = {a: matrix_from_metrics({fam: fold_metrics[fold_label(a, fam)]}, metric) for a in arms}
            sets = matrices[arms[0]].sets
            for name in [*sets, "gap"]:
                values = {a: m.gap(fam) if name == "gap" else m.rows[fam].get(name, float("nan")) for a, m in matrices.items()}
                cells = [f"{100 * v:.1f}" for v in values.values()] + [_points(values[a] - values[b]) for a, b in pairs]
                label = "gap (seen - unseen SoundFont)" if name == "gap" else name
                lines.append(f"| {fam} | {label} | " + " | ".join(cells) + " |")
        means = matrix_from_metrics(fold_metrics, metric).rotation()
        for name in matrices[arms[0]].sets:
            values = {a: means[a].get(name, (float("nan"), 0.0))[0] for a in arms}
            cells = [f"{100 * v:.1f}" for v in values.values()] + [_points(values[a] - values[b]) for a, b in pairs]
            lines.append(f"| **mean over folds** | {name} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    parts.insert(1, decision(cfg, fold_metrics) + "\n")
    return "\n".join(parts)


def pipeline_name(cfg: StudyConfig, arm: str, family: str) -> str:
    return f"{cfg.name}-{arm}-holdout-{family}" if arm else f"{cfg.name}-holdout-{family}"


def read_clip_rows(root: Path, name: str) -> dict[tuple[str, str], dict[str, str]]:
    """A finished pipeline's per-clip figures (its report's clips.csv) by (set, clip); {} when not there."""
    path = root / name / REPORT_DIR / REPORT_CLIPS
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {(r["set"], r["clip"]): r for r in csv.DictReader(f)}


# Figures of how notes are split into instruments: a one-part clip has one track whatever the encoder
# does, so these compare arms on the clips of two or more parts only (else their zeros dilute a change).
SEPARATION_METRICS = ("sep_note_f1", "sep_frame_f1", "cluster_purity", "cluster_ari", "register_est", "register_ref")


def paired_difference(ref: dict, other: dict, metric: str, name: str) -> tuple[float, float, int]:
    """Mean of other - ref over the clips of set `name` both scored, its standard error, and the count:
    clip by clip, so the arms' common difficulty cancels and the error is that of the change itself.
    Separation figures count the clips of two or more parts only."""
    import numpy as np

    min_k = 2 if metric in SEPARATION_METRICS else 1
    keys = [k for k in ref if k[0] == name and k in other and ref[k].get(metric) and other[k].get(metric)
            and int(ref[k].get("k") or 1) >= min_k]  # fmt: skip
    d = np.array([float(other[k][metric]) - float(ref[k][metric]) for k in keys])
    if d.size == 0:
        return float("nan"), float("nan"), 0
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return float(d.mean()), se, int(d.size)


def _pooled(rows: dict, arm: str, folds: list[str]) -> dict:
    """One arm's clip rows of several folds, each clip keyed by its fold too (folds score other clips)."""
    return {(name, f"{fam}/{clip}"): r for fam in folds for (name, clip), r in rows[arm, fam].items()}


def _scored_audio(fold: dict):
    """The synth settings that shape the clips an evaluation scores: those that change training clips
    only (whole-range stems, timbre variation confined to `train`) left out, so arms that differ only
    in those are known to score the same audio."""
    import dataclasses

    from mixscribe.config import SynthConfig, TimbreConfig, load_section

    synth = load_section(fold, "synth", SynthConfig)
    timbre = synth.timbre if synth.timbre.prob > 0 and set(synth.timbre.splits) - {"train"} else TimbreConfig()
    return dataclasses.replace(synth, generator=dataclasses.replace(synth.generator, whole_range_prob=0.0),
                               timbre=timbre)  # fmt: skip


def paired_comparison(cfg: StudyConfig, root: Path) -> str:
    """Markdown: each arm's change from the first (and from the arm it builds on), clip by clip on the
    clips both scored, with its standard error, per held-out family and set and pooled over the folds done
    so far. The arms of a fold share their evaluation clips when their synth settings agree (same seeds,
    same audio); otherwise the pairing is by clip index only and the table says so. A fold counts once
    both arms of any comparison are done (a study stopped mid-fold still compares what it ran); arms and
    folds not yet run are listed."""
    import numpy as np

    arms, pairs = list(cfg.arms), cfg.comparisons()
    rows = {(a, f): read_clip_rows(root, pipeline_name(cfg, a, f)) for a in arms for f in cfg.holdout_families}
    done = [f for f in cfg.holdout_families if any(rows[a, f] and rows[b, f] for a, b in pairs)]
    same_audio = all(_scored_audio(fold_config(cfg, done[0], a)) == _scored_audio(fold_config(cfg, done[0], arms[0]))
                     for a in arms) if done else True  # fmt: skip
    missing = [f for f in cfg.holdout_families if f not in done]
    labels = [f + (f" (arms not yet run: {', '.join(a for a in arms if not rows[a, f])})"
                   if not all(rows[a, f] for a in arms) else "") for f in done]  # fmt: skip
    parts = [f"Paired {_changes_from(cfg)} (points; mean over the clips both arms scored ± its standard "
             f"error, n clips; separation figures on clips of two or more parts). Folds done: {', '.join(labels) or 'none'}"
             + (f"; not yet: {', '.join(missing)}" if missing else "") + "."
             + ("" if same_audio else " The arms render their clips differently: pairs share a clip index, "
                                      "not the audio.") + "\n"]  # fmt: skip
    if not done:
        return parts[0]
    sets = sorted({k[0] for f in done for a in arms for k in rows[a, f]}, key=lambda s: (s != SEEN, s != UNSEEN, s))
    for metric in dict.fromkeys([cfg.metric, *cfg.compare_metrics]):
        head = ["held-out family", "set", *[f"{a} - {b}" for a, b in pairs]]
        lines = [f"**{metric}**\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for fam in [*done, "all folds"]:
            pooled = {arm: _pooled(rows, arm, done if fam == "all folds" else [fam]) for arm in arms}
            for name in sets:
                cells = []
                for arm, ref in pairs:
                    mean, se, n = paired_difference(pooled[ref], pooled[arm], metric, name)
                    cells.append("-" if n == 0 else f"{_points(mean)} ± {100 * se:.1f} ({n})"
                                 if np.isfinite(se) else f"{_points(mean)} ({n})")  # fmt: skip
                label = f"**{fam}**" if fam == "all folds" else fam
                lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


# What a study's comparisons read of a finished pipeline (plus its learning curves and fold config).
KEPT_FILES = tuple(f"{REPORT_DIR}/{f}" for f in (REPORT_CLIPS, REPORT_SUMMARY, REPORT_METRICS))


def keep_results(cfg: StudyConfig, root: Path, dest: Path) -> list[Path]:
    """Copy what the comparisons read of every finished arm and fold from the working folder `root` to
    `dest`, in the same layout (so `--summary` reads either): a working folder of shards and checkpoints
    does not outlive its machine, the figures quoted from it must. A file already kept with other
    contents is an error naming it, never overwritten; one kept with the same contents is left alone.
    Returns the files written."""
    from mixscribe.fsio import atomic_local_write

    plans = []
    for arm, fam in cfg.folds():
        name = pipeline_name(cfg, arm, fam)
        if not (root / name / KEPT_FILES[0]).is_file():
            continue  # not finished
        files = [*KEPT_FILES, *(f"curves/{p.name}" for p in sorted((root / name / "curves").glob("*.csv")))]
        plans += [(root / name / f, dest / name / f) for f in files]
        config = Path("folds") / f"{fold_label(arm, fam).replace('/', '-')}.yaml"
        if (root / config).is_file():
            plans.append((root / config, dest / config))
    contents = {target: source.read_bytes() for source, target in plans}  # small files, each read once
    for source, target in plans:
        if target.is_file() and target.read_bytes() != contents[target]:
            raise MixscribeError(f"{target}: already kept with other contents than {source}; move it away to "
                                 "keep the new one")  # fmt: skip
    written = []
    for target, data in contents.items():
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            written.append(atomic_local_write(target, lambda tmp, data=data: tmp.write_bytes(data)))
    return written


def decision(cfg: StudyConfig, fold_metrics: dict[str, dict[str, float]]) -> str:
    """The arm with the best mean over the rotation of the study's metric on the unseen-SoundFont sets:
    the rule that decides, read from every held-out family at once rather than from one set."""
    arms = list(cfg.arms)
    means = matrix_from_metrics(fold_metrics, cfg.metric).rotation()
    score = {a: means.get(a, {}).get(UNSEEN, (float("nan"), 0.0))[0] for a in arms}
    ranked = sorted((a for a in arms if score[a] == score[a]), key=lambda a: -score[a])
    if not ranked:
        return f"No `{UNSEEN}` figures for `{cfg.metric}`: no decision."
    best = ranked[0]
    return (f"Decision rule: the best mean `{cfg.metric}` over the held-out families' `{UNSEEN}` sets. "
            f"Best: `{best}` ({100 * score[best]:.1f}; " + ", ".join(f"`{a}` {100 * score[a]:.1f}" for a in ranked[1:]) + ").")


def heatmap(matrix: Matrix, path: Path) -> Path:
    import numpy as np

    from mixscribe.evaluate.plots import pyplot, save_figure

    plt = pyplot()
    values = np.array([[matrix.rows[f].get(s, np.nan) for s in matrix.sets] for f in matrix.rows]) * 100
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(matrix.sets), 1.2 + 0.6 * len(matrix.rows)))
    im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(matrix.sets)), matrix.sets)
    ax.set_yticks(range(len(matrix.rows)), [f"held out: {f}" for f in matrix.rows])
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, "-" if np.isnan(v) else f"{v:.1f}", ha="center", va="center", color="white" if v < 60 else "black")
    fig.colorbar(im, ax=ax, label=f"{matrix.metric} (%)")
    fig.tight_layout()
    return save_figure(fig, path)


def run_study(cfg: StudyConfig, workdir: str = "out", workers: int | None = None, log=print,
              arms: list[str] | None = None, families: list[str] | None = None) -> Matrix:  # fmt: skip
    """Run (or resume) the study's folds, or only those of `arms` and `families`; the matrix and the
    comparisons also read every other fold already finished."""
    import yaml

    from mixscribe import tracking
    from mixscribe.fsio import atomic_local_write
    from mixscribe.pipeline import run_pipeline
    from mixscribe.raycluster import init_ray

    chosen = selected_folds(cfg, arms, families)  # a name the study lacks fails here, before Ray starts
    root = Path(workdir).resolve() / cfg.name
    (root / "folds").mkdir(parents=True, exist_ok=True)
    init_ray()
    uri = tracking.tracking_uri(root)
    mlf = tracking.client(uri)
    exp = tracking.experiment_id(mlf, cfg.experiment or f"study-{cfg.name}", root)
    study, existed = tracking.start_or_resume(mlf, exp, f"study/{cfg.name}", {"mixscribe.study": cfg.name, "mixscribe.stage": "study"})
    sid = study.info.run_id
    if not existed:
        tracking.log_params(mlf, sid, {"study": {"base": cfg.base, "holdout_families": list(cfg.holdout_families),
                                                 "metric": cfg.metric, "arms": list(cfg.arms)}})  # fmt: skip
    log(f"study {cfg.name}: MLflow run {sid} ({uri})")
    fold_metrics = {}
    with tracking.lifecycle(mlf, sid):
        for arm, fam in cfg.folds():
            label = fold_label(arm, fam)
            if (arm, fam) not in chosen:
                figures = finished_fold_metrics(root, pipeline_name(cfg, arm, fam))
                log(f"fold {label}: not chosen this run; " + ("its finished figures are read" if figures else "not run yet"))
                if figures:
                    fold_metrics[label] = figures
                continue
            path = root / "folds" / f"{label.replace('/', '-')}.yaml"
            text = yaml.safe_dump(fold_config(cfg, fam, arm), sort_keys=False)
            atomic_local_write(path, lambda tmp, text=text: tmp.write_text(text))
            log(f"fold: {'arm ' + repr(arm) + ', ' if arm else ''}hold out SoundFont family {fam!r}")
            name = pipeline_name(cfg, arm, fam)
            result = run_pipeline(str(path), workdir=str(root), name=name, workers=workers, log=log,
                                  parent_run_id=sid)  # fmt: skip
            fold_metrics[label] = result["metrics"]
        matrix = matrix_from_metrics(fold_metrics, cfg.metric)
        paths = _write_matrix(matrix, root)
        if cfg.arms:
            text = arm_comparison(cfg, fold_metrics) + "\n" + paired_comparison(cfg, root)
            paths.append(atomic_local_write(root / "arms.md", lambda tmp: tmp.write_text(text)))
            log(text)
        figures = {}
        for metric in dict.fromkeys([cfg.metric, *(cfg.compare_metrics if cfg.arms else ())]):
            m = matrix if metric == cfg.metric else matrix_from_metrics(fold_metrics, metric)
            figures |= {f"study/{f}/{s}/{metric}": v for f, r in m.rows.items() for s, v in r.items()}
            figures |= {f"study/{f}/gap/{metric}": m.gap(f) for f in m.rows}
            for arm, sets in m.rotation().items():
                prefix = f"study/{arm}/" if arm else "study/"
                figures |= {f"{prefix}mean/{s}/{metric}": v[0] for s, v in sets.items()}
                figures |= {f"{prefix}spread/{s}/{metric}": v[1] for s, v in sets.items()}
        tracking.log_metrics(mlf, sid, figures)
        tracking.log_artifacts(mlf, sid, paths, "matrix")
    log(matrix.markdown())
    return matrix


def _write_matrix(matrix: Matrix, root: Path) -> list[Path]:
    from mixscribe.fsio import atomic_local_write

    out = []
    for name, text in (("matrix.md", matrix.markdown()), ("matrix.csv", matrix.csv())):
        out.append(atomic_local_write(root / name, lambda tmp, text=text: tmp.write_text(text)))
    out.append(heatmap(matrix, root / "matrix.png"))
    return out

"""`mixscribe compare`: the metrics of several MLflow runs side by side (MLflow's search API).

A reference is a run id or an experiment name. An experiment stands for its top-level runs that carry
evaluation metrics (pipeline parents and standalone evaluations), so a pipeline is one row, not five.
"""

from __future__ import annotations

import csv
import fnmatch
import io
from dataclasses import dataclass

from mixscribe.errors import MixscribeError

DEFAULT_METRICS = ("eval/*/all/frame_f1", "eval/*/all/note_f1", "eval/*/all/sep_note_f1", "eval/*/all/cluster_purity")


@dataclass
class Comparison:
    columns: list[str]  # metric names
    rows: list[dict]  # run, run_id, experiment, then one value per column (None when absent)

    def markdown(self) -> str:
        head = ["run", "run id", "experiment", *self.columns]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [r["run"], r["run_id"][:8], r["experiment"]]
            cells += ["-" if r[c] is None else f"{r[c]:.4f}" for c in self.columns]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["run", "run_id", "experiment", *self.columns])
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()


def _runs_of(mlf, ref: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return [mlf.get_run(ref)]
    except MlflowException:
        pass
    exp = mlf.get_experiment_by_name(ref)
    if exp is None:
        raise MixscribeError(f"compare: {ref!r} is neither a run id nor an experiment in {mlf.tracking_uri}")
    runs = mlf.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and any(k.startswith("eval/") for k in r.data.metrics)]
    if not top:
        raise MixscribeError(f"compare: experiment {ref!r} has no run with evaluation metrics")
    return top


def compare_runs(refs: list[str], uri: str, patterns: tuple[str, ...] = DEFAULT_METRICS) -> Comparison:
    from mixscribe import tracking

    if not refs:
        raise MixscribeError("compare: give at least one run id or experiment name")
    mlf = tracking.client(uri)
    runs, seen = [], set()
    for ref in refs:
        for r in _runs_of(mlf, ref):
            if r.info.run_id not in seen:
                seen.add(r.info.run_id)
                runs.append(r)
    names = sorted({k for r in runs for k in r.data.metrics if any(fnmatch.fnmatchcase(k, p) for p in patterns)})
    if not names:
        raise MixscribeError(f"compare: no metric of these runs matches {list(patterns)}")
    experiments = {r.info.experiment_id: mlf.get_experiment(r.info.experiment_id).name for r in runs}
    rows = [{"run": r.info.run_name, "run_id": r.info.run_id, "experiment": experiments[r.info.experiment_id],
             **{n: r.data.metrics.get(n) for n in names}} for r in runs]  # fmt: skip
    return Comparison(names, rows)

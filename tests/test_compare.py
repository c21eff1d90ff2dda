"""`mixscribe compare` on a real SQLite MLflow store: by experiment (one row per pipeline) and by run id."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


@pytest.fixture()
def store(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("study", artifact_location=(tmp_path / "art").as_uri())
    ids = []
    for name, f1 in (("a", 0.5), ("b", 0.75)):
        parent = client.create_run(exp, run_name=name)
        child = client.create_run(exp, run_name=f"{name}/evaluate", tags={"mlflow.parentRunId": parent.info.run_id})
        for run in (parent, child):
            client.log_metric(run.info.run_id, "eval/unseen-family/all/note_f1", f1)
            client.log_metric(run.info.run_id, "eval/valid/all/note_f1", f1 + 0.1)
            client.log_metric(run.info.run_id, "train/loss", 1.0)
        ids.append(parent.info.run_id)
    client.create_run(exp, run_name="no-eval")  # not a comparable run
    return tmp_path, ids


def test_compare_an_experiment_gives_one_row_per_top_level_run(store):
    from mixscribe.evaluate.compare import compare_runs

    tmp, ids = store
    c = compare_runs(["study"], f"sqlite:///{tmp / 'mlflow.db'}")
    assert [r["run"] for r in c.rows] == ["a", "b"]
    assert c.columns == ["eval/unseen-family/all/note_f1", "eval/valid/all/note_f1"]
    assert c.rows[1]["eval/unseen-family/all/note_f1"] == 0.75
    only = compare_runs([ids[1]], f"sqlite:///{tmp / 'mlflow.db'}", ("eval/unseen-*/all/*",))
    assert [r["run"] for r in only.rows] == ["b"] and only.columns == ["eval/unseen-family/all/note_f1"]


def test_compare_cli_prints_and_writes_tables_and_rejects_unknown_refs(store):
    tmp, ids = store
    r = run_cli("compare", "study", "--workdir", str(tmp), "--out", str(tmp / "cmp" / "table"), env={"MLFLOW_TRACKING_URI": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| a | " in r.stdout and "0.7500" in r.stdout
    assert (tmp / "cmp" / "table.md").read_text().count("\n") == 4
    assert (tmp / "cmp" / "table.csv").read_text().splitlines()[0].startswith("run,run_id,experiment,eval/")
    r = run_cli("compare", "nope", "--workdir", str(tmp), env={"MLFLOW_TRACKING_URI": ""})
    assert r.returncode == 2 and "'nope' is neither a run id nor an experiment" in r.stderr.strip().splitlines()[-1]

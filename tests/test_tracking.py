"""The MLflow run life cycle every stage shares, on a real local MLflow store."""

from __future__ import annotations

import pytest

from mixscribe import tracking


def test_a_run_ends_finished_or_failed_whatever_escapes_and_none_is_no_run(tmp_path):
    mlf = tracking.client(tracking.tracking_uri(tmp_path))
    exp = tracking.experiment_id(mlf, "lifecycle", tmp_path)
    ok, _ = tracking.start_or_resume(mlf, exp, "ok", {"t": "ok"})
    with tracking.lifecycle(mlf, ok.info.run_id):
        tracking.log_metrics(mlf, ok.info.run_id, {"x": 1.0})
    interrupted, _ = tracking.start_or_resume(mlf, exp, "stopped", {"t": "stopped"})
    with pytest.raises(KeyboardInterrupt), tracking.lifecycle(mlf, interrupted.info.run_id):
        raise KeyboardInterrupt  # Ctrl-C: the run must not stay RUNNING
    assert mlf.get_run(ok.info.run_id).info.status == "FINISHED"
    assert mlf.get_run(interrupted.info.run_id).info.status == "FAILED"
    resumed, existed = tracking.start_or_resume(mlf, exp, "stopped", {"t": "stopped"})
    assert existed and resumed.info.run_id == interrupted.info.run_id  # re-running resumes that run
    assert mlf.get_run(resumed.info.run_id).info.status == "RUNNING"
    with pytest.raises(ValueError), tracking.lifecycle(None, None):  # no MLflow: errors pass through untouched
        raise ValueError

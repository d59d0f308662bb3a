"""The MLflow calls (dltool.tracking.store) within MLflow's limits, against the session's real sqlite store."""

from __future__ import annotations

import pytest
from conftest import steps

pytestmark = pytest.mark.slow  # imports MLflow (seconds)


def test_a_record_larger_than_one_batch_arrives_whole_and_nothing_is_logged_twice(mlflow_uri, client):
    from dltool.tracking.store import Store

    store = Store(mlflow_uri)
    taken = store.take_run(
        None, "limits", "20261204-000000-limits-ab12", {"dltool.run_id": "20261204-000000-limits-ab12"}
    )
    assert not taken.existed
    params = {f"p{i:03d}": str(i) for i in range(250)}  # more than one log_batch holds (100)
    store.log_params(taken.run_id, params)
    store.log_params(taken.run_id, {**params, "p250": "250"}, client.get_run(taken.run_id).data.params)
    assert client.get_run(taken.run_id).data.params == {**params, "p250": "250"}
    measured = [("loss", 1.0 / step, step) for step in range(1, 1501)]  # (1000)
    assert store.log_missing_metrics(taken.run_id, measured, {}) == 1500
    again = store.take_run(taken.run_id, "limits", "20261204-000000-limits-ab12", {"dltool.status": "COMPLETED"})
    assert again.existed and again.run_id == taken.run_id and len(again.steps["loss"]) == 1500
    assert store.log_missing_metrics(taken.run_id, measured + [("loss", 0.0, 1501)], again.steps) == 1
    assert steps(client, taken.run_id, "loss") == list(range(1, 1502))
    assert client.get_run(taken.run_id).data.tags["dltool.status"] == "COMPLETED"

"""Runs record MLflow's system metrics (CPU, memory, disk, network) while they work."""

import time


def test_a_run_records_system_metrics(tmp_path):
    from mlflow import MlflowClient

    from lensflow.tasks.tracking import system_metrics

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    run = c.create_run(c.create_experiment("x")).info.run_id
    monitor = system_metrics(run, uri, interval_s=0.5)
    assert monitor is not None
    time.sleep(2.5)
    monitor.finish()
    metrics = c.get_run(run).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics)
    assert 0 < metrics["system/system_memory_usage_megabytes"]

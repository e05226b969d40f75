"""Shared storage on an S3-compatible server (moto's, on 127.0.0.1): the LanceDB table, the MLflow artifacts and the
DVC remote in one bucket, reached through the standard AWS_* environment variables only. The whole retrain flow
once, the search service loading the champion and its index from there, and the versioning checks on them."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from lensflow.core.champion import IndexMismatch, resolve_champion, status
from lensflow.core.dvc import dir_md5, run_dvc
from lensflow.core.settings import get_settings
from lensflow.flows.retrain import retrain
from lensflow.serving.served import load_champion
from tests.conftest import ServiceThread, free_port
from tests.flows.test_retrain import tiny_params

pytestmark = pytest.mark.flow

BUCKET = "lensflow-test"
SECRET = "moto-secret-not-for-files"


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server on 127.0.0.1 with one bucket, the AWS_* variables pointing at it; a boto3 client for it.
    AWS_ALLOW_HTTP is deliberately not set: lensflow tells LanceDB to allow the http endpoint itself."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "moto-key",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ALLOW_HTTP", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    httpx.post(
        f"{env['AWS_ENDPOINT_URL']}/moto-api/reset"
    ).raise_for_status()  # moto's state is per process, not per server
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_retrain_and_serve_from_object_storage(project, tiny_catalog, prefect_harness, s3, monkeypatch, tmp_path):
    for name, prefix in {"LANCEDB_URI": "lancedb", "MLFLOW_ARTIFACT_URI": "mlflow", "DVC_REMOTE": "dvc"}.items():
        monkeypatch.setenv(f"LENSFLOW_{name}", f"s3://{BUCKET}/{prefix}")
    get_settings.cache_clear()
    s = get_settings()

    out = retrain(params=tiny_params())
    assert out["outcome"] == "promoted" and out["index"]["uri"] == f"s3://{BUCKET}/lancedb"
    table = out["index"]["table"]
    assert keys(s3, f"lancedb/{table}.lance/data/") and keys(s3, f"lancedb/{table}.lance/_versions/")
    assert any("/artifacts/model/" in k for k in keys(s3, "mlflow/")) and keys(s3, "dvc/files/md5/")
    assert not any(
        (s.root / p).exists() for p in ("lancedb", "dvc-remote", "mlflow/artifacts")
    )  # nothing stored locally
    assert out["index"]["fingerprint"].endswith(".etags")

    st = status(s)
    assert st["consistent"], st["problems"]
    champ = resolve_champion(s)
    assert (
        champ.source.startswith(f"s3://{BUCKET}/mlflow/")
        and json.loads(champ.tags["index"])["tracked"] == "object store"
    )
    config = (s.root / ".dvc" / "config").read_text()
    assert f"s3://{BUCKET}/dvc" in config and "127.0.0.1" not in config
    assert SECRET not in config + json.dumps(champ.tags) + json.dumps(st)

    # the search service: encoder downloaded from the bucket, index read from it, both verified
    with ServiceThread(s) as service:
        assert httpx.get(f"{service.url}/health").json()["model_version"] == 1
        hits = httpx.get(f"{service.url}/search/text", params={"q": "Blue shoe", "limit": 5}).json()["results"]
        assert len(hits) == 5 and hits[0]["category"] == "Blue shoe"
        assert httpx.get(f"{service.url}/search/text", params={"q": "number 7", "mode": "hybrid"}).json()["results"]

    # a clone with only .dvc/config and data.dvc gets the catalog back from the bucket
    clone = tmp_path / "clone"
    (clone / ".dvc").mkdir(parents=True)
    shutil.copy(s.root / ".dvc" / "config", clone / ".dvc" / "config")
    shutil.copy(s.root / "data.dvc", clone / "data.dvc")
    run_dvc(clone, "pull", "-q")
    assert dir_md5(clone / "data") == out["data_md5"]

    # one data file of the table rewritten in the bucket: same version, rows and metadata, but refused
    data_key = keys(s3, f"lancedb/{table}.lance/data/")[0]
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=data_key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=data_key, Body=bytes(body))
    st = status(s)
    assert not st["consistent"] and len(st["problems"]) == 1 and "fingerprint" in st["problems"][0]
    with pytest.raises(IndexMismatch, match="refusing to serve"):
        load_champion(s)


def test_recovery_drops_a_half_built_table_in_the_bucket(project, s3):
    """A version left `building` by a killed run: its table in the bucket is dropped, like a local one."""
    import pyarrow as pa

    from lensflow.core import registry
    from lensflow.core.index import connect
    from lensflow.tasks.recover import recover

    c = registry.client(project.tracking_uri)
    run_id = registry.start_run(c, project.mlflow_experiment, f"s3://{BUCKET}/mlflow", "retrain-killed", {})
    version = registry.register_version(
        c, project.registered_model, run_id, f"s3://{BUCKET}/mlflow/x", {"status": "building"}
    )
    uri = f"s3://{BUCKET}/lancedb"
    connect(uri).create_table(f"{project.registered_model}-v{version}", data=pa.table({"product_id": ["p1"]}))
    fixed = recover(c, project.registered_model, project.mlflow_experiment, uri)
    assert any("half-built index table" in line for line in fixed)
    assert connect(uri).list_tables().tables == [] and keys(s3, "lancedb/") == []

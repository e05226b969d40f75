"""Stores addressed by URI: a local path or an object-store URL (s3://bucket/prefix).

Credentials and the endpoint come only from the standard AWS environment variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL); nothing here
writes them anywhere. Checked against moto's S3 server: boto3 (so MLflow's artifact store) and DVC (dvc-s3 via
s3fs) read AWS_ENDPOINT_URL themselves, and so does LanceDB, which however refuses a plain-http endpoint
unless told `allow_http`: `lancedb_options` adds that, the one translation needed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def sql_quote(value: str) -> str:
    """A string literal for the SQL-like filters LanceDB and MLflow take: quoted, inner quotes doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values) -> str:
    """A comma-separated list of string literals, for `IN (...)`."""
    return ",".join(map(sql_quote, values))


def is_remote(uri: str) -> bool:
    """Whether `uri` names an object store (scheme://...) rather than a local path."""
    return "://" in str(uri)


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""


def lancedb_options(uri: str) -> dict[str, str]:
    """LanceDB's `storage_options` for `uri`: only what it does not take from the environment itself."""
    return {"allow_http": "true"} if uri.startswith("s3://") and _endpoint().startswith("http://") else {}


def objects_md5(url: str) -> str:
    """`<md5>.etags`: md5 of the sorted (key below `url`, size, ETag) of every object under the s3:// prefix `url`.
    It changes when an object is added, removed or rewritten with other content."""
    import boto3

    if not url.startswith("s3://"):
        raise ValueError(f"cannot fingerprint {url.split('://')[0]}:// objects: only s3:// (or S3-compatible) stores")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/"
    entries = []
    for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        entries += [(o["Key"][len(prefix) :], o["Size"], o["ETag"].strip('"')) for o in page.get("Contents", [])]
    if not entries:
        raise FileNotFoundError(f"no objects under s3://{bucket}/{prefix}")
    return hashlib.md5(json.dumps(sorted(entries)).encode()).hexdigest() + ".etags"


def owner_only_file(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600, its folder 0700), atomically: for secrets and
    for what decides who may do what (credentials, reviewer keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)

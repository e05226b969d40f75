"""What the people who deploy the search service expect: the three photo upload forms, one error shape on every
route, Prometheus /metrics, JSON logs with a request id, liveness/readiness, CORS, the optional API key and the
optional per-client rate limit."""

from __future__ import annotations

import base64
import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from PIL import Image

from tests.conftest import ServiceThread, served_project

pytestmark = pytest.mark.service
LIMIT = 300_000
PART_HEAD = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'


@pytest.fixture(scope="module")
def svc(tmp_path_factory, prefect_harness):
    env = {"LENSFLOW_SWAP_POLL_S": "600", "LENSFLOW_MAX_UPLOAD_BYTES": str(LIMIT)}
    with served_project(tmp_path_factory.mktemp("operations"), env, epochs=2) as served:
        yield served


def photo(colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), colour).save(buf, "PNG")
    return buf.getvalue()


def ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [h["product_id"] for h in r.json()["results"]]


def test_photo_arrives_raw_multipart_or_base64_with_the_same_answer(svc):
    service, _, _ = svc
    url, data = f"{service.url}/search/image", photo()
    raw = httpx.post(url, content=data, headers={"Content-Type": "image/png"})
    form = httpx.post(url, files={"image": ("shot.png", data, "image/png")})
    other_name = httpx.post(url, files={"upload": ("x.bin", data, "application/octet-stream")})  # the only file part
    b64 = httpx.post(url, json={"image": base64.b64encode(data).decode()})
    data_url = httpx.post(url, json={"image": "data:image/png;base64," + base64.b64encode(data).decode()})
    assert ids(raw) == ids(form) == ids(other_name) == ids(b64) == ids(data_url)
    described = [
        httpx.post(f"{service.url}/describe", files={"image": ("p.png", data, "image/png")}, timeout=30),
        httpx.post(f"{service.url}/describe", json={"image": base64.b64encode(data).decode()}, timeout=30),
    ]
    assert [r.status_code for r in described] == [200, 200]
    assert described[0].json()["category"] == described[1].json()["category"]


@pytest.mark.parametrize(
    "kwargs,status,words",
    [
        ({"files": {"note": (None, "hello")}}, 400, "no file part named 'image'"),
        ({"files": {"a": ("a.png", b"x", "image/png"), "b": ("b.png", b"y", "image/png")}}, 400, "named 'image'"),
        ({"json": {"photo": "abc"}}, 400, "string field 'image'"),
        ({"json": {"image": "not base64!!"}}, 400, "not valid base64"),
        ({"content": b"{oops", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"<xml/>", "headers": {"Content-Type": "text/xml"}}, 415, "curl -F image=@photo.jpg"),
        ({"files": {"image": ("big.png", b"\0" * (LIMIT + 10), "image/png")}}, 413, "larger than"),
        ({"json": {"image": base64.b64encode(b"\0" * (LIMIT + 10)).decode()}}, 413, "larger than"),
        # chunked (no Content-Length): refused while streaming, in each form
        ({"content": iter([b"\0" * 100_000] * 4), "headers": {"Content-Type": "image/png"}}, 413, "larger than"),
        (
            {
                "content": iter([PART_HEAD] + [b"\0" * 100_000] * 4),
                "headers": {"Content-Type": "multipart/form-data; boundary=b"},
            },
            413,
            "larger than",
        ),
        ({"files": {"image": ("e.png", b"", "image/png")}}, 400, "empty"),
        ({"files": {"image": ("t.txt", b"hello", "text/plain")}}, 415, "not an image"),
    ],
)
def test_bad_uploads_share_limits_and_error_shape(svc, kwargs, status, words):
    service, _, _ = svc
    r = httpx.post(f"{service.url}/search/image", timeout=30, **kwargs)
    assert r.status_code == status and set(r.json()) == {"error"} and words in r.json()["error"], r.text


def test_every_route_answers_errors_in_one_shape(svc):
    service, _, _ = svc
    missing = httpx.get(f"{service.url}/no/such/route")
    method = httpx.delete(f"{service.url}/search/text")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found: GET /no/such/route"}
    assert method.status_code == 405 and set(method.json()) == {"error"} and "GET" in method.headers["allow"]
    assert "Method Not Allowed" in method.json()["error"]


def metric(text: str, name: str, **labels) -> float | None:
    """The value of one sample in Prometheus text format (None: absent)."""
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        sample, _, rest = head.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if sample == name and found == {k: str(v) for k, v in labels.items()}:
            return float(value)
    return None


def test_metrics_count_requests_latency_errors_and_what_is_served(svc):
    service, _, catalog = svc
    pid = catalog["product_id"].iloc[0]
    before = httpx.get(f"{service.url}/metrics").text
    route = "/products/{product_id}/similar"
    n0 = metric(before, "lensflow_http_requests_total", route=route, method="GET", status="200") or 0
    for _ in range(3):
        assert httpx.get(f"{service.url}/products/{pid}/similar").status_code == 200
    httpx.get(f"{service.url}/products/nope/similar")
    httpx.get(f"{service.url}/nowhere")
    r = httpx.get(f"{service.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert metric(text, "lensflow_http_requests_total", route=route, method="GET", status="200") == n0 + 3
    assert metric(text, "lensflow_http_errors_total", route=route, method="GET", status="404") >= 1
    assert metric(text, "lensflow_http_errors_total", route="unmatched", method="GET", status="404") >= 1
    assert metric(text, "lensflow_http_request_duration_seconds_count", route=route, method="GET") >= 3
    assert metric(text, "lensflow_model_version", model="lensflow-encoder") == 1
    assert metric(text, "lensflow_champion_served") == 1 and metric(text, "lensflow_champion_swaps_total") == 0
    assert 0 <= metric(text, "lensflow_champion_check_age_seconds") < 600
    assert metric(text, "lensflow_champion_check_failing") == 0
    assert "process_resident_memory_bytes" in text


@contextmanager
def json_logs() -> Iterator[io.StringIO]:
    """`lensflow serve`'s logging config (JSON) for the duration, its output into a buffer."""
    from lensflow.serving import logs

    buf = io.StringIO()
    cfg = logs.config("json")
    cfg["handlers"]["stderr"]["stream"] = buf
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logging.config.dictConfig(cfg)
    try:
        yield buf
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_json_logs_carry_the_request_id_returned_in_the_header(svc):
    service, _, _ = svc
    with json_logs() as buf:
        mine = httpx.get(f"{service.url}/search/text", params={"q": "shoe"}, headers={"X-Request-ID": "shop-42"})
        fresh = httpx.get(
            f"{service.url}/search/text", params={"q": "shoe"}, headers={"X-Request-ID": "bad id; drop table"}
        )
        httpx.get(f"{service.url}/nowhere")
    assert mine.headers["x-request-id"] == "shop-42"
    rid = fresh.headers["x-request-id"]
    assert rid != "bad id; drop table" and len(rid) == 32
    records = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    access = {r["request_id"]: r for r in records if r["name"] == "lensflow.access"}
    assert access["shop-42"]["route"] == "/search/text" and access["shop-42"]["status"] == 200
    assert access["shop-42"]["model_version"] == "1" and access["shop-42"]["duration_ms"] > 0
    assert access[rid]["level"] == "INFO" and "message" in access[rid]
    assert any(r["path"] == "/nowhere" and r["status"] == 404 for r in access.values())


def test_liveness_and_readiness_are_separate(project, svc):
    with ServiceThread(project) as bare:  # no champion yet: alive, not ready
        assert httpx.get(f"{bare.url}/livez").status_code == 200
        not_ready = httpx.get(f"{bare.url}/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["status"] == "no-champion"
    service, _, _ = svc
    assert httpx.get(f"{service.url}/livez").json() == {"status": "alive"}
    ready = httpx.get(f"{service.url}/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == 1


def test_cors_allows_only_configured_origins(svc):
    service, s, _ = svc
    shop, evil = "https://shop.example.com", "https://evil.example.net"
    r = httpx.get(f"{service.url}/search/text", params={"q": "shoe"}, headers={"Origin": shop})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers  # none by default
    with ServiceThread(s.model_copy(update={"cors_origins": [shop]})) as cors:
        ok = httpx.get(f"{cors.url}/search/text", params={"q": "shoe"}, headers={"Origin": shop})
        bad = httpx.get(f"{cors.url}/search/text", params={"q": "shoe"}, headers={"Origin": evil})
        pre = httpx.options(
            f"{cors.url}/search/image",
            headers={
                "Origin": shop,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )
    assert (
        ok.headers["access-control-allow-origin"] == shop
        and "X-Request-ID" in ok.headers["access-control-expose-headers"]
    )
    assert "access-control-allow-origin" not in bad.headers
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == shop


def test_optional_api_key(svc):
    from pydantic import SecretStr

    from lensflow.serving.middleware import key_ok

    service, s, _ = svc
    assert httpx.get(f"{service.url}/search/text", params={"q": "shoe"}).status_code == 200  # off by default
    key = "k-" + "7" * 30
    with ServiceThread(s.model_copy(update={"api_key": SecretStr(key)})) as locked:
        q = {"q": "shoe"}
        none = httpx.get(f"{locked.url}/search/text", params=q)
        wrong = httpx.get(f"{locked.url}/search/text", params=q, headers={"X-API-Key": key[:-1] + "8"})
        header = httpx.get(f"{locked.url}/search/text", params=q, headers={"X-API-Key": key})
        bearer = httpx.get(f"{locked.url}/search/text", params=q, headers={"Authorization": f"Bearer {key}"})
        upload = httpx.post(f"{locked.url}/search/image", content=photo(), headers={"Content-Type": "image/png"})
        metrics = httpx.get(f"{locked.url}/metrics")
        open_paths = [httpx.get(locked.url + p).status_code for p in ("/", "/livez", "/readyz", "/openapi.json")]
    for r in (none, wrong, upload, metrics):
        assert (
            r.status_code == 401
            and "API key" in r.json()["error"]
            and r.headers["www-authenticate"].startswith("Bearer")
        )
        assert key not in r.text
    assert header.status_code == 200 and bearer.status_code == 200 and open_paths == [200] * 4
    assert key_ok("abc", "abc") and not key_ok("abc", "abd") and not key_ok("abc", None) and not key_ok("abc", "")


def test_optional_rate_limit_per_client(svc):
    from pydantic import SecretStr, ValidationError

    from lensflow.core.settings import Settings

    service, s, _ = svc
    burst = [httpx.get(f"{service.url}/search/text", params={"q": "shoe"}).status_code for _ in range(8)]
    assert burst == [200] * 8  # off by default
    limited = s.model_copy(update={"rate_limit": "3/minute", "api_key": SecretStr("key-a"), "max_upload_bytes": LIMIT})
    with ServiceThread(limited) as svc_limited:
        url, a, b = f"{svc_limited.url}/search/text", {"X-API-Key": "key-a"}, {"Authorization": "Bearer key-a"}
        first = [httpx.get(url, params={"q": "shoe"}, headers=a).status_code for _ in range(3)]
        over = httpx.get(url, params={"q": "shoe"}, headers=b)  # the same key, sent the other way: same client
        image = httpx.post(
            f"{svc_limited.url}/search/image", content=photo(), headers={**a, "Content-Type": "image/png"}
        )
        probes = [httpx.get(svc_limited.url + p).status_code for p in ("/livez", "/readyz", "/")]
        metrics = httpx.get(f"{svc_limited.url}/metrics", headers=a)
    assert first == [200] * 3 and over.status_code == 429 and image.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 60 and "rate limit exceeded (3/minute" in over.json()["error"]
    assert set(over.json()) == {"error"} and "key-a" not in over.text
    assert probes == [200] * 3 and metrics.status_code == 200  # probes and metrics are never limited
    assert metric(metrics.text, "lensflow_http_requests_total", route="unmatched", method="GET", status="429") == 1
    # one client over its rate does not slow another (counted by address when no key is sent)
    with ServiceThread(s.model_copy(update={"rate_limit": "2/minute"})) as by_address:
        url = f"{by_address.url}/search/text"
        codes = [httpx.get(url, params={"q": "shoe"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    with pytest.raises(ValidationError, match="is not a rate"):
        Settings(rate_limit="lots")


def test_json_log_tracebacks_are_redacted():
    with json_logs() as buf:
        try:
            raise RuntimeError("cannot open postgresql://admin:hunter2@db/x")
        except RuntimeError:
            logging.getLogger("lensflow.serving").exception("boom")
    record = json.loads(buf.getvalue().splitlines()[-1])
    assert record["message"] == "boom" and record["request_id"] == "-"
    assert "admin:***@db" in record["exc_info"] and "hunter2" not in buf.getvalue()

"""Safe defaults of the search service: it binds 127.0.0.1, never writes an upload to disk, bounds the body it
reads, and its responses and logs carry no internal paths, tracebacks or credentials."""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image

from tests.conftest import ServiceThread, free_port, served_project

pytestmark = pytest.mark.service
LENSFLOW = str(Path(sys.executable).with_name("lensflow"))
CAP = 4 * 1024 * 1024  # above Starlette's 1 MB spool threshold: a parsed multipart upload would reach the disk
SECRET = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_harness):
    """A tiny project with a champion, served in-process (so the test can watch what the server opens)."""
    env = {"LENSFLOW_SWAP_POLL_S": "600", "LENSFLOW_MAX_UPLOAD_BYTES": str(CAP)}
    with served_project(tmp_path_factory.mktemp("safe-defaults"), env, epochs=2) as served:
        yield served


def png(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (40, 60, 210)).save(buf, "PNG")
    return buf.getvalue()


def leaks(text: str, s) -> list[str]:
    """The internal things `text` shows: project paths, temp and install paths, tracebacks, secrets."""
    needles = [
        str(s.root),
        str(s.data_path),
        s.lancedb_path,
        tempfile.gettempdir() + "/",
        "site-packages",
        sys.prefix,
        "Traceback",
        'File "',
        SECRET,
        "hunter2",
    ]
    return [n for n in needles if n in text]


# --- 1. bind ------------------------------------------------------------------------------------------------


@pytest.mark.cli
def test_lensflow_serve_listens_on_loopback_only_and_keeps_credentials_out(tmp_path):
    """`lensflow serve` with no --host, as a user starts it: its only listening socket is 127.0.0.1. The tracking
    URI carries a password: neither /health, nor a 503, nor the server's log shows it (or the project's paths)."""
    port, dead = free_port(), free_port()
    (tmp_path / "data.dvc").touch()
    env = {
        **os.environ,
        "LENSFLOW_ROOT": str(tmp_path),
        "PREFECT_HOME": str(tmp_path / ".prefect"),
        "LENSFLOW_MLFLOW_TRACKING_URI": f"http://lensflow:{SECRET}@127.0.0.1:{dead}/",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
        "LENSFLOW_SWAP_POLL_S": "0.5",
    }
    env.pop("LENSFLOW_SERVE_HOST", None)
    proc = subprocess.Popen(
        [LENSFLOW, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, health = time.monotonic() + 120, None
        while health is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health is not None and health.status_code == 503 and health.json()["status"] == "no-champion"
        listening = [
            c.laddr for c in psutil.Process(proc.pid).net_connections("inet") if c.status == psutil.CONN_LISTEN
        ]
        assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening
        others = [
            a.address
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")
        ]
        for address in others:  # not reachable through the machine's other interfaces
            with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
                pass
        body = health.json()
        assert "no 'champion' version" in body["error"] and "lensflow:***@" in body["error"]
        search = httpx.get(f"http://127.0.0.1:{port}/search/text", params={"q": "shoe"}, timeout=10)
        assert search.status_code == 503 and "no champion is being served yet" in search.json()["error"]
        for text in (health.text, search.text):
            assert SECRET not in text and str(tmp_path) not in text, text
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "champion not (re)loaded" in out and SECRET not in out, out


# --- 2. uploads ---------------------------------------------------------------------------------------------

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


@pytest.fixture
def disk_watch():
    """While armed with a marker, record from every thread of this process: any file opened for writing (spooled
    temp files included), any temp file made, and any file operation whose arguments name the marker."""
    seen: list[tuple] = []
    state = {"marker": None}

    def hook(event, args):
        marker = state["marker"]
        if not marker:
            return
        if (
            event.startswith("tempfile.")
            or (event == "open" and isinstance(args[2], int) and args[2] & WRITE_FLAGS)
            or (event.startswith(("open", "os.", "shutil.")) and any(marker in str(a) for a in args))
        ):
            seen.append((event, args))

    sys.addaudithook(hook)  # cannot be removed: disarmed after the test
    yield state, seen
    state["marker"] = None


def test_uploads_never_reach_the_disk_under_the_clients_name(served, disk_watch):
    service, s, catalog = served
    state, seen = disk_watch
    name = f"evil-{uuid.uuid4().hex[:10]}.jpg"
    state["marker"] = name[:15]
    photo = png()
    big = photo + b"\0" * (2 * 1024 * 1024)  # over the spool threshold, under the body limit
    multipart = [
        httpx.post(f"{service.url}/search/image", files={"file": (fname, data, "image/png")}, timeout=30)
        for fname in (f"../../{name}", name, f"/tmp/{name}")
        for data in (photo, big)
    ]
    raw = httpx.post(
        f"{service.url}/search/image",
        content=photo,
        timeout=30,
        headers={
            "Content-Type": "image/png",
            "Content-Disposition": f'attachment; filename="../../{name}"',
            "X-File-Name": f"../../{name}",
        },
    )
    state["marker"] = None
    # multipart is parsed in memory (no spooling to a temp file, the client's file name unused): all searched
    assert [r.status_code for r in multipart] == [200] * 6 and all(r.json()["results"] for r in multipart)
    assert raw.status_code == 200 and raw.json()["results"]
    assert seen == []  # nothing written, no temp file made, nothing opened under that name, in any thread
    bases = {Path.cwd(), s.root, s.data_path, Path(tempfile.gettempdir()), Path(s.lancedb_path), s.path(s.cache_dir)}
    for base in bases:
        for rel in (name, f"../{name}", f"../../{name}", f"images/{name}"):
            assert not (base / rel).exists(), base / rel
    assert not list(s.root.rglob(f"*{name}*"))


def raw_exchange(port: int, head: str, body_chunks: list[bytes], chunked: bool) -> tuple[int, str]:
    """Send a request head and these body pieces (chunked: without the terminating chunk), then read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode())
        for piece in body_chunks:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        data = b""
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            assert got, f"connection closed without an answer: {data!r}"
            data += got
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1] for line in head_bytes.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
        )
        while len(rest) < length:
            rest += sock.recv(65536)
    return int(head_bytes.split(b" ")[1]), rest[:length].decode()


def test_body_limit_answers_before_reading_everything(served):
    service, s, _ = served
    req = "POST /search/image HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
    # a declared 10 GB body, none of it sent: refused at once, from the header
    t0 = time.monotonic()
    status, body = raw_exchange(service.port, req + "Content-Length: 10000000000\r\n\r\n", [], chunked=False)
    assert status == 413 and "larger than" in body and time.monotonic() - t0 < 10
    # no length, chunks past the limit and no end: a service waiting for the whole body would never answer
    chunk = b"\0" * 65536
    status, body = raw_exchange(
        service.port, req + "Transfer-Encoding: chunked\r\n\r\n", [chunk] * (CAP // len(chunk) + 2), chunked=True
    )
    assert status == 413 and f"larger than {CAP} bytes" in body and not leaks(body, s)


# --- 3. error responses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "bad-image",
        "truncated",
        "missing-product",
        "missing-image",
        "bad-limit",
        "bad-mode",
        "bad-price",
        "unknown-route",
        "wrong-method",
        "bad-json-route",
    ],
)
def test_error_responses_show_no_internals(served, case):
    service, s, _ = served
    url = service.url
    r = {
        "bad-image": lambda: httpx.post(
            f"{url}/search/image", content=b"GIF89a" + b"\xff" * 100, headers={"Content-Type": "image/gif"}
        ),
        "truncated": lambda: httpx.post(
            f"{url}/search/image", content=png()[:60], headers={"Content-Type": "image/png"}
        ),
        "missing-product": lambda: httpx.get(f"{url}/products/nope-product/similar"),
        "missing-image": lambda: httpx.get(f"{url}/images/..%2F..%2Fetc%2Fpasswd"),
        "bad-limit": lambda: httpx.get(f"{url}/search/text", params={"q": "x", "limit": "lots"}),
        "bad-mode": lambda: httpx.get(f"{url}/search/text", params={"q": "x", "mode": "sql"}),
        "bad-price": lambda: httpx.get(f"{url}/search/text", params={"q": "x", "min_price": "-1"}),
        "unknown-route": lambda: httpx.get(f"{url}/etc/passwd"),
        "wrong-method": lambda: httpx.delete(f"{url}/search/text"),
        "bad-json-route": lambda: httpx.post(f"{url}/search/text", json={"q": "x"}),
    }[case]()
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert not leaks(r.text, s), r.text


@pytest.fixture
def server_log():
    """Every record the service's loggers (lensflow and uvicorn) emit during the test, formatted with tracebacks."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(logging.Formatter("%(name)s %(levelname)s %(message)s").format(record))

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("lensflow.serving", "uvicorn.error")]
    for lg in loggers:
        lg.addHandler(handler)
    yield records
    for lg in loggers:
        lg.removeHandler(handler)


@pytest.mark.parametrize("where", ["text", "photo"])
def test_internal_error_is_a_generic_500_with_an_id(served, monkeypatch, server_log, where):
    """An exception whose message holds a path and a password: the client gets 'internal error' and an id; the
    server log has the details under that id, with the password masked."""
    import lensflow.serving.search as S

    service, s, catalog = served
    password = "hunter2-xyz"

    def boom(*args, **kwargs):
        raise RuntimeError(
            f"cannot open {s.root}/mlflow/mlflow.db via postgresql://admin:{password}@db/x (password={password})"
        )

    monkeypatch.setattr(S, "text_vector" if where == "text" else "image_vector", boom)
    r = (
        httpx.get(f"{service.url}/search/text", params={"q": "Red shirt"}, timeout=30)
        if where == "text"
        else httpx.post(f"{service.url}/search/image", content=png(), headers={"Content-Type": "image/png"}, timeout=30)
    )
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == "internal error" and set(body) == {"error", "id"}
    assert body["id"] == r.headers["x-request-id"]  # the request's id names the log entry
    assert not leaks(r.text, s) and password not in r.text
    logged = "\n".join(server_log)
    assert body["id"] in logged and "RuntimeError: cannot open" in logged and "Traceback" in logged
    assert password not in logged and "admin:***@db" in logged
    assert httpx.get(f"{service.url}/health").json()["status"] == "ok"  # the service carries on


def test_no_champion_yet_shows_no_paths(project):
    """Before any champion: /health and the 503s say why, without the local store's path."""
    with ServiceThread(project) as service:
        health = httpx.get(f"{service.url}/health")
        search = httpx.get(f"{service.url}/search/text", params={"q": "shoe"})
        assert (
            service.app.state.watcher.error and str(project.root) in service.app.state.watcher.error
        )  # the log has it
    assert health.status_code == 503 and "no 'champion' version of model" in health.json()["error"]
    assert search.status_code == 503 and "no champion is being served yet" in search.json()["error"]
    for r in (health, search):
        assert not leaks(r.text, project) and "<path>" in r.text, r.text


def test_version_and_health_show_no_paths(served):
    service, s, _ = served
    for path in ("/version", "/health", "/openapi.json"):
        r = httpx.get(service.url + path)
        assert r.status_code == 200 and not leaks(r.text, s), (path, r.text[:500])


def test_index_deleted_underneath_gives_a_generic_error(served, server_log):
    """Last in this module (it breaks the served index): the champion's table vanishes under a running service."""
    from lensflow.core.index import table_dir

    service, s, _ = served
    champ = service.app.state.watcher.live.served.champion
    shutil.rmtree(table_dir(champ.index["uri"], champ.index["table"]))
    # an unfiltered search is answered from the vectors the loaded pair holds in memory (serving/exact.py): the same
    # pinned version, so it keeps working; anything that reads the table fails with a generic error
    kept = httpx.get(f"{service.url}/search/text", params={"q": "Red shirt", "limit": 5}, timeout=30)
    assert kept.status_code == 200 and kept.json()["model_version"] == champ.version, kept.text[:300]
    category = service.app.state.watcher.live.catalog.categories[0]
    responses = [
        httpx.get(
            f"{service.url}/search/text",
            params={"q": "Red shirt", "limit": 5, "offset": i, "category": category},
            timeout=30,
        )
        for i in range(3)
    ]
    responses.append(httpx.get(f"{service.url}/products/p0001/similar", timeout=30))
    assert {r.status_code for r in responses} == {500}, [(r.status_code, r.text[:300]) for r in responses]
    for r in responses:
        assert r.json()["error"] == "internal error" and not leaks(r.text, s), r.text
    assert all(r.json()["id"] in "\n".join(server_log) for r in responses)
    service.app.state.watcher.check()  # the watcher notices the index is gone: /health says so, without paths
    health = httpx.get(f"{service.url}/health")
    assert not leaks(health.text, s), health.text

"""Property-based fuzzing of the photo upload, POST /search/image, over HTTP (uvicorn on 127.0.0.1).

Whatever the body (random bytes; valid JPEG/PNG/WebP/GIF/BMP photos, truncated, bit-flipped or with headers
claiming huge sizes; other formats; multipart forms; nothing at all), whatever the content type and query
parameters: never a 5xx; a 4xx carries a JSON error that shows no internal path or traceback; a 200 is a
valid result page. Unmodified photos within the limits must succeed.

LENSFLOW_FUZZ_EXAMPLES sets the number of requests (default 300); the test counts the requests it sent.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import served_project

pytestmark = pytest.mark.service

N = int(os.environ.get("LENSFLOW_FUZZ_EXAMPLES", "300"))
MAX_UPLOAD, MAX_PIXELS, MAX_SIDE = 200_000, 250_000, 2_000


@pytest.fixture(scope="module")
def svc(tmp_path_factory, prefect_harness):
    """A tiny project with an auto-approved champion, served with small upload limits."""
    env = {
        "LENSFLOW_SWAP_POLL_S": "60",
        "LENSFLOW_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "LENSFLOW_MAX_IMAGE_PIXELS": str(MAX_PIXELS),
        "LENSFLOW_MAX_IMAGE_SIDE": str(MAX_SIDE),
    }
    with served_project(tmp_path_factory.mktemp("fuzz-upload"), env, epochs=1, price=True) as served:
        yield served


# ---------------------------------------------------------------------------------------------- inputs
def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _photos() -> list[tuple[str, bytes, tuple[int, int]]]:
    """(format, bytes, size) of small valid photos in every accepted format and mode, and a few refused formats."""
    rng = np.random.default_rng(0)
    rgb = lambda w, h: Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))  # noqa: E731
    out = []
    for w, h in [(1, 1), (40, 30), (3, 97), (97, 3), (200, 150)]:
        im = rgb(w, h)
        out += [
            ("JPEG", _encode(im, "JPEG", quality=80), (w, h)),
            ("JPEG", _encode(im.convert("L"), "JPEG"), (w, h)),
            ("JPEG", _encode(im.convert("CMYK"), "JPEG"), (w, h)),
            ("JPEG", _encode(im, "JPEG", progressive=True), (w, h)),
            ("PNG", _encode(im, "PNG"), (w, h)),
            ("PNG", _encode(im.convert("RGBA"), "PNG"), (w, h)),
            ("PNG", _encode(im.convert("P"), "PNG"), (w, h)),
            ("PNG", _encode(im.convert("1"), "PNG"), (w, h)),
            ("PNG", _encode(im.convert("LA"), "PNG"), (w, h)),
            ("PNG", _encode(Image.fromarray(np.asarray(im)[..., 0].astype(np.uint16) * 257), "PNG"), (w, h)),
            ("WEBP", _encode(im, "WEBP"), (w, h)),
            ("WEBP", _encode(im.convert("RGBA"), "WEBP", lossless=True), (w, h)),
            ("GIF", _encode(im, "GIF"), (w, h)),
            ("BMP", _encode(im, "BMP"), (w, h)),
            ("BMP", _encode(im.convert("1"), "BMP"), (w, h)),
            ("BMP", _encode(im.convert("P"), "BMP"), (w, h)),
        ]
    frames = [rgb(24, 16), rgb(24, 16)]
    for fmt in ("GIF", "PNG", "WEBP"):  # animations
        out.append((fmt, _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50), (24, 16)))
    im = rgb(20, 20)
    for fmt in ("TIFF", "ICO", "PPM", "TGA", "PCX", "JPEG2000"):  # readable by PIL, refused by the service
        try:
            out.append((fmt, _encode(im, fmt), (20, 20)))
        except Exception:  # noqa: BLE001 - a codec this PIL lacks
            pass
    return out


PHOTOS = _photos()
ACCEPTED = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}
CONTENT_TYPES = [
    *MIME.values(),
    "application/octet-stream",
    "IMAGE/PNG",
    "image/jpeg; charset=binary",
    "image/png ; q=1",
    "image/png;",
    "text/plain",
    "application/json",
    "multipart/form-data; boundary=x",
    "image/svg+xml",
    "image/tiff",
    "image/",
    "image",
    "",
    ";",
    "x" * 300,
    "image/png, image/jpeg",
]


def _png_chunks_with_size(data: bytes, w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h (CRC recomputed, so only the size is a lie)."""
    ihdr = bytearray(data[8 + 8 : 8 + 8 + 13])
    ihdr[0:8] = struct.pack(">II", w, h)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return data[:16] + bytes(ihdr) + crc + data[16 + 13 + 4 :]


def with_size(fmt: str, data: bytes, w: int, h: int) -> bytes:
    """Edit the header so it claims w x h pixels (decompression-bomb shapes, zero sides)."""
    b = bytearray(data)
    if fmt == "PNG":
        return _png_chunks_with_size(data, w, h)
    if fmt == "GIF":
        b[6:10] = struct.pack("<HH", w & 0xFFFF, h & 0xFFFF)
        i = b.find(b"\x2c", 13)  # first image descriptor
        if i > 0:
            b[i + 5 : i + 9] = struct.pack("<HH", w & 0xFFFF, h & 0xFFFF)
    elif fmt == "BMP":
        b[18:26] = struct.pack("<ii", max(-(2**31), min(w, 2**31 - 1)), max(-(2**31), min(h, 2**31 - 1)))
    elif fmt == "JPEG":
        i = next((j for j in range(2, len(b) - 9) if b[j] == 0xFF and b[j + 1] in (0xC0, 0xC1, 0xC2)), -1)
        if i > 0:
            b[i + 5 : i + 9] = struct.pack(">HH", h & 0xFFFF, w & 0xFFFF)
    elif fmt == "WEBP" and b[12:16] == b"VP8L":
        bits = ((w - 1) & 0x3FFF) | (((h - 1) & 0x3FFF) << 14)
        b[21:25] = struct.pack("<I", bits | (b[24] >> 4 << 28))
    return bytes(b)


@st.composite
def mutations(draw, data: bytes):
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "flip", "truncate", "insert", "delete", "overwrite-header"]))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == "flip" and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del b[i:]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del b[i : i + draw(st.integers(1, 64))]
        elif b:
            j = draw(st.integers(0, min(40, len(b) - 1)))
            b[j : j + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(b)


photo = st.sampled_from(PHOTOS)
PARAM_VALUES = {
    "modifier": st.one_of(
        st.sampled_from(["dress", "", "   ", "\x00", "Green bag", "x" * 501, "日本語 🙂", "' OR 1=1 --"]),
        st.text(max_size=40),
    ),
    "modifier_weight": st.one_of(
        st.sampled_from(["0", "1", "0.5", "-0.1", "1.5", "nan", "inf", "-inf", "abc", "", "1e400"]),
        st.floats().map(repr),
    ),
    "category": st.sampled_from(["Red shirt", "Green bag", "Blue shoe", "Hats", "", "red shirt", "'", "\x00"]),
    "min_price": st.one_of(
        st.sampled_from(["0", "11", "-1", "nan", "inf", "-inf", "1e400", "1e308", "abc", ""]), st.floats().map(repr)
    ),
    "max_price": st.one_of(
        st.sampled_from(["0", "12", "100", "-1", "nan", "inf", "1e400", "abc", ""]), st.floats().map(repr)
    ),
    "limit": st.one_of(
        st.sampled_from(["1", "5", "100", "0", "-1", "101", "1e2", "abc", "", str(10**30)]), st.integers().map(str)
    ),
    "offset": st.one_of(st.sampled_from(["0", "3", "35", "1000", "1001", "-1", "abc", ""]), st.integers().map(str)),
}
params = st.one_of(  # one or two odd parameters (so one invalid value does not hide the others), or any mix
    st.lists(st.sampled_from(sorted(PARAM_VALUES)), min_size=1, max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: PARAM_VALUES[k] for k in keys})
    ),
    st.fixed_dictionaries({}, optional=PARAM_VALUES),
)


rarely = st.sampled_from(range(10)).map(lambda i: i == 9)  # True 1 in 10


@st.composite
def upload(draw):
    """(body, content type or None for no header, query params, whether it must succeed, chunked)."""
    kind = draw(
        st.sampled_from(
            [
                "random",
                "photo",
                "photo",
                "mutated",
                "mutated",
                "mutated",
                "huge-header",
                "multipart",
                "empty",
                "oversize",
            ]
        )
    )
    q = draw(
        st.one_of(st.just({}), st.just({}), st.just({}), params)
    )  # mostly the photo path, sometimes odd parameters
    must_succeed = False
    if kind == "random":
        body = draw(
            st.binary(max_size=4096)
            | st.binary(max_size=64).map(lambda b: b"\x89PNG\r\n\x1a\n" + b)
            | st.binary(max_size=64).map(lambda b: b"\xff\xd8\xff" + b)
            | st.binary(max_size=64).map(lambda b: b"GIF89a" + b)
            | st.binary(max_size=64).map(lambda b: b"RIFF\x00\x00\x00\x00WEBPVP8 " + b)
            | st.binary(max_size=64).map(lambda b: b"BM" + b)
        )
        ctype = draw(st.sampled_from([*MIME.values(), "application/octet-stream"]) | st.sampled_from(CONTENT_TYPES))
    elif kind in ("photo", "mutated", "huge-header"):
        fmt, body, (w, h) = draw(photo)
        own = MIME.get(fmt, "application/octet-stream")
        ctype = draw(
            st.one_of(st.just(own), st.just(own), st.just("application/octet-stream"), st.sampled_from(CONTENT_TYPES))
        )
        if kind == "mutated":
            body = draw(mutations(body))
        elif kind == "huge-header":
            w, h = draw(
                st.sampled_from(
                    [
                        (0, 0),
                        (0, 10),
                        (65535, 65535),
                        (MAX_SIDE + 1, 1),
                        (1, MAX_SIDE + 1),
                        (600, 500),
                        (2**31 - 1, 1),
                        (10_000, 10_000),
                        (1, 2**24),
                    ]
                )
            )
            body = with_size(fmt, body, w, h)
        else:
            ok_params = not q or set(q) <= {"limit"} and q["limit"].isdigit() and 1 <= int(q["limit"]) <= 100
            must_succeed = fmt in ACCEPTED and ctype in (MIME.get(fmt), "application/octet-stream") and ok_params
    elif kind == "multipart":
        fmt, data, _ = draw(photo)
        boundary = "lensflowfuzz"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
                f"Content-Type: {MIME.get(fmt, 'image/png')}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        ctype = draw(
            st.sampled_from([f"multipart/form-data; boundary={boundary}", "image/png", "application/octet-stream"])
        )
    elif kind == "empty":
        body, ctype = b"", draw(st.sampled_from([*MIME.values(), "application/octet-stream", None]))
    else:  # larger than the upload limit: refused, whether the length is declared or the body streams in chunks
        body, ctype = b"\xff\xd8\xff" + bytes(draw(st.integers(MAX_UPLOAD - 2, MAX_UPLOAD + 50_000))), "image/jpeg"
    if draw(rarely) and ctype is not None and kind != "empty":
        ctype, must_succeed = None, False  # no Content-Type header at all
    chunked = draw(rarely | rarely.map(lambda r: not r))  # about 1 in 2: a streamed body of unknown length
    return kind, body, ctype, q, must_succeed, chunked


def fuzz_settings(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


# -------------------------------------------------------------------------------------------- oracle
def check_response(r: httpx.Response, svc_root: str, catalog, q: dict, must_succeed: bool) -> str:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    if r.status_code == 200:
        assert set(body) == {"model_version", "results", "limit", "offset", "took_ms", "facets"}, body
        assert body["model_version"] == 1 and r.headers["X-Model-Version"] == "1"
        assert 1 <= body["limit"] <= 100 and 0 <= body["offset"] <= 1000 and len(body["results"]) <= body["limit"]
        if "limit" in q:
            assert body["limit"] == int(q["limit"])
        ids = set(catalog["product_id"])
        for hit in body["results"]:
            assert hit["product_id"] in ids and hit["image_url"] == f"/images/{hit['product_id']}"
            assert isinstance(hit["score"], float) and math.isfinite(hit["score"]) and -1.01 <= hit["score"] <= 1.01
            if "category" in q:
                assert hit["category"] == q["category"]
            if "min_price" in q:
                assert hit["price"] >= float(q["min_price"])
            if "max_price" in q:
                assert hit["price"] <= float(q["max_price"])
        pids = [h["product_id"] for h in body["results"]]
        assert len(pids) == len(set(pids)), "a product appears twice on one page"
        return "200"
    assert must_succeed is False, f"a valid photo was refused: {r.status_code} {r.text[:300]}"
    assert 400 <= r.status_code < 500 and isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    for leak in ("/work", "/tmp", svc_root, "Traceback", 'File "'):
        assert leak not in r.text, f"{r.status_code} error leaks {leak!r}: {r.text[:300]}"
    return str(r.status_code)


# --------------------------------------------------------------------------------------------- test
def test_fuzz_photo_upload_never_5xx_and_errors_are_clean(svc):
    service, s, catalog = svc
    outcomes: dict[str, int] = {}
    sent = [0]

    with httpx.Client(base_url=service.url, timeout=60) as client:

        @fuzz_settings(N)
        @given(upload())
        def run(case):
            kind, body, ctype, q, must_succeed, chunked = case
            headers = {} if ctype is None else {"Content-Type": ctype}
            content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked and body else body
            r = client.post("/search/image", content=content, headers=headers, params=q)
            sent[0] += 1
            status = check_response(r, str(s.root), catalog, q, must_succeed)
            outcomes[f"{kind} {status}"] = outcomes.get(f"{kind} {status}", 0) + 1

        run()
        health = client.get("/health").json()
    print(f"upload fuzz: {sent[0]} requests; " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    assert sent[0] >= N
    assert health["status"] == "ok" and health["model_version"] == 1  # the service is still up and serving
    statuses = {k.split()[1] for k in outcomes}
    assert {"200", "400", "413", "415"} <= statuses, outcomes  # every kind of answer was exercised

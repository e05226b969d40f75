"""How a photo reaches /search/image, /describe and /detect: the raw body (Content-Type image/*), a
multipart/form-data upload (a file part named `image`, what `curl -F image=@photo.jpg` and storefront forms send),
or a JSON body `{"image": "<base64>"}` (a data: URL is accepted too). All three stream the body under the same
upload limit and fail with the same error shapes (search.BadQuery: 413, 415, 400)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from lensflow.serving.schemas import IMAGE_TYPES
from lensflow.serving.schemas import PHOTO_FIELD as FIELD
from lensflow.serving.search import BadQuery

MULTIPART = "multipart/form-data"
JSON = "application/json"
HOW = (
    "send the image bytes with Content-Type image/jpeg, image/png, image/webp, image/gif or image/bmp; "
    f"or multipart/form-data with a file part named {FIELD!r} (curl -F {FIELD}=@photo.jpg); "
    f'or application/json {{"{FIELD}": "<base64>"}}'
)


def too_large(limit: int) -> BadQuery:
    return BadQuery(f"request body larger than {limit} bytes", 413)


async def bounded(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body's chunks, refusing (413) once more than `limit` bytes arrived (a chunked body declares
    no length, so the middleware's Content-Length check cannot catch it)."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise too_large(limit)
        yield chunk


async def read_all(request: Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in bounded(request, limit):
        data += chunk
    return bytes(data)


async def from_multipart(request: Request, limit: int) -> bytes:
    """The bytes of the part named `image` (or of the only file part). Parsed in memory: the body is bounded by
    `limit`, so parts never spool to a temp file, and the client's file name is never used."""
    parser = MultiPartParser(request.headers, bounded(request, limit), max_files=4, max_fields=16, max_part_size=limit)
    parser.spool_max_size = limit + 1
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadQuery(f"unreadable multipart body: {exc.message}", 400) from exc
    try:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        part = form.get(FIELD)
        if not isinstance(part, UploadFile):
            if part is not None or len(files) != 1:
                raise BadQuery(f"the multipart body has no file part named {FIELD!r}; {HOW}", 400)
            part = files[0]
        return await part.read()
    finally:
        await form.close()


def from_base64(text: bytes) -> bytes:
    """The photo inside a JSON body {"image": "<base64>"} (plain or a data: URL)."""
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadQuery(f"the JSON body is not valid JSON ({exc}); {HOW}", 400) from exc
    value = body.get(FIELD) if isinstance(body, dict) else None
    if not isinstance(value, str):
        raise BadQuery(f'the JSON body needs a string field {FIELD!r} holding the base64 photo: {{"{FIELD}": "..."}}')
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadQuery(f"field {FIELD!r} is not valid base64 ({exc})", 400) from exc


async def read_photo(request: Request, limit: int) -> bytes:
    """The photo's bytes from whichever of the three forms the request used; at most `limit` bytes of photo."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype in IMAGE_TYPES:
        data = await read_all(request, limit)
    elif ctype == MULTIPART:
        data = await from_multipart(request, limit)
    elif ctype == JSON:
        # base64 is 4/3 of the bytes it carries; the decoded photo is held to `limit` below
        data = from_base64(await read_all(request, limit * 4 // 3 + 1024))
    else:
        raise BadQuery(f"content type {ctype or 'missing'!r} is not a photo upload; {HOW}", 415)
    if len(data) > limit:
        raise too_large(limit)
    return data

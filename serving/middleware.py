"""What happens around every request, in one middleware (one hop, not five): a request id (the caller's valid
X-Request-ID, or a new one) returned in X-Request-ID and put on every log record; the optional API key; the
optional per-client rate limit; the body-size limit before any body is read; a generic 500 for anything
unexpected; metrics and the access log."""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid

from fastapi import Request
from fastapi.responses import JSONResponse

from lensflow.serving import logs
from lensflow.serving.errors import internal_error
from lensflow.serving.ratelimit import client_id

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# reachable without the API key: the page, probes, and the API's own documentation
PUBLIC = frozenset({"/", "/livez", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def presented_key(request: Request) -> str | None:
    """The key from `X-API-Key: KEY` or `Authorization: Bearer KEY`."""
    key = request.headers.get("x-api-key")
    if key is None:
        scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
        key = value.strip() if scheme.lower() == "bearer" else None
    return key


def key_ok(expected: str, presented: str | None) -> bool:
    """Constant-time comparison (no timing leak of how much of the key matched)."""
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


def refuse_early(request: Request) -> JSONResponse | None:
    """The answer for a request refused before it reaches a route: a missing/wrong API key (401), a client over
    its rate (429, with Retry-After), or a declared body over the limit (413). None: let it through."""
    settings = request.app.state.settings
    if settings.api_key is not None and request.url.path not in PUBLIC and request.method != "OPTIONS":
        if not key_ok(settings.api_key.get_secret_value(), presented_key(request)):
            return JSONResponse(
                {"error": "missing or wrong API key: send it as X-API-Key: KEY or Authorization: Bearer KEY"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="lensflow"'},
            )
    limiter = request.app.state.rate_limiter
    if limiter is not None and request.url.path not in PUBLIC and request.url.path != "/metrics":
        client = client_id(presented_key(request), request.client.host if request.client else None)
        wait = limiter.hit(client)
        if wait is not None:
            return JSONResponse(
                {"error": f"rate limit exceeded ({limiter.spec} per client): retry in {wait} s"},
                429,
                headers={"Retry-After": str(wait)},
            )
    limit = settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return JSONResponse({"error": f"request body larger than {limit} bytes"}, 413)
    return None


async def around(request: Request, call_next):
    """Request id, key and size checks, the generic 500, then metrics and one access-log line per request."""
    incoming = request.headers.get("x-request-id") or ""
    rid = incoming if REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    token = logs.request_id.set(rid)
    t0 = time.perf_counter()
    try:
        response = refuse_early(request)
        if response is None:
            try:
                response = await call_next(request)
            except Exception as exc:  # answered here, not by Starlette's outermost handler (unredacted log)
                response = internal_error(request, exc)
        response.headers["X-Request-ID"] = rid
        seconds = time.perf_counter() - t0
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        request.app.state.metrics.observe(template, request.method, response.status_code, seconds)
        if logs.access.isEnabledFor(logging.INFO):
            logs.access.info(
                "%s %s %d %.1f ms",
                request.method,
                request.url.path,
                response.status_code,
                seconds * 1000,
                extra={
                    "method": request.method,
                    "path": request.url.path,
                    "route": template,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 2),
                    "model_version": response.headers.get("x-model-version"),
                    "client": request.client.host if request.client else None,
                },
            )
        return response
    finally:
        logs.request_id.reset(token)

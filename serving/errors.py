"""How the search service answers what went wrong: a caller's mistake (search.BadQuery, invalid parameters) as a
4xx with a clear message, anything unexpected as a generic 500 whose redacted details go only to the server log,
and a declared body over the upload limit as a 413 before it is read. `install` puts all of it on an app."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from lensflow.core.redact import format_exception
from serving import search as S

log = logging.getLogger("lensflow.serving")


def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A generic 500 with an id; the (redacted) traceback goes to the server log under that id, never to the client."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s %s\n%s", error_id, request.method, request.url.path, format_exception(exc))
    return JSONResponse({"error": "internal error", "id": error_id}, 500)


async def bounded_body(request: Request, call_next):
    """Refuse a declared body over the limit before reading it; answer an unexpected error here (not in
    Starlette's outermost handler, which re-raises it to the server's own unredacted log)."""
    limit = request.app.state.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return JSONResponse({"error": f"request body larger than {limit} bytes"}, 413)
    try:
        return await call_next(request)
    except Exception as exc:
        return internal_error(request, exc)


async def bad_query(request: Request, exc: S.BadQuery) -> JSONResponse:
    """A mistake the caller can fix: its message, with the status the search chose."""
    return JSONResponse({"error": str(exc)}, exc.status)


async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's parameter validation as one line, `<parameter>: <problem>; ...` (the Error model, not FastAPI's)."""
    msgs = [
        f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'path', 'body'))}: {e['msg']}" for e in exc.errors()
    ]
    return JSONResponse({"error": "; ".join(msgs)}, 422)


async def internal(request: Request, exc: Exception) -> JSONResponse:
    """Any other exception a route raises: the generic 500."""
    return internal_error(request, exc)


def install(app: FastAPI) -> None:
    """Add the body-size middleware and the exception handlers to `app` (which holds its Settings in app.state)."""
    app.middleware("http")(bounded_body)
    app.add_exception_handler(S.BadQuery, bad_query)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, internal)

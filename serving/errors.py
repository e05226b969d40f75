"""How the search service answers what went wrong, always in one shape, `{"error": message}` (the Error model;
a 500 adds `id`): a caller's mistake (search.BadQuery, invalid parameters) as a 4xx with a clear message, an unknown
route or method as 404/405, anything unexpected as a generic 500 whose redacted details go only to the server log.
`install` puts the handlers on an app (the middleware answers 401/413 and unexpected errors in the same shape)."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lensflow.core.redact import format_exception
from lensflow.serving import logs
from lensflow.serving import search as S

log = logging.getLogger("lensflow.serving")


def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A generic 500 with an id (the request's id); the (redacted) traceback goes to the server log under that id,
    never to the client."""
    error_id = logs.request_id.get() or uuid.uuid4().hex
    log.error("internal error %s on %s %s\n%s", error_id, request.method, request.url.path, format_exception(exc))
    return JSONResponse({"error": "internal error", "id": error_id}, 500)


async def bad_query(request: Request, exc: S.BadQuery) -> JSONResponse:
    """A mistake the caller can fix: its message, with the status the search chose."""
    return JSONResponse({"error": str(exc)}, exc.status)


async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's parameter validation as one line, `<parameter>: <problem>; ...` (the Error model, not FastAPI's)."""
    msgs = [
        f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'path', 'body'))}: {e['msg']}" for e in exc.errors()
    ]
    return JSONResponse({"error": "; ".join(msgs)}, 422)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own answers (unknown route 404, wrong method 405 with its Allow header) in the Error shape."""
    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code, exc.headers)


async def internal(request: Request, exc: Exception) -> JSONResponse:
    """Any other exception a route raises: the generic 500."""
    return internal_error(request, exc)


def install(app: FastAPI) -> None:
    """Add the exception handlers to `app`."""
    app.add_exception_handler(S.BadQuery, bad_query)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, internal)

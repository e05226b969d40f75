"""The search service: FastAPI over the champion's encoder and exactly its index, swapped atomically when
the `champion` alias moves. `lensflow serve` runs it; `create_app(settings)` builds it."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from lensflow.redact import format_exception, public_message, redact
from lensflow.settings import Settings
from serving import search as S
from tasks.champion import IndexMismatch, NoChampion, Served, load_champion, resolve_version

log = logging.getLogger("lensflow.serving")
PAGE = Path(__file__).with_name("page.html")
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "application/octet-stream"}
MEDIA = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


@dataclass(frozen=True)
class Live:
    """One consistent (encoder, index) pair; a request holds it from start to end."""

    served: Served
    catalog: S.Catalog
    loaded_at: str

    @property
    def version(self) -> int:
        return self.served.champion.version

    @property
    def key(self) -> tuple:
        idx = self.served.champion.index
        return self.version, idx["table"], idx["version"]


def load_live(settings: Settings) -> Live:
    served = load_champion(settings)
    return Live(served, S.Catalog.of(served.table), dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


class ChampionWatcher:
    """Polls the `champion` alias; when it (or its index) changes, loads and verifies the new pair in this
    background thread, then swaps one reference. A failed load keeps serving the old pair."""

    def __init__(self, settings: Settings, poll_s: float, loader=load_live):
        self.settings, self.poll_s, self.loader = settings, poll_s, loader
        self.live: Live | None = None
        self.error: str | None = None
        self.checked_at: str | None = None
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Load the champion if it is not the one being served. Returns whether it swapped."""
        try:
            champ = resolve_version(self.settings)
            idx = champ.index
            if self.live is not None and self.live.key == (champ.version, idx["table"], idx["version"]):
                self.error = None
                return False
            new = self.loader(self.settings)
        except (NoChampion, IndexMismatch) as exc:
            self.error = redact(str(exc))
            log.warning("champion not (re)loaded: %s", self.error)
            return False
        except Exception as exc:  # keep serving what works; say why in /health
            self.error = redact(f"{type(exc).__name__}: {exc}")
            log.error("champion not (re)loaded\n%s", format_exception(exc))
            return False
        finally:
            self.checked_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        old, self.live = self.live, new
        self.error = None
        self.swaps += old is not None
        log.info(
            "serving %s v%d (index %s v%s)%s",
            new.served.champion.name,
            new.version,
            new.served.champion.index["table"],
            new.served.champion.index["version"],
            f", was v{old.version}" if old else "",
        )
        return True

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()


class Hit(BaseModel):
    product_id: str
    title: str
    category: str
    price: float | None = None
    score: float = Field(description="cosine similarity (vector search) or reciprocal-rank-fusion score (hybrid)")
    image_url: str = Field(description="the product photo, served by this app")
    vector_rank: int | None = Field(None, description="hybrid only: rank in the vector results")
    text_rank: int | None = Field(None, description="hybrid only: rank in the full-text results")


class SearchResponse(BaseModel):
    model_version: int = Field(description="the model version (and its index) that answered")
    results: list[Hit]
    limit: int
    offset: int
    took_ms: float


class Region(BaseModel):
    box: list[int] = Field(description="x0, y0, x1, y1 in the upright photo's pixels")
    relative: list[float] = Field(
        description="the same box as fractions of the width and height (pass as `box=` to /search/image)"
    )
    score: float = Field(description="share of the photo's salient mass in this region")


class RegionsResponse(BaseModel):
    model_version: int
    width: int
    height: int
    regions: list[Region] = Field(description="the products found, most salient first")


class IndexInfo(BaseModel):
    table: str
    version: int
    rows: int
    fingerprint: str = Field(
        description="DVC md5 of the index directory (<md5>.dir), or in an object store the md5 of its "
        "objects' keys, sizes and ETags (<md5>.etags)"
    )


class VersionInfo(BaseModel):
    model: str
    model_version: int
    index: IndexInfo
    data_md5: str | None = Field(description="the catalog version the index reflects")
    git_commit: str | None
    loaded_at: str
    categories: list[str]
    has_price: bool


class Health(BaseModel):
    status: Literal["ok", "no-champion"]
    model_version: int | None
    checked_at: str | None
    swaps: int = Field(description="champion swaps since start")
    error: str | None = Field(
        None,
        description="why the latest champion check did not load a new pair (without paths "
        "or credentials: the server log has the details)",
    )


class Error(BaseModel):
    error: str
    id: str | None = Field(None, description="500 only: the id of the server log entry with the details")


def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A generic 500 with an id; the (redacted) traceback goes to the server log under that id, never to the client."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s %s\n%s", error_id, request.method, request.url.path, format_exception(exc))
    return JSONResponse({"error": "internal error", "id": error_id}, 500)


ERRORS = {
    400: {"model": Error},
    404: {"model": Error},
    413: {"model": Error},
    415: {"model": Error},
    422: {"model": Error},
    500: {"model": Error},
    503: {"model": Error},
}


def create_app(settings: Settings, watcher: ChampionWatcher | None = None) -> FastAPI:
    watcher = watcher or ChampionWatcher(settings, settings.swap_poll_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        watcher.start()
        yield
        watcher.stop()

    app = FastAPI(
        title="lensflow search",
        version="1",
        lifespan=lifespan,
        description="Search the champion model's index by photo, text, photo + text modifier, or "
        "product (more like this). Every response names the model version that answered.",
    )
    app.state.watcher = watcher

    @app.middleware("http")
    async def bounded_body(request: Request, call_next):
        """Refuse a declared body over the limit before reading it; answer an unexpected error here (not in
        Starlette's outermost handler, which re-raises it to the server's own unredacted log)."""
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_upload_bytes):
            return JSONResponse({"error": f"request body larger than {settings.max_upload_bytes} bytes"}, 413)
        try:
            return await call_next(request)
        except Exception as exc:
            return internal_error(request, exc)

    @app.exception_handler(S.BadQuery)
    async def bad_query(request: Request, exc: S.BadQuery):
        return JSONResponse({"error": str(exc)}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        msgs = [
            f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'path', 'body'))}: {e['msg']}"
            for e in exc.errors()
        ]
        return JSONResponse({"error": "; ".join(msgs)}, 422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        return internal_error(request, exc)

    def live() -> Live:
        current = watcher.live
        if current is None:
            raise S.BadQuery(
                "no champion is being served yet" + (f": {public_message(watcher.error)}" if watcher.error else ""), 503
            )
        return current

    def respond(cur: Live, rows: list[dict], limit: int, offset: int, t0: float) -> JSONResponse:
        body = SearchResponse(
            model_version=cur.version,
            limit=limit,
            offset=offset,
            took_ms=round((time.perf_counter() - t0) * 1000, 2),
            results=[Hit(**r, image_url=f"/images/{r['product_id']}") for r in rows],
        )
        return JSONResponse(body.model_dump(), headers={"X-Model-Version": str(cur.version)})

    async def photo_body(request: Request) -> bytes:
        """The photo's bytes from the request body, with its content type and size checked."""
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype not in IMAGE_TYPES:
            raise S.BadQuery(
                f"content type {ctype or 'missing'!r} is not a photo; send the image bytes with "
                "Content-Type image/jpeg, image/png, image/webp, image/gif or image/bmp",
                415,
            )
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > settings.max_upload_bytes:
                raise S.BadQuery(f"request body larger than {settings.max_upload_bytes} bytes", 413)
        return bytes(data)

    def text_query(q: str) -> str:
        q = q.strip()
        if not q:
            raise S.BadQuery("the query is empty")
        return q

    Limit = Query(10, ge=1, le=100, description="results per page")
    Offset = Query(0, ge=0, le=1000, description="results to skip (pagination)")
    Category = Query(None, description="only this category (applied inside the vector search)")
    MinPrice = Query(None, ge=0, description="only products at or above this price (catalogs with prices)")
    MaxPrice = Query(None, ge=0, description="only products at or below this price (catalogs with prices)")

    @app.get("/search/text", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    def search_text(
        q: str = Query(..., max_length=500, description="what the shopper typed"),
        mode: Literal["vector", "hybrid"] = Query(
            "vector", description="hybrid: full-text on titles fused with vector scores (reciprocal rank)"
        ),
        category: str | None = Category,
        min_price: float | None = MinPrice,
        max_price: float | None = MaxPrice,
        limit: int = Limit,
        offset: int = Offset,
    ):
        """Search by text."""
        t0, cur = time.perf_counter(), live()
        q = text_query(q)
        f = S.Filters(category, min_price, max_price)
        vec = S.text_vector(cur.served, q)
        rows = (
            S.hybrid(cur.served, cur.catalog, q, vec, limit, offset, f)
            if mode == "hybrid"
            else S.by_vector(cur.served, cur.catalog, vec, limit, offset, f)
        )
        return respond(cur, rows, limit, offset, t0)

    @app.post(
        "/search/image",
        response_model=SearchResponse,
        responses=ERRORS,
        tags=["search"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "the photo's bytes (not multipart)",
                "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(IMAGE_TYPES)},
            }
        },
    )
    async def search_image(
        request: Request,
        modifier: str | None = Query(
            None, max_length=500, description="text modifier: \"like this, but <modifier>\", e.g. 'dress'"
        ),
        modifier_weight: float = Query(0.5, ge=0, le=1, description="weight of the modifier text"),
        box: str | None = Query(
            None,
            max_length=100,
            description="search only inside this box of the "
            "upright photo: x0,y0,x1,y1, relative (all values <= 1) or pixels; "
            "the product is still located inside it",
        ),
        category: str | None = Category,
        min_price: float | None = MinPrice,
        max_price: float | None = MaxPrice,
        limit: int = Limit,
        offset: int = Offset,
    ):
        """Search by photo (the request body), optionally with a text modifier. The product is located in the
        photo and cropped before it is embedded (inside `box` when given)."""
        from starlette.concurrency import run_in_threadpool

        t0, cur = time.perf_counter(), live()
        data = await photo_body(request)
        mod = text_query(modifier) if modifier is not None else None
        f = S.Filters(category, min_price, max_price)

        def work():
            image = S.decode_image(data, settings.max_image_pixels, settings.max_image_side, S.photo_side(cur.served))
            vec = S.image_vector(cur.served, image, S.parse_box(box, image.size))
            if mod:
                vec = S.with_modifier(vec, S.text_vector(cur.served, mod), modifier_weight)
            return S.by_vector(cur.served, cur.catalog, vec, limit, offset, f)

        return respond(cur, await run_in_threadpool(work), limit, offset, t0)

    @app.post(
        "/detect",
        response_model=RegionsResponse,
        responses=ERRORS,
        tags=["search"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "the photo's bytes (not multipart)",
                "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(IMAGE_TYPES)},
            }
        },
    )
    async def detect(request: Request):
        """The products found in a photo (as /search/image locates them), to search each one with `box=`."""
        from starlette.concurrency import run_in_threadpool

        cur = live()
        data = await photo_body(request)

        def work():
            image = S.decode_image(data, settings.max_image_pixels, settings.max_image_side, S.photo_side(cur.served))
            return RegionsResponse(
                model_version=cur.version,
                width=image.width,
                height=image.height,
                regions=[Region(**r) for r in S.photo_regions(cur.served, image)],
            )

        body = await run_in_threadpool(work)
        return JSONResponse(body.model_dump(), headers={"X-Model-Version": str(cur.version)})

    @app.get("/products/{product_id}/similar", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    def more_like_this(
        product_id: str,
        category: str | None = Category,
        min_price: float | None = MinPrice,
        max_price: float | None = MaxPrice,
        limit: int = Limit,
        offset: int = Offset,
    ):
        """More like this: products nearest to a product's own vector (itself excluded)."""
        t0, cur = time.perf_counter(), live()
        vec = S.product_vector(cur.served, product_id)
        rows = S.by_vector(
            cur.served,
            cur.catalog,
            vec,
            limit,
            offset,
            S.Filters(category, min_price, max_price),
            exclude_id=product_id,
        )
        return respond(cur, rows, limit, offset, t0)

    @app.get(
        "/images/{product_id}",
        tags=["catalog"],
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, 404: {"model": Error}},
        response_class=FileResponse,
    )
    def product_image(product_id: str):
        """The product's photo from the catalog."""
        cur = live()
        rel = cur.catalog.image_paths.get(product_id)
        if rel is None:
            raise S.BadQuery(f"unknown product id {product_id!r}", 404)
        data = settings.data_path.resolve()
        path = (data / rel).resolve()
        if not path.is_relative_to(data) or not path.is_file():
            raise S.BadQuery(f"no image for product {product_id!r}", 404)
        return FileResponse(
            path,
            media_type=MEDIA.get(path.suffix.lower(), "application/octet-stream"),
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @app.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["service"])
    def health():
        """ok when a champion is served; 503 before the first one loads."""
        cur = watcher.live
        body = Health(
            status="ok" if cur else "no-champion",
            model_version=cur.version if cur else None,
            checked_at=watcher.checked_at,
            swaps=watcher.swaps,
            error=public_message(watcher.error),
        )
        return JSONResponse(body.model_dump(), 200 if cur else 503)

    @app.get("/version", response_model=VersionInfo, responses=ERRORS, tags=["service"])
    def version():
        """The model version served, its index (table, LanceDB version, rows, DVC md5) and data md5."""
        cur = live()
        ch = cur.served.champion
        idx = ch.index
        return VersionInfo(
            model=ch.name,
            model_version=ch.version,
            loaded_at=cur.loaded_at,
            index=IndexInfo(
                table=idx["table"], version=idx["version"], rows=idx["rows"], fingerprint=idx["fingerprint"]
            ),
            data_md5=idx["data_md5"],
            git_commit=ch.tags.get("git_commit"),
            categories=cur.catalog.categories,
            has_price=cur.catalog.has_price,
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(PAGE.read_text())

    return app

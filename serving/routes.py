"""Every route of the search API, on one APIRouter (create_app includes it). A route is one module-level function;
what routes share comes in through FastAPI dependencies: the served pair (`CurrentLive`), the filters and page
(`ShopFilters`, `Paging`), the settings, the watcher and the photo body reader, all read from `app.state`."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from lensflow.core.redact import public_message
from lensflow.core.settings import Settings
from lensflow.serving import describe as D
from lensflow.serving import recommend as R
from lensflow.serving import search as S
from lensflow.serving import uploads
from lensflow.serving.schemas import (
    ERRORS,
    PHOTO_BODY,
    DescribeResponse,
    Error,
    Health,
    Hit,
    IndexInfo,
    LookGroup,
    LookResponse,
    RecommendRequest,
    Region,
    RegionsResponse,
    SearchResponse,
    VersionInfo,
)
from lensflow.serving.watcher import ChampionWatcher, Live

router = APIRouter()
MEDIA = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


# --- dependencies (async: they only read state, so no thread hop per request) ----------------------------------


async def app_settings(request: Request) -> Settings:
    """The Settings create_app was given."""
    return request.app.state.settings


async def champion_watcher(request: Request) -> ChampionWatcher:
    """The app's ChampionWatcher (for /health, which answers with or without a champion)."""
    return request.app.state.watcher


AppSettings = Annotated[Settings, Depends(app_settings)]
Watcher = Annotated[ChampionWatcher, Depends(champion_watcher)]


async def current_live(watcher: Watcher) -> Callable[[], Live]:
    """The pair being served when the request arrived, held for the whole request (a swap meanwhile does not mix
    versions). The route calls it: before the first champion loads that is a 503 saying why (without paths),
    after the request's parameters were validated (a bad request is a 422 either way)."""
    current, error = watcher.live, watcher.error

    def held() -> Live:
        if current is None:
            raise S.BadQuery("no champion is being served yet" + (f": {public_message(error)}" if error else ""), 503)
        return current

    return held


async def filters(
    category: str | None = Query(None, description="only this category (applied inside the vector search)"),
    min_price: float | None = Query(
        None, ge=0, description="only products at or above this price (catalogs with prices)"
    ),
    max_price: float | None = Query(
        None, ge=0, description="only products at or below this price (catalogs with prices)"
    ),
    attributes: list[str] = Query(
        [],
        alias="filter",
        max_length=10,
        description="COLUMN:VALUE, repeatable: only products with that value in an optional catalog column "
        "(color, brand) or enrichment column (predicted_category; colours: one colour tag), e.g. filter=color:red",
    ),
) -> S.Filters:
    """The filter query parameters of every search route (checked against the catalog by the search itself)."""
    return S.Filters(category, min_price, max_price, S.parse_attributes(attributes))


@dataclass(frozen=True)
class Page:
    """One request's page of results: `limit` of them after skipping `offset`."""

    limit: int
    offset: int


async def page(
    limit: int = Query(10, ge=1, le=100, description="results per page"),
    offset: int = Query(0, ge=0, le=1000, description="results to skip (pagination)"),
) -> Page:
    """The pagination query parameters of every search route."""
    return Page(limit, offset)


async def photo_reader(request: Request, settings: AppSettings) -> Callable[[], Awaitable[bytes]]:
    """`await read()` reads the photo: the route calls it, so the parameters are validated and the 503 given
    before any of the body is read, and the read counts in took_ms."""
    return functools.partial(uploads.read_photo, request, settings.max_upload_bytes)


CurrentLive = Annotated[Callable[[], Live], Depends(current_live)]
ShopFilters = Annotated[S.Filters, Depends(filters)]
Paging = Annotated[Page, Depends(page)]
PhotoReader = Annotated[Callable[[], Awaitable[bytes]], Depends(photo_reader)]


def upright(data: bytes, settings: Settings, cur: Live):
    """The uploaded photo decoded upright within the service's limits, at the resolution the encoder needs."""
    return S.decode_image(data, settings.max_image_pixels, settings.max_image_side, S.photo_side(cur.served.encoder))


def hits(rows: list[dict]) -> list[Hit]:
    return [Hit(**r, image_url=f"/images/{r['product_id']}") for r in rows]


def respond(cur: Live, ranked: tuple[list[dict], dict], pg: Page, t0: float) -> JSONResponse:
    """A SearchResponse for (rows, facets), labelled (body and X-Model-Version) with the version that answered."""
    rows, facets = ranked
    body = SearchResponse(
        model_version=cur.version,
        limit=pg.limit,
        offset=pg.offset,
        took_ms=round((time.perf_counter() - t0) * 1000, 2),
        results=hits(rows),
        facets=facets,
    )
    return JSONResponse(body.model_dump(), headers={"X-Model-Version": str(cur.version)})


# --- routes -----------------------------------------------------------------------------------------------------


@router.get("/search/text", response_model=SearchResponse, responses=ERRORS, tags=["search"])
def search_text(
    held: CurrentLive,
    f: ShopFilters,
    pg: Paging,
    q: str = Query(..., max_length=500, description="what the shopper typed"),
    mode: Literal["vector", "hybrid"] = Query(
        "vector", description="hybrid: full-text on titles fused with vector scores (reciprocal rank)"
    ),
):
    """Search by text."""
    cur = held()
    t0 = time.perf_counter()
    q = S.text_query(q)
    vec = S.text_vector(cur.served, q)
    rows = (
        S.hybrid(cur.served, cur.catalog, q, vec, pg.limit, pg.offset, f)
        if mode == "hybrid"
        else S.by_vector(cur.served, cur.catalog, vec, pg.limit, pg.offset, f)
    )
    return respond(cur, rows, pg, t0)


@router.post(
    "/search/image", response_model=SearchResponse, responses=ERRORS, tags=["search"], openapi_extra=PHOTO_BODY
)
async def search_image(
    held: CurrentLive,
    read: PhotoReader,
    settings: AppSettings,
    f: ShopFilters,
    pg: Paging,
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
):
    """Search by photo (the request body), optionally with a text modifier. The product is located in the
    photo and cropped before it is embedded (inside `box` when given)."""
    cur = held()
    t0 = time.perf_counter()
    data = await read()
    mod = S.text_query(modifier) if modifier is not None else None

    def work():
        image = upright(data, settings, cur)
        vec = S.image_vector(cur.served, image, S.photo_box(image, box))
        if mod:
            vec = S.with_modifier(vec, S.text_vector(cur.served, mod), modifier_weight)
        return S.by_vector(cur.served, cur.catalog, vec, pg.limit, pg.offset, f)

    return respond(cur, await run_in_threadpool(work), pg, t0)


@router.post("/detect", response_model=RegionsResponse, responses=ERRORS, tags=["search"], openapi_extra=PHOTO_BODY)
async def detect(held: CurrentLive, read: PhotoReader, settings: AppSettings):
    """The products found in a photo (as /search/image locates them), to search each one with `box=`."""
    cur = held()
    data = await read()

    def work():
        image = upright(data, settings, cur)
        return RegionsResponse(
            model_version=cur.version,
            width=image.width,
            height=image.height,
            regions=[Region(**r) for r in S.photo_regions(cur.served, image)],
        )

    body = await run_in_threadpool(work)
    return JSONResponse(body.model_dump(), headers={"X-Model-Version": str(cur.version)})


@router.get("/products/{product_id}/similar", response_model=SearchResponse, responses=ERRORS, tags=["search"])
def more_like_this(product_id: str, held: CurrentLive, f: ShopFilters, pg: Paging):
    """More like this: products nearest to a product's own vector (itself excluded)."""
    cur = held()
    t0 = time.perf_counter()
    vec = S.product_vector(cur.served, product_id)
    rows = S.by_vector(cur.served, cur.catalog, vec, pg.limit, pg.offset, f, exclude_id=product_id)
    return respond(cur, rows, pg, t0)


@router.post(
    "/describe", response_model=DescribeResponse, responses=ERRORS, tags=["describe"], openapi_extra=PHOTO_BODY
)
async def describe(held: CurrentLive, read: PhotoReader, settings: AppSettings):
    """Describe a photo (the request body, as for /search/image): category with confidence, dominant colours,
    a suggested title and description, and the most similar catalog products."""
    cur = held()
    data = await read()

    def work():
        image = upright(data, settings, cur)
        out = D.describe(cur.served, image, cur.catalog.result_columns, cur.captioner)
        return DescribeResponse(model_version=cur.version, **out)

    body = await run_in_threadpool(work)
    return JSONResponse(body.model_dump(), headers={"X-Model-Version": str(cur.version)})


@router.post("/recommend", response_model=SearchResponse, responses=ERRORS, tags=["recommend"])
def recommend(held: CurrentLive, body: RecommendRequest):
    """Recommended for this session: near what was viewed (the newest counts most) and liked, away from what
    was disliked; never a product the shopper viewed, liked or disliked; diversified (MMR)."""
    cur = held()
    t0 = time.perf_counter()
    f = S.Filters(body.category, body.min_price, body.max_price, body.filter)
    ranked = R.recommend(
        cur.served,
        cur.catalog,
        body.viewed,
        body.liked,
        body.disliked,
        body.limit,
        body.offset,
        f,
        diversify=body.diversify,
    )
    return respond(cur, ranked, Page(body.limit, body.offset), t0)


@router.get(
    "/products/{product_id}/complete-the-look", response_model=LookResponse, responses=ERRORS, tags=["recommend"]
)
def complete_the_look(
    product_id: str, held: CurrentLive, limit: int = Query(3, ge=1, le=20, description="products per category")
):
    """The best matches in each category that complements the product's (data/complements.json, edited by
    the catalog owner); an empty list when its category has none."""
    cur = held()
    groups = R.complete_the_look(cur.served, cur.catalog, cur.complements, product_id, limit)
    body = LookResponse(
        model_version=cur.version,
        product_id=product_id,
        category=cur.catalog.category_of[product_id],
        groups=[LookGroup(category=g["category"], results=hits(g["results"])) for g in groups],
    )
    return JSONResponse(body.model_dump(), headers={"X-Model-Version": str(cur.version)})


@router.get(
    "/images/{product_id}",
    tags=["catalog"],
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, 404: {"model": Error}},
    response_class=FileResponse,
)
def product_image(product_id: str, held: CurrentLive, settings: AppSettings):
    """The product's photo from the catalog."""
    cur = held()
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


@router.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["service"])
def health(watcher: Watcher):
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


@router.get("/livez", tags=["service"])
async def livez():
    """Liveness: the process answers (restart it when this fails). Says nothing about the champion."""
    return {"status": "alive"}


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}}, tags=["service"])
def readyz(watcher: Watcher):
    """Readiness: 200 while a champion is served (send traffic), 503 before the first one loads (do not)."""
    return health(watcher)


@router.get("/metrics", tags=["service"], response_class=Response)
def metrics(request: Request):
    """Prometheus metrics: requests, errors and latency per route; the served version, swaps, check age."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/version", response_model=VersionInfo, responses=ERRORS, tags=["service"])
def version(held: CurrentLive):
    """The model version served, its index (table, LanceDB version, rows, DVC md5) and data md5."""
    cur = held()
    ch = cur.served.champion
    idx = ch.index
    return VersionInfo(
        model=ch.name,
        model_version=ch.version,
        loaded_at=cur.loaded_at,
        index=IndexInfo(table=idx["table"], version=idx["version"], rows=idx["rows"], fingerprint=idx["fingerprint"]),
        data_md5=idx["data_md5"],
        git_commit=ch.tags.get("git_commit"),
        categories=cur.catalog.categories,
        has_price=cur.catalog.has_price,
    )

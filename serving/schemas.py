"""What the search API documents: its response and error models, the errors each route declares and the photo
request body. Pydantic only (no routes, no state), so routes and tests can share one definition."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "application/octet-stream"}
PHOTO_FIELD = "image"  # the multipart file part / JSON field that carries the photo


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
    facets: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="for category (and color, brand when the catalog has them): value -> how many of the top "
        "matching candidates have it (pass one back as a filter)",
    )


class RecommendRequest(BaseModel):
    viewed: list[str] = Field(default_factory=list, max_length=200, description="product ids viewed, oldest first")
    liked: list[str] = Field(default_factory=list, max_length=200, description="product ids liked")
    disliked: list[str] = Field(default_factory=list, max_length=200, description="product ids disliked")
    limit: int = Field(10, ge=1, le=100, description="results per page")
    offset: int = Field(0, ge=0, le=1000, description="results to skip (pagination)")
    category: str | None = Field(None, description="only this category")
    min_price: float | None = Field(None, ge=0, description="only products at or above this price")
    max_price: float | None = Field(None, ge=0, description="only products at or below this price")
    filter: dict[str, str] = Field(
        default_factory=dict, description='optional catalog column -> value (color, brand), e.g. {"color": "red"}'
    )
    diversify: bool = Field(True, description="re-rank by maximal marginal relevance (no near-duplicate lists)")


class Colour(BaseModel):
    name: str = Field(description="a plain colour name (red, navy, beige, ...)")
    share: float = Field(description="share of the product's pixels")
    rgb: list[int]


class CategoryScore(BaseModel):
    category: str
    score: float = Field(description="share of the nearest catalog products' similarity-weighted vote")


class DescribeResponse(BaseModel):
    model_version: int
    category: str = Field(description="the most likely catalog category")
    confidence: float
    categories: list[CategoryScore] = Field(description="the top 3")
    colours: list[Colour] = Field(description="dominant colours of the product, largest first")
    title: str = Field(description="a suggested title")
    description: str = Field(description="a suggested short description")
    similar: list[str] = Field(description="ids of the most similar catalog products")


class LookGroup(BaseModel):
    category: str = Field(description="a category that complements the product's (data/complements.json)")
    results: list[Hit]


class LookResponse(BaseModel):
    model_version: int
    product_id: str
    category: str
    groups: list[LookGroup] = Field(description="empty when the product's category has no complements")


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


# the error answers a search route can give, each with the Error body
ERRORS = {
    400: {"model": Error},
    404: {"model": Error},
    413: {"model": Error},
    415: {"model": Error},
    422: {"model": Error},
    500: {"model": Error},
    503: {"model": Error},
}

# OpenAPI for the routes that read a photo (serving/uploads.py; FastAPI cannot infer it: no body parameter)
PHOTO_BODY = {
    "requestBody": {
        "required": True,
        "description": f"the photo: its raw bytes, a multipart upload with a file part named {PHOTO_FIELD!r} "
        f'(curl -F {PHOTO_FIELD}=@photo.jpg), or JSON {{"{PHOTO_FIELD}": "<base64>"}}',
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(IMAGE_TYPES)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {PHOTO_FIELD: {"type": "string", "format": "binary"}},
                    "required": [PHOTO_FIELD],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {PHOTO_FIELD: {"type": "string", "format": "byte"}},
                    "required": [PHOTO_FIELD],
                }
            },
        },
    }
}

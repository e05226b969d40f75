"""A Python client for the search service (`lensflow serve`): typed methods for every search, returning the
service's own response models (serving/schemas.py), so a field the API documents is an attribute here.

    from lensflow.client import SearchClient

    with SearchClient("http://127.0.0.1:8000", api_key=None) as shop:
        for hit in shop.text("ankle boots", limit=5).results:
            print(hit.product_id, hit.title, hit.category)
        shop.photo("photo.jpg", modifier="in red")      # a path, bytes or a PIL image
        shop.similar("fm-te-00042")
        shop.recommend(viewed=["fm-te-00042", "fm-te-00007"], disliked=["fm-te-00011"])
        shop.describe(open("photo.jpg", "rb").read()).title

Needs only httpx and pydantic (no torch): a storefront backend can use it. Errors raise SearchError with the
status, the service's message and the request id (the key to the server's log)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import httpx
from pydantic import BaseModel

from lensflow.serving.schemas import (
    PHOTO_FIELD,
    DescribeResponse,
    Health,
    LookResponse,
    RecommendRequest,
    RegionsResponse,
    SearchResponse,
    VersionInfo,
)

Model = TypeVar("Model", bound=BaseModel)
Photo = str | Path | bytes | Any  # Any: a PIL.Image.Image (PIL is imported only when one is passed)


class SearchError(RuntimeError):
    """The service refused or failed a request: `status`, its `message` and the `request_id`."""

    def __init__(self, status: int, message: str, request_id: str | None):
        super().__init__(f"{status}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.status, self.message, self.request_id = status, message, request_id


def photo_bytes(photo: Photo) -> tuple[str, bytes]:
    """(file name, bytes) of a photo given as a path, bytes or a PIL image (sent as PNG: lossless)."""
    if isinstance(photo, bytes | bytearray | memoryview):
        return "photo", bytes(photo)
    if isinstance(photo, str | Path):
        path = Path(photo)
        return path.name, path.read_bytes()
    if hasattr(photo, "save"):
        buf = io.BytesIO()
        photo.save(buf, format="PNG")
        return "photo.png", buf.getvalue()
    raise TypeError(f"a photo is a path, bytes or a PIL image, not {type(photo).__name__}")


class SearchOptions(TypedDict, total=False):
    """What every search takes: the page (limit 1-100, default 10; offset) and the filters."""

    limit: int
    offset: int
    category: str
    min_price: float
    max_price: float
    filters: dict[str, str]  # optional catalog column -> value, e.g. {"color": "red"}


def search_params(options: SearchOptions) -> dict:
    """The query parameters of SearchOptions (filters as repeated filter=COLUMN:VALUE)."""
    params: dict[str, Any] = {k: v for k, v in options.items() if k != "filters" and v is not None}
    params["filter"] = [f"{k}:{v}" for k, v in (options.get("filters") or {}).items()]
    return params


class SearchClient:
    """One connection pool to a lensflow search service at `url`; `api_key` when the service sets one."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0, **httpx_options):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, **httpx_options)

    def __enter__(self) -> SearchClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, model: type[Model], method: str, path: str, **kwargs) -> Model:
        return model.model_validate(self._checked(self.http.request(method, path, **kwargs)).json())

    @staticmethod
    def _checked(r: httpx.Response) -> httpx.Response:
        """`r`, or SearchError with the service's message when it is an error."""
        if r.status_code >= 400:
            try:
                message = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:500] or r.reason_phrase
            raise SearchError(r.status_code, message, r.headers.get("x-request-id"))
        return r

    # --- searches ---------------------------------------------------------------------------------------------

    def text(
        self, q: str, *, mode: Literal["vector", "hybrid"] = "vector", **options: Unpack[SearchOptions]
    ) -> SearchResponse:
        """Search by text (`hybrid`: full-text on titles fused with the vector ranks)."""
        params = search_params(options) | {"q": q, "mode": mode}
        return self._call(SearchResponse, "GET", "/search/text", params=params)

    def photo(
        self,
        photo: Photo,
        *,
        modifier: str | None = None,
        modifier_weight: float = 0.5,
        box: tuple[float, float, float, float] | None = None,
        **options: Unpack[SearchOptions],
    ) -> SearchResponse:
        """Search by photo (a path, bytes or PIL image, uploaded as multipart), optionally "like this, but
        <modifier>", optionally only inside `box` (x0, y0, x1, y1; relative when all <= 1)."""
        params = search_params(options)
        if modifier is not None:
            params |= {"modifier": modifier, "modifier_weight": modifier_weight}
        if box is not None:
            params["box"] = ",".join(str(v) for v in box)
        return self._call(SearchResponse, "POST", "/search/image", params=params, files=self._files(photo))

    def similar(self, product_id: str, **options: Unpack[SearchOptions]) -> SearchResponse:
        """More like this product (itself excluded)."""
        params = search_params(options)
        return self._call(SearchResponse, "GET", f"/products/{product_id}/similar", params=params)

    def recommend(
        self,
        viewed: Iterable[str] = (),
        liked: Iterable[str] = (),
        disliked: Iterable[str] = (),
        **options,
    ) -> SearchResponse:
        """Recommendations for a session (viewed oldest first); `options` are RecommendRequest's other fields
        (limit, offset, category, min_price, max_price, filter, diversify), checked here before sending."""
        body = RecommendRequest(viewed=list(viewed), liked=list(liked), disliked=list(disliked), **options)
        return self._call(SearchResponse, "POST", "/recommend", json=body.model_dump())

    def complete_the_look(self, product_id: str, limit: int = 3) -> LookResponse:
        """The best matches in each category that complements the product's."""
        return self._call(LookResponse, "GET", f"/products/{product_id}/complete-the-look", params={"limit": limit})

    def describe(self, photo: Photo) -> DescribeResponse:
        """Category, confidence, colours, a suggested title and description, and similar product ids."""
        return self._call(DescribeResponse, "POST", "/describe", files=self._files(photo))

    def detect(self, photo: Photo) -> RegionsResponse:
        """The products found in a photo, to search one with `photo(..., box=region.relative)`."""
        return self._call(RegionsResponse, "POST", "/detect", files=self._files(photo))

    # --- the service ------------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether the service serves a champion now (GET /readyz)."""
        return self.http.get("/readyz").status_code == 200

    def health(self) -> Health:
        r = self.http.get("/health")
        return Health.model_validate(r.json())

    def version(self) -> VersionInfo:
        """The model version served, its index and data md5."""
        return self._call(VersionInfo, "GET", "/version")

    def image(self, product_id: str) -> bytes:
        """A product's photo."""
        return self._checked(self.http.get(f"/images/{product_id}")).content

    @staticmethod
    def _files(photo: Photo) -> dict:
        name, data = photo_bytes(photo)
        return {PHOTO_FIELD: (name, data, "application/octet-stream")}

"""The search service: FastAPI over the champion's encoder and exactly its index, swapped atomically when
the `champion` alias moves. `lensflow serve` runs it; `create_app(settings)` builds it. The pieces live in
schemas (models), watcher (hot swap), uploads (photo bodies), errors (one error shape), middleware (request id,
API key, body limit, metrics, access log), metrics, logs and routes (every endpoint)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse

from lensflow.core.settings import Settings
from lensflow.serving import errors, middleware
from lensflow.serving.metrics import Metrics
from lensflow.serving.ratelimit import RateLimiter
from lensflow.serving.routes import router
from lensflow.serving.watcher import ChampionWatcher

PAGE = Path(__file__).with_name("page.html")


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the champion watcher with the server (it loads the first pair) and stop it at shutdown."""
    app.state.watcher.start()
    yield
    app.state.watcher.stop()


def page():
    """The search page (not part of the API schema)."""
    return HTMLResponse(PAGE.read_text())


def create_app(settings: Settings, watcher: ChampionWatcher | None = None) -> FastAPI:
    """The app for `settings`; `watcher` (default: one polling every settings.swap_poll_s) decides what is served.
    Routes read both from app.state."""
    app = FastAPI(
        title="lensflow search",
        version="1",
        lifespan=lifespan,
        description="Search the champion model's index by photo, text, photo + text modifier, or "
        "product (more like this). Every response names the model version that answered.",
    )
    app.state.settings = settings
    app.state.watcher = watcher or ChampionWatcher(settings, settings.swap_poll_s)
    app.state.metrics = Metrics(app.state.watcher)
    app.state.rate_limiter = RateLimiter(settings.rate_limit) if settings.rate_limit else None
    errors.install(app)
    app.middleware("http")(middleware.around)
    if settings.cors_origins:  # added last: outermost, so preflights and 401s carry the CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"],
            expose_headers=["X-Model-Version", "X-Request-ID"],
        )
    app.include_router(router)
    app.get("/", response_class=HTMLResponse, include_in_schema=False)(page)
    return app

"""One typed settings object for every URI and path, read lazily from LENSFLOW_* variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lensflow.core.redact import link
from lensflow.core.storage import is_remote


def find_root() -> Path:
    """The nearest folder at or above the working directory holding prefect.yaml or data.dvc."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "prefect.yaml").exists() or (folder / "data.dvc").exists():
            return folder
    return here


class Settings(BaseSettings):
    """Where lensflow keeps its data, stores and caches. Relative paths are under `root`."""

    model_config = SettingsConfigDict(env_prefix="LENSFLOW_", extra="ignore")

    root: Path = Field(default_factory=find_root, description="project root (holds data.dvc)")
    data_dir: Path = Path("data")
    lancedb_uri: str = "lancedb"
    mlflow_tracking_uri: str = ""  # empty: sqlite under <root>/mlflow
    mlflow_experiment: str = "lensflow-retrain"
    registered_model: str = "lensflow-encoder"
    mlflow_artifact_uri: str = Field(
        "",
        description="where MLflow runs keep artifacts (s3://bucket/mlflow); empty: "
        "<root>/mlflow/artifacts. Applies to experiments created from then on",
    )
    dvc_remote: str = Field(
        "dvc-remote", description="default DVC remote: a folder (relative to root) or a URL (s3://bucket/dvc)"
    )
    cache_dir: Path = Path(".cache")
    reports_dir: Path = Path("reports")
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    loader_workers: int | None = Field(
        None,
        ge=0,
        description="processes that decode and augment images beside the model (0: in-process; empty or 'auto': "
        "one when augmenting >= 5,000 images, else in-process, as measured in BENCHMARKS.md)",
    )
    embed_runner: Literal["local", "dask"] = Field(
        "local",
        description="local: embed the catalog in this process; dask: in shards on Dask workers (tasks/shard.py)",
    )
    dask_address: str | None = Field(
        None,
        description="scheduler of an existing Dask cluster (tcp://host:8786); "
        "empty: a local cluster of `embed_shards` worker processes",
    )
    embed_shards: int = Field(2, ge=1, description="catalog slices embedded in parallel when embed_runner=dask")
    reviewers_file: Path = Field(
        Path(".platform/reviewers.json"),
        description="the registered reviewers' public keys (`lensflow reviewers add`): who may approve or reject a "
        "promotion; owner-only, read by every run that waits for a review",
    )
    review_code_ttl_s: float = Field(
        900, gt=0, description="how long a reviewer's signed code (`lensflow review code`) stays valid, seconds"
    )
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000",
        description="MLflow UI, for links in review pages (credentials "
        "in it are dropped: the pages are shown to people)",
    )
    writer_slot_timeout_s: float = Field(
        6 * 3600,
        gt=0,
        description="how long a writer (retrain, reindex, promote) run against a Prefect server waits for the "
        "global writer slot another machine's run holds, before it fails without changing anything",
    )
    notify_reviewers_url: SecretStr | None = Field(
        None,
        description="where `lensflow up`'s Prefect automation tells reviewers a promotion waits: an http(s) "
        "webhook (JSON POST) or any Apprise URL (slack://, msteams://, mailto://...); unset: no notification",
    )
    notify_engineers_url: SecretStr | None = Field(
        None, description="where it tells engineers a lensflow flow run failed or crashed (same URL forms)"
    )
    prefect_port: int = 4200
    mlflow_port: int = 5000
    serve_host: str = Field("127.0.0.1", description="search service bind address (loopback unless told otherwise)")
    serve_port: int = 8000
    swap_poll_s: float = Field(5.0, gt=0, description="how often the search service checks whether `champion` moved")
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="largest accepted request body")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="largest accepted photo, width x height (read before decoding)"
    )
    max_image_side: int = Field(12_000, ge=1, description="largest accepted photo side, pixels")
    exact_search_max_rows: int = Field(
        250_000,
        ge=0,
        description="the search service holds the served table's vectors in memory and searches them exactly "
        "(faster than the ANN index, recall 1) up to this many products; filtered queries and bigger tables use "
        "LanceDB's index (serving/exact.py); 0: always LanceDB",
    )
    text_runtime: Literal["onnxruntime", "torch"] = Field(
        "onnxruntime",
        description="what runs the query text encoder in the search service: onnxruntime (the champion's "
        "mean-pooled text tower exported in memory at load and checked against torch; torch when it cannot be "
        "exported or differs; models/onnx_text.py) or torch",
    )
    serve_max_batch: int = Field(
        32,
        ge=1,
        description="the search service answers concurrent text queries with one encoder forward and concurrent "
        "unfiltered searches with one matrix product, at most this many per batch (serving/batching.py); "
        "1: one at a time",
    )
    api_key: SecretStr | None = Field(
        None,
        description="when set, the search API answers only requests with X-API-Key: KEY or Authorization: Bearer KEY "
        "(the page, /livez, /readyz and the API docs stay open); unset: no key (the default)",
    )
    rate_limit: str | None = Field(
        None,
        description="per-client limit on the search API (a client: its API key, else its address), e.g. "
        "60/minute or 10/second;600/hour; over it: 429 with Retry-After; unset: no limit (the default)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed to call the search API from a browser (comma-separated, e.g. "
        "https://shop.example.com); empty: none (the default; same-origin pages still work)",
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="search service logs: one JSON object per line, or plain text"
    )
    caption_model: Path | None = Field(
        None,
        description="a local image-to-text checkpoint folder (VisionEncoderDecoder or BLIP) that writes /describe's "
        "description; unset: the attribute describer",
    )

    @field_validator("loader_workers", mode="before")
    @classmethod
    def _auto_workers(cls, value):
        return None if isinstance(value, str) and value.strip().lower() in ("", "auto") else value

    @field_validator("mlflow_ui_url")
    @classmethod
    def _no_credentials_in_links(cls, value: str) -> str:
        return link(value)

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _a_rate(cls, value):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        from limits import parse_many

        try:
            parse_many(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a rate: write e.g. 60/minute or 10/second;600/hour") from None
        return str(value).strip()

    @field_validator("api_key", "notify_reviewers_url", "notify_engineers_url", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_names(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        return [str(v).strip() for v in value if str(v).strip()]

    def path(self, p: Path | str) -> Path:
        p = Path(p)
        return p if p.is_absolute() else (self.root / p).resolve()

    def reviewer_store(self):
        """The registered reviewers (lensflow.core.signoff.ReviewerStore): who may decide a promotion."""
        from lensflow.core.signoff import ReviewerStore

        return ReviewerStore(self.path(self.reviewers_file))

    @property
    def data_path(self) -> Path:
        return self.path(self.data_dir)

    @property
    def lancedb_path(self) -> str:
        return self.lancedb_uri if is_remote(self.lancedb_uri) else str(self.path(self.lancedb_uri))

    @property
    def lock_dir(self) -> Path:
        """Where the project's writer lock lives (tasks.lock)."""
        return self.path(self.cache_dir) / "locks"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.path('mlflow')}/mlflow.db"

    @property
    def artifact_location(self) -> str:
        return self.mlflow_artifact_uri or self.path("mlflow/artifacts").as_uri()

    @property
    def dvc_remote_url(self) -> str:
        return self.dvc_remote if is_remote(self.dvc_remote) else str(self.path(self.dvc_remote))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
